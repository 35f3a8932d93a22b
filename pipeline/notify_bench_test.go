package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/sink/notify"
	"github.com/kubesift/kubesift/sink/notify/notifytest"
)

// BenchmarkAlertToWebhookLatency measures the notifier's share of the alert
// path on the real Kafka: from the processor's produce of an alert (the
// write starts) to an in-process webhook receiving it, group_wait 0, one
// alert at a time. It reports p50 and p99 over b.N alerts (use
// -benchtime=200x). The target (docs/alerting.md) is p99 <= 2 s for the
// whole path from the audit line; this is the notify part only.
func BenchmarkAlertToWebhookLatency(b *testing.B) {
	brokers := testenv.KafkaBrokers(b)
	run := fmt.Sprint(time.Now().UnixNano())
	topic, group := "bench-notify-"+run, "bench-notify-"+run
	testenv.CreateTopics(b, brokers[0], 1, topic)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	var mu sync.Mutex
	arrived := map[string]time.Time{}
	got := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p notify.WebhookPayload
		_ = json.NewDecoder(r.Body).Decode(&p)
		now := time.Now()
		mu.Lock()
		for _, a := range p.Alerts {
			arrived[a.ID] = now
		}
		mu.Unlock()
		select {
		case got <- struct{}{}:
		default:
		}
	}))
	defer srv.Close()
	w, _ := notify.NewWebhook(config.WebhookConfig{URL: config.Secret(srv.URL)}, srv.Client())
	zero := time.Duration(0)
	route, _ := notify.NewRoute(&config.RouteConfig{Receiver: "r", GroupBy: []string{"cluster", "rule_id"},
		GroupWait: &zero, GroupInterval: dur(time.Millisecond), RepeatInterval: dur(time.Hour)})
	d, err := notify.New(notify.Options{Route: route, Receivers: map[string][]notify.Integration{"r": {{Name: "r/webhook[0]", Notifier: w}}},
		MaxGroups: 1000, MaxAlertsPerGroup: 1000, QueueSize: 100, GiveUpAfter: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	pw := &kafka.Writer{Addr: kafka.TCP(brokers...), Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond, Transport: &kafka.Transport{}}
	defer pw.Close()
	stop, errc := runConsumer(b, ctx, brokers, topic, group, d, pw, "unused", time.Second)
	defer func() { stop(); <-errc; <-errc }()

	send := func(i int) (string, time.Time) {
		a := notifytest.PrivilegedPod(i, fmt.Sprint("b", i))
		a.ID = fmt.Sprintf("bench-%s-%d", run, i)
		m := notifytest.AlertMessage(b, a)
		m.Topic = topic
		start := time.Now()
		if err := pw.WriteMessages(ctx, m); err != nil {
			b.Fatal(err)
		}
		return a.ID, start
	}
	wait := func(id string) time.Time {
		for {
			mu.Lock()
			t, ok := arrived[id]
			mu.Unlock()
			if ok {
				return t
			}
			select {
			case <-got:
			case <-time.After(10 * time.Millisecond):
			case <-ctx.Done():
				b.Fatal("timed out")
			}
		}
	}
	// Warm up: the consumer group join is not part of the latency.
	id, _ := send(-1)
	wait(id)

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		id, start := send(i)
		lat = append(lat, wait(id).Sub(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	b.ReportMetric(float64(p(0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}
