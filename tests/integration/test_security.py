"""Roles and row-level security of the portal, against the real PostgreSQL (docs/adr/0006).

Two simulated communities are synced by a login of the writer group; then a reader login
of each community proves it sees only its own rows in every portal table and can change
nothing, and the writer proves it cannot drop the portal or reach beyond it. Roles are
cluster-wide: every role a test makes carries a random tag and is dropped after the test.
Also here: no tracked file of the repository holds a password for a non-local host.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import errors, sql
from synctest import assert_in_sync, community, sync

from portal_sync import publish, roles
from portal_sync.config import Community

ROOT = Path(__file__).resolve().parents[2]
DENIED = errors.InsufficientPrivilege


def _url(admin_url: str, user: str, password: str | None, dbname: str | None = None) -> str:
    info = psycopg.conninfo.conninfo_to_dict(admin_url)
    secret = f":{password}" if password else ""
    return (f"postgresql://{user}{secret}@{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}"
            f"/{dbname or info['dbname']}")


def _tables(conn: psycopg.Connection, schema: str) -> list[str]:
    return [t for (t,) in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (schema,)).fetchall()]


def _denied(conn: psycopg.Connection, statement: str | sql.Composable, params=None,
            error: type[Exception] = DENIED) -> None:
    """The statement must fail with a permission error (each in its own transaction)."""
    with pytest.raises(error):
        conn.execute(statement, params)


@dataclass
class RoleJanitor:
    """Logins and groups a test creates; dropped afterwards whatever happened."""

    admin_url: str
    logins: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)

    def login(self, name: str) -> tuple[str, str]:
        password = f"pw-{uuid.uuid4().hex}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name),
                                                                             sql.Literal(password)))
        self.logins.append(name)
        return name, password

    def cleanup(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in self.logins:
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
                    conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
            for code in self.codes:
                roles.drop_reader_role(conn, code)


@pytest.fixture
def janitor(portal: str) -> Iterator[RoleJanitor]:
    j = RoleJanitor(portal)
    try:
        yield j
    finally:
        j.cleanup()


@dataclass
class TwoCommunities:
    admin_url: str
    writer: tuple[str, str]  # login, password
    writer_url: str
    codes: tuple[str, str]
    comms: dict[str, Community]
    sims: dict[str, object]
    results: dict[str, dict]
    reader_urls: dict[str, str]
    tag: str


@pytest.fixture
def two_communities(portal, make_source, janitor, tmp_path, monkeypatch) -> TwoCommunities:
    """Communities A and B synced by a writer login; a reader login for each."""
    monkeypatch.setenv("PORTAL_SYNC_REPORT_DIR", str(tmp_path / "reports"))
    tag = uuid.uuid4().hex[:6]
    codes = (f"SA{tag.upper()}", f"SB{tag.upper()}")
    writer, writer_pw = janitor.login(f"cps_sec_{tag}_writer")
    with psycopg.connect(portal, autocommit=True) as conn:
        roles.grant_writer(conn, writer)
    writer_url = _url(portal, writer, writer_pw)

    janitor.codes.extend(codes)
    refreshed = roles.refresh(portal, codes, all_configured=False)
    assert sorted(refreshed.created) == sorted(roles.reader_role(c) for c in codes)
    reader_urls = {}
    for code in codes:
        login, password = janitor.login(f"cps_sec_{tag}_reader_{code.lower()}")
        with psycopg.connect(portal, autocommit=True) as conn:
            roles.grant_reader(conn, login, code)
        reader_urls[code] = _url(portal, login, password)

    comms, sims, results = {}, {}, {}
    for i, code in enumerate(codes):
        sims[code] = make_source("sqlite", seed=11 + i, org_code=code, org_name=f"Community {code}")
        comms[code] = community(code=code)
        results[code] = sync(sims[code], writer_url, f"security-{code}", comm=comms[code], use_gx=(i == 0))
    return TwoCommunities(portal, (writer, writer_pw), writer_url, codes, comms, sims, results, reader_urls, tag)


@pytest.mark.integration
def test_every_portal_table_has_row_security_and_the_roles_only_their_privileges(portal):
    with psycopg.connect(portal) as conn:
        tables = _tables(conn, "portal")
        assert {"communities", "accounts", "residents", "charges", "payments", "balances", "assessments"} <= set(
            tables)
        for table in tables:
            qualified = f"portal.{table}"
            rls, owner = conn.execute(
                "SELECT relrowsecurity, pg_get_userbyid(relowner) FROM pg_class WHERE oid = %s::regclass",
                (qualified,)).fetchone()
            assert rls, f"{qualified}: row level security is off"
            assert owner != roles.WRITER_ROLE, f"{qualified} is owned by the writer"
            policies = dict(conn.execute(
                "SELECT policyname, cmd FROM pg_policies WHERE schemaname = 'portal' AND tablename = %s",
                (table,)).fetchall())
            assert policies == {"sync_writer": "ALL", "community_reader": "SELECT"}, (qualified, policies)
            for privilege, writer, reader in (("SELECT", True, True), ("INSERT", True, False),
                                              ("UPDATE", True, False), ("DELETE", True, False),
                                              ("TRUNCATE", False, False), ("REFERENCES", False, False),
                                              ("TRIGGER", False, False)):
                got = conn.execute("SELECT has_table_privilege(%s, %s, %s), has_table_privilege(%s, %s, %s)",
                                   (roles.WRITER_ROLE, qualified, privilege,
                                    roles.READER_ROLE, qualified, privilege)).fetchone()
                assert got == (writer, reader), (qualified, privilege, got)
        for table in _tables(conn, "sync"):
            qualified = f"sync.{table}"
            got = conn.execute(
                "SELECT has_table_privilege(%s, %s, 'SELECT, INSERT, UPDATE, DELETE'),"
                " has_table_privilege(%s, %s, 'TRUNCATE'), has_table_privilege(%s, %s, 'SELECT')",
                (roles.WRITER_ROLE, qualified, roles.WRITER_ROLE, qualified, roles.READER_ROLE, qualified),
            ).fetchone()
            assert got == (True, False, False), (qualified, got)
        schemas = conn.execute(
            "SELECT has_schema_privilege(%(w)s, 'stage', 'CREATE'), has_schema_privilege(%(w)s, 'portal', 'CREATE'),"
            " has_schema_privilege(%(w)s, 'sync', 'CREATE'), has_schema_privilege(%(r)s, 'portal', 'USAGE'),"
            " has_schema_privilege(%(r)s, 'sync', 'USAGE'), has_schema_privilege(%(r)s, 'stage', 'USAGE'),"
            " has_function_privilege(%(w)s, 'sync.is_money(text)', 'EXECUTE'),"
            " has_function_privilege(%(w)s, 'sync.secure_portal_tables()', 'EXECUTE')",
            {"w": roles.WRITER_ROLE, "r": roles.READER_ROLE}).fetchone()
        assert schemas == (True, False, False, True, False, False, True, False)
        for role in (roles.WRITER_ROLE, roles.READER_ROLE):
            attributes = conn.execute(
                "SELECT rolsuper, rolcreatedb, rolcreaterole, rolbypassrls, rolreplication, rolcanlogin"
                " FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            assert attributes == (False,) * 6, (role, attributes)
            memberships = conn.execute(
                "SELECT array_agg(g.rolname) FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
                " JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = %s", (role,)).fetchone()[0]
            assert memberships is None, f"{role} is a member of {memberships} (e.g. pg_read_all_data)"


@pytest.mark.integration
def test_each_reader_sees_only_its_own_community_in_every_portal_table(two_communities, janitor):
    t = two_communities
    a, b = t.codes
    for code in t.codes:
        assert all(row["phase"] == "published" for row in t.results[code].values()), t.results[code]
    with psycopg.connect(t.admin_url) as conn:
        tables = _tables(conn, "portal")
        conn.execute("ANALYZE " + ", ".join(f"portal.{name}" for name in tables))
        owned = {(name, code): conn.execute(
            sql.SQL("SELECT count(*) FROM portal.{} WHERE community_code = %s").format(sql.Identifier(name)),
            (code,)).fetchone()[0] for name in tables for code in t.codes}
    assert all(owned[(name, code)] > 0 for name in tables for code in t.codes), owned

    for code, other in ((a, b), (b, a)):
        with psycopg.connect(t.reader_urls[code]) as conn:
            for name in tables:
                total, mine, theirs = conn.execute(sql.SQL(
                    "SELECT count(*), count(*) FILTER (WHERE community_code = %s),"
                    " count(*) FILTER (WHERE community_code = %s) FROM portal.{}").format(sql.Identifier(name)),
                    (code, other)).fetchone()
                assert (total, mine, theirs) == (owned[(name, code)], owned[(name, code)], 0), (code, name)
            # a session setting a reader can set itself changes nothing
            conn.execute("SELECT set_config('portal.community', %s, false), set_config('app.community', %s, false)",
                         (other, other))
            assert conn.execute("SELECT count(*) FROM portal.accounts WHERE community_code = %s",
                                (other,)).fetchone()[0] == 0
            # planner statistics of row-secured tables are hidden (they would show the other's values)
            assert conn.execute("SELECT count(*) FROM pg_stats WHERE schemaname = 'portal'").fetchone()[0] == 0

    # a login of no community sees nothing; a login of both sees both
    nobody, nobody_pw = janitor.login(f"cps_sec_{t.tag}_nobody")
    both, both_pw = janitor.login(f"cps_sec_{t.tag}_both")
    with psycopg.connect(t.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(roles.READER_ROLE), sql.Identifier(nobody)))
        for code in t.codes:
            roles.grant_reader(conn, both, code)
    with psycopg.connect(_url(t.admin_url, nobody, nobody_pw)) as conn:
        assert [conn.execute(sql.SQL("SELECT count(*) FROM portal.{}").format(sql.Identifier(name))).fetchone()[0]
                for name in tables] == [0] * len(tables)
    with psycopg.connect(_url(t.admin_url, both, both_pw)) as conn:
        assert conn.execute("SELECT count(*) FROM portal.accounts").fetchone()[0] == (
            owned[("accounts", a)] + owned[("accounts", b)])


@pytest.mark.integration
def test_a_reader_can_change_nothing_and_cannot_reach_sync_stage_or_another_community(two_communities):
    t = two_communities
    a, b = t.codes
    with psycopg.connect(t.writer_url, autocommit=True) as conn:  # a staging table, as a run leaves one
        conn.execute(f"CREATE TABLE stage.cps_sec_{t.tag}_probe AS SELECT 1 AS x")
    with psycopg.connect(t.admin_url) as conn:
        portal_tables, sync_tables = _tables(conn, "portal"), _tables(conn, "sync")
        stage_tables = _tables(conn, "stage")
        before = conn.execute("SELECT md5(string_agg(t::text, '' ORDER BY t::text)) FROM portal.accounts t").fetchone()
    assert sync_tables and stage_tables

    with psycopg.connect(t.reader_urls[a], autocommit=True) as conn:
        for name in portal_tables:
            table = sql.Identifier("portal", name)
            _denied(conn, sql.SQL("INSERT INTO {} (community_code) VALUES (%s)").format(table), (a,))
            _denied(conn, sql.SQL("UPDATE {} SET community_code = community_code").format(table))
            _denied(conn, sql.SQL("DELETE FROM {}").format(table))
            _denied(conn, sql.SQL("TRUNCATE {}").format(table))
            _denied(conn, sql.SQL("ALTER TABLE {} DISABLE ROW LEVEL SECURITY").format(table))
            _denied(conn, sql.SQL("DROP POLICY community_reader ON {}").format(table))
            _denied(conn, sql.SQL("DROP TABLE {}").format(table))
        for schema, names in (("sync", sync_tables), ("stage", stage_tables)):
            for name in names:
                _denied(conn, sql.SQL("SELECT * FROM {} LIMIT 1").format(sql.Identifier(schema, name)))
        _denied(conn, "SELECT sync.is_money('1.00')")
        _denied(conn, "CREATE TABLE portal.cps_sec_mine (community_code text)")
        _denied(conn, "CREATE TABLE stage.cps_sec_mine (x int)")
        # widening its own membership
        _denied(conn, sql.SQL("SET ROLE {}").format(sql.Identifier(roles.reader_role(b))))
        _denied(conn, sql.SQL("SET ROLE {}").format(sql.Identifier(roles.WRITER_ROLE)))
        _denied(conn, sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(roles.reader_role(b))))
        _denied(conn, sql.SQL("CREATE ROLE {}").format(sql.Identifier(f"portal_reader_zz{t.tag}")))
        _denied(conn, "SELECT rolpassword FROM pg_authid")
        # switching row security off does not show more: the query is refused
        conn.execute("SET row_security = off")
        _denied(conn, "SELECT count(*) FROM portal.accounts")
    with psycopg.connect(t.admin_url) as conn:
        after = conn.execute("SELECT md5(string_agg(t::text, '' ORDER BY t::text)) FROM portal.accounts t").fetchone()
    assert after == before


@pytest.mark.integration
def test_the_writer_syncs_and_cannot_drop_the_portal_or_reach_beyond_it(two_communities, janitor):
    t = two_communities
    a, b = t.codes
    for code in t.codes:
        assert {row["phase"] for row in t.results[code].values()} == {"published"}, t.results[code]
    assert_in_sync(t.sims[a], t.admin_url, t.comms[a])
    assert_in_sync(t.sims[b], t.admin_url, t.comms[b])
    with psycopg.connect(t.admin_url) as conn:
        left = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'stage' AND tablename LIKE %s",
                            (f"s_{t.tag}%",)).fetchone()[0]
        runs = conn.execute("SELECT community_code, outcome FROM sync.runs WHERE community_code IN (%s, %s)"
                            " ORDER BY 1", t.codes).fetchall()
    assert left == 0
    assert runs == [(a, "published"), (b, "published")]

    other_db = f"cps_test_sec_other_{t.tag}"
    with psycopg.connect(t.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(other_db)))
    try:
        with psycopg.connect(_url(t.admin_url, "postgres", None, other_db),
                             autocommit=True) as conn:
            conn.execute("CREATE TABLE secrets (v text)")
            conn.execute("INSERT INTO secrets VALUES ('another application''s data')")
        with psycopg.connect(t.writer_url, autocommit=True) as conn:
            who = conn.execute("SELECT current_user, session_user").fetchone()
            assert who[0] == roles.WRITER_ROLE  # the login's default role in the portal database
            for name in ("accounts", "charges", "communities"):
                table = sql.Identifier("portal", name)
                _denied(conn, sql.SQL("DROP TABLE {}").format(table))
                _denied(conn, sql.SQL("TRUNCATE {}").format(table))
                _denied(conn, sql.SQL("ALTER TABLE {} DISABLE ROW LEVEL SECURITY").format(table))
                _denied(conn, sql.SQL("ALTER TABLE {} ADD COLUMN x int").format(table))
                _denied(conn, sql.SQL("DROP POLICY community_reader ON {}").format(table))
            _denied(conn, "DROP TABLE sync.runs")
            _denied(conn, "DROP SCHEMA portal CASCADE")
            _denied(conn, "CREATE TABLE portal.cps_sec_mine (community_code text)")
            _denied(conn, "CREATE TABLE sync.cps_sec_mine (x int)")
            _denied(conn, "CREATE FUNCTION sync.cps_sec_f() RETURNS int LANGUAGE sql AS 'SELECT 1'")
            _denied(conn, "SELECT sync.secure_portal_tables()")
            _denied(conn, "SELECT * FROM public.portal_sync_migrations")
            _denied(conn, "SELECT rolpassword FROM pg_authid")
            _denied(conn, "SELECT pg_read_file('/etc/hostname')")
            _denied(conn, f"COPY portal.accounts TO '/tmp/cps_sec_{t.tag}.csv'")
            _denied(conn, f"CREATE DATABASE cps_sec_{t.tag}_mine")
            _denied(conn, f"CREATE ROLE cps_sec_{t.tag}_mine")
            _denied(conn, "ALTER ROLE CURRENT_USER BYPASSRLS")
            conn.execute("SET ROLE NONE")  # back to the login itself: no more rights
            assert conn.execute("SELECT current_user").fetchone()[0] == t.writer[0]
            _denied(conn, "ALTER ROLE SESSION_USER SUPERUSER")
            _denied(conn, "ALTER ROLE SESSION_USER CREATEROLE")
            _denied(conn, "DROP TABLE portal.accounts")
            # its own staging tables it may create and drop
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(roles.WRITER_ROLE)))
            conn.execute(f"CREATE TABLE stage.cps_sec_{t.tag}_own (x int)")
            conn.execute(f"DROP TABLE stage.cps_sec_{t.tag}_own")
        # another database of the cluster: it may connect (PUBLIC's CONNECT) but read nothing
        with psycopg.connect(_url(t.admin_url, *t.writer, other_db),
                             autocommit=True) as conn:
            _denied(conn, "SELECT * FROM secrets")
            _denied(conn, "CREATE TABLE public.cps_sec_mine (x int)")
    finally:
        with psycopg.connect(t.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(other_db)))


def _last_analyze(admin_url: str, table: str, code: str):
    """When the community's partition of a portal table was last analysed."""
    with psycopg.connect(admin_url) as conn:
        return conn.execute("SELECT s.last_analyze FROM pg_stat_user_tables s"
                            " WHERE s.relid = sync.community_partition(%s, %s)", (table, code)).fetchone()[0]


