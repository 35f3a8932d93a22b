package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/collector/publish"
	"github.com/kubesift/kubesift/collector/redact"
	"github.com/kubesift/kubesift/collector/replay"
	"github.com/kubesift/kubesift/collector/sources"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/lifecycle"
	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/pipeline"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/ndjson"
	"github.com/kubesift/kubesift/sink/notify"
)

// runOptions are the flags of `kubesift run`.
type runOptions struct {
	paths      []string
	out        string
	kubeconfig string
	cluster    string
	ruleDirs   []string
	noBuiltin  bool
	noPosture  bool
	follow     bool
	quiet      bool
	progress   string
	notifyWait time.Duration
	stdout     io.Writer
	stderr     io.Writer
}

func newRunCommand(g *globalFlags) *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:         "run [FILE|DIR]...",
		Short:       "Run collector, processor and notifier in one process, on an embedded Kafka when none is configured",
		Long:        runLong,
		Example:     runExample,
		Annotations: map[string]string{annotationListens: "server.listen,collector.audit_webhook.listen"},
		RunE: func(cmd *cobra.Command, args []string) error {
			// The console is for alerts: unless asked, only warnings log.
			if g.logLevel == "" && g.configFile == "" {
				g.logLevel = "warn"
			}
			cfg, log, err := g.load(cmd)
			if err != nil {
				return err
			}
			o.paths = args
			o.stdout, o.stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
			ctx := cmd.Context()
			go exitWhenShutdownHangs(ctx, o.stderr)
			return runAll(ctx, cfg, o, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.out, "out", "kubesift-out", "directory of the NDJSON output (when sink.elasticsearch.addresses is empty) and of run's state")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "also watch the Events of this cluster (read-only)")
	f.StringVar(&o.cluster, "cluster", "", `cluster name stamped on records (default: cluster.name, else "local")`)
	f.StringArrayVar(&o.ruleDirs, "rules", nil, "rule directory or file layered over the built-in pack (repeatable)")
	f.BoolVar(&o.noBuiltin, "no-builtin", false, "do not load the built-in rule pack")
	f.BoolVar(&o.noPosture, "no-posture", false, "do not run the posture benchmark (no objects source, no findings)")
	f.BoolVar(&o.follow, "follow", false, "keep running after the files are replayed (until Ctrl-C)")
	f.BoolVar(&o.quiet, "quiet", false, "do not print each alert and posture finding; only the summary")
	f.StringVar(&o.progress, "progress", "auto", "progress line on stderr: auto (when it is a terminal), always, never")
	f.DurationVar(&o.notifyWait, "notify-wait", defaultNotifyWait, "with only files: how long to wait for the receivers' deliveries once every alert is raised (0: the default)")
	return cmd
}

// exitWhenShutdownHangs bounds Ctrl-C: everything stops within 5 s. A
// shutdown that hangs anyway (a peer that does not answer) is cut short, and a
// second Ctrl-C exits at once.
func exitWhenShutdownHangs(ctx context.Context, stderr io.Writer) {
	<-ctx.Done()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	select {
	case <-sig:
	case <-time.After(runShutdownBudget + 500*time.Millisecond):
		fmt.Fprintln(stderr, "kubesift run: shutdown took too long; exiting")
	}
	os.Exit(130)
}

const runLong = `run is the whole of kubesift in one process: the collector's sources publish to Kafka, the
processor consumes, evaluates the rules and writes every record and alert, and the notifier
routes alerts to the console (and to the receivers under notify:). Nothing needs installing:

  - without kafka.brokers, an embedded Kafka-protocol broker (franz-go's kfake) runs in the
    process, so the very producer, consumer-group and commit code of a deployment runs;
  - without sink.elasticsearch.addresses, each index is written as NDJSON under --out
    (<index>.ndjson: exactly the documents Elasticsearch would receive), and dead letters
    go to <out>/dead-letters.ndjson;
  - alerts are printed as they are notified; a progress line (records read, published,
    indexed, alerts) runs on stderr, and a summary table ends the run;
  - the posture benchmark runs beside the rules (unless --no-posture): the objects
    of the cluster are judged by the built-in checks, each finding that opens or
    resolves is printed, and the summary shows the score, the open findings by
    severity and CIS section, and the most severe ones. The findings are stored
    with the documents (kubesift-findings.ndjson: the current state of each
    finding, the last line of its event.id; the transitions and scores beside it).

Sources: FILE and DIR arguments are replayed once (audit logs, Events dumps, NDJSON, .gz;
a directory's *.log, *.json, *.ndjson, *.jsonl files in name order), and a directory's
objects/*.ndjson object snapshot (objects source records, as the bundled scenario has) is
published to the objects topic first; --kubeconfig watches that cluster's Events
(read-only: no leader Lease, no watermark) and, for posture, its objects (the objects
source, with its leader Lease as in collect); the collector: section of
the configuration adds the audit webhook receiver and the audit log tail. With only files,
run ends once every record is indexed and every alert notified: when the input is processed
it sends the receivers' waiting groups at once (group_wait and group_interval have nothing
left to wait for) and waits up to --notify-wait for their deliveries; notifications still
undelivered then are listed in the summary, with each receiver's last error, and run exits 1.
With a live source (or --follow) it runs until SIGINT/SIGTERM. On a signal it stops reading, lets the in-flight
records finish, flushes what was acknowledged, and exits within 5 seconds.`

