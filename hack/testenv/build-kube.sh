#!/usr/bin/env bash
# Builds kube-apiserver and etcd from the pinned Go modules in test/tools and
# caches the binaries under $KUBESIFT_CACHE/kube/<key>, where key is a hash of
# the tools module's go.mod, go.sum, its sources and the Go version. A warm
# cache costs nothing; a cold build of kube-apiserver takes ~20 min on 2 cores.
# Prints the directory that holds the binaries.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tools="$root/test/tools"
cache="${KUBESIFT_CACHE:-$HOME/.cache/kubesift}"
# The version stamped into kube-apiserver, read from the tools module's pin so
# /version and the apiserver's own user agent say v1.37.2, not v0.0.0-master.
kver=$(awk '$1=="k8s.io/kubernetes" {print $2; exit}' "$tools/go.mod")
kminor=$(echo "$kver" | cut -d. -f2)
vpkg=k8s.io/component-base/version
ldflags="-s -w -X $vpkg.gitVersion=$kver -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$kminor -X $vpkg.gitTreeState=clean"
key=$( (cat "$tools/go.mod" "$tools/go.sum" "$tools/cmd/etcd/main.go"; go env GOVERSION; echo "$ldflags") | sha256sum | cut -c1-16)
out="$cache/kube/$key"
if [[ -x "$out/kube-apiserver" && -x "$out/etcd" ]]; then
  echo "$out"
  exit 0
fi
# Two grounds started at once (two checkouts, or a second ground on other
# ports) share the cache: the second waits for the first's build instead of
# building into the same temporary directory.
mkdir -p "$cache/kube"
exec 9>"$out.lock"
flock 9
if [[ -x "$out/kube-apiserver" && -x "$out/etcd" ]]; then
  echo "$out"
  exit 0
fi
rm -rf "$out.tmp"
mkdir -p "$out.tmp"
cd "$tools"
echo "building etcd and kube-apiserver into $out (cold build: ~20 min on 2 cores)" >&2
start=$(date +%s)
# -trimpath and no DWARF keep the binaries small; CGO is off like upstream's release builds.
CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$out.tmp/etcd" ./cmd/etcd
CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" -o "$out.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
rm -rf "$out" && mv "$out.tmp" "$out"
echo "built in $(( $(date +%s) - start ))s" >&2
echo "$out"
