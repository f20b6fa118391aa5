"""The portal's data-set tables partitioned by community (docs/adr/0011): a first load fills a new
partition of its own, other paths find theirs, and an existing portal converts in place."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from pgtest import ADMIN_URL, PG_HOST, PG_PORT
from psycopg import sql
from synctest import assert_in_sync, community, sync

from portal_sync import migrate
from portal_sync.datasets import DATASETS

pytestmark = pytest.mark.integration

PARTITIONED = sorted({ds.portal_table for ds in DATASETS.values()})


def _partition(conn: psycopg.Connection, table: str, code: str) -> str | None:
    return conn.execute("SELECT sync.community_partition(%s, %s)::text", (table, code)).fetchone()[0]


def _indexes(conn: psycopg.Connection, relation: str) -> int:
    return conn.execute("SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass", (relation,)).fetchone()[0]


def test_a_first_load_fills_a_new_partition_and_a_wiped_community_reloads_into_its_own(make_source, portal):
    sim = make_source("sqlite", seed=41)
    first = sync(sim, portal, "first")
    assert all(first[name]["rows_inserted"] > 0 for name in ("accounts", "charges", "payments"))
    assert_in_sync(sim, portal)
    with psycopg.connect(portal) as conn:
        parts = {table: _partition(conn, table, "SPRINGFLD") for table in PARTITIONED}
        for table, part in parts.items():
            assert part == f"portal_part.{table}__springfld", (table, part)
            # attached: the parent's key and every index built on it, the trigger cloned
            assert _indexes(conn, part) == _indexes(conn, f"portal.{table}") > 0, table
        assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
                            (parts["accounts"],)).fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM portal.charges").fetchone()[0] == conn.execute(
            f"SELECT count(*) FROM {parts['charges']}").fetchone()[0] == first["charges"]["rows_inserted"]
        oids = {t: conn.execute("SELECT %s::regclass::oid", (p,)).fetchone()[0] for t, p in parts.items()}
        for table in PARTITIONED:  # wiped by hand: the partitions stay, empty
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier("portal", table)))
        conn.execute("DELETE FROM sync.watermarks")
        conn.commit()

    again = sync(sim, portal, "again")  # a first load again, into the partitions that exist
    assert again["charges"]["rows_inserted"] == first["charges"]["rows_inserted"]
    assert_in_sync(sim, portal)
    with psycopg.connect(portal) as conn:
        assert {t: conn.execute("SELECT %s::regclass::oid", (p,)).fetchone()[0] for t, p in parts.items()} == oids


def test_a_failed_first_load_leaves_no_partition_behind(make_source, portal, monkeypatch):
    """The partition is made inside the publish transaction: a publish that fails leaves nothing."""
    from portal_sync import pipeline, publish

    sim = make_source("sqlite", seed=42)

    def broken(conn, *args, **kwargs):
        raise psycopg.errors.QueryCanceled("canceling statement due to statement timeout")

    monkeypatch.setattr(publish, "_maintain_quarantine", broken)
    with pytest.raises(pipeline.SyncError):
        sync(sim, portal, "broken", comm=community(datasets=("accounts",)))
    with psycopg.connect(portal) as conn:
        assert _partition(conn, "accounts", "SPRINGFLD") is None
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'portal_part'").fetchone()[0] == 0
    monkeypatch.undo()
    sync(sim, portal, "retry", comm=community(datasets=("accounts",)))
    with psycopg.connect(portal) as conn:
        assert _partition(conn, "accounts", "SPRINGFLD") == "portal_part.accounts__springfld"


def test_two_communities_with_the_same_ids_each_in_their_own_partition(make_source, portal):
    codes = [f"P{uuid.uuid4().hex[:6].upper()}" for _ in range(2)]
    sims = {code: make_source("sqlite", seed=43, org_code=code, org_name=code) for code in codes}
    for code in codes:
        sync(sims[code], portal, f"run-{code}", comm=community(code=code))
    for code in codes:
        assert_in_sync(sims[code], portal, community(code=code))
    with psycopg.connect(portal) as conn:
        for code in codes:
            part = _partition(conn, "charges", code)
            assert conn.execute(f"SELECT count(DISTINCT community_code) FROM {part}").fetchone()[0] == 1
        counts = [conn.execute("SELECT count(*) FROM portal.charges WHERE community_code = %s",
                               (code,)).fetchone()[0] for code in codes]
    assert counts[0] == counts[1] > 0  # same seed: the same charge_ids, once per community


@pytest.fixture
def before_partitions() -> Iterator[str]:
    """A new database migrated up to, not including, migration 0031 (the portal of the release before)."""
    name = f"cps_test_part_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{name}"
    try:
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_an_existing_portal_converts_in_place_and_keeps_syncing(before_partitions, make_source, monkeypatch):
    url = before_partitions
    every = migrate.available()
    monkeypatch.setattr(migrate, "available", lambda: [m for m in every if m.version < 31])
    migrate.migrate(url)
    old, new = "OLDTOWN", "NEWTOWN"
    sims = {code: make_source("sqlite", seed=44, org_code=code, org_name=code) for code in (old, new)}
    ids = [r[0] for r in sims[old].query('SELECT "CustomerID" FROM "UB_Customer" ORDER BY 1 LIMIT 10')]
    with psycopg.connect(url) as conn:  # the old release's rows (10 of the old town's accounts, stale)
        assert conn.execute("SELECT relkind FROM pg_class WHERE oid = 'portal.charges'::regclass").fetchone()[0] == "r"
        conn.execute("INSERT INTO portal.accounts (community_code, account_id, account_number, account_number_digits,"
                     " status, online_access, portal_visible) SELECT %s, g, 'N' || g, g::text, 'active', true, true"
                     " FROM unnest(%s::bigint[]) g", (old, ids))
    monkeypatch.setattr(migrate, "available", lambda: every)
    assert [m.version for m in migrate.migrate(url)] == [m.version for m in every if m.version >= 31]

    with psycopg.connect(url) as conn:
        for table in PARTITIONED:
            assert conn.execute("SELECT relkind FROM pg_class WHERE oid = %s::regclass",
                                (f"portal.{table}",)).fetchone()[0] == "p"
        assert _partition(conn, "accounts", old) == "portal_part.accounts__legacy"
        assert _partition(conn, "charges", old) is None  # an empty old table is dropped, not kept
        assert conn.execute("SELECT count(*) FROM portal.accounts WHERE community_code = %s",
                            (old,)).fetchone()[0] == len(ids)
        names = {r[0] for r in conn.execute("SELECT indexrelid::regclass::text FROM pg_index"
                                            " WHERE indrelid = 'portal.accounts'::regclass")}
        assert names == {"portal.accounts_pkey", "portal.accounts_digits", "portal.accounts_resident",
                         "portal.accounts_landlord"}
        # the account-number trigger fires once per change, on the parent's clone
        conn.execute("UPDATE portal.accounts SET account_number = 'X1' WHERE community_code = %s AND account_id = %s",
                     (old, ids[0]))
        assert conn.execute("SELECT count(*) FROM sync.account_number_history WHERE community_code = %s",
                            (old,)).fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM pg_policy WHERE polrelid = 'portal.accounts'::regclass"
                            ).fetchone()[0] == 2
        assert conn.execute("SELECT count(*) FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid"
                            " WHERE c.relnamespace = 'portal_part'::regnamespace").fetchone()[0] == 0

    # the old community's next sync updates its rows where they are; a new community gets its own
    for code in (old, new):
        sync(sims[code], url, f"after-{code}", comm=community(code=code))
        assert_in_sync(sims[code], url, community(code=code))
    with psycopg.connect(url) as conn:
        assert _partition(conn, "accounts", old) == "portal_part.accounts__legacy"
        assert _partition(conn, "charges", old) == "portal_part.charges__oldtown"
        assert _partition(conn, "accounts", new) == "portal_part.accounts__newtown"
        legacy, accounts = conn.execute(  # the old town's other accounts joined its old rows
            "SELECT (SELECT count(*) FROM portal_part.accounts__legacy),"
            " (SELECT count(*) FROM portal.accounts WHERE community_code = %s)", (old,)).fetchone()
        assert legacy == accounts > len(ids)
