"""Private Airflows for the end-to-end and fault tests: own home, metadata database, port and config.

They use the project's own scripts (scripts/airflow-init.sh, airflow-services.sh), so the tests also
prove the set-up a user runs; connections come from AIRFLOW_CONN_* variables, which the scripts pass
through to every component.

Starting an Airflow (metadata schema, four components, the first parse) and stopping it costs more
than most of the tests that use one, so the tests that can share one do: each test module declares
the communities it needs (``AIRFLOW_COMMUNITIES``), and one Airflow per test session serves all of
them, each test with its own community codes, DAGs and source files. That instance has its own
portal database (no other test empties it under a running task) and its tasks log in to it as a
member of the writer group with a password (the least privilege a deployment gives them, and a
secret the log-scanning test looks for). Tests that need an Airflow of another shape (another
executor, another portal database) start a private one with ``start_airflow``.

Imported as a plain module (``airflowkit``) by tests/e2e/conftest.py and tests/faults/conftest.py,
so both see the same session-wide instance.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
import yaml
from psycopg import sql

from portal_sync.airflow_api import TERMINAL, AirflowApiError, AirflowClient

ROOT = Path(__file__).resolve().parents[2]
PG_HOST = os.environ.get("CPS_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("CPS_TEST_PG_PORT", "5432"))
ADMIN_URL = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"
SHARED_PORT = int(os.environ.get("CPS_E2E_AIRFLOW_PORT", "8187"))


@dataclass
class PrivateAirflow:
    client: AirflowClient
    env: dict[str, str]
    home: Path  # holds communities.yaml, the Airflow home (home/) and the report folder (reports/)

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run the airflow CLI against this instance (sourcing the project's env)."""
        command = ". scripts/env.sh && airflow " + " ".join(f"'{a}'" for a in args)
        return subprocess.run(["bash", "-c", command], cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def stop(self) -> None:
        subprocess.run([str(ROOT / "scripts" / "airflow-services.sh"), "stop"], env=self.env, timeout=300)
        _release_port(int(self.env["CPS_AIRFLOW_PORT"]))


_port_locks: dict[int, object] = {}


def _claim_port(port: int, timeout: float = 900) -> None:
    """Hold an exclusive lock on ``port`` for as long as our instance runs: two test processes (xdist
    workers, or two sessions) that would start an Airflow on one port take turns instead of both starting,
    one of them answering the other's health checks."""
    if port in _port_locks:
        return
    handle = open(f"/tmp/cps-test-airflow-{port}.lock", "w")  # noqa: SIM115  (held until _release_port)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                handle.close()
                raise RuntimeError(f"port {port}: another test process kept its Airflow for {timeout:.0f} s") from None
            time.sleep(2)
    _port_locks[port] = handle


def _release_port(port: int) -> None:
    handle = _port_locks.pop(port, None)
    if handle is not None:
        handle.close()


def conn_json(conn_type: str, **fields) -> str:
    return json.dumps({"conn_type": conn_type, **fields})


def portal_conn_json(url: str, login: str | None = None, password: str | None = None) -> str:
    """An Airflow connection (JSON) to the portal database of ``url``, as ``login`` when given."""
    portal = psycopg.conninfo.conninfo_to_dict(url)
    fields = {"host": portal.get("host", "127.0.0.1"), "port": int(portal.get("port", 5432)),
              "login": login or portal.get("user", "postgres"), "schema": portal["dbname"]}
    if password is not None:
        fields["password"] = password
    return conn_json("postgres", **fields)


def sqlite_conn_json(path: Path | str, **fields) -> str:
    return conn_json("odbc", schema=str(path), extra={"driver": "SQLite3", "StepAPI": "1"}, **fields)


def start_airflow(base: Path, communities: list[dict], connections: dict[str, str], port: int,
                  extra_env: dict[str, str] | None = None) -> tuple[PrivateAirflow, str]:
    """Initialise and start an Airflow under ``base`` serving ``communities``; return it and its
    metadata database's name. ``connections`` maps a connection id to its JSON (AIRFLOW_CONN_*);
    ``extra_env`` is applied last, over everything set here."""
    config = base / "communities.yaml"
    config.write_text(yaml.safe_dump({"communities": communities}))
    db = f"cps_test_airflow_{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update({
        "AIRFLOW_HOME": str(base / "home"),
        "CPS_AIRFLOW_DB": db,
        "CPS_AIRFLOW_PORT": str(port),
        "PORTAL_SYNC_CONFIG": str(config),
        "PORTAL_SYNC_REPORT_DIR": str(base / "reports"),
    })
    env.update({f"AIRFLOW_CONN_{conn_id.upper()}": value for conn_id, value in connections.items()})
    env.update(extra_env or {})
    airflow = PrivateAirflow(AirflowClient(f"http://127.0.0.1:{port}", "admin", env.get("CPS_AIRFLOW_PASSWORD",
                                                                                          "admin")), env, base)
    _claim_port(port)
    try:
        cloned = _clone_template(db)
        subprocess.run([str(ROOT / "scripts" / "airflow-init.sh")], env=env, check=True, timeout=600)
        if not cloned:
            _keep_as_template(db)
        subprocess.run([str(ROOT / "scripts" / "airflow-services.sh"), "start"], env=env, check=True, timeout=600)
    except BaseException:
        stop_airflow(airflow, db)
        raise
    return airflow, db


