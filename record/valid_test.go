package record

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestValidJSON(t *testing.T) {
	for _, tc := range []string{
		``, ` `, `{}`, `[]`, ` {"a":1} `, `{"a":1,}`, `[1,]`, `{"a" 1}`, `{"a":1 "b":2}`, `{a:1}`, `[1 2]`,
		`"x"`, `"\u00e9\n\"\\\/\b\f\r\t"`, `"\x"`, `"\u12"`, `"\u12g4"`, `"a` + "\x01" + `b"`, `"` + "\xff\xfe" + `"`,
		`"unterminated`, `"a\"`, `true`, `tru`, `false `, `nul`, `null,`, `-0`, `-`, `01`, `1.`, `1.5e+10`, `1e`,
		`-01.5`, `[[[[]]]]`, `[[[[]]]`, `{"a":{"b":[1,2,{"c":null}]}}`, `{"a":1}{"b":2}`, `{"a":1}x`, "\t[\n1\r]\n",
		strings.Repeat("[", 10001) + strings.Repeat("]", 10001), strings.Repeat("[", 9999) + strings.Repeat("]", 9999),
		`{"managedFields":[{"manager":"kubectl","fieldsV1":{"f:metadata":{"f:labels":{".":{}}}}}]}`,
	} {
		if got, want := validJSON([]byte(tc)), json.Valid([]byte(tc)); got != want {
			t.Errorf("validJSON(%.60q) = %v, json.Valid says %v", tc, got, want)
		}
	}
	// What records hold must take the fast walk, or validJSON is no faster
	// than json.Valid.
	for _, tc := range []string{auditV1, coreEvent, `{"managedFields":[{"manager":"kubectl","fieldsV1":{"f:metadata":{"f:labels":{".":{}}}}}]}`} {
		if _, ok := validValue([]byte(tc), 0, 0); !ok {
			t.Errorf("validValue refuses %.60q", tc)
		}
	}
}

// FuzzValidJSON holds validJSON to json.Valid.
func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{`{"a":[1,-2.5e3,true,false,null,"\u00e9\n"]}`, `[`, `"\ud800"`, `{"a":1,}`, auditV1, coreEvent} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if got, want := validJSON(data), json.Valid(data); got != want {
			t.Fatalf("validJSON = %v, json.Valid = %v for %q", got, want, data)
		}
	})
}