@pytest.mark.integration
def test_the_writer_refreshes_portal_statistics_through_the_narrow_function_only(portal, make_source, janitor):
    """ANALYZE by a role that owns no table is skipped with a WARNING: the sync's login must go through
    sync.analyze_community_rows, which analyses one community's partition of a portal table the sync
    writes and nothing else."""
    tag = uuid.uuid4().hex[:6]
    writer, writer_pw = janitor.login(f"cps_sec_{tag}_stats")
    with psycopg.connect(portal, autocommit=True) as conn:
        roles.grant_writer(conn, writer)
    writer_url = _url(portal, writer, writer_pw)
    sim = make_source("sqlite", seed=15)
    code, other = "SPRINGFLD", f"ST{tag.upper()}"
    sync(sim, writer_url, "stats", comm=community(datasets=("accounts", "charges", "residents")))
    sync(make_source("sqlite", seed=16, org_code=other, org_name="Other"), writer_url, "stats2",
         comm=community(code=other, datasets=("accounts", "charges", "residents")))
    before = {name: _last_analyze(portal, name, code) for name in ("charges", "accounts")}
    other_before = _last_analyze(portal, "charges", other)

    counts = {"charges": publish.PublishCounts(inserted=publish.ANALYZE_AFTER_ROWS),
              "accounts": publish.PublishCounts(inserted=1)}
    with psycopg.connect(writer_url, autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == roles.WRITER_ROLE
        assert publish.refresh_statistics(conn, code, counts) == ['portal."charges"']
    after = _last_analyze(portal, "charges", code)
    assert after is not None and (before["charges"] is None or after > before["charges"])
    assert _last_analyze(portal, "accounts", code) == before["accounts"]  # below the threshold: left alone
    assert _last_analyze(portal, "charges", other) == other_before  # another community's rows: left alone
    with psycopg.connect(portal) as conn:
        tuples, rows = conn.execute(
            "SELECT reltuples, (SELECT count(*) FROM portal.charges WHERE community_code = %s) FROM pg_class"
            " WHERE oid = sync.community_partition('charges', %s)", (code, code)).fetchone()
    assert tuples == rows > 0

    with psycopg.connect(writer_url, autocommit=True) as conn:
        for bad in ("runs", "sync.runs", "charges; DROP TABLE portal.charges", "pg_authid", "", None):
            _denied(conn, "SELECT sync.analyze_community_rows(%s, %s)", (bad, code), errors.InvalidParameterValue)
        for bad in ("stats", "A", "X'; DROP TABLE portal.charges; --", "", None):
            _denied(conn, "SELECT sync.analyze_community_rows('charges', %s)", (bad,), errors.InvalidParameterValue)
    outsider, outsider_pw = janitor.login(f"cps_sec_{tag}_outsider")  # no group: no EXECUTE
    with psycopg.connect(_url(portal, outsider, outsider_pw), autocommit=True) as conn:
        _denied(conn, "SELECT sync.analyze_community_rows('charges', %s)", (code,))
    _assert_narrow_definer(portal, "sync.analyze_community_rows(text, text)")
    with psycopg.connect(portal) as conn:  # its predecessor, which analysed a whole table, is gone
        assert conn.execute("SELECT to_regprocedure('sync.analyze_portal_table(text)')").fetchone()[0] is None


@pytest.mark.integration
def test_each_community_has_partitions_only_the_narrow_functions_make_and_readers_never_reach(two_communities):
    """docs/adr/0011: a community's rows sit in partitions in portal_part, owned by the schema owner and
    reached only through the parent tables and their row security; the writer creates and attaches a
    partition only through the two narrow functions, for a portal table and a community code."""
    t = two_communities
    a, b = t.codes
    with psycopg.connect(t.admin_url) as conn:
        for table in ("accounts", "charges", "payments", "balances", "residents", "assessments"):
            for code in (a, b):
                part = conn.execute("SELECT sync.community_partition(%s, %s)::text", (table, code)).fetchone()[0]
                assert part == f"portal_part.{table}__{code.lower()}", (table, code, part)
                owner, rows, others = conn.execute(
                    f"SELECT pg_get_userbyid(c.relowner), (SELECT count(*) FROM {part}),"
                    f" (SELECT count(*) FROM {part} WHERE community_code <> %s) FROM pg_class c"
                    " WHERE c.oid = %s::regclass", (code, part)).fetchone()
                assert owner != roles.WRITER_ROLE and rows > 0 and others == 0, (part, owner, rows, others)
                for role in (roles.WRITER_ROLE, roles.READER_ROLE):  # attached: only through the parent
                    assert not conn.execute("SELECT has_table_privilege(%s, %s, 'SELECT, INSERT, UPDATE, DELETE')",
                                            (role, part)).fetchone()[0], (role, part)
        assert conn.execute("SELECT has_schema_privilege(%s, 'portal_part', 'USAGE'),"
                            " has_schema_privilege(%s, 'portal_part', 'CREATE')",
                            (roles.READER_ROLE, roles.WRITER_ROLE)).fetchone() == (False, False)
    with psycopg.connect(t.reader_urls[a], autocommit=True) as conn:
        _denied(conn, f"SELECT count(*) FROM portal_part.charges__{b.lower()}")
        _denied(conn, f"SELECT count(*) FROM portal_part.charges__{a.lower()}")
        _denied(conn, "SELECT sync.new_community_partition('charges', %s)", (f"Z{t.tag.upper()}",))
    with psycopg.connect(t.writer_url, autocommit=True) as conn:
        _denied(conn, "SELECT sync.new_community_partition('charges', %s)", (a,), errors.DuplicateTable)
        for table, code in (("runs", a), ("communities", a), ("charges; DROP TABLE portal.charges", a),
                            (None, a), ("charges", "lower"), ("charges", "A'); DROP TABLE x; --"), ("charges", None)):
            _denied(conn, "SELECT sync.new_community_partition(%s, %s)", (table, code), errors.InvalidParameterValue)
            _denied(conn, "SELECT sync.attach_community_partition(%s, %s)", (table, code),
                    errors.InvalidParameterValue)
        _denied(conn, "CREATE TABLE portal_part.cps_sec_mine (x int)")
        _denied(conn, sql.SQL("ALTER TABLE portal.charges DETACH PARTITION {}").format(
            sql.Identifier("portal_part", f"charges__{a.lower()}")))
        # A new partition: the writer may only fill it; attached, its rows are the community's, readable
        # through the parent only.
        code = f"Z{t.tag.upper()}"
        with conn.transaction(force_rollback=True):
            part = conn.execute("SELECT sync.new_community_partition('payments', %s)::text", (code,)).fetchone()[0]
            _payment(conn, part, 1, code)
            with pytest.raises(errors.CheckViolation), conn.transaction():
                _payment(conn, part, 2, a)
            for statement in (f"SELECT * FROM {part}", f"UPDATE {part} SET amount = 0", f"DELETE FROM {part}",
                              f"DROP TABLE {part}", f"ALTER TABLE {part} DROP CONSTRAINT community_only"):
                with pytest.raises(DENIED), conn.transaction():
                    conn.execute(statement)
            conn.execute("SELECT sync.attach_community_partition('payments', %s)", (code,))
            assert conn.execute("SELECT count(*) FROM portal.payments WHERE community_code = %s",
                                (code,)).fetchone()[0] == 1
            with pytest.raises(DENIED), conn.transaction():
                _payment(conn, part, 3, code)
    for function in ("sync.new_community_partition(text, text)", "sync.attach_community_partition(text, text)"):
        _assert_narrow_definer(t.admin_url, function)


def _payment(conn: psycopg.Connection, table: str, payment_id: int, code: str) -> None:
    conn.execute(f"INSERT INTO {table} (community_code, payment_id, account_id, amount, method, paid_at, status,"
                 " status_changed_at) VALUES (%s, %s, 1, 1.00, 'cash', now(), 'posted', now())", (code, payment_id))


def _assert_narrow_definer(admin_url: str, function: str) -> None:
    """Owned by the portal schema's owner, SECURITY DEFINER with a fixed search path, executable by the
    writer group only."""
    with psycopg.connect(admin_url) as conn:
        owner, definer, config = conn.execute(
            "SELECT pg_get_userbyid(p.proowner) = pg_get_userbyid(n.nspowner), p.prosecdef, p.proconfig"
            " FROM pg_proc p, pg_namespace n WHERE p.oid = %s::regprocedure AND n.nspname = 'portal'",
            (function,)).fetchone()
        assert owner and definer and config == ["search_path=pg_catalog, pg_temp"], function
        for role, allowed in ((roles.WRITER_ROLE, True), (roles.READER_ROLE, False), ("public", False)):
            assert conn.execute("SELECT has_function_privilege(%s, %s, 'EXECUTE')",
                                (role, function)).fetchone()[0] is allowed, (function, role)


@pytest.mark.integration
def test_roles_refresh_is_idempotent_and_the_cli_makes_the_configured_communities_roles(
        portal, janitor, tmp_path, monkeypatch, capsys):
    from portal_sync import cli

    code = f"SR{uuid.uuid4().hex[:6].upper()}"
    janitor.codes.append(code)
    config = tmp_path / "communities.yaml"
    config.write_text(f"communities:\n  - code: {code}\n    caselle_conn_id: caselle_sec\n")
    monkeypatch.setenv("PORTAL_SYNC_CONFIG", str(config))

    assert cli.main(["--portal-url", portal, "roles", "--community", code]) == 0
    out = capsys.readouterr().out
    assert f"created  {roles.reader_role(code)}" in out
    assert "row security on portal." in out
    again = roles.refresh(portal, [code])
    assert again.created == [] and again.existing == [roles.reader_role(code)]
    assert roles.reader_role(code) not in again.unconfigured
    with psycopg.connect(portal, autocommit=True) as conn:
        attributes, member = conn.execute(
            "SELECT ARRAY[rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls],"
            " pg_has_role(rolname, %s, 'MEMBER') FROM pg_roles WHERE rolname = %s",
            (roles.READER_ROLE, roles.reader_role(code))).fetchone()
        assert attributes == [False] * 5 and member
        # a reader group someone turned into a login is repaired
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(roles.reader_role(code))))
    repaired = roles.refresh(portal, [code])
    assert repaired.repaired == [roles.reader_role(code)]
    assert cli.main(["--portal-url", portal, "roles", "--community", "NOSUCH"]) == 2  # an operator's typo


