package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/pipeline/pipelinetest"
	"github.com/kubesift/kubesift/record"
)

// procEnv is one processor test's private slice of the shared test ground:
// its own topics (audit input, alerts, dead letters), consumer group, data
// streams and alerts index, all named after the test and the time, and all
// removed when the test ends.
type procEnv struct {
	t          testing.TB
	brokers    []string
	esURL      string
	run        string // unique, lowercase: record IDs and names derive from it
	topic      string
	alerts     string
	dlq        string
	group      string
	stream     string // audit data stream
	alertsIdx  string
	partitions int
	dir        string
	tr         *kafka.Transport
}

func newProcEnv(t testing.TB, name string, brokers []string, esURL string, partitions int) *procEnv {
	t.Helper()
	run := fmt.Sprintf("%s%s", name, strconv.FormatInt(time.Now().UnixNano(), 36))
	e := &procEnv{
		t: t, brokers: brokers, esURL: strings.TrimRight(esURL, "/"), run: run,
		topic: "it-proc-" + run, alerts: "it-proc-" + run + "-alerts", dlq: "it-proc-" + run + "-dlq",
		group: "it-proc-" + run, stream: "logs-kubesift.audit-" + run, alertsIdx: "kubesift-alerts-" + run,
		partitions: partitions, dir: t.TempDir(),
		// Its own transport: kafka-go's default one pools connections
		// process-wide, and one left from before a broker restart fails.
		tr: &kafka.Transport{},
	}
	e.createTopics(map[string]int{e.topic: partitions, e.alerts: partitions, e.dlq: 1})
	t.Cleanup(e.cleanup)
	return e
}

func (e *procEnv) client() *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(e.brokers...), Timeout: 20 * time.Second, Transport: e.tr}
}

func (e *procEnv) createTopics(topics map[string]int) {
	e.t.Helper()
	var cfgs []kafka.TopicConfig
	for tp, n := range topics {
		cfgs = append(cfgs, kafka.TopicConfig{Topic: tp, NumPartitions: n})
	}
	testenv.CreateTopicConfigs(e.t, e.brokers[0], cfgs...)
}

// cleanup deletes the test's topics, data streams, alerts index and
// templates, so repeated runs do not fill the shared servers.
func (e *procEnv) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = e.client().DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{e.topic, e.alerts, e.dlq}})
	for _, p := range []string{
		"/_data_stream/" + e.stream, "/_data_stream/logs-kubesift.events-" + e.run,
		"/_data_stream/logs-kubesift.posture-" + e.run, "/" + e.alertsIdx,
		"/_index_template/kubesift-" + e.stream, "/_index_template/kubesift-logs-kubesift.events-" + e.run,
		"/_index_template/kubesift-logs-kubesift.posture-" + e.run, "/_index_template/kubesift-" + e.alertsIdx,
	} {
		_, _, _ = e.es(ctx, http.MethodDelete, p, nil)
	}
	e.tr.CloseIdleConnections()
}

