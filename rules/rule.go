package rules

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/kubesift/kubesift/record"
)

// Severity orders alerts. The zero value is invalid.
type Severity int

// Severities, lowest first.
const (
	SeverityInfo Severity = iota + 1
	SeverityLow
	SeverityMedium
	SeverityHigh
	SeverityCritical
)

var severityNames = []string{"", "info", "low", "medium", "high", "critical"}

func (s Severity) String() string {
	if s < SeverityInfo || s > SeverityCritical {
		return fmt.Sprintf("severity(%d)", int(s))
	}
	return severityNames[s]
}

// ParseSeverity parses info, low, medium, high or critical.
func ParseSeverity(s string) (Severity, error) {
	for i, n := range severityNames {
		if i > 0 && n == strings.ToLower(s) {
			return Severity(i), nil
		}
	}
	return 0, fmt.Errorf("severity %q is not one of info, low, medium, high, critical", s)
}

// UnmarshalYAML reads a severity name.
func (s *Severity) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseSeverity(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*s = v
	return nil
}

// MarshalYAML writes the severity name.
func (s Severity) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalText writes the severity name (JSON alerts).
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a severity name.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	*s = v
	return err
}

// Mitre names the ATT&CK tactics and techniques a rule detects.
type Mitre struct {
	Tactics    []string `yaml:"tactics" json:"tactics"`
	Techniques []string `yaml:"techniques" json:"techniques"`
}

// File is one rule file. Files are layered: the built-in pack first, then
// each user directory in order (files sorted by name). A later file can
// append to lists, redefine macros, add rules, and change existing rules
// through overrides — so users never edit the built-in pack.
type File struct {
	Macros    []Macro    `yaml:"macros"`
	Lists     []List     `yaml:"lists"`
	Rules     []Rule     `yaml:"rules"`
	Overrides []Override `yaml:"overrides"`

	// CISVersion names the CIS Kubernetes Benchmark version the cis ids of
	// object rules follow; one version for the whole set (a later layer that
	// sets it replaces the earlier one), carried by every posture finding.
	CISVersion string `yaml:"cis_version"`
}

// Macro is a named expr snippet usable in any condition by its name.
type Macro struct {
	Name      string `yaml:"name"`
	Condition string `yaml:"condition"`
	line      int
	file      string
}

// List is a named list of strings usable in any condition by its name.
type List struct {
	Name   string   `yaml:"name"`
	Items  []string `yaml:"items"`
	Append bool     `yaml:"append"` // add to an earlier list of this name instead of defining it
	line   int
	file   string
}

// Rule is one detection.
type Rule struct {
	ID          string   `yaml:"id"`
	Title       string   `yaml:"title"`
	Description string   `yaml:"description"`
	Severity    Severity `yaml:"severity"`
	Source      string   `yaml:"source"`
	// Condition is an expr boolean over the source's environment (see env.go).
	Condition string `yaml:"condition"`
	// Output is the alert message; {{ expr }} parts are evaluated on a match.
	Output     string      `yaml:"output"`
	Mitre      Mitre       `yaml:"mitre"`
	Tags       []string    `yaml:"tags"`
	Enabled    *bool       `yaml:"enabled"`
	Shadow     bool        `yaml:"shadow"` // evaluated and counted, never alerts
	References []string    `yaml:"references"`
	Exceptions []Exception `yaml:"exceptions"`
	// CIS lists the CIS Kubernetes Benchmark items an object rule checks
	// ("5.1.3"), numbered as the set's cis_version.
	CIS []string `yaml:"cis"`
	// Remediation tells the owner of a posture finding how to fix it.
	Remediation string `yaml:"remediation"`

	// GroupBy are expressions whose values form the group key of a stateful rule.
	GroupBy []string `yaml:"group_by"`
	// At most one of the stateful forms.
	Threshold *Threshold `yaml:"threshold"`
	Distinct  *Distinct  `yaml:"distinct"`
	Sequence  *Sequence  `yaml:"sequence"`
	NewTerm   *NewTerm   `yaml:"new_term"`

	line int
	file string
}

// Exception suppresses matches whose Field (an expr expression, usually a
// plain field such as user or namespace) compares true with one of Values.
// When the field is a list, every element must compare true.
type Exception struct {
	Name       string   `yaml:"name"`
	Field      string   `yaml:"field"`
	Comparison string   `yaml:"comparison"` // in (default) | prefix | glob | cidr
	Values     []string `yaml:"values"`
}

// Threshold fires when Count matching records of one group arrive within Window.
type Threshold struct {
	Count  int           `yaml:"count"`
	Window time.Duration `yaml:"window"`
	// Cooldown silences the group for this long (event time) after it
	// fired, so a client stuck in a loop alerts once, not every Count matches.
	Cooldown time.Duration `yaml:"cooldown"`
}

// Distinct fires when Field takes Count different values within Window in one group.
type Distinct struct {
	Field  string        `yaml:"field"`
	Count  int           `yaml:"count"`
	Window time.Duration `yaml:"window"`
	// Cooldown silences the group for this long after it fired.
	Cooldown time.Duration `yaml:"cooldown"`
}

// Sequence fires when its steps match in order, for one group, within Within.
// Each step may have its own group_by: the expressions that name the same
// identity in that step's records (e.g. a binding's subject, then the user
// who execs).
type Sequence struct {
	Within time.Duration `yaml:"within"`
	Steps  []Step        `yaml:"steps"`
}

