"""The staged key index is UNIQUE when the keys allow it, and the duplicate-key rule reads its answer there."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from portal_sync import stage
from portal_sync.datasets import DATASETS
from portal_sync.rules import KEY_UNIQUE, rules_for
from portal_sync.sqltext import render_staged
from portal_sync.store import runs
from portal_sync.validate import validate_staged

pytestmark = pytest.mark.integration

BALANCES = DATASETS["balances"]


def staged(conn: psycopg.Connection, run_key: str, customer_ids: list[int | None]) -> dict[str, str]:
    """The balances extract and its customer keys staged with the given CustomerIDs, indexed as a run does."""
    tables = {}
    for extract in BALANCES.extracts:
        table = stage.stage_table_name(run_key, BALANCES.name, extract)
        stage.create_table(conn, table, extract)
        conn.execute(sql.SQL("INSERT INTO {} (_row_id, {}) SELECT n, c FROM unnest(%s::int[]) WITH ORDINALITY u(c, n)")
                     .format(sql.Identifier(stage.STAGE_SCHEMA, table), sql.Identifier("CustomerID")),
                     (customer_ids,))
        stage.finish_table(conn, table, extract)
        tables[extract.name] = table
    return tables


@pytest.mark.parametrize("customer_ids, unique", [
    ([1, 2, 3, None, None], True),  # NULL keys never repeat a key (as in the rule: NULL IN (...) is not true)
    ([1, 2, 2, 3, 3, 3], False),
])
def test_the_duplicate_key_rule_answers_from_the_key_index_exactly_as_its_query(portal, customer_ids, unique):
    run_key = f"keys_{'u' if unique else 'd'}"
    with psycopg.connect(portal, autocommit=True) as conn:
        runs.start_run(conn, run_key, "KEYS", run_key, [BALANCES.name])
        tables = staged(conn, run_key, customer_ids)
        assert stage.key_is_unique(conn, tables["balances"], BALANCES.primary) is unique
        rule = next(r for r in rules_for(BALANCES) if r.name == KEY_UNIQUE)
        outcome = validate_staged(conn, pg_url=portal, run_key=run_key, community="KEYS", dataset=BALANCES,
                                  tables=tables, rules=[rule], use_gx=False)
        # The rule's own query on the same rows, whatever the index says.
        by_query = conn.execute(
            sql.SQL("SELECT count(*) FROM {} s WHERE ").format(sql.Identifier(stage.STAGE_SCHEMA, tables["balances"]))
            + sql.SQL(render_staged(rule.bad_rows_where, tables))
        ).fetchone()[0]
        recorded = conn.execute("SELECT count(*) FROM sync.run_findings WHERE run_key = %s AND rule = %s",
                                (run_key, KEY_UNIQUE)).fetchone()[0]
    assert outcome[0].failing_rows == by_query == recorded == (0 if unique else 5)
