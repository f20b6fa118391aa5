"""The communities configuration: one typed, validated declaration per community.

``PORTAL_SYNC_CONFIG`` (default ``include/config/communities.yaml``) names a file or a
directory; in a directory every ``*.yaml``/``*.yml`` file (sorted by name, not recursive)
is one document of the same shape: an optional ``defaults:`` mapping, applying to that
file's entries only, and a ``communities:`` list.

Each community is validated on its own, so one bad entry is reported (naming the
community and the field) while the others still get their DAGs. What an error costs:

- an entry that does not validate, or repeats a key (``code:`` twice, or a key twice in a
  nested mapping such as ``quality:``): that community only;
- a file that cannot be read or parsed, or repeats a key at its top level or inside
  ``defaults:``: that file's communities;
- a code defined in two files: that code (every definition of it), since which one was
  meant cannot be known.

PyYAML would silently keep the last of two equal keys; the loader here records them.

Every value that later becomes part of an SQL identifier or a DAG id is constrained here
by pattern, so nothing a user types reaches SQL as text.

A thousand communities on one Airflow: the DAG processor validates them all on every parse
(:func:`load_config`), while a task process reads and validates only its own
(:func:`load_community`). Schedules are staggered (:attr:`Community.effective_schedule`):
communities on the same ``*/N`` cron fire at a per-community minute offset, not all on one tick.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from croniter import croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from portal_sync.config_yaml import (  # noqa: F401 (re-exported: the loader is part of this module's interface)
    DuplicateKey,
    DuplicateKeyLoader,
    RecordsDuplicateKeys,
    load_yaml,
    load_yaml_naming,
)
from portal_sync.datasets import ACCOUNT_STATUS, DATASET_NAMES, DEFAULT_MAX_AMOUNT

CONFIG_ENV = "PORTAL_SYNC_CONFIG"
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config" / "communities.yaml"

DAG_ID_PREFIX = "caselle_sync_"

# Strict: a code is text as written (no bytes from ``!!binary``), so the cheap scan of
# load_community and the full validation agree on which entry is which community.
CommunityCode = Annotated[str, Strict(), Field(pattern=r"^[A-Z][A-Z0-9_]{1,9}$")]
AirflowId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
# An alert recipient: one plain address (no display name, no list separators: the SMTP hook would split
# "a@x, b@y" into two). Checked by pattern, not by DNS: intranet domains such as ``.local`` are fine.
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")


def _email(value: str) -> str:
    if len(value) > 254 or not _EMAIL.fullmatch(value):
        raise ValueError(f"not an email address: {value!r}")
    return value


EmailAddress = Annotated[str, Strict(), AfterValidator(_email)]


RULE_SEVERITIES = ("refuse", "warn", "ignore")
TABLE_SEVERITIES = ("fail", "warn", "ignore")


class Quality(BaseModel):
    """Data-quality settings per check (``rule`` or ``dataset.rule``): severities, the share of rows that must
    pass for Great Expectations to call a row check a success (``mostly``), and thresholds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    severity: dict[Annotated[str, Field(pattern=r"^([a-z_]+\.)?[a-z0-9_]+$")], Literal[
        "refuse", "warn", "ignore", "fail"]] = Field(default_factory=dict)
    max_amount: Annotated[float, Field(gt=0)] = DEFAULT_MAX_AMOUNT
    snapshot_change_share: Annotated[float, Field(gt=0.0)] = 0.30
    snapshot_change_min_rows: Annotated[int, Field(ge=0)] = 50
    max_window_rows: Annotated[int, Field(ge=1)] = 2_000_000
    # GX's success flag and the report's pass/fail only: severity alone decides what is refused.
    mostly: dict[Annotated[str, Field(pattern=r"^([a-z_]+\.)?[a-z0-9_]+$")],
                 Annotated[float, Field(ge=0.0, le=1.0)]] = Field(default_factory=dict)

    @field_validator("severity")
    @classmethod
    def _known_checks(cls, value: dict[str, str]) -> dict[str, str]:
        rows, tables = _check_names()
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

    @field_validator("mostly")
    @classmethod
    def _known_row_checks(cls, value: dict[str, float]) -> dict[str, float]:
        rows, tables = _check_names()
        for key in value:
            name = key.split(".")[-1]
            dataset = key.split(".")[0] if "." in key else None
            if dataset is not None and dataset not in DATASET_NAMES:
                raise ValueError(f"unknown data set {dataset!r} in mostly key {key!r}")
            if name in tables:
                raise ValueError(f"mostly key {key!r}: {name!r} is a table check; mostly applies to row checks")
            if name not in rows:
                raise ValueError(f"unknown check {name!r} in mostly key {key!r}; known row checks: {sorted(rows)}")
        return value

    def severity_of(self, dataset: str, check: str, default: str) -> str:
        return self.severity.get(f"{dataset}.{check}") or self.severity.get(check) or default

    def mostly_of(self, dataset: str, check: str, default: float) -> float:
        """The share of rows that must pass ``check`` of ``dataset`` (``dataset.check`` before ``check``)."""
        for key in (f"{dataset}.{check}", check):
            if key in self.mostly:
                return self.mostly[key]
        return default


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
    # Stagger the schedule: a minute field ``*/N`` (or ``*``) with N dividing 60 becomes
    # ``M-59/N``, M a stable per-code offset in [0, N), so a fleet on one cron does not fire
    # on one tick. An explicit minute field ("7 * * * *", "0,30 * * * *") is kept as written.
    stagger: bool = True
    # Alerts (docs/alerts.md): who is told of failed runs and stale data (a file's ``defaults:`` may set
    # it for all its communities; an entry's own list replaces it), the Airflow SMTP connection, and
    # after how many hours an incident still open is told again (null: only when it opens).
    alert_recipients: tuple[EmailAddress, ...] = ()
    alert_conn_id: AirflowId = "smtp_default"
    alert_reminder_hours: Annotated[float, Field(gt=0, le=24 * 366)] | None = 24.0

    @field_validator("alert_recipients")
    @classmethod
    def _recipients_once(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        seen = [address.lower() for address in value]
        if len(set(seen)) != len(seen):
            raise ValueError("an alert recipient is listed twice")
        return value

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _known_time_zone(value):
            raise ValueError(f"unknown IANA time zone {value!r}")
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
        if not _cron_ok(value):
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
        return f"{DAG_ID_PREFIX}{self.code.lower()}"

    @property
    def effective_schedule(self) -> str:
        """The cron the DAG runs on: ``schedule`` with its minute staggered (see ``stagger``)."""
        return staggered(self.schedule, self.code) if self.stagger else self.schedule


@lru_cache(maxsize=1)
def _check_names() -> tuple[frozenset[str], frozenset[str]]:
    """Row and table check names, computed once (they come from the declarations, not the file)."""
    from portal_sync.rules import known_checks  # here, so that parsing a DAG loads no extract code

    rows, tables = known_checks()
    return frozenset(rows), frozenset(tables)


# A fleet repeats a few zones and crons: validating each distinct value once keeps the
# DAG processor's parse of 1,000 communities cheap.
@lru_cache(maxsize=1024)
def _known_time_zone(value: str) -> bool:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


@lru_cache(maxsize=1024)
def _cron_ok(value: str) -> bool:
    return len(value.split()) == 5 and croniter.is_valid(value)


_STAGGERABLE_MINUTE = re.compile(r"\*(?:/([0-9]{1,2}))?")


def stagger_offset(code: str, step: int) -> int:
    """A minute offset in [0, step) for ``code``: sha256, so every process and Python agrees."""
    return int(hashlib.sha256(code.encode()).hexdigest()[:8], 16) % step


def staggered(schedule: str, code: str) -> str:
    """``schedule`` with a minute field ``*/N`` or ``*`` (N dividing 60) moved to ``M-59/N``.

    Any other minute field was pinned by the user and is kept; so is ``*`` alone (every minute
    has nothing to spread).
    """
    fields = schedule.split()
    match = _STAGGERABLE_MINUTE.fullmatch(fields[0]) if fields else None
    if match is None:
        return schedule
    step = int(match.group(1) or 1)
    if step <= 1 or 60 % step:
        return schedule
    return " ".join([f"{stagger_offset(code, step)}-59/{step}", *fields[1:]])


FILE = "(file)"  # ConfigError.community of an error that costs a whole file


@dataclass(frozen=True)
class ConfigError:
    """A community (or a file, or the configuration) that could not be loaded, and why."""

    community: str
    message: str
    file: str | None = None  # the file it is in, when one file is to blame

    def __str__(self) -> str:
        if self.file is None:
            return f"community {self.community}: {self.message}"
        if self.community == FILE:
            return f"file {self.file}: {self.message}"
        return f"community {self.community} in {self.file}: {self.message}"


@dataclass(frozen=True)
class LoadedConfig:
    communities: tuple[Community, ...]
    errors: tuple[ConfigError, ...]

    def get(self, code: str) -> Community:
        for community in self.communities:
            if community.code == code:
                return community
        raise KeyError(f"no valid community {code!r} in the configuration")


class CommunityNotLoaded(KeyError):
    """:func:`load_community` has no valid definition of the community (missing, invalid, defined twice)."""

    def __init__(self, code: str, path: Path, reason: str, errors: Iterable[ConfigError] = ()) -> None:
        super().__init__(f"community {code} in {path}: {reason}")
        self.code = code
        self.path = path
        self.reason = reason
        self.errors = tuple(errors)

    def __str__(self) -> str:  # KeyError would show the message quoted, as a repr
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:  # picklable, for processes that report it elsewhere
        return (type(self), (self.code, self.path, self.reason, self.errors))


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(entry)"
        parts.append(f"field '{where}': {err['msg']}")
    return "; ".join(parts)


def _label(index: int, entry: Any) -> str:
    label = entry.get("code") if isinstance(entry, dict) else None
    return label if isinstance(label, str) and re.fullmatch(r"[A-Za-z0-9_]{1,40}", label) else f"#{index + 1}"


def _raw_code(entry: Any) -> str | None:
    """The code an entry claims, before validation (upper case): what the cheap scan compares."""
    code = entry.get("code") if isinstance(entry, dict) else None
    return code.upper() if isinstance(code, str) else None


def _shape(document: Any, duplicates: Sequence[DuplicateKey],
           file: str | None) -> tuple[list[Any], dict[str, Any]] | ConfigError:
    """The file's entries and defaults, or why the whole file is refused."""
    whole_file = [d.describe() for d in duplicates if d.entry is None]
    if whole_file:
        return ConfigError(FILE, "; ".join(whole_file) + " (outside a community entry: the whole file is refused)",
                           file)
    if not isinstance(document, dict) or not isinstance(document.get("communities"), list):
        return ConfigError(FILE, "expected a mapping with a 'communities' list", file)
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, dict):
        return ConfigError(FILE, "'defaults' must be a mapping", file)
    return document["communities"], defaults


