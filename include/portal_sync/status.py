"""Sync status per community and data set, as plain dicts, for the Airflow status page and the CLI.

Data engineers ask the same few questions every morning: did each data set publish, is it
fresh against its cadence, what did the last run change or refuse, did a data-quality
check fail (and where is the report), and where is the high-water mark. Everything comes
from the run store in the portal database (``store.reads``), so the answer is the same on
any machine; nothing here imports Airflow, so the CLI and the tests use it directly and
the plugin stays a thin web layer. The text and HTML forms are in ``reporting``.

Reads are bounded whatever the history: per data set one indexed look-up of its latest
processed run, not a scan of all runs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from portal_sync.config import Community, LoadedConfig
from portal_sync.dq_report import page_name, report_dir
from portal_sync.freshness import freshness
from portal_sync.store import reads

# Check severities whose failure means rows were refused or the data set failed, against
# "warn" which publishes anyway (docs/adr/0005).
_BLOCKING = ("refuse", "fail")


def overview(portal_url: str, config: LoadedConfig, *, community: str | None = None,
             now: datetime | None = None) -> dict[str, Any]:
    """Status of every configured community (or one), plus communities the database knows but the
    configuration does not, and the configuration's errors."""
    now = now or datetime.now(UTC)
    wanted = [c for c in config.communities if community is None or c.code == community.upper()]
    with reads.connect(portal_url, read_only=True) as conn:
        communities = [community_status(conn, c, now=now) for c in wanted]
        configured = {c.code for c in config.communities}
        others = [code for code in reads.run_communities(conn) if code not in configured]
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
    code = community.code
    last_run = reads.last_run(conn, code)
    portal_row = reads.portal_community(conn, code)
    runs = reads.last_processed(conn, code, community.datasets)
    latest = reads.latest_dataset_rows(conn, code, community.datasets)
    checks: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in reads.checks_of(conn, [(row["run_key"], name) for name, row in runs.items()]):
        checks.setdefault((row["run_key"], row["dataset"]), []).append(row)
    marks = reads.marks(conn, code)
    quarantine = reads.quarantine_counts(conn, code)
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
