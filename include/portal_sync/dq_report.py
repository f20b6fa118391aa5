"""The data-quality report: a static site per community that analysts open from disk, offline.

Great Expectations' Data Docs load scripts and styles from public CDNs and a tracking
image, so the project renders its own pages from the sync tables instead (queries in
``store.reads``, pages in ``reporting``): every value is HTML-escaped, CSS and the one
script are inline (allowed by a Content-Security-Policy hash, nothing else may load) and
no page contains an external URL.

Layout under ``report_dir(community)``::

    index.html           the latest INDEX_RUNS runs (rendered by inline JS, <noscript> table) + month links
    runs/<run_key>.html  one page per run, written once when the run is reported
    history/YYYY-MM.html every run of one month (site time zone)

Building a run's report writes three files (its page, its month, the index) and reads a
bounded number of rows, whatever the number of runs kept; ``prune`` enforces retention.
"""

from __future__ import annotations

import hashlib
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
from portal_sync.store import reads

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


def render_run_page(detail: RunDetail, tz: ZoneInfo, month_page: str) -> str:
    return html.render_run_page(detail, tz, month_page, EXAMPLES_PER_CHECK)


def render_index(community: str, summaries: list[RunSummary], months: list[str], tz: ZoneInfo) -> str:
    return html.render_index(community, summaries, months, tz, INDEX_RUNS)


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
        self.write(f"runs/{page_name(run_key)}", render_run_page(detail, tz, f"history/{local:%Y-%m}.html"))
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
        return self.write("index.html", render_index(self.community, summaries, self.months(), tz))


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
        pages = {p.name for p in (site.out / "runs").iterdir() if p.suffix == ".html"}
        removed = 0
        for key in old:
            name = page_name(key)
            if name in pages:
                (site.out / "runs" / name).unlink(missing_ok=True)
                removed += 1
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
