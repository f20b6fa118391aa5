"""Data-quality checks run on staged rows (the checks themselves: rules.py; as GX expectations:
expectations.py and its stored suites).

Great Expectations validates the data set's stored suite in PostgreSQL on every run, over the rows
the run would publish, and is the gate (a broken check fails the task); its results are kept in
sync.gx_results. Our own set-based SQL records every failing row (GX keeps a sample) and decides
refusals; for every expectation the two counts must agree.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg

from portal_sync import expectations as suites
from portal_sync.datasets import Dataset
from portal_sync.extract import ROW_ID
from portal_sync.rules import KEY_UNIQUE, Rule, TableCheck, fill_placeholders, plausibility_parameters, rules_for
from portal_sync.sqltext import quote_pg_ident as _q
from portal_sync.sqltext import render_staged
from portal_sync.stage import BIG_STATEMENT_MEMORY, STAGE_SCHEMA, key_is_unique
from portal_sync.store import gx_results
from portal_sync.store import quality as quality_store

if TYPE_CHECKING:
    from portal_sync.gx_runner import GxSuiteOutcome

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
    changed_rows: str | None = None,
    staged_rows: int | None = None,
) -> list[RuleOutcome]:
    """Run the checks on the primary staging table; record failing rows as the run's findings.

    ``changed_rows`` is an SQL predicate over the staged row ``s`` selecting the rows the run would
    publish (new or changed against the portal: probe.changed_rows_sql); None: every staged row.
    Great Expectations validates only those, so its cost follows the change; whether a key is
    unique is judged among ALL staged rows (a changed row that repeats the key of an unchanged one
    is still refused). Our SQL records the failing rows of every staged row, so refusals and the
    quarantine are decided as without the predicate; GX's counts are compared with ours over the
    rows GX saw. With no row to check GX is not even imported; the table checks then run in SQL.

    Great Expectations validates the data set's stored suite (at every size); its results are stored
    (store/gx_results.py); for each expectation its count must equal our SQL's. Without GX (tests,
    ``--no-gx``) the same SQL decides, so the outcome never depends on the switch.
    """
    rules = [r for r in (rules if rules is not None else rules_for(dataset)) if r.severity != "ignore"]
    primary_table = tables[dataset.primary.name]
    staged = f"{_q(STAGE_SCHEMA)}.{_q(primary_table)}"
    if use_gx and (rules or table_checks):
        if changed_rows is not None:
            to_check = conn.execute(f"SELECT EXISTS (SELECT 1 FROM {staged} s WHERE {changed_rows})").fetchone()[0]
        elif staged_rows is not None:
            to_check = staged_rows > 0
        else:
            to_check = conn.execute(f"SELECT EXISTS (SELECT 1 FROM {staged} s)").fetchone()[0]
        if not to_check:
            log.info("%s %s: no row to check: Great Expectations not run", community, dataset.name)
            gx_results.clear(conn, run_key, dataset.name)
            use_gx = False

    specs = {s.key: s for s in suites.specs_for(dataset)}
    by_rule: dict[str, list[suites.ExpectationSpec]] = {}
    for spec in specs.values():
        by_rule.setdefault(spec.rule, []).append(spec)
    parameters = _parameters(rules)
    outcome = None
    table_outcomes: list[RuleOutcome] = []
    if use_gx:
        outcome = _run_gx(conn, pg_url, run_key, community, dataset, tables, rules, table_checks, changed_rows,
                          by_rule, parameters)
        by_key = outcome.by_key()
        table_outcomes = [RuleOutcome(c.name, c.severity, 0 if by_key[c.name].success else 1, c.description,
                                      "table", by_key[c.name].observed_value) for c in table_checks]
    else:
        table_outcomes = [_table_check_sql(conn, primary_table, c) for c in table_checks]

    failing_by_rule: dict[str, int] = {}
    ours: dict[str, int] = {}
    if rules:
        with conn.transaction():  # one transaction: a killed validation leaves no findings; at 4 MB the
            # hashes of a city ledger's reference checks (and of the duplicate-key fallback) spill
            conn.execute(f"SET LOCAL work_mem = '{BIG_STATEMENT_MEMORY}'")
            predicates = {
                spec.key: fill_placeholders(spec.bad_rows_where, parameters)
                for r in rules for spec in by_rule.get(r.name, ())
            } if use_gx else {}
            failing_by_rule, ours = _record_failing_rows(conn, run_key, community, dataset, tables, rules,
                                                         changed_rows, predicates, by_rule)
    if outcome is not None:
        disagree = [
            f"{r.key}: GX {r.unexpected_count}, SQL {ours.get(r.key)}" for r in outcome.results
            if r.kind == "row" and r.key in specs and r.unexpected_count != ours.get(r.key)
        ]
        disagree += [  # rules with no stored expectation: GX counted the rule itself
            f"{r.rule}: GX {r.unexpected_count}, SQL {failing_by_rule.get(r.rule, 0)}" for r in outcome.results
            if r.kind == "row" and r.key not in specs and r.unexpected_count != failing_by_rule.get(r.rule, 0)
        ]
        if disagree:
            raise ValidationError(f"{community} {dataset.name}: Great Expectations and our SQL counted different "
                                  "failing rows: " + "; ".join(disagree))
    outcomes = [RuleOutcome(r.name, r.severity, failing_by_rule.get(r.name, 0), r.description) for r in rules]
    return outcomes + table_outcomes


def _parameters(rules: Sequence[Rule]) -> dict[str, object]:
    """The run's plausibility values, as rules_for fixed them (defaults when the rules carry none)."""
    for rule in rules:
        if rule.parameters:
            return dict(rule.parameters)
    return plausibility_parameters()


