#!/usr/bin/env bash
# gismo-vm-agent serve, run on the host in a network namespace of its own
# (the guests run it the same way, as PID 1): at most --max-handlers connections are
# served at once, the others wait in the listen backlog and are served when
# a handler ends, so a flood of connections costs a bounded number of
# processes. Needs root (unshare); skipped (77) otherwise.
set -euo pipefail
agent=${GISMO_VM_AGENT_BIN:?}

if [[ ${VM_AGENT_TEST_IN_NETNS:-} != 1 ]]; then
  # A PID namespace too: when this script ends, the kernel ends every
  # process it started, handlers included, whatever way it ends.
  unshare_args=(-n -p -f --mount-proc)
  if ((EUID != 0)) || ! unshare "${unshare_args[@]}" true 2>/dev/null; then
    echo "vm_agent_test: skipped: needs root, network and PID namespaces"
    exit 77
  fi
  exec unshare "${unshare_args[@]}" env VM_AGENT_TEST_IN_NETNS=1 bash "$0" "$@"
fi

fail() {
  echo "vm_agent_test: FAIL: $*" >&2
  exit 1
}
ip link set lo up
work=$(mktemp -d /tmp/gismo-vm-agent-test.XXXXXX)
pids=()
cleanup() {
  local p
  # SIGKILL: unshare blocks SIGTERM while it waits for its child.
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/token"
port=7411
exec_agent() { timeout 60 "$agent" exec --port "$port" --token-file "$work/token" -- "$@"; }

# Connections in the accept queue of the agent's listening socket.
queued() { ss -Hltn "sport = :$port" | awk '{print $2}'; }
# wait_until CMD...: CMD succeeds within 20 s.
wait_until() {
  local i
  for ((i = 0; i < 400; i++)); do
    "$@" && return 0
    sleep 0.05
  done
  return 1
}
queued_is() { [[ $(queued) == "$1" ]]; }

# A count out of range is refused, naming the option.
if "$agent" serve --port "$port" --token-file "$work/token" --max-handlers 0 2>"$work/err"; then
  fail "serve --max-handlers 0 was accepted"
fi
grep -q -- "bad --max-handlers" "$work/err" || fail "serve --max-handlers 0 said: $(cat "$work/err")"

# The agent is PID 1 of a PID namespace of its own, as in a guest, where it
# also reaps the orphans of the commands it runs.
mkfifo "$work/ready"
unshare -p -f --kill-child --mount-proc "$agent" serve --port "$port" --token-file "$work/token" \
  --ready-line ready --max-handlers 2 >"$work/ready" &
pids+=($!)
exec 3<"$work/ready"
read -r -t 20 -u 3 line || fail "the agent printed no ready line"
[[ $line == ready ]] || fail "the agent's ready line is '$line'"

# A command that leaves orphans, which the agent reaps: they are no
# handlers, and their ends free no handler's place.
exec_agent sh -c '(true &); (true &); (true &)' || fail "the orphan-making command failed"

# Two handlers busy: each runs `cat`, which echoes a line once it runs. Both
# are started before this shell opens its ends of their pipes, so that
# neither inherits the other's input (which would then never end).
for n in 1 2; do
  mkfifo "$work/in$n" "$work/out$n"
  exec_agent cat <"$work/in$n" >"$work/out$n" &
  pids+=($!)
done
exec 11>"$work/in1" 21<"$work/out1" 12>"$work/in2" 22<"$work/out2"
for n in 1 2; do
  echo "ping$n" >&$((10 + n))
  read -r -t 20 -u $((20 + n)) line || fail "holder $n's command does not run"
  [[ $line == "ping$n" ]] || fail "holder $n echoed '$line'"
done

# Two more connections: the handlers are all busy, so both stay queued.
exec 5<>"/dev/tcp/127.0.0.1/$port" 6<>"/dev/tcp/127.0.0.1/$port"
wait_until queued_is 2 || fail "with both handlers busy, $(queued) connections are queued, not 2"

# One handler ends (its command's input closed): the oldest queued
# connection is taken, the other stays.
exec 11>&-
wait_until queued_is 1 || fail "after a handler ended, $(queued) connections are queued, not 1"

# Closing the rest frees every handler; a command is served again.
exec 5>&- 6>&- 12>&-
out=$(exec_agent echo served) || fail "a command after the flood was not served"
[[ $out == served ]] || fail "the command after the flood printed '$out'"
queued_is 0 || fail "$(queued) connections still queued"
echo "vm_agent_test: ok"