const runExample = `  # the bundled scenario: an attack recorded on a real kube-apiserver
  kubesift run examples/scenario
  # your own audit log, and the Events of a cluster (until Ctrl-C)
  kubesift run /var/log/kubernetes/audit/audit.log --kubeconfig ~/.kube/config
  # against a real Kafka and Elasticsearch instead of the embedded ones
  kubesift run -c run.yaml examples/scenario
  #   run.yaml: {kafka: {brokers: ["localhost:9092"]}, sink: {elasticsearch: {addresses: ["http://localhost:9200"]}}}`

// defaultNotifyWait is --notify-wait's default: long enough for a few
// retries of a receiver that hiccups, short enough that a receiver that is
// down does not hold a replay for retry.give_up_after (an hour).
const defaultNotifyWait = 30 * time.Second

// runShutdownBudget bounds the orderly shutdown after a signal.
const runShutdownBudget = 4 * time.Second

// tuneForOneProcess sets the timings of a single process owning every
// partition: there is no peer to wait for, so commits, fetch waits and
// drains can be short, which is what lets a replay end (and Ctrl-C exit)
// within moments. The values pass the config's own validation rules.
func tuneForOneProcess(cfg *config.Config) {
	p := &cfg.Processor
	p.SessionTimeout, p.HeartbeatInterval, p.RebalanceTimeout = 6*time.Second, 500*time.Millisecond, 5*time.Second
	p.DrainTimeout, p.CommitInterval, p.FetchMaxWait = 1500*time.Millisecond, 100*time.Millisecond, 100*time.Millisecond
	p.Produce.RetryBackoff, p.Produce.RetryMaxBackoff = 50*time.Millisecond, time.Second
	cfg.Publish.BatchTimeout = 5 * time.Millisecond
	// The sources' own shutdown graces must fit in the 5 s Ctrl-C promises
	// (the defaults, 10-20 s, suit a pod's terminationGracePeriod).
	c := &cfg.Collector
	c.Events.ShutdownGrace = min(c.Events.ShutdownGrace, time.Second)
	c.AuditWebhook.ShutdownGrace = min(c.AuditWebhook.ShutdownGrace, time.Second)
	c.Objects.ShutdownGrace = min(c.Objects.ShutdownGrace, time.Second)
	// Someone watches the score: a change shows in it within 2 s rather
	// than a scrape interval.
	p.Posture.ScoreInterval = min(p.Posture.ScoreInterval, 2*time.Second)
}

// allInOne is one `kubesift run`: what it built, and what its shutdown
// leaves for the summary.
type allInOne struct {
	cfg        *config.Config
	o          *runOptions
	log        *slog.Logger
	srv        *obs.Server
	live       bool // a live source runs: run ends on a signal only
	persistent bool // the embedded broker keeps its log under --out
	stateDir   string
	broker     *kfake.Cluster // nil with kafka.brokers

	term    *terminal
	proc    *pipeline.BuiltProcessor
	tally   *alertTally
	posture *postureTally // nil without the posture consumer
	counted *countingWriter
	files   *ndjson.Writer // nil with Elasticsearch
	esAddr  string
	nt      *pipeline.Notifier
	pub     *publish.Publisher
	rp      *replay.Replayer // nil without files
	sources []sources.Source
	objects int // object records published from the replayed object snapshots

	// Written by the group's components, read after it ended.
	drained bool
	dlFile  string
	dlCount int
	// undelivered are the receivers' integrations with notifications
	// still on their way when --notify-wait ran out (none: all delivered).
	undelivered []notify.DeliveryStatus
}

