package rules

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/checker"
	exprcompiler "github.com/expr-lang/expr/compiler"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/optimizer"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"

	"github.com/kubesift/kubesift/record"
)

// LoadOptions say where rules come from.
type LoadOptions struct {
	// NoBuiltin skips the embedded built-in pack.
	NoBuiltin bool
	// Dirs are user rule directories (or files), layered in order over the
	// built-in pack. *.yaml and *.yml files of a directory load in name order.
	Dirs []string
	// MaxGroups bounds the groups a stateful rule tracks (default 10,000);
	// beyond it the least recently seen group is evicted and counted.
	MaxGroups int
}

// source describes one record source's rule environment.
type sourceEnv struct {
	env    any                // zero value of the env struct, for type checking
	keys   [indexKeys]string  // fields used by the prefilter index ("" = unused)
	kinds  [indexKeys]keyKind // how the index reads each key's value
	fields map[string]bool
}

// indexKeys is how many fields the prefilter index can key on.
const indexKeys = 10

// keyKind says how the prefilter reads a key field of a record.
type keyKind uint8

const (
	// keyValue: a field of few distinct values (verb), read as it is.
	keyValue keyKind = iota
	// keyOpen: a field of unbounded values (user). Values no rule names
	// are all read as anyValue, so that the candidate cache holds one
	// entry for them instead of one per user.
	keyOpen
	// keyList: a list field (source.lists), read as anyValue when it holds
	// something and "" when not; rules testing membership ("x" in field)
	// are candidates only for the first.
	keyList
)

// anyValue is a key value standing for "some value other than empty": what
// a rule testing field != "" accepts, and what keyOpen and keyList fields
// read as. The NUL byte keeps it apart from any value a record holds.
const anyValue = "\x00any"

// The prefilter index keys audit records on the fields the built-in rules
// compare with constants at the top of their conditions: verb and resource
// (nearly all), subresource and stage (most), decision (denial rules), code
// (authentication failures) and source.class (the network rules, which
// read no verb or resource and would otherwise run on every record). Each
// has few distinct values, so the candidates of every combination a
// cluster produces stay cached. user and impersonated_user (anonymous and
// impersonation rules) have as many values as a cluster has identities,
// and source.lists is a list: they are read as keyOpen and keyList say.
// auditKey must read them in this order.
var sources = map[record.Source]*sourceEnv{
	record.SourceAudit: {env: AuditEnv{},
		keys:  [indexKeys]string{"verb", "resource", "subresource", "stage", "decision", "code", "source.class", "user", "impersonated_user", "source.lists"},
		kinds: [indexKeys]keyKind{keyValue, keyValue, keyValue, keyValue, keyValue, keyValue, keyValue, keyOpen, keyOpen, keyList}},
	record.SourceEvent:  {env: EventEnv{}, keys: [indexKeys]string{"reason"}},
	record.SourceObject: {env: ObjectEnv{}, keys: [indexKeys]string{"kind"}},
}

// auditKey is an audit record's values of the audit index keys.
func auditKey(e *AuditEnv) [indexKeys]string {
	var class, lists string
	if o := e.origin; o != nil {
		class = string(o.Class)
		if len(o.Lists) > 0 {
			lists = anyValue
		}
	}
	return [indexKeys]string{e.Verb, e.Resource, e.Subresource, e.Stage, e.Decision, codeString(e.Code), class,
		e.User, e.ImpersonatedUser, lists}
}

// codeString is strconv.Itoa without an allocation for HTTP status codes.
func codeString(c int) string {
	if c >= 0 && c < len(codeStrings) {
		return codeStrings[c]
	}
	return strconv.Itoa(c)
}

var codeStrings = func() (s [600]string) {
	for i := range s {
		s[i] = strconv.Itoa(i)
	}
	return s
}()

func init() {
	for _, s := range sources {
		s.fields = map[string]bool{}
		t := reflect.TypeOf(s.env)
		for i := 0; i < t.NumField(); i++ {
			if tag := t.Field(i).Tag.Get("expr"); tag != "" {
				s.fields[tag] = true
			}
		}
	}
}

