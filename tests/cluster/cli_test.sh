#!/usr/bin/env bash
# The gismo-cluster command line: help, bad input, exec environment and exit
# status, node isolation, status, kill/revive, freeze/thaw, idempotent down.
# With CLUSTER_MODE=vm the nodes are virtual machines: also separate kernels,
# and a region that is a PCI BAR (read() fails, mmap works).
# shellcheck source=tests/cluster/lib.sh
source "$(dirname "$0")/lib.sh"

# expect_rc RC CMD...: CMD exits with RC; its stderr is in $T_WORK/err.
expect_rc() {
  local want=$1 rc=0
  shift
  "$@" >"$T_WORK/out" 2>"$T_WORK/err" || rc=$?
  ((rc == want)) || fail "'$*' exited $rc, expected $want; stderr: $(cat "$T_WORK/err")"
}
expect_err() { grep -qi -- "$1" "$T_WORK/err" || fail "stderr lacks '$1': $(cat "$T_WORK/err")"; }

T_NAME="t-cli-$$"
T_WORK=$(mktemp -d "/tmp/gismo-cluster-test.XXXXXX")
T_REGION="/dev/shm/gismo-${GISMO_TEST_RUN:+$GISMO_TEST_RUN-}cluster-test-cli-$$"
export GISMO_CLUSTER_STATE_ROOT="$T_WORK/state"
trap t_cleanup EXIT

expect_rc 0 "$GISMO_CLUSTER_BIN" --help
grep -q "Usage: gismo-cluster" "$T_WORK/out" || fail "--help prints no usage"
expect_rc 2 "$GISMO_CLUSTER_BIN"
expect_rc 2 "$GISMO_CLUSTER_BIN" frobnicate
expect_err "unknown verb"
expect_rc 2 "$GISMO_CLUSTER_BIN" --name 'bad name!' status
expect_err "invalid cluster name"
# The name from the environment is checked too: down of '../victim' would
# remove a directory beside the state root.
mkdir -p "$T_WORK/victim"
expect_rc 2 env GISMO_CLUSTER_NAME=../victim "$GISMO_CLUSTER_BIN" down
expect_err "invalid cluster name '../victim' in \$GISMO_CLUSTER_NAME"
[[ -d $T_WORK/victim ]] || fail "down of the cluster '../victim' removed a directory"
# --name overrides it (the variable is only its default), and --help works.
expect_rc 0 env GISMO_CLUSTER_NAME=../victim "$GISMO_CLUSTER_BIN" --name "$T_NAME" down
expect_rc 0 env GISMO_CLUSTER_NAME=../victim "$GISMO_CLUSTER_BIN" --help
expect_rc 1 gc status
expect_err "is not up"
expect_rc 1 gc exec 1 -- true
expect_err "is not up"
expect_rc 1 gc kill 1
expect_rc 0 gc down
grep -q "nothing to remove" "$T_WORK/out" || fail "down of a cluster that is not up"
expect_rc 2 gc up --nodes 0 --region "$T_REGION" --size 64MiB
expect_rc 2 gc up --nodes 3 --size 64MiB
expect_err "--region is required"
expect_rc 2 gc up --nodes 3 --region "$T_REGION" --size 64MiB --bogus
[[ ! -e $T_REGION ]] || fail "a failed up left the region behind"

mode_args=()
nodes=3
[[ ${CLUSTER_MODE:-auto} == fallback ]] && mode_args=(--no-namespaces)
# Two guests show all there is to show, and boot faster than three.
[[ ${CLUSTER_MODE:-auto} == vm ]] && mode_args=(--mode vm) && nodes=2
expect_rc 2 gc up --nodes 3 --region "$T_REGION" --size 64MiB --mode kvm
expect_err "--mode must be"
expect_rc 2 gc up --nodes 3 --region "$T_REGION" --size 64MiB --vm-binary /bin/true
expect_err "needs --mode vm"
expect_rc 0 gc up --nodes "$nodes" --region "$T_REGION" --size 64MiB --subnet "10.77.$((($$ % 200) + 20))" \
  "${mode_args[@]}"
T_MODE=fallback
[[ $(gc status) == *"(netns mode)"* ]] && T_MODE=netns
[[ $(gc status) == *"(vm mode)"* ]] && T_MODE=vm
log "mode $T_MODE: $(grep "up" "$T_WORK/out")"
[[ ${CLUSTER_MODE:-auto} != vm || $T_MODE == vm ]] || fail "expected the vm mode"
if [[ ${CLUSTER_MODE:-auto} == fallback || $EUID != 0 ]]; then
  [[ $T_MODE == fallback ]] || fail "expected the fallback mode"
  grep -q "falling back" "$T_WORK/err" || fail "the fallback is not announced on stderr"
fi
[[ -e $T_REGION ]] || fail "up did not create the region"
expect_rc 1 gc up --nodes 3 --region "$T_REGION" --size 64MiB
expect_err "already up"

