#!/usr/bin/env bash
# Prepare the local Airflow: metadata database, schema migration, local login,
# connections/pools/variables from airflow_settings.yaml. Safe to run again:
# a second run migrates nothing and loads nothing that is already there.
set -euo pipefail
# shellcheck source=scripts/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$PROJECT_ROOT"

if ! command -v airflow >/dev/null 2>&1; then
    echo "airflow-init: airflow not found in $PROJECT_ROOT/.venv; run scripts/setup-python.sh first" >&2
    exit 1
fi

mkdir -p "$AIRFLOW_HOME" "$AIRFLOW__LOGGING__BASE_LOG_FOLDER" "$AIRFLOW__CORE__DAGS_FOLDER" "$AIRFLOW__CORE__PLUGINS_FOLDER"

# 1. Metadata database (only when the URL points at a PostgreSQL server).
case "$AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in
    postgresql*)
        if [ "$AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" = "postgresql+psycopg2://${CPS_PG_USER}@${CPS_PG_HOST}:${CPS_PG_PORT}/${CPS_AIRFLOW_DB}" ]; then
            psql_args=(-h "$CPS_PG_HOST" -p "$CPS_PG_PORT" -U "$CPS_PG_USER" -d postgres -v ON_ERROR_STOP=1 -qtA)
            if ! psql "${psql_args[@]}" -c 'select 1' >/dev/null 2>&1; then
                echo "airflow-init: no PostgreSQL answers at $CPS_PG_HOST:$CPS_PG_PORT as $CPS_PG_USER" >&2
                echo "  start it: pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start" >&2
                exit 1
            fi
            if [ "$(psql "${psql_args[@]}" -c "select 1 from pg_database where datname = '$CPS_AIRFLOW_DB'")" != "1" ]; then
                psql "${psql_args[@]}" -c "create database \"$CPS_AIRFLOW_DB\""
                echo "airflow-init: created database $CPS_AIRFLOW_DB"
            fi
        else
            echo "airflow-init: custom AIRFLOW__DATABASE__SQL_ALCHEMY_CONN; not creating the database"
        fi
        ;;
esac

# 2. Schema. `airflow db migrate` is quick when nothing is pending, but still costs an
#    Airflow start (~5 s): skip it when the stored schema already matches this Airflow.
if [ "$(airflow db check-migrations -t 0 >/dev/null 2>&1 && echo ok)" = ok ]; then
    :
else
    log="$AIRFLOW_HOME/db-migrate.log"
    if ! airflow db migrate >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "airflow-init: airflow db migrate failed (full log: $log)" >&2
        exit 1
    fi
    echo "airflow-init: metadata schema migrated ($CPS_AIRFLOW_DB)"
fi

# 3. Local UI/API login (simple auth manager): admin / $CPS_AIRFLOW_PASSWORD.
"$PROJECT_ROOT/scripts/airflow-services.sh" write-password

# 4. Connections, pools, variables.
python "$PROJECT_ROOT/scripts/load_airflow_settings.py" "$PROJECT_ROOT/airflow_settings.yaml"
