"""Per-run staging tables in PostgreSQL: created, bulk-loaded, indexed, dropped.

Staging tables are UNLOGGED (nothing in them needs to survive a crash: a killed run
is simply re-run) and named after the run, so runs never share one. They live in the
portal database so that validation and the merge are set-based SQL next to the data,
and so that tasks on different workers share nothing but the database.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import psycopg
import pyarrow as pa
from psycopg import sql

from portal_sync.datasets import Extract, SourceColumn, amount_sql
from portal_sync.extract import ROW_ID, UNREADABLE
from portal_sync.names import STAGE_SCHEMA
from portal_sync.store import runs

# Memory per sort or hash of the sync's few big statements (staging index builds, the duplicate-key
# check, the publish's classify join), set LOCAL to their transactions. At the server defaults
# (4 MB, 64 MB for index builds) a city ledger's sorts and hashes spilled to gigabytes of temp files.
BIG_STATEMENT_MEMORY = "256MB"

_PG_TYPES = {
    "int": "integer",
    "bigint": "bigint",
    "smallint": "smallint",
    "text": "text",
    "char": "text",
    "money": "text",  # exact driver text; validated, then cast to numeric(12,2) on publish
    "date": "date",
    "datetime": "timestamp",
}


def run_key(community_code: str, run_id: str) -> str:
    """A short, identifier-safe key for one run of one community."""
    digest = hashlib.sha256(f"{community_code}\x00{run_id}".encode()).hexdigest()[:12]
    return f"{community_code.lower()}_{digest}"


def stage_table_name(key: str, dataset: str, extract: Extract) -> str:
    name = f"{key}__{dataset}__{extract.name}"
    if not re.fullmatch(r"[a-z0-9_]{1,63}", name):
        raise ValueError(f"unsafe staging table name {name!r}")
    return name


def row_ids_table_name(key: str, dataset: str, what: str) -> str:
    """A run's list of staged row ids (e.g. the rows it would change), dropped with its staging tables."""
    name = f"{key}__{dataset}__{what}"
    if not re.fullmatch(r"[a-z0-9_]{1,63}", name):
        raise ValueError(f"unsafe staging table name {name!r}")
    return name


def qualified(table: str) -> str:
    """A staging table's name as SQL text, schema included and quoted."""
    return sql.Identifier(STAGE_SCHEMA, table).as_string(None)


def save_row_ids(conn: psycopg.Connection, table: str, select: str, params: dict) -> int:
    """Keep the ``_row_id`` values a SELECT returns in a fresh staging table; return how many.

    Great Expectations runs on its own connections: what it reads must be a real table, not a
    temporary one of this session."""
    ident = sql.Identifier(STAGE_SCHEMA, table)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(ident))
    count = conn.execute(sql.SQL("CREATE UNLOGGED TABLE {} AS ").format(ident).as_string(conn) + select,
                         params).rowcount
    conn.execute(sql.SQL("CREATE UNIQUE INDEX ON {} ({})").format(ident, sql.Identifier(ROW_ID)))
    conn.execute(sql.SQL("ANALYZE {}").format(ident))
    return count


def pg_type(column: SourceColumn) -> str:
    """The staging column type of a declared source column."""
    return _PG_TYPES[column.kind]


def _column_ddl(column: SourceColumn) -> sql.Composable:
    return sql.SQL("{} {}").format(sql.Identifier(column.name), sql.SQL(pg_type(column)))


def create_table(conn: psycopg.Connection, table: str, extract: Extract) -> None:
    columns = [sql.SQL("{} bigint NOT NULL").format(sql.Identifier(ROW_ID))]
    columns += [_column_ddl(c) for c in extract.columns]
    columns.append(sql.SQL("{} text").format(sql.Identifier(UNREADABLE)))  # why a value read inexactly
    columns += [sql.SQL("{} numeric GENERATED ALWAYS AS ({}) STORED").format(
        sql.Identifier(name), sql.SQL(amount_sql(sql.Identifier(money).as_string(None))))
        for name, money in extract.amount_columns.items()]  # computed once, as the COPY writes the row
    conn.execute(
        sql.SQL("DROP TABLE IF EXISTS {}.{} CASCADE").format(sql.Identifier(STAGE_SCHEMA), sql.Identifier(table))
    )
    conn.execute(
        sql.SQL("CREATE UNLOGGED TABLE {}.{} ({})").format(
            sql.Identifier(STAGE_SCHEMA), sql.Identifier(table), sql.SQL(", ").join(columns)
        )
    )


