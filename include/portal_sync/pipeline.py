"""One run of a community's sync, as steps that Airflow tasks (or the CLI) call.

prepare -> (extract -> validate) per data set -> publish -> cleanup. Every step is
safe to retry: it first removes what an earlier attempt of the same run left (its
staging tables, its findings), and every hand-over goes through the run store in the
portal database (portal_sync.store). What each data set reads is planned by plan.py.
"""

from __future__ import annotations

import faulthandler
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
import pyarrow as pa

from portal_sync import probe, source, stage
from portal_sync.config import Community
from portal_sync.datasets import DATASETS, Extract
from portal_sync.extract import ExtractStats, Read, read_extract, staged_schema
from portal_sync.freshness import freshness
from portal_sync.params import RunRequest, RunRequestError
from portal_sync.plan import DatasetPlan, PlanError, plan_run, primary_reads
from portal_sync.plan import run_datasets as planned_datasets
from portal_sync.progress import Progress
from portal_sync.publish import DeleteGuard, MassDeleteRefused, PublishInput, publish, refresh_statistics
from portal_sync.rules import rules_for, table_checks_for
from portal_sync.sqltext import quote_pg_ident
from portal_sync.store import marks, quality, runs
from portal_sync.store.runs import DatasetRun, RunRecord
from portal_sync.validate import DataQualityFailure, RuleOutcome, validate_staged

log = logging.getLogger("portal_sync")


class SyncError(RuntimeError):
    """A run step failed; the message names the community and the data set.

    ``retryable``: whether trying again may help (a source or database outage), as opposed to a
    verdict on the data (a refused table check, the delete guard) that a retry would repeat.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class NotDue(SyncError):
    """The data set's cadence says it is not due in this run: skipped, visibly."""


class StaleData(SyncError):
    """A data set has not published within freshness_factor times its cadence."""


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


def prepare(ctx: RunContext) -> dict:
    """Open the run record, check the source really is this community's Caselle, plan every data set."""
    community = ctx.community
    try:
        org = source.read_organization(ctx.source_odbc)
    except source.SourceError as exc:
        raise SyncError(str(exc)) from exc
    if org.org_code != community.source_org_code:
        raise SyncError(
            f"{community.code}: connection {community.caselle_conn_id} reaches the Caselle of "
            f"{org.org_code!r}, not {community.source_org_code!r}; refusing to sync another community's data",
            retryable=False,
        )
    zone = community.time_zone or org.time_zone
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise SyncError(f"{community.code}: time zone {zone!r} (SM_Organization.TimeZone) is unknown",
                        retryable=False) from exc
    name = community.name or org.org_name
    datasets = run_datasets(ctx)
    with ctx.portal() as conn:
        runs.start_run(conn, ctx.run_key, community.code, ctx.run_id, datasets)
        runs.record_source(conn, ctx.run_key, org_name=name, time_zone=zone,
                           customer_number_mask=org.customer_number_mask or None)
        marks_now = marks.marks(conn, community.code)
        plans = plan_run(community, ctx.request, marks=marks_now, published=runs.last_published(conn, community.code),
                         interval_start=ctx.interval_start, interval_end=ctx.interval_end, zone=ZoneInfo(zone),
                         now=datetime.now(UTC))
        for plan in plans.values():
            skipped = {"phase": "skipped", "error": plan.why} if plan.mode == "skipped" else {}
            runs.update_dataset(conn, ctx.run_key, plan.dataset, mode=plan.mode, window_start=plan.window_start,
                                window_end=plan.window_end, changes_since=plan.changes_since,
                                mark_before=marks_now.get(plan.dataset), **skipped)
    _sweep(ctx)
    log.info("%s: run %s prepared (time zone %s): %s", community.code, ctx.run_key, zone,
             "; ".join(f"{k} {v.describe()}" for k, v in plans.items()))
    return {"run_key": ctx.run_key, "time_zone": zone, "name": name}


def _sweep(ctx: RunContext) -> None:
    """Remove what dead runs of this community left (staging tables, ``running`` records): a killed
    run never reaches its cleanup. A live run, this one included, is left alone (stage.sweep_orphans)."""
    try:
        with ctx.portal() as conn:
            swept = stage.sweep_orphans(conn, ctx.community.code)
    except psycopg.Error as exc:  # housekeeping: never the reason a run fails
        log.warning("%s: sweep of abandoned runs failed: %s", ctx.community.code, exc)
        return
    if swept.abandoned_runs or swept.dropped_tables:
        log.warning("%s: closed %d abandoned run(s) (%s) and dropped %d staging table(s) they left",
                    ctx.community.code, len(swept.abandoned_runs), ", ".join(swept.abandoned_runs),
                    len(swept.dropped_tables))


