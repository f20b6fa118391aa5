"""The plain-text reports: the CLI's ``runs``, ``status`` and ``explain`` and the report task's log line.

Times are UTC in text about several communities (``status``), and on the community's own
clock where one community is read (``runs``), as on the pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from portal_sync.explain import Explanation
from portal_sync.reporting.format import local_time, num, utc_time
from portal_sync.reporting.model import SEVERITY_ORDER, DatasetStatus, RunHistory

_VERB = {"refuse": "refused", "warn": "warned", "fail": "failed"}
_SHOWN_FAILED = 6  # failed checks named in the log line; the rest are counted
# Row counts the ``runs`` text shows per data set, in this order (columns of the per-data-set run row).
_COUNTS = (("rows_extracted", "extracted"), ("rows_inserted", "inserted"), ("rows_updated", "updated"),
           ("rows_unchanged", "unchanged"), ("rows_deleted", "deleted"))
_RARE_COUNTS = (("rows_restored", "restored"), ("rows_archived", "archived"), ("rows_superseded", "superseded"))


# --------------------------------------------------------------------------- data quality


def _failed_text(check: dict[str, Any]) -> str:
    name = f"{check['dataset']}.{check['rule']}"
    if check["severity"] in ("refuse", "warn"):
        return f"{name} {_VERB[check['severity']]} {check['failing_rows']}"
    return f"{name} failed" + (f" {check['failing_rows']}" if check["failing_rows"] else "")


def dq_line(community: str, checks: Sequence[dict[str, Any]], index: Path) -> str:
    """The last line of the report task's log: counts, the failed checks (worst first) and where the report is."""
    failed = sorted((c for c in checks if not c["success"]),
                    key=lambda c: (SEVERITY_ORDER.get(c["severity"], 9), -c["failing_rows"], c["dataset"], c["rule"]))
    shown = ", ".join(_failed_text(c) for c in failed[:_SHOWN_FAILED])
    if len(failed) > _SHOWN_FAILED:
        shown += f", +{len(failed) - _SHOWN_FAILED} more"
    return (f"{community} dq: {len(checks)} checks, {len(failed)} failed" + (f" ({shown})" if failed else "")
            + f"; report {index.resolve().as_uri()}")


# --------------------------------------------------------------------------- runs


def _audit_text(row: dict[str, Any] | None) -> str:
    """What the run did with the data set: phase, mode, window, row counts, marks."""
    if not row:
        return ""
    text = f"{row.get('phase')} {row.get('mode') or '-'}"
    if row.get("mode") == "window":
        text += f" [{row.get('window_start')}, {row.get('window_end')})"
    counts = [f"{label} {num(row.get(col)) or '-'}" for col, label in _COUNTS]
    counts += [f"{label} {row[col]}" for col, label in _RARE_COUNTS if row.get(col)]
    text += ": " + ", ".join(counts)
    if row.get("mark_before") or row.get("mark_after"):
        text += f"; mark {row.get('mark_before')} -> {row.get('mark_after')}"
    return text


def _dataset_line(history: RunHistory, run_key: str, d: DatasetStatus) -> str:
    parts = [f"  {d.name:<12} {d.status:<8} checks {d.checks - d.failed} passed, {d.failed} failed",
             f"refused {num(d.refused) or 0}, warned {num(d.warned) or 0}"]
    rules = ", ".join(f"{r['rule']} {_VERB.get(r['severity'], 'failed')} {r['n']}"
                      + (f" (e.g. {r['example_key']})" if r.get("example_key") else "")
                      for r in history.top_rules(run_key, d.name))
    if rules:
        parts.append(f"top: {rules}")
    if d.row:
        parts.append(_audit_text(d.row))
    if d.error:
        parts.append(f"error: {d.error[:200]}")
    return "; ".join(parts)


def format_runs(history: RunHistory) -> str:
    """Per run a line (outcome, checks, rows refused and warned), then a line per data set: its status,
    checks, the rules that hit most rows, what it extracted and changed, and its marks."""
    lines: list[str] = []
    for s in history.summaries:
        run = s.run
        lines.append(
            f"{run['community_code']} run {run['run_key']}  {run['outcome']}"
            f"  started {local_time(run['started_at'], history.zones[run['community_code']])}"
            f"  checks {s.checks - s.checks_failed} passed, {s.checks_failed} failed"
            f"  rows refused {s.refused}, warned {s.warned}"
            + (f"  error: {run['error'][:300]}" if run["error"] else "")
        )
        lines.extend(_dataset_line(history, run["run_key"], d) for d in s.datasets)
    return "\n".join(lines)


