package publish

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/record"
)

// Header names of a dead letter on the dead-letter topic. The value of the
// message is the original input bytes; HeaderCluster (record.HeaderCluster)
// names the cluster.
const (
	HeaderDLQSource = "kubesift-dlq-source"
	HeaderDLQOrigin = "kubesift-dlq-origin"
	HeaderDLQOffset = "kubesift-dlq-offset"
	HeaderDLQLine   = "kubesift-dlq-line"
	HeaderDLQReason = "kubesift-dlq-reason"
	HeaderDLQError  = "kubesift-dlq-error"
	// HeaderDLQTruncated is set (to the original length) only when the
	// publisher had to cut Data to fit publish.batch_bytes.
	HeaderDLQTruncated = "kubesift-dlq-truncated"
	// HeaderDLQRefused is set on the dead letter of a record Kafka refused
	// for good (refuse.go), to the reason; the record's own kubesift-id,
	// kubesift-source and HeaderOrigin headers are kept alongside.
	HeaderDLQRefused = "kubesift-dlq-refused"
)

// HeaderOrigin names the collector source that delivered a record
// ("audit-webhook", "audit-tail", "events"), set on messages published
// through Publisher.For. Both audit paths deliver the same records under the
// same IDs; this header tells the copies apart (provenance, and proof that
// each path delivers everything).
const HeaderOrigin = "kubesift-origin"

// maxDLQErrorLen caps the error header: it is for humans, and a pathological
// error text must not make the dead letter itself too large.
const maxDLQErrorLen = 4 << 10

// kind says which topic a message goes to. The spool stores the kind, not
// the topic name, so a spool written before a topic rename drains to the
// topics configured now.
type kind uint8

const (
	kindAudit kind = iota + 1
	kindEvent
	kindObject
	kindDLQ
	kindMax // one past the last valid kind
)

