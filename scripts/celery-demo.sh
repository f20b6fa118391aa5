#!/usr/bin/env bash
# The demo under CeleryExecutor: Redis as broker, PostgreSQL as result backend, two
# workers (each with its own working and temporary directory), the same DAGs.
#
# Usage: scripts/celery-demo.sh [--keep] [COMMUNITIES_YAML]
#   COMMUNITIES_YAML  sync these communities instead of include/config/communities.yaml
#                     (their connections must exist: airflow_settings.yaml or AIRFLOW_CONN_*)
#   --keep            leave this Airflow running afterwards (default: pause its DAGs, let
#                     the tasks already started finish, stop it; scripts/airflow-services.sh
#                     with the same environment stops it later)
#
# It runs an Airflow of its own next to the LocalExecutor one of `make demo`, and syncs
# into a portal database of its own, so that the two never run the same community at
# the same time and their portals can be compared; afterwards it prints how many tasks
# each worker ran and compares its portal with the LocalExecutor demo's (cps_portal).
#   AIRFLOW_HOME   $PROJECT_ROOT/.airflow-celery   (CPS_CELERY_HOME)
#   metadata DB    cps_airflow_celery              (CPS_CELERY_AIRFLOW_DB)
#   UI / API       http://localhost:8090           (CPS_CELERY_AIRFLOW_PORT)
#   broker         redis://127.0.0.1:6379/1        (CPS_REDIS_HOST, CPS_REDIS_PORT, CPS_CELERY_REDIS_DB)
#   portal DB      cps_portal_celery               (CPS_CELERY_PORTAL_DB; the tasks get it from
#                  AIRFLOW_CONN_PORTAL_DB, which shadows portal_db of airflow_settings.yaml)
#   workers        2 x 2 task slots                (CPS_CELERY_WORKERS, CPS_CELERY_CONCURRENCY)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
root="$(dirname "$here")"

keep=0
config=""
for arg in "$@"; do
    case "$arg" in
        --keep) keep=1 ;;
        -h|--help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "celery-demo: unknown option $arg" >&2; exit 2 ;;
        *) [ -z "$config" ] || { echo "celery-demo: one communities file at most" >&2; exit 2; }
           [ -f "$arg" ] || { echo "celery-demo: no such file: $arg" >&2; exit 2; }
           config="$(cd "$(dirname "$arg")" && pwd -P)/$(basename "$arg")" ;;
    esac
done

# This instance's own settings; env.sh derives the rest (ports, URLs) from them, so any
# AIRFLOW__* inherited from a shell that sourced env.sh for the LocalExecutor instance goes.
while IFS= read -r var; do unset "$var"; done < <(env | sed -n 's/^\(AIRFLOW__[A-Za-z0-9_]*\)=.*/\1/p')
export AIRFLOW_HOME="${CPS_CELERY_HOME:-$root/.airflow-celery}"
export CPS_AIRFLOW_DB="${CPS_CELERY_AIRFLOW_DB:-cps_airflow_celery}"
export CPS_AIRFLOW_PORT="${CPS_CELERY_AIRFLOW_PORT:-8090}"
export CPS_EXECUTOR=celery
export CPS_CELERY_REDIS_DB="${CPS_CELERY_REDIS_DB:-1}"
portal_db="${CPS_CELERY_PORTAL_DB:-cps_portal_celery}"
[ -z "$config" ] || export PORTAL_SYNC_CONFIG="$config"
# shellcheck source=scripts/env.sh
. "$here/env.sh"
cd "$PROJECT_ROOT"
export PORTAL_DB_URL="postgresql://${CPS_PG_USER}@${CPS_PG_HOST}:${CPS_PG_PORT}/${portal_db}"
export AIRFLOW_CONN_PORTAL_DB="{\"conn_type\": \"postgres\", \"host\": \"${CPS_PG_HOST}\", \"port\": ${CPS_PG_PORT}, \"login\": \"${CPS_PG_USER}\", \"schema\": \"${portal_db}\"}"

say() { echo "[celery-demo $(date +%H:%M:%S)] $*"; }

cps_ensure_db_services postgres
if ! cps_port_open "$CPS_REDIS_HOST" "$CPS_REDIS_PORT"; then
    echo "celery-demo: no Redis answers at $CPS_REDIS_HOST:$CPS_REDIS_PORT (apt-get install redis-server)" >&2
    exit 1
fi
say "Airflow $AIRFLOW_HOME (database $CPS_AIRFLOW_DB, UI $AIRFLOW__API__BASE_URL), $AIRFLOW__CORE__EXECUTOR," \
    "broker $AIRFLOW__CELERY__BROKER_URL, $CPS_CELERY_WORKERS workers x $CPS_CELERY_CONCURRENCY slots," \
    "portal database $portal_db, communities ${PORTAL_SYNC_CONFIG}"
scripts/airflow-init.sh

