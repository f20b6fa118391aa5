"""The data-quality report: a static site per community that analysts open from disk, offline.

Great Expectations' Data Docs load scripts and styles from public CDNs and a tracking
image, so the project renders its own pages from the sync tables instead (queries in
``store.reads``, pages in ``reporting``): every value is HTML-escaped, CSS and the one
script are inline (allowed by a Content-Security-Policy hash, nothing else may load) and
no page contains an external URL.

Layout under ``report_dir(community)``::

    index.html           the latest INDEX_RUNS runs (rendered by inline JS, <noscript> table) + month links
    runs/<run_key>.html  one page per run, written once when the run is reported
    runs/<run_key>.gx.json  the run's Great Expectations results as GX wrote them (linked from its page)
    history/YYYY-MM.html every run of one month (site time zone)

Building a run's report writes three files (its page, its month, the index) and reads a
bounded number of rows, whatever the number of runs kept; ``prune`` enforces retention.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg

from portal_sync.reporting import html, model, text
from portal_sync.reporting.format import TEXT_LIMIT, json_for_script, site_esc, zone
from portal_sync.reporting.model import DatasetStatus, RunDetail, RunSummary
from portal_sync.store import gx_results, reads

__all__ = [
    "EXAMPLES_PER_CHECK", "INDEX_RUNS", "TEXT_LIMIT", "DatasetStatus", "RunDetail", "RunSummary", "build_run_report",
    "build_site", "format_summary", "json_for_script", "page_name", "prune", "render_index", "render_month",
    "render_run_page", "report_dir", "site_esc", "summary_line",
]

INDEX_RUNS = 60  # runs listed on index.html; older ones are on the month pages
EXAMPLES_PER_CHECK = 20  # example rows shown per failing check on a run page
_COMMUNITY_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SAFE_KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,100}")
_MONTH_PAGE_RE = re.compile(r"(\d{4})-(\d{2})\.html")


# --------------------------------------------------------------------------- paths


def project_root() -> Path:
    """The checkout the package runs from (include/ lives directly under it)."""
    return Path(__file__).resolve().parents[2]


def _check_community(community: str) -> str:
    """Community codes become directory names: refuse anything that could escape the report root."""
    if not _COMMUNITY_RE.fullmatch(community or ""):
        raise ValueError(f"not a community code: {community!r}")
    return community


def report_dir(community: str) -> Path:
    """Where a community's site lives: $PORTAL_SYNC_REPORT_DIR/<code> or <project>/.airflow/dq_reports/<code>."""
    name = _check_community(community).lower()
    base = os.environ.get("PORTAL_SYNC_REPORT_DIR")
    root = Path(base) if base else project_root() / ".airflow" / "dq_reports"
    return root / name


def page_name(run_key: str) -> str:
    """A run page's file name; run keys are identifier-safe, anything else is made so without collisions."""
    if _SAFE_KEY_RE.fullmatch(run_key):
        return f"{run_key}.html"
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", run_key)[:60]
    return f"{cleaned}-{hashlib.sha256(run_key.encode()).hexdigest()[:12]}.html"


def month_bounds(year: int, month: int, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """A calendar month on the site's clock, as [start, end)."""
    start = datetime(year, month, 1, tzinfo=tz)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=tz)
    return start, end


# --------------------------------------------------------------------------- pages


def site_zone(conn: psycopg.Connection, community: str) -> ZoneInfo:
    """The community's time zone (its latest run that knows it): months and times are local to it."""
    return zone(reads.latest_time_zone(conn, community))


def render_run_page(detail: RunDetail, tz: ZoneInfo, month_page: str, gx_json: str | None = None) -> str:
    return html.render_run_page(detail, tz, month_page, EXAMPLES_PER_CHECK, gx_json)


def gx_json_name(run_key: str) -> str:
    """The run's GX result file, next to its page (``<page>.gx.json``)."""
    return page_name(run_key).removesuffix(".html") + ".gx.json"


def render_index(community: str, summaries: list[RunSummary], months: list[str], tz: ZoneInfo,
                 trends: model.Trends | None = None) -> str:
    return html.render_index(community, summaries, months, tz, INDEX_RUNS, trends=trends)


render_month = html.render_month


# --------------------------------------------------------------------------- writing the site


