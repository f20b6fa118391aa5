"""Cadence and freshness: when a data set is due, and when its portal data is stale.

Each data set publishes at its own cadence inside the community's schedule (balances
every run, accounts hourly, say). A data set whose last publish is older than
``freshness_factor`` times its cadence is stale: the run's freshness check fails and
the status page shows it, so a silent stop (a broken source, a paused DAG, failed
runs) is noticed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
from croniter import croniter

from portal_sync.config import Community

# A run may start a little early or late against the previous one: a data set counts as
# due when its cadence has passed, less this slack.
DUE_SLACK = timedelta(minutes=1)


def schedule_interval(community: Community, at: datetime | None = None) -> timedelta:
    """The time between two ticks of the community's schedule (at ``at``)."""
    zone = ZoneInfo(community.time_zone or "UTC")
    start = (at or datetime.now(UTC)).astimezone(zone)
    ticks = croniter(community.schedule, start)
    first = ticks.get_next(datetime)
    return ticks.get_next(datetime) - first


def cadence(community: Community, dataset: str) -> timedelta:
    """How often a data set should publish: its configured cadence, else every run."""
    minutes = community.cadence_minutes.get(dataset)
    return timedelta(minutes=minutes) if minutes else schedule_interval(community)


def last_published(conn: psycopg.Connection, community: str) -> dict[str, datetime]:
    rows = conn.execute(
        "SELECT d.dataset, max(r.published_at) FROM sync.run_datasets d JOIN sync.runs r USING (run_key)"
        " WHERE d.community_code = %s AND d.phase = 'published' AND r.published_at IS NOT NULL GROUP BY d.dataset",
        (community,),
    ).fetchall()
    return dict(rows)


def is_due(community: Community, dataset: str, published: datetime | None, now: datetime) -> bool:
    """Without a configured cadence a data set is due in every run."""
    minutes = community.cadence_minutes.get(dataset)
    if not minutes or published is None:
        return True
    return now - published >= timedelta(minutes=minutes) - DUE_SLACK


@dataclass(frozen=True)
class Freshness:
    dataset: str
    last_published: datetime | None
    cadence: timedelta
    limit: timedelta
    stale: bool

    def describe(self) -> str:
        when = "never" if self.last_published is None else f"{self.last_published:%Y-%m-%d %H:%M:%S%z}"
        state = "STALE" if self.stale else "fresh"
        return f"{self.dataset}: {state}, last published {when}, cadence {self.cadence}, alert after {self.limit}"


def freshness(conn: psycopg.Connection, community: Community, now: datetime | None = None) -> list[Freshness]:
    """Freshness of every enabled data set; a never-published one is stale once the community is older
    than the limit (its first run may still be under way)."""
    now = now or datetime.now(UTC)
    published = last_published(conn, community.code)
    first_run = conn.execute(
        "SELECT min(started_at) FROM sync.runs WHERE community_code = %s", (community.code,)
    ).fetchone()[0]
    out = []
    for name in community.datasets:
        every = cadence(community, name)
        limit = every * community.freshness_factor
        last = published.get(name)
        since = last or first_run
        stale = since is not None and now - since > limit
        out.append(Freshness(name, last, every, limit, stale))
    return out
