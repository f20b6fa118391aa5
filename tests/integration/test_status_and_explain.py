"""The status queries and every answer of "why isn't this customer in the portal?", on real syncs.

A tiny simulated community is synced through the pipeline; its Caselle is then edited the
way cities do (status changes, online access turned off, a renumbering, a deleted account, a
record that breaks a rule, a new account with a malformed number) and synced again, so each
verdict is reached from the sync's own tables, not from rows planted to match the code.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pgtest import migrated_database
from synctest import advance, community, local_now, sync

from portal_sync.config import Community, LoadedConfig
from portal_sync.dq_report import build_site
from portal_sync.explain import Explanation, explain
from portal_sync.reporting.text import format_overview
from portal_sync.status import overview

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CODE = "SPRINGFLD"
MARKUP_NUMBER = "<b>1-001</b>"


def _customer(sim, where: str) -> tuple[int, str]:
    rows = sim.query(f'SELECT "CustomerID", "CustomerNumber" FROM "UB_Customer" WHERE {where} ORDER BY "CustomerID"')
    assert rows, f"the simulated community has no customer with {where}"
    return rows[0]


def _set(sim, customer_id: int, **values: object) -> None:
    for column, value in values.items():
        sim.execute(f'UPDATE "UB_Customer" SET "{column}" = ? WHERE "CustomerID" = ?', (value, customer_id))


@pytest.fixture(scope="module")
def town_db() -> Iterator[str]:
    """A portal database of this module's own: the town below is built once and only read by the tests
    (the shared session database is emptied by other tests' ``portal`` fixture)."""
    with migrated_database("cps_test_explain") as url:
        yield url


@pytest.fixture(scope="module")
def town(town_db, tmp_path_factory):
    """A community after three runs, with one account in each state support asks about.

    Its quality settings refuse account numbers that do not fit the mask, so the finding of a new
    account that never reached the portal names its number (the only way to link a number to a
    refused CustomerID).
    """
    from caselle_sim import SourceSpec, create_source

    portal = town_db  # the sync helpers' name for it
    spec = SourceSpec.from_url(f"sqlite:///{tmp_path_factory.mktemp('town') / 'caselle.db'}")
    sim = create_source(spec, preset="tiny", seed=7, org_code=CODE, org_name="City of Springfield",
                        time_zone="America/Denver", customer_number_mask="###-#####-##", start=local_now())
    comm = community(quality={"severity": {"accounts.number_off_mask": "refuse"}})
    sync(sim, portal, "first", comm=comm)

    # Caselle's "Delete Inactive Customers" first: it takes settled inactive accounts, which the edits below
    # would otherwise add to.
    deleted = sim.delete_inactive_customers(1)["UB_Customer"].deleted
    assert len(deleted) == 1
    deleted_id = next(iter(deleted))
    with psycopg.connect(portal) as conn:
        deleted_number = conn.execute("SELECT account_number FROM portal.accounts WHERE account_id = %s",
                                      (deleted_id,)).fetchone()[0]
    cases: dict[str, tuple[int, str]] = {"deleted": (deleted_id, deleted_number)}

    def pick(where: str) -> tuple[int, str]:
        taken = ", ".join(str(c[0]) for c in cases.values())
        return _customer(sim, f'{where} AND "CustomerID" NOT IN ({taken})')

    active, online = "\"Status\" = 'A'", "\"OnlineAccess\" = 'Y'"
    cases["visible"] = pick(f"{active} AND {online}")
    cases["visible_refused"] = pick(f"{active} AND {online}")
    cases["inactive"] = pick(f"{active} AND {online}")
    cases["no_online"] = pick(f"{active} AND {online}")
    cases["hidden_refused"] = pick(f"{active} AND {online}")
    cases["renumbered"] = pick(f"{active} AND {online}")

    _set(sim, cases["inactive"][0], Status="I")
    _set(sim, cases["no_online"][0], OnlineAccess="N")
    _set(sim, cases["hidden_refused"][0], Status="I")
    _set(sim, cases["renumbered"][0], CustomerNumber="777-77777-77")
    new_id = sim.query('SELECT max("CustomerID") + 1 FROM "UB_Customer"')[0][0]
    sim.execute(
        'INSERT INTO "UB_Customer" ("CustomerID", "CustomerNumber", "LocationID", "ContactID", "CustomerType",'
        ' "Status", "OnlineAccess", "ConnectDate") SELECT ?, ?, "LocationID", "ContactID", "CustomerType", \'A\','
        ' \'Y\', "ConnectDate" FROM "UB_Customer" WHERE "CustomerID" = ?',
        (new_id, "12-3456", cases["visible"][0]),
    )
    cases["new_refused"] = (new_id, "12-3456")
    # a number holding markup: refused by the mask rule, and its reason carries the markup as typed
    sim.execute(
        'INSERT INTO "UB_Customer" ("CustomerID", "CustomerNumber", "LocationID", "ContactID", "CustomerType",'
        ' "Status", "OnlineAccess", "ConnectDate") SELECT ?, ?, "LocationID", "ContactID", "CustomerType", \'A\','
        ' \'Y\', "ConnectDate" FROM "UB_Customer" WHERE "CustomerID" = ?',
        (new_id + 1, MARKUP_NUMBER, cases["visible"][0]),
    )
    cases["markup_refused"] = (new_id + 1, MARKUP_NUMBER)
    interval, _ = advance(sim, 5)
    sync(sim, portal, "second", comm=comm, interval=interval)

    # Break two records that are already in the portal: one visible, one hidden.
    _set(sim, cases["visible_refused"][0], CustomerType="XXX")
    _set(sim, cases["hidden_refused"][0], CustomerType="XXX")
    interval, _ = advance(sim, 5)
    sync(sim, portal, "third", comm=comm, interval=interval)
    yield Town(portal, comm, cases)
    sim.close()
    spec.drop()


@dataclass(frozen=True)
class Town:
    """The synced community: its portal database, configuration and (CustomerID, number) per case."""

    url: str
    community: Community
    cases: dict[str, tuple[int, str]]

    @property
    def config(self) -> LoadedConfig:
        return LoadedConfig((self.community,), ())

    def ask(self, number: str, **kwargs: Any) -> Explanation:
        return explain(self.url, CODE, number, self.config, **kwargs)


def test_found_visible_however_the_number_is_typed(town):
    account_id, number = town.cases["visible"]
    for typed in (number, number.replace("-", ""), " ".join(number.split("-")), number.replace("-", " - ")):
        answer = town.ask(typed)
        assert answer.verdict == "found_visible", (typed, answer.message)
        assert answer.account["account_id"] == account_id
        assert number in answer.message
    assert explain(town.url, CODE.lower(), number, town.config).verdict == "found_visible"


def test_a_visible_account_whose_latest_change_is_refused_says_so(town):
    answer = town.ask(town.cases["visible_refused"][1])
    assert answer.verdict == "found_visible"
    assert "refused by data quality" in answer.message and "code_customertype" in answer.message


def test_not_eligible_names_the_status_or_online_access(town):
    status = town.ask(town.cases["inactive"][1])
    assert status.verdict == "not_eligible"
    assert status.details["ineligible"] == ["status"]
    assert "status is inactive" in status.message and "active, final" in status.message

    online = town.ask(town.cases["no_online"][1])
    assert online.verdict == "not_eligible"
    assert online.details["ineligible"] == ["online_access"]
    assert "online access is turned off" in online.message


def test_refused_gives_the_rule_and_since_when(town):
    answer = town.ask(town.cases["hidden_refused"][1])
    assert answer.verdict == "refused"
    assert "code_customertype" in answer.message and "since" in answer.message
    assert answer.details["refusals"][0]["rule"] == "code_customertype"
    assert "status is inactive" in answer.message  # why the version the portal keeps is hidden


def test_a_new_account_refused_before_reaching_the_portal_is_found_by_its_number(town):
    customer_id, number = town.cases["new_refused"]
    for typed in (number, "123456", "12 3456"):
        answer = town.ask(typed)
        assert answer.verdict == "refused", (typed, answer.message)
        assert answer.details["customer_id"] == str(customer_id)
        assert "number_off_mask" in answer.message
    with psycopg.connect(town.url) as conn:
        since = conn.execute("SELECT min(first_seen_at) FROM sync.quarantine WHERE row_key = %s",
                             (str(customer_id),)).fetchone()[0]
    assert min(r["first_seen_at"] for r in answer.details["refusals"]) == since


def test_a_number_in_quarantine_holding_markup_is_refused_with_rule_and_since(town):
    customer_id, number = town.cases["markup_refused"]
    with psycopg.connect(town.url) as conn:
        since, first_run = conn.execute(
            "SELECT min(first_seen_at), min(first_run_key) FROM sync.quarantine WHERE community_code = %s"
            " AND dataset = 'accounts' AND row_key = %s", (CODE, str(customer_id))).fetchone()
    assert since is not None, "the markup number should wait in quarantine"
    for typed in (number, "1-001", "1001"):
        answer = town.ask(typed)
        assert answer.verdict == "refused", (typed, answer.message)
        assert "no sync run refused it" not in answer.message
        assert answer.details["customer_id"] == str(customer_id)
        assert f"is in quarantine, refused by data quality since run {first_run} (" in answer.message
        assert answer.details["quarantined_since_run"] == first_run
        assert "number_off_mask (" in answer.message and number in answer.message  # the rule and its reason
        assert min(r["first_seen_at"] for r in answer.details["refusals"]) == since


def test_deleted_in_caselle_says_when(town):
    answer = town.ask(town.cases["deleted"][1])
    assert answer.verdict == "deleted"
    assert answer.details["deleted_at"] is not None
    assert "deleted in Caselle" in answer.message


def test_an_old_number_names_the_new_one(town):
    account_id, old = town.cases["renumbered"]
    with psycopg.connect(town.url) as conn:
        history = conn.execute(
            "SELECT old_number, new_number FROM sync.account_number_history WHERE community_code = %s"
            " AND account_id = %s", (CODE, account_id)).fetchall()
    assert history == [(old, "777-77777-77")]
    answer = town.ask(old.replace("-", ""))
    assert answer.verdict == "renumbered"
    assert answer.details["old_number"] == old and answer.details["new_number"] == "777-77777-77"
    assert old in answer.message and "777-77777-77" in answer.message
    assert town.ask("777 77777 77").verdict == "found_visible"


def test_unknown_number_is_not_synced_yet_with_the_next_run(town):
    now = datetime(2030, 1, 1, 12, 7, tzinfo=UTC)
    answer = town.ask("999-99999-99", now=now)
    assert answer.verdict == "not_synced_yet"
    # the community syncs every 5 minutes, at its staggered minute ("M-59/5"); accounts publish every run
    offset = int(town.community.effective_schedule.split("-")[0])
    minute = next(m for m in range(8, 13) if m % 5 == offset)
    assert answer.details["next_run_due_at"] == datetime(2030, 1, 1, 12, minute, tzinfo=UTC)
    assert f"2030-01-01 05:{minute:02d} MST" in answer.message
    # the refused new account's CustomerID is offered, as its number might be this one
    assert str(town.cases["new_refused"][0]) in answer.details["quarantined_account_ids"]


def test_status_shows_publish_counts_quality_marks_and_the_report(town, tmp_path, monkeypatch):
    monkeypatch.setenv("PORTAL_SYNC_REPORT_DIR", str(tmp_path / "reports"))
    build_site(town.url, CODE)
    data = overview(town.url, town.config)
    [town_status] = data["communities"]
    assert town_status["code"] == CODE and town_status["last_run"]["outcome"] == "published"
    assert town_status["report_index"] == "index.html"
    by_name = {d["dataset"]: d for d in town_status["datasets"]}
    assert set(by_name) == set(town.community.datasets)
    accounts = by_name["accounts"]
    assert accounts["freshness"] == "fresh" and accounts["last_published_at"] is not None
    # refused again by the last run: the two new accounts with malformed numbers, the two broken type codes
    assert accounts["last_run"]["rows_refused"] == 4
    assert accounts["quarantined"] == 4
    assert accounts["quality"]["status"] == "failed"
    assert {c["rule"] for c in accounts["quality"]["failed_checks"]} == {"code_customertype", "number_off_mask"}
    assert accounts["report_page"] is not None
    assert (tmp_path / "reports" / CODE.lower() / accounts["report_page"]).is_file()
    charges = by_name["charges"]
    with psycopg.connect(town.url) as conn:
        mark = conn.execute("SELECT mark FROM sync.watermarks WHERE community_code = %s AND dataset = 'charges'",
                            (CODE,)).fetchone()[0]
        counts = conn.execute(
            "SELECT rows_inserted + rows_updated + rows_deleted FROM sync.run_datasets d JOIN sync.runs r"
            " USING (run_key) WHERE r.community_code = %s AND d.dataset = 'charges'"
            " ORDER BY r.started_at DESC LIMIT 1", (CODE,)).fetchone()[0]
    assert charges["mark"] == mark
    assert charges["last_run"]["rows_changed"] == counts
    text = format_overview(data)
    assert CODE in text and "accounts" in text and "code_customertype" in text


def test_status_turns_stale_after_the_alert_limit(town):
    later = datetime.now(UTC) + timedelta(hours=2)  # 5-minute cadence, alert after 3 x 5 minutes
    [town_status] = overview(town.url, town.config, now=later)["communities"]
    assert all(d["freshness"] == "STALE" for d in town_status["datasets"])
    assert town_status["stale"] == list(town.community.datasets)


def test_a_data_set_skipped_by_its_cadence_keeps_its_last_real_run(make_source, portal):
    comm = community(cadence_minutes={"accounts": 60})
    sim = make_source("sqlite", seed=11, start=local_now())
    sync(sim, portal, "first", comm=comm)
    interval, _ = advance(sim, 5)
    sync(sim, portal, "second", comm=comm, interval=interval)
    [status] = overview(portal, LoadedConfig((comm,), ()))["communities"]
    accounts = next(d for d in status["datasets"] if d["dataset"] == "accounts")
    assert accounts["latest_phase"] == "skipped"
    assert accounts["last_run"]["airflow_run_id"] == "first"
    assert accounts["last_run"]["rows_changed"] > 0
    assert accounts["cadence_seconds"] == 3600


def test_status_of_a_community_without_runs_and_of_unconfigured_ones(portal):
    other = community(code="SHELBY", datasets=("charges",))
    with psycopg.connect(portal) as conn:
        conn.execute("INSERT INTO sync.runs (run_key, community_code, datasets, outcome) VALUES"
                     " ('gone_1', 'OLDTOWN', '{charges}', 'published')")
    data = overview(portal, LoadedConfig((other,), ()))
    [shelby] = data["communities"]
    assert shelby["last_run"] is None
    assert shelby["datasets"][0]["freshness"] == "never published"
    assert shelby["datasets"][0]["quality"]["status"] == "not checked"
    assert data["unconfigured"] == ["OLDTOWN"]


def test_the_cli_answers_explain_and_status(town, tmp_path):
    config = tmp_path / "communities.yaml"
    config.write_text(textwrap.dedent(f"""
        communities:
          - code: {CODE}
            caselle_conn_id: caselle_test
            time_zone: America/Denver
            quality: {{severity: {{accounts.number_off_mask: refuse}}}}
    """))
    env = {**os.environ, "PORTAL_SYNC_CONFIG": str(config), "PORTAL_DB_URL": town.url}
    cli = [sys.executable, "-m", "portal_sync.cli"]
    number = town.cases["inactive"][1]
    out = subprocess.run([*cli, "explain", CODE.lower(), *number.split("-")], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith(f"{CODE} {' '.join(number.split('-'))}: not_eligible")
    out = subprocess.run([*cli, "status", CODE], env=env, capture_output=True, text=True, check=True).stdout
    assert f"{CODE} (" in out and "accounts" in out
    missing = subprocess.run([*cli, "explain", "NOWHERE", "1"], env=env, capture_output=True, text=True)
    assert missing.returncode == 2 and "no community 'NOWHERE'" in missing.stderr and not missing.stdout


def test_the_plugin_imports_without_io_and_registers_its_page(tmp_path):
    """Every Airflow process imports the plugins folder: the plugin must do no I/O then and pull in
    neither FastAPI nor the portal code until the API server serves a request."""
    code = textwrap.dedent("""
        import socket, sys
        def _refuse(*a, **k):
            raise RuntimeError("I/O at plugin import")
        socket.socket.connect = _refuse
        socket.create_connection = _refuse
        import psycopg
        psycopg.connect = _refuse
        from airflow import plugins_manager
        plugins, errors = plugins_manager._get_plugins()
        assert not errors, errors
        [plugin] = [p for p in plugins if p.name == "caselle_sync_status"]
        [app] = plugin.fastapi_apps
        assert app["url_prefix"] == "/sync-status", app
        [view] = plugin.external_views
        assert view["href"] == "sync-status/" and view["url_route"] == "sync-status", view
        heavy = [m for m in ("sync_status.web", "portal_sync.status", "airflow.api_fastapi.core_api.security")
                 if m in sys.modules]
        assert not heavy, heavy
        print("ok")
    """)
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "True"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
