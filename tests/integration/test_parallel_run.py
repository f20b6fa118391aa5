"""A one-process run extracts and validates data sets in parallel threads: same portal, real overlap."""

from __future__ import annotations

import threading

import psycopg
import pytest
from synctest import assert_in_sync, community, sync

from portal_sync.datasets import DATASET_NAMES
from portal_sync.pipeline import RunContext, extract_dataset
from portal_sync.store import runs

pytestmark = pytest.mark.integration


def portal_rows(portal_url: str) -> list[str]:
    """Every portal row but the read and sync times, which differ between two runs by design."""
    with psycopg.connect(portal_url) as conn:
        return [row[0] for name in ("communities", *DATASET_NAMES) for row in conn.execute(
            f"SELECT (to_jsonb(t) - 'synced_at' - 'source_read_at')::text FROM portal.{name} t ORDER BY 1")]


def test_parallel_and_serial_runs_publish_the_same_portal_and_threads_really_share_the_work(
        make_source, portal, monkeypatch):
    sim = make_source("sqlite", seed=11)
    workers: dict[str, str] = {}
    at_once, most_at_once = [0], [0]
    lock = threading.Lock()
    real_extract = extract_dataset

    def watched_extract(ctx: RunContext, name: str, **options) -> int:
        with lock:
            at_once[0] += 1
            most_at_once[0] = max(most_at_once[0], at_once[0])
            workers.setdefault(name, threading.current_thread().name)  # not a restage before the publish
        try:
            return real_extract(ctx, name, **options)
        finally:
            with lock:
                at_once[0] -= 1

    monkeypatch.setattr("portal_sync.pipeline.extract_dataset", watched_extract)
    results = sync(sim, portal, "parallel", comm=community(parallel_datasets=2), use_gx=True)
    assert {n: r["phase"] for n, r in results.items()} == {n: "published" for n in DATASET_NAMES}
    assert_in_sync(sim, portal)
    parallel = portal_rows(portal)
    assert len(parallel) > 1000
    assert len(set(workers.values())) == 2, workers  # both worker threads took data sets
    assert most_at_once[0] == 2  # and two extracts really ran at the same time

    # The same source through one worker: the portal is row for row the same.
    with psycopg.connect(portal, autocommit=True) as conn:
        conn.execute("TRUNCATE " + ", ".join(f"portal.{name}" for name in ("communities", *DATASET_NAMES))
                     + ", sync.watermarks, sync.quarantine CASCADE")
    workers.clear()
    most_at_once[0] = 0
    sync(sim, portal, "serial", comm=community(parallel_datasets=1), use_gx=True)
    assert most_at_once[0] == 1 and len(set(workers.values())) == 1
    assert portal_rows(portal) == parallel


def test_longest_first_orders_by_the_last_run_and_keeps_declared_order_for_new_data_sets(portal):
    with psycopg.connect(portal, autocommit=True) as conn:
        assert runs.longest_first(conn, "LONGEST", DATASET_NAMES) == list(DATASET_NAMES)

        runs.start_run(conn, "longest_old", "LONGEST", "old", ["accounts", "charges"])
        runs.update_dataset(conn, "longest_old", "charges", extract_seconds=1, validate_seconds=1)
        runs.update_dataset(conn, "longest_old", "accounts", extract_seconds=50, validate_seconds=0)
        runs.start_run(conn, "longest_new", "LONGEST", "new", ["accounts", "charges", "payments"])
        conn.execute("UPDATE sync.runs SET started_at = started_at + interval '1 minute' WHERE run_key = 'longest_new'")
        runs.update_dataset(conn, "longest_new", "charges", extract_seconds=30, validate_seconds=12.5)
        runs.update_dataset(conn, "longest_new", "payments", extract_seconds=3, validate_seconds=None)
        # charges by its newest run (42.5 s), accounts by its only timed run (50 s), payments 3 s;
        # the rest never ran: declared order, after them.
        assert runs.longest_first(conn, "LONGEST", DATASET_NAMES) == [
            "accounts", "charges", "payments", "assessments", "balances", "residents"]
        assert runs.longest_first(conn, "OTHER", ["charges", "accounts"]) == ["charges", "accounts"]
