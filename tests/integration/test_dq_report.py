"""The offline data-quality report against a real PostgreSQL, with synthetic rows in the sync tables.

The module makes its own database (unique name, dropped at the end) so it can fill sync.* freely;
each test uses its own community code, so tests do not see each other's runs.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from pgtest import migrated_database
from psycopg.types.json import Jsonb

from portal_sync import dq_report
from portal_sync.cli import main as cli_main
from portal_sync.dq_report import INDEX_RUNS, build_run_report, build_site, page_name, prune, summary_line

pytestmark = pytest.mark.integration

TZ = "America/Denver"
CHROMIUM = Path("/usr/bin/chromium")
XSS_REASON = "<script>alert('reason')</script> & \"quoted\" see https://evil.example/x.png"
XSS_KEY = "\"><img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """A migrated database of this module's own, dropped afterwards."""
    with migrated_database("cps_test_dqreport") as db_url:
        yield db_url


@pytest.fixture
def community() -> str:
    """A fresh community code per test (upper case, as the configuration requires)."""
    return "T" + uuid.uuid4().hex[:8].upper()


# --------------------------------------------------------------------------- synthetic rows


def add_run(conn: psycopg.Connection, community: str, started_at: datetime, *, outcome: str = "published",
            datasets: tuple[str, ...] = ("charges", "balances"), error: str | None = None,
            run_key: str | None = None) -> str:
    key = run_key or f"{community.lower()}_{uuid.uuid4().hex[:12]}"
    conn.execute(
        "INSERT INTO sync.runs (run_key, community_code, airflow_run_id, datasets, source_org_name, time_zone,"
        " started_at, published_at, finished_at, outcome, error)"
        " VALUES (%s, %s, %s, %s, 'City of Springfield', %s, %s, %s, %s, %s, %s)",
        (key, community, f"scheduled__{started_at.isoformat()}", list(datasets), TZ, started_at,
         started_at + timedelta(minutes=4) if outcome == "published" else None, started_at + timedelta(minutes=5),
         outcome, error),
    )
    return key


def add_dataset(conn: psycopg.Connection, run_key: str, community: str, dataset: str, **values: object) -> None:
    row = {"phase": "published", "rows_extracted": 100, "rows_refused": 0, "rows_warned": 0, "rows_inserted": 90,
           "rows_updated": 7, "rows_unchanged": 3, "rows_deleted": 0, "mode": "full", **values}
    cols = ", ".join(row)
    marks = ", ".join(["%s"] * len(row))
    conn.execute(
        f"INSERT INTO sync.run_datasets (run_key, community_code, dataset, {cols}) VALUES (%s, %s, %s, {marks})",
        (run_key, community, dataset, *row.values()),
    )


def add_check(conn: psycopg.Connection, run_key: str, community: str, dataset: str, rule: str, *,
              kind: str = "row", severity: str = "refuse", failing_rows: int = 0, element_count: int | None = 100,
              observed: dict | None = None, description: str | None = None) -> None:
    conn.execute(
        "INSERT INTO sync.dq_results (run_key, community_code, dataset, rule, description, kind, severity, success,"
        " failing_rows, element_count, observed) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (run_key, community, dataset, rule, description or f"description of {rule}", kind, severity,
         failing_rows == 0 and not (observed or {}).get("failed"), failing_rows, element_count,
         Jsonb(observed or {"examples": []})),
    )


def add_findings(conn: psycopg.Connection, run_key: str, community: str, dataset: str, rule: str, severity: str,
                 rows: list[tuple[str, str]], first_row_id: int = 1) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO sync.run_findings (run_key, community_code, dataset, row_id, row_key, rule, severity, reason)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [(run_key, community, dataset, first_row_id + i, key, rule, severity, reason)
             for i, (key, reason) in enumerate(rows)],
        )


