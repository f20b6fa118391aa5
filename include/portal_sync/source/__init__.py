"""The one door to Caselle: connections, the engine's dialect, and the organization row.

Every ODBC connection the product opens to a source is opened by ``connect``. ``dialect_of`` asks
a source once per process which engine it is (ODBC ``SQL_DBMS_NAME``) and which identifier quote
its driver uses, and answers with that engine's ``Dialect`` (source/dialect.py and one small
module per engine); the generic read (``portal_sync.extract``) is driven by it and names no engine.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pyodbc

from portal_sync.datasets import ORGANIZATION
from portal_sync.source.dialect import Dialect
from portal_sync.source.errors import (
    ExtractError,
    SourceError,
    SourceMismatchError,
    SourceSchemaError,
    SourceUnreachable,
)
from portal_sync.source.mariadb import MariaDB
from portal_sync.source.postgresql import PostgreSQL
from portal_sync.source.sqlite import SQLite, check_database_file
from portal_sync.source.sqlserver import SqlServer

__all__ = ["Dialect", "ExtractError", "SourceError", "SourceMismatchError", "SourceOrganization",
           "SourceSchemaError", "SourceUnreachable", "check_columns", "connect", "describe", "dialect_named",
           "dialect_of", "read_organization", "verify_organization"]

# SQL_DBMS_NAME -> dialect; MySQL's drivers report "MySQL" for the same quoting and SQL.
_ENGINES: dict[str, type[Dialect]] = {
    **{engine.name: engine for engine in (SqlServer, PostgreSQL, MariaDB, SQLite)},
    "MySQL": MariaDB,
}


@dataclass(frozen=True)
class SourceOrganization:
    org_code: str
    org_name: str
    time_zone: str
    customer_number_mask: str


def describe(odbc: str) -> str:
    """The connection string as it may be shown in messages and logs: without its password."""
    kept = [part for part in odbc.split(";")
            if part.strip() and part.split("=", 1)[0].strip().lower() not in ("pwd", "password")]
    return ";".join(kept)


def connect(odbc: str) -> pyodbc.Connection:
    """A new connection to the source (autocommit: the sync only reads; 30 s login timeout).

    A SQLite file that does not exist is refused before the driver is asked: the SQLite ODBC driver
    would create an empty database there, and a mistyped path would read as a Caselle without
    tables. Any failure to connect is a ``SourceUnreachable`` naming the source (password left out).
    """
    check_database_file(odbc)
    try:
        return pyodbc.connect(odbc, autocommit=True, timeout=30)
    except pyodbc.Error as exc:
        raise SourceUnreachable(f"cannot connect to the source {describe(odbc)!r}: {exc}") from exc


def dialect_named(name: str, quote: str | None = None) -> Dialect:
    """The dialect of a DBMS name (the generic ANSI one for an engine without a module of its own).

    ``quote`` is the driver's identifier quote when known; without it, the engine's usual one.
    """
    engine = _ENGINES.get(name, Dialect)
    return engine(name=name, quote=quote) if quote else engine(name=name)


_dialects: dict[str, Dialect] = {}
_asking = threading.Lock()


def dialect_of(odbc: str) -> Dialect:
    """The dialect of the source behind a connection string: one connection per string per process."""
    with _asking:  # data sets are read in threads: one of them asks, the others wait for its answer
        known = _dialects.get(odbc)
        if known is None:
            conn = connect(odbc)
            try:
                name = str(conn.getinfo(pyodbc.SQL_DBMS_NAME) or "")
                quote = str(conn.getinfo(pyodbc.SQL_IDENTIFIER_QUOTE_CHAR) or "").strip()
            finally:
                conn.close()
            known = _dialects[odbc] = dialect_named(name, quote)
    return known


def verify_organization(odbc: str, expected_org: str, table: str) -> None:
    """Raise ``SourceMismatchError`` unless a new connection with ``odbc`` reaches ``expected_org``'s Caselle.

    ``table`` is the table being read, for the message: the data set it belongs to fails, not the run.
    """
    found = read_organization(odbc).org_code
    if found != expected_org:
        raise SourceMismatchError(
            f"{table}: the source reached by this read is the Caselle of {found!r}, not {expected_org!r} "
            f"(SM_Organization.OrgCode); refusing to read another community's data")


def read_organization(odbc: str) -> SourceOrganization:
    """The source's one SM_Organization row (which Caselle this is, its time zone and number mask)."""
    statement = dialect_of(odbc).select_sql(ORGANIZATION)
    conn = connect(odbc)
    try:
        rows = conn.cursor().execute(statement).fetchall()
    except pyodbc.Error as exc:  # no such table (an empty or foreign database), no such column
        raise SourceError(f"cannot read SM_Organization from the source {describe(odbc)!r}: {exc}") from exc
    finally:
        conn.close()
    if len(rows) != 1:
        raise SourceError(f"SM_Organization must hold exactly one row, found {len(rows)}")
    declared = rows[0][:len(ORGANIZATION.columns)]  # a dialect that checks values adds its own column
    code, name, zone, mask = (str(v).strip() if v is not None else "" for v in declared)
    return SourceOrganization(code, name, zone, mask)


from portal_sync.source.schema import check_columns  # noqa: E402 - the check uses connect and dialect_of above
