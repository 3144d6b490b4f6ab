#!/usr/bin/env bash
# Usage: library_only_test.sh SOURCE_DIR CONSUMER_SOURCE_DIR
# Configures gismo with GISMO_BUILD_TOOLS=OFF while spdlog, CLI11 and asio
# are out of reach (a REQUIRED find_package of a disabled package fails the
# configure), builds and installs the library, then builds a program against
# the installed tree with find_package and with pkg-config.
set -euo pipefail
src=$1
consumer_src=$2
tmp=$(mktemp -d /tmp/gismo-libonly-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"

cmake -S "$src" -B "$tmp/build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-O0 \
  -DGISMO_BUILD_TOOLS=OFF \
  -DGISMO_BUILD_PYTHON=OFF -DCMAKE_INSTALL_PREFIX="$prefix" \
  -DCMAKE_DISABLE_FIND_PACKAGE_spdlog=ON -DCMAKE_DISABLE_FIND_PACKAGE_CLI11=ON \
  -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON -DCMAKE_DISABLE_FIND_PACKAGE_nlohmann_json=ON \
  >"$tmp/configure.log" || { cat "$tmp/configure.log"; exit 1; }
# asio is found with find_path, which has no such switch: it must not be looked for.
if grep -q '^ASIO_INCLUDE_DIR' "$tmp/build/CMakeCache.txt"; then
  echo "FAIL: a library-only configure looked for asio"
  exit 1
fi
cmake --build "$tmp/build" -j2 --target gismo >"$tmp/build.log" || { cat "$tmp/build.log"; exit 1; }
cmake --install "$tmp/build" >/dev/null
for f in include/gismo/gismo.h include/gismo/gismo.hpp lib/cmake/gismo/gismoConfig.cmake \
         lib/pkgconfig/gismo.pc; do
  [ -e "$prefix/$f" ] || { echo "FAIL: missing from install: $f"; exit 1; }
done
ls "$prefix"/lib/libgismo.so* >/dev/null
if ls "$prefix/bin" >/dev/null 2>&1; then
  echo "FAIL: a library-only install has programs: $(ls "$prefix/bin")"
  exit 1
fi

# Programs against the installed library: they build and link.
cmake -S "$consumer_src" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
c++ -std=c++20 "$consumer_src/consumer.cc" -o "$tmp/pc_consumer" $(pkg-config --cflags --libs gismo)
cc -std=c99 "$consumer_src/consumer.c" -o "$tmp/pc_consumer_c" $(pkg-config --cflags --libs gismo)
echo "library_only_test: 1 passed, 0 failed"