func (k kind) String() string {
	switch k {
	case kindAudit:
		return "audit"
	case kindEvent:
		return "event"
	case kindObject:
		return "object"
	case kindDLQ:
		return "dlq"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

func kindOf(s record.Source) (kind, bool) {
	switch s {
	case record.SourceAudit:
		return kindAudit, true
	case record.SourceEvent:
		return kindEvent, true
	case record.SourceObject:
		return kindObject, true
	}
	return 0, false
}

// outMsg is one message on its way to Kafka: everything the wire needs except
// the topic name. It is what the spool stores.
type outMsg struct {
	kind    kind
	key     []byte
	headers []kafka.Header
	value   []byte
}

// wireSize is an upper bound of kafka-go's size accounting for the message
// (Message.totalSize: key, value, headers, framing, timestamp), so that a
// message passing our check never trips kafka-go's MessageTooLargeError,
// which would fail a whole WriteMessages call.
func (m *outMsg) wireSize() int64 {
	n := int64(64 + len(m.key) + len(m.value))
	for _, h := range m.headers {
		n += int64(len(h.Key)+len(h.Value)) + 20
	}
	return n
}

// fromRecord encodes a record to its wire form (record.Marshal, or nil for
// a tombstone; record.Headers, record.Key).
func fromRecord(r *record.Record, origin []byte) (outMsg, error) {
	k, ok := kindOf(r.Source)
	if !ok {
		return outMsg{}, fmt.Errorf("record %s: unknown source %q", r.ID, r.Source)
	}
	value, err := recordValue(r)
	if err != nil {
		return outMsg{}, err
	}
	shareObject(r, value)
	hs := record.Headers(r)
	headers := make([]kafka.Header, len(hs), len(hs)+1)
	for i, h := range hs {
		headers[i] = kafka.Header{Key: h.Key, Value: h.Value}
	}
	if origin != nil {
		headers = append(headers, kafka.Header{Key: HeaderOrigin, Value: origin})
	}
	var key []byte
	if r.Key != "" {
		key = []byte(r.Key)
	}
	return outMsg{kind: k, key: key, headers: headers, value: value}, nil
}

// shareObject points r.Object at the copy of it inside value, the encoded
// envelope, which Marshal ends with the object verbatim and a '}'. The
// bytes are the same, so nothing changes for the caller, but a source that
// keeps the record until Kafka acknowledges it (to publish it again if the
// batch fails: the tail keeps three batches in flight) then holds the
// object once, not twice (BenchmarkInFlightRecord shows the difference). A
// compacted (pretty-printed) object is not shared.
func shareObject(r *record.Record, value []byte) {
	obj := r.Object
	end := len(value) - 1
	start := end - len(obj)
	if len(obj) == 0 || start < 0 || !bytes.Equal(value[start:end], obj) {
		return
	}
	r.Object = value[start:end:end] // capacity capped: an append can never write over value
}

// fromDeadLetter builds the dead-letter message. Data larger than limit
// (the batch size, less headers) is cut and marked with HeaderDLQTruncated;
// the second result says whether that happened.
func fromDeadLetter(dl collector.DeadLetter, limit int64) (outMsg, bool) {
	errText := dl.Error
	if len(errText) > maxDLQErrorLen {
		errText = errText[:maxDLQErrorLen]
	}
	headers := []kafka.Header{
		{Key: HeaderDLQSource, Value: []byte(dl.Source)},
		{Key: HeaderDLQOrigin, Value: []byte(dl.Origin)},
		{Key: HeaderDLQOffset, Value: []byte(strconv.FormatInt(dl.Offset, 10))},
		{Key: HeaderDLQLine, Value: []byte(strconv.Itoa(dl.Line))},
		{Key: HeaderDLQReason, Value: []byte(dl.Reason)},
		{Key: HeaderDLQError, Value: []byte(errText)},
		{Key: record.HeaderCluster, Value: []byte(dl.Cluster.Name)},
	}
	m := outMsg{kind: kindDLQ, headers: headers, value: dl.Data}
	if dl.Cluster.Name != "" {
		// One cluster's dead letters stay in order in one partition.
		m.key = []byte(dl.Cluster.Name)
	}
	if over := m.wireSize() + 64 - limit; over > 0 {
		// A dead letter is the last resort for bad input: refusing it would
		// block the source forever, so keep the head of the data (what a
		// human needs to see what went wrong) and say so.
		keep := max(int64(len(dl.Data))-over, 0)
		m.headers = append(m.headers, kafka.Header{Key: HeaderDLQTruncated, Value: []byte(strconv.Itoa(len(dl.Data)))})
		m.value = dl.Data[:keep]
		return m, true
	}
	return m, false
}

// Spool payload layout (inside a segment entry):
//
//	byte     payload version (1)
//	byte     kind
//	uvarint  key length, key bytes
//	uvarint  header count; per header: uvarint key length, key, uvarint value length, value
//	rest     value
const payloadVersion = 1

var errBadPayload = errors.New("spool: malformed payload")

// encodePayload appends the spool encoding of m to dst.
func encodePayload(dst []byte, m *outMsg) []byte {
	dst = append(dst, payloadVersion, byte(m.kind))
	dst = binary.AppendUvarint(dst, uint64(len(m.key)))
	dst = append(dst, m.key...)
	dst = binary.AppendUvarint(dst, uint64(len(m.headers)))
	for _, h := range m.headers {
		dst = binary.AppendUvarint(dst, uint64(len(h.Key)))
		dst = append(dst, h.Key...)
		dst = binary.AppendUvarint(dst, uint64(len(h.Value)))
		dst = append(dst, h.Value...)
	}
	return append(dst, m.value...)
}

// decodePayload decodes a spool payload. Key, header values and value alias
// b (no copies); the caller keeps b alive until the message is acknowledged.
func decodePayload(b []byte) (outMsg, error) {
	if len(b) < 2 || b[0] != payloadVersion {
		return outMsg{}, fmt.Errorf("%w: version", errBadPayload)
	}
	m := outMsg{kind: kind(b[1])}
	if m.kind == 0 || m.kind >= kindMax {
		return outMsg{}, fmt.Errorf("%w: kind %d", errBadPayload, b[1])
	}
	rest := b[2:]
	// bytesField reads one length-prefixed field; every length is checked
	// against what is left, so no input can make it slice out of range.
	bytesField := func(what string) ([]byte, error) {
		n, w := binary.Uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) {
			return nil, fmt.Errorf("%w: %s length", errBadPayload, what)
		}
		f := rest[w : w+int(n)]
		rest = rest[w+int(n):]
		return f, nil
	}
	key, err := bytesField("key")
	if err != nil {
		return outMsg{}, err
	}
	if len(key) > 0 {
		m.key = key
	}
	nh, w := binary.Uvarint(rest)
	// Each header takes at least two bytes, which bounds the allocation.
	if w <= 0 || nh > uint64(len(rest)-w)/2 {
		return outMsg{}, fmt.Errorf("%w: header count", errBadPayload)
	}
	rest = rest[w:]
	if nh > 0 {
		m.headers = make([]kafka.Header, nh)
	}
	for i := range m.headers {
		k, err := bytesField("header key")
		if err != nil {
			return outMsg{}, err
		}
		v, err := bytesField("header value")
		if err != nil {
			return outMsg{}, err
		}
		m.headers[i] = kafka.Header{Key: string(k), Value: v}
	}
	m.value = payloadValue(m.kind, rest)
	return m, nil
}
