"""Data-quality rules derived from the data-set declarations, run on staged rows.

Rules are generated, not written per data set: a declared key gives the key rules, a
declared reference gives an orphan rule, a money column gives the exactness rule, a
code set gives the code rule. Great Expectations runs them as SQL in PostgreSQL and
is the gate (a broken check fails the task); our own SQL then records every failing
row, because GX caps the failing ids it returns. The two counts must agree.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Literal

import psycopg

from portal_sync.config import Quality
from portal_sync.datasets import DATASETS, Dataset
from portal_sync.extract import ROW_ID, UNREADABLE
from portal_sync.stage import BIG_STATEMENT_MEMORY, STAGE_SCHEMA, key_is_unique

log = logging.getLogger(__name__)

Severity = Literal["refuse", "warn", "ignore"]


KEY_UNIQUE = "key_unique"
CANDIDATES = "row_rule_candidates"  # temp table: the staged rows some row rule may refuse


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    bad_rows_where: str  # over alias ``s``; staging tables of the run as {extract_name}
    reason: str  # SQL text expression over ``s`` naming the offending value
    severity: Severity = "refuse"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _value_text(column: str) -> str:
    return f"coalesce(s.{_q(column)}::text, 'NULL')"


def _read_exactly(alias: str, *columns: str) -> str:
    """SQL: these columns of the row were read exactly (``_unreadable`` names no problem with them)."""
    flags = f"'; ' || coalesce({alias}.{_q(UNREADABLE)}, '')"
    return " AND ".join(f"strpos({flags}, {_lit('; ' + c + '=')}) = 0" for c in columns)


def _reason(prefix: str, *columns: str) -> str:
    parts = [_lit(prefix)]
    for col in columns:
        parts += [_lit(f" {col}="), _value_text(col)]
    return "concat(" + ", ".join(parts) + ")"


def rules_for(dataset: Dataset, quality: Quality | None = None, *, mask: str | None = None,
              today: date | None = None) -> list[Rule]:
    """Integrity rules (refuse by default: such a row has no correct portal form) and plausibility
    rules (warn by default: the row publishes, analysts see it), with the community's severities."""
    quality = quality or Quality()
    rules = _integrity_rules(dataset)
    literals = {
        "{max_amount}": f"{Decimal(str(quality.max_amount)):f}",
        "{min_date}": "DATE '1950-01-01'",
        "{max_date}": f"DATE '{(today or date.today()).replace(day=1) + timedelta(days=2 * 366):%Y-%m-%d}'",
        "{mask_regex}": _lit(mask_regex(mask)) if mask else None,
    }
    for check in dataset.plausibility:
        where = check.bad_rows_where
        if "{mask_regex}" in where and not mask:
            continue  # no mask in SM_Organization: nothing to compare with
        for placeholder, value in literals.items():
            if value is not None:
                where = where.replace(placeholder, value)
        rules.append(Rule(check.name, check.description, f"({where})", _reason(check.description, *check.columns),
                          severity="warn"))
    return [
        Rule(r.name, r.description, r.bad_rows_where, r.reason,
             quality.severity_of(dataset.name, r.name, r.severity))  # type: ignore[arg-type]
        for r in rules
    ]


def mask_regex(mask: str) -> str:
    """CustomerNumberMask as an anchored regex: ``#`` a digit, anything else literal."""
    return "^" + "".join("[0-9]" if ch == "#" else ("\\" + ch if not ch.isalnum() else ch) for ch in mask) + "$"


