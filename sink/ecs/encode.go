package ecs

import (
	"math"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Append-style encoding of audit documents. Audit records are nearly all of
// the processor's documents, and encoding them by reflection (docJSON) was
// about half of the builder's CPU and a dozen allocations per record. The
// functions here write exactly the bytes docJSON writes for the same
// auditDocument — field order, omitempty, string escaping, sorted map keys,
// time format — which TestAuditEncodingMatchesReflection and FuzzRecord
// check against docJSON itself. Anything this encoder does not reproduce
// byte for byte (a time encoding/json refuses, a risk score) makes it
// report !ok, and the caller falls back to docJSON.

// scratch holds the encoding buffers; the document body is copied out of
// it at its exact size, so the buffer never escapes into a sink.Doc.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

// maxPooled keeps one huge document from pinning a huge buffer in the pool.
const maxPooled = 1 << 20

// encodeAudit returns the JSON of d, or ok false if docJSON must do it.
func encodeAudit(d *auditDocument) (body []byte, ok bool) {
	bp := scratch.Get().(*[]byte)
	b, ok := d.appendJSON((*bp)[:0])
	if ok {
		body = make([]byte, len(b))
		copy(body, b)
	}
	if cap(b) <= maxPooled {
		*bp = b[:0]
		scratch.Put(bp)
	}
	return body, ok
}

// hex digits for \u00XX escapes.
const hexDigits = "0123456789abcdef"

// appendString writes s as docJSON's WriteString does with EscapeHTML off:
// only '"', '\\' and control bytes are escaped (\n, \r, \t by name, others
// as \u00XX); other bytes, invalid UTF-8 included, are copied (validUTF8
// repairs the whole document afterwards).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if strPlain[c] { // >= 0x20, not '"' or '\\'
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
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendTime writes t as time.Time's MarshalJSON does; ok is false for the
// times MarshalJSON refuses (year outside 0-9999, zone hour >= 24), where
// docJSON fails the document with that error.
func appendTime(b []byte, t time.Time) ([]byte, bool) {
	if y := t.Year(); y < 0 || y > 9999 {
		return b, false
	}
	if _, off := t.Zone(); off <= -24*3600 || off >= 24*3600 {
		return b, false
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), true
}

// appendStrings writes a []string (nil as null, as docJSON does for a nil
// slice that is not omitted).
func appendStrings(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

// sortedKeys returns m's keys in docJSON's SortMapKeys order (byte order of
// the key strings).
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// appendMap writes m as a JSON object with sorted keys, each value by
// value (appendString for map[string]string, appendStrings for
// map[string][]string).
func appendMap[V any](b []byte, m map[string]V, value func([]byte, V) []byte) []byte {
	b = append(b, '{')
	for i, k := range sortedKeys(m) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = value(b, m[k])
	}
	return append(b, '}')
}

// obj writes the members of one JSON object: the comma before every member
// but the first, which is what omitempty members make hard to hard-code.
type jsonObj struct {
	b     []byte
	first bool
}

func openObj(b []byte) jsonObj { return jsonObj{b: append(b, '{'), first: true} }

// key starts a member; name is written as is (the names here are constants
// that need no escaping).
func (o *jsonObj) key(name string) {
	if !o.first {
		o.b = append(o.b, ',')
	}
	o.first = false
	o.b = append(o.b, '"')
	o.b = append(o.b, name...)
	o.b = append(o.b, '"', ':')
}

func (o *jsonObj) str(name, v string) {
	o.key(name)
	o.b = appendString(o.b, v)
}

// strOmit is a string member with omitempty.
func (o *jsonObj) strOmit(name, v string) {
	if v != "" {
		o.str(name, v)
	}
}

// stringsOmit is a []string member with omitempty.
func (o *jsonObj) stringsOmit(name string, v []string) {
	if len(v) > 0 {
		o.key(name)
		o.b = appendStrings(o.b, v)
	}
}

func (o *jsonObj) time(name string, t time.Time) bool {
	o.key(name)
	var ok bool
	o.b, ok = appendTime(o.b, t)
	return ok
}

// intOmit is an integer member with omitempty.
func (o *jsonObj) intOmit(name string, v int64) {
	if v != 0 {
		o.key(name)
		o.b = strconv.AppendInt(o.b, v, 10)
	}
}

// timePtr is a *time.Time member with omitempty.
func (o *jsonObj) timePtr(name string, t *time.Time) bool {
	if t == nil {
		return true
	}
	return o.time(name, *t)
}

func (o *jsonObj) close() []byte { return append(o.b, '}') }

func (d *auditDocument) appendJSON(b []byte) ([]byte, bool) {
	o := openObj(b)
	if !o.time("@timestamp", d.Timestamp) {
		return nil, false
	}
	o.key("event")
	var ok bool
	if o.b, ok = d.Event.appendJSON(o.b); !ok {
		return nil, false
	}
	if u := d.User; u != nil {
		o.key("user")
		u2 := openObj(o.b)
		u2.strOmit("name", u.Name)
		u2.strOmit("id", u.ID)
		if g := u.Group; g != nil {
			u2.key("group")
			g2 := openObj(u2.b)
			g2.stringsOmit("name", g.Name)
			u2.b = g2.close()
		}
		o.b = u2.close()
	}
	if s := d.Source; s != nil {
		o.key("source")
		if o.b, ok = s.appendJSON(o.b); !ok {
			return nil, false
		}
	}
	if ua := d.UserAgent; ua != nil {
		o.key("user_agent")
		u2 := openObj(o.b)
		u2.str("original", ua.Original)
		o.b = u2.close()
	}
	o.key("orchestrator")
	o.b = d.Orchestrator.appendJSON(o.b)
	o.key("data_stream")
	o.b = d.DataStream.appendJSON(o.b)
	o.key("kubernetes")
	k := openObj(o.b)
	k.key("audit")
	if k.b, ok = d.Kubernetes.Audit.appendJSON(k.b); !ok {
		return nil, false
	}
	o.b = k.close()
	o.key("kubesift")
	ks := openObj(o.b)
	ks.key("record")
	if ks.b, ok = d.Kubesift.Record.appendJSON(ks.b); !ok {
		return nil, false
	}
	if src := d.Kubesift.Source; src != nil {
		ks.key("source")
		s2 := openObj(ks.b)
		s2.str("class", src.Class)
		s2.stringsOmit("lists", src.Lists)
		ks.b = s2.close()
	}
	o.b = ks.close()
	return o.close(), true
}

func (e *event) appendJSON(b []byte) ([]byte, bool) {
	if e.Risk != 0 {
		return nil, false // float formatting: left to docJSON
	}
	o := openObj(b)
	o.str("kind", e.Kind)
	o.stringsOmit("category", e.Category)
	o.stringsOmit("type", e.Type)
	o.strOmit("action", e.Action)
	o.strOmit("outcome", e.Outcome)
	o.str("dataset", e.Dataset)
	o.str("id", e.ID)
	if !o.timePtr("created", e.Created) || !o.time("ingested", e.Ingested) {
		return nil, false
	}
	o.intOmit("severity", int64(e.Severity))
	return o.close(), true
}

func (c *orchestrator) appendJSON(b []byte) []byte {
	o := openObj(b)
	o.str("type", c.Type)
	o.key("cluster")
	cl := openObj(o.b)
	cl.strOmit("name", c.Cluster.Name)
	cl.strOmit("id", c.Cluster.ID)
	o.b = cl.close()
	o.strOmit("namespace", c.Namespace)
	if r := c.Resource; r != nil {
		o.key("resource")
		r2 := openObj(o.b)
		r2.strOmit("type", r.Type)
		r2.strOmit("name", r.Name)
		o.b = r2.close()
	}
	return o.close()
}

func (ds *dataStream) appendJSON(b []byte) []byte {
	o := openObj(b)
	o.str("type", ds.Type)
	o.str("dataset", ds.Dataset)
	o.str("namespace", ds.Namespace)
	return o.close()
}

func (k *auditFields) appendJSON(b []byte) ([]byte, bool) {
	o := openObj(b)
	o.strOmit("apiVersion", k.APIVersion)
	o.strOmit("kind", k.Kind)
	o.strOmit("level", k.Level)
	o.str("auditID", k.AuditID)
	o.str("stage", k.Stage)
	o.strOmit("requestURI", k.RequestURI)
	o.strOmit("verb", k.Verb)
	if k.User != nil {
		o.key("user")
		o.b = k.User.appendJSON(o.b)
	}
	if k.ImpersonatedUser != nil {
		o.key("impersonatedUser")
		o.b = k.ImpersonatedUser.appendJSON(o.b)
	}
	o.stringsOmit("sourceIPs", k.SourceIPs)
	o.strOmit("userAgent", k.UserAgent)
	if r := k.ObjectRef; r != nil {
		o.key("objectRef")
		r2 := openObj(o.b)
		r2.strOmit("resource", r.Resource)
		r2.strOmit("namespace", r.Namespace)
		r2.strOmit("name", r.Name)
		r2.strOmit("uid", r.UID)
		r2.strOmit("apiGroup", r.APIGroup)
		r2.strOmit("apiVersion", r.APIVersion)
		r2.strOmit("resourceVersion", r.ResourceVersion)
		r2.strOmit("subresource", r.Subresource)
		o.b = r2.close()
	}
	if s := k.ResponseStatus; s != nil {
		o.key("responseStatus")
		s2 := openObj(o.b)
		s2.intOmit("code", int64(s.Code))
		s2.strOmit("status", s.Status)
		s2.strOmit("message", s.Message)
		s2.strOmit("reason", s.Reason)
		o.b = s2.close()
	}
	// Bodies are written as they are, as docJSON writes a json.RawMessage.
	if len(k.RequestObject) > 0 {
		o.key("requestObject")
		o.b = append(o.b, k.RequestObject...)
	}
	if len(k.ResponseObject) > 0 {
		o.key("responseObject")
		o.b = append(o.b, k.ResponseObject...)
	}
	if !o.timePtr("requestReceivedTimestamp", k.RequestReceivedTimestamp) || !o.timePtr("stageTimestamp", k.StageTimestamp) {
		return nil, false
	}
	if len(k.Annotations) > 0 {
		o.key("annotations")
		o.b = appendMap(o.b, k.Annotations, appendString)
	}
	return o.close(), true
}

func (u *auditUser) appendJSON(b []byte) []byte {
	o := openObj(b)
	o.strOmit("username", u.Username)
	o.strOmit("uid", u.UID)
	o.stringsOmit("groups", u.Groups)
	if len(u.Extra) > 0 {
		o.key("extra")
		o.b = appendMap(o.b, u.Extra, appendStrings)
	}
	return o.close()
}

func (m *recordMeta) appendJSON(b []byte) ([]byte, bool) {
	o := openObj(b)
	o.str("id", m.ID)
	o.str("source", m.Source)
	o.strOmit("api_version", m.APIVersion)
	o.strOmit("key", m.Key)
	if !o.time("observed_time", m.ObservedTime) {
		return nil, false
	}
	if m.Truncated {
		o.key("truncated")
		o.b = append(o.b, "true"...)
	}
	o.stringsOmit("redacted", m.Redacted)
	o.stringsOmit("body_dropped", m.BodyDropped)
	o.stringsOmit("dropped_fields", m.DroppedFields)
	return o.close(), true
}

func (s *source) appendJSON(b []byte) ([]byte, bool) {
	o := openObj(b)
	o.str("ip", s.IP)
	if g := s.Geo; g != nil {
		o.key("geo")
		g2 := openObj(o.b)
		g2.strOmit("continent_code", g.ContinentCode)
		g2.strOmit("continent_name", g.ContinentName)
		g2.strOmit("country_iso_code", g.CountryISOCode)
		g2.strOmit("country_name", g.CountryName)
		g2.strOmit("region_iso_code", g.RegionISOCode)
		g2.strOmit("region_name", g.RegionName)
		g2.strOmit("city_name", g.CityName)
		if l := g.Location; l != nil {
			g2.key("location")
			l2 := openObj(g2.b)
			var ok bool
			l2.key("lat")
			if l2.b, ok = appendFloat(l2.b, l.Lat); !ok {
				return nil, false
			}
			l2.key("lon")
			if l2.b, ok = appendFloat(l2.b, l.Lon); !ok {
				return nil, false
			}
			g2.b = l2.close()
		}
		o.b = g2.close()
	}
	if as := s.AS; as != nil {
		o.key("as")
		a2 := openObj(o.b)
		a2.intOmit("number", int64(as.Number))
		if org := as.Organization; org != nil {
			a2.key("organization")
			o2 := openObj(a2.b)
			o2.str("name", org.Name)
			a2.b = o2.close()
		}
		o.b = a2.close()
	}
	return o.close(), true
}

// appendFloat writes f exactly as docJSON does (plain notation for
// 1e-6 <= |f| < 1e21 and 0, strconv's exponent notation beyond: 1e-09);
// ok is false for NaN and infinities, which it refuses.
func appendFloat(b []byte, f float64) ([]byte, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return b, false
	}
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	return strconv.AppendFloat(b, f, format, -1, 64), true
}
