"""The publish's three paths (docs/adr/0007): a first load is one plain INSERT, a later merge
classifies rows before the upsert and finds doomed keys by one anti-join, and a publish that
changed many rows refreshes the portal table's statistics. Each path must leave exactly the
contract's projection and count what it did."""

from __future__ import annotations

import psycopg
import pytest
from synctest import FULL, assert_in_sync, community, sync

from portal_sync import publish

pytestmark = pytest.mark.integration


def scalar(portal: str, query: str, *params):
    with psycopg.connect(portal) as conn:
        return conn.execute(query, params).fetchone()[0]


@pytest.mark.parametrize("projection", ["materialised", "inline"])
def test_first_load_then_reconcile_count_exactly_what_changed(projection, make_source, portal, monkeypatch):
    if projection == "inline":  # as for a city ledger: the classify join reads the projection inline
        monkeypatch.setattr(publish, "MATERIALISE_UP_TO", 0)
    sim = make_source("sqlite", seed=31)
    first = sync(sim, portal, "first")
    lines = scalar(portal, "SELECT count(*) FROM portal.charges")
    assert first["charges"]["rows_inserted"] == lines > 0
    assert first["charges"]["rows_updated"] == first["charges"]["rows_unchanged"] == 0
    assert_in_sync(sim, portal)

    edited = sim.modify_data(7)["UB_Transaction"].updated
    deleted = sim.delete_inactive_customers()["UB_Transaction"].deleted
    assert edited and deleted
    with psycopg.connect(portal) as conn:  # PMT lines are not charges: count the published ones
        deleted = {r[0] for r in conn.execute("SELECT charge_id FROM portal.charges WHERE charge_id = ANY(%s)",
                                              (sorted(deleted),)).fetchall()}
    again = sync(sim, portal, "reconcile", **FULL, allow_mass_delete=["charges"])
    charges = again["charges"]
    assert charges["mode"] == "reconcile"
    assert charges["rows_inserted"] == 0
    assert charges["rows_updated"] == len(edited - deleted)
    assert charges["rows_deleted"] + charges["rows_archived"] == len(deleted)
    assert charges["rows_unchanged"] == lines - len(deleted) - len(edited - deleted)
    assert_in_sync(sim, portal)

    still = sync(sim, portal, "again", **FULL)
    assert still["charges"]["rows_updated"] == still["charges"]["rows_deleted"] == 0
    assert still["charges"]["rows_unchanged"] == lines - len(deleted)


def test_a_community_that_comes_back_after_a_wipe_is_restored_not_duplicated(make_source, portal):
    sim = make_source("sqlite", seed=32)
    sync(sim, portal, "first")
    with psycopg.connect(portal) as conn:  # every account tombstoned: the table still holds the community
        conn.execute("UPDATE portal.accounts SET deleted_at = now() WHERE community_code = 'SPRINGFLD'")
    accounts = scalar(portal, "SELECT count(*) FROM portal.accounts")
    results = sync(sim, portal, "back", **FULL)
    assert results["accounts"]["rows_inserted"] == 0
    assert results["accounts"]["rows_restored"] == results["accounts"]["rows_updated"] == accounts
    assert_in_sync(sim, portal)


def test_a_big_publish_refreshes_the_portal_tables_statistics(make_source, portal, monkeypatch):
    sim = make_source("sqlite", seed=33)
    with psycopg.connect(portal) as conn:
        before = conn.execute("SELECT now()").fetchone()[0]
    results = sync(sim, portal, "first", comm=community(datasets=("accounts", "charges", "residents")))
    accounts, charges = results["accounts"]["rows_inserted"], results["charges"]["rows_inserted"]
    assert accounts < charges
    with psycopg.connect(portal) as conn:  # wipe all rows but one: the next publish (not a first load,
        for table in ("charges", "accounts", "residents"):  # which is always analysed) decides by its size
            conn.execute(f"DELETE FROM portal.{table} WHERE ctid <> (SELECT min(ctid) FROM portal.{table})")
        before = conn.execute("SELECT now()").fetchone()[0]
    monkeypatch.setattr(publish, "ANALYZE_AFTER_ROWS", accounts + 1)  # charges qualify, accounts do not
    sync(sim, portal, "again", comm=community(datasets=("accounts", "charges", "residents")), **FULL)
    with psycopg.connect(portal) as conn:
        analyzed = dict(conn.execute(  # the community's own partitions (docs/adr/0011)
            "SELECT t.name, greatest(s.last_analyze, s.last_autoanalyze)"
            " FROM unnest(ARRAY['charges', 'accounts', 'balances']) t(name)"
            " LEFT JOIN pg_stat_user_tables s ON s.relid = sync.community_partition(t.name, 'SPRINGFLD')").fetchall())
    assert analyzed["charges"] is not None and analyzed["charges"] >= before
    assert analyzed["accounts"] is None or analyzed["accounts"] < before
    assert analyzed["balances"] is None or analyzed["balances"] < before  # not synced, not analyzed


