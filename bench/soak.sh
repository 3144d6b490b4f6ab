#!/usr/bin/env bash
# Soak test (not in the default test run): 64 clients of mixed operations and
# hostile peers against one manager for MINUTES minutes (default 10); prints
# the manager's memory and descriptors over time and the clients' errors as
# JSON. See bench/soak.py and doc/security.md.
#   BUILD_DIR=build MINUTES=3 CLIENTS=64 bash bench/soak.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
MANAGER="$BUILD_DIR/tools/gismo-manager"
[[ -x $MANAGER ]] || { echo "soak: $MANAGER is missing; build first" >&2; exit 2; }
# Descriptors: the fd flood should meet the manager's limits, not ours.
ulimit -n 65536 2>/dev/null || true
PYTHONPATH="$BUILD_DIR/python${PYTHONPATH:+:$PYTHONPATH}" exec /usr/bin/python3 \
  "$ROOT/bench/soak.py" --manager "$MANAGER" --minutes "${MINUTES:-10}" \
  --clients "${CLIENTS:-64}" --hostile "${HOSTILE:-2}"
