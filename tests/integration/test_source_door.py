"""The one door to Caselle on real drivers: each engine's DBMS name picks its dialect, and the
organization row is read through it."""

from __future__ import annotations

import pytest

from portal_sync.source import SourceError, SourceOrganization, dialect_of, read_organization
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
