# shellcheck shell=bash
# Shared by the cluster tests; sourced, not run.
#
# Environment (set by CTest): GISMO_CLUSTER_BIN, GISMO_MANAGER_BIN,
# CLUSTER_AGENT (the cluster_agent binary), CLUSTER_MODE (auto | fallback | vm).
# In vm mode, VM_CLUSTER_NAME with GISMO_CLUSTER_STATE_ROOT names a cluster
# that is already up (the CTest fixture vm.up): the test runs on it and leaves
# it up. Without them a vm test brings up and takes down a cluster of its own.
#
# Every other test gets its own cluster name, region, subnet, state root and
# work directory, and an EXIT trap that always takes the cluster down.
set -euo pipefail

: "${GISMO_CLUSTER_BIN:?}" "${GISMO_MANAGER_BIN:?}" "${CLUSTER_AGENT:?}"
export GISMO_MANAGER_BIN

T_NAME=""
T_WORK=""
T_REGION=""
T_MODE=""
T_SHARED=0  # 1: the cluster belongs to a fixture; the test leaves it up
R=""  # the last reply of an agent
declare -A AGENT_W=() AGENT_R=() AGENT_PID=()

log() { echo "--- $*"; }
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

gc() { "$GISMO_CLUSTER_BIN" --name "$T_NAME" "$@"; }

