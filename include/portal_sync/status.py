"""Sync status per community and data set, as plain dicts, for the Airflow status page and the CLI.

Data engineers ask the same few questions every morning: did each data set publish, is it
fresh against its cadence, what did the last run change or refuse, did a data-quality
check fail (and where is the report), and where is the high-water mark. Everything comes
from the run store in the portal database (``store.reads``), so the answer is the same on
any machine; nothing here imports Airflow, so the CLI and the tests use it directly and
the plugin stays a thin web layer. The text and HTML forms are in ``reporting``.

Reads are bounded whatever the history: per data set one indexed look-up of its latest
processed run, not a scan of all runs; the trends read 30 days.

A fleet (hundreds to a thousand communities) is first read as a summary: one line per community
with its worst state, from one statement whatever the number of communities (``fleet_summary``);
the per-data-set detail above is read for one community at a time (the drill-down).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from croniter import croniter

from portal_sync.config import Community, LoadedConfig
from portal_sync.dq_report import page_name, report_dir
from portal_sync.freshness import freshness, schedule_interval
from portal_sync.reporting import model
from portal_sync.reporting.format import zone
from portal_sync.reporting.model import STATE_MEANING, STATES  # noqa: F401 (re-exported)
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
    time_zone = community.time_zone or portal_row.get("time_zone") or (last_run or {}).get("time_zone") or "UTC"
    return {
        "code": community.code,
        "name": community.name or portal_row.get("name") or (last_run or {}).get("source_org_name") or community.code,
        "dag_id": community.dag_id,
        "schedule": community.schedule,
        "time_zone": time_zone,
        "last_run": dict(last_run) if last_run else None,
        "datasets": datasets,
        "stale": [d["dataset"] for d in datasets if d["stale"]],
        "report_index": "index.html" if (site / "index.html").is_file() else None,
        "report_dir": str(site),
        # the last 30 days, for the page's charts (two queries bounded to the period)
        "trends": model.trends(conn, code, zone(time_zone), now=now).as_dict(),
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


# --------------------------------------------------------------------------- the fleet summary

# Outcomes of a judged run (store.reads.fleet_rows) in which a data set did not publish.
FAILED_OUTCOMES = frozenset({"failed", "abandoned", "partly_published", "nothing_published"})
PER_PAGE = 50


def judge(*, last_outcome: str | None, judged_outcome: str | None, stale: int, refused: int, warned: int,
          warn_checks: int = 0) -> str:
    """The community's worst state (``STATES``) from its latest run, its latest judged run (ended, not a dry
    run) and its stale data sets. A run under way does not hide what the one before it left behind."""
    if judged_outcome in FAILED_OUTCOMES:
        return "failed"
    if stale:
        return "stale"
    if refused > 0:
        return "refused"
    if warned > 0 or warn_checks > 0:
        return "warnings"
    if last_outcome == "running":
        return "running"
    return "never" if judged_outcome is None else "ok"


@dataclass(frozen=True)
class FleetRow:
    """One community on the fleet summary."""

    code: str
    name: str
    state: str
    dag_id: str = ""
    time_zone: str = "UTC"
    datasets: int = 0
    stale: tuple[str, ...] = ()
    last_run_at: datetime | None = None  # the latest run, whatever its outcome
    last_outcome: str | None = None
    last_run_id: str | None = None
    judged_at: datetime | None = None  # the latest run that ended (not a dry run): what the state judges
    judged_outcome: str | None = None
    failed_datasets: tuple[str, ...] = ()
    rows_refused: int = 0
    rows_warned: int = 0
    warn_checks: int = 0
    error: str | None = None
    next_due: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["stale"], out["failed_datasets"] = list(self.stale), list(self.failed_datasets)
        return out


@dataclass(frozen=True)
class FleetPage:
    """The rows of one page of the summary after the filters, with what the page's controls need."""

    rows: list[FleetRow]
    counts: dict[str, int]  # per state, over every community shown to the reader (before the filters)
    total: int
    matched: int
    page: int
    pages: int
    per_page: int | None
    state: str | None = None
    match: str | None = None
    states: tuple[str, ...] = field(default=STATES)


def worst_first(rows: Iterable[FleetRow]) -> list[FleetRow]:
    """Worst state first, then by code."""
    rank = {state: i for i, state in enumerate(STATES)}
    return sorted(rows, key=lambda r: (rank.get(r.state, len(STATES)), r.code))


