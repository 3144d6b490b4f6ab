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
    # An exec agent runs nothing for a connection that does not know the
    # cluster's token: the forward on 127.0.0.1 is open to every host user.
    wrong=$(mktemp)
    echo "not-the-token-of-this-cluster" >"$wrong"
    port=$(cat "$GISMO_CLUSTER_STATE_ROOT/$VM_CLUSTER_NAME/node1.port")
    if "${GISMO_VM_AGENT_BIN:?}" exec --port "$port" --token-file "$wrong" \
      -- touch /tmp/stranger 2>/dev/null; then
      rm -f "$wrong"
      echo "vm_fixture: an exec with a wrong token was served" >&2
      exit 1
    fi
    rm -f "$wrong"
    if gc exec 1 -- test -e /tmp/stranger; then
      echo "vm_fixture: a command sent with a wrong token ran" >&2
      exit 1
    fi
    ;;
  down)
    gc down
    ;;
  *)
    echo "usage: $0 up|down" >&2
    exit 2
    ;;
esac