def _integrity_rules(dataset: Dataset) -> list[Rule]:
    primary = dataset.primary
    key_cols = primary.key
    rules = [
        Rule(
            "key_not_null",
            f"{primary.table} key {', '.join(key_cols)} is present",
            " OR ".join(f"s.{_q(k)} IS NULL" for k in key_cols),
            _reason("key is NULL", *key_cols),
        ),
        Rule(
            KEY_UNIQUE,
            f"{primary.table} key {', '.join(key_cols)} is unique",
            # A row whose key was not read exactly (SQLite '12abc' reads as 12) is refused by
            # unreadable_value; it must not also take down the row that really has that key.
            # (Likewise a reference never counts a target key that was not read exactly.)
            f"{_read_exactly('s', *key_cols)} AND (" + ", ".join(f"s.{_q(k)}" for k in key_cols) + ") IN (SELECT "
            + ", ".join(f"d.{_q(k)}" for k in key_cols) + " FROM {" + primary.name + "} d WHERE "
            + _read_exactly("d", *key_cols) + " GROUP BY " + ", ".join(f"d.{_q(k)}" for k in key_cols)
            + " HAVING count(*) > 1)",
            _reason("duplicate key", *key_cols),
        ),
        Rule(
            "unreadable_value",
            "every value reads exactly as its declared type (no NUL in text; on SQLite sources also no "
            "non-integer in an integer column, no impossible date, no time-zone suffix)",
            f"s.{_q(UNREADABLE)} IS NOT NULL",
            f"concat('not read exactly from the source: ', s.{_q(UNREADABLE)})",
        ),
    ]
    required = [c for c in primary.columns if not c.nullable and c.name not in key_cols]
    if required:
        rules.append(
            Rule(
                "required_value",
                "columns the source contract declares NOT NULL have a (readable) value",
                " OR ".join(f"s.{_q(c.name)} IS NULL" for c in required),
                "concat('missing or unreadable value in ', concat_ws(', ', "
                + ", ".join(f"CASE WHEN s.{_q(c.name)} IS NULL THEN {_lit(c.name)} END" for c in required)
                + "))",
            )
        )
    money = [c for c in primary.columns if c.kind == "money"]
    if money:
        rules.append(
            Rule(
                "money_exact",
                "money is an exact amount with at most two decimals inside numeric(12,2)",
                " OR ".join(f"(s.{_q(c.name)} IS NOT NULL AND NOT sync.is_money(s.{_q(c.name)}))" for c in money),
                "concat('not an exact 2-place amount:', "
                + ", ".join(
                    f"CASE WHEN s.{_q(c.name)} IS NOT NULL AND NOT sync.is_money(s.{_q(c.name)}) "
                    f"THEN concat(' ', {_lit(c.name)}, '=', s.{_q(c.name)}) END"
                    for c in money
                )
                + ")",
            )
        )
    sized = [c for c in primary.columns if c.kind in ("text", "char") and c.length]
    if sized:
        rules.append(
            Rule(
                "text_length",
                "text fits its declared length (a longer value would have to be cut to publish)",
                " OR ".join(f"char_length(s.{_q(c.name)}) > {c.length}" for c in sized),
                "concat('longer than declared:', "
                + ", ".join(
                    f"CASE WHEN char_length(s.{_q(c.name)}) > {c.length} THEN concat(' ', {_lit(c.name)}, ' has ', "
                    f"char_length(s.{_q(c.name)}), ' characters (declared {c.length}): ', "
                    f"left(s.{_q(c.name)}, 30), '...') END"
                    for c in sized
                )
                + ")",
            )
        )
    stamps = [c for c in primary.columns if c.kind == "datetime"]
    if stamps:
        # A local time converts to an instant in the community's zone (offsets lie within a day):
        # the first and last day of the calendar may convert to a year before 1 or after 9999,
        # which SQL Server, Python and most portal clients cannot represent.
        rules.append(
            Rule(
                "datetime_range",
                "local times lie between 0001-01-02 and 9999-12-30 (their instant exists in every zone)",
                " OR ".join(f"s.{_q(c.name)} < TIMESTAMP '0001-01-02' OR s.{_q(c.name)} >= TIMESTAMP '9999-12-31'"
                            for c in stamps),
                _reason("local time at the end of the calendar:", *(c.name for c in stamps)),
            )
        )
    for code in dataset.codes:
        allowed = ", ".join(_lit(v) for v in code.allowed)
        rules.append(
            Rule(
                f"code_{code.column.lower()}",
                f"{code.column} is one of {', '.join(code.allowed)}",
                f"s.{_q(code.column)} IS NOT NULL AND rtrim(s.{_q(code.column)}) NOT IN ({allowed})",
                _reason(f"unknown {code.column} code", code.column),
            )
        )
    for ref in dataset.references:
        target = "{" + ref.target_extract + "}"
        rules.append(
            Rule(
                ref.rule,
                ref.description,
                f"s.{_q(ref.column)} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {target} r "
                f"WHERE r.{_q(ref.target_column)} = s.{_q(ref.column)} AND {_read_exactly('r', ref.target_column)})",
                _reason(ref.description, ref.column),
            )
        )
    return rules


