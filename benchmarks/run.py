#!/usr/bin/env python
"""The benchmark suite of issue 7: the product against the usual ways of doing the job and the machine's limit.

    .venv/bin/python benchmarks/run.py --preset town --source sqlite --repeat 3 --workloads 1,2,3,4 \
        --out docs/benchmarks/town-sqlite.md

Workloads (see benchmarks/README.md): 1 initial full sync (with and without validation), 2 an
incremental run of 15 minutes of activity, 3 a full reconciliation with 1 % of the ledger changed in
place and 0.5 % deleted, 4 one end-to-end run through a private Airflow. With workload 1 come the
baselines on the ledger: the plain approach, GenericTransfer, the ceiling and the key-only read.

Results go to ``<out>.json`` (raw, every repetition; re-running with the same --out replaces only
the preset/source sections run again) and ``<out>`` (markdown tables of medians, re-rendered from
the JSON). ``benchmarks/run.py report --out X.md`` re-renders without running anything.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# --code REV: the product code measured is a `git archive` snapshot of REV (see main), not the work tree
CODE_ROOT = Path(os.environ.get("CPS_BENCH_CODE_ROOT") or ROOT)
sys.path[:0] = [str(HERE), str(CODE_ROOT / "include")]

import psycopg  # noqa: E402
import report  # noqa: E402
from measure import Measurement, run_child  # noqa: E402
from psycopg import sql  # noqa: E402

log = logging.getLogger("bench")

TZ = "America/Denver"
ORG = "SPRINGFLD"
PG_ADMIN = os.environ.get("CPS_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
DEFAULT_WORKDIR = Path(os.environ.get("CPS_BENCH_WORKDIR", "/tmp/cps_bench"))


def community_fields() -> dict:
    """The benchmarked community: defaults, except no nightly reconciliation inside the incremental runs."""
    return {"code": ORG, "caselle_conn_id": "caselle_bench", "time_zone": TZ, "reconcile_schedule": None}


def local_now() -> datetime:
    return datetime.now(ZoneInfo(TZ)).replace(tzinfo=None, microsecond=0)


def change_ledger(sim, rep: int) -> dict:
    """Workload 3's change: 1 % of the ledger lines changed in place (InputDate untouched: no window sees
    it), 0.5 % deleted; the residues differ per repetition, so each has fresh changes to find."""
    changed = sim.execute(
        "UPDATE \"UB_Transaction\" SET \"Description\" = substr(\"Description\", 1, 50) || ' (rev)',"
        " \"Amount\" = \"Amount\" + 1 WHERE \"TransactionType\" <> 'PMT'"
        f" AND \"TransactionID\" - (\"TransactionID\" / 100) * 100 = {10 + rep}")
    deleted = sim.execute(
        "DELETE FROM \"UB_Transaction\" WHERE \"TransactionType\" <> 'PMT'"
        f" AND \"TransactionID\" - (\"TransactionID\" / 200) * 200 = {150 + rep}")
    return {"changed": changed, "deleted": deleted}


def pg_url(db: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + db


def admin_execute(statement: sql.Composable | str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(statement)


def create_db(name: str, template: str | None = None) -> str:
    admin_execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    if template:
        admin_execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    else:
        admin_execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return pg_url(name)


def drop_db(name: str) -> None:
    admin_execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def db_exists(name: str) -> bool:
    with psycopg.connect(PG_ADMIN) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def cpu_model() -> str:
    return next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")), platform.processor())


def machine() -> dict:
    def sh(cmd: str) -> str:
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True, cwd=ROOT, timeout=30).stdout.strip()
        except Exception:
            return ""

    mem_kib = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal")))
    from importlib.metadata import version

    libs = {name: version(name) for name in ("arrow-odbc", "adbc-driver-postgresql", "pyarrow", "psycopg", "pyodbc",
                                             "pandas", "SQLAlchemy", "apache-airflow", "great-expectations")}
    with psycopg.connect(PG_ADMIN) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
        settings = dict(conn.execute(
            "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name IN ('shared_buffers', 'work_mem',"
            " 'maintenance_work_mem', 'max_wal_size', 'synchronous_commit', 'wal_level')").fetchall())
    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "os": sh(". /etc/os-release && echo $PRETTY_NAME") or platform.platform(), "kernel": platform.release(),
        "python": platform.python_version(), "postgresql": pg, "pg_settings": settings, "libraries": libs,
        "odbc_drivers": ", ".join(sh("odbcinst -q -d").replace("[", "").replace("]", "").split("\n")),
        "commit": os.environ.get("CPS_BENCH_CODE_REV") or sh("git rev-parse HEAD"),
        "code": "git archive snapshot" if os.environ.get("CPS_BENCH_CODE_REV") else "work tree",
        "product_code_modified": False if os.environ.get("CPS_BENCH_CODE_REV") else bool(
            sh("git status --porcelain -- include dags")),
        "load_average_start": os.getloadavg(),
    }


# --- sources -------------------------------------------------------------------------------------

class Source:
    """A simulated Caselle: a pristine copy kept for reuse and a working copy the workloads change."""

    def __init__(self, preset: str, engine: str, seed: int, workdir: Path):
        self.preset, self.engine, self.seed, self.workdir = preset, engine, seed, workdir
        if engine == "sqlite":
            self.pristine_url = f"sqlite:///{workdir / f'{preset}_seed{seed}.db'}"
            self.work_url = f"sqlite:///{workdir / f'{preset}_seed{seed}_work.db'}"
            self.databases: list[str] = []
        else:
            self.pristine_db, self.work_db = f"cps_bench_src_{preset}_{seed}", f"cps_bench_srcw_{preset}_{seed}"
            self.pristine_url, self.work_url = pg_url(self.pristine_db), pg_url(self.work_db)
            self.databases = [self.work_db]
        self.build_seconds: float | None = None
        self.sim = None

    def prepare(self, rebuild: bool = False) -> None:
        from caselle_sim import SourceSpec, create_source, open_source

        pristine = SourceSpec.from_url(self.pristine_url)
        if rebuild or not pristine.exists():
            log.info("building %s %s source (seed %d) at %s", self.preset, self.engine, self.seed, self.pristine_url)
            t0 = time.perf_counter()
            create_source(pristine, preset=self.preset, seed=self.seed, org_code=ORG, time_zone=TZ,
                          start=local_now()).close()
            self.build_seconds = round(time.perf_counter() - t0, 1)
            log.info("built in %.0f s", self.build_seconds)
        log.info("copying the pristine source to the working copy")
        if self.engine == "sqlite":
            with sqlite3.connect(pristine.path) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            work = SourceSpec.from_url(self.work_url)
            for suffix in ("", "-wal", "-shm"):
                Path(work.path + suffix).unlink(missing_ok=True)
            shutil.copyfile(pristine.path, work.path)
        else:
            create_db(self.work_db, template=self.pristine_db)
        self.sim = open_source(SourceSpec.from_url(self.work_url))

    @property
    def odbc(self) -> str:
        return self.sim.spec.odbc_connection_string()

    def airflow_conn(self) -> dict:
        spec = self.sim.spec
        if self.engine == "sqlite":
            return {"conn_type": "odbc", "schema": spec.path, "extra": {"driver": "SQLite3", "StepAPI": "1"}}
        return {"conn_type": "odbc", "host": spec.host, "port": spec.port, "login": spec.user, "schema": spec.database,
                "extra": {"driver": "PostgreSQL Unicode", "UseDeclareFetch": "1", "Fetch": "10000", "CommLog": "0"}}

    def ledger_rows(self, where: str | None = None) -> int:
        extra = f" AND ({where})" if where else ""
        return int(self.sim.query(
            f"SELECT COUNT(*) FROM \"UB_Transaction\" WHERE \"TransactionType\" <> 'PMT'{extra}")[0][0])

    def sample_where(self, rows: int) -> str:
        """The first ``rows`` ledger lines by TransactionID (a fixed sample)."""
        cut = self.sim.query(
            "SELECT \"TransactionID\" FROM \"UB_Transaction\" WHERE \"TransactionType\" <> 'PMT'"
            f" ORDER BY \"TransactionID\" LIMIT 1 OFFSET {int(rows) - 1}")[0][0]
        return f'"TransactionID" <= {int(cut)}'

    def close(self, keep_pristine: bool = True) -> None:
        from caselle_sim import SourceSpec

        if self.sim is not None:
            self.sim.close()
            self.sim = None
        SourceSpec.from_url(self.work_url).drop()
        if not keep_pristine:
            SourceSpec.from_url(self.pristine_url).drop()


# --- the workloads ---------------------------------------------------------------------------------

class Bench:
    def __init__(self, args, preset: str, engine: str):
        self.args, self.preset, self.engine = args, preset, engine
        self.workdir: Path = args.workdir
        self.tag = uuid.uuid4().hex[:6]
        self.source = Source(preset, engine, args.seed, self.workdir)
        self.base_db = f"cps_bench_base_{self.tag}"
        self.portal_db: str | None = None  # the synced portal workloads 2 and 3 run on
        self.reports = self.workdir / "dq_reports"
        self.env = {"PORTAL_SYNC_REPORT_DIR": str(self.reports)}
        self.result: dict = {"preset": preset, "source": engine, "repeat": args.repeat}

    def measure(self, name: str, function: str, databases: list[str], profile: str | None = None,
                env: dict | None = None, **kwargs) -> Measurement:
        dbs = [*databases, *self.source.databases]
        m = run_child(name, function, kwargs, databases=dbs, env={**self.env, **(env or {})}, profile=profile)
        log.info("%s: %d rows in %.1f s (%.0f rows/s), CPU %.1f s, PostgreSQL CPU %.1f s, peak RSS %.0f MiB",
                 name, m.rows, m.wall, m.rows_per_s, m.cpu, m.pg_cpu, m.rss_mib)
        return m

    def save(self) -> None:
        self.args.save(self.preset, self.engine, self.result)

    def stamp(self, workload: str) -> None:
        """Which commit each workload's numbers were measured at (sections are re-run piecemeal)."""
        self.result.setdefault("commits", {})[workload] = self.args.commit

    # -- source
    def setup(self) -> None:
        self.source.prepare(rebuild=self.args.rebuild)
        sim = self.source.sim
        self.result["source_info"] = {"counts": sim.counts(), "ledger_rows": self.source.ledger_rows(),
                                      "build_seconds": self.source.build_seconds, "clock": sim.now.isoformat(),
                                      "odbc": self.source.odbc, "cpu": cpu_model()}
        self.save()

    def teardown(self) -> None:
        for db in (self.base_db, self.portal_db):
            if db:
                drop_db(db)
        self.source.close(keep_pristine=not self.args.clean)
        for path in self.workdir.glob(f"pgcopy/{self.tag}_*"):
            path.unlink()

    # -- baselines (on the ledger)
    def baselines(self) -> None:
        repeat = self.args.repeat
        src = self.source
        base = create_db(self.base_db)
        full_rows = self.result["source_info"]["ledger_rows"]
        where = None
        if self.args.baseline_rows and full_rows > self.args.baseline_rows:
            where = src.sample_where(self.args.baseline_rows)
        sample_rows = src.ledger_rows(where) if where else full_rows
        out = {"sample_where": where, "sample_rows": sample_rows, "ledger_rows": full_rows, "runs": {}}
        self.result["baselines"] = out
        self.stamp("baselines")
        copy_dir = self.workdir / "pgcopy"
        copy_dir.mkdir(parents=True, exist_ok=True)
        copy_dir.chmod(0o777)  # the PostgreSQL server reads and writes the file
        path = str(copy_dir / f"{self.tag}_ledger.bin")
        made = self.measure("copy file (setup, not a result)", "make_copy_file", [self.base_db],
                            source_odbc=src.odbc, pg_url=base, path=path)
        out["copy_file_bytes"] = made.extra.get("bytes")
        gt_env = {
            "AIRFLOW_HOME": str(self.workdir / "airflow_gt"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__PROVIDERS_ODBC__ALLOW_DRIVER_IN_EXTRA": "True",
            "AIRFLOW_CONN_BENCH_SOURCE": json.dumps(src.airflow_conn()),
            "AIRFLOW_CONN_BENCH_PORTAL": json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": 5432,
                                                     "login": "postgres", "schema": self.base_db}),
        }
        plan = [
            ("ceiling_read", "ceiling_read", {"source_odbc": src.odbc}, {}),
            ("ceiling_copy", "ceiling_copy", {"pg_url": base, "path": path}, {}),
            ("key_read", "key_read", {"source_odbc": src.odbc}, {}),
            ("plain", "plain", {"source_odbc": src.odbc, "pg_url": base, "where": where}, {}),
            ("generic_transfer", "generic_transfer", {"pg_url": base, "where": where}, gt_env),
        ]
        skip = set(self.args.skip_baselines or ())
        for _ in range(repeat):  # interleaved, so a busy minute on the machine does not hit one approach only
            for key, function, kwargs, env in plan:
                if key in skip:
                    continue
                m = self.measure(key, function, [self.base_db], env=env, **kwargs)
                out["runs"].setdefault(key, []).append(m.__dict__)
                self.save()
        Path(path).unlink(missing_ok=True)
        drop_db(self.base_db)

    # -- workload 1
    def full_sync(self) -> None:
        variants = self.args.w1_variants
        out = self.result["w1"] = {}
        self.stamp("w1")
        keep_variant = "gx" if "gx" in variants else variants[0]
        for rep in range(self.args.w1_repeat or self.args.repeat):
            for variant in variants:
                db = f"cps_bench_portal_{self.tag}_{variant}{rep}"
                url = self._fresh_portal(db)
                with self.explained(db, f"w1_{variant}" if rep == 0 else ""):
                    m = self.measure(f"w1 {variant}", "product_sync", [db], portal_url=url,
                                     source_odbc=self.source.odbc, community=community_fields(),
                                     run_id=f"bench-w1-{variant}-{rep}", validation=variant,
                                     profile=self._profile_path(f"w1_{variant}") if rep == 0 else None)
                out.setdefault(variant, []).append(m.__dict__)
                self.save()
                if variant == keep_variant:
                    if self.portal_db:
                        drop_db(self.portal_db)
                    self.portal_db = db
                else:
                    drop_db(db)

    def _fresh_portal(self, db: str) -> str:
        from portal_sync.migrate import migrate

        url = create_db(db)
        migrate(url)
        return url

    @contextlib.contextmanager
    def explained(self, db: str, what: str):
        """auto_explain for every session of this database (ALTER DATABASE: no product code touched); the plans
        of statements slower than --explain-ms are copied from the server log to <workdir>/profiles."""
        if what not in (self.args.explain or ()):
            yield
            return
        settings = {"session_preload_libraries": "auto_explain", "auto_explain.log_min_duration":
                    f"{self.args.explain_ms}ms", "auto_explain.log_analyze": "on", "auto_explain.log_buffers": "on",
                    "auto_explain.log_nested_statements": "on", "auto_explain.log_verbose": "off"}
        for name, value in settings.items():
            admin_execute(sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                sql.Identifier(db), sql.Identifier(*name.split(".")), sql.Literal(value)))
        log_path = Path(self.args.server_log)
        start = log_path.stat().st_size if log_path.exists() else 0
        try:
            yield
        finally:
            admin_execute(sql.SQL("ALTER DATABASE {} RESET ALL").format(sql.Identifier(db)))
            out = self.workdir / "profiles" / f"{self.preset}_{self.engine}_{what}_plans.log"
            out.parent.mkdir(parents=True, exist_ok=True)
            if log_path.exists():
                with open(log_path, errors="replace") as fh:
                    fh.seek(start)
                    records, keep = [], False
                    for line in fh:
                        if line[:4].isdigit() and line[4:5] == "-":  # a new log record
                            keep = f"@{db} " in line
                        if keep:
                            records.append(line)
                out.write_text("".join(records))
                log.info("plans of statements over %d ms: %s", self.args.explain_ms, out)

    def _profile_path(self, what: str) -> str | None:
        if what not in (self.args.profile or ()):
            return None
        path = self.workdir / "profiles" / f"{self.preset}_{self.engine}_{what}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(path)

    def ensure_synced(self) -> str:
        if self.portal_db is None:
            db = f"cps_bench_portal_{self.tag}_init"
            url = self._fresh_portal(db)
            self.measure("initial sync (setup, not a result)", "product_sync", [db], portal_url=url,
                         source_odbc=self.source.odbc, community=community_fields(), run_id="bench-init",
                         validation="sql")
            self.portal_db = db
        return pg_url(self.portal_db)

    # -- workload 2
    def incremental(self) -> None:
        url = self.ensure_synced()
        sim = self.source.sim
        runs = self.result["w2"] = []
        self.stamp("w2")
        extra = self.result["w2_variants"] = {}
        for rep in range(self.args.repeat):
            for variant in self.args.w2_variants:
                before = sim.now
                t0 = time.perf_counter()
                changes = sim.evolve(timedelta(minutes=self.args.minutes))
                evolve_seconds = time.perf_counter() - t0
                # As tests/synctest.advance: the scheduled interval that covers the activity (end one second
                # later: recomputed balances are stamped with the clock's end itself).
                interval = [before.replace(tzinfo=ZoneInfo(TZ)).astimezone(UTC).isoformat(),
                            (sim.now.replace(tzinfo=ZoneInfo(TZ)).astimezone(UTC) + timedelta(seconds=1)).isoformat()]
                with self.explained(self.portal_db, f"w2_{variant}" if rep == 0 else ""):
                    comm = community_fields()
                    if variant == "snapshots60":  # the snapshots were refreshed minutes ago: not due
                        comm["cadence_minutes"] = {"accounts": 60, "residents": 60, "assessments": 60}
                    m = self.measure(f"w2 incremental ({variant})", "product_sync", [self.portal_db], portal_url=url,
                                     source_odbc=self.source.odbc, community=comm, run_id=f"bench-w2-{variant}-{rep}",
                                     validation="gx" if variant == "snapshots60" else variant, interval=interval,
                                     profile=self._profile_path(f"w2_{variant}") if rep == 0 else None)
                m.extra["changes"] = {table: list(c) for table, c in changes.counts().items()}
                m.extra["evolve_seconds"] = round(evolve_seconds, 2)
                m.extra["interval"] = interval
                m.extra["validation"] = variant
                (runs if variant == "gx" else extra.setdefault(variant, [])).append(m.__dict__)
                self.save()

    # -- workload 3
    def reconcile(self) -> None:
        url = self.ensure_synced()
        sim = self.source.sim
        runs = self.result["w3"] = []
        self.stamp("w3")
        ledger = self.source.ledger_rows()
        for rep in range(self.args.w3_repeat or self.args.repeat):
            t0 = time.perf_counter()
            counts = change_ledger(sim, rep)
            changed, deleted = counts["changed"], counts["deleted"]
            mutate_seconds = time.perf_counter() - t0
            with self.explained(self.portal_db, "w3" if rep == 0 else ""):
                m = self.measure("w3 reconcile", "product_sync", [self.portal_db], portal_url=url,
                                 source_odbc=self.source.odbc, community=community_fields(),
                                 run_id=f"bench-w3-{rep}", validation="gx",
                                 request={"reconcile_all_history": True, "allow_mass_delete": ["charges"]},
                                 profile=self._profile_path("w3") if rep == 0 else None)
            m.extra.update({"ledger_rows_before": ledger, "changed": changed, "deleted": deleted,
                            "mutate_seconds": round(mutate_seconds, 1)})
            ledger -= deleted
            runs.append(m.__dict__)
            self.save()

    # -- workload 4
    def airflow(self) -> None:
        import airflow_e2e

        self.stamp("w4")
        self.result["w4"] = airflow_e2e.run(self, repeat=self.args.repeat)
        self.save()


