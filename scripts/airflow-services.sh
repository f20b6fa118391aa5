#!/usr/bin/env bash
# Run the local Airflow 3 components in the background:
#   api-server (UI, REST API, execution API for tasks), scheduler (LocalExecutor),
#   dag-processor, triggerer; with CPS_EXECUTOR=celery (CeleryExecutor, see env.sh)
#   also CPS_CELERY_WORKERS `airflow celery worker`s (celery-worker-1, -2, ...).
# Usage: scripts/airflow-services.sh start|stop|restart|status|write-password
# Pid files and logs: $AIRFLOW_HOME/run/<component>.{pid,log}. Each component runs in
# its own session (setsid); `stop` signals the component, waits, and then ends
# whatever is left in that session (API workers, executor workers, task processes)
# and nothing else.
set -euo pipefail
# shellcheck source=scripts/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$PROJECT_ROOT"

COMPONENTS=(api-server scheduler dag-processor triggerer)
RUN_DIR="$AIRFLOW_HOME/run"
EXECUTOR_FILE="$RUN_DIR/executor"   # the executor the running components were started with
HEALTH_URL="http://127.0.0.1:${AIRFLOW__API__PORT}/api/v2/monitor/health"
START_TIMEOUT="${CPS_AIRFLOW_START_TIMEOUT:-120}"
STOP_TIMEOUT="${CPS_AIRFLOW_STOP_TIMEOUT:-30}"
TERM_ALL_AFTER=10

is_celery() { [[ "$AIRFLOW__CORE__EXECUTOR" == *CeleryExecutor* ]]; }

# Celery workers of this configuration: celery-worker-1 .. celery-worker-N.
WORKERS=()
if is_celery; then
    if ! [[ "$CPS_CELERY_WORKERS" =~ ^[1-9][0-9]*$ ]] || ! [[ "$CPS_CELERY_CONCURRENCY" =~ ^[1-9][0-9]*$ ]]; then
        echo "airflow-services: CPS_CELERY_WORKERS and CPS_CELERY_CONCURRENCY must be positive integers" >&2
        exit 2
    fi
    for ((i = 1; i <= CPS_CELERY_WORKERS; i++)); do WORKERS+=("celery-worker-$i"); done
fi

# Workers that have a pid file, whatever the current configuration says: `stop` and
# `status` find workers started with CPS_EXECUTOR=celery even when called without it.
workers_on_record() {
    local f
    for f in "$RUN_DIR"/celery-worker-*.pid; do
        [ -e "$f" ] || continue
        f="${f##*/}"
        echo "${f%.pid}"
    done
}

# components to stop / report: the configured ones plus any worker on record
all_components() {
    printf '%s\n' "${COMPONENTS[@]}" "${WORKERS[@]}"
    workers_on_record
}

# pid of a running component, or nothing. The pid must be alive, lead its own
# process group and run airflow: a stale pid file never makes us signal a stranger.
running_pid() {
    local pidfile="$RUN_DIR/$1.pid" pid pgid
    [ -f "$pidfile" ] || return 0
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    pgid="$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ')"
    [ "$pgid" = "$pid" ] || return 0   # setsid: leader of its own group and session
    # Airflow renames some processes ("airflow api_server -- host:..."), Celery its worker
    # ("[celeryd: cps-worker-1@host:MainProcess] ..."): match loosely
    local pattern="airflow.* ${1//-/.}"
    case "$1" in celery-worker-*) pattern="celery.*cps-worker-${1#celery-worker-}@" ;; esac
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -Eq "$pattern" || return 0
    echo "$pid"
}

# Port of the log server of worker $1 (1-based). Worker 1 takes [logging]
# worker_log_server_port, the port the API server asks for the logs of running tasks;
# the others the next free numbers above it that are not the triggerer's or the API's.
worker_log_port() {
    local n="$1" port="$AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT" k=1
    while [ "$k" -lt "$n" ]; do
        port=$((port + 1))
        if [ "$port" != "$AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT" ] && [ "$port" != "$AIRFLOW__API__PORT" ]; then
            k=$((k + 1))
        fi
    done
    echo "$port"
}

# Start Celery worker $1 (celery-worker-N) in its own session, with its own working and
# temporary directory (tasks must not rely on files another task wrote), Celery hostname
# cps-worker-N@<host>, task instance hostname cps-worker-N ([core] hostname_callable) and
# log server port.
start_worker() {
    local c="$1" n="${1#celery-worker-}" dir port
    dir="$RUN_DIR/$c"
    port="$(worker_log_port "$n")"
    mkdir -p "$dir/tmp"
    wc -c <"$RUN_DIR/$c.log" 2>/dev/null >"$RUN_DIR/$c.logstart" || echo 0 >"$RUN_DIR/$c.logstart"
    (
        cd "$dir"
        export TMPDIR="$dir/tmp" CPS_WORKER_HOSTNAME="cps-worker-$n"
        export AIRFLOW__CORE__HOSTNAME_CALLABLE="${AIRFLOW__CORE__HOSTNAME_CALLABLE:-portal_sync.worker_hostname.hostname}"
        export AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT="$port"
        exec setsid nohup airflow celery worker --celery-hostname "cps-worker-$n@%h" \
            --concurrency "$CPS_CELERY_CONCURRENCY" >>"$RUN_DIR/$c.log" 2>&1 </dev/null 9>&-
    ) &
    echo $! >"$RUN_DIR/$c.pid"
    echo "  $c started (pid $!, Celery hostname cps-worker-$n, log server :$port, log $RUN_DIR/$c.log)"
}

