"""The measured units. Each function runs alone in a fresh interpreter (see measure.py / child.py)
and returns ``{"rows": n, ...}``.

- product_sync: the product's real code path, ``portal_sync.pipeline.run_sync``.
- plain: ``pandas.read_sql`` over pyodbc, ``DataFrame.to_sql`` into PostgreSQL, an INSERT ... ON
  CONFLICT merge into a keyed table.
- generic_transfer: Airflow's ``GenericTransfer`` operator (``execute()`` with connections from
  ``AIRFLOW_CONN_*``), then the same merge.
- ceiling_read / ceiling_copy: the two unavoidable steps alone (arrow-odbc read into memory and
  discard; server-side binary COPY FROM a local file into an UNLOGGED table); key_read: the
  key-only read that delete detection needs.
"""

from __future__ import annotations

import os
import threading
import time

import psycopg

from portal_sync.datasets import TRANSACTION_KEYS, TRANSACTIONS

LEDGER = TRANSACTIONS  # the ledger data set's read ("charges": UB_Transaction without PMT lines)

# A keyed table like the portal's charges, for the baselines' merge.
TARGET_DDL = """
CREATE TABLE {table} (
    transaction_id       bigint PRIMARY KEY,
    customer_id          bigint NOT NULL,
    transaction_type     text NOT NULL,
    service_code         text,
    description          text,
    amount               numeric(12,2) NOT NULL,
    transaction_date     date NOT NULL,
    posted_at            timestamptz NOT NULL,
    due_date             date,
    period               text,
    reference_number     text,
    voids_transaction_id bigint
)"""
TARGET_COLUMNS = ("transaction_id", "customer_id", "transaction_type", "service_code", "description", "amount",
                  "transaction_date", "posted_at", "due_date", "period", "reference_number", "voids_transaction_id")
# Whatever types pandas or the hook gave the staged columns, go through text to the target's.
SOURCE_EXPRESSIONS = ('"TransactionID"::bigint', '"CustomerID"::bigint', '"TransactionType"', '"ServiceCode"',
                      '"Description"', '"Amount"::text::numeric(12,2)', '"TransactionDate"::text::date',
                      "(\"InputDate\"::text::timestamp AT TIME ZONE 'America/Denver')", '"DueDate"::text::date',
                      'rtrim("Period")', '"ReferenceNumber"', '"VoidsTransactionID"::bigint')
# The staging-like table GenericTransfer inserts into (money as the driver's text, like the product).
GT_STAGE_DDL = """
CREATE TABLE {table} (
    "TransactionID" bigint, "CustomerID" integer, "TransactionType" text, "ServiceCode" text,
    "Description" text, "Amount" text, "TransactionDate" date, "InputDate" timestamp, "DueDate" date,
    "Period" text, "ReferenceNumber" text, "VoidsTransactionID" bigint
)"""


def ledger_sql(where: str | None = None) -> str:
    from portal_sync.extract import select_sql
    from portal_sync.source.dialect import Dialect

    return select_sql(LEDGER, Dialect(), where)


def merge_sql(stage: str, target: str) -> str:
    values = ", ".join(TARGET_COLUMNS[1:])
    excluded = ", ".join(f"EXCLUDED.{c}" for c in TARGET_COLUMNS[1:])
    current = ", ".join(f"t.{c}" for c in TARGET_COLUMNS[1:])
    return (
        f"INSERT INTO {target} AS t ({', '.join(TARGET_COLUMNS)}) SELECT {', '.join(SOURCE_EXPRESSIONS)} FROM {stage}"
        f" ON CONFLICT (transaction_id) DO UPDATE SET ({values}) = ({excluded})"
        f" WHERE ({current}) IS DISTINCT FROM ({excluded})"
    )


