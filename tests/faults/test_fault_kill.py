"""SIGKILL of the worker during extraction, staging, validation and the publish transaction, then
the retry, as Airflow would run it: the portal ends equal to the contract's projection, with no
duplicate, no lost row and no staging table left after cleanup.

Each step under attack runs in its own process (tests/faults/fault_step.py), like an Airflow task
process, against a `village` source (a quarter of a town, 150 k ledger lines) so that its reads and statements last. The
moment of the kill is made certain with locks held by the test: the step is caught waiting on a
lock in the middle of its work (visible in pg_stat_activity), then killed with SIGKILL, so no
exception handler, no ``finally`` and no rollback of ours runs. The same faults through a real
Airflow: tests/faults/test_fault_airflow_kill.py (publish) and test_fault_airflow_kill_steps.py
(extraction, staging, validation).
"""

from __future__ import annotations

import time
from datetime import timedelta

import psycopg
import pytest
from faultkit import (
    FAULT_DATASETS,
    Step,
    advisory_lock_holder,
    assert_no_duplicates,
    backend_running,
    backends,
    blocker,
    copy_progress,
    fault_context,
    phases,
    portal_rows,
    rest_of_run,
    stage_tables,
    wait_backend_gone,
    wait_until,
)
from psycopg import sql
from synctest import FULL, assert_in_sync, community, portal_fingerprint

from portal_sync.datasets import DATASETS
from portal_sync.pipeline import (
    RunContext,
    cleanup,
    extract_dataset,
    prepare,
    publish_run,
    validate_dataset,
)
from portal_sync.stage import stage_table_name

pytestmark = pytest.mark.integration

CODE = "SPRINGFLD"
DATASETS_UNDER_TEST = FAULT_DATASETS
COMM = {"datasets": list(DATASETS_UNDER_TEST)}


def step(sim, portal: str, run_id: str, name: str, *args, app: str, **request) -> Step:
    return Step(portal, sim.spec.odbc_connection_string(), run_id, name, args, COMM, request, app=app)


def wait_sessions_end(portal: str, app: str) -> None:
    """The killed process's sessions end once PostgreSQL notices the dead client."""
    for b in backends(portal, app):
        wait_backend_gone(portal, b["pid"])


def assert_clean_end(sim, portal: str, ctx: RunContext) -> None:
    assert_in_sync(sim, portal, community(**COMM))
    assert_no_duplicates(portal, CODE)
    assert stage_tables(portal, ctx.run_key) == [], "cleanup must drop the staging tables of killed attempts too"
    with psycopg.connect(portal) as conn:
        outcome = conn.execute("SELECT outcome FROM sync.runs WHERE run_key = %s", (ctx.run_key,)).fetchone()[0]
    assert outcome == "published"


def primary_table(ctx: RunContext, dataset: str) -> str:
    return stage_table_name(ctx.run_key, dataset, DATASETS[dataset].primary)


def lock_table(conn: psycopg.Connection, table: str, mode: str) -> bool:
    """Try to lock stage.<table> in ``mode`` within 100 ms; False when a running statement holds it."""
    try:
        conn.execute("SET LOCAL lock_timeout = '100ms'")
        conn.execute(sql.SQL("LOCK TABLE {} IN " + mode + " MODE").format(sql.Identifier("stage", table)))
        return True
    except psycopg.errors.LockNotAvailable:
        conn.rollback()
        return False


def test_sigkill_during_extraction_then_the_retry_publishes_everything_once(village, portal, tmp_path):
    ctx = fault_context(village.spec.odbc_connection_string(), portal, "kill-extract")
    prepare(ctx)
    extract_dataset(ctx, "accounts")
    validate_dataset(ctx, "accounts")
    victim = step(village, portal, "kill-extract", "extract_dataset", "charges", app="fault_extract").start(tmp_path)
    # Strike while ledger lines stream from the ODBC read into the COPY: the source file is open in
    # the process and the COPY has taken some rows but not all.
    wait_until("ledger lines streaming into staging",
               lambda: (copy_progress(portal, "fault_extract") > 0 and village.spec.path in victim.open_files())
               or not victim.alive(), every=0.01, timeout=120)
    assert victim.alive(), victim.output()
    copied = copy_progress(portal, "fault_extract")
    assert victim.kill() == -9
    wait_sessions_end(portal, "fault_extract")
    assert 0 < copied < village.counts()["UB_Transaction"], "the kill must fall inside the read"
    print(f"killed with {copied} of {village.counts()['UB_Transaction']} lines copied into staging")

    assert phases(portal, ctx.run_key)["charges"][0] not in ("staged", "validated"), \
        "a killed extract must never look staged"
    assert portal_rows(portal, CODE)["charges"] == 0

    extract_dataset(ctx, "charges")  # the retry of the task
    validate_dataset(ctx, "charges")
    rest_of_run(ctx, {"accounts", "charges"})
    assert_clean_end(village, portal, ctx)


