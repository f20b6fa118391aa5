"""No credential and no sensitive Caselle value leaks, through a real Airflow run (docs/adr/0006).

Distinctive passwords are planted in both connections a sync uses (the portal's login, a
member of the writer group, and the Caselle ODBC connection: SQLite ignores PWD, the
password still travels in the connection string), and marker values in every sensitive
Caselle column. After the DAG has run to success, no file of the Airflow (task and
component logs, configuration), no page of the data-quality report and no row of the portal
or Airflow metadata databases may contain any of them.

The Airflow is the session's shared one (tests/e2e/airflowkit.py): every component has had both
passwords in its connections from its start, and every task of every test on it has logged in
to the portal with the writer's password; the scan covers all of their files.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from caselle_sim.schema import DATE, DATETIME, TABLES

CODE = "SECRETS"
DAG_ID = "caselle_sync_secrets"
CONN_ID = "caselle_secrets"
CASELLE_PASSWORD = f"Pw-Caselle-{uuid.uuid4()}"
AIRFLOW_COMMUNITIES = [{"code": CODE, "caselle_conn_id": CONN_ID, "time_zone": "America/Chicago",
                        "schedule": "0 4 * * *"}]
AIRFLOW_CONNECTIONS = {CONN_ID: {"login": "caselle_reader", "password": CASELLE_PASSWORD}}
ISSUE_LIST = {"SSN", "BirthDate", "DriversLicense", "Notes", "DirectPayRouting", "DirectPayAccount",
              "CreditRating", "CollectionCode", "PayerName"}
SENSITIVE = {t.name: [c for c in t.columns if c.sensitive] for t in TABLES.values() if any(
    c.sensitive for c in t.columns)}
MARKER_DATE = "1871-03-29"  # date columns: a text marker would read as NULL, so plant a date no one has


def test_every_column_of_the_issues_list_is_flagged_sensitive_in_the_simulator():
    assert {c.name for columns in SENSITIVE.values() for c in columns} >= ISSUE_LIST


def _plant_markers(sim, tag: str) -> dict[str, str]:
    """A marker in every sensitive column of every row of the source."""
    markers = {}
    for table, columns in SENSITIVE.items():
        values = {}
        for column in columns:
            dated = column.kind in (DATE, DATETIME)
            values[column.name] = MARKER_DATE if dated else f"Mk{tag}{column.name}"
            markers[f"{table}.{column.name}"] = values[column.name]
        sets = ", ".join(f'"{c}" = ?' for c in values)
        assert sim.execute(f'UPDATE "{table}" SET {sets}', list(values.values())) > 0, table
    return markers


def _scan_files(root: Path, needles: dict[str, str]) -> tuple[list[str], int]:
    found, scanned = [], 0
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        scanned += 1
        for what, needle in needles.items():
            if needle.encode() in data:
                found.append(f"{what} in {path}")
    return found, scanned


def _scan_database(url: str, schemas: tuple[str, ...], needles: dict[str, str]) -> list[str]:
    """Every row of every table of ``schemas``, as text (all columns), searched for each needle."""
    found = []
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY(%s) ORDER BY 1, 2",
            (list(schemas),)).fetchall()
        assert tables
        for schema, table in tables:
            for what, needle in needles.items():
                hits = conn.execute(
                    sql.SQL("SELECT count(*) FROM {} t WHERE strpos(t::text, %s) > 0").format(
                        sql.Identifier(schema, table)), (needle,)).fetchone()[0]
                if hits:
                    found.append(f"{what} in {schema}.{table} ({hits} row(s))")
    return found


class SessionWatch(threading.Thread):
    """The users connected to the portal database while the DAG runs (proof of who synced)."""

    def __init__(self, admin_url: str, dbname: str):
        super().__init__(daemon=True)
        self.admin_url, self.dbname = admin_url, dbname
        self.users: set[str] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            while not self.stop.wait(0.3):
                self.users |= {u for (u,) in conn.execute(
                    "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                    (self.dbname,)).fetchall()}


@pytest.mark.airflow
@pytest.mark.integration
@pytest.mark.xdist_group("airflow")
@pytest.mark.timeout(1800)  # a run and a full scan on a shared 2-core machine
def test_no_password_or_sensitive_value_reaches_logs_reports_or_databases(shared_airflow):
    airflow, portal_url = shared_airflow, shared_airflow.portal_url
    tag = uuid.uuid4().hex[:10]
    login, portal_password = airflow.portal_login, airflow.portal_password
    caselle_password = CASELLE_PASSWORD
    sim = airflow.make_source(CODE, seed=23, org_name="Secretsville", time_zone="America/Chicago",
                              customer_number_mask="###-#####-##")
    markers = _plant_markers(sim, tag)
    portal = psycopg.conninfo.conninfo_to_dict(portal_url)

    client = airflow.client
    client.wait_for_dag(DAG_ID)
    watch = SessionWatch(portal_url, portal["dbname"])
    watch.start()
    try:
        airflow.unpause(DAG_ID)
        run_id = client.trigger(DAG_ID)
        states = client.wait_for_runs({DAG_ID: run_id}, timeout=1200)
        assert states[DAG_ID] == "success", client.task_states(DAG_ID, run_id)
        runs = client.wait_until_idle(DAG_ID, timeout=300)  # the schedule may have started a run of its own
        client.set_paused(DAG_ID, True)
    finally:
        watch.stop.set()
        watch.join(timeout=10)
    assert all(r["state"] == "success" for r in runs), runs
    assert login in watch.users, f"the tasks did not connect as {login}: {watch.users}"

    with psycopg.connect(portal_url) as conn:
        published = conn.execute(
            "SELECT count(*) FROM sync.runs WHERE community_code = %s AND airflow_run_id = %s"
            " AND outcome = 'published'", (CODE, run_id)).fetchone()[0]
        residents = conn.execute("SELECT count(*) FROM portal.residents WHERE community_code = %s",
                                 (CODE,)).fetchone()[0]
    assert published == 1 and residents > 0
    planted = sim.query('SELECT COUNT(*) FROM "SM_Contact" WHERE "SSN" = ?', [markers["SM_Contact.SSN"]])[0][0]
    assert planted > 0

    secrets = {"portal password": portal_password, "Caselle password": caselle_password, **markers}
    report_dir = Path(airflow.env["PORTAL_SYNC_REPORT_DIR"])
    home = Path(airflow.env["AIRFLOW_HOME"])
    problems = []
    for root in (airflow.home, home, report_dir):  # the last two normally lie inside the first
        if root != airflow.home and root.is_relative_to(airflow.home):
            continue
        found, scanned = _scan_files(root, secrets)
        assert scanned, f"nothing to scan under {root}"
        problems += found
    # the scan reads what it should: task logs of the run, component logs, the report's pages
    assert _scan_files(home / "logs", {"run id": run_id})[0], "no task log of the run found"
    assert list((home / "run").glob("*.log")), "no component log found"
    assert list(report_dir.rglob("*.html")), "no data-quality report page found"

    problems += _scan_database(portal_url, ("portal", "sync", "stage"), secrets)
    problems += _scan_database(psycopg.conninfo.make_conninfo(portal_url, dbname=airflow.env["CPS_AIRFLOW_DB"]),
                               ("public",), secrets)
    assert not problems, "\n".join(problems)
