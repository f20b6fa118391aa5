"""Incremental sync: every hard case Caselle produces, each against the contract's projection.

The simulated Caselle runs on our clock (started at the community's local 'now'), so
the windows the pipeline computes from data intervals and marks line up with the
InputDate/StatusDate/AsOf stamps the simulator writes.
"""

from __future__ import annotations

import zlib
from datetime import date, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from synctest import (
    FULL,
    TZ,
    advance,
    as_utc,
    assert_in_sync,
    community,
    local_now,
    portal_fingerprint,
    sync,
)

from portal_sync.pipeline import RunContext, SyncError, extract_dataset, prepare, publish_run, validate_dataset

pytestmark = pytest.mark.integration


@pytest.fixture
def city(make_source, portal, request):
    """A tiny community, synced once in full (its first run), on our clock."""
    # crc32, not hash(): str hashes change with every process, and so did the data of a failing run
    seed = 100 + zlib.crc32(request.node.name.encode()) % 1000
    sim = make_source("sqlite", seed=seed, start=local_now())
    results = sync(sim, portal, "initial")
    assert all(r["mode"] == "full" and r["phase"] == "published" for r in results.values())
    return sim


def one(portal: str, query: str, *params):
    with psycopg.connect(portal) as conn:
        return conn.execute(query, params).fetchone()


def source_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def test_a_window_run_reaches_the_projection_and_reads_only_its_window(city, portal):
    interval, changes = advance(city, 15)
    assert changes["UB_Transaction"].inserted, "the simulated city should have entered ledger lines"
    results = sync(city, portal, "window-1", interval=interval)
    charges = results["charges"]
    assert charges["mode"] == "window"
    assert_in_sync(city, portal)
    # Fetched rows follow the changes, not the size of the ledger.
    total = city.query('SELECT count(*) FROM "UB_Transaction"')[0][0]
    start, end = (charges["window_start"].astimezone(city.tz).replace(tzinfo=None),
                  charges["window_end"].astimezone(city.tz).replace(tzinfo=None))
    in_window = city.query(
        'SELECT count(*) FROM "UB_Transaction" WHERE "TransactionType" <> \'PMT\''
        ' AND "InputDate" >= ? AND "InputDate" < ?',
        (source_time(start - timedelta(hours=1)), source_time(end + timedelta(hours=1))),
    )[0][0]
    new_charges = [k for k in changes["UB_Transaction"].inserted if city.query(
        'SELECT "TransactionType" FROM "UB_Transaction" WHERE "TransactionID" = ?', (k,))[0][0] != "PMT"]
    assert len(new_charges) <= charges["rows_extracted"] <= in_window < total / 5


def test_late_entered_and_back_dated_lines_are_picked_up(city, portal):
    interval, _ = advance(city, 15)
    sync(city, portal, "w1", interval=interval)
    customer = city.query('SELECT "CustomerID" FROM "UB_Customer" WHERE "Status" = \'A\'')[0][0]
    late_input = city.now - timedelta(minutes=20)  # behind the previous window's end, inside the look-back
    back_dated = city.now.date() - timedelta(days=200)
    city.insert_rows("UB_Transaction", [
        {"TransactionID": 9_000_001, "CustomerID": customer, "TransactionType": "ADJ", "ServiceCode": "WA",
         "Description": "LATE ENTRY", "Amount": Decimal("-3.25"), "TransactionDate": city.now.date(),
         "InputDate": late_input, "DueDate": None, "Period": city.now.strftime("%Y-%m"), "ReferenceNumber": None,
         "ReceiptID": None, "VoidsTransactionID": None},
        {"TransactionID": 9_000_002, "CustomerID": customer, "TransactionType": "ADJ", "ServiceCode": "SE",
         "Description": "BACK-DATED CORRECTION", "Amount": Decimal("7.40"), "TransactionDate": back_dated,
         "InputDate": city.now, "DueDate": None, "Period": back_dated.strftime("%Y-%m"), "ReferenceNumber": None,
         "ReceiptID": None, "VoidsTransactionID": None},
    ])
    interval, _ = advance(city, 15)
    sync(city, portal, "w2", interval=interval)
    rows = dict((r[0], r[1:]) for r in psycopg.connect(portal).execute(
        "SELECT charge_id, amount, transaction_date FROM portal.charges WHERE charge_id IN (9000001, 9000002)"
    ).fetchall())
    assert rows[9_000_001][0] == Decimal("-3.25")
    assert rows[9_000_002] == (Decimal("7.40"), back_dated)
    assert_in_sync(city, portal)


