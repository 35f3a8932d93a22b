package deploy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The metric families kubesift registers, read from its Go sources, so
// that the alerting rules and the dashboard can be checked against what
// the binaries export without running every component.
//
// kubesift builds a family name in three ways, and the reader follows each:
//   - a literal: prometheus.CounterOpts{Name: "kubesift_collector_received_total"}
//     (and prometheus.NewDesc("kubesift_...", ...));
//   - Namespace, Subsystem and Name, joined with "_" as prometheus.BuildFQName
//     does, from string literals or constants (const ns, sub = "kubesift",
//     "processor");
//   - a helper closure or function whose parameter is (part of) the name or
//     the label list (counterVec := func(name, help string, labels ...string)),
//     resolved at each call of the helper in the same file.
//
// Variable labels come from the label list ([]string{...}, a helper's
// variadic arguments, or a local variable holding one) and constant labels
// from ConstLabels / NewDesc's last argument. A label list the reader
// cannot resolve marks the family's labels unknown, and label checks skip
// it; an unresolvable name is counted (TestKubesiftMetricNames logs them).

// metricFamily is one family as registered.
type metricFamily struct {
	labels      map[string]bool
	labelsKnown bool
	histogram   bool
	where       []string // file:line of each registration
}

// metricSource is what one pass over the sources found.
type metricSource struct {
	families   map[string]*metricFamily
	unresolved []string // file:line of registrations whose name is not static
}

var (
	metricsOnce sync.Once
	metricsRead metricSource
	metricsErr  error
)

// kubesiftMetrics returns the families of every non-test Go file of the
// repository outside test/.
func kubesiftMetrics(t testing.TB) metricSource {
	t.Helper()
	metricsOnce.Do(func() { metricsRead, metricsErr = readMetricSources(repo()) })
	if metricsErr != nil {
		t.Fatal(metricsErr)
	}
	return metricsRead
}

func readMetricSources(root string) (metricSource, error) {
	src := metricSource{families: map[string]*metricFamily{}}
	fset := token.NewFileSet()
	pkgs := map[string][]*ast.File{} // by directory: a declared helper is called from any file of its package
	var files []*metricFile
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if path != root && (rel == "test" || strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		dir := filepath.Dir(path)
		pkgs[dir] = append(pkgs[dir], f)
		files = append(files, &metricFile{fset: fset, file: f, src: &src})
		return nil
	})
	for _, m := range files {
		m.pkg = pkgs[filepath.Dir(fset.Position(m.file.Pos()).Filename)]
		m.read()
	}
	return src, err
}

// metricFile reads the registrations of one file.
type metricFile struct {
	fset   *token.FileSet
	file   *ast.File
	pkg    []*ast.File // the files of its package
	src    *metricSource
	consts map[string]string
}

// env maps a helper's parameter names to the arguments of one call.
type env map[string][]ast.Expr

func (m *metricFile) read() {
	m.consts = map[string]string{}
	ast.Inspect(m.file, func(n ast.Node) bool {
		if g, ok := n.(*ast.GenDecl); ok && g.Tok == token.CONST {
			for _, s := range g.Specs {
				vs := s.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if i < len(vs.Values) {
						if v, ok := literal(vs.Values[i]); ok {
							m.consts[name.Name] = v
						}
					}
				}
			}
		}
		return true
	})
	var stack []ast.Node
	ast.Inspect(m.file, func(n ast.Node) bool {
		if n == nil {
			stack = stack[:len(stack)-1]
			return true
		}
		stack = append(stack, n)
		if call, ok := n.(*ast.CallExpr); ok {
			m.registration(call, stack)
		}
		return true
	})
}

