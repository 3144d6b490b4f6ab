#!/usr/bin/env bash
# Runs every benchmark once and writes, under bench/results/:
#   results.json  every measurement (one key per experiment, plus the machine)
#   results.md    the markdown tables shown in doc/benchmarks.md
#   *.png         plots (bench/plot.py, matplotlib)
#
# Nodes: when gismo-cluster works (root, network namespaces), the experiments
# run on an emulated 4-node cluster (nodes 1..4, one network namespace each,
# TCP between namespaces over a bridge); otherwise they run as plain processes
# with distinct GISMO_NODE, TCP on loopback, and the results say so.
#
# The cluster's region: as root, on hugetlbfs (2 MiB pages reserved for it
# and given back at the end, prefaulted by the manager; the closest this
# machine has to CXL memory mapped through device DAX), else /dev/shm. The
# results say which (GISMO_HUGEPAGES=0: /dev/shm).
#
# Environment: BUILD_DIR (default build-bench), SCALE (default 1),
# OUT (default bench/results), NO_CLUSTER=1 to force plain processes,
# BEFORE_BUILD_DIR: a build of an older tree (with bench/index_bench.cc
# copied in) whose gismo_index_bench gives the "before" seal/delete column.
# INDEX_COUNTS (default 1000,100000,1000000,10000000): live objects of the
# index scale test. ALLOC_SIZE (default 1TiB): the sparse region of the
# allocator benchmark (gismo_alloc_bench, $OUT/alloc.json).
#
# results.md opens with the issue-#15 aims beside the latest measurements
# (met / not met / not measured in this run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build-bench}"
SCALE="${SCALE:-1}"
OUT="${OUT:-$ROOT/bench/results}"
PYTHON="${PYTHON:-/usr/bin/python3}"
BENCH="$BUILD_DIR/bench/gismo-bench"
CORE="$BUILD_DIR/bench/gismo_core_bench"
INDEX="$BUILD_DIR/bench/gismo_index_bench"
ALLOC="$BUILD_DIR/bench/gismo_alloc_bench"
NOTIFY="$BUILD_DIR/bench/notify_bench"
CLUSTER="$BUILD_DIR/tools/gismo-cluster/gismo-cluster"
NAME="gbench$$"
SUBNET=10.77.9
REGION_SIZE=8GiB
REGION_MIB=8192
# shellcheck source=../scripts/lib/hugepages.sh
source "$ROOT/scripts/lib/hugepages.sh"

for b in "$BENCH" "$CORE"; do
  [[ -x $b ]] || { echo "run_suite: $b is missing; build first:" >&2
    echo "  cmake -S $ROOT -B $BUILD_DIR -DCMAKE_BUILD_TYPE=Release && make -C $BUILD_DIR -j2" >&2
    exit 1; }
done
mkdir -p "$OUT"

placement=(--region-size "$REGION_SIZE")
placement_note="plain processes on one host (distinct GISMO_NODE), TCP on loopback, private manager"
cluster_up=0
region_dir=/dev/shm manager_args=()
cleanup() {
  if ((cluster_up)); then "$CLUSTER" --name "$NAME" down >/dev/null 2>&1 || true; fi
  rm -f "$region_dir/$NAME"
  if [[ $region_dir != /dev/shm ]]; then
    hugepages_release || echo "run_suite: giving the huge pages back failed" >&2
    rmdir "$region_dir" 2>/dev/null || true
  fi
}
trap cleanup EXIT

region_note="/dev/shm (4 KiB pages)"
if [[ -z ${NO_CLUSTER:-} && -x $CLUSTER ]]; then
  if hugepages_setup "/run/gismo-bench-$$" $((REGION_MIB + 64)); then
    region_dir=$HUGEPAGES_MOUNT manager_args=(-- --prefault)
    region_note="hugetlbfs (2 MiB pages), prefaulted by the manager"
  else
    echo "run_suite: the region stays on /dev/shm: $HUGEPAGES_WHY" >&2
  fi