// runAll wires and runs the whole pipeline; see newRunCommand.
func runAll(ctx context.Context, cfg *config.Config, o *runOptions, log *slog.Logger) error {
	started := time.Now()
	a := &allInOne{cfg: cfg, o: o, log: log, srv: obs.New(log)}
	if err := a.prepare(); err != nil {
		return err
	}
	if err := a.startEmbeddedKafka(); err != nil {
		return fmt.Errorf("run: embedded Kafka: %w", err)
	}
	if a.broker != nil {
		defer a.broker.Close()
	}
	if err := a.buildPipeline(ctx); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	if err := a.buildCollector(ctx); err != nil {
		return fmt.Errorf("run: %w", errors.Join(err, a.proc.Discard(), a.nt.Close()))
	}
	if err := a.publishSnapshots(ctx); err != nil {
		return fmt.Errorf("run: %w", errors.Join(err, a.proc.Discard(), a.nt.Close(), a.pub.Close(context.Background())))
	}
	g := a.group(ctx)
	prog := &progress{reg: a.srv.Registry, rp: a.rp, tally: a.tally, counted: a.counted, docs: a.proc.Documents,
		objects: int64(a.objects), posture: a.posture, nt: a.nt}
	stopProgress := a.term.runProgress(prog.line)
	err := g.Run(ctx)
	stopProgress()

	interrupted := ctx.Err() != nil && !a.drained
	s := summary{
		elapsed: time.Since(started), interrupted: interrupted, drained: a.drained, prog: prog.snapshot(),
		tally: a.tally.snapshot(), esAddr: a.esAddr, dlFile: a.dlFile, dlCount: a.dlCount, sources: o.paths, cfg: cfg,
		posture: a.posture.snapshot(), objects: a.objects, undelivered: a.undelivered, notifyWait: o.notifyWait,
	}
	if a.files != nil {
		s.files = a.files.Files()
	}
	s.posture.alerts = int(gatherSums(a.srv.Registry)["kubesift_posture_alerts_total"])
	s.print(o.stdout)
	a.writeRunReport()
	switch {
	case interrupted:
		return &exitError{code: 130, err: errors.Join(errors.New("interrupted; what was acknowledged is written"), err)}
	case err != nil:
		return fmt.Errorf("run: %w", err)
	case len(a.undelivered) > 0:
		return fmt.Errorf("run: %w", undeliveredError(a.undelivered, o.notifyWait))
	}
	return nil
}

// prepare checks the options and applies them to the configuration: the
// cluster name, --kubeconfig's read-only Events source, the rule flags,
// the state directory under --out and the timings of one process.
func (a *allInOne) prepare() error {
	cfg, o := a.cfg, a.o
	if o.stdout == nil {
		o.stdout = os.Stdout
	}
	if o.stderr == nil {
		o.stderr = os.Stderr
	}
	if o.notifyWait <= 0 {
		o.notifyWait = defaultNotifyWait
	}
	cc := &cfg.Collector
	if o.kubeconfig != "" {
		// Watching a cluster from a laptop must not write to it: no
		// leader Lease and no watermark annotation (the first start's
		// max_age cut applies instead).
		cc.Kubeconfig = o.kubeconfig
		cc.Events.Enabled = true
		cc.Events.LeaderElection.Enabled = false
		cc.Events.Watermark.Enabled = false
		// The objects source holds its leader Lease as under collect
		// (outside a pod in collector.DefaultNamespace): two runs (or a
		// collector) on one cluster publish its objects once.
		cc.Objects.Enabled = cc.Objects.Enabled || !o.noPosture
	}
	cfg.Processor.Posture.Enabled = !o.noPosture
	if o.noPosture {
		cc.Objects.Enabled = false
	}
	a.live = cc.AuditWebhook.Enabled || cc.AuditTail.Enabled || cc.Events.Enabled || cc.Objects.Enabled
	a.persistent = a.live || o.follow
	if len(o.paths) == 0 && !a.live {
		return errors.New("run: nothing to read: give audit log or Events files (try examples/scenario), --kubeconfig, or enable a source in the collector section")
	}
	switch o.progress {
	case "auto", "always", "never":
	default:
		return fmt.Errorf("run: --progress: %q is not auto, always or never", o.progress)
	}
	if o.cluster != "" {
		cfg.Cluster.Name = o.cluster
	}
	if cfg.Cluster.Name == "" {
		cfg.Cluster.Name = "local"
	}
	cfg.Processor.Rules.Dirs = append(cfg.Processor.Rules.Dirs, o.ruleDirs...)
	cfg.Processor.Rules.NoBuiltin = cfg.Processor.Rules.NoBuiltin || o.noBuiltin
	if err := os.MkdirAll(o.out, 0o750); err != nil {
		return fmt.Errorf("run: --out: %w", err)
	}
	a.stateDir = filepath.Join(o.out, ".state")
	cfg.Publish.Spool.Dir = filepath.Join(a.stateDir, "spool")
	tuneForOneProcess(cfg)
	return nil
}

