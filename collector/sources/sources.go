// Package sources builds the collector's sources from the collector:
// section of the configuration — the audit webhook receiver, the audit log
// tail (with its stall watch), the Events collector and the objects source —
// ready to run.
//
// It is the one constructor of the sources: `kubesift collect` and the
// all-in-one `kubesift run` both call New, so the all-in-one runs the very
// sources a deployment does. It lives in its own package, not in collector,
// because every source imports collector for the Publisher contract.
//
// # The contract
//
// New returns the enabled sources in a fixed order (webhook, tail, stall
// watch, Events, objects) or an error naming the configuration field at fault; on an
// error nothing it built is left open. Each Source runs until its context
// ends and returns an error only when it cannot go on, so the caller runs
// them under one lifecycle (internal/lifecycle) that stops the rest when one
// fails and closes the publisher only after every source returned.
//
// Each source publishes through its own view of the publisher when the
// publisher has one (publish.Publisher.For), so the messages it delivers
// name it (header kubesift-origin). Readiness is reported through
// Options.SetReady under the source's name: the webhook is ready once its
// port is bound (in New, so a taken port fails the start instead of a
// goroutine), the tail once it has opened its files, Events and objects as
// their Ready methods say (checked every second).
package sources

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/collector/audittail"
	"github.com/kubesift/kubesift/collector/auditwebhook"
	"github.com/kubesift/kubesift/collector/events"
	"github.com/kubesift/kubesift/collector/objects"
	"github.com/kubesift/kubesift/collector/redact"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/lifecycle"
	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/record"
)

// StallWatch is the name of the component that fails /readyz for a tail
// path whose position stays put while it has unread data.
const StallWatch = "stall watch"

// readyEvery is how often the Events and objects sources' readiness is
// copied to SetReady.
const readyEvery = time.Second

// Source is one built source: its name (audittail.Source, …) and its body.
type Source struct {
	Name string
	Run  lifecycle.RunFunc
}

// Options are what New builds the sources from.
type Options struct {
	// Config is the collector: section; only the enabled sources are built.
	Config config.CollectorConfig
	// Cluster is stamped on every record (collector.ClusterIdentity).
	Cluster record.Cluster
	// Sanitizer redacts and size-caps every record and dead letter.
	Sanitizer *redact.Sanitizer
	// Publisher receives every source's records; see the package doc for
	// the per-source view.
	Publisher collector.Publisher
	// Registry receives the sources' metrics; nil: a private one (not
	// exported). A Registry, not a Registerer, because the Events collector
	// takes one.
	Registry *prometheus.Registry
	// SetReady reports a source's readiness (nil error: ready), as
	// obs.Server.SetReady does; nil: not reported.
	SetReady func(name string, err error)
	// Logger receives the sources' logs; nil: slog.Default().
	Logger *slog.Logger
}

// New builds the sources enabled in o.Config; see the package doc.
func New(o Options) (srcs []Source, err error) {
	if o.SetReady == nil {
		o.SetReady = func(string, error) {}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	// The webhook's port is bound here; a later source that fails to
	// build must not leave it taken.
	var opened []io.Closer
	defer func() {
		if err != nil {
			for _, c := range opened {
				c.Close()
			}
		}
	}()
	cc := &o.Config
	if cc.AuditWebhook.Enabled {
		src, ln, err := o.webhook()
		if err != nil {
			return nil, err
		}
		opened = append(opened, ln)
		srcs = append(srcs, src)
	}
	if cc.AuditTail.Enabled {
		tail, stall, err := o.tail()
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, tail, stall)
	}
	if cc.Events.Enabled {
		src, err := o.events()
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, src)
	}
	if cc.Objects.Enabled {
		src, err := o.objects()
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, src)
	}
	return srcs, nil
}

// publisherFor is the view of the publisher that source publishes through.
func (o *Options) publisherFor(source string) collector.Publisher {
	if sp, ok := o.Publisher.(interface {
		For(string) collector.Publisher
	}); ok {
		return sp.For(source)
	}
	return o.Publisher
}

