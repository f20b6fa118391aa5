"""Before a table is read: are the columns the sync declares still there, with the declared types?

A Caselle upgrade may drop, rename or retype a column. No engine makes that loud enough by itself:
SQLite reads a double-quoted name that matches no column as a string literal (a dropped ``Unit``
reads as the text ``'Unit'`` in every row), and on any engine money turned float or text, or a
text column narrowed or widened, reads without an error. So every read of an extract first asks
the ODBC catalog (``SQLColumns``) for its table's columns and compares each declared one
(``datasets.SourceColumn``):

- present (names compare case-insensitively: an engine that folds case either finds the column or
  fails the read loudly);
- of the declared kind's type family (INT, BIGINT and SMALLINT each exactly, since the staged Arrow
  types are pinned to them; bounded character text for text and char; exact decimal for money;
  DATE; a date-time);
- money with precision 12 and scale 2 exactly (the portal's ``numeric(12,2)``);
- text of exactly the declared length. Narrower is a change of what Caselle can hold; **wider is
  refused too**: the declared length is what the portal column holds, so a widened column would
  turn every longer value into a refused row, one run after another, instead of one clear error
  saying the contract (and the portal) must follow the upgrade first.

Columns Caselle adds are ignored, and so is nullability (NULLs are the rules' business). Columns
an extract's filter names (its ``where``, which may read other tables) must be present too.

How each engine's driver reports a type is the dialect's business (``Dialect.column_type``): the
SQLite driver, for one, reports ``DECIMAL(12,2)`` as VARCHAR. A check that passed is remembered per
connection string, table and declaration for the life of the process (as ``dialect_of`` remembers
the engine), so a run pays one catalog query per table; a failed check is asked again next time.
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from contextlib import closing

import pyodbc

from portal_sync.datasets import Extract, SourceColumn
from portal_sync.source.dialect import KIND_FAMILY, CatalogType, Dialect
from portal_sync.source.errors import SourceError, SourceSchemaError

__all__ = ["check_columns", "declared_type", "forget_checks", "type_problem"]

MONEY_PRECISION, MONEY_SCALE = 12, 2

_checked: set[tuple[str, str, tuple[SourceColumn, ...], str | None]] = set()
_checking = threading.Lock()


def declared_type(column: SourceColumn) -> str:
    """The column's type in the source contract's (SQL Server) terms."""
    if column.kind == "money":
        return f"DECIMAL({MONEY_PRECISION},{MONEY_SCALE})"
    if column.kind in ("text", "char"):
        name = "VARCHAR" if column.kind == "text" else "CHAR"
        return f"{name}({column.length})" if column.length else name
    return column.kind.upper()


def type_problem(column: SourceColumn, found: CatalogType) -> str | None:
    """What differs between a declared column and the source's, or None when the source's is what the sync reads."""
    wanted = KIND_FAMILY[column.kind]
    if found.family != wanted:
        return f"{column.name} is {found.shown} in the source, the sync reads it as {declared_type(column)}"
    if column.kind == "money" and (found.precision, found.scale) != (MONEY_PRECISION, MONEY_SCALE):
        return (f"{column.name} is {found.shown} in the source, the sync reads it as {declared_type(column)} "
                f"(precision {found.precision}, scale {found.scale}: money must be exactly 2 places in "
                f"numeric({MONEY_PRECISION},{MONEY_SCALE}))")
    if column.kind in ("text", "char") and column.length is not None and found.length != column.length:
        how = "narrowed" if found.length is not None and found.length < column.length else "widened"
        return (f"{column.name} is {found.shown} in the source, {how} from the declared {declared_type(column)} "
                "(the portal holds the declared length: the contract must change first)")
    return None


def _filter_columns(extract: Extract) -> dict[str, set[str]]:
    """Columns an extract's filter names, by table: ``SELECT {q}C{q} FROM {q}T{q}`` reads C of T; any other
    quoted name that is not a table is a column of the extract's own table."""
    if not extract.where:
        return {}
    needed: dict[str, set[str]] = defaultdict(set)
    pairs = re.findall(r"SELECT\s+\{q\}(\w+)\{q\}\s+FROM\s+\{q\}(\w+)\{q\}", extract.where, flags=re.IGNORECASE)
    for column, table in pairs:
        needed[table].add(column)
    tables = {table for _, table in pairs}
    inner = {column for column, _ in pairs}
    for name in re.findall(r"\{q\}(\w+)\{q\}", extract.where):
        if name not in tables and name not in inner:
            needed[extract.table].add(name)
    return needed


