package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/internal/backoff"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/lifecycle"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/sink/notify"
	"github.com/kubesift/kubesift/sink/report/reporttest"
)

// TestDigestSchedule: the latest scheduled time at or before a moment,
// and the next, in the schedule's zone — across midnight and both DST
// changes (a day of 23 and one of 25 hours).
func TestDigestSchedule(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04", s, berlin)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	d := &Digester{hour: 8, minute: 0, loc: berlin}
	for _, tc := range []struct{ now, last, next string }{
		{"2026-12-07 09:30", "2026-12-07 08:00", "2026-12-08 08:00"},
		{"2026-12-07 08:00", "2026-12-07 08:00", "2026-12-08 08:00"},
		{"2026-12-07 07:59", "2026-12-06 08:00", "2026-12-07 08:00"},
		{"2026-03-29 07:00", "2026-03-28 08:00", "2026-03-29 08:00"}, // 23 hours apart
		{"2026-10-25 09:00", "2026-10-25 08:00", "2026-10-26 08:00"},
		{"2026-10-25 07:00", "2026-10-24 08:00", "2026-10-25 08:00"}, // 25 hours apart
	} {
		last := d.lastDue(at(tc.now))
		if !last.Equal(at(tc.last)) || !d.nextDue(last).Equal(at(tc.next)) {
			t.Errorf("at %s: last %s next %s, want %s and %s", tc.now, last, d.nextDue(last), tc.last, tc.next)
		}
	}
}

// TestNewDigesterRefuses: a digest whose receivers have no integration
// that takes one fails the start, before anything connects.
func TestNewDigesterRefuses(t *testing.T) {
	cfg := config.Default()
	cfg.Notify.Digest.Schedule, cfg.Notify.Digest.Receivers = "08:00", []string{"pager"}
	pd, err := notify.NewPagerDuty(config.PagerDutyConfig{RoutingKey: "k"}, http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	receivers := map[string][]notify.Integration{"pager": {{Name: "pager/pagerduty[0]", Notifier: pd}}}
	if _, err := newDigester(t.Context(), &cfg, nil, receivers, prometheus.NewRegistry(), testLogger(t)); err == nil ||
		!strings.Contains(err.Error(), "notify.digest.receivers") {
		t.Fatalf("err = %v", err)
	}
}

// hookRecorder is a webhook receiver that keeps each request's body.
type hookRecorder struct {
	mu     sync.Mutex
	bodies [][]byte
}

func (h *hookRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.bodies = append(h.bodies, b)
	h.mu.Unlock()
}

func (h *hookRecorder) payloads(t *testing.T) map[string]notify.DigestPayload {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]notify.DigestPayload{}
	for _, b := range h.bodies {
		var p notify.DigestPayload
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		if _, twice := out[p.Cluster]; twice {
			t.Errorf("digest of %s posted twice", p.Cluster)
		}
		out[p.Cluster] = p
	}
	return out
}

