"""SIGKILL of the Airflow task process in the middle of the publish transaction; Airflow marks the
try failed, retries it (the community's retries, ``retry_delay_seconds: 10`` with backoff), and the run
ends success with the portal equal to the projection.

The publish is a phase of the DAG's one ``sync`` task (extracts, checks, the one publish transaction,
cleanup): the process killed is that task's, and its retry runs the whole sync again.

A real Airflow (scheduler, LocalExecutor, dag processor, API server) runs the community's DAG. The
test holds an uncommitted row of the last high-water mark the publish writes, so the publish
waits there with its transaction open and the community's advisory lock held; the test finds the
PostgreSQL session in pg_stat_activity, the process owning that session's socket (the ``sync`` task
process the supervisor forked), and kills it with SIGKILL. The Airflow is the session's shared one
(tests/e2e/airflowkit.py); this test's community and DAG are its own.
"""

from __future__ import annotations

import time
import urllib.request

import psycopg
import pytest
from faultkit import (
    advisory_lock_holder,
    assert_no_duplicates,
    blocker,
    portal_rows,
    process_of_client_port,
    stage_tables,
    wait_until,
)

from oracle import actual_portal, differences, expected_portal

pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.xdist_group("airflow")]

CODE = "KILLTOWN"
TZ = "America/Denver"
DATASETS = ["accounts", "charges", "balances"]
DAG_ID = "caselle_sync_killtown"
# Its cron never fires before 2028 (29 February): the only run is the one the test triggers.
AIRFLOW_COMMUNITIES = [{"code": CODE, "caselle_conn_id": "caselle_killtown", "time_zone": TZ,
                        "schedule": "0 3 29 2 *", "datasets": DATASETS, "retry_delay_seconds": 10}]


def waiting_mark_insert(url: str) -> dict | None:
    """The publish's session, waiting for the balances mark row inside its open transaction."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pid, client_port, backend_xid IS NOT NULL FROM pg_stat_activity WHERE datname = current_database()"
            " AND state = 'active' AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO sync.watermarks%%'"
        ).fetchone()
    return dict(zip(("pid", "client_port", "has_xid"), row, strict=True)) if row else None


def task_instance(client, run_id: str, task_id: str, tries: bool = False) -> dict:
    quoted = urllib.request.quote(run_id, safe="")
    return client._request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{quoted}/taskInstances/{task_id}"
                           + ("/tries" if tries else ""))


def test_sigkill_of_the_sync_task_process_while_publishing_then_airflow_retries_to_success(shared_airflow):
    airflow, portal_url = shared_airflow, shared_airflow.portal_url
    sim = airflow.make_source(CODE, seed=81, org_name="Kill Town", time_zone=TZ, customer_number_mask="##-####")
    client = airflow.client
    client.wait_for_dag(DAG_ID)
    airflow.unpause(DAG_ID)
    with blocker(portal_url) as hold:
        hold.execute("INSERT INTO sync.watermarks (community_code, dataset, mark, run_key)"
                     " VALUES (%s, 'balances', now(), 'fault-blocker')", (CODE,))
        # ... left uncommitted: the publish's insert of this key must wait for our transaction.
        run_id = client.trigger(DAG_ID)
        session = wait_until("the sync task's publish inside its transaction", lambda: waiting_mark_insert(portal_url),
                             timeout=900, every=0.5)
        assert session["has_xid"], "the publish has written inside its transaction"
        assert advisory_lock_holder(portal_url, CODE) == session["pid"]
        ti = task_instance(client, run_id, "sync")
        assert ti["state"] == "running" and ti["try_number"] == 1, ti
        victim = process_of_client_port(session["client_port"])
        assert ti["id"] in " ".join(victim.cmdline()), ("not the sync task's process", victim.cmdline(), ti)
        parent = victim.parent()
        tree = f"task process {victim.pid} {victim.cmdline()[:4]} <- parent {parent.pid} {parent.cmdline()[:4]}"
        victim.send_signal(9)
        victim.wait(timeout=30)
    # Our blocking row is rolled back; the orphaned session finishes its statement, finds its client
    # gone and rolls the whole publish back.
    wait_until("the killed publish's session to end", lambda: waiting_mark_insert(portal_url) is None
               and advisory_lock_holder(portal_url, CODE) is None, timeout=120, every=0.2)
    assert portal_rows(portal_url, CODE) == dict.fromkeys(portal_rows(portal_url, CODE), 0), tree
    with psycopg.connect(portal_url) as conn:
        assert conn.execute("SELECT count(*) FROM sync.watermarks WHERE community_code = %s",
                            (CODE,)).fetchone()[0] == 0
    # The retry (10-20 s after the kill) had not begun: what was just checked is the killed try's legacy.
    assert task_instance(client, run_id, "sync")["try_number"] == 1

    seen = set()
    deadline = time.monotonic() + 900
    while (state := client.run_state(DAG_ID, run_id)) not in ("success", "failed") and time.monotonic() < deadline:
        seen.add(task_instance(client, run_id, "sync")["state"])
        time.sleep(0.5)
    sync = task_instance(client, run_id, "sync")
    history = [(t["try_number"], t["state"])
               for t in task_instance(client, run_id, "sync", tries=True)["task_instances"]]
    assert state == "success", (tree, seen, client.task_states(DAG_ID, run_id))
    # The try history, not the polled states, is the record (up_for_retry may last only 10 s).
    assert history == [(1, "failed"), (2, "success")], (tree, seen, history)
    assert sync["try_number"] == 2, sync
    assert client.task_states(DAG_ID, run_id) == {"sync": "success", "failed": "skipped", "freshness": "success"}

    expected = expected_portal(sim, CODE, TZ, DATASETS)
    problems = differences(expected, actual_portal(portal_url, CODE, DATASETS))
    assert not problems, "\n".join(problems[:40])
    assert_no_duplicates(portal_url, CODE)
    assert not [t for t in stage_tables(portal_url) if t.startswith("killtown_")]
    with psycopg.connect(portal_url) as conn:
        outcome = conn.execute("SELECT outcome FROM sync.runs WHERE community_code = %s AND airflow_run_id = %s",
                               (CODE, run_id)).fetchone()[0]
    assert outcome == "published"
    print(tree, "; sync states seen:", sorted(s for s in seen if s), "; tries:", history)
