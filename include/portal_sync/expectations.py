"""Great Expectations suites generated from the data-set declarations, one per data set.

Every row rule of rules.py maps to one or more expectations (``specs_for``): a standard GX
expectation wherever one says the same thing (not null, null, value lengths, value in set,
values between, regex, column pair A >= B, multicolumn sum), and a NAMED custom expectation
(a subclass of GX's ``UnexpectedRowsExpectation``) where the check needs our SQL: exact money
(the staged ``<column>__amount``, ``datasets.amount``), references into another staged table,
and the duplicate key, which looks at ALL staged rows (a changed row may repeat the key of an
unchanged one) while a standard uniqueness expectation sees only its batch.

Each expectation also carries ``bad_rows_where``: our SQL over the staged row ``s`` that is true
exactly for the rows GX counts as unexpected; a rule's predicate is the OR of its expectations'
(validate.py counts both and they must agree).

The suites are stored as GX suite JSON in ``suites/<dataset>.json`` (a change shows as a diff):
``python -m portal_sync.expectations --write`` regenerates them, ``--check`` fails when they are
stale (as does tests/unit/test_suites.py). Run-time values are GX suite parameters
(``{"$PARAMETER": "max_date"}``...), other staging tables ``{{extract_name}}`` in custom queries,
and columns the batch query derives from the staged ones are listed in the suite's meta.

Every expectation's ``mostly`` is the suite parameter ``mostly__<rule>`` (the share of rows that must
pass for GX to call it a success); the suite's meta holds each rule's default (1.0 for integrity
rules, 0.99 for plausibility rules) and a run passes the community's value (config ``quality.mostly``),
so the stored suites stay the same for every community. ``mostly`` never decides a refusal.

This module imports without Great Expectations; the custom classes are defined on first
access (``ExpectReferenceToResolve`` etc. as module attributes), which imports GX.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any, ClassVar

from portal_sync.datasets import DATASETS, Dataset, Plausibility, amount
from portal_sync.extract import ROW_ID, UNREADABLE
from portal_sync.rules import (
    KEY_UNIQUE,
    MOSTLY_INTEGRITY,
    MOSTLY_PLAUSIBLE,
    OFF_MASK,
    Rule,
    _integrity_rules,
    money_not_exact,
)
from portal_sync.sqltext import quote_pg_ident as _q
from portal_sync.sqltext import sql_literal as _lit

SUITES_DIR = Path(__file__).with_name("suites")
META_KEY = "portal_sync"  # expectation meta: {"expectation", "rule", "severity", "mostly", "bad_rows_where"}
GX_SEVERITY = {"refuse": "critical", "fail": "critical", "warn": "warning", "ignore": "info"}
_ID_NAMESPACE = uuid.UUID("5d3c7a52-3f0e-4b8e-9a57-6b1f2f1c0e20")

STAGED_KEY_UNIQUE = "expect_staged_key_to_be_unique"
EXACT_MONEY = "expect_column_values_to_be_exact_money"
REFERENCE_RESOLVES = "expect_reference_to_resolve"
CUSTOM_TYPES = (STAGED_KEY_UNIQUE, EXACT_MONEY, REFERENCE_RESOLVES)
_CUSTOM_CLASSES = {
    "ExpectStagedKeyToBeUnique": STAGED_KEY_UNIQUE,
    "ExpectColumnValuesToBeExactMoney": EXACT_MONEY,
    "ExpectReferenceToResolve": REFERENCE_RESOLVES,
}


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation of a data set's suite and the rule it belongs to."""

    key: str  # unique in the suite: "<rule>:<subject>", the key of its stored results
    rule: str
    type: str  # GX expectation type (snake case)
    kwargs: Mapping[str, Any]
    description: str
    bad_rows_where: str  # our SQL over ``s``; plausibility placeholders and {extract} as in rules.py
    severity: str  # the rule's default severity (refuse | warn)
    batch_columns: Mapping[str, str] = field(default_factory=dict)  # derived columns the batch must select

    @property
    def custom(self) -> bool:
        return self.type in CUSTOM_TYPES

    @property
    def mostly(self) -> float:
        """The default share of rows that must pass (a run may override it per rule)."""
        return MOSTLY_PLAUSIBLE if self.severity == "warn" else MOSTLY_INTEGRITY


def mostly_parameter(rule: str) -> str:
    """The suite parameter carrying a rule's ``mostly`` in every expectation of that rule."""
    return f"mostly__{rule}"


def _param(name: str) -> dict[str, str]:
    return {"$PARAMETER": name}