class Site:
    """One community's report directory and the files one build wrote."""

    def __init__(self, out: Path, community: str) -> None:
        self.out = out
        self.community = community
        self.written: list[Path] = []
        (out / "runs").mkdir(parents=True, exist_ok=True)
        (out / "history").mkdir(parents=True, exist_ok=True)

    @classmethod
    def of(cls, community: str, out_dir: Path | None) -> Site:
        return cls(Path(out_dir) if out_dir else report_dir(community), _check_community(community))

    def write(self, relative: str, page: str) -> Path:
        """Atomic replace: an analyst reloading mid-build sees the old page or the new one, never half."""
        path = self.out / relative
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".html", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(page)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.written.append(path)
        return path

    def has_page(self, run_key: str) -> bool:
        return (self.out / "runs" / page_name(run_key)).exists()

    def with_pages(self, summaries: list[RunSummary]) -> list[RunSummary]:
        for s in summaries:
            s.page = f"runs/{page_name(s.run['run_key'])}" if self.has_page(s.run["run_key"]) else None
        return summaries

    def months(self) -> list[str]:
        found = [p.name[:-5] for p in (self.out / "history").iterdir() if _MONTH_PAGE_RE.fullmatch(p.name)]
        return sorted(found, reverse=True)

    def write_run(self, conn: psycopg.Connection, run_key: str, tz: ZoneInfo) -> tuple[int, int]:
        detail = model.run_detail(conn, self.community, run_key, EXAMPLES_PER_CHECK)
        local = detail.run["started_at"].astimezone(tz)
        gx_file: str | None = gx_json_name(run_key)
        validations = gx_results.result_json(conn, run_key)
        if validations:  # the download: GX's own JSON per data set, as sync.gx_validations keeps it
            self.write(f"runs/{gx_file}", json.dumps({"run_key": run_key, "community": self.community,
                                                       "datasets": validations}, indent=1, default=str) + "\n")
        else:
            (self.out / "runs" / str(gx_file)).unlink(missing_ok=True)
            gx_file = None
        self.write(f"runs/{page_name(run_key)}",
                   render_run_page(detail, tz, f"history/{local:%Y-%m}.html", gx_file))
        return local.year, local.month

    def write_month(self, conn: psycopg.Connection, year: int, month: int, tz: ZoneInfo) -> None:
        runs = reads.runs_between(conn, self.community, *month_bounds(year, month, tz))
        label = f"{year:04d}-{month:02d}"
        if not runs:
            (self.out / "history" / f"{label}.html").unlink(missing_ok=True)
            return
        summaries = self.with_pages(model.summaries(conn, runs))
        self.write(f"history/{label}.html", render_month(self.community, label, summaries, tz))

    def write_index(self, conn: psycopg.Connection, tz: ZoneInfo) -> Path:
        summaries = self.with_pages(model.summaries(conn, reads.latest_runs(conn, self.community, INDEX_RUNS)))
        trends = model.trends(conn, self.community, tz)
        return self.write("index.html", render_index(self.community, summaries, self.months(), tz, trends))


def build_run_report(portal_url: str, community: str, run_key: str, out_dir: Path | None = None) -> Path:
    """Write the run's page, rewrite its month page and the index; return the index path.

    Three files and a bounded number of rows (one run, one month, INDEX_RUNS runs), however many runs are kept.
    """
    site = Site.of(community, out_dir)
    with reads.connect(portal_url) as conn:
        tz = site_zone(conn, community)
        year, month = site.write_run(conn, run_key, tz)
        site.write_month(conn, year, month, tz)
        return site.write_index(conn, tz)


def build_site(portal_url: str, community: str, out_dir: Path | None = None,
               run_key: str | None = None) -> tuple[Path, list[Path]]:
    """Refresh the site from the shell: (re)write the given or latest run's page, add missing pages of the
    runs the index lists, rewrite their months and the index. Returns the index path and the files written."""
    site = Site.of(community, out_dir)
    with reads.connect(portal_url) as conn:
        tz = site_zone(conn, community)
        latest = [r["run_key"] for r in reads.latest_runs(conn, community, INDEX_RUNS)]
        targets = [run_key] if run_key else latest[:1]
        targets += [key for key in latest if key not in targets and not site.has_page(key)]
        months = {site.write_run(conn, key, tz) for key in targets}
        for year, month in sorted(months):
            site.write_month(conn, year, month, tz)
        index = site.write_index(conn, tz)
    return index, site.written


def prune(portal_url: str, community: str, keep_days: int, out_dir: Path | None = None) -> int:
    """Delete pages, findings and check results of the community's runs started more than keep_days ago.

    The run and per-data-set rows stay: they are small and are the sync's own history. Month
    pages that fall wholly before the cutoff go; the cutoff's month and the index are rewritten
    so they link only to pages that still exist. Returns the number of run pages removed.
    """
    if keep_days < 0:
        raise ValueError("keep_days must be >= 0")
    site = Site.of(community, out_dir)
    cutoff = datetime.now(UTC) - timedelta(days=keep_days)
    with reads.connect(portal_url) as conn:
        tz = site_zone(conn, community)
        old = reads.run_keys_started_before(conn, community, cutoff)
        reads.delete_report_rows_before(conn, community, cutoff)
        gx_results.delete_before(conn, community, cutoff)
        pages = {p.name for p in (site.out / "runs").iterdir() if p.suffix == ".html"}
        removed = 0
        for key in old:
            name = page_name(key)
            if name in pages:
                (site.out / "runs" / name).unlink(missing_ok=True)
                removed += 1
            (site.out / "runs" / gx_json_name(key)).unlink(missing_ok=True)
        local_cutoff = cutoff.astimezone(tz)
        for label in site.months():
            if (int(label[:4]), int(label[5:7])) < (local_cutoff.year, local_cutoff.month):
                (site.out / "history" / f"{label}.html").unlink(missing_ok=True)
        if removed:
            site.write_month(conn, local_cutoff.year, local_cutoff.month, tz)
        site.write_index(conn, tz)
    return removed


