package pipeline

import (
	"strconv"
	"strings"

	"github.com/segmentio/kafka-go"
)

// Headers of a dead letter written by the processor. They are the
// collector's header family (collector/publish: kubesift-dlq-source, -origin,
// -offset, -reason, -error, -truncated), so one tool reads every dead letter
// of the topic, plus the processor's stage and the partition. The message
// value is the original Kafka message value, byte for byte, and the original
// message's key and headers (kubesift-id, kubesift-source, kubesift-cluster,
// kubesift-schema) are kept, so a dead letter can be re-published as is once
// its cause is mended.
const (
	HeaderDLQSource    = "kubesift-dlq-source"    // "processor"
	HeaderDLQStage     = "kubesift-dlq-stage"     // decode | document | index
	HeaderDLQReason    = "kubesift-dlq-reason"    // short, machine-readable
	HeaderDLQError     = "kubesift-dlq-error"     // the error text, for humans
	HeaderDLQOrigin    = "kubesift-dlq-origin"    // the topic the message was read from
	HeaderDLQPartition = "kubesift-dlq-partition" // its partition
	HeaderDLQOffset    = "kubesift-dlq-offset"    // its offset
	HeaderDLQKind      = "kubesift-dlq-kind"      // record | alert: what the value is
	// HeaderDLQTruncated is set (to the original length) only when the value
	// had to be cut to fit processor.produce.batch_bytes.
	HeaderDLQTruncated = "kubesift-dlq-truncated"
)

// SourceProcessor is the HeaderDLQSource of the processor's dead letters.
const SourceProcessor = "processor"

// maxDLQErrorLen caps the error header (an error text is for humans, and a
// pathological one must not make the dead letter too large).
const maxDLQErrorLen = 4 << 10

// deadLetter is one message for the dead-letter topic.
type deadLetter struct {
	orig   kafka.Message // the consumed message (topic, partition, offset, key, headers, value)
	kind   string        // kindRecord, or kindAlert when value is an alert document
	value  []byte        // what to keep; the original value for records
	stage  string
	reason string
	err    string
}

// message renders dl for topic, cut to fit maxBytes (kafka-go's batch bytes
// counts key, value and headers).
func (dl deadLetter) message(topic string, maxBytes int64) kafka.Message {
	errText := dl.err
	if len(errText) > maxDLQErrorLen {
		errText = errText[:maxDLQErrorLen]
	}
	headers := make([]kafka.Header, 0, len(dl.orig.Headers)+9)
	for _, h := range dl.orig.Headers {
		// A dead letter of a dead letter (re-published, failed again) gets
		// fresh kubesift-dlq-* headers rather than two sets.
		if !strings.HasPrefix(h.Key, "kubesift-dlq-") {
			headers = append(headers, h)
		}
	}
	headers = append(headers,
		kafka.Header{Key: HeaderDLQSource, Value: []byte(SourceProcessor)},
		kafka.Header{Key: HeaderDLQStage, Value: []byte(dl.stage)},
		kafka.Header{Key: HeaderDLQReason, Value: []byte(dl.reason)},
		kafka.Header{Key: HeaderDLQError, Value: []byte(errText)},
		kafka.Header{Key: HeaderDLQOrigin, Value: []byte(dl.orig.Topic)},
		kafka.Header{Key: HeaderDLQPartition, Value: []byte(strconv.Itoa(dl.orig.Partition))},
		kafka.Header{Key: HeaderDLQOffset, Value: []byte(strconv.FormatInt(dl.orig.Offset, 10))},
		kafka.Header{Key: HeaderDLQKind, Value: []byte(dl.kind)},
	)
	m := kafka.Message{Topic: topic, Key: dl.orig.Key, Value: dl.value, Headers: headers}
	// The original came off a topic whose limit may exceed ours; cut rather
	// than fail for good (a dead letter that cannot be written would wedge
	// its partition). 512 bytes cover the record framing kafka-go counts.
	if size := messageSize(m) + 512; size > maxBytes {
		keep := max(int64(len(m.Value))-(size-maxBytes), 0)
		m.Headers = append(m.Headers, kafka.Header{Key: HeaderDLQTruncated, Value: []byte(strconv.Itoa(len(m.Value)))})
		m.Value = m.Value[:keep]
	}
	return m
}

// messageSize is the bytes of m kafka-go counts against BatchBytes, roughly.
func messageSize(m kafka.Message) int64 {
	n := len(m.Key) + len(m.Value)
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value) + 8
	}
	return int64(n)
}

// reasonType is the store's error type of a Rejected reason
// ("mapper_parsing_exception: failed to parse [x]" -> mapper_parsing_exception):
// a bounded label for metrics and the reason header; the whole text goes to
// the error header.
func reasonType(reason string) string {
	t, _, _ := strings.Cut(reason, ":")
	t = strings.TrimSpace(t)
	if t == "" || len(t) > 64 || strings.ContainsAny(t, " \t\n[]{}\"") {
		return reasonRejected
	}
	return t
}

// reasonRejected is reasonType's answer for a reason that names no type.
const reasonRejected = "rejected"