# Has worker $1 logged "... ready." since it was started?
worker_ready() {
    local start
    start="$(cat "$RUN_DIR/$1.logstart" 2>/dev/null || echo 0)"
    tail -c +"$((start + 1))" "$RUN_DIR/$1.log" 2>/dev/null | grep -q "cps-worker-${1#celery-worker-}@.* ready"
}

write_password() {
    # Simple auth manager: {"user": "password"} JSON; users/roles come from
    # [core] simple_auth_manager_users (admin:admin in env.sh).
    local f="$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
    mkdir -p "$(dirname "$f")"
    python - "$f" <<'PY'
import json, os, sys
path = sys.argv[1]
want = os.environ["CPS_AIRFLOW_PASSWORD"]
try:
    with open(path) as fh:
        data = json.load(fh)
except (OSError, ValueError):
    data = {}
if data.get("admin") != want:
    data["admin"] = want
    with open(path, "w") as fh:
        json.dump(data, fh)
        fh.write("\n")
    os.chmod(path, 0o600)
PY
}

health_json() {
    python - "$HEALTH_URL" <<'PY' 2>/dev/null
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        print(r.read().decode())
except Exception:
    sys.exit(1)
PY
}

# healthy when the metadatabase and every component we run report "healthy"
is_healthy() {
    local body
    body="$(health_json)" || return 1
    python - "$body" <<'PY'
import json, sys
h = json.loads(sys.argv[1])
need = ["metadatabase", "scheduler", "triggerer", "dag_processor"]
sys.exit(0 if all((h.get(k) or {}).get("status") == "healthy" for k in need) else 1)
PY
}

port_busy() {
    python - "$1" "$2" <<'PY'
import socket, sys
s = socket.socket()
s.settimeout(1)
sys.exit(0 if s.connect_ex((sys.argv[1], int(sys.argv[2]))) == 0 else 1)
PY
}