def _validate_entry(index: int, entry: Any, defaults: dict[str, Any], duplicates: Sequence[DuplicateKey],
                    file: str | None) -> Community | ConfigError:
    label = _label(index, entry)
    if not isinstance(entry, dict):
        return ConfigError(label, "entry must be a mapping", file)
    if duplicates:
        return ConfigError(label, "; ".join(d.describe() for d in duplicates), file)
    try:
        return Community.model_validate({**defaults, **entry})
    except ValidationError as exc:
        return ConfigError(label, _describe(exc), file)


def _parse(document: Any, file: str | None, duplicates: Sequence[DuplicateKey]) -> tuple[LoadedConfig, set[str]]:
    """One document validated, and the codes its entries claim (for the check across files)."""
    shape = _shape(document, duplicates, file)
    if isinstance(shape, ConfigError):
        return LoadedConfig((), (shape,)), set()
    entries, defaults = shape
    by_entry: dict[int, list[DuplicateKey]] = {}
    for duplicate in duplicates:
        by_entry.setdefault(duplicate.entry, []).append(duplicate)  # type: ignore[arg-type]
    good: list[Community] = []
    errors: list[ConfigError] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        result = _validate_entry(index, entry, defaults, by_entry.get(index, ()), file)
        if isinstance(result, ConfigError):
            errors.append(result)
        elif result.code in seen:
            errors.append(ConfigError(_label(index, entry), "field 'code': duplicate community code", file))
        else:
            seen.add(result.code)
            good.append(result)
    claimed = {code for code in map(_raw_code, entries) if code is not None}
    return LoadedConfig(tuple(good), tuple(errors)), claimed


