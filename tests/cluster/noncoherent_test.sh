#!/usr/bin/env bash
# A non-coherent region (--coherence non-coherent) across emulated nodes: the
# manager on node 0 owns the metadata and applies the requests that clients
# on nodes 1-4 publish on their rings (waking it over TCP when it sleeps);
# gets stay local. An object made on node 1 is read intact on nodes 2 and
# 3; a get on node 3 that waits is woken by the seal on node 1, and a wait
# for a name by its bind; a delete waits for the last holder on another
# node; a subscriber on node 3 sees node 1's seal and delete; a node killed
# while holding a reference and an unsealed object is fenced and recovered
# by the owner. The manager applies requests on three owner threads
# (--owner-threads 3, doc/noncoherent.md 9.3): the agents' slots are served
# by different threads, so the wake-ups of waits, names and subscribers
# come from helper threads too.
# shellcheck source=tests/cluster/lib.sh
source "$(dirname "$0")/lib.sh"
t_setup noncoherent --size 256MiB -- --coherence non-coherent --owner-threads 3

agent_start a1 1
agent_start a2 2
agent_start a3 3

ok a1 usage
expect_kv clients 3 "the owner's helper threads are no clients"

ok a1 "put big $((8 << 20))"
ok a2 "get big 0"
expect_kv found 1
expect_kv hash_ok 1
expect_kv creator 1
ok a3 "get big 0"
expect_kv hash_ok 1
ok a1 "stat big"
expect_kv refs 2 "references of nodes 2 and 3"

# A get that waits on node 3, woken when the owner applies node 1's seal.
ok a1 "create later $((1 << 20))"
ok a3 "get later 0"
expect_kv found 0 "get of an unsealed object"
agent_send a3 "get later 60000"
if agent_recv a3 1; then fail "get returned before the seal: $R"; fi
ok a1 "seal later"
agent_recv a3 30 || fail "the blocked get did not return within 30 s of the seal"
echo "    [a3] get later 60000 -> $R"
expect_kv found 1
expect_kv hash_ok 1

# A delete waits for the last holder, on whichever node.
ok a1 "delete big"
ok a1 "stat big"
expect_kv state 3 "big deleted, still held"
ok a3 "release big"
ok a2 "release big"
gone() { agent a1 "stat big" && [[ $R == "err 3 "* ]]; }
wait_for 20 "the owner to free 'big' after its last release" gone

# A name: node 3 waits for it, node 1 binds it (the owner wakes the wait).
agent_send a3 "waitname cfg - 60000"
if agent_recv a3 1; then fail "waitname returned before the name was bound: $R"; fi
ok a1 "id later"
id_later=$(kv id)
ok a1 "bind cfg later"
agent_recv a3 30 || fail "waitname did not return within 30 s of the bind on node 1"
echo "    [a3] waitname cfg - 60000 -> $R"
expect_kv id "$id_later"
expect_kv version 1
ok a1 "unbind cfg"

# A subscriber on node 3 sees a seal on node 1.
ok a3 "subscribe"
drain() { agent a3 "next 0" && [[ $R == *"event=none"* ]]; }
wait_for 20 "node 3's initial listing to be read" drain
ok a1 "put news 4096"
ok a3 "next 30000"
expect_kv event sealed
expect_kv node 1
ok a1 "delete news"
ok a3 "next 30000"
expect_kv event deleted

# Node 2 dies holding a reference and an unsealed object: fenced, then
# recovered by the owner.
ok a1 "put shared $((2 << 20))"
ok a2 "get shared 10000"
ok a2 "create only2 $((1 << 20))"
ok a1 usage
clients=$(kv clients)
gc kill 2 || fail "gismo-cluster kill 2 failed"
t_node_fenced 2
wait "${AGENT_PID[a2]}" || true
unset "AGENT_PID[a2]"
refs_back() { reply_has a1 "stat shared" "refs=0"; }
wait_for 20 "node 2's reference to 'shared' to be dropped" refs_back
only2_gone() { agent a1 "stat only2" && [[ $R == "err 3 "* ]]; }
wait_for 20 "node 2's unsealed object to be freed" only2_gone
ok a1 usage
expect_kv clients $((clients - 1)) "clients after node 2 died"
expect_kv unsealed 0

ok a3 "verify later"
expect_kv hash_ok 1
ok a3 "release later"
ok a1 "release later"
ok a1 "delete later"
ok a1 "delete shared"
log PASS
