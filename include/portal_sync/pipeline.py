"""One run of a community's sync, as steps that Airflow tasks (or the CLI) call.

prepare -> (extract -> validate) per data set -> publish -> cleanup. Every step is
safe to retry: it first removes what an earlier attempt of the same run left (its
staging tables, its findings), and every hand-over goes through the portal database.
"""

from __future__ import annotations

import faulthandler
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
import pyodbc
from psycopg.types.json import Jsonb

from portal_sync import audit, stage
from portal_sync.config import Community
from portal_sync.datasets import DATASETS, ORGANIZATION, Dataset
from portal_sync.extract import ExtractStats, identifier_quote, select_sql, staged_schema
from portal_sync.freshness import cadence, freshness, is_due, last_published
from portal_sync.params import RunRequest
from portal_sync.publish import DeleteGuard, PublishInput, publish, refresh_statistics
from portal_sync.split_read import Read, read_all
from portal_sync.validate import DataQualityFailure, rules_for, table_checks_for, validate_staged
from portal_sync.windows import Window, local_bounds, plan_window, reconcile_due, source_timestamp_text

log = logging.getLogger("portal_sync")


class SyncError(RuntimeError):
    """A run step failed; the message names the community and the data set."""


class NotDue(SyncError):
    """The data set's cadence says it is not due in this run: skipped, visibly."""


@dataclass(frozen=True)
class RunContext:
    community: Community
    run_id: str
    portal_url: str
    source_odbc: str
    use_gx: bool = True
    interval_start: datetime | None = None  # the Airflow data interval, when the run has one
    interval_end: datetime | None = None
    request: RunRequest = field(default_factory=RunRequest)

    @property
    def run_key(self) -> str:
        return stage.run_key(self.community.code, self.run_id)

    def portal(self) -> psycopg.Connection:
        return psycopg.connect(self.portal_url, autocommit=True)


@dataclass(frozen=True)
class SourceOrganization:
    org_code: str
    org_name: str
    time_zone: str
    customer_number_mask: str


def read_organization(source_odbc: str) -> SourceOrganization:
    quote = identifier_quote(source_odbc)
    conn = pyodbc.connect(source_odbc, autocommit=True, timeout=30)
    try:
        rows = conn.cursor().execute(select_sql(ORGANIZATION, quote)).fetchall()
    finally:
        conn.close()
    if len(rows) != 1:
        raise SyncError(f"SM_Organization must hold exactly one row, found {len(rows)}")
    code, name, zone, mask = (str(v).strip() if v is not None else "" for v in rows[0])
    return SourceOrganization(code, name, zone, mask)


def prepare(ctx: RunContext) -> dict:
    """Open the run record and check the source really is this community's Caselle."""
    community = ctx.community
    org = read_organization(ctx.source_odbc)
    if org.org_code != community.source_org_code:
        raise SyncError(
            f"{community.code}: connection {community.caselle_conn_id} reaches the Caselle of "
            f"{org.org_code!r}, not {community.source_org_code!r}; refusing to sync another community's data"
        )
    zone = community.time_zone or org.time_zone
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise SyncError(f"{community.code}: time zone {zone!r} (SM_Organization.TimeZone) is unknown") from exc
    name = community.name or org.org_name
    datasets = run_datasets(ctx)
    now = datetime.now(UTC)
    with ctx.portal() as conn:
        audit.start_run(conn, ctx.run_key, community.code, ctx.run_id, datasets)
        conn.execute(
            "UPDATE sync.runs SET source_org_name = %s, time_zone = %s, customer_number_mask = %s WHERE run_key = %s",
            (name, zone, org.customer_number_mask or None, ctx.run_key),
        )
        marks = dict(conn.execute(
            "SELECT dataset, mark FROM sync.watermarks WHERE community_code = %s", (community.code,)
        ).fetchall())
        published = last_published(conn, community.code)
        plans = {}
        for ds_name in datasets:
            plan = plan_dataset(ctx, DATASETS[ds_name], marks.get(ds_name), ZoneInfo(zone), now)
            asked = ctx.request.datasets is not None or ctx.request.reconcile or ctx.request.window_start is not None
            if not asked and plan["mode"] != "reconcile" and not is_due(community, ds_name,
                                                                       published.get(ds_name), now):
                every = cadence(community, ds_name)
                plan = {"mode": "skipped", "window_start": None, "window_end": None,
                        "why": f"not due: last published {published[ds_name]:%Y-%m-%d %H:%M:%S%z}, cadence {every}"}
            plans[ds_name] = plan
            audit.update_dataset(conn, ctx.run_key, ds_name, mode=plan["mode"], window_start=plan["window_start"],
                                 window_end=plan["window_end"], mark_before=marks.get(ds_name))
            if plan["mode"] == "skipped":
                audit.update_dataset(conn, ctx.run_key, ds_name, phase="skipped", error=plan["why"])
    log.info("%s: run %s prepared (time zone %s): %s", community.code, ctx.run_key, zone,
             "; ".join(f"{k} {_describe_plan(v)}" for k, v in plans.items()))
    return {"run_key": ctx.run_key, "time_zone": zone, "name": name}


