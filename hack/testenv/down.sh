#!/usr/bin/env bash
# Stops the test ground (data kept). With --clean, also removes its state.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
action=stop
[[ "${1:-}" == "--clean" ]] && action=clean
rc=0
for p in kube kafka es; do "$here/$p.sh" "$action" || rc=1; done
exit $rc
