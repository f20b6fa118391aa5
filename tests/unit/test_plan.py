"""Planning without a database: what each data set of a run reads, and the primary extract's reads."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from portal_sync.config import Community
from portal_sync.datasets import DATASETS
from portal_sync.params import RunRequest
from portal_sync.plan import QUARANTINE_CHUNK, DatasetPlan, PlanError, plan_run, primary_reads

DENVER = ZoneInfo("America/Denver")
LOOK_BACK = timedelta(minutes=30)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def community(**overrides: object) -> Community:
    values: dict[str, object] = {"code": "SPRINGFLD", "caselle_conn_id": "caselle_test", "time_zone": "America/Denver",
                                 "reconcile_schedule": None, "look_back_minutes": 30}
    values.update(overrides)
    return Community(**values)


def plan(comm: Community | None = None, request: RunRequest | None = None, *, marks=None, published=None,
         interval: tuple[datetime, datetime] | None = None, now: datetime) -> dict[str, DatasetPlan]:
    return plan_run(comm or community(), request or RunRequest(), marks=marks or {}, published=published or {},
                    interval_start=interval[0] if interval else None, interval_end=interval[1] if interval else None,
                    zone=DENVER, now=now)


class FakeDialect:
    """Quotes with '"' and renders bounds as text, as the default dialect does."""

    quote = '"'

    def quote_ident(self, name: str) -> str:
        return f'"{name}"'

    def timestamp_param(self, naive_local: datetime) -> str:
        assert naive_local.tzinfo is None and naive_local.microsecond == 0
        return naive_local.strftime("%Y-%m-%d %H:%M:%S")

    def date_param(self, day: date) -> str:
        return f"date {day.isoformat()}"


def test_first_run_without_a_mark_reads_everything():
    plans = plan(now=utc(2026, 3, 1, 12))
    assert list(plans) == list(community().datasets)
    assert {p.mode for p in plans.values()} == {"full"}
    assert "no mark" in plans["charges"].why and "snapshot" in plans["accounts"].why


def test_paused_dag_reads_from_the_mark_not_only_the_interval():
    mark = utc(2026, 3, 1, 8)  # the last publish, hours before this interval
    plans = plan(marks={"charges": mark}, interval=(utc(2026, 3, 1, 12), utc(2026, 3, 1, 12, 5)),
                 now=utc(2026, 3, 1, 12, 6))
    assert plans["charges"] == DatasetPlan("charges", "window", mark - LOOK_BACK, utc(2026, 3, 1, 12, 5),
                                           plans["charges"].why)
    assert plans["accounts"].mode == "full"  # a snapshot data set has no window


def test_backfill_of_an_old_interval_after_the_mark_moved_on_reads_that_interval():
    plans = plan(marks={"charges": utc(2026, 3, 9)}, interval=(utc(2026, 3, 1, 10), utc(2026, 3, 1, 11)),
                 now=utc(2026, 3, 9, 1))
    charges = plans["charges"]
    assert (charges.mode, charges.window_start, charges.window_end) == (
        "window", utc(2026, 3, 1, 10) - LOOK_BACK, utc(2026, 3, 1, 11))


def _every_local_stamp_inside(window: DatasetPlan, reads: list) -> None:
    (where, params), = reads
    start, end = (datetime.fromisoformat(p) for p in params)
    instant = window.window_start
    while instant < window.window_end:
        local = instant.astimezone(DENVER).replace(tzinfo=None)
        assert start <= local < end, f"{instant} reads {local} locally, outside [{start}, {end})"
        instant += timedelta(minutes=1)


@pytest.mark.parametrize(
    ("interval", "local"),
    [
        # spring forward: 01:55 MST -> 03:05 MDT (02:xx does not exist locally)
        ((utc(2026, 3, 8, 8, 55), utc(2026, 3, 8, 9, 5)), ("2026-03-08 01:55:00", "2026-03-08 03:05:00")),
        # fall back: 01:55 MDT -> 01:05 MST; the local bounds take the repeated hour whole
        ((utc(2026, 11, 1, 7, 55), utc(2026, 11, 1, 8, 5)), ("2026-11-01 00:55:00", "2026-11-01 02:05:00")),
    ],
)
def test_dst_edges_widen_the_local_bounds_and_miss_nothing(interval, local):
    comm = community(look_back_minutes=0)
    charges = plan(comm, marks={"charges": interval[0]}, interval=interval, now=interval[1])["charges"]
    assert (charges.mode, charges.window_start, charges.window_end) == ("window", *interval)
    reads = primary_reads(DATASETS["charges"], charges, DENVER, [], FakeDialect())
    assert reads == [('(("InputDate" >= ? AND "InputDate" < ?))', list(local))]
    _every_local_stamp_inside(charges, reads)


def test_cadence_not_due_skips_with_why_and_due_runs():
    comm = community(cadence_minutes={"accounts": 60})
    now = utc(2026, 3, 1, 12)
    plans = plan(comm, published={"accounts": now - timedelta(minutes=10), "charges": now - timedelta(minutes=10)},
                 now=now)
    assert plans["accounts"].mode == "skipped"
    assert plans["accounts"].why == "not due: last published 2026-03-01 11:50:00+0000, cadence 1:00:00"
    assert plans["accounts"].describe() == plans["accounts"].why
    assert plans["charges"].mode == "full"  # no cadence: due every run
    later = plan(comm, published={"accounts": now - timedelta(minutes=60)}, now=now)
    assert later["accounts"].mode == "full"  # due (within the one-minute slack)
    asked = plan(comm, RunRequest(datasets=("accounts",)), published={"accounts": now - timedelta(minutes=10)},
                 now=now)
    assert asked["accounts"].mode == "full"  # a request naming the data set is obeyed whatever the cadence


def test_reconcile_due_when_its_cron_ticks_inside_the_window():
    comm = community(reconcile_schedule="0 2 * * *", reconcile_days=400, cadence_minutes={"charges": 600})
    # 01:55 -> 02:05 Denver (MST, UTC-7)
    interval = (utc(2026, 1, 15, 8, 55), utc(2026, 1, 15, 9, 5))
    now = utc(2026, 1, 15, 9, 6)
    plans = plan(comm, marks={"charges": interval[0]}, published={"charges": now - timedelta(minutes=10)},
                 interval=interval, now=now)
    charges = plans["charges"]
    assert (charges.mode, charges.window_start, charges.window_end) == (
        "reconcile", now - timedelta(days=400), interval[1])  # not skipped by its cadence either
    assert "ticks inside the window" in charges.why
    assert charges.describe() == "reconcile contents since 2024-12-11"
    later = now + timedelta(hours=10)
    quiet = plan(comm, marks={"charges": utc(2026, 1, 15, 18, 55)}, interval=(utc(2026, 1, 15, 18, 55), later),
                 now=later)
    assert quiet["charges"].mode == "window"  # 11:25 -> 12:06 local: no 02:00 tick


def test_reconcile_requested_and_all_history():
    now = utc(2026, 3, 1, 12)
    marks = {"charges": utc(2026, 3, 1, 11)}
    asked = plan(request=RunRequest(reconcile=True), marks=marks, now=now)["charges"]
    assert (asked.mode, asked.window_start, asked.window_end) == ("reconcile", now - timedelta(days=400), now)
    assert asked.changes_since == marks["charges"] - timedelta(minutes=30)  # the window it replaces (look-back)
    assert asked.why == "reconciliation requested"
    every = plan(request=RunRequest(reconcile_all_history=True), marks=marks, now=now)["charges"]
    assert (every.mode, every.window_start) == ("reconcile", None)
    assert every.describe() == "reconcile all history"
    assert primary_reads(DATASETS["charges"], every, DENVER, ["1"], FakeDialect()) == [(None, None)]


def test_explicit_window_from_the_request():
    request = RunRequest.from_conf({"window_start": "2026-02-01T00:00:00+00:00",
                                    "window_end": "2026-02-02T00:00:00+00:00"})
    plans = plan(request=request, marks={"charges": utc(2026, 3, 1)}, now=utc(2026, 3, 1, 12))
    assert (plans["charges"].mode, plans["charges"].window_start, plans["charges"].window_end) == (
        "window", utc(2026, 2, 1), utc(2026, 2, 2))
    assert plans["accounts"].mode == "full"
    assert plans["charges"].describe() == "window 2026-02-01 00:00:00+0000 .. 2026-02-02 00:00:00+0000"


def test_datasets_narrowed_by_the_request_and_a_not_enabled_one_refused():
    comm = community(datasets=("accounts", "charges", "payments"))
    plans = plan(comm, RunRequest(datasets=("payments", "accounts")), now=utc(2026, 3, 1))
    assert list(plans) == ["accounts", "payments"]  # the declared order
    with pytest.raises(PlanError, match=r"SPRINGFLD: data set\(s\) \['balances'\] are not enabled"):
        plan(comm, RunRequest(datasets=("balances",)), now=utc(2026, 3, 1))


def test_window_reads_round_to_whole_seconds_and_cover_every_signal():
    window = DatasetPlan("payments", "window", datetime(2026, 1, 15, 17, 0, 0, 500_000, tzinfo=UTC),
                         datetime(2026, 1, 15, 17, 5, 2, 1, tzinfo=UTC))
    reads = primary_reads(DATASETS["payments"], window, DENVER, [], FakeDialect())
    bounds = ["2026-01-15 10:00:00", "2026-01-15 10:05:03"]  # start floored, end ceiled
    assert reads == [('(("InputDate" >= ? AND "InputDate" < ?) OR ("StatusDate" >= ? AND "StatusDate" < ?))',
                      bounds * 2)]


def test_reconcile_reads_contents_since_the_local_date():
    since = DatasetPlan("charges", "reconcile", utc(2026, 1, 1, 3), utc(2026, 3, 1))  # 2025-12-31 20:00 in Denver
    assert primary_reads(DATASETS["charges"], since, DENVER, [], FakeDialect()) == [
        ('("TransactionDate" >= ?)', ["date 2025-12-31"])]
    full = DatasetPlan("charges", "full")
    assert primary_reads(DATASETS["charges"], full, DENVER, ["7"], FakeDialect()) == [(None, None)]


def test_a_reconciliation_also_reads_what_changed_since_the_mark_whatever_its_date():
    """Its mark moves past the window: a line entered now but dated before the compared range (a period
    close's BEGBAL line, dated PurgeBefore) would otherwise wait for an all-history reconciliation."""
    plan = DatasetPlan("charges", "reconcile", utc(2026, 1, 1, 3), utc(2026, 3, 1, 9),
                       changes_since=utc(2026, 3, 1, 8, 55))
    assert primary_reads(DATASETS["charges"], plan, DENVER, [], FakeDialect()) == [
        ('("TransactionDate" >= ? OR ("InputDate" >= ? AND "InputDate" < ?))',
         ["date 2025-12-31", "2026-03-01 01:55:00", "2026-03-01 02:00:00"])]


def test_quarantined_keys_are_read_again_in_chunks():
    window = DatasetPlan("charges", "window", utc(2026, 1, 15, 17), utc(2026, 1, 15, 17, 5))
    keys = [str(k) for k in range(1, 451)] + ["-3", "not-a-number"]
    reads = primary_reads(DATASETS["charges"], window, DENVER, keys, FakeDialect())
    where = '("InputDate" >= ? AND "InputDate" < ?)'
    bounds = ["2026-01-15 10:00:00", "2026-01-15 10:05:00"]
    assert reads[0] == (f"({where})", bounds)
    numeric = [*keys[:450], "-3"]
    chunks = [numeric[i:i + QUARANTINE_CHUNK] for i in range(0, len(numeric), QUARANTINE_CHUNK)]
    assert [len(c) for c in chunks] == [200, 200, 51]
    assert reads[1:] == [
        (f'"TransactionID" IN ({", ".join("?" for _ in chunk)}) AND NOT ({where})', [*chunk, *bounds])
        for chunk in chunks
    ]
    reconcile = DatasetPlan("charges", "reconcile", utc(2026, 1, 1, 12), utc(2026, 3, 1))
    again = primary_reads(DATASETS["charges"], reconcile, DENVER, ["12"], FakeDialect())
    assert again[1] == ('"TransactionID" IN (?) AND NOT ("TransactionDate" >= ?)', ["12", "date 2026-01-01"])
