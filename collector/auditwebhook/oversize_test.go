package auditwebhook

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/collector/publish/publishtest"
	"github.com/kubesift/kubesift/collector/redact"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// startPublishing runs a Receiver like start, but publishing through a real
// publisher to an in-process Kafka (publishtest), with the default size
// policy and publish limits. It returns the env and the Kafka configuration.
func startPublishing(t *testing.T) (*env, config.KafkaConfig) {
	t.Helper()
	reg := prometheus.NewRegistry()
	pub, k := publishtest.New(t, "wh", reg)
	return startWith(t, pub.For(Source), reg), k
}

// One item too large for Kafka — a request line of a megabyte, which
// kube-apiserver accepts and logs at Metadata level — must not cost its
// neighbours: the batch is answered 200, the neighbours are on the topic,
// and the big one is there cut to fit or on the dead-letter topic. An
// error here would make kube-apiserver retry the batch, and fail, forever.
func TestOneOversizedItemDoesNotFailItsBatch(t *testing.T) {
	hugeURI := event("big") // the same event, its requestURI 1.05 MB long
	hugeURI = strings.Replace(hugeURI, `"requestURI":"/api/v1/namespaces/default/pods"`,
		`"requestURI":"/api/v1/namespaces/default/pods?labelSelector=`+strings.Repeat("a", 1_050_000)+`"`, 1)
	hugeID := strings.Replace(event("x"), `"auditID":"x"`, `"auditID":"`+strings.Repeat("i", 1_100_000)+`"`, 1)
	tests := []struct {
		name     string
		item     string
		id       string
		wantDead bool // dead-lettered rather than cut to fit
	}{
		{"requestURI cut to fit", hugeURI, "big:ResponseComplete", false},
		{"identity too large: dead-lettered", hugeID, strings.Repeat("i", 1_100_000) + ":ResponseComplete", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, k := startPublishing(t)
			resp := e.post(e.client(&e.pki.goodClient), eventList(event("before"), tc.item, event("after")))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", resp.StatusCode)
			}
			// 200 means durable: on Kafka, or in the spool until it drains.
			got := map[string]record.Record{}
			var dlq []kafka.Message
			testenv.WaitFor(t, "the batch on Kafka", 20*time.Second, func() bool {
				for _, m := range testenv.ReadTopic(t, k.Brokers[0], k.Topics.Audit) {
					r, err := record.Unmarshal(m.Value)
					if err != nil {
						t.Fatal(err)
					}
					got[r.ID] = *r
				}
				dlq = testenv.ReadTopic(t, k.Brokers[0], k.Topics.DLQ)
				return len(got)+len(dlq) >= 3
			})
			for _, id := range []string{"before:ResponseComplete", "after:ResponseComplete"} {
				if _, ok := got[id]; !ok {
					t.Errorf("neighbour %s not on the topic", id)
				}
			}
			if tc.wantDead {
				if len(dlq) != 1 || len(got) != 2 {
					t.Fatalf("%d dead letters and %d records, want 1 and 2", len(dlq), len(got))
				}
				for _, h := range dlq[0].Headers {
					if h.Key == record.HeaderID && !strings.HasPrefix(tc.id, string(h.Value)) {
						t.Errorf("dead letter names %.40s…, want the record", h.Value)
					}
				}
				return
			}
			big, ok := got[tc.id]
			if !ok || len(dlq) != 0 {
				t.Fatalf("big record on the topic: %v; %d dead letters", ok, len(dlq))
			}
			if !big.Flags.Truncated || !strings.Contains(big.Audit.Annotations[redact.TruncatedFieldsAnnotation], "requestURI=") {
				t.Errorf("big record not marked as cut: flags %+v, annotations %v", big.Flags, big.Audit.Annotations)
			}
		})
	}
}
