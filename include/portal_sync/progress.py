"""Progress lines for long reads and publishes, so a task log never goes quiet for long.

A city's first load reads millions of rows and one publish statement can run for minutes:
an operator watching the log must see that it moves, and how fast. A ticker thread writes a
line every ``PROGRESS_EVERY`` seconds while the work lasts (also while one statement
blocks), with the rows counted so far and the rate; short work writes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from types import TracebackType

import pyarrow as pa

log = logging.getLogger("portal_sync")

PROGRESS_EVERY = 30.0  # seconds between two lines


class Progress:
    """``with Progress("SPRINGFLD charges: reading UB_Transaction"):`` counts rows via ``add`` or ``batches``."""

    def __init__(self, what: str, every: float = PROGRESS_EVERY) -> None:
        self.what, self.every = what, every
        self.rows = 0
        self.started = time.monotonic()
        self.lines = 0
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)

    def __enter__(self) -> Progress:
        self.started = time.monotonic()
        self._ticker.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._ticker.join()

    def add(self, rows: int) -> None:
        self.rows += rows

    def batches(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Pass the batches through, counting their rows."""
        for batch in batches:
            self.rows += batch.num_rows
            yield batch

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return f"{self.what}: {self.rows:,} rows so far in {elapsed:.0f}s ({self.rows / elapsed:,.0f} rows/s)"

    def _tick(self) -> None:
        while not self._stop.wait(self.every):
            self.lines += 1
            log.info("%s", self.line())
