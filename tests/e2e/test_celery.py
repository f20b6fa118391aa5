"""The same DAG under CeleryExecutor (Redis broker, PostgreSQL result backend, two workers)
publishes exactly what it publishes under LocalExecutor.

One simulated community is synced twice from the same source: by a LocalExecutor Airflow
into portal database A, then by a CeleryExecutor Airflow with two workers into portal
database B. Both runs must succeed, the Celery run's tasks must have run on both workers
(each worker has its own working and temporary directory: a task that needed another
task's files or memory would fail), and A and B must hold the same rows in every
portal.* table, apart from the times that record when the sync ran.

A good run starts two task instances, ``sync`` and ``freshness`` (the mapped ``failed`` has
none: skipped), which one worker may well both take; then the Celery DAG is run again (idle
runs: the source has not changed) until each worker has run a task of it, at most
``MAX_CELERY_RUNS`` runs in all.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

# Its own group: under pytest-xdist it runs beside the shared Airflow's tests (its ports differ).
pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.xdist_group("celery")]

ROOT = Path(__file__).resolve().parents[2]
PORT = int(os.environ.get("CPS_E2E_CELERY_PORT", "8190"))
# Log servers: worker 1 on LOG_PORT, worker 2 on LOG_PORT + 1, the triggerer on LOG_PORT + 2.
# Explicit, because env.sh's API port + 713/714 collides with an instance on the next port down.
LOG_PORT = int(os.environ.get("CPS_E2E_CELERY_LOG_PORT", "8970"))
REDIS_HOST = os.environ.get("CPS_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("CPS_REDIS_PORT", "6379"))
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
CODE, TZ = "CELERYTWN", "America/Boise"
DAG_ID = f"caselle_sync_{CODE.lower()}"
DATASETS = ["accounts", "residents", "charges", "payments", "balances", "assessments"]
RUN_TIME_COLUMNS = {"synced_at", "source_read_at"}  # when the sync ran: differ between any two runs
RUN_TIME_FLAGS = {"deleted_at", "archived_at"}  # when the sync noticed: compared as set / not set
MAX_CELERY_RUNS = 4
GOOD_RUN = {"sync": "success", "failed": "skipped", "freshness": "success"}


@pytest.fixture
def redis_db() -> Iterator[int]:
    """An empty Redis database for the broker, flushed afterwards."""
    redis = pytest.importorskip("redis")
    try:
        sizes = {n: redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=n).dbsize() for n in range(1, 16)}
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {REDIS_HOST}:{REDIS_PORT} (the Celery broker): {exc}")
    free = [n for n, size in sizes.items() if size == 0]
    if not free:
        pytest.skip("no empty Redis database among 1-15")
    db = random.choice(free)
    yield db
    redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db).flushdb()


@pytest.fixture
def portal_dbs() -> Iterator[tuple[str, str]]:
    """Two fresh, migrated portal databases (A for LocalExecutor, B for Celery), dropped afterwards."""
    from portal_sync.migrate import migrate

    names = [f"cps_test_portal_{tag}_{uuid.uuid4().hex[:8]}" for tag in ("local", "celery")]
    urls = []
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            urls.append(f"postgresql://postgres@127.0.0.1:5432/{name}")
    try:
        for url in urls:
            migrate(url)
        yield urls[0], urls[1]
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            for name in names:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def task_instances(client, dag_id: str, run_id: str) -> list[dict]:
    path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances?limit=100"
    return client._request("GET", path)["task_instances"]


def ran_on(tis: list[dict]) -> set[str]:
    """The hosts that ran these task instances (a skipped one ran nowhere)."""
    return {ti["hostname"] for ti in tis if ti["state"] != "skipped"}


def sync_once(private_airflow, source_path: str, portal_url: str, extra_env: dict[str, str]):
    """Start an Airflow, run the community's DAG once, return (airflow, run_id, state, task instances)."""
    community = {"code": CODE, "name": "Celery Town", "caselle_conn_id": "caselle_celerytwn", "time_zone": TZ,
                 # no scheduled run: unpausing must not start one next to the triggered run
                 "start_date": "2099-01-01", "schedule": "0 3 * * *", "datasets": DATASETS}
    env = {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(LOG_PORT),
           "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(LOG_PORT + 2), **extra_env}
    airflow = private_airflow([community], {"caselle_celerytwn": source_path}, PORT, portal_url, extra_env=env)
    client = airflow.client
    client.wait_for_dag(DAG_ID)
    client.set_paused(DAG_ID, False)
    run_id = client.trigger(DAG_ID)
    state = client.wait_for_runs({DAG_ID: run_id}, timeout=600)[DAG_ID]
    return airflow, run_id, state, task_instances(client, DAG_ID, run_id)


def stop(airflow) -> None:
    """Stop an instance before the next one takes its ports (the fixture's own stop is then a no-op)."""
    subprocess.run([str(ROOT / "scripts" / "airflow-services.sh"), "stop"], env=airflow.env, check=True, timeout=300)


def portal_state(url: str) -> dict[str, list[tuple]]:
    """Every row of every portal.* table, run times left out (or reduced to set / not set), sorted."""
    state = {}
    with psycopg.connect(url) as conn:
        tables = [t for (t,) in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'portal'"
            " AND table_type = 'BASE TABLE' ORDER BY table_name").fetchall()]
        for table in tables:
            columns = [c for (c,) in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'portal'"
                " AND table_name = %s ORDER BY ordinal_position", (table,)).fetchall()]
            select = [sql.SQL("{} IS NOT NULL").format(sql.Identifier(c)) if c in RUN_TIME_FLAGS
                      else sql.Identifier(c) for c in columns if c not in RUN_TIME_COLUMNS]
            rows = conn.execute(sql.SQL("SELECT {} FROM portal.{}").format(
                sql.SQL(", ").join(select), sql.Identifier(table))).fetchall()
            state[table] = sorted(rows, key=repr)
    return state