// layer is one parsed file, in load order.
type layer struct {
	name string
	file *File
}

// readLayers reads the built-in pack and the user directories in order.
func readLayers(opts LoadOptions) ([]layer, error) {
	var layers []layer
	var errs []error
	if !opts.NoBuiltin {
		names, _ := fs.Glob(builtinFS, "builtin/*.yaml")
		sort.Strings(names)
		for _, n := range names {
			data, _ := builtinFS.ReadFile(n)
			f, err := parseFile(n, data)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			layers = append(layers, layer{n, f})
		}
	}
	for _, d := range opts.Dirs {
		files, err := ruleFiles(d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, n := range files {
			data, err := os.ReadFile(n)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			f, err := parseFile(n, data)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			layers = append(layers, layer{n, f})
		}
	}
	return layers, errors.Join(errs...)
}

// ruleFiles lists the rule files of a directory (sorted) or the file itself.
// Hidden entries are skipped: ConfigMap mounts keep the real files in
// "..data"-style directories next to symlinks with the visible names.
func ruleFiles(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, ".") || !(strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
			continue
		}
		full := filepath.Join(path, n)
		if st, err := os.Stat(full); err == nil && st.IsDir() {
			continue
		}
		out = append(out, full)
	}
	sort.Strings(out)
	return out, nil
}

// merged is the result of layering: the final macros, lists and rules.
type merged struct {
	macros map[string]*Macro
	lists  map[string][]string
	rules  []*Rule
	// cisVersion is the last layer's cis_version.
	cisVersion string
}

func merge(layers []layer) (*merged, []error) {
	m := &merged{macros: map[string]*Macro{}, lists: map[string][]string{}}
	byID := map[string]*Rule{}
	var errs []error
	for _, l := range layers {
		if l.file.CISVersion != "" {
			m.cisVersion = l.file.CISVersion
		}
		for i := range l.file.Lists {
			li := &l.file.Lists[i]
			if li.Append {
				if _, ok := m.lists[li.Name]; !ok {
					errs = append(errs, fmt.Errorf("%s:%d: list %s: append to a list that does not exist", li.file, li.line, li.Name))
				}
				m.lists[li.Name] = append(m.lists[li.Name], li.Items...)
				continue
			}
			m.lists[li.Name] = append([]string(nil), li.Items...)
		}
		for i := range l.file.Macros {
			mc := &l.file.Macros[i]
			m.macros[mc.Name] = mc // a later layer redefines a macro
		}
		for i := range l.file.Rules {
			r := l.file.Rules[i]
			if prev, ok := byID[r.ID]; ok {
				errs = append(errs, fmt.Errorf("%s: duplicate rule id (first at %s:%d); use overrides to change a rule", r.where(), prev.file, prev.line))
				continue
			}
			byID[r.ID] = &r
			m.rules = append(m.rules, &r)
		}
		for i := range l.file.Overrides {
			o := &l.file.Overrides[i]
			r, ok := byID[o.Rule]
			if !ok {
				errs = append(errs, fmt.Errorf("%s:%d: override of unknown rule %q", o.file, o.line, o.Rule))
				continue
			}
			if o.Enabled != nil {
				r.Enabled = o.Enabled
			}
			if o.Shadow != nil {
				r.Shadow = *o.Shadow
			}
			if o.Severity != 0 {
				r.Severity = o.Severity
			}
			for _, e := range o.Exceptions {
				found := false
				for j := range r.Exceptions {
					if r.Exceptions[j].Name == e.Name {
						r.Exceptions[j].Values = append(append([]string(nil), r.Exceptions[j].Values...), e.Values...)
						found = true
					}
				}
				if !found {
					r.Exceptions = append(append([]Exception(nil), r.Exceptions...), e)
				}
			}
		}
	}
	for name := range m.macros {
		if _, ok := m.lists[name]; ok {
			errs = append(errs, fmt.Errorf("macro and list share the name %q", name))
		}
		for _, s := range sources {
			if s.fields[name] {
				errs = append(errs, fmt.Errorf("%s:%d: macro %s: name is a record field", m.macros[name].file, m.macros[name].line, name))
				break
			}
		}
	}
	for name := range m.lists {
		for _, s := range sources {
			if s.fields[name] {
				errs = append(errs, fmt.Errorf("list %s: name is a record field", name))
				break
			}
		}
	}
	return m, errs
}

