"""Pieces of one read, each read by its own child process at once, their batches gathered here.

Why processes: a read whose work runs in the reading process (an engine inside the client, with
its value checks) does not get faster in threads of one process: two such reads in threads were
measured at twice the CPU each and no faster together than one alone (contention inside the driver
stack), while two processes each ran at full speed (docs/adr/0008). Which reads are split, and
into what, is the source dialect's decision; this module only runs the pieces.

A piece is a picklable callable (a module-level function, or a ``functools.partial`` of one) that
yields Arrow batches whose first column numbers the rows. A child process runs it and sends the
batches back over a pipe; the caller numbers the rows again in arrival order and stages them as
it does for a single read.
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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa

from portal_sync.source import ExtractError

Piece = Callable[[], Iterator[pa.RecordBatch]]


class Counts(Protocol):
    rows: int
    batches: int


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
    """In the child: the piece and its batches' schema pickled on stdin; on stdout an Arrow IPC
    stream of its batches, then the pickled outcome (None, or the exception to raise in the parent)."""
    _die_with_parent()
    # The data pipe is a private descriptor; anything a library or driver prints goes to stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    piece, schema = pickle.load(sys.stdin.buffer)
    outcome: BaseException | None = None
    try:
        with pa.ipc.new_stream(out, schema) as writer:
            try:
                for batch in piece():
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
    pieces: Sequence[Piece], schema: pa.Schema, *, stats: Counts, what: str, piece: str = "piece",
) -> Iterator[pa.RecordBatch]:
    """The pieces in child processes at once; their batches as they arrive, rows numbered in that order.

    ``schema`` is the pieces' batches' schema; ``what`` (the table) and ``piece`` (what a piece is)
    name a piece in errors. Children are plain ``python -m`` processes (not multiprocessing: that
    re-imports the caller's main module, which a script, a DAG runner or a test runner may not
    allow). At most one batch per piece waits here beside what the pipes hold. A failed or killed
    piece ends the others (their processes are terminated) and its error is raised here.
    """
    handoff: queue.Queue = queue.Queue(maxsize=len(pieces))
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
            offer(ExtractError(f"{what}: read {number + 1} of {len(pieces)} ({piece}) ended without "
                               f"a result: its process exited with code {code}"))
        offer(_DONE)

    children: list[subprocess.Popen] = []
    pumps: list[threading.Thread] = []
    try:
        for number, job in enumerate(pieces):
            child = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=_child_environment())
            children.append(child)
            child.stdin.write(pickle.dumps((job, schema)))
            child.stdin.close()
            thread = threading.Thread(target=pump, args=(number, child), daemon=True,
                                      name=f"read-{what}-{number}")
            thread.start()
            pumps.append(thread)
        finished = 0
        while finished < len(pieces):
            item = handoff.get()
            if item is _DONE:
                finished += 1
                continue
            if isinstance(item, BaseException):
                raise item
            first = stats.rows + 1
            stats.rows += item.num_rows
            stats.batches += 1
            ids = pa.array(np.arange(first, first + item.num_rows, dtype=np.int64))
            yield item.set_column(0, item.schema.field(0), ids)
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


if __name__ == "__main__":
    _child_main()
