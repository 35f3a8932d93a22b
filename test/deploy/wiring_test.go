package deploy

import (
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kubesift/kubesift/internal/config"
)

// TestWorkloadWiring checks, for every rendering, that what each kubesift
// config says fits the pod that runs it (the API server cannot: it does not
// read the configs): the container is started with -c on the mounted config;
// every file the config reads is on a mount; every directory it writes
// (spool, positions) is on a writable mount, the root file system being
// read-only; the ports it listens on are container ports; the webhook
// Service and the PodDisruptionBudgets select the pods they are for.
func TestWorkloadWiring(t *testing.T) {
	for _, r := range renderings() {
		t.Run(r.name, func(t *testing.T) {
			objs := render(t, r)
			for _, pc := range podConfigs(t, objs) {
				cfg, err := config.Parse([]byte(pc.data), pc.name, pc.getenv)
				if err != nil {
					t.Errorf("%v", err) // TestRenderedConfigs says more
					continue
				}
				checkPod(t, pc, cfg)
			}
			checkSelectors(t, objs)
		})
	}
}

// mountOf returns the mount holding p in c, if any.
func mountOf(c corev1.Container, p string) (corev1.VolumeMount, bool) {
	var best corev1.VolumeMount
	found := false
	for _, m := range c.VolumeMounts {
		mp := strings.TrimSuffix(m.MountPath, "/")
		if (p == mp || strings.HasPrefix(p, mp+"/")) && len(mp) >= len(best.MountPath) {
			best, found = m, true
		}
	}
	return best, found
}

func checkPod(t *testing.T, pc podConfig, cfg *config.Config) {
	t.Helper()
	var c corev1.Container
	var cmd string
	for _, ctr := range pc.spec.Containers {
		args := append(append([]string{}, ctr.Command...), ctr.Args...)
		if i := slices.Index(args, "-c"); i > 0 && i+1 < len(args) {
			if m, ok := mountOf(ctr, args[i+1]); ok && volumeIsConfigMap(pc.spec, m.Name) {
				c, cmd = ctr, args[0]
			}
		}
	}
	if c.Name == "" {
		t.Errorf("%s: no container runs kubesift with -c on the mounted config", pc.name)
		return
	}
	rootRO := c.SecurityContext != nil && c.SecurityContext.ReadOnlyRootFilesystem != nil && *c.SecurityContext.ReadOnlyRootFilesystem
	var reads, writes []string
	add := func(list *[]string, ps ...string) {
		for _, p := range ps {
			if p != "" {
				*list = append(*list, p)
			}
		}
	}
	tlsFiles := func(tc config.TLSConfig) []string {
		if !tc.Enabled {
			return nil
		}
		return []string{tc.CAFile, tc.CertFile, tc.KeyFile}
	}
	add(&reads, tlsFiles(cfg.Kafka.TLS)...)
	ports := map[string]bool{}
	addPort := func(field, listen string) {
		if listen == "" {
			return
		}
		_, p, err := net.SplitHostPort(listen)
		if err != nil {
			t.Errorf("%s: %s %q: %v", pc.name, field, listen, err)
			return
		}
		ports[field+" "+p] = true
	}
	addPort("server.listen", cfg.Server.Listen)
	switch cmd {
	case "collect":
		w := cfg.Collector.AuditWebhook
		if w.Enabled {
			add(&reads, w.TLSCertFile, w.TLSKeyFile, w.ClientCAFile)
			addPort("collector.audit_webhook.listen", w.Listen)
		}
		if tl := cfg.Collector.AuditTail; tl.Enabled {
			add(&reads, tl.Paths...)
			add(&writes, path.Dir(tl.PositionsFile))
		}
		add(&writes, cfg.Publish.Spool.Dir)
	case "process":
		add(&reads, cfg.Processor.Rules.Dirs...)
		add(&reads, cfg.Sink.Elasticsearch.CAFile)
	case "notify":
		add(&reads, cfg.Sink.Elasticsearch.CAFile)
		addPort("notify.silences.api.listen", cfg.Notify.Silences.API.Listen)
	default:
		t.Errorf("%s: container %s runs %q, not collect/process/notify", pc.name, c.Name, cmd)
	}
	for _, p := range reads {
		if _, ok := mountOf(c, p); !ok {
			t.Errorf("%s: %s is read but not on any volume mount of container %s", pc.name, p, c.Name)
		}
	}
	for _, p := range writes {
		m, ok := mountOf(c, p)
		switch {
		case !ok && rootRO:
			t.Errorf("%s: %s is written but not on a volume mount, and the root file system is read-only", pc.name, p)
		case ok && m.ReadOnly:
			t.Errorf("%s: %s is written but its mount %s is read-only", pc.name, p, m.MountPath)
		}
	}
	t.Logf("%s: kubesift %s; reads %v; writes %v; listens %v", pc.name, cmd, reads, writes, keysOf(ports))
	have := map[string]bool{}
	for _, cp := range c.Ports {
		have[strconv.Itoa(int(cp.ContainerPort))] = true
	}
	for fp := range ports {
		field, p, _ := strings.Cut(fp, " ")
		if !have[p] {
			t.Errorf("%s: %s port %s is not a container port of %s", pc.name, field, p, c.Name)
		}
	}
}

