"""The fleet summary without a database: each community's worst state, the order (worst first, then by
code), the filters and pages, the freshness limits passed to SQL, and the page and text rendered from it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from portal_sync.config import Community, LoadedConfig
from portal_sync.freshness import cadence
from portal_sync.reporting.html import fleet_links, status_page
from portal_sync.reporting.text import fleet_footer, format_fleet
from portal_sync.status import STATES, FleetRow, alert_limits, judge, select_page, worst_first

NOW = datetime(2026, 11, 27, 17, 0, tzinfo=UTC)
EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def _judge(**kw: object) -> str:
    values: dict[str, object] = {"last_outcome": "published", "judged_outcome": "published", "stale": 0,
                                 "refused": 0, "warned": 0, "warn_checks": 0}
    values.update(kw)
    return judge(**values)  # type: ignore[arg-type]


def test_each_state_and_the_worse_one_wins() -> None:
    assert _judge() == "ok"
    assert _judge(last_outcome=None, judged_outcome=None) == "never"
    assert _judge(last_outcome="dry_run", judged_outcome=None) == "never"  # a dry run publishes nothing
    assert _judge(last_outcome="running", judged_outcome=None) == "running"
    assert _judge(last_outcome="running") == "running"
    assert _judge(warn_checks=1) == "warnings"
    assert _judge(warned=2, last_outcome="running") == "warnings"
    assert _judge(refused=3, warned=2) == "refused"
    assert _judge(stale=1, refused=3, warned=2) == "stale"
    for outcome in ("failed", "abandoned", "partly_published", "nothing_published"):
        assert _judge(judged_outcome=outcome, stale=1, refused=3) == "failed", outcome
    # a retry under way does not hide the failure it retries
    assert _judge(last_outcome="running", judged_outcome="failed") == "failed"
    assert STATES == ("failed", "stale", "refused", "warnings", "running", "ok", "never")


def _rows() -> list[FleetRow]:
    states = ["ok", "never", "failed", "ok", "stale", "warnings", "refused", "running", "failed", "ok"]
    codes = ["ZED", "ALPHA", "MIDTOWN", "BETA", "CEDAR", "DELTA", "ELM", "FIR", "ASPEN", "GAMMA"]
    names = ["Zedville", "Alpha City", "Midtown", "Beta Town", "Cedar Falls", "Delta", "Elmwood", "Fir Grove",
             "Aspen Park", "Gamma Springs"]
    return [FleetRow(code=c, name=n, state=s) for c, n, s in zip(codes, names, states, strict=True)]


def test_worst_first_then_by_code() -> None:
    ordered = [(r.state, r.code) for r in worst_first(_rows())]
    assert ordered == [("failed", "ASPEN"), ("failed", "MIDTOWN"), ("stale", "CEDAR"), ("refused", "ELM"),
                       ("warnings", "DELTA"), ("running", "FIR"), ("ok", "BETA"), ("ok", "GAMMA"), ("ok", "ZED"),
                       ("never", "ALPHA")]


def test_filter_by_state_and_by_code_or_name_in_any_case() -> None:
    page = select_page(_rows(), state="failed")
    assert [r.code for r in page.rows] == ["ASPEN", "MIDTOWN"] and page.matched == 2 and page.total == 10
    assert page.counts == {"failed": 2, "stale": 1, "refused": 1, "warnings": 1, "running": 1, "ok": 3, "never": 1}
    assert [r.code for r in select_page(_rows(), match="town").rows] == ["MIDTOWN", "BETA"]  # name, then code
    assert [r.code for r in select_page(_rows(), match=" aSp ").rows] == ["ASPEN"]
    both = select_page(_rows(), state="ok", match="a")
    assert [r.code for r in both.rows] == ["BETA", "GAMMA"] and both.match == "a" and both.state == "ok"
    none = select_page(_rows(), state="never", match="zed")
    assert none.rows == [] and none.matched == 0 and none.pages == 1 and none.page == 1
    with pytest.raises(ValueError, match="unknown state"):
        select_page(_rows(), state="bad")


def test_pages_keep_the_order_and_stay_within_range() -> None:
    first = select_page(_rows(), per_page=4)
    assert [r.code for r in first.rows] == ["ASPEN", "MIDTOWN", "CEDAR", "ELM"]
    assert (first.page, first.pages, first.matched) == (1, 3, 10)
    third = select_page(_rows(), per_page=4, page=3)
    assert [r.code for r in third.rows] == ["ZED", "ALPHA"]
    assert select_page(_rows(), per_page=4, page=99).page == 3  # past the end: the last page
    assert select_page(_rows(), per_page=4, page=-2).page == 1
    assert len(select_page(_rows(), per_page=None).rows) == 10
    filtered = select_page(_rows(), state="ok", per_page=2, page=2)
    assert [r.code for r in filtered.rows] == ["ZED"] and filtered.pages == 2


def test_alert_limits_follow_the_freshness_rule() -> None:
    hourly = Community(code="HOURLY", caselle_conn_id="c1", time_zone="America/Denver", schedule="0 * * * *",
                       datasets=("accounts", "charges"), cadence_minutes={"accounts": 240}, freshness_factor=2)
    every5 = Community(code="EVERY5", caselle_conn_id="c2", datasets=("balances",))
    limits = alert_limits([hourly, every5], NOW)
    assert limits == [("HOURLY", "accounts", timedelta(hours=8)), ("HOURLY", "charges", timedelta(hours=2)),
                      ("EVERY5", "balances", timedelta(minutes=15))]
    for code, name, limit in limits:  # the same as freshness.assess computes for one community
        community = hourly if code == "HOURLY" else every5
        assert limit == cadence(community, name) * community.freshness_factor


def _fleet_data(rows: list[FleetRow], **kw: object) -> dict:
    page = select_page(rows, **kw)  # type: ignore[arg-type]
    return {"generated_at": NOW, "states": list(STATES), "counts": page.counts, "total": page.total,
            "matched": page.matched, "page": page.page, "pages": page.pages, "per_page": page.per_page,
            "state": page.state, "match": page.match, "communities": [r.as_dict() for r in page.rows],
            "unconfigured": ["OLDTOWN"], "config_errors": []}


def test_the_page_links_each_row_filters_and_pages_and_escapes_every_value() -> None:
    rows = [*_rows(), FleetRow(code="EVIL", name=EVIL, state="failed", time_zone="America/Denver",
                               last_run_at=NOW - timedelta(minutes=3), last_outcome="running",
                               judged_at=NOW - timedelta(minutes=8), judged_outcome="partly_published",
                               failed_datasets=("charges",), error=EVIL, datasets=6, stale=("accounts",),
                               rows_refused=1234, rows_warned=5, next_due=NOW + timedelta(minutes=2))]
    data = _fleet_data(rows, match="e", per_page=3, page=2)
    config = LoadedConfig((Community(code="SPRINGFLD", caselle_conn_id="c"),), ())
    page = status_page("Caselle sync status", config, fleet=data)
    assert "<script>" not in page and page.count(ESCAPED) == 0  # EVIL is on page 1, not this one
    codes = [r["code"] for r in data["communities"]]
    assert codes == ["ELM", "DELTA", "FIR"]
    for code in codes:
        assert f'<a href="?community={code}">{code}</a>' in page
    assert '<a href="?q=e" rel="prev">previous</a>' in page and '<a href="?q=e&amp;page=3" rel="next">next</a>' in page
    assert '<input type="search" name="q" value="e"' in page
    assert '<option value="failed">failed (3)</option>' in page
    assert '<a href="?state=stale&amp;q=e"' in page
    assert "page 2 of 3 · 8 of 11 communities" in page
    assert "OLDTOWN" in page

    first = status_page("Caselle sync status", config, fleet=_fleet_data(rows, state="failed"))
    assert first.count(ESCAPED) == 2 and "<script>" not in first
    assert '<tr data-community="EVIL" data-state="failed">' in first
    assert "latest ended: partly_published" in first and "failed: charges" in first
    assert "1,234" in first and "5 warned" in first and "1 / 6" in first
    assert '<option value="failed" selected>' in first
    assert "(in 2 min)" in first and "10:02 MST" in first
    assert 'rel="next"' not in first and 'rel="prev"' not in first


def test_links_keep_the_filters_and_drop_defaults() -> None:
    links = fleet_links(_fleet_data(_rows(), per_page=4))
    assert links["previous"] is None and links["next"] == "?page=2" and links["all"] == "./"
    assert links["states"]["never"] == "?state=never"
    assert links["detail"]["ASPEN"] == "?community=ASPEN"


def test_the_text_is_one_line_per_community_worst_first() -> None:
    rows = [*_rows(), FleetRow(code="LATE", name="Late Town", state="stale", datasets=6, stale=("accounts",),
                               last_run_at=NOW, last_outcome="published", judged_at=NOW,
                               judged_outcome="published", next_due=NOW + timedelta(minutes=5))]
    data = _fleet_data(rows, per_page=None)
    lines = format_fleet(data).splitlines()
    assert len(lines) == 11
    assert [line.split()[:2] for line in lines[:4]] == [["failed", "ASPEN"], ["failed", "MIDTOWN"],
                                                         ["stale", "CEDAR"], ["stale", "LATE"]]
    late = lines[3]
    assert "stale 1/6 (accounts)" in late and "last published 2026-11-27 17:00:00Z" in late
    assert "next due 2026-11-27 17:05:00Z" in late
    assert lines[-1].startswith("never    ALPHA") and "no run yet" in lines[-1]
    footer = fleet_footer(_fleet_data(rows, state="ok", per_page=2))
    assert footer.splitlines()[0] == ("11 communities (failed 2, stale 2, refused 1, warnings 1, running 1, ok 3,"
                                      " never 1); 3 match state=ok; shown 1-2")
    assert "OLDTOWN: has runs in the portal database but is not in the configuration" in footer
