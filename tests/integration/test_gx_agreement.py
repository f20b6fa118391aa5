"""Great Expectations and our SQL agree, rule by rule and expectation by expectation.

For every data set, a staged table holds good rows plus, for EVERY expectation of its stored suite
(so for every row rule), rows planted to break it. validate_staged runs the suite in GX and records
our findings; GX's unexpected count of each expectation must equal our count, and the rows GX names
for a rule (its samples are complete here: few bad rows) must be exactly the rows our SQL refused or
warned about. Also: GX checks only the changed rows, but key uniqueness looks at all staged rows,
and with no changed row GX is not imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql

from portal_sync import stage
from portal_sync.datasets import DATASETS, Dataset, SourceColumn
from portal_sync.expectations import ExpectationSpec, specs_for
from portal_sync.extract import ROW_ID, UNREADABLE
from portal_sync.gx_runner import GxCheckError
from portal_sync.rules import KEY_UNIQUE, Rule, rules_for, table_checks_for
from portal_sync.store import gx_results, runs
from portal_sync.validate import validate_staged

pytestmark = pytest.mark.integration

MASK = "##-###"


class Quality:
    """The default thresholds (config.Quality's), without importing the configuration."""

    max_amount = 100_000.0
    snapshot_change_share = 0.1
    snapshot_change_min_rows = 25
    max_window_rows = 50_000

    def severity_of(self, dataset: str, check: str, default: str) -> str:
        return default


def good_value(ds: Dataset, col: SourceColumn, n: int) -> Any:
    if col.name in ds.primary.key:
        return n
    codes = {c.column: c.allowed for c in ds.codes}
    if col.name in codes:
        return codes[col.name][0]
    if col.name == "CustomerNumber":
        return "12-345"
    if col.name == "TotalBalance":
        return "5.00"
    return {"int": 1, "bigint": 1, "smallint": 1, "text": "x", "char": "x", "money": "1.00",
            "date": date(2026, 1, 15), "datetime": datetime(2026, 1, 15, 10, 0)}[col.kind]


def bad_rows(ds: Dataset, spec: ExpectationSpec, n: int) -> list[dict[str, Any]]:
    """Rows (as column changes of a good row ``n``) that break ``spec``."""
    kw = spec.kwargs
    column = str(kw.get("column", "")).removesuffix("__trimmed").removesuffix("__amount")
    cols = {c.name: c for c in ds.primary.columns}
    if spec.type == "expect_column_values_to_not_be_null":
        return [{column: None}]
    if spec.type == "expect_column_values_to_be_null":
        return [{UNREADABLE: "; Description=not read exactly"}]
    if spec.type == "expect_column_value_lengths_to_be_between":
        codes = {c.column: c.allowed for c in ds.codes}
        base = codes[column][0] if column in codes else "x"
        return [{column: base + " " * int(kw["max_value"])}]  # padding: too long, yet the right code
    if spec.type == "expect_column_values_to_be_in_set":
        return [{column: "Z"}]
    if spec.type == "expect_column_values_to_be_between" and spec.rule == "datetime_range":
        return [{column: datetime(1, 1, 1, 0, 0)}]
    if spec.type == "expect_column_values_to_be_between" and spec.rule == "implausible_date":
        late = date(2100, 1, 1) if cols[column].kind == "date" else datetime(2100, 1, 1)
        return [{column: date(1900, 1, 1) if column == "TransactionDate" else late}]
    if spec.type == "expect_column_values_to_be_between" and spec.rule == "amount_size":
        return [{column: "200000.00"}, {column: "-200000.00"}]
    if spec.type == "expect_column_values_to_match_regex":
        return [{column: "ABC"}]
    if spec.type == "expect_column_pair_values_a_to_be_greater_than_b":
        return [{"DueDate": date(2026, 1, 1), "TransactionType": "BILL"}]
    if spec.type == "expect_multicolumn_sum_to_equal":
        return [{"TotalBalance": "6.00"}]
    if spec.type == "expect_column_values_to_be_exact_money":
        return [{spec.key.split(":")[1]: "1.234"}]
    if spec.type == "expect_reference_to_resolve":
        return [{spec.key.split(":")[1]: 999}]
    if spec.type == "expect_staged_key_to_be_unique":
        return [{"__duplicate__": True}]
    raise AssertionError(f"no bad row for {spec.type}")


def stage_dataset(conn: psycopg.Connection, run_key: str, ds: Dataset, *, good: int = 3,
                  plant: bool = True) -> tuple[dict[str, str], dict[str, set[int]]]:
    """Stage the data set's extracts: good rows, then the planted bad rows; returns the tables and,
    per expectation key, the _row_ids planted to break it."""
    tables: dict[str, str] = {}
    for extract in ds.extracts:
        table = stage.stage_table_name(run_key, ds.name, extract)
        stage.create_table(conn, table, extract)
        tables[extract.name] = table
    rows: list[dict[str, Any]] = [{c.name: good_value(ds, c, n) for c in ds.primary.columns}
                                  for n in range(1, good + 1)]
    planted: dict[str, set[int]] = {}
    if plant:
        for spec in specs_for(ds):
            for change in bad_rows(ds, spec, len(rows) + 1):
                row = {c.name: good_value(ds, c, len(rows) + 1) for c in ds.primary.columns}
                if change.pop("__duplicate__", False):
                    row[ds.primary.key[0]] = 1  # the key of the first good row
                    planted.setdefault(spec.key, set()).add(1)
                row.update(change)
                rows.append(row)
                planted.setdefault(spec.key, set()).add(len(rows))
    names = [ROW_ID, *(c.name for c in ds.primary.columns), UNREADABLE]
    insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(stage.STAGE_SCHEMA, tables[ds.primary.name]), sql.SQL(", ").join(map(sql.Identifier, names)),
        sql.SQL(", ").join(sql.Placeholder() * len(names)))
    with conn.cursor() as cur:
        cur.executemany(insert, [[i, *(row.get(c) for c in names[1:])] for i, row in enumerate(rows, start=1)])
    for extract in ds.supporting:  # ids 1..n: every value a good row's references (or key) point at
        target = sql.Identifier(stage.STAGE_SCHEMA, tables[extract.name])
        cols = [ROW_ID, *(c.name for c in extract.columns)]
        values = [[n, *(good_value(ds, c, 1) if c.kind not in ("int", "bigint", "smallint") else n
                        for c in extract.columns)] for n in range(1, len(rows) + 1)]
        with conn.cursor() as cur:
            cur.executemany(sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                target, sql.SQL(", ").join(map(sql.Identifier, cols)),
                sql.SQL(", ").join(sql.Placeholder() * len(cols))), values)
    for extract in ds.extracts:
        stage.finish_table(conn, tables[extract.name], extract)
    return tables, planted


