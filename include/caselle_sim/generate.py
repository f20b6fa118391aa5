"""Generate a whole community from a seed, vectorised with numpy.

The build works on int64 arrays (day numbers, local milliseconds, cents) and
only becomes Python objects or Arrow columns at the end, so that a ``city``
(about 60,000 accounts and 10 million ledger lines) takes minutes.

How the community comes about, in order:

1. Locations (service addresses) get a type, a cycle/route, an owner or a
   landlord, and a date they were built (most before the ten-year window).
2. Each location has a chain of accounts: occupants move out at random dates
   (renters more often than owners); the last account is active, or vacant
   (Status V, held by the landlord) when a rental is between tenants. Earlier
   accounts are final-billed (F) or, once old and settled, inactive (I).
3. Every account is billed monthly per service on its cycle's bill day, with
   a prorated final bill at move-out; deposits, conversion balances,
   adjustments and voided-and-corrected bills are added per billing month.
4. Payments settle each month's charges: autopay (ACH) on the due date,
   online or at the counter before it, late ones after a penalty. Some
   accounts stop paying in their last months (delinquent, collections), a few
   overpay (credit balance). Each payment is a CR_Receipt posted as a PMT line.
5. Receipt statuses follow real life, evaluated at the clock:

   * ``U`` imported, not yet posted: no PMT line yet.
   * ``P`` posted: exactly one PMT line with the opposite amount.
   * ``V`` voided: either voided before posting (a duplicate online
     payment; no PMT line), or posted and then reversed - by a VOID line that
     names the PMT line (clerical void) or by a PMTADJ line (returned check or
     ACH, with an NSF fee ADJ line and a replacement payment).
   * ``R`` refunded: the PMT line stays and a PMTADJ line with the receipt's
     amount (ReferenceNumber = ReceiptNumber) gives the money back.

   Receipts of other applications (licenses, permits) have no CustomerID and
   no ledger lines.
6. Some unpaid final balances are transferred (XFER) to the same person's new
   account, which then pays them.
7. Everything with an entry time after the clock is dropped; IDs are then
   assigned in entry-time order, and UB_Balance is computed by the rule in
   :mod:`caselle_sim.ledger`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import names as N
from .ledger import (
    SERVICES,
    T_ADJ,
    T_BEGBAL,
    T_BILL,
    T_DEP,
    T_DEPAPP,
    T_PEN,
    T_PMT,
    T_PMTADJ,
    T_VOID,
    T_XFER,
    TXN_TYPES,
    Lines,
    compute_balances,
)
from .presets import Preset
from .util import (
    MS_PER_DAY,
    NULL_DAY,
    day_of,
    format_numbers,
    last_group_digits,
    mask_digits,
    month_start,
    ms_of,
    weekday,
)

# Location / customer types.
CUSTOMER_TYPES = ("RES", "COM", "IND", "GOV", "IRR")
RES, COM, IND, GOV, IRR = range(5)
TYPE_P = np.array([0.862, 0.08, 0.01, 0.012, 0.036])
RENTAL_P = np.array([0.40, 0.60, 0.30, 0.0, 0.20])
MOVE_RATE_RENT = np.array([0.33, 0.14, 0.06, 0.0, 0.04])  # move-outs per year
MOVE_RATE_OWN = np.array([0.085, 0.07, 0.04, 0.0, 0.02])
# Services per type: WA SE GA ST EL IR
SERVICE_P = np.array([
    [0.98, 0.93, 0.90, 0.35, 0.10, 0.03],
    [0.97, 0.90, 0.60, 0.90, 0.20, 0.10],
    [1.00, 0.90, 0.50, 1.00, 0.40, 0.00],
    [0.90, 0.50, 0.30, 0.20, 0.30, 0.50],
    [0.30, 0.00, 0.00, 0.00, 0.00, 1.00],
])
SERVICE_NAMES = ("WATER SERVICE", "SEWER SERVICE", "GARBAGE COLLECTION", "STORM DRAIN", "ELECTRIC SERVICE",
                 "IRRIGATION WATER")
METHODS = ("CASH", "CHECK", "CARD", "ACH", "ONLINE")
CASH, CHECK, CARD, ACH, ONLINE = range(5)
PROFILE_AUTO, PROFILE_ONLINE, PROFILE_COUNTER = range(3)
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
INF_MS = np.int64(2**62)

DISTRICTS = ("NORTH", "SOUTH", "EAST", "WEST", "DOWNTOWN")
ASSESSMENT_DISTRICTS = (
    ("SID-12", "SIDEWALK & CURB SID-12"), ("SID-14", "STREET LIGHTING SID-14"),
    ("PID-3", "WATERLINE EXTENSION PID-3"), ("SID-21", "PAVING & GUTTER SID-21"),
    ("LID-7", "STORM DRAIN IMPROVEMENT LID-7"), ("SID-9", "SEWER MAIN REPLACEMENT SID-9"),
)


@dataclass
class Org:
    """The organisation row: who the community is."""

    code: str
    name: str
    time_zone: str
    mask: str


@dataclass
class Built:
    """A generated community: Arrow tables in internal form plus the next free IDs."""

    tables: dict[str, pa.Table]
    sequences: dict[str, int]
    stats: dict[str, int] = field(default_factory=dict)


class Vocab:
    """Strings referenced by index, so ten million descriptions are an int32 array."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._index: dict[str, int] = {}

    def add(self, text: str) -> int:
        i = self._index.get(text)
        if i is None:
            i = self._index[text] = len(self.items)
            self.items.append(text)
        return i

    def add_many(self, texts: list[str]) -> np.ndarray:
        return np.array([self.add(t) for t in texts], dtype=np.int32)


def _batch_size(values) -> int:
    """Rows in a batch: the arrays' length, which may be 0 (no final bill to refund, say); scalars broadcast."""
    sizes = [np.size(v) for v in values if np.ndim(v) > 0]
    return max(sizes) if sizes else 1


class LineBuffer:
    """Ledger lines appended in batches; a line's temporary index is its position."""

    # compact dtypes: a city has over ten million lines
    DTYPES = {"acc": np.int32, "ttype": np.int8, "svc": np.int8, "desc": np.int32, "amount": np.int64,
              "tdate": np.int32, "ims": np.int64, "due": np.int64, "slot": np.int32, "voids": np.int32,
              "rcpt": np.int32, "refr": np.int32, "refv": np.int32}
    FIELDS = tuple(DTYPES)
    DEFAULTS = {"svc": -1, "due": NULL_DAY, "slot": -1, "voids": -1, "rcpt": -1, "refr": -1, "refv": -1}

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []
        self.size = 0

    def add(self, **cols: np.ndarray | int) -> np.ndarray:
        n = _batch_size(cols.values())
        part = {}
        for f, dt in self.DTYPES.items():
            v = cols.get(f, self.DEFAULTS.get(f))
            if v is None:
                raise ValueError(f"line field {f} missing")
            part[f] = np.broadcast_to(np.asarray(v).astype(dt), (n,)).copy()
        self.parts.append(part)
        idx = np.arange(self.size, self.size + n, dtype=np.int64)
        self.size += n
        return idx

    def column(self, f: str) -> np.ndarray:
        """One field over all lines so far (a fresh array)."""
        return np.concatenate([p[f] for p in self.parts]) if self.parts else np.zeros(0, self.DTYPES[f])


class ReceiptBuffer:
    """Receipts appended in batches, with the times that decide their status at the clock."""

    FIELDS = ("acc", "rdate", "ims", "method", "amount", "post", "final", "fstatus", "payer")
    DEFAULTS = {"post": INF_MS, "final": INF_MS, "fstatus": 0, "payer": -1}

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []
        self.size = 0

    def add(self, **cols: np.ndarray | int) -> np.ndarray:
        n = _batch_size(cols.values())
        part = {f: np.broadcast_to(np.asarray(cols.get(f, self.DEFAULTS.get(f)), dtype=np.int64), (n,)).copy()
                for f in self.FIELDS}
        self.parts.append(part)
        idx = np.arange(self.size, self.size + n, dtype=np.int64)
        self.size += n
        return idx

    def arrays(self) -> dict[str, np.ndarray]:
        return {f: np.concatenate([p[f] for p in self.parts]) for f in self.FIELDS}


