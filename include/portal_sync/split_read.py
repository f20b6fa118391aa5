"""Big SQLite reads split into rowid ranges, each range read by its own child process.

SQLite and its value checks run inside the reading process: the checked read of a city ledger is
the client's CPU, 4-5x the bare read. Two such reads in threads of one process were measured at
twice the CPU each and no faster together than one alone (contention inside the driver stack;
docs/benchmarks/README.md, round 4), while two processes each ran at full speed. So a big read is
cut into rowid ranges, a child process reads each and sends its Arrow batches back over a pipe,
and the caller numbers and stages the rows as it does for a single read.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyodbc

from portal_sync.datasets import Extract
from portal_sync.extract import (
    BATCH_ROWS,
    ROW_ID,
    ExtractError,
    ExtractStats,
    quote_ident,
    read_batches,
    source_dbms,
    staged_schema,
)

# A read of a SQLite table whose rowids span at least this many is split (a child process costs
# about a second to start; a city ledger's checked read takes minutes).
SPLIT_MIN_ROWS = 500_000

Read = tuple[str | None, list[str] | None]  # (ANSI WHERE with ? markers, its parameters)


def split_read(connection_string: str, extract: Extract, quote: str, read: Read, streams: int,
               min_rows: int | None = None) -> list[Read]:
    """One read as ``streams`` reads of consecutive rowid ranges of a big SQLite table, else itself.

    Rowid ranges partition the rows of a rowid table exactly once, whatever a column holds (NULL
    or text in a key column included), and each range is a seek, not a scan. Other engines check
    nothing on the client and do their work in their own server: their reads are not split.
    """
    if streams < 2 or source_dbms(connection_string) != "SQLite":
        return [read]
    conn = pyodbc.connect(connection_string, autocommit=True, timeout=30)
    try:
        low, high = conn.execute(f"SELECT min(rowid), max(rowid) FROM {quote_ident(extract.table, quote)}").fetchone()
    except pyodbc.Error:  # a WITHOUT ROWID table: read it whole
        return [read]
    finally:
        conn.close()
    if low is None:
        return [read]
    low, high = int(low), int(high)  # the driver hands over an expression's value as text
    if high - low + 1 < (SPLIT_MIN_ROWS if min_rows is None else min_rows):
        return [read]
    where, parameters = read
    step = -(-(high - low + 1) // streams)
    bounds = [low + i * step for i in range(1, streams)]
    pieces: list[Read] = []
    for i in range(streams):  # the first range has no lower bound, the last no upper one
        # Integer literals, not ? markers, for the reason of extract.sqlite_literal_sql (2.3 GB per
        # half of a city ledger with markers); integers, not text, so rowid compares as a number.
        conditions = []
        if i > 0:
            conditions.append(f"rowid >= {int(bounds[i - 1])}")
        if i < streams - 1:
            conditions.append(f"rowid < {int(bounds[i])}")
        condition = " AND ".join(conditions)
        pieces.append((f"({where}) AND {condition}" if where else condition, parameters))
    return pieces


def _die_with_parent() -> None:
    """Linux: the child is killed when the process that started it dies (a killed task leaves no reader)."""
    # elsewhere the child still stops at its next write into the closed pipe
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _portable(exc: BaseException) -> BaseException:
    """The exception itself when it survives pickling, else an ExtractError with its type and text."""
    try:
        return pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - any failure to pickle means: send the text instead
        return ExtractError(f"{type(exc).__name__}: {exc}")


def _broken_pipe(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and (exc.errno == errno.EPIPE or "Broken pipe" in str(exc))


def _child_main() -> None:
    """In the child: the read's arguments pickled on stdin; on stdout an Arrow IPC stream of its
    batches, then the pickled outcome (None, or the exception to raise in the parent)."""
    _die_with_parent()
    # The data pipe is a private descriptor; anything a library or driver prints goes to stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    connection_string, extract, quote, read, batch_rows = pickle.load(sys.stdin.buffer)
    outcome: BaseException | None = None
    try:
        with pa.ipc.new_stream(out, staged_schema(extract)) as writer:
            try:
                for batch in read_batches(connection_string, extract, quote, batch_rows=batch_rows,
                                          where=read[0], parameters=read[1]):
                    writer.write_batch(batch)
            except Exception as exc:  # noqa: BLE001 - whatever it is, the parent raises it
                if _broken_pipe(exc):
                    raise
                outcome = _portable(exc)
        pickle.dump(outcome, out)
        out.flush()
    except OSError as exc:
        if not _broken_pipe(exc):
            raise
        # the parent stopped listening: nothing to say, and nobody to say it to


def _child_environment() -> dict[str, str]:
    """The caller's environment, with this package importable however the caller found it."""
    here = str(Path(__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": here + (os.pathsep + path if path else "")}


_DONE = object()


def read_at_once(
    connection_string: str, extract: Extract, quote: str, reads: Sequence[Read], *,
    stats: ExtractStats, batch_rows: int = BATCH_ROWS,
) -> Iterator[pa.RecordBatch]:
    """The reads in child processes at once; their batches as they arrive, rows numbered in that order.

    Children are plain ``python -m`` processes (not multiprocessing: that re-imports the caller's
    main module, which a script, a DAG runner or a test runner may not allow). At most one batch per
    read waits here beside what the pipes hold. A failed or killed read ends the others (their
    processes are terminated) and its error is raised here.
    """
    handoff: queue.Queue = queue.Queue(maxsize=len(reads))
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def pump(number: int, child: subprocess.Popen) -> None:
        try:
            reader = pa.ipc.open_stream(child.stdout)
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                if not offer(batch):
                    return
            outcome = pickle.load(child.stdout)
            if outcome is not None:
                offer(outcome)
        except (EOFError, OSError, pa.ArrowException, pickle.UnpicklingError):
            if stop.is_set():
                return
            code = child.wait()
            offer(ExtractError(f"{extract.table}: read {number + 1} of {len(reads)} (rowid range) ended without "
                               f"a result: its process exited with code {code}"))
        offer(_DONE)

    children: list[subprocess.Popen] = []
    pumps: list[threading.Thread] = []
    try:
        for number, read in enumerate(reads):
            child = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=_child_environment())
            children.append(child)
            child.stdin.write(pickle.dumps((connection_string, extract, quote, read, batch_rows)))
            child.stdin.close()
            thread = threading.Thread(target=pump, args=(number, child), daemon=True,
                                      name=f"read-{extract.table}-{number}")
            thread.start()
            pumps.append(thread)
        finished = 0
        while finished < len(reads):
            item = handoff.get()
            if item is _DONE:
                finished += 1
                continue
            if isinstance(item, BaseException):
                raise item
            first = stats.rows + 1
            stats.rows += item.num_rows
            stats.batches += 1
            yield item.set_column(0, ROW_ID, pa.array(np.arange(first, first + item.num_rows, dtype=np.int64)))
    finally:
        stop.set()
        for child in children:
            if child.poll() is None:
                child.terminate()
        for thread in pumps:
            thread.join()
        for child in children:
            child.wait()
            child.stdout.close()


def read_all(
    connection_string: str, extract: Extract, quote: str, reads: Sequence[Read], *,
    stats: ExtractStats, streams: int = 1,
) -> Iterator[pa.RecordBatch]:
    """Every read of one extract, one after another; the first (the big one) split when it pays."""
    for i, read in enumerate(reads):
        pieces = split_read(connection_string, extract, quote, read, streams) if i == 0 else [read]
        if len(pieces) > 1:
            yield from read_at_once(connection_string, extract, quote, pieces, stats=stats)
        else:
            yield from read_batches(connection_string, extract, quote, stats=stats, where=read[0],
                                    parameters=read[1])


if __name__ == "__main__":
    _child_main()