@pytest.mark.parametrize("bad", ["springfld", "A", "SPRINGFLD_TOO_LONG", "X'; DROP ROLE postgres; --", "", None])
def test_reader_role_names_come_only_from_valid_community_codes(bad):
    with pytest.raises(ValueError):
        roles.reader_role(bad)


def test_reader_role_names_round_trip():
    assert roles.reader_role("SPRINGFLD") == "portal_reader_springfld"
    assert roles.community_of("portal_reader_springfld") == "SPRINGFLD"
    assert roles.community_of("portal_reader") is None
    assert roles.community_of("portal_reader_SpringFld") is None


# --- the repository holds no credentials --------------------------------------------------------

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]", "0.0.0.0", "host", "hostname", "db", "server"}
PLACEHOLDER = re.compile(r"^(\$\{?\w+\}?|<[^>]*>|\.\.\.|\*+|x+|changeme|password|secret|pass|pw|pwd|"
                         r"\{[^}]*\}|%\(\w+\)s|%s|''|\"\")$", re.IGNORECASE)
# documented local defaults: the demo's Airflow UI user admin/admin (README, scripts/env.sh)
LOCAL_DEFAULTS = {"admin"}
_URL_CREDENTIALS = re.compile(r"\b[a-z][a-z0-9+.-]*://(?P<user>[^\s:/@'\"]+):(?P<password>[^\s@/'\"]*)@"
                              r"(?P<host>\[[^\]]+\]|[^\s:/?'\"]+)", re.IGNORECASE)