// substituter expands macro and list names inside a condition's AST before
// expr type-checks it, so errors inside a macro still point at real code and
// the prefilter sees through macros.
type substituter struct {
	m       *merged
	stack   []string
	err     error
	objects objectUse // which objects the expression reads
}

func (s *substituter) Visit(node *ast.Node) {
	id, ok := (*node).(*ast.IdentifierNode)
	if !ok || s.err != nil {
		return
	}
	switch id.Value {
	case "request":
		s.objects |= useRequest
	case "response":
		s.objects |= useResponse
	case "effective", "effective_from":
		s.objects |= useEffective
	case "patch_ops":
		s.objects |= usePatchOps
	case "source":
		s.objects |= useSource
	}
	if items, ok := s.m.lists[id.Value]; ok {
		arr := &ast.ArrayNode{Nodes: make([]ast.Node, len(items))}
		for i, it := range items {
			arr.Nodes[i] = &ast.StringNode{Value: it}
		}
		ast.Patch(node, arr)
		return
	}
	mc, ok := s.m.macros[id.Value]
	if !ok {
		return
	}
	for _, n := range s.stack {
		if n == mc.Name {
			s.err = fmt.Errorf("macro %s refers to itself (%s -> %s)", mc.Name, strings.Join(s.stack, " -> "), mc.Name)
			return
		}
	}
	tree, err := parser.ParseWithConfig(mc.Condition, parseConfig())
	if err != nil {
		s.err = fmt.Errorf("%s:%d: macro %s: %v", mc.file, mc.line, mc.Name, err)
		return
	}
	s.stack = append(s.stack, mc.Name)
	ast.Walk(&tree.Node, s)
	s.stack = s.stack[:len(s.stack)-1]
	ast.Patch(node, tree.Node)
}

// objectUse says which audit objects a rule reads, so that a record's request
// and response bodies are parsed only when a candidate rule needs them, and
// only the one it needs (response bodies of reads are often large). The
// source object is filled the same way: few rules read it, and building it
// (address classes, network) is a cost on every audit record otherwise.
type objectUse uint8

const (
	useRequest objectUse = 1 << iota
	useResponse
	useEffective // effective, effective_from (env_effective.go)
	usePatchOps  // patch_ops: read off the patch alone, not the response body
	useSource    // source (env_source.go)
)

// compiler compiles expressions for one source.
type compiler struct {
	m       *merged
	src     *sourceEnv
	objects objectUse // objects some compiled expression reads
}

func (c *compiler) compile(code string, asBool bool) (*program, error) {
	sub := &substituter{m: c.m}
	opts := append([]expr.Option{expr.Env(c.src.env), expr.Patch(sub)}, helperOptions()...)
	if asBool {
		opts = append(opts, expr.AsBool())
	}
	p, err := expr.Compile(code, opts...)
	if sub.err != nil {
		return nil, sub.err
	}
	if err != nil {
		return nil, err
	}
	c.objects |= sub.objects
	out := &program{p: p, use: sub.objects}
	if asBool && sub.objects != 0 {
		out.pre, out.rest = c.guard(code)
	}
	return out, nil
}

