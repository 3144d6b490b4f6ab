#!/usr/bin/env bash
# The fail-over demo (examples/failover/run.sh), small: node 1 is killed in
# the middle of its third checkpoint; the standby on node 2 must take over
# only once node 1 is fenced (the manager deletes the active's owned token
# in its recovery), resume from the second checkpoint, and the merged output
# must equal a run without failure; afterwards nothing may be left in the
# store. The demo checks all of this (and that the take-over came after the
# manager fenced node 1) and exits 1 otherwise; this test also checks what it
# printed, including that the standby on node 2 followed checkpoints 1 and 2
# through gismo_wait_name.
set -euo pipefail
: "${GISMO_CLUSTER_BIN:?}" "${GISMO_FAILOVER_BIN:?}" "${GISMO_CLI_BIN:?}" "${GISMO_MANAGER_BIN:?}"
export GISMO_MANAGER_BIN
[[ ${CLUSTER_MODE:-auto} == fallback ]] && export GISMO_CLUSTER_NO_NAMESPACES=1
out=$(mktemp /tmp/gismo-failover-test.XXXXXX)
trap 'rm -f "$out"' EXIT
# Values past their range are refused, not wrapped (a chunk of 2^44 MiB
# was 0 bytes, then a division by zero; port 70000 was 4464).
for bad in "--chunk-mib 17592186044416" "--symbols 4294967297" "--port 70000" "--events -1"; do
  # shellcheck disable=SC2086 # the option and its value, split on purpose
  if "$GISMO_FAILOVER_BIN" active $bad >"$out" 2>&1; then
    echo "FAIL: gismo_failover active $bad was accepted" >&2
    exit 1
  fi
  grep -Eq "is at most|needs a number" "$out" || { echo "FAIL: $bad: $(cat "$out")" >&2; exit 1; }
done
rc=0
bash "$(dirname "$0")/../../examples/failover/run.sh" --events 600000 --every 100000 \
  --symbols 256 --history 256 --window 5000 --hang 3 --chunk-mib 1 --size 256MiB >"$out" 2>&1 || rc=$?
cat "$out"
((rc == 0)) || { echo "FAIL: the demo exited with $rc" >&2; exit 1; }
grep -q "^output identical: yes " "$out" || { echo "FAIL: output differs" >&2; exit 1; }
grep -q "restored generation 2 at offset 200000;" "$out" ||
  { echo "FAIL: the standby did not resume from checkpoint 2" >&2; exit 1; }
grep -q "that node 2 saw through gismo_wait_name: 2$" "$out" ||
  { echo "FAIL: the standby did not follow checkpoints 1 and 2 with wait_name" >&2; exit 1; }
grep -q "^left in the store after removing the set: 0 objects, 0 names$" "$out" ||
  { echo "FAIL: something leaked" >&2; exit 1; }
echo PASS
