"""Database roles of the portal: the sync's writer group and one reader group per community.

Migration 0011 creates the two shared groups and the row security (docs/adr/0006):

- ``portal_sync_writer`` (NOLOGIN): what the sync needs and nothing more; the login the
  Airflow connection ``portal_db`` uses is granted it (:func:`grant_writer`);
- ``portal_reader`` (NOLOGIN): SELECT on the portal tables, whose rows a policy narrows to
  the communities whose reader role the session's user is a member of;
- ``portal_reader_<code>`` (NOLOGIN, one per community, member of ``portal_reader``): made
  here, for each configured community (``portal-sync roles``); a portal login of one
  community is granted its group (:func:`grant_reader`).

Roles are cluster-wide in PostgreSQL: creation is idempotent and safe when two processes
(or two databases' set-ups) do it at once. Everything here runs as the portal's admin
(the owner of the tables, with CREATEROLE). Role names come from validated community codes
and are always quoted as identifiers; no caller text reaches SQL as text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

WRITER_ROLE = "portal_sync_writer"
READER_ROLE = "portal_reader"
READER_PREFIX = "portal_reader_"
_CODE = re.compile(r"[A-Z][A-Z0-9_]{1,9}")
_READER_NAME = re.compile(r"portal_reader_[a-z][a-z0-9_]{1,9}")  # the policy's pattern (migration 0011)
_BAD_ATTRIBUTES = "rolsuper OR rolcreatedb OR rolcreaterole OR rolbypassrls OR rolreplication OR rolcanlogin"


def reader_role(code: str) -> str:
    """The reader group of a community: ``portal_reader_<code in lower case>``."""
    if not isinstance(code, str) or not _CODE.fullmatch(code):
        raise ValueError(f"not a community code: {code!r} (expected [A-Z][A-Z0-9_]{{1,9}})")
    return READER_PREFIX + code.lower()


def community_of(role: str) -> str | None:
    """The community code a reader group stands for (None: not a community reader role)."""
    return role.removeprefix(READER_PREFIX).upper() if _READER_NAME.fullmatch(role) else None


@dataclass
class RolesResult:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    unconfigured: list[str] = field(default_factory=list)  # reader groups of no configured community (kept)
    secured_tables: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"created  {r}" for r in self.created]
        out += [f"repaired {r}" for r in self.repaired]
        out += [f"ok       {r}" for r in self.existing if r not in self.repaired]
        out += [f"unconfigured {r} (not dropped: revoke its members and drop it by hand)" for r in self.unconfigured]
        out.append(f"row security on portal.{{{', '.join(self.secured_tables)}}}")
        return out


def _role_exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", (name,)).fetchone() is not None


def _require_shared_groups(conn: psycopg.Connection) -> None:
    missing = [r for r in (WRITER_ROLE, READER_ROLE) if not _role_exists(conn, r)]
    if missing:
        raise RuntimeError(f"role(s) {missing} missing: run `portal-sync migrate` first")


def ensure_reader_role(conn: psycopg.Connection, code: str) -> str:
    """Create (or repair) the NOLOGIN reader group of a community; return 'created', 'repaired' or 'ok'."""
    name = reader_role(code)
    ident = sql.Identifier(name)
    state = "ok"
    if not _role_exists(conn, name):
        try:
            with conn.transaction():
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS"
                                     " NOREPLICATION IN ROLE {}").format(ident, sql.Identifier(READER_ROLE)))
            return "created"
        except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
            pass  # another process made it meanwhile: check it like an existing one
    bad = conn.execute(f"SELECT {_BAD_ATTRIBUTES} FROM pg_catalog.pg_roles WHERE rolname = %s", (name,)).fetchone()
    if bad and bad[0]:
        conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS"
                             " NOREPLICATION").format(ident))
        state = "repaired"
    member = conn.execute("SELECT pg_catalog.pg_has_role(%s, %s, 'MEMBER')", (name, READER_ROLE)).fetchone()[0]
    if not member:
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(READER_ROLE), ident))
        state = "repaired"
    return state


def reader_roles(conn: psycopg.Connection) -> list[str]:
    """Every community reader group of the cluster."""
    rows = conn.execute(
        "SELECT rolname FROM pg_catalog.pg_roles WHERE rolname LIKE 'portal\\_reader\\_%' ORDER BY 1"
    ).fetchall()
    return [r for (r,) in rows if community_of(r)]


def refresh(db_url: str, codes: Iterable[str], *, all_configured: bool = True) -> RolesResult:
    """Row security on every portal table, and a reader group for each community of ``codes``.

    With ``all_configured`` (``codes`` is the whole configuration), reader groups of other
    communities are listed as unconfigured; they are never dropped here.
    """
    codes = list(codes)
    wanted = [reader_role(c) for c in codes]  # validates every code before touching anything
    result = RolesResult()
    with psycopg.connect(db_url, autocommit=True) as conn:
        _require_shared_groups(conn)
        result.secured_tables = [t for (t,) in conn.execute("SELECT sync.secure_portal_tables()").fetchall()]
        for code, name in zip(codes, wanted, strict=True):
            state = ensure_reader_role(conn, code)
            (result.created if state == "created" else result.existing).append(name)
            if state == "repaired":
                result.repaired.append(name)
        if all_configured:
            result.unconfigured = [r for r in reader_roles(conn) if r not in wanted]
    return result


def grant_reader(conn: psycopg.Connection, login: str, code: str) -> None:
    """Let ``login`` read the portal rows of one community (its reader group must exist)."""
    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(reader_role(code)), sql.Identifier(login)))


def grant_writer(conn: psycopg.Connection, login: str, *, default_role: bool = True) -> None:
    """Make ``login`` the sync's login: member of the writer group.

    With ``default_role`` its sessions in this database also start as the group
    (``ALTER ROLE .. IN DATABASE .. SET role``), so the staging tables a run creates belong to
    the group and any writer login (a retry on another worker) can drop them.
    """
    login_ident = sql.Identifier(login)
    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(WRITER_ROLE), login_ident))
    if default_role:
        database = conn.execute("SELECT current_database()").fetchone()[0]
        conn.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET role = {}").format(
            login_ident, sql.Identifier(database), sql.Literal(WRITER_ROLE)))


def drop_reader_role(conn: psycopg.Connection, code: str) -> bool:
    """Drop a community's reader group (its logins lose the access); False when it did not exist."""
    name = reader_role(code)
    if not _role_exists(conn, name):
        return False
    conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
    return True
