"""The reporting reads of the ``sync`` schema: status, the data-quality site, explain, the run summaries.

The pipeline's own reads and every write live beside this module (``runs``, ``quality``,
``marks``); what is here only looks. Rows come back as dicts keyed by column name, so the
presentation layer (``portal_sync.reporting``) can show any column without this module
knowing which.

Each read is bounded whatever the history kept: it names the runs it is about, or takes
a limit, or an interval, or one indexed look-up per data set. The one statement that is
not a read, ``delete_report_rows_before``, is retention of the report's own rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

Row = dict[str, Any]

RUN_COLUMNS = ("run_key, community_code, airflow_run_id, datasets, source_org_name, time_zone,"
               " started_at, published_at, finished_at, outcome, error")


def connect(portal_url: str, *, read_only: bool = False) -> psycopg.Connection:
    """An autocommit connection; a read-only one also gives up after 15 s, so a page never holds
    locks a publish waits on."""
    conn = psycopg.connect(portal_url, connect_timeout=10, autocommit=True)
    if read_only:
        conn.execute("SET default_transaction_read_only = on")
        conn.execute("SET statement_timeout = '15s'")
    return conn


def _rows(conn: psycopg.Connection, query: str, params: Sequence[object] | dict[str, object]) -> list[Row]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return cur.fetchall()


def _one(conn: psycopg.Connection, query: str, params: Sequence[object]) -> Row | None:
    rows = _rows(conn, query, params)
    return rows[0] if rows else None


# --------------------------------------------------------------------------- runs


def latest_time_zone(conn: psycopg.Connection, community: str) -> str | None:
    """The time zone the community's latest run read from Caselle (None: no run knows it)."""
    row = conn.execute(
        "SELECT time_zone FROM sync.runs WHERE community_code = %s AND time_zone IS NOT NULL"
        " ORDER BY started_at DESC LIMIT 1",
        (community,),
    ).fetchone()
    return row[0] if row else None


def run(conn: psycopg.Connection, run_key: str) -> Row | None:
    return _one(conn, f"SELECT {RUN_COLUMNS} FROM sync.runs WHERE run_key = %s", (run_key,))


def latest_runs(conn: psycopg.Connection, community: str, limit: int) -> list[Row]:
    """The community's last ``limit`` runs, newest first."""
    return _rows(conn, f"SELECT {RUN_COLUMNS} FROM sync.runs WHERE community_code = %s"
                       " ORDER BY started_at DESC, run_key DESC LIMIT %s", (community, limit))


def runs_between(conn: psycopg.Connection, community: str, start: datetime, end: datetime) -> list[Row]:
    """The community's runs started in [start, end), newest first."""
    return _rows(conn, f"SELECT {RUN_COLUMNS} FROM sync.runs WHERE community_code = %s AND started_at >= %s"
                       " AND started_at < %s ORDER BY started_at DESC, run_key DESC", (community, start, end))


def recent_runs(conn: psycopg.Connection, community: str | None, limit: int,
                since: datetime | None = None) -> list[Row]:
    """The last ``limit`` runs of one community or of each (optionally only those started since a time),
    by community code, newest first within a community."""
    return _rows(
        conn,
        f"SELECT {RUN_COLUMNS} FROM (SELECT r.*, row_number() OVER (PARTITION BY community_code"
        " ORDER BY started_at DESC, run_key DESC) AS n FROM sync.runs r"
        " WHERE (%(c)s::text IS NULL OR community_code = %(c)s)"
        " AND (%(since)s::timestamptz IS NULL OR started_at >= %(since)s)) x WHERE n <= %(limit)s"
        " ORDER BY community_code, started_at DESC, run_key DESC",
        {"c": community, "limit": limit, "since": since},
    )


def last_run(conn: psycopg.Connection, community: str) -> Row | None:
    return _one(conn, f"SELECT {RUN_COLUMNS} FROM sync.runs WHERE community_code = %s"
                      " ORDER BY started_at DESC LIMIT 1", (community,))


