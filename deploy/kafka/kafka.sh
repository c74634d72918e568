#!/usr/bin/env bash
# Local Apache Kafka 4 (KRaft, broker+controller in one JVM) for development and
# tests: a single node, or one node of a loopback cluster (see Cluster below). No Kafka tarball or Docker image: the broker's jars come
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
#   KAFKA_STOP_TIMEOUT      seconds `stop` waits after SIGTERM     (30)
#                           before SIGKILL (the last nodes of a cluster cannot finish a
#                           controlled shutdown once the quorum is gone)
#   KAFKA_EXTRA_CONFIG      server.properties lines appended to the rendered config, one
#                           key=value a line (later keys win), e.g. broker.session.timeout.ms=6000
#   JAVA_HOME               Java 17+; otherwise `java` from PATH
#
# Cluster: several nodes, each started by its own `kafka.sh start` with its own ports and data
# dir and the same voters and cluster id. A node is ready only once a majority of the voters
# runs, so start the first majority together (in parallel), not one after another
# (ketenmonitor/infra/kafka_cluster.py does that).
#   KAFKA_NODE_ID               this node's id                              (1)
#   KAFKA_QUORUM_VOTERS         id@host:controller-port of every node, comma-separated
#                                                                           (1@127.0.0.1:$KAFKA_CONTROLLER_PORT)
#   KAFKA_CLUSTER_ID            cluster id the storage is formatted with (same on every node;
#                               StorageTool random-uuid)                   (a random one)
#   KAFKA_REPLICATION_FACTOR    default.replication.factor and the internal topics' (offsets,
#                               transaction and share state) replication    (1)
#   KAFKA_MIN_INSYNC_REPLICAS   min.insync.replicas, default and internal   (1)
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
STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
SECURITY=${KAFKA_SECURITY:-none}
ADMIN_USER=${KAFKA_ADMIN_USER:-admin}
NODE_ID=${KAFKA_NODE_ID:-1}
QUORUM_VOTERS=${KAFKA_QUORUM_VOTERS:-$NODE_ID@127.0.0.1:$CONTROLLER_PORT}
CLUSTER_ID=${KAFKA_CLUSTER_ID:-}
REPLICATION_FACTOR=${KAFKA_REPLICATION_FACTOR:-1}
MIN_INSYNC_REPLICAS=${KAFKA_MIN_INSYNC_REPLICAS:-1}
EXTRA_CONFIG=${KAFKA_EXTRA_CONFIG:-}
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

# Start, stop, status, pid file (kafka.pid), log rotation and readiness wait: deploy/lib/daemon.sh,
# with the Kafka steps below as its hooks (daemon_check, daemon_prepare, daemon_ready).
NAME=kafka
ADDRESS=127.0.0.1:$PORT
PORTS=("$PORT" "$CONTROLLER_PORT")
OUT_FILE=$DATA_DIR/kafka.out  # JVM stdout/stderr; log4j2 writes kafka.log itself
# A pid file can outlive its process and the pid be reused: only our broker with our config.
MARKER="kafka.Kafka $PROPS"
# shellcheck source-path=SCRIPTDIR source=../lib/daemon.sh
source "$SCRIPT_DIR/../lib/daemon.sh"

for p in "$PORT" "$CONTROLLER_PORT" "$START_TIMEOUT"; do
    [[ $p =~ ^[0-9]+$ ]] || die "not a number: '$p' (KAFKA_PORT, KAFKA_CONTROLLER_PORT, KAFKA_START_TIMEOUT)"
done
[[ $PORT != "$CONTROLLER_PORT" ]] || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ"
# log.dirs is a comma-separated list in server.properties.
[[ $DATA_DIR != *,* ]] || die "KAFKA_DATA_DIR must not contain a comma: $DATA_DIR"
[[ $SECURITY == none || $SECURITY == scram ]] || die "KAFKA_SECURITY must be none or scram, not '$SECURITY'"
[[ $ADMIN_USER =~ ^[A-Za-z0-9._-]+$ ]] || die "KAFKA_ADMIN_USER: only A-Z a-z 0-9 . _ - allowed"
for p in "$NODE_ID" "$REPLICATION_FACTOR" "$MIN_INSYNC_REPLICAS"; do
    [[ $p =~ ^[0-9]+$ ]] || die "not a number: '$p' (KAFKA_NODE_ID, KAFKA_REPLICATION_FACTOR, KAFKA_MIN_INSYNC_REPLICAS)"
done
(( REPLICATION_FACTOR >= 1 && MIN_INSYNC_REPLICAS >= 1 && MIN_INSYNC_REPLICAS <= REPLICATION_FACTOR )) \
    || die "need 1 <= KAFKA_MIN_INSYNC_REPLICAS ($MIN_INSYNC_REPLICAS) <= KAFKA_REPLICATION_FACTOR ($REPLICATION_FACTOR)"
VOTER='[0-9]+@[A-Za-z0-9.-]+:[0-9]+'
[[ $QUORUM_VOTERS =~ ^$VOTER(,$VOTER)*$ ]] \
    || die "KAFKA_QUORUM_VOTERS must be id@host:port[,id@host:port...], not '$QUORUM_VOTERS'"
