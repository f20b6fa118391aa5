#!/usr/bin/env python
"""Fleet benchmark: what a fleet of communities costs one Airflow. Not a test: run it on purpose.

    .venv/bin/python benchmarks/fleet.py dag-processing [--sizes 10,100,300,1000] [--repeat 3]
    .venv/bin/python benchmarks/fleet.py idle-run [--repeat 3] [--port 8290]
    .venv/bin/python benchmarks/fleet.py soak [--communities 50] [--minutes 30] [--executor local|celery]

Each part prints a table (markdown) and merges its figures, with the machine, the commit and the
load averages, into docs/benchmarks/fleet.json (``--out``) under its own key. Targets come from the
fleet issue; docs/benchmarks/fleet.md reads the figures against them.

1. ``dag-processing``: parse ``dags/*.py`` and serialize its DAGs exactly as Airflow's DAG
   processor child does (``airflow.dag_processing.processor._parse_file``: BundleDagBag, then
   ``DagSerialization.to_dict`` per DAG), in a fresh child process that has imported Airflow and
   pre-imported the file's Airflow modules first (as the processor does before it forks), with a
   generated communities configuration of N communities (one file, or a directory of one file per
   community). CPU seconds of the child (``getrusage``) for ``_parse_file`` only. The task
   process's own parse is the same BundleDagBag with ``_AIRFLOW_PARSING_CONTEXT_DAG_ID`` set.
2. ``idle-run``: a private Airflow (PostgreSQL metadata, LocalExecutor, parallelism 4) serving the
   demo's SPRINGFLD (``town`` preset, seed 11, as scripts/demo.py builds it); after the first load,
   runs triggered with nothing changed in Caselle. CPU of every process the run starts: see
   :class:`ProcSampler` (two methods), net of the idle rate measured over an equally long quiet
   period right after. Tables created in the portal database: an event trigger the benchmark puts
   on its own portal database logs every ``CREATE TABLE`` (temporary ones included), and the
   persistent ``pg_class`` oids are compared before and after.
3. ``soak``: N small simulated communities (``tiny`` preset, each its own SQLite Caselle, a
   background thread evolving every source to the real time each minute) synced by one Airflow on
   their staggered 5-minute schedules for ``--minutes``, with the fleet scheduler settings
   (:data:`FLEET_SETTINGS`). Punctuality of the runs, CPU per component and per run, metadata and
   log growth, scaled to a day and extrapolated to 1,000 communities.

Private Airflows are set up like benchmarks/airflow_e2e.py: own AIRFLOW_HOME, metadata database
(``bench_fleet_*``), port (8290-8299), the project's scripts/airflow-init.sh and
airflow-services.sh, connections from ``AIRFLOW_CONN_*``. Databases, Redis database and work
directory are removed at the end, also on failure (``--keep`` keeps the work directory).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "include")]

import psycopg  # noqa: E402
import yaml  # noqa: E402
from config_load import write_config  # noqa: E402  (the generated fleet configuration)
from psycopg import sql  # noqa: E402
from run import create_db, drop_db, machine, pg_url  # noqa: E402

log = logging.getLogger("fleet")

OUT = ROOT / "docs" / "benchmarks" / "fleet.json"
DEFAULT_WORKDIR = Path(os.environ.get("CPS_BENCH_WORKDIR", "/tmp/cps_fleet"))
DB_PREFIX = "bench_fleet_"
CLK_TCK = os.sysconf("SC_CLK_TCK")
DATASETS = ["accounts", "residents", "charges", "payments", "balances", "assessments"]
ZONES = ["America/Denver", "America/Los_Angeles", "America/Chicago", "America/New_York", "America/Phoenix",
         "America/Boise", "America/Anchorage", "Pacific/Honolulu"]

# Scheduler settings for a fleet, set in the soak (docs/benchmarks/fleet.md says why).
FLEET_SETTINGS = {
    "AIRFLOW__CORE__PARALLELISM": "4",  # LocalExecutor worker processes: 2 per core
    "AIRFLOW__SCHEDULER__MAX_DAGRUNS_TO_CREATE_PER_LOOP": "50",  # default 10: 200 runs fall due per minute at 1,000
    "AIRFLOW__SCHEDULER__MAX_DAGRUNS_PER_LOOP_TO_SCHEDULE": "100",  # default 20
    "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",  # default 2: two files, one cheap; spare the cores
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "120",  # default 30: re-parse every 2 min
    "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "180",  # default 50: a loaded machine parses slowly
}

TARGETS = {
    "dag_file_cpu_at_1000": 10.0, "all_files_cpu_at_1000": 20.0, "task_parse_cpu_at_1000": 0.2,
    "idle_task_seconds": 5.0, "idle_cpu_seconds": 5.0, "idle_task_instances": 5, "idle_tables_created": 0,
    "soak_on_time_share": 0.99,
}


# --- shared helpers --------------------------------------------------------------------------------

def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def code_identity() -> dict:
    """The commit, and a hash of the uncommitted product code measured (others edit this work tree)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout

    diff = git("diff", "HEAD", "--", "include", "dags", "plugins")
    return {"commit": git("rev-parse", "HEAD").strip(),
            "work_tree_modified": bool(diff),
            "work_tree_diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:16] if diff else None}


def snapshot_code(dest: Path) -> dict:
    """Copy the product code (include, dags, plugins) as it is now and use the copy from here on.

    Others edit this work tree while a benchmark runs; a running Airflow (task processes import the
    code afresh, the DAG processor re-reads the DAG files) must not pick up their edits half-way.
    """
    identity = {**code_identity(), "code": f"copy of the work tree taken at {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"}
    for name in ("include", "dags", "plugins"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    sys.path.insert(0, str(dest / "include"))
    for module in [m for m in sys.modules if m.split(".")[0] in ("portal_sync", "caselle_sim")]:
        del sys.modules[module]  # imported from the work tree before the copy: import again from the copy
    return identity


def save(part: str, result: dict, out: Path) -> None:
    """Merge one part's result into the JSON file (other parts are kept)."""
    data = json.loads(out.read_text()) if out.exists() else {}
    data.setdefault("targets", TARGETS)
    result = {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"), **code_identity(), **result}
    result.update(result.pop("code_measured", {}))
    if part == "soak":
        data.setdefault("soak", {})[result["executor"]] = result
    elif part == "dag_processing" and data.get(part):
        # a later invocation (e.g. --task-only) replaces only the cases it measured
        key = ("layout", "communities", "file", "context")
        fresh = {tuple(c.get(k) for k in key) for c in result["cases"]}
        result["cases"] = [c for c in data[part]["cases"] if tuple(c.get(k) for k in key) not in fresh] + result["cases"]
        data[part] = {**data[part], **result}
    else:
        data[part] = result
    try:
        data["machine"] = {k: v for k, v in machine().items() if k not in ("commit", "code", "product_code_modified")}
    except Exception as exc:  # the figures matter more than the machine description
        log.warning("machine description failed: %s", exc)
    out.write_text(json.dumps(data, indent=1, default=str) + "\n")
    print(f"\nwritten to {out} ({part})")


def table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _stat(pid: str) -> tuple[str, int, float, float, int] | None:
    """(comm, session, own CPU-s, reaped children's CPU-s, start time in ticks) of a process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            data = fh.read()
    except OSError:
        return None
    close = data.rindex(")")
    f = data[close + 2:].split()
    return (data[data.index("(") + 1:close], int(f[3]), (int(f[11]) + int(f[12])) / CLK_TCK,
            (int(f[13]) + int(f[14])) / CLK_TCK, int(f[19]))


def _pss_mib(pid: str) -> float:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("Pss:")) / 1024
    except (OSError, StopIteration, ValueError):
        return 0.0


class ProcSampler(threading.Thread):
    """CPU of the processes of the Airflow components' sessions and of our PostgreSQL backends.

    Two methods, both reported:

    - ``session``: every component runs in its own session (scripts/airflow-services.sh uses
      setsid); the session's cumulative CPU at an instant is the sum over its live processes of
      their own CPU plus their reaped children's (``utime+stime+cutime+cstime`` of /proc/<pid>/stat).
      A task process that ended was reaped by its parent inside the session, so its CPU moved into
      the parent's ``cutime``: counted once, however short it lived.
    - ``polled``: /proc is scanned every ``period`` and the last ``utime+stime`` of every process
      (keyed by pid and start time) is kept; a process living less than one period is missed. This is
      also the only method for the PostgreSQL backends of our databases (children of the shared
      postmaster), recognised by their process title ``postgres: <user> <database> ...``.
    """

    def __init__(self, sessions: dict[str, int], databases: list[str], period: float,
                 memory_every: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.sid_group = {sid: name for name, sid in sessions.items()}
        self.databases = set(databases)
        self.period, self.memory_every = period, memory_every
        self.last: dict[tuple[int, int], tuple[str, float]] = {}
        self.session_cpu: dict[str, float] = {}
        self.leader_cpu: dict[str, float] = {}
        self.peak_pss: dict[str, float] = {}
        self._pg_db: dict[tuple[int, int], str | None] = {}
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._last_memory = 0.0

    def _database(self, pid: str, key: tuple[int, int]) -> str | None:
        if key not in self._pg_db:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    words = fh.read().replace(b"\0", b" ").decode(errors="replace").split()
            except OSError:
                words = []
            # "postgres: <user> <database> <host> <state>", Debian adding "<version>/<cluster>:" first
            named = [w for w in words[1:5] if w in self.databases] if words[:1] == ["postgres:"] else []
            self._pg_db[key] = named[0] if named else None
        return self._pg_db[key]

    def poll(self) -> None:
        with self._lock:
            cumulative: dict[str, float] = defaultdict(float)
            leaders: dict[str, float] = {}
            memory = self.memory_every and time.monotonic() - self._last_memory >= self.memory_every
            pss: dict[str, float] = defaultdict(float)
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                stat = _stat(entry.name)
                if stat is None:
                    continue
                comm, sid, own, children, start = stat
                key = (int(entry.name), start)
                group = self.sid_group.get(sid)
                if group is not None:
                    cumulative[group] += own + children
                    self.last[key] = (group, own)
                    if key[0] == sid:
                        leaders[group] = own
                    if memory:
                        pss[group] += _pss_mib(entry.name)
                elif comm == "postgres" and self.databases:
                    db = self._database(entry.name, key)
                    if db in self.databases:
                        self.last[key] = (f"postgres {db}", own)
                        if memory:
                            pss[f"postgres {db}"] += _pss_mib(entry.name)
            self.session_cpu, self.leader_cpu = dict(cumulative), leaders
            if memory:
                self._last_memory = time.monotonic()
                for group, mib in pss.items():
                    self.peak_pss[group] = max(self.peak_pss.get(group, 0.0), round(mib, 1))

    def run(self) -> None:
        while not self._stop_event.wait(self.period):
            self.poll()

    def snapshot(self) -> dict:
        self.poll()
        with self._lock:
            polled: dict[str, float] = defaultdict(float)
            for group, own in self.last.values():
                polled[group] += own
            return {"t": time.monotonic(), "session": dict(self.session_cpu), "leader": dict(self.leader_cpu),
                    "polled": dict(polled)}

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def cpu_delta(a: dict, b: dict) -> dict:
    """CPU-s per group between two snapshots, by each method."""
    out: dict = {"seconds": round(b["t"] - a["t"], 2)}
    for method in ("session", "leader", "polled"):
        groups = set(a[method]) | set(b[method])
        out[method] = {g: round(b[method].get(g, 0.0) - a[method].get(g, 0.0), 2) for g in sorted(groups)}
    return out


class Airflow:
    """A private Airflow started with the project's scripts; stop() stops it and drops its database."""

    def __init__(self, home: Path, port: int, communities: list[dict], connections: dict[str, str],
                 extra_env: dict[str, str] | None = None, code: Path = ROOT) -> None:
        from portal_sync.airflow_api import AirflowClient

        self.home, self.port = home, port
        self.db = f"{DB_PREFIX}airflow_{uuid.uuid4().hex[:8]}"
        config = home / "communities.yaml"
        config.write_text(yaml.safe_dump({"communities": communities}, sort_keys=False))
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        env.update({
            "AIRFLOW_HOME": str(home / "home"), "CPS_AIRFLOW_DB": self.db, "CPS_AIRFLOW_PORT": str(port),
            "PORTAL_SYNC_CONFIG": str(config), "PORTAL_SYNC_REPORT_DIR": str(home / "reports"),
            "PYTHONPATH": str(code / "include"),  # the product code measured, in every task process too
            "AIRFLOW__CORE__DAGS_FOLDER": str(code / "dags"), "AIRFLOW__CORE__PLUGINS_FOLDER": str(code / "plugins"),
        })
        env.update({f"AIRFLOW_CONN_{conn_id.upper()}": value for conn_id, value in connections.items()})
        env.update(extra_env or {})
        self.env = env
        self.client = AirflowClient(f"http://127.0.0.1:{port}", "admin", env.get("CPS_AIRFLOW_PASSWORD", "admin"))
        self.started = False

    @property
    def metadata_url(self) -> str:
        return pg_url(self.db)

    def start(self) -> dict:
        t0 = time.perf_counter()
        subprocess.run([str(ROOT / "scripts" / "airflow-init.sh")], env=self.env, check=True, timeout=900,
                       capture_output=True)
        t1 = time.perf_counter()
        self.started = True
        done = subprocess.run([str(ROOT / "scripts" / "airflow-services.sh"), "start"], env=self.env, timeout=900,
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"airflow-services.sh start failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return {"init_seconds": round(t1 - t0, 1), "start_seconds": round(time.perf_counter() - t1, 1)}

    def sessions(self) -> dict[str, int]:
        """Component name -> pid (each a session leader, see scripts/airflow-services.sh)."""
        run_dir = self.home / "home" / "run"
        return {p.stem: int(p.read_text()) for p in run_dir.glob("*.pid") if p.read_text().strip().isdigit()}

    def stop(self) -> None:
        if self.started:
            subprocess.run([str(ROOT / "scripts" / "airflow-services.sh"), "stop"], env=self.env, timeout=600,
                           capture_output=True)
        drop_db(self.db)

    def wait_for_dags(self, count: int, timeout: float = 900) -> float:
        """Seconds until the DAG processor has stored ``count`` sync DAGs."""
        t0 = time.monotonic()
        while True:
            try:
                found = self.client._request("GET", "/api/v2/dags?limit=1&dag_id_pattern=caselle_sync_%25"
                                             )["total_entries"]
            except Exception:  # the API server may still be warming up
                found = -1
            if found >= count:
                return round(time.monotonic() - t0, 1)
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"only {found} of {count} DAGs after {timeout:.0f} s")
            time.sleep(3)


def sqlite_conn(path: Path) -> str:
    return json.dumps({"conn_type": "odbc", "schema": str(path), "extra": {"driver": "SQLite3", "StepAPI": "1"}})


def portal_conn(db: str) -> str:
    return json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres",
                       "schema": db})


def local_now(zone: str) -> datetime:
    return datetime.now(ZoneInfo(zone)).replace(tzinfo=None, second=0, microsecond=0)


def dir_bytes(path: Path) -> int:
    total = 0
    for base, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(base, name)).st_size
    return total


