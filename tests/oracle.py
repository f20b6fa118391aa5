"""An independent reading of the portal contract, for tests.

It derives the portal rows the sync must leave straight from the source rows (read
with the simulator's native driver), written plainly in Python and sharing no code
with portal_sync, so that a mistake in the declarations or the SQL projection shows
up as a difference instead of being checked against itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import psycopg

CENT = Decimal("0.01")
ACCOUNT_STATUS = {"A": "active", "F": "final", "I": "inactive", "V": "vacant"}
RECEIPT_STATUS = {"U": "pending", "P": "posted", "V": "voided", "R": "refunded"}
ASSESSMENT_STATUS = {"A": "active", "P": "paid", "I": "inactive"}


class Instants(tuple):
    """A source local time that may have two correct readings (a DST fold or gap)."""


def money(value) -> Decimal | None:
    if value is None:
        return None
    return Decimal(str(value)).quantize(CENT)


def exact_money(value) -> bool:
    """The contract's 'money is exact': at most two places inside numeric(12,2). A float is read the
    way the SQLite ODBC driver renders a REAL (15 significant digits)."""
    if value is None:
        return True
    text = f"{value:.15g}" if isinstance(value, float) else str(value).strip()
    try:
        amount = Decimal(text)
    except ArithmeticError:
        return False
    return amount.is_finite() and amount == amount.quantize(CENT) and abs(amount) < Decimal("1e10")


def all_exact(row: dict, *columns: str) -> bool:
    return all(exact_money(row[c]) for c in columns)


DATE_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
STAMP_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?")
INT32 = range(-(2**31), 2**31)


def readable(row: dict, ints: Sequence[str] = (), bigints: Sequence[str] = (), dates: Sequence[str] = (),
             stamps: Sequence[str] = ()) -> bool:
    """The contract's typed values: integers (INT in 32 bits), dates (YYYY-MM-DD) and naive local
    date-times whose instant exists in every zone (not on the calendar's first or last day). SQLite
    stores anything ('12abc' in an INT column, 'yesterday' in a DATE, a time-zone suffix): such a row
    has no portal form and is refused."""
    for col in (*ints, *bigints):
        value = row[col]
        if value is not None and (type(value) is not int or (col in ints and value not in INT32)):
            return False
    for col in dates:
        value = row[col]
        if value is None or isinstance(value, date):
            continue
        if not (isinstance(value, str) and DATE_TEXT.fullmatch(value)):
            return False
        try:
            date.fromisoformat(value)
        except ValueError:
            return False
    for col in stamps:
        value = row[col]
        if value is None:
            continue
        if not isinstance(value, datetime):
            if not (isinstance(value, str) and STAMP_TEXT.fullmatch(value)):
                return False
            try:
                value = as_naive(value)
            except ValueError:
                return False
        if not datetime(1, 1, 2) <= value < datetime(9999, 12, 31):
            return False
    return True


TRANSACTION_TYPES = {"BILL", "PEN", "ADJ", "PMT", "PMTADJ", "XFER", "DEP", "DEPAPP", "BEGBAL", "VOID"}
SERVICE_CODES = {"WA", "SE", "GA", "ST", "EL", "IR", None}
CUSTOMER_TYPES = {"RES", "COM", "IND", "GOV", "IRR"}
PAYMENT_METHODS = {"CASH", "CHECK", "CARD", "ACH", "ONLINE"}


def as_date(value) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def as_naive(value) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("T", " "))


def instants(value, zone: ZoneInfo) -> Instants | None:
    """Every correct UTC reading of a naive local time in ``zone``."""
    naive = as_naive(value)
    if naive is None:
        return None
    readings = {naive.replace(tzinfo=zone, fold=fold).astimezone(ZoneInfo("UTC")) for fold in (0, 1)}
    return Instants(sorted(readings))


def text(value) -> str | None:
    return None if value is None else str(value)


def trimmed(value) -> str | None:
    return None if value is None else str(value).rstrip()


def _nonblank(value) -> str | None:
    if value is None:
        return None
    stripped = str(value).strip()
    return stripped or None


def rows(sim, table: str, columns: Sequence[str]) -> list[dict]:
    quote = "`" if sim.spec.engine == "mariadb" else '"'
    cols = ", ".join(f"{quote}{c}{quote}" for c in columns)
    return [dict(zip(columns, r, strict=True)) for r in sim.query(f"SELECT {cols} FROM {quote}{table}{quote}")]


def expected_portal(sim, community: str, zone_name: str, datasets: Iterable[str],
                    visible_statuses: Sequence[str] = ("active", "final")) -> dict[str, dict[tuple, dict]]:
    """The live portal rows (deleted_at NULL) per data set, keyed by the portal key."""
    zone = ZoneInfo(zone_name)
    datasets = set(datasets)
    customers = rows(sim, "UB_Customer", [
        "CustomerID", "CustomerNumber", "LocationID", "ContactID", "LandlordContactID", "MasterCustomerID",
        "CustomerType", "Status", "OnlineAccess", "ConnectDate", "FinalBillDate"])
    customer_ids = {c["CustomerID"] for c in customers}
    locations = {r["LocationID"]: r for r in rows(sim, "UB_Location", [
        "LocationID", "HouseNumber", "StreetName", "Unit", "City", "State", "Zip"])}
    contacts = {r["ContactID"]: r for r in rows(sim, "SM_Contact", [
        "ContactID", "ContactType", "FirstName", "MiddleName", "LastName", "BusinessName", "MailAddress1",
        "MailAddress2", "MailCity", "MailState", "MailZip", "Email", "Phone"])}
    out: dict[str, dict[tuple, dict]] = {}

    if "accounts" in datasets:
        accounts = {}
        for c in customers:
            loc = locations.get(c["LocationID"])
            if loc is None or c["ContactID"] not in contacts:
                continue  # orphan: refused
            if (trimmed(c["Status"]) not in ACCOUNT_STATUS or trimmed(c["OnlineAccess"]) not in ("Y", "N")
                    or c["CustomerType"] not in CUSTOMER_TYPES):
                continue  # a code with no portal meaning: refused
            if not readable(c, ints=("CustomerID", "LocationID", "ContactID", "LandlordContactID", "MasterCustomerID"),
                            dates=("ConnectDate", "FinalBillDate")):
                continue
            status = ACCOUNT_STATUS[trimmed(c["Status"])]
            online = trimmed(c["OnlineAccess"]) == "Y"
            address = " ".join(p for p in (_nonblank(loc["HouseNumber"]), _nonblank(loc["StreetName"]),
                                           _nonblank(loc["Unit"])) if p)
            accounts[(c["CustomerID"],)] = {
                "account_number": c["CustomerNumber"],
                "account_number_digits": "".join(ch for ch in c["CustomerNumber"] if ch.isdigit()),
                "resident_id": c["ContactID"],
                "landlord_resident_id": c["LandlordContactID"],
                "master_account_id": c["MasterCustomerID"],
                "customer_type": c["CustomerType"],
                "status": status,
                "online_access": online,
                "portal_visible": online and status in visible_statuses,
                "house_number": loc["HouseNumber"], "street_name": loc["StreetName"], "unit": loc["Unit"],
                "city": loc["City"], "state": trimmed(loc["State"]), "zip": loc["Zip"],
                "service_address": address,
                "connect_date": as_date(c["ConnectDate"]), "final_bill_date": as_date(c["FinalBillDate"]),
            }
        out["accounts"] = accounts

    if "assessments" in datasets:
        location_ids = set(locations)
        assessments = {}
        for a in rows(sim, "PI_Assessment", [
            "AssessmentID", "ParcelNumber", "OwnerContactID", "LocationID", "District", "Description",
            "OriginalAmount", "PrincipalBalance", "InstallmentAmount", "NextDueDate", "Status"]):
            bad_location = a["LocationID"] is not None and a["LocationID"] not in location_ids
            if a["OwnerContactID"] not in contacts or bad_location:
                continue
            if trimmed(a["Status"]) not in ASSESSMENT_STATUS or not all_exact(
                    a, "OriginalAmount", "PrincipalBalance", "InstallmentAmount"):
                continue
            if not readable(a, ints=("AssessmentID", "OwnerContactID", "LocationID"), dates=("NextDueDate",)):
                continue
            assessments[(a["AssessmentID"],)] = {
                "parcel_number": a["ParcelNumber"], "district": a["District"], "description": a["Description"],
                "owner_resident_id": a["OwnerContactID"], "location_id": a["LocationID"],
                "original_amount": money(a["OriginalAmount"]), "principal_balance": money(a["PrincipalBalance"]),
                "installment_amount": money(a["InstallmentAmount"]), "next_due_date": as_date(a["NextDueDate"]),
                "status": ASSESSMENT_STATUS[trimmed(a["Status"])],
            }
        out["assessments"] = assessments

    if "charges" in datasets:
        lines = rows(sim, "UB_Transaction", [
            "TransactionID", "CustomerID", "TransactionType", "ServiceCode", "Description", "Amount",
            "TransactionDate", "InputDate", "DueDate", "Period", "ReferenceNumber", "VoidsTransactionID"])
        voided = {ln["VoidsTransactionID"] for ln in lines if ln["TransactionType"] == "VOID"}
        charges = {}
        for ln in lines:
            if ln["TransactionType"] == "PMT" or ln["CustomerID"] not in customer_ids:
                continue
            if (ln["TransactionType"] not in TRANSACTION_TYPES or ln["ServiceCode"] not in SERVICE_CODES
                    or not all_exact(ln, "Amount")):
                continue
            if not readable(ln, ints=("CustomerID",), bigints=("TransactionID", "VoidsTransactionID"),
                            dates=("TransactionDate", "DueDate"), stamps=("InputDate",)):
                continue
            charges[(ln["TransactionID"],)] = {
                "account_id": ln["CustomerID"], "charge_type": ln["TransactionType"],
                "service_code": ln["ServiceCode"], "description": ln["Description"], "amount": money(ln["Amount"]),
                "transaction_date": as_date(ln["TransactionDate"]), "due_date": as_date(ln["DueDate"]),
                "period": trimmed(ln["Period"]), "reference_number": ln["ReferenceNumber"],
                "posted_at": instants(ln["InputDate"], zone), "voided": ln["TransactionID"] in voided,
                "voids_charge_id": ln["VoidsTransactionID"],
            }
        out["charges"] = charges

    if "payments" in datasets:
        payments = {}
        for r in rows(sim, "CR_Receipt", [
            "ReceiptID", "ReceiptNumber", "CustomerID", "ReceiptDate", "InputDate", "PaymentMethod", "Amount",
            "Status", "StatusDate", "ConfirmationNumber"]):
            if r["CustomerID"] is None or r["CustomerID"] not in customer_ids:
                continue
            if (trimmed(r["Status"]) not in RECEIPT_STATUS or r["PaymentMethod"] not in PAYMENT_METHODS
                    or not all_exact(r, "Amount")):
                continue
            if not readable(r, ints=("CustomerID",), bigints=("ReceiptID",),
                            stamps=("ReceiptDate", "InputDate", "StatusDate")):
                continue
            payments[(r["ReceiptID"],)] = {
                "account_id": r["CustomerID"], "receipt_number": r["ReceiptNumber"], "amount": money(r["Amount"]),
                "confirmation_number": r["ConfirmationNumber"], "method": r["PaymentMethod"].lower(),
                "paid_at": instants(r["ReceiptDate"], zone), "status": RECEIPT_STATUS[trimmed(r["Status"])],
                "status_changed_at": instants(r["StatusDate"], zone),
            }
        out["payments"] = payments

    if "balances" in datasets:
        balances = {}
        for b in rows(sim, "UB_Balance", [
            "CustomerID", "AsOf", "BalanceCurrent", "Balance30", "Balance60", "Balance90", "Balance120",
            "TotalBalance", "LastBillDate", "LastBillAmount", "DueDate", "LastPaymentDate", "LastPaymentAmount",
            "Delinquent"]):
            if b["CustomerID"] not in customer_ids:
                continue
            if trimmed(b["Delinquent"]) not in ("Y", "N") or not all_exact(
                    b, "BalanceCurrent", "Balance30", "Balance60", "Balance90", "Balance120", "TotalBalance",
                    "LastBillAmount", "LastPaymentAmount"):
                continue
            if not readable(b, ints=("CustomerID",), dates=("LastBillDate", "DueDate", "LastPaymentDate"),
                            stamps=("AsOf",)):
                continue
            total = money(b["TotalBalance"])
            past = [money(b[k]) for k in ("Balance30", "Balance60", "Balance90", "Balance120")]
            delinquent = trimmed(b["Delinquent"]) == "Y"
            status = ("credit" if total < 0 else "paid" if total == 0 else "delinquent" if delinquent
                      else "past_due" if any(p > 0 for p in past) else "current")
            balances[(b["CustomerID"],)] = {
                "as_of": instants(b["AsOf"], zone), "current_amount": money(b["BalanceCurrent"]),
                "past_due_30": past[0], "past_due_60": past[1], "past_due_90": past[2], "past_due_120": past[3],
                "total_due": total, "last_bill_date": as_date(b["LastBillDate"]),
                "last_bill_amount": money(b["LastBillAmount"]), "due_date": as_date(b["DueDate"]),
                "last_payment_date": as_date(b["LastPaymentDate"]),
                "last_payment_amount": money(b["LastPaymentAmount"]), "delinquent": delinquent,
                "payment_status": status,
            }
        out["balances"] = balances

    if "residents" in datasets:
        pointed: set = set()
        for acc in out.get("accounts", {}).values():
            pointed.update({acc["resident_id"], acc["landlord_resident_id"]})
        for asm in out.get("assessments", {}).values():
            pointed.add(asm["owner_resident_id"])
        residents = {}
        for cid in pointed - {None}:
            c = contacts.get(cid)
            if c is None or trimmed(c["ContactType"]) not in ("P", "B") or not readable(c, ints=("ContactID",)):
                continue
            kind = "business" if trimmed(c["ContactType"]) == "B" else "person"
            if kind == "business":
                display = c["BusinessName"]
            else:
                display = " ".join(p for p in (_nonblank(c["FirstName"]), _nonblank(c["LastName"])) if p) or None
            residents[(cid,)] = {
                "kind": kind, "first_name": c["FirstName"], "middle_name": c["MiddleName"],
                "last_name": c["LastName"], "business_name": c["BusinessName"], "display_name": display,
                "mail_address1": c["MailAddress1"], "mail_address2": c["MailAddress2"], "mail_city": c["MailCity"],
                "mail_state": trimmed(c["MailState"]), "mail_zip": c["MailZip"], "email": c["Email"],
                "phone": c["Phone"],
            }
        out["residents"] = residents
    return out


PORTAL_KEYS = {
    "accounts": ("account_id",), "residents": ("resident_id",), "charges": ("charge_id",),
    "payments": ("payment_id",), "balances": ("account_id",), "assessments": ("assessment_id",),
}


def actual_portal(portal_url: str, community: str, datasets: Iterable[str]) -> dict[str, dict[tuple, dict]]:
    """The live portal rows of one community, in the same shape as expected_portal."""
    out = {}
    with psycopg.connect(portal_url) as conn:
        for name in datasets:
            keys = PORTAL_KEYS[name]
            cur = conn.execute(
                f"SELECT * FROM portal.{name} WHERE community_code = %s AND deleted_at IS NULL"
                + (" AND archived_at IS NULL" if name == "charges" else ""),
                (community,),
            )
            cols = [d.name for d in cur.description]
            table = {}
            for values in cur.fetchall():
                row = dict(zip(cols, values, strict=True))
                key = tuple(row.pop(k) for k in keys)
                for drop in ("community_code", "deleted_at", "archived_at"):
                    row.pop(drop, None)
                table[key] = row
            out[name] = table
    return out


def differences(expected: dict[str, dict[tuple, dict]], actual: dict[str, dict[tuple, dict]],
                limit: int = 20, keep: dict[str, set[tuple]] | None = None) -> list[str]:
    """Human-readable differences; empty when the portal equals the projection.

    ``keep`` names refused keys per data set: the contract lets their previous version stay,
    so such a key may be in the portal although the projection leaves it out.
    """
    problems: list[str] = []
    keep = keep or {}
    for name, exp_rows in expected.items():
        act_rows = actual.get(name, {})
        for key in sorted(set(exp_rows) - set(act_rows))[:limit]:
            problems.append(f"{name} {key}: missing from the portal")
        for key in sorted(set(act_rows) - set(exp_rows) - keep.get(name, set()))[:limit]:
            problems.append(f"{name} {key}: in the portal but not expected")
        for key in sorted(set(exp_rows) & set(act_rows)):
            exp, act = exp_rows[key], act_rows[key]
            for col, want in exp.items():
                got = act.get(col)
                if isinstance(want, Instants):
                    ok = got in want or any(abs(got - w) < timedelta(microseconds=1) for w in want)
                else:
                    ok = got == want
                if not ok:
                    problems.append(f"{name} {key} {col}: expected {want!r}, portal has {got!r}")
                    if len(problems) > limit * 5:
                        return problems
    return problems