def _run_gx(conn: psycopg.Connection, pg_url: str, run_key: str, community: str, dataset: Dataset,
            tables: Mapping[str, str], rules: Sequence[Rule], table_checks: Sequence[TableCheck],
            changed_rows: str | None, by_rule: Mapping[str, Sequence[suites.ExpectationSpec]],
            parameters: Mapping[str, object]) -> GxSuiteOutcome:
    """The data set's stored suite in GX over the rows to check; results stored (sync.gx_results)."""
    from portal_sync.gx_runner import GxRule, GxTableCheck, validate_suite

    suite = suites.stored_suite(dataset.name)
    stored = {e["meta"]["portal_sync"]["expectation"] for e in suite["expectations"]}
    wanted = {spec.key for r in rules for spec in by_rule.get(r.name, ())}
    if not wanted <= stored:
        raise ValidationError(f"{dataset.name}: the stored suite lacks {sorted(wanted - stored)}; run "
                              "python -m portal_sync.expectations --write")
    outcome = validate_suite(
        pg_url, STAGE_SCHEMA, tables[dataset.primary.name], suite,
        severities={r.name: r.severity for r in rules if r.name in by_rule},
        relations={name: f"{_q(STAGE_SCHEMA)}.{_q(table)}" for name, table in tables.items()},
        parameters=suites.gx_parameters(parameters, {r.name: r.mostly for r in rules}), rows_where=changed_rows,
        extra_rules=[GxRule(r.name, r.description, render_staged(r.bad_rows_where, tables))
                     for r in rules if r.name not in by_rule],
        extra_severities={r.name: r.severity for r in rules},
        table_checks=[GxTableCheck(c.name, c.description, c.min_rows, c.max_rows, c.columns) for c in table_checks],
        table_severities={c.name: c.severity for c in table_checks},
    )
    with conn.transaction():
        gx_results.record(conn, run_key, community, dataset.name, outcome.results, outcome.result_json,
                          outcome.element_count)
    return outcome


