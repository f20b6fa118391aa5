"""Fixtures of the fault tests: private PostgreSQL and MariaDB servers the tests may stop and kill, a
town-sized source that makes reads last long enough to strike during them, and the session's shared
Airflow (tests/e2e/airflowkit.py).

The shared PostgreSQL (5432) and MariaDB (3306) are never stopped: an outage is always
staged on a private server that this package creates and removes.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from faultkit import PrivateMariaDB, PrivatePostgres, build_source

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from airflowkit import airflow_template, shared_airflow, shared_airflow_instance  # noqa: E402, F401  (tests/e2e's)

# Under pytest-xdist each worker starts its private servers from its own port (gw0 5499, gw1 5549, ...):
# two modules that run at once never race for the same free port (_free_port looks 40 ports up).
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
FAULT_PG_PORT = int(os.environ.get("CPS_FAULT_PG_PORT", "5499")) + 50 * _WORKER
FAULT_MARIADB_PORT = int(os.environ.get("CPS_FAULT_MARIADB_PORT", "3399")) + 50 * _WORKER


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL 15 cluster (trust auth, 127.0.0.1), stopped and removed afterwards."""
    pg = PrivatePostgres.create(Path(f"/tmp/cps_faultpg_{uuid.uuid4().hex[:8]}"), FAULT_PG_PORT)
    try:
        yield pg
    finally:
        pg.destroy()


@pytest.fixture(scope="module")
def private_mariadb() -> Iterator[PrivateMariaDB]:
    """A private MariaDB server (its own data directory, socket and port, 127.0.0.1 only), which the
    test may kill and restart; ended and removed afterwards. The shared server on 3306 is never touched."""
    db = PrivateMariaDB.create(Path(f"/tmp/cps_faultmdb_{uuid.uuid4().hex[:8]}"), FAULT_MARIADB_PORT)
    try:
        yield db
    finally:
        db.destroy()


@pytest.fixture(scope="module")
def village(tmp_path_factory):
    """A quarter of a `town` (800 accounts, about 150 k ledger lines) in SQLite, built once per module:
    big enough that a read, a COPY or a merge lasts long enough to strike during it."""
    from caselle_sim import Preset

    sim = build_source(tmp_path_factory.mktemp("village") / "village.db", Preset("village", 800), seed=21)
    yield sim
    sim.close()
    sim.spec.drop()
