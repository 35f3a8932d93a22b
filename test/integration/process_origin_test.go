package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// TestProcessNetworkOrigin (real Kafka and Elasticsearch): `kubesift
// process` with a network list and GeoIP databases enriches audit records
// on their way from Kafka to Elasticsearch — source.geo, source.as and
// kubesift.source searchable and aggregatable there — raises the IOC rule's
// alert, and takes a rewritten list while it runs, keeping the old one when
// the new file is broken.
func TestProcessNetworkOrigin(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	e := newProcEnv(t, "origin", brokers, testenv.ElasticsearchURL(t), 1)
	ioc := filepath.Join(e.dir, "ioc.txt")
	writeFile(t, ioc, "# test IOC feed\n203.0.113.0/28\n")
	city, asn := filepath.Join(e.dir, "city.mmdb"), filepath.Join(e.dir, "asn.mmdb")
	testenv.WriteMMDB(t, city, "GeoLite2-City", map[string]map[string]any{
		"203.0.113.0/24": {"country": map[string]any{"iso_code": "NL", "names": map[string]any{"en": "Netherlands"}},
			"city": map[string]any{"names": map[string]any{"en": "Amsterdam"}}, "location": map[string]any{"latitude": 52.37, "longitude": 4.89}},
		"198.51.100.0/24": {"country": map[string]any{"iso_code": "US", "names": map[string]any{"en": "United States"}}},
	})
	testenv.WriteMMDB(t, asn, "GeoLite2-ASN", map[string]map[string]any{
		"203.0.113.0/24":  {"autonomous_system_number": 64500, "autonomous_system_organization": "Example Hosting"},
		"198.51.100.0/24": {"autonomous_system_number": 64501, "autonomous_system_organization": "Example Telecom"},
	})
	network := fmt.Sprintf("  network:\n    cluster_cidrs: [10.244.0.0/16]\n"+
		"    lists:\n      - {name: ioc, files: [%q], reload_interval: 100ms}\n"+
		"    geoip: {city_db: %q, asn_db: %q}\n", ioc, city, asn)
	p, addr := e.startProcessor("proc-origin", true, network)
	defer func() {
		if err := p.Stop(30 * time.Second); err != nil {
			t.Errorf("processor stop: %v", err)
		}
	}()

	n := 0
	send := func(user string, ips ...string) {
		t.Helper()
		n++
		e.produceRecords(originRecord(t, e.run, n, user, ips...))
	}
	send("alice", "203.0.113.5")                                    // on the IOC list
	send("alice", "198.51.100.9")                                   // public, not listed
	send("system:serviceaccount:kube-system:default", "10.244.3.4") // a pod
	send("system:node:worker-1", "127.0.0.1")
	// Alerts: the IOC rule's, and user-from-new-network's for each of
	// alice's two public networks (a user's first public network alerts too).
	e.waitCounts(4, 3, 2*time.Minute)

	// Searchable and aggregatable in the real mapping.
	aggs := e.aggregate(t, `{"size":0,"aggs":{
		"class":{"terms":{"field":"kubesift.source.class"}},
		"lists":{"terms":{"field":"kubesift.source.lists"}},
		"country":{"terms":{"field":"source.geo.country_iso_code"}},
		"asn":{"terms":{"field":"source.as.number"}},
		"org":{"terms":{"field":"source.as.organization.name"}},
		"near":{"filter":{"geo_distance":{"distance":"50km","source.geo.location":{"lat":52.3,"lon":4.9}}}}}}`)
	for name, want := range map[string]map[string]int{
		"class":   {"public": 2, "cluster": 1, "loopback": 1},
		"lists":   {"ioc": 1},
		"country": {"NL": 1, "US": 1},
		"asn":     {"64500": 1, "64501": 1},
		"org":     {"Example Hosting": 1, "Example Telecom": 1},
	} {
		if got := aggs.buckets(name); !maps.Equal(got, want) {
			t.Errorf("aggregation %s: %v, want %v", name, got, want)
		}
	}
	if got := aggs.count("near"); got != 1 {
		t.Errorf("documents within 50 km of Amsterdam: %d, want 1", got)
	}
	alerts := e.alertSources(t, "request-from-ioc-address")
	if !slices.Equal(alerts, []string{"203.0.113.5"}) {
		t.Errorf("IOC alerts from %v, want [203.0.113.5]", alerts)
	}

	// A rewritten list is taken while the processor runs.
	writeFile(t, ioc, "203.0.113.0/28\n198.51.100.0/24 # added\n")
	testenv.WaitFor(t, "the rewritten list reloaded", time.Minute, func() bool {
		return procMetric(addr, "kubesift_network_list_reloads_total", "list", "ioc", "result", "ok") == 1
	})
	send("bob", "198.51.100.10")
	// A broken one is refused, counted, and the list in force stays.
	writeFile(t, ioc, "203.0.113.0/28\n198.51.100.0/24\nnot-an-address\n")
	testenv.WaitFor(t, "the broken list refused", time.Minute, func() bool {
		return procMetric(addr, "kubesift_network_list_reloads_total", "list", "ioc", "result", "error") == 1
	})
	send("carol", "198.51.100.11")
	// Two more IOC alerts, and bob's and carol's first public networks.
	e.waitCounts(6, 7, 2*time.Minute)
	alerts = e.alertSources(t, "request-from-ioc-address")
	if want := []string{"198.51.100.10", "198.51.100.11", "203.0.113.5"}; !slices.Equal(alerts, want) {
		t.Errorf("IOC alerts from %v, want %v", alerts, want)
	}
	if log, _ := os.ReadFile(p.LogPath); !strings.Contains(string(log), ioc+`:3: \"not-an-address\" is not a CIDR or IP address`) {
		t.Errorf("the processor's log does not name the broken line:\n%s", testenv.Tail(p.LogPath, 20))
	}
}