# --- part 1: DAG processing -----------------------------------------------------------------------

PARSE_CHILD = r"""
import json, os, resource, sys, time
from pathlib import Path

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

import importlib
import structlog
from airflow.dag_processing import processor
from airflow.utils.file import iter_airflow_imports

path, bundle = sys.argv[1], Path(sys.argv[2])
for module in iter_airflow_imports(path):  # the manager's _pre_import_airflow_modules, before the fork
    importlib.import_module(module)
os.environ["_AIRFLOW_PROCESS_CONTEXT"] = "client"  # as _parse_file_entrypoint sets it
marks = {}
original = processor._serialize_dags

def serialize(bag, log):
    marks["parsed"] = cpu()
    return original(bag, log)

processor._serialize_dags = serialize
request = processor.DagFileParseRequest(file=path, bundle_path=bundle, bundle_name="dags-folder",
                                        callback_requests=[])
log = structlog.get_logger(logger_name="task")
c0, w0 = cpu(), time.perf_counter()
result = processor._parse_file(request, log)
c1, w1 = cpu(), time.perf_counter()
print(json.dumps({"cpu": c1 - c0, "parse_cpu": marks.get("parsed", c1) - c0,
                  "serialize_cpu": c1 - marks.get("parsed", c1), "wall": w1 - w0,
                  "dags": len(result.serialized_dags), "import_errors": len(result.import_errors or {}),
                  "error_text": str(list((result.import_errors or {}).values()))[:300]}))
"""