def run_communities(conn: psycopg.Connection) -> list[str]:
    """Every community code the run history knows: one index probe per community (a skip scan of
    ``runs_community``), not a scan of every run."""
    return [code for (code,) in conn.execute(
        "WITH RECURSIVE codes(code) AS ("
        " (SELECT community_code FROM sync.runs ORDER BY community_code LIMIT 1)"
        " UNION ALL SELECT (SELECT r.community_code FROM sync.runs r WHERE r.community_code > codes.code"
        "  ORDER BY r.community_code LIMIT 1) FROM codes WHERE codes.code IS NOT NULL)"
        " SELECT code FROM codes WHERE code IS NOT NULL ORDER BY 1")]


def dataset_rows(conn: psycopg.Connection, run_keys: Sequence[str]) -> list[Row]:
    """The per-data-set rows (sync.run_datasets, every column) of the given runs."""
    return _rows(conn, "SELECT * FROM sync.run_datasets WHERE run_key = ANY(%s) ORDER BY run_key, dataset",
                 (list(run_keys),))


# --------------------------------------------------------------------------- checks and findings


def check_counts(conn: psycopg.Connection, run_keys: Sequence[str]) -> list[Row]:
    """Per run and data set: checks run, failed, and failed by severity."""
    return _rows(
        conn,
        "SELECT run_key, dataset, count(*) AS checks, count(*) FILTER (WHERE NOT success) AS failed,"
        " count(*) FILTER (WHERE NOT success AND severity = 'fail') AS failed_fail,"
        " count(*) FILTER (WHERE NOT success AND severity = 'refuse') AS failed_refuse,"
        " count(*) FILTER (WHERE NOT success AND severity = 'warn') AS failed_warn"
        " FROM sync.dq_results WHERE run_key = ANY(%s) GROUP BY run_key, dataset",
        (list(run_keys),),
    )


def refused_warned_rows(conn: psycopg.Connection, run_keys: Sequence[str]) -> list[Row]:
    """Per run and data set: distinct rows refused and warned, counted from the findings themselves
    (for runs whose per-data-set counts were never written: older or interrupted runs)."""
    return _rows(
        conn,
        "SELECT run_key, dataset, count(DISTINCT row_id) FILTER (WHERE severity = 'refuse') AS refused,"
        " count(DISTINCT row_id) FILTER (WHERE severity = 'warn') AS warned"
        " FROM sync.run_findings WHERE run_key = ANY(%s) GROUP BY run_key, dataset",
        (list(run_keys),),
    )


def checks_of_run(conn: psycopg.Connection, run_key: str) -> list[Row]:
    """Every check result of one run."""
    return _rows(
        conn,
        "SELECT dataset, rule, description, kind, severity, success, failing_rows, element_count, observed,"
        " validated_at FROM sync.dq_results WHERE run_key = %s ORDER BY dataset, kind, rule",
        (run_key,),
    )


def failed_checks(conn: psycopg.Connection, run_keys: Sequence[str]) -> list[Row]:
    return _rows(conn, "SELECT run_key, dataset, rule, severity, failing_rows FROM sync.dq_results"
                       " WHERE run_key = ANY(%s) AND NOT success ORDER BY run_key, dataset, rule", (list(run_keys),))


def checks_of(conn: psycopg.Connection, pairs: Sequence[tuple[str, str]]) -> list[Row]:
    """Check results of the given (run, data set) pairs."""
    if not pairs:
        return []
    return _rows(
        conn,
        "SELECT q.run_key, q.dataset, q.rule, q.description, q.kind, q.severity, q.success, q.failing_rows"
        " FROM sync.dq_results q JOIN unnest(%s::text[], %s::text[]) AS k(run_key, dataset)"
        " ON q.run_key = k.run_key AND q.dataset = k.dataset ORDER BY q.rule",
        ([p[0] for p in pairs], [p[1] for p in pairs]),
    )


def rule_counts_of_run(conn: psycopg.Connection, run_key: str) -> list[Row]:
    """Per data set and rule of one run: findings and distinct rows they name."""
    return _rows(
        conn,
        "SELECT dataset, rule, min(severity) AS severity, count(*) AS findings,"
        " count(DISTINCT row_id) AS row_count FROM sync.run_findings WHERE run_key = %s GROUP BY dataset, rule",
        (run_key,),
    )


