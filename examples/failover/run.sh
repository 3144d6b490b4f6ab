#!/usr/bin/env bash
# The fail-over demo of gismo (issue #19), on an emulated cluster of 3 nodes
# (node 0 runs the manager):
#   1. a run without failure of the stream job on node 3 gives the reference
#      output (its checkpoint set is then removed);
#   2. the active job on node 1 keeps per-symbol windowed aggregates over a
#      deterministic trade stream and checkpoints every K events; a standby on
#      node 2 follows the checkpoints (gismo_wait_name) and watches the
#      active's owned token;
#   3. node 1 is killed in the middle of a checkpoint (gismo-cluster kill 1);
#      the manager fences it (the cluster's fence command) and recovers its
#      client, which deletes the token: the standby learns of it, restores the
#      newest published checkpoint by pointer and resumes at its offset;
#   4. the outputs of the two nodes, merged by window, must equal the
#      reference; the same state is then restored three ways for comparison:
#      from gismo by pointer, from a local file, and over TCP from node 3;
#   5. the set is removed and the store must hold no object and no name.
# Prints a table; exits 1 if the output differs or anything leaked.
#
# Usage: examples/failover/run.sh [--events N] [--every K] [--symbols S]
#          [--history H] [--window W] [--hang G] [--lease-ms MS] [--size SIZE]
#          [--chunk-mib C]
# Default: 20 M events, a checkpoint every 2 M, 2048 symbols with 2048
# windows of history (128 MiB of state), window 50 000 events, node 1 killed
# in checkpoint 5, lease 1000 ms, chunks of 16 MiB. Finds its programs in $GISMO_BUILD_DIR
# (default: build/); GISMO_CLUSTER_BIN, GISMO_FAILOVER_BIN and GISMO_CLI_BIN
# override. Namespaces need root (else nodes are plain processes); as root
# the region is on hugetlbfs, prefaulted (scripts/lib/hugepages.sh;
# GISMO_HUGEPAGES=0: /dev/shm). Times are taken on this host's clock, which
# every emulated node shares.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=scripts/lib/hugepages.sh
source "$repo/scripts/lib/hugepages.sh"
build=${GISMO_BUILD_DIR:-$repo/build}
events=20000000 every=2000000 symbols=2048 history=2048 window=50000 hang=5
lease_ms=1000 size=1GiB chunk_mib=16
while (($#)); do
  [[ $# -ge 2 ]] || { echo "usage: see the head of $0" >&2; exit 2; }
  case $1 in
    --events) events=$2 ;;
    --every) every=$2 ;;
    --symbols) symbols=$2 ;;
    --history) history=$2 ;;
    --window) window=$2 ;;
    --hang) hang=$2 ;;
    --lease-ms) lease_ms=$2 ;;
    --size) size=$2 ;;
    --chunk-mib) chunk_mib=$2 ;;
    *) echo "unknown option $1 (see the head of $0)" >&2; exit 2 ;;
  esac
  shift 2
done
for v in "$events" "$every" "$symbols" "$history" "$window" "$hang" "$lease_ms" "$chunk_mib"; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "options take positive numbers, got '$v'" >&2; exit 2; }
done
((hang * every < events)) || { echo "--hang G needs G * every < events" >&2; exit 2; }

find_program() {  # ENV_VALUE BUILD_PATH NAME
  local c
  for c in "$1" "$2" "$(command -v "$3" 2>/dev/null || true)"; do
    [[ -n $c && -x $c ]] && { echo "$c"; return; }
  done
  echo "failover: cannot find $3; build gismo (GISMO_BUILD_DIR=$build) or set the path" >&2
  exit 1
}
gc_bin=$(find_program "${GISMO_CLUSTER_BIN:-}" "$build/tools/gismo-cluster/gismo-cluster" gismo-cluster)
job_bin=$(find_program "${GISMO_FAILOVER_BIN:-}" "$build/examples/failover/gismo_failover" gismo_failover)
cli_bin=$(find_program "${GISMO_CLI_BIN:-}" "$build/tools/gismo/gismo" gismo)

