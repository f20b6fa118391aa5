#!/usr/bin/env python
"""The portal at fleet size: does one community's run cost more when the portal holds a fleet?

    .venv/bin/python benchmarks/portal_scale.py [--towns 100] [--repeat 5]
    .venv/bin/python benchmarks/portal_scale.py --part city [--city-repeat 2]

Target (fleet issue): with the rows of 100 towns already in the portal, one town's first load, idle run
and full reconciliation cost at most 1.2 times what they cost in an empty portal; a city's first load
stays at or above 3.4 times the plain approach from PostgreSQL (docs/benchmarks/README.md) and should
reach 4 times.

``town`` part. A portal database ``bench_scale_fleet_*`` (migrated by portal_sync.migrate) is filled
with ``--towns`` towns: one simulated town (``town`` preset, seed 12) is synced once as ``F001``, then
its portal rows (and its run-store rows: the run, its data sets, checks, marks) are copied under
``F002``..``F<towns>`` with SQL, each town's rows of a data set's table into a new partition of its own
whose key and indexes are built when it is attached (docs/adr/0011); then ``VACUUM ANALYZE``. The
measured town T is the demo's SPRINGFLD (``town`` preset, seed 11, as scripts/demo.py builds it), a fresh
SQLite working copy of its pristine source for every portal and repetition. Per repetition, interleaved (the empty portal
first on even repetitions, the fleet portal first on odd ones) so that the load of a shared machine
hits both alike:

- (a) T's first load (``run_sync``, a manual run, ``use_gx=False``) into a fresh, migrated, empty
  portal and into the fleet portal under a new code per repetition (``TOWN<k>``, reading the source
  of ``SPRINGFLD`` through ``source_org_code``): the fleet portal grows from 100 to 100 + k - 1 other
  towns over the repetitions;
- (b) T's idle run: nothing changed in the source, the scheduled interval of 5 minutes after the
  source's clock;
- (c) T's full reconciliation (``reconcile_all_history``, ``use_gx=False``) after the change of
  benchmarks/run.py's workload 3 (1 % of the ledger lines changed in place, 0.5 % deleted).

``city`` part. The city preset (seed ``--city-seed``, PostgreSQL source ``bench_scale_src_city_*``,
built once and kept with ``--keep``): the plain approach (benchmarks/tasks.py ``plain``, its first
1,000,000 ledger lines, as run.py) and the city's first load (validation ``--city-validation``, gx
as results.md's workload 1) into an empty portal and into the fleet portal, interleaved. The ledger's
rate is results.md's: charges rows over the charges data set's extract + validate + publish seconds.

Every run is a fresh ``python benchmarks/child.py`` process (benchmarks/measure.py): wall and CPU
seconds of the work, and the CPU of the PostgreSQL client backends serving the portal database
(autovacuum workers left out), read from /proc. The product code measured is a copy of the work
tree's ``include/`` taken at the start (``--code REV``: a ``git archive`` of a revision instead), so
edits made meanwhile do not reach a half-done measurement; its digest is recorded. Results: printed
tables and ``--out`` (JSON, each part under its own key, with the machine, the commit and the load
averages of every measurement). Databases ``bench_scale_*`` are dropped at the end, also on failure
(``--keep`` keeps the fleet portal and the pristine sources for another invocation).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = ROOT / "docs" / "benchmarks" / "portal-scale.json"
DEFAULT_WORKDIR = Path(os.environ.get("CPS_BENCH_WORKDIR", "/tmp/bench_scale"))
PREFIX = "bench_scale_"
TZ = "America/Denver"
TARGET_RATIO = 1.2
# The demo's SPRINGFLD (scripts/demo.py) and the town whose rows fill the fleet.
TOWN_T = {"preset": "town", "seed": 11, "org_code": "SPRINGFLD", "org_name": "City of Springfield",
          "customer_number_mask": "###-#####-##"}
TOWN_FLEET = {"preset": "town", "seed": 12, "org_code": "FLEETTOWN", "org_name": "Fleet Town",
              "customer_number_mask": "###-#####-##"}
RECONCILE_REQUEST = {"reconcile_all_history": True, "allow_mass_delete": ["charges"]}

log = logging.getLogger("portal_scale")


# --- the product code measured ------------------------------------------------------------------

def snapshot_code(workdir: Path, code: str) -> dict:
    """Copy the product code measured (work tree or a revision) so concurrent edits cannot reach it."""
    target = workdir / f"code_{datetime.now(UTC):%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:4]}"
    if code == "worktree":
        shutil.copytree(ROOT / "include", target / "include", ignore=shutil.ignore_patterns("__pycache__"))
    else:
        target.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", "--format=tar", code, "include"], cwd=ROOT,
                                 capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    digest = hashlib.sha256()
    for path in sorted(p for p in (target / "include").rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(target)).encode() + b"\0" + path.read_bytes())
    check = subprocess.run([sys.executable, "-c", "import portal_sync.pipeline, portal_sync.migrate, caselle_sim"],
                           env={**os.environ, "PYTHONPATH": str(target / "include")}, capture_output=True, text=True)
    if check.returncode != 0:
        raise SystemExit(f"the product code copied from {code} does not import:\n{check.stderr[-2000:]}")
    return {"root": str(target), "from": code, "include_sha256": digest.hexdigest()}


def _setup_imports(code_root: str) -> None:
    """Point this process and its children (measure.run_child reads CPS_BENCH_CODE_ROOT) at the copy."""
    os.environ["CPS_BENCH_CODE_ROOT"] = code_root
    sys.path[:0] = [str(HERE), str(Path(code_root) / "include")]


# --- measuring ----------------------------------------------------------------------------------

def measure_sync(name: str, db: str, *, source_odbc: str, community: dict, run_id: str, validation: str,
                 interval: list[str] | None = None, request: dict | None = None, env: dict) -> dict:
    """One product run (benchmarks/tasks.product_sync) in a fresh child, with the load average before it."""
    from measure import run_child
    from run import pg_url

    load = [round(x, 2) for x in os.getloadavg()]
    m = run_child(name, "product_sync", {"portal_url": pg_url(db), "source_odbc": source_odbc,
                                         "community": community, "run_id": run_id, "validation": validation,
                                         "interval": interval, "request": request},
                  databases=[db], env=env, client_backends_only=True)
    if m.extra.get("outcome") != "published":
        raise RuntimeError(f"{name}: the run did not publish: {m.extra.get('outcome')}")
    record = {**m.__dict__, "load_average": load, "database": db, "community": community["code"],
              "validation": validation}
    log.info("%-26s %-36s wall %6.2f s  CPU %6.2f s  PostgreSQL CPU %6.2f s  (load %.1f)", name, db, m.wall, m.cpu,
             m.pg_cpu, load[0])
    return record


def spread(values: list[float]) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {}
    med = statistics.median(values)
    return {"median": round(med, 3), "min": round(min(values), 3), "max": round(max(values), 3),
            "spread": round((max(values) - min(values)) / med, 3) if med else None, "n": len(values)}


def compare(empty: list[dict], fleet: list[dict]) -> dict:
    """Medians and spread per metric, the ratio of the medians and of each interleaved pair (fleet / empty)."""
    out = {}
    for metric in ("wall", "cpu", "pg_cpu", "total_cpu"):
        def get(r: dict, metric: str = metric) -> float:
            return r["cpu"] + r["pg_cpu"] if metric == "total_cpu" else r[metric]

        e, f = [get(r) for r in empty], [get(r) for r in fleet]
        se, sf = spread(e), spread(f)
        pairs = [b / a for a, b in zip(e, f, strict=False) if a]
        out[metric] = {"empty": se, "fleet": sf,
                       "ratio_of_medians": round(sf["median"] / se["median"], 3) if se.get("median") else None,
                       "pair_ratios": [round(x, 3) for x in pairs],
                       "median_pair_ratio": round(statistics.median(pairs), 3) if pairs else None}
    return out


# --- databases ------------------------------------------------------------------------------------

def fresh_portal(db: str) -> str:
    from run import create_db

    from portal_sync.migrate import migrate

    url = create_db(db)
    migrate(url)
    return url


def table_sizes(db: str) -> dict:
    import psycopg
    from run import pg_url

    with psycopg.connect(pg_url(db)) as conn:
        rows = conn.execute(  # per portal table, its communities' partitions (docs/adr/0011) summed
            "SELECT coalesce(p.relname, c.relname), sum(greatest(c.reltuples, 0))::bigint,"
            " sum(pg_total_relation_size(c.oid))::bigint, count(*)"
            " FROM pg_class c LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LEFT JOIN pg_class p ON p.oid = i.inhparent"
            " WHERE c.relnamespace IN ('portal'::regnamespace, 'portal_part'::regnamespace) AND c.relkind = 'r'"
            " GROUP BY 1 ORDER BY 1").fetchall()
        communities = conn.execute("SELECT count(*) FROM portal.communities").fetchone()[0]
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return {"communities": communities, "database_mib": round(size / 2**20),
            "tables": {name: {"rows_estimate": n, "total_mib": round(b / 2**20), "partitions": k}
                       for name, n, b, k in rows}}


def _columns(conn, schema: str, table: str) -> list[str]:
    """The columns a copy writes: identity and generated columns take their own values."""
    return [r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = (quote_ident(%s) || '.' || quote_ident(%s))::regclass"
        " AND attnum > 0 AND NOT attisdropped AND attidentity = '' AND attgenerated = ''"
        " ORDER BY attnum", (schema, table)).fetchall()]


def _community_tables(conn, schema: str, partitioned: bool = False) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'community_code'"
        " WHERE c.relnamespace = %s::regnamespace AND c.relkind = %s ORDER BY c.relname",
        (schema, "p" if partitioned else "r")).fetchall()]


def copy_community(conn, schema: str, table: str, source_code: str, codes: list[str], into: str | None = None) -> int:
    """INSERT ... SELECT of one community's rows under each of ``codes``; run keys get the code appended.
    ``into``: a (qualified, quoted) table to insert into instead of the source table, e.g. a new partition."""
    from psycopg import sql

    cols = _columns(conn, schema, table)
    exprs = []
    for col in cols:
        if col == "community_code":
            exprs.append(sql.SQL("c.code"))
        elif col.endswith("run_key"):
            exprs.append(sql.SQL("t.{} || '@' || c.code").format(sql.Identifier(col)))
        elif schema == "portal" and table == "communities" and col == "name":
            exprs.append(sql.SQL("t.name || ' ' || c.code"))
        else:
            exprs.append(sql.SQL("t.{}").format(sql.Identifier(col)))
    statement = sql.SQL(
        "INSERT INTO {} ({}) SELECT {} FROM {}.{} t CROSS JOIN unnest(%s::text[]) WITH ORDINALITY AS c(code, n)"
        " WHERE t.community_code = %s ORDER BY c.n").format(
        sql.SQL(into) if into else sql.Identifier(schema, table), sql.SQL(", ").join(map(sql.Identifier, cols)),
        sql.SQL(", ").join(exprs), sql.Identifier(schema), sql.Identifier(table))
    return conn.execute(statement, (codes, source_code)).rowcount


def build_fleet(db: str, towns: int, workdir: Path, env: dict) -> dict:
    """The fleet portal: one town synced as F001, its rows copied under F002..F<towns>, VACUUM ANALYZE."""
    import psycopg
    from run import pg_url

    t0 = time.perf_counter()
    url = fresh_portal(db)
    source = town_source(workdir, TOWN_FLEET, "fleet_seed")
    community = {"code": "F001", "caselle_conn_id": "caselle_bench", "time_zone": TZ, "reconcile_schedule": None,
                 "source_org_code": TOWN_FLEET["org_code"]}
    seed = measure_sync("fleet seed town (setup)", db, source_odbc=source_odbc(source), community=community,
                        run_id="bench-scale-seed", validation="sql", env=env)
    codes = [f"F{i:03d}" for i in range(2, towns + 1)]
    copied: dict[str, int] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        # run keys first (the run store's foreign keys), then the rest of the run store
        for table in ["runs", *[t for t in _community_tables(conn, "sync") if t != "runs"]]:
            with conn.transaction():
                copied[f"sync.{table}"] = copy_community(conn, "sync", table, "F001", codes)
        for table in _community_tables(conn, "portal"):  # portal.communities
            copied[f"portal.{table}"] = copy_community(conn, "portal", table, "F001", codes)
        # The data sets' tables are partitioned by community (docs/adr/0011): each town's copy goes into a
        # new partition of its own, whose key and indexes are built when it is attached, as a first load does.
        for table in _community_tables(conn, "portal", partitioned=True):
            t1 = time.perf_counter()
            copied[f"portal.{table}"] = 0
            for code in codes:
                with conn.transaction():
                    part = conn.execute("SELECT sync.new_community_partition(%s, %s)::text",
                                        (table, code)).fetchone()[0]
                    copied[f"portal.{table}"] += copy_community(conn, "portal", table, "F001", [code], into=part)
                    conn.execute("SELECT sync.attach_community_partition(%s, %s)", (table, code))
            log.info("copied portal.%s: %d rows in %.0f s", table, copied[f"portal.{table}"], time.perf_counter() - t1)
        t1 = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        log.info("VACUUM ANALYZE in %.0f s", time.perf_counter() - t1)
    close_source(source)
    return {"database": db, "url": pg_url(db), "towns": towns, "seed_run": seed, "copied_rows": copied,
            "build_seconds": round(time.perf_counter() - t0, 1), "sizes": table_sizes(db)}


# --- sources --------------------------------------------------------------------------------------

def pristine_town(workdir: Path, spec: dict) -> Path:
    """A town's pristine SQLite source, built once (as scripts/demo.py builds it) and kept in the workdir."""
    from caselle_sim import SourceSpec, create_source

    path = workdir / f"town_seed{spec['seed']}_{spec['org_code'].lower()}.db"
    if not path.exists():
        t0 = time.perf_counter()
        tmp = path.with_suffix(".building")
        tmp.unlink(missing_ok=True)
        now = datetime.now(ZoneInfo(TZ)).replace(tzinfo=None, second=0, microsecond=0)
        create_source(SourceSpec.from_url(f"sqlite:///{tmp}"), preset=spec["preset"], seed=spec["seed"],
                      org_code=spec["org_code"], org_name=spec["org_name"], time_zone=TZ,
                      customer_number_mask=spec["customer_number_mask"], start=now).close()
        conn = sqlite3.connect(tmp)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        for suffix in ("-wal", "-shm"):
            Path(f"{tmp}{suffix}").unlink(missing_ok=True)
        tmp.rename(path)
        log.info("built %s in %.1f s", path, time.perf_counter() - t0)
    return path


