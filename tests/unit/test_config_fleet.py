"""The communities configuration at fleet scale: a directory of files, one community read alone,
repeated keys refused, staggered schedules."""

from __future__ import annotations

import collections
import hashlib
import os
import pickle
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from croniter import croniter

from portal_sync import config
from portal_sync.config import (
    Community,
    CommunityNotLoaded,
    ConfigError,
    load_community,
    load_config,
    load_yaml,
    parse_config,
)


def _entry(code: str, **fields: object) -> dict:
    return {"code": code, "caselle_conn_id": f"caselle_{code.lower()}", "time_zone": "America/Denver", **fields}


def _write(path: Path, document: object) -> Path:
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    path.write_text(yaml.dump(document, Dumper=dumper, sort_keys=False))
    return path


def _dedent(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def _fleet(path: Path, count: int, *, broken: str | None = None) -> Path:
    """``count`` generated communities in one file; ``broken`` names one whose pool is invalid."""
    entries = [_entry(f"C{i:05d}", pool=f"server_{i % 40}", schedule=["*/5 * * * *", "0 * * * *"][i % 2],
                      datasets=["accounts", "charges", "payments"], cadence_minutes={"accounts": 60})
               for i in range(count)]
    if broken is not None:
        entries = [{**e, "pool": "Bad Pool"} if e["code"] == broken else e for e in entries]
    return _write(path, {"defaults": {"start_date": "2026-11-01"}, "communities": entries})


# --- a directory of files -------------------------------------------------------------------------


def test_directory_loads_every_yaml_file_by_name_with_its_own_defaults(tmp_path):
    _write(tmp_path / "b_towns.yml", {"defaults": {"schedule": "*/15 * * * *"},
                                      "communities": [_entry("CEDARHLS"), _entry("MESAVRD", schedule="0 * * * *")]})
    _write(tmp_path / "a_cities.yaml", {"defaults": {"look_back_minutes": 90}, "communities": [_entry("SPRINGFLD")]})
    _write(tmp_path / "notes.txt", {"communities": [_entry("NOTYAML")]})
    _write(tmp_path / ".hidden.yaml", {"communities": [_entry("HIDDEN")]})
    (tmp_path / "nested").mkdir()
    _write(tmp_path / "nested" / "deeper.yaml", {"communities": [_entry("DEEPER")]})

    loaded = load_config(tmp_path)

    assert not loaded.errors, loaded.errors
    assert [c.code for c in loaded.communities] == ["SPRINGFLD", "CEDARHLS", "MESAVRD"], "files in name order"
    springfld, cedarhls, mesavrd = loaded.communities
    assert springfld.look_back_minutes == 90 and springfld.schedule == "*/5 * * * *", "a file's own defaults only"
    assert cedarhls.schedule == "*/15 * * * *" and cedarhls.look_back_minutes == 30
    assert mesavrd.schedule == "0 * * * *", "the entry overrides its file's defaults"


def test_directory_named_by_the_environment(tmp_path, monkeypatch):
    _write(tmp_path / "one.yaml", {"communities": [_entry("SPRINGFLD")]})
    monkeypatch.setenv(config.CONFIG_ENV, str(tmp_path))
    assert [c.code for c in load_config().communities] == ["SPRINGFLD"]
    assert load_community("SPRINGFLD").code == "SPRINGFLD"


def test_empty_directory_is_an_error_naming_it(tmp_path):
    loaded = load_config(tmp_path)
    assert loaded.communities == ()
    assert str(loaded.errors[0]) == f"file {tmp_path}: no *.yaml or *.yml file in this directory"


def test_code_in_two_files_costs_that_code_only_and_names_both_files(tmp_path):
    first = _write(tmp_path / "a.yaml", {"communities": [_entry("SPRINGFLD"), _entry("CEDARHLS")]})
    second = _write(tmp_path / "b.yaml", {"communities": [_entry("MESAVRD"), _entry("SPRINGFLD", pool="other")]})

    loaded = load_config(tmp_path)

    assert [c.code for c in loaded.communities] == ["CEDARHLS", "MESAVRD"], "neither definition wins"
    [error] = loaded.errors
    assert error.community == "SPRINGFLD"
    assert str(first) in error.message and str(second) in error.message
    assert "more than one file" in str(error)
    with pytest.raises(CommunityNotLoaded, match="more than one file") as raised:
        load_community("SPRINGFLD", tmp_path)
    assert str(first) in str(raised.value) and str(second) in str(raised.value)
    assert load_community("MESAVRD", tmp_path).code == "MESAVRD"


def test_code_twice_in_one_file_keeps_the_first_as_before(tmp_path):
    path = _write(tmp_path / "c.yaml", {"communities": [_entry("SPRINGFLD", pool="first_pool"),
                                                        _entry("SPRINGFLD", pool="second_pool")]})
    loaded = load_config(path)
    assert [c.pool for c in loaded.communities] == ["first_pool"]
    assert "duplicate community code" in str(loaded.errors[0])
    assert load_community("SPRINGFLD", path).pool == "first_pool", "a task builds what the processor built"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("communities: [unclosed", "cannot read or parse"),
        ("communities:\n  - code: BROKEN\n    start_date: 2026-13-45\n", "month must be in 1..12"),
        ("communities: {code: BROKEN}\n", "'communities' list"),
        ("defaults: [1, 2]\ncommunities: []\n", "'defaults' must be a mapping"),
        (b"communities: [{code: \xff}]\n", "cannot read or parse"),
    ],
    ids=["syntax", "impossible-date", "shape", "defaults-shape", "not-utf8"],
)
def test_broken_file_costs_only_its_communities(tmp_path, text, words):
    _write(tmp_path / "a_good.yaml", {"communities": [_entry("SPRINGFLD")]})
    bad = tmp_path / "b_bad.yaml"
    if isinstance(text, bytes):
        bad.write_bytes(text)
    else:
        bad.write_text(text)
    _write(tmp_path / "c_good.yaml", {"communities": [_entry("CEDARHLS")]})

    loaded = load_config(tmp_path)

    assert [c.code for c in loaded.communities] == ["SPRINGFLD", "CEDARHLS"]
    [error] = loaded.errors
    assert error.file == str(bad) and str(error).startswith(f"file {bad}: ")
    assert words in str(error)
    assert load_community("CEDARHLS", tmp_path).code == "CEDARHLS"


