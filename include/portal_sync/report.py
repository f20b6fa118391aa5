"""Plain-text summaries of recent runs, read from the audit tables."""

from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg.rows import dict_row

from portal_sync.audit import summary_line


def last_runs(portal_url: str, community: str | None = None, limit: int = 1,
              since: datetime | None = None) -> list[dict]:
    """The most recent runs per community (optionally only those started since a time), with their
    per-data-set audit rows; oldest first within a community, so a session reads in order."""
    with psycopg.connect(portal_url) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT * FROM (SELECT r.*, row_number() OVER (PARTITION BY community_code ORDER BY started_at DESC) AS n"
            " FROM sync.runs r WHERE (%(c)s::text IS NULL OR community_code = %(c)s)"
            " AND (%(since)s::timestamptz IS NULL OR started_at >= %(since)s)) x WHERE n <= %(limit)s"
            " ORDER BY community_code, started_at",
            {"c": community, "limit": limit, "since": since},
        )
        runs = cur.fetchall()
        for run in runs:
            cur.execute("SELECT * FROM sync.run_datasets WHERE run_key = %s ORDER BY dataset", (run["run_key"],))
            run["datasets_audit"] = cur.fetchall()
            cur.execute(
                "SELECT dataset, rule, severity, count(*) AS n, min(row_key) AS example_key, min(reason) AS example"
                " FROM sync.run_findings WHERE run_key = %s GROUP BY dataset, rule, severity ORDER BY dataset, rule",
                (run["run_key"],),
            )
            run["findings"] = cur.fetchall()
    return runs


def format_runs(runs: list[dict]) -> str:
    lines = []
    for run in runs:
        lines.append(
            f"{run['community_code']}  run {run['run_key']}  {run['outcome']}"
            f"  started {run['started_at']:%Y-%m-%d %H:%M:%S%z}"
            + (f"  error: {run['error']}" if run.get("error") else "")
        )
        for row in run["datasets_audit"]:
            lines.append("  " + summary_line(run["community_code"], row["dataset"], row))
        for finding in run["findings"]:
            lines.append(
                f"    {finding['severity']} {finding['dataset']}.{finding['rule']}: {finding['n']} row(s),"
                f" e.g. key {finding['example_key']}: {finding['example']}"
            )
    return "\n".join(lines)
