"""Invariants a real Caselle keeps, checked row by row with plain Python.

This is deliberately a second, naive implementation of the rules in
:mod:`caselle_sim.ledger` (loops, no numpy), so that the vectorised code the
simulator uses is checked against something simple. It reads everything into
memory: meant for ``tiny`` and ``town`` sources in tests, not for a ``city``.

Each function returns a list of human-readable problems; an empty list means
the invariant holds.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .simulator import Simulator

BUCKETS = ("BalanceCurrent", "Balance30", "Balance60", "Balance90", "Balance120")


def reference_balance(lines: list[dict[str, Any]], asof: date) -> dict[str, Any]:
    """UB_Balance values of one customer's lines by the documented rule (one customer, loops)."""
    charges = sorted((ln for ln in lines if ln["Amount"] > 0),
                     key=lambda ln: (ln["DueDate"] or ln["TransactionDate"], ln["TransactionID"]))
    credit = -sum(ln["Amount"] for ln in lines if ln["Amount"] < 0)
    buckets = dict.fromkeys(BUCKETS, 0)
    for ln in charges:
        used = min(credit, ln["Amount"])
        credit -= used
        rest = ln["Amount"] - used
        days = (asof - (ln["DueDate"] or ln["TransactionDate"])).days
        name = ("BalanceCurrent" if days <= 0 else "Balance30" if days <= 30 else "Balance60" if days <= 60
                else "Balance90" if days <= 90 else "Balance120")
        buckets[name] += rest
    buckets["BalanceCurrent"] -= credit
    out: dict[str, Any] = dict(buckets)
    out["TotalBalance"] = sum(ln["Amount"] for ln in lines)
    bills = [ln for ln in lines if ln["TransactionType"] == "BILL"]
    if bills:
        last = max(ln["TransactionDate"] for ln in bills)
        out["LastBillDate"] = last
        out["LastBillAmount"] = sum(ln["Amount"] for ln in bills if ln["TransactionDate"] == last)
        out["DueDate"] = max((ln["DueDate"] for ln in bills if ln["TransactionDate"] == last and ln["DueDate"]),
                             default=None)
    else:
        out.update(LastBillDate=None, LastBillAmount=None, DueDate=None)
    pmts = [ln for ln in lines if ln["TransactionType"] == "PMT"]
    if pmts:
        last = max(ln["TransactionDate"] for ln in pmts)
        out["LastPaymentDate"] = last
        out["LastPaymentAmount"] = -sum(ln["Amount"] for ln in pmts if ln["TransactionDate"] == last)
    else:
        out.update(LastPaymentDate=None, LastPaymentAmount=None)
    out["Delinquent"] = "Y" if buckets["Balance60"] + buckets["Balance90"] + buckets["Balance120"] >= 1000 else "N"
    return out


def _ledger(sim: Simulator) -> dict[int, list[dict[str, Any]]]:
    by_customer: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for ln in sim.read_table("UB_Transaction"):
        by_customer[ln["CustomerID"]].append(ln)
    return by_customer


def balance_problems(sim: Simulator, ledger: dict[int, list[dict[str, Any]]] | None = None) -> list[str]:
    """Every UB_Balance row equals its account's ledger aged at AsOf.

    Totals and buckets always; Last*/Delinquent only for rows recomputed after the
    latest period close (a close may purge the lines they were taken from).
    """
    ledger = ledger if ledger is not None else _ledger(sim)
    customers = {r["CustomerID"] for r in sim.read_table("UB_Customer", ["CustomerID"])}
    closes = sim.read_table("UB_PeriodClose")
    last_close = max((c["ClosedAt"] for c in closes), default=None)
    problems = []
    for row in sim.read_table("UB_Balance"):
        cid = row["CustomerID"]
        if cid not in customers:
            problems.append(f"UB_Balance {cid}: no such customer")
            continue
        want = reference_balance(ledger.get(cid, []), row["AsOf"].date())
        keys = ["TotalBalance", *BUCKETS]
        if last_close is None or row["AsOf"] > last_close:
            keys += ["LastBillDate", "LastBillAmount", "DueDate", "LastPaymentDate", "LastPaymentAmount",
                     "Delinquent"]
        for k in keys:
            if row[k] != want[k]:
                problems.append(f"UB_Balance {cid}: {k} is {row[k]!r}, ledger says {want[k]!r}")
        if sum(row[b] for b in BUCKETS) != row["TotalBalance"]:
            problems.append(f"UB_Balance {cid}: buckets do not add up to TotalBalance")
    missing = customers - {r["CustomerID"] for r in sim.read_table("UB_Balance", ["CustomerID"])}
    problems.extend(f"UB_Customer {c}: no UB_Balance row" for c in sorted(missing))
    return problems


def void_problems(sim: Simulator, ledger: dict[int, list[dict[str, Any]]] | None = None) -> list[str]:
    """VOID lines reverse an existing line of the same customer (or one a period close purged)."""
    ledger = ledger if ledger is not None else _ledger(sim)
    by_id = {ln["TransactionID"]: ln for lines in ledger.values() for ln in lines}
    purged_ok = bool(sim.read_table("UB_PeriodClose"))
    seen: set[int] = set()
    problems = []
    for ln in by_id.values():
        if ln["TransactionType"] != "VOID":
            if ln["VoidsTransactionID"] is not None:
                problems.append(f"line {ln['TransactionID']}: VoidsTransactionID on a {ln['TransactionType']} line")
            continue
        target_id = ln["VoidsTransactionID"]
        target = by_id.get(target_id)
        if target_id is None:
            problems.append(f"VOID {ln['TransactionID']}: names no line")
        elif target is None:
            if not purged_ok:
                problems.append(f"VOID {ln['TransactionID']}: line {target_id} does not exist")
        elif target["CustomerID"] != ln["CustomerID"] or target["Amount"] != -ln["Amount"]:
            problems.append(f"VOID {ln['TransactionID']}: does not reverse line {target_id}")
        elif target["TransactionType"] == "VOID":
            problems.append(f"VOID {ln['TransactionID']}: voids a VOID")
        if target_id in seen:
            problems.append(f"line {target_id}: voided twice")
        seen.add(target_id)
    return problems


