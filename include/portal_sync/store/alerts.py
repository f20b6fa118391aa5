"""Alert incidents (sync.alerts): at most one open per community and kind, closed ones kept as history.

The decisions are ``portal_sync.alerts``'s; this module only reads and writes the rows, inside the
caller's transaction (the row lock of :func:`lock_open` lasts until it ends).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


@dataclass(frozen=True)
class Incident:
    """An open incident: the data sets in trouble (each with its reason) and when it was last told."""

    incident_id: int
    community_code: str
    kind: str  # sync_failed | stale
    datasets: dict[str, str]
    opened_at: datetime
    notified_at: datetime | None
    notices: int = 0
    opened_run_id: str | None = None
    last_run_id: str | None = None


_COLUMNS = ("incident_id, community_code, kind, datasets, opened_at, notified_at, notices, opened_run_id,"
            " last_run_id")


def _incident(row: tuple[Any, ...] | None) -> Incident | None:
    if row is None:
        return None
    return Incident(*row)


def now(conn: psycopg.Connection) -> datetime:
    """The database's clock: every worker's callbacks compare times on one clock."""
    return conn.execute("SELECT now()").fetchone()[0]


def lock_open(conn: psycopg.Connection, community: str, kind: str) -> Incident | None:
    """The open incident of the community and kind, row-locked until the transaction ends."""
    return _incident(conn.execute(
        f"SELECT {_COLUMNS} FROM sync.alerts WHERE community_code = %s AND kind = %s AND closed_at IS NULL"
        " FOR UPDATE", (community, kind)).fetchone())


def open_incident(conn: psycopg.Connection, community: str, kind: str, datasets: Mapping[str, str], run_id: str,
                  at: datetime) -> Incident | None:
    """Open an incident, counted as told at ``at``; None when one is open already (a concurrent opening
    is waited for: the unique index on open incidents decides)."""
    return _incident(conn.execute(
        "INSERT INTO sync.alerts (community_code, kind, datasets, opened_at, opened_run_id, last_run_id,"
        " last_seen_at, notified_at, notices) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 1)"
        " ON CONFLICT (community_code, kind) WHERE closed_at IS NULL DO NOTHING"
        f" RETURNING {_COLUMNS}",
        (community, kind, Jsonb(dict(datasets)), at, run_id, run_id, at, at)).fetchone())


def update_incident(conn: psycopg.Connection, incident_id: int, datasets: Mapping[str, str], run_id: str,
                    at: datetime, *, notified: bool) -> None:
    """Record what the latest run showed of an open incident (and that it was told, if it was)."""
    conn.execute(
        "UPDATE sync.alerts SET datasets = %(datasets)s, last_run_id = %(run_id)s, last_seen_at = %(at)s,"
        " notified_at = CASE WHEN %(notified)s THEN %(at)s ELSE notified_at END,"
        " notices = notices + CASE WHEN %(notified)s THEN 1 ELSE 0 END"
        " WHERE incident_id = %(id)s AND closed_at IS NULL",
        {"datasets": Jsonb(dict(datasets)), "run_id": run_id, "at": at, "notified": notified, "id": incident_id})


def close_incident(conn: psycopg.Connection, incident_id: int, run_id: str, at: datetime) -> None:
    """Close an open incident (its recovery notice is the caller's to send)."""
    conn.execute(
        "UPDATE sync.alerts SET closed_at = %s, closed_run_id = %s, last_seen_at = %s,"
        " notices = notices + 1 WHERE incident_id = %s AND closed_at IS NULL",
        (at, run_id, at, incident_id))


def incidents(conn: psycopg.Connection, community: str, *, open_only: bool = False,
              limit: int = 50) -> list[dict[str, Any]]:
    """The community's incidents, newest first, as plain rows (reports, tests)."""
    cur = conn.execute(
        "SELECT incident_id, kind, datasets, opened_at, opened_run_id, notified_at, notices, last_run_id,"
        " closed_at, closed_run_id FROM sync.alerts WHERE community_code = %s"
        " AND (NOT %s OR closed_at IS NULL) ORDER BY opened_at DESC, incident_id DESC LIMIT %s",
        (community, open_only, limit))
    names = [c.name for c in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
