"""High-water marks of the incremental data sets (sync.watermarks, docs/adr/0004).

A mark moves only when a publish commits, and only forward: a paused DAG, failed runs
or a backfill of an old range widen the next window instead of leaving a gap.
"""

from __future__ import annotations

from datetime import datetime

import psycopg


def marks(conn: psycopg.Connection, community: str) -> dict[str, datetime]:
    """The community's mark per data set (data sets never published incrementally have none)."""
    return dict(conn.execute(
        "SELECT dataset, mark FROM sync.watermarks WHERE community_code = %s", (community,)
    ).fetchall())


def advance_mark(conn: psycopg.Connection, community: str, dataset: str, run_key: str,
                 new_mark: datetime | None) -> datetime | None:
    """Move the mark forward to ``new_mark`` (never back); return the mark as it now stands."""
    if new_mark is None:
        row = conn.execute(
            "SELECT mark FROM sync.watermarks WHERE community_code = %s AND dataset = %s", (community, dataset)
        ).fetchone()
        return row[0] if row else None
    return conn.execute(
        "INSERT INTO sync.watermarks AS w (community_code, dataset, mark, run_key) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (community_code, dataset) DO UPDATE SET mark = greatest(w.mark, EXCLUDED.mark),"
        " run_key = CASE WHEN EXCLUDED.mark > w.mark THEN EXCLUDED.run_key ELSE w.run_key END, updated_at = now()"
        " RETURNING mark",
        (community, dataset, new_mark, run_key),
    ).fetchone()[0]
