{{/*
Names derive from the release (kubesift.fullname), so that several releases
can share a cluster and `helm install -n NS` puts its objects in NS. As
release "kubesift" they are the names of the Kustomize manifests
(deployments/kubernetes) and of the webhook kubeconfig of deployments/audit
(kubesift-collector-webhook.kubesift-collector.svc with collectorNamespace
kubesift-collector). Cut to 39 characters: the longest suffix,
"-collector-audit-metrics", must still fit a 63-character DNS label.
*/}}
{{- define "kubesift.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 39 | trimSuffix "-" -}}
{{- end -}}

{{- define "kubesift.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 39 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 39 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 39 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A derived name: (dict "root" . "suffix" "collector") -> <fullname>-collector. */}}
{{- define "kubesift.component" -}}
{{- printf "%s-%s" (include "kubesift.fullname" .root) .suffix -}}
{{- end -}}

{{/*
The collectors' namespace: collectorNamespace, else the release namespace
(where everything else always goes).
*/}}
{{- define "kubesift.collectorNamespace" -}}
{{- .Values.collectorNamespace | default .Release.Namespace -}}
{{- end -}}

{{- define "kubesift.central" -}}
{{- if eq .Values.mode "central" }}true{{ end -}}
{{- end -}}

{{/* Whether the collector DaemonSet (Events, webhook, objects) is rendered. */}}
{{- define "kubesift.collectorEnabled" -}}
{{- $c := .Values.collector -}}
{{- if or $c.events.enabled $c.auditWebhook.enabled $c.objects.enabled }}true{{ end -}}
{{- end -}}

{{/* Labels of every object; selectors use name, instance and component. */}}
{{- define "kubesift.labels" -}}
app.kubernetes.io/name: {{ include "kubesift.name" .root }}
app.kubernetes.io/part-of: kubesift
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{/* (dict "root" . "component" C): the pods of component C of this release. */}}
{{- define "kubesift.selector" -}}
{{ include "kubesift.instanceSelector" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Every pod of this release. */}}
{{- define "kubesift.instanceSelector" -}}
app.kubernetes.io/name: {{ include "kubesift.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kubesift.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/*
A pod template's metadata: (dict "root" . "component" C "v" values-section
"config" rendered-config). podLabels never override the chart's labels
(the selectors use them); podAnnotations may override the prometheus.io/* ones.
*/}}
{{- define "kubesift.podMetadata" -}}
labels:
  {{- $labels := include "kubesift.labels" (dict "root" .root "component" .component) | fromYaml }}
  {{- toYaml (mustMergeOverwrite (deepCopy (.v.podLabels | default dict)) $labels) | nindent 2 }}
annotations:
  {{- $ann := dict "prometheus.io/scrape" "true" "prometheus.io/port" "9090" "prometheus.io/path" "/metrics" }}
  {{- $_ := set $ann "checksum/config" (.config | sha256sum) }}
  {{- toYaml (mustMergeOverwrite $ann (deepCopy (.v.podAnnotations | default dict))) | nindent 2 }}
{{- end -}}

{{/* A pod's scheduling: (dict "v" values-section). */}}
{{- define "kubesift.podScheduling" -}}
{{- with .v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end -}}

{{/* Container hardening, the same for every container. */}}
{{- define "kubesift.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: {{ .runAsUser | default 65532 }}
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "kubesift.probes" -}}
readinessProbe:
  httpGet:
    path: /readyz
    port: metrics
  periodSeconds: 5
  failureThreshold: 3
livenessProbe:
  httpGet:
    path: /healthz
    port: metrics
  initialDelaySeconds: 10
  periodSeconds: 10
  failureThreshold: 6
{{- end -}}

{{- define "kubesift.kafkaPasswordEnv" -}}
- name: KUBESIFT_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "kubesift.component" (dict "root" . "suffix" "kafka") }}
      key: password
      optional: true
{{- end -}}

