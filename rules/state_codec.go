package rules

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// The changelog encoding of one group of one stateful rule (see Scope).
//
// Key: uvarint length + input topic, uvarint length + rule id, then the
// group key (the rest). Value: version byte, kind byte, the rule's
// fingerprint (8 bytes: its stateful definition, so that a changed rule
// starts empty instead of reading windows it did not make), an input
// offset (varint: the checkpoint's; 0 in a group's value), then the kind's
// payload. Times are Unix nanoseconds (varint), 0 for the zero time.
//
// The checkpoint of an input topic's partition has the empty rule id and
// group key and kind kindCheckpoint; its offset is that of the last record
// whose changes precede it in the changelog.

const codecVersion = 1

// Kinds of state in a changelog value.
const (
	kindThreshold byte = 1 + iota
	kindDistinct
	kindSequence
	kindNewTerm
	kindCheckpoint
)

// ErrStateValue is wrapped by every error decoding a changelog key or value.
var ErrStateValue = errors.New("rule state: bad changelog entry")

// stateKey is the changelog key of group of rule, for input topic.
func stateKey(topic, rule, group string) []byte {
	b := make([]byte, 0, len(topic)+len(rule)+len(group)+4)
	b = binary.AppendUvarint(b, uint64(len(topic)))
	b = append(b, topic...)
	b = binary.AppendUvarint(b, uint64(len(rule)))
	b = append(b, rule...)
	return append(b, group...)
}

// parseStateKey splits a changelog key into topic, rule id and group key.
func parseStateKey(k []byte) (topic, rule, group string, err error) {
	d := decoder{b: k}
	topic, rule = d.str(), d.str()
	if d.err != nil {
		return "", "", "", fmt.Errorf("%w: key: %v", ErrStateValue, d.err)
	}
	return topic, rule, string(d.b), nil
}

// valueHeader is the part of a changelog value before the payload.
type valueHeader struct {
	kind byte
	fp   uint64
	pos  int64
}

func appendHeader(b []byte, h valueHeader) []byte {
	b = append(b, codecVersion, h.kind)
	b = binary.BigEndian.AppendUint64(b, h.fp)
	return binary.AppendVarint(b, h.pos)
}

// parseHeader reads the header of a changelog value and returns the payload.
func parseHeader(v []byte) (valueHeader, []byte, error) {
	if len(v) < 10 {
		return valueHeader{}, nil, fmt.Errorf("%w: value of %d bytes is shorter than its header", ErrStateValue, len(v))
	}
	if v[0] != codecVersion {
		return valueHeader{}, nil, fmt.Errorf("%w: value version %d, want %d", ErrStateValue, v[0], codecVersion)
	}
	h := valueHeader{kind: v[1], fp: binary.BigEndian.Uint64(v[2:10])}
	d := decoder{b: v[10:]}
	h.pos = d.varint()
	if d.err != nil {
		return valueHeader{}, nil, fmt.Errorf("%w: value offset: %v", ErrStateValue, d.err)
	}
	return h, d.b, nil
}

// decoder reads the payload encoding; the first error sticks and later
// reads return zero values, so a codec checks d.err once at its end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = errors.New(what)
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("truncated or overlong uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("truncated or overlong varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// count reads a list length; each element takes at least one byte, so a
// length beyond the bytes left is an error rather than an allocation.
func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail(fmt.Sprintf("list of %d elements in %d bytes", n, len(d.b)))
		return 0
	}
	return int(n)
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(fmt.Sprintf("string of %d bytes in %d", n, len(d.b)))
		return nil
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) str() string { return string(d.bytes()) }