now_ms() {
  local t=${EPOCHREALTIME/./}
  echo $((10#$t / 1000))
}

# wait_for SECONDS DESCRIPTION CMD...: polls CMD until it succeeds.
wait_for() {
  local secs=$1 what=$2
  shift 2
  local deadline=$(($(now_ms) + secs * 1000))
  until "$@"; do
    (($(now_ms) < deadline)) || fail "timed out after ${secs}s waiting for: $what"
    sleep 0.05
  done
}

t_cleanup() {
  local rc=$?
  set +e
  local id
  for id in "${!AGENT_W[@]}"; do
    eval "exec ${AGENT_W[$id]}>&- ${AGENT_R[$id]}<&-"
  done
  if ((rc != 0)); then
    echo "=== test failed (rc=$rc); manager log:" >&2
    tail -n 40 "$GISMO_CLUSTER_STATE_ROOT/$T_NAME/manager.log" >&2 2>/dev/null
    for f in "$T_WORK"/*.err; do
      [[ -s $f ]] && { echo "=== $f" >&2; tail -n 20 "$f" >&2; }
    done
    for f in "$GISMO_CLUSTER_STATE_ROOT/$T_NAME"/node*.console; do
      [[ -s $f ]] && { echo "=== $f" >&2; tail -n 10 "$f" >&2; }
    done
  fi
  local down_rc=0
  if ((T_SHARED)); then
    # The agents end on end of input (their fifos closed above) and the
    # shared cluster stays up; one that has not ended in 30 s is killed.
    local deadline=$(($(now_ms) + 30000))
    for id in "${!AGENT_PID[@]}"; do
      while kill -0 "${AGENT_PID[$id]}" 2>/dev/null && (($(now_ms) < deadline)); do sleep 0.05; done
      kill -KILL "${AGENT_PID[$id]}" 2>/dev/null
    done
  else
    gc down >/dev/null
    down_rc=$?
    rm -f "$T_REGION"
  fi
  for id in "${!AGENT_PID[@]}"; do wait "${AGENT_PID[$id]}" 2>/dev/null; done
  rm -rf "$T_WORK"
  if ((down_rc != 0)); then
    echo "FAIL: gismo-cluster down failed" >&2
    ((rc != 0)) || rc=1
  fi
  exit $rc
}

# t_setup SCENARIO [UP_ARGS...]: brings up 4 nodes for this test (or, in vm
# mode with VM_CLUSTER_NAME, uses the fixture's cluster and ignores UP_ARGS).
t_setup() {
  local scenario=$1
  shift
  T_NAME="t-${scenario:0:10}-$$"
  T_WORK=$(mktemp -d "/tmp/gismo-cluster-test.XXXXXX")
  T_REGION="/dev/shm/gismo-${GISMO_TEST_RUN:+$GISMO_TEST_RUN-}cluster-test-$scenario-$$"
  if [[ ${CLUSTER_MODE:-auto} == vm && -n ${VM_CLUSTER_NAME:-} ]]; then
    : "${GISMO_CLUSTER_STATE_ROOT:?VM_CLUSTER_NAME needs GISMO_CLUSTER_STATE_ROOT}"
    export GISMO_CLUSTER_STATE_ROOT
    T_NAME=$VM_CLUSTER_NAME
    T_SHARED=1
    trap t_cleanup EXIT
    gc status >/dev/null || fail "the vm cluster '$T_NAME' of the fixture is not up"
    T_MODE=vm
    log "on the fixture's cluster $T_NAME (vm mode); not passed to up: $*"
    return
  fi
  export GISMO_CLUSTER_STATE_ROOT="$T_WORK/state"
  trap t_cleanup EXIT
  local args=(--nodes 4 --region "$T_REGION" --subnet "10.77.$((($$ % 200) + 20))")
  [[ ${CLUSTER_MODE:-auto} == fallback ]] && args+=(--no-namespaces)
  [[ ${CLUSTER_MODE:-auto} == vm ]] && args+=(--mode vm --vm-binary "$CLUSTER_AGENT")
  log "up: ${args[*]} $*"
  gc up "${args[@]}" "$@" || fail "gismo-cluster up failed"
  T_MODE=fallback
  [[ $(gc status) == *"(netns mode)"* ]] && T_MODE=netns
  [[ $(gc status) == *"(vm mode)"* ]] && T_MODE=vm
  log "cluster $T_NAME is up in $T_MODE mode"
}

# t_node_fenced NODE: called right after NODE was killed, before anything
# expects its clients to be recovered. Killing a node (its PID namespace, or
# its whole virtual machine) is the fence today; if the manager comes to need
# an explicit fence, this is the one place to say it.
t_node_fenced() {
  log "node $1 is fenced: everything it ran is gone with it"
}

# agent_start ID NODE: starts a cluster_agent on NODE, connected.
agent_start() {
  local id=$1 node=$2 w r
  mkfifo "$T_WORK/$id.in" "$T_WORK/$id.out"
  # Read-write opens never block and keep both fifos open while the test runs.
  exec {w}<>"$T_WORK/$id.in" {r}<>"$T_WORK/$id.out"
  (
    for fd in "${AGENT_W[@]}" "${AGENT_R[@]}" "$w" "$r"; do eval "exec $fd>&-"; done
    exec "$GISMO_CLUSTER_BIN" --name "$T_NAME" exec "$node" -- "$CLUSTER_AGENT" \
      <"$T_WORK/$id.in" >"$T_WORK/$id.out" 2>"$T_WORK/$id.err"
  ) &
  AGENT_PID[$id]=$!
  AGENT_W[$id]=$w
  AGENT_R[$id]=$r
  agent_recv "$id" 30 || fail "agent $id on node $node did not start"
  [[ $R == ok* ]] || fail "agent $id on node $node could not connect: $R"
  [[ $(kv node) == "$node" ]] || fail "agent $id reports node $(kv node), expected $node"
  log "agent $id on node $node: $R"
}

agent_send() { echo "$2" >&"${AGENT_W[$1]}"; }

# agent_recv ID SECONDS: reads the next reply into R.
agent_recv() {
  R=""
  read -r -t "$2" -u "${AGENT_R[$1]}" R
}

# agent ID COMMAND [SECONDS]: one request, its reply in R.
agent() {
  agent_send "$1" "$2"
  agent_recv "$1" "${3:-60}" || fail "agent $1 did not answer '$2' in ${3:-60}s"
  echo "    [$1] $2 -> $R"
}

# ok ID COMMAND [SECONDS]: like agent, and the reply must be ok.
ok() {
  agent "$@"
  [[ $R == ok* ]] || fail "agent $1: '$2' failed: $R"
}

# kv KEY: the value of KEY=... in the last reply.
kv() {
  local w
  for w in $R; do
    [[ $w == "$1="* ]] && { echo "${w#*=}"; return 0; }
  done
  fail "no '$1' in reply: $R"
}

expect_kv() {
  local got
  got=$(kv "$1")
  [[ $got == "$2" ]] || fail "${3:-reply}: expected $1=$2, got $1=$got (reply: $R)"
}

# True when the agent's reply to COMMAND has KEY=VALUE (quiet, for wait_for).
reply_has() {
  agent_send "$1" "$2"
  agent_recv "$1" 30 || fail "agent $1 did not answer '$2'"
  [[ " $R " == *" $3 "* ]]
}