def custom_query(bad_rows_where: str, key: Sequence[str]) -> str:
    """The ``unexpected_rows_query`` of a custom expectation: the ``_row_id`` and key of the bad rows of
    the batch, each with the count of all of them. Other staging tables stay ``{{extract}}`` (filled in
    per run); see gx_runner for why the query joins a one-row constant."""
    from portal_sync.gx_query import build_unexpected_rows_query

    return build_unexpected_rows_query(bad_rows_where, select=(ROW_ID, *key), counted=True)


def specs_for(dataset: Dataset) -> list[ExpectationSpec]:
    """Every expectation of the data set, in rule order; each rule of rules.py has at least one."""
    specs: list[ExpectationSpec] = []
    for rule in _integrity_rules(dataset):
        specs += _integrity_specs(dataset, rule)
    for check in dataset.plausibility:
        specs += _plausibility_specs(dataset, check)
    seen = [s.key for s in specs]
    if len(seen) != len(set(seen)):
        raise ValueError(f"{dataset.name}: two expectations share a key: {sorted(seen)}")
    return specs


def _std(rule: Rule, type_: str, subject: str, where: str, **kwargs: Any) -> ExpectationSpec:
    kwargs["mostly"] = _param(mostly_parameter(rule.name))
    return ExpectationSpec(f"{rule.name}:{subject}", rule.name, type_, kwargs, rule.description, where, rule.severity)


def _integrity_specs(dataset: Dataset, rule: Rule) -> list[ExpectationSpec]:
    primary = dataset.primary
    name = rule.name
    if name == "key_not_null":
        return [_std(rule, "expect_column_values_to_not_be_null", k, f"s.{_q(k)} IS NULL", column=k)
                for k in primary.key]
    if name == KEY_UNIQUE:
        return [_custom(rule, STAGED_KEY_UNIQUE, "+".join(primary.key), rule.bad_rows_where, primary.key)]
    if name == "unreadable_value":
        return [_std(rule, "expect_column_values_to_be_null", UNREADABLE, f"s.{_q(UNREADABLE)} IS NOT NULL",
                     column=UNREADABLE)]
    if name == "required_value":
        return [_std(rule, "expect_column_values_to_not_be_null", c.name, f"s.{_q(c.name)} IS NULL", column=c.name)
                for c in primary.columns if not c.nullable and c.name not in primary.key]
    if name == "money_exact":
        return [_custom(rule, EXACT_MONEY, c.name, money_not_exact(c.name),
                        primary.key) for c in primary.columns if c.kind == "money"]
    if name == "text_length":
        return [_std(rule, "expect_column_value_lengths_to_be_between", c.name,
                     f"char_length(s.{_q(c.name)}) > {c.length}", column=c.name, max_value=c.length)
                for c in primary.columns if c.kind in ("text", "char") and c.length]
    if name == "datetime_range":
        return [_std(rule, "expect_column_values_to_be_between", c.name,
                     f"s.{_q(c.name)} < TIMESTAMP '0001-01-02' OR s.{_q(c.name)} >= TIMESTAMP '9999-12-31'",
                     column=c.name, min_value="0001-01-02", max_value="9999-12-31", strict_max=True)
                for c in primary.columns if c.kind == "datetime"]
    for code in dataset.codes:
        if name == f"code_{code.column.lower()}":
            trimmed = f"{code.column}__trimmed"
            spec = _std(rule, "expect_column_values_to_be_in_set", code.column,
                        f"s.{_q(code.column)} IS NOT NULL AND rtrim(s.{_q(code.column)}) NOT IN ("
                        + ", ".join(_lit(v) for v in code.allowed) + ")",
                        column=trimmed, value_set=list(code.allowed))
            return [_with_columns(spec, {trimmed: f"rtrim(s.{_q(code.column)})"})]
    for ref in dataset.references:
        if name == ref.rule:
            return [_custom(rule, REFERENCE_RESOLVES, ref.column, rule.bad_rows_where, primary.key)]
    raise ValueError(f"{dataset.name}: rule {name!r} has no expectation (add it to expectations.py)")


def _custom(rule: Rule, type_: str, subject: str, where: str, key: Sequence[str]) -> ExpectationSpec:
    return ExpectationSpec(f"{rule.name}:{subject}", rule.name, type_,
                           {"unexpected_rows_query": custom_query(where, key),
                            "mostly": _param(mostly_parameter(rule.name))},
                           rule.description, where, rule.severity)


def _with_columns(spec: ExpectationSpec, columns: Mapping[str, str]) -> ExpectationSpec:
    return ExpectationSpec(spec.key, spec.rule, spec.type, spec.kwargs, spec.description, spec.bad_rows_where,
                           spec.severity, dict(columns))


