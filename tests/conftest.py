"""Shared fixtures: a throw-away portal database and simulated Caselle sources.

Every test session gets its own PostgreSQL database (dropped at the end); every
source a test asks for is created for that test and dropped after it. Under pytest-xdist
(scripts/test.sh runs the suite with ``-n 3 --dist loadgroup``) each worker is a session of
its own, with its own portal database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from pgtest import PG_HOST, PG_PORT, migrated_database
from psycopg import sql

MARIADB_URL_BASE = os.environ.get("CPS_TEST_MARIADB", "mariadb://root@127.0.0.1:3306")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep each module whose tests share a module-scoped fixture (a seeded database, a private server,
    a built source) in one pytest-xdist work unit, so it is built once, not once per worker. Tests that
    name their own ``xdist_group`` (the Airflow tests) keep it.

    The Airflow tests go first (stable order otherwise): their groups are the longest work units, and
    with ``--no-loadscope-reorder`` xdist deals units out in collection order, so they start at once
    and the short tests fill the gaps."""
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        info = getattr(item, "_fixtureinfo", None)
        defs = info.name2fixturedefs.values() if info else ()
        if any(d[-1].scope in ("module", "package", "class") for d in defs if d):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
    items.sort(key=lambda item: item.get_closest_marker("airflow") is None)
    if getattr(config.option, "loadgroup", False):  # a pytest-xdist worker under --dist loadgroup
        for item in items:
            names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                            for m in item.iter_markers("xdist_group")})
            if names:
                _suffix_nodeid(item, "@" + "_".join(names))


def _suffix_nodeid(item: pytest.Item, suffix: str) -> None:
    """What pytest-xdist 3.8 does to send an xdist_group to one worker (its scheduler reads the group from
    the ``@name`` suffix of the test id); its own hook sets ``item._nodeid``, which pytest 9 no longer reads
    (the id lives in ``item._id``), so every test would be a unit of its own."""
    if item.nodeid.endswith(suffix):
        return
    try:
        from _pytest.nodeid import coerce_node_id
    except ImportError:  # pytest before 9: xdist's own hook works
        return
    item._id = coerce_node_id(item.nodeid + suffix)


@pytest.fixture(scope="session", autouse=True)
def report_dir(tmp_path_factory) -> Iterator[Path]:
    """Data-quality reports of test runs go to a temporary folder, never to the demo's .airflow/."""
    folder = tmp_path_factory.mktemp("dq_reports")
    previous = os.environ.get("PORTAL_SYNC_REPORT_DIR")
    os.environ["PORTAL_SYNC_REPORT_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("PORTAL_SYNC_REPORT_DIR", None)
    else:
        os.environ["PORTAL_SYNC_REPORT_DIR"] = previous


@pytest.fixture(scope="session")
def portal_url() -> Iterator[str]:
    """A migrated portal database for this test session."""
    with migrated_database("cps_test_portal") as url:
        yield url


@pytest.fixture
def portal(portal_url: str) -> Iterator[str]:
    """The session portal database, emptied before the test."""
    with psycopg.connect(portal_url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname IN ('portal', 'sync')"
        ).fetchall()
        conn.execute("TRUNCATE " + ", ".join(t[0] for t in tables) + " CASCADE")
        # Communities' partitions go too: each test's first load makes its own, as in production.
        for schema in ("stage", "portal_part"):
            for (name,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)).fetchall():
                conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, name)))
    yield portal_url


@pytest.fixture
def make_source(tmp_path: Path) -> Iterator[Callable[..., object]]:
    """Factory: make_source(engine, preset="tiny", seed=1, **create_kwargs) -> caselle_sim.Simulator."""
    from caselle_sim import SourceSpec, create_source

    made = []

    def factory(engine: str = "sqlite", preset: str = "tiny", seed: int = 1, **kwargs):
        tag = uuid.uuid4().hex[:8]
        if engine == "sqlite":
            url = f"sqlite:///{tmp_path / f'caselle_{tag}.db'}"
        elif engine == "postgresql":
            url = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/cps_test_src_{tag}"
        elif engine == "mariadb":
            url = f"{MARIADB_URL_BASE}/cps_test_src_{tag}"
        else:
            raise ValueError(engine)
        spec = SourceSpec.from_url(url)
        made.append(spec)
        kwargs.setdefault("org_code", "SPRINGFLD")
        kwargs.setdefault("org_name", "City of Springfield")
        kwargs.setdefault("time_zone", "America/Denver")
        kwargs.setdefault("customer_number_mask", "###-#####-##")
        return create_source(spec, preset=preset, seed=seed, **kwargs)

    yield factory
    for spec in made:
        spec.drop()