[[ ,$QUORUM_VOTERS, == *",$NODE_ID@127.0.0.1:$CONTROLLER_PORT,"* ]] \
    || die "KAFKA_QUORUM_VOTERS ($QUORUM_VOTERS) must list this node as $NODE_ID@127.0.0.1:$CONTROLLER_PORT"
[[ -z $CLUSTER_ID || $CLUSTER_ID =~ ^[A-Za-z0-9_-]{22}$ ]] \
    || die "KAFKA_CLUSTER_ID must be 22 characters of base64url (StorageTool random-uuid), not '$CLUSTER_ID'"
while IFS= read -r line; do
    [[ -z $line || $line =~ ^[A-Za-z0-9._-]+=[^=] ]] || die "KAFKA_EXTRA_CONFIG: expected key=value lines, not '$line'"
done <<<"$EXTRA_CONFIG"
# The controller login of secure mode is a secret per data dir: one node only.
[[ $SECURITY == none || $QUORUM_VOTERS != *,* ]] || die "KAFKA_SECURITY=scram is for a single node only"

# ---------------------------------------------------------------- helpers --

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
# and without a config log4j2 would complain on the console). A tool runs for
# seconds: C1 only and the serial collector, no JIT or GC threads to warm up.
run_kafka_class() {
    "$JAVA" -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
        -Dlog4j2.configurationFile="$LOG4J_CONFIG" -Dkafka.logs.dir="$DATA_DIR" \
        -cp "$LIBS_DIR/*" "$@"
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

# shellcheck disable=SC2016  # the '${NAME}' placeholders are meant literally
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
    text=${text//'${NODE_ID}'/"$NODE_ID"}
    text=${text//'${QUORUM_VOTERS}'/"$QUORUM_VOTERS"}
    text=${text//'${REPLICATION_FACTOR}'/"$REPLICATION_FACTOR"}
    text=${text//'${MIN_INSYNC_REPLICAS}'/"$MIN_INSYNC_REPLICAS"}
    if [[ -n $EXTRA_CONFIG ]]; then
        text+=$'\n\n# KAFKA_EXTRA_CONFIG\n'$EXTRA_CONFIG
    fi
    # The secure config holds passwords: never readable by others, not even briefly.
    (umask 077; printf '%s\n' "$text" >"$PROPS.tmp")
    mv "$PROPS.tmp" "$PROPS"
}

format_storage() {
    # meta.properties is what the storage tool writes; formatting again would
    # fail (or, with --ignore-formatted, silently keep a cluster id we never saw).
    [[ -f $DATA_DIR/logs/meta.properties ]] && return 0
    local cluster_id i scram=()
    cluster_id=$CLUSTER_ID
    [[ -n $cluster_id ]] || cluster_id=$(run_kafka_class kafka.tools.StorageTool random-uuid)
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
    # --cluster-id=ID, not -t ID: a base64url id may start with "-", which argparse takes for a flag.
    run_kafka_class kafka.tools.StorageTool format --cluster-id="$cluster_id" -c "$PROPS" "${scram[@]}" >/dev/null
    printf '%s\n' "$SECURITY" >"$MODE_FILE"
}

# ------------------------------------------------------ hooks of daemon.sh --

daemon_check() { find_java; }

# Under the start lock, ports free, kafka.log and kafka.out already rotated (so the storage
# tool's lines below land in this run's log, before the broker's).
daemon_prepare() {
    cmd_fetch
    if [[ -f $DATA_DIR/logs/meta.properties && $(formatted_mode) != "$SECURITY" ]]; then
        die "$DATA_DIR was formatted with KAFKA_SECURITY=$(formatted_mode), not $SECURITY: use another KAFKA_DATA_DIR or 'clean' it"
    fi
    if [[ $SECURITY == scram ]]; then
        read_credentials
        CONTROLLER_PASSWORD=$(controller_secret)
    fi
    render_config
    format_storage
    # Kafka's own JVM flags from kafka-run-class.sh, minus the heap.
    # shellcheck disable=SC2206  # HEAP and KAFKA_JVM_OPTS are word lists
    CMD=(
        "$JAVA" $HEAP
        -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
        ${KAFKA_JVM_OPTS:-}
        -Dlog4j2.configurationFile="$LOG4J_CONFIG" -Dkafka.logs.dir="$DATA_DIR"
        -cp "$LIBS_DIR/*" kafka.Kafka "$PROPS"
    )
}

# Port open is not enough: the socket server binds before the broker has caught
# up with the metadata log and been unfenced. KafkaRaftServer logs
# "Kafka Server started" only after that, so wait for both.
daemon_ready() {
    port_open "$PORT" && grep -qF 'Kafka Server started' "$LOG_FILE" 2>/dev/null
}

# ------------------------------------------------------------------ clean --

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
    clean)  cmd_clean ;;
    *)      daemon_main "$@" ;;  # start, stop, status (or the usage)
esac
