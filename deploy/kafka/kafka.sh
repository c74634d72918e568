#!/usr/bin/env bash
# Local single-node Apache Kafka 4 (KRaft, broker+controller in one JVM) for
# development and tests. No Kafka tarball or Docker image: the broker's jars come
# from Maven Central through deploy/kafka/pom.xml, which is the only way in from
# this environment.
#
# Usage: deploy/kafka/kafka.sh fetch|start|stop|status|clean
#
# Environment (all optional):
#   KAFKA_PORT              PLAINTEXT port on 127.0.0.1            (9092)
#   KAFKA_CONTROLLER_PORT   KRaft controller port on 127.0.0.1     (9093)
#   KAFKA_DATA_DIR          storage, rendered config, logs, pid    (<repo>/.cache/kafka/data-$KAFKA_PORT)
#   KAFKA_CACHE_DIR         where the resolved jars live           (<repo>/.cache/kafka/libs)
#   KAFKA_HEAP              JVM heap flags                         (-Xmx768m -Xms256m)
#   KAFKA_JVM_OPTS          extra JVM flags, appended
#   KAFKA_START_TIMEOUT     seconds to wait for the broker         (60)
#   JAVA_HOME               Java 17+; otherwise `java` from PATH
#
# Secure mode (docs/security.md): KAFKA_SECURITY=scram starts the client listener as
# SASL_PLAINTEXT with SCRAM-SHA-512, the StandardAuthorizer (deny unless an ACL allows) and
# `admin` as super user. The SCRAM users are written into the metadata log when the storage is
# formatted, so they must be given at the first start of a data dir; a data dir keeps the mode it
# was formatted with (clean it to switch). ACLs: `ketenmonitor acl apply` as admin.
#   KAFKA_SECURITY               none | scram                                   (none)
#   KAFKA_SCRAM_CREDENTIALS_FILE lines `name=password` ('#' comments); must include the admin
#   KAFKA_SCRAM_CREDENTIALS      the same pairs, separated by whitespace, instead of a file
#   KAFKA_ADMIN_USER             the super user's name                          (admin)
# Passwords: 12+ characters of A-Z a-z 0-9 . _ ~ + / - (they pass through the storage tool's
# --add-scram syntax and a JAAS line unquoted); user names: A-Z a-z 0-9 . _ -.
#
# Files in the data dir: server.properties (rendered on every start, so port
# changes apply), kafka.log (log4j2, current run; the previous run's is kept as
# kafka.log.prev), kafka.out (JVM stdout/stderr: crashes before log4j is up),
# kafka.pid, start.lock, logs/ (the Kafka log dir itself); in secure mode also
# security.mode (the mode the storage was formatted with) and controller.secret.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)

PORT=${KAFKA_PORT:-9092}
CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
LIBS_DIR=${KAFKA_CACHE_DIR:-$REPO_ROOT/.cache/kafka/libs}
DATA_DIR=${KAFKA_DATA_DIR:-$REPO_ROOT/.cache/kafka/data-$PORT}
HEAP=${KAFKA_HEAP:--Xmx768m -Xms256m}
START_TIMEOUT=${KAFKA_START_TIMEOUT:-60}
STOP_TIMEOUT=30
SECURITY=${KAFKA_SECURITY:-none}
ADMIN_USER=${KAFKA_ADMIN_USER:-admin}
# The controller listener's login (SASL PLAIN, see security.properties.template); not a SCRAM user.
CONTROLLER_USER=kraft-controller

# Kafka and log4j need absolute paths (the JVM may resolve relative ones against
# another cwd); -m because the dirs may not exist yet.
LIBS_DIR=$(realpath -m -- "$LIBS_DIR")
DATA_DIR=$(realpath -m -- "$DATA_DIR")

POM=$SCRIPT_DIR/pom.xml
TEMPLATE=$SCRIPT_DIR/server.properties.template
SECURITY_TEMPLATE=$SCRIPT_DIR/security.properties.template
MODE_FILE=$DATA_DIR/security.mode
CONTROLLER_SECRET_FILE=$DATA_DIR/controller.secret
LOG4J_CONFIG=$SCRIPT_DIR/log4j2.properties
STAMP=$LIBS_DIR/.pom.sha256
PROPS=$DATA_DIR/server.properties
PID_FILE=$DATA_DIR/kafka.pid
LOG_FILE=$DATA_DIR/kafka.log
OUT_FILE=$DATA_DIR/kafka.out

