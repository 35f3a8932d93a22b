#!/usr/bin/env bash
# Starts the whole test ground — kube-apiserver + etcd, Kafka (KRaft) and
# Elasticsearch — and waits until each is healthy. Builds/installs what is not
# cached yet (see each script). Parts can be chosen: up.sh kafka es
# Prints each part's start-up time; exits non-zero if any part fails.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
parts=("$@")
[[ ${#parts[@]} -gt 0 ]] || parts=(kube kafka es)

# Build/install first, one at a time: on 2 cores parallel builds only thrash.
for p in "${parts[@]}"; do
  case "$p" in
    kube) "$here/build-kube.sh" >/dev/null ;;
    kafka) "$here/kafka.sh" install ;;
    es) "$here/es.sh" install ;;
    *) echo "up.sh: unknown part $p (kube, kafka, es)" >&2; exit 2 ;;
  esac
done
# Then start all, and wait for all: the JVMs and the API server boot in parallel.
for p in "${parts[@]}"; do "$here/$p.sh" start; done
rc=0
for p in "${parts[@]}"; do "$here/$p.sh" wait || rc=1; done
exit $rc
