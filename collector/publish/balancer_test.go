package publish

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// objectRecord is one object of cluster c; i varies kind, namespace and name.
func objectRecord(t testing.TB, c string, i int) *record.Record {
	t.Helper()
	kinds := []string{"Pod", "Namespace", "ClusterRole", "Deployment", "NetworkPolicy"}
	ns := fmt.Sprintf("ns-%d", i%7)
	if kinds[i%len(kinds)] == "Namespace" || kinds[i%len(kinds)] == "ClusterRole" {
		ns = ""
	}
	r, err := record.NewObject(record.ObjectRef{APIVersion: "v1", Kind: kinds[i%len(kinds)], Namespace: ns,
		Name: fmt.Sprintf("o-%d", i), UID: fmt.Sprintf("%s-uid-%d", c, i), ResourceVersion: "1"},
		[]byte(`{"metadata":{}}`), record.Cluster{Name: c}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestObjectsPartitionedByCluster: every object of one cluster lands on one
// partition of the objects topic (the posture consumer needs a cluster's
// whole inventory in one member), the key is still the object's place, and
// the clusters spread over the partitions. Other topics keep murmur2 of the
// whole key.
func TestObjectsPartitionedByCluster(t *testing.T) {
	c := fakeCluster(t)
	broker := c.ListenAddrs()[0]
	k := testKafkaConfig([]string{broker}, fakePrefix)
	p := newTestPublisher(t, k, testPublishConfig(t.TempDir()), prometheus.NewRegistry())
	clusters := []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"}
	var recs []*record.Record
	for _, cl := range clusters {
		for i := range 40 {
			recs = append(recs, objectRecord(t, cl, i))
		}
	}
	for i := range 40 {
		recs = append(recs, auditRecord(i, fmt.Sprintf("user-%d", i), 200))
	}
	publishAll(t, p, recs, 50)
	waitDrained(t, p)
	closePublisher(t, p)

	where := map[string]map[int]int{} // cluster -> partition -> messages
	for _, m := range testenv.ReadTopic(t, broker, k.Topics.Objects) {
		cl, _, _, _, err := record.ParseObjectKey(string(m.Key))
		if err != nil {
			t.Fatal(err)
		}
		if where[cl] == nil {
			where[cl] = map[int]int{}
		}
		where[cl][m.Partition]++
	}
	used := map[int]bool{}
	for _, cl := range clusters {
		if len(where[cl]) != 1 {
			t.Errorf("cluster %s spread over partitions %v, want one", cl, where[cl])
		}
		for part, n := range where[cl] {
			used[part] = true
			if n != 40 {
				t.Errorf("cluster %s: %d objects on partition %d, want 40", cl, n, part)
			}
		}
	}
	if len(used) < 2 {
		t.Errorf("8 clusters all on partitions %v: the cluster hash does not spread", used)
	}
	audit := map[int]bool{}
	for _, m := range testenv.ReadTopic(t, broker, k.Topics.Audit) {
		audit[m.Partition] = true
	}
	if len(audit) < 2 {
		t.Errorf("audit records of 40 users on partitions %v: the audit topic is no longer spread by the whole key", audit)
	}
}

// TestClusterBalancerStable: a key always maps to the partition of its
// cluster, whatever the rest of the key, and only on the objects topic.
func TestClusterBalancerStable(t *testing.T) {
	b := clusterBalancer{objects: "objs"}
	parts := []int{0, 1, 2, 3, 4, 5}
	tests := []struct {
		name   string
		topic  string
		key    string
		sameAs string // key whose partition it must share
	}{
		{"namespaced object", "objs", "prod/Pod/web/api-0", "prod"},
		{"cluster-scoped object", "objs", "prod/ClusterRole//admin", "prod"},
		{"name with a slash", "objs", "prod/Foo/ns/a/b", "prod"},
		{"no slash is a cluster", "objs", "prod", "prod"},
		{"other topic hashes the whole key", "audit", "prod/alice", "prod/alice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := b.Balance(messageOf(tc.topic, tc.key), parts...)
			want := b.whole.Balance(messageOf("", tc.sameAs), parts...)
			if got != want {
				t.Errorf("partition %d, want %d (that of %q)", got, want, tc.sameAs)
			}
			if again := b.Balance(messageOf(tc.topic, tc.key), parts...); again != got {
				t.Errorf("not stable: %d then %d", got, again)
			}
		})
	}
}

func messageOf(topic, key string) kafka.Message { return kafka.Message{Topic: topic, Key: []byte(key)} }
