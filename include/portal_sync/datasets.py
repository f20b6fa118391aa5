"""The data sets, each declared once: what is read from Caselle, how it is checked, how it lands.

Everything downstream (the extractor's SQL, the staging tables, the data-quality
rules, the projection and the merge) is generated from these declarations, so a
column that is not listed here is never selected, staged or published. That is
also how the sensitive Caselle columns (SSN, DirectPay*, PayerName, ...) are kept
in the source: they are simply absent.

SQL fragments in this module are trusted code, not user input. Staging tables are
referred to as ``{extract_name}`` and run-time values as ``%(name)s`` psycopg
parameters (``community``, ``tz``, ``visible_statuses``); see ``publish.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

ColumnKind = Literal["int", "bigint", "smallint", "text", "char", "money", "date", "datetime"]


@dataclass(frozen=True)
class SourceColumn:
    """One allow-listed Caselle column. ``length`` bounds text transfer buffers."""

    name: str
    kind: ColumnKind
    nullable: bool = False
    length: int | None = None


def _cols(spec: str) -> tuple[SourceColumn, ...]:
    """Parse a compact column list: ``Name:kind[:length][?]`` separated by whitespace.

    A trailing ``?`` marks a nullable column (mirrors ``NULL`` in the source contract).
    """
    out = []
    for token in spec.split():
        nullable = token.endswith("?")
        parts = token.rstrip("?").split(":")
        length = int(parts[2]) if len(parts) > 2 else None
        out.append(SourceColumn(parts[0], parts[1], nullable, length))  # type: ignore[arg-type]
    return tuple(out)


@dataclass(frozen=True)
class Extract:
    """A read of one Caselle table: the allow-listed columns and an optional ANSI filter.

    ``where`` may name other source tables (it runs on the source); identifiers in it
    are written ``{q}Name{q}`` and get the driver's own quote character.
    """

    name: str
    table: str
    columns: tuple[SourceColumn, ...]
    key: tuple[str, ...]
    where: str | None = None

    @property
    def amount_columns(self) -> dict[str, str]:
        """The stored numeric image (:func:`amount`) of each money column, by name."""
        return {amount(c.name): c.name for c in self.columns if c.kind == "money"}

    def column(self, name: str) -> SourceColumn:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.table} has no allow-listed column {name}")


@dataclass(frozen=True)
class Reference:
    """A column of the primary extract that must name a row of another extract."""

    column: str
    target_extract: str
    target_column: str
    rule: str
    description: str


@dataclass(frozen=True)
class CodeSet:
    """A code column whose values outside ``allowed`` have no portal meaning."""

    column: str
    allowed: tuple[str, ...]


DEFAULT_MAX_AMOUNT = 100_000.0  # {max_amount} of the plausibility checks unless the community sets one


@dataclass(frozen=True)
class Plausibility:
    """A row check that warns by default: Caselle is the system of record, so the row still
    publishes, but analysts see it. ``bad_rows_where`` may use the literals ``{max_amount}``,
    ``{min_date}``, ``{max_date}`` and ``{mask_regex}``, filled in from the settings and the run."""

    name: str
    description: str
    bad_rows_where: str
    columns: tuple[str, ...]  # shown in the reason


def implausible_dates(*columns: str) -> Plausibility:
    checks = " OR ".join(f's."{c}" < {{min_date}} OR s."{c}" > {{max_date}}' for c in columns)
    return Plausibility("implausible_date", "dates lie between 1950 and two years ahead", checks, columns)


def amount(column: str) -> str:
    """The staged numeric image of a money column: its value when it is exact money, else NULL.

    A stored column of every staging table (stage.create_table): PostgreSQL evaluates a view's
    expression again at each use, and the money regex, used by four checks, was most of the
    cost of validating a ledger (docs/benchmarks/gx.md)."""
    return f"{column}__amount"


def amount_sql(column_sql: str) -> str:
    """How a money column's numeric image is computed from its staged text (``column_sql``)."""
    return f"CASE WHEN sync.is_money({column_sql}) THEN ({column_sql})::numeric END"


