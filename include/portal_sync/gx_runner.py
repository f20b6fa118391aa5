"""Run data-quality rules on a PostgreSQL staging table with Great Expectations 1.x.

Each rule is a SQL predicate that is true for a BAD row of the staging table (alias ``s``). All
rules go into one expectation suite and are validated as ONE Great Expectations (GX) validation
of the whole table through a GX PostgreSQL data source, so every check runs as SQL inside
PostgreSQL; the table is never pulled into pandas.

Behaviour of GX 1.24 this module relies on (read in its source and checked by the integration
tests in ``tests/integration/test_gx_runner.py``):

* ``UnexpectedRowsExpectation`` runs its query twice: wrapped in ``SELECT COUNT(*) FROM (...)``
  (the exact ``observed_value``, never capped) and as is, keeping the first 200 rows
  (``result.details.unexpected_rows`` with ``result_format="COMPLETE"``).
* ``{batch}`` becomes ``(SELECT * FROM schema.table WHERE true) AS subselect``, but when the query
  contains the word JOIN anywhere outside quotes and comments (also inside a rule's subquery)
  it becomes the bare ``(...)`` and the query must alias it itself. PostgreSQL 15 rejects an
  unaliased derived table, so the query built here always contains a JOIN of its own
  (``CROSS JOIN (SELECT 1)``, one row, a no-op) and aliases ``{batch} AS s``: one shape whatever
  the rule text says.
* The query goes through ``str.format`` (literal braces must be doubled) and then through
  SQLAlchemy ``text()`` (``:word`` is a bind parameter, even inside a string literal).
* A broken check does not raise: its result has ``success=False``, an empty ``result`` and an
  ``exception_info`` keyed by metric id. This module turns that into :class:`GxCheckError`.
* ``gx.get_context()`` sets a process-wide singleton; a fresh ephemeral context per call keeps
  repeated calls independent (the previous context stops being the current one).

``great_expectations`` is imported inside :func:`run_rules` only: importing it costs seconds of
CPU, and this module is imported while Airflow parses DAG files.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "GxCheckError", "GxRule", "GxRuleResult", "GxTableCheck", "GxTableResult", "build_unexpected_rows_query",
    "run_rules",
]

SAMPLE_SIZE = 20
"""How many bad ``_row_id`` values a result keeps (GX itself fetches up to 200 bad rows)."""

ROW_ID_COLUMN = "_row_id"

_RULE_NAME_RE = re.compile(r"[a-z0-9_]+")
# GX lower-cases the schema name unless it is quoted, and then mangles the quotes, so the schema
# must be lower case (SQLAlchemy quotes it when needed, e.g. a leading digit). GX never quotes an
# unquoted table name, so the table is always passed quoted (a leading digit or capitals work).
_SCHEMA_RE = re.compile(r"[a-z0-9_]{1,63}")
_TABLE_RE = re.compile(r"[A-Za-z0-9_]{1,63}")
_META_KEY = "portal_sync_rule"
# Tags the extra row-count expectation; "#" cannot occur in a rule name, so no collision.
_ROW_COUNT_TAG = "#row_count"
_GX_LOCK = threading.Lock()
_DATASOURCE_NAME = "portal_sync_pg"
_ASSET_NAME = "staging_table"
_BATCH_DEFINITION_NAME = "whole_table"

# SQLAlchemy text() treats ``:word`` as a bind parameter unless preceded by ``:``, a word character
# or a backslash, and it strips the backslash from ``\:word`` before sending the SQL (see
# sqlalchemy.sql.elements.TextClause._bind_params_regex and compiler.BIND_PARAMS_ESC).
_TEXT_BIND_RE = re.compile(r"(?<![:\w\\]):(?=\w+(?![:\w]))")
_TEXT_ESCAPED_BIND_RE = re.compile(r"\\(?=:\w*(?![:\w]))")


@dataclass(frozen=True)
class GxRule:
    """One data-quality rule: ``bad_rows_where`` is true for a bad row of the table aliased ``s``."""

    name: str
    description: str
    bad_rows_where: str


@dataclass(frozen=True)
class GxRuleResult:
    """Outcome of one rule; ``unexpected_count`` is exact, ``raw`` is GX's result as a JSON dict."""

    name: str
    success: bool
    unexpected_count: int
    element_count: int
    sample_row_ids: list[int]
    raw: dict