def run_datasets(ctx: RunContext) -> tuple[str, ...]:
    """The data sets this run syncs: the community's, narrowed by a trigger parameter."""
    try:
        return planned_datasets(ctx.community, ctx.request)
    except PlanError as exc:
        raise SyncError(str(exc)) from exc


def _dataset_run(conn: psycopg.Connection, ctx: RunContext, name: str) -> DatasetRun:
    """The data set's row of this run; a data set prepare skipped raises NotDue."""
    row = runs.dataset_runs(conn, ctx.run_key)[name]
    if row.phase == "skipped":
        raise NotDue(f"{ctx.community.code} {name}: {row.error}")
    return row


def _run_record(conn: psycopg.Connection, ctx: RunContext) -> RunRecord:
    run = runs.run_record(conn, ctx.run_key)
    if run is None:
        raise SyncError(f"{ctx.community.code}: run {ctx.run_key} was never prepared")
    return run


def _enable_faulthandler() -> None:
    """An ODBC driver can crash the process (docs/faults.md); then the task log still shows the
    Python stack of the read, after the "reading" line that names the community and data set."""
    if faulthandler.is_enabled():
        return
    try:
        faulthandler.enable()
    except (OSError, ValueError):  # stderr replaced by a stream without a file descriptor
        log.debug("faulthandler not enabled: stderr has no file descriptor")


def extract_dataset(ctx: RunContext, name: str, *, probe_first: bool = True) -> int:
    """Read one data set; return the rows read for its primary extract.

    A read small enough to hold (``probe.HOLD_ROWS``) is first compared with the portal in
    memory: a data set with nothing to publish ends here as ``unchanged``, with no staging
    table made. Everything else is staged, as before, for the checks and the merge.
    """
    community = ctx.community.code
    ds = DATASETS[name]
    started = time.monotonic()
    _enable_faulthandler()
    with ctx.portal() as conn:
        row = _dataset_run(conn, ctx, name)
        try:
            run = _run_record(conn, ctx)
            zone_name = run.time_zone or "UTC"
            zone = ZoneInfo(zone_name)
            mode = row.mode or "full"
            plan = DatasetPlan(name, row.mode, row.window_start, row.window_end,  # type: ignore[arg-type]
                               changes_since=row.changes_since)
            quarantined = quality.quarantined_keys(conn, community, name)
            reads = primary_reads(ds, plan, zone, quarantined, source.dialect_of(ctx.source_odbc))
            read_at = datetime.now(UTC)
            extracts = list(ds.extracts)
            if mode == "reconcile" and ds.reconcile_keys is not None:
                extracts.append(ds.reconcile_keys)
            reads_of = {e.name: reads if e is ds.primary else [(None, None)] for e in extracts}
            held: dict[str, list[pa.RecordBatch]] = {}
            # Worth holding: a window, or a snapshot the last one of which was small. A first load (all
            # of it new) and a city's snapshot go straight to staging, in parallel streams.
            last = None if mode == "window" else runs.previous_snapshot_rows(conn, community, name, ctx.run_key)
            holdable = mode == "window" or (last is not None and last <= probe.HOLD_ROWS)
            if probe_first and holdable and not quarantined and not ctx.request.dry_run:
                held = _hold(ctx, name, extracts, mode, reads_of)
            if held and not probe.has_work(conn, ds, mode=mode, held=held, community=community, run_key=ctx.run_key,
                                           read_at=read_at, enabled=ctx.community.datasets, time_zone=zone_name,
                                           visible_statuses=ctx.community.visible_statuses,
                                           rules=rules_for(ds, ctx.community.quality, mask=run.customer_number_mask)):
                primary_rows = sum(b.num_rows for b in held[ds.primary.name])
                runs.update_dataset(conn, ctx.run_key, name, phase="unchanged", rows_extracted=primary_rows,
                                    extract_started_at=read_at, extract_seconds=round(time.monotonic() - started, 3),
                                    error=None)
                log.info("%s %s: %d rows read (%s), nothing to publish; no table staged in %.1fs", community,
                         name, primary_rows, mode, time.monotonic() - started)
                return primary_rows
            tables = {e.name: stage.stage_table_name(ctx.run_key, name, e) for e in extracts}
            rows_read = {}
            for extract in extracts:
                rows_read[extract.name] = _stage_extract(ctx, conn, name, extract, tables[extract.name], mode,
                                                         reads_of[extract.name], held.get(extract.name))
            primary_rows = rows_read[ds.primary.name]
            runs.update_dataset(
                conn, ctx.run_key, name, phase="staged", rows_extracted=primary_rows,
                staging_tables=[f"{k}={v}" for k, v in tables.items()], extract_started_at=read_at,
                extract_seconds=round(time.monotonic() - started, 3), error=None,
            )
        except Exception as exc:
            message = f"{community} {name}: extract failed: {type(exc).__name__}: {exc}"
            _record_failure(conn, ctx.run_key, name, message)
            raise SyncError(message, retryable=_retryable(exc)) from exc
    log.info("%s %s: staged %d rows (%s) in %.1fs", community, name, primary_rows, row.mode,
             time.monotonic() - started)
    return primary_rows


