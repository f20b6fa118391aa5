"""Workload 4: runs through a private Airflow (scheduler, DAG processor, API server, LocalExecutor).

Set up like tests/e2e/airflowkit.py: its own AIRFLOW_HOME, metadata database and port (8192 by
default), the project's scripts/airflow-init.sh and airflow-services.sh, connections from
AIRFLOW_CONN_* variables. A fresh source whose clock is the real local time is synced by the
first run (the one the scheduler creates when the DAG is unpaused); then each repetition enters
about 15 minutes' worth of activity and triggers a run, as an operator or the next tick would.

Per run: wall time (trigger to the run's end), each task's Airflow duration against the
pipeline's own seconds (sync.run_datasets), the critical path of pipeline work, and the peak RSS
of every task process (VmHWM sampled from /proc for the processes of the scheduler's session).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
import uuid
from dataclasses import fields
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import yaml

log = logging.getLogger("bench")
ROOT = Path(os.environ.get("CPS_BENCH_CODE_ROOT") or Path(__file__).resolve().parents[1])  # scripts, dags
SCHEDULE = "0 3 * * *"  # daily: no scheduled run but the first one interferes with the measured runs


class TaskRssSampler(threading.Thread):
    """Peak RSS (VmHWM) of every process in one session (the scheduler's: its executor workers and tasks)."""

    def __init__(self, session: int, period: float = 0.5):
        super().__init__(daemon=True)
        self.session, self.period = session, period
        self.peaks: dict[int, tuple[int, str]] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.period):
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry.name}/stat") as fh:
                        if int(fh.read().rsplit(")", 1)[1].split()[3]) != self.session:
                            continue
                    with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                        title = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
                    with open(f"/proc/{entry.name}/status") as fh:
                        hwm = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM"))
                except (OSError, StopIteration, ValueError, IndexError):
                    continue
                pid = int(entry.name)
                if hwm > self.peaks.get(pid, (0, ""))[0]:
                    self.peaks[pid] = (hwm, title)

    def stop(self) -> dict:
        self._stop_event.set()
        self.join()
        kinds: dict[str, float] = {}
        for kib, title in self.peaks.values():
            kind = ("executor worker" if "LocalExecutor" in title else
                    "task process" if title.startswith("airflow worker --") else "scheduler and other")
            kinds[kind] = max(kinds.get(kind, 0), round(kib / 1024, 1))
        return kinds


def _scaled_rates(minutes_of_activity: float, span: timedelta) -> dict:
    """Rates that put ``minutes_of_activity`` worth of default activity into ``span`` of clock time."""
    from caselle_sim import Rates

    factor = minutes_of_activity * 60 / max(span.total_seconds(), 1)
    keep = {"late_commit_share", "backdate_share", "post_delay_minutes"}
    return {f.name: getattr(Rates(), f.name) * (1 if f.name in keep else factor) for f in fields(Rates)
            if isinstance(getattr(Rates(), f.name), float)}


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _run_details(client, portal_url: str, dag_id: str, run_id: str, triggered: float) -> dict:
    quoted = urllib.parse.quote(run_id, safe="")
    run = client._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quoted}")
    tis = client._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances")["task_instances"]
    with psycopg.connect(portal_url) as conn:
        key = conn.execute("SELECT run_key FROM sync.runs WHERE airflow_run_id = %s", (run_id,)).fetchone()
        cur = conn.execute(
            "SELECT dataset, mode, phase, rows_extracted, rows_inserted, rows_updated, rows_deleted, extract_seconds,"
            " validate_seconds, publish_seconds FROM sync.run_datasets WHERE run_key = %s", (key[0] if key else None,))
        names = [d.name for d in cur.description]
        audit = {r[0]: {n: (float(v) if isinstance(v, (int, float)) or hasattr(v, "as_tuple") else v)
                        for n, v in zip(names, r, strict=True)} for r in cur.fetchall()}
    start, end, queued = _ts(run.get("start_date")), _ts(run.get("end_date")), _ts(run.get("queued_at"))
    tasks = {}
    for ti in tis:
        t_start, t_end = _ts(ti.get("start_date")), _ts(ti.get("end_date"))
        group, _, step = ti["task_id"].rpartition(".")
        own = None
        if group in audit and step in ("extract", "validate"):
            own = audit[group][f"{step}_seconds"]
        elif ti["task_id"] == "publish":
            own = sum(a["publish_seconds"] or 0 for a in audit.values())
        tasks[ti["task_id"]] = {
            "state": ti["state"], "duration": round((t_end - t_start).total_seconds(), 2) if t_start and t_end else None,
            "queued_to_start": round((t_start - _ts(ti["queued_when"])).total_seconds(), 2)
            if t_start and ti.get("queued_when") else None,
            "pipeline_seconds": own, "start": ti.get("start_date"), "end": ti.get("end_date")}
    per_ds = [(a["extract_seconds"] or 0) + (a["validate_seconds"] or 0) for a in audit.values()]
    critical = max(per_ds, default=0) + sum(a["publish_seconds"] or 0 for a in audit.values())
    wall = (end.timestamp() - triggered) if end else None
    return {
        "run_id": run_id, "state": run["state"], "run_type": run.get("run_type"),
        "wall_from_trigger": round(wall, 2) if wall else None,
        "queued_to_start": round((start - queued).total_seconds(), 2) if start and queued else None,
        "run_duration": round((end - start).total_seconds(), 2) if start and end else None,
        "pipeline_critical_path": round(critical, 2),
        "pipeline_seconds_total": round(sum(per_ds) + sum(a["publish_seconds"] or 0 for a in audit.values()), 2),
        "task_seconds_total": round(sum(t["duration"] or 0 for t in tasks.values()), 2),
        "rows_extracted": sum(a["rows_extracted"] or 0 for a in audit.values()),
        "tasks": tasks, "audit": audit,
    }


