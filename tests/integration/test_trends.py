"""Data-quality trends against a real PostgreSQL: the 30-day queries, the charts on the report's index and on the
status page, and the report page rendered offline by a real browser (headless Chromium) into a PNG."""

from __future__ import annotations

import re
import struct
import subprocess
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from synctest import community as make_community

from portal_sync import status
from portal_sync.config import LoadedConfig
from portal_sync.reporting import html, model
from portal_sync.store import reads

pytestmark = pytest.mark.integration

TZ = ZoneInfo("America/Denver")
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def code() -> str:
    return "T" + uuid.uuid4().hex[:8].upper()


def add_run(conn: psycopg.Connection, community: str, started: datetime, *, refused: int = 0, warned: int = 0,
            inserted: int = 10, failed_table_check: bool = False) -> str:
    """A run of charges and payments: ``refused`` charges rows by orphan_account, ``warned`` payments rows by
    implausible_date, ``inserted`` rows published per data set; checks validated and rows touched when it ran."""
    key = f"{community.lower()}_{uuid.uuid4().hex[:12]}"
    conn.execute(
        "INSERT INTO sync.runs (run_key, community_code, datasets, time_zone, started_at, outcome)"
        " VALUES (%s, %s, %s, %s, %s, 'published')", (key, community, ["charges", "payments"], TZ.key, started))
    for dataset in ("charges", "payments"):
        conn.execute(
            "INSERT INTO sync.run_datasets (run_key, community_code, dataset, phase, rows_inserted, rows_updated,"
            " rows_deleted, rows_refused, rows_warned, updated_at)"
            " VALUES (%s, %s, %s, 'published', %s, 1, 1, %s, %s, %s)",
            (key, community, dataset, inserted, refused if dataset == "charges" else 0,
             warned if dataset == "payments" else 0, started + timedelta(minutes=2)))
    checks = [("charges", "orphan_account", "row", "refuse", refused), ("charges", "key_unique", "row", "refuse", 0),
              ("payments", "implausible_date", "row", "warn", warned)]
    if failed_table_check:
        checks.append(("charges", "row_count_change", "table", "fail", -1))
    for dataset, rule, kind, severity, failing in checks:
        conn.execute(
            "INSERT INTO sync.dq_results (run_key, community_code, dataset, rule, description, kind, severity,"
            " success, failing_rows, validated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (key, community, dataset, rule, f"about {rule}", kind, severity, failing == 0, max(failing, 0),
             started + timedelta(minutes=1)))
    return key


def local_noon(days_ago: int) -> datetime:
    day = datetime.now(TZ).date() - timedelta(days=days_ago)
    return datetime(day.year, day.month, day.day, 12, tzinfo=TZ).astimezone(UTC)


def tooltips(svg: str) -> list[str]:
    return re.findall(r"<circle [^>]*><title>([^<]*)</title></circle>", svg)


def test_trend_queries_are_bounded_to_the_period_and_community(portal: str, code: str) -> None:
    with psycopg.connect(portal, autocommit=True) as conn:
        add_run(conn, code, local_noon(40), refused=99, inserted=500)  # before the period
        add_run(conn, code, local_noon(2), refused=3, warned=1)
        add_run(conn, code, local_noon(2) + timedelta(hours=1), refused=5)
        add_run(conn, code, local_noon(0), refused=4, warned=2, failed_table_check=True)
        add_run(conn, "OTHER" + code[:4], local_noon(0), refused=77)  # another community
        trends = model.trends(conn, code, TZ)
    today = datetime.now(TZ).date()
    assert trends.days[-1] == today and trends.days[0] == today - timedelta(days=29) and len(trends.days) == 30
    series = {s.label: s for s in trends.failing}
    assert list(series) == ["charges.row_count_change", "charges.orphan_account", "payments.implausible_date"]
    orphan = series["charges.orphan_account"]
    assert orphan.style == "refuse" and orphan.runs == 3
    assert orphan.values[-1] == 4 and orphan.values[-3] == 5  # most rows in one run that day
    assert sum(1 for v in orphan.values if v) == 2  # the run 40 days ago and the other community are not read
    assert series["payments.implausible_date"].values[-3:] == [1, 0, 2]
    assert series["charges.row_count_change"].runs == 1 and series["charges.row_count_change"].style == "fail"
    published = {s.label: s for s in trends.published}
    assert published["charges"].values[-3] == 2 * 12 and published["charges"].values[-1] == 12  # 10 + 1 + 1 per run
    assert published["charges"].runs == 3 and max(published["payments"].values) == 24