def _parse_once(dag_file: Path, config: Path, home: Path, dag_id: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "_AIRFLOW_"))}
    env.update({
        "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(dag_file.parent),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "PORTAL_SYNC_CONFIG": str(config), "PYTHONPATH": str(ROOT / "include"),
    })
    if dag_id:
        env["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = dag_id
    load_before = load()
    done = subprocess.run([sys.executable, "-c", PARSE_CHILD, str(dag_file), str(dag_file.parent)], env=env,
                          capture_output=True, text=True, timeout=4 * 3600)
    if done.returncode:
        raise RuntimeError(f"parse child failed: {done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["load"] = load_before
    return result


def _median_of(runs: list[dict]) -> dict:
    keys = ("cpu", "parse_cpu", "serialize_cpu", "wall")
    out = {k: round(statistics.median(r[k] for r in runs), 3) for k in keys}
    # stamped per case: invocations are merged, and the work tree may change between them
    out["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    out["work_tree_diff_sha256"] = code_identity()["work_tree_diff_sha256"]
    out.update({"dags": runs[0]["dags"], "import_errors": runs[0]["import_errors"],
                "cpu_all": [round(r["cpu"], 3) for r in runs], "load": [r["load"] for r in runs]})
    if runs[0]["import_errors"]:
        out["error_text"] = runs[0]["error_text"]
    return out


def _task_dag_ids(n: int) -> list[str]:
    return ["caselle_sync_c00500", "caselle_sync_c00501"] if n > 501 else [f"caselle_sync_c{n - 1:05d}"]


def dag_processing(args: argparse.Namespace) -> dict:
    sizes = [int(s) for s in args.sizes.split(",")]
    dag_files = sorted((ROOT / "dags").glob("*.py"))
    rows, result = [], {"method": "airflow.dag_processing.processor._parse_file in a child that imported Airflow "
                                  "and pre-imported the file's Airflow modules; CPU = getrusage(SELF) around it",
                        "repeat": args.repeat, "cases": []}
    with tempfile.TemporaryDirectory(prefix="cps_fleet_parse_") as tmp:
        root = Path(tmp)
        cases: list[tuple[str, int, Path]] = []
        for n in sizes:
            (root / f"file_{n}").mkdir()
            cases.append(("file", n, write_config(root / f"file_{n}", n, "file")))
        if args.dir_size:
            (root / f"dir_{args.dir_size}").mkdir()
            cases.append(("dir", args.dir_size, write_config(root / f"dir_{args.dir_size}", args.dir_size, "dir")))
        home = root / "home"
        home.mkdir()
        for layout, n, config in cases:
            total = 0.0
            for dag_file in [] if args.task_only else dag_files:
                runs = [_parse_once(dag_file, config, home) for _ in range(args.repeat)]
                m = _median_of(runs)
                total += m["cpu"]
                case = {"layout": layout, "communities": n, "file": dag_file.name, "context": "dag processor", **m}
                result["cases"].append(case)
                rows.append([n, layout, dag_file.name, "dag processor", m["dags"], m["parse_cpu"], m["serialize_cpu"],
                             m["cpu"], m["wall"], m["import_errors"], m["load"][0]])
                log.info("%s", rows[-1])
            if not args.task_only:
                result["cases"].append({"layout": layout, "communities": n, "file": "all files", "cpu": round(total, 3)})
                rows.append([n, layout, "**all files**", "dag processor", "", "", "", round(total, 3), "", "", ""])
            if n == max(sizes) or layout == "dir":
                # A task process parses the one file that holds its DAG (the DAGs may be dealt over files).
                # C00500 has quality.severity in the generated file (every fourth community), C00501 has not.
                for dag_id, dag_file in ((d, f) for d in _task_dag_ids(n) for f in dag_files):
                    if _parse_once(dag_file, config, home, dag_id)["dags"] != 1:
                        continue
                    runs = [_parse_once(dag_file, config, home, dag_id) for _ in range(args.repeat)]
                    m = _median_of(runs)
                    result["cases"].append({"layout": layout, "communities": n, "file": dag_file.name,
                                            "context": f"task process ({dag_id})", **m})
                    rows.append([n, layout, dag_file.name, f"task ({dag_id})", m["dags"], m["parse_cpu"],
                                 m["serialize_cpu"], m["cpu"], m["wall"], m["import_errors"], m["load"][0]])
                    log.info("%s", rows[-1])
    print(table(["communities", "config", "file", "parsed as", "DAGs", "parse CPU-s", "serialize CPU-s",
                 "total CPU-s", "wall s", "import errors", "load (1 min)"], rows))
    return result


# --- part 2: idle run -----------------------------------------------------------------------------

EVENT_TRIGGER = """
CREATE SCHEMA bench_fleet;
CREATE TABLE bench_fleet.created (at timestamptz NOT NULL DEFAULT clock_timestamp(), tag text, object_type text,
                                  object text);
CREATE FUNCTION bench_fleet.log_created() RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog AS $$
BEGIN
    INSERT INTO bench_fleet.created (tag, object_type, object)
    SELECT command_tag, object_type, object_identity FROM pg_event_trigger_ddl_commands()
    WHERE object_type IN ('table', 'index');
END $$;
CREATE EVENT TRIGGER bench_fleet_created ON ddl_command_end EXECUTE FUNCTION bench_fleet.log_created();
"""


def _created(portal_url: str) -> tuple[int, int, set[int]]:
    """(tables created so far, indexes created so far, oids of the tables that exist now)."""
    with psycopg.connect(portal_url, autocommit=True) as conn:
        tables, indexes = conn.execute(
            "SELECT count(*) FILTER (WHERE object_type = 'table'), count(*) FILTER (WHERE object_type = 'index')"
            " FROM bench_fleet.created").fetchone()
        oids = {r[0] for r in conn.execute("SELECT oid::bigint FROM pg_class WHERE relkind IN ('r', 'p', 'u', 't')")}
    return tables, indexes, oids


def _task_instances(client, dag_id: str, run_id: str) -> list[dict]:
    return client._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances?limit=100"
                           )["task_instances"]


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _duration(ti: dict) -> float | None:
    """A task instance's duration as the REST API gives it (or end - start when it does not)."""
    if ti.get("duration") is not None:
        return float(ti["duration"])
    start, end = _ts(ti.get("start_date")), _ts(ti.get("end_date"))
    return (end - start).total_seconds() if start and end else None


RUN_COMPONENTS = ("scheduler", "api-server")


def idle_run(args: argparse.Namespace) -> dict:
    code, zone = "SPRINGFLD", "America/Denver"
    dag_id = f"caselle_sync_{code.lower()}"
    work = Path(args.workdir) / f"idle_{uuid.uuid4().hex[:6]}"
    work.mkdir(parents=True)
    measured = snapshot_code(work / "code")

    from caselle_sim import SourceSpec, create_source
    from portal_sync.migrate import migrate

    portal_db = f"{DB_PREFIX}portal_{uuid.uuid4().hex[:8]}"
    source = work / "springfld.db"
    airflow: Airflow | None = None
    sampler: ProcSampler | None = None
    out: dict = {"community": code, "preset": "town", "seed": 11, "port": args.port, "runs": [],
                 "code_measured": measured}
    try:
        t0 = time.perf_counter()
        sim = create_source(SourceSpec.from_url(f"sqlite:///{source}"), preset="town", seed=11, org_code=code,
                            org_name="City of Springfield", time_zone=zone, customer_number_mask="###-#####-##",
                            start=local_now(zone))
        out["source_counts"] = sim.counts()
        sim.close()
        out["source_build_seconds"] = round(time.perf_counter() - t0, 1)
        portal_url = create_db(portal_db)
        migrate(portal_url)
        with psycopg.connect(portal_url, autocommit=True) as conn:
            conn.execute(EVENT_TRIGGER)
        # The demo's SPRINGFLD (include/config/communities.yaml), on a daily schedule so that no scheduled
        # run falls among the measured ones.
        community = {"code": code, "name": "City of Springfield", "caselle_conn_id": "caselle_springfld",
                     "pool": "caselle_local_sqlite", "time_zone": zone, "schedule": "0 3 * * *",
                     "datasets": DATASETS, "visible_statuses": ["active", "final"], "start_date": "2026-11-01"}
        out["community_config"] = community
        home = work / "airflow"
        home.mkdir()
        airflow = Airflow(home, args.port, [community],
                          {"portal_db": portal_conn(portal_db), "caselle_springfld": sqlite_conn(source)},
                          {"AIRFLOW__CORE__PARALLELISM": "4"}, code=work / "code")
        out.update(airflow.start())
        out["dag_seen_seconds"] = airflow.wait_for_dags(1)
        sessions = airflow.sessions()
        sampler = ProcSampler(sessions, [airflow.db, portal_db], period=args.period)
        sampler.start()
        t0 = time.perf_counter()
        airflow.client.set_paused(dag_id, False)  # catchup off: the latest daily interval runs now, a full load
        first = airflow.client.wait_until_idle(dag_id, timeout=3600)
        out["first_load"] = {"state": first[0]["state"], "seconds": round(time.perf_counter() - t0, 1)}
        log.info("first load: %s", out["first_load"])
        time.sleep(10)
        for rep in range(args.repeat):
            created0 = _created(portal_url)
            load0 = load()
            before = sampler.snapshot()
            triggered = time.time()
            run_id = airflow.client.trigger(dag_id)
            state = airflow.client.wait_for_runs({dag_id: run_id}, timeout=1800)[dag_id]
            time.sleep(args.settle)  # the last task process exits and is reaped
            after = sampler.snapshot()
            created1 = _created(portal_url)
            run_cpu = cpu_delta(before, after)
            quiet0 = sampler.snapshot()
            time.sleep(max(run_cpu["seconds"] - 0.05, 1))
            quiet1 = sampler.snapshot()
            quiet = cpu_delta(quiet0, quiet1)
            run = airflow.client._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")
            tis = _task_instances(airflow.client, dag_id, run_id)
            durations = {f"{ti['task_id']}[{ti['map_index']}]": (_duration(ti), ti["state"]) for ti in tis}
            task_seconds = sum(d or 0 for d, _ in durations.values())
            end = _ts(run.get("end_date"))
            scale = run_cpu["seconds"] / max(quiet["seconds"], 0.001)
            net = {}
            for method in ("session", "polled"):
                groups = set(run_cpu[method]) | set(quiet[method])
                net[method] = {g: round(run_cpu[method].get(g, 0) - quiet[method].get(g, 0) * scale, 2)
                               for g in sorted(groups)}
            # What the run starts: the scheduler's session (executor workers, task processes) and the API
            # server (the tasks' execution API). The DAG processor and triggerer work on their own timers.
            airflow_net = {m: round(sum(v for g, v in net[m].items() if g in RUN_COMPONENTS), 2) for m in net}
            airflow_net["all_components_session"] = round(
                sum(v for g, v in net["session"].items() if not g.startswith("postgres")), 2)
            pg_net = round(sum(v for g, v in net["polled"].items() if g.startswith("postgres")), 2)
            with psycopg.connect(portal_url) as conn:
                audit = conn.execute(
                    "SELECT d.dataset, d.mode, d.phase, d.rows_extracted FROM sync.run_datasets d JOIN sync.runs r"
                    " USING (run_key) WHERE r.airflow_run_id = %s ORDER BY d.dataset", (run_id,)).fetchall()
            rec = {
                "run_id": run_id, "state": state, "load_before": load0, "load_after": load(),
                "task_instances": len(tis),
                "task_instances_started": sum(1 for ti in tis if ti.get("start_date")),
                "task_seconds": round(task_seconds, 2), "tasks": durations,
                "wall_seconds": round(end.timestamp() - triggered, 2) if end else None,
                "cpu_window": run_cpu, "quiet_window": quiet, "cpu_net": net,
                "cpu_airflow_net": airflow_net, "cpu_postgres_net": pg_net,
                "tables_created": created1[0] - created0[0], "indexes_created": created1[1] - created0[1],
                "tables_new_persistent": len(created1[2] - created0[2]),
                "tables_dropped": len(created0[2] - created1[2]),
                "datasets": [list(map(str, r)) for r in audit],
            }
            out["runs"].append(rec)
            log.info("idle run %d: %s", rep, {k: rec[k] for k in ("state", "task_instances", "task_seconds",
                                                                  "wall_seconds", "cpu_airflow_net",
                                                                  "tables_created")})
    finally:
        if sampler is not None:
            sampler.stop()
        if airflow is not None:
            airflow.stop()
        drop_db(portal_db)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    runs = out["runs"]

    def med(get) -> float:
        return round(statistics.median(get(r) for r in runs), 2)

    out["median"] = {
        "task_instances": med(lambda r: r["task_instances"]),
        "task_instances_started": med(lambda r: r["task_instances_started"]),
        "task_seconds": med(lambda r: r["task_seconds"]), "wall_seconds": med(lambda r: r["wall_seconds"] or 0),
        "cpu_seconds_session_method": med(lambda r: r["cpu_airflow_net"]["session"]),
        "cpu_seconds_polled_method": med(lambda r: r["cpu_airflow_net"]["polled"]),
        "cpu_seconds_all_components": med(lambda r: r["cpu_airflow_net"]["all_components_session"]),
        "cpu_seconds_postgres_backends": med(lambda r: r["cpu_postgres_net"]),
        "tables_created": med(lambda r: r["tables_created"]),
    }
    rows = [[i + 1, r["state"], r["task_instances"], r["task_instances_started"], r["task_seconds"],
             r["wall_seconds"], r["cpu_airflow_net"]["session"], r["cpu_airflow_net"]["polled"],
             r["cpu_airflow_net"]["all_components_session"], r["cpu_postgres_net"], r["tables_created"],
             r["tables_new_persistent"], r["load_before"][0]]
            for i, r in enumerate(runs)]
    m = out["median"]
    rows.append(["**median**", "", m["task_instances"], m["task_instances_started"], m["task_seconds"],
                 m["wall_seconds"], m["cpu_seconds_session_method"], m["cpu_seconds_polled_method"],
                 m["cpu_seconds_all_components"], m["cpu_seconds_postgres_backends"], m["tables_created"], "", ""])
    rows.append(["target", "", "≤ 5", "", "≤ 5", "", "≤ 5", "≤ 5", "", "", "0", "", ""])
    print(table(["run", "state", "task instances", "started", "task-s", "wall s", "CPU-s run (session)",
                 "CPU-s run (polled)", "CPU-s all components", "PG backend CPU-s", "tables created",
                 "new persistent tables", "load"], rows))
    print("\nper component (session method, net of the idle rate), first run:",
          json.dumps(runs[0]["cpu_net"]["session"]) if runs else "-")
    return out


# --- part 3: soak -----------------------------------------------------------------------------------

def soak_community(i: int) -> dict:
    code = f"FLT{i + 1:02d}"
    return {"code": code, "name": f"Fleet town {i + 1}", "caselle_conn_id": f"caselle_{code.lower()}",
            "time_zone": ZONES[i % len(ZONES)], "schedule": "*/5 * * * *", "datasets": DATASETS[: 4 + i % 3],
            "start_date": "2026-11-01"}


class Activity(threading.Thread):
    """Simulator activity between runs: every ``period`` seconds each source is evolved to the real time."""

    def __init__(self, paths: list[Path], period: float) -> None:
        super().__init__(daemon=True)
        self.paths, self.period = paths, period
        self.rounds, self.changes, self.errors = 0, 0, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        from caselle_sim import open_source

        sims = [open_source(f"sqlite:///{p}") for p in self.paths]  # opened in this thread (sqlite3's rule)
        try:
            while not self._stop_event.wait(self.period):
                for sim in sims:
                    if self._stop_event.is_set():
                        break
                    try:
                        behind = datetime.now(UTC) - sim.now_utc
                        if behind > timedelta(seconds=5):
                            counts = sim.evolve(behind).counts()
                            self.changes += sum(sum(c) for c in counts.values())
                    except Exception as exc:  # a locked source: try again next round
                        self.errors += 1
                        log.warning("evolve failed: %s", exc)
                self.rounds += 1
        finally:
            for sim in sims:
                sim.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


METADATA_TABLES = ("dag_run", "task_instance", "task_instance_history", "xcom", "log", "job", "asset_event",
                   "dag_version", "serialized_dag", "celery_taskmeta")
PORTAL_SYNC_TABLES = ("sync.runs", "sync.run_datasets", "sync.dq_results", "sync.run_findings")


def _db_state(url: str, tables: tuple[str, ...]) -> dict:
    out: dict = {}
    with psycopg.connect(url, autocommit=True) as conn:
        out["database_bytes"] = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        for name in tables:
            schema, _, rel = name.rpartition(".")
            exists = conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0]
            if exists is None:
                continue
            ident = sql.Identifier(schema, rel) if schema else sql.Identifier(rel)
            out[name] = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident)).fetchone()[0]
    return out


