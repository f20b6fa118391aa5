"""The run record (sync.runs) and its per-data-set rows (sync.run_datasets)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import class_row

from portal_sync.store import gx_results, quality


@dataclass(frozen=True)
class RunRecord:
    """One row of sync.runs: one run of one community."""

    run_key: str
    community_code: str
    airflow_run_id: str | None
    datasets: list[str]
    source_org_name: str | None = None
    time_zone: str | None = None
    started_at: datetime | None = None
    published_at: datetime | None = None
    finished_at: datetime | None = None
    # running | published | partly_published | nothing_published | dry_run | failed | abandoned
    outcome: str = "running"
    error: str | None = None
    customer_number_mask: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DatasetRun:
    """One row of sync.run_datasets: what one run did with one data set, filled in as the run goes."""

    run_key: str
    community_code: str
    dataset: str
    phase: str = "planned"  # planned | skipped | staged | validated | published | failed
    rows_extracted: int | None = None
    rows_refused: int | None = None
    rows_warned: int | None = None
    rows_inserted: int | None = None
    rows_updated: int | None = None
    rows_unchanged: int | None = None
    rows_deleted: int | None = None
    rows_restored: int | None = None
    rows_archived: int | None = None
    extract_seconds: Decimal | None = None
    validate_seconds: Decimal | None = None
    publish_seconds: Decimal | None = None
    staging_tables: list[str] = field(default_factory=list)  # "extract=table" items
    error: str | None = None
    updated_at: datetime | None = None
    mode: str | None = None  # full | window | reconcile | skipped
    window_start: datetime | None = None
    window_end: datetime | None = None
    mark_before: datetime | None = None
    mark_after: datetime | None = None
    extract_started_at: datetime | None = None
    rows_superseded: int | None = None
    changes_since: datetime | None = None  # a reconciliation also reads rows changed since then

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def staged_tables(self) -> dict[str, str]:
        """Extract name -> staging table of this run."""
        return dict(item.split("=", 1) for item in self.staging_tables)

    def summary_line(self) -> str:
        return summary_line(self.community_code, self.dataset, self.as_dict())

    def outcome(self) -> dict[str, Any]:
        """What the run did with the data set, as plain data (``portal-sync run --json``)."""
        return {
            "mode": self.mode, "phase": self.phase, "window_start": self.window_start, "window_end": self.window_end,
            "counts": {name: getattr(self, f"rows_{name}") for name in COUNTED},
            "refused": self.rows_refused, "error": self.error,
        }


# The row counts of a data set's run besides the refused ones (columns rows_<name>).
COUNTED = ("extracted", "warned", "inserted", "updated", "unchanged", "deleted", "restored", "archived", "superseded")


# What a step may set on its data set's row (the keys and updated_at are the store's).
UPDATABLE = tuple(f.name for f in fields(DatasetRun) if f.name not in ("run_key", "community_code", "dataset",
                                                                        "updated_at"))
_RUN_COLUMNS = ", ".join(f.name for f in fields(RunRecord))
_DATASET_COLUMNS = ", ".join(f.name for f in fields(DatasetRun))


def start_run(conn: psycopg.Connection, run_key: str, community: str, airflow_run_id: str,
              datasets: Sequence[str]) -> None:
    """Create the run record; a re-run of the same Airflow run (a retry, a cleared run, a reprocessing
    backfill) starts afresh: its rows and findings describe the latest attempt only."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO sync.runs (run_key, community_code, airflow_run_id, datasets) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (run_key) DO UPDATE SET datasets = EXCLUDED.datasets, outcome = 'running',"
            " error = NULL, started_at = now(), published_at = NULL, finished_at = NULL",
            (run_key, community, airflow_run_id, list(datasets)),
        )
        conn.execute("DELETE FROM sync.run_datasets WHERE run_key = %s", (run_key,))
        quality.clear_run(conn, run_key)
        gx_results.clear_run(conn, run_key)
        for name in datasets:
            conn.execute(
                "INSERT INTO sync.run_datasets (run_key, community_code, dataset) VALUES (%s, %s, %s)",
                (run_key, community, name),
            )


def record_source(conn: psycopg.Connection, run_key: str, *, org_name: str, time_zone: str,
                  customer_number_mask: str | None) -> None:
    """The facts prepare learned from the source (SM_Organization) that later steps use."""
    conn.execute(
        "UPDATE sync.runs SET source_org_name = %s, time_zone = %s, customer_number_mask = %s WHERE run_key = %s",
        (org_name, time_zone, customer_number_mask, run_key),
    )


def update_dataset(conn: psycopg.Connection, run_key: str, dataset: str, **values: object) -> None:
    unknown = set(values) - set(UPDATABLE)
    if unknown:
        raise ValueError(f"not columns of sync.run_datasets a step may set: {sorted(unknown)}")
    sets = ", ".join(f"{name} = %({name})s" for name in values)
    conn.execute(
        f"UPDATE sync.run_datasets SET {sets}, updated_at = now()"
        " WHERE run_key = %(run_key)s AND dataset = %(dataset)s",
        {**values, "run_key": run_key, "dataset": dataset},
    )