def test_sigkill_during_staging_then_the_retry_stages_afresh(village, portal, tmp_path):
    ctx = fault_context(village.spec.odbc_connection_string(), portal, "kill-stage")
    prepare(ctx)
    table = primary_table(ctx, "charges")
    victim = step(village, portal, "kill-stage", "extract_dataset", "charges", app="fault_stage").start(tmp_path)
    with blocker(portal) as hold:
        wait_until("the charges staging table", lambda: table in stage_tables(portal) or not victim.alive(),
                   timeout=120)
        # SHARE UPDATE EXCLUSIVE lets the COPY finish (ROW EXCLUSIVE) but stops its CREATE INDEX (SHARE).
        assert lock_table(hold, table, "SHARE UPDATE EXCLUSIVE"), "the COPY should still be running"
        index = wait_until("the staging table's index build",
                           lambda: backend_running(portal, "fault_stage", "CREATE", waiting=True)
                           or not victim.alive(), timeout=180)
        assert victim.alive(), victim.output()
        staged = hold.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("stage", table))).fetchone()[0]
        assert victim.kill() == -9
    wait_sessions_end(portal, "fault_stage")

    assert "INDEX" in index["query"].upper()
    assert staged > 50_000, "the COPY had committed the ledger lines before the kill"
    assert phases(portal, ctx.run_key)["charges"][0] == "planned"
    # The retry must start from an empty table: appending to the killed attempt's would stage every
    # line twice.
    rest_of_run(ctx, set())
    assert_clean_end(village, portal, ctx)
    with psycopg.connect(portal) as conn:
        extracted = conn.execute("SELECT rows_extracted FROM sync.run_datasets WHERE run_key = %s"
                                 " AND dataset = 'charges'", (ctx.run_key,)).fetchone()[0]
    assert extracted == staged
    print(f"killed while indexing {staged} staged lines; the retry staged {extracted}")


def test_sigkill_during_validation_then_the_retry_refuses_exactly_the_bad_rows(village, portal, tmp_path):
    orphans = village.add_orphans(lines=4, receipts=0)["UB_Transaction"].inserted
    bad_code = plant_bad_service_code(village)
    ctx = fault_context(village.spec.odbc_connection_string(), portal, "kill-validate")
    prepare(ctx)
    for name in DATASETS_UNDER_TEST:
        extract_dataset(ctx, name)
        if name != "charges":
            validate_dataset(ctx, name)
    keys_table = stage_table_name(ctx.run_key, "charges", DATASETS["charges"].supporting[0])
    assert keys_table.endswith("__customer_keys")
    with blocker(portal) as hold:
        # The orphan_account rule reads the customer keys: its findings statement waits here (the row
        # rules' one scan, code_servicecode among them, has run before it, in the same transaction).
        assert lock_table(hold, keys_table, "ACCESS EXCLUSIVE")
        victim = step(village, portal, "kill-validate", "validate_dataset", "charges",
                      app="fault_validate").start(tmp_path)
        rule = wait_until("the orphan_account rule of the validation",
                          lambda: findings_waiting(portal, "fault_validate") or not victim.alive(), timeout=120)
        assert victim.alive(), victim.output()
        with psycopg.connect(portal, autocommit=True) as conn:  # the statement is cut in pg_stat_activity
            waits_for = conn.execute("SELECT relation::regclass::text FROM pg_locks WHERE pid = %s AND NOT granted",
                                     (rule["pid"],)).fetchone()[0]
        assert victim.kill() == -9
    wait_sessions_end(portal, "fault_validate")

    assert keys_table in waits_for, waits_for
    with psycopg.connect(portal) as conn:
        partial = dict(conn.execute("SELECT rule, count(*) FROM sync.run_findings WHERE run_key = %s"
                                    " AND dataset = 'charges' GROUP BY rule", (ctx.run_key,)).fetchall())
    # The findings of one validation are recorded in one transaction: the statement caught waiting
    # completes once the lock is gone, but the transaction never commits (PostgreSQL rolls it back
    # when it notices the dead client), so the killed attempt leaves no finding at all. (Findings
    # a killed attempt did commit are removed by the retry: the Airflow kill of 1f checks that.)
    print(f"findings left by the killed validation: {partial}")
    assert partial == {}, partial
    assert phases(portal, ctx.run_key)["charges"][0] == "staged", "a killed validation must not look validated"

    validate_dataset(ctx, "charges")  # the retry
    with psycopg.connect(portal) as conn:
        total, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT (row_id, rule)) FROM sync.run_findings WHERE run_key = %s"
            " AND dataset = 'charges'", (ctx.run_key,)).fetchone()
    assert total == distinct, "the retry must not keep the killed attempt's findings beside its own"
    rest_of_run(ctx, set(DATASETS_UNDER_TEST))
    assert_clean_end(village, portal, ctx)
    with psycopg.connect(portal) as conn:
        published = conn.execute("SELECT count(*) FROM portal.charges WHERE charge_id = ANY(%s)",
                                 (sorted({*orphans, bad_code}),)).fetchone()[0]
        refused = conn.execute("SELECT rows_refused FROM sync.run_datasets WHERE run_key = %s"
                               " AND dataset = 'charges'", (ctx.run_key,)).fetchone()[0]
    assert published == 0, "refused lines must not publish"
    assert refused == len(orphans) + 1


