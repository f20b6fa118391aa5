"""Sync status per community and data set, as plain dicts, for the Airflow status page and the CLI.

Data engineers ask the same few questions every morning: did each data set publish, is it
fresh against its cadence, what did the last run change or refuse, did a data-quality
check fail (and where is the report), and where is the high-water mark. Everything comes
from the audit tables in the portal database (``sync.runs``, ``sync.run_datasets``,
``sync.dq_results``, ``sync.watermarks``, ``sync.quarantine``), so the answer is the same
on any machine; nothing here imports Airflow, so the CLI and the tests use it directly and
the plugin stays a thin web layer.

Reads are bounded whatever the history: per data set one indexed look-up of its latest
processed run, not a scan of all runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from portal_sync.config import Community, LoadedConfig
from portal_sync.dq_report import page_name, report_dir
from portal_sync.freshness import freshness

# Check severities whose failure means rows were refused or the data set failed, against
# "warn" which publishes anyway (docs/adr/0005).
_BLOCKING = ("refuse", "fail")


def connect(portal_url: str) -> psycopg.Connection:
    """A short read-only connection: the status page must never hold locks a publish waits on."""
    conn = psycopg.connect(portal_url, connect_timeout=10, autocommit=True)
    conn.execute("SET default_transaction_read_only = on")
    conn.execute("SET statement_timeout = '15s'")
    return conn


def overview(portal_url: str, config: LoadedConfig, *, community: str | None = None,
             now: datetime | None = None) -> dict[str, Any]:
    """Status of every configured community (or one), plus communities the database knows but the
    configuration does not, and the configuration's errors."""
    now = now or datetime.now(UTC)
    wanted = [c for c in config.communities if community is None or c.code == community.upper()]
    with connect(portal_url) as conn:
        communities = [community_status(conn, c, now=now) for c in wanted]
        configured = {c.code for c in config.communities}
        others = [code for (code,) in conn.execute(
            "SELECT DISTINCT community_code FROM sync.runs ORDER BY 1").fetchall() if code not in configured]
    return {
        "generated_at": now,
        "communities": communities,
        "unconfigured": others if community is None else [],
        "config_errors": [str(error) for error in config.errors],
    }


def community_status(conn: psycopg.Connection, community: Community, *, now: datetime | None = None
                     ) -> dict[str, Any]:
    """One community: its last run and, per enabled data set, publish, freshness, counts, quality, mark."""
    now = now or datetime.now(UTC)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT run_key, airflow_run_id, started_at, published_at, finished_at, outcome, error, time_zone,"
            " source_org_name FROM sync.runs WHERE community_code = %s ORDER BY started_at DESC LIMIT 1",
            (community.code,),
        )
        last_run = cur.fetchone()
        cur.execute("SELECT name, time_zone FROM portal.communities WHERE community_code = %s", (community.code,))
        portal_row = cur.fetchone() or {}
        runs = _last_processed(cur, community.code, community.datasets)
        latest = _latest_rows(cur, community.code, community.datasets)
        checks = _checks(cur, [(row["run_key"], name) for name, row in runs.items()])
        cur.execute("SELECT dataset, mark, updated_at FROM sync.watermarks WHERE community_code = %s",
                    (community.code,))
        marks = {row["dataset"]: row for row in cur.fetchall()}
        cur.execute(
            "SELECT dataset, count(DISTINCT row_key) AS n, min(first_seen_at) AS since FROM sync.quarantine"
            " WHERE community_code = %s GROUP BY dataset", (community.code,),
        )
        quarantine = {row["dataset"]: row for row in cur.fetchall()}
    fresh = {f.dataset: f for f in freshness(conn, community, now=now)}

    site = report_dir(community.code)
    datasets = []
    for name in community.datasets:
        run = runs.get(name)
        state = fresh.get(name)
        datasets.append({
            "dataset": name,
            "last_published_at": state.last_published if state else None,
            "freshness": _freshness_label(state),
            "stale": bool(state and state.stale),
            "cadence_seconds": state.cadence.total_seconds() if state else None,
            "alert_after_seconds": state.limit.total_seconds() if state else None,
            "last_run": _run_counts(run) if run else None,
            "latest_phase": (latest.get(name) or {}).get("phase"),
            "latest_note": (latest.get(name) or {}).get("error"),
            "quality": _quality(checks.get((run["run_key"], name), []) if run else [], run),
            "report_page": _report_page(site, run["run_key"]) if run else None,
            "mark": (marks.get(name) or {}).get("mark"),
            "mark_updated_at": (marks.get(name) or {}).get("updated_at"),
            "quarantined": (quarantine.get(name) or {}).get("n", 0),
            "quarantined_since": (quarantine.get(name) or {}).get("since"),
        })
    return {
        "code": community.code,
        "name": community.name or portal_row.get("name") or (last_run or {}).get("source_org_name") or community.code,
        "dag_id": community.dag_id,
        "schedule": community.schedule,
        "time_zone": community.time_zone or portal_row.get("time_zone") or (last_run or {}).get("time_zone") or "UTC",
        "last_run": dict(last_run) if last_run else None,
        "datasets": datasets,
        "stale": [d["dataset"] for d in datasets if d["stale"]],
        "report_index": "index.html" if (site / "index.html").is_file() else None,
        "report_dir": str(site),
    }


