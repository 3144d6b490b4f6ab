#!/usr/bin/env bash
# Checks that every tracked C and C++ file is formatted as .clang-format says.
# Usage: scripts/check-format.sh [FILE...]   (default: every tracked file)
# Prints each file clang-format would change and exits 1 if there is any;
# `clang-format -i FILE` fixes one.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command -v clang-format >/dev/null || { echo "check-format: clang-format is not installed" >&2; exit 2; }

files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  mapfile -t files < <(git ls-files -- '*.c' '*.h' '*.cc' '*.hpp' '*.cpp')
fi

offenders=()
checked=0
for f in "${files[@]}"; do
  [ -f "$f" ] || continue  # deleted in the work tree, not yet in a commit
  checked=$((checked + 1))
  if ! clang-format --dry-run -Werror --style=file "$f" >/dev/null 2>&1; then
    offenders+=("$f")
  fi
done

if [ ${#offenders[@]} -gt 0 ]; then
  echo "check-format: ${#offenders[@]} of $checked files are not formatted (clang-format -i FILE):"
  printf '  %s\n' "${offenders[@]}"
  exit 1
fi
echo "check-format: all $checked files are formatted"
