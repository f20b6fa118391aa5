"""Small helpers shared by the generator and the simulator: day/millisecond clocks and masks.

Vectorised code works on plain integers: a date is a day number (days since
1970-01-01) and a naive local time is milliseconds since 1970-01-01T00:00 local.
That keeps ten million ledger lines in a few int64 arrays.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np

MS_PER_DAY = 86_400_000
NULL_DAY = np.int64(-(2**40))  # "no date" inside int64 day arrays
EPOCH = date(1970, 1, 1)
EPOCH_DT = datetime(1970, 1, 1)


def day_of(d: date) -> int:
    return (d - EPOCH).days


def date_of(day: int) -> date:
    return EPOCH + timedelta(days=int(day))


def ms_of(t: datetime) -> int:
    delta = t.replace(tzinfo=None) - EPOCH_DT
    return delta.days * MS_PER_DAY + delta.seconds * 1000 + delta.microseconds // 1000


def datetime_of(ms: int) -> datetime:
    return EPOCH_DT + timedelta(milliseconds=int(ms))


def month_start(year: int, month: int, add: int = 0) -> date:
    """First day of the month ``add`` months after (year, month)."""
    index = year * 12 + (month - 1) + add
    return date(index // 12, index % 12 + 1, 1)


def weekday(days: np.ndarray) -> np.ndarray:
    """Monday = 0 ... Sunday = 6 for day numbers (1970-01-01 was a Thursday)."""
    return (days + 3) % 7


def mask_digits(mask: str) -> int:
    """Number of ``#`` positions; raises ValueError for characters other than ``#``, ``-``, ``.``."""
    bad = set(mask) - set("#-.")
    if bad or "#" not in mask:
        raise ValueError(f"customer number mask may hold only '#', '-' and '.': {mask!r}")
    if len(mask) > 20:
        raise ValueError("customer number mask longer than VARCHAR(20)")
    return mask.count("#")


def last_group_digits(mask: str) -> int:
    """Digits in the mask's last group (0 when the mask has a single group)."""
    groups = [g for g in mask.replace(".", "-").split("-")]
    return len(groups[-1]) if len(groups) > 1 else 0


def format_numbers(numbers: np.ndarray, mask: str) -> np.ndarray:
    """Format non-negative integers through the mask (vectorised); returns an object array of str."""
    n_digits = mask_digits(mask)
    numbers = np.asarray(numbers, dtype=np.int64)
    if numbers.size and (numbers.min() < 0 or numbers.max() >= 10**n_digits):
        raise ValueError("number does not fit the customer number mask")
    chars = np.frombuffer(mask.encode("ascii"), dtype=np.uint8)
    out = np.tile(chars, (numbers.size, 1))
    positions = [i for i, ch in enumerate(mask) if ch == "#"]
    rest = numbers.copy()
    for pos in reversed(positions):
        out[:, pos] = 48 + rest % 10
        rest //= 10
    return np.array(out.view(f"S{len(mask)}").ravel().astype(str), dtype=object)


def parse_number(text: str) -> int:
    """The integer behind a formatted customer number (its digits)."""
    return int("".join(ch for ch in text if ch.isdigit()))
