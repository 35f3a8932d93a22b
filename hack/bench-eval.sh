#!/usr/bin/env bash
# Decode plus every built-in rule, in records per CPU-second, as users
# measure it: `kubesift rules eval` over the recorded bench corpus
# (rules/testdata/bench-audit.log.gz), user+sys time of the process, on the
# whole corpus and on its events of at most 4 KiB. The same run builds and
# measures BASE_COMMIT's binary on the same files (make bench passes
# BENCH_BASE), so this tree's figure is read beside the base's on a machine
# whose load changes between runs, their runs alternating. Each figure is
# the best of ROUNDS (default 5) runs, less the time the same binary takes
# on an empty input (loading and compiling the rules).
#
#   hack/bench-eval.sh BASE_COMMIT
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
base=${1:?usage: hack/bench-eval.sh BASE_COMMIT}
rounds=${ROUNDS:-5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

zcat rules/testdata/bench-audit.log.gz >"$tmp/all.log"
awk 'length($0) <= 4096' "$tmp/all.log" >"$tmp/le4KiB.log"
: >"$tmp/empty.log"
# COPIES (default 20) copies, so that each run takes a second or more: the
# CPU clock /usr/bin/time reads ticks in 10 ms, and the start of a run
# (heap, caches and pools growing) costs more per record than the rest.
# With 5 copies, ~0.2 s a run, one binary read 57,000 records/s on the
# 4 KiB corpus where 20 copies read 90,000.
copies=${COPIES:-20}
for c in all le4KiB; do
	for _ in $(seq "$copies"); do cat "$tmp/$c.log"; done >"$tmp/$c.xN.log"
done

go build -o "$tmp/kubesift-head" ./cmd/kubesift
mkdir "$tmp/base"
git archive "$base" | tar -x -C "$tmp/base"
(cd "$tmp/base" && go build -o "$tmp/kubesift-base" ./cmd/kubesift)

# once BIN FILE [FLAG...]: the user+sys seconds of one run of
# `BIN rules eval FLAG... FILE`. time writes to its own file so that the
# command's output can be thrown away; a failed run stops the script, since
# its time would not be the rules'.
once() {
	local bin=$1 file=$2
	shift 2
	if ! /usr/bin/time -f '%U %S' -o "$tmp/time" "$bin" rules eval -o json "$@" "$file" >/dev/null 2>"$tmp/stderr"; then
		echo "$bin rules eval $* $file failed:" >&2
		cat "$tmp/stderr" >&2
		exit 1
	fi
	tail -1 "$tmp/time" | awk '{print $1 + $2}'
}

# The runs of the two binaries alternate, round by round, and each figure
# keeps the best of its ROUNDS: on a machine whose speed drifts over
# minutes (a shared host), both binaries see the same stretches of it.
# "decode" is --no-builtin without rules: reading and decoding only, the
# floor under "decode+rules". Each time is less the same command's on an
# empty input (loading and compiling the rules).
declare -A best
# measure KEY BIN FILE [FLAG...]: run once, keep the time under KEY if it
# is the best yet. The assignment, not an argument, takes once's output,
# so that a failed run stops the script.
measure() {
	local key=$1 t
	shift
	t=$(once "$@")
	if [ -z "${best[$key]:-}" ] || awk -v a="$t" -v b="${best[$key]}" 'BEGIN {exit !(a < b)}'; then
		best[$key]=$t
	fi
}
for _ in $(seq "$rounds"); do
	for c in all le4KiB; do
		for b in base head; do
			bin="$tmp/kubesift-$b"
			measure "$c/$b/decode" "$bin" "$tmp/$c.xN.log" --no-builtin
			measure "$c/$b/rules" "$bin" "$tmp/$c.xN.log"
			measure "empty/$b/decode" "$bin" "$tmp/empty.log" --no-builtin
			measure "empty/$b/rules" "$bin" "$tmp/empty.log"
		done
	done
done

# rate CORPUS BINARY MODE: records per CPU-second.
rate() {
	awk -v n="$(wc -l <"$tmp/$1.xN.log")" -v t="${best[$1/$2/$3]}" -v t0="${best[empty/$2/$3]}" 'BEGIN {printf "%.0f", n / (t - t0)}'
}

printf '%-8s %-8s %10s %16s %22s\n' corpus binary records decode/CPU-s decode+rules/CPU-s
for c in all le4KiB; do
	for b in base head; do
		printf '%-8s %-8s %10d %16s %22s\n' "$c" "$b" "$(wc -l <"$tmp/$c.xN.log")" "$(rate "$c" "$b" decode)" "$(rate "$c" "$b" rules)"
	done
done