// startEmbeddedKafka starts the in-process broker when no kafka.brokers
// are configured. With a live source (or --follow) it keeps its log on
// disk, so what the collector has acknowledged upstream (a watched Event)
// survives a restart of run.
func (a *allInOne) startEmbeddedKafka() error {
	if len(a.cfg.Kafka.Brokers) > 0 {
		return nil
	}
	t := a.cfg.Kafka.Topics
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(1, t.Audit, t.Events, t.Objects, t.Alerts, t.DLQ),
		// The collector's size policy caps records, not Kafka: take
		// what a real cluster configured for kubesift takes.
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": fmt.Sprint(64 << 20)})}
	if a.persistent {
		opts = append(opts, kfake.DataDir(filepath.Join(a.stateDir, "kafka")))
	}
	broker, err := kfake.NewCluster(opts...)
	if err != nil {
		return err
	}
	a.broker = broker
	a.cfg.Kafka.Brokers = broker.ListenAddrs()
	a.log.Info("embedded Kafka broker started", "addr", a.cfg.Kafka.Brokers[0])
	return nil
}

// buildPipeline builds the processor — on Elasticsearch when configured,
// else on NDJSON files under --out, counted for the summary — and the
// notifier: the console, and the configured receivers beside it.
func (a *allInOne) buildPipeline(ctx context.Context) error {
	reg := a.srv.Registry
	a.term = newTerminal(a.o.stdout, a.o.stderr, a.o.progress)
	deps := pipeline.ProcessorDeps{
		Registerer: reg, Logger: a.log,
		WrapWriter: func(w sink.Writer) sink.Writer { a.counted = newCountingWriter(w); return a.counted },
		WrapRules:  func(e pipeline.Evaluator) pipeline.Evaluator { a.tally = newAlertTally(e); return a.tally },
		WrapFindings: func(fs pipeline.FindingsSink, sr pipeline.StateReader) (pipeline.FindingsSink, pipeline.StateReader) {
			var out io.Writer
			if !a.o.quiet {
				out = a.term.alerts()
			}
			a.posture = newPostureTally(fs, out)
			return a.posture, a.posture.restored(sr)
		},
	}
	if es := a.cfg.Sink.Elasticsearch; len(es.Addresses) > 0 {
		deps.SetupStore, a.esAddr = true, es.Addresses[0]
	} else {
		files, err := ndjson.New(ndjson.Options{Dir: a.o.out, Registerer: reg, Logger: a.log})
		if err != nil {
			return err
		}
		deps.Store, a.files = files, files
	}
	var err error
	if a.proc, err = pipeline.NewProcessor(ctx, a.cfg, deps); err != nil {
		return err
	}
	var console notify.Notifier = notify.NewConsole(a.term.alerts(), nil)
	if a.o.quiet {
		console = notify.NotifierFunc(func(context.Context, *notify.Notification) (bool, error) { return false, nil })
	}
	a.nt, err = pipeline.NewNotifier(ctx, a.cfg, pipeline.NotifierDeps{Registerer: reg, Logger: a.log,
		Console: console, CommitInterval: 100 * time.Millisecond})
	if err != nil {
		return errors.Join(err, a.proc.Discard())
	}
	return nil
}

