#!/usr/bin/env bash
# A private PostgreSQL cluster for the case-fact store, from Debian's postgresql-15 package
# (initdb and pg_ctl from /usr/lib/postgresql/15/bin; the packaged system cluster is not used).
# Development and tests only: it listens on 127.0.0.1, no Unix socket outside its data dir,
# and trusts loopback connections. Production uses a managed PostgreSQL with real credentials.
#
# Usage: deploy/postgres/postgres.sh start|stop|status
#
# Environment (all optional):
#   PG_PORT            TCP port on 127.0.0.1                  (5432)
#   PG_DATA_DIR        cluster directory                      (<repo>/.cache/postgres/data-$PG_PORT)
#   PG_DATABASE        database created on first start        (ketenmonitor)
#   PG_BIN             PostgreSQL binaries                    (/usr/lib/postgresql/15/bin)
#   PG_START_TIMEOUT   seconds to wait for connections        (60)
#   PG_FSYNC           on|off; off only for throwaway test clusters (on)
#
# initdb and postgres refuse to run as root: as root the cluster runs as the `postgres` OS user
# (created by the Debian package), which then owns PG_DATA_DIR; every parent directory must be
# traversable by that user (so not under a 0700 home or pytest tmp dir).
# The superuser is `postgres`; the URL is postgresql://postgres@127.0.0.1:$PG_PORT/$PG_DATABASE.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)

PORT=${PG_PORT:-5432}
DATA_DIR=$(realpath -m -- "${PG_DATA_DIR:-$REPO_ROOT/.cache/postgres/data-$PORT}")
DATABASE=${PG_DATABASE:-ketenmonitor}
BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
START_TIMEOUT=${PG_START_TIMEOUT:-60}
LOG_FILE=$DATA_DIR/postgres.log
CLUSTER=$DATA_DIR/cluster

log() { printf 'postgres.sh: %s\n' "$*"; }
die() { printf 'postgres.sh: error: %s\n' "$*" >&2; exit 1; }

[[ $PORT =~ ^[0-9]+$ ]] || die "PG_PORT is not a number: '$PORT'"
[[ $START_TIMEOUT =~ ^[0-9]+$ ]] || die "PG_START_TIMEOUT is not a number: '$START_TIMEOUT'"
[[ ${PG_FSYNC:-on} =~ ^(on|off)$ ]] || die "PG_FSYNC must be on or off"
[[ $DATABASE =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "PG_DATABASE must be a plain identifier"
[[ -x $BIN/initdb && -x $BIN/pg_ctl ]] \
    || die "no PostgreSQL binaries in $BIN: apt-get install -y --no-install-recommends postgresql-15"

# As root, run every PostgreSQL binary as the postgres user; otherwise as ourselves.
if [[ $(id -u) == 0 ]]; then
    id postgres >/dev/null 2>&1 || die "no 'postgres' OS user (it comes with the postgresql-15 package)"
    as_owner() { runuser -u postgres -- "$@"; }
    OWNER=postgres
else
    as_owner() { "$@"; }
    OWNER=$(id -un)
fi

pg() { as_owner "$BIN/pg_ctl" -D "$CLUSTER" "$@"; }

accepting() { as_owner "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -d postgres; }

running() { [[ -f $CLUSTER/postmaster.pid ]] && pg status >/dev/null 2>&1; }

init_cluster() {
    mkdir -p "$DATA_DIR"
    chown "$OWNER" "$DATA_DIR"
    chmod 0700 "$DATA_DIR"
    as_owner test -w "$DATA_DIR" \
        || die "$OWNER cannot write $DATA_DIR (is a parent directory private to another user?)"
    log "initdb in $CLUSTER"
    as_owner "$BIN/initdb" -D "$CLUSTER" -U postgres --auth=trust --encoding=UTF8 \
        --locale=C.UTF-8 >"$DATA_DIR/initdb.log" 2>&1 \
        || die "initdb failed: $(tail -20 "$DATA_DIR/initdb.log")"
}

cmd_start() {
    if running; then
        log "already running on 127.0.0.1:$PORT ($CLUSTER)"
        return 0
    fi
    [[ -f $CLUSTER/PG_VERSION ]] || init_cluster
    # Loopback only; the Unix socket lives in the data dir, not in /var/run/postgresql.
    local opts="-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$DATA_DIR"
    opts+=" -c fsync=${PG_FSYNC:-on} -c max_connections=50"
    log "starting on 127.0.0.1:$PORT"
    pg -l "$LOG_FILE" -o "$opts" -w -t "$START_TIMEOUT" start >/dev/null \
        || die "pg_ctl start failed: $(tail -20 "$LOG_FILE" 2>/dev/null)"
    local deadline=$((SECONDS + START_TIMEOUT))
    until accepting; do
        (( SECONDS < deadline )) || die "no connections on 127.0.0.1:$PORT after ${START_TIMEOUT}s"
        sleep 0.2
    done
    if ! as_owner "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'" | grep -q 1; then
        as_owner "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$DATABASE"
    fi
    log "ready: postgresql://postgres@127.0.0.1:$PORT/$DATABASE"
}

cmd_stop() {
    if ! running; then
        log "not running ($CLUSTER)"
        return 0
    fi
    pg -m fast -w -t 60 stop >/dev/null || die "pg_ctl stop failed"
    log "stopped"
}

cmd_status() {
    if running && accepting; then
        log "running on 127.0.0.1:$PORT ($CLUSTER)"
        return 0
    fi
    log "not running ($CLUSTER)"
    return 3
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) die "usage: $0 start|stop|status" ;;
esac