def findings_by_rule(conn: psycopg.Connection, run_key: str, dataset: str) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for rule, row_id in conn.execute("SELECT rule, row_id FROM sync.run_findings WHERE run_key = %s AND dataset = %s",
                                     (run_key, dataset)).fetchall():
        out.setdefault(rule, set()).add(row_id)
    return out


@pytest.mark.parametrize("name", list(DATASETS))
def test_gx_and_our_sql_count_the_same_rows_for_every_rule(portal, name):
    ds = DATASETS[name]
    run_key = f"agree_{name}"
    with psycopg.connect(portal, autocommit=True) as conn:
        runs.start_run(conn, run_key, "AGREE", run_key, [name])
        tables, planted = stage_dataset(conn, run_key, ds)
        rules = rules_for(ds, Quality(), mask=MASK, today=date(2026, 12, 1))
        checks = table_checks_for(ds, Quality(), mode="full", previous_rows=None)
        outcomes = validate_staged(conn, pg_url=portal, run_key=run_key, community="AGREE", dataset=ds,
                                   tables=tables, rules=rules, table_checks=checks)
        stored = {r["expectation"]: r for r in gx_results.results_of_run(conn, run_key, name)}
        ours = findings_by_rule(conn, run_key, name)

    specs = specs_for(ds)
    assert {s.rule for s in specs} == {r.name for r in rules}, "every row rule has an expectation"
    by_rule: dict[str, set[int]] = {}
    for spec in specs:
        result = stored[spec.key]
        sample = {row[ROW_ID] for row in result["sample_keys"]}
        assert result["unexpected_count"] == len(sample), f"{spec.key}: the sample holds every bad row here"
        assert planted[spec.key] <= sample, f"{spec.key}: GX missed planted rows"
        assert result["success"] is False and result["severity"] == spec.severity
        by_rule.setdefault(spec.rule, set()).update(sample)
    failing = {o.rule: o.failing_rows for o in outcomes if o.kind == "row"}
    for rule in rules:
        assert ours.get(rule.name) == by_rule[rule.name], f"{rule.name}: GX and our SQL name different rows"
        assert failing[rule.name] == len(by_rule[rule.name]) > 0
        single = [s for s in specs if s.rule == rule.name]
        if len(single) == 1:  # a one-expectation rule: GX's count is the rule's finding count
            assert stored[single[0].key]["unexpected_count"] == failing[rule.name]
    assert stored["staged_columns"]["success"] is True and stored["staged_columns"]["kind"] == "table"
    assert {o.rule for o in outcomes if o.kind == "table"} == {"staged_columns"}


