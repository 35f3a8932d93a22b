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
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kubesift/kubesift/collector/publish"
	"github.com/kubesift/kubesift/collector/redact"
	"github.com/kubesift/kubesift/collector/replay"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/pipeline"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/ecs"
	"github.com/kubesift/kubesift/sink/elasticsearch"
	"github.com/kubesift/kubesift/sink/ndjson"
)

// runOptions are the flags of `kubesift run`.
type runOptions struct {
	paths      []string
	out        string
	kubeconfig string
	cluster    string
	ruleDirs   []string
	noBuiltin  bool
	follow     bool
	quiet      bool
	progress   string
	stdout     io.Writer
	stderr     io.Writer
}

func newRunCommand(g *globalFlags) *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run [FILE|DIR]...",
		Short: "Run collector, processor and notifier in one process, on an embedded Kafka when none is configured",
		Long: `run is the whole of kubesift in one process: the collector's sources publish to Kafka, the
processor consumes, evaluates the rules and writes every record and alert, and the notifier
routes alerts to the console (and to the receivers under notify:). Nothing needs installing:

  - without kafka.brokers, an embedded Kafka-protocol broker (franz-go's kfake) runs in the
    process, so the very producer, consumer-group and commit code of a deployment runs;
  - without sink.elasticsearch.addresses, each index is written as NDJSON under --out
    (<index>.ndjson: exactly the documents Elasticsearch would receive), and dead letters
    go to <out>/dead-letters.ndjson;
  - alerts are printed as they are notified; a progress line (records read, published,
    indexed, alerts) runs on stderr, and a summary table ends the run.

Sources: FILE and DIR arguments are replayed once (audit logs, Events dumps, NDJSON, .gz;
a directory's *.log, *.json, *.ndjson, *.jsonl files in name order); --kubeconfig watches
that cluster's Events (read-only: no leader Lease, no watermark); the collector: section of
the configuration adds the audit webhook receiver and the audit log tail. With only files,
run ends once every record is indexed and every alert notified; with a live source (or
--follow) it runs until SIGINT/SIGTERM. On a signal it stops reading, lets the in-flight
records finish, flushes what was acknowledged, and exits within 5 seconds.`,
		Example: `  # the bundled scenario: an attack recorded on a real kube-apiserver
  kubesift run examples/scenario
  # your own audit log, and the Events of a cluster (until Ctrl-C)
  kubesift run /var/log/kubernetes/audit/audit.log --kubeconfig ~/.kube/config
  # against a real Kafka and Elasticsearch instead of the embedded ones
  kubesift run -c run.yaml examples/scenario
  #   run.yaml: {kafka: {brokers: ["localhost:9092"]}, sink: {elasticsearch: {addresses: ["http://localhost:9200"]}}}`,
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
			// Ctrl-C: everything stops within 5 s. A shutdown that hangs
			// anyway (a peer that does not answer) is cut short, and a
			// second Ctrl-C exits at once.
			go func() {
				<-ctx.Done()
				sig := make(chan os.Signal, 1)
				signal.Notify(sig, os.Interrupt)
				select {
				case <-sig:
				case <-time.After(runShutdownBudget + 500*time.Millisecond):
					fmt.Fprintln(o.stderr, "kubesift run: shutdown took too long; exiting")
				}
				os.Exit(130)
			}()
			return runAll(ctx, cfg, o, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.out, "out", "kubesift-out", "directory of the NDJSON output (when sink.elasticsearch.addresses is empty) and of run's state")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "also watch the Events of this cluster (read-only)")
	f.StringVar(&o.cluster, "cluster", "", `cluster name stamped on records (default: cluster.name, else "local")`)
	f.StringArrayVar(&o.ruleDirs, "rules", nil, "rule directory or file layered over the built-in pack (repeatable)")
	f.BoolVar(&o.noBuiltin, "no-builtin", false, "do not load the built-in rule pack")
	f.BoolVar(&o.follow, "follow", false, "keep running after the files are replayed (until Ctrl-C)")
	f.BoolVar(&o.quiet, "quiet", false, "do not print each alert; only the summary")
	f.StringVar(&o.progress, "progress", "auto", "progress line on stderr: auto (when it is a terminal), always, never")
	return cmd
}

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
}