expect_rc 0 gc status
for ((n = 0; n <= nodes; n++)); do
  grep -q "^node $n " "$T_WORK/out" || fail "status lacks node $n"
done
grep -q "(running)" "$T_WORK/out" || fail "status does not show a running manager"

expect_rc 1 gc exec $((nodes + 1)) -- true
expect_err "no node $((nodes + 1))"
expect_rc 2 gc exec x -- true
# Beyond 64 bits a node number would wrap (2^64 + 1 was node 1).
expect_rc 2 gc exec 18446744073709551617 -- true
expect_err "node must be a number"
expect_rc 2 gc exec 1
expect_rc 7 gc exec 1 -- sh -c 'exit 7'
expect_rc 127 gc exec 1 -- /nonexistent/program
# shellcheck disable=SC2016  # expanded on the node
node_env() { gc exec "$1" -- sh -c "echo \"\$$2\""; }
[[ $(node_env 1 GISMO_NODE) == 1 ]] || fail "GISMO_NODE on node 1"
[[ $(node_env 2 GISMO_ADDRESS) == tcp:* ]] || fail "GISMO_ADDRESS on node 2 is not TCP"
[[ $(node_env 0 GISMO_ADDRESS) == unix:* ]] || fail "GISMO_ADDRESS on node 0 is not Unix"
echo hello | gc exec 1 -- cat >"$T_WORK/out"
[[ $(cat "$T_WORK/out") == hello ]] || fail "exec does not pass stdin through"
# A command that does not read its stdin while input keeps coming, and
# writes more than a pipe holds: neither side may wait for the other (the
# guest side of a virtual machine waited to write the input, the command
# to write its output).
head -c 4000000 /dev/zero >"$T_WORK/in"
gc exec 1 -- sh -c 'head -c 3000000 /dev/zero' <"$T_WORK/in" >"$T_WORK/out"
[[ $(stat -c %s "$T_WORK/out") == 3000000 ]] ||
  fail "exec of a command that leaves its stdin unread: $(stat -c %s "$T_WORK/out") bytes out"
rm -f "$T_WORK/in" "$T_WORK/out"
gc exec 1 -- sh -c 'echo to-stderr >&2' 2>"$T_WORK/err" >"$T_WORK/out"
[[ $(cat "$T_WORK/err") == to-stderr && ! -s $T_WORK/out ]] || fail "exec mixes up stdout and stderr"

# A long-running process on node 1, found by marker in its command line. On
# a virtual machine, the process that stands for the node here is its qemu.
marker="gismo-cluster-test-marker-$$"
if [[ $T_MODE == vm ]]; then
  gc exec 1 -- sh -c "sleep 1000 # $marker" </dev/null >/dev/null 2>&1 &
  sleeper_exec=$!
  marker_pid() { gc exec 1 -- ps -o args | grep -q "[s]leep 1000"; }
  wait_for 30 "the marker process on node 1" marker_pid
  mpid=$(gc status | sed -n 's/^node 1 .* vm pid \([0-9]*\).*/\1/p')
  [[ -n $mpid ]] || fail "status shows no qemu pid for node 1: $(gc status)"
else
  gc exec 1 -- bash -c "exec -a $marker sleep 1000" </dev/null >/dev/null 2>&1 &
  sleeper_exec=$!
  marker_pid() { pgrep -f "^$marker" >/dev/null; }
  wait_for 10 "the marker process on node 1" marker_pid
  mpid=$(pgrep -f "^$marker")
fi

if [[ $T_MODE == netns ]]; then
  addr=$(gc exec 1 -- ip -4 -o addr show dev eth0)
  [[ $addr == *"10.77.$((($$ % 200) + 20)).2/24"* ]] || fail "node 1's address: $addr"
  [[ $(gc exec 2 -- hostname) == "$T_NAME-n2" ]] || fail "node 2's hostname"
  [[ $(gc exec 2 -- ps -e -o args) != *"$marker"* ]] || fail "node 2 sees node 1's processes"
  [[ $(gc exec 1 -- ps -e -o args) == *"$marker"* ]] || fail "node 1 does not see its own process"
  [[ $(gc exec 2 -- sh -c 'echo $$') -lt 100 ]] || fail "node 2 has no PID namespace of its own"
