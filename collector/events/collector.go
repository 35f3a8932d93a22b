package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/collector/redact"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/record"
)

// Source names this source in dead letters, readiness checks and logs.
const Source = "events"

// Collector ships a cluster's Events. Build it with New and start it with
// Run; see the package doc.
type Collector struct {
	cfg      config.EventsConfig
	client   kubernetes.Interface
	pub      collector.Publisher
	log      *slog.Logger
	m        *metrics
	identity string
	leaseNS  string // leader election Lease namespace
	wmNS     string // watermark Lease namespace
	scope    string

	clusterMu sync.Mutex
	cluster   record.Cluster

	leader atomic.Bool
	synced atomic.Bool

	// sessionMu serialises sessions: a term that lost the lease still drains
	// its queue while the next term may already have been won.
	sessionMu sync.Mutex
	// stateMu guards stopped; sessions counts running sessions so that Run
	// returns only when none is left (the caller may then close the
	// publisher).
	stateMu  sync.Mutex
	stopped  bool
	sessions sync.WaitGroup

	now func() time.Time

	// san redacts records and dead letters (nil: the default redaction, so
	// neither is ever kept unredacted); set by SetSanitizer before Run.
	san *redact.Sanitizer
}

// SetSanitizer makes records and dead letters go through san (the one the
// other sources of the process use, with its configuration and metrics)
// instead of the default redaction. Call it before Run.
func (c *Collector) SetSanitizer(san *redact.Sanitizer) { c.san = san }

func (c *Collector) sanitizer() *redact.Sanitizer {
	if c.san == nil {
		return redact.Default()
	}
	return c.san
}

// New builds an Events collector. cluster is stamped on every record; when
// its UID is empty, Run reads the kube-system namespace UID once before it
// ships anything. client is used for the Event and Pod informers, the
// Leases and the kube-system read (build it with enough QPS for the Lease
// renewals; informers are not throttled by client-go's rate limiter in
// practice). pub receives the records. reg receives the metrics
// (kubesift_collector_events_*; nil means a private registry). log nil means
// slog.Default().
//
// New does no I/O. It fails on an invalid configuration, an unresolvable
// namespace for the Leases, or metrics already registered in reg.
func New(cfg config.EventsConfig, cluster record.Cluster, client kubernetes.Interface, pub collector.Publisher,
	reg *prometheus.Registry, log *slog.Logger) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	if client == nil || pub == nil {
		return nil, errors.New("events: a Kubernetes client and a publisher are required")
	}
	if cluster.Name == "" {
		return nil, errors.New("events: cluster name is required (cluster.name)")
	}
	if log == nil {
		log = slog.Default()
	}
	var r prometheus.Registerer = reg
	if reg == nil {
		r = prometheus.NewRegistry()
	}
	m, err := newMetrics(r)
	if err != nil {
		return nil, err
	}
	m.watch(cfg.APIs)
	c := &Collector{
		cfg: cfg, cluster: cluster, client: client, pub: pub, m: m, now: time.Now,
		scope: scopeOf(cfg.Namespaces, cfg.FieldSelector, cfg.LabelSelector),
	}
	if c.identity, err = collector.LeaderIdentity(cfg.LeaderElection.Identity); err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	c.log = log.With("component", "events", "identity", c.identity)
	if cfg.LeaderElection.Enabled {
		var from string
		c.leaseNS, from = collector.OwnNamespace(cfg.LeaderElection.Namespace)
		c.log.Info("leader election Lease", "namespace", c.leaseNS, "from", from, "lease", cfg.LeaderElection.LeaseName)
	}
	if cfg.Watermark.Enabled {
		var from string
		c.wmNS, from = collector.OwnNamespace(cfg.Watermark.Namespace)
		c.log.Info("watermark Lease", "namespace", c.wmNS, "from", from, "lease", cfg.Watermark.LeaseName)
	}
	return c, nil
}

// Identity is the name this collector uses in the leader Lease.
func (c *Collector) Identity() string { return c.identity }

// IsLeader reports whether this collector currently ships Events.
func (c *Collector) IsLeader() bool { return c.leader.Load() }

// Synced reports whether this collector is the leader and its Event
// informers have delivered their initial lists (a readiness signal).
func (c *Collector) Synced() bool { return c.synced.Load() }

