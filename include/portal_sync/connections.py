"""Turn Airflow connections into the plain strings the pipeline takes.

Kept apart so the pipeline itself never imports Airflow: tests and the CLI hand it
connection strings directly. Connection strings carry passwords: never log them.
"""

from __future__ import annotations

from urllib.parse import quote


def portal_url(conn_id: str = "portal_db") -> str:
    """A libpq URI (postgresql://...) for the portal PostgreSQL connection."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    user = quote(conn.login or "postgres", safe="")
    password = f":{quote(conn.password, safe='')}" if conn.password else ""
    host = conn.host or "127.0.0.1"
    return f"postgresql://{user}{password}@{host}:{conn.port or 5432}/{quote(conn.schema or 'postgres', safe='')}"


def source_odbc(conn_id: str) -> str:
    """The ODBC connection string of a community's Caselle connection (driver from the extras)."""
    from airflow.providers.odbc.hooks.odbc import OdbcHook

    hook = OdbcHook(odbc_conn_id=conn_id, driver=_driver_of(conn_id))
    return hook.odbc_connection_string


def _driver_of(conn_id: str) -> str | None:
    from airflow.sdk import BaseHook

    extra = BaseHook.get_connection(conn_id).extra_dejson
    return extra.get("driver") or extra.get("Driver")
