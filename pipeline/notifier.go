package pipeline

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/backoff"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/kafkaopts"
	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/internal/tlsfiles"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink/elasticsearch"
	"github.com/kubesift/kubesift/sink/notify"
)

// ConsoleReceiver is the receiver name the console takes in a notifier
// built with NotifierDeps.Console; a configured receiver may not use it.
const ConsoleReceiver = "console"

// NotifierDeps are what a command gives NewNotifier beside the
// configuration.
type NotifierDeps struct {
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Console, when set, builds the all-in-one's notifier (`kubesift run`):
	// the console receiver takes every alert at once, grouped by cluster
	// and rule, and the configured route (if any) routes beside it. Such a
	// notifier keeps nothing in Elasticsearch: no silences, no delivery
	// states, no silence API, no dead-man check, no digest.
	Console notify.Notifier
	// CommitInterval is the alerts consumer's (0: one second).
	CommitInterval time.Duration
}

// Notifier is the notifier of one command: the alerts consumer, the
// dispatcher with its receivers, the dead-letter writer of undecodable
// alerts and, unless it is the console's, the silences (and their API),
// the delivery states, the dead-man check and the daily digest. Build it
// with NewNotifier and run it by adding it to a lifecycle.Group.
type Notifier struct {
	consumer  *NotifyConsumer
	d         *notify.Dispatcher
	dlq       *kafka.Writer
	receivers int
	log       *slog.Logger

	silencer *notify.Silencer // nil for the console's notifier
	states   *notify.ESStates
	deadman  *notify.Deadman // nil unless notify.deadman.enabled
	every    time.Duration   // the dead-man check interval
	api      *silenceAPI     // nil unless notify.silences.api.listen
	digest   *Digester       // nil unless notify.digest.schedule
}