// guard compiles the top-level && terms of a condition that read no body
// (nor the source object), and the rest of its terms. The guard is
// evaluated first and rejects most records before a body is parsed (a rule
// on "get pods exec" that also reads bodies then costs a string compare on
// every other "get pods"); once it passes, the rest decides, so the guard's
// terms are not evaluated twice. Both are compiled from the condition's
// own syntax tree, macros expanded, not from its text printed again (expr
// prints a macro's conditional under an index without the parentheses it
// needs). nil guard when there is no such term or it does not compile on
// its own; nil rest when the other terms do not: the whole condition then
// runs after the guard.
func (c *compiler) guard(code string) (guard, rest *vm.Program) {
	// Its own expansion: compiling the parts writes types into the nodes
	// and the optimizer rewrites them.
	root := c.expand(code)
	if root == nil {
		return nil, nil
	}
	var terms, others []ast.Node
	var walk func(n ast.Node)
	walk = func(n ast.Node) {
		if b, ok := n.(*ast.BinaryNode); ok && (b.Operator == "&&" || b.Operator == "and") {
			walk(b.Left)
			walk(b.Right)
			return
		}
		if readsObjects(n) {
			others = append(others, n)
		} else {
			terms = append(terms, n)
		}
	}
	walk(root)
	if len(terms) == 0 {
		return nil, nil
	}
	opts := append([]expr.Option{expr.Env(c.src.env), expr.AsBool()}, helperOptions()...)
	guard, err := compileNode(conjunction(terms), opts...)
	if err != nil {
		return nil, nil // the full condition still runs; the guard is only a shortcut
	}
	if len(others) > 0 {
		rest, _ = compileNode(conjunction(others), opts...)
	}
	return guard, rest
}

// conjunction is the && of terms, in their order.
func conjunction(terms []ast.Node) ast.Node {
	n := terms[0]
	for _, t := range terms[1:] {
		n = &ast.BinaryNode{Operator: "&&", Left: n, Right: t}
	}
	return n
}

// compileNode is expr.Compile of a syntax tree instead of source text.
func compileNode(n ast.Node, opts ...expr.Option) (*vm.Program, error) {
	config := conf.CreateNew()
	for _, op := range opts {
		op(config)
	}
	for name := range config.Disabled {
		delete(config.Builtins, name)
	}
	config.Check()
	tree := &parser.Tree{Node: n}
	if _, err := new(checker.Checker).PatchAndCheck(tree, config); err != nil {
		return nil, err
	}
	if config.Optimize {
		if err := optimizer.Optimize(&tree.Node, config); err != nil {
			return nil, err
		}
	}
	return exprcompiler.Compile(tree, config)
}

// readsObjects reports whether an expression refers to request, response,
// the effective object or the source: what a guard runs without.
func readsObjects(n ast.Node) bool {
	found := false
	ast.Walk(&n, visitorFunc(func(node *ast.Node) {
		if id, ok := (*node).(*ast.IdentifierNode); ok {
			switch id.Value {
			case "request", "response", "effective", "effective_from", "patch_ops", "source":
				found = true
			}
		}
	}))
	return found
}

type visitorFunc func(*ast.Node)

func (f visitorFunc) Visit(n *ast.Node) { f(n) }

// program is one compiled expression and what it needs from the record.
type program struct {
	p    *vm.Program
	use  objectUse   // bodies the expression reads
	pre  *vm.Program // object-free guard of a condition (see guard), or nil
	rest *vm.Program // the condition's other terms, run once pre passed, or nil
}

var (
	parseConfigOnce sync.Once
	parseCfg        *conf.Config
)

// parseConfig is the configuration macros and guards are parsed with, so
// that names of kubesift's helpers (e.g. get) resolve to the helpers and not
// to expr builtins of the same name.
func parseConfig() *conf.Config {
	parseConfigOnce.Do(func() {
		parseCfg = conf.CreateNew()
		for _, op := range helperOptions() {
			op(parseCfg)
		}
	})
	return parseCfg
}

// expand parses code and expands its macros and lists, for the syntax
// walks of the prefilter and the guard; nil when it does not parse (compile
// reports that).
func (c *compiler) expand(code string) ast.Node {
	tree, err := parser.ParseWithConfig(code, parseConfig())
	if err != nil {
		return nil
	}
	sub := &substituter{m: c.m}
	ast.Walk(&tree.Node, sub)
	if sub.err != nil {
		return nil
	}
	return tree.Node
}

