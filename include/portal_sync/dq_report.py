"""The data-quality report: a static site per community that analysts open from disk, offline.

Great Expectations' Data Docs load scripts and styles from public CDNs and a tracking
image, so the project renders its own pages from the sync tables instead: every value is
HTML-escaped, CSS and the one script are inline (allowed by a Content-Security-Policy
hash, nothing else may load) and no page contains an external URL.

Layout under ``report_dir(community)``::

    index.html           the latest INDEX_RUNS runs (rendered by inline JS, <noscript> table) + month links
    runs/<run_key>.html  one page per run, written once when the run is reported
    history/YYYY-MM.html every run of one month (site time zone)

Building a run's report writes three files (its page, its month, the index) and reads a
bounded number of rows, whatever the number of runs kept; ``prune`` enforces retention.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg.rows import dict_row

INDEX_RUNS = 60  # runs listed on index.html; older ones are on the month pages
EXAMPLES_PER_CHECK = 20  # example rows shown per failing check on a run page
TEXT_LIMIT = 1000  # longest reason, key or error shown (characters)
_COMMUNITY_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SAFE_KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,100}")
_MONTH_PAGE_RE = re.compile(r"(\d{4})-(\d{2})\.html")
_SEVERITY_ORDER = {"fail": 0, "refuse": 1, "warn": 2}
_VERB = {"refuse": "refused", "warn": "warned", "fail": "failed"}
_AUDIT_ROWS = (  # (column of sync.run_datasets, label): the run's row counts per data set
    ("rows_extracted", "extracted"), ("rows_refused", "refused"), ("rows_warned", "warned"),
    ("rows_inserted", "inserted"), ("rows_updated", "updated"), ("rows_unchanged", "unchanged"),
    ("rows_deleted", "deleted"), ("rows_restored", "restored"), ("rows_archived", "archived"),
    ("rows_superseded", "superseded"),
)
_AUDIT_FACTS = (
    ("phase", "phase"), ("mode", "mode"), ("extract_seconds", "extract s"), ("validate_seconds", "validate s"),
    ("publish_seconds", "publish s"),
)


# --------------------------------------------------------------------------- paths


def project_root() -> Path:
    """The checkout the package runs from (include/ lives directly under it)."""
    return Path(__file__).resolve().parents[2]


def _check_community(community: str) -> str:
    """Community codes become directory names: refuse anything that could escape the report root."""
    if not _COMMUNITY_RE.fullmatch(community or ""):
        raise ValueError(f"not a community code: {community!r}")
    return community


def report_dir(community: str) -> Path:
    """Where a community's site lives: $PORTAL_SYNC_REPORT_DIR/<code> or <project>/.airflow/dq_reports/<code>."""
    name = _check_community(community).lower()
    base = os.environ.get("PORTAL_SYNC_REPORT_DIR")
    root = Path(base) if base else project_root() / ".airflow" / "dq_reports"
    return root / name


def page_name(run_key: str) -> str:
    """A run page's file name; run keys are identifier-safe, anything else is made so without collisions."""
    if _SAFE_KEY_RE.fullmatch(run_key):
        return f"{run_key}.html"
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", run_key)[:60]
    return f"{cleaned}-{hashlib.sha256(run_key.encode()).hexdigest()[:12]}.html"


# --------------------------------------------------------------------------- escaping


def esc(value: object) -> str:
    """HTML-escape text for element content and quoted attributes; URLs in data are defanged.

    "://" becomes "&#58;//": the browser shows the same text, but no file of the site contains
    a literal external URL, so a scan for one stays meaningful whatever the source data holds.
    """
    text = "" if value is None else str(value)
    if len(text) > TEXT_LIMIT:
        text = text[:TEXT_LIMIT] + "…"
    return html.escape(text, quote=True).replace("://", "&#58;//")


def json_for_script(data: object) -> str:
    """JSON safe inside <script type="application/json">: no '<', '>', '&' or '/' can close or open a tag."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").replace("/", "\\/")


@cache
def _asset(name: str) -> str:
    return resources.files("portal_sync.report_assets").joinpath(name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def _page(title: str, body: str, *, script: str | None = None, data: object = None) -> str:
    """A whole document; the CSP lets only this page's own style and script run and nothing load."""
    css = _asset("report.css")
    policy = [
        "default-src 'none'", f"style-src {_csp_hash(css)}", "img-src data:", "base-uri 'none'",
        "form-action 'none'", f"script-src {_csp_hash(script)}" if script else "script-src 'none'",
    ]
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{'; '.join(policy)}\">\n",
        "<meta name=\"referrer\" content=\"no-referrer\">\n",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
        "<link rel=\"icon\" href=\"data:,\">\n",
        f"<title>{esc(title)}</title>\n<style>{css}</style>\n</head>\n<body>\n",
        body,
    ]
    if data is not None:
        parts.append(f"\n<script type=\"application/json\" id=\"run-data\">{json_for_script(data)}</script>")
    if script:
        parts.append(f"\n<script>{script}</script>")
    parts.append("\n</body>\n</html>\n")
    return "".join(parts)