def test_a_void_arriving_long_after_its_line_flags_the_old_line(city, portal):
    old = city.query(
        'SELECT "TransactionID", "CustomerID", "Amount" FROM "UB_Transaction" WHERE "TransactionType" = \'BILL\''
        ' AND "TransactionID" NOT IN (SELECT "VoidsTransactionID" FROM "UB_Transaction"'
        ' WHERE "VoidsTransactionID" IS NOT NULL) ORDER BY "TransactionID" LIMIT 1')[0]
    assert one(portal, "SELECT voided FROM portal.charges WHERE charge_id = %s", old[0]) == (False,)
    city.insert_rows("UB_Transaction", [{
        "TransactionID": 9_100_001, "CustomerID": old[1], "TransactionType": "VOID", "ServiceCode": "WA",
        "Description": "VOID OLD BILL", "Amount": -Decimal(str(old[2])), "TransactionDate": city.now.date(),
        "InputDate": city.now, "DueDate": None, "Period": city.now.strftime("%Y-%m"), "ReferenceNumber": None,
        "ReceiptID": None, "VoidsTransactionID": old[0]}])
    interval, _ = advance(city, 15)
    results = sync(city, portal, "void", interval=interval)
    assert results["charges"]["mode"] == "window"
    assert one(portal, "SELECT voided FROM portal.charges WHERE charge_id = %s", old[0]) == (True,)
    assert one(portal, "SELECT voids_charge_id FROM portal.charges WHERE charge_id = 9100001") == (old[0],)
    assert_in_sync(city, portal)


@pytest.mark.parametrize(("before", "after", "portal_status"), [("U", "P", "posted"), ("P", "V", "voided"),
                                                                 ("P", "R", "refunded")])
def test_receipt_status_changes_move_only_status_date(city, portal, before, after, portal_status):
    rows = city.query('SELECT "ReceiptID" FROM "CR_Receipt" WHERE "Status" = ? AND "CustomerID" IS NOT NULL'
                      ' AND "CustomerID" IN (SELECT "CustomerID" FROM "UB_Customer")', (before,))
    assert rows, f"the simulated city should hold a receipt in status {before}"
    receipt = rows[0][0]
    interval, _ = advance(city, 5, payments=0, bills=0)
    city.execute('UPDATE "CR_Receipt" SET "Status" = ?, "StatusDate" = ? WHERE "ReceiptID" = ?',
                 (after, source_time(city.now - timedelta(minutes=1)), receipt))
    interval, _ = advance(city, 5)
    sync(city, portal, f"status-{after}", interval=interval)
    assert one(portal, "SELECT status FROM portal.payments WHERE payment_id = %s", receipt) == (portal_status,)
    assert_in_sync(city, portal)