def _free_redis_db() -> int:
    import redis

    sizes = {n: redis.Redis(host="127.0.0.1", port=6379, db=n).dbsize() for n in range(1, 16)}
    free = [n for n, size in sizes.items() if size == 0]
    if not free:
        raise RuntimeError("no empty Redis database among 1-15")
    return free[-1]


def _flush_redis(db: int) -> None:
    import redis

    redis.Redis(host="127.0.0.1", port=6379, db=db).flushdb()


def soak(args: argparse.Namespace) -> dict:
    tag = uuid.uuid4().hex[:6]
    work = Path(args.workdir) / f"soak_{args.executor}_{tag}"
    (work / "sources").mkdir(parents=True)
    measured = snapshot_code(work / "code")

    from caselle_sim import SourceSpec, create_source
    from portal_sync.config import Community
    from portal_sync.migrate import migrate

    portal_db = f"{DB_PREFIX}portal_{tag}"
    communities = [soak_community(i) for i in range(args.communities)]
    paths = [work / "sources" / f"{c['code'].lower()}.db" for c in communities]
    airflow: Airflow | None = None
    sampler: ProcSampler | None = None
    activity: Activity | None = None
    redis_db: int | None = None
    out: dict = {"executor": args.executor, "communities": args.communities, "preset": args.preset,
                 "minutes": args.minutes, "port": args.port, "settings": dict(FLEET_SETTINGS), "code_measured": measured,
                 "schedules": {c["code"]: Community.model_validate({**c}).effective_schedule for c in communities}}
    try:
        t0 = time.perf_counter()
        for i, (c, path) in enumerate(zip(communities, paths, strict=True)):
            create_source(SourceSpec.from_url(f"sqlite:///{path}"), preset=args.preset, seed=args.seed + i,
                          org_code=c["code"], org_name=c["name"], time_zone=c["time_zone"],
                          start=local_now(c["time_zone"])).close()
        out["sources_build_seconds"] = round(time.perf_counter() - t0, 1)
        portal_url = create_db(portal_db)
        migrate(portal_url)
        connections = {"portal_db": portal_conn(portal_db)}
        connections.update({c["caselle_conn_id"]: sqlite_conn(p) for c, p in zip(communities, paths, strict=True)})
        extra = dict(FLEET_SETTINGS)
        if args.executor == "celery":
            redis_db = _free_redis_db()
            extra.update({"CPS_EXECUTOR": "celery", "CPS_CELERY_WORKERS": "2", "CPS_CELERY_CONCURRENCY": "2",
                          "CPS_CELERY_REDIS_DB": str(redis_db)})
            out["redis_db"] = redis_db
        (work / "airflow").mkdir()
        airflow = Airflow(work / "airflow", args.port, communities, connections, extra, code=work / "code")
        out.update(airflow.start())
        out["dags_seen_seconds"] = airflow.wait_for_dags(len(communities))
        sessions = airflow.sessions()
        out["components"] = sorted(sessions)
        sampler = ProcSampler(sessions, [airflow.db, portal_db], period=args.period, memory_every=30)
        sampler.start()
        activity = Activity(paths, 60)
        activity.start()
        t_unpause = time.time()
        for c in communities:
            airflow.client.set_paused(f"caselle_sync_{c['code'].lower()}", False)
        # First loads: the run of the latest interval, created at unpause (catchup off).
        deadline = time.monotonic() + 1800
        with psycopg.connect(airflow.metadata_url, autocommit=True) as meta:
            while True:
                done = meta.execute("SELECT count(DISTINCT dag_id) FROM dag_run WHERE state IN ('success', 'failed')"
                                    ).fetchone()[0]
                if done >= len(communities) or time.monotonic() > deadline:
                    break
                time.sleep(5)
        out["first_loads_seconds"] = round(time.time() - t_unpause, 1)
        if args.warm_up:  # the catch-up after a mass onboarding is left out of the measured window
            log.info("first loads done in %.0f s; %.0f minutes of warm-up", out["first_loads_seconds"], args.warm_up)
            time.sleep(args.warm_up * 60)
        out["warm_up_minutes"] = args.warm_up
        log.info("soak of %d minutes starts", args.minutes)
        before = {"t": time.time(), "cpu": sampler.snapshot(), "load": load(),
                  "metadata": _db_state(airflow.metadata_url, METADATA_TABLES),
                  "portal": _db_state(portal_url, PORTAL_SYNC_TABLES),
                  "logs_bytes": dir_bytes(work / "airflow" / "home" / "logs"),
                  "component_logs_bytes": dir_bytes(work / "airflow" / "home" / "run")}
        loads = []
        end_at = before["t"] + args.minutes * 60
        while time.time() < end_at:
            time.sleep(min(60, max(end_at - time.time(), 0)))
            loads.append(load())
        after = {"t": time.time(), "cpu": sampler.snapshot(), "load": load(),
                 "metadata": _db_state(airflow.metadata_url, METADATA_TABLES),
                 "portal": _db_state(portal_url, PORTAL_SYNC_TABLES),
                 "logs_bytes": dir_bytes(work / "airflow" / "home" / "logs"),
                 "component_logs_bytes": dir_bytes(work / "airflow" / "home" / "run")}
        # Runs due inside the window may still be running: wait (at most one interval) for them to end.
        t_start, t_end = datetime.fromtimestamp(before["t"], UTC), datetime.fromtimestamp(after["t"], UTC)
        with psycopg.connect(airflow.metadata_url, autocommit=True) as meta:
            grace = time.monotonic() + 330
            while time.monotonic() < grace:
                active = meta.execute(
                    "SELECT count(*) FROM dag_run WHERE data_interval_end >= %s AND data_interval_end < %s"
                    " AND state NOT IN ('success', 'failed')", (t_start, t_end)).fetchone()[0]
                if not active:
                    break
                time.sleep(5)
            runs = meta.execute(
                "SELECT r.dag_id, r.run_id, r.run_type, r.state, r.data_interval_start, r.data_interval_end,"
                " r.start_date, r.end_date, r.queued_at,"
                " (SELECT count(*) FROM task_instance t WHERE t.dag_id = r.dag_id AND t.run_id = r.run_id),"
                " (SELECT count(*) FROM task_instance t WHERE t.dag_id = r.dag_id AND t.run_id = r.run_id"
                "   AND t.start_date IS NOT NULL),"
                " (SELECT coalesce(sum(t.duration), 0) FROM task_instance t WHERE t.dag_id = r.dag_id"
                "   AND t.run_id = r.run_id)"
                " FROM dag_run r WHERE r.run_type = 'scheduled' ORDER BY r.data_interval_end").fetchall()
        out.update(_soak_figures(runs, before, after, loads, t_start, t_end, sampler, activity))
        _print_soak(out)
    finally:
        if activity is not None:
            activity.stop()
        if sampler is not None:
            sampler.stop()
        if airflow is not None:
            airflow.stop()
        drop_db(portal_db)
        if redis_db is not None:
            _flush_redis(redis_db)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return out