def test_entry_errors_name_their_file(tmp_path):
    path = _write(tmp_path / "towns.yaml", {"communities": [_entry("SPRINGFLD", schedule="often")]})
    [error] = load_config(path).errors
    assert error == ConfigError("SPRINGFLD", error.message, str(path))
    assert str(error).startswith(f"community SPRINGFLD in {path}: field 'schedule'")


# --- one community alone ---------------------------------------------------------------------------


def test_load_community_by_code_or_dag_id_with_its_file_defaults(tmp_path):
    path = _write(tmp_path / "c.yaml", {"defaults": {"look_back_minutes": 45},
                                       "communities": [_entry("SPRINGFLD"), _entry("CEDARHLS", pool="cedar")]})
    for key in ("CEDARHLS", "cedarhls", "caselle_sync_cedarhls", " CEDARHLS "):
        community = load_community(key, path)
        assert community == load_config(path).get("CEDARHLS"), key
        assert community.pool == "cedar" and community.look_back_minutes == 45


def test_load_community_validates_only_its_own_entry(tmp_path, monkeypatch):
    path = _fleet(tmp_path / "fleet.yaml", 200, broken="C00003")
    assert any(e.community == "C00003" for e in load_config(path).errors), "the other entry really is broken"
    validated: list[object] = []
    real = Community.model_validate.__func__  # type: ignore[attr-defined]

    def counting(cls, obj, *args, **kwargs):
        validated.append(obj.get("code"))
        return real(cls, obj, *args, **kwargs)

    monkeypatch.setattr(Community, "model_validate", classmethod(counting))

    community = load_community("caselle_sync_c00150", path)

    assert community.code == "C00150" and community.pool == "server_30"
    assert validated == ["C00150"]


def test_load_community_missing_names_code_and_path(tmp_path):
    path = _write(tmp_path / "c.yaml", {"communities": [_entry("SPRINGFLD")]})
    with pytest.raises(KeyError) as raised:
        load_community("caselle_sync_nowhere", path)
    assert isinstance(raised.value, CommunityNotLoaded)
    assert str(raised.value) == f"community NOWHERE in {path}: not defined in the configuration"
    assert raised.value.code == "NOWHERE" and raised.value.path == path
    copy = pickle.loads(pickle.dumps(raised.value))
    assert isinstance(copy, CommunityNotLoaded) and str(copy) == str(raised.value)


