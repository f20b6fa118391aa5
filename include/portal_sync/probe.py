"""Does a data set's publish have any work? Answered from the rows in memory, before any table exists.

Most runs change nothing (docs/adr/0010): staging, indexing, validating and merging
thousands of unchanged rows every five minutes was most of a fleet's cost. When every
extract the projection needs fits in memory, the rows go to PostgreSQL as one JSON
parameter, are projected exactly as the publish would project them
(``publish.projection_sql``) and compared with the portal. Only a data set that has
nothing to insert, update, restore, void or tombstone is "unchanged"; any doubt
(a duplicate key, a value read inexactly, a row a check would refuse, a quarantined row)
sends it the normal way. Warnings about rows that do not change are not recorded again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal

import psycopg
import pyarrow as pa

from portal_sync.datasets import Dataset, Extract, amount_sql
from portal_sync.extract import ROW_ID, UNREADABLE
from portal_sync.publish import projection_sql, resident_scope
from portal_sync.rules import Rule
from portal_sync.sqltext import quote_pg_ident as _q
from portal_sync.sqltext import render_relations
from portal_sync.stage import pg_type

HOLD_ROWS = 100_000
"""Rows of one data set held in memory for the probe; a bigger read is staged as it streams."""


def _plain(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def rows_json(batches: Sequence[pa.RecordBatch]) -> str:
    """The rows as a JSON array of objects, values as PostgreSQL reads them back exactly."""
    rows = []
    for batch in batches:
        names = batch.schema.names
        columns = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
        rows.extend({n: _plain(v) for n, v in zip(names, values, strict=True)} for values in zip(*columns, strict=True))
    return json.dumps(rows, separators=(",", ":"))


def _relation(extract: Extract, param: str) -> str:
    columns = ", ".join([f"{_q(ROW_ID)} bigint"] + [f"{_q(c.name)} {pg_type(c)}" for c in extract.columns]
                        + [f"{_q(UNREADABLE)} text"])
    amounts = "".join(f", {amount_sql(f'r.{_q(money)}')} AS {_q(name)}"  # as the staging table stores them
                      for name, money in extract.amount_columns.items())
    return f"(SELECT r.*{amounts} FROM jsonb_to_recordset(%({param})s::jsonb) AS r({columns}))"


def doubtful(ds: Dataset, held: Mapping[str, Sequence[pa.RecordBatch]]) -> bool:
    """Rows the checks would refuse whatever the portal holds: a value read inexactly."""
    for batches in held.values():
        for batch in batches:
            if UNREADABLE in batch.schema.names and batch.column(UNREADABLE).null_count != batch.num_rows:
                return True
    return False


def changed_rows_sql(ds: Dataset, mode: str, *, relations: Mapping[str, str], enabled: Sequence[str]) -> str:
    """SELECT of the ``_row_id`` of every staged row the publish would insert, update or bring back
    from a tombstone: the publish's own projection and change test, row by row (with the
    ``%(community)s``, ``%(run_key)s``, ``%(dataset)s``, ``%(read_at)s``, ``%(tz)s`` and
    ``%(visible_statuses)s`` parameters of the publish)."""
    scope = resident_scope(enabled) if ds.name == "residents" else None
    projection = projection_sql(ds, {}, scope, mode, relations=relations, row_id=True)
    target = f"portal.{_q(ds.portal_table)}"
    value_cols = [c for c in ds.projection if c not in ds.key]
    tombstones = ["deleted_at"] + (["archived_at"] if ds.delete_mode == "archive_or_soft" else [])
    was_gone = " OR ".join(f"t.{c} IS NOT NULL" for c in tombstones)
    changed = (f"(({', '.join(f't.{_q(c)}' for c in value_cols)}) IS DISTINCT FROM"
               f" ({', '.join(f'p.{_q(c)}' for c in value_cols)}) OR {was_gone})")
    key_join = " AND ".join(f"t.{_q(k)} = p.{_q(k)}" for k in ("community_code", *ds.key))
    return (f"SELECT p.{_q(ROW_ID)} FROM ({projection}) p LEFT JOIN {target} t ON {key_join}"
            f" AND t.community_code = %(community)s WHERE t.community_code IS NULL OR {changed}")


def _any(query: str) -> str:
    """Whether ``query`` returns a row, planned for reading all of them. Under EXISTS the planner picks
    the plan that finds a first row soonest (nested loops over the held rows, which it takes for 100),
    while a probe usually finds none and pays the whole loop: a town's customers against their
    locations, 4 M comparisons, most of an idle run's PostgreSQL time (docs/benchmarks/fleet.md)."""
    return f"(SELECT count(*) FROM ({query}) AS found) > 0"