// NewNotifier builds the notifier of cfg. Without deps.Console it reads
// the silences first and fails when it cannot (fail closed: delivering
// before the silences are known would send what someone silenced), and it
// binds the silence API's port, so a taken port fails the start. ctx bounds
// that reading.
func NewNotifier(ctx context.Context, cfg *config.Config, deps NotifierDeps) (*Notifier, error) {
	n := &cfg.Notify
	if deps.Console == nil && !n.Configured() {
		return nil, errors.New("notify.receivers: at least one receiver (and notify.route.receiver) is required by notify")
	}
	if len(cfg.Kafka.Brokers) == 0 {
		return nil, errors.New("kafka.brokers: required by notify")
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	nt := &Notifier{log: log}
	opts, err := dispatcherOptions(n, deps.Console, deps.Registerer, log)
	if err != nil {
		return nil, err
	}
	nt.receivers = len(opts.Receivers)
	if deps.Console == nil {
		if err := nt.buildStored(ctx, cfg, &opts, deps.Registerer); err != nil {
			return nil, err
		}
	}
	if nt.d, err = notify.New(opts); err != nil {
		return nil, nt.closeOnError(err)
	}
	if nt.deadman != nil {
		nt.deadman.Dispatcher = nt.d
	}
	if err := nt.buildConsumer(cfg, deps); err != nil {
		return nil, nt.closeOnError(err)
	}
	return nt, nil
}

// dispatcherOptions builds the route, the receivers, the inhibitor and the
// metrics: every part of the dispatcher that needs no store.
func dispatcherOptions(n *config.NotifyConfig, console notify.Notifier, reg prometheus.Registerer, log *slog.Logger) (notify.Options, error) {
	o := notify.Options{
		MaxGroups: n.MaxGroups, MaxAlertsPerGroup: n.MaxAlertsPerGroup, QueueSize: n.QueueSize,
		Backoff:     backoff.Policy{Initial: n.Retry.InitialBackoff, Max: n.Retry.MaxBackoff},
		GiveUpAfter: n.Retry.GiveUpAfter, Log: log,
	}
	root := n.Route
	o.Receivers = map[string][]notify.Integration{}
	if console != nil {
		root = consoleRoute(n)
		o.Receivers[ConsoleReceiver] = []notify.Integration{{Name: ConsoleReceiver, Notifier: console}}
	}
	if n.Configured() {
		user, err := buildReceivers(n)
		if err != nil {
			return o, err
		}
		for name, ints := range user {
			if _, taken := o.Receivers[name]; taken {
				return o, fmt.Errorf("notify.receivers: the name %q is reserved by run for the console", name)
			}
			o.Receivers[name] = ints
		}
		if o.Inhibitor, err = notify.NewInhibitor(n.InhibitRules); err != nil {
			return o, err
		}
	}
	var err error
	if o.Route, err = notify.NewRoute(&root); err != nil {
		return o, err
	}
	o.Metrics, err = notify.NewMetrics(reg)
	return o, err
}

// consoleRoute is the routing tree of the console's notifier: one group
// per cluster and rule, sent at once and then at most every half second,
// so the console shows alerts as they come and a replay is not held up by
// group timers. The console sees everything (continue), then the configured
// tree routes as it would in `kubesift notify`.
func consoleRoute(n *config.NotifyConfig) config.RouteConfig {
	wait, interval, repeat := time.Duration(0), 500*time.Millisecond, time.Hour
	root := config.RouteConfig{Receiver: ConsoleReceiver, GroupBy: []string{"cluster", "rule_id"},
		GroupWait: &wait, GroupInterval: &interval, RepeatInterval: &repeat}
	if n.Configured() {
		root.Routes = []config.RouteConfig{{Receiver: ConsoleReceiver, Continue: true}, n.Route}
	}
	return root
}

// buildReceivers turns the configured receivers into integrations. Their
// names ("security/slack[0]") appear in logs, metrics and delivery
// reasons; URLs never do.
func buildReceivers(cfg *config.NotifyConfig) (map[string][]notify.Integration, error) {
	client := &http.Client{Timeout: cfg.Timeout}
	out := map[string][]notify.Integration{}
	for i, r := range cfg.Receivers {
		for j, sc := range r.SlackConfigs {
			s, err := notify.NewSlack(sc, client)
			if err != nil {
				return nil, fmt.Errorf("notify.receivers[%d].slack_configs[%d]: %w", i, j, err)
			}
			out[r.Name] = append(out[r.Name], notify.Integration{Name: fmt.Sprintf("%s/slack[%d]", r.Name, j), Notifier: s, SendResolved: sc.SendResolved})
		}
		for j, wc := range r.WebhookConfigs {
			w, err := notify.NewWebhook(wc, client)
			if err != nil {
				return nil, fmt.Errorf("notify.receivers[%d].webhook_configs[%d]: %w", i, j, err)
			}
			out[r.Name] = append(out[r.Name], notify.Integration{Name: fmt.Sprintf("%s/webhook[%d]", r.Name, j), Notifier: w, SendResolved: wc.SendResolved})
		}
		oncall, err := buildOnCall(cfg, i, r)
		if err != nil {
			return nil, err
		}
		out[r.Name] = append(out[r.Name], oncall...)
		for j, tc := range r.TeamsConfigs {
			t, err := notify.NewTeams(tc, client)
			if err != nil {
				return nil, fmt.Errorf("notify.receivers[%d].teams_configs[%d]: %w", i, j, err)
			}
			out[r.Name] = append(out[r.Name], notify.Integration{Name: fmt.Sprintf("%s/teams[%d]", r.Name, j), Notifier: t, SendResolved: tc.SendResolved})
		}
		for j, ec := range r.EmailConfigs {
			e, err := notify.NewEmail(ec, cfg.Timeout)
			if err != nil {
				return nil, fmt.Errorf("notify.receivers[%d].email_configs[%d]: %w", i, j, err)
			}
			out[r.Name] = append(out[r.Name], notify.Integration{Name: fmt.Sprintf("%s/email[%d]", r.Name, j), Notifier: e, SendResolved: ec.SendResolved})
		}
	}
	return out, nil
}

// buildStored builds what lives in Elasticsearch — silences, delivery
// states, the dead-man check's view of the data streams — and the silence
// API, and hands the first two to the dispatcher's options.
func (nt *Notifier) buildStored(ctx context.Context, cfg *config.Config, o *notify.Options, reg prometheus.Registerer) error {
	n := &cfg.Notify
	esClient, err := elasticsearch.NewClient(cfg.Sink.Elasticsearch)
	if err != nil {
		return err
	}
	store, err := notify.NewESSilences(ctx, esClient, n.Silences.Index)
	if err != nil {
		return fmt.Errorf("silences: %w", err)
	}
	nt.silencer = notify.NewSilencer(store, n.Silences.RefreshInterval, nt.log)
	if err := nt.silencer.Refresh(ctx); err != nil {
		return fmt.Errorf("reading silences: %w", err)
	}
	if nt.states, err = notify.NewESStates(esClient, cfg.Sink.Elasticsearch.AlertsIndex, 100000, time.Second, nt.log, reg); err != nil {
		return err
	}
	o.Silences, o.States = nt.silencer, nt.states
	if dm := n.Deadman; dm.Enabled {
		sev, err := rules.ParseSeverity(dm.Severity)
		if err != nil {
			return fmt.Errorf("notify.deadman.severity: %w", err)
		}
		es := cfg.Sink.Elasticsearch
		nt.deadman = &notify.Deadman{
			Seen:      notify.ESLastSeen(esClient, []string{es.Streams.Audit, es.Streams.Events}),
			Threshold: dm.Threshold, Clusters: dm.Clusters, Severity: sev, Log: nt.log,
		}
		nt.every = dm.CheckInterval
	}
	if n.Digest.Enabled() {
		if nt.digest, err = newDigester(ctx, cfg, esClient, o.Receivers, reg, nt.log); err != nil {
			return err
		}
	}
	if n.Silences.API.Listen != "" {
		if nt.api, err = newSilenceAPI(n.Silences.API, nt.silencer, reg, nt.log); err != nil {
			return err
		}
	}
	return nil
}

// buildConsumer builds the alerts consumer and its dead-letter writer.
func (nt *Notifier) buildConsumer(cfg *config.Config, deps NotifierDeps) error {
	dialer, err := kafkaopts.Dialer(cfg.Kafka)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	transport, err := kafkaopts.Transport(cfg.Kafka)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	nt.dlq = &kafka.Writer{Addr: kafka.TCP(cfg.Kafka.Brokers...), Transport: transport, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: 10 * time.Millisecond, WriteTimeout: 10 * time.Second}
	nt.consumer, err = NewNotifyConsumer(NotifyConsumerOptions{
		Brokers: cfg.Kafka.Brokers, Dialer: dialer, Topic: cfg.Kafka.Topics.Alerts, GroupID: cfg.Notify.ConsumerGroup,
		DLQ: NotifyDLQWriter(nt.dlq, cfg.Kafka.Topics.DLQ), Dispatcher: nt.d, CommitInterval: deps.CommitInterval,
		Log: nt.log, Registerer: deps.Registerer,
	})
	return err
}

// closeOnError releases what a failed build holds (the silence API's port,
// the dead-letter writer) and returns err.
func (nt *Notifier) closeOnError(err error) error {
	return errors.Join(err, nt.Close())
}

// Close releases the silence API's port and the dead-letter writer of a
// notifier that will not run; Add's components release them themselves.
func (nt *Notifier) Close() error {
	var errs []error
	if nt.api != nil {
		errs = append(errs, nt.api.ln.Close())
	}
	if nt.dlq != nil {
		errs = append(errs, nt.dlq.Close())
	}
	return errors.Join(errs...)
}

// Add registers the notifier's components with g, each after what it
// hands work to, so that shutdown (reverse order) stops the consumer first,
// then the silence API, the digest and the dead-man check, then the
// dispatcher, and only then the silences and the delivery states, which
// flush last. The consumer is the main component: its return ends the
// group.
func (nt *Notifier) Add(g Group) {
	if nt.states != nil {
		g.AddService("delivery states", func(ctx context.Context) error { nt.states.Run(ctx); return nil })
	}
	if nt.silencer != nil {
		g.AddService("silences", func(ctx context.Context) error { nt.silencer.Run(ctx); return nil })
	}
	g.AddService("dispatcher", nt.d.Run)
	if nt.deadman != nil {
		g.AddService("dead-man check", func(ctx context.Context) error { nt.deadman.Run(ctx, nt.every); return nil })
	}
	if nt.digest != nil {
		g.AddService("digest", func(ctx context.Context) error { nt.digest.Run(ctx); return nil })
	}
	if nt.api != nil {
		g.AddService("silence API", nt.api.serve)
	}
	g.AddMain("notifier", func(ctx context.Context) error {
		nt.log.Info("notifier starting", "group", nt.consumer.o.GroupID, "topic", nt.consumer.o.Topic, "receivers", nt.receivers)
		err := nt.consumer.Run(ctx)
		if cerr := nt.dlq.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("closing the dead-letter writer: %w", cerr))
		}
		return err
	})
}

