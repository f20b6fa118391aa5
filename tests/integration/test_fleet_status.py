"""The fleet summary against a real PostgreSQL: communities in every state, built by the run store's own
functions (and one by a real pipeline run of a simulated Caselle), read back worst first by the summary's one
statement, filtered and paged on the page and by ``portal-sync status``, with the drill-down unchanged and the
staleness the same as the freshness check's."""

from __future__ import annotations

import json
import os
import re
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
from synctest import local_now, sync

from portal_sync.config import LoadedConfig, load_config
from portal_sync.freshness import freshness
from portal_sync.reporting.html import status_page
from portal_sync.status import fleet, fleet_summary, overview
from portal_sync.store import quality, reads, runs
from portal_sync.validate import RuleOutcome

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

# the server tests/conftest.py uses, for a database of this module's own (built once, only read)
TWO = ("charges", "payments")
# worst first, then by code
EXPECTED = [("failed", "FAILED"), ("failed", "RETRYING"), ("stale", "STALE"), ("refused", "REFUSED"),
            ("warnings", "WARNED"), ("running", "RUNNING"), ("ok", "OKTOO"), ("ok", "SPRINGFLD"), ("never", "NEVER")]


@dataclass(frozen=True)
class Fleet:
    url: str
    config: LoadedConfig
    config_file: Path


def _run(conn: psycopg.Connection, code: str, outcome: str | None, *, datasets: tuple[str, ...] = TWO,
         phases: dict[str, str] | None = None, refused: dict[str, int] | None = None,
         warned: dict[str, int] | None = None, error: str | None = None, warn_check: bool = False,
         age: timedelta | None = None) -> str:
    """A run recorded as the pipeline records it: started, each data set's phase and counts, finished with
    ``outcome`` (None: still running); ``age`` moves it that far into the past."""
    key = f"{code.lower()}_{uuid.uuid4().hex[:10]}"
    runs.start_run(conn, key, code, f"scheduled__{key}", datasets)
    for name in datasets:
        phase = (phases or {}).get(name, "published" if outcome else "staged")
        runs.update_dataset(conn, key, name, phase=phase, mode="window", rows_extracted=5,
                            rows_refused=(refused or {}).get(name, 0), rows_warned=(warned or {}).get(name, 0),
                            rows_inserted=5, rows_updated=0, rows_deleted=0,
                            error="extract failed: source timeout" if phase == "failed" else None)
    if warn_check:
        check = RuleOutcome("snapshot_change", "warn", 1, "a table check", kind="table", observed={"share": 0.4})
        quality.record_results(conn, key, code, datasets[0], [check], 5)
    if outcome:
        runs.finish_run(conn, key, outcome, error)
    if age:
        conn.execute("UPDATE sync.runs SET started_at = started_at - %(a)s, published_at = published_at - %(a)s,"
                     " finished_at = finished_at - %(a)s WHERE run_key = %(k)s", {"a": age, "k": key})
    return key


@pytest.fixture(scope="module")
def fleet_db(tmp_path_factory) -> Iterator[Fleet]:
    with migrated_database("cps_test_fleet") as url:
        yield _build(url, tmp_path_factory.mktemp("fleet"))


