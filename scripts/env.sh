# shellcheck shell=bash
# Environment for every project command. Source it:  . scripts/env.sh
#
# Each value below is only a default: a variable already set in the environment wins
# (pattern ${VAR:-default}). Airflow reads AIRFLOW__SECTION__KEY variables before
# $AIRFLOW_HOME/airflow.cfg, so nothing here needs editing airflow.cfg.
#
# Knobs of our own (all optional):
#   CPS_AIRFLOW_DB        metadata database name              (cps_airflow)
#   CPS_AIRFLOW_PORT      API server / UI port                (8080)
#   CPS_AIRFLOW_HOST      address the API server binds        (127.0.0.1)
#   CPS_AIRFLOW_PASSWORD  password of the local UI user admin (admin)
#   CPS_PG_HOST/CPS_PG_PORT/CPS_PG_USER  PostgreSQL server for the metadata DB
#   CPS_EXECUTOR          local (LocalExecutor) or celery (CeleryExecutor)   (local)
#   CPS_CELERY_WORKERS    celery: workers airflow-services.sh starts          (2)
#   CPS_CELERY_CONCURRENCY  celery: task slots per worker                     (2)
#   CPS_REDIS_HOST/CPS_REDIS_PORT  celery: the Redis broker        (127.0.0.1/6379)
#   CPS_CELERY_REDIS_DB   celery: Redis database number of the broker (0); one per
#                         Airflow instance, or their workers take each other's tasks

# --- project root: the checkout this file lives in (works with bash and zsh) ---
if [ -n "${BASH_SOURCE[0]:-}" ]; then
    _cps_env_file="${BASH_SOURCE[0]}"
else
    # shellcheck disable=SC2296
    _cps_env_file="${(%):-%x}"   # zsh
fi
PROJECT_ROOT="$(cd "$(dirname "$_cps_env_file")/.." && pwd -P)"
export PROJECT_ROOT
unset _cps_env_file

# --- virtualenv first on PATH (once) ---
case ":$PATH:" in
    *":$PROJECT_ROOT/.venv/bin:"*) ;;
    *) export PATH="$PROJECT_ROOT/.venv/bin:$PATH" ;;
esac
export VIRTUAL_ENV="${VIRTUAL_ENV:-$PROJECT_ROOT/.venv}"

# --- PostgreSQL server used for the Airflow metadata DB and the portal DB ---
export CPS_PG_HOST="${CPS_PG_HOST:-127.0.0.1}"
export CPS_PG_PORT="${CPS_PG_PORT:-5432}"
export CPS_PG_USER="${CPS_PG_USER:-postgres}"
export CPS_AIRFLOW_DB="${CPS_AIRFLOW_DB:-cps_airflow}"
export CPS_AIRFLOW_PORT="${CPS_AIRFLOW_PORT:-8080}"
export CPS_AIRFLOW_HOST="${CPS_AIRFLOW_HOST:-127.0.0.1}"
export CPS_AIRFLOW_PASSWORD="${CPS_AIRFLOW_PASSWORD:-admin}"

# --- Airflow 3.3 ---
export AIRFLOW_HOME="${AIRFLOW_HOME:-$PROJECT_ROOT/.airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="${AIRFLOW__CORE__DAGS_FOLDER:-$PROJECT_ROOT/dags}"
export AIRFLOW__CORE__PLUGINS_FOLDER="${AIRFLOW__CORE__PLUGINS_FOLDER:-$PROJECT_ROOT/plugins}"
export AIRFLOW__CORE__LOAD_EXAMPLES="${AIRFLOW__CORE__LOAD_EXAMPLES:-False}"
case "${CPS_EXECUTOR:-local}" in
    celery|CeleryExecutor) _cps_executor=CeleryExecutor ;;
    local|LocalExecutor) _cps_executor=LocalExecutor ;;
    *) echo "env.sh: CPS_EXECUTOR must be local or celery, not '${CPS_EXECUTOR}'; using local" >&2
       _cps_executor=LocalExecutor ;;
