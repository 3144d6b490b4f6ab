#!/usr/bin/env bash
# Usage: run_with_manager.sh MANAGER_BIN PROGRAM [ARGS...]
# Starts a manager on a private region and socket, waits for its ready line,
# runs PROGRAM with GISMO_ADDRESS set, stops the manager, cleans up.
set -euo pipefail
manager=$1; shift
name="gismo-${GISMO_TEST_RUN:+$GISMO_TEST_RUN-}run-$$-$RANDOM"
region="/dev/shm/$name"
sock="/tmp/$name.sock"
fifo=$(mktemp -u "/tmp/$name.XXXX")
mkfifo "$fifo"
"$manager" --region "$region" --size 128MiB --listen "unix:$sock" --log-level warn >"$fifo" &
mpid=$!
cleanup() { kill "$mpid" 2>/dev/null || true; wait "$mpid" 2>/dev/null || true; rm -f "$region" "$sock" "$fifo"; }
trap cleanup EXIT
# The ready line, or the manager's exit (EOF), whichever comes first.
if ! grep -m1 -q "gismo-manager ready" <"$fifo"; then
  echo "manager did not start" >&2
  exit 1
fi
GISMO_ADDRESS="unix:$sock" "$@"
