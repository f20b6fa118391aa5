"""Data-quality records of a run: findings (sync.run_findings), check results (sync.dq_results)
and the quarantine of refused rows (sync.quarantine)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import psycopg
from psycopg.types.json import Jsonb

# The columns a finding SELECT yields, in this order (``insert_findings``).
FINDING_COLUMNS = ("run_key", "community_code", "dataset", "row_id", "row_key", "rule", "severity", "reason")
EXAMPLES_LOGGED = 3
EXAMPLES_RECORDED = 5


class CheckOutcome(Protocol):
    """What ``record_results`` needs of a check's outcome (validate.RuleOutcome)."""

    rule: str
    severity: str
    failing_rows: int
    description: str
    kind: str
    observed: object


def clear_run(conn: psycopg.Connection, run_key: str) -> None:
    """Forget every finding and result of a run (a re-run starts afresh)."""
    conn.execute("DELETE FROM sync.run_findings WHERE run_key = %s", (run_key,))
    conn.execute("DELETE FROM sync.dq_results WHERE run_key = %s", (run_key,))


def clear_findings(conn: psycopg.Connection, run_key: str, dataset: str) -> None:
    """Forget a data set's findings of this run (a retried validation records them again)."""
    conn.execute("DELETE FROM sync.run_findings WHERE run_key = %s AND dataset = %s", (run_key, dataset))


def insert_findings(conn: psycopg.Connection, select: str, params: Sequence[object] | None = None) -> dict[str, int]:
    """Record the failing rows a SELECT names (its columns: FINDING_COLUMNS); return their count per rule."""
    columns = ", ".join(FINDING_COLUMNS)
    return dict(conn.execute(
        f"WITH found AS (INSERT INTO sync.run_findings ({columns}) {select} RETURNING rule)"
        " SELECT rule, count(*) FROM found GROUP BY rule",
        params,
    ).fetchall())


def finding_counts(conn: psycopg.Connection, run_key: str, dataset: str) -> tuple[int, int]:
    """(refused, warned): the distinct rows of the data set that some rule refused, or warned about."""
    refused, warned = conn.execute(
        "SELECT count(DISTINCT row_id) FILTER (WHERE severity = 'refuse'),"
        " count(DISTINCT row_id) FILTER (WHERE severity = 'warn')"
        " FROM sync.run_findings WHERE run_key = %s AND dataset = %s",
        (run_key, dataset),
    ).fetchone()
    return refused, warned


def examples(conn: psycopg.Connection, run_key: str, dataset: str, rule: str,
             limit: int = EXAMPLES_LOGGED) -> list[tuple[str | None, str]]:
    """(row key, reason) of the first rows a rule found, in staged order."""
    return [tuple(row) for row in conn.execute(
        "SELECT row_key, reason FROM sync.run_findings WHERE run_key = %s AND dataset = %s AND rule = %s"
        " ORDER BY row_id LIMIT %s",
        (run_key, dataset, rule, limit),
    ).fetchall()]


def record_results(conn: psycopg.Connection, run_key: str, community: str, dataset: str,
                   outcomes: Sequence[CheckOutcome], element_count: int | None) -> None:
    """Every check's result, pass or fail, for the report and dashboards (sync.dq_results)."""
    conn.execute("DELETE FROM sync.dq_results WHERE run_key = %s AND dataset = %s", (run_key, dataset))
    for outcome in outcomes:
        if outcome.kind == "table":
            observed: dict[str, object] = {"observed_value": outcome.observed}
        else:
            found = examples(conn, run_key, dataset, outcome.rule, EXAMPLES_RECORDED)
            observed = {"examples": [{"key": k, "reason": r} for k, r in found]}
        conn.execute(
            "INSERT INTO sync.dq_results (run_key, community_code, dataset, rule, description, kind, severity,"
            " success, failing_rows, element_count, observed) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (run_key, community, dataset, outcome.rule, outcome.description, outcome.kind, outcome.severity,
             outcome.failing_rows == 0, outcome.failing_rows if outcome.kind == "row" else 0, element_count,
             Jsonb(observed)),
        )


def refused_row_filter(alias: str) -> str:
    """SQL: the staged row ``alias`` was not refused in this run. Takes the named parameters
    %(run_key)s and %(dataset)s."""
    return (
        "NOT EXISTS (SELECT 1 FROM sync.run_findings f WHERE f.run_key = %(run_key)s"
        f" AND f.dataset = %(dataset)s AND f.severity = 'refuse' AND f.row_id = {alias}._row_id)"
    )


def quarantined_keys(conn: psycopg.Connection, community: str, dataset: str) -> list[str]:
    """Keys of the rows of a data set that stay refused; every run reads them again."""
    return [key for (key,) in conn.execute(
        "SELECT DISTINCT row_key FROM sync.quarantine WHERE community_code = %s AND dataset = %s",
        (community, dataset),
    ).fetchall()]


def maintain_quarantine(conn: psycopg.Connection, *, community: str, dataset: str, run_key: str,
                        staged_keys: str, gone_keys: str | None) -> None:
    """Refused rows stay in quarantine (re-read every run) until a run accepts them or they are gone.

    ``staged_keys`` is SQL of the keys this run read (one text column ``row_key``); ``gone_keys``,
    when the run saw every source key (a snapshot or a reconciliation), is SQL of them all, so that
    quarantined rows the source no longer has are released.
    """
    args = {"community": community, "dataset": dataset, "run_key": run_key}
    conn.execute(
        "INSERT INTO sync.quarantine (community_code, dataset, row_key, rule, reason, first_run_key, last_run_key)"
        " SELECT DISTINCT ON (row_key, rule) community_code, dataset, row_key, rule, reason, run_key, run_key"
        " FROM sync.run_findings WHERE run_key = %(run_key)s AND dataset = %(dataset)s AND severity = 'refuse'"
        " AND row_key IS NOT NULL ORDER BY row_key, rule, row_id"
        " ON CONFLICT (community_code, dataset, row_key, rule) DO UPDATE SET last_seen_at = now(),"
        " last_run_key = EXCLUDED.last_run_key, reason = EXCLUDED.reason",
        args,
    )
    conn.execute(  # re-read this run and not refused again: released
        "DELETE FROM sync.quarantine q WHERE q.community_code = %(community)s AND q.dataset = %(dataset)s"
        f" AND q.last_run_key <> %(run_key)s AND EXISTS (SELECT 1 FROM ({staged_keys}) s WHERE s.row_key = q.row_key)",
        args,
    )
    if gone_keys is not None:
        conn.execute(
            "DELETE FROM sync.quarantine q WHERE q.community_code = %(community)s AND q.dataset = %(dataset)s"
            f" AND NOT EXISTS (SELECT 1 FROM ({gone_keys}) s WHERE s.row_key = q.row_key)",
            args,
        )
