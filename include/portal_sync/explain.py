""""Why isn't this customer in the portal?": one verdict, in support's words, from the sync's own records.

A resident calls: they typed their account number into the portal search and found nothing.
Support staff answer from what the sync knows, following the support article "Why a customer
may not appear in the portal search", one section per verdict:

=====================  ===================================================================
verdict                what support tells the resident / what to fix
=====================  ===================================================================
found_visible          the account is there and searchable: check the community and number
not_synced_yet         not in the portal and nothing refused: new in Caselle since the last
                       accounts publish (the next run is due at ...), or a wrong number
not_eligible           in the portal but hidden: its status is not one the community shows,
                       or the city turned online access off (Caselle, OnlineAccess)
refused                Caselle's record breaks a data-quality rule: it waits in quarantine
                       (rule and reason, since which run and when) and publishes on the
                       first run after the fix
deleted                deleted in Caselle: the portal removed it (when)
renumbered             the typed number is an old one: the account now has another number
data_set_not_enabled   the community does not sync accounts to the portal at all
unknown_community      no such community in the configuration
invalid_number         the typed text holds no digit
=====================  ===================================================================

Residents type numbers every way (``010-00123-00``, ``0100012300``, ``010 00123 00``): the
look-up compares digits only (``portal.accounts.account_number_digits``). Old numbers come
from the account-number history (filled by a trigger whenever a publish changes a number).
A refused account that never reached the portal is known only by its CustomerID; its
number is found when a finding's reason names it (``CustomerNumber=...``), otherwise the
answer says which refused CustomerIDs are waiting so support can look them up in Caselle.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from croniter import croniter

from portal_sync.config import Community, LoadedConfig
from portal_sync.freshness import DUE_SLACK, cadence
from portal_sync.reporting.format import local_time
from portal_sync.store import reads
from portal_sync.store.runs import last_published

VERDICTS = (
    "found_visible", "not_synced_yet", "not_eligible", "refused", "deleted", "renumbered",
    "data_set_not_enabled", "unknown_community", "invalid_number",
)
_REASON_NUMBER = r"CustomerNumber=(\S+)"  # how validate.py names the number in a finding's reason
_MAX_LISTED = 10  # refused CustomerIDs listed when the number itself is unknown
_NUMBER_IN_REASON = re.compile(r"CustomerNumber\s*[=:]?\s*'?([^\s';,)]+)")  # a number a reason names, any wording
_MAX_SEARCHED = 500  # quarantined accounts whose reasons are searched for the typed text


@dataclass(frozen=True)
class Explanation:
    """The answer: a stable ``verdict`` code for tools and tests, a ``message`` for people, and the
    facts it rests on (``account``: the portal row, ``details``: dates, rules, numbers)."""

    verdict: str
    message: str
    community: str
    typed: str
    digits: str
    account: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def normalize_number(typed: str) -> str:
    """Digits only: how residents may type it and how the portal indexes it (account_number_digits)."""
    return re.sub(r"[^0-9]", "", typed or "")


def next_run_due(community: Community, dataset: str, published: datetime | None, now: datetime,
                 zone: str | None = None) -> datetime:
    """When the next run that syncs ``dataset`` starts: the first tick of the community's schedule (runs
    start at the end of their data interval) at which the data set's cadence has passed."""
    tz = ZoneInfo(zone or community.time_zone or "UTC")
    earliest = now
    if published is not None:
        earliest = max(now, published + cadence(community, dataset) - DUE_SLACK)
    ticks = croniter(community.effective_schedule, (earliest - timedelta(seconds=1)).astimezone(tz))
    return ticks.get_next(datetime).astimezone(UTC)


def explain(portal_url: str, community_code: str, account_number: str, config: LoadedConfig,
            *, now: datetime | None = None) -> Explanation:
    """Answer "why isn't account ``account_number`` of ``community_code`` in the portal?"."""
    code = (community_code or "").strip().upper()
    typed = (account_number or "").strip()
    digits = normalize_number(typed)
    community = next((c for c in config.communities if c.code == code), None)
    if community is None:
        known = ", ".join(c.code for c in config.communities) or "none"
        return Explanation("unknown_community",
                           f"There is no community {code or '(empty)'!r} in the sync configuration (known: {known}).",
                           code, typed, digits)
    if "accounts" not in community.datasets:
        return Explanation(
            "data_set_not_enabled",
            f"{code} does not sync accounts to the portal (it syncs {', '.join(community.datasets)}), so no "
            "account of this community can be found in the portal search. Enable the 'accounts' data set "
            "for the community in the communities file to publish them.",
            code, typed, digits, details={"datasets": list(community.datasets)},
        )
    if not digits:
        return Explanation("invalid_number",
                           f"{typed!r} holds no digit: an account number is digits, formatted or not "
                           "(e.g. 010-00123-00 or 0100012300).", code, typed, digits)
    with reads.connect(portal_url) as conn:
        return explain_with(conn, community, typed, now=now or datetime.now(UTC))


