"""Hostile source values and hostile configuration: every value lands exactly or is refused by a rule
naming it, nothing crashes the other data sets, nothing is silently altered, no name reaches SQL.

The corpus is planted into one tiny simulated SQLite Caselle (SQLite stores whatever it is given, and
its ODBC driver silently converts what it cannot read), synced once through the real drivers and
Great Expectations, and every planted row is judged on its own: either its portal row equals the
oracle's projection (tests/oracle.py reads the stored value with the native driver), or
sync.run_findings holds (data set, row key, rule, reason) for it and the portal holds no row for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg
import pytest
from psycopg import sql
from synctest import TZ, community, sync

from caselle_sim import SourceSpec, create_source
from oracle import actual_portal, differences, expected_portal
from portal_sync.config import parse_config
from portal_sync.datasets import DATASET_NAMES
from portal_sync.params import RunRequest, RunRequestError

pytestmark = pytest.mark.integration

CODE = "SPRINGFLD"
DATASET_OF = {"UB_Transaction": "charges", "CR_Receipt": "payments", "UB_Balance": "balances",
              "UB_Customer": "accounts", "SM_Contact": "residents", "PI_Assessment": "assessments"}
FIRST_KEY = {"UB_Transaction": 8_300_001, "CR_Receipt": 8_400_001, "UB_Customer": 8_200_001,
             "SM_Contact": 8_100_001, "PI_Assessment": 8_500_001, "UB_Balance": 8_200_101}
CARRIER_KEY = 8_200_501  # valid accounts planted to point at planted contacts (residents are scoped by them)
LANDED = "landed"


@dataclass(frozen=True)
class Case:
    """One hostile value: planted into ``column`` of a new row of ``table``; ``outcome`` is LANDED or
    the rule that must refuse the row; ``portal`` (column, value) is what must land, when it lands."""

    id: str
    table: str
    column: str
    value: object
    outcome: str
    portal: tuple[str, object] | None = None


C = "{customer}"  # placeholder: an existing active customer of the source
NUL_TEXT = "AB\x00CD"
CONTROL = "tab\there\nnl\r\x01\x1b[31m\x7f end"

CORPUS: tuple[Case, ...] = (
    # text: control characters, 4-byte Unicode, NUL, over-long, empty vs NULL, binary
    Case("description_control_chars", "UB_Transaction", "Description", CONTROL, LANDED, ("description", CONTROL)),
    Case("description_4byte_unicode", "UB_Transaction", "Description", "Paid 😀 𠀀 𪚥 — ✓", LANDED,
         ("description", "Paid 😀 𠀀 𪚥 — ✓")),
    Case("description_60_emoji_at_declared_length", "UB_Transaction", "Description", "😀" * 60, LANDED,
         ("description", "😀" * 60)),
    Case("description_nul", "UB_Transaction", "Description", NUL_TEXT, "unreadable_value"),
    Case("description_61_chars_over_varchar60", "UB_Transaction", "Description", "x" * 61, "text_length"),
    Case("description_5000_chars_over_buffer", "UB_Transaction", "Description", "y" * 5000, "text_length"),
    Case("description_empty_string", "UB_Transaction", "Description", "", LANDED, ("description", "")),
    Case("description_binary_blob", "UB_Transaction", "Description", b"ABC", "unreadable_value"),
    Case("reference_empty_string", "UB_Transaction", "ReferenceNumber", "", LANDED, ("reference_number", "")),
    Case("reference_null", "UB_Transaction", "ReferenceNumber", None, LANDED, ("reference_number", None)),
    Case("period_4byte_unicode_in_char7", "UB_Transaction", "Period", "2026-😀1", LANDED, ("period", "2026-😀1")),
    Case("period_over_char7", "UB_Transaction", "Period", "2026-11-01", "text_length"),
    # money: many decimals, out of numeric(12,2), text, empty, float artefacts, the extremes
    Case("amount_four_decimals_real", "UB_Transaction", "Amount", 12.3456, "money_exact"),
    Case("amount_seven_decimals_text", "UB_Transaction", "Amount", "12.3456789", "money_exact"),
    Case("amount_over_numeric_12_2", "UB_Transaction", "Amount", 123456789012.5, "money_exact"),
    Case("amount_under_numeric_12_2", "UB_Transaction", "Amount", -12345678901.25, "money_exact"),
    Case("amount_max_numeric_12_2", "UB_Transaction", "Amount", Decimal("9999999999.99"), LANDED,
         ("amount", Decimal("9999999999.99"))),
    Case("amount_min_numeric_12_2", "UB_Transaction", "Amount", Decimal("-9999999999.99"), LANDED,
         ("amount", Decimal("-9999999999.99"))),
    Case("amount_text_12_30", "UB_Transaction", "Amount", "12.30", LANDED, ("amount", Decimal("12.30"))),
    Case("amount_text_abc", "UB_Transaction", "Amount", "abc", "money_exact"),
    # SQLite's NUMERIC affinity stores the text '1e3' as the integer 1000: that is the stored value.
    Case("amount_text_1e3", "UB_Transaction", "Amount", "1e3", LANDED, ("amount", Decimal("1000.00"))),
    Case("amount_empty_string", "UB_Transaction", "Amount", "", "money_exact"),
    Case("amount_text_longer_than_its_buffer", "UB_Transaction", "Amount", "EUR " + "9" * 100, "money_exact"),
    Case("amount_float_0_1_plus_0_2", "UB_Transaction", "Amount", 0.1 + 0.2, LANDED, ("amount", Decimal("0.30"))),
    # dates: year 1 and 9999, impossible, words, a time in a DATE, empty
    Case("transaction_date_year_1", "UB_Transaction", "TransactionDate", "0001-01-01", LANDED,
         ("transaction_date", date(1, 1, 1))),
    Case("transaction_date_year_9999", "UB_Transaction", "TransactionDate", "9999-12-31", LANDED,
         ("transaction_date", date(9999, 12, 31))),
    Case("transaction_date_feb_30", "UB_Transaction", "TransactionDate", "2024-02-30", "unreadable_value"),
    Case("transaction_date_yesterday", "UB_Transaction", "TransactionDate", "yesterday", "unreadable_value"),
    Case("transaction_date_with_time", "UB_Transaction", "TransactionDate", "2024-02-29 13:00:00",
         "unreadable_value"),
    Case("due_date_feb_30_nullable", "UB_Transaction", "DueDate", "2024-02-30", "unreadable_value"),
    Case("due_date_empty_string", "UB_Transaction", "DueDate", "", "unreadable_value"),
    # date-times: 'T' separator, time-zone suffixes, too many fraction digits, calendar ends, hour 25
    Case("input_date_t_separator", "UB_Transaction", "InputDate", "2026-11-02T08:15:30.250", LANDED),
    Case("input_date_offset_suffix", "UB_Transaction", "InputDate", "2026-11-02 08:15:30+02:00", "unreadable_value"),
    Case("input_date_z_suffix", "UB_Transaction", "InputDate", "2026-11-02T08:15:30Z", "unreadable_value"),
    Case("input_date_7_fraction_digits", "UB_Transaction", "InputDate", "2026-11-02 08:15:30.1234567",
         "unreadable_value"),
    Case("input_date_year_1", "UB_Transaction", "InputDate", "0001-01-02 12:00:00", LANDED),
    Case("input_date_first_day_of_calendar", "UB_Transaction", "InputDate", "0001-01-01 12:00:00",
         "datetime_range"),
    Case("input_date_last_moment_9999", "UB_Transaction", "InputDate", "9999-12-31 23:59:59.999", "datetime_range"),
    Case("input_date_hour_25", "UB_Transaction", "InputDate", "2026-11-02 25:00:00", "unreadable_value"),
    # numeric text in numeric columns
    Case("customer_id_12abc_style", "UB_Transaction", "CustomerID", C + "abc", "unreadable_value"),
    Case("customer_id_zero_padded", "UB_Transaction", "CustomerID", "000" + C, LANDED),  # SQLite stores the int
    Case("customer_id_real", "UB_Transaction", "CustomerID", C + ".5", "unreadable_value"),
    Case("customer_id_beyond_int32", "UB_Transaction", "CustomerID", 2**31 + 5, "unreadable_value"),
    Case("voids_id_text", "UB_Transaction", "VoidsTransactionID", "12abc", "unreadable_value"),
    Case("key_zero_padded", "UB_Transaction", "TransactionID", "0008300091", LANDED),
    Case("key_text_8300090x", "UB_Transaction", "TransactionID", "8300090x", "unreadable_value"),
    Case("every_column_unreadable_at_once", "UB_Transaction", "*", {
        "CustomerID": "x" * 70, "Description": "é\x00" * 40, "Amount": "z" * 300, "TransactionDate": "😀" * 80,
        "InputDate": "2026-11-02 08:15:30 CET", "DueDate": "?" * 90, "Period": b"\x00" * 9,
        "VoidsTransactionID": 1.5}, "unreadable_value"),
    # payments
    Case("confirmation_30_cjk_ext_b", "CR_Receipt", "ConfirmationNumber", "𠀀" * 30, LANDED,
         ("confirmation_number", "𠀀" * 30)),
    Case("confirmation_over_varchar30", "CR_Receipt", "ConfirmationNumber", "1" * 31, "text_length"),
    Case("receipt_number_control_chars", "CR_Receipt", "ReceiptNumber", "R\x07-1\t2", LANDED,
         ("receipt_number", "R\x07-1\t2")),
    Case("receipt_date_t_separator", "CR_Receipt", "ReceiptDate", "2026-11-02T09:00:00", LANDED),
    Case("status_date_offset_suffix", "CR_Receipt", "StatusDate", "2026-11-02 09:00:00-07:00", "unreadable_value"),
    Case("receipt_amount_text", "CR_Receipt", "Amount", "25.5", LANDED, ("amount", Decimal("25.50"))),
    Case("payment_method_with_nul", "CR_Receipt", "PaymentMethod", "CASH\x00", "unreadable_value"),
    # balances (each on a planted account of its own)
    Case("balance_max_numeric_12_2", "UB_Balance", "TotalBalance", Decimal("9999999999.99"), LANDED,
         ("total_due", Decimal("9999999999.99"))),
    Case("balance_30_abc", "UB_Balance", "Balance30", "abc", "money_exact"),
    Case("as_of_last_second_9999", "UB_Balance", "AsOf", "9999-12-31 23:59:59", "datetime_range"),
    Case("last_bill_date_feb_29_2023", "UB_Balance", "LastBillDate", "2023-02-29", "unreadable_value"),
    Case("last_payment_amount_text", "UB_Balance", "LastPaymentAmount", "12.30", LANDED,
         ("last_payment_amount", Decimal("12.30"))),
    # accounts
    Case("customer_number_4byte_unicode", "UB_Customer", "CustomerNumber", "😀-00001-01", LANDED,
         ("account_number", "😀-00001-01")),
    Case("customer_type_empty_string", "UB_Customer", "CustomerType", "", "code_customertype"),
    Case("connect_date_yesterday", "UB_Customer", "ConnectDate", "yesterday", "unreadable_value"),
    Case("final_bill_date_feb_30", "UB_Customer", "FinalBillDate", "2024-02-30", "unreadable_value"),
    Case("landlord_id_12abc", "UB_Customer", "LandlordContactID", "12abc", "unreadable_value"),
    Case("status_with_nul", "UB_Customer", "Status", "A\x00", "unreadable_value"),
    Case("online_access_over_char1", "UB_Customer", "OnlineAccess", "YES", "text_length"),
    # residents (each contact pointed at by a planted account of its own)
    Case("first_name_4byte_unicode", "SM_Contact", "FirstName", "Zoë 😀", LANDED, ("first_name", "Zoë 😀")),
    Case("first_name_1000_emoji", "SM_Contact", "FirstName", "😀" * 1000, "text_length"),
    Case("first_name_161_bytes_in_varchar40", "SM_Contact", "FirstName", "é" * 81, "text_length"),
    Case("last_name_nul", "SM_Contact", "LastName", "O\x00Brien", "unreadable_value"),
    Case("middle_name_empty_string", "SM_Contact", "MiddleName", "", LANDED, ("middle_name", "")),
    Case("email_over_varchar120", "SM_Contact", "Email", "a" * 110 + "@example.com", "text_length"),
    Case("business_name_control_chars", "SM_Contact", "BusinessName", "ACME\tInc\n", LANDED,
         ("business_name", "ACME\tInc\n")),
    Case("mail_state_emoji_in_char2", "SM_Contact", "MailState", "😀😀", LANDED, ("mail_state", "😀😀")),
    Case("phone_over_varchar20", "SM_Contact", "Phone", "☎" * 21, "text_length"),
    # assessments
    Case("original_amount_min", "PI_Assessment", "OriginalAmount", Decimal("-9999999999.99"), LANDED,
         ("original_amount", Decimal("-9999999999.99"))),
    Case("principal_1e10", "PI_Assessment", "PrincipalBalance", 1e10, "money_exact"),
    Case("next_due_date_9999", "PI_Assessment", "NextDueDate", "9999-12-31", LANDED,
         ("next_due_date", date(9999, 12, 31))),
    Case("district_empty_string", "PI_Assessment", "District", "", LANDED, ("district", "")),
    Case("description_60_cjk_ext_b", "PI_Assessment", "Description", "𪚥" * 60, LANDED,
         ("description", "𪚥" * 60)),
    Case("owner_id_12abc", "PI_Assessment", "OwnerContactID", "12abc", "unreadable_value"),
)

# Rows whose planted key is itself the hostile value: the staged key is what the driver read.
STAGED_KEY = {"key_zero_padded": 8_300_091, "key_text_8300090x": 8_300_090}
GOOD_TWIN = 8_300_090  # a valid line with the key the driver reads from '8300090x'


def _base_rows(sim) -> dict:
    customer = sim.query('SELECT "CustomerID" FROM "UB_Customer" WHERE "Status" = \'A\' ORDER BY 1')[0][0]
    contact = sim.query('SELECT "ContactID" FROM "UB_Customer" WHERE "CustomerID" = ?', (customer,))[0][0]
    location = sim.query('SELECT "LocationID" FROM "UB_Location" ORDER BY 1')[0][0]
    stamp = "2026-11-02 09:00:00.000"
    return {
        "customer": customer,
        "UB_Transaction": {"CustomerID": customer, "TransactionType": "ADJ", "ServiceCode": "WA",
                           "Description": "HOSTILE TEST", "Amount": 1.25, "TransactionDate": "2026-11-02",
                           "InputDate": stamp, "DueDate": None, "Period": "2026-11", "ReferenceNumber": None,
                           "ReceiptID": None, "VoidsTransactionID": None},
        "CR_Receipt": {"ReceiptNumber": "R-HOSTILE", "CustomerID": customer, "ReceiptDate": stamp, "InputDate": stamp,
                       "PaymentMethod": "CASH", "Amount": 5.0, "Status": "P", "StatusDate": stamp,
                       "ConfirmationNumber": None, "PayerName": None},
        "UB_Customer": {"CustomerNumber": "999-00001-01", "LocationID": location, "ContactID": contact,
                        "LandlordContactID": None, "MasterCustomerID": None, "CustomerType": "RES", "Status": "A",
                        "OnlineAccess": "Y", "ConnectDate": "2020-01-01", "FinalBillDate": None},
        "SM_Contact": {"ContactType": "P", "FirstName": "Pat", "MiddleName": None, "LastName": "Doe",
                       "BusinessName": None, "MailAddress1": None, "MailAddress2": None, "MailCity": None,
                       "MailState": None, "MailZip": None, "Email": None, "Phone": None},
        "UB_Balance": {"AsOf": stamp, "BalanceCurrent": 0, "Balance30": 0, "Balance60": 0, "Balance90": 0,
                       "Balance120": 0, "TotalBalance": 0, "LastBillDate": None, "LastBillAmount": None,
                       "DueDate": None, "LastPaymentDate": None, "LastPaymentAmount": None, "Delinquent": "N"},
        "PI_Assessment": {"ParcelNumber": "P-HOSTILE", "OwnerContactID": contact, "LocationID": None,
                          "District": "SID-1", "Description": "HOSTILE TEST", "OriginalAmount": 100,
                          "PrincipalBalance": 50, "InstallmentAmount": 10, "NextDueDate": None, "Status": "A"},
    }


KEY_COLUMN = {"UB_Transaction": "TransactionID", "CR_Receipt": "ReceiptID", "UB_Customer": "CustomerID",
              "SM_Contact": "ContactID", "PI_Assessment": "AssessmentID", "UB_Balance": "CustomerID"}


def _insert(sim, table: str, row: dict) -> None:
    """Plant one row as given: SQLite keeps text, bytes and numbers (a Decimal goes in as a REAL, the way
    a naive application stores money; column affinity may still turn numeric text into a number)."""
    values = [float(v) if isinstance(v, Decimal) else v for v in row.values()]
    cols = ", ".join(f'"{c}"' for c in row)
    sim.execute(f'INSERT INTO "{table}" ({cols}) VALUES ({", ".join("?" for _ in row)})', values)


def plant_corpus(sim) -> dict[str, tuple[str, int]]:
    """Plant every case in a row of its own; returns case id -> (data set, portal key)."""
    base = _base_rows(sim)
    customer = str(base["customer"])
    next_key = dict(FIRST_KEY)
    carrier = CARRIER_KEY
    where: dict[str, tuple[str, int]] = {}
    for case in CORPUS:
        table = case.table
        key = next_key[table]
        next_key[table] += 1
        row = {KEY_COLUMN[table]: key, **base[table]}
        value = case.value.replace(C, customer) if isinstance(case.value, str) else case.value
        if table == "UB_Balance":  # a balance needs an account of its own
            _insert(sim, "UB_Customer", {"CustomerID": key, **base["UB_Customer"]})
        if table == "SM_Contact":  # a contact reaches the portal only through an account pointing to it
            _insert(sim, "UB_Customer", {"CustomerID": carrier, **base["UB_Customer"], "ContactID": key})
            carrier += 1
        if case.column == "*":
            row.update(value)
        else:
            row[case.column] = value
        _insert(sim, table, row)
        where[case.id] = (DATASET_OF[table], STAGED_KEY.get(case.id, key))
    _insert(sim, "UB_Transaction", {"TransactionID": GOOD_TWIN, **base["UB_Transaction"],
                                    "Description": "GOOD TWIN OF 8300090x"})
    return where


def empty_portal(portal_url: str) -> None:
    """What the ``portal`` fixture does, for a module-scoped run."""
    with psycopg.connect(portal_url, autocommit=True) as conn:
        tables = conn.execute("SELECT format('%I.%I', schemaname, tablename) FROM pg_tables"
                              " WHERE schemaname IN ('portal', 'sync')").fetchall()
        conn.execute("TRUNCATE " + ", ".join(t[0] for t in tables) + " CASCADE")
        for (name,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'stage'").fetchall():
            conn.execute(sql.SQL("DROP TABLE stage.{}").format(sql.Identifier(name)))


@dataclass
class HostileRun:
    results: dict
    where: dict[str, tuple[str, int]]
    findings: dict[tuple[str, str], list[tuple[str, str]]]  # (data set, row key) -> [(rule, reason)]
    expected: dict
    actual: dict


@pytest.fixture(scope="module")
def hostile(portal_url, tmp_path_factory) -> HostileRun:
    spec = SourceSpec.from_url(f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'caselle.db'}")
    sim = create_source(spec, preset="tiny", seed=31, org_code=CODE, time_zone=TZ)
    try:
        where = plant_corpus(sim)
        empty_portal(portal_url)
        results = sync(sim, portal_url, "hostile", use_gx=True)
        with psycopg.connect(portal_url) as conn:
            rows = conn.execute("SELECT dataset, row_key, rule, reason FROM sync.run_findings"
                                " WHERE severity = 'refuse'").fetchall()
        findings: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for dataset, key, rule, reason in rows:
            findings.setdefault((dataset, key), []).append((rule, reason))
        return HostileRun(results, where, findings, expected_portal(sim, CODE, TZ, DATASET_NAMES),
                          actual_portal(portal_url, CODE, DATASET_NAMES))
    finally:
        sim.close()
        spec.drop()


def test_every_data_set_of_the_hostile_run_publishes(hostile):
    assert {name: row["phase"] for name, row in hostile.results.items()} == dict.fromkeys(DATASET_NAMES, "published")


@pytest.mark.parametrize("case", CORPUS, ids=[c.id for c in CORPUS])
def test_each_hostile_value_lands_exactly_or_is_refused_by_its_rule(hostile, case):
    dataset, key = hostile.where[case.id]
    refusals = hostile.findings.get((dataset, str(key)), [])
    if case.outcome == LANDED:
        assert not refusals, f"{case.id}: refused {refusals}"
        assert (key,) in hostile.actual[dataset], f"{case.id}: not in portal.{dataset}"
        assert (key,) in hostile.expected[dataset], f"{case.id}: the oracle gives it no portal form"
        problems = differences({dataset: {(key,): hostile.expected[dataset][(key,)]}},
                               {dataset: {(key,): hostile.actual[dataset][(key,)]}})
        assert not problems, problems
        if case.portal:
            column, value = case.portal
            assert hostile.actual[dataset][(key,)][column] == value
        return
    rules = {rule for rule, _ in refusals}
    assert case.outcome in rules, f"{case.id}: expected refusal by {case.outcome}, found {refusals}"
    reason = next(reason for rule, reason in refusals if rule == case.outcome)
    assert case.column in reason or case.column == "*", f"{case.id}: the reason does not name {case.column}: {reason!r}"
    if case.id == "key_text_8300090x":  # the driver reads '8300090x' as 8300090: the real 8300090 still lands
        assert "'8300090x'" in reason
        assert hostile.actual[dataset][(key,)]["description"] == "GOOD TWIN OF 8300090x"
    else:
        assert (key,) not in hostile.actual[dataset], f"{case.id}: refused, yet published"


def test_the_rest_of_the_community_equals_the_projection(hostile):
    planted = {}
    for dataset, key in hostile.where.values():
        planted.setdefault(dataset, set()).add((key,))

    def without(tables):
        return {name: {k: v for k, v in rows.items() if k not in planted.get(name, set())}
                for name, rows in tables.items()}

    problems = differences(without(hostile.expected), without(hostile.actual))
    assert not problems, "\n".join(problems[:40])


def test_reasons_show_what_was_stored_not_what_the_driver_made_of_it(hostile):
    def reason(case_id: str, rule: str) -> str:
        dataset, key = hostile.where[case_id]
        return next(r for ru, r in hostile.findings[(dataset, str(key))] if ru == rule)

    assert "'2026-11-02 08:15:30+02:00' is not a local date-time" in reason("input_date_offset_suffix",
                                                                            "unreadable_value")
    assert "'2024-02-30' is not a date" in reason("due_date_feb_30_nullable", "unreadable_value")
    assert "Description holds a NUL character" in reason("description_nul", "unreadable_value")
    assert "is not an integer in the INT range" in reason("customer_id_beyond_int32", "unreadable_value")
    long_text = reason("description_5000_chars_over_buffer", "text_length")
    assert "Description has 255 characters (declared 60)" in long_text and len(long_text) < 200
    assert "Description is 5000 characters long" in reason("description_5000_chars_over_buffer",
                                                           "unreadable_value")


def test_a_data_set_that_cannot_be_read_fails_alone_and_the_others_publish(make_source, portal):
    """Text that is not UTF-8 (SQLite stores any bytes) cannot be read at all: its data set fails with a
    message naming it, the value is not echoed, and every other data set of the run publishes."""
    sim = make_source("sqlite", seed=32)
    line = sim.query('SELECT "TransactionID" FROM "UB_Transaction" WHERE "TransactionType" = \'BILL\' LIMIT 1')[0][0]
    sim.execute('UPDATE "UB_Transaction" SET "Description" = CAST(X\'5A5AFF5A\' AS TEXT) WHERE "TransactionID" = ?',
                (line,))
    with pytest.raises(Exception, match="charges") as raised:
        sync(sim, portal, "bad-utf8")
    assert "not valid UTF-8" in str(raised.value)
    with psycopg.connect(portal) as conn:
        phases = dict(conn.execute("SELECT dataset, phase FROM sync.run_datasets").fetchall())
        error = conn.execute("SELECT error FROM sync.run_datasets WHERE dataset = 'charges'").fetchone()[0]
        outcome = conn.execute("SELECT outcome FROM sync.runs").fetchone()[0]
    assert phases == {**dict.fromkeys(DATASET_NAMES, "published"), "charges": "failed"}
    assert "UB_Transaction" in error and "not valid UTF-8" in error and "ZZ" not in error
    assert outcome == "partly_published"


# --- MariaDB: a hostile but typed row set lands exactly -------------------------------------------

def test_mariadb_typed_extremes_land_exactly(make_source, portal):
    """utf8mb4 4-byte text at full declared length, DECIMAL(12,2) extremes, DATETIME(3) boundaries and
    INT/BIGINT extremes land exactly; a NUL byte (MariaDB VARCHAR holds it, PostgreSQL text cannot) and
    the last DATETIME(3) (its instant lies after year 9999) are refused by their rules."""
    sim = make_source("mariadb", seed=33)
    customer = sim.query('SELECT "CustomerID" FROM "UB_Customer" WHERE "Status" = \'A\' ORDER BY 1')[0][0]
    contact, location = sim.query('SELECT "ContactID", "LocationID" FROM "UB_Customer" WHERE "CustomerID" = ?',
                                  (customer,))[0]
    biggest = 2**63 - 1
    line = {"CustomerID": customer, "TransactionType": "ADJ", "ServiceCode": "WA", "Description": "TYPED",
            "Amount": Decimal("1.00"), "TransactionDate": date(2026, 11, 2), "InputDate": "2026-11-02 09:00:00.000",
            "DueDate": None, "Period": "2026-11", "ReferenceNumber": None, "ReceiptID": None,
            "VoidsTransactionID": None}
    sim.insert_rows("UB_Transaction", [
        {**line, "TransactionID": 8_600_001, "Description": "😀" * 60, "Amount": Decimal("9999999999.99")},
        {**line, "TransactionID": 8_600_002, "Description": "𠀀𪚥" * 30, "Amount": Decimal("-9999999999.99")},
        {**line, "TransactionID": 8_600_003, "InputDate": "2026-12-31 23:59:59.999",  # ms kept; UTC is next year
         "TransactionDate": date(9999, 12, 31), "DueDate": date(1000, 1, 1)},
        {**line, "TransactionID": 8_600_004, "InputDate": "1000-01-01 00:00:00.000"},  # DATETIME(3) minimum
        {**line, "TransactionID": biggest, "Description": "BIGINT MAX KEY", "VoidsTransactionID": biggest - 1},
        {**line, "TransactionID": 8_600_005, "Description": "NUL\x00BYTE"},
        {**line, "TransactionID": 8_600_006, "InputDate": "9999-12-31 23:59:59.999"},  # DATETIME(3) maximum
    ])
    sim.insert_rows("UB_Customer", [{
        "CustomerID": 2**31 - 1, "CustomerNumber": "😀𠀀-00001-01", "LocationID": location, "ContactID": contact,
        "LandlordContactID": None, "MasterCustomerID": None, "CustomerType": "RES", "Status": "A",
        "OnlineAccess": "Y", "ConnectDate": date(1000, 1, 1), "FinalBillDate": date(9999, 12, 31)}])
    sim.insert_rows("UB_Balance", [{
        "CustomerID": 2**31 - 1, "AsOf": "2026-11-02 09:00:00.999", "BalanceCurrent": Decimal("9999999999.99"),
        "Balance30": Decimal("-9999999999.99"), "Balance60": Decimal("0.01"), "Balance90": Decimal("-0.01"),
        "Balance120": Decimal("0.00"), "TotalBalance": Decimal("0.00"), "LastBillDate": None,
        "LastBillAmount": None, "DueDate": None, "LastPaymentDate": None, "LastPaymentAmount": None,
        "Delinquent": "N"}])

    results = sync(sim, portal, "typed")
    assert {name: row["phase"] for name, row in results.items()} == dict.fromkeys(DATASET_NAMES, "published")
    with psycopg.connect(portal) as conn:
        refused = {(d, k, r) for d, k, r in conn.execute(
            "SELECT dataset, row_key, rule FROM sync.run_findings WHERE severity = 'refuse'").fetchall()}
    assert refused == {("charges", "8600005", "unreadable_value"), ("charges", "8600006", "datetime_range")}
    expected = expected_portal(sim, CODE, TZ, DATASET_NAMES)
    for key in ((8_600_005,), (8_600_006,)):
        expected["charges"].pop(key, None)  # the oracle gives 8600006 no portal form either
    actual = actual_portal(portal, CODE, DATASET_NAMES)
    problems = differences(expected, actual)
    assert not problems, "\n".join(problems[:40])
    for dataset, key in (("charges", 8_600_001), ("charges", 8_600_002), ("charges", 8_600_003),
                         ("charges", 8_600_004), ("charges", biggest), ("accounts", 2**31 - 1),
                         ("balances", 2**31 - 1)):
        assert (key,) in actual[dataset], (dataset, key)
    assert actual["charges"][(8_600_001,)]["description"] == "😀" * 60
    assert actual["charges"][(8_600_001,)]["amount"] == Decimal("9999999999.99")
    posted = actual["charges"][(8_600_003,)]["posted_at"].astimezone(UTC)
    assert posted == datetime(2027, 1, 1, 6, 59, 59, 999_000, tzinfo=UTC)  # 23:59:59.999 Denver, ms kept
    assert actual["balances"][(2**31 - 1,)]["past_due_30"] == Decimal("-9999999999.99")


# --- configuration: no configured name reaches SQL ---------------------------------------------------

GOOD = {"code": "SPRINGFLD", "caselle_conn_id": "caselle_springfld", "time_zone": "America/Denver"}
INJECTIONS = (
    "x'; DROP TABLE portal.accounts; --",
    'x"; DROP SCHEMA sync CASCADE; --',
    "x) OR (1=1",
    "X\x00Y",
    "SPR;DELETE",
    "accounts; TRUNCATE sync.watermarks",
)


def _entries(payload: str) -> list[tuple[str, dict]]:
    """(field, change) pairs putting the payload into every configured name."""
    return [
        ("code", {"code": payload}),
        ("code", {"code": payload.upper()}),
        ("caselle_conn_id", {"caselle_conn_id": payload}),
        ("pool", {"pool": payload}),
        ("datasets", {"datasets": ["accounts", payload]}),
        ("cadence_minutes", {"cadence_minutes": {payload: 5}}),
        ("quality.severity", {"quality": {"severity": {payload: "warn"}}}),
        ("quality.severity", {"quality": {"severity": {f"charges.{payload}": "warn"}}}),
        ("quality.severity", {"quality": {"severity": {f"{payload}.money_exact": "warn"}}}),
        ("quality.severity", {"quality": {"severity": {"money_exact": payload}}}),
        ("visible_statuses", {"visible_statuses": ["active", payload]}),
        ("time_zone", {"time_zone": payload}),
        ("schedule", {"schedule": payload}),
        ("reconcile_schedule", {"reconcile_schedule": payload}),
    ]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_names_that_try_sql_injection_are_refused_at_load(payload, monkeypatch):
    def no_database(*_a, **_k):
        raise AssertionError("loading the configuration must not touch any database")

    monkeypatch.setattr(psycopg, "connect", no_database)
    import pyodbc
    monkeypatch.setattr(pyodbc, "connect", no_database)
    for field, change in _entries(payload):
        loaded = parse_config({"communities": [{**GOOD, **change}, {**GOOD, "code": "CEDARHLS"}]})
        assert [c.code for c in loaded.communities] == ["CEDARHLS"], (field, payload)
        assert len(loaded.errors) == 1 and field in str(loaded.errors[0]), (field, loaded.errors)
    for conf in ({"datasets": [payload]}, {"allow_mass_delete": ["charges", payload]}, {payload: True}):
        with pytest.raises(RunRequestError, match="parameter"):
            RunRequest.from_conf(conf)


def test_free_text_names_are_data_never_sql(make_source, portal):
    """A display name, an OrgName and a customer-number mask full of SQL are stored and used as values."""
    payload = "City'); DROP TABLE portal.accounts; --"
    sim = make_source("sqlite", seed=34)
    sim.execute('UPDATE "SM_Organization" SET "OrgName" = ?, "CustomerNumberMask" = ?',
                ("Town'); DELETE FROM sync.runs; --", "###'-#####-##"))
    comm = community(name=payload)
    results = sync(sim, portal, "names", comm=comm)
    assert {name: row["phase"] for name, row in results.items()} == dict.fromkeys(DATASET_NAMES, "published")
    with psycopg.connect(portal) as conn:
        assert conn.execute("SELECT name FROM portal.communities").fetchone()[0] == payload
        assert conn.execute("SELECT count(*) FROM portal.accounts").fetchone()[0] > 0
        assert conn.execute("SELECT count(*) FROM sync.runs").fetchone()[0] == 1
        assert conn.execute("SELECT customer_number_mask FROM sync.runs").fetchone()[0] == "###'-#####-##"
        # Every account number misses that mask: the check ran (as a warning) with the quote as a literal.
        warned = conn.execute("SELECT count(*) FROM sync.run_findings WHERE rule = 'number_off_mask'").fetchone()[0]
        accounts = conn.execute("SELECT count(*) FROM portal.accounts").fetchone()[0]
    assert warned == accounts
    sync(sim, portal, "names-2", comm=community())  # without a configured name, OrgName is shown as stored
    with psycopg.connect(portal) as conn:
        assert conn.execute("SELECT name FROM portal.communities").fetchone()[0] == "Town'); DELETE FROM sync.runs; --"
        assert conn.execute("SELECT count(*) FROM sync.runs").fetchone()[0] == 2