def runs_json(history: RunHistory) -> list[dict[str, Any]]:
    """``runs --json``: the same facts, every column of the run and of each data set's row."""
    out = []
    for s in history.summaries:
        datasets = [{**(d.row or {}), "dataset": d.name, "status": d.status, "checks": d.checks,
                     "checks_failed": d.failed, "rows_refused": d.refused, "rows_warned": d.warned,
                     "top_rules": [{k: r.get(k) for k in ("rule", "severity", "n", "example_key")}
                                   for r in history.top_rules(s.run["run_key"], d.name)]}
                    for d in s.datasets]
        out.append({**s.run, "status": s.status, "checks": s.checks, "checks_failed": s.checks_failed,
                    "rows_refused": s.refused, "rows_warned": s.warned, "datasets": datasets})
    return out


# --------------------------------------------------------------------------- status


def format_overview(data: dict[str, Any]) -> str:
    """The status overview, one line per data set (``portal-sync status``)."""
    lines: list[str] = []
    for com in data["communities"]:
        run = com["last_run"]
        head = f"{com['code']} ({com['name']})  dag {com['dag_id']}  schedule '{com['schedule']}' {com['time_zone']}"
        head += f"  last run {run['outcome']} {utc_time(run['started_at'])}" if run else "  no run yet"
        lines.append(head)
        for ds in com["datasets"]:
            last = ds["last_run"] or {}
            quality = ds["quality"]
            failed = ", ".join(f"{c['rule']}({c['severity']}, {c['failing_rows']})" for c in quality["failed_checks"])
            lines.append(
                f"  {ds['dataset']:<12} {ds['freshness']:<15} published {utc_time(ds['last_published_at'])}"
                f"  changed {last.get('rows_changed', '-')}  refused {last.get('rows_refused', '-')}"
                f"  dq {quality['status']}{': ' + failed if failed else ''}"
                f"  mark {utc_time(ds['mark'], '-')}"
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


def format_fleet(data: dict[str, Any]) -> str:
    """The fleet summary, one line per community, worst first (``portal-sync status`` without a code): state,
    code, name, the latest run, stale data sets, rows refused by the latest run that ended, next run due."""
    lines = []
    for com in data["communities"]:
        last = (f"last {com['last_outcome']} {utc_time(com['last_run_at'])}" if com["last_run_at"]
                else "no run yet")
        if com["judged_outcome"] and com["judged_outcome"] != com["last_outcome"]:
            last += f" (ended: {com['judged_outcome']} {utc_time(com['judged_at'])})"
        stale = f"stale {len(com['stale'])}/{com['datasets']}"
        if com["stale"]:
            stale += f" ({','.join(com['stale'])})"
        line = (f"{com['state']:<8} {com['code']:<10} {com['name'][:32]:<32}  {last}  {stale}"
                f"  refused {com['rows_refused']}  next due {utc_time(com['next_due'], '-')}")
        if com["failed_datasets"]:
            line += f"  failed: {','.join(com['failed_datasets'])}"
        if com["state"] == "failed" and com["error"]:
            line += f"  error: {' '.join(com['error'].split())[:200]}"
        lines.append(line)
    return "\n".join(lines)


def fleet_footer(data: dict[str, Any]) -> str:
    """What the summary left out: the count per state, the filters and page, unconfigured communities and
    configuration errors (the CLI prints it on stderr, so stdout keeps one line per community)."""
    counts = ", ".join(f"{state} {data['counts'].get(state, 0)}" for state in data["states"])
    shown = len(data["communities"])
    first = (data["page"] - 1) * (data["per_page"] or 0) + 1 if shown else 0
    head = f"{data['total']} communities ({counts}); {data['matched']} match"
    if data["state"]:
        head += f" state={data['state']}"
    if data["match"]:
        head += f" match={data['match']!r}"
    if shown and shown < data["matched"]:
        head += f"; shown {first}-{first + shown - 1}"
    lines = [head]
    lines += [f"{code}: has runs in the portal database but is not in the configuration"
              for code in data["unconfigured"]]
    lines += [f"configuration error: {error}" for error in data["config_errors"]]
    return "\n".join(lines)


# --------------------------------------------------------------------------- explain


def format_explanation(result: Explanation) -> str:
    """Verdict, message and the facts behind it (``portal-sync explain``)."""
    lines = [f"{result.community} {result.typed}: {result.verdict}", "", result.message]
    facts = {**({"account": result.account} if result.account else {}), **result.details}
    if facts:
        lines.append("")
        for key, value in facts.items():
            lines.append(f"  {key}: {utc_time(value) if isinstance(value, datetime) else value}")
    return "\n".join(lines)