def explain_with(conn: psycopg.Connection, community: Community, typed: str, *, now: datetime) -> Explanation:
    """The verdict for an enabled community and a number with digits, read over ``conn``."""
    code = community.code
    digits = normalize_number(typed)
    zone = _zone(conn, community)
    matches = reads.accounts_by_digits(conn, code, digits)
    published = last_published(conn, code).get("accounts")
    due = next_run_due(community, "accounts", published, now, zone)
    facts: dict[str, Any] = {"time_zone": zone, "accounts_last_published_at": published, "next_run_due_at": due}
    if len(matches) > 1:
        facts["other_matches"] = [m["account_number"] for m in matches[1:]]
    if matches:
        return _explain_found(conn, community, typed, digits, matches[0], zone, facts)

    renumbered = reads.renumbering(conn, code, digits)
    if renumbered:
        account = renumbered
        when = _local(account["changed_at"], zone)
        now_number = account["account_number"]
        state = "" if account["portal_visible"] and account["deleted_at"] is None else (
            " Note: under its new number the account is not visible in the portal either; "
            f"ask again with {now_number} for the reason.")
        return Explanation(
            "renumbered",
            f"{account['old_number']} is an old number: the account (CustomerID {account['account_id']}) was "
            f"renumbered in Caselle and is now {now_number} (changed in the portal {when}). The resident should "
            f"search for {now_number}.{state}",
            code, typed, digits, account=_public(account),
            details={**facts, "old_number": account["old_number"], "new_number": now_number,
                     "renumbered_at": account["changed_at"]},
        )

    refusals = reads.refusals_by_number(conn, code, digits, _REASON_NUMBER)
    waiting = reads.quarantined_accounts(conn, code)
    if not refusals:
        refusals = _refusals_naming(conn, code, typed, waiting)
    if refusals:
        first = refusals[0]
        refusals = [r for r in refusals if r["row_key"] == first["row_key"]]
        rules = "; ".join(f"{r['rule']} ({r['reason']})" for r in refusals)
        since = min(r["first_seen_at"] for r in refusals)
        run = _run_at(conn, code, since)
        return Explanation(
            "refused",
            f"Account {typed} (CustomerID {first['row_key']}) is in quarantine, refused by data quality since "
            f"{_since(run, since, zone)}: {rules}. It is not in the portal until "
            "the record is fixed in Caselle; every run re-reads it and publishes it once it passes "
            f"(next run due {_local(due, zone)}).",
            code, typed, digits,
            details={**facts, "customer_id": first["row_key"], "refusals": refusals, "quarantined_since": since,
                     "quarantined_since_run": run},
        )

    hint = ""
    if waiting:
        listed = ", ".join(r["row_key"] for r in waiting[:_MAX_LISTED])
        more = f" and {len(waiting) - _MAX_LISTED} more" if len(waiting) > _MAX_LISTED else ""
        hint = (f" {len(waiting)} account record(s) refused by data quality never reached the portal "
                f"(CustomerID {listed}{more}): if the resident's account is one of them, `portal-sync runs {code}` "
                "names the rule to fix in Caselle.")
    last = f"the last accounts publish ({_local(published, zone)})" if published else "the first accounts publish"
    refused_note = ("no refused record names this number" if waiting else "no sync run refused it")
    return Explanation(
        "not_synced_yet",
        f"No account numbered {typed} is in the portal for {code}, and {refused_note}. If it was opened "
        f"in Caselle after {last}, the next run, due {_local(due, zone)}, brings it in (when the DAG "
        f"{community.dag_id} is unpaused). Otherwise check the number against Caselle.{hint}",
        code, typed, digits,
        details={**facts, "quarantined_account_ids": [r["row_key"] for r in waiting]},
    )