# --------------------------------------------------------------------------- small formatters


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _when(value: datetime | None, zone: ZoneInfo) -> str:
    return "" if value is None else value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    seconds = int((end - start).total_seconds())
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _num(value: object) -> str:
    return "" if value is None else str(value)


def _outcome_status(outcome: str | None) -> str:
    return {"published": "ok", "partly_published": "refused", "failed": "failed",
            "nothing_published": "failed", "running": "running"}.get(outcome or "", "pending")


def _check_status(success: bool, severity: str) -> str:
    if success:
        return "ok"
    return {"refuse": "refused", "warn": "warned"}.get(severity, "failed")


def _badge(text: str, status: str) -> str:
    return f"<span class=\"badge s-{esc(status)}\">{esc(text)}</span>"


# --------------------------------------------------------------------------- reading the tables


@dataclass
class DatasetStatus:
    """One data set of one run as the index shows it."""

    name: str
    phase: str | None = None
    error: str | None = None
    refused: int | None = None
    warned: int | None = None
    checks: int = 0
    failed: int = 0
    failed_fail: int = 0
    failed_refuse: int = 0
    failed_warn: int = 0

    @property
    def status(self) -> str:
        """Worst first: not published, rows refused, rows warned, clean."""
        if self.phase == "failed" or self.error or self.failed_fail:
            return "failed"
        if (self.refused or 0) > 0 or self.failed_refuse:
            return "refused"
        if (self.warned or 0) > 0 or self.failed_warn:
            return "warned"
        if self.phase in ("validated", "published") or (self.phase is None and self.checks):
            return "ok"
        return "pending"

    @property
    def label(self) -> str:
        status = self.status
        if status == "refused":
            return f"{self.name} refused {self.refused or 0}"
        if status == "warned":
            return f"{self.name} warned {self.warned or 0}"
        if status == "pending":
            return f"{self.name} {self.phase or 'no data'}"
        return f"{self.name} {status}"


@dataclass
class RunSummary:
    """One run as a row of the index or a month page."""

    run: dict[str, Any]
    datasets: list[DatasetStatus] = field(default_factory=list)
    page: str | None = None

    @property
    def checks(self) -> int:
        return sum(d.checks for d in self.datasets)

    @property
    def checks_failed(self) -> int:
        return sum(d.failed for d in self.datasets)

    @property
    def refused(self) -> int:
        return sum(d.refused or 0 for d in self.datasets)

    @property
    def warned(self) -> int:
        return sum(d.warned or 0 for d in self.datasets)

    @property
    def status(self) -> str:
        status = _outcome_status(self.run["outcome"])
        if status == "ok" and any(d.status in ("refused", "warned") for d in self.datasets):
            return "warned"
        return status

    def as_json(self, zone: ZoneInfo) -> dict[str, Any]:
        return {
            "run_key": self.run["run_key"], "page": self.page, "started": _when(self.run["started_at"], zone),
            "outcome": self.run["outcome"], "status": self.status, "error": (self.run["error"] or "")[:300],
            "checks": self.checks, "checks_failed": self.checks_failed, "refused": self.refused,
            "warned": self.warned,
            "datasets": [{"name": d.name, "status": d.status, "label": d.label} for d in self.datasets],
        }


_RUN_COLUMNS = ("run_key, community_code, airflow_run_id, datasets, source_org_name, time_zone,"
                " started_at, published_at, finished_at, outcome, error")


def _site_zone(conn: psycopg.Connection, community: str) -> ZoneInfo:
    """The community's time zone (its latest run that knows it): months and times are local to it."""
    row = conn.execute(
        "SELECT time_zone FROM sync.runs WHERE community_code = %s AND time_zone IS NOT NULL"
        " ORDER BY started_at DESC LIMIT 1",
        (community,),
    ).fetchone()
    return _zone(row[0] if row else None)