_ODBC_PWD = re.compile(r"(?:^|[;'\"{])\s*PWD\s*=\s*(?P<password>[^;'\"\s}]+)", re.IGNORECASE)
_ODBC_SERVER = re.compile(r"\bSERVER\s*=\s*(?P<host>[^;'\"\s]+)", re.IGNORECASE)
_ASSIGNED = re.compile(r"""(?P<key>\b[\w.-]*(?:password|passwd|secret|api_key|apikey|access_key)\b)['"]?\s*[:=]\s*"""
                       r"""(?P<quote>['"])(?P<value>[^'"\n]{3,})(?P=quote)""", re.IGNORECASE)
_YAML_PASSWORD = re.compile(r"^[ \t]*(?:conn_)?password[ \t]*:[ \t]*(?P<value>[^\s#'\"][^#\n]*?)[ \t]*$",
                            re.IGNORECASE | re.MULTILINE)
_PRIVATE_KEY = re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----")
_AWS_KEY = re.compile(r"\bAKIA[0-9A-Z]{16}\b")


def _is_placeholder(value: str) -> bool:
    value = value.strip()
    # too short to be a real password ("u:p@h" in a unit test), a variable, a template field
    return len(value) < 4 or bool(PLACEHOLDER.match(value)) or "{" in value or "$" in value


