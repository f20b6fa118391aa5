"""Soak: a `town` community syncing every minute for thirty minutes while the simulator changes it,
then a reconciliation that must find nothing to fix. Not a test: run it on purpose.

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--no-gx] [--workdir DIR] [--keep]

How it runs (pipeline loop, not Airflow): the simulated Caselle (``town``: about 3,000 accounts,
0.6 M ledger lines, in SQLite) works in its own process, its clock following ours, at the
simulator's default activity rates. This process is the worker: after a first full sync it runs
one sync per minute for the data interval of a ``* * * * *`` schedule that just ended
([minute - 1, minute), as Airflow's CronDataIntervalTimetable gives it), calling the pipeline's steps
one after the other the way the DAG's tasks do (prepare, extract and validate per data set, publish,
cleanup, report), with Great Expectations on unless ``--no-gx``. A run that overruns its minute
delays the next one (max_active_runs=1). The Airflow scheduler and the task processes' start-up are
not part of the numbers: tests/e2e measure those.

At the end the simulator stops, one more scheduled run catches up with its last minute, and a
full reconciliation (all keys, all history) runs: its inserted/updated/deleted/restored/archived
counts must all be zero, and the portal must equal the contract's projection (tests/oracle.py).

It reports the duration of each step (median, worst), of whole runs, how many started late, the
growth of the portal database (total, per schema) and of the source, and the worker's memory
(RSS after each run, peak). The numbers go to stdout and to <workdir>/soak.json. Exit status 0
when the reconciliation found nothing to fix and the portal equals the projection, else 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import resource
import statistics
import sys
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psutil
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT / "tests")]

ADMIN_URL = os.environ.get("CPS_SOAK_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CODE = "SOAKTOWN"
TZ = "America/Denver"
FIX_COUNTS = ("rows_inserted", "rows_updated", "rows_deleted", "rows_restored", "rows_archived")

log = logging.getLogger("soak")


def simulator(url: str, stop, stats) -> None:
    """The city at work: evolve the source so its clock follows ours, until told to stop."""
    from caselle_sim import open_source

    with open_source(url) as sim:
        while not stop.is_set():
            behind = datetime.now(UTC) - sim.now_utc
            if behind >= timedelta(seconds=5):
                changes = sim.evolve(behind)
                for table, (ins, upd, dele) in changes.counts().items():
                    stats[f"{table}.inserted"] = stats.get(f"{table}.inserted", 0) + ins
                    stats[f"{table}.updated"] = stats.get(f"{table}.updated", 0) + upd
                    stats[f"{table}.deleted"] = stats.get(f"{table}.deleted", 0) + dele
                stats["units_of_work"] = stats.get("units_of_work", 0) + 1
            time.sleep(1)


def sizes(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        out = {"database": conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]}
        for schema, size in conn.execute(
                "SELECT n.nspname, coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN ('portal', 'sync', 'stage')"
                " AND c.relkind IN ('r', 'm') GROUP BY 1").fetchall():
            out[schema] = int(size)
    return out


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


class RssSampler(threading.Thread):
    """The worker's resident memory, sampled every 0.2 s while the soak runs (its maximum)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_mib())
            time.sleep(0.2)


def run_once(comm, portal: str, odbc: str, run_id: str, interval, use_gx: bool, timings, request=None) -> dict:
    """One run, step by step like the DAG's tasks; every step's wall time is recorded."""
    from portal_sync import pipeline
    from portal_sync.params import RunRequest

    ctx = pipeline.RunContext(comm, run_id, portal, odbc, use_gx=use_gx,
                              interval_start=interval[0] if interval else None,
                              interval_end=interval[1] if interval else None, request=request or RunRequest())

    def timed(step: str, fn, *args):
        started = time.monotonic()
        try:
            return fn(*args)
        finally:
            timings[step].append(time.monotonic() - started)

    started = time.monotonic()
    timed("prepare", pipeline.prepare, ctx)
    failures = []
    for name in comm.datasets:
        try:
            timed(f"{name}.extract", pipeline.extract_dataset, ctx, name)
            timed(f"{name}.validate", pipeline.validate_dataset, ctx, name)
        except Exception as exc:  # noted; the publish still runs (trigger rule ALL_DONE)
            failures.append(f"{name}: {exc}")
    try:
        results = timed("publish", pipeline.publish_run, ctx)
    finally:
        timed("cleanup", pipeline.cleanup, ctx)
        timed("report", pipeline.report, ctx)
    timings["run"].append(time.monotonic() - started)
    if failures:
        raise RuntimeError("; ".join(failures))
    return results


