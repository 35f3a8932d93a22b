package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"hash/fnv"
	"log"
	"math/big"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"
)

// Client addresses and user agents of the story's identities. Requests reach
// the ground from 127.0.0.1; X-Forwarded-For gives each identity the address
// it would have behind the API server's load balancer.
const (
	ipAdmin     = "10.0.12.5"   // platform engineer's workstation (VPN)
	ipDev       = "10.0.12.31"  // a developer without grants yet
	ipCI        = "10.0.40.12"  // CI runner
	ipAuditor   = "10.244.3.21" // compliance scanner pod
	ipMonitor   = "10.244.2.15" // Prometheus pods
	ipMonitor2  = "10.244.1.22"
	ipLB        = "10.0.0.2" // the API server load balancer's health checks (two zones)
	ipLB2       = "10.0.1.2"
	ipControl   = "10.0.0.10" // control-plane node (kube-controller-manager)
	ipAttacker  = "203.0.113.77"
	ipAttacker2 = "198.51.100.23" // the attacker's relay, also its registry

	uaAdmin    = "kubectl/v1.34.2 (linux/amd64) kubernetes/e1b4a3c"
	uaDev      = "kubectl/v1.34.2 (darwin/arm64) kubernetes/e1b4a3c"
	uaCI       = "kubectl/v1.33.4 (linux/amd64) kubernetes/74cdb42"
	uaAttacker = "kubectl/v1.28.4 (linux/amd64) kubernetes/bae2c62"
	uaCurl     = "curl/8.5.0"
	uaRelay    = "Go-http-client/1.1"
	uaAuditor  = "kube-compliance-scanner/2.4.0 (linux/amd64)"
	uaMonitor  = "Prometheus/2.54.1"
	uaLB       = "ELB-HealthChecker/2.0"
	uaKCM      = "kube-controller-manager/v1.37.2 (linux/amd64) kubernetes/1c6ba6b/system:serviceaccount:kube-system:"
	uaKubelet  = "kubelet/v1.37.2 (linux/amd64) kubernetes/1c6ba6b"
)

// The ground's nodes: the ground has no kubelet, so the recorder registers
// them (untracked, as kubelets do before any story starts).
var nodeNames = []string{
	"ip-10-0-1-17.eu-west-1.compute.internal",
	"ip-10-0-2-44.eu-west-1.compute.internal",
	"ip-10-0-3-91.eu-west-1.compute.internal",
}

// The controllers whose writes the recorder plays, with the tokens of their
// real service accounts (kube-apiserver's bootstrap RBAC binds them).
var controllerSAs = []string{"deployment-controller", "replicaset-controller", "daemon-set-controller"}

func randSuffix() string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	b := make([]byte, 4)
	for i := range b {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		b[i] = alphabet[n.Int64()]
	}
	return string(b)
}