// constrain walks && / || / == / in over a field compared with constants,
// and != "" (anyValue); over a keyList field, only membership of a
// constant ("x" in field, anyValue).
func constrain(n ast.Node, field string, kind keyKind) ([]string, bool) {
	v, ok := n.(*ast.BinaryNode)
	if !ok {
		return nil, false
	}
	switch v.Operator {
	case "&&", "and", "||", "or":
		l, lok := constrain(v.Left, field, kind)
		r, rok := constrain(v.Right, field, kind)
		switch {
		case v.Operator == "&&" || v.Operator == "and":
			switch {
			case lok && rok:
				return intersect(l, r), true
			case lok:
				return l, true
			case rok:
				return r, true
			}
		case lok && rok:
			return union(l, r), true
		}
		return nil, false
	}
	if kind == keyList {
		if _, isConst := v.Left.(*ast.StringNode); isConst && v.Operator == "in" && fieldName(v.Right) == field {
			return []string{anyValue}, true
		}
		return nil, false
	}
	switch v.Operator {
	case "==":
		if fieldName(v.Left) == field {
			if s, ok := constKey(v.Right); ok {
				return []string{s}, true
			}
		}
		if fieldName(v.Right) == field {
			if s, ok := constKey(v.Left); ok {
				return []string{s}, true
			}
		}
	case "!=":
		if (fieldName(v.Left) == field && isEmptyString(v.Right)) || (fieldName(v.Right) == field && isEmptyString(v.Left)) {
			return []string{anyValue}, true
		}
	case "in":
		if fieldName(v.Left) == field {
			if vals, ok := constStrings(v.Right); ok {
				return vals, true
			}
		}
	}
	return nil, false
}

func isEmptyString(n ast.Node) bool {
	s, ok := n.(*ast.StringNode)
	return ok && s.Value == ""
}

// fieldName is the key field n names: an identifier ("verb"), or a field
// of one ("source.class"); "" for anything else.
func fieldName(n ast.Node) string {
	switch v := n.(type) {
	case *ast.IdentifierNode:
		return v.Value
	case *ast.MemberNode:
		id, ok := v.Node.(*ast.IdentifierNode)
		prop, pok := v.Property.(*ast.StringNode)
		if ok && pok {
			return id.Value + "." + prop.Value
		}
	}
	return ""
}

// constKey is a constant compared with a key field, as the index holds it:
// a string, or an integer (code) in decimal.
func constKey(n ast.Node) (string, bool) {
	switch c := n.(type) {
	case *ast.StringNode:
		return c.Value, true
	case *ast.IntegerNode:
		return strconv.Itoa(c.Value), true
	}
	return "", false
}

// intersect is what both a and b accept; anyValue in one accepts the
// other's non-empty values.
func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		for _, y := range b {
			switch {
			case x == y:
				out = union(out, []string{x})
			case x == anyValue && y != "":
				out = union(out, []string{y})
			case y == anyValue && x != "":
				out = union(out, []string{x})
			}
		}
	}
	return out
}

func union(a, b []string) []string {
	out := append([]string(nil), a...)
	for _, y := range b {
		found := false
		for _, x := range a {
			if x == y {
				found = true
				break
			}
		}
		if !found {
			out = append(out, y)
		}
	}
	return out
}

