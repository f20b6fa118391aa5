"""Data quality end to end: bad rows refused by rule and retried, odd rows published with warnings,
table-level failures that keep the portal as it was, broken checks that fail loudly."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import psycopg
import pytest
from synctest import FULL, assert_in_sync, community, portal_fingerprint, sync

from portal_sync import pipeline
from portal_sync.dq_report import report_dir
from portal_sync.rules import Rule

pytestmark = pytest.mark.integration


def findings(portal: str, run_id: str, severity: str) -> dict[tuple[str, str], set[str]]:
    """(dataset, rule) -> row keys the run flagged with this severity."""
    out: dict[tuple[str, str], set[str]] = {}
    with psycopg.connect(portal) as conn:
        for dataset, rule, key in conn.execute(
            "SELECT f.dataset, f.rule, f.row_key FROM sync.run_findings f JOIN sync.runs r USING (run_key)"
            " WHERE r.airflow_run_id = %s AND f.severity = %s", (run_id, severity)).fetchall():
            out.setdefault((dataset, rule), set()).add(key)
    return out


def count(portal: str, query: str, *params) -> int:
    with psycopg.connect(portal) as conn:
        return conn.execute(query, params).fetchone()[0]


def line(customer: int, key: int, **values) -> dict:
    row = {"TransactionID": key, "CustomerID": customer, "TransactionType": "ADJ", "ServiceCode": "WA",
           "Description": "DQ TEST", "Amount": Decimal("1.00"), "TransactionDate": date(2026, 11, 2),
           "InputDate": "2026-11-02 09:00:00.000", "DueDate": None, "Period": "2026-11", "ReferenceNumber": None,
           "ReceiptID": None, "VoidsTransactionID": None}
    row.update(values)
    return row


def test_each_kind_of_bad_row_is_refused_by_its_rule_and_published_once_fixed(make_source, portal):
    sim = make_source("sqlite", seed=21)
    customer = sim.query('SELECT "CustomerID" FROM "UB_Customer" WHERE "Status" = \'A\' ORDER BY 1')[0][0]
    other = sim.query('SELECT "CustomerID" FROM "UB_Customer" WHERE "Status" = \'A\' ORDER BY 1')[1][0]
    sim.insert_rows("UB_Transaction", [
        line(customer, 7_000_001, Amount=12.345),  # three decimals (stored as a REAL, as Caselle-on-SQLite would)
        line(customer, 7_000_002, Amount=123456789012.5),  # beyond numeric(12,2)
        line(customer, 7_000_003, TransactionType="BOGUS"),  # no portal meaning
        line(999_999, 7_000_004),  # orphan line
    ])
    sim.insert_rows("CR_Receipt", [{
        "ReceiptID": 7_100_001, "ReceiptNumber": "R-ORPHAN", "CustomerID": 999_998, "ReceiptDate":
        "2026-11-02 09:00:00.000", "InputDate": "2026-11-02 09:00:00.000", "PaymentMethod": "CASH",
        "Amount": Decimal("5.00"), "Status": "P", "StatusDate": "2026-11-02 09:00:00.000",
        "ConfirmationNumber": None, "PayerName": None}])
    balance = dict(zip(
        ["CustomerID", "AsOf", "BalanceCurrent", "Balance30", "Balance60", "Balance90", "Balance120", "TotalBalance",
         "LastBillDate", "LastBillAmount", "DueDate", "LastPaymentDate", "LastPaymentAmount", "Delinquent"],
        [999_997, "2026-11-02 09:00:00.000", 0, 0, 0, 0, 0, 0, None, None, None, None, None, "N"], strict=True))
    sim.insert_rows("UB_Balance", [balance])
    sim.execute('UPDATE "UB_Customer" SET "Status" = \'X\' WHERE "CustomerID" = ?', (other,))

    results = sync(sim, portal, "bad", use_gx=True)
    assert all(row["phase"] == "published" for row in results.values()), "good rows must still publish"
    refused = findings(portal, "bad", "refuse")
    assert refused[("charges", "money_exact")] == {"7000001", "7000002"}
    assert refused[("charges", "code_transactiontype")] == {"7000003"}
    assert refused[("charges", "orphan_account")] == {"7000004"}
    assert refused[("payments", "orphan_account")] == {"7100001"}
    assert refused[("balances", "orphan_account")] == {"999997"}
    assert refused[("accounts", "code_status")] == {str(other)}
    for key in (7_000_001, 7_000_002, 7_000_003, 7_000_004):
        assert count(portal, "SELECT count(*) FROM portal.charges WHERE charge_id = %s", key) == 0
    assert count(portal, "SELECT count(*) FROM portal.accounts WHERE account_id = %s", other) == 0
    assert count(portal, "SELECT count(*) FROM sync.quarantine WHERE dataset = 'charges'") >= 4
    assert_in_sync(sim, portal)

    # The city fixes its data: every refused row publishes and leaves quarantine.
    sim.execute('UPDATE "UB_Transaction" SET "Amount" = 12.35 WHERE "TransactionID" = 7000001')
    sim.execute('UPDATE "UB_Transaction" SET "Amount" = 1234.50 WHERE "TransactionID" = 7000002')
    sim.execute('UPDATE "UB_Transaction" SET "TransactionType" = \'ADJ\' WHERE "TransactionID" = 7000003')
    sim.execute('UPDATE "UB_Transaction" SET "CustomerID" = ? WHERE "TransactionID" = 7000004', (customer,))
    sim.execute('UPDATE "UB_Customer" SET "Status" = \'A\' WHERE "CustomerID" = ?', (other,))
    sim.execute('UPDATE "CR_Receipt" SET "CustomerID" = ? WHERE "ReceiptID" = 7100001', (customer,))
    sim.execute('DELETE FROM "UB_Balance" WHERE "CustomerID" = 999997')
    sync(sim, portal, "fixed", **FULL)
    assert count(portal, "SELECT amount FROM portal.charges WHERE charge_id = 7000001") == Decimal("12.35")
    assert count(portal, "SELECT account_id FROM portal.payments WHERE payment_id = 7100001") == customer
    assert count(portal, "SELECT status FROM portal.accounts WHERE account_id = %s", other) == "active"
    assert count(portal, "SELECT count(*) FROM sync.quarantine") == 0
    assert_in_sync(sim, portal)


def test_null_and_duplicate_keys_are_refused(make_source, portal):
    sim = make_source("postgresql", seed=22)  # SQLite cannot drop a primary key; PostgreSQL can
    sim.execute('ALTER TABLE "UB_Balance" DROP CONSTRAINT "UB_Balance_pkey"')
    sim.execute('ALTER TABLE "UB_Transaction" DROP CONSTRAINT "UB_Transaction_pkey"')
    sim.execute('ALTER TABLE "UB_Transaction" ALTER COLUMN "TransactionID" DROP NOT NULL')
    customer = sim.query('SELECT "CustomerID" FROM "UB_Balance" ORDER BY 1')[0][0]
    sim.execute('INSERT INTO "UB_Balance" SELECT * FROM "UB_Balance" WHERE "CustomerID" = ?', (customer,))
    sim.insert_rows("UB_Transaction", [line(customer, None, Description="NULL KEY")])
    sync(sim, portal, "dup")
    refused = findings(portal, "dup", "refuse")
    assert refused[("balances", "key_unique")] == {str(customer)}
    assert refused[("charges", "key_not_null")] == {"NULL"}
    assert count(portal, "SELECT count(*) FROM portal.balances WHERE account_id = %s", customer) == 0
    assert count(portal, "SELECT count(*) FROM portal.charges WHERE description = 'NULL KEY'") == 0


def test_implausible_rows_publish_with_their_warning_in_the_report(make_source, portal, tmp_path, monkeypatch):
    monkeypatch.setenv("PORTAL_SYNC_REPORT_DIR", str(tmp_path / "reports"))
    sim = make_source("sqlite", seed=23)
    customer = sim.query('SELECT "CustomerID" FROM "UB_Customer" WHERE "Status" = \'A\' ORDER BY 1')[0][0]
    sim.insert_rows("UB_Transaction", [
        line(customer, 7_200_001, TransactionDate=date(1900, 1, 1), Period="1900-01"),
        line(customer, 7_200_002, TransactionType="BILL", DueDate=date(2026, 10, 1)),
    ])
    sim.execute('UPDATE "UB_Customer" SET "CustomerNumber" = \'ABC-1\' WHERE "CustomerID" = ?', (customer,))
    sim.execute('UPDATE "UB_Balance" SET "TotalBalance" = "TotalBalance" + 5 WHERE "CustomerID" = ?', (customer,))
    results = sync(sim, portal, "odd", use_gx=True)
    assert all(row["phase"] == "published" for row in results.values())
    warned = findings(portal, "odd", "warn")
    assert "7200001" in warned[("charges", "implausible_date")]
    assert "7200002" in warned[("charges", "due_before_transaction")]
    assert warned[("accounts", "number_off_mask")] == {str(customer)}
    assert warned[("balances", "buckets_sum")] == {str(customer)}
    # Published as Caselle holds them.
    assert count(portal, "SELECT transaction_date FROM portal.charges WHERE charge_id = 7200001") == date(1900, 1, 1)
    assert count(portal, "SELECT account_number FROM portal.accounts WHERE account_id = %s", customer) == "ABC-1"
    pages = "".join(p.read_text() for p in (tmp_path / "reports").rglob("*.html"))
    for rule in ("implausible_date", "due_before_transaction", "number_off_mask", "buckets_sum"):
        assert rule in pages
    assert report_dir("SPRINGFLD") == tmp_path / "reports" / "springfld"
    assert_in_sync(sim, portal)


def test_a_snapshot_that_drops_by_half_does_not_publish_and_the_portal_keeps_its_state(make_source, portal):
    sim = make_source("sqlite", seed=24)
    comm = community(quality={"snapshot_change_min_rows": 0})
    sync(sim, portal, "before", comm=comm)
    before = portal_fingerprint(portal)
    sim.execute('DELETE FROM "UB_Customer" WHERE "CustomerID" % 2 = 0')
    with pytest.raises(pipeline.SyncError, match=r"row_count_change"):
        sync(sim, portal, "half", comm=comm, datasets=["accounts"])
    assert portal_fingerprint(portal) == before
    with psycopg.connect(portal) as conn:
        phase, error = conn.execute(
            "SELECT d.phase, d.error FROM sync.run_datasets d JOIN sync.runs r USING (run_key)"
            " WHERE r.airflow_run_id = 'half' AND d.dataset = 'accounts'").fetchone()
        result = conn.execute(
            "SELECT success, observed FROM sync.dq_results d JOIN sync.runs r USING (run_key)"
            " WHERE r.airflow_run_id = 'half' AND d.rule = 'row_count_change'").fetchone()
    assert phase == "failed" and "row_count_change" in error
    assert result[0] is False


def test_a_broken_check_fails_the_run_instead_of_passing(make_source, portal, monkeypatch):
    sim = make_source("sqlite", seed=25)
    sync(sim, portal, "before")
    before = portal_fingerprint(portal)
    broken = Rule("broken_check", "refers to a column that does not exist", 's."NoSuchColumn" IS NULL',
                  "'never'")
    real_rules = pipeline.rules_for
    monkeypatch.setattr(pipeline, "rules_for", lambda ds, *a, **k: [*real_rules(ds, *a, **k), broken])
    sim.renumber(1.0)
    # Caught where the rules first run: the pipeline's change probe (extract) or validation.
    with pytest.raises(pipeline.SyncError, match=r"NoSuchColumn"):
        sync(sim, portal, "broken", use_gx=True, datasets=["accounts"])
    assert portal_fingerprint(portal) == before, "nothing may publish past a check that could not run"