def town_source(workdir: Path, spec: dict, name: str):
    """A working copy of a town's pristine source (the runs and the changes of (c) go there)."""
    from caselle_sim import SourceSpec, open_source

    pristine = pristine_town(workdir, spec)
    work = workdir / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{work}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(pristine, work)
    return open_source(SourceSpec.from_url(f"sqlite:///{work}"))


def source_odbc(sim) -> str:
    return sim.spec.odbc_connection_string()


def close_source(sim) -> None:
    spec = sim.spec
    sim.close()
    spec.drop()


# --- the town part ------------------------------------------------------------------------------------

def town_part(args, tag: str, fleet_db: str, env: dict, result: dict, save) -> None:
    from run import change_ledger

    runs: dict[str, dict[str, list]] = {k: {"empty": [], "fleet": []} for k in ("first_load", "idle", "reconcile")}
    result["runs"] = runs
    for rep in range(args.repeat):
        code = f"TOWN{rep + 1}"
        community = {"code": code, "caselle_conn_id": "caselle_bench", "time_zone": TZ, "reconcile_schedule": None,
                     "source_org_code": TOWN_T["org_code"]}
        order = ["empty", "fleet"] if rep % 2 == 0 else ["fleet", "empty"]
        dbs = {"empty": f"{PREFIX}empty_{tag}_{rep}", "fleet": fleet_db}
        fresh_portal(dbs["empty"])
        sources = {p: town_source(args.workdir, TOWN_T, f"t_{tag}_{p}") for p in order}
        try:
            for portal in order:
                runs["first_load"][portal].append(measure_sync(
                    f"(a) first load {rep}", dbs[portal], source_odbc=source_odbc(sources[portal]),
                    community=community, run_id=f"bench-scale-first-{rep}", validation="sql", env=env))
            for portal in order:
                # the scheduled interval right after the first load: 5 minutes after the source's clock
                start = sources[portal].now.replace(tzinfo=ZoneInfo(TZ)).astimezone(UTC)
                interval = [start.isoformat(), (start + timedelta(minutes=5)).isoformat()]
                record = measure_sync(f"(b) idle {rep}", dbs[portal], source_odbc=source_odbc(sources[portal]),
                                      community=community, run_id=f"bench-scale-idle-{rep}", validation="sql",
                                      interval=interval, env=env)
                record["interval"] = interval
                moved = {name: d for name, d in record["extra"]["datasets"].items()
                         if (d.get("rows_inserted") or 0) + (d.get("rows_updated") or 0) + (d.get("rows_deleted") or 0)}
                if moved:
                    raise RuntimeError(f"the idle run changed rows: {moved}")
                runs["idle"][portal].append(record)
            changes = {p: change_ledger(sources[p], rep) for p in order}  # workload 3 (run.py)
            for portal in order:
                record = measure_sync(f"(c) reconcile {rep}", dbs[portal], source_odbc=source_odbc(sources[portal]),
                                      community=community, run_id=f"bench-scale-reconcile-{rep}", validation="sql",
                                      request=RECONCILE_REQUEST, env=env)
                record["source_changes"] = changes[portal]
                runs["reconcile"][portal].append(record)
        finally:
            for sim in sources.values():
                close_source(sim)
            from run import drop_db

            drop_db(dbs["empty"])
        result["fleet_communities_at_rep"] = result.get("fleet_communities_at_rep", []) + [args.towns + rep]
        result["summary"] = {k: compare(v["empty"], v["fleet"]) for k, v in runs.items() if v["fleet"]}
        save()


