package record

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	jsoniter "github.com/json-iterator/go"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// DefaultMaxDocBytes bounds one input document. The API server caps request
// bodies at 3 MiB and audit events embed at most request and response, so a
// larger document is almost certainly not an audit event; the collector's size
// policy deals with big-but-valid ones.
const DefaultMaxDocBytes = 32 << 20

// DecodeOptions configure a Decoder.
type DecodeOptions struct {
	// Cluster is stamped on every record.
	Cluster Cluster
	// Now gives the observed time; time.Now when nil.
	Now func() time.Time
	// MaxDocBytes bounds one document; DefaultMaxDocBytes when 0.
	MaxDocBytes int
	// ReuseBuffer has the decoder read each line into the buffer it read
	// the line before into, as bufio.Scanner does, and decode an audit
	// event into the Record (and typed view) the call before returned: a
	// Record, its Object and its audit event are then valid only
	// until the next call to Next, and only a caller that is done with each
	// record before it asks for the next may set it (kubesift rules eval).
	// It saves a copy of every line and an allocation of every audit
	// record, most of what decoding allocates, and with it many garbage
	// collections. The strings and maps a Record holds are its own memory
	// either way, and can be kept.
	ReuseBuffer bool
}

// Decoder reads audit events and Kubernetes Events from a stream in every form
// kubesift accepts:
//
//   - one audit.k8s.io/v1 or v1beta1 Event, or one without apiVersion/kind
//     (recognised by its auditID);
//   - an audit EventList (the webhook backend's body);
//   - NDJSON audit log lines (--audit-log-format=json);
//   - core/v1 and events.k8s.io/v1 Events, their lists, and kind: List;
//   - JSON arrays of any of these;
//   - Azure (AKS) diagnostic log wrappers, whose properties.log holds the event
//     as an object or as a JSON string, and Azure Monitor's batches of them
//     ({"records": [...]}, what Event Hubs messages and storage-account
//     blobs hold);
//   - Amazon CloudWatch Logs exports for EKS, whose logEvents[].message (a
//     subscription's payload, as Kinesis Data Firehose writes it to S3) or
//     events[].message (aws logs filter-log-events output) holds the event
//     as a JSON string;
//   - Google Cloud audit log entries for GKE (protoPayload), converted to an
//     audit event as faithfully as the entry allows.
//
// Unknown fields are ignored. Next returns one Record at a time; a bad
// document (or a bad item of a list) is returned as a *DecodeError naming the
// file, line and field, and decoding goes on with the next one.
type Decoder struct {
	name    string
	opts    DecodeOptions
	split   *splitter
	pending []result
	// lists are the lists being walked, innermost last. Their items are
	// decoded one at a time as Next is called, so a caller that takes records
	// in small batches never holds a whole list decoded: a 100,000-item
	// EventList costs its raw bytes and one item's records, not 100,000
	// records at once.
	lists []*listFrame
	// item is the raw item of the outermost list being decoded (nil outside
	// lists); DecodeErrors carry it so a receiver can dead-letter the bad
	// item instead of the whole body.
	item []byte
	// whole is a single document handed over by NewBodyDecoder, decoded
	// before the splitter is asked for anything.
	whole *doc
	// With ReuseBuffer, lent is the audit record Next returned last, and
	// spare the one before it, which the caller is done with: the next
	// audit event is decoded into it instead of a new one.
	lent, spare *auditRecord
}

// listFrame is one list being walked: its items, the next one to decode, and
// what decodeItems needs to decode each.
type listFrame struct {
	dc     doc
	items  [][]byte
	next   int
	path   string
	depth  int
	unwrap func([]byte, string) ([]byte, string, error)
}

type result struct {
	rec *Record
	err error
	ar  *auditRecord // what rec is part of, when decodeAudit built it
}

// NewDecoder returns a Decoder reading r; name (a file name, "stdin", a URL
// path) appears in errors.
func NewDecoder(r io.Reader, name string, opts DecodeOptions) *Decoder {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxDocBytes <= 0 {
		opts.MaxDocBytes = DefaultMaxDocBytes
	}
	return &Decoder{name: name, opts: opts, split: newSplitter(r, opts.MaxDocBytes, opts.ReuseBuffer)}
}