def amount_size(*columns: str) -> Plausibility:
    checks = " OR ".join(f'abs(s."{amount(c)}") > {{max_amount}}' for c in columns)
    return Plausibility("amount_size", "amounts stay within the configured size", checks, columns)


@dataclass(frozen=True)
class Dataset:
    """One portal data set that a community can switch on or off."""

    name: str
    portal_table: str
    key: tuple[str, ...]  # portal key columns after community_code
    primary: Extract  # the extract whose rows become portal rows
    supporting: tuple[Extract, ...]  # extra reads (joined tables, reference key sets)
    projection: Mapping[str, str]  # portal column -> SQL over the staging tables
    from_clause: str  # FROM ... over staging tables; the primary is alias ``s``
    references: tuple[Reference, ...] = ()
    codes: tuple[CodeSet, ...] = ()
    delete_mode: Literal["soft", "archive_or_soft"] = "soft"
    depends_on: tuple[str, ...] = field(default=())
    # Incremental reading (docs/adr/0004). No signal: a full snapshot every run, compared
    # by content. With signals: rows whose signal column falls in the run's window.
    signals: tuple[str, ...] = ()
    # Portal column that orders versions of a row: an older one never replaces a newer one.
    version_column: str | None = None
    # Reconciliation: keys of every source row (finds deletes) and, for content, the rows
    # whose date column is within the configured range (None: all rows).
    reconcile_keys: Extract | None = None
    reconcile_date_column: str | None = None
    plausibility: tuple[Plausibility, ...] = ()

    @property
    def incremental(self) -> bool:
        return bool(self.signals)

    @property
    def extracts(self) -> tuple[Extract, ...]:
        return (self.primary, *self.supporting)

    @property
    def portal_columns(self) -> tuple[str, ...]:
        return ("community_code", *self.projection)


# --- source reads ---------------------------------------------------------------------------