def _summaries(conn: psycopg.Connection, runs: Sequence[dict[str, Any]]) -> list[RunSummary]:
    """Per-data-set status of the given runs, in a fixed number of queries over those runs only."""
    keys = [r["run_key"] for r in runs]
    out = {r["run_key"]: RunSummary(dict(r)) for r in runs}
    if not keys:
        return []
    by_run: dict[str, dict[str, DatasetStatus]] = {k: {} for k in keys}
    for run in runs:
        for name in run["datasets"] or []:
            by_run[run["run_key"]][name] = DatasetStatus(name)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT run_key, dataset, phase, error, rows_refused, rows_warned FROM sync.run_datasets"
            " WHERE run_key = ANY(%s)",
            (keys,),
        )
        needs_count: set[str] = set()
        for row in cur.fetchall():
            ds = by_run[row["run_key"]].setdefault(row["dataset"], DatasetStatus(row["dataset"]))
            ds.phase, ds.error = row["phase"], row["error"]
            ds.refused, ds.warned = row["rows_refused"], row["rows_warned"]
            if row["phase"] not in ("planned", None) and (ds.refused is None or ds.warned is None):
                needs_count.add(row["run_key"])
        cur.execute(
            "SELECT run_key, dataset, count(*) AS checks, count(*) FILTER (WHERE NOT success) AS failed,"
            " count(*) FILTER (WHERE NOT success AND severity = 'fail') AS failed_fail,"
            " count(*) FILTER (WHERE NOT success AND severity = 'refuse') AS failed_refuse,"
            " count(*) FILTER (WHERE NOT success AND severity = 'warn') AS failed_warn"
            " FROM sync.dq_results WHERE run_key = ANY(%s) GROUP BY run_key, dataset",
            (keys,),
        )
        for row in cur.fetchall():
            ds = by_run[row["run_key"]].setdefault(row["dataset"], DatasetStatus(row["dataset"]))
            ds.checks, ds.failed = row["checks"], row["failed"]
            ds.failed_fail, ds.failed_refuse = row["failed_fail"], row["failed_refuse"]
            ds.failed_warn = row["failed_warn"]
        if needs_count:  # audit counts missing (older or interrupted runs): count the findings themselves
            cur.execute(
                "SELECT run_key, dataset, count(DISTINCT row_id) FILTER (WHERE severity = 'refuse') AS refused,"
                " count(DISTINCT row_id) FILTER (WHERE severity = 'warn') AS warned"
                " FROM sync.run_findings WHERE run_key = ANY(%s) GROUP BY run_key, dataset",
                (sorted(needs_count),),
            )
            for row in cur.fetchall():
                ds = by_run[row["run_key"]].setdefault(row["dataset"], DatasetStatus(row["dataset"]))
                ds.refused = row["refused"] if ds.refused is None else ds.refused
                ds.warned = row["warned"] if ds.warned is None else ds.warned
    for key, datasets in by_run.items():
        order = list(out[key].run["datasets"] or [])
        out[key].datasets = sorted(
            datasets.values(), key=lambda d: (order.index(d.name) if d.name in order else len(order), d.name)
        )
    return [out[k] for k in keys]


def _latest_runs(conn: psycopg.Connection, community: str, limit: int) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT {_RUN_COLUMNS} FROM sync.runs WHERE community_code = %s"
            " ORDER BY started_at DESC, run_key DESC LIMIT %s",
            (community, limit),
        )
        return cur.fetchall()


def _month_bounds(year: int, month: int, zone: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime(year, month, 1, tzinfo=zone)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=zone)
    return start, end


def _month_runs(conn: psycopg.Connection, community: str, year: int, month: int,
                zone: ZoneInfo) -> list[dict[str, Any]]:
    start, end = _month_bounds(year, month, zone)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT {_RUN_COLUMNS} FROM sync.runs WHERE community_code = %s AND started_at >= %s"
            " AND started_at < %s ORDER BY started_at DESC, run_key DESC",
            (community, start, end),
        )
        return cur.fetchall()


@dataclass
class RunDetail:
    """Everything one run page shows."""

    run: dict[str, Any]
    audit: dict[str, dict[str, Any]]
    checks: list[dict[str, Any]]
    finding_counts: dict[tuple[str, str], dict[str, Any]]
    examples: dict[tuple[str, str], list[dict[str, Any]]]
    summary: RunSummary

    def dataset_names(self) -> list[str]:
        names = list(self.run["datasets"] or [])
        extra = {c["dataset"] for c in self.checks} | set(self.audit) | {d for d, _ in self.finding_counts}
        return names + sorted(extra - set(names))