// buildCollector builds the collector: the replayed files and the
// configured live sources, through one publisher with its spool.
func (a *allInOne) buildCollector(ctx context.Context) error {
	cfg, cc, reg := a.cfg, &a.cfg.Collector, a.srv.Registry
	san, err := redact.New(cc.Redaction, cc.Size, cc.DeadLetterMaxBytes, reg, a.log)
	if err != nil {
		return err
	}
	if a.pub, err = publish.New(publish.Options{Publish: cfg.Publish, Kafka: cfg.Kafka, Registerer: reg, Logger: a.log}); err != nil {
		return err
	}
	cluster := record.Cluster{Name: cfg.Cluster.Name, UID: cc.ClusterUID}
	if a.live {
		cluster.UID = collector.ClusterUID(ctx, cc, a.log)
	}
	if len(a.o.paths) > 0 {
		if a.rp, err = replay.New(replay.Options{Paths: a.o.paths, Publisher: a.pub.For(replay.Source), Sanitizer: san,
			Cluster: cluster, DeadLetterMaxBytes: cc.DeadLetterMaxBytes, Registerer: reg, Logger: a.log}); err != nil {
			return errors.Join(err, a.pub.Close(context.Background()))
		}
	}
	if a.sources, err = sources.New(sources.Options{Config: *cc, Cluster: cluster, Sanitizer: san, Publisher: a.pub,
		Registry: reg, SetReady: a.srv.SetReady, Logger: a.log}); err != nil {
		return errors.Join(err, a.pub.Close(context.Background()))
	}
	return nil
}

// publishSnapshots publishes the object snapshots of the replayed
// directories before anything consumes: the posture consumer then finds
// the whole snapshot when it joins and rebuilds from it at once (one set
// of transitions, one score), as it would from a compacted objects topic.
func (a *allInOne) publishSnapshots(ctx context.Context) error {
	if a.proc.Posture == nil || a.rp == nil {
		return nil
	}
	files, err := a.rp.SnapshotFiles()
	if err != nil || len(files) == 0 {
		return err
	}
	a.objects, err = a.rp.PublishSnapshots(ctx, files)
	return err
}

// group puts the parts under one lifecycle. They stop in reverse order:
// the sources first (on a signal, a failed part, or — with only files —
// once every record is through the processor and every alert through the
// notifier), then the publisher's flush, the processor, the notifier, and
// last the dead letters' copy, which so sees every dead letter the others
// wrote. ctx is the command's: a signal stops the processor and the
// notifier at once and shortens the shutdown's budgets.
func (a *allInOne) group(ctx context.Context) *lifecycle.Group {
	g := lifecycle.New(a.log)
	if l := a.cfg.Server.Listen; l != "" && l != config.Default().Server.Listen {
		// run serves /metrics only when asked: the default port may be
		// taken by a collector on the same machine.
		addMetricsServer(g, a.srv, a.cfg.Server)
	}
	if a.broker != nil && a.files != nil {
		g.Add("dead letters", a.keepDeadLetters(ctx))
	}
	// On a signal the processor and the notifier stop at once, beside the
	// sources: nobody waits for them to take what the publisher flushes.
	a.nt.Add(stopOnSignal{g, ctx})
	a.proc.Add(stopOnSignal{g, ctx})
	g.Add("publisher", a.closePublisher(ctx))
	for _, p := range a.sources {
		g.Add(p.Name, p.Run)
	}
	if a.rp == nil {
		return g
	}
	replayed := make(chan struct{})
	g.Add("replay", func(c context.Context) error {
		if err := a.rp.Run(c); err != nil {
			return err
		}
		close(replayed)
		return nil
	})
	if !a.live && !a.o.follow {
		// With only files, run ends when the pipeline has taken them:
		// the processor's consumer groups have committed the end of every
		// partition (the broker's answer, not a guess), and then the
		// notifier's has, or --notify-wait ran out.
		g.AddMain("drain", func(c context.Context) error {
			select {
			case <-replayed:
			case <-c.Done():
				return nil
			}
			held := func() bool { return a.pub.Stats().Spooling }
			if err := pipeline.WaitDrained(c, a.cfg.Kafka, pipeline.ConsumerGroups(a.cfg, true, false), held, a.log); err != nil {
				return err
			}
			err := a.drainNotifier(c)
			a.drained = err == nil
			return err
		})
	}
	return g
}

