"""DAG integrity: every DAG file imports, builds the expected DAGs, and touches no database or network.

Parsing runs in a subprocess whose sockets, ODBC and PostgreSQL connects raise, so any
I/O at parse time shows up as an import error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

NO_IO = textwrap.dedent(
    """
    import socket
    def _refuse(*args, **kwargs):
        raise RuntimeError("I/O at DAG parse time")
    socket.socket.connect = _refuse
    socket.create_connection = _refuse
    try:
        import pyodbc
        pyodbc.connect = _refuse
    except ImportError:
        pass
    import psycopg
    psycopg.connect = _refuse
    psycopg.Connection.connect = classmethod(lambda cls, *a, **k: _refuse())
    """
)

PARSE = textwrap.dedent(
    """
    import json, sys
    from airflow.dag_processing.dagbag import BundleDagBag
    # As the DAG processor and the task runner parse: the bundle's folder is on sys.path.
    bag = BundleDagBag(dag_folder=sys.argv[1], bundle_path=sys.argv[1], bundle_name="dags-folder")
    out = {
        "errors": {k.rsplit("/", 1)[-1]: v for k, v in bag.import_errors.items()},
        "dags": {
            dag_id: {
                "tasks": sorted(t.task_id for t in dag.tasks),
                "timetable": type(dag.timetable).__name__,
                "max_active_runs": dag.max_active_runs,
                "catchup": dag.catchup,
                "retries": {t.task_id: t.retries for t in dag.tasks},
                "outlets": sorted(getattr(o, "uri", "") for o in dag.get_task("sync").outlets),
                "params": sorted(dag.params.keys()),
                "pools": sorted({t.pool for t in dag.tasks}),
                "tags": sorted(dag.tags),
                "mapped": sorted(t.task_id for t in dag.tasks if getattr(t, "is_mapped", False)),
                "upstream": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
                "trigger_rules": {t.task_id: getattr(t.trigger_rule, "value", "") for t in dag.tasks},
                "cron": getattr(dag.timetable, "expression", None),
                "doc": dag.doc_md or "",
                "file": dag.fileloc.rsplit("/", 1)[-1],
            }
            for dag_id, dag in bag.dags.items()
        },
    }
    print("RESULT" + json.dumps(out))
    """
)


def parse_dags(tmp_path: Path, config: Path | None = None, extra_env: dict | None = None) -> dict:
    guard = tmp_path / "guard"
    guard.mkdir(exist_ok=True)
    (guard / "sitecustomize.py").write_text(NO_IO)
    env = {
        **os.environ,
        "PYTHONPATH": str(guard),
        "AIRFLOW_HOME": str(tmp_path / "airflow_home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        # An unreachable metadata database: parsing must not need one.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://nobody@127.0.0.1:1/none",
        **(extra_env or {}),
    }
    if config:
        env["PORTAL_SYNC_CONFIG"] = str(config)
    proc = subprocess.run([sys.executable, "-c", PARSE, str(ROOT / "dags")], env=env, capture_output=True,
                          text=True, timeout=300)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")), None)
    assert line, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(line[len("RESULT"):])


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> dict:
    return parse_dags(tmp_path_factory.mktemp("dags"))


def test_every_dag_file_imports_without_io(shipped):
    assert shipped["errors"] == {}


def test_the_communities_are_dealt_over_the_dag_files_each_once(tmp_path, monkeypatch):
    """At fleet size each DAG file holds about a quarter of the communities (its own processor budget)."""
    monkeypatch.syspath_prepend(str(ROOT / "dags"))
    from caselle_sync import SHARDS, shard_of

    codes = [f"T{i:03d}" for i in range(200)]
    config = tmp_path / "fleet.yaml"
    entries = [{"code": c, "caselle_conn_id": f"caselle_{c.lower()}", "time_zone": "America/Denver"} for c in codes]
    config.write_text(yaml.safe_dump({"communities": entries}))
    result = parse_dags(tmp_path, config)
    assert result["errors"] == {}
    assert set(result["dags"]) == {f"caselle_sync_{code.lower()}" for code in codes}
    per_file: dict[str, int] = {}
    for code in codes:
        file = result["dags"][f"caselle_sync_{code.lower()}"]["file"]
        shard = shard_of(code)
        assert file == ("caselle_sync.py" if shard == 0 else f"caselle_sync_{shard}.py"), (code, file)
        per_file[file] = per_file.get(file, 0) + 1
    assert len(per_file) == SHARDS
    assert all(30 <= n <= 70 for n in per_file.values()), per_file


def test_one_dag_per_configured_community(shipped):
    from portal_sync.config import load_config

    config = load_config()
    assert set(shipped["dags"]) == {c.dag_id for c in config.communities}
    for community in config.communities:
        dag = shipped["dags"][community.dag_id]
        # Three tasks whatever the data sets (docs/adr/0010): the run, the data sets that failed, freshness.
        assert set(dag["tasks"]) == {"sync", "failed", "freshness"}
        assert dag["mapped"] == ["failed"]  # mapped over the failures only: an idle run starts nothing there
        assert dag["upstream"] == {"sync": [], "failed": ["sync"], "freshness": ["sync"]}
        assert dag["trigger_rules"]["freshness"] == "all_done"
        assert dag["timetable"] == "CronDataIntervalTimetable"
        assert dag["cron"] == community.effective_schedule
        assert dag["max_active_runs"] == 1
        assert dag["catchup"] is False
        # transient source and database errors are retried; a data set's verdict and the freshness alert are not
        assert dag["retries"]["sync"] >= 2, dag["retries"]
        assert dag["retries"]["freshness"] == dag["retries"]["failed"] == 0
        assert dag["outlets"] == sorted(f"portal://{community.code.lower()}/{name}" for name in community.datasets)
        assert set(dag["params"]) == {"datasets", "reconcile", "reconcile_all_history", "window_start",
                                      "window_end", "dry_run", "allow_mass_delete"}
        assert "`datasets`" in dag["doc"] and "`window_start`" in dag["doc"]
        assert community.pool in dag["pools"]
        assert "caselle-sync" in dag["tags"]


def test_a_bad_community_is_an_import_error_and_the_others_still_sync(tmp_path):
    good = {"code": "GOODTOWN", "caselle_conn_id": "caselle_good", "time_zone": "America/Boise"}
    bad = {"code": "BADTOWN", "caselle_conn_id": "caselle_bad", "time_zone": "America/Nowhere"}
    config = tmp_path / "communities.yaml"
    config.write_text(yaml.safe_dump({"communities": [good, bad]}))
    result = parse_dags(tmp_path, config)
    assert set(result["dags"]) == {"caselle_sync_goodtown"}
    assert set(result["errors"]) == {"caselle_sync_config_errors.py"}
    message = result["errors"]["caselle_sync_config_errors.py"]
    assert "community BADTOWN" in message and "time_zone" in message and "America/Nowhere" in message


def test_a_task_process_builds_only_its_own_dag(tmp_path):
    result = parse_dags(tmp_path, extra_env={"_AIRFLOW_PARSING_CONTEXT_DAG_ID": "caselle_sync_springfld"})
    assert set(result["dags"]) == {"caselle_sync_springfld"}
