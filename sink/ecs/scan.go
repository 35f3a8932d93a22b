package ecs

import (
	"bytes"
	"strconv"
)

// fastFit is fitBody's fast path: one pass over the raw body, without
// decoding it, that checks every value on a mapped path against its type,
// every member name against Elasticsearch's rules, and finds
// metadata.managedFields to cut out. ok is false when anything needs
// fixing (or the input is not plain compact JSON); fitBody then decodes
// and fixes the body. Clean bodies — nearly all — are copied at most once.
func fastFit(raw []byte) (out []byte, ok bool) {
	if bytes.IndexByte(raw, '\n') >= 0 || bytes.IndexByte(raw, '\r') >= 0 {
		return nil, false // pretty-printed: the slow path compacts it
	}
	s := scanner{b: raw}
	if !s.value(bodySchema, 0, 0) {
		return nil, false
	}
	s.ws()
	if s.i != len(s.b) {
		return nil, false
	}
	if len(s.cuts) == 0 {
		return raw, true
	}
	out = make([]byte, 0, len(raw))
	last := 0
	for _, c := range s.cuts {
		out = append(out, raw[last:c[0]]...)
		last = c[1]
	}
	return append(out, raw[last:]...), true
}

type scanner struct {
	b    []byte
	i    int
	cuts [][2]int // byte ranges of metadata.managedFields members, each with one comma
	// lenient > 0 while skipping managedFields: its names ("." in
	// fieldsV1) do not matter since it is cut out.
	lenient int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t':
			s.i++
		default:
			return
		}
	}
}

// value checks one value against schema node n (nil: unmapped). flat > 0
// is the object nesting still allowed inside a flattened field.
func (s *scanner) value(n *node, depth, flat int) bool {
	return s.member(n, depth, flat, false)
}

// member is value for an object member; inMetadata says the member is named
// "metadata" (whose managedFields are cut).
func (s *scanner) member(n *node, depth, flat int, inMetadata bool) bool {
	if depth > maxBodyDepth {
		return false
	}
	s.ws()
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '{':
		if n != nil {
			switch n.kind {
			case kFlattened:
				return s.object(nil, depth, flattenedDepth, false)
			case kObject:
			default:
				return false
			}
		}
		if flat > 0 {
			if flat == 1 {
				return false
			}
			flat--
		}
		return s.object(n, depth, flat, inMetadata)
	case c == '[':
		s.i++
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == ']' {
			s.i++
			return true
		}
		for {
			if !s.value(n, depth+1, flat) {
				return false
			}
			s.ws()
			if s.i >= len(s.b) {
				return false
			}
			switch s.b[s.i] {
			case ',':
				s.i++
			case ']':
				s.i++
				return true
			default:
				return false
			}
		}
	case c == '"':
		start := s.i
		if !s.str() {
			return false
		}
		if n == nil {
			return true
		}
		tok := s.b[start:s.i]
		switch n.kind {
		case kString:
			return true
		case kBool:
			return string(tok) == `"true"` || string(tok) == `"false"` || string(tok) == `""`
		case kLong:
			return inLongRange(tok[1 : len(tok)-1])
		}
		return false
	case c == 't' || c == 'f' || c == 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
				s.i += len(lit)
				if n == nil || lit == "null" {
					return true
				}
				return n.kind == kString || n.kind == kBool
			}
		}
		return false
	case c == '-' || (c >= '0' && c <= '9'):
		start := s.i
		if !s.number() {
			return false
		}
		if n == nil {
			return true
		}
		switch n.kind {
		case kString:
			return true
		case kLong:
			return inLongRange(s.b[start:s.i])
		}
		return false
	}
	return false
}

func (s *scanner) object(n *node, depth, flat int, metadata bool) bool {
	s.i++ // {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return true
	}
	prevEnd := -1 // end of the previous member's value
	for {
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return false
		}
		keyStart := s.i
		if !s.str() {
			return false
		}
		key := s.b[keyStart+1 : s.i-1]
		if s.lenient == 0 && (bytes.IndexByte(key, '\\') >= 0 || badFieldName(string(key))) {
			return false // escaped or refused names: the slow path decides
		}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		var child *node
		if n != nil {
			if dot := bytes.IndexByte(key, '.'); dot >= 0 && s.lenient == 0 {
				if _, mapped := n.children[string(key[:dot])]; mapped {
					return false
				}
			}
			child = n.children[string(key)]
		}
		// managedFields (server-side apply bookkeeping) is cut wherever an
		// object's metadata carries it: the object itself, Table rows, lists.
		managed := metadata && s.lenient == 0 && string(key) == "managedFields"
		if managed {
			s.lenient++
		}
		if !s.member(child, depth+1, flat, string(key) == "metadata") {
			return false
		}
		if managed {
			s.lenient--
		}
		valEnd := s.i
		s.ws()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			if managed {
				if prevEnd >= 0 {
					s.cuts = append(s.cuts, [2]int{prevEnd, valEnd})
				} else {
					s.ws()
					s.cuts = append(s.cuts, [2]int{keyStart, s.i})
				}
			}
			prevEnd = valEnd
		case '}':
			if managed {
				if prevEnd >= 0 {
					s.cuts = append(s.cuts, [2]int{prevEnd, valEnd})
				} else {
					s.cuts = append(s.cuts, [2]int{keyStart, valEnd})
				}
			}
			s.i++
			return true
		default:
			return false
		}
	}
}

// str skips a string token, s.i at its opening quote. It works on locals
// (the scanner's fields would be reloaded on every byte) with a table for
// the bytes that need no look; bodies are mostly string bytes.
func (s *scanner) str() bool {
	b, i := s.b, s.i+1
	for i < len(b) {
		c := b[i]
		if strPlain[c] {
			i++
			continue
		}
		switch c {
		case '"':
			s.i = i + 1
			return true
		case '\\':
			// Only JSON's escapes; anything else ("\0", "\x") is invalid
			// and must reach the slow path, which refuses the body.
			if i+1 >= len(b) {
				s.i = i
				return false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex4(b[i+2:i+6]) {
					s.i = i
					return false
				}
				i += 6
			default:
				s.i = i
				return false
			}
		default: // a control byte: not valid JSON
			s.i = i
			return false
		}
	}
	s.i = i
	return false
}

// strPlain marks the bytes a string token carries as they are.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func inLongRange(num []byte) bool {
	f, err := strconv.ParseFloat(string(num), 64)
	return err == nil && f >= -9.2e18 && f <= 9.2e18
}

func isHex4(h []byte) bool {
	for _, c := range h {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// number skips a number token by JSON's grammar
// (-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?): "1-2" or "01" must not
// pass the fast path as if it were valid.
func (s *scanner) number() bool {
	b, i := s.b, s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() bool {
		j := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i > j
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	s.i = i
	return true
}