esac
export AIRFLOW__CORE__EXECUTOR="${AIRFLOW__CORE__EXECUTOR:-$_cps_executor}"
unset _cps_executor
# LocalExecutor forks `parallelism` workers up front (32 by default, ~1 GiB): 4 suits 2 cores.
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-4}"
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="${AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION:-True}"
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-postgresql+psycopg2://${CPS_PG_USER}@${CPS_PG_HOST}:${CPS_PG_PORT}/${CPS_AIRFLOW_DB}}"
# [dag_processor] refresh_interval: how often the dags folder is re-listed (default 300 s).
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="${AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL:-20}"
# API server (UI + REST + execution API for tasks). Tasks call the execution API:
# when the port moves, base_url / execution_api_server_url must follow or every task
# fails with "Connection refused".
export AIRFLOW__API__HOST="${AIRFLOW__API__HOST:-$CPS_AIRFLOW_HOST}"
export AIRFLOW__API__PORT="${AIRFLOW__API__PORT:-$CPS_AIRFLOW_PORT}"
export AIRFLOW__API__BASE_URL="${AIRFLOW__API__BASE_URL:-http://localhost:${AIRFLOW__API__PORT}}"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="${AIRFLOW__CORE__EXECUTION_API_SERVER_URL:-http://127.0.0.1:${AIRFLOW__API__PORT}/execution/}"
# Log servers of the scheduler (task logs) and triggerer: Airflow's defaults 8793/8794
# for port 8080, shifted with CPS_AIRFLOW_PORT so a second instance (e2e tests) does
# not collide with the first.
export AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT="${AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT:-$((AIRFLOW__API__PORT + 713))}"
export AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT="${AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT:-$((AIRFLOW__API__PORT + 714))}"
# Simple auth manager (Airflow's default), one local user "admin" with role admin.
# The password lives in a JSON file {"user": "password"}; scripts/airflow-init.sh and
# scripts/airflow-services.sh write it as {"admin": "$CPS_AIRFLOW_PASSWORD"} (admin/admin).
export AIRFLOW__CORE__AUTH_MANAGER="${AIRFLOW__CORE__AUTH_MANAGER:-airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager}"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS:-admin:admin}"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:-$AIRFLOW_HOME/simple_auth_manager_passwords.json}"
# OdbcHook ignores "driver" in a connection's extras unless this is on.
export AIRFLOW__PROVIDERS_ODBC__ALLOW_DRIVER_IN_EXTRA="${AIRFLOW__PROVIDERS_ODBC__ALLOW_DRIVER_IN_EXTRA:-True}"
export AIRFLOW__LOGGING__BASE_LOG_FOLDER="${AIRFLOW__LOGGING__BASE_LOG_FOLDER:-$AIRFLOW_HOME/logs}"
export AIRFLOW__LOGGING__DAG_PROCESSOR_CHILD_PROCESS_LOG_DIRECTORY="${AIRFLOW__LOGGING__DAG_PROCESSOR_CHILD_PROCESS_LOG_DIRECTORY:-$AIRFLOW__LOGGING__BASE_LOG_FOLDER/dag_processor}"

# --- CeleryExecutor (CPS_EXECUTOR=celery; only then) ---
# Redis is the broker, the metadata database the result backend (celery_taskmeta tables).
# scripts/airflow-services.sh also starts CPS_CELERY_WORKERS `airflow celery worker`s, each
# with its own Celery hostname, [core] hostname_callable value and log server port.
case "$AIRFLOW__CORE__EXECUTOR" in
    *CeleryExecutor*)
        export CPS_CELERY_WORKERS="${CPS_CELERY_WORKERS:-2}"
        export CPS_CELERY_CONCURRENCY="${CPS_CELERY_CONCURRENCY:-2}"
        export CPS_REDIS_HOST="${CPS_REDIS_HOST:-127.0.0.1}"
        export CPS_REDIS_PORT="${CPS_REDIS_PORT:-6379}"
        export CPS_CELERY_REDIS_DB="${CPS_CELERY_REDIS_DB:-0}"
        export AIRFLOW__CELERY__BROKER_URL="${AIRFLOW__CELERY__BROKER_URL:-redis://${CPS_REDIS_HOST}:${CPS_REDIS_PORT}/${CPS_CELERY_REDIS_DB}}"
        export AIRFLOW__CELERY__RESULT_BACKEND="${AIRFLOW__CELERY__RESULT_BACKEND:-db+postgresql://${CPS_PG_USER}@${CPS_PG_HOST}:${CPS_PG_PORT}/${CPS_AIRFLOW_DB}}"
        export AIRFLOW__CELERY__WORKER_CONCURRENCY="${AIRFLOW__CELERY__WORKER_CONCURRENCY:-$CPS_CELERY_CONCURRENCY}"
        ;;
