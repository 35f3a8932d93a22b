package posture

import (
	"encoding/json"
	"strings"
)

// Control-plane Pods as kubeadm writes them (/etc/kubernetes/manifests,
// kubeadm v1.31 defaults) and as the kubelet mirrors them into the API:
// name <component>-<node>, the config.mirror annotation, the command in
// spec.containers[0].command. The default flags fail several CIS items, so
// the fixtures add the hardening flags (hardened*); cases then remove or
// change one flag at a time.
var (
	kubeadmAPIServer = []string{"kube-apiserver",
		"--advertise-address=10.0.0.10", "--allow-privileged=true", "--authorization-mode=Node,RBAC",
		"--client-ca-file=/etc/kubernetes/pki/ca.crt", "--enable-admission-plugins=NodeRestriction",
		"--enable-bootstrap-token-auth=true", "--etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt",
		"--etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.crt", "--etcd-keyfile=/etc/kubernetes/pki/apiserver-etcd-client.key",
		"--etcd-servers=https://127.0.0.1:2379", "--kubelet-client-certificate=/etc/kubernetes/pki/apiserver-kubelet-client.crt",
		"--kubelet-client-key=/etc/kubernetes/pki/apiserver-kubelet-client.key", "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
		"--proxy-client-cert-file=/etc/kubernetes/pki/front-proxy-client.crt", "--proxy-client-key-file=/etc/kubernetes/pki/front-proxy-client.key",
		"--requestheader-allowed-names=front-proxy-client", "--requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-", "--requestheader-group-headers=X-Remote-Group",
		"--requestheader-username-headers=X-Remote-User", "--secure-port=6443", "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=/etc/kubernetes/pki/sa.pub", "--service-account-signing-key-file=/etc/kubernetes/pki/sa.key",
		"--service-cluster-ip-range=10.96.0.0/12", "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt",
		"--tls-private-key-file=/etc/kubernetes/pki/apiserver.key"}
	hardenedAPIServer = editFlags(kubeadmAPIServer, "--anonymous-auth=false", "--profiling=false",
		"--enable-admission-plugins=NodeRestriction,EventRateLimit,AlwaysPullImages,DenyServiceExternalIPs",
		"--admission-control-config-file=/etc/kubernetes/admission.yaml",
		"--kubelet-certificate-authority=/etc/kubernetes/pki/ca.crt",
		"--audit-policy-file=/etc/kubernetes/audit-policy.yaml", "--audit-log-path=/var/log/kubernetes/audit.log",
		"--audit-log-maxage=30", "--audit-log-maxbackup=10", "--audit-log-maxsize=100",
		"--encryption-provider-config=/etc/kubernetes/encryption.yaml",
		"--tls-cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_AES_128_GCM_SHA256")

	kubeadmControllerManager = []string{"kube-controller-manager",
		"--allocate-node-cidrs=true", "--authentication-kubeconfig=/etc/kubernetes/controller-manager.conf",
		"--authorization-kubeconfig=/etc/kubernetes/controller-manager.conf", "--bind-address=127.0.0.1",
		"--client-ca-file=/etc/kubernetes/pki/ca.crt", "--cluster-cidr=10.244.0.0/16", "--cluster-name=kubernetes",
		"--cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt", "--cluster-signing-key-file=/etc/kubernetes/pki/ca.key",
		"--controllers=*,bootstrapsigner,tokencleaner", "--kubeconfig=/etc/kubernetes/controller-manager.conf",
		"--leader-elect=true", "--requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt",
		"--root-ca-file=/etc/kubernetes/pki/ca.crt", "--service-account-private-key-file=/etc/kubernetes/pki/sa.key",
		"--service-cluster-ip-range=10.96.0.0/12", "--use-service-account-credentials=true"}
	hardenedControllerManager = editFlags(kubeadmControllerManager, "--profiling=false", "--terminated-pod-gc-threshold=10")

	kubeadmScheduler = []string{"kube-scheduler",
		"--authentication-kubeconfig=/etc/kubernetes/scheduler.conf", "--authorization-kubeconfig=/etc/kubernetes/scheduler.conf",
		"--bind-address=127.0.0.1", "--kubeconfig=/etc/kubernetes/scheduler.conf", "--leader-elect=true"}
	hardenedScheduler = editFlags(kubeadmScheduler, "--profiling=false")

	kubeadmEtcd = []string{"etcd",
		"--advertise-client-urls=https://10.0.0.10:2379", "--cert-file=/etc/kubernetes/pki/etcd/server.crt",
		"--client-cert-auth=true", "--data-dir=/var/lib/etcd", "--experimental-initial-corrupt-check=true",
		"--experimental-watch-progress-notify-interval=5s", "--initial-advertise-peer-urls=https://10.0.0.10:2380",
		"--initial-cluster=cp=https://10.0.0.10:2380", "--key-file=/etc/kubernetes/pki/etcd/server.key",
		"--listen-client-urls=https://127.0.0.1:2379,https://10.0.0.10:2379", "--listen-metrics-urls=http://127.0.0.1:2381",
		"--listen-peer-urls=https://10.0.0.10:2380", "--name=cp", "--peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt",
		"--peer-client-cert-auth=true", "--peer-key-file=/etc/kubernetes/pki/etcd/peer.key",
		"--peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt", "--snapshot-count=10000",
		"--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt"}
)

