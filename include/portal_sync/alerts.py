"""Alerts that reach people: one notice per incident, a reminder while it lasts, one on recovery.

An incident is a community's trouble of one kind: ``sync_failed`` (runs did not publish some data
sets) or ``stale`` (data sets past their freshness limit). A run that shows the trouble opens the
incident and tells the community's recipients once; later runs showing the same trouble stay quiet
(a data set newly in trouble is news and is told; so is a reminder after ``alert_reminder_hours``);
a run that shows every data set of the incident healthy again closes it with one recovery notice.

The state lives in the portal database (sync.alerts, via ``store.alerts``), so it does not matter
which worker runs the callback, and it is taken under a row lock: two callbacks of the same trouble
at once send one notice. The notice is sent inside that transaction: when sending fails the change
is rolled back and the next run tries again, rather than an incident counting as told when nobody
was.

Airflow-free: ``portal_sync.notify`` turns Airflow callbacks into calls of :func:`after_sync` and
:func:`after_freshness`, with a ``deliver`` that sends through Airflow's SMTP provider.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from portal_sync.config import Community

if TYPE_CHECKING:  # the DAG file imports this module at parse time: the database side loads when used
    import psycopg

    from portal_sync.store.alerts import Incident

log = logging.getLogger(__name__)

SYNC_FAILED = "sync_failed"
STALE = "stale"
KINDS = (SYNC_FAILED, STALE)

SUBJECT_PREFIX = "[portal-sync]"


@dataclass(frozen=True)
class Observation:
    """What one run showed of one kind of trouble: the data sets in trouble (with the reason) and
    those shown healthy. A data set in neither (not in the run, not due) tells nothing."""

    run_id: str
    failing: dict[str, str] = field(default_factory=dict)
    healthy: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Decision:
    """What to do with the incident: ``action`` is open | grow | remind | recover | quiet | none."""

    action: str
    datasets: dict[str, str]  # the incident's data sets after this observation
    new: tuple[str, ...] = ()  # data sets that joined the incident with this observation

    @property
    def notify(self) -> bool:
        return self.action in ("open", "grow", "remind", "recover")


def decide(incident: Incident | None, seen: Observation, now: datetime,
           remind_after: timedelta | None) -> Decision:
    """The incident state machine (no I/O): how one observation changes the open incident, if any."""
    if incident is None:
        if seen.failing:
            return Decision("open", dict(seen.failing), tuple(seen.failing))
        return Decision("none", {})
    datasets = {name: reason for name, reason in incident.datasets.items()
                if name not in seen.healthy and name not in seen.failing}
    datasets.update(seen.failing)
    if not datasets:
        return Decision("recover", dict(incident.datasets))
    new = tuple(name for name in seen.failing if name not in incident.datasets)
    if new:
        return Decision("grow", datasets, new)
    if (remind_after is not None and incident.notified_at is not None
            and now - incident.notified_at >= remind_after):
        return Decision("remind", datasets)
    return Decision("quiet", datasets)


@dataclass(frozen=True)
class Notice:
    """One message to the community's people."""

    community: str
    kind: str
    action: str  # open | grow | remind | recover
    subject: str
    body: str
    datasets: tuple[str, ...]
    run_id: str


Deliver = Callable[[Notice], None]


def _names(datasets: Mapping[str, str] | tuple[str, ...]) -> str:
    return ", ".join(datasets)


def next_step(community: Community, kind: str, datasets: tuple[str, ...]) -> str:
    """What a person should do about it: the retry conf and the command that shows the history."""
    retry = json.dumps({"datasets": list(datasets)})
    if kind == SYNC_FAILED:
        return (f"Fix the cause named above, then retry those data sets: trigger DAG {community.dag_id} with "
                f"conf {retry} (or let the next scheduled run catch up: it starts at the last committed mark). "
                f"`portal-sync runs {community.code}` shows the history of the runs.")
    return (f"Find why they stopped publishing: `portal-sync runs {community.code}` shows the last runs and "
            f"their errors, `portal-sync status {community.code}` the freshness of each data set; check that "
            f"DAG {community.dag_id} is unpaused and its runs finish. To re-sync them now, trigger it with conf "
            f"{retry}.")


