package record

import (
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// ParseObject parses a JSON object (a request or response body) into the
// generic shapes encoding/json produces for `any` — map[string]any, []any,
// float64, string, bool, nil — with the scanner's primitives instead of a
// reflective decoder, so a rule that reads a body costs no type dispatch and
// about one allocation per map, list or boxed value (the strings share one
// buffer, see genericParser). It reports false, having parsed nothing, for
// input it leaves to encoding/json: invalid JSON, strings with invalid UTF-8
// or lone surrogates (which encoding/json replaces), numbers out of float64's
// range, and nesting deeper than maxGenericDepth. FuzzParseObject checks
// it against encoding/json.
func ParseObject(data []byte) (map[string]any, bool) { return parseTop(data, objAll) }

// parseStored is ParseObject for a stored object (a response body),
// leaving out metadata.managedFields: which client last set which field,
// which no rule judges, and a large part of every stored object, decoded
// into many small maps. The part left out is still checked to be JSON, so
// what is accepted does not depend on it.
func parseStored(data []byte) (map[string]any, bool) { return parseTop(data, objStored) }

// parseTop parses data, a JSON object and nothing else, leaving out what
// what says.
func parseTop(data []byte, what int) (map[string]any, bool) {
	i := skipWS(data, 0)
	if i >= len(data) || data[i] != '{' {
		return nil, false
	}
	p := genericParser{data: data}
	v, end, ok := p.object(i, 0, what)
	if !ok || skipWS(data, end) != len(data) {
		return nil, false
	}
	return v.(map[string]any), true
}

// genericParser parses one document. The strings it returns (keys and
// values) are views of one buffer, strs, that it fills as it goes, instead
// of one allocation each: a Kubernetes object has dozens of short strings,
// and an allocation costs more than copying one. No string's bytes change
// once handed out (strs only grows at its end, or is replaced), so the views
// are as immutable as any Go string; they keep strs alive while any of them
// is.
type genericParser struct {
	data []byte
	strs []byte
}

// str returns b as a string held in p.strs. Unescaped strings are never
// longer than their JSON form, so the first buffer, the size of the
// document, holds them all and is allocated only when a string needs it.
func (p *genericParser) str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if cap(p.strs)-len(p.strs) < len(b) {
		p.strs = make([]byte, 0, max(len(p.data), len(b)))
	}
	off := len(p.strs)
	p.strs = append(p.strs, b...)
	return unsafe.String(&p.strs[off], len(b))
}

// string reads the JSON string data[i:end] by jsonString's rules; esc is
// stringEnd's report of a backslash in it.
func (p *genericParser) string(i, end int, esc bool) (string, bool) {
	in := p.data[i+1 : end-1]
	if !esc && plainASCII(in) {
		return p.str(in), true
	}
	if hasControl(in) || !utf8.Valid(in) {
		return "", false
	}
	if !esc {
		return p.str(in), true
	}
	if cap(p.strs)-len(p.strs) < len(in) {
		p.strs = make([]byte, 0, max(len(p.data), len(in)))
	}
	off := len(p.strs)
	out, ok := appendUnescaped(p.strs, in)
	if !ok {
		return "", false
	}
	p.strs = out
	if len(out) == off {
		return "", true
	}
	return unsafe.String(&out[off], len(out)-off), true
}

// What parseObject leaves out of the object it parses.
const (
	objAll      = iota
	objStored   // a stored object: its metadata is objMetadata
	objMetadata // a stored object's metadata: no managedFields
)

// maxGenericDepth bounds ParseObject's recursion; Kubernetes objects nest a
// few dozen levels at most.
const maxGenericDepth = 256

