#!/usr/bin/env bash
# A region on hugetlbfs: the test mounts hugetlbfs, reserves 2 MiB pages
# through /proc/sys/vm/nr_hugepages, and runs a manager whose region is a
# file there. The manager formats it, maps it with huge pages, serves a put
# and a get, passes fsck; a second manager opens and validates the existing
# region (through mmap only) and serves the same bytes. Everything the test
# changed (mount, reservation, files) is undone on exit.
#
# Environment (set by CTest): GISMO_MANAGER_BIN, GISMO_CLI_BIN.
# Exits 77 (skipped) without root or without huge pages.
set -euo pipefail
: "${GISMO_MANAGER_BIN:?}" "${GISMO_CLI_BIN:?}"

skip() {
  echo "SKIP: $*"
  exit 77
}
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
((EUID == 0)) || skip "mounting hugetlbfs and reserving huge pages needs root"
grep -qw hugetlbfs /proc/filesystems || skip "this kernel has no hugetlbfs"
[[ -w /proc/sys/vm/nr_hugepages ]] || skip "/proc/sys/vm/nr_hugepages is not writable here"

meminfo() { awk -v k="$1:" '$1 == k {print $2}' /proc/meminfo; }
readonly region_mib=64
readonly pages_wanted=$((region_mib / 2 + 8))
work=$(mktemp -d /tmp/gismo-hugetlbfs-test.XXXXXX)
mnt=$work/mnt
region=$mnt/region
sock=$work/manager.sock
reserved=0
manager_pid=""

stop_manager() {
  [[ -n $manager_pid ]] || return 0
  kill "$manager_pid" 2>/dev/null || true
  wait "$manager_pid" 2>/dev/null || true
  manager_pid=""
}
cleanup() {
  local rc=$?
  set +e
  stop_manager
  rm -f "$region"
  mountpoint -q "$mnt" && umount "$mnt"
  # Gives back only this test's pages: others may have reserved some meanwhile.
  if ((reserved > 0)); then
    echo $(($(cat /proc/sys/vm/nr_hugepages) - reserved)) >/proc/sys/vm/nr_hugepages
  fi
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT

before=$(cat /proc/sys/vm/nr_hugepages)
echo $((before + pages_wanted)) >/proc/sys/vm/nr_hugepages
reserved=$(($(cat /proc/sys/vm/nr_hugepages) - before))
((reserved >= pages_wanted)) ||
  skip "the kernel found $reserved of $pages_wanted free 2 MiB pages (memory too fragmented)"
mkdir -p "$mnt"
mount -t hugetlbfs -o pagesize=2M none "$mnt" || skip "cannot mount hugetlbfs"
echo "--- hugetlbfs at $mnt, $reserved pages of 2 MiB reserved"

# start_manager EXTRA_ARGS...: starts a manager on the region and waits for
# its ready line (or its exit).
start_manager() {
  local out=$work/manager.out
  mkfifo "$out.fifo"
  "$GISMO_MANAGER_BIN" --region "$region" --size "${region_mib}MiB" --listen "unix:$sock" \
    --log-level info "$@" >"$out.fifo" 2>"$work/manager.err" &
  manager_pid=$!
  grep -m1 "gismo-manager ready" <"$out.fifo" >/dev/null ||
    fail "the manager did not start: $(cat "$work/manager.err")"
  rm -f "$out.fifo"
}

free_before=$(meminfo HugePages_Free)
# --prefault materializes every page now: the pool's free count drops by the
# whole region.
start_manager --prefault
free_after=$(meminfo HugePages_Free)
((free_before - free_after >= region_mib / 2)) ||
  fail "the region does not live in huge pages: HugePages_Free $free_before -> $free_after"
grep -q "formatted region $region" "$work/manager.err" || fail "the first manager did not format"
grep -A20 " $region\$" "/proc/$manager_pid/smaps" | grep -q "^KernelPageSize: *2048 kB" ||
  fail "the manager's mapping of $region does not use 2 MiB pages"
echo "--- region formatted on hugetlbfs: $((free_before - free_after)) huge pages in use"

head -c $((5 << 20)) /dev/urandom >"$work/data"
"$GISMO_CLI_BIN" put --address "unix:$sock" --name hugetlbfs-object "$work/data" >/dev/null ||
  fail "put failed"
"$GISMO_CLI_BIN" get --address "unix:$sock" --name hugetlbfs-object "$work/back" ||
  fail "get failed"
cmp -s "$work/data" "$work/back" || fail "the object read back differs from what was put"
"$GISMO_CLI_BIN" fsck --address "unix:$sock" -q || fail "fsck found problems"

# A manager that opens (not formats) the existing region validates it
# through its mapping and serves the same object.
stop_manager
start_manager
if grep -q "formatted region" "$work/manager.err"; then
  fail "the second manager formatted the region anew"
fi
rm -f "$work/back"
"$GISMO_CLI_BIN" get --address "unix:$sock" --name hugetlbfs-object "$work/back" ||
  fail "get after reopening failed"
cmp -s "$work/data" "$work/back" || fail "the object differs after reopening the region"
"$GISMO_CLI_BIN" fsck --address "unix:$sock" -q || fail "fsck after reopening found problems"
echo "--- PASS"
