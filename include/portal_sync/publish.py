"""The publish: every data set of a run merges into the portal in ONE transaction.

Residents see the previous sync or the new one, never a mix: the portal tables are
only written here, inside a single transaction that also takes a per-community
advisory lock (two runs of a community cannot interleave their publishes) and
advances the high-water marks (docs/adr/0001, 0004).

Per data set the merge is set-based SQL: one join of the projected accepted staged rows
with the portal keeps the new, changed and tombstoned ones in a temporary table, which
is upserted with an ``IS DISTINCT FROM`` guard (unchanged rows are not rewritten) and
with version guards so an older read never replaces a newer one, then
(full snapshots and reconciliations only) tombstone the rows whose key is absent
from the source. Absence is judged against every staged key, refused rows included,
so a refused row keeps its previous portal version (docs/adr/0002).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from portal_sync.datasets import DATASETS, Dataset, Extract
from portal_sync.sqltext import quote_pg_ident as _q
from portal_sync.sqltext import render_relations, render_staged
from portal_sync.stage import BIG_STATEMENT_MEMORY
from portal_sync.store import marks, quality

MODES = ("full", "window", "reconcile")
MATERIALISE_UP_TO = 200_000  # projected rows; see merge_dataset


class MassDeleteRefused(RuntimeError):
    """A data set would lose more live rows than the guard allows; it is not published."""


@dataclass
class PublishCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    superseded: int = 0
    deleted: int = 0
    restored: int = 0
    archived: int = 0
    seconds: float = 0.0
    mark_after: datetime | None = None
    first_load: bool = False  # the community's first rows in the table: its statistics must be gathered

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PublishInput:
    """What the publish needs to know about one validated data set of the run."""

    dataset: Dataset
    tables: Mapping[str, str]  # extract name -> staging table name
    mode: str = "full"  # full | window | reconcile
    read_at: datetime | None = None  # when the source read began (row version)
    new_mark: datetime | None = None  # high-water mark this publish may advance to
    unchanged_rows: int | None = None  # set when probe.py found nothing to publish: only the mark moves


@dataclass(frozen=True)
class DeleteGuard:
    """Stops a data set whose publish would tombstone more than ``max_share`` of its live rows.

    Lines a period close purged (dated before the latest PurgeBefore) are passed as ``closed``: their
    archiving is the announced outcome of the close, so they count neither as doomed nor in the base
    the share is taken of (the ledger the close leaves live).
    """

    max_share: float = 0.10
    min_rows: int = 25
    allowed: tuple[str, ...] = ()

    def check(self, dataset: str, community: str, doomed: int, live: int, closed: int = 0) -> None:
        doomed, live = doomed - closed, live - closed
        if dataset in self.allowed or doomed <= max(self.min_rows, self.max_share * live):
            return
        besides = f" ({closed} line(s) dated before the period close's PurgeBefore are archived and not counted)" \
            if closed else ""
        raise MassDeleteRefused(
            f"{community} {dataset}: would delete or archive {doomed} of {live} live rows{besides} "
            f"(more than {self.max_share:.0%}); not published. If the source really lost them, allow it once: "
            f"trigger the DAG with conf {{\"allow_mass_delete\": [\"{dataset}\"]}} "
            f"(airflow dags trigger <dag_id> --conf '{{\"allow_mass_delete\": [\"{dataset}\"]}}')"
        )


def resident_scope(enabled: Sequence[str]) -> str:
    """Contacts a live portal account (holder or landlord) or assessment (owner) points to."""
    parts = []
    if "accounts" in enabled:
        parts.append(
            "EXISTS (SELECT 1 FROM portal.accounts a WHERE a.community_code = %(community)s"
            ' AND a.deleted_at IS NULL AND a.resident_id = s."ContactID")'
        )
        parts.append(
            "EXISTS (SELECT 1 FROM portal.accounts a WHERE a.community_code = %(community)s"
            ' AND a.deleted_at IS NULL AND a.landlord_resident_id = s."ContactID")'
        )
    if "assessments" in enabled:
        parts.append(
            "EXISTS (SELECT 1 FROM portal.assessments x WHERE x.community_code = %(community)s"
            ' AND x.deleted_at IS NULL AND x.owner_resident_id = s."ContactID")'
        )
    return "(" + (" OR ".join(parts) or "false") + ")"


def projection_sql(ds: Dataset, tables: Mapping[str, str], scope: str | None, mode: str, *,
                   relations: Mapping[str, str] | None = None, row_id: bool = False) -> str:
    """The accepted staged rows as portal rows (refused rows left out), with ``%(community)s``,
    ``%(read_at)s``, ``%(run_key)s`` and ``%(dataset)s`` parameters; the merge reads from it.

    ``relations`` puts row sources of the sync's own making in place of the staging tables
    (probe.py: the rows of an idle run, compared without creating a table); ``row_id`` adds the
    staged row's ``_row_id`` (which staged rows would change the portal)."""
    exprs = dict(ds.projection)
    if ds.name == "charges" and mode != "full":
        # A window holds only part of the ledger: a line stays voided once a VOID named it.
        exprs["voided"] = (
            f"({exprs['voided']} OR EXISTS (SELECT 1 FROM portal.charges p WHERE p.community_code = %(community)s"
            ' AND p.charge_id = s."TransactionID" AND p.voided))'
        )
    cols = ", ".join(f"{expr} AS {_q(col)}" for col, expr in exprs.items())
    where = quality.refused_row_filter("s") + (f" AND {scope}" if scope else "")
    staged_id = ', s."_row_id"' if row_id else ""
    text = (f"SELECT %(community)s::text AS community_code, {cols}, %(read_at)s::timestamptz AS source_read_at"
            f"{staged_id} FROM {ds.from_clause} WHERE {where}")
    return render_relations(text, relations) if relations is not None else render_staged(text, tables)


