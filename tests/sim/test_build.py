"""A generated tiny community: every kind of row the contract describes, stored like a naive app would."""

from __future__ import annotations

import re
from datetime import date, datetime

import pytest

from caselle_sim import PRESETS, create_source
from caselle_sim.checks import all_problems


def _values(sim, sql):
    return {r[0] for r in sim.query(sql)}


def test_tiny_has_every_kind_of_row(tiny):
    q = tiny.query
    assert _values(tiny, 'SELECT "Status" FROM "UB_Customer"') == {"A", "F", "I", "V"}
    assert _values(tiny, 'SELECT "CustomerType" FROM "UB_Customer"') == {"RES", "COM", "IND", "GOV", "IRR"}
    assert _values(tiny, 'SELECT "OnlineAccess" FROM "UB_Customer"') == {"Y", "N"}
    assert q('SELECT COUNT(*) FROM "UB_Customer" WHERE "LandlordContactID" IS NOT NULL')[0][0] > 0
    assert q('SELECT COUNT(*) FROM "UB_Customer" c JOIN "UB_Customer" m ON m."CustomerID" = c."MasterCustomerID"'
             )[0][0] > 0
    assert _values(tiny, 'SELECT "TransactionType" FROM "UB_Transaction"') == {
        "BILL", "PEN", "ADJ", "PMT", "PMTADJ", "XFER", "DEP", "DEPAPP", "BEGBAL", "VOID"}
    assert _values(tiny, 'SELECT "ServiceCode" FROM "UB_Transaction" WHERE "ServiceCode" IS NOT NULL') == {
        "WA", "SE", "GA", "ST", "EL", "IR"}
    assert _values(tiny, 'SELECT "Status" FROM "CR_Receipt"') == {"U", "P", "V", "R"}
    assert _values(tiny, 'SELECT "PaymentMethod" FROM "CR_Receipt"') == {"CASH", "CHECK", "CARD", "ACH", "ONLINE"}
    assert q('SELECT COUNT(*) FROM "CR_Receipt" WHERE "CustomerID" IS NULL')[0][0] > 0
    assert _values(tiny, 'SELECT "Status" FROM "PI_Assessment"') == {"A", "P", "I"}
    assert q('SELECT COUNT(*) FROM "PI_Assessment" WHERE "LocationID" IS NULL')[0][0] > 0
    assert _values(tiny, 'SELECT "ContactType" FROM "SM_Contact"') == {"P", "B"}
    # employees, vendors: contacts nothing points to
    assert q('SELECT COUNT(*) FROM "SM_Contact" s WHERE NOT EXISTS (SELECT 1 FROM "UB_Customer" c WHERE '
             'c."ContactID" = s."ContactID" OR c."LandlordContactID" = s."ContactID") AND NOT EXISTS '
             '(SELECT 1 FROM "PI_Assessment" a WHERE a."OwnerContactID" = s."ContactID")')[0][0] >= 6
    # every aging bucket, credits and delinquency occur
    for col in ("BalanceCurrent", "Balance30", "Balance60", "Balance90", "Balance120"):
        assert q(f'SELECT COUNT(*) FROM "UB_Balance" WHERE "{col}" > 0')[0][0] > 0, col
    assert q('SELECT COUNT(*) FROM "UB_Balance" WHERE "TotalBalance" < 0')[0][0] > 0
    assert _values(tiny, 'SELECT "Delinquent" FROM "UB_Balance"') == {"Y", "N"}


def test_sensitive_columns_hold_realistic_values(tiny):
    ssn = [r[0] for r in tiny.query('SELECT "SSN" FROM "SM_Contact" WHERE "SSN" IS NOT NULL')]
    assert ssn and all(re.fullmatch(r"9\d\d-\d\d-\d{4}", s) for s in ssn)
    for col in ("BirthDate", "DriversLicense", "Notes"):
        assert tiny.query(f'SELECT COUNT(*) FROM "SM_Contact" WHERE "{col}" IS NOT NULL')[0][0] > 0, col
    for col in ("DirectPayRouting", "DirectPayAccount", "CreditRating", "CollectionCode"):
        assert tiny.query(f'SELECT COUNT(*) FROM "UB_Customer" WHERE "{col}" IS NOT NULL')[0][0] > 0, col
    routing = [r[0] for r in tiny.query('SELECT "DirectPayRouting" FROM "UB_Customer" '
                                        'WHERE "DirectPayRouting" IS NOT NULL')]
    for r in routing:  # ABA check digit
        d = [int(c) for c in r]
        assert (3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + d[2] + d[5] + d[8]) % 10 == 0
    assert tiny.query('SELECT COUNT(*) FROM "CR_Receipt" WHERE "PayerName" IS NOT NULL')[0][0] > 0


def test_invariants_hold_after_the_build(tiny):
    assert all_problems(tiny) == []


