"""SQLite: value checks in the SELECT, parameters written as literals, big reads split by rowid.

SQLite, a demo and test engine here, stores anything whatever a column declares, and its ODBC
driver silently converts what it cannot read (``'12abc'`` in an INT column reads as 12, an
impossible date as NULL, a time-zone suffix is dropped, text stops at a NUL). So the SELECT asks
SQLite itself which stored values are not what their declared type says, into the UNREADABLE
column (docs/adr/0003). Text longer than the transfer buffer would fail the whole read (buffers
are sized from the driver's column size, four bytes a character), and SQLite alone stores text
beyond its declared length: the read hands over at most ``TEXT_CHARS`` characters of a value,
more than any declared length, so the ``text_length`` rule refuses such a row instead.

The driver holds the whole result of a statement with bound parameters before its first row, so
a read's parameters are written into the statement as literals (``literal_sql``). SQLite and the
checks run inside the reading process, so a big read is cut into rowid ranges that child
processes read side by side (docs/adr/0008).
"""

from __future__ import annotations

import re
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pyodbc

from portal_sync.datasets import Extract, SourceColumn
from portal_sync.names import UNREADABLE
from portal_sync.source.dialect import CatalogType, Connect, Dialect, Read
from portal_sync.source.errors import SourceUnreachable

# The checked SELECT's text, money and check columns are computed, which the driver reports as
# 255 characters: at most that much of a value is handed over, in buffers of 4 bytes a character,
# bounded per batch by bytes rather than rows.
TEXT_CHARS = 255
BATCH_BYTES = 32 << 20
# A read of a table whose rowids span at least this many is split (a child process costs about a
# second to start; a city ledger's checked read takes minutes).
SPLIT_MIN_ROWS = 500_000

# A declared type as SQLite keeps it: a name of one or more words, then (length) or (precision, scale).
_DECLARED = re.compile(r"^\s*([A-Za-z][A-Za-z ]*?)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?\s*$")
_CHARACTER_TYPES = ("CHAR", "VARCHAR", "NCHAR", "NVARCHAR", "CHARACTER", "VARYING CHARACTER", "NATIVE CHARACTER",
                    "CHARACTER VARYING", "TEXT", "CLOB")
_INT_RANGE = {"int": (-(2**31), 2**31 - 1), "smallint": (-(2**15), 2**15 - 1)}
_TEXT_KINDS = ("text", "char", "money")


