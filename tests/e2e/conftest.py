"""Airflows for the end-to-end tests (tests/e2e/airflowkit.py tells how they are made and shared).

- ``shared_airflow``: the session's one Airflow for every test module that declares
  ``AIRFLOW_COMMUNITIES``; per test, a handle that makes the test's sources where its connections
  point and pauses the test's DAGs afterwards. Such modules carry ``xdist_group("airflow")``, so
  under pytest-xdist they all run in the one worker that owns that Airflow (and its fixed port).
- ``private_airflow``: a factory of private instances, for tests that need another shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import airflowkit  # this folder is on sys.path (prepend import mode); one module object for e2e and faults
import pytest
from airflowkit import (  # noqa: F401  (fixtures)
    PrivateAirflow,
    airflow_template,
    shared_airflow,
    shared_airflow_instance,
)


@pytest.fixture(scope="module")
def private_airflow(tmp_path_factory) -> Iterator[Callable[..., PrivateAirflow]]:
    """Factory: private_airflow(communities=[...], sources={conn_id: sqlite_path}, port=..., portal_url=...,
    extra_env=None).

    ``extra_env`` is applied last, over everything the fixture sets (e.g. CPS_EXECUTOR=celery).
    """
    started: list[tuple[PrivateAirflow, str]] = []

    def start(communities: list[dict], sources: dict[str, Path], port: int, portal_url: str,
              extra_env: dict[str, str] | None = None) -> PrivateAirflow:
        connections = {"portal_db": airflowkit.portal_conn_json(portal_url)}
        connections.update({conn_id: airflowkit.sqlite_conn_json(path) for conn_id, path in sources.items()})
        airflow, db = airflowkit.start_airflow(tmp_path_factory.mktemp("airflow"), communities, connections, port,
                                               extra_env)
        started.append((airflow, db))
        return airflow

    yield start
    for airflow, db in started:
        airflowkit.stop_airflow(airflow, db)
