"""Progress lines: a long read or publish says how far it is, even while one statement blocks."""

from __future__ import annotations

import logging
import time

import pyarrow as pa

from portal_sync.progress import Progress


def test_a_long_read_logs_rows_so_far_and_the_rate(caplog):
    caplog.set_level(logging.INFO, logger="portal_sync")

    def slow_batches():
        for _ in range(6):
            time.sleep(0.05)
            yield pa.record_batch({"x": pa.array(range(1000))})

    with Progress("TOWN charges: reading UB_Transaction", every=0.06) as progress:
        rows = sum(b.num_rows for b in progress.batches(slow_batches()))
    assert rows == 6000 and progress.rows == 6000
    lines = [r.getMessage() for r in caplog.records if "reading UB_Transaction" in r.getMessage()]
    assert len(lines) >= 1 and progress.lines == len(lines)
    assert all("rows so far" in line and "rows/s" in line for line in lines)
    counts = [int(line.rsplit(": ", 1)[1].split(" rows")[0].replace(",", "")) for line in lines]
    assert counts == sorted(counts) and counts[-1] > 0


def test_a_blocking_step_still_logs_and_short_work_logs_nothing(caplog):
    caplog.set_level(logging.INFO, logger="portal_sync")
    with Progress("TOWN: publishing charges", every=0.05) as blocked:
        time.sleep(0.22)  # one long statement: no rows counted until it ends
        blocked.add(42)
    assert blocked.lines >= 1  # the ticker speaks while the statement blocks
    with Progress("TOWN: publishing accounts", every=30) as quick:
        quick.add(5)
    assert quick.lines == 0
    assert not [r for r in caplog.records if "publishing accounts" in r.getMessage()]