def test_a_newer_balance_wins_and_an_older_one_never_does(city, portal):
    interval, _ = advance(city, 15, payments=200, bills=200)
    # Run A reads the source now, but is slow to publish.
    slow = RunContext(community(), "slow-A", portal, city.spec.odbc_connection_string(), use_gx=False,
                      interval_start=interval[0], interval_end=interval[1])
    prepare(slow)
    extract_dataset(slow, "balances")
    validate_dataset(slow, "balances")
    with psycopg.connect(portal) as conn:
        tables = dict(t.split("=", 1) for t in conn.execute(
            "SELECT staging_tables FROM sync.run_datasets WHERE run_key = %s AND dataset = 'balances'",
            (slow.run_key,)).fetchone()[0])
        staged = [r[0] for r in conn.execute(f'SELECT "CustomerID" FROM stage."{tables["balances"]}"').fetchall()]
    assert staged, "run A should have read some recomputed balances"
    customer = staged[0]
    # Meanwhile Caselle recomputes that balance (newer AsOf) and run B publishes it.
    city.execute('UPDATE "UB_Balance" SET "AsOf" = ?, "BalanceCurrent" = "BalanceCurrent" + 1,'
                 ' "TotalBalance" = "TotalBalance" + 1 WHERE "CustomerID" = ?',
                 (source_time(city.now + timedelta(minutes=1)), customer))
    interval_b, _ = advance(city, 5)
    sync(city, portal, "fast-B", interval=interval_b)
    newer = dict(psycopg.connect(portal).execute("SELECT account_id, (as_of, total_due) FROM portal.balances"
                                                 ).fetchall())
    # Now A publishes its older read: nothing may go back.
    with psycopg.connect(portal, autocommit=True) as conn:
        conn.execute("UPDATE sync.run_datasets SET phase = 'failed' WHERE run_key = %s AND dataset <> 'balances'",
                     (slow.run_key,))
    with pytest.raises(SyncError):
        publish_run(slow)  # the other data sets of A were never extracted
    after = dict(psycopg.connect(portal).execute("SELECT account_id, (as_of, total_due) FROM portal.balances"
                                                 ).fetchall())
    assert after == newer
    superseded = one(portal, "SELECT rows_superseded FROM sync.run_datasets WHERE run_key = %s"
                     " AND dataset = 'balances'", slow.run_key)[0]
    assert superseded >= 1
    assert_in_sync(city, portal)


def test_snapshot_data_sets_follow_new_customers_move_outs_and_edits(city, portal):
    interval, changes = advance(city, 180, new_customers=400, move_outs=400, online_toggles=400, contact_edits=400)
    assert changes["UB_Customer"].inserted and changes["UB_Customer"].updated and changes["SM_Contact"].updated
    results = sync(city, portal, "snapshots", interval=interval)
    assert results["accounts"]["rows_inserted"] >= len(changes["UB_Customer"].inserted)
    assert results["accounts"]["rows_updated"] > 0 and results["residents"]["rows_updated"] > 0
    assert_in_sync(city, portal)


def test_renumbering_keeps_account_ids_and_follows_the_numbers(city, portal):
    before = dict(psycopg.connect(portal).execute("SELECT account_id, account_number FROM portal.accounts").fetchall())
    city.renumber(fraction=1.0)
    # no account may be added (the test counts inserts): no new customer, no move-out (a landlord's
    # vacant account), and no minimum activity that would bring either back
    interval, changes = advance(city, 5, new_customers=0, move_outs=0, floor=0)
    assert not changes["UB_Customer"].inserted
    results = sync(city, portal, "renumber", interval=interval)
    after = dict(psycopg.connect(portal).execute("SELECT account_id, account_number FROM portal.accounts").fetchall())
    assert set(after) >= set(before)
    assert sum(1 for k in before if before[k] != after[k]) == len(before)
    assert results["accounts"]["rows_inserted"] == 0
    assert_in_sync(city, portal)


def test_orphans_are_refused_retried_and_published_once_fixed(city, portal):
    changes = city.add_orphans(lines=3, receipts=1)
    interval, _ = advance(city, 5)
    sync(city, portal, "orphans", interval=interval)
    quarantined = {r[0] for r in psycopg.connect(portal).execute(
        "SELECT row_key FROM sync.quarantine WHERE dataset = 'charges' AND rule = 'orphan_account'").fetchall()}
    lines = {str(k) for k in changes["UB_Transaction"].inserted}
    orphan_charges = {k for k in lines if city.query(
        'SELECT "TransactionType" FROM "UB_Transaction" WHERE "TransactionID" = ?', (int(k),))[0][0] != "PMT"}
    assert orphan_charges and orphan_charges <= quarantined
    for key in orphan_charges:
        assert one(portal, "SELECT count(*) FROM portal.charges WHERE charge_id = %s", int(key)) == (0,)
    # Two windows later (the lines are far outside any window now), the source is fixed by hand.
    for _ in range(2):
        interval, _ = advance(city, 60)
        sync(city, portal, f"later-{interval[1]:%H%M}", interval=interval)
    good = city.query('SELECT "CustomerID" FROM "UB_Customer" ORDER BY "CustomerID" LIMIT 1')[0][0]
    for key in orphan_charges:
        city.execute('UPDATE "UB_Transaction" SET "CustomerID" = ? WHERE "TransactionID" = ?', (good, int(key)))
    interval, _ = advance(city, 5)
    results = sync(city, portal, "fixed", interval=interval)
    assert results["charges"]["mode"] == "window"
    for key in orphan_charges:
        assert one(portal, "SELECT account_id FROM portal.charges WHERE charge_id = %s", int(key)) == (good,)
    left = {r[0] for r in psycopg.connect(portal).execute(
        "SELECT row_key FROM sync.quarantine WHERE dataset = 'charges'").fetchall()}
    assert not left & orphan_charges


