"""The shared reporting layer without a database: filters, escaping, and every page kind rendered from
templates with hostile values (a value holding markup must reach the page as text, never as markup)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import pytest

from portal_sync.config import Community, LoadedConfig
from portal_sync.explain import Explanation
from portal_sync.reporting import format as fmt
from portal_sync.reporting import render
from portal_sync.reporting.html import render_index, render_month, render_run_page, status_page
from portal_sync.reporting.model import DatasetStatus, RunDetail, RunSummary
from portal_sync.reporting.text import format_overview

EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
NOW = datetime(2026, 11, 27, 17, 0, tzinfo=UTC)
ZONE = ZoneInfo("America/Denver")


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)


def scripts_in(page: str) -> int:
    parser = Tags()
    parser.feed(page)
    return parser.tags.count("script")


# --------------------------------------------------------------------------- filters


def test_times_are_local_with_their_zone_or_utc() -> None:
    assert fmt.local_time(NOW, "America/Denver") == "2026-11-27 10:00:00 MST"
    assert fmt.local_time(NOW, ZONE, seconds=False) == "2026-11-27 10:00 MST"
    assert fmt.local_time(None, ZONE) == "" and fmt.local_time(None, ZONE, empty="never") == "never"
    assert fmt.local_time(NOW, "Not/AZone") == "2026-11-27 17:00:00 UTC"  # an unknown zone is read as UTC
    assert fmt.utc_time(NOW) == "2026-11-27 17:00:00Z" and fmt.utc_time(None) == "never"
    assert fmt.iso_utc(NOW.astimezone(ZONE)) == "2026-11-27T17:00:00+00:00"


@pytest.mark.parametrize(("seconds", "text"), [
    (-5, "in the future"), (30, "30 s ago"), (600, "10 min ago"), (5 * 3600, "5.0 h ago"), (3 * 86400, "3.0 days ago"),
])
def test_age_picks_a_readable_unit(seconds: int, text: str) -> None:
    assert fmt.age(NOW - timedelta(seconds=seconds), NOW) == text
    assert fmt.age(timedelta(seconds=seconds)) == text


@pytest.mark.parametrize(("seconds", "text"), [
    (-5, "overdue"), (30, "in 30 s"), (600, "in 10 min"), (5 * 3600, "in 5.0 h"), (3 * 86400, "in 3.0 days"),
])
def test_until_picks_a_readable_unit(seconds: int, text: str) -> None:
    assert fmt.until(NOW + timedelta(seconds=seconds), NOW) == text


def test_durations_numbers_and_statuses() -> None:
    assert fmt.elapsed(NOW, NOW + timedelta(hours=1, minutes=2, seconds=3)) == "1:02:03"
    assert fmt.elapsed(None, NOW) == ""
    assert fmt.duration(None) == "-" and fmt.duration(300) == "5 min" and fmt.duration(3 * 3600) == "3.0 h"
    assert fmt.num(None) == "" and fmt.num(0) == "0" and fmt.count(1234567) == "1,234,567" and fmt.count(None) == "0"
    assert fmt.outcome_status("partly_published") == "refused" and fmt.outcome_status(None) == "pending"
    assert fmt.check_status(True, "fail") == "ok" and fmt.check_status(False, "warn") == "warned"
    assert fmt.tone("STALE") == "bad" and fmt.tone("fresh") == "ok" and fmt.tone(None) == ""


def test_the_two_escapings() -> None:
    hostile = "<b>'x'</b> & \"y\" https://evil.example"
    assert fmt.esc(hostile) == "&lt;b&gt;&#x27;x&#x27;&lt;/b&gt; &amp; &quot;y&quot; https://evil.example"
    assert fmt.site_esc(hostile).endswith("https&#58;//evil.example")  # the site holds no external URL
    assert fmt.site_esc("x" * 5000) == "x" * fmt.TEXT_LIMIT + "…"
    assert fmt.esc("x" * 5000) == "x" * 5000  # the status page shows errors whole


@pytest.mark.parametrize("kind", ["site", "page"])
def test_templates_escape_every_value_but_their_own_markup(kind: str) -> None:
    env_render = render(kind, "site_base.html.j2", title=EVIL, css="", policy="", script=None, data=None)
    assert f"<title>{ESCAPED}</title>" in env_render
    assert scripts_in(env_render) == 0


# --------------------------------------------------------------------------- every page kind


def _run(**values: object) -> dict:
    run = {"run_key": "springfld_0123456789ab", "community_code": "SPRINGFLD", "airflow_run_id": EVIL,
           "datasets": ["charges"], "source_org_name": EVIL, "time_zone": "America/Denver", "started_at": NOW,
           "published_at": NOW, "finished_at": NOW + timedelta(minutes=4), "outcome": "published", "error": EVIL}
    run.update(values)
    return run


def test_run_page_escapes_every_value() -> None:
    run = _run()
    row = {"phase": "published", "mode": EVIL, "rows_extracted": 10, "error": EVIL, "window_start": None}
    check = {"dataset": "charges", "rule": EVIL, "description": EVIL, "kind": "row", "severity": "refuse",
             "success": False, "failing_rows": 1, "element_count": 10, "observed": {"note": EVIL}}
    examples = {("charges", EVIL): [{"row_key": EVIL, "reason": EVIL}]}
    detail = RunDetail(run, {"charges": row}, [check], {}, examples,
                       RunSummary(run, [DatasetStatus("charges", phase="published", refused=1, row=row)]))
    page = render_run_page(detail, ZONE, "history/2026-11.html")
    assert scripts_in(page) == 0 and "<script>" not in page
    assert page.count(ESCAPED) >= 7  # organisation, Airflow run, error, mode, check, description, key, reason
    assert "mode <strong>&lt;script&gt;" in page and "finished</dt><dd>2026-11-27 10:04:00 MST" in page
    assert '<span class="muted">0:04:00</span>' in page


def test_index_and_month_pages_escape_every_value() -> None:
    summaries = [RunSummary(_run(run_key=EVIL), [DatasetStatus(EVIL, phase="published", warned=1)], page=None)]
    index = render_index("SPRINGFLD", summaries, ["2026-11"], ZONE)
    assert scripts_in(index) == 2  # the JSON data and the page's own renderer
    noscript = re.search(r"<noscript>(.*)</noscript>", index, re.S).group(1)
    assert "<script" not in noscript and ESCAPED in noscript
    month = render_month("SPRINGFLD", "2026-11", summaries, ZONE)
    assert scripts_in(month) == 0 and month.count(ESCAPED) >= 2


def _status_data() -> dict:
    dataset = {
        "dataset": "charges", "last_published_at": NOW - timedelta(minutes=10), "freshness": "fresh", "stale": False,
        "cadence_seconds": 300.0, "alert_after_seconds": 900.0, "latest_phase": "skipped", "latest_note": EVIL,
        "last_run": {"run_key": "k", "airflow_run_id": EVIL, "started_at": NOW, "outcome": "published",
                     "phase": "published", "mode": EVIL, "rows_extracted": 5, "rows_changed": 1234,
                     "rows_inserted": 1000, "rows_updated": 234, "rows_deleted": 0, "rows_refused": 2,
                     "rows_warned": 0, "error": EVIL},
        "quality": {"status": "failed", "checks": 3, "run_key": "k",
                    "failed_checks": [{"rule": EVIL, "description": EVIL, "severity": "refuse", "kind": "row",
                                       "failing_rows": 2}]},
        "report_page": "runs/k.html", "mark": NOW, "mark_updated_at": NOW, "quarantined": 2, "quarantined_since": NOW,
    }
    community = {"code": "SPRINGFLD", "name": EVIL, "dag_id": "caselle_sync_springfld", "schedule": "*/5 * * * *",
                 "time_zone": "America/Denver", "last_run": _run(), "datasets": [dataset], "stale": [],
                 "report_index": "index.html", "report_dir": "/tmp/x"}
    return {"generated_at": NOW, "communities": [community], "unconfigured": [EVIL], "config_errors": [EVIL]}


def _config() -> LoadedConfig:
    return LoadedConfig((Community(code="SPRINGFLD", caselle_conn_id="c", time_zone="America/Denver"),), ())


def test_status_page_escapes_every_value() -> None:
    page = status_page("Caselle sync status", _config(), data=_status_data())
    assert scripts_in(page) == 0 and "<script>" not in page
    assert page.count(ESCAPED) >= 7
    assert '<section class="community" data-community="SPRINGFLD">' in page
    assert '<tr data-dataset="charges">' in page and '<a href="reports/springfld/runs/k.html">report</a>' in page
    assert "1,234<br>" in page and "+1,000 ~234 -0" in page and "2 in quarantine" in page
    assert '<time datetime="2026-11-27T17:00:00+00:00">2026-11-27 10:00 MST</time>' in page
    assert "cadence 5 min, alert after 15 min" in page
    assert f'title="{ESCAPED}">skipped by the latest run: not due' in page
    assert '<option value="SPRINGFLD">SPRINGFLD</option>' in page


def test_explain_page_escapes_the_answer_and_the_typed_number() -> None:
    answer = Explanation("refused", EVIL, "SPRINGFLD", EVIL, "1", account={"account_number": EVIL},
                         details={"time_zone": "America/Denver", "since": NOW, "refusals": [{"rule": EVIL}]})
    page = status_page("Why isn't this customer in the portal?", _config(), community="springfld", account=EVIL,
                       answer=answer)
    assert scripts_in(page) == 0 and "<script>" not in page
    assert f'value="{ESCAPED}"' in page  # the form keeps what was typed, as text
    assert '<div class="answer bad" data-verdict="refused">' in page
    assert '<option value="SPRINGFLD" selected>' in page
    assert "<tr><th>since</th><td>2026-11-27 10:00 MST</td></tr>" in page
    assert page.count(ESCAPED) >= 5
    error = status_page("Caselle sync status", _config(), error=EVIL)
    assert f'<div class="error" role="alert">{ESCAPED}</div>' in error


def test_status_text_lists_every_data_set() -> None:
    text = format_overview(_status_data())
    assert text.splitlines()[0].startswith("SPRINGFLD (")
    assert "charges" in text and "quarantined 2" in text and "latest: skipped" in text
