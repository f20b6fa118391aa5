"""Airflow connections to strings: the portal URI keeps libpq's options from the extras, and a
Caselle connection may name only a known ODBC driver unless Airflow allows any driver in extras."""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
import pytest

from portal_sync import connections

ROOT = Path(__file__).resolve().parents[2]


def set_conn(monkeypatch, conn_id: str, **fields) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


@pytest.fixture(autouse=True)
def no_driver_opt_in(monkeypatch):
    monkeypatch.delenv("AIRFLOW__PROVIDERS_ODBC__ALLOW_DRIVER_IN_EXTRA", raising=False)


def test_the_portal_uri_keeps_libpq_options_quoted_and_drops_other_extras(monkeypatch):
    tricky = "p@ss/w:rd+ &x"  # every character a URI must quote
    set_conn(monkeypatch, "portal_t", conn_type="postgres", host="db.example.internal", port=6432,
             schema="cps portal", login="portal_sync", password=tricky,
             extra={"sslmode": "verify-full", "sslrootcert": "/etc/ssl/ca dir/root.crt",
                    "application_name": "portal sync+1", "options": "-c statement_timeout=5000",
                    "connect_timeout": 7, "keepalives": True, "cursor": "dictcursor", "iam": False,
                    "sqlalchemy_scheme": "postgresql+psycopg"})
    url = connections.portal_url("portal_t")
    assert "cursor" not in url and "iam" not in url and "sqlalchemy" not in url
    assert "+" not in url.split("?", 1)[1].replace("%2B", "")  # a '+' would reach libpq as a '+', not a space
    parsed = psycopg.conninfo.conninfo_to_dict(url)  # libpq's own parser
    assert parsed == {
        "host": "db.example.internal", "port": "6432", "dbname": "cps portal", "user": "portal_sync",
        "password": tricky, "sslmode": "verify-full", "sslrootcert": "/etc/ssl/ca dir/root.crt",
        "application_name": "portal sync+1", "options": "-c statement_timeout=5000", "connect_timeout": "7",
        "keepalives": "1",
    }


def test_a_portal_connection_without_extras_is_the_plain_uri(monkeypatch):
    set_conn(monkeypatch, "portal_plain", conn_type="postgres", host="127.0.0.1", schema="cps_portal",
             login="postgres")
    assert connections.portal_url("portal_plain") == "postgresql://postgres@127.0.0.1:5432/cps_portal"


@pytest.mark.parametrize("driver", ["SQLite3", "{ODBC Driver 18 for SQL Server}", "ODBC Driver 17 for SQL Server",
                                    "PostgreSQL Unicode", "MariaDB Unicode"])
def test_a_known_caselle_driver_is_taken_from_the_extras(monkeypatch, driver):
    set_conn(monkeypatch, "caselle_t", conn_type="odbc", host="caselle-sql.local", schema="CaselleDB",
             extra={"driver": driver, "ApplicationIntent": "ReadOnly"})
    odbc = connections.source_odbc("caselle_t")
    assert re.search(r"DRIVER=\{?" + re.escape(driver.strip("{}")) + r"\}?;", odbc), odbc
    assert "ApplicationIntent=ReadOnly" in odbc


@pytest.mark.parametrize("driver", ["/tmp/evil/libpwn.so", "SQLite", "sqlite3", "Evil Driver"])
def test_an_unknown_driver_is_refused_naming_the_connection_and_the_driver(monkeypatch, driver):
    set_conn(monkeypatch, "caselle_x", conn_type="odbc", host="caselle-sql.local", schema="CaselleDB",
             extra={"driver": driver})
    with pytest.raises(connections.ConnectionRefused) as refused:
        connections.source_odbc("caselle_x")
    message = str(refused.value)
    assert "'caselle_x'" in message and repr(driver) in message and "allow_driver_in_extra" in message


def test_airflows_allow_driver_in_extra_lets_any_driver_through(monkeypatch):
    set_conn(monkeypatch, "caselle_y", conn_type="odbc", host="h", schema="d", extra={"Driver": "Evil Driver"})
    monkeypatch.setenv("AIRFLOW__PROVIDERS_ODBC__ALLOW_DRIVER_IN_EXTRA", "True")
    assert "DRIVER={Evil Driver};" in connections.source_odbc("caselle_y")
    monkeypatch.setenv("AIRFLOW__PROVIDERS_ODBC__ALLOW_DRIVER_IN_EXTRA", "False")
    with pytest.raises(connections.ConnectionRefused):
        connections.source_odbc("caselle_y")


def test_every_driver_the_project_registers_or_configures_is_known():
    """The drivers scripts/setup-system.sh registers and airflow_settings.yaml names stay allowed."""
    registered = re.findall(r'register_driver "([^"]+)"', (ROOT / "scripts" / "setup-system.sh").read_text())
    configured = re.findall(r'"driver":\s*"([^"]+)"', (ROOT / "airflow_settings.yaml").read_text())
    assert registered and configured
    assert set(registered) | set(configured) <= connections.KNOWN_ODBC_DRIVERS
