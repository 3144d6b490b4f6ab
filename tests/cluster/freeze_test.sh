#!/usr/bin/env bash
# Node 2 is frozen (SIGSTOP) past its lease: the manager declares its client
# dead and recovers its references; after thaw the client's next call fails
# with GISMO_ERR_CONNECTION and it can connect anew.
# shellcheck source=tests/cluster/lib.sh
source "$(dirname "$0")/lib.sh"
lease_ms=1000
t_setup freeze --size 256MiB --lease-ms "$lease_ms"

agent_start a1 1
agent_start a2 2
ok a1 "put shared $((1 << 20))"
ok a1 usage
used1=$(kv used)
ok a2 "get shared 10000"
ok a2 "create unsealed2 $((4 << 20))"
ok a1 "stat shared"
expect_kv refs 1

t0=$(now_ms)
gc freeze 2 || fail "freeze failed"
recovered() {
  reply_has a1 "stat shared" "refs=0" && reply_has a1 usage "used=$used1" &&
    [[ " $R " == *" unsealed=0 "* ]]
}
wait_for 30 "the lease of node 2's client to expire and its references to be dropped" recovered
elapsed=$(($(now_ms) - t0))
log "recovered $elapsed ms after the freeze (lease $lease_ms ms)"
# Heartbeats go every lease/4, so expiry cannot come before 3/4 of the lease.
((elapsed >= lease_ms * 3 / 4)) || fail "recovered after $elapsed ms, before the lease could expire"

gc thaw 2 || fail "thaw failed"
agent a2 "stat shared"
[[ $R == "err 9 "* ]] || fail "first call after thaw should fail with GISMO_ERR_CONNECTION (9): $R"
ok a2 connect
ok a2 "get shared 10000"
expect_kv hash_ok 1
ok a1 "stat shared"
expect_kv refs 1
log PASS