def _hold(ctx: RunContext, name: str, extracts: list[Extract], mode: str,
          reads_of: dict[str, list[Read]]) -> dict[str, list[pa.RecordBatch]]:
    """The needed extracts read into memory, or {} when together they pass ``probe.HOLD_ROWS``."""
    held: dict[str, list[pa.RecordBatch]] = {}
    total = 0
    for extract in extracts:
        log.info("%s %s: reading %s (%s)", ctx.community.code, name, extract.table, mode)
        batches = []
        reader = read_extract(ctx.source_odbc, extract, reads_of[extract.name], stats=ExtractStats(), streams=1,
                              expected_org=ctx.community.source_org_code)
        try:
            for batch in reader:
                total += batch.num_rows
                if total > probe.HOLD_ROWS:
                    return {}  # too big to hold: staged as it streams (read again, in parallel streams)
                batches.append(batch)
        finally:
            reader.close()
        held[extract.name] = batches
    return held


def _stage_extract(ctx: RunContext, conn: psycopg.Connection, name: str, extract: Extract, table: str, mode: str,
                   reads: list[Read], held: list[pa.RecordBatch] | None = None) -> int:
    """Load one extract into a fresh staging table (from memory when held); return the rows read."""
    stage.create_table(conn, table, extract)
    if held is not None:
        stage.load_batches(ctx.portal_url, table, staged_schema(extract), iter(held))
        stage.finish_table(conn, table, extract)
        return sum(b.num_rows for b in held)
    stats = ExtractStats()
    log.info("%s %s: reading %s (%s)", ctx.community.code, name, extract.table, mode)
    streams = 1 if mode == "window" else ctx.community.read_streams
    batches = read_extract(ctx.source_odbc, extract, reads, stats=stats, streams=streams,
                           expected_org=ctx.community.source_org_code)
    with Progress(f"{ctx.community.code} {name}: reading {extract.table} into staging") as progress:
        stage.load_batches(ctx.portal_url, table, staged_schema(extract), progress.batches(batches))
    stage.finish_table(conn, table, extract)
    return stats.rows


def _retryable(exc: BaseException) -> bool:
    """Whether a data set's failure may pass on a retry: not a verdict on the data or the source's
    shape, which the same rows would repeat."""
    deterministic = (DataQualityFailure, MassDeleteRefused, PlanError, RunRequestError)
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, deterministic) or getattr(seen, "retryable", True) is False:
            return False
        seen = seen.__cause__
    return True


def _record_failure(conn: psycopg.Connection, run_key: str, name: str, message: str) -> None:
    """Note a step's failure in its data set's row; when the portal database itself is what failed,
    the step still raises its own message (community, data set) instead of the store's error."""
    try:
        runs.update_dataset(conn, run_key, name, phase="failed", error=message[:2000])
    except psycopg.Error as exc:
        log.warning("%s: the failure of %s could not be recorded in the run store: %s", run_key, name, exc)


