#!/usr/bin/env bash
# Everything Ketenmonitor needs on a fresh Debian 12 machine, idempotent and quick when done:
#   1. Debian packages for the real servers the demo and the tests run (Java and Maven for Kafka,
#      Prometheus + Alertmanager, PostgreSQL, Chromium for the HTML report test, docker-compose
#      for validating docker-compose.yml);
#   2. a virtualenv in .venv with the project, its dev tools and the benchmarks' extras (and the
#      benchmark's quixstreams peer in .cache/bench/quixstreams-venv); with
#      KETENMONITOR_COMPILE_CORE=1, the domain core compiled with mypyc (deploy/compile_core.py);
#   3. the Kafka jars, resolved from Maven Central into .cache/kafka/libs;
#   4. Prometheus 3 and Helm, built from the Go module proxy (`go install`, pinned versions) into a
#      per-user tool cache outside the clone, so that a fresh clone on the same machine reuses them
#      (a cold Prometheus build takes ~15 minutes on 2 cores; a warm one is a no-op).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(openjdk-17-jre-headless maven prometheus prometheus-alertmanager postgresql chromium docker-compose)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's packages may start their own services where an init system runs; the project starts its
# own instances on other ports and never relies on those.

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
stamp=.venv/.ketenmonitor-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  echo "setup: installing the project into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".[dev,bench]"
  echo "$want" > "$stamp"
fi
# The per-event domain core compiled with mypyc, opt-in: KETENMONITOR_COMPILE_CORE=1 builds it in
# place (deploy/compile_core.py; a no-op when up to date; needs a C compiler); without the switch
# any compiled modules are removed and the core runs from source (ketenmonitor/core_build.py).
case ${KETENMONITOR_COMPILE_CORE:-0} in
  1) .venv/bin/python deploy/compile_core.py ;;
  0 | "") if compgen -G 'ketenmonitor/domain/*.so' > /dev/null; then
            .venv/bin/python deploy/compile_core.py --clean
          fi ;;
  *) echo "setup: KETENMONITOR_COMPILE_CORE must be 1 (compile the domain core) or 0, not '${KETENMONITOR_COMPILE_CORE}'" >&2
     exit 1 ;;
esac
# The benchmark's quixstreams peer in its own virtualenv (bench/peer.py; a no-op when up to date).
.venv/bin/python -c "from bench.peer import peer_python; peer_python()"

bash deploy/kafka/kafka.sh fetch
bash deploy/go-tools.sh
echo "setup: ready"
