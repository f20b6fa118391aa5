"""Clock and time-zone traps: runs across both daylight-saving changes of the community's zone
(America/Denver: 2026-03-08 02:00 MST -> 03:00 MDT, 2026-11-01 02:00 MDT -> 01:00 MST).

Caselle writes naive local times: in spring an hour of local stamps never appears, in autumn an
hour of stamps repeats. A simulator started just before the change keeps working through it, and
the sync reads explicit windows (RunRequest window_start/window_end) that step across it, each
reaching back by the scheduler's 30-minute look-back (lines commit late, with an InputDate older
than lines already written): after every run the portal must equal the projection.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from synctest import TZ, as_utc, assert_in_sync, community, sync

pytestmark = pytest.mark.integration

# The data sets that carry local times (and accounts, which they point to).
COMM = community(datasets=("accounts", "charges", "payments", "balances"))
BUSY = {"bills": 600, "payments": 600, "penalties": 60, "adjustments": 60, "aging_refresh": 600,
        "receipt_voids": 30, "bill_voids": 20, "new_customers": 20, "floor": 8}


LOOK_BACK = timedelta(minutes=30)


def step_across(sim, portal: str, label: str, steps: int, minutes: int = 30) -> list[tuple[datetime, datetime]]:
    windows = []
    for i in range(steps):
        before = sim.now_utc
        sim.evolve(timedelta(minutes=minutes), BUSY)
        start, end = before - LOOK_BACK, sim.now_utc + timedelta(seconds=1)
        results = sync(sim, portal, f"{label}-{i}", comm=COMM, window_start=start, window_end=end)
        assert all(r["phase"] == "published" for r in results.values()), results
        assert results["charges"]["mode"] == "window"
        assert_in_sync(sim, portal, COMM)
        windows.append((start, end))
    return windows


@pytest.mark.parametrize(("label", "local_start", "steps", "change_utc"), [
    # 01:00 MST, 01:30, then 02:00 MST is 03:00 MDT, 03:30 MDT
    ("spring", datetime(2026, 3, 8, 1, 0), 3, datetime(2026, 3, 8, 9, 0, tzinfo=UTC)),
    # 01:00 MDT, 01:30 MDT, then 01:00 MST again, 01:30 MST, 02:00 MST
    ("autumn", datetime(2026, 11, 1, 1, 0), 4, datetime(2026, 11, 1, 8, 0, tzinfo=UTC)),
])
def test_runs_across_a_daylight_saving_change_lose_and_double_nothing(make_source, portal, label, local_start, steps,
                                                                      change_utc):
    sim = make_source("sqlite", seed=71, start=local_start)
    sync(sim, portal, f"{label}-first", comm=COMM)  # the first, full read
    windows = step_across(sim, portal, label, steps=steps)
    assert windows[0][1] < change_utc + timedelta(seconds=1) < windows[-1][1]
    stamps = [str(v) for (v,) in sim.query('SELECT "AsOf" FROM "UB_Balance" UNION ALL SELECT "InputDate"'
                                           ' FROM "UB_Transaction" UNION ALL SELECT "StatusDate" FROM "CR_Receipt"')]
    day = local_start.date().isoformat()
    hours = {s[11:13] for s in stamps if s.startswith(day)}
    if label == "spring":
        assert "02" not in hours and {"01", "03"} <= hours, "no local stamp exists in the skipped hour"
    else:
        assert "01" in hours and "02" in hours
    assert as_utc(local_start, TZ) < change_utc
