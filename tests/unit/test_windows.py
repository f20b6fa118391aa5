"""Window planning and its conversion to Caselle local time, daylight-saving changes included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from portal_sync.windows import Window, local_bounds, plan_window, reconcile_due, whole_seconds

DENVER = ZoneInfo("America/Denver")
LOOK_BACK = timedelta(minutes=30)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_first_run_has_no_window():
    assert plan_window(mark=None, interval_start=utc(2026, 1, 1), interval_end=utc(2026, 1, 1, 0, 5),
                       now=utc(2026, 1, 1, 0, 6), look_back=LOOK_BACK) is None


def test_scheduled_run_reaches_back_to_the_mark_after_a_pause():
    mark = utc(2026, 3, 1, 8, 0)  # the last publish, hours before this interval
    window = plan_window(mark=mark, interval_start=utc(2026, 3, 1, 12, 0), interval_end=utc(2026, 3, 1, 12, 5),
                         now=utc(2026, 3, 1, 12, 6), look_back=LOOK_BACK)
    assert window == Window(mark - LOOK_BACK, utc(2026, 3, 1, 12, 5))


def test_backfill_of_an_old_interval_reads_that_interval():
    window = plan_window(mark=utc(2026, 3, 9), interval_start=utc(2026, 3, 1, 10), interval_end=utc(2026, 3, 1, 11),
                         now=utc(2026, 3, 9, 1), look_back=LOOK_BACK)
    assert window == Window(utc(2026, 3, 1, 10) - LOOK_BACK, utc(2026, 3, 1, 11))


def test_manual_run_without_interval_reads_from_the_mark_to_now():
    window = plan_window(mark=utc(2026, 3, 1, 10), interval_start=None, interval_end=None,
                         now=utc(2026, 3, 1, 11), look_back=LOOK_BACK)
    assert window == Window(utc(2026, 3, 1, 9, 30), utc(2026, 3, 1, 11))


def test_plain_window_maps_to_local_time():
    start, end = local_bounds(Window(utc(2026, 1, 15, 17, 0), utc(2026, 1, 15, 17, 5)), DENVER)
    assert (start, end) == (datetime(2026, 1, 15, 10, 0), datetime(2026, 1, 15, 10, 5))


@pytest.mark.parametrize(
    "window_utc",
    [
        (utc(2026, 11, 1, 7, 55), utc(2026, 11, 1, 8, 5)),  # autumn: 01:55 MDT -> 01:05 MST
        (utc(2026, 11, 1, 7, 0), utc(2026, 11, 1, 9, 0)),  # the whole repeated hour
        (utc(2026, 3, 8, 8, 55), utc(2026, 3, 8, 9, 5)),  # spring: 01:55 MST -> 03:05 MDT
    ],
)
def test_dst_windows_cover_every_local_stamp_of_their_instants(window_utc):
    window = Window(*window_utc)
    start, end = local_bounds(window, DENVER)
    assert start < end
    instant = window.start
    while instant < window.end:  # every instant in the window, by the minute
        local = instant.astimezone(DENVER).replace(tzinfo=None)
        assert start <= local < end, (instant, local, start, end)
        instant += timedelta(minutes=1)


def test_consecutive_windows_across_the_autumn_change_leave_no_local_gap():
    edges = [utc(2026, 11, 1, 6, 0) + timedelta(minutes=5 * i) for i in range(40)]
    covered = [local_bounds(Window(a, b), DENVER) for a, b in zip(edges, edges[1:], strict=False)]
    minute = covered[0][0]
    while minute < covered[-1][1]:
        assert any(s <= minute < e for s, e in covered), minute
        minute += timedelta(minutes=1)


def test_whole_seconds_floors_start_and_ceils_end():
    value = datetime(2026, 1, 2, 3, 4, 5, 678000)
    assert whole_seconds(value) == datetime(2026, 1, 2, 3, 4, 5)
    assert whole_seconds(value, round_up=True) == datetime(2026, 1, 2, 3, 4, 6)
    assert whole_seconds(datetime(2026, 1, 2, 3, 4, 5), round_up=True) == datetime(2026, 1, 2, 3, 4, 5)


def test_reconcile_is_due_when_its_local_tick_falls_in_the_window():
    nightly = "0 2 * * *"
    assert reconcile_due(nightly, DENVER, utc(2026, 1, 15, 8, 55), utc(2026, 1, 15, 9, 0))  # 02:00 MST = 09:00Z
    assert not reconcile_due(nightly, DENVER, utc(2026, 1, 15, 9, 0), utc(2026, 1, 15, 9, 5))
    assert not reconcile_due(None, DENVER, utc(2026, 1, 15), utc(2026, 1, 16))
    assert reconcile_due(nightly, DENVER, utc(2026, 1, 13), utc(2026, 1, 15))  # missed while paused