name="failover-$$"
region="/dev/shm/gismo-failover-$$"
work=$(mktemp -d /tmp/gismo-failover.XXXXXX)
export GISMO_CLUSTER_STATE_ROOT=${GISMO_CLUSTER_STATE_ROOT:-$work/state}
gc() { "$gc_bin" --name "$name" "$@"; }
pids=()
cleanup() {
  local rc=$?
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  if ((rc != 0)); then
    for f in "$work"/*.log; do [[ -s $f ]] && { echo "=== $f" >&2; tail -n 20 "$f" >&2; }; done
    echo "=== manager log" >&2
    tail -n 30 "$GISMO_CLUSTER_STATE_ROOT/$name/manager.log" >&2 2>/dev/null
  fi
  gc down >/dev/null || rc=1
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  rm -f "$region"
  hugepages_release || rc=1
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
die() {
  echo "failover: $*" >&2
  exit 1
}
now_ns() { date +%s%N; }
# await SECONDS FILE PATTERN: until FILE has a line matching PATTERN (the
# processes print ready lines; this reads them, bounded).
await() {
  local deadline=$(($(date +%s) + $1))
  until grep -q -- "$3" "$2" 2>/dev/null; do
    (($(date +%s) < deadline)) || die "timed out after $1 s waiting for '$3' in $2"
    sleep 0.02
  done
}
job=(--events "$events" --every "$every" --symbols "$symbols" --history "$history"
  --window "$window" --chunk-mib "$chunk_mib")

manager_args=() region_kind="/dev/shm"
if [[ $size =~ ^([1-9][0-9]*)(MiB|GiB)$ ]]; then
  region_mib=${BASH_REMATCH[1]}
  [[ ${BASH_REMATCH[2]} == GiB ]] && region_mib=$((region_mib * 1024))
  region_mib=$(((region_mib + 1) / 2 * 2))
  if hugepages_setup "$work/hugepages" "$region_mib"; then
    region="$HUGEPAGES_MOUNT/gismo-failover-$$" size="${region_mib}MiB"
    manager_args=(-- --prefault) region_kind="hugetlbfs (prefaulted)"
  else
    region_kind="/dev/shm ($HUGEPAGES_WHY)"
  fi
else
  region_kind="/dev/shm (--size $size is not in MiB or GiB, which hugetlbfs needs)"
fi
echo "== bringing up 3 nodes (node 0 runs the manager, lease $lease_ms ms) on a $size region in $region_kind"
gc up --nodes 3 --region "$region" --size "$size" --lease-ms "$lease_ms" "${manager_args[@]}" >/dev/null
node_addr() { gc status | awk -v n="$1" '$1 == "node" && $2 == n { print $3 }'; }
objects_now() { gc exec 3 -- "$cli_bin" status | awk '$1 == "objects:" { print $2 }'; }

echo "== reference: the job without failure (node 3)"
gc exec 3 -- "$job_bin" active --set ref/trades "${job[@]}" --out "$work/reference.out" \
  >"$work/reference.log" 2>&1 || die "the reference run failed"
gc exec 3 -- "$job_bin" drop --set ref/trades >>"$work/reference.log" 2>&1
state_line=$(grep -m1 "active: running" "$work/reference.log")
echo "   ${state_line#active: }"

echo "== standby on node 2, active on node 1 (stops in the middle of checkpoint $hang)"
gc exec 2 -- "$job_bin" standby --set trades/state "${job[@]}" --out "$work/standby.out" \
  >"$work/standby.log" 2>&1 &
standby=$!
pids+=("$standby")
await 120 "$work/standby.log" "standby: following"
gc exec 1 -- "$job_bin" active --set trades/state "${job[@]}" --hang-in-checkpoint "$hang" \
  --out "$work/active.out" >"$work/active.log" 2>&1 &
pids+=($!)
await 120 "$work/standby.log" "standby: waiting"
await 300 "$work/active.log" "mid-checkpoint"
sed 's/^/   /' "$work/active.log"
gc kill 1 >/dev/null
kill_ns=$(now_ns)  # node 1's processes are gone by now
echo "== node 1 killed; the manager fences it, the standby takes over"
wait "$standby" || die "the standby failed"
grep -v "^standby: checkpoint at offset" "$work/standby.log" | sed 's/^/   /'
take=$(grep -m1 "standby: takeover" "$work/standby.log") || die "no takeover line"
kv() { local w; for w in $take; do [[ $w == "$1="* ]] && echo "${w#*=}"; done; return 0; }
detected_ns=$(kv detected_ns) restore_s=$(kv restore_s) state_bytes=$(kv state_bytes)
restored_offset=$(kv offset) restored_gen=$(kv generation) followed=$(kv followed)

# The output: both nodes' lines, one per window (a window that both closed
# must be the same line), against the reference.
sort -u "$work/active.out" "$work/standby.out" >"$work/merged.out"
dups=$(cut -d' ' -f1 "$work/merged.out" | uniq -d | wc -l)
sort "$work/reference.out" >"$work/reference.sorted"
identical=no
((dups == 0)) && cmp -s "$work/merged.out" "$work/reference.sorted" && identical=yes
windows=$(grep -c "^w=" "$work/reference.out")

echo "== the same state restored from a local file and over TCP from node 3"
port=$((20000 + $$ % 20000))
gc exec 3 -- "$job_bin" serve --set trades/state "${job[@]}" --port "$port" \
  >"$work/serve.log" 2>&1 &
server=$!
pids+=("$server")
await 60 "$work/serve.log" "listening on port"
gc exec 2 -- "$job_bin" compare --set trades/state "${job[@]}" --peer "$(node_addr 3):$port" \
  --file "$work/state.bin" >"$work/compare.log" 2>&1 || die "the comparison failed"
cmpl=$(cat "$work/compare.log")
wait "$server" || die "the serving peer failed"
ckv() { local w; for w in $cmpl; do [[ $w == "$1="* ]] && echo "${w#*=}"; done; return 0; }

gc exec 2 -- "$job_bin" drop --set trades/state >/dev/null
left=$(objects_now)
names=$(gc exec 3 -- "$cli_bin" ls --names | grep -vc "^ID " || true)

# The steps of the detection, from the manager's log (its clock is this
# host's): the connection closed, the client suspected after the re-attach
# window, its node fenced by the fence command, the client recovered.
mlog="$GISMO_CLUSTER_STATE_ROOT/$name/manager.log"
log_ns() {  # PATTERN: the time of the first line after the kill matching it
  local t
  t=$(grep -m1 -- "$1" "$mlog" | awk '{ print $1 }') || true
  [[ -n $t ]] && date -d "$t" +%s%N || echo ""
}
closed_ns=$(log_ns "n1, gismo_failover).*its connection closed")
suspected_ns=$(log_ns "n1, gismo_failover).*is suspected")
fenced_ns=$(log_ns "node 1 is fenced")
recovered_ns=$(log_ns "recovered client .*n1, gismo_failover")
# Node 1 died when the kernel closed its connection (the manager logs it);
# without that line, when `gismo-cluster kill` returned (later).
died_ns=${closed_ns:-$kill_ns}
detect_s=$(awk -v a="$detected_ns" -v b="$died_ns" 'BEGIN { printf "%.3f", (a - b) / 1e9 }')

mib=$(awk -v b="$state_bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
row() { awk -v s="$2" -v b="$state_bytes" -v what="$1" \
  'BEGIN { printf "  %-58s %8.3f s  %6.2f GB/s\n", what, s, b / s / 1e9 }'; }

echo
echo "fail-over of a $mib MiB state (node 1 killed in checkpoint $hang; restored generation" \
  "$restored_gen at offset $restored_offset; lease $lease_ms ms)"
awk -v d="$detect_s" -v r="$restore_s" -v k="$kill_ns" -v c="$closed_ns" -v s="$suspected_ns" \
  -v f="$fenced_ns" -v v="$recovered_ns" -v n="$detected_ns" 'BEGIN {
  printf "  %-58s %8.3f s\n", "detection (node 1 dies -> the standby on node 2 knows)", d
  if (c != "" && s != "" && f != "" && v != "") {
    printf "    %-56s %8.3f s\n", "connection closed -> suspected (re-attach window)", (s - c) / 1e9
    printf "    %-56s %8.3f s\n", "suspected -> node fenced (fence command)", (f - s) / 1e9
    printf "    %-56s %8.3f s\n", "fenced -> recovered (token deleted)", (v - f) / 1e9
    printf "    %-56s %8.3f s\n", "recovered -> delete seen by the standby", (n - v) / 1e9
  }
  printf "  %-58s %8.3f s\n", "restore (gismo, by pointer, verified, copied)", r
  printf "  %-58s %8.3f s\n", "fail-over total", d + r }'
echo "  checkpoints published on node 1 that node 2 saw through gismo_wait_name: $followed"
echo "restore of the same $mib MiB state on node 2 (checksum verified, into the job's memory)"
row "gismo, by pointer (first read of the chunks here)" "$(ckv gismo_s)"
row "gismo, by pointer, the same chunks read again" "$(ckv warm_s)"
row "local file (written, fsync, page cache dropped, read)" "$(ckv file_s)"
row "TCP stream from a surviving peer (node 3)" "$(ckv tcp_s)"
echo "output identical: $identical ($windows windows; $(wc -l <"$work/active.out") lines from" \
  "node 1, $(wc -l <"$work/standby.out") from node 2)"
echo "left in the store after removing the set: $left objects, $names names"
[[ $identical == yes ]] || {
  diff "$work/merged.out" "$work/reference.sorted" | head -n 10 >&2
  die "the output differs from the run without failure"
}
[[ $(ckv file_ok) == 1 && $(ckv tcp_ok) == 1 ]] || die "a comparison restored other bytes"
# The standby took over only once node 1 was fenced (the manager logs in
# milliseconds: a millisecond of slack).
if [[ -n $fenced_ns ]] && ((detected_ns + 1000000 < fenced_ns)); then
  die "the standby took over before node 1 was fenced"
fi
[[ $left == 0 && $names == 0 ]] || die "objects or names leaked"
