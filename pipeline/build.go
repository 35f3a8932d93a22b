package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/lifecycle"
	"github.com/kubesift/kubesift/internal/netorigin"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/ecs"
	"github.com/kubesift/kubesift/sink/elasticsearch"
)

// ProcessorDeps are what a command gives NewProcessor beside the
// configuration. Only Registerer is required; the optional fields are the
// places where a command injects something of its own, so that no command
// needs a second copy of the wiring.
type ProcessorDeps struct {
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Store replaces the Elasticsearch writer built from
	// sink.elasticsearch (run's NDJSON files). NewProcessor owns it from
	// the call on, also when it fails.
	Store sink.Writer
	// SetupStore installs the Elasticsearch templates, data streams and
	// alerts index before the writer is built, as `kubesift setup es`
	// does. Ignored with Store.
	SetupStore bool
	// WrapWriter and WrapRules let a command watch what the processor
	// writes and raises (run's counts and summary) without a second
	// processor; nil leaves the writer and the engine as built.
	WrapWriter func(sink.Writer) sink.Writer
	WrapRules  func(Evaluator) Evaluator
	// WrapFindings lets a command watch the posture consumer's findings,
	// scores and the states it restores (run's display); nil leaves the
	// findings sink and state reader as built.
	WrapFindings func(FindingsSink, StateReader) (FindingsSink, StateReader)
	// Ready, when set, is told the processor's readiness (BuiltProcessor.Ready:
	// nil once it is a member of its consumer group and, with the posture
	// consumer, that one has rebuilt its partitions) every second while it
	// runs: /readyz.
	Ready func(error)
}

// BuiltProcessor is a Processor with what it was built from: the rules
// engine, kept so that its rule files are reloaded on change, and the
// document builder, whose index names a command may show.
type BuiltProcessor struct {
	*Processor
	Engine    *rules.Engine
	Documents *ecs.Builder
	rules     config.ProcessorRulesConfig
	ready     func(error)
	log       *slog.Logger
	reloads   *prometheus.CounterVec // result: ok, error

	// Posture is the posture consumer when processor.posture.enabled and
	// the store is Elasticsearch or the NDJSON store (nil otherwise).
	Posture *PostureConsumer

	// Origin resolves the records' source addresses (processor.network);
	// its service reloads the network lists and closes the databases.
	Origin *netorigin.Resolver
}

// NewProcessor builds the processor of cfg — rules engine (the built-in
// pack and processor.rules.dirs), the ECS document builder, the
// Elasticsearch client and writer unless deps.Store replaces them — and
// registers the rules metrics (kubesift_rule_*), and, when
// processor.posture.enabled, the posture consumer on the same store
// (Elasticsearch, or run's NDJSON files). It is the one place both
// `kubesift process` and `kubesift run` build a processor. ctx bounds the
// store's setup only.
func NewProcessor(ctx context.Context, cfg *config.Config, deps ProcessorDeps) (*BuiltProcessor, error) {
	b, err := newBuiltProcessor(cfg, deps)
	if err != nil {
		if deps.Store != nil {
			closeQuietly(deps.Store, deps.Logger)
		}
		return nil, err
	}
	w := deps.Store
	if w == nil {
		if w, err = newESWriter(ctx, cfg, deps, b.log); err != nil {
			_ = b.Origin.Close()
			return nil, err
		}
	}
	if cfg.Processor.Posture.Enabled {
		if b.Posture, err = newPosture(cfg, deps, b.Engine.Set(), w, b.Documents, b.log); err != nil {
			closeQuietly(w, b.log)
			_ = b.Origin.Close()
			return nil, err
		}
	}
	if deps.WrapWriter != nil {
		w = deps.WrapWriter(w)
	}
	var eval Evaluator = b.Engine
	if deps.WrapRules != nil {
		eval = deps.WrapRules(b.Engine)
	}
	b.Processor, err = New(Options{
		Kafka: cfg.Kafka, Processor: cfg.Processor, Rules: eval, Documents: b.Documents, Origin: b.Origin, Writer: w,
		Registerer: deps.Registerer, Logger: b.log,
	})
	if err != nil {
		if b.Posture != nil {
			_ = b.Posture.closeSinks()
		}
		_ = b.Origin.Close()
		closeQuietly(w, b.log)
		return nil, err
	}
	return b, nil
}

