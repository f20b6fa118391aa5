"""The common case at fleet scale: a run with nothing to publish creates no table (probe.py).

Each test checks both halves: an idle run leaves the catalog alone and the portal as it was,
and a single change of each kind the publish handles still takes the normal way and lands.
"""

from __future__ import annotations

import zlib

import psycopg
import pytest
from synctest import FULL, advance, assert_in_sync, community, local_now, sync

pytestmark = pytest.mark.integration


@pytest.fixture
def town(make_source, portal, request):
    seed = 300 + zlib.crc32(request.node.name.encode()) % 1000
    sim = make_source("sqlite", seed=seed, start=local_now())
    sync(sim, portal, "initial")
    return sim


def newest_oid(portal: str) -> int:
    with psycopg.connect(portal) as conn:
        return conn.execute("SELECT max(oid::bigint) FROM pg_class").fetchone()[0]


def tables_made_since(portal: str, oid: int) -> list[str]:
    with psycopg.connect(portal) as conn:
        return [r[0] for r in conn.execute("SELECT relname FROM pg_class WHERE oid::bigint > %s", (oid,))]


def phases(portal: str, run_id: str) -> dict[str, tuple]:
    with psycopg.connect(portal) as conn:
        return {r[0]: r[1:] for r in conn.execute(
            "SELECT dataset, phase, staging_tables = '{}', rows_unchanged FROM sync.run_datasets d"
            " JOIN sync.runs r USING (run_key) WHERE r.airflow_run_id = %s", (run_id,))}


def test_an_idle_window_creates_no_table_and_moves_the_marks(town, portal):
    with psycopg.connect(portal) as conn:
        marks_before = dict(conn.execute("SELECT dataset, mark FROM sync.watermarks").fetchall())
    oid = newest_oid(portal)
    results = sync(town, portal, "idle")  # Caselle did nothing since the first load
    assert tables_made_since(portal, oid) == []
    assert all(r["phase"] == "published" for r in results.values()), results
    assert all((r["rows_inserted"], r["rows_updated"], r["rows_deleted"]) == (0, 0, 0) for r in results.values())
    recorded = phases(portal, "idle")
    assert all(staged_nothing for _, staged_nothing, _ in recorded.values()), recorded
    with psycopg.connect(portal) as conn:
        marks_after = dict(conn.execute("SELECT dataset, mark FROM sync.watermarks").fetchall())
    windowed = [name for name, row in results.items() if row["mode"] == "window"]
    assert windowed and all(marks_after[name] > marks_before[name] for name in windowed), (marks_before, marks_after)
    assert_in_sync(town, portal)


def test_one_changed_row_takes_the_normal_way_and_the_rest_stays_idle(town, portal):
    account = town.query('SELECT "CustomerID" FROM "UB_Customer" ORDER BY "CustomerID" LIMIT 1')[0][0]
    town.execute('UPDATE "UB_Location" SET "Unit" = \'9Z\' WHERE "LocationID" ='
                 ' (SELECT "LocationID" FROM "UB_Customer" WHERE "CustomerID" = ?)', (account,))
    results = sync(town, portal, "one-change", comm=community(datasets=("accounts", "charges")))
    assert results["accounts"]["rows_updated"] == 1
    recorded = phases(portal, "one-change")
    assert recorded["accounts"][1] is False  # staged: it had work
    assert_in_sync(town, portal, community(datasets=("accounts", "charges")))


def test_a_reconciliation_with_nothing_gone_is_idle_and_one_deleted_line_is_not(town, portal):
    interval, _ = advance(town, 5)
    sync(town, portal, "catch-up", interval=interval)
    oid = newest_oid(portal)
    sync(town, portal, "reconcile-idle", **FULL)
    assert tables_made_since(portal, oid) == []
    with psycopg.connect(portal) as conn:
        line = conn.execute("SELECT max(charge_id) FROM portal.charges WHERE deleted_at IS NULL"
                            " AND archived_at IS NULL").fetchone()[0]
    town.execute('DELETE FROM "UB_Transaction" WHERE "TransactionID" = ?', (line,))
    results = sync(town, portal, "reconcile-delete", **FULL)
    assert results["charges"]["rows_deleted"] + results["charges"]["rows_archived"] == 1, results["charges"]
    assert_in_sync(town, portal)


def test_a_row_a_check_refuses_is_refused_even_when_the_portal_already_holds_it(town, portal):
    """A probe that judged only the portal would let an orphan that stayed equal go unrecorded."""
    receipt, customer = town.query('SELECT "ReceiptID", "CustomerID" FROM "CR_Receipt" ORDER BY "ReceiptID" LIMIT 1')[0]
    town.execute('DELETE FROM "UB_Customer" WHERE "CustomerID" = ?', (customer,))
    results = sync(town, portal, "orphaned", comm=community(datasets=("payments",)), **FULL)
    assert results["payments"]["rows_refused"] >= 1, results["payments"]
    with psycopg.connect(portal) as conn:
        quarantined = conn.execute("SELECT count(*) FROM sync.quarantine WHERE dataset = 'payments' AND row_key = %s",
                                   (str(receipt),)).fetchone()[0]
    assert quarantined == 1