// registration handles prometheus.New<Kind>[Vec|Func](opts, [labels]) and
// prometheus.NewDesc(name, help, labels, constLabels).
func (m *metricFile) registration(call *ast.CallExpr, stack []ast.Node) {
	fn, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || !isIdent(fn.X, "prometheus") || !strings.HasPrefix(fn.Sel.Name, "New") || len(call.Args) == 0 {
		return
	}
	var nameParts []ast.Expr
	var labelList, constLabels ast.Expr
	switch {
	case fn.Sel.Name == "NewDesc":
		if len(call.Args) != 4 {
			return
		}
		nameParts, labelList, constLabels = []ast.Expr{call.Args[0]}, call.Args[2], call.Args[3]
	default:
		opts, ok := call.Args[0].(*ast.CompositeLit)
		if !ok {
			return
		}
		if t, ok := opts.Type.(*ast.SelectorExpr); !ok || !strings.HasSuffix(t.Sel.Name, "Opts") {
			return
		}
		fields := map[string]ast.Expr{}
		for _, e := range opts.Elts {
			if kv, ok := e.(*ast.KeyValueExpr); ok {
				if k, ok := kv.Key.(*ast.Ident); ok {
					fields[k.Name] = kv.Value
				}
			}
		}
		nameParts = []ast.Expr{fields["Namespace"], fields["Subsystem"], fields["Name"]}
		constLabels = fields["ConstLabels"]
		if strings.HasSuffix(fn.Sel.Name, "Vec") && len(call.Args) > 1 {
			labelList = call.Args[1]
		}
	}
	where := m.fset.Position(call.Pos()).String()
	if rel, err := filepath.Rel(repo(), where); err == nil {
		where = rel
	}
	helper, declared, params := enclosingFunc(stack)
	envs := []env{{}}
	if helper != "" && len(params) > 0 {
		scope := []*ast.File{m.file}
		if declared {
			scope = m.pkg
		}
		if calls := callsOf(scope, helper, params); len(calls) > 0 {
			envs = calls
		}
	}
	for _, e := range envs {
		var parts []string
		ok := true
		for _, p := range nameParts {
			if p == nil {
				continue
			}
			s, good := m.str(p, e, stack)
			if !good {
				ok = false
				break
			}
			if s != "" {
				parts = append(parts, s)
			}
		}
		if !ok || len(parts) == 0 {
			m.src.unresolved = append(m.src.unresolved, where)
			continue
		}
		name := strings.Join(parts, "_")
		if !strings.HasPrefix(name, "kubesift_") {
			continue
		}
		fam := m.src.families[name]
		if fam == nil {
			fam = &metricFamily{labels: map[string]bool{}, labelsKnown: true}
			m.src.families[name] = fam
		}
		fam.where = append(fam.where, where)
		fam.histogram = fam.histogram || strings.Contains(fn.Sel.Name, "Histogram")
		for _, l := range []ast.Expr{labelList, constLabels} {
			names, known := m.labelNames(l, e, stack)
			fam.labelsKnown = fam.labelsKnown && known
			for _, n := range names {
				fam.labels[n] = true
			}
		}
	}
}

// enclosingFunc names the innermost function around the registration (a
// declared function, or a closure assigned to a variable), whether it is
// declared (callable from the whole package), and its parameters.
func enclosingFunc(stack []ast.Node) (string, bool, []string) {
	for i := len(stack) - 1; i >= 0; i-- {
		switch f := stack[i].(type) {
		case *ast.FuncDecl:
			return f.Name.Name, true, paramNames(f.Type)
		case *ast.FuncLit:
			if i > 0 {
				if as, ok := stack[i-1].(*ast.AssignStmt); ok && len(as.Lhs) == 1 {
					if id, ok := as.Lhs[0].(*ast.Ident); ok {
						return id.Name, false, paramNames(f.Type)
					}
				}
			}
			return "", false, nil
		}
	}
	return "", false, nil
}

func paramNames(ft *ast.FuncType) []string {
	var out []string
	for _, f := range ft.Params.List {
		for _, n := range f.Names {
			out = append(out, n.Name)
		}
	}
	return out
}

// callsOf returns, for every call of the helper in files, its arguments
// by parameter name (the last parameter takes the rest).
func callsOf(files []*ast.File, helper string, params []string) []env {
	var out []env
	for _, f := range files {
		out = append(out, callsIn(f, helper, params)...)
	}
	return out
}

func callsIn(f *ast.File, helper string, params []string) []env {
	var out []env
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || !isIdent(call.Fun, helper) {
			return true
		}
		e := env{}
		for i, p := range params {
			switch {
			case i == len(params)-1 && i < len(call.Args):
				e[p] = call.Args[i:]
			case i < len(call.Args):
				e[p] = call.Args[i : i+1]
			}
		}
		out = append(out, e)
		return true
	})
	return out
}

// str resolves a string expression: a literal, a constant, a parameter
// bound in e, a local variable, or a concatenation of those.
func (m *metricFile) str(x ast.Expr, e env, stack []ast.Node) (string, bool) {
	if s, ok := literal(x); ok {
		return s, true
	}
	switch v := x.(type) {
	case *ast.Ident:
		if args, ok := e[v.Name]; ok && len(args) == 1 {
			return m.str(args[0], env{}, stack)
		}
		if s, ok := m.consts[v.Name]; ok {
			return s, true
		}
		if def := localDef(v.Name, stack); def != nil {
			return m.str(def, e, stack)
		}
	case *ast.BinaryExpr:
		if v.Op == token.ADD {
			a, ok1 := m.str(v.X, e, stack)
			b, ok2 := m.str(v.Y, e, stack)
			return a + b, ok1 && ok2
		}
	}
	return "", false
}