def _record_failing_rows(conn: psycopg.Connection, run_key: str, community: str, dataset: Dataset,
                         tables: Mapping[str, str], rules: Sequence[Rule], changed_rows: str | None,
                         predicates: Mapping[str, str], by_rule: Mapping[str, Sequence[suites.ExpectationSpec]],
                         ) -> tuple[dict[str, int], dict[str, int]]:
    """Every failing (row, rule) into the run's findings: the row rules in ONE scan of the staged table,
    each rule that looks into another table (references, duplicate keys) in its own statement.
    Returns the failing rows per rule, and per expectation of ``predicates`` (key -> its SQL).

    The OR of the row rules' predicates picks the (rare) candidate rows; only those go through the
    per-rule VALUES list that names each failing rule and its reason (one statement per rule scanned
    the table once per rule), and the per-expectation counts are taken on them too. A rule with a
    subquery keeps its own statement: alone, PostgreSQL plans it as one anti-join or hashed subplan;
    inside an OR it would probe the other table row by row.
    """
    key_text = " || '|' || ".join(f"coalesce(s.{_q(k)}::text, 'NULL')" for k in dataset.primary.key)
    staged = f"{_q(STAGE_SCHEMA)}.{_q(tables[dataset.primary.name])}"
    scope = f"({changed_rows}) AND " if changed_rows is not None else ""  # the rows GX saw
    counts: dict[str, int] = {}
    per_expectation: dict[str, int] = {}
    scanned = [r for r in rules if "select" not in r.bad_rows_where.lower()]
    if scanned:
        predicates_sql = [f"({render_staged(r.bad_rows_where, tables)})" for r in scanned]
        values = ", ".join(
            f"(%s, %s, {pred} IS TRUE, CASE WHEN {pred} IS TRUE THEN {render_staged(r.reason, tables)} END)"
            for r, pred in zip(scanned, predicates_sql, strict=True)
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
                     f" SELECT * FROM {staged} s WHERE {' OR '.join(predicates_sql)}")
        conn.execute("SET LOCAL parallel_setup_cost TO DEFAULT")
        conn.execute("SET LOCAL parallel_tuple_cost TO DEFAULT")
        counts.update(quality_store.insert_findings(
            conn,
            f"SELECT %s, %s, %s, s.{_q(ROW_ID)}, {key_text}, r.rule, r.severity, r.reason FROM {_q(CANDIDATES)} s"
            f" CROSS JOIN LATERAL (VALUES {values}) AS r(rule, severity, hit, reason) WHERE r.hit",
            params,
        ))
        keys = [spec.key for r in scanned for spec in by_rule.get(r.name, ()) if spec.key in predicates]
        if keys:  # GX counted each expectation of these rules: the same counts, on the candidates
            row = conn.execute("SELECT " + ", ".join(f"count(*) FILTER (WHERE {scope}({predicates[k]}) IS TRUE)"
                                                     for k in keys) + f" FROM {_q(CANDIDATES)} s").fetchone()
            per_expectation.update(zip(keys, row, strict=True))
        conn.execute(f"DROP TABLE {_q(CANDIDATES)}")
    for rule in (r for r in rules if r not in scanned):
        if rule.name == KEY_UNIQUE and key_is_unique(conn, tables[dataset.primary.name], dataset.primary):
            counts[rule.name] = 0  # the staged keys took a UNIQUE index: no key repeats (stage.finish_table)
        else:
            found = quality_store.insert_findings(
                conn,
                f"SELECT %s, %s, %s, s.{_q(ROW_ID)}, {key_text}, %s, %s, {render_staged(rule.reason, tables)}"
                f" FROM {staged} s WHERE ({render_staged(rule.bad_rows_where, tables)})",
                (run_key, community, dataset.name, rule.name, rule.severity),
            )
            counts[rule.name] = found.get(rule.name, 0)
        specs = [spec for spec in by_rule.get(rule.name, ()) if spec.key in predicates]
        if len(specs) == 1 and not scope:  # one expectation over every row: it counts exactly the rule's rows
            per_expectation[specs[0].key] = counts[rule.name]
        for spec in specs if len(specs) > 1 or scope else ():
            per_expectation[spec.key] = conn.execute(
                f"SELECT count(*) FROM {staged} s WHERE {scope}({render_staged(predicates[spec.key], tables)})"
            ).fetchone()[0]
    return counts, per_expectation


def _table_check_sql(conn: psycopg.Connection, table: str, check: TableCheck) -> RuleOutcome:
    """The same table check in plain SQL (GX switched off, or no row to check)."""
    if check.columns is not None:
        found = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
            " ORDER BY ordinal_position", (STAGE_SCHEMA, table)).fetchall()]
        ok = set(found) == set(check.columns)
        return RuleOutcome(check.name, check.severity, 0 if ok else 1, check.description, "table", found)
    rows = conn.execute(f"SELECT count(*) FROM {_q(STAGE_SCHEMA)}.{_q(table)}").fetchone()[0]
    ok = (check.min_rows is None or rows >= check.min_rows) and (check.max_rows is None or rows <= check.max_rows)
    return RuleOutcome(check.name, check.severity, 0 if ok else 1, check.description, "table", rows)