def floor_minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def describe(values: list[float]) -> dict:
    return {"runs": len(values), "median_s": round(statistics.median(values), 3), "worst_s": round(max(values), 3),
            "mean_s": round(statistics.fmean(values), 3)} if values else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30, help="how long to sync every minute (30)")
    parser.add_argument("--preset", default="town")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-gx", action="store_true", help="validate with our SQL only (GX off)")
    parser.add_argument("--workdir", type=Path, default=None, help="source, report and soak.json (a new /tmp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the portal database and the source")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("portal_sync", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    workdir = args.workdir or Path(f"/tmp/cps_soak_{datetime.now():%Y%m%d_%H%M%S}")
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PORTAL_SYNC_REPORT_DIR", str(workdir / "dq_reports"))

    from synctest import assert_in_sync, community

    from caselle_sim import SourceSpec, create_source
    from portal_sync.migrate import migrate
    from portal_sync.params import RunRequest

    db = f"cps_soak_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    portal = ADMIN_URL.rsplit("/", 1)[0] + f"/{db}"
    source_path = workdir / "soaktown.db"
    report: dict = {"mode": "pipeline loop (no Airflow), schedule * * * * *", "preset": args.preset,
                    "gx": not args.no_gx, "minutes": args.minutes, "portal_db": db, "workdir": str(workdir)}
    sim_proc = None
    ok = False
    try:
        migrate(portal)
        t0 = time.monotonic()
        local_now = datetime.now(ZoneInfo(TZ)).replace(tzinfo=None, microsecond=0)
        sim = create_source(SourceSpec.from_url(f"sqlite:///{source_path}"), preset=args.preset, seed=args.seed,
                            org_code=CODE, org_name="Soak Town", time_zone=TZ, customer_number_mask="###-#####-##",
                            start=local_now)
        report["source_counts_start"] = sim.counts()
        sim.close()
        report["source_build_s"] = round(time.monotonic() - t0, 1)
        odbc = SourceSpec.from_url(f"sqlite:///{source_path}").odbc_connection_string()
        comm = community(code=CODE, name="Soak Town")
        use_gx = not args.no_gx

        ctx_mp = mp.get_context("spawn")
        stop = ctx_mp.Event()
        stats = ctx_mp.Manager().dict()
        sim_proc = ctx_mp.Process(target=simulator, args=(f"sqlite:///{source_path}", stop, stats), daemon=True)
        sim_proc.start()

        first = defaultdict(list)
        run_once(comm, portal, odbc, "soak-first", None, use_gx, first)
        report["first_full_sync_s"] = round(first["run"][0], 1)
        report["size_after_first_sync"] = sizes(portal)
        report["source_size_start"] = os.path.getsize(source_path)
        rss = [rss_mib()]
        peak_first = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        sampler = RssSampler()
        sampler.start()
        log.info("first full sync in %.1fs; soaking for %s minutes", first["run"][0], args.minutes)

        timings: dict[str, list[float]] = defaultdict(list)
        late = []
        end_at = time.monotonic() + args.minutes * 60
        tick = floor_minute(datetime.now(UTC)) + timedelta(minutes=1)
        runs = 0
        errors = []
        while time.monotonic() < end_at:
            wait = (tick - datetime.now(UTC)).total_seconds()
            if wait > 0:
                time.sleep(wait)
            else:
                late.append(-wait)
            interval = (tick - timedelta(minutes=1), tick)
            try:
                run_once(comm, portal, odbc, f"scheduled__{tick:%Y-%m-%dT%H:%M}", interval, use_gx, timings)
            except Exception as exc:
                errors.append(f"{tick:%H:%M}: {exc}")
                log.error("run of %s failed: %s", tick, exc)
            runs += 1
            rss.append(rss_mib())
            log.info("run %d (interval ending %s) in %.1fs; rss %.0f MiB", runs, f"{tick:%H:%M}",
                     timings["run"][-1], rss[-1])
            tick = max(tick + timedelta(minutes=1), floor_minute(datetime.now(UTC)))

        sampler.stop.set()
        stop.set()
        sim_proc.join(timeout=120)
        report["simulator_changes"] = dict(stats)
        # The scheduler's next tick: catch up with the simulator's last minute.
        tick = floor_minute(datetime.now(UTC)) + timedelta(minutes=1)
        time.sleep(max(0.0, (tick - datetime.now(UTC)).total_seconds()))
        run_once(comm, portal, odbc, "soak-last", (tick - timedelta(minutes=1), tick), use_gx, timings)

        recon_t: dict[str, list[float]] = defaultdict(list)
        results = run_once(comm, portal, odbc, "soak-reconcile", None, use_gx, recon_t,
                           RunRequest(reconcile=True, reconcile_all_history=True))
        peak_reconcile = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the oracle's own reads
        fixes = {name: {k: row[k] for k in FIX_COUNTS if row.get(k)} for name, row in results.items()}
        fixes = {name: found for name, found in fixes.items() if found}
        report["reconciliation"] = {"seconds": round(recon_t["run"][0], 1), "fixes": fixes,
                                    "modes": {n: r["mode"] for n, r in results.items()}}
        with psycopg.connect(portal) as conn:
            report["runs_published"] = conn.execute(
                "SELECT count(*) FILTER (WHERE outcome = 'published'), count(*) FROM sync.runs").fetchone()
            report["rows_per_run"] = dict(conn.execute(
                "SELECT dataset, round(avg(rows_extracted))::int FROM sync.run_datasets d JOIN sync.runs r"
                " USING (run_key) WHERE r.airflow_run_id LIKE 'scheduled%%' GROUP BY 1").fetchall())
        try:
            with_sim = __import__("caselle_sim").open_source(f"sqlite:///{source_path}")
            with with_sim as s:
                assert_in_sync(s, portal, comm)
            report["portal_equals_projection"] = True
        except AssertionError as exc:
            report["portal_equals_projection"] = False
            report["projection_differences"] = str(exc)[:4000]

        report["scheduled_runs"] = runs
        report["run_errors"] = errors
        report["late_starts"] = {"count": len(late), "worst_s": round(max(late), 1) if late else 0}
        report["durations"] = {step: describe(values) for step, values in sorted(timings.items())}
        report["size_end"] = sizes(portal)
        report["source_size_end"] = os.path.getsize(source_path)
        start_sizes = report["size_after_first_sync"]
        report["growth_bytes"] = {k: v - start_sizes.get(k, 0) for k, v in report["size_end"].items()}
        report["growth_bytes"]["source"] = report["source_size_end"] - report["source_size_start"]
        report["source_counts_end"] = {k: v for k, v in __import__("caselle_sim").open_source(
            f"sqlite:///{source_path}").counts().items()}
        report["memory_mib"] = {
            "peak_during_first_full_sync": round(peak_first), "rss_after_first_sync": round(rss[0]),
            "peak_during_soak_runs": round(sampler.peak), "rss_after_last_scheduled_run": round(rss[-1]),
            "peak_up_to_the_reconciliation": round(peak_reconcile),
            "peak_incl_the_oracle_check": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
        ok = not fixes and report["portal_equals_projection"] and not errors
        report["verdict"] = "ok: the reconciliation found nothing to fix" if ok else "NOT OK"
    finally:
        if sim_proc is not None and sim_proc.is_alive():
            sim_proc.terminate()
        (workdir / "soak.json").write_text(json.dumps(report, indent=2, default=str))
        if not args.keep:
            with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            for suffix in ("", "-wal", "-shm"):
                Path(f"{source_path}{suffix}").unlink(missing_ok=True)
    print(json.dumps(report, indent=2, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