def validate_dataset(ctx: RunContext, name: str) -> dict[str, int]:
    """Run the data set's rules; refused rows are recorded and will not publish."""
    community = ctx.community.code
    started = time.monotonic()
    with ctx.portal() as conn:
        row = _dataset_run(conn, ctx, name)
        if row.phase == "unchanged":
            return {}  # nothing would publish: nothing to check (probe.py)
        if row.phase not in ("staged", "validated"):
            raise SyncError(f"{community} {name}: nothing staged to validate (phase {row.phase})")
        try:
            outcomes = _run_checks(ctx, conn, row)
            refused, warned = quality.finding_counts(conn, ctx.run_key, name)
            runs.update_dataset(
                conn, ctx.run_key, name, phase="validated", rows_refused=refused, rows_warned=warned,
                validate_seconds=round(time.monotonic() - started, 3), error=None,
            )
        except Exception as exc:
            message = f"{community} {name}: validation could not run: {type(exc).__name__}: {exc}"
            _record_failure(conn, ctx.run_key, name, message)
            raise SyncError(message) from exc
        quality.record_results(conn, ctx.run_key, community, name, outcomes, row.rows_extracted)
        failing = [o for o in outcomes if o.failing_rows]
        stopped = [o for o in failing if o.kind == "table" and o.severity == "fail"]
        if stopped:
            message = f"{community} {name}: not published, table check(s) failed: " + "; ".join(
                f"{o.rule} ({o.description}; observed {o.observed})" for o in stopped)
            runs.update_dataset(conn, ctx.run_key, name, phase="failed", error=message[:2000])
            _report(ctx)
            raise DataQualityFailure(message)
        for outcome in failing:
            shown = "; ".join(f"key {k}: {r}" for k, r in quality.examples(conn, ctx.run_key, name, outcome.rule))
            log.warning("%s %s: rule %s %s %d row(s), e.g. %s", community, name, outcome.rule,
                        "refused" if outcome.severity == "refuse" else "warned about", outcome.failing_rows, shown)
    log.info("%s %s dq: %d checks, %d failed%s; report %s", community, name, len(outcomes), len(failing),
             "".join(f", {o.rule} {_PAST[o.severity]} {o.failing_rows}" for o in failing), _report(ctx))
    return {o.rule: o.failing_rows for o in outcomes}


_PAST = {"refuse": "refused", "warn": "warned"}


def _run_checks(ctx: RunContext, conn: psycopg.Connection, row: DatasetRun) -> list[RuleOutcome]:
    """The data set's row rules and table checks over what this run staged (findings recorded afresh)."""
    ds, quality_settings = DATASETS[row.dataset], ctx.community.quality
    quality.clear_findings(conn, ctx.run_key, row.dataset)
    run = _run_record(conn, ctx)
    previous = runs.previous_snapshot_rows(conn, ctx.community.code, row.dataset, ctx.run_key)
    return validate_staged(
        conn, pg_url=ctx.portal_url, run_key=ctx.run_key, community=ctx.community.code, dataset=ds,
        tables=row.staged_tables, use_gx=ctx.use_gx,
        rules=rules_for(ds, quality_settings, mask=run.customer_number_mask),
        changed_rows=_changed_rows(ctx, conn, row, run) if ctx.use_gx else None, staged_rows=row.rows_extracted,
        table_checks=table_checks_for(ds, quality_settings, mode=row.mode or "full", previous_rows=previous),
    )


def _changed_rows(ctx: RunContext, conn: psycopg.Connection, row: DatasetRun, run: RunRecord) -> str | None:
    """SQL over the staged row ``s``: the rows this run would publish, the ones Great Expectations
    validates (its cost follows the change); None in a first load, where every row is new."""
    ds = DATASETS[row.dataset]
    if not conn.execute(f"SELECT EXISTS (SELECT 1 FROM portal.{quote_pg_ident(ds.portal_table)}"
                        " WHERE community_code = %s)", (ctx.community.code,)).fetchone()[0]:
        return None
    table = stage.row_ids_table_name(ctx.run_key, row.dataset, "changed")
    relations = {name: stage.qualified(t) for name, t in row.staged_tables.items()}
    select = probe.changed_rows_sql(ds, row.mode or "full", relations=relations, enabled=ctx.community.datasets)
    stage.save_row_ids(conn, table, select, {
        "community": ctx.community.code, "run_key": ctx.run_key, "dataset": row.dataset,
        "read_at": row.extract_started_at, "tz": run.time_zone or "UTC",
        "visible_statuses": list(ctx.community.visible_statuses)})
    return f's."_row_id" IN (SELECT "_row_id" FROM {stage.qualified(table)})'


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


