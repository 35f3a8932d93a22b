package rules

import (
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
)

// helperOptions registers the functions every rule may call. They are pure,
// nil-safe (a missing field yields the zero value, never a runtime error) and
// do no compiling per call: list arguments that are constant in the rule are
// turned into matchers once at load by matcherPatcher.
func helperOptions() []expr.Option {
	obj := new(func(map[string]any) []any)
	objStrings := new(func(map[string]any) []string)
	return []expr.Option{
		expr.Function("pod_spec", func(p ...any) (any, error) { return podSpec(asMap(p[0])), nil }, new(func(map[string]any) map[string]any)),
		expr.Function("containers", func(p ...any) (any, error) { return containers(asMap(p[0])), nil }, obj),
		expr.Function("images", func(p ...any) (any, error) { return images(asMap(p[0])), nil }, objStrings),
		expr.Function("host_paths", func(p ...any) (any, error) { return hostPaths(asMap(p[0])), nil }, objStrings),
		expr.Function("added_caps", func(p ...any) (any, error) { return addedCaps(asMap(p[0])), nil }, objStrings),
		expr.Function("privileged", func(p ...any) (any, error) { return privileged(asMap(p[0])), nil }, new(func(map[string]any) bool)),
		expr.Function("rbac_verbs", func(p ...any) (any, error) { return rbacField(asMap(p[0]), "verbs"), nil }, objStrings),
		expr.Function("rbac_resources", func(p ...any) (any, error) { return rbacField(asMap(p[0]), "resources"), nil }, objStrings),
		expr.Function("subject_users", func(p ...any) (any, error) { return subjectUsers(asMap(p[0])), nil }, objStrings),
		expr.Function("get", func(p ...any) (any, error) { return getPath(p[0], p[1].(string)), nil }, new(func(any, string) any)),
		expr.Function("image_registry", func(p ...any) (any, error) { r, _, _ := parseImage(p[0].(string)); return r, nil }, new(func(string) string)),
		expr.Function("image_repository", func(p ...any) (any, error) { _, r, _ := parseImage(p[0].(string)); return r, nil }, new(func(string) string)),
		expr.Function("image_tag", func(p ...any) (any, error) { _, _, t := parseImage(p[0].(string)); return t, nil }, new(func(string) string)),
		expr.Function("is_system_user", func(p ...any) (any, error) { return isSystemUser(p[0].(string)), nil }, new(func(string) bool)),
		expr.Function("is_system_namespace", func(p ...any) (any, error) { return isSystemNamespace(p[0].(string)), nil }, new(func(string) bool)),
		expr.Function("is_service_account", func(p ...any) (any, error) { return strings.HasPrefix(p[0].(string), "system:serviceaccount:"), nil }, new(func(string) bool)),
		expr.Function("in_cidr", func(p ...any) (any, error) { return toMatcher(p[1], cmpCIDR).matchAny(p[0]), nil }, new(func(any, any) bool)),
		expr.Function("glob", func(p ...any) (any, error) { return toMatcher(p[1], cmpGlob).matchAny(p[0]), nil }, new(func(any, any) bool)),
		expr.Function("has_prefix", func(p ...any) (any, error) { return toMatcher(p[1], cmpPrefix).matchAny(p[0]), nil }, new(func(any, any) bool)),
		expr.Function("contains_fold", func(p ...any) (any, error) { return containsFoldAny(p[0], toMatcher(p[1], cmpContainsFold)), nil }, new(func(any, any) bool)),
		expr.Function("service_account_name", func(p ...any) (any, error) { return serviceAccountName(asMap(p[0])), nil }, new(func(map[string]any) string)),
		expr.Function("grants", func(p ...any) (any, error) { return grants(asSlice(p[0]), strs(p[1]), strs(p[2])), nil }, new(func([]any, any, any) bool)),
		expr.Function("default_deny", func(p ...any) (any, error) { return defaultDeny(asMap(p[0]), p[1].(string)), nil }, new(func(any, string) bool)),
		expr.Function("runs_component", func(p ...any) (any, error) { _, ok := componentArgs(asMap(p[0]), p[1].(string)); return ok, nil }, new(func(map[string]any, string) bool)),
		expr.Function("flag", func(p ...any) (any, error) { return componentFlag(asMap(p[0]), p[1].(string), p[2].(string)), nil }, new(func(map[string]any, string, string) string)),
		expr.Function("has_flag", func(p ...any) (any, error) { return hasComponentFlag(asMap(p[0]), p[1].(string), p[2].(string)), nil }, new(func(map[string]any, string, string) bool)),
		expr.Function("flag_list", func(p ...any) (any, error) { return componentFlagList(asMap(p[0]), p[1].(string), p[2].(string)), nil }, new(func(map[string]any, string, string) []string)),
		expr.Function("patch_object", func(p ...any) (any, error) { return patchObject(p[0]), nil }, new(func(any) map[string]any)),
		expr.Patch(&matcherPatcher{}),
	}
}

