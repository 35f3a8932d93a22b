package publish

import (
	"fmt"

	"github.com/kubesift/kubesift/record"
)

// A deleted object is published as a Kafka tombstone (record package doc):
// its key and headers, and a nil value, which compaction of the objects topic
// treats as "forget this key". kafka-go writes a nil Value as a null, an empty
// one as zero bytes, so the nil must survive every stage up to the writer,
// the spool included.

// recordValue is the message value of r: its encoded envelope, or nil for a
// tombstone.
func recordValue(r *record.Record) ([]byte, error) {
	if !r.Deleted {
		return record.Marshal(r)
	}
	if r.Source != record.SourceObject {
		return nil, fmt.Errorf("record %s: a tombstone of source %q (only objects have them)", r.ID, r.Source)
	}
	return nil, nil
}

// payloadValue is the value of a spooled message. The spool stores values
// without a length, so a tombstone's nil comes back as zero bytes; an object
// record's value is never empty (it is at least an envelope), so zero bytes
// of kind object can only be a tombstone and are made nil again.
func payloadValue(k kind, rest []byte) []byte {
	if k == kindObject && len(rest) == 0 {
		return nil
	}
	return rest
}
