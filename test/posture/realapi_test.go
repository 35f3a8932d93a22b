package posture

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/kubesift/kubesift/internal/testenv"
)

// The ground has only kube-apiserver and etcd: no garbage collector and no
// namespace controller. So deleting a set deletes every object explicitly,
// and a namespace is finalized by hand (what the namespace controller would
// do once the namespace is empty); otherwise it would stay Terminating on the
// shared server for ever.

const fieldManager = "kubesift-test-posture"

// ground is an admin client of the test ground's kube-apiserver.
type ground struct {
	cs     kubernetes.Interface
	dyn    dynamic.Interface
	mapper meta.RESTMapper
	// warn receives the warnings kube-apiserver sends back, one
	// "Warning: " line each; requests are sequential, so what a request
	// added is what follows the length before it.
	warn *testenv.Buffer
}

func newGround(t testing.TB) *ground {
	t.Helper()
	k := testenv.KubeAPIServer(t)
	w := &testenv.Buffer{}
	cfg := &rest.Config{
		Host:            k.URL,
		BearerToken:     k.AdminToken,
		TLSClientConfig: rest.TLSClientConfig{CAFile: k.CAFile},
		UserAgent:       fieldManager,
		WarningHandler:  rest.NewWarningWriter(w, rest.WarningWriterOptions{}),
		QPS:             100,
		Burst:           200,
		Timeout:         30 * time.Second,
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cs.Discovery()))
	return &ground{cs: cs, dyn: dyn, mapper: mapper, warn: w}
}

// client returns the dynamic client of o's resource.
func (g *ground) client(o *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := o.GroupVersionKind()
	m, err := g.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("%s: the API server does not serve %s: %w", keyOf(o), gvk, err)
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return g.dyn.Resource(m.Resource).Namespace(o.GetNamespace()), nil
	}
	return g.dyn.Resource(m.Resource), nil
}

// apply server-side applies o and returns what the server stored and the
// warnings it sent for this request. Server-side apply rejects fields the
// schema does not declare, so an accepted object is exactly what the file
// says.
func (g *ground) apply(ctx context.Context, o *unstructured.Unstructured) (*unstructured.Unstructured, []string, error) {
	ri, err := g.client(o)
	if err != nil {
		return nil, nil, err
	}
	before := len(g.warn.String())
	got, err := ri.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
	var warnings []string
	for _, line := range strings.Split(strings.TrimSpace(g.warn.String()[before:]), "\n") {
		if line != "" {
			warnings = append(warnings, strings.TrimPrefix(line, "Warning: "))
		}
	}
	return got, warnings, err
}

// deleteObject deletes o without waiting.
func (g *ground) deleteObject(ctx context.Context, o *unstructured.Unstructured) error {
	ri, err := g.client(o)
	if err != nil {
		return err
	}
	// Background: the batch/v1 default (orphan) adds a finalizer that only
	// the garbage collector removes, so a Job would never go.
	bg := metav1.DeletePropagationBackground
	if err := ri.Delete(ctx, o.GetName(), metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete %s: %w", keyOf(o), err)
	}
	return nil
}

// waitGone waits until the server no longer has o.
func (g *ground) waitGone(t testing.TB, ctx context.Context, o *unstructured.Unstructured) {
	t.Helper()
	ri, err := g.client(o)
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, keyOf(o)+" gone", 30*time.Second, func() bool {
		_, err := ri.Get(ctx, o.GetName(), metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
}

// finalizeNamespace removes a Terminating namespace's finalizers and deletes
// it again, which removes it: what the namespace controller does once a
// namespace is empty.
func (g *ground) finalizeNamespace(ctx context.Context, name string) error {
	ns, err := g.cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("namespace %s: %w", name, err)
	}
	ns.Spec.Finalizers = nil
	if _, err := g.cs.CoreV1().Namespaces().Finalize(ctx, ns, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("finalize namespace %s: %w", name, err)
	}
	if err := g.cs.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete finalized namespace %s: %w", name, err)
	}
	return nil
}

// removeSet deletes every object of a set, then waits for each to be gone;
// namespaces are finalized last, once what they hold is gone. Every delete
// is sent before the first wait, so a wait that fails leaves as little as
// possible behind on the shared server.
func (g *ground) removeSet(t testing.TB, objs []*unstructured.Unstructured) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var namespaces []*unstructured.Unstructured
	for _, o := range slices.Backward(objs) {
		if err := g.deleteObject(ctx, o); err != nil {
			t.Error(err)
		}
		if o.GetKind() == "Namespace" {
			namespaces = append(namespaces, o)
		}
	}
	for _, o := range objs {
		if o.GetKind() != "Namespace" {
			g.waitGone(t, ctx, o)
		}
	}
	for _, o := range namespaces {
		if err := g.finalizeNamespace(ctx, o.GetName()); err != nil {
			t.Error(err)
		}
		g.waitGone(t, ctx, o)
	}
}

func runPrefix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "pst-" + hex.EncodeToString(b[:])
}

// enforcesRestricted reports whether a set's own namespace enforces Pod
// Security "restricted": there the fixture's compliant workloads must draw
// no warning at all.
func enforcesRestricted(objs []*unstructured.Unstructured, ns string) bool {
	for _, o := range objs {
		if o.GetKind() == "Namespace" && o.GetName() == ns {
			return o.GetLabels()["pod-security.kubernetes.io/enforce"] == "restricted"
		}
	}
	return false
}

// TestPlantedSetOnRealAPIServer applies every planted set to the test
// ground's kube-apiserver under a prefix of its own, checks that the server
// accepted and stored every object, then deletes the set and checks that
// nothing of it is left. A warning fails the test unless it is Pod Security
// admission's, which the planted violations draw on purpose in namespaces
// that do not enforce restricted. The built-in objects the expectations list
// as compliant look-alikes must exist, built in, on the same server.
func TestPlantedSetOnRealAPIServer(t *testing.T) {
	g := newGround(t)
	exp := loadExpectations(t)
	run := runPrefix()
	t.Logf("run prefix %s", run)

	t.Run("preexisting", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, e := range exp.Preexisting {
			o := &unstructured.Unstructured{}
			o.SetAPIVersion("rbac.authorization.k8s.io/v1")
			o.SetKind(e.Kind)
			ri, err := g.client(o)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ri.Get(ctx, e.Name, metav1.GetOptions{})
			if err != nil {
				t.Errorf("%s: %v", e.key(), err)
				continue
			}
			if got.GetLabels()["kubernetes.io/bootstrapping"] != "rbac-defaults" {
				t.Errorf("%s: not labelled kubernetes.io/bootstrapping=rbac-defaults: %v", e.key(), got.GetLabels())
			}
		}
	})

	for _, s := range loadSets(t, run) {
		t.Run(s.file, func(t *testing.T) {
			removed := false
			t.Cleanup(func() {
				if !removed {
					g.removeSet(t, s.objs)
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			for _, o := range s.objs {
				got, warnings, err := g.apply(ctx, o)
				if err != nil {
					t.Errorf("%s: server-side apply: %v", keyOf(o), err)
					continue
				}
				if got.GetUID() == "" {
					t.Errorf("%s: stored without a uid", keyOf(o))
				}
				for _, w := range warnings {
					if strings.Contains(w, "PodSecurity") && !enforcesRestricted(s.objs, o.GetNamespace()) {
						t.Logf("%s: planted Pod Security warning: %s", keyOf(o), w)
						continue
					}
					t.Errorf("%s: warning: %s", keyOf(o), w)
				}
			}
			g.removeSet(t, s.objs)
			removed = true
		})
	}
}
