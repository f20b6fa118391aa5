"""Run data-quality rules on a PostgreSQL staging table with Great Expectations 1.x.

Each rule is a SQL predicate that is true for a BAD row of the staging table (alias ``s``). All
rules go into one expectation suite and are validated as ONE Great Expectations (GX) validation
of the whole table through a GX PostgreSQL data source, so every check runs as SQL inside
PostgreSQL; the table is never pulled into pandas.

Behaviour of GX 1.24 this module relies on (read in its source and checked by the integration
tests in ``tests/integration/test_gx_runner.py``):

* ``UnexpectedRowsExpectation`` runs its query twice: wrapped in ``SELECT COUNT(*) FROM (...)``
  (the exact ``observed_value``, never capped) and as is, keeping the first 200 rows
  (``result.details.unexpected_rows`` with ``result_format="COMPLETE"``). Our custom expectations
  (expectations.py) scan once: their query is built ``counted``.
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
* ``gx.get_context()`` sets a process-wide singleton. One ephemeral context and one data source
  per database are made on first use and reused by every later call in the process (data sets
  and runs); each call adds its own asset, suite and validation definition and removes them
  afterwards, and calls take turns (a lock: the context is not thread-safe).

``great_expectations`` is imported on the first validation only (once per process): importing it
costs seconds of CPU, and this module is imported while Airflow parses DAG files.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from portal_sync.gx_query import ROW_ID_COLUMN, SAMPLE_SIZE, build_unexpected_rows_query

__all__ = [
    "GxCheckError", "GxExpectationResult", "GxRule", "GxRuleResult", "GxSuiteOutcome", "GxTableCheck",
    "GxTableResult", "build_unexpected_rows_query", "run_rules", "validate_suite",
]

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
_BATCH_DEFINITION_NAME = "whole_table"
_NAMES = itertools.count(1)  # names of the per-call assets, suites and validation definitions
_STATE: dict[str, Any] = {}  # "gx", "context", and "ds:<url digest>" -> data source: made once per process
_RESULT_FORMAT_SUMMARY = "SUMMARY"
# A batch query goes through SQLAlchemy text() twice (as the asset and, compiled, inside a custom
# query): a bind-like ``:word`` or a ``%`` would not survive both, so neither may occur in it.
_UNSAFE_BATCH_SQL_RE = re.compile(r"%|(?<![:\w]):\w")



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


@dataclass(frozen=True)
class GxExpectationResult:
    """One expectation's result, flattened for storage (store/gx_results.py) and the report."""

    key: str  # "<rule>:<subject>" from the suite, or "<check>" for a table check
    rule: str
    type: str
    kwargs: dict
    success: bool
    observed_value: Any
    element_count: int | None
    unexpected_count: int | None  # rows GX counted as unexpected (None: a table expectation)
    unexpected_percent: float | None
    sample: list[dict]  # ``_row_id`` and key of some failing rows (at most SAMPLE_SIZE)
    severity: str  # ours: refuse | warn | fail
    mostly: float | None
    description: str
    kind: str  # row | table
    raw: dict


@dataclass(frozen=True)
class GxSuiteOutcome:
    """A data set's validation: every expectation's result, the rows validated and GX's own JSON."""

    results: list[GxExpectationResult]
    element_count: int
    result_json: dict

    def by_key(self) -> dict[str, GxExpectationResult]:
        return {r.key: r for r in self.results}


def _gx() -> tuple[Any, Any]:
    """GX and the process's one ephemeral context, made on first use (caller holds ``_GX_LOCK``)."""
    if "context" not in _STATE:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        from portal_sync.expectations import custom_classes

        context = gx.get_context(mode="ephemeral")
        # Progress bars would write to the task log's stderr for every metric batch.
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        custom_classes()  # registers the named custom expectations the stored suites use
        _STATE.update(gx=gx, context=context)
    gx, context = _STATE["gx"], _STATE["context"]
    from great_expectations.data_context.data_context.context_factory import project_manager

    project_manager.set_project(context)  # ours is the current context even if someone made another
    return gx, context