{{- define "kubesift.esAPIKeyEnv" -}}
- name: KUBESIFT_ES_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "kubesift.component" (dict "root" . "suffix" "elasticsearch") }}
      key: api-key
      optional: true
{{- end -}}

{{/* The config sections every component shares: cluster, log, server, kafka. */}}
{{- define "kubesift.commonConfig" -}}
{{- $v := .Values -}}
{{- $kafka := dict "brokers" $v.kafka.brokers -}}
{{- with $v.kafka.topics }}{{ $_ := set $kafka "topics" . }}{{ end -}}
{{- if $v.kafka.tls.enabled -}}
{{- $tls := dict "enabled" true "ca_file" "/etc/kubesift-secrets/kafka-tls/ca.crt" -}}
{{- if $v.kafka.tls.clientCertificate -}}
{{- $_ := set $tls "cert_file" "/etc/kubesift-secrets/kafka-tls/tls.crt" -}}
{{- $_ := set $tls "key_file" "/etc/kubesift-secrets/kafka-tls/tls.key" -}}
{{- end -}}
{{- if $v.kafka.tls.insecureSkipVerify }}{{ $_ := set $tls "insecure_skip_verify" true }}{{ end -}}
{{- $_ := set $kafka "tls" $tls -}}
{{- end -}}
{{- if $v.kafka.sasl.mechanism -}}
{{- $_ := set $kafka "sasl" (dict "mechanism" $v.kafka.sasl.mechanism "username" $v.kafka.sasl.username) -}}
{{- end -}}
{{- $cfg := dict "cluster" (dict "name" $v.cluster.name) "log" (dict "level" $v.log.level "format" $v.log.format) "server" (dict "listen" ":9090") "kafka" $kafka -}}
{{- toYaml $cfg -}}
{{- end -}}

{{- define "kubesift.esConfig" -}}
{{- $es := dict "addresses" .Values.elasticsearch.addresses -}}
{{- if .Values.elasticsearch.caFromSecret }}{{ $_ := set $es "ca_file" "/etc/kubesift-secrets/elasticsearch-tls/ca.crt" }}{{ end -}}
{{- toYaml (dict "sink" (dict "elasticsearch" $es)) -}}
{{- end -}}

{{/* collect on every node: Events (leader only) and the audit webhook. */}}
{{- define "kubesift.collectorConfig" -}}
{{- $v := .Values.collector -}}
{{- $cfg := include "kubesift.commonConfig" . | fromYaml -}}
{{- $col := dict -}}
{{- if $v.auditWebhook.enabled -}}
{{- $_ := set $col "audit_webhook" (dict "enabled" true "listen" ":8443" "tls_cert_file" "/etc/kubesift-secrets/webhook-tls/tls.crt" "tls_key_file" "/etc/kubesift-secrets/webhook-tls/tls.key" "client_ca_file" "/etc/kubesift-secrets/webhook-tls/ca.crt") -}}
{{- end -}}
{{- if $v.events.enabled -}}
{{- $ev := dict "enabled" true "apis" $v.events.apis "leader_election" (dict "lease_name" (include "kubesift.component" (dict "root" . "suffix" "events-leader"))) "watermark" (dict "lease_name" (include "kubesift.component" (dict "root" . "suffix" "events-watermark"))) -}}
{{- with $v.events.namespaces }}{{ $_ := set $ev "namespaces" . }}{{ end -}}
{{- if not $v.events.enrichPods }}{{ $_ := set $ev "enrich" (dict "pods" false) }}{{ end -}}
{{- $_ := set $col "events" $ev -}}
{{- end -}}
{{- if $v.objects.enabled -}}
{{- $_ := set $col "objects" (dict "enabled" true "leader_election" (dict "lease_name" (include "kubesift.component" (dict "root" . "suffix" "objects-leader")))) -}}
{{- end -}}
{{- $_ := set $cfg "collector" $col -}}
{{- $_ := set $cfg "publish" (dict "spool" (dict "dir" "/var/lib/kubesift/spool" "max_bytes" (int64 $v.spool.maxBytes))) -}}
{{- toYaml (mustMergeOverwrite $cfg (deepCopy $v.config)) -}}
{{- end -}}