// Next returns the next Record. At the end of input it returns io.EOF. A
// *DecodeError is returned for input that could not be decoded; the caller
// reports it and calls Next again. Any other error is from the reader.
func (d *Decoder) Next() (*Record, error) {
	if d.lent != nil {
		d.spare, d.lent = d.lent, nil
	}
	for len(d.pending) == 0 {
		if d.nextItem() {
			continue
		}
		if d.whole != nil {
			dc := *d.whole
			d.whole = nil
			d.decodeDocument(dc)
			continue
		}
		dc, err := d.split.next()
		if err != nil {
			if err == io.EOF {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("%s: read: %w", d.name, err)
		}
		if dc.err != nil {
			// A line the splitter read and kept for the next document is
			// not part of the bad stretch.
			end := d.split.offset
			if d.split.hasPeek {
				end = d.split.peekOff
			}
			return nil, &DecodeError{File: d.name, Line: dc.line, Offset: dc.offset, End: end, Err: dc.err}
		}
		d.decodeDocument(dc)
	}
	r := d.pending[0]
	d.pending[0] = result{}
	if len(d.pending) == 1 {
		// Back to the start of the array: a document is nearly always one
		// record, and slicing past it would leave no room for the next
		// (an allocation per record).
		d.pending = d.pending[:0]
	} else {
		d.pending = d.pending[1:]
	}
	if d.opts.ReuseBuffer {
		d.lent = r.ar
	}
	return r.rec, r.err
}

// nextItem decodes the next item of the innermost list being walked, and
// reports false when no list is left.
func (d *Decoder) nextItem() bool {
	for n := len(d.lists); n > 0; n = len(d.lists) {
		f := d.lists[n-1]
		if f.next >= len(f.items) {
			d.lists[n-1] = nil
			d.lists = d.lists[:n-1]
			if len(d.lists) == 0 {
				d.item = nil
			}
			continue
		}
		i, it := f.next, f.items[f.next]
		f.items[i] = nil // the decoded records keep what they need
		f.next++
		if n == 1 {
			d.item = it
		}
		at := fmt.Sprintf("%s[%d]", f.path, i)
		if f.unwrap != nil {
			inner, innerAt, err := f.unwrap(it, at)
			if err != nil {
				d.fail(f.dc, err)
				return true
			}
			it, at = inner, innerAt
		}
		d.decodeObject(f.dc, it, at, f.depth+1)
		return true
	}
	return false
}

// NewBodyDecoder returns a Decoder for data held whole in memory, such as a
// webhook request body. It accepts everything NewDecoder does, and when data
// is one JSON document (a body always is) it decodes it in place, without
// the copy the stream splitter makes of every document; its lists are then
// walked lazily like any other (see Decoder.lists).
func NewBodyDecoder(data []byte, name string, opts DecodeOptions) *Decoder {
	d := NewDecoder(bytes.NewReader(data), name, opts)
	start := skipWS(data, 0)
	if start >= len(data) || data[start] != '{' && data[start] != '[' {
		return d
	}
	end := valueEnd(data, start)
	// The splitter reports a document over MaxDocBytes, and anything after the
	// first document, in its own way: leave those to it.
	if end < 0 || end-start > d.opts.MaxDocBytes || skipWS(data, end) != len(data) {
		return d
	}
	d.whole = &doc{data: data[start:end:end], line: 1 + bytes.Count(data[:start], []byte{'\n'}), offset: int64(start)}
	d.split = newSplitter(bytes.NewReader(nil), opts.MaxDocBytes, false)
	return d
}

// Position is the line and byte offset the decoder has consumed so far, for
// checkpoints.
func (d *Decoder) Position() (line int, offset int64) { return d.split.line, d.split.offset }

// DecodeAll decodes every document in data (a webhook body, a small file). It
// returns the records that decoded and one *DecodeError per bad document or
// item; a bad item never costs the good ones. It keeps every record, so
// opts.ReuseBuffer is ignored.
func DecodeAll(data []byte, name string, opts DecodeOptions) ([]*Record, []error) {
	opts.ReuseBuffer = false
	d := NewDecoder(bytes.NewReader(data), name, opts)
	var recs []*Record
	var errs []error
	for {
		r, err := d.Next()
		if err == io.EOF {
			return recs, errs
		}
		if err != nil {
			errs = append(errs, err)
			var de *DecodeError
			if !errors.As(err, &de) {
				return recs, errs // a read error: nothing more will come
			}
			continue
		}
		recs = append(recs, r)
	}
}

func (d *Decoder) fail(dc doc, err error) {
	d.pending = append(d.pending, result{err: &DecodeError{File: d.name, Line: dc.line, Offset: dc.offset, Err: err, Item: d.item}})
}

func (d *Decoder) decodeDocument(dc doc) {
	data := dc.data
	switch data[0] {
	case '[':
		// depth -1: the items of a top-level array are at depth 0.
		d.decodeItems(dc, data, "", -1, nil)
	case '{':
		if p := dc.probe; p != nil {
			dc.probe = nil // the splitter's: not to be kept with a list
			d.classify(dc, data, "", 0, p)
			return
		}
		d.decodeObject(dc, data, "", 0)
	default:
		if !validJSON(data) {
			d.fail(dc, &syntaxError{msg: "not a JSON document", offset: 0})
			return
		}
		d.fail(dc, ErrUnknownKind)
	}
}

// probe reads just enough of a document to tell what it is.
type probe struct {
	Kind         string          `json:"kind"`
	APIVersion   string          `json:"apiVersion"`
	AuditID      string          `json:"auditID"`
	Stage        string          `json:"stage"`
	Items        json.RawMessage `json:"items"`
	ProtoPayload json.RawMessage `json:"protoPayload"`
	Properties   *struct {
		Log json.RawMessage `json:"log"`
	} `json:"properties"`
	// Records is Azure Monitor's batch of diagnostic log entries.
	Records json.RawMessage `json:"records"`
	// LogEvents and Events are CloudWatch Logs' lists of log events, each
	// with the audit event as the string message.
	LogEvents      json.RawMessage `json:"logEvents"`
	Events         json.RawMessage `json:"events"`
	InvolvedObject json.RawMessage `json:"involvedObject"`
	Regarding      json.RawMessage `json:"regarding"`
	Timestamp      *time.Time      `json:"timestamp"`

	// bodies are the spans of the requestObject and responseObject values,
	// found by scanProbe (zero when it did not run or they are absent).
	bodies [2]span
	// members, when the caller gives a buffer, receive the spans of the
	// first len(members) top-level keys and values scanProbe finds, and
	// nmembers counts them all, so that decodeAuditFast does not scan the
	// top level a second time.
	members  []member
	nmembers int
	// valid says the whole object has been checked already (Unmarshal's
	// envelope reader did, walking it once for both), so the decoder need
	// not check the bodies it attaches.
	valid bool
	// parts, when set, is where decodeAuditFast puts the objects an audit
	// event points to, instead of allocating each (see auditParts).
	parts *auditParts
}

// auditParts holds, in one allocation, the parts of an audit event's typed
// view that are objects of their own: nearly every event has an objectRef
// and a responseStatus, and those at RequestResponse level two bodies.
// They live exactly as long as the event that points to them.
type auditParts struct {
	ev   auditv1.Event
	ref  auditv1.ObjectReference
	st   metav1.Status
	body [2]runtime.Unknown
}

// auditRecord is auditParts with the Record that holds the event, for the
// stream decoder, which builds both.
type auditRecord struct {
	rec Record
	auditParts
}

func (p *probe) objectRef() *auditv1.ObjectReference {
	if p.parts != nil {
		return &p.parts.ref
	}
	return new(auditv1.ObjectReference)
}

func (p *probe) status() *metav1.Status {
	if p.parts != nil {
		return &p.parts.st
	}
	return new(metav1.Status)
}

// body returns a runtime.Unknown for the request (k 0) or response (1).
func (p *probe) body(k int) *runtime.Unknown {
	if p.parts != nil {
		return &p.parts.body[k]
	}
	return new(runtime.Unknown)
}

// member is one key (without its quotes) and value of a JSON object.
type member struct{ key, val span }

// span is the extent of a top-level value: data[start:end].
type span struct{ start, end int }

// decodeObject decodes one JSON object found at path inside document dc.
// depth guards the recursion through wrappers and lists.
func (d *Decoder) decodeObject(dc doc, data []byte, path string, depth int) {
	if depth > 4 {
		d.fail(dc, &FieldError{Field: orDoc(path), Msg: "lists or wrappers nested too deep"})
		return
	}
	var p probe
	if !d.probeObject(dc, data, path, &p) {
		return
	}
	d.classify(dc, data, path, depth, &p)
}

// classify decodes the object data found at path by what the probe p read
// of it.
func (d *Decoder) classify(dc doc, data []byte, path string, depth int, p *probe) {
	switch {
	case p.Items != nil && (p.Kind == "" || strings.HasSuffix(p.Kind, "List")):
		d.decodeItems(dc, p.Items, join(path, "items"), depth, nil)
	case p.Records != nil && p.Kind == "" && p.AuditID == "":
		if d.isArray(dc, p.Records, join(path, "records")) {
			d.decodeItems(dc, p.Records, join(path, "records"), depth, nil)
		}
	case (p.LogEvents != nil || p.Events != nil) && p.Kind == "" && p.AuditID == "":
		field, list := "logEvents", p.LogEvents
		if list == nil {
			field, list = "events", p.Events
		}
		if d.isArray(dc, list, join(path, field)) {
			d.decodeItems(dc, list, join(path, field), depth, cloudWatchMessage)
		}
	case p.ProtoPayload != nil:
		ev, err := fromGKE(data)
		if err != nil {
			d.fail(dc, prefixField(path, err))
			return
		}
		d.emitAudit(dc, ev, nil, path)
	case p.Properties != nil && len(p.Properties.Log) > 0:
		d.decodeAKSLog(dc, p.Properties.Log, join(path, "properties.log"), depth)
	case isAudit(p):
		d.decodeAudit(dc, data, p, path)
	case p.Kind == "Event" && (p.APIVersion == APIEventsV1 || p.Regarding != nil && p.APIVersion == ""):
		var ev eventsv1.Event
		if err := unmarshalTyped(data, &ev); err != nil {
			d.fail(dc, jsonError(path, err))
			return
		}
		d.emit(dc, path, func() (*Record, error) { return NewEvent(&ev, data, d.opts.Cluster, d.opts.Now()) })
	case p.Kind == "Event" && (p.APIVersion == APICoreV1 || p.InvolvedObject != nil && p.APIVersion == ""),
		p.Kind == "" && p.InvolvedObject != nil:
		var ev corev1.Event
		if err := unmarshalTyped(data, &ev); err != nil {
			d.fail(dc, jsonError(path, err))
			return
		}
		d.emit(dc, path, func() (*Record, error) { return NewCoreEvent(&ev, data, d.opts.Cluster, d.opts.Now()) })
	default:
		what := "kind " + quoteOr(p.Kind, "missing") + ", apiVersion " + quoteOr(p.APIVersion, "missing")
		d.fail(dc, fmt.Errorf("%s: %s: %w", orDoc(path), what, ErrUnknownKind))
	}
}

// probeObject fills p with what tells the object at path apart; false (the
// error recorded) when the object is not valid JSON.
func (d *Decoder) probeObject(dc doc, data []byte, path string, p *probe) bool {
	if scanProbe(data, p) == nil {
		return true
	}
	// The fast scanner gives up on escaped keys, wrappers and bad JSON;
	// encoding/json classifies those and names the error precisely.
	*p = probe{}
	if err := json.Unmarshal(data, p); err != nil {
		d.fail(dc, jsonError(path, err))
		return false
	}
	return true
}

// decodeAKSLog decodes the audit event an Azure diagnostic record wraps in
// properties.log (at path), one wrapper deeper than depth.
func (d *Decoder) decodeAKSLog(dc doc, raw json.RawMessage, path string, depth int) {
	inner := []byte(raw)
	if inner[0] == '"' { // AKS sometimes ships the event as a JSON string
		var s string
		if err := json.Unmarshal(inner, &s); err != nil {
			d.fail(dc, jsonError(path, err))
			return
		}
		inner = []byte(s)
	}
	if len(bytes.TrimSpace(inner)) == 0 || bytes.TrimSpace(inner)[0] != '{' {
		d.fail(dc, &FieldError{Field: path, Msg: "does not hold a JSON object"})
		return
	}
	d.decodeObject(dc, inner, path, depth+1)
}

// decodeAudit decodes an object the probe p classified as an audit event.
func (d *Decoder) decodeAudit(dc doc, data []byte, p *probe, path string) {
	ar := d.spare
	if ar != nil {
		d.spare = nil
		*ar = auditRecord{}
	} else {
		ar = new(auditRecord)
	}
	ev := &ar.ev
	p.parts = &ar.auditParts
	fast := decodeAuditFast(data, p, ev)
	p.parts = nil
	if fast || decodeAuditLite(data, p, ev) {
		d.finishAudit(dc, data, p, path, ar)
		return
	}
	if err := unmarshalTyped(data, ev); err != nil {
		// metav1.MicroTime accepts only RFC 3339 with exactly six
		// fractional digits, which kube-apiserver always writes; hand-made
		// and converted logs often do not. Retry once with the timestamps
		// normalised (only on this error path, so it costs nothing per event).
		fixed, ok := normaliseAuditTimes(data)
		if !ok || json.Unmarshal(fixed, ev) != nil {
			d.fail(dc, jsonError(path, err))
			return
		}
		data = fixed
	}
	d.finishAudit(dc, data, p, path, ar)
}

// finishAudit emits the record of ar's event.
func (d *Decoder) finishAudit(dc doc, data []byte, p *probe, path string, ar *auditRecord) {
	ev := &ar.ev
	if ev.StageTimestamp.IsZero() && ev.RequestReceivedTimestamp.IsZero() && p.Timestamp != nil {
		// Very old v1beta1 events carried only a top-level timestamp.
		ev.StageTimestamp.Time = *p.Timestamp
	}
	if err := newAudit(&ar.rec, ev, data, d.opts.Cluster, d.opts.Now()); err != nil {
		d.fail(dc, prefixField(path, err))
		return
	}
	d.pending = append(d.pending, result{rec: &ar.rec, ar: ar})
}

// decodeItems decodes each item of the JSON array list found at path. unwrap,
// when set, turns an item into the object to decode and the path it is
// found at; an item it refuses is a DecodeError of its own, and the others
// are still decoded (one bad log event does not cost its batch). The items
// are decoded as Next asks for them (nextItem), not here.
func (d *Decoder) decodeItems(dc doc, list json.RawMessage, path string, depth int, unwrap func([]byte, string) ([]byte, string, error)) {
	items, ok := splitArray(list)
	if !ok {
		var raw []json.RawMessage
		if err := json.Unmarshal(list, &raw); err != nil {
			d.fail(dc, jsonError(path, err))
			return
		}
		items = rawSlices(raw)
	}
	d.lists = append(d.lists, &listFrame{dc: dc, items: items, path: path, depth: depth, unwrap: unwrap})
}

// isArray reports whether a wrapper's list is a JSON array, and fails the
// document naming the field when it is not: {"records": null} must not
// pass as an empty batch.
func (d *Decoder) isArray(dc doc, list json.RawMessage, path string) bool {
	if t := bytes.TrimSpace(list); len(t) > 0 && t[0] == '[' {
		return true
	}
	d.fail(dc, &FieldError{Field: path, Msg: "is not a JSON array"})
	return false
}

// cloudWatchMessage returns the audit event a CloudWatch Logs log event
// carries in its message string. EKS writes one audit event per log event.
func cloudWatchMessage(item []byte, at string) ([]byte, string, error) {
	var le struct {
		Message *string `json:"message"`
	}
	if err := json.Unmarshal(item, &le); err != nil {
		return nil, "", jsonError(at, err)
	}
	at = join(at, "message")
	if le.Message == nil {
		return nil, "", &FieldError{Field: at, Msg: "missing"}
	}
	inner := bytes.TrimSpace([]byte(*le.Message))
	if len(inner) == 0 || inner[0] != '{' {
		return nil, "", &FieldError{Field: at, Msg: "does not hold a JSON object"}
	}
	return inner, at, nil
}

// liteMinBody is the body size above which decodeAuditLite pays off.
const liteMinBody = 512

// decodeAuditLite decodes an audit event whose request/response objects are
// large without making the JSON decoder walk them: the typed view is decoded
// from a copy of the document where those values are replaced by null, and
// the objects are attached as raw spans of the original (exactly what
// runtime.Unknown would have held). The scanner already knows the spans, and
// it skips strings with a vectorised search, so this is several times faster
// on bodies of kilobytes. It reports false to fall back to the plain path
// (small bodies, or any error, which the plain path then reports precisely).
func decodeAuditLite(data []byte, p *probe, ev *auditv1.Event) bool {
	n := 0
	for _, b := range p.bodies {
		n += b.end - b.start
	}
	if n < liteMinBody {
		return false
	}
	lite := make([]byte, 0, len(data)-n+8)
	prev := 0
	for _, b := range spansInOrder(p.bodies) {
		lite = append(lite, data[prev:b.start]...)
		lite = append(lite, "null"...)
		prev = b.end
	}
	lite = append(lite, data[prev:]...)
	if err := fastJSON.Unmarshal(lite, ev); err != nil {
		*ev = auditv1.Event{}
		return false
	}
	for i, b := range p.bodies {
		if b.end == 0 {
			continue
		}
		u := &runtime.Unknown{Raw: data[b.start:b.end:b.end], ContentType: runtime.ContentTypeJSON}
		if i == 0 {
			ev.RequestObject = u
		} else {
			ev.ResponseObject = u
		}
	}
	return true
}

func spansInOrder(b [2]span) []span {
	var out []span
	for _, s := range b {
		if s.end > 0 {
			out = append(out, s)
		}
	}
	if len(out) == 2 && out[1].start < out[0].start {
		out[0], out[1] = out[1], out[0]
	}
	return out
}

// normaliseAuditTimes rewrites the two timestamps of an audit event in the
// RFC 3339 micro format MicroTime insists on. ok is false when nothing could
// be fixed.
func normaliseAuditTimes(data []byte) ([]byte, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(data, &m) != nil {
		return nil, false
	}
	changed := false
	for _, k := range []string{"requestReceivedTimestamp", "stageTimestamp"} {
		var s string
		if raw, ok := m[k]; !ok || json.Unmarshal(raw, &s) != nil || s == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, false
		}
		m[k], _ = json.Marshal(t.UTC().Format("2006-01-02T15:04:05.000000Z07:00"))
		changed = true
	}
	if !changed {
		return nil, false
	}
	out, err := json.Marshal(m)
	return out, err == nil
}

