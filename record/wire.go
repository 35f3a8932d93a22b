package record

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
)

// Header names of the Kafka wire format (see the package doc).
const (
	HeaderSchema  = "kubesift-schema"
	HeaderID      = "kubesift-id"
	HeaderSource  = "kubesift-source"
	HeaderCluster = "kubesift-cluster"
)

// Header is one message header; kept free of any Kafka client type so that
// this package does not depend on one.
type Header struct {
	Key   string
	Value []byte
}

// Marshal encodes r as the wire envelope. It writes the envelope by hand
// and copies the object verbatim: encoding/json would re-validate and
// re-compact the whole object (the bulk of the bytes) on every record, which
// was most of the collector's publishing CPU. The envelope fields are
// byte-for-byte what json.Marshal(r) writes, and the object is the same JSON
// value, copied as received (a test and a fuzz target check both).
func Marshal(r *Record) ([]byte, error) {
	if r.Deleted {
		return nil, fmt.Errorf("record %s: a tombstone has no value to encode", r.ID)
	}
	if r.Object == nil {
		if err := r.SyncObject(); err != nil {
			return nil, err
		}
	}
	obj := []byte(r.Object)
	if bytes.IndexByte(obj, '\n') >= 0 || bytes.IndexByte(obj, '\r') >= 0 {
		// A pretty-printed input document: compact it so the envelope stays
		// one line (NDJSON files, Kafka tools that split on newlines).
		var c bytes.Buffer
		if err := json.Compact(&c, obj); err != nil {
			return nil, fmt.Errorf("record %s: object: %w", r.ID, err)
		}
		obj = c.Bytes()
	}
	b := make([]byte, 0, len(obj)+256+len(r.ID)+len(r.Key))
	b = append(b, `{"schema":`...)
	b = strconv.AppendInt(b, int64(r.Schema), 10)
	b = append(b, `,"id":`...)
	b = appendJSONString(b, r.ID)
	b = append(b, `,"cluster":{"name":`...)
	b = appendJSONString(b, r.Cluster.Name)
	if r.Cluster.UID != "" {
		b = append(b, `,"uid":`...)
		b = appendJSONString(b, r.Cluster.UID)
	}
	b = append(b, `},"source":`...)
	b = appendJSONString(b, string(r.Source))
	b = append(b, `,"api_version":`...)
	b = appendJSONString(b, r.APIVersion)
	b = append(b, `,"event_time":`...)
	b = appendTime(b, r.EventTime)
	b = append(b, `,"observed_time":`...)
	b = appendTime(b, r.ObservedTime)
	b = append(b, `,"key":`...)
	b = appendJSONString(b, r.Key)
	if r.InitialList {
		b = append(b, `,"initial_list":true`...)
	}
	if r.Flags.Truncated || r.Flags.Redacted != nil {
		b = append(b, `,"flags":{`...)
		sep := ""
		if r.Flags.Truncated {
			b = append(b, `"truncated":true`...)
			sep = ","
		}
		if len(r.Flags.Redacted) > 0 {
			b = append(b, sep+`"redacted":[`...)
			for i, k := range r.Flags.Redacted {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendJSONString(b, k)
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	b = append(b, `,"object":`...)
	if len(obj) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, obj...)
	}
	return append(b, '}'), nil
}

func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendJSONString appends s as a JSON string the way encoding/json writes
// it: control characters, quotes and backslashes escaped, <, > and & as
// \u003c etc., U+2028/2029 escaped, invalid UTF-8 replaced by U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// Headers returns the wire headers of r.
func Headers(r *Record) []Header {
	return []Header{
		{Key: HeaderSchema, Value: []byte(strconv.Itoa(SchemaVersion))},
		{Key: HeaderID, Value: []byte(r.ID)},
		{Key: HeaderSource, Value: []byte(r.Source)},
		{Key: HeaderCluster, Value: []byte(r.Cluster.Name)},
	}
}

// Unmarshal decodes a wire envelope and its typed view. Errors name the field.
func Unmarshal(data []byte) (*Record, error) {
	var r Record
	var members [maxMembers]member
	p := probe{members: members[:]}
	// The processor spends most of its decode time here on every message:
	// the envelope is read by hand where it has Marshal's shape, otherwise
	// with jsoniter (encoding/json checks the whole object's validity first,
	// then decodes: two scans of the bytes the typed view below scans
	// again). Neither names the field of an error; on failure
	// encoding/json decides and reports.
	if !unmarshalEnvelopeFast(data, &r, &p) && fastJSON.Unmarshal(data, &r) != nil {
		r = Record{}
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, jsonError("", err)
		}
	}
	switch {
	case r.Schema != SchemaVersion:
		return nil, fmt.Errorf("schema %d (this build reads %d): %w", r.Schema, SchemaVersion, ErrSchema)
	case r.ID == "":
		return nil, &FieldError{Field: "id", Msg: "missing"}
	case !r.Source.Valid():
		return nil, &FieldError{Field: "source", Msg: fmt.Sprintf("unknown source %q", r.Source)}
	case len(r.Object) == 0 || r.Object[0] != '{':
		return nil, &FieldError{Field: "object", Msg: "missing or not a JSON object"}
	}
	var err error
	switch {
	case r.Source == SourceAudit:
		parts := new(auditParts)
		r.Audit, p.parts = &parts.ev, parts
		// Decoded by hand where the event has kube-apiserver's shape, and
		// large request/response bodies are attached as raw spans instead
		// of walked, as the stream decoder does (decodeAuditFast).
		scanned := p.valid || scanProbe(r.Object, &p) == nil
		fast := scanned && decodeAuditFast(r.Object, &p, r.Audit)
		p.parts = nil
		if !scanned || !fast && !decodeAuditLite(r.Object, &p, r.Audit) {
			err = unmarshalTyped(r.Object, r.Audit)
		}
	case r.Source == SourceEvent && r.APIVersion == APIEventsV1:
		r.Event = new(eventsv1.Event)
		err = unmarshalTyped(r.Object, r.Event)
	case r.Source == SourceEvent && r.APIVersion == APICoreV1:
		r.CoreEvent = new(corev1.Event)
		err = unmarshalTyped(r.Object, r.CoreEvent)
	case r.Source == SourceEvent:
		return nil, &FieldError{Field: "api_version", Msg: fmt.Sprintf("unknown Event API %q", r.APIVersion)}
	}
	if err != nil {
		return nil, jsonError("object", err)
	}
	return &r, nil
}
