package match

import (
	"regexp/syntax"
	"slices"
	"strings"
)

// Domain is what a label can hold on an alert, as far as MatchesAll needs
// to know.
type Domain struct {
	// Required: every alert has the label, with a value that is not empty.
	Required bool
	// Values, when not nil, is every value the label can take (a closed
	// set such as the severities); Required is then not consulted.
	Values []string
}

// MatchesAll reports whether m holds on every alert, whatever the value set
// of its label within d: the labels of an alert are independent, so a set
// of matchers matches every alert exactly when each of its matchers does.
//
// For = and != on an open domain and for every operator on a closed one the
// answer is exact. For =~ it is a heuristic that errs towards true: the
// regex is tried on a fixed set of probe values (empty unless Required,
// ASCII, punctuation, Unicode, control bytes, invalid UTF-8, 4 KiB long),
// and one that matches them all counts as matching everything. Label values
// are single-line names, so a regex that fails only on line breaks (as `.`
// does) still counts. For !~ the regex's syntax tree is examined for
// whether it can match any value at all (`[^\s\S]`, `x{0}` with Required);
// empty-width assertions are taken to be satisfiable, so an impossible
// regex that relies on them (`a^b`) is not recognised.
func (m *Matcher) MatchesAll(d Domain) bool {
	if d.Values != nil {
		// A label's values are a set: = and =~ must hit every possible
		// value, != and !~ none.
		neg := m.Op == NotEqual || m.Op == NotRegexp
		for _, v := range d.Values {
			if m.hit(v) == neg {
				return false
			}
		}
		return true
	}
	switch m.Op {
	case Equal:
		return false // an open domain has values other than one
	case NotEqual:
		return d.Required && m.Value == ""
	case Regexp:
		for _, p := range probes {
			if (p != "" || !d.Required) && !m.hit(p) {
				return false
			}
		}
		return true
	case NotRegexp:
		for _, p := range probes {
			if (p != "" || !d.Required) && m.hit(p) {
				return false
			}
		}
		can, nonEmpty := canMatch(m.Value)
		if d.Required {
			return !nonEmpty
		}
		return !can
	}
	return false
}

// probes are the values a regex must match to count as matching every
// value (MatchesAll). Single-line by design: see MatchesAll.
var probes = []string{
	"", "a", "Z", "0", "9", "_", "-", ".", ":", "/", "\\", `"`, "'", "*", "=", ",", " ", "\t", "\x00", "\x7f", "\xff",
	"exec-in-pod", "k8s-privileged-pod", "kube-system", "system:serviceaccount:kube-system:default",
	"Privilege Escalation", "T1609.001", "CRITICAL", "-leading", "trailing-", "a b\tc",
	"é", "ß", "日本語", "🙂", "\u200b", "\ufeff",
	strings.Repeat("a", 4096), strings.Repeat("é-", 700),
}

// canMatch reports whether the regex (compiled anchored, as New does) can
// match some value, and some non-empty value. A regex that does not parse
// here did not parse in New either, so cannot reach this; it reports true.
func canMatch(expr string) (can, nonEmpty bool) {
	re, err := syntax.Parse("(?:"+expr+")", syntax.Perl)
	if err != nil {
		return true, true
	}
	return reach(re.Simplify())
}

// reach is canMatch on a syntax tree.
func reach(re *syntax.Regexp) (can, nonEmpty bool) {
	switch re.Op {
	case syntax.OpNoMatch:
		return false, false
	case syntax.OpLiteral:
		return true, len(re.Rune) > 0
	case syntax.OpCharClass:
		return len(re.Rune) > 0, len(re.Rune) > 0
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return true, true
	case syntax.OpCapture, syntax.OpPlus:
		return reach(re.Sub[0])
	case syntax.OpStar, syntax.OpQuest:
		_, ne := reach(re.Sub[0])
		return true, ne
	case syntax.OpRepeat:
		c, ne := reach(re.Sub[0])
		if re.Min == 0 {
			return true, ne && re.Max != 0
		}
		return c, c && ne
	case syntax.OpConcat:
		can, nonEmpty = true, false
		for _, s := range re.Sub {
			c, ne := reach(s)
			can, nonEmpty = can && c, nonEmpty || ne
		}
		return can, can && nonEmpty
	case syntax.OpAlternate:
		for _, s := range re.Sub {
			c, ne := reach(s)
			can, nonEmpty = can || c, nonEmpty || ne
		}
		return can, nonEmpty
	}
	// Empty-width: the empty match and the assertions (^, $, \b, \A, \z).
	return true, false
}

// MatchEverything reports whether the non-empty set ms matches every alert,
// given the domains of the labels (dom; a label not in it is optional and
// open): whether each of its matchers does (MatchesAll).
func MatchEverything(ms []*Matcher, dom map[string]Domain) bool {
	return len(ms) > 0 && !slices.ContainsFunc(ms, func(m *Matcher) bool { return m == nil || !m.MatchesAll(dom[m.Name]) })
}
