#!/usr/bin/env bash
# Usage: crash_points_test.sh --shipped FILE... --testing FILE...
# Crash points (GISMO_CRASH_POINT, armed by GISMO_CRASH_AT) exist only in test
# builds: no --shipped file (libgismo.so, the installed programs) may contain
# them, and every --testing file must (which shows the check can see them).
set -euo pipefail

# A file has crash points if it reads GISMO_CRASH_AT or defines CrashPoint.
has_crash_points() {
  # grep -c reads all its input: no SIGPIPE for the producer under pipefail.
  strings -a "$1" | grep -c 'GISMO_CRASH_AT' >/dev/null && return 0
  nm -C "$1" 2>/dev/null | grep -c ' gismo::CrashPoint(' >/dev/null && return 0
  return 1
}

mode=""
passed=0 failed=0
for arg in "$@"; do
  case "$arg" in
    --shipped | --testing) mode=$arg; continue ;;
  esac
  [ -n "$mode" ] || { echo "usage: $0 --shipped FILE... --testing FILE..." >&2; exit 2; }
  [ -e "$arg" ] || { echo "FAIL: $arg does not exist"; failed=$((failed + 1)); continue; }
  if [ "$mode" = --shipped ] && has_crash_points "$arg"; then
    echo "FAIL: $arg (shipped) contains crash points"
    failed=$((failed + 1))
  elif [ "$mode" = --testing ] && ! has_crash_points "$arg"; then
    echo "FAIL: $arg (test build) has no crash points: is the check blind?"
    failed=$((failed + 1))
  else
    echo "ok: $arg ($mode)"
    passed=$((passed + 1))
  fi
done
echo "crash_points_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
