#!/usr/bin/env bash
# Read-modify-writes on the region are atomic across nodes: nodes 0-4 (in vm
# mode node 0 is this host, the others guests) increment one shared word at
# the same time and no increment is lost. Every lock and counter of the store's metadata relies on this. On
# virtual machines it holds only because qemu translates the guests' locked
# instructions into host atomics (gismo-cluster gives each guest maxcpus=2
# for that: with one possible CPU, TCG may emulate them non-atomically, and
# this test loses increments).
# shellcheck source=tests/cluster/lib.sh
source "$(dirname "$0")/lib.sh"
t_setup atomics --size 256MiB

per_node=200000
nodes=(0 1 2 3 4)
agent_start p 1
ok p "put counter 4096"
for n in "${nodes[@]}"; do
  agent_start "h$n" "$n"
  ok "h$n" "get counter 10000"
done
ok h0 "hammer counter 0 zero"
for n in "${nodes[@]}"; do agent_send "h$n" "hammer counter $per_node"; done
for n in "${nodes[@]}"; do
  agent_recv "h$n" 120 || fail "node $n did not finish its increments in 120 s"
  [[ $R == ok* ]] || fail "node $n: $R"
done
ok h1 "hammer counter 0"
expect_kv value $((${#nodes[@]} * per_node)) "the shared word after every node's increments"
log "${#nodes[@]} nodes x $per_node concurrent increments: none lost"

for n in "${nodes[@]}"; do ok "h$n" "release counter"; done
ok p "delete counter"
log PASS
