"""One run of a community's sync, as steps that Airflow tasks (or the CLI) call.

prepare -> (extract -> validate) per data set -> publish -> cleanup. Every step is
safe to retry: it first removes what an earlier attempt of the same run left (its
staging tables, its findings), and every hand-over goes through the portal database.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
import pyodbc

from portal_sync import audit, stage
from portal_sync.config import Community
from portal_sync.datasets import DATASETS, ORGANIZATION
from portal_sync.extract import ExtractStats, arrow_schema, identifier_quote, read_batches, select_sql
from portal_sync.publish import PublishInput, publish
from portal_sync.validate import validate_staged

log = logging.getLogger("portal_sync")


class SyncError(RuntimeError):
    """A run step failed; the message names the community and the data set."""


@dataclass(frozen=True)
class RunContext:
    community: Community
    run_id: str
    portal_url: str
    source_odbc: str
    use_gx: bool = True

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
    with ctx.portal() as conn:
        audit.start_run(conn, ctx.run_key, community.code, ctx.run_id, community.datasets)
        conn.execute(
            "UPDATE sync.runs SET source_org_name = %s, time_zone = %s WHERE run_key = %s",
            (name, zone, ctx.run_key),
        )
    log.info("%s: run %s prepared (time zone %s, data sets %s)", community.code, ctx.run_key, zone,
             ", ".join(community.datasets))
    return {"run_key": ctx.run_key, "time_zone": zone, "name": name}


def extract_dataset(ctx: RunContext, name: str) -> int:
    """Stage every extract of one data set; return the rows staged for its primary extract."""
    community = ctx.community.code
    ds = DATASETS[name]
    started = time.monotonic()
    with ctx.portal() as conn:
        try:
            quote = identifier_quote(ctx.source_odbc)
            tables: dict[str, str] = {}
            primary_rows = 0
            for extract in ds.extracts:
                table = stage.stage_table_name(ctx.run_key, name, extract)
                stage.create_table(conn, table, extract)
                tables[extract.name] = table
                stats = ExtractStats()
                batches = read_batches(ctx.source_odbc, extract, quote, stats=stats)
                stage.load_batches(ctx.portal_url, table, _with_row_id(arrow_schema(extract)), batches)
                stage.finish_table(conn, table, extract)
                if extract is ds.primary:
                    primary_rows = stats.rows
            audit.update_dataset(
                conn, ctx.run_key, name, phase="staged", rows_extracted=primary_rows,
                staging_tables=[f"{k}={v}" for k, v in tables.items()],
                extract_seconds=round(time.monotonic() - started, 3), error=None,
            )
        except Exception as exc:
            message = f"{community} {name}: extract failed: {type(exc).__name__}: {exc}"
            audit.update_dataset(conn, ctx.run_key, name, phase="failed", error=message[:2000])
            raise SyncError(message) from exc
    log.info("%s %s: staged %d rows in %.1fs", community, name, primary_rows, time.monotonic() - started)
    return primary_rows


def _with_row_id(schema):
    import pyarrow as pa

    from portal_sync.extract import ROW_ID

    return pa.schema([pa.field(ROW_ID, pa.int64()), *schema])


def _staged_tables(row: dict) -> dict[str, str]:
    return dict(item.split("=", 1) for item in row["staging_tables"])


def validate_dataset(ctx: RunContext, name: str) -> dict[str, int]:
    """Run the data set's rules; refused rows are recorded and will not publish."""
    community = ctx.community.code
    ds = DATASETS[name]
    started = time.monotonic()
    with ctx.portal() as conn:
        row = audit.dataset_rows(conn, ctx.run_key)[name]
        if row["phase"] not in ("staged", "validated"):
            raise SyncError(f"{community} {name}: nothing staged to validate (phase {row['phase']})")
        try:
            conn.execute("DELETE FROM sync.run_findings WHERE run_key = %s AND dataset = %s", (ctx.run_key, name))
            outcomes = validate_staged(
                conn, pg_url=ctx.portal_url, run_key=ctx.run_key, community=community, dataset=ds,
                tables=_staged_tables(row), use_gx=ctx.use_gx,
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
            audit.update_dataset(conn, ctx.run_key, name, phase="failed", error=message[:2000])
            raise SyncError(message) from exc
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
    return {o.rule: o.failing_rows for o in outcomes}


def publish_run(ctx: RunContext) -> dict[str, dict]:
    """Publish every validated data set of the run in one transaction; fail if any data set did not make it."""
    community = ctx.community
    with ctx.portal() as conn:
        run = conn.execute(
            "SELECT source_org_name, time_zone FROM sync.runs WHERE run_key = %s", (ctx.run_key,)
        ).fetchone()
        if run is None:
            raise SyncError(f"{community.code}: run {ctx.run_key} was never prepared")
        org_name, zone = run
        rows = audit.dataset_rows(conn, ctx.run_key)
        ready = [name for name in community.datasets if rows[name]["phase"] in ("validated", "published")]
        missing = [name for name in community.datasets if name not in ready]
        inputs = [PublishInput(DATASETS[name], _staged_tables(rows[name])) for name in ready]
        results = {}
        if inputs:
            counts = publish(
                conn, community=community.code, community_name=org_name, time_zone=zone, run_key=ctx.run_key,
                inputs=inputs, enabled=community.datasets, visible_statuses=community.visible_statuses,
            )
            for name, c in counts.items():
                audit.update_dataset(
                    conn, ctx.run_key, name, phase="published", rows_inserted=c.inserted, rows_updated=c.updated,
                    rows_unchanged=c.unchanged, rows_deleted=c.deleted, rows_restored=c.restored,
                    rows_archived=c.archived, publish_seconds=c.seconds,
                )
        final = audit.dataset_rows(conn, ctx.run_key)
        for name in community.datasets:
            log.info(audit.summary_line(community.code, name, final[name]))
            results[name] = final[name]
        if missing:
            errors = "; ".join(f"{name}: {final[name]['error'] or final[name]['phase']}" for name in missing)
            outcome = "partly_published" if inputs else "nothing_published"
            audit.finish_run(conn, ctx.run_key, outcome, errors[:4000])
            raise SyncError(f"{community.code}: not published: {errors}")
        audit.finish_run(conn, ctx.run_key, "published")
    return results


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


def run_sync(ctx: RunContext) -> dict[str, dict]:
    """Every step in this process (CLI, tests); a failing data set does not stop the others."""
    prepare(ctx)
    try:
        for name in ctx.community.datasets:
            try:
                extract_dataset(ctx, name)
                validate_dataset(ctx, name)
            except SyncError as exc:
                log.error("%s", exc)
        return publish_run(ctx)
    finally:
        cleanup(ctx)