start() {
    mkdir -p "$RUN_DIR" "$AIRFLOW__LOGGING__BASE_LOG_FOLDER"
    exec 9>"$RUN_DIR/.lock"
    flock -w 60 9 || { echo "airflow-services: another start/stop is running" >&2; exit 1; }
    write_password
    local started=0 c pid running_with port
    # Components already running with another executor would not run this one's tasks.
    running_with="$(cat "$EXECUTOR_FILE" 2>/dev/null || echo LocalExecutor)"
    for c in "${COMPONENTS[@]}"; do
        if [ -n "$(running_pid "$c")" ] && [ "$running_with" != "$AIRFLOW__CORE__EXECUTOR" ]; then
            echo "airflow-services: Airflow is running with $running_with, not $AIRFLOW__CORE__EXECUTOR;" \
                 "stop it first (scripts/airflow-services.sh stop)" >&2
            exit 1
        fi
    done
    if is_celery && ! cps_port_open "$CPS_REDIS_HOST" "$CPS_REDIS_PORT"; then
        echo "airflow-services: no Redis answers at $CPS_REDIS_HOST:$CPS_REDIS_PORT (the Celery broker)" >&2
        exit 1
    fi
    for c in "${WORKERS[@]}"; do   # before starting anything: the log server port of each worker to start
        [ -z "$(running_pid "$c")" ] || continue
        port="$(worker_log_port "${c#celery-worker-}")"
        if port_busy 127.0.0.1 "$port"; then
            echo "airflow-services: port $port (log server of $c) is taken by another program; choose the" \
                 "first worker's with AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=NNNN" >&2
            exit 1
        fi
    done
    echo "$AIRFLOW__CORE__EXECUTOR" >"$EXECUTOR_FILE"
    for c in "${COMPONENTS[@]}"; do
        pid="$(running_pid "$c")"
        if [ -n "$pid" ]; then
            echo "  $c already running (pid $pid)"
            continue
        fi
        if [ "$c" = api-server ] && port_busy 127.0.0.1 "$AIRFLOW__API__PORT"; then
            echo "airflow-services: port $AIRFLOW__API__PORT is taken by another program;" \
                 "choose another with CPS_AIRFLOW_PORT=NNNN" >&2
            exit 1
        fi
        # setsid: own session and process group (pgid == pid), detached from the
        # caller's terminal; nohup + </dev/null: survives the calling shell.
        setsid nohup airflow "$c" >>"$RUN_DIR/$c.log" 2>&1 </dev/null 9>&- &
        echo $! >"$RUN_DIR/$c.pid"
        echo "  $c started (pid $!, log $RUN_DIR/$c.log)"
        started=1
    done
    local waiting=()
    for c in "${WORKERS[@]}"; do
        pid="$(running_pid "$c")"
        if [ -n "$pid" ]; then
            echo "  $c already running (pid $pid)"
            continue
        fi
        start_worker "$c"
        waiting+=("$c")
        started=1
    done
    local t0=$SECONDS
    # healthy: the components report so, and every worker started now has logged "ready"
    until is_healthy && { [ "${#waiting[@]}" -eq 0 ] || all_ready "${waiting[@]}"; }; do
        for c in "${COMPONENTS[@]}" "${WORKERS[@]}"; do
            if [ -z "$(running_pid "$c")" ]; then
                echo "airflow-services: $c exited; last lines of $RUN_DIR/$c.log:" >&2
                tail -n 30 "$RUN_DIR/$c.log" >&2
                exit 1
            fi
        done
        if [ $((SECONDS - t0)) -ge "$START_TIMEOUT" ]; then
            echo "airflow-services: not healthy after ${START_TIMEOUT}s; health: $(health_json || echo 'no answer')" >&2
            for c in "${COMPONENTS[@]}" "${WORKERS[@]}"; do
                echo "--- $RUN_DIR/$c.log" >&2
                tail -n 20 "$RUN_DIR/$c.log" >&2
            done
            exit 1
        fi
        sleep 2
    done
    [ "$started" = 1 ] && echo "airflow-services: healthy after $((SECONDS - t0))s"
    echo "Airflow UI: ${AIRFLOW__API__BASE_URL}  (login admin / password in $AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE)"
}

all_ready() {
    local c
    for c in "$@"; do worker_ready "$c" || return 1; done
}

# pids of every live process in session $1 (setsid made the component a session leader;
# its children keep the session even when they open their own process group, as
# Airflow's task processes do).
session_pids() {
    # zombies (stat Z) are already dead, waiting for init to reap them: skip them
    ps -eo pid=,sid=,stat= | awk -v sid="$1" '$2 == sid && $3 !~ /^Z/ { print $1 }'
}

stop() {
    mkdir -p "$RUN_DIR"
    exec 9>"$RUN_DIR/.lock"
    flock -w 60 9 || { echo "airflow-services: another start/stop is running" >&2; exit 1; }
    local c pid sids=() names=() stopping=()
    mapfile -t stopping < <(all_components | awk '!seen[$0]++')
    for c in "${stopping[@]}"; do
        pid="$(running_pid "$c")"
        if [ -n "$pid" ]; then
            # graceful first: the component shuts its own workers down (a Celery worker
            # finishes its running tasks: warm shutdown)
            kill -TERM "$pid" 2>/dev/null || true
            sids+=("$pid"); names+=("$c")
        fi
    done
    local t0=$SECONDS i left
    local -A termed=()
    while [ "${#sids[@]}" -gt 0 ]; do
        left=()
        for pid in "${sids[@]}"; do mapfile -t -O "${#left[@]}" left < <(session_pids "$pid"); done
        [ "${#left[@]}" -eq 0 ] && break
        if [ $((SECONDS - t0)) -ge "$STOP_TIMEOUT" ]; then
            echo "  still running after ${STOP_TIMEOUT}s: ${left[*]}; killing" >&2
            for pid in "${left[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
            sleep 1
            break
        fi
        # Once the leader is gone, or after a grace period (a scheduler waits for its
        # running tasks), every process left in the session gets one TERM of its own.
        for pid in "${sids[@]}"; do
            [ -n "${termed[$pid]:-}" ] && continue
            if [ $((SECONDS - t0)) -ge "$TERM_ALL_AFTER" ] || ! kill -0 "$pid" 2>/dev/null; then
                for i in $(session_pids "$pid"); do
                    [ "$i" = "$pid" ] || kill -TERM "$i" 2>/dev/null || true
                done
                termed[$pid]=1
            fi
        done
        sleep 1
    done
    for i in "${!names[@]}"; do echo "  ${names[$i]} stopped (pid ${sids[$i]})"; done
    for c in "${stopping[@]}"; do rm -f "$RUN_DIR/$c.pid" "$RUN_DIR/$c.logstart"; done
    rm -f "$EXECUTOR_FILE"
    [ "${#sids[@]}" -gt 0 ] || echo "  nothing was running"
}

status() {
    local c pid rc=0 shown=()
    mapfile -t shown < <(all_components | awk '!seen[$0]++')
    if is_celery || [ -n "$(workers_on_record)" ]; then
        echo "  executor: $(cat "$EXECUTOR_FILE" 2>/dev/null || echo "$AIRFLOW__CORE__EXECUTOR (configured)")"
    fi
    for c in "${shown[@]}"; do
        pid="$(running_pid "$c")"
        if [ -n "$pid" ]; then
            echo "  $c: running (pid $pid)"
        else
            echo "  $c: stopped"; rc=3
        fi
    done
    if body="$(health_json)"; then
        echo "  health: $body"
    else
        echo "  health: no answer at $HEALTH_URL"
    fi
    return $rc
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    status) status ;;
    write-password) write_password ;;
    *) echo "usage: $0 start|stop|restart|status|write-password" >&2; exit 2 ;;
esac