def test_report_index_charts_the_failing_rows(portal: str, code: str, tmp_path: Path) -> None:
    with psycopg.connect(portal, autocommit=True) as conn:
        keys = [add_run(conn, code, local_noon(days), refused=n, warned=1) for days, n in ((3, 2), (1, 7), (0, 4))]
        summaries = model.summaries(conn, reads.latest_runs(conn, code, 60))
        page = html.render_index(code, summaries, [], TZ, trends=model.trends(conn, code, TZ))
    assert [s.run["run_key"] for s in summaries] == list(reversed(keys))
    figures = re.findall(r"<figure .*?</figure>", page, re.S)
    assert len(figures) == 2
    failing, published = figures
    day = {n: (datetime.now(TZ).date() - timedelta(days=n)).isoformat() for n in (0, 1, 3)}
    assert tooltips(failing) == [
        f"charges.orphan_account refused: {n} failing rows on {day[d]}" for d, n in ((3, 2), (1, 7), (0, 4))
    ] + [f"payments.implausible_date warned: 1 failing rows on {day[d]}" for d in (3, 1, 0)]
    assert "charges.orphan_account refused (failed in 3 runs)" in failing
    assert f"charges: 12 rows published on {day[0]}" in published
    assert "No check failed" not in page


def test_status_page_shows_a_communitys_trends(portal: str, code: str) -> None:
    comm = make_community(code=code, datasets=["charges", "payments"])
    with psycopg.connect(portal, autocommit=True) as conn:
        add_run(conn, code, local_noon(1), refused=6)
    data = status.overview(portal, LoadedConfig((comm,), ()))
    [com] = data["communities"]
    assert com["trends"]["failing"][0]["label"] == "charges.orphan_account" and max(
        com["trends"]["failing"][0]["values"]) == 6
    page = html.status_page("Caselle sync status", LoadedConfig((comm,), ()), data=data)
    section = page[page.index(f'data-community="{code}"'):]
    assert "<h3>Trends, last 30 days</h3>" in section
    assert "charges.orphan_account refused (failed in 1 run)" in section
    assert len(re.findall(r'<svg class="trend-chart" role="img"', section)) == 2
    quiet = make_community(code="Q" + code[1:], datasets=["charges"])  # no runs: the empty state
    page = html.status_page("Caselle sync status", LoadedConfig((quiet,), ()),
                            data=status.overview(portal, LoadedConfig((quiet,), ())))
    assert "No check failed in the last 30 days." in page and "Nothing published in the last 30 days." in page


# --------------------------------------------------------------------------- a real browser


def png_colours(path: Path, limit: int = 3) -> set[bytes]:
    """Distinct pixel colours of an 8-bit RGB or RGBA PNG (up to ``limit``), decoded with zlib alone."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour_type, _, _, interlace = header
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, header
    bpp = 3 if colour_type == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    previous = bytearray(stride)
    colours: set[bytes] = set()
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up = previous[i]
            corner = previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        colours.update(bytes(line[x:x + bpp]) for x in range(0, stride, bpp * 7))
        if len(colours) >= limit:
            return colours
        previous = line
    return colours


def screenshot(page: Path, out: Path, profile: Path) -> subprocess.CompletedProcess:
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
           "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost", "--proxy-server=127.0.0.1:9",
           f"--screenshot={out}", "--window-size=1280,1600", page.resolve().as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (Debian package chromium)")
def test_offline_browser_renders_the_report_with_charts(portal: str, code: str, tmp_path: Path) -> None:
    with psycopg.connect(portal, autocommit=True) as conn:
        for days, n in ((6, 3), (4, 8), (2, 5), (0, 2)):
            add_run(conn, code, local_noon(days), refused=n, warned=n // 2)
        summaries = model.summaries(conn, reads.latest_runs(conn, code, 60))
        page = html.render_index(code, summaries, [], TZ, trends=model.trends(conn, code, TZ))
    index = tmp_path / "index.html"
    index.write_text(page, encoding="utf-8")
    out = tmp_path / "report.png"
    done = screenshot(index, out, tmp_path / "profile")
    assert done.returncode == 0 and out.exists(), done.stderr[-2000:]
    assert len(png_colours(out)) >= 3  # text, chart lines and background: not a blank page
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    assert screenshot(blank, tmp_path / "blank.png", tmp_path / "profile").returncode == 0
    assert len(png_colours(tmp_path / "blank.png")) == 1  # the check above tells a blank page apart
