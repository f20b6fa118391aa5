"""SIGKILL of Airflow task processes during extraction, during staging and during validation, in one
DAG run of a real Airflow (scheduler, LocalExecutor, dag processor, API server); Airflow retries each
killed task (the community's ``retry_delay_seconds: 2``) and the run ends success with the portal
equal to the projection, no duplicate key and no staging table left.

In this product extraction and staging are one task, ``<data set>.extract``: it streams arrow-odbc
batches by COPY into an UNLOGGED staging table, then indexes it. So, in one run of a `town`:

- ``charges.extract`` is killed while its COPY is visibly under way (``pg_stat_progress_copy`` shows
  ledger lines arriving in the charges staging table);
- ``payments.extract`` is killed past its COPY: the test holds SHARE UPDATE EXCLUSIVE on the
  receipts staging table, which lets the COPY finish but makes the index build wait; killed there;
- ``balances.validate`` is killed at the end of its work: its checks have run (two planted orphan
  balances are refused, their findings committed), and it waits to mark the data set validated
  because the test holds that audit row (``sync.run_datasets``) FOR UPDATE.

Each victim is found from its PostgreSQL session: the local process owning the session's client
port (psutil), checked to be the task process of that task instance (``airflow worker -- <ti id>``).
The Airflow is the session's shared one (tests/e2e/airflowkit.py); this test's community and DAG are
its own.
"""

from __future__ import annotations

import time
import urllib.request
from decimal import Decimal

import psycopg
import pytest
from faultkit import (
    assert_no_duplicates,
    blocker,
    process_of_client_port,
    stage_tables,
)
from psycopg import sql
from synctest import assert_in_sync, community

from portal_sync.datasets import DATASETS as DECLARED
from portal_sync.stage import run_key, stage_table_name

pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.xdist_group("airflow")]

CODE = "KILLSTEPS"
TZ = "America/Denver"
DATASETS = ["accounts", "charges", "payments", "balances"]
DAG_ID = "caselle_sync_killsteps"
# Its cron never fires before 2028 (29 February): the only run is the one the test triggers.
AIRFLOW_COMMUNITIES = [{"code": CODE, "caselle_conn_id": "caselle_killsteps", "time_zone": TZ,
                        "schedule": "0 3 29 2 *", "datasets": DATASETS, "retry_delay_seconds": 2}]
KILLED = ("charges.extract", "payments.extract", "balances.validate")


def task_instance(client, run_id: str, task_id: str, tries: bool = False) -> dict:
    quoted = urllib.request.quote(run_id, safe="")
    return client._request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{quoted}/taskInstances/{task_id}"
                           + ("/tries" if tries else ""))


def copying(watch: psycopg.Connection, table: str) -> dict | None:
    """The session whose COPY into stage.<table> has taken rows, if any."""
    row = watch.execute(
        "SELECT a.pid, a.client_port, p.tuples_processed FROM pg_stat_progress_copy p JOIN pg_stat_activity a"
        " USING (pid) WHERE p.relid = to_regclass(%s) AND p.tuples_processed > 0", (f"stage.{table}",)).fetchone()
    return dict(zip(("pid", "client_port", "rows"), row, strict=True)) if row else None


