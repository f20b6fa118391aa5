"""The data-quality report served from the database (``dq_report.page_html`` and the status app's
``/reports/<code>/`` routes): the same pages as the offline site a worker writes on its own disk, whole on a
host that never wrote them; other communities, unknown and pruned runs answer 404.

A community synced for real (two pipeline runs of a simulated Caselle, the second refusing orphan lines)
writes its offline site as the report task does; the site is then deleted and every page is asked for again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml
from pgtest import migrated_database
from psycopg.types.json import Jsonb
from synctest import advance, local_now, sync

from portal_sync import dq_report
from portal_sync.config import LoadedConfig, load_config
from portal_sync.dq_report import (
    INDEX_RUNS,
    NoSuchPage,
    build_run_report,
    gx_json_name,
    page_html,
    page_name,
    report_dir,
    site_file,
)
from portal_sync.store import reads

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TZ = "America/Denver"
# what differs between two renderings of the same page: the moment it was rendered
_WRITTEN = re.compile(r'<p class="muted">(Index|Page|Report) written [^<]*</p>')


@dataclass(frozen=True)
class Reported:
    url: str
    config: LoadedConfig
    config_file: Path
    offline: dict[str, str]  # the offline site SPRINGFLD's report task wrote: relative path -> page
    runs: list[str]  # SPRINGFLD's run keys, oldest first
    other_run: str  # a run of OTHER (readable)
    hidden_run: str  # a run of HIDDEN (configured, not readable by the test's user)


def _add_run(conn: psycopg.Connection, community: str, started_at: datetime, *, key: str | None = None) -> str:
    """A finished run with one published data set and one failed check of 2 refused rows."""
    key = key or f"{community.lower()}_{uuid.uuid4().hex[:12]}"
    conn.execute(
        "INSERT INTO sync.runs (run_key, community_code, airflow_run_id, datasets, source_org_name, time_zone,"
        " started_at, published_at, finished_at, outcome) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'published')",
        (key, community, f"scheduled__{key}", ["charges"], f"{community} Town", TZ, started_at,
         started_at + timedelta(minutes=1), started_at + timedelta(minutes=2)),
    )
    conn.execute(
        "INSERT INTO sync.run_datasets (run_key, community_code, dataset, phase, mode, rows_extracted,"
        " rows_refused, rows_warned, rows_inserted) VALUES (%s, %s, 'charges', 'published', 'window', 10, 2, 0, 8)",
        (key, community),
    )
    conn.execute(
        "INSERT INTO sync.dq_results (run_key, community_code, dataset, rule, description, kind, severity, success,"
        " failing_rows, element_count, observed) VALUES (%s, %s, 'charges', 'orphan_account', 'ledger lines need"
        " an account', 'row', 'refuse', false, 2, 10, '{}')",
        (key, community),
    )
    return key


def _add_gx(conn: psycopg.Connection, run_key: str, community: str) -> None:
    """GX's own result of the run's charges validation, as validate.py stores it for download."""
    conn.execute(
        "INSERT INTO sync.gx_validations (run_key, community_code, dataset, rows_validated, result)"
        " VALUES (%s, %s, 'charges', 10, %s)",
        (run_key, community, Jsonb({"rows": {"success": False, "statistics": {"evaluated_expectations": 3,
                                                                             "unsuccessful_expectations": 1}}})),
    )


@pytest.fixture(scope="module")
def reported(tmp_path_factory) -> Iterator[Reported]:
    with migrated_database("cps_test_reportdb") as url:
        yield _build(url, tmp_path_factory.mktemp("reportdb"))


def _build(url: str, folder: Path) -> Reported:
    from caselle_sim import SourceSpec, create_source

    entries = [{"code": "SPRINGFLD", "name": "City of Springfield", "caselle_conn_id": "caselle_test",
                "time_zone": TZ, "reconcile_schedule": None}]
    entries += [{"code": code, "caselle_conn_id": f"caselle_{code.lower()}", "time_zone": TZ,
                 "datasets": ["charges"]} for code in ("OTHER", "HIDDEN")]
    config_file = folder / "communities.yaml"
    config_file.write_text(yaml.safe_dump({"communities": entries}))
    config = load_config(config_file)
    assert not config.errors, config.errors

    site = report_dir("SPRINGFLD")
    shutil.rmtree(site, ignore_errors=True)
    spec = SourceSpec.from_url(f"sqlite:///{folder / 'springfld.db'}")
    sim = create_source(spec, preset="tiny", seed=7, org_code="SPRINGFLD", org_name="City of Springfield",
                        time_zone=TZ, customer_number_mask="###-#####-##",
                        start=local_now() - timedelta(minutes=10))
    try:
        comm = config.get("SPRINGFLD")
        sync(sim, url, "manual__springfld_1", comm=comm)
        sim.add_orphans(lines=3, receipts=1)
        interval, _ = advance(sim, 5)
        sync(sim, url, "scheduled__springfld_2", comm=comm, interval=interval)
    finally:
        sim.close()
        spec.drop()
    # the pipeline's report task wrote the offline site on "this worker"
    offline = {p.relative_to(site).as_posix(): p.read_text(encoding="utf-8") for p in site.rglob("*.html")}
    with psycopg.connect(url, autocommit=True) as conn:
        runs = [k for (k,) in conn.execute(
            "SELECT run_key FROM sync.runs WHERE community_code = 'SPRINGFLD' ORDER BY started_at")]
        other = _add_run(conn, "OTHER", datetime.now(UTC) - timedelta(hours=1))
        _add_gx(conn, other, "OTHER")
        hidden = _add_run(conn, "HIDDEN", datetime.now(UTC) - timedelta(hours=1))
    return Reported(url, config, config_file, offline, runs, other, hidden)


def same_page(page: str) -> str:
    return _WRITTEN.sub("", page)


def test_every_page_from_the_database_is_the_offline_page(reported):
    """Each page the report task wrote (index, both run pages, the month) rendered again from the database, with
    no file on disk, is the same page but for the moment it was written."""
    runs = reported.runs
    assert len(runs) == 2
    assert {"index.html", *(f"runs/{page_name(k)}" for k in runs)} <= set(reported.offline)
    assert any(p.startswith("history/") for p in reported.offline)
    assert (report_dir("SPRINGFLD") / "index.html").is_file()
    shutil.rmtree(report_dir("SPRINGFLD"))  # a host that never wrote the site
    with reads.connect(reported.url, read_only=True) as conn:
        for path, offline in reported.offline.items():
            served = page_html(conn, "SPRINGFLD", path, keep_days=30)
            assert served is not None and same_page(served) == same_page(offline), path
            assert _WRITTEN.search(served), path  # the comparison left out one line, not the page
        assert same_page(page_html(conn, "SPRINGFLD", "", keep_days=30)) == same_page(reported.offline["index.html"])
    refusing = reported.offline[f"runs/{page_name(runs[1])}"]
    assert "orphan_account" in refusing and 'href="../index.html"' in refusing


def test_a_runs_gx_result_is_served_as_the_site_writes_it(reported, tmp_path):
    """The run page links GX's result JSON and the JSON is served, both as the report task writes them; a run
    without GX results has neither."""
    code = "T" + uuid.uuid4().hex[:8].upper()
    with psycopg.connect(reported.url, autocommit=True) as conn:
        key = _add_run(conn, code, datetime.now(UTC) - timedelta(minutes=30))
        _add_gx(conn, key, code)
    build_run_report(reported.url, code, key, tmp_path)
    written = (tmp_path / "runs" / gx_json_name(key)).read_text(encoding="utf-8")
    with reads.connect(reported.url, read_only=True) as conn:
        assert site_file(conn, code, f"runs/{gx_json_name(key)}", keep_days=30) == ("application/json", written)
        media, page = site_file(conn, code, f"runs/{page_name(key)}", keep_days=30)
        assert media == "text/html" and f'href="{gx_json_name(key)}" download' in page
        assert same_page(page) == same_page((tmp_path / "runs" / page_name(key)).read_text(encoding="utf-8"))
        first = reported.runs[0]  # synced without GX
        with pytest.raises(NoSuchPage):
            site_file(conn, "SPRINGFLD", f"runs/{gx_json_name(first)}", keep_days=30)
        assert "download" not in page_html(conn, "SPRINGFLD", f"runs/{page_name(first)}", keep_days=30)
        with pytest.raises(NoSuchPage):  # another community's run
            site_file(conn, code, f"runs/{gx_json_name(reported.other_run)}", keep_days=30)


def test_unknown_pruned_and_foreign_pages_are_not_found(reported):
    with reads.connect(reported.url, read_only=True) as conn:
        with pytest.raises(NoSuchPage):
            page_html(conn, "SPRINGFLD", "runs/springfld_000000000000.html", keep_days=30)
        with pytest.raises(NoSuchPage):  # another community's run, asked for under this one
            dq_report.run_html(conn, "SPRINGFLD", reported.other_run, keep_days=30)
        for path in ("runs/../index.html", "runs/a/b.html", "history/2026-13.html", "history/1999-01.html",
                     "history/9999-12.html", "notes.html"):
            with pytest.raises(NoSuchPage):
                page_html(conn, "SPRINGFLD", path, keep_days=30)
        assert page_html(conn, "SPRINGFLD", "report.json", keep_days=30) is None  # not a page: a file's business
        # past the retention a run has no page, as prune leaves the offline site
        later = datetime.now(UTC) + timedelta(days=31)
        with pytest.raises(NoSuchPage):
            dq_report.run_html(conn, "SPRINGFLD", reported.runs[0], keep_days=30, now=later)


def test_retention_and_month_links_of_a_long_history(reported):
    """A community with more runs than the index lists: runs past the retention are listed without a page, and the
    index links every kept month back to the retention's first (older runs may be there), none before it."""
    code = "T" + uuid.uuid4().hex[:8].upper()
    now = datetime(2026, 6, 15, 18, 0, tzinfo=UTC)
    with psycopg.connect(reported.url, autocommit=True) as conn:
        old = _add_run(conn, code, now - timedelta(days=100))  # March, past a 60-day retention
        april = _add_run(conn, code, now - timedelta(days=55))  # April: kept
        recent = [_add_run(conn, code, now - timedelta(minutes=5 * i)) for i in range(INDEX_RUNS)]
    with reads.connect(reported.url, read_only=True) as conn:
        index = dq_report.index_html(conn, code, keep_days=60, now=now)
        months = re.findall(r'<a href="history/(\d{4}-\d{2})\.html">', index)
        assert months == ["2026-06", "2026-05", "2026-04"]
        assert f'href="runs/{recent[0]}.html"' in index and april not in index  # the index lists the latest 60
        # a month keeps its page while the retention reaches into it; its runs past the retention have none
        march = dq_report.month_html(conn, code, 2026, 3, keep_days=100, now=now)
        assert f'href="../runs/{old}.html"' in march
        march = dq_report.month_html(conn, code, 2026, 3, keep_days=101, now=now + timedelta(days=2))
        assert f'{old} <span class="muted">(no page)</span>' in march
        with pytest.raises(NoSuchPage):  # wholly before the retention's first month: pruned
            dq_report.month_html(conn, code, 2026, 3, keep_days=60, now=now)
        april_page = dq_report.month_html(conn, code, 2026, 4, keep_days=60, now=now)
        assert f'href="../runs/{april}.html"' in april_page
        with pytest.raises(NoSuchPage):
            dq_report.run_html(conn, code, old, keep_days=60, now=now)
        page = dq_report.run_html(conn, code, april, keep_days=60, now=now)
        assert 'href="../history/2026-04.html"' in page and "orphan_account" in page