func volumeIsConfigMap(spec corev1.PodSpec, name string) bool {
	for _, v := range spec.Volumes {
		if v.Name == name {
			return v.ConfigMap != nil || v.Projected != nil
		}
	}
	return false
}

// checkSelectors: every Service, PodDisruptionBudget and NetworkPolicy
// selects the pods of a rendered workload in its namespace, and the ports a
// Service targets and a NetworkPolicy admits by name are ports of those pods.
func checkSelectors(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	type pod struct {
		ns     string
		labels labels.Set
		spec   corev1.PodSpec
	}
	var pods []pod
	for _, o := range objs {
		if p, ok := podTemplateSpec(t, o); ok {
			pods = append(pods, pod{o.GetNamespace(), labels.Set(p.Labels), p.Spec})
		}
	}
	for _, o := range objs {
		switch o.GetKind() {
		case "Service":
			var s corev1.Service
			toTyped(t, o, &s)
			if len(s.Spec.Selector) == 0 {
				continue
			}
			sel := labels.SelectorFromSet(s.Spec.Selector)
			var matched []pod
			for _, p := range pods {
				if p.ns == s.Namespace && sel.Matches(p.labels) {
					matched = append(matched, p)
				}
			}
			if len(matched) == 0 {
				t.Errorf("%s: selector %v matches no rendered pod", objKey(o), s.Spec.Selector)
				continue
			}
			for _, sp := range s.Spec.Ports {
				for _, p := range matched {
					if !podHasPort(p.spec, sp.TargetPort.String(), sp.TargetPort.IntValue()) {
						t.Errorf("%s: port %s targets %s, which pods of its selector do not expose", objKey(o), sp.Name, sp.TargetPort.String())
					}
				}
			}
		case "NetworkPolicy":
			var np networkingv1.NetworkPolicy
			toTyped(t, o, &np)
			if len(np.Spec.PodSelector.MatchLabels) == 0 && len(np.Spec.PodSelector.MatchExpressions) == 0 {
				continue // the namespace's default deny
			}
			sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
			if err != nil {
				t.Errorf("%s: podSelector: %v", objKey(o), err)
				continue
			}
			var matched []pod
			for _, p := range pods {
				if p.ns == np.Namespace && sel.Matches(p.labels) {
					matched = append(matched, p)
				}
			}
			if len(matched) == 0 {
				t.Errorf("%s: podSelector matches no rendered pod", objKey(o))
			}
			// A named ingress port is a port name of the selected pods.
			for i, in := range np.Spec.Ingress {
				for _, pp := range in.Ports {
					if pp.Port == nil || pp.Port.IntValue() != 0 {
						continue
					}
					for _, p := range matched {
						if !podHasPort(p.spec, pp.Port.String(), 0) {
							t.Errorf("%s: ingress[%d] port %q is not a port name of the pods it selects", objKey(o), i, pp.Port.String())
						}
					}
				}
			}
		case "PodDisruptionBudget":
			var pdb policyv1.PodDisruptionBudget
			toTyped(t, o, &pdb)
			n := 0
			for _, p := range pods {
				if p.ns == pdb.Namespace && pdb.Spec.Selector != nil && labels.SelectorFromSet(pdb.Spec.Selector.MatchLabels).Matches(p.labels) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%s: selects the pods of %d workloads, want 1", objKey(o), n)
			}
		}
	}
}

func podHasPort(spec corev1.PodSpec, name string, num int) bool {
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			if (num != 0 && int(p.ContainerPort) == num) || (num == 0 && p.Name == name) {
				return true
			}
		}
	}
	return false
}
