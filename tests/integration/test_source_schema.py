"""A Caselle upgrade that drops, renames or retypes a column the sync reads fails that data set by name.

Each case changes one column of a simulated Caselle (SQLite, and the server engines through their own
DDL) before a run: the data set reading it fails, naming the table, the column and what changed,
and the run's other data sets publish. An unchanged source passes the check on every engine.
"""

from __future__ import annotations

import re

import psycopg
import pytest
from synctest import community, sync

from portal_sync.datasets import DATASETS
from portal_sync.pipeline import SyncError
from portal_sync.source import SourceSchemaError, check_columns
from portal_sync.source.schema import type_problem
from portal_sync.source.sqlite import SQLite

pytestmark = pytest.mark.integration


def _retype_sqlite(sim, table: str, column: str, new_type: str) -> None:
    """SQLite cannot alter a column's type: rebuild the table from its CREATE text with the column retyped."""
    [(create,)] = sim.query("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
    changed = re.sub(rf'("{column}"\s+)[A-Z]+(\([0-9, ]+\))?', rf"\g<1>{new_type}", create, count=1)
    assert changed != create, create
    sim.execute(f'ALTER TABLE "{table}" RENAME TO "{table}_old"')
    sim.execute(changed)
    sim.execute(f'INSERT INTO "{table}" SELECT * FROM "{table}_old"')
    sim.execute(f'DROP TABLE "{table}_old"')


SQLITE_CHANGES = {
    "unit_dropped": (lambda s: s.execute('ALTER TABLE "UB_Location" DROP COLUMN "Unit"'),
                     "accounts", "UB_Location", ["Unit is missing"]),
    "unit_renamed": (lambda s: s.execute('ALTER TABLE "UB_Location" RENAME COLUMN "Unit" TO "Suite"'),
                     "accounts", "UB_Location", ["Unit is missing"]),
    "amount_float": (lambda s: _retype_sqlite(s, "UB_Transaction", "Amount", "REAL"),
                     "charges", "UB_Transaction", ["Amount is REAL", "DECIMAL(12,2)"]),
    "amount_text": (lambda s: _retype_sqlite(s, "UB_Transaction", "Amount", "TEXT"),
                    "charges", "UB_Transaction", ["Amount is TEXT", "DECIMAL(12,2)"]),
    "amount_scale_4": (lambda s: _retype_sqlite(s, "UB_Transaction", "Amount", "DECIMAL(12,4)"),
                       "charges", "UB_Transaction", ["Amount is DECIMAL(12,4)", "scale 4"]),
    "description_narrowed": (lambda s: _retype_sqlite(s, "UB_Transaction", "Description", "VARCHAR(40)"),
                             "charges", "UB_Transaction", ["Description is VARCHAR(40)", "narrowed",
                                                           "VARCHAR(60)"]),
    "description_widened": (lambda s: _retype_sqlite(s, "UB_Transaction", "Description", "VARCHAR(80)"),
                            "charges", "UB_Transaction", ["Description is VARCHAR(80)", "widened"]),
    "filter_column_dropped": (lambda s: s.execute('ALTER TABLE "PI_Assessment" RENAME COLUMN "OwnerContactID"'
                                                  ' TO "OwnerID"'),
                              "residents", "SM_Contact", ["PI_Assessment.OwnerContactID", "filter"]),
}

SERVER_CHANGES = {
    "postgresql": {
        "unit_dropped": ('ALTER TABLE "UB_Location" DROP COLUMN "Unit"', "accounts", "UB_Location",
                         ["Unit is missing"]),
        "amount_float": ('ALTER TABLE "UB_Transaction" ALTER COLUMN "Amount" TYPE double precision', "charges",
                         "UB_Transaction", ["Amount is float8", "DECIMAL(12,2)"]),
        "description_narrowed": ('ALTER TABLE "UB_Transaction" ALTER COLUMN "Description" TYPE varchar(40)',
                                 "charges", "UB_Transaction", ["Description is varchar(40)", "narrowed"]),
    },
    "mariadb": {
        "unit_renamed": ("ALTER TABLE `UB_Location` RENAME COLUMN `Unit` TO `Suite`", "accounts", "UB_Location",
                         ["Unit is missing"]),
        "amount_text": ("ALTER TABLE `UB_Transaction` MODIFY `Amount` TEXT NOT NULL", "charges", "UB_Transaction",
                        ["Amount is", "DECIMAL(12,2)"]),
        "description_widened": ("ALTER TABLE `UB_Transaction` MODIFY `Description` VARCHAR(80) NOT NULL", "charges",
                                "UB_Transaction", ["Description is VARCHAR(80)", "widened"]),
    },
}


def _datasets(portal: str) -> dict[str, tuple[str, str | None]]:
    """Phase and error of each data set of the latest run."""
    with psycopg.connect(portal) as conn:
        rows = conn.execute(
            "SELECT dataset, phase, error FROM sync.run_datasets WHERE run_key = ("
            " SELECT run_key FROM sync.runs ORDER BY started_at DESC LIMIT 1)").fetchall()
    return {name: (phase, error) for name, phase, error in rows}


def _assert_only_it_failed(portal: str, failed: str, table: str, words: list[str]) -> None:
    """``failed`` failed naming the table and the change; the others published (residents may follow a failed
    accounts; assessments read the column the residents' filter uses, so they fail with it)."""
    outcome = _datasets(portal)
    phase, error = outcome[failed]
    assert phase == "failed", outcome
    assert f"{table}: the source's columns changed" in error, error
    for word in words:
        assert word in error, (word, error)
    others = {name: phase for name, (phase, _) in outcome.items() if name != failed}
    may_fail = {"accounts": {"residents"}, "residents": {"assessments"}}.get(failed, set())
    assert {name for name, phase in others.items() if phase != "published"} <= may_fail, outcome
    assert others["payments"] == others["balances"] == "published", outcome


@pytest.mark.parametrize("case", list(SQLITE_CHANGES))
def test_a_changed_sqlite_column_fails_its_data_set_by_name(case, make_source, portal):
    change, dataset, table, words = SQLITE_CHANGES[case]
    sim = make_source("sqlite", seed=61)
    change(sim)
    with pytest.raises(SyncError, match=rf"{dataset}: .*{table}: the source's columns changed"):
        sync(sim, portal, f"schema_{case}")
    _assert_only_it_failed(portal, dataset, table, words)
    with psycopg.connect(portal) as conn:
        assert conn.execute("SELECT count(*) FROM portal.payments").fetchone()[0] > 0
        if dataset == "accounts":  # not one unit published as the text 'Unit'
            assert conn.execute("SELECT count(*) FROM portal.accounts").fetchone()[0] == 0


@pytest.mark.parametrize(("engine", "case"), [(e, c) for e, cases in SERVER_CHANGES.items() for c in cases])
def test_a_changed_server_column_fails_its_data_set_by_name(engine, case, make_source, portal):
    statement, dataset, table, words = SERVER_CHANGES[engine][case]
    sim = make_source(engine, seed=62)
    sim.execute(statement)
    with pytest.raises(SyncError, match=rf"{dataset}: .*{table}: the source's columns changed"):
        sync(sim, portal, f"schema_{engine}_{case}", comm=community(datasets=("accounts", "charges", "payments",
                                                                              "balances")))
    outcome = _datasets(portal)
    phase, error = outcome[dataset]
    assert phase == "failed" and all(word in error for word in words), (words, error)
    assert outcome["payments"][0] == outcome["balances"][0] == "published", outcome


@pytest.mark.parametrize("engine", ["sqlite", "postgresql", "mariadb"])
def test_an_unchanged_source_passes_on_every_engine(engine, make_source):
    sim = make_source(engine)
    odbc = sim.spec.odbc_connection_string()
    for ds in DATASETS.values():
        for extract in (*ds.extracts, *([ds.reconcile_keys] if ds.reconcile_keys else [])):
            check_columns(odbc, extract)  # raises on any difference
    # added columns are ignored
    sim.execute('ALTER TABLE "UB_Location" ADD COLUMN "Latitude" DECIMAL(9,6)' if engine != "mariadb"
                else "ALTER TABLE `UB_Location` ADD COLUMN `Latitude` DECIMAL(9,6)")
    from portal_sync.source.schema import forget_checks

    forget_checks()
    check_columns(odbc, DATASETS["accounts"].supporting[0])


def test_a_missing_table_is_named(make_source):
    sim = make_source("sqlite")
    sim.execute('DROP TABLE "UB_Balance"')
    with pytest.raises(SourceSchemaError, match="UB_Balance: the source has no table UB_Balance"):
        check_columns(sim.spec.odbc_connection_string(), DATASETS["balances"].primary)


def test_the_sqlite_dialect_reads_types_from_their_declaration():
    dialect = SQLite()
    money = DATASETS["charges"].primary.column("Amount")
    text = DATASETS["charges"].primary.column("Description")
    # the SQLite3 driver reports DECIMAL(12,2) as VARCHAR with size 2: the declaration decides
    assert type_problem(money, dialect.column_type(12, "DECIMAL(12,2)", 2, 10)) is None
    assert type_problem(money, dialect.column_type(12, "decimal(12, 2)", 2, 10)) is None
    assert "REAL" in type_problem(money, dialect.column_type(8, "REAL", 53, 10))
    assert "NUMERIC" in type_problem(money, dialect.column_type(8, "NUMERIC", 53, 10))
    assert type_problem(text, dialect.column_type(12, "VARCHAR(60)", 60, 10)) is None
    assert "Description is TEXT" in type_problem(text, dialect.column_type(-1, "TEXT", 0, 10))
