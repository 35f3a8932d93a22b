#!/usr/bin/env bash
# The whole test suite: lint, start the real test ground (building or
# installing its servers on first use), run every test with -race and
# -shuffle=on against it, fuzz each decoder briefly, and stop the ground again
# whatever happened. This is what `make test` and CI run.
set -euo pipefail
cd "$(dirname "$0")/.."
export KUBESIFT_TESTENV=${KUBESIFT_TESTENV:-$PWD/.testenv}
t0=$(date +%s)
stamp() { echo "== $1 ($(( $(date +%s) - t0 ))s elapsed)"; }

stamp "lint"
make --no-print-directory lint

stamp "chromium"
hack/testenv/chromium.sh

stamp "alertmanager"
# Built (or taken from the cache) before the ground starts: the notifier's
# tests start their own Alertmanager from this binary.
hack/testenv/build-alertmanager.sh >/dev/null

stamp "test ground up"
# Each run starts from an empty broker: the topics tests leave behind would
# pile up across runs on a developer's machine, and a broker holding
# thousands of partitions takes minutes to recover after the fault tests kill it.
hack/testenv/kafka.sh clean >/dev/null
trap 'stamp "test ground down"; hack/testenv/down.sh >/dev/null 2>&1 || true' EXIT
hack/testenv/up.sh

stamp "mailpit"
# The e-mail notifier's tests start their own mailpit from this cached build.
hack/testenv/build-mailpit.sh >/dev/null

stamp "go test"
# Integration tests must not skip here: a missing server fails the run.
export KUBESIFT_REQUIRE_REAL=${KUBESIFT_REQUIRE_REAL:-1}
go test -race -shuffle=on -count=1 -timeout 40m ./... 2>&1 | tee .testenv/go-test.log
# The deployment tests are a module of their own (Helm and Kustomize stay out
# of the main module's graph); same ground, same rules.
stamp "go test (test/deploy)"
(cd test/deploy && go test -race -shuffle=on -count=1 -timeout 20m ./...) 2>&1 | tee .testenv/go-test-deploy.log

stamp "fuzz"
FUZZTIME=${FUZZTIME:-10s} hack/fuzz.sh

stamp "done"
