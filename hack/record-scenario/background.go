package main

import (
	"context"
	"log"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// startBackground starts the steady benign traffic that runs under the story:
// Prometheus discovering targets and scraping kubelets, the compliance
// scanner reading the application namespaces. It ends with stopBackground.
func (s *scenario) startBackground() {
	ctx, cancel := context.WithCancel(context.Background())
	s.stopBG = cancel
	loop := func(name string, every time.Duration, f func(context.Context)) {
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				f(ctx)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	// A load balancer health-checks the API server anonymously (public
	// paths: anonymous-request-allowed leaves them alone).
	for _, lb := range s.lbs {
		loop("lb-health", time.Second, func(ctx context.Context) {
			_, _ = lb.raw(ctx, "GET", "/readyz", nil)
			_, _ = lb.raw(ctx, "GET", "/livez", nil)
		})
	}
	// Two Prometheus replicas: Kubernetes service discovery (watches they
	// re-open, EndpointSlice lists), the API server's /metrics, and a scrape
	// of every kubelet through the API server proxy (/metrics and
	// /metrics/cadvisor: telemetry, which node-proxy-access leaves alone).
	for _, m := range s.monitors {
		m := m
		loop("prometheus-watch", 20*time.Second, func(ctx context.Context) {
			for _, ns := range []string{s.shop, s.payments} {
				for _, w := range []func() (watch.Interface, error){
					func() (watch.Interface, error) {
						return m.cs.DiscoveryV1().EndpointSlices(ns).Watch(ctx, metav1.ListOptions{TimeoutSeconds: ptrInt64(15)})
					},
					func() (watch.Interface, error) {
						return m.cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{TimeoutSeconds: ptrInt64(15)})
					},
				} {
					if w, err := w(); err == nil {
						go func() {
							for range w.ResultChan() {
							}
						}()
						go func() { <-ctx.Done(); w.Stop() }()
					}
				}
			}
		})
		loop("prometheus", 2*time.Second, func(ctx context.Context) {
			for _, ns := range []string{s.shop, s.payments} {
				_, _ = m.cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{})
			}
			_, _ = m.raw(ctx, "GET", "/metrics", nil)
			for _, n := range s.nodes {
				_, _ = m.raw(ctx, "GET", "/api/v1/nodes/"+n+"/proxy/metrics/cadvisor", nil)
			}
		})
		loop("prometheus-pods", 30*time.Second, func(ctx context.Context) {
			for _, ns := range []string{s.shop, s.payments} {
				_, _ = m.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
				_, _ = m.cs.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
			}
			_, _ = m.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		})
	}
	aud := s.auditor.cs
	loop("auditor", 5*time.Second, func(ctx context.Context) {
		for _, ns := range []string{s.shop, s.payments} {
			_, _ = aud.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
			_, _ = aud.CoreV1().ServiceAccounts(ns).List(ctx, metav1.ListOptions{})
			_, _ = aud.RbacV1().RoleBindings(ns).List(ctx, metav1.ListOptions{})
		}
	})
	// The CI pipeline's periodic drift check.
	loop("ci-drift", 10*time.Second, func(ctx context.Context) {
		for _, ap := range apps {
			_, _ = s.ci.cs.AppsV1().Deployments(s.nsOf(ap.where)).Get(ctx, ap.name, metav1.GetOptions{})
		}
	})
}

func ptrInt64(v int64) *int64 { return &v }

func (s *scenario) stopBackground() {
	if s.stopBG != nil {
		s.stopBG()
		s.bg.Wait()
	}
}

