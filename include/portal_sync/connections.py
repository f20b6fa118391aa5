"""Turn Airflow connections into the plain strings the pipeline takes.

Kept apart so the pipeline itself never imports Airflow: tests and the CLI hand it
connection strings directly. Connection strings carry passwords: never log them.
"""

from __future__ import annotations

from psycopg.conninfo import make_conninfo


def portal_url(conn_id: str = "portal_db") -> str:
    """A libpq connection string for the portal PostgreSQL connection."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    parts = {
        "host": conn.host or "127.0.0.1",
        "port": str(conn.port or 5432),
        "dbname": conn.schema or "postgres",
        "user": conn.login or "postgres",
    }
    if conn.password:
        parts["password"] = conn.password
    return make_conninfo("", **parts)


def source_odbc(conn_id: str) -> str:
    """The ODBC connection string of a community's Caselle connection (driver from the extras)."""
    from airflow.providers.odbc.hooks.odbc import OdbcHook

    hook = OdbcHook(odbc_conn_id=conn_id, driver=_driver_of(conn_id))
    return hook.odbc_connection_string


def _driver_of(conn_id: str) -> str | None:
    from airflow.sdk import BaseHook

    extra = BaseHook.get_connection(conn_id).extra_dejson
    return extra.get("driver") or extra.get("Driver")
