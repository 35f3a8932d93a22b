package publish

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// Integration tests against the test ground's real Kafka broker
// (hack/testenv/kafka.sh). Each test uses its own topics. Tests that only
// use Kafka take testenv.SharedLock; TestFault… stops the broker under
// testenv.FaultLock.

// realKafka returns the broker and a kafka config with fresh topics (4
// partitions each).
func realKafka(t testing.TB, name string) (string, config.KafkaConfig) {
	t.Helper()
	testenv.SharedLock(t)
	brokers := testenv.KafkaBrokers(t)
	k := testKafkaConfig(brokers, fmt.Sprintf("it-%s-%d", name, time.Now().UnixNano()))
	testenv.CreateTopics(t, brokers[0], 4, k.Topics.Audit, k.Topics.Events, k.Topics.Objects, k.Topics.DLQ)
	return brokers[0], k
}

// TestIntegrationPublish20k publishes 20,000 records from four concurrent
// sources and finds every record ID on the topic.
func TestIntegrationPublish20k(t *testing.T) {
	testenv.Short(t)
	broker, k := realKafka(t, "publish")
	reg := prometheus.NewRegistry()
	p := newTestPublisher(t, k, testPublishConfig(t.TempDir()), reg)

	const total, sources = 20000, 4
	var mu sync.Mutex
	ids := map[string]bool{}
	var wg sync.WaitGroup
	for s := range sources {
		wg.Go(func() {
			var recs []*record.Record
			for i := s; i < total; i += sources {
				recs = append(recs, auditRecord(i, fmt.Sprintf("user-%d", i%97), 0))
			}
			got := publishAll(t, p, recs, 500)
			mu.Lock()
			for id := range got {
				ids[id] = true
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	waitDrained(t, p)
	closePublisher(t, p)
	if len(ids) != total {
		t.Fatalf("%d records acknowledged, want %d", len(ids), total)
	}
	msgs := testenv.ReadTopic(t, broker, k.Topics.Audit)
	dups := checkAllOnce(t, msgs, ids)
	t.Logf("%d records, %d messages on %s (%d duplicates); spooled %v", total, len(msgs), k.Topics.Audit, dups,
		testenv.Metric(t, reg, "kubesift_collector_spooled_records_total"))
	if got := testenv.Metric(t, reg, "kubesift_collector_publish_acked_records_total"); got < total {
		t.Errorf("acked metric %v < %d", got, total)
	}
}

// TestIntegrationDeadLetters publishes dead letters and checks value and
// headers on the DLQ topic.
func TestIntegrationDeadLetters(t *testing.T) {
	testenv.Short(t)
	broker, k := realKafka(t, "dlq")
	p := newTestPublisher(t, k, testPublishConfig(t.TempDir()), prometheus.NewRegistry())
	dls := []collector.DeadLetter{
		{Data: []byte(`{"kind":"Event",`), Source: "audit-tail", Origin: "/var/log/kube/audit.log", Offset: 123456, Line: 42,
			Reason: "syntax", Error: "line 42: unexpected end of JSON input", Cluster: testCluster},
		{Data: []byte(`{"auditID":""}`), Source: "audit-webhook", Origin: "10.1.2.3:40000", Offset: -1,
			Reason: "field", Error: "auditID: missing", Cluster: testCluster},
		{Data: []byte("\x00\xffbinary"), Source: "events", Origin: "informer", Offset: -1, Reason: "syntax", Error: "x", Cluster: testCluster},
	}
	for _, dl := range dls {
		if err := p.PublishDeadLetters(context.Background(), []collector.DeadLetter{dl}); err != nil {
			t.Fatal(err)
		}
	}
	waitDrained(t, p)
	closePublisher(t, p)
	msgs := testenv.ReadTopic(t, broker, k.Topics.DLQ)
	if len(msgs) != len(dls) {
		t.Fatalf("%d dead letters on %s, want %d", len(msgs), k.Topics.DLQ, len(dls))
	}
	for _, dl := range dls {
		var m *kafka.Message
		for i := range msgs {
			if o, _ := header(msgs[i], HeaderDLQOrigin); o == dl.Origin {
				m = &msgs[i]
			}
		}
		if m == nil {
			t.Fatalf("dead letter from %s not found", dl.Origin)
		}
		want := map[string]string{
			HeaderDLQSource: dl.Source, HeaderDLQOffset: strconv.FormatInt(dl.Offset, 10), HeaderDLQLine: strconv.Itoa(dl.Line),
			HeaderDLQReason: dl.Reason, HeaderDLQError: dl.Error, record.HeaderCluster: dl.Cluster.Name,
		}
		for h, v := range want {
			if got, ok := header(*m, h); !ok || got != v {
				t.Errorf("%s: header %s = %q, want %q", dl.Origin, h, got, v)
			}
		}
		if string(m.Value) != string(dl.Data) {
			t.Errorf("%s: value %q, want %q", dl.Origin, m.Value, dl.Data)
		}
		if string(m.Key) != dl.Cluster.Name {
			t.Errorf("%s: key %q", dl.Origin, m.Key)
		}
	}
}

// netSwitch is a dialer that can cut the publisher off the real broker (a
// network partition) without stopping the broker other tests use.
type netSwitch struct {
	mu    sync.Mutex
	down  bool
	conns []net.Conn
}

func (n *netSwitch) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.down {
		return nil, fmt.Errorf("test network partition: %s unreachable", addr)
	}
	c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
	if err == nil {
		n.conns = append(n.conns, c)
	}
	return c, err
}

func (n *netSwitch) set(down bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.down = down
	if down {
		for _, c := range n.conns {
			c.Close()
		}
		n.conns = nil
	}
}

// TestIntegrationSpoolFullBackpressure cuts the publisher off Kafka until its
// spool is full, checks that Publish answers ErrBackpressure at once, then
// reconnects and checks that the spool drains, publishing works again and
// every acknowledged record is on the topic.
func TestIntegrationSpoolFullBackpressure(t *testing.T) {
	testenv.Short(t)
	broker, k := realKafka(t, "backpressure")
	cfg := testPublishConfig(t.TempDir())
	cfg.AckTimeout = 2 * time.Second
	cfg.BatchBytes = 256 << 10
	cfg.Spool.SegmentBytes = 384 << 10
	cfg.Spool.MaxBytes = 1 << 20
	sw := &netSwitch{}
	reg := prometheus.NewRegistry()
	p, err := New(Options{Kafka: k, Publish: cfg, Logger: testLogger(t), Registerer: reg,
		Transport: &kafka.Transport{Dial: sw.dial, ClientID: "kubesift-test"}})
	if err != nil {
		t.Fatal(err)
	}
	defer closePublisher(t, p)

	ids := publishAll(t, p, []*record.Record{auditRecord(0, "alice", 1500)}, 1) // connected and healthy
	sw.set(true)
	n, refusedAt := 1, 0
	for n < 100000 {
		var b []*record.Record
		for i := range 20 {
			b = append(b, auditRecord(n+i, fmt.Sprintf("u%d", i%5), 1500))
		}
		err := p.Publish(context.Background(), b)
		if errors.Is(err, collector.ErrBackpressure) {
			refusedAt = n
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range b {
			ids[r.ID] = true
		}
		n += 20
	}
	if refusedAt == 0 {
		t.Fatal("spool never filled")
	}
	st := p.Stats()
	t.Logf("spool full after %d records: %+v", refusedAt, st)
	if !st.Spooling || st.SpoolBytes > cfg.Spool.MaxBytes || st.SpoolBytes < cfg.Spool.MaxBytes/2 {
		t.Errorf("stats at refusal: %+v (max %d)", st, cfg.Spool.MaxBytes)
	}
	sw.set(false)
	testenv.WaitFor(t, "spool drained after reconnecting", time.Minute, func() bool { st := p.Stats(); return !st.Spooling && st.SpoolBytes == 0 })
	var more []*record.Record
	for i := range 100 {
		more = append(more, auditRecord(200000+i, "bob", 1500))
	}
	for id := range publishAll(t, p, more, 50) {
		ids[id] = true
	}
	if testenv.Metric(t, reg, "kubesift_collector_spooled_records_total") != testenv.Metric(t, reg, "kubesift_collector_spool_drained_records_total") {
		t.Errorf("spooled %v, drained %v", testenv.Metric(t, reg, "kubesift_collector_spooled_records_total"),
			testenv.Metric(t, reg, "kubesift_collector_spool_drained_records_total"))
	}
	closePublisher(t, p)
	dups := checkAllOnce(t, testenv.ReadTopic(t, broker, k.Topics.Audit), ids)
	t.Logf("%d records on the topic, %d duplicates", len(ids), dups)
}

// faultPause is how long the fault test keeps Kafka stopped:
// KUBESIFT_FAULT_PAUSE (a Go duration, or seconds), default 15s, short
// enough for every run; docs/testing.md shows a 60s outage.
func faultPause(t testing.TB) time.Duration {
	v := os.Getenv("KUBESIFT_FAULT_PAUSE")
	if v == "" {
		return 15 * time.Second
	}
	if d, err := time.ParseDuration(v); err == nil {
		return d
	}
	if s, err := strconv.Atoi(v); err == nil {
		return time.Duration(s) * time.Second
	}
	t.Fatalf("KUBESIFT_FAULT_PAUSE=%q: not a duration", v)
	return 0
}

// TestFaultKafkaStoppedMidStream stops the real broker while records stream
// in, keeps it down for KUBESIFT_FAULT_PAUSE, starts it again, and checks:
// no acknowledged record is lost, the spool grew and drained back to zero.
func TestFaultKafkaStoppedMidStream(t *testing.T) {
	testenv.Short(t)
	testenv.FaultLock(t) // no test using Kafka runs while it is down
	// testenv.Need, not KafkaBrokers: should KafkaBrokers ever take the
	// shared lock itself, calling it while holding the fault lock would
	// deadlock.
	brokers := strings.Split(testenv.Need(t, "kafka", "KUBESIFT_KAFKA_BROKERS")[0], ",")
	pause := faultPause(t)
	if err := testenv.Script(t, "kafka", "status"); err != nil {
		msg := fmt.Sprintf("the broker on %v is not run by hack/testenv/kafka.sh with KUBESIFT_TESTENV=%s, so this test cannot stop it", brokers, testenv.Dir())
		testenv.Missing(t, msg)
	}
	k := testKafkaConfig(brokers, fmt.Sprintf("it-fault-%d", time.Now().UnixNano()))
	testenv.CreateTopics(t, brokers[0], 4, k.Topics.Audit, k.Topics.Events, k.Topics.Objects, k.Topics.DLQ)
	up := true
	t.Cleanup(func() {
		// Whatever happened, leave the broker running for the next test.
		if !up {
			testenv.Script(t, "kafka", "start")
			testenv.Script(t, "kafka", "wait")
		}
	})

	cfg := testPublishConfig(t.TempDir())
	cfg.AckTimeout = 5 * time.Second
	cfg.Spool.RetryBackoff = 500 * time.Millisecond
	reg := prometheus.NewRegistry()
	p := newTestPublisher(t, k, cfg, reg)

	// The source: 30 records (~1 KiB) every 10 ms, about 3,000 records/s,
	// retrying a batch refused with ErrBackpressure like the tail would.
	var (
		mu           sync.Mutex
		acked        = map[string]bool{}
		backpressure atomic.Int64
		peak         atomic.Int64
	)
	stopSrc, srcDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(srcDone)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; {
			select {
			case <-stopSrc:
				return
			case <-tick.C:
			}
			batch := make([]*record.Record, 30)
			for i := range batch {
				batch[i] = auditRecord(n, fmt.Sprintf("user-%d", n%50), 1000)
				n++
			}
			for {
				err := p.Publish(context.Background(), batch)
				if err == nil {
					break
				}
				if !errors.Is(err, collector.ErrBackpressure) {
					t.Errorf("publish: %v", err)
					return
				}
				backpressure.Add(1)
				time.Sleep(50 * time.Millisecond) // a producer's pause before retrying, part of the load
			}
			mu.Lock()
			for _, r := range batch {
				acked[r.ID] = true
			}
			mu.Unlock()
		}
	}()
	stopSample := make(chan struct{})
	var sampled sync.WaitGroup
	sampled.Go(func() {
		for {
			select {
			case <-stopSample:
				return
			case <-time.After(50 * time.Millisecond):
			}
			peak.Store(max(peak.Load(), p.Stats().SpoolBytes))
		}
	})

	time.Sleep(3 * time.Second) // steady load before the outage: the fault's timeline, not a wait
	spooledBefore := testenv.Metric(t, reg, "kubesift_collector_spooled_records_total")
	tStop := time.Now()
	up = false
	if err := testenv.Script(t, "kafka", "stop"); err != nil {
		t.Fatalf("stop: %v", err)
	}
	time.Sleep(pause) // the outage itself
	if err := testenv.Script(t, "kafka", "start"); err != nil {
		t.Fatalf("start: %v", err)
	}
	if err := testenv.Script(t, "kafka", "wait"); err != nil {
		t.Fatalf("wait: %v", err)
	}
	up = true
	// Connections kafka-go pooled before the restart are dead; drop them so
	// no later test of this package (or -shuffle order) trips over one.
	if tr, ok := kafka.DefaultTransport.(*kafka.Transport); ok {
		tr.CloseIdleConnections()
	}
	tUp := time.Now()
	time.Sleep(3 * time.Second) // load on the restarted broker: the fault's timeline, not a wait
	close(stopSrc)
	<-srcDone
	waitDrained(t, p)
	drainTime := time.Since(tUp)
	close(stopSample)
	sampled.Wait()
	closePublisher(t, p)

	mu.Lock()
	defer mu.Unlock()
	msgs := testenv.ReadTopic(t, brokers[0], k.Topics.Audit)
	dups := checkAllOnce(t, msgs, acked)
	spooled := testenv.Metric(t, reg, "kubesift_collector_spooled_records_total")
	drained := testenv.Metric(t, reg, "kubesift_collector_spool_drained_records_total")
	t.Logf("outage %s (pause %s): %d records acknowledged upstream, all %d found on %s (%d duplicates); "+
		"spooled %v (%v before the stop), drained %v; spool peak %d bytes (%.1f MiB); spool empty %s after the broker was ready; "+
		"%d backpressure refusals; spool bytes now %v",
		tUp.Sub(tStop).Round(time.Millisecond), pause, len(acked), len(acked), k.Topics.Audit, dups,
		spooled, spooledBefore, drained, peak.Load(), float64(peak.Load())/(1<<20), drainTime.Round(time.Millisecond),
		backpressure.Load(), testenv.Metric(t, reg, "kubesift_collector_spool_bytes"))
	if spooled == 0 || peak.Load() == 0 {
		t.Errorf("the spool never grew (spooled %v, peak %d)", spooled, peak.Load())
	}
	if drained == 0 || testenv.Metric(t, reg, "kubesift_collector_spool_bytes") != 0 {
		t.Errorf("the spool did not drain (drained %v)", drained)
	}
}

// BenchmarkPublishRealBroker publishes ~1.5 KB audit records to the real
// broker from several concurrent sources and reports records/s, MB/s and the
// process's peak RSS. KUBESIFT_BENCH_SOURCES (default 4) and
// KUBESIFT_BENCH_BATCH (default 500) set the shape,
// KUBESIFT_BENCH_IN_FLIGHT_MIB, KUBESIFT_BENCH_COMPRESSION and
// KUBESIFT_BENCH_BATCH_TIMEOUT override publish.max_in_flight_bytes,
// publish.compression and publish.batch_timeout.
func BenchmarkPublishRealBroker(b *testing.B) {
	_, k := realKafka(b, "bench")
	cfg := config.Default().Publish
	cfg.Spool.Dir = b.TempDir()
	if v := os.Getenv("KUBESIFT_BENCH_COMPRESSION"); v != "" {
		cfg.Compression = v
	}
	if d, err := time.ParseDuration(os.Getenv("KUBESIFT_BENCH_BATCH_TIMEOUT")); err == nil {
		cfg.BatchTimeout = d
	}
	if v := envInt("KUBESIFT_BENCH_IN_FLIGHT_MIB", 0); v > 0 {
		cfg.MaxInFlightBytes = int64(v) << 20
	}
	reg := prometheus.NewRegistry()
	p := newTestPublisher(b, k, cfg, reg)
	defer closePublisher(b, p)

	const distinct = 4096
	recs := make([]*record.Record, distinct)
	for i := range recs {
		recs[i] = auditRecord(i, fmt.Sprintf("user-%d", i%200), 1500)
	}
	v, _ := record.Marshal(recs[0])
	sources, batch := envInt("KUBESIFT_BENCH_SOURCES", 4), envInt("KUBESIFT_BENCH_BATCH", 500)

	b.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range sources {
		wg.Go(func() {
			buf := make([]*record.Record, 0, batch)
			for {
				i := next.Add(int64(batch)) - int64(batch)
				if i >= int64(b.N) {
					return
				}
				buf = buf[:0]
				for j := i; j < min(i+int64(batch), int64(b.N)); j++ {
					buf = append(buf, recs[j%distinct])
				}
				for {
					err := p.Publish(context.Background(), buf)
					if err == nil {
						break
					}
					if !errors.Is(err, collector.ErrBackpressure) {
						b.Error(err)
						return
					}
					time.Sleep(10 * time.Millisecond) // a producer's pause before retrying
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "records/s")
	b.ReportMetric(float64(b.N)*float64(len(v))/el.Seconds()/1e6, "MB/s")
	b.ReportMetric(float64(len(v)), "B/record")
	b.ReportMetric(testenv.Metric(b, reg, "kubesift_collector_spooled_records_total"), "spooled")
	if rss := peakRSS(); rss > 0 {
		b.ReportMetric(float64(rss)/(1<<20), "peak-RSS-MiB")
	}
}

// BenchmarkDrainRealBroker measures how fast a full spool drains into the
// real broker: b.N ~1.5 KB records are spooled while the publisher is cut off
// (netSwitch), then it is reconnected and timed until the spool is empty.
func BenchmarkDrainRealBroker(b *testing.B) {
	_, k := realKafka(b, "drain")
	cfg := config.Default().Publish
	cfg.Spool.Dir = b.TempDir()
	cfg.Spool.MaxBytes = 8 << 30
	cfg.AckTimeout = 2 * time.Second
	cfg.Spool.RetryBackoff = 50 * time.Millisecond
	sw := &netSwitch{}
	reg := prometheus.NewRegistry()
	p, err := New(Options{Kafka: k, Publish: cfg, Logger: testLogger(b), Registerer: reg,
		Transport: &kafka.Transport{Dial: sw.dial, ClientID: "kubesift-bench"}})
	if err != nil {
		b.Fatal(err)
	}
	defer closePublisher(b, p)
	recs := make([]*record.Record, 4096)
	for i := range recs {
		recs[i] = auditRecord(i, fmt.Sprintf("user-%d", i%200), 1500)
	}
	sw.set(true)
	for i := 0; i < b.N; i += 500 {
		batch := make([]*record.Record, 0, 500)
		for j := i; j < min(i+500, b.N); j++ {
			batch = append(batch, recs[j%len(recs)])
		}
		if err := p.Publish(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	if got := testenv.Metric(b, reg, "kubesift_collector_spooled_records_total"); got != float64(b.N) {
		b.Fatalf("spooled %v of %d", got, b.N)
	}
	b.ResetTimer()
	start := time.Now()
	sw.set(false)
	testenv.WaitFor(b, "spool drained", 10*time.Minute, func() bool { return p.Stats().SpoolBytes == 0 })
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "records/s")
	if rss := peakRSS(); rss > 0 {
		b.ReportMetric(float64(rss)/(1<<20), "peak-RSS-MiB")
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// peakRSS is the process's peak resident set (VmHWM), or 0.
func peakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// TestIntegrationRefusedRecords: the real broker refuses records larger than
// the audit topic's max.message.bytes (a topic config); they go to the
// dead-letter topic and the drain goes on with the rest.
func TestIntegrationRefusedRecords(t *testing.T) {
	testenv.Short(t)
	broker, k := realKafka(t, "refused")
	const maxMessage = 6000
	k.Topics.Audit += ".small"
	createTopicWithConfig(t, broker, k.Topics.Audit, 4, map[string]string{"max.message.bytes": strconv.Itoa(maxMessage)})
	cfg := testPublishConfig(t.TempDir())
	cfg.Compression = "none" // the padding would compress below the limit
	reg := prometheus.NewRegistry()
	p := newTestPublisher(t, k, cfg, reg)
	defer closePublisher(t, p)
	checkRefusals(t, broker, p, reg, k.Topics.Audit, k.Topics.DLQ, maxMessage)
}
