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
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from markupsafe import Markup

from portal_sync.config import LoadedConfig
from portal_sync.explain import Explanation
from portal_sync.reporting import render
from portal_sync.reporting.charts import Chart, Series, line_chart
from portal_sync.reporting.format import check_status, json_for_script, local_time, outcome_status
from portal_sync.reporting.model import SEVERITY_ORDER, STATE_MEANING, DatasetStatus, RunDetail, RunSummary, Trends

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
    section["gx"] = [gx_view(g) for g in detail.gx_of(name)]
    section["gx_rows"] = detail.gx_rows.get(name)
    return section


# Arguments a row of the GX table shows elsewhere (mostly in its own column, a custom query folded away).
_GX_OWN_COLUMNS = ("mostly", "unexpected_rows_query")


def _compact(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


def gx_view(result: dict[str, Any]) -> dict[str, Any]:
    """One expectation's result as a row of the run page: GX's name and arguments, what it observed, how many
    rows failed, a sample of them with our reason, severity, ``mostly`` and pass/fail."""
    kwargs = result.get("kwargs") or {}
    percent = result.get("unexpected_percent")
    mostly = result.get("mostly")
    observed = result.get("observed_value")
    return {
        "expectation": result["expectation"], "rule": result["rule"], "type": result["expectation_type"],
        "kind": result["kind"],
        "arguments": [(k, _compact(v)) for k, v in kwargs.items() if k not in _GX_OWN_COLUMNS],
        "query": kwargs.get("unexpected_rows_query"),
        "observed": "" if observed is None else _compact(observed),
        "unexpected_count": result.get("unexpected_count"),
        "unexpected_percent": None if percent is None else f"{float(percent):.2f} %",
        "severity": result["severity"],
        "mostly": None if mostly is None else f"{float(mostly) * 100:g} %",
        "success": bool(result["success"]), "state": check_status(bool(result["success"]), result["severity"]),
        "sample": result.get("sample_rows") or [],
    }


def render_run_page(detail: RunDetail, zone: ZoneInfo, month_page: str, examples_per_check: int = 20,
                    gx_json: str | None = None) -> str:
    """One run: its facts, then per data set the row counts, every check with example rows and Great
    Expectations' result per expectation; ``gx_json``: the run's GX result file, linked (relative)."""
    run = detail.run
    statuses = {d.name: d for d in detail.summary.datasets}
    sections = [_section(detail, name, statuses.get(name) or DatasetStatus(name), zone, examples_per_check)
                for name in detail.dataset_names()]
    return site_page(
        "dq_run.html.j2", f"{run['community_code']} run {run['run_key']}", run=run, zone=zone,
        run_status=outcome_status(run["outcome"]), month_page=month_page, statuses=list(statuses.values()),
        sections=sections, checks_run=len(detail.checks),
        checks_failed=sum(1 for c in detail.checks if not c["success"]), gx_json=gx_json,
        gx_failed=sum(1 for g in detail.gx if not g["success"]), gx_total=len(detail.gx),
    )


def render_index(community: str, summaries: list[RunSummary], months: list[str], zone: ZoneInfo,
                 index_runs: int = 60, trends: Trends | None = None) -> str:
    """The latest runs, drawn by inline JS from embedded JSON; a <noscript> table says the same. ``trends``:
    the last 30 days as charts above the runs (static SVG, shown with or without the script)."""
    data = {"community": community, "runs": [s.as_json(zone) for s in summaries]}
    return site_page("dq_index.html.j2", f"{community} data quality", script=asset("index.js"), data=data,
                     community=community, summaries=summaries, months=months, zone=zone, index_runs=index_runs,
                     charts=trend_charts(trends) if trends is not None else [])


def render_month(community: str, month: str, summaries: list[RunSummary], zone: ZoneInfo) -> str:
    """Every run of one month, as a static table (rewritten only while the month receives runs)."""
    return site_page("dq_month.html.j2", f"{community} data quality {month}", community=community, month=month,
                     summaries=summaries, zone=zone)


# --------------------------------------------------------------------------- trend charts (site and status page)

# How a failed check's severity reads in a legend: what happened to its rows.
_SEVERITY_WORDS = {"refuse": "refused", "warn": "warned", "fail": "failed the data set"}


def trend_charts(trends: Trends, id_prefix: str = "trend") -> list[Markup]:
    """The two charts of a community's trends: failing rows per check (one line per check, dashes by severity)
    and rows published per data set, each as inline SVG."""
    days = trends.days
    last = f"last {len(days)} days"
    zone_name = trends.time_zone
    failing = [Series(f"{s.label} {_SEVERITY_WORDS.get(s.style, s.style)}", s.values, s.style,
                      note=f"failed in {s.runs} run{'s' if s.runs != 1 else ''}", keep=True) for s in trends.failing]
    published = [Series(s.label, s.values, note=f"{s.runs} publish{'es' if s.runs != 1 else ''}")
                 for s in trends.published]
    return [
        line_chart(Chart(f"{id_prefix}-failing-{trends.community}",
                         f"{trends.community}: failing rows per check (most in one run per day, {zone_name})",
                         "failing rows", days, failing, empty_text=f"No check failed in the {last}.",
                         unit="failing rows")),
        line_chart(Chart(f"{id_prefix}-published-{trends.community}",
                         f"{trends.community}: rows published per data set (inserted + updated + deleted per day,"
                         f" {zone_name})", "rows published", days, published,
                         empty_text=f"Nothing published in the {last}.", unit="rows published")),
    ]


# --------------------------------------------------------------------------- the Airflow status page


# The fleet summary's filter form and pager (kept here until status.css carries them).
def status_page(title: str, config: LoadedConfig, *, data: dict[str, Any] | None = None,
                fleet: dict[str, Any] | None = None, drilldown: bool = False,
                community: str = "", account: str = "", answer: Explanation | None = None,
                error: str | None = None) -> str:
    """The status page: the fleet summary (``fleet``: ``status.fleet``), or the detail of communities
    (``data``: the overview; ``drilldown``: of one, reached from the summary), or the explain page
    (``answer``), each with the explain form; ``error`` says what went wrong instead of a bare server error."""
    charts = {com["code"]: trend_charts(Trends.from_dict(com["trends"]), "status-trend")
              for com in (data or {}).get("communities", []) if com.get("trends")}
    return render(
        "page", "status.html.j2", title=title, style=Markup(asset("status.css")), data=data,
        charts=charts, fleet=fleet, links=fleet_links(fleet) if fleet is not None else {}, drilldown=drilldown,
        meanings=STATE_MEANING,
        communities=[c.code for c in config.communities], selected=community.upper(), account=account,
        answer=answer, facts=explanation_facts(answer) if answer else [], error=error,
    )


def fleet_links(fleet: dict[str, Any]) -> dict[str, Any]:
    """Relative links of the summary (plain GET query strings): the previous and next page under the same
    filters, each state's own list, and each community's drill-down."""
    def query(**changes: object) -> str:
        params = {"state": fleet.get("state") or "", "q": fleet.get("match") or "", "page": fleet.get("page", 1)}
        params.update(changes)
        kept = {k: v for k, v in params.items() if v not in ("", None) and not (k == "page" and v == 1)}
        return "?" + urlencode(kept) if kept else "./"

    page, pages = fleet.get("page", 1), fleet.get("pages", 1)
    return {
        "previous": query(page=page - 1) if page > 1 else None,
        "next": query(page=page + 1) if page < pages else None,
        "states": {state: query(state=state, page=1) for state in fleet.get("states", [])},
        "all": query(state="", q="", page=1),
        "detail": {com["code"]: "?" + urlencode({"community": com["code"]}) for com in fleet.get("communities", [])},
    }


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