def _datasource(context: Any, pg_url: str) -> Any:
    """The process's data source for this database (caller holds ``_GX_LOCK``)."""
    name = "pg_" + hashlib.sha256(pg_url.encode()).hexdigest()[:16]
    if f"ds:{name}" not in _STATE:
        _STATE[f"ds:{name}"] = context.data_sources.add_postgres(
            name, connection_string=_sqlalchemy_url(pg_url), create_temp_table=False)
    return _STATE[f"ds:{name}"]


def _table_asset(datasource: Any, name: str, schema: str, table: str) -> Any:
    with warnings.catch_warnings():
        # Deprecated since GX 1.14 in favour of a schema in the data source's connection
        # configuration, which the PostgreSQL data source of 1.24 does not offer (only a
        # search_path in the URL, which would also change how the rules' SQL resolves names).
        warnings.filterwarnings("ignore", message="`schema_name` is deprecated", category=DeprecationWarning)
        return datasource.add_table_asset(name, table_name=f'"{table}"', schema_name=schema)


def _run_validation(gx: Any, context: Any, datasource: Any, asset: Any, expectations: Sequence[Any],
                    result_format: Any, parameters: Mapping[str, Any] | None) -> Any:
    """One validation of one batch; the asset, suite and validation definition are removed afterwards."""
    name = asset.name
    _forget_quoted_identifiers(datasource)
    try:
        batch_definition = asset.add_batch_definition_whole_table(_BATCH_DEFINITION_NAME)
        suite = context.suites.add(gx.ExpectationSuite(name=name))
        for expectation in expectations:
            suite.add_expectation(expectation)
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch_definition, suite=suite))
        try:
            return validation.run(result_format=result_format, expectation_parameters=dict(parameters or {}))
        finally:
            context.validation_definitions.delete(name)
            context.suites.delete(name)
    finally:
        if any(a.name == name for a in datasource.assets):
            datasource.delete_asset(name)


def _forget_quoted_identifiers(datasource: Any) -> None:
    """Empty the SQLAlchemy dialects' cache of quoted identifiers before a validation.

    GX names columns with its case-insensitive string class; the cache, keyed by name, then answers
    a later ``description`` with ``"Description"`` (a staged column), and SQLAlchemy's own catalogue
    query (``pg_description.description``) breaks: the column reflection of a table check fails and
    GX falls back to an unqualified table name. A fresh engine per call hid this; a reused one must
    forget the names between validations.
    """
    engines = [getattr(datasource, "_engine", None)]
    execution_engine = getattr(datasource, "_execution_engine", None)
    if execution_engine is not None:
        engines.append(getattr(execution_engine, "engine", None))
    for engine in engines:
        strings = getattr(getattr(getattr(engine, "dialect", None), "identifier_preparer", None), "_strings", None)
        if isinstance(strings, dict):
            strings.clear()


def _results_by_tag(suite_result: Any) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for result in suite_result.results:
        raw = result.to_json_dict()
        tag = ((raw.get("expectation_config") or {}).get("meta") or {}).get(_META_KEY)
        if isinstance(tag, str):
            out[tag] = raw
    return out


def _raise_broken(raw_by_tag: Mapping[str, dict], tags: Sequence[str], where: str) -> None:
    broken: list[str] = []
    for tag in tags:
        label = "the row count" if tag == _ROW_COUNT_TAG else f"rule {tag!r}"
        raw = raw_by_tag.get(tag)
        if raw is None:
            broken.append(f"{label}: GX returned no result")
            continue
        for message in _exception_messages(raw.get("exception_info")):
            broken.append(f"{label}: {message}")
    if broken:
        raise GxCheckError(f"GX check(s) on {where} raised:\n" + "\n".join(broken))


