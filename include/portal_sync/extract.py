"""Read declared Caselle columns over ODBC as a stream of Arrow batches.

arrow-odbc binds column buffers and fills a whole batch per ODBC round trip, which is several
times the rows/s of pyodbc ``fetchmany`` or ``pandas.read_sql``, with memory bounded by the batch
size. The Arrow schema is pinned from the declarations rather than taken from the driver, because
drivers disagree (one reports money as double or text and timestamps without fractions, and
arrow-odbc would drop the microseconds). Money is always fetched as the driver's decimal text, so no
value ever passes through a float on our side; validation checks it is exact (docs/adr/0003).

A value the driver cannot hand over exactly is never staged as if it were exact: each staged row
carries ``_unreadable`` (NULL when every value read exactly), which the ``unreadable_value`` rule
refuses. On a typed engine the one such value is text holding a NUL character (the portal's
PostgreSQL, where it is staged, cannot hold it): the reader flags it here. A dialect that
``checks_values`` computes the column in its own SELECT instead.

What differs between engines (the SELECT's columns, how parameters are sent, buffer sizes, whether
and how a big read is split) comes from the source's dialect (``portal_sync.source``).

Two checks guard every read of an extract (``read_extract``). Its declared columns are compared with
the source's catalog first (``source.check_columns``): a dropped, renamed or retyped column fails the
data set by name instead of publishing a literal or a rounded value. And every reading connection
proves it reaches the run's community (``expected_org``): arrow-odbc opens its own connection per
query and offers no hook on it, so the same connection string opens a pyodbc connection that reads
SM_Organization immediately before the read and again after its last batch (each split piece in its
own child process does the same); a different OrgCode at either end fails the read. The gap left:
a source swapped after the first check and swapped back before the second, during one read, goes
unseen; and the check trusts that the same string reaches the same database on a new connection
moments apart (a name resolving to another server in between is the case it cannot exclude).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from portal_sync.datasets import Extract, SourceColumn
from portal_sync.names import ROW_ID, UNREADABLE
from portal_sync.source import ExtractError, check_columns, connect, dialect_of, verify_organization
from portal_sync.source.dialect import Dialect, Read
from portal_sync.split_read import read_at_once

__all__ = ["BATCH_ROWS", "NUL_SHOWN", "ROW_ID", "UNREADABLE", "ExtractError", "ExtractStats", "Read",
           "arrow_schema", "arrow_type", "read_batches", "read_extract", "read_pieces", "select_sql",
           "staged_schema"]

BATCH_ROWS = 50_000
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


def select_sql(extract: Extract, dialect: Dialect, where: str | None = None) -> str:
    """The SELECT a read of ``extract`` sends: ANSI, with the dialect's columns and quoting.

    ``where`` is an extra condition built from declared identifiers with ``?`` markers.
    """
    return dialect.select_sql(extract, where)


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
    *,
    dialect: Dialect | None = None,
    batch_rows: int = BATCH_ROWS,
    stats: ExtractStats | None = None,
    where: str | None = None,
    parameters: list[object] | None = None,
    expected_org: str | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream one read of the extract as Arrow batches with a ``_row_id`` column numbering the rows from 1.

    The row id is the staging surrogate key: it identifies a refused row even when its business key
    is NULL or duplicated. ``where`` and ``parameters`` are one ``Read``; ``dialect`` is the
    source's (asked of the source when not given). With ``expected_org``, the source must be that
    organization's Caselle just before the read and after its last batch (module docstring).
    """
    from arrow_odbc import read_arrow_batches_from_odbc

    dialect = dialect or dialect_of(connection_string)
    checked = dialect.checks_values
    schema = arrow_schema(extract)
    read_schema = pa.schema([*schema, pa.field(UNREADABLE, pa.string())]) if checked else schema
    staged = staged_schema(extract)
    declared = len(extract.columns)
    options = dialect.reader_options()
    if expected_org is not None:
        verify_organization(connection_string, expected_org, extract.table)
    try:
        where, parameters = dialect.statement((where, parameters))
        reader = read_arrow_batches_from_odbc(
            query=dialect.select_sql(extract, where),
            connection_string=connection_string,
            parameters=parameters,
            batch_size=batch_rows,
            map_schema=lambda _driver_schema: read_schema,
            **options,
        )
        stats = stats if stats is not None else ExtractStats()
        for batch in reader:
            ids = pa.array(np.arange(stats.rows + 1, stats.rows + 1 + batch.num_rows, dtype=np.int64))
            columns = [batch.column(i) for i in range(declared)]
            if checked:  # the engine flagged every value its driver hands over inexactly (a NUL included)
                flags = batch.column(declared)
            else:
                columns, flags = _mark_nul(extract, columns, pa.nulls(batch.num_rows, pa.string()))
            stats.rows += batch.num_rows
            stats.batches += 1
            yield pa.RecordBatch.from_arrays([ids, *columns, flags], schema=staged)
        if expected_org is not None:  # the rows came from the same Caselle to the end
            verify_organization(connection_string, expected_org, extract.table)
    except Exception as exc:  # arrow-odbc raises its own Error type; name what it means for this read
        if "too large to be written into the allocated buffer" in str(exc):
            raise ExtractError(
                f"{extract.table}: a text value is longer than the {options.get('max_text_size')}-byte transfer "
                f"buffer (the contract's columns hold at most 120 characters): {exc}") from exc
        if "invalid UTF-8" in str(exc):  # arrow-odbc's message shows the value: keep it out of logs
            raise ExtractError(f"{extract.table}: the source holds text that is not valid UTF-8 "
                               f"(fix it in the source; the value is not shown here)") from None
        raise


def read_pieces(
    connection_string: str, extract: Extract, pieces: Sequence[Read], *,
    stats: ExtractStats, batch_rows: int = BATCH_ROWS, expected_org: str | None = None,
) -> Iterator[pa.RecordBatch]:
    """The pieces of one read, each by its own child process at once (``split_read``); their batches
    as they arrive, rows numbered in that order. Each child checks ``expected_org`` on its own."""
    dialect = dialect_of(connection_string)
    readers = [partial(read_batches, connection_string, extract, dialect=dialect, batch_rows=batch_rows,
                       where=where, parameters=parameters, expected_org=expected_org)
               for where, parameters in pieces]
    return read_at_once(readers, staged_schema(extract), stats=stats, what=extract.table, piece=dialect.piece)


def read_extract(
    connection_string: str, extract: Extract, reads: Sequence[Read], *,
    stats: ExtractStats, streams: int = 1, expected_org: str | None = None,
) -> Iterator[pa.RecordBatch]:
    """Every read of one extract, one after another; the first (the big one) in ``streams`` pieces
    read side by side when the source's dialect says that pays (docs/adr/0008).

    The source's columns are checked against the declarations first (``source.check_columns``), and
    with ``expected_org`` every reading connection, in this process or a child, proves it reaches
    that organization's Caselle (module docstring).
    """
    check_columns(connection_string, extract)
    dialect = dialect_of(connection_string)
    for i, read in enumerate(reads):
        pieces = dialect.split(partial(connect, connection_string), extract, read, streams) if i == 0 else [read]
        if len(pieces) > 1:
            yield from read_pieces(connection_string, extract, pieces, stats=stats, expected_org=expected_org)
        else:
            yield from read_batches(connection_string, extract, dialect=dialect, stats=stats, where=read[0],
                                    parameters=read[1], expected_org=expected_org)
