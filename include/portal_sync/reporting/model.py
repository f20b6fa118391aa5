"""What a run looks like to the reports: per data set a status (worst first), per run its totals.

Built from the rows of ``store.reads`` in a fixed number of queries over the runs asked
about, whatever the number of runs kept. The data-quality site, the status page and the
``runs`` text share these, so a run is "refused" or "warned" in the same cases everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from portal_sync.datasets import DATASETS
from portal_sync.reporting.format import local_time, outcome_status, zone
from portal_sync.store import gx_results, reads

SEVERITY_ORDER = {"fail": 0, "refuse": 1, "warn": 2}

# A community's state on the summary, worst first (the page sorts by this order, then by code):
STATES = ("failed", "stale", "refused", "warnings", "running", "ok", "never")
STATE_MEANING = {
    "failed": "the latest run that ended did not publish every data set (failed, abandoned, partly or nothing"
              " published)",
    "stale": "a data set has not published within its alert limit (freshness_factor x its cadence)",
    "refused": "the latest run that ended refused rows (they wait in quarantine)",
    "warnings": "the latest run that ended warned about rows or a warn check failed",
    "running": "a run is under way and the latest one that ended was clean",
    "ok": "the latest run that ended published everything, clean and fresh",
    "never": "no run has ended yet (none at all, or only dry runs)",
}


@dataclass
class DatasetStatus:
    """One data set of one run as the index shows it; ``row`` is its per-data-set run row, if any."""

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
    row: dict[str, Any] | None = None

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
    """One run as a row of the index, a month page or the ``runs`` text."""

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
        status = outcome_status(self.run["outcome"])
        if status == "ok" and any(d.status in ("refused", "warned") for d in self.datasets):
            return "warned"
        return status

    def as_json(self, zone: ZoneInfo) -> dict[str, Any]:
        """The index's embedded data (rendered by its inline script)."""
        return {
            "run_key": self.run["run_key"], "page": self.page, "started": local_time(self.run["started_at"], zone),
            "outcome": self.run["outcome"], "status": self.status, "error": (self.run["error"] or "")[:300],
            "checks": self.checks, "checks_failed": self.checks_failed, "refused": self.refused,
            "warned": self.warned,
            "datasets": [{"name": d.name, "status": d.status, "label": d.label} for d in self.datasets],
        }


def summaries(conn: psycopg.Connection, runs: Sequence[dict[str, Any]]) -> list[RunSummary]:
    """Per-data-set status of the given runs, in at most three queries over those runs only."""
    keys = [r["run_key"] for r in runs]
    if not keys:
        return []
    out = {r["run_key"]: RunSummary(dict(r)) for r in runs}
    by_run: dict[str, dict[str, DatasetStatus]] = {k: {} for k in keys}
    for run in runs:
        for name in run["datasets"] or []:
            by_run[run["run_key"]][name] = DatasetStatus(name)

    def status_of(row: dict[str, Any]) -> DatasetStatus:
        return by_run[row["run_key"]].setdefault(row["dataset"], DatasetStatus(row["dataset"]))

    needs_count: set[str] = set()
    for row in reads.dataset_rows(conn, keys):
        ds = status_of(row)
        ds.phase, ds.error, ds.row = row["phase"], row["error"], row
        ds.refused, ds.warned = row["rows_refused"], row["rows_warned"]
        if row["phase"] not in ("planned", None) and (ds.refused is None or ds.warned is None):
            needs_count.add(row["run_key"])
    for row in reads.check_counts(conn, keys):
        ds = status_of(row)
        ds.checks, ds.failed = row["checks"], row["failed"]
        ds.failed_fail, ds.failed_refuse, ds.failed_warn = row["failed_fail"], row["failed_refuse"], row["failed_warn"]
    if needs_count:  # per-data-set counts missing (older or interrupted runs): count the findings themselves
        for row in reads.refused_warned_rows(conn, sorted(needs_count)):
            ds = status_of(row)
            ds.refused = row["refused"] if ds.refused is None else ds.refused
            ds.warned = row["warned"] if ds.warned is None else ds.warned
    for key, datasets in by_run.items():
        order = list(out[key].run["datasets"] or [])
        out[key].datasets = sorted(
            datasets.values(), key=lambda d: (order.index(d.name) if d.name in order else len(order), d.name)
        )
    return [out[k] for k in keys]