_template: str | None = None


def _clone_template(db: str) -> bool:
    """Create ``db`` as a copy of this process's first migrated metadata database, if there is one: the
    init script then finds the schema current and the settings loaded, and skips `airflow db migrate`."""
    if _template is None:
        return False
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(db), sql.Identifier(_template)))
    return True


def _keep_as_template(db: str) -> None:
    """Copy a just-initialised metadata database (nothing is connected to it yet) as the template."""
    global _template
    name = f"cps_test_airflow_tmpl_{uuid.uuid4().hex[:8]}"
    for _ in range(20):
        try:
            with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                              sql.Identifier(db)))
        except psycopg.errors.ObjectInUse:  # the init's last sessions are still closing
            time.sleep(0.5)
            continue
        except psycopg.Error:
            return  # no template: every start migrates its own database, as without one
        _template = name
        return


@pytest.fixture(scope="session", autouse=True)
def airflow_template() -> Iterator[None]:
    """Drops the template metadata database at the end of the session."""
    global _template
    yield
    if _template is not None:
        name, _template = _template, None
        drop_database(name)


def stop_airflow(airflow: PrivateAirflow, db: str) -> None:
    """Stop the components, then drop the metadata database."""
    airflow.stop()
    drop_database(db)


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def create_portal_database(prefix: str) -> tuple[str, str]:
    """A fresh, migrated portal database: (name, URL as the admin)."""
    from portal_sync.migrate import migrate

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(ADMIN_URL, dbname=name)
    migrate(url)
    return name, url


# --------------------------------------------------------------------------- the shared instance


@dataclass
class SharedAirflow(PrivateAirflow):
    """The session's shared Airflow: its portal database and the files its communities' sources live in."""

    db: str = ""
    portal_db: str = ""
    portal_url: str = ""  # as the admin: tests read, lock and check through it
    portal_login: str = ""  # what the tasks log in as (writer group), with portal_password
    portal_password: str = ""
    sources: Path = Path()
    communities: dict[str, dict] = field(default_factory=dict)

    def source_path(self, code: str) -> Path:
        """Where the SQLite source of community ``code`` must be (its connection points there)."""
        return self.sources / f"{self.communities[code]['caselle_conn_id']}.db"


_shared: SharedAirflow | None = None


def declared(modules: Iterable[object]) -> tuple[list[dict], dict[str, dict]]:
    """The communities (and extra connection fields) the given test modules declare for the shared Airflow."""
    communities: dict[str, dict] = {}
    connections: dict[str, dict] = {}
    for module in modules:
        for community in getattr(module, "AIRFLOW_COMMUNITIES", ()):
            if community["code"] in communities:
                raise ValueError(f"community {community['code']} is declared by two test modules")
            communities[community["code"]] = community
        connections.update(getattr(module, "AIRFLOW_CONNECTIONS", {}))
    return list(communities.values()), connections


