"""Time 10 rules through portal_sync.gx_runner (GX on PostgreSQL) against one plain SQL pass.

Usage: ``.venv/bin/python benchmarks/gx_vs_sql.py [--rows 1000000] [--pg-url postgresql://...]``.
It creates a throwaway schema, fills a staging-like table with generate_series, runs each side
twice and prints the timings (the first GX run also pays for importing great_expectations, which
is timed separately). The plain pass is ``SELECT count(*) FILTER (WHERE p1), ... FROM table s``.
The integration test ``test_benchmark_gx_vs_plain_sql`` calls :func:`run_benchmark`.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import uuid
from typing import Any

import psycopg

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _rules(schema: str) -> list[Any]:
    from portal_sync.gx_runner import GxRule

    stage, keys = f'"{schema}"."stage_bench"', f'"{schema}"."keys_bench"'
    return [
        GxRule("key_not_null", "K present", 's."K" IS NULL'),
        GxRule("key_unique", "K unique", f's."K" IN (SELECT "K" FROM {stage} GROUP BY "K" HAVING count(*) > 1)'),
        GxRule(
            "orphan_account",
            "CustomerID known",
            f'NOT EXISTS (SELECT 1 FROM {keys} k WHERE k."CustomerID" = s."CustomerID")',
        ),
        GxRule(
            "money_format",
            "Amount is money",
            's."Amount" IS NOT NULL AND s."Amount" !~ \'^[+-]?[0-9]{1,10}(\\.[0-9]{1,2}0*)?$\'',
        ),
        GxRule("name_present", "Name present", "coalesce(btrim(s.\"Name\"), '') = ''"),
        GxRule("name_length", "Name fits", 'length(s."Name") > 40'),
        GxRule("email_format", "Email looks valid", 's."Email" IS NOT NULL AND s."Email" !~ \'^[^@ ]+@[^@ ]+$\''),
        GxRule("zip_format", "Zip is 5 or 9 digits", "s.\"Zip\" !~ '^[0-9]{5}(-[0-9]{4})?$'"),
        GxRule("status_domain", "Status known", "s.\"Status\" NOT IN ('A', 'I', 'C')"),
        GxRule(
            "posted_date",
            "PostedAt is an ISO date",
            "s.\"PostedAt\" !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'",
        ),
    ]


def _load(conn: psycopg.Connection, schema: str, rows: int) -> None:
    conn.execute(f'CREATE TABLE "{schema}"."keys_bench" ("CustomerID" text PRIMARY KEY)')
    conn.execute(f"""INSERT INTO "{schema}"."keys_bench" SELECT 'C' || g FROM generate_series(1, 50000) g""")
    conn.execute(
        f'CREATE TABLE "{schema}"."stage_bench" ("_row_id" bigint PRIMARY KEY, "K" text, "CustomerID" text, '
        '"Amount" text, "Name" text, "Email" text, "Zip" text, "Status" text, "PostedAt" text)'
    )
    conn.execute(
        f"""
        INSERT INTO "{schema}"."stage_bench"
        SELECT g,
               CASE WHEN g % 1000 = 0 THEN NULL WHEN g % 997 = 0 THEN 'K1' ELSE 'K' || g END,
               'C' || (g % 50500),                                   -- about 1% orphans
               CASE WHEN g % 501 = 0 THEN 'x' || g ELSE (g % 100000)::text || '.' || lpad((g % 100)::text, 2, '0') END,
               CASE WHEN g % 700 = 0 THEN ' ' ELSE 'Name ' || g END,
               CASE WHEN g % 333 = 0 THEN 'nobody' ELSE 'n' || g || '@example.org' END,
               CASE WHEN g % 250 = 0 THEN '123' ELSE lpad((g % 99999)::text, 5, '0') END,
               (ARRAY['A', 'I', 'C', 'A', 'A', 'I', 'A', 'A', 'A', 'X'])[1 + g % 10],   -- 10% bad
               CASE WHEN g % 400 = 0 THEN '2024/01/01' ELSE '2024-01-' || lpad((1 + g % 28)::text, 2, '0') END
        FROM generate_series(1, {rows}) g
        """
    )
    conn.execute(f'VACUUM ANALYZE "{schema}"."stage_bench"')
    conn.execute(f'VACUUM ANALYZE "{schema}"."keys_bench"')


def _plain_sql_counts(conn: psycopg.Connection, schema: str, rules: list[Any]) -> dict[str, int]:
    filters = ",\n".join(f"count(*) FILTER (WHERE {r.bad_rows_where})" for r in rules)
    row = conn.execute(f'SELECT count(*),\n{filters}\nFROM "{schema}"."stage_bench" s').fetchone()
    assert row is not None
    return {"#rows": row[0], **{r.name: row[i + 1] for i, r in enumerate(rules)}}


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_benchmark(pg_url: str, schema: str, rows: int) -> dict[str, Any]:
    """Fill ``schema`` (which must exist) and return timings in seconds plus the counts."""
    from portal_sync.gx_runner import GxRule, run_rules

    out: dict[str, Any] = {"rows": rows}
    with psycopg.connect(pg_url, autocommit=True) as conn:
        t0 = time.perf_counter()
        _load(conn, schema, rows)
        out["load_s"] = round(time.perf_counter() - t0, 2)
        rules = _rules(schema)

        t0 = time.perf_counter()
        import great_expectations  # noqa: F401  (timed on its own; run_rules imports it lazily)

        out["gx_import_s"] = round(time.perf_counter() - t0, 2)
        out["rss_before_gx_mb"] = round(_max_rss_mb())

        gx_runs, sql_runs = [], []
        gx_counts: dict[str, int] = {}
        sql_counts: dict[str, int] = {}
        for _ in range(2):
            t0 = time.perf_counter()
            results = run_rules(pg_url, schema, "stage_bench", rules, suite_name="bench")
            gx_runs.append(round(time.perf_counter() - t0, 2))
            gx_counts = {"#rows": results[0].element_count, **{r.name: r.unexpected_count for r in results}}

            t0 = time.perf_counter()
            sql_counts = _plain_sql_counts(conn, schema, rules)
            sql_runs.append(round(time.perf_counter() - t0, 2))
        out["gx_s"] = gx_runs
        out["plain_sql_s"] = sql_runs
        out["ratio_best"] = round(min(gx_runs) / min(sql_runs), 2)
        out["max_rss_after_gx_mb"] = round(_max_rss_mb())
        out["counts"] = gx_counts
        out["counts_agree"] = gx_counts == sql_counts

        # Worst case for GX's 200-row fetch: every row bad. psycopg2 buffers the whole result
        # client-side before GX keeps 200 rows, so this shows the memory cost of that.
        t0 = time.perf_counter()
        [all_bad] = run_rules(
            pg_url, schema, "stage_bench", [GxRule("all_bad", "every row", "true")], suite_name="bench_all"
        )
        out["gx_all_rows_bad_s"] = round(time.perf_counter() - t0, 2)
        out["all_rows_bad_count"] = all_bad.unexpected_count
        out["max_rss_after_all_bad_mb"] = round(_max_rss_mb())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    args = parser.parse_args(argv)
    schema = f"gx_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(args.pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        result = run_benchmark(args.pg_url, schema, args.rows)
    finally:
        with psycopg.connect(args.pg_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    for key, value in result.items():
        print(f"{key}: {value}")
    return 0 if result["counts_agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