@dataclass(frozen=True)
class GxTableCheck:
    """A table-level check: row count within bounds, and/or exactly these columns."""

    name: str
    description: str
    min_rows: int | None = None
    max_rows: int | None = None
    columns: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        has_count = self.min_rows is not None or self.max_rows is not None
        if has_count == (self.columns is not None):
            raise ValueError(f"table check {self.name!r}: give a row-count range or a column set, not both")


@dataclass(frozen=True)
class GxTableResult:
    name: str
    success: bool
    observed: Any
    raw: dict


class GxCheckError(RuntimeError):
    """A check itself failed (bad SQL, missing column...): never to be read as pass or as bad data."""


def build_unexpected_rows_query(bad_rows_where: str) -> str:
    """Return the ``unexpected_rows_query`` template selecting the ``_row_id`` of bad rows.

    Only ``_row_id`` is selected: GX fetches up to 200 bad rows for the report, and one bigint
    per row keeps that cheap. The JOIN with a one-row constant makes GX leave ``{batch}``
    unaliased in every case (see the module docstring), so ``{batch} AS s`` is always valid.
    The predicate sits on its own lines inside parentheses so that a trailing ``--`` comment or
    an OR in it cannot escape the WHERE clause.
    """
    predicate = _escape_for_text_clause(_escape_format_braces(bad_rows_where.strip()))
    return (
        f'SELECT s."{ROW_ID_COLUMN}" FROM {{batch}} AS s\n'
        "CROSS JOIN (SELECT 1) AS portal_sync_join_guard\n"
        f"WHERE (\n{predicate}\n)"
    )


def _escape_format_braces(sql: str) -> str:
    """Double braces: GX fills ``{batch}`` with ``str.format``, so a regex ``{1,10}`` would break."""
    return sql.replace("{", "{{").replace("}", "}}")


def _escape_for_text_clause(sql: str) -> str:
    """Escape colons so that SQLAlchemy ``text()`` sends the predicate unchanged.

    ``:word`` would become a bind parameter (``LIKE '%:x%'`` fails with "A value is required for
    bind parameter"); ``\\:word`` would lose its backslash. Both get one more backslash, which
    SQLAlchemy removes again. ``::cast`` and ``12:30`` are left alone, as SQLAlchemy does.
    """
    sql = _TEXT_ESCAPED_BIND_RE.sub(r"\\\\", sql)
    return _TEXT_BIND_RE.sub(r"\\:", sql)


def _sqlalchemy_url(pg_url: str) -> str:
    """Turn a libpq URI into a SQLAlchemy URL, pinning psycopg2 unless a driver is named."""
    scheme, sep, rest = pg_url.partition("://")
    if not sep:
        raise ValueError(f"pg_url is not a URI: {pg_url!r}")
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg2://{rest}"
    if scheme.startswith("postgresql+"):
        return pg_url
    raise ValueError(f"pg_url must be a postgresql:// URI, got scheme {scheme!r}")


def _validate_inputs(schema: str, table: str, rules: Sequence[GxRule | GxTableCheck]) -> None:
    """Reject bad names early: results are matched to rules by name."""
    if not _SCHEMA_RE.fullmatch(schema):
        raise ValueError(f"schema must match [a-z0-9_]{{1,63}}: {schema!r}")
    if not _TABLE_RE.fullmatch(table):
        raise ValueError(f"table must match [A-Za-z0-9_]{{1,63}}: {table!r}")
    seen: set[str] = set()
    for rule in rules:
        if not _RULE_NAME_RE.fullmatch(rule.name):
            raise ValueError(f"rule name must match [a-z0-9_]+: {rule.name!r}")
        if rule.name in seen:
            raise ValueError(f"duplicate rule name: {rule.name!r}")
        if isinstance(rule, GxRule) and not rule.bad_rows_where.strip():
            raise ValueError(f"rule {rule.name!r} has an empty bad_rows_where")
        seen.add(rule.name)