def _explain_found(conn: psycopg.Connection, community: Community, typed: str, digits: str,
                   account: dict[str, Any], zone: str, facts: dict[str, Any]) -> Explanation:
    code = community.code
    number = account["account_number"]
    refusals = reads.account_refusals(conn, code, str(account["account_id"]))
    hidden = not account["portal_visible"] or account["deleted_at"] is not None
    due = facts["next_run_due_at"]
    details = {**facts, "refusals": refusals}
    if refusals and hidden:
        rules = "; ".join(f"{r['rule']} ({r['reason']})" for r in refusals)
        since = min(r["first_seen_at"] for r in refusals)
        run = _run_at(conn, code, since)
        details.update(quarantined_since=since, quarantined_since_run=run)
        return Explanation(
            "refused",
            f"Account {number} (CustomerID {account['account_id']}) is in quarantine, refused by data quality since "
            f"{_since(run, since, zone)}: {rules}. The portal keeps its previous "
            f"version, which residents cannot see ({_hidden_because(community, account)}). Fix the record in "
            f"Caselle; the first run after the fix publishes it (next run due {_local(due, zone)}).",
            code, typed, digits, account=_public(account), details=details,
        )
    if account["deleted_at"] is not None:
        return Explanation(
            "deleted",
            f"Account {number} (CustomerID {account['account_id']}) was deleted in Caselle: the sync removed it "
            f"from the portal on {_local(account['deleted_at'], zone)}. If that is a mistake it must be restored "
            "in Caselle; the next run brings it back.",
            code, typed, digits, account=_public(account),
            details={**details, "deleted_at": account["deleted_at"]},
        )
    if not account["portal_visible"]:
        reasons = _ineligible(community, account)
        return Explanation(
            "not_eligible",
            f"Account {number} (CustomerID {account['account_id']}) is in the portal but hidden from residents: "
            f"{_hidden_because(community, account)}. Residents see it once this changes in Caselle (next run due "
            f"{_local(due, zone)}).",
            code, typed, digits, account=_public(account),
            details={**details, "ineligible": reasons, "visible_statuses": list(community.visible_statuses)},
        )
    note = ""
    if refusals:
        note = (f" Its latest changes in Caselle are refused by data quality since "
                f"{_local(min(r['first_seen_at'] for r in refusals), zone)} "
                f"({'; '.join(r['rule'] for r in refusals)}): the portal shows the previous version.")
    return Explanation(
        "found_visible",
        f"Account {number} (CustomerID {account['account_id']}) is in the portal for {code} and visible to residents "
        f"(status {account['status']}, online access on). If the resident still cannot find it, check that they "
        f"search in {code}'s portal and type the number as on the bill (digits only works too).{note}",
        code, typed, digits, account=_public(account), details=details,
    )


def _ineligible(community: Community, account: dict[str, Any]) -> list[str]:
    """Which of the portal's visibility conditions the account fails (portal contract: online access
    on, status among the community's visible statuses)."""
    out = []
    if account["status"] not in community.visible_statuses:
        out.append("status")
    if not account["online_access"]:
        out.append("online_access")
    return out


def _hidden_because(community: Community, account: dict[str, Any]) -> str:
    parts = []
    failing = _ineligible(community, account)
    if "status" in failing:
        parts.append(f"its status is {account['status']}, and {community.code} shows only "
                     f"{', '.join(community.visible_statuses)} accounts")
    if "online_access" in failing:
        parts.append("online access is turned off for it in Caselle (OnlineAccess = N)")
    if not parts:  # visible by today's configuration: the row predates a configuration change
        shown = ", ".join(community.visible_statuses)
        parts.append(f"it was published while the community showed other statuses (today {shown});"
                     " a reconciliation run (conf {\"reconcile\": true}) applies today's setting")
    return " and ".join(parts)


def _refusals_naming(conn: psycopg.Connection, code: str, typed: str,
                     waiting: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Quarantine entries of an account that never reached the portal whose reason names the number: as
    typed (a number holding markup or spaces, ``<b>1-001</b>``, is written into a reason verbatim), or after
    ``CustomerNumber`` in any of the rules' wordings (``CustomerNumber=...``, ``CustomerNumber ... does not
    match``, quoted or not) with the same digits. The reason's wording belongs to the rules, not to explain."""
    needle, digits = typed.strip(), normalize_number(typed)
    if not digits:
        return []
    for row in waiting[:_MAX_SEARCHED]:
        entries = reads.account_refusals(conn, code, str(row["row_key"]))
        for r in entries:
            reason = r["reason"] or ""
            named = {normalize_number(m) for m in _NUMBER_IN_REASON.findall(reason)}
            if (len(needle) >= 3 and needle in reason) or digits in named:
                return entries
    return []


def _run_at(conn: psycopg.Connection, code: str, moment: datetime) -> str | None:
    """The run that was under way at ``moment`` (the last one started before it): the run that first
    put a record in quarantine."""
    started = reads.runs_between(conn, code, moment - timedelta(days=2), moment + timedelta(microseconds=1))
    return started[0]["run_key"] if started else None


def _since(run: str | None, moment: datetime, zone: str) -> str:
    return f"run {run} ({_local(moment, zone)})" if run else _local(moment, zone)


def _zone(conn: psycopg.Connection, community: Community) -> str:
    """The community's time zone: configured, else what its last run read from Caselle."""
    return community.time_zone or reads.latest_time_zone(conn, community.code) or "UTC"


def _local(value: datetime | None, zone: str) -> str:
    """Times in the community's own zone: that is the clock support and residents talk in."""
    return local_time(value, zone, seconds=False, empty="never")


def _public(account: dict[str, Any]) -> dict[str, Any]:
    """The portal row's facts that explain visibility (no address or holder: support has Caselle)."""
    keys = ("account_id", "account_number", "status", "online_access", "portal_visible", "deleted_at")
    return {k: account.get(k) for k in keys}
