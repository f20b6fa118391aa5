"""SIGKILL of the Airflow task process during extraction, during staging and during validation, on
three successive tries of one DAG run of a real Airflow (scheduler, LocalExecutor, dag processor, API
server); Airflow retries the task each time (the community's ``retries: 3``, ``retry_delay_seconds: 2``)
and the fourth try ends the run in success with the portal equal to the projection, no duplicate key
and no staging table left.

The whole run is one task, ``sync``: extraction and staging (arrow-odbc batches COPYed into an
UNLOGGED staging table, then indexed) and validation are phases of its one process, data sets side by
side in threads. Staging tables are named per run key, and a retry keeps the run id, so each try
drops and recreates the tables of the one before. In one run of a `town` (first load: every data set
has rows to publish, so every one is staged):

- try 1 is killed while the charges COPY is visibly under way (``pg_stat_progress_copy`` shows
  ledger lines arriving in the charges staging table);
- try 2 is killed past the payments COPY: as soon as try 2 has made the receipts staging table anew,
  the test holds SHARE UPDATE EXCLUSIVE on it, which lets the COPY finish but makes the index build
  wait; killed there;
- try 3 is killed at the end of the balances validation: its checks have run (two planted orphan
  balances are refused, their findings committed), and it waits to mark the data set validated
  because the test holds that audit row (``sync.run_datasets``) FOR UPDATE.

Each victim is found from its PostgreSQL session: the local process owning the session's client
port (psutil), checked to be the task process of the ``sync`` task instance's current try
(``airflow worker -- <ti id>``). The Airflow is the session's shared one (tests/e2e/airflowkit.py);
this test's community and DAG are its own.
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
# One try killed per fault point, then one that succeeds: at least three retries.
AIRFLOW_COMMUNITIES = [{"code": CODE, "caselle_conn_id": "caselle_killsteps", "time_zone": TZ,
                        "schedule": "0 3 29 2 *", "datasets": DATASETS, "retries": 3, "retry_delay_seconds": 2}]
KILLED = ("charges.copy", "payments.index", "balances.findings")  # where tries 1, 2 and 3 are killed


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


def oid(watch: psycopg.Connection, table: str) -> int | None:
    """The oid of stage.<table> (a new one each time a try makes it), None while there is none."""
    return watch.execute("SELECT to_regclass(%s)::oid", (f"stage.{table}",)).fetchone()[0]


def run_started(watch: psycopg.Connection, key: str):
    """When the run's latest try prepared (each try starts the run record afresh), None before the first."""
    row = watch.execute("SELECT started_at FROM sync.runs WHERE run_key = %s", (key,)).fetchone()
    return row[0] if row else None


def phases(watch: psycopg.Connection, key: str) -> dict[str, str]:
    return dict(watch.execute("SELECT dataset, phase FROM sync.run_datasets WHERE run_key = %s", (key,)).fetchall())


def lock(hold: psycopg.Connection, table: str, mode: str, timeout: str) -> None:
    hold.execute(f"SET LOCAL lock_timeout = '{timeout}'")
    hold.execute(sql.SQL("LOCK TABLE {} IN " + mode + " MODE").format(sql.Identifier("stage", table)))


