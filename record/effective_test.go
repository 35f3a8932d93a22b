package record

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// auditWrite builds an audit event of a write for EffectiveOf.
func auditWrite(verb, group, resource, sub, uri string, code int32, req, resp string) *auditv1.Event {
	ev := &auditv1.Event{Verb: verb, RequestURI: uri,
		ObjectRef: &auditv1.ObjectReference{APIGroup: group, Resource: resource, Subresource: sub, Name: "x"}}
	if code != 0 {
		ev.ResponseStatus = &metav1.Status{Code: code}
	}
	if req != "" {
		ev.RequestObject = &runtime.Unknown{Raw: []byte(req)}
	}
	if resp != "" {
		ev.ResponseObject = &runtime.Unknown{Raw: []byte(resp)}
	}
	return ev
}

func jsonMap(t *testing.T, s string) map[string]any {
	t.Helper()
	if s == "" {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("bad test JSON %s: %v", s, err)
	}
	return m
}

func TestEffectiveOf(t *testing.T) {
	const deploy = `{"kind":"Deployment","apiVersion":"apps/v1","spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx"}]}}}}`
	tests := []struct {
		name                       string
		verb, group, resource, sub string
		uri                        string
		code                       int32
		req, resp, before          string
		wantFrom                   string
		wantForm                   PatchForm
		want                       string // the object, as JSON
		wantOps                    []PatchOp
		wantErr                    string // a FieldError's field
	}{
		{name: "create: the request body", verb: "create", group: "apps", resource: "deployments", code: 201,
			req: deploy, wantFrom: EffectiveRequest, want: deploy},
		{name: "update: the logged response wins", verb: "update", group: "apps", resource: "deployments", code: 200,
			req: deploy, resp: `{"kind":"Deployment","spec":{"replicas":3}}`, wantFrom: EffectiveResponse,
			want: `{"kind":"Deployment","spec":{"replicas":3}}`},
		{name: "failed request: a Status response is not the object", verb: "create", group: "apps", resource: "deployments", code: 422,
			req: deploy, resp: `{"kind":"Status","code":422}`, wantFrom: EffectiveRequest, want: deploy},
		{name: "delete is not judged", verb: "delete", group: "apps", resource: "deployments", code: 200, resp: deploy},
		{name: "metadata level: no body", verb: "patch", group: "apps", resource: "deployments", code: 200},
		{name: "JSON patch on nothing known: missing parents are built", verb: "patch", group: "apps", resource: "deployments", code: 200,
			req:      `[{"op":"test","path":"/spec/replicas","value":1},{"op":"replace","path":"/spec/template/spec/containers/0/securityContext/privileged","value":true}]`,
			wantFrom: EffectivePartial, wantForm: PatchJSON,
			want: `{"kind":"Deployment","apiVersion":"apps/v1","spec":{"template":{"spec":{"containers":[{"securityContext":{"privileged":true}}]}}}}`,
			wantOps: []PatchOp{{Op: "test", Path: "/spec/replicas", Value: 1.0},
				{Op: "replace", Path: "/spec/template/spec/containers/0/securityContext/privileged", Value: true}}},
		{name: "JSON patch on the object before", verb: "patch", group: "apps", resource: "deployments", code: 200, before: deploy,
			req:      `[{"op":"add","path":"/spec/template/spec/containers/-","value":{"name":"side","image":"evil"}},{"op":"remove","path":"/spec/template/spec/containers/0"}]`,
			wantFrom: EffectivePatch, wantForm: PatchJSON,
			want: `{"kind":"Deployment","apiVersion":"apps/v1","spec":{"template":{"spec":{"containers":[{"name":"side","image":"evil"}]}}}}`,
			wantOps: []PatchOp{{Op: "add", Path: "/spec/template/spec/containers/-", Value: map[string]any{"name": "side", "image": "evil"}},
				{Op: "remove", Path: "/spec/template/spec/containers/0"}}},
		{name: "JSON patch through a scalar of the object before: the rest still applies", verb: "patch", group: "apps", resource: "deployments", code: 200,
			before:   `{"kind":"Deployment","spec":"oops"}`,
			req:      `[{"op":"add","path":"/spec/template","value":1},{"op":"add","path":"/metadata/labels/a~1b","value":"c"}]`,
			wantFrom: EffectivePartial, wantForm: PatchJSON,
			want:    `{"kind":"Deployment","apiVersion":"apps/v1","spec":"oops","metadata":{"labels":{"a/b":"c"}}}`,
			wantOps: []PatchOp{{Op: "add", Path: "/spec/template", Value: 1.0}, {Op: "add", Path: "/metadata/labels/a~1b", Value: "c"}}},
		{name: "JSON patch judged on the response where logged; ops still listed", verb: "patch", group: "rbac.authorization.k8s.io", resource: "clusterroles", code: 200,
			req: `[{"op":"add","path":"/rules/0/verbs/-","value":"*"}]`, resp: `{"kind":"ClusterRole","rules":[{"verbs":["get","*"]}]}`,
			wantFrom: EffectiveResponse, wantForm: PatchJSON, want: `{"kind":"ClusterRole","rules":[{"verbs":["get","*"]}]}`,
			wantOps: []PatchOp{{Op: "add", Path: "/rules/0/verbs/-", Value: "*"}}},
		{name: "JSON patch move and copy", verb: "patch", group: "", resource: "configmaps", code: 200,
			req:      `[{"op":"add","path":"/data","value":{"a":"1"}},{"op":"copy","from":"/data/a","path":"/data/b"},{"op":"move","from":"/data/a","path":"/data/c"},{"op":"move","from":"/nope","path":"/x"}]`,
			wantFrom: EffectivePartial, wantForm: PatchJSON, want: `{"kind":"ConfigMap","apiVersion":"v1","data":{"b":"1","c":"1"}}`,
			wantOps: []PatchOp{{Op: "add", Path: "/data", Value: map[string]any{"a": "1"}}, {Op: "copy", From: "/data/a", Path: "/data/b"},
				{Op: "move", From: "/data/a", Path: "/data/c"}, {Op: "move", From: "/nope", Path: "/x"}}},
		{name: "malformed JSON patch: named, the response still judged", verb: "patch", group: "apps", resource: "deployments", code: 200,
			req: `[{"op":"add","value":1}]`, resp: deploy, wantFrom: EffectiveResponse, wantForm: PatchJSON, want: deploy,
			wantErr: "requestObject[0].path"},
		{name: "unknown JSON patch operation", verb: "patch", group: "apps", resource: "deployments", code: 200,
			req: `[{"op":"frob","path":"/a"}]`, wantErr: "requestObject[0].op"},
		{name: "patch body that is not JSON", verb: "patch", group: "apps", resource: "deployments", code: 200,
			req: `{"spec":`, wantErr: "requestObject"},
		{name: "strategic merge patch merges containers by name", verb: "patch", group: "apps", resource: "deployments", code: 200, before: deploy,
			req:      `{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"web"}],"containers":[{"name":"web","securityContext":{"privileged":true}}]}}}}`,
			wantFrom: EffectivePatch, wantForm: PatchStrategic,
			want: `{"kind":"Deployment","apiVersion":"apps/v1","spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx","securityContext":{"privileged":true}}]}}}}`,
			wantOps: []PatchOp{{Op: "set", Path: "/spec/template/spec/containers/0/name", Value: "web"},
				{Op: "set", Path: "/spec/template/spec/containers/0/securityContext/privileged", Value: true}}},
		{name: "strategic $patch: delete on nothing known", verb: "patch", group: "apps", resource: "deployments", code: 200,
			req:      `{"spec":{"template":{"spec":{"containers":[{"name":"debug","$patch":"delete"}]}}}}`,
			wantFrom: EffectivePartial, wantForm: PatchStrategic,
			want:    `{"kind":"Deployment","apiVersion":"apps/v1","spec":{"template":{"spec":{"containers":[]}}}}`,
			wantOps: []PatchOp{{Op: "set", Path: "/spec/template/spec/containers/0/name", Value: "debug"}}},
		{name: "merge patch of a kind without a Go type: lists replace, nulls remove", verb: "patch", group: "example.com", resource: "widgets", code: 200,
			before:   `{"kind":"Widget","spec":{"items":[1,2],"old":true}}`,
			req:      `{"spec":{"items":[3],"old":null}}`,
			wantFrom: EffectivePatch, wantForm: PatchMerge, want: `{"kind":"Widget","spec":{"items":[3]}}`,
			wantOps: []PatchOp{{Op: "set", Path: "/spec/items/0", Value: 3.0}, {Op: "remove", Path: "/spec/old"}}},
		{name: "apply body (force parameter) is the whole object", verb: "patch", group: "rbac.authorization.k8s.io", resource: "clusterroles", code: 200,
			uri: "/apis/rbac.authorization.k8s.io/v1/clusterroles/x?fieldManager=ci&force=true",
			req: `{"metadata":{"name":"x"},"rules":[{"verbs":["*"]}]}`, wantFrom: EffectiveRequest, wantForm: PatchApply,
			want:    `{"kind":"ClusterRole","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"x"},"rules":[{"verbs":["*"]}]}`,
			wantOps: []PatchOp{{Op: "set", Path: "/metadata/name", Value: "x"}, {Op: "set", Path: "/rules/0/verbs/0", Value: "*"}}},
		{name: "apply body recognised by apiVersion and kind", verb: "patch", group: "", resource: "services", code: 200,
			req: `{"apiVersion":"v1","kind":"Service","spec":{"type":"NodePort"}}`, wantFrom: EffectiveRequest, wantForm: PatchApply,
			want:    `{"apiVersion":"v1","kind":"Service","spec":{"type":"NodePort"}}`,
			wantOps: []PatchOp{{Op: "set", Path: "/apiVersion", Value: "v1"}, {Op: "set", Path: "/kind", Value: "Service"}, {Op: "set", Path: "/spec/type", Value: "NodePort"}}},
		{name: "ephemeral containers patch is a Pod patch", verb: "patch", group: "", resource: "pods", sub: "ephemeralcontainers", code: 200,
			req:      `{"spec":{"ephemeralContainers":[{"name":"dbg","image":"busybox","securityContext":{"privileged":true}}]}}`,
			wantFrom: EffectivePartial, wantForm: PatchStrategic,
			want: `{"kind":"Pod","apiVersion":"v1","spec":{"ephemeralContainers":[{"name":"dbg","image":"busybox","securityContext":{"privileged":true}}]}}`,
			wantOps: []PatchOp{{Op: "set", Path: "/spec/ephemeralContainers/0/image", Value: "busybox"}, {Op: "set", Path: "/spec/ephemeralContainers/0/name", Value: "dbg"},
				{Op: "set", Path: "/spec/ephemeralContainers/0/securityContext/privileged", Value: true}}},
		{name: "scale subresource body is no Deployment", verb: "patch", group: "apps", resource: "deployments", sub: "scale", code: 200,
			req: `{"spec":{"replicas":5}}`, wantFrom: EffectivePartial, wantForm: PatchMerge, want: `{"spec":{"replicas":5}}`,
			wantOps: []PatchOp{{Op: "set", Path: "/spec/replicas", Value: 5.0}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := jsonMap(t, tc.before)
			beforeCopy := jsonMap(t, tc.before)
			eff, err := EffectiveOf(auditWrite(tc.verb, tc.group, tc.resource, tc.sub, tc.uri, tc.code, tc.req, tc.resp), before)
			var fe *FieldError
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("error: %v", err)
			case tc.wantErr != "" && (!errors.As(err, &fe) || fe.Field != tc.wantErr):
				t.Fatalf("error %v, want a FieldError on %s", err, tc.wantErr)
			}
			if !reflect.DeepEqual(before, beforeCopy) {
				t.Errorf("the object before was changed: %v", before)
			}
			if tc.wantFrom == "" {
				if eff != nil && eff.Object != nil {
					t.Fatalf("got an object %v from %s, want none", eff.Object, eff.From)
				}
				return
			}
			if eff == nil {
				t.Fatalf("no effective object")
			}
			if eff.From != tc.wantFrom || eff.Form != tc.wantForm {
				t.Errorf("from %q form %q, want %q %q", eff.From, eff.Form, tc.wantFrom, tc.wantForm)
			}
			if want := jsonMap(t, tc.want); !reflect.DeepEqual(eff.Object, want) {
				got, _ := json.Marshal(eff.Object)
				t.Errorf("object\n got %s\nwant %s", got, tc.want)
			}
			got, want := eff.Ops, tc.wantOps
			if eff.Form != PatchJSON {
				got, want = sortedOps(got), sortedOps(want)
			}
			if len(got) == 0 && len(want) == 0 {
				got, want = nil, nil
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("ops\n got %+v\nwant %+v", eff.Ops, tc.wantOps)
			}
		})
	}
}

