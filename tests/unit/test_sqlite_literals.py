"""SQLite reads inline their parameters as literals (source.sqlite.literal_sql)."""

from __future__ import annotations

import sqlite3

import pytest

from portal_sync.source.sqlite import literal_sql as sqlite_literal_sql


def test_each_marker_takes_its_parameter_in_order_as_a_quoted_literal():
    sql = sqlite_literal_sql('("PostedDate" >= ? AND "PostedDate" < ?) OR "ID" IN (?, ?)',
                             ["2026-01-01 00:00:00", "2026-01-02 00:00:00", "7", "-8"])
    assert sql == ("(\"PostedDate\" >= '2026-01-01 00:00:00' AND \"PostedDate\" < '2026-01-02 00:00:00')"
                   " OR \"ID\" IN ('7', '-8')")


def test_a_quote_in_a_value_stays_inside_its_literal():
    hostile = "x' OR 1=1 --"
    sql = sqlite_literal_sql('"Name" = ?', [hostile])
    with sqlite3.connect(":memory:") as db:
        db.execute('CREATE TABLE t ("Name" TEXT)')
        db.executemany('INSERT INTO t VALUES (?)', [("a",), (hostile,)])
        assert db.execute(f"SELECT \"Name\" FROM t WHERE {sql}").fetchall() == [(hostile,)]


def test_markers_inside_quoted_text_or_identifiers_are_not_parameters():
    sql = sqlite_literal_sql("\"a?b\" = 'it''s ?' AND [c?] = `d?` AND \"e\" = ?", ["1"])
    assert sql == "\"a?b\" = 'it''s ?' AND [c?] = `d?` AND \"e\" = '1'"


@pytest.mark.parametrize(("sql", "parameters"), [
    ('"a" = ? AND "b" = ?', ["1"]),          # too few
    ('"a" = ?', ["1", "2"]),                 # too many
    ('"a" = ?', [1]),                        # not text
    ('"a" = ?', ["bad\x00"]),                # NUL cannot be written in an SQLite literal
    ("\"a\" = 'open ?", []),                 # unterminated text
])
def test_markers_and_parameters_that_do_not_match_are_refused(sql, parameters):
    with pytest.raises(ValueError, match="SQLite read"):
        sqlite_literal_sql(sql, parameters)


def test_a_literal_compares_as_the_bound_value_does_whatever_the_column_affinity():
    """Bound text and a text literal both have no affinity: every comparison must agree."""
    with sqlite3.connect(":memory:") as db:
        db.execute("CREATE TABLE t (i INTEGER, r REAL, n NUMERIC, x TEXT, b BLOB, d DATETIME)")
        rows = [(1, 1.5, 10, "10", "10", "2026-03-08 02:30:00"), (20, 2.0, 9, "9", "9", "2026-03-08 03:00:00"),
                (None, None, None, None, None, None), ("12abc", "x", "1e1", "a", b"\x01", "2026-13-01")]
        db.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)", rows)
        for column in ("i", "r", "n", "x", "b", "d"):
            for op in ("=", "<", ">=", "IN"):
                for value in ("10", "9", "1.5", "2026-03-08 03:00:00", "a"):
                    where = f"{column} IN (?)" if op == "IN" else f"{column} {op} ?"
                    bound = db.execute(f"SELECT rowid FROM t WHERE {where} ORDER BY 1", (value,)).fetchall()
                    inline = db.execute(f"SELECT rowid FROM t WHERE {sqlite_literal_sql(where, [value])}"
                                        " ORDER BY 1").fetchall()
                    assert inline == bound, (column, op, value)
