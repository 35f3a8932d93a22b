package publish

import (
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/record"
)

// Records the publisher will not send.
//
// A record larger than publish.batch_bytes (the size policy could not make
// it fit) or one that cannot be encoded would be refused again on every
// retry. Failing its batch for it would make the source retry the batch
// forever — the webhook answering 500 to kube-apiserver for its neighbours,
// the tail stuck on one line. So Publish puts the record's dead letter in
// its place: the dead letter is published with the batch, behind the same
// guarantee, and the source acknowledges the batch once it is durable.

// rejectRecord is the dead letter of record r, which will not be sent:
// value is its encoded envelope (nil when encoding failed, then the object
// is kept), cut to fit publish.batch_bytes; reason is the metric label and
// the dead letter's reason.
func (p *Publisher) rejectRecord(r *record.Record, value, origin []byte, reason string, cause error) outMsg {
	data := value
	if data == nil {
		data = r.Object
	}
	topic := ""
	if k, ok := kindOf(r.Source); ok {
		topic = p.topics[k]
	}
	dl := collector.DeadLetter{
		Data: data, Source: "publish", Origin: topic, Offset: -1, Reason: reason,
		Error: "publish: " + cause.Error(), Cluster: r.Cluster,
	}
	hs := []kafka.Header{{Key: record.HeaderID, Value: []byte(r.ID)}, {Key: record.HeaderSource, Value: []byte(r.Source)}}
	if origin != nil {
		hs = append(hs, kafka.Header{Key: HeaderOrigin, Value: origin})
	}
	out, cut := p.refusedLetter(dl, hs, reason)
	if cut {
		p.m.dlqTruncated.Inc()
	}
	if p.logLimit.allow("reject-"+reason, 10*time.Second) {
		p.log.Error("record cannot be published; sent to the dead-letter topic in its place",
			"id", r.ID, "reason", reason, "dlq", p.topics[kindDLQ], "error", cause)
	}
	return out
}
