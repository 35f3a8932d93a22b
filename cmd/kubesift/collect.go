package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/collector/audittail"
	"github.com/kubesift/kubesift/collector/auditwebhook"
	"github.com/kubesift/kubesift/collector/events"
	"github.com/kubesift/kubesift/collector/objects"
	"github.com/kubesift/kubesift/collector/publish"
	"github.com/kubesift/kubesift/collector/redact"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/record"
)

func newCollectCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "collect",
		Short: "Run the per-cluster collector: audit webhook receiver and audit log tail, published to Kafka",
		Long: `collect runs the sources configured under collector: — the HTTPS receiver for
kube-apiserver's audit webhook backend (collector.audit_webhook) and the tail of audit log
files (collector.audit_tail) — redacts secrets and applies the size policy to every record,
stamps the cluster identity (cluster.name and the kube-system namespace UID), and publishes
to Kafka. A request or a line is acknowledged (2xx, tail position) only once Kafka or the
disk spool has it. /metrics, /healthz and /readyz are served on server.listen.
SIGINT/SIGTERM stop the sources (the webhook answers 503 meanwhile), write the tail
positions and close the publisher.`,
		Example: `  # the collector as deployed (see config print-defaults for every key)
  kubesift collect -c /etc/kubesift/collector.yaml
  # collector.yaml for a control-plane node, tailing the audit log:
  #   cluster: {name: prod-eu}
  #   kafka: {brokers: ["kafka-0:9092"]}
  #   collector:
  #     audit_tail: {enabled: true, paths: [/var/log/kubernetes/audit/audit.log]}`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := g.load(cmd)
			if err != nil {
				return err
			}
			return runCollect(cmd.Context(), cfg, log)
		},
	}
}

// collectPublisher is what collect needs of the publisher: the sources'
// contract, and Close to flush it on shutdown.
type collectPublisher interface {
	collector.Publisher
	Close(ctx context.Context) error
}

// newPublisher builds the collector's Kafka publisher with its disk spool
// (package collector/publish): Publish returns nil only when every record is
// acknowledged by Kafka (acks=all) or written to the spool, and Close flushes
// or spools what is in flight.
func newPublisher(_ context.Context, cfg *config.Config, reg prometheus.Registerer, log *slog.Logger) (collectPublisher, error) {
	if len(cfg.Kafka.Brokers) == 0 {
		return nil, errors.New("kafka.brokers: required by collect")
	}
	return publish.New(publish.Options{Publish: cfg.Publish, Kafka: cfg.Kafka, Registerer: reg, Logger: log})
}

// publisherFactory is newPublisher; tests replace it with an in-memory one.
var publisherFactory = newPublisher

// publisherCloseTimeout bounds the publisher's flush on shutdown.
const publisherCloseTimeout = 30 * time.Second

// runCollect builds the sources from cfg and runs them until ctx ends or one
// of them fails.
func runCollect(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	cc := &cfg.Collector
	if !cc.AuditWebhook.Enabled && !cc.AuditTail.Enabled && !cc.Events.Enabled && !cc.Objects.Enabled {
		return errors.New("collect: no source enabled; set collector.audit_webhook.enabled, collector.audit_tail.enabled, collector.events.enabled or collector.objects.enabled")
	}
	// A soft memory limit bounds RSS under load (collector.memory_limit).
	obs.ApplyMemoryLimit(cc.MemoryLimit, log)
	srv := obs.New(log)
	reg := srv.Registry
	cluster := record.Cluster{Name: cfg.Cluster.Name, UID: clusterUID(ctx, cc, log)}
	log.Info("collector starting", "cluster", cluster.Name, "cluster_uid", cluster.UID)

	san, err := redact.New(cc.Redaction, cc.Size, cc.DeadLetterMaxBytes, reg, log)
	if err != nil {
		return fmt.Errorf("collect: %w", err)
	}
	if !san.Enabled() {
		log.Warn("redaction is disabled (collector.redaction.enabled: false): Secret data and tokens are published as the API server logged them")
	}
	pub, err := publisherFactory(ctx, cfg, reg, log)
	if err != nil {
		return fmt.Errorf("collect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), publisherCloseTimeout)
		defer cancel()
		if err := pub.Close(cctx); err != nil {
			log.Error("closing the publisher", "err", err)
		}
	}()

	// Every part runs until ctx ends; the first to fail stops the others.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				errMu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("%s: %w", name, err)
				}
				errMu.Unlock()
				log.Error("collector part failed; stopping", "part", name, "err", err)
				cancel()
			}
		}()
	}
	parts, err := buildSources(ctx, cfg, cluster, san, pub, srv, log)
	if err != nil {
		return fmt.Errorf("collect: %w", err)
	}
	for _, p := range parts {
		run(p.name, p.run)
	}
	if cfg.Server.Listen != "" {
		run("metrics server", func(ctx context.Context) error { return srv.Run(ctx, cfg.Server) })
	}
	wg.Wait()
	log.Info("collector stopped")
	return firstErr
}