def test_sigkill_of_the_sync_task_in_extract_stage_and_validate_on_three_tries_then_success(shared_airflow):
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

    def strike(point: str, try_number: int, session: dict, **seen) -> None:
        """SIGKILL the process owning ``session``: it must be the running ``sync`` task process of try
        ``try_number``."""
        victim = process_of_client_port(session["client_port"])
        command, parent = " ".join(victim.cmdline()), " ".join(victim.parent().cmdline())
        ti = task_instance(client, run_id, "sync")
        assert ti["state"] == "running" and ti["try_number"] == try_number and ti["id"] in command, (
            point, ti, command)
        victim.send_signal(9)
        victim.wait(timeout=30)
        struck[point] = {"try": try_number, "pid": victim.pid, "command": command[:60], "parent": parent[:60],
                         "after_s": round(time.monotonic() - started, 1), **seen}
        print(f"killed sync at {point}: {struck[point]}")

    index_locked = row_locked = False
    killed_try_started = None  # sync.runs.started_at of the try killed last: its phases are stale
    old_index_table: int | None | bool = False  # oid of the receipts staging table try 1 left (False: not asked)
    with psycopg.connect(portal_url, autocommit=True) as watch, blocker(portal_url) as hold_index, \
            blocker(portal_url) as hold_row:
        deadline = time.monotonic() + 900
        while len(struck) < len(KILLED):
            if time.monotonic() > deadline:
                raise AssertionError(f"not every kill happened: {struck}; {client.task_states(DAG_ID, run_id)}")
            try_started = run_started(watch, key)
            if try_started is None or try_started == killed_try_started:
                time.sleep(0.05)  # the next try has not prepared yet
                continue
            phase = phases(watch, key)
            point = KILLED[len(struck)]
            name, too_late = {"charges.copy": ("charges", ("staged", "validated")),
                              "payments.index": ("payments", ("staged", "validated")),
                              "balances.findings": ("balances", ("validated",))}[point]
            assert phase.get(name) not in too_late, (
                f"try {len(struck) + 1}: {name} was {phase.get(name)} before the fault could be injected "
                f"({phase}; killed: {struck})")
            if point == "charges.copy" and (session := copying(watch, copy_table)):
                strike(point, 1, session, lines_in_copy=session["rows"])
                killed_try_started = try_started
            elif point == "payments.index":
                if old_index_table is False:  # try 2 has just prepared: what is there now, try 1 left
                    old_index_table = oid(watch, index_table)
                elif not index_locked and oid(watch, index_table) not in (None, old_index_table):
                    # This try made the table anew. SHARE UPDATE EXCLUSIVE lets its COPY (ROW EXCLUSIVE)
                    # finish, not its CREATE INDEX (SHARE).
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
                    strike(point, 2, session, waiting_in=session["query"][:40], staged=staged)
                    hold_index.rollback()
                    killed_try_started = try_started
            elif point == "balances.findings":
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
                    strike(point, 3, session, waiting_in=session["query"][:40], findings=committed)
                    hold_row.rollback()
                    killed_try_started = try_started
            time.sleep(0.02)

    seen: set = set()
    deadline = time.monotonic() + 900
    while (state := client.run_state(DAG_ID, run_id)) not in ("success", "failed") and time.monotonic() < deadline:
        seen.add(client.task_states(DAG_ID, run_id).get("sync"))
        time.sleep(0.5)
    elapsed = round(time.monotonic() - started, 1)
    # Every task, not only the run: the mapped `failed` task has an instance per data set that did not
    # publish (it fails the run), none (skipped) when all did.
    states = client.task_states(DAG_ID, run_id)
    assert state == "success", (struck, state, states)
    assert states == {"sync": "success", "failed": "skipped", "freshness": "success"}, (struck, states)
    ti = task_instance(client, run_id, "sync")
    history = [(t["try_number"], t["state"])
               for t in task_instance(client, run_id, "sync", tries=True)["task_instances"]]
    print(f"sync: try_number {ti['try_number']}, tries {history}, states seen {sorted(filter(None, seen))}")
    assert ti["try_number"] == 4 and ti["state"] == "success", ti
    assert history == [(1, "failed"), (2, "failed"), (3, "failed"), (4, "success")], history

    assert_in_sync(sim, portal_url, community(code=CODE, datasets=tuple(DATASETS)))
    assert_no_duplicates(portal_url, CODE)
    assert stage_tables(portal_url, key) == [], "cleanup drops the killed tries' staging tables too"
    assert not [t for t in stage_tables(portal_url) if t.startswith(CODE.lower() + "_")]
    with psycopg.connect(portal_url) as conn:
        outcome = conn.execute("SELECT outcome FROM sync.runs WHERE run_key = %s", (key,)).fetchone()[0]
        extracted = dict(conn.execute("SELECT dataset, rows_extracted FROM sync.run_datasets WHERE run_key = %s",
                                      (key,)).fetchall())
        total, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT (dataset, row_id, rule)) FROM sync.run_findings WHERE run_key = %s",
            (key,)).fetchone()
    assert outcome == "published"
    # The tries after the staging kill recreated the table: the receipts were staged once, not appended.
    assert extracted["payments"] == struck["payments.index"]["staged"], (extracted, struck)
    assert total == distinct, "a retried validation must not keep a killed try's findings beside its own"
    # The killed validation had committed its findings; the retry replaced them: each orphan refused once.
    assert struck["balances.findings"]["findings"] >= len(orphans), struck
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
