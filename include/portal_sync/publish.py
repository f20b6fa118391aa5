"""The publish: every data set of a run merges into the portal in ONE transaction.

Residents see the previous sync or the new one, never a mix: the portal tables are
only written here, inside a single transaction that also takes a per-community
advisory lock (two runs of a community cannot interleave their publishes).

Per data set the merge is set-based SQL: project the accepted staged rows into a
temporary table, upsert with an ``IS DISTINCT FROM`` guard so unchanged rows are not
rewritten, then soft-delete the rows whose key is absent from the staged snapshot.
Absence is judged against every staged key, refused rows included, so a row that
fails validation keeps its previous portal version instead of being deleted.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import psycopg

from portal_sync.datasets import DATASETS, Dataset
from portal_sync.stage import STAGE_SCHEMA


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class PublishCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    restored: int = 0
    archived: int = 0
    seconds: float = 0.0
    extra: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PublishInput:
    """What the publish needs to know about one validated data set of the run."""

    dataset: Dataset
    tables: Mapping[str, str]  # extract name -> staging table name


def _render(text: str, tables: Mapping[str, str]) -> str:
    for name, table in tables.items():
        text = text.replace("{" + name + "}", f"{_q(STAGE_SCHEMA)}.{_q(table)}")
    return text


def _resident_scope(enabled: Sequence[str]) -> str:
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


def _projection_sql(ds: Dataset, tables: Mapping[str, str], scope: str | None) -> str:
    cols = ", ".join(f"{expr} AS {_q(col)}" for col, expr in ds.projection.items())
    refused = (
        "NOT EXISTS (SELECT 1 FROM sync.run_findings f WHERE f.run_key = %(run_key)s"
        " AND f.dataset = %(dataset)s AND f.severity = 'refuse' AND f.row_id = s._row_id)"
    )
    where = refused + (f" AND {scope}" if scope else "")
    return _render(
        f"SELECT %(community)s::text AS community_code, {cols} FROM {ds.from_clause} WHERE {where}", tables
    )


def merge_dataset(
    conn: psycopg.Connection,
    ds: Dataset,
    tables: Mapping[str, str],
    *,
    community: str,
    run_key: str,
    params: Mapping[str, object],
    enabled: Sequence[str],
) -> PublishCounts:
    started = time.monotonic()
    counts = PublishCounts()
    target = f"portal.{_q(ds.portal_table)}"
    temp = _q(f"_publish_{ds.name}")
    args = {**params, "community": community, "run_key": run_key, "dataset": ds.name}
    scope = _resident_scope(enabled) if ds.name == "residents" else None

    conn.execute(f"DROP TABLE IF EXISTS {temp}")
    conn.execute(f"CREATE TEMP TABLE {temp} ON COMMIT DROP AS {_projection_sql(ds, tables, scope)}", args)
    conn.execute(f"ANALYZE {temp}")

    key_cols = ("community_code", *ds.key)
    key_list = ", ".join(_q(k) for k in key_cols)
    value_cols = [c for c in ds.projection if c not in ds.key]
    tombstones = ["deleted_at"] + (["archived_at"] if ds.delete_mode == "archive_or_soft" else [])
    was_gone = " OR ".join(f"t.{c} IS NOT NULL" for c in tombstones)

    counts.restored = conn.execute(
        f"SELECT count(*) FROM {temp} p JOIN {target} t USING ({key_list}) WHERE {was_gone}"
    ).fetchone()[0]

    all_cols = ", ".join(_q(c) for c in ds.portal_columns)
    sets = ", ".join([f"{_q(c)} = EXCLUDED.{_q(c)}" for c in value_cols] + [f"{c} = NULL" for c in tombstones])
    old = ", ".join(f"t.{_q(c)}" for c in value_cols)
    new = ", ".join(f"EXCLUDED.{_q(c)}" for c in value_cols)
    inserted, updated, total = conn.execute(
        f"WITH up AS (INSERT INTO {target} AS t ({all_cols}) SELECT {all_cols} FROM {temp}"
        f" ON CONFLICT ({key_list}) DO UPDATE SET {sets}"
        f" WHERE ({old}) IS DISTINCT FROM ({new}) OR {was_gone}"
        " RETURNING (xmax = 0) AS is_new)"
        f" SELECT count(*) FILTER (WHERE is_new), count(*) FILTER (WHERE NOT is_new), (SELECT count(*) FROM {temp})"
        " FROM up"
    ).fetchone()
    counts.inserted, counts.updated = inserted, updated
    counts.unchanged = total - inserted - updated

    # Absent from the snapshot: judged against ALL staged keys (refused rows keep their old version).
    primary = _render("{" + ds.primary.name + "}", tables)
    join = " AND ".join(
        f"s.{_q(src)} = t.{_q(dst)}" for src, dst in zip(ds.primary.key, ds.key, strict=True)
    )
    gone = f"NOT EXISTS (SELECT 1 FROM {primary} s WHERE {join})"
    if scope:
        gone = f"({gone} OR NOT EXISTS (SELECT 1 FROM (SELECT t.resident_id AS \"ContactID\") s WHERE {scope}))"
    live = f"t.community_code = %(community)s AND {' AND '.join(f't.{c} IS NULL' for c in tombstones)}"
    hide = ", portal_visible = false" if "portal_visible" in ds.projection else ""

    if ds.delete_mode == "archive_or_soft":
        closes = _render("{period_closes}", tables)
        purge = f'(SELECT max("PurgeBefore") FROM {closes})'
        counts.archived = conn.execute(
            f"UPDATE {target} t SET archived_at = now() WHERE {live} AND {gone}"
            f" AND t.transaction_date < {purge}",
            args,
        ).rowcount
        counts.deleted = conn.execute(
            f"UPDATE {target} t SET deleted_at = now(){hide} WHERE {live} AND {gone}"
            f" AND NOT coalesce(t.transaction_date < {purge}, false)",
            args,
        ).rowcount
    else:
        counts.deleted = conn.execute(
            f"UPDATE {target} t SET deleted_at = now(){hide} WHERE {live} AND {gone}", args
        ).rowcount
    counts.seconds = round(time.monotonic() - started, 3)
    return counts


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
) -> dict[str, PublishCounts]:
    """Merge every given data set in one transaction; return counts per data set."""
    params = {"tz": time_zone, "visible_statuses": list(visible_statuses)}
    by_name = {i.dataset.name: i for i in inputs}
    results: dict[str, PublishCounts] = {}
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('portal_sync'), hashtext(%s))", (community,))
        conn.execute(
            "INSERT INTO portal.communities (community_code, name, time_zone, synced_at) VALUES (%s, %s, %s, now())"
            " ON CONFLICT (community_code) DO UPDATE SET name = EXCLUDED.name, time_zone = EXCLUDED.time_zone,"
            " synced_at = EXCLUDED.synced_at, deleted_at = NULL",
            (community, community_name, time_zone),
        )
        for name in DATASETS:  # declared order: residents come after accounts and assessments
            if name in by_name:
                item = by_name[name]
                results[name] = merge_dataset(
                    conn, item.dataset, item.tables, community=community, run_key=run_key,
                    params=params, enabled=enabled,
                )
    return results