def run_datasets(ctx: RunContext) -> tuple[str, ...]:
    """The data sets this run syncs: the community's, narrowed by a trigger parameter."""
    wanted = ctx.request.datasets
    if wanted is None:
        return ctx.community.datasets
    not_enabled = [n for n in wanted if n not in ctx.community.datasets]
    if not_enabled:
        raise SyncError(f"{ctx.community.code}: data set(s) {not_enabled} are not enabled for this community")
    return tuple(n for n in ctx.community.datasets if n in wanted)


def plan_dataset(ctx: RunContext, ds: Dataset, mark: datetime | None, zone: ZoneInfo, now: datetime) -> dict:
    """How this run reads a data set: full snapshot, a window, or a reconciliation."""
    request = ctx.request
    if not ds.incremental:
        return {"mode": "full", "window_start": None, "window_end": None}
    if request.window_start is not None:
        return {"mode": "window", "window_start": request.window_start, "window_end": request.window_end}
    window = plan_window(mark=mark, interval_start=ctx.interval_start, interval_end=ctx.interval_end, now=now,
                         look_back=timedelta(minutes=ctx.community.look_back_minutes))
    if window is None:
        return {"mode": "full", "window_start": None, "window_end": None}
    due = reconcile_due(ctx.community.reconcile_schedule, zone, window.start, window.end)
    if request.reconcile or due:
        since = None if request.reconcile_all_history else now - timedelta(days=ctx.community.reconcile_days)
        return {"mode": "reconcile", "window_start": since, "window_end": window.end}
    return {"mode": "window", "window_start": window.start, "window_end": window.end}


def _describe_plan(plan: dict) -> str:
    if plan["mode"] == "skipped":
        return plan["why"]
    if plan["mode"] == "window":
        return f"window {plan['window_start']:%Y-%m-%d %H:%M:%S%z} .. {plan['window_end']:%Y-%m-%d %H:%M:%S%z}"
    if plan["mode"] == "reconcile":
        since = plan["window_start"]
        return "reconcile " + (f"contents since {since:%Y-%m-%d}" if since else "all history")
    return "full"


