"""One sync DAG per community of the communities configuration.

Thin on purpose: read the configuration, wire the tasks. The work is in
portal_sync.pipeline; nothing here touches a database at parse time, and a task
process reads and builds only its own community's DAG.

Three tasks, whatever the number of data sets (docs/adr/0010): ``sync`` runs the whole
run in one process (Great Expectations and the source door load once, an idle run
creates no table), ``failed`` is mapped over the data sets that did not publish (none
in a good run: nothing starts) so each shows in the grid by name with its reason, and
``freshness`` alerts on stale portal data.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import DAG, Asset, BaseOperator, CronDataIntervalTimetable, TriggerRule, get_parsing_context

from portal_sync.config import Community, CommunityNotLoaded, load_community, load_config
from portal_sync.datasets import DATASETS
from portal_sync.notify import callbacks
from portal_sync.params import trigger_params

if TYPE_CHECKING:
    from airflow.sdk import Context

DEFAULT_ARGS = {
    "owner": "portal-sync",
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(minutes=60),
}


def portal_asset(community: Community, dataset: str) -> Asset:
    """A portal table of one community, updated by each publish (downstream DAGs may subscribe)."""
    table = DATASETS[dataset].portal_table
    return Asset(name=f"portal_{table}_{community.code.lower()}", uri=f"portal://{community.code.lower()}/{table}",
                 group="portal")


def _run_context(community: Community, context: Context):
    """The pipeline's view of this task's run (trigger parameters validated; a typo fails at once)."""
    from airflow.sdk.exceptions import AirflowFailException

    from portal_sync import pipeline
    from portal_sync.connections import portal_url, source_odbc
    from portal_sync.params import RunRequest, RunRequestError

    try:
        request = RunRequest.from_conf(getattr(context.get("dag_run"), "conf", None))
    except RunRequestError as exc:  # no retry will fix it
        raise AirflowFailException(f"{community.code}: {exc}") from exc
    return pipeline.RunContext(
        community, context["run_id"], portal_url(), source_odbc(community.caselle_conn_id),
        interval_start=context.get("data_interval_start"), interval_end=context.get("data_interval_end"),
        request=request,
    )


class SyncRun(BaseOperator):
    """The whole run; returns the data sets that did not publish (the ``failed`` task's map).

    Plain operators rather than ``@task``: the decorators import the Python operator and its
    dependencies into every task process's parse (docs/benchmarks/fleet.md)."""

    def __init__(self, *, community: Community, assets: dict[str, Asset], **kwargs: Any) -> None:
        super().__init__(outlets=list(assets.values()), **kwargs)
        self.community = community
        self.assets = assets

    def execute(self, context: Context) -> list[dict]:
        from airflow.sdk.exceptions import AirflowFailException

        from portal_sync import pipeline

        ctx = _run_context(self.community, context)
        ti = context["ti"]
        try:
            outcome = pipeline.sync_run(ctx)
        except pipeline.SyncError as exc:  # the run as a whole could not go on (source, portal)
            if exc.retryable:
                raise
            raise AirflowFailException(str(exc)) from exc
        ti.xcom_push(key="datasets", value=outcome.datasets)
        for name, asset in self.assets.items():
            row = outcome.datasets.get(name)
            if row and row.get("phase") == "published":
                context["outlet_events"][asset].extra = {"community": self.community.code, "dataset": name,
                                                          "phase": "published", **{
                    k: row.get(k) for k in ("mode", "rows_extracted", "rows_inserted", "rows_updated",
                                            "rows_deleted", "rows_restored", "rows_archived", "rows_refused")}}
        last_try = ti.try_number > ti.max_tries
        if outcome.retryable and not last_try:  # e.g. a source timeout: Airflow retries the run
            raise pipeline.SyncError(outcome.message)
        return outcome.failed


class FailedDataset(BaseOperator):
    """One data set that did not publish: named in the grid, failing the run with its reason."""

    def __init__(self, *, community_code: str, item: dict, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.community_code = community_code
        self.item = item

    def execute(self, context: Context) -> None:
        from airflow.sdk.exceptions import AirflowFailException

        context["failed_dataset"] = self.item["dataset"]  # type: ignore[typeddict-unknown-key]
        raise AirflowFailException(f"{self.community_code} {self.item['dataset']}: {self.item['error']}")


class Freshness(BaseOperator):
    """Alerts on stale portal data (the run's own outcome aside)."""

    def __init__(self, *, community: Community, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.community = community

    def execute(self, context: Context) -> list[str]:
        from airflow.sdk.exceptions import AirflowFailException

        from portal_sync import pipeline

        ctx = _run_context(self.community, context)
        try:
            return pipeline.check_freshness(ctx)
        except pipeline.StaleData as exc:
            raise AirflowFailException(str(exc)) from exc


def _doc(community: Community) -> str:
    return (
        f"Syncs {', '.join(community.datasets)} of **{community.code}** from Airflow connection "
        f"`{community.caselle_conn_id}` into the portal, on `{community.effective_schedule}` "
        f"({community.time_zone or 'UTC'}).\n\n"
        "**Trigger parameters** (all optional; a scheduled run uses none):\n\n"
        "- `datasets`: only these data sets, e.g. `[\"charges\"]` to retry one that failed.\n"
        "- `reconcile`: compare every row of the windowed data sets now (deletes found); "
        "`reconcile_all_history` also compares closed periods.\n"
        "- `window_start` / `window_end`: re-read an explicit window, e.g. "
        "`2026-11-01T00:00:00-07:00` to `2026-11-02T00:00:00-07:00`.\n"
        "- `dry_run`: extract and validate, publish nothing.\n"
        "- `allow_mass_delete`: data sets allowed past the delete guard once, e.g. `[\"accounts\"]`.\n\n"
        "Task `failed` shows each data set that did not publish, by name, with the reason."
    )


def build_dag(community: Community) -> DAG:
    assets = {name: portal_asset(community, name) for name in community.datasets}
    zone = community.time_zone or "UTC"
    with DAG(
        dag_id=community.dag_id,
        description=f"Caselle -> portal sync of {community.name or community.code}",
        schedule=CronDataIntervalTimetable(community.effective_schedule, timezone=zone),
        start_date=pendulum.datetime(*community.start_date.timetuple()[:3], tz=zone),
        catchup=False,
        max_active_runs=1,
        default_args={**DEFAULT_ARGS, "retries": community.retries,
                      "retry_delay": timedelta(seconds=community.retry_delay_seconds)},
        params=trigger_params(community.datasets),
        tags=["caselle-sync", community.code],
        doc_md=_doc(community),
    ) as dag:

        synced = SyncRun(task_id="sync", community=community, assets=assets, pool=community.pool,
                         **callbacks(community, "sync_failed"))
        FailedDataset.partial(task_id="failed", community_code=community.code, retries=0,
                              map_index_template="{{ failed_dataset }}").expand(item=synced.output)
        synced >> Freshness(task_id="freshness", community=community, trigger_rule=TriggerRule.ALL_DONE, retries=0,
                            **callbacks(community, "stale"))
    return dag


SHARDS = 4
"""DAG files the communities are dealt over (``caselle_sync.py`` and ``caselle_sync_1..3.py``): the
DAG processor parses each file in its own process, within its own timeout, so at fleet size no file
carries more than a quarter of the communities (docs/adr/0010, docs/benchmarks/fleet.md)."""


def shard_of(code: str) -> int:
    """A community's DAG file, stable across processes and Python versions (not ``hash()``)."""
    return int(hashlib.sha256(code.encode()).hexdigest()[:8], 16) % SHARDS


def build_shard(namespace: dict, shard: int) -> None:
    """Put this DAG file's DAGs into ``namespace``; a task process reads and builds only its own."""
    wanted = get_parsing_context().dag_id
    if wanted is not None:
        try:
            own = load_community(wanted)
        except CommunityNotLoaded as exc:  # the task then fails as "DAG not found": say why first
            logging.getLogger(__name__).error("%s", exc)
            return
        if shard_of(own.code) == shard:
            namespace[own.dag_id] = build_dag(own)
        return
    for community in load_config().communities:
        if shard_of(community.code) == shard:
            namespace[community.dag_id] = build_dag(community)


if __name__ != "caselle_sync":  # parsed as a DAG file (not imported by the other shards' files)
    build_shard(globals(), 0)
