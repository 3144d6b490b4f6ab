#!/usr/bin/env bash
# The gismo demo: an emulated 4-node cluster on one machine. A producer on
# node 1 creates and seals objects; consumers on nodes 2-4, started first,
# block in get until each object is sealed, then read it in place. Prints
# what each did and how fast, shows that every pointer lies in the reader's
# own mapping of the one shared region, and that the pool holds one copy.
#
# Usage: scripts/demo.sh [--vm] [COUNT [SIZE_BYTES]]
#   (default: 32 objects of 16 MiB; with --vm 16 objects of 4 MiB)
# With --vm, nodes 1-4 are virtual machines (qemu, no KVM needed), each with
# its own kernel, mapping the region as a PCI device; node 0 is this host.
# Without it, nodes are network namespaces of this machine's kernel, and as
# root the region is on hugetlbfs (2 MiB pages reserved for it and mounted
# privately, released at the end; the manager prefaults them), the closest
# this machine has to CXL memory mapped with 2 MiB device-DAX pages: a first
# write runs at memory speed instead of one page fault per 4 KiB. Where that
# is not possible the demo says why and uses /dev/shm. GISMO_HUGEPAGES=0
# keeps /dev/shm.
# Finds its programs in $GISMO_BUILD_DIR (default: build/) or on PATH;
# GISMO_CLUSTER_BIN and GISMO_DEMO_BIN override. Namespaces need root;
# otherwise gismo-cluster runs the nodes as plain processes.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib/hugepages.sh
source "$repo/scripts/lib/hugepages.sh"
build=${GISMO_BUILD_DIR:-$repo/build}
vm=0
if [[ ${1:-} == --vm ]]; then
  vm=1
  shift
fi
# Emulated CPUs are slow: the virtual machines get a smaller default load.
count=${1:-$((vm ? 16 : 32))}
size=${2:-$((vm ? 4 << 20 : 16 << 20))}
[[ $count =~ ^[1-9][0-9]*$ && $size =~ ^[1-9][0-9]*$ ]] || {
  echo "usage: $0 [--vm] [COUNT [SIZE_BYTES]]" >&2
  exit 2
}

find_program() {  # ENV_VALUE BUILD_PATH NAME
  local c
  for c in "$1" "$2" "$(command -v "$3" 2>/dev/null || true)"; do
    [[ -n $c && -x $c ]] && { echo "$c"; return; }
  done
  echo "demo: cannot find $3; build gismo (GISMO_BUILD_DIR=$build) or set the path" >&2
  exit 1
}
gc_bin=$(find_program "${GISMO_CLUSTER_BIN:-}" "$build/tools/gismo-cluster/gismo-cluster" gismo-cluster)
demo_bin=$(find_program "${GISMO_DEMO_BIN:-}" "$build/examples/demo/gismo_demo" gismo_demo)

name="demo-$$"
region="/dev/shm/gismo-demo-$$"
work=$(mktemp -d /tmp/gismo-demo.XXXXXX)
gc() { "$gc_bin" --name "$name" "$@"; }
cleanup() {
  local rc=$?
  echo
  echo "== tearing down"
  gc down || rc=1
  hugepages_release || rc=1
  rm -rf "$work"
  exit $rc
}

trap cleanup EXIT

# Region: the objects plus room for the allocator and index.
region_mib=$(((count * size >> 20) * 5 / 4 + 256))
manager_args=()
if ((!vm)); then
  # Multiples of 2 MiB, as hugetlbfs wants.
  region_mib=$(((region_mib + 1) / 2 * 2))
  if hugepages_setup "$work/hugepages" "$region_mib"; then
    region="$HUGEPAGES_MOUNT/gismo-demo-$$"
    echo "== region on hugetlbfs: $((region_mib / 2)) pages of 2 MiB reserved, prefaulted by the manager"
    manager_args=(-- --prefault)
  else
    echo "== region in /dev/shm (4 KiB pages; first writes fault per page): $HUGEPAGES_WHY"
  fi
fi
up_args=(--nodes 4 --region "$region")
if ((vm)); then
  # A PCI BAR's size is a power of two.
  mib=64
  while ((mib < region_mib)); do mib=$((mib * 2)); done
  region_mib=$mib
  up_args+=(--mode vm --vm-binary "$demo_bin")
  echo "== booting 4 virtual machines (nodes 1-4; node 0 is this host and runs the manager)" \
    "that share a ${region_mib} MiB region as a PCI device"
else
  echo "== bringing up 4 nodes (node 0 runs the manager) on a ${region_mib} MiB region"
fi
gc up "${up_args[@]}" --size "${region_mib}MiB" "${manager_args[@]}"
gc status | grep -E "^(region|manager|guests|node)"
((vm)) && echo "   (the guests' CPUs are emulated (TCG): their rates below show that it works, not how fast)"

echo
echo "== consumers on nodes 2, 3, 4 ask for $count objects that do not exist yet"
consumers=()
for n in 2 3 4; do
  gc exec "$n" -- "$demo_bin" consume --run "$name" --count "$count" --timeout-ms 30000 \
    >"$work/consumer$n.out" 2>&1 &
  consumers+=($!)
done

# Until every consumer is connected and about to wait (bounded).
ready() { (($(cat "$work"/consumer*.out 2>/dev/null | grep -c "connected, waiting") == 3)); }
for ((i = 0; i < 3000; i++)); do
  ready && break
  sleep 0.01
done
ready || { cat "$work"/consumer*.out >&2; echo "demo: consumers did not connect" >&2; exit 1; }

echo "== producer on node 1 creates and seals $count objects of $((size >> 10)) KiB"
gc exec 1 -- "$demo_bin" produce --run "$name" --count "$count" --size "$size"
failed=0
for pid in "${consumers[@]}"; do wait "$pid" || failed=1; done
for n in 2 3 4; do grep -v "connected, waiting" "$work/consumer$n.out"; done
((failed == 0)) || { echo "demo: a consumer failed" >&2; exit 1; }

echo
echo "== the pool, seen from node 1 after every node read every object"
gc exec 1 -- "$demo_bin" report --run "$name" --count "$count" --size "$size" --delete

offsets=$(grep -ho "region offset 0x[0-9a-f]*" "$work"/consumer*.out | sort -u | wc -l)
if ((offsets == 1)); then
  echo "every node found object 0 at the same region offset: one copy, read in place"
else
  echo "demo: nodes saw object 0 at different offsets" >&2
  exit 1
fi
