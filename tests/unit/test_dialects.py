"""Source dialects, without a database: which engine a DBMS name means, how each quotes and writes
bound values, and the SQL and parameters a SQL Server source gets for a window and a reconciliation."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pyodbc
import pytest

from portal_sync import source
from portal_sync.datasets import DATASETS, Dataset
from portal_sync.extract import Read, select_sql
from portal_sync.plan import DatasetPlan, primary_reads
from portal_sync.source import Dialect, dialect_named, dialect_of
from portal_sync.source.mariadb import MariaDB
from portal_sync.source.postgresql import PostgreSQL
from portal_sync.source.sqlite import SQLite
from portal_sync.source.sqlserver import SqlServer

CHARGES = DATASETS["charges"]
CHARGES_COLUMNS = ('"TransactionID", "CustomerID", "TransactionType", "ServiceCode", "Description", "Amount",'
                   ' "TransactionDate", "InputDate", "DueDate", "Period", "ReferenceNumber", "VoidsTransactionID"')


ZONE = ZoneInfo("America/Denver")  # UTC-7 in early March and early November


def _utc(local: datetime) -> datetime:
    return local.replace(tzinfo=ZONE).astimezone(UTC)


# The primary extract's reads as the pipeline builds them (plan.primary_reads), over a dialect.
def window_read(ds: Dataset, dialect: Dialect, start: datetime, end: datetime) -> Read:
    """The one read of a window whose local bounds are ``start`` .. ``end`` (naive Denver times)."""
    plan = DatasetPlan(ds.name, "window", _utc(start), _utc(end))
    [read] = primary_reads(ds, plan, ZONE, [], dialect)
    return read


def reconcile_read(ds: Dataset, dialect: Dialect, since: date) -> Read:
    plan = DatasetPlan(ds.name, "reconcile", _utc(datetime.combine(since, time(12))), _utc(datetime(2026, 12, 1)))
    [read] = primary_reads(ds, plan, ZONE, [], dialect)
    return read


@pytest.mark.parametrize(("name", "engine", "quote"), [
    ("Microsoft SQL Server", SqlServer, '"'),
    ("PostgreSQL", PostgreSQL, '"'),
    ("MariaDB", MariaDB, "`"),
    ("MySQL", MariaDB, "`"),
    ("SQLite", SQLite, '"'),
    ("Oracle", Dialect, '"'),  # an engine without a module of its own: the generic ANSI read
])
def test_a_dbms_name_picks_its_dialect_and_usual_quote(name, engine, quote):
    dialect = dialect_named(name)
    assert type(dialect) is engine and dialect.name == name and dialect.quote == quote
    assert dialect_named(name, "[").quote == "["  # the driver's own quote wins when it reports one


def test_only_sqlite_checks_values_inlines_parameters_and_splits():
    assert [type(d) for d in (SqlServer(), PostgreSQL(), MariaDB(), SQLite()) if d.checks_values] == [SQLite]
    read = ('"a" = ?', ["x"])
    for dialect in (SqlServer(), PostgreSQL(), MariaDB(), Dialect()):
        assert dialect.statement(read) == read
        assert dialect.split(_no_connection, CHARGES.primary, read, 4) == [read]
        assert dialect.reader_options() == {"max_text_size": 4008}
    assert SQLite().split(_no_connection, CHARGES.primary, read, 1) == [read]  # one stream: nothing to ask


def _no_connection() -> pyodbc.Connection:
    raise AssertionError("no connection is needed to decide this")


def test_quoting_per_engine():
    assert MariaDB().quote_ident("InputDate") == "`InputDate`"
    assert SqlServer().quote_ident("InputDate") == '"InputDate"'
    assert PostgreSQL().quote_ident("InputDate") == '"InputDate"'
    assert SQLite().quote_ident("InputDate") == '"InputDate"'
    assert select_sql(CHARGES.primary, MariaDB()).endswith("FROM `UB_Transaction` WHERE (`TransactionType` <> 'PMT')")
    with pytest.raises(ValueError, match="quote character"):
        MariaDB().quote_ident("Input`Date")


def test_default_bounds_are_the_space_form_that_sqlite_compares_lexically():
    for dialect in (Dialect(), PostgreSQL(), MariaDB(), SQLite()):
        assert dialect.timestamp_param(datetime(2026, 3, 5, 1, 0, 0)) == "2026-03-05 01:00:00"
        assert dialect.date_param(date(2026, 3, 5)) == "2026-03-05"


@pytest.mark.parametrize("bound", [datetime(2026, 3, 5, 1, 0, 0, 500_000),  # rounding is the window's job
                                   datetime.fromisoformat("2026-03-05T01:00:00+00:00")])  # local time, naive
def test_a_bound_that_is_not_naive_whole_seconds_is_refused(bound):
    for dialect in (Dialect(), SqlServer()):
        with pytest.raises(ValueError, match="whole seconds"):
            dialect.timestamp_param(bound)


def test_a_date_bound_must_be_a_date():
    with pytest.raises(TypeError):
        SqlServer().date_param(datetime(2026, 3, 5, 1, 0))


def test_sql_server_window_read_of_charges_sends_iso_8601_bounds_with_t():
    """'2026-03-05 01:00:00' would be read as 3 May under a British, French or German login."""
    dialect = SqlServer()
    where, parameters = window_read(CHARGES, dialect, datetime(2026, 3, 5, 1, 0, 0),
                                   datetime(2026, 3, 5, 2, 5, 0, 500_000))  # the end is ceiled
    assert select_sql(CHARGES.primary, dialect, where) == (
        f'SELECT {CHARGES_COLUMNS} FROM "UB_Transaction"'
        ' WHERE ("TransactionType" <> \'PMT\') AND ((("InputDate" >= ? AND "InputDate" < ?)))')
    assert parameters == ["2026-03-05T01:00:00", "2026-03-05T02:05:01"]
    assert dialect.statement((where, parameters)) == (where, parameters)  # bound, not inlined


def test_sql_server_window_over_two_signals_binds_each_pair_in_order():
    payments = DATASETS["payments"]
    dialect = SqlServer()
    where, parameters = window_read(payments, dialect, datetime(2026, 11, 1, 1, 0), datetime(2026, 11, 1, 3, 0))
    assert where == '(("InputDate" >= ? AND "InputDate" < ?) OR ("StatusDate" >= ? AND "StatusDate" < ?))'
    # 2026-11-01 is Denver's fall-back day: the local bounds widen by the hour the offsets differ
    # (docs/adr/0004), and each signal's pair carries them in order
    assert parameters == ["2026-11-01T00:00:00", "2026-11-01T04:00:00"] * 2


def test_sql_server_reconciliation_read_of_charges_sends_a_date():
    dialect = SqlServer()
    where, parameters = reconcile_read(CHARGES, dialect, date(2026, 3, 5))
    assert select_sql(CHARGES.primary, dialect, where) == (
        f'SELECT {CHARGES_COLUMNS} FROM "UB_Transaction"'
        ' WHERE ("TransactionType" <> \'PMT\') AND (("TransactionDate" >= ?))')
    assert parameters == ["2026-03-05"]


def test_sqlite_writes_a_reads_parameters_into_the_statement_as_literals():
    dialect = SQLite()
    where, parameters = window_read(CHARGES, dialect, datetime(2026, 3, 5, 1, 0, 0), datetime(2026, 3, 5, 2, 0, 0))
    assert dialect.statement((where, parameters)) == (
        "((\"InputDate\" >= '2026-03-05 01:00:00' AND \"InputDate\" < '2026-03-05 02:00:00'))", None)
    assert dialect.statement(('"Name" = ?', ["O'Brien"])) == ('"Name" = \'O\'\'Brien\'', None)
    assert dialect.statement((None, None)) == (None, None)
    statement = select_sql(CHARGES.primary, dialect)
    assert statement.startswith('SELECT "TransactionID", ')  # integers are selected as they are
    assert 'THEN substr("Description", 1, 255) ELSE "Description" END' in statement  # text clipped to the buffer
    assert 'AS "_unreadable" FROM "UB_Transaction" WHERE ("TransactionType" <> \'PMT\')' in statement


class _Connection:
    def __init__(self, answers: dict[int, str]) -> None:
        self.answers = answers

    def getinfo(self, what: int) -> str:
        return self.answers[what]

    def close(self) -> None:
        pass


def test_dialect_of_asks_each_source_once_per_process(monkeypatch):
    opened: list[str] = []

    def fake_connect(odbc: str, **_kwargs) -> _Connection:
        opened.append(odbc)
        return _Connection({pyodbc.SQL_DBMS_NAME: "MariaDB", pyodbc.SQL_IDENTIFIER_QUOTE_CHAR: "`"})

    monkeypatch.setattr(pyodbc, "connect", fake_connect)
    monkeypatch.setattr(source, "_dialects", {})
    found: list[Dialect] = []
    threads = [threading.Thread(target=lambda: found.append(dialect_of("DSN=one"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert found == [MariaDB()] * 8 and dialect_of("DSN=one").quote == "`"
    assert opened == ["DSN=one"]
    dialect_of("DSN=two")
    assert opened == ["DSN=one", "DSN=two"]
