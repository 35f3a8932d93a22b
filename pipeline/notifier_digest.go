package pipeline

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	esink "github.com/kubesift/kubesift/sink/elasticsearch"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/internal/backoff"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/notify"
	"github.com/kubesift/kubesift/sink/report"
)

// Digester sends the daily digest (notify.digest): at the scheduled time,
// for each cluster, one message with the cluster's figures over the period
// before it (report.ES.Digest) to every integration of the digest's
// receivers that takes one (notify.TakesDigest), and with notify.digest.dir
// to its report file (notify.DigestFile), with the cluster's dead letters
// of the period counted from Kafka (DeadLetterCounter). Any number of notifier
// replicas may run it: notify.DigestClaims lets exactly one of them send
// each (cluster, day).
//
// On start it sends the digests of the latest scheduled time that are not
// sent yet, so a notifier that was down at 08:00 sends that day's when it
// comes back; older days are not sent. While a claim of another replica
// stands unfinished, it looks again every recheck, to take the claim over
// once it is stale (that replica died).
type Digester struct {
	hour, minute int
	loc          *time.Location
	period       time.Duration
	clusters     []string
	src          digestSource
	drops        deadLetterSource
	claims       *notify.DigestClaims
	targets      []digestTarget
	retry        backoff.Policy
	giveUp       time.Duration
	recheck      time.Duration
	log          *slog.Logger
	digests      *prometheus.CounterVec // by outcome
	deliveries   *prometheus.CounterVec // by integration, outcome
	now          func() time.Time
}

// digestSource is what a Digester reads: report.ES.
type digestSource interface {
	Clusters(ctx context.Context, w report.Window) ([]string, int, error)
	Digest(ctx context.Context, cluster string, w report.Window) (*report.Digest, error)
}

// deadLetterSource counts a window's dead letters: DeadLetterCounter.
type deadLetterSource interface {
	Count(ctx context.Context, w report.Window) (*report.DeadLetterTally, error)
}

// digestTarget is one integration that takes the digest.
type digestTarget struct {
	receiver, name string
	n              notify.DigestNotifier
}

// Outcomes of kubesift_notify_digests_total beside the claim outcomes
// (notify.ClaimHeld, notify.ClaimDone): sent by this replica to every
// integration, failed at some integration (after its retries), an error
// before sending (reading the store or the claim), or a cluster left out
// by report.MaxDigestClusters.
const (
	digestSent    = "sent"
	digestFailed  = "failed"
	digestError   = "error"
	digestLeftOut = "left_out"
)

// digestFileTarget names the report file (notify.digest.dir) among the
// integrations, in the logs, metrics and the claim's failed list.
const digestFileTarget = "file"

// newDigester builds the digest of cfg on the notifier's Elasticsearch
// client and receivers.
func newDigester(ctx context.Context, cfg *config.Config, es *esink.Client, receivers map[string][]notify.Integration, reg prometheus.Registerer, log *slog.Logger) (*Digester, error) {
	dc := &cfg.Notify.Digest
	h, m, err := config.ParseSchedule(dc.Schedule)
	if err != nil {
		return nil, fmt.Errorf("notify.digest.schedule: %w", err)
	}
	loc, err := dc.Location()
	if err != nil {
		return nil, fmt.Errorf("notify.digest.timezone: %w", err)
	}
	drops, err := NewDeadLetterCounter(cfg.Kafka)
	if err != nil {
		return nil, err
	}
	d := &Digester{hour: h, minute: m, loc: loc, period: dc.Period, clusters: dc.Clusters,
		src:   report.NewES(es, "elasticsearch", report.IndicesFrom(cfg.Sink.Elasticsearch)),
		drops: drops,
		retry: backoff.Policy{Initial: cfg.Notify.Retry.InitialBackoff, Max: cfg.Notify.Retry.MaxBackoff}, giveUp: cfg.Notify.Retry.GiveUpAfter,
		recheck: time.Minute, log: log, now: time.Now}
	for _, name := range dc.Receivers {
		for _, in := range receivers[name] {
			if dn, ok := notify.TakesDigest(in.Notifier); ok {
				d.targets = append(d.targets, digestTarget{receiver: name, name: in.Name, n: dn})
				continue
			}
			log.Info("integration takes no digest; it is left out of it", "integration", in.Name)
		}
	}
	if len(d.targets) == 0 {
		// The report file alone is no digest: nobody is told it is there.
		return nil, errors.New("notify.digest.receivers: none has an integration that takes a digest (slack, email, teams, or a webhook in the kubesift format)")
	}
	if dc.Dir != "" {
		d.targets = append(d.targets, digestTarget{name: digestFileTarget, n: notify.NewDigestFile(dc.Dir)})
	}
	if err := d.register(reg); err != nil {
		return nil, err
	}
	if d.claims, err = notify.NewDigestClaims(ctx, es, dc.Index, replicaName(), dc.ClaimTimeout); err != nil {
		return nil, fmt.Errorf("notify.digest.index: %w", err)
	}
	return d, nil
}

