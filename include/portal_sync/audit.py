"""The run record and the per-data-set audit rows (sync.runs, sync.run_datasets).

They are both the audit trail analysts read and the hand-over between tasks: a task
on another worker learns what the previous one staged from here, never from a
local file or process memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg.rows import dict_row

AUDIT_COLUMNS = (
    "phase", "rows_extracted", "rows_refused", "rows_warned", "rows_inserted", "rows_updated",
    "rows_unchanged", "rows_deleted", "rows_restored", "rows_archived", "extract_seconds",
    "validate_seconds", "publish_seconds", "staging_tables", "error", "mode", "window_start", "window_end",
    "mark_before", "mark_after", "extract_started_at", "rows_superseded",
)


def start_run(conn: psycopg.Connection, run_key: str, community: str, airflow_run_id: str,
              datasets: Sequence[str]) -> None:
    """Create the run record; a re-run of the same Airflow run (a retry, a cleared run, a reprocessing
    backfill) starts afresh: its audit rows and findings describe the latest attempt only."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO sync.runs (run_key, community_code, airflow_run_id, datasets) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (run_key) DO UPDATE SET datasets = EXCLUDED.datasets, outcome = 'running',"
            " error = NULL, started_at = now(), published_at = NULL, finished_at = NULL",
            (run_key, community, airflow_run_id, list(datasets)),
        )
        conn.execute("DELETE FROM sync.run_datasets WHERE run_key = %s", (run_key,))
        conn.execute("DELETE FROM sync.run_findings WHERE run_key = %s", (run_key,))
        conn.execute("DELETE FROM sync.dq_results WHERE run_key = %s", (run_key,))
        for name in datasets:
            conn.execute(
                "INSERT INTO sync.run_datasets (run_key, community_code, dataset) VALUES (%s, %s, %s)",
                (run_key, community, name),
            )


def update_dataset(conn: psycopg.Connection, run_key: str, dataset: str, **values: object) -> None:
    unknown = set(values) - set(AUDIT_COLUMNS)
    if unknown:
        raise ValueError(f"not audit columns: {sorted(unknown)}")
    sets = ", ".join(f"{name} = %({name})s" for name in values)
    conn.execute(
        f"UPDATE sync.run_datasets SET {sets}, updated_at = now()"
        " WHERE run_key = %(run_key)s AND dataset = %(dataset)s",
        {**values, "run_key": run_key, "dataset": dataset},
    )


def dataset_rows(conn: psycopg.Connection, run_key: str) -> dict[str, dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM sync.run_datasets WHERE run_key = %s", (run_key,))
        return {row["dataset"]: row for row in cur.fetchall()}


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


def finish_run(conn: psycopg.Connection, run_key: str, outcome: str, error: str | None = None) -> None:
    conn.execute(
        "UPDATE sync.runs SET outcome = %s, error = %s, finished_at = now(),"
        " published_at = CASE WHEN %s IN ('published', 'partly_published') THEN now() ELSE published_at END"
        " WHERE run_key = %s",
        (outcome, error, outcome, run_key),
    )


def summary_line(community: str, dataset: str, row: dict) -> str:
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
