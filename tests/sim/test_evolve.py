"""Evolving a source: what the ChangeSet says is exactly what changed, and the invariants survive."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from caselle_sim import open_source
from caselle_sim.checks import all_problems, diff, snapshot

BUSY = {"period_close_per_day": 0.0, "modify_data_per_hour": 3.0, "orphans_per_hour": 2.0}


def assert_changeset_is_exact(before, after, cs):
    got = diff(before, after)
    for table, (ins, upd, dele) in got.items():
        c = cs[table]
        assert (c.inserted, c.updated, c.deleted) == (ins, upd, dele), table


def test_evolve_reports_exactly_what_changed_and_keeps_the_invariants(tiny):
    before = snapshot(tiny)
    t0 = tiny.now
    cs = tiny.evolve(timedelta(hours=6), rates=BUSY)
    assert (cs.before, cs.after, tiny.now) == (t0, t0 + timedelta(hours=6), t0 + timedelta(hours=6))
    after = snapshot(tiny)
    assert_changeset_is_exact(before, after, cs)
    for table in ("SM_Contact", "UB_Customer", "UB_Transaction", "CR_Receipt", "UB_Balance"):
        assert cs[table], f"six busy hours changed nothing in {table}"
    assert all_problems(tiny) == []


def test_new_lines_are_entered_now_and_old_lines_keep_their_input_date(tiny):
    before = snapshot(tiny)
    t0 = tiny.now
    cs = tiny.evolve(timedelta(hours=2), rates={"late_commit_share": 0.0})
    after = snapshot(tiny)
    input_idx = 7  # InputDate position in the UB_Transaction row tuple
    for tid in cs["UB_Transaction"].inserted:
        assert t0 < after["UB_Transaction"][tid][input_idx] <= tiny.now
    assert not cs["UB_Transaction"].updated and not cs["UB_Transaction"].deleted
    assert max(after["UB_Transaction"]) > max(before["UB_Transaction"])


def test_late_commits_carry_an_input_date_older_than_lines_already_written(tiny):
    t0 = tiny.now
    cs = tiny.evolve(timedelta(minutes=30), rates={"late_commit_share": 1.0, "bills": 500.0})
    late = [r for r in tiny.read_table("UB_Transaction", ["TransactionID", "TransactionType", "InputDate"])
            if r["TransactionID"] in cs["UB_Transaction"].inserted and r["TransactionType"] != "PMT"]
    assert late and all(t0 - timedelta(minutes=3) <= r["InputDate"] < t0 for r in late)
    assert all_problems(tiny) == []


def test_back_dated_lines(tiny):
    cs = tiny.evolve(timedelta(hours=1), rates={"backdate_share": 1.0, "bills": 500.0})
    rows = [r for r in tiny.read_table("UB_Transaction", ["TransactionID", "TransactionType", "TransactionDate"])
            if r["TransactionID"] in cs["UB_Transaction"].inserted and r["TransactionType"] == "BILL"]
    assert rows and all(r["TransactionDate"] < tiny.now.date() for r in rows)


def test_imported_receipts_are_posted_later_with_their_pmt_line(tiny):
    cs1 = tiny.evolve(timedelta(minutes=20), rates={"payments": 2000.0, "post_delay_minutes": 30})
    pending = {r["ReceiptID"] for r in tiny.read_table("CR_Receipt", ["ReceiptID", "Status"])
               if r["ReceiptID"] in cs1["CR_Receipt"].inserted and r["Status"] == "U"}
    assert pending
    cs2 = tiny.evolve(timedelta(hours=2), rates={"pending_voids": 0.0, "floor": 0.0})
    assert pending <= cs2["CR_Receipt"].updated
    receipts = {r["ReceiptID"]: r for r in tiny.read_table("CR_Receipt")}
    pmts = {r["ReceiptID"]: r for r in tiny.read_table("UB_Transaction") if r["TransactionType"] == "PMT"}
    for rid in pending:
        r = receipts[rid]
        assert r["Status"] == "P" and r["StatusDate"] > r["InputDate"]
        assert pmts[rid]["Amount"] == -r["Amount"] and pmts[rid]["InputDate"] == r["StatusDate"]
    assert all_problems(tiny) == []


def test_period_close_purges_writes_begbal_and_keeps_every_balance(tiny):
    tiny.evolve(timedelta(hours=3))
    before = snapshot(tiny)
    cs = tiny.period_close(date(2020, 1, 1))
    after = snapshot(tiny)
    assert_changeset_is_exact(before, after, cs)
    assert after["UB_Balance"] == before["UB_Balance"]
    gone = cs["UB_Transaction"].deleted
    assert gone and all(before["UB_Transaction"][t][6] < date(2020, 1, 1) for t in gone)
    assert all(r[6] >= date(2020, 1, 1) for r in after["UB_Transaction"].values())
    begbal = [after["UB_Transaction"][t] for t in cs["UB_Transaction"].inserted]
    assert begbal and {r[2] for r in begbal} == {"BEGBAL"}
    closes = list(after["UB_PeriodClose"].values())
    assert closes == [(1, tiny.now, date(2020, 1, 1))]
    assert all_problems(tiny) == []
    # evolving after the close still keeps every balance equal to the ledger
    tiny.evolve(timedelta(hours=3))
    assert all_problems(tiny) == []


def test_period_close_without_purge_only_logs(tiny):
    cs = tiny.period_close(None)
    assert cs.counts() == {"UB_PeriodClose": (1, 0, 0)}


def test_delete_inactive_customers(tiny):
    before = snapshot(tiny)
    cs = tiny.delete_inactive_customers()
    after = snapshot(tiny)
    assert_changeset_is_exact(before, after, cs)
    gone = cs["UB_Customer"].deleted
    assert gone and cs["UB_Balance"].deleted == gone
    for cid in gone:
        assert before["UB_Customer"][cid][7] in ("I", "F")
        assert before["UB_Balance"][cid][7] == 0
    assert not any(r[1] in gone for r in after["UB_Transaction"].values())
    # their receipts stay: orphans now
    assert any(r[2] in gone for r in after["CR_Receipt"].values())
    assert all_problems(tiny) == []


def test_delete_inactive_customers_with_a_count(tiny):
    cs = tiny.delete_inactive_customers(count=2)
    assert len(cs["UB_Customer"].deleted) == 2


def test_renumber_keeps_numbers_unique_and_in_the_mask(tiny):
    before = snapshot(tiny)
    cs = tiny.renumber(fraction=1.0)
    after = snapshot(tiny)
    assert_changeset_is_exact(before, after, cs)
    assert cs["UB_Customer"].updated == set(before["UB_Customer"])
    assert all(after["UB_Customer"][c][1] != before["UB_Customer"][c][1] for c in before["UB_Customer"])
    assert all_problems(tiny) == []
    half = tiny.renumber(fraction=0.5)
    assert len(half["UB_Customer"].updated) == round(len(before["UB_Customer"]) * 0.5)


def test_modify_data_edits_in_place_without_touching_input_date(tiny):
    before = snapshot(tiny)
    cs = tiny.modify_data(8)
    after = snapshot(tiny)
    assert_changeset_is_exact(before, after, cs)
    edited = cs["UB_Transaction"].updated
    assert len(edited) == 8
    names = ["TransactionID", "CustomerID", "TransactionType", "ServiceCode", "Description", "Amount",
             "TransactionDate", "InputDate", "DueDate", "Period", "ReferenceNumber", "ReceiptID", "VoidsTransactionID"]
    allowed = {"Amount", "Description", "TransactionDate", "DueDate"}
    for tid in edited:
        changed = {n for n, a, b in zip(names, before["UB_Transaction"][tid], after["UB_Transaction"][tid],
                                        strict=True) if a != b}
        assert changed and changed <= allowed
        assert before["UB_Transaction"][tid][2] in ("BILL", "ADJ", "PEN", "DEP")
    assert cs["UB_Balance"].updated  # the customers' balances were recomputed
    assert all_problems(tiny) == []


def test_orphans_name_customers_that_never_exist(tiny):
    cs = tiny.add_orphans(lines=5, receipts=2)
    customers = {r["CustomerID"] for r in tiny.read_table("UB_Customer", ["CustomerID"])}
    lines = [r for r in tiny.read_table("UB_Transaction") if r["TransactionID"] in cs["UB_Transaction"].inserted]
    receipts = [r for r in tiny.read_table("CR_Receipt") if r["ReceiptID"] in cs["CR_Receipt"].inserted]
    assert len([r for r in lines if r["TransactionType"] != "PMT"]) == 5 and len(receipts) == 2
    orphan_ids = {r["CustomerID"] for r in lines} | {r["CustomerID"] for r in receipts}
    assert not orphan_ids & customers
    assert not cs["UB_Balance"]
    # later customers never take an orphan's ID
    cs2 = tiny.evolve(timedelta(days=2))
    assert cs2["UB_Customer"].inserted and not cs2["UB_Customer"].inserted & orphan_ids
    assert all_problems(tiny) == []


def test_ids_are_never_reused(tiny):
    before = snapshot(tiny)
    tiny.delete_inactive_customers()
    cs = tiny.evolve(timedelta(days=1))
    for table in ("UB_Customer", "UB_Transaction", "CR_Receipt", "SM_Contact"):
        assert all(k > max(before[table]) for k in cs[table].inserted), table


def test_state_survives_reopening(tiny):
    tiny.evolve(timedelta(minutes=45))
    now, step, seq = tiny.now, tiny.step, dict(tiny.seq)
    tiny.close()
    again = open_source(tiny.spec.url)
    assert (again.now, again.step, again.seq) == (now, step, seq)
    cs = again.evolve(timedelta(minutes=15))
    assert cs.before == now
    again.close()


def test_fall_back_repeats_an_hour_of_local_times(new_source):
    sim = new_source(start=datetime(2026, 11, 1, 0, 30))  # America/Denver leaves DST at 02:00
    clocks = [sim.now]
    steps = []
    for _ in range(8):
        steps.append(sim.evolve(timedelta(minutes=15), rates={"floor": 40.0}))
        clocks.append(sim.now)
    hhmm = [c.strftime("%H:%M") for c in clocks]
    assert hhmm == ["00:30", "00:45", "01:00", "01:15", "01:30", "01:45", "01:00", "01:15", "01:30"]
    assert [cs.before > cs.after for cs in steps] == [False] * 5 + [True] + [False] * 2
    # lines entered in both passes of the repeated hour
    stamps = [r["InputDate"] for r in sim.read_table("UB_Transaction", ["InputDate"])
              if r["InputDate"].date() == date(2026, 11, 1) and r["InputDate"].hour == 1]
    assert len(stamps) > len(set(s.replace(minute=0, second=0, microsecond=0) for s in stamps))
    assert all_problems(sim) == []


def test_spring_forward_skips_an_hour_of_local_times(new_source):
    sim = new_source(start=datetime(2026, 3, 8, 1, 0))  # 02:00-03:00 does not exist that day
    before = snapshot(sim)
    for _ in range(8):
        sim.evolve(timedelta(minutes=15), rates={"floor": 40.0})
    assert sim.now == datetime(2026, 3, 8, 4, 0)
    new = diff(before, snapshot(sim))["UB_Transaction"][0]
    stamps = [r["InputDate"] for r in sim.read_table("UB_Transaction") if r["TransactionID"] in new]
    assert stamps and not [s for s in stamps if s.date() == date(2026, 3, 8) and s.hour == 2]


def test_insert_rows_and_raw_queries_use_sqlite_storage_conventions(tiny):
    from decimal import Decimal

    tiny.insert_rows("UB_Transaction", [{
        "TransactionID": 99_000_000, "CustomerID": 1, "TransactionType": "ADJ", "ServiceCode": None,
        "Description": "PLANTED", "Amount": Decimal("12.34"), "TransactionDate": date(2026, 1, 2),
        "InputDate": datetime(2026, 1, 2, 3, 4, 5, 678000), "DueDate": None, "Period": "2026-01",
        "ReferenceNumber": None, "ReceiptID": None, "VoidsTransactionID": None}])
    row = tiny.query('SELECT "Amount", typeof("Amount"), "TransactionDate", "InputDate" FROM "UB_Transaction" '
                     'WHERE "TransactionID" = ?', [99_000_000])
    assert row == [(12.34, "real", "2026-01-02", "2026-01-02 03:04:05.678")]
    assert tiny.seq["TransactionID"] == 99_000_001  # the sequence moved past the planted ID
    assert tiny.execute('UPDATE "UB_Transaction" SET "Description" = ? WHERE "TransactionID" = ?',
                        ["PLANTED 2", 99_000_000]) == 1
    counts = tiny.counts()
    assert counts["UB_Transaction"] == len(tiny.query('SELECT 1 FROM "UB_Transaction"'))


def test_rates_are_validated(tiny):
    with pytest.raises(ValueError):
        tiny.evolve(timedelta(minutes=5), rates={"no_such_rate": 1})
    with pytest.raises(ValueError):
        tiny.evolve(timedelta(0))