func (d *Digester) register(reg prometheus.Registerer) error {
	d.digests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kubesift_notify_digests_total",
		Help: "Daily digests per cluster, by outcome (sent, failed, held: another replica's claim, done: sent already, error, left_out).",
	}, []string{"outcome"})
	d.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kubesift_notify_digest_deliveries_total",
		Help: "Digests finished per integration, by outcome (sent, failed).",
	}, []string{"integration", "outcome"})
	for _, o := range []string{digestSent, digestFailed, digestError, digestLeftOut, notify.ClaimHeld, notify.ClaimDone} {
		d.digests.WithLabelValues(o)
	}
	for _, t := range d.targets {
		d.deliveries.WithLabelValues(t.name, digestSent)
		d.deliveries.WithLabelValues(t.name, digestFailed)
	}
	return obs.Register(reg, d.digests, d.deliveries)
}

// replicaName names this process in the claims: host, pid and a random
// part (a restarted pod may reuse both).
func replicaName() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b))
}

// lastDue is the latest scheduled time at or before now.
func (d *Digester) lastDue(now time.Time) time.Time {
	n := now.In(d.loc)
	t := time.Date(n.Year(), n.Month(), n.Day(), d.hour, d.minute, 0, 0, d.loc)
	if t.After(now) {
		t = time.Date(n.Year(), n.Month(), n.Day()-1, d.hour, d.minute, 0, 0, d.loc)
	}
	return t
}

// nextDue is the first scheduled time after due.
func (d *Digester) nextDue(due time.Time) time.Time {
	n := due.In(d.loc)
	return time.Date(n.Year(), n.Month(), n.Day()+1, d.hour, d.minute, 0, 0, d.loc)
}

