"""End to end through a real Airflow: scheduler, dag processor, API server, LocalExecutor.

A simulated community is synced by triggering its DAG over the REST API; the portal
must then equal the contract's projection. It runs on the session's shared Airflow
(tests/e2e/airflowkit.py), which serves the community declared below.
"""

from __future__ import annotations

from urllib.parse import quote

import psycopg
import pytest

from oracle import actual_portal, differences, expected_portal
from portal_sync.airflow_api import AirflowApiError

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
    # Three task instances: the run, its (empty) map of failed data sets, freshness.
    assert tasks == {"sync": "success", "failed": "skipped", "freshness": "success"}, tasks

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

    # A mistyped trigger parameter is refused by the trigger itself (the form's schema), naming it.
    with pytest.raises(AirflowApiError, match="400") as refused:
        client.trigger(dag_id, conf={"datasets": ["no_such_dataset"]})
    assert "no_such_dataset" in str(refused.value)

    # A data set that fails shows in the grid by name, with its reason, and fails the run; the
    # others publish. (A Caselle upgrade renamed a column the sync reads.)
    sim.execute('ALTER TABLE "UB_Transaction" RENAME COLUMN "Description" TO "LineDescription"')
    try:
        bad_run = client.trigger(dag_id)
        assert client.wait_for_runs({dag_id: bad_run}, timeout=600)[dag_id] == "failed"
        answer = client._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(bad_run, safe='')}/taskInstances")
        failed = [ti for ti in answer["task_instances"] if ti["task_id"] == "failed"]
        assert [(ti["rendered_map_index"], ti["state"]) for ti in failed] == [("charges", "failed")], failed
        assert {ti["task_id"]: ti["state"] for ti in answer["task_instances"] if ti["task_id"] != "failed"} == {
            "sync": "success", "freshness": "success"}
        with psycopg.connect(portal_url) as conn:
            phases = dict(conn.execute(
                "SELECT dataset, phase FROM sync.run_datasets d JOIN sync.runs r USING (run_key)"
                " WHERE r.airflow_run_id = %s", (bad_run,)).fetchall())
        assert phases.pop("charges") == "failed" and set(phases.values()) == {"published"}, phases
    finally:
        sim.execute('ALTER TABLE "UB_Transaction" RENAME COLUMN "LineDescription" TO "Description"')

    # Nothing changed since: an idle run makes no staging or temporary table at all.
    with psycopg.connect(portal_url) as conn:
        oid_before = conn.execute("SELECT max(oid::bigint) FROM pg_class").fetchone()[0]
    idle_run = client.trigger(dag_id)
    assert client.wait_for_runs({dag_id: idle_run}, timeout=600)[dag_id] == "success"
    with psycopg.connect(portal_url) as conn:
        made = conn.execute("SELECT count(*) FROM pg_class WHERE oid::bigint > %s", (oid_before,)).fetchone()[0]
        phases = dict(conn.execute(
            "SELECT dataset, rows_inserted + rows_updated + rows_deleted FROM sync.run_datasets d"
            " JOIN sync.runs r USING (run_key) WHERE r.airflow_run_id = %s", (idle_run,)).fetchall())
    assert made == 0
    assert phases == dict.fromkeys(DATASETS, 0), phases
    assert not differences(expected_portal(sim, "E2ETOWN", "America/Boise", DATASETS),
                           actual_portal(portal_url, "E2ETOWN", DATASETS))
