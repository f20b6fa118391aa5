"""Two runs of the same community at once (a manual trigger during a scheduled run, a backfill
overlapping the schedule): their publishes cannot interleave, and the later publish of an older
read never puts older data over newer."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from faultkit import (
    Step,
    advisory_lock_holder,
    advisory_lock_waiters,
    assert_no_duplicates,
    backend_running,
    backends,
    blocker,
    wait_until,
)
from synctest import FULL, assert_in_sync, community, local_now, sync

from portal_sync.datasets import DATASET_NAMES
from portal_sync.params import RunRequest
from portal_sync.pipeline import RunContext, cleanup, extract_dataset, prepare, publish_run, validate_dataset

pytestmark = pytest.mark.integration

CODE = "SPRINGFLD"


def staged_run(sim, portal: str, run_id: str, **request) -> RunContext:
    """A run that has extracted and validated every data set: only its publish is left."""
    ctx = RunContext(community(), run_id, portal, sim.spec.odbc_connection_string(), use_gx=False,
                     request=RunRequest(**request))
    prepare(ctx)
    for name in DATASET_NAMES:
        # staged even when nothing changed: the older read must carry rows for the newer one to beat
        # (an idle read has nothing to publish, probe.py, which is not what these tests are about)
        extract_dataset(ctx, name, probe_first=False)
        validate_dataset(ctx, name)
    return ctx


def test_two_publishes_of_one_community_cannot_interleave(make_source, portal, tmp_path):
    sim = make_source("sqlite", seed=61, start=local_now())
    sync(sim, portal, "baseline")
    sim.evolve(timedelta(hours=2))
    first = staged_run(sim, portal, "scheduled", **FULL)
    second = staged_run(sim, portal, "manual", **FULL)
    odbc = sim.spec.odbc_connection_string()
    with blocker(portal) as hold:
        # Publish A takes the community's advisory lock, then stops at its first write: this row.
        hold.execute("SELECT 1 FROM portal.communities WHERE community_code = %s FOR UPDATE", (CODE,))
        a = Step(portal, odbc, "scheduled", "publish_run", request=FULL, app="fault_pub_a").start(tmp_path)
        a_waiting = wait_until("publish A inside its transaction",
                               lambda: backend_running(portal, "fault_pub_a", "INSERT INTO portal.communities",
                                                       waiting=True) or not a.alive(), timeout=120)
        assert a.alive(), a.output()
        assert advisory_lock_holder(portal, CODE) == a_waiting["pid"]

        b = Step(portal, odbc, "manual", "publish_run", request=FULL, app="fault_pub_b").start(tmp_path)
        b_waiting = wait_until("publish B to queue for the lock",
                               lambda: backend_running(portal, "fault_pub_b", "SELECT pg_advisory_xact_lock",
                                                       waiting=True) or not b.alive(), timeout=120)
        assert b.alive(), b.output()
        assert advisory_lock_waiters(portal, CODE) == [b_waiting["pid"]]
        assert not b_waiting["has_xid"], "B must not have written anything while A holds the lock"
        assert advisory_lock_holder(portal, CODE) == a_waiting["pid"]
    # A is released (our row lock is gone); B may only start once A has committed.
    assert a.wait(timeout=120) == 0, a.output()
    assert b.wait(timeout=120) == 0, b.output()
    with psycopg.connect(portal) as conn:
        done = dict(conn.execute("SELECT airflow_run_id, published_at FROM sync.runs"
                                 " WHERE airflow_run_id IN ('scheduled', 'manual')").fetchall())
    assert done["scheduled"] < done["manual"]
    assert not backends(portal, "fault_pub_a") and not backends(portal, "fault_pub_b")
    for ctx in (first, second):
        cleanup(ctx)
    assert_in_sync(sim, portal)
    assert_no_duplicates(portal, CODE)


def test_an_older_read_published_after_a_newer_one_changes_nothing_newer(make_source, portal):
    sim = make_source("sqlite", seed=62, start=local_now())
    sync(sim, portal, "baseline")
    # Run A (say the scheduled one) reads everything ...
    older = staged_run(sim, portal, "older", **FULL)
    # ... then Caselle changes: new customers, move-outs, edits, payments, deletions ...
    sim.evolve(timedelta(hours=3), {"new_customers": 60, "move_outs": 30, "contact_edits": 30, "location_edits": 10,
                                    "assessment_updates": 10, "payments": 200, "receipt_voids": 20})
    sim.delete_inactive_customers(count=2)
    # ... and run B (a manual trigger) reads later but publishes first.
    newer = staged_run(sim, portal, "newer", **FULL)
    try:
        publish_run(newer)
    finally:
        cleanup(newer)
    assert_in_sync(sim, portal)
    with psycopg.connect(portal) as conn:
        marks = conn.execute("SELECT dataset, mark FROM sync.watermarks ORDER BY 1").fetchall()

    try:
        results = publish_run(older)  # A publishes last, with its older read
    finally:
        cleanup(older)
    assert_in_sync(sim, portal)  # the portal keeps B's rows: nothing went back, nothing was deleted
    assert_no_duplicates(portal, CODE)
    superseded = {name: row["rows_superseded"] for name, row in results.items()}
    assert sum(superseded.values()) > 0, superseded
    for name, row in results.items():
        assert (row["rows_inserted"], row["rows_updated"], row["rows_deleted"], row["rows_archived"]) == (0, 0, 0, 0), \
            (name, row)
    with psycopg.connect(portal) as conn:
        assert conn.execute("SELECT dataset, mark FROM sync.watermarks ORDER BY 1").fetchall() == marks
