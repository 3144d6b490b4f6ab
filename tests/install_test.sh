#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, then builds a program
# against it with find_package(gismo) and with pkg-config, and runs both
# against the installed gismo-manager.
set -euo pipefail
build=$1
consumer_src=$2
tmp=$(mktemp -d /tmp/gismo-install-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in include/gismo/gismo.h include/gismo/status_codes.h include/gismo/gismo.hpp \
         include/gismo/status.hpp bin/gismo-manager \
         lib/cmake/gismo/gismoConfig.cmake lib/pkgconfig/gismo.pc; do
  [ -e "$prefix/$f" ] || { echo "missing from install: $f"; exit 1; }
done
ls "$prefix"/lib/libgismo.so* >/dev/null
# Nothing installed carries crash points (they are for test builds only).
for f in "$prefix"/lib/libgismo.so.* "$prefix"/bin/*; do
  if strings -a "$f" | grep -c GISMO_CRASH_AT >/dev/null; then
    echo "installed $f has crash points"
    exit 1
  fi
done
# The Python package, when built, goes under the prefix, importable from there.
if ls "$build"/python/gismo/_gismo*.so >/dev/null 2>&1; then
  pkg=$(ls -d "$prefix"/lib/python3*/*-packages/gismo 2>/dev/null || true)
  [ -n "$pkg" ] && [ -e "$pkg/__init__.py" ] || { echo "the Python package is not under $prefix"; exit 1; }
  LD_LIBRARY_PATH="$prefix/lib" PYTHONPATH=$(dirname "$pkg") /usr/bin/python3 -c \
    "import gismo, sys; sys.exit(0 if gismo.__file__.startswith('$prefix') else 1)" ||
    { echo "import gismo from $pkg failed"; exit 1; }
fi

# 1. CMake package.
cmake -S "$consumer_src" -B "$tmp/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$tmp/cmake-build" >/dev/null
# 2. pkg-config.
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
c++ -std=c++20 "$consumer_src/consumer.cc" -o "$tmp/pc_consumer" $(pkg-config --cflags --libs gismo)
cc -std=c99 "$consumer_src/consumer.c" -o "$tmp/pc_consumer_c" $(pkg-config --cflags --libs gismo)

export LD_LIBRARY_PATH="$prefix/lib"
for prog in "$tmp/cmake-build/consumer_cxx" "$tmp/cmake-build/consumer_c" \
            "$tmp/pc_consumer" "$tmp/pc_consumer_c"; do
  "$(dirname "$0")/run_with_manager.sh" "$prefix/bin/gismo-manager" "$prog"
done
echo "install_test: 4 passed, 0 failed"