def dataset_runs(conn: psycopg.Connection, run_key: str) -> dict[str, DatasetRun]:
    """Every data set's row of the run, by data set name."""
    with conn.cursor(row_factory=class_row(DatasetRun)) as cur:
        cur.execute(f"SELECT {_DATASET_COLUMNS} FROM sync.run_datasets WHERE run_key = %s", (run_key,))
        return {row.dataset: row for row in cur.fetchall()}


def run_record(conn: psycopg.Connection, run_key: str) -> RunRecord | None:
    with conn.cursor(row_factory=class_row(RunRecord)) as cur:
        cur.execute(f"SELECT {_RUN_COLUMNS} FROM sync.runs WHERE run_key = %s", (run_key,))
        return cur.fetchone()


def finish_run(conn: psycopg.Connection, run_key: str, outcome: str, error: str | None = None) -> None:
    conn.execute(
        "UPDATE sync.runs SET outcome = %s, error = %s, finished_at = now(),"
        " published_at = CASE WHEN %s IN ('published', 'partly_published') THEN now() ELSE published_at END"
        " WHERE run_key = %s",
        (outcome, error, outcome, run_key),
    )


def close_run(conn: psycopg.Connection, run_key: str) -> None:
    """At cleanup: a run that never reached its outcome (a step failed for good) ends as failed."""
    conn.execute(
        "UPDATE sync.runs SET finished_at = coalesce(finished_at, now()),"
        " outcome = CASE WHEN outcome = 'running' THEN 'failed' ELSE outcome END WHERE run_key = %s",
        (run_key,),
    )


# --- live runs and the sweep of dead ones ----------------------------------------------------------

# Outcomes of a run that ended; "abandoned": its process died and the sweep closed it.
OUTCOMES = ("published", "partly_published", "nothing_published", "dry_run", "failed", "abandoned")
# The first key of every run lock (the second is hashtext(run_key)); the publish's per-community lock
# uses hashtext('portal_sync') and cannot meet it.
_RUN_LOCK_CLASS = "portal_sync_run"
_RUN_LOCK = "hashtext(%(lock_class)s), hashtext(%(run_key)s)"
# A run that never took its lock (started before the locks existed) shows no sign of life the sweep can
# test, so it counts as dead only once it is older than any run lives: a city's first load takes about
# an hour, and Airflow's retries (2, with delays up to 10 minutes) and queued backfills add hours more.
UNLOCKED_RUN_HOURS = 24
# A run with a lock can look dead between two of its Airflow tasks (no process holds the lock while the
# next task is queued): it counts as dead only when nothing of it has moved (start, lock taken, a data
# set's step) for this long. A one-process run (the CLI) holds its lock throughout.
IDLE_MINUTES = 60


def hold_run_lock(conn: psycopg.Connection, run_key: str) -> None:
    """Mark the run alive for as long as this session lasts: a session-level advisory lock, shared so
    that every process working on the run (the DAG's parallel tasks) may hold it at once. The run
    record notes the time, which also tells the sweep that this run is one that holds locks.

    Keep the connection open for the whole step (or run); closing it, or the process dying, releases
    the lock. Collisions of hashtext are harmless: an unrelated live run only makes one look alive.
    """
    conn.execute(f"SELECT pg_advisory_lock_shared({_RUN_LOCK})", {"lock_class": _RUN_LOCK_CLASS, "run_key": run_key})
    with conn.transaction():
        conn.execute("UPDATE sync.runs SET lock_held_at = now() WHERE run_key = %s", (run_key,))


def release_run_lock(conn: psycopg.Connection, run_key: str) -> None:
    """Give up this session's hold on the run's lock (closing the connection does the same)."""
    conn.execute(f"SELECT pg_advisory_unlock_shared({_RUN_LOCK})", {"lock_class": _RUN_LOCK_CLASS, "run_key": run_key})


def sweep_candidates(conn: psycopg.Connection, community: str | None) -> list[str]:
    """Run keys of the community (or all) still recorded as running."""
    return [k for (k,) in conn.execute(
        "SELECT run_key FROM sync.runs WHERE outcome = 'running' AND (%(c)s::text IS NULL OR community_code = %(c)s)"
        " ORDER BY started_at", {"c": community}).fetchall()]


