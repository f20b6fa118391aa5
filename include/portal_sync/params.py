"""Trigger-time parameters of a run (Airflow `dag_run.conf`), validated before any work.

A bad value is refused with a message naming the parameter, so an operator's typo
fails the run at once instead of, say, silently reconciling nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from portal_sync.datasets import DATASET_NAMES


class RunRequestError(ValueError):
    pass


class RunRequest(BaseModel):
    """What an operator may ask of one run; the defaults are what a scheduled run does."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    datasets: tuple[str, ...] | None = None  # a subset of the community's data sets
    reconcile: bool = False  # full reconciliation of the incremental data sets now
    reconcile_all_history: bool = False  # ... comparing contents over all history
    window_start: datetime | None = None  # explicit window (aware ISO 8601)
    window_end: datetime | None = None
    dry_run: bool = False  # extract and validate, publish nothing
    allow_mass_delete: tuple[str, ...] = ()  # data sets allowed to exceed the delete guard once

    @field_validator("datasets", "allow_mass_delete")
    @classmethod
    def _known(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        unknown = [v for v in value if v not in DATASET_NAMES]
        if unknown:
            raise ValueError(f"unknown data set(s) {unknown}; known: {list(DATASET_NAMES)}")
        return tuple(value)

    @field_validator("window_start", "window_end")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry a time zone offset, e.g. 2026-11-01T00:00:00+00:00")
        return value

    @model_validator(mode="after")
    def _window_pair(self) -> RunRequest:
        if (self.window_start is None) != (self.window_end is None):
            raise ValueError("window_start and window_end go together")
        if self.window_start and self.window_end and self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        if self.reconcile_all_history and not self.reconcile:
            object.__setattr__(self, "reconcile", True)
        return self

    @classmethod
    def from_conf(cls, conf: dict[str, Any] | None) -> RunRequest:
        try:
            return cls.model_validate(conf or {})
        except ValidationError as exc:
            problems = "; ".join(
                f"parameter '{'.'.join(str(p) for p in err['loc']) or '(conf)'}': {err['msg']}" for err in exc.errors()
            )
            raise RunRequestError(f"invalid run parameters: {problems}") from exc


# An ISO 8601 instant with its offset: what RunRequest accepts, checked by Airflow at trigger time.
_INSTANT = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})$"


def trigger_schema(datasets: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The trigger form of one community as JSON schemas, one per parameter.

    Airflow validates a triggered run's conf against these before the run exists (the REST API
    answers 400 naming the field), so they say as much as a schema can: the community's own data
    sets as a multi-select, instants with their offset. RunRequest still checks what a schema
    cannot (a window's two ends together, end after start).
    """
    names = {"type": "string", "enum": list(datasets)}
    instant = {"type": ["null", "string"], "format": "date-time", "pattern": _INSTANT}
    return {
        "datasets": {"default": None, "type": ["null", "array"], "items": names, "uniqueItems": True,
                     "title": "Data sets", "section": "What to sync",
                     "description": "Only these data sets (empty: all the community syncs). "
                                    "Retry one that failed by choosing it alone."},
        "reconcile": {"default": False, "type": "boolean", "title": "Reconcile now", "section": "What to sync",
                      "description": "Compare every row of the windowed data sets with the portal now "
                                     "(finds deletes), instead of reading only the change window."},
        "reconcile_all_history": {"default": False, "type": "boolean", "title": "Reconcile all history",
                                  "section": "What to sync",
                                  "description": "Reconcile closed periods too (implies reconcile)."},
        "window_start": {"default": None, **instant, "title": "Window start", "section": "Explicit window",
                         "description": "Re-read this window, e.g. 2026-11-01T00:00:00-07:00 (with its offset)."},
        "window_end": {"default": None, **instant, "title": "Window end", "section": "Explicit window",
                       "description": "End of the explicit window, after its start, e.g. 2026-11-02T00:00:00-07:00."},
        "dry_run": {"default": False, "type": "boolean", "title": "Dry run", "section": "Safety",
                    "description": "Extract and validate, publish nothing."},
        "allow_mass_delete": {"default": [], "type": "array", "items": names, "uniqueItems": True,
                              "title": "Allow mass delete", "section": "Safety",
                              "description": "Data sets allowed past the delete guard once, after checking the "
                                             "source really lost the rows."},
    }


# Airflow re-validates every Param against its schema many times while serializing a DAG, each
# time checking the schema itself against its metaschema; draft 7's is about 4x cheaper to check
# than the default 2020-12's and says all these schemas need (docs/benchmarks/fleet.md).
SCHEMA_DRAFT = "http://json-schema.org/draft-07/schema#"


def trigger_params(datasets: tuple[str, ...]) -> dict[str, Any]:
    """``trigger_schema`` as Airflow Params (imported here so the schema stays Airflow-free)."""
    from airflow.sdk import Param

    out = {}
    for name, schema in trigger_schema(datasets).items():
        spec = {"$schema": SCHEMA_DRAFT, **schema}
        default = spec.pop("default")
        out[name] = Param(default, **spec)
    return out
