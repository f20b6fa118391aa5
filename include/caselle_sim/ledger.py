"""How UB_Balance follows from the ledger, and how a period close keeps it unchanged.

The balance rule (the simulator's stand-in for "the city's rules"; every
UB_Balance row the simulator writes obeys it, and the tests recompute it):

* ``TotalBalance`` is the sum of every UB_Transaction line of the customer.
* A line with a positive Amount is a *charge*; its aging date is its DueDate,
  or its TransactionDate when DueDate is NULL. Lines with a negative Amount
  are *credits* (payments, voids of charges, credit adjustments); their dates
  do not matter.
* All credits together pay the charges oldest first: charges sorted by
  (aging date, TransactionID), the credit total consumed from the front.
* What remains of each charge is aged by ``d = AsOf's date - aging date``:
  ``d <= 0`` is BalanceCurrent, 1-30 Balance30, 31-60 Balance60, 61-90
  Balance90, over 90 Balance120.
* Credit left over after every charge is paid goes into BalanceCurrent (which
  is then negative), so the five buckets always add up to TotalBalance.
* ``LastBillDate`` is the latest TransactionDate of a BILL line,
  ``LastBillAmount`` the sum of the BILL lines on that date and ``DueDate``
  their latest DueDate; ``LastPaymentDate`` is the latest TransactionDate of a
  PMT line and ``LastPaymentAmount`` minus the sum of PMT lines on that date.
* ``Delinquent`` is ``Y`` when Balance60 + Balance90 + Balance120 is at least
  10.00, else ``N``.

A VOID line is treated like any other line: voiding a bill is a credit that
pays the oldest charge, voiding a payment is a charge aged from its
TransactionDate. This keeps the rule independent of which lines are still in
the ledger after a period close.

Period close (see :func:`begbal_lines`): because only the (aging date,
amount) of the *unpaid* remainder of charges matters, the lines dated before
PurgeBefore can be replaced by BEGBAL lines that preserve every bucket for any
AsOf: one BEGBAL for the part of the purged history that credits fully cover
(``purged fully-paid charges - purged credits``) and one per aging date for
purged charges still (partly) unpaid, carrying that date as its DueDate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .util import NULL_DAY

TXN_TYPES: tuple[str, ...] = ("BILL", "PEN", "ADJ", "PMT", "PMTADJ", "XFER", "DEP", "DEPAPP", "BEGBAL", "VOID")
T_BILL, T_PEN, T_ADJ, T_PMT, T_PMTADJ, T_XFER, T_DEP, T_DEPAPP, T_BEGBAL, T_VOID = range(len(TXN_TYPES))
TXN_CODE = {name: i for i, name in enumerate(TXN_TYPES)}
SERVICES: tuple[str, ...] = ("WA", "SE", "GA", "ST", "EL", "IR")
DELINQUENT_CENTS = 1000


@dataclass
class Lines:
    """Ledger lines in columnar normal form (cents, day numbers; NULL_DAY for a NULL DueDate)."""

    cust: np.ndarray
    txid: np.ndarray
    ttype: np.ndarray
    amount: np.ndarray
    tdate: np.ndarray
    due: np.ndarray

    @classmethod
    def from_rows(cls, rows: list[tuple[int, int, int, int, int, int]]) -> Lines:
        """Rows of (CustomerID, TransactionID, type code, cents, tdate day, due day or NULL_DAY)."""
        a = np.array(rows, dtype=np.int64).reshape(-1, 6)
        return cls(a[:, 0], a[:, 1], a[:, 2], a[:, 3], a[:, 4], a[:, 5])


@dataclass
class Balances:
    """UB_Balance values for ``customers`` (parallel arrays; NULL_DAY / 0 where no bill or payment)."""

    customers: np.ndarray
    buckets: np.ndarray  # (n, 5): current, 30, 60, 90, 120
    total: np.ndarray
    last_bill_day: np.ndarray
    last_bill_amount: np.ndarray
    due_day: np.ndarray
    last_pay_day: np.ndarray
    last_pay_amount: np.ndarray

    @property
    def delinquent(self) -> np.ndarray:
        return self.buckets[:, 2:].sum(axis=1) >= DELINQUENT_CENTS


def _index(customers: np.ndarray, cust: np.ndarray) -> tuple[np.ndarray, np.ndarray | slice]:
    """Position of each line's customer in the sorted ``customers``, and which lines belong.

    The second value is a boolean mask, or ``slice(None)`` when every line belongs
    (the common case of a whole build), which saves copying ten million lines.
    """
    if customers.size == 0:
        return np.zeros(cust.size, dtype=np.int64), np.zeros(cust.size, dtype=bool)
    first = int(customers[0])
    if int(customers[-1]) - first + 1 == customers.size:  # contiguous IDs: no search needed
        pos = cust.astype(np.int64) - first
        keep = (pos >= 0) & (pos < customers.size)
    else:
        pos = np.clip(np.searchsorted(customers, cust), 0, customers.size - 1)
        keep = customers[pos] == cust
    if keep.all():
        return pos, slice(None)
    return pos[keep], keep


def _allocate(ci_all: np.ndarray, lines: Lines, keep: np.ndarray | slice, n: int):
    """Charges of the kept lines sorted oldest first, with the credit each customer has."""
    amount = lines.amount[keep]
    charge = amount > 0
    credits = -np.bincount(ci_all[~charge], weights=amount[~charge], minlength=n)
    credits = np.rint(credits).astype(np.int64)
    ci = ci_all[charge]
    ca = amount[charge]
    del amount
    due = lines.due[keep][charge]
    cday = np.where(due != NULL_DAY, due, lines.tdate[keep][charge])
    del due
    order = np.lexsort((lines.txid[keep][charge], cday, ci))
    ci, ca, cday = ci[order], ca[order], cday[order]
    cs = np.cumsum(ca)
    base = np.zeros(n, dtype=np.int64)
    if ci.size:
        starts = np.r_[0, np.flatnonzero(np.diff(ci)) + 1]
        base[ci[starts]] = cs[starts] - ca[starts]
    within = cs - base[ci]  # running total of this customer's charges, oldest first
    remaining = np.minimum(ca, np.maximum(0, within - credits[ci]))
    return ci, ca, cday, remaining, credits, order, charge


def _last(idx: np.ndarray, day: np.ndarray, amount: np.ndarray, n: int, extra: np.ndarray | None = None):
    """Per customer: latest day, sum of amounts on that day, and max of ``extra`` on that day."""
    last = np.full(n, NULL_DAY, dtype=np.int64)
    total = np.zeros(n, dtype=np.int64)
    ext = np.full(n, NULL_DAY, dtype=np.int64)
    if idx.size == 0:
        return last, total, ext
    np.maximum.at(last, idx, day)
    on_last = day == last[idx]
    total = np.rint(np.bincount(idx[on_last], weights=amount[on_last], minlength=n)).astype(np.int64)
    if extra is not None:
        np.maximum.at(ext, idx[on_last], extra[on_last])
    return last, total, ext


def compute_balances(lines: Lines, customers: np.ndarray, asof_day: np.ndarray) -> Balances:
    """Apply the module's balance rule to every customer in ``customers`` (sorted, unique IDs).

    Lines of other customers are ignored; a customer without lines gets zeros.
    ``asof_day`` is the day number of each customer's AsOf.
    """
    customers = np.asarray(customers, dtype=np.int64)
    n = customers.size
    kidx, keep = _index(customers, lines.cust)
    ci, ca, cday, remaining, credits, order, charge = _allocate(kidx, lines, keep, n)
    del order, charge
    charges = np.rint(np.bincount(ci, weights=ca, minlength=n)).astype(np.int64)
    del ca
    days_past = np.asarray(asof_day, dtype=np.int64)[ci] - cday
    del cday
    bucket = np.searchsorted(np.array([0, 30, 60, 90]), days_past, side="left")
    del days_past
    buckets = np.rint(np.bincount(ci * 5 + bucket, weights=remaining, minlength=5 * n)).astype(np.int64)
    del ci, bucket, remaining
    buckets = buckets.reshape(n, 5)
    total = np.rint(np.bincount(kidx, weights=lines.amount[keep], minlength=n)).astype(np.int64)
    buckets[:, 0] += np.minimum(0, charges - credits)
    ttype = lines.ttype[keep]
    bill = ttype == T_BILL
    lb_day, lb_amt, lb_due = _last(kidx[bill], lines.tdate[keep][bill], lines.amount[keep][bill], n,
                                   lines.due[keep][bill])
    pmt = ttype == T_PMT
    lp_day, lp_amt, _ = _last(kidx[pmt], lines.tdate[keep][pmt], lines.amount[keep][pmt], n)
    return Balances(customers, buckets, total, lb_day, lb_amt, lb_due, lp_day, -lp_amt)


def begbal_lines(lines: Lines, customers: np.ndarray, purge_day: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BEGBAL lines that replace the lines dated before ``purge_day`` without changing any bucket.

    Returns parallel arrays (CustomerID, amount in cents, DueDate day or NULL_DAY)
    for the customers in ``customers``; lines of other customers (orphans) get none.
    """
    customers = np.asarray(customers, dtype=np.int64)
    n = customers.size
    kidx, keep = _index(customers, lines.cust)
    ci, ca, cday, remaining, credits, order, charge = _allocate(kidx, lines, keep, n)
    purged_all = lines.tdate[keep] < purge_day
    purged_charge = purged_all[charge][order]
    covered = remaining == 0
    amount = lines.amount[keep]
    purged_credit = -np.bincount(kidx[purged_all & ~charge], weights=amount[purged_all & ~charge],
                                 minlength=n)
    sel = covered & purged_charge
    paid_part = np.bincount(ci[sel], weights=ca[sel], minlength=n)
    net = np.rint(paid_part - purged_credit).astype(np.int64)
    first_day = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_day, ci[sel], cday[sel])
    out_c: list[np.ndarray] = []
    out_a: list[np.ndarray] = []
    out_d: list[np.ndarray] = []
    has_net = net != 0
    out_c.append(customers[has_net])
    out_a.append(net[has_net])
    out_d.append(np.where(net[has_net] > 0, first_day[has_net], NULL_DAY))
    open_ = ~covered & purged_charge
    if open_.any():
        key_c, key_d, amt = ci[open_], cday[open_], ca[open_]
        grp = np.lexsort((key_d, key_c))
        key_c, key_d, amt = key_c[grp], key_d[grp], amt[grp]
        new = np.r_[True, (np.diff(key_c) != 0) | (np.diff(key_d) != 0)]
        starts = np.flatnonzero(new)
        sums = np.add.reduceat(amt, starts)
        out_c.append(customers[key_c[starts]])
        out_a.append(sums)
        out_d.append(key_d[starts])
    c = np.concatenate(out_c)
    a = np.concatenate(out_a)
    d = np.concatenate(out_d)
    o = np.lexsort((d, c))
    return c[o], a[o], d[o]