def extract_dataset(ctx: RunContext, name: str) -> int:
    """Stage every extract of one data set; return the rows staged for its primary extract."""
    community = ctx.community.code
    ds = DATASETS[name]
    started = time.monotonic()
    if not faulthandler.is_enabled():
        # An ODBC driver can crash the process (psqlODBC did, 2 times in 30, when its server died
        # mid-fetch: docs/faults.md); then the task log still shows the Python stack of the read,
        # after the "reading" line that names the community and data set.
        try:
            faulthandler.enable()
        except (OSError, ValueError):  # stderr replaced by a stream without a file descriptor
            log.debug("faulthandler not enabled: stderr has no file descriptor")
    with ctx.portal() as conn:
        row = audit.dataset_rows(conn, ctx.run_key)[name]
        if row["phase"] == "skipped":
            raise NotDue(f"{community} {name}: {row['error']}")
        try:
            zone = ZoneInfo(conn.execute("SELECT time_zone FROM sync.runs WHERE run_key = %s",
                                         (ctx.run_key,)).fetchone()[0])
            quarantined = [k for (k,) in conn.execute(
                "SELECT DISTINCT row_key FROM sync.quarantine WHERE community_code = %s AND dataset = %s",
                (community, name),
            ).fetchall()]
            read_at = datetime.now(UTC)
            quote = identifier_quote(ctx.source_odbc)
            tables: dict[str, str] = {}
            primary_rows = 0
            extracts = list(ds.extracts)
            if row["mode"] == "reconcile" and ds.reconcile_keys is not None:
                extracts.append(ds.reconcile_keys)
            for extract in extracts:
                table = stage.stage_table_name(ctx.run_key, name, extract)
                stage.create_table(conn, table, extract)
                tables[extract.name] = table
                stats = ExtractStats()
                reads = primary_reads(ds, row, zone, quarantined, quote) if extract is ds.primary else [(None, None)]
                log.info("%s %s: reading %s (%s)", community, name, extract.table, row["mode"])

                streams = 1 if row["mode"] == "window" else ctx.community.read_streams
                batches = read_all(ctx.source_odbc, extract, quote, reads, stats=stats, streams=streams)
                stage.load_batches(ctx.portal_url, table, staged_schema(extract), batches)
                stage.finish_table(conn, table, extract)
                if extract is ds.primary:
                    primary_rows = stats.rows
            audit.update_dataset(
                conn, ctx.run_key, name, phase="staged", rows_extracted=primary_rows,
                staging_tables=[f"{k}={v}" for k, v in tables.items()], extract_started_at=read_at,
                extract_seconds=round(time.monotonic() - started, 3), error=None,
            )
        except Exception as exc:
            message = f"{community} {name}: extract failed: {type(exc).__name__}: {exc}"
            _record_failure(conn, ctx.run_key, name, message)
            raise SyncError(message) from exc
    log.info("%s %s: staged %d rows (%s) in %.1fs", community, name, primary_rows, row["mode"],
             time.monotonic() - started)
    return primary_rows


def _record_failure(conn: psycopg.Connection, run_key: str, name: str, message: str) -> None:
    """Note a step's failure in its audit row; when the portal database itself is what failed, the
    step still raises its own message (community, data set) instead of the audit write's error."""
    try:
        audit.update_dataset(conn, run_key, name, phase="failed", error=message[:2000])
    except psycopg.Error as exc:
        log.warning("%s: the failure could not be recorded in sync.run_datasets: %s", run_key, exc)


QUARANTINE_CHUNK = 200


def primary_reads(ds: Dataset, row: dict, zone: ZoneInfo, quarantined: list[str],
                  quote: str) -> list[Read]:
    """The (ANSI WHERE, parameters) reads that make up the primary extract in this run's mode.

    Quarantined keys outside the read are fetched again so that a refused row is retried
    on every run, and excluded from the key read to avoid staging a row twice.
    """
    mode = row["mode"]
    q = lambda name: f"{quote}{name}{quote}"  # noqa: E731
    if mode == "full" or (mode == "reconcile" and row["window_start"] is None):
        return [(None, None)]
    if mode == "window":
        naive_start, naive_end = local_bounds(Window(row["window_start"], row["window_end"]), zone)
        bounds = [source_timestamp_text(naive_start), source_timestamp_text(naive_end, round_up=True)]
        where = " OR ".join(f"({q(c)} >= ? AND {q(c)} < ?)" for c in ds.signals)
        params = bounds * len(ds.signals)
    else:  # reconcile: contents over the configured range (keys of all rows come from reconcile_keys)
        column = ds.reconcile_date_column
        if column is None:
            return [(None, None)]
        since = row["window_start"].astimezone(zone).date().isoformat()
        where, params = f"{q(column)} >= ?", [since]
    reads: list[Read] = [(f"({where})", params)]
    key = q(ds.primary.key[0])
    numeric = [k for k in quarantined if k.lstrip("-").isdigit()]
    for i in range(0, len(numeric), QUARANTINE_CHUNK):
        chunk = numeric[i:i + QUARANTINE_CHUNK]
        marks = ", ".join("?" for _ in chunk)
        reads.append((f"{key} IN ({marks}) AND NOT ({where})", [*chunk, *params]))
    return reads


def _staged_tables(row: dict) -> dict[str, str]:
    return dict(item.split("=", 1) for item in row["staging_tables"])