def test_load_community_invalid_names_code_path_and_field(tmp_path):
    path = _fleet(tmp_path / "fleet.yaml", 20, broken="C00007")
    with pytest.raises(CommunityNotLoaded) as raised:
        load_community("C00007", path)
    message = str(raised.value)
    assert message.startswith(f"community C00007 in {path}: invalid:")
    assert "field 'pool'" in message
    assert [e.community for e in raised.value.errors] == ["C00007"]


def test_load_community_in_a_broken_file_says_so(tmp_path):
    _write(tmp_path / "a.yaml", {"communities": [_entry("SPRINGFLD")]})
    bad = _dedent(tmp_path / "b.yaml", """
        communities:
          - code: CEDARHLS
            caselle_conn_id: caselle_cedarhls
        communities: []
        """)
    with pytest.raises(CommunityNotLoaded, match="not defined") as raised:
        load_community("CEDARHLS", tmp_path)
    assert str(bad) in str(raised.value) and "duplicate key 'communities'" in str(raised.value)


def test_load_community_agrees_with_load_config(tmp_path):
    """Whatever the files hold, a task builds a DAG exactly when the DAG processor does, the same one."""
    _write(tmp_path / "a.yaml", {"defaults": {"pool": "pool_a"}, "communities": [
        _entry("SPRINGFLD"), _entry("TWICE"), _entry("BADONE", schedule="x"), _entry("REPEAT"),
        _entry("REPEAT", pool="second"), _entry("FIRSTBAD", pool="Bad Pool"), _entry("FIRSTBAD")]})
    _write(tmp_path / "b.yaml", {"communities": [_entry("CEDARHLS"), _entry("TWICE")]})
    _dedent(tmp_path / "c.yaml", """
        communities:
          - code: DUPKEY
            caselle_conn_id: one
            caselle_conn_id: two
          - code: MESAVRD
            caselle_conn_id: caselle_mesavrd
        """)
    (tmp_path / "d.yaml").write_text("communities: [{code: LOST, caselle_conn_id: x}")
    loaded = load_config(tmp_path)
    codes = ["SPRINGFLD", "TWICE", "BADONE", "REPEAT", "FIRSTBAD", "CEDARHLS", "DUPKEY", "MESAVRD", "LOST", "NONE"]
    for code in codes:
        try:
            alone: Community | None = load_community(code, tmp_path)
        except CommunityNotLoaded:
            alone = None
        expected = next((c for c in loaded.communities if c.code == code), None)
        assert alone == expected, code
    assert sorted(c.code for c in loaded.communities) == ["CEDARHLS", "FIRSTBAD", "MESAVRD", "REPEAT", "SPRINGFLD"]


def test_load_community_finds_one_in_a_thousand(tmp_path):
    """What it costs is measured by benchmarks/config_load.py (target 0.2 CPU-s), not asserted here."""
    path = _fleet(tmp_path / "fleet.yaml", 1000)
    community = load_community("C00999", path)
    assert community.code == "C00999"
    assert load_community("caselle_sync_c00500", path).code == "C00500"  # by its DAG id too


def test_load_config_of_a_thousand(tmp_path):
    path = _fleet(tmp_path / "fleet.yaml", 1000)
    loaded = load_config(path)
    assert not loaded.errors and len(loaded.communities) == 1000


def test_libyaml_parses_when_present():
    if yaml.__with_libyaml__:
        assert issubclass(config.DuplicateKeyLoader, yaml.CSafeLoader)
    assert issubclass(config.DuplicateKeyLoader, yaml.constructor.SafeConstructor)


DUPLICATED = """
defaults: &base {pool: p, pool: q}
communities:
  - code: A1
    <<: *base
    pool: r
  - {code: B2, quality: {max_amount: 1, max_amount: 2}}
"""


@pytest.mark.parametrize("base", [getattr(yaml, "CSafeLoader", yaml.SafeLoader), yaml.SafeLoader],
                         ids=["libyaml", "pure-python"])
def test_both_loaders_find_the_same_repeats(base):
    loader_class = type("Loader", (config.RecordsDuplicateKeys, base), {})
    document, duplicates = load_yaml(DUPLICATED, loader_class)
    assert document["communities"][0]["pool"] == "r"
    assert duplicates == (config.DuplicateKey(entry=None, key="defaults.pool", line=2, first_line=2),
                          config.DuplicateKey(entry=1, key="quality.max_amount", line=7, first_line=7))


# --- keys written twice -----------------------------------------------------------------------------