// matcherPatcher replaces a constant list argument of in_cidr, glob,
// has_prefix and contains_fold with a compiled matcher, so CIDRs are parsed
// (and terms lower-cased) once at load.
type matcherPatcher struct{}

func (matcherPatcher) Visit(node *ast.Node) {
	call, ok := (*node).(*ast.CallNode)
	if !ok || len(call.Arguments) != 2 {
		return
	}
	id, ok := call.Callee.(*ast.IdentifierNode)
	if !ok {
		return
	}
	var cmp comparison
	switch id.Value {
	case "in_cidr":
		cmp = cmpCIDR
	case "glob":
		cmp = cmpGlob
	case "has_prefix":
		cmp = cmpPrefix
	case "contains_fold":
		cmp = cmpContainsFold
	default:
		return
	}
	vals, ok := constStrings(call.Arguments[1])
	if !ok {
		return
	}
	m, err := newMatcher(cmp, vals)
	if err != nil {
		return // left as is: the runtime path reports no match for bad CIDRs
	}
	ast.Patch(&call.Arguments[1], &ast.ConstantNode{Value: m})
}

// constStrings returns the values of a literal string array or string.
func constStrings(n ast.Node) ([]string, bool) {
	switch v := n.(type) {
	case *ast.StringNode:
		return []string{v.Value}, true
	case *ast.ArrayNode:
		out := make([]string, 0, len(v.Nodes))
		for _, e := range v.Nodes {
			s, ok := e.(*ast.StringNode)
			if !ok {
				return nil, false
			}
			out = append(out, s.Value)
		}
		return out, true
	}
	return nil, false
}

type comparison int

const (
	cmpIn comparison = iota
	cmpPrefix
	cmpGlob
	cmpCIDR
	cmpContainsFold // a value occurs in the string, ignoring case (helpers only)
)

func parseComparison(s string) comparison {
	switch s {
	case "prefix":
		return cmpPrefix
	case "glob":
		return cmpGlob
	case "cidr":
		return cmpCIDR
	}
	return cmpIn
}

// matcher compares strings against a fixed set of values.
type matcher struct {
	cmp      comparison
	set      map[string]struct{}
	values   []string
	prefixes []netip.Prefix
}