def _plausibility_specs(dataset: Dataset, check: Plausibility) -> list[ExpectationSpec]:
    """The standard expectations of a plausibility check (warn rules)."""
    rule = Rule(check.name, check.description, check.bad_rows_where, "", "warn", mostly=MOSTLY_PLAUSIBLE)
    if check.name == "implausible_date":
        return [_std(rule, "expect_column_values_to_be_between", c,
                     f"s.{_q(c)} < {{min_date}} OR s.{_q(c)} > {{max_date}}", column=c,
                     min_value=_param("min_date"), max_value=_param("max_date"))
                for c in check.columns]
    if check.name == "amount_size":
        return [_std(rule, "expect_column_values_to_be_between", c, f"abs(s.{_q(amount(c))}) > {{max_amount}}",
                     column=amount(c), min_value=_param("min_amount"), max_value=_param("max_amount"))
                for c in check.columns]
    if check.name == OFF_MASK:
        [column] = check.columns
        return [_std(rule, "expect_column_values_to_match_regex", column, check.bad_rows_where,
                     column=column, regex=_param("mask_regex"))]
    if check.name == "due_before_transaction":
        return [_std(rule, "expect_column_pair_values_a_to_be_greater_than_b", "DueDate>=TransactionDate",
                     check.bad_rows_where,
                     column_A="DueDate", column_B="TransactionDate", or_equal=True,
                     ignore_row_if="either_value_is_missing",
                     row_condition={"type": "comparison", "column": {"name": "TransactionType"}, "operator": "!=",
                                    "parameter": "BEGBAL"})]
    if check.name == "buckets_sum":
        *buckets, total = check.columns
        negated = f"{total}__negated"
        return [_with_columns(_std(rule, "expect_multicolumn_sum_to_equal", "+".join(check.columns),
                                   check.bad_rows_where, column_list=[*map(amount, buckets), negated], sum_total=0,
                                   ignore_row_if="any_value_is_missing"), {negated: f"-s.{_q(amount(total))}"})]
    raise ValueError(f"{dataset.name}: plausibility check {check.name!r} has no expectation"
                     " (add it to expectations.py)")


# --------------------------------------------------------------------------- suite JSON


def suite_json(dataset: Dataset) -> dict[str, Any]:
    """The data set's suite in GX's suite JSON shape, with ids derived from the names (stable diffs)."""
    specs = specs_for(dataset)
    expectations = []
    for spec in specs:
        meta = {"expectation": spec.key, "rule": spec.rule, "severity": spec.severity, "mostly": spec.mostly,
                "bad_rows_where": spec.bad_rows_where}
        expectations.append({
            "type": spec.type,
            "id": str(uuid.uuid5(_ID_NAMESPACE, f"{dataset.name}/{spec.key}")),
            "kwargs": dict(spec.kwargs),
            "description": spec.description,
            "severity": GX_SEVERITY[spec.severity],
            "meta": {META_KEY: meta},
        })
    batch_columns: dict[str, str] = {}
    for spec in specs:
        batch_columns.update(spec.batch_columns)
    return {
        "name": dataset.name,
        "id": str(uuid.uuid5(_ID_NAMESPACE, dataset.name)),
        "expectations": expectations,
        "meta": {
            "great_expectations_version": version("great_expectations"),
            META_KEY: {
                "dataset": dataset.name,
                "key": list(dataset.primary.key),
                "batch_columns": batch_columns,
                "parameters": ["max_amount", "min_amount", "min_date", "max_date", "mask_regex"],
                "mostly": {mostly_parameter(s.rule): s.mostly for s in specs},
                "generated_by": "python -m portal_sync.expectations --write",
            },
        },
        "notes": f"Generated from the declaration of {dataset.name} (portal_sync.datasets); do not edit by hand.",
    }