def finding_examples(conn: psycopg.Connection, run_key: str, per_rule: int) -> list[Row]:
    """The first ``per_rule`` findings (in row order) of every rule of one run: a bounded read whatever
    a rule refused."""
    return _rows(
        conn,
        "SELECT g.dataset, g.rule, f.row_key, f.reason, f.severity"
        " FROM (SELECT DISTINCT dataset, rule FROM sync.run_findings WHERE run_key = %(k)s) g"
        " CROSS JOIN LATERAL (SELECT row_id, row_key, reason, severity FROM sync.run_findings f"
        "   WHERE f.run_key = %(k)s AND f.dataset = g.dataset AND f.rule = g.rule"
        "   ORDER BY f.row_id LIMIT %(n)s) f ORDER BY g.dataset, g.rule, f.row_id",
        {"k": run_key, "n": per_rule},
    )


def rule_hits(conn: psycopg.Connection, run_keys: Sequence[str]) -> list[Row]:
    """Per run, data set, rule and severity: distinct rows found and one example key."""
    return _rows(
        conn,
        "SELECT run_key, dataset, rule, severity, count(DISTINCT row_id) AS n, min(row_key) AS example_key"
        " FROM sync.run_findings WHERE run_key = ANY(%s) GROUP BY run_key, dataset, rule, severity",
        (list(run_keys),),
    )


def run_keys_started_before(conn: psycopg.Connection, community: str, cutoff: datetime) -> list[str]:
    return [k for (k,) in conn.execute(
        "SELECT run_key FROM sync.runs WHERE community_code = %s AND started_at < %s", (community, cutoff))]


def delete_report_rows_before(conn: psycopg.Connection, community: str, cutoff: datetime) -> None:
    """Retention: the findings and check results of the community's runs started before ``cutoff``, in one
    transaction. The run and per-data-set rows stay: they are small and are the sync's own history."""
    with conn.transaction():
        for table in ("sync.run_findings", "sync.dq_results"):
            conn.execute(
                f"DELETE FROM {table} WHERE run_key IN (SELECT run_key FROM sync.runs"
                " WHERE community_code = %s AND started_at < %s)",
                (community, cutoff),
            )


# --------------------------------------------------------------------------- status


def portal_community(conn: psycopg.Connection, community: str) -> Row:
    """The portal's own record of the community (name, time zone), empty when it has none yet."""
    return _one(conn, "SELECT name, time_zone FROM portal.communities WHERE community_code = %s",
                (community,)) or {}


def last_processed(conn: psycopg.Connection, community: str, datasets: Sequence[str]) -> dict[str, Row]:
    """Per data set, its row in the latest run that did not skip it (a skipped run, not due by cadence,
    changed nothing and has no counts worth showing), with that run's start, Airflow id and outcome."""
    rows = _rows(
        conn,
        "SELECT d.*, r.started_at, r.airflow_run_id, r.outcome FROM unnest(%s::text[]) AS x(dataset)"
        " CROSS JOIN LATERAL (SELECT d.* FROM sync.runs r2 JOIN sync.run_datasets d ON d.run_key = r2.run_key"
        "   AND d.dataset = x.dataset WHERE r2.community_code = %s AND d.phase <> 'skipped'"
        "   ORDER BY r2.started_at DESC LIMIT 1) d"
        " JOIN sync.runs r ON r.run_key = d.run_key",
        (list(datasets), community),
    )
    return {row["dataset"]: row for row in rows}


def latest_dataset_rows(conn: psycopg.Connection, community: str, datasets: Sequence[str]) -> dict[str, Row]:
    """Per data set, phase and note of its row in the latest run at all (to show "skipped: not due")."""
    rows = _rows(
        conn,
        "SELECT d.dataset, d.phase, d.error FROM unnest(%s::text[]) AS x(dataset)"
        " CROSS JOIN LATERAL (SELECT d.* FROM sync.runs r JOIN sync.run_datasets d ON d.run_key = r.run_key"
        "   AND d.dataset = x.dataset WHERE r.community_code = %s ORDER BY r.started_at DESC LIMIT 1) d",
        (list(datasets), community),
    )
    return {row["dataset"]: row for row in rows}


def marks(conn: psycopg.Connection, community: str) -> dict[str, Row]:
    """Per data set: its high-water mark and when it moved."""
    rows = _rows(conn, "SELECT dataset, mark, updated_at FROM sync.watermarks WHERE community_code = %s",
                 (community,))
    return {row["dataset"]: row for row in rows}


