#!/usr/bin/env bash
# Subscribers on nodes 2 and 3 first list what was sealed before they
# subscribed (seq 0), then are woken from a blocking wait by a seal on node 1
# and told of a delete on node 4: the same events, in the same order (seq),
# on every node.
# shellcheck source=tests/cluster/lib.sh
source "$(dirname "$0")/lib.sh"
t_setup subscribe --size 256MiB

agent_start p1 1
agent_start s2 2
agent_start s3 3
agent_start p4 4
ok p4 "id before"
id_before=$(kv id)
ok p4 "id news"
id_news=$(kv id)
ok p4 "put before 4096"

# next_matching AGENT EVENT ID: reads notifications until EVENT of ID comes;
# others (objects sealed by earlier tests on a shared cluster) are skipped.
next_matching() {
  local i
  for ((i = 0; i < 64; i++)); do
    ok "$1" "next 30000" 40
    [[ $(kv event) == none ]] && fail "agent $1: no '$2' notification of $3 within 30 s"
    [[ $(kv event) == "$2" && $(kv id) == "$3" ]] && return 0
  done
  fail "agent $1: no '$2' notification of $3 among 64"
}

for s in s2 s3; do
  ok "$s" subscribe
  next_matching "$s" sealed "$id_before"
  expect_kv seq 0 "an object sealed before the subscription is listed with seq 0"
  expect_kv size 4096
  # The rest of the initial listing, so that the next wait blocks.
  for ((i = 0; i < 64; i++)); do
    ok "$s" "next 0"
    [[ $(kv event) == none ]] && break
  done
  [[ $(kv event) == none ]] || fail "agent $s: the initial listing does not end"
done

agent_send s2 "next 60000"
agent_send s3 "next 60000"
# Both must still be waiting a second later: nothing was sealed.
if agent_recv s2 1; then fail "s2's wait returned before any seal: $R"; fi
ok p1 "put news $((1 << 20))"
for s in s2 s3; do
  agent_recv "$s" 30 || fail "the seal on node 1 did not wake the subscriber $s within 30 s"
  echo "    [$s] next 60000 -> $R"
  expect_kv event sealed "the wake-up of $s"
  expect_kv id "$id_news" "the wake-up of $s"
  expect_kv node 1 "the node that sealed, seen by $s"
  expect_kv size $((1 << 20))
done
seal_seq=$(kv seq)
((seal_seq > 0)) || fail "a seal after the subscription has seq 0"
ok s2 "next 0"
[[ $(kv event) == none ]] || fail "a second notification for one seal: $R"

ok p4 "delete news"
for s in s2 s3; do
  next_matching "$s" deleted "$id_news"
  expect_kv node 4 "the node that deleted, seen by $s"
  (($(kv seq) > seal_seq)) || fail "$s: the delete (seq $(kv seq)) is not after the seal ($seal_seq)"
done

ok p4 "delete before"
log PASS
