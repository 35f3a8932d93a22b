package posture

import (
	"time"

	"github.com/kubesift/kubesift/rules/rbacusage"
)

// usageNow is the fixed clock of the usage cases.
var usageNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

const aliceUID = "uid-clusterrolebinding--alice-admin"

// aliceGrant is what the authorizer names for alice-admin.
var aliceGrant = rbacusage.Grant{
	Binding: rbacusage.Ref{Kind: "ClusterRoleBinding", Name: "alice-admin"},
	Role:    rbacusage.Ref{Kind: "ClusterRole", Name: "cluster-admin"},
	Subject: rbacusage.Subject{Kind: "User", Name: "alice"},
}

// watched returns a prep that fixes the clock, starts the watch `ago`
// before it and observes uses (each p used `used` before the clock).
func watched(ago time.Duration, used time.Duration, g rbacusage.Grant, ps ...rbacusage.Pair) func(*Engine) {
	return func(e *Engine) {
		e.now = func() time.Time { return usageNow }
		e.StartWatch("k", usageNow.Add(-ago))
		var uses []rbacusage.Use
		for _, p := range ps {
			uses = append(uses, rbacusage.Use{Grant: g, Pair: p, At: usageNow.Add(-used)})
		}
		e.ObserveUsage("k", uses)
	}
}

const (
	day          = 24 * time.Hour
	readerBinder = `
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: read, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader}
subjects: [{kind: ServiceAccount, name: web}]
`
)

var getPods = rbacusage.Pair{Verb: "get", Resource: "pods"}

// usageCases are the TestChecks rows of the least-privilege checks.
func usageCases() []checkCase {
	readGrant := rbacusage.Grant{
		Binding: rbacusage.Ref{Kind: "RoleBinding", Namespace: "shop", Name: "read"},
		Role:    rbacusage.Ref{Kind: "ClusterRole", Name: "reader"},
		Subject: rbacusage.Subject{Kind: "ServiceAccount", Namespace: "shop", Name: "web"},
	}
	return []checkCase{
		{name: "binding unused for the window", check: "posture-rbac-unused-binding", base: aliceAdmin, uid: aliceUID, prep: watched(91*day, 0, aliceGrant), fail: true},
		{name: "binding last used before the window", check: "posture-rbac-unused-binding", base: aliceAdmin, uid: aliceUID, prep: watched(200*day, 91*day, aliceGrant, getPods), fail: true},
		{name: "binding used within the window", check: "posture-rbac-unused-binding", base: aliceAdmin, uid: aliceUID, prep: watched(200*day, 89*day, aliceGrant, getPods)},
		{name: "binding unused, but watched for less than the window", check: "posture-rbac-unused-binding", base: aliceAdmin, uid: aliceUID, prep: watched(89*day, 0, aliceGrant)},
		{name: "binding unused, watch start unknown", check: "posture-rbac-unused-binding", base: aliceAdmin, uid: aliceUID},
		{name: "system binding unused", check: "posture-rbac-unused-binding", base: aliceAdmin, changes: []change{{"metadata.name", "system:alice"}}, uid: "uid-clusterrolebinding--system:alice", prep: watched(91*day, 0, aliceGrant)},
		{name: "rbac-defaults binding unused", check: "posture-rbac-unused-binding", base: aliceAdmin, changes: []change{{"metadata.labels", map[string]any{"kubernetes.io/bootstrapping": "rbac-defaults"}}}, uid: aliceUID, prep: watched(91*day, 0, aliceGrant)},
		{name: "system binding used for get pods only", check: "posture-rbac-broader-than-use", base: aliceAdmin, changes: []change{{"metadata.name", "system:alice"}}, uid: "uid-clusterrolebinding--system:alice", extra: []string{clusterAdminRole},
			prep: watched(91*day, day, rbacusage.Grant{Binding: rbacusage.Ref{Kind: "ClusterRoleBinding", Name: "system:alice"}, Role: aliceGrant.Role, Subject: aliceGrant.Subject}, getPods)},
		{name: "cluster-admin used for get pods only", check: "posture-rbac-broader-than-use", base: aliceAdmin, uid: aliceUID, extra: []string{clusterAdminRole}, prep: watched(91*day, day, aliceGrant, getPods), fail: true,
			message: "used only get pods; suggested role: cluster-admin-used"},
		{name: "unused cluster-admin is not judged broader", check: "posture-rbac-broader-than-use", base: aliceAdmin, uid: aliceUID, prep: watched(91*day, 0, aliceGrant)},
		{name: "cluster-admin used, not watched for the window", check: "posture-rbac-broader-than-use", base: aliceAdmin, uid: aliceUID, prep: watched(10*day, day, aliceGrant, getPods)},
		{name: "secrets reader used for secrets", check: "posture-rbac-broader-than-use", base: readerBinder, uid: "uid-rolebinding-shop-read", extra: []string{secretsReader},
			prep: watched(91*day, day, readGrant, rbacusage.Pair{Verb: "get", Resource: "secrets"})},
		{name: "secrets reader used for configmaps", check: "posture-rbac-broader-than-use", base: readerBinder, uid: "uid-rolebinding-shop-read", extra: []string{secretsReader},
			prep: watched(91*day, day, readGrant, rbacusage.Pair{Verb: "get", Resource: "configmaps"}), fail: true},
		{name: "role bound nowhere", check: "posture-rbac-role-unbound", base: secretsReader, uid: "uid-clusterrole--reader", fail: true},
		{name: "role bound by a RoleBinding", check: "posture-rbac-role-unbound", base: secretsReader, uid: "uid-clusterrole--reader", extra: []string{readerBinder}},
		{name: "system role bound nowhere", check: "posture-rbac-role-unbound", base: secretsReader, changes: []change{{"metadata.name", "system:reader"}}, uid: "uid-clusterrole--system:reader"},
		{name: "rbac-defaults role bound nowhere", check: "posture-rbac-role-unbound", base: secretsReader, changes: []change{{"metadata.labels", map[string]any{"kubernetes.io/bootstrapping": "rbac-defaults"}}}, uid: "uid-clusterrole--reader"},
		{name: "role aggregated into another", check: "posture-rbac-role-unbound", base: secretsReader, changes: []change{{"metadata.labels", map[string]any{"rbac.authorization.k8s.io/aggregate-to-view": "true"}}}, uid: "uid-clusterrole--reader"},
		{name: "binding to a missing service account", check: "posture-rbac-missing-subject", base: readerBinder, changes: []change{{"subjects.0.name", "ghost"}}, uid: "uid-rolebinding-shop-read", fail: true},
		{name: "binding to a missing service account of another namespace", check: "posture-rbac-missing-subject", base: aliceAdmin, changes: []change{{"subjects", []any{map[string]any{"kind": "ServiceAccount", "name": "web", "namespace": "gone"}}}}, uid: aliceUID, fail: true},
		{name: "binding to an existing service account", check: "posture-rbac-missing-subject", base: readerBinder, uid: "uid-rolebinding-shop-read"},
		{name: "binding to a user", check: "posture-rbac-missing-subject", base: aliceAdmin, uid: aliceUID},
		{name: "system binding to a missing service account", check: "posture-rbac-missing-subject", base: readerBinder, changes: []change{{"metadata.name", "system:read"}, {"subjects.0.name", "ghost"}}, uid: "uid-rolebinding-shop-system:read"},
	}
}