// parseValue parses the value at data[i] and returns it with the index
// after it.
func (p *genericParser) value(i, depth int) (any, int, bool) {
	data := p.data
	if i >= len(data) || depth > maxGenericDepth {
		return nil, 0, false
	}
	switch c := data[i]; c {
	case '{':
		return p.object(i, depth, objAll)
	case '[':
		return p.array(i, depth)
	case '"':
		end, esc := stringEnd(data, i)
		if end < 0 {
			return nil, 0, false
		}
		s, ok := p.string(i, end, esc)
		if !ok {
			return nil, 0, false
		}
		return s, end, true
	case 't':
		return literal(data, i, "true", true)
	case 'f':
		return literal(data, i, "false", false)
	case 'n':
		return literal(data, i, "null", nil)
	default:
		if c == '-' || c >= '0' && c <= '9' {
			return parseNumber(data, i)
		}
		return nil, 0, false
	}
}

func literal(data []byte, i int, word string, v any) (any, int, bool) {
	if len(data)-i < len(word) || string(data[i:i+len(word)]) != word {
		return nil, 0, false
	}
	return v, i + len(word), true
}

func (p *genericParser) object(i, depth, what int) (any, int, bool) {
	data := p.data
	m := map[string]any{}
	i = skipWS(data, i+1)
	if i < len(data) && data[i] == '}' {
		return m, i + 1, true
	}
	for i < len(data) {
		if data[i] != '"' {
			return nil, 0, false
		}
		kEnd, esc := stringEnd(data, i)
		if kEnd < 0 {
			return nil, 0, false
		}
		key, ok := p.string(i, kEnd, esc)
		if !ok {
			return nil, 0, false
		}
		i = skipWS(data, kEnd)
		if i >= len(data) || data[i] != ':' {
			return nil, 0, false
		}
		i = skipWS(data, i+1)
		var v any
		var end int
		keep := true
		switch {
		case what == objStored && key == "metadata" && i < len(data) && data[i] == '{':
			v, end, ok = p.object(i, depth+1, objMetadata)
		case what == objMetadata && key == "managedFields":
			end, keep = valueEnd(data, i), false
			ok = end >= 0 && validJSON(data[i:end])
		default:
			v, end, ok = p.value(i, depth+1)
		}
		if !ok {
			return nil, 0, false
		}
		if keep {
			m[key] = v
		}
		i = skipWS(data, end)
		if i >= len(data) {
			return nil, 0, false
		}
		switch data[i] {
		case '}':
			return m, i + 1, true
		case ',':
			i = skipWS(data, i+1)
		default:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

func (p *genericParser) array(i, depth int) (any, int, bool) {
	data := p.data
	out := []any{}
	i = skipWS(data, i+1)
	if i < len(data) && data[i] == ']' {
		return out, i + 1, true
	}
	for i < len(data) {
		v, end, ok := p.value(i, depth+1)
		if !ok {
			return nil, 0, false
		}
		out = append(out, v)
		i = skipWS(data, end)
		if i >= len(data) {
			return nil, 0, false
		}
		switch data[i] {
		case ']':
			return out, i + 1, true
		case ',':
			i = skipWS(data, i+1)
		default:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// parseNumber reads a number by JSON's grammar (numberEnd) into a float64.
func parseNumber(data []byte, i int) (any, int, bool) {
	j, ok := numberEnd(data, i)
	if !ok {
		return nil, 0, false
	}
	f, err := strconv.ParseFloat(string(data[i:j]), 64)
	if err != nil {
		return nil, 0, false
	}
	return f, j, true
}

// numberEnd returns the index after the number at data[i] by JSON's
// grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func numberEnd(data []byte, i int) (int, bool) {
	j := i
	if data[j] == '-' {
		j++
	}
	digits := func() int {
		k := j
		for j < len(data) && data[j] >= '0' && data[j] <= '9' {
			j++
		}
		return j - k
	}
	switch {
	case j < len(data) && data[j] == '0':
		j++
	case digits() == 0:
		return 0, false
	}
	if j < len(data) && data[j] == '.' {
		j++
		if digits() == 0 {
			return 0, false
		}
	}
	if j < len(data) && (data[j] == 'e' || data[j] == 'E') {
		j++
		if j < len(data) && (data[j] == '+' || data[j] == '-') {
			j++
		}
		if digits() == 0 {
			return 0, false
		}
	}
	return j, true
}
