"""Cadence and freshness: when a data set is due, and when its portal data is stale.

Each data set publishes at its own cadence inside the community's schedule (balances
every run, accounts hourly, say). A data set whose last publish is older than
``freshness_factor`` times its cadence is stale: the run's freshness check fails and
the status page shows it, so a silent stop (a broken source, a paused DAG, failed
runs) is noticed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
from croniter import croniter

from portal_sync.config import Community
from portal_sync.store import runs

# A run may start a little early or late against the previous one: a data set counts as
# due when its cadence has passed, less this slack.
DUE_SLACK = timedelta(minutes=1)


def schedule_interval(community: Community, at: datetime | None = None) -> timedelta:
    """The time between two ticks of the community's schedule (at ``at``)."""
    zone = ZoneInfo(community.time_zone or "UTC")
    start = (at or datetime.now(UTC)).astimezone(zone)
    ticks = croniter(community.effective_schedule, start)
    first = ticks.get_next(datetime)
    return ticks.get_next(datetime) - first


def cadence(community: Community, dataset: str) -> timedelta:
    """How often a data set should publish: its configured cadence, else every run."""
    minutes = community.cadence_minutes.get(dataset)
    return timedelta(minutes=minutes) if minutes else schedule_interval(community)


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


def assess(community: Community, published: Mapping[str, datetime], first_run: datetime | None,
           now: datetime) -> list[Freshness]:
    """Freshness of every enabled data set from when each last published; a never-published one is
    stale once the community's first run is older than the limit (that run may still be under way)."""
    out = []
    for name in community.datasets:
        every = cadence(community, name)
        limit = every * community.freshness_factor
        last = published.get(name)
        since = last or first_run
        stale = since is not None and now - since > limit
        out.append(Freshness(name, last, every, limit, stale))
    return out


def freshness(conn: psycopg.Connection, community: Community, now: datetime | None = None) -> list[Freshness]:
    """Freshness of every enabled data set, as the run store has it now."""
    return assess(community, runs.last_published(conn, community.code), runs.first_run_started(conn, community.code),
                  now or datetime.now(UTC))
