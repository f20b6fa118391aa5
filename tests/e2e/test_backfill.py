"""A backfill on a running scheduler re-syncs the changes of its range and moves no mark backwards
(on the session's shared Airflow, tests/e2e/airflowkit.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from synctest import local_now

pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.xdist_group("airflow")]

TZ = "America/Boise"
AIRFLOW_COMMUNITIES = [
    # No nightly reconciliation: run between 02:00 and 03:00 local, the backfill's last interval
    # would hold its 02:00 tick, reconcile, and (rightly) move the marks this test checks stay put.
    {"code": "BACKFILL", "caselle_conn_id": "caselle_backfill", "time_zone": TZ, "schedule": "0 * * * *",
     "datasets": ["accounts", "charges", "payments", "balances"], "reconcile_schedule": None}]


def test_a_backfill_over_three_intervals_resyncs_the_middle_one_and_leaves_the_marks(shared_airflow):
    airflow, portal_url = shared_airflow, shared_airflow.portal_url
    sim = airflow.make_source("BACKFILL", seed=43, org_name="Backfill Town", time_zone=TZ,
                              customer_number_mask="###-###", start=local_now(TZ))
    client, dag_id = airflow.client, "caselle_sync_backfill"
    client.wait_for_dag(dag_id)
    airflow.unpause(dag_id)  # the scheduler starts the latest interval's run: a first, full sync
    runs = client.wait_until_idle(dag_id)
    assert all(r["state"] == "success" for r in runs), runs
    with psycopg.connect(portal_url) as conn:
        marks_before = dict(conn.execute(
            "SELECT dataset, mark FROM sync.watermarks WHERE community_code = 'BACKFILL'").fetchall())
    assert set(marks_before) == {"charges", "payments", "balances"}

    # A line entered late with an InputDate in the middle of the last three hours: no regular window sees it.
    top = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    middle = (top - timedelta(minutes=90)).astimezone(sim.tz).replace(tzinfo=None)
    customer = sim.query('SELECT "CustomerID" FROM "UB_Customer" ORDER BY "CustomerID" LIMIT 1')[0][0]
    sim.insert_rows("UB_Transaction", [{
        "TransactionID": 8_800_001, "CustomerID": customer, "TransactionType": "ADJ", "ServiceCode": "WA",
        "Description": "BACKFILLED ADJUSTMENT", "Amount": Decimal("12.34"), "TransactionDate": middle.date(),
        "InputDate": middle, "DueDate": None, "Period": middle.strftime("%Y-%m"), "ReferenceNumber": None,
        "ReceiptID": None, "VoidsTransactionID": None}])

    backfill_started = datetime.now(UTC)
    result = airflow.cli("backfill", "create", "--dag-id", dag_id,
                         "--from-date", (top - timedelta(hours=3)).isoformat(),
                         "--to-date", (top - timedelta(hours=1)).isoformat(),
                         "--reprocess-behavior", "completed", "--max-active-runs", "1")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    runs = client.wait_until_idle(dag_id, expect=2)
    backfill_runs = [r for r in runs if r["run_type"] == "backfill"]
    assert len(backfill_runs) == 3, [(r["dag_run_id"], r["run_type"], r["state"]) for r in runs]
    assert all(r["state"] == "success" for r in backfill_runs), backfill_runs

    with psycopg.connect(portal_url) as conn:
        line = conn.execute("SELECT amount, description FROM portal.charges WHERE community_code = 'BACKFILL'"
                            " AND charge_id = 8800001").fetchone()
        marks_after = dict(conn.execute(
            "SELECT dataset, mark FROM sync.watermarks WHERE community_code = 'BACKFILL'").fetchall())
        # A reprocessed interval keeps its run id (the scheduler's run of the latest interval is one of them).
        windows = conn.execute(
            "SELECT DISTINCT d.window_start, d.window_end FROM sync.run_datasets d JOIN sync.runs r USING (run_key)"
            " WHERE r.airflow_run_id = ANY(%s) AND d.dataset = 'charges' AND r.started_at > %s"
            " ORDER BY d.window_end",
            ([r["dag_run_id"] for r in backfill_runs], backfill_started)).fetchall()
    assert line == (Decimal("12.34"), "BACKFILLED ADJUSTMENT")
    assert marks_after == marks_before, "a backfill must not move any high-water mark"
    assert [end for _, end in windows] == [top - timedelta(hours=2), top - timedelta(hours=1), top]
