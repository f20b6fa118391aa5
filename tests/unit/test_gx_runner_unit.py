"""Unit tests for the pure helpers of portal_sync.gx_runner (no database, no GX validation)."""

from __future__ import annotations

import string
import subprocess
import sys

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from portal_sync import gx_runner
from portal_sync.gx_runner import GxCheckError, GxRule, build_unexpected_rows_query, run_rules


def _as_sent(predicate: str) -> str:
    """What PostgreSQL receives for a predicate after GX's str.format and SQLAlchemy text()."""
    template = build_unexpected_rows_query(predicate)
    formatted = template.format(batch="(SELECT * FROM t)")
    # psycopg2 (pyformat) doubles '%' at compile time and un-doubles it itself; undo it here.
    compiled = str(sa.text(formatted).compile(dialect=postgresql.psycopg2.dialect()))
    return compiled.replace("%%", "%")


@pytest.mark.parametrize(
    "predicate",
    [
        's."K" IS NULL',
        "\"Amount\" !~ '^[+-]?[0-9]{1,10}(\\.[0-9]{1,2}0*)?$'",
        "s.\"Note\" LIKE '%:bad%'",
        's."Amount"::numeric > 0',
        "s.\"T\" = '12:30' OR s.\"T\" = 'a\\:b' OR s.\"T\" = '\\:'",
        "s.\"J\" = '{}' OR s.\"J\" ~ '[{}]{2}'",
        's."K" IN (SELECT "K" FROM "stage"."x" GROUP BY "K" HAVING count(*) > 1)',
    ],
)
def test_predicate_reaches_postgres_unchanged(predicate: str) -> None:
    sent = _as_sent(predicate)
    assert f"WHERE (\n{predicate}\n)" in sent
    assert sent.startswith('SELECT s."_row_id" FROM (SELECT * FROM t) AS s\n')


def test_query_always_contains_a_join_and_only_the_batch_field() -> None:
    """GX leaves {batch} unaliased only when it sees JOIN; the alias `s` relies on that."""
    query = build_unexpected_rows_query("s.\"K\" ~ '^x{3}$' -- comment")
    assert "CROSS JOIN" in query
    fields = [f[1] for f in string.Formatter().parse(query) if f[1] is not None]
    assert fields == ["batch"]
    assert query.endswith("-- comment\n)")  # a trailing comment cannot eat the closing paren


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://postgres@127.0.0.1:5432/db", "postgresql+psycopg2://postgres@127.0.0.1:5432/db"),
        ("postgres://u:p@h/db?sslmode=disable", "postgresql+psycopg2://u:p@h/db?sslmode=disable"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    ],
)
def test_sqlalchemy_url(url: str, expected: str) -> None:
    assert gx_runner._sqlalchemy_url(url) == expected


@pytest.mark.parametrize("url", ["mysql://u@h/db", "no-scheme"])
def test_sqlalchemy_url_rejects_non_postgres(url: str) -> None:
    with pytest.raises(ValueError):
        gx_runner._sqlalchemy_url(url)


def test_exception_messages_both_shapes() -> None:
    assert gx_runner._exception_messages(None) == []
    assert gx_runner._exception_messages({}) == []
    clean = {"raised_exception": False, "exception_traceback": None, "exception_message": None}
    assert gx_runner._exception_messages(clean) == []
    flat = {"raised_exception": True, "exception_message": "boom"}
    assert gx_runner._exception_messages(flat) == ["boom"]
    keyed = {
        "MetricConfigurationID(table)": {"raised_exception": True, "exception_message": "col x missing"},
        "MetricConfigurationID(count)": {"raised_exception": True, "exception_message": "col x missing"},
        "MetricConfigurationID(other)": {"raised_exception": False, "exception_message": None},
    }
    assert gx_runner._exception_messages(keyed) == ["col x missing"]
    assert gx_runner._exception_messages("weird") != []  # unknown shapes count as broken


def test_sample_row_ids_sorted_and_capped() -> None:
    raw = {"result": {"details": {"unexpected_rows": [{"_row_id": i} for i in range(200, 0, -1)]}}}
    assert gx_runner._sample_row_ids(raw) == list(range(1, 21))
    assert gx_runner._sample_row_ids({"result": {}}) == []


def test_observed_int_rejects_missing_values() -> None:
    assert gx_runner._observed_int({"result": {"observed_value": 7}}, "x") == 7
    for raw in ({"result": {}}, {"result": {"observed_value": True}}, {}):
        with pytest.raises(GxCheckError):
            gx_runner._observed_int(raw, "x")


@pytest.mark.parametrize(
    ("schema", "table", "rules", "message"),
    [
        ("stage", "t", [GxRule("Bad-Name", "d", "true")], "must match"),
        ("stage", "t", [GxRule("a", "d", "true"), GxRule("a", "d", "false")], "duplicate"),
        ("stage", "t", [GxRule("a", "d", "  ")], "empty"),
        ("Stage", "t", [GxRule("a", "d", "true")], "schema"),
        ("stage", 't"; drop', [GxRule("a", "d", "true")], "table"),
        ("stage", "", [GxRule("a", "d", "true")], "table"),
    ],
)
def test_invalid_input_is_rejected_before_gx(schema: str, table: str, rules: list[GxRule], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run_rules("postgresql://nobody@127.0.0.1:1/none", schema, table, rules, suite_name="s")


def test_importing_the_module_does_not_import_great_expectations() -> None:
    code = "import sys, portal_sync.gx_runner; print('great_expectations' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_batch_query_selects_the_changed_rows_and_the_derived_columns() -> None:
    query = gx_runner.batch_query("stage", "T1", {"Amount__amount": 's."Amount"::numeric'}, 's."_row_id" IN (1, 2)')
    assert query == ('SELECT s.*, s."Amount"::numeric AS "Amount__amount" FROM "stage"."T1" AS s\n'
                     'WHERE (s."_row_id" IN (1, 2)\n)')
    assert gx_runner.batch_query("stage", "T1", {}, None) == 'SELECT s.* FROM "stage"."T1" AS s'


@pytest.mark.parametrize("rows_where", ["s.\"K\" LIKE '%x'", "s.\"K\" = :k"])
def test_batch_query_refuses_what_would_not_survive_two_text_clauses(rows_where: str) -> None:
    with pytest.raises(ValueError, match="neither"):
        gx_runner.batch_query("stage", "t", {}, rows_where)


def test_custom_queries_select_the_row_id_and_key() -> None:
    query = build_unexpected_rows_query('s."K" IS NULL', select=("_row_id", "CustomerID"))
    assert query.startswith('SELECT s."_row_id", s."CustomerID" FROM {batch} AS s\n')


def test_a_counted_query_carries_the_count_on_every_row() -> None:
    query = build_unexpected_rows_query('s."K" IS NULL -- why', select=("_row_id", "K"), counted=True)
    assert query.startswith('SELECT s."_row_id", s."K", count(*) OVER () AS "portal_sync_unexpected_count" FROM')
    assert query.endswith("-- why\n)")
    assert "LIMIT" not in query  # a LIMIT would make PostgreSQL plan for the first rows, not the count