def test_only_changed_rows_are_checked_but_keys_are_unique_among_all_staged_rows(portal):
    ds = DATASETS["balances"]
    run_key = "agree_changed"
    with psycopg.connect(portal, autocommit=True) as conn:
        runs.start_run(conn, run_key, "AGREE", run_key, [ds.name])
        tables, planted = stage_dataset(conn, run_key, ds)
        # Changed: good row 2 and the duplicate of row 1 (its key repeats unchanged row 1), and the
        # row planted for a NULL TotalBalance; GX checks only these. Our SQL still records every
        # failing staged row, so refusals and the quarantine do not depend on what changed.
        duplicate = max(planted["key_unique:CustomerID"])
        null_total = max(planted["required_value:TotalBalance"])
        changed = f's."{ROW_ID}" IN (2, {duplicate}, {null_total})'
        outcomes = validate_staged(conn, pg_url=portal, run_key=run_key, community="AGREE", dataset=ds, tables=tables,
                                   rules=rules_for(ds, Quality(), mask=MASK), changed_rows=changed)
        stored = {r["expectation"]: r for r in gx_results.results_of_run(conn, run_key, ds.name)}
        ours = findings_by_rule(conn, run_key, ds.name)
    assert duplicate in ours[KEY_UNIQUE] and null_total in ours["required_value"]
    assert len(ours) > 2  # the unchanged planted rows are recorded too
    assert {o.rule: o.failing_rows for o in outcomes if o.failing_rows} == {r: len(k) for r, k in ours.items()}
    assert {k: r["unexpected_count"] for k, r in stored.items() if r["unexpected_count"]} == {
        "key_unique:CustomerID": 1, "required_value:TotalBalance": 1}
    assert {r["element_count"] for r in stored.values()} == {3}


def test_with_no_changed_row_great_expectations_is_not_imported(portal):
    ds = DATASETS["accounts"]
    run_key = "agree_idle"
    with psycopg.connect(portal, autocommit=True) as conn:
        runs.start_run(conn, run_key, "AGREE", run_key, [ds.name])
        tables, _ = stage_dataset(conn, run_key, ds)
    code = (
        "import json, sys, psycopg\n"
        "from portal_sync.datasets import DATASETS\n"
        "from portal_sync.rules import rules_for\n"
        "from portal_sync.validate import validate_staged\n"
        "url, tables = sys.argv[1], json.loads(sys.argv[2])\n"
        "with psycopg.connect(url, autocommit=True) as conn:\n"
        "    out = validate_staged(conn, pg_url=url, run_key='agree_idle', community='AGREE',\n"
        "        dataset=DATASETS['accounts'], tables=tables, rules=rules_for(DATASETS['accounts']),\n"
        "        changed_rows='false')\n"
        "print(json.dumps([sum(o.failing_rows for o in out), 'great_expectations' in sys.modules]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, portal, json.dumps(tables)], capture_output=True, text=True,
                          check=True)
    failing, imported = json.loads(done.stdout.strip().splitlines()[-1])
    assert imported is False  # nothing would publish: GX is not even imported
    assert failing > 0  # ... and our SQL still records the planted bad rows