def _build(url: str, folder: Path) -> Fleet:
    from caselle_sim import SourceSpec, create_source

    entries = [{"code": code, "name": f"{code.title()} Town", "caselle_conn_id": f"caselle_{code.lower()}",
                "time_zone": "America/Chicago", "datasets": list(TWO)}
               for _, code in EXPECTED if code != "SPRINGFLD"]
    entries.append({"code": "SPRINGFLD", "name": "City of Springfield", "caselle_conn_id": "caselle_test",
                    "time_zone": "America/Denver", "reconcile_schedule": None})
    config_file = folder / "communities.yaml"
    config_file.write_text(yaml.safe_dump({"communities": entries}))
    config = load_config(config_file)
    assert not config.errors, config.errors

    # one community synced for real: a clean first load of a tiny simulated Caselle
    spec = SourceSpec.from_url(f"sqlite:///{folder / 'springfld.db'}")
    sim = create_source(spec, preset="tiny", seed=5, org_code="SPRINGFLD", org_name="City of Springfield",
                        time_zone="America/Denver", customer_number_mask="###-#####-##", start=local_now())
    try:
        sync(sim, url, "first", comm=config.get("SPRINGFLD"))
    finally:
        sim.close()
        spec.drop()

    with psycopg.connect(url, autocommit=True) as conn:
        _run(conn, "FAILED", "published", age=timedelta(minutes=6))
        _run(conn, "FAILED", "partly_published", phases={"charges": "failed"}, error="charges: extract failed")
        _run(conn, "RETRYING", "failed", phases={"charges": "failed", "payments": "failed"}, error="source down",
             age=timedelta(minutes=2))
        _run(conn, "RETRYING", None)  # the retry under way
        _run(conn, "STALE", "published", age=timedelta(hours=2))  # 5-minute schedule: alert after 15 minutes
        _run(conn, "REFUSED", "published", refused={"charges": 3}, warned={"payments": 1})
        _run(conn, "WARNED", "published", warn_check=True)
        _run(conn, "RUNNING", "published", age=timedelta(minutes=5))
        _run(conn, "RUNNING", None)
        _run(conn, "OKTOO", "published", age=timedelta(seconds=30))
        _run(conn, "OKTOO", "dry_run", refused={"charges": 9})  # a dry run after a clean one is not judged
        _run(conn, "OLDTOWN", "published")  # runs of a community no longer configured
    return Fleet(url, config, config_file)


def test_one_line_per_community_worst_first_with_what_makes_it_so(fleet_db):
    data = fleet(fleet_db.url, fleet_db.config, per_page=None)
    rows = {r["code"]: r for r in data["communities"]}
    assert [(r["state"], r["code"]) for r in data["communities"]] == EXPECTED
    assert data["counts"] == {"failed": 2, "stale": 1, "refused": 1, "warnings": 1, "running": 1, "ok": 2,
                              "never": 1}
    assert data["total"] == data["matched"] == 9 and data["unconfigured"] == ["OLDTOWN"]

    failed = rows["FAILED"]
    assert failed["judged_outcome"] == failed["last_outcome"] == "partly_published"
    assert failed["failed_datasets"] == ["charges"] and failed["error"] == "charges: extract failed"
    retrying = rows["RETRYING"]
    assert (retrying["last_outcome"], retrying["judged_outcome"]) == ("running", "failed")
    assert retrying["failed_datasets"] == ["charges", "payments"]
    assert rows["STALE"]["stale"] == list(TWO) and rows["STALE"]["datasets"] == 2
    assert rows["REFUSED"]["rows_refused"] == 3 and rows["REFUSED"]["rows_warned"] == 1
    assert rows["WARNED"]["warn_checks"] == 1 and rows["WARNED"]["rows_warned"] == 0
    assert rows["RUNNING"]["last_outcome"] == "running" and rows["RUNNING"]["judged_outcome"] == "published"
    oktoo = rows["OKTOO"]
    assert (oktoo["last_outcome"], oktoo["judged_outcome"], oktoo["rows_refused"]) == ("dry_run", "published", 0)
    never = rows["NEVER"]
    assert never["last_run_at"] is None and never["judged_outcome"] is None and never["stale"] == []

    springfield = rows["SPRINGFLD"]
    assert springfield["name"] == "City of Springfield" and springfield["datasets"] == 6
    assert springfield["last_outcome"] == "published" and springfield["rows_refused"] == 0
    assert springfield["time_zone"] == "America/Denver"
    # the next tick of its (staggered) 5-minute schedule
    due = springfield["next_due"]
    assert data["generated_at"] < due <= data["generated_at"] + timedelta(minutes=5) and due.second == 0


def test_staleness_is_the_freshness_checks_at_any_time(fleet_db):
    """The summary's one statement says stale exactly where freshness.py (per community) does."""
    now = datetime.now(UTC)
    with reads.connect(fleet_db.url) as conn:
        for at in (now, now + timedelta(minutes=20), now + timedelta(hours=3), now - timedelta(minutes=1)):
            summary = {r.code: r for r in fleet_summary(conn, fleet_db.config.communities, now=at)}
            for c in fleet_db.config.communities:
                expected = [f.dataset for f in freshness(conn, c, now=at) if f.stale]
                assert list(summary[c.code].stale) == expected, (c.code, at)
        later = fleet_summary(conn, fleet_db.config.communities, now=now + timedelta(hours=3))
    # three hours on, every community that ever ran is stale or worse; the one that never ran is not
    assert {r.code: r.state for r in later}["OKTOO"] == "stale"
    assert {r.code: r.state for r in later}["NEVER"] == "never"