// sourcePart is one collector source, built and ready to run until its
// context ends.
type sourcePart struct {
	name string
	run  func(context.Context) error
}

// buildSources builds the sources enabled under collector: (audit webhook,
// audit tail, Events), each publishing through its own view of pub, and
// reports their readiness on srv. The webhook's port is bound here, so a
// taken port fails the start instead of a goroutine. collect and run share
// it, so the all-in-one runs the very sources a deployment does.
func buildSources(ctx context.Context, cfg *config.Config, cluster record.Cluster, san *redact.Sanitizer,
	pub collector.Publisher, srv *obs.Server, log *slog.Logger) ([]sourcePart, error) {
	cc := &cfg.Collector
	reg := srv.Registry
	var parts []sourcePart
	// Each source publishes through its own view of the publisher when it
	// has one (publish.Publisher.For), so its messages name the source that
	// delivered them (header kubesift-origin).
	sourcePub := func(source string) collector.Publisher {
		if sp, ok := pub.(interface {
			For(string) collector.Publisher
		}); ok {
			return sp.For(source)
		}
		return pub
	}

	if cc.AuditWebhook.Enabled {
		rcv, err := auditwebhook.New(auditwebhook.Options{
			Config: cc.AuditWebhook, Publisher: sourcePub(auditwebhook.Source), Sanitizer: san, Cluster: cluster,
			DeadLetterMaxBytes: cc.DeadLetterMaxBytes, Registerer: reg, Logger: log,
		})
		if err != nil {
			return nil, err
		}
		// Listen now, so a taken port fails the start instead of a goroutine.
		ln, err := net.Listen("tcp", cc.AuditWebhook.Listen)
		if err != nil {
			return nil, fmt.Errorf("collector.audit_webhook.listen: %w", err)
		}
		srv.SetReady(auditwebhook.Source, nil)
		parts = append(parts, sourcePart{auditwebhook.Source, func(ctx context.Context) error { return rcv.Serve(ctx, ln) }})
	}
	if cc.AuditTail.Enabled {
		tl, err := audittail.New(audittail.Options{
			Config: cc.AuditTail, Publisher: sourcePub(audittail.Source), Sanitizer: san, Cluster: cluster,
			DeadLetterMaxBytes: cc.DeadLetterMaxBytes, Registerer: reg, Logger: log,
		})
		if err != nil {
			return nil, err
		}
		srv.SetReady(audittail.Source, errors.New("opening the audit log files"))
		go func() {
			select {
			case <-tl.Started():
				srv.SetReady(audittail.Source, nil)
			case <-ctx.Done():
			}
		}()
		parts = append(parts, sourcePart{audittail.Source, tl.Run})
		// A file with unread data whose position stays put fails /readyz.
		stall, err := obs.NewStallWatch(cc.AuditTail.StallAfter, reg, srv.SetReady)
		if err != nil {
			return nil, fmt.Errorf("collector.audit_tail.stall_after: %w", err)
		}
		for _, p := range cc.AuditTail.Paths {
			stall.Add(audittail.Source+":"+p, func() obs.Progress { return tl.Progress(p) })
		}
		parts = append(parts, sourcePart{"stall watch", stall.Run})
	}
	if cc.Events.Enabled {
		rc, err := restConfig(cc)
		if err != nil {
			return nil, fmt.Errorf("collector.events: %w", err)
		}
		if rc == nil {
			return nil, errors.New("collector.events needs API access: set collector.kubeconfig or run in a pod")
		}
		// The Events collector reads through informers and listers only; a
		// modest client rate is plenty and keeps it polite to the API server.
		rc.QPS, rc.Burst, rc.UserAgent = 20, 40, "kubesift-collect/events"
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return nil, fmt.Errorf("collector.events: %w", err)
		}
		ev, err := events.New(cc.Events, cluster, cs, sourcePub(events.Source), reg, log)
		if err != nil {
			return nil, err
		}
		ev.SetSanitizer(san)
		srv.SetReady(events.Source, errors.New("starting"))
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					srv.SetReady(events.Source, ev.Ready())
				}
			}
		}()
		parts = append(parts, sourcePart{events.Source, ev.Run})
	}
	if cc.Objects.Enabled {
		rc, err := restConfig(cc)
		if err != nil {
			return nil, fmt.Errorf("collector.objects: %w", err)
		}
		if rc == nil {
			return nil, errors.New("collector.objects needs API access: set collector.kubeconfig or run in a pod")
		}
		// Informers only (list/watch) plus Lease renewals: a modest rate.
		rc.QPS, rc.Burst, rc.UserAgent = 20, 40, "kubesift-collect/objects"
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return nil, fmt.Errorf("collector.objects: %w", err)
		}
		src, err := objects.New(cc.Objects, cluster, cs, sourcePub(objects.SourceName), san, reg, log)
		if err != nil {
			return nil, err
		}
		srv.SetReady(objects.SourceName, errors.New("starting"))
		parts = append(parts, sourcePart{objects.SourceName, func(ctx context.Context) error {
			go func() {
				t := time.NewTicker(time.Second)
				defer t.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-t.C:
						srv.SetReady(objects.SourceName, src.Ready())
					}
				}
			}()
			return src.Run(ctx)
		}})
	}
	return parts, nil
}