def _run_detail(conn: psycopg.Connection, community: str, run_key: str) -> RunDetail:
    """The run, its audit rows, its checks and up to EXAMPLES_PER_CHECK findings per rule."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT {_RUN_COLUMNS} FROM sync.runs WHERE run_key = %s", (run_key,))
        run = cur.fetchone()
        if run is None or run["community_code"] != community:
            raise LookupError(f"{community}: no run {run_key!r}")
        cur.execute("SELECT * FROM sync.run_datasets WHERE run_key = %s", (run_key,))
        audit_rows = {row["dataset"]: row for row in cur.fetchall()}
        cur.execute(
            "SELECT dataset, rule, description, kind, severity, success, failing_rows, element_count, observed,"
            " validated_at FROM sync.dq_results WHERE run_key = %s ORDER BY dataset, kind, rule",
            (run_key,),
        )
        checks = cur.fetchall()
        cur.execute(
            "SELECT dataset, rule, min(severity) AS severity, count(*) AS findings,"
            " count(DISTINCT row_id) AS row_count FROM sync.run_findings WHERE run_key = %s"
            " GROUP BY dataset, rule",
            (run_key,),
        )
        counts = {(r["dataset"], r["rule"]): r for r in cur.fetchall()}
        cur.execute(
            "SELECT g.dataset, g.rule, f.row_key, f.reason, f.severity"
            " FROM (SELECT DISTINCT dataset, rule FROM sync.run_findings WHERE run_key = %(k)s) g"
            " CROSS JOIN LATERAL (SELECT row_id, row_key, reason, severity FROM sync.run_findings f"
            "   WHERE f.run_key = %(k)s AND f.dataset = g.dataset AND f.rule = g.rule"
            "   ORDER BY f.row_id LIMIT %(n)s) f ORDER BY g.dataset, g.rule, f.row_id",
            {"k": run_key, "n": EXAMPLES_PER_CHECK},
        )
        examples: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in cur.fetchall():
            examples.setdefault((r["dataset"], r["rule"]), []).append(r)
    return RunDetail(run, audit_rows, checks, counts, examples, _summaries(conn, [run])[0])


# --------------------------------------------------------------------------- rendering


def _observed_text(observed: Any) -> str:
    """The observed values of a check other than its examples (e.g. row counts of a table check)."""
    if not isinstance(observed, dict):
        return "" if observed is None else json.dumps(observed, default=str)
    rest = {k: v for k, v in observed.items() if k != "examples"}
    return ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in rest.items())


def _examples_html(rows: list[dict[str, Any]], total: int | None) -> str:
    if not rows:
        return ""
    out = ["<table class=\"examples\"><thead><tr><th>key</th><th>reason</th></tr></thead><tbody>"]
    for row in rows:
        out.append(f"<tr><td><code>{esc(row.get('key'))}</code></td><td>{esc(row.get('reason'))}</td></tr>")
    out.append("</tbody></table>")
    if total is not None and total > len(rows):
        out.append(f"<p class=\"muted\">{len(rows)} of {total} rows shown; the rest are in sync.run_findings.</p>")
    return "".join(out)


def render_run_page(detail: RunDetail, zone: ZoneInfo, month_page: str) -> str:
    """One run: its facts, then per data set the audit counts and every check with example rows."""
    run = detail.run
    summaries = {d.name: d for d in detail.summary.datasets}
    total_checks = len(detail.checks)
    failed_checks = sum(1 for c in detail.checks if not c["success"])
    body = [
        f"<nav><a href=\"../index.html\">All runs</a> · <a href=\"../{esc(month_page)}\">this month</a></nav>",
        f"<h1>{esc(run['community_code'])} run <code>{esc(run['run_key'])}</code></h1>",
        "<dl class=\"facts\">",
        f"<dt>outcome</dt><dd>{_badge(run['outcome'] or '', _outcome_status(run['outcome']))}</dd>",
        f"<dt>organisation</dt><dd>{esc(run['source_org_name'])}</dd>",
        f"<dt>started</dt><dd>{esc(_when(run['started_at'], zone))}</dd>",
        f"<dt>published</dt><dd>{esc(_when(run['published_at'], zone))}</dd>",
        f"<dt>finished</dt><dd>{esc(_when(run['finished_at'], zone))}"
        f" <span class=\"muted\">{esc(_duration(run['started_at'], run['finished_at']))}</span></dd>",
        f"<dt>Airflow run</dt><dd><code>{esc(run['airflow_run_id'])}</code></dd>",
        f"<dt>checks</dt><dd>{total_checks} run, {failed_checks} failed</dd>",
        "</dl>",
    ]
    if run["error"]:
        body.append(f"<p class=\"error\">{esc(run['error'])}</p>")
    body.append("<p>" + " ".join(
        f"<a href=\"#ds-{esc(s.name)}\">{_badge(s.label, s.status)}</a>" for s in summaries.values()
    ) + "</p>")
    for name in detail.dataset_names():
        body.append(_dataset_section(detail, name, summaries.get(name) or DatasetStatus(name), zone))
    body.append(f"<p class=\"muted\">Report written {esc(_when(datetime.now(UTC), zone))}.</p>")
    return _page(f"{run['community_code']} run {run['run_key']}", "\n".join(body))


def _dataset_section(detail: RunDetail, name: str, status: DatasetStatus, zone: ZoneInfo) -> str:
    audit_row = detail.audit.get(name)
    out = [f"<section id=\"ds-{esc(name)}\"><h2>{esc(name)} {_badge(status.label, status.status)}</h2>"]
    if audit_row:
        facts = [f"{label} <strong>{esc(audit_row.get(col))}</strong>" for col, label in _AUDIT_FACTS
                 if audit_row.get(col) is not None]
        if audit_row.get("window_start") or audit_row.get("window_end"):
            facts.append(f"window {esc(_when(audit_row.get('window_start'), zone))} to"
                         f" {esc(_when(audit_row.get('window_end'), zone))}")
        out.append(f"<p class=\"audit-facts\">{' · '.join(facts)}</p>")
        heads = "".join(f"<th class=\"num\">{esc(label)}</th>" for _, label in _AUDIT_ROWS)
        cells = "".join(f"<td class=\"num\">{esc(_num(audit_row.get(col)))}</td>" for col, _ in _AUDIT_ROWS)
        out.append(f"<table class=\"audit\"><thead><tr>{heads}</tr></thead><tbody><tr>{cells}</tr></tbody></table>")
        if audit_row.get("error"):
            out.append(f"<p class=\"error\">{esc(audit_row['error'])}</p>")
    else:
        out.append("<p class=\"muted\">No audit row for this data set.</p>")
    checks = [c for c in detail.checks if c["dataset"] == name]
    seen = {c["rule"] for c in checks}
    for (dataset, rule), r in sorted(detail.finding_counts.items()):
        if dataset == name and rule not in seen:  # findings without a recorded check result
            checks.append({"rule": rule, "description": "(no check result recorded)", "kind": "row",
                           "severity": r["severity"], "success": False, "failing_rows": r["row_count"],
                           "element_count": None, "observed": None})
    if not checks:
        out.append("<p class=\"muted\">No checks recorded for this data set in this run.</p></section>")
        return "".join(out)
    checks.sort(key=lambda c: (c["success"], _SEVERITY_ORDER.get(c["severity"], 9), c["kind"], c["rule"]))
    out.append(
        "<table class=\"checks\"><thead><tr><th>check</th><th>description</th><th>kind</th><th>severity</th>"
        "<th>result</th><th class=\"num\">failing rows</th><th class=\"num\">element count</th>"
        "<th>observed</th></tr></thead><tbody>"
    )
    for check in checks:
        state = _check_status(check["success"], check["severity"])
        out.append(
            f"<tr class=\"check {'pass' if check['success'] else 'fail'}\""
            f" id=\"check-{esc(name)}-{esc(check['rule'])}\">"
            f"<td><code>{esc(check['rule'])}</code></td><td>{esc(check['description'])}</td>"
            f"<td>{esc(check['kind'])}</td><td>{esc(check['severity'])}</td>"
            f"<td>{_badge('pass' if check['success'] else state, state)}</td>"
            f"<td class=\"num\">{esc(_num(check['failing_rows']))}</td>"
            f"<td class=\"num\">{esc(_num(check['element_count']))}</td>"
            f"<td>{esc(_observed_text(check['observed']))}</td></tr>"
        )
        rows = [{"key": r["row_key"], "reason": r["reason"]} for r in detail.examples.get((name, check["rule"]), [])]
        counted = detail.finding_counts.get((name, check["rule"]))
        total = counted["row_count"] if counted else check["failing_rows"]
        if not rows and isinstance(check["observed"], dict):  # findings pruned or a table-level check
            rows = [e for e in check["observed"].get("examples") or [] if isinstance(e, dict)][:EXAMPLES_PER_CHECK]
        if rows:
            out.append(f"<tr class=\"examples-row\"><td colspan=\"8\">{_examples_html(rows, total)}</td></tr>")
    out.append("</tbody></table></section>")
    return "".join(out)


def _run_table_rows(summaries: Iterable[RunSummary], zone: ZoneInfo, prefix: str) -> str:
    rows = []
    for s in summaries:
        badges = " ".join(_badge(d.label, d.status) for d in s.datasets)
        key = esc(s.run["run_key"])
        link = (f"<a href=\"{esc(prefix + s.page)}\">{key}</a>" if s.page
                else f"{key} <span class=\"muted\">(no page)</span>")
        rows.append(
            f"<tr class=\"run-row-static\"><td>{esc(_when(s.run['started_at'], zone))}</td>"
            f"<td>{_badge(s.run['outcome'] or '', s.status)}</td><td>{badges}</td>"
            f"<td class=\"num\">{s.checks_failed} / {s.checks}</td><td class=\"num\">{s.refused}</td>"
            f"<td class=\"num\">{s.warned}</td><td>{link}</td></tr>"
        )
    return "".join(rows)


_RUN_TABLE_HEAD = (
    "<thead><tr><th>started</th><th>outcome</th><th>data sets</th><th class=\"num\">checks failed</th>"
    "<th class=\"num\">rows refused</th><th class=\"num\">rows warned</th><th>run</th></tr></thead>"
)


def render_index(community: str, summaries: list[RunSummary], months: list[str], zone: ZoneInfo) -> str:
    """The latest runs, drawn by inline JS from embedded JSON; a <noscript> table says the same."""
    month_links = "".join(f"<li><a href=\"history/{esc(m)}.html\">{esc(m)}</a></li>" for m in months)
    body = (
        f"<h1>{esc(community)} data quality</h1>"
        f"<p class=\"muted\">The latest {len(summaries)} runs (at most {INDEX_RUNS}), newest first; times in"
        f" {esc(zone.key)}. Older runs are on the month pages below.</p>"
        "<div id=\"runs-js\" hidden>"
        "<div class=\"filters\"><input type=\"search\" id=\"run-filter\" placeholder=\"filter: run, data set, outcome\""
        " aria-label=\"filter runs\"><label><input type=\"checkbox\" id=\"run-problems\"> only runs with problems"
        "</label><span id=\"run-count\" class=\"muted\"></span></div>"
        f"<table id=\"runs\">{_RUN_TABLE_HEAD}<tbody id=\"run-rows\"></tbody></table></div>"
        f"<noscript><table id=\"runs-static\">{_RUN_TABLE_HEAD}<tbody>"
        f"{_run_table_rows(summaries, zone, '')}</tbody></table></noscript>"
        f"<h2>History by month</h2><ul class=\"months\">{month_links or '<li>none yet</li>'}</ul>"
        f"<p class=\"muted\">Index written {esc(_when(datetime.now(UTC), zone))}.</p>"
    )
    data = {"community": community, "runs": [s.as_json(zone) for s in summaries]}
    return _page(f"{community} data quality", body, script=_asset("index.js"), data=data)


def render_month(community: str, month: str, summaries: list[RunSummary], zone: ZoneInfo) -> str:
    """Every run of one month, as a static table (rewritten only while the month receives runs)."""
    body = (
        f"<nav><a href=\"../index.html\">All runs</a></nav><h1>{esc(community)} data quality, {esc(month)}</h1>"
        f"<p class=\"muted\">{len(summaries)} runs, newest first; times in {esc(zone.key)}.</p>"
        f"<table id=\"month-runs\">{_RUN_TABLE_HEAD}<tbody>{_run_table_rows(summaries, zone, '../')}</tbody></table>"
        f"<p class=\"muted\">Page written {esc(_when(datetime.now(UTC), zone))}.</p>"
    )
    return _page(f"{community} data quality {month}", body)


# --------------------------------------------------------------------------- writing the site


class _Site:
    """One community's report directory and the files one build wrote."""

    def __init__(self, out: Path, community: str) -> None:
        self.out = out
        self.community = community
        self.written: list[Path] = []
        (out / "runs").mkdir(parents=True, exist_ok=True)
        (out / "history").mkdir(parents=True, exist_ok=True)

    @property
    def index(self) -> Path:
        return self.out / "index.html"

    def write(self, relative: str, text: str) -> Path:
        """Atomic replace: an analyst reloading mid-build sees the old page or the new one, never half."""
        path = self.out / relative
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".html", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.written.append(path)
        return path

    def with_pages(self, summaries: list[RunSummary]) -> list[RunSummary]:
        for s in summaries:
            name = page_name(s.run["run_key"])
            s.page = f"runs/{name}" if (self.out / "runs" / name).exists() else None
        return summaries

    def months(self) -> list[str]:
        found = [p.name[:-5] for p in (self.out / "history").iterdir() if _MONTH_PAGE_RE.fullmatch(p.name)]
        return sorted(found, reverse=True)

    def write_run(self, conn: psycopg.Connection, run_key: str, zone: ZoneInfo) -> tuple[int, int]:
        detail = _run_detail(conn, self.community, run_key)
        local = detail.run["started_at"].astimezone(zone)
        month = f"history/{local:%Y-%m}.html"
        self.write(f"runs/{page_name(run_key)}", render_run_page(detail, zone, month))
        return local.year, local.month

    def write_month(self, conn: psycopg.Connection, year: int, month: int, zone: ZoneInfo) -> None:
        runs = _month_runs(conn, self.community, year, month, zone)
        label = f"{year:04d}-{month:02d}"
        if not runs:
            (self.out / "history" / f"{label}.html").unlink(missing_ok=True)
            return
        summaries = self.with_pages(_summaries(conn, runs))
        self.write(f"history/{label}.html", render_month(self.community, label, summaries, zone))

    def write_index(self, conn: psycopg.Connection, zone: ZoneInfo) -> Path:
        summaries = self.with_pages(_summaries(conn, _latest_runs(conn, self.community, INDEX_RUNS)))
        return self.write("index.html", render_index(self.community, summaries, self.months(), zone))