def select_page(rows: Sequence[FleetRow], *, state: str | None = None, match: str | None = None,
                page: int = 1, per_page: int | None = PER_PAGE) -> FleetPage:
    """Worst first; only ``state`` (one of ``STATES``) and codes or names containing ``match`` (any case);
    page ``page`` (from 1, kept within the pages there are) of ``per_page`` rows (None: all)."""
    if state and state not in STATES:
        raise ValueError(f"unknown state {state!r} (one of {', '.join(STATES)})")
    if per_page is not None and per_page < 1:
        raise ValueError("per_page must be at least 1")
    ordered = worst_first(rows)
    counts = {s: 0 for s in STATES}
    for row in ordered:
        counts[row.state] = counts.get(row.state, 0) + 1
    needle = (match or "").strip().casefold()
    chosen = [r for r in ordered if (not state or r.state == state)
              and (not needle or needle in r.code.casefold() or needle in r.name.casefold())]
    pages = max(1, -(-len(chosen) // per_page)) if per_page else 1
    page = min(max(1, page), pages)
    shown = chosen[(page - 1) * per_page: page * per_page] if per_page else chosen
    return FleetPage(shown, counts, len(ordered), len(chosen), page, pages, per_page, state or None,
                     needle and match.strip() or None)


Profile = tuple[tuple[str, timedelta], ...]  # (data set, alert limit) of each enabled data set, in order


def alert_profiles(communities: Iterable[Community], now: datetime, schedules: Mapping[str, str] | None = None
                   ) -> list[tuple[str, Profile]]:
    """Per community its (data set, alert limit) pairs: ``freshness_factor`` x the data set's cadence, as
    ``freshness.assess`` has it. Communities configured alike share one profile object (a fleet has a
    handful), and a schedule's interval is computed once per schedule and zone. ``schedules``: each
    community's ``effective_schedule``, when the caller has them already."""
    intervals: dict[tuple[str, str | None], timedelta] = {}
    profiles: dict[tuple[object, ...], Profile] = {}
    out = []
    for c in communities:
        schedule = schedules[c.code] if schedules else c.effective_schedule
        key = (c.datasets, tuple(sorted(c.cadence_minutes.items())), c.freshness_factor, schedule, c.time_zone)
        profile = profiles.get(key)
        if profile is None:
            every_run = None
            pairs = []
            for name in c.datasets:
                minutes = c.cadence_minutes.get(name)
                if minutes:
                    every = timedelta(minutes=minutes)
                else:
                    if every_run is None:
                        if (schedule, c.time_zone) not in intervals:
                            intervals[(schedule, c.time_zone)] = schedule_interval(c, now)
                        every_run = intervals[(schedule, c.time_zone)]
                    every = every_run
                pairs.append((name, every * c.freshness_factor))
            profile = profiles[key] = tuple(pairs)
        out.append((c.code, profile))
    return out


def alert_limits(communities: Iterable[Community], now: datetime) -> list[tuple[str, str, timedelta]]:
    """(community, data set, alert limit) of every enabled data set (``alert_profiles``, flat)."""
    return [(code, name, limit) for code, profile in alert_profiles(communities, now) for name, limit in profile]


def fleet_summary(conn: psycopg.Connection, communities: Sequence[Community], *, now: datetime | None = None
                  ) -> list[FleetRow]:
    """One row per community, worst first: one statement for all of them (``reads.fleet_rows``)."""
    now = now or datetime.now(UTC)
    schedules = {c.code: c.effective_schedule for c in communities}
    rows = reads.fleet_rows(conn, alert_profiles(communities, now, schedules), now)
    by_code = {c.code: c for c in communities}
    ticks: dict[tuple[str, str], datetime | None] = {}
    out = []
    for row in rows:
        c = by_code[row["code"]]
        time_zone = c.time_zone or row["portal_time_zone"] or row["run_time_zone"] or "UTC"
        key = (schedules[c.code], time_zone)
        if key not in ticks:
            ticks[key] = _next_tick(key[0], time_zone, now)
        stale = tuple(row["stale_datasets"] or ())
        refused, warned, warn_checks = (int(row[k] or 0) for k in ("rows_refused", "rows_warned", "warn_checks"))
        out.append(FleetRow(
            code=c.code, name=c.name or row["portal_name"] or row["source_org_name"] or c.code,
            state=judge(last_outcome=row["last_outcome"], judged_outcome=row["judged_outcome"], stale=len(stale),
                        refused=refused, warned=warned, warn_checks=warn_checks),
            dag_id=c.dag_id, time_zone=time_zone, datasets=int(row["datasets"]), stale=stale,
            last_run_at=row["last_started_at"], last_outcome=row["last_outcome"],
            last_run_id=row["last_airflow_run_id"] or row["last_run_key"], judged_at=row["judged_started_at"],
            judged_outcome=row["judged_outcome"], failed_datasets=tuple(row["failed_datasets"] or ()),
            rows_refused=refused, rows_warned=warned, warn_checks=warn_checks, error=row["judged_error"],
            next_due=ticks[key],
        ))
    return worst_first(out)


def _next_tick(schedule: str, time_zone: str, now: datetime) -> datetime | None:
    """The next run the schedule starts after ``now``, in UTC."""
    try:
        return croniter(schedule, now.astimezone(zone(time_zone))).get_next(datetime).astimezone(UTC)
    except (ValueError, KeyError):  # an invalid cron never reaches a loaded community; be safe on the page
        return None


def fleet(portal_url: str, config: LoadedConfig, *, state: str | None = None, match: str | None = None,
          page: int = 1, per_page: int | None = PER_PAGE, now: datetime | None = None,
          configured: Collection[str] | None = None) -> dict[str, Any]:
    """The fleet summary of the communities of ``config`` as the page and ``portal-sync status`` show it:
    one page of rows after the filters, the count per state, communities the run store knows that the
    configuration does not (``configured``: every configured code, when ``config`` is a reader's share of
    it), and the configuration's errors. Raises ValueError for an unknown ``state``."""
    if state and state not in STATES:
        raise ValueError(f"unknown state {state!r} (one of {', '.join(STATES)})")
    now = now or datetime.now(UTC)
    known = set(configured) if configured is not None else {c.code for c in config.communities}
    with reads.connect(portal_url, read_only=True) as conn:
        rows = fleet_summary(conn, config.communities, now=now)
        others = [code for code in reads.run_communities(conn) if code not in known]
    chosen = select_page(rows, state=state, match=match, page=page, per_page=per_page)
    return {
        "generated_at": now,
        "states": list(STATES),
        "counts": chosen.counts,
        "total": chosen.total,
        "matched": chosen.matched,
        "page": chosen.page,
        "pages": chosen.pages,
        "per_page": chosen.per_page,
        "state": chosen.state,
        "match": chosen.match,
        "communities": [r.as_dict() for r in chosen.rows],
        "unconfigured": others,
        "config_errors": [str(error) for error in config.errors],
    }