esac

# --- Portal sync ---
export PORTAL_SYNC_CONFIG="${PORTAL_SYNC_CONFIG:-$PROJECT_ROOT/include/config/communities.yaml}"
export PORTAL_DB_URL="${PORTAL_DB_URL:-postgresql://${CPS_PG_USER}@${CPS_PG_HOST}:${CPS_PG_PORT}/cps_portal}"
# Connections (portal_db, caselle_*) live in the Airflow metadata DB, loaded from
# airflow_settings.yaml by scripts/airflow-init.sh. No AIRFLOW_CONN_* variable is set
# here: an environment variable would shadow the DB copy for tasks and the UI would
# show a value that is not the one used. Plain scripts and pytest, which see only
# environment connections, should read PORTAL_DB_URL.

# --- helpers for the scripts (harmless in an interactive shell) ---

# Run a command as root: directly when we are root, else through sudo.
cps_as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "need root for: $* (and sudo is not installed)" >&2
        return 1
    fi
}

# cps_port_open HOST PORT: does something accept TCP connections there?
cps_port_open() {
    # shellcheck disable=SC2016  # $1/$2 expand in the inner bash
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

cps_pg_ready() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h "$CPS_PG_HOST" -p "$CPS_PG_PORT" -t 3
    else
        cps_port_open "$CPS_PG_HOST" "$CPS_PG_PORT"
    fi
}

# cps_ensure_db_services [postgres] [mariadb]: start the local servers that do not
# answer (only local ones: 127.0.0.1/localhost), then wait up to 60 s for them.
cps_ensure_db_services() {
    local svc t
    for svc in "$@"; do
        case "$svc" in
            postgres)
                cps_pg_ready && continue
                case "$CPS_PG_HOST" in 127.0.0.1|localhost) ;; *)
                    echo "PostgreSQL at $CPS_PG_HOST:$CPS_PG_PORT does not answer (not local: not starting it)" >&2
                    return 1 ;;
                esac
                if [ ! -d /etc/postgresql ] || ! command -v pg_ctlcluster >/dev/null 2>&1; then
                    echo "PostgreSQL does not answer at $CPS_PG_HOST:$CPS_PG_PORT and is not installed (run scripts/setup-system.sh)" >&2
                    return 1
                fi
                echo "starting PostgreSQL"
                # shellcheck disable=SC2012
                cps_as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start || true
                t=0
                until cps_pg_ready; do
                    t=$((t + 1))
                    if [ "$t" -ge 60 ]; then echo "PostgreSQL did not come up" >&2; return 1; fi
                    sleep 1
                done
                ;;
            mariadb)
                cps_port_open 127.0.0.1 3306 && continue
                if [ ! -x /usr/sbin/mariadbd ]; then
                    echo "MariaDB does not answer at 127.0.0.1:3306 and /usr/sbin/mariadbd is missing" >&2
                    return 1
                fi
                echo "starting MariaDB"
                cps_as_root mkdir -p /run/mysqld
                cps_as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
                cps_as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
                t=0
                until cps_port_open 127.0.0.1 3306; do
                    t=$((t + 1))
                    if [ "$t" -ge 60 ]; then echo "MariaDB did not come up" >&2; return 1; fi
                    sleep 1
                done
                ;;
            redis)
                cps_port_open 127.0.0.1 6379 && continue
                if ! command -v redis-server >/dev/null 2>&1; then
                    echo "Redis does not answer at 127.0.0.1:6379 and redis-server is missing" >&2
                    return 1
                fi
                echo "starting Redis"
                redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
                    --dir /tmp --logfile /tmp/cps-redis.log || true
                t=0
                until cps_port_open 127.0.0.1 6379; do
                    t=$((t + 1))
                    if [ "$t" -ge 30 ]; then echo "Redis did not come up" >&2; return 1; fi
                    sleep 1
                done
                ;;
            *) echo "cps_ensure_db_services: unknown service $svc" >&2; return 1 ;;
        esac
    done
}
