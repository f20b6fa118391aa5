"""End to end through a real Airflow: scheduler, dag processor, API server, LocalExecutor.

A simulated community is synced by triggering its DAG over the REST API; the portal
must then equal the contract's projection. Airflow runs from its own home, metadata
database and port, so it never disturbs a developer's demo instance.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml

from oracle import actual_portal, differences, expected_portal
from portal_sync.airflow_api import AirflowClient

pytestmark = [pytest.mark.airflow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
PORT = int(os.environ.get("CPS_E2E_AIRFLOW_PORT", "8187"))
DATASETS = ["accounts", "residents", "charges", "payments", "balances", "assessments"]


def _conn_json(conn_type: str, **fields) -> str:
    return json.dumps({"conn_type": conn_type, **fields})


@pytest.fixture(scope="module")
def airflow(tmp_path_factory, portal_url):
    """A private Airflow with one community whose Caselle is a simulated SQLite file."""
    from caselle_sim import SourceSpec, create_source

    home = tmp_path_factory.mktemp("airflow_e2e")
    source = SourceSpec.from_url(f"sqlite:///{home / 'e2e_caselle.db'}")
    sim = create_source(source, preset="tiny", seed=41, org_code="E2ETOWN", org_name="E2E Town",
                        time_zone="America/Boise", customer_number_mask="##-####")
    config = home / "communities.yaml"
    config.write_text(yaml.safe_dump({"communities": [{
        "code": "E2ETOWN", "name": "End-to-End Town", "caselle_conn_id": "caselle_e2etown",
        "time_zone": "America/Boise", "schedule": "0 3 * * *", "datasets": DATASETS,
    }]}))
    portal = psycopg.conninfo.conninfo_to_dict(portal_url)
    db = f"cps_test_airflow_{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home / "home"),
        "CPS_AIRFLOW_DB": db,
        "CPS_AIRFLOW_PORT": str(PORT),
        "PORTAL_SYNC_CONFIG": str(config),
        "AIRFLOW_CONN_PORTAL_DB": _conn_json("postgres", host=portal.get("host", "127.0.0.1"),
                                             port=int(portal.get("port", 5432)), login=portal.get("user", "postgres"),
                                             schema=portal["dbname"]),
        "AIRFLOW_CONN_CASELLE_E2ETOWN": _conn_json("odbc", schema=str(home / "e2e_caselle.db"),
                                                   extra={"driver": "SQLite3", "StepAPI": "1"}),
    }
    for key in [k for k in env if k.startswith("AIRFLOW__")]:
        del env[key]  # let scripts/env.sh derive everything from AIRFLOW_HOME and the port
    scripts = ROOT / "scripts"
    subprocess.run([str(scripts / "airflow-init.sh")], env=env, check=True, timeout=600)
    subprocess.run([str(scripts / "airflow-services.sh"), "start"], env=env, check=True, timeout=600)
    try:
        client = AirflowClient(f"http://127.0.0.1:{PORT}", "admin", env.get("CPS_AIRFLOW_PASSWORD", "admin"))
        yield client, sim
    finally:
        subprocess.run([str(scripts / "airflow-services.sh"), "stop"], env=env, timeout=300)
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        source.drop()


def test_a_triggered_run_syncs_the_community_through_airflow(airflow, portal_url):
    client, sim = airflow
    dag_id = "caselle_sync_e2etown"
    client.wait_for_dag(dag_id)
    client.set_paused(dag_id, False)
    run_id = client.trigger(dag_id)
    states = client.wait_for_runs({dag_id: run_id}, timeout=900)
    tasks = client.task_states(dag_id, run_id)
    assert states[dag_id] == "success", tasks
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