def typical_run(conn: psycopg.Connection, community: str, started_at: datetime, **run_values: object) -> str:
    """A run with a refused rule (25 rows), a warned rule (1 row), passing checks and a table check."""
    key = add_run(conn, community, started_at, **run_values)
    add_dataset(conn, key, community, "charges", rows_refused=25, rows_inserted=75)
    add_dataset(conn, key, community, "balances", rows_warned=1)
    add_check(conn, key, community, "charges", "orphan_account", failing_rows=25, element_count=100)
    add_check(conn, key, community, "charges", "key_present", element_count=100)
    add_check(conn, key, community, "charges", "row_count_change", kind="table", severity="fail", element_count=100,
              observed={"previous": 98, "current": 100, "max_change": 0.5})
    add_check(conn, key, community, "balances", "buckets_sum", severity="warn", failing_rows=1, element_count=100)
    add_check(conn, key, community, "balances", "key_unique", element_count=100)
    add_findings(conn, key, community, "charges", "orphan_account", "refuse",
                 [(f"C-{i:04d}", f"account A-{i} does not exist") for i in range(25)])
    add_findings(conn, key, community, "balances", "buckets_sum", "warn",
                 [("B-0001", "buckets sum 10.00 but TotalBalance is 12.00")], first_row_id=500)
    return key


def connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)