# --- the city part ------------------------------------------------------------------------------------

def city_part(args, tag: str, fleet_db: str, env: dict, result: dict, save) -> None:
    """The city's first load, empty against fleet portal, beside the plain approach from the same source."""
    import report
    from measure import run_child
    from run import Source, create_db, drop_db, pg_url

    from caselle_sim import SourceSpec, create_source, open_source

    pristine_db = f"{PREFIX}src_city_{args.city_seed}"
    url = pg_url(pristine_db)
    spec = SourceSpec.from_url(url)
    if not spec.exists():
        t0 = time.perf_counter()
        create_source(spec, preset="city", seed=args.city_seed, org_code="SPRINGFLD", time_zone=TZ,
                      start=datetime.now(ZoneInfo(TZ)).replace(tzinfo=None, microsecond=0)).close()
        result["source_build_seconds"] = round(time.perf_counter() - t0, 1)
    sim = open_source(spec)
    source = Source("city", "postgresql", args.city_seed, args.workdir)
    source.sim = sim  # for ledger_rows / sample_where (the runs only read the source)
    ledger = source.ledger_rows()
    where = source.sample_where(1_000_000) if ledger > 1_000_000 else None
    result["source"] = {"database": pristine_db, "counts": sim.counts(), "ledger_rows": ledger, "plain_where": where}
    base_db = f"{PREFIX}base_{tag}"
    create_db(base_db)
    runs: dict[str, list] = {"plain": [], "empty": [], "fleet": []}
    result["runs"] = runs
    try:
        for rep in range(args.city_repeat):
            load = [round(x, 2) for x in os.getloadavg()]
            m = run_child("plain", "plain", {"source_odbc": source_odbc(sim), "pg_url": pg_url(base_db),
                                             "where": where}, databases=[base_db, pristine_db], env=env,
                          client_backends_only=True)
            runs["plain"].append({**m.__dict__, "load_average": load})
            log.info("plain %d: %d rows in %.1f s = %.0f rows/s", rep, m.rows, m.wall, m.rows_per_s)
            community = {"code": f"CITY{rep + 1}", "caselle_conn_id": "caselle_bench", "time_zone": TZ,
                         "reconcile_schedule": None, "source_org_code": "SPRINGFLD"}
            order = ["empty", "fleet"] if rep % 2 == 0 else ["fleet", "empty"]
            empty_db = f"{PREFIX}cempty_{tag}_{rep}"
            fresh_portal(empty_db)
            try:
                for portal in order:
                    db = empty_db if portal == "empty" else fleet_db
                    runs[portal].append(measure_sync(
                        f"city first load {rep}", db, source_odbc=source_odbc(sim), community=community,
                        run_id=f"bench-scale-city-{rep}", validation=args.city_validation, env=env))
            finally:
                drop_db(empty_db)
            plain_rate = statistics.median(r["rows"] / r["wall"] for r in runs["plain"])
            summary = {"plain_rows_per_s": round(plain_rate)}
            for portal in ("empty", "fleet"):
                lr = report.ledger_runs(runs[portal])
                rates = [r["rows"] / r["wall"] for r in lr if r["wall"]]
                summary[portal] = {"ledger_rows_per_s": spread(rates), "x_plain": round(
                    statistics.median(rates) / plain_rate, 2) if rates else None,
                    "ledger_seconds": spread([r["wall"] for r in lr]),
                    "publish_seconds": spread([r["parts"]["publish_seconds"] for r in lr]),
                    "run": spread([r["wall"] for r in runs[portal]])}
            summary["first_load"] = compare(runs["empty"], runs["fleet"])
            result["summary"] = summary
            save()
    finally:
        sim.close()
        drop_db(base_db)
        if not args.keep:
            spec.drop()