@dataclass(frozen=True)
class SQLite(Dialect):
    name: str = "SQLite"
    checks_values: ClassVar[bool] = True
    piece: ClassVar[str] = "rowid range"

    def select_list(self, extract: Extract) -> list[str]:
        return [*(self.column_sql(c) for c in extract.columns),
                f"{self.unreadable_sql(extract)} AS {self.quote_ident(UNREADABLE)}"]

    def column_sql(self, column: SourceColumn) -> str:
        """The select expression of one column: text clipped so that it always fits the buffer."""
        c = self.quote_ident(column.name)
        if column.kind not in _TEXT_KINDS:
            return c
        return (f"CASE typeof({c}) WHEN 'blob' THEN NULL WHEN 'text' THEN CASE WHEN length({c}) > {TEXT_CHARS} "
                f"THEN substr({c}, 1, {TEXT_CHARS}) ELSE {c} END ELSE {c} END AS {c}")

    def _bad(self, column: SourceColumn) -> str:
        """True (or NULL) when a non-NULL stored value would not read exactly.

        SQLite evaluates both sides of AND and OR in a result column; CASE is lazy. Hence CASE where
        a test is expensive and its guard usually false: ``instr(CAST(x AS BLOB), ...)`` of a money
        value stored as REAL first formats the number as text.
        """
        c = self.quote_ident(column.name)
        if column.kind in _INT_RANGE or column.kind == "bigint":
            lo, hi = _INT_RANGE.get(column.kind, (-(2**63), 2**63 - 1))
            return f"typeof({c}) <> 'integer' OR {c} NOT BETWEEN {lo} AND {hi}"
        if column.kind == "date":
            # date(x, '+0 days') normalises: '2024-02-30' becomes '2024-03-01', garbage becomes NULL
            return (f"NOT (typeof({c}) = 'text' AND length({c}) = 10 AND {c} >= '0001'"
                    f" AND date({c}, '+0 days') IS {c})")
        if column.kind == "datetime":
            # datetime() also applies a time-zone suffix and rolls hour 24 over: the text must equal
            # its normalised form, followed by nothing or by a fraction of a second
            return (f"NOT (typeof({c}) = 'text' AND {c} >= '0001'"
                    f" AND datetime({c}, '+0 seconds') IS replace(substr({c}, 1, 19), 'T', ' ')"
                    f" AND (length({c}) = 19 OR (length({c}) BETWEEN 21 AND 26 AND substr({c}, 20, 1) = '.'"
                    f" AND substr({c}, 21) NOT GLOB '*[^0-9]*')))")
        # text, char, money: the driver stops at a NUL; a blob is not text; longer text is clipped
        return (f"CASE typeof({c}) WHEN 'blob' THEN 1 WHEN 'text'"
                f" THEN instr(CAST({c} AS BLOB), X'00') > 0 OR length({c}) > {TEXT_CHARS} ELSE 0 END")

    def _problem(self, column: SourceColumn) -> str:
        """NULL, or '; <what is wrong with this value>' (the stored value, not the driver's reading)."""
        c = self.quote_ident(column.name)
        name = column.name.replace("'", "''")
        if column.kind in _TEXT_KINDS:  # say which of the text problems it is
            return (f"CASE WHEN typeof({c}) = 'blob' THEN '; {name} is binary, not text'"
                    f" WHEN typeof({c}) <> 'text' THEN NULL"
                    f" WHEN instr(CAST({c} AS BLOB), X'00') > 0 THEN '; {name} holds a NUL character'"
                    f" WHEN length({c}) > {TEXT_CHARS} THEN '; {name} is ' || length({c}) || ' characters long"
                    f" (its first {TEXT_CHARS} were read)' END")
        what = {"date": "is not a date (YYYY-MM-DD)",
                "datetime": "is not a local date-time (YYYY-MM-DD HH:MM:SS[.ffffff])"}.get(
            column.kind, f"is not an integer in the {column.kind.upper()} range")
        shown = f"replace(substr(quote({c}), 1, 60), char(0), '\\0')"
        return (f"CASE WHEN {c} IS NOT NULL AND coalesce({self._bad(column)}, 1)"
                f" THEN '; {name}=' || {shown} || ' {what}' END")

    def ok_sql(self, column: SourceColumn) -> str:
        """True when the column's value reads exactly (the cheap test before any message is built)."""
        c = self.quote_ident(column.name)
        return f"CASE WHEN {c} IS NULL THEN 1 ELSE NOT coalesce({self._bad(column)}, 1) END"

    def unreadable_sql(self, extract: Extract) -> str:
        """NULL for a row whose values all read exactly, else what is wrong with each.

        The cheap all-good test runs first, so that only the rare bad rows pay for building the
        message (docs/benchmarks/README.md).
        """
        parts = [self._problem(c) for c in extract.columns]
        all_ok = " AND ".join(self.ok_sql(c) for c in extract.columns)
        detail = "NULLIF(substr(" + " || ".join(f"coalesce({p}, '')" for p in parts) + f", 3, {TEXT_CHARS}), '')"
        return f"CASE WHEN {all_ok} THEN NULL ELSE {detail} END"

    def statement(self, read: Read) -> Read:
        """Parameters written into the statement as literals, so that the driver streams the result."""
        where, parameters = read
        if not parameters:
            return read
        return literal_sql(where or "", parameters), None

    def column_type(self, data_type: int, type_name: str, size: int | None, digits: int | None) -> CatalogType:
        """The declared type as written in the table's CREATE statement, which is all SQLite keeps.

        The SQLite3 driver reports ``DECIMAL(12,2)`` as VARCHAR with the scale as its size, and ``TEXT``
        without a length: decimal and character types are read from the type's name and arguments.
        Other types (INT, BIGINT, REAL, DATE, DATETIME, ...) the driver maps by name, as wanted.
        """
        declared = _DECLARED.match(type_name or "")
        if declared is None or not type_name.strip():
            return CatalogType("no declared type" if not (type_name or "").strip() else type_name, type_name or "")
        name = " ".join(declared.group(1).upper().split())
        first, second = (int(g) if g is not None else None for g in declared.group(2, 3))
        if name in ("DECIMAL", "NUMERIC") and first is not None:
            return CatalogType("decimal", type_name, precision=first, scale=second or 0)
        if name in _CHARACTER_TYPES:
            return CatalogType("text" if first is not None else "long text", type_name, length=first)
        return super().column_type(data_type, type_name, size, digits)

    def reader_options(self) -> dict[str, Any]:
        return {"max_text_size": 4 * TEXT_CHARS, "max_bytes_per_batch": BATCH_BYTES}

    def split(self, connect: Connect, extract: Extract, read: Read, streams: int,
              min_rows: int | None = None) -> list[Read]:
        """The read as ``streams`` reads of consecutive rowid ranges of a big table, else itself.

        Rowid ranges partition the rows of a rowid table exactly once, whatever a column holds (NULL
        or text in a key column included), and each range is a seek, not a scan. The first range has
        no lower bound and the last no upper one, so that rows added meanwhile fall in one of them.
        """
        if streams < 2:
            return [read]
        with closing(connect()) as conn:
            try:
                low, high = conn.execute(
                    f"SELECT min(rowid), max(rowid) FROM {self.quote_ident(extract.table)}").fetchone()
            except pyodbc.Error:  # a WITHOUT ROWID table: read it whole
                return [read]
        if low is None:
            return [read]
        low, high = int(low), int(high)  # the driver hands over an expression's value as text
        if high - low + 1 < (SPLIT_MIN_ROWS if min_rows is None else min_rows):
            return [read]
        where, parameters = read
        step = -(-(high - low + 1) // streams)
        bounds = [low + i * step for i in range(1, streams)]
        pieces: list[Read] = []
        for i in range(streams):
            # Integer literals, not ? markers (see ``statement``); integers, not text, so that rowid
            # compares as a number.
            conditions = []
            if i > 0:
                conditions.append(f"rowid >= {int(bounds[i - 1])}")
            if i < streams - 1:
                conditions.append(f"rowid < {int(bounds[i])}")
            condition = " AND ".join(conditions)
            pieces.append((f"({where}) AND {condition}" if where else condition, parameters))
        return pieces


def connection_attributes(odbc: str) -> dict[str, str]:
    """The ``key=value`` pairs of an ODBC connection string, keys in upper case, braces around a value removed."""
    found: dict[str, str] = {}
    for key, braced, plain in re.findall(r"\s*([^=;]+?)\s*=\s*(?:\{((?:[^}]|\}\})*)\}|([^;]*))\s*(?:;|$)", odbc):
        found[key.upper()] = braced.replace("}}", "}") if braced else plain.strip()
    return found


def check_database_file(odbc: str) -> None:
    """Refuse a SQLite source whose database file does not exist, before the driver creates an empty one.

    The SQLite3 ODBC driver opens a missing file by creating it: a mistyped path would then read as
    a Caselle without tables, and leave an empty file behind. Strings for other drivers (and DSNs,
    whose file is configured elsewhere) pass unchecked.
    """
    attributes = connection_attributes(odbc)
    if "sqlite" not in attributes.get("DRIVER", "").lower():
        return
    database = attributes.get("DATABASE", "")
    if database.startswith("file:"):  # a URI filename: the path is before any query string
        database = database[5:].split("?", 1)[0]
    if database in ("", ":memory:"):
        raise SourceUnreachable("the SQLite source's connection string names no database file (Database=...)")
    if not Path(database).is_file():
        raise SourceUnreachable(f"the SQLite source's database file {database} does not exist "
                                "(check Database= in the connection string)")


def literal_sql(sql: str, parameters: list[Any]) -> str:
    """``sql`` with each ``?`` marker replaced by its parameter as an SQLite string literal.

    The SQLite ODBC driver holds the whole result of a statement with bound parameters in memory
    before the first row, and that grows with the range read; the same statement with literals
    streams (docs/adr/0008). A bound text value and a text literal both have no affinity in SQLite,
    so every comparison means the same. The parameters are the sync's own (window bounds, dates,
    quarantined keys); a literal is closed only by a quote, which is doubled, SQLite's one escape,
    so any text stays one literal. Markers inside quoted text or identifiers are left alone.
    """
    closing_quote = {"'": "'", '"': '"', "`": "`", "[": "]"}
    values = iter(parameters)
    out: list[str] = []
    open_quote: str | None = None
    for ch in sql:
        if open_quote is not None:
            if ch == open_quote:
                open_quote = None  # a doubled quote closes and reopens: still inside
        elif ch in closing_quote:
            open_quote = closing_quote[ch]
        elif ch == "?":
            value = next(values, None)
            if not isinstance(value, str) or "\x00" in value:
                raise ValueError(f"a SQLite read's parameter {value!r} is not text without NUL (or is missing)")
            out.append("'" + value.replace("'", "''") + "'")
            continue
        out.append(ch)
    if open_quote is not None or next(values, None) is not None:
        raise ValueError("a SQLite read's markers and parameters do not match")
    return "".join(out)
