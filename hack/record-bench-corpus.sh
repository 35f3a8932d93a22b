#!/usr/bin/env bash
# Records rules/testdata/bench-audit.log.gz: a few thousand audit events from
# the real test-ground kube-apiserver under a mix of traffic (creates of
# configmaps, deployments and pods with bodies, reads, lists, patches,
# deletes, forbidden requests by an unprivileged user). The rules benchmarks
# run on it, so their figures reflect real event shapes and sizes.
#   hack/testenv/up.sh kube && hack/record-bench-corpus.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source "${KUBESIFT_TESTENV:-$PWD/.testenv}/env.kube"
out=${1:-rules/testdata/bench-audit.log.gz}
mkdir -p "$(dirname "$out")"
ka() { kubectl --kubeconfig "$KUBESIFT_KUBECONFIG_ADMIN" "$@"; }
ku() { kubectl --server "$KUBESIFT_KUBE_URL" --certificate-authority "$KUBESIFT_KUBE_CA" --token "$(cat "$KUBESIFT_KUBE_USER_TOKEN_FILE")" "$@"; }
start=$(stat -c %s "$KUBESIFT_AUDIT_LOG")
ns=bench-$RANDOM
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ka create namespace "$ns" >/dev/null
# Objects with realistic bodies: configmaps, deployments, pods.
for i in $(seq 1 300); do
  cat <<YAML
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg-$i, namespace: $ns, labels: {app: web, tier: "t$((i % 5))"}}
data:
  app.properties: "color=blue\nsize=$i\nfeature.flags=a,b,c\nendpoint=https://svc-$i.$ns.svc.cluster.local:8443/api/v1\n"
  settings.json: '{"replicas": $i, "timeoutSeconds": 30, "log": {"level": "info", "format": "json"}}'
YAML
done > "$tmp/cm.yaml"
for i in $(seq 1 100); do
  cat <<YAML
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web-$i, namespace: $ns, labels: {app: web-$i}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web-$i}}
  template:
    metadata: {labels: {app: web-$i, version: v$((i % 3))}}
    spec:
      containers:
      - name: web
        image: registry.k8s.io/nginx-slim:0.$i
        ports: [{containerPort: 8080}]
        resources: {requests: {cpu: 100m, memory: 64Mi}, limits: {memory: 128Mi}}
        securityContext: {runAsNonRoot: true, allowPrivilegeEscalation: false}
---
apiVersion: v1
kind: Pod
metadata: {name: job-$i, namespace: $ns, labels: {app: batch}}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: docker.io/library/busybox:1.36
    command: [sh, -c, "echo $i"]
    securityContext: {privileged: $([ $((i % 10)) = 0 ] && echo true || echo false)}
YAML
done > "$tmp/work.yaml"
for round in 1 2; do
  ka apply -f "$tmp/cm.yaml" >/dev/null
  ka apply -f "$tmp/work.yaml" >/dev/null
  for i in $(seq 1 60); do ka -n "$ns" get configmap "cfg-$i" -o name >/dev/null; done
  for i in $(seq 1 20); do ka -n "$ns" get pods,deployments,configmaps >/dev/null; done
  for i in $(seq 1 40); do ka -n "$ns" patch configmap "cfg-$i" -p "{\"data\":{\"round\":\"$round\"}}" >/dev/null; done
  for i in $(seq 1 30); do ku -n kube-system get secrets >/dev/null 2>&1 || true; done
  ka -n "$ns" delete pods --all --wait=false >/dev/null
done
ka delete namespace "$ns" --wait=false >/dev/null
sleep 2
tail -c +"$((start + 1))" "$KUBESIFT_AUDIT_LOG" | gzip -9 > "$out"
n=$(zcat "$out" | wc -l)
echo "recorded $n audit events ($(zcat "$out" | wc -c) bytes, $(du -h "$out" | cut -f1) gzipped) into $out"
