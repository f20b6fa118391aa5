"""Size presets and evolve activity rates.

A preset fixes how big the generated community is; everything else (the mix of
statuses, services, payment habits) is the same at every size, so a ``tiny``
source shows every kind of row a ``city`` has. Features that would be too rare
to appear by chance in a few dozen accounts (an NSF check, a refund, a
transfer) are forced to appear at least once at every size.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class Preset:
    """How big a community to generate.

    ``accounts`` is a target for UB_Customer rows (active plus the final and
    inactive accounts of earlier occupants); the generator lands within a few
    per cent of it. ``history_years`` of ledger are generated before the clock.
    """

    name: str
    accounts: int
    history_years: int = 10
    description: str = ""


PRESETS: dict[str, Preset] = {
    "tiny": Preset("tiny", 48, description="a few dozen accounts for unit tests; builds in about a second"),
    "town": Preset("town", 3_000, description="a small town: about 3,000 accounts, about 0.5 M ledger lines"),
    "city": Preset("city", 60_000, description="a city: about 60,000 accounts, about 10 M ledger lines"),
}


@dataclass(frozen=True)
class Rates:
    """Activity applied by ``Simulator.evolve``.

    Counts are events per hour per 1,000 accounts that are active (Status A);
    the expected count of the main kinds never falls below ``floor`` per hour so
    that a ``tiny`` source still changes every few minutes. Activity is
    deliberately faster than a real city's average (it is what a billing day
    looks like), so that an incremental sync sees every change kind in a short
    run. Actual counts are Poisson draws from the step's own random stream.

    Rare events are off by default: ``*_per_day`` for the whole source,
    ``modify_data_per_hour`` and ``orphans_per_hour`` in lines per hour.
    """

    bills: float = 80.0  # customers billed (one BILL line per service)
    payments: float = 60.0  # receipts taken (counter ones post at once, online/ACH ones import as U)
    penalties: float = 6.0
    adjustments: float = 3.0
    bill_voids: float = 1.5
    receipt_voids: float = 0.5  # posted receipt voided: Status V and a VOID line
    nsf: float = 0.3  # returned check/ACH: Status V, PMTADJ and an NSF fee
    refunds: float = 0.5  # posted receipt refunded: Status R and a PMTADJ line
    pending_voids: float = 0.3  # imported (U) duplicate voided before posting
    other_receipts: float = 4.0  # receipts of other applications (CustomerID NULL)
    new_customers: float = 1.0
    move_outs: float = 1.0
    closeouts: float = 1.0  # settled final accounts become inactive (F -> I)
    online_toggles: float = 2.0
    contact_edits: float = 3.0
    location_edits: float = 0.3
    assessment_updates: float = 0.3
    aging_refresh: float = 15.0  # balance recomputed without a ledger change (AsOf moves)
    floor: float = 4.0
    late_commit_share: float = 0.05  # new lines whose InputDate is older than lines already written
    backdate_share: float = 0.10  # new lines whose TransactionDate is days before today
    post_delay_minutes: float = 30.0  # imported receipts wait at least this long before posting
    period_close_per_day: float = 0.0
    delete_inactive_per_day: float = 0.0
    renumber_per_day: float = 0.0
    modify_data_per_hour: float = 0.0
    orphans_per_hour: float = 0.0

    @classmethod
    def coerce(cls, rates: Rates | dict[str, Any] | None) -> Rates:
        """Accept a Rates, a dict of overrides, or None (the defaults)."""
        if rates is None:
            return cls()
        if isinstance(rates, Rates):
            return rates
        known = {f.name for f in fields(cls)}
        unknown = set(rates) - known
        if unknown:
            raise ValueError(f"unknown rate(s): {sorted(unknown)}")
        return replace(cls(), **{k: float(v) for k, v in rates.items()})