def run_rules(pg_url: str, schema: str, table: str, rules: Sequence[GxRule], *, suite_name: str,
              table_checks: Sequence[GxTableCheck] = (), table_results: list[GxTableResult] | None = None,
              ) -> list[GxRuleResult]:
    """Validate ``schema.table`` against ad-hoc SQL ``rules`` as one GX validation inside PostgreSQL.

    ``pg_url`` is a libpq URI (``postgresql://user@host:port/db``). The table needs a unique
    bigint ``_row_id`` column. Results come back in the order of ``rules``. Raises
    :class:`GxCheckError` if GX reports an exception for any rule (listing every broken rule),
    and ``ValueError`` for malformed input (``schema`` must match ``[a-z0-9_]{1,63}``, ``table``
    ``[A-Za-z0-9_]{1,63}``). Errors GX raises itself while setting up propagate unchanged: an unreachable
    server or a missing table give GX's ``TestConnectionError`` (a ``ConnectionError``).
    The data sets' own checks run from their stored suites (:func:`validate_suite`).
    """
    _validate_inputs(schema, table, [*rules, *table_checks])
    if not rules and not table_checks:
        return []

    # The context is process-wide and warnings.catch_warnings is not thread-safe: data sets
    # validated in parallel threads (pipeline.run_sync) take turns here.
    with _GX_LOCK:
        gx, context = _gx()
        datasource = _datasource(context, pg_url)
        try:
            expectations = [gx.expectations.ExpectTableRowCountToBeBetween(
                min_value=0, max_value=None, meta={_META_KEY: _ROW_COUNT_TAG})]
            for rule in rules:
                expectations.append(gx.expectations.UnexpectedRowsExpectation(
                    unexpected_rows_query=build_unexpected_rows_query(rule.bad_rows_where),
                    description=rule.description, meta={_META_KEY: rule.name}))
            expectations += _table_expectations(gx, table_checks)
            asset = _table_asset(datasource, f"{suite_name}__{next(_NAMES)}", schema, table)
            suite_result = _run_validation(gx, context, datasource, asset, expectations, "COMPLETE", None)
        finally:
            _dispose_engines(datasource)

    raw_by_tag = _results_by_tag(suite_result)
    _raise_broken(raw_by_tag, [_ROW_COUNT_TAG, *(r.name for r in rules), *(c.name for c in table_checks)],
                  f"{schema}.{table} (suite {suite_name!r})")

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


def _table_expectations(gx: Any, table_checks: Sequence[GxTableCheck]) -> list[Any]:
    out = []
    for check in table_checks:
        if check.min_rows is not None or check.max_rows is not None:
            out.append(gx.expectations.ExpectTableRowCountToBeBetween(
                min_value=check.min_rows, max_value=check.max_rows, description=check.description,
                meta={_META_KEY: check.name}))
        if check.columns is not None:
            out.append(gx.expectations.ExpectTableColumnsToMatchSet(
                column_set=list(check.columns), exact_match=True, description=check.description,
                meta={_META_KEY: check.name}))
    return out


def batch_query(schema: str, table: str, batch_columns: Mapping[str, str], rows_where: str | None) -> str:
    """The batch GX validates: the staged rows (only those ``rows_where`` selects, over alias ``s``)
    with the derived columns the suite's expectations read."""
    derived = "".join(f', {sql} AS "{name}"' for name, sql in batch_columns.items())
    query = f'SELECT s.*{derived} FROM "{schema}"."{table}" AS s'
    if rows_where is not None:
        query += f"\nWHERE ({rows_where}\n)"
    if _UNSAFE_BATCH_SQL_RE.search(query):
        raise ValueError(f"a batch query may contain neither '%' nor ':name': {query!r}")
    return query


