"""Full syncs of simulated communities over real ODBC drivers into the real portal database."""

from __future__ import annotations

import psycopg
import pytest
from synctest import FULL, assert_in_sync, community, portal_fingerprint, sync

from portal_sync.datasets import DATASET_NAMES
from portal_sync.pipeline import (
    RunContext,
    SyncError,
    cleanup,
    extract_dataset,
    prepare,
    publish_run,
    validate_dataset,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("engine", ["sqlite", "postgresql", "mariadb"])
def test_full_sync_equals_the_projection(engine, make_source, portal):
    sim = make_source(engine)
    results = sync(sim, portal, f"full-{engine}", use_gx=(engine == "sqlite"))
    assert {name: row["phase"] for name, row in results.items()} == {name: "published" for name in DATASET_NAMES}
    assert_in_sync(sim, portal)


def test_resync_after_changes_reaches_the_projection_and_a_rerun_changes_nothing(make_source, portal):
    from datetime import timedelta

    sim = make_source("sqlite", seed=3)
    sync(sim, portal, "first")
    sim.evolve(timedelta(days=3))
    sim.renumber(fraction=0.5)
    sim.delete_inactive_customers()
    sim.modify_data(5)
    sync(sim, portal, "second", **FULL, allow_mass_delete=DATASET_NAMES)
    assert_in_sync(sim, portal)

    results = sync(sim, portal, "third", **FULL)
    for name, row in results.items():
        assert (row["rows_inserted"], row["rows_updated"], row["rows_deleted"], row["rows_restored"]) == (0, 0, 0, 0), (
            name, row)
        assert row["rows_unchanged"] > 0


def test_period_close_archives_purged_lines_instead_of_deleting_them(make_source, portal):
    from datetime import date

    sim = make_source("sqlite", seed=5)
    sync(sim, portal, "before-close")
    with psycopg.connect(portal) as conn:
        old_lines = conn.execute(
            "SELECT count(*) FROM portal.charges WHERE transaction_date < %s", (date(2019, 1, 1),)
        ).fetchone()[0]
    assert old_lines > 0
    sim.period_close(purge_before=date(2019, 1, 1))
    results = sync(sim, portal, "after-close", **FULL, allow_mass_delete=("charges",))
    assert results["charges"]["rows_archived"] == old_lines
    assert results["charges"]["rows_deleted"] == 0
    with psycopg.connect(portal) as conn:
        archived, deleted = conn.execute(
            "SELECT count(*) FILTER (WHERE archived_at IS NOT NULL), count(*) FILTER (WHERE deleted_at IS NOT NULL)"
            " FROM portal.charges WHERE transaction_date < %s", (date(2019, 1, 1),)
        ).fetchone()
    assert (archived, deleted) == (old_lines, 0)
    assert_in_sync(sim, portal)


def test_a_run_killed_between_staging_and_publish_leaves_the_portal_as_it_was(make_source, portal):
    from datetime import timedelta

    sim = make_source("sqlite", seed=4)
    sync(sim, portal, "baseline")
    before = portal_fingerprint(portal)
    sim.evolve(timedelta(days=2))
    sim.renumber(fraction=1.0)

    ctx = RunContext(community(), "killed", portal, sim.spec.odbc_connection_string(), use_gx=False)
    prepare(ctx)
    for name in DATASET_NAMES:
        extract_dataset(ctx, name)
        validate_dataset(ctx, name)
    # The worker dies here: no publish. The portal must not show any of the staged changes.
    assert portal_fingerprint(portal) == before
    # Cleanup (the ALL_DONE task, or the next attempt) removes every staging table of the run.
    assert cleanup(ctx)
    with psycopg.connect(portal) as conn:
        left = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'stage'").fetchone()[0]
    assert left == 0
    assert portal_fingerprint(portal) == before


def test_orphans_are_refused_with_rule_and_key_and_the_rest_publishes(make_source, portal):
    sim = make_source("sqlite", seed=6)
    changes = sim.add_orphans(lines=3, receipts=2)
    results = sync(sim, portal, "orphans")
    assert results["charges"]["phase"] == "published"
    assert results["charges"]["rows_refused"] >= 3
    with psycopg.connect(portal) as conn:
        refused = conn.execute(
            "SELECT dataset, rule, row_key, reason FROM sync.run_findings WHERE rule = 'orphan_account'"
        ).fetchall()
    pmt = {str(r[0]) for r in sim.query(
        "SELECT \"TransactionID\" FROM \"UB_Transaction\" WHERE \"TransactionType\" = 'PMT'")}
    orphan_lines = {str(k) for k in changes["UB_Transaction"].inserted} - pmt
    refused_lines = {key for ds, _, key, _ in refused if ds == "charges"}
    assert orphan_lines and orphan_lines <= refused_lines
    assert any(ds == "payments" for ds, *_ in refused)
    assert all("names no UB_Customer row" in reason for *_, reason in refused)
    assert_in_sync(sim, portal)


def test_a_source_of_another_community_is_refused(make_source, portal):
    sim = make_source("sqlite", org_code="CEDARHLS")
    with pytest.raises(SyncError, match="reaches the Caselle of 'CEDARHLS'"):
        sync(sim, portal, "wrong-source")
    with psycopg.connect(portal) as conn:
        assert conn.execute("SELECT count(*) FROM portal.accounts").fetchone()[0] == 0


def test_residents_are_only_contacts_that_portal_rows_point_to(make_source, portal):
    sim = make_source("sqlite", seed=7)
    sync(sim, portal, "scope", comm=community(datasets=("accounts", "residents")))
    with psycopg.connect(portal) as conn:
        stray = conn.execute(
            "SELECT count(*) FROM portal.residents r WHERE r.deleted_at IS NULL AND NOT EXISTS ("
            " SELECT 1 FROM portal.accounts a WHERE a.deleted_at IS NULL"
            " AND r.resident_id IN (a.resident_id, a.landlord_resident_id))"
        ).fetchone()[0]
        total_contacts = len(sim.query('SELECT "ContactID" FROM "SM_Contact"'))
        residents = conn.execute("SELECT count(*) FROM portal.residents").fetchone()[0]
    assert stray == 0
    assert residents < total_contacts, "employees and vendors must not reach the portal"
    assert_in_sync(sim, portal, community(datasets=("accounts", "residents")))


SENSITIVE = ("SSN", "BirthDate", "DriversLicense", "Notes", "DirectPayRouting", "DirectPayAccount",
             "CreditRating", "CollectionCode", "PayerName")


def test_sensitive_columns_and_values_never_reach_staging_or_portal(make_source, portal):
    sim = make_source("sqlite", seed=8)
    # PayerName may legitimately equal a business name, so plant an unmistakable one.
    sim.execute('UPDATE "CR_Receipt" SET "PayerName" = \'ZZ-PAYER-MARKER-\' || "ReceiptID"')
    sim.execute('UPDATE "SM_Contact" SET "Notes" = \'ZZ-NOTES-MARKER-\' || "ContactID"')
    markers = [r[0] for r in sim.query('SELECT "SSN" FROM "SM_Contact" WHERE "SSN" IS NOT NULL')]
    markers += [r[0] for r in sim.query('SELECT "DriversLicense" FROM "SM_Contact" WHERE "DriversLicense" IS NOT NULL')]
    markers += [r[0] for r in sim.query('SELECT "PayerName" FROM "CR_Receipt" WHERE "PayerName" IS NOT NULL')]
    markers += [r[0] for r in sim.query('SELECT "Notes" FROM "SM_Contact"')]
    markers += [r[0] for r in sim.query(
        'SELECT "DirectPayAccount" FROM "UB_Customer" WHERE "DirectPayAccount" IS NOT NULL')]
    assert markers, "the simulator must fill sensitive columns for this test to mean anything"
    ctx = RunContext(community(), "sensitive", portal, sim.spec.odbc_connection_string(), use_gx=False)
    prepare(ctx)
    for name in DATASET_NAMES:
        extract_dataset(ctx, name)
    with psycopg.connect(portal) as conn:
        columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema IN ('stage', 'portal', 'sync')"
        ).fetchall()}
        assert not columns & set(SENSITIVE)
        assert not {c.lower() for c in columns} & {s.lower() for s in SENSITIVE}
        dumps = []
        for (table,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'stage'").fetchall():
            dumps.append(conn.execute(f'SELECT coalesce(string_agg(x::text, \'|\'), \'\') FROM stage."{table}" x')
                         .fetchone()[0])
    blob = "|".join(dumps)
    leaked = [m for m in markers if m and str(m) in blob]
    assert not leaked, leaked[:5]
    for name in DATASET_NAMES:
        validate_dataset(ctx, name)
    publish_run(ctx)
    cleanup(ctx)
    with psycopg.connect(portal) as conn:
        portal_blob = "|".join(
            conn.execute(f"SELECT coalesce(string_agg(x::text, '|'), '') FROM portal.{name} x").fetchone()[0]
            for name in DATASET_NAMES
        )
    assert not [m for m in markers if m and str(m) in portal_blob]
