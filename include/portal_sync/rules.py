"""Data-quality checks generated from the data-set declarations (validate.py runs them).

Rules are generated, not written per data set: a declared key gives the key rules, a
declared reference gives an orphan rule, a money column gives the exactness rule, a
code set gives the code rule. Row rules are SQL predicates over a staged row ``s``
(other staging tables of the run as ``{extract_name}``); table checks judge the staged
table as a whole. The community's configuration (config.Quality) sets severities, ``mostly``
and thresholds; this module reads it through the ``QualitySettings`` protocol and never imports
it, so the configuration can check its severity keys against ``known_checks``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Literal, Protocol

from portal_sync.datasets import DATASETS, DEFAULT_MAX_AMOUNT, Dataset, SourceColumn, amount
from portal_sync.names import ROW_ID, UNREADABLE
from portal_sync.sqltext import quote_pg_ident as _q
from portal_sync.sqltext import sql_literal as _lit

Severity = Literal["refuse", "warn", "ignore"]

KEY_UNIQUE = "key_unique"
# The share of rows that must pass a row check for Great Expectations to call it a success, unless the
# community tunes it (quality.mostly): integrity checks admit no bad row, plausibility checks 1 in 100.
MOSTLY_INTEGRITY = 1.0
MOSTLY_PLAUSIBLE = 0.99


class QualitySettings(Protocol):
    """What the checks read of a community's data-quality settings (config.Quality)."""

    max_amount: float
    snapshot_change_share: float
    snapshot_change_min_rows: int
    max_window_rows: int

    def severity_of(self, dataset: str, check: str, default: str) -> str: ...

    def mostly_of(self, dataset: str, check: str, default: float) -> float: ...


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    bad_rows_where: str  # over alias ``s``; staging tables of the run as {extract_name}
    reason: str  # SQL text expression over ``s`` naming the offending value
    severity: Severity = "refuse"
    # The values the plausibility placeholders took (``plausibility_parameters``): Great Expectations
    # gets them as suite parameters of the stored suites, our SQL as literals. Not part of equality.
    parameters: tuple[tuple[str, object], ...] = field(default=(), compare=False)
    # GX's ``mostly`` this run: its success flag and the report's pass/fail, never what is refused.
    mostly: float = MOSTLY_INTEGRITY


def plausibility_parameters(quality: QualitySettings | None = None, *, mask: str | None = None,
                            today: date | None = None) -> dict[str, object]:
    """The values of ``{min_date}``, ``{max_date}``, ``{max_amount}`` and ``{mask_regex}`` for a run
    (``mask_regex`` only when SM_Organization has a mask)."""
    max_amount = quality.max_amount if quality is not None else DEFAULT_MAX_AMOUNT
    values: dict[str, object] = {
        "min_date": "1950-01-01",
        "max_date": f"{(today or date.today()).replace(day=1) + timedelta(days=2 * 366):%Y-%m-%d}",
        "max_amount": f"{Decimal(str(max_amount)):f}",
    }
    if mask:
        values["mask_regex"] = mask_regex(mask)
    return values


def fill_placeholders(where: str, parameters: Mapping[str, object]) -> str:
    """SQL with the plausibility placeholders replaced by literals of ``parameters``."""
    literals = {
        "{min_date}": f"DATE '{parameters['min_date']}'" if "min_date" in parameters else None,
        "{max_date}": f"DATE '{parameters['max_date']}'" if "max_date" in parameters else None,
        "{max_amount}": str(parameters["max_amount"]) if "max_amount" in parameters else None,
        "{mask_regex}": _lit(str(parameters["mask_regex"])) if "mask_regex" in parameters else None,
    }
    for placeholder, value in literals.items():
        if value is not None:
            where = where.replace(placeholder, value)
    return where


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


