#!/usr/bin/env bash
# Builds mailpit, the real SMTP server of the e-mail notifier's tests, from
# the pinned Go module in test/tools/mailpit and caches the binary under
# $KUBESIFT_CACHE/mailpit/<key>, where key is a hash of that module's go.mod,
# go.sum and the Go version. A warm cache costs nothing.
# Prints the directory that holds the binary.
#
#   hack/testenv/build-mailpit.sh           build if needed, print the dir
#   hack/testenv/build-mailpit.sh --cached  print the dir if built, else exit 1
#
# The module zip carries mailpit's Go sources and the files its server
# embeds (server/ui: favicon, the API's swagger page) but not the web UI's
# compiled bundle (server/ui/dist, made by npm and not in git). Nothing in
# the build needs it: the binary serves SMTP and the JSON API the tests use;
# only the browser UI's page would miss its scripts.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
mod="$root/test/tools/mailpit"
cache="${KUBESIFT_CACHE:-$HOME/.cache/kubesift}"
version=$(awk '$1=="github.com/axllent/mailpit" {print $2; exit}' "$mod/go.mod")
ldflags="-s -w -X github.com/axllent/mailpit/config.Version=$version"
key=$( (cat "$mod/go.mod" "$mod/go.sum"; go env GOVERSION; echo "$ldflags") | sha256sum | cut -c1-16)
out="$cache/mailpit/$key"
if [[ -x "$out/mailpit" ]]; then
  echo "$out"
  exit 0
fi
if [[ "${1:-}" == "--cached" ]]; then
  echo "mailpit $version is not built; run hack/testenv/build-mailpit.sh" >&2
  exit 1
fi
mkdir -p "$out.tmp"
cd "$mod"
echo "building mailpit $version into $out" >&2
start=$(date +%s)
# Pure Go (modernc.org/sqlite), so CGO is off like mailpit's own release builds.
CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" -o "$out.tmp/mailpit" github.com/axllent/mailpit
rm -rf "$out" && mv "$out.tmp" "$out"
echo "built in $(( $(date +%s) - start ))s" >&2
echo "$out"