def blocked_by(watch: psycopg.Connection, hold: psycopg.Connection) -> dict | None:
    """The session waiting for a lock that ``hold``'s open transaction holds, if any."""
    row = watch.execute("SELECT pid, client_port, query FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                        (hold.info.backend_pid,)).fetchone()
    return dict(zip(("pid", "client_port", "query"), row, strict=True)) if row else None


def exists(watch: psycopg.Connection, table: str) -> bool:
    return watch.execute("SELECT to_regclass(%s) IS NOT NULL", (f"stage.{table}",)).fetchone()[0]


def phases(watch: psycopg.Connection, key: str) -> dict[str, str]:
    return dict(watch.execute("SELECT dataset, phase FROM sync.run_datasets WHERE run_key = %s", (key,)).fetchall())


def lock(hold: psycopg.Connection, table: str, mode: str, timeout: str) -> None:
    hold.execute(f"SET LOCAL lock_timeout = '{timeout}'")
    hold.execute(sql.SQL("LOCK TABLE {} IN " + mode + " MODE").format(sql.Identifier("stage", table)))


def test_sigkill_of_extract_stage_and_validate_task_processes_then_airflow_retries_to_success(shared_airflow):
    airflow, portal_url = shared_airflow, shared_airflow.portal_url
    sim = airflow.make_source(CODE, preset="town", seed=83, org_name="Kill Steps", time_zone=TZ)
    orphans = plant_orphan_balances(sim, 2)
    client = airflow.client
    client.wait_for_dag(DAG_ID)
    airflow.unpause(DAG_ID)
    started = time.monotonic()
    run_id = client.trigger(DAG_ID)
    key = run_key(CODE, run_id)
    copy_table = stage_table_name(key, "charges", DECLARED["charges"].primary)
    index_table = stage_table_name(key, "payments", DECLARED["payments"].primary)

    struck: dict[str, dict] = {}

    def strike(task_id: str, session: dict, **seen) -> None:
        """SIGKILL the process owning ``session``: it must be the running task process of ``task_id``."""
        victim = process_of_client_port(session["client_port"])
        command, parent = " ".join(victim.cmdline()), " ".join(victim.parent().cmdline())
        ti = task_instance(client, run_id, task_id)
        assert ti["state"] == "running" and ti["try_number"] == 1 and ti["id"] in command, (task_id, ti, command)
        victim.send_signal(9)
        victim.wait(timeout=30)
        struck[task_id] = {"pid": victim.pid, "command": command[:60], "parent": parent[:60],
                           "after_s": round(time.monotonic() - started, 1), **seen}
        print(f"killed {task_id}: {struck[task_id]}")

    index_locked = row_locked = False
    with psycopg.connect(portal_url, autocommit=True) as watch, blocker(portal_url) as hold_index, \
            blocker(portal_url) as hold_row:
        deadline = time.monotonic() + 900
        while len(struck) < len(KILLED):
            if time.monotonic() > deadline:
                raise AssertionError(f"not every kill happened: {struck}; {client.task_states(DAG_ID, run_id)}")
            phase = phases(watch, key)
            missed = [name for name, task_id, too_late in (("charges", "charges.extract", ("staged", "validated")),
                                                           ("payments", "payments.extract", ("staged", "validated")),
                                                           ("balances", "balances.validate", ("validated",)))
                      if task_id not in struck and phase.get(name) in too_late]
            assert not missed, f"{missed}: done before the fault could be injected ({phase}; killed: {struck})"
            if "charges.extract" not in struck and (session := copying(watch, copy_table)):
                strike("charges.extract", session, lines_in_copy=session["rows"])
            if "payments.extract" not in struck:
                if not index_locked and exists(watch, index_table):
                    # SHARE UPDATE EXCLUSIVE lets the COPY (ROW EXCLUSIVE) finish, not the CREATE INDEX (SHARE).
                    try:
                        lock(hold_index, index_table, "SHARE UPDATE EXCLUSIVE", "200ms")
                    except psycopg.errors.LockNotAvailable as exc:
                        raise AssertionError("the receipts were staged and indexed before the test could lock "
                                             "the table") from exc
                    index_locked = True
                elif index_locked and (session := blocked_by(watch, hold_index)):
                    staged = hold_index.execute(sql.SQL("SELECT count(*) FROM {}").format(
                        sql.Identifier("stage", index_table))).fetchone()[0]
                    # the key index (UNIQUE when the staged keys allow it) or, had that failed, a plain one
                    assert session["query"].upper().startswith(("CREATE UNIQUE INDEX", "CREATE INDEX")), session
                    strike("payments.extract", session, waiting_in=session["query"][:40], staged=staged)
                    hold_index.rollback()
            if "balances.validate" not in struck:
                if not row_locked and phase.get("balances") == "staged":
                    # The extract has written its last word; the validation will wait here at its end.
                    hold_row.execute("SET LOCAL lock_timeout = '10s'")
                    hold_row.execute("SELECT 1 FROM sync.run_datasets WHERE run_key = %s AND dataset = 'balances'"
                                     " FOR UPDATE", (key,))
                    row_locked = True
                elif row_locked and (session := blocked_by(watch, hold_row)):
                    assert session["query"].startswith("UPDATE sync.run_datasets"), session
                    committed = watch.execute("SELECT count(*) FROM sync.run_findings WHERE run_key = %s"
                                              " AND dataset = 'balances'", (key,)).fetchone()[0]
                    strike("balances.validate", session, waiting_in=session["query"][:40], findings=committed)
                    hold_row.rollback()
            time.sleep(0.02)

    tries: dict[str, set] = {t: set() for t in KILLED}
    deadline = time.monotonic() + 900
    while (state := client.run_state(DAG_ID, run_id)) not in ("success", "failed") and time.monotonic() < deadline:
        states = client.task_states(DAG_ID, run_id)
        for task_id in KILLED:
            tries[task_id].add(states.get(task_id))
        time.sleep(0.5)
    elapsed = round(time.monotonic() - started, 1)
    # Every task, not only the run: the `outcome` task (ONE_FAILED) fails the run when a task failed for
    # good, and is skipped otherwise.
    states = client.task_states(DAG_ID, run_id)
    assert state == "success" and states.pop("outcome") == "skipped", (struck, state, states)
    assert set(states.values()) == {"success"}, (struck, state, states)
    for task_id in KILLED:
        ti = task_instance(client, run_id, task_id)
        history = [(t["try_number"], t["state"])
                   for t in task_instance(client, run_id, task_id, tries=True)["task_instances"]]
        seen = sorted(filter(None, tries[task_id]))
        print(f"{task_id}: try_number {ti['try_number']}, tries {history}, states seen {seen}")
        assert ti["try_number"] == 2 and ti["state"] == "success", ti
        assert history == [(1, "failed"), (2, "success")], history

    assert_in_sync(sim, portal_url, community(code=CODE, datasets=tuple(DATASETS)))
    assert_no_duplicates(portal_url, CODE)
    assert stage_tables(portal_url, key) == [], "cleanup drops the killed attempts' staging tables too"
    assert not [t for t in stage_tables(portal_url) if t.startswith(CODE.lower() + "_")]
    with psycopg.connect(portal_url) as conn:
        outcome = conn.execute("SELECT outcome FROM sync.runs WHERE run_key = %s", (key,)).fetchone()[0]
        extracted = dict(conn.execute("SELECT dataset, rows_extracted FROM sync.run_datasets WHERE run_key = %s",
                                      (key,)).fetchall())
        total, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT (dataset, row_id, rule)) FROM sync.run_findings WHERE run_key = %s",
            (key,)).fetchone()
    assert outcome == "published"
    # The retry of the staging kill recreated the table: it staged the receipts once, not twice.
    assert extracted["payments"] == struck["payments.extract"]["staged"], (extracted, struck)
    assert total == distinct, "the validation retry must not keep the killed attempt's findings beside its own"
    # The killed validation had committed its findings; the retry replaced them: each orphan refused once.
    assert struck["balances.validate"]["findings"] >= len(orphans), struck
    with psycopg.connect(portal_url) as conn:
        refused = conn.execute("SELECT rows_refused FROM sync.run_datasets WHERE run_key = %s AND dataset = 'balances'",
                               (key,)).fetchone()[0]
        published = conn.execute("SELECT count(*) FROM portal.balances WHERE community_code = %s"
                                 " AND account_id = ANY(%s)", (CODE, orphans)).fetchone()[0]
    assert refused == len(orphans) and published == 0, (refused, published)
    print(f"run {run_id}: success after {elapsed} s; rows extracted {extracted}")


def plant_orphan_balances(sim, count: int) -> list[int]:
    """UB_Balance rows of customers that do not exist: the orphan check refuses them."""
    from caselle_sim.schema import MONEY, TABLES

    row = sim.read_table("UB_Balance")[0]  # money in cents (the simulator's normal form)
    row = {c: Decimal(v) / 100 if v is not None and TABLES["UB_Balance"].column(c).kind == MONEY else v
           for c, v in row.items()}
    top = max(r["CustomerID"] for r in sim.read_table("UB_Customer", ["CustomerID"]))
    ids = [top + 1000 + i for i in range(count)]
    sim.insert_rows("UB_Balance", [{**row, "CustomerID": i} for i in ids])
    return ids