def validate_dataset(ctx: RunContext, name: str) -> dict[str, int]:
    """Run the data set's rules; refused rows are recorded and will not publish."""
    community = ctx.community.code
    ds = DATASETS[name]
    started = time.monotonic()
    with ctx.portal() as conn:
        row = audit.dataset_rows(conn, ctx.run_key)[name]
        if row["phase"] == "skipped":
            raise NotDue(f"{community} {name}: {row['error']}")
        if row["phase"] not in ("staged", "validated"):
            raise SyncError(f"{community} {name}: nothing staged to validate (phase {row['phase']})")
        try:
            conn.execute("DELETE FROM sync.run_findings WHERE run_key = %s AND dataset = %s", (ctx.run_key, name))
            quality = ctx.community.quality
            mask = conn.execute("SELECT customer_number_mask FROM sync.runs WHERE run_key = %s",
                                (ctx.run_key,)).fetchone()[0]
            previous = conn.execute(
                "SELECT d.rows_extracted FROM sync.run_datasets d JOIN sync.runs r USING (run_key)"
                " WHERE d.community_code = %s AND d.dataset = %s AND d.phase = 'published' AND d.mode = 'full'"
                " AND d.run_key <> %s ORDER BY r.started_at DESC LIMIT 1",
                (community, name, ctx.run_key),
            ).fetchone()
            outcomes = validate_staged(
                conn, pg_url=ctx.portal_url, run_key=ctx.run_key, community=community, dataset=ds,
                tables=_staged_tables(row), use_gx=ctx.use_gx, rules=rules_for(ds, quality, mask=mask),
                gx_max_rows=quality.gx_max_rows, staged_rows=row["rows_extracted"],
                table_checks=table_checks_for(ds, quality, mode=row["mode"] or "full",
                                              previous_rows=previous[0] if previous else None),
            )
            refused, warned = conn.execute(
                "SELECT count(DISTINCT row_id) FILTER (WHERE severity = 'refuse'),"
                " count(DISTINCT row_id) FILTER (WHERE severity = 'warn')"
                " FROM sync.run_findings WHERE run_key = %s AND dataset = %s",
                (ctx.run_key, name),
            ).fetchone()
            audit.update_dataset(
                conn, ctx.run_key, name, phase="validated", rows_refused=refused, rows_warned=warned,
                validate_seconds=round(time.monotonic() - started, 3), error=None,
            )
        except Exception as exc:
            message = f"{community} {name}: validation could not run: {type(exc).__name__}: {exc}"
            _record_failure(conn, ctx.run_key, name, message)
            raise SyncError(message) from exc
        record_results(conn, ctx.run_key, community, name, outcomes, row["rows_extracted"])
        failing = [o for o in outcomes if o.failing_rows]
        stopped = [o for o in failing if o.kind == "table" and o.severity == "fail"]
        if stopped:
            message = f"{community} {name}: not published, table check(s) failed: " + "; ".join(
                f"{o.rule} ({o.description}; observed {o.observed})" for o in stopped)
            audit.update_dataset(conn, ctx.run_key, name, phase="failed", error=message[:2000])
            _report(ctx)
            raise DataQualityFailure(message)
        for outcome in outcomes:
            if outcome.failing_rows:
                examples = conn.execute(
                    "SELECT row_key, reason FROM sync.run_findings WHERE run_key = %s AND dataset = %s AND rule = %s"
                    " ORDER BY row_id LIMIT 3",
                    (ctx.run_key, name, outcome.rule),
                ).fetchall()
                shown = "; ".join(f"key {k}: {r}" for k, r in examples)
                log.warning("%s %s: rule %s %s %d row(s), e.g. %s", community, name, outcome.rule,
                            "refused" if outcome.severity == "refuse" else "warned about", outcome.failing_rows, shown)
    log.info("%s %s dq: %d checks, %d failed%s; report %s", community, name, len(outcomes), len(failing),
             "".join(f", {o.rule} {_PAST[o.severity]} {o.failing_rows}" for o in failing), _report(ctx))
    return {o.rule: o.failing_rows for o in outcomes}


_PAST = {"refuse": "refused", "warn": "warned"}