def _soak_figures(runs: list, before: dict, after: dict, loads: list, t_start: datetime, t_end: datetime,
                  sampler: ProcSampler, activity: Activity) -> dict:
    interval = timedelta(minutes=5)
    window = [r for r in runs if t_start <= r[5] < t_end]
    started_ok = [r for r in window if r[6] is not None and (r[6] - r[5]).total_seconds() <= 60]
    finished_ok = [r for r in window if r[7] is not None and r[3] == "success" and r[7] <= r[5] + interval]
    both = [r for r in window if r in started_ok and r in finished_ok]
    lags = sorted((r[6] - r[5]).total_seconds() for r in window if r[6] is not None)
    durations = sorted((r[7] - r[6]).total_seconds() for r in window if r[6] and r[7])
    seconds = after["t"] - before["t"]
    per_day = 86400 / seconds
    cpu = cpu_delta(before["cpu"], after["cpu"])
    session = cpu["session"]
    leader = cpu["leader"]
    started_in_window = sum(1 for r in runs if r[6] is not None and t_start <= r[6] < t_end)
    n_runs = max(started_in_window, 1)
    executor_cpu = session.get("scheduler", 0) - leader.get("scheduler", 0)  # executor workers and task processes
    worker_cpu = executor_cpu + sum(v for g, v in session.items() if g.startswith("celery-worker"))

    def pct(values: list[float], q: float) -> float | None:
        return round(values[min(len(values) - 1, int(q * len(values)))], 1) if values else None

    growth = {}
    for db in ("metadata", "portal"):
        growth[db] = {k: {"before": before[db][k], "after": after[db].get(k),
                          "per_day": round((after[db].get(k, 0) - before[db][k]) * per_day)}
                      for k in before[db]}
    return {
        "window": {"start": t_start.isoformat(timespec="seconds"), "end": t_end.isoformat(timespec="seconds"),
                   "seconds": round(seconds, 1)},
        "load_before": before["load"], "load_after": after["load"], "load_each_minute": loads,
        "runs_due_in_window": len(window), "runs_started_in_window": started_in_window,
        "runs_success": sum(1 for r in window if r[3] == "success"),
        "share_started_within_60s": round(len(started_ok) / max(len(window), 1), 4),
        "share_finished_within_interval": round(len(finished_ok) / max(len(window), 1), 4),
        "share_on_time": round(len(both) / max(len(window), 1), 4),
        "start_lag_seconds": {"median": pct(lags, 0.5), "p95": pct(lags, 0.95), "max": pct(lags, 1.0)},
        "run_seconds": {"median": pct(durations, 0.5), "p95": pct(durations, 0.95), "max": pct(durations, 1.0)},
        "task_instances_per_run": round(statistics.mean(r[9] for r in window), 2) if window else None,
        "task_instances_started_per_run": round(statistics.mean(r[10] for r in window), 2) if window else None,
        "task_seconds_per_run": round(statistics.mean(float(r[11]) for r in window), 2) if window else None,
        "late_or_failed": [[r[0], r[1], r[3], str(r[5]), str(r[6]), str(r[7])] for r in window
                           if r not in both][:30],
        "cpu_seconds": cpu,
        "cpu_per_run": {"workers (executor workers + task processes)": round(worker_cpu / n_runs, 2),
                        "api-server": round(session.get("api-server", 0) / n_runs, 2),
                        "scheduler (its own process)": round(leader.get("scheduler", 0) / n_runs, 2),
                        "postgres backends (polled, lower bound)": round(
                            sum(v for g, v in cpu["polled"].items() if g.startswith("postgres")) / n_runs, 2)},
        "cores_used": {g: round(v / seconds, 3) for g, v in session.items()},
        "scheduler_cores": round(leader.get("scheduler", 0) / seconds, 3),
        "peak_pss_mib": sampler.peak_pss,
        "growth": growth,
        "logs_bytes_per_day": round((after["logs_bytes"] - before["logs_bytes"]) * per_day),
        "component_logs_bytes_per_day": round((after["component_logs_bytes"] - before["component_logs_bytes"])
                                              * per_day),
        "activity": {"rounds": activity.rounds, "rows_changed": activity.changes, "errors": activity.errors},
    }