log() { printf 'kafka.sh: %s\n' "$*"; }
die() { printf 'kafka.sh: error: %s\n' "$*" >&2; exit 1; }

for p in "$PORT" "$CONTROLLER_PORT" "$START_TIMEOUT"; do
    [[ $p =~ ^[0-9]+$ ]] || die "not a number: '$p' (KAFKA_PORT, KAFKA_CONTROLLER_PORT, KAFKA_START_TIMEOUT)"
done
[[ $PORT != "$CONTROLLER_PORT" ]] || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ"
# log.dirs is a comma-separated list in server.properties.
[[ $DATA_DIR != *,* ]] || die "KAFKA_DATA_DIR must not contain a comma: $DATA_DIR"
[[ $SECURITY == none || $SECURITY == scram ]] || die "KAFKA_SECURITY must be none or scram, not '$SECURITY'"
[[ $ADMIN_USER =~ ^[A-Za-z0-9._-]+$ ]] || die "KAFKA_ADMIN_USER: only A-Z a-z 0-9 . _ - allowed"

# ---------------------------------------------------------------- helpers --

now_ms() { date +%s%3N; }

find_java() {
    if [[ -n ${JAVA_HOME:-} ]]; then
        JAVA=$JAVA_HOME/bin/java
    else
        JAVA=$(command -v java || true)
    fi
    [[ -n $JAVA && -x $JAVA ]] || die "no java found: install Java 17+ or set JAVA_HOME"
    # Kafka 4 refuses to run on anything older than 17; say so up front instead
    # of failing with an UnsupportedClassVersionError buried in kafka.out.
    local version
    version=$("$JAVA" -XshowSettings:properties -version 2>&1 \
        | awk -F' = ' '/java.specification.version/ {print $2}')
    local major=${version%%.*}
    if ! [[ $major =~ ^[0-9]+$ ]] || (( major < 17 )); then
        die "$JAVA is Java '$version'; Kafka 4 needs 17+ (set JAVA_HOME, e.g. /usr/lib/jvm/java-17-openjdk-amd64)"
    fi
}

# Runs a Kafka class with our classpath and logging (the storage tool logs too,
# and without a config log4j2 would complain on the console).
run_kafka_class() {
    "$JAVA" -Dlog4j2.configurationFile="$LOG4J_CONFIG" -Dkafka.logs.dir="$DATA_DIR" \
        -cp "$LIBS_DIR/*" "$@"
}

# bash's /dev/tcp: no python, nc or curl needed. Loopback refuses at once when
# nothing listens, so this never hangs.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

read_pid() {
    local pid=""
    [[ -f $PID_FILE ]] && pid=$(<"$PID_FILE")
    [[ $pid =~ ^[0-9]+$ ]] && printf '%s' "$pid"
    return 0
}

# The broker is not our child once this script exits, and containers often lack
# an init that reaps orphans: a zombie still passes `kill -0`, so look at its state.
is_alive() {
    local pid=$1 state
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r /proc/$pid/stat ]]; then
        state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
        [[ $state != Z ]] || return 1
    fi
    return 0
}

# A pid file can outlive its process and the pid be reused, so only trust a
# process whose command line is our broker with our config.
is_our_broker() {
    local pid=$1
    [[ -n $pid ]] && is_alive "$pid" || return 1
    if [[ -r /proc/$pid/cmdline ]]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "kafka.Kafka $PROPS"
    fi
}

is_running() {
    local pid
    pid=$(read_pid)
    is_our_broker "$pid" && port_open "$PORT"
}

print_logs() {
    if [[ -s $LOG_FILE ]]; then
        printf -- '---- last 50 lines of %s ----\n' "$LOG_FILE"
        tail -n 50 "$LOG_FILE"
    fi
    if [[ -s $OUT_FILE ]]; then
        printf -- '---- last 50 lines of %s ----\n' "$OUT_FILE"
        tail -n 50 "$OUT_FILE"
    fi
}

# --------------------------------------------------------------- commands --

libs_fresh() { [[ -f $STAMP && $(<"$STAMP") == "$(sha256sum "$POM" | cut -d' ' -f1)" ]]; }