ORGANIZATION = Extract(
    "organization",
    "SM_Organization",
    _cols("OrgCode:text:10 OrgName:text:100 TimeZone:text:40 CustomerNumberMask:text:20"),
    key=("OrgCode",),
)
CUSTOMERS = Extract(
    "customers",
    "UB_Customer",
    _cols(
        "CustomerID:int CustomerNumber:text:20 LocationID:int ContactID:int LandlordContactID:int? "
        "MasterCustomerID:int? CustomerType:text:4 Status:char:1 OnlineAccess:char:1 "
        "ConnectDate:date FinalBillDate:date?"
    ),
    key=("CustomerID",),
)
LOCATIONS = Extract(
    "locations",
    "UB_Location",
    _cols(
        "LocationID:int HouseNumber:text:10 StreetName:text:60 Unit:text:10? City:text:40 State:char:2 "
        "Zip:text:10 ParcelNumber:text:20? District:text:10? Cycle:smallint? Route:smallint?"
    ),
    key=("LocationID",),
)
CUSTOMER_KEYS = Extract("customer_keys", "UB_Customer", _cols("CustomerID:int"), key=("CustomerID",))
CONTACT_KEYS = Extract("contact_keys", "SM_Contact", _cols("ContactID:int"), key=("ContactID",))
LOCATION_KEYS = Extract("location_keys", "UB_Location", _cols("LocationID:int"), key=("LocationID",))
CONTACTS = Extract(
    "contacts",
    "SM_Contact",
    _cols(
        "ContactID:int ContactType:char:1 FirstName:text:40? MiddleName:text:40? LastName:text:60? "
        "BusinessName:text:100? MailAddress1:text:60? MailAddress2:text:60? MailCity:text:40? "
        "MailState:char:2? MailZip:text:10? Email:text:120? Phone:text:20?"
    ),
    key=("ContactID",),
    # Only contacts some account or assessment points to leave the source: master contacts
    # also hold employees and vendors, who have nothing to do with the portal.
    where=(
        "{q}ContactID{q} IN (SELECT {q}ContactID{q} FROM {q}UB_Customer{q})"
        " OR {q}ContactID{q} IN (SELECT {q}LandlordContactID{q} FROM {q}UB_Customer{q})"
        " OR {q}ContactID{q} IN (SELECT {q}OwnerContactID{q} FROM {q}PI_Assessment{q})"
    ),
)
TRANSACTIONS = Extract(
    "transactions",
    "UB_Transaction",
    _cols(
        "TransactionID:bigint CustomerID:int TransactionType:text:6 ServiceCode:text:4? "
        "Description:text:60 Amount:money TransactionDate:date InputDate:datetime DueDate:date? "
        "Period:char:7 ReferenceNumber:text:20? VoidsTransactionID:bigint?"
    ),
    key=("TransactionID",),
    where="{q}TransactionType{q} <> 'PMT'",
)
TRANSACTION_KEYS = Extract(
    "transaction_keys", "UB_Transaction", _cols("TransactionID:bigint"), key=("TransactionID",),
    where="{q}TransactionType{q} <> 'PMT'",
)
RECEIPT_KEYS = Extract(
    "receipt_keys", "CR_Receipt", _cols("ReceiptID:bigint"), key=("ReceiptID",), where="{q}CustomerID{q} IS NOT NULL",
)
BALANCE_KEYS = Extract("balance_keys", "UB_Balance", _cols("CustomerID:int"), key=("CustomerID",))
PERIOD_CLOSES = Extract(
    "period_closes",
    "UB_PeriodClose",
    _cols("CloseID:int ClosedAt:datetime PurgeBefore:date?"),
    key=("CloseID",),
)
RECEIPTS = Extract(
    "receipts",
    "CR_Receipt",
    _cols(
        "ReceiptID:bigint ReceiptNumber:text:12 CustomerID:int ReceiptDate:datetime InputDate:datetime "
        "PaymentMethod:text:6 Amount:money Status:char:1 StatusDate:datetime ConfirmationNumber:text:30?"
    ),
    key=("ReceiptID",),
    where="{q}CustomerID{q} IS NOT NULL",
)
BALANCES = Extract(
    "balances",
    "UB_Balance",
    _cols(
        "CustomerID:int AsOf:datetime BalanceCurrent:money Balance30:money Balance60:money "
        "Balance90:money Balance120:money TotalBalance:money LastBillDate:date? LastBillAmount:money? "
        "DueDate:date? LastPaymentDate:date? LastPaymentAmount:money? Delinquent:char:1"
    ),
    key=("CustomerID",),
)
ASSESSMENTS = Extract(
    "assessments",
    "PI_Assessment",
    _cols(
        "AssessmentID:int ParcelNumber:text:20 OwnerContactID:int LocationID:int? District:text:10 "
        "Description:text:60 OriginalAmount:money PrincipalBalance:money InstallmentAmount:money "
        "NextDueDate:date? Status:char:1"
    ),
    key=("AssessmentID",),
)

# --- projection helpers ---------------------------------------------------------------------


def money(expr: str) -> str:
    """Staged money is the driver's exact text; validation has refused anything not 2-place."""
    return f"({expr})::numeric(12,2)"


def local_time(expr: str) -> str:
    """A naive Caselle local time read in the community's zone (either reading in a DST fold)."""
    return f"(({expr}) AT TIME ZONE %(tz)s)"


def trimmed(expr: str) -> str:
    """CHAR columns come back blank-padded from some drivers; padding is not part of the value."""
    return f"rtrim({expr})"


def code_map(expr: str, mapping: Mapping[str, str]) -> str:
    whens = " ".join(f"WHEN '{src}' THEN '{dst}'" for src, dst in mapping.items())
    return f"(CASE rtrim({expr}) {whens} END)"