// config writes a processor configuration for this test, serving metrics on
// listen, and returns its path. extra is appended under processor:.
func (e *procEnv) config(name, listen, extraProcessor string) string {
	e.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "log: {level: info, format: json}\n")
	fmt.Fprintf(&b, "server: {listen: %q}\n", listen)
	fmt.Fprintf(&b, "kafka:\n  brokers: [%s]\n  client_id: kubesift-it-%s\n", quoteAll(e.brokers), name)
	fmt.Fprintf(&b, "  topics: {audit: %q, events: %q, objects: %q, alerts: %q, dlq: %q}\n",
		e.topic, e.topic+"-events", e.topic+"-objects", e.alerts, e.dlq)
	fmt.Fprintf(&b, "processor:\n  group_id: %q\n  topics: [%q]\n", e.group, e.topic)
	fmt.Fprintf(&b, "  session_timeout: 6s\n  heartbeat_interval: 500ms\n  rebalance_timeout: 20s\n  drain_timeout: 10s\n  commit_interval: 500ms\n")
	b.WriteString(extraProcessor)
	fmt.Fprintf(&b, "sink:\n  elasticsearch:\n    addresses: [%q]\n", e.esURL)
	fmt.Fprintf(&b, "    streams: {audit: %q, events: %q, posture: %q}\n", e.stream,
		"logs-kubesift.events-"+e.run, "logs-kubesift.posture-"+e.run)
	fmt.Fprintf(&b, "    alerts_index: %q\n    flush_interval: 250ms\n", e.alertsIdx)
	path := filepath.Join(e.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// startProcessor runs `kubesift process` as a child process and waits until
// it serves /readyz (it has joined the group). It returns the process and
// its metrics address.
func (e *procEnv) startProcessor(name string, setup bool, extraProcessor string) (*testenv.Proc, string) {
	e.t.Helper()
	addr := testenv.FreeAddr(e.t)
	args := []string{"process", "-c", e.config(name, addr, extraProcessor)}
	if setup {
		args = append(args, "--setup")
	}
	p := testenv.Start(e.t, name, nil, args...)
	testenv.WaitForNil(e.t, name+" ready", 90*time.Second, func() error {
		res, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		if p.Exited() {
			e.t.Fatalf("%s exited before it was ready:\n%s", name, testenv.Tail(p.LogPath, 30))
		}
		return fmt.Errorf("its log ends:\n%s", testenv.Tail(p.LogPath, 30))
	})
	return p, addr
}

// record is message n of the test's input.
func (e *procEnv) message(n int) kafka.Message {
	r := pipelinetest.Audit(e.run, n)
	return recordMessage(e.t, r)
}

func recordMessage(t testing.TB, r *record.Record) kafka.Message {
	b, err := record.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var hs []kafka.Header
	for _, h := range record.Headers(r) {
		hs = append(hs, kafka.Header{Key: h.Key, Value: h.Value})
	}
	return kafka.Message{Key: []byte(r.Key), Value: b, Headers: hs}
}

// produce writes records [from, to) of the run (and extra messages) to the
// input topic with acks=all, keyed like the collector (cluster/user,
// murmur2), so they spread over every partition.
func (e *procEnv) produce(from, to int, extra ...kafka.Message) {
	e.t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(e.brokers...), Topic: e.topic, Balancer: kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: 5 * time.Millisecond, BatchSize: 2000, BatchBytes: 4 << 20,
		Transport: e.tr}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const chunk = 5000
	for i := from; i < to; i += chunk {
		msgs := make([]kafka.Message, 0, chunk)
		for n := i; n < min(i+chunk, to); n++ {
			msgs = append(msgs, e.message(n))
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			e.t.Fatalf("produce: %s", testenv.ProduceError(err))
		}
	}
	if len(extra) > 0 {
		if err := w.WriteMessages(ctx, extra...); err != nil {
			e.t.Fatalf("produce: %s", testenv.ProduceError(err))
		}
	}
}

// es performs one request against Elasticsearch.
func (e *procEnv) es(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, e.esURL+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, b, err
}