def merge_dataset(
    conn: psycopg.Connection,
    item: PublishInput,
    *,
    community: str,
    run_key: str,
    params: Mapping[str, object],
    enabled: Sequence[str],
    guard: DeleteGuard,
) -> PublishCounts:
    ds, tables, mode = item.dataset, item.tables, item.mode
    if mode not in MODES:
        raise ValueError(f"unknown publish mode {mode!r}")
    started = time.monotonic()
    counts = PublishCounts()
    target = f"portal.{_q(ds.portal_table)}"
    args = {**params, "community": community, "run_key": run_key, "dataset": ds.name, "read_at": item.read_at}
    scope = resident_scope(enabled) if ds.name == "residents" else None

    all_cols = ", ".join(_q(c) for c in (*ds.portal_columns, "source_read_at"))
    projection = projection_sql(ds, tables, scope, mode)
    partition = conn.execute("SELECT sync.community_partition(%s, %s)::text",
                             (ds.portal_table, community)).fetchone()[0]
    if mode == "full" and not conn.execute(
        f"SELECT EXISTS (SELECT 1 FROM {target} WHERE community_code = %(community)s)", args
    ).fetchone()[0]:
        # First load of the community: nothing can conflict, be restored, superseded or deleted, so
        # one plain INSERT (half the time of the upsert, docs/benchmarks); a duplicate key fails as
        # it would in the upsert when the key is built.
        counts.inserted = _first_load(conn, ds.portal_table, community, partition, all_cols, projection, args)
        counts.first_load = True
        counts.seconds = round(time.monotonic() - started, 3)
        return counts
    if partition is None:  # a community's first rows by another path (a window): an empty partition first
        conn.execute("SELECT sync.new_community_partition(%s, %s)", (ds.portal_table, community))
        conn.execute("SELECT sync.attach_community_partition(%s, %s)", (ds.portal_table, community))

    # The count reads the staged rows without computing the projected values. A small projection
    # (a window, a snapshot) is then materialised and analysed: inline, the voided test's subplans
    # lead the planner to hash a whole portal ledger for a small window. A large one is joined
    # inline: writing it to a temp table only to read it once more costs more than it saves, and
    # there hashing the portal side is the right plan anyway (docs/benchmarks).
    total = conn.execute(f"SELECT count(*) FROM ({projection}) p", args).fetchone()[0]
    if total <= MATERIALISE_UP_TO:
        projected = _q(f"_publish_{ds.name}")
        conn.execute(f"DROP TABLE IF EXISTS {projected}")
        conn.execute(f"CREATE TEMP TABLE {projected} ON COMMIT DROP AS {projection}", args)
        conn.execute(f"ANALYZE {projected}")
    else:
        projected = f"({projection})"

    key_cols = ("community_code", *ds.key)
    key_list = ", ".join(_q(k) for k in key_cols)
    value_cols = [c for c in ds.projection if c not in ds.key]
    tombstones = ["deleted_at"] + (["archived_at"] if ds.delete_mode == "archive_or_soft" else [])
    was_gone = " OR ".join(f"t.{c} IS NOT NULL" for c in tombstones)
    old = ", ".join(f"t.{_q(c)}" for c in value_cols)

    # Never backwards: not an older read over a newer one, not an older version over a newer one.
    newer = ["(t.source_read_at IS NULL OR {new}.source_read_at >= t.source_read_at)"]
    if ds.version_column:
        v = _q(ds.version_column)
        # A local stamp in the hour a DST fall-back repeats has two readings (projected as the later
        # one), so an older-looking version may be the newer: inside that hour the newer read wins.
        zone = sql.Literal(params["tz"]).as_string(conn)
        fold = "((({x} - interval '1 hour') AT TIME ZONE {z}) = ({x} AT TIME ZONE {z}))"
        newer.append(f"({{new}}.{v} >= t.{v} OR ({{new}}.source_read_at > t.source_read_at"
                     f" AND {fold.format(x='{new}.' + v, z=zone)} AND {fold.format(x='t.' + v, z=zone)}))")
    newer_sql = " AND ".join(newer)
    changed_p = f"(({old}) IS DISTINCT FROM ({', '.join(f'p.{_q(c)}' for c in value_cols)}) OR {was_gone})"

    # Classify first: one join keeps the rows the upsert has work for (new, changed, or back from a
    # tombstone); a reconciliation of a city ledger then upserts 1 % of it, not all of it.
    todo = _q(f"_publish_{ds.name}_todo")
    conn.execute(f"DROP TABLE IF EXISTS {todo}")
    key_join = " AND ".join(f"t.{_q(k)} = p.{_q(k)}" for k in key_cols)
    conn.execute(
        f"CREATE TEMP TABLE {todo} ON COMMIT DROP AS SELECT p.*, t.community_code IS NULL AS _is_new"
        f" FROM {projected} p"
        # The community named, not only joined on: else PostgreSQL reads every community's rows
        # (a reconciliation in a 100-town portal: 80 s instead of 2, docs/benchmarks/portal-scale.md).
        f" LEFT JOIN {target} t ON {key_join} AND t.community_code = %(community)s"
        f" WHERE t.community_code IS NULL OR {changed_p}",
        args,
    )
    conn.execute(f"ANALYZE {todo}")

    counts.restored, counts.superseded = conn.execute(
        f"SELECT count(*) FILTER (WHERE ({was_gone}) AND {newer_sql.format(new='p')}),"
        f" count(*) FILTER (WHERE {changed_p} AND NOT ({newer_sql.format(new='p')}))"
        f" FROM {todo} p JOIN {target} t USING ({key_list}) WHERE t.community_code = %(community)s", args
    ).fetchone()

    sets = ", ".join(
        [f"{_q(c)} = EXCLUDED.{_q(c)}" for c in (*value_cols, "source_read_at")] + [f"{c} = NULL" for c in tombstones]
    )
    new = ", ".join(f"EXCLUDED.{_q(c)}" for c in value_cols)
    # The rows the classify found no portal row for are the inserts (the community's advisory lock keeps
    # any other writer of its rows out); the upsert's row count is inserts plus the updates its guards let
    # through. (RETURNING xmax is refused on a partitioned table.)
    inserted = conn.execute(f"SELECT count(*) FROM {todo} WHERE _is_new").fetchone()[0]
    written = conn.execute(
        f"INSERT INTO {target} AS t ({all_cols}) SELECT {all_cols} FROM {todo}"
        f" ON CONFLICT ({key_list}) DO UPDATE SET {sets}"
        f" WHERE (({old}) IS DISTINCT FROM ({new}) OR {was_gone}) AND {newer_sql.format(new='EXCLUDED')}"
    ).rowcount
    counts.inserted, counts.updated = inserted, written - inserted
    counts.unchanged = total - counts.inserted - counts.updated - counts.superseded

    if ds.name == "charges" and mode != "full":
        # A VOID read now may name a line published long ago, outside this window.
        conn.execute(
            render_staged(
                "UPDATE portal.charges t SET voided = true WHERE t.community_code = %(community)s AND NOT t.voided"
                ' AND t.charge_id IN (SELECT s."VoidsTransactionID" FROM {transactions} s'
                f" WHERE s.\"TransactionType\" = 'VOID' AND {quality.refused_row_filter('s')})",
                tables,
            ),
            args,
        )

    if mode != "window":
        _tombstone(conn, item, target, tombstones, scope, args, counts, guard, community)

    counts.seconds = round(time.monotonic() - started, 3)
    return counts