def _connect(portal_url: str) -> psycopg.Connection:
    return psycopg.connect(portal_url, autocommit=True)


def build_run_report(portal_url: str, community: str, run_key: str, out_dir: Path | None = None) -> Path:
    """Write the run's page, rewrite its month page and the index; return the index path.

    Three files and a bounded number of rows (one run, one month, INDEX_RUNS runs), however many runs are kept.
    """
    site = _Site(Path(out_dir) if out_dir else report_dir(community), _check_community(community))
    with _connect(portal_url) as conn:
        zone = _site_zone(conn, community)
        year, month = site.write_run(conn, run_key, zone)
        site.write_month(conn, year, month, zone)
        return site.write_index(conn, zone)


def build_site(portal_url: str, community: str, out_dir: Path | None = None,
               run_key: str | None = None) -> tuple[Path, list[Path]]:
    """Refresh the site from the shell: (re)write the given or latest run's page, add missing pages of the
    runs the index lists, rewrite their months and the index. Returns the index path and the files written."""
    site = _Site(Path(out_dir) if out_dir else report_dir(community), _check_community(community))
    with _connect(portal_url) as conn:
        zone = _site_zone(conn, community)
        latest = _latest_runs(conn, community, INDEX_RUNS)
        targets = [run_key] if run_key else [r["run_key"] for r in latest[:1]]
        targets += [r["run_key"] for r in latest
                    if r["run_key"] not in targets and not (site.out / "runs" / page_name(r["run_key"])).exists()]
        months = {site.write_run(conn, key, zone) for key in targets}
        for year, month in sorted(months):
            site.write_month(conn, year, month, zone)
        index = site.write_index(conn, zone)
    return index, site.written