// preroll sets up what a real cluster has before the story begins — nodes,
// the controllers' service accounts and their tokens — and the identities.
// None of it is recorded.
func (s *scenario) preroll(ctx context.Context) error {
	adminToken, err := readToken(s.env["KUBESIFT_KUBE_ADMIN_TOKEN_FILE"])
	if err != nil {
		return err
	}
	userToken, err := readToken(s.env["KUBESIFT_KUBE_USER_TOKEN_FILE"])
	if err != nil {
		return err
	}
	if s.scaffold, err = s.newActor(actorSpec{name: "scaffold", token: adminToken, userAgent: uaKubelet}); err != nil {
		return err
	}
	s.removeKubeSystemObjects(ctx)
	cs := s.scaffold.cs
	for i, n := range nodeNames {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{
				"kubernetes.io/hostname":           n,
				"kubernetes.io/os":                 "linux",
				"kubernetes.io/arch":               "amd64",
				"node.kubernetes.io/instance-type": "m6i.xlarge",
				"topology.kubernetes.io/region":    "eu-west-1",
				"topology.kubernetes.io/zone":      fmt.Sprintf("eu-west-1%c", 'a'+i),
			}},
			Spec: corev1.NodeSpec{ProviderID: fmt.Sprintf("aws:///eu-west-1%c/i-0%x", 'a'+i, 0x5e1f00a0+i*7919)},
		}
		if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("node %s: %w", n, err)
		}
	}
	s.nodes = nodeNames
	s.ctlTokens = map[string]string{}
	for _, sa := range controllerSAs {
		_, err := cs.CoreV1().ServiceAccounts("kube-system").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("service account kube-system/%s: %w", sa, err)
		}
		tok, err := s.token(ctx, s.scaffold, "kube-system", sa, 3600)
		if err != nil {
			return err
		}
		s.ctlTokens[sa] = tok
	}
	mk := func(spec actorSpec) *actor {
		if err != nil {
			return nil
		}
		var a *actor
		a, err = s.newActor(spec)
		return a
	}
	s.admin = mk(actorSpec{name: "admin", token: adminToken, ip: ipAdmin, userAgent: uaAdmin, tracked: true})
	s.dev = mk(actorSpec{name: "dev", token: userToken, ip: ipDev, userAgent: uaDev, tracked: true})
	s.anon = mk(actorSpec{name: "anonymous", ip: ipAttacker, userAgent: uaCurl, tracked: true})
	s.deployCtl = mk(actorSpec{name: "deployment-controller", token: s.ctlTokens["deployment-controller"], ip: ipControl, userAgent: uaKCM + "deployment-controller", tracked: true})
	s.rsCtl = mk(actorSpec{name: "replicaset-controller", token: s.ctlTokens["replicaset-controller"], ip: ipControl, userAgent: uaKCM + "replicaset-controller", tracked: true})
	s.dsCtl = mk(actorSpec{name: "daemon-set-controller", token: s.ctlTokens["daemon-set-controller"], ip: ipControl, userAgent: uaKCM + "daemon-set-controller", tracked: true})
	// Expired and guessed tokens the attacker tries first (JWT-shaped, never valid).
	for _, t := range []string{
		"eyJhbGciOiJSUzI1NiIsImtpZCI6IjNmQjlxIn0.eyJpc3MiOiJrdWJlcm5ldGVzL3NlcnZpY2VhY2NvdW50In0.c2NlbmFyaW8tZXhwaXJlZC0x",
		"eyJhbGciOiJSUzI1NiIsImtpZCI6Ijd3Q2VYIn0.eyJpc3MiOiJrdWJlcm5ldGVzL3NlcnZpY2VhY2NvdW50In0.c2NlbmFyaW8tZXhwaXJlZC0y",
		"k8s-aws-v1.aHR0cHM6Ly9zdHMuZXUtd2VzdC0xLmFtYXpvbmF3cy5jb20vP0FjdGlvbj1HZXRDYWxsZXJJZGVudGl0eQ",
	} {
		s.bogus = append(s.bogus, mk(actorSpec{name: "bogus", token: t, ip: ipAttacker, userAgent: uaAttacker, tracked: true}))
	}
	if err != nil {
		return err
	}
	s.admin.cfg.Timeout = 30 * time.Second
	log.Printf("pre-roll: %d nodes, %d controller service accounts", len(s.nodes), len(controllerSAs))
	return nil
}

// token gets a bound service-account token through the TokenRequest API.
func (s *scenario) token(ctx context.Context, a *actor, ns, sa string, seconds int64) (string, error) {
	tr, err := a.cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr.To(seconds)},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for %s/%s: %w", ns, sa, err)
	}
	return tr.Status.Token, nil
}

// podRef names a pod the controllers made.
type podRef struct {
	ns, name string
	uid      string
	node     string
	owner    string
}

// templateHash is the pod-template-hash the deployment controller derives.
func templateHash(spec corev1.PodTemplateSpec) string {
	h := fnv.New32a()
	fmt.Fprintf(h, "%v", spec.Spec.Containers)
	return utilrand.SafeEncodeString(fmt.Sprint(h.Sum32()))[:10]
}

