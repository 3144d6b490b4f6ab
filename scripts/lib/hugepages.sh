# shellcheck shell=bash
# Sourced by scripts/demo.sh and examples/failover/run.sh: puts a region on
# hugetlbfs (2 MiB pages), the closest this machine has to CXL memory mapped
# through device DAX, so that first touches run at memory speed instead of a
# page fault per 4 KiB (doc/operations.md, "Huge pages").
#
# hugepages_setup DIR MIB: as root, reserves MIB of 2 MiB pages (more than
# the kernel had free, if needed) and mounts hugetlbfs privately at DIR.
# Returns 0 and sets HUGEPAGES_MOUNT (= DIR), or returns 1 with the reason in
# HUGEPAGES_WHY and nothing changed. $GISMO_HUGEPAGES=0 declines.
# hugepages_release: unmounts and gives the reservation back; safe to call
# when setup failed or was not called. Callers serialize with other users of
# the reservation (ctest: RESOURCE_LOCK huge_pages).
HUGEPAGES_MOUNT="" HUGEPAGES_WHY="" HUGEPAGES_BEFORE=""

hugepages_meminfo() { awk -v k="$1:" '$1 == k { print $2 }' /proc/meminfo; }

hugepages_setup() {
  local dir=$1 pages=$((($2 + 1) / 2)) free total
  [[ ${GISMO_HUGEPAGES:-1} != 0 ]] || { HUGEPAGES_WHY="GISMO_HUGEPAGES=0"; return 1; }
  ((EUID == 0)) || { HUGEPAGES_WHY="reserving huge pages needs root"; return 1; }
  grep -qw hugetlbfs /proc/filesystems || { HUGEPAGES_WHY="this kernel has no hugetlbfs"; return 1; }
  [[ $(hugepages_meminfo Hugepagesize) == 2048 ]] ||
    { HUGEPAGES_WHY="the default huge page is not 2 MiB"; return 1; }
  total=$(hugepages_meminfo HugePages_Total) free=$(hugepages_meminfo HugePages_Free)
  if ((free < pages)); then
    echo $((total + pages - free)) >/proc/sys/vm/nr_hugepages 2>/dev/null || true
    free=$(hugepages_meminfo HugePages_Free)
    if ((free < pages)); then
      echo "$total" >/proc/sys/vm/nr_hugepages 2>/dev/null || true
      HUGEPAGES_WHY="the kernel found only $free free 2 MiB pages of the $pages needed"
      return 1
    fi
  fi
  mkdir -p "$dir"
  if ! mount -t hugetlbfs -o pagesize=2M none "$dir" 2>/dev/null; then
    echo "$total" >/proc/sys/vm/nr_hugepages 2>/dev/null || true
    HUGEPAGES_WHY="mounting hugetlbfs failed"
    return 1
  fi
  HUGEPAGES_BEFORE=$total HUGEPAGES_MOUNT=$dir
}

hugepages_release() {
  [[ -n $HUGEPAGES_MOUNT ]] || return 0
  local rc=0
  umount "$HUGEPAGES_MOUNT" || rc=1
  echo "$HUGEPAGES_BEFORE" >/proc/sys/vm/nr_hugepages || rc=1
  HUGEPAGES_MOUNT=""
  return $rc
}
