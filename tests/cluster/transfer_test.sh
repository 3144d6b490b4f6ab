#!/usr/bin/env bash
# Node 1 creates and seals objects of 1 KiB .. 256 MiB (.. 64 MiB on virtual
# machines, whose emulated CPUs are slow); nodes 2-4 get every one, verify its
# checksum, and see it inside their own mapping at the same region offset the
# creator wrote it at; the pool holds one copy of each.
# shellcheck source=tests/cluster/lib.sh
source "$(dirname "$0")/lib.sh"
t_setup transfer --size 1GiB

sizes=(1024 4096 16384 65536 262144 1048576 4194304 16777216 67108864 268435456 3000017)
[[ $T_MODE == vm ]] && sizes=(1024 4096 65536 1048576 3000017 16777216 67108864)
agent_start p 1
for n in 2 3 4; do agent_start "c$n" "$n"; done

ok p usage
used0=$(kv used)
objects0=$(kv objects)
declare -A hash offset
for s in "${sizes[@]}"; do
  ok p "put obj-$s $s" 120
  hash[$s]=$(kv hash)
  offset[$s]=$(kv offset)
done
ok p usage
used1=$(kv used)
expect_kv objects $((objects0 + ${#sizes[@]})) "after the puts"
((used1 > used0)) || fail "usage did not grow with the puts ($used0 -> $used1)"

for n in 2 3 4; do
  ok "c$n" mapping
  log "node $n maps the region at $(kv base)"
  for s in "${sizes[@]}"; do
    ok "c$n" "get obj-$s 30000" 120
    expect_kv found 1 "node $n get obj-$s"
    expect_kv size "$s" "node $n get obj-$s"
    expect_kv hash_ok 1 "node $n checksum of obj-$s"
    expect_kv hash "${hash[$s]}" "node $n checksum of obj-$s"
    expect_kv in_region 1 "node $n pointer of obj-$s"
    expect_kv offset "${offset[$s]}" "node $n offset of obj-$s (one copy)"
    expect_kv creator 1 "creator node of obj-$s"
  done
done

# While three nodes hold every object: one copy each, three references.
for s in "${sizes[@]}"; do
  ok p "stat obj-$s"
  expect_kv refs 3 "references to obj-$s"
done
for n in 2 3 4; do
  ok "c$n" usage
  expect_kv used "$used1" "pool usage seen from node $n while 3 nodes hold every object"
  expect_kv objects $((objects0 + ${#sizes[@]})) "object count seen from node $n"
done

for n in 2 3 4; do
  for s in "${sizes[@]}"; do ok "c$n" "release obj-$s"; done
done
for s in "${sizes[@]}"; do
  ok p "stat obj-$s"
  expect_kv refs 0 "references to obj-$s after release"
  ok p "delete obj-$s"
done
# The producer's own slabs for small objects stay counted as used while it is
# connected; once it leaves, all memory is back.
ok p disconnect
ok c2 usage
expect_kv used "$used0" "usage after deleting everything"
expect_kv objects "$objects0" "object count after deleting everything"
log PASS
