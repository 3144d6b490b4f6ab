#!/usr/bin/env bash
# Manager death under load on an emulated cluster (tools/gismo-cluster).
#
# Node 0 (the manager's host) is SIGKILLed while torture workers on nodes 1
# and 4 are in the middle of operations and agents hold references and
# unsealed objects. While it is down, node 3 dies too, with a reference and
# an unsealed object, and another client deletes an object a reader holds
# and fills the heap with new ones. Then a manager is started again on the
# same region. Must hold (a manager restart recovers nobody who is alive):
#  - live clients keep working while no manager runs (object operations need
#    none), and re-attach to the new manager with their slot, references and
#    unsealed objects intact; the workers go on without reconnecting;
#  - the reader's bytes never change under it; the deferred delete completes
#    only when it releases;
#  - only the client that died while the manager was down is recovered (once
#    the new manager has fenced it): its reference dropped, its unsealed
#    object aborted;
#  - every sealed object is intact; gismo-fsck finds the region sound.
#
# Environment: as node_test.sh.
# shellcheck source=tests/cluster/lib.sh
source "$(dirname "$0")/../cluster/lib.sh"
: "${GISMO_TORTURE_BIN:?}"
source "$(dirname "$0")/failure_lib.sh"
t_setup fmgr --size 256MiB --lease-ms 2000
JDIR=$T_WORK/journal
mkdir -p "$JDIR"

agent_start a1 1
agent_start a2 2
agent_start a3 3
ok a1 "put s1 3000"
ok a1 "put s2 300000"
ok a1 "put victim 200000"
ok a2 "get s1 0"
ok a2 "get victim 0"
ok a2 "create u2 4000"
ok a3 "get s2 0"
ok a3 "create u3 5000"
ok a1 "stat s2"
expect_kv refs 1

start_worker 1 w1 8
start_worker 4 w4 8
wait_for 30 "the workers to get going" journal_has w1 300
wait_for 30 "the workers to get going" journal_has w4 300

log "killing node 0 (the manager) under load"
gc kill 0 || fail "gismo-cluster kill 0 failed"
ok a1 "stat s1"
expect_kv refs 1 "a live client works while no manager runs"
# The reader (a2) holds 'victim': a delete is deferred, and new objects
# cannot take its memory.
ok a1 "delete victim"
ok a1 "put filler1 200000"
ok a1 "put filler2 200000"
ok a2 "check-held victim"
expect_kv hash_ok 1 "the reader's bytes while the manager is down"

gc kill 3 || fail "gismo-cluster kill 3 failed"
wait "${AGENT_PID[a3]}" || true
unset "AGENT_PID[a3]"

t0=$(now_ms)
gc revive 0 || fail "the manager did not come back"
log "manager restarted in $(($(now_ms) - t0)) ms (gismo-cluster revive 0)"

node3_recovered() {
  reply_has a1 "stat s2" "refs=0" &&
    { agent_send a1 "stat u3" && agent_recv a1 30 && [[ $R == "err 3 "* ]]; }
}
wait_for 60 "node 3's client (dead while no manager ran) to be fenced and recovered" node3_recovered
# Node 3's recovery can come first (its process is gone at once); the live
# clients re-attach as their reconnect back-off lets them.
reattached() { grep -q "re-attached" "$T_WORK/state/$T_NAME/manager.log"; }
wait_for 30 "a client to re-attach to the new manager" reattached
# a2 kept everything: its reference, its unsealed object.
ok a1 "stat s1"
expect_kv refs 1 "a2's reference survived the restart"
ok a2 "check-held victim"
expect_kv hash_ok 1 "the reader's bytes after the restart"
ok a2 "seal u2"
ok a2 "release victim"
agent a1 "stat victim"
[[ $R == "err 3 "* ]] || fail "the deferred delete did not complete at the last release: $R"

wait_worker w1
wait_worker w4
torture_check 2 2
ok a2 usage
expect_kv unsealed 0
expect_kv deleting 0

fsck_online
fsck_offline_after_down
log PASS