@dataclass(frozen=True)
class SyncOutcome:
    """What a run did, per data set, and which data sets did not publish and why."""

    datasets: dict[str, dict]  # name -> DatasetRun.as_dict()
    failed: list[dict]  # {"dataset", "error", "retryable"} per data set that did not publish

    @property
    def retryable(self) -> bool:
        return any(f["retryable"] for f in self.failed)

    @property
    def message(self) -> str:
        return "; ".join(f"{f['dataset']}: {f['error']}" for f in self.failed)


def publish_run(ctx: RunContext) -> dict[str, dict]:
    """Publish every validated data set of the run in one transaction; fail if any data set did not make it.

    Returns each data set's row of the run (``DatasetRun.as_dict()``), by name.
    """
    outcome = _publish(ctx)
    if outcome.failed:
        raise SyncError(f"{ctx.community.code}: not published: {outcome.message}", retryable=outcome.retryable)
    return outcome.datasets


def _publish(ctx: RunContext, failures: dict[str, bool] | None = None) -> SyncOutcome:
    """The publish step; ``failures`` tells, for data sets that failed earlier in this process,
    whether a retry may help (unknown ones count as retryable)."""
    community = ctx.community
    failures = failures or {}
    _restage_dependents(ctx)
    with ctx.portal() as conn:
        run = _run_record(conn, ctx)
        rows = runs.dataset_runs(conn, ctx.run_key)
        ready = [name for name in run.datasets if rows[name].phase in ("validated", "published", "unchanged")]
        missing = [name for name in run.datasets if name not in ready and rows[name].phase != "skipped"]
        if ctx.request.dry_run:
            for name in ready:
                log.info("%s %s: dry run, validated and not published", community.code, name)
            runs.finish_run(conn, ctx.run_key, "dry_run")
            return SyncOutcome({name: rows[name].as_dict() for name in run.datasets}, [])
        refused = _publish_ready(ctx, conn, run, [rows[name] for name in ready]) if ready else {}
        final = runs.dataset_runs(conn, ctx.run_key)
        for name in run.datasets:
            log.info(final[name].summary_line())
        failed = missing + list(refused)
        if failed:
            errors = "; ".join(f"{name}: {final[name].error or final[name].phase}" for name in failed)
            outcome = "partly_published" if len(failed) < len(ready) + len(missing) else "nothing_published"
            runs.finish_run(conn, ctx.run_key, outcome, errors[:4000])
        else:
            runs.finish_run(conn, ctx.run_key, "published")
    return SyncOutcome(
        {name: final[name].as_dict() for name in run.datasets},
        [{"dataset": name, "error": final[name].error or final[name].phase,
          "retryable": name not in refused and failures.get(name, True)} for name in failed],
    )


def _restage_dependents(ctx: RunContext) -> None:
    """A data set judged unchanged against the portal as it was (residents: whose contacts the
    portal shows) is staged after all when a data set it depends on has changes to publish."""
    with ctx.portal() as conn:
        rows = runs.dataset_runs(conn, ctx.run_key)
    changing = {name for name, row in rows.items() if row.phase in ("staged", "validated")}
    for name, row in rows.items():
        if row.phase == "unchanged" and changing & set(DATASETS[name].depends_on):
            log.info("%s %s: %s change in this run; staging it after all", ctx.community.code, name,
                     ", ".join(sorted(changing & set(DATASETS[name].depends_on))))
            _stage_and_check(ctx, name, probe_first=False)


