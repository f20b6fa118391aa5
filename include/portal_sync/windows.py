"""Read windows of the incremental data sets, and their conversion to Caselle local time.

The rules (docs/adr/0004): a window starts at the earlier of the run's data-interval
start and the last committed high-water mark, minus the look-back, and ends at the
interval end (manual runs without an interval end at the run's start). Since the
mark only moves when a publish commits, a paused DAG, failed runs or a scheduler
outage widen the next window instead of leaving a gap.

Caselle stamps rows with naive local times. A UTC window is widened to every local
reading it can have: across a daylight-saving change the offset differs at the two
ends, so the local window is taken with the smaller offset at its start and the
larger at its end. Rows in the repeated autumn hour are read twice at worst (the
merge makes that harmless), never missed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter


@dataclass(frozen=True)
class Window:
    start: datetime  # aware, UTC
    end: datetime  # aware, UTC, exclusive

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware")
        if self.end <= self.start:
            raise ValueError(f"empty window {self.start} .. {self.end}")


def plan_window(
    *,
    mark: datetime | None,
    interval_start: datetime | None,
    interval_end: datetime | None,
    now: datetime,
    look_back: timedelta,
) -> Window | None:
    """The window to read, or None when the data set has no mark yet (read it whole)."""
    if mark is None:
        return None
    end = interval_end or now
    start = min(interval_start, mark) if interval_start is not None else mark
    start = start - look_back
    if end <= start:  # e.g. an old interval re-run after the mark moved on: still read that interval
        start = (interval_start or end) - look_back
    return Window(start.astimezone(UTC), end.astimezone(UTC))


def _offset(instant: datetime, zone: ZoneInfo) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


def local_bounds(window: Window, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """Naive local [start, end) that contains every row stamped inside the UTC window."""
    offsets = [_offset(window.start, zone), _offset(window.end, zone)]
    naive_start = (window.start + min(offsets)).replace(tzinfo=None)
    naive_end = (window.end + max(offsets)).replace(tzinfo=None)
    return naive_start, naive_end


def whole_seconds(value: datetime, *, round_up: bool = False) -> datetime:
    """A window bound to whole seconds: the start floored, the end (``round_up``) ceiled.

    Whole seconds because a source may compare stamps as ISO text (SQLite does, lexically):
    'YYYY-MM-DD HH:MM:SS' sorts before any stored value of that second with fractions, so a
    floored start includes them and a ceiled end does too.
    """
    if round_up and value.microsecond:
        value = value.replace(microsecond=0) + timedelta(seconds=1)
    return value.replace(microsecond=0)


def reconcile_due(cron: str | None, zone: ZoneInfo, start: datetime | None, end: datetime | None) -> bool:
    """Does a tick of the reconciliation schedule (local time) fall in (start, end]?"""
    if not cron or start is None or end is None or end <= start:
        return False
    local_start = start.astimezone(zone)
    tick = croniter(cron, local_start).get_next(datetime)
    return tick.astimezone(UTC) <= end.astimezone(UTC)
