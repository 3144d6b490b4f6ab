#!/usr/bin/env bash
# Manager death under load on an emulated cluster (tools/gismo-cluster).
#
# Node 0 (the manager's host) is SIGKILLed while torture workers on nodes 1
# and 4 are in the middle of operations and agents hold references and
# unsealed objects. While it is down, node 3 dies too, with a reference and
# an unsealed object. Then a manager is started again on the same region.
# Must hold:
#  - live clients get GISMO_ERR_CONNECTION, and connecting again works
#    (the workers do it by themselves and go on);
#  - every sealed object is still there and intact;
#  - the previous sessions of live clients and the clients that died while
#    the manager was down are recovered: their references dropped, their
#    unsealed objects aborted;
#  - gismo-fsck finds the region sound, online and offline.
#
# Environment: as node_test.sh.
# shellcheck source=tests/cluster/lib.sh
source "$(dirname "$0")/../cluster/lib.sh"
: "${GISMO_TORTURE_BIN:?}"
source "$(dirname "$0")/failure_lib.sh"
t_setup fmgr --size 256MiB
JDIR=$T_WORK/journal
mkdir -p "$JDIR"
# In fallback mode the restarted manager listens on a new port: workers on
# node N read their address from here each time they connect.
ADDRESS_FILE=$T_WORK/address
gc env 1 | sed -n 's/^GISMO_ADDRESS=//p' >"$ADDRESS_FILE"

agent_start a1 1
agent_start a2 2
agent_start a3 3
ok a1 "put s1 3000"
ok a1 "put s2 300000"
ok a2 "get s1 0"
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
ok a2 "wait-lost 10"
ok a1 "wait-lost 10"
agent a1 "stat s1"
[[ $R == "err 9 "* ]] || fail "a live client's call after the manager died: want GISMO_ERR_CONNECTION: $R"

# A client dies while there is no manager to notice.
gc kill 3 || fail "gismo-cluster kill 3 failed"
wait "${AGENT_PID[a3]}" || true
unset "AGENT_PID[a3]"

t0=$(now_ms)
gc revive 0 || fail "the manager did not come back"
log "manager restarted in $(($(now_ms) - t0)) ms (gismo-cluster revive 0)"
gc env 1 | sed -n 's/^GISMO_ADDRESS=//p' >"$ADDRESS_FILE"
addr=$(cat "$ADDRESS_FILE")

ok a2 "connect $addr"
ok a2 "verify s1"
expect_kv hash_ok 1
ok a2 "verify s2"
expect_kv hash_ok 1
# Node 3's reference and a2's previous session's reference are dropped, their
# unsealed objects aborted: at once, when the manager starts.
ok a2 "stat s1"
expect_kv refs 0 "s1 after the restart (a2's old session recovered)"
ok a2 "stat s2"
expect_kv refs 0 "s2 after the restart (node 3's client, dead while the manager was down)"
agent a2 "stat u2"
[[ $R == "err 3 "* ]] || fail "a2's unsealed object from before the restart is still there: $R"
agent a2 "stat u3"
[[ $R == "err 3 "* ]] || fail "node 3's unsealed object is still there: $R"

# The workers reconnect by themselves and finish; then their objects check out.
wait_worker w1
wait_worker w4
grep -q . "$T_WORK/w1.out" || fail "worker w1 printed nothing"
reconnects=$(($(grep -c '^client' "$T_WORK/w1.out") - 1 + $(grep -c '^client' "$T_WORK/w4.out") - 1))
((reconnects >= 2)) || fail "the workers should each have connected again after the restart"
log "workers connected again $reconnects time(s) in all"
torture_check 2 1
ok a2 usage
expect_kv unsealed 0
expect_kv deleting 0

fsck_online
fsck_offline_after_down
log PASS
