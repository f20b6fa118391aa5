"""A private Airflow for end-to-end tests: own home, metadata database, port and config.

It uses the project's own scripts (scripts/airflow-init.sh, airflow-services.sh), so
the tests also prove the set-up a user runs; connections come from AIRFLOW_CONN_*
variables, which the scripts pass through to every component.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import yaml

from portal_sync.airflow_api import AirflowClient

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class PrivateAirflow:
    client: AirflowClient
    env: dict[str, str]
    home: Path

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run the airflow CLI against this instance (sourcing the project's env)."""
        command = ". scripts/env.sh && airflow " + " ".join(f"'{a}'" for a in args)
        return subprocess.run(["bash", "-c", command], cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=timeout)


def _conn_json(conn_type: str, **fields) -> str:
    return json.dumps({"conn_type": conn_type, **fields})


@pytest.fixture(scope="module")
def private_airflow(tmp_path_factory, portal_url) -> Iterator[callable]:
    """Factory: private_airflow(communities=[...], sources={conn_id: sqlite_path}, port=..., extra_env=None).

    ``extra_env`` is applied last, over everything the fixture sets (e.g. CPS_EXECUTOR=celery, or
    AIRFLOW_CONN_PORTAL_DB for another portal database).
    """
    started: list[tuple[dict, str]] = []

    def start(communities: list[dict], sources: dict[str, Path], port: int,
              extra_env: dict[str, str] | None = None) -> PrivateAirflow:
        home = tmp_path_factory.mktemp("airflow")
        config = home / "communities.yaml"
        config.write_text(yaml.safe_dump({"communities": communities}))
        portal = psycopg.conninfo.conninfo_to_dict(portal_url)
        db = f"cps_test_airflow_{uuid.uuid4().hex[:8]}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        env.update({
            "AIRFLOW_HOME": str(home / "home"),
            "CPS_AIRFLOW_DB": db,
            "CPS_AIRFLOW_PORT": str(port),
            "PORTAL_SYNC_CONFIG": str(config),
            "PORTAL_SYNC_REPORT_DIR": str(home / "reports"),
            "AIRFLOW_CONN_PORTAL_DB": _conn_json(
                "postgres", host=portal.get("host", "127.0.0.1"), port=int(portal.get("port", 5432)),
                login=portal.get("user", "postgres"), schema=portal["dbname"]),
        })
        for conn_id, path in sources.items():
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = _conn_json(
                "odbc", schema=str(path), extra={"driver": "SQLite3", "StepAPI": "1"})
        env.update(extra_env or {})
        subprocess.run([str(ROOT / "scripts" / "airflow-init.sh")], env=env, check=True, timeout=600)
        started.append((env, db))
        subprocess.run([str(ROOT / "scripts" / "airflow-services.sh"), "start"], env=env, check=True, timeout=600)
        client = AirflowClient(f"http://127.0.0.1:{port}", "admin", env.get("CPS_AIRFLOW_PASSWORD", "admin"))
        return PrivateAirflow(client, env, home)

    yield start
    for env, db in started:
        subprocess.run([str(ROOT / "scripts" / "airflow-services.sh"), "stop"], env=env, timeout=300)
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