def get_shared_airflow(modules: Iterable[object], base: Path, sources: Path) -> SharedAirflow:
    """The session's shared Airflow, started at the first call for every community ``modules`` declare."""
    global _shared
    if _shared is not None:
        return _shared
    communities, extra = declared(modules)
    if not communities:
        raise ValueError("no test module declares AIRFLOW_COMMUNITIES")
    from portal_sync import roles

    portal_db, portal_url = create_portal_database("cps_test_e2e_portal")
    login, password = f"cps_e2e_writer_{uuid.uuid4().hex[:8]}", f"Pw-Marker-{uuid.uuid4()}"
    airflow = None
    try:
        with psycopg.connect(portal_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(login),
                                                                            sql.Literal(password)))
            roles.grant_writer(conn, login)
        connections = {"portal_db": portal_conn_json(portal_url, login, password)}
        for community in communities:
            conn_id = community["caselle_conn_id"]
            connections[conn_id] = sqlite_conn_json(sources / f"{conn_id}.db", **extra.get(conn_id, {}))
        airflow, db = start_airflow(base, communities, connections, SHARED_PORT)
    except BaseException:
        _drop_portal(portal_db, login)
        raise
    _shared = SharedAirflow(airflow.client, airflow.env, airflow.home, db=db, portal_db=portal_db,
                            portal_url=portal_url, portal_login=login, portal_password=password, sources=sources,
                            communities={c["code"]: c for c in communities})
    return _shared


def stop_shared_airflow() -> None:
    global _shared
    if _shared is None:
        return
    shared, _shared = _shared, None
    try:
        stop_airflow(shared, shared.db)
    finally:
        _drop_portal(shared.portal_db, shared.portal_login)


def _drop_portal(portal_db: str, login: str) -> None:
    drop_database(portal_db)
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))


class SharedUse:
    """One test's use of the shared Airflow: the sources it made and the DAGs it unpaused, undone after."""

    def __init__(self, airflow: SharedAirflow) -> None:
        self.airflow = airflow
        self._specs: list = []
        self._dags: list[str] = []

    def __getattr__(self, name: str):
        return getattr(self.airflow, name)

    def make_source(self, code: str, preset: str = "tiny", seed: int = 1, **kwargs):
        """The SQLite source of community ``code`` (at the path its connection names): caselle_sim.Simulator."""
        from caselle_sim import SourceSpec, create_source

        spec = SourceSpec.from_url(f"sqlite:///{self.airflow.source_path(code)}")
        self._specs.append(spec)
        kwargs.setdefault("org_code", code)
        kwargs.setdefault("org_name", "City of Springfield")
        kwargs.setdefault("time_zone", "America/Denver")
        kwargs.setdefault("customer_number_mask", "###-#####-##")
        return create_source(spec, preset=preset, seed=seed, **kwargs)

    def unpause(self, dag_id: str) -> None:
        self._dags.append(dag_id)
        self.airflow.client.set_paused(dag_id, False)

    def close(self) -> None:
        """Pause the test's DAGs and end what they still run (a failed test may leave runs behind), so the
        next test has the scheduler to itself; then drop the test's sources."""
        client = self.airflow.client
        try:
            for dag_id in self._dags:
                client.set_paused(dag_id, True)
                for run in client.list_runs(dag_id):
                    if run["state"] not in TERMINAL:
                        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run['dag_run_id'], safe='')}"
                        client._request("PATCH", path, {"state": "failed"})
            deadline = time.monotonic() + 60
            while self._dags and time.monotonic() < deadline and _running_tasks(self.airflow):
                time.sleep(1)
        except AirflowApiError:
            pass
        finally:
            for spec in self._specs:
                spec.drop()


@pytest.fixture(scope="session")
def shared_airflow_instance(request, tmp_path_factory) -> Iterator[SharedAirflow]:
    """The session's shared Airflow, for every community the collected test modules declare."""
    modules = {item.module for item in request.session.items if hasattr(item, "module")}
    base, sources = tmp_path_factory.mktemp("airflow"), tmp_path_factory.mktemp("airflow_sources")
    yield get_shared_airflow(modules, base, sources)
    stop_shared_airflow()


@pytest.fixture
def shared_airflow(shared_airflow_instance) -> Iterator[SharedUse]:
    """One test's handle on the shared Airflow (see SharedUse)."""
    use = SharedUse(shared_airflow_instance)
    try:
        yield use
    finally:
        use.close()


def _running_tasks(airflow: SharedAirflow) -> bool:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND usename = %s",
            (airflow.portal_db, airflow.portal_login)).fetchone()[0] > 0