def rules_for(dataset: Dataset, quality: QualitySettings | None = None, *, mask: str | None = None,
              today: date | None = None) -> list[Rule]:
    """Integrity rules (refuse by default: such a row has no correct portal form) and plausibility
    rules (warn by default: the row publishes, analysts see it), with the community's severities."""
    parameters = plausibility_parameters(quality, mask=mask, today=today)
    carried = tuple(parameters.items())
    rules = [replace(r, parameters=carried) for r in _integrity_rules(dataset)]
    for check in dataset.plausibility:
        if "{mask_regex}" in check.bad_rows_where and "mask_regex" not in parameters:
            continue  # no mask in SM_Organization: nothing to compare with
        where = fill_placeholders(check.bad_rows_where, parameters)
        reason = (_off_mask_reason(check.columns[0], str(mask)) if check.name == OFF_MASK
                  else _reason(check.description, *check.columns))
        rules.append(Rule(check.name, check.description, f"({where})", reason, severity="warn", parameters=carried,
                          mostly=MOSTLY_PLAUSIBLE))
    if quality is None:
        return rules
    # A settings object without ``mostly_of`` (a stand-in of the thresholds only) keeps the defaults.
    mostly_of = getattr(quality, "mostly_of", None)
    return [
        replace(r, severity=quality.severity_of(dataset.name, r.name, r.severity),  # type: ignore[arg-type]
                mostly=mostly_of(dataset.name, r.name, r.mostly) if mostly_of else r.mostly)
        for r in rules
    ]


OFF_MASK = "number_off_mask"


def _off_mask_reason(column: str, mask: str) -> str:
    """What is wrong with a number off the mask: the value, and that it does not match the mask."""
    return (f"concat({_lit(column + ' ')}, {_value_text(column)},"
            f" {_lit(' does not match the community' + chr(39) + 's customer-number mask ' + mask)})")


def mask_regex(mask: str) -> str:
    """CustomerNumberMask as an anchored regex: ``#`` a digit, anything else literal."""
    return "^" + "".join("[0-9]" if ch == "#" else ("\\" + ch if not ch.isalnum() else ch) for ch in mask) + "$"


def _per_column_rule(name: str, description: str, columns: Sequence[SourceColumn], *,
                     bad: Callable[[SourceColumn], str], detail: Callable[[SourceColumn], str], prefix: str) -> Rule:
    """A rule over several columns: the row fails when any column is bad, and the reason names each bad one."""
    return Rule(
        name, description,
        " OR ".join(f"({bad(c)})" for c in columns),
        f"concat({_lit(prefix)}, " + ", ".join(f"CASE WHEN {bad(c)} THEN {detail(c)} END" for c in columns) + ")",
    )


def money_not_exact(column: str) -> str:
    """A staged money text without a numeric image (``datasets.amount``): not exact money."""
    return f"s.{_q(column)} IS NOT NULL AND s.{_q(amount(column))} IS NULL"


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
        rules.append(_per_column_rule(
            "money_exact", "money is an exact amount with at most two decimals inside numeric(12,2)", money,
            bad=lambda c: money_not_exact(c.name),
            detail=lambda c: f"concat(' ', {_lit(c.name)}, '=', s.{_q(c.name)})",
            prefix="not an exact 2-place amount:",
        ))
    sized = [c for c in primary.columns if c.kind in ("text", "char") and c.length]
    if sized:
        rules.append(_per_column_rule(
            "text_length", "text fits its declared length (a longer value would have to be cut to publish)", sized,
            bad=lambda c: f"char_length(s.{_q(c.name)}) > {c.length}",
            detail=lambda c: (f"concat(' ', {_lit(c.name)}, ' has ', char_length(s.{_q(c.name)}),"
                              f" ' characters (declared {c.length}): ', left(s.{_q(c.name)}, 30), '...')"),
            prefix="longer than declared:",
        ))
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


def table_checks_for(dataset: Dataset, quality: QualitySettings, *, mode: str,
                     previous_rows: int | None) -> list[TableCheck]:
    """Checks of the staged table as a whole; a failing one stops the data set (severity fail)."""
    checks = [TableCheck(
        "staged_columns", "the staged columns are exactly the declared allow-list (no sensitive column can slip in)",
        quality.severity_of(dataset.name, "staged_columns", "fail"),
        columns=(ROW_ID, *(c.name for c in dataset.primary.columns), UNREADABLE, *dataset.primary.amount_columns),
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