def test_filters_and_pages(fleet_db):
    failed = fleet(fleet_db.url, fleet_db.config, state="failed")
    assert [r["code"] for r in failed["communities"]] == ["FAILED", "RETRYING"] and failed["matched"] == 2
    assert failed["counts"]["ok"] == 2  # the counts are the whole fleet's, for the state select
    named = fleet(fleet_db.url, fleet_db.config, match="spring")
    assert [r["code"] for r in named["communities"]] == ["SPRINGFLD"]
    assert [r["code"] for r in fleet(fleet_db.url, fleet_db.config, match="TOWN", state="ok")["communities"]] == [
        "OKTOO"]  # names: "Oktoo Town"; SPRINGFLD's is "City of Springfield"
    second = fleet(fleet_db.url, fleet_db.config, per_page=4, page=2)
    assert [r["code"] for r in second["communities"]] == [code for _, code in EXPECTED[4:8]]
    assert (second["page"], second["pages"]) == (2, 3)
    with pytest.raises(ValueError, match="unknown state"):
        fleet(fleet_db.url, fleet_db.config, state="sideways")


def test_the_page_shows_the_summary_and_drills_into_one_community(fleet_db):
    page = status_page("Caselle sync status", fleet_db.config, fleet=fleet(fleet_db.url, fleet_db.config,
                                                                           per_page=4))
    rows = re.findall(r'<tr data-community="([A-Z]+)" data-state="([a-z]+)">', page)
    assert rows == [(code, state) for state, code in EXPECTED[:4]]
    assert '<a href="?community=FAILED">FAILED</a> Failed Town' in page
    assert '<a href="?page=2" rel="next">next</a>' in page and "page 1 of 3 · 9 of 9 communities" in page
    assert '<option value="stale">stale (1)</option>' in page
    assert '<section class="community"' not in page  # no per-data-set detail on the summary
    assert "OLDTOWN" in page

    filtered = status_page("Caselle sync status", fleet_db.config,
                           fleet=fleet(fleet_db.url, fleet_db.config, state="ok", match="o"))
    assert re.findall(r'<tr data-community="([A-Z]+)"', filtered) == ["OKTOO", "SPRINGFLD"]
    assert '<option value="ok" selected>' in filtered and 'value="o"' in filtered

    # the drill-down is today's per-community view
    data = overview(fleet_db.url, fleet_db.config, community="SPRINGFLD")
    detail = status_page("Caselle sync status", fleet_db.config, data=data, drilldown=True, community="SPRINGFLD")
    assert '<section class="community" data-community="SPRINGFLD">' in detail
    assert len(re.findall(r'<tr data-dataset="', detail)) == 6
    assert '<a href="./">All communities</a>' in detail and '<a href="?community=SPRINGFLD">Refresh</a>' in detail
    assert '<option value="SPRINGFLD" selected>' in detail