// Flush sends every aggregation group now, without waiting for its
// timers (notify.Dispatcher.Flush): for the end of a replay.
func (nt *Notifier) Flush() { nt.d.Flush() }

// Status is the dispatcher's delivery status: the groups not yet flushed
// and each integration's (notify.Dispatcher.Status).
func (nt *Notifier) Status() (waitingGroups int, integrations []notify.DeliveryStatus) {
	return nt.d.Status()
}

// silenceAPI is the silence API's server on its bound listener.
type silenceAPI struct {
	srv *http.Server
	ln  net.Listener
	tls bool
}

// newSilenceAPI builds the handler and binds the listener of c.
func newSilenceAPI(c config.SilenceAPIConfig, s *notify.Silencer, reg prometheus.Registerer, log *slog.Logger) (*silenceAPI, error) {
	h, err := notify.NewSilenceAPI(s, string(c.Token), log, reg)
	if err != nil {
		return nil, err
	}
	var tlsCfg *tls.Config
	if c.TLS() {
		// Re-read when renewed, as the audit webhook's certificate is.
		cert, err := tlsfiles.Load(c.TLSCertFile, c.TLSKeyFile, tlsfiles.Options{
			Field: "notify.silences.api.tls_cert_file/tls_key_file", Log: log})
		if err != nil {
			return nil, err
		}
		if err := obs.Register(reg, cert.Collectors("silence-api")...); err != nil {
			return nil, err
		}
		tlsCfg = &tls.Config{GetCertificate: cert.GetCertificate, MinVersion: tls.VersionTLS12}
	} else if !LoopbackOnly(c.Listen) {
		// The bearer token authorises muting alerts: on a network it
		// belongs inside TLS. Not refused (a sidecar or mesh may add
		// TLS), but said.
		log.Warn("silence API serves plain HTTP on a non-loopback address: its bearer token crosses the network in clear text; set notify.silences.api.tls_cert_file and tls_key_file", "listen", c.Listen)
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return nil, fmt.Errorf("notify.silences.api.listen: %w", err)
	}
	limits := obs.SilenceAPILimits.WithMax(c.MaxConnections)
	wrapped, err := limits.Wrap(ln, "silence-api", reg, log)
	if err != nil {
		return nil, errors.Join(err, ln.Close())
	}
	srv := limits.Server(h)
	srv.TLSConfig = tlsCfg
	log.Info("silence API listening", "addr", ln.Addr().String(), "tls", tlsCfg != nil)
	return &silenceAPI{srv: srv, ln: wrapped, tls: tlsCfg != nil}, nil
}

// serve serves until ctx ends, then shuts the server down, giving requests
// in progress five seconds.
func (a *silenceAPI) serve(ctx context.Context) error {
	served := make(chan error, 1)
	go func() {
		if a.tls {
			served <- a.srv.ServeTLS(a.ln, "", "")
			return
		}
		served <- a.srv.Serve(a.ln)
	}()
	select {
	case err := <-served:
		return err // it stopped on its own: it cannot accept any more
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	serr := a.srv.Shutdown(sctx)
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		serr = errors.Join(serr, err)
	}
	return serr
}

// LoopbackOnly reports whether listen (host:port) accepts connections from
// this host only.
func LoopbackOnly(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
