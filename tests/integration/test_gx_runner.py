"""Integration tests for portal_sync.gx_runner against a real PostgreSQL.

Every test makes its own schema with a unique name and drops it afterwards. The server comes from
``PORTAL_SYNC_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from portal_sync import gx_runner
from portal_sync.gx_runner import GxCheckError, GxRule, GxRuleResult, GxTableCheck, run_rules, validate_suite

pytestmark = pytest.mark.integration

PG_URL = os.environ.get("PORTAL_SYNC_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MONEY_RE = r"^[+-]?[0-9]{1,10}(\.[0-9]{1,2}0*)?$"


class Db:
    """A throwaway schema plus an autocommit connection to fill it."""

    def __init__(self, conn: psycopg.Connection, schema: str) -> None:
        self.conn = conn
        self.schema = schema

    def execute(self, sql: str, params: Any = None) -> None:
        self.conn.execute(sql, params)

    def scalar(self, sql: str, params: Any = None) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        assert row is not None
        return row[0]

    def q(self, table: str) -> str:
        """Schema-qualified, quoted table name for use in rule SQL."""
        return f'"{self.schema}"."{table}"'


@pytest.fixture()
def db() -> Iterator[Db]:
    schema = f"gx_test_{uuid.uuid4().hex[:12]}"
    try:
        conn = psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:  # pragma: no cover - environment problem
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {exc}")
    with conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield Db(conn, schema)
        finally:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _by_name(results: list[GxRuleResult]) -> dict[str, GxRuleResult]:
    return {r.name: r for r in results}


def _make_mixed_tables(db: Db) -> None:
    """Staging rows 1..12 with known faults; keys_x holds the valid CustomerIDs."""
    db.execute(f'CREATE TABLE {db.q("keys_x")} ("CustomerID" text PRIMARY KEY)')
    db.execute(f"INSERT INTO {db.q('keys_x')} VALUES ('C1'), ('C2'), ('C3')")
    db.execute(
        f'CREATE TABLE {db.q("stage_x")} ("_row_id" bigint PRIMARY KEY, "K" text, '
        '"CustomerID" text, "Amount" text, "Note" text)'
    )
    rows = [
        # _row_id, K, CustomerID, Amount, Note
        (1, "a", "C1", "10.00", None),
        (2, "b", "C1", "1.234", None),  # bad money (3 decimals)
        (3, None, "C2", "-5", None),  # null key
        (4, "dup", "C2", "+12.50", None),  # duplicate key
        (5, "dup", "C3", "3.100", "ref :bad here"),  # duplicate key; note contains ':bad'
        (6, "dup", "C3", None, None),  # duplicate key; NULL amount is allowed
        (7, None, "C1", "0", None),  # null key
        (8, "h", "C9", "7.5", None),  # orphan
        (9, "i", "C8", "12345678901", None),  # orphan; bad money (11 digits)
        (10, "j", "C1", "abc", None),  # bad money
        (11, "k", "C2", "1.", "fine"),  # bad money (dot without decimals)
        (12, "l", "C3", "99.99", "{braces}"),
    ]
    with db.conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {db.q('stage_x')} VALUES (%s, %s, %s, %s, %s)", rows)


def _mixed_rules(db: Db) -> list[GxRule]:
    stage, keys = db.q("stage_x"), db.q("keys_x")
    return [
        GxRule("key_not_null", "K must be present", 's."K" IS NULL'),
        GxRule(
            "key_unique",
            "K must be unique",
            f's."K" IN (SELECT "K" FROM {stage} GROUP BY "K" HAVING count(*) > 1)',
        ),
        GxRule(
            "orphan_account",
            "CustomerID must exist in keys_x",
            f'NOT EXISTS (SELECT 1 FROM {keys} k WHERE k."CustomerID" = s."CustomerID")',
        ),
        GxRule(
            "money_format",
            "Amount must be a decimal with at most 2 significant decimals",
            # Unqualified columns, a regex with braces, exactly as the brief's example.
            f'"Amount" IS NOT NULL AND "Amount" !~ \'{MONEY_RE}\'',
        ),
        GxRule(
            # A JOIN inside the rule flips GX's {batch} aliasing; the result must not change.
            "orphan_via_join",
            "CustomerID must exist (checked with a JOIN)",
            f's."CustomerID" NOT IN (SELECT k."CustomerID" FROM {keys} k '
            f'JOIN {keys} k2 ON k2."CustomerID" = k."CustomerID")',
        ),
        GxRule(
            # ':bad' would be a SQLAlchemy bind parameter; '%' must survive psycopg2's paramstyle.
            "note_colon",
            "Note must not mention :bad",
            "s.\"Note\" LIKE '%:bad%' -- a trailing comment must not swallow anything",
        ),
        GxRule(
            "note_braces",
            "Note must not contain braces",
            "s.\"Note\" ~ '[{}]' OR s.\"Note\" = '{braces}'",
        ),
        GxRule("never_bad", "a rule nothing violates", 's."_row_id" < 0'),
    ]


def test_mixed_rules_give_exact_counts_and_samples(db: Db, capfd: pytest.CaptureFixture[str]) -> None:
    _make_mixed_tables(db)
    rules = _mixed_rules(db)

    results = run_rules(PG_URL, db.schema, "stage_x", rules, suite_name="mixed")

    assert "Calculating Metrics" not in capfd.readouterr().err  # progress bars are off

    assert [r.name for r in results] == [r.name for r in rules]
    got = {r.name: (r.success, r.unexpected_count, r.sample_row_ids) for r in results}
    assert got == {
        "key_not_null": (False, 2, [3, 7]),
        "key_unique": (False, 3, [4, 5, 6]),
        "orphan_account": (False, 2, [8, 9]),
        "money_format": (False, 4, [2, 9, 10, 11]),
        "orphan_via_join": (False, 2, [8, 9]),
        "note_colon": (False, 1, [5]),
        "note_braces": (False, 1, [12]),
        "never_bad": (True, 0, []),
    }
    assert {r.element_count for r in results} == {12}

    by_name = _by_name(results)
    raw = by_name["money_format"].raw
    json.dumps(raw)  # JSON-able, for the report
    assert raw["expectation_config"]["type"] == "unexpected_rows_expectation"
    assert raw["expectation_config"]["description"] == rules[3].description
    assert raw["result"]["observed_value"] == 4
    assert raw["exception_info"]["raised_exception"] is False


def test_more_than_200_bad_rows_gives_exact_count(db: Db) -> None:
    db.execute(f'CREATE TABLE {db.q("big")} ("_row_id" bigint PRIMARY KEY, "K" text)')
    # 1,000 rows; every row whose id is not divisible by 3 has a NULL key: 667 bad rows.
    db.execute(
        f"INSERT INTO {db.q('big')} SELECT g, CASE WHEN g % 3 = 0 THEN 'k' || g END FROM generate_series(1, 1000) g"
    )
    bad = {i for i in range(1, 1001) if i % 3 != 0}

    [result] = run_rules(
        PG_URL, db.schema, "big", [GxRule("key_not_null", "K present", 's."K" IS NULL')], suite_name="big"
    )

    assert result.unexpected_count == len(bad) == 667
    assert result.element_count == 1000
    assert result.success is False
    assert len(result.sample_row_ids) == 20
    assert result.sample_row_ids == sorted(result.sample_row_ids)
    assert set(result.sample_row_ids) <= bad
    # GX itself caps the fetched rows at 200; the count above is not capped.
    assert len(result.raw["result"]["details"]["unexpected_rows"]) == 200


def test_invalid_sql_raises_gx_check_error_naming_the_rule(db: Db) -> None:
    _make_mixed_tables(db)
    rules = [
        GxRule("key_not_null", "fine", 's."K" IS NULL'),
        GxRule("typo_rule", "unknown column", 's."NoSuchColumn" IS NULL'),
        GxRule("syntax_rule", "syntax error", 's."K" IS IS NULL'),
    ]

    with pytest.raises(GxCheckError) as excinfo:
        run_rules(PG_URL, db.schema, "stage_x", rules, suite_name="broken")

    message = str(excinfo.value)
    assert "'typo_rule'" in message
    assert "NoSuchColumn" in message and "does not exist" in message
    assert "'syntax_rule'" in message
    assert "syntax error" in message
    assert "'key_not_null'" not in message


def test_missing_row_id_column_is_a_broken_check(db: Db) -> None:
    db.execute(f'CREATE TABLE {db.q("no_id")} ("K" text)')
    db.execute(f"INSERT INTO {db.q('no_id')} VALUES (NULL)")

    with pytest.raises(GxCheckError, match="'key_not_null'.*_row_id"):
        run_rules(PG_URL, db.schema, "no_id", [GxRule("key_not_null", "K", 's."K" IS NULL')], suite_name="noid")


def test_missing_table_raises(db: Db) -> None:
    # GX's TestConnectionError, raised while adding the table asset, before any validation.
    with pytest.raises(ConnectionError, match="no_such_table"):
        run_rules(PG_URL, db.schema, "no_such_table", [GxRule("r", "d", 's."K" IS NULL')], suite_name="missing")


def test_table_name_with_leading_digit_and_capitals(db: Db) -> None:
    """Staging names can start with a digit (community code); GX must get them quoted."""
    db.execute(f'CREATE TABLE {db.q("1abc__Mixed")} ("_row_id" bigint, "K" text)')
    db.execute(f"INSERT INTO {db.q('1abc__Mixed')} VALUES (1, NULL), (2, 'x'), (3, NULL)")
    [result] = run_rules(PG_URL, db.schema, "1abc__Mixed", [GxRule("k", "d", 's."K" IS NULL')], suite_name="q")
    assert (result.unexpected_count, result.element_count, result.sample_row_ids) == (2, 3, [1, 3])


def test_all_good_table_succeeds(db: Db) -> None:
    _make_mixed_tables(db)
    db.execute(f'DELETE FROM {db.q("stage_x")} WHERE "_row_id" <> 1')

    results = run_rules(PG_URL, db.schema, "stage_x", _mixed_rules(db), suite_name="good")

    assert all(r.success for r in results)
    assert {(r.unexpected_count, r.element_count) for r in results} == {(0, 1)}
    assert all(r.sample_row_ids == [] for r in results)


def test_empty_table_and_no_rules(db: Db) -> None:
    db.execute(f'CREATE TABLE {db.q("empty")} ("_row_id" bigint, "K" text)')
    [result] = run_rules(PG_URL, db.schema, "empty", [GxRule("r", "d", 's."K" IS NULL')], suite_name="e")
    assert (result.success, result.unexpected_count, result.element_count) == (True, 0, 0)
    assert run_rules(PG_URL, db.schema, "empty", [], suite_name="none") == []


def test_two_calls_in_one_process_and_no_leaked_connections(db: Db) -> None:
    _make_mixed_tables(db)
    rule = GxRule("key_not_null", "K present", 's."K" IS NULL')
    # Tag GX's sessions so that they can be counted in pg_stat_activity afterwards.
    app_name = f"gxtest_{db.schema}"
    url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}application_name={app_name}"

    first = run_rules(url, db.schema, "stage_x", [rule], suite_name="same_suite")
    db.execute(f'UPDATE {db.q("stage_x")} SET "K" = NULL WHERE "_row_id" = 1')
    # Same suite name again, then a different rule set: both must see the current data.
    second = run_rules(url, db.schema, "stage_x", [rule], suite_name="same_suite")
    third = run_rules(url, db.schema, "stage_x", _mixed_rules(db)[:2], suite_name="other")

    assert (first[0].unexpected_count, first[0].sample_row_ids) == (2, [3, 7])
    assert (second[0].unexpected_count, second[0].sample_row_ids) == (3, [1, 3, 7])
    assert [(r.name, r.unexpected_count) for r in third] == [("key_not_null", 3), ("key_unique", 3)]

    # GX's engines are disposed: no session of theirs stays open after run_rules returns. A closed
    # session's backend leaves pg_stat_activity a moment after the client hangs up, so wait for that
    # (a leaked, still-open session never leaves, and fails the test).
    assert _sessions_left(db, app_name, wait_s=10.0) == 0


def _sessions_left(db: Db, app_name: str, *, wait_s: float) -> int:
    deadline = time.monotonic() + wait_s
    while True:
        left = db.scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app_name,))
        if left == 0 or time.monotonic() > deadline:
            return int(left)
        time.sleep(0.05)


@pytest.mark.skipif(
    not os.environ.get("PORTAL_SYNC_GX_BENCH_ROWS"),
    reason="set PORTAL_SYNC_GX_BENCH_ROWS (e.g. 1000000) to run the GX vs plain SQL timing",
)
def test_benchmark_gx_vs_plain_sql(db: Db) -> None:
    """Prints timings only (run with -s); the benchmark script holds the logic."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "gx_vs_sql.py"
    spec = importlib.util.spec_from_file_location("gx_vs_sql", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    timings = module.run_benchmark(PG_URL, db.schema, int(os.environ["PORTAL_SYNC_GX_BENCH_ROWS"]))
    print(timings)
    assert timings["counts_agree"]


def _described_table(db: Db, name: str) -> None:
    db.execute(f'CREATE TABLE {db.q(name)} ("_row_id" bigint, "K" int, "Description" text)')
    db.execute(f"INSERT INTO {db.q(name)} VALUES (1, 1, 'a'), (2, 2, NULL), (3, 3, 'c')")


_SUITE = {
    "name": "described",
    "expectations": [{
        "type": "expect_column_values_to_not_be_null", "kwargs": {"column": "Description"},
        "meta": {"portal_sync": {"expectation": "required_value:Description", "rule": "required_value",
                                 "severity": "refuse"}},
    }],
    "meta": {"portal_sync": {"key": ["K"], "batch_columns": {}}},
}


def _validate_described(db: Db, table: str, rows_where: str | None = None) -> Any:
    return validate_suite(PG_URL, db.schema, table, _SUITE, severities={"required_value": "refuse"}, relations={},
                          parameters={}, rows_where=rows_where,
                          table_checks=[GxTableCheck("staged_columns", "d", columns=("_row_id", "K", "Description"))])


def test_one_context_and_data_source_serve_every_call_and_a_column_named_description_breaks_nothing(db: Db) -> None:
    """Reused engines: a staged column "Description" once poisoned SQLAlchemy's quoted-name cache and the
    next table check's reflection of pg_description.description failed (GX then read an unqualified table)."""
    _described_table(db, "first")
    _described_table(db, "second")
    first = _validate_described(db, "first")
    context = gx_runner._STATE["context"]
    datasources = {k: v for k, v in gx_runner._STATE.items() if k.startswith("ds:")}
    second = _validate_described(db, "second", rows_where='s."K" <> 2')
    assert gx_runner._STATE["context"] is context
    assert {k: v for k, v in gx_runner._STATE.items() if k.startswith("ds:")} == datasources
    assert [(r.key, r.success, r.unexpected_count) for r in first.results] == [
        ("required_value:Description", False, 1), ("staged_columns", True, None)]
    assert first.results[0].sample == [{"_row_id": 2, "K": 2}]
    assert (second.element_count, second.results[0].unexpected_count) == (2, 0)
    assert second.results[1].success is True


def test_validations_from_threads_take_turns_and_are_all_right(db: Db) -> None:
    names = [f"t{i}" for i in range(4)]
    for name in names:
        _described_table(db, name)
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(lambda name: _validate_described(db, name), names))
    assert [(o.element_count, o.results[0].unexpected_count, o.results[1].success) for o in outcomes] == [
        (3, 1, True)] * 4