def test_sqlite_stores_values_like_a_naive_application(tiny):
    types = {r[0] for r in tiny.query('SELECT typeof("Amount") FROM "UB_Transaction"')}
    assert types <= {"real", "integer"} and "real" in types
    assert {r[0] for r in tiny.query('SELECT typeof("TransactionDate") FROM "UB_Transaction"')} == {"text"}
    stamps = [r[0] for r in tiny.query('SELECT "InputDate" FROM "UB_Transaction"')]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", s) for s in stamps)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d", r[0]) for r in tiny.query('SELECT "DueDate" FROM "UB_Balance" '
                                                                          'WHERE "DueDate" IS NOT NULL'))
    # money is exact to the cent even though it is stored as a float
    for (v,) in tiny.query('SELECT "Amount" FROM "UB_Transaction"') + tiny.query('SELECT "Amount" FROM "CR_Receipt"'):
        assert abs(v * 100 - round(v * 100)) < 1e-6


def test_ledger_looks_like_utility_bills(tiny):
    avg = tiny.query('SELECT AVG("Amount") FROM "UB_Transaction" WHERE "TransactionType" = \'BILL\'')[0][0]
    assert 5 < avg < 300
    first, last = tiny.query('SELECT MIN("TransactionDate"), MAX("TransactionDate") FROM "UB_Transaction"')[0]
    assert first == "2016-11-01" and last <= "2026-11-02"  # ten years before the clock, nothing after it
    assert tiny.query('SELECT MAX("InputDate") FROM "UB_Transaction"')[0][0] <= "2026-11-02 08:00:00.000"
    # IDs were handed out in entry order
    stamps = [r[0] for r in tiny.query('SELECT "InputDate" FROM "UB_Transaction" ORDER BY "TransactionID"')]
    assert stamps == sorted(stamps)
    # some lines were entered days after their business date
    assert tiny.query('SELECT COUNT(*) FROM "UB_Transaction" WHERE substr("InputDate", 1, 10) > '
                      '"TransactionDate"')[0][0] > 0


def test_numbers_follow_the_mask_and_organisation_row(new_source):
    sim = new_source(org_code="CEDARHLS", org_name="Town of Cedar Hills", time_zone="America/Boise",
                     customer_number_mask="#.####.#")
    assert sim.query('SELECT * FROM "SM_Organization"') == [("CEDARHLS", "Town of Cedar Hills", "America/Boise",
                                                            "#.####.#")]
    numbers = [r[0] for r in sim.query('SELECT "CustomerNumber" FROM "UB_Customer"')]
    assert len(set(numbers)) == len(numbers)
    assert all(re.fullmatch(r"\d\.\d{4}\.\d", n) for n in numbers)
    assert {r[0] for r in sim.query('SELECT "City" FROM "UB_Location"')} == {"Cedar Hills"}


def test_clock_and_reopen(new_source):
    sim = new_source(start=datetime(2025, 3, 9, 1, 30))
    assert sim.now == datetime(2025, 3, 9, 1, 30) and sim.step == 0
    assert sim.spec.engine == "sqlite"


def test_refuses_to_replace_unless_asked(new_source):
    sim = new_source()
    with pytest.raises(FileExistsError):
        create_source(sim.spec, preset="tiny", replace=False)


def test_presets():
    assert set(PRESETS) >= {"tiny", "town", "city"}
    assert PRESETS["town"].accounts == 3000 and PRESETS["city"].accounts == 60000


def test_assessments_point_at_contacts_and_locations(tiny):
    bad = tiny.query('SELECT COUNT(*) FROM "PI_Assessment" a WHERE NOT EXISTS (SELECT 1 FROM "SM_Contact" c '
                     'WHERE c."ContactID" = a."OwnerContactID") OR (a."LocationID" IS NOT NULL AND NOT EXISTS '
                     '(SELECT 1 FROM "UB_Location" l WHERE l."LocationID" = a."LocationID"))')
    assert bad == [(0,)]
    rows = tiny.read_table("PI_Assessment")
    for r in rows:
        assert 0 <= r["PrincipalBalance"] <= r["OriginalAmount"]
        assert (r["NextDueDate"] is not None) == (r["Status"] == "A")
        if r["NextDueDate"]:
            assert r["NextDueDate"] >= date(2026, 11, 2)


def test_a_community_whose_final_bills_need_no_refund_builds(tmp_path):
    """Seed 1128 at this clock has no final bill with more deposit than charges: an empty batch of
    refund lines (found by the property test, which starts its sources at the current time)."""
    from caselle_sim import SourceSpec

    spec = SourceSpec.from_url(f"sqlite:///{tmp_path / 'caselle.db'}")
    sim = create_source(spec, preset="tiny", seed=1128, time_zone="America/Denver", start=datetime(2026, 12, 6, 15, 30))
    try:
        assert sim.query('SELECT COUNT(*) FROM "UB_Transaction"')[0][0] > 0
        assert all_problems(sim) == []
    finally:
        sim.close()
        spec.drop()