def test_duplicate_keys_in_an_entry_cost_that_community_only(tmp_path):
    path = _dedent(tmp_path / "c.yaml", """
        communities:
          - code: SPRINGFLD
            caselle_conn_id: caselle_springfld
            datasets: [accounts]
            datasets: [accounts, charges]
          - code: CEDARHLS
            caselle_conn_id: caselle_cedarhls
          - code: MESAVRD
            caselle_conn_id: caselle_mesavrd
            quality:
              max_amount: 100
              severity: {amount_size: warn}
              max_amount: 200
          - code: FIRSTCODE
            caselle_conn_id: caselle_x
            code: SECONDCODE
          - {code: FLOWED, caselle_conn_id: a, caselle_conn_id: b}
          - caselle_conn_id: caselle_y
            quality: {severity: {amount_size: warn, amount_size: ignore}}
        """)
    loaded = load_config(path)

    assert [c.code for c in loaded.communities] == ["CEDARHLS"]
    messages = {e.community: e.message for e in loaded.errors}
    assert messages == {
        "SPRINGFLD": "duplicate key 'datasets' at line 5 (first at line 4)",
        "MESAVRD": "duplicate key 'quality.max_amount' at line 13 (first at line 11)",
        "SECONDCODE": "duplicate key 'code' at line 16 (first at line 14)",
        "FLOWED": "duplicate key 'caselle_conn_id' at line 17 (first at line 17)",
        "#6": "duplicate key 'quality.severity.amount_size' at line 19 (first at line 19)",
    }
    assert all(e.file == str(path) for e in loaded.errors)
    assert load_community("CEDARHLS", path).code == "CEDARHLS"
    with pytest.raises(CommunityNotLoaded, match=r"duplicate key 'quality\.max_amount'"):
        load_community("MESAVRD", path)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("""
         defaults: {schedule: "*/5 * * * *"}
         communities: [{code: SPRINGFLD, caselle_conn_id: c}]
         defaults: {schedule: "0 * * * *"}
         """, "'defaults' at line 3"),
        ("""
         defaults:
           schedule: "*/5 * * * *"
           pool: one
           schedule: "0 * * * *"
         communities: [{code: SPRINGFLD, caselle_conn_id: c}]
         """, "'defaults.schedule' at line 4 (first at line 2)"),
        ("""
         communities: [{code: CEDARHLS, caselle_conn_id: c}]
         communities: [{code: SPRINGFLD, caselle_conn_id: c}]
         """, "'communities' at line 2"),
    ],
    ids=["top-level", "in-defaults", "communities-twice"],
)
def test_duplicate_key_outside_the_entries_costs_the_file(tmp_path, text, key):
    _write(tmp_path / "a.yaml", {"communities": [_entry("MESAVRD")]})
    bad = _dedent(tmp_path / "b.yaml", textwrap.dedent(text))

    loaded = load_config(tmp_path)

    assert [c.code for c in loaded.communities] == ["MESAVRD"]
    [error] = loaded.errors
    assert error.community == config.FILE and error.file == str(bad)
    assert f"duplicate key {key}" in error.message and "whole file" in error.message
    with pytest.raises(CommunityNotLoaded, match="duplicate key"):
        load_community("SPRINGFLD", tmp_path)


def test_merge_keys_override_without_being_duplicates(tmp_path):
    path = _dedent(tmp_path / "c.yaml", """
        defaults: &base
          schedule: "*/15 * * * *"
          look_back_minutes: 60
        communities:
          - <<: *base
            code: SPRINGFLD
            caselle_conn_id: caselle_springfld
            schedule: "0 * * * *"
          - <<: *base
            code: CEDARHLS
            caselle_conn_id: caselle_cedarhls
        """)
    loaded = load_config(path)
    assert not loaded.errors, loaded.errors
    assert [c.schedule for c in loaded.communities] == ["0 * * * *", "*/15 * * * *"]
    assert load_community("SPRINGFLD", path).schedule == "0 * * * *"


def test_load_yaml_places_each_repeat_in_its_entry():
    document, duplicates = load_yaml(textwrap.dedent("""
        communities:
          - {code: A1, x: 1}
          - code: B2
            quality: {severity: {a: 1}, severity: {b: 2}}
        """))
    assert document["communities"][1]["quality"] == {"severity": {"b": 2}}, "PyYAML keeps the last"
    assert duplicates == (config.DuplicateKey(entry=1, key="quality.severity", line=5, first_line=5),)
    loaded = parse_config(document, duplicates=duplicates)
    assert str(loaded.errors[1]) == "community B2: duplicate key 'quality.severity' at line 5 (first at line 5)"