def _exception_messages(exception_info: Any) -> list[str]:
    """Messages of the exceptions in a GX ``exception_info``, or ``[]`` if nothing raised.

    GX 1.24 uses two shapes: ``{"raised_exception": False, ...}`` for a clean result and
    ``{"<metric id>": {"raised_exception": True, "exception_message": ...}, ...}`` for a broken
    one. Anything unrecognised that is not an explicit "nothing raised" counts as broken.
    """
    if not exception_info:
        return []
    if not isinstance(exception_info, Mapping):
        return [f"unrecognised exception_info: {exception_info!r}"]
    if "raised_exception" in exception_info:
        entries: list[Any] = [exception_info]
    else:
        entries = list(exception_info.values())
    messages: list[str] = []
    first_lines: set[str] = set()
    for entry in entries:
        if not isinstance(entry, Mapping):
            messages.append(f"unrecognised exception_info entry: {entry!r}")
        elif entry.get("raised_exception"):
            message = str(entry.get("exception_message") or "exception without a message")
            # The row-count and the row-fetch metric of one rule fail alike; report that once.
            first_line = message.partition("\n")[0]
            if first_line not in first_lines:
                first_lines.add(first_line)
                messages.append(message)
    return messages


def _sample_row_ids(raw: Mapping[str, Any]) -> list[int]:
    """The smallest ``SAMPLE_SIZE`` ids among the (at most 200) bad rows GX fetched."""
    rows = ((raw.get("result") or {}).get("details") or {}).get("unexpected_rows") or []
    ids = {int(row[ROW_ID_COLUMN]) for row in rows if row.get(ROW_ID_COLUMN) is not None}
    return sorted(ids)[:SAMPLE_SIZE]


def _observed_int(raw: Mapping[str, Any], what: str) -> int:
    """The integer ``observed_value`` of a result; a missing one is a broken check."""
    value = (raw.get("result") or {}).get("observed_value")
    if isinstance(value, bool) or not isinstance(value, int):
        raise GxCheckError(f"GX gave no integer observed_value for {what}: {value!r}")
    return value


