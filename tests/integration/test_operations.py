"""Operating features at the pipeline level: cadence, freshness, dry runs, data-set subsets."""

from __future__ import annotations

import psycopg
import pytest
from synctest import advance, assert_in_sync, community, local_now, portal_fingerprint, sync

from portal_sync.params import RunRequest
from portal_sync.pipeline import NotDue, RunContext, SyncError, check_freshness, extract_dataset, prepare

pytestmark = pytest.mark.integration


@pytest.fixture
def town(make_source, portal):
    return make_source("sqlite", seed=77, start=local_now())


def phases(portal: str, run_id: str) -> dict[str, tuple[str, str | None]]:
    with psycopg.connect(portal) as conn:
        return {d: (p, e) for d, p, e in conn.execute(
            "SELECT dataset, phase, d.error FROM sync.run_datasets d JOIN sync.runs r USING (run_key)"
            " WHERE r.airflow_run_id = %s", (run_id,)).fetchall()}


def test_a_data_set_that_is_not_due_is_skipped_visibly(town, portal):
    hourly_accounts = community(cadence_minutes={"accounts": 60, "residents": 60})
    sync(town, portal, "first", comm=hourly_accounts)
    interval, _ = advance(town, 5)
    sync(town, portal, "second", comm=hourly_accounts, interval=interval)
    seen = phases(portal, "second")
    assert seen["accounts"][0] == "skipped" and "not due" in seen["accounts"][1] and "cadence 1:00:00" in seen[
        "accounts"][1]
    assert seen["balances"][0] == "published" and seen["charges"][0] == "published"
    ctx = RunContext(hourly_accounts, "second", portal, town.spec.odbc_connection_string(), use_gx=False)
    with pytest.raises(NotDue):
        extract_dataset(ctx, "accounts")
    # Asked for explicitly, it runs whatever its cadence says.
    sync(town, portal, "asked", comm=hourly_accounts, interval=interval, datasets=["accounts"])
    assert phases(portal, "asked") == {"accounts": ("published", None)}


def test_stale_data_raises_the_freshness_alert(town, portal):
    comm = community(schedule="*/5 * * * *", freshness_factor=3)
    sync(town, portal, "fresh", comm=comm)
    ctx = RunContext(comm, "check", portal, town.spec.odbc_connection_string(), use_gx=False)
    assert all("fresh" in line for line in check_freshness(ctx))
    with psycopg.connect(portal) as conn:  # as if nothing had published for an hour
        conn.execute("UPDATE sync.runs SET published_at = published_at - interval '1 hour',"
                     " started_at = started_at - interval '1 hour'")
    with pytest.raises(SyncError, match=r"stale portal data: accounts: STALE"):
        check_freshness(ctx)


def test_a_dry_run_validates_and_publishes_nothing(town, portal):
    sync(town, portal, "first")
    before = portal_fingerprint(portal)
    town.renumber(1.0)
    interval, _ = advance(town, 15)
    results = sync(town, portal, "dry", interval=interval, dry_run=True)
    assert all(row["phase"] == "validated" for row in results.values())
    assert portal_fingerprint(portal) == before
    with psycopg.connect(portal) as conn:
        assert conn.execute("SELECT outcome FROM sync.runs WHERE airflow_run_id = 'dry'").fetchone() == ("dry_run",)
        marks = conn.execute("SELECT count(*) FROM sync.watermarks WHERE run_key IN"
                             " (SELECT run_key FROM sync.runs WHERE airflow_run_id = 'dry')").fetchone()[0]
    assert marks == 0
    sync(town, portal, "real", interval=interval)
    assert_in_sync(town, portal)


def test_a_subset_of_data_sets_must_be_enabled(town, portal):
    comm = community(datasets=("accounts", "residents"))
    ctx = RunContext(comm, "subset", portal, town.spec.odbc_connection_string(), use_gx=False,
                     request=RunRequest(datasets=("balances",)))
    with pytest.raises(SyncError, match=r"not enabled"):
        prepare(ctx)