// Ready is a readiness check for /readyz: nil for a follower (waiting for
// the Lease is its normal state) and for a leader whose Event informers have
// synced. Before either, the cluster id must be known: a collector still
// retrying the kube-system read (wrong CA, API server unreachable) cannot
// campaign or ship, and must not look ready while it cannot.
func (c *Collector) Ready() error {
	if !c.cfg.Enabled {
		return nil
	}
	if c.Cluster().UID == "" {
		return errors.New("cluster id (namespace kube-system) not read yet")
	}
	if !c.IsLeader() || c.Synced() {
		return nil
	}
	return errors.New("leader: Event informers not synced yet")
}

// Cluster returns the cluster identity stamped on records (its UID is filled
// in by Run when New got none).
func (c *Collector) Cluster() record.Cluster {
	c.clusterMu.Lock()
	defer c.clusterMu.Unlock()
	return c.cluster
}

// ReadClusterUID reads the UID of the kube-system namespace, kubesift's
// stable cluster id.
func ReadClusterUID(ctx context.Context, client kubernetes.Interface) (string, error) {
	ns, err := client.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("read cluster id (namespace kube-system): %w", err)
	}
	return string(ns.UID), nil
}

// Run ships Events until ctx ends. With leader election on it campaigns for
// the Lease and ships only while it holds it; it never blocks other work of
// the process (run it in its own goroutine). It returns nil when ctx ends,
// after the current session drained its queue (up to shutdown_grace) and
// wrote its watermark, so the caller may close the publisher afterwards. It
// returns an error only when it cannot work at all: the cluster id is
// forbidden or leader election cannot be set up. A disabled configuration
// returns nil at once. Call it once per Collector.
func (c *Collector) Run(ctx context.Context) error {
	if !c.cfg.Enabled {
		c.log.Info("Events collector disabled (collector.events.enabled: false)")
		return nil
	}
	defer func() {
		c.stateMu.Lock()
		c.stopped = true
		c.stateMu.Unlock()
		c.sessions.Wait()
	}()
	if err := c.ensureClusterUID(ctx); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return nil
	}
	if !c.cfg.LeaderElection.Enabled {
		c.lead(ctx)
		return nil
	}
	for ctx.Err() == nil {
		if err := c.term(ctx); err != nil {
			return err
		}
	}
	return nil
}

// ensureClusterUID reads the kube-system UID once, retrying transient
// errors; forbidden is a configuration error and ends Run.
func (c *Collector) ensureClusterUID(ctx context.Context) error {
	if c.Cluster().UID != "" {
		return nil
	}
	delay := time.Second
	for {
		uid, err := ReadClusterUID(ctx, c.client)
		if err == nil {
			c.clusterMu.Lock()
			c.cluster.UID = uid
			name := c.cluster.Name
			c.clusterMu.Unlock()
			c.log.Info("cluster identity", "cluster", name, "cluster_uid", uid)
			return nil
		}
		if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
			return fmt.Errorf("events: %w (the collector needs get on namespaces/kube-system, or set the cluster uid in the configuration)", err)
		}
		if ctx.Err() != nil {
			return nil
		}
		c.log.Warn("cannot read the cluster id yet; retrying", "err", err, "retry_in", delay)
		if !sleep(ctx, delay) {
			return nil
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// term campaigns once: it returns when the Lease was lost (the caller
// campaigns again) or ctx ended.
func (c *Collector) term(ctx context.Context) error {
	return collector.Campaign{
		Config: c.cfg.LeaderElection, Namespace: c.leaseNS, Identity: c.identity, Component: Source,
		Leases: c.client.CoordinationV1(), Grace: c.cfg.ShutdownGrace, Log: c.log,
	}.Run(ctx, c.lead)
}

// lead runs sessions until ctx ends, retrying a failed one with backoff.
func (c *Collector) lead(ctx context.Context) {
	c.sessionMu.Lock()
	defer c.sessionMu.Unlock()
	c.stateMu.Lock()
	if c.stopped || ctx.Err() != nil {
		c.stateMu.Unlock()
		return
	}
	c.sessions.Add(1)
	c.stateMu.Unlock()
	defer c.sessions.Done()

	c.leader.Store(true)
	c.m.leader.Set(1)
	c.m.leaderTerms.Inc()
	defer func() {
		c.leader.Store(false)
		c.m.leader.Set(0)
	}()
	delay := time.Second
	for ctx.Err() == nil {
		err := newSession(c).run(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		c.log.Error("Events session failed; retrying", "err", err, "retry_in", delay)
		if !sleep(ctx, delay) {
			return
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