def run(bench, repeat: int = 3, minutes: float = 15) -> dict:
    from run import ORG, TZ, community_fields, create_db, drop_db, local_now, pg_url

    from caselle_sim import SourceSpec, create_source
    from portal_sync.airflow_api import AirflowClient

    args, workdir = bench.args, bench.workdir
    tag = uuid.uuid4().hex[:6]
    home = workdir / f"airflow_{tag}"
    home.mkdir(parents=True)
    if bench.engine == "sqlite":
        src_url = f"sqlite:///{workdir / f'{bench.preset}_airflow_{tag}.db'}"
    else:
        src_url = pg_url(f"cps_bench_srcaf_{tag}")
    spec = SourceSpec.from_url(src_url)
    portal_db, airflow_db = f"cps_bench_portal_{tag}_af", f"cps_bench_airflow_{tag}"
    out: dict = {"port": args.airflow_port, "schedule": SCHEDULE, "runs": []}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    services_started = False
    sim = None
    try:
        t0 = time.perf_counter()
        sim = create_source(spec, preset=bench.preset, seed=args.seed + 100, org_code=ORG, time_zone=TZ,
                            start=local_now())
        out["source_build_seconds"] = round(time.perf_counter() - t0, 1)
        out["source_counts"] = sim.counts()
        portal_url = create_db(portal_db)
        from portal_sync.migrate import migrate

        migrate(portal_url)
        communities = {"communities": [{**community_fields(), "schedule": SCHEDULE}]}
        (home / "communities.yaml").write_text(yaml.safe_dump(communities))
        if bench.engine == "sqlite":
            source_conn = {"conn_type": "odbc", "schema": spec.path, "extra": {"driver": "SQLite3", "StepAPI": "1"}}
        else:
            source_conn = {"conn_type": "odbc", "host": spec.host, "port": spec.port, "login": spec.user,
                           "schema": spec.database, "extra": {"driver": "PostgreSQL Unicode", "UseDeclareFetch": "1",
                                                              "Fetch": "10000", "CommLog": "0"}}
        env.update({
            "AIRFLOW_HOME": str(home / "home"), "CPS_AIRFLOW_DB": airflow_db, "CPS_AIRFLOW_PORT": str(args.airflow_port),
            "PORTAL_SYNC_CONFIG": str(home / "communities.yaml"), "PORTAL_SYNC_REPORT_DIR": str(home / "reports"),
            "AIRFLOW_CONN_PORTAL_DB": json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": 5432,
                                                  "login": "postgres", "schema": portal_db}),
            "AIRFLOW_CONN_CASELLE_BENCH": json.dumps(source_conn),
            "PYTHONPATH": str(ROOT / "include"),  # the product code measured, also in every task process
        })
        t0 = time.perf_counter()
        subprocess.run([str(ROOT / "scripts" / "airflow-init.sh")], env=env, check=True, timeout=900,
                       capture_output=True)
        out["init_seconds"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        services_started = True
        subprocess.run([str(ROOT / "scripts" / "airflow-services.sh"), "start"], env=env, check=True, timeout=900,
                       capture_output=True)
        out["services_start_seconds"] = round(time.perf_counter() - t0, 1)
        scheduler_pid = int((home / "home" / "run" / "scheduler.pid").read_text())
        client = AirflowClient(f"http://127.0.0.1:{args.airflow_port}", "admin", env.get("CPS_AIRFLOW_PASSWORD", "admin"))
        dag_id = f"caselle_sync_{ORG.lower()}"
        t0 = time.perf_counter()
        client.wait_for_dag(dag_id, timeout=600)
        out["dag_parse_seconds"] = round(time.perf_counter() - t0, 1)

        # The first run: unpausing makes the scheduler start the latest interval's run (catchup off): a full sync.
        sampler = TaskRssSampler(scheduler_pid)
        sampler.start()
        triggered = time.time()
        client.set_paused(dag_id, False)
        runs = client.wait_until_idle(dag_id, timeout=3600)
        first = runs[0]["dag_run_id"]
        details = _run_details(client, portal_url, dag_id, first, triggered)
        details.update({"kind": "full sync (scheduled run created at unpause)", "task_rss_mib": sampler.stop()})
        out["runs"].append(details)
        log.info("w4 full sync: %s in %.1f s", details["state"], details["wall_from_trigger"] or -1)

        for rep in range(repeat):
            span = local_now() - sim.now
            changes = sim.evolve(span, _scaled_rates(minutes, span))
            sampler = TaskRssSampler(scheduler_pid)
            sampler.start()
            triggered = time.time()
            run_id = client.trigger(dag_id)
            states = client.wait_for_runs({dag_id: run_id}, timeout=3600)
            details = _run_details(client, portal_url, dag_id, run_id, triggered)
            details.update({"kind": "incremental (triggered)", "task_rss_mib": sampler.stop(),
                            "changes": {t: list(c) for t, c in changes.counts().items()},
                            "activity_clock_minutes": round(span.total_seconds() / 60, 1)})
            out["runs"].append(details)
            log.info("w4 incremental %d: %s in %.1f s", rep, states[dag_id], details["wall_from_trigger"] or -1)
    finally:
        if services_started:
            subprocess.run([str(ROOT / "scripts" / "airflow-services.sh"), "stop"], env=env, timeout=600,
                           capture_output=True)
        if sim is not None:
            sim.close()
        if spec.exists():
            spec.drop()
        drop_db(portal_db)
        drop_db(airflow_db)
        shutil.rmtree(home, ignore_errors=True)
    return out
