#!/usr/bin/env bash
# System packages the project needs on Debian 12 (bookworm), installed only when
# missing; safe to run again (then it only checks, in about a second).
#   ODBC: unixodbc unixodbc-dev libsqliteodbc odbc-postgresql odbc-mariadb
#   PostgreSQL server: only when none answers at $CPS_PG_HOST:$CPS_PG_PORT
#   psql client (airflow-init uses it), chromium + chromium-driver (browser tests)
# Then: CommLog=0 for the PostgreSQL ODBC drivers, and a check that the ODBC
# drivers SQLite3, PostgreSQL Unicode and MariaDB Unicode are registered.
# Needs root or sudo only when something has to change.
set -euo pipefail
# shellcheck source=scripts/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-system: not a Debian/Ubuntu system (no dpkg/apt-get); install by hand:" >&2
    echo "  unixODBC, SQLite3/psqlODBC/MariaDB ODBC drivers, PostgreSQL, chromium + chromedriver" >&2
    exit 1
fi

installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

wanted=(unixodbc unixodbc-dev libsqliteodbc odbc-postgresql odbc-mariadb chromium chromium-driver)
pg_local=0
case "$CPS_PG_HOST" in 127.0.0.1|localhost) pg_local=1 ;; esac
if [ "$pg_local" = 1 ] && ! cps_pg_ready; then
    wanted+=(postgresql)
fi
if ! command -v psql >/dev/null 2>&1; then
    wanted+=(postgresql-client)
fi
# The test suite also needs a MariaDB source server and Redis (the Celery broker test), and the
# server binaries even when shared servers answer: the fault tests stage outages on private
# PostgreSQL and MariaDB servers they start and kill (tests/faults/faultkit.py).
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    wanted+=(postgresql)
fi
if [ ! -x /usr/sbin/mariadbd ]; then
    wanted+=(mariadb-server)
fi
if ! cps_port_open 127.0.0.1 6379 && ! command -v redis-server >/dev/null 2>&1; then
    wanted+=(redis-server)
fi

missing=()
for p in "${wanted[@]}"; do
    installed "$p" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup-system: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt_opts=(-q -y -o DPkg::Lock::Timeout=600)
    cps_as_root env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" update >/dev/null
    cps_as_root env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install "${missing[@]}" </dev/null
fi

# A freshly installed (or stopped) local PostgreSQL is not started where there is
# no systemd: start it.
if [ "$pg_local" = 1 ] && ! cps_pg_ready; then
    cps_ensure_db_services postgres
fi

# --- psqlODBC: CommLog=0 (Debian ships CommLog=1: one log file per process in /tmp) ---
INI="${ODBCSYSINI:-/etc}/${ODBCINSTINI:-odbcinst.ini}"   # unixODBC honours ODBCSYSINI
if [ -f "$INI" ]; then
    new="$(awk '
        function flush() { if (in_pg && !seen) print "CommLog=0" }
        /^[[:space:]]*\[/ {
            if (printed_section) flush()
            in_pg = ($0 ~ /^[[:space:]]*\[PostgreSQL/); seen = 0; printed_section = 1
            print; next
        }
        in_pg && /^[[:space:]]*CommLog[[:space:]]*=/ { print "CommLog=0"; seen = 1; next }
        { print }
        END { flush() }
    ' "$INI")"
    if [ "$new" != "$(cat "$INI")" ]; then
        printf '%s\n' "$new" | cps_as_root tee "$INI.cps-new" >/dev/null
        cps_as_root cp -p "$INI" "$INI.cps-backup"
        cps_as_root mv "$INI.cps-new" "$INI"
        echo "setup-system: set CommLog=0 for the PostgreSQL ODBC drivers in $INI (backup: $INI.cps-backup)"
    fi
fi

# --- ODBC drivers registered with unixODBC ---
register_driver() { # name, driver .so, setup .so (may be empty)
    local tmp
    tmp="$(mktemp)"
    {
        echo "[$1]"
        echo "Description=$1 ODBC driver"
        echo "Driver=$2"
        [ -n "$3" ] && echo "Setup=$3"
        [ "$1" = "PostgreSQL Unicode" ] && echo "CommLog=0"
        echo
    } >"$tmp"
    cps_as_root odbcinst -i -d -f "$tmp" >/dev/null
    rm -f "$tmp"
    echo "setup-system: registered ODBC driver $1"
}
drivers="$(odbcinst -q -d)"
grep -qx '\[SQLite3\]' <<<"$drivers" || register_driver "SQLite3" libsqlite3odbc.so libsqlite3odbc.so
grep -qx '\[PostgreSQL Unicode\]' <<<"$drivers" || register_driver "PostgreSQL Unicode" psqlodbcw.so libodbcpsqlS.so
grep -qx '\[MariaDB Unicode\]' <<<"$drivers" || register_driver "MariaDB Unicode" libmaodbc.so ""
drivers="$(odbcinst -q -d)"
for d in "SQLite3" "PostgreSQL Unicode" "MariaDB Unicode"; do
    if ! grep -qx "\[$d\]" <<<"$drivers"; then
        echo "setup-system: ODBC driver '$d' is still not registered" >&2
        exit 1
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "setup-system: system packages present; ODBC drivers SQLite3, PostgreSQL Unicode, MariaDB Unicode registered"
fi