def render(text: str, tables: dict[str, str]) -> str:
    """Put the run's staging table names in place of ``{extract_name}``."""
    out = text
    for name, table in tables.items():
        out = out.replace("{" + name + "}", f"{_q(STAGE_SCHEMA)}.{_q(table)}")
    return out


TABLE_CHECKS = ("staged_columns", "row_count_change", "window_row_count")


def known_checks() -> tuple[set[str], set[str]]:
    """Names of every row check and table check, for validating configured severities."""
    rows = {rule.name for ds in DATASETS.values() for rule in _integrity_rules(ds)}
    rows |= {check.name for ds in DATASETS.values() for check in ds.plausibility}
    return rows, set(TABLE_CHECKS)


@dataclass(frozen=True)
class TableCheck:
    name: str
    description: str
    severity: str  # fail | warn
    min_rows: int | None = None
    max_rows: int | None = None
    columns: tuple[str, ...] | None = None


def table_checks_for(dataset: Dataset, quality: Quality, *, mode: str, previous_rows: int | None) -> list[TableCheck]:
    """Checks of the staged table as a whole; a failing one stops the data set (severity fail)."""
    checks = [TableCheck(
        "staged_columns", "the staged columns are exactly the declared allow-list (no sensitive column can slip in)",
        quality.severity_of(dataset.name, "staged_columns", "fail"),
        columns=(ROW_ID, *(c.name for c in dataset.primary.columns), UNREADABLE),
    )]
    if mode == "full" and previous_rows is not None:
        slack = max(quality.snapshot_change_share * previous_rows, quality.snapshot_change_min_rows)
        checks.append(TableCheck(
            "row_count_change",
            f"the snapshot's row count stays within {quality.snapshot_change_share:.0%} of the last published "
            f"one ({previous_rows} rows)",
            quality.severity_of(dataset.name, "row_count_change", "fail"),
            min_rows=max(0, int(previous_rows - slack)), max_rows=int(previous_rows + slack),
        ))
    if mode == "window":
        checks.append(TableCheck(
            "window_row_count", f"a window holds at most {quality.max_window_rows} rows",
            quality.severity_of(dataset.name, "window_row_count", "warn"), min_rows=0,
            max_rows=quality.max_window_rows,
        ))
    return [c for c in checks if c.severity != "ignore"]


@dataclass(frozen=True)
class RuleOutcome:
    rule: str
    severity: str
    failing_rows: int
    description: str
    kind: str = "row"  # row | table
    observed: object = None


class ValidationError(RuntimeError):
    """A data-quality check could not be evaluated (never confused with bad data)."""


class DataQualityFailure(RuntimeError):
    """A table-level check with severity fail did not pass: the data set must not publish."""