def test_with_or_without_great_expectations_the_findings_are_the_same(make_source, portal):
    """GX runs at every size (no cut-off); it must agree with our SQL row for row, and the SQL alone
    (``--no-gx``) decides the same refusals."""
    runs = {}
    for name, use_gx in (("gx", True), ("sql", False)):
        sim = make_source("sqlite", seed=34)
        customer = sim.query('SELECT "CustomerID" FROM "UB_Customer" ORDER BY 1')[0][0]
        sim.execute('UPDATE "UB_Transaction" SET "Amount" = 12.345 WHERE "TransactionID" IN'
                    ' (SELECT "TransactionID" FROM "UB_Transaction" WHERE "TransactionType" = \'BILL\' ORDER BY 1'
                    ' LIMIT 3)')
        sim.execute('UPDATE "UB_Transaction" SET "CustomerID" = 999999 WHERE "TransactionID" IN'
                    ' (SELECT "TransactionID" FROM "UB_Transaction" WHERE "CustomerID" = ? ORDER BY 1 LIMIT 2)',
                    (customer,))
        sync(sim, portal, f"dq-{name}", use_gx=use_gx)
        with psycopg.connect(portal) as conn:
            runs[name] = sorted(conn.execute(
                "SELECT f.dataset, f.rule, f.severity, f.row_key, f.reason FROM sync.run_findings f"
                " JOIN sync.runs r USING (run_key) WHERE r.airflow_run_id = %s", (f"dq-{name}",)).fetchall())
            validated = conn.execute(
                "SELECT count(*) FROM sync.gx_results g JOIN sync.runs r USING (run_key)"
                " WHERE r.airflow_run_id = %s", (f"dq-{name}",)).fetchone()[0]
        assert (validated > 0) == use_gx
        assert_in_sync(sim, portal)
        with psycopg.connect(portal) as conn:
            for table in ("portal.charges", "portal.payments", "portal.balances", "portal.accounts",
                          "portal.residents", "portal.assessments", "sync.watermarks", "sync.quarantine"):
                conn.execute(f"DELETE FROM {table}")  # the next loop starts as a first sync
    rules = {(d, r) for d, r, *_ in runs["gx"]}
    assert ("charges", "money_exact") in rules and ("charges", "orphan_account") in rules
    assert runs["gx"] == runs["sql"]


def test_a_first_load_gathers_the_statistics_of_its_community_whatever_its_size(make_source, portal):
    """In a fleet's portal a town is too small for autovacuum to notice: without an ANALYZE the planner
    believed the community had one row and rescanned it per source row (docs/benchmarks/portal-scale.md)."""
    sim = make_source("sqlite", seed=36)
    sync(sim, portal, "first", comm=community(datasets=("accounts",)))
    with psycopg.connect(portal) as conn:
        rows, analyzed, values = conn.execute(
            "SELECT (SELECT count(*) FROM portal.accounts), s.last_analyze,"
            " (SELECT most_common_vals::text FROM pg_stats WHERE schemaname = s.schemaname"
            "  AND tablename = s.relname AND attname = 'community_code')"  # the community's own partition
            " FROM pg_stat_user_tables s WHERE s.relid = sync.community_partition('accounts', 'SPRINGFLD')").fetchone()
    assert 0 < rows < publish.ANALYZE_AFTER_ROWS  # small: only the first-load rule analyses it
    assert analyzed is not None and "SPRINGFLD" in values
