package rbacusage

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Ref names a binding or a role. Namespace is empty for the cluster-scoped
// kinds.
type Ref struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// String is "Kind name" or "Kind namespace/name".
func (r Ref) String() string {
	if r.Namespace == "" {
		return r.Kind + " " + r.Name
	}
	return r.Kind + " " + r.Namespace + "/" + r.Name
}

// Subject is a binding's subject as the authorizer named it: User, Group or
// ServiceAccount (with its namespace).
type Subject struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// String names the subject as audit records and the posture helpers do:
// alice, group:NAME, system:serviceaccount:NS:NAME.
func (s Subject) String() string {
	switch s.Kind {
	case "Group":
		return "group:" + s.Name
	case "ServiceAccount":
		return "system:serviceaccount:" + s.Namespace + ":" + s.Name
	}
	return s.Name
}

// Grant is what an RBAC authorization reason names: the binding that
// allowed the request, the role it grants and the subject it matched.
type Grant struct {
	Binding Ref     `json:"binding"`
	Role    Ref     `json:"role"`
	Subject Subject `json:"subject"`
}

// ErrNotRBAC is returned for a reason another authorizer wrote (Node,
// webhook, AlwaysAllow's empty reason): not bad input, just not a grant.
var ErrNotRBAC = errors.New("not an RBAC reason")

// ParseReason reads the authorization.k8s.io/reason annotation of an
// allowed request. Since Kubernetes 1.12 the RBAC authorizer writes
//
//	RBAC: allowed by ClusterRoleBinding "NAME" of ClusterRole "ROLE" to User "U"
//	RBAC: allowed by RoleBinding "NAME/NS" of Role "ROLE" to ServiceAccount "SA/SANS"
//
// (plugin/pkg/auth/authorizer/rbac, and the describers and describeSubject
// of pkg/registry/rbac/validation); 1.10 and 1.11 wrote the same text
// without the "RBAC: " prefix, and earlier releases no reason for an
// allowed request (an empty reason, like the Node authorizer's and
// AlwaysAllow's). Every name is a Go %q literal, so a user name holding
// quotes or non-ASCII is unquoted, not cut at the first quote. Two
// variants no release writes are accepted too, because their meaning is
// unambiguous: a RoleBinding named without "/NS" (requestNamespace: a
// RoleBinding grants only in its own namespace, so the request was made
// there) and a ServiceAccount with an empty namespace ("SA/", the
// binding's, as the authorizer itself defaults it).
//
// A reason of another authorizer returns ErrNotRBAC, and so does the RBAC
// authorizer's own "RBAC: <errors>" of a request it did not allow, and a
// reason without the prefix that does not parse whole; a reason with
// "RBAC: allowed by " that does not parse returns an error naming the part
// that failed.
func ParseReason(reason, requestNamespace string) (Grant, error) {
	var g Grant
	s, prefixed := strings.CutPrefix(reason, "RBAC: ")
	s, ok := strings.CutPrefix(s, "allowed by ")
	if !ok {
		return g, ErrNotRBAC
	}
	p := parser{s: s}
	g.Binding.Kind = p.word("binding kind", "ClusterRoleBinding", "RoleBinding")
	bname := p.quoted("binding name")
	p.literal(" of ")
	g.Role.Kind = p.word("role kind", "ClusterRole", "Role")
	g.Role.Name = p.quoted("role name")
	p.literal(" to ")
	g.Subject.Kind = p.word("subject kind", "ServiceAccount", "User", "Group")
	sname := p.quoted("subject name")
	if p.err == nil && p.s != "" {
		p.fail("trailing text", p.s)
	}
	if p.err != nil && !prefixed {
		// Without the prefix the text may be any authorizer's (a webhook
		// can write "allowed by policy X"): only a full match is RBAC's.
		return Grant{}, ErrNotRBAC
	}
	if p.err != nil {
		return Grant{}, p.err
	}
	g.Binding.Name = bname
	if g.Binding.Kind == "RoleBinding" {
		g.Binding.Name, g.Binding.Namespace = splitNS(bname, requestNamespace)
		if g.Role.Kind == "Role" {
			g.Role.Namespace = g.Binding.Namespace
		}
	}
	g.Subject.Name = sname
	if g.Subject.Kind == "ServiceAccount" {
		g.Subject.Name, g.Subject.Namespace = splitNS(sname, g.Binding.Namespace)
	}
	if err := g.check(); err != nil {
		return Grant{}, err
	}
	return g, nil
}

// check refuses grants a real authorizer cannot write: empty names, a Role
// granted by a ClusterRoleBinding, a namespaced object without namespace.
func (g *Grant) check() error {
	switch {
	case g.Binding.Name == "":
		return errors.New("rbac reason: binding name: empty")
	case g.Binding.Kind == "RoleBinding" && g.Binding.Namespace == "":
		return errors.New("rbac reason: binding namespace: empty")
	case g.Role.Name == "":
		return errors.New("rbac reason: role name: empty")
	case g.Role.Kind == "Role" && g.Binding.Kind != "RoleBinding":
		return errors.New("rbac reason: role kind: a ClusterRoleBinding cannot grant a Role")
	case g.Subject.Name == "":
		return errors.New("rbac reason: subject name: empty")
	case g.Subject.Kind == "ServiceAccount" && g.Subject.Namespace == "":
		return errors.New("rbac reason: subject namespace: empty")
	}
	return nil
}

// splitNS splits "name/namespace" (the authorizer's order), falling back to
// def when the namespace is missing or empty.
func splitNS(s, def string) (name, ns string) {
	name, ns, _ = strings.Cut(s, "/")
	if ns == "" {
		ns = def
	}
	return name, ns
}

// parser consumes a reason left to right; the first failure sticks.
type parser struct {
	s   string
	err error
}

func (p *parser) fail(part, at string) {
	if p.err == nil {
		if len(at) > 40 {
			at = at[:40] + "…"
		}
		p.err = fmt.Errorf("rbac reason: %s: unexpected %q", part, at)
	}
}

// word consumes one of words followed by a space.
func (p *parser) word(part string, words ...string) string {
	if p.err != nil {
		return ""
	}
	for _, w := range words {
		if rest, ok := strings.CutPrefix(p.s, w+" "); ok {
			p.s = rest
			return w
		}
	}
	p.fail(part, p.s)
	return ""
}

func (p *parser) literal(lit string) {
	if p.err != nil {
		return
	}
	rest, ok := strings.CutPrefix(p.s, lit)
	if !ok {
		p.fail(fmt.Sprintf("%q", strings.TrimSpace(lit)), p.s)
		return
	}
	p.s = rest
}

// quoted consumes one Go-quoted string.
func (p *parser) quoted(part string) string {
	if p.err != nil {
		return ""
	}
	q, err := strconv.QuotedPrefix(p.s)
	if err != nil || q[0] != '"' {
		p.fail(part, p.s)
		return ""
	}
	v, err := strconv.Unquote(q)
	if err != nil {
		p.fail(part, p.s)
		return ""
	}
	p.s = p.s[len(q):]
	return v
}