def validate_staged(
    conn: psycopg.Connection,
    *,
    pg_url: str,
    run_key: str,
    community: str,
    dataset: Dataset,
    tables: dict[str, str],
    rules: Sequence[Rule] | None = None,
    table_checks: Sequence[TableCheck] = (),
    use_gx: bool = True,
    gx_max_rows: int | None = None,
    staged_rows: int | None = None,
) -> list[RuleOutcome]:
    """Run the checks on the primary staging table; record failing rows in sync.run_findings.

    Great Expectations runs every check as SQL in PostgreSQL; our own SQL then records all
    failing rows (GX keeps at most 200) and the two counts must agree. GX re-scans the table
    for each rule, so above ``gx_max_rows`` staged rows only our one-scan SQL runs (ADR 0007).
    Without GX (tests, ``--no-gx``) the same SQL still decides, so the outcome never depends
    on the switch.
    """
    rules = [r for r in (rules if rules is not None else rules_for(dataset)) if r.severity != "ignore"]
    primary_table = tables[dataset.primary.name]
    if use_gx and gx_max_rows is not None:
        if staged_rows is None:
            staged_rows = conn.execute(f"SELECT count(*) FROM {_q(STAGE_SCHEMA)}.{_q(primary_table)}").fetchone()[0]
        if staged_rows > gx_max_rows:
            log.info("%s %s: %d staged rows > gx_max_rows %d: checks run as one SQL scan without Great "
                     "Expectations", community, dataset.name, staged_rows, gx_max_rows)
            use_gx = False
    gx_counts: dict[str, int] = {}
    table_outcomes: list[RuleOutcome] = []
    if use_gx and (rules or table_checks):
        from portal_sync.gx_runner import GxRule, GxTableCheck, GxTableResult, run_rules

        table_results: list[GxTableResult] = []
        results = run_rules(
            pg_url,
            STAGE_SCHEMA,
            primary_table,
            [GxRule(r.name, r.description, render(r.bad_rows_where, tables)) for r in rules],
            suite_name=f"{community.lower()}_{dataset.name}",
            table_checks=[GxTableCheck(c.name, c.description, c.min_rows, c.max_rows, c.columns)
                          for c in table_checks],
            table_results=table_results,
        )
        gx_counts = {res.name: res.unexpected_count for res in results}
        by_name = {t.name: t for t in table_results}
        for check in table_checks:
            result = by_name[check.name]
            table_outcomes.append(RuleOutcome(check.name, check.severity, 0 if result.success else 1,
                                              check.description, "table", result.observed))
    else:
        table_outcomes = [_table_check_sql(conn, primary_table, c) for c in table_checks]

    failing_by_rule: dict[str, int] = {}
    if rules:
        with conn.transaction():  # one transaction: a killed validation leaves no findings; at 4 MB the
            # hashes of a city ledger's reference checks (and of the duplicate-key fallback) spill
            conn.execute(f"SET LOCAL work_mem = '{BIG_STATEMENT_MEMORY}'")
            failing_by_rule = _record_failing_rows(conn, run_key, community, dataset, tables, rules)
    outcomes = []
    for rule in rules:
        failing = failing_by_rule.get(rule.name, 0)
        if use_gx and gx_counts.get(rule.name) != failing:
            raise ValidationError(
                f"{community} {dataset.name}: rule {rule.name} counted {failing} failing rows in SQL but "
                f"{gx_counts.get(rule.name)} in Great Expectations"
            )
        outcomes.append(RuleOutcome(rule.name, rule.severity, failing, rule.description))
    return outcomes + table_outcomes


