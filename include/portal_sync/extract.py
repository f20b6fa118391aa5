"""Read declared Caselle columns over ODBC as a stream of Arrow batches.

arrow-odbc binds column buffers and fills a whole batch per ODBC round trip, which
measured 2.5-4x the rows/s of pyodbc ``fetchmany`` or ``pandas.read_sql`` here, with
memory bounded by the batch size. The Arrow schema is pinned from the declarations
rather than taken from the driver, because drivers disagree: SQLite's reports money
as double or text and timestamps without fractions (arrow-odbc would drop the
microseconds). Money is always fetched as the driver's decimal text, so no value
ever passes through a float on our side; validation checks it is exact.

A value the driver cannot hand over exactly is never staged as if it were exact: each
staged row carries ``_unreadable`` (NULL when every value read exactly), which the
``unreadable_value`` rule refuses. Typed engines can only produce one such value, text
holding a NUL character (PostgreSQL text cannot hold it); SQLite stores anything, and its
ODBC driver silently converts what it cannot read (``'12abc'`` in an INT column reads as
12, an impossible date as NULL, a time-zone suffix is dropped, text stops at a NUL), so
for SQLite sources only the read also asks SQLite itself which values are not what their
declared type says. Text longer than the transfer buffer would make arrow-odbc fail the
whole read (its buffers are sized from the driver's column size: four bytes per declared
character on SQLite); SQLite (the only engine that stores text beyond its declared length)
hands over at most ``SQLITE_TEXT`` characters, more than any declared length, so the
``text_length`` rule refuses such a row instead of the read failing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyodbc

from portal_sync.datasets import Extract, SourceColumn

ROW_ID = "_row_id"
UNREADABLE = "_unreadable"  # why a value of the row could not be read exactly; NULL when all were
BATCH_ROWS = 50_000
MAX_TEXT_BYTES = 4008  # transfer buffer cap for columns the driver reports as unbounded
# A SQLite read selects text, money and the checks as computed columns, which the SQLite driver
# reports as 255 characters: the read hands over at most that much of a value (more than any
# declared length, so an over-long value is still seen as over-long), in buffers of 4 bytes a
# character, bounded per batch by bytes rather than rows.
SQLITE_TEXT = 255
SQLITE_BATCH_BYTES = 32 << 20
NUL_SHOWN = "\u2400"  # a NUL character as staged (PostgreSQL text cannot hold NUL); the row is refused

_ARROW_TYPES: dict[str, pa.DataType] = {
    "int": pa.int32(),
    "bigint": pa.int64(),
    "smallint": pa.int16(),
    "text": pa.string(),
    "char": pa.string(),
    "money": pa.string(),
    "date": pa.date32(),
    "datetime": pa.timestamp("us"),
}


def arrow_type(column: SourceColumn) -> pa.DataType:
    return _ARROW_TYPES[column.kind]


def arrow_schema(extract: Extract) -> pa.Schema:
    return pa.schema([pa.field(c.name, arrow_type(c), nullable=True) for c in extract.columns])


def staged_schema(extract: Extract) -> pa.Schema:
    """What ``read_batches`` yields and the staging table holds: row id, declared columns, unreadable."""
    return pa.schema([pa.field(ROW_ID, pa.int64()), *arrow_schema(extract), pa.field(UNREADABLE, pa.string())])


class ExtractError(RuntimeError):
    """The source handed over something the read cannot take (the message says what)."""


@lru_cache(maxsize=64)
def source_dbms(connection_string: str) -> str:
    """The DBMS behind a connection (ODBC ``SQL_DBMS_NAME``: ``SQLite``, ``PostgreSQL``, ``MariaDB``, ...)."""
    conn = pyodbc.connect(connection_string, autocommit=True, timeout=30)
    try:
        return str(conn.getinfo(pyodbc.SQL_DBMS_NAME) or "")
    finally:
        conn.close()


def identifier_quote(connection_string: str) -> str:
    """The driver's own identifier quote (``"`` on most, backtick on MariaDB)."""
    conn = pyodbc.connect(connection_string, autocommit=True, timeout=30)
    try:
        quote = conn.getinfo(pyodbc.SQL_IDENTIFIER_QUOTE_CHAR) or '"'
    finally:
        conn.close()
    return quote.strip() or '"'