def validate_suite(pg_url: str, schema: str, table: str, suite: Mapping[str, Any], *,
                   severities: Mapping[str, str], relations: Mapping[str, str],
                   parameters: Mapping[str, Any], rows_where: str | None = None,
                   extra_rules: Sequence[GxRule] = (), extra_severities: Mapping[str, str] | None = None,
                   table_checks: Sequence[GxTableCheck] = (), table_severities: Mapping[str, str] | None = None,
                   ) -> GxSuiteOutcome:
    """Validate a stored suite (expectations.py) on the staged rows ``rows_where`` selects (all: None).

    ``severities`` maps each rule to run to its severity this run: the suite's expectations of other
    rules are left out. ``relations`` names the SQL relation of each ``{{extract}}`` a custom query
    reads; ``parameters`` are the suite parameters (expectations.gx_parameters). ``extra_rules`` are
    rules with no stored expectation (run as plain UnexpectedRowsExpectation). ``table_checks`` run in
    a second validation, of the whole staged table. Raises :class:`GxCheckError` when a check breaks.
    """
    _validate_inputs(schema, table, [*extra_rules, *table_checks])
    ps_meta = (suite.get("meta") or {}).get("portal_sync") or {}
    key = [ROW_ID_COLUMN, *ps_meta.get("key", [])]
    query = batch_query(schema, table, ps_meta.get("batch_columns") or {}, rows_where)
    configs = []
    for expectation in suite["expectations"]:
        meta = expectation["meta"]["portal_sync"]
        if meta["rule"] not in severities:
            continue
        config = {k: v for k, v in expectation.items() if k not in ("id", "meta")}
        config["kwargs"] = dict(expectation["kwargs"])
        if "unexpected_rows_query" in config["kwargs"]:
            text = config["kwargs"]["unexpected_rows_query"]
            for name, relation in relations.items():
                text = text.replace("{{" + name + "}}", relation)
            config["kwargs"]["unexpected_rows_query"] = text
        severity = severities[meta["rule"]]
        config["severity"] = {"refuse": "critical", "warn": "warning"}.get(severity, "info")
        config["meta"] = {_META_KEY: meta["expectation"], "portal_sync": {
            **meta, "severity": severity, "mostly": _run_mostly(config["kwargs"], meta, parameters)}}
        configs.append(config)
    sample_format = {"result_format": _RESULT_FORMAT_SUMMARY, "unexpected_index_column_names": key,
                     "partial_unexpected_count": SAMPLE_SIZE}
    # Column expectations are screened first: all of them in one aggregate scan (GX bundles their
    # counts), each held to mostly=1, so a pass means exactly no unexpected row. Only those that
    # find one run again as configured, with the samples; the samples' queries scan the batch once
    # per expectation and, on clean data, find nothing (most of a first load's GX time).
    screened = [c for c in configs if "unexpected_rows_query" not in c["kwargs"]]
    rows_configs = [c for c in configs if "unexpected_rows_query" in c["kwargs"]]
    name = f"{suite['name']}__{next(_NAMES)}"
    with _GX_LOCK:
        gx, context = _gx()
        from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

        def build(config: Mapping[str, Any], **kwargs_override: Any) -> Any:
            return ExpectationConfiguration(
                type=config["type"], kwargs={**config["kwargs"], **kwargs_override}, meta=config["meta"],
                description=config.get("description"), severity=config["severity"]).to_domain_obj()

        datasource = _datasource(context, pg_url)
        view = _create_batch_view(datasource, schema, table, query)
        try:
            screen_result, screen_by_tag = None, {}
            if screened:
                screen_result = _run_validation(
                    gx, context, datasource, _table_asset(datasource, f"{name}__screen", schema, view),
                    [build(c, mostly=1.0) for c in screened], "BOOLEAN_ONLY", parameters)
                screen_by_tag = _results_by_tag(screen_result)
                _raise_broken(screen_by_tag, [c["meta"][_META_KEY] for c in screened],
                              f"{schema}.{table} (suite {suite['name']!r}, screen)")
            rerun = [c for c in screened if not screen_by_tag[c["meta"][_META_KEY]].get("success")]
            expectations = [gx.expectations.ExpectTableRowCountToBeBetween(
                min_value=0, max_value=None, meta={_META_KEY: _ROW_COUNT_TAG})]
            expectations += [build(c) for c in [*rows_configs, *rerun]]
            for rule in extra_rules:
                expectations.append(gx.expectations.UnexpectedRowsExpectation(
                    unexpected_rows_query=build_unexpected_rows_query(rule.bad_rows_where, select=key),
                    description=rule.description,
                    meta={_META_KEY: f"{rule.name}:rule", "portal_sync": {
                        "expectation": f"{rule.name}:rule", "rule": rule.name,
                        "severity": (extra_severities or {}).get(rule.name, "refuse")}}))
            rows_result = _run_validation(gx, context, datasource, _table_asset(datasource, name, schema, view),
                                          expectations, sample_format, parameters)
            table_result = None
            if table_checks:
                table_result = _run_validation(
                    gx, context, datasource, _table_asset(datasource, f"{name}__table", schema, table),
                    _table_expectations(gx, table_checks), "SUMMARY", None)
        finally:
            _drop_batch_view(datasource, schema, view)
            _dispose_engines(datasource)

    raw_by_tag = _results_by_tag(rows_result)
    tags = [_ROW_COUNT_TAG, *(c["meta"][_META_KEY] for c in [*rows_configs, *rerun]),
            *(f"{r.name}:rule" for r in extra_rules)]
    where = f"{schema}.{table} (suite {suite['name']!r})"
    _raise_broken(raw_by_tag, tags, where)
    element_count = _observed_int(raw_by_tag[_ROW_COUNT_TAG], "the row count")
    by_tag = {tag: _row_result(raw_by_tag[tag], tag, element_count, key) for tag in tags[1:]}
    for config in screened:
        tag = config["meta"][_META_KEY]
        if tag not in by_tag:
            by_tag[tag] = _screened_pass(config, screen_by_tag[tag], element_count)
    order = [c["meta"][_META_KEY] for c in configs] + [f"{r.name}:rule" for r in extra_rules]
    results = [by_tag[tag] for tag in order]
    result_json = {"rows": rows_result.to_json_dict()}
    if screen_result is not None:
        result_json["screen"] = screen_result.to_json_dict()
    if table_result is not None:
        by_tag = _results_by_tag(table_result)
        _raise_broken(by_tag, [c.name for c in table_checks], where)
        for check in table_checks:
            raw = by_tag[check.name]
            results.append(GxExpectationResult(
                check.name, check.name, raw["expectation_config"]["type"], raw["expectation_config"]["kwargs"],
                bool(raw.get("success")), (raw.get("result") or {}).get("observed_value"), None, None, None, [],
                (table_severities or {}).get(check.name, "fail"), None, check.description, "table", raw))
        result_json["table"] = table_result.to_json_dict()
    return GxSuiteOutcome(results, element_count, result_json)