def quarantine_counts(conn: psycopg.Connection, community: str) -> dict[str, Row]:
    """Per data set: keys waiting in quarantine and since when the oldest waits."""
    rows = _rows(conn, "SELECT dataset, count(DISTINCT row_key) AS n, min(first_seen_at) AS since"
                       " FROM sync.quarantine WHERE community_code = %s GROUP BY dataset", (community,))
    return {row["dataset"]: row for row in rows}


# Outcomes of a run that ended and said something about the portal: a running run has not, and a dry
# run publishes nothing.
_JUDGED_OUTCOMES = ("published", "partly_published", "nothing_published", "failed", "abandoned")


# The fleet summary's statement (``fleet_rows``; benchmarks/status_page.py explains it).
FLEET_SQL = (
    "WITH c AS (SELECT code, profile, ord FROM unnest(%(codes)s::text[], %(profiles)s::int[])"
    "   WITH ORDINALITY AS u(code, profile, ord)),"
    " lim AS (SELECT c.code, p.dataset, p.alert_seconds * interval '1 second' AS alert_after, p.ord"
    "   FROM unnest(%(p_ids)s::int[], %(p_sets)s::text[], %(p_limits)s::float8[])"
    "   WITH ORDINALITY AS p(profile, dataset, alert_seconds, ord) JOIN c ON c.profile = p.profile),"
    " first AS (SELECT c.code, (SELECT r.started_at FROM sync.runs r WHERE r.community_code = c.code"
    "   ORDER BY r.started_at LIMIT 1) AS first_started_at FROM c),"
    " stale AS (SELECT l.code, array_agg(l.dataset ORDER BY l.ord) AS stale_datasets FROM lim l"
    "   JOIN first f ON f.code = l.code WHERE f.first_started_at < %(now)s - l.alert_after"
    "   AND NOT EXISTS (SELECT 1 FROM sync.runs r JOIN sync.run_datasets d ON d.run_key = r.run_key"
    "     AND d.dataset = l.dataset AND d.phase = 'published'"
    "     WHERE r.community_code = l.code AND r.published_at IS NOT NULL"
    "     AND r.published_at >= %(now)s - l.alert_after)"
    "   GROUP BY l.code),"
    " enabled AS (SELECT code, count(*) AS datasets FROM lim GROUP BY code)"
    " SELECT c.code, pc.name AS portal_name, pc.time_zone AS portal_time_zone, f.first_started_at,"
    " coalesce(e.datasets, 0) AS datasets, coalesce(s.stale_datasets, '{}') AS stale_datasets,"
    " lr.run_key AS last_run_key, lr.airflow_run_id AS last_airflow_run_id, lr.started_at AS last_started_at,"
    " lr.outcome AS last_outcome, coalesce(lr.source_org_name, j.source_org_name) AS source_org_name,"
    " coalesce(lr.time_zone, j.time_zone) AS run_time_zone,"
    " j.run_key AS judged_run_key, j.started_at AS judged_started_at, j.finished_at AS judged_finished_at,"
    " j.outcome AS judged_outcome, left(j.error, 500) AS judged_error,"
    " coalesce(jd.refused, 0) AS rows_refused, coalesce(jd.warned, 0) AS rows_warned,"
    " coalesce(jd.failed, '{}') AS failed_datasets, coalesce(jq.warn_checks, 0) AS warn_checks"
    " FROM c JOIN first f ON f.code = c.code"
    " LEFT JOIN enabled e ON e.code = c.code LEFT JOIN stale s ON s.code = c.code"
    " LEFT JOIN portal.communities pc ON pc.community_code = c.code"
    " LEFT JOIN LATERAL (SELECT r.run_key, r.airflow_run_id, r.started_at, r.outcome, r.source_org_name,"
    "   r.time_zone FROM sync.runs r WHERE r.community_code = c.code ORDER BY r.started_at DESC LIMIT 1) lr"
    "   ON true"
    " LEFT JOIN LATERAL (SELECT r.run_key, r.started_at, r.finished_at, r.outcome, r.error, r.source_org_name,"
    "   r.time_zone FROM sync.runs r WHERE r.community_code = c.code AND r.outcome = ANY(%(judged)s::text[])"
    "   ORDER BY r.started_at DESC LIMIT 1) j ON true"
    " LEFT JOIN LATERAL (SELECT sum(d.rows_refused) AS refused, sum(d.rows_warned) AS warned,"
    "   array_agg(d.dataset ORDER BY d.dataset) FILTER (WHERE d.phase = 'failed') AS failed"
    "   FROM sync.run_datasets d WHERE d.run_key = j.run_key) jd ON true"
    " LEFT JOIN LATERAL (SELECT count(*) AS warn_checks FROM sync.dq_results q"
    "   WHERE q.run_key = j.run_key AND NOT q.success AND q.severity = 'warn') jq ON true"
    " ORDER BY c.ord"
)