// TestDigestTwoReplicas (real Elasticsearch, Kafka and SMTP server): two
// notifiers with the same configuration start against one store holding a
// known day of two clusters, and a dead-letter topic holding dead letters
// of that day and of the day before. Each cluster's digest reaches mailpit
// and the webhook exactly once, with the day's figures, and its report
// file holds the same; the other replica counts it as another's (held) or
// sent already (done).
func TestDigestTwoReplicas(t *testing.T) {
	end := time.Now().UTC().Truncate(24 * time.Hour) // the last 00:00 UTC: the schedule's
	cluster := fmt.Sprintf("digest-%d", time.Now().UnixNano())
	es, esCfg, want := reporttest.StoreDigestScenario(t, cluster, end)
	// Searchable before the replicas start: they read at once.
	res, err := es.Indices.Refresh(es.Indices.Refresh.WithIndex(esCfg.Streams.Audit, esCfg.Streams.Events, esCfg.AlertsIndex,
		esCfg.Findings.Index, esCfg.Findings.TransitionsStream, esCfg.Findings.ScoresStream))
	if err != nil {
		t.Fatal(err)
	}
	if res.Body.Close(); res.IsError() {
		t.Fatalf("refresh: %s", res.Status())
	}
	mp := testenv.StartMailpit(t, testenv.MailpitOptions{})
	hook := &hookRecorder{}
	srv := httptest.NewServer(hook)
	defer srv.Close()

	brokers := testenv.KafkaBrokers(t)
	cfg := config.Default()
	cfg.Kafka = testKafka(brokers)
	cfg.Kafka.Topics.Alerts, cfg.Kafka.Topics.DLQ = "it-"+cluster+"-alerts", "it-"+cluster+"-dlq"
	cfg.Notify.ConsumerGroup = "it-" + cluster + "-notify"
	testenv.CreateTopics(t, brokers[0], 1, cfg.Kafka.Topics.Alerts)
	testenv.CreateTopics(t, brokers[0], 2, cfg.Kafka.Topics.DLQ)
	writeMessages(t, brokers, cfg.Kafka.Topics.DLQ,
		deadLetterAt(cluster, SourceProcessor, "es_rejected", kindRecord, end.Add(-30*time.Hour)),
		deadLetterAt(cluster, "audit-webhook", "body_too_large", "", end.Add(-5*time.Hour)),
		deadLetterAt(cluster+"-other", "events", "invalid_json", "", end.Add(-4*time.Hour)),
		deadLetterAt(cluster, SourceProcessor, "es_rejected", kindRecord, end.Add(-3*time.Hour)),
		deadLetterAt(cluster, "notifier", "undecodable_alert", kindAlert, end.Add(-2*time.Hour)))
	want.DeadRecords, want.DeadAlerts = 2, 1
	cfg.Sink.Elasticsearch = esCfg
	cfg.Notify.Silences.Index = strings.ToLower(cluster) + "-silences"
	cfg.Notify.Route.Receiver = "daily" // the default route's timers kept: the root route must have them
	cfg.Notify.Receivers = []config.ReceiverConfig{{Name: "daily",
		EmailConfigs:   []config.EmailConfig{{To: []string{"sec@example.com"}, From: "kubesift <digest@example.com>", Smarthost: mp.SMTPAddr}},
		WebhookConfigs: []config.WebhookConfig{{URL: config.Secret(srv.URL + "/digest"), Format: config.WebhookFormatKubesift}},
	}}
	cfg.Notify.Digest.Schedule, cfg.Notify.Digest.Receivers = "00:00", []string{"daily"}
	cfg.Notify.Digest.Index = strings.ToLower(cluster) + "-digests"
	cfg.Notify.Digest.Dir = t.TempDir() // shared by both replicas
	t.Cleanup(func() { es.Indices.Delete([]string{cfg.Notify.Silences.Index, cfg.Notify.Digest.Index}) })

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var regs []*prometheus.Registry
	var done []chan error
	for i := range 2 {
		reg := prometheus.NewRegistry()
		nt, err := NewNotifier(ctx, &cfg, NotifierDeps{Registerer: reg, Logger: testLogger(t).With("replica", i)})
		if err != nil {
			t.Fatal(err)
		}
		g := lifecycle.New(testLogger(t))
		nt.Add(g)
		ch := make(chan error, 1)
		go func() { ch <- g.Run(ctx) }()
		regs, done = append(regs, reg), append(done, ch)
	}
	// Both replicas have settled both clusters: two sent, two left to the
	// other.
	outcomes := func() map[string]float64 {
		out := map[string]float64{}
		for _, reg := range regs {
			for _, o := range []string{"sent", "failed", "error", "held", "done"} {
				out[o] += testenv.Metric(t, reg, "kubesift_notify_digests_total", "outcome", o)
			}
		}
		return out
	}
	testenv.WaitFor(t, "both replicas to settle both digests", time.Minute, func() bool {
		o := outcomes()
		return o["sent"]+o["failed"] == 2 && o["held"]+o["done"] >= 2
	})
	if o := outcomes(); o["sent"] != 2 || o["error"] != 0 {
		t.Errorf("outcomes %v", o)
	}
	mails := mp.WaitMessages(t, 2, 30*time.Second)
	posts := hook.payloads(t)
	if len(posts) != 2 || len(mails) != 2 {
		t.Fatalf("%d posts, %d mails", len(posts), len(mails))
	}
	p, ok := posts[cluster]
	if !ok {
		t.Fatalf("no digest of %s among %v", cluster, slices.Collect(maps.Keys(posts)))
	}
	if got := reporttest.FiguresOfJSON(t, p.Digest); !reflect.DeepEqual(got, want) {
		t.Errorf("webhook figures\n got %+v\nwant %+v", got, want)
	}
	if p.Day != end.Format(time.DateOnly) || !p.To.Equal(end) || !p.From.Equal(end.Add(-24*time.Hour)) || p.IdempotencyKey != notify.DigestKey("daily", cluster, p.Day) {
		t.Errorf("payload %+v", p)
	}
	var mail testenv.MailpitMessage
	for _, m := range mails {
		if strings.HasPrefix(m.Subject, "kubesift digest: "+cluster+",") {
			mail = mp.Message(t, m.ID)
		}
	}
	for _, w := range []string{"80.0% (+10.0 since 70.0%", "5 opened, 3 resolved, 5 open now", "2 now, 2 became unused", "ClusterRoleBinding ci-deploy", "RoleBinding shop/old-reader", "pod-exec", "secret-read", "BackOff",
		"6 audit records, 9 Events indexed; 1 of them trimmed", "2 records, 1 alerts not indexed", "audit-webhook: body_too_large"} {
		if !strings.Contains(mail.Text, w) || !strings.Contains(mail.HTML, strings.ReplaceAll(w, "+", "&#43;")) {
			t.Errorf("mail lacks %q:\n%s\n%s", w, mail.Text, mail.HTML)
		}
	}
	if strings.Contains(mail.HTML, "<img") {
		t.Errorf("the hostile reason is markup in the mail:\n%s", mail.HTML)
	}
	files := notify.NewDigestFile(cfg.Notify.Digest.Dir)
	page, err := os.ReadFile(filepath.Join(files.Dir(cluster), p.Day+".html"))
	if err != nil || !strings.Contains(string(page), "80.0% (&#43;10.0 since 70.0%") {
		t.Errorf("report file: %v\n%s", err, page)
	}
	data, err := os.ReadFile(filepath.Join(files.Dir(cluster), p.Day+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if got := reporttest.FiguresOfJSON(t, data); !reflect.DeepEqual(got, want) {
		t.Errorf("report file figures\n got %+v\nwant %+v", got, want)
	}
	cancel()
	for _, ch := range done {
		if err := <-ch; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("notifier: %v", err)
		}
	}
}

// digestFunc adapts a function to notify.DigestNotifier.
type digestFunc func(ctx context.Context, d *notify.Digest) (bool, error)

func (f digestFunc) NotifyDigest(ctx context.Context, d *notify.Digest) (bool, error) {
	return f(ctx, d)
}

// TestDigestDeliverDown: a receiver that gave up on one cluster's digest
// gets one attempt for each later cluster of the run, not its whole retry
// budget again; the others are unaffected, and each digest carries its
// receiver's key.
func TestDigestDeliverDown(t *testing.T) {
	var mu sync.Mutex
	attempts := map[string]int{}
	keys := map[string]string{}
	target := func(receiver, name string, fail bool) digestTarget {
		return digestTarget{receiver: receiver, name: name, n: digestFunc(func(_ context.Context, d *notify.Digest) (bool, error) {
			mu.Lock()
			defer mu.Unlock()
			attempts[name+"/"+d.Cluster]++
			keys[name+"/"+d.Cluster] = d.IdempotencyKey
			if fail {
				return true, errors.New("503")
			}
			return false, nil
		})}
	}
	reg := prometheus.NewRegistry()
	d := &Digester{targets: []digestTarget{target("ops", "ops/webhook[0]", true), target("sec", "sec/email[0]", false)},
		retry: backoff.Policy{Initial: 5 * time.Millisecond, Max: 10 * time.Millisecond}, giveUp: 300 * time.Millisecond, log: testLogger(t)}
	if err := d.register(reg); err != nil {
		t.Fatal(err)
	}
	down := map[string]bool{}
	for _, c := range []string{"a", "b", "c"} {
		failed := d.deliver(t.Context(), &notify.Digest{Cluster: c, Day: "2026-12-07"}, down)
		if !reflect.DeepEqual(failed, []string{"ops/webhook[0]"}) {
			t.Errorf("cluster %s: failed %q", c, failed)
		}
	}
	if attempts["ops/webhook[0]/a"] < 3 || attempts["ops/webhook[0]/b"] != 1 || attempts["ops/webhook[0]/c"] != 1 || attempts["sec/email[0]/b"] != 1 {
		t.Errorf("attempts %v", attempts)
	}
	if keys["sec/email[0]/a"] != notify.DigestKey("sec", "a", "2026-12-07") {
		t.Errorf("keys %v", keys)
	}
	if got := testenv.Metric(t, reg, "kubesift_notify_digest_deliveries_total", "integration", "ops/webhook[0]", "outcome", "failed"); got != 3 {
		t.Errorf("failed deliveries counted %v", got)
	}
}