def _run_mostly(kwargs: Mapping[str, Any], meta: Mapping[str, Any], parameters: Mapping[str, Any]) -> float | None:
    """The ``mostly`` an expectation runs with: its suite parameter's value this run, else its own value, else
    the stored default (GX leaves a ``mostly`` equal to its default 1 out of the result's kwargs)."""
    value = kwargs.get("mostly", meta.get("mostly"))
    if isinstance(value, Mapping):
        value = parameters.get(str(value.get("$PARAMETER")), meta.get("mostly"))
    return None if value is None else float(value)


def _screened_pass(config: Mapping[str, Any], raw: dict, element_count: int) -> GxExpectationResult:
    """A column expectation that found no unexpected row at mostly=1: its result as configured, exactly
    (count 0, nothing to sample), with the kwargs and ``mostly`` it is configured with this run."""
    meta = config["meta"]["portal_sync"]
    kwargs = {k: v for k, v in ((raw.get("expectation_config") or {}).get("kwargs") or {}).items() if k != "mostly"}
    mostly = meta.get("mostly")
    if mostly is not None and mostly != 1.0:
        kwargs["mostly"] = mostly
    return GxExpectationResult(
        key=config["meta"][_META_KEY], rule=str(meta["rule"]), type=str(config["type"]), kwargs=kwargs, success=True,
        observed_value=None, element_count=element_count, unexpected_count=0, unexpected_percent=0.0, sample=[],
        severity=str(meta.get("severity", "refuse")), mostly=None if mostly is None else float(mostly),
        description=str(config.get("description") or ""), kind="row", raw=raw)


