"""The balance rule and the period-close BEGBAL construction, on synthetic ledgers.

The vectorised code in caselle_sim.ledger is compared with the plain loop in
caselle_sim.checks.reference_balance, and the BEGBAL lines of a period close
must leave every bucket unchanged at any AsOf.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from caselle_sim.checks import reference_balance
from caselle_sim.ledger import TXN_CODE, Lines, begbal_lines, compute_balances
from caselle_sim.util import NULL_DAY, date_of, day_of

BASE = day_of(date(2024, 1, 1))

line_st = st.tuples(
    st.integers(1, 4),  # customer
    st.sampled_from(["BILL", "PEN", "ADJ", "PMT", "VOID", "DEP", "XFER"]),
    st.integers(-20_000, 20_000),  # cents
    st.integers(0, 500),  # transaction day offset
    st.one_of(st.none(), st.integers(0, 540)),  # due day offset
)


def _lines(raw: list[tuple]) -> Lines:
    rows = [(c, i + 1, TXN_CODE[t], a, BASE + d, NULL_DAY if due is None else BASE + due)
            for i, (c, t, a, d, due) in enumerate(raw)]
    return Lines.from_rows(rows)


def _dicts(lines: Lines, cust: int) -> list[dict]:
    names = {v: k for k, v in TXN_CODE.items()}
    return [{"TransactionID": int(t), "TransactionType": names[int(ty)], "Amount": int(a),
             "TransactionDate": date_of(int(td)), "DueDate": None if dd == NULL_DAY else date_of(int(dd))}
            for c, t, ty, a, td, dd in zip(lines.cust, lines.txid, lines.ttype, lines.amount, lines.tdate,
                                           lines.due, strict=True) if c == cust]


def _as_dict(bal, i: int) -> dict:
    return {"BalanceCurrent": int(bal.buckets[i, 0]), "Balance30": int(bal.buckets[i, 1]),
            "Balance60": int(bal.buckets[i, 2]), "Balance90": int(bal.buckets[i, 3]),
            "Balance120": int(bal.buckets[i, 4]), "TotalBalance": int(bal.total[i])}


@settings(max_examples=150, deadline=None)
@given(st.lists(line_st, max_size=40), st.integers(0, 700))
def test_vectorised_balances_equal_the_reference_rule(raw, asof_offset):
    lines = _lines(raw)
    customers = np.array([1, 2, 3, 4, 5])  # 5 has no lines
    asof = BASE + asof_offset
    bal = compute_balances(lines, customers, np.full(5, asof))
    for i, cust in enumerate(customers.tolist()):
        want = reference_balance(_dicts(lines, cust), date_of(asof))
        got = _as_dict(bal, i)
        assert got == {k: want[k] for k in got}
        assert sum(got[k] for k in got if k != "TotalBalance") == got["TotalBalance"]
        lb = int(bal.last_bill_day[i])
        assert (None if lb == NULL_DAY else date_of(lb)) == want["LastBillDate"]
        assert bool(bal.delinquent[i]) == (want["Delinquent"] == "Y")


@settings(max_examples=150, deadline=None)
@given(st.lists(line_st, max_size=40), st.integers(0, 520), st.lists(st.integers(0, 800), min_size=1, max_size=4))
def test_begbal_lines_keep_every_bucket_at_any_asof(raw, purge_offset, asofs):
    lines = _lines(raw)
    customers = np.array([1, 2, 3, 4])
    purge = BASE + purge_offset
    cust, amount, due = begbal_lines(lines, customers, purge)
    keep = lines.tdate >= purge
    n = int(keep.sum())
    after = Lines(np.r_[lines.cust[keep], cust], np.r_[lines.txid[keep], 10_000 + np.arange(cust.size)],
                  np.r_[lines.ttype[keep], np.full(cust.size, TXN_CODE["BEGBAL"])],
                  np.r_[lines.amount[keep], amount], np.r_[lines.tdate[keep], np.full(cust.size, purge)],
                  np.r_[lines.due[keep], due])
    assert after.cust.size == n + cust.size
    for a in asofs:
        days = np.full(4, BASE + a)
        b0, b1 = compute_balances(lines, customers, days), compute_balances(after, customers, days)
        assert (b0.buckets == b1.buckets).all()
        assert (b0.total == b1.total).all()


def test_worked_example_of_the_aging_rule():
    # a bill due 100 days ago, one due 45 days ago, one not yet due; a payment of 70.00
    asof = date(2026, 11, 2)
    d = lambda n: asof - timedelta(days=n)  # noqa: E731
    lines = [
        {"TransactionID": 1, "TransactionType": "BILL", "Amount": 5000, "TransactionDate": d(120), "DueDate": d(100)},
        {"TransactionID": 2, "TransactionType": "BILL", "Amount": 6000, "TransactionDate": d(65), "DueDate": d(45)},
        {"TransactionID": 3, "TransactionType": "BILL", "Amount": 4000, "TransactionDate": d(5), "DueDate": d(-15)},
        {"TransactionID": 4, "TransactionType": "PMT", "Amount": -7000, "TransactionDate": d(30), "DueDate": None},
    ]
    got = reference_balance(lines, asof)
    # the payment clears the oldest bill (50.00) and 20.00 of the next one
    assert (got["Balance120"], got["Balance60"], got["BalanceCurrent"]) == (0, 4000, 4000)
    assert got["TotalBalance"] == 8000 and got["Delinquent"] == "Y"
    vec = compute_balances(Lines.from_rows([(1, ln["TransactionID"], TXN_CODE[ln["TransactionType"]], ln["Amount"],
                                             day_of(ln["TransactionDate"]),
                                             day_of(ln["DueDate"]) if ln["DueDate"] else NULL_DAY) for ln in lines]),
                           np.array([1]), np.array([day_of(asof)]))
    assert vec.buckets.tolist() == [[4000, 0, 4000, 0, 0]]


def test_credit_left_over_goes_to_current():
    lines = Lines.from_rows([(7, 1, TXN_CODE["BILL"], 1000, BASE, BASE + 20),
                             (7, 2, TXN_CODE["PMT"], -2500, BASE + 3, NULL_DAY)])
    bal = compute_balances(lines, np.array([7]), np.array([BASE + 200]))
    assert bal.buckets.tolist() == [[-1500, 0, 0, 0, 0]] and bal.total.tolist() == [-1500]