# --- output -------------------------------------------------------------------------------------------

def print_town(result: dict) -> None:
    summary = result.get("summary") or {}
    titles = {"first_load": "(a) first load", "idle": "(b) idle run", "reconcile": "(c) full reconciliation"}
    print("\n| run of town T | metric | empty portal: median (min-max) | fleet portal: median (min-max) |"
          f" fleet / empty (median of pairs) | <= {TARGET_RATIO} |")
    print("|---|---|---|---|---|---|")
    for key, title in titles.items():
        for metric, label in (("wall", "wall s"), ("cpu", "run process CPU s"), ("pg_cpu", "PostgreSQL CPU s"),
                              ("total_cpu", "CPU s, both")):
            s = summary.get(key, {}).get(metric)
            if not s:
                continue
            e, f = s["empty"], s["fleet"]
            ratio = s["ratio_of_medians"]
            ok = "-" if ratio is None else ("met" if ratio <= TARGET_RATIO else "**missed**")
            print(f"| {title} | {label} | {e['median']:.2f} ({e['min']:.2f}-{e['max']:.2f}) | {f['median']:.2f} "
                  f"({f['min']:.2f}-{f['max']:.2f}) | {ratio:.2f} ({s['median_pair_ratio']:.2f}) | {ok} |")


def print_city(result: dict) -> None:
    s = result.get("summary") or {}
    if not s:
        return
    print(f"\nplain approach: {s['plain_rows_per_s']:,} rows/s")
    print("| city first load | ledger rows/s median (min-max) | x plain | ledger s | publish s | run wall s |")
    print("|---|---|---|---|---|---|")
    for portal in ("empty", "fleet"):
        p = s[portal]
        r = p["ledger_rows_per_s"]
        print(f"| {portal} portal | {r['median']:,.0f} ({r['min']:,.0f}-{r['max']:,.0f}) | {p['x_plain']} |"
              f" {p['ledger_seconds']['median']:.1f} | {p['publish_seconds']['median']:.1f} | {p['run']['median']:.1f} |")


