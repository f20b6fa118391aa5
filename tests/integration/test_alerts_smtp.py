"""Alerts end to end: real runs of the pipeline, the DAG's callback, Airflow's SMTP provider, a real SMTP server.

An aiosmtpd server on 127.0.0.1 (a free port) receives what the callback sends through the ``smtp_default``
connection (``AIRFLOW_CONN_SMTP_DEFAULT``); the portal is found through ``AIRFLOW_CONN_PORTAL_DB``, as in a
task. Three failing runs send one mail, a good run one recovery mail; the same for stale data. Two
callbacks at once send one mail; a mail that could not be sent is tried again by the next run.
"""

from __future__ import annotations

import email
import html
import json
import logging
import socket
import threading
from email.message import EmailMessage
from email.policy import default as default_policy
from urllib.parse import urlsplit

import psycopg
import pytest
from synctest import community, sync

from portal_sync import alerts
from portal_sync.notify import AlertNotifier, send
from portal_sync.pipeline import SyncError
from portal_sync.source.schema import forget_checks
from portal_sync.store import alerts as store

pytestmark = pytest.mark.integration

RECIPIENTS = ("utility-ops@springfield.example", "clerk@springfield.example")
SENDER = "portal-sync@springfield.example"
DATASETS = ("accounts", "charges", "payments", "balances")


