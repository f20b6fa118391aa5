"""One sync DAG per community of include/config/communities.yaml.

Thin on purpose: read the configuration, wire the tasks. The work is in
portal_sync.pipeline; nothing here touches a database at parse time, and a task
process builds only its own community's DAG.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import (
    DAG,
    Asset,
    CronDataIntervalTimetable,
    Param,
    TaskGroup,
    TriggerRule,
    get_parsing_context,
    task,
)

from portal_sync.config import Community, load_config
from portal_sync.datasets import DATASETS

DEFAULT_ARGS = {
    "owner": "portal-sync",
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(minutes=60),
}

# The trigger form (UI "Trigger DAG w/ config"); portal_sync.params.RunRequest validates them.
PARAMS = {
    "datasets": Param(None, type=["null", "array"], description="only these data sets (default: all enabled)"),
    "reconcile": Param(False, type="boolean", description="full reconciliation of the windowed data sets now"),
    "reconcile_all_history": Param(False, type="boolean", description="reconcile comparing all history"),
    "window_start": Param(None, type=["null", "string"], description="explicit window start, ISO 8601 with offset"),
    "window_end": Param(None, type=["null", "string"], description="explicit window end, ISO 8601 with offset"),
    "dry_run": Param(False, type="boolean", description="extract and validate, publish nothing"),
    "allow_mass_delete": Param([], type="array", description="data sets allowed past the mass-delete guard once"),
}


def portal_asset(community: Community, dataset: str) -> Asset:
    """A portal table of one community, updated by each publish (downstream DAGs may subscribe)."""
    table = DATASETS[dataset].portal_table
    return Asset(name=f"portal_{table}_{community.code.lower()}", uri=f"portal://{community.code.lower()}/{table}",
                 group="portal")


def _call(community: Community, step: str, *args):
    """Run a pipeline step for this task's run, mapping its outcomes onto Airflow's task states."""
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from portal_sync import pipeline
    from portal_sync.connections import portal_url, source_odbc
    from portal_sync.params import RunRequest, RunRequestError
    from portal_sync.validate import DataQualityFailure

    context = get_current_context()
    dag_run = context.get("dag_run")
    try:
        request = RunRequest.from_conf(getattr(dag_run, "conf", None))
    except RunRequestError as exc:  # a typo in the trigger parameters: no retry will fix it
        raise AirflowFailException(f"{community.code}: {exc}") from exc
    ctx = pipeline.RunContext(
        community, context["run_id"], portal_url(), source_odbc(community.caselle_conn_id),
        interval_start=context.get("data_interval_start"), interval_end=context.get("data_interval_end"),
        request=request,
    )
    try:
        return getattr(pipeline, step)(ctx, *args)
    except pipeline.NotDue as exc:
        raise AirflowSkipException(str(exc)) from exc
    except DataQualityFailure as exc:  # the same staged data would fail again: no retry
        raise AirflowFailException(str(exc)) from exc


def build_dag(community: Community) -> DAG:
    assets = {name: portal_asset(community, name) for name in community.datasets}
    with DAG(
        dag_id=community.dag_id,
        description=f"Caselle -> portal sync of {community.name or community.code}",
        schedule=CronDataIntervalTimetable(community.schedule, timezone=community.time_zone or "UTC"),
        start_date=pendulum.datetime(*community.start_date.timetuple()[:3], tz=community.time_zone or "UTC"),
        catchup=False,
        max_active_runs=1,
        default_args={**DEFAULT_ARGS, "retries": community.retries,
                      "retry_delay": timedelta(seconds=community.retry_delay_seconds)},
        params=PARAMS,
        tags=["caselle-sync", community.code],
        doc_md=f"Syncs {', '.join(community.datasets)} of **{community.code}** "
        f"from Airflow connection `{community.caselle_conn_id}` into the portal.",
    ) as dag:

        @task(task_id="prepare", retries=3)
        def prepare() -> dict:
            return _call(community, "prepare")

        @task(task_id="publish", trigger_rule=TriggerRule.ALL_DONE, outlets=list(assets.values()))
        def publish() -> None:
            from airflow.sdk import get_current_context

            results = _call(community, "publish_run")
            events = get_current_context()["outlet_events"]
            for name, asset in assets.items():
                row = results.get(name, {})
                events[asset].extra = {
                    "community": community.code, "dataset": name, "phase": row.get("phase"),
                    "mode": row.get("mode"), **{k: row.get(k) for k in (
                        "rows_extracted", "rows_inserted", "rows_updated", "rows_deleted", "rows_restored",
                        "rows_archived", "rows_refused")},
                }

        @task(task_id="cleanup", trigger_rule=TriggerRule.ALL_DONE, retries=3)
        def cleanup() -> None:
            _call(community, "cleanup")

        @task(task_id="report", trigger_rule=TriggerRule.ALL_DONE)
        def report() -> str:
            return _call(community, "report")

        @task(task_id="freshness", trigger_rule=TriggerRule.ALL_DONE, retries=0)
        def freshness() -> list[str]:
            return _call(community, "check_freshness")

        @task(task_id="outcome", trigger_rule=TriggerRule.ONE_FAILED, retries=0)
        def outcome() -> None:
            """Runs only when a task failed for good, and fails the DAG run: the run's state follows its
            leaves, and cleanup, report and freshness run and succeed whatever happened before them."""
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"{community.code}: a task of this run failed for good (see its log); "
                                       "what did not publish stays as the previous run left it")

        prepared = prepare()
        published = publish()
        for name in community.datasets:
            with TaskGroup(group_id=name):

                @task(task_id="extract", pool=community.pool)
                def extract(dataset: str = name) -> int:
                    return _call(community, "extract_dataset", dataset)

                @task(task_id="validate")
                def validate(dataset: str = name) -> dict:
                    return _call(community, "validate_dataset", dataset)

                prepared >> extract() >> validate() >> published
        published >> [cleanup(), report(), freshness()]
        watcher = outcome().operator
        for other in dag.tasks:
            if other is not watcher:
                other >> watcher
    return dag


_wanted = get_parsing_context().dag_id
for _community in load_config().communities:
    if _wanted is None or _wanted == _community.dag_id:
        globals()[_community.dag_id] = build_dag(_community)
