#!/usr/bin/env bash
# Installs everything gismo needs to build, test and benchmark on Debian 12.
# Idempotent; safe to run again. Needs root (or sudo).
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake pkg-config git ca-certificates
  # the generator of scripts/test.sh's builds (a build of the TSan variant in
  # 152 s against 161 s with make, both at -j2)
  ninja-build
  # libraries (doc/dependencies.md says why each is here)
  libcli11-dev libspdlog-dev libfmt-dev libasio-dev libxxhash-dev nlohmann-json3-dev libssl-dev
  # tests and benchmarks; clang for the libFuzzer targets (ctest -L fuzz)
  libgtest-dev redis-server libhiredis-dev clang
  # the linker of the test-only builds (scripts/test.sh)
  lld
  # the shared-cache benchmark: its "storage" is zstd-compressed chunks
  libzstd-dev
  # the format check of scripts/test.sh (scripts/check-format.sh)
  clang-format
  # emulated cluster: network namespaces, veth, bridge
  iproute2 util-linux procps
  # emulated cluster on virtual machines (gismo-cluster --mode vm, ctest -L vm):
  # qemu (TCG, no KVM needed); the guests' kernel and busybox, which the tool
  # takes from these packages' .deb files; tools that build the guest image
  qemu-system-x86 linux-image-amd64 busybox-static cpio xz-utils binutils
  # Python bindings and their tests / plots
  python3 python3-dev pybind11-dev python3-numpy python3-pytest python3-matplotlib python3-setuptools python3-pip
  # gismo.dask and its tests and benchmark (doc/dependencies.md)
  python3-distributed python3-dask python3-pandas
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "gismo: installing ${#missing[@]} Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "gismo: all build dependencies are installed"
fi
