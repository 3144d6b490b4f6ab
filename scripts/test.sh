#!/usr/bin/env bash
# Checks the formatting of the tree, then builds gismo four ways and runs
# the test suite in each:
#   build/        normal build (RelWithDebInfo), every test incl. install + Python
#   build-asan/   AddressSanitizer + UndefinedBehaviorSanitizer
#   build-tsan/   ThreadSanitizer
#   build-ncsim/  the non-coherence simulator (GISMO_NONCOHERENT_SIM): every
#                 process a host with its own write-back cache of each
#                 non-coherent region, which regions are by default there;
#                 the tests of the product's non-coherent mode (below)
# Usage: scripts/test.sh [normal|asan|tsan|ncsim ...]   (default: all four)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
jobs=$(nproc)
variants=("$@")
[ ${#variants[@]} -eq 0 ] && variants=(normal asan tsan ncsim)

# Every variant is a unity build (the sources of a target compiled in
# batches, so shared headers are parsed once per batch: about 40% less CPU
# time). Users build without it (scripts/build.sh), and library_only_test
# compiles the core file by file, so a file that compiles only beside its
# batch neighbours is still caught. Every variant keeps line tables only
# (-g1: backtraces and sanitizer reports still name files and lines), which
# compiles about 30% faster than full debug information (-g); the normal
# build keeps -O2 -DNDEBUG, as RelWithDebInfo has them (it tests what
# ships); the simulator build, which ships nothing, -O1 -DNDEBUG (a unity
# batch compiles about 25% faster than at -O2), like the sanitizer builds.
# Sanitizer builds use -O1. No build here compiles the benchmarks (no test
# runs them; they are about 300 CPU seconds, 100 s of a 2-core CI run):
# bench/run_suite.sh and scripts/build.sh build them, so a benchmark that no
# longer compiles fails there, not in CI. Only the normal build ships: the
# others (test_only_args) also skip the Python module, and compile
# the core and the manager's library once (GISMO_ONE_CORE), in their test
# variant, where the normal build compiles a shipped and a test variant of
# each, and link with lld (a sanitized test program links in 0.4 s against
# 1 s with the default linker, which the normal build keeps: it ships). The
# sanitizer builds compile the test programs' own code at -O0
# (GISMO_UNOPTIMIZED_TEST_PROGRAMS: an ASan test program in 8.8 s against
# 14.9 s). In every build (not only these), the GoogleTest programs share
# one precompiled header and the programs that parse arguments with CLI11
# another (tests/CMakeLists.txt, tools/CMakeLists.txt): about 1.3 s less
# parsing per unity batch. TSan does not model standalone fences, which order the
# non-coherent protocol's words with the data around them; in its build each
# flushed line is a release and each invalidated line an acquire instead
# (region/cache_lines.h), without which NcStoreTest.ClientsOnThreadsAgainstTheOwner
# reported a race between a sealer's memset and a reader in about half the
# runs at -O0.
unity_args=(-DCMAKE_UNITY_BUILD=ON)
release_args=("-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG"
              "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG")
test_only_args=(-DGISMO_BUILD_BENCH=OFF -DGISMO_BUILD_PYTHON=OFF -DGISMO_ONE_CORE=ON
                "-DCMAKE_EXE_LINKER_FLAGS=-fuse-ld=lld" "-DCMAKE_SHARED_LINKER_FLAGS=-fuse-ld=lld"
                "-DCMAKE_MODULE_LINKER_FLAGS=-fuse-ld=lld")
ncsim_args=("${test_only_args[@]}" "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG"
            "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG")
sanitizer_args=("${test_only_args[@]}"
                "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1" "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -g1")

ncsim_suites='^(AdmissionTest|ApiProcessTest|ApiTest|BoundsTest|CacheLinesTest|CacheSimTest|CacheTest|CheckpointTest|KeyTest|ModesTest|MultiProcessTest|NamesProcessTest|NamesTest|NcFenceTest|NcIndexTest|NcOwnerDeathTest|NcReferencesTest|NcRequesterTest|NcRequestsTest|NcStoreTest|NonCoherent|NonCoherentFormat|NonCoherentOperator|NonCoherentOwnerThreads|NonCoherentOwnerThreadsProcess|NonCoherentServed|OwnedTableTest|ManagerLeaseTest|OwnerElectionTest|OwnerSleepTest|RequestRingTest|SubscribeProcessTest|SubscribeSmallRingTest|SubscribeTest|WaitNameTest)[.]|^cluster[.](noncoherent|transfer|deferred_delete|blocking_get|subscribe|kill|freeze|suspect|cli)$|^failure[.](torture|freeze_torture|node)$|^failure[.](two_managers|agent)([.]noncoherent)?$|^failure[.]crash[.].*/nc_client_|^EveryPointOfARequest/NonCoherentHelperDeath[.]'
# (the reasons, per test: doc/noncoherent.md, section 10)
ncsim_differs='^(ApiTest[.]GetsReadThroughAReadOnlyViewAndCreatesWriteThroughTheMapping|ApiTest[.]ALargeCreateHasItsPagesBeforeItsFirstWrite|SubscribeProcessTest[.]ASameNodeSealWakesTheSubscriberWithoutTheManager|SubscribeProcessTest[.]ABusySubscriberCostsSealersOneWakeUpUntilItLooksAgain|SubscribeProcessTest[.]ASealOnAnotherNodeWakesATcpSubscriberWithoutTheManager|SubscribeProcessTest[.]SubscriptionSurvivesManagerRestart)'

# What the simulator build compiles: the test programs that hold
# $ncsim_suites (each suite's program is checked below), the crash points'
# program, and the programs the cluster and failure scenarios start. The
# other test programs drive the coherent store's internals and run in the
# other builds; leaving them out saves about a fifth of this build.
ncsim_targets=(access_test api_test cache_sim_test cache_test checkpoint_test manager_lease_test
               multiprocess_test names_test nc_references_test nc_requester_test nc_requests_test
               nc_store_test noncoherent_test owner_election_test owner_sleep_test
               request_ring_test subscribe_test crash_point_test
               gismo gismo-manager gismo-manager-testing gismo-cli gismo-fsck gismo-agent
               gismo-torture gismo-cluster cluster_agent failure_client)

# Fails if a suite of $ncsim_suites is defined in a test program that is not
# in $ncsim_targets (its tests would silently not run).
check_ncsim_targets() {
  local suites suite file target missing=0
  suites=${ncsim_suites#^(}
  suites=${suites%%)*}
  for suite in ${suites//|/ }; do
    file=$(grep -rlE "^TEST(_F|_P)?\($suite," "$root/tests" --include='*.cc' | head -1)
    if [ -z "$file" ]; then
      echo "scripts/test.sh: no test program defines the simulator suite $suite" >&2
      missing=1
      continue
    fi
    target=$(basename "$file" .cc)
    if [[ " ${ncsim_targets[*]} " != *" $target "* ]]; then
      echo "scripts/test.sh: $suite is in $target, which is not in ncsim_targets" >&2
      missing=1
    fi
  done
  return "$missing"
}

run_variant() {
  local name=$1 dir args=() select=() skip_labels=""
  case "$name" in
    normal) dir="$root/build"; args=("${unity_args[@]}" "${release_args[@]}" -DGISMO_BUILD_BENCH=OFF) ;;
    # Built with clang so that the libFuzzer targets (ctest -L fuzz) build
    # and run in it too.
    asan) dir="$root/build-asan"
          args=(-DGISMO_SANITIZE=address -DGISMO_BUILD_FUZZERS=ON -DGISMO_FUZZ_SECONDS=10
                -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ "${unity_args[@]}"
                "${sanitizer_args[@]}" -DGISMO_UNOPTIMIZED_TEST_PROGRAMS=ON) ;;
    tsan) dir="$root/build-tsan"
          args=(-DGISMO_SANITIZE=thread "${unity_args[@]}" "${sanitizer_args[@]}"
                -DGISMO_UNOPTIMIZED_TEST_PROGRAMS=ON) ;;
    ncsim) dir="$root/build-ncsim"
           args=(-DGISMO_NONCOHERENT_SIM=ON "${unity_args[@]}" "${ncsim_args[@]}") ;;
    *) echo "unknown variant '$name' (normal, asan, tsan, ncsim)" >&2; exit 2 ;;
  esac
  # The slow end-to-end tests (emulated clusters, virtual machines, the
  # tortures, the frozen-client sweep, the durable power cuts, which msync to
  # disk) run in the normal build only. ASan runs every unit, multi-process,
  # crash-point and fuzz test; TSan the unit and multi-process tests (the
  # failure tests' processes are single-threaded clients: races there are
  # ASan's and the tortures' to find). The labels a build leaves out also
  # go to CMake (GISMO_SKIP_TEST_LABELS), which then builds no program that
  # only such tests run.
  case "$name" in
    # OutOfDescriptors exhausts the test process's descriptors, which the
    # sanitizer runtimes need too (UBSan then misreports a vptr).
    asan) skip_labels='cluster|vm|durable'
          select=(-LE "$skip_labels" -E 'ClientFrozenThenResumed|failure[.](torture|freeze_torture)$|OutOfDescriptors') ;;
    tsan) skip_labels='cluster|vm|fuzz|failure|durable'
          select=(-LE "$skip_labels" -E 'OutOfDescriptors') ;;
    # The suites that go through the manager and the clients (the API, names,
    # subscriptions, checkpoints, caches, admission, processes), the
    # non-coherent protocol's own tests, the emulated cluster scenarios that
    # kill or freeze no process of another node, the kill torture and the
    # client's crash points in the mode (the others, and the
    # "fallback" twins, run in the normal build: doc/noncoherent.md 10.1).
    # Left out: the unit tests of the coherent store's internals (they drive
    # it directly: already run in the other builds), and the tests that
    # assert what this mode does differently or the simulator cannot show,
    # each listed with its reason in doc/noncoherent.md, section 10.
    ncsim) select=(-R "${ncsim_suites}" -E "${ncsim_differs}") ;;
  esac
  echo "=== gismo tests: $name build ($dir) ==="
  local t0=$SECONDS
  # Ninja where it is (scripts/install-deps.sh installs it), make otherwise;
  # a build directory keeps the generator it was made with.
  local generator=()
  if [ ! -e "$dir/CMakeCache.txt" ] && command -v ninja >/dev/null; then generator=(-G Ninja); fi
  cmake -S "$root" -B "$dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${args[@]}" \
    "-DGISMO_SKIP_TEST_LABELS=${skip_labels//|/;}" >/dev/null
  if [ "$name" = ncsim ]; then
    check_ncsim_targets
    cmake --build "$dir" -j"$jobs" --target "${ncsim_targets[@]}"
  else
    cmake --build "$dir" -j"$jobs"
  fi
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  # Tests fork client processes from a test process whose own client has a
  # receiver thread; TSan supports threads in such children only when asked.
  export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:die_after_fork=0"
  # One test more than there are cores: the suite spends about a third of
  # its time waiting (leases running out, processes starting, guests
  # booting), and on 2 cores -j3 ran the normal build's tests in 325 s
  # against 419 s at -j2 (-j4: 339 s).
  local rc=0
  (cd "$dir" && ctest -j"$((jobs + 1))" --output-on-failure --timeout 600 "${select[@]}") || rc=$?
  remove_run_files "$GISMO_TEST_RUN"
  [ "$rc" -eq 0 ] || exit "$rc"
  echo "=== $name build: tests done in $((SECONDS - t0)) s ==="
}