def _first_load(conn: psycopg.Connection, table: str, community: str, partition: str | None, all_cols: str,
                projection: str, args: Mapping[str, object]) -> int:
    """Insert a community's first rows; into a new partition of its own when it has none (docs/adr/0011).

    The new partition has no index while the rows go in; attaching it builds the key and indexes from
    the rows (sorted builds), about half the time of inserting a city ledger into its indexes."""
    into = f"portal.{_q(table)}"  # its partition exists but is empty (rows deleted by hand): the indexed insert
    if partition is None:
        into = conn.execute("SELECT sync.new_community_partition(%s, %s)::text", (table, community)).fetchone()[0]
    inserted = conn.execute(f"INSERT INTO {into} ({all_cols}) SELECT {all_cols} FROM ({projection}) p",
                            args).rowcount
    if partition is None:
        conn.execute(f"SET LOCAL maintenance_work_mem = '{BIG_STATEMENT_MEMORY}'")
        conn.execute("SELECT sync.attach_community_partition(%s, %s)", (table, community))
    return inserted


def _tombstone(conn, item: PublishInput, target: str, tombstones: list[str], scope: str | None, args: dict,
               counts: PublishCounts, guard: DeleteGuard, community: str) -> None:
    """Mark rows whose key the source no longer has (deleted, or archived by a period close)."""
    ds, tables = item.dataset, item.tables
    keys_extract = _keys_extract(item)
    source_keys = render_staged("{" + keys_extract.name + "}", tables)
    join = " AND ".join(f"s.{_q(src)} = t.{_q(dst)}" for src, dst in zip(keys_extract.key, ds.key, strict=True))
    gone = f"NOT EXISTS (SELECT 1 FROM {source_keys} s WHERE {join})"
    if scope:
        gone = f"({gone} OR NOT EXISTS (SELECT 1 FROM (SELECT t.resident_id AS \"ContactID\") s WHERE {scope}))"
    if item.read_at is not None:  # never backwards: an older read cannot judge a row a newer read wrote
        gone = f"({gone} AND (t.source_read_at IS NULL OR t.source_read_at <= %(read_at)s))"
    live = f"t.community_code = %(community)s AND {' AND '.join(f't.{c} IS NULL' for c in tombstones)}"
    # The doomed keys come from one anti-join into a temp table (as a count(*) FILTER it was a
    # subplan probing the staged keys once per portal row); the updates then go by key.
    gone_keys = _q(f"_publish_{ds.name}_gone")
    keep = ", ".join(f"t.{_q(k)}" for k in ds.key)
    if ds.delete_mode == "archive_or_soft":
        keep += ", t.transaction_date"
    conn.execute(f"DROP TABLE IF EXISTS {gone_keys}")
    doomed = conn.execute(
        f"CREATE TEMP TABLE {gone_keys} ON COMMIT DROP AS SELECT {keep} FROM {target} t WHERE {live} AND {gone}", args
    ).rowcount
    live_rows = conn.execute(f"SELECT count(*) FROM {target} t WHERE {live}", args).fetchone()[0]
    closed = 0
    if ds.delete_mode == "archive_or_soft" and doomed:
        # Dated before the latest PurgeBefore: a period close purged them, they are archived, not lost.
        purge = f'(SELECT max("PurgeBefore") FROM {render_staged("{period_closes}", tables)})'
        closed = conn.execute(f"SELECT count(*) FROM {gone_keys} g WHERE g.transaction_date < {purge}",
                              args).fetchone()[0]
    guard.check(ds.name, community, doomed, live_rows, closed=closed)
    if not doomed:
        return
    hide = ", portal_visible = false" if "portal_visible" in ds.projection else ""
    stamp = "source_read_at = %(read_at)s"
    by_key = " AND ".join(f"t.{_q(k)} = g.{_q(k)}" for k in ds.key)
    doomed_rows = f"FROM {gone_keys} g WHERE t.community_code = %(community)s AND {by_key}"
    if ds.delete_mode == "archive_or_soft":
        counts.archived = conn.execute(
            f"UPDATE {target} t SET archived_at = now(), {stamp} {doomed_rows} AND g.transaction_date < {purge}",
            args,
        ).rowcount
        counts.deleted = conn.execute(
            f"UPDATE {target} t SET deleted_at = now(), {stamp}{hide} {doomed_rows}"
            f" AND NOT coalesce(g.transaction_date < {purge}, false)",
            args,
        ).rowcount
    else:
        counts.deleted = conn.execute(f"UPDATE {target} t SET deleted_at = now(), {stamp}{hide} {doomed_rows}",
                                      args).rowcount