def _print_soak(out: dict) -> None:
    rows = [
        ["runs due in the window", out["runs_due_in_window"], ""],
        ["started within 60 s of due", f"{out['share_started_within_60s']:.1%}", "≥ 99 %"],
        ["finished within the interval (success)", f"{out['share_finished_within_interval']:.1%}", "≥ 99 %"],
        ["both", f"{out['share_on_time']:.1%}", "≥ 99 %"],
        ["start lag s (median / p95 / max)", "{median} / {p95} / {max}".format(**out["start_lag_seconds"]), ""],
        ["run s (median / p95 / max)", "{median} / {p95} / {max}".format(**out["run_seconds"]), ""],
        ["task instances per run (started)", f"{out['task_instances_per_run']} ({out['task_instances_started_per_run']})",
         ""],
        ["task-seconds per run", out["task_seconds_per_run"], ""],
    ]
    rows += [[f"CPU-s per run: {k}", v, ""] for k, v in out["cpu_per_run"].items()]
    rows += [[f"cores used: {k} (session)", v, ""] for k, v in out["cores_used"].items()]
    rows += [["scheduler process, cores", out["scheduler_cores"], ""]]
    rows += [[f"peak PSS MiB: {k}", v, ""] for k, v in out["peak_pss_mib"].items()]
    for db, figures in out["growth"].items():
        rows += [[f"{db}: {k} per day", v["per_day"], f"{v['before']} -> {v['after']}"] for k, v in figures.items()]
    rows += [["task logs bytes per day", out["logs_bytes_per_day"], ""],
             ["component logs bytes per day", out["component_logs_bytes_per_day"], ""],
             ["load (1/5/15 min) before, after", f"{out['load_before']}, {out['load_after']}", ""]]
    print(table(["figure", f"soak {out['executor']} ({out['communities']} communities, {out['minutes']} min)",
                 "target / detail"], rows))