# Every region and socket a test makes is named gismo-$GISMO_TEST_RUN-...
# (testing::UniqueName and the test scripts). A test that ends without its
# clean-up (a sanitizer's halt, a timeout's kill, a killed run) leaves its
# region in /dev/shm, which is memory: the 144 tests a thread-sanitizer
# report stopped once left 24 GiB there, and the next build on the machine
# was killed for want of memory. So each variant's leftovers are removed
# when its tests end, and those of earlier runs whose script is gone when
# this one starts.
export GISMO_TEST_RUN="gtr$$"
remove_run_files() {  # remove_run_files TAG
  rm -rf "/dev/shm/gismo-$1-"* "/tmp/gismo-$1-"*
}
remove_dead_runs_files() {
  local f tag pid
  for f in /dev/shm/gismo-gtr[0-9]*-* /tmp/gismo-gtr[0-9]*-*; do
    [ -e "$f" ] || continue
    tag=${f#*/gismo-}
    tag=${tag%%-*}
    pid=${tag#gtr}
    [[ $pid =~ ^[0-9]+$ ]] || continue
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "test.sh: removing $f, left by the test run of a script that is gone"
      rm -rf "$f"
    fi
  done
}
remove_dead_runs_files
trap 'remove_run_files "$GISMO_TEST_RUN"' EXIT

# Every tracked C/C++ file is formatted as .clang-format says (fast; first).
bash "$root/scripts/check-format.sh"
for v in "${variants[@]}"; do run_variant "$v"; done
