#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME each (default 10s). Go
# runs one fuzz target per invocation, so this finds them and loops. A
# passing target prints its last line; a failing one prints all it said
# (the failing input inline: the corpus file it writes is gone with a CI
# clone) and the script goes on to the others before it fails.
#
# Go 1.26's fuzz coordinator can report "context deadline exceeded" when
# -fuzztime ends while a worker is mid-call (go.dev/issue/75804, fixed in Go
# 1.27), most often on a loaded machine. That failure writes no failing
# input, which every real finding does; such a run is retried once, and a
# second one is reported as the engine's flake without failing the script.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-10s}
failed=()
flaked=()

# newinputs prints the failing inputs the last run wrote (the committed
# seeds are known good).
newinputs() {
  local c
  for c in "$1"/testdata/fuzz/"$2"/*; do
    if [ -f "$c" ] && ! git ls-files --error-unmatch "$c" >/dev/null 2>&1; then
      echo "$c"
    fi
  done
}

while read -r f; do
  pkg=./$(dirname "${f#./}")
  for fn in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | cut -d' ' -f2); do
    for attempt in 1 2; do
      echo "fuzz $pkg $fn ($fuzztime)"
      if out=$(go test -run='^$' -fuzz="^${fn}\$" -fuzztime="$fuzztime" "$pkg" 2>&1); then
        tail -1 <<<"$out"
        break
      fi
      inputs=$(newinputs "$pkg" "$fn")
      if [ -z "$inputs" ] && grep -q 'context deadline exceeded' <<<"$out" && ! grep -q 'Failing input written' <<<"$out"; then
        if [ "$attempt" = 1 ]; then
          echo "fuzz $pkg $fn: the engine's deadline race (no failing input written); once more"
          continue
        fi
        echo "fuzz $pkg $fn: the engine's deadline race again, no failing input: counted as a flake"
        flaked+=("$pkg $fn")
        break
      fi
      printf '%s\n' "$out"
      for c in $inputs; do
        echo "--- $c"; cat "$c"
      done
      failed+=("$pkg $fn")
      break
    done
  done
done < <(grep -rl --include='*_test.go' '^func Fuzz' . | grep -v '^./test/tools/' | sort)
if [ ${#flaked[@]} -gt 0 ]; then
  printf 'fuzz flaked twice (engine deadline race): %s\n' "${flaked[@]}"
fi
if [ ${#failed[@]} -gt 0 ]; then
  printf 'fuzz FAILED: %s\n' "${failed[@]}"
  exit 1
fi
