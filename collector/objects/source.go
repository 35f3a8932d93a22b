package objects

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/collector/redact"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/record"
)

// SourceName names this source in dead letters, readiness checks and logs.
const SourceName = "objects"

// Source publishes the current state of a cluster's objects. Build it with
// New and start it with Run; see the package doc.
type Source struct {
	cfg      config.ObjectsConfig
	cluster  record.Cluster
	client   kubernetes.Interface
	pub      collector.Publisher
	san      *redact.Sanitizer
	log      *slog.Logger
	m        *metrics
	identity string
	leaseNS  string
	kinds    []kindInfo

	leader atomic.Bool
	synced atomic.Bool
	// sessionMu serialises sessions: a term that lost the Lease still
	// drains its queue while the next term may already have been won.
	sessionMu sync.Mutex
}

// New builds the objects source. cluster is stamped on every record (its
// name is part of every key). client reads the objects; pub receives the
// records; san redacts them (nil: the default redaction). reg receives the
// metrics (kubesift_collector_objects_*; nil means a private registry); log
// nil means slog.Default(). New does no I/O.
func New(cfg config.ObjectsConfig, cluster record.Cluster, client kubernetes.Interface, pub collector.Publisher,
	san *redact.Sanitizer, reg prometheus.Registerer, log *slog.Logger) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("objects: %w", err)
	}
	if client == nil || pub == nil {
		return nil, errors.New("objects: a Kubernetes client and a publisher are required")
	}
	if cluster.Name == "" {
		return nil, errors.New("objects: cluster name is required (cluster.name)")
	}
	if san == nil {
		san = redact.Default()
	}
	if log == nil {
		log = slog.Default()
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg, cluster: cluster, client: client, pub: pub, san: san, m: m}
	names := cfg.Kinds
	if len(names) == 0 {
		names = config.ObjectKinds
	}
	for _, n := range names {
		s.kinds = append(s.kinds, kinds[n])
	}
	if s.identity, err = collector.LeaderIdentity(cfg.LeaderElection.Identity); err != nil {
		return nil, fmt.Errorf("objects: %w", err)
	}
	s.log = log.With("component", SourceName, "identity", s.identity)
	if cfg.LeaderElection.Enabled {
		var from string
		s.leaseNS, from = collector.OwnNamespace(cfg.LeaderElection.Namespace)
		s.log.Info("leader election Lease", "namespace", s.leaseNS, "from", from, "lease", cfg.LeaderElection.LeaseName)
	}
	return s, nil
}

// IsLeader reports whether this collector currently publishes objects.
func (s *Source) IsLeader() bool { return s.leader.Load() }

// Ready is a readiness check for /readyz: nil for a follower (waiting for
// the Lease is its normal state) and for a leader whose informers have
// delivered their initial lists.
func (s *Source) Ready() error {
	if !s.IsLeader() || s.synced.Load() {
		return nil
	}
	return errors.New("leader: object informers not synced yet")
}

// Run publishes objects until ctx ends. With leader election on it
// campaigns for the Lease and works only while it holds it. It returns nil
// when ctx ends, after the current session drained its queue (up to
// shutdown_grace), so the caller may close the publisher afterwards; an
// error only when leader election cannot be set up. Call it once.
func (s *Source) Run(ctx context.Context) error {
	if !s.cfg.Enabled {
		s.log.Info("objects source disabled (collector.objects.enabled: false)")
		return nil
	}
	if !s.cfg.LeaderElection.Enabled {
		s.lead(ctx)
		return nil
	}
	c := collector.Campaign{
		Config: s.cfg.LeaderElection, Namespace: s.leaseNS, Identity: s.identity, Component: SourceName,
		Leases: s.client.CoordinationV1(), Grace: s.cfg.ShutdownGrace, Log: s.log,
	}
	for ctx.Err() == nil {
		if err := c.Run(ctx, s.lead); err != nil {
			return err
		}
	}
	// A term whose elector was cancelled may still be draining.
	s.sessionMu.Lock()
	defer s.sessionMu.Unlock()
	return nil
}

// lead runs sessions until ctx ends, retrying a failed one with backoff.
func (s *Source) lead(ctx context.Context) {
	s.sessionMu.Lock()
	defer s.sessionMu.Unlock()
	s.leader.Store(true)
	s.m.leader.Set(1)
	defer func() {
		s.leader.Store(false)
		s.m.leader.Set(0)
	}()
	delay := time.Second
	for ctx.Err() == nil {
		err := newSession(s).run(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		s.log.Error("objects session failed; retrying", "err", err, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		delay = min(2*delay, 30*time.Second)
	}
}