def test_reconciliation_finds_deletes_purges_and_modify_data(city, portal):
    edited = city.modify_data(8)
    edited_lines = edited["UB_Transaction"].updated
    deleted = city.delete_inactive_customers()
    gone_lines = deleted["UB_Transaction"].deleted
    gone_customers = deleted["UB_Customer"].deleted
    city.period_close(purge_before=date(2018, 1, 1))
    assert edited_lines and gone_lines and gone_customers
    interval, _ = advance(city, 5)
    # An ordinary window cannot see any of this (nothing moved InputDate)... (its snapshots of accounts,
    # balances and residents do see the deleted customers: some seeds delete more than the guard's 10 %)
    sync(city, portal, "window", interval=interval, allow_mass_delete=("accounts", "balances", "residents"))
    assert one(portal, "SELECT count(*) FROM portal.charges WHERE archived_at IS NOT NULL OR deleted_at IS NOT NULL"
               ) == (0,)
    # ...a reconciliation over all history does.
    interval, _ = advance(city, 5)
    results = sync(city, portal, "reconcile", interval=interval, **FULL,
                   allow_mass_delete=("charges", "accounts", "balances", "residents"))
    assert results["charges"]["mode"] == "reconcile"
    assert results["charges"]["rows_archived"] > 0 and results["charges"]["rows_deleted"] > 0
    assert results["charges"]["rows_updated"] >= 1
    for key in gone_customers:
        assert one(portal, "SELECT deleted_at IS NOT NULL FROM portal.accounts WHERE account_id = %s", key) == (True,)
        row = one(portal, "SELECT deleted_at IS NOT NULL FROM portal.balances WHERE account_id = %s", key)
        assert row in (None, (True,))
    archived_early = one(portal, "SELECT count(*) FROM portal.charges WHERE archived_at IS NOT NULL"
                                 " AND transaction_date >= '2018-01-01'")
    assert archived_early == (0,)
    assert_in_sync(city, portal)


def test_a_recent_range_reconciliation_publishes_lines_entered_now_but_dated_long_ago(city, portal):
    """A period close writes BEGBAL lines dated PurgeBefore; a reconciliation that compares only the last
    reconcile_days (and moves the mark past the close) must still publish them."""
    closed = city.period_close(purge_before=(city.now - timedelta(days=2000)).date())
    assert closed["UB_Transaction"].inserted, "the close should write BEGBAL lines"
    interval, _ = advance(city, 5)
    sync(city, portal, "recent-range", interval=interval, reconcile=True)
    assert_in_sync(city, portal)


def test_reconciliation_compares_contents_only_over_its_range(city, portal):
    old_line = city.query('SELECT "TransactionID" FROM "UB_Transaction" WHERE "TransactionType" = \'BILL\''
                          ' AND "TransactionDate" < ? ORDER BY "TransactionID" LIMIT 1',
                          ((city.now - timedelta(days=3000)).date().isoformat(),))[0][0]
    city.execute('UPDATE "UB_Transaction" SET "Description" = \'EDITED LONG AGO\' WHERE "TransactionID" = ?',
                 (old_line,))
    interval, _ = advance(city, 5)
    sync(city, portal, "recent-range", interval=interval, reconcile=True)  # contents of the last 400 days only
    assert one(portal, "SELECT description FROM portal.charges WHERE charge_id = %s", old_line) != ("EDITED LONG AGO",)
    interval, _ = advance(city, 5)
    sync(city, portal, "all-history", interval=interval, **FULL)
    assert one(portal, "SELECT description FROM portal.charges WHERE charge_id = %s", old_line) == ("EDITED LONG AGO",)


