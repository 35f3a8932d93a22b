package posture

import (
	"encoding/json"
	"testing"
)

// FuzzApply feeds arbitrary JSON bodies, with identity taken from them as
// the objects source would, through Apply, Replace and Delete: any outcome
// but a panic (or an object kept under an invalid identity) is acceptable.
func FuzzApply(f *testing.F) {
	for _, doc := range []string{goodDeployment, goodNamespace, goodDenyAll, calicoNode, mirrorPod, aggregator, secretsReader, aliceAdmin} {
		b, _ := json.Marshal(obj(f, doc).Body)
		f.Add(b)
	}
	f.Add([]byte(`{"kind":"Pod","metadata":{"name":"p","namespace":"n","uid":"u"},"spec":{"containers":[{"securityContext":7}],"volumes":"x"}}`))
	f.Add([]byte(`{"kind":"ClusterRole","metadata":{"name":"a","uid":"u"},"aggregationRule":{"clusterRoleSelectors":[{"matchExpressions":[{"key":"k","operator":"In"}]}]}}`))
	e := New(builtin(f))
	f.Fuzz(func(t *testing.T, data []byte) {
		var body map[string]any
		if json.Unmarshal(data, &body) != nil {
			return
		}
		md := asMap(body["metadata"])
		o := Object{APIVersion: str(body["apiVersion"]), Kind: str(body["kind"]), Namespace: str(md["namespace"]),
			Name: str(md["name"]), UID: str(md["uid"]), ResourceVersion: str(md["resourceVersion"]), Body: body}
		_, err := e.Apply("fuzz", o)
		if _, rerr := e.Replace("fuzz-replace", []Object{o}); (err == nil) != (rerr == nil) {
			t.Fatalf("Apply and Replace disagree on validity: %v / %v", err, rerr)
		}
		e.Findings("fuzz")
		e.Score("fuzz")
		e.Delete("fuzz", o.Kind, o.Namespace, o.Name)
	})
}
