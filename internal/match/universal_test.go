package match

import "testing"

func TestCanMatch(t *testing.T) {
	for _, tc := range []struct {
		expr          string
		can, nonEmpty bool
	}{
		{`.*`, true, true},
		{`exec-.*`, true, true},
		{``, true, false},
		{`x{0}`, true, false},
		{`(?:)|()`, true, false},
		{`^$`, true, false},
		{`[^\s\S]`, false, false},
		{`[^\s\S]*`, true, false},
		{`[^\s\S]+`, false, false},
		{`a[^\s\S]`, false, false},
		{`a|[^\s\S]`, true, true},
		{`(?:[^\s\S]){2,3}`, false, false},
		{`(?:[^\s\S]){0,3}`, true, false},
		{`a{0,0}b?`, true, true},
	} {
		can, ne := canMatch(tc.expr)
		if can != tc.can || ne != tc.nonEmpty {
			t.Errorf("canMatch(%q) = %v, %v; want %v, %v", tc.expr, can, ne, tc.can, tc.nonEmpty)
		}
	}
}

func TestMatchesAllDomains(t *testing.T) {
	closed := Domain{Values: []string{"x", "y", ""}}
	for _, tc := range []struct {
		matcher string
		d       Domain
		want    bool
	}{
		{`a=~x|y|`, closed, true},
		{`a=~x|y`, closed, false},
		{`a!=z`, closed, true},
		{`a!=`, closed, false},
		{`a=`, Domain{}, false},
		{`a!=`, Domain{Required: true}, true},
		{`a!=`, Domain{}, false},
		{`a=~.+`, Domain{Required: true}, true},
		{`a=~.+`, Domain{}, false},
		{`a!~""`, Domain{Required: true}, true},
		{`a!~""`, Domain{}, false},
	} {
		m, err := Parse(tc.matcher)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.MatchesAll(tc.d); got != tc.want {
			t.Errorf("%s in %+v: %v, want %v", tc.matcher, tc.d, got, tc.want)
		}
	}
}

// FuzzMatchesAll: when MatchesAll says a negated regex matches every value
// (the regex can match none), no value the fuzzer finds is matched by the
// regex; and when it says a regex matches every value, the regex matches
// every probe.
func FuzzMatchesAll(f *testing.F) {
	f.Add(`[^\s\S]`, "a")
	f.Add(`x{0}`, "")
	f.Add(`a^b`, "ab")
	f.Add(`(?s).*`, "a\nb")
	f.Fuzz(func(t *testing.T, expr, v string) {
		for _, d := range []Domain{{}, {Required: true}} {
			neg, err := New("a", NotRegexp, expr)
			if err != nil {
				return
			}
			if neg.MatchesAll(d) && (v != "" || !d.Required) && neg.hit(v) {
				t.Fatalf("a!~%q counted as matching every value (required %v), but the regex matches %q", expr, d.Required, v)
			}
			pos, _ := New("a", Regexp, expr)
			if pos.MatchesAll(d) {
				for _, p := range probes {
					if (p != "" || !d.Required) && !pos.hit(p) {
						t.Fatalf("a=~%q counted as matching every value, but not probe %q", expr, p)
					}
				}
			}
		}
	})
}