fi
if [[ -z ${NO_CLUSTER:-} && -x $CLUSTER ]] &&
  "$CLUSTER" --name "$NAME" up --nodes 4 --region "$region_dir/$NAME" --size "$REGION_SIZE" \
    --subnet "$SUBNET" --log-level warn "${manager_args[@]}" >/dev/null 2>"$OUT/.cluster-up.log" &&
  "$CLUSTER" --name "$NAME" exec 1 -- true; then
  cluster_up=1
  mode=$("$CLUSTER" --name "$NAME" status | sed -n 's/^cluster: .*(\([a-z]*\) mode).*/\1/p')
  placement=(--address cluster --exec-prefix "$CLUSTER --name $NAME exec {node} --" --node-base 1)
  if [[ $mode == netns ]]; then
    placement+=(--host-template "$SUBNET.{node1}")
    placement_note="gismo-cluster: 4 emulated nodes (1..4), each its own network, PID, mount and UTS namespace; TCP between nodes over a veth bridge; manager on node 0"
  else
    placement_note="gismo-cluster without namespaces: nodes are processes, TCP on loopback"
  fi
else
  echo "run_suite: gismo-cluster is not available; running nodes as plain processes" >&2
fi
rm -f "$OUT/.cluster-up.log"
((cluster_up)) && placement_note+="; region on $region_note"
echo "run_suite: placement: $placement_note" >&2

start=$(date +%s)
echo "run_suite: core (gismo_core_bench)" >&2
"$CORE" --json "$OUT/core.json" | tee "$OUT/core.txt"
for e in table1 gismo shuffle memory redis; do
  echo "run_suite: $e" >&2
  "$BENCH" --scale "$SCALE" "${placement[@]}" --output "$OUT/$e.json" "$e"
done
# Dask with and without gismo.dask (needs python3-distributed, the Python
# package in $BUILD_DIR/python and the namespace cluster).
if ((cluster_up)) && [[ $mode == netns ]] && "$PYTHON" -c "import distributed, pandas" 2>/dev/null; then
  echo "run_suite: dask" >&2
  PYTHONPATH="$BUILD_DIR/python" "$PYTHON" "$ROOT/bench/python/bench_dask.py" --cluster-bin "$CLUSTER" \
    --cluster "$NAME" --subnet "$SUBNET" --output "$OUT/dask.json" --log "$OUT/.dask.log" &&
    rm -f "$OUT/.dask.log"
fi
# The shared cache: four database nodes on gismo-cluster nodes of the
# benchmark's own (a cluster per configuration, sized for it), or plain
# processes where namespaces are not permitted; needs libzstd-dev at build.
CACHE="$BUILD_DIR/bench/gismo_cache_bench"
if [[ -x $CACHE ]]; then
  echo "run_suite: cache" >&2
  cache_placement=auto
  [[ -n ${NO_CLUSTER:-} ]] && cache_placement=processes
  if ! "$CACHE" --manager "$BUILD_DIR/tools/gismo-manager" --cluster-bin "$CLUSTER" \
    --placement "$cache_placement" --blocks 2048 --block-kib 64 --cache-blocks 256 \
    --reads "$(awk -v s="$SCALE" 'BEGIN { printf "%d", 5000 * s }')" \
    --json "$OUT/cache.json" >"$OUT/cache.txt"; then
    echo "run_suite: cache: the herd test loaded a block more than once (see $OUT/cache.txt)" >&2
  fi
fi
# Seal -> notification latency (issue #15: <= 20 us same node, <= 50 us
# across nodes), on its own cluster or processes.
if [[ -x $NOTIFY ]]; then
  echo "run_suite: notify (notify_bench --latency-only)" >&2
  notify_args=(--latency-only --manager "$BUILD_DIR/tools/gismo-manager" --cluster "$CLUSTER")
  [[ -n ${NO_CLUSTER:-} ]] && notify_args+=(--no-cluster)
  "$NOTIFY" "${notify_args[@]}" --json "$OUT/notify.json" >"$OUT/notify.txt" ||
    echo "run_suite: notify_bench failed (see $OUT/notify.txt)" >&2
