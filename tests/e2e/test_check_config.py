"""`portal-sync check-config` against a running Airflow: a community's missing pool or connection is named.

A missing pool stalls a task silently (it waits for a slot forever), so the check is worth a real API.
Runs on the session's shared Airflow (tests/e2e/airflowkit.py).
"""

from __future__ import annotations

import pytest
import yaml

from portal_sync import cli

pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.xdist_group("airflow")]

AIRFLOW_COMMUNITIES = [{"code": "CHECKTOWN", "caselle_conn_id": "caselle_checktown", "time_zone": "America/Denver",
                        "schedule": "0 3 29 2 *", "datasets": ["accounts"]}]


def test_check_config_names_a_missing_pool_and_connection(shared_airflow, tmp_path, monkeypatch, capsys):
    airflow = shared_airflow
    airflow.make_source("CHECKTOWN", seed=5, org_name="Check Town", time_zone="America/Denver")
    airflow.client.wait_for_dag("caselle_sync_checktown")
    config = tmp_path / "communities.yaml"
    config.write_text(yaml.safe_dump({"communities": [
        {"code": "CHECKTOWN", "caselle_conn_id": "caselle_checktown", "time_zone": "America/Denver"},
        {"code": "NOPOOL", "caselle_conn_id": "caselle_checktown", "pool": "no_such_pool",
         "time_zone": "America/Denver"},
        {"code": "NOCONN", "caselle_conn_id": "caselle_nowhere", "time_zone": "America/Denver"},
    ]}))
    monkeypatch.setenv("PORTAL_SYNC_CONFIG", str(config))
    monkeypatch.setenv("AIRFLOW_CONN_CASELLE_CHECKTOWN", '{"conn_type": "odbc", "host": "x"}')
    url = airflow.client.base_url
    assert cli.main(["check-config", "--airflow-url", url, "--airflow-password", airflow.client.password]) == 1
    out = capsys.readouterr().out
    assert "community NOPOOL: Airflow has no pool 'no_such_pool'" in out
    assert "community NOCONN: Airflow has no connection 'caselle_nowhere'" in out
    assert "CHECKTOWN: Airflow" not in out  # its connection (an environment variable) and pool exist
    # no Airflow answering: the configuration is still checked, and the rest is said to be unchecked
    assert cli.main(["check-config", "--airflow-url", "http://127.0.0.1:9"]) == 0
    assert "not checked" in capsys.readouterr().out
