"""Airflow glue of the alerts: the callbacks the sync DAG attaches, and sending by mail.

:class:`AlertNotifier` is a notifier in Airflow's sense, a callable taking the task context, attached
as both ``on_success_callback`` and ``on_failure_callback`` of a task: of ``sync`` for the
``sync_failed`` incident, of ``freshness`` for ``stale``. Either way it asks the portal database what
the run showed and lets ``portal_sync.alerts`` decide whether anybody is told. Its channels default to
mail through Airflow's SMTP provider (``SmtpNotifier`` on the community's ``alert_conn_id``); any
callable taking a :class:`~portal_sync.alerts.Notice` can be added (Slack: docs/alerts.md).

Airflow is imported inside functions only, so ``portal_sync`` keeps importing without it; so is the
database side, so that the DAG file, which builds the notifiers at parse time, stays quick to parse.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from portal_sync import alerts
from portal_sync.alerts import Deliver, Notice
from portal_sync.config import Community

log = logging.getLogger(__name__)

DEFAULT_FROM = "portal-sync@localhost"


def html_body(notice: Notice) -> str:
    """The body as HTML (the SMTP provider sends HTML): the plain text, escaped, as written."""
    return (f"<html><body><p><b>{html.escape(notice.subject)}</b></p>"
            f"<pre style=\"font-family: monospace; white-space: pre-wrap\">{html.escape(notice.body)}</pre>"
            "</body></html>")


def _headers(notice: Notice) -> dict[str, str]:
    return {"X-Portal-Sync-Community": notice.community, "X-Portal-Sync-Alert": f"{notice.kind}/{notice.action}"}


def send(notice: Notice, recipients: Sequence[str], *, conn_id: str = "smtp_default", host: str | None = None,
         port: int | None = None, from_email: str | None = None) -> bool:
    """Mail one notice; False when there is nobody to tell.

    Through Airflow's SMTP provider and the connection ``conn_id`` (host, port, login, TLS options and
    ``from_email`` in its extras), unless ``host`` is given: then by plain SMTP to ``host:port``, no
    Airflow needed. Raises what sending raises: the caller's transaction then forgets the decision.
    """
    to = list(recipients)
    if not to:
        log.warning("%s: no alert_recipients configured: not mailed: %s", notice.community, notice.subject)
        return False
    if host is not None:
        import smtplib
        from email.message import EmailMessage

        message = EmailMessage()
        message["Subject"] = notice.subject
        message["From"] = from_email or DEFAULT_FROM
        message["To"] = ", ".join(to)
        for name, value in _headers(notice).items():
            message[name] = value
        message.set_content(notice.body)
        message.add_alternative(html_body(notice), subtype="html")
        with smtplib.SMTP(host, port or 25, timeout=30) as client:
            client.send_message(message)
        return True
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    notifier = SmtpNotifier(to=to, from_email=from_email, subject=notice.subject, html_content=html_body(notice),
                            smtp_conn_id=conn_id, custom_headers=_headers(notice))
    # notify(), not the notifier's __call__: the text is ours, not a Jinja template to render (a reason
    # quoting "{{" from the source would break it).
    notifier.notify({})
    return True


def email(community: Community, *, from_email: str | None = None) -> Deliver:
    """The mail channel of a community: its recipients, through its SMTP connection."""
    def deliver(notice: Notice) -> None:
        send(notice, community.alert_recipients, conn_id=community.alert_conn_id, from_email=from_email)

    return deliver


def _run_id(context: Mapping[str, Any]) -> str:
    run_id = context.get("run_id")
    if not run_id and context.get("dag_run") is not None:
        run_id = context["dag_run"].run_id
    if not run_id:
        raise ValueError("the callback context names no run (run_id)")
    return str(run_id)


class AlertNotifier:
    """The callback of one kind of alert of one community: ``AlertNotifier(community, "sync_failed")``
    on the ``sync`` task, ``AlertNotifier(community, "stale")`` on ``freshness``, each attached to both
    ``on_success_callback`` and ``on_failure_callback`` (a success is what closes an incident).

    ``channels``: where notices go (default: :func:`email`); each is called with the notice, inside the
    incident's transaction. ``portal_conn_id``: the Airflow connection of the portal database.
    """

    def __init__(self, community: Community, kind: str, *, channels: Iterable[Deliver] | None = None,
                 portal_conn_id: str = "portal_db", portal_url: str | None = None) -> None:
        if kind not in alerts.KINDS:
            raise ValueError(f"unknown alert kind {kind!r}; known: {alerts.KINDS}")
        self.community = community
        self.kind = kind
        self.channels: tuple[Deliver, ...] = tuple(channels) if channels is not None else (email(community),)
        self.portal_conn_id = portal_conn_id
        self.portal_url = portal_url

    def _deliver(self, notice: Notice) -> None:
        for channel in self.channels:
            channel(notice)

    def notify(self, context: Mapping[str, Any]) -> Notice | None:
        """Apply what the context's run showed; return the notice sent, if any."""
        import psycopg

        from portal_sync.connections import portal_url

        run_id = _run_id(context)
        url = self.portal_url or portal_url(self.portal_conn_id)
        with psycopg.connect(url, autocommit=True) as conn:
            if self.kind == alerts.SYNC_FAILED:
                notice = alerts.after_sync(conn, self.community, run_id, self._deliver, context.get("exception"))
            else:
                notice = alerts.after_freshness(conn, self.community, run_id, self._deliver)
        if notice is not None:
            log.warning("%s: alert sent (%s): %s", self.community.code, notice.action, notice.subject)
        return notice

    def __call__(self, context: Mapping[str, Any]) -> None:
        self.notify(context)

    def __repr__(self) -> str:
        return f"AlertNotifier({self.community.code}, {self.kind})"


def callbacks(community: Community, kind: str, **options: Any) -> dict[str, list[Callable[[Any], None]]]:
    """The task arguments that attach one notifier to both outcomes: ``@task(..., **callbacks(c, "stale"))``."""
    notifier = AlertNotifier(community, kind, **options)
    return {"on_success_callback": [notifier], "on_failure_callback": [notifier]}
