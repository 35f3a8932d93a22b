// Package match is the label matcher language of kubesift's alert routing,
// inhibition and silences, in Alertmanager's syntax: name=value,
// name!=value, name=~regex, name!~regex. Values may be double-quoted (Go
// string syntax), which they must be when they contain a comma, a space or a
// quote. Regular expressions are anchored (they must match the whole value)
// and are compiled once, when the matcher is parsed.
//
// An alert's labels can have several values (an alert has several tags and
// MITRE techniques), so a matcher is defined over value sets: = and =~ hold
// when some value matches; != and !~ hold when no value matches. An absent
// label has the single value "", as in Alertmanager, so "namespace=" matches
// alerts without a namespace and "namespace!=" those with one.
//
// It lives under internal, below both internal/config (which compiles
// matchers when the config is loaded) and sink/notify (which evaluates them),
// and imports only the standard library.
package match

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Op is a matcher's comparison.
type Op int

// The four comparisons.
const (
	Equal     Op = iota // =
	NotEqual            // !=
	Regexp              // =~
	NotRegexp           // !~
)

func (o Op) String() string {
	switch o {
	case Equal:
		return "="
	case NotEqual:
		return "!="
	case Regexp:
		return "=~"
	case NotRegexp:
		return "!~"
	}
	return "?"
}

// Labels are an alert's labels: each name has zero or more values.
type Labels map[string][]string

// Get returns the label's values joined by "," in sorted order: the form
// used in group keys and in payloads whose labels are single strings.
func (l Labels) Get(name string) string {
	v := l[name]
	switch len(v) {
	case 0:
		return ""
	case 1:
		return v[0]
	}
	s := append([]string(nil), v...)
	sort.Strings(s)
	return strings.Join(s, ",")
}

// AlertLabelNames are the labels sink/notify derives from a rules.Alert, and
// so the only names routes, inhibit rules, silences and group_by may use
// (configuration validation refuses others, which catches typos that would
// otherwise make a route silently match nothing). tactic, technique and tag
// have one value per MITRE tactic, technique and rule tag.
var AlertLabelNames = []string{
	"severity", "rule_id", "title", "source", "cluster", "namespace",
	"user", "verb", "resource", "name", "tactic", "technique", "tag", "alertname",
}

// KnownName reports whether name is one of AlertLabelNames.
func KnownName(name string) bool {
	for _, n := range AlertLabelNames {
		if n == name {
			return true
		}
	}
	return false
}

// Matcher is one compiled comparison of a label against a value.
type Matcher struct {
	Name  string
	Op    Op
	Value string
	re    *regexp.Regexp
}

// New builds a matcher, compiling a regular expression once.
func New(name string, op Op, value string) (*Matcher, error) {
	if !validName(name) {
		return nil, fmt.Errorf("label name %q is invalid (letters, digits and _, not starting with a digit)", name)
	}
	m := &Matcher{Name: name, Op: op, Value: value}
	switch op {
	case Equal, NotEqual:
	case Regexp, NotRegexp:
		re, err := regexp.Compile("^(?:" + value + ")$")
		if err != nil {
			return nil, fmt.Errorf("label %s: invalid regular expression: %w", name, err)
		}
		m.re = re
	default:
		return nil, fmt.Errorf("label %s: unknown operator %d", name, op)
	}
	return m, nil
}

// Parse reads one matcher such as `severity=~"high|critical"`.
func Parse(s string) (*Matcher, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexAny(s, "=!")
	if i <= 0 {
		return nil, fmt.Errorf("matcher %q: want name=value, name!=value, name=~regex or name!~regex", s)
	}
	name := strings.TrimSpace(s[:i])
	rest := s[i:]
	var op Op
	switch {
	case strings.HasPrefix(rest, "=~"):
		op, rest = Regexp, rest[2:]
	case strings.HasPrefix(rest, "!~"):
		op, rest = NotRegexp, rest[2:]
	case strings.HasPrefix(rest, "!="):
		op, rest = NotEqual, rest[2:]
	case strings.HasPrefix(rest, "="):
		op, rest = Equal, rest[1:]
	default:
		return nil, fmt.Errorf("matcher %q: want name=value, name!=value, name=~regex or name!~regex", s)
	}
	value := strings.TrimSpace(rest)
	if strings.HasPrefix(value, `"`) {
		v, err := strconv.Unquote(value)
		if err != nil {
			return nil, fmt.Errorf("matcher %q: bad quoted value: %w", s, err)
		}
		value = v
	}
	return New(name, op, value)
}

// ParseAll parses several matchers; the error names the index of the bad one.
func ParseAll(ss []string) ([]*Matcher, error) {
	out := make([]*Matcher, 0, len(ss))
	for i, s := range ss {
		m, err := Parse(s)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		out = append(out, m)
	}
	return out, nil
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// Matches reports whether the labels satisfy the matcher.
func (m *Matcher) Matches(l Labels) bool {
	vals := l[m.Name]
	if len(vals) == 0 {
		vals = []string{""}
	}
	found := false
	for _, v := range vals {
		if m.hit(v) {
			found = true
			break
		}
	}
	if m.Op == NotEqual || m.Op == NotRegexp {
		return !found
	}
	return found
}

// hit is the positive comparison of one value (= or =~, also for the
// negated operators, whose result Matches inverts over the whole set).
func (m *Matcher) hit(v string) bool {
	if m.re != nil {
		return m.re.MatchString(v)
	}
	return v == m.Value
}

// String renders the matcher so that Parse reads it back.
func (m *Matcher) String() string {
	v := m.Value
	// Quote a value that would not read back as itself: empty, with
	// separators or escapes, or starting with an operator character — an
	// unquoted `a=~x` for the value "~x" would read back as the regex
	// operator (found by FuzzParse; silences are stored in this form).
	if v == "" || strings.ContainsAny(v, "\", \t\n\\") || strings.ContainsAny(v[:1], "~=!") || strconv.Quote(v) != `"`+v+`"` {
		v = strconv.Quote(v)
	}
	return m.Name + m.Op.String() + v
}

// MarshalText writes the matcher in its string form (JSON silences).
func (m *Matcher) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText parses the string form.
func (m *Matcher) UnmarshalText(b []byte) error {
	p, err := Parse(string(b))
	if err != nil {
		return err
	}
	*m = *p
	return nil
}

// All reports whether every matcher matches (true for none).
func All(ms []*Matcher, l Labels) bool {
	for _, m := range ms {
		if !m.Matches(l) {
			return false
		}
	}
	return true
}