// originRecord is an audit record of user from ips (sourceIPs).
func originRecord(t *testing.T, run string, n int, user string, ips ...string) kafka.Message {
	ts := time.Now().UTC()
	ev := &auditv1.Event{
		TypeMeta: metav1.TypeMeta{Kind: "Event", APIVersion: "audit.k8s.io/v1"},
		Level:    auditv1.LevelMetadata, AuditID: types.UID(fmt.Sprintf("%s-origin-%d", run, n)),
		Stage: auditv1.StageResponseComplete, RequestURI: "/api/v1/namespaces/default/pods", Verb: "list",
		User: authnv1.UserInfo{Username: user}, SourceIPs: ips, UserAgent: "kubectl/v1.37.2",
		ObjectRef:                &auditv1.ObjectReference{Resource: "pods", Namespace: "default", APIVersion: "v1"},
		ResponseStatus:           &metav1.Status{Code: 200},
		RequestReceivedTimestamp: metav1.NewMicroTime(ts), StageTimestamp: metav1.NewMicroTime(ts),
	}
	r, err := record.NewAudit(ev, nil, record.Cluster{Name: "it-" + run}, ts)
	if err != nil {
		t.Fatal(err)
	}
	return recordMessage(t, r)
}

// produceRecords writes messages to the input topic (acks=all).
func (e *procEnv) produceRecords(msgs ...kafka.Message) {
	e.t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(e.brokers...), Topic: e.topic, RequiredAcks: kafka.RequireAll,
		BatchTimeout: 5 * time.Millisecond, Transport: e.tr}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		e.t.Fatalf("produce: %v", err)
	}
}

// aggResult is the aggregations of one search.
type aggResult map[string]struct {
	DocCount int `json:"doc_count"`
	Buckets  []struct {
		Key      any `json:"key"`
		DocCount int `json:"doc_count"`
	} `json:"buckets"`
}

func (a aggResult) buckets(name string) map[string]int {
	out := map[string]int{}
	for _, b := range a[name].Buckets {
		out[fmt.Sprint(b.Key)] = b.DocCount
	}
	return out
}

func (a aggResult) count(name string) int { return a[name].DocCount }

// aggregate runs a search with aggregations over the audit stream.
func (e *procEnv) aggregate(t *testing.T, query string) aggResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, b, err := e.es(ctx, http.MethodPost, "/"+e.stream+"/_search", []byte(query))
	if err != nil || st != http.StatusOK {
		t.Fatalf("search %s: HTTP %d %v: %s", e.stream, st, err, b)
	}
	var res struct {
		Aggregations aggResult `json:"aggregations"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	return res.Aggregations
}

// alertSources are the source addresses of the alerts of rule, sorted.
func (e *procEnv) alertSources(t *testing.T, rule string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, _, err := e.es(ctx, http.MethodPost, "/"+e.alertsIdx+"/_refresh", nil); err != nil {
		t.Fatal(err)
	}
	q := fmt.Sprintf(`{"size":100,"query":{"term":{"rule.id":%q}}}`, rule)
	st, b, err := e.es(ctx, http.MethodPost, "/"+e.alertsIdx+"/_search", []byte(q))
	if err != nil || st != http.StatusOK {
		t.Fatalf("search %s: HTTP %d %v: %s", e.alertsIdx, st, err, b)
	}
	var res struct {
		Hits struct {
			Hits []struct {
				Source struct {
					Source struct {
						IP string `json:"ip"`
					} `json:"source"`
				} `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, h := range res.Hits.Hits {
		out = append(out, h.Source.Source.IP)
	}
	slices.Sort(out)
	return out
}