def _publish_ready(ctx: RunContext, conn: psycopg.Connection, run: RunRecord,
                   ready: list[DatasetRun]) -> dict[str, str]:
    """The one publish transaction of the validated data sets; return those the delete guard refused."""
    community = ctx.community
    inputs = [PublishInput(DATASETS[row.dataset], row.staged_tables, mode=row.mode or "full",
                           read_at=row.extract_started_at, new_mark=_new_mark(row),
                           unchanged_rows=row.rows_extracted if row.phase == "unchanged" else None)
              for row in ready]
    guard = DeleteGuard(community.max_delete_share, community.mass_delete_min_rows, ctx.request.allow_mass_delete)
    try:
        with Progress(f"{community.code}: publishing {', '.join(r.dataset for r in ready)}") as progress:
            outcome = publish(
                conn, community=community.code, community_name=run.source_org_name or community.code,
                time_zone=run.time_zone or "UTC", run_key=ctx.run_key, inputs=inputs, enabled=community.datasets,
                visible_statuses=community.visible_statuses, guard=guard, merged=progress.add,
            )
    except psycopg.Error as exc:  # e.g. the portal database restarted mid-transaction
        raise SyncError(f"{community.code}: publish failed ({', '.join(r.dataset for r in ready)}): "
                        f"{type(exc).__name__}: {exc}".strip()) from exc
    for name, c in outcome.counts.items():
        runs.update_dataset(
            conn, ctx.run_key, name, phase="published", rows_inserted=c.inserted, rows_updated=c.updated,
            rows_unchanged=c.unchanged, rows_deleted=c.deleted, rows_restored=c.restored,
            rows_archived=c.archived, rows_superseded=c.superseded, publish_seconds=c.seconds,
            mark_after=c.mark_after,
        )
    for name, why in outcome.refused.items():
        runs.update_dataset(conn, ctx.run_key, name, phase="failed", error=why[:2000])
    try:
        refresh_statistics(conn, community.code, outcome.counts)
    except psycopg.Error as exc:  # statistics are an optimisation: the publish has committed
        log.warning("%s: ANALYZE after the publish failed: %s", community.code, exc)
    return outcome.refused


def _new_mark(row: DatasetRun) -> datetime | None:
    """Where the mark may move after this publish: the window end, or the read start of a full read."""
    if not DATASETS[row.dataset].incremental:
        return None
    if row.mode == "window":
        return row.window_end
    return row.extract_started_at


def cleanup(ctx: RunContext) -> list[str]:
    """Drop the run's staging tables whatever the outcome (also those of killed attempts)."""
    with ctx.portal() as conn:
        dropped = stage.drop_run_tables(conn, ctx.run_key)
        runs.close_run(conn, ctx.run_key)
    log.info("%s: dropped %d staging table(s) of run %s", ctx.community.code, len(dropped), ctx.run_key)
    return dropped


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


def _stage_and_check(ctx: RunContext, name: str, *, probe_first: bool = True) -> bool | None:
    """Extract and validate one data set; None when it went well (or was not due), else whether a
    retry may help. Its failure is in its run row either way: the other data sets go on."""
    try:
        extract_dataset(ctx, name, probe_first=probe_first)
        validate_dataset(ctx, name)
    except NotDue as exc:
        log.info("%s", exc)
    except (SyncError, DataQualityFailure) as exc:
        log.error("%s", exc)
        return _retryable(exc)
    return None


def sync_run(ctx: RunContext) -> SyncOutcome:
    """Every step of a run in this process: what the Airflow task and the CLI call.

    A failing data set does not stop the others; the outcome lists the data sets that did not
    publish. Data sets are extracted and validated ``parallel_datasets`` at a time, the longest
    first (``store.runs.longest_first``), so the ledger's read overlaps the small data sets' work.
    The publish stays one transaction for all of them. Raises SyncError only when the run as a
    whole cannot go on (the source is not this community's, the portal database is down).
    """
    with ctx.portal() as alive:  # held for the whole run: the sweep of other runs sees this one alive
        prepare(ctx)
        runs.hold_run_lock(alive, ctx.run_key)
        return _sync_prepared(ctx)


def _sync_prepared(ctx: RunContext) -> SyncOutcome:
    try:
        with ctx.portal() as conn:
            names = runs.longest_first(conn, ctx.community.code, run_datasets(ctx))
        with ThreadPoolExecutor(max_workers=ctx.community.parallel_datasets,
                                thread_name_prefix=f"sync-{ctx.community.code}") as pool:
            futures = {name: pool.submit(_stage_and_check, ctx, name) for name in names}
            failures = {name: retry for name, done in futures.items() if (retry := done.result()) is not None}
        return _publish(ctx, failures)
    finally:
        cleanup(ctx)
        try:
            report(ctx)
        except Exception as exc:  # never hide the run's own outcome behind a report problem
            log.warning("%s: report failed: %s", ctx.community.code, exc)


def run_sync(ctx: RunContext) -> dict[str, dict]:
    """``sync_run``, raising SyncError naming every data set that did not publish."""
    outcome = sync_run(ctx)
    if outcome.failed:
        raise SyncError(f"{ctx.community.code}: not published: {outcome.message}", retryable=outcome.retryable)
    return outcome.datasets