fi
if [[ $T_MODE == vm ]]; then
  [[ $(gc exec 2 -- hostname) == "$T_NAME-n2" ]] || fail "node 2's hostname"
  [[ $(gc exec 2 -- ps -o args) != *"sleep 1000"* ]] || fail "node 2 sees node 1's processes"
  # Each guest runs a kernel of its own.
  boot1=$(gc exec 1 -- cat /proc/sys/kernel/random/boot_id)
  boot2=$(gc exec 2 -- cat /proc/sys/kernel/random/boot_id)
  [[ -n $boot1 && $boot1 != "$boot2" && $boot1 != $(cat /proc/sys/kernel/random/boot_id) ]] ||
    fail "nodes 1, 2 and this host do not run separate kernels"
  # The region in a guest is BAR 2 of the ivshmem device: read() fails on
  # it, mmap works, and the clients use mmap only.
  region=$(gc env 1 | sed -n 's/^GISMO_REGION=//p')
  [[ $region == /sys/bus/pci/devices/*/resource2 ]] || fail "node 1's region is not a PCI BAR: $region"
  [[ $(gc exec 1 -- cat "${region%/resource2}/vendor" "${region%/resource2}/device" | tr '\n' ' ') == \
    "0x1af4 0x1110 " ]] || fail "$region is not the BAR of an ivshmem device"
  expect_rc 1 gc exec 1 -- dd if="$region" of=/dev/null bs=4096 count=1
  expect_err "Input/output error"
  expect_rc 0 gc exec 1 -- gismo status
  grep -q "region:" "$T_WORK/out" || fail "gismo status on node 1: $(cat "$T_WORK/out")"
  expect_rc 0 gc exec 2 -- gismo fsck
fi

expect_rc 0 gc freeze 1
[[ $(awk '{print $3}' "/proc/$mpid/stat") == T ]] || fail "freeze did not stop node 1's process"
if [[ $T_MODE == vm ]]; then
  # The whole guest stands still: its agent does not answer.
  if timeout 2 "$GISMO_CLUSTER_BIN" --name "$T_NAME" exec 1 -- true 2>/dev/null; then
    fail "a frozen guest ran a command"
  fi
fi
grep -q "^node 1 .* frozen" <<<"$(gc status)" || fail "status does not show node 1 frozen"
expect_rc 0 gc thaw 1
[[ $(awk '{print $3}' "/proc/$mpid/stat") != T ]] || fail "thaw did not continue node 1's process"

expect_rc 0 gc kill 1
# Dead: gone, or a zombie its parent has not reaped yet.
[[ ! -e /proc/$mpid || $(awk '{print $3}' "/proc/$mpid/stat" 2>/dev/null) == Z ]] ||
  fail "node 1's process survived kill"
rc=0
wait "$sleeper_exec" || rc=$?
((rc == 137)) || fail "exec of a killed process returned $rc, expected 137"
expect_rc 1 gc exec 1 -- true
expect_err "down"
expect_rc 1 gc kill 1
[[ $(node_env 2 GISMO_NODE) == 2 ]] || fail "node 2 after node 1 died"
# Booting a guest again takes emulated seconds; vm.freeze and vm.kill do it.
if [[ $T_MODE != vm ]]; then
  expect_rc 0 gc revive 1
  expect_rc 0 gc exec 1 -- true
fi

if [[ $T_MODE == vm ]]; then
  # A manager inside a guest formats the region through its BAR. The BAR's
  # file takes ftruncate and ignores it, so the format must zero the metadata
  # itself: stale bytes are written over it first (the host's manager
  # stopped), and the guest's fsck must find a sound region.
  expect_rc 0 gc kill 0
  dd if=/dev/urandom of="$T_REGION" bs=1M count=4 conv=notrunc status=none
  # Bounded: a format over stale bytes can leave a manager or fsck spinning.
  # shellcheck disable=SC2016  # expanded in the guest
  expect_rc 0 timeout 150 "$GISMO_CLUSTER_BIN" --name "$T_NAME" exec 2 -- sh -c '
    gismo-manager --region "$GISMO_REGION" --format --size 64MiB --listen unix:/run/m.sock \
      >/run/m.out 2>&1 &
    m=$!
    i=0
    until grep -q "gismo-manager ready" /run/m.out; do
      i=$((i + 1))
      [ "$i" -lt 600 ] && kill -0 "$m" || { cat /run/m.out >&2; exit 3; }
      usleep 100000
    done
    timeout 60 gismo fsck --address unix:/run/m.sock -q
    rc=$?
    kill -KILL "$m"
    exit "$rc"'
  expect_rc 0 gc revive 0
  expect_rc 0 gc exec 2 -- gismo fsck
fi

expect_rc 0 gc down
grep -q "down" "$T_WORK/out" || fail "down says nothing"
[[ ! -e $T_REGION ]] || fail "down did not remove the region it created"
[[ ! -d $GISMO_CLUSTER_STATE_ROOT/$T_NAME ]] || fail "down left the state directory"
[[ $(ip netns list 2>/dev/null) != *"gismo-$T_NAME-"* ]] || fail "down left namespaces"
! pgrep -f "^$marker" >/dev/null || fail "down left a process"
! pgrep -f "gismo-$T_NAME-n" >/dev/null || fail "down left a virtual machine"
expect_rc 0 gc down
grep -q "nothing to remove" "$T_WORK/out" || fail "second down"
log PASS