def findings_waiting(portal: str, app: str) -> dict | None:
    """``app``'s statement that records findings (``INSERT INTO sync.run_findings``, alone or inside a
    ``WITH``), waiting for a lock."""
    for b in backends(portal, app):
        if b["state"] == "active" and b["wait_event_type"] == "Lock" and "INSERT INTO sync.run_findings" in b["query"]:
            return b
    return None


def plant_bad_service_code(sim) -> int:
    """A ledger line whose ServiceCode is outside the contract's codes (refused by the code rule)."""
    from decimal import Decimal

    row = sim.read_table("UB_Transaction", where='"TransactionType" = \'BILL\' AND "CustomerID" < 100')[0]
    new_id = sim.seq["TransactionID"]
    sim.insert_rows("UB_Transaction", [{**row, "TransactionID": new_id, "ServiceCode": "ZZ",
                                        "Amount": Decimal(row["Amount"]) / 100, "VoidsTransactionID": None}])
    return new_id


def test_sigkill_in_the_middle_of_the_publish_transaction_leaves_the_portal_as_it_was(village, portal, tmp_path):
    base = fault_context(village.spec.odbc_connection_string(), portal, "kill-publish-base")
    prepare(base)
    rest_of_run(base, set())
    before = portal_fingerprint(portal)
    with psycopg.connect(portal) as conn:
        marks = conn.execute("SELECT dataset, mark FROM sync.watermarks ORDER BY 1").fetchall()
    village.evolve(timedelta(hours=12), {"new_customers": 40, "move_outs": 20, "contact_edits": 20})
    village.delete_inactive_customers(count=5)

    ctx = fault_context(village.spec.odbc_connection_string(), portal, "kill-publish", **FULL)
    prepare(ctx)
    for name in DATASETS_UNDER_TEST:
        extract_dataset(ctx, name)
        validate_dataset(ctx, name)
    with blocker(portal) as hold:
        # balances publish last: when the publish waits for this row, accounts and charges are merged
        # inside its open transaction.
        hold.execute("SELECT 1 FROM sync.watermarks WHERE community_code = %s AND dataset = 'balances' FOR UPDATE",
                     (CODE,))
        victim = step(village, portal, "kill-publish", "publish_run", app="fault_publish", **FULL).start(tmp_path)
        waiting = wait_until("the publish to reach the balances mark",
                             lambda: backend_running(portal, "fault_publish", "INSERT INTO sync.watermarks",
                                                     waiting=True) or not victim.alive(), timeout=180)
        assert victim.alive(), victim.output()
        assert advisory_lock_holder(portal, CODE) == waiting["pid"], "the publish holds the community's lock"
        assert waiting["has_xid"], "the publish transaction has written"
        assert victim.kill() == -9
    wait_sessions_end(portal, "fault_publish")

    assert portal_fingerprint(portal) == before, "a killed publish must leave the portal exactly as it was"
    with psycopg.connect(portal) as conn:
        assert conn.execute("SELECT dataset, mark FROM sync.watermarks ORDER BY 1").fetchall() == marks
    # The server notices the dead client on its own schedule under load: the lock must go with it.
    deadline = time.monotonic() + 60
    while advisory_lock_holder(portal, CODE) is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert advisory_lock_holder(portal, CODE) is None

    try:
        publish_run(ctx)  # the retry
    finally:
        cleanup(ctx)
    assert_clean_end(village, portal, ctx)
    assert stage_tables(portal) == []
