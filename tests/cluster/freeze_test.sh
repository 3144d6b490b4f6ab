#!/usr/bin/env bash
# Suspected is not dead. Node 2 is frozen (SIGSTOP; in vm mode its whole
# virtual machine) past its lease.
#
# 1. With fencing (the cluster's fence action; in fallback mode the manager's
#    own kernel): the manager suspects node 2's client, fences it (the node is
#    killed: its namespaces, or its virtual machine; or the process), and only
#    then recovers its references. The node is then revived and used again.
# 2. Without any way to fence (--no-fence, --no-local-fence): the suspected
#    client's references and unsealed object stay untouched however long it
#    is frozen; once thawed, its next call fails with GISMO_ERR_CONNECTION and
#    it changes nothing; an operator's `gismo fence` then recovers it.
# shellcheck source=tests/cluster/lib.sh
source "$(dirname "$0")/lib.sh"
lease_ms=1000

# shellcheck source=tests/cluster/holders_lib.sh
source "$(dirname "$0")/holders_lib.sh"

# --- 1: fenced, then recovered ---------------------------------------------
t_setup freeze --size 256MiB --lease-ms "$lease_ms"
setup_holders
t0=$(now_ms)
gc freeze 2 || fail "freeze failed"
wait_for 30 "node 2's client to be suspected, fenced and recovered" recovered
elapsed=$(($(now_ms) - t0))
log "fenced and recovered $elapsed ms after the freeze (lease $lease_ms ms)"
# Heartbeats go every lease/4, so expiry cannot come before 3/4 of the lease.
((elapsed >= lease_ms * 3 / 4)) || fail "recovered after $elapsed ms, before the lease could expire"
# Fencing killed it: it can never resume.
rc=0
wait "${AGENT_PID[a2]}" || rc=$?
unset "AGENT_PID[a2]"
((rc != 0)) || fail "the fenced client on node 2 is still running"
grep -q "is fenced" "$GISMO_CLUSTER_STATE_ROOT/$T_NAME/manager.log" ||
  fail "the manager did not log the fence"
ok a1 "put after $((1 << 16))"
if [[ $T_MODE != fallback ]]; then
  # A fenced node comes back empty and works.
  gc revive 2 || fail "revive of the fenced node 2 failed"
  agent_start b2 2
  ok b2 "get shared 10000"
  expect_kv hash_ok 1
  ok b2 "release shared"
fi
ok a1 "delete shared"
ok a1 "delete after"
log PASS