ACCOUNT_STATUS = {"A": "active", "F": "final", "I": "inactive", "V": "vacant"}
RECEIPT_STATUS = {"U": "pending", "P": "posted", "V": "voided", "R": "refunded"}
ASSESSMENT_STATUS = {"A": "active", "P": "paid", "I": "inactive"}
CONTACT_KIND = {"P": "person", "B": "business"}
TRANSACTION_TYPES = ("BILL", "PEN", "ADJ", "PMT", "PMTADJ", "XFER", "DEP", "DEPAPP", "BEGBAL", "VOID")
SERVICE_CODES = ("WA", "SE", "GA", "ST", "EL", "IR")
CUSTOMER_TYPES = ("RES", "COM", "IND", "GOV", "IRR")
PAYMENT_METHODS = ("CASH", "CHECK", "CARD", "ACH", "ONLINE")


def _nonblank(expr: str) -> str:
    return f"NULLIF(btrim({expr}), '')"


# --- the six data sets ----------------------------------------------------------------------

ACCOUNTS = Dataset(
    name="accounts",
    portal_table="accounts",
    key=("account_id",),
    primary=CUSTOMERS,
    supporting=(LOCATIONS, CONTACT_KEYS),
    from_clause='{customers} s LEFT JOIN {locations} l ON l."LocationID" = s."LocationID"',
    projection={
        "account_id": 's."CustomerID"',
        "account_number": 's."CustomerNumber"',
        "account_number_digits": "regexp_replace(s.\"CustomerNumber\", '[^0-9]', '', 'g')",
        "resident_id": 's."ContactID"',
        "landlord_resident_id": 's."LandlordContactID"',
        "master_account_id": 's."MasterCustomerID"',
        "customer_type": 's."CustomerType"',
        "status": code_map('s."Status"', ACCOUNT_STATUS),
        "online_access": "(rtrim(s.\"OnlineAccess\") = 'Y')",
        "portal_visible": (
            "(rtrim(s.\"OnlineAccess\") = 'Y' AND " + code_map('s."Status"', ACCOUNT_STATUS)
            + " = ANY(%(visible_statuses)s))"
        ),
        "house_number": 'l."HouseNumber"',
        "street_name": 'l."StreetName"',
        "unit": 'l."Unit"',
        "city": 'l."City"',
        "state": trimmed('l."State"'),
        "zip": 'l."Zip"',
        "service_address": (
            "concat_ws(' ', " + _nonblank('l."HouseNumber"') + ", " + _nonblank('l."StreetName"') + ", "
            + _nonblank('l."Unit"') + ")"
        ),
        "connect_date": 's."ConnectDate"',
        "final_bill_date": 's."FinalBillDate"',
    },
    references=(
        Reference("LocationID", "locations", "LocationID", "orphan_location",
                  "the account's LocationID names no UB_Location row"),
        Reference("ContactID", "contact_keys", "ContactID", "orphan_holder",
                  "the account holder's ContactID names no SM_Contact row"),
    ),
    codes=(
        CodeSet("Status", tuple(ACCOUNT_STATUS)),
        CodeSet("OnlineAccess", ("Y", "N")),
        CodeSet("CustomerType", CUSTOMER_TYPES),
    ),
    plausibility=(
        implausible_dates("ConnectDate", "FinalBillDate"),
        Plausibility("number_off_mask", "CustomerNumber matches the community's customer-number mask",
                     's."CustomerNumber" !~ {mask_regex}', ("CustomerNumber",)),
    ),
)

RESIDENTS = Dataset(
    name="residents",
    portal_table="residents",
    key=("resident_id",),
    primary=CONTACTS,
    supporting=(),
    from_clause="{contacts} s",
    projection={
        "resident_id": 's."ContactID"',
        "kind": code_map('s."ContactType"', CONTACT_KIND),
        "first_name": 's."FirstName"',
        "middle_name": 's."MiddleName"',
        "last_name": 's."LastName"',
        "business_name": 's."BusinessName"',
        "display_name": (
            "(CASE rtrim(s.\"ContactType\") WHEN 'B' THEN s.\"BusinessName\" ELSE NULLIF(concat_ws(' ', "
            + _nonblank('s."FirstName"') + ", " + _nonblank('s."LastName"') + "), '') END)"
        ),
        "mail_address1": 's."MailAddress1"',
        "mail_address2": 's."MailAddress2"',
        "mail_city": 's."MailCity"',
        "mail_state": trimmed('s."MailState"'),
        "mail_zip": 's."MailZip"',
        "email": 's."Email"',
        "phone": 's."Phone"',
    },
    codes=(CodeSet("ContactType", tuple(CONTACT_KIND)),),
    depends_on=("accounts", "assessments"),
)

