#!/usr/bin/env bash
# A get on node 3 that starts before node 1 seals returns right after the seal;
# gismo_wait_name on node 3 sees a name changed on node 1 (before the wait:
# at once; during it: woken; unbound: OBJECT_NOT_FOUND; unchanged: timeout).
# Nodes with separate kernels (vm mode) have separate clocks: there the delay
# is measured on this host, from the seal's reply to the get's.
# shellcheck source=tests/cluster/lib.sh
source "$(dirname "$0")/lib.sh"
t_setup blockget --size 256MiB

agent_start a1 1
agent_start a3 3
ok a1 "create later $((16 << 20))"
ok a3 "get later 0"
expect_kv found 0 "get of an unsealed object"

agent_send a3 "get later 60000"
# The get must still be waiting a second later, the object being unsealed.
if agent_recv a3 1; then fail "get returned before the seal: $R"; fi
ok a1 "seal later"
seal_ns=$(kv seal_ns)
host_seal_us=${EPOCHREALTIME/./}
agent_recv a3 30 || fail "the blocked get did not return within 30 s of the seal"
host_return_us=${EPOCHREALTIME/./}
echo "    [a3] get later 60000 -> $R"
expect_kv found 1
expect_kv hash_ok 1
expect_kv creator 1
start_ns=$(kv start_ns)
return_ns=$(kv return_ns)
if [[ $T_MODE == vm ]]; then
  # An upper bound: it includes both replies' way back from the guests.
  latency_us=$((10#$host_return_us - 10#$host_seal_us))
  log "get returned at most $latency_us us after the seal, seen from this host"
else
  ((start_ns < seal_ns)) || fail "the get did not start before the seal"
  latency_us=$(((return_ns - seal_ns) / 1000))
  log "get returned $latency_us us after the seal (blocked $(((return_ns - start_ns) / 1000000)) ms)"
fi
((latency_us < 2000000)) || fail "get returned $latency_us us after the seal"

# A get for an object nobody seals times out with nothing.
ok a3 "get never 300"
expect_kv found 0
(($(kv return_ns) - $(kv start_ns) >= 300000000)) || fail "get with timeout 300 ms returned early"

# gismo_wait_name across nodes: node 3 waits, node 1 changes the name.
ok a1 "put ckptA 4096"
ok a1 "put ckptB 4096"
ok a1 "bind ckpt ckptA"
ok a1 "id ckptB"
idB=$(kv id)
ok a1 "bind ckpt ckptB"
# Changed before the wait began: at once, with the new binding.
ok a3 "waitname ckpt ckptA 60000"
expect_kv id "$idB"
expect_kv version 2
# Unchanged: a timeout.
agent a3 "waitname ckpt ckptB 300"
[[ $R == "err 8 "* ]] || fail "waitname on an unchanged name should time out: $R"
# Woken by a swap on node 1.
agent_send a3 "waitname ckpt ckptB 60000"
if agent_recv a3 1; then fail "waitname returned before the name changed: $R"; fi
ok a1 "swap ckpt ckptB ckptA"
agent_recv a3 30 || fail "waitname did not return within 30 s of the swap on node 1"
echo "    [a3] waitname ckpt ckptB 60000 -> $R"
[[ $R == ok* ]] || fail "waitname failed: $R"
expect_kv version 3
# Ended by an unbind on node 1.
agent_send a3 "waitname ckpt ckptA 60000"
if agent_recv a3 1; then fail "waitname returned before the name changed: $R"; fi
ok a1 "unbind ckpt"
agent_recv a3 30 || fail "waitname did not return within 30 s of the unbind on node 1"
echo "    [a3] waitname ckpt ckptA 60000 -> $R"
[[ $R == "err 3 "* ]] || fail "waitname of an unbound name should give OBJECT_NOT_FOUND: $R"
ok a1 "delete ckptA"
ok a1 "delete ckptB"

ok a3 "release later"
ok a1 "release later"
ok a1 "delete later"
log PASS