def test_a_celery_run_with_two_workers_publishes_what_a_local_run_publishes(
        private_airflow, make_source, redis_db, portal_dbs):
    started = time.monotonic()
    portal_a, portal_b = portal_dbs
    sim = make_source("sqlite", seed=47, org_code=CODE, org_name="Celery Town", time_zone=TZ,
                      customer_number_mask="##-####")
    source = sim.spec.url.removeprefix("sqlite:///")

    local, local_run, local_state, local_tis = sync_once(private_airflow, source, portal_a, {"CPS_EXECUTOR": "local"})
    stop(local)
    local_seconds = time.monotonic() - started

    celery, celery_run, celery_state, celery_tis = sync_once(
        private_airflow, source, portal_b,
        {"CPS_EXECUTOR": "celery", "CPS_CELERY_WORKERS": "2", "CPS_CELERY_CONCURRENCY": "2",
         "CPS_REDIS_HOST": REDIS_HOST, "CPS_REDIS_PORT": str(REDIS_PORT), "CPS_CELERY_REDIS_DB": str(redis_db)})
    celery_seconds = time.monotonic() - started - local_seconds

    summary = {ti["task_id"]: (ti["state"], ti["hostname"]) for ti in celery_tis}
    assert local_state == "success", {ti["task_id"]: ti["state"] for ti in local_tis}
    assert celery_state == "success", summary
    assert {ti["task_id"]: ti["state"] for ti in local_tis} == GOOD_RUN, local_tis
    assert {ti["task_id"]: ti["state"] for ti in celery_tis} == GOOD_RUN, summary
    celery_runs = [celery_run]
    while len(ran_on(celery_tis)) < 2 and len(celery_runs) < MAX_CELERY_RUNS:
        run_id = celery.client.trigger(DAG_ID)
        celery_runs.append(run_id)
        assert celery.client.wait_for_runs({DAG_ID: run_id}, timeout=600)[DAG_ID] == "success", run_id
        more = task_instances(celery.client, DAG_ID, run_id)
        assert {ti["task_id"]: ti["state"] for ti in more} == GOOD_RUN, more
        celery_tis += more
    summary = [(ti["task_id"], ti["state"], ti["hostname"]) for ti in celery_tis]
    hosts = ran_on(celery_tis)
    assert hosts == {"cps-worker-1", "cps-worker-2"}, f"tasks must run on both workers and only there: {summary}"

    # the Celery run went through Redis and stored its task results in PostgreSQL
    import redis

    assert redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=redis_db).exists("_kombu.binding.default")
    # (a task instance reports success before its Celery task returns: give the last ones a moment)
    airflow_db = celery.env["CPS_AIRFLOW_DB"]
    ran = [ti for ti in celery_tis if ti["state"] != "skipped"]  # a skipped task was never sent to Celery
    deadline = time.monotonic() + 30
    while True:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{airflow_db}") as conn:
            results = dict(conn.execute("SELECT status, count(*) FROM celery_taskmeta GROUP BY status").fetchall())
        if results.get("SUCCESS", 0) >= len(ran) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert results.get("SUCCESS", 0) >= len(ran), results

    for url, run_id in ((portal_a, local_run), (portal_b, celery_run)):
        with psycopg.connect(url) as conn:
            outcome = conn.execute("SELECT outcome FROM sync.runs WHERE community_code = %s AND airflow_run_id = %s",
                                   (CODE, run_id)).fetchone()
        assert outcome == ("published",), (url, run_id, outcome)

    state_a, state_b = portal_state(portal_a), portal_state(portal_b)
    assert set(state_a) == set(state_b)
    assert len(state_a["accounts"]) > 0 and len(state_a["charges"]) > 0, {t: len(r) for t, r in state_a.items()}
    for table in sorted(state_a):
        only_a = set(state_a[table]) - set(state_b[table])
        only_b = set(state_b[table]) - set(state_a[table])
        assert state_a[table] == state_b[table], (
            f"portal.{table}: {len(state_a[table])} rows (local) vs {len(state_b[table])} (celery); "
            f"only local: {sorted(only_a, key=repr)[:3]}; only celery: {sorted(only_b, key=repr)[:3]}")
    print(f"\nlocal run {local_seconds:.0f}s, celery run {celery_seconds:.0f}s; {len(celery_runs)} celery run(s),"
          " tasks per worker: "
          + ", ".join(f"{h}: {sum(ti['hostname'] == h for ti in celery_tis)}" for h in sorted(hosts)))