func newMatcher(cmp comparison, values []string) (*matcher, error) {
	m := &matcher{cmp: cmp, values: values}
	switch cmp {
	case cmpContainsFold:
		m.values = make([]string, len(values))
		for i, v := range values {
			m.values[i] = strings.ToLower(v)
		}
	case cmpIn:
		m.set = make(map[string]struct{}, len(values))
		for _, v := range values {
			m.set[v] = struct{}{}
		}
	case cmpCIDR:
		for _, v := range values {
			p, err := netip.ParsePrefix(v)
			if err != nil {
				a, aerr := netip.ParseAddr(v)
				if aerr != nil {
					return nil, err
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			m.prefixes = append(m.prefixes, p.Masked())
		}
	}
	return m, nil
}

// runtimeMatchers caches matchers built from non-constant list arguments
// (e.g. a list computed from the record), keyed by comparison and values.
var runtimeMatchers sync.Map

func toMatcher(v any, cmp comparison) *matcher {
	switch x := v.(type) {
	case *matcher:
		return x
	case string:
		return toMatcher([]string{x}, cmp)
	case []any:
		s := make([]string, 0, len(x))
		for _, e := range x {
			if str, ok := e.(string); ok {
				s = append(s, str)
			}
		}
		return toMatcher(s, cmp)
	case []string:
		key := string(rune('0'+cmp)) + "\x00" + strings.Join(x, "\x00")
		if m, ok := runtimeMatchers.Load(key); ok {
			return m.(*matcher)
		}
		m, err := newMatcher(cmp, x)
		if err != nil {
			m = &matcher{cmp: cmp}
		}
		runtimeMatchers.Store(key, m)
		return m
	}
	return &matcher{cmp: cmp}
}

// match compares one string.
func (m *matcher) match(s string) bool {
	switch m.cmp {
	case cmpIn:
		_, ok := m.set[s]
		return ok
	case cmpPrefix:
		for _, p := range m.values {
			if strings.HasPrefix(s, p) {
				return true
			}
		}
	case cmpContainsFold:
		return containsFold(s, m.values)
	case cmpGlob:
		for _, p := range m.values {
			if globMatch(p, s) {
				return true
			}
		}
	case cmpCIDR:
		a, err := netip.ParseAddr(s)
		if err != nil {
			return false
		}
		a = a.Unmap()
		for _, p := range m.prefixes {
			if p.Contains(a) {
				return true
			}
		}
	}
	return false
}

// containsFold reports whether any of terms (lower case) occurs in s lowered
// as expr's lower() lowers it. strings.ToLower returns a string without
// upper-case letters as it is, so nearly every call copies nothing.
func containsFold(s string, terms []string) bool {
	s = strings.ToLower(s)
	for _, t := range terms {
		if strings.Contains(s, t) {
			return true
		}
	}
	return false
}

// matchAny compares a string, or a list of strings (true if any element
// matches), as helpers in conditions do.
func (m *matcher) matchAny(v any) bool {
	switch x := v.(type) {
	case string:
		return m.match(x)
	case []string:
		for _, s := range x {
			if m.match(s) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if s, ok := e.(string); ok && m.match(s) {
				return true
			}
		}
	}
	return false
}

// containsFoldAny is contains_fold: matchAny, and over a map its keys and
// its string values, without the lists keys() and values() would build.
func containsFoldAny(v any, m *matcher) bool {
	x, ok := v.(map[string]any)
	if !ok {
		return m.matchAny(v)
	}
	for k, e := range x {
		if m.match(k) {
			return true
		}
		if s, ok := e.(string); ok && m.match(s) {
			return true
		}
	}
	return false
}

// matchAll is the exception semantics: a scalar must match; a list matches
// only if it is non-empty and every element matches (an exception for
// "trusted images" must not excuse a pod that also runs an untrusted one).
func (m *matcher) matchAll(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case string:
		return m.match(x)
	case []string:
		for _, s := range x {
			if !m.match(s) {
				return false
			}
		}
		return len(x) > 0
	case []any:
		for _, e := range x {
			s, ok := e.(string)
			if !ok || !m.match(s) {
				return false
			}
		}
		return len(x) > 0
	case bool, int, float64:
		return m.match(toString(x))
	}
	return false
}

func toString(v any) string {
	switch x := v.(type) {
	case bool:
		if x {
			return "true"
		}
		return "false"
	case int:
		return itoa(x)
	case float64:
		return itoa(int(x))
	}
	return ""
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	neg := n < 0
	if neg {
		n = -n
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}

// globMatch matches s against a pattern where * is any run of characters and
// ? is one character. Linear backtracking on the last *, no compilation.
func globMatch(p, s string) bool {
	px, sx := 0, 0
	star, mark := -1, 0
	for sx < len(s) {
		switch {
		case px < len(p) && (p[px] == '?' || p[px] == s[sx]):
			px++
			sx++
		case px < len(p) && p[px] == '*':
			star, mark = px, sx
			px++
		case star >= 0:
			px = star + 1
			mark++
			sx = mark
		default:
			return false
		}
	}
	for px < len(p) && p[px] == '*' {
		px++
	}
	return px == len(p)
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

// podSpec finds the pod spec in a Pod or in any workload's pod template
// (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob,
// ReplicationController, PodTemplate).
func podSpec(obj map[string]any) map[string]any {
	if obj == nil {
		return nil
	}
	switch obj["kind"] {
	case "Pod":
		return asMap(obj["spec"])
	case "PodTemplate":
		return asMap(asMap(obj["template"])["spec"])
	case "CronJob":
		return asMap(asMap(asMap(asMap(asMap(obj["spec"])["jobTemplate"])["spec"])["template"])["spec"])
	}
	spec := asMap(obj["spec"])
	if t := asMap(spec["template"]); t != nil {
		return asMap(t["spec"])
	}
	if spec != nil && spec["containers"] != nil { // a pod without kind (old audit bodies)
		return spec
	}
	return nil
}

// containers lists regular, init and ephemeral containers of a pod or a
// workload's template — an attacker can hide a privileged container in any.
func containers(obj map[string]any) []any {
	spec := podSpec(obj)
	if spec == nil {
		return nil
	}
	var out []any
	for _, k := range []string{"containers", "initContainers", "ephemeralContainers"} {
		out = append(out, asSlice(spec[k])...)
	}
	return out
}

func images(obj map[string]any) []string {
	var out []string
	for _, c := range containers(obj) {
		if img, ok := asMap(c)["image"].(string); ok {
			out = append(out, img)
		}
	}
	return out
}

func hostPaths(obj map[string]any) []string {
	var out []string
	for _, v := range asSlice(podSpec(obj)["volumes"]) {
		if hp := asMap(asMap(v)["hostPath"]); hp != nil {
			if p, ok := hp["path"].(string); ok {
				out = append(out, p)
			}
		}
	}
	return out
}

func addedCaps(obj map[string]any) []string {
	var out []string
	for _, c := range containers(obj) {
		caps := asMap(asMap(asMap(c)["securityContext"])["capabilities"])
		for _, a := range asSlice(caps["add"]) {
			if s, ok := a.(string); ok {
				out = append(out, strings.TrimPrefix(strings.ToUpper(s), "CAP_"))
			}
		}
	}
	return out
}

func privileged(obj map[string]any) bool {
	for _, c := range containers(obj) {
		if p, _ := asMap(asMap(c)["securityContext"])["privileged"].(bool); p {
			return true
		}
	}
	return false
}

// rbacField collects verbs or resources over all rules of a Role/ClusterRole.
func rbacField(obj map[string]any, field string) []string {
	var out []string
	for _, r := range asSlice(obj["rules"]) {
		for _, v := range asSlice(asMap(r)[field]) {
			// Each value once, in first-seen order: a Role repeating
			// "get list watch" per rule would otherwise read
			// [get list watch get list watch] in an alert. Roles have few
			// values, so the linear check is cheaper than a set.
			if s, ok := v.(string); ok && !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// subjectUsers names a binding's subjects as the API server names users in
// audit records: users by name, service accounts as
// system:serviceaccount:NS:NAME, groups as group:NAME.
func subjectUsers(obj map[string]any) []string {
	var out []string
	for _, s := range asSlice(obj["subjects"]) {
		m := asMap(s)
		name, _ := m["name"].(string)
		switch m["kind"] {
		case "User":
			out = append(out, name)
		case "ServiceAccount":
			ns, _ := m["namespace"].(string)
			out = append(out, "system:serviceaccount:"+ns+":"+name)
		case "Group":
			out = append(out, "group:"+name)
		}
	}
	return out
}

// pathCache holds split paths for get(); the set of paths is the set of
// literals in the rule files, so it stays small.
var pathCache sync.Map

// getPath walks a dotted path ("spec.template.spec.hostNetwork") through maps
// and numeric list indexes; missing parts give nil.
func getPath(v any, path string) any {
	var parts []string
	if p, ok := pathCache.Load(path); ok {
		parts = p.([]string)
	} else {
		parts = strings.Split(path, ".")
		pathCache.Store(path, parts)
	}
	for _, p := range parts {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			i := 0
			for _, c := range p {
				if c < '0' || c > '9' {
					return nil
				}
				i = i*10 + int(c-'0')
			}
			if i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

// parseImage splits an image reference into registry, repository and tag,
// normalised the way the container runtime resolves it: no registry means
// docker.io, and docker.io single names live under library/.
func parseImage(img string) (registry, repository, tag string) {
	ref := img
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndexByte(ref, ':'); i >= 0 && !strings.Contains(ref[i:], "/") {
		ref, tag = ref[:i], ref[i+1:]
	}
	if tag == "" && !strings.Contains(img, "@") {
		tag = "latest"
	}
	registry = "docker.io"
	if i := strings.IndexByte(ref, '/'); i >= 0 {
		first := ref[:i]
		if strings.ContainsAny(first, ".:") || first == "localhost" {
			registry, ref = first, ref[i+1:]
		}
	}
	if registry == "docker.io" && !strings.Contains(ref, "/") {
		ref = "library/" + ref
	}
	return registry, ref, tag
}

// isSystemUser: identities of the control plane and of nodes, which carry
// the system: prefix (except system:anonymous). Service accounts are not system users unless they live
// in a system namespace — a workload's service account is a user like any.
func isSystemUser(u string) bool {
	if !strings.HasPrefix(u, "system:") || u == "system:anonymous" {
		// Anonymous requests carry the system: prefix but are nobody's
		// component: rules that exempt system users must still see them.
		return false
	}
	if rest, ok := strings.CutPrefix(u, "system:serviceaccount:"); ok {
		ns, _, _ := strings.Cut(rest, ":")
		return isSystemNamespace(ns)
	}
	return true
}

func isSystemNamespace(ns string) bool {
	return ns == "kube-system" || ns == "kube-public" || ns == "kube-node-lease"
}
