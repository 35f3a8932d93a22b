package match

import (
	"strings"
	"testing"
)

func TestParseAndMatch(t *testing.T) {
	l := Labels{
		"severity": {"critical"},
		"tag":      {"workload", "privileged"},
		"cluster":  {"prod-eu"},
	}
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{`severity=critical`, true},
		{`severity = "critical"`, true},
		{`severity!=critical`, false},
		{`severity=~"high|critical"`, true},
		{`severity=~crit`, false}, // anchored
		{`severity!~"info|low"`, true},
		{`tag=privileged`, true},
		{`tag!=privileged`, false},
		{`tag!=other`, true},
		{`tag=~"priv.*"`, true},
		{`tag!~"priv.*"`, false},
		{`namespace=`, true}, // absent label is ""
		{`namespace!=`, false},
		{`namespace=~".+"`, false},
		{`cluster="prod-eu"`, true},
		{`cluster="a,b"`, false},
		// Values starting with an operator character keep their meaning
		// through String (the round trip below): "~" is a value, not =~.
		{`cluster="~"`, false},
		{`cluster="=prod-eu"`, false},
		{`cluster!="!x"`, true},
	} {
		m, err := Parse(tc.in)
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if got := m.Matches(l); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.in, got, tc.want)
		}
		// The string form reads back to the same matcher.
		back, err := Parse(m.String())
		if err != nil || back.Name != m.Name || back.Op != m.Op || back.Value != m.Value {
			t.Errorf("%s: round trip %q -> %+v, %v", tc.in, m.String(), back, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{``, "want name=value"},
		{`severity`, "want name=value"},
		{`=x`, "want name=value"},
		{`sev erity=x`, "label name"},
		{`1x=y`, "label name"},
		{`a=~"("`, "invalid regular expression"},
		{`a="unterminated`, "bad quoted value"},
		{`a!x`, "want name=value"},
	} {
		_, err := Parse(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want error containing %q", tc.in, err, tc.want)
		}
	}
	if _, err := ParseAll([]string{"a=b", "bad"}); err == nil || !strings.HasPrefix(err.Error(), "[1]: ") {
		t.Errorf("ParseAll: got %v, want an error naming [1]", err)
	}
}

func TestGetJoinsSorted(t *testing.T) {
	l := Labels{"tag": {"b", "a"}, "one": {"x"}}
	if got := l.Get("tag"); got != "a,b" {
		t.Errorf("Get(tag) = %q", got)
	}
	if got := l.Get("one") + l.Get("none"); got != "x" {
		t.Errorf("Get = %q", got)
	}
}

// FuzzParse: Parse never panics, and what it accepts renders to a string
// that parses back to the same matcher.
func FuzzParse(f *testing.F) {
	for _, s := range []string{`a=b`, `a!="x y"`, `a=~".*"`, `a!~b|c`, `a="\u00e9"`, `a==b`, `a=~(`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := Parse(s)
		if err != nil {
			return
		}
		back, err := Parse(m.String())
		if err != nil {
			t.Fatalf("%q -> %q does not parse: %v", s, m.String(), err)
		}
		if back.Name != m.Name || back.Op != m.Op || back.Value != m.Value {
			t.Fatalf("%q -> %q -> %+v, want %+v", s, m.String(), back, m)
		}
	})
}
