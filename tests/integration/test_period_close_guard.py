"""A period close is not a mass delete: the lines it purges are archived without tripping the
delete guard, while lines dated on or after its PurgeBefore that vanish still count as deletes."""

from __future__ import annotations

import re
from datetime import date

import psycopg
import pytest
from synctest import FULL, advance, assert_in_sync, local_now, sync

from portal_sync.pipeline import SyncError

pytestmark = pytest.mark.integration


def scalar(portal: str, query: str, *params):
    with psycopg.connect(portal) as conn:
        return conn.execute(query, params).fetchone()[0]


def live_charge_date_at(portal: str, share: float) -> date:
    """The transaction date below which about ``share`` of the live portal charges lie."""
    return scalar(portal, "SELECT percentile_disc(%s) WITHIN GROUP (ORDER BY transaction_date) FROM portal.charges"
                          " WHERE deleted_at IS NULL AND archived_at IS NULL", share)


def live_before(portal: str, day: date) -> int:
    return scalar(portal, "SELECT count(*) FROM portal.charges WHERE deleted_at IS NULL AND archived_at IS NULL"
                          " AND transaction_date < %s", day)


def charges_phase(portal: str, run_id: str) -> tuple[str, str | None]:
    with psycopg.connect(portal) as conn:
        return conn.execute("SELECT d.phase, d.error FROM sync.run_datasets d JOIN sync.runs r USING (run_key)"
                            " WHERE r.airflow_run_id = %s AND d.dataset = 'charges'", (run_id,)).fetchone()


def test_a_period_close_archives_without_the_guard_and_a_real_mass_delete_is_still_refused(make_source, portal):
    sim = make_source("sqlite", seed=41, start=local_now())
    sync(sim, portal, "first")
    live = scalar(portal, "SELECT count(*) FROM portal.charges WHERE deleted_at IS NULL AND archived_at IS NULL")

    # Caselle's period close purges about a quarter of the ledger: far above the guard's 10 %.
    purge = live_charge_date_at(portal, 0.25)
    closed = live_before(portal, purge)
    assert 0.2 * live <= closed <= 0.3 * live, (closed, live)
    sim.period_close(purge_before=purge)
    interval, _ = advance(sim, 5)
    results = sync(sim, portal, "after-close", interval=interval, **FULL)
    charges = results["charges"]
    assert charges["mode"] == "reconcile" and charges["phase"] == "published"
    assert charges["rows_archived"] == closed and charges["rows_deleted"] == 0
    assert scalar(portal, "SELECT count(*) FROM portal.charges WHERE archived_at IS NOT NULL") == closed
    assert_in_sync(sim, portal)

    # A second close together with a real loss of lines dated after it: the close's lines still do not
    # count, the lost ones do, and they are over the guard's share of what the close leaves live.
    live = scalar(portal, "SELECT count(*) FROM portal.charges WHERE deleted_at IS NULL AND archived_at IS NULL")
    purge2 = live_charge_date_at(portal, 0.1)
    closed2 = live_before(portal, purge2)
    assert closed2 > 25
    sim.period_close(purge_before=purge2)
    lost = sim.query(
        'SELECT "TransactionID" FROM "UB_Transaction" WHERE "TransactionType" = \'BILL\' AND "TransactionDate" >= ?'
        ' AND "TransactionID" % 4 = 0 AND "TransactionID" NOT IN (SELECT "VoidsTransactionID" FROM "UB_Transaction"'
        ' WHERE "VoidsTransactionID" IS NOT NULL)', (purge2.isoformat(),))
    lost_ids = sorted(int(r[0]) for r in lost)
    for i in range(0, len(lost_ids), 500):
        part = lost_ids[i:i + 500]
        sim.execute(f'DELETE FROM "UB_Transaction" WHERE "TransactionID" IN ({", ".join("?" * len(part))})', part)
    remaining = live - closed2
    assert len(lost_ids) > 0.1 * remaining
    interval, _ = advance(sim, 5)
    with pytest.raises(SyncError, match=r"allow_mass_delete"):
        sync(sim, portal, "mass-delete", interval=interval, **FULL)
    phase, error = charges_phase(portal, "mass-delete")
    assert phase == "failed"
    # the share is of the ledger the close leaves live (plus what this run inserted before its tombstones)
    doomed, base = map(int, re.search(r"would delete or archive (\d+) of (\d+) live rows", error).groups())
    assert doomed == len(lost_ids) and remaining <= base < remaining + 50, error
    assert f"{closed2} line(s) dated before the period close" in error, error
    assert scalar(portal, "SELECT count(*) FROM portal.charges WHERE deleted_at IS NOT NULL") == 0
    assert scalar(portal, "SELECT count(*) FROM portal.charges WHERE archived_at IS NOT NULL") == closed

    # Allowed once, the run archives the close's lines and deletes the lost ones.
    interval, _ = advance(sim, 5)
    allowed = sync(sim, portal, "allowed", interval=interval, **FULL, allow_mass_delete=["charges"])
    assert allowed["charges"]["rows_archived"] == closed2
    assert allowed["charges"]["rows_deleted"] == len(lost_ids)
    assert_in_sync(sim, portal)