// controlPlanePod renders a control-plane mirror Pod running cmd, the way
// the kubelet creates it for a static Pod of node cp.
func controlPlanePod(component, image string, cmd []string) string {
	c, _ := json.Marshal(cmd)
	return `
apiVersion: v1
kind: Pod
metadata:
  name: ` + component + `-cp
  namespace: kube-system
  labels: {component: ` + component + `, tier: control-plane}
  annotations: {kubernetes.io/config.mirror: "5d4c3b2a", kubernetes.io/config.source: file, kubernetes.io/config.hash: "5d4c3b2a"}
spec:
  hostNetwork: true
  nodeName: cp
  priorityClassName: system-node-critical
  securityContext: {seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: ` + component + `
    image: registry.k8s.io/` + image + `
    command: ` + string(c) + `
    volumeMounts: [{name: k8s-certs, mountPath: /etc/kubernetes/pki, readOnly: true}]
  volumes:
  - {name: k8s-certs, hostPath: {path: /etc/kubernetes/pki, type: DirectoryOrCreate}}
`
}

// editFlags returns cmd with edits applied: "!--f" removes every occurrence
// of --f, "+--f=v" appends one (an earlier one stays, so the last wins),
// and "--f=v" replaces every occurrence by one at the end.
func editFlags(cmd []string, edits ...string) []string {
	out := append([]string(nil), cmd...)
	for _, e := range edits {
		appendOnly := strings.HasPrefix(e, "+")
		e = strings.TrimPrefix(e, "+")
		name, _, _ := strings.Cut(strings.TrimPrefix(e, "!"), "=")
		if !appendOnly {
			out = slicesDeleteFlag(out, name)
		}
		if !strings.HasPrefix(e, "!") {
			out = append(out, e)
		}
	}
	return out
}

func slicesDeleteFlag(cmd []string, name string) []string {
	var out []string
	for _, a := range cmd {
		if a != name && !strings.HasPrefix(a, name+"=") {
			out = append(out, a)
		}
	}
	return out
}

