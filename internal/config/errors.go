package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// FieldError is one problem of a configuration file: the file, the line
// (when the field is written in the file), the field's full path and what
// is wrong. Every error Parse returns is a list of them (Errors), so that
// `config validate -o json` can show each one and a user reading text sees
// "config.yaml: line 4: kafka.brokerz: unknown key (did you mean "brokers"?)".
type FieldError struct {
	File string `json:"file"`
	// Line is 0 when the field is not in the file (its default was used)
	// and no enclosing section is either.
	Line int `json:"line,omitempty"`
	// Field is the full path, e.g. sink.elasticsearch.addresses[0]; empty
	// for problems of the file as a whole (YAML syntax).
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
	// Err is the underlying error (a *fs.PathError for a missing file), for
	// errors.Is; its text is already in Message.
	Err error `json:"-"`
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File + ": ")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

func (e *FieldError) Unwrap() error { return e.Err }

// Errors is every problem found in one configuration file, one per line of
// its text.
type Errors []*FieldError

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.Is and errors.As see every problem.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// located turns err — validation and secret-file problems whose texts
// start with the field path ("kafka.brokers[0]: not host:port"), joined
// with errors.Join — into Errors of file, each with the line of its field
// (or of the nearest enclosing section written in the file) from lines.
func located(file string, lines map[string]int, err error) error {
	if err == nil {
		return nil
	}
	var out Errors
	for _, e := range flatten(err) {
		var fe *FieldError
		if errors.As(e, &fe) {
			c := *fe
			c.File = file
			if c.Line == 0 {
				c.Line = lineOf(lines, c.Field)
			}
			out = append(out, &c)
			continue
		}
		msg := e.Error()
		field, rest, ok := strings.Cut(msg, ": ")
		if !ok || field == "" || strings.ContainsAny(field, " \t") {
			out = append(out, &FieldError{File: file, Message: msg, Err: e})
			continue
		}
		out = append(out, &FieldError{File: file, Line: lineOf(lines, field), Field: field, Message: rest, Err: e})
	}
	// In the order of the file, as the parser's own errors are; problems of
	// fields not written in it last.
	sort.SliceStable(out, func(i, j int) bool {
		li, lj := out[i].Line, out[j].Line
		return li != 0 && (lj == 0 || li < lj)
	})
	return out
}

// flatten lists the leaves of a tree of errors.Join.
func flatten(err error) []error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, flatten(e)...)
	}
	return out
}

// lineOf is the line of path in the file, else of its nearest enclosing
// section there ("collector.audit_webhook.tls_cert_file" unset in an
// enabled webhook section is reported at "audit_webhook:"), else 0.
func lineOf(lines map[string]int, path string) int {
	for path != "" {
		if l, ok := lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return 0
		}
		path = path[:i]
	}
	return 0
}
