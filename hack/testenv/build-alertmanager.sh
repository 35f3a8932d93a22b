#!/usr/bin/env bash
# Builds Prometheus Alertmanager from the pinned module test/tools/alertmanager
# (a tool dependency, so no source of ours; the web UI is a placeholder) and
# caches the binary under
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
  # The module as published lacks the web UI's generated assets
  # (ui/app/dist, built by npm), which ui/web.go embeds, so a plain
  # `go build` of the module fails. The tests need the API, not the UI: the
  # build uses a copy of the pinned module with a placeholder page in their
  # place, substituted by a replace directive in a copy of our go.mod (same
  # versions, same go.sum).
  src=$(cd "$mod" && go list -m -f '{{.Dir}}' github.com/prometheus/alertmanager)
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  cp -r "$src" "$work/alertmanager" && chmod -R u+w "$work/alertmanager"
  for d in elm mantine; do
    mkdir -p "$work/alertmanager/ui/app/dist/$d"
    echo '<!doctype html><title>Alertmanager (kubesift test ground: no web UI)</title>' >"$work/alertmanager/ui/app/dist/$d/index.html"
  done
  cp "$mod/go.mod" "$mod/go.sum" "$work/"
  (cd "$work" && go mod edit -replace github.com/prometheus/alertmanager=./alertmanager &&
    CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags='-s -w' -o "$out.tmp/alertmanager" github.com/prometheus/alertmanager/cmd/alertmanager)
  rm -rf "$out" && mv "$out.tmp" "$out"
  echo "built in $(( $(date +%s) - start ))s" >&2
fi
mkdir -p "$testenv"
cat >"$testenv/env.alertmanager" <<ENV
# Written by hack/testenv/build-alertmanager.sh; the binary is cached, no server runs.
export KUBESIFT_ALERTMANAGER_BIN=$out/alertmanager
ENV
echo "$out/alertmanager"