def fleet_params(profiles: Sequence[tuple[str, Sequence[tuple[str, timedelta]]]], now: datetime
                 ) -> dict[str, object]:
    """FLEET_SQL's parameters from (community, its (data set, alert limit) pairs). Each distinct list of
    pairs goes once, and per community the number of its list: a fleet has a handful of them, so the
    statement carries about one value per community, not one per data set."""
    numbers: dict[tuple[tuple[str, timedelta], ...], int] = {}
    by_identity: dict[int, int] = {}  # callers share one object per configuration: skip hashing it again
    codes, chosen = [], []
    for code, pairs in profiles:
        number = by_identity.get(id(pairs))
        if number is None:
            number = by_identity[id(pairs)] = numbers.setdefault(tuple(pairs), len(numbers))
        codes.append(code)
        chosen.append(number)
    p_ids, p_sets, p_limits = [], [], []
    for pairs, number in numbers.items():
        for dataset, limit in pairs:
            p_ids.append(number)
            p_sets.append(dataset)
            p_limits.append(limit.total_seconds())
    return {"codes": codes, "profiles": chosen, "p_ids": p_ids, "p_sets": p_sets, "p_limits": p_limits,
            "now": now, "judged": list(_JUDGED_OUTCOMES)}


def fleet_rows(conn: psycopg.Connection, profiles: Sequence[tuple[str, Sequence[tuple[str, timedelta]]]],
               now: datetime) -> list[Row]:
    """Per community, in one statement whatever their number (in the order given): its latest run, its
    latest judged run (one that ended and was not a dry run) with that run's refused and warned rows, failed
    data sets and failed warn checks, its first run's start, the portal's name and zone, and its stale data
    sets.

    ``profiles`` holds per community the (data set, alert limit) of each enabled data set: a data set is
    stale when it has not published since ``now - limit`` and the community's first run is older than that
    (``freshness.assess``). Each look-up is an index range of one community (``runs_community``,
    ``runs_published``, the primary keys), bounded by the last few runs, not by the history kept.
    """
    return _rows(conn, FLEET_SQL, fleet_params(profiles, now))


# --------------------------------------------------------------------------- explain (accounts)


_ACCOUNT_COLUMNS = "account_id, account_number, status, online_access, portal_visible, deleted_at, source_read_at"


def accounts_by_digits(conn: psycopg.Connection, community: str, digits: str) -> list[Row]:
    """Portal accounts whose number has these digits, the most visible first."""
    return _rows(
        conn,
        f"SELECT {_ACCOUNT_COLUMNS} FROM portal.accounts WHERE community_code = %s AND account_number_digits = %s"
        " ORDER BY portal_visible DESC, (deleted_at IS NULL) DESC, account_id",
        (community, digits),
    )


def renumbering(conn: psycopg.Connection, community: str, digits: str) -> Row | None:
    """The latest renumbering away from a number with these digits, with the account as it is now."""
    columns = ", ".join(f"a.{c.strip()}" for c in _ACCOUNT_COLUMNS.split(","))
    return _one(
        conn,
        f"SELECT h.old_number, h.changed_at, {columns}"
        " FROM sync.account_number_history h JOIN portal.accounts a"
        " ON a.community_code = h.community_code AND a.account_id = h.account_id"
        " WHERE h.community_code = %s AND h.old_number_digits = %s ORDER BY h.changed_at DESC LIMIT 1",
        (community, digits),
    )