// Step is one step of a sequence.
type Step struct {
	Condition string   `yaml:"condition"`
	GroupBy   []string `yaml:"group_by"`
}

// NewTerm fires the first time a group key (the rule's group_by values) is
// seen within Lookback.
type NewTerm struct {
	Lookback time.Duration `yaml:"lookback"`
}

// Override changes an existing rule from a later layer.
type Override struct {
	Rule     string   `yaml:"rule"`
	Enabled  *bool    `yaml:"enabled"`
	Shadow   *bool    `yaml:"shadow"`
	Severity Severity `yaml:"severity"`
	// Exceptions are appended; one with the name of an existing exception
	// appends its values to that exception instead.
	Exceptions []Exception `yaml:"exceptions"`
	line       int
	file       string
}

var (
	idPattern  = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
	cisPattern = regexp.MustCompile(`^[0-9]+(\.[0-9]+)*$`)
)

// parseFile decodes one rule file strictly (unknown keys are errors) and
// records the line of each element for later error messages.
func parseFile(name string, data []byte) (*File, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var f File
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if err.Error() == "EOF" {
			return &f, nil
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	// Attach lines: walk the top-level mapping's sequences in order.
	if len(root.Content) == 1 && root.Content[0].Kind == yaml.MappingNode {
		m := root.Content[0]
		for i := 0; i+1 < len(m.Content); i += 2 {
			seq := m.Content[i+1]
			lines := make([]int, len(seq.Content))
			for j, it := range seq.Content {
				lines[j] = it.Line
			}
			switch m.Content[i].Value {
			case "rules":
				for j := range f.Rules {
					f.Rules[j].line, f.Rules[j].file = lines[j], name
				}
			case "macros":
				for j := range f.Macros {
					f.Macros[j].line, f.Macros[j].file = lines[j], name
				}
			case "lists":
				for j := range f.Lists {
					f.Lists[j].line, f.Lists[j].file = lines[j], name
				}
			case "overrides":
				for j := range f.Overrides {
					f.Overrides[j].line, f.Overrides[j].file = lines[j], name
				}
			}
		}
	}
	return &f, nil
}

// where names a rule's location for errors: "file:line: rule id".
func (r *Rule) where() string { return fmt.Sprintf("%s:%d: rule %s", r.file, r.line, r.ID) }

// validate checks a rule's fields that need no compilation.
func (r *Rule) validate() []error {
	var errs []error
	add := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{r.where()}, a...)...))
	}
	if !idPattern.MatchString(r.ID) {
		add("id must be kebab-case")
	}
	if r.Title == "" {
		add("title is required")
	}
	if r.Severity == 0 {
		add("severity is required")
	}
	if !record.Source(r.Source).Valid() {
		add("source %q is not one of audit, event, object", r.Source)
	}
	if r.Condition == "" && r.Sequence == nil {
		add("condition is required")
	}
	forms := 0
	for _, set := range []bool{r.Threshold != nil, r.Distinct != nil, r.Sequence != nil, r.NewTerm != nil} {
		if set {
			forms++
		}
	}
	if forms > 1 {
		add("at most one of threshold, distinct, sequence, new_term")
	}
	if forms == 1 && len(r.GroupBy) == 0 && r.Sequence == nil {
		add("group_by is required for a stateful rule")
	}
	if forms == 0 && len(r.GroupBy) > 0 {
		add("group_by needs threshold, distinct, sequence or new_term")
	}
	if t := r.Threshold; t != nil && (t.Count < 1 || t.Window <= 0) {
		add("threshold needs count >= 1 and a positive window")
	}
	if d := r.Distinct; d != nil && (d.Count < 2 || d.Window <= 0 || d.Field == "") {
		add("distinct needs field, count >= 2 and a positive window")
	}
	if s := r.Sequence; s != nil {
		if len(s.Steps) < 2 || s.Within <= 0 {
			add("sequence needs at least two steps and a positive within")
		}
		for i, st := range s.Steps {
			if st.Condition == "" {
				add("sequence.steps[%d].condition is required", i)
			}
			if len(st.GroupBy) == 0 && len(r.GroupBy) == 0 {
				add("sequence.steps[%d] needs group_by (or the rule's group_by)", i)
			}
		}
	}
	if n := r.NewTerm; n != nil && n.Lookback <= 0 {
		add("new_term needs a positive lookback")
	}
	for i, c := range r.CIS {
		if !cisPattern.MatchString(c) {
			add("cis[%d] %q is not a benchmark item number such as 5.1.3", i, c)
		}
	}
	if (len(r.CIS) > 0 || r.Remediation != "") && r.Source != string(record.SourceObject) {
		add("cis and remediation belong to source: object rules (posture checks)")
	}
	if r.Source == string(record.SourceObject) && forms > 0 {
		// A posture check judges the current state of one object; a window
		// over observations would make the verdict depend on replay order.
		add("source: object rules cannot be stateful")
	}
	for i, e := range r.Exceptions {
		if err := e.validate(); err != nil {
			add("exceptions[%d]: %v", i, err)
		}
	}
	return errs
}

func (e *Exception) validate() error {
	switch {
	case e.Name == "":
		return fmt.Errorf("name is required")
	case e.Field == "":
		return fmt.Errorf("field is required")
	}
	switch e.Comparison {
	case "", "in", "prefix", "glob", "cidr":
	default:
		return fmt.Errorf("comparison %q is not one of in, prefix, glob, cidr", e.Comparison)
	}
	return nil
}