@dataclass
class RunDetail:
    """Everything one run page shows."""

    run: dict[str, Any]
    audit: dict[str, dict[str, Any]]
    checks: list[dict[str, Any]]
    finding_counts: dict[tuple[str, str], dict[str, Any]]
    examples: dict[tuple[str, str], list[dict[str, Any]]]
    summary: RunSummary
    # Great Expectations' result per expectation (sync.gx_results), failing first, and the rows it validated
    gx: list[dict[str, Any]] = field(default_factory=list)
    gx_rows: dict[str, int | None] = field(default_factory=dict)

    def dataset_names(self) -> list[str]:
        names = list(self.run["datasets"] or [])
        extra = {c["dataset"] for c in self.checks} | set(self.audit) | {d for d, _ in self.finding_counts}
        extra |= {g["dataset"] for g in self.gx}
        return names + sorted(extra - set(names))

    def gx_of(self, dataset: str) -> list[dict[str, Any]]:
        """The data set's expectations, each with its sample rows as (key, our reason) (``sample_rows``)."""
        return [{**g, "sample_rows": self.sample_rows(g)} for g in self.gx if g["dataset"] == dataset]

    def sample_rows(self, result: dict[str, Any]) -> list[dict[str, Any]]:
        """GX's sample of failing rows as the run's findings name them: the key as our row keys write it
        (key columns in declared order, ``|`` between, NULL as ``NULL``) and our reason for that row, found
        among the rule's example findings (None when the row is not among them)."""
        declared = DATASETS.get(result["dataset"])
        reasons = {e["row_key"]: e["reason"] for e in self.examples.get((result["dataset"], result["rule"]), [])}
        rows = []
        for sample in result.get("sample_keys") or []:
            if not isinstance(sample, dict):
                continue
            columns = list(declared.primary.key) if declared else [k for k in sample if k != "_row_id"]
            key = "|".join("NULL" if sample.get(c) is None else str(sample.get(c)) for c in columns)
            rows.append({"key": key, "row_id": sample.get("_row_id"), "reason": reasons.get(key)})
        return rows


def run_detail(conn: psycopg.Connection, community: str, run_key: str, examples_per_check: int) -> RunDetail:
    """The run, its per-data-set rows, its checks and up to ``examples_per_check`` findings per rule."""
    run = reads.run(conn, run_key)
    if run is None or run["community_code"] != community:
        raise LookupError(f"{community}: no run {run_key!r}")
    [summary] = summaries(conn, [run])
    audit = {d.name: d.row for d in summary.datasets if d.row is not None}
    counts = {(r["dataset"], r["rule"]): r for r in reads.rule_counts_of_run(conn, run_key)}
    examples: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in reads.finding_examples(conn, run_key, examples_per_check):
        examples.setdefault((r["dataset"], r["rule"]), []).append(r)
    gx_rows = {r["dataset"]: r["rows_validated"] for r in gx_results.summary_of_run(conn, run_key)}
    return RunDetail(run, audit, reads.checks_of_run(conn, run_key), counts, examples, summary,
                     gx_results.results_of_run(conn, run_key), gx_rows)


@dataclass
class RunHistory:
    """The last runs of one community or of each, with what the ``runs`` command shows per data set."""

    summaries: list[RunSummary]
    zones: dict[str, ZoneInfo]  # community -> its time zone (its latest run's)
    hits: dict[tuple[str, str], list[dict[str, Any]]]  # (run, data set) -> rows found per rule and severity
    failed: dict[tuple[str, str], list[dict[str, Any]]]  # (run, data set) -> failed checks

    def top_rules(self, run_key: str, dataset: str, limit: int = 3) -> list[dict[str, Any]]:
        """The rules that hit most rows; failed checks stand in when the findings are gone (pruned) or the
        check is table-level."""
        top = sorted(self.hits.get((run_key, dataset), []), key=lambda r: (-r["n"], r["rule"]))[:limit]
        if not top:
            top = [{"rule": c["rule"], "severity": c["severity"], "n": c["failing_rows"], "example_key": None}
                   for c in self.failed.get((run_key, dataset), [])][:limit]
        return top