def _dumps(suite: Mapping[str, Any]) -> str:
    return json.dumps(suite, indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def suite_path(dataset: str) -> Path:
    return SUITES_DIR / f"{dataset}.json"


@cache
def stored_suite(dataset: str) -> dict[str, Any]:
    """The stored suite of a data set (read once per process)."""
    return json.loads(suite_path(dataset).read_text())


def stale_suites() -> list[str]:
    """Data sets whose stored suite differs from the one generated from the declarations."""
    stale = []
    for name, dataset in DATASETS.items():
        path = suite_path(name)
        if not path.exists() or path.read_text() != _dumps(suite_json(dataset)):
            stale.append(name)
    return stale


def write_suites() -> list[Path]:
    SUITES_DIR.mkdir(exist_ok=True)
    written = []
    for name, dataset in DATASETS.items():
        path = suite_path(name)
        path.write_text(_dumps(suite_json(dataset)))
        written.append(path)
    stored_suite.cache_clear()
    return written


@cache
def _default_mostly() -> dict[str, float]:
    """Every rule's default ``mostly`` (the same in every data set that has the rule)."""
    return {s.rule: s.mostly for ds in DATASETS.values() for s in specs_for(ds)}


def gx_parameters(parameters: Mapping[str, object], mostly: Mapping[str, float] | None = None,
                  ) -> dict[str, object]:
    """Suite parameters from a run's plausibility values (rules.plausibility_parameters) and its ``mostly``
    per rule (``rule -> share``; rules left out keep the stored suite's default)."""
    out: dict[str, object] = {k: v for k, v in parameters.items() if k in ("min_date", "max_date", "mask_regex")}
    shares = {**_default_mostly(), **(mostly or {})}
    out.update({mostly_parameter(rule): float(share) for rule, share in shares.items()})
    if "max_amount" in parameters:
        out["max_amount"] = float(str(parameters["max_amount"]))
        out["min_amount"] = -float(str(parameters["max_amount"]))
    return out


# --------------------------------------------------------------------------- custom classes (import GX)


@cache
def custom_classes() -> dict[str, type]:
    """Define (once) and return the named custom expectations by class name; imports GX."""
    from great_expectations.expectations import UnexpectedRowsExpectation
    from great_expectations.expectations.model_field_types import MostlyField

    from portal_sync.gx_query import SAMPLE_SIZE, UNEXPECTED_COUNT_COLUMN

    class _PortalSyncRowsExpectation(UnexpectedRowsExpectation):
        """Unexpected rows of the batch as our SQL defines them; keeps a sample of their keys even in the
        SUMMARY result format (the base class drops them there), and honours ``mostly`` against the
        batch's row count as GX's column expectations do. The count comes with the sample (the query is
        built ``counted``): one scan of the batch where the base class makes two."""

        mostly: MostlyField = 1
        metric_dependencies: ClassVar[tuple[str, ...]] = ("unexpected_rows_query.table", "table.row_count")
        success_keys: ClassVar[tuple[str, ...]] = ("unexpected_rows_query", "mostly")

        def _validate(self, metrics: dict, runtime_configuration: dict | None = None,
                      execution_engine: Any = None) -> dict:
            rows = metrics["unexpected_rows_query.table"] or []
            if rows and UNEXPECTED_COUNT_COLUMN not in rows[0]:
                raise ValueError(f"the unexpected_rows_query has no {UNEXPECTED_COUNT_COLUMN} column: the "
                                 "suite predates it (python -m portal_sync.expectations --write)")
            count = int(rows[0][UNEXPECTED_COUNT_COLUMN]) if rows else 0
            total = metrics["table.row_count"] or 0
            mostly = float(self._get_success_kwarg("mostly", 1.0))
            success = count == 0 or (total > 0 and (total - count) / total >= mostly)
            sample = [{k: v for k, v in row.items() if k != UNEXPECTED_COUNT_COLUMN} for row in rows[:SAMPLE_SIZE]]
            return {"success": success,
                    "result": {"observed_value": count, "element_count": total,
                               "details": {"unexpected_rows": sample}}}

    class ExpectStagedKeyToBeUnique(_PortalSyncRowsExpectation):
        description: str = ("the key is unique among ALL staged rows whose key was read exactly (a changed row "
                            "may repeat the key of an unchanged one)")

    class ExpectColumnValuesToBeExactMoney(_PortalSyncRowsExpectation):
        description: str = "a money value is an exact amount with at most two decimals inside numeric(12,2)"

    class ExpectReferenceToResolve(_PortalSyncRowsExpectation):
        description: str = "the column names a row of another staged extract whose key was read exactly"

    classes = {c.__name__: c for c in (ExpectStagedKeyToBeUnique, ExpectColumnValuesToBeExactMoney,
                                       ExpectReferenceToResolve)}
    for cls in (_PortalSyncRowsExpectation, *classes.values()):  # annotations are text here (__future__)
        cls.update_forward_refs(MostlyField=MostlyField)
    return classes


def __getattr__(name: str) -> type:
    if name in _CUSTOM_CLASSES:
        return custom_classes()[name]
    raise AttributeError(name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m portal_sync.expectations", description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true", help="regenerate suites/<dataset>.json")
    group.add_argument("--check", action="store_true", help="exit 1 when a stored suite is stale")
    args = parser.parse_args(argv)
    if args.write:
        for path in write_suites():
            print(path)
        return 0
    stale = stale_suites()
    for name in stale:
        print(f"stale: {suite_path(name)} (run python -m portal_sync.expectations --write)", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
