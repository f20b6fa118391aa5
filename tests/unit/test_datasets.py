"""The declarations: complete, safe, and the SQL generated from them."""

from __future__ import annotations

import re

import pytest

from portal_sync.datasets import DATASETS, ORGANIZATION
from portal_sync.extract import select_sql
from portal_sync.rules import rules_for
from portal_sync.source.mariadb import MariaDB
from portal_sync.source.postgresql import PostgreSQL
from portal_sync.source.sqlite import SQLite
from portal_sync.source.sqlserver import SqlServer

# Sensitive or internal Caselle columns: never read (source contract).
FORBIDDEN = {"SSN", "BirthDate", "DriversLicense", "Notes", "DirectPayRouting", "DirectPayAccount",
             "CreditRating", "CollectionCode", "PayerName"}

PORTAL_COLUMNS = {
    "accounts": "account_id account_number account_number_digits resident_id landlord_resident_id "
                "master_account_id customer_type status online_access portal_visible house_number street_name "
                "unit city state zip service_address connect_date final_bill_date",
    "residents": "resident_id kind first_name middle_name last_name business_name display_name mail_address1 "
                 "mail_address2 mail_city mail_state mail_zip email phone",
    "charges": "charge_id account_id charge_type service_code description amount transaction_date due_date "
               "period reference_number posted_at voided voids_charge_id",
    "payments": "payment_id account_id receipt_number amount confirmation_number method paid_at status "
                "status_changed_at",
    "balances": "account_id as_of current_amount past_due_30 past_due_60 past_due_90 past_due_120 total_due "
                "last_bill_date last_bill_amount due_date last_payment_date last_payment_amount delinquent "
                "payment_status",
    "assessments": "assessment_id parcel_number district description owner_resident_id location_id "
                   "original_amount principal_balance installment_amount next_due_date status",
}


def _all_extracts():
    seen = {ORGANIZATION.name: ORGANIZATION}
    for ds in DATASETS.values():
        for ex in ds.extracts:
            seen[ex.name] = ex
    return list(seen.values())


def test_every_contract_column_is_projected_once():
    for name, cols in PORTAL_COLUMNS.items():
        assert list(DATASETS[name].projection) == cols.split(), name


@pytest.mark.parametrize("dialect", [SqlServer(), PostgreSQL(), MariaDB()], ids=lambda d: d.name)
def test_no_sensitive_column_in_any_sql_the_extractor_sends(dialect):
    for extract in _all_extracts():
        statement = select_sql(extract, dialect)
        words = set(re.findall(r"[A-Za-z_]+", statement))
        assert not words & FORBIDDEN, (extract.name, words & FORBIDDEN)
        assert "*" not in statement


def test_no_sensitive_column_in_the_checked_sql_a_sqlite_source_gets():
    for extract in _all_extracts():
        statement = select_sql(extract, SQLite())
        words = set(re.findall(r"[A-Za-z_]+", statement))
        assert not words & FORBIDDEN, (extract.name, words & FORBIDDEN)
        assert not re.search(r"SELECT\s+\*|,\s*\*\s*(,|FROM)", statement)  # its only * are in GLOB patterns


def test_select_is_ansi_and_quoted_with_the_driver_quote():
    statement = select_sql(DATASETS["charges"].primary, MariaDB())
    assert statement.startswith("SELECT `TransactionID`, `CustomerID`")
    assert "FROM `UB_Transaction` WHERE (`TransactionType` <> 'PMT')" in statement
    for vendor in ("LIMIT", "TOP ", "ISNULL", "NVL", "IFNULL", "GETDATE"):
        assert vendor not in statement.upper()


def test_references_point_at_declared_extracts():
    for ds in DATASETS.values():
        names = {ex.name for ex in ds.extracts}
        for ref in ds.references:
            assert ref.target_extract in names, (ds.name, ref)
            assert ds.primary.column(ref.column)


def test_rules_cover_keys_money_codes_and_orphans():
    names = {r.name for r in rules_for(DATASETS["charges"])}
    assert {"key_not_null", "key_unique", "money_exact", "orphan_account", "code_transactiontype"} <= names
    assert "orphan_owner" in {r.name for r in rules_for(DATASETS["assessments"])}