def _last_processed(cur: psycopg.Cursor, community: str, datasets: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Per data set, its audit row in the latest run that did not skip it (a skipped run, not due by
    cadence, changed nothing and has no counts worth showing)."""
    cur.execute(
        "SELECT d.*, r.started_at, r.airflow_run_id, r.outcome FROM unnest(%s::text[]) AS x(dataset)"
        " CROSS JOIN LATERAL (SELECT d.* FROM sync.runs r2 JOIN sync.run_datasets d ON d.run_key = r2.run_key"
        "   AND d.dataset = x.dataset WHERE r2.community_code = %s AND d.phase <> 'skipped'"
        "   ORDER BY r2.started_at DESC LIMIT 1) d"
        " JOIN sync.runs r ON r.run_key = d.run_key",
        (list(datasets), community),
    )
    return {row["dataset"]: row for row in cur.fetchall()}


def _latest_rows(cur: psycopg.Cursor, community: str, datasets: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Per data set, its audit row in the latest run at all (to show "skipped: not due")."""
    cur.execute(
        "SELECT d.dataset, d.phase, d.error FROM unnest(%s::text[]) AS x(dataset)"
        " CROSS JOIN LATERAL (SELECT d.* FROM sync.runs r JOIN sync.run_datasets d ON d.run_key = r.run_key"
        "   AND d.dataset = x.dataset WHERE r.community_code = %s ORDER BY r.started_at DESC LIMIT 1) d",
        (list(datasets), community),
    )
    return {row["dataset"]: row for row in cur.fetchall()}


def _checks(cur: psycopg.Cursor, keys: list[tuple[str, str]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Data-quality results of the given (run, data set) pairs."""
    if not keys:
        return {}
    cur.execute(
        "SELECT q.run_key, q.dataset, q.rule, q.description, q.kind, q.severity, q.success, q.failing_rows"
        " FROM sync.dq_results q JOIN unnest(%s::text[], %s::text[]) AS k(run_key, dataset)"
        " ON q.run_key = k.run_key AND q.dataset = k.dataset ORDER BY q.rule",
        ([k[0] for k in keys], [k[1] for k in keys]),
    )
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in cur.fetchall():
        out.setdefault((row["run_key"], row["dataset"]), []).append(row)
    return out


def _freshness_label(state: Any) -> str:
    if state is None:
        return "unknown"
    if state.stale:
        return "STALE"
    return "fresh" if state.last_published is not None else "never published"


def _run_counts(row: dict[str, Any]) -> dict[str, Any]:
    """The counts a data engineer reads first: what changed (inserted + updated + deleted) and what
    was refused, with the rest for the detail."""
    def n(key: str) -> int:
        return int(row.get(key) or 0)

    return {
        "run_key": row["run_key"],
        "airflow_run_id": row.get("airflow_run_id"),
        "started_at": row.get("started_at"),
        "outcome": row.get("outcome"),
        "phase": row.get("phase"),
        "mode": row.get("mode"),
        "rows_extracted": row.get("rows_extracted"),
        "rows_changed": n("rows_inserted") + n("rows_updated") + n("rows_deleted"),
        "rows_inserted": n("rows_inserted"),
        "rows_updated": n("rows_updated"),
        "rows_deleted": n("rows_deleted"),
        "rows_refused": n("rows_refused"),
        "rows_warned": n("rows_warned"),
        "error": row.get("error"),
    }


def _quality(checks: list[dict[str, Any]], run: dict[str, Any] | None) -> dict[str, Any]:
    """failed (a refusing or failing check failed), warnings (only warn checks failed), passed, or
    not checked (the run stopped before validation, or the data set was never validated)."""
    failed = [
        {"rule": c["rule"], "description": c["description"], "severity": c["severity"], "kind": c["kind"],
         "failing_rows": c["failing_rows"]}
        for c in checks if not c["success"]
    ]
    if not checks:
        status = "not checked"
    elif any(c["severity"] in _BLOCKING for c in failed):
        status = "failed"
    elif failed:
        status = "warnings"
    else:
        status = "passed"
    return {"status": status, "checks": len(checks), "failed_checks": failed,
            "run_key": run["run_key"] if run else None}


def _report_page(site: Path, run_key: str) -> str | None:
    """The run's page in the data-quality site, relative to the site root, if it was written."""
    page = Path("runs") / page_name(run_key)
    return page.as_posix() if (site / page).is_file() else None


# --------------------------------------------------------------------------- text (CLI)


def _when(value: datetime | None) -> str:
    return "never" if value is None else f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%SZ}"


def format_overview(data: dict[str, Any]) -> str:
    """The overview as plain text, one line per data set (``portal-sync status``)."""
    lines: list[str] = []
    for com in data["communities"]:
        run = com["last_run"]
        head = f"{com['code']} ({com['name']})  dag {com['dag_id']}  schedule '{com['schedule']}' {com['time_zone']}"
        if run:
            head += f"  last run {run['outcome']} {_when(run['started_at'])}"
        else:
            head += "  no run yet"
        lines.append(head)
        for ds in com["datasets"]:
            last = ds["last_run"] or {}
            quality = ds["quality"]
            failed = ", ".join(f"{c['rule']}({c['severity']}, {c['failing_rows']})" for c in quality["failed_checks"])
            lines.append(
                f"  {ds['dataset']:<12} {ds['freshness']:<15} published {_when(ds['last_published_at'])}"
                f"  changed {last.get('rows_changed', '-')}  refused {last.get('rows_refused', '-')}"
                f"  dq {quality['status']}{': ' + failed if failed else ''}"
                f"  mark {_when(ds['mark']) if ds['mark'] else '-'}"
                + (f"  quarantined {ds['quarantined']}" if ds["quarantined"] else "")
                + (f"  latest: {ds['latest_phase']}" if ds["latest_phase"] == "skipped" else "")
            )
        if com["report_index"]:
            lines.append(f"  report: {Path(com['report_dir']) / com['report_index']}")
    for code in data["unconfigured"]:
        lines.append(f"{code}: has runs in the portal database but is not in the configuration")
    for error in data["config_errors"]:
        lines.append(f"configuration error: {error}")
    return "\n".join(lines)
