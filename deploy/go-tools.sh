#!/usr/bin/env bash
# Go-built tools the tests need and Debian does not ship in the wanted version, pinned and built from
# the Go module proxy with `go install`, cached per user outside the clone:
#   prometheus 3 (github.com/prometheus/prometheus/cmd/prometheus@v0.316.0, Apache-2.0)
#   helm 3       (helm.sh/helm/v3/cmd/helm@v3.22.0, Apache-2.0)
#
#   bash deploy/go-tools.sh          # build what is missing (idempotent), print nothing when done
#   bash deploy/go-tools.sh path prometheus3|helm   # where the binary is
#
# KETENMONITOR_TOOLS_CACHE moves the cache (default ~/.cache/ketenmonitor/tools).
set -euo pipefail

CACHE=${KETENMONITOR_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ketenmonitor/tools}
declare -A MODULE=(
    [prometheus3]=github.com/prometheus/prometheus/cmd/prometheus@v0.316.0
    [helm]=helm.sh/helm/v3/cmd/helm@v3.22.0
)
declare -A BINARY=([prometheus3]=prometheus [helm]=helm)

path_of() {
    local tool=$1 module=${MODULE[$1]}
    echo "$CACHE/$tool-${module##*@}/${BINARY[$tool]}"
}

if [[ ${1:-} == path ]]; then
    [[ -n ${2:-} && -n ${MODULE[${2}]:-} ]] || { echo "go-tools.sh: usage: path prometheus3|helm" >&2; exit 2; }
    path_of "$2"
    exit 0
fi

GO=$(command -v go || echo /usr/local/go/bin/go)
for tool in "${!MODULE[@]}"; do
    target=$(path_of "$tool")
    [[ -x $target ]] && continue
    [[ -x $GO ]] || { echo "go-tools.sh: error: no Go toolchain to build $tool (install golang)" >&2; exit 1; }
    echo "setup: building $tool from ${MODULE[$tool]} (first time only; Prometheus takes ~15 minutes)"
    dir=$(dirname "$target")
    mkdir -p "$dir.tmp"
    GOBIN="$dir.tmp" GOFLAGS=-mod=mod "$GO" install "${MODULE[$tool]}"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
done