// newBuiltProcessor loads the rules, registers their metrics and builds
// the document builder: everything but the writer and the Processor.
func newBuiltProcessor(cfg *config.Config, deps ProcessorDeps) (*BuiltProcessor, error) {
	if deps.Registerer == nil {
		return nil, errors.New("pipeline: NewProcessor needs a Registerer")
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rc := cfg.Processor.Rules
	eng, err := rules.New(rules.LoadOptions{NoBuiltin: rc.NoBuiltin, Dirs: rc.Dirs})
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	if err := deps.Registerer.Register(eng.Collector()); err != nil {
		return nil, fmt.Errorf("rules metrics: %w", err)
	}
	reloads := newReloadsCounter()
	if err := deps.Registerer.Register(reloads); err != nil {
		return nil, fmt.Errorf("rules metrics: %w", err)
	}
	reloads.WithLabelValues(reloadOK)
	reloads.WithLabelValues(reloadError)
	log.Info("rules loaded", "rules", len(eng.Set().Rules()), "builtin", !rc.NoBuiltin, "dirs", rc.Dirs)
	docs, err := ecs.New(cfg.Sink.Elasticsearch)
	if err != nil {
		return nil, err
	}
	no := cfg.Processor.Network.Options()
	no.Registerer, no.Logger = deps.Registerer, log
	origin, err := netorigin.New(no)
	if err != nil {
		return nil, fmt.Errorf("processor.network: %w", err)
	}
	return &BuiltProcessor{Engine: eng, Documents: docs, Origin: origin, rules: rc, ready: deps.Ready, log: log, reloads: reloads}, nil
}

// newESWriter is the Elasticsearch writer of cfg, after the setup when
// deps asks for it.
func newESWriter(ctx context.Context, cfg *config.Config, deps ProcessorDeps, log *slog.Logger) (sink.Writer, error) {
	es, err := elasticsearch.NewClient(cfg.Sink.Elasticsearch)
	if err != nil {
		return nil, err
	}
	if deps.SetupStore {
		if err := elasticsearch.Setup(ctx, es, cfg.Sink.Elasticsearch, log); err != nil {
			return nil, fmt.Errorf("elasticsearch setup: %w", err)
		}
		log.Info("elasticsearch setup done")
	}
	return elasticsearch.NewWriter(elasticsearch.WriterOptions{Client: es, Config: cfg.Sink.Elasticsearch,
		Registerer: deps.Registerer, Logger: log})
}

// closeQuietly closes a writer nothing was written to, on a failed build;
// its error can only be about an empty writer, so it is logged.
func closeQuietly(w sink.Writer, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil && log != nil {
		log.Warn("closing an unused document writer", "err", err)
	}
}

// Group is what Add puts components in: a *lifecycle.Group, or a
// command's wrapper around one that changes when they stop.
type Group interface {
	Add(name string, run lifecycle.RunFunc)
	AddMain(name string, run lifecycle.RunFunc)
	AddService(name string, run lifecycle.RunFunc)
}

// Add registers the processor's components with g: the rule-file watcher
// when processor.rules.reload_interval and rule dirs are set (it reloads the
// posture checks too), the network origin (list reloads; it closes the
// GeoIP databases when it stops), the
// readiness reporter when deps.Ready was given, and the processor itself as
// the main component (its return ends the group), and then the posture
// consumer when built. The processor is added after the watcher, so it
// stops first and the watcher outlives it; the posture consumer after the
// processor, so it stops (and drains) before the processor closes the
// writer they share.
func (b *BuiltProcessor) Add(g Group) {
	if b.rules.ReloadInterval > 0 && len(b.rules.Dirs) > 0 {
		g.AddService("rules reload", b.watchRules)
	}
	// Before the processor, so it outlives it: the databases it closes
	// last are read until the processor's final record.
	g.AddService("network origin", b.Origin.Run)
	if b.ready != nil {
		g.AddService("processor readiness", b.reportReady)
	}
	g.AddMain("processor", b.Run)
	if b.Posture != nil {
		g.AddService("posture consumer", b.Posture.Run)
	}
}

// Results of kubesift_rules_reloads_total.
const (
	reloadOK    = "ok"
	reloadError = "error" // the previous rules stay in force
)

// newReloadsCounter is kubesift_rules_reloads_total.
func newReloadsCounter() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubesift_rules_reloads_total",
		Help: "Reloads of the rule files after a change, by result (ok; error: the previous rules stay in force)."}, []string{"result"})
}

// watchRules reloads the rule files on change until ctx ends (rules
// Engine.Watch) and hands each outcome to reloaded.
func (b *BuiltProcessor) watchRules(ctx context.Context) error {
	b.Engine.Watch(ctx, b.rules.ReloadInterval, b.log, func(err error) { b.reloaded(ctx, err) })
	return nil
}

// reloaded counts a reload and, when the new rules loaded, gives their
// object checks to the posture consumer: one compiled set serves both, so
// the record rules and the posture checks never disagree about which files
// are in force. A reload that failed leaves both on the previous set.
func (b *BuiltProcessor) reloaded(ctx context.Context, err error) {
	if err != nil {
		b.reloads.WithLabelValues(reloadError).Inc()
		return
	}
	b.reloads.WithLabelValues(reloadOK).Inc()
	if b.Posture == nil {
		return
	}
	if err := b.Posture.ReloadChecks(ctx, b.Engine.Set()); err != nil && ctx.Err() == nil {
		b.log.Error("posture checks reloaded", "err", err)
	}
}

// Ready reports nil when the processor is a member of its consumer group
// and, when the posture consumer runs, that consumer is ready too (a
// member of its own group with its assigned partitions rebuilt); until
// then the findings index does not show the clusters' current posture.
// The reasons of both are joined.
func (b *BuiltProcessor) Ready() error {
	err := b.Processor.Ready()
	if b.Posture != nil {
		err = errors.Join(err, b.Posture.Ready())
	}
	return err
}

// reportReady tells b.ready the readiness (Ready) every second until ctx
// ends.
func (b *BuiltProcessor) reportReady(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		b.ready(b.Ready())
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Discard closes the writer and the producer of a processor that will not
// run (a command failed to build what comes after it). Run closes them
// itself; Discard is for the other path only.
func (b *BuiltProcessor) Discard() error {
	if b.Posture != nil {
		_ = b.Posture.closeSinks() // its producer; the writer is the processor's
	}
	_ = b.Origin.Close()
	return b.closeSinks()
}
