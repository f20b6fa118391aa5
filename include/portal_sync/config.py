"""The communities file: one typed, validated declaration per community.

Each community is validated on its own, so one bad entry is reported (naming the
community and the field) while the others still get their DAGs. Every value that
later becomes part of an SQL identifier or a DAG id is constrained here by pattern,
so nothing a user types reaches SQL as text.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from portal_sync.datasets import ACCOUNT_STATUS, DATASET_NAMES, DEFAULT_MAX_AMOUNT

CONFIG_ENV = "PORTAL_SYNC_CONFIG"
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config" / "communities.yaml"

CommunityCode = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{1,9}$")]
AirflowId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")]


RULE_SEVERITIES = ("refuse", "warn", "ignore")
TABLE_SEVERITIES = ("fail", "warn", "ignore")


class Quality(BaseModel):
    """Data-quality settings: severities per check (``rule`` or ``dataset.rule``) and thresholds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    severity: dict[Annotated[str, Field(pattern=r"^([a-z_]+\.)?[a-z0-9_]+$")], Literal[
        "refuse", "warn", "ignore", "fail"]] = Field(default_factory=dict)
    max_amount: Annotated[float, Field(gt=0)] = DEFAULT_MAX_AMOUNT
    snapshot_change_share: Annotated[float, Field(gt=0.0)] = 0.30
    snapshot_change_min_rows: Annotated[int, Field(ge=0)] = 50
    max_window_rows: Annotated[int, Field(ge=1)] = 2_000_000
    # Great Expectations re-runs every rule as its own queries: it runs only on staged tables of at
    # most this many rows; above, the product's one-scan SQL alone decides (docs/adr/0007).
    gx_max_rows: Annotated[int, Field(ge=0)] = 200_000

    @field_validator("severity")
    @classmethod
    def _known_checks(cls, value: dict[str, str]) -> dict[str, str]:
        from portal_sync.rules import known_checks  # here, so that parsing a DAG loads no extract code

        rows, tables = known_checks()
        for key, severity in value.items():
            name = key.split(".")[-1]
            dataset = key.split(".")[0] if "." in key else None
            if dataset is not None and dataset not in DATASET_NAMES:
                raise ValueError(f"unknown data set {dataset!r} in severity key {key!r}")
            if name in rows:
                if severity not in RULE_SEVERITIES:
                    raise ValueError(f"row check {key!r} takes one of {RULE_SEVERITIES}, not {severity!r}")
            elif name in tables:
                if severity not in TABLE_SEVERITIES:
                    raise ValueError(f"table check {key!r} takes one of {TABLE_SEVERITIES}, not {severity!r}")
            else:
                raise ValueError(f"unknown check {name!r}; known: {sorted(rows | tables)}")
        return value

    def severity_of(self, dataset: str, check: str, default: str) -> str:
        return self.severity.get(f"{dataset}.{check}") or self.severity.get(check) or default