# --------------------------------------------------------------------------- plain text


def summary_line(portal_url: str, community: str, run_key: str, out_dir: Path | None = None) -> str:
    """The last line of the report task's log: counts, the failed checks and where the report is."""
    _check_community(community)
    with reads.connect(portal_url) as conn:
        checks = reads.checks_of_run(conn, run_key)
    return text.dq_line(community, checks, (Path(out_dir) if out_dir else report_dir(community)) / "index.html")


def format_summary(portal_url: str, community: str, runs: int = 5) -> str:
    """The last runs, per data set: checks passed/failed, rows refused/warned, the rules that hit most and
    the row counts (the text of ``portal-sync runs``)."""
    _check_community(community)
    with reads.connect(portal_url) as conn:
        return text.format_runs(model.run_history(conn, community, runs))


# --------------------------------------------------------------------------- the site served from the database
#
# The status page serves these pages per request, so the report is whole whichever worker ran a run (each
# writes its files on its own disk only). Same pages, relative links and policy as the files; nothing is
# written. A run has a page while it is kept (started within ``keep_days``, as ``prune`` leaves it); the index
# reads INDEX_RUNS runs, a month page one month's runs, a run page one run: bounded whatever the history.

_RUN_PATH_RE = re.compile(r"runs/([A-Za-z0-9_-]{1,100})\.html")
_GX_PATH_RE = re.compile(r"runs/([A-Za-z0-9_-]{1,100})\.gx\.json")
_MONTH_PATH_RE = re.compile(r"history/(\d{4})-(\d{2})\.html")
_POLICY_META_RE = re.compile(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">')


class NoSuchPage(LookupError):
    """The site has no page there: an unknown or pruned run, a month outside the retention, a bad path."""


def run_page(run_key: str) -> str:
    """A run page's path relative to the site root (as the index links it)."""
    return f"runs/{page_name(run_key)}"


def has_page(started_at: datetime, keep_days: int, now: datetime | None = None) -> bool:
    """Whether a run started then still has its page: ``prune`` removes those started ``keep_days`` ago."""
    return started_at >= (now or datetime.now(UTC)) - timedelta(days=keep_days)


def _month_of(moment: datetime, tz: ZoneInfo) -> tuple[int, int]:
    local = moment.astimezone(tz)
    return local.year, local.month


def _kept_months(latest: list[reads.Row], tz: ZoneInfo, keep_days: int, now: datetime) -> list[str]:
    """The index's month links, newest first: months of the listed runs not before the retention's first month
    (as ``prune`` keeps month pages). When the index is full, older runs may exist: every month back to the
    retention's first is listed too (a bounded list; such a month may show no run)."""
    first = _month_of(now - timedelta(days=keep_days), tz)
    months = {m for m in (_month_of(r["started_at"], tz) for r in latest) if m >= first}
    if len(latest) >= INDEX_RUNS:
        year, month = _month_of(latest[-1]["started_at"], tz)
        while (year, month) > first:
            year, month = (year - 1, 12) if month == 1 else (year, month - 1)
            months.add((year, month))
    return [f"{y:04d}-{m:02d}" for y, m in sorted(months, reverse=True)]


def _with_kept_pages(summaries: list[RunSummary], keep_days: int, now: datetime) -> list[RunSummary]:
    for s in summaries:
        s.page = run_page(s.run["run_key"]) if has_page(s.run["started_at"], keep_days, now) else None
    return summaries


def index_html(conn: psycopg.Connection, community: str, *, keep_days: int, now: datetime | None = None) -> str:
    """``index.html`` from the database: the latest INDEX_RUNS runs, the trends and the month links."""
    _check_community(community)
    now = now or datetime.now(UTC)
    tz = site_zone(conn, community)
    latest = reads.latest_runs(conn, community, INDEX_RUNS)
    summaries = _with_kept_pages(model.summaries(conn, latest), keep_days, now)
    trends = model.trends(conn, community, tz, now=now)
    return render_index(community, summaries, _kept_months(latest, tz, keep_days, now), tz, trends)


def run_html(conn: psycopg.Connection, community: str, run_key: str, *, keep_days: int,
             now: datetime | None = None) -> str:
    """``runs/<run>.html`` from the database; NoSuchPage for a run of another community, unknown or pruned."""
    _check_community(community)
    try:
        detail = model.run_detail(conn, community, run_key, EXAMPLES_PER_CHECK)
    except LookupError as exc:
        raise NoSuchPage(str(exc)) from None
    if not has_page(detail.run["started_at"], keep_days, now):
        raise NoSuchPage(f"{community}: run {run_key!r} is older than the report keeps ({keep_days} days)")
    tz = site_zone(conn, community)
    year, month = _month_of(detail.run["started_at"], tz)
    gx_file = gx_json_name(run_key) if gx_results.result_json(conn, run_key) else None  # as Site.write_run
    return render_run_page(detail, tz, f"history/{year:04d}-{month:02d}.html", gx_file)


def gx_json_text(conn: psycopg.Connection, community: str, run_key: str, *, keep_days: int,
                 now: datetime | None = None) -> str:
    """``runs/<run>.gx.json`` from the database: the run's GX results as GX wrote them, the text the site's file
    holds. NoSuchPage for a run of another community, unknown, pruned or without GX results."""
    _check_community(community)
    run = reads.run(conn, run_key)
    if run is None or run["community_code"] != community or not has_page(run["started_at"], keep_days, now):
        raise NoSuchPage(f"{community}: no kept run {run_key!r}")
    validations = gx_results.result_json(conn, run_key)
    if not validations:
        raise NoSuchPage(f"{community}: run {run_key!r} has no Great Expectations results")
    return json.dumps({"run_key": run_key, "community": community, "datasets": validations}, indent=1,
                      default=str) + "\n"


def month_html(conn: psycopg.Connection, community: str, year: int, month: int, *, keep_days: int,
               now: datetime | None = None) -> str:
    """``history/YYYY-MM.html`` from the database: every run of the month (site time zone). NoSuchPage for a
    month before the retention's first (its page is pruned) or after the current one."""
    _check_community(community)
    now = now or datetime.now(UTC)
    tz = site_zone(conn, community)
    if not (_month_of(now - timedelta(days=keep_days), tz) <= (year, month) <= _month_of(now, tz)):
        raise NoSuchPage(f"{community}: no month page {year:04d}-{month:02d} is kept")
    runs = reads.runs_between(conn, community, *month_bounds(year, month, tz))
    summaries = _with_kept_pages(model.summaries(conn, runs), keep_days, now)
    return render_month(community, f"{year:04d}-{month:02d}", summaries, tz)


def page_html(conn: psycopg.Connection, community: str, path: str, *, keep_days: int,
              now: datetime | None = None) -> str | None:
    """The page at ``path`` (relative to the site root, as the site links it) from the database: ``""`` or
    ``index.html``, ``runs/<run>.html``, ``history/YYYY-MM.html``. None when the path is not an HTML page (a
    file the site may hold beside its pages); NoSuchPage for any other ``.html`` path.

    Run pages are found by run key: the pipeline's keys are identifier-safe, so a page's name is its key."""
    if path in ("", "index.html"):
        return index_html(conn, community, keep_days=keep_days, now=now)
    if match := _RUN_PATH_RE.fullmatch(path):
        return run_html(conn, community, match.group(1), keep_days=keep_days, now=now)
    if match := _MONTH_PATH_RE.fullmatch(path):
        year, month = int(match.group(1)), int(match.group(2))
        if not 1 <= month <= 12:
            raise NoSuchPage(f"not a month: {path!r}")
        return month_html(conn, community, year, month, keep_days=keep_days, now=now)
    if path.endswith(".html"):
        raise NoSuchPage(f"no page {path!r} in the report")
    return None


def site_file(conn: psycopg.Connection, community: str, path: str, *, keep_days: int,
              now: datetime | None = None) -> tuple[str, str] | None:
    """What the site holds at ``path``, from the database, as (media type, text): its pages (``page_html``)
    and each run's GX result JSON. None for any other path (not the site's; NoSuchPage as ``page_html``)."""
    if match := _GX_PATH_RE.fullmatch(path):
        return "application/json", gx_json_text(conn, community, match.group(1), keep_days=keep_days, now=now)
    page = page_html(conn, community, path, keep_days=keep_days, now=now)
    return ("text/html", page) if page is not None else None


def content_security_policy(page: str) -> str:
    """The policy a site page carries in its own ``<meta>`` (its style and script hashes), to send as the HTTP
    header when the page is served."""
    match = _POLICY_META_RE.search(page)
    if not match:
        raise ValueError("the page carries no Content-Security-Policy")
    return match.group(1)
