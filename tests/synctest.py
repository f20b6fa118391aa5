"""Helpers shared by the sync tests: a community, a run of the pipeline, the in-sync assertion."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg

from oracle import actual_portal, differences, expected_portal
from portal_sync.config import Community
from portal_sync.datasets import DATASET_NAMES
from portal_sync.params import RunRequest
from portal_sync.pipeline import RunContext, run_sync

TZ = "America/Denver"


def community(**overrides) -> Community:
    """The test community. No nightly reconciliation unless a test asks for one: the tests run on the
    wall clock, and a window that happens to cross 02:00 local would reconcile instead of reading
    the window the test means to check."""
    values = {"code": "SPRINGFLD", "caselle_conn_id": "caselle_test", "time_zone": TZ, "datasets": DATASET_NAMES,
              "reconcile_schedule": None}
    values.update(overrides)
    return Community(**values)


def sync(sim, portal_url: str, run_id: str, comm: Community | None = None, use_gx: bool = False,
         interval: tuple[datetime, datetime] | None = None, **request) -> dict:
    """A run of the pipeline in this process, as Airflow would run it for ``interval`` (a scheduled
    run's data interval; None: a manual run); ``request`` holds trigger parameters (RunRequest)."""
    ctx = RunContext(comm or community(), run_id, portal_url, sim.spec.odbc_connection_string(), use_gx=use_gx,
                     interval_start=interval[0] if interval else None, interval_end=interval[1] if interval else None,
                     request=RunRequest(**request))
    return run_sync(ctx)


def local_now(zone: str = TZ) -> datetime:
    """Naive local 'now' of a community: a simulator started here keeps Caselle's clock on ours."""
    return datetime.now(ZoneInfo(zone)).replace(tzinfo=None, microsecond=0)


def as_utc(local: datetime, zone: str = TZ) -> datetime:
    return local.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)


def advance(sim, minutes: float = 15, **rates):
    """Let the simulated city work for a while; return the scheduled interval that covers it and the changes."""
    before = sim.now
    changes = sim.evolve(timedelta(minutes=minutes), rates or None)
    # Windows are [start, end): a row stamped exactly at the clock's end belongs to the next
    # interval. The simulator stamps recomputed balances with the end time itself, so end the
    # interval a second later, as a scheduler tick just after the activity would.
    return (as_utc(before), as_utc(sim.now) + timedelta(seconds=1)), changes


FULL = {"reconcile_all_history": True}  # a full reconciliation: every key, all contents


def assert_in_sync(sim, portal_url: str, comm: Community | None = None) -> None:
    comm = comm or community()
    expected = expected_portal(sim, comm.code, comm.time_zone or TZ, comm.datasets, comm.visible_statuses)
    problems = differences(expected, actual_portal(portal_url, comm.code, comm.datasets),
                           keep=refused_keys(portal_url, comm.code))
    assert not problems, "\n".join(problems[:40])
    assert all(expected[name] for name in comm.datasets), "the simulated community should fill every data set"


def refused_keys(portal_url: str, community: str) -> dict[str, set[tuple]]:
    """Keys the latest run refused: the contract lets their previous portal version stay."""
    with psycopg.connect(portal_url) as conn:
        rows = conn.execute(
            "SELECT f.dataset, f.row_key FROM sync.run_findings f WHERE f.severity = 'refuse' AND f.run_key = ("
            " SELECT run_key FROM sync.runs WHERE community_code = %s ORDER BY started_at DESC LIMIT 1)",
            (community,),
        ).fetchall()
    keep: dict[str, set[tuple]] = {}
    for dataset, key in rows:
        keep.setdefault(dataset, set()).add((int(key),))
    return keep


def portal_fingerprint(portal_url: str) -> str:
    """A hash of every portal row, to prove that nothing changed."""
    digest = hashlib.sha256()
    with psycopg.connect(portal_url) as conn:
        for name in ("communities", *DATASET_NAMES):
            # synced_at says when the community last published: metadata, not portal data
            query = f"SELECT (to_jsonb(t) - 'synced_at')::text FROM portal.{name} t ORDER BY 1"
            for row in conn.execute(query).fetchall():
                digest.update(row[0].encode())
    return digest.hexdigest()