// webhook builds the audit webhook receiver and binds its port.
func (o *Options) webhook() (Source, net.Listener, error) {
	cc := &o.Config
	rcv, err := auditwebhook.New(auditwebhook.Options{
		Config: cc.AuditWebhook, Publisher: o.publisherFor(auditwebhook.Source), Sanitizer: o.Sanitizer,
		Cluster: o.Cluster, DeadLetterMaxBytes: cc.DeadLetterMaxBytes, Registerer: o.Registry, Logger: o.Logger,
	})
	if err != nil {
		return Source{}, nil, err
	}
	ln, err := net.Listen("tcp", cc.AuditWebhook.Listen)
	if err != nil {
		return Source{}, nil, fmt.Errorf("collector.audit_webhook.listen: %w", err)
	}
	o.SetReady(auditwebhook.Source, nil)
	return Source{auditwebhook.Source, func(ctx context.Context) error { return rcv.Serve(ctx, ln) }}, ln, nil
}

// tail builds the audit log tail and the stall watch of its paths.
func (o *Options) tail() (tail, stall Source, err error) {
	cc := &o.Config
	tl, err := audittail.New(audittail.Options{
		Config: cc.AuditTail, Publisher: o.publisherFor(audittail.Source), Sanitizer: o.Sanitizer,
		Cluster: o.Cluster, DeadLetterMaxBytes: cc.DeadLetterMaxBytes, Registerer: o.Registry, Logger: o.Logger,
	})
	if err != nil {
		return Source{}, Source{}, err
	}
	// A file with unread data whose position stays put fails /readyz.
	sw, err := obs.NewStallWatch(cc.AuditTail.StallAfter, o.Registry, o.SetReady)
	if err != nil {
		return Source{}, Source{}, fmt.Errorf("collector.audit_tail.stall_after: %w", err)
	}
	for _, p := range cc.AuditTail.Paths {
		sw.Add(audittail.Source+":"+p, func() obs.Progress { return tl.Progress(p) })
	}
	o.SetReady(audittail.Source, errors.New("opening the audit log files"))
	setReady := o.SetReady
	run := alongside(tl.Run, func(stop <-chan struct{}) {
		select {
		case <-tl.Started():
			setReady(audittail.Source, nil)
		case <-stop:
		}
	})
	return Source{audittail.Source, run}, Source{StallWatch, sw.Run}, nil
}

// kubeClient is a client on the collector's API access for the source
// configured under field. The sources read through informers and listers
// only; a modest client rate is plenty and keeps them polite to the API
// server.
func (o *Options) kubeClient(field, userAgent string) (kubernetes.Interface, error) {
	rc, err := collector.KubeConfig(&o.Config)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	if rc == nil {
		return nil, fmt.Errorf("%s needs API access: set collector.kubeconfig or run in a pod", field)
	}
	rc.QPS, rc.Burst, rc.UserAgent = 20, 40, userAgent
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return cs, nil
}

// events builds the Events collector on the collector's API access.
func (o *Options) events() (Source, error) {
	cs, err := o.kubeClient("collector.events", "kubesift-collect/events")
	if err != nil {
		return Source{}, err
	}
	ev, err := events.New(o.Config.Events, o.Cluster, cs, o.publisherFor(events.Source), o.Registry, o.Logger)
	if err != nil {
		return Source{}, err
	}
	ev.SetSanitizer(o.Sanitizer)
	return Source{events.Source, o.polledReady(events.Source, ev.Run, ev.Ready)}, nil
}

// objects builds the objects source (posture) on the collector's API access.
func (o *Options) objects() (Source, error) {
	cs, err := o.kubeClient("collector.objects", "kubesift-collect/objects")
	if err != nil {
		return Source{}, err
	}
	src, err := objects.New(o.Config.Objects, o.Cluster, cs, o.publisherFor(objects.SourceName), o.Sanitizer, o.Registry, o.Logger)
	if err != nil {
		return Source{}, err
	}
	return Source{objects.SourceName, o.polledReady(objects.SourceName, src.Run, src.Ready)}, nil
}

// polledReady reports ready(), copied every readyEvery for as long as run
// runs, as name's readiness: leadership and informer sync, which it
// follows, have no callback to hook.
func (o *Options) polledReady(name string, run lifecycle.RunFunc, ready func() error) lifecycle.RunFunc {
	o.SetReady(name, errors.New("starting"))
	setReady := o.SetReady
	return alongside(run, func(stop <-chan struct{}) {
		t := time.NewTicker(readyEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				setReady(name, ready())
			}
		}
	})
}

// alongside runs watch in its own goroutine for as long as run runs: the
// readiness watch of a source lives and ends with the source.
func alongside(run lifecycle.RunFunc, watch func(stop <-chan struct{})) lifecycle.RunFunc {
	return func(ctx context.Context) error {
		stop := make(chan struct{})
		defer close(stop)
		go watch(stop)
		return run(ctx)
	}
}
