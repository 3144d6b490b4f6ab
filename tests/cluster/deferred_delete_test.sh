#!/usr/bin/env bash
# A sealed object deleted while nodes 2-4 hold it stays readable until the
# last of them releases it; then its memory comes back.
# shellcheck source=tests/cluster/lib.sh
source "$(dirname "$0")/lib.sh"
t_setup ddelete --size 256MiB

agent_start p 1
for n in 2 3 4; do agent_start "c$n" "$n"; done
size=$((8 * 1024 * 1024))
ok p usage
used0=$(kv used)
objects0=$(kv objects)
ok p "put victim $size"
ok p usage
used1=$(kv used)
for n in 2 3 4; do
  ok "c$n" "get victim 10000"
  expect_kv hash_ok 1
done
ok p "stat victim"
expect_kv refs 3

ok p "delete victim"
ok p "contains victim"
expect_kv contains 0 "contains after delete"
ok c3 "contains victim"
expect_kv contains 0 "contains on node 3 after delete"
ok c3 "get victim 0"
expect_kv found 0 "a new get after delete"
ok c3 "release victim"  # the reference of node 3's first get
ok p "stat victim"
expect_kv state 3 "state after delete (deleting)"
expect_kv refs 2
ok p usage
expect_kv used "$used1" "usage while referenced"
expect_kv deleting 1

ok c2 "release victim"
ok p "stat victim"
expect_kv refs 1
ok c4 "verify victim"
expect_kv hash_ok 1 "content of a deleted object still held by node 4"
ok p usage
expect_kv used "$used1" "usage while node 4 holds it"

ok c4 "release victim"
agent p "stat victim"
[[ $R == "err 3 "* ]] || fail "object still exists after its last release: $R"
ok p usage
expect_kv used "$used0" "usage after the last release"
expect_kv objects "$objects0"
log PASS