CHARGES = Dataset(
    name="charges",
    portal_table="charges",
    key=("charge_id",),
    primary=TRANSACTIONS,
    supporting=(CUSTOMER_KEYS, PERIOD_CLOSES),
    from_clause="{transactions} s",
    projection={
        "charge_id": 's."TransactionID"',
        "account_id": 's."CustomerID"',
        "charge_type": 's."TransactionType"',
        "service_code": 's."ServiceCode"',
        "description": 's."Description"',
        "amount": money('s."Amount"'),
        "transaction_date": 's."TransactionDate"',
        "due_date": 's."DueDate"',
        "period": trimmed('s."Period"'),
        "reference_number": 's."ReferenceNumber"',
        "posted_at": local_time('s."InputDate"'),
        "voided": (
            "EXISTS (SELECT 1 FROM {transactions} v WHERE v.\"VoidsTransactionID\" = s.\"TransactionID\""
            " AND v.\"TransactionType\" = 'VOID')"
        ),
        "voids_charge_id": 's."VoidsTransactionID"',
    },
    references=(
        Reference("CustomerID", "customer_keys", "CustomerID", "orphan_account",
                  "the ledger line's CustomerID names no UB_Customer row"),
    ),
    codes=(
        CodeSet("TransactionType", TRANSACTION_TYPES),
        CodeSet("ServiceCode", SERVICE_CODES),
    ),
    delete_mode="archive_or_soft",
    signals=("InputDate",),
    reconcile_keys=TRANSACTION_KEYS,
    reconcile_date_column="TransactionDate",
    plausibility=(
        implausible_dates("TransactionDate", "DueDate", "InputDate"),
        # BEGBAL lines of a period close keep the due date of the charges they carry forward.
        Plausibility("due_before_transaction", "DueDate is not before TransactionDate (BEGBAL lines aside)",
                     's."DueDate" < s."TransactionDate" AND s."TransactionType" <> \'BEGBAL\'',
                     ("TransactionDate", "DueDate")),
        amount_size("Amount"),
    ),
)

PAYMENTS = Dataset(
    name="payments",
    portal_table="payments",
    key=("payment_id",),
    primary=RECEIPTS,
    supporting=(CUSTOMER_KEYS,),
    from_clause="{receipts} s",
    projection={
        "payment_id": 's."ReceiptID"',
        "account_id": 's."CustomerID"',
        "receipt_number": 's."ReceiptNumber"',
        "amount": money('s."Amount"'),
        "confirmation_number": 's."ConfirmationNumber"',
        "method": 'lower(s."PaymentMethod")',
        "paid_at": local_time('s."ReceiptDate"'),
        "status": code_map('s."Status"', RECEIPT_STATUS),
        "status_changed_at": local_time('s."StatusDate"'),
    },
    references=(
        Reference("CustomerID", "customer_keys", "CustomerID", "orphan_account",
                  "the receipt's CustomerID names no UB_Customer row"),
    ),
    codes=(CodeSet("Status", tuple(RECEIPT_STATUS)), CodeSet("PaymentMethod", PAYMENT_METHODS)),
    signals=("InputDate", "StatusDate"),
    version_column="status_changed_at",
    reconcile_keys=RECEIPT_KEYS,
    reconcile_date_column="ReceiptDate",
    plausibility=(implausible_dates("ReceiptDate", "StatusDate", "InputDate"), amount_size("Amount")),
)