def prune(portal_url: str, community: str, keep_days: int, out_dir: Path | None = None) -> int:
    """Delete pages, findings and check results of the community's runs started more than keep_days ago.

    The run and audit rows (sync.runs, sync.run_datasets) stay: they are small and are the sync's own
    history. Month pages that fall wholly before the cutoff go; the cutoff's month and the index are
    rewritten so they link only to pages that still exist. Returns the number of run pages removed.
    """
    if keep_days < 0:
        raise ValueError("keep_days must be >= 0")
    site = _Site(Path(out_dir) if out_dir else report_dir(community), _check_community(community))
    cutoff = datetime.now(UTC) - timedelta(days=keep_days)
    with _connect(portal_url) as conn:
        zone = _site_zone(conn, community)
        old = [k for (k,) in conn.execute(
            "SELECT run_key FROM sync.runs WHERE community_code = %s AND started_at < %s", (community, cutoff)
        ).fetchall()]
        with conn.transaction():
            for table in ("sync.run_findings", "sync.dq_results"):
                conn.execute(
                    f"DELETE FROM {table} WHERE run_key IN (SELECT run_key FROM sync.runs"
                    " WHERE community_code = %s AND started_at < %s)",
                    (community, cutoff),
                )
        pages = {p.name for p in (site.out / "runs").iterdir() if p.suffix == ".html"}
        removed = 0
        for key in old:
            name = page_name(key)
            if name in pages:
                (site.out / "runs" / name).unlink(missing_ok=True)
                removed += 1
        local_cutoff = cutoff.astimezone(zone)
        for label in site.months():
            year, month = int(label[:4]), int(label[5:7])
            if (year, month) < (local_cutoff.year, local_cutoff.month):
                (site.out / "history" / f"{label}.html").unlink(missing_ok=True)
        if removed:
            site.write_month(conn, local_cutoff.year, local_cutoff.month, zone)
        site.write_index(conn, zone)
    return removed