def compose(community: Community, kind: str, decision: Decision, run_id: str, *,
            opened_at: datetime | None = None, now: datetime | None = None) -> Notice:
    """The subject and plain-text body of the notice a decision calls for."""
    code = community.code
    order = {name: i for i, name in enumerate(community.datasets)}  # the declared order (jsonb sorts keys)
    reasons = dict(sorted(decision.datasets.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))
    names = tuple(reasons)
    what = "failed" if kind == SYNC_FAILED else "stale"
    if decision.action == "recover":
        subject = f"{SUBJECT_PREFIX} {code}: recovered: {_names(names)}"
        lines = [f"Community: {code}" + (f" ({community.name})" if community.name else ""),
                 f"Recovered: {'sync of ' if kind == SYNC_FAILED else 'freshness of '}{_names(names)}",
                 f"Shown healthy by Airflow run: {run_id}"]
        if opened_at is not None:
            lasted = ((now or datetime.now(UTC)) - opened_at)
            lines.append(f"Incident opened: {opened_at:%Y-%m-%d %H:%M:%S %Z} (lasted {_duration(lasted)})")
        lines += ["", "Last reasons:", *(f"- {name}: {reason}" for name, reason in reasons.items()),
                  "", "Nothing to do."]
        return Notice(code, kind, decision.action, subject, "\n".join(lines), names, run_id)
    subject = (f"{SUBJECT_PREFIX} {code}: {_names(names)} failed" if kind == SYNC_FAILED
               else f"{SUBJECT_PREFIX} {code}: stale: {_names(names)}")
    if decision.action == "remind":
        subject += " (still open)"
    headline = {
        "open": "Sync failed" if kind == SYNC_FAILED else "Portal data is stale",
        "grow": f"More data sets {what} (newly: {_names(decision.new)})",
        "remind": f"Still {what}: this incident is still open",
    }[decision.action]
    lines = [f"Community: {code}" + (f" ({community.name})" if community.name else ""),
             f"{headline}.",
             f"Data sets: {_names(names)}",
             f"Airflow run: {run_id} (DAG {community.dag_id})"]
    if opened_at is not None and decision.action != "open":
        lines.append(f"Incident opened: {opened_at:%Y-%m-%d %H:%M:%S %Z}")
    lines += ["", "Reason:", *(f"- {name}: {reason}" for name, reason in reasons.items()),
              "", "Next step:", next_step(community, kind, names), "",
              "You get one message per incident (and a reminder every "
              + (f"{community.alert_reminder_hours:g} h" if community.alert_reminder_hours else "never")
              + " while it lasts); a recovery notice follows when it is over."]
    return Notice(code, kind, decision.action, subject, "\n".join(lines), names, run_id)


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def record(conn: psycopg.Connection, community: Community, kind: str, seen: Observation, deliver: Deliver,
           now: datetime | None = None) -> Notice | None:
    """Apply one observation to the community's incident of ``kind``; deliver and return the notice
    it calls for (None: nothing to tell). ``conn`` must be in autocommit mode: this is one transaction.

    Concurrency: the open incident is read under a row lock, and a new one is opened by an insert that
    waits for (and then yields to) a concurrent insert of the same incident, so of two callbacks at
    once exactly one tells.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown alert kind {kind!r}; known: {KINDS}")
    from portal_sync.store import alerts as store

    remind = timedelta(hours=community.alert_reminder_hours) if community.alert_reminder_hours else None
    with conn.transaction():
        now = now or store.now(conn)
        current = store.lock_open(conn, community.code, kind)
        if current is None and seen.failing:
            opened = store.open_incident(conn, community.code, kind, seen.failing, seen.run_id, now)
            if opened is not None:
                notice = compose(community, kind, Decision("open", dict(seen.failing), tuple(seen.failing)),
                                 seen.run_id, now=now)
                deliver(notice)
                return notice
            current = store.lock_open(conn, community.code, kind)  # another callback opened it just now
        decision = decide(current, seen, now, remind)
        if current is None or decision.action == "none":
            return None
        if decision.action == "recover":
            store.close_incident(conn, current.incident_id, seen.run_id, now)
        else:
            store.update_incident(conn, current.incident_id, decision.datasets, seen.run_id, now,
                                  notified=decision.notify)
        if not decision.notify:
            return None
        notice = compose(community, kind, decision, seen.run_id, opened_at=current.opened_at, now=now)
        deliver(notice)
        return notice


def sync_observation(conn: psycopg.Connection, community: Community, run_id: str,
                     error: BaseException | str | None = None) -> Observation | None:
    """What the run ``run_id`` showed of failed data sets, from its record in the run store.

    Failed data sets come with the error recorded for them; published ones are healthy. When the run as
    a whole failed (``error``: the sync task's exception; or the run record's error) and no data set
    carries its own failure, every data set of the run failed with that reason. A dry run publishes
    nothing and shows nothing either way: None.
    """
    from portal_sync.stage import run_key
    from portal_sync.store import runs

    key = run_key(community.code, run_id)
    record_ = runs.run_record(conn, key)
    if record_ is not None and record_.outcome == "dry_run":
        return None
    rows = runs.dataset_runs(conn, key)
    failing = {name: row.error or "failed (no reason recorded)" for name, row in rows.items() if row.phase == "failed"}
    healthy = frozenset(name for name, row in rows.items() if row.phase == "published")
    reason = str(error) if error else (record_.error if record_ is not None and record_.outcome == "failed"
                                       else None)
    if reason and not failing:
        planned = [name for name, row in rows.items() if row.phase != "published"] or list(
            (record_.datasets if record_ is not None else None) or community.datasets)
        failing = {name: reason for name in planned}
    return Observation(run_id, failing, healthy - failing.keys())


def stale_observation(conn: psycopg.Connection, community: Community, run_id: str,
                      now: datetime | None = None) -> Observation:
    """The freshness of every enabled data set now (what the run's freshness check judged)."""
    from portal_sync.freshness import freshness

    states = freshness(conn, community, now)
    return Observation(run_id, {s.dataset: s.describe() for s in states if s.stale},
                       frozenset(s.dataset for s in states if not s.stale))


def after_sync(conn: psycopg.Connection, community: Community, run_id: str, deliver: Deliver,
               error: BaseException | str | None = None, now: datetime | None = None) -> Notice | None:
    """The ``sync`` task ended (either way): open, keep, remind or close the sync_failed incident."""
    seen = sync_observation(conn, community, run_id, error)
    if seen is None:
        log.info("%s: run %s is a dry run: alerts unchanged", community.code, run_id)
        return None
    return record(conn, community, SYNC_FAILED, seen, deliver, now)


def after_freshness(conn: psycopg.Connection, community: Community, run_id: str, deliver: Deliver,
                    now: datetime | None = None) -> Notice | None:
    """The ``freshness`` task ended (either way): open, keep, remind or close the stale incident."""
    return record(conn, community, STALE, stale_observation(conn, community, run_id, now), deliver, now)
