"""The sync status page through a real Airflow API server and a real browser.

A private Airflow (own home, metadata database and port, like test_airflow_run.py) serves the
repository's plugins folder; the portal database it reads is a fresh one, filled by real
pipeline runs of two simulated communities. Only the API server runs: the page needs no
scheduler, and the machine is small.

Headless Chromium is driven through chromedriver's W3C WebDriver HTTP API with urllib, so the
test needs no Python package beyond the standard library. It logs in through Airflow's own
login form, reads the fleet summary and each community's detail, follows a report link, asks the
explain form, and opens the page inside the Airflow UI. ``CPS_UPDATE_SCREENSHOTS=1`` also writes that view to
docs/status-page.png (kept in the repository; off by default so a test run leaves the checkout
unchanged).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql
from synctest import advance, local_now, sync

from portal_sync.config import load_config
from portal_sync.dq_report import build_site
from portal_sync.migrate import migrate

# Its own group: under pytest-xdist it runs beside the shared Airflow's tests (its port differs).
pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.xdist_group("status_page")]

ROOT = Path(__file__).resolve().parents[2]
# the server tests/conftest.py uses, for databases of this module's own
ADMIN_URL = (f"postgresql://postgres@{os.environ.get('CPS_TEST_PG_HOST', '127.0.0.1')}:"
             f"{os.environ.get('CPS_TEST_PG_PORT', '5432')}/postgres")
PORT = int(os.environ.get("CPS_STATUS_AIRFLOW_PORT", "8188"))
BASE = f"http://localhost:{PORT}"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
COMMUNITIES = {
    "SPRINGFLD": {"name": "City of Springfield", "time_zone": "America/Denver", "mask": "###-#####-##"},
    "SHELBYVL": {"name": "Shelbyville", "time_zone": "America/Chicago", "mask": "##-####"},
}


# --------------------------------------------------------------------------- fixtures


@dataclass(frozen=True)
class StatusAirflow:
    base: str
    portal_url: str
    visible_account: str  # a SPRINGFLD account number that residents can see


def _wait(what: str, check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def _healthy() -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/api/v2/monitor/health", timeout=3) as response:
            return json.load(response).get("metadatabase", {}).get("status") == "healthy"
    except (OSError, ValueError):
        return False


def _seed(portal_url: str, config_path: Path, reports: Path, home: Path) -> str:
    """Two communities synced by the pipeline; SPRINGFLD's second run refuses orphan ledger lines, so
    the page has a failed data-quality check to show. Returns a visible SPRINGFLD account number."""
    from caselle_sim import SourceSpec, create_source

    config = load_config(config_path)
    assert not config.errors, config.errors
    specs = []
    try:
        for comm in config.communities:
            facts = COMMUNITIES[comm.code]
            spec = SourceSpec.from_url(f"sqlite:///{home / f'{comm.code.lower()}.db'}")
            specs.append(spec)
            sim = create_source(spec, preset="tiny", seed=len(specs) * 13, org_code=comm.code,
                                org_name=facts["name"], time_zone=facts["time_zone"],
                                customer_number_mask=facts["mask"],
                                # Caselle's clock a little behind ours: the second run's interval below ends
                                # in the past, as a scheduled run's does (no mark "in the future" on the page)
                                start=local_now(facts["time_zone"]) - timedelta(minutes=10))
            sync(sim, portal_url, f"manual__{comm.code.lower()}_1", comm=comm)
            if comm.code == "SPRINGFLD":
                sim.add_orphans(lines=3, receipts=1)
                interval, _ = advance(sim, 5)
                sync(sim, portal_url, f"scheduled__{comm.code.lower()}_2", comm=comm, interval=interval)
            build_site(portal_url, comm.code, reports / comm.code.lower())
            sim.close()
    finally:
        for spec in specs:
            spec.drop()
    with psycopg.connect(portal_url) as conn:
        return conn.execute("SELECT account_number FROM portal.accounts WHERE community_code = 'SPRINGFLD'"
                            " AND portal_visible ORDER BY account_id LIMIT 1").fetchone()[0]


@pytest.fixture(scope="module")
def status_airflow(tmp_path_factory) -> Iterator[StatusAirflow]:
    """A private Airflow API server whose plugins folder is the repository's, reading a seeded portal."""
    home = tmp_path_factory.mktemp("status_page")
    suffix = uuid.uuid4().hex[:8]
    portal_db, airflow_db = f"cps_test_status_{suffix}", f"cps_test_status_af_{suffix}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(portal_db)))
    portal_url = psycopg.conninfo.make_conninfo(ADMIN_URL, dbname=portal_db)
    server = None
    try:
        migrate(portal_url)
        config = home / "communities.yaml"
        config.write_text(yaml.safe_dump({"communities": [
            {"code": "SPRINGFLD", "name": "City of Springfield", "caselle_conn_id": "caselle_springfld",
             "time_zone": "America/Denver", "schedule": "*/15 * * * *", "cadence_minutes": {"accounts": 60}},
            {"code": "SHELBYVL", "name": "Shelbyville", "caselle_conn_id": "caselle_shelbyvl",
             "time_zone": "America/Chicago", "schedule": "0 * * * *",
             "datasets": ["accounts", "charges", "payments", "balances", "residents"]},
        ]}))
        reports = home / "reports"
        portal = psycopg.conninfo.conninfo_to_dict(portal_url)
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(home / "airflow"),
            "CPS_AIRFLOW_DB": airflow_db,
            "CPS_AIRFLOW_PORT": str(PORT),
            "PORTAL_SYNC_CONFIG": str(config),
            "PORTAL_SYNC_REPORT_DIR": str(reports),
            "AIRFLOW_CONN_PORTAL_DB": json.dumps({
                "conn_type": "postgres", "host": portal.get("host", "127.0.0.1"),
                "port": int(portal.get("port", 5432)), "login": portal.get("user", "postgres"), "schema": portal_db,
            }),
        }
        for key in [k for k in env if k.startswith("AIRFLOW__")]:
            del env[key]  # let scripts/env.sh derive everything from AIRFLOW_HOME and the port
        env["AIRFLOW__API__WORKERS"] = "1"  # one API worker is plenty for one browser
        # The metadata database migrates while the pipeline fills the portal: the two overlap.
        init = subprocess.Popen([str(ROOT / "scripts" / "airflow-init.sh")], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        try:
            visible = _seed(portal_url, config, reports, home)
        finally:
            _, init_errors = init.communicate(timeout=600)
        assert init.returncode == 0, init_errors.decode(errors="replace")[-3000:]
        with (home / "api-server.log").open("wb") as log:  # the child keeps its own copy of the descriptor
            server = subprocess.Popen(["bash", "-c", ". scripts/env.sh && exec airflow api-server"], cwd=ROOT,
                                      env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)

        def up() -> bool:
            if server.poll() is not None:
                tail = (home / "api-server.log").read_text(errors="replace")[-3000:]
                raise AssertionError(f"the API server exited ({server.returncode}):\n{tail}")
            return _healthy()

        _wait("the API server", up, timeout=180, every=1)
        yield StatusAirflow(BASE, portal_url, visible)
    finally:
        if server is not None:
            _stop(server)
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            for name in (portal_db, airflow_db):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _stop(process: subprocess.Popen) -> None:
    """End the process group we started (the API server and its worker), and nothing else."""
    # uvicorn stops serving at once; the interpreter's own exit can take a while on a busy machine
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


# --------------------------------------------------------------------------- HTTP helpers


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _request(url: str, *, token: str | None = None, cookie: str | None = None, method: str = "GET",
             body: dict[str, Any] | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if cookie:
        headers["Cookie"] = cookie
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _token(base: str) -> str:
    status, _, body = _request(f"{base}/auth/token", method="POST", body={"username": "admin", "password": "admin"})
    assert status == 201, body
    return json.loads(body)["access_token"]


# --------------------------------------------------------------------------- WebDriver (stdlib)


class Browser:
    """Headless Chromium through chromedriver's W3C WebDriver HTTP API: just what this test needs."""

    ELEMENT = "element-6066-11e4-a52e-4f735466cecf"

    def __init__(self, profile: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.driver = subprocess.Popen([CHROMEDRIVER, f"--port={port}"], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, start_new_session=True)
        self.base = f"http://127.0.0.1:{port}"
        _wait("chromedriver", self._driver_ready, timeout=30, every=0.2)
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", "--window-size=1400,1000", "--force-device-scale-factor=1"]
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": CHROMIUM, "args": args}}}}
        self.session = self._call("POST", "/session", caps)["sessionId"]
        self._call("POST", f"/session/{self.session}/timeouts", {"pageLoad": 60000, "script": 30000})

    def _driver_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/status", timeout=1) as response:
                return bool(json.load(response)["value"]["ready"])
        except (OSError, ValueError, KeyError):
            return False

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body if body is not None else {}).encode() if method == "POST" else None
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=90) as response:
                return json.load(response)["value"]
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"WebDriver {method} {path}: {exc.read().decode(errors='replace')[:800]}") from exc

    def _session(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._call(method, f"/session/{self.session}{path}", body)

    def get(self, url: str) -> None:
        self._session("POST", "/url", {"url": url})

    @property
    def url(self) -> str:
        return self._session("GET", "/url")

    def js(self, script: str, *args: Any) -> Any:
        return self._session("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css: str) -> str:
        return self._session("POST", "/element", {"using": "css selector", "value": css})[self.ELEMENT]

    def wait_for(self, css: str, timeout: float = 30) -> str:
        return _wait(css, lambda: self.js("return document.querySelector(arguments[0])", css), timeout)[self.ELEMENT]

    def type(self, element: str, text: str) -> None:
        self._session("POST", f"/element/{element}/value", {"text": text})

    def click(self, element: str) -> None:
        self._session("POST", f"/element/{element}/click", {})

    def screenshot(self) -> bytes:
        return base64.b64decode(self._session("GET", "/screenshot"))

    def quit(self) -> None:
        try:
            self._call("DELETE", f"/session/{self.session}")
        finally:
            _stop(self.driver)


@pytest.fixture
def browser(tmp_path) -> Iterator[Browser]:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.fail("chromium and chromedriver are needed (scripts/setup-system.sh installs them)")
    session = Browser(tmp_path / "chromium-profile")
    try:
        yield session
    finally:
        session.quit()


# --------------------------------------------------------------------------- tests


def test_without_a_login_every_route_is_refused(status_airflow):
    base = status_airflow.base
    status, headers, _ = _request(f"{base}/sync-status/")
    assert status == 303
    assert headers["location"] == "/auth/login?next=%2Fsync-status%2F"
    status, headers, _ = _request(f"{base}/sync-status/explain?community=SPRINGFLD&account=1")
    assert status == 303 and headers["location"].startswith("/auth/login?next=")
    assert urllib.parse.parse_qs(headers["location"].split("?", 1)[1])["next"] == [
        "/sync-status/explain?community=SPRINGFLD&account=1"]
    status, headers, _ = _request(f"{base}/sync-status/reports/springfld/index.html")
    assert status == 303 and headers["location"].startswith("/auth/login")
    assert _request(f"{base}/sync-status/api/status")[0] == 401
    assert _request(f"{base}/sync-status/api/explain?community=SPRINGFLD&account=1")[0] == 401
    assert _request(f"{base}/sync-status/api/status", token="not-a-token")[0] == 403
    status, headers, _ = _request(f"{base}/sync-status/", cookie="_token=forged")
    assert status == 303 and headers["location"].startswith("/auth/login")


def test_an_api_token_reads_status_explain_and_reports(status_airflow):
    base, token = status_airflow.base, _token(status_airflow.base)
    status, _, body = _request(f"{base}/sync-status/api/status", token=token)
    assert status == 200
    data = json.loads(body)
    assert [c["code"] for c in data["communities"]] == ["SPRINGFLD", "SHELBYVL"]
    springfield = {d["dataset"]: d for d in data["communities"][0]["datasets"]}
    assert springfield["charges"]["quality"]["status"] == "failed"
    assert "orphan_account" in {c["rule"] for c in springfield["charges"]["quality"]["failed_checks"]}
    assert springfield["charges"]["last_run"]["rows_refused"] >= 3
    assert all(d["freshness"] == "fresh" for d in springfield.values())

    query = urllib.parse.urlencode({"community": "springfld", "account": status_airflow.visible_account})
    status, _, body = _request(f"{base}/sync-status/api/explain?{query}", token=token)
    assert status == 200 and json.loads(body)["verdict"] == "found_visible"

    status, headers, body = _request(f"{base}/sync-status/reports/springfld/index.html", token=token)
    assert status == 200 and headers["content-type"].startswith("text/html") and b"SPRINGFLD" in body
    assert _request(f"{base}/sync-status/reports/springfld/../../communities.yaml", token=token)[0] == 404
    assert _request(f"{base}/sync-status/reports/nowhere/index.html", token=token)[0] == 404

    status, _, body = _request(f"{base}/api/v2/plugins", token=token)
    [plugin] = [p for p in json.loads(body)["plugins"] if p["name"] == "caselle_sync_status"]
    assert plugin["fastapi_apps"][0]["url_prefix"] == "/sync-status"
    assert plugin["external_views"][0]["url_route"] == "sync-status"


def test_a_browser_logs_in_and_sees_both_communities(status_airflow, browser, tmp_path):
    base = status_airflow.base
    browser.get(f"{base}/sync-status/")
    # not logged in: Airflow's own login form, which brings us back afterwards
    username = browser.wait_for("input[name=username]")
    assert "/auth/login" in browser.url
    browser.type(username, "admin")
    browser.type(browser.find("input[name=password]"), os.environ.get("CPS_AIRFLOW_PASSWORD", "admin"))
    browser.click(browser.find("button[type=submit]"))
    # the fleet summary: one line per community
    browser.wait_for("table.fleet tr[data-community=SHELBYVL]")
    assert browser.url == f"{base}/sync-status/"
    lines = browser.js("return Array.from(document.querySelectorAll('table.fleet tr[data-community]'))"
                       ".map(r => r.dataset.community)")
    assert sorted(lines) == ["SHELBYVL", "SPRINGFLD"], lines
    text = browser.js("return document.body.innerText")
    assert "City of Springfield" in text and "Shelbyville" in text

    # each community's line leads to its detail: a row per data set
    sections = {}
    for code in ("SPRINGFLD", "SHELBYVL"):
        browser.get(f"{base}/sync-status/")
        browser.click(browser.wait_for(f"table.fleet tr[data-community={code}] a"))
        browser.wait_for(f"section.community[data-community={code}]")
        sections[code] = browser.js("return Array.from(document.querySelectorAll('section.community'))"
                                    ".map(s => [s.dataset.community, s.querySelectorAll('tbody tr').length])")
    assert sections == {"SPRINGFLD": [["SPRINGFLD", 6]], "SHELBYVL": [["SHELBYVL", 5]]}, sections
    browser.get(f"{base}/sync-status/?community=SPRINGFLD")
    browser.wait_for("section.community[data-community=SPRINGFLD]")
    assert "orphan_account" in browser.js("return document.body.innerText")

    # the report link of a data set works in the browser
    link = browser.find("section[data-community=SPRINGFLD] tr[data-dataset=charges] a")
    browser.click(link)
    _wait("the report page", lambda: "/sync-status/reports/springfld/runs/" in browser.url, timeout=30)
    assert "orphan_account" in browser.js("return document.body.innerText")

    # the explain form answers in the page
    browser.get(f"{base}/sync-status/")
    number = browser.wait_for("input[name=account]")
    browser.type(number, status_airflow.visible_account.replace("-", " "))
    browser.click(browser.find("form.explain button[type=submit]"))
    verdict = browser.wait_for("[data-verdict]")
    assert browser.js("return arguments[0].dataset.verdict", {Browser.ELEMENT: verdict}) == "found_visible"

    # inside the Airflow UI: the Browse menu links the page, which shows in the UI's frame
    browser.get(f"{base}/plugin/sync-status")
    frame_text = _wait("the status page in the Airflow UI", lambda: browser.js(
        "const f = document.querySelector('iframe');"
        "return f && f.contentDocument && f.contentDocument.querySelector('tr[data-community=SHELBYVL]')"
        " ? f.contentDocument.body.innerText : null"), timeout=60)
    assert "City of Springfield" in frame_text and "Shelbyville" in frame_text
    shot = browser.screenshot()
    menu = browser.js("return Array.from(document.querySelectorAll('button'))"
                      ".find(b => b.innerText.trim() === 'Browse') || null")
    assert menu, "the Airflow UI has no Browse menu"
    browser.click(menu[Browser.ELEMENT])
    entries = _wait("the Browse menu", lambda: browser.js(
        "return Array.from(document.querySelectorAll('[role=menuitem]')).map(e => e.innerText.trim())"), timeout=15)
    assert "Sync status" in entries

    assert shot.startswith(b"\x89PNG")
    (tmp_path / "status-page.png").write_bytes(shot)
    if os.environ.get("CPS_UPDATE_SCREENSHOTS") == "1":
        (ROOT / "docs" / "status-page.png").write_bytes(shot)