def has_work(conn: psycopg.Connection, ds: Dataset, *, mode: str, held: Mapping[str, Sequence[pa.RecordBatch]],
             community: str, run_key: str, read_at: datetime | None, enabled: Sequence[str], time_zone: str,
             visible_statuses: Sequence[str], rules: Sequence[Rule]) -> bool:
    """True unless the publish of these rows would change nothing in the portal and no row would be
    refused (a refusal is recorded and quarantines the row, even when its portal row stays)."""
    if doubtful(ds, held):
        return True
    extracts = {e.name: e for e in (ds.primary, *ds.supporting, *([ds.reconcile_keys] if ds.reconcile_keys else []))}
    params: dict[str, object] = {"community": community, "run_key": run_key, "dataset": ds.name, "read_at": read_at,
                                 "tz": time_zone, "visible_statuses": list(visible_statuses)}
    relations, held_rows = {}, []
    for name, batches in held.items():
        params[f"rows_{name}"] = rows_json(batches)
        relations[name] = _q(f"held_{name}")
        # Materialized once: inline, a join would unpack the JSON again for every outer row.
        held_rows.append(f"{relations[name]} AS MATERIALIZED {_relation(extracts[name], f'rows_{name}')}")
    scope = resident_scope(enabled) if ds.name == "residents" else None
    target = f"portal.{_q(ds.portal_table)}"
    tombstones = ["deleted_at"] + (["archived_at"] if ds.delete_mode == "archive_or_soft" else [])
    primary = render_relations("{" + ds.primary.name + "}", relations)
    staged_key = ", ".join(f"s.{_q(k)}" for k in ds.primary.key)
    checks = [
        _any(changed_rows_sql(ds, mode, relations=relations, enabled=enabled)),
        _any(f"SELECT 1 FROM {primary} s GROUP BY {staged_key} HAVING count(*) > 1"),
    ]
    refusing = [f"({render_relations(r.bad_rows_where, relations)})" for r in rules if r.severity == "refuse"]
    if refusing:
        checks.append(_any(f"SELECT 1 FROM {primary} s WHERE {' OR '.join(refusing)}"))
    if ds.name == "charges" and mode != "full":
        checks.append(_any(
            f"SELECT 1 FROM {primary} s JOIN portal.charges t ON t.community_code = %(community)s"
            ' AND t.charge_id = s."VoidsTransactionID" AND NOT t.voided WHERE s."TransactionType" = \'VOID\''
        ))
    if mode != "window":
        keys = ds.primary if mode == "full" or ds.reconcile_keys is None else ds.reconcile_keys
        source_keys = render_relations("{" + keys.name + "}", relations)
        join = " AND ".join(f"s.{_q(src)} = t.{_q(dst)}" for src, dst in zip(keys.key, ds.key, strict=True))
        gone = f"NOT EXISTS (SELECT 1 FROM {source_keys} s WHERE {join})"
        if scope:
            gone = f"({gone} OR NOT EXISTS (SELECT 1 FROM (SELECT t.resident_id AS \"ContactID\") s WHERE {scope}))"
        if read_at is not None:
            gone = f"({gone} AND (t.source_read_at IS NULL OR t.source_read_at <= %(read_at)s))"
        live = " AND ".join(f"t.{c} IS NULL" for c in tombstones)
        checks.append(_any(f"SELECT 1 FROM {target} t WHERE t.community_code = %(community)s AND {live} AND {gone}"))
    return bool(conn.execute(f"WITH {', '.join(held_rows)} SELECT " + " OR ".join(f"({c})" for c in checks),
                             params).fetchone()[0])