// fastJSON decodes typed views. json-iterator honours the standard library's
// tags and json.Unmarshaler implementations (MicroTime, runtime.Unknown) and
// is several times faster on audit events, where most bytes are nested
// request/response objects it only has to skip.
var fastJSON = jsoniter.ConfigCompatibleWithStandardLibrary

// unmarshalTyped decodes data into v quickly; on failure it decodes again with
// encoding/json, whose errors name the field, and returns that outcome.
func unmarshalTyped[T any](data []byte, v *T) error {
	if err := fastJSON.Unmarshal(data, v); err == nil {
		return nil
	}
	var zero T
	*v = zero
	return json.Unmarshal(data, v)
}

func rawSlices(raw []json.RawMessage) [][]byte {
	out := make([][]byte, len(raw))
	for i, r := range raw {
		out[i] = r
	}
	return out
}

// isAudit recognises audit events, including old ones without apiVersion/kind.
func isAudit(p *probe) bool {
	if strings.HasPrefix(p.APIVersion, "audit.k8s.io/") {
		return p.Kind == "Event" || p.Kind == ""
	}
	return p.APIVersion == "" && (p.Kind == "Event" || p.Kind == "") && (p.AuditID != "" || p.Stage != "")
}

func (d *Decoder) emitAudit(dc doc, ev *auditv1.Event, raw []byte, path string) {
	d.emit(dc, path, func() (*Record, error) { return NewAudit(ev, raw, d.opts.Cluster, d.opts.Now()) })
}

