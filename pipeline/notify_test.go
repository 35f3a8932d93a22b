package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/backoff"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/sink/notify"
	"github.com/kubesift/kubesift/sink/notify/notifytest"
)

// The notifier loop's tests run on the real Kafka with in-process webhook
// receivers and a real notify.Dispatcher.

func dur(d time.Duration) *time.Duration { return &d }

func rootRoute(t *testing.T, cfg config.RouteConfig) *notify.Route {
	t.Helper()
	if cfg.GroupBy == nil {
		cfg.GroupBy = []string{"cluster", "rule_id"}
	}
	if cfg.RepeatInterval == nil {
		cfg.RepeatInterval = dur(time.Hour)
	}
	r, err := notify.NewRoute(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func webhookIntegration(t *testing.T, name, url string) notify.Integration {
	w, err := notify.NewWebhook(config.WebhookConfig{URL: config.Secret(url)}, &http.Client{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return notify.Integration{Name: name, Notifier: w}
}

// webhookReceiver is a real HTTP receiver in-process that records kubesift/v1
// payloads.
type webhookReceiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []notify.WebhookPayload
}

func newWebhookReceiver(t *testing.T) *webhookReceiver {
	r := &webhookReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var p notify.WebhookPayload
		if err := json.NewDecoder(req.Body).Decode(&p); err != nil {
			t.Errorf("receiver: %v", err)
			w.WriteHeader(400)
			return
		}
		r.mu.Lock()
		r.got = append(r.got, p)
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *webhookReceiver) payloads() []notify.WebhookPayload {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]notify.WebhookPayload(nil), r.got...)
}

// states counts the alerts' state changes.
type states struct {
	mu sync.Mutex
	n  map[notify.State]int
}

func newStates() *states { return &states{n: map[notify.State]int{}} }

func (s *states) AlertState(_ string, st notify.State, _ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n[st]++
}

func (s *states) count(st notify.State) int { s.mu.Lock(); defer s.mu.Unlock(); return s.n[st] }

// TestNotifyConsumerDeliversAndCommitsAfterDelivery (real Kafka): alerts produced
// as the processor produces them are delivered to an in-process webhook
// receiver; an undecodable message goes to the dead-letter topic with its
// reason; and the group's committed offsets reach the end of the topic only
// once everything is final.
func TestNotifyConsumerDeliversAndCommitsAfterDelivery(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	run := fmt.Sprintf("%d", time.Now().UnixNano())
	topic, dlq, group := "it-notify-alerts-"+run, "it-notify-dlq-"+run, "it-notify-"+run
	testenv.CreateTopics(t, brokers[0], 2, topic)
	testenv.CreateTopics(t, brokers[0], 1, dlq)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll,
		BatchTimeout: 5 * time.Millisecond, Transport: &kafka.Transport{}}
	defer w.Close()
	const n = 200
	var msgs []kafka.Message
	for i := range n {
		a := notifytest.PrivilegedPod(i, fmt.Sprint("p", i))
		a.Cluster = []string{"prod-eu-1", "prod-us-1"}[i%2]
		m := notifytest.AlertMessage(t, a)
		m.Topic = topic
		msgs = append(msgs, m)
		if i == n/2 {
			msgs = append(msgs, kafka.Message{Topic: topic, Key: []byte("prod-eu-1/x"), Value: []byte(`{"id": oops`)})
		}
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}

	rcv := newWebhookReceiver(t)
	states := newStates()
	d, err := notify.New(notify.Options{
		Route:     rootRoute(t, config.RouteConfig{Receiver: "sec", GroupWait: dur(0), GroupInterval: dur(100 * time.Millisecond)}),
		Receivers: map[string][]notify.Integration{"sec": {webhookIntegration(t, "sec/webhook[0]", rcv.srv.URL)}},
		States:    states, MaxGroups: 100, MaxAlertsPerGroup: 1000, QueueSize: 10, GiveUpAfter: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	stop, errc := runConsumer(t, ctx, brokers, topic, group, d, w, dlq, 200*time.Millisecond)

	// Wait (bounded) until every alert was delivered and the committed
	// offsets cover the whole topic (n alerts + 1 dead letter).
	testenv.WaitForNil(t, "every alert delivered and the topic committed", 2*time.Minute, func() error {
		total := 0
		for _, p := range rcv.payloads() {
			total += p.Count
		}
		off := committed(t, brokers, group, topic, 2)
		// -1: nothing committed (a partition that got no message).
		if total >= n && max(off[0], 0)+max(off[1], 0) == n+1 {
			return nil
		}
		return fmt.Errorf("%d alerts received, committed %v", total, off)
	})
	stop()
	for range 2 {
		<-errc
	}
	total := 0
	for _, p := range rcv.payloads() {
		total += p.Count
	}
	if total != n || states.count(notify.StateDelivered) != n {
		t.Errorf("received %d alerts, %d delivered states; want %d", total, states.count(notify.StateDelivered), n)
	}
	// The dead letter carries the reason and the original bytes.
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: dlq, Partition: 0, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	m, err := r.ReadMessage(rctx)
	if err != nil {
		t.Fatal(err)
	}
	hs := map[string]string{}
	for _, h := range m.Headers {
		hs[h.Key] = string(h.Value)
	}
	if string(m.Value) != `{"id": oops` || hs[HeaderDLQSource] != "notifier" || !strings.Contains(hs[HeaderDLQError], "value: invalid character") || hs[HeaderDLQOrigin] != topic {
		t.Errorf("dead letter: %q %v", m.Value, hs)
	}
}

// TestNotifyConsumerHoldsOffsetsUntilDelivered (real Kafka): while the receiver
// refuses, nothing is committed; the notifier is stopped (a crash or a
// deploy) with the alerts undelivered; a new notifier in the group re-reads
// them from the committed offset and delivers every one once the receiver
// is back — the committed offsets are the durable notification log.
func TestNotifyConsumerHoldsOffsetsUntilDelivered(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	run := fmt.Sprintf("%d", time.Now().UnixNano())
	topic, group := "it-notify-hold-"+run, "it-notify-hold-"+run
	testenv.CreateTopics(t, brokers[0], 1, topic)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll,
		BatchTimeout: 5 * time.Millisecond, Transport: &kafka.Transport{}}
	defer w.Close()
	const n = 50
	produceAlerts(t, ctx, w, topic, n)

	var mu sync.Mutex
	up := false
	accepted := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var p notify.WebhookPayload
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			rw.WriteHeader(400)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if !up {
			rw.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		for _, a := range p.Alerts {
			accepted[a.ID]++
		}
	}))
	defer srv.Close()

	start := func() (*prometheus.Registry, context.CancelFunc, chan error) {
		reg := prometheus.NewRegistry()
		m, err := notify.NewMetrics(reg)
		if err != nil {
			t.Fatal(err)
		}
		d, err := notify.New(notify.Options{Metrics: m,
			Route:     rootRoute(t, config.RouteConfig{Receiver: "sec", GroupWait: dur(0), GroupInterval: dur(100 * time.Millisecond)}),
			Receivers: map[string][]notify.Integration{"sec": {webhookIntegration(t, "sec/webhook[0]", srv.URL)}},
			MaxGroups: 10, MaxAlertsPerGroup: 1000, QueueSize: 10, GiveUpAfter: 10 * time.Minute,
			Backoff: backoff.Policy{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond},
		})
		if err != nil {
			t.Fatal(err)
		}
		stop, errc := runConsumer(t, ctx, brokers, topic, group, d, w, "unused", 100*time.Millisecond)
		return reg, stop, errc
	}
	stopAll := func(stop context.CancelFunc, errc chan error) {
		stop()
		for range 2 {
			<-errc
		}
	}

	reg1, stop1, errc1 := start()
	testenv.WaitFor(t, "3 retries against the refusing receiver", time.Minute, func() bool {
		return testenv.Metric(t, reg1, "kubesift_notify_retries_total", "integration", "sec/webhook[0]") >= 3
	})
	// Commits run every 100 ms; give several a chance, then check none
	// moved past the undelivered alerts.
	time.Sleep(500 * time.Millisecond)
	if off := committed(t, brokers, group, topic, 1)[0]; off > 0 {
		t.Fatalf("committed %d while nothing was delivered", off)
	}
	stopAll(stop1, errc1)

	mu.Lock()
	up = true
	mu.Unlock()
	_, stop2, errc2 := start()
	defer stopAll(stop2, errc2)
	testenv.WaitForNil(t, "every alert accepted and committed after the restart", 2*time.Minute, func() error {
		mu.Lock()
		got := len(accepted)
		mu.Unlock()
		if off := committed(t, brokers, group, topic, 1); got != n || off[0] != n {
			return fmt.Errorf("%d of %d alerts accepted, committed %v", got, n, off)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for id, c := range accepted {
		if c != 1 {
			t.Errorf("alert %s accepted %d times", id, c)
		}
	}
}

// TestNotifyReceiverDown60s: on the real Kafka, with the
// webhook's port refuses connections for 60 s while alerts keep arriving
// (4 groups, 2 alerts/s); afterwards every alert is received, none is lost,
// offsets cover the topic, and an alert received twice came both times
// under one idempotency key.
func TestNotifyReceiverDown60s(t *testing.T) {
	testenv.Short(t)
	brokers := testenv.KafkaBrokers(t)
	run := fmt.Sprint(time.Now().UnixNano())
	topic, group := "it-notify-down-"+run, "it-notify-down-"+run
	testenv.CreateTopics(t, brokers[0], 2, topic)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	addr := testenv.FreeAddr(t) // the receiver is down

	d, err := notify.New(notify.Options{
		Route:     rootRoute(t, config.RouteConfig{Receiver: "sec", GroupWait: dur(time.Second), GroupInterval: dur(2 * time.Second)}),
		Receivers: map[string][]notify.Integration{"sec": {webhookIntegration(t, "sec/webhook[0]", "http://"+addr+"/hook")}},
		MaxGroups: 100, MaxAlertsPerGroup: 1000, QueueSize: 10, GiveUpAfter: 10 * time.Minute,
		Backoff: backoff.Policy{Initial: 200 * time.Millisecond, Max: 5 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll,
		BatchTimeout: 5 * time.Millisecond, Transport: &kafka.Transport{}}
	defer w.Close()
	stop, errc := runConsumer(t, ctx, brokers, topic, group, d, w, "unused", 500*time.Millisecond)
	defer func() { stop(); <-errc; <-errc }()

	const n = 120
	down := time.Now()
	for i := range n {
		a := notifytest.PrivilegedPod(i, fmt.Sprint("p", i))
		a.ID = fmt.Sprintf("down-%s-%d", run, i)
		a.Cluster = fmt.Sprint("c", i%4)
		m := notifytest.AlertMessage(t, a)
		m.Topic = topic
		if err := w.WriteMessages(ctx, m); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(down.Add(time.Duration(i+1) * 500 * time.Millisecond)))
	}
	if off := committed(t, brokers, group, topic, 2); max(off[0], 0)+max(off[1], 0) > 0 {
		t.Errorf("committed %v while the receiver was down", off)
	}

	// Up again on the same address after 60 s.
	time.Sleep(time.Until(down.Add(60 * time.Second)))
	l := testenv.Relisten(t, addr)
	var mu sync.Mutex
	keyOf := map[string]string{} // alert id -> idempotency key
	count := map[string]int{}
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var p notify.WebhookPayload
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			rw.WriteHeader(400)
			return
		}
		key := r.Header.Get(notify.IdempotencyHeader)
		mu.Lock()
		defer mu.Unlock()
		for _, a := range p.Alerts {
			if k, ok := keyOf[a.ID]; ok && k != key {
				t.Errorf("alert %s received under two idempotency keys", a.ID)
			}
			keyOf[a.ID] = key
			count[a.ID]++
		}
	})}
	go srv.Serve(l)
	defer srv.Close()
	up := time.Now()
	testenv.WaitForNil(t, "every alert received and committed after the receiver came back", 2*time.Minute, func() error {
		mu.Lock()
		got := len(count)
		mu.Unlock()
		if off := committed(t, brokers, group, topic, 2); got != n || max(off[0], 0)+max(off[1], 0) != n {
			return fmt.Errorf("%d of %d alerts received, committed %v", got, n, off)
		}
		return nil
	})
	t.Logf("receiver down %.0f s; all %d alerts received %.1f s after it came back", up.Sub(down).Seconds(), n, time.Since(up).Seconds())
}

// produceAlerts writes n privileged-pod alerts to topic.
func produceAlerts(t *testing.T, ctx context.Context, w *kafka.Writer, topic string, n int) {
	t.Helper()
	var msgs []kafka.Message
	for i := range n {
		m := notifytest.AlertMessage(t, notifytest.PrivilegedPod(i, fmt.Sprint("p", i)))
		m.Topic = topic
		msgs = append(msgs, m)
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
}

// runConsumer runs d and a Consumer of topic in group (dead letters to w)
// until stop; each of the two sends its result on errc.
func runConsumer(t testing.TB, ctx context.Context, brokers []string, topic, group string, d *notify.Dispatcher, w *kafka.Writer,
	dlq string, commit time.Duration) (stop context.CancelFunc, errc chan error) {
	t.Helper()
	c, err := NewNotifyConsumer(NotifyConsumerOptions{Brokers: brokers, Topic: topic, GroupID: group, Dispatcher: d,
		DLQ: NotifyDLQWriter(w, dlq), CommitInterval: commit})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	errc = make(chan error, 2)
	go func() { errc <- d.Run(rctx) }()
	go func() { errc <- c.Run(rctx) }()
	return stop, errc
}