def quote_ident(name: str, quote: str) -> str:
    if quote in name:
        raise ValueError(f"identifier {name!r} contains the quote character")
    return f"{quote}{name}{quote}"


def select_sql(extract: Extract, quote: str, where: str | None = None, *, sqlite_checks: bool = False) -> str:
    """ANSI SELECT that runs unchanged on SQL Server, SQLite, PostgreSQL and MariaDB.

    ``where`` is an extra condition built from declared identifiers with ``?`` markers.
    ``sqlite_checks`` (SQLite sources only) clips text to ``SQLITE_TEXT`` characters and adds
    the ``_unreadable`` column, computed by SQLite from the stored values.
    """
    if sqlite_checks:
        cols = ", ".join([*(_sqlite_read(c, quote) for c in extract.columns),
                          f"{_sqlite_unreadable(extract, quote)} AS {quote_ident(UNREADABLE, quote)}"])
    else:
        cols = ", ".join(quote_ident(c.name, quote) for c in extract.columns)
    sql = f"SELECT {cols} FROM {quote_ident(extract.table, quote)}"
    conditions = [f"({extract.where.format(q=quote)})"] if extract.where else []
    if where:
        conditions.append(f"({where})")
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    return sql


def sqlite_literal_sql(sql: str, parameters: list[str]) -> str:
    """``sql`` with each ``?`` marker replaced by its parameter as an SQLite string literal.

    Why: the SQLite ODBC driver holds the whole result of a statement with bound parameters in
    memory before the first row: a city ledger's lines of the last 1,500 days read in 2,055 MiB
    bound, 192 MiB as literals (docs/benchmarks/README.md, round 5), and the bound figure grows
    with the range. The same statement with literals streams. A bound text value and a text literal both have
    no affinity in SQLite, so every comparison means the same. The parameters are the sync's
    own (window bounds, dates, quarantined keys); a literal is closed only by a quote, which is
    doubled, SQLite's one escape, so any text stays one literal. Markers inside quoted text or
    identifiers are left alone.
    """
    closing = {"'": "'", '"': '"', "`": "`", "[": "]"}
    values = iter(parameters)
    out: list[str] = []
    open_quote: str | None = None
    for ch in sql:
        if open_quote is not None:
            if ch == open_quote:
                open_quote = None  # a doubled quote closes and reopens: still inside
        elif ch in closing:
            open_quote = closing[ch]
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


_INT_RANGE = {"int": (-(2**31), 2**31 - 1), "smallint": (-(2**15), 2**15 - 1)}


def _sqlite_read(column: SourceColumn, quote: str, clip: int = SQLITE_TEXT) -> str:
    """The select expression of one column on SQLite: text clipped so it always fits the buffer."""
    c = quote_ident(column.name, quote)
    if column.kind not in ("text", "char", "money"):
        return c
    return (f"CASE typeof({c}) WHEN 'blob' THEN NULL WHEN 'text' THEN CASE WHEN length({c}) > {clip} "
            f"THEN substr({c}, 1, {clip}) ELSE {c} END ELSE {c} END AS {c}")