# --------------------------------------------------------------------------- plain text


def _failed_text(check: dict[str, Any]) -> str:
    name = f"{check['dataset']}.{check['rule']}"
    if check["severity"] == "refuse":
        return f"{name} refused {check['failing_rows']}"
    if check["severity"] == "warn":
        return f"{name} warned {check['failing_rows']}"
    return f"{name} failed" + (f" {check['failing_rows']}" if check["failing_rows"] else "")


def summary_line(portal_url: str, community: str, run_key: str, out_dir: Path | None = None) -> str:
    """The last line of the validation task's log: counts, the failed checks and where the report is."""
    _check_community(community)
    with _connect(portal_url) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT dataset, rule, severity, success, failing_rows FROM sync.dq_results WHERE run_key = %s",
            (run_key,),
        )
        checks = cur.fetchall()
    failed = sorted((c for c in checks if not c["success"]),
                    key=lambda c: (_SEVERITY_ORDER.get(c["severity"], 9), -c["failing_rows"], c["dataset"], c["rule"]))
    shown = ", ".join(_failed_text(c) for c in failed[:6]) + (f", +{len(failed) - 6} more" if len(failed) > 6 else "")
    index = ((Path(out_dir) if out_dir else report_dir(community)) / "index.html").resolve()
    return (f"{community} dq: {len(checks)} checks, {len(failed)} failed" + (f" ({shown})" if failed else "")
            + f"; report {index.as_uri()}")


