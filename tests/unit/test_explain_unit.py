"""The parts of "why isn't this customer in the portal?" that need no database: reading the number as
residents type it, when the next run is due, the answers given from the configuration alone, and the
wording of the visibility reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from portal_sync.config import Community, LoadedConfig
from portal_sync.explain import (
    VERDICTS,
    Explanation,
    _hidden_because,
    _ineligible,
    explain,
    next_run_due,
    normalize_number,
)
from portal_sync.reporting.text import format_explanation

# Nothing listens here: an answer that needed the database would fail to connect.
NO_DB = "postgresql://nobody@127.0.0.1:1/nothing?connect_timeout=1"


def _community(**overrides: object) -> Community:
    values: dict[str, object] = {"code": "SPRINGFLD", "caselle_conn_id": "caselle_springfld",
                                 "time_zone": "America/Denver", "schedule": "*/15 * * * *",
              "stagger": False}  # the next tick itself is under test, not the per-community offset
    values.update(overrides)
    return Community(**values)


@pytest.mark.parametrize("typed, digits", [
    ("010-00123-00", "0100012300"),
    ("0100012300", "0100012300"),
    (" 010 00123 00 ", "0100012300"),
    ("010.00123/00", "0100012300"),
    ("#010-00123-00", "0100012300"),
    ("", ""),
    ("abc", ""),
])
def test_numbers_are_compared_by_their_digits(typed, digits):
    assert normalize_number(typed) == digits


def test_the_next_run_is_the_next_tick_of_the_schedule():
    comm = _community()
    now = datetime(2026, 11, 27, 17, 7, tzinfo=UTC)
    assert next_run_due(comm, "accounts", None, now) == datetime(2026, 11, 27, 17, 15, tzinfo=UTC)
    assert next_run_due(comm, "accounts", now - timedelta(minutes=7), now) == datetime(2026, 11, 27, 17, 15,
                                                                                       tzinfo=UTC)


def test_a_tick_at_this_very_second_is_still_the_next_run():
    comm = _community()
    now = datetime(2026, 11, 27, 17, 15, tzinfo=UTC)
    assert next_run_due(comm, "accounts", None, now) == now


def test_the_next_run_waits_for_the_data_sets_cadence():
    comm = _community(cadence_minutes={"accounts": 60})
    published = datetime(2026, 11, 27, 17, 1, tzinfo=UTC)
    now = datetime(2026, 11, 27, 17, 20, tzinfo=UTC)
    # due once an hour has passed (less a minute's slack): the 18:00 tick qualifies
    assert next_run_due(comm, "accounts", published, now) == datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
    # balances keep the schedule's own rhythm
    assert next_run_due(comm, "balances", published, now) == datetime(2026, 11, 27, 17, 30, tzinfo=UTC)


def test_the_schedule_is_read_in_the_communitys_zone():
    comm = _community(schedule="0 6 * * *")  # 06:00 in Denver
    winter = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    summer = datetime(2026, 7, 15, 11, 0, tzinfo=UTC)
    assert next_run_due(comm, "accounts", None, winter) == datetime(2026, 1, 15, 13, 0, tzinfo=UTC)  # MST
    assert next_run_due(comm, "accounts", None, summer) == datetime(2026, 7, 15, 12, 0, tzinfo=UTC)  # MDT
    # a community without a configured zone uses the one its runs read from Caselle
    unzoned = _community(time_zone=None, schedule="0 6 * * *")
    assert next_run_due(unzoned, "accounts", None, winter, zone="America/New_York") == datetime(
        2026, 1, 16, 11, 0, tzinfo=UTC)


def test_an_unknown_community_is_named_with_the_known_ones():
    answer = explain(NO_DB, "nowhere", "010-00123-00", LoadedConfig((_community(),), ()))
    assert answer.verdict == "unknown_community"
    assert "'NOWHERE'" in answer.message and "SPRINGFLD" in answer.message


def test_a_community_without_the_accounts_data_set_cannot_be_searched():
    comm = _community(datasets=("charges", "payments"))
    answer = explain(NO_DB, "springfld", "010-00123-00", LoadedConfig((comm,), ()))
    assert answer.verdict == "data_set_not_enabled"
    assert answer.details["datasets"] == ["charges", "payments"]
    assert "does not sync accounts" in answer.message


def test_text_without_digits_is_not_a_number():
    answer = explain(NO_DB, "SPRINGFLD", "my account", LoadedConfig((_community(),), ()))
    assert answer.verdict == "invalid_number"
    assert answer.digits == ""


@pytest.mark.parametrize("status, online, failing, words", [
    ("inactive", True, ["status"], ["status is inactive", "active, final"]),
    ("active", False, ["online_access"], ["online access is turned off"]),
    ("vacant", False, ["status", "online_access"], ["status is vacant", "online access is turned off"]),
    ("active", True, [], ["reconcile"]),  # hidden by a configuration that has changed since
])
def test_the_reason_an_account_is_hidden_follows_the_visibility_rule(status, online, failing, words):
    comm = _community()
    account = {"status": status, "online_access": online}
    assert _ineligible(comm, account) == failing
    text = _hidden_because(comm, account)
    assert all(w in text for w in words), text


def test_visible_statuses_come_from_the_community():
    comm = _community(visible_statuses=("active",))
    assert _ineligible(comm, {"status": "final", "online_access": True}) == ["status"]
    assert "shows only active accounts" in _hidden_because(comm, {"status": "final", "online_access": True})


def test_the_answer_prints_its_verdict_message_and_facts():
    answer = Explanation("deleted", "Account 1 was deleted.", "SPRINGFLD", "1", "1",
                         account={"account_id": 1, "account_number": "1"},
                         details={"deleted_at": datetime(2026, 11, 27, 17, 0, tzinfo=UTC)})
    text = format_explanation(answer)
    assert text.splitlines()[0] == "SPRINGFLD 1: deleted"
    assert "Account 1 was deleted." in text and "deleted_at: 2026-11-27 17:00:00Z" in text
    assert answer.as_dict()["verdict"] == "deleted"
    assert set(VERDICTS) >= {"found_visible", "not_synced_yet", "not_eligible", "refused", "deleted", "renumbered",
                             "data_set_not_enabled", "unknown_community"}
