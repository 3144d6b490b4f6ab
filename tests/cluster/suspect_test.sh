#!/usr/bin/env bash
# Suspected is not dead. Node 2 is frozen (SIGSTOP) past its lease, and the
# cluster has no way to fence it (--no-fence, and the manager may not kill
# processes of its own kernel: --no-local-fence). The suspected client's
# references and unsealed object stay untouched however long it is frozen;
# once thawed, its next call fails with GISMO_ERR_CONNECTION and it changes
# nothing; an operator's fence (gismo fence --node 2) then recovers it.
# shellcheck source=tests/cluster/lib.sh
source "$(dirname "$0")/lib.sh"
lease_ms=1000
# shellcheck source=tests/cluster/holders_lib.sh
source "$(dirname "$0")/holders_lib.sh"
t_setup freeze2 --size 256MiB --lease-ms "$lease_ms" --no-fence -- --no-local-fence
setup_holders
gc freeze 2 || fail "freeze failed"
suspected() { grep -q "is suspected" "$T_WORK/state/$T_NAME/manager.log"; }
wait_for 30 "node 2's client to be suspected" suspected
# Two more leases: a suspected client is not recovered.
# Two more leases must change nothing (a negative check: no event to wait for).
sleep 2
ok a1 "stat shared"
expect_kv refs 1 "the suspected client's reference is untouched"
ok a1 usage
expect_kv unsealed 1 "the suspected client's unsealed object is untouched"
gc thaw 2 || fail "thaw failed"
agent a2 "stat shared"
[[ $R == "err 9 "* ]] || fail "first call after thaw should fail with GISMO_ERR_CONNECTION (9): $R"
ok a1 "stat shared"
expect_kv refs 1 "still untouched after the thaw: the client is suspected, not fenced"
ok a1 "fence-node 2"
wait_for 10 "node 2's client to be recovered after the operator's fence" recovered
log PASS