// controlPlaneCases are TestChecks' rows for the control-plane checks: per
// check a hardened kubeadm Pod that passes and one flag edit that fails it,
// plus the look-alikes the flag helpers must not be fooled by.
func controlPlaneCases() []checkCase {
	type component struct {
		name, image string
		hardened    []string
	}
	api := component{"kube-apiserver", "kube-apiserver:v1.31.0", hardenedAPIServer}
	cm := component{"kube-controller-manager", "kube-controller-manager:v1.31.0", hardenedControllerManager}
	sched := component{"kube-scheduler", "kube-scheduler:v1.31.0", hardenedScheduler}
	etcd := component{"etcd", "etcd:3.5.15-0", kubeadmEtcd}
	row := func(c component, name, check string, fail bool, edits ...string) checkCase {
		cmd := editFlags(c.hardened, edits...)
		return checkCase{name: name, check: check, base: controlPlanePod(c.name, c.image, cmd),
			uid: "uid-pod-kube-system-" + c.name + "-cp", fail: fail}
	}
	return []checkCase{
		row(api, "apiserver anonymous auth by default", "posture-apiserver-anonymous-auth", true, "!--anonymous-auth"),
		row(api, "apiserver anonymous auth true", "posture-apiserver-anonymous-auth", true, "--anonymous-auth=true"),
		row(api, "apiserver anonymous auth false, then true: last wins", "posture-apiserver-anonymous-auth", true, "+--anonymous-auth=true"),
		row(api, "apiserver anonymous auth off", "posture-apiserver-anonymous-auth", false),
		row(api, "apiserver anonymous auth off, spelled 0", "posture-apiserver-anonymous-auth", false, "--anonymous-auth=0"),
		row(api, "apiserver static tokens", "posture-apiserver-token-auth-file", true, "--token-auth-file=/etc/kubernetes/tokens.csv"),
		row(api, "apiserver no static tokens", "posture-apiserver-token-auth-file", false),
		row(api, "apiserver without DenyServiceExternalIPs", "posture-apiserver-deny-external-ips", true, "--enable-admission-plugins=NodeRestriction"),
		row(api, "apiserver with DenyServiceExternalIPs", "posture-apiserver-deny-external-ips", false),
		row(api, "apiserver without kubelet client key", "posture-apiserver-kubelet-client-cert", true, "!--kubelet-client-key"),
		row(api, "apiserver with kubelet client cert", "posture-apiserver-kubelet-client-cert", false),
		row(api, "apiserver without kubelet CA", "posture-apiserver-kubelet-ca", true, "!--kubelet-certificate-authority"),
		row(api, "apiserver with kubelet CA", "posture-apiserver-kubelet-ca", false),
		row(api, "apiserver AlwaysAllow", "posture-apiserver-always-allow", true, "--authorization-mode=Node,RBAC,AlwaysAllow"),
		row(api, "apiserver Node,RBAC", "posture-apiserver-always-allow", false),
		row(api, "apiserver authz RBAC only", "posture-apiserver-authz-node", true, "--authorization-mode=RBAC"),
		row(api, "apiserver authz Node", "posture-apiserver-authz-node", false),
		row(api, "apiserver authz Node, spaced", "posture-apiserver-authz-node", false, "--authorization-mode=RBAC, Node"),
		row(api, "apiserver authz without RBAC", "posture-apiserver-authz-rbac", true, "--authorization-mode=Node,ABAC"),
		row(api, "apiserver authz RBAC", "posture-apiserver-authz-rbac", false),
		row(api, "apiserver without EventRateLimit", "posture-apiserver-event-rate-limit", true, "--enable-admission-plugins=NodeRestriction"),
		row(api, "apiserver with EventRateLimit", "posture-apiserver-event-rate-limit", false),
		row(api, "apiserver AlwaysAdmit", "posture-apiserver-always-admit", true, "--enable-admission-plugins=NodeRestriction,AlwaysAdmit"),
		row(api, "apiserver AlwaysAdmit only disabled", "posture-apiserver-always-admit", false, "--disable-admission-plugins=AlwaysAdmit"),
		row(api, "apiserver without AlwaysPullImages", "posture-apiserver-always-pull-images", true, "--enable-admission-plugins=NodeRestriction"),
		row(api, "apiserver with AlwaysPullImages", "posture-apiserver-always-pull-images", false),
		row(api, "apiserver ServiceAccount plugin disabled", "posture-apiserver-sa-admission-disabled", true, "--disable-admission-plugins=ServiceAccount"),
		row(api, "apiserver other plugin disabled", "posture-apiserver-sa-admission-disabled", false, "--disable-admission-plugins=ServiceAccountTokens"),
		row(api, "apiserver NamespaceLifecycle disabled", "posture-apiserver-namespace-lifecycle-disabled", true, "--disable-admission-plugins=StorageObjectInUseProtection,NamespaceLifecycle"),
		row(api, "apiserver NamespaceLifecycle on", "posture-apiserver-namespace-lifecycle-disabled", false),
		row(api, "apiserver kubeadm without NodeRestriction", "posture-apiserver-node-restriction", true, "--enable-admission-plugins=EventRateLimit"),
		row(api, "apiserver NodeRestriction", "posture-apiserver-node-restriction", false),
		row(api, "apiserver profiling by default", "posture-apiserver-profiling", true, "!--profiling"),
		row(api, "apiserver bare --profiling", "posture-apiserver-profiling", true, "--profiling"),
		row(api, "apiserver profiling off", "posture-apiserver-profiling", false),
		row(api, "apiserver profiling off, split form", "posture-apiserver-profiling", false, "!--profiling", "--profiling", "+false"),
		row(api, "apiserver no audit log", "posture-apiserver-audit-log-path", true, "!--audit-log-path"),
		row(api, "apiserver audit log", "posture-apiserver-audit-log-path", false),
		row(api, "apiserver audit maxage 7", "posture-apiserver-audit-log-maxage", true, "--audit-log-maxage=7"),
		row(api, "apiserver audit maxage unset", "posture-apiserver-audit-log-maxage", true, "!--audit-log-maxage"),
		row(api, "apiserver audit maxage not a number", "posture-apiserver-audit-log-maxage", true, "--audit-log-maxage=thirty"),
		row(api, "apiserver audit maxage 90", "posture-apiserver-audit-log-maxage", false, "--audit-log-maxage=90"),
		row(api, "apiserver audit maxbackup 5", "posture-apiserver-audit-log-maxbackup", true, "--audit-log-maxbackup=5"),
		row(api, "apiserver audit maxbackup 10", "posture-apiserver-audit-log-maxbackup", false),
		row(api, "apiserver audit maxsize 10", "posture-apiserver-audit-log-maxsize", true, "--audit-log-maxsize=10"),
		row(api, "apiserver audit maxsize 1024", "posture-apiserver-audit-log-maxsize", false, "--audit-log-maxsize=1024"),
		row(api, "apiserver service-account lookup off", "posture-apiserver-sa-lookup", true, "--service-account-lookup=false"),
		row(api, "apiserver service-account lookup default", "posture-apiserver-sa-lookup", false),
		row(api, "apiserver no service-account key", "posture-apiserver-sa-key-file", true, "!--service-account-key-file"),
		row(api, "apiserver service-account key", "posture-apiserver-sa-key-file", false),
		row(api, "apiserver no etcd client cert", "posture-apiserver-etcd-client-cert", true, "!--etcd-certfile"),
		row(api, "apiserver etcd client cert", "posture-apiserver-etcd-client-cert", false),
		row(api, "apiserver no TLS key", "posture-apiserver-tls-cert", true, "!--tls-private-key-file"),
		row(api, "apiserver TLS cert", "posture-apiserver-tls-cert", false),
		row(api, "apiserver no client CA", "posture-apiserver-client-ca", true, "!--client-ca-file"),
		row(api, "apiserver client CA", "posture-apiserver-client-ca", false),
		row(api, "apiserver no etcd CA", "posture-apiserver-etcd-ca", true, "!--etcd-cafile"),
		row(api, "apiserver etcd CA", "posture-apiserver-etcd-ca", false),
		row(api, "apiserver no encryption at rest", "posture-apiserver-encryption-config", true, "!--encryption-provider-config"),
		row(api, "apiserver encryption at rest", "posture-apiserver-encryption-config", false),
		row(api, "apiserver default ciphers", "posture-apiserver-weak-ciphers", true, "!--tls-cipher-suites"),
		row(api, "apiserver a CBC-SHA256 cipher", "posture-apiserver-weak-ciphers", true, "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_RSA_WITH_AES_128_CBC_SHA256"),
		row(api, "apiserver strong ciphers", "posture-apiserver-weak-ciphers", false),

		row(cm, "controller-manager no gc threshold", "posture-controller-manager-terminated-pod-gc", true, "!--terminated-pod-gc-threshold"),
		row(cm, "controller-manager gc threshold", "posture-controller-manager-terminated-pod-gc", false),
		row(cm, "controller-manager profiling by default", "posture-controller-manager-profiling", true, "!--profiling"),
		row(cm, "controller-manager profiling off", "posture-controller-manager-profiling", false),
		row(cm, "controller-manager shared credentials by default", "posture-controller-manager-sa-credentials", true, "!--use-service-account-credentials"),
		row(cm, "controller-manager per-controller credentials", "posture-controller-manager-sa-credentials", false),
		row(cm, "controller-manager no signing key", "posture-controller-manager-sa-private-key", true, "!--service-account-private-key-file"),
		row(cm, "controller-manager signing key", "posture-controller-manager-sa-private-key", false),
		row(cm, "controller-manager no root CA", "posture-controller-manager-root-ca", true, "!--root-ca-file"),
		row(cm, "controller-manager root CA", "posture-controller-manager-root-ca", false),
		row(cm, "controller-manager kubelet cert rotation off", "posture-controller-manager-rotate-kubelet-cert", true, "--feature-gates=SomeGate=true, RotateKubeletServerCertificate=false"),
		row(cm, "controller-manager kubelet cert rotation on", "posture-controller-manager-rotate-kubelet-cert", false, "--feature-gates=RotateKubeletServerCertificate=true"),
		row(cm, "controller-manager no feature gates", "posture-controller-manager-rotate-kubelet-cert", false),
		row(cm, "controller-manager bind all", "posture-controller-manager-bind-address", true, "--bind-address=0.0.0.0"),
		row(cm, "controller-manager bind default (0.0.0.0)", "posture-controller-manager-bind-address", true, "!--bind-address"),
		row(cm, "controller-manager bind loopback", "posture-controller-manager-bind-address", false),

		row(sched, "scheduler profiling by default", "posture-scheduler-profiling", true, "!--profiling"),
		row(sched, "scheduler profiling off", "posture-scheduler-profiling", false),
		row(sched, "scheduler bind all", "posture-scheduler-bind-address", true, "--bind-address=0.0.0.0"),
		row(sched, "scheduler bind loopback", "posture-scheduler-bind-address", false),

		row(etcd, "etcd without TLS", "posture-etcd-tls", true, "!--cert-file", "!--key-file"),
		row(etcd, "etcd TLS", "posture-etcd-tls", false),
		row(etcd, "etcd client certs not required", "posture-etcd-client-cert-auth", true, "!--client-cert-auth"),
		row(etcd, "etcd client certs required", "posture-etcd-client-cert-auth", false),
		row(etcd, "etcd auto TLS", "posture-etcd-auto-tls", true, "--auto-tls=true"),
		row(etcd, "etcd auto TLS false", "posture-etcd-auto-tls", false, "--auto-tls=false"),
		row(etcd, "etcd without peer TLS", "posture-etcd-peer-tls", true, "!--peer-cert-file"),
		row(etcd, "etcd peer TLS", "posture-etcd-peer-tls", false),
		row(etcd, "etcd peers not authenticated", "posture-etcd-peer-client-cert-auth", true, "--peer-client-cert-auth=false"),
		row(etcd, "etcd peers authenticated", "posture-etcd-peer-client-cert-auth", false),
		row(etcd, "etcd peer auto TLS", "posture-etcd-peer-auto-tls", true, "--peer-auto-tls"),
		row(etcd, "etcd no peer auto TLS", "posture-etcd-peer-auto-tls", false),
		{name: "etcd TLS from the environment", check: "posture-etcd-tls",
			base: controlPlanePod("etcd", "etcd:3.5.15-0", editFlags(kubeadmEtcd, "!--cert-file", "!--key-file")),
			changes: []change{{"spec.containers.0.env", []any{
				map[string]any{"name": "ETCD_CERT_FILE", "value": "/etc/kubernetes/pki/etcd/server.crt"},
				map[string]any{"name": "ETCD_KEY_FILE", "value": "/etc/kubernetes/pki/etcd/server.key"}}}},
			uid: "uid-pod-kube-system-etcd-cp"},
		{name: "etcd client cert auth off in the environment, on by flag", check: "posture-etcd-client-cert-auth",
			base:    controlPlanePod("etcd", "etcd:3.5.15-0", kubeadmEtcd),
			changes: []change{{"spec.containers.0.env", []any{map[string]any{"name": "ETCD_CLIENT_CERT_AUTH", "value": "false"}}}},
			uid:     "uid-pod-kube-system-etcd-cp"},
		{name: "etcd client cert auth off in the environment", check: "posture-etcd-client-cert-auth",
			base:    controlPlanePod("etcd", "etcd:3.5.15-0", editFlags(kubeadmEtcd, "!--client-cert-auth")),
			changes: []change{{"spec.containers.0.env", []any{map[string]any{"name": "ETCD_CLIENT_CERT_AUTH", "value": "false"}}}},
			uid:     "uid-pod-kube-system-etcd-cp", fail: true},
		{name: "etcd key file from a Secret is not visible", check: "posture-etcd-tls",
			base: controlPlanePod("etcd", "etcd:3.5.15-0", editFlags(kubeadmEtcd, "!--key-file")),
			changes: []change{{"spec.containers.0.env", []any{map[string]any{"name": "ETCD_KEY_FILE",
				"valueFrom": map[string]any{"configMapKeyRef": map[string]any{"name": "etcd", "key": "key-file"}}}}}},
			uid: "uid-pod-kube-system-etcd-cp", fail: true},
		{name: "ETCD_ variables do not configure the apiserver", check: "posture-apiserver-etcd-ca",
			base:    controlPlanePod("kube-apiserver", "kube-apiserver:v1.31.0", editFlags(hardenedAPIServer, "!--etcd-cafile")),
			changes: []change{{"spec.containers.0.env", []any{map[string]any{"name": "ETCD_ETCD_CAFILE", "value": "/x"}}}},
			uid:     "uid-pod-kube-system-kube-apiserver-cp", fail: true},
		row(etcd, "etcd no trusted CA", "posture-etcd-trusted-ca", true, "!--trusted-ca-file"),
		row(etcd, "etcd trusted CA", "posture-etcd-trusted-ca", false),

		// Who is judged: the control-plane checks see mirror Pods only, a
		// component is recognised by its executable, not by a flag that
		// mentions it, and kubeadm's defaults fail what CIS expects.
		{name: "ordinary Pod running kube-apiserver is not a control-plane Pod", check: "posture-apiserver-anonymous-auth",
			base:    controlPlanePod("kube-apiserver", "kube-apiserver:v1.31.0", editFlags(hardenedAPIServer, "--anonymous-auth=true")),
			changes: []change{{"metadata.annotations", nil}}, uid: "uid-pod-kube-system-kube-apiserver-cp"},
		{name: "ordinary Pod running kube-apiserver is judged as a workload", check: "posture-host-network",
			base:    controlPlanePod("kube-apiserver", "kube-apiserver:v1.31.0", hardenedAPIServer),
			changes: []change{{"metadata.annotations", nil}}, uid: "uid-pod-kube-system-kube-apiserver-cp", fail: true},
		{name: "apiserver flags on the scheduler are not the apiserver's", check: "posture-apiserver-anonymous-auth",
			base: controlPlanePod("kube-scheduler", "kube-scheduler:v1.31.0", editFlags(hardenedScheduler, "--anonymous-auth=true")),
			uid:  "uid-pod-kube-system-kube-scheduler-cp"},
		{name: "apiserver by absolute path, flags in args", check: "posture-apiserver-authz-rbac",
			base:    controlPlanePod("kube-apiserver", "kube-apiserver:v1.31.0", []string{"/usr/local/bin/kube-apiserver"}),
			changes: []change{{"spec.containers.0.args", editFlags(hardenedAPIServer[1:], "--authorization-mode=AlwaysAllow")}},
			uid:     "uid-pod-kube-system-kube-apiserver-cp", fail: true},
		{name: "apiserver by container name, image entrypoint", check: "posture-apiserver-authz-node",
			base:    controlPlanePod("kube-apiserver", "kube-apiserver:v1.31.0", nil),
			changes: []change{{"spec.containers.0.command", nil}, {"spec.containers.0.args", editFlags(hardenedAPIServer[1:], "--authorization-mode=RBAC")}},
			uid:     "uid-pod-kube-system-kube-apiserver-cp", fail: true},
		{name: "kubeadm default apiserver keeps profiling on", check: "posture-apiserver-profiling",
			base: controlPlanePod("kube-apiserver", "kube-apiserver:v1.31.0", kubeadmAPIServer), uid: "uid-pod-kube-system-kube-apiserver-cp", fail: true},
	}
}