def _sqlite_bad(column: SourceColumn, quote: str, clip: int = SQLITE_TEXT) -> str:
    """SQLite SQL, true (or NULL) when a non-NULL stored value would not read exactly.

    SQLite evaluates both sides of AND and OR in a result column; CASE is lazy. Hence CASE where a
    test is expensive and its guard usually false: ``instr(CAST(x AS BLOB), ...)`` of a money value
    stored as REAL first formats the number as text (5x the cost of the whole check, town ledger).
    """
    c = quote_ident(column.name, quote)
    if column.kind in _INT_RANGE or column.kind == "bigint":
        lo, hi = _INT_RANGE.get(column.kind, (-(2**63), 2**63 - 1))
        return f"typeof({c}) <> 'integer' OR {c} NOT BETWEEN {lo} AND {hi}"
    if column.kind == "date":
        # date(x, '+0 days') normalises: '2024-02-30' becomes '2024-03-01', garbage becomes NULL
        return f"NOT (typeof({c}) = 'text' AND length({c}) = 10 AND {c} >= '0001' AND date({c}, '+0 days') IS {c})"
    if column.kind == "datetime":
        # datetime() also applies a time-zone suffix and rolls hour 24 over: the text must equal
        # its normalised form, followed by nothing or by a fraction of a second
        return (f"NOT (typeof({c}) = 'text' AND {c} >= '0001'"
                f" AND datetime({c}, '+0 seconds') IS replace(substr({c}, 1, 19), 'T', ' ')"
                f" AND (length({c}) = 19 OR (length({c}) BETWEEN 21 AND 26 AND substr({c}, 20, 1) = '.'"
                f" AND substr({c}, 21) NOT GLOB '*[^0-9]*')))")
    # text, char, money: the driver stops at a NUL; a blob is not text; longer text is clipped
    return (f"CASE typeof({c}) WHEN 'blob' THEN 1 WHEN 'text'"
            f" THEN instr(CAST({c} AS BLOB), X'00') > 0 OR length({c}) > {clip} ELSE 0 END")


def _sqlite_problem(column: SourceColumn, quote: str, clip: int = SQLITE_TEXT) -> str:
    """SQLite SQL: NULL, or '; <what is wrong with this value>' (the stored value, not the driver's reading)."""
    c = quote_ident(column.name, quote)
    name = column.name.replace("'", "''")
    if column.kind in ("text", "char", "money"):  # say which of the text problems it is
        return (f"CASE WHEN typeof({c}) = 'blob' THEN '; {name} is binary, not text'"
                f" WHEN typeof({c}) <> 'text' THEN NULL"
                f" WHEN instr(CAST({c} AS BLOB), X'00') > 0 THEN '; {name} holds a NUL character'"
                f" WHEN length({c}) > {clip} THEN '; {name} is ' || length({c}) || ' characters long"
                f" (its first {clip} were read)' END")
    what = {"date": "is not a date (YYYY-MM-DD)",
            "datetime": "is not a local date-time (YYYY-MM-DD HH:MM:SS[.ffffff])"}.get(
        column.kind, f"is not an integer in the {column.kind.upper()} range")
    shown = f"replace(substr(quote({c}), 1, 60), char(0), '\\0')"
    return (f"CASE WHEN {c} IS NOT NULL AND coalesce({_sqlite_bad(column, quote, clip)}, 1)"
            f" THEN '; {name}=' || {shown} || ' {what}' END")


def _sqlite_ok(column: SourceColumn, quote: str, clip: int = SQLITE_TEXT) -> str:
    """SQLite SQL, true when the value reads exactly (the cheap test before any message is built)."""
    c = quote_ident(column.name, quote)
    return f"CASE WHEN {c} IS NULL THEN 1 ELSE NOT coalesce({_sqlite_bad(column, quote, clip)}, 1) END"


def _sqlite_unreadable(extract: Extract, quote: str) -> str:
    """NULL for a row whose values all read exactly, else what is wrong with each.

    The cheap all-good test runs first, so only the (rare) bad rows pay for building the message:
    4-15 % less time for the SQLite read of a town ledger (docs/benchmarks/README.md).
    """
    parts = [_sqlite_problem(c, quote) for c in extract.columns]
    all_ok = " AND ".join(_sqlite_ok(c, quote) for c in extract.columns)
    detail = "NULLIF(substr(" + " || ".join(f"coalesce({p}, '')" for p in parts) + f", 3, {SQLITE_TEXT}), '')"
    return f"CASE WHEN {all_ok} THEN NULL ELSE {detail} END"