def _fresh_target(pg_url: str, target: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS bench")
        conn.execute(f"DROP TABLE IF EXISTS {target}")
        conn.execute(TARGET_DDL.format(table=target))


# --- the product ------------------------------------------------------------------------------

def _skip_validation(ctx, name: str) -> dict:
    """Stand-in for pipeline.validate_dataset: mark the data set validated, run no check."""
    from portal_sync.store import runs

    with ctx.portal() as conn:
        runs.update_dataset(conn, ctx.run_key, name, phase="validated", rows_refused=0, rows_warned=0,
                            validate_seconds=0, error=None)
    return {}


def product_sync(portal_url: str, source_odbc: str, community: dict, run_id: str, validation: str = "gx",
                 interval: list[str] | None = None, request: dict | None = None) -> dict:
    """One ``run_sync``. validation: gx (the product's default, RunContext(use_gx=True)), sql (use_gx=False:
    the same rules in plain SQL, no Great Expectations) or none (validate step replaced, see _skip_validation)."""
    from datetime import datetime

    from portal_sync import pipeline
    from portal_sync.config import Community
    from portal_sync.params import RunRequest

    if validation == "none":
        pipeline.validate_dataset = _skip_validation
    ctx = pipeline.RunContext(
        Community(**community), run_id, portal_url, source_odbc, use_gx=(validation == "gx"),
        interval_start=datetime.fromisoformat(interval[0]) if interval else None,
        interval_end=datetime.fromisoformat(interval[1]) if interval else None,
        request=RunRequest(**(request or {})),
    )
    outcome = "published"
    try:
        pipeline.run_sync(ctx)
    except pipeline.SyncError as exc:
        outcome = f"failed: {exc}"
    with psycopg.connect(portal_url) as conn:
        cur = conn.execute(
            "SELECT * FROM sync.run_datasets WHERE run_key = %s ORDER BY dataset", (ctx.run_key,))
        names = [d.name for d in cur.description]
        records = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    datasets = {r["dataset"]: r for r in records}
    keep = ("mode", "phase", "rows_extracted", "rows_refused", "rows_warned", "rows_inserted", "rows_updated",
            "rows_unchanged", "rows_deleted", "rows_restored", "rows_archived", "rows_superseded",
            "extract_seconds", "validate_seconds", "publish_seconds", "error")
    datasets = {k: {f: (float(v[f]) if f.endswith("_seconds") and v[f] is not None else v[f]) for f in keep}
                for k, v in datasets.items()}
    rows = sum(d["rows_extracted"] or 0 for d in datasets.values())
    return {"rows": rows, "outcome": outcome, "run_key": ctx.run_key, "datasets": datasets}


# --- the plain approach -------------------------------------------------------------------------

def plain(source_odbc: str, pg_url: str, where: str | None = None) -> dict:
    """pandas.read_sql over pyodbc (whole result in memory), to_sql (defaults), then the merge."""
    import warnings

    import pandas as pd
    import pyodbc
    import sqlalchemy

    stage, target = "plain_stage", "bench.plain_target"
    _fresh_target(pg_url, target)
    times = {}
    t0 = time.perf_counter()
    source = pyodbc.connect(source_odbc, autocommit=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pandas wants SQLAlchemy; plain pyodbc is the usual way
        frame = pd.read_sql(ledger_sql(where), source)
    source.close()
    times["read_sql"] = time.perf_counter() - t0
    engine = sqlalchemy.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    t1 = time.perf_counter()
    frame.to_sql(stage, engine, schema="bench", if_exists="replace", index=False)
    times["to_sql"] = time.perf_counter() - t1
    rows = len(frame)
    del frame
    t2 = time.perf_counter()
    with psycopg.connect(pg_url) as conn:
        merged = conn.execute(merge_sql(f"bench.{stage}", target)).rowcount
    times["merge"] = time.perf_counter() - t2
    engine.dispose()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE bench.{stage}")
    return {"rows": rows, "merged": merged, "seconds": {k: round(v, 2) for k, v in times.items()}}


def generic_transfer(pg_url: str, where: str | None = None) -> dict:
    """GenericTransfer(source ODBC -> PostgreSQL) with its defaults, then the same merge.

    Connections come from AIRFLOW_CONN_BENCH_SOURCE / AIRFLOW_CONN_BENCH_PORTAL (set by the
    runner); execute() runs without a scheduler or metadata database.
    """
    from airflow.providers.common.sql.operators.generic_transfer import GenericTransfer

    stage, target = "bench.gt_stage", "bench.gt_target"
    _fresh_target(pg_url, target)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {stage}")
        conn.execute(GT_STAGE_DDL.format(table=stage))
    times = {}
    t0 = time.perf_counter()
    operator = GenericTransfer(task_id="bench_generic_transfer", sql=ledger_sql(where), destination_table=stage,
                               source_conn_id="bench_source", destination_conn_id="bench_portal")
    operator.execute(context={})
    times["transfer"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(f"SELECT count(*) FROM {stage}").fetchone()[0]
        merged = conn.execute(merge_sql(stage, target)).rowcount
    times["merge"] = time.perf_counter() - t1
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {stage}")
    return {"rows": rows, "merged": merged, "seconds": {k: round(v, 2) for k, v in times.items()}}


# --- the ceiling and the floor ---------------------------------------------------------------

def _arrow_read(source_odbc: str, extract, where: str | None, batch_rows: int) -> tuple[int, int]:
    from arrow_odbc import read_arrow_batches_from_odbc

    from portal_sync.extract import arrow_schema, select_sql
    from portal_sync.source.dialect import Dialect

    schema = arrow_schema(extract)
    reader = read_arrow_batches_from_odbc(
        query=select_sql(extract, Dialect(), where), connection_string=source_odbc, batch_size=batch_rows,
        max_text_size=4000, map_schema=lambda _driver_schema: schema,
    )
    rows = batches = 0
    for batch in reader:  # into memory, then dropped
        rows += batch.num_rows
        batches += 1
    return rows, batches


def ceiling_read(source_odbc: str, where: str | None = None, batch_rows: int = 50_000) -> dict:
    """arrow-odbc read of the ledger with the product's query, pinned schema and batch size; discarded."""
    rows, batches = _arrow_read(source_odbc, LEDGER, where, batch_rows)
    return {"rows": rows, "batches": batches}


def key_read(source_odbc: str, where: str | None = None, batch_rows: int = 50_000) -> dict:
    """Key-only read (TransactionID of every ledger line): the floor of a reconciliation's delete check."""
    rows, batches = _arrow_read(source_odbc, TRANSACTION_KEYS, where, batch_rows)
    return {"rows": rows, "batches": batches}


def make_copy_file(source_odbc: str, pg_url: str, path: str, where: str | None = None) -> dict:
    """Not measured: load the ledger's rows once (arrow-odbc + ADBC, the columns as the read yields them)
    and COPY them TO a binary file the server can read back."""
    import adbc_driver_postgresql.dbapi as adbc
    import pyarrow as pa
    from arrow_odbc import read_arrow_batches_from_odbc

    from portal_sync.extract import arrow_schema, select_sql
    from portal_sync.source.dialect import Dialect

    schema = arrow_schema(LEDGER)
    batches = read_arrow_batches_from_odbc(
        query=select_sql(LEDGER, Dialect(), where), connection_string=source_odbc, batch_size=50_000,
        max_text_size=4000, map_schema=lambda _driver_schema: schema)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS bench")
        conn.execute("DROP TABLE IF EXISTS bench.ceiling_src")
    with adbc.connect(pg_url) as conn, conn.cursor() as cur:
        rows = cur.adbc_ingest("ceiling_src", pa.RecordBatchReader.from_batches(schema, batches), mode="create",
                               db_schema_name="bench")
        conn.commit()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"COPY bench.ceiling_src TO '{path}' WITH (FORMAT binary)")
        conn.execute("DROP TABLE IF EXISTS bench.ceiling_dst")
        conn.execute("CREATE UNLOGGED TABLE bench.ceiling_dst (LIKE bench.ceiling_src)")  # the COPY target
        conn.execute("DROP TABLE bench.ceiling_src")
    return {"rows": int(rows), "bytes": os.path.getsize(path)}


def ceiling_copy(pg_url: str, path: str) -> dict:
    """Server-side COPY FROM the local binary file into the empty UNLOGGED table (no index), emptied after."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        t0 = time.perf_counter()
        rows = conn.execute(f"COPY bench.ceiling_dst FROM '{path}' WITH (FORMAT binary)").rowcount
        copy_seconds = time.perf_counter() - t0
        conn.execute("TRUNCATE bench.ceiling_dst")
    return {"rows": rows, "copy_seconds": round(copy_seconds, 3)}


# --- experiments behind the proposed fixes (benchmarks/experiments.py) ------------------------------

def _prefetched(batches, depth: int = 2):
    """Read the next batches in a thread while the caller (ADBC's COPY) writes the current one."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    failure: list[BaseException] = []

    def pump():
        try:
            for batch in batches:
                q.put(batch)
        except BaseException as exc:  # handed to the consumer
            failure.append(exc)
        finally:
            q.put(done)

    threading.Thread(target=pump, daemon=True).start()
    while (item := q.get()) is not done:
        yield item
    if failure:
        raise failure[0]


def stage_ledger(source_odbc: str, pg_url: str, mode: str = "serial", batch_rows: int = 50_000,
                 where: str | None = None, since_days: int = 400) -> dict:
    """The ledger's extract alone (portal_sync.extract.read_batches into stage.load_batches, then
    stage.finish_table): ``serial`` one read in this process, ``prefetch`` the read prefetched in a thread,
    ``split`` two rowid ranges read by child processes (extract.read_extract, the product's path for a big
    SQLite read); ``read``, ``read_split``, ``read_threads``: the read alone, discarded, in one stream, in
    two child processes, in two threads of this process (to set against ceiling_read, the bare query);
    ``read_since``: the read alone of the lines dated within ``since_days``, the date a bound parameter as
    in a ranged reconciliation (plan.primary_reads), to watch the reader's memory."""
    import itertools

    from portal_sync import source, stage
    from portal_sync.extract import ExtractStats, read_batches, read_extract

    if mode == "read":  # the product's read alone (its query and conversions), discarded
        rows = sum(b.num_rows for b in read_batches(source_odbc, LEDGER, batch_rows=batch_rows, where=where))
        return {"rows": rows, "load_seconds": 0.0, "finish_seconds": 0.0}
    if mode == "read_since":
        from datetime import date, timedelta

        from portal_sync.datasets import DATASETS

        dialect = source.dialect_of(source_odbc)
        since = dialect.date_param(date.today() - timedelta(days=since_days))
        column = dialect.quote_ident(DATASETS["charges"].reconcile_date_column)
        rows = sum(b.num_rows for b in read_batches(source_odbc, LEDGER, batch_rows=batch_rows,
                                                    where=f"{column} >= ?", parameters=[since]))
        return {"rows": rows, "load_seconds": 0.0, "finish_seconds": 0.0}
    if mode == "read_split":  # the product's read as it runs now: two rowid ranges in two child processes
        rows = sum(b.num_rows for b in read_extract(source_odbc, LEDGER, [(where, None)], stats=ExtractStats(),
                                                streams=2))
        return {"rows": rows, "load_seconds": 0.0, "finish_seconds": 0.0}
    if mode == "read_threads":  # the same two ranges read in two threads of this process (ADR 0008)
        counted: list[int] = []

        def read_range(piece) -> None:
            counted.append(sum(b.num_rows for b in read_batches(source_odbc, LEDGER, batch_rows=batch_rows,
                                                                where=piece[0], parameters=piece[1])))

        threads = [threading.Thread(target=read_range, args=(piece,))
                   for piece in source.dialect_of(source_odbc).split(
                       lambda: source.connect(source_odbc), LEDGER, (where, None), 2, min_rows=1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return {"rows": sum(counted), "load_seconds": 0.0, "finish_seconds": 0.0}
    table = f"bench_ledger_{mode}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS stage")
        stage.create_table(conn, table, LEDGER)
    if mode == "split":  # read_split into the staging COPY, as the product's extract does
        batches = read_extract(source_odbc, LEDGER, [(where, None)], stats=ExtractStats(), streams=2)
    else:
        batches = read_batches(source_odbc, LEDGER, batch_rows=batch_rows, where=where)
    if mode == "prefetch":
        batches = _prefetched(batches)
    t0 = time.perf_counter()
    first = next(batches)
    loaded = stage.load_batches(pg_url, table, first.schema, itertools.chain([first], batches))
    load_seconds = time.perf_counter() - t0
    with psycopg.connect(pg_url, autocommit=True) as conn:
        t1 = time.perf_counter()
        stage.finish_table(conn, table, LEDGER)
        finish_seconds = time.perf_counter() - t1
        conn.execute(f"DROP TABLE stage.{table}")
    return {"rows": loaded, "load_seconds": round(load_seconds, 2), "finish_seconds": round(finish_seconds, 2)}


def validate_ledger(source_odbc: str, pg_url: str, modes: list[str], where: str | None = None) -> dict:
    """Stage the ledger (and the customer keys its orphan rule needs) once, then time its validation:
    ``sql`` (validate_staged with use_gx=False: one INSERT ... SELECT per rule, the product's own SQL),
    and ``gx`` (validate_staged with use_gx=True, the product's default). (Round 2's ``one_pass`` variant, a
    copy of the rules in one scan, is how the product records failing rows now.)
    ``pg_url`` must be a migrated portal database (sync.run_findings)."""
    from portal_sync import validate
    from portal_sync.config import Quality
    from portal_sync.datasets import CHARGES
    from portal_sync.rules import rules_for
    from portal_sync.store import quality, runs

    run_key = "bench_validate"
    tables = {}
    with psycopg.connect(pg_url, autocommit=True) as conn:
        runs.start_run(conn, run_key, "BENCH", run_key, ["charges"])
        for extract in CHARGES.extracts:
            table = f"bench_validate__{extract.name}"
            _load_extract(source_odbc, pg_url, conn, table, extract, where if extract is CHARGES.primary else None)
            tables[extract.name] = table
        rows = conn.execute(f'SELECT count(*) FROM stage."{tables["transactions"]}"').fetchone()[0]
        rules = rules_for(CHARGES, Quality())
        seconds, counts = {}, {}
        for mode in modes:
            quality.clear_findings(conn, run_key, "charges")
            t0 = time.perf_counter()
            if mode in ("sql", "gx"):
                outcomes = validate.validate_staged(conn, pg_url=pg_url, run_key=run_key, community="BENCH",
                                                    dataset=CHARGES, tables=tables, rules=rules,
                                                    use_gx=(mode == "gx"))
                counts[mode] = {o.rule: o.failing_rows for o in outcomes}
            else:
                raise ValueError(f"validate mode {mode!r}: sql or gx")
            seconds[mode] = round(time.perf_counter() - t0, 2)
        conn.execute("DELETE FROM sync.runs WHERE run_key = %s", (run_key,))
        for table in tables.values():
            conn.execute(f'DROP TABLE stage."{table}"')
    return {"rows": rows, "validate_seconds": seconds, "failing": counts}


def _load_extract(source_odbc: str, pg_url: str, conn, table: str, extract, where: str | None = None) -> None:
    """Stage one extract as the product does: create, read_batches -> stage.load_batches, finish_table."""
    import itertools

    from portal_sync import extract as extract_module
    from portal_sync import stage

    stage.create_table(conn, table, extract)
    batches = extract_module.read_batches(source_odbc, extract, where=where)
    first = next(batches, None)
    if first is None:  # an empty extract (no period close yet): the staged columns, no rows
        stage.load_batches(pg_url, table, extract_module.staged_schema(extract), iter(()))
    else:
        stage.load_batches(pg_url, table, first.schema, itertools.chain([first], batches))
    stage.finish_table(conn, table, extract)


def _stage_charges(source_odbc: str, pg_url: str, conn, prefix: str, where: str | None = None) -> dict:
    """Stage every extract of the charges data set as the product does (read_batches -> load_batches -> finish)."""
    from portal_sync.datasets import CHARGES

    tables = {}
    for extract in CHARGES.extracts:
        table = f"{prefix}__{extract.name}"
        _load_extract(source_odbc, pg_url, conn, table, extract, where if extract is CHARGES.primary else None)
        tables[extract.name] = table
    return tables


def publish_ledger(source_odbc: str, pg_url: str, variants: list[str], where: str | None = None) -> dict:
    """The ledger staged once, then published into an empty portal.charges several ways (TRUNCATE and CHECKPOINT
    between them, not timed): ``product`` = publish.merge_dataset (mode full, the product's statements),
    ``insert`` = the product's projection into the temp table, then a plain INSERT ... SELECT (no ON CONFLICT,
    no RETURNING, no tombstone pass: what an initial load of a community needs), ``direct`` = INSERT ... SELECT
    straight from the projection (no temp table), ``partition`` = what a portal.charges partitioned by community
    would allow for a first load: the projection into a new table without indexes, then attached to a partitioned
    copy of portal.charges (``bench_part.charges``, made untimed), which builds its indexes after the rows,
    ``sorted`` = ``direct`` in primary-key order, ``copy`` / ``copy_sorted`` = ``_relay_copy``; a ``_writer`` suffix
    runs a variant as the sync's group ``portal_sync_writer`` (SET LOCAL ROLE), under the row security production
    has (the benchmarks' own runs are a superuser's). A variant PostgreSQL refuses is recorded in ``refused``."""
    from datetime import UTC, datetime

    from portal_sync.datasets import CHARGES

    run_key = "bench_publish"
    seconds, wal_mib, checkpoints, refused = {}, {}, {}, {}
    with psycopg.connect(pg_url, autocommit=True) as conn:
        tables = _stage_charges(source_odbc, pg_url, conn, "bench_publish", where)
        rows = conn.execute(f'SELECT count(*) FROM stage."{tables["transactions"]}"').fetchone()[0]
        args = {"tz": "America/Denver", "visible_statuses": ["active", "final"], "community": "BENCH",
                "run_key": run_key, "dataset": "charges", "read_at": datetime.now(UTC)}
        cols = ", ".join(f'"{c}"' for c in (*CHARGES.portal_columns, "source_read_at"))
        for table in tables.values():  # the _writer variants read them as the sync's group (its own in production)
            conn.execute(f'GRANT SELECT ON stage."{table}" TO portal_sync_writer')
        if "partition" in variants:
            conn.execute("DROP SCHEMA IF EXISTS bench_part CASCADE")
            conn.execute("CREATE SCHEMA bench_part")
            conn.execute("CREATE TABLE bench_part.charges (LIKE portal.charges INCLUDING ALL)"
                         " PARTITION BY LIST (community_code)")
        for variant in variants:
            # the product makes BENCH's partition itself (docs/adr/0011); the plain inserts need it attached
            _bench_partition(conn, attached=variant.removesuffix("_writer") != "product")
            conn.execute("DROP TABLE IF EXISTS bench_part.charges_bench")
            conn.execute("CHECKPOINT")
            wal_before, checkpoints_before = _wal_position(conn)
            t0 = time.perf_counter()
            try:
                _publish_variant(conn, pg_url, variant, tables, args, cols)
            except psycopg.Error as exc:  # e.g. copy_writer: COPY FROM refused under row security
                refused[variant] = f"{type(exc).__name__}: {str(exc).strip()}"
                continue
            seconds[variant] = round(time.perf_counter() - t0, 2)
            target = "bench_part.charges" if variant == "partition" else "portal.charges"
            loaded = conn.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
            if loaded != rows:  # a faster way that loses rows measures nothing
                raise RuntimeError(f"publish variant {variant} left {loaded} rows, not the {rows} staged")
            wal_after, checkpoints_after = _wal_position(conn)
            wal_mib[variant] = round((wal_after - wal_before) / 2**20)
            checkpoints[variant] = checkpoints_after - checkpoints_before
        conn.execute("DROP TABLE IF EXISTS " + _bench_partition_name(conn))
        conn.execute("DROP SCHEMA IF EXISTS bench_part CASCADE")
        for table in tables.values():
            conn.execute(f'DROP TABLE stage."{table}"')
    return {"rows": rows, "publish_seconds": seconds, "wal_mib": wal_mib, "checkpoints": checkpoints,
            "refused": refused}


def _bench_partition_name(conn) -> str:
    return conn.execute("SELECT sync.community_partition_name('charges', 'BENCH')").fetchone()[0]


def _bench_partition(conn, attached: bool) -> None:
    """Community BENCH's partition of portal.charges dropped (its rows with it), then made empty and
    attached when a variant inserts through the parent."""
    conn.execute("DROP TABLE IF EXISTS " + _bench_partition_name(conn))
    if attached:
        conn.execute("SELECT sync.new_community_partition('charges', 'BENCH')")
        conn.execute("SELECT sync.attach_community_partition('charges', 'BENCH')")


def _publish_variant(conn, pg_url: str, variant: str, tables: dict, args: dict, cols: str) -> None:
    """One way of publishing the staged ledger into the empty portal.charges, in one transaction."""
    from portal_sync import publish
    from portal_sync.datasets import CHARGES, DATASET_NAMES
    from portal_sync.stage import BIG_STATEMENT_MEMORY

    run_key = args["run_key"]
    with conn.transaction():
        if variant.endswith("_writer"):  # as the sync's login is in production: row security applies
            conn.execute("SET LOCAL ROLE portal_sync_writer")
            variant = variant.removesuffix("_writer")
        if variant == "product":
            item = publish.PublishInput(CHARGES, tables, mode="full", read_at=args["read_at"])
            publish.merge_dataset(conn, item, community="BENCH", run_key=run_key, params=args,
                                  enabled=DATASET_NAMES, guard=publish.DeleteGuard())
        elif variant == "insert":
            conn.execute("CREATE TEMP TABLE _publish_charges ON COMMIT DROP AS "
                         + publish.projection_sql(CHARGES, tables, None, "full"), args)
            conn.execute(f"INSERT INTO portal.charges ({cols}) SELECT {cols} FROM _publish_charges")
        elif variant == "direct":
            conn.execute(f"INSERT INTO portal.charges ({cols}) "
                         + publish.projection_sql(CHARGES, tables, None, "full"), args)
        elif variant == "partition":
            conn.execute(f"SET LOCAL maintenance_work_mem = '{BIG_STATEMENT_MEMORY}'")
            conn.execute("CREATE TABLE bench_part.charges_bench (LIKE portal.charges INCLUDING DEFAULTS,"
                         " CHECK (community_code = 'BENCH'))")
            conn.execute(f"INSERT INTO bench_part.charges_bench ({cols}) "
                         + publish.projection_sql(CHARGES, tables, None, "full"), args)
            # ATTACH builds the parent's indexes (portal.charges' own, copied) on the loaded rows
            conn.execute("ALTER TABLE bench_part.charges ATTACH PARTITION bench_part.charges_bench"
                         " FOR VALUES IN ('BENCH')")
        elif variant == "sorted":
            conn.execute(f"INSERT INTO portal.charges ({cols}) SELECT {cols} FROM ("
                         + publish.projection_sql(CHARGES, tables, None, "full")
                         + ') p ORDER BY p."charge_id"', args)
        elif variant in ("copy", "copy_sorted"):
            _relay_copy(pg_url, conn, publish.projection_sql(CHARGES, tables, None, "full"), args,
                        (*CHARGES.portal_columns, "source_read_at"),
                        ' ORDER BY p."charge_id"' if variant == "copy_sorted" else "")
        else:
            raise ValueError(variant)


def _wal_position(conn) -> tuple[int, int]:
    """WAL bytes written so far and checkpoints begun so far (PostgreSQL 15's pg_stat_bgwriter)."""
    return conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint,"
                        " checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter").fetchone()


def _relay_copy(pg_url: str, conn, projection: str, args: dict, names: tuple[str, ...], order: str) -> None:
    """``copy``: a second session computes the projection and sends it as binary COPY; this one takes it with
    COPY FROM, which inserts in batches (one WAL record per heap page, not per row), on the other core."""
    target_types = conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = 'portal.charges'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum").fetchall()
    kinds = dict(target_types)
    typed = ", ".join(f'p."{name}"::{kinds[name]}' for name in names)
    quoted = ", ".join(f'"{name}"' for name in names)
    with psycopg.connect(pg_url, autocommit=True) as reader, \
            reader.cursor().copy(f"COPY (SELECT {typed} FROM ({projection}) p{order}) TO STDOUT (FORMAT BINARY)",
                                 args) as out, \
            conn.cursor().copy(f"COPY portal.charges ({quoted}) FROM STDIN (FORMAT BINARY)") as into:
        for chunk in out:
            into.write(chunk)


def reconcile_ledger(source_odbc: str, pg_url: str, variants: list[str], work_mem: str = "256MB") -> dict:
    """The publish step of a reconciliation of the ledger, alone: portal.charges loaded with the whole ledger
    and analyzed, then 1 % of its rows altered (the merge must put them back) and 0.5 % of the staged keys
    removed (the merge must tombstone them). Each variant runs in a transaction that is rolled back, so all
    start from the same state:
    ``product``: publish.merge_dataset(mode reconcile); ``product_work_mem``: the same with SET LOCAL work_mem.
    (Round 3's ``classify`` variant, a copy of the merge that was then adopted, is the product's merge now.)"""
    from datetime import UTC, datetime

    from portal_sync import publish
    from portal_sync.datasets import CHARGES, DATASET_NAMES

    run_key, ds = "bench_reconcile", CHARGES
    args = {"tz": "America/Denver", "visible_statuses": ["active", "final"], "community": "BENCH",
            "run_key": run_key, "dataset": "charges", "read_at": datetime.now(UTC)}
    cols = ", ".join(f'"{c}"' for c in (*ds.portal_columns, "source_read_at"))
    seconds, counts = {}, {}
    with psycopg.connect(pg_url, autocommit=True) as conn:
        tables = _stage_charges(source_odbc, pg_url, conn, "bench_reconcile")
        keys = "bench_reconcile__transaction_keys"
        _load_extract(source_odbc, pg_url, conn, keys, ds.reconcile_keys)
        tables["transaction_keys"] = keys
        _bench_partition(conn, attached=True)
        with conn.transaction():
            conn.execute(f"INSERT INTO portal.charges ({cols}) " + publish.projection_sql(ds, tables, None, "full"),
                         {**args, "read_at": datetime(2026, 1, 1, tzinfo=UTC)})
        conn.execute("UPDATE portal.charges SET description = description || ' (old)'"
                     " WHERE charge_id - (charge_id / 100) * 100 = 7")
        for name in ("transactions", "transaction_keys"):
            conn.execute(f'DELETE FROM stage."{tables[name]}" WHERE "TransactionID" - ("TransactionID" / 200) * 200 = 3')
            conn.execute(f'VACUUM ANALYZE stage."{tables[name]}"')
        conn.execute("VACUUM ANALYZE portal.charges")
        rows = conn.execute(f'SELECT count(*) FROM stage."{tables["transactions"]}"').fetchone()[0]
        for variant in variants:
            conn.execute("CHECKPOINT")
            t0 = time.perf_counter()
            try:
                with conn.transaction():
                    item = publish.PublishInput(ds, tables, mode="reconcile", read_at=args["read_at"])
                    guard = publish.DeleteGuard(allowed=("charges",))
                    if variant in ("product", "product_work_mem"):
                        if variant == "product_work_mem":
                            conn.execute(f"SET LOCAL work_mem = '{work_mem}'")
                        c = publish.merge_dataset(conn, item, community="BENCH", run_key=run_key, params=args,
                                                  enabled=DATASET_NAMES, guard=guard)
                        counts[variant] = {"inserted": c.inserted, "updated": c.updated, "deleted": c.deleted,
                                           "archived": c.archived, "unchanged": c.unchanged}
                    else:
                        raise ValueError(variant)
                    seconds[variant] = round(time.perf_counter() - t0, 2)
                    raise _Rollback
            except _Rollback:
                pass
        conn.execute("DROP TABLE IF EXISTS " + _bench_partition_name(conn))
        for table in tables.values():
            conn.execute(f'DROP TABLE stage."{table}"')
    return {"rows": rows, "publish_seconds": seconds, "counts": counts}


class _Rollback(Exception):
    pass


def read_checked_query(source_odbc: str, batch_rows: int = 50_000, part: str = "all") -> dict:
    """SQLite sources: the product's checked query (select_sql(..., SQLite()), with its buffer
    settings) read by arrow-odbc and discarded, without read_batches' Arrow post-processing (NUL marking,
    row ids): splits the cost of the value checks between SQLite and Arrow."""
    import pyarrow as pa
    from arrow_odbc import read_arrow_batches_from_odbc

    from portal_sync import extract as ex
    from portal_sync.names import UNREADABLE
    from portal_sync.source.sqlite import SQLite

    sqlite = SQLite()
    schema = pa.schema([*ex.arrow_schema(LEDGER), pa.field(UNREADABLE, pa.string())])
    query = ex.select_sql(LEDGER, sqlite)
    if part == "clip":  # only the clipped text columns (CASE expressions), without the _unreadable column
        schema = ex.arrow_schema(LEDGER)
        query = (f"SELECT {', '.join(sqlite.column_sql(c) for c in LEDGER.columns)} FROM {sqlite.quote_ident(LEDGER.table)}"
                 f" WHERE {LEDGER.where.format(q=sqlite.quote)}")
    reader = read_arrow_batches_from_odbc(
        query=query, connection_string=source_odbc, batch_size=batch_rows, **sqlite.reader_options(),
        map_schema=lambda _driver_schema: schema)
    rows = sum(b.num_rows for b in reader)
    return {"rows": rows, "load_seconds": 0.0, "finish_seconds": 0.0}
