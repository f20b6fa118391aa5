"""Great Expectations' cost in a first load and in an idle run (docs/benchmarks/gx.md).

    python benchmarks/gx_cost.py [town|city] [idle-first]

Builds the demo's SPRINGFLD (preset town or city, seed 11) in SQLite (kept in $TMPDIR for the next
run), syncs it into a fresh portal database with GX on, then runs an idle window; prints per run the
wall and CPU seconds of every GX suite validation (``gx_runner.validate_suite``), whether GX had been
imported, and the rows each data set read. Run on purpose, not by the tests.
"""
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg

from caselle_sim import SourceSpec, create_source
from portal_sync import gx_runner
from portal_sync.config import Community
from portal_sync.datasets import DATASET_NAMES
from portal_sync.migrate import migrate
from portal_sync.params import RunRequest
from portal_sync.pipeline import RunContext, run_sync

preset = sys.argv[1] if len(sys.argv) > 1 else "town"
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
name = f"cps_gxmeasure_{uuid.uuid4().hex[:6]}"
with psycopg.connect(ADMIN, autocommit=True) as c:
    c.execute(f'CREATE DATABASE "{name}"')
portal = f"postgresql://postgres@127.0.0.1:5432/{name}"
migrate(portal)
path = os.path.join(tempfile.gettempdir(), f"cps_gx_cost_{preset}.db")
t = time.monotonic()
if not os.path.exists(path):
    sim = create_source(SourceSpec.from_url(f"sqlite:///{path}"), preset=preset, seed=11, org_code="SPRINGFLD",
                        org_name="City of Springfield", time_zone="America/Denver", customer_number_mask="###-#####-##")
print("source built in", round(time.monotonic() - t, 1), "s", flush=True)
odbc = f"Driver={{SQLite3}};Database={path};StepAPI=1;"
calls = []
real = gx_runner.validate_suite
def timed(*a, **k):
    w, t0 = time.monotonic(), time.thread_time()
    imported = "great_expectations" in sys.modules
    try:
        return real(*a, **k)
    finally:
        calls.append({"suite": a[3]["name"], "wall": round(time.monotonic() - w, 2),
                      "thread_cpu": round(time.thread_time() - t0, 2), "gx_was_imported": imported})
gx_runner.validate_suite = timed
comm = Community(code="SPRINGFLD", caselle_conn_id="x", time_zone="America/Denver", datasets=DATASET_NAMES,
                 reconcile_schedule=None, parallel_datasets=1)
def run(run_id, interval=None):
    calls.clear()
    c0, w0 = time.process_time(), time.monotonic()
    out = run_sync(RunContext(comm, run_id, portal, odbc, use_gx=True, interval_start=interval[0] if interval else None,
                              interval_end=interval[1] if interval else None, request=RunRequest()))
    total = {"run_wall": round(time.monotonic() - w0, 1), "process_cpu": round(time.process_time() - c0, 1),
             "gx_wall": round(sum(c["wall"] for c in calls), 2), "gx_thread_cpu": round(sum(c["thread_cpu"] for c in calls), 2),
             "calls": calls[:], "gx_imported": "great_expectations" in sys.modules,
             "validate_seconds": {k: v.get("validate_seconds") for k, v in out.items()},
             "rows": {k: v.get("rows_extracted") for k, v in out.items()}}
    print(run_id, json.dumps(total, default=str), flush=True)
    with psycopg.connect(portal) as conn:
        print("gx_results rows:", conn.execute("SELECT count(*), count(*) FILTER (WHERE NOT success) FROM sync.gx_results r JOIN sync.runs USING (run_key) WHERE airflow_run_id=%s", (run_id,)).fetchone())
now = datetime.now(UTC)
if len(sys.argv) > 2 and sys.argv[2] == "idle-first":
    run("idle", (now - timedelta(minutes=15), now))
    run("first")
else:
    run("first")
    run("idle", (now - timedelta(minutes=15), now))
with psycopg.connect(ADMIN, autocommit=True) as c:
    c.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
