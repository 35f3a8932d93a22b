package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decodeStrict reads the first YAML document of data into c. The document
// is first read as a yaml.Node tree and checked against c's type (checker):
// yaml's own errors name a Go type and a line ("field brokerz not found in
// type config.KafkaConfig"), while a user needs the key's path, the type
// expected in their words and the key they probably meant. Only a document
// that passes is decoded into c (strictly, as a second guard). lines maps
// every field path written in the file to its line, for the errors found
// later by validation.
func decodeStrict(data []byte, c *Config, file string) (lines map[string]int, err error) {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return map[string]int{}, nil
		}
		return nil, Errors{{File: file, Message: err.Error(), Err: err}}
	}
	ch := &checker{file: file, lines: map[string]int{}}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	ch.check(root, reflect.TypeOf(c).Elem(), "")
	if len(ch.errs) > 0 {
		return nil, ch.errs
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, Errors{{File: file, Message: err.Error(), Err: err}}
	}
	return ch.lines, nil
}

// checker walks a yaml.Node tree beside the Go type it will be decoded
// into, collecting every unknown key and every value of the wrong kind.
type checker struct {
	file  string
	errs  Errors
	lines map[string]int
}

var (
	durationType        = reflect.TypeFor[time.Duration]()
	unmarshalerType     = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func (ch *checker) fail(n *yaml.Node, path, msg string) {
	ch.errs = append(ch.errs, &FieldError{File: ch.file, Line: n.Line, Field: path, Message: msg})
}

func (ch *checker) check(n *yaml.Node, t reflect.Type, path string) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // null leaves the field as it is (its default)
	}
	if pt := reflect.PointerTo(t); pt.Implements(unmarshalerType) || pt.Implements(textUnmarshalerType) {
		// A type that reads its own node or text decides what it accepts.
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			ch.fail(n, path, err.Error())
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			ch.wrongType(n, t, path)
			return
		}
		ch.checkStruct(n, t, path, yamlFields(t))
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			ch.wrongType(n, t, path)
			return
		}
		for i, e := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			ch.lines[p] = e.Line
			ch.check(e, t.Elem(), p)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			ch.wrongType(n, t, path)
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := joinPath(path, k.Value)
			ch.lines[p] = k.Line
			ch.check(k, t.Key(), p)
			ch.check(v, t.Elem(), p)
		}
	case reflect.Interface:
		// Anything decodes into an interface.
	default:
		if n.Kind != yaml.ScalarNode {
			ch.wrongType(n, t, path)
			return
		}
		// yaml itself decides what a scalar may become (durations from
		// "30s", booleans, integer ranges), so the check and the decode
		// cannot disagree.
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			ch.wrongType(n, t, path)
		}
	}
}

// checkStruct checks a mapping against the fields of a struct; a merge key
// ("<<: *defaults") brings its mapping's keys to the same struct.
func (ch *checker) checkStruct(n *yaml.Node, t reflect.Type, path string, fields map[string]reflect.StructField) {
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Tag == "!!merge" {
			merged := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				merged = v.Content
			}
			for _, m := range merged {
				ch.check(m, t, path)
			}
			continue
		}
		p := joinPath(path, k.Value)
		f, ok := fields[k.Value]
		if !ok {
			ch.fail(k, p, unknownKey(k.Value, fields))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			ch.fail(k, p, fmt.Sprintf("set twice (first at line %d)", first))
			continue
		}
		seen[k.Value] = k.Line
		ch.lines[p] = k.Line
		ch.check(v, f.Type, p)
	}
}

// wrongType reports a value of the wrong kind, in the words of the file:
// "expected a duration (like 30s, 5m or 1h30m), got "soon"". A scalar's
// text is shown (cut short), a mapping or list only as such.
func (ch *checker) wrongType(n *yaml.Node, t reflect.Type, path string) {
	got := "a mapping"
	switch n.Kind {
	case yaml.SequenceNode:
		got = "a list"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "…"
		}
		got = fmt.Sprintf("%q", v)
	}
	ch.fail(n, path, fmt.Sprintf("expected %s, got %s", typeWords(t), got))
}

// typeWords names a Go type as a user writing YAML knows it.
func typeWords(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType:
		return "a duration (like 30s, 5m or 1h30m)"
	case t.Kind() == reflect.Struct:
		return "a mapping of keys"
	case t.Kind() == reflect.Slice:
		return "a list of " + plural(t.Elem())
	case t.Kind() == reflect.Map:
		return "a mapping of names to " + plural(t.Elem())
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return "an integer"
	case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64:
		return "a non-negative integer"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return "a number"
	case t.Kind() == reflect.String:
		return "a string"
	}
	return "a value"
}

func plural(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType:
		return "durations"
	case t.Kind() == reflect.Struct:
		return "mappings"
	case t.Kind() == reflect.Slice:
		return "lists"
	case t.Kind() == reflect.Bool:
		return "booleans"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "integers"
	case t.Kind() == reflect.String:
		return "strings"
	}
	return "values"
}

// unknownKey says a key is not known here and names the closest known key,
// or all of them when none is close.
func unknownKey(key string, fields map[string]reflect.StructField) string {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	sort.Strings(names)
	if s := closest(key, names); s != "" {
		return fmt.Sprintf("unknown key (did you mean %q?)", s)
	}
	return "unknown key (known here: " + strings.Join(names, ", ") + ")"
}

// closest is the name nearest to key when it is near enough to be a typo:
// the same once case, "-" and "_" are ignored, one a prefix of the other,
// or within an edit distance of a third of its length (at least 2).
func closest(key string, names []string) string {
	norm := func(s string) string {
		return strings.ReplaceAll(strings.ReplaceAll(strings.ToLower(s), "-", ""), "_", "")
	}
	best, bestD := "", -1
	for _, n := range names {
		d := levenshtein(key, n)
		switch {
		case norm(n) == norm(key):
			d = 0
		case len(key) >= 4 && (strings.HasPrefix(n, key) || strings.HasPrefix(key, n)):
			d = min(d, 1)
		}
		if bestD < 0 || d < bestD {
			best, bestD = n, d
		}
	}
	if bestD < 0 || bestD > max(2, len(key)/3) {
		return ""
	}
	return best
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// yamlFields are the keys of a struct as yaml reads them: the tag's name,
// else the lowercased field name; ",inline" structs add theirs.
func yamlFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		if strings.Contains(opts, "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range yamlFields(ft) {
					out[k] = v
				}
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f
	}
	return out
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
