"""Turn Airflow connections into the plain strings the pipeline takes.

Kept apart so the pipeline itself never imports Airflow: tests and the CLI hand it
connection strings directly. Connection strings carry passwords: never log them.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

# libpq connection keywords an Airflow connection's extras may set on the portal URI (TLS, timeouts,
# the name shown in pg_stat_activity, server options, keepalives, ...). Anything else in the extras
# (the Postgres provider's own keys such as "cursor" or "iam") is not libpq's and is left out: libpq
# refuses an unknown URI parameter. host, port, dbname, user and password come from the connection.
LIBPQ_KEYWORDS = frozenset({
    "sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "sslcrl", "sslcrldir", "sslsni",
    "sslcompression", "ssl_min_protocol_version", "ssl_max_protocol_version", "requirepeer",
    "gssencmode", "krbsrvname", "gsslib", "channel_binding",
    "connect_timeout", "application_name", "fallback_application_name", "options", "client_encoding",
    "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout",
    "target_session_attrs", "hostaddr", "passfile", "service",
})

# ODBC drivers a Caselle connection may name in its extras (as registered in odbcinst.ini by
# scripts/setup-system.sh, and Microsoft's for the real Caselle on SQL Server). A driver is a shared
# library the worker loads: any other name needs Airflow's own opt-in, [providers.odbc]
# allow_driver_in_extra = True, as the ODBC provider itself requires.
KNOWN_ODBC_DRIVERS = frozenset({
    "ODBC Driver 17 for SQL Server", "ODBC Driver 18 for SQL Server",
    "SQLite3", "PostgreSQL Unicode", "PostgreSQL ANSI", "MariaDB Unicode",
})


class ConnectionRefused(ValueError):
    """An Airflow connection asks for something the sync will not do (e.g. an unknown ODBC driver)."""


def portal_url(conn_id: str = "portal_db") -> str:
    """A libpq URI (postgresql://...) for the portal PostgreSQL connection, with its libpq extras."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    user = quote(conn.login or "postgres", safe="")
    password = f":{quote(conn.password, safe='')}" if conn.password else ""
    host = conn.host or "127.0.0.1"
    if ":" in host and not host.startswith("["):  # an IPv6 address
        host = f"[{host}]"
    query = libpq_query(conn.extra_dejson)
    return (f"postgresql://{user}{password}@{host}:{conn.port or 5432}/{quote(conn.schema or 'postgres', safe='')}"
            + (f"?{query}" if query else ""))


def libpq_query(extra: Mapping[str, object]) -> str:
    """The URI query of the libpq keywords among a connection's extras, each name and value
    percent-quoted (libpq decodes %XX only: a '+' stays a '+'); other extras are dropped."""
    parts = []
    for key in sorted(extra):
        value = extra[key]
        if key not in LIBPQ_KEYWORDS or value is None:
            continue
        if isinstance(value, bool):
            value = int(value)
        parts.append(f"{quote(key, safe='')}={quote(str(value), safe='')}")
    return "&".join(parts)


def source_odbc(conn_id: str) -> str:
    """The ODBC connection string of a community's Caselle connection (driver from the extras,
    if it is a known Caselle driver or Airflow allows any driver in extras)."""
    from airflow.providers.odbc.hooks.odbc import OdbcHook

    hook = OdbcHook(odbc_conn_id=conn_id, driver=checked_driver(conn_id, _driver_of(conn_id)))
    return hook.odbc_connection_string


def checked_driver(conn_id: str, driver: str | None) -> str | None:
    """The driver named in the connection's extras, refused unless known or allowed by Airflow's config."""
    if driver is None or driver.strip().strip("{}").strip() in KNOWN_ODBC_DRIVERS or _driver_in_extra_allowed():
        return driver
    raise ConnectionRefused(
        f"connection {conn_id!r}: ODBC driver {driver!r} in its extras is not a known Caselle driver "
        f"({', '.join(sorted(KNOWN_ODBC_DRIVERS))}); to load another driver set [providers.odbc] "
        "allow_driver_in_extra = True (AIRFLOW__PROVIDERS_ODBC__ALLOW_DRIVER_IN_EXTRA=True)"
    )


def _driver_in_extra_allowed() -> bool:
    from airflow.providers.common.compat.sdk import conf

    return conf.getboolean("providers.odbc", "allow_driver_in_extra", fallback=False)


def _driver_of(conn_id: str) -> str | None:
    from airflow.sdk import BaseHook

    extra = BaseHook.get_connection(conn_id).extra_dejson
    return extra.get("driver") or extra.get("Driver")