# --- command line -----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="JSON file the results are merged into")
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR))
    parser.add_argument("--keep", action="store_true", help="keep the work directory (sources, Airflow home)")
    sub = parser.add_subparsers(dest="part", required=True)
    p1 = sub.add_parser("dag-processing")
    p1.add_argument("--sizes", default="10,100,300,1000")
    p1.add_argument("--dir-size", type=int, default=1000, help="also a directory of per-community files (0: no)")
    p1.add_argument("--repeat", type=int, default=3)
    p1.add_argument("--task-only", action="store_true", help="only the task process's parse (merged into the JSON)")
    p2 = sub.add_parser("idle-run")
    p2.add_argument("--repeat", type=int, default=3)
    p2.add_argument("--port", type=int, default=8290)
    p2.add_argument("--period", type=float, default=0.05, help="/proc polling period, seconds")
    p2.add_argument("--settle", type=float, default=3.0, help="seconds after the run's end before the CPU reading")
    p3 = sub.add_parser("soak")
    p3.add_argument("--communities", type=int, default=50)
    p3.add_argument("--minutes", type=float, default=30)
    p3.add_argument("--executor", choices=("local", "celery"), default="local")
    p3.add_argument("--preset", default="tiny")
    p3.add_argument("--seed", type=int, default=500)
    p3.add_argument("--port", type=int, default=8291)
    p3.add_argument("--period", type=float, default=1.0, help="/proc polling period, seconds")
    p3.add_argument("--warm-up", type=float, default=0.0,
                    help="minutes between the end of the first loads and the measured window (default 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("caselle_sim").setLevel(logging.WARNING)
    started = {"load_start": load()}
    if args.part == "dag-processing":
        result = dag_processing(args)
    elif args.part == "idle-run":
        result = idle_run(args)
    else:
        result = soak(args)
    save(args.part.replace("-", "_"), {**started, "load_end": load(), **result}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
