package record

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// JSON reading primitives of the hand-written decoders (audit_fast.go,
// wire_fast.go, generic.go): walking an object's members, strings, numbers.
// Each accepts only what encoding/json accepts and reads it the same; what
// they refuse, the callers leave to the general decoders.

// eachMember calls fn with the spans of each key (without its quotes) and
// value of the JSON object that is the whole of data (surrounding
// whitespace allowed). It reports false when data is not such an object, a
// key has escapes or control characters, or fn returns false. Values are
// only delimited (valueEnd), not checked: fn checks those it reads.
func eachMember(data []byte, fn func(m member) bool) bool {
	return walkMembers(data, valueEnd, fn)
}

// walkMembers is eachMember with end finding (or refusing, -1) each value.
func walkMembers(data []byte, end func([]byte, int) int, fn func(m member) bool) bool {
	i := skipWS(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i = skipWS(data, i+1)
	if i < len(data) && data[i] == '}' {
		return skipWS(data, i+1) == len(data)
	}
	for i < len(data) {
		if data[i] != '"' {
			return false
		}
		kEnd, esc := stringEnd(data, i)
		if kEnd < 0 || esc || hasControl(data[i+1:kEnd-1]) {
			return false
		}
		key := span{i + 1, kEnd - 1}
		i = skipWS(data, kEnd)
		if i >= len(data) || data[i] != ':' {
			return false
		}
		i = skipWS(data, i+1)
		e := end(data, i)
		if e <= i || !fn(member{key: key, val: span{i, e}}) {
			return false
		}
		i = skipWS(data, e)
		if i >= len(data) {
			return false
		}
		switch data[i] {
		case '}':
			return skipWS(data, i+1) == len(data)
		case ',':
			i = skipWS(data, i+1)
		default:
			return false
		}
	}
	return false
}

// eachKeyValue calls fn with each key and value of the object val, as eachMember
// does.
func eachKeyValue(val []byte, fn func(key, v []byte) bool) bool {
	return eachMember(val, func(m member) bool {
		return fn(val[m.key.start:m.key.end], val[m.val.start:m.val.end])
	})
}

// eachField calls fn with the index in names of each member of the object
// val, and the member's value. A member of another name is skipped when its
// value is valid JSON; one whose name matches names[i] in another case, or
// comes twice, is refused: encoding/json matches names case-insensitively
// and merges repeated members, and the general decoders decide those.
func eachField(val []byte, names []string, fn func(i int, v []byte) bool) bool {
	return walkFields(val, names, true, fn)
}

// eachOnlyField is eachField for an object read by hand only when it holds
// nothing but names: a member of any other name is refused too, and the
// caller's general path reads the object whole.
func eachOnlyField(val []byte, names []string, fn func(i int, v []byte) bool) bool {
	return walkFields(val, names, false, fn)
}

func walkFields(val []byte, names []string, skipOthers bool, fn func(i int, v []byte) bool) bool {
	var seen uint64
	return eachKeyValue(val, func(key, v []byte) bool {
		i := indexOf(names, key)
		if i < 0 {
			return skipOthers && ignored(key, v, names)
		}
		if seen&(1<<i) != 0 {
			return false
		}
		seen |= 1 << i
		return fn(i, v)
	})
}

// ignored accepts the value of a key the decoder does not read, when it is
// valid JSON and the key is not a known one in another case (which the
// general decoders would match case-insensitively).
func ignored(key, val []byte, known []string) bool {
	for _, k := range known {
		if strings.EqualFold(k, string(key)) {
			return false
		}
	}
	return validJSON(val)
}

func isNull(val []byte) bool { return string(val) == "null" }

// generalJSON reads a rare part of a document (a status with causes, a
// user's extra, flags) with the general decoder, into dst. It declines
// invalid UTF-8, which json-iterator keeps and encoding/json replaces, as
// the hand-written readers do: what they accept, encoding/json reads the
// same.
func generalJSON(val []byte, dst any) bool {
	return utf8.Valid(val) && validJSON(val) && fastJSON.Unmarshal(val, dst) == nil
}

// jsonString reads a JSON string (or null, which leaves dst as it is, as
// encoding/json does). Escapes are decoded by JSON's rules; control
// characters and invalid UTF-8 (which encoding/json replaces) are refused.
func jsonString(val []byte, dst *string) bool { return readString(val, dst, false) }

// commonString is jsonString for fields whose values repeat from event to
// event (verb, resource, group names): common values are shared (intern).
func commonString(val []byte, dst *string) bool { return readString(val, dst, true) }

func readString(val []byte, dst *string, common bool) bool {
	if isNull(val) {
		return true
	}
	if len(val) < 2 || val[0] != '"' || val[len(val)-1] != '"' {
		return false
	}
	in := val[1 : len(val)-1]
	if plainASCII(in) {
		if common {
			*dst = intern(in)
		} else {
			*dst = string(in)
		}
		return true
	}
	if hasControl(in) || !utf8.Valid(in) {
		return false
	}
	if bytes.IndexByte(in, '\\') < 0 {
		*dst = string(in)
		return true
	}
	s, ok := unescape(in)
	if ok {
		*dst = s
	}
	return ok
}

// plainASCII reports whether b holds only printable ASCII and no
// backslash — nearly every string of an audit event, which then needs no
// further check — eight bytes at a time: a byte below 0x20 or equal to
// '\\' shows as a borrow into its high bit, a byte from 0x80 up as its own.
func plainASCII(b []byte) bool {
	for len(b) >= 8 {
		x := binary.LittleEndian.Uint64(b)
		y := x ^ (0x5c * lo8)
		if ((x-0x20*lo8)&^x|x|(y-lo8)&^y)&hi8 != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c < 0x20 || c >= 0x80 || c == '\\' {
			return false
		}
	}
	return true
}

func hasControl(b []byte) bool {
	for _, c := range b {
		if c < 0x20 {
			return true
		}
	}
	return false
}

// unescape decodes the escapes of a JSON string's contents.
func unescape(in []byte) (string, bool) {
	out, ok := appendUnescaped(make([]byte, 0, len(in)), in)
	if !ok || len(out) == 0 {
		return "", ok
	}
	// out is this function's own and never written again.
	return unsafe.String(&out[0], len(out)), true
}

// appendUnescaped appends the decoded contents of a JSON string to out.
// The stretches between escapes are copied whole.
func appendUnescaped(out, in []byte) ([]byte, bool) {
	for {
		k := bytes.IndexByte(in, '\\')
		if k < 0 {
			return append(out, in...), true
		}
		out = append(out, in[:k]...)
		in = in[k+1:] // past the backslash
		if len(in) == 0 {
			return out, false
		}
		n := 1 // bytes of in the escape takes after its backslash
		switch in[0] {
		case '"', '\\', '/':
			out = append(out, in[0])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(in, 1)
			if !ok {
				return out, false
			}
			n = 5
			if utf16.IsSurrogate(r) {
				// A pair decodes to one rune; a lone half is refused
				// (encoding/json replaces it with U+FFFD: let it).
				if len(in) < 11 || in[5] != '\\' || in[6] != 'u' {
					return out, false
				}
				r2, ok := hex4(in, 7)
				dec := utf16.DecodeRune(r, r2)
				if !ok || dec == utf8.RuneError {
					return out, false
				}
				r, n = dec, 11
			}
			out = utf8.AppendRune(out, r)
		default:
			return out, false
		}
		in = in[n:]
	}
}

func hex4(in []byte, i int) (rune, bool) {
	if i+4 > len(in) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(in[i:i+4]), 16, 32)
	return rune(n), err == nil
}

// jsonInt reads a JSON integer: no sign but '-', no leading zeros, no
// fraction or exponent (which an int field refuses).
func jsonInt(val []byte) (int64, bool) {
	d := val
	if len(d) > 0 && d[0] == '-' {
		d = d[1:]
	}
	if len(d) == 0 || len(d) > 1 && d[0] == '0' {
		return 0, false
	}
	for _, c := range d {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(val), 10, 64)
	return n, err == nil
}

func indexOf(names []string, key []byte) int {
	for i, n := range names {
		if n == string(key) {
			return i
		}
	}
	return -1
}