// count refreshes index and returns its document count (-1 while it does
// not exist yet).
func (e *procEnv) count(index string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if st, _, err := e.es(ctx, http.MethodPost, "/"+index+"/_refresh", nil); err != nil {
		return 0, err
	} else if st == http.StatusNotFound {
		return -1, nil
	}
	st, b, err := e.es(ctx, http.MethodGet, "/"+index+"/_count", nil)
	if err != nil {
		return 0, err
	}
	if st != http.StatusOK {
		return 0, fmt.Errorf("_count %s: HTTP %d: %s", index, st, b)
	}
	var c struct {
		Count int `json:"count"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return 0, err
	}
	return c.Count, nil
}

// waitCounts waits until the audit stream holds records documents and the
// alerts index alerts documents, logging progress; it fails on timeout.
func (e *procEnv) waitCounts(records, alerts int, timeout time.Duration) {
	e.t.Helper()
	last := time.Now()
	testenv.WaitForNil(e.t, "every record and alert indexed", timeout, func() error {
		r, rerr := e.count(e.stream)
		a, aerr := e.count(e.alertsIdx)
		if rerr == nil && aerr == nil && r == records && a == alerts {
			return nil
		}
		state := fmt.Errorf("%d/%d records, %d/%d alerts (errors: %v %v)", r, records, a, alerts, rerr, aerr)
		if time.Since(last) > 15*time.Second {
			e.t.Logf("waiting: %v", state)
			last = time.Now()
		}
		return state
	})
}

// waitSettled waits until no processor at addrs holds a document for
// Elasticsearch (its sink's queued bytes, which count documents accepted
// and not yet done, are 0), so a count made after it is final: with the
// offsets committed to the end, nothing else can still be written.
func (e *procEnv) waitSettled(addrs ...string) {
	e.t.Helper()
	const queued = "kubesift_sink_es_queued_bytes"
	testenv.WaitForNil(e.t, "nothing queued for Elasticsearch at "+strings.Join(addrs, ", "), time.Minute, func() error {
		for _, a := range addrs {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			m, err := testenv.Metrics(ctx, a)
			cancel()
			if err != nil {
				return fmt.Errorf("%s: %w", a, err)
			}
			v, ok := m[queued]
			if !ok {
				// Absent, the wait would pass without showing anything.
				e.t.Fatalf("%s exposes no %s", a, queued)
			}
			if v != 0 {
				return fmt.Errorf("%s: %v bytes queued", a, v)
			}
		}
		return nil
	})
}

// committedToEnd reports whether the group has committed the end of every
// partition of the input topic.
func (e *procEnv) committedToEnd() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := e.client()
	var ps []int
	var reqs []kafka.OffsetRequest
	for i := range e.partitions {
		ps = append(ps, i)
		reqs = append(reqs, kafka.LastOffsetOf(i))
	}
	ends, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{e.topic: reqs}})
	if err != nil {
		return false
	}
	com, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: e.group, Topics: map[string][]int{e.topic: ps}})
	if err != nil {
		return false
	}
	end := map[int]int64{}
	for _, p := range ends.Topics[e.topic] {
		end[p.Partition] = p.LastOffset
	}
	for _, p := range com.Topics[e.topic] {
		if p.CommittedOffset != end[p.Partition] {
			return false
		}
	}
	return len(com.Topics[e.topic]) == e.partitions
}

// readTopic reads every message of topic up to its current end.
func (e *procEnv) readTopic(topic string) []kafka.Message {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := e.client()
	meta, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(meta.Topics) != 1 {
		e.t.Fatalf("metadata of %s: %v", topic, err)
	}
	var (
		mu  sync.Mutex
		out []kafka.Message
		wg  sync.WaitGroup
	)
	for _, p := range meta.Topics[0].Partitions {
		wg.Add(1)
		go func(part int) {
			defer wg.Done()
			offs, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
				topic: {kafka.FirstOffsetOf(part), kafka.LastOffsetOf(part)}}})
			if err != nil {
				e.t.Errorf("offsets of %s/%d: %v", topic, part, err)
				return
			}
			var first, last int64
			for _, po := range offs.Topics[topic] {
				if po.Partition == part {
					first, last = po.FirstOffset, po.LastOffset
				}
			}
			if last <= first {
				return
			}
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: e.brokers, Topic: topic, Partition: part,
				MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 200 * time.Millisecond})
			defer r.Close()
			if err := r.SetOffset(first); err != nil {
				e.t.Errorf("%s/%d: %v", topic, part, err)
				return
			}
			var msgs []kafka.Message
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					e.t.Errorf("read %s/%d at %d of [%d,%d): %v", topic, part, len(msgs), first, last, err)
					return
				}
				msgs = append(msgs, m)
				if m.Offset+1 >= last {
					break
				}
			}
			mu.Lock()
			out = append(out, msgs...)
			mu.Unlock()
		}(p.ID)
	}
	wg.Wait()
	return out
}

func procHeader(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// checkAlertsTopic checks that the alerts topic holds every expected alert
// (distinct kubesift-id; re-deliveries may add copies of the same alert,
// which the notifier dedups by ID) with the notifier's key, and returns the
// distinct and total counts.
func (e *procEnv) checkAlertsTopic(want int) (distinct, total int) {
	e.t.Helper()
	ids := map[string]bool{}
	msgs := e.readTopic(e.alerts)
	for _, m := range msgs {
		id := procHeader(m, "kubesift-id")
		ids[id] = true
		var a struct {
			ID      string `json:"id"`
			RuleID  string `json:"rule_id"`
			Cluster string `json:"cluster"`
		}
		if err := json.Unmarshal(m.Value, &a); err != nil || a.ID != id || string(m.Key) != a.Cluster+"/"+a.RuleID {
			e.t.Errorf("alert message %s: key %q, value %.200s (%v)", id, m.Key, m.Value, err)
		}
	}
	if len(ids) != want {
		e.t.Errorf("alerts topic: %d distinct alerts (%d messages), want %d", len(ids), len(msgs), want)
	}
	return len(ids), len(msgs)
}

// metric scrapes one summed metric from a processor.
func procMetric(addr, name string, labels ...string) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := testenv.Metrics(ctx, addr)
	if err != nil {
		return -1
	}
	return testenv.Sum(m, name, labels...)
}