// Run sends each day's digests at the scheduled time until ctx ends.
func (d *Digester) Run(ctx context.Context) {
	for {
		due := d.lastDue(d.now())
		pending := d.sendDue(ctx, due)
		wait := d.nextDue(due).Sub(d.now())
		if pending && wait > d.recheck {
			wait = d.recheck
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// sendDue sends the digests of the scheduled time due that no replica has
// sent: those it claims. pending is whether some digest is neither sent
// nor failed for good (another replica's claim, or an error here), so Run
// looks again.
func (d *Digester) sendDue(ctx context.Context, due time.Time) (pending bool) {
	w := report.Window{From: due.Add(-d.period), To: due}
	day := due.In(d.loc).Format(time.DateOnly)
	clusters := d.clusters
	if len(clusters) == 0 {
		var leftOut int
		var err error
		if clusters, leftOut, err = d.src.Clusters(ctx, w); err != nil {
			d.digests.WithLabelValues(digestError).Inc()
			d.log.Warn("digest: cannot list the clusters", "day", day, "err", err)
			return true
		}
		if leftOut > 0 {
			d.digests.WithLabelValues(digestLeftOut).Add(float64(leftOut))
			d.log.Warn("digest: more clusters than one digest run sends; set notify.digest.clusters", "day", day, "left_out", leftOut, "sent", len(clusters))
		}
	}
	down := map[string]bool{}
	var drops *report.DeadLetterTally // read once, for the first cluster claimed
	for _, c := range clusters {
		if ctx.Err() != nil {
			return true
		}
		if d.sendCluster(ctx, c, day, w, down, &drops) {
			pending = true
		}
	}
	return pending
}

// sendCluster claims and sends one cluster's digest; pending as sendDue's,
// down as deliver's, drops the window's dead letters once read.
func (d *Digester) sendCluster(ctx context.Context, cluster, day string, w report.Window, down map[string]bool, drops **report.DeadLetterTally) (pending bool) {
	claim, how, err := d.claims.Claim(ctx, cluster, day)
	if err != nil {
		d.digests.WithLabelValues(digestError).Inc()
		d.log.Warn("digest: cannot claim", "cluster", cluster, "day", day, "err", err)
		return true
	}
	if claim == nil {
		d.digests.WithLabelValues(how).Inc()
		return how == notify.ClaimHeld
	}
	msg, err := d.build(ctx, cluster, day, w, drops)
	if err != nil {
		// The claim stays unfinished: this replica retakes it at the next
		// look (Claim lets an owner retake its own claim), another once
		// it is stale.
		d.digests.WithLabelValues(digestError).Inc()
		d.log.Warn("digest: cannot build", "cluster", cluster, "day", day, "err", err)
		return true
	}
	failed := d.deliver(ctx, msg, down)
	if ctx.Err() != nil {
		return true // stopped mid-way: unfinished, as above
	}
	outcome := digestSent
	if len(failed) > 0 {
		outcome = digestFailed
	}
	d.digests.WithLabelValues(outcome).Inc()
	if err := d.claims.Done(ctx, claim, failed); err != nil {
		d.log.Warn("digest: cannot mark done", "cluster", cluster, "day", day, "err", err)
	}
	d.log.Info("digest finished", "cluster", cluster, "day", day, "outcome", outcome, "failed", failed, "claim", how)
	return false
}

// build reads and renders one cluster's digest; Receiver and the key are
// set per target by deliver.
func (d *Digester) build(ctx context.Context, cluster, day string, w report.Window, drops **report.DeadLetterTally) (*notify.Digest, error) {
	dg, err := d.src.Digest(ctx, cluster, w)
	if err != nil {
		return nil, err
	}
	if *drops == nil {
		if *drops, err = d.drops.Count(ctx, w); err != nil {
			return nil, err
		}
	}
	dg.DeadLetters = (*drops).Of(cluster)
	var text, html bytes.Buffer
	if err := report.RenderDigests(&text, []*report.Digest{dg}, report.DigestText, d.loc); err != nil {
		return nil, err
	}
	if err := report.RenderDigests(&html, []*report.Digest{dg}, report.DigestHTML, d.loc); err != nil {
		return nil, err
	}
	data, err := json.Marshal(dg)
	if err != nil {
		return nil, fmt.Errorf("digest: %w", err)
	}
	return &notify.Digest{Cluster: cluster, Day: day, From: w.From, To: w.To, Title: report.DigestTitle(dg, d.loc),
		Text: text.String(), HTML: html.String(), Data: data}, nil
}

// deliver sends msg to every target at once, each through the retry
// stage bounded by notify.retry.give_up_after, and returns the names of
// those that gave up. down holds the targets that gave up on an earlier
// cluster of this run: they get one attempt without retries, so a receiver
// that is down delays the run by one give_up_after, not one per cluster.
func (d *Digester) deliver(ctx context.Context, msg *notify.Digest, down map[string]bool) (failed []string) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, t := range d.targets {
		m := *msg
		m.Receiver, m.IdempotencyKey = t.receiver, notify.DigestKey(t.receiver, msg.Cluster, msg.Day)
		policy := d.retry
		mu.Lock()
		if down[t.name] {
			policy.Attempts = 1
		}
		mu.Unlock()
		wg.Go(func() {
			rctx, cancel := context.WithTimeout(ctx, d.giveUp)
			defer cancel()
			err := sink.Do(rctx, policy, func(ctx context.Context) (bool, error) { return t.n.NotifyDigest(ctx, &m) }, nil)
			outcome := digestSent
			if err != nil {
				outcome = digestFailed
				d.log.Warn("digest: delivery failed", "integration", t.name, "cluster", m.Cluster, "day", m.Day, "err", err)
			}
			mu.Lock()
			down[t.name] = err != nil
			if err != nil {
				failed = append(failed, t.name)
			}
			mu.Unlock()
			d.deliveries.WithLabelValues(t.name, outcome).Inc()
		})
	}
	wg.Wait()
	slices.Sort(failed)
	return failed
}
