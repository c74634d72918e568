#!/usr/bin/env bash
# Local Prometheus (Debian package `prometheus`) on 127.0.0.1, started by the project
# itself: the packaged systemd service is never relied on.
#
# Usage: deploy/prometheus/prometheus.sh start|stop|status
#
# Environment (all optional):
#   PROMETHEUS_PORT           HTTP port on 127.0.0.1                 (9090)
#   PROMETHEUS_CONFIG         configuration file                     (deploy/prometheus/prometheus.yml)
#   PROMETHEUS_DATA_DIR       pid, log and TSDB                      (<repo>/.cache/prometheus/data-$PROMETHEUS_PORT)
#   PROMETHEUS_RETENTION      TSDB retention; norms look back 90 days (120d)
#   PROMETHEUS_START_TIMEOUT  seconds to wait for /-/ready           (60)
#   PROMETHEUS_BIN            the binary                              (prometheus)
#
# The lifecycle API is on (loopback only): POST /-/reload re-reads the configuration
# and the rule files. `start` returns once GET /-/ready answers 200.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)

NAME=prometheus
PORT=${PROMETHEUS_PORT:-9090}
CONFIG=$(realpath -m -- "${PROMETHEUS_CONFIG:-$SCRIPT_DIR/prometheus.yml}")
DATA_DIR=$(realpath -m -- "${PROMETHEUS_DATA_DIR:-$REPO_ROOT/.cache/prometheus/data-$PORT}")
RETENTION=${PROMETHEUS_RETENTION:-120d}
START_TIMEOUT=${PROMETHEUS_START_TIMEOUT:-60}
READY_PATH=/-/ready
[[ $PORT =~ ^[0-9]+$ && $START_TIMEOUT =~ ^[0-9]+$ ]] \
    || { echo "prometheus.sh: error: PROMETHEUS_PORT and PROMETHEUS_START_TIMEOUT must be numbers" >&2; exit 1; }

MARKER="--storage.tsdb.path=$DATA_DIR/tsdb"
CMD=(
    "${PROMETHEUS_BIN:-prometheus}"
    "--config.file=$CONFIG"
    "$MARKER"
    "--storage.tsdb.retention.time=$RETENTION"
    "--web.listen-address=127.0.0.1:$PORT"
    "--web.enable-lifecycle"
)

# shellcheck source-path=SCRIPTDIR source=../lib/daemon.sh
source "$SCRIPT_DIR/../lib/daemon.sh"
if [[ ${1:-} == start && ! -f $CONFIG ]]; then
    die "no configuration file $CONFIG"
fi
daemon_main "$@"
