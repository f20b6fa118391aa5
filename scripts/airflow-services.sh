#!/usr/bin/env bash
# Run the local Airflow 3 components in the background:
#   api-server (UI, REST API, execution API for tasks), scheduler (LocalExecutor),
#   dag-processor, triggerer.
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
HEALTH_URL="http://127.0.0.1:${AIRFLOW__API__PORT}/api/v2/monitor/health"
START_TIMEOUT="${CPS_AIRFLOW_START_TIMEOUT:-120}"
STOP_TIMEOUT="${CPS_AIRFLOW_STOP_TIMEOUT:-30}"
TERM_ALL_AFTER=10

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
    # Airflow renames some processes ("airflow api_server -- host:..."): match loosely
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -Eq "airflow.* ${1//-/.}" || return 0
    echo "$pid"
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
    local started=0 c pid
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
    local t0=$SECONDS
    until is_healthy; do
        for c in "${COMPONENTS[@]}"; do
            if [ -z "$(running_pid "$c")" ]; then
                echo "airflow-services: $c exited; last lines of $RUN_DIR/$c.log:" >&2
                tail -n 30 "$RUN_DIR/$c.log" >&2
                exit 1
            fi
        done
        if [ $((SECONDS - t0)) -ge "$START_TIMEOUT" ]; then
            echo "airflow-services: not healthy after ${START_TIMEOUT}s; health: $(health_json || echo 'no answer')" >&2
            for c in "${COMPONENTS[@]}"; do
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
    local c pid sids=() names=()
    for c in "${COMPONENTS[@]}"; do
        pid="$(running_pid "$c")"
        if [ -n "$pid" ]; then
            # graceful first: the component shuts its own workers down
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
    for c in "${COMPONENTS[@]}"; do rm -f "$RUN_DIR/$c.pid"; done
    [ "${#sids[@]}" -gt 0 ] || echo "  nothing was running"
}

status() {
    local c pid rc=0
    for c in "${COMPONENTS[@]}"; do
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
