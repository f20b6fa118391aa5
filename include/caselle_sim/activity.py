"""One unit of simulated work: what happens in the community between two clock readings.

A :class:`Work` collects new ledger lines and receipts, writes updates at once
(inside the unit's transaction), and at the end gives new lines and receipts
their IDs in entry-time order and recomputes the balance of every customer
whose ledger changed. Choices are drawn from the unit's own random stream over
snapshots read in key order, so they are the same on every engine.

Receipt life cycle in ``evolve`` (the same rules as the generator, see
:mod:`caselle_sim.generate`): online and ACH payments are imported as ``U``
and posted (``P``, PMT line added, StatusDate moves) once they are at least
``post_delay_minutes`` old; counter payments are posted at once. Posted
receipts may later be voided (``V`` + VOID line), returned (``V`` + PMTADJ +
NSF fee) or refunded (``R`` + PMTADJ); imported duplicates may be voided
before posting (``V``, no PMT line).
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from . import names as N
from .changes import ChangeSet
from .generate import MONTHS, SERVICE_NAMES
from .ledger import SERVICES, begbal_lines
from .presets import Rates
from .schema import TABLES
from .util import NULL_DAY, date_of, day_of, parse_number

if TYPE_CHECKING:
    from .simulator import Simulator

METHODS = ("CASH", "CHECK", "CARD", "ACH", "ONLINE")
METHOD_P = (0.10, 0.20, 0.15, 0.15, 0.40)
CREDIT_ADJ = ("LEAK ADJUSTMENT", "BILLING ADJUSTMENT", "SENIOR DISCOUNT", "HIGH USAGE CREDIT")
CHARGE_ADJ = ("METER READ CORRECTION", "RETURN TRIP FEE", "CART REPLACEMENT FEE")
CHUNK = 500
DEFAULT_BILL_WA = 2450  # a water base charge, for accounts with no recent bill


def _period(d: date) -> str:
    return f"{d.year}-{d.month:02d}"


def _month_label(d: date) -> str:
    return f"{MONTHS[d.month - 1]} {d.year}"


class Work:
    """Pending changes of one unit of work; see the module docstring."""

    def __init__(self, sim: Simulator, rng: np.random.Generator, before_utc: datetime, after_utc: datetime):
        self.sim = sim
        self.db = sim.db
        self.rng = rng
        self.before_utc = before_utc
        self.after_utc = after_utc
        self.before = sim.local(before_utc)
        self.after = sim.local(after_utc)
        self.today = self.after.date()
        self.changes = ChangeSet(self.before, self.after)
        self.lines: list[dict[str, Any]] = []
        self.receipts: list[dict[str, Any]] = []
        self.touched: set[int] = set()
        self.new_customers: set[int] = set()
        self.busy: set[int] = set()  # customers already given a lifecycle event in this unit
        self._cust: dict[str, Any] | None = None
        self._bal: dict[str, Any] | None = None
        self._taken: set[int] | None = None

    # -- time ---------------------------------------------------------------------------
    def times(self, n: int) -> list[datetime]:
        """``n`` sorted instants inside the unit's span, as naive local times."""
        span = max(1, int((self.after_utc - self.before_utc).total_seconds() * 1000))
        offs = np.sort(self.rng.integers(1, span + 1, size=n))
        return [self.sim.local(self.before_utc + timedelta(milliseconds=int(o))) for o in offs]

    def entry_time(self, t: datetime, late_share: float) -> datetime:
        """InputDate of a new line: usually ``t``; sometimes a long transaction that commits late."""
        if late_share and self.rng.random() < late_share:
            back = timedelta(milliseconds=int(self.rng.integers(1_000, 180_000)))
            return self.sim.local(self.before_utc - back)
        return t

    # -- snapshots --------------------------------------------------------------------------
    def customers(self) -> dict[str, Any]:
        """UB_Customer as arrays (read once per unit; refreshed after deletions)."""
        if self._cust is None:
            rows = self.sim.read_table("UB_Customer", ["CustomerID", "CustomerNumber", "LocationID", "ContactID",
                                                       "LandlordContactID", "MasterCustomerID", "CustomerType",
                                                       "Status", "OnlineAccess", "FinalBillDate"])
            ids = np.array([r["CustomerID"] for r in rows], dtype=np.int64)
            self._cust = {
                "id": ids,
                "number": [r["CustomerNumber"] for r in rows],
                "loc": np.array([r["LocationID"] for r in rows], dtype=np.int64),
                "contact": np.array([r["ContactID"] for r in rows], dtype=np.int64),
                "landlord": np.array([r["LandlordContactID"] or -1 for r in rows], dtype=np.int64),
                "master": np.array([r["MasterCustomerID"] or -1 for r in rows], dtype=np.int64),
                "type": np.array([r["CustomerType"] for r in rows], dtype=object),
                "status": np.array([r["Status"] for r in rows], dtype=object),
                "online": np.array([r["OnlineAccess"] for r in rows], dtype=object),
                "final": np.array([NULL_DAY if r["FinalBillDate"] is None else day_of(r["FinalBillDate"])
                                   for r in rows], dtype=np.int64),
                "set": set(ids.tolist()),
            }
        return self._cust

    def balances(self) -> dict[str, Any]:
        """UB_Balance totals and past-due amounts, keyed like the customer snapshot."""
        if self._bal is None:
            rows = self.sim.read_table("UB_Balance", ["CustomerID", "TotalBalance", "Balance30", "Balance60",
                                                      "Balance90", "Balance120"])
            by_id = {r["CustomerID"]: r for r in rows}
            ids = self.customers()["id"]
            get = [by_id.get(int(i)) for i in ids]
            self._bal = {
                "total": np.array([g["TotalBalance"] if g else 0 for g in get], dtype=np.int64),
                "past": np.array([g["Balance30"] + g["Balance60"] + g["Balance90"] + g["Balance120"] if g else 0
                                  for g in get], dtype=np.int64),
            }
        return self._bal

    def pick(self, mask: np.ndarray, k: int) -> list[int]:
        """Up to ``k`` distinct customer IDs where ``mask`` holds, skipping ones already busy."""
        c = self.customers()
        cand = c["id"][mask]
        if self.busy:
            cand = cand[~np.isin(cand, np.fromiter(self.busy, dtype=np.int64))]
        if k <= 0 or cand.size == 0:
            return []
        chosen = self.rng.choice(cand, size=min(k, cand.size), replace=False)
        return sorted(int(x) for x in chosen)

    def recent_ledger(self, ids: list[int], since: date) -> dict[int, list[dict[str, Any]]]:
        """Lines dated since ``since`` plus all DEP/DEPAPP lines, per customer."""
        out: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
        for i in range(0, len(ids), CHUNK):
            part = ids[i:i + CHUNK]
            where = (f'"CustomerID" IN ({", ".join("?" * len(part))}) AND ("TransactionDate" >= ? '
                     f'OR "TransactionType" IN (\'DEP\', \'DEPAPP\'))')
            for r in self.sim.read_table("UB_Transaction", None, where,
                                         [*part, self.db.to_db("date", since)]):
                out[r["CustomerID"]].append(r)
        return out

    # -- writing ----------------------------------------------------------------------------
    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        """INSERT rows given in normal form (all columns of the table)."""
        if not rows:
            return
        t = TABLES[table]
        cols = t.column_names
        sql = (f'INSERT INTO "{table}" ({", ".join(chr(34) + c + chr(34) for c in cols)}) '
               f'VALUES ({", ".join("?" * len(cols))})')
        kinds = [t.column(c).kind for c in cols]
        self.db.executemany(sql, [[self.db.to_db(k, r.get(c)) for c, k in zip(cols, kinds, strict=True)]
                                  for r in rows])
        self.changes[table].insert(r[t.key] for r in rows)

    def update(self, table: str, key: Any, values: dict[str, Any]) -> None:
        """UPDATE one row by key (normal-form values)."""
        self.update_many(table, [(key, values)])

    def update_many(self, table: str, items: list[tuple[Any, dict[str, Any]]]) -> None:
        """UPDATE rows by key; rows with the same set of columns share one executemany.

        Rows that are missing or already hold these values are skipped, so the
        ChangeSet's ``updated`` means "a value changed", exactly.
        """
        t = TABLES[table]
        if not items:
            return
        cols_all = sorted({c for _, v in items for c in v})
        keys = [k for k, _ in items]
        current: dict[Any, dict[str, Any]] = {}
        for i in range(0, len(keys), CHUNK):
            part = keys[i:i + CHUNK]
            for r in self.sim.read_table(table, [t.key, *cols_all],
                                         f'"{t.key}" IN ({", ".join("?" * len(part))})', part):
                current[r[t.key]] = r
        items = [(k, v) for k, v in items if k in current and any(current[k][c] != v[c] for c in v)]
        groups: dict[tuple[str, ...], list[list[Any]]] = {}
        for key, values in items:
            cols = tuple(values)
            groups.setdefault(cols, []).append(
                [self.db.to_db(t.column(c).kind, values[c]) for c in cols] + [key])
        for cols, rows in groups.items():
            sets = ", ".join(f'"{c}" = ?' for c in cols)
            self.db.executemany(f'UPDATE "{table}" SET {sets} WHERE "{t.key}" = ?', rows)
        self.changes[table].update(k for k, _ in items)

    def delete(self, table: str, keys: list[Any]) -> None:
        t = TABLES[table]
        for i in range(0, len(keys), CHUNK):
            part = keys[i:i + CHUNK]
            self.db.execute(f'DELETE FROM "{table}" WHERE "{t.key}" IN ({", ".join("?" * len(part))})', part)
        self.changes[table].delete(keys)

    def add_line(self, cust: int, ttype: str, amount: int, tdate: date, input_date: datetime, desc: str,
                 svc: str | None = None, due: date | None = None, ref: Any = None, receipt: Any = None,
                 voids: int | None = None, touch: bool = True) -> dict[str, Any]:
        """A pending ledger line; ``ref``/``receipt`` may be a pending receipt (resolved at flush)."""
        line = {"CustomerID": cust, "TransactionType": ttype, "ServiceCode": svc, "Description": desc[:60],
                "Amount": int(amount), "TransactionDate": tdate, "InputDate": input_date, "DueDate": due,
                "Period": _period(tdate), "ReferenceNumber": ref, "ReceiptID": receipt,
                "VoidsTransactionID": voids, "_n": len(self.lines)}
        self.lines.append(line)
        if touch:
            self.touched.add(cust)
        return line

    def add_receipt(self, cust: int | None, rdate: datetime, input_date: datetime, method: str, amount: int,
                    status: str, status_date: datetime, payer: str | None) -> dict[str, Any]:
        conf = None
        if method in ("ONLINE", "CARD") and cust is not None:
            conf = f"PP{int(self.rng.integers(0, 2**48)):012X}"
        r = {"CustomerID": cust, "ReceiptDate": rdate, "InputDate": input_date, "PaymentMethod": method,
             "Amount": int(amount), "Status": status, "StatusDate": status_date, "ConfirmationNumber": conf,
             "PayerName": payer, "_n": len(self.receipts)}
        self.receipts.append(r)
        return r

    def flush(self) -> None:
        """Write pending receipts and lines, IDs in entry-time order."""
        rs = sorted(self.receipts, key=lambda r: (r["InputDate"], r["_n"]))
        for r, rid, num in zip(rs, self.sim.take_ids("ReceiptID", len(rs)),
                               self.sim.take_ids("ReceiptNumber", len(rs)), strict=True):
            r["ReceiptID"] = rid
            r["ReceiptNumber"] = f"CR{num:08d}"
        self.insert("CR_Receipt", rs)
        ls = sorted(self.lines, key=lambda ln: (ln["InputDate"], ln["_n"]))
        for ln, tid in zip(ls, self.sim.take_ids("TransactionID", len(ls)), strict=True):
            ln["TransactionID"] = tid
            if isinstance(ln["ReceiptID"], dict):
                ln["ReceiptID"] = ln["ReceiptID"]["ReceiptID"]
            if isinstance(ln["ReferenceNumber"], dict):
                ln["ReferenceNumber"] = ln["ReferenceNumber"]["ReceiptNumber"]
        self.insert("UB_Transaction", ls)
        self.lines = []
        self.receipts = []

    def recompute(self) -> None:
        """Rewrite UB_Balance (AsOf = end of the unit) for every customer whose ledger changed."""
        existing = self.customers()["set"] | self.new_customers
        ids = sorted(c for c in self.touched if c in existing)
        if not ids:
            return
        rows = self.sim.recompute_balances(ids, self.after)
        have: set[int] = set()
        for i in range(0, len(ids), CHUNK):
            part = ids[i:i + CHUNK]
            have.update(int(r[0]) for r in self.db.query(
                f'SELECT "CustomerID" FROM "UB_Balance" WHERE "CustomerID" IN ({", ".join("?" * len(part))})', part))
        self.insert("UB_Balance", [rows[c] for c in ids if c not in have])
        cols = [c for c in TABLES["UB_Balance"].column_names if c != "CustomerID"]
        self.update_many("UB_Balance", [(c, {k: rows[c][k] for k in cols}) for c in ids if c in have])

    # -- helpers for people and numbers ---------------------------------------------------------
    def contact_names(self, contact_ids: list[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        ids = sorted(set(contact_ids))
        for i in range(0, len(ids), CHUNK):
            part = ids[i:i + CHUNK]
            for r in self.sim.read_table("SM_Contact", ["ContactID", "FirstName", "LastName", "BusinessName"],
                                         f'"ContactID" IN ({", ".join("?" * len(part))})', part):
                out[r["ContactID"]] = r["BusinessName"] or " ".join(
                    p for p in (r["FirstName"], r["LastName"]) if p)
        return out

    def random_name(self) -> str:
        return (f"{N.FIRST_NAMES[int(self.rng.integers(len(N.FIRST_NAMES)))]} "
                f"{N.LAST_NAMES[int(self.rng.integers(len(N.LAST_NAMES)))]}")

    def taken_numbers(self) -> set[int]:
        """Every customer number in use, as integers (kept up to date within the unit)."""
        if self._taken is None:
            self._taken = {parse_number(n) for n in self.customers()["number"]}
        return self._taken

    # == normal activity =========================================================================
    def activity(self, r: Rates) -> None:
        rng = self.rng
        hours = (self.after_utc - self.before_utc).total_seconds() / 3600
        self.rare_events(r, hours)
        c = self.customers()
        scale = int((c["status"] == "A").sum()) / 1000

        def k(rate: float, floor: float) -> int:
            return int(rng.poisson(max(rate * scale, floor) * hours))

        f = r.floor
        counts = {
            "new": k(r.new_customers, f / 16), "move": k(r.move_outs, f / 16), "bill": k(r.bills, f),
            "pay": k(r.payments, f), "pvoid": k(r.pending_voids, f / 40), "pen": k(r.penalties, f / 4),
            "adj": k(r.adjustments, f / 8), "bvoid": k(r.bill_voids, f / 16), "rvoid": k(r.receipt_voids, f / 40),
            "nsf": k(r.nsf, f / 40), "refund": k(r.refunds, f / 40), "other": k(r.other_receipts, f / 8),
            "close": k(r.closeouts, f / 16), "online": k(r.online_toggles, f / 8),
            "contact": k(r.contact_edits, f / 8), "location": k(r.location_edits, f / 40),
            "assess": k(r.assessment_updates, f / 40), "aging": k(r.aging_refresh, f / 4),
        }
        self.new_accounts(counts["new"], r)
        self.move_outs(counts["move"], r)
        self.bills(counts["bill"], r)
        self.payments(counts["pay"], r)
        self.postings(counts["pvoid"], r)
        self.penalties(counts["pen"], r)
        self.adjustments(counts["adj"], r)
        self.bill_voids(counts["bvoid"], r)
        self.receipt_events(counts["rvoid"], counts["nsf"], counts["refund"], r)
        self.other_receipts(counts["other"])
        self.closeouts(counts["close"])
        self.online_toggles(counts["online"])
        self.contact_edits(counts["contact"])
        self.location_edits(counts["location"])
        self.assessment_updates(counts["assess"])
        self.touched.update(self.pick(np.ones(c["id"].size, dtype=bool), counts["aging"]))

    def rare_events(self, r: Rates, hours: float) -> None:
        rng = self.rng
        if r.period_close_per_day and rng.poisson(r.period_close_per_day * hours / 24):
            self.period_close(date(self.today.year - 7, 1, 1))
        if r.delete_inactive_per_day and rng.poisson(r.delete_inactive_per_day * hours / 24):
            self.delete_inactive(max(1, int(self.customers()["id"].size * 0.002)))
        if r.renumber_per_day and rng.poisson(r.renumber_per_day * hours / 24):
            self.renumber(1.0)
        if r.modify_data_per_hour:
            self.modify_data(int(rng.poisson(r.modify_data_per_hour * hours)))
        if r.orphans_per_hour:
            n = int(rng.poisson(r.orphans_per_hour * hours))
            if n:
                self.add_orphans(n, n // 3)

    def new_accounts(self, n: int, r: Rates) -> None:
        if n <= 0:
            return
        rng = self.rng
        c = self.customers()
        # locations with no active account (vacant or never re-let) can take a new tenant
        occupied = set(c["loc"][np.isin(c["status"], ["A"])].tolist())
        free = sorted(set(c["loc"].tolist()) - occupied)
        town = self.db.query('SELECT "City", "State", "Zip" FROM "UB_Location" ORDER BY "LocationID"')[:1]
        self.db.commit()
        city, state, zip_ = (town[0] if town else ("Springfield", "UT", "84000"))
        state = str(state).strip()
        for t in self.times(n):
            reuse = free and rng.random() < 0.5
            if reuse:
                loc = free.pop(int(rng.integers(len(free))))
                here = np.flatnonzero(c["loc"] == loc)
                last = here[-1]
                ctype = str(c["type"][last])
                landlord = int(c["landlord"][last]) if c["landlord"][last] >= 0 else None
                for v in here[c["status"][here] == "V"]:
                    self.update("UB_Customer", int(c["id"][v]), {"Status": "I", "FinalBillDate": t.date()})
                    c["status"][v] = "I"
                addr = self.db.query('SELECT "HouseNumber", "StreetName", "Unit", "Zip" FROM "UB_Location" '
                                     'WHERE "LocationID" = ?', [loc])[0]
            else:
                loc = self.sim.take_ids("LocationID", 1)[0]
                ctype, landlord = "RES", None
                house = str(int(rng.integers(10, 3000)))
                street = N.NAMED_STREETS[int(rng.integers(len(N.NAMED_STREETS)))]
                addr = (house, street, None, zip_)
                self.insert("UB_Location", [{
                    "LocationID": loc, "HouseNumber": house, "StreetName": street, "Unit": None, "City": city,
                    "State": state, "Zip": zip_, "ParcelNumber": f"{int(rng.integers(60, 99)):02d}-"
                    f"{int(rng.integers(0, 1000)):03d}-{int(rng.integers(0, 10000)):04d}",
                    "District": "NEW", "Cycle": int(rng.integers(1, 5)), "Route": int(rng.integers(1, 60))}])
            contact = self.new_contact(ctype, f"{addr[0]} {addr[1]}", addr[2], city, state, addr[3])
            cust = self.sim.take_ids("CustomerID", 1)[0]
            number = self.new_numbers(1)[0]
            self.insert("UB_Customer", [{
                "CustomerID": cust, "CustomerNumber": number, "LocationID": loc, "ContactID": contact,
                "LandlordContactID": landlord, "MasterCustomerID": None, "CustomerType": ctype, "Status": "A",
                "OnlineAccess": "Y" if rng.random() < 0.6 else "N", "ConnectDate": t.date(), "FinalBillDate": None,
                "DirectPayRouting": None, "DirectPayAccount": None, "CreditRating": None, "CollectionCode": None}])
            self.new_customers.add(cust)
            self.touched.add(cust)
            self.busy.add(cust)
            if rng.random() < 0.4:
                self.add_line(cust, "DEP", 10000, t.date(), self.entry_time(t, r.late_commit_share),
                              "SERVICE DEPOSIT", due=t.date() + timedelta(days=20))

    def new_contact(self, ctype: str, addr1: str, addr2: str | None, city: str, state: str, zip_: str) -> int:
        rng = self.rng
        cid = self.sim.take_ids("ContactID", 1)[0]
        person = ctype in ("RES", "IRR") and rng.random() < 0.95
        first = N.FIRST_NAMES[int(rng.integers(len(N.FIRST_NAMES)))] if person else None
        last = N.LAST_NAMES[int(rng.integers(len(N.LAST_NAMES)))] if person else None
        business = None if person else (f"{N.BUSINESS_FIRST[int(rng.integers(len(N.BUSINESS_FIRST)))]} "
                                        f"{N.BUSINESS_KIND[int(rng.integers(len(N.BUSINESS_KIND)))]} LLC")
        num = int(rng.integers(0, 10**9))
        self.insert("SM_Contact", [{
            "ContactID": cid, "ContactType": "P" if person else "B", "FirstName": first,
            "MiddleName": None, "LastName": last, "BusinessName": business, "MailAddress1": addr1[:60],
            "MailAddress2": addr2, "MailCity": city, "MailState": state, "MailZip": zip_,
            "Email": (f"{first}.{last}{num % 100}@{N.EMAIL_DOMAINS[num % len(N.EMAIL_DOMAINS)]}".lower()
                      .replace(" ", "").replace("'", "") if person and rng.random() < 0.7 else None),
            "Phone": f"435-{200 + num % 800:03d}-{(num // 1000) % 10000:04d}",
            "SSN": f"9{num % 100:02d}-{(num // 100) % 100:02d}-{(num // 10000) % 10000:04d}" if person else None,
            "BirthDate": date(1950, 1, 1) + timedelta(days=int(rng.integers(0, 20000))) if person else None,
            "DriversLicense": f"{num:09d}" if person else None, "Notes": None}])
        return cid

    def new_numbers(self, n: int) -> list[str]:
        """``n`` unused customer numbers through the organisation's mask."""
        from .simulator import new_customer_numbers

        return new_customer_numbers(self.rng, self.sim.mask, self.taken_numbers(), n)

    def last_bills(self, lines: list[dict[str, Any]]) -> dict[str, int]:
        """Latest BILL amount per service (the basis of the next bill)."""
        out: dict[str, tuple[date, int, int]] = {}
        for ln in lines:
            if ln["TransactionType"] == "BILL" and ln["ServiceCode"] and ln["Amount"] > 0:
                key = (ln["TransactionDate"], ln["TransactionID"])
                prev = out.get(ln["ServiceCode"])
                if prev is None or key > prev[:2]:
                    out[ln["ServiceCode"]] = (*key, ln["Amount"])
        return {s: v[2] for s, v in out.items()}

    def move_outs(self, n: int, r: Rates) -> None:
        c = self.customers()
        masters = set(c["master"][c["master"] >= 0].tolist())
        ok = (c["status"] == "A") & (c["type"] != "GOV") & ~np.isin(c["id"], list(masters) or [-1])
        targets = self.pick(ok, n)
        if not targets:
            return
        led = self.recent_ledger(targets, self.today - timedelta(days=70))
        for cust, t in zip(targets, self.times(len(targets)), strict=True):
            lines = led[cust]
            bills = self.last_bills(lines) or {"WA": DEFAULT_BILL_WA}
            last_day = max((ln["TransactionDate"] for ln in lines if ln["TransactionType"] == "BILL"),
                           default=t.date() - timedelta(days=30))
            frac = min(1.0, max(0.1, (t.date() - last_day).days / 30))
            entry = self.entry_time(t, r.late_commit_share)
            for i, (svc, amt) in enumerate(sorted(bills.items())):
                self.add_line(cust, "BILL", max(1, round(amt * frac)), t.date(), entry + timedelta(milliseconds=i),
                              f"FINAL {SERVICE_NAMES[SERVICES.index(svc)]} {_month_label(t.date())}", svc=svc,
                              due=t.date() + timedelta(days=20))
            deposit = sum(ln["Amount"] for ln in lines if ln["TransactionType"] in ("DEP", "DEPAPP"))
            if deposit > 0:
                self.add_line(cust, "DEPAPP", -deposit, t.date(), entry + timedelta(milliseconds=50),
                              "DEPOSIT APPLIED TO FINAL BILL")
            self.update("UB_Customer", cust, {"Status": "F", "FinalBillDate": t.date()})
            i = int(np.searchsorted(c["id"], cust))
            c["status"][i] = "F"
            self.busy.add(cust)
            landlord = int(c["landlord"][i])
            if landlord >= 0:  # the owner holds the vacant account until the next tenant
                vac = self.sim.take_ids("CustomerID", 1)[0]
                self.insert("UB_Customer", [{
                    "CustomerID": vac, "CustomerNumber": self.new_numbers(1)[0],
                    "LocationID": int(c["loc"][i]), "ContactID": landlord, "LandlordContactID": None,
                    "MasterCustomerID": None, "CustomerType": str(c["type"][i]), "Status": "V", "OnlineAccess": "N",
                    "ConnectDate": t.date() + timedelta(days=1), "FinalBillDate": None, "DirectPayRouting": None,
                    "DirectPayAccount": None, "CreditRating": None, "CollectionCode": None}])
                self.new_customers.add(vac)
                self.touched.add(vac)
                self.busy.add(vac)

    def bills(self, n: int, r: Rates) -> None:
        c = self.customers()
        targets = self.pick(np.isin(c["status"], ["A", "V"]), n)
        if not targets:
            return
        rng = self.rng
        led = self.recent_ledger(targets, self.today - timedelta(days=70))
        for cust, t in zip(targets, self.times(len(targets)), strict=True):
            bills = self.last_bills(led[cust])
            if not bills:
                bills = {"WA": DEFAULT_BILL_WA, "ST": 650} if c["status"][np.searchsorted(c["id"], cust)] == "V" \
                    else {"WA": 4500, "SE": 4200, "GA": 1785}
            tdate = t.date()
            if rng.random() < r.backdate_share:
                tdate -= timedelta(days=int(rng.integers(1, 6)))
            entry = self.entry_time(t, r.late_commit_share)
            ref = f"B{tdate:%y%m}-{int(rng.integers(1, 5))}"
            for i, (svc, amt) in enumerate(sorted(bills.items())):
                self.add_line(cust, "BILL", max(1, int(round(amt * rng.lognormal(0, 0.1)))), tdate,
                              entry + timedelta(milliseconds=7 * i),
                              f"{SERVICE_NAMES[SERVICES.index(svc)]} {_month_label(tdate)}", svc=svc,
                              due=tdate + timedelta(days=20), ref=ref)

    def payments(self, n: int, r: Rates) -> None:
        c = self.customers()
        b = self.balances()
        targets = self.pick(np.isin(c["status"], ["A", "F"]) & (b["total"] > 0), n)
        if not targets:
            return
        rng = self.rng
        names = self.contact_names([int(c["contact"][np.searchsorted(c["id"], x)]) for x in targets])
        for cust, t in zip(targets, self.times(len(targets)), strict=True):
            i = int(np.searchsorted(c["id"], cust))
            total = int(b["total"][i])
            u = rng.random()
            amount = total if u < 0.7 else (max(100, total // 2) if u < 0.85 else int(math.ceil(total / 1000) * 1000))
            method = METHODS[int(rng.choice(len(METHODS), p=METHOD_P))]
            payer = names.get(int(c["contact"][i])) if rng.random() < 0.88 else self.random_name()
            if method in ("ONLINE", "ACH"):
                rdate = t - timedelta(milliseconds=int(rng.integers(60_000, 4 * 3_600_000)))
                self.add_receipt(cust, rdate, t, method, amount, "U", t, payer)
            else:
                rdate = t - timedelta(milliseconds=int(rng.integers(5_000, 90_000)))
                rc = self.add_receipt(cust, rdate, t, method, amount, "P", t, payer)
                self.add_line(cust, "PMT", -amount, rdate.date(), t, f"PAYMENT - {method}", ref=rc, receipt=rc)
            self.busy.add(cust)

    def postings(self, n_voids: int, r: Rates) -> None:
        """Post imported receipts that waited long enough; void a few duplicates instead."""
        since = self.after - timedelta(days=30)
        rows = self.sim.read_table("CR_Receipt", ["ReceiptID", "ReceiptNumber", "CustomerID", "ReceiptDate",
                                                  "InputDate", "PaymentMethod", "Amount"],
                                   '"StatusDate" >= ? AND "Status" = \'U\'', [self.db.to_db("datetime", since)])
        existing = self.customers()["set"]
        ready_by = self.after - timedelta(minutes=r.post_delay_minutes)
        rows = [x for x in rows if x["CustomerID"] in existing and x["InputDate"] <= ready_by]
        if not rows:
            return
        times = self.times(len(rows))
        void_idx = set(self.rng.choice(len(rows), size=min(n_voids, len(rows)), replace=False).tolist()) \
            if n_voids else set()
        for j, (x, t) in enumerate(zip(rows, times, strict=True)):
            when = t if t >= x["InputDate"] + timedelta(minutes=r.post_delay_minutes) else self.after
            if j in void_idx:
                self.update("CR_Receipt", x["ReceiptID"], {"Status": "V", "StatusDate": when})
                continue
            self.update("CR_Receipt", x["ReceiptID"], {"Status": "P", "StatusDate": when})
            method = x["PaymentMethod"]
            self.add_line(x["CustomerID"], "PMT", -x["Amount"], x["ReceiptDate"].date(), when,
                          "PAYMENT - ACH AUTOPAY" if method == "ACH" else f"PAYMENT - {method}",
                          ref=x["ReceiptNumber"], receipt=x["ReceiptID"])

    def penalties(self, n: int, r: Rates) -> None:
        c = self.customers()
        b = self.balances()
        targets = self.pick(np.isin(c["status"], ["A", "F"]) & (b["past"] > 0), n)
        for cust, t in zip(targets, self.times(len(targets)), strict=True):
            past = int(b["past"][np.searchsorted(c["id"], cust)])
            self.add_line(cust, "PEN", max(500, round(past * 0.10)), t.date(),
                          self.entry_time(t, r.late_commit_share), f"LATE PENALTY {_month_label(t.date())}",
                          due=t.date() + timedelta(days=20))

    def adjustments(self, n: int, r: Rates) -> None:
        rng = self.rng
        c = self.customers()
        targets = self.pick(c["status"] == "A", n)
        for cust, t in zip(targets, self.times(len(targets)), strict=True):
            tdate = t.date()
            if rng.random() < r.backdate_share:
                tdate -= timedelta(days=int(rng.integers(1, 15)))
            entry = self.entry_time(t, r.late_commit_share)
            if rng.random() < 0.7:
                self.add_line(cust, "ADJ", -int(rng.integers(500, 6000)), tdate, entry,
                              CREDIT_ADJ[int(rng.integers(len(CREDIT_ADJ)))])
            else:
                self.add_line(cust, "ADJ", int(rng.integers(500, 3000)), tdate, entry,
                              CHARGE_ADJ[int(rng.integers(len(CHARGE_ADJ)))], due=tdate + timedelta(days=20))

    def bill_voids(self, n: int, r: Rates) -> None:
        c = self.customers()
        targets = self.pick(np.isin(c["status"], ["A", "F"]), n)
        if not targets:
            return
        rng = self.rng
        led = self.recent_ledger(targets, self.today - timedelta(days=60))
        for cust, t in zip(targets, self.times(len(targets)), strict=True):
            lines = led[cust]
            voided = {ln["VoidsTransactionID"] for ln in lines if ln["TransactionType"] == "VOID"}
            cand = [ln for ln in lines if ln["TransactionType"] == "BILL" and ln["TransactionID"] not in voided
                    and ln["Amount"] > 0]
            if not cand:
                continue
            ln = cand[int(rng.integers(len(cand)))]
            entry = self.entry_time(t, r.late_commit_share)
            self.add_line(cust, "VOID", -ln["Amount"], t.date(), entry, "VOID - BILLING ERROR",
                          svc=ln["ServiceCode"], voids=ln["TransactionID"])
            svc = ln["ServiceCode"] or "WA"
            self.add_line(cust, "BILL", max(1, round(ln["Amount"] * rng.uniform(0.55, 0.95))), t.date(),
                          entry + timedelta(milliseconds=250), f"{SERVICE_NAMES[SERVICES.index(svc)]} CORRECTED",
                          svc=ln["ServiceCode"], due=ln["DueDate"] or t.date() + timedelta(days=20),
                          ref=ln["ReferenceNumber"])

    def receipt_events(self, n_void: int, n_nsf: int, n_refund: int, r: Rates) -> None:
        """Posted receipts voided (VOID line), returned (PMTADJ + fee) or refunded (PMTADJ)."""
        if n_void + n_nsf + n_refund <= 0:
            return
        rng = self.rng
        since = self.after - timedelta(days=10)
        rows = self.sim.read_table("CR_Receipt", ["ReceiptID", "ReceiptNumber", "CustomerID", "Amount",
                                                  "PaymentMethod"],
                                   '"StatusDate" >= ? AND "Status" = \'P\' AND "CustomerID" IS NOT NULL',
                                   [self.db.to_db("datetime", since)])
        existing = self.customers()["set"]
        rows = [x for x in rows if x["CustomerID"] in existing]
        if not rows:
            return
        order = rng.permutation(len(rows)).tolist()
        plan: list[tuple[dict[str, Any], str]] = []
        used: set[int] = set()
        for kind, k in (("nsf", n_nsf), ("void", n_void), ("refund", n_refund)):
            for j in order:
                if k <= 0:
                    break
                x = rows[j]
                if j in used or (kind == "nsf" and x["PaymentMethod"] not in ("CHECK", "ACH")):
                    continue
                used.add(j)
                plan.append((x, kind))
                k -= 1
        led = self.recent_ledger(sorted({x["CustomerID"] for x, _ in plan}), self.today - timedelta(days=45))
        for (x, kind), t in zip(plan, self.times(len(plan)), strict=True):
            lines = led[x["CustomerID"]]
            voided = {ln["VoidsTransactionID"] for ln in lines if ln["TransactionType"] == "VOID"}
            pmt = [ln for ln in lines if ln["TransactionType"] == "PMT" and ln["ReceiptID"] == x["ReceiptID"]
                   and ln["TransactionID"] not in voided]
            if len(pmt) != 1:
                continue
            cust, amt = x["CustomerID"], x["Amount"]
            if kind == "void":
                self.add_line(cust, "VOID", amt, t.date(), t, "VOID - PAYMENT ENTERED IN ERROR",
                              voids=pmt[0]["TransactionID"])
                self.update("CR_Receipt", x["ReceiptID"], {"Status": "V", "StatusDate": t})
            elif kind == "nsf":
                desc = "ACH RETURN R01 - NSF" if x["PaymentMethod"] == "ACH" else "NSF RETURNED CHECK"
                self.add_line(cust, "PMTADJ", amt, t.date(), t, desc, ref=x["ReceiptNumber"])
                self.add_line(cust, "ADJ", 2500, t.date(), t + timedelta(seconds=1), "NSF FEE",
                              due=t.date() + timedelta(days=10))
                self.update("CR_Receipt", x["ReceiptID"], {"Status": "V", "StatusDate": t})
            else:
                self.add_line(cust, "PMTADJ", amt, t.date(), t, "REFUND - OVERPAYMENT", ref=x["ReceiptNumber"])
                self.update("CR_Receipt", x["ReceiptID"], {"Status": "R", "StatusDate": t})

    def other_receipts(self, n: int) -> None:
        rng = self.rng
        for t in self.times(n):
            _, fee = N.OTHER_RECEIPT_FEES[int(rng.integers(len(N.OTHER_RECEIPT_FEES)))]
            method = ("CASH", "CHECK", "CARD", "ONLINE")[int(rng.integers(4))]
            self.add_receipt(None, t - timedelta(seconds=int(rng.integers(5, 90))), t, method, fee, "P", t,
                             self.random_name())

    def closeouts(self, n: int) -> None:
        c = self.customers()
        b = self.balances()
        ok = (c["status"] == "F") & (b["total"] == 0) & (c["final"] != NULL_DAY) & (
            c["final"] <= day_of(self.today) - 30)
        for cust in self.pick(ok, n):
            self.update("UB_Customer", cust, {"Status": "I"})
            c["status"][np.searchsorted(c["id"], cust)] = "I"

    def online_toggles(self, n: int) -> None:
        c = self.customers()
        for cust in self.pick(np.isin(c["status"], ["A", "F"]), n):
            i = int(np.searchsorted(c["id"], cust))
            new = "N" if c["online"][i] == "Y" else "Y"
            self.update("UB_Customer", cust, {"OnlineAccess": new})
            c["online"][i] = new

    def contact_edits(self, n: int) -> None:
        if n <= 0:
            return
        rng = self.rng
        c = self.customers()
        pool = np.unique(np.r_[c["contact"], c["landlord"][c["landlord"] >= 0]])
        chosen = sorted(int(x) for x in rng.choice(pool, size=min(n, pool.size), replace=False))
        rows = {x["ContactID"]: x for x in self.sim.read_table(
            "SM_Contact", ["ContactID", "ContactType", "FirstName", "LastName"],
            f'"ContactID" IN ({", ".join("?" * len(chosen))})', chosen)}
        for cid in chosen:
            x = rows.get(cid)
            if x is None:
                continue
            what = int(rng.integers(4))
            num = int(rng.integers(0, 10**9))
            if what == 0 and x["ContactType"] == "P" and x["FirstName"]:
                last = x["LastName"] or "Smith"
                values = {"Email": f"{x['FirstName']}.{last}{num % 1000}@{N.EMAIL_DOMAINS[num % 10]}".lower()
                          .replace(" ", "").replace("'", "")}
            elif what == 1:
                values = {"Phone": f"801-{200 + num % 800:03d}-{(num // 1000) % 10000:04d}"}
            elif what == 2:
                values = {"MailAddress1": f"{num % 3000 + 10} {N.NAMED_STREETS[num % len(N.NAMED_STREETS)]}",
                          "MailAddress2": None}
            elif x["ContactType"] == "P":
                values = {"LastName": N.LAST_NAMES[num % len(N.LAST_NAMES)]}
            else:
                values = {"Email": None}
            self.update("SM_Contact", cid, values)

    def location_edits(self, n: int) -> None:
        if n <= 0:
            return
        locs = np.unique(self.customers()["loc"])
        for loc in sorted(int(x) for x in self.rng.choice(locs, size=min(n, locs.size), replace=False)):
            self.update("UB_Location", loc, {"Route": int(self.rng.integers(1, 60))})

    def assessment_updates(self, n: int) -> None:
        if n <= 0:
            return
        rows = self.sim.read_table("PI_Assessment", ["AssessmentID", "PrincipalBalance", "InstallmentAmount",
                                                     "NextDueDate"], '"Status" = \'A\'')
        if not rows:
            return
        for j in sorted(self.rng.choice(len(rows), size=min(n, len(rows)), replace=False).tolist()):
            x = rows[j]
            principal = max(0, x["PrincipalBalance"] - x["InstallmentAmount"])
            nd = x["NextDueDate"]
            values: dict[str, Any] = {"PrincipalBalance": principal}
            if principal == 0:
                values.update({"Status": "P", "NextDueDate": None})
            elif nd is not None:
                values["NextDueDate"] = nd.replace(year=nd.year + 1)
            self.update("PI_Assessment", x["AssessmentID"], values)

    # == rare events ===============================================================================
    def period_close(self, purge_before: date | None) -> None:
        self.flush()
        event = self.after
        close_id = self.sim.take_ids("CloseID", 1)[0]
        if purge_before is not None:
            lines = self.sim.read_lines()
            purge_day = day_of(purge_before)
            existing = np.array(sorted(self.customers()["set"]), dtype=np.int64)
            cust, amt, due = begbal_lines(lines, existing, purge_day)
            gone = lines.txid[lines.tdate < purge_day]
            if gone.size:
                self.db.execute('DELETE FROM "UB_Transaction" WHERE "TransactionDate" < ?',
                                [self.db.to_db("date", purge_before)])
                self.changes["UB_Transaction"].delete(int(x) for x in gone.tolist())
            for i, (cu, a, d) in enumerate(zip(cust.tolist(), amt.tolist(), due.tolist(), strict=True)):
                self.add_line(cu, "BEGBAL", a, purge_before, event + timedelta(milliseconds=i % 1000),
                              f"BEGINNING BALANCE {purge_before.isoformat()}",
                              due=None if d == NULL_DAY else date_of(d), ref=f"PC{close_id}", touch=False)
            self.flush()
        self.insert("UB_PeriodClose", [{"CloseID": close_id, "ClosedAt": event, "PurgeBefore": purge_before}])

    def delete_inactive(self, count: int | None) -> None:
        self.flush()
        c = self.customers()
        b = self.balances()
        masters = set(c["master"][c["master"] >= 0].tolist())
        ok = np.isin(c["status"], ["I", "F"]) & (b["total"] == 0) & ~np.isin(c["id"], list(masters) or [-1])
        idx = np.flatnonzero(ok)
        idx = idx[np.lexsort((c["id"][idx], c["final"][idx]))]
        if count is not None:
            idx = idx[:count]
        ids = sorted(int(x) for x in c["id"][idx])
        if not ids:
            return
        txids: list[int] = []
        for i in range(0, len(ids), CHUNK):
            part = ids[i:i + CHUNK]
            txids.extend(int(r[0]) for r in self.db.query(
                f'SELECT "TransactionID" FROM "UB_Transaction" WHERE "CustomerID" IN ({", ".join("?" * len(part))})',
                part))
            self.db.execute(f'DELETE FROM "UB_Transaction" WHERE "CustomerID" IN ({", ".join("?" * len(part))})',
                            part)
        self.changes["UB_Transaction"].delete(txids)
        self.delete("UB_Balance", ids)
        self.delete("UB_Customer", ids)
        self.touched.difference_update(ids)
        self._cust = None
        self._bal = None

    def renumber(self, fraction: float) -> None:
        c = self.customers()
        n = max(1, int(round(c["id"].size * fraction)))
        chosen = sorted(int(x) for x in self.rng.choice(c["id"], size=min(n, c["id"].size), replace=False))
        numbers = self.new_numbers(len(chosen))
        self.update_many("UB_Customer", [(cid, {"CustomerNumber": num}) for cid, num in zip(chosen, numbers,
                                                                                           strict=True)])
        pos = np.searchsorted(c["id"], chosen)
        for p, num in zip(pos.tolist(), numbers, strict=True):
            c["number"][p] = num

    def modify_data(self, count: int) -> None:
        if count <= 0:
            return
        self.flush()
        rng = self.rng
        c = self.customers()
        targets = self.pick(np.isin(c["status"], ["A", "F", "V"]), 3 * count)
        led = self.recent_ledger(targets, self.today - timedelta(days=400))
        cand = []
        for cust in targets:
            lines = led[cust]
            voided = {ln["VoidsTransactionID"] for ln in lines if ln["TransactionType"] == "VOID"}
            cand.extend(ln for ln in lines if ln["TransactionType"] in ("BILL", "ADJ", "PEN", "DEP")
                        and ln["TransactionID"] not in voided)
        edits: list[tuple[int, dict[str, Any]]] = []
        for j in sorted(rng.choice(len(cand), size=min(count, len(cand)), replace=False).tolist()) if cand else []:
            ln = cand[j]
            cust = ln["CustomerID"]
            values: dict[str, Any] = {}
            kinds = rng.permutation(4)[: int(rng.integers(1, 3))].tolist()
            for kd in kinds:
                if kd == 0:
                    factor = rng.uniform(0.75, 1.25)
                    new = int(round(ln["Amount"] * factor))
                    if new == ln["Amount"] or new == 0:
                        new = ln["Amount"] + (100 if ln["Amount"] > 0 else -100)
                    values["Amount"] = new
                elif kd == 1:
                    values["Description"] = (ln["Description"][:48] + " - REVISED")[:60]
                elif kd == 2:
                    values["TransactionDate"] = ln["TransactionDate"] - timedelta(days=int(rng.integers(1, 11)))
                elif ln["DueDate"] is not None:
                    values["DueDate"] = ln["DueDate"] + timedelta(days=int(rng.integers(3, 16)))
                else:
                    values["Description"] = (ln["Description"][:48] + " - REVISED")[:60]
            edits.append((ln["TransactionID"], values))
            self.touched.add(cust)
        if edits:
            # one statement per line, all four editable columns set (unchanged ones to their old value)
            cur = {ln["TransactionID"]: ln for lines in led.values() for ln in lines}
            full = [(tid, {k: v.get(k, cur[tid][k]) for k in ("Amount", "Description", "TransactionDate",
                                                              "DueDate")}) for tid, v in edits]
            self.update_many("UB_Transaction", full)

    def add_orphans(self, n_lines: int, n_receipts: int) -> None:
        rng = self.rng
        n_ids = max(1, (n_lines + n_receipts + 2) // 3)
        orphan_ids = self.sim.take_ids("CustomerID", n_ids)
        for t in self.times(n_lines):
            cust = orphan_ids[int(rng.integers(n_ids))]
            if rng.random() < 0.6:
                svc = SERVICES[int(rng.integers(4))]
                self.add_line(cust, "BILL", int(rng.integers(1000, 9000)), t.date(), t,
                              f"{SERVICE_NAMES[SERVICES.index(svc)]} {_month_label(t.date())}", svc=svc,
                              due=t.date() + timedelta(days=20), touch=False)
            else:
                self.add_line(cust, "ADJ", -int(rng.integers(500, 3000)), t.date(), t, "BILLING ADJUSTMENT",
                              touch=False)
        for t in self.times(n_receipts):
            cust = orphan_ids[int(rng.integers(n_ids))]
            amount = int(rng.integers(2000, 20000))
            rc = self.add_receipt(cust, t - timedelta(seconds=30), t, "CHECK", amount, "P", t, self.random_name())
            self.add_line(cust, "PMT", -amount, t.date(), t, "PAYMENT - CHECK", ref=rc, receipt=rc, touch=False)