def test_number_off_mask_reason_says_what_is_wrong(portal):
    ds = DATASETS["accounts"]
    run_key = "agree_mask"
    with psycopg.connect(portal, autocommit=True) as conn:
        runs.start_run(conn, run_key, "AGREE", run_key, [ds.name])
        tables, planted = stage_dataset(conn, run_key, ds)
        validate_staged(conn, pg_url=portal, run_key=run_key, community="AGREE", dataset=ds, tables=tables,
                        rules=rules_for(ds, mask=MASK), use_gx=False)
        reasons = [r for (r,) in conn.execute(
            "SELECT reason FROM sync.run_findings WHERE run_key = %s AND rule = 'number_off_mask'", (run_key,))]
    assert f"CustomerNumber ABC does not match the community's customer-number mask {MASK}" in reasons
    assert all("does not match" in r and "matches the" not in r for r in reasons), reasons


def test_gx_results_are_kept_per_expectation_and_as_json_and_pruned(portal):
    ds = DATASETS["payments"]
    run_key = "agree_keep"
    with psycopg.connect(portal, autocommit=True) as conn:
        runs.start_run(conn, run_key, "AGREE", run_key, [ds.name])
        tables, _ = stage_dataset(conn, run_key, ds)
        validate_staged(conn, pg_url=portal, run_key=run_key, community="AGREE", dataset=ds, tables=tables,
                        rules=rules_for(ds, Quality()))
        stored = gx_results.results_of_run(conn, run_key)
        summary = gx_results.summary_of_run(conn, run_key)
        full = gx_results.result_json(conn, run_key)
        money = next(r for r in stored if r["expectation"] == "amount_size:Amount")
        assert (money["expectation_type"], money["mostly"], money["severity"]) == (
            "expect_column_values_to_be_between", 0.99, "warn")
        assert money["kwargs"]["max_value"] == 100_000.0  # the suite parameter as this run filled it
        assert money["unexpected_count"] == 2 and money["unexpected_percent"] > 0
        assert summary[0]["dataset"] == "payments" and summary[0]["failed"] > 0
        assert full["payments"]["rows"]["success"] is False
        assert len(full["payments"]["rows"]["results"]) == len(stored) + 1  # and the batch's row count
        gx_results.delete_before(conn, "AGREE", datetime(2000, 1, 1))  # the run started later: kept
        assert len(gx_results.results_of_run(conn, run_key)) == len(stored)
        gx_results.delete_before(conn, "AGREE", datetime(2999, 1, 1))
        assert gx_results.results_of_run(conn, run_key) == [] and gx_results.result_json(conn, run_key) == {}
        gx_results.record(conn, run_key, "AGREE", ds.name, [], {"rows": {}}, 0)
        gx_results.clear_run(conn, run_key)
        assert gx_results.result_json(conn, run_key) == {}


def test_a_broken_check_raises_in_great_expectations_and_records_nothing(portal):
    ds = DATASETS["accounts"]
    run_key = "agree_broken"
    broken = Rule("broken_check", "refers to a column that does not exist", 's."NoSuchColumn" IS NULL', "'never'")
    with psycopg.connect(portal, autocommit=True) as conn:
        runs.start_run(conn, run_key, "AGREE", run_key, [ds.name])
        tables, _ = stage_dataset(conn, run_key, ds)
        with pytest.raises(GxCheckError, match=r"'broken_check:rule'.*NoSuchColumn"):
            validate_staged(conn, pg_url=portal, run_key=run_key, community="AGREE", dataset=ds, tables=tables,
                            rules=[*rules_for(ds), broken])
        assert conn.execute("SELECT count(*) FROM sync.run_findings WHERE run_key = %s", (run_key,)).fetchone()[0] == 0
