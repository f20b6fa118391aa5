"""A money column's numeric image: stored once per staged row, the same in the idle probe's rows."""

from __future__ import annotations

import json
from decimal import Decimal

import psycopg
import pytest
from psycopg import sql

from portal_sync import probe, stage
from portal_sync.datasets import DATASETS, amount
from portal_sync.rules import rules_for
from portal_sync.store import runs
from portal_sync.validate import validate_staged

pytestmark = pytest.mark.integration

CHARGES = DATASETS["charges"]
TEXTS = ["12.34", "-0.5", "+7", ".25", "1.2000", "12.345", "1.", "abc", "12345678901", None]
IMAGES = [Decimal("12.34"), Decimal("-0.5"), Decimal("7"), Decimal("0.25"), Decimal("1.2000"),
          None, None, None, None, None]


def test_the_staging_table_stores_the_amount_of_exact_money_and_null_otherwise(portal):
    table = stage.stage_table_name("amounts_t", CHARGES.name, CHARGES.primary)
    with psycopg.connect(portal, autocommit=True) as conn:
        stage.create_table(conn, table, CHARGES.primary)
        conn.execute(sql.SQL("INSERT INTO {} (_row_id, {}) SELECT n, a FROM unnest(%s::text[]) WITH ORDINALITY u(a, n)")
                     .format(sql.Identifier(stage.STAGE_SCHEMA, table), sql.Identifier("Amount")), (TEXTS,))
        stored = conn.execute(sql.SQL("SELECT {} FROM {} ORDER BY _row_id").format(
            sql.Identifier(amount("Amount")), sql.Identifier(stage.STAGE_SCHEMA, table))).fetchall()
        stage.drop_tables(conn, [table])
    assert [r[0] for r in stored] == IMAGES


def test_the_idle_probe_computes_the_same_images_from_rows_in_memory(portal):
    relation = probe._relation(CHARGES.primary, "rows")
    rows = json.dumps([{"_row_id": n, "Amount": text} for n, text in enumerate(TEXTS, 1)])
    with psycopg.connect(portal, autocommit=True) as conn:
        computed = conn.execute(f'SELECT r."{amount("Amount")}" FROM {relation} r ORDER BY r._row_id',
                                {"rows": rows}).fetchall()
    assert [r[0] for r in computed] == IMAGES


def test_money_exact_refuses_exactly_the_texts_without_an_image(portal):
    run_key = "amounts_v"
    table = stage.stage_table_name(run_key, CHARGES.name, CHARGES.primary)
    rule = next(r for r in rules_for(CHARGES) if r.name == "money_exact")
    with psycopg.connect(portal, autocommit=True) as conn:
        runs.start_run(conn, run_key, "AMOUNTS", run_key, [CHARGES.name])
        stage.create_table(conn, table, CHARGES.primary)
        conn.execute(sql.SQL("INSERT INTO {} (_row_id, {}) SELECT n, a FROM unnest(%s::text[]) WITH ORDINALITY u(a, n)")
                     .format(sql.Identifier(stage.STAGE_SCHEMA, table), sql.Identifier("Amount")), (TEXTS,))
        [outcome] = validate_staged(conn, pg_url=portal, run_key=run_key, community="AMOUNTS", dataset=CHARGES,
                                    tables={CHARGES.primary.name: table}, rules=[rule], use_gx=False)
        refused = conn.execute("SELECT row_id FROM sync.run_findings WHERE run_key = %s AND rule = %s ORDER BY 1",
                               (run_key, rule.name)).fetchall()
        stage.drop_tables(conn, [table])
    assert outcome.failing_rows == 4
    assert [r[0] for r in refused] == [6, 7, 8, 9]  # 12.345, "1.", abc, eleven digits; NULL is not money_exact's
