#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME each (default 10s). Go
# runs one fuzz target per invocation, so this finds them and loops. A
# passing target prints its last line; a failing one prints all it said
# (the failing input inline: the corpus file it writes is gone with a CI
# clone) and the script goes on to the others before it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-10s}
failed=()
while read -r f; do
  pkg=./$(dirname "${f#./}")
  for fn in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | cut -d' ' -f2); do
    echo "fuzz $pkg $fn ($fuzztime)"
    if out=$(go test -run='^$' -fuzz="^${fn}\$" -fuzztime="$fuzztime" "$pkg" 2>&1); then
      tail -1 <<<"$out"
    else
      printf '%s\n' "$out"
      for c in "$pkg"/testdata/fuzz/"$fn"/*; do
        # Show new failing inputs (the committed seeds are known good).
        if [ -f "$c" ] && ! git ls-files --error-unmatch "$c" >/dev/null 2>&1; then
          echo "--- $c"; cat "$c"
        fi
      done
      failed+=("$pkg $fn")
    fi
  done
done < <(grep -rl --include='*_test.go' '^func Fuzz' . | grep -v '^./test/tools/' | sort)
if [ ${#failed[@]} -gt 0 ]; then
  printf 'fuzz FAILED: %s\n' "${failed[@]}"
  exit 1
fi