# --- results file -------------------------------------------------------------------------------------

class Results:
    def __init__(self, out: Path):
        self.out = out
        self.json_path = out.with_suffix(".json")
        self.data = json.loads(self.json_path.read_text()) if self.json_path.exists() else {"sections": {}}

    def save(self, preset: str, engine: str, section: dict) -> None:
        """A re-run replaces the workloads it ran and keeps the section's others (each stamped with its commit)."""
        key = f"{preset}/{engine}"
        old = self.data["sections"].get(key, {})
        if old.get("source_info", {}).get("counts") not in (None, section.get("source_info", {}).get("counts")):
            old = {k: v for k, v in old.items() if k in ("commits",)}  # another source: nothing comparable
        merged = {**old, **section, "commits": {**old.get("commits", {}), **section.get("commits", {})}}
        self.data["sections"][key] = merged
        self.write()

    def write(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.json_path.write_text(json.dumps(self.data, indent=1, default=str) + "\n")
        self.out.write_text(report.render(self.data))


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", nargs="?", default="run", choices=["run", "report"])
    p.add_argument("--preset", default="town", help="town, city or both (town,city)")
    p.add_argument("--source", default="sqlite", help="sqlite, postgresql or both (sqlite,postgresql)")
    p.add_argument("--repeat", type=int, default=3, help="repetitions of every measurement (medians reported)")
    p.add_argument("--w1-repeat", type=int, help="repetitions of workload 1 (default --repeat)")
    p.add_argument("--w3-repeat", type=int, help="repetitions of workload 3 (default --repeat)")
    p.add_argument("--workloads", default="1,2,3,4", help="comma list of 1 2 3 4 (baselines come with 1)")
    p.add_argument("--w1-variants", default="gx,none",
                   help="validation variants of workload 1: gx (product default), none (validate step replaced), "
                        "sql (use_gx=False)")
    p.add_argument("--w2-variants", default="gx",
                   help="validation variants of workload 2, each after its own 15 minutes of activity: gx, sql, none")
    p.add_argument("--baseline-rows", type=int, default=1_000_000,
                   help="plain approach and GenericTransfer run on at most this many ledger lines (a fixed sample)")
    p.add_argument("--skip-baselines", default="", help="comma list of baselines not to run")
    p.add_argument("--no-baselines", action="store_true", help="workload 1 without the baselines (profiling runs)")
    p.add_argument("--minutes", type=float, default=15, help="simulated activity per incremental run")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "results.md")
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="sources, copy files, Airflow home")
    p.add_argument("--rebuild", action="store_true", help="rebuild the pristine source even if it exists")
    p.add_argument("--clean", action="store_true", help="remove the pristine sources at the end too")
    p.add_argument("--airflow-port", type=int, default=8192)
    p.add_argument("--code", help="measure the product code of this git revision (a `git archive` snapshot under "
                                  "the workdir) instead of the work tree, e.g. --code HEAD")
    p.add_argument("--profile", default="", help="py-spy profiles (first repetition) of: w1_gx,w1_none,w1_sql,w2_gx,w2_sql,w3; "
                                                "written to <workdir>/profiles (needs py-spy in the venv)")
    p.add_argument("--explain", default="", help="auto_explain (EXPLAIN ANALYZE of every portal statement over "
                                                "--explain-ms) for the first repetition of: w1_gx,w1_none,w1_sql,w2_gx,w2_sql,w3")
    p.add_argument("--explain-ms", type=int, default=300)
    p.add_argument("--server-log", default="/var/log/postgresql/postgresql-15-main.log",
                   help="the PostgreSQL server log (readable), where auto_explain writes")
    args = p.parse_args(argv)
    args.workloads = {int(w) for w in args.workloads.split(",") if w}
    args.w1_variants = [v for v in args.w1_variants.split(",") if v]
    args.w2_variants = [v for v in args.w2_variants.split(",") if v]
    args.skip_baselines = [b for b in args.skip_baselines.split(",") if b]
    args.profile = [x for x in args.profile.split(",") if x]
    args.explain = [x for x in args.explain.split(",") if x]
    return args


