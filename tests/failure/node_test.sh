#!/usr/bin/env bash
# Node death and partition on an emulated cluster (tools/gismo-cluster).
#
# Node 2 dies (every process SIGKILLed at once) while its clients hold
# references, unsealed objects and a pending deferred delete, and while a
# torture worker on it is in the middle of operations. Node 3 is frozen past
# its lease (it cannot be heard: a partition) while it holds a reference and
# an unsealed object; it is recovered only once fenced (the cluster's fence
# action kills it). Must hold after each: the manager recovers them (client
# count), their references are dropped, their unsealed objects aborted, the
# deferred delete completes, sealed objects stay intact, the survivors keep
# working, no lock is left held, the heap is back to what it was, and
# gismo-fsck finds the region sound (online, and offline after the end).
#
# Environment (CTest): GISMO_CLUSTER_BIN, GISMO_MANAGER_BIN, CLUSTER_AGENT
# (failure_client), GISMO_TORTURE_BIN, GISMO_FSCK_BIN (may be empty),
# CLUSTER_MODE (auto | fallback).
# shellcheck source=tests/cluster/lib.sh
source "$(dirname "$0")/../cluster/lib.sh"
: "${GISMO_TORTURE_BIN:?}"
source "$(dirname "$0")/failure_lib.sh"
lease_ms=1000
t_setup fnode --size 256MiB --lease-ms "$lease_ms"
JDIR=$T_WORK/journal
mkdir -p "$JDIR"

agent_start a1 1
agent_start a2 2
agent_start a3 3
ok a1 "put s1 3000"
ok a1 "put s2 300000"
ok a1 "put d1 5000"
ok a1 usage
used_base=$(kv used)

# Node 2: references, unsealed objects (slab and page run), a deferred delete.
ok a2 "get s1 0"
ok a2 "get s2 0"
ok a2 "get d1 0"
ok a2 "create u2 3000"
ok a2 "create u2big 400000"
ok a1 "delete d1"
ok a1 "stat d1"
expect_kv state 3 "d1 is a deferred delete held by node 2"
# Node 3: a reference and an unsealed object.
ok a3 "get s1 0"
ok a3 "create u3 5000"

# Torture workers: one on node 2 (dies with it), one on node 4 (runs on).
start_worker 2 w2 0
start_worker 4 w4 4
wait_for 30 "the workers to get going" journal_has w2 200
wait_for 30 "the workers to get going" journal_has w4 200

ok a1 usage
clients_before=$(kv clients)
log "killing node 2 ($clients_before clients connected)"
gc kill 2 || fail "gismo-cluster kill 2 failed"
rc=0
wait "${AGENT_PID[a2]}" || rc=$?
unset "AGENT_PID[a2]"
((rc == 137)) || fail "the agent on node 2 should end by SIGKILL (137), got $rc"

node2_recovered() {
  reply_has a1 "stat s1" "refs=1" && reply_has a1 "stat s2" "refs=0" &&
    { agent_send a1 "stat d1" && agent_recv a1 30 && [[ $R == "err 3 "* ]]; } &&
    { agent_send a1 "stat u2" && agent_recv a1 30 && [[ $R == "err 3 "* ]]; } &&
    { agent_send a1 "stat u2big" && agent_recv a1 30 && [[ $R == "err 3 "* ]]; }
}
wait_for 20 "node 2's references dropped, unsealed objects aborted, deferred delete done" \
  node2_recovered
ok a1 "verify s1"
expect_kv hash_ok 1
ok a1 "verify s2"
expect_kv hash_ok 1

# Partition: node 3 cannot be heard for longer than its lease.
t0=$(now_ms)
gc freeze 3 || fail "freeze failed"
node3_recovered() {
  reply_has a1 "stat s1" "refs=0" &&
    { agent_send a1 "stat u3" && agent_recv a1 30 && [[ $R == "err 3 "* ]]; }
}
wait_for 30 "node 3's lease to expire and its client to be recovered" node3_recovered
elapsed=$(($(now_ms) - t0))
log "node 3 recovered ${elapsed} ms after the freeze (lease ${lease_ms} ms)"
((elapsed >= lease_ms * 3 / 4)) || fail "recovered after ${elapsed} ms, before the lease expired"

# The worker on node 4 finishes by itself; everything it did must check out.
wait_worker w4
# Recovered only because it was fenced first: node 3's client was killed (by
# the cluster's fence action, or by the manager on its own kernel), so it
# can never resume with stale state.
rc=0
wait "${AGENT_PID[a3]}" || rc=$?
unset "AGENT_PID[a3]"
((rc != 0)) || fail "node 3's fenced client is still running"
# The node comes back (thawed, or revived if the fence took the whole node).
gc thaw 3 >/dev/null 2>&1 || gc revive 3 || fail "node 3 did not come back"
agent_start a3b 3
ok a3b "verify s1"
expect_kv hash_ok 1

# The torture objects: all intact, none lost, nothing unsealed or held; then
# deleted. a1 and a3 stay connected.
torture_check 1 2
ok a1 usage
expect_kv unsealed 0
expect_kv deleting 0
expect_kv used "$used_base" "heap after recovery and cleanup (d1 freed, u2/u2big/u3 aborted)"

# No lock left held: every operation on the same objects and classes works.
ok a3b "put p1 3000"
ok a3b "put p2 400000"
ok a1 "delete p1"
ok a1 "delete p2"
ok a3b "get s2 0"
ok a3b "release s2"

fsck_online
fsck_offline_after_down
log PASS