def _maintain_quarantine(conn: psycopg.Connection, item: PublishInput, community: str, run_key: str) -> None:
    """Refused rows stay in quarantine (re-read every run) until a run accepts them or they are gone."""
    ds, tables = item.dataset, item.tables
    staged = render_staged("{" + ds.primary.name + "}", tables)
    staged_keys = f"SELECT s.{_q(ds.primary.key[0])}::text AS row_key FROM {staged} s"
    gone_keys = None
    if item.mode != "window":  # the run saw every source key: quarantined rows that are gone are released
        keys_extract = _keys_extract(item)
        source_keys = render_staged("{" + keys_extract.name + "}", tables)
        gone_keys = f"SELECT s.{_q(keys_extract.key[0])}::text AS row_key FROM {source_keys} s"
    quality.maintain_quarantine(conn, community=community, dataset=ds.name, run_key=run_key,
                                staged_keys=staged_keys, gone_keys=gone_keys)


def _keys_extract(item: PublishInput) -> Extract:
    """The extract that holds every source key in a snapshot or reconciliation."""
    ds = item.dataset
    return ds.primary if item.mode == "full" or ds.reconcile_keys is None else ds.reconcile_keys


ANALYZE_AFTER_ROWS = 10_000


def refresh_statistics(conn: psycopg.Connection, community: str, counts: Mapping[str, PublishCounts]) -> list[str]:
    """ANALYZE the portal tables a publish changed a lot, after its commit.

    After a city's first load the planner still believed the community had one row and ran the
    next reconciliation's tombstone pass as millions of index probes (docs/benchmarks). Outside
    the publish transaction, so two communities' publishes never wait on each other's ANALYZE.
    Through ``sync.analyze_community_rows``, which analyses the community's own partition (an ANALYZE of
    the parent would sample every community's) as the tables' owner: PostgreSQL skips (with a mere
    WARNING) an ANALYZE by the writer group, which owns no portal table (docs/adr/0006, 0011).
    A community's first load is analysed whatever its size: autovacuum may not come to a town's
    partition before its next run, and the planner estimated it at one row (docs/benchmarks/portal-scale.md).
    """
    analyzed = []
    for name, c in counts.items():
        if c.first_load or c.inserted + c.updated + c.deleted + c.archived >= ANALYZE_AFTER_ROWS:
            table = DATASETS[name].portal_table
            conn.execute("SELECT sync.analyze_community_rows(%s, %s)", (table, community))
            analyzed.append(f"portal.{_q(table)}")
    return analyzed