def _reexec_on_snapshot(args, argv: list[str]) -> int:
    """Export the revision with `git archive` (no checkout) and run the suite again on that code."""
    rev = subprocess.run(["git", "rev-parse", args.code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    snapshot = args.workdir / f"code-{rev[:12]}"
    if not (snapshot / "include").exists():
        snapshot.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", "--format=tar", rev], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(snapshot)], input=archive.stdout, check=True)
    venv = snapshot / ".venv"
    if not venv.exists():
        venv.symlink_to(ROOT / ".venv")  # scripts/env.sh puts $PROJECT_ROOT/.venv/bin on PATH
    env = {**os.environ, "CPS_BENCH_CODE_ROOT": str(snapshot), "CPS_BENCH_CODE_REV": rev,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(snapshot / "include"), os.environ.get("PYTHONPATH")]))}
    os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve()), *argv], env)
    return 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.code and not os.environ.get("CPS_BENCH_CODE_ROOT"):
        return _reexec_on_snapshot(args, argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    results = Results(args.out)
    if args.command == "report":
        results.write()
        return 0
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.save = results.save
    info = machine()
    args.commit = info["commit"]
    results.data.setdefault("machine", {})
    results.data["machine"].update(info)
    results.data.setdefault("invocations", []).append({
        "argv": sys.argv[1:], "started": datetime.now(UTC).isoformat(timespec="seconds"), "commit": info["commit"],
        "load_average_start": info["load_average_start"]})
    results.write()
    for preset in args.preset.split(","):
        for engine in args.source.split(","):
            bench = Bench(args, preset, engine)
            previous = results.data["sections"].get(f"{preset}/{engine}") or {}
            # workloads not re-run keep their earlier results
            bench.result = {**previous, **bench.result}
            try:
                bench.setup()
                if 1 in args.workloads:
                    if not args.no_baselines:
                        bench.baselines()
                    bench.full_sync()
                if 2 in args.workloads:
                    bench.incremental()
                if 3 in args.workloads:
                    bench.reconcile()
                if 4 in args.workloads:
                    bench.airflow()
                bench.result["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
                bench.result["commit"] = info["commit"]
                bench.save()
            finally:
                bench.teardown()
    results.data["invocations"][-1]["load_average_end"] = os.getloadavg()
    results.data["invocations"][-1]["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    results.write()
    log.info("results: %s (raw: %s)", args.out, results.json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