def format_summary(portal_url: str, community: str, runs: int = 5) -> str:
    """The last runs, per data set: checks passed/failed, rows refused/warned and the rules that hit most."""
    _check_community(community)
    lines: list[str] = []
    with _connect(portal_url) as conn:
        zone = _site_zone(conn, community)
        summaries = _summaries(conn, _latest_runs(conn, community, max(runs, 0)))
        keys = [s.run["run_key"] for s in summaries]
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "SELECT run_key, dataset, rule, severity, count(DISTINCT row_id) AS n FROM sync.run_findings"
                " WHERE run_key = ANY(%s) GROUP BY run_key, dataset, rule, severity",
                (keys,),
            )
            hits: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for row in cur.fetchall():
                hits.setdefault((row["run_key"], row["dataset"]), []).append(row)
            cur.execute(
                "SELECT run_key, dataset, rule, severity, failing_rows FROM sync.dq_results"
                " WHERE run_key = ANY(%s) AND NOT success",
                (keys,),
            )
            failed_checks: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for row in cur.fetchall():
                failed_checks.setdefault((row["run_key"], row["dataset"]), []).append(row)
    for s in summaries:
        run = s.run
        lines.append(
            f"{community} run {run['run_key']}  {run['outcome']}  started {_when(run['started_at'], zone)}"
            f"  checks {s.checks - s.checks_failed} passed, {s.checks_failed} failed"
            f"  rows refused {s.refused}, warned {s.warned}"
            + (f"  error: {run['error'][:300]}" if run["error"] else "")
        )
        for d in s.datasets:
            top = sorted(hits.get((run["run_key"], d.name), []), key=lambda r: (-r["n"], r["rule"]))[:3]
            if not top:
                top = [{"rule": c["rule"], "severity": c["severity"], "n": c["failing_rows"]}
                       for c in failed_checks.get((run["run_key"], d.name), [])][:3]
            rules = ", ".join(f"{r['rule']} {_VERB.get(r['severity'], 'failed')} {r['n']}" for r in top)
            lines.append(
                f"  {d.name:<12} {d.status:<8} checks {d.checks - d.failed} passed, {d.failed} failed;"
                f" refused {_num(d.refused) or 0}, warned {_num(d.warned) or 0}" + (f"; top: {rules}" if rules else "")
                + (f"; error: {d.error[:200]}" if d.error else "")
            )
    return "\n".join(lines)
