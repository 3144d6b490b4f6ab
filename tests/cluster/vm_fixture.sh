#!/usr/bin/env bash
# The CTest fixture of the vm tests (label vm): `up` boots one cluster of four
# virtual machines that the vm.* scenarios share, one after another; `down`
# removes it. One boot instead of one per scenario keeps the vm tests within
# minutes on a 2-core machine without KVM.
#
# Environment (set by CTest): GISMO_CLUSTER_BIN, CLUSTER_AGENT, VM_CLUSTER_NAME,
# GISMO_CLUSTER_STATE_ROOT, VM_REGION.
set -euo pipefail
: "${GISMO_CLUSTER_BIN:?}" "${CLUSTER_AGENT:?}" "${VM_CLUSTER_NAME:?}" "${VM_REGION:?}"
: "${GISMO_CLUSTER_STATE_ROOT:?}"
export GISMO_CLUSTER_STATE_ROOT

gc() { "$GISMO_CLUSTER_BIN" --name "$VM_CLUSTER_NAME" "$@"; }
# In a run of scripts/test.sh the region carries its tag, so that a run
# killed before `down` leaves nothing the next run does not remove.
if [ -n "${GISMO_TEST_RUN:-}" ]; then
  VM_REGION=${VM_REGION%/*}/gismo-$GISMO_TEST_RUN-${VM_REGION##*/gismo-}
fi

case ${1:-} in
  up)
    # Whatever an interrupted earlier run left under this name.
    gc down >/dev/null
    rm -f "$VM_REGION"
    # A lease well above the scheduling stalls of emulated CPUs on a busy host.
    gc up --mode vm --nodes 4 --region "$VM_REGION" --size 512MiB --lease-ms 5000 \
      --vm-binary "$CLUSTER_AGENT"
    gc status
    ;;
  down)
    gc down
    ;;
  *)
    echo "usage: $0 up|down" >&2
    exit 2
    ;;
esac
