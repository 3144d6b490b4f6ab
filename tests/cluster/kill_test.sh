#!/usr/bin/env bash
# Node 2 dies (every process SIGKILLed; in vm mode its whole virtual machine,
# kernel included) while its client holds references and an unsealed object:
# the other nodes keep working, its references are dropped, a deferred delete
# completes and all its memory comes back.
# shellcheck source=tests/cluster/lib.sh
source "$(dirname "$0")/lib.sh"
t_setup kill --size 256MiB

agent_start a1 1
agent_start a2 2
agent_start a4 4
ok a1 "put shared $((1 << 20))"
ok a1 usage
used1=$(kv used)
ok a1 "put only2 $((4 << 20))"
ok a2 "get shared 10000"
ok a2 "get only2 10000"
ok a2 "create unsealed2 $((8 << 20))"
ok a4 "get shared 10000"
ok a1 "stat shared"
expect_kv refs 2
ok a1 "delete only2"
ok a1 "stat only2"
expect_kv state 3 "only2 deferred"
ok a1 usage
expect_kv unsealed 1
clients=$(kv clients)

gc kill 2 || fail "gismo-cluster kill 2 failed"
t_node_fenced 2
rc=0
wait "${AGENT_PID[a2]}" || rc=$?
unset "AGENT_PID[a2]"
((rc == 137)) || fail "exec of the agent on node 2 should end by SIGKILL (137), got $rc"
if gc exec 2 -- true 2>"$T_WORK/exec.err"; then fail "exec on a killed node succeeded"; fi
grep -q "down" "$T_WORK/exec.err" || fail "unclear error for exec on a killed node: $(cat "$T_WORK/exec.err")"

stat_refs() { reply_has a1 "stat shared" "refs=$1"; }
wait_for 20 "node 2's reference to 'shared' to be dropped" stat_refs 1
usage_back() { reply_has a1 usage "used=$used1" && [[ " $R " == *" unsealed=0 "* ]]; }
wait_for 20 "node 2's memory to come back (used=$used1, no unsealed object)" usage_back
agent a1 "stat only2"
[[ $R == "err 3 "* ]] || fail "the deferred delete did not complete: $R"
ok a1 usage
expect_kv clients $((clients - 1)) "clients after node 2 died"

# The survivors keep working.
ok a4 "verify shared"
expect_kv hash_ok 1
ok a1 "put after $((2 << 20))"
ok a4 "get after 10000"
expect_kv hash_ok 1
expect_kv creator 1

gc revive 2 || fail "revive failed"
agent_start b2 2
ok b2 "get shared 10000"
expect_kv hash_ok 1

ok b2 "release shared"
ok a4 "release shared"
ok a4 "release after"
ok a1 "delete shared"
ok a1 "delete after"
log PASS
