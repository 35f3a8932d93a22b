package posture

import (
	"slices"
	"strings"
)

// entry is one object of the inventory with what the engine derived from it.
type entry struct {
	obj Object
	// judged: the object is a finding subject (see the package doc);
	// mirror: a control-plane Pod, judged only by control-plane checks.
	judged, mirror bool
	// evaluated and failed are bitsets over check indexes: which checks
	// judged the object and which it fails (the score reads them).
	evaluated, failed []uint64
	// reads are the dependency keys each check's last evaluation of the
	// object read, by check index (see clusterState.file).
	reads map[int][]string
	// Bindings: the role they grant and their subjects (audit names).
	roleRef  key
	subjects []string
}

// inventory is a cluster's current objects and the indexes the helpers use.
type inventory struct {
	objs              map[key]*entry
	netpols           map[string]map[string]*entry // namespace -> name
	bindingsByRole    map[key]map[key]struct{}
	bindingsBySubject map[string]map[key]struct{}
	clusterRoles      map[string]*entry
	aggregated        map[string]*entry // ClusterRoles with an aggregationRule
	// aggCache holds resolved rules of aggregated ClusterRoles and the keys
	// the resolution read; any ClusterRole change clears it (they are rare).
	aggCache map[string]resolved
	// controls are the cluster's active policy control mechanisms, named
	// for policy_controls (see policyControl).
	controls map[key]string
}

type resolved struct {
	rules []any
	reads []string
}

func newInventory() *inventory {
	return &inventory{
		objs: map[key]*entry{}, netpols: map[string]map[string]*entry{},
		bindingsByRole: map[key]map[key]struct{}{}, bindingsBySubject: map[string]map[key]struct{}{},
		clusterRoles: map[string]*entry{}, aggregated: map[string]*entry{}, aggCache: map[string]resolved{},
		controls: map[key]string{},
	}
}

// put stores e (replacing old, which may be nil) and returns the dependency
// keys the change dirties.
func (inv *inventory) put(e, old *entry) []string {
	o := &e.obj
	k := keyOf(o)
	inv.objs[k] = e
	body := o.Body
	_, mirror := annotations(body)["kubernetes.io/config.mirror"]
	e.mirror = o.Kind == "Pod" && mirror
	e.judged = !(str(labels(body)["kubernetes.io/bootstrapping"]) == "rbac-defaults") &&
		!((o.Kind == "Pod" || o.Kind == "Job") && controlled(body))
	dirty := []string{"obj/" + k.String()}
	if old != nil {
		dirty = append(dirty, inv.unindex(old)...)
	}
	if c := policyControl(o); c != "" {
		inv.controls[k] = c
		dirty = append(dirty, "policy")
	}
	switch o.Kind {
	case "NetworkPolicy":
		if inv.netpols[o.Namespace] == nil {
			inv.netpols[o.Namespace] = map[string]*entry{}
		}
		inv.netpols[o.Namespace][o.Name] = e
		dirty = append(dirty, "np/"+o.Namespace)
	case "RoleBinding", "ClusterRoleBinding":
		e.roleRef, e.subjects = roleRefOf(body, o.Namespace), subjectNames(body)
		add(inv.bindingsByRole, e.roleRef, k)
		dirty = append(dirty, "bound/"+e.roleRef.String())
		for _, s := range e.subjects {
			add(inv.bindingsBySubject, s, k)
			dirty = append(dirty, "subj/"+s)
		}
	case "ClusterRole":
		inv.clusterRoles[o.Name] = e
		if asMap(body["aggregationRule"]) != nil {
			inv.aggregated[o.Name] = e
		}
		dirty = append(dirty, inv.aggregatorsOf(body)...)
		clear(inv.aggCache)
	}
	return dirty
}

// remove deletes the object at k and returns the keys the removal dirties.
func (inv *inventory) remove(k key) []string {
	e := inv.objs[k]
	if e == nil {
		return nil
	}
	delete(inv.objs, k)
	return append([]string{"obj/" + k.String()}, inv.unindex(e)...)
}

// unindex drops e from the secondary indexes.
func (inv *inventory) unindex(e *entry) []string {
	o := &e.obj
	k := keyOf(o)
	var dirty []string
	if _, ok := inv.controls[k]; ok {
		delete(inv.controls, k)
		dirty = append(dirty, "policy")
	}
	switch o.Kind {
	case "NetworkPolicy":
		delete(inv.netpols[o.Namespace], o.Name)
		if len(inv.netpols[o.Namespace]) == 0 {
			delete(inv.netpols, o.Namespace)
		}
		dirty = append(dirty, "np/"+o.Namespace)
	case "RoleBinding", "ClusterRoleBinding":
		del(inv.bindingsByRole, e.roleRef, k)
		dirty = append(dirty, "bound/"+e.roleRef.String())
		for _, s := range e.subjects {
			del(inv.bindingsBySubject, s, k)
			dirty = append(dirty, "subj/"+s)
		}
	case "ClusterRole":
		if inv.clusterRoles[o.Name] == e {
			delete(inv.clusterRoles, o.Name)
		}
		if inv.aggregated[o.Name] == e {
			delete(inv.aggregated, o.Name)
		}
		dirty = append(dirty, inv.aggregatorsOf(o.Body)...)
		clear(inv.aggCache)
	}
	return dirty
}