cmd_fetch() {
    libs_fresh && return 0
    command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
    mkdir -p "$(dirname "$LIBS_DIR")"
    # Parallel callers (two test sessions, two shells) must not resolve into the
    # same dir at once: take a lock, re-check, resolve into a temp dir and swap it
    # in, so a half-copied classpath is never visible. The subshell keeps the
    # lock's fd away from the broker we may start afterwards.
    (
        if command -v flock >/dev/null; then flock 9; fi
        libs_fresh && exit 0
        tmp=$(mktemp -d "$LIBS_DIR.tmp.XXXXXX")
        chmod 755 "$tmp"  # mktemp makes it 0700; the jars are not secret
        trap 'rm -rf "$tmp" "$tmp.log"' EXIT
        log "resolving Kafka jars from Maven Central into $LIBS_DIR"
        if ! mvn -B -q -f "$POM" dependency:copy-dependencies \
                -DincludeScope=runtime -DoutputDirectory="$tmp" >"$tmp.log" 2>&1; then
            cat "$tmp.log" >&2
            die "mvn could not resolve $POM"
        fi
        sha256sum "$POM" | cut -d' ' -f1 >"$tmp/.pom.sha256"
        rm -rf "$LIBS_DIR"
        mv "$tmp" "$LIBS_DIR"
        log "$(find "$LIBS_DIR" -name '*.jar' | wc -l) jars in $LIBS_DIR"
    ) 9>"$LIBS_DIR.lock"
}

