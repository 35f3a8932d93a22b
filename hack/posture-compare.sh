#!/usr/bin/env bash
# Runs an existing posture scanner (Polaris) and `kubesift posture scan`
# against the planted posture fixture on the test ground's kube-apiserver,
# and says for each, per check theme, which planted violations it reported,
# which it missed, and where it reported a theme that expected.yaml says must
# not fire. A comparison run by hand, not part of the test suite;
# docs/posture-compare.md holds its results.
#
#   hack/posture-compare.sh [OUT_DIR]
#
# Environment (defaults in brackets):
#   KUBESIFT_TESTENV   the running test ground [<repo>/.testenv]; only read
#   POLARIS            the polaris binary [$KUBESIFT_CACHE/polaris/<ver>/polaris,
#                      else polaris on PATH]
#   RUNS               how many timed scans of each tool [3]
#
# The repository holds no recipe that builds Polaris: its Go module is not
# served by the module proxy this project builds from (docs/posture-compare.md
# says what was tried), so POLARIS must name a binary built from its source.
#
# Needs kubectl, python3 with PyYAML, and /usr/bin/time. The planted objects
# are applied under a prefix of their own (pst-cmp-<hex>) and deleted again on
# exit; namespaces are finalized by hand, the ground having no namespace
# controller.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
fixture="$root/test/posture/testdata"
testenv=${KUBESIFT_TESTENV:-$root/.testenv}
cache="${KUBESIFT_CACHE:-$HOME/.cache/kubesift}"
out=${1:-$root/.testenv/posture-compare}
runs=${RUNS:-3}

[[ -f "$testenv/env.kube" ]] || { echo "no $testenv/env.kube: the test ground's kube-apiserver is not running" >&2; exit 1; }
# shellcheck disable=SC1091
source "$testenv/env.kube"
kc=$KUBESIFT_KUBECONFIG_ADMIN
# kubesift from this checkout, with the fixture's approved registries and
# default exemptions as a rule-list layer (as test/posture's tests do).
mkdir -p "$out"
( cd "$root" && go build -o "$out/kubesift" ./cmd/kubesift )
mkdir -p "$out/rules"
python3 - "$fixture/expected.yaml" "$out/rules/fixture.yaml" <<'PY'
import sys, yaml
exp = yaml.safe_load(open(sys.argv[1]))
ex = [f"{x['namespace']}/{x['workload']}/*/{x['image_repository']}" for x in exp["exemptions"]]
yaml.safe_dump({"lists": [{"name": "approved_registries", "items": exp["approved_registries"]},
                          {"name": "posture_exemptions", "append": True, "items": ex}]}, open(sys.argv[2], "w"))
PY
polaris=${POLARIS:-$( (ls -1d "$cache"/polaris/*/polaris 2>/dev/null || true) | sort -V | tail -1)}
polaris=${polaris:-$(command -v polaris || true)}
[[ -x "$polaris" ]] || { echo "no polaris binary: set POLARIS (see docs/posture-compare.md)" >&2; exit 1; }
python3 -c 'import yaml' 2>/dev/null || { echo "python3 with PyYAML is needed for the summary" >&2; exit 1; }

k() { kubectl --kubeconfig "$kc" "$@"; }
run="pst-cmp-$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
mkdir -p "$out"
files=("$fixture"/planted/*.yaml)

cleanup() {
  for ((i=${#files[@]}-1; i>=0; i--)); do
    sed "s/__RUN__/$run/g" "${files[i]}" |
      k delete --ignore-not-found --wait=false --cascade=background -f - >/dev/null 2>&1 || true
  done
  # What the namespace controller would do once the namespaces are empty.
  for ns in $(k get namespaces -o name | sed -n "s|^namespace/\($run-.*\)|\1|p"); do
    k get namespace "$ns" -o json |
      python3 -c 'import json,sys; d=json.load(sys.stdin); d["spec"]["finalizers"]=[]; print(json.dumps(d))' |
      k replace --raw "/api/v1/namespaces/$ns/finalize" -f - >/dev/null || true
    k delete namespace "$ns" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  done
  echo "deleted the planted objects of $run" >&2
}
trap cleanup EXIT

echo "applying the planted set under $run" >&2
for f in "${files[@]}"; do
  sed "s/__RUN__/$run/g" "$f" |
    k apply --server-side --force-conflicts --field-manager=kubesift-posture-compare -f - >/dev/null
done

# timed TOOL OUT_FILE CMD...: runs CMD $runs times under /usr/bin/time -v,
# its stdout into OUT_FILE, appending wall, RSS and CPU to $out/TOOL-times.tsv.
timed() {
  local tool=$1 file=$2; shift 2
  : >"$out/$tool-times.tsv"
  for ((i=1; i<=runs; i++)); do
    /usr/bin/time -v -o "$out/$tool-time-$i.txt" "$@" >"$file" || [[ $? == 3 ]]  # 3: findings at --fail-on
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$out/$tool-time-$i.txt")
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$out/$tool-time-$i.txt")
    cpu=$(awk -F': ' '/(User|System) time \(seconds\)/ {s += $2} END {print s}' "$out/$tool-time-$i.txt")
    printf '%s\t%s\t%s\n' "$wall" "$rss" "$cpu" >>"$out/$tool-times.tsv"
  done
}

version=$("$polaris" version 2>/dev/null | sed -n 's/.*version:\s*//Ip' | head -1)
echo "polaris $version: $runs timed audits of the whole ground" >&2
KUBECONFIG=$kc timed polaris /dev/null \
  "$polaris" audit --format json --output-file "$out/polaris.json" --log-level warning
python3 "$root/test/posture/summarize.py" polaris \
  "$fixture/expected.yaml" "$out/polaris.json" "$run" "$out/polaris-summary.json" "$version" "$out/polaris-times.tsv"
echo

kversion=$(cd "$root" && git describe --always --dirty 2>/dev/null || echo dev)
echo "kubesift $kversion: $runs timed posture scans of the whole ground" >&2
timed kubesift "$out/kubesift.ndjson" \
  "$out/kubesift" posture scan --kubeconfig "$kc" --cluster ground --rules "$out/rules" -o json --log-level warn
python3 "$root/test/posture/summarize.py" kubesift \
  "$fixture/expected.yaml" "$out/kubesift.ndjson" "$run" "$out/kubesift-summary.json" "$kversion" "$out/kubesift-times.tsv"
echo "summaries: $out/polaris-summary.json $out/kubesift-summary.json" >&2
