package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/pipeline/pipelinetest"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink"
)

// Unit tests run the real kafka-go consumer group and writers against
// franz-go's kfake, an in-process Kafka; the sink is a fake whose behaviour
// each test chooses. The same paths run against the real broker and the real
// Elasticsearch in test/integration/process_*_test.go.

const (
	topicAudit  = "unit.audit"
	topicEvents = "unit.events"
	topicAlerts = "unit.alerts"
	topicDLQ    = "unit.dlq"
)

func fakeKafka(t *testing.T, partitions int, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	opts = append([]kfake.Opt{kfake.NumBrokers(1),
		kfake.SeedTopics(int32(partitions), topicAudit, topicEvents, topicAlerts, topicDLQ)}, opts...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func testKafka(brokers []string) config.KafkaConfig {
	k := config.Default().Kafka
	k.Brokers = brokers
	k.Topics = config.TopicsConfig{Audit: topicAudit, Events: topicEvents, Objects: "unit.objects", Alerts: topicAlerts, DLQ: topicDLQ}
	return k
}

func testProcessorConfig(group string) config.ProcessorConfig {
	c := config.Default().Processor
	c.GroupID = group
	c.SessionTimeout = 6 * time.Second
	c.HeartbeatInterval = 300 * time.Millisecond
	c.RebalanceTimeout = 10 * time.Second
	c.DrainTimeout = 5 * time.Second
	c.CommitInterval = 100 * time.Millisecond
	c.FetchMaxWait = 100 * time.Millisecond
	c.Produce.RetryBackoff = 50 * time.Millisecond
	c.Produce.RetryMaxBackoff = 500 * time.Millisecond
	return c
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// fakeDocs builds documents as JSON of the record ID; records whose ID is in
// bad cannot be built.
type fakeDocs struct{ bad map[string]bool }

func (d fakeDocs) Record(r *record.Record) (sink.Doc, error) {
	if d.bad[r.ID] {
		return sink.Doc{}, errors.New("kubernetes.audit.objectRef.name: not a string")
	}
	return sink.Doc{Index: "records", ID: r.ID, Body: []byte(`{"id":"` + r.ID + `"}`)}, nil
}

func (d fakeDocs) Alert(a *rules.Alert) (sink.Doc, error) {
	return sink.Doc{Index: "alerts", ID: a.ID, Body: []byte(`{"id":"` + a.ID + `"}`)}, nil
}

// fakeRules raises one alert for every privileged record of the generator.
type fakeRules struct{}

func (fakeRules) Eval(r *record.Record) []rules.Alert {
	if r.Audit == nil || r.Audit.Verb != "create" {
		return nil
	}
	return []rules.Alert{{ID: "privileged-container:" + r.ID, RuleID: "privileged-container", Title: "Privileged container",
		Severity: rules.SeverityHigh, RecordID: r.ID, Source: r.Source, Cluster: r.Cluster.Name, Time: r.EventTime}}
}

// fakeWriter is an in-memory sink.Writer. Done callbacks run on a goroutine
// of the writer (as in the real one), after delay; reject lists IDs it
// refuses; while gate is non-nil Add blocks until it is closed. Like the
// Elasticsearch and NDJSON writers, Add refuses a document once its ctx has
// ended, room or not. afterAdd runs on Add's stack once a document is
// accepted: what the caller does next waits for it.
type fakeWriter struct {
	mu       sync.Mutex
	docs     map[string]int // ID -> times written
	reject   map[string]string
	delay    time.Duration
	gate     chan struct{}
	hold     map[string]chan struct{} // ID -> done waits for this channel
	queue    chan func()
	closed   bool
	wg       sync.WaitGroup
	adds     int
	onWrite  func(id string)
	afterAdd func(id string)
}

func newFakeWriter() *fakeWriter {
	w := &fakeWriter{docs: map[string]int{}, reject: map[string]string{}, hold: map[string]chan struct{}{}, queue: make(chan func(), 1024)}
	// Four workers, like a bulk writer's concurrent requests: done callbacks
	// arrive out of order.
	for range 4 {
		go func() {
			for f := range w.queue {
				f()
			}
		}()
	}
	return w
}

func (w *fakeWriter) Add(ctx context.Context, d sink.Doc, done func(sink.Result)) error {
	w.mu.Lock()
	gate := w.gate
	w.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	w.adds++
	hold := w.hold[d.ID]
	reason, rejected := w.reject[d.ID]
	delay := w.delay
	afterAdd := w.afterAdd
	w.wg.Add(1)
	w.mu.Unlock()
	if afterAdd != nil {
		defer afterAdd(d.ID)
	}
	w.queue <- func() {
		defer w.wg.Done()
		if delay > 0 {
			time.Sleep(delay)
		}
		if hold != nil {
			<-hold
		}
		if rejected {
			done(sink.Result{Status: sink.Rejected, Reason: reason})
			return
		}
		w.mu.Lock()
		w.docs[d.ID]++
		n := w.docs[d.ID]
		onWrite := w.onWrite
		w.mu.Unlock()
		if onWrite != nil {
			onWrite(d.ID)
		}
		if n > 1 {
			done(sink.Result{Status: sink.Duplicate})
			return
		}
		done(sink.Result{Status: sink.Indexed})
	}
	return nil
}

func (w *fakeWriter) Close(ctx context.Context) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	idle := make(chan struct{})
	go func() { w.wg.Wait(); close(idle) }()
	select {
	case <-idle:
		close(w.queue)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *fakeWriter) count(prefix string) (distinct, total int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, n := range w.docs {
		if strings.HasPrefix(id, prefix) {
			distinct++
			total += n
		}
	}
	return distinct, total
}

// produce writes records 0..n-1 of run (plus extra raw values) to topic.
func produce(t testing.TB, brokers []string, topic, run string, n int, extra ...[]byte) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Balancer: kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: 5 * time.Millisecond, BatchSize: 1000}
	defer w.Close()
	var msgs []kafka.Message
	for i := range n {
		r := pipelinetest.Audit(run, i)
		b, err := record.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var hs []kafka.Header
		for _, h := range record.Headers(r) {
			hs = append(hs, kafka.Header{Key: h.Key, Value: h.Value})
		}
		msgs = append(msgs, kafka.Message{Key: []byte(r.Key), Value: b, Headers: hs})
	}
	for i, v := range extra {
		msgs = append(msgs, kafka.Message{Key: []byte(fmt.Sprintf("poison-%d", i)), Value: v})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := 0; i < len(msgs); i += 1000 {
		if err := w.WriteMessages(ctx, msgs[i:min(i+1000, len(msgs))]...); err != nil {
			t.Fatal(err)
		}
	}
}

// startProcessor runs a processor until the test ends (or stop is called).
func startProcessor(t *testing.T, brokers []string, pc config.ProcessorConfig, w sink.Writer, docs Documents) (p *Processor, reg *prometheus.Registry, stop func() error) {
	t.Helper()
	return startProcessorWith(t, brokers, pc, fakeRules{}, w, docs)
}

// startProcessorWith is startProcessor evaluating with ev.
func startProcessorWith(t *testing.T, brokers []string, pc config.ProcessorConfig, ev Evaluator, w sink.Writer, docs Documents) (p *Processor, reg *prometheus.Registry, stop func() error) {
	t.Helper()
	reg = prometheus.NewRegistry()
	p, err := New(Options{Kafka: testKafka(brokers), Processor: pc, Rules: ev, Documents: docs,
		Writer: w, Registerer: reg, Logger: testLogger(t), Transport: &kafka.Transport{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() { cancel(); runErr = <-errc })
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return p, reg, stop
}

// commitPassAfter makes the processor commit once more and waits until it
// has: it produces records of run (too few to alert) and waits until the
// partitions other than except are committed to their new ends. The
// committer covers every partition in each pass, so whatever was committable
// on except when the test called this is committed by then too. It returns
// the new end offsets.
func commitPassAfter(t *testing.T, brokers []string, group, run string, parts, except int) map[int]int64 {
	t.Helper()
	before := endOffsets(t, brokers, topicAudit, parts)
	produce(t, brokers, topicAudit, run, pipelinetest.PrivilegedEvery-1)
	ends := endOffsets(t, brokers, topicAudit, parts)
	moved := false
	for p := range parts {
		moved = moved || p != except && ends[p] > before[p]
	}
	if !moved {
		t.Fatalf("no record of %s landed beside partition %d", run, except)
	}
	testenv.WaitFor(t, "a commit pass over the records of "+run, 30*time.Second, func() bool {
		got := committed(t, brokers, group, topicAudit, parts)
		for p := range parts {
			if p != except && got[p] != ends[p] {
				return false
			}
		}
		return true
	})
	return ends
}

// committed returns the group's committed offsets of topic, by partition.
func committed(t testing.TB, brokers []string, group, topic string, partitions int) map[int]int64 {
	t.Helper()
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: &kafka.Transport{}}
	var ps []int
	for i := range partitions {
		ps = append(ps, i)
	}
	// A broker short of CPU answers OffsetFetch with a transient error
	// (BrokerNotAvailable, CoordinatorLoadInProgress) now and then; ask
	// again rather than fail the test on the broker's hiccup.
	var res *kafka.OffsetFetchResponse
	if err := testenv.Await(30*time.Second, func() error {
		var err error
		res, err = c.OffsetFetch(context.Background(), &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ps}})
		if err == nil {
			err = res.Error
		}
		return err
	}); err != nil {
		t.Fatalf("offset fetch: %v", err)
	}
	out := map[int]int64{}
	for _, p := range res.Topics[topic] {
		out[p.Partition] = p.CommittedOffset
	}
	return out
}

// endOffsets returns the high watermark of each partition of topic.
func endOffsets(t testing.TB, brokers []string, topic string, partitions int) map[int]int64 {
	t.Helper()
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: &kafka.Transport{}}
	var reqs []kafka.OffsetRequest
	for i := range partitions {
		reqs = append(reqs, kafka.LastOffsetOf(i))
	}
	res, err := c.ListOffsets(context.Background(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		t.Fatalf("list offsets: %v", err)
	}
	out := map[int]int64{}
	for _, p := range res.Topics[topic] {
		out[p.Partition] = p.LastOffset
	}
	return out
}

// readAll reads every message of topic up to its current end.
func readAll(t testing.TB, brokers []string, topic string, partitions int) []kafka.Message {
	t.Helper()
	ends := endOffsets(t, brokers, topic, partitions)
	var out []kafka.Message
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for p := range partitions {
		if ends[p] == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p, MaxWait: 100 * time.Millisecond})
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				t.Fatalf("read %s/%d: %v", topic, p, err)
			}
			out = append(out, m)
			if m.Offset+1 >= ends[p] {
				break
			}
		}
		r.Close()
	}
	return out
}

// series counts the series of a metric family.
func series(t testing.TB, reg *prometheus.Registry, name string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}
