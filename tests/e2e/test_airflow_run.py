"""End to end through a real Airflow: scheduler, dag processor, API server, LocalExecutor.

A simulated community is synced by triggering its DAG over the REST API; the portal
must then equal the contract's projection. It runs on the session's shared Airflow
(tests/e2e/airflowkit.py), which serves the community declared below.
"""

from __future__ import annotations

import psycopg
import pytest

from oracle import actual_portal, differences, expected_portal

pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.xdist_group("airflow")]

DATASETS = ["accounts", "residents", "charges", "payments", "balances", "assessments"]
AIRFLOW_COMMUNITIES = [
    {"code": "E2ETOWN", "name": "End-to-End Town", "caselle_conn_id": "caselle_e2etown",
     "time_zone": "America/Boise", "schedule": "0 3 * * *", "datasets": DATASETS, "retry_delay_seconds": 2}]


def test_a_triggered_run_syncs_the_community_through_airflow(shared_airflow):
    airflow, portal_url = shared_airflow, shared_airflow.portal_url
    sim = airflow.make_source("E2ETOWN", seed=41, org_name="E2E Town", time_zone="America/Boise",
                              customer_number_mask="##-####")
    client = airflow.client
    dag_id = "caselle_sync_e2etown"
    client.wait_for_dag(dag_id)
    airflow.unpause(dag_id)
    run_id = client.trigger(dag_id)
    states = client.wait_for_runs({dag_id: run_id}, timeout=900)
    tasks = client.task_states(dag_id, run_id)
    assert states[dag_id] == "success", tasks
    assert tasks.pop("outcome") == "skipped", tasks  # it runs only when a task failed for good
    assert all(state == "success" for state in tasks.values()), tasks

    expected = expected_portal(sim, "E2ETOWN", "America/Boise", DATASETS)
    problems = differences(expected, actual_portal(portal_url, "E2ETOWN", DATASETS))
    assert not problems, "\n".join(problems[:40])
    with psycopg.connect(portal_url) as conn:
        outcome, staged_left = conn.execute(
            "SELECT outcome, (SELECT count(*) FROM pg_tables WHERE schemaname = 'stage' AND tablename LIKE 'e2etown%%')"
            " FROM sync.runs WHERE community_code = 'E2ETOWN' AND airflow_run_id = %s", (run_id,)
        ).fetchone()
        name = conn.execute("SELECT name FROM portal.communities WHERE community_code = 'E2ETOWN'").fetchone()[0]
    assert outcome == "published"
    assert staged_left == 0
    assert name == "End-to-End Town"
    # Each portal table of the community is an asset, updated with the run's counts.
    with psycopg.connect(portal_url) as conn:
        inserted = dict(conn.execute(
            "SELECT dataset, rows_inserted FROM sync.run_datasets d JOIN sync.runs r USING (run_key)"
            " WHERE r.airflow_run_id = %s", (run_id,)).fetchall())
    for dataset in DATASETS:
        events = client.asset_events(f"portal://e2etown/{dataset}")
        ours = [e for e in events if e.get("source_run_id") == run_id]
        assert ours, (dataset, events[:2])
        extra = ours[0]["extra"]
        assert extra["community"] == "E2ETOWN" and extra["dataset"] == dataset
        assert extra["phase"] == "published" and extra["rows_inserted"] == inserted[dataset]


    # A run that cannot do its work ends failed: the outcome task fails it (cleanup, report and freshness
    # run whatever happened, and would otherwise decide the run's state).
    bad_run = client.trigger(dag_id, conf={"datasets": ["no_such_dataset"]})
    assert client.wait_for_runs({dag_id: bad_run}, timeout=600)[dag_id] == "failed"
    bad_tasks = client.task_states(dag_id, bad_run)
    assert bad_tasks["prepare"] == bad_tasks["publish"] == bad_tasks["outcome"] == "failed", bad_tasks
    assert not differences(expected, actual_portal(portal_url, "E2ETOWN", DATASETS))