// sortedOps orders ops by path: merge-style ops come from walking a map.
func sortedOps(ops []PatchOp) []PatchOp {
	if len(ops) == 0 {
		return nil
	}
	out := slices.Clone(ops)
	slices.SortStableFunc(out, func(a, b PatchOp) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// TestJSONPatchBounds: an index far past the end of a list and a chain of
// copies that doubles the document are not applied, so a patch cannot make
// the applier allocate without limit; the rest of the patch still is.
func TestJSONPatchBounds(t *testing.T) {
	tests := []struct {
		name    string
		ops     []PatchOp
		wantAll bool
		check   func(t *testing.T, obj map[string]any)
	}{
		{name: "index within the padding bound", ops: []PatchOp{{Op: "add", Path: "/l/3", Value: "x"}}, wantAll: true,
			check: func(t *testing.T, obj map[string]any) {
				if l := obj["l"].([]any); len(l) != 4 || l[3] != "x" {
					t.Errorf("l = %v", l)
				}
			}},
		{name: "index past the padding bound", ops: []PatchOp{{Op: "add", Path: "/l/999999999", Value: "x"}, {Op: "add", Path: "/ok", Value: true}},
			check: func(t *testing.T, obj map[string]any) {
				if obj["ok"] != true || len(asList(obj["l"])) > maxPatchPad {
					t.Errorf("obj = %v", obj)
				}
			}},
		{name: "copy bomb", ops: copyBomb(40),
			check: func(t *testing.T, obj map[string]any) {
				if n := countNodes(obj, 1<<30); n > 2*maxCopiedNodes {
					t.Errorf("%d values after the copies, want at most %d", n, 2*maxCopiedNodes)
				}
			}},
		{name: "pointer without a leading slash", ops: []PatchOp{{Op: "add", Path: "a", Value: 1}}},
		{name: "replace the whole document with a scalar", ops: []PatchOp{{Op: "replace", Path: "", Value: 1}},
			check: func(t *testing.T, obj map[string]any) {
				if len(obj) != 0 {
					t.Errorf("obj = %v", obj)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obj, all := applyJSONPatch(map[string]any{}, tc.ops)
			if all != tc.wantAll {
				t.Errorf("all applied = %v, want %v", all, tc.wantAll)
			}
			if tc.check != nil {
				tc.check(t, obj)
			}
		})
	}
}

func asList(v any) []any { l, _ := v.([]any); return l }

// copyBomb doubles /a n times.
func copyBomb(n int) []PatchOp {
	ops := []PatchOp{{Op: "add", Path: "/a", Value: []any{"x", "y"}}}
	for i := 0; i < n; i++ {
		ops = append(ops, PatchOp{Op: "copy", From: "/a", Path: "/a/-"})
	}
	return ops
}

func TestObjectFromOps(t *testing.T) {
	got := ObjectFromOps([]PatchOp{{Op: "set", Path: "/rules/0/verbs/0", Value: "escalate"}, {Op: "remove", Path: "/x"},
		{Op: "add", Path: "/rules/-", Value: map[string]any{"resources": []any{"secrets"}}}})
	want := map[string]any{"rules": []any{map[string]any{"verbs": []any{"escalate"}}, map[string]any{"resources": []any{"secrets"}}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if s := strings.TrimSpace(escapePointer("a/b~c")); s != "a~1b~0c" {
		t.Errorf("escapePointer = %q", s)
	}
}

// TestDecodeStored checks that a stored object is decoded as decodeBody
// decodes it, without the top-level metadata.managedFields, and that it
// refuses what decodeBody refuses.
func TestDecodeStored(t *testing.T) {
	const mf = `"managedFields":[{"manager":"kubectl","operation":"Apply","fieldsV1":{"f:spec":{"f:replicas":{}}}}]`
	tests := []struct {
		name, raw, want string // want: the object as JSON, "" for nil
		wantErr         bool
	}{
		{name: "managedFields left out", raw: `{"kind":"Deployment","metadata":{"name":"web",` + mf + `,"labels":{"a":"b"}},"spec":{"replicas":2}}`,
			want: `{"kind":"Deployment","metadata":{"name":"web","labels":{"a":"b"}},"spec":{"replicas":2}}`},
		{name: "only the object's own", raw: `{"kind":"X","spec":{"template":{"metadata":{` + mf + `}}}}`,
			want: `{"kind":"X","spec":{"template":{"metadata":{` + mf + `}}}}`},
		{name: "metadata not an object", raw: `{"kind":"X","metadata":[1,"a"]}`, want: `{"kind":"X","metadata":[1,"a"]}`},
		{name: "metadata null", raw: `{"kind":"X","metadata":null}`, want: `{"kind":"X","metadata":null}`},
		{name: "surrounding space", raw: " \n{\"kind\":\"X\",\"n\":1.5e3}\t ", want: `{"kind":"X","n":1500}`},
		{name: "not an object", raw: `[{"kind":"X"}]`},
		{name: "null", raw: `null`},
		{name: "trailing value", raw: `{"kind":"X"} {}`, wantErr: true},
		{name: "trailing garbage", raw: `{"kind":"X"}x`, wantErr: true},
		{name: "trailing brace", raw: `{"kind":"X"}}`, wantErr: true},
		{name: "truncated", raw: `{"kind":"X","metadata":{"name":"a"`, wantErr: true},
		{name: "truncated in managedFields", raw: `{"metadata":{"managedFields":[{"a":`, wantErr: true},
		{name: "empty", raw: ``, wantErr: true},
		{name: "bad literal", raw: `{"a":tru}`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeStored([]byte(tc.raw))
			_, bodyErr := decodeBody([]byte(tc.raw), "responseObject")
			if (err != nil) != tc.wantErr || (bodyErr != nil) != tc.wantErr {
				t.Fatalf("error %v (decodeBody: %v), want error %v", err, bodyErr, tc.wantErr)
			}
			if err != nil {
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field != "responseObject" {
					t.Errorf("error %v does not name responseObject", err)
				}
				return
			}
			if want := jsonMap(t, tc.want); !reflect.DeepEqual(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}