_ROUTES = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from airflow.api_fastapi.app import create_auth_manager, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient
    create_auth_manager()
    manager = get_auth_manager()
    allowed = manager.is_authorized_dag
    # the simple auth manager lets every role read every DAG: deny one, as a per-DAG policy would
    def is_authorized_dag(*, method, access_entity=None, details=None, user):
        if details is not None and details.id == "caselle_sync_hidden":
            return False
        return allowed(method=method, access_entity=access_entity, details=details, user=user)
    manager.is_authorized_dag = is_authorized_dag
    import sync_status.web as web
    app = web.create_app()
    app.dependency_overrides[get_user] = lambda: SimpleAuthManagerUser(username="viewer", role="viewer")
    client = TestClient(app, follow_redirects=False)
    out = {}
    for path in json.loads(sys.argv[2]):
        r = client.get(path)
        out[path] = {"status": r.status_code, "headers": dict(r.headers), "body": r.text}
    print(json.dumps(out))
""")


def test_the_status_app_serves_the_report_from_the_database(reported, tmp_path):
    """plugins/sync_status/web.py in an Airflow API app of its own (a child process: Airflow's settings are
    global), on a host without the offline site: every page comes from the database, with the page's own
    policy as the header; a stale file on disk is never served as a page; other communities answer 404."""
    first, second = reported.runs
    month = next(p for p in reported.offline if p.startswith("history/"))
    reports = tmp_path / "reports"
    site = reports / "springfld"
    (site / "runs").mkdir(parents=True)
    (site / "runs" / page_name(second)).write_text("STALE COPY from another host")
    (site / "extra.json").write_text('{"kept": true}')
    portal = psycopg.conninfo.conninfo_to_dict(reported.url)
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "PORTAL_SYNC_CONFIG": str(reported.config_file), "PORTAL_SYNC_REPORT_DIR": str(reports),
           "AIRFLOW_CONN_PORTAL_DB": json.dumps({"conn_type": "postgres", "host": portal.get("host", "127.0.0.1"),
                                                 "port": int(portal.get("port", 5432)), "login": "postgres",
                                                 "schema": portal["dbname"]})}
    paths = {
        "index": "/reports/springfld/", "index.html": "/reports/springfld/index.html",
        "bare": "/reports/springfld",
        "first": f"/reports/springfld/runs/{page_name(first)}",
        "second": f"/reports/springfld/runs/{page_name(second)}",
        "month": f"/reports/springfld/{month}", "unknown run": "/reports/springfld/runs/springfld_0123456789ab.html",
        "foreign run": f"/reports/springfld/runs/{page_name(reported.other_run)}",
        "other": "/reports/OTHER/", "other run": f"/reports/other/runs/{page_name(reported.other_run)}",
        "hidden": "/reports/hidden/", "hidden run": f"/reports/hidden/runs/{page_name(reported.hidden_run)}",
        "nowhere": "/reports/nowhere/index.html", "json": "/reports/springfld/extra.json",
        "gx": f"/reports/other/runs/{gx_json_name(reported.other_run)}",
        "escape": "/reports/springfld/..%2F..%2Fcommunities.yaml",
        "detail": "/?community=SPRINGFLD",
    }
    result = subprocess.run([sys.executable, "-c", _ROUTES, str(ROOT / "plugins"), json.dumps(list(paths.values()))],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    got = {name: json.loads(result.stdout.strip().splitlines()[-1])[path] for name, path in paths.items()}

    for name, path in (("index", "index.html"), ("index.html", "index.html"), ("first", f"runs/{page_name(first)}"),
                       ("second", f"runs/{page_name(second)}"), ("month", month)):
        answer = got[name]
        assert answer["status"] == 200, (name, answer["body"][:300])
        assert same_page(answer["body"]) == same_page(reported.offline[path]), name
        assert answer["headers"]["content-type"].startswith("text/html")
        assert answer["headers"]["content-security-policy"] == (
            f"{dq_report.content_security_policy(answer['body'])}; frame-ancestors 'self'")
        assert ("script-src 'sha256-" if name.startswith("index") else "script-src 'none'") in (
            answer["headers"]["content-security-policy"])
    assert "STALE COPY" not in got["second"]["body"] and "orphan_account" in got["second"]["body"]
    assert got["bare"]["status"] == 308 and got["bare"]["headers"]["location"] == "springfld/"
    assert got["other"]["status"] == 200 and got["other run"]["status"] == 200
    for name in ("unknown run", "foreign run", "hidden", "hidden run", "nowhere", "escape"):
        assert got[name]["status"] == 404, (name, got[name]["status"])
    assert got["json"]["status"] == 200 and json.loads(got["json"]["body"]) == {"kept": True}
    assert got["gx"]["status"] == 200 and got["gx"]["headers"]["content-type"].startswith("application/json")
    assert json.loads(got["gx"]["body"])["run_key"] == reported.other_run

    # the detail links the report served here, though this host holds no index and no page of the last run
    detail = got["detail"]["body"]
    assert got["detail"]["status"] == 200
    assert 'href="reports/springfld/index.html">Data-quality report</a>' in detail
    assert f'href="reports/springfld/runs/{page_name(second)}">report</a>' in detail