# --- staggered schedules ----------------------------------------------------------------------------


def _offset(code: str, step: int) -> int:
    return int(hashlib.sha256(code.encode()).hexdigest()[:8], 16) % step


@pytest.mark.parametrize("step", [2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60])
def test_stagger_moves_a_step_minute_to_a_stable_offset(step):
    community = Community(code="SPRINGFLD", caselle_conn_id="c", schedule=f"*/{step} 6-18 * * 1-5")
    expected = f"{_offset('SPRINGFLD', step)}-59/{step} 6-18 * * 1-5"
    assert community.effective_schedule == expected
    assert community.schedule == f"*/{step} 6-18 * * 1-5", "the declared schedule is kept as written"
    assert croniter.is_valid(expected)
    ticks = croniter(expected, datetime(2026, 11, 2, 5, 59))  # a Monday
    fired = [ticks.get_next(datetime) for _ in range(3 * (60 // step))]
    assert {t.minute % step for t in fired} == {_offset("SPRINGFLD", step)}
    assert {(b - a).total_seconds() for a, b in zip(fired, fired[1:], strict=False)} == {step * 60.0}, \
        "still every N minutes, across the hour"


def test_default_schedule_is_staggered_and_valid():
    community = parse_config({"communities": [{"code": "SPRINGFLD", "caselle_conn_id": "c"}]}).get("SPRINGFLD")
    assert community.schedule == "*/5 * * * *" and community.stagger is True
    assert community.effective_schedule == f"{_offset('SPRINGFLD', 5)}-59/5 * * * *"
    assert croniter.is_valid(community.effective_schedule)


@pytest.mark.parametrize("schedule", ["7 * * * *", "0,30 * * * *", "5-59/10 * * * *", "0/5 * * * *",
                                      "*/7 * * * *", "* * * * *", "15 2 * * *"])
def test_pinned_or_unstaggerable_minute_is_kept(schedule):
    assert Community(code="SPRINGFLD", caselle_conn_id="c", schedule=schedule).effective_schedule == schedule


def test_stagger_false_keeps_the_schedule_also_from_defaults():
    loaded = parse_config({"defaults": {"stagger": False}, "communities": [
        {"code": "SPRINGFLD", "caselle_conn_id": "c", "schedule": "*/15 * * * *"},
        {"code": "CEDARHLS", "caselle_conn_id": "c", "schedule": "*/15 * * * *", "stagger": True}]})
    assert loaded.get("SPRINGFLD").effective_schedule == "*/15 * * * *"
    assert loaded.get("CEDARHLS").effective_schedule == f"{_offset('CEDARHLS', 15)}-59/15 * * * *"
    assert "stagger" in str(parse_config({"communities": [{**_entry("MESAVRD"), "stagger": "sometimes"}]}).errors[0])


# Chi-square at the 0.1% level for step - 1 degrees of freedom: above it, the offsets are not uniform.
CHI2_CRITICAL = {5: 18.47, 10: 27.88, 15: 36.12, 30: 58.30}


@pytest.mark.parametrize("pattern", ["C{:05d}", "TOWN_{:04d}"])
@pytest.mark.parametrize("step", sorted(CHI2_CRITICAL))
def test_a_thousand_codes_spread_evenly_over_the_offsets(step, pattern):
    codes = [pattern.format(i) for i in range(1000)]
    schedules = collections.Counter(
        Community(code=code, caselle_conn_id="c", schedule=f"*/{step} * * * *").effective_schedule for code in codes)
    assert len(schedules) == step, "every offset is used"
    share = len(codes) / step
    assert max(schedules.values()) < 2 * share, schedules
    assert sum((n - share) ** 2 / share for n in schedules.values()) < CHI2_CRITICAL[step], schedules


def test_offsets_are_the_same_in_another_process():
    codes = ["SPRINGFLD", "CEDARHLS", "MESAVRD", "C00042"]
    here = [Community(code=c, caselle_conn_id="c").effective_schedule for c in codes]
    script = ("from portal_sync.config import Community\n"
              f"print([Community(code=c, caselle_conn_id='c').effective_schedule for c in {codes!r}])")
    there = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "12345"}).stdout.strip()
    assert there == repr(here)


def test_shipped_configuration_staggers_and_loads_alone():
    loaded = load_config()
    assert not loaded.errors, loaded.errors
    for community in loaded.communities:
        assert load_community(community.dag_id) == community
        assert croniter.is_valid(community.effective_schedule)