// runAll wires and runs the whole pipeline; see newRunCommand.
func runAll(ctx context.Context, cfg *config.Config, o *runOptions, log *slog.Logger) (err error) {
	started := time.Now()
	if o.stdout == nil {
		o.stdout = os.Stdout
	}
	if o.stderr == nil {
		o.stderr = os.Stderr
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
	}
	live := cc.AuditWebhook.Enabled || cc.AuditTail.Enabled || cc.Events.Enabled
	if len(o.paths) == 0 && !live {
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
	if err := os.MkdirAll(o.out, 0o750); err != nil {
		return fmt.Errorf("run: --out: %w", err)
	}
	stateDir := filepath.Join(o.out, ".state")
	cfg.Publish.Spool.Dir = filepath.Join(stateDir, "spool")
	tuneForOneProcess(cfg)

	srv := obs.New(log)
	reg := srv.Registry

	// Kafka: the configured brokers, or an embedded one. A live source
	// keeps the embedded broker's log on disk, so what the collector has
	// acknowledged upstream (a watched Event) survives a restart of run.
	var broker *kfake.Cluster
	persistent := live || o.follow
	if len(cfg.Kafka.Brokers) == 0 {
		t := cfg.Kafka.Topics
		opts := []kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(1, t.Audit, t.Events, t.Objects, t.Alerts, t.DLQ),
			// The collector's size policy caps records, not Kafka: take
			// what a real cluster configured for kubesift takes.
			kfake.BrokerConfigs(map[string]string{"message.max.bytes": fmt.Sprint(64 << 20)})}
		if persistent {
			opts = append(opts, kfake.DataDir(filepath.Join(stateDir, "kafka")))
		}
		if broker, err = kfake.NewCluster(opts...); err != nil {
			return fmt.Errorf("run: embedded Kafka: %w", err)
		}
		defer broker.Close()
		cfg.Kafka.Brokers = broker.ListenAddrs()
		log.Info("embedded Kafka broker started", "addr", cfg.Kafka.Brokers[0])
	}

	// Rules, documents and the store.
	eng, err := rules.New(rules.LoadOptions{NoBuiltin: o.noBuiltin || cfg.Processor.Rules.NoBuiltin,
		Dirs: append(cfg.Processor.Rules.Dirs, o.ruleDirs...)})
	if err != nil {
		return fmt.Errorf("run: rules: %w", err)
	}
	tally := newAlertTally(eng)
	docs, err := ecs.New(cfg.Sink.Elasticsearch)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	var (
		store  sink.Writer
		files  *ndjson.Writer
		esAddr string
	)
	if len(cfg.Sink.Elasticsearch.Addresses) > 0 {
		es, err := elasticsearch.NewClient(cfg.Sink.Elasticsearch)
		if err != nil {
			return fmt.Errorf("run: %w", err)
		}
		if err := elasticsearch.Setup(ctx, es, cfg.Sink.Elasticsearch, log); err != nil {
			return fmt.Errorf("run: elasticsearch setup: %w", err)
		}
		if store, err = elasticsearch.NewWriter(elasticsearch.WriterOptions{Client: es, Config: cfg.Sink.Elasticsearch, Registerer: reg, Logger: log}); err != nil {
			return fmt.Errorf("run: %w", err)
		}
		esAddr = cfg.Sink.Elasticsearch.Addresses[0]
	} else {
		if files, err = ndjson.New(ndjson.Options{Dir: o.out, Registerer: reg, Logger: log}); err != nil {
			return fmt.Errorf("run: %w", err)
		}
		store = files
	}
	counted := newCountingWriter(store)
	proc, err := pipeline.New(pipeline.Options{Kafka: cfg.Kafka, Processor: cfg.Processor, Rules: tally, Documents: docs,
		Writer: counted, Registerer: reg, Logger: log})
	if err != nil {
		_ = store.Close(context.Background())
		return fmt.Errorf("run: %w", err)
	}

	// The notifier: the console, and the configured receivers beside it.
	term := newTerminal(o.stdout, o.stderr, o.progress)
	nt, err := newRunNotifier(cfg, term, o.quiet, reg, log)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}

	// The collector: the replayed files and the configured live sources,
	// through one publisher with its spool.
	san, err := redact.New(cc.Redaction, cc.Size, cc.DeadLetterMaxBytes, reg, log)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	pub, err := publish.New(publish.Options{Publish: cfg.Publish, Kafka: cfg.Kafka, Registerer: reg, Logger: log})
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	cluster := record.Cluster{Name: cfg.Cluster.Name, UID: cc.ClusterUID}
	if live {
		cluster.UID = clusterUID(ctx, cc, log)
	}
	var rp *replay.Replayer
	if len(o.paths) > 0 {
		if rp, err = replay.New(replay.Options{Paths: o.paths, Publisher: pub.For(replay.Source), Sanitizer: san,
			Cluster: cluster, DeadLetterMaxBytes: cc.DeadLetterMaxBytes, Registerer: reg, Logger: log}); err != nil {
			_ = pub.Close(context.Background())
			return fmt.Errorf("run: %w", err)
		}
	}

	// Two lifetimes: sources stop first (on a signal, or when the files
	// are read and everything is through), then the processor and the
	// notifier, so that what the sources published is processed.
	srcCtx, stopSources := context.WithCancel(ctx)
	defer stopSources()
	pipeCtx, stopPipeline := context.WithCancel(context.Background())
	defer stopPipeline()
	parts, err := buildSources(srcCtx, cfg, cluster, san, pub, srv, log)
	if err != nil {
		_ = pub.Close(context.Background())
		return fmt.Errorf("run: %w", err)
	}

	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	fail := func(name string, err error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = fmt.Errorf("%s: %w", name, err)
		}
		errMu.Unlock()
		log.Error("run: part failed; stopping", "part", name, "err", err)
		stopSources()
		stopPipeline()
	}
	goPart := func(name string, c context.Context, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(c); err != nil && c.Err() == nil {
				fail(name, err)
			}
		}()
	}
	goPart("processor", pipeCtx, proc.Run)
	goPart("notifier", pipeCtx, nt.run)
	if cfg.Server.Listen != "" && cfg.Server.Listen != config.Default().Server.Listen {
		// run serves /metrics only when asked: the default port may be
		// taken by a collector on the same machine.
		goPart("metrics server", pipeCtx, func(c context.Context) error { return srv.Run(c, cfg.Server) })
	}
	var srcWG sync.WaitGroup
	for _, p := range parts {
		srcWG.Add(1)
		p := p
		go func() {
			defer srcWG.Done()
			if err := p.run(srcCtx); err != nil && srcCtx.Err() == nil {
				fail(p.name, err)
			}
		}()
	}
	replayDone := make(chan error, 1)
	if rp != nil {
		srcWG.Add(1)
		go func() {
			defer srcWG.Done()
			replayDone <- rp.Run(srcCtx)
		}()
	} else {
		replayDone <- nil
	}

	prog := &progress{reg: reg, rp: rp, tally: tally, counted: counted, docs: docs}
	stopProgress := term.runProgress(prog.line)

	// Wait for the end: a signal, a failed part, or — with only files —
	// every record through the processor and every alert through the
	// notifier (their committed offsets at the end of every topic).
	interrupted := false
	drained := false
	select {
	case <-ctx.Done():
		interrupted = true
	case <-pipeCtx.Done():
	case err := <-replayDone:
		if err != nil && srcCtx.Err() == nil {
			fail("replay", err)
			break
		}
		if live || o.follow {
			select {
			case <-ctx.Done():
				interrupted = true
			case <-pipeCtx.Done():
			}
			break
		}
		switch werr := waitDrained(ctx, cfg, pub, log); {
		case werr == nil:
			drained = true
		case ctx.Err() != nil:
			interrupted = true
		default:
			fail("drain", werr)
		}
	}

	// Shut down in order, within runShutdownBudget: the sources, then the
	// publisher's flush, the dead letters, the processor and notifier. On
	// a signal there is no waiting for the pipeline to take what the
	// publisher flushes: it drains what it has in flight meanwhile.
	stopSources()
	srcWG.Wait()
	flushBudget, dlBudget := runShutdownBudget/2, time.Second
	if interrupted {
		flushBudget, dlBudget = time.Second, 500*time.Millisecond
		stopPipeline()
	}
	cctx, cancel := context.WithTimeout(context.Background(), flushBudget)
	if err := pub.Close(cctx); err != nil {
		log.Warn("closing the publisher", "err", err)
	}
	cancel()
	var dlFile string
	var dlCount int
	if broker != nil && files != nil {
		// The embedded broker's dead-letter topic ends with the process:
		// keep its messages beside the documents.
		dctx, dcancel := context.WithTimeout(context.Background(), dlBudget)
		dlFile = filepath.Join(o.out, "dead-letters.ndjson")
		mark := ""
		if persistent {
			mark = filepath.Join(stateDir, "dead-letters.next")
		}
		dlCount, err = saveDeadLetters(dctx, cfg.Kafka.Brokers[0], cfg.Kafka.Topics.DLQ, dlFile, mark)
		dcancel()
		if err != nil {
			log.Warn("saving the dead letters", "err", err)
		}
	}
	stopPipeline()
	wg.Wait()
	stopProgress()

	s := summary{
		elapsed: time.Since(started), interrupted: interrupted, drained: drained, prog: prog.snapshot(),
		tally: tally.snapshot(), files: nil, esAddr: esAddr, dlFile: dlFile, dlCount: dlCount, sources: o.paths,
		cfg: cfg,
	}
	if files != nil {
		s.files = files.Files()
	}
	s.print(o.stdout)
	if firstErr != nil {
		return fmt.Errorf("run: %w", firstErr)
	}
	if interrupted {
		return &exitError{code: 130, err: errors.New("interrupted; what was acknowledged is written")}
	}
	return nil
}