@contextmanager
def dead_run(conn: psycopg.Connection, run_key: str) -> Iterator[datetime | bool]:
    """Whether the run is dead, holding its lock exclusively meanwhile (so no process of it can start
    while its leftovers are removed). Yields False for a live run, True for a dead run without a record,
    and else the ``started_at`` of the dead run's record (what :func:`abandon_run` checks).

    A run is alive when any session (this one included: advisory locks are re-entrant within a
    session, so a try here would succeed on the caller's own run) holds its lock, or when it shows a
    recent sign of life (IDLE_MINUTES, UNLOCKED_RUN_HOURS).
    """
    args = {"lock_class": _RUN_LOCK_CLASS, "run_key": run_key}
    own = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        " AND classid = hashtext(%(lock_class)s)::oid AND objid = hashtext(%(run_key)s)::oid AND objsubid = 2)",
        args).fetchone()[0]
    if own or not conn.execute(f"SELECT pg_try_advisory_lock({_RUN_LOCK})", args).fetchone()[0]:
        yield False
        return
    try:
        row = conn.execute(
            "SELECT r.started_at, r.lock_held_at IS NOT NULL,"
            " greatest(r.started_at, r.lock_held_at, (SELECT max(d.updated_at) FROM sync.run_datasets d"
            "                                          WHERE d.run_key = r.run_key)) > now() - %(idle)s,"
            " r.started_at > now() - %(unlocked)s"
            " FROM sync.runs r WHERE r.run_key = %(run_key)s",
            {**args, "idle": timedelta(minutes=IDLE_MINUTES), "unlocked": timedelta(hours=UNLOCKED_RUN_HOURS)},
        ).fetchone()
        if row is None:
            yield True
        else:
            started_at, locked, recent, young = row
            yield False if (recent if locked else young) else started_at
    finally:
        conn.execute(f"SELECT pg_advisory_unlock({_RUN_LOCK})", args)


def abandon_run(conn: psycopg.Connection, run_key: str, started_at: datetime, why: str) -> bool:
    """Close a dead run still recorded as running as ``abandoned``; False when it is not (any more):
    a retry that restarted it meanwhile (a new started_at) is left alone."""
    return conn.execute(
        "UPDATE sync.runs SET outcome = 'abandoned', finished_at = now(), error = %s"
        " WHERE run_key = %s AND outcome = 'running' AND started_at = %s",
        (why[:4000], run_key, started_at),
    ).rowcount == 1


LONGEST_FIRST_RUNS = 100  # at a 5-minute schedule, the last eight hours


def longest_first(conn: psycopg.Connection, community: str, datasets: Sequence[str]) -> list[str]:
    """The data sets ordered by what their extract and validation took in the community's last run
    of each (declared order for those never run): the longest starts first, so that parallel
    workers finish together instead of one long data set starting last."""
    rows = dict(conn.execute(  # the last LONGEST_FIRST_RUNS runs only (index runs_community): a bounded read
        "SELECT DISTINCT ON (d.dataset) d.dataset,"
        " coalesce(d.extract_seconds, 0) + coalesce(d.validate_seconds, 0)"
        " FROM (SELECT run_key, started_at FROM sync.runs WHERE community_code = %s"
        "       ORDER BY started_at DESC LIMIT %s) r"
        " JOIN sync.run_datasets d USING (run_key) WHERE d.extract_seconds IS NOT NULL"
        " ORDER BY d.dataset, r.started_at DESC",
        (community, LONGEST_FIRST_RUNS),
    ).fetchall())
    return sorted(datasets, key=lambda name: -float(rows.get(name, 0)))


def previous_snapshot_rows(conn: psycopg.Connection, community: str, dataset: str, run_key: str) -> int | None:
    """Rows read by the last published full snapshot of a data set before this run (None: never)."""
    row = conn.execute(
        "SELECT d.rows_extracted FROM sync.run_datasets d JOIN sync.runs r USING (run_key)"
        " WHERE d.community_code = %s AND d.dataset = %s AND d.phase = 'published' AND d.mode = 'full'"
        " AND d.run_key <> %s ORDER BY r.started_at DESC LIMIT 1",
        (community, dataset, run_key),
    ).fetchone()
    return row[0] if row else None


def last_published(conn: psycopg.Connection, community: str) -> dict[str, datetime]:
    """When each data set of the community last published."""
    rows = conn.execute(
        "SELECT d.dataset, max(r.published_at) FROM sync.run_datasets d JOIN sync.runs r USING (run_key)"
        " WHERE d.community_code = %s AND d.phase = 'published' AND r.published_at IS NOT NULL GROUP BY d.dataset",
        (community,),
    ).fetchall()
    return dict(rows)


def first_run_started(conn: psycopg.Connection, community: str) -> datetime | None:
    """When the community's first recorded run started (None: it never ran)."""
    return conn.execute(
        "SELECT min(started_at) FROM sync.runs WHERE community_code = %s", (community,)
    ).fetchone()[0]


def summary_line(community: str, dataset: str, row: Mapping[str, Any]) -> str:
    """One log line per data set: what landed and what was refused."""
    def n(key: str) -> str:
        value = row.get(key)
        return "-" if value is None else str(value)

    window = ""
    if row.get("mode") == "window":
        window = f" window=[{row.get('window_start')}, {row.get('window_end')})"
    return (
        f"{community} {dataset}: phase={row.get('phase')} mode={row.get('mode')}{window}"
        f" extracted={n('rows_extracted')}"
        f" inserted={n('rows_inserted')} updated={n('rows_updated')} unchanged={n('rows_unchanged')}"
        f" deleted={n('rows_deleted')} restored={n('rows_restored')} archived={n('rows_archived')}"
        f" superseded={n('rows_superseded')} refused={n('rows_refused')}"
        f" mark {row.get('mark_before')} -> {row.get('mark_after')}"
        + (f" error={row['error']}" if row.get("error") else "")
    )
