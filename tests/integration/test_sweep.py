"""Killed runs leave staging tables and a ``running`` record: the sweep removes and closes those of
dead runs (no session holds their lock) and leaves a live run of the same community untouched."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from portal_sync import stage
from portal_sync.datasets import DATASETS
from portal_sync.store import runs

pytestmark = pytest.mark.integration

BALANCES = DATASETS["balances"]


@pytest.fixture
def sessions(portal) -> Iterator[list[psycopg.Connection]]:
    """Connections a test opens as the processes of its runs; closed afterwards."""
    opened: list[psycopg.Connection] = []
    yield opened
    for conn in opened:
        conn.close()


def begin(portal: str, sessions: list, community: str, run_id: str, *, lock: bool = True) -> tuple[str, list[str]]:
    """A run as its process starts it: record, lock (kept in an open session), staging tables."""
    conn = psycopg.connect(portal, autocommit=True)
    sessions.append(conn)
    key = stage.run_key(community, run_id)
    runs.start_run(conn, key, community, run_id, [BALANCES.name])
    if lock:
        runs.hold_run_lock(conn, key)
    tables = []
    for extract in BALANCES.extracts:
        table = stage.stage_table_name(key, BALANCES.name, extract)
        stage.create_table(conn, table, extract)
        tables.append(table)
    runs.update_dataset(conn, key, BALANCES.name, phase="staged", staging_tables=tables)
    return key, tables


def die(conn: psycopg.Connection) -> None:
    """The run's process is killed: its session ends and the lock goes with it."""
    conn.close()


def age(portal: str, key: str, **interval: str) -> None:
    """Move every sign of life of a run back in time (as if it had died that long ago)."""
    with psycopg.connect(portal, autocommit=True) as conn:
        for column in ("started_at", "lock_held_at"):
            conn.execute(f"UPDATE sync.runs SET {column} = {column} - %s::interval WHERE run_key = %s",
                         (interval["by"], key))
        conn.execute("UPDATE sync.run_datasets SET updated_at = updated_at - %s::interval WHERE run_key = %s",
                     (interval["by"], key))


def state(portal: str, key: str, tables: list[str]) -> tuple[str, bool, list[str]]:
    with psycopg.connect(portal) as conn:
        outcome, finished = conn.execute("SELECT outcome, finished_at IS NOT NULL FROM sync.runs WHERE run_key = %s",
                                         (key,)).fetchone()
        left = [t for (t,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'stage'"
                                           " AND tablename = ANY(%s) ORDER BY 1", (tables,)).fetchall()]
    return outcome, finished, left


def test_the_sweep_closes_dead_runs_and_leaves_a_live_run_of_the_same_community_alone(portal, sessions):
    live, live_tables = begin(portal, sessions, "SWEEP", "live")
    dead, dead_tables = begin(portal, sessions, "SWEEP", "killed")
    die(sessions[-1])
    age(portal, dead, by=f"{runs.IDLE_MINUTES + 5} minutes")
    just_died, just_died_tables = begin(portal, sessions, "SWEEP", "just-killed")  # maybe between two tasks
    die(sessions[-1])
    age(portal, live, by="3 hours")  # a long run: age alone does not make it dead while it holds its lock
    other, other_tables = begin(portal, sessions, "SWEEP_B", "killed")  # another community (a prefix of it too)
    die(sessions[-1])
    age(portal, other, by="2 hours")

    with psycopg.connect(portal, autocommit=True) as sweeper:
        result = stage.sweep_orphans(sweeper, "SWEEP")
    assert result.abandoned_runs == [dead]
    assert sorted(result.dropped_tables) == sorted(dead_tables)
    assert sorted(result.alive_runs) == sorted([live, just_died])
    assert state(portal, dead, dead_tables) == ("abandoned", True, [])
    assert state(portal, live, live_tables) == ("running", False, sorted(live_tables))
    assert state(portal, just_died, just_died_tables) == ("running", False, sorted(just_died_tables))
    assert state(portal, other, other_tables) == ("running", False, sorted(other_tables))
    with psycopg.connect(portal) as conn:
        error = conn.execute("SELECT error FROM sync.runs WHERE run_key = %s", (dead,)).fetchone()[0]
    assert "abandoned" in error

    # The live run's own session may sweep too (advisory locks are re-entrant within a session).
    own = sessions[0]
    again = stage.sweep_orphans(own, None)
    assert again.abandoned_runs == [other] and sorted(again.dropped_tables) == sorted(other_tables)
    assert live in again.alive_runs
    assert state(portal, live, live_tables) == ("running", False, sorted(live_tables))
    # The live run still holds its lock: the sweep's try-and-release took nothing from it.
    with psycopg.connect(portal, autocommit=True) as conn:
        assert sorted(stage.sweep_orphans(conn, "SWEEP").alive_runs) == sorted([live, just_died])
        assert conn.execute("SELECT pg_try_advisory_lock(hashtext('portal_sync_run'), hashtext(%s))",
                            (live,)).fetchone() == (False,)

    # Its process ends normally later: nothing of it is left for a sweep.
    die(own)
    with psycopg.connect(portal, autocommit=True) as conn:
        runs.finish_run(conn, live, "published")
        assert stage.drop_run_tables(conn, live) == sorted(live_tables)


def test_a_run_from_before_the_locks_counts_as_dead_only_when_it_is_old(portal, sessions):
    young, young_tables = begin(portal, sessions, "LEGACY", "young", lock=False)
    old, old_tables = begin(portal, sessions, "LEGACY", "old", lock=False)
    age(portal, young, by=f"{runs.UNLOCKED_RUN_HOURS - 1} hours")  # its process may well still run
    age(portal, old, by=f"{runs.UNLOCKED_RUN_HOURS + 1} hours")
    with psycopg.connect(portal, autocommit=True) as sweeper:
        result = stage.sweep_orphans(sweeper, "LEGACY")
    assert result.abandoned_runs == [old] and result.alive_runs == [young]
    assert state(portal, old, old_tables) == ("abandoned", True, [])
    assert state(portal, young, young_tables) == ("running", False, sorted(young_tables))


def test_a_retry_that_restarts_the_run_meanwhile_is_not_closed(portal, sessions):
    key, _ = begin(portal, sessions, "RETRY", "r1")
    die(sessions[-1])
    with psycopg.connect(portal, autocommit=True) as conn:
        seen = conn.execute("SELECT started_at FROM sync.runs WHERE run_key = %s", (key,)).fetchone()[0]
        runs.start_run(conn, key, "RETRY", "r1", [BALANCES.name])  # the retry's prepare
        assert runs.abandon_run(conn, key, seen, "abandoned") is False
        assert conn.execute("SELECT outcome FROM sync.runs WHERE run_key = %s", (key,)).fetchone() == ("running",)