// reconcileDeployment plays the deployment controller (a ReplicaSet for the
// Deployment's template) and the replicaset controller (its pods); the
// scheduler's bindings are scaffolding. bind=false leaves the pods pending.
func (s *scenario) reconcileDeployment(ctx context.Context, d *appsv1.Deployment, bind bool) (*appsv1.ReplicaSet, error) {
	hash := templateHash(d.Spec.Template)
	tmpl := *d.Spec.Template.DeepCopy()
	if tmpl.Labels == nil {
		tmpl.Labels = map[string]string{}
	}
	tmpl.Labels["pod-template-hash"] = hash
	sel := d.Spec.Selector.DeepCopy()
	sel.MatchLabels["pod-template-hash"] = hash
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name: d.Name + "-" + hash, Namespace: d.Namespace, Labels: tmpl.Labels,
			Annotations: map[string]string{"deployment.kubernetes.io/revision": d.Annotations["deployment.kubernetes.io/revision"]},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
		},
		Spec: appsv1.ReplicaSetSpec{Replicas: d.Spec.Replicas, Selector: sel, Template: tmpl},
	}
	rs, err := s.deployCtl.cs.AppsV1().ReplicaSets(d.Namespace).Create(ctx, rs, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("deployment-controller: replicaset for %s/%s: %w", d.Namespace, d.Name, err)
	}
	_, err = s.scaleRS(ctx, rs, *d.Spec.Replicas, bind)
	return rs, err
}

// scaleRS plays the replicaset controller: create pods up to n, or delete
// the newest beyond it. It returns the error of a refused pod create (the
// admission denial the FailedCreate Event reports).
func (s *scenario) scaleRS(ctx context.Context, rs *appsv1.ReplicaSet, n int32, bind bool) (createErr error, err error) {
	key := rs.Namespace + "/" + rs.Name
	s.mu.Lock()
	have := s.pods[key]
	s.mu.Unlock()
	for int32(len(have)) < n {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				GenerateName: rs.Name + "-", Namespace: rs.Namespace, Labels: rs.Spec.Template.Labels,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID,
					Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
			},
			Spec: *rs.Spec.Template.Spec.DeepCopy(),
		}
		p, err := s.rsCtl.cs.CoreV1().Pods(rs.Namespace).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			if apierrors.IsInvalid(err) || apierrors.IsForbidden(err) {
				return err, nil // admission refused it: the controller reports FailedCreate
			}
			return nil, fmt.Errorf("replicaset-controller: pod for %s: %w", key, err)
		}
		ref := podRef{ns: p.Namespace, name: p.Name, uid: string(p.UID), owner: rs.Name}
		if bind {
			ref.node = s.nodes[len(have)%len(s.nodes)]
			if err := s.bindPod(ctx, p, ref.node); err != nil {
				return nil, err
			}
		}
		have = append(have, ref)
	}
	for int32(len(have)) > n {
		last := have[len(have)-1]
		if err := s.rsCtl.cs.CoreV1().Pods(last.ns).Delete(ctx, last.name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("replicaset-controller: delete %s/%s: %w", last.ns, last.name, err)
		}
		have = have[:len(have)-1]
	}
	s.mu.Lock()
	s.pods[key] = have
	s.mu.Unlock()
	if cur, err := s.rsCtl.cs.AppsV1().ReplicaSets(rs.Namespace).Get(ctx, rs.Name, metav1.GetOptions{}); err == nil {
		cur.Status.Replicas, cur.Status.ObservedGeneration = int32(len(have)), cur.Generation
		_, _ = s.rsCtl.cs.AppsV1().ReplicaSets(rs.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	}
	return nil, nil
}

// bindPod is the scheduler's binding and the kubelet's status report
// (scaffolding: the ground has neither).
func (s *scenario) bindPod(ctx context.Context, p *corev1.Pod, node string) error {
	err := s.scaffold.cs.CoreV1().Pods(p.Namespace).Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace},
		Target:     corev1.ObjectReference{Kind: "Node", Name: node},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("bind %s/%s: %w", p.Namespace, p.Name, err)
	}
	cur, err := s.scaffold.cs.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	now := metav1.Now()
	cur.Status.Phase = corev1.PodRunning
	cur.Status.StartTime = &now
	cur.Status.PodIP = fmt.Sprintf("10.244.%d.%d", 1+len(p.Name)%3, 10+int(p.UID[0])%200)
	cur.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}}
	for _, c := range cur.Spec.Containers {
		cur.Status.ContainerStatuses = append(cur.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, Ready: true, Started: ptr.To(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	_, err = s.scaffold.cs.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	return err
}

// resources is a small requests/limits block.
func resources(cpu, mem string) corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(mem)},
	}
}
