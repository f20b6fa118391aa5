"""A big SQLite read split into rowid ranges, each read by a child process: every row staged exactly
once, a failed or killed range stops the others and surfaces in the caller, and a whole sync
publishes the same portal."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
from collections import Counter
from functools import partial

import psycopg
import pyarrow as pa
import pytest
from synctest import assert_in_sync, community, sync
from test_parallel_run import portal_rows

from portal_sync.datasets import DATASET_NAMES, DATASETS
from portal_sync.extract import ROW_ID, ExtractError, ExtractStats, read_batches, read_extract, read_pieces
from portal_sync.source import connect, dialect_of
from portal_sync.source import sqlite as sqlite_module
from portal_sync.source.sqlite import SQLite

pytestmark = pytest.mark.integration

LEDGER = DATASETS["charges"].primary


def rows_of(batches) -> tuple[list[int], Counter]:
    """Row ids in arrival order, and the rows themselves (without the id) as a multiset."""
    table = pa.Table.from_batches(list(batches))
    ids = table.column(ROW_ID).to_pylist()
    rest = table.drop_columns([ROW_ID]).to_pylist()
    return ids, Counter(tuple(sorted(row.items(), key=lambda kv: kv[0])) for row in rest)


def child_processes() -> list[int]:
    """Pids of this process's children not yet reaped (any thread's).

    Read from every process's parent pid, not from /proc/self/task/*/children: a thread that
    ends between the listing and the read takes its file with it (a clean-clone CI run failed so).
    """
    me = os.getpid()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")"
        ppid = stat.rsplit(")", 1)[1].split()[1]
        if int(ppid) == me:  # a zombie counts: an unreaped child is a leak too
            pids.append(int(entry))
    return pids


def split_read(odbc: str, read, streams: int, min_rows: int | None = None):
    """The pieces the source's dialect cuts the ledger's read into (a SQLite source: rowid ranges)."""
    dialect = dialect_of(odbc)
    assert isinstance(dialect, SQLite)
    return dialect.split(partial(connect, odbc), LEDGER, read, streams, min_rows=min_rows)


def plant(path: str, statements: list[tuple[str, tuple]]) -> None:
    with sqlite3.connect(path) as db:
        for statement, args in statements:
            db.execute(statement, args)


def test_split_read_stages_every_row_exactly_once_whatever_the_key_column_holds(make_source, monkeypatch):
    sim = make_source("sqlite", seed=5)
    odbc = sim.spec.odbc_connection_string()
    path = sim.spec.path
    plant(path, [
        # rowid gaps, a key stored as text (SQLite keeps it, the checks flag it), a refused value
        ('DELETE FROM "UB_Transaction" WHERE rowid % 7 = 3', ()),
        ('UPDATE "UB_Transaction" SET "TransactionID" = \'abc\''
         ' WHERE rowid = (SELECT max(rowid) FROM "UB_Transaction" WHERE "TransactionType" <> \'PMT\')', ()),
        ('UPDATE "UB_Transaction" SET "Description" = ?'
         ' WHERE rowid = (SELECT min(rowid) FROM "UB_Transaction" WHERE "TransactionType" <> \'PMT\')',
         ("x" * 500,)),
    ])
    with sqlite3.connect(path) as db:
        stored = db.execute('SELECT count(*) FROM "UB_Transaction" WHERE "TransactionType" <> \'PMT\'').fetchone()[0]
    assert stored > 300

    pieces = split_read(odbc, (None, None), streams=3, min_rows=1)
    assert len(pieces) == 3 and all("rowid" in where for where, _ in pieces)
    # the bounds are literals: the SQLite driver would hold a parameterised statement's whole result
    assert all("?" not in where and params is None for where, params in pieces)
    assert split_read(odbc, (None, None), streams=3) == [(None, None)]  # too small by default
    assert split_read(odbc, (None, None), streams=1, min_rows=1) == [(None, None)]

    whole_stats, split_stats = ExtractStats(), ExtractStats()
    whole_ids, whole = rows_of(read_extract(odbc, LEDGER, [(None, None)], stats=whole_stats))
    monkeypatch.setattr(sqlite_module, "SPLIT_MIN_ROWS", 1)
    split_ids, split = rows_of(read_extract(odbc, LEDGER, [(None, None)], stats=split_stats, streams=3))
    assert split == whole  # the same rows, each once
    assert sum(whole.values()) == stored
    assert sorted(split_ids) == list(range(1, stored + 1)) == whole_ids  # ids number the arrival order
    assert split_stats.rows == whole_stats.rows == stored and split_stats.batches >= 3
    flagged = [dict(row) for row in split for _ in range(split[row]) if dict(row)["_unreadable"] is not None]
    assert {("TransactionID" in f["_unreadable"], "Description" in f["_unreadable"]) for f in flagged} == {
        (True, False), (False, True)}

    # A window-style read with its own condition and parameters keeps them in every range.
    where = ('("TransactionType" = ?)', ["BILL"])
    pieces = split_read(odbc, where, streams=2, min_rows=1)
    assert [p[1][0] for p in pieces] == ["BILL", "BILL"] and all(p[0].startswith('(("TransactionType"') for p in pieces)
    _, bills = rows_of(read_pieces(odbc, LEDGER, pieces, stats=ExtractStats()))
    with sqlite3.connect(path) as db:
        assert sum(bills.values()) == db.execute(
            'SELECT count(*) FROM "UB_Transaction" WHERE "TransactionType" = \'BILL\'').fetchone()[0] > 0


def test_a_failed_range_stops_the_others_and_its_error_reaches_the_caller(make_source):
    sim = make_source("sqlite", seed=6)
    odbc = sim.spec.odbc_connection_string()
    # Text that is not UTF-8 makes arrow-odbc fail the read of the last range only.
    plant(sim.spec.path, [('UPDATE "UB_Transaction" SET "Description" = CAST(X\'FFFE41\' AS TEXT) WHERE rowid ='
                           ' (SELECT max(rowid) FROM "UB_Transaction" WHERE "TransactionType" <> \'PMT\')', ())])
    pieces = split_read(odbc, (None, None), streams=2, min_rows=1)
    before = {t.name for t in threading.enumerate()}
    stats = ExtractStats()
    with pytest.raises(ExtractError, match="not valid UTF-8"):
        for _ in read_pieces(odbc, LEDGER, pieces, stats=stats, batch_rows=10):
            pass
    assert stats.rows > 0  # the healthy range had handed over batches before the failure stopped it
    assert not [t.name for t in threading.enumerate() if t.name.startswith("read-") and t.name not in before]
    assert not child_processes()  # the healthy range's process was ended too


def test_a_read_process_that_dies_fails_the_read_with_its_exit_code(make_source):
    sim = make_source("sqlite", seed=7)
    odbc = sim.spec.odbc_connection_string()
    pieces = split_read(odbc, (None, None), streams=2, min_rows=1)
    batches = read_pieces(odbc, LEDGER, pieces, stats=ExtractStats(), batch_rows=5)
    next(batches)
    assert len(child_processes()) == 2
    os.kill(child_processes()[0], signal.SIGKILL)
    with pytest.raises(ExtractError, match=r"UB_Transaction: read \d of 2 \(rowid range\) ended without a result: "
                                           r"its process exited with code -9"):
        for _ in batches:
            pass
    assert not child_processes()


def test_a_sync_with_split_reads_publishes_the_same_portal_as_one_stream(make_source, portal, monkeypatch):
    sim = make_source("sqlite", seed=12)
    splits: list[int] = []
    real_split = SQLite.split

    def counted(*args, **kwargs):
        pieces = real_split(*args, **kwargs)
        splits.append(len(pieces))
        return pieces

    monkeypatch.setattr(sqlite_module, "SPLIT_MIN_ROWS", 1)
    monkeypatch.setattr(SQLite, "split", counted)
    sync(sim, portal, "split", comm=community(read_streams=3), use_gx=True)
    assert_in_sync(sim, portal)
    assert splits.count(3) >= len(DATASET_NAMES)  # every data set's first read was split
    split = portal_rows(portal)

    with psycopg.connect(portal, autocommit=True) as conn:
        conn.execute("TRUNCATE " + ", ".join(f"portal.{name}" for name in ("communities", *DATASET_NAMES))
                     + ", sync.watermarks, sync.quarantine CASCADE")
    splits.clear()
    sync(sim, portal, "whole", comm=community(read_streams=1), use_gx=True)
    assert set(splits) == {1}
    assert portal_rows(portal) == split


def test_a_sqlite_read_with_parameters_sends_literals_and_selects_what_the_bound_query_selects(make_source,
                                                                                                monkeypatch):
    """The driver would hold a parameterised statement's whole result (ADR 0008): the read inlines them."""
    import arrow_odbc

    sim = make_source("sqlite", seed=8)
    odbc = sim.spec.odbc_connection_string()
    sent = []
    real = arrow_odbc.read_arrow_batches_from_odbc

    def spy(**kwargs):
        sent.append((kwargs["query"], kwargs["parameters"]))
        return real(**kwargs)

    monkeypatch.setattr(arrow_odbc, "read_arrow_batches_from_odbc", spy)
    with sqlite3.connect(sim.spec.path) as db:
        dates = [d for (d,) in db.execute('SELECT DISTINCT "InputDate" FROM "UB_Transaction" ORDER BY 1')]
        low, high = dates[len(dates) // 3], dates[2 * len(dates) // 3]
        # a window's shape (plan.primary_reads), with a quote inside one value for good measure
        where = '("InputDate" >= ? AND "InputDate" < ?) OR "Description" = ?'
        params = [low, high, "O'Brien's refund"]
        expected = Counter(tid for (tid,) in db.execute(
            f'SELECT "TransactionID" FROM "UB_Transaction" WHERE "TransactionType" <> \'PMT\' AND ({where})',
            params))
        ledger = db.execute('SELECT count(*) FROM "UB_Transaction" WHERE "TransactionType" <> \'PMT\'').fetchone()[0]
    _, got = rows_of(read_batches(odbc, LEDGER, where=where, parameters=params))
    assert Counter(dict(row)["TransactionID"] for row in got.elements()) == expected
    assert 0 < sum(expected.values()) < ledger  # the condition selects some lines, not all
    (query, bound), = sent
    assert bound is None and "?" not in query and f"'{low}'" in query and "'O''Brien''s refund'" in query