class Community(BaseModel):
    """One community: where its Caselle is, what syncs, how often, what residents see."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: CommunityCode
    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")] | None = None
    caselle_conn_id: AirflowId
    time_zone: str | None = None
    datasets: tuple[str, ...] = DATASET_NAMES
    schedule: str = "*/5 * * * *"
    start_date: date = date(2026, 1, 1)
    visible_statuses: tuple[str, ...] = ("active", "final")
    pool: AirflowId = "default_pool"
    source_org_code: Annotated[str, Field(min_length=1, max_length=10)] | None = None
    # Incremental sync (docs/adr/0004): how far each window reaches back behind the mark,
    # when a full reconciliation runs (cron in the community's local time), how far back
    # it compares row contents, and the share of live rows a run may delete or archive.
    look_back_minutes: Annotated[int, Field(ge=0, le=7 * 24 * 60)] = 30
    reconcile_schedule: str | None = "0 2 * * *"
    reconcile_days: Annotated[int, Field(ge=1, le=36_500)] = 400
    max_delete_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.10
    mass_delete_min_rows: Annotated[int, Field(ge=0)] = 25
    # Data-quality report: runs older than this leave the report site and its detail tables.
    report_keep_days: Annotated[int, Field(ge=1, le=3650)] = 30
    # Per data set: publish at most every N minutes (default: every run of the schedule), and
    # alert when a data set has not published for freshness_factor times its cadence.
    cadence_minutes: dict[str, Annotated[int, Field(ge=1, le=7 * 24 * 60)]] = Field(default_factory=dict)
    freshness_factor: Annotated[float, Field(ge=1.0)] = 3.0
    # Airflow retries of a failed task: first delay, doubled each try up to 10 minutes.
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    retry_delay_seconds: Annotated[int, Field(ge=1, le=3600)] = 30
    # Data sets a one-process run (CLI, pipeline.run_sync) extracts and validates at once: the
    # source read of one uses the client's core while PostgreSQL checks another. Under Airflow
    # each data set is its own task and the executor's parallelism decides.
    parallel_datasets: Annotated[int, Field(ge=1, le=8)] = 2
    # Concurrent reads of one big SQLite table (full and reconciliation reads, rowid ranges): its
    # value checks run in the reading process, one core per read. Other engines read in one stream.
    read_streams: Annotated[int, Field(ge=1, le=8)] = 2
    quality: Quality = Field(default_factory=Quality)

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @field_validator("datasets")
    @classmethod
    def _known_datasets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in value if name not in DATASET_NAMES]
        if unknown:
            raise ValueError(f"unknown data set(s) {unknown}; known: {list(DATASET_NAMES)}")
        if not value:
            raise ValueError("at least one data set must be enabled")
        if len(set(value)) != len(value):
            raise ValueError("a data set is listed twice")
        # Keep the declared publish order whatever order the file uses.
        return tuple(name for name in DATASET_NAMES if name in value)

    @field_validator("schedule", "reconcile_schedule")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not croniter.is_valid(value) or len(value.split()) != 5:
            raise ValueError(f"not a 5-field cron expression: {value!r}")
        return value

    @field_validator("visible_statuses")
    @classmethod
    def _known_statuses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        allowed = tuple(ACCOUNT_STATUS.values())
        unknown = [s for s in value if s not in allowed]
        if unknown:
            raise ValueError(f"unknown account status(es) {unknown}; known: {list(allowed)}")
        return value

    @model_validator(mode="after")
    def _cadence_of_enabled(self) -> Community:
        unknown = [name for name in self.cadence_minutes if name not in self.datasets]
        if unknown:
            raise ValueError(f"cadence_minutes names data set(s) {unknown} that are not enabled")
        return self

    @model_validator(mode="after")
    def _org_code_default(self) -> Community:
        if self.source_org_code is None:
            object.__setattr__(self, "source_org_code", self.code)
        return self

    @property
    def dag_id(self) -> str:
        return f"caselle_sync_{self.code.lower()}"


@dataclass(frozen=True)
class ConfigError:
    """A community (or the file) that could not be loaded, and why."""

    community: str
    message: str

    def __str__(self) -> str:
        return f"community {self.community}: {self.message}"


@dataclass(frozen=True)
class LoadedConfig:
    communities: tuple[Community, ...]
    errors: tuple[ConfigError, ...]

    def get(self, code: str) -> Community:
        for community in self.communities:
            if community.code == code:
                return community
        raise KeyError(f"no valid community {code!r} in the configuration")


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(entry)"
        parts.append(f"field '{where}': {err['msg']}")
    return "; ".join(parts)


def parse_config(document: Any) -> LoadedConfig:
    """Validate a parsed YAML document; never raises for a bad community."""
    if not isinstance(document, dict) or not isinstance(document.get("communities"), list):
        return LoadedConfig((), (ConfigError("(file)", "expected a mapping with a 'communities' list"),))
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, dict):
        return LoadedConfig((), (ConfigError("(file)", "'defaults' must be a mapping"),))
    good: list[Community] = []
    errors: list[ConfigError] = []
    seen: set[str] = set()
    for index, entry in enumerate(document["communities"]):
        label = entry.get("code") if isinstance(entry, dict) else None
        label = label if isinstance(label, str) and re.fullmatch(r"[A-Za-z0-9_]{1,40}", label) else f"#{index + 1}"
        if not isinstance(entry, dict):
            errors.append(ConfigError(label, "entry must be a mapping"))
            continue
        try:
            community = Community.model_validate({**defaults, **entry})
        except ValidationError as exc:
            errors.append(ConfigError(label, _describe(exc)))
            continue
        if community.code in seen:
            errors.append(ConfigError(label, "field 'code': duplicate community code"))
            continue
        seen.add(community.code)
        good.append(community)
    return LoadedConfig(tuple(good), tuple(errors))


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_config(path: Path | None = None) -> LoadedConfig:
    path = path or config_path()
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        return LoadedConfig((), (ConfigError("(file)", f"cannot read {path}: {exc}"),))
    return parse_config(document)
