"""What a run looks like to the reports: per data set a status (worst first), per run its totals.

Built from the rows of ``store.reads`` in a fixed number of queries over the runs asked
about, whatever the number of runs kept. The data-quality site, the status page and the
``runs`` text share these, so a run is "refused" or "warned" in the same cases everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from portal_sync.reporting.format import local_time, outcome_status, zone
from portal_sync.store import reads

SEVERITY_ORDER = {"fail": 0, "refuse": 1, "warn": 2}


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

    def dataset_names(self) -> list[str]:
        names = list(self.run["datasets"] or [])
        extra = {c["dataset"] for c in self.checks} | set(self.audit) | {d for d, _ in self.finding_counts}
        return names + sorted(extra - set(names))


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
    return RunDetail(run, audit, reads.checks_of_run(conn, run_key), counts, examples, summary)


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