def run_rules(pg_url: str, schema: str, table: str, rules: Sequence[GxRule], *, suite_name: str,
              table_checks: Sequence[GxTableCheck] = (), table_results: list[GxTableResult] | None = None,
              ) -> list[GxRuleResult]:
    """Validate ``schema.table`` against ``rules`` as one GX validation run inside PostgreSQL.

    ``pg_url`` is a libpq URI (``postgresql://user@host:port/db``). The table needs a unique
    bigint ``_row_id`` column. Results come back in the order of ``rules``. Raises
    :class:`GxCheckError` if GX reports an exception for any rule (listing every broken rule),
    and ``ValueError`` for malformed input (``schema`` must match ``[a-z0-9_]{1,63}``, ``table``
    ``[A-Za-z0-9_]{1,63}``). Errors GX raises itself while setting up propagate unchanged: an unreachable
    server or a missing table give GX's ``TestConnectionError`` (a ``ConnectionError``).
    """
    _validate_inputs(schema, table, [*rules, *table_checks])
    if not rules and not table_checks:
        return []

    # GX's context is a process-wide singleton and warnings.catch_warnings is not thread-safe:
    # data sets validated in parallel threads (pipeline.run_sync) take turns here.
    with _GX_LOCK:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        # Progress bars would write to the task log's stderr for every metric batch.
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)

        datasource: Any = None
        try:
            datasource = context.data_sources.add_postgres(
                _DATASOURCE_NAME, connection_string=_sqlalchemy_url(pg_url), create_temp_table=False
            )
            with warnings.catch_warnings():
                # Deprecated since GX 1.14 in favour of a schema in the data source's connection
                # configuration, which the PostgreSQL data source of 1.24 does not offer (only a
                # search_path in the URL, which would also change how the rules' SQL resolves names).
                warnings.filterwarnings("ignore", message="`schema_name` is deprecated", category=DeprecationWarning)
                asset = datasource.add_table_asset(_ASSET_NAME, table_name=f'"{table}"', schema_name=schema)
            batch_definition = asset.add_batch_definition_whole_table(_BATCH_DEFINITION_NAME)

            suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
            # element_count comes from GX too, so that everything is one validation of one batch.
            suite.add_expectation(
                gx.expectations.ExpectTableRowCountToBeBetween(
                    min_value=0, max_value=None, meta={_META_KEY: _ROW_COUNT_TAG}
                )
            )
            for rule in rules:
                suite.add_expectation(
                    gx.expectations.UnexpectedRowsExpectation(
                        unexpected_rows_query=build_unexpected_rows_query(rule.bad_rows_where),
                        description=rule.description,
                        meta={_META_KEY: rule.name},
                    )
                )
            for check in table_checks:
                if check.min_rows is not None or check.max_rows is not None:
                    suite.add_expectation(
                        gx.expectations.ExpectTableRowCountToBeBetween(
                            min_value=check.min_rows, max_value=check.max_rows, description=check.description,
                            meta={_META_KEY: check.name},
                        )
                    )
                if check.columns is not None:
                    suite.add_expectation(
                        gx.expectations.ExpectTableColumnsToMatchSet(
                            column_set=list(check.columns), exact_match=True, description=check.description,
                            meta={_META_KEY: check.name},
                        )
                    )
            validation = context.validation_definitions.add(
                gx.ValidationDefinition(name=f"{suite_name}__validation", data=batch_definition, suite=suite)
            )
            suite_result = validation.run(result_format="COMPLETE")
        finally:
            if datasource is not None:
                _dispose_engines(datasource)

    raw_by_tag: dict[str, dict] = {}
    for result in suite_result.results:
        raw = result.to_json_dict()
        tag = (raw.get("expectation_config") or {}).get("meta", {}).get(_META_KEY)
        if isinstance(tag, str):
            raw_by_tag[tag] = raw

    broken: list[str] = []
    for tag in [_ROW_COUNT_TAG, *(rule.name for rule in rules), *(check.name for check in table_checks)]:
        label = "the row count" if tag == _ROW_COUNT_TAG else f"rule {tag!r}"
        raw = raw_by_tag.get(tag)
        if raw is None:
            broken.append(f"{label}: GX returned no result")
            continue
        for message in _exception_messages(raw.get("exception_info")):
            broken.append(f"{label}: {message}")
    if broken:
        raise GxCheckError(f"GX check(s) on {schema}.{table} (suite {suite_name!r}) raised:\n" + "\n".join(broken))

    if table_results is not None:
        for check in table_checks:
            raw = raw_by_tag[check.name]
            result = raw.get("result") or {}
            table_results.append(GxTableResult(check.name, bool(raw.get("success")), result.get("observed_value"), raw))
    element_count = _observed_int(raw_by_tag[_ROW_COUNT_TAG], "the row count")
    results: list[GxRuleResult] = []
    for rule in rules:
        raw = raw_by_tag[rule.name]
        unexpected_count = _observed_int(raw, f"rule {rule.name!r}")
        success = raw.get("success")
        if not isinstance(success, bool) or success != (unexpected_count == 0):
            raise GxCheckError(f"rule {rule.name!r}: GX success={success!r} disagrees with {unexpected_count} bad rows")
        results.append(
            GxRuleResult(
                name=rule.name,
                success=success,
                unexpected_count=unexpected_count,
                element_count=element_count,
                sample_row_ids=_sample_row_ids(raw),
                raw=raw,
            )
        )
    return results


def _dispose_engines(datasource: Any) -> None:
    """Close the pooled connections of both SQLAlchemy engines GX made (data source, execution).

    A fresh context per call means fresh engines per call; without this every call would leave
    idle connections open until garbage collection.
    """
    engines = [getattr(datasource, "_engine", None)]
    execution_engine = getattr(datasource, "_execution_engine", None)
    if execution_engine is not None:
        engines.append(getattr(execution_engine, "engine", None))
    for engine in engines:
        dispose = getattr(engine, "dispose", None)
        if callable(dispose):
            dispose()
