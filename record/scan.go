package record

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/bits"
	"strconv"
	"unicode/utf8"
)

// errScan means the fast scanner could not classify a document; the caller
// falls back to encoding/json, which also produces the precise error.
var errScan = errors.New("scan")

// scanProbe fills p from the top level of a JSON object in one pass without
// decoding nested values: string values of the keys the classifier needs,
// and the raw extent of items, protoPayload, properties, involvedObject and
// regarding. It is several times faster than json.Unmarshal into the probe
// struct (which validates, then decodes, every nested byte) and the decoders
// validate the document anyway when they read the typed view.
func scanProbe(data []byte, p *probe) error {
	ok := eachMember(data, func(m member) bool {
		if p.nmembers < len(p.members) {
			p.members[p.nmembers] = m
		}
		p.nmembers++
		val := data[m.val.start:m.val.end]
		switch string(data[m.key.start:m.key.end]) {
		case "kind":
			return scanString(val, &p.Kind)
		case "apiVersion":
			return scanString(val, &p.APIVersion)
		case "auditID":
			return scanString(val, &p.AuditID)
		case "stage":
			return scanString(val, &p.Stage)
		case "items":
			p.Items = val
		case "protoPayload":
			p.ProtoPayload = val
		case "properties", "timestamp", "records", "logEvents", "events":
			return false // rare wrappers and old v1beta1 fields: the slow path knows them
		case "requestObject":
			if val[0] == '{' {
				p.bodies[0] = m.val
			}
		case "responseObject":
			if val[0] == '{' {
				p.bodies[1] = m.val
			}
		case "involvedObject":
			p.InvolvedObject = val
		case "regarding":
			p.Regarding = val
		}
		return true
	})
	if !ok {
		return errScan
	}
	return nil
}

func skipWS(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// stringEnd returns the index after the closing quote of the string starting
// at data[i], and whether it contains escapes; -1 if unterminated. Most
// strings of an audit event (keys, verbs, names) are a few bytes long, where
// a plain loop beats the call of a vectorised search; past shortString bytes
// it jumps from quote to quote with IndexByte and checks the stretch for a
// backslash, walking byte by byte only from one.
func stringEnd(data []byte, i int) (int, bool) {
	esc := false
	j := i + 1
	short := min(j+shortString, len(data))
	for j < short {
		// Eight bytes at a time: a byte equal to the quote or the
		// backslash is zero after XOR with it, and shows as a borrow into
		// its high bit. The lowest flagged byte of a word is always a true
		// match (a false one appears only above a true one), which is all
		// this needs: the first quote ends the string unless a backslash
		// comes before it.
		if j+8 > len(data) {
			switch c := data[j]; {
			case c == '"':
				return j + 1, esc
			case c == '\\':
				esc = true
				j += 2
			default:
				j++
			}
			continue
		}
		x := binary.LittleEndian.Uint64(data[j:])
		q, b := x^(0x22*lo8), x^(0x5c*lo8)
		mq, mb := (q-lo8)&^q&hi8, (b-lo8)&^b&hi8
		switch {
		case mq != 0 && (mb == 0 || bits.TrailingZeros64(mq) < bits.TrailingZeros64(mb)):
			return j + bits.TrailingZeros64(mq)/8 + 1, esc
		case mb != 0:
			esc = true
			j += bits.TrailingZeros64(mb)/8 + 2 // past the backslash and the byte it escapes
		default:
			j += 8
		}
	}
	for j < len(data) {
		k := bytes.IndexByte(data[j:], '"')
		if k < 0 {
			return -1, false
		}
		b := bytes.IndexByte(data[j:j+k], '\\')
		if b < 0 {
			return j + k + 1, esc
		}
		esc = true
		j += b + 2 // past the backslash and the byte it escapes
		for j < len(data) && data[j] != '"' {
			if data[j] == '\\' {
				j++
			}
			j++
		}
		if j < len(data) {
			return j + 1, true
		}
	}
	return -1, false
}

// shortString is how far stringEnd looks word by word before searching.
const shortString = 32

// lo8 and hi8 are the low and high bit of every byte of a word.
const (
	lo8 = 0x0101010101010101
	hi8 = 0x8080808080808080
)

// valueEnd returns the index after the JSON value starting at data[i], or -1.
// Nested objects and arrays are skipped by depth, strings by stringEnd.
func valueEnd(data []byte, i int) int {
	if i >= len(data) {
		return -1
	}
	switch data[i] {
	case '"':
		e, _ := stringEnd(data, i)
		return e
	case '{', '[':
		depth := 0
		for j := i; j < len(data); {
			switch data[j] {
			case '"':
				e, _ := stringEnd(data, j)
				if e < 0 {
					return -1
				}
				j = e
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
			j++
		}
		return -1
	default: // number, true, false, null
		j := i
		for j < len(data) {
			switch data[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return j
			}
			j++
		}
		return j
	}
}

// scanString reads a JSON string value (or null) into dst.
func scanString(val []byte, dst *string) bool {
	if string(val) == "null" {
		return true
	}
	if len(val) < 2 || val[0] != '"' {
		return false
	}
	if !utf8.Valid(val) {
		return false // encoding/json substitutes U+FFFD; let it
	}
	if bytes.IndexByte(val, '\\') < 0 {
		// kind, apiVersion and stage are common strings: shared, not copied.
		*dst = intern(val[1 : len(val)-1])
		return true
	}
	s, err := strconv.Unquote(string(val))
	if err != nil {
		return false
	}
	*dst = s
	return true
}

// splitArray returns the raw elements of a JSON array, or ok=false.
func splitArray(data []byte) (elems [][]byte, ok bool) {
	i := skipWS(data, 0)
	if i >= len(data) || data[i] != '[' {
		return nil, false
	}
	i = skipWS(data, i+1)
	if i < len(data) && data[i] == ']' {
		return nil, skipWS(data, i+1) == len(data)
	}
	for {
		e := valueEnd(data, i)
		if e < 0 {
			return nil, false
		}
		elems = append(elems, data[i:e])
		i = skipWS(data, e)
		if i >= len(data) {
			return nil, false
		}
		if data[i] == ']' {
			return elems, skipWS(data, i+1) == len(data)
		}
		if data[i] != ',' {
			return nil, false
		}
		i = skipWS(data, i+1)
	}
}
