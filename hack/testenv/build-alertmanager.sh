#!/usr/bin/env bash
# Builds Prometheus Alertmanager from the pinned module test/tools/alertmanager
# (a tool dependency, so no source of ours) and caches the binary under
# $KUBESIFT_CACHE/alertmanager/<key>, where key is a hash of that module's
# go.mod, go.sum and the Go version. A warm cache costs nothing. Writes
# $KUBESIFT_TESTENV/env.alertmanager (KUBESIFT_ALERTMANAGER_BIN), which
# testenv.StartAlertmanager reads: each test starts its own Alertmanager, so
# nothing runs between tests. Prints the binary's path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
mod="$root/test/tools/alertmanager"
cache="${KUBESIFT_CACHE:-$HOME/.cache/kubesift}"
testenv="${KUBESIFT_TESTENV:-$root/.testenv}"
key=$( (cat "$mod/go.mod" "$mod/go.sum"; go env GOVERSION) | sha256sum | cut -c1-16)
out="$cache/alertmanager/$key"
if [[ ! -x "$out/alertmanager" ]]; then
  mkdir -p "$out.tmp"
  echo "building alertmanager into $out" >&2
  start=$(date +%s)
  (cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$out.tmp/alertmanager" github.com/prometheus/alertmanager/cmd/alertmanager)
  rm -rf "$out" && mv "$out.tmp" "$out"
  echo "built in $(( $(date +%s) - start ))s" >&2
fi
mkdir -p "$testenv"
cat >"$testenv/env.alertmanager" <<ENV
# Written by hack/testenv/build-alertmanager.sh; the binary is cached, no server runs.
export KUBESIFT_ALERTMANAGER_BIN=$out/alertmanager
ENV
echo "$out/alertmanager"
