"""Great Expectations results of a run (sync.gx_results, sync.gx_validations): written by validate.py,
read by the report, pruned with the other report tables."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

Row = dict[str, Any]


class ExpectationResult(Protocol):
    """What ``record`` needs of one expectation's result (gx_runner.GxExpectationResult)."""

    key: str
    rule: str
    kind: str
    type: str
    kwargs: dict
    success: bool
    observed_value: Any
    element_count: int | None
    unexpected_count: int | None
    unexpected_percent: float | None
    sample: list[dict]
    severity: str
    mostly: float | None
    description: str


def _json(value: Any) -> Jsonb:
    """GX results are JSON-able but may hold dates or decimals in observed values: keep their text."""
    return Jsonb(json.loads(json.dumps(value, default=str)))


def clear(conn: psycopg.Connection, run_key: str, dataset: str) -> None:
    """Forget a data set's GX results of this run (a retried validation stores them again)."""
    conn.execute("DELETE FROM sync.gx_results WHERE run_key = %s AND dataset = %s", (run_key, dataset))
    conn.execute("DELETE FROM sync.gx_validations WHERE run_key = %s AND dataset = %s", (run_key, dataset))


def clear_run(conn: psycopg.Connection, run_key: str) -> None:
    """Forget every GX result of a run (a re-run starts afresh, as quality.clear_run)."""
    conn.execute("DELETE FROM sync.gx_results WHERE run_key = %s", (run_key,))
    conn.execute("DELETE FROM sync.gx_validations WHERE run_key = %s", (run_key,))


def record(conn: psycopg.Connection, run_key: str, community: str, dataset: str,
           results: Sequence[ExpectationResult], result_json: dict, rows_validated: int) -> None:
    """Replace the data set's GX results of this run: one row per expectation, and GX's whole JSON."""
    clear(conn, run_key, dataset)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO sync.gx_results (run_key, community_code, dataset, expectation, rule, kind, expectation_type,"
            " kwargs, success, observed_value, element_count, unexpected_count, unexpected_percent, sample_keys,"
            " severity, mostly, description) VALUES (" + ", ".join(["%s"] * 17) + ")",
            [(run_key, community, dataset, r.key, r.rule, r.kind, r.type, _json(r.kwargs), r.success,
              _json(r.observed_value), r.element_count, r.unexpected_count, r.unexpected_percent, _json(r.sample),
              r.severity, r.mostly, r.description) for r in results],
        )
    conn.execute(
        "INSERT INTO sync.gx_validations (run_key, community_code, dataset, rows_validated, result)"
        " VALUES (%s, %s, %s, %s, %s)",
        (run_key, community, dataset, rows_validated, _json(result_json)),
    )


def results_of_run(conn: psycopg.Connection, run_key: str, dataset: str | None = None) -> list[Row]:
    """Every expectation's result of a run (optionally one data set), failing first, for the report."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT dataset, expectation, rule, kind, expectation_type, kwargs, success, observed_value, element_count,"
            " unexpected_count, unexpected_percent, sample_keys, severity, mostly, description, validated_at"
            " FROM sync.gx_results WHERE run_key = %s AND (%s::text IS NULL OR dataset = %s)"
            " ORDER BY dataset, success, expectation",
            (run_key, dataset, dataset),
        ).fetchall()


def summary_of_run(conn: psycopg.Connection, run_key: str) -> list[Row]:
    """Per data set: rows validated, expectations evaluated and failed (by severity)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT r.dataset, v.rows_validated, count(*) AS expectations,"
            " count(*) FILTER (WHERE NOT r.success) AS failed,"
            " count(*) FILTER (WHERE NOT r.success AND r.severity IN ('refuse', 'fail')) AS failed_critical,"
            " count(*) FILTER (WHERE NOT r.success AND r.severity = 'warn') AS failed_warning"
            " FROM sync.gx_results r LEFT JOIN sync.gx_validations v USING (run_key, dataset)"
            " WHERE r.run_key = %s GROUP BY r.dataset, v.rows_validated ORDER BY r.dataset",
            (run_key,),
        ).fetchall()


def result_json(conn: psycopg.Connection, run_key: str) -> dict[str, Any]:
    """The run's full GX validation results as GX wrote them, by data set (for download)."""
    return {dataset: result for dataset, result in conn.execute(
        "SELECT dataset, result FROM sync.gx_validations WHERE run_key = %s ORDER BY dataset", (run_key,))}


def delete_before(conn: psycopg.Connection, community: str, cutoff: datetime) -> None:
    """Retention: the GX results of the community's runs started before ``cutoff`` (as
    reads.delete_report_rows_before does for findings and check results)."""
    with conn.transaction():
        for table in ("sync.gx_results", "sync.gx_validations"):
            conn.execute(
                f"DELETE FROM {table} WHERE run_key IN (SELECT run_key FROM sync.runs"
                " WHERE community_code = %s AND started_at < %s)",
                (community, cutoff),
            )