// drainNotifier waits, once every alert is on the alerts topic, until the
// notifier's group has committed all of them — each delivered, failed for
// good or muted — or --notify-wait ran out; either way it then keeps, for
// the summary and the exit status, the receivers' integrations that did
// not deliver everything. It flushes the dispatcher at every poll: no more
// alerts will come for the groups to wait for, and alerts the consumer
// reads after one flush join new groups.
func (a *allInOne) drainNotifier(ctx context.Context) error {
	wctx, cancel := context.WithTimeout(ctx, a.o.notifyWait)
	defer cancel()
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			a.nt.Flush()
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	err := pipeline.WaitDrained(wctx, a.cfg.Kafka, pipeline.ConsumerGroups(a.cfg, false, true), nil, a.log)
	cancel()
	<-flushed
	if err != nil && ctx.Err() != nil {
		return err // stopped: a signal, or a failed component
	}
	_, ints := a.nt.Status()
	for _, s := range ints {
		if s.Integration != pipeline.ConsoleReceiver && (s.Pending() > 0 || s.Failed > 0) {
			a.undelivered = append(a.undelivered, s)
		}
	}
	if err != nil && len(a.undelivered) == 0 {
		// No integration holds anything: the alerts left wait in groups
		// (a receiver whose queues stayed full) or were not read yet.
		a.undelivered = append(a.undelivered, notify.DeliveryStatus{Integration: "notifier",
			LastError: "alerts not yet taken from the alerts topic or still waiting in their groups"})
	}
	return nil
}

// undeliveredError is run's error when --notify-wait ran out: which
// integrations did not deliver, and why.
func undeliveredError(ss []notify.DeliveryStatus, wait time.Duration) error {
	var parts []string
	for _, s := range ss {
		p := fmt.Sprintf("%s (%d pending, %d failed", s.Integration, s.Pending(), s.Failed)
		if s.LastError != "" {
			p += ": " + s.LastError
		}
		parts = append(parts, p+")")
	}
	return fmt.Errorf("notifications not delivered (waited up to --notify-wait %s): %s", wait, strings.Join(parts, "; "))
}

// stopOnSignal adds components to g that stop when sig ends as well as in
// their turn of the group's reverse-order shutdown.
type stopOnSignal struct {
	g   *lifecycle.Group
	sig context.Context
}

func (s stopOnSignal) Add(name string, run lifecycle.RunFunc)     { s.g.Add(name, s.wrap(run)) }
func (s stopOnSignal) AddMain(name string, run lifecycle.RunFunc) { s.g.AddMain(name, s.wrap(run)) }
func (s stopOnSignal) AddService(name string, run lifecycle.RunFunc) {
	s.g.AddService(name, s.wrap(run))
}

func (s stopOnSignal) wrap(run lifecycle.RunFunc) lifecycle.RunFunc {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(s.sig, cancel)()
		err := run(ctx)
		if errors.Is(err, context.Canceled) && s.sig.Err() != nil {
			return nil // stopped by the signal, as asked
		}
		return err
	}
}

// closePublisher waits for the group's stop, then flushes the publisher
// within runShutdownBudget (less on a signal: the user is waiting).
func (a *allInOne) closePublisher(sig context.Context) lifecycle.RunFunc {
	return func(ctx context.Context) error {
		<-ctx.Done()
		budget := runShutdownBudget / 2
		if sig.Err() != nil {
			budget = time.Second
		}
		cctx, cancel := context.WithTimeout(context.Background(), budget)
		defer cancel()
		if err := a.pub.Close(cctx); err != nil {
			// Not a failure of the run: what the publisher could not
			// flush stays in its spool for the next start.
			a.log.Warn("closing the publisher", "err", err)
		}
		return nil
	}
}

// keepDeadLetters waits for the group's stop, then copies the embedded
// broker's dead-letter topic, which ends with the process, to
// <out>/dead-letters.ndjson beside the documents.
func (a *allInOne) keepDeadLetters(sig context.Context) lifecycle.RunFunc {
	return func(ctx context.Context) error {
		<-ctx.Done()
		budget := time.Second
		if sig.Err() != nil {
			budget = 500 * time.Millisecond
		}
		dctx, cancel := context.WithTimeout(context.Background(), budget)
		defer cancel()
		a.dlFile = filepath.Join(a.o.out, "dead-letters.ndjson")
		mark := ""
		if a.persistent {
			mark = filepath.Join(a.stateDir, "dead-letters.next")
		}
		var err error
		a.dlCount, err = pipeline.SaveDeadLetters(dctx, a.cfg.Kafka.Brokers[0], a.cfg.Kafka.Topics.DLQ, a.dlFile, mark)
		if err != nil {
			// The dead letters stay in the topic; the run's results are
			// written. Said, not failed.
			a.log.Warn("saving the dead letters", "err", err)
		}
		return nil
	}
}
