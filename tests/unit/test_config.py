"""The communities file: good entries load, bad ones are refused naming community and field."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from portal_sync.config import load_config, parse_config
from portal_sync.datasets import DATASET_NAMES

GOOD = {"code": "SPRINGFLD", "caselle_conn_id": "caselle_springfld", "time_zone": "America/Denver"}


def test_defaults_apply_and_datasets_keep_publish_order():
    loaded = parse_config({"defaults": {"schedule": "*/15 * * * *"},
                           "communities": [{**GOOD, "datasets": ["residents", "accounts"]}]})
    assert not loaded.errors
    community = loaded.get("SPRINGFLD")
    assert community.schedule == "*/15 * * * *"
    assert community.datasets == ("accounts", "residents")
    assert community.visible_statuses == ("active", "final")
    assert community.source_org_code == "SPRINGFLD"
    assert community.dag_id == "caselle_sync_springfld"


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"datasets": ["accounts", "bills"]}, "datasets", "unknown data set"),
        ({"schedule": "every five minutes"}, "schedule", "cron"),
        ({"schedule": "*/5 * * *"}, "schedule", "cron"),
        ({"time_zone": "Mars/Olympus"}, "time_zone", "time zone"),
        ({"caselle_conn_id": "x; DROP TABLE portal.accounts"}, "caselle_conn_id", "pattern"),
        ({"code": "spr'; --"}, "code", "pattern"),
        ({"code": "SPRINGFIELD_TOO_LONG"}, "code", "pattern"),
        ({"visible_statuses": ["active", "deleted"]}, "visible_statuses", "unknown account status"),
        ({"name": "City\x00of"}, "name", "pattern"),
        ({"pool": "Bad Pool"}, "pool", "pattern"),
        ({"colour": "blue"}, "colour", "Extra inputs"),
        ({"datasets": []}, "datasets", "at least one"),
    ],
)
def test_bad_community_is_refused_with_field_named(change, field, words):
    loaded = parse_config({"communities": [{**GOOD, **change}, {**GOOD, "code": "CEDARHLS"}]})
    assert [c.code for c in loaded.communities] == ["CEDARHLS"], "the good community must still load"
    assert len(loaded.errors) == 1
    message = str(loaded.errors[0])
    assert f"field '{field}'" in message
    assert words.lower() in message.lower()


def test_duplicate_code_is_refused():
    loaded = parse_config({"communities": [GOOD, {**GOOD, "caselle_conn_id": "other"}]})
    assert len(loaded.communities) == 1
    assert "duplicate community code" in str(loaded.errors[0])
    assert str(loaded.errors[0]).startswith("community SPRINGFLD")


def test_unreadable_file_is_an_error_not_a_crash(tmp_path):
    path = tmp_path / "communities.yaml"
    path.write_text("communities: [unclosed")
    loaded = load_config(path)
    assert loaded.communities == ()
    assert "cannot read" in str(loaded.errors[0])


def test_shipped_configuration_is_valid():
    loaded = load_config()
    assert not loaded.errors, loaded.errors
    assert len(loaded.communities) >= 2
    assert all(set(c.datasets) <= set(DATASET_NAMES) for c in loaded.communities)


def test_file_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent(yaml.safe_dump({"communities": [GOOD]})))
    assert load_config(path).get("SPRINGFLD").time_zone == "America/Denver"


def test_quality_mostly_is_per_check_or_dataset_check_and_defaults_by_kind():
    loaded = parse_config({"communities": [{**GOOD, "quality": {
        "mostly": {"implausible_date": 0.9, "charges.implausible_date": 0.5, "orphan_account": 0.95}}}]})
    assert not loaded.errors, loaded.errors
    quality = loaded.get("SPRINGFLD").quality
    assert quality.mostly_of("charges", "implausible_date", 0.99) == 0.5  # dataset.check wins
    assert quality.mostly_of("payments", "implausible_date", 0.99) == 0.9
    assert quality.mostly_of("charges", "orphan_account", 1.0) == 0.95
    assert quality.mostly_of("charges", "amount_size", 0.99) == 0.99  # not tuned: the default


@pytest.mark.parametrize(
    ("mostly", "words"),
    [
        ({"no_such_check": 0.5}, "unknown check 'no_such_check' in mostly key 'no_such_check'"),
        ({"bills.key_unique": 0.5}, "unknown data set 'bills' in mostly key 'bills.key_unique'"),
        ({"charges.staged_columns": 0.5}, "'charges.staged_columns': 'staged_columns' is a table check"),
        ({"implausible_date": 1.5}, "less than or equal to 1"),
        ({"implausible_date": -0.1}, "greater than or equal to 0"),
        ({"implausible_date": "most"}, "valid number"),
    ],
)
def test_bad_quality_mostly_is_refused_naming_community_and_key(mostly, words):
    loaded = parse_config({"communities": [{**GOOD, "quality": {"mostly": mostly}}, {**GOOD, "code": "CEDARHLS"}]})
    assert [c.code for c in loaded.communities] == ["CEDARHLS"], "the good community must still load"
    [error] = loaded.errors
    assert error.community == "SPRINGFLD" and "field 'quality.mostly" in str(error)
    assert words.lower() in str(error).lower()
