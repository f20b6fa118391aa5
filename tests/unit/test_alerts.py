"""The incident state machine and the messages: one notice per incident, reminders, one recovery."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from portal_sync.alerts import STALE, SYNC_FAILED, Decision, Observation, compose, decide
from portal_sync.config import Community, parse_config
from portal_sync.notify import AlertNotifier, callbacks, html_body
from portal_sync.store.alerts import Incident

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
DAY = timedelta(hours=24)
SPRINGFLD = Community(code="SPRINGFLD", caselle_conn_id="caselle_springfld", name="City of Springfield",
                      alert_recipients=("ops@springfield.example",))


def _open(datasets: dict[str, str], notified_at: datetime = T0) -> Incident:
    return Incident(1, "SPRINGFLD", SYNC_FAILED, datasets, T0, notified_at, 1, "run_1", "run_1")


def _seen(failing: dict[str, str] | None = None, healthy: tuple[str, ...] = ()) -> Observation:
    return Observation("run_x", failing or {}, frozenset(healthy))


def test_nothing_wrong_and_nothing_open_is_no_incident():
    assert decide(None, _seen(healthy=("charges",)), T0, DAY) == Decision("none", {})


def test_a_failure_opens_an_incident_and_the_same_failure_again_stays_quiet():
    opened = decide(None, _seen({"charges": "UB_Transaction: Description is missing"}), T0, DAY)
    assert (opened.action, opened.notify, opened.new) == ("open", True, ("charges",))
    again = decide(_open(opened.datasets), _seen({"charges": "UB_Transaction: Description is missing"},
                                                  ("payments",)), T0 + timedelta(minutes=5), DAY)
    assert (again.action, again.notify) == ("quiet", False)
    assert again.datasets == {"charges": "UB_Transaction: Description is missing"}


def test_a_new_reason_for_the_same_data_set_is_kept_but_not_told():
    seen = decide(_open({"charges": "old reason"}), _seen({"charges": "new reason"}), T0 + timedelta(hours=1), DAY)
    assert (seen.action, seen.datasets) == ("quiet", {"charges": "new reason"})


def test_another_data_set_failing_is_news():
    grown = decide(_open({"charges": "a"}), _seen({"charges": "a", "payments": "b"}), T0 + timedelta(hours=1), DAY)
    assert (grown.action, grown.notify, grown.new) == ("grow", True, ("payments",))
    assert grown.datasets == {"charges": "a", "payments": "b"}


def test_a_reminder_after_the_configured_hours_and_none_when_switched_off():
    incident = _open({"charges": "a"})
    assert decide(incident, _seen({"charges": "a"}), T0 + DAY - timedelta(minutes=1), DAY).action == "quiet"
    assert decide(incident, _seen({"charges": "a"}), T0 + DAY, DAY).action == "remind"
    assert decide(incident, _seen({"charges": "a"}), T0 + 10 * DAY, None).action == "quiet"


def test_recovery_needs_every_data_set_of_the_incident_healthy():
    incident = _open({"charges": "a", "payments": "b"})
    partly = decide(incident, _seen(healthy=("charges",)), T0 + timedelta(hours=1), DAY)
    assert (partly.action, partly.datasets) == ("quiet", {"payments": "b"})
    # A run that did not include payments (a retry of charges only) tells nothing about it.
    other = decide(_open({"payments": "b"}), _seen(healthy=("charges", "balances")), T0, DAY)
    assert (other.action, other.datasets) == ("quiet", {"payments": "b"})
    done = decide(_open({"payments": "b"}), _seen(healthy=("payments",)), T0 + timedelta(hours=2), DAY)
    assert (done.action, done.notify, done.datasets) == ("recover", True, {"payments": "b"})


def test_the_failure_message_names_community_data_sets_reason_run_and_next_step():
    notice = compose(SPRINGFLD, SYNC_FAILED, Decision("open", {"charges": "UB_Transaction: Description is missing"},
                                                      ("charges",)), "scheduled__2026-12-01T08:00:00+00:00")
    assert notice.subject == "[portal-sync] SPRINGFLD: charges failed"
    for text in ("Community: SPRINGFLD (City of Springfield)", "Data sets: charges",
                 "- charges: UB_Transaction: Description is missing",
                 "Airflow run: scheduled__2026-12-01T08:00:00+00:00 (DAG caselle_sync_springfld)",
                 "conf " + json.dumps({"datasets": ["charges"]}), "`portal-sync runs SPRINGFLD`",
                 "reminder every 24 h"):
        assert text in notice.body, (text, notice.body)


def test_stale_reminder_and_recovery_subjects():
    stale = compose(SPRINGFLD, STALE, Decision("open", {"balances": "balances: STALE, last published ..."}), "r1")
    assert stale.subject == "[portal-sync] SPRINGFLD: stale: balances"
    assert "`portal-sync status SPRINGFLD`" in stale.body and "Portal data is stale" in stale.body
    remind = compose(SPRINGFLD, SYNC_FAILED, Decision("remind", {"charges": "x", "payments": "y"}), "r2",
                     opened_at=T0, now=T0 + DAY)
    assert remind.subject == "[portal-sync] SPRINGFLD: charges, payments failed (still open)"
    recovered = compose(SPRINGFLD, STALE, Decision("recover", {"balances": "old"}), "r3", opened_at=T0,
                        now=T0 + timedelta(hours=2, minutes=5))
    assert recovered.subject == "[portal-sync] SPRINGFLD: recovered: balances"
    assert "lasted 2 h 5 min" in recovered.body and "Shown healthy by Airflow run: r3" in recovered.body


def test_the_html_body_escapes_the_reason():
    notice = compose(SPRINGFLD, SYNC_FAILED, Decision("open", {"charges": "<script>x</script> {{ ti }}"}), "r")
    body = html_body(notice)
    assert "<script>" not in body and "&lt;script&gt;" in body and "{{ ti }}" in body


GOOD = {"code": "SPRINGFLD", "caselle_conn_id": "caselle_springfld"}


def test_recipients_come_from_the_entry_or_the_files_defaults():
    loaded = parse_config({"defaults": {"alert_recipients": ["utility-ops@county.local"]},
                           "communities": [GOOD, {**GOOD, "code": "CEDARHLS",
                                                  "alert_recipients": ["clerk@cedarhills.example"],
                                                  "alert_reminder_hours": None, "alert_conn_id": "smtp_cedar"}]})
    assert not loaded.errors
    assert loaded.get("SPRINGFLD").alert_recipients == ("utility-ops@county.local",)
    assert loaded.get("SPRINGFLD").alert_reminder_hours == 24 and loaded.get("SPRINGFLD").alert_conn_id == \
        "smtp_default"
    cedar = loaded.get("CEDARHLS")
    assert (cedar.alert_recipients, cedar.alert_reminder_hours, cedar.alert_conn_id) == (
        ("clerk@cedarhills.example",), None, "smtp_cedar")


@pytest.mark.parametrize(("recipients", "words"), [
    (["ops"], "not an email address: 'ops'"),
    (["a@x.org, b@y.org"], "not an email address"),
    (["Ops <ops@x.org>"], "not an email address"),
    (["ops@x.org", "OPS@x.org"], "listed twice"),
    ("ops@x.org", "tuple"),
])
def test_a_bad_recipient_is_refused_naming_the_field(recipients, words):
    loaded = parse_config({"communities": [{**GOOD, "alert_recipients": recipients}]})
    assert not loaded.communities
    assert "field 'alert_recipients" in str(loaded.errors[0]) and words in str(loaded.errors[0])


def test_one_notifier_on_both_outcomes_and_known_kinds_only():
    attached = callbacks(SPRINGFLD, STALE)
    assert attached["on_success_callback"] == attached["on_failure_callback"]
    assert repr(attached["on_success_callback"][0]) == "AlertNotifier(SPRINGFLD, stale)"
    with pytest.raises(ValueError, match="unknown alert kind"):
        AlertNotifier(SPRINGFLD, "late")


def test_the_dag_file_can_build_notifiers_without_airflow_or_the_database_side():
    """The DAG file builds the notifiers at every parse: importing them must not load Airflow, psycopg or
    pyarrow (the run store and staging modules), which only the callback itself needs."""
    import subprocess
    import sys

    code = ("import sys; from portal_sync.notify import callbacks; from portal_sync.config import Community;"
            " callbacks(Community(code='AB', caselle_conn_id='x'), 'stale');"
            " print(sorted(m for m in ('airflow', 'psycopg', 'pyarrow') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