def _catalog(conn: pyodbc.Connection, dialect: Dialect, table: str) -> dict[str, CatalogType] | None:
    """The table's columns as the catalog reports them (upper-cased names), or None when it has no such table.

    The catalog may list the name in several databases or schemas (a MariaDB server lists every
    database's): the connection's own database is taken, then the dialect's preferred schema.
    """
    rows = [r for r in conn.cursor().columns(table=table) if str(r.table_name).lower() == table.lower()]
    if not rows:
        return None
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for r in rows:
        groups[(str(r.table_cat or ""), str(r.table_schem or ""))].append(r)
    if len(groups) > 1:
        try:
            current = str(conn.getinfo(pyodbc.SQL_DATABASE_NAME) or "")
        except pyodbc.Error:
            current = ""
        preferred = dialect.schema_preference()

        def rank(key: tuple[str, str]) -> tuple[bool, bool]:
            return (key[0] != current, key[1] not in preferred)

        rows = groups[min(groups, key=rank)]
    return {str(r.column_name).upper(): dialect.column_type(r.data_type, str(r.type_name or ""), r.column_size,
                                                            r.decimal_digits)
            for r in rows}


def check_columns(odbc: str, extract: Extract) -> None:
    """Raise ``SourceSchemaError`` (naming the table, each column and what changed) unless every column
    ``extract`` reads is in the source with the declared type; see the module's docstring."""
    from portal_sync.source import connect, dialect_of  # the door's own factory and dialect cache

    key = (odbc, extract.table, extract.columns, extract.where)
    if key in _checked:
        return
    with _checking:  # data sets are read in threads: one connection per check, not one per thread at once
        if key in _checked:
            return
        dialect = dialect_of(odbc)
        needed = _filter_columns(extract)
        problems: list[str] = []
        try:
            with closing(connect(odbc)) as conn:
                found = _catalog(conn, dialect, extract.table)
                if found is None:
                    raise SourceSchemaError(f"{extract.table}: the source has no table {extract.table}")
                for column in extract.columns:
                    have = found.get(column.name.upper())
                    if have is None:
                        problems.append(f"{column.name} is missing (dropped or renamed?); the sync reads it as "
                                        f"{declared_type(column)}")
                    elif (problem := type_problem(column, have)) is not None:
                        problems.append(problem)
                declared = {c.name.upper() for c in extract.columns}
                for table, columns in sorted(needed.items()):
                    other = found if table == extract.table else _catalog(conn, dialect, table)
                    for name in sorted(columns):
                        if table == extract.table and name.upper() in declared:
                            continue
                        if other is None or name.upper() not in other:
                            where = "" if table == extract.table else f"{table}."
                            problems.append(f"{where}{name}, which the read's filter uses, is missing "
                                            f"(dropped or renamed?)")
        except pyodbc.Error as exc:
            raise SourceError(f"{extract.table}: the source's catalog could not be read: {exc}") from exc
        if problems:
            raise SourceSchemaError(f"{extract.table}: the source's columns changed, not read: " + "; ".join(problems))
        _checked.add(key)


def forget_checks() -> None:
    """Ask the catalog again on the next read (tests that change a source's columns in one process)."""
    with _checking:
        _checked.clear()
