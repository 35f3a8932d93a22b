#!/usr/bin/env bash
# Records cmd/kubesift/sample/audit.log from the real test-ground
# kube-apiserver: a short scripted session of benign and suspicious requests
# (namespace, deployment, privileged pod, exec attempt, cluster-admin binding,
# forbidden secret reads by an unprivileged user). Run with the ground up:
#   hack/testenv/up.sh kube && hack/record-sample.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source "${KUBESIFT_TESTENV:-$PWD/.testenv}/env.kube"
out=${1:-cmd/kubesift/sample/audit.log}
ka() { kubectl --kubeconfig "$KUBESIFT_KUBECONFIG_ADMIN" "$@"; }
ku() { kubectl --server "$KUBESIFT_KUBE_URL" --certificate-authority "$KUBESIFT_KUBE_CA" --token "$(cat "$KUBESIFT_KUBE_USER_TOKEN_FILE")" "$@"; }
start=$(stat -c %s "$KUBESIFT_AUDIT_LOG")
ns=sample-$RANDOM

ka create namespace "$ns"
ka -n "$ns" create deployment web --image=nginx:1.27 --replicas=2
ka -n "$ns" scale deployment web --replicas=3
ka -n "$ns" create configmap app-settings --from-literal=color=blue
ka -n "$ns" get configmap app-settings -o name
ka -n "$ns" run debug --image=busybox:1.36 --privileged --restart=Never -- sleep 3600
ka -n "$ns" exec debug -- id || true   # no kubelet: refused, but audited
ka create clusterrolebinding "sample-admin-$ns" --clusterrole=cluster-admin --user=mallory
for i in 1 2 3 4 5 6; do ku get secrets -n kube-system >/dev/null 2>&1 || true; done
ku auth can-i --list -n "$ns" >/dev/null 2>&1 || true
ka delete clusterrolebinding "sample-admin-$ns"
ka delete namespace "$ns" --wait=false
sleep 2   # the log backend is blocking, but let the last stage land

tail -c +"$((start + 1))" "$KUBESIFT_AUDIT_LOG" > "$out"
echo "recorded $(wc -l < "$out") audit events ($(du -h "$out" | cut -f1)) into $out"
