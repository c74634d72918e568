# shellcheck shell=bash disable=SC2153  # PORT, NAME, CMD, ... come from the sourcing script
# Shared start/stop/status logic for the small HTTP servers the project runs itself
# (Prometheus, Alertmanager). Sourced by deploy/<server>/<server>.sh, which sets:
#   NAME           short name for messages                      (prometheus)
#   PORT           HTTP port on 127.0.0.1
#   DATA_DIR       absolute data dir: pid file, log and the server's own storage
#   START_TIMEOUT  seconds to wait for GET /-/ready to answer 200
#   READY_PATH     path that answers 200 once the server is ready (/-/ready)
#   CMD            array: the server's command line (binary first)
#   MARKER         string that must appear in the process's command line (the data dir),
#                  so that a stale pid file pointing at a reused pid is never trusted
# and then calls `daemon_main "$@"`. Bash only: no curl, python or nc needed.

now_ms() { date +%s%3N; }
log() { printf '%s.sh: %s\n' "$NAME" "$*"; }
die() { printf '%s.sh: error: %s\n' "$NAME" "$*" >&2; exit 1; }

PID_FILE=$DATA_DIR/$NAME.pid
LOG_FILE=$DATA_DIR/$NAME.log

# Loopback refuses at once when nothing listens, so this never hangs.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# 0 when GET $2 on 127.0.0.1:$1 answers with HTTP status 200.
http_ok() {
    local port=$1 path=$2 status
    status=$(
        exec 2>/dev/null
        exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
        printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&3
        timeout 5 head -n 1 <&3
    ) || return 1
    [[ $status == HTTP/*" 200"* ]]
}

read_pid() {
    local pid=""
    [[ -f $PID_FILE ]] && pid=$(<"$PID_FILE")
    [[ $pid =~ ^[0-9]+$ ]] && printf '%s' "$pid"
    return 0
}

# Containers often lack an init that reaps orphans: a zombie still passes kill -0.
is_alive() {
    local pid=$1 state
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r /proc/$pid/stat ]]; then
        state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
        [[ $state != Z ]] || return 1
    fi
    return 0
}

is_ours() {
    local pid=$1
    [[ -n $pid ]] && is_alive "$pid" || return 1
    if [[ -r /proc/$pid/cmdline ]]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$MARKER"
    fi
}

start_failed() {
    local pid=$1 msg=$2
    printf '%s.sh: error: %s\n' "$NAME" "$msg" >&2
    if [[ -s $LOG_FILE ]]; then
        printf -- '---- last 40 lines of %s ----\n' "$LOG_FILE" >&2
        tail -n 40 "$LOG_FILE" >&2
    fi
    # Never leave a half-started server holding the port and the data dir.
    is_alive "$pid" && kill -KILL "$pid" 2>/dev/null
    rm -f "$PID_FILE"
    exit 1
}

wait_ready() {
    local pid=$1 started_ms=$2
    local deadline=$((started_ms + START_TIMEOUT * 1000))
    while (( $(now_ms) < deadline )); do
        is_alive "$pid" || start_failed "$pid" "$NAME exited during startup"
        if http_ok "$PORT" "$READY_PATH"; then
            local ms=$(( $(now_ms) - started_ms ))
            log "ready on http://127.0.0.1:$PORT (pid $pid, $((ms / 1000)).$(printf '%03d' $((ms % 1000)))s)"
            return 0
        fi
        sleep 0.2
    done
    start_failed "$pid" "$NAME did not answer $READY_PATH on 127.0.0.1:$PORT within ${START_TIMEOUT}s"
}

cmd_start() {
    local pid
    command -v "${CMD[0]}" >/dev/null || die "${CMD[0]} not found (see the apt packages in docs/alerting.md)"
    mkdir -p "$DATA_DIR"
    exec 8>"$DATA_DIR/start.lock"
    if command -v flock >/dev/null; then flock 8; fi
    pid=$(read_pid)
    if is_ours "$pid"; then
        if http_ok "$PORT" "$READY_PATH"; then
            log "already running on http://127.0.0.1:$PORT (pid $pid)"
            return 0
        fi
        wait_ready "$pid" "$(now_ms)"
        return 0
    fi
    rm -f "$PID_FILE"
    port_open "$PORT" && die "127.0.0.1:$PORT is already in use by another process"
    [[ -f $LOG_FILE ]] && mv -f "$LOG_FILE" "$LOG_FILE.prev"
    local started_ms
    started_ms=$(now_ms)
    # nohup and files for all three streams: a caller capturing our output
    # (subprocess.run) must not wait for the server to exit.
    nohup "${CMD[@]}" </dev/null >"$LOG_FILE" 2>&1 8>&- &
    pid=$!
    echo "$pid" >"$PID_FILE"
    log "started pid $pid, data in $DATA_DIR"
    wait_ready "$pid" "$started_ms"
}

cmd_stop() {
    local pid
    pid=$(read_pid)
    if ! is_ours "$pid"; then
        rm -f "$PID_FILE"
        log "not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$(( $(now_ms) + 30000 ))
    while is_alive "$pid" && (( $(now_ms) < deadline )); do sleep 0.1; done
    if is_alive "$pid"; then
        log "pid $pid still running after 30s, killing it"
        kill -KILL "$pid" 2>/dev/null || true
        while is_alive "$pid"; do sleep 0.1; done
    fi
    rm -f "$PID_FILE"
    log "stopped (pid $pid)"
}

cmd_status() {
    local pid
    pid=$(read_pid)
    if is_ours "$pid" && http_ok "$PORT" "$READY_PATH"; then
        log "running on http://127.0.0.1:$PORT (pid $pid)"
        return 0
    fi
    log "not running on 127.0.0.1:$PORT"
    return 1
}

daemon_main() {
    case ${1:-} in
        start)  cmd_start ;;
        stop)   cmd_stop ;;
        status) cmd_status ;;
        *)
            sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
            exit 2
            ;;
    esac
}