def load_out(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", default="town", help="town, city or both (town,city)")
    p.add_argument("--towns", type=int, default=100, help="towns in the fleet portal")
    p.add_argument("--repeat", type=int, default=5, help="repetitions of (a), (b), (c) in each portal")
    p.add_argument("--city-repeat", type=int, default=2, help="repetitions of the city's first load and the plain approach")
    p.add_argument("--city-seed", type=int, default=1)
    p.add_argument("--city-validation", default="gx", choices=["gx", "sql", "none"])
    p.add_argument("--code", default="worktree", help="worktree (a copy of include/ taken at the start) or a git revision")
    p.add_argument("--fleet-db", help="reuse this fleet portal (made by an earlier --keep invocation)")
    p.add_argument("--keep", action="store_true", help="keep the fleet portal and the pristine sources")
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args.workdir.mkdir(parents=True, exist_ok=True)
    code = snapshot_code(args.workdir, args.code)
    _setup_imports(code["root"])
    from run import db_exists, drop_db, machine

    tag = uuid.uuid4().hex[:6]
    env = {"PORTAL_SYNC_REPORT_DIR": str(args.workdir / "dq_reports")}
    data = load_out(args.out)
    info = machine()
    invocation = {"argv": sys.argv[1:] if argv is None else argv, "started": datetime.now(UTC).isoformat(timespec="seconds"),
                  "commit": info["commit"], "code": code, "load_average_start": info["load_average_start"]}
    data["machine"] = info
    data.setdefault("invocations", []).append(invocation)

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(data, indent=1, default=str) + "\n")

    fleet_db = args.fleet_db or f"{PREFIX}fleet_{tag}"
    try:
        if args.fleet_db and db_exists(args.fleet_db):
            fleet = {"database": fleet_db, "towns": args.towns, "reused": True, "sizes": table_sizes(fleet_db)}
        else:
            fleet = build_fleet(fleet_db, args.towns, args.workdir, env)
        log.info("fleet portal %s: %s", fleet_db, json.dumps(fleet["sizes"]))
        for part in args.part.split(","):
            result = {"commit": info["commit"], "code": code, "fleet": fleet, "started": invocation["started"],
                      "gx": "use_gx=False (validation in the product's SQL)" if part == "town" else args.city_validation}
            data[part] = result
            if part == "town":
                result["repeat"] = args.repeat
                town_part(args, tag, fleet_db, env, result, save)
                print_town(result)
            elif part == "city":
                result["repeat"] = args.city_repeat
                city_part(args, tag, fleet_db, env, result, save)
                print_city(result)
            result["fleet_after"] = table_sizes(fleet_db)
            result["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
            result["load_average_end"] = os.getloadavg()
            save()
    finally:
        if not args.keep:
            drop_db(fleet_db)
            for path in args.workdir.glob("town_seed*.db"):
                path.unlink()
        shutil.rmtree(code["root"], ignore_errors=True)
        invocation["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        invocation["load_average_end"] = os.getloadavg()
        save()
    print(f"\nresults: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
