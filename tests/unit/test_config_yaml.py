"""Reading one community out of a large file: the same result as reading the whole file, with the
other entries left out, or the same error."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from portal_sync import config_yaml
from portal_sync.config_yaml import load_yaml, load_yaml_naming


def _outcome(load, *args):
    try:
        return "ok", load(*args)
    except (ValueError, yaml.YAMLError) as exc:
        return "error", (type(exc), str(exc))


def assert_agrees(text: str, code: str) -> list[int]:
    """load_yaml_naming(text, code) is load_yaml(text) with the other entries removed; returns the kept indexes."""
    full_kind, full = _outcome(load_yaml, text)
    part_kind, part = _outcome(load_yaml_naming, text, code)
    assert (part_kind, part if part_kind == "error" else None) == (full_kind, full if full_kind == "error" else None)
    if full_kind == "error":
        return []
    (document, duplicates), (kept, kept_duplicates, indexes) = full, part
    if not (isinstance(document, dict) and isinstance(document.get("communities"), list)):
        assert (kept, kept_duplicates, indexes) == (document, duplicates, [])
        return indexes
    entries = document["communities"]
    assert kept["communities"] == [entries[i] for i in indexes]
    assert {k: v for k, v in kept.items() if k != "communities"} == {
        k: v for k, v in document.items() if k != "communities"}
    claims = [i for i, e in enumerate(entries) if isinstance(e, dict) and str(e.get("code", "")).upper() == code]
    assert set(claims) <= set(indexes), "every entry that is the code's is kept"
    assert kept_duplicates == tuple(d for d in duplicates if d.entry is None or d.entry in indexes)
    return indexes


def _doc(*entries: str, head: str = "defaults:\n  start_date: 2026-11-01\n") -> str:
    return head + "communities:\n" + "".join(textwrap.indent(textwrap.dedent(e).strip(), "  ") + "\n"
                                             for e in entries)


PLAIN = ["- code: C00001\n  pool: p1\n  since: 2026-01-02\n  n: 0x1F\n  f: .inf\n  b: yes\n  z: ~",
         "- code: C00002\n  pool: p2\n  quality: {max_amount: 10.5, severity: {a: warn}}\n  list: [1, 'two']",
         "- code: C00003\n  note: \"quoted: C00002 is elsewhere\"\n  block: |\n    text\n    more"]


def test_a_plain_file_keeps_only_the_entries_that_name_the_code():
    text = _doc(*PLAIN)
    assert assert_agrees(text, "C00001") == [0]
    assert assert_agrees(text, "C00002") == [1, 2], "the third names it in a value: kept, then not its code"
    assert assert_agrees(text, "NOWHERE") == []


def test_case_and_escapes_keep_an_entry():
    text = _doc("- code: c00007\n  pool: p", '- code: "C0000\\x38"\n  pool: q', "- code: C00009\n  pool: r")
    assert assert_agrees(text, "C00007") == [0, 1]
    assert assert_agrees(text, "C00008") == [1]


@pytest.mark.parametrize("entry", [
    "- code: C00002\n  start_date: 2026-13-45",  # an impossible date: the whole file is refused
    "- code: C00002\n  pool: !unknown x",  # no constructor for the tag
    "- code: C00002\n  ? [a, b]\n  : c",  # a list as a key: unhashable
    "- code: C00002\n  <<: 5",  # a merge of a scalar
    "- code: C00002\n  data: !!binary not*base64",
], ids=["impossible-date", "unknown-tag", "list-key", "bad-merge", "bad-binary"])
def test_an_entry_left_out_that_would_break_the_file_breaks_it_the_same(entry):
    text = _doc("- code: C00001\n  pool: p", entry)
    full_kind, _ = _outcome(load_yaml, text)
    assert full_kind == "error", "the case really breaks the whole file"
    assert_agrees(text, "C00001")


@pytest.mark.parametrize("entry", [
    "- code: C00002\n  <<: {pool: merged}",
    "- code: C00002\n  pool: !!str 12",
    "- &base\n  code: C00002\n  pool: p",
    "- code: C00002\n  since: 2026-02-03 04:05:06",
    "- code: C00002\n  =: x",
], ids=["merge", "explicit-tag", "anchor", "timestamp", "value-key"])
def test_what_an_entry_left_out_may_hold_and_still_agree(entry):
    assert_agrees(_doc("- code: C00001\n  pool: p", entry, "- code: C00003\n  pool: <<"), "C00001")


def test_an_alias_reaching_into_another_entry():
    text = _doc("- code: C00002\n  quality: &q {max_amount: 5}", "- code: C00001\n  quality: *q")
    assert assert_agrees(text, "C00001") == [0, 1], "read as a whole: the alias needs the other entry"


def test_repeated_keys_keep_their_entry_index():
    text = _doc("- code: C00001\n  pool: p", "- code: C00002\n  pool: a\n  pool: b",
                "- code: C00003\n  pool: a\n  pool: b", head="defaults:\n  pool: x\n  pool: y\n")
    assert assert_agrees(text, "C00003") == [2]
    _, duplicates, _ = load_yaml_naming(text, "C00003")
    assert [(d.entry, d.key) for d in duplicates] == [(None, "defaults.pool"), (2, "pool")]


@pytest.mark.parametrize("text", [
    "communities: [unclosed",
    _doc(*PLAIN) + "communities: []\n",  # two lists: refused as a repeated key
    _doc(*PLAIN) + "---\ncommunities: []\n",  # two documents
    "- just\n- a list\n",
    "",
    "communities:\n- code: C00001\n  pool: p\n- plain scalar entry\n- [C00001]\n",
], ids=["syntax", "two-lists", "two-documents", "top-level-list", "empty", "odd-entries"])
def test_odd_files_agree(text):
    assert_agrees(text, "C00001")


def test_a_generated_fleet_builds_one_entry(monkeypatch):
    entries = [f"- code: C{i:05d}\n  caselle_conn_id: caselle_c{i:05d}\n  time_zone: America/Denver\n"
               f"  datasets: [accounts, charges]\n  quality: {{severity: {{orphan_account: warn}}}}"
               for i in range(300)]
    text = _doc(*entries)
    built: list[object] = []
    real = config_yaml._EventListLoader.construct_document

    def counting(self, node):
        document = real(self, node)
        built.extend(document.get("communities") or [])
        return document

    monkeypatch.setattr(config_yaml._EventListLoader, "construct_document", counting)
    assert assert_agrees(text, "C00150") == [150]
    assert [e["code"] for e in built] == ["C00150"]


def test_the_collector_is_held_while_reading_and_given_back_after_an_error():
    import gc

    seen: list[bool] = []
    real = config_yaml._EventListLoader.construct_document

    def watching(self, node):
        seen.append(gc.isenabled())
        return real(self, node)

    assert gc.isenabled()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(config_yaml._EventListLoader, "construct_document", watching)
        load_yaml_naming(_doc(*PLAIN), "C00001")
    assert seen == [False] and gc.isenabled()
    with pytest.raises(yaml.YAMLError):
        load_yaml_naming("communities: [unclosed", "C00001")
    assert gc.isenabled()
    gc.disable()
    try:
        load_yaml(_doc(*PLAIN))
        assert not gc.isenabled(), "a caller's own choice is left as it was"
    finally:
        gc.enable()
