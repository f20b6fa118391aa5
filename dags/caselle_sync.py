"""One sync DAG per community of include/config/communities.yaml.

Thin on purpose: read the configuration, wire the tasks. The work is in
portal_sync.pipeline; nothing here touches a database at parse time, and a task
process builds only its own community's DAG.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable, TaskGroup, TriggerRule, get_parsing_context, task

from portal_sync.config import Community, load_config

DEFAULT_ARGS = {
    "owner": "portal-sync",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(minutes=60),
}


def _run_context(community: Community):
    from airflow.sdk import get_current_context

    from portal_sync.connections import portal_url, source_odbc
    from portal_sync.params import RunRequest
    from portal_sync.pipeline import RunContext

    context = get_current_context()
    dag_run = context.get("dag_run")
    return RunContext(
        community,
        context["run_id"],
        portal_url(),
        source_odbc(community.caselle_conn_id),
        interval_start=context.get("data_interval_start"),
        interval_end=context.get("data_interval_end"),
        request=RunRequest.from_conf(getattr(dag_run, "conf", None)),
    )


def build_dag(community: Community) -> DAG:
    with DAG(
        dag_id=community.dag_id,
        description=f"Caselle -> portal sync of {community.name or community.code}",
        schedule=CronDataIntervalTimetable(community.schedule, timezone=community.time_zone or "UTC"),
        start_date=pendulum.datetime(*community.start_date.timetuple()[:3], tz=community.time_zone or "UTC"),
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["caselle-sync", community.code],
        doc_md=f"Syncs {', '.join(community.datasets)} of **{community.code}** "
        f"from Airflow connection `{community.caselle_conn_id}` into the portal.",
    ) as dag:

        @task(task_id="prepare", retries=3)
        def prepare() -> dict:
            from portal_sync.pipeline import prepare as run_prepare

            return run_prepare(_run_context(community))

        @task(task_id="publish", trigger_rule=TriggerRule.ALL_DONE)
        def publish() -> None:
            from portal_sync.pipeline import publish_run

            publish_run(_run_context(community))

        @task(task_id="cleanup", trigger_rule=TriggerRule.ALL_DONE, retries=3)
        def cleanup() -> None:
            from portal_sync.pipeline import cleanup as run_cleanup

            run_cleanup(_run_context(community))

        prepared = prepare()
        published = publish()
        for name in community.datasets:
            with TaskGroup(group_id=name):

                @task(task_id="extract", pool=community.pool)
                def extract(dataset: str = name) -> int:
                    from portal_sync.pipeline import extract_dataset

                    return extract_dataset(_run_context(community), dataset)

                @task(task_id="validate")
                def validate(dataset: str = name) -> dict:
                    from airflow.sdk.exceptions import AirflowFailException

                    from portal_sync.pipeline import validate_dataset
                    from portal_sync.validate import DataQualityFailure

                    try:
                        return validate_dataset(_run_context(community), dataset)
                    except DataQualityFailure as exc:  # the same staged data would fail again: no retry
                        raise AirflowFailException(str(exc)) from exc

                prepared >> extract() >> validate() >> published
        @task(task_id="report", trigger_rule=TriggerRule.ALL_DONE)
        def report() -> str:
            from portal_sync.pipeline import report as run_report

            return run_report(_run_context(community))

        published >> [cleanup(), report()]
    return dag


_wanted = get_parsing_context().dag_id
for _community in load_config().communities:
    if _wanted is None or _wanted == _community.dag_id:
        globals()[_community.dag_id] = build_dag(_community)
