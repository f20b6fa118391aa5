"""Throwaway PostgreSQL databases for tests: created, migrated, dropped even when the test fails."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

PG_HOST = os.environ.get("CPS_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("CPS_TEST_PG_PORT", "5432"))
ADMIN_URL = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"


@contextmanager
def migrated_database(prefix: str) -> Iterator[str]:
    """A new database named ``<prefix>_<random>`` with the portal's migrations applied; its URL."""
    from portal_sync.migrate import migrate

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{name}"
        migrate(url)
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
