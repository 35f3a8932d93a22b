package publish

import (
	"bytes"

	"github.com/segmentio/kafka-go"
)

// clusterBalancer partitions the objects topic by the cluster part of the
// key and every other topic by murmur2 of the whole key.
//
// The posture consumer judges cross-object checks ("a namespace without a
// NetworkPolicy") and so needs a cluster's whole inventory in one consumer
// group member. Keyed by cluster/kind/namespace/name and partitioned by the
// whole key, one cluster's objects would spread over every partition; with
// the partition chosen from the cluster alone, each partition holds whole
// clusters, and scaling out stays Kafka partitions and consumer groups. The
// key itself stays the object's place, so compaction still keeps only each
// object's current state, and since a key's cluster never changes, a key
// always lands on the same partition. The hash is murmur2 of the cluster
// name (kafka.Murmur2Balancer, the Java client's), so a tool that wants to
// find a cluster's partition can compute it.
type clusterBalancer struct {
	objects string // the objects topic
	whole   kafka.Murmur2Balancer
}

func (b clusterBalancer) Balance(msg kafka.Message, partitions ...int) int {
	if msg.Topic == b.objects {
		if i := bytes.IndexByte(msg.Key, '/'); i > 0 {
			msg.Key = msg.Key[:i]
		}
	}
	return b.whole.Balance(msg, partitions...)
}
