#!/usr/bin/env bash
# Installs headless Chromium (Debian's package chromium) when it is missing:
# the report tests (sink/report, cmd/kubesift) open report.html in the real
# browser. hack/test.sh runs it; with KUBESIFT_REQUIRE_REAL=1 those tests
# fail without it, otherwise they skip saying so. Idempotent.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
sudo=
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "chromium.sh: chromium is missing; run: apt-get install -y chromium" >&2; exit 1; }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# With its recommended fonts: the screenshots are read by people.
$sudo apt-get install -y -qq chromium >/dev/null
command -v chromium >/dev/null
