package rbacusage

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestParseReason covers the reasons kube-apiservers write: since 1.12
// "RBAC: allowed by " and the describers of pkg/registry/rbac/validation
// (RoleBinding "NAME/NS", ServiceAccount "NAME/NS", every value
// %q-quoted), in 1.10 and 1.11 the same without the "RBAC: " prefix, the
// empty reason of older releases and of other authorizers, the RBAC
// authorizer's errors, and the variants ParseReason accepts beyond them (a
// RoleBinding without namespace, a ServiceAccount with an empty one).
func TestParseReason(t *testing.T) {
	crb := func(name, rk, role string, s Subject) Grant {
		return Grant{Binding: Ref{Kind: "ClusterRoleBinding", Name: name}, Role: Ref{Kind: rk, Name: role}, Subject: s}
	}
	rb := func(ns, name, rk, role string, s Subject) Grant {
		g := Grant{Binding: Ref{Kind: "RoleBinding", Namespace: ns, Name: name}, Role: Ref{Kind: rk, Name: role}, Subject: s}
		if rk == "Role" {
			g.Role.Namespace = ns
		}
		return g
	}
	user := func(n string) Subject { return Subject{Kind: "User", Name: n} }
	group := func(n string) Subject { return Subject{Kind: "Group", Name: n} }
	sa := func(ns, n string) Subject { return Subject{Kind: "ServiceAccount", Namespace: ns, Name: n} }
	cases := []struct {
		name, reason, ns string
		want             Grant
		err              string // substring; "" for success
	}{
		{name: "ClusterRoleBinding to a ServiceAccount", reason: `RBAC: allowed by ClusterRoleBinding "ci-deploy" of ClusterRole "edit" to ServiceAccount "deployer/ci"`,
			want: crb("ci-deploy", "ClusterRole", "edit", sa("ci", "deployer"))},
		{name: "ClusterRoleBinding to a Group", reason: `RBAC: allowed by ClusterRoleBinding "system:basic-user" of ClusterRole "system:basic-user" to Group "system:authenticated"`,
			want: crb("system:basic-user", "ClusterRole", "system:basic-user", group("system:authenticated"))},
		{name: "RoleBinding of a Role to a User", reason: `RBAC: allowed by RoleBinding "super-user-role-binding-alice/alice" of Role "super-user" to User "alice"`,
			want: rb("alice", "super-user-role-binding-alice", "Role", "super-user", user("alice"))},
		{name: "RoleBinding of a ClusterRole to a ServiceAccount elsewhere", reason: `RBAC: allowed by RoleBinding "too-much/app" of ClusterRole "edit" to ServiceAccount "default/other"`,
			want: rb("app", "too-much", "ClusterRole", "edit", sa("other", "default"))},
		{name: "user name with quotes and unicode", reason: `RBAC: allowed by ClusterRoleBinding "x" of ClusterRole "view" to User "o\"brien ü\u00e9\n"`,
			want: crb("x", "ClusterRole", "view", user("o\"brien üé\n"))},
		{name: "e-mail user", reason: `RBAC: allowed by RoleBinding "namespace-editors/default" of ClusterRole "edit" to User "brendan@example.com"`,
			want: rb("default", "namespace-editors", "ClusterRole", "edit", user("brendan@example.com"))},
		{name: "1.10: no RBAC prefix, ServiceAccount", reason: `allowed by ClusterRoleBinding "system:controller:cronjob-controller" of ClusterRole "system:controller:cronjob-controller" to ServiceAccount "cronjob-controller/kube-system"`,
			want: crb("system:controller:cronjob-controller", "ClusterRole", "system:controller:cronjob-controller", sa("kube-system", "cronjob-controller"))},
		{name: "1.10: no RBAC prefix, RoleBinding of a ClusterRole", reason: `allowed by RoleBinding "bob-viewer/default" of ClusterRole "view" to User "bob"`,
			want: rb("default", "bob-viewer", "ClusterRole", "view", user("bob"))},
		{name: "1.11: no RBAC prefix, Group", reason: `allowed by ClusterRoleBinding "admins" of ClusterRole "cluster-admin" to Group "ops"`,
			want: crb("admins", "ClusterRole", "cluster-admin", group("ops"))},
		{name: "variant: ServiceAccount with empty namespace is the binding's", reason: `RBAC: allowed by RoleBinding "r/shop" of Role "r" to ServiceAccount "web/"`,
			want: rb("shop", "r", "Role", "r", sa("shop", "web"))},
		{name: "variant: RoleBinding without namespace is the request's", reason: `allowed by RoleBinding "r" of Role "r" to ServiceAccount "web/"`, ns: "shop",
			want: rb("shop", "r", "Role", "r", sa("shop", "web"))},
		{name: "Node authorizer, AlwaysAllow, RBAC before 1.10", reason: ``, err: ErrNotRBAC.Error()},
		{name: "RBAC error of a request it did not allow", reason: `RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found`, err: ErrNotRBAC.Error()},
		{name: "webhook", reason: `allowed by webhook policy "p"`, err: ErrNotRBAC.Error()},
		{name: "other authorizer's text", reason: `RBAC: [clusterrole.rbac.authorization.k8s.io "x" not found]`, err: ErrNotRBAC.Error()},
		{name: "unknown binding kind", reason: `RBAC: allowed by GlobalRoleBinding "g" of ClusterRole "c" to User "u"`, err: "binding kind"},
		{name: "unterminated quote", reason: `RBAC: allowed by ClusterRoleBinding "g of ClusterRole "c" to User "u"`, err: `"of"`},
		{name: "missing subject", reason: `RBAC: allowed by ClusterRoleBinding "g" of ClusterRole "c"`, err: `"to"`},
		{name: "unknown subject kind", reason: `RBAC: allowed by ClusterRoleBinding "g" of ClusterRole "c" to Robot "r"`, err: "subject kind"},
		{name: "trailing text", reason: `RBAC: allowed by ClusterRoleBinding "g" of ClusterRole "c" to User "u" and more`, err: "trailing text"},
		{name: "Role by a ClusterRoleBinding", reason: `RBAC: allowed by ClusterRoleBinding "g" of Role "c" to User "u"`, err: "role kind"},
		{name: "empty binding name", reason: `RBAC: allowed by ClusterRoleBinding "" of ClusterRole "c" to User "u"`, err: "binding name"},
		{name: "RoleBinding without any namespace", reason: `RBAC: allowed by RoleBinding "r" of Role "c" to User "u"`, err: "binding namespace"},
		{name: "ServiceAccount of a ClusterRoleBinding without namespace", reason: `RBAC: allowed by ClusterRoleBinding "r" of ClusterRole "c" to ServiceAccount "sa/"`, err: "subject namespace"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseReason(tc.reason, tc.ns)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// format writes g as the current kube-apiserver does (the describers of
// plugin/pkg/auth/authorizer/rbac).
func format(g Grant) string {
	b := fmt.Sprintf("%q", g.Binding.Name)
	if g.Binding.Kind == "RoleBinding" {
		b = fmt.Sprintf("%q", g.Binding.Name+"/"+g.Binding.Namespace)
	}
	s := fmt.Sprintf("%q", g.Subject.Name)
	if g.Subject.Kind == "ServiceAccount" {
		s = fmt.Sprintf("%q", g.Subject.Name+"/"+g.Subject.Namespace)
	}
	return fmt.Sprintf("RBAC: allowed by %s %s of %s %q to %s %s", g.Binding.Kind, b, g.Role.Kind, g.Role.Name, g.Subject.Kind, s)
}

// FuzzParseReason: no input panics; whatever parses prints back (in the
// current format) to a reason that parses to the same grant, so nothing is
// silently cut; a malformed RBAC reason is an error, never ErrNotRBAC.
func FuzzParseReason(f *testing.F) {
	for _, s := range []string{
		// Written by the ground's kube-apiserver v1.37.2.
		`RBAC: allowed by ClusterRoleBinding "system:basic-user" of ClusterRole "system:basic-user" to Group "system:authenticated"`,
		`RBAC: allowed by RoleBinding "dev-alice-aggregate-to-view/ks-benign-dlsnr3" of ClusterRole "system:aggregate-to-view" to User "dev-alice"`,
		`RBAC: allowed by RoleBinding "kubesift-collector-objects-lease/kubesift-obj-696c03cc" of Role "kubesift-collector-objects-lease" to ServiceAccount "kubesift-collector/kubesift-obj-696c03cc"`,
		`RBAC: allowed by ClusterRoleBinding "system:kube-controller-manager" of ClusterRole "system:kube-controller-manager" to User "system:kube-controller-manager"`,
		`RBAC: allowed by ClusterRoleBinding "ci-deploy" of ClusterRole "edit" to ServiceAccount "deployer/ci"`,
		`RBAC: allowed by RoleBinding "too-much/app" of ClusterRole "edit" to ServiceAccount "default/app"`,
		`RBAC: allowed by RoleBinding "r/shop" of Role "r" to User "o\"brien"`,
		// Written by kube-apiserver 1.10 and 1.11 (plugin/pkg/auth/authorizer/rbac
		// before the "RBAC: " prefix).
		`allowed by ClusterRoleBinding "system:controller:cronjob-controller" of ClusterRole "system:controller:cronjob-controller" to ServiceAccount "cronjob-controller/kube-system"`,
		`allowed by RoleBinding "bob-viewer/default" of ClusterRole "view" to User "bob"`,
		`allowed by ClusterRoleBinding "admins" of ClusterRole "cluster-admin" to Group "ops"`,
		// The RBAC authorizer's reasons for a request it did not allow: one
		// error, and an aggregate of several.
		`RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found`,
		`RBAC: [role.rbac.authorization.k8s.io "a" not found, clusterrole.rbac.authorization.k8s.io "b" not found]`,
		// Variants ParseReason accepts beyond what any release writes.
		`allowed by RoleBinding "r" of Role "r" to ServiceAccount "web/"`,
		`RBAC: allowed by ClusterRoleBinding "x" of ClusterRole "view" to User "\u00e9\x00"`,
		``, `RBAC: `, `allowed by `,
	} {
		f.Add(s, "shop")
	}
	f.Fuzz(func(t *testing.T, reason, ns string) {
		g, err := ParseReason(reason, ns)
		if err != nil {
			if errors.Is(err, ErrNotRBAC) && strings.HasPrefix(reason, "RBAC: allowed by ") {
				t.Fatalf("%q: ErrNotRBAC for an RBAC reason", reason)
			}
			return
		}
		again, err := ParseReason(format(g), "")
		if err != nil || again != g {
			t.Fatalf("%q parsed to %+v, which prints as %q and parses back to %+v, %v", reason, g, format(g), again, err)
		}
	})
}
