"""How a read of Caselle is written and sent: the ANSI behaviour every engine shares.

The sync reads one declared SELECT per extract over ODBC (arrow-odbc, docs/adr/0003), written in
plain ANSI SQL so that one text serves SQL Server, PostgreSQL, MariaDB and SQLite. What really
differs between engines is small, and each engine's module overrides only that: the identifier
quote, how a bound value is written, the reader's buffers, whether the SELECT checks values
itself, and how a big read is split. Everything here is pure: no connection is opened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, ClassVar

import pyodbc

from portal_sync.datasets import Extract

# (ANSI WHERE with ``?`` markers, its parameters): one read of an extract. The parameters are
# text (arrow-odbc binds text); each dialect's ``timestamp_param``/``date_param`` writes them.
Read = tuple[str | None, list[Any] | None]

MAX_TEXT_BYTES = 4008  # transfer buffer cap for columns the driver reports as unbounded

Connect = Callable[[], pyodbc.Connection]  # opens a new connection to the source being read

# ODBC SQL data types (SQLColumns DATA_TYPE) -> the type family the schema check compares.
_FAMILIES: dict[int, str] = {
    4: "int", -5: "bigint", 5: "smallint", -6: "tinyint",
    1: "text", 12: "text", -8: "text", -9: "text",  # (W)CHAR, (W)VARCHAR: bounded text
    -1: "long text", -10: "long text",  # (W)LONGVARCHAR: text without a length
    2: "decimal", 3: "decimal", 6: "float", 7: "float", 8: "float",
    9: "date", 91: "date", 11: "datetime", 93: "datetime",
    -2: "binary", -3: "binary", -4: "binary", -7: "bit",
}
# The family each declared kind must have in the source (datasets.SourceColumn.kind).
KIND_FAMILY: dict[str, str] = {
    "int": "int", "bigint": "bigint", "smallint": "smallint", "text": "text", "char": "text",
    "money": "decimal", "date": "date", "datetime": "datetime",
}


@dataclass(frozen=True)
class CatalogType:
    """A source column's type as the schema check compares it: family, length (text), precision and scale
    (decimal), and the type as the driver named it (for messages)."""

    family: str
    shown: str
    length: int | None = None
    precision: int | None = None
    scale: int | None = None


@dataclass(frozen=True)
class Dialect:
    """An engine as the sync reads it; this base is the generic ANSI behaviour.

    ``name`` is the driver's ODBC ``SQL_DBMS_NAME`` and ``quote`` its identifier quote
    (``SQL_IDENTIFIER_QUOTE_CHAR``); both are what ``source.dialect_of`` found on the connection.
    """

    name: str = ""
    quote: str = '"'

    # The SELECT computes the UNREADABLE column itself (the engine can tell which stored values its
    # driver would not hand over exactly); otherwise the reader checks the batches it receives.
    checks_values: ClassVar[bool] = False
    # What one part of a split read is called in messages.
    piece: ClassVar[str] = "piece"
    # How a window bound is written (strftime): ODBC timestamp text.
    timestamp_format: ClassVar[str] = "%Y-%m-%d %H:%M:%S"

    def quote_ident(self, name: str) -> str:
        if self.quote in name:
            raise ValueError(f"identifier {name!r} contains the quote character")
        return f"{self.quote}{name}{self.quote}"

    def timestamp_param(self, naive_local: datetime) -> object:
        """A window bound (naive local time in whole seconds) as text in ``timestamp_format``.

        A bound with a zone or a fraction is refused: rounding is the window's job (a start
        floored, an end ceiled), and a fraction dropped here would narrow the window.
        """
        if naive_local.tzinfo is not None or naive_local.microsecond:
            raise ValueError(f"a window bound must be naive local time in whole seconds, not {naive_local!r}")
        return naive_local.strftime(self.timestamp_format)

    def date_param(self, day: date) -> object:
        """A date bound as ``YYYY-MM-DD``."""
        if isinstance(day, datetime):
            raise TypeError(f"a date bound must be a date, not the date-time {day!r}")
        return day.isoformat()

    def select_list(self, extract: Extract) -> list[str]:
        """The SELECT's result columns: the declared columns, in order (plus UNREADABLE when ``checks_values``)."""
        return [self.quote_ident(c.name) for c in extract.columns]

    def select_sql(self, extract: Extract, where: str | None = None) -> str:
        """The ANSI SELECT of one extract; ``where`` is an extra condition with ``?`` markers."""
        sql = f"SELECT {', '.join(self.select_list(extract))} FROM {self.quote_ident(extract.table)}"
        conditions = [f"({extract.where.format(q=self.quote)})"] if extract.where else []
        if where:
            conditions.append(f"({where})")
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        return sql

    def statement(self, read: Read) -> Read:
        """The read's condition and parameters as they are sent (bound, as written)."""
        return read

    def reader_options(self) -> dict[str, Any]:
        """arrow-odbc options for this engine's reads (buffer sizes)."""
        return {"max_text_size": MAX_TEXT_BYTES}

    def column_type(self, data_type: int, type_name: str, size: int | None, digits: int | None) -> CatalogType:
        """A column as the ODBC catalog (``SQLColumns``) reports it, in the terms the schema check compares.

        Typed engines report the SQL data type, a text column's length in characters and a decimal's
        precision and scale; that is taken as it is.
        """
        family = _FAMILIES.get(int(data_type), f"ODBC type {data_type}")
        if family == "text":
            return CatalogType(family, f"{type_name}({size})", length=size)
        if family == "decimal":
            return CatalogType(family, f"{type_name}({size},{digits})", precision=size, scale=digits)
        return CatalogType(family, type_name or family)

    def schema_preference(self) -> tuple[str, ...]:
        """Schemas to prefer when the catalog lists a table in several (the one an unqualified name reaches)."""
        return ()

    def split(self, connect: Connect, extract: Extract, read: Read, streams: int) -> list[Read]:
        """The read as pieces to read side by side in child processes (docs/adr/0008), or itself.

        An engine that does its work in its own server gains nothing from several client
        processes: by default a read is not split.
        """
        return [read]