def receipt_problems(sim: Simulator, ledger: dict[int, list[dict[str, Any]]] | None = None) -> list[str]:
    """Receipts and PMT lines agree, status by status (see caselle_sim.generate for the rules)."""
    ledger = ledger if ledger is not None else _ledger(sim)
    receipts = {r["ReceiptID"]: r for r in sim.read_table("CR_Receipt")}
    customers = {r["CustomerID"] for r in sim.read_table("UB_Customer", ["CustomerID"])}
    purge = max((c["PurgeBefore"] for c in sim.read_table("UB_PeriodClose") if c["PurgeBefore"]), default=None)
    lines = [ln for ls in ledger.values() for ln in ls]
    voided = {ln["VoidsTransactionID"] for ln in lines if ln["TransactionType"] == "VOID"}
    pmt_by_receipt: dict[int, list[dict[str, Any]]] = defaultdict(list)
    adj_by_number: dict[str, list[dict[str, Any]]] = defaultdict(list)
    problems = []
    for ln in lines:
        if ln["TransactionType"] == "PMT":
            r = receipts.get(ln["ReceiptID"])
            if r is None:
                problems.append(f"PMT {ln['TransactionID']}: receipt {ln['ReceiptID']} does not exist")
                continue
            pmt_by_receipt[r["ReceiptID"]].append(ln)
            if r["CustomerID"] != ln["CustomerID"] or ln["Amount"] != -r["Amount"] or r["Status"] == "U":
                problems.append(f"PMT {ln['TransactionID']}: disagrees with receipt {r['ReceiptID']}")
        elif ln["ReceiptID"] is not None:
            problems.append(f"line {ln['TransactionID']}: ReceiptID on a {ln['TransactionType']} line")
        if ln["TransactionType"] == "PMTADJ" and ln["ReferenceNumber"]:
            adj_by_number[ln["ReferenceNumber"]].append(ln)
    for r in receipts.values():
        if r["CustomerID"] is None or r["CustomerID"] not in customers:
            continue
        pmts = pmt_by_receipt.get(r["ReceiptID"], [])
        purged = purge is not None and r["ReceiptDate"].date() < purge
        reversed_ = any(p["TransactionID"] in voided for p in pmts) or any(
            a["Amount"] == r["Amount"] for a in adj_by_number.get(r["ReceiptNumber"], []))
        where = f"receipt {r['ReceiptID']} ({r['Status']})"
        if len(pmts) > 1:
            problems.append(f"{where}: {len(pmts)} PMT lines")
        elif r["Status"] == "U" and pmts:
            problems.append(f"{where}: not posted but has a PMT line")
        elif r["Status"] == "P" and (not pmts and not purged or pmts and reversed_):
            problems.append(f"{where}: posted needs one unreversed PMT line")
        elif r["Status"] == "V" and pmts and not reversed_:
            problems.append(f"{where}: voided but its PMT line stands")
        elif r["Status"] == "R" and not purged and (not pmts or not any(
                a["Amount"] == r["Amount"] for a in adj_by_number.get(r["ReceiptNumber"], []))):
            problems.append(f"{where}: refunded needs its PMT line and a PMTADJ refund")
    return problems


def number_problems(sim: Simulator) -> list[str]:
    """CustomerNumber is unique and follows the organisation's mask."""
    mask = sim.read_table("SM_Organization")[0]["CustomerNumberMask"]
    seen: set[str] = set()
    problems = []
    for r in sim.read_table("UB_Customer", ["CustomerID", "CustomerNumber"]):
        n = r["CustomerNumber"]
        ok = len(n) == len(mask) and all((m == "#" and ch.isdigit()) or (m != "#" and ch == m)
                                         for m, ch in zip(mask, n, strict=True))
        if not ok:
            problems.append(f"customer {r['CustomerID']}: {n!r} does not fit {mask!r}")
        if n in seen:
            problems.append(f"customer {r['CustomerID']}: {n!r} is not unique")
        seen.add(n)
    return problems


def all_problems(sim: Simulator) -> list[str]:
    """Every invariant above, reading the ledger once."""
    ledger = _ledger(sim)
    return (balance_problems(sim, ledger) + void_problems(sim, ledger) + receipt_problems(sim, ledger)
            + number_problems(sim))


def snapshot(sim: Simulator) -> dict[str, dict[Any, tuple]]:
    """Every contract table as {key: row tuple} in normal form (for diffing before/after a change)."""
    from .schema import TABLE_ORDER, TABLES

    return {name: {r[TABLES[name].key]: tuple(r.values()) for r in sim.read_table(name)} for name in TABLE_ORDER}


def diff(before: dict[str, dict[Any, tuple]], after: dict[str, dict[Any, tuple]]) -> dict[str, tuple[set, set, set]]:
    """(inserted, updated, deleted) keys per table between two snapshots."""
    out = {}
    for name in before:
        b, a = before[name], after[name]
        out[name] = ({k for k in a if k not in b}, {k for k in a if k in b and a[k] != b[k]},
                     {k for k in b if k not in a})
    return out