def load_batches(adbc_url: str, table: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> int:
    """Bulk-load Arrow batches with ADBC's binary COPY, one batch in memory at a time."""
    import adbc_driver_postgresql.dbapi as adbc

    source_errors: list[BaseException] = []

    def remembered() -> Iterator[pa.RecordBatch]:
        try:
            yield from batches
        except BaseException as exc:
            source_errors.append(exc)
            raise

    reader = pa.RecordBatchReader.from_batches(schema, remembered())
    try:
        with adbc.connect(adbc_url) as conn, conn.cursor() as cur:
            loaded = cur.adbc_ingest(table, reader, mode="append", db_schema_name=STAGE_SCHEMA)
            conn.commit()
    except Exception:
        # A read error surfaces through the COPY wrapped with a Python traceback in its text; the
        # source's own error says what happened, so that is what the task log and audit show.
        if source_errors:
            raise source_errors[0] from None
        raise
    return int(loaded)


def finish_table(conn: psycopg.Connection, table: str, extract: Extract) -> None:
    """Index the business key and gather statistics so the checks and the merge plan well.

    The key index is built UNIQUE when the staged keys allow it (nearly always): then the
    duplicate-key check has its answer without a scan (``key_is_unique``). Only staged rows
    with a repeated key pay for a second, plain build.
    """
    ident = sql.Identifier(STAGE_SCHEMA, table)
    key = sql.SQL(", ").join(map(sql.Identifier, extract.key))
    with conn.transaction():
        conn.execute(f"SET LOCAL maintenance_work_mem = '{BIG_STATEMENT_MEMORY}'")
        try:
            with conn.transaction():
                conn.execute(sql.SQL("CREATE UNIQUE INDEX ON {} ({})").format(ident, key))
        except psycopg.errors.UniqueViolation:
            conn.execute(sql.SQL("CREATE INDEX ON {} ({})").format(ident, key))
        conn.execute(sql.SQL("CREATE UNIQUE INDEX ON {} ({})").format(ident, sql.Identifier(ROW_ID)))
        conn.execute(sql.SQL("ANALYZE {}").format(ident))


def key_is_unique(conn: psycopg.Connection, table: str, extract: Extract) -> bool:
    """True when the staging table has a UNIQUE index on exactly the extract's key (finish_table)."""
    return bool(conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = format('%%I.%%I', %s::text, %s::text)::regclass"
        " AND i.indisunique AND i.indisvalid AND i.indexprs IS NULL AND i.indpred IS NULL"
        " AND ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(num, pos)"
        "           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num ORDER BY k.pos) = %s)",
        (STAGE_SCHEMA, table, list(extract.key)),
    ).fetchone()[0])


def drop_tables(conn: psycopg.Connection, tables: Iterable[str]) -> None:
    """CASCADE: a view Great Expectations validated over a table (gx_runner) goes with it."""
    for table in tables:
        conn.execute(
            sql.SQL("DROP TABLE IF EXISTS {}.{} CASCADE").format(sql.Identifier(STAGE_SCHEMA), sql.Identifier(table))
        )


def drop_run_tables(conn: psycopg.Connection, key: str) -> list[str]:
    """Drop every staging table of a run, including ones a killed task left behind."""
    rows = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename LIKE %s",
        (STAGE_SCHEMA, key.replace("_", r"\_") + r"\_\_%"),
    ).fetchall()
    names = [r[0] for r in rows]
    drop_tables(conn, names)
    return names


_RUN_KEY = re.compile(r"([a-z0-9_]+)_[0-9a-f]{12}")  # run_key(): <community in lower case>_<12 hex digits>


@dataclass
class SweepResult:
    """What a sweep found: the dead runs' staging tables it dropped and the runs it closed."""

    dropped_tables: list[str] = field(default_factory=list)
    abandoned_runs: list[str] = field(default_factory=list)
    alive_runs: list[str] = field(default_factory=list)  # left alone: a process of theirs may still work


def sweep_orphans(conn: psycopg.Connection, community: str | None = None) -> SweepResult:
    """Drop the staging tables of dead runs and close their ``running`` records as ``abandoned``.

    A killed run never reaches its cleanup, and every new run has a new key, so nothing else would
    remove what it left. Dead is judged per run by ``store.runs.dead_run`` (no session holds its lock,
    nothing of it moved lately), holding the run's lock meanwhile: a live run of the same community,
    this caller's own included, is left untouched. ``community`` narrows the sweep to one community's
    runs; None sweeps all. Needs an autocommit connection (each run is dropped and closed on its own).
    """
    prefix = None if community is None else community.lower()
    keys: dict[str, list[str]] = {}
    for (table,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1",
                                 (STAGE_SCHEMA,)).fetchall():
        key = table.split("__", 1)[0]
        match = _RUN_KEY.fullmatch(key)
        if "__" in table and match and (prefix is None or match.group(1) == prefix):
            keys.setdefault(key, []).append(table)
    for key in runs.sweep_candidates(conn, community):
        keys.setdefault(key, [])
    result = SweepResult()
    for key, tables in keys.items():
        with runs.dead_run(conn, key) as dead:
            if dead is False:
                result.alive_runs.append(key)
                continue
            drop_tables(conn, tables)
            result.dropped_tables += tables
            if not isinstance(dead, bool) and runs.abandon_run(
                    conn, key, dead, "abandoned: no process of the run was alive (killed or lost); its staging"
                                     " tables were dropped by the sweep of a later run"):
                result.abandoned_runs.append(key)
    return result