def run_history(conn: psycopg.Connection, community: str | None, limit: int,
                since: datetime | None = None) -> RunHistory:
    """The last ``limit`` runs per community (``since``: only those started since then), newest first."""
    found = summaries(conn, reads.recent_runs(conn, community, max(limit, 0), since))
    keys = [s.run["run_key"] for s in found]
    zones = {code: zone(reads.latest_time_zone(conn, code)) for code in {s.run["community_code"] for s in found}}
    history = RunHistory(found, zones, {}, {})
    for row in reads.rule_hits(conn, keys):
        history.hits.setdefault((row["run_key"], row["dataset"]), []).append(row)
    for row in reads.failed_checks(conn, keys):
        history.failed.setdefault((row["run_key"], row["dataset"]), []).append(row)
    return history


# --------------------------------------------------------------------------- trends

TREND_DAYS = 30


@dataclass
class TrendSeries:
    """One line of a trend chart: per day of ``Trends.days`` a value."""

    label: str
    values: list[int]
    style: str = ""  # the check's severity (refuse, warn, fail); "" for rows published
    runs: int = 0  # failed checks: runs it failed in; published: publishes


@dataclass
class Trends:
    """A community's last ``TREND_DAYS`` days (its clock): failing rows per check, rows published per data set."""

    community: str
    time_zone: str
    days: list[date]
    failing: list[TrendSeries]
    published: list[TrendSeries]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the status API and ``portal-sync status --json`` carry it)."""
        def series(items: list[TrendSeries]) -> list[dict[str, Any]]:
            return [{"label": s.label, "values": s.values, "style": s.style, "runs": s.runs} for s in items]

        return {"community": self.community, "time_zone": self.time_zone,
                "days": [d.isoformat() for d in self.days], "failing": series(self.failing),
                "published": series(self.published)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trends:
        def series(items: list[dict[str, Any]]) -> list[TrendSeries]:
            return [TrendSeries(s["label"], list(s["values"]), s.get("style", ""), s.get("runs", 0)) for s in items]

        return cls(data["community"], data["time_zone"], [date.fromisoformat(d) for d in data["days"]],
                   series(data["failing"]), series(data["published"]))


def trend_days(now: datetime, tz: ZoneInfo, days: int = TREND_DAYS) -> tuple[list[date], datetime]:
    """The last ``days`` calendar days on the community's clock, today included, and when the first began."""
    today = now.astimezone(tz).date()
    first = today - timedelta(days=days - 1)
    return [first + timedelta(days=i) for i in range(days)], datetime.combine(first, time(), tzinfo=tz)


def trends(conn: psycopg.Connection, community: str, tz: ZoneInfo, *, now: datetime | None = None,
           days: int = TREND_DAYS) -> Trends:
    """The two trend charts' data, in two queries bounded to the period (``store.reads``)."""
    day_list, since = trend_days(now or datetime.now(UTC), tz, days)
    position = {d: i for i, d in enumerate(day_list)}
    failing: dict[tuple[str, str, str], TrendSeries] = {}
    for row in reads.check_failures_by_day(conn, community, since, tz.key):
        if row["day"] not in position:  # a row validated after ``now`` (clock skew): not in the period
            continue
        key = (row["dataset"], row["rule"], row["severity"])
        s = failing.setdefault(key, TrendSeries(f"{row['dataset']}.{row['rule']}", [0] * days, row["severity"]))
        s.values[position[row["day"]]] = int(row["failing_rows"] or 0)
        s.runs += int(row["failed_runs"])
    published: dict[str, TrendSeries] = {}
    for row in reads.rows_published_by_day(conn, community, since, tz.key):
        if row["day"] not in position:
            continue
        s = published.setdefault(row["dataset"], TrendSeries(row["dataset"], [0] * days))
        s.values[position[row["day"]]] = int(row["rows_published"] or 0)
        s.runs += int(row["publishes"])
    worst_first = sorted(failing.values(), key=lambda s: (SEVERITY_ORDER.get(s.style, 9), -max(s.values), s.label))
    return Trends(community, tz.key, day_list, worst_first, sorted(published.values(), key=lambda s: s.label))