func (d *Decoder) emit(dc doc, path string, build func() (*Record, error)) {
	r, err := build()
	if err != nil {
		d.fail(dc, prefixField(path, err))
		return
	}
	d.pending = append(d.pending, result{rec: r})
}

// jsonError turns encoding/json errors into FieldErrors naming the field, or
// syntax errors with their offset.
func jsonError(path string, err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "(document)"
		}
		return &FieldError{Field: join(path, field), Msg: fmt.Sprintf("cannot use JSON %s as %s", te.Value, te.Type)}
	case errors.As(err, &se):
		return &syntaxError{msg: se.Error(), offset: se.Offset}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &syntaxError{msg: "unexpected end of JSON input"}
	}
	// Errors from custom unmarshalers (times, quantities) carry no field name.
	return &FieldError{Field: orDoc(path), Msg: err.Error()}
}

func prefixField(path string, err error) error {
	var fe *FieldError
	if path != "" && errors.As(err, &fe) {
		return &FieldError{Field: join(path, fe.Field), Msg: fe.Msg}
	}
	return err
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func orDoc(path string) string {
	if path == "" {
		return "(document)"
	}
	return path
}

func quoteOr(s, empty string) string {
	if s == "" {
		return empty
	}
	return fmt.Sprintf("%q", s)
}