func (d *decoder) time() time.Time {
	ns := d.varint()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	return binary.AppendVarint(b, t.UnixNano())
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTimes(b []byte, ts []time.Time) []byte {
	b = binary.AppendUvarint(b, uint64(len(ts)))
	for _, t := range ts {
		b = appendTime(b, t)
	}
	return b
}

func (d *decoder) times() []time.Time {
	n := d.count()
	if n == 0 {
		return nil
	}
	ts := make([]time.Time, n)
	for i := range ts {
		ts[i] = d.time()
	}
	return ts
}

// end checks that the payload was read whole.
func (d *decoder) end() error {
	if d.err == nil && len(d.b) > 0 {
		d.fail(fmt.Sprintf("%d bytes after the payload", len(d.b)))
	}
	if d.err != nil {
		return fmt.Errorf("%w: %v", ErrStateValue, d.err)
	}
	return nil
}

// Threshold: fired, then the kept match times, oldest first.

func (s *thresholdState) appendValue(b []byte, r *ring) []byte {
	b = appendTime(b, r.fired)
	b = binary.AppendUvarint(b, uint64(r.n))
	for i := range r.n {
		b = appendTime(b, r.t[(r.next-r.n+i+len(r.t))%len(r.t)])
	}
	return b
}

// decodeValue rebuilds a ring for the rule's current count, keeping the
// newest times when the encoded ring held more.
func (s *thresholdState) decodeValue(d *decoder) *ring {
	fired := d.time()
	ts := d.times()
	if len(ts) > s.count {
		ts = ts[len(ts)-s.count:]
	}
	r := &ring{t: make([]time.Time, s.count), fired: fired, n: len(ts), next: len(ts) % s.count}
	copy(r.t, ts)
	return r
}

func (s *thresholdState) newest(r *ring) time.Time {
	t := r.fired
	for i := range r.n {
		t = later(t, r.t[(r.next-r.n+i+len(r.t))%len(r.t)])
	}
	return t
}

// Distinct: fired, then (value, last seen) pairs.

func (s *distinctState) appendValue(b []byte, g *distinctGroup) []byte {
	b = appendTime(b, g.fired)
	b = binary.AppendUvarint(b, uint64(len(g.seen)))
	for v, t := range g.seen {
		b = appendStr(b, v)
		b = appendTime(b, t)
	}
	return b
}

func (s *distinctState) decodeValue(d *decoder) *distinctGroup {
	g := &distinctGroup{fired: d.time()}
	n := d.count()
	g.seen = make(map[string]time.Time, n)
	for range n {
		v := d.str()
		g.seen[v] = d.time()
	}
	return g
}

func (s *distinctState) newest(g *distinctGroup) time.Time {
	t := g.fired
	for _, seen := range g.seen {
		t = later(t, seen)
	}
	return t
}

// Sequence: steps done, start, first-step times, then last steps (time,
// fired, and the alert made ready while it has not fired, in JSON).

func (s *sequenceState) appendValue(b []byte, p *seqProgress) []byte {
	b = binary.AppendUvarint(b, uint64(p.done))
	b = appendTime(b, p.start)
	b = appendTimes(b, p.firsts)
	b = binary.AppendUvarint(b, uint64(len(p.lasts)))
	for _, l := range p.lasts {
		b = appendTime(b, l.t)
		if l.fired {
			b = append(b, 1)
			continue
		}
		a, err := json.Marshal(l.alert)
		if err != nil {
			a = nil // plain data: cannot fail; an empty alert would not fire
		}
		b = append(b, 0)
		b = binary.AppendUvarint(b, uint64(len(a)))
		b = append(b, a...)
	}
	return b
}

func (s *sequenceState) decodeValue(d *decoder) *seqProgress {
	p := &seqProgress{done: int(min(d.uvarint(), uint64(s.steps))), start: d.time(), firsts: d.times()}
	n := d.count()
	for range n {
		l := lastStep{t: d.time(), fired: d.byte() == 1}
		if !l.fired {
			if a := d.bytes(); d.err == nil {
				if err := json.Unmarshal(a, &l.alert); err != nil {
					d.fail("last step's alert: " + err.Error())
				}
			}
		}
		p.lasts = append(p.lasts, l)
	}
	if len(p.firsts) > pairMemory {
		p.firsts = p.firsts[len(p.firsts)-pairMemory:]
	}
	if len(p.lasts) > pairMemory {
		p.lasts = p.lasts[len(p.lasts)-pairMemory:]
	}
	return p
}

func (s *sequenceState) newest(p *seqProgress) time.Time {
	t := p.start
	for _, f := range p.firsts {
		t = later(t, f)
	}
	for _, l := range p.lasts {
		t = later(t, l.t)
	}
	return t
}

// New term: when the term was last seen.

func (s *newTermState) appendValue(b []byte, t time.Time) []byte { return appendTime(b, t) }
func (s *newTermState) decodeValue(d *decoder) time.Time         { return d.time() }
func (s *newTermState) newest(t time.Time) time.Time             { return t }

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
