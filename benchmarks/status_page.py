"""The status page and ``portal-sync status`` at fleet size: server time of the fleet summary and of one drill-down.

Builds a portal database ``bench_status_<hex>`` with the sync history of ``--communities`` communities
(``--days`` days of runs every ``--every`` minutes, six data sets each, generated in SQL by
generate_series), with a mix of states: some communities' last run failed, some have a data set that
stopped publishing (stale), some refused or warned about rows, some are running, a few never ran.
Then times, in this process, what the page's route calls: ``status.fleet`` (one page of the summary)
and ``reporting.html.status_page`` rendering it, median of ``--repeat``; the same for the drill-down of
one community (``status.overview`` of it), and ``portal-sync status`` (the whole fleet as text).
``--explain`` prints the plan of the summary's statement. The database is dropped at the end unless
``--keep``.

    .venv/bin/python benchmarks/status_page.py --communities 1000 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

from portal_sync.config import Community, LoadedConfig  # noqa: E402
from portal_sync.datasets import DATASET_NAMES  # noqa: E402
from portal_sync.migrate import migrate  # noqa: E402
from portal_sync.reporting.html import status_page  # noqa: E402
from portal_sync.reporting.text import format_fleet  # noqa: E402
from portal_sync.status import alert_profiles, fleet, overview  # noqa: E402
from portal_sync.store import reads  # noqa: E402

ADMIN_URL = os.environ.get("CPS_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ZONES = ("America/Denver", "America/Chicago", "America/New_York", "America/Los_Angeles")


def code_of(n: int) -> str:
    return f"C{n:04d}"


def communities(count: int) -> LoadedConfig:
    """The configuration: every community on a 5-minute schedule; every fourth publishes accounts and
    residents hourly (their cadence), as a town would."""
    out = []
    for n in range(1, count + 1):
        cadence = {"accounts": 60, "residents": 60} if n % 4 == 0 else {}
        out.append(Community(code=code_of(n), name=f"Town {n:04d}", caselle_conn_id=f"caselle_{n}",
                             time_zone=ZONES[n % len(ZONES)], cadence_minutes=cadence))
    return LoadedConfig(tuple(out), ())


def build(url: str, count: int, days: float, every_minutes: int, now: datetime) -> tuple[int, int]:
    """The run history, generated in SQL. Community n (1-based):

    - n % 50 == 0: its last run failed (charges failed, outcome partly_published);
    - n % 37 == 0: accounts skipped (not due) for the last 6 hours: stale;
    - n % 23 == 0: its last run refused 3 charges rows;
    - n % 29 == 0: its last run warned about 2 payments rows;
    - n % 19 == 0: its last run is still running;
    - n % 97 == 0: no run at all (configured, never ran).
    """
    runs = int(days * 24 * 60 / every_minutes)
    params = {"n": count, "runs": runs, "every": timedelta(minutes=every_minutes), "now": now,
              "sets": list(DATASET_NAMES), "zones": list(ZONES)}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute(
            "INSERT INTO portal.communities (community_code, name, time_zone, synced_at)"
            " SELECT 'C' || lpad(c::text, 4, '0'), 'Town ' || lpad(c::text, 4, '0'),"
            " (%(zones)s::text[])[c %% 4 + 1], %(now)s FROM generate_series(1, %(n)s) c WHERE c %% 97 <> 0", params)
        conn.execute(
            "INSERT INTO sync.runs (run_key, community_code, airflow_run_id, datasets, source_org_name, time_zone,"
            " started_at, published_at, finished_at, outcome, error)"
            " SELECT k, code, 'scheduled__' || k, %(sets)s::text[], 'Town ' || lpad(c::text, 4, '0'),"
            "  (%(zones)s::text[])[c %% 4 + 1], st,"
            "  CASE WHEN running THEN NULL ELSE st + interval '20 seconds' END,"
            "  CASE WHEN running THEN NULL ELSE st + interval '21 seconds' END,"
            "  CASE WHEN running THEN 'running' WHEN last AND c %% 50 = 0 THEN 'partly_published' ELSE 'published' END,"
            "  CASE WHEN last AND c %% 50 = 0 THEN 'charges: extract failed: source timeout' END"
            " FROM generate_series(1, %(n)s) c CROSS JOIN generate_series(0, %(runs)s - 1) i"
            " CROSS JOIN LATERAL (SELECT 'C' || lpad(c::text, 4, '0') AS code,"
            "   'c' || c || '_' || i AS k, %(now)s - (%(runs)s - i) * %(every)s + (c %% 5) * interval '1 minute' AS st,"
            "   i = %(runs)s - 1 AS last, i = %(runs)s - 1 AND c %% 19 = 0 AS running) x"
            " WHERE c %% 97 <> 0", params)
        conn.execute(
            "INSERT INTO sync.run_datasets (run_key, community_code, dataset, phase, mode, rows_extracted,"
            " rows_refused, rows_warned, rows_inserted, rows_updated, rows_unchanged, rows_deleted, error, updated_at)"
            " SELECT r.run_key, r.community_code, ds, ph,"
            "  CASE WHEN ph = 'skipped' THEN 'skipped' WHEN ds IN ('charges', 'payments') THEN 'window' ELSE 'full' END,"
            "  CASE WHEN ph = 'skipped' THEN NULL ELSE 40 END,"
            "  CASE WHEN last AND c %% 23 = 0 AND ds = 'charges' THEN 3 WHEN ph = 'skipped' THEN NULL ELSE 0 END,"
            "  CASE WHEN last AND c %% 29 = 0 AND ds = 'payments' THEN 2 WHEN ph = 'skipped' THEN NULL ELSE 0 END,"
            "  1, 2, 37, 0, CASE WHEN ph = 'failed' THEN 'extract failed: source timeout' END,"
            "  r.started_at + interval '20 seconds'"
            " FROM sync.runs r CROSS JOIN unnest(%(sets)s::text[]) AS ds"
            " CROSS JOIN LATERAL (SELECT substr(r.community_code, 2)::int AS c,"
            "   r.started_at >= %(now)s - %(every)s AS last) y"
            " CROSS JOIN LATERAL (SELECT CASE"
            "   WHEN r.outcome = 'running' THEN 'staged'"
            "   WHEN last AND c %% 50 = 0 AND ds = 'charges' THEN 'failed'"
            "   WHEN c %% 37 = 0 AND ds = 'accounts' AND r.started_at >= %(now)s - interval '6 hours' THEN 'skipped'"
            "   ELSE 'published' END AS ph) z", params)
        conn.execute(
            "INSERT INTO sync.dq_results (run_key, community_code, dataset, rule, description, kind, severity,"
            " success, failing_rows, validated_at)"
            " SELECT d.run_key, d.community_code, d.dataset, 'bench_rule', 'a benchmark check', 'row',"
            "  CASE WHEN d.rows_refused > 0 THEN 'refuse' ELSE 'warn' END, NOT (d.rows_refused > 0 OR d.rows_warned > 0),"
            "  coalesce(d.rows_refused, 0) + coalesce(d.rows_warned, 0), d.updated_at"
            " FROM sync.run_datasets d WHERE d.dataset IN ('charges', 'payments') AND d.phase <> 'skipped'", params)
        conn.execute("ANALYZE")
        total_runs = conn.execute("SELECT count(*) FROM sync.runs").fetchone()[0]
        total_rows = conn.execute("SELECT count(*) FROM sync.run_datasets").fetchone()[0]
    return total_runs, total_rows


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, list[float], object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--communities", type=int, default=1000)
    parser.add_argument("--days", type=float, default=1.0, help="days of run history (1)")
    parser.add_argument("--every", type=int, default=5, help="minutes between two runs of a community (5)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN (ANALYZE, BUFFERS) of the summary")
    parser.add_argument("--keep", action="store_true", help="keep the database (its URL is printed)")
    args = parser.parse_args()

    name = f"bench_status_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(ADMIN_URL, dbname=name)
    try:
        migrate(url)
        now = datetime.now(UTC)
        started = time.perf_counter()
        total_runs, total_rows = build(url, args.communities, args.days, args.every, now)
        print(f"database {name}: {args.communities} communities, {total_runs:,} runs, {total_rows:,} run_datasets"
              f" rows, built in {time.perf_counter() - started:.1f} s")
        config = communities(args.communities)
        now = datetime.now(UTC)

        def fleet_page() -> str:
            return status_page("Caselle sync status", config, fleet=fleet(url, config, now=now))

        def drill_down() -> str:
            return status_page("Caselle sync status", config, data=overview(url, config, community="C0050", now=now),
                               drilldown=True)

        def cli_text() -> str:
            return format_fleet(fleet(url, config, per_page=None, now=now))

        fleet_page()  # warm: templates compiled, connections' first round trip, catalog caches
        load = os.getloadavg()
        med, times, page = timed(fleet_page, args.repeat)
        print(f"fleet page (status.fleet + status_page, 50 rows of {args.communities}): median {med * 1000:.0f} ms"
              f" [{', '.join(f'{t * 1000:.0f}' for t in times)}], {len(page):,} bytes")
        med, times, page = timed(drill_down, args.repeat)
        print(f"drill-down of one community (overview + status_page): median {med * 1000:.0f} ms"
              f" [{', '.join(f'{t * 1000:.0f}' for t in times)}], {len(page):,} bytes")
        med, times, text = timed(cli_text, args.repeat)
        print(f"portal-sync status (whole fleet as text): median {med * 1000:.0f} ms"
              f" [{', '.join(f'{t * 1000:.0f}' for t in times)}], {len(str(text).splitlines())} lines")
        summary = fleet(url, config, per_page=None, now=now)
        print("states: " + ", ".join(f"{s} {n}" for s, n in summary["counts"].items()))
        print(f"load average before / after: {' '.join(f'{x:.2f}' for x in load)} /"
              f" {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
        if args.explain:
            with reads.connect(url) as conn:
                rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + reads.FLEET_SQL,
                                    reads.fleet_params(alert_profiles(config.communities, now), now)).fetchall()
            print("\n".join(r[0] for r in rows))
    finally:
        if args.keep:
            print(f"kept: {url}")
        else:
            with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