def _report(ctx: RunContext) -> str:
    """Refresh the run's page of the data-quality report; a report problem never fails the sync."""
    try:
        from portal_sync.dq_report import build_run_report

        return build_run_report(ctx.portal_url, ctx.community.code, ctx.run_key).as_uri()
    except Exception as exc:  # the report is a view of the database: rebuilt on the next run
        log.warning("%s: data-quality report not written: %s", ctx.community.code, exc)
        return "(not written)"


def report(ctx: RunContext) -> str:
    """Final report of the run (after publish), pruning runs past the retention."""
    from portal_sync.dq_report import prune, summary_line

    location = _report(ctx)
    removed = prune(ctx.portal_url, ctx.community.code, ctx.community.report_keep_days)
    line = summary_line(ctx.portal_url, ctx.community.code, ctx.run_key)
    log.info("%s (report %s; %d old run page(s) pruned)", line, location, removed)
    return line


def record_results(conn: psycopg.Connection, run_key: str, community: str, dataset: str,
                   outcomes: list, element_count: int | None) -> None:
    """Every check's result, pass or fail, for the report and dashboards (sync.dq_results)."""
    conn.execute("DELETE FROM sync.dq_results WHERE run_key = %s AND dataset = %s", (run_key, dataset))
    for outcome in outcomes:
        examples = conn.execute(
            "SELECT row_key, reason FROM sync.run_findings WHERE run_key = %s AND dataset = %s AND rule = %s"
            " ORDER BY row_id LIMIT 5",
            (run_key, dataset, outcome.rule),
        ).fetchall()
        observed = {"examples": [{"key": k, "reason": r} for k, r in examples]}
        if outcome.kind == "table":
            observed = {"observed_value": outcome.observed}
        conn.execute(
            "INSERT INTO sync.dq_results (run_key, community_code, dataset, rule, description, kind, severity,"
            " success, failing_rows, element_count, observed) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (run_key, community, dataset, outcome.rule, outcome.description, outcome.kind, outcome.severity,
             outcome.failing_rows == 0, outcome.failing_rows if outcome.kind == "row" else 0, element_count,
             Jsonb(observed)),
        )


def publish_run(ctx: RunContext) -> dict[str, dict]:
    """Publish every validated data set of the run in one transaction; fail if any data set did not make it."""
    community = ctx.community
    with ctx.portal() as conn:
        run = conn.execute(
            "SELECT source_org_name, time_zone, datasets FROM sync.runs WHERE run_key = %s", (ctx.run_key,)
        ).fetchone()
        if run is None:
            raise SyncError(f"{community.code}: run {ctx.run_key} was never prepared")
        org_name, zone, datasets = run
        rows = audit.dataset_rows(conn, ctx.run_key)
        ready = [name for name in datasets if rows[name]["phase"] in ("validated", "published")]
        missing = [name for name in datasets if name not in ready and rows[name]["phase"] != "skipped"]
        if ctx.request.dry_run:
            for name in ready:
                log.info("%s %s: dry run, validated and not published", community.code, name)
            audit.finish_run(conn, ctx.run_key, "dry_run")
            return {name: rows[name] for name in datasets}
        inputs = [
            PublishInput(DATASETS[name], _staged_tables(rows[name]), mode=rows[name]["mode"] or "full",
                         read_at=rows[name]["extract_started_at"], new_mark=_new_mark(rows[name]))
            for name in ready
        ]
        refused: dict[str, str] = {}
        if inputs:
            guard = DeleteGuard(community.max_delete_share, community.mass_delete_min_rows,
                                ctx.request.allow_mass_delete)
            try:
                outcome = publish(
                    conn, community=community.code, community_name=org_name, time_zone=zone, run_key=ctx.run_key,
                    inputs=inputs, enabled=community.datasets, visible_statuses=community.visible_statuses,
                    guard=guard,
                )
            except psycopg.Error as exc:  # e.g. the portal database restarted mid-transaction
                raise SyncError(f"{community.code}: publish failed ({', '.join(ready)}): "
                                f"{type(exc).__name__}: {exc}".strip()) from exc
            for name, c in outcome.counts.items():
                audit.update_dataset(
                    conn, ctx.run_key, name, phase="published", rows_inserted=c.inserted, rows_updated=c.updated,
                    rows_unchanged=c.unchanged, rows_deleted=c.deleted, rows_restored=c.restored,
                    rows_archived=c.archived, rows_superseded=c.superseded, publish_seconds=c.seconds,
                    mark_after=c.mark_after,
                )
            for name, why in outcome.refused.items():
                audit.update_dataset(conn, ctx.run_key, name, phase="failed", error=why[:2000])
            refused = outcome.refused
            try:
                refresh_statistics(conn, outcome.counts)
            except psycopg.Error as exc:  # statistics are an optimisation: the publish has committed
                log.warning("%s: ANALYZE after the publish failed: %s", community.code, exc)
        final = audit.dataset_rows(conn, ctx.run_key)
        results = {}
        for name in datasets:
            log.info(audit.summary_line(community.code, name, final[name]))
            results[name] = final[name]
        failed = missing + list(refused)
        if failed:
            errors = "; ".join(f"{name}: {final[name]['error'] or final[name]['phase']}" for name in failed)
            outcome_name = "partly_published" if len(failed) < len(ready) + len(missing) else "nothing_published"
            audit.finish_run(conn, ctx.run_key, outcome_name, errors[:4000])
            raise SyncError(f"{community.code}: not published: {errors}")
        audit.finish_run(conn, ctx.run_key, "published")
    return results