// clusterUID reads the kube-system namespace UID once, when the collector
// has API access (collector.kubeconfig, or the in-cluster configuration in a
// pod); otherwise, or when the read fails, it is collector.cluster_uid
// (possibly empty). The identity needs "get" on namespaces/kube-system.
func clusterUID(ctx context.Context, cc *config.CollectorConfig, log *slog.Logger) string {
	rc, err := restConfig(cc)
	if rc == nil && err == nil {
		if cc.ClusterUID == "" {
			log.Info("no API access configured and collector.cluster_uid is empty: records carry no cluster UID")
		}
		return cc.ClusterUID
	}
	if err == nil {
		var cs *kubernetes.Clientset
		if cs, err = kubernetes.NewForConfig(rc); err == nil {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			ns, gerr := cs.CoreV1().Namespaces().Get(rctx, "kube-system", metav1.GetOptions{})
			if err = gerr; err == nil {
				uid := string(ns.UID)
				if cc.ClusterUID != "" && cc.ClusterUID != uid {
					log.Warn("collector.cluster_uid differs from the kube-system namespace UID; using the API server's",
						"configured", cc.ClusterUID, "api", uid)
				}
				return uid
			}
		}
	}
	log.Warn("cannot read the kube-system namespace UID; using collector.cluster_uid", "err", err, "cluster_uid", cc.ClusterUID)
	return cc.ClusterUID
}

// restConfig is the API access of the collector: collector.kubeconfig, or
// the in-cluster configuration in a pod; nil, nil when there is none.
func restConfig(cc *config.CollectorConfig) (*rest.Config, error) {
	switch {
	case cc.Kubeconfig != "":
		return clientcmd.BuildConfigFromFlags("", cc.Kubeconfig)
	case os.Getenv("KUBERNETES_SERVICE_HOST") != "":
		return rest.InClusterConfig()
	}
	return nil, nil
}
