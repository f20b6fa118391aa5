"""Trigger-time parameters: good ones parse, bad ones are refused naming the parameter."""

from __future__ import annotations

import pytest

from portal_sync.params import RunRequest, RunRequestError


def test_defaults_are_a_scheduled_run():
    request = RunRequest.from_conf(None)
    assert (request.datasets, request.reconcile, request.dry_run, request.allow_mass_delete) == (None, False, False, ())


def test_reconcile_all_history_implies_reconcile():
    assert RunRequest.from_conf({"reconcile_all_history": True}).reconcile


@pytest.mark.parametrize(
    ("conf", "words"),
    [
        ({"datasets": ["acounts"]}, "parameter 'datasets'"),
        ({"allow_mass_delete": ["everything"]}, "parameter 'allow_mass_delete'"),
        ({"window_start": "2026-01-01T00:00:00"}, "time zone offset"),
        ({"window_start": "2026-01-02T00:00:00Z", "window_end": "2026-01-01T00:00:00Z"}, "after window_start"),
        ({"window_start": "2026-01-02T00:00:00Z"}, "go together"),
        ({"dry_run": "maybe"}, "parameter 'dry_run'"),
        ({"full_refresh": True}, "parameter 'full_refresh'"),
    ],
)
def test_bad_parameters_are_refused(conf, words):
    with pytest.raises(RunRequestError, match="invalid run parameters") as info:
        RunRequest.from_conf(conf)
    assert words in str(info.value)


def test_the_trigger_form_refuses_what_its_schema_can_before_the_run_exists():
    import jsonschema

    from portal_sync.params import trigger_schema

    schema = trigger_schema(("accounts", "charges"))

    def ok(name: str, value) -> bool:
        spec = {k: v for k, v in schema[name].items() if k not in ("default", "section")}
        try:
            jsonschema.validate(value, spec, format_checker=jsonschema.FormatChecker())
        except jsonschema.ValidationError:
            return False
        return True

    assert ok("datasets", ["charges"]) and ok("datasets", None)
    assert not ok("datasets", ["payments"])  # not a data set this community syncs
    assert not ok("datasets", ["charges", "charges"])
    assert ok("window_start", "2026-11-01T00:00:00-07:00") and ok("window_end", "2026-11-01T07:00:00Z")
    assert not ok("window_start", "2026-11-01 00:00")  # no offset: which midnight?
    assert not ok("reconcile", "yes")
    assert ok("allow_mass_delete", ["accounts"]) and not ok("allow_mass_delete", ["residents"])
    assert all(spec.get("title") and spec.get("description") and spec.get("section") for spec in schema.values())