_PAST_DUE = ('s."Balance30"', 's."Balance60"', 's."Balance90"', 's."Balance120"')
BALANCES_DS = Dataset(
    name="balances",
    portal_table="balances",
    key=("account_id",),
    primary=BALANCES,
    supporting=(CUSTOMER_KEYS,),
    from_clause="{balances} s",
    projection={
        "account_id": 's."CustomerID"',
        "as_of": local_time('s."AsOf"'),
        "current_amount": money('s."BalanceCurrent"'),
        "past_due_30": money('s."Balance30"'),
        "past_due_60": money('s."Balance60"'),
        "past_due_90": money('s."Balance90"'),
        "past_due_120": money('s."Balance120"'),
        "total_due": money('s."TotalBalance"'),
        "last_bill_date": 's."LastBillDate"',
        "last_bill_amount": money('s."LastBillAmount"'),
        "due_date": 's."DueDate"',
        "last_payment_date": 's."LastPaymentDate"',
        "last_payment_amount": money('s."LastPaymentAmount"'),
        "delinquent": "(rtrim(s.\"Delinquent\") = 'Y')",
        "payment_status": (
            "(CASE WHEN " + money('s."TotalBalance"') + " < 0 THEN 'credit'"
            " WHEN " + money('s."TotalBalance"') + " = 0 THEN 'paid'"
            " WHEN rtrim(s.\"Delinquent\") = 'Y' THEN 'delinquent'"
            " WHEN " + " OR ".join(money(c) + " > 0" for c in _PAST_DUE) + " THEN 'past_due'"
            " ELSE 'current' END)"
        ),
    },
    references=(
        Reference("CustomerID", "customer_keys", "CustomerID", "orphan_account",
                  "the balance's CustomerID names no UB_Customer row"),
    ),
    codes=(CodeSet("Delinquent", ("Y", "N")),),
    signals=("AsOf",),
    version_column="as_of",
    reconcile_keys=BALANCE_KEYS,
    plausibility=(
        implausible_dates("AsOf", "LastBillDate", "DueDate", "LastPaymentDate"),
        amount_size("TotalBalance"),
        Plausibility(
            "buckets_sum", "BalanceCurrent + Balance30..120 add up to TotalBalance",
            " + ".join(f's."{amount(c)}"' for c in ("BalanceCurrent", "Balance30", "Balance60", "Balance90",
                                                    "Balance120"))
            + f' <> s."{amount("TotalBalance")}"',
            ("BalanceCurrent", "Balance30", "Balance60", "Balance90", "Balance120", "TotalBalance"),
        ),
    ),
)

ASSESSMENTS_DS = Dataset(
    name="assessments",
    portal_table="assessments",
    key=("assessment_id",),
    primary=ASSESSMENTS,
    supporting=(CONTACT_KEYS, LOCATION_KEYS),
    from_clause="{assessments} s",
    projection={
        "assessment_id": 's."AssessmentID"',
        "parcel_number": 's."ParcelNumber"',
        "district": 's."District"',
        "description": 's."Description"',
        "owner_resident_id": 's."OwnerContactID"',
        "location_id": 's."LocationID"',
        "original_amount": money('s."OriginalAmount"'),
        "principal_balance": money('s."PrincipalBalance"'),
        "installment_amount": money('s."InstallmentAmount"'),
        "next_due_date": 's."NextDueDate"',
        "status": code_map('s."Status"', ASSESSMENT_STATUS),
    },
    references=(
        Reference("OwnerContactID", "contact_keys", "ContactID", "orphan_owner",
                  "the assessment's OwnerContactID names no SM_Contact row"),
        Reference("LocationID", "location_keys", "LocationID", "orphan_location",
                  "the assessment's LocationID names no UB_Location row"),
    ),
    codes=(CodeSet("Status", tuple(ASSESSMENT_STATUS)),),
    plausibility=(implausible_dates("NextDueDate"), amount_size("OriginalAmount", "PrincipalBalance")),
)

# Publish order matters: residents are scoped by the accounts and assessments just published.
DATASETS: dict[str, Dataset] = {
    ds.name: ds for ds in (ACCOUNTS, ASSESSMENTS_DS, CHARGES, PAYMENTS, BALANCES_DS, RESIDENTS)
}
DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)
