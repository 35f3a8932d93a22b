package record

import (
	"bytes"
	"unicode/utf16"
	"unicode/utf8"
)

// envelopeFields are the envelope's members, in Marshal's order.
var envelopeFields = []string{"schema", "id", "cluster", "source", "api_version", "event_time", "observed_time", "key", "initial_list", "flags", "object"}

// unmarshalEnvelopeFast reads the envelope of a Kafka message field by field
// instead of with a reflective decoder: the processor decodes one per
// message. Like decodeAuditFast it takes only the plain shape (exact-case
// keys, each at most once, values of the field's type) and reports false on
// anything else, for Unmarshal's general path to decide. Every byte of the
// object is checked by validValue (which allocates nothing), so it accepts
// an envelope only when encoding/json does (FuzzEnvelopeFast).
//
// For an audit record the object is checked in the same walk that finds its
// top-level members, which go to p (with p.valid set) for decodeAuditFast.
func unmarshalEnvelopeFast(data []byte, r *Record, p *probe) bool {
	ok := eachField(data, envelopeFields, func(i int, val []byte) bool { return envelopeField(i, val, r) })
	if ok && r.Object != nil {
		ok = validObject(r, p)
	}
	if !ok {
		*r = Record{}
		p.nmembers, p.bodies, p.valid = 0, [2]span{}, false
	}
	return ok
}

// validObject checks r.Object; for an audit event it records its top-level
// members in p as scanProbe would.
func validObject(r *Record, p *probe) bool {
	obj := []byte(r.Object)
	if r.Source != SourceAudit || obj[0] != '{' {
		end, ok := validValue(obj, 0, 0)
		return ok && end == len(obj)
	}
	ok := walkMembers(obj, validEnd, func(m member) bool {
		if p.nmembers < len(p.members) {
			p.members[p.nmembers] = m
		}
		p.nmembers++
		switch string(obj[m.key.start:m.key.end]) {
		case "requestObject":
			if obj[m.val.start] == '{' {
				p.bodies[0] = m.val
			}
		case "responseObject":
			if obj[m.val.start] == '{' {
				p.bodies[1] = m.val
			}
		}
		return true
	})
	p.valid = ok
	return ok
}

// validEnd is validValue for walkMembers: the end of the value, -1 when it
// is not valid.
func validEnd(data []byte, i int) int {
	end, ok := validValue(data, i, 1)
	if !ok {
		return -1
	}
	return end
}

func envelopeField(i int, val []byte, r *Record) bool {
	switch envelopeFields[i] {
	case "schema":
		if isNull(val) {
			return true
		}
		n, ok := jsonInt(val)
		r.Schema = int(n)
		return ok && int64(r.Schema) == n
	case "id":
		return jsonString(val, &r.ID)
	case "cluster":
		return isNull(val) || clusterOf(val, &r.Cluster)
	case "source":
		return commonString(val, (*string)(&r.Source))
	case "api_version":
		return commonString(val, &r.APIVersion)
	case "event_time":
		return isNull(val) || val[0] == '"' && r.EventTime.UnmarshalJSON(val) == nil
	case "observed_time":
		return isNull(val) || val[0] == '"' && r.ObservedTime.UnmarshalJSON(val) == nil
	case "key":
		return jsonString(val, &r.Key)
	case "initial_list":
		switch string(val) {
		case "true":
			r.InitialList = true
		case "false", "null":
		default:
			return false
		}
		return true
	case "flags":
		// Rare (an edited record): the general decoder is fine.
		return generalJSON(val, &r.Flags)
	default: // object, checked by validObject once the source is known
		// A copy: callers reuse the buffers they hand over (a scanner's
		// line), and the record outlives the call.
		r.Object = bytes.Clone(val)
		return true
	}
}

var clusterFields = []string{"name", "uid"}

func clusterOf(val []byte, c *Cluster) bool {
	return eachField(val, clusterFields, func(i int, v []byte) bool {
		if i == 0 {
			return jsonString(v, &c.Name)
		}
		return jsonString(v, &c.UID)
	})
}

// validValue checks the JSON value at data[i] by the grammar ParseObject
// reads (strings by readString's rules, numbers by parseNumber's) without
// building it, and returns the index after it.
func validValue(data []byte, i, depth int) (int, bool) {
	if i >= len(data) || depth > maxGenericDepth {
		return 0, false
	}
	switch c := data[i]; c {
	case '{', '[':
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		i = skipWS(data, i+1)
		if i < len(data) && data[i] == closing {
			return i + 1, true
		}
		for i < len(data) {
			if c == '{' {
				end, ok := validString(data, i)
				if !ok {
					return 0, false
				}
				i = skipWS(data, end)
				if i >= len(data) || data[i] != ':' {
					return 0, false
				}
				i = skipWS(data, i+1)
			}
			end, ok := validValue(data, i, depth+1)
			if !ok {
				return 0, false
			}
			i = skipWS(data, end)
			if i >= len(data) {
				return 0, false
			}
			switch data[i] {
			case closing:
				return i + 1, true
			case ',':
				i = skipWS(data, i+1)
			default:
				return 0, false
			}
		}
		return 0, false
	case '"':
		return validString(data, i)
	case 't':
		_, end, ok := literal(data, i, "true", nil)
		return end, ok
	case 'f':
		_, end, ok := literal(data, i, "false", nil)
		return end, ok
	case 'n':
		_, end, ok := literal(data, i, "null", nil)
		return end, ok
	default:
		if c == '-' || c >= '0' && c <= '9' {
			return numberEnd(data, i)
		}
		return 0, false
	}
}

// validString checks the string at data[i] as readString reads it —
// escapes by JSON's rules, no control characters, valid UTF-8 — without
// decoding it.
func validString(data []byte, i int) (int, bool) {
	if i >= len(data) || data[i] != '"' {
		return 0, false
	}
	end, esc := stringEnd(data, i)
	if end < 0 {
		return 0, false
	}
	in := data[i+1 : end-1]
	if plainASCII(in) {
		return end, true
	}
	if hasControl(in) || !utf8.Valid(in) {
		return 0, false
	}
	for j := 0; esc && j < len(in); j++ {
		if in[j] != '\\' {
			continue
		}
		j++
		switch in[j] { // stringEnd guarantees a byte after a backslash
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		case 'u':
			r, ok := hex4(in, j+1)
			if !ok || utf16.IsSurrogate(r) {
				return 0, false // surrogates, paired or not, are rare here: the general path decides
			}
			j += 4
		default:
			return 0, false
		}
	}
	return end, true
}
