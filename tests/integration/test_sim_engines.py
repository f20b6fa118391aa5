"""The simulator on every engine, inspected the way the product reads it: over ODBC.

Each test builds its own tiny source (unique database or file) and drops it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pyodbc
import pytest

from caselle_sim import Simulator, SourceSpec, create_source
from caselle_sim.checks import all_problems, diff, snapshot
from caselle_sim.schema import BIGINT, CHAR, DATE, DATETIME, INT, MONEY, SMALLINT, TABLE_ORDER, TABLES, VARCHAR

pytestmark = pytest.mark.integration

ENGINES = ["sqlite", "postgresql", "mariadb"]
# ODBC SQL data types each driver reports for a contract type (the Unicode drivers report W* text types;
# long varchars (Notes) come back as (W)LONGVARCHAR; the SQLite3 driver reports CHAR and DECIMAL as VARCHAR)
SQL_TYPES = {
    "sqlite": {INT: {4}, BIGINT: {-5}, SMALLINT: {5}, VARCHAR: {12, -1}, CHAR: {12}, MONEY: {12}, DATE: {91},
               DATETIME: {93}},
    "postgresql": {INT: {4}, BIGINT: {-5}, SMALLINT: {5}, VARCHAR: {-9, -10}, CHAR: {-8}, MONEY: {2},
                   DATE: {91}, DATETIME: {93}},
    "mariadb": {INT: {4}, BIGINT: {-5}, SMALLINT: {5}, VARCHAR: {-9}, CHAR: {-8}, MONEY: {3}, DATE: {91},
                DATETIME: {93}},
}
QUOTE = {"sqlite": '"', "postgresql": '"', "mariadb": "`"}


def _url(engine: str, tmp_path: Path, tag: str) -> str:
    if engine == "sqlite":
        return f"sqlite:///{tmp_path}/sim_{tag}.db"
    if engine == "postgresql":
        return f"postgresql://postgres@127.0.0.1:5432/sim_test_{tag}"
    return f"mariadb://root@127.0.0.1:3306/sim_test_{tag}"


@pytest.fixture
def build(tmp_path: Path) -> Iterator:
    """Factory: build(engine, **create_source kwargs) -> a tiny Simulator, dropped after the test."""
    made: list[Simulator] = []

    def factory(engine: str, **kwargs) -> Simulator:
        spec = SourceSpec.from_url(_url(engine, tmp_path, uuid.uuid4().hex[:10]))
        kwargs.setdefault("preset", "tiny")
        sim = create_source(spec, **kwargs)
        made.append(sim)
        return sim

    yield factory
    for sim in made:
        sim.close()
        sim.spec.drop()


@pytest.mark.parametrize("engine", ENGINES)
def test_the_source_matches_the_contract_through_odbc(engine, build):
    sim = build(engine)
    conn = pyodbc.connect(sim.spec.odbc_connection_string(), autocommit=True)
    try:
        assert conn.getinfo(pyodbc.SQL_IDENTIFIER_QUOTE_CHAR) == QUOTE[engine]
        catalog = sim.spec.database if engine == "mariadb" else None
        tables = {r.table_name for r in conn.cursor().tables(tableType="TABLE", catalog=catalog)}
        assert set(TABLE_ORDER) <= tables
        for name in TABLE_ORDER:
            table = TABLES[name]
            cols = list(conn.cursor().columns(table=name, catalog=catalog))
            assert [c.column_name for c in cols] == table.column_names, name
            for c in cols:
                want = table.column(c.column_name)
                where = f"{name}.{c.column_name}"
                assert c.data_type in SQL_TYPES[engine][want.kind], (where, c.type_name, c.data_type)
                assert c.nullable == (1 if want.nullable else 0), where
                if engine == "sqlite":
                    assert c.type_name == want.contract_type(), where  # declared with SQL Server names
                elif want.kind in (VARCHAR, CHAR):
                    assert c.column_size == want.length, where
                elif want.kind == MONEY:
                    assert (c.column_size, c.decimal_digits) == (12, 2), where
            keys = [r.column_name for r in conn.cursor().primaryKeys(table=name, catalog=catalog)]
            assert keys == [table.key], name
        # the sensitive columns are there (the sync must not read them, but they exist)
        contact = {c.column_name for c in conn.cursor().columns(table="SM_Contact", catalog=catalog)}
        assert {"SSN", "BirthDate", "DriversLicense", "Notes"} <= contact
        # and an ANSI query with the driver's quote character and ? markers reads the rows
        q = QUOTE[engine]
        row = conn.cursor().execute(
            f"SELECT {q}Amount{q}, {q}TransactionDate{q}, {q}InputDate{q} FROM {q}UB_Transaction{q} "
            f"WHERE {q}TransactionID{q} = ?", 10).fetchone()
        native = sim.read_table("UB_Transaction", ["Amount", "TransactionDate", "InputDate"],
                                '"TransactionID" = ?', [10])[0]
        assert round(float(row[0]) * 100) == native["Amount"]
        assert row[1] == native["TransactionDate"]
        assert row[2].replace(microsecond=row[2].microsecond // 1000 * 1000) == native["InputDate"]
        ssn = conn.cursor().execute(f"SELECT COUNT(*) FROM {q}SM_Contact{q} WHERE {q}SSN{q} IS NOT NULL").fetchone()
        assert int(ssn[0]) > 0  # (the SQLite3 driver returns COUNT(*) as text)
    finally:
        conn.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_invariants_and_exact_changesets_on_every_engine(engine, build):
    sim = build(engine, seed=4)
    assert all_problems(sim) == []
    steps = [
        lambda: sim.evolve(timedelta(hours=4), rates={"modify_data_per_hour": 2, "orphans_per_hour": 1}),
        lambda: sim.period_close(date(2020, 1, 1)),
        lambda: sim.delete_inactive_customers(),
        lambda: sim.renumber(0.5),
        lambda: sim.modify_data(5),
        lambda: sim.add_orphans(lines=3, receipts=2),
        lambda: sim.evolve(timedelta(hours=2)),
    ]
    for step in steps:
        before = snapshot(sim)
        cs = step()
        after = snapshot(sim)
        for table, (ins, upd, dele) in diff(before, after).items():
            assert (cs[table].inserted, cs[table].updated, cs[table].deleted) == (ins, upd, dele), table
    assert all_problems(sim) == []


@pytest.mark.parametrize("engine", ["postgresql", "mariadb"])
def test_every_engine_holds_the_same_community(engine, build):
    """Same seed and calls on SQLite and on a server: the same rows, value for value."""
    ref, other = build("sqlite", seed=9), build(engine, seed=9)
    for sim in (ref, other):
        sim.evolve(timedelta(hours=3))
        sim.period_close(date(2019, 6, 1))
        sim.renumber(0.2)
        sim.evolve(timedelta(minutes=30))
    assert snapshot(ref) == snapshot(other)


def test_a_reader_over_odbc_does_not_block_the_simulator(build):
    """SQLite sources are in WAL mode: a long ODBC read and an evolve step can overlap."""
    sim = build("sqlite")
    conn = pyodbc.connect(sim.spec.odbc_connection_string())
    try:
        cur = conn.cursor()
        cur.execute('SELECT "TransactionID" FROM "UB_Transaction" ORDER BY "TransactionID"')
        first = cur.fetchmany(100)
        cs = sim.evolve(timedelta(minutes=30), rates={"bills": 500.0})
        rest = cur.fetchall()
        assert cs["UB_Transaction"].inserted
        assert len(first) + len(rest) == sim.counts()["UB_Transaction"] - len(cs["UB_Transaction"].inserted)
    finally:
        conn.close()