def test_the_mass_delete_guard_stops_a_data_set_until_allowed_once(city, portal):
    guarded = community(max_delete_share=0.01, mass_delete_min_rows=0)
    deleted = city.delete_inactive_customers()
    assert deleted["UB_Customer"].deleted
    interval, _ = advance(city, 1, bills=0, payments=0, new_customers=0, move_outs=0, online_toggles=0,
                          contact_edits=0, closeouts=0, location_edits=0, assessment_updates=0, penalties=0,
                          adjustments=0, bill_voids=0, receipt_voids=0, nsf=0, refunds=0, pending_voids=0,
                          other_receipts=0)
    with pytest.raises(SyncError, match=r"allow_mass_delete"):
        sync(city, portal, "guarded", comm=guarded, interval=interval, reconcile=True)
    accounts_live = one(portal, "SELECT count(*) FROM portal.accounts WHERE deleted_at IS NULL")[0]
    assert accounts_live == len(city.query('SELECT "CustomerID" FROM "UB_Customer"')) + len(
        deleted["UB_Customer"].deleted)
    assert one(portal, "SELECT phase, d.error LIKE '%%allow_mass_delete%%' FROM sync.run_datasets d JOIN sync.runs r"
               " USING (run_key) WHERE r.airflow_run_id = 'guarded' AND d.dataset = 'accounts'") == ("failed", True)
    sync(city, portal, "allowed", comm=guarded, interval=interval, **FULL,
         allow_mass_delete=("accounts", "balances", "charges", "residents", "payments", "assessments"))
    assert_in_sync(city, portal, guarded)


def test_a_paused_dag_loses_nothing(city, portal):
    for _ in range(4):  # four intervals pass with the DAG paused: no run at all
        interval, _ = advance(city, 15)
    results = sync(city, portal, "resumed", interval=interval)  # only the newest interval is scheduled
    assert results["charges"]["window_start"] < interval[0]
    assert_in_sync(city, portal)


def test_same_interval_twice_and_an_older_one_after_a_newer_change_nothing(city, portal):
    first, _ = advance(city, 15)
    second, _ = advance(city, 15)
    sync(city, portal, "i1", interval=first)
    sync(city, portal, "i2", interval=second)
    marks = dict(psycopg.connect(portal).execute("SELECT dataset, mark FROM sync.watermarks").fetchall())
    snapshot = portal_fingerprint(portal)
    again = sync(city, portal, "i2-again", interval=second)
    older = sync(city, portal, "i1-again", interval=first)
    for results in (again, older):
        for name, row in results.items():
            assert (row["rows_inserted"], row["rows_updated"], row["rows_deleted"]) == (0, 0, 0), (name, row)
    assert portal_fingerprint(portal) == snapshot
    assert dict(psycopg.connect(portal).execute("SELECT dataset, mark FROM sync.watermarks").fetchall()) == marks
    assert_in_sync(city, portal)


def test_audit_rows_show_windows_marks_and_counts(city, portal):
    interval, _ = advance(city, 15)
    sync(city, portal, "audited", interval=interval)
    with psycopg.connect(portal) as conn:
        rows = conn.execute(
            "SELECT dataset, mode, window_start, window_end, mark_before, mark_after, rows_extracted, rows_inserted"
            " FROM sync.run_datasets d JOIN sync.runs r USING (run_key) WHERE r.airflow_run_id = 'audited'"
        ).fetchall()
    by_name = {r[0]: r for r in rows}
    for name in ("charges", "payments", "balances"):
        _, mode, start, end, before, after, extracted, inserted = by_name[name]
        assert mode == "window" and start < end == interval[1]
        assert before is not None and after == max(before, end)
        assert extracted is not None and inserted is not None
    assert by_name["accounts"][1] == "full"


def test_local_times_land_as_instants_in_the_community_zone(city, portal):
    interval, _ = advance(city, 15)
    sync(city, portal, "tz", interval=interval)
    line = city.query('SELECT "TransactionID", "InputDate" FROM "UB_Transaction" WHERE "TransactionType" <> \'PMT\''
                      ' ORDER BY "TransactionID" DESC LIMIT 1')[0]
    posted = one(portal, "SELECT posted_at FROM portal.charges WHERE charge_id = %s", line[0])[0]
    assert posted == as_utc(datetime.fromisoformat(str(line[1])), TZ)
