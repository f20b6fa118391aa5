"""Formatting shared by every report, HTML and text: times in a zone, ages, durations, numbers,
status words and the escaping rules of the pages.

Pure functions of their arguments (``now`` is passed in where an age depends on it), so the
status page, the data-quality site, explain and the CLI say the same thing the same way.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from markupsafe import Markup

TEXT_LIMIT = 1000  # longest reason, key or error shown in the data-quality site (characters)

# A run's outcome (the run record's) as a status of the data-quality site.
_OUTCOME_STATUS = {"published": "ok", "partly_published": "refused", "failed": "failed",
                   "nothing_published": "failed", "running": "running", "abandoned": "failed"}
# Words the status page shows as a badge, and the tone of that badge.
_TONE = {
    "fresh": "ok", "STALE": "bad", "published": "ok", "failed": "bad", "passed": "ok", "warnings": "warn",
    "nothing_published": "warn", "running": "", "found_visible": "ok", "not_synced_yet": "warn",
    "not_eligible": "warn", "refused": "bad", "deleted": "bad", "renumbered": "warn", "abandoned": "bad",
    # the fleet summary's states (status.STATES)
    "stale": "bad", "ok": "ok", "never": "",
}


def zone(name: str | ZoneInfo | None) -> ZoneInfo:
    """A time zone by name; UTC when there is none or the name is unknown."""
    if isinstance(name, ZoneInfo):
        return name
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_time(value: datetime | None, tz: str | ZoneInfo | None, *, seconds: bool = True, empty: str = "") -> str:
    """A time on the community's clock (the one support, analysts and residents talk in)."""
    if value is None:
        return empty
    return value.astimezone(zone(tz)).strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z")


def utc_time(value: datetime | None, empty: str = "never") -> str:
    """A time in UTC, for text meant to be compared across communities (the CLI)."""
    return empty if value is None else f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%SZ}"


def iso_utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _span(secs: int) -> str:
    """A positive duration in the unit a person reads at a glance."""
    if secs < 90:
        return f"{secs} s"
    if secs < 90 * 60:
        return f"{secs // 60} min"
    if secs < 36 * 3600:
        return f"{secs / 3600:.1f} h"
    return f"{secs / 86400:.1f} days"


def age(value: datetime | timedelta, now: datetime | None = None) -> str:
    """How long ago."""
    delta = value if isinstance(value, timedelta) else (now or datetime.now(UTC)) - value
    secs = int(delta.total_seconds())
    return "in the future" if secs < 0 else f"{_span(secs)} ago"


def until(value: datetime, now: datetime | None = None) -> str:
    """How long until a time to come (a run due)."""
    secs = int((value - (now or datetime.now(UTC))).total_seconds())
    return "overdue" if secs < 0 else f"in {_span(secs)}"


def elapsed(start: datetime | None, end: datetime | None) -> str:
    """h:mm:ss between two times (empty when either is missing)."""
    if start is None or end is None:
        return ""
    secs = int((end - start).total_seconds())
    return f"{secs // 3600}:{secs % 3600 // 60:02d}:{secs % 60:02d}"


def duration(seconds: float | None) -> str:
    """A cadence or limit: minutes up to two hours, then hours."""
    if not seconds:
        return "-"
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def num(value: object) -> str:
    return "" if value is None else str(value)


def count(value: object) -> str:
    """A row count with thousands separators (0 for none)."""
    return f"{int(value or 0):,}"


def outcome_status(outcome: str | None) -> str:
    return _OUTCOME_STATUS.get(outcome or "", "pending")


def check_status(success: bool, severity: str) -> str:
    if success:
        return "ok"
    return {"refuse": "refused", "warn": "warned"}.get(severity, "failed")


def tone(word: str | None) -> str:
    """The badge tone (ok, warn, bad or none) of a word the status page shows."""
    return _TONE.get(word or "", "")


# --------------------------------------------------------------------------- escaping


def esc(value: object) -> str:
    """HTML-escape text for element content and quoted attributes (``'`` and ``"`` included)."""
    return html.escape("" if value is None else str(value), quote=True)


def site_esc(value: object) -> str:
    """The data-quality site's escaping: long text is cut at TEXT_LIMIT and URLs in data are defanged.

    "://" becomes "&#58;//": the browser shows the same text, but no file of the site contains
    a literal external URL, so a scan for one stays meaningful whatever the source data holds.
    """
    text = "" if value is None else str(value)
    if len(text) > TEXT_LIMIT:
        text = text[:TEXT_LIMIT] + "…"
    return esc(text).replace("://", "&#58;//")


def json_for_script(data: object) -> str:
    """JSON safe inside <script type="application/json">: no '<', '>', '&' or '/' can close or open a tag."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").replace("/", "\\/")


def page_finalize(value: object) -> Markup:
    """Every ``{{ value }}`` of a status page: escaped unless a template built it (Markup)."""
    return value if isinstance(value, Markup) else Markup(esc(value))


def site_finalize(value: object) -> Markup:
    """Every ``{{ value }}`` of the data-quality site: escaped, cut and defanged unless a template built it."""
    return value if isinstance(value, Markup) else Markup(site_esc(value))
