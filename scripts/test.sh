#!/usr/bin/env bash
# Builds gismo three ways and runs the whole test suite in each:
#   build/        normal build (RelWithDebInfo), every test incl. install + Python
#   build-asan/   AddressSanitizer + UndefinedBehaviorSanitizer
#   build-tsan/   ThreadSanitizer
# Usage: scripts/test.sh [normal|asan|tsan ...]   (default: all three)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
jobs=$(nproc)
variants=("$@")
[ ${#variants[@]} -eq 0 ] && variants=(normal asan tsan)

run_variant() {
  local name=$1 dir args=() select=()
  case "$name" in
    normal) dir="$root/build" ;;
    asan) dir="$root/build-asan"; args=(-DGISMO_SANITIZE=address -DGISMO_BUILD_BENCH=OFF -DGISMO_BUILD_PYTHON=OFF) ;;
    tsan) dir="$root/build-tsan"; args=(-DGISMO_SANITIZE=thread -DGISMO_BUILD_BENCH=OFF -DGISMO_BUILD_PYTHON=OFF) ;;
    *) echo "unknown variant '$name' (normal, asan, tsan)" >&2; exit 2 ;;
  esac
  # The slow end-to-end tests (emulated clusters, virtual machines) run in
  # the normal build only; the sanitizers run every unit, multi-process and
  # crash-point test.
  case "$name" in
    asan | tsan) select=(-LE 'cluster|vm') ;;
  esac
  echo "=== gismo tests: $name build ($dir) ==="
  local t0=$SECONDS
  cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${args[@]}" >/dev/null
  cmake --build "$dir" -j"$jobs"
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  # Tests fork client processes from a test process whose own client has a
  # receiver thread; TSan supports threads in such children only when asked.
  export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:die_after_fork=0"
  (cd "$dir" && ctest -j"$jobs" --output-on-failure --timeout 600 "${select[@]}")
  echo "=== $name build: tests done in $((SECONDS - t0)) s ==="
}

for v in "${variants[@]}"; do run_variant "$v"; done