func add[K comparable](m map[K]map[key]struct{}, k K, v key) {
	if m[k] == nil {
		m[k] = map[key]struct{}{}
	}
	m[k][v] = struct{}{}
}

func del[K comparable](m map[K]map[key]struct{}, k K, v key) {
	delete(m[k], v)
	if len(m[k]) == 0 {
		delete(m, k)
	}
}

// aggregatorsOf are the obj/ keys of the aggregated ClusterRoles whose
// selectors match a ClusterRole's labels.
func (inv *inventory) aggregatorsOf(role map[string]any) []string {
	lbl := labels(role)
	var out []string
	for name, agg := range inv.aggregated {
		if aggregates(agg.obj.Body, lbl) {
			out = append(out, "obj/"+key{"ClusterRole", "", name}.String())
		}
	}
	return out
}

// aggregates reports whether an aggregated ClusterRole's
// aggregationRule.clusterRoleSelectors select a role with these labels (any
// selector; an empty selector selects nothing, as the controller does).
func aggregates(agg map[string]any, lbl map[string]any) bool {
	for _, s := range asSlice(asMap(agg["aggregationRule"])["clusterRoleSelectors"]) {
		if selects(asMap(s), lbl) {
			return true
		}
	}
	return false
}

// selects evaluates a metav1.LabelSelector (matchLabels, matchExpressions
// with In, NotIn, Exists, DoesNotExist) on labels.
func selects(sel map[string]any, lbl map[string]any) bool {
	ml, me := asMap(sel["matchLabels"]), asSlice(sel["matchExpressions"])
	if len(ml) == 0 && len(me) == 0 {
		return false
	}
	for k, v := range ml {
		if got, ok := lbl[k].(string); !ok || got != str(v) {
			return false
		}
	}
	for _, x := range me {
		m := asMap(x)
		v, has := lbl[str(m["key"])].(string)
		in := slices.Contains(asSlice(m["values"]), any(v))
		switch str(m["operator"]) {
		case "In":
			if !has || !in {
				return false
			}
		case "NotIn":
			if has && in {
				return false
			}
		case "Exists":
			if !has {
				return false
			}
		case "DoesNotExist":
			if has {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// roleRefOf is the key of the role a binding grants. A RoleBinding's Role
// lives in the binding's namespace; ClusterRoles are cluster-scoped.
func roleRefOf(body map[string]any, ns string) key {
	ref := asMap(body["roleRef"])
	kind := str(ref["kind"])
	if kind != "Role" {
		ns = ""
	}
	return key{kind, ns, str(ref["name"])}
}

// subjectNames names a binding's subjects as audit records name users
// (alice, system:serviceaccount:NS:NAME, group:NAME), the form of the rules
// helper subject_users. A ServiceAccount subject without namespace is in the
// binding's namespace.
func subjectNames(body map[string]any) []string {
	var out []string
	bindingNS := str(asMap(body["metadata"])["namespace"])
	for _, s := range asSlice(body["subjects"]) {
		m := asMap(s)
		name := str(m["name"])
		var n string
		switch str(m["kind"]) {
		case "User":
			n = name
		case "Group":
			n = "group:" + name
		case "ServiceAccount":
			ns := str(m["namespace"])
			if ns == "" {
				ns = bindingNS
			}
			n = "system:serviceaccount:" + ns + ":" + name
		default:
			continue
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// reader is the rules.Inventory of one evaluation: it answers from the
// inventory and records the dependency keys it read.
type reader struct {
	inv   *inventory
	reads []string
	usage *usageView // the cluster's RBAC usage (usage.go)
}

func (r *reader) read(k string) {
	if !slices.Contains(r.reads, k) {
		r.reads = append(r.reads, k)
	}
}

// NetworkPolicies implements rules.Inventory.
func (r *reader) NetworkPolicies(namespace string) []any {
	r.read("np/" + namespace)
	nps := r.inv.netpols[namespace]
	out := make([]any, 0, len(nps))
	for _, e := range nps {
		out = append(out, e.obj.Body)
	}
	return out
}

// ServiceAccount implements rules.Inventory.
func (r *reader) ServiceAccount(namespace, name string) map[string]any {
	k := key{"ServiceAccount", namespace, name}
	r.read("obj/" + k.String())
	if e := r.inv.objs[k]; e != nil {
		return e.obj.Body
	}
	return nil
}

// PolicyControls implements rules.Inventory.
func (r *reader) PolicyControls() []string {
	r.read("policy")
	out := make([]string, 0, len(r.inv.controls))
	for _, c := range r.inv.controls {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// policyControl names o when it is an active policy control mechanism in
// the sense of CIS 5.2.1: a namespace that enforces a Pod Security level
// that restricts anything (baseline or restricted; privileged admits every
// Pod), a ValidatingWebhookConfiguration with at least one webhook, or a
// ValidatingAdmissionPolicy. "" when it is none.
func policyControl(o *Object) string {
	switch o.Kind {
	case "Namespace":
		if lvl := str(labels(o.Body)["pod-security.kubernetes.io/enforce"]); lvl == "baseline" || lvl == "restricted" {
			return "Namespace " + o.Name + " enforces Pod Security " + lvl
		}
	case "ValidatingWebhookConfiguration":
		if len(asSlice(o.Body["webhooks"])) > 0 {
			return "ValidatingWebhookConfiguration " + o.Name
		}
	case "ValidatingAdmissionPolicy":
		return "ValidatingAdmissionPolicy " + o.Name
	}
	return ""
}

// roleKey is the inventory key of a Role or ClusterRole body.
func roleKey(role map[string]any) key {
	k := key{str(role["kind"]), str(asMap(role["metadata"])["namespace"]), str(asMap(role["metadata"])["name"])}
	if k.kind == "ClusterRole" {
		k.namespace = ""
	}
	return k
}

// SubjectsBoundTo implements rules.Inventory.
func (r *reader) SubjectsBoundTo(role map[string]any) []string {
	rk := roleKey(role)
	r.read("bound/" + rk.String())
	var out []string
	for bk := range r.inv.bindingsByRole[rk] {
		for _, s := range r.inv.objs[bk].subjects {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	slices.Sort(out)
	return out
}

// RoleRules implements rules.Inventory.
func (r *reader) RoleRules(role map[string]any) []any {
	return r.rulesOf(roleKey(role))
}

// rulesOf returns a role's rules, resolving aggregation, and records reads.
func (r *reader) rulesOf(k key) []any {
	r.read("obj/" + k.String())
	e := r.inv.objs[k]
	if e == nil {
		return nil
	}
	if k.kind != "ClusterRole" || r.inv.aggregated[k.name] == nil {
		return asSlice(e.obj.Body["rules"])
	}
	res, ok := r.inv.aggCache[k.name]
	if !ok {
		res = r.inv.resolve(k.name)
		r.inv.aggCache[k.name] = res
	}
	for _, rd := range res.reads {
		r.read(rd)
	}
	return res.rules
}

// resolve computes an aggregated ClusterRole's rules: its own and those of
// every ClusterRole its selectors match, aggregated ones resolved in turn
// (edit aggregates into admin, view into edit). The visited set stops a
// cycle of aggregations.
func (inv *inventory) resolve(name string) resolved {
	var res resolved
	visited := map[string]bool{}
	var walk func(n string)
	walk = func(n string) {
		if visited[n] {
			return
		}
		visited[n] = true
		e := inv.objs[key{"ClusterRole", "", n}]
		if e == nil {
			return
		}
		res.reads = append(res.reads, "obj/"+key{"ClusterRole", "", n}.String())
		res.rules = append(res.rules, asSlice(e.obj.Body["rules"])...)
		agg := inv.aggregated[n]
		if agg == nil {
			return
		}
		var members []string
		for cn, c := range inv.clusterRoles {
			if cn != n && aggregates(agg.obj.Body, labels(c.obj.Body)) {
				members = append(members, cn)
			}
		}
		slices.Sort(members) // a stable rule order keeps messages stable
		for _, m := range members {
			walk(m)
		}
	}
	walk(name)
	return res
}

// EffectiveRules implements rules.Inventory. A service account also
// receives what is bound to system:serviceaccounts,
// system:serviceaccounts:NS and system:authenticated; any other user what is
// bound to system:authenticated. Rules granted by a RoleBinding carry a
// "namespace" field; cluster-wide grants have none.
func (r *reader) EffectiveRules(subject string) []any {
	subjects := []string{subject}
	if rest, ok := strings.CutPrefix(subject, "system:serviceaccount:"); ok {
		ns, _, _ := strings.Cut(rest, ":")
		subjects = append(subjects, "group:system:serviceaccounts", "group:system:serviceaccounts:"+ns, "group:system:authenticated")
	} else if !strings.HasPrefix(subject, "group:") {
		subjects = append(subjects, "group:system:authenticated")
	}
	var out []any
	for _, s := range subjects {
		r.read("subj/" + s)
		for bk := range r.inv.bindingsBySubject[s] {
			b := r.inv.objs[bk]
			rules := r.rulesOf(b.roleRef)
			if bk.kind == "ClusterRoleBinding" {
				out = append(out, rules...)
				continue
			}
			for _, rule := range rules {
				scoped := map[string]any{"namespace": bk.namespace}
				for f, v := range asMap(rule) {
					scoped[f] = v
				}
				out = append(out, scoped)
			}
		}
	}
	return out
}