# shellcheck disable=SC2317  # called by the EXIT trap
finish() {
    local rc=$?
    if [ "$keep" = 0 ]; then
        say "pausing the DAGs, letting running tasks finish, stopping this Airflow (--keep leaves it running)"
        # A paused DAG's run gets no new task (it resumes when the DAG is unpaused again);
        # the tasks already queued or running finish first.
        python - <<'PY' || true
import os
import time

from portal_sync.airflow_api import AirflowClient
from portal_sync.config import load_config

client = AirflowClient(os.environ["AIRFLOW__API__BASE_URL"], "admin", os.environ["CPS_AIRFLOW_PASSWORD"])
try:
    for community in load_config().communities:
        client.set_paused(community.dag_id, True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        busy = client._request("GET", "/api/v2/dags/~/dagRuns/~/taskInstances"
                               "?state=running&state=queued&limit=1")["total_entries"]
        if not busy:
            break
        time.sleep(3)
except Exception as exc:  # the Airflow may not have come up at all
    print(f"  ({type(exc).__name__}: {exc})")
PY
        scripts/airflow-services.sh stop
    else
        say "left running: UI $AIRFLOW__API__BASE_URL; stop it with" \
            "AIRFLOW_HOME=$AIRFLOW_HOME CPS_AIRFLOW_DB=$CPS_AIRFLOW_DB CPS_AIRFLOW_PORT=$CPS_AIRFLOW_PORT" \
            "CPS_EXECUTOR=celery scripts/airflow-services.sh stop"
    fi
    exit "$rc"
}
trap finish EXIT

# scripts/demo.py: build (or reuse) the demo Caselles, migrate the portal database, start
# Airflow (scripts/airflow-services.sh starts the workers too), trigger every DAG and wait.
rc=0
python scripts/demo.py || rc=$?

python - "$portal_db" <<'PY' || rc=1
import os
import sys
from collections import Counter

import psycopg
from psycopg import sql

from portal_sync.airflow_api import AirflowClient

client = AirflowClient(os.environ["AIRFLOW__API__BASE_URL"], "admin", os.environ["CPS_AIRFLOW_PASSWORD"])
tis = client._request("GET", "/api/v2/dags/~/dagRuns/~/taskInstances?limit=1000")["task_instances"]
done = Counter(ti["hostname"] or "(none)" for ti in tis if ti["state"] in ("success", "failed"))
print("tasks per worker, all runs of this Airflow (task instance hostname): "
      + ", ".join(f"{host}: {n}" for host, n in sorted(done.items())))
workers = int(os.environ["CPS_CELERY_WORKERS"])
if workers > 1 and len(done) < 2:
    print(f"  note: only {len(done)} worker(s) ran tasks")

# The portal of this run against the LocalExecutor demo's (cps_portal), row for row over
# every portal.* table, for the communities synced here; times that record when a sync ran
# are left out (synced_at, source_read_at) or compared as set / not set (deleted_at, archived_at).
base = f"postgresql://{os.environ['CPS_PG_USER']}@{os.environ['CPS_PG_HOST']}:{os.environ['CPS_PG_PORT']}"
mine, theirs = sys.argv[1], "cps_portal"


def state(db, codes):
    out = {}
    with psycopg.connect(f"{base}/{db}") as conn:
        tables = [t for (t,) in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'portal'"
            " AND table_type = 'BASE TABLE' ORDER BY table_name")]
        for table in tables:
            cols = [c for (c,) in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'portal'"
                " AND table_name = %s ORDER BY ordinal_position", (table,))]
            select = [sql.SQL("{} IS NOT NULL").format(sql.Identifier(c)) if c in ("deleted_at", "archived_at")
                      else sql.Identifier(c) for c in cols if c not in ("synced_at", "source_read_at")]
            query = sql.SQL("SELECT {} FROM portal.{} WHERE community_code = ANY(%s)").format(
                sql.SQL(", ").join(select), sql.Identifier(table))
            out[table] = sorted(conn.execute(query, (codes,)).fetchall(), key=repr)
    return out


with psycopg.connect(f"{base}/{mine}") as conn:
    codes = [c for (c,) in conn.execute("SELECT DISTINCT community_code FROM sync.runs WHERE outcome = 'published'")]
with psycopg.connect(f"{base}/postgres") as conn:
    exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (theirs,)).fetchone()
if not codes:
    print("portal: nothing published")
    sys.exit(1)
if not exists:
    print(f"portal: no {theirs} to compare with (run `make demo` for the LocalExecutor one)")
    sys.exit(0)
with psycopg.connect(f"{base}/{theirs}") as conn:
    synced = {c for (c,) in conn.execute(
        "SELECT DISTINCT community_code FROM sync.runs WHERE outcome = 'published'")}
codes = [c for c in codes if c in synced]
if not codes:
    print(f"portal: {theirs} has none of these communities: nothing to compare")
    sys.exit(0)
a, b = state(mine, codes), state(theirs, codes)
differ = [t for t in a if a[t] != b.get(t)]
rows = sum(len(r) for r in a.values())
if differ:
    print(f"portal: {mine} and {theirs} differ in " + ", ".join(
        f"{t} ({len(a[t])} vs {len(b.get(t, []))} rows)" for t in differ)
          + " (the LocalExecutor demo may have synced a different state of the sources)")
else:
    print(f"portal: {mine} (CeleryExecutor) equals {theirs} (LocalExecutor) for {', '.join(sorted(codes))}:"
          f" {rows} rows in {len(a)} portal tables")
PY
exit "$rc"
