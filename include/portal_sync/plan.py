"""What a run reads for each data set, decided from facts alone (no database, no ODBC).

``plan_run`` turns the marks, the last publishes, the data interval, the trigger request
and the community's settings into one ``DatasetPlan`` per data set: a full snapshot, a
window, a reconciliation, or skipped (not due), each with the reason. ``primary_reads``
turns a plan into the WHERE clauses and parameters of the primary extract's source reads.
The window rules are windows.py's (docs/adr/0004).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from portal_sync.config import Community
from portal_sync.datasets import DATASETS, Dataset
from portal_sync.freshness import cadence, is_due
from portal_sync.params import RunRequest
from portal_sync.windows import Window, local_bounds, plan_window, reconcile_due, whole_seconds

if TYPE_CHECKING:
    from portal_sync.source.dialect import Dialect, Read

Mode = Literal["full", "window", "reconcile", "skipped"]
QUARANTINE_CHUNK = 200  # keys per IN list of the quarantine re-reads


class PlanError(ValueError):
    """The request cannot be planned for this community (e.g. a data set it does not enable)."""


@dataclass(frozen=True)
class DatasetPlan:
    """How one run reads one data set. Window bounds are aware instants, the end exclusive; a
    reconciliation's ``window_start`` is where its content comparison begins (None: all history)."""

    dataset: str
    mode: Mode
    window_start: datetime | None = None
    window_end: datetime | None = None
    why: str = ""
    changes_since: datetime | None = None  # a reconciliation also reads what changed since the mark

    def describe(self) -> str:
        if self.mode == "skipped":
            return self.why
        if self.mode == "window":
            return f"window {self.window_start:%Y-%m-%d %H:%M:%S%z} .. {self.window_end:%Y-%m-%d %H:%M:%S%z}"
        if self.mode == "reconcile":
            since = self.window_start
            return "reconcile " + (f"contents since {since:%Y-%m-%d}" if since else "all history")
        return "full"


def run_datasets(community: Community, request: RunRequest) -> tuple[str, ...]:
    """The data sets a run syncs: the community's, narrowed by the request (in declared order)."""
    wanted = request.datasets
    if wanted is None:
        return community.datasets
    not_enabled = [n for n in wanted if n not in community.datasets]
    if not_enabled:
        raise PlanError(f"{community.code}: data set(s) {not_enabled} are not enabled for this community")
    return tuple(n for n in community.datasets if n in wanted)


def plan_dataset(community: Community, request: RunRequest, ds: Dataset, mark: datetime | None, *,
                 interval_start: datetime | None, interval_end: datetime | None, zone: ZoneInfo,
                 now: datetime) -> DatasetPlan:
    """How this run reads a data set: full snapshot, a window, or a reconciliation."""
    if not ds.incremental:
        return DatasetPlan(ds.name, "full", why="a snapshot data set: read whole every run")
    if request.window_start is not None:
        return DatasetPlan(ds.name, "window", request.window_start, request.window_end, "window requested")
    window = plan_window(mark=mark, interval_start=interval_start, interval_end=interval_end, now=now,
                         look_back=timedelta(minutes=community.look_back_minutes))
    if window is None:
        return DatasetPlan(ds.name, "full", why="no mark yet: first read is whole")
    due = reconcile_due(community.reconcile_schedule, zone, window.start, window.end)
    if request.reconcile or due:
        since = None if request.reconcile_all_history else now - timedelta(days=community.reconcile_days)
        why = "reconciliation requested" if request.reconcile else (
            f"reconciliation due: '{community.reconcile_schedule}' ticks inside the window")
        return DatasetPlan(ds.name, "reconcile", since, window.end, why, changes_since=window.start)
    return DatasetPlan(ds.name, "window", window.start, window.end,
                       f"from the mark and the data interval, less {community.look_back_minutes} min look-back")


def plan_run(community: Community, request: RunRequest, *, marks: Mapping[str, datetime],
             published: Mapping[str, datetime], interval_start: datetime | None, interval_end: datetime | None,
             zone: ZoneInfo, now: datetime) -> dict[str, DatasetPlan]:
    """Every data set of the run, planned; one whose cadence is not due is skipped, with why.

    A request that names data sets, a window or a reconciliation is obeyed whatever the cadence.
    """
    asked = request.datasets is not None or request.reconcile or request.window_start is not None
    plans = {}
    for name in run_datasets(community, request):
        plan = plan_dataset(community, request, DATASETS[name], marks.get(name), interval_start=interval_start,
                            interval_end=interval_end, zone=zone, now=now)
        if not asked and plan.mode != "reconcile" and not is_due(community, name, published.get(name), now):
            plan = DatasetPlan(name, "skipped", why=f"not due: last published {published[name]:%Y-%m-%d %H:%M:%S%z},"
                                                   f" cadence {cadence(community, name)}")
        plans[name] = plan
    return plans


def primary_reads(ds: Dataset, plan: DatasetPlan, zone: ZoneInfo, quarantined_keys: Sequence[str],
                  dialect: Dialect) -> list[Read]:
    """The (ANSI WHERE, parameters) reads that make up the primary extract in this plan's mode.

    A window reads every row whose change signal lies in the window's local bounds (whole
    seconds: start floored, end ceiled). Quarantined keys outside the read are fetched again so
    that a refused row is retried on every run, and excluded from the key read to avoid staging
    a row twice.
    """
    q = dialect.quote_ident
    if plan.mode == "full" or (plan.mode == "reconcile" and plan.window_start is None):
        return [(None, None)]
    if plan.mode == "window":
        assert plan.window_start is not None and plan.window_end is not None
        naive_start, naive_end = local_bounds(Window(plan.window_start, plan.window_end), zone)
        bounds = [dialect.timestamp_param(whole_seconds(naive_start)),
                  dialect.timestamp_param(whole_seconds(naive_end, round_up=True))]
        where = " OR ".join(f"({q(c)} >= ? AND {q(c)} < ?)" for c in ds.signals)
        params = bounds * len(ds.signals)
    elif plan.mode == "reconcile":  # contents over the configured range (keys of all rows: reconcile_keys)
        column = ds.reconcile_date_column
        if column is None:
            return [(None, None)]
        assert plan.window_start is not None
        where, params = f"{q(column)} >= ?", [dialect.date_param(plan.window_start.astimezone(zone).date())]
        if plan.changes_since is not None and plan.window_end is not None:
            # ... and every row that changed since the mark, whatever its date: the mark moves past them
            # (a period close's BEGBAL lines are dated PurgeBefore, years before the compared range).
            naive_start, naive_end = local_bounds(Window(plan.changes_since, plan.window_end), zone)
            bounds = [dialect.timestamp_param(whole_seconds(naive_start)),
                      dialect.timestamp_param(whole_seconds(naive_end, round_up=True))]
            where = " OR ".join([where, *(f"({q(c)} >= ? AND {q(c)} < ?)" for c in ds.signals)])
            params = params + bounds * len(ds.signals)
    else:
        raise ValueError(f"{ds.name}: a {plan.mode} data set has no reads")
    reads: list[Read] = [(f"({where})", params)]
    key = q(ds.primary.key[0])
    numeric = [k for k in quarantined_keys if k.lstrip("-").isdigit()]
    for i in range(0, len(numeric), QUARANTINE_CHUNK):
        chunk = numeric[i:i + QUARANTINE_CHUNK]
        marks = ", ".join("?" for _ in chunk)
        reads.append((f"{key} IN ({marks}) AND NOT ({where})", [*chunk, *params]))
    return reads