def parse_config(document: Any, *, file: str | None = None,
                 duplicates: Sequence[DuplicateKey] = ()) -> LoadedConfig:
    """Validate one parsed YAML document; never raises for a bad community.

    ``duplicates`` are the repeated keys :func:`load_yaml` found in it; ``file`` names it in errors.
    Within one document the first valid entry of a code wins and a later one is an error.
    """
    return _parse(document, file, duplicates)[0]


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def _config_files(path: Path) -> list[Path] | ConfigError:
    """The file, or the directory's ``*.yaml``/``*.yml`` files by name (hidden ones skipped)."""
    if not path.is_dir():
        return [path]
    try:
        files = sorted((p for p in path.iterdir()
                        if p.suffix in (".yaml", ".yml") and not p.name.startswith(".") and not p.is_dir()),
                       key=lambda p: p.name)
    except OSError as exc:
        return ConfigError(FILE, f"cannot list the directory: {exc}", str(path))
    return files or ConfigError(FILE, "no *.yaml or *.yml file in this directory", str(path))


def _read(file: Path, code: str | None = None, text: str | None = None,
          ) -> tuple[Any, tuple[DuplicateKey, ...], list[int] | None] | ConfigError:
    """The file's document and repeated keys; with ``code``, only the entries that could be that code's
    and their indexes in the file (:func:`load_yaml_naming`), else every entry (indexes None)."""
    try:
        text = file.read_text(encoding="utf-8") if text is None else text
        if code is None:
            return (*load_yaml(text), None)
        return load_yaml_naming(text, code)
    except (OSError, ValueError, yaml.YAMLError) as exc:  # ValueError: undecodable text, impossible date
        return ConfigError(FILE, f"cannot read or parse it: {exc}", str(file))