// labelNames resolves a label list ([]string{...}, nil, a variadic
// parameter, a local variable) or a prometheus.Labels map (its keys).
func (m *metricFile) labelNames(x ast.Expr, e env, stack []ast.Node) ([]string, bool) {
	switch v := x.(type) {
	case nil:
		return nil, true
	case *ast.Ident:
		if v.Name == "nil" {
			return nil, true
		}
		if args, ok := e[v.Name]; ok {
			var out []string
			for _, a := range args {
				s, ok := m.str(a, env{}, stack)
				if !ok {
					return nil, false
				}
				out = append(out, s)
			}
			return out, true
		}
		if def := localDef(v.Name, stack); def != nil {
			return m.labelNames(def, e, stack)
		}
	case *ast.CompositeLit:
		var out []string
		for _, el := range v.Elts {
			if kv, ok := el.(*ast.KeyValueExpr); ok {
				el = kv.Key
			}
			s, ok := m.str(el, e, stack)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
}

// localDef finds `name := expr` in the functions around the registration.
func localDef(name string, stack []ast.Node) ast.Expr {
	for i := len(stack) - 1; i >= 0; i-- {
		var body *ast.BlockStmt
		switch f := stack[i].(type) {
		case *ast.FuncDecl:
			body = f.Body
		case *ast.FuncLit:
			body = f.Body
		default:
			continue
		}
		var found ast.Expr
		ast.Inspect(body, func(n ast.Node) bool {
			as, ok := n.(*ast.AssignStmt)
			if !ok || found != nil || len(as.Lhs) != len(as.Rhs) {
				return found == nil
			}
			for j, l := range as.Lhs {
				if isIdent(l, name) {
					found = as.Rhs[j]
				}
			}
			return found == nil
		})
		if found != nil {
			return found
		}
	}
	return nil
}

func literal(x ast.Expr) (string, bool) {
	b, ok := x.(*ast.BasicLit)
	if !ok || b.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(b.Value)
	return s, err == nil
}

func isIdent(x ast.Expr, name string) bool {
	id, ok := x.(*ast.Ident)
	return ok && id.Name == name
}

// family returns the family a series name belongs to: itself, or the
// histogram it is the _bucket, _sum or _count series of.
func (s metricSource) family(series string) (*metricFamily, bool) {
	if f, ok := s.families[series]; ok {
		return f, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if f, ok := s.families[strings.TrimSuffix(series, suffix)]; ok && f.histogram && strings.HasSuffix(series, suffix) {
			return f, true
		}
	}
	return nil, false
}

// TestKubesiftMetricNames is the control of the reader: families whose
// names and labels are built each way are found with their labels, and
// names that are not registered are not.
func TestKubesiftMetricNames(t *testing.T) {
	src := kubesiftMetrics(t)
	t.Logf("%d kubesift families; %d registrations with a name not known before run time: %v",
		len(src.families), len(src.unresolved), src.unresolved)
	cases := []struct {
		series string
		labels []string // nil: no variable or constant label
	}{
		{"kubesift_collector_received_total", []string{"source"}},                   // literal
		{"kubesift_processor_lag", []string{"partition", "topic"}},                  // const ns, sub
		{"kubesift_collector_events_dropped_total", []string{"reason"}},             // closure with variadic labels
		{"kubesift_collector_objects_notifications_total", []string{"kind", "op"}},  // closure, two labels
		{"kubesift_collector_replay_records_total", nil},                            // literal prefix + parameter
		{"kubesift_tls_certificate_expiry_timestamp_seconds", []string{"listener"}}, // ConstLabels from a local variable
		{"kubesift_tls_certificate_reloads_total", []string{"listener", "result"}},  // helper function, ConstLabels literal
		{"kubesift_tls_ca_reloads_total", []string{"listener", "result"}},           // the same helper, called from another file
		{"kubesift_sink_es_bulk_duration_seconds_bucket", nil},                      // histogram series
		{"kubesift_rule_matched_total", nil},                                        // NewDesc (labels checked below)
		{"kubesift_posture_transitions_emitted_total", []string{"state"}},
	}
	for _, c := range cases {
		t.Run(c.series, func(t *testing.T) {
			f, ok := src.family(c.series)
			if !ok {
				t.Fatalf("%s not found in the sources", c.series)
			}
			if c.labels == nil {
				return
			}
			if !f.labelsKnown {
				t.Fatalf("%s: labels not resolved (%v)", c.series, f.where)
			}
			got := keysOf(f.labels)
			if !slices.Equal(got, c.labels) {
				t.Errorf("%s: labels %v, want %v (%v)", c.series, got, c.labels, f.where)
			}
		})
	}
	for _, bad := range []string{"kubesift_processor_lagg", "kubesift_collector_received", "kubesift_sink_es_queued_bytes_bucket"} {
		if _, ok := src.family(bad); ok {
			t.Errorf("%s: found, but kubesift registers no such family", bad)
		}
	}
	if f, ok := src.family("kubesift_rule_matched_total"); !ok || len(f.labels) == 0 {
		t.Errorf("kubesift_rule_matched_total: the label list of its NewDesc (a local variable) was not resolved")
	}
}
