"""The one door to Caselle on real drivers: each engine's DBMS name picks its dialect, and the
organization row is read through it."""

from __future__ import annotations

import pytest

from portal_sync.source import (
    SourceError,
    SourceOrganization,
    SourceUnreachable,
    connect,
    dialect_of,
    read_organization,
)
from portal_sync.source.mariadb import MariaDB
from portal_sync.source.postgresql import PostgreSQL
from portal_sync.source.sqlite import SQLite

pytestmark = pytest.mark.integration

DIALECTS = {"sqlite": SQLite, "postgresql": PostgreSQL, "mariadb": MariaDB}


@pytest.mark.parametrize("engine", list(DIALECTS))
def test_each_engine_reads_through_its_own_dialect(engine, make_source):
    sim = make_source(engine)
    odbc = sim.spec.odbc_connection_string()
    dialect = dialect_of(odbc)
    assert type(dialect) is DIALECTS[engine] and dialect.name == DIALECTS[engine].name
    assert dialect.quote == ("`" if engine == "mariadb" else '"')
    assert dialect_of(odbc) is dialect
    assert read_organization(odbc) == SourceOrganization("SPRINGFLD", "City of Springfield", "America/Denver",
                                                         "###-#####-##")


def test_an_organization_table_without_exactly_one_row_is_refused(make_source):
    sim = make_source("sqlite")
    sim.execute('DELETE FROM "SM_Organization"')
    with pytest.raises(SourceError, match="SM_Organization must hold exactly one row, found 0"):
        read_organization(sim.spec.odbc_connection_string())


def test_a_missing_sqlite_file_is_named_and_not_created(tmp_path):
    missing = tmp_path / "typo" / "springfeld.db"
    flat = tmp_path / "springfeld.db"
    for path in (missing, flat):
        odbc = f"Driver={{SQLite3}};Database={path};StepAPI=1;"
        with pytest.raises(SourceUnreachable, match=f"database file {path} does not exist"):
            connect(odbc)
        with pytest.raises(SourceError, match=f"database file {path} does not exist"):
            read_organization(odbc)
        assert not path.exists()  # the driver would have created an empty database here


def test_a_connection_that_fails_names_the_source_without_its_password():
    expected = r"cannot connect to the source 'Driver=\{NoSuchDriver\};Server=x'"
    with pytest.raises(SourceUnreachable, match=expected) as e:
        connect("Driver={NoSuchDriver};Server=x;PWD=secret;")
    assert "secret" not in str(e.value)
