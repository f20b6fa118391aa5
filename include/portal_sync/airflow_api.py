"""A minimal client of Airflow 3's REST API (stdlib only), for the demo, tests and operators.

Going through the API server, not the metadata database, keeps these scripts on
Airflow's public interface: the same calls work against a remote deployment.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from portal_sync.config import Community

TERMINAL = {"success", "failed"}


class AirflowApiError(RuntimeError):
    pass


@dataclass
class AirflowClient:
    base_url: str
    username: str = "admin"
    password: str = "admin"
    _token: str | None = field(default=None, repr=False)

    def _request(self, method: str, path: str, body: dict | None = None, auth: bool = True) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url.rstrip("/") + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if auth:
            request.add_header("Authorization", f"Bearer {self.token()}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise AirflowApiError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:500]!r}") from exc
        return json.loads(payload) if payload else {}

    def token(self) -> str:
        if self._token is None:
            answer = self._request("POST", "/auth/token", {"username": self.username, "password": self.password},
                                   auth=False)
            self._token = answer["access_token"]
        return self._token

    def health(self) -> dict:
        return self._request("GET", "/api/v2/monitor/health", auth=False)

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> dict:
        """Wait until the dag processor has parsed the DAG into the metadata database."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._request("GET", f"/api/v2/dags/{dag_id}")
            except AirflowApiError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)

    def exists(self, path: str) -> bool:
        """Whether a GET of the path answers (False on HTTP 404; other errors raise)."""
        try:
            self._request("GET", path)
        except AirflowApiError as exc:
            if ": HTTP 404:" in str(exc):
                return False
            raise
        return True

    def deployment_problems(self, communities: Iterable[Community],
                            connection_elsewhere: Callable[[str], bool] = lambda conn_id: False) -> list[str]:
        """What a community needs in Airflow and does not have: its Caselle connection and its pool
        (a task waiting for a missing pool stalls without an error). The API lists only the metadata
        database's connections: ``connection_elsewhere`` finds those of environment variables and
        secrets backends."""
        problems = []
        for community in communities:
            conn_id = community.caselle_conn_id
            if not connection_elsewhere(conn_id) and not self.exists(
                    f"/api/v2/connections/{urllib.request.quote(conn_id, safe='')}"):
                problems.append(f"community {community.code}: Airflow has no connection "
                                f"{community.caselle_conn_id!r} (caselle_conn_id)")
            if not self.exists(f"/api/v2/pools/{urllib.request.quote(community.pool, safe='')}"):
                problems.append(f"community {community.code}: Airflow has no pool {community.pool!r} (pool): "
                                "its sync task would wait for it forever")
        return problems

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self._request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": paused})

    def trigger(self, dag_id: str, conf: dict | None = None, logical_date: str | None = None) -> str:
        run = self._request(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": logical_date, "conf": conf or {}}
        )
        return run["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id, safe='')}")[
            "state"
        ]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        answer = self._request(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id, safe='')}/taskInstances"
        )
        return {ti["task_id"]: ti["state"] for ti in answer["task_instances"]}

    def asset_events(self, uri: str) -> list[dict]:
        """Events of one asset (newest first), with their extra data."""
        assets = self._request("GET", f"/api/v2/assets?uri_pattern={urllib.request.quote(uri, safe='')}")["assets"]
        match = [a for a in assets if a["uri"] == uri]
        if not match:
            return []
        answer = self._request("GET", f"/api/v2/assets/events?asset_id={match[0]['id']}&order_by=-timestamp")
        return answer["asset_events"]

    def list_runs(self, dag_id: str) -> list[dict]:
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100")["dag_runs"]

    def wait_until_idle(self, dag_id: str, timeout: float = 900, expect: int = 1) -> list[dict]:
        """Wait until the DAG has at least ``expect`` runs and none queued or running; return them."""
        deadline = time.monotonic() + timeout
        while True:
            runs = self.list_runs(dag_id)
            if len(runs) >= expect and all(r["state"] in TERMINAL for r in runs):
                return runs
            if time.monotonic() > deadline:
                raise AirflowApiError(f"{dag_id}: runs still active after {timeout}s: "
                                      f"{[(r['dag_run_id'], r['state']) for r in runs]}")
            time.sleep(3)

    def wait_for_runs(self, runs: dict[str, str], timeout: float = 900) -> dict[str, str]:
        """Wait for {dag_id: run_id} to reach a terminal state; return their states."""
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while True:
            states = {dag_id: self.run_state(dag_id, run_id) for dag_id, run_id in runs.items()}
            if all(state in TERMINAL for state in states.values()) or time.monotonic() > deadline:
                return states
            time.sleep(3)