def ensure_min(flag: np.ndarray, eligible: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Make at least ``k`` eligible entries True (rare features must exist at every size)."""
    have = int((flag & eligible).sum())
    if have >= k:
        return flag
    cand = np.flatnonzero(eligible & ~flag)
    if cand.size:
        pick = rng.choice(cand, size=min(k - have, cand.size), replace=False)
        flag = flag.copy()
        flag[pick] = True
    return flag


def _uniform_int(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Integers uniform in [lo, hi) element-wise (hi > lo assumed, else lo)."""
    span = np.maximum(np.asarray(hi) - np.asarray(lo), 1)
    return np.asarray(lo) + np.floor(rng.random(span.shape) * span).astype(np.int64)


def _money(x: np.ndarray) -> np.ndarray:
    """Dollar floats to int cents."""
    return np.rint(np.asarray(x) * 100).astype(np.int64)


def town_of(org_name: str) -> str:
    """'City of Springfield' -> 'Springfield' (the service-address city)."""
    for prefix in ("City of ", "Town of ", "Village of ", "City and County of "):
        if org_name.startswith(prefix):
            return org_name[len(prefix):][:40]
    return org_name[:40]


def aba_routing(rng: np.random.Generator, n: int) -> list[str]:
    """Routing numbers with a valid ABA check digit (fake banks)."""
    d = rng.integers(0, 10, size=(n, 8))
    d[:, 0] = rng.integers(0, 2, size=n)  # 0x / 1x: Federal Reserve districts
    d[:, 1] = rng.integers(1, 10, size=n)
    s = 3 * (d[:, 0] + d[:, 3] + d[:, 6]) + 7 * (d[:, 1] + d[:, 4] + d[:, 7]) + (d[:, 2] + d[:, 5])
    check = (10 - s % 10) % 10
    return ["".join(map(str, row)) + str(c) for row, c in zip(d.tolist(), check.tolist(), strict=True)]


class Generator:
    """One build: holds the random stream and the growing arrays."""

    def __init__(self, preset: Preset, seed: int, org: Org, start: datetime):
        self.preset = preset
        self.org = org
        self.start = start
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 0xCA5E11E]))
        self.start_day = day_of(start.date())
        self.start_ms = ms_of(start)
        h0 = month_start(start.year - preset.history_years, start.month)
        self.h0 = day_of(h0)
        self.n_months = preset.history_years * 12 + 1
        self.month_first = np.array([day_of(month_start(h0.year, h0.month, m)) for m in range(self.n_months + 2)],
                                    dtype=np.int64)
        self.month_year = np.array([month_start(h0.year, h0.month, m).year for m in range(self.n_months + 2)])
        self.month_moy = np.array([month_start(h0.year, h0.month, m).month for m in range(self.n_months + 2)])
        self.desc = Vocab()
        self.refs = Vocab()
        self.town = town_of(org.name)
        self.state, self.zip_prefix, self.area_codes = N.STATE_BY_TZ.get(org.time_zone, N.STATE_BY_TZ["America/Denver"])
        mask_digits(org.mask)

    # ------------------------------------------------------------------------------------------
    def run(self) -> Built:
        self.make_locations()
        self.make_accounts()
        self.make_customer_numbers()
        self.make_slots()
        lines = LineBuffer()
        receipts = ReceiptBuffer()
        self.bill_lines(lines)
        self.extra_lines(lines)
        self.payments(lines, receipts)
        self.transfers(lines, receipts)
        self.other_receipts(receipts)
        self.pending_receipts(receipts)
        ledger = self.finish_ledger(lines, receipts)
        self.make_contacts()
        rcpt = pa.table(self.rcpt_cols)
        tables = {
            "SM_Organization": pa.table({"OrgCode": [self.org.code], "OrgName": [self.org.name],
                                         "TimeZone": [self.org.time_zone],
                                         "CustomerNumberMask": [self.org.mask]}),
            "SM_Contact": self.contact_table(),
            "UB_Location": self.location_table(),
            "UB_Customer": self.customer_table(),
            "UB_Transaction": ledger,
            "CR_Receipt": rcpt,
            "UB_Balance": self.balance_table,
            "UB_PeriodClose": pa.table({"CloseID": pa.array([], pa.int32()),
                                        "ClosedAt": pa.array([], pa.timestamp("ms")),
                                        "PurgeBefore": pa.array([], pa.date32())}),
            "PI_Assessment": self.assessment_table(),
        }
        seq = {
            "ContactID": len(self.contacts["type"]) + 1,
            "LocationID": self.L + 1,
            "CustomerID": self.A + 1,
            "TransactionID": ledger.num_rows + 1,
            "ReceiptID": rcpt.num_rows + 1,
            "ReceiptNumber": rcpt.num_rows + 1,
            "CloseID": 1,
            "AssessmentID": tables["PI_Assessment"].num_rows + 1,
        }
        return Built(tables, seq, {name: t.num_rows for name, t in tables.items()})

    # -- 1. locations -------------------------------------------------------------------------
    def expected_accounts_per_location(self) -> float:
        years = 0.75 * self.preset.history_years + 0.25 * self.preset.history_years / 2
        rate = (TYPE_P * (RENTAL_P * MOVE_RATE_RENT + (1 - RENTAL_P) * MOVE_RATE_OWN)).sum()
        return 1.0 + rate * years * 0.9

    def make_locations(self) -> None:
        rng = self.rng
        L = max(20, int(round(self.preset.accounts / self.expected_accounts_per_location())))
        self.L = L
        ltype = rng.choice(5, size=L, p=TYPE_P)
        # every type, enough GOV for a consolidated-billing master and COM for a business chain
        for t, k in ((COM, 4), (IND, 1), (GOV, 3), (IRR, 1)):
            ltype = np.where(ensure_min(ltype == t, ltype == RES, k, rng), t, ltype)
        rental = rng.random(L) < RENTAL_P[ltype]
        rental = ensure_min(rental, ltype == RES, 4, rng)
        pre = rng.random(L) < 0.75
        est = np.where(pre, _uniform_int(rng, np.full(L, day_of(date(1955, 1, 1))), np.full(L, self.h0)),
                       _uniform_int(rng, np.full(L, self.h0), np.full(L, self.start_day - 150)))
        order = np.argsort(est, kind="stable")  # LocationID follows the date a location was built
        self.ltype, self.rental, self.est = ltype[order], rental[order], est[order]
        district = rng.integers(0, len(DISTRICTS), size=L)
        self.district = district
        self.cycle = (district % 4) + 1  # billing cycle follows the district
        self.route = (district * 10 + rng.integers(1, 11, size=L)).astype(np.int64)
        # landlords: a pool; some own many rentals (Zipf-like)
        n_land = max(3, int(self.rental.sum() / 6))
        weights = 1.0 / np.arange(1, n_land + 1) ** 0.8
        self.landlord_of_loc = np.where(self.rental, rng.choice(n_land, size=L, p=weights / weights.sum()), -1)
        self.n_landlords = n_land
        self.make_addresses()

    def make_addresses(self) -> None:
        rng = self.rng
        L = self.L
        grid = rng.random(L) < 0.55
        dirs = rng.integers(0, 4, size=L)
        block = rng.integers(1, 30, size=L) * 100
        named = rng.integers(0, len(N.NAMED_STREETS), size=L)
        street = [f"{N.GRID_DIRECTIONS[d]} {b} {'S' if d in (0, 1) and b % 200 else 'E' if d < 2 else 'N'}"
                  if g else N.NAMED_STREETS[s]
                  for g, d, b, s in zip(grid.tolist(), dirs.tolist(), block.tolist(), named.tolist(), strict=True)]
        house = rng.integers(1, 60, size=L) * np.where(grid, 10, 4) + rng.integers(0, 9, size=L)
        unit_p = np.where((self.ltype == RES) & self.rental, 0.35, np.where(self.ltype == COM, 0.25, 0.0))
        has_unit = rng.random(L) < unit_p
        unit_i = rng.integers(0, len(N.UNITS), size=L)
        zips = [f"{self.zip_prefix}{z:02d}" for z in rng.choice(np.arange(10, 99), size=3, replace=False)]
        book = rng.integers(1, 40, size=L)
        page = rng.integers(1, 1000, size=L)
        parcel_seq = rng.permutation(L) + 1
        self.loc_house = [str(h) for h in house.tolist()]
        self.loc_street = street
        self.loc_unit = [N.UNITS[u] if h else None for u, h in zip(unit_i.tolist(), has_unit.tolist(), strict=True)]
        self.loc_zip = [zips[d % 3] for d in self.district.tolist()]
        no_parcel = rng.random(L) < 0.03
        self.loc_parcel = [None if np_ else f"{b:02d}-{pg:03d}-{sq:04d}" for b, pg, sq, np_ in
                           zip(book.tolist(), page.tolist(), parcel_seq.tolist(), no_parcel.tolist(), strict=True)]
        self.loc_district = [None if r < 0.04 else DISTRICTS[d]
                             for d, r in zip(self.district.tolist(), rng.random(L).tolist(), strict=True)]

    # -- 2. accounts ----------------------------------------------------------------------------
    def make_accounts(self) -> None:
        rng = self.rng
        L = self.L
        lo = np.maximum(self.est, self.h0) + 90
        hi = np.full(L, self.start_day - 1)
        years = np.maximum(hi - lo, 0) / 365.25
        lam = np.where(self.rental, MOVE_RATE_RENT[self.ltype], MOVE_RATE_OWN[self.ltype]) * years
        n_moves = rng.poisson(lam)
        m_loc = np.repeat(np.arange(L), n_moves)
        m_day = _uniform_int(rng, lo[m_loc], hi[m_loc])
        # a rental between tenants right now: its last tenant moved out in the last weeks
        vacant_now = self.rental & (rng.random(L) < 0.06) & (hi - lo > 120)
        vacant_now = ensure_min(vacant_now, self.rental & (hi - lo > 120), 1, rng)
        vac_day = np.where(vacant_now, self.start_day - rng.integers(5, 75, size=L), NULL_DAY)
        keep = ~(vacant_now[m_loc] & (m_day > vac_day[m_loc] - 45))
        v_loc = np.flatnonzero(vacant_now)
        m_loc = np.r_[m_loc[keep], v_loc]
        m_day = np.r_[m_day[keep], vac_day[v_loc]]
        o = np.lexsort((m_day, m_loc))
        m_loc, m_day = m_loc[o], m_day[o]
        # moves at least 45 days apart, so every account lasts longer than its move-in gap
        while True:
            close = np.r_[False, (m_loc[1:] == m_loc[:-1]) & (np.diff(m_day) < 45)]
            if not close.any():
                break
            first_close = close & ~np.r_[False, close[:-1]]  # drop one of each run per pass
            m_loc, m_day = m_loc[~first_close], m_day[~first_close]
        n_moves = np.bincount(m_loc, minlength=L)
        k = n_moves + 1
        A = int(k.sum())
        acc_loc = np.repeat(np.arange(L), k)
        first = np.r_[0, np.cumsum(k)[:-1]]
        acc_seq = np.arange(A) - first[acc_loc]
        move_start = np.r_[0, np.cumsum(n_moves)[:-1]]
        # final day: the seq-th move of the location; the last account has none
        has_final = acc_seq < n_moves[acc_loc]
        final = np.full(A, NULL_DAY, dtype=np.int64)
        final[has_final] = m_day[move_start[acc_loc[has_final]] + acc_seq[has_final]]
        # connect day: the first account at a location built before the window connected years before it
        prev_final = np.full(A, NULL_DAY, dtype=np.int64)
        prev_final[1:] = np.where(acc_seq[1:] > 0, final[:-1], NULL_DAY)
        gap = np.where(rng.random(A) < 0.55, 0, rng.integers(1, 15, size=A))
        first_connect = np.where(self.est[acc_loc] >= self.h0, self.est[acc_loc] + rng.integers(10, 60, size=A),
                                 np.maximum(self.est[acc_loc], self.h0 - rng.integers(30, 365 * 25, size=A)))
        connect = np.where(acc_seq == 0, first_connect, prev_final + 1 + gap)
        vacancy = vacant_now[acc_loc] & ~has_final
        connect = np.where(vacancy, prev_final + 1, connect)
        connect = np.minimum(connect, self.start_day - 1)
        # CustomerID follows ConnectDate
        order = np.lexsort((acc_seq, acc_loc, connect))
        self.A = A
        self.acc_loc = acc_loc[order]
        self.acc_seq = acc_seq[order]
        self.connect = connect[order]
        self.final = final[order]
        self.vacancy = vacancy[order]
        self.ctype = self.ltype[self.acc_loc]
        self.has_final = self.final != NULL_DAY
        # traits
        ct = self.ctype
        svc_bits = np.zeros(A, dtype=np.int64)
        draws = rng.random((A, 6)) < SERVICE_P[ct]
        for s in range(6):
            svc_bits |= draws[:, s].astype(np.int64) << s
        svc_bits = np.where(svc_bits == 0, 1, svc_bits)
        svc_bits = np.where(self.vacancy, 0b001001, svc_bits)  # vacant: water base + storm only
        for s in (4, 5):  # electric and irrigation exist somewhere
            has = (svc_bits >> s) & 1 == 1
            has = ensure_min(has, ~self.vacancy, 2, rng)
            svc_bits = np.where(has, svc_bits | (1 << s), svc_bits)
        self.svc_bits = svc_bits
        type_mult = np.array([1.0, 3.0, 8.0, 4.0, 1.5])[ct]
        self.usage = rng.lognormal(0.0, 0.35, size=A) * np.where(ct == RES, 1.0,
                                                                 type_mult * rng.lognormal(0, 0.5, size=A))
        self.cart = np.where(rng.random(A) < 0.7, 1785, 1425)
        self.containers = rng.integers(1, 5, size=A)
        self.eru = rng.integers(2, 26, size=A)
        res = ct == RES
        pr = rng.random(A)
        self.profile = np.where(pr < np.where(res, 0.18, 0.25), PROFILE_AUTO,
                                np.where(pr < np.where(res, 0.58, 0.40), PROFILE_ONLINE, PROFILE_COUNTER))
        cm = rng.random(A)
        counter_method = np.where(res, np.where(cm < 0.22, CASH, np.where(cm < 0.7, CHECK, CARD)),
                                  np.where(cm < 0.05, CASH, np.where(cm < 0.85, CHECK, CARD)))
        self.method = np.where(self.profile == PROFILE_AUTO, ACH,
                               np.where(self.profile == PROFILE_ONLINE, ONLINE, counter_method))
        self.late_p = np.where(self.profile == PROFILE_AUTO, 0.0,
                               rng.choice(np.array([0.01, 0.08, 0.30]), size=A, p=[0.70, 0.24, 0.06]))
        renter = self.rental[self.acc_loc]
        dep_p = np.where(res, np.where(renter, 0.6, 0.15), np.where(ct == COM, 0.5, 0.0))
        self.deposit = np.where((rng.random(A) < dep_p) & (self.connect >= self.h0) & ~self.vacancy,
                                np.where(res, 10000, 25000), 0)
        self.deposit = np.where(ensure_min(self.deposit > 0, (self.connect >= self.h0) & self.has_final
                                           & ~self.vacancy, 2, rng) & (self.deposit == 0),
                                10000, self.deposit)
        active = ~self.has_final & ~self.vacancy
        self.active = active
        delinquent = active & (rng.random(A) < 0.07)
        self.delinquent = ensure_min(delinquent, active, 3, rng)
        self.tail = np.where(self.delinquent, rng.integers(1, 7, size=A), 0)
        self.tail = np.where(self.delinquent & (np.arange(A) == np.flatnonzero(self.delinquent)[0]), 5, self.tail)
        final_unpaid = self.has_final & (rng.random(A) < 0.12)
        old_final = self.has_final & (self.final < self.start_day - 150)
        final_unpaid = ensure_min(final_unpaid, old_final & (ct == RES), 2, rng)  # one becomes a transfer
        self.final_unpaid = ensure_min(final_unpaid, old_final, 3, rng)
        self.tail = np.where(self.final_unpaid, rng.integers(1, 3, size=A), self.tail)
        self.overpay = ensure_min(active & ~self.delinquent & (rng.random(A) < 0.03), active & ~self.delinquent,
                                  2, rng)
        conv = (self.connect < self.h0) & (rng.random(A) < 0.25)
        self.conv = ensure_min(conv, self.connect < self.h0, 2, rng)
        self.conv_amount = np.where(rng.random(A) < 0.8, _money(rng.uniform(40, 180, size=A)),
                                    -_money(rng.uniform(5, 60, size=A)))

    def make_customer_numbers(self) -> None:
        rng = self.rng
        mask = self.org.mask
        d = mask_digits(mask)
        tail = last_group_digits(mask)
        space_loc = 10 ** (d - tail)
        if tail and tail <= 3 and space_loc >= 4 * self.L and self.acc_seq.max() < 10**tail:
            # location-based numbers: <location part>-<occupant sequence>, like 010-00123-02
            base = rng.choice(space_loc - 1, size=self.L, replace=False) + 1
            nums = base[self.acc_loc] * 10**tail + self.acc_seq
        else:
            if 10**d < 4 * self.A:
                raise ValueError(f"customer number mask {mask!r} is too small for {self.A} accounts")
            nums = rng.choice(10**d, size=self.A, replace=False)
        self.cust_numbers = format_numbers(nums, mask)

    # -- 3. billing months --------------------------------------------------------------------
    def make_slots(self) -> None:
        A = self.A
        bill_days = self.month_first[None, : self.n_months] + (1 + 7 * np.arange(4))[:, None] - 1  # (4, months)
        cyc = self.cycle[self.acc_loc] - 1
        limit = np.where(self.has_final, self.final - 1, self.start_day)
        m0 = np.zeros(A, dtype=np.int64)
        m1 = np.zeros(A, dtype=np.int64)
        for c in range(4):
            sel = cyc == c
            m0[sel] = np.searchsorted(bill_days[c], self.connect[sel] + 15, side="left")
            m1[sel] = np.searchsorted(bill_days[c], limit[sel], side="right") - 1
        count = np.maximum(0, m1 - m0 + 1)
        s_acc = np.repeat(np.arange(A), count)
        offs = np.r_[0, np.cumsum(count)[:-1]]
        s_month = m0[s_acc] + (np.arange(s_acc.size) - offs[s_acc])
        s_bill = bill_days[cyc[s_acc], s_month]
        # final bills
        fa = np.flatnonzero(self.has_final)
        last_bill = np.where(count[fa] > 0, bill_days[cyc[fa], np.clip(m1[fa], 0, self.n_months - 1)],
                             self.connect[fa])
        f_month = np.searchsorted(self.month_first, self.final[fa], side="right") - 1
        frac = np.clip((self.final[fa] - last_bill) / 30.0, 0.1, 1.0)
        s_acc = np.r_[s_acc, fa]
        s_month = np.r_[s_month, f_month]
        s_bill = np.r_[s_bill, self.final[fa]]
        s_final = np.r_[np.zeros(count.sum(), dtype=bool), np.ones(fa.size, dtype=bool)]
        s_frac = np.r_[np.ones(count.sum()), frac]
        o = np.lexsort((s_bill, s_acc))
        self.s_acc, self.s_month, self.s_bill = s_acc[o], s_month[o], s_bill[o]
        self.s_final, self.s_frac = s_final[o], s_frac[o]
        self.s_due = self.s_bill + 20
        S = self.s_acc.size
        self.S = S
        n_slots = np.bincount(self.s_acc, minlength=A)
        first = np.r_[0, np.cumsum(n_slots)[:-1]]
        self.s_pos = np.arange(S) - first[self.s_acc]
        self.s_rev = n_slots[self.s_acc] - 1 - self.s_pos
        self.acc_first_slot = np.where(n_slots > 0, first, -1)
        self.acc_last_slot = np.where(n_slots > 0, first + n_slots - 1, -1)

    def period_of(self, days: np.ndarray) -> np.ndarray:
        """Month index of day numbers (for Period and descriptions)."""
        return np.searchsorted(self.month_first, days, side="right") - 1

    # -- 3b. bill lines -----------------------------------------------------------------------
    def bill_lines(self, lines: LineBuffer) -> None:
        rng = self.rng
        S = self.S
        acc = self.s_acc
        moy = self.month_moy[self.s_month]
        summer = np.clip(np.cos((moy - 7) * np.pi / 6), 0, None) ** 1.5
        winter = np.clip(-np.cos((moy - 7) * np.pi / 6), 0, None)
        esc = 1.035 ** (self.month_year[self.s_month] - self.start.year)
        usage = self.usage[acc]
        ct = self.ctype[acc]
        vac = self.vacancy[acc]
        kgal = np.where(vac, 0.3, usage * (4.5 + 10 * summer) * rng.lognormal(0, 0.18, size=S))
        wa_base = np.array([24.50, 48.00, 95.00, 48.00, 36.00])[ct]
        amounts = np.zeros((6, S))
        amounts[0] = wa_base + kgal * 2.85
        amounts[1] = (31.75 + 2.10 * np.minimum(usage * 4.5, 40)) * np.where(ct == RES, 1.0, 1.8)
        amounts[2] = np.where(ct == RES, self.cart[acc] / 100, 62.00 * self.containers[acc] * np.where(ct == IND, 2, 1))
        amounts[3] = np.where(ct == RES, 6.50, 6.50 * self.eru[acc])
        kwh = usage * (520 + 380 * summer + 150 * winter) * rng.lognormal(0, 0.12, size=S)
        amounts[4] = 9.50 + kwh * 0.1165
        amounts[5] = np.where(summer > 0.05, 12.00 + usage * 25 * summer * 1.10, 0.0)
        amounts *= (esc * self.s_frac)[None, :]
        cents = np.maximum(_money(amounts), 0)
        has = ((self.svc_bits[acc][None, :] >> np.arange(6)[:, None]) & 1 == 1) & (cents > 0)
        # descriptions: "<SERVICE> <MON> <YEAR>", "FINAL <SERVICE> ..." for move-out bills
        month_label = [f"{MONTHS[self.month_moy[m] - 1]} {self.month_year[m]}" for m in range(self.n_months + 1)]
        d_reg = np.array([[self.desc.add(f"{SERVICE_NAMES[s]} {month_label[m]}") for m in range(self.n_months + 1)]
                          for s in range(6)])
        d_fin = np.array([[self.desc.add(f"FINAL {SERVICE_NAMES[s]} {month_label[m]}")
                           for m in range(self.n_months + 1)] for s in range(6)])
        cyc = self.cycle[self.acc_loc[acc]]
        ref_ids = np.array([[self.refs.add(f"B{str(self.month_year[m])[2:]}{self.month_moy[m]:02d}-{c}")
                             for c in range(1, 5)] for m in range(self.n_months + 1)])
        run_ms = self.s_bill * MS_PER_DAY + 6 * 3_600_000 + _uniform_int(rng, np.zeros(S, np.int64),
                                                                          np.full(S, 3 * 3_600_000))
        run_ms = np.where(self.s_final, self.s_bill * MS_PER_DAY + 9 * 3_600_000
                          + _uniform_int(rng, np.zeros(S, np.int64), np.full(S, 8 * 3_600_000)), run_ms)
        self.slot_input = run_ms
        self.bill_line_of_slot = np.full(S, -1, dtype=np.int64)
        for s in range(6):
            sel = np.flatnonzero(has[s])
            idx = lines.add(acc=acc[sel], ttype=T_BILL, svc=s, amount=cents[s, sel],
                            desc=np.where(self.s_final[sel], d_fin[s, self.s_month[sel]], d_reg[s, self.s_month[sel]]),
                            tdate=self.s_bill[sel], ims=run_ms[sel] + s * 7, due=self.s_due[sel], slot=sel,
                            refv=ref_ids[self.s_month[sel], cyc[sel] - 1])
            first_time = self.bill_line_of_slot[sel] < 0
            self.bill_line_of_slot[sel[first_time]] = idx[first_time]
        self.bill_cents = cents
        self.bill_has = has

    def _entry_ms(self, days: np.ndarray, late_share: float = 0.1) -> np.ndarray:
        """Entry time for a manual line dated ``days``: business hours, sometimes days later."""
        n = len(days)
        rng = self.rng
        later = np.where(rng.random(n) < late_share, rng.integers(1, 5, size=n), 0)
        return (days + later) * MS_PER_DAY + _uniform_int(rng, np.full(n, 8 * 3_600_000), np.full(n, 17 * 3_600_000))

    def extra_lines(self, lines: LineBuffer) -> None:
        """Deposits, conversion balances, adjustments, voided-and-corrected bills, deposit refunds."""
        rng = self.rng
        # deposits at connect, paid with the first bill
        dep = np.flatnonzero((self.deposit > 0) & (self.acc_first_slot >= 0))
        slot0 = self.acc_first_slot[dep]
        dep_day = np.minimum(self.connect[dep], self.s_bill[slot0])
        lines.add(acc=dep, ttype=T_DEP, amount=self.deposit[dep], desc=self.desc.add("SERVICE DEPOSIT"),
                  tdate=dep_day, ims=self._entry_ms(dep_day, 0.0), due=self.s_due[slot0], slot=slot0)
        # deposit applied to the final bill
        da = np.flatnonzero((self.deposit > 0) & self.has_final & (self.acc_last_slot >= 0))
        fslot = self.acc_last_slot[da]
        lines.add(acc=da, ttype=T_DEPAPP, amount=-self.deposit[da], desc=self.desc.add("DEPOSIT APPLIED TO FINAL BILL"),
                  tdate=self.s_bill[fslot], ims=self.slot_input[fslot] + 500, slot=fslot)
        # conversion balances of accounts older than the window
        cv = np.flatnonzero(self.conv & (self.acc_first_slot >= 0))
        amt = self.conv_amount[cv]
        lines.add(acc=cv, ttype=T_BEGBAL, amount=amt, desc=self.desc.add("BEGINNING BALANCE - CONVERSION"),
                  tdate=self.h0, ims=self.h0 * MS_PER_DAY + 5 * 60_000 + cv,
                  due=np.where(amt > 0, self.h0, NULL_DAY), slot=self.acc_first_slot[cv])
        # adjustments
        slot_bill = np.bincount(np.tile(np.arange(self.S), 6)[self.bill_has.ravel()],
                                weights=self.bill_cents[self.bill_has], minlength=self.S)
        adj = rng.random(self.S) < 0.015
        adj = ensure_min(adj, (self.s_bill < self.start_day - 40) & (slot_bill > 2000), 3, rng)
        sl = np.flatnonzero(adj)
        credit = rng.random(sl.size) < 0.7
        amount = np.where(credit, -np.maximum(_money(slot_bill[sl] / 100 * rng.uniform(0.1, 0.5, sl.size)), 100),
                          _money(rng.uniform(5, 30, sl.size)))
        credit_desc = self.desc.add_many(["LEAK ADJUSTMENT", "BILLING ADJUSTMENT", "SENIOR DISCOUNT",
                                          "HIGH USAGE CREDIT"])
        charge_desc = self.desc.add_many(["METER READ CORRECTION", "RETURN TRIP FEE", "CART REPLACEMENT FEE"])
        desc = np.where(credit, credit_desc[rng.integers(0, 4, sl.size)], charge_desc[rng.integers(0, 3, sl.size)])
        tdate = self.s_bill[sl] + rng.integers(2, 13, size=sl.size)
        lines.add(acc=self.s_acc[sl], ttype=T_ADJ, amount=amount, desc=desc, tdate=tdate,
                  ims=np.maximum(self._entry_ms(tdate), self.slot_input[sl] + 1000),
                  due=np.where(credit, NULL_DAY, self.s_due[sl]), slot=sl)
        # a bill line voided and re-billed with the corrected amount
        has_bill = self.bill_line_of_slot >= 0
        vo = ensure_min((rng.random(self.S) < 0.004) & has_bill,
                        has_bill & (self.s_bill < self.start_day - 40), 3, rng)
        sl = np.flatnonzero(vo)
        target = self.bill_line_of_slot[sl]
        orig = lines.column("amount")[target]
        svc = lines.column("svc")[target].astype(np.int64)
        tdate = self.s_bill[sl] + rng.integers(1, 7, size=sl.size)
        ims = np.maximum(self._entry_ms(tdate, 0.0), lines.column("ims")[target] + 1000)
        lines.add(acc=self.s_acc[sl], ttype=T_VOID, amount=-orig, desc=self.desc.add("VOID - BILLING ERROR"),
                  tdate=tdate, ims=ims, slot=sl, voids=target, svc=svc)
        corrected = self.desc.add_many([f"{SERVICE_NAMES[s]} CORRECTED" for s in range(6)])
        lines.add(acc=self.s_acc[sl], ttype=T_BILL, svc=svc,
                  amount=np.maximum(_money(orig / 100 * rng.uniform(0.55, 0.95, sl.size)), 1),
                  desc=corrected[svc], tdate=tdate, ims=ims + 250,
                  due=self.s_due[sl], slot=sl, refv=lines.column("refv")[target])

    # -- 4. payments --------------------------------------------------------------------------
    def payments(self, lines: LineBuffer, receipts: ReceiptBuffer) -> None:
        rng = self.rng
        S = self.S
        slot = lines.column("slot")
        in_slot = slot >= 0
        slot_total = np.rint(np.bincount(slot[in_slot], weights=lines.column("amount")[in_slot],
                                         minlength=S)).astype(np.int64)
        del slot, in_slot
        acc = self.s_acc
        prof = self.profile[acc]
        method = self.method[acc]
        # unpaid tails: delinquent actives and unpaid finals stop paying in their last slots
        unpaid = self.s_rev < self.tail[acc]
        partial = unpaid & (self.s_rev == self.tail[acc] - 1) & (rng.random(S) < 0.3) & self.delinquent[acc]
        late = ~unpaid & (rng.random(S) < self.late_p[acc])
        delay = np.where(prof == PROFILE_AUTO, 20,
                         np.where(late, 20 + rng.integers(1, 10, size=S), rng.integers(3, 20, size=S)))
        pay_day = self.s_bill + delay
        wd = weekday(pay_day)
        counter = prof == PROFILE_COUNTER
        pay_day = np.where(counter & (wd == 5), pay_day + 2, np.where(counter & (wd == 6), pay_day + 1, pay_day))
        late = ~unpaid & (pay_day > self.s_due)
        pen_amt = np.maximum(500, _money(np.maximum(slot_total, 0) / 100 * 0.10))
        pen = (late | unpaid) & (slot_total > 0)
        waive = pen & late & (rng.random(S) < 0.05)
        waive = ensure_min(waive, pen & late & (self.s_bill < self.start_day - 60), 1, rng)
        pen_day = self.s_due + 1
        ps = np.flatnonzero(pen)
        pen_desc = self.desc.add_many([f"LATE PENALTY {MONTHS[self.month_moy[m] - 1]} {self.month_year[m]}"
                                       for m in range(self.n_months + 1)])
        pen_idx = lines.add(acc=acc[ps], ttype=T_PEN, amount=pen_amt[ps], desc=pen_desc[self.s_month[ps]],
                            tdate=pen_day[ps], ims=pen_day[ps] * MS_PER_DAY + 6 * 3_600_000 + 1_800_000
                            + rng.integers(0, 1_200_000, size=ps.size), due=pen_day[ps] + 20, slot=ps)
        pen_line = np.full(S, -1, dtype=np.int64)
        pen_line[ps] = pen_idx
        ws = np.flatnonzero(waive)
        lines.add(acc=acc[ws], ttype=T_VOID, amount=-pen_amt[ws], desc=self.desc.add("PENALTY WAIVED"),
                  tdate=pay_day[ws], ims=pay_day[ws] * MS_PER_DAY + 8 * 3_600_000 + rng.integers(0, 3_600_000, ws.size),
                  voids=pen_line[ws], slot=ws)
        amount = slot_total + np.where(pen & ~waive, pen_amt, 0)
        over = self.overpay[acc] & (self.s_rev == 0)
        amount = amount + np.where(over, _money(rng.uniform(10, 150, size=S)), 0)
        amount = np.where(partial, _money(amount / 100 * 0.5), amount)
        paying = (~unpaid | partial) & (amount > 0)
        # a final bill with more deposit than charges is refunded by check
        refund = self.s_final & (slot_total < 0)
        rs = np.flatnonzero(refund)
        rday = self.s_bill[rs] + 21
        lines.add(acc=acc[rs], ttype=T_PMTADJ, amount=-slot_total[rs], desc=self.desc.add("DEPOSIT REFUND CHECK"),
                  tdate=rday, ims=self._entry_ms(rday, 0.0), slot=rs,
                  refv=self.refs.add_many([f"AP CK {10000 + i}" for i in range(rs.size)]))
        # receipt times
        p = np.flatnonzero(paying)
        n = p.size
        pday = pay_day[p]
        pprof = prof[p]
        rdate = np.where(pprof == PROFILE_AUTO, pday * MS_PER_DAY + 5 * 3_600_000,
                         np.where(pprof == PROFILE_ONLINE,
                                  pday * MS_PER_DAY + _uniform_int(rng, np.full(n, 7 * 3_600_000),
                                                                   np.full(n, 23 * 3_600_000)),
                                  pday * MS_PER_DAY + _uniform_int(rng, np.full(n, 8 * 3_600_000),
                                                                   np.full(n, 17 * 3_600_000))))
        ims = np.where(pprof == PROFILE_AUTO, pday * MS_PER_DAY + 6 * 3_600_000 + rng.integers(0, 600_000, n),
                       np.where(pprof == PROFILE_ONLINE, rdate + rng.integers(60_000, 900_000, n),
                                rdate + rng.integers(5_000, 90_000, n)))
        post = np.where(pprof == PROFILE_COUNTER, ims,
                        ims + np.where(pprof == PROFILE_AUTO, rng.integers(1_800_000, 10_800_000, n),
                                       rng.integers(1_800_000, 64_800_000, n)))
        meth = method[p]
        # receipt events: NSF, clerical void, refunded duplicate, duplicate voided before posting
        old = pday < self.start_day - 30
        nsf = ensure_min(np.isin(meth, (CHECK, ACH)) & (rng.random(n) < 0.004), np.isin(meth, (CHECK, ACH)) & old,
                         2, rng)
        cvoid = ensure_min((pprof == PROFILE_COUNTER) & ~nsf & (rng.random(n) < 0.0025),
                           (pprof == PROFILE_COUNTER) & ~nsf & old, 2, rng)
        final = np.full(n, INF_MS, dtype=np.int64)
        fstatus = np.zeros(n, dtype=np.int64)
        final = np.where(nsf, (pday + 6) * MS_PER_DAY + 10 * 3_600_000 + rng.integers(0, 3_600_000, n), final)
        final = np.where(cvoid, post + rng.integers(300_000, 3_600_000, n), final)
        fstatus = np.where(nsf | cvoid, ord("V"), fstatus)
        payer = self.acc_contact_placeholder(acc[p])
        r_idx = receipts.add(acc=acc[p], rdate=rdate, ims=ims, method=meth, amount=amount[p], post=post, final=final,
                             fstatus=fstatus, payer=payer)
        pay_desc = self.desc.add_many([f"PAYMENT - {m}" if m not in ("ACH",) else "PAYMENT - ACH AUTOPAY"
                                       for m in METHODS])
        pmt_idx = lines.add(acc=acc[p], ttype=T_PMT, amount=-amount[p], desc=pay_desc[meth],
                            tdate=rdate // MS_PER_DAY, ims=post, rcpt=r_idx, refr=r_idx)
        # NSF: PMTADJ reverses the payment, a fee is charged, and the customer pays again in cash
        k = np.flatnonzero(nsf)
        lines.add(acc=acc[p][k], ttype=T_PMTADJ, amount=amount[p][k],
                  desc=np.where(meth[k] == ACH, self.desc.add("ACH RETURN R01 - NSF"),
                                self.desc.add("NSF RETURNED CHECK")),
                  tdate=final[k] // MS_PER_DAY, ims=final[k], refr=r_idx[k])
        lines.add(acc=acc[p][k], ttype=T_ADJ, amount=2500, desc=self.desc.add("NSF FEE"), tdate=final[k] // MS_PER_DAY,
                  ims=final[k] + 1000, due=final[k] // MS_PER_DAY + 10)
        self._replacement(lines, receipts, acc[p][k], final[k] + 2 * MS_PER_DAY, amount[p][k] + 2500, CASH, pay_desc,
                          payer[k])
        # clerical void: VOID line names the PMT line; the right receipt is re-entered at once
        k = np.flatnonzero(cvoid)
        lines.add(acc=acc[p][k], ttype=T_VOID, amount=amount[p][k],
                  desc=self.desc.add("VOID - PAYMENT ENTERED IN ERROR"), tdate=final[k] // MS_PER_DAY, ims=final[k],
                  voids=pmt_idx[k])
        self._replacement(lines, receipts, acc[p][k], final[k] + 60_000, amount[p][k], meth[k], pay_desc, payer[k])
        # online duplicates: refunded after posting (R), or voided while still imported (V, no PMT line)
        online = meth == ONLINE
        dup_r = ensure_min(online & (rng.random(n) < 0.002), online & old, 2, rng)
        dup_v = ensure_min(online & ~dup_r & (rng.random(n) < 0.0015), online & ~dup_r & old, 1, rng)
        for flag, status in ((dup_r, "R"), (dup_v, "V")):
            k = np.flatnonzero(flag)
            d_rdate = rdate[k] + rng.integers(30_000, 180_000, k.size)
            d_ims = ims[k] + rng.integers(1_000, 60_000, k.size)
            if status == "R":
                d_post = post[k] + 5_000
                d_final = d_post + rng.integers(2, 9, k.size) * MS_PER_DAY
            else:
                d_post = np.full(k.size, INF_MS)
                d_final = d_ims + rng.integers(600_000, 7_200_000, k.size)
            dr = receipts.add(acc=acc[p][k], rdate=d_rdate, ims=d_ims, method=ONLINE, amount=amount[p][k],
                              post=d_post, final=d_final, fstatus=ord(status), payer=payer[k])
            if status == "R":
                lines.add(acc=acc[p][k], ttype=T_PMT, amount=-amount[p][k], desc=pay_desc[ONLINE],
                          tdate=d_rdate // MS_PER_DAY, ims=d_post, rcpt=dr, refr=dr)
                lines.add(acc=acc[p][k], ttype=T_PMTADJ, amount=amount[p][k],
                          desc=self.desc.add("REFUND DUPLICATE PAYMENT"), tdate=d_final // MS_PER_DAY, ims=d_final,
                          refr=dr)
        self.pay_desc = pay_desc

    def acc_contact_placeholder(self, acc: np.ndarray) -> np.ndarray:
        """PayerName source: the holder (index into accounts) or -1 for someone else paying."""
        other = self.rng.random(acc.size) < 0.12
        return np.where(other, -1, acc)

    def _replacement(self, lines: LineBuffer, receipts: ReceiptBuffer, acc: np.ndarray, when: np.ndarray,
                     amount: np.ndarray, method: np.ndarray | int, pay_desc: np.ndarray, payer: np.ndarray) -> None:
        """A counter payment posted at once (re-entered or replacement receipt)."""
        r = receipts.add(acc=acc, rdate=when, ims=when + 20_000, method=method, amount=amount, post=when + 20_000,
                         payer=payer)
        meth = np.broadcast_to(np.asarray(method), acc.shape)
        lines.add(acc=acc, ttype=T_PMT, amount=-amount, desc=pay_desc[meth], tdate=when // MS_PER_DAY,
                  ims=when + 20_000, rcpt=r, refr=r)

    # -- 6. transfers -------------------------------------------------------------------------
    def transfers(self, lines: LineBuffer, receipts: ReceiptBuffer) -> None:
        rng = self.rng
        live = lines.column("ims") <= self.start_ms
        bal = np.rint(np.bincount(lines.column("acc")[live], weights=lines.column("amount")[live],
                                  minlength=self.A)).astype(np.int64)
        del live
        cand = self.final_unpaid & (bal > 0) & (self.final < self.start_day - 90) & (self.ctype == RES)
        xf = ensure_min(cand & (rng.random(self.A) < 0.3), cand, 1, rng)
        src = np.flatnonzero(xf)
        dest_pool = np.flatnonzero(self.active & (self.acc_first_slot >= 0) & (self.ctype == RES))
        self.contact_of_account = np.arange(self.A)  # holder identity; transfers make one person hold two
        self.xfer_pairs: list[tuple[int, int]] = []
        for s in src.tolist():
            day = int(self.final[s]) + int(rng.integers(40, 61))
            pool = dest_pool[(self.connect[dest_pool] <= day - 30) & (self.connect[dest_pool] >= self.final[s] - 60)]
            if pool.size == 0:
                pool = dest_pool[self.connect[dest_pool] <= day - 30]
            if pool.size == 0 or day > self.start_day - 5:
                continue
            d = int(rng.choice(pool))
            amt = int(bal[s])
            t_ms = day * MS_PER_DAY + 10 * 3_600_000 + int(rng.integers(0, 3_600_000))
            lines.add(acc=[s], ttype=T_XFER, amount=-amt, desc=self.desc.add(f"TRANSFER TO {self.cust_numbers[d]}"),
                      tdate=day, ims=t_ms, refv=self.refs.add(self.cust_numbers[d]))
            lines.add(acc=[d], ttype=T_XFER, amount=amt, desc=self.desc.add(f"TRANSFER FROM {self.cust_numbers[s]}"),
                      tdate=day, ims=t_ms + 1, due=day + 20, refv=self.refs.add(self.cust_numbers[s]))
            pay = t_ms + int(rng.integers(5, 20)) * MS_PER_DAY
            self._replacement(lines, receipts, np.array([d]), np.array([pay]), np.array([amt]), CHECK, self.pay_desc,
                              np.array([d]))
            self.contact_of_account[d] = self.contact_of_account[s]
            self.xfer_pairs.append((s, d))

    # -- 5b. other receipts ---------------------------------------------------------------------
    def other_receipts(self, receipts: ReceiptBuffer) -> None:
        rng = self.rng
        n = max(6, int(receipts.size * 0.04))
        day = rng.integers(self.h0, self.start_day + 1, size=n)
        rdate = day * MS_PER_DAY + rng.integers(8 * 3_600_000, 17 * 3_600_000, size=n)
        fee = rng.integers(0, len(N.OTHER_RECEIPT_FEES), size=n)
        amount = np.array([f for _, f in N.OTHER_RECEIPT_FEES])[fee] * rng.integers(1, 3, size=n)
        ims = rdate + rng.integers(5_000, 120_000, size=n)
        void = ensure_min(rng.random(n) < 0.03, day < self.start_day - 10, 1, rng)
        receipts.add(acc=-1, rdate=rdate, ims=ims, method=rng.choice([CASH, CHECK, CARD, ONLINE], size=n),
                     amount=amount, post=ims, final=np.where(void, ims + 3_600_000, INF_MS),
                     fstatus=np.where(void, ord("V"), 0), payer=-1)

    def pending_receipts(self, receipts: ReceiptBuffer) -> None:
        """Online payments of the last hours, imported but not yet posted (Status U)."""
        rng = self.rng
        pool = np.flatnonzero(self.active & (self.acc_first_slot >= 0))
        k = min(pool.size, max(2, int(pool.size * 0.01)))
        acc = np.sort(rng.choice(pool, size=k, replace=False))
        rdate = self.start_ms - rng.integers(2 * 3_600_000, 10 * 3_600_000, size=k)
        receipts.add(acc=acc, rdate=rdate, ims=rdate + rng.integers(60_000, 900_000, size=k), method=ONLINE,
                     amount=_money(rng.uniform(40, 220, size=k)), payer=acc)

    # -- 7. time filter, IDs, balances ----------------------------------------------------------
    def finish_ledger(self, lines: LineBuffer, receipts: ReceiptBuffer) -> pa.Table:
        ims = lines.column("ims")
        live = ims <= self.start_ms
        # IDs in entry order; ties keep generation order
        order = np.flatnonzero(live)[np.argsort(ims[live], kind="stable")]
        del ims, live
        new_id = np.full(lines.size, -1, dtype=np.int64)
        new_id[order] = np.arange(1, order.size + 1)
        ln = {}
        for f in LineBuffer.FIELDS:  # field by field, freeing the buffer as we go
            ln[f] = lines.column(f)[order]
            for part in lines.parts:
                del part[f]
        lines.parts.clear()
        del order
        self.make_balances(ln)
        voids = np.where(ln["voids"] >= 0, new_id[np.maximum(ln["voids"], 0)], -1)
        if (voids == 0).any() or ((ln["voids"] >= 0) & (voids < 0)).any():
            raise AssertionError("a VOID line names a line that does not exist")
        # receipts: exist once entered; status at the clock
        r = receipts.arrays()
        r_live = r["ims"] <= self.start_ms
        r_order = np.flatnonzero(r_live)[np.argsort(r["ims"][r_live], kind="stable")]
        r_id = np.full(receipts.size, -1, dtype=np.int64)
        r_id[r_order] = np.arange(1, r_order.size + 1)
        rr = {f: v[r_order] for f, v in r.items()}
        del r
        s = self.start_ms
        status = np.where(rr["final"] <= s, rr["fstatus"], np.where(rr["post"] <= s, ord("P"), ord("U")))
        status_ms = np.where(rr["final"] <= s, rr["final"], np.where(rr["post"] <= s, rr["post"], rr["ims"]))
        rcpt_id = np.where(ln["rcpt"] >= 0, r_id[np.maximum(ln["rcpt"], 0)], -1)
        refr_id = np.where(ln["refr"] >= 0, r_id[np.maximum(ln["refr"], 0)], -1)
        if ((ln["rcpt"] >= 0) & (rcpt_id < 0)).any():
            raise AssertionError("a PMT line names a receipt that does not exist")
        # receipt numbers / confirmation numbers
        nr = r_order.size
        rnum = pc.binary_join_element_wise("CR", pc.utf8_lpad(pc.cast(pa.array(np.arange(1, nr + 1)), pa.string()),
                                                              8, "0"), "")
        conf_need = np.isin(rr["method"], (ONLINE, CARD)) & (rr["acc"] >= 0)
        conf_vals = self.rng.integers(0, 2**48, size=nr)
        conf = [f"PP{v:012X}" if need else None for v, need in zip(conf_vals.tolist(), conf_need.tolist(), strict=True)]
        self.receipt_payer = rr["payer"]
        self.receipt_acc = rr["acc"]
        rcpt = {
            "ReceiptID": pa.array(np.arange(1, nr + 1), pa.int64()),
            "ReceiptNumber": rnum,
            "CustomerID": pa.array(rr["acc"] + 1, pa.int32(), mask=rr["acc"] < 0),
            "ReceiptDate": pa.array(rr["rdate"], pa.timestamp("ms")),
            "InputDate": pa.array(rr["ims"], pa.timestamp("ms")),
            "PaymentMethod": pa.DictionaryArray.from_arrays(pa.array(rr["method"].astype(np.int32)),
                                                            pa.array(list(METHODS))),
            "Amount": pa.array(rr["amount"], pa.int64()),
            "Status": pa.DictionaryArray.from_arrays(
                pa.array(np.searchsorted(np.array([ord(c) for c in "PRUV"]), status).astype(np.int32)),
                pa.array(list("PRUV"))),
            "StatusDate": pa.array(status_ms, pa.timestamp("ms")),
            "ConfirmationNumber": pa.array(conf, pa.string()),
            # PayerName is filled once contacts exist (see make_contacts)
        }
        self.rcpt_cols = rcpt
        # ReferenceNumber: receipt number, other vocabulary, or NULL
        n_refs = len(self.refs.items)
        ref_idx = np.where(ln["refv"] >= 0, ln["refv"], np.where(refr_id > 0, n_refs + refr_id - 1, -1))
        ref = pa.DictionaryArray.from_arrays(pa.array(ref_idx.astype(np.int32), mask=ref_idx < 0),
                                             pa.concat_arrays([pa.array(self.refs.items, pa.string()), rnum]))
        period_vocab = [f"{self.month_year[m]}-{self.month_moy[m]:02d}" for m in range(self.n_months + 2)]
        month_idx = self.period_of(ln["tdate"])
        n_lines = ln["acc"].size
        ledger = pa.table({
            "TransactionID": pa.array(np.arange(1, n_lines + 1), pa.int64()),
            "CustomerID": pa.array(ln["acc"] + 1, pa.int32()),
            "TransactionType": pa.DictionaryArray.from_arrays(pa.array(ln["ttype"].astype(np.int32)),
                                                              pa.array(list(TXN_TYPES))),
            "ServiceCode": pa.DictionaryArray.from_arrays(pa.array(ln["svc"].astype(np.int32), mask=ln["svc"] < 0),
                                                          pa.array(list(SERVICES))),
            "Description": pa.DictionaryArray.from_arrays(pa.array(ln["desc"].astype(np.int32)),
                                                          pa.array(self.desc.items)),
            "Amount": pa.array(ln["amount"], pa.int64()),
            "TransactionDate": pa.array(ln["tdate"].astype(np.int32), pa.date32()),
            "InputDate": pa.array(ln["ims"], pa.timestamp("ms")),
            "DueDate": pa.array(np.where(ln["due"] == NULL_DAY, 0, ln["due"]).astype(np.int32), pa.date32(),
                                mask=ln["due"] == NULL_DAY),
            "Period": pa.DictionaryArray.from_arrays(pa.array(month_idx.astype(np.int32)), pa.array(period_vocab)),
            "ReferenceNumber": ref,
            "ReceiptID": pa.array(rcpt_id, pa.int64(), mask=rcpt_id < 0),
            "VoidsTransactionID": pa.array(voids, pa.int64(), mask=voids < 0),
        })
        return ledger

    def make_balances(self, ln: dict[str, np.ndarray]) -> None:
        A = self.A
        lines = Lines(ln["acc"] + 1, np.arange(1, ln["acc"].size + 1), ln["ttype"], ln["amount"], ln["tdate"],
                      ln["due"])
        nightly = min(self.start_ms, self.start_day * MS_PER_DAY + 90 * 60_000)
        last_input = np.full(A, 0, dtype=np.int64)
        np.maximum.at(last_input, ln["acc"], ln["ims"])
        asof = np.maximum(np.maximum(last_input, nightly),
                          np.minimum(self.connect * MS_PER_DAY + 8 * 3_600_000, self.start_ms))
        bal = compute_balances(lines, np.arange(1, A + 1), asof // MS_PER_DAY)
        self.balances = bal
        self.balance_asof = asof
        # statuses follow the balances
        settled_old = (bal.total == 0) & (self.final < self.start_day - 120)
        status = np.where(self.vacancy, "V", np.where(~self.has_final, "A", np.where(settled_old, "I", "F")))
        self.status = status
        self.collection = np.where((status == "F") & (bal.total > 0) & (self.final < self.start_day - 90), "COLL",
                                   np.where((status == "A") & bal.delinquent, "PEND", None))

        def money(x: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
            return pa.array(x, pa.int64(), mask=null)

        def day(x: np.ndarray) -> pa.Array:
            null = x == NULL_DAY
            return pa.array(np.where(null, 0, x).astype(np.int32), pa.date32(), mask=null)

        self.balance_table = pa.table({
            "CustomerID": pa.array(np.arange(1, A + 1), pa.int32()),
            "AsOf": pa.array(asof, pa.timestamp("ms")),
            "BalanceCurrent": money(bal.buckets[:, 0]),
            "Balance30": money(bal.buckets[:, 1]),
            "Balance60": money(bal.buckets[:, 2]),
            "Balance90": money(bal.buckets[:, 3]),
            "Balance120": money(bal.buckets[:, 4]),
            "TotalBalance": money(bal.total),
            "LastBillDate": day(bal.last_bill_day),
            "LastBillAmount": money(bal.last_bill_amount, bal.last_bill_day == NULL_DAY),
            "DueDate": day(bal.due_day),
            "LastPaymentDate": day(bal.last_pay_day),
            "LastPaymentAmount": money(bal.last_pay_amount, bal.last_pay_day == NULL_DAY),
            "Delinquent": pa.array(np.where(bal.delinquent, "Y", "N").tolist(), pa.string()),
        })

    # -- contacts -------------------------------------------------------------------------------
    def make_contacts(self) -> None:
        """Holders, landlords, the city itself, employees, vendors and land owners."""
        rng = self.rng
        A = self.A
        c_type: list[str] = []
        c_first: list[str | None] = []
        c_middle: list[str | None] = []
        c_last: list[str | None] = []
        c_bus: list[str | None] = []
        c_created: list[int] = []
        c_home: list[int] = []  # location index for the mail address, or -1 (elsewhere)
        c_note: list[str | None] = []

        def person(created: int, home: int, note: str | None = None) -> int:
            c_type.append("P")
            c_first.append(N.FIRST_NAMES[int(rng.integers(len(N.FIRST_NAMES)))])
            r = rng.random()
            c_middle.append(None if r < 0.45 else (N.MIDDLE_NAMES[int(rng.integers(len(N.MIDDLE_NAMES)))]
                                                   if r < 0.7 else chr(65 + int(rng.integers(26)))))
            c_last.append(N.LAST_NAMES[int(rng.integers(len(N.LAST_NAMES)))])
            c_bus.append(None)
            c_created.append(created)
            c_home.append(home)
            c_note.append(note)
            return len(c_type) - 1

        def business(name: str, created: int, home: int, note: str | None = None) -> int:
            c_type.append("B")
            c_first.append(None)
            c_middle.append(None)
            c_last.append(None)
            c_bus.append(name[:100])
            c_created.append(created)
            c_home.append(home)
            c_note.append(note)
            return len(c_type) - 1

        def business_name() -> str:
            suffix = N.BUSINESS_SUFFIX[int(rng.integers(len(N.BUSINESS_SUFFIX)))]
            base = (f"{N.BUSINESS_FIRST[int(rng.integers(len(N.BUSINESS_FIRST)))]} "
                    f"{N.BUSINESS_KIND[int(rng.integers(len(N.BUSINESS_KIND)))]}")
            return f"{base} {suffix}".strip()

        # the city itself holds every GOV account (consolidated billing under one master)
        gov_contact = business(self.org.name, int(self.h0 - 3650), -1, "Municipal accounts - do not shut off")
        landlord_contact = []
        for _i in range(self.n_landlords):
            if rng.random() < 0.45:
                nm = (f"{N.BUSINESS_FIRST[int(rng.integers(len(N.BUSINESS_FIRST)))]} "
                      f"{N.LANDLORD_KIND[int(rng.integers(len(N.LANDLORD_KIND)))]} LLC")
                landlord_contact.append(business(nm, int(rng.integers(self.h0 - 3650, self.h0)), -1))
            else:
                landlord_contact.append(person(int(rng.integers(self.h0 - 3650, self.h0)), -1))
        holder = np.full(A, -1, dtype=np.int64)
        for a in range(A):
            if self.contact_of_account[a] != a:
                continue  # the same person as an earlier account (transfer)
            t = int(self.ctype[a])
            loc = int(self.acc_loc[a])
            created = int(self.connect[a])
            if self.vacancy[a]:
                holder[a] = landlord_contact[int(self.landlord_of_loc[loc])]
            elif t == GOV:
                holder[a] = gov_contact
            elif t == RES:
                holder[a] = (person(created, loc) if rng.random() > 0.03 else business(
                    f"{N.LAST_NAMES[int(rng.integers(len(N.LAST_NAMES)))]} "
                    f"{N.TRUST_KIND[int(rng.integers(len(N.TRUST_KIND)))]}", created, loc))
            elif t == IRR:
                holder[a] = (business(f"{N.BUSINESS_FIRST[int(rng.integers(len(N.BUSINESS_FIRST)))]} "
                                      f"{N.HOA_KIND[int(rng.integers(len(N.HOA_KIND)))]}", created, -1)
                             if rng.random() < 0.7 else person(created, loc))
            else:
                holder[a] = business(business_name(), created, loc)
        holder = holder[self.contact_of_account]
        # consolidated billing: GOV accounts under the first active one; business chains of three
        master = np.full(A, -1, dtype=np.int64)
        gov_active = np.flatnonzero((self.ctype == GOV) & self.active)
        if gov_active.size >= 2:
            master[gov_active[1:]] = gov_active[0]
        com_active = np.flatnonzero((self.ctype == COM) & self.active)
        com_active = com_active[rng.permutation(com_active.size)]
        n_chains = max(1, com_active.size // 30) if com_active.size >= 3 else 0
        for ch in range(n_chains):
            members = com_active[ch * 3: ch * 3 + 3]
            if members.size < 3:
                break
            head = members.min()
            for m in members:
                holder[m] = holder[head]
                if m != head:
                    master[m] = head
        self.master = master
        landlord = np.where(self.rental[self.acc_loc] & ~self.vacancy,
                            np.array(landlord_contact)[np.maximum(self.landlord_of_loc[self.acc_loc], 0)], -1)
        self.landlord = landlord
        # employees, vendors: contacts no account points to
        n_emp = max(3, int(A * 0.03))
        for _ in range(n_emp):
            person(int(rng.integers(self.h0 - 3650, self.start_day)), -1,
                   N.EMPLOYEE_NOTE.format(n=int(rng.integers(1, 99999))))
        for _ in range(max(3, int(A * 0.015))):
            business(business_name(), int(rng.integers(self.h0 - 3650, self.start_day)), -1,
                     N.VENDOR_NOTE.format(n=int(rng.integers(1, 99999))))
        # owners of bare land (assessments only)
        self.land_owner_start = len(c_type)
        n_land = max(2, int(self.L * 0.02))
        for _ in range(n_land):
            person(int(rng.integers(self.h0 - 3650, self.start_day)), -1)
        self.n_land_owners = n_land
        # ContactID follows creation
        created = np.array(c_created)
        order = np.argsort(created, kind="stable")
        cid = np.empty(len(order), dtype=np.int64)
        cid[order] = np.arange(1, len(order) + 1)
        self.contact_id = cid
        self.holder = holder
        self.contacts = {"type": c_type, "first": c_first, "middle": c_middle, "last": c_last, "bus": c_bus,
                         "home": c_home, "note": c_note, "order": order}
        self.display = [b if b else f"{f} {ln}" for f, ln, b in zip(c_first, c_last, c_bus, strict=True)]
        # PayerName: the holder's name or someone else's (dictionary: contacts, then first x last names)
        pay_acc = self.receipt_payer
        nf, nl = len(N.FIRST_NAMES), len(N.LAST_NAMES)
        other = rng.integers(0, nf, size=pay_acc.size) * nl + rng.integers(0, nl, size=pay_acc.size)
        idx = np.where(pay_acc >= 0, holder[np.maximum(pay_acc, 0)], len(self.display) + other)
        vocab = self.display + [f"{f} {ln}" for f in N.FIRST_NAMES for ln in N.LAST_NAMES]
        self.rcpt_cols["PayerName"] = pa.DictionaryArray.from_arrays(pa.array(idx.astype(np.int32)),
                                                                     pa.array(vocab, pa.string()))

    def contact_table(self) -> pa.Table:
        rng = self.rng
        c = self.contacts
        n = len(c["type"])
        order = c["order"]
        is_p = np.array([t == "P" for t in c["type"]])
        other_town = rng.integers(0, len(N.OTHER_TOWNS), size=n)
        away = rng.random(n) < 0.06
        home = np.array(c["home"])
        local_house = rng.integers(10, 3000, size=n)
        local_street = rng.integers(0, len(N.NAMED_STREETS), size=n)
        addr1: list[str | None] = []
        addr2: list[str | None] = []
        city: list[str | None] = []
        state: list[str | None] = []
        zips: list[str | None] = []
        for i in range(n):
            h = int(home[i])
            if h >= 0 and not away[i]:
                addr1.append(f"{self.loc_house[h]} {self.loc_street[h]}"[:60])
                addr2.append(self.loc_unit[h])
                city.append(self.town)
                state.append(self.state)
                zips.append(self.loc_zip[h])
            elif away[i] or (h < 0 and rng.random() < 0.4):
                tname, tstate, tzip = N.OTHER_TOWNS[int(other_town[i])]
                addr1.append(f"{int(local_house[i])} {N.NAMED_STREETS[int(local_street[i])]}")
                addr2.append(None)
                city.append(tname)
                state.append(tstate)
                zips.append(f"{tzip}{int(rng.integers(0, 100)):02d}")
            else:
                po = rng.random() < 0.2
                addr1.append(f"PO BOX {int(rng.integers(1, 2000))}" if po else
                             f"{int(local_house[i])} {N.NAMED_STREETS[int(local_street[i])]}")
                addr2.append(None)
                city.append(self.town)
                state.append(self.state)
                zips.append(self.loc_zip[int(rng.integers(0, self.L))])
        email: list[str | None] = []
        phone: list[str | None] = []
        ssn: list[str | None] = []
        dl: list[str | None] = []
        e_r, p_r, s_r, d_r = rng.random(n), rng.random(n), rng.random(n), rng.random(n)
        nums = rng.integers(0, 10**9, size=n)
        for i in range(n):
            if is_p[i]:
                slug = f"{c['first'][i]}.{c['last'][i]}".lower().replace(" ", "").replace("'", "")
                email.append(f"{slug}{int(nums[i]) % 100}@{N.EMAIL_DOMAINS[int(nums[i]) % len(N.EMAIL_DOMAINS)]}"
                             if e_r[i] < 0.6 else None)
                v = int(nums[i])
                ssn.append(f"9{v % 100:02d}-{(v // 100) % 100:02d}-{(v // 10000) % 10000:04d}"
                           if s_r[i] < 0.7 else None)
                dl.append(f"{int(nums[i]):09d}" if d_r[i] < 0.6 else None)
            else:
                slug = "".join(ch for ch in (c["bus"][i] or "").lower() if ch.isalnum())[:30]
                email.append(f"billing@{slug}.com" if e_r[i] < 0.4 else None)
                ssn.append(None)
                dl.append(None)
            phone.append(f"{self.area_codes[int(nums[i]) % len(self.area_codes)]}-{200 + int(nums[i]) % 800:03d}-"
                         f"{(int(nums[i]) // 1000) % 10000:04d}" if p_r[i] < 0.85 else None)
        birth_day = rng.integers(day_of(date(1930, 1, 1)), day_of(date(2005, 12, 31)), size=n)
        has_birth = is_p & (rng.random(n) < 0.75)
        note_r = rng.random(n)
        notes = [c["note"][i] if c["note"][i] else (N.CONTACT_NOTES[int(nums[i]) % len(N.CONTACT_NOTES)]
                                                    if note_r[i] < 0.2 else None) for i in range(n)]

        def take(values: list) -> list:
            return [values[i] for i in order.tolist()]

        return pa.table({
            "ContactID": pa.array(np.arange(1, n + 1), pa.int32()),
            "ContactType": take(c["type"]),
            "FirstName": pa.array(take(c["first"]), pa.string()),
            "MiddleName": pa.array(take(c["middle"]), pa.string()),
            "LastName": pa.array(take(c["last"]), pa.string()),
            "BusinessName": pa.array(take(c["bus"]), pa.string()),
            "MailAddress1": pa.array(take(addr1), pa.string()),
            "MailAddress2": pa.array(take(addr2), pa.string()),
            "MailCity": pa.array(take(city), pa.string()),
            "MailState": pa.array(take(state), pa.string()),
            "MailZip": pa.array(take(zips), pa.string()),
            "Email": pa.array(take(email), pa.string()),
            "Phone": pa.array(take(phone), pa.string()),
            "SSN": pa.array(take(ssn), pa.string()),
            "BirthDate": pa.array(birth_day[order].astype(np.int32), pa.date32(), mask=~has_birth[order]),
            "DriversLicense": pa.array(take(dl), pa.string()),
            "Notes": pa.array(take(notes), pa.string()),
        })

    def location_table(self) -> pa.Table:
        no_route = self.rng.random(self.L) < 0.01
        return pa.table({
            "LocationID": pa.array(np.arange(1, self.L + 1), pa.int32()),
            "HouseNumber": self.loc_house,
            "StreetName": self.loc_street,
            "Unit": pa.array(self.loc_unit, pa.string()),
            "City": [self.town] * self.L,
            "State": [self.state] * self.L,
            "Zip": self.loc_zip,
            "ParcelNumber": pa.array(self.loc_parcel, pa.string()),
            "District": pa.array(self.loc_district, pa.string()),
            "Cycle": pa.array(self.cycle, pa.int16(), mask=no_route),
            "Route": pa.array(self.route, pa.int16(), mask=no_route),
        })

    def customer_table(self) -> pa.Table:
        rng = self.rng
        A = self.A
        cid_of_contact = self.contact_id
        online = np.where(self.status == "V", False,
                          rng.random(A) < np.where(self.status == "I", 0.3, 0.65))
        online = ensure_min(online, self.status == "A", 1, rng)
        online = ~ensure_min(~online, self.status == "A", 1, rng)
        autopay = self.profile == PROFILE_AUTO
        routing = aba_routing(rng, A)
        acct = rng.integers(10**7, 10**12, size=A)
        rating = np.array(["A", "B", "C"])[np.searchsorted([0.02, 0.1], self.late_p)]
        rating = np.where(self.delinquent | self.final_unpaid, "D", rating)
        rating_null = rng.random(A) < 0.25
        coll = self.collection
        return pa.table({
            "CustomerID": pa.array(np.arange(1, A + 1), pa.int32()),
            "CustomerNumber": pa.array(self.cust_numbers, pa.string()),
            "LocationID": pa.array(self.acc_loc + 1, pa.int32()),
            "ContactID": pa.array(cid_of_contact[self.holder], pa.int32()),
            "LandlordContactID": pa.array(np.where(self.landlord >= 0, cid_of_contact[np.maximum(self.landlord, 0)], 0),
                                          pa.int32(), mask=self.landlord < 0),
            "MasterCustomerID": pa.array(self.master + 1, pa.int32(), mask=self.master < 0),
            "CustomerType": pa.DictionaryArray.from_arrays(pa.array(self.ctype.astype(np.int32)),
                                                           pa.array(list(CUSTOMER_TYPES))),
            "Status": pa.array(self.status.tolist(), pa.string()),
            "OnlineAccess": pa.array(np.where(online, "Y", "N").tolist(), pa.string()),
            "ConnectDate": pa.array(self.connect.astype(np.int32), pa.date32()),
            "FinalBillDate": pa.array(np.where(self.has_final, self.final, 0).astype(np.int32), pa.date32(),
                                      mask=~self.has_final),
            "DirectPayRouting": pa.array([r if a else None for r, a in zip(routing, autopay.tolist(), strict=True)],
                                         pa.string()),
            "DirectPayAccount": pa.array([str(v) if a else None for v, a in zip(acct.tolist(), autopay.tolist(),
                                                                                   strict=True)], pa.string()),
            "CreditRating": pa.array(rating.tolist(), pa.string(), mask=rating_null),
            "CollectionCode": pa.array(coll.tolist(), pa.string()),
        })

    def assessment_table(self) -> pa.Table:
        rng = self.rng
        L = self.L
        # which location's current holder or landlord owns the parcel
        current = np.full(L, -1, dtype=np.int64)
        last_acc = np.flatnonzero(~self.has_final)
        current[self.acc_loc[last_acc]] = last_acc
        has_parcel = np.array([p is not None for p in self.loc_parcel])
        pick = ensure_min((rng.random(L) < 0.08) & has_parcel & (current >= 0), has_parcel & (current >= 0), 3, rng)
        locs = np.flatnonzero(pick)
        owner_idx = np.where(self.landlord_of_loc[locs] >= 0, -1, self.holder[current[locs]])
        rows_loc: list[int | None] = []
        rows_owner: list[int] = []
        rows_parcel: list[str] = []
        for loc, own in zip(locs.tolist(), owner_idx.tolist(), strict=True):
            if own < 0:
                acc = current[loc]
                own = int(self.holder[acc]) if self.landlord[acc] < 0 else int(self.landlord[acc])
            rows_loc.append(loc + 1)
            rows_owner.append(int(self.contact_id[own]))
            rows_parcel.append(self.loc_parcel[loc])
        for j in range(self.n_land_owners):  # bare land: no service address
            rows_loc.append(None)
            rows_owner.append(int(self.contact_id[self.land_owner_start + j]))
            rows_parcel.append(f"{int(rng.integers(40, 60)):02d}-{int(rng.integers(0, 1000)):03d}-"
                               f"{int(rng.integers(0, 10000)):04d}")
        n = len(rows_loc)
        dist = rng.integers(0, len(ASSESSMENT_DISTRICTS), size=n)
        levy_years = rng.integers(0, 16, size=len(ASSESSMENT_DISTRICTS))[dist]
        term = rng.integers(10, 21, size=len(ASSESSMENT_DISTRICTS))[dist]
        original = _money(rng.uniform(2000, 25000, size=n))
        install = np.rint(original / term).astype(np.int64)
        paid = np.minimum(levy_years, term)
        principal = np.maximum(original - install * paid, 0)
        early = rng.random(n) < 0.08
        principal = np.where(early, 0, principal)
        principal = np.where(ensure_min(principal == 0, np.ones(n, dtype=bool), 1, rng), 0, principal)
        status = np.where(principal == 0, "P", "A")
        inactive = ensure_min(rng.random(n) < 0.03, status == "A", 1, rng)
        status = np.where(inactive, "I", status)
        due_year = self.start.year if (self.start.month, self.start.day) <= (11, 30) else self.start.year + 1
        next_due = day_of(date(due_year, 11, 30))
        return pa.table({
            "AssessmentID": pa.array(np.arange(1, n + 1), pa.int32()),
            "ParcelNumber": rows_parcel,
            "OwnerContactID": pa.array(rows_owner, pa.int32()),
            "LocationID": pa.array(rows_loc, pa.int32()),
            "District": [ASSESSMENT_DISTRICTS[d][0] for d in dist.tolist()],
            "Description": [ASSESSMENT_DISTRICTS[d][1] for d in dist.tolist()],
            "OriginalAmount": pa.array(original, pa.int64()),
            "PrincipalBalance": pa.array(principal, pa.int64()),
            "InstallmentAmount": pa.array(install, pa.int64()),
            "NextDueDate": pa.array(np.full(n, next_due, dtype=np.int32), pa.date32(), mask=status != "A"),
            "Status": status.tolist(),
        })


def generate(preset: Preset, seed: int, org: Org, start: datetime) -> Built:
    """Build a whole community (see the module docstring for what it contains)."""
    g = Generator(preset, seed, org, start)
    built = g.run()
    built.tables["CR_Receipt"] = pa.table(g.rcpt_cols)
    return built
