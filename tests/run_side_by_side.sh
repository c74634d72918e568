#!/usr/bin/env bash
# The whole suite as two pytest processes side by side (what `make test` runs): the fault
# scenarios (`-m fault`: kill -9, SIGSTOP, broker outages, rescaling, the timed true-numbers run)
# one after another in one, with a few long tests marked `fault_lane` to even out the two, and
# everything else in the other. Most of an integration test's time is
# spent waiting for servers and timeouts, so two processes pay off on two cores, and no two fault
# scenarios ever run at once. Each process starts its own Kafka broker and three-node cluster on
# its own ports. The other tests' output streams live; the fault scenarios' output follows when
# both are done. Exit status: non-zero if either failed. Arguments go to both pytest runs.
set -uo pipefail
cd "$(dirname "$0")/.."
port=${KETENMONITOR_TEST_KAFKA_PORT:-19092}
cluster_port=${KETENMONITOR_TEST_KAFKA_CLUSTER_PORT:-19300}
fault_log=$(mktemp "${TMPDIR:-/tmp}/ketenmonitor-fault-tests.XXXXXX")

KETENMONITOR_TEST_KAFKA_PORT=$((port + 10)) KETENMONITOR_TEST_KAFKA_CLUSTER_PORT=$((cluster_port + 10)) \
  .venv/bin/pytest -m "fault or fault_lane" "$@" >"$fault_log" 2>&1 &
fault_pid=$!
trap 'kill "$fault_pid" 2>/dev/null' INT TERM

echo "== tests without the fault and fault_lane markers (the others run beside them; their output follows)"
KETENMONITOR_TEST_KAFKA_PORT=$port KETENMONITOR_TEST_KAFKA_CLUSTER_PORT=$cluster_port \
  .venv/bin/pytest -m "not fault and not fault_lane" "$@"
rest=$?
wait "$fault_pid"
fault=$?
echo
echo "== the fault scenarios and the fault_lane tests (pytest -m \"fault or fault_lane\")"
cat "$fault_log"
rm -f "$fault_log"
echo "== the rest: exit $rest; fault scenarios and fault_lane: exit $fault"
[[ $rest -eq 0 && $fault -eq 0 ]]