def load_config(path: Path | None = None) -> LoadedConfig:
    """Every community of the configuration (a file or a directory of files), validated.

    Never raises: a broken file costs its communities, a bad entry its community, and a code
    defined in two files that code; each is a :class:`ConfigError`.
    """
    path = Path(path) if path else config_path()
    files = _config_files(path)
    if isinstance(files, ConfigError):
        return LoadedConfig((), (files,))
    communities: list[Community] = []
    errors: list[ConfigError] = []
    defined_in: dict[str, list[str]] = {}
    for file in files:
        read = _read(file)
        if isinstance(read, ConfigError):
            errors.append(read)
            continue
        loaded, claimed = _parse(read[0], str(file), read[1])
        communities.extend(loaded.communities)
        errors.extend(loaded.errors)
        for code in claimed:
            defined_in.setdefault(code, []).append(str(file))
    twice = {code: names for code, names in defined_in.items() if len(names) > 1}
    if twice:
        communities = [c for c in communities if c.code not in twice]
        errors.extend(ConfigError(code, _defined_twice(names)) for code, names in sorted(twice.items()))
    return LoadedConfig(tuple(communities), tuple(errors))


def _defined_twice(files: Sequence[str]) -> str:
    return f"field 'code': defined in more than one file ({', '.join(files)}); none of them is loaded"


def _code_of(key: str) -> str:
    key = key.strip()
    if key.lower().startswith(DAG_ID_PREFIX):  # longer than any code: never a code itself
        key = key[len(DAG_ID_PREFIX):]
    return key.upper()


def load_community(key: str, path: Path | None = None) -> Community:
    """One community, by code or dag_id, validating only it: what a task process needs.

    Parses the file(s) once and validates only the entry whose code matches (case-insensitively)
    with its file's defaults, following the rules of :func:`load_config` (first valid entry of a
    file wins; a code in two files, a repeated key or a broken file loads nothing), so a task
    builds exactly the DAG the DAG processor built. In a directory, files whose text cannot
    name the code are not parsed; in a file, entries whose text cannot name it are parsed but
    not built (:func:`~portal_sync.config_yaml.load_yaml_naming`). Raises
    :class:`CommunityNotLoaded` (a ``KeyError``) naming the code and the configuration path
    when there is no valid definition.
    """
    path = Path(path) if path else config_path()
    code = _code_of(key)
    files = _config_files(path)
    if isinstance(files, ConfigError):
        raise CommunityNotLoaded(code, path, str(files), (files,))
    found: list[tuple[str, int, Any, dict[str, Any], list[DuplicateKey]]] = []
    broken: list[ConfigError] = []
    for file in files:
        text = None
        if len(files) > 1:
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, ValueError) as exc:
                broken.append(ConfigError(FILE, f"cannot read or parse it: {exc}", str(file)))
                continue
            if code not in text.upper() and "\\" not in text:  # only an escape could spell it otherwise
                continue
        read = _read(file, code, text)
        if isinstance(read, ConfigError):
            broken.append(read)
            continue
        document, duplicates, indexes = read
        shape = _shape(document, duplicates, str(file))
        if isinstance(shape, ConfigError):
            broken.append(shape)
            continue
        entries, defaults = shape
        for index, entry in zip(indexes, entries, strict=True):
            if _raw_code(entry) == code:
                found.append((str(file), index, entry, defaults, [d for d in duplicates if d.entry == index]))
    defining = list(dict.fromkeys(file for file, *_ in found))
    if len(defining) > 1:
        raise CommunityNotLoaded(code, path, _defined_twice(defining))
    errors: list[ConfigError] = []
    for file, index, entry, defaults, duplicates in found:
        result = _validate_entry(index, entry, defaults, duplicates, file)
        if isinstance(result, Community):
            return result
        errors.append(result)
    if errors:
        raise CommunityNotLoaded(code, path, "invalid: " + "; ".join(str(e) for e in errors), errors)
    reason = "not defined in the configuration"
    if broken:
        reason += " (files not loaded: " + "; ".join(str(e) for e in broken) + ")"
    raise CommunityNotLoaded(code, path, reason, broken)
