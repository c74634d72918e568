#!/usr/bin/env bash
# Local Alertmanager (Debian package `prometheus-alertmanager`) on 127.0.0.1, started by the
# project itself: the packaged systemd service is never relied on.
#
# Usage: deploy/alertmanager/alertmanager.sh start|stop|status
#
# Environment (all optional):
#   ALERTMANAGER_PORT           HTTP port on 127.0.0.1      (9094; 9093 is Kafka's controller)
#   ALERTMANAGER_CONFIG         configuration file          (deploy/alertmanager/alertmanager.yml)
#   ALERTMANAGER_DATA_DIR       pid, log, silences, nflog   (<repo>/.cache/alertmanager/data-$ALERTMANAGER_PORT)
#   ALERTMANAGER_START_TIMEOUT  seconds to wait for /-/ready (60)
#   ALERTMANAGER_BIN            the binary                  (prometheus-alertmanager)
#
# Clustering (gossip) is off: one Alertmanager, and no extra port opened.
# `start` returns once GET /-/ready answers 200. POST /-/reload re-reads the configuration.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)

NAME=alertmanager
PORT=${ALERTMANAGER_PORT:-9094}
CONFIG=$(realpath -m -- "${ALERTMANAGER_CONFIG:-$SCRIPT_DIR/alertmanager.yml}")
DATA_DIR=$(realpath -m -- "${ALERTMANAGER_DATA_DIR:-$REPO_ROOT/.cache/alertmanager/data-$PORT}")
START_TIMEOUT=${ALERTMANAGER_START_TIMEOUT:-60}
READY_PATH=/-/ready
[[ $PORT =~ ^[0-9]+$ && $START_TIMEOUT =~ ^[0-9]+$ ]] \
    || { echo "alertmanager.sh: error: ALERTMANAGER_PORT and ALERTMANAGER_START_TIMEOUT must be numbers" >&2; exit 1; }

MARKER="--storage.path=$DATA_DIR/storage"
CMD=(
    "${ALERTMANAGER_BIN:-prometheus-alertmanager}"
    "--config.file=$CONFIG"
    "$MARKER"
    "--web.listen-address=127.0.0.1:$PORT"
    "--cluster.listen-address="
)

# shellcheck source-path=SCRIPTDIR source=../lib/daemon.sh
source "$SCRIPT_DIR/../lib/daemon.sh"
if [[ ${1:-} == start && ! -f $CONFIG ]]; then
    die "no configuration file $CONFIG"
fi
daemon_main "$@"
