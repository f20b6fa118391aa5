"""The stored GX suites (include/portal_sync/suites) are the ones generated from the declarations, and
every row rule maps to standard or named custom expectations."""

from __future__ import annotations

import json

import pytest

from portal_sync import expectations
from portal_sync.datasets import DATASETS
from portal_sync.rules import known_checks, rules_for

CUSTOM = set(expectations.CUSTOM_TYPES)


def test_stored_suites_match_the_declarations() -> None:
    stale = expectations.stale_suites()
    assert stale == [], f"stale suites {stale}: run python -m portal_sync.expectations --write"
    assert expectations.main(["--check"]) == 0


def test_a_changed_declaration_shows_as_a_stale_suite(monkeypatch: pytest.MonkeyPatch) -> None:
    generated = expectations.suite_json
    monkeypatch.setattr(expectations, "suite_json", lambda ds: {**generated(ds), "notes": "changed"}
                        if ds.name == "charges" else generated(ds))
    assert expectations.stale_suites() == ["charges"]
    assert expectations.main(["--check"]) == 1


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_row_rule_is_a_standard_or_named_custom_expectation(name: str) -> None:
    ds = DATASETS[name]
    rules = {r.name: r for r in rules_for(ds, mask="###")}  # with a mask: every rule there can be
    specs = expectations.specs_for(ds)
    assert {s.rule for s in specs} == set(rules)
    stored = expectations.stored_suite(name)
    assert [e["meta"]["portal_sync"]["expectation"] for e in stored["expectations"]] == [s.key for s in specs]
    for entry, spec in zip(stored["expectations"], specs, strict=True):
        meta = entry["meta"]["portal_sync"]
        assert (meta["rule"], meta["severity"]) == (spec.rule, rules[spec.rule].severity)
        assert entry["type"] == spec.type and entry["description"]
        if spec.type in CUSTOM:  # our SQL, named: the query holds the rule's own predicate
            assert "unexpected_rows_query" in entry["kwargs"] and "{batch}" in entry["kwargs"]["unexpected_rows_query"]
        else:
            assert "unexpected_rows_query" not in entry["kwargs"]
        # mostly is a run-time parameter per rule; the stored default: 0.99 plausibility, 1.0 integrity
        assert entry["kwargs"]["mostly"] == {"$PARAMETER": f"mostly__{spec.rule}"}
        assert meta["mostly"] == (expectations.MOSTLY_PLAUSIBLE if spec.severity == "warn" else 1.0)
        assert stored["meta"]["portal_sync"]["mostly"][f"mostly__{spec.rule}"] == meta["mostly"]


def test_at_least_forty_standard_expectations_and_all_known_rules_covered() -> None:
    standard = [e for name in DATASETS for e in expectations.stored_suite(name)["expectations"]
                if e["type"] not in CUSTOM]
    assert len(standard) >= 40
    kinds = {e["type"] for e in standard}
    assert {"expect_column_values_to_not_be_null", "expect_column_values_to_be_in_set",
            "expect_column_value_lengths_to_be_between", "expect_column_values_to_be_between",
            "expect_column_values_to_match_regex", "expect_column_pair_values_a_to_be_greater_than_b",
            "expect_multicolumn_sum_to_equal"} <= kinds
    row_checks, _ = known_checks()
    mapped = {s.rule for ds in DATASETS.values() for s in expectations.specs_for(ds)}
    assert mapped == row_checks
    assert sum(len(rules_for(ds, mask="###")) for ds in DATASETS.values()) == 66


def test_stored_suites_load_in_great_expectations_with_the_named_custom_classes() -> None:
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
    from great_expectations.expectations.registry import get_expectation_impl

    classes = expectations.custom_classes()
    assert set(classes) == {"ExpectStagedKeyToBeUnique", "ExpectColumnValuesToBeExactMoney", "ExpectReferenceToResolve"}
    assert expectations.ExpectReferenceToResolve is classes["ExpectReferenceToResolve"]
    for cls in classes.values():
        assert cls.__mro__[2].__name__ == "UnexpectedRowsExpectation" and cls.__fields__["description"].default
    for name in DATASETS:
        for entry in expectations.stored_suite(name)["expectations"]:
            config = ExpectationConfiguration(type=entry["type"], kwargs=entry["kwargs"], meta=entry["meta"])
            expectation = config.to_domain_obj()
            assert type(expectation) is get_expectation_impl(entry["type"])
    json.dumps(expectations.suite_json(DATASETS["balances"]))


def test_the_runs_mostly_overrides_the_stored_default_per_rule() -> None:
    params = expectations.gx_parameters({"max_amount": "500", "min_date": "1950-01-01"},
                                        {"implausible_date": 0.5, "key_unique": 0.9})
    assert params["mostly__implausible_date"] == 0.5 and params["mostly__key_unique"] == 0.9
    assert params["mostly__amount_size"] == expectations.MOSTLY_PLAUSIBLE  # not tuned: the stored default
    assert params["mostly__key_not_null"] == 1.0
    assert params["max_amount"] == 500.0 and params["min_amount"] == -500.0


def test_rules_carry_the_communitys_mostly_and_keep_their_severity() -> None:
    from portal_sync.config import Quality

    quality = Quality(mostly={"charges.implausible_date": 0.5, "key_unique": 0.9}, severity={"key_unique": "warn"})
    rules = {r.name: r for r in rules_for(DATASETS["charges"], quality)}
    assert rules["implausible_date"].mostly == 0.5 and rules["implausible_date"].severity == "warn"
    assert rules["key_unique"].mostly == 0.9 and rules["key_unique"].severity == "warn"
    assert rules["amount_size"].mostly == expectations.MOSTLY_PLAUSIBLE and rules["money_exact"].mostly == 1.0
    other = {r.name: r for r in rules_for(DATASETS["payments"], quality)}
    assert other["implausible_date"].mostly == expectations.MOSTLY_PLAUSIBLE  # tuned for charges only
