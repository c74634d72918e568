# shellcheck shell=bash disable=SC2153  # PORT, NAME, CMD, ... come from the sourcing script
# Shared start/stop/status logic for the servers the project runs itself (Prometheus,
# Alertmanager, Kafka). Sourced by deploy/<server>/<server>.sh, which sets:
#   NAME           short name for messages and files             (prometheus)
#   PORT           main port on 127.0.0.1
#   DATA_DIR       absolute data dir: pid file, log and the server's own storage
#   START_TIMEOUT  seconds to wait until daemon_ready succeeds
#   READY_PATH     path that answers 200 once the server is ready (/-/ready), for the default
#                  daemon_ready
#   CMD            array: the server's command line (binary first); may instead be set by
#                  daemon_prepare
#   MARKER         string that must appear in the process's command line (the data dir),
#                  so that a stale pid file pointing at a reused pid is never trusted
# optionally:
#   STOP_TIMEOUT   seconds `stop` waits after SIGTERM before SIGKILL                   (30)
#   PORTS          array: every port that must be free before a start        (PORT)
#   ADDRESS        where the server answers, for messages         (http://127.0.0.1:$PORT)
#   OUT_FILE       where the process's stdout/stderr go           ($DATA_DIR/$NAME.log)
# and then calls `daemon_main "$@"`. To change a step, define the function again after
# sourcing this file:
#   daemon_check    before anything else in `start` (default: the binary CMD[0] exists)
#   daemon_prepare  under the start lock, ports free, logs rotated, just before the launch
#   daemon_ready    0 once the server serves (default: GET $READY_PATH answers 200)
# Bash only: no curl, python or nc needed.

now_ms() { date +%s%3N; }
log() { printf '%s.sh: %s\n' "$NAME" "$*"; }
die() { printf '%s.sh: error: %s\n' "$NAME" "$*" >&2; exit 1; }

PID_FILE=$DATA_DIR/$NAME.pid
LOG_FILE=$DATA_DIR/$NAME.log
OUT_FILE=${OUT_FILE:-$LOG_FILE}
ADDRESS=${ADDRESS:-http://127.0.0.1:$PORT}
if [[ -z ${PORTS+set} ]]; then PORTS=("$PORT"); fi

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

# A pid file can outlive its process and the pid be reused: only trust our own command line.
is_ours() {
    local pid=$1
    [[ -n $pid ]] && is_alive "$pid" || return 1
    if [[ -r /proc/$pid/cmdline ]]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$MARKER"
    fi
}

daemon_check() {
    command -v "${CMD[0]}" >/dev/null || die "${CMD[0]} not found (see the apt packages in docs/alerting.md)"
}

daemon_prepare() { :; }

daemon_ready() { http_ok "$PORT" "$READY_PATH"; }

# The server's log and, where the process writes elsewhere (a JVM crashing before its
# logging is up), that file too.
print_logs() {
    local file files=("$LOG_FILE")
    [[ $OUT_FILE == "$LOG_FILE" ]] || files+=("$OUT_FILE")
    for file in "${files[@]}"; do
        [[ -s $file ]] || continue
        printf -- '---- last 50 lines of %s ----\n' "$file"
        tail -n 50 "$file"
    done
}

# Never leave a half-started server behind: the caller will retry or give up, and an
# orphan would hold the ports and the data dir.
start_failed() {
    local pid=$1 msg=$2
    printf '%s.sh: error: %s\n' "$NAME" "$msg" >&2
    print_logs >&2
    is_alive "$pid" && kill -KILL "$pid" 2>/dev/null
    rm -f "$PID_FILE"
    exit 1
}

wait_ready() {
    local pid=$1 started_ms=$2
    local deadline=$((started_ms + START_TIMEOUT * 1000))
    while (( $(now_ms) < deadline )); do
        is_alive "$pid" || start_failed "$pid" "$NAME exited during startup"
        if daemon_ready; then
            local ms=$(( $(now_ms) - started_ms ))
            log "ready on $ADDRESS (pid $pid, $((ms / 1000)).$(printf '%03d' $((ms % 1000)))s)"
            return 0
        fi
        sleep 0.2
    done
    start_failed "$pid" "$NAME was not ready on $ADDRESS within ${START_TIMEOUT}s"
}

cmd_start() {
    local pid p
    daemon_check
    mkdir -p "$DATA_DIR"
    # Two racing starts on one data dir would launch two servers; serialise them. The lock
    # is released when the script exits (the server gets the fd closed).
    exec 8>"$DATA_DIR/start.lock"
    if command -v flock >/dev/null; then flock 8; fi
    pid=$(read_pid)
    if is_ours "$pid"; then
        if daemon_ready; then
            log "already running on $ADDRESS (pid $pid)"
            return 0
        fi
        # Alive but not ready: another `start` launched it and is still waiting (only
        # possible without flock). Wait too; never launch a second one.
        log "pid $pid is starting, waiting for it"
        wait_ready "$pid" "$(now_ms)"
        return 0
    fi
    rm -f "$PID_FILE"
    # A server that finds its port taken dies with a bind error seconds later; say it now.
    for p in "${PORTS[@]}"; do
        port_open "$p" && die "127.0.0.1:$p is already in use by another process"
    done
    # One run per log file, so a readiness check cannot match the previous run's lines and
    # the tail printed on failure is about this run.
    [[ -f $LOG_FILE ]] && mv -f "$LOG_FILE" "$LOG_FILE.prev"
    [[ -f $OUT_FILE ]] && mv -f "$OUT_FILE" "$OUT_FILE.prev"
    daemon_prepare
    local started_ms
    started_ms=$(now_ms)
    # nohup: a closing terminal must not take the server down. Files for all three streams:
    # a caller capturing our output (subprocess.run) must not wait for the server to exit.
    nohup "${CMD[@]}" </dev/null >"$OUT_FILE" 2>&1 8>&- &
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
    # SIGTERM lets the server shut down cleanly (Kafka flushes its logs, so the next start
    # skips log recovery).
    kill -TERM "$pid" 2>/dev/null || true
    local grace=${STOP_TIMEOUT:-30}
    [[ $grace =~ ^[0-9]+$ ]] || die "not a number: '$grace' (stop timeout)"
    local deadline=$(( $(now_ms) + grace * 1000 ))
    while is_alive "$pid" && (( $(now_ms) < deadline )); do sleep 0.1; done
    if is_alive "$pid"; then
        log "pid $pid still running after ${grace}s, killing it"
        kill -KILL "$pid" 2>/dev/null || true
        while is_alive "$pid"; do sleep 0.1; done
    fi
    rm -f "$PID_FILE"
    log "stopped (pid $pid)"
}

cmd_status() {
    local pid
    pid=$(read_pid)
    if is_ours "$pid" && daemon_ready; then
        log "running on $ADDRESS (pid $pid)"
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
