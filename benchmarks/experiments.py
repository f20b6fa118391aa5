#!/usr/bin/env python
"""Experiments behind the fixes proposed for missed targets (not the product's code path).

    .venv/bin/python benchmarks/experiments.py extract --preset city --source sqlite --repeat 3 \
        --out docs/benchmarks/experiments.json

``extract``: the product's extract of the ledger alone (read_batches -> stage.load_batches ->
stage.finish_table) as the product does it (serial: the ADBC COPY waits while arrow-odbc fetches
the next batch) against the same with the ODBC read prefetched in a thread (a queue of two
batches), at two batch sizes; ``--extract-modes read`` times the product's read alone. Round 4:
``--extract-modes read,read_threads,read_split,serial,split --batch-rows 50000`` (ADR 0008). Round 5:
``--extract-modes read_since --since-days 400,1500 --batch-rows 50000``, the reader's peak RSS when the
read has a bound parameter (run it with ``CPS_BENCH_CODE_ROOT`` set to a snapshot of older code to compare).

``checks`` (round 6): the seconds SQLite itself spends on each column's exactness check of the ledger
read, and on the whole check, beside a scan with none (``--source sqlite`` only); with ``--odbc-reads``
also the ledger read over ODBC one layer at a time: bare columns, text columns as computed expressions,
the product's clipped text, the product's whole checked select.

``validate``: the ledger staged once per repetition, then its rules run two ways: the product's
SQL (use_gx=False) and the product's default (Great Expectations, then the same SQL); the findings
must agree.

``publish``: the ledger staged once per repetition, then published into an empty portal.charges by the
product's merge_dataset, by its projection plus a plain INSERT, and by one INSERT ... SELECT of the
projection; ``--publish-variants partition`` adds a first load into a new partition, indexed after the
insert and attached, ``sorted`` the insert in primary-key order, and ``copy`` (``copy_sorted``: in key
order) a second session sending the projection as binary COPY into this one's COPY FROM (see
tasks.publish_ledger); each variant's WAL volume and checkpoints are recorded beside its seconds.

``reconcile``: the publish of a reconciliation alone, on a loaded and analyzed portal.charges with 1 %
of its rows altered and 0.5 % of the staged keys removed: the product's merge_dataset, the same with
a larger work_mem (see tasks.reconcile_ledger).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

import run  # noqa: F401  (sets sys.path to the code measured)
from measure import run_child, summarize

log = logging.getLogger("bench")


def extract(args) -> dict:
    source = run.Source(args.preset, args.source, args.seed, args.workdir)
    source.prepare()
    db = f"cps_bench_exp_{args.preset}"
    url = run.create_db(db)
    results: dict = {"ledger_rows": source.ledger_rows(), "runs": {}}
    try:
        plans = [(f"{mode} {rows // 1000}k", {"mode": mode, "batch_rows": rows})
                 for rows in args.batch_rows for mode in args.extract_modes if mode != "read_since"]
        plans += [(f"read_since {days}d {rows // 1000}k", {"mode": "read_since", "batch_rows": rows, "since_days": days})
                  for rows in args.batch_rows for days in args.since_days if "read_since" in args.extract_modes]
        for _ in range(args.repeat):
            for name, kwargs in plans:
                if kwargs["mode"] in ("bare", "checks"):  # the bare query of the ceiling; the checked query alone
                    function = "ceiling_read" if kwargs["mode"] == "bare" else "read_checked_query"
                    m = run_child(name, function, {"source_odbc": source.odbc, "batch_rows": kwargs["batch_rows"]},
                                  databases=[db, *source.databases])
                    m.extra.update({"load_seconds": 0.0, "finish_seconds": 0.0})
                else:
                    m = run_child(name, "stage_ledger", {"source_odbc": source.odbc, "pg_url": url, **kwargs},
                                  databases=[db, *source.databases])
                log.info("%s: %d rows in %.1f s (%.0f rows/s; load %.1f s, index+analyze %.1f s), CPU %.1f s, "
                         "PostgreSQL CPU %.1f s, RSS %.0f MiB", name, m.rows, m.wall, m.rows_per_s,
                         m.extra["load_seconds"], m.extra["finish_seconds"], m.cpu, m.pg_cpu, m.rss_mib)
                results["runs"].setdefault(name, []).append(m.__dict__)
        results["medians"] = {name: {**summarize([run.Measurement(**r) for r in runs]),
                                     "load_seconds": run_median([r["extra"]["load_seconds"] for r in runs]),
                                     "finish_seconds": run_median([r["extra"]["finish_seconds"] for r in runs])}
                              for name, runs in results["runs"].items()}
    finally:
        run.drop_db(db)
        source.close(keep_pristine=True)
    return results


def checks(args) -> dict:
    """Seconds SQLite spends on each column's exactness check of the ledger read (source.sqlite.SQLite.ok_sql),
    and on the whole ``_unreadable`` expression, each as ``max()`` over the ledger in SQLite itself
    (Python's sqlite3, the library the ODBC driver uses), beside a scan that evaluates no check."""
    import sqlite3
    import time

    from portal_sync.datasets import TRANSACTIONS
    from portal_sync.source.dialect import Dialect
    from portal_sync.source.sqlite import SQLite

    if args.source != "sqlite":
        raise SystemExit("checks: SQLite sources only (other engines' reads have no checks)")
    source = run.Source(args.preset, args.source, args.seed, args.workdir)
    source.prepare()
    path = source.pristine_url.removeprefix("sqlite:///")
    where = TRANSACTIONS.where.format(q='"')
    rows = source.ledger_rows()
    sqlite = SQLite()
    expressions = {"scan (no check)": Dialect().quote_ident(TRANSACTIONS.columns[-1].name)}
    expressions |= {f"{c.name} ({c.kind})": sqlite.ok_sql(c) for c in TRANSACTIONS.columns}
    expressions["whole _unreadable expression"] = sqlite.unreadable_sql(TRANSACTIONS)
    runs: dict[str, list[float]] = {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        for _ in range(args.repeat):
            for name, expression in expressions.items():
                t0 = time.perf_counter()
                db.execute(f'SELECT max({expression}) FROM "{TRANSACTIONS.table}" WHERE {where}').fetchone()
                runs.setdefault(name, []).append(round(time.perf_counter() - t0, 2))
                log.info("%-32s %6.2f s", name, runs[name][-1])
        if args.odbc_reads:
            _odbc_layers(source.odbc, args.repeat, runs)
    finally:
        db.close()
        source.close(keep_pristine=True)
    return {"ledger_rows": rows, "sqlite": sqlite3.sqlite_version, "runs": runs,
            "medians": {name: run_median(values) for name, values in runs.items()}}


def _odbc_layers(odbc: str, repeat: int, runs: dict[str, list[float]]) -> None:
    """The ledger read over ODBC with the product's buffer settings, one layer of its select at a time."""
    import time

    import pyarrow as pa
    from arrow_odbc import read_arrow_batches_from_odbc

    from portal_sync import extract as ex
    from portal_sync.datasets import TRANSACTIONS
    from portal_sync.names import UNREADABLE
    from portal_sync.source.dialect import Dialect
    from portal_sync.source.sqlite import SQLite

    plain, sqlite = Dialect(), SQLite()
    table, where = plain.quote_ident(TRANSACTIONS.table), TRANSACTIONS.where.format(q=plain.quote)
    names = [plain.quote_ident(c.name) for c in TRANSACTIONS.columns]
    computed = [n + " || ''" if c.kind in ("text", "char", "money") else n
                for n, c in zip(names, TRANSACTIONS.columns, strict=True)]
    clipped = [sqlite.column_sql(c) for c in TRANSACTIONS.columns]
    schema = ex.arrow_schema(TRANSACTIONS)
    layers = {  # name: (query, Arrow schema of its result); the first and last are the product's own selects
        "odbc: bare columns": (ex.select_sql(TRANSACTIONS, plain), schema),
        "odbc: text columns computed (x || '')": (f"SELECT {', '.join(computed)} FROM {table} WHERE ({where})", schema),
        "odbc: text columns clipped (product)": (f"SELECT {', '.join(clipped)} FROM {table} WHERE ({where})", schema),
        "odbc: clipped + _unreadable (product)": (ex.select_sql(TRANSACTIONS, sqlite),
                                                  schema.append(pa.field(UNREADABLE, pa.string()))),
    }
    for _ in range(repeat):
        for name, (query, read_schema) in layers.items():
            t0, c0 = time.perf_counter(), time.process_time()
            for _batch in read_arrow_batches_from_odbc(
                    query=query, connection_string=odbc, batch_size=ex.BATCH_ROWS, **sqlite.reader_options(),
                    map_schema=lambda _s, rs=read_schema: rs):
                pass
            runs.setdefault(name, []).append(round(time.perf_counter() - t0, 2))
            log.info("%-32s %6.2f s (CPU %.1f s)", name, runs[name][-1], time.process_time() - c0)


def validate(args) -> dict:
    from portal_sync.migrate import migrate

    source = run.Source(args.preset, args.source, args.seed, args.workdir)
    source.prepare()
    db = f"cps_bench_exp_{args.preset}"
    url = run.create_db(db)
    migrate(url)
    results: dict = {"ledger_rows": source.ledger_rows(), "runs": []}
    try:
        for _ in range(args.repeat):
            m = run_child("validate", "validate_ledger", {"source_odbc": source.odbc, "pg_url": url,
                                                          "modes": args.modes},
                          databases=[db, *source.databases])
            log.info("validate %d rows: %s; failing rows per rule: %s", m.rows, m.extra["validate_seconds"],
                     m.extra["failing"])
            results["runs"].append(m.__dict__)
        results["medians"] = {mode: run_median([r["extra"]["validate_seconds"][mode] for r in results["runs"]])
                              for mode in args.modes}
    finally:
        run.drop_db(db)
        source.close(keep_pristine=True)
    return results


def publish(args) -> dict:
    from portal_sync.migrate import migrate

    source = run.Source(args.preset, args.source, args.seed, args.workdir)
    source.prepare()
    db = f"cps_bench_exp_{args.preset}"
    url = run.create_db(db)
    migrate(url)
    variants = args.publish_variants
    results: dict = {"ledger_rows": source.ledger_rows(), "runs": []}
    try:
        for _ in range(args.repeat):
            m = run_child("publish", "publish_ledger", {"source_odbc": source.odbc, "pg_url": url,
                                                        "variants": variants}, databases=[db, *source.databases])
            log.info("publish %d rows: %s", m.rows, m.extra["publish_seconds"])
            results["runs"].append(m.__dict__)
        results["medians"] = {v: run_median([r["extra"]["publish_seconds"][v] for r in results["runs"]])
                              for v in variants if all(v in r["extra"]["publish_seconds"] for r in results["runs"])}
        for v, why in results["runs"][-1]["extra"].get("refused", {}).items():
            log.info("publish %s refused: %s", v, why)
    finally:
        run.drop_db(db)
        source.close(keep_pristine=True)
    return results


def reconcile(args) -> dict:
    from portal_sync.migrate import migrate

    source = run.Source(args.preset, args.source, args.seed, args.workdir)
    source.prepare()
    db = f"cps_bench_exp_{args.preset}"
    url = run.create_db(db)
    migrate(url)
    variants = ["product", "product_work_mem"]
    results: dict = {"ledger_rows": source.ledger_rows(), "runs": []}
    try:
        for _ in range(args.repeat):
            m = run_child("reconcile", "reconcile_ledger", {"source_odbc": source.odbc, "pg_url": url,
                                                            "variants": variants}, databases=[db, *source.databases])
            log.info("reconcile publish of %d rows: %s; %s", m.rows, m.extra["publish_seconds"], m.extra["counts"])
            results["runs"].append(m.__dict__)
        results["medians"] = {v: run_median([r["extra"]["publish_seconds"][v] for r in results["runs"]])
                              for v in variants}
    finally:
        run.drop_db(db)
        source.close(keep_pristine=True)
    return results


def run_median(values):
    from statistics import median

    return median(values) if values else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", choices=["extract", "checks", "validate", "publish", "reconcile"])
    p.add_argument("--preset", default="town")
    p.add_argument("--source", default="sqlite")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--batch-rows", default="50000,200000")
    p.add_argument("--modes", default="sql,gx", help="validate: which ways to run the rules")
    p.add_argument("--extract-modes", default="serial,prefetch", help="extract: serial, prefetch, split, read, read_split, read_threads, read_since, bare, checks")
    p.add_argument("--odbc-reads", action="store_true", help="checks: also read the ledger over ODBC, layer by layer")
    p.add_argument("--publish-variants", default="product,insert,direct",
                   help="publish: product, insert, direct, partition, sorted, copy, copy_sorted; a _writer suffix "
                        "runs one as portal_sync_writer (see tasks.publish_ledger)")
    p.add_argument("--since-days", default="400", help="extract read_since: comma list of ranges in days")
    p.add_argument("--workdir", type=Path, default=run.DEFAULT_WORKDIR)
    p.add_argument("--out", type=Path, default=run.ROOT / "docs" / "benchmarks" / "experiments.json")
    args = p.parse_args()
    args.batch_rows = [int(x) for x in args.batch_rows.split(",")]
    args.modes = [x for x in args.modes.split(",") if x]
    args.extract_modes = [x for x in args.extract_modes.split(",") if x]
    args.publish_variants = [x for x in args.publish_variants.split(",") if x]
    args.since_days = [int(x) for x in args.since_days.split(",")]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    data = json.loads(args.out.read_text()) if args.out.exists() else {}
    result = {"extract": extract, "checks": checks, "validate": validate, "publish": publish,
              "reconcile": reconcile}[args.experiment](args)
    result.update({"finished": datetime.now(UTC).isoformat(timespec="seconds"), "argv": sys.argv[1:],
                   "commit": run.machine()["commit"]})
    data[f"{args.experiment} {args.preset}/{args.source}"] = result
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1, default=str) + "\n")
    for name, s in result["medians"].items():
        if not isinstance(s, dict):
            print(f"{name:16} {s:.1f} s (median)")
            continue
        print(f"{name:16} {s['rows']:>10,} rows {s['wall']:7.1f} s {s['rows_per_s']:>9,.0f} rows/s  load "
              f"{s['load_seconds']:.1f} s  index+analyze {s['finish_seconds']:.1f} s  CPU {s['cpu']:.1f} s  "
              f"PG CPU {s['pg_cpu']:.1f} s  RSS {s['rss_mib']:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