fi
# Index scale and seal/delete throughput. The region of the scale test sits
# on hugetlbfs when we can reserve the pages for it (root), else /dev/shm;
# the cluster's region is down by now, so its pages are free again.
if [[ -x $INDEX ]]; then
  echo "run_suite: index (gismo_index_bench)" >&2
  if ((cluster_up)); then "$CLUSTER" --name "$NAME" down >/dev/null 2>&1 || true; cluster_up=0; fi
  rm -f "$region_dir/$NAME"
  index_dir=/dev/shm
  if [[ $region_dir != /dev/shm ]]; then
    index_dir=$region_dir
  elif hugepages_setup "/run/gismo-bench-$$" 4096; then
    region_dir=$HUGEPAGES_MOUNT index_dir=$HUGEPAGES_MOUNT
  fi
  "$INDEX" --counts "${INDEX_COUNTS:-1000,100000,1000000,10000000}" --dir "$index_dir" \
    --json "$OUT/index.json" | tee "$OUT/index.txt"
  before="${BEFORE_BUILD_DIR:-}/bench/gismo_index_bench"
  if [[ -n ${BEFORE_BUILD_DIR:-} && -x $before ]]; then
    echo "run_suite: index, before ($before)" >&2
    "$before" --no-scale --json "$OUT/index_before.json" | tee "$OUT/index_before.txt"
  fi
fi
# The page allocator on a fragmented 1 TiB heap (a sparse file in /dev/shm:
# it backs a few tens of MiB) and the space waste of 8-64 KiB objects.
if [[ -x $ALLOC ]]; then
  echo "run_suite: alloc (gismo_alloc_bench)" >&2
  "$ALLOC" --size "${ALLOC_SIZE:-1TiB}" --dir /dev/shm --json "$OUT/alloc.json" |
    tee "$OUT/alloc.txt" || echo "run_suite: gismo_alloc_bench failed" >&2
fi
elapsed=$(($(date +%s) - start))

PLACEMENT_NOTE="$placement_note" ELAPSED="$elapsed" OUT="$OUT" "$PYTHON" - <<'EOF'
import json, os, platform, subprocess
out = os.environ["OUT"]
res = {}
for e in ["core", "table1", "gismo", "shuffle", "memory", "redis"]:
    with open(os.path.join(out, e + ".json")) as f:
        res[e] = json.load(f)
cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")]
mem = [l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")]
res["machine"] = {
    "cpu": cpu[0] if cpu else "?", "cores": len(cpu),
    "memory_gib": round(int(mem[0]) / 2**20, 1), "kernel": platform.release(),
    "os": subprocess.run(["sh", "-c", ". /etc/os-release; echo $PRETTY_NAME"],
                         capture_output=True, text=True).stdout.strip(),
    "placement": os.environ["PLACEMENT_NOTE"], "suite_seconds": int(os.environ["ELAPSED"]),
    "loadavg_at_end": open("/proc/loadavg").read().split()[:3],
}
with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(res, f, indent=2)
for e in ["core", "table1", "gismo", "shuffle", "memory", "redis"]:
    os.remove(os.path.join(out, e + ".json"))
if os.path.exists(os.path.join(out, "dask.json")):  # bench/python/bench_dask.py
    with open(os.path.join(out, "dask.json")) as f:
        res["dask"] = json.load(f)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(res, f, indent=2)
# Optional parts: issue #15's index, notification and allocator benchmarks.
for key in ["index", "index_before", "notify", "alloc"]:
    p = os.path.join(out, key + ".json")
    if os.path.exists(p):
        with open(p) as f:
            res[key] = json.load(f)
        os.remove(p)
with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(res, f, indent=2)
if os.path.exists(os.path.join(out, "cache.json")):  # gismo_cache_bench
    with open(os.path.join(out, "cache.json")) as f:
        res["cache"] = json.load(f)
    os.remove(os.path.join(out, "cache.json"))
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(res, f, indent=2)
EOF
"$PYTHON" "$ROOT/bench/plot.py" "$OUT/results.json" "$OUT"
echo "run_suite: done in ${elapsed}s; results in $OUT" >&2
