package record

import "testing"

// BenchmarkEffectiveOf is the cost of working out the effective object of
// one Deployment write per source and patch form. "create" (the request
// body, decoded) is the baseline in the same run: every other form pays it
// plus its applier.
func BenchmarkEffectiveOf(b *testing.B) {
	const deploy = `{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"web","namespace":"default","labels":{"app":"web"}},` +
		`"spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},` +
		`"spec":{"containers":[{"name":"web","image":"nginx:1.27","ports":[{"containerPort":80}],"securityContext":{"privileged":true}}]}}}}`
	cases := []struct{ name, verb, uri, req, resp string }{
		{"create", "create", "", deploy, ""},
		{"response", "patch", "", `{"spec":{"replicas":3}}`, deploy},
		{"json", "patch", "", `[{"op":"add","path":"/spec/template/spec/containers/0/securityContext","value":{"privileged":true}},{"op":"replace","path":"/spec/replicas","value":3}]`, ""},
		{"merge", "patch", "", `{"spec":{"replicas":3,"template":{"spec":{"containers":[{"name":"web","securityContext":{"privileged":true}}]}}}}`, ""},
		{"strategic", "patch", "", `{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"web"}],"containers":[{"name":"web","securityContext":{"privileged":true}}]}}}}`, ""},
		{"apply", "patch", "/apis/apps/v1/namespaces/default/deployments/web?fieldManager=x&force=true", deploy, ""},
	}
	for _, c := range cases {
		ev := auditWrite(c.verb, "apps", "deployments", "", c.uri, 200, c.req, c.resp)
		if c.name == "merge" {
			ev.ObjectRef.APIGroup = "example.com" // no Go type: merge semantics
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if eff, err := EffectiveOf(ev, nil); err != nil || eff.Object == nil {
					b.Fatal(eff, err)
				}
			}
		})
	}
}
