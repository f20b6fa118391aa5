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