def site_files(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every file of the site with what changes when it is written (inode: files are replaced atomically)."""
    out = {}
    for path in root.rglob("*"):
        if path.is_file():
            st = path.stat()
            out[str(path.relative_to(root))] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return out


def index_data(index: Path) -> dict:
    match = re.search(r'<script type="application/json" id="run-data">(.*?)</script>', index.read_text(), re.S)
    assert match, "index has no embedded run data"
    return json.loads(match.group(1))


class Tags(HTMLParser):
    """Collects the tags and attributes a page really contains (what a browser would build)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags_of(text: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(text)
    return parser.tags


# --------------------------------------------------------------------------- tests


def test_pages_show_runs_checks_counts_and_examples(url: str, community: str, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    with connect(url) as conn:
        failed = add_run(conn, community, now - timedelta(hours=5), outcome="failed",
                         error="charges: row count dropped")
        add_dataset(conn, failed, community, "charges", phase="failed", error="row_count_change failed: 100 -> 40")
        add_dataset(conn, failed, community, "balances", phase="validated")
        add_check(conn, failed, community, "charges", "row_count_change", kind="table", severity="fail",
                  element_count=40, observed={"previous": 100, "current": 40, "failed": True})
        clean = add_run(conn, community, now - timedelta(hours=3))
        add_dataset(conn, clean, community, "charges")
        add_dataset(conn, clean, community, "balances")
        add_check(conn, clean, community, "charges", "key_present")
        latest = typical_run(conn, community, now - timedelta(hours=1))

    for key in (failed, clean, latest):
        index = build_run_report(url, community, key, tmp_path)
    assert index == tmp_path / "index.html"

    data = index_data(index)
    assert [r["run_key"] for r in data["runs"]] == [latest, clean, failed]  # newest first
    runs = {r["run_key"]: r for r in data["runs"]}
    assert runs[latest]["refused"] == 25 and runs[latest]["warned"] == 1
    assert runs[latest]["checks"] == 5 and runs[latest]["checks_failed"] == 2
    assert {d["name"]: d["status"] for d in runs[latest]["datasets"]} == {"charges": "refused", "balances": "warned"}
    assert {d["name"]: d["status"] for d in runs[failed]["datasets"]} == {"charges": "failed", "balances": "ok"}
    assert runs[clean]["status"] == "ok" and runs[failed]["status"] == "failed"
    assert all(r["page"] == f"runs/{page_name(r['run_key'])}" for r in data["runs"])
    # the <noscript> fallback lists the same runs, each linked to its page
    noscript = re.search(r"<noscript>(.*)</noscript>", index.read_text(), re.S).group(1)
    for key in (failed, clean, latest):
        assert f'href="runs/{key}.html"' in noscript
    month = datetime.now(UTC).astimezone(ZoneInfo(TZ)).strftime("%Y-%m")
    assert f'href="history/{month}.html"' in index.read_text()

    page = (tmp_path / "runs" / f"{latest}.html").read_text()
    for text in ("orphan_account", "key_present", "row_count_change", "buckets_sum", "key_unique",
                 "description of orphan_account", "City of Springfield", "20 of 25 rows shown"):
        assert text in page
    assert 'id="ds-charges"' in page and 'id="ds-balances"' in page
    assert "<td>table</td><td>fail</td>" in page and "<td>row</td><td>warn</td>" in page
    assert "previous=98" in page  # a table check's observed numbers
    shown = re.findall(r"<code>(C-\d{4})</code>", page)
    assert shown == [f"C-{i:04d}" for i in range(20)]  # up to 20 examples, in row order
    assert "B-0001" in page and "buckets sum 10.00 but TotalBalance is 12.00" in page
    # audit counts of the run: extracted 100, refused 25, inserted 75 in the charges table
    charges = page[page.index('id="ds-charges"'):page.index('id="ds-balances"')]
    audit_row = re.search(r'<table class="audit">.*?<tbody><tr>(.*?)</tr>', charges, re.S).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", audit_row)
    assert cells[:4] == ["100", "25", "0", "75"]  # extracted, refused, warned, inserted
    assert "phase <strong>published</strong> · mode <strong>full</strong>" in charges

    failed_page = (tmp_path / "runs" / f"{failed}.html").read_text()
    assert "row_count_change failed: 100 -&gt; 40" in failed_page and "current=40" in failed_page

    history = (tmp_path / "history" / f"{month}.html").read_text()
    for key in (failed, clean, latest):
        assert f'href="../runs/{key}.html"' in history


def test_everything_is_escaped(url: str, community: str, tmp_path: Path) -> None:
    with connect(url) as conn:
        key = add_run(conn, community, datetime.now(UTC), error="</script><script>alert('error')</script>",
                      datasets=("charges",))
        add_dataset(conn, key, community, "charges", rows_refused=1, error="<b>bold</b>")
        add_check(conn, key, community, "charges", "<i>rule</i>", failing_rows=1,
                  description="<iframe src=x></iframe>", observed={"examples": [], "note": "<svg onload=alert(1)>"})
        add_findings(conn, key, community, "charges", "<i>rule</i>", "refuse", [(XSS_KEY, XSS_REASON)])
    index = build_run_report(url, community, key, tmp_path)

    page = (tmp_path / "runs" / f"{key}.html").read_text()
    allowed = {"html", "head", "meta", "link", "title", "style", "body", "nav", "a", "h1", "h2", "h3", "dl", "dt",
               "strong", "dd", "p", "span", "code", "section", "table", "thead", "tbody", "tr", "th", "td", "ul", "li"}
    assert {tag for tag, _ in tags_of(page)} <= allowed  # no <script>, <img>, <i>, <b>, <iframe>, <svg>
    assert "&lt;script&gt;alert(&#x27;reason&#x27;)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;i&gt;rule&lt;/i&gt;" in page and "&lt;b&gt;bold&lt;/b&gt;" in page

    text = index.read_text()
    index_tags = tags_of(text)
    assert [t for t, _ in index_tags].count("script") == 2  # the JSON block and the renderer, nothing injected
    assert not any(t in {"img", "i", "b", "iframe"} for t, _ in index_tags)
    # the only <svg> are the trend charts the report draws itself, and no element carries a handler
    assert all(a.get("class") == "trend-chart" for t, a in index_tags if t == "svg")
    assert not any(k.startswith("on") for _, a in index_tags for k in a)
    data = index_data(index)  # the JSON survives the trip intact
    assert data["runs"][0]["error"] == "</script><script>alert('error')</script>"
    noscript = re.search(r"<noscript>(.*)</noscript>", text, re.S).group(1)
    assert "<script" not in noscript


def test_site_makes_no_external_reference(url: str, community: str, tmp_path: Path) -> None:
    with connect(url) as conn:
        key = typical_run(conn, community, datetime.now(UTC))
        add_findings(conn, key, community, "charges", "orphan_account", "refuse",
                     [("C-9999", XSS_REASON), ("http://key.example", "https://x.example//y")], first_row_id=1000)
    build_run_report(url, community, key, tmp_path)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.relative_to(tmp_path).parts[0] for p in files} == {"index.html", "runs", "history"}
    for path in files:
        text = path.read_text()
        assert "http://" not in text.lower() and "https://" not in text.lower(), path
        for tag, attrs in tags_of(text):
            assert "src" not in attrs, (path, tag)  # no remote or local resource loads at all
            if tag == "link":
                assert attrs == {"rel": "icon", "href": "data:,"}
            if tag == "a":
                href = attrs.get("href") or ""
                assert not re.match(r"[a-z]+:|//", href), attrs  # relative links within the site only
        assert "default-src 'none'" in text  # and the browser is told to load nothing else


def test_prune_removes_old_pages_and_rows(url: str, community: str, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    with connect(url) as conn:
        keys = [typical_run(conn, community, now - timedelta(days=days)) for days in (100, 70, 40, 10, 0)]
    for key in keys:
        build_run_report(url, community, key, tmp_path)
    months_before = sorted(p.name for p in (tmp_path / "history").iterdir())

    assert prune(url, community, 30, tmp_path) == 3
    old, kept = keys[:3], keys[3:]
    for key in old:
        assert not (tmp_path / "runs" / f"{key}.html").exists()
    for key in kept:
        assert (tmp_path / "runs" / f"{key}.html").exists()
    with connect(url) as conn:
        for table in ("sync.dq_results", "sync.run_findings"):
            counts = dict(conn.execute(
                f"SELECT run_key, count(*) FROM {table} WHERE run_key = ANY(%s) GROUP BY run_key", (keys,)
            ).fetchall())
            assert set(counts) == set(kept), table
        assert conn.execute("SELECT count(*) FROM sync.runs WHERE community_code = %s", (community,)).fetchone()[0] == 5

    cutoff = (now - timedelta(days=30)).astimezone(ZoneInfo(TZ)).strftime("%Y-%m")
    months_after = sorted(p.name for p in (tmp_path / "history").iterdir())
    assert months_after == [m for m in months_before if m[:7] >= cutoff]
    assert len(months_after) < len(months_before)
    index = (tmp_path / "index.html").read_text()
    for key in old:
        assert f"runs/{key}.html" not in index  # still listed (audit), but no longer linked
    for key in kept:
        assert f"runs/{key}.html" in index
    assert prune(url, community, 30, tmp_path) == 0  # idempotent


def test_build_with_500_runs_writes_a_bounded_number_of_files(url: str, community: str, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    with connect(url) as conn:
        keys = [typical_run(conn, community, now - timedelta(hours=8 * i)) for i in range(500, 0, -1)]
    # Put a kept site in place: every run's page and every month page, as 500 earlier builds would have left it.
    index, written = build_site(url, community, tmp_path)
    assert len(written) == INDEX_RUNS + len({p for p in written if "history" in p.parts}) + 1
    site = dq_report.Site(tmp_path, community)
    with connect(url) as conn:
        zone = dq_report.site_zone(conn, community)
        months = {site.write_run(conn, key, zone) for key in keys}
        for year, month in months:
            site.write_month(conn, year, month, zone)
    assert len(list((tmp_path / "runs").iterdir())) == 500
    assert len(months) >= 5

    with connect(url) as conn:
        new = typical_run(conn, community, now)
    before = site_files(tmp_path)
    build_run_report(url, community, new, tmp_path)
    after = site_files(tmp_path)
    changed = {name for name in after if before.get(name) != after[name]}
    month = now.astimezone(ZoneInfo(TZ)).strftime("%Y-%m")
    assert changed == {f"runs/{new}.html", f"history/{month}.html", "index.html"}
    assert set(before) - set(after) == set()  # nothing else touched or removed

    data = index_data(index)
    assert len(data["runs"]) == INDEX_RUNS and data["runs"][0]["run_key"] == new
    text = index.read_text()
    for year, m in months:
        assert f'href="history/{year:04d}-{m:02d}.html"' in text  # older runs stay reachable by month


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (Debian package chromium)")
def test_offline_browser_renders_run_list(url: str, community: str, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    with connect(url) as conn:
        keys = [typical_run(conn, community, now - timedelta(hours=h)) for h in (3, 2, 1)]
        add_findings(conn, keys[-1], community, "charges", "orphan_account", "refuse", [(XSS_KEY, XSS_REASON)],
                     first_row_id=900)
    site = tmp_path / "site"
    for key in keys:
        index = build_run_report(url, community, key, site)
    profile = tmp_path / "profile"
    cmd = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost", "--proxy-server=127.0.0.1:9",
        "--virtual-time-budget=5000", "--dump-dom", index.resolve().as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert 'data-rendered="js"' in dom, dom[:2000]  # the inline script ran under the page's CSP
    rendered = re.sub(r"<noscript>.*?</noscript>", "", dom, flags=re.S)  # only what the script built
    rows = re.findall(r'<tr class="run-row" data-run-key="([^"]+)">', rendered)
    assert rows == list(reversed(keys))
    for key in keys:
        assert f'<a href="runs/{key}.html">{key}</a>' in rendered
    assert "charges refused 25" in rendered and "balances warned 1" in rendered
    assert "3 of 3 runs shown" in rendered


def test_summary_line_and_text_summary(url: str, community: str, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    with connect(url) as conn:
        older = typical_run(conn, community, now - timedelta(hours=2))
        key = typical_run(conn, community, now)
    line = summary_line(url, community, key, tmp_path)
    assert line == (
        f"{community} dq: 5 checks, 2 failed (charges.orphan_account refused 25, balances.buckets_sum warned 1);"
        f" report {(tmp_path / 'index.html').resolve().as_uri()}"
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PORTAL_SYNC_REPORT_DIR", str(tmp_path / "reports"))
        assert summary_line(url, community, key).endswith(f"reports/{community.lower()}/index.html")

    text = dq_report.format_summary(url, community, runs=5)
    lines = text.splitlines()
    assert lines[0].startswith(f"{community} run {key}  published") and "checks 3 passed, 2 failed" in lines[0]
    assert "rows refused 25, warned 1" in lines[0]
    assert lines[1].split()[:2] == ["charges", "refused"] and "top: orphan_account refused 25" in lines[1]
    assert lines[2].split()[:2] == ["balances", "warned"] and "top: buckets_sum warned 1" in lines[2]
    assert lines[3].startswith(f"{community} run {older}")
    assert len(lines) == 6


def test_cli_dq_report_and_dq_summary(url: str, community: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with connect(url) as conn:
        first = typical_run(conn, community, datetime.now(UTC) - timedelta(hours=1))
        key = typical_run(conn, community, datetime.now(UTC))
    out = tmp_path / "site"
    assert cli_main(["--portal-url", url, "dq-report", community.lower(), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out / "index.html")
    assert (out / "runs" / f"{key}.html").exists() and (out / "runs" / f"{first}.html").exists()
    assert cli_main(["--portal-url", url, "dq-summary", community, "--runs", "1"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"{community} run {key}") and first not in printed
    assert cli_main(["--portal-url", url, "dq-report", community, "--out", str(out), "--run", "nope"]) == 1


def test_cli_runs_and_its_aliases_print_the_same(url: str, community: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with connect(url) as conn:
        older = typical_run(conn, community, datetime.now(UTC) - timedelta(hours=1))
        key = typical_run(conn, community, datetime.now(UTC))
    outputs = {}
    for name in ("runs", "summary", "dq-summary"):
        assert cli_main(["--portal-url", url, name, community.lower(), "--runs", "2"]) == 0
        outputs[name] = capsys.readouterr().out
    assert outputs["runs"] == outputs["summary"] == outputs["dq-summary"]
    lines = outputs["runs"].splitlines()
    assert lines[0].startswith(f"{community} run {key}") and lines[3].startswith(f"{community} run {older}")
    assert "extracted 100, inserted 75" in lines[1] and "top: orphan_account refused 25 (e.g. C-0000)" in lines[1]
    assert cli_main(["--portal-url", url, "runs", community, "--runs", "1", "--json"]) == 0
    [run] = json.loads(capsys.readouterr().out)
    assert run["run_key"] == key and run["rows_refused"] == 25 and run["checks_failed"] == 2
    charges = next(d for d in run["datasets"] if d["dataset"] == "charges")
    assert charges["status"] == "refused" and charges["rows_inserted"] == 75
    assert charges["top_rules"] == [{"rule": "orphan_account", "severity": "refuse", "n": 25, "example_key": "C-0000"}]


def add_gx(conn: psycopg.Connection, run_key: str, community: str, dataset: str, *, success: bool,
           sample_key: object, kwargs: dict, observed: object = None, mostly: float = 1.0) -> None:
    from portal_sync.gx_runner import GxExpectationResult
    from portal_sync.store import gx_results

    result = GxExpectationResult(
        key="orphan_account:CustomerID", rule="orphan_account", type="expect_reference_to_resolve", kwargs=kwargs,
        success=success, observed_value=observed, element_count=100, unexpected_count=1, unexpected_percent=1.0,
        sample=[{"_row_id": 1, "TransactionID": sample_key}], severity="refuse", mostly=mostly,
        description="the customer exists", kind="row", raw={})
    gx_results.record(conn, run_key, community, dataset, [result], {"rows": {"success": success, "note": XSS_REASON}},
                      100)


def test_gx_results_are_escaped_linked_as_json_and_pruned(url: str, community: str, tmp_path: Path) -> None:
    with connect(url) as conn:
        key = add_run(conn, community, datetime.now(UTC) - timedelta(days=40), datasets=("charges",))
        add_dataset(conn, key, community, "charges", rows_refused=1)
        add_check(conn, key, community, "charges", "orphan_account", failing_rows=1)
        add_findings(conn, key, community, "charges", "orphan_account", "refuse", [(XSS_KEY, XSS_REASON)])
        add_gx(conn, key, community, "charges", success=True, sample_key=XSS_KEY, mostly=0.25,
               kwargs={"unexpected_rows_query": "SELECT '<script>x</script>' FROM {batch}", "mostly": 0.25,
                       "note": "<img src=x onerror=alert(2)>"}, observed="<svg onload=alert(3)>")
    build_run_report(url, community, key, tmp_path)
    page = (tmp_path / "runs" / f"{key}.html").read_text()
    tags = tags_of(page)
    assert not any(t in {"script", "img", "svg", "iframe"} for t, _ in tags)
    assert not any(k.startswith("on") for _, a in tags for k in a)
    assert "note=&lt;img src=x onerror=alert(2)&gt;" in page and "&lt;svg onload=alert(3)&gt;" in page
    assert "SELECT &#x27;&lt;script&gt;x&lt;/script&gt;&#x27; FROM {batch}" in page  # folded in <details>
    # the sample row's key, as our findings write it, with our reason for that row
    assert page.count("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;") == 2  # the findings' example and GX's sample
    row = re.search(r'<tr class="gx-result pass" id="gx-charges-orphan_account:CustomerID">(.*?)</tr>', page, re.S)
    assert row and "25 %" in row.group(1) and "refuse" in row.group(1) and ">pass<" in row.group(1)
    links = [a.get("href") for t, a in tags if t == "a" and (a.get("href") or "").endswith(".gx.json")]
    assert links == [f"{key}.gx.json"]
    downloaded = json.loads((tmp_path / "runs" / f"{key}.gx.json").read_text())  # the JSON keeps the raw text
    assert downloaded == {"run_key": key, "community": community,
                          "datasets": {"charges": {"rows": {"success": True, "note": XSS_REASON}}}}

    assert prune(url, community, keep_days=30, out_dir=tmp_path) == 1
    assert not (tmp_path / "runs" / f"{key}.gx.json").exists()