// compileRule builds the executable form of one rule, or every error in it.
func compileRule(r *Rule, m *merged, maxGroups int) (*compiledRule, []error) {
	if errs := r.validate(); len(errs) > 0 {
		return nil, errs
	}
	src := sources[record.Source(r.Source)]
	c := &compiler{m: m, src: src}
	cr := &compiledRule{Rule: *r, source: record.Source(r.Source), enabled: r.Enabled == nil || *r.Enabled}
	var errs []error
	fail := func(what string, err error) { errs = append(errs, fmt.Errorf("%s: %s: %w", r.where(), what, err)) }
	if r.Condition != "" {
		p, err := c.compile(r.Condition, true)
		if err != nil {
			fail("condition", err)
		}
		cr.cond = p
	}
	// Prefilter constraints: the rule's condition, or for a sequence the
	// union of its steps' (a step can only start or advance on its records).
	// Each is expanded once for all the keys.
	cond := c.expand(r.Condition)
	var steps []ast.Node
	if r.Sequence != nil {
		for _, st := range r.Sequence.Steps {
			steps = append(steps, c.expand(st.Condition))
		}
	}
	for k, field := range src.keys {
		if field == "" {
			continue
		}
		vals, ok := constrain(cond, field, src.kinds[k])
		if r.Sequence != nil && !ok {
			all := true
			var u []string
			for _, st := range steps {
				sv, sok := constrain(st, field, src.kinds[k])
				if !sok {
					all = false
					break
				}
				u = union(u, sv)
			}
			vals, ok = u, all
		}
		if ok {
			cr.keys[k] = vals
			cr.keyed[k] = true
		}
	}
	compileList := func(what string, codes []string) []*program {
		var out []*program
		for i, code := range codes {
			p, err := c.compile(code, false)
			if err != nil {
				fail(fmt.Sprintf("%s[%d]", what, i), err)
			}
			out = append(out, p)
		}
		return out
	}
	cr.groupBy = compileList("group_by", r.GroupBy)
	for i, e := range r.Exceptions {
		p, err := c.compile(e.Field, false)
		if err != nil {
			fail(fmt.Sprintf("exceptions[%d] (%s).field", i, e.Name), err)
			continue
		}
		mt, err := newMatcher(parseComparison(e.Comparison), e.Values)
		if err != nil {
			fail(fmt.Sprintf("exceptions[%d] (%s).values", i, e.Name), err)
			continue
		}
		cr.exceptions = append(cr.exceptions, compiledException{name: e.Name, field: p, m: mt})
	}
	segs, err := parseOutput(r.Output)
	if err != nil {
		fail("output", err)
	}
	for i := range segs {
		if segs[i].code != "" {
			p, err := c.compile(segs[i].code, false)
			if err != nil {
				fail(fmt.Sprintf("output {{%s}}", segs[i].code), err)
			}
			segs[i].prog = p
		}
	}
	cr.output = segs
	if d := r.Distinct; d != nil {
		p, err := c.compile(d.Field, false)
		if err != nil {
			fail("distinct.field", err)
		}
		cr.distinctField = p
	}
	if s := r.Sequence; s != nil {
		for i, st := range s.Steps {
			p, err := c.compile(st.Condition, true)
			if err != nil {
				fail(fmt.Sprintf("sequence.steps[%d].condition", i), err)
			}
			gb := st.GroupBy
			if len(gb) == 0 {
				gb = r.GroupBy
			}
			cr.steps = append(cr.steps, compiledStep{cond: p, groupBy: compileList(fmt.Sprintf("sequence.steps[%d].group_by", i), gb)})
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	cr.objects = c.objects
	cr.state = newState(r, maxGroups)
	cr.stats = &RuleStats{} // replaced by the Engine's shared counters on install
	return cr, nil
}

// outSeg is a literal piece of an output template or an expression.
type outSeg struct {
	lit  string
	code string
	prog *program
}

// parseOutput splits "text {{ expr }} text" into segments.
func parseOutput(s string) ([]outSeg, error) {
	var segs []outSeg
	for s != "" {
		i := strings.Index(s, "{{")
		if i < 0 {
			segs = append(segs, outSeg{lit: s})
			break
		}
		if i > 0 {
			segs = append(segs, outSeg{lit: s[:i]})
		}
		j := strings.Index(s[i:], "}}")
		if j < 0 {
			return nil, errors.New("unclosed {{")
		}
		code := strings.TrimSpace(s[i+2 : i+j])
		if code == "" {
			return nil, errors.New("empty {{ }}")
		}
		segs = append(segs, outSeg{code: code})
		s = s[i+j+2:]
	}
	return segs, nil
}
