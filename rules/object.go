package rules

import (
	"sync"

	"github.com/expr-lang/expr/vm"

	"github.com/kubesift/kubesift/record"
)

// Inventory answers the cross-object questions of object rules for one
// cluster. Implementations (rules/posture) also record what each call read,
// which is how a change to one object finds the verdicts that depend on it.
// Every method is nil-safe on its arguments and returns nil when it knows
// nothing.
type Inventory interface {
	// NetworkPolicies are the NetworkPolicy objects of a namespace.
	NetworkPolicies(namespace string) []any
	// ServiceAccount is the ServiceAccount object, or nil.
	ServiceAccount(namespace, name string) map[string]any
	// SubjectsBoundTo names the subjects of every binding whose roleRef is
	// the given Role or ClusterRole, as subject_users names them.
	SubjectsBoundTo(role map[string]any) []string
	// EffectiveRules are the policy rules granted to a subject (named as
	// subject_users names it) by all bindings, through the groups a
	// service account belongs to, with aggregated ClusterRoles resolved.
	EffectiveRules(subject string) []any
	// RoleRules are the rules of a Role or ClusterRole, an aggregated
	// ClusterRole's resolved through its aggregationRule selectors.
	RoleRules(role map[string]any) []any
	// PolicyControls names the cluster's active policy control mechanisms
	// (CIS 5.2.1): namespaces enforcing a Pod Security level, validating
	// admission webhooks and policies.
	PolicyControls() []string
	// RBACUsage is what the audit trail says about a RoleBinding or
	// ClusterRoleBinding's use (rules/README.md, rbac_usage), or nil.
	RBACUsage(binding map[string]any) map[string]any
}

// NewObjectEnv is the environment of one object's posture evaluation. The
// inventory helpers call inv; reusing one env for many objects (Reset)
// avoids binding them again.
func NewObjectEnv(inv Inventory) *ObjectEnv {
	return &ObjectEnv{
		NetworkPolicies: inv.NetworkPolicies,
		ServiceAccount:  inv.ServiceAccount,
		SubjectsBoundTo: inv.SubjectsBoundTo,
		EffectiveRules:  inv.EffectiveRules,
		RoleRules:       inv.RoleRules,
		PolicyControls:  inv.PolicyControls,
		RBACUsage:       inv.RBACUsage,
	}
}

// Reset points the environment at one object.
func (e *ObjectEnv) Reset(cluster, kind, namespace, name, uid string, obj map[string]any) {
	e.ID, e.Cluster, e.Kind, e.Namespace, e.Name, e.UID, e.Object = uid, cluster, kind, namespace, name, uid, obj
}

// ObjectCheck is one compiled source: object rule, for the posture engine.
type ObjectCheck struct {
	r *compiledRule
}

// CISVersion is the set's cis_version ("" when no layer names one).
func (s *Set) CISVersion() string { return s.cisVersion }

// ObjectChecks returns the enabled object rules in load order.
func (s *Set) ObjectChecks() []*ObjectCheck {
	var out []*ObjectCheck
	for _, r := range s.rules {
		if r.source == record.SourceObject {
			out = append(out, &ObjectCheck{r: r})
		}
	}
	return out
}

// Rule is the check's definition after layering.
func (c *ObjectCheck) Rule() *Rule { return &c.r.Rule }

// Kinds are the object kinds the check's condition can match (its kind ==
// / kind in constraint); ok is false when the condition accepts any kind.
func (c *ObjectCheck) Kinds() (kinds []string, ok bool) { return c.r.keys[0], c.r.keyed[0] }

// Stats are the check's counters (shared with the Engine that installed the
// set, if any).
func (c *ObjectCheck) Stats() *RuleStats { return c.r.stats }

var objectVMs = sync.Pool{New: func() any { return &vm.VM{} }}

// Eval judges the object env points at: failed when the condition holds and
// no exception applies, with the rendered output as message. An expression
// error is counted and returned; the object then counts as passing, as a
// record does for an audit rule.
func (c *ObjectCheck) Eval(env *ObjectEnv) (failed bool, message string, err error) {
	cr := c.r
	cr.stats.Evaluated.Add(1)
	m := objectVMs.Get().(*vm.VM)
	defer objectVMs.Put(m)
	rn := runner{m: m, ctx: &evalCtx{env: env}}
	ok, err := rn.runBool(cr.cond)
	if err != nil {
		cr.stats.Errors.Add(1)
		return false, "", err
	}
	if !ok || cr.excepted(&rn) {
		return false, "", nil
	}
	cr.stats.Matched.Add(1)
	msg := render(&rn, cr.output)
	if msg == "" {
		msg = cr.Title
	}
	return true, msg, nil
}