class Inbox:
    """aiosmtpd handler keeping every message it is given."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's hook name)
        message = email.message_from_bytes(envelope.original_content, policy=default_policy)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    @property
    def subjects(self) -> list[str]:
        return [message["Subject"] for _, message in self.messages]


def text_of(message: EmailMessage) -> str:
    """The readable text of a mail: its plain part, else its HTML part without the markup."""
    plain = message.get_body(preferencelist=("plain",))
    if plain is not None:
        return plain.get_content()
    part = message.get_body(preferencelist=("html",))
    assert part is not None, message
    content = part.get_content()
    body = content[content.index("<pre"):]
    return html.unescape(body[body.index(">") + 1:body.index("</pre>")])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller

    # aiosmtpd logs each session's end at INFO from its own thread, after pytest may have closed the
    # stream a handler holds ("--- Logging error ---" in the output): only its warnings are wanted.
    server_log = logging.getLogger("mail.log")
    level = server_log.level
    server_log.setLevel(logging.WARNING)
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()
        server_log.setLevel(level)


@pytest.fixture
def airflow_conns(smtp_server, portal, monkeypatch):
    """The two Airflow connections the callback uses, as a deployment would give them (env vars, JSON)."""
    inbox, port = smtp_server
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": port,
        "extra": {"from_email": SENDER, "disable_tls": True, "disable_ssl": True, "timeout": 10, "retry_limit": 0}}))
    url = urlsplit(portal)
    monkeypatch.setenv("AIRFLOW_CONN_PORTAL_DB", json.dumps({
        "conn_type": "postgres", "host": url.hostname, "port": url.port, "schema": url.path.lstrip("/"),
        "login": url.username}))
    return inbox


def _community(**overrides):
    return community(datasets=DATASETS, alert_recipients=RECIPIENTS, **overrides)


def _failing_run(sim, portal: str, run_id: str, comm) -> None:
    with pytest.raises(SyncError, match=r"charges: .*UB_Transaction: the source's columns changed"):
        sync(sim, portal, run_id, comm)


def test_three_failing_runs_send_one_mail_and_a_good_run_one_recovery(make_source, airflow_conns, portal):
    inbox = airflow_conns
    comm = _community()
    on_sync = AlertNotifier(comm, alerts.SYNC_FAILED)  # what the DAG attaches to task sync, both outcomes
    sim = make_source("sqlite", seed=71)
    sync(sim, portal, "alerts_good_0", comm)
    on_sync({"run_id": "alerts_good_0"})
    assert inbox.messages == []

    sim.execute('ALTER TABLE "UB_Transaction" RENAME COLUMN "Description" TO "Memo"')  # a Caselle upgrade
    forget_checks()  # each Airflow task is a new process that asks the catalog afresh
    for n in (1, 2, 3):
        _failing_run(sim, portal, f"alerts_fail_{n}", comm)
        on_sync({"run_id": f"alerts_fail_{n}"})  # the sync task itself succeeds: its outcome lists the failure
    assert inbox.subjects == ["[portal-sync] SPRINGFLD: charges failed"]
    rcpt, mail = inbox.messages[0]
    assert sorted(rcpt) == sorted(RECIPIENTS) and mail["From"] == SENDER
    assert mail["X-Portal-Sync-Alert"] == "sync_failed/open"
    body = text_of(mail)
    for text in ("Community: SPRINGFLD", "Data sets: charges", "- charges: ", "UB_Transaction: the source's columns "
                 "changed", "Description is missing", "Airflow run: alerts_fail_1", 'conf {"datasets": ["charges"]}',
                 "`portal-sync runs SPRINGFLD`"):
        assert text in body, (text, body)

    # A day later the incident, still open, is told once more.
    with psycopg.connect(portal, autocommit=True) as conn:
        conn.execute("UPDATE sync.alerts SET notified_at = notified_at - interval '25 hours'")
    _failing_run(sim, portal, "alerts_fail_4", comm)
    on_sync({"run_id": "alerts_fail_4"})
    _failing_run(sim, portal, "alerts_fail_5", comm)
    on_sync({"run_id": "alerts_fail_5"})
    assert inbox.subjects[1:] == ["[portal-sync] SPRINGFLD: charges failed (still open)"]

    sim.execute('ALTER TABLE "UB_Transaction" RENAME COLUMN "Memo" TO "Description"')
    forget_checks()
    for n in (1, 2):
        sync(sim, portal, f"alerts_good_{n}", comm)
        on_sync({"run_id": f"alerts_good_{n}"})
    assert inbox.subjects[2:] == ["[portal-sync] SPRINGFLD: recovered: charges"]
    recovered = text_of(inbox.messages[2][1])
    assert "Shown healthy by Airflow run: alerts_good_1" in recovered and "Description is missing" in recovered
    with psycopg.connect(portal) as conn:
        [incident] = store.incidents(conn, "SPRINGFLD")
    assert (incident["kind"], incident["opened_run_id"], incident["closed_run_id"], incident["notices"]) == (
        "sync_failed", "alerts_fail_1", "alerts_good_1", 3)


def test_a_whole_run_failure_names_the_tasks_error(make_source, airflow_conns, portal):
    inbox = airflow_conns
    comm = _community()
    on_sync = AlertNotifier(comm, alerts.SYNC_FAILED)
    # The source could not be reached: the run never started, the sync task failed with this error.
    error = SyncError("SPRINGFLD: cannot connect to the source: [unixODBC] login timeout expired")
    on_sync({"run_id": "alerts_down_1", "exception": error})
    on_sync({"run_id": "alerts_down_2", "exception": error})
    assert inbox.subjects == ["[portal-sync] SPRINGFLD: accounts, charges, payments, balances failed"]
    assert "- balances: SPRINGFLD: cannot connect to the source: [unixODBC] login timeout expired" in text_of(
        inbox.messages[0][1])
    sim = make_source("sqlite", seed=72)
    sync(sim, portal, "alerts_up", comm)
    on_sync({"run_id": "alerts_up"})
    assert inbox.subjects[1:] == ["[portal-sync] SPRINGFLD: recovered: accounts, charges, payments, balances"]


def test_stale_data_sends_one_mail_and_fresh_data_one_recovery(make_source, airflow_conns, portal):
    inbox = airflow_conns
    comm = _community()
    on_freshness = AlertNotifier(comm, alerts.STALE)  # what the DAG attaches to task freshness
    sim = make_source("sqlite", seed=73)
    sync(sim, portal, "fresh_0", comm)
    on_freshness({"run_id": "fresh_0"})
    assert inbox.messages == []

    with psycopg.connect(portal, autocommit=True) as conn:  # two hours without a publish (limit: 3 x 5 minutes)
        conn.execute("UPDATE sync.runs SET started_at = started_at - interval '2 hours',"
                     " published_at = published_at - interval '2 hours'")
    for n in (1, 2, 3):
        on_freshness({"run_id": f"stale_{n}"})
    assert inbox.subjects == ["[portal-sync] SPRINGFLD: stale: accounts, charges, payments, balances"]
    body = text_of(inbox.messages[0][1])
    for text in ("Portal data is stale", "- balances: balances: STALE, last published", "alert after 0:15:00",
                 "Airflow run: stale_1", "`portal-sync status SPRINGFLD`"):
        assert text in body, (text, body)

    sync(sim, portal, "fresh_1", comm)
    on_freshness({"run_id": "fresh_1"})
    on_freshness({"run_id": "fresh_2"})
    assert inbox.subjects[1:] == ["[portal-sync] SPRINGFLD: recovered: accounts, charges, payments, balances"]


def test_two_callbacks_at_once_send_one_notice(portal):
    comm = _community()
    seen = alerts.Observation("race_1", {"charges": "boom"})
    start = threading.Barrier(2)
    sent: list[alerts.Notice] = []

    def slow_deliver(notice: alerts.Notice) -> None:
        sent.append(notice)
        threading.Event().wait(0.5)  # the other callback arrives while this one is still sending

    errors: list[BaseException] = []

    def callback() -> None:
        try:
            with psycopg.connect(portal, autocommit=True) as conn:
                start.wait()
                alerts.record(conn, comm, alerts.SYNC_FAILED, seen, slow_deliver)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=callback) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and [n.action for n in sent] == ["open"]
    with psycopg.connect(portal) as conn:
        assert [i["notices"] for i in store.incidents(conn, "SPRINGFLD")] == [1]


def test_a_notice_that_could_not_be_sent_is_sent_by_the_next_run(portal):
    comm = _community()
    seen = alerts.Observation("lost_1", {"charges": "boom"})

    def broken(notice: alerts.Notice) -> None:
        raise ConnectionRefusedError("mail server down")

    with psycopg.connect(portal, autocommit=True) as conn:
        with pytest.raises(ConnectionRefusedError):
            alerts.record(conn, comm, alerts.SYNC_FAILED, seen, broken)
        assert store.incidents(conn, "SPRINGFLD") == []
        sent: list[alerts.Notice] = []
        alerts.record(conn, comm, alerts.SYNC_FAILED, alerts.Observation("lost_2", {"charges": "boom"}), sent.append)
    assert [(n.action, n.run_id) for n in sent] == [("open", "lost_2")]


def test_send_by_plain_smtp_without_airflow(smtp_server):
    inbox, port = smtp_server
    notice = alerts.compose(_community(), alerts.STALE, alerts.Decision("open", {"balances": "STALE <since> x"}), "r1")
    assert send(notice, RECIPIENTS, host="127.0.0.1", port=port, from_email=SENDER)
    assert not send(notice, (), host="127.0.0.1", port=port)  # nobody configured: nothing sent
    [(rcpt, mail)] = inbox.messages
    assert sorted(rcpt) == sorted(RECIPIENTS) and mail["Subject"] == "[portal-sync] SPRINGFLD: stale: balances"
    assert "- balances: STALE <since> x" in text_of(mail)
