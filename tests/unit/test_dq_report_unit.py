"""Unit tests of the report's pure parts: escaping, paths, status logic and the page shells (no database)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from portal_sync import dq_report
from portal_sync.dq_report import (
    DatasetStatus,
    RunDetail,
    RunSummary,
    json_for_script,
    page_name,
    render_index,
    render_month,
    render_run_page,
    report_dir,
)
from portal_sync.reporting.format import site_esc as esc

ZONE = ZoneInfo("America/Denver")
EVIL = "</script><script>alert(1)</script> <img src=x onerror=alert(2)> 'q' \"dq\" & https://evil.example/a"


def _run(key: str = "springfld_0123456789ab", **values: object) -> dict:
    started = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    run = {"run_key": key, "community_code": "SPRINGFLD", "airflow_run_id": "scheduled__x", "datasets": ["charges"],
           "source_org_name": "City of Springfield", "time_zone": "America/Denver", "started_at": started,
           "published_at": started, "finished_at": started, "outcome": "published", "error": None}
    run.update(values)
    return run


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_esc_escapes_markup_and_defangs_urls() -> None:
    out = esc(EVIL)
    assert "<" not in out and ">" not in out and '"' not in out and "'" not in out
    assert "&lt;/script&gt;" in out and "&amp;" in out
    assert "https://" not in out and "https&#58;//evil.example/a" in out
    assert esc(None) == "" and esc(12) == "12"
    assert esc("x" * 5000).endswith("…") and len(esc("x" * 5000)) == dq_report.TEXT_LIMIT + 1


def test_json_for_script_cannot_close_the_script_and_round_trips() -> None:
    data = {"error": EVIL, "line": "a\u2028b", "nested": [{"k": "</SCRIPT >"}]}
    text = json_for_script(data)
    assert not set("<>&") & set(text)
    assert "/" not in text.replace("\\/", "")
    assert "://" not in text
    assert json.loads(text) == data


def test_page_name_keeps_safe_keys_and_makes_others_safe_and_distinct() -> None:
    assert page_name("springfld_0123456789ab") == "springfld_0123456789ab.html"
    names = {page_name(k) for k in ("../etc/passwd", "a b", "a_b", "a/b", "a\\b")}
    assert len(names) == 5
    for name in names:
        assert re.fullmatch(r"[A-Za-z0-9_-]+\.html", name), name


def test_report_dir_default_env_and_rejected_codes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PORTAL_SYNC_REPORT_DIR", raising=False)
    root = Path(dq_report.__file__).resolve().parents[2]
    assert (root / "include" / "portal_sync" / "dq_report.py").exists()
    assert report_dir("SPRINGFLD") == root / ".airflow" / "dq_reports" / "springfld"
    monkeypatch.setenv("PORTAL_SYNC_REPORT_DIR", str(tmp_path))
    assert report_dir("SPRINGFLD") == tmp_path / "springfld"
    for bad in ("", "../x", "a/b", "a b", "x" * 65):
        with pytest.raises(ValueError):
            report_dir(bad)


def test_month_bounds_roll_over_the_year_in_local_time() -> None:
    start, end = dq_report.month_bounds(2024, 12, ZONE)
    assert (start.year, start.month, end.year, end.month) == (2024, 12, 2025, 1)
    assert start.utcoffset() == ZONE.utcoffset(datetime(2024, 12, 1))


@pytest.mark.parametrize(
    ("values", "status", "label"),
    [
        ({"phase": "published"}, "ok", "charges ok"),
        ({"phase": "published", "refused": 3, "warned": 2}, "refused", "charges refused 3"),
        ({"phase": "published", "warned": 2}, "warned", "charges warned 2"),
        ({"phase": "validated", "failed_warn": 1}, "warned", "charges warned 0"),
        ({"phase": "validated", "failed_fail": 1, "refused": 3}, "failed", "charges failed"),
        ({"phase": "failed", "error": "boom"}, "failed", "charges failed"),
        ({"phase": "planned"}, "pending", "charges planned"),
        ({}, "pending", "charges no data"),
    ],
)
def test_dataset_status_worst_first(values: dict, status: str, label: str) -> None:
    ds = DatasetStatus("charges", **values)
    assert (ds.status, ds.label) == (status, label)


def test_run_summary_outcome_status() -> None:
    clean = RunSummary(_run(), [DatasetStatus("charges", phase="published")])
    assert clean.status == "ok"
    warned = RunSummary(_run(), [DatasetStatus("charges", phase="published", warned=1)])
    assert warned.status == "warned"
    assert RunSummary(_run(outcome="nothing_published")).status == "failed"
    assert RunSummary(_run(outcome="running")).status == "running"


def test_index_shell_allows_only_its_own_script_and_style() -> None:
    runs = [RunSummary(_run(error=EVIL), [DatasetStatus("charges", phase="published", refused=2, checks=3, failed=1,
                                                        failed_refuse=1)], page="runs/springfld_0123456789ab.html")]
    page = render_index("SPRINGFLD", runs, ["2024-05"], ZONE)
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    script = re.search(r"<script>(.*?)</script>", page, re.S).group(1)
    style = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    assert f"script-src {_hash(script)}" in csp and f"style-src {_hash(style)}" in csp
    assert "default-src 'none'" in csp
    assert "http://" not in page and "https://" not in page
    data = json.loads(re.search(r'id="run-data">(.*?)</script>', page, re.S).group(1))
    assert data["runs"][0]["error"] == EVIL[:300]
    assert data["runs"][0]["datasets"] == [{"name": "charges", "status": "refused", "label": "charges refused 2"}]
    assert 'href="history/2024-05.html"' in page
    assert 'href="runs/springfld_0123456789ab.html"' in page  # the <noscript> fallback
    assert page.count("<script") == 2


def test_month_page_has_no_script_at_all() -> None:
    page = render_month("SPRINGFLD", "2024-05", [RunSummary(_run())], ZONE)
    assert "<script" not in page and "script-src 'none'" in page
    assert "springfld_0123456789ab <span class=\"muted\">(no page)</span>" in page


def test_run_page_falls_back_to_stored_examples_and_caps_them() -> None:
    run = _run()
    check = {"dataset": "charges", "rule": "orphan_account", "description": "d", "kind": "row", "severity": "refuse",
             "success": False, "failing_rows": 30, "element_count": 100, "validated_at": run["started_at"],
             "observed": {"examples": [{"key": f"K{i}", "reason": EVIL} for i in range(30)]}}
    detail = RunDetail(run, {}, [check], {}, {}, RunSummary(run, [DatasetStatus("charges", checks=1, failed=1,
                                                                                failed_refuse=1)]))
    page = render_run_page(detail, ZONE, "history/2024-05.html")
    assert re.findall(r"<code>(K\d+)</code>", page) == [f"K{i}" for i in range(dq_report.EXAMPLES_PER_CHECK)]
    assert "20 of 30 rows shown" in page
    assert "<script" not in page and "<img" not in page
    assert 'href="../history/2024-05.html"' in page and 'href="../index.html"' in page
