package posture

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/kubesift/kubesift/rules"
)

var (
	builtinOnce sync.Once
	builtinSet  *rules.Set
	builtinErr  error
)

// builtin is the built-in rule set, loaded once for the package's tests.
func builtin(t testing.TB) *rules.Set {
	t.Helper()
	builtinOnce.Do(func() { builtinSet, builtinErr = rules.Load(rules.LoadOptions{}) })
	if builtinErr != nil {
		t.Fatal(builtinErr)
	}
	return builtinSet
}

// obj builds an Object from YAML the way the objects source delivers it:
// JSON-decoded (numbers are float64), identity from metadata, uid derived
// from kind/namespace/name unless metadata.uid is set, resourceVersion "1"
// unless set.
func obj(t testing.TB, doc string) Object {
	t.Helper()
	var y map[string]any
	if err := yaml.Unmarshal([]byte(doc), &y); err != nil {
		t.Fatalf("fixture YAML: %v\n%s", err, doc)
	}
	body := jsonMap(t, y)
	md := asMap(body["metadata"])
	o := Object{
		APIVersion: str(body["apiVersion"]), Kind: str(body["kind"]),
		Namespace: str(md["namespace"]), Name: str(md["name"]),
		UID: str(md["uid"]), ResourceVersion: str(md["resourceVersion"]), Body: body,
	}
	if o.UID == "" {
		o.UID = "uid-" + strings.ToLower(o.Kind) + "-" + o.Namespace + "-" + o.Name
	}
	if o.ResourceVersion == "" {
		o.ResourceVersion = "1"
	}
	return o
}

// with returns a deep copy of o with the value at a dotted path set (maps
// and list indexes are created as needed); a nil value deletes the key.
// The resourceVersion is bumped, as an update would.
func with(t testing.TB, o Object, path string, v any) Object {
	t.Helper()
	body := jsonMap(t, o.Body)
	if v != nil {
		raw, _ := json.Marshal(v)
		_ = json.Unmarshal(raw, &v)
	}
	parts := strings.Split(path, ".")
	var cur any = body
	for i, p := range parts {
		last := i == len(parts)-1
		switch c := cur.(type) {
		case map[string]any:
			if last {
				if v == nil {
					delete(c, p)
				} else {
					c[p] = v
				}
				break
			}
			if c[p] == nil {
				if _, err := strconv.Atoi(parts[i+1]); err == nil {
					c[p] = []any{map[string]any{}}
				} else {
					c[p] = map[string]any{}
				}
			}
			cur = c[p]
		case []any:
			n, err := strconv.Atoi(p)
			if err != nil || n >= len(c) {
				t.Fatalf("with %s: no element %s", path, p)
			}
			if last {
				c[n] = v
				break
			}
			cur = c[n]
		default:
			t.Fatalf("with %s: %s is not a map or list", path, strings.Join(parts[:i], "."))
		}
	}
	o.Body = body
	rv, _ := strconv.Atoi(o.ResourceVersion)
	o.ResourceVersion = strconv.Itoa(rv + 1)
	if md := asMap(body["metadata"]); md != nil {
		o.Namespace = str(md["namespace"])
		o.Name = str(md["name"])
	}
	return o
}

// ids lists the check ids of decisions (or findings) about one object uid,
// with their state: "posture-host-pid:open".
func ids(ds []Decision, uid string) []string {
	var out []string
	for _, d := range ds {
		if uid == "" || d.Object.UID == uid {
			out = append(out, d.CheckID+":"+string(d.State))
		}
	}
	return out
}

func has(ds []Decision, checkID, uid string) bool {
	for _, d := range ds {
		if d.CheckID == checkID && d.Object.UID == uid {
			return true
		}
	}
	return false
}

// Fixtures: a compliant namespace and workload the tests break one field at
// a time.
const (
	goodNamespace = `
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {pod-security.kubernetes.io/enforce: restricted}}
`
	goodDenyAll = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: shop}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
`
	goodServiceAccount = `
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: shop}
automountServiceAccountToken: false
`
	goodDeployment = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  template:
    spec:
      serviceAccountName: web
      automountServiceAccountToken: false
      securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: app
        image: registry.k8s.io/app:1.0
        ports: [{containerPort: 8080}]
        securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
        resources: {limits: {cpu: "1", memory: 1Gi}}
`
	clusterAdminRole = `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: cluster-admin, labels: {kubernetes.io/bootstrapping: rbac-defaults}}
rules:
- {apiGroups: ["*"], resources: ["*"], verbs: ["*"]}
- {nonResourceURLs: ["*"], verbs: ["*"]}
`
	builtinMastersBinding = `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: cluster-admin, labels: {kubernetes.io/bootstrapping: rbac-defaults}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:masters"}
`
)

// goodShop is a compliant namespace with its workload and what it needs.
func goodShop(t testing.TB) []Object {
	return []Object{obj(t, goodNamespace), obj(t, goodDenyAll), obj(t, goodServiceAccount), obj(t, goodDeployment),
		obj(t, clusterAdminRole), obj(t, builtinMastersBinding)}
}

// writeRules writes a rule file into dir.
func writeRules(t testing.TB, dir, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// jsonMap is v as the objects source decodes objects: through JSON, so
// numbers are float64 and the result shares nothing with v.
func jsonMap(t testing.TB, v any) map[string]any {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
