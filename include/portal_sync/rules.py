"""Data-quality checks generated from the data-set declarations (validate.py runs them).

Rules are generated, not written per data set: a declared key gives the key rules, a
declared reference gives an orphan rule, a money column gives the exactness rule, a
code set gives the code rule. Row rules are SQL predicates over a staged row ``s``
(other staging tables of the run as ``{extract_name}``); table checks judge the staged
table as a whole. The community's configuration (config.Quality) sets severities and
thresholds; this module reads it through the ``QualitySettings`` protocol and never imports
it, so the configuration can check its severity keys against ``known_checks``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Literal, Protocol

from portal_sync.datasets import DATASETS, DEFAULT_MAX_AMOUNT, Dataset, SourceColumn
from portal_sync.extract import ROW_ID, UNREADABLE
from portal_sync.sqltext import quote_pg_ident as _q
from portal_sync.sqltext import sql_literal as _lit

Severity = Literal["refuse", "warn", "ignore"]

KEY_UNIQUE = "key_unique"


class QualitySettings(Protocol):
    """What the checks read of a community's data-quality settings (config.Quality)."""

    max_amount: float
    snapshot_change_share: float
    snapshot_change_min_rows: int
    max_window_rows: int

    def severity_of(self, dataset: str, check: str, default: str) -> str: ...


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    bad_rows_where: str  # over alias ``s``; staging tables of the run as {extract_name}
    reason: str  # SQL text expression over ``s`` naming the offending value
    severity: Severity = "refuse"


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
    rules = _integrity_rules(dataset)
    max_amount = quality.max_amount if quality is not None else DEFAULT_MAX_AMOUNT
    literals = {
        "{max_amount}": f"{Decimal(str(max_amount)):f}",
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
    if quality is None:
        return rules
    return [
        Rule(r.name, r.description, r.bad_rows_where, r.reason,
             quality.severity_of(dataset.name, r.name, r.severity))  # type: ignore[arg-type]
        for r in rules
    ]


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
            bad=lambda c: f"s.{_q(c.name)} IS NOT NULL AND NOT sync.is_money(s.{_q(c.name)})",
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


