#!/usr/bin/env bash
# $(node N) is left unquoted on purpose: it is an option and its value, or
# nothing.
# shellcheck disable=SC2046
# One manager per region, across hosts. Managers here skip the same-host
# lock (--skip-host-lock), so only the region's own manager lease stands
# between them, as it would between two hosts.
#  1. A second manager refuses to start while the first beats, and says who.
#  2. The first is frozen past its lease: the second fences it (it runs on
#     this kernel: killed through a pidfd) and only then takes over; a client
#     of the first re-attaches with its reference intact: nobody is
#     recovered, let alone twice.
#  3. Three managers started at once on one region: exactly one serves, the
#     others refuse and say who serves.
#  4. A standby (--standby) waits while the manager serves, takes over once
#     it is frozen past its lease and fenced; a second standby takes over
#     from the first when it stops cleanly, with nothing to fence.
#  5. (coherent regions) A manager frozen right after its claim of the lease,
#     before it published who it is, on this kernel: a newcomer on the same
#     node judges it by the claimer record it wrote before its claim (not by
#     the identity words still there, its predecessor's, gone): after a
#     lease it kills it through its pidfd and takes over, with no operator's
#     word. The same for a manager frozen after it said who it is, before its
#     claim became its epoch. (As root, with unshare) a claimer in another
#     PID namespace cannot be proven stopped: refused after a lease; on the
#     operator's word another takes over, and the thawed claimer gives up
#     without serving or touching the region's record of who serves.
#  6. (as root, with unshare) The first runs in another PID namespace, so the
#     second cannot prove it stopped: it refuses until the operator's word
#     (--previous-manager-fenced); when the frozen first resumes it finds
#     itself superseded and stops at once, without serving.
# TWO_MANAGERS_COHERENCE=non-coherent formats the regions non-coherent: the
# managers are then elected (doc/noncoherent.md 7.4), each on a node of its
# own (--node), and the same steps hold.
# Environment: GISMO_MANAGER_BIN, FAILURE_CLIENT.
set -euo pipefail
: "${GISMO_MANAGER_BIN:?}" "${FAILURE_CLIENT:?}"
work=$(mktemp -d /tmp/gismo-2mgr.XXXXXX)
region=/dev/shm/gismo-${GISMO_TEST_RUN:+$GISMO_TEST_RUN-}2mgr-$$
sock=$work/m.sock
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if ((rc != 0)); then
    for f in "$work"/*.log; do echo "=== $f" >&2; tail -n 30 "$f" >&2; done
  fi
  rm -rf "$work" "$region" "$region-2" "$region-3" "$region-4" "$region-5"
  exit $rc
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
log() { echo "--- $*"; }

# start_manager NAME ARGS...: starts a manager, waits for its ready line or
# its exit; sets MPID. Returns 1 if it exited without becoming ready.
start_manager() {
  local name=$1
  shift
  mkfifo "$work/$name.out"
  "$@" >"$work/$name.out" 2>"$work/$name.log" &
  MPID=$!
  pids+=("$MPID")
  grep -m1 -q "gismo-manager ready" <"$work/$name.out"
}
# spawn NAME CMD...: runs CMD in the background, its stdout into NAME.out and
# its stderr into NAME.log, both created before CMD starts (a reader may
# follow them at once); sets BPID.
spawn() {
  local name=$1
  shift
  : >"$work/$name.out"
  : >"$work/$name.log"
  "$@" >>"$work/$name.out" 2>>"$work/$name.log" &
  BPID=$!
  pids+=("$BPID")
}
# wait_line FILE TEXT: waits (up to 30 s) until FILE has a line with TEXT.
wait_line() { timeout 30 grep -m1 -q "$2" <(tail -n +1 -f "$1"); }
common=(--size 128MiB --skip-host-lock --manager-lease-ms 500 --lease-ms 1000 --log-level info)
nc=0
if [[ ${TWO_MANAGERS_COHERENCE:-coherent} == non-coherent ]]; then
  nc=1
  common+=(--coherence non-coherent)
fi
# node N: the node option of the manager meant to run on node N (distinct
# hosts for the election; the coherent lease ignores it).
node() { if ((nc)); then echo "--node $1"; fi; }

start_manager a "$GISMO_MANAGER_BIN" --region "$region" --listen "unix:$sock" "${common[@]}" $(node 1) ||
  fail "the first manager did not start"
a_pid=$MPID
if ((nc)); then
  grep -q "elected owner of the non-coherent region: node 1" "$work/a.log" ||
    fail "the manager of a non-coherent region was not elected: $(cat "$work/a.log")"
fi

# A client holding a reference.
coproc CLIENT { GISMO_ADDRESS="unix:$sock" exec "$FAILURE_CLIENT" --stdin 2>"$work/client.log"; }
pids+=("$CLIENT_PID")
ask() {
  echo "$1" >&"${CLIENT[1]}"
  IFS= read -r -t 30 R <&"${CLIENT[0]}" || fail "the client did not answer '$1'"
  [[ $R == ok* ]] || fail "'$1' -> $R"
}
IFS= read -r -t 30 R <&"${CLIENT[0]}" || fail "the client did not connect"
ask "put s1 3000"
ask "get s1 0"
ask "stat s1"
[[ $R == *"refs=1"* ]] || fail "want refs=1: $R"

log "1. a second manager while the first beats"
rc=0
start_manager b "$GISMO_MANAGER_BIN" --region "$region" --listen "unix:$work/b.sock" "${common[@]}" $(node 2) ||
  rc=$?
((rc != 0)) || fail "a second manager started while the first was serving"
if wait "$MPID"; then fail "the second manager exited 0"; fi
grep -q "another gismo-manager serves this region" "$work/b.log" ||
  fail "the refusal does not say who holds the region: $(cat "$work/b.log")"
grep -q "its lease is live" "$work/b.log" || fail "the refusal does not say why"

log "2. the first frozen past its lease: fenced, then taken over"
kill -STOP "$a_pid"
start_manager c "$GISMO_MANAGER_BIN" --region "$region" --listen "unix:$sock" "${common[@]}" $(node 3) ||
  fail "the second manager did not take over from a frozen first"
grep -q "killed the frozen previous manager" "$work/c.log" || fail "no fence of the first manager"
rc=0
wait "$a_pid" || rc=$?
((rc == 128 + 9)) || fail "the first manager should have been killed (status 137), got $rc"
# The client re-attaches: its reference and bytes intact, nobody recovered.
ask "check-held s1"
[[ $R == *"hash_ok=1"* ]] || fail "the held object changed: $R"
ask "stat s1"
[[ $R == *"refs=1"* ]] || fail "the client's reference was dropped: $R"
for ((i = 0; i < 300; i++)); do grep -q "re-attached" "$work/c.log" && break; ask "usage"; done
grep -q "re-attached" "$work/c.log" || fail "the client did not re-attach to the new manager"
if grep -q "recovered client" "$work/c.log"; then fail "a live client was recovered"; fi
echo exit >&"${CLIENT[1]}"

log "3. three managers started at once: exactly one serves"
r3=$region-3
start_manager g "$GISMO_MANAGER_BIN" --region "$r3" --listen "unix:$work/g.sock" "${common[@]}" \
  $(node 7) || fail "the manager that formats the third region did not start"
kill -TERM "$MPID"
wait "$MPID" || fail "a clean stop exited non-zero"
racers=()
for n in 8 9 10; do
  spawn "r$n" "$GISMO_MANAGER_BIN" --region "$r3" --listen "unix:$work/r$n.sock" "${common[@]}" \
    $(node "$n")
  racers+=("$BPID")
done
# The losers exit by themselves; the winner serves until stopped.
alive=("${racers[@]}")
for _ in 1 2; do
  ended=
  wait -n -p ended "${alive[@]}" || true
  [[ -n $ended ]] || fail "wait -n named no manager"
  left=()
  for p in "${alive[@]}"; do [[ $p == "$ended" ]] || left+=("$p"); done
  alive=("${left[@]}")
done
left=()
for p in "${alive[@]}"; do kill -0 "$p" 2>/dev/null && left+=("$p"); done
alive=("${left[@]}")
((${#alive[@]} == 1)) || fail "want exactly one manager serving, got ${#alive[@]}"
served=0
for n in 8 9 10; do
  if grep -q "another gismo-manager serves this region\|another gismo-manager took this region" \
    "$work/r$n.log"; then
    continue
  fi
  served=$((served + 1))
  wait_line "$work/r$n.out" "gismo-manager ready" ||
    fail "the manager that won did not become ready: $(cat "$work/r$n.log")"
done
((served == 1)) || fail "want one winner and two refusals, got $served without a refusal"
kill -TERM "${alive[0]}"
wait "${alive[0]}" || fail "the winner's clean stop exited non-zero"

log "4. standbys: one takes over from a frozen manager, the next from a clean stop"
r4=$region-4
start_manager h "$GISMO_MANAGER_BIN" --region "$r4" --listen "unix:$work/h.sock" "${common[@]}" \
  $(node 11) || fail "the manager of the fourth region did not start"
h_pid=$MPID
# start_standby NAME NODE: a standby manager of the fourth region, in the
# background; sets SPID once it says it stands by.
start_standby() {
  spawn "$1" "$GISMO_MANAGER_BIN" --region "$r4" --listen "unix:$work/$1.sock" "${common[@]}" \
    $(node "$2") --standby
  SPID=$BPID
  wait_line "$work/$1.log" "standing by" || fail "standby $1 does not say it stands by"
}
start_standby s 12
s_pid=$SPID
grep -q "gismo-manager ready" "$work/s.out" && fail "the standby became ready while the manager serves"
kill -STOP "$h_pid"
wait_line "$work/s.out" "gismo-manager ready" || fail "the standby did not take over"
grep -q "killed the frozen previous manager" "$work/s.log" || fail "the standby fenced nobody"
rc=0
wait "$h_pid" || rc=$?
((rc == 128 + 9)) || fail "the frozen manager should have been killed (status 137), got $rc"
start_standby t 13
t_pid=$SPID
kill -TERM "$s_pid"
wait "$s_pid" || fail "the first standby's clean stop exited non-zero"
wait_line "$work/t.out" "gismo-manager ready" || fail "the second standby did not take over"
if grep -q "took over the region" "$work/t.log"; then
  fail "a clean stop left something to fence: $(cat "$work/t.log")"
fi
kill -TERM "$t_pid"
wait "$t_pid" || fail "the second standby's clean stop exited non-zero"

log "5. a manager frozen between its claim of the lease and saying who it is"
if ((nc)); then
  log "skipped: a non-coherent region elects its manager; a candidate's line says who it is first"
else
  # Coherent even where the build's default is not (the simulator build).
  r5=$region-5
  start_manager i "$GISMO_MANAGER_BIN" --region "$r5" --listen "unix:$work/i.sock" "${common[@]}" \
    --coherence coherent || fail "the manager that formats the fifth region did not start"
  kill -TERM "$MPID"
  wait "$MPID" || fail "a clean stop exited non-zero"
  # stop_at POINT NAME NODE [WRAPPER...]: a manager NAME of the fifth region,
  # on node NODE (run by WRAPPER, if given), that stops itself at crash point
  # POINT of its lease; returns once it says so, with BPID set.
  stop_at() {
    local point=$1 name=$2 node_id=$3
    shift 3
    spawn "$name" "$@" env GISMO_CRASH_AT="$point" GISMO_CRASH_ACTION=stop \
      "$GISMO_MANAGER_BIN" --region "$r5" --listen "unix:$work/$name.sock" "${common[@]}" \
      --node "$node_id"
    wait_line "$work/$name.log" "stopping at crash point $point" ||
      fail "manager $name did not stop at $point: $(cat "$work/$name.log")"
  }
  # refuses NAME WHAT PATTERN...: a manager NAME of the fifth region must
  # refuse to start (WHAT: what starting would mean), its log matching every
  # PATTERN.
  refuses() {
    local name=$1 what=$2 rc=0 pattern
    shift 2
    start_manager "$name" "$GISMO_MANAGER_BIN" --region "$r5" --listen "unix:$work/$name.sock" \
      "${common[@]}" || rc=$?
    ((rc != 0)) || fail "$what"
    for pattern; do
      grep -q -- "$pattern" "$work/$name.log" ||
        fail "$name's refusal lacks '$pattern': $(cat "$work/$name.log")"
    done
  }
  # killed_and_succeeded POINT NAME NEWCOMER NODE: a manager NAME stopped at
  # POINT on node NODE is, after a lease, killed through its pidfd by
  # NEWCOMER on the same node (where no fence command may run and no
  # operator's word is given), which then serves. The claim is judged by the
  # claimer record NAME wrote before its claim, never by the identity words
  # beside the claim (still i's, gone, at lease.claimed).
  killed_and_succeeded() {
    stop_at "$1" "$2" "$4"
    local frozen=$BPID rc=0
    start_manager "$3" "$GISMO_MANAGER_BIN" --region "$r5" --listen "unix:$work/$3.sock" \
      "${common[@]}" --node "$4" || fail "no take-over from a claimer frozen at $1 on this kernel"
    local newcomer=$MPID
    grep -q "killed the frozen previous manager (pidfd)" "$work/$3.log" ||
      fail "the take-over from $2 does not say it killed it: $(cat "$work/$3.log")"
    wait "$frozen" || rc=$?
    ((rc == 137)) || fail "the claimer frozen at $1 was not killed (exit $rc)"
    grep -q "gismo-manager ready" "$work/$2.out" && fail "the claimer frozen at $1 served"
    kill -TERM "$newcomer"
    wait "$newcomer" || fail "the manager that took over from $2 exited non-zero"
  }
  killed_and_succeeded lease.claimed j k 21
  # n stopped after it said who it is, before its second CAS: its claim still
  # stands, and is judged as a claim, by its claimer record.
  killed_and_succeeded lease.published n o 22
  if ((EUID != 0)) || ! unshare --pid --fork --mount-proc true 2>/dev/null; then
    log "skipped: a claimer in another PID namespace needs root and unshare"
  else
    # A claimer in another PID namespace, as on another host: not the
    # namespace's init (which ignores its own SIGSTOP), so a shell runs it.
    in_namespace=(unshare --pid --fork --mount-proc bash -c '"$@" & wait $!' namespace)
    stop_at lease.claimed p 23 "${in_namespace[@]}"
    p_wrapper=$BPID
    p_shell=$(pgrep -P "$p_wrapper" | head -1 || true)
    p_pid=
    if [[ -n $p_shell ]]; then p_pid=$(pgrep -P "$p_shell" | head -1 || true); fi
    [[ -n $p_pid ]] || fail "cannot find the namespaced claimer"
    pids+=("$p_pid")
    # Refused after a lease, naming the claim: nothing here proves it stopped.
    refuses q "took over from a claimer it cannot prove stopped" \
      "manager claiming the lease on node 23 (pid .*, not yet published)" "cannot be proven stopped"
    # On the operator's word (wrong here: p is frozen, not gone) l takes over;
    # p, thawed, finds its claim taken and gives up without serving.
    start_manager l "$GISMO_MANAGER_BIN" --region "$r5" --listen "unix:$work/l.sock" \
      "${common[@]}" --previous-manager-fenced || fail "no take-over from a claim on the operator's word"
    l_pid=$MPID
    kill -CONT "$p_pid"
    rc=0
    wait "$p_wrapper" || rc=$?
    ((rc != 0)) || fail "the manager whose claim was taken exited 0"
    grep -q "took this region over while this one was claiming it" "$work/p.log" ||
      fail "the manager whose claim was taken did not say why: $(cat "$work/p.log")"
    grep -q "gismo-manager ready" "$work/p.out" && fail "the manager whose claim was taken served"
    kill -0 "$l_pid" 2>/dev/null || fail "the manager that took over stopped: $(cat "$work/l.log")"
    if grep -q "another manager has taken over" "$work/l.log"; then
      fail "the thawed claimer displaced the manager that serves"
    fi
    # The region still names l as its manager: the thawed claimer wrote
    # nothing over l's identity.
    refuses m5 "a manager started beside the one that took over" \
      "another gismo-manager serves this region: .*(pid $l_pid ("
    kill -TERM "$l_pid"
    wait "$l_pid" || fail "the serving manager's clean stop exited non-zero"
  fi
fi

log "6. a manager that cannot be proven stopped, and a superseded manager"
if ((EUID != 0)) || ! unshare --pid --fork --mount-proc true 2>/dev/null; then
  log "skipped: needs root and unshare (a manager in another PID namespace)"
  log PASS
  exit 0
fi
r2=$region-2
start_manager d unshare --pid --fork --mount-proc "$GISMO_MANAGER_BIN" --region "$r2" \
  --listen "unix:$work/d.sock" "${common[@]}" $(node 4) || fail "the namespaced manager did not start"
d_wrapper=$MPID
d_pid=$(pgrep -P "$d_wrapper" | head -1)
[[ -n $d_pid ]] || fail "cannot find the namespaced manager"
kill -STOP "$d_pid"
rc=0
start_manager e "$GISMO_MANAGER_BIN" --region "$r2" --listen "unix:$work/e.sock" "${common[@]}" $(node 5) ||
  rc=$?
((rc != 0)) || fail "took over from a manager it cannot prove stopped"
grep -q "cannot be proven stopped" "$work/e.log" || fail "unclear refusal: $(cat "$work/e.log")"
start_manager f "$GISMO_MANAGER_BIN" --region "$r2" --listen "unix:$work/f.sock" "${common[@]}" \
  $(node 6) --previous-manager-fenced || fail "no take-over on the operator's word"
kill -CONT "$d_pid"
rc=0
wait "$d_wrapper" || rc=$?
((rc == 3)) || fail "the superseded manager should stop with status 3, got $rc"
grep -q "another manager has taken over" "$work/d.log" || fail "the superseded manager did not say why"
log PASS