# Secure mode: SCRAM_USERS / SCRAM_PASSWORDS from the credentials file or variable.
# Never prints a password, not even a rejected one.
SCRAM_USERS=()
SCRAM_PASSWORDS=()
ADMIN_PASSWORD=""
read_credentials() {
    local source text line name password n=0 i
    if [[ -n ${KAFKA_SCRAM_CREDENTIALS_FILE:-} ]]; then
        source=$KAFKA_SCRAM_CREDENTIALS_FILE
        [[ -r $source ]] || die "cannot read KAFKA_SCRAM_CREDENTIALS_FILE $source"
        text=$(<"$source")
    elif [[ -n ${KAFKA_SCRAM_CREDENTIALS:-} ]]; then
        source=KAFKA_SCRAM_CREDENTIALS
        text=$(printf '%s' "$KAFKA_SCRAM_CREDENTIALS" | tr -s '[:space:]' '\n')
    else
        die "KAFKA_SECURITY=scram needs KAFKA_SCRAM_CREDENTIALS_FILE or KAFKA_SCRAM_CREDENTIALS"
    fi
    while IFS= read -r line || [[ -n $line ]]; do
        n=$((n + 1))
        line=${line%$'\r'}
        [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
        [[ $line == *=* ]] || die "$source entry $n: expected name=password"
        name=${line%%=*}
        password=${line#*=}
        [[ $name =~ ^[A-Za-z0-9._-]+$ ]] \
            || die "$source entry $n: a user name may only hold A-Z a-z 0-9 . _ -"
        [[ $password =~ ^[A-Za-z0-9._~+/-]{12,}$ ]] \
            || die "$source entry $n: the password of '$name' must be 12+ characters of A-Z a-z 0-9 . _ ~ + / -"
        [[ $name != "$CONTROLLER_USER" ]] || die "$source entry $n: '$name' is reserved"
        for i in "${SCRAM_USERS[@]}"; do
            [[ $i != "$name" ]] || die "$source entry $n: user '$name' appears twice"
        done
        SCRAM_USERS+=("$name")
        SCRAM_PASSWORDS+=("$password")
        [[ $name == "$ADMIN_USER" ]] && ADMIN_PASSWORD=$password
    done <<<"$text"
    [[ -n $ADMIN_PASSWORD ]] || die "$source has no password for the super user '$ADMIN_USER'"
}

# One random login per data dir for the controller listener; only this broker uses it.
controller_secret() {
    if [[ ! -s $CONTROLLER_SECRET_FILE ]]; then
        (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$CONTROLLER_SECRET_FILE")
    fi
    cat "$CONTROLLER_SECRET_FILE"
}

# The mode a data dir was formatted with (dirs from before secure mode existed: none).
formatted_mode() {
    if [[ -f $MODE_FILE ]]; then cat "$MODE_FILE"; else printf 'none'; fi
}

render_config() {
    # Bash substitution, not sed or envsubst: no escaping of paths, and the
    # passwords never appear on a command line. Quoted replacements are literal.
    local text listener=PLAINTEXT controller_protocol=PLAINTEXT
    text=$(<"$TEMPLATE")
    if [[ $SECURITY == scram ]]; then
        listener=SASL_PLAINTEXT
        controller_protocol=SASL_PLAINTEXT
        text+=$'\n'$(<"$SECURITY_TEMPLATE")
    fi
    text=${text//'${PORT}'/"$PORT"}
    text=${text//'${CONTROLLER_PORT}'/"$CONTROLLER_PORT"}
    text=${text//'${DATA_DIR}'/"$DATA_DIR"}
    text=${text//'${LISTENER}'/"$listener"}
    text=${text//'${CONTROLLER_PROTOCOL}'/"$controller_protocol"}
    text=${text//'${ADMIN_USER}'/"$ADMIN_USER"}
    text=${text//'${ADMIN_PASSWORD}'/"$ADMIN_PASSWORD"}
    text=${text//'${CONTROLLER_USER}'/"$CONTROLLER_USER"}
    text=${text//'${CONTROLLER_PASSWORD}'/"${CONTROLLER_PASSWORD:-}"}
    # The secure config holds passwords: never readable by others, not even briefly.
    (umask 077; printf '%s\n' "$text" >"$PROPS.tmp")
    mv "$PROPS.tmp" "$PROPS"
}

format_storage() {
    # meta.properties is what the storage tool writes; formatting again would
    # fail (or, with --ignore-formatted, silently keep a cluster id we never saw).
    [[ -f $DATA_DIR/logs/meta.properties ]] && return 0
    local cluster_id i scram=()
    cluster_id=$(run_kafka_class kafka.tools.StorageTool random-uuid)
    log "formatting $DATA_DIR/logs (cluster id $cluster_id, security $SECURITY)"
    if [[ $SECURITY == scram ]]; then
        # The storage tool takes SCRAM users only on its command line: they are visible in the
        # process list for the second this takes (loopback development broker; docs/security.md).
        for i in "${!SCRAM_USERS[@]}"; do
            scram+=(--add-scram "SCRAM-SHA-512=[name=${SCRAM_USERS[$i]},password=${SCRAM_PASSWORDS[$i]}]")
        done
        log "SCRAM users: ${SCRAM_USERS[*]}"
    fi
    # Static quorum (controller.quorum.voters), hence no --standalone.
    run_kafka_class kafka.tools.StorageTool format -t "$cluster_id" -c "$PROPS" "${scram[@]}" >/dev/null
    printf '%s\n' "$SECURITY" >"$MODE_FILE"
}

# Port open is not enough: the socket server binds before the broker has caught
# up with the metadata log and been unfenced. KafkaRaftServer logs
# "Kafka Server started" only after that, so wait for both.
wait_ready() {
    local pid=$1 started_ms=$2
    local deadline=$((started_ms + START_TIMEOUT * 1000))
    while (( $(now_ms) < deadline )); do
        if ! is_alive "$pid"; then
            start_failed "$pid" "the broker exited during startup"
        fi
        if port_open "$PORT" && grep -qF 'Kafka Server started' "$LOG_FILE" 2>/dev/null; then
            local ms=$(( $(now_ms) - started_ms ))
            log "ready on 127.0.0.1:$PORT (pid $pid, started in $((ms / 1000)).$(printf '%03d' $((ms % 1000)))s)"
            return 0
        fi
        sleep 0.2
    done
    start_failed "$pid" "the broker did not answer on 127.0.0.1:$PORT within ${START_TIMEOUT}s"
}

# Never leave a half-started broker behind: the caller will retry or give up,
# and an orphan would hold the ports and the data dir.
start_failed() {
    local pid=$1 msg=$2
    printf 'kafka.sh: error: %s\n' "$msg" >&2
    print_logs >&2
    if is_alive "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
    exit 1
}

cmd_start() {
    local pid
    find_java
    mkdir -p "$DATA_DIR"
    # Two racing starts on one data dir would launch two JVMs, and the loser would
    # only die seconds later on Kafka's own log-dir lock. Serialise them instead;
    # the lock is released when this script exits (the JVM gets the fd closed).
    exec 8>"$DATA_DIR/start.lock"
    if command -v flock >/dev/null; then flock 8; fi

    pid=$(read_pid)
    if is_our_broker "$pid"; then
        if port_open "$PORT"; then
            log "already running on 127.0.0.1:$PORT (pid $pid)"
            return 0
        fi
        # Alive but not answering: another `start` launched it and is still
        # waiting (only possible without flock). Wait too; never launch a second JVM.
        log "pid $pid is starting, waiting for it"
        wait_ready "$pid" "$(now_ms)"
        return 0
    fi
    rm -f "$PID_FILE"

    # Something else (another broker, another data dir) on our ports would make
    # the new broker die with a bind error after a few seconds; say it now.
    for p in "$PORT" "$CONTROLLER_PORT"; do
        port_open "$p" && die "127.0.0.1:$p is already in use by another process"
    done

    cmd_fetch
    if [[ -f $DATA_DIR/logs/meta.properties && $(formatted_mode) != "$SECURITY" ]]; then
        die "$DATA_DIR was formatted with KAFKA_SECURITY=$(formatted_mode), not $SECURITY: use another KAFKA_DATA_DIR or 'clean' it"
    fi
    if [[ $SECURITY == scram ]]; then
        read_credentials
        CONTROLLER_PASSWORD=$(controller_secret)
    fi
    render_config
    # One run per log file, so the readiness check cannot match the previous
    # run's "started" line, and the tail printed on failure is about this run.
    [[ -f $LOG_FILE ]] && mv -f "$LOG_FILE" "$LOG_FILE.prev"
    [[ -f $OUT_FILE ]] && mv -f "$OUT_FILE" "$OUT_FILE.prev"
    format_storage

    local started_ms
    started_ms=$(now_ms)
    # nohup: a closing terminal must not take the broker down (the JVM keeps
    # SIGHUP ignored). stdin/stdout/stderr go to files: a caller that captures
    # our output (subprocess.run) would otherwise wait for the JVM to exit.
    # Kafka's own JVM flags from kafka-run-class.sh, minus the heap.
    # shellcheck disable=SC2086  # HEAP and KAFKA_JVM_OPTS are word lists
    nohup "$JAVA" $HEAP \
        -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
        ${KAFKA_JVM_OPTS:-} \
        -Dlog4j2.configurationFile="$LOG4J_CONFIG" -Dkafka.logs.dir="$DATA_DIR" \
        -cp "$LIBS_DIR/*" kafka.Kafka "$PROPS" \
        </dev/null >"$OUT_FILE" 2>&1 8>&- &
    pid=$!
    echo "$pid" >"$PID_FILE"
    log "started pid $pid, data in $DATA_DIR"
    wait_ready "$pid" "$started_ms"
}

cmd_stop() {
    local pid
    pid=$(read_pid)
    if ! is_our_broker "$pid"; then
        rm -f "$PID_FILE"
        log "not running"
        return 0
    fi
    # SIGTERM runs Kafka's shutdown hook: it flushes and closes the logs cleanly,
    # so the next start skips log recovery.
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$(( $(now_ms) + STOP_TIMEOUT * 1000 ))
    while is_alive "$pid" && (( $(now_ms) < deadline )); do
        sleep 0.2
    done
    if is_alive "$pid"; then
        log "pid $pid still running after ${STOP_TIMEOUT}s, killing it"
        kill -KILL "$pid" 2>/dev/null || true
        while is_alive "$pid"; do sleep 0.1; done
    fi
    rm -f "$PID_FILE"
    log "stopped (pid $pid)"
}

cmd_status() {
    local pid
    pid=$(read_pid)
    if is_running; then
        log "running on 127.0.0.1:$PORT (pid $pid)"
        return 0
    fi
    log "not running on 127.0.0.1:$PORT"
    return 1
}

cmd_clean() {
    cmd_stop
    [[ -d $DATA_DIR ]] || return 0
    # Guard against KAFKA_DATA_DIR pointing somewhere precious: only delete a
    # dir that is empty or visibly ours.
    if [[ -n $(ls -A "$DATA_DIR") && ! -f $PROPS && ! -d $DATA_DIR/logs ]]; then
        die "$DATA_DIR does not look like a Kafka data dir made by this script; not deleting it"
    fi
    rm -rf -- "$DATA_DIR"
    log "deleted $DATA_DIR"
}

case ${1:-} in
    fetch)  cmd_fetch ;;
    start)  cmd_start ;;
    stop)   cmd_stop ;;
    status) cmd_status ;;
    clean)  cmd_clean ;;
    *)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