def _create_batch_view(datasource: Any, schema: str, table: str, query: str) -> str:
    """The batch as a view beside the staged table, validated as a table asset.

    GX learns a query asset's columns by running the query and reading the whole result into the
    client (twice per validation: seconds and gigabytes on a city's ledger); a view's columns come
    from the catalogue. The view is named after the table (the run's prefix), and a staged table is
    dropped with CASCADE (stage.drop_tables), so a killed run's view goes with its table.
    """
    import sqlalchemy as sa

    suffix = "__gx"
    view = table + suffix if len(table) + len(suffix) <= 63 else (
        f"{table[:63 - len(suffix) - 9]}_{hashlib.sha256(table.encode()).hexdigest()[:8]}{suffix}")
    with datasource.get_engine().begin() as conn:
        conn.execute(sa.text(f'DROP VIEW IF EXISTS "{schema}"."{view}"'))
        conn.execute(sa.text(f'CREATE VIEW "{schema}"."{view}" AS {query}'))
    return view


def _drop_batch_view(datasource: Any, schema: str, view: str) -> None:
    import sqlalchemy as sa

    with datasource.get_engine().begin() as conn:
        conn.execute(sa.text(f'DROP VIEW IF EXISTS "{schema}"."{view}"'))


def _row_result(raw: dict, tag: str, element_count: int, key: Sequence[str]) -> GxExpectationResult:
    """Flatten a row expectation's result: column map expectations count ``unexpected_count``, the
    custom ones (UnexpectedRowsExpectation) an ``observed_value``."""
    config = raw.get("expectation_config") or {}
    meta = (config.get("meta") or {}).get("portal_sync") or {}
    result = raw.get("result") or {}
    if "unexpected_count" in result:
        count = int(result["unexpected_count"])
        percent = result.get("unexpected_percent")
        sample = [{k: row.get(k) for k in key if k in row} for row in result.get("partial_unexpected_index_list") or []]
        observed = result.get("observed_value")
    else:
        count = _observed_int(raw, f"rule {tag!r}")
        percent = 100.0 * count / element_count if element_count else 0.0
        rows = (result.get("details") or {}).get("unexpected_rows") or []
        sample = [{k: row.get(k) for k in key if k in row} for row in rows][:SAMPLE_SIZE]
        observed = count
    success = raw.get("success")
    if not isinstance(success, bool):
        raise GxCheckError(f"rule {tag!r}: GX gave no success flag")
    kwargs = config.get("kwargs") or {}
    mostly = kwargs.get("mostly", meta.get("mostly"))
    return GxExpectationResult(
        key=tag, rule=str(meta.get("rule", tag)), type=str(config.get("type")), kwargs=kwargs, success=success,
        observed_value=observed, element_count=element_count, unexpected_count=count,
        unexpected_percent=None if percent is None else float(percent),
        sample=sample[:SAMPLE_SIZE], severity=str(meta.get("severity", "refuse")),
        mostly=float(mostly) if isinstance(mostly, int | float) else None,
        description=str(config.get("description") or ""), kind="row", raw=raw)


def _dispose_engines(datasource: Any) -> None:
    """Close the pooled connections of both SQLAlchemy engines GX made (data source, execution).

    The data source is kept for the process; its engines reconnect on the next call, so no idle
    session stays open between validations.
    """
    engines = [getattr(datasource, "_engine", None)]
    execution_engine = getattr(datasource, "_execution_engine", None)
    if execution_engine is not None:
        engines.append(getattr(execution_engine, "engine", None))
        # Its cached SQLAlchemy inspector would answer the next call's reflection from this call's
        # catalogue (a staging table made since is "missing", and GX falls back to an unqualified name).
        if hasattr(execution_engine, "_inspector"):
            execution_engine._inspector = None
    for engine in engines:
        dispose = getattr(engine, "dispose", None)
        if callable(dispose):
            dispose()