def password_findings(text: str, yaml: bool = False) -> list[str]:
    """Password-looking literals in ``text`` (a YAML file's with ``yaml``), except placeholders and
    documented local defaults."""
    found = []
    for m in _URL_CREDENTIALS.finditer(text):
        host = m["host"].lower()
        if not _is_placeholder(m["password"]) and host not in LOCAL_HOSTS and not _is_placeholder(host):
            found.append(f"credentials in URL for host {host}")
    servers = {m["host"].lower() for m in _ODBC_SERVER.finditer(text)}
    for m in _ODBC_PWD.finditer(text):
        if not _is_placeholder(m["password"]) and not servers <= LOCAL_HOSTS:
            found.append(f"ODBC PWD for {sorted(servers - LOCAL_HOSTS) or 'an unnamed server'}")
    for m in _ASSIGNED.finditer(text):
        if not _is_placeholder(m["value"]) and m["value"] not in LOCAL_DEFAULTS:
            found.append(f"literal for {m['key']}")
    for m in _YAML_PASSWORD.finditer(text) if yaml else ():
        if not _is_placeholder(m["value"]) and m["value"] not in LOCAL_DEFAULTS:
            found.append("password in YAML")
    if _PRIVATE_KEY.search(text):
        found.append("private key")
    if _AWS_KEY.search(text):
        found.append("AWS access key id")
    return found