def _mark_nul(extract: Extract, columns: list[pa.Array], flags: pa.Array) -> tuple[list[pa.Array], pa.Array]:
    """Text holding NUL (typed engines hand it over; PostgreSQL cannot stage it): shown as U+2400, flagged."""
    out = []
    for column, array in zip(extract.columns, columns, strict=True):
        if column.kind in ("text", "char", "money") and array.null_count < len(array):
            has_nul = pc.fill_null(pc.match_substring(array, "\x00"), False)
            if pc.any(has_nul).as_py():
                note = pc.if_else(has_nul, pa.scalar(f"; {column.name} holds a NUL character"), pa.scalar(""))
                joined = pc.binary_join_element_wise(pc.fill_null(flags, ""), note, "")
                joined = pc.if_else(pc.starts_with(joined, "; "), pc.utf8_slice_codeunits(joined, 2), joined)
                flags = pc.if_else(pc.equal(joined, ""), pa.scalar(None, pa.string()), joined)
                array = pc.replace_substring(array, "\x00", NUL_SHOWN)
        out.append(array)
    return out, flags


@dataclass
class ExtractStats:
    rows: int = 0
    batches: int = 0


def read_batches(
    connection_string: str,
    extract: Extract,
    quote: str,
    *,
    batch_rows: int = BATCH_ROWS,
    stats: ExtractStats | None = None,
    where: str | None = None,
    parameters: list[str] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream the extract as Arrow batches with a ``_row_id`` column numbering the rows from 1.

    The row id is the staging surrogate key: it identifies a refused row even when its
    business key is NULL or duplicated.
    """
    from arrow_odbc import read_arrow_batches_from_odbc

    sqlite = source_dbms(connection_string) == "SQLite"
    schema = arrow_schema(extract)
    read_schema = pa.schema([*schema, pa.field(UNREADABLE, pa.string())]) if sqlite else schema
    staged = staged_schema(extract)
    declared = len(extract.columns)
    try:
        if sqlite and parameters:  # so that the driver streams the result (sqlite_literal_sql)
            where, parameters = sqlite_literal_sql(where or "", parameters), None
        reader = read_arrow_batches_from_odbc(
            query=select_sql(extract, quote, where, sqlite_checks=sqlite),
            connection_string=connection_string,
            parameters=parameters,
            batch_size=batch_rows,
            max_text_size=4 * SQLITE_TEXT if sqlite else MAX_TEXT_BYTES,
            **({"max_bytes_per_batch": SQLITE_BATCH_BYTES} if sqlite else {}),
            map_schema=lambda _driver_schema: read_schema,
        )
        stats = stats if stats is not None else ExtractStats()
        for batch in reader:
            ids = pa.array(np.arange(stats.rows + 1, stats.rows + 1 + batch.num_rows, dtype=np.int64))
            columns = [batch.column(i) for i in range(declared)]
            if sqlite:  # its driver stops text at a NUL; SQLite's own check has already flagged the value
                flags = batch.column(declared)
            else:
                columns, flags = _mark_nul(extract, columns, pa.nulls(batch.num_rows, pa.string()))
            stats.rows += batch.num_rows
            stats.batches += 1
            yield pa.RecordBatch.from_arrays([ids, *columns, flags], schema=staged)
    except Exception as exc:  # arrow-odbc raises its own Error type; name what it means for this read
        if "too large to be written into the allocated buffer" in str(exc):
            raise ExtractError(
                f"{extract.table}: a text value is longer than the {MAX_TEXT_BYTES}-byte transfer buffer "
                f"(the contract's columns hold at most 120 characters): {exc}") from exc
        if "invalid UTF-8" in str(exc):  # arrow-odbc's message shows the value: keep it out of logs
            raise ExtractError(f"{extract.table}: the source holds text that is not valid UTF-8 "
                               f"(fix it in the source; the value is not shown here)") from None
        raise
