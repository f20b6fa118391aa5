"""Data-quality checks run on staged rows (the checks themselves: rules.py).

Great Expectations runs them as SQL in PostgreSQL and is the gate (a broken check fails
the task); our own SQL then records every failing row, because GX caps the failing ids
it returns. The two counts must agree.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import psycopg

from portal_sync.datasets import Dataset
from portal_sync.extract import ROW_ID
from portal_sync.rules import KEY_UNIQUE, Rule, TableCheck, rules_for
from portal_sync.sqltext import quote_pg_ident as _q
from portal_sync.sqltext import render_staged
from portal_sync.stage import BIG_STATEMENT_MEMORY, STAGE_SCHEMA, key_is_unique
from portal_sync.store import quality as quality_store

log = logging.getLogger(__name__)

CANDIDATES = "row_rule_candidates"  # temp table: the staged rows some row rule may refuse


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
    tables: Mapping[str, str],
    rules: Sequence[Rule] | None = None,
    table_checks: Sequence[TableCheck] = (),
    use_gx: bool = True,
    gx_max_rows: int | None = None,
    staged_rows: int | None = None,
) -> list[RuleOutcome]:
    """Run the checks on the primary staging table; record failing rows as the run's findings.

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
            [GxRule(r.name, r.description, render_staged(r.bad_rows_where, tables)) for r in rules],
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
                         tables: Mapping[str, str], rules: Sequence[Rule]) -> dict[str, int]:
    """Every failing (row, rule) into the run's findings: the row rules in ONE scan of the staged table,
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
        predicates = [f"({render_staged(r.bad_rows_where, tables)})" for r in scanned]
        values = ", ".join(
            f"(%s, %s, {pred} IS TRUE, CASE WHEN {pred} IS TRUE THEN {render_staged(r.reason, tables)} END)"
            for r, pred in zip(scanned, predicates, strict=True)
        )
        params: list[object] = [run_key, community, dataset.name]
        for r in scanned:
            params += [r.name, r.severity]
        # The candidates first, by a statement that only reads: PostgreSQL scans in parallel workers
        # for a query that creates its table, never for one that inserts into an existing one. The
        # planner takes an OR of dozens of tests for "every row" and so would not pay for moving
        # them between processes; candidates are rare, hence no such cost for this statement
        # (the money regexes make the scan CPU-bound, docs/benchmarks).
        conn.execute("SET LOCAL parallel_setup_cost = 0")
        conn.execute("SET LOCAL parallel_tuple_cost = 0")
        conn.execute(f"CREATE TEMP TABLE {_q(CANDIDATES)} ON COMMIT DROP AS"
                     f" SELECT * FROM {staged} s WHERE {' OR '.join(predicates)}")
        conn.execute("SET LOCAL parallel_setup_cost TO DEFAULT")
        conn.execute("SET LOCAL parallel_tuple_cost TO DEFAULT")
        counts.update(quality_store.insert_findings(
            conn,
            f"SELECT %s, %s, %s, s.{_q(ROW_ID)}, {key_text}, r.rule, r.severity, r.reason FROM {_q(CANDIDATES)} s"
            f" CROSS JOIN LATERAL (VALUES {values}) AS r(rule, severity, hit, reason) WHERE r.hit",
            params,
        ))
        conn.execute(f"DROP TABLE {_q(CANDIDATES)}")
    for rule in (r for r in rules if r not in scanned):
        if rule.name == KEY_UNIQUE and key_is_unique(conn, tables[dataset.primary.name], dataset.primary):
            counts[rule.name] = 0  # the staged keys took a UNIQUE index: no key repeats (stage.finish_table)
            continue
        found = quality_store.insert_findings(
            conn,
            f"SELECT %s, %s, %s, s.{_q(ROW_ID)}, {key_text}, %s, %s, {render_staged(rule.reason, tables)}"
            f" FROM {staged} s WHERE {render_staged(rule.bad_rows_where, tables)}",
            (run_key, community, dataset.name, rule.name, rule.severity),
        )
        counts[rule.name] = found.get(rule.name, 0)
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