// cleanup removes, untracked, what the story and the pre-roll left that could
// affect other users of the shared ground: cluster-wide grants, webhooks, the
// CSR, the kube-system objects, the nodes. Namespaced leftovers stay with
// their (Terminating) namespaces.
func (s *scenario) cleanup(ctx context.Context) {
	if s.scaffold == nil {
		return
	}
	cs := s.scaffold.cs
	del := func(what string, err error) {
		if err != nil && !apierrors.IsNotFound(err) {
			log.Printf("cleanup %s: %v", what, err)
		}
	}
	d := metav1.DeleteOptions{}
	del("mutating webhook", cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, "pod-metrics-injector-"+s.sfx, d))
	del("admission policy binding", cs.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(ctx, "restrict-privileged-pods-"+s.sfx, d))
	del("admission policy", cs.AdmissionregistrationV1().ValidatingAdmissionPolicies().Delete(ctx, "restrict-privileged-pods-"+s.sfx, d))
	for _, n := range []string{"helm-release-admin-" + s.sfx, "system:metrics-relay-" + s.sfx, "ci-rbac-manager-" + s.sfx, "prometheus-scrape-" + s.sfx} {
		del("clusterrolebinding "+n, cs.RbacV1().ClusterRoleBindings().Delete(ctx, n, d))
	}
	for _, n := range []string{"system:node-metrics-relay-" + s.sfx, "ci-rbac-manager-" + s.sfx, "prometheus-scrape-" + s.sfx, "ci-deployer-" + s.sfx, "compliance-reader-" + s.sfx} {
		del("clusterrole "+n, cs.RbacV1().ClusterRoles().Delete(ctx, n, d))
	}
	del("csr", cs.CertificatesV1().CertificateSigningRequests().Delete(ctx, "metrics-relay-client-"+s.sfx, d))
	s.removeKubeSystemObjects(ctx)
	for _, ns := range []string{s.shop, s.payments, s.ops} {
		del("namespace "+ns, cs.CoreV1().Namespaces().Delete(ctx, ns, d))
	}
	// What the pre-roll set up goes too: the next run sets it up again.
	for _, sa := range controllerSAs {
		del("service account kube-system/"+sa, cs.CoreV1().ServiceAccounts("kube-system").Delete(ctx, sa, d))
	}
	for _, n := range nodeNames {
		del("node "+n, cs.CoreV1().Nodes().Delete(ctx, n, d))
	}
}

// removeKubeSystemObjects deletes the story's kube-system objects (fixed
// names), pods at once: without a kubelet a bound pod would otherwise stay
// Terminating for ever. Also run before the story, for what a killed run
// left behind.
func (s *scenario) removeKubeSystemObjects(ctx context.Context) {
	cs := s.scaffold.cs
	del := func(what string, err error) {
		if err != nil && !apierrors.IsNotFound(err) {
			log.Printf("cleanup %s: %v", what, err)
		}
	}
	d := metav1.DeleteOptions{}
	del("daemonset", cs.AppsV1().DaemonSets("kube-system").Delete(ctx, "kube-metrics-relay", d))
	del("cronjob", cs.BatchV1().CronJobs("kube-system").Delete(ctx, "etcd-defrag", d))
	del("deployment", cs.AppsV1().Deployments("kube-system").Delete(ctx, "coredns-autoscaler", d))
	now := metav1.DeleteOptions{GracePeriodSeconds: ptrInt64(0)}
	for _, sel := range []string{"k8s-app=kube-metrics-relay", "app.kubernetes.io/name=coredns-autoscaler"} {
		if rss, err := cs.AppsV1().ReplicaSets("kube-system").List(ctx, metav1.ListOptions{LabelSelector: sel}); err == nil {
			for _, rs := range rss.Items {
				del("replicaset "+rs.Name, cs.AppsV1().ReplicaSets("kube-system").Delete(ctx, rs.Name, d))
			}
		}
		if pods, err := cs.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: sel}); err == nil {
			for _, p := range pods.Items {
				del("pod "+p.Name, cs.CoreV1().Pods("kube-system").Delete(ctx, p.Name, now))
			}
		}
	}
	del("service account", cs.CoreV1().ServiceAccounts("kube-system").Delete(ctx, "metrics-relay", d))
}