def _cli(fleet_db: Fleet, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PORTAL_SYNC_CONFIG": str(fleet_db.config_file), "PORTAL_DB_URL": fleet_db.url}
    return subprocess.run([sys.executable, "-m", "portal_sync.cli", "status", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_the_cli_prints_the_summary_filters_it_and_drills_down(fleet_db):
    out = _cli(fleet_db)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [tuple(line.split()[:2]) for line in lines] == EXPECTED
    assert "failed: charges" in lines[0] and "error: charges: extract failed" in lines[0]
    assert "refused 3" in lines[3] and "stale 2/2 (charges,payments)" in lines[2]
    assert out.stderr.startswith("9 communities (failed 2, stale 1, refused 1, warnings 1, running 1, ok 2, never 1)")
    assert "OLDTOWN: has runs in the portal database but is not in the configuration" in out.stderr

    worst = _cli(fleet_db, "--limit", "2")
    assert [line.split()[1] for line in worst.stdout.splitlines()] == ["FAILED", "RETRYING"]
    assert "shown 1-2" in worst.stderr
    ok = _cli(fleet_db, "--state", "ok", "--match", "spring")
    assert [line.split()[1] for line in ok.stdout.splitlines()] == ["SPRINGFLD"]
    as_json = json.loads(_cli(fleet_db, "--json", "--state", "failed").stdout)
    assert [r["code"] for r in as_json["communities"]] == ["FAILED", "RETRYING"]
    assert as_json["communities"][0]["failed_datasets"] == ["charges"] and as_json["counts"]["never"] == 1

    detail = _cli(fleet_db, "springfld")
    assert detail.returncode == 0 and detail.stdout.startswith("SPRINGFLD (City of Springfield)")
    assert len([line for line in detail.stdout.splitlines() if line.startswith("  ") and "published" in line]) == 6
    detail_json = json.loads(_cli(fleet_db, "SPRINGFLD", "--json").stdout)
    assert [c["code"] for c in detail_json["communities"]] == ["SPRINGFLD"]
    assert len(detail_json["communities"][0]["datasets"]) == 6

    mixed = _cli(fleet_db, "SPRINGFLD", "--state", "ok")
    assert mixed.returncode == 2 and "give no community code" in mixed.stderr
    bad = _cli(fleet_db, "--state", "sideways")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_a_reader_of_some_communities_sees_only_those(fleet_db):
    """The page narrows the configuration to the communities a user may read (web._readable); the others are
    neither summarised nor listed as unconfigured."""
    readable = LoadedConfig(tuple(c for c in fleet_db.config.communities if c.code in ("STALE", "OKTOO")), ())
    data = fleet(fleet_db.url, readable, configured={c.code for c in fleet_db.config.communities})
    assert [r["code"] for r in data["communities"]] == ["STALE", "OKTOO"] and data["total"] == 2
    assert data["unconfigured"] == ["OLDTOWN"]



_ROUTES = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient
    create_auth_manager()
    import sync_status.web as web
    app = web.create_app()
    # the login itself (a JWT from Airflow's form) is tests/e2e/test_status_page.py's; here: an admin is logged in
    app.dependency_overrides[get_user] = lambda: SimpleAuthManagerUser(username="admin", role="admin")
    client = TestClient(app)
    out = {}
    for path in json.loads(sys.argv[2]):
        r = client.get(path)
        out[path] = {"status": r.status_code, "csp": r.headers.get("content-security-policy"), "body": r.text}
    print(json.dumps(out))
""")


def test_the_routes_serve_the_summary_its_filters_and_the_drill_down(fleet_db, tmp_path):
    """plugins/sync_status/web.py's routes in an Airflow API app of their own (a child process: Airflow's
    settings are global), with the simple auth manager deciding what the admin may read."""
    portal = psycopg.conninfo.conninfo_to_dict(fleet_db.url)
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "PORTAL_SYNC_CONFIG": str(fleet_db.config_file),
           "AIRFLOW_CONN_PORTAL_DB": json.dumps({"conn_type": "postgres", "host": portal.get("host", "127.0.0.1"),
                                                 "port": int(portal.get("port", 5432)), "login": "postgres",
                                                 "schema": portal["dbname"]})}
    paths = ["/", "/?state=failed&q=ret", "/?page=7", "/?page=abc", "/?state=bogus", "/?community=springfld",
             "/?community=NOWHERE", "/api/fleet?state=failed&per_page=1&page=2"]
    result = subprocess.run([sys.executable, "-c", _ROUTES, str(ROOT / "plugins"), json.dumps(paths)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])

    def rows(path: str) -> list[str]:
        return re.findall(r'<tr data-community="([A-Z]+)"', got[path]["body"])

    assert got["/"]["status"] == 200 and rows("/") == [code for _, code in EXPECTED]
    assert got["/"]["csp"].startswith("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
    assert '<form class="filters" action="./" method="get">' in got["/"]["body"]
    assert rows("/?state=failed&q=ret") == ["RETRYING"]
    assert rows("/?page=7") == rows("/?page=abc") == rows("/")  # past the last page, or not a number: page 1
    assert got["/?state=bogus"]["status"] == 400 and "Unknown state" in got["/?state=bogus"]["body"]
    detail = got["/?community=springfld"]
    assert detail["status"] == 200 and '<section class="community" data-community="SPRINGFLD">' in detail["body"]
    assert '<a href="./">All communities</a>' in detail["body"]
    assert got["/?community=NOWHERE"]["status"] == 404
    api = json.loads(got["/api/fleet?state=failed&per_page=1&page=2"]["body"])
    assert [r["code"] for r in api["communities"]] == ["RETRYING"] and api["pages"] == 2