def _new_mark(row: dict) -> datetime | None:
    """Where the mark may move after this publish: the window end, or the read start of a full read."""
    if not DATASETS[row["dataset"]].incremental:
        return None
    if row["mode"] == "window":
        return row["window_end"]
    return row["extract_started_at"]


def cleanup(ctx: RunContext) -> list[str]:
    """Drop the run's staging tables whatever the outcome (also those of killed attempts)."""
    with ctx.portal() as conn:
        dropped = stage.drop_run_tables(conn, ctx.run_key)
        conn.execute(
            "UPDATE sync.runs SET finished_at = coalesce(finished_at, now()),"
            " outcome = CASE WHEN outcome = 'running' THEN 'failed' ELSE outcome END WHERE run_key = %s",
            (ctx.run_key,),
        )
    log.info("%s: dropped %d staging table(s) of run %s", ctx.community.code, len(dropped), ctx.run_key)
    return dropped


class StaleData(SyncError):
    """A data set has not published within freshness_factor times its cadence."""


def check_freshness(ctx: RunContext) -> list[str]:
    """The run's freshness check: fails (an alert) when any enabled data set is stale."""
    with ctx.portal() as conn:
        states = freshness(conn, ctx.community)
    for state in states:
        (log.error if state.stale else log.info)("%s %s", ctx.community.code, state.describe())
    stale = [s.describe() for s in states if s.stale]
    if stale:
        raise StaleData(f"{ctx.community.code}: stale portal data: " + "; ".join(stale))
    return [s.describe() for s in states]


def _stage_and_check(ctx: RunContext, name: str) -> None:
    try:
        extract_dataset(ctx, name)
        validate_dataset(ctx, name)
    except NotDue as exc:
        log.info("%s", exc)
    except (SyncError, DataQualityFailure) as exc:
        log.error("%s", exc)


def run_sync(ctx: RunContext) -> dict[str, dict]:
    """Every step in this process (CLI, tests); a failing data set does not stop the others.

    Data sets are extracted and validated ``parallel_datasets`` at a time, as the DAG's tasks
    would be (each step has its own connections; staging tables are per data set), the longest
    first (``audit.longest_first``), so that the ledger's read overlaps the small data sets'
    work instead of following it. The publish stays one transaction for all of them.
    """
    prepare(ctx)
    try:
        with ctx.portal() as conn:
            names = audit.longest_first(conn, ctx.community.code, run_datasets(ctx))
        with ThreadPoolExecutor(max_workers=ctx.community.parallel_datasets,
                                thread_name_prefix=f"sync-{ctx.community.code}") as pool:
            for done in [pool.submit(_stage_and_check, ctx, name) for name in names]:
                done.result()  # an unexpected error (not a data set's own failure) still ends the run
        return publish_run(ctx)
    finally:
        cleanup(ctx)
        try:
            report(ctx)
        except Exception as exc:  # never hide the run's own outcome behind a report problem
            log.warning("%s: report failed: %s", ctx.community.code, exc)