def _record_failing_rows(conn: psycopg.Connection, run_key: str, community: str, dataset: Dataset,
                         tables: dict[str, str], rules: Sequence[Rule]) -> dict[str, int]:
    """Every failing (row, rule) into sync.run_findings: the row rules in ONE scan of the staged table,
    each rule that looks into another table (references, duplicate keys) in its own statement.

    The OR of the row rules' predicates picks the (rare) candidate rows; only those go through the
    per-rule VALUES list that names each failing rule and its reason (one statement per rule scanned
    the table once per rule). A rule with a subquery keeps its own statement: alone, PostgreSQL plans
    it as one anti-join or hashed subplan; inside an OR it would probe the other table row by row.
    """
    key_text = " || '|' || ".join(f"coalesce(s.{_q(k)}::text, 'NULL')" for k in dataset.primary.key)
    staged = f"{_q(STAGE_SCHEMA)}.{_q(tables[dataset.primary.name])}"
    counts: dict[str, int] = {}
    scanned = [r for r in rules if "select" not in r.bad_rows_where.lower()]
    if scanned:
        predicates = [f"({render(r.bad_rows_where, tables)})" for r in scanned]
        values = ", ".join(
            f"(%s, %s, {pred} IS TRUE, CASE WHEN {pred} IS TRUE THEN {render(r.reason, tables)} END)"
            for r, pred in zip(scanned, predicates, strict=True)
        )
        params: list[object] = [run_key, community, dataset.name]
        for r in scanned:
            params += [r.name, r.severity]
        # The candidates first, by a statement that only reads: PostgreSQL scans in parallel workers
        # for a query that creates its table, never for one that inserts into an existing one. The
        # planner takes an OR of dozens of tests for "every row" and so would not pay for moving
        # them between processes; candidates are rare, hence no such cost for this statement
        # (a city ledger's scan: 32 s alone, 20 s with the workers; the money regexes are most of it).
        conn.execute("SET LOCAL parallel_setup_cost = 0")
        conn.execute("SET LOCAL parallel_tuple_cost = 0")
        conn.execute(f"CREATE TEMP TABLE {_q(CANDIDATES)} ON COMMIT DROP AS"
                     f" SELECT * FROM {staged} s WHERE {' OR '.join(predicates)}")
        conn.execute("SET LOCAL parallel_setup_cost TO DEFAULT")
        conn.execute("SET LOCAL parallel_tuple_cost TO DEFAULT")
        counts.update(conn.execute(
            "WITH found AS (INSERT INTO sync.run_findings (run_key, community_code, dataset, row_id, row_key, rule,"
            f" severity, reason) SELECT %s, %s, %s, s.{_q(ROW_ID)}, {key_text}, r.rule, r.severity, r.reason"
            f" FROM {_q(CANDIDATES)} s"
            f" CROSS JOIN LATERAL (VALUES {values}) AS r(rule, severity, hit, reason) WHERE r.hit RETURNING rule)"
            " SELECT rule, count(*) FROM found GROUP BY rule",
            params,
        ).fetchall())
        conn.execute(f"DROP TABLE {_q(CANDIDATES)}")
    for rule in (r for r in rules if r not in scanned):
        if rule.name == KEY_UNIQUE and key_is_unique(conn, tables[dataset.primary.name], dataset.primary):
            counts[rule.name] = 0  # the staged keys took a UNIQUE index: no key repeats (stage.finish_table)
            continue
        counts[rule.name] = conn.execute(
            "INSERT INTO sync.run_findings (run_key, community_code, dataset, row_id, row_key, rule, severity, reason)"
            f" SELECT %s, %s, %s, s.{_q(ROW_ID)}, {key_text}, %s, %s, {render(rule.reason, tables)}"
            f" FROM {staged} s WHERE {render(rule.bad_rows_where, tables)}",
            (run_key, community, dataset.name, rule.name, rule.severity),
        ).rowcount
    return counts


def _table_check_sql(conn: psycopg.Connection, table: str, check: TableCheck) -> RuleOutcome:
    """The same table check in plain SQL (when GX is switched off)."""
    if check.columns is not None:
        found = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
            " ORDER BY ordinal_position", (STAGE_SCHEMA, table)).fetchall()]
        ok = set(found) == set(check.columns)
        return RuleOutcome(check.name, check.severity, 0 if ok else 1, check.description, "table", found)
    rows = conn.execute(f"SELECT count(*) FROM {_q(STAGE_SCHEMA)}.{_q(table)}").fetchone()[0]
    ok = (check.min_rows is None or rows >= check.min_rows) and (check.max_rows is None or rows <= check.max_rows)
    return RuleOutcome(check.name, check.severity, 0 if ok else 1, check.description, "table", rows)
