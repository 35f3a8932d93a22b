package testenv

import (
	"context"
	"fmt"
	"slices"
	"sync"
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
)

// KubeClient is an admin client of the test ground's kube-apiserver
// (system:masters through the static admin token): a typed client set, a
// dynamic client with a discovery-backed RESTMapper for applying
// unstructured objects, and the warnings the server sends back.
//
// The ground runs only kube-apiserver and etcd: no garbage collector and no
// namespace controller. RemoveAll therefore deletes every object
// explicitly and finalizes namespaces by hand (what the namespace
// controller does once a namespace is empty); otherwise they would stay
// Terminating on the shared server for ever.
type KubeClient struct {
	Config *rest.Config
	CS     kubernetes.Interface
	Dyn    dynamic.Interface
	Mapper meta.RESTMapper

	fieldManager string
	warn         warnings
}

// NewKubeClient returns an admin client of the ground's kube-apiserver
// whose requests carry userAgent, also the field manager of Apply.
func NewKubeClient(t testing.TB, userAgent string) *KubeClient {
	t.Helper()
	k := KubeAPIServer(t)
	c := &KubeClient{fieldManager: userAgent}
	c.Config = &rest.Config{
		Host:            k.URL,
		BearerToken:     k.AdminToken,
		TLSClientConfig: rest.TLSClientConfig{CAFile: k.CAFile},
		UserAgent:       userAgent,
		WarningHandler:  &c.warn,
		QPS:             100,
		Burst:           200,
		Timeout:         30 * time.Second,
	}
	var err error
	if c.CS, err = kubernetes.NewForConfig(c.Config); err != nil {
		t.Fatal(err)
	}
	if c.Dyn, err = dynamic.NewForConfig(c.Config); err != nil {
		t.Fatal(err)
	}
	c.Mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.CS.Discovery()))
	return c
}

// warnings collects the warnings kube-apiserver sends (Pod Security
// admission's "would violate PodSecurity ...", unknown fields,
// deprecations).
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(code int, agent, text string) {
	w.mu.Lock()
	w.msgs = append(w.msgs, text)
	w.mu.Unlock()
}

// TakeWarnings returns and clears the warnings received since the last
// call. Requests whose warnings a test reads must be sequential.
func (c *KubeClient) TakeWarnings() []string {
	c.warn.mu.Lock()
	defer c.warn.mu.Unlock()
	out := c.warn.msgs
	c.warn.msgs = nil
	return out
}

// Resource returns the dynamic client of o's resource and whether its kind
// is namespaced.
func (c *KubeClient) Resource(o *unstructured.Unstructured) (dynamic.ResourceInterface, bool, error) {
	gvk := o.GroupVersionKind()
	m, err := c.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, false, fmt.Errorf("%s %s/%s: the API server does not serve %s: %w", o.GetKind(), o.GetNamespace(), o.GetName(), gvk, err)
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return c.Dyn.Resource(m.Resource).Namespace(o.GetNamespace()), true, nil
	}
	return c.Dyn.Resource(m.Resource), false, nil
}

// Apply server-side applies o (with dryRun=All when dry) and returns what
// the server stored and the warnings it sent for this request. Server-side
// apply rejects fields the schema does not declare, so an accepted object
// is exactly what was sent.
func (c *KubeClient) Apply(ctx context.Context, o *unstructured.Unstructured, dry bool) (*unstructured.Unstructured, []string, error) {
	ri, _, err := c.Resource(o)
	if err != nil {
		return nil, nil, err
	}
	opts := metav1.ApplyOptions{FieldManager: c.fieldManager, Force: true}
	if dry {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	c.TakeWarnings()
	got, err := ri.Apply(ctx, o.GetName(), o, opts)
	return got, c.TakeWarnings(), err
}

// Delete deletes o without waiting; an object already gone is no error.
func (c *KubeClient) Delete(ctx context.Context, o *unstructured.Unstructured) error {
	ri, _, err := c.Resource(o)
	if err != nil {
		return err
	}
	// Background: the batch/v1 default (orphan) adds a finalizer that only
	// the garbage collector removes, so a Job would never go.
	bg := metav1.DeletePropagationBackground
	if err := ri.Delete(ctx, o.GetName(), metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete %s %s/%s: %w", o.GetKind(), o.GetNamespace(), o.GetName(), err)
	}
	return nil
}

// WaitGone waits until the server no longer has o.
func (c *KubeClient) WaitGone(t testing.TB, ctx context.Context, o *unstructured.Unstructured) {
	t.Helper()
	ri, _, err := c.Resource(o)
	if err != nil {
		t.Fatal(err)
	}
	WaitFor(t, o.GetKind()+" "+o.GetNamespace()+"/"+o.GetName()+" gone", 30*time.Second, func() bool {
		_, err := ri.Get(ctx, o.GetName(), metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
}

// FinalizeNamespace removes a Terminating namespace's finalizers and
// deletes it again, which removes it: what the namespace controller does
// once a namespace is empty.
func (c *KubeClient) FinalizeNamespace(ctx context.Context, name string) error {
	ns, err := c.CS.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("namespace %s: %w", name, err)
	}
	ns.Spec.Finalizers = nil
	if _, err := c.CS.CoreV1().Namespaces().Finalize(ctx, ns, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("finalize namespace %s: %w", name, err)
	}
	if err := c.CS.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete finalized namespace %s: %w", name, err)
	}
	return nil
}

// RemoveAll deletes every object of objs, then waits for each to be gone;
// namespaces are finalized last, once what they hold is gone. Every delete
// is sent before the first wait, so a wait that fails leaves as little as
// possible behind on the shared server.
func (c *KubeClient) RemoveAll(t testing.TB, objs []*unstructured.Unstructured) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var namespaces []*unstructured.Unstructured
	for _, o := range slices.Backward(objs) {
		if err := c.Delete(ctx, o); err != nil {
			t.Error(err)
		}
		if o.GetKind() == "Namespace" {
			namespaces = append(namespaces, o)
		}
	}
	for _, o := range objs {
		if o.GetKind() != "Namespace" {
			c.WaitGone(t, ctx, o)
		}
	}
	for _, o := range namespaces {
		if err := c.FinalizeNamespace(ctx, o.GetName()); err != nil {
			t.Error(err)
		}
		c.WaitGone(t, ctx, o)
	}
}