def test_the_scanner_finds_what_it_looks_for():
    planted = "s3cr3t-" + "Value9"  # built here so that this file itself stays clean
    assert password_findings(f"url = 'postgresql://sync:{planted}@db.city.example.org:5432/portal'")
    assert password_findings(f"Driver={{ODBC Driver 18}};SERVER=caselle.city.gov;UID=r;PWD={planted};")
    assert password_findings(f'connect(password="{planted}")')
    assert password_findings(f"    conn_password: {planted}\n", yaml=True)
    assert password_findings("-----BEGIN RSA " + "PRIVATE KEY-----")
    assert not password_findings("postgresql://postgres@127.0.0.1:5432/cps_portal")
    assert not password_findings(f"postgresql://sync:{planted}@127.0.0.1:5432/x")
    assert not password_findings("Driver={SQLite3};Database=/tmp/x.db;PWD=${CASELLE_PASSWORD};")
    assert not password_findings('pwd = f"PWD={self.password};" if self.password else ""')
    assert not password_findings("    conn_password:\n    conn_password: ...\n", yaml=True)
    assert not password_findings('    password: str = "admin"\n')


def test_no_tracked_file_holds_a_password_for_a_remote_host():
    try:
        listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True,
                                timeout=60).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    problems = []
    for name in filter(None, listed.decode().split("\0")):
        path = ROOT / name
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        for finding in password_findings(data.decode("utf-8", errors="replace"),
                                         yaml=name.endswith((".yaml", ".yml"))):
            problems.append(f"{name}: {finding}")
    assert not problems, "\n".join(problems)
