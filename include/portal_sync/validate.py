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
from typing import Literal

import psycopg

from portal_sync.datasets import Dataset
from portal_sync.extract import ROW_ID
from portal_sync.stage import STAGE_SCHEMA

log = logging.getLogger(__name__)

Severity = Literal["refuse", "warn", "ignore"]


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


def _reason(prefix: str, *columns: str) -> str:
    parts = [_lit(prefix)]
    for col in columns:
        parts += [_lit(f" {col}="), _value_text(col)]
    return "concat(" + ", ".join(parts) + ")"


def rules_for(dataset: Dataset) -> list[Rule]:
    """The integrity rules of a data set, all refusing: such a row has no correct portal form."""
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
            "key_unique",
            f"{primary.table} key {', '.join(key_cols)} is unique",
            "(" + ", ".join(f"s.{_q(k)}" for k in key_cols) + ") IN (SELECT "
            + ", ".join(_q(k) for k in key_cols) + " FROM {" + primary.name + "} GROUP BY "
            + ", ".join(_q(k) for k in key_cols) + " HAVING count(*) > 1)",
            _reason("duplicate key", *key_cols),
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
                f"WHERE r.{_q(ref.target_column)} = s.{_q(ref.column)})",
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


@dataclass(frozen=True)
class RuleOutcome:
    rule: str
    severity: Severity
    failing_rows: int
    description: str


class ValidationError(RuntimeError):
    """A data-quality check could not be evaluated (never confused with bad data)."""


def validate_staged(
    conn: psycopg.Connection,
    *,
    pg_url: str,
    run_key: str,
    community: str,
    dataset: Dataset,
    tables: dict[str, str],
    rules: Sequence[Rule] | None = None,
    use_gx: bool = True,
) -> list[RuleOutcome]:
    """Run the rules on the primary staging table; record failing rows in sync.run_findings."""
    rules = [r for r in (rules if rules is not None else rules_for(dataset)) if r.severity != "ignore"]
    primary_table = tables[dataset.primary.name]
    gx_counts: dict[str, int] = {}
    if use_gx and rules:
        from portal_sync.gx_runner import GxRule, run_rules

        results = run_rules(
            pg_url,
            STAGE_SCHEMA,
            primary_table,
            [GxRule(r.name, r.description, render(r.bad_rows_where, tables)) for r in rules],
            suite_name=f"{community.lower()}_{dataset.name}",
        )
        gx_counts = {res.name: res.unexpected_count for res in results}

    key_text = " || '|' || ".join(f"coalesce(s.{_q(k)}::text, 'NULL')" for k in dataset.primary.key)
    outcomes = []
    for rule in rules:
        statement = (
            "INSERT INTO sync.run_findings (run_key, community_code, dataset, row_id, row_key, rule, severity, reason)"
            f" SELECT %s, %s, %s, s.{_q(ROW_ID)}, {key_text}, %s, %s, {render(rule.reason, tables)}"
            f" FROM {_q(STAGE_SCHEMA)}.{_q(primary_table)} s WHERE {render(rule.bad_rows_where, tables)}"
        )
        cur = conn.execute(statement, (run_key, community, dataset.name, rule.name, rule.severity))
        failing = cur.rowcount
        if use_gx and gx_counts.get(rule.name) != failing:
            raise ValidationError(
                f"{community} {dataset.name}: rule {rule.name} counted {failing} failing rows in SQL but "
                f"{gx_counts.get(rule.name)} in Great Expectations"
            )
        outcomes.append(RuleOutcome(rule.name, rule.severity, failing, rule.description))
    return outcomes
