#!/usr/bin/env bash
# The node agent (gismo-agent) fences single processes of its node. Node 2
# has an agent; the cluster has no fence action (--no-fence), so without the
# agent nothing on node 2 could be recovered short of an operator.
#  1. A client of node 2 is SIGKILLed: its connection closes, the agent
#     confirms at once that its process is gone, and it is recovered without
#     waiting for the re-attach window.
#  2. Another client of node 2 is frozen past its lease: the manager suspects
#     it, the agent kills it (pidfd) and confirms, and it is recovered; the
#     rest of node 2 (the agent itself) runs on: no node was fenced.
# Namespace mode only: in fallback mode every process shares the manager's
# kernel and PID namespace, and the manager fences them itself.
# shellcheck source=tests/cluster/lib.sh
source "$(dirname "$0")/../cluster/lib.sh"
: "${GISMO_AGENT_BIN:?}"
lease_ms=2000
# AGENT_TEST_COHERENCE=non-coherent formats the region non-coherent (the
# manager's --coherence; the simulator build's default already is).
manager_args=()
[[ -n ${AGENT_TEST_COHERENCE:-} ]] && manager_args=(-- --coherence "$AGENT_TEST_COHERENCE")
t_setup fagent --size 256MiB --lease-ms "$lease_ms" --no-fence "${manager_args[@]}"
if [[ $T_MODE != netns ]]; then
  log "skipped: needs namespace mode (root); in fallback mode the manager fences by itself"
  log PASS
  exit 0
fi
addr=$(gc env 2 | sed -n 's/^GISMO_ADDRESS=//p')
(
  for fd in "${AGENT_W[@]}" "${AGENT_R[@]}"; do eval "exec $fd>&-"; done
  exec "$GISMO_CLUSTER_BIN" --name "$T_NAME" exec 2 -- "$GISMO_AGENT_BIN" --node 2 \
    --manager "$addr" --region "$T_REGION" >"$T_WORK/agent2.out" 2>"$T_WORK/agent2.err"
) &
agent2_pid=$!
agent2_ready() { grep -q "gismo-agent ready" "$T_WORK/agent2.out"; }
wait_for 30 "node 2's agent to be ready" agent2_ready

agent_start a1 1
agent_start a2 2
agent_start a2b 2
ok a1 "put s1 3000"
ok a2 "get s1 0"
ok a2 "create u2 5000"
ok a2b "get s1 0"
ok a1 "stat s1"
expect_kv refs 2

# The host pid of a test client (a descendant of what agent_start spawned).
client_pid() {
  local p=$1 depth c
  for ((depth = 0; depth < 6; depth++)); do
    [[ $(readlink -f "/proc/$p/exe" 2>/dev/null) == "$(readlink -f "$CLUSTER_AGENT")" ]] &&
      echo "$p" && return 0
    c=$(pgrep -P "$p" | head -1)
    [[ -n $c ]] || return 1
    p=$c
  done
  return 1
}
mlog=$T_WORK/state/$T_NAME/manager.log

log "1. a client of node 2 killed"
victim=$(client_pid "${AGENT_PID[a2]}") || fail "cannot find a2's process"
t0=$(now_ms)
kill -KILL "$victim"
a2_recovered() {
  reply_has a1 "stat s1" "refs=1" &&
    { agent_send a1 "stat u2" && agent_recv a1 30 && [[ $R == "err 3 "* ]]; }
}
wait_for 20 "a2 to be recovered through node 2's agent" a2_recovered
log "killed client recovered $(($(now_ms) - t0)) ms after SIGKILL (re-attach window $lease_ms ms)"
grep -q "confirms its process gone" "$mlog" || fail "the agent did not confirm a2's death"

log "2. a client of node 2 frozen past its lease"
frozen=$(client_pid "${AGENT_PID[a2b]}") || fail "cannot find a2b's process"
t0=$(now_ms)
kill -STOP "$frozen"
a2b_recovered() { reply_has a1 "stat s1" "refs=0"; }
wait_for 30 "a2b to be suspected, fenced by node 2's agent and recovered" a2b_recovered
log "frozen client fenced and recovered $(($(now_ms) - t0)) ms after SIGSTOP (lease $lease_ms ms)"
grep -q "asked agent of node 2" "$mlog" || fail "the manager did not ask node 2's agent"
[[ ! -e /proc/$frozen ]] || [[ $(awk '{print $3}' "/proc/$frozen/stat") == Z ]] ||
  fail "the frozen client still runs after its fence"
kill -0 "$agent2_pid" 2>/dev/null || fail "node 2's agent died: the node was fenced, not the process"
if grep -q "node 2 is fenced" "$mlog"; then fail "node 2 was fenced as a whole"; fi
ok a1 usage
expect_kv unsealed 0
# In a non-coherent region each confirmed
# fence first wrote the dead process's lines back from node 2
# (doc/noncoherent.md 7.3), the killed creator's unsealed object among them.
if [[ ${AGENT_TEST_COHERENCE:-} == non-coherent ]] && ! grep -q "non-coherent region" "$mlog"; then
  fail "the region was not formatted non-coherent"
fi
if grep -q "non-coherent region" "$mlog"; then
  grep -q "wrote back client slot .* 1 unsealed objects" "$T_WORK/agent2.err" ||
    fail "node 2's agent confirmed a fence without writing the process's lines back: $(cat "$T_WORK/agent2.err")"
  log "node 2's agent wrote the fenced processes' lines back before confirming"
fi
kill "$agent2_pid" 2>/dev/null || true
log PASS