def account_refusals(conn: psycopg.Connection, community: str, row_key: str) -> list[Row]:
    """The quarantine entries of one account (by CustomerID)."""
    return _rows(
        conn,
        "SELECT row_key, rule, reason, first_seen_at, last_seen_at FROM sync.quarantine"
        " WHERE community_code = %s AND dataset = 'accounts' AND row_key = %s ORDER BY first_seen_at, rule",
        (community, row_key),
    )


def refusals_by_number(conn: psycopg.Connection, community: str, digits: str, pattern: str) -> list[Row]:
    """Quarantined accounts whose number a finding's reason names (``pattern`` captures it): the only
    place a number of a row that never reached the portal is recorded."""
    return _rows(
        conn,
        "WITH named AS ("
        "  SELECT row_key FROM sync.quarantine WHERE community_code = %(c)s AND dataset = 'accounts'"
        "   AND regexp_replace(substring(reason FROM %(re)s), '[^0-9]', '', 'g') = %(d)s"
        "  UNION SELECT row_key FROM sync.run_findings WHERE community_code = %(c)s AND dataset = 'accounts'"
        "   AND row_key IS NOT NULL AND reason LIKE '%%CustomerNumber=%%'"
        "   AND regexp_replace(substring(reason FROM %(re)s), '[^0-9]', '', 'g') = %(d)s)"
        " SELECT q.row_key, q.rule, q.reason, q.first_seen_at, q.last_seen_at FROM sync.quarantine q"
        " JOIN named USING (row_key) WHERE q.community_code = %(c)s AND q.dataset = 'accounts'"
        " ORDER BY q.row_key, q.first_seen_at, q.rule",
        {"c": community, "d": digits, "re": pattern},
    )


def quarantined_accounts(conn: psycopg.Connection, community: str) -> list[Row]:
    """Refused accounts that are not in the portal at all (their numbers are mostly unknown to the sync)."""
    return _rows(
        conn,
        "SELECT q.row_key, min(q.first_seen_at) AS since FROM sync.quarantine q"
        " WHERE q.community_code = %s AND q.dataset = 'accounts' AND NOT EXISTS ("
        "  SELECT 1 FROM portal.accounts a WHERE a.community_code = q.community_code"
        "  AND a.account_id::text = q.row_key)"
        " GROUP BY q.row_key ORDER BY since, q.row_key",
        (community,),
    )


# --------------------------------------------------------------------------- trends (the report's charts)
#
# One query per chart, over one community and a bounded interval. Each matches a partial index
# (``WHERE NOT success`` on sync.dq_results, ``WHERE phase = 'published'`` on sync.run_datasets, both on
# (community_code, time)) so it reads only the rows it draws; without those indexes it is still correct,
# by a scan of the table.


def check_failures_by_day(conn: psycopg.Connection, community: str, since: datetime, time_zone: str) -> list[Row]:
    """Per day (on the community's clock), data set, check and severity, since ``since``: the most rows the
    check failed on in one run that day, and in how many runs it failed. Only failed checks are read."""
    return _rows(
        conn,
        "SELECT (validated_at AT TIME ZONE %(tz)s)::date AS day, dataset, rule, severity,"
        " max(failing_rows) AS failing_rows, count(*) AS failed_runs FROM sync.dq_results"
        " WHERE community_code = %(c)s AND validated_at >= %(since)s AND NOT success"
        " GROUP BY 1, dataset, rule, severity ORDER BY 1, dataset, rule, severity",
        {"c": community, "since": since, "tz": time_zone},
    )


def rows_published_by_day(conn: psycopg.Connection, community: str, since: datetime, time_zone: str) -> list[Row]:
    """Per day (on the community's clock) and data set, since ``since``: rows its publishes inserted, updated
    and deleted, and how many publishes. A data set row's ``updated_at`` is when its run last touched it:
    the publish, or the clean-up a few minutes later."""
    return _rows(
        conn,
        "SELECT (updated_at AT TIME ZONE %(tz)s)::date AS day, dataset,"
        " sum(coalesce(rows_inserted, 0) + coalesce(rows_updated, 0) + coalesce(rows_deleted, 0)) AS rows_published,"
        " count(*) AS publishes FROM sync.run_datasets"
        " WHERE community_code = %(c)s AND updated_at >= %(since)s AND phase = 'published'"
        " GROUP BY 1, dataset ORDER BY 1, dataset",
        {"c": community, "since": since, "tz": time_zone},
    )
