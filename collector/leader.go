package collector

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/kubesift/kubesift/internal/config"
)

// Leader-only sources (Events, objects) run on every collector replica but
// work on one: the holder of a coordination.k8s.io Lease of their own.

// serviceAccountNamespaceFile is where a pod finds its namespace.
const serviceAccountNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// LeaderIdentity is the configured identity, else POD_NAME, else the host
// name with a random suffix (two processes on one host must never share an
// identity: client-go would let both believe they hold the Lease).
func LeaderIdentity(configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	if p := os.Getenv("POD_NAME"); p != "" {
		return p, nil
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("leader election identity: %w", err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return h + "-" + hex.EncodeToString(b[:]), nil
}

// DefaultNamespace is the namespace of the Leases of a collector that runs
// outside a pod and is given none: every cluster has "default", so
// `kubesift collect` on a plain host (docs/deployment.md) works without a
// namespace created for it, whereas a "kubesift" namespace would first have
// to exist. Set leader_election.namespace to keep the Leases elsewhere.
const DefaultNamespace = "default"

// OwnNamespace is the configured namespace, else POD_NAMESPACE, else the
// service account namespace file, else DefaultNamespace; from says which
// (logged by the callers, so that a collector outside a pod says where its
// Lease is).
func OwnNamespace(configured string) (ns, from string) {
	if configured != "" {
		return configured, "configured"
	}
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns, "POD_NAMESPACE"
	}
	if b, err := os.ReadFile(serviceAccountNamespaceFile); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns, "service account"
		}
	}
	return DefaultNamespace, "default: not configured and not running in a pod"
}

// Campaign is one election term of a leader-only source.
type Campaign struct {
	Config    config.LeaderElectionConfig
	Namespace string // of the Lease (OwnNamespace)
	Identity  string // LeaderIdentity
	// Component names the source in the Lease's labels, the elector and
	// the logs ("events", "objects").
	Component string
	Leases    coordinationv1.LeasesGetter
	// Grace is how long Lead may still work after ctx ended (draining its
	// queue) before the Lease is released.
	Grace time.Duration
	Log   *slog.Logger
}

// Run campaigns once: it calls lead while this process holds the Lease
// (lead's context ends when the Lease is lost or ctx ends) and returns when
// the Lease was lost — the caller campaigns again — or ctx ended. On
// shutdown the Lease is released (release_on_cancel) only after lead
// returned or Grace plus 10 s passed, so a rolling update fails over once
// the old leader has drained.
func (c Campaign) Run(ctx context.Context, lead func(context.Context)) error {
	le := c.Config
	lease := c.Namespace + "/" + le.LeaseName
	// The elector gets its own context so that on shutdown the session can
	// drain before the Lease is released.
	leCtx, cancelLE := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelLE()
	sessionEnded := make(chan struct{})
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: c.Namespace, Name: le.LeaseName},
			Client:     c.Leases,
			LockConfig: resourcelock.ResourceLockConfig{Identity: c.Identity},
			Labels:     map[string]string{"app.kubernetes.io/name": "kubesift", "app.kubernetes.io/component": c.Component + "-leader"},
		},
		LeaseDuration:   le.LeaseDuration,
		RenewDeadline:   le.RenewDeadline,
		RetryPeriod:     le.RetryPeriod,
		ReleaseOnCancel: le.ReleaseOnCancel,
		Name:            "kubesift-" + c.Component,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(termCtx context.Context) {
				defer close(sessionEnded)
				c.Log.Info("became the leader", "lease", lease)
				sctx, cancel := context.WithCancel(termCtx)
				defer cancel()
				defer context.AfterFunc(ctx, cancel)()
				lead(sctx)
			},
			OnStoppedLeading: func() {
				c.Log.Info("not the leader", "lease", lease)
			},
			OnNewLeader: func(id string) {
				if id != c.Identity {
					c.Log.Info("leader elected", "leader", id)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("%s: leader election: %w", c.Component, err)
	}
	go func() {
		select {
		case <-ctx.Done():
		case <-leCtx.Done():
			return
		}
		if elector.IsLeader() {
			// Let the session finish before the Lease is given up (or
			// simply left to expire).
			t := time.NewTimer(c.Grace + 10*time.Second)
			select {
			case <-sessionEnded:
			case <-t.C:
			}
			t.Stop()
		}
		cancelLE()
	}()
	elector.Run(leCtx)
	if ctx.Err() == nil {
		c.Log.Warn("lost the leader Lease; campaigning again", "lease", lease)
		t := time.NewTimer(le.RetryPeriod)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	return nil
}
