"""The HTML pages: the offline data-quality site and the Airflow status page, from templates/.

Site pages are whole documents that load nothing: CSS and the one script are inline and
allowed by a Content-Security-Policy hash, every value is escaped and no page holds an
external URL (docs/adr/0005). The status page is served by the Airflow plugin, which sets
its security headers; it follows the same escaping.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup

from portal_sync.config import LoadedConfig
from portal_sync.explain import Explanation
from portal_sync.reporting import render
from portal_sync.reporting.format import check_status, json_for_script, local_time, outcome_status
from portal_sync.reporting.model import SEVERITY_ORDER, DatasetStatus, RunDetail, RunSummary

# (column of the per-data-set run row, label): the facts and row counts a run page shows per data set
_AUDIT_FACTS = (
    ("phase", "phase"), ("mode", "mode"), ("extract_seconds", "extract s"), ("validate_seconds", "validate s"),
    ("publish_seconds", "publish s"),
)
AUDIT_COUNTS = (
    ("rows_extracted", "extracted"), ("rows_refused", "refused"), ("rows_warned", "warned"),
    ("rows_inserted", "inserted"), ("rows_updated", "updated"), ("rows_unchanged", "unchanged"),
    ("rows_deleted", "deleted"), ("rows_restored", "restored"), ("rows_archived", "archived"),
    ("rows_superseded", "superseded"),
)


@cache
def asset(name: str) -> str:
    """A file of portal_sync.report_assets (the pages' CSS and script)."""
    return resources.files("portal_sync.report_assets").joinpath(name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def site_page(template: str, title: str, *, script: str | None = None, data: object = None,
              **context: object) -> str:
    """A whole site document; the CSP lets only this page's own style and script run and nothing load."""
    css = asset("report.css")
    policy = [
        "default-src 'none'", f"style-src {_csp_hash(css)}", "img-src data:", "base-uri 'none'",
        "form-action 'none'", f"script-src {_csp_hash(script)}" if script else "script-src 'none'",
    ]
    return render(
        "site", template, title=title, css=Markup(css), policy=Markup("; ".join(policy)),
        script=Markup(script) if script else None,
        data=Markup(json_for_script(data)) if data is not None else None, now=datetime.now(UTC), **context,
    )


# --------------------------------------------------------------------------- the data-quality site


def observed_text(observed: Any) -> str:
    """The observed values of a check other than its examples (e.g. row counts of a table check)."""
    if not isinstance(observed, dict):
        return "" if observed is None else json.dumps(observed, default=str)
    rest = {k: v for k, v in observed.items() if k != "examples"}
    return ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in rest.items())


def _section(detail: RunDetail, name: str, status: DatasetStatus, zone: ZoneInfo,
             examples_per_check: int) -> dict[str, Any]:
    """One data set of a run page: its row counts, then every check, failing first, with example rows."""
    row = detail.audit.get(name)
    section: dict[str, Any] = {"name": name, "status": status, "audit": row, "facts": [], "window": None,
                               "counts": []}
    if row:
        section["facts"] = [(label, row.get(col)) for col, label in _AUDIT_FACTS if row.get(col) is not None]
        if row.get("window_start") or row.get("window_end"):
            start, end = local_time(row.get("window_start"), zone), local_time(row.get("window_end"), zone)
            section["window"] = f"{start} to {end}"
        section["counts"] = [(label, row.get(col)) for col, label in AUDIT_COUNTS]
    checks = [dict(c) for c in detail.checks if c["dataset"] == name]
    seen = {c["rule"] for c in checks}
    for (dataset, rule), r in sorted(detail.finding_counts.items()):
        if dataset == name and rule not in seen:  # findings without a recorded check result
            checks.append({"rule": rule, "description": "(no check result recorded)", "kind": "row",
                           "severity": r["severity"], "success": False, "failing_rows": r["row_count"],
                           "element_count": None, "observed": None})
    checks.sort(key=lambda c: (c["success"], SEVERITY_ORDER.get(c["severity"], 9), c["kind"], c["rule"]))
    for check in checks:
        rows = [{"key": r["row_key"], "reason": r["reason"]} for r in detail.examples.get((name, check["rule"]), [])]
        counted = detail.finding_counts.get((name, check["rule"]))
        if not rows and isinstance(check["observed"], dict):  # findings pruned or a table-level check
            rows = [e for e in check["observed"].get("examples") or [] if isinstance(e, dict)][:examples_per_check]
        check.update(state=check_status(check["success"], check["severity"]), observed_text=observed_text(
            check["observed"]), examples=rows, total=counted["row_count"] if counted else check["failing_rows"])
    section["checks"] = checks
    return section


def render_run_page(detail: RunDetail, zone: ZoneInfo, month_page: str, examples_per_check: int = 20) -> str:
    """One run: its facts, then per data set the row counts and every check with example rows."""
    run = detail.run
    statuses = {d.name: d for d in detail.summary.datasets}
    sections = [_section(detail, name, statuses.get(name) or DatasetStatus(name), zone, examples_per_check)
                for name in detail.dataset_names()]
    return site_page(
        "dq_run.html.j2", f"{run['community_code']} run {run['run_key']}", run=run, zone=zone,
        run_status=outcome_status(run["outcome"]), month_page=month_page, statuses=list(statuses.values()),
        sections=sections, checks_run=len(detail.checks),
        checks_failed=sum(1 for c in detail.checks if not c["success"]),
    )


def render_index(community: str, summaries: list[RunSummary], months: list[str], zone: ZoneInfo,
                 index_runs: int = 60) -> str:
    """The latest runs, drawn by inline JS from embedded JSON; a <noscript> table says the same."""
    data = {"community": community, "runs": [s.as_json(zone) for s in summaries]}
    return site_page("dq_index.html.j2", f"{community} data quality", script=asset("index.js"), data=data,
                     community=community, summaries=summaries, months=months, zone=zone, index_runs=index_runs)


def render_month(community: str, month: str, summaries: list[RunSummary], zone: ZoneInfo) -> str:
    """Every run of one month, as a static table (rewritten only while the month receives runs)."""
    return site_page("dq_month.html.j2", f"{community} data quality {month}", community=community, month=month,
                     summaries=summaries, zone=zone)


# --------------------------------------------------------------------------- the Airflow status page


def status_page(title: str, config: LoadedConfig, *, data: dict[str, Any] | None = None,
                community: str = "", account: str = "", answer: Explanation | None = None,
                error: str | None = None) -> str:
    """The status page (``data``: the overview) or the explain page (``answer``), each with the explain
    form; ``error`` says what went wrong instead of a bare server error."""
    return render(
        "page", "status.html.j2", title=title, style=Markup(asset("status.css")), data=data,
        communities=[c.code for c in config.communities], selected=community.upper(), account=account,
        answer=answer, facts=explanation_facts(answer) if answer else [], error=error,
    )


def explanation_facts(answer: Explanation) -> list[tuple[str, object]]:
    """The facts under an answer, times in the community's zone, empty ones left out."""
    facts: list[tuple[str, object]] = []
    if answer.account:
        facts.append(("account", ", ".join(f"{k}={v}" for k, v in answer.account.items())))
    for key, value in answer.details.items():
        if isinstance(value, datetime):
            value = local_time(value, answer.details.get("time_zone"), seconds=False)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            value = "; ".join(", ".join(f"{k}={v}" for k, v in item.items()) for item in value)
        facts.append((key, value))
    return [(k, v) for k, v in facts if v not in (None, [], "")]