{{/* collect on control-plane nodes: the audit log tail. */}}
{{- define "kubesift.collectorAuditConfig" -}}
{{- $v := .Values.collectorAudit -}}
{{- $cfg := include "kubesift.commonConfig" . | fromYaml -}}
{{- $tail := dict "enabled" true "paths" (list (printf "/var/log/kubernetes/audit/%s" $v.logFile)) "positions_file" "/var/lib/kubesift/positions.yaml" "start_at" $v.startAt -}}
{{- $_ := set $cfg "collector" (dict "audit_tail" $tail) -}}
{{- $_ := set $cfg "publish" (dict "spool" (dict "dir" "/var/lib/kubesift/spool" "max_bytes" (int64 $v.spoolMaxBytes))) -}}
{{- toYaml (mustMergeOverwrite $cfg (deepCopy $v.config)) -}}
{{- end -}}

{{- define "kubesift.processorConfig" -}}
{{- $v := .Values.processor -}}
{{- $cfg := include "kubesift.commonConfig" . | fromYaml -}}
{{- $cfg = mustMergeOverwrite $cfg (include "kubesift.esConfig" . | fromYaml) -}}
{{- $_ := unset $cfg "cluster" -}}
{{- $_ := set $cfg "processor" (dict "group_id" (include "kubesift.component" (dict "root" . "suffix" "processor")) "rules" (dict "dirs" (list "/etc/kubesift-rules") "reload_interval" $v.rules.reloadInterval)) -}}
{{- toYaml (mustMergeOverwrite $cfg (deepCopy $v.config)) -}}
{{- end -}}

{{- define "kubesift.notifierConfig" -}}
{{- $v := .Values.notifier -}}
{{- $cfg := include "kubesift.commonConfig" . | fromYaml -}}
{{- $cfg = mustMergeOverwrite $cfg (include "kubesift.esConfig" . | fromYaml) -}}
{{- $_ := unset $cfg "cluster" -}}
{{- $_ := set $cfg "notify" (dict "route" $v.route "receivers" $v.receivers) -}}
{{- toYaml (mustMergeOverwrite $cfg (deepCopy $v.config)) -}}
{{- end -}}

{{/* One NetworkPolicy egress rule: ports (TCP) and optional peers. */}}
{{- define "kubesift.egressRule" -}}
- ports:
  {{- range .ports }}
    - port: {{ . }}
      protocol: TCP
  {{- end }}
  {{- with .to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{- define "kubesift.dnsEgress" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
  {{- with .Values.networkPolicy.dns.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* The metrics ingress rule. */}}
{{- define "kubesift.metricsIngress" -}}
- ports:
    - port: metrics
      protocol: TCP
  {{- with .Values.networkPolicy.metricsFrom }}
  from:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* The metrics endpoint of a ServiceMonitor or PodMonitor: (dict "m" section). */}}
{{- define "kubesift.metricsEndpoint" -}}
- port: metrics
  path: /metrics
  {{- with .m.interval }}
  interval: {{ . }}
  {{- end }}
  {{- with .m.scrapeTimeout }}
  scrapeTimeout: {{ . }}
  {{- end }}
  {{- with .m.scheme }}
  scheme: {{ . }}
  {{- end }}
  {{- with .m.tlsConfig }}
  tlsConfig:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .m.authorization }}
  authorization:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* The namespaces that hold this release's pods (a YAML list). */}}
{{- define "kubesift.podNamespaces" -}}
{{- $ns := list -}}
{{- if include "kubesift.central" . }}{{ $ns = append $ns .Release.Namespace }}{{ end -}}
{{- if or (include "kubesift.collectorEnabled" .) .Values.collectorAudit.enabled }}{{ $ns = append $ns (include "kubesift.collectorNamespace" .) }}{{ end -}}
{{- toYaml ($ns | uniq) -}}
{{- end -}}