@dataclass
class PublishOutcome:
    counts: dict[str, PublishCounts]
    refused: dict[str, str]  # data set -> why it was not published


def publish(
    conn: psycopg.Connection,
    *,
    community: str,
    community_name: str,
    time_zone: str,
    run_key: str,
    inputs: Sequence[PublishInput],
    enabled: Sequence[str],
    visible_statuses: Sequence[str],
    guard: DeleteGuard | None = None,
    merged: Callable[[int], object] | None = None,
) -> PublishOutcome:
    """Merge every given data set in one transaction; a data set the delete guard stops is left out.

    ``merged`` is told the rows each data set's merge went through, as it finishes (progress lines)."""
    params = {"tz": time_zone, "visible_statuses": list(visible_statuses)}
    guard = guard or DeleteGuard()
    by_name = {i.dataset.name: i for i in inputs}
    outcome = PublishOutcome({}, {})
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('portal_sync'), hashtext(%s))", (community,))
        # The classify join hashes a whole portal table of the community: at the default 4 MB a city
        # ledger's hash goes to disk in many batches (docs/benchmarks).
        conn.execute(f"SET LOCAL work_mem = '{BIG_STATEMENT_MEMORY}'")
        conn.execute(
            "INSERT INTO portal.communities (community_code, name, time_zone, synced_at) VALUES (%s, %s, %s, now())"
            " ON CONFLICT (community_code) DO UPDATE SET name = EXCLUDED.name, time_zone = EXCLUDED.time_zone,"
            " synced_at = EXCLUDED.synced_at, deleted_at = NULL",
            (community, community_name, time_zone),
        )
        for name in DATASETS:  # declared order: residents come after accounts and assessments
            item = by_name.get(name)
            if item is None:
                continue
            try:
                with conn.transaction():  # a savepoint: a refused data set leaves no trace
                    if item.unchanged_rows is not None:
                        counts = PublishCounts(unchanged=item.unchanged_rows)
                    else:
                        counts = merge_dataset(conn, item, community=community, run_key=run_key, params=params,
                                               enabled=enabled, guard=guard)
                        _maintain_quarantine(conn, item, community, run_key)
                    counts.mark_after = marks.advance_mark(conn, community, name, run_key, item.new_mark)
                outcome.counts[name] = counts
                if merged is not None:
                    merged(counts.inserted + counts.updated + counts.unchanged + counts.superseded
                           + counts.deleted + counts.archived)
            except MassDeleteRefused as exc:
                outcome.refused[name] = str(exc)
    return outcome
