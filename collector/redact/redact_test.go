package redact

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/record"
)

// Planted values: none of them (nor their base64) may appear in a redacted
// record.
const (
	plantSecretData   = "plant-secret-data-7f3a"
	plantStringData   = "plant-string-data-91c2"
	plantLastApplied  = "plant-last-applied-5d0e"
	plantCMPassword   = "plant-cm-password-22b8"
	plantCMAPIKey     = "plant-cm-apikey-0c4d"
	plantCMPem        = "plant-cm-pem-e61f"
	plantCMBinary     = "plant-cm-binary-3aa9"
	plantTokenRequest = "plant-tokenrequest-jwt-8b17"
	plantTokenReview  = "plant-tokenreview-jwt-c5e0"
	plantURIToken     = "plant-uri-token-4410"
	plantURIPassword  = "plant-uri-password-77aa"
	plantPatch        = "plant-json-patch-19fe"
	keepValue         = "keep-me-visible-5150"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func newSanitizer(t testing.TB, reg prometheus.Registerer, mut ...func(*config.CollectorConfig)) *Sanitizer {
	t.Helper()
	c := config.Default().Collector
	for _, m := range mut {
		m(&c)
	}
	s, err := New(c.Redaction, c.Size, c.DeadLetterMaxBytes, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// auditLine builds an audit event as kube-apiserver writes it.
func auditLine(verb, uri, resource, sub string, req, resp string) string {
	ev := map[string]any{
		"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
		"auditID": "id-" + resource + "-" + verb, "stage": "ResponseComplete",
		"requestURI": uri, "verb": verb,
		"user":                     map[string]any{"username": "alice", "groups": []string{"dev"}},
		"sourceIPs":                []string{"10.0.0.1"},
		"userAgent":                "kubectl/v1.37",
		"responseStatus":           map[string]any{"metadata": map[string]any{}, "code": 200},
		"requestReceivedTimestamp": "2026-01-02T03:04:05.000000Z",
		"stageTimestamp":           "2026-01-02T03:04:05.100000Z",
		"annotations":              map[string]any{"authorization.k8s.io/decision": "allow"},
	}
	if resource != "" {
		ev["objectRef"] = map[string]any{"resource": resource, "subresource": sub, "namespace": "ns1", "name": "obj1", "apiVersion": "v1"}
	}
	if req != "" {
		ev["requestObject"] = json.RawMessage(req)
	}
	if resp != "" {
		ev["responseObject"] = json.RawMessage(resp)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func decodeOne(t testing.TB, line string) *record.Record {
	t.Helper()
	recs, errs := record.DecodeAll([]byte(line), "test", record.DecodeOptions{Cluster: record.Cluster{Name: "c1", UID: "u1"}})
	if len(errs) > 0 || len(recs) != 1 {
		t.Fatalf("decode: %d records, errors %v", len(recs), errs)
	}
	return recs[0]
}

func lastApplied(obj map[string]any) string {
	b, _ := json.Marshal(obj)
	return string(b)
}

var (
	secretObj = fmt.Sprintf(`{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db","namespace":"ns1","labels":{"app":%q},"annotations":{"owner":"team-a","kubectl.kubernetes.io/last-applied-configuration":%q}},"type":"Opaque","data":{"password":%q},"stringData":{"token":%q}}`,
		keepValue,
		lastApplied(map[string]any{"apiVersion": "v1", "kind": "Secret", "metadata": map[string]any{"name": "db"}, "stringData": map[string]any{"password": plantLastApplied}, "data": map[string]any{"x": b64(plantLastApplied)}}),
		b64(plantSecretData), plantStringData)
	secretList  = `{"kind":"SecretList","apiVersion":"v1","metadata":{"resourceVersion":"12"},"items":[` + secretObj + `,` + secretObj + `]}`
	secretTable = fmt.Sprintf(`{"kind":"Table","apiVersion":"meta.k8s.io/v1","columnDefinitions":[{"name":"Name","type":"string"},{"name":"Data","type":"string"}],"rows":[{"cells":["db",1],"object":{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{"name":"db","annotations":{"kubectl.kubernetes.io/last-applied-configuration":%q}}}}]}`,
		lastApplied(map[string]any{"kind": "Secret", "data": map[string]any{"password": b64(plantLastApplied)}}))
	secretJSONPatch = fmt.Sprintf(`[{"op":"test","path":"/data/password","value":%q},{"op":"replace","path":"/data/password","value":%q},{"op":"add","path":"/stringData","value":{"t":%q}},{"op":"add","path":"/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration","value":%q},{"op":"add","path":"/metadata/labels/app","value":%q},{"op":"remove","path":"/data/old"}]`,
		b64(plantPatch), b64(plantPatch), plantPatch, plantPatch, keepValue)
	secretMergePatch = fmt.Sprintf(`{"stringData":{"password":%q},"metadata":{"labels":{"app":%q}}}`, plantPatch, keepValue)

	cmData = fmt.Sprintf(`"data":{"db_password":%q,"API_KEY":%q,"server.pem":%q,"log_level":%q},"binaryData":{"secret.bin":%q,"logo.png":%q}`,
		plantCMPassword, plantCMAPIKey, plantCMPem, keepValue, b64(plantCMBinary), b64(keepValue))
	cmObj = fmt.Sprintf(`{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"cfg","namespace":"ns1","annotations":{"kubectl.kubernetes.io/last-applied-configuration":%q}},%s}`,
		`{"apiVersion":"v1","kind":"ConfigMap",`+cmData+`}`, cmData)
	cmList      = `{"kind":"ConfigMapList","apiVersion":"v1","metadata":{},"items":[` + cmObj + `]}`
	cmJSONPatch = fmt.Sprintf(`[{"op":"replace","path":"/data/db_password","value":%q},{"op":"replace","path":"/data/log_level","value":%q}]`, plantCMPassword, keepValue)

	tokenRequestReq  = `{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","metadata":{"creationTimestamp":null},"spec":{"audiences":["` + keepValue + `"],"expirationSeconds":3600,"boundObjectRef":null},"status":{"token":"","expirationTimestamp":null}}`
	tokenRequestResp = `{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","metadata":{"name":"sa1","namespace":"ns1"},"spec":{"audiences":["` + keepValue + `"],"expirationSeconds":3600,"boundObjectRef":null},"status":{"token":"` + plantTokenRequest + `","expirationTimestamp":"2026-01-02T04:04:05Z"}}`
	tokenReviewReq   = `{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","metadata":{},"spec":{"token":"` + plantTokenReview + `","audiences":["` + keepValue + `"]},"status":{"user":{}}}`
	tokenReviewResp  = `{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","metadata":{},"spec":{"token":"` + plantTokenReview + `"},"status":{"authenticated":true,"user":{"username":"system:serviceaccount:ns1:` + keepValue + `"}}}`
	podObj           = `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"nginx","env":[{"name":"KEYCLOAK_URL","value":"` + keepValue + `"}]}]},"data":{"token":"` + keepValue + `"}}`
)

var allPlants = []string{plantSecretData, plantStringData, plantLastApplied, plantCMPassword, plantCMAPIKey, plantCMPem,
	plantCMBinary, plantTokenRequest, plantTokenReview, plantURIToken, plantURIPassword, plantPatch}

// leaks returns the planted values (plain or base64) found in out.
func leaks(out string) []string {
	var found []string
	for _, p := range allPlants {
		if strings.Contains(out, p) || strings.Contains(out, b64(p)) || strings.Contains(out, strings.TrimRight(b64(p), "=")) {
			found = append(found, p)
		}
	}
	return found
}

// redactionCase is one audit line through Apply.
type redactionCase struct {
	name      string
	line      string
	wantKinds []string // Flags.Redacted
	keep      []string // must survive in the output
	verbatim  bool     // Object must be byte-identical to the input
}

func TestRedaction(t *testing.T) {
	tests := append([]redactionCase{
		{"secret create", auditLine("create", "/api/v1/namespaces/ns1/secrets", "secrets", "", secretObj, secretObj),
			[]string{KindSecretData, KindSecretLastApplied}, []string{keepValue, `"password"`, `"token"`, `"owner":"team-a"`, `"name":"db"`, "alice", MarkerBase64, `"Opaque"`}, false},
		{"SecretList response", auditLine("list", "/api/v1/namespaces/ns1/secrets?limit=500", "secrets", "", "", secretList),
			[]string{KindSecretData, KindSecretLastApplied}, []string{"limit=500", `"resourceVersion":"12"`}, false},
		{"secrets as Table", auditLine("list", "/api/v1/namespaces/ns1/secrets", "secrets", "", "", secretTable),
			[]string{KindSecretLastApplied}, []string{`"cells":["db",1]`}, false},
		{"secret JSON patch", auditLine("patch", "/api/v1/namespaces/ns1/secrets/db", "secrets", "", secretJSONPatch, secretObj),
			[]string{KindSecretData, KindSecretLastApplied}, []string{keepValue, `"/data/old"`}, false},
		{"secret merge patch", auditLine("patch", "/api/v1/namespaces/ns1/secrets/db", "secrets", "", secretMergePatch, ""),
			[]string{KindSecretData}, []string{keepValue}, false},
		{"secret without objectRef, from the URI", auditLine("create", "/api/v1/namespaces/ns1/secrets", "", "", secretObj, ""),
			[]string{KindSecretData, KindSecretLastApplied}, []string{keepValue}, false},
		{"configmap credential keys", auditLine("create", "/api/v1/namespaces/ns1/configmaps", "configmaps", "", cmObj, cmObj),
			[]string{KindConfigMapCredential}, []string{keepValue, b64(keepValue), `"db_password"`, `"server.pem"`, `"log_level"`}, false},
		{"ConfigMapList", auditLine("list", "/api/v1/configmaps", "configmaps", "", "", cmList),
			[]string{KindConfigMapCredential}, []string{keepValue}, false},
		{"configmap JSON patch", auditLine("patch", "/api/v1/namespaces/ns1/configmaps/cfg", "configmaps", "", cmJSONPatch, ""),
			[]string{KindConfigMapCredential}, []string{keepValue}, false},
		{"TokenRequest", auditLine("create", "/api/v1/namespaces/ns1/serviceaccounts/sa1/token", "serviceaccounts", "token", tokenRequestReq, tokenRequestResp),
			[]string{KindTokenRequest}, []string{keepValue, `"expirationSeconds":3600`}, false},
		{"TokenReview", auditLine("create", "/apis/authentication.k8s.io/v1/tokenreviews", "tokenreviews", "", tokenReviewReq, tokenReviewResp),
			[]string{KindTokenReview}, []string{keepValue, `"authenticated":true`}, false},
		{"query string tokens", auditLine("get", "/api/v1/namespaces/ns1/pods/p/log?token="+plantURIToken+"&limitBytes=500&Password="+plantURIPassword+"&access_token=", "pods", "log", "", ""),
			[]string{KindURIQuery}, []string{"limitBytes=500", "token=" + Marker, "Password=" + Marker, "access_token="}, false},
		{"percent-encoded parameter name", auditLine("get", "/api/v1/pods?acc%65ss_token="+plantURIToken, "pods", "", "", ""),
			[]string{KindURIQuery}, nil, false},
		{"pod with secret-looking fields is left alone", auditLine("create", "/api/v1/namespaces/ns1/pods", "pods", "", podObj, podObj),
			nil, []string{keepValue}, true},
		{"secret at Metadata level", auditLine("get", "/api/v1/namespaces/ns1/secrets/db", "secrets", "", "", ""),
			nil, []string{"/secrets/db"}, true},
		{"serviceaccount (not token) untouched", auditLine("create", "/api/v1/namespaces/ns1/serviceaccounts", "serviceaccounts", "", `{"kind":"ServiceAccount","metadata":{"name":"x"},"secrets":[{"name":"`+keepValue+`"}]}`, ""),
			nil, []string{keepValue}, true},
	}, genericShapeCases...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSanitizer(t, nil)
			rec := decodeOne(t, tc.line)
			orig := string(rec.Object)
			if err := s.Apply(rec); err != nil {
				t.Fatal(err)
			}
			out, err := record.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			if l := leaks(string(out)); len(l) > 0 {
				t.Errorf("planted values leaked: %v\n%s", l, out)
			}
			for _, k := range tc.keep {
				if !strings.Contains(string(out), k) {
					t.Errorf("output lost %q:\n%s", k, out)
				}
			}
			if got := strings.Join(rec.Flags.Redacted, ","); got != strings.Join(tc.wantKinds, ",") {
				t.Errorf("Flags.Redacted = %q, want %q", got, strings.Join(tc.wantKinds, ","))
			}
			if tc.verbatim && string(rec.Object) != orig {
				t.Errorf("unchanged record was re-encoded:\n%s\n%s", orig, rec.Object)
			}
			// The output must still be a valid record of the same identity.
			back, err := record.Unmarshal(out)
			if err != nil {
				t.Fatalf("redacted record does not unmarshal: %v", err)
			}
			if back.ID != rec.ID || back.Audit.User.Username != "alice" {
				t.Errorf("identity changed: %s %s", back.ID, back.Audit.User.Username)
			}
		})
	}
}

// Secret data must still decode as a Secret (base64 values) after redaction.
func TestRedactedSecretStillDecodes(t *testing.T) {
	s := newSanitizer(t, nil)
	rec := decodeOne(t, auditLine("create", "/api/v1/namespaces/ns1/secrets", "secrets", "", secretObj, ""))
	if err := s.Apply(rec); err != nil {
		t.Fatal(err)
	}
	var sec struct {
		Data       map[string][]byte `json:"data"`
		StringData map[string]string `json:"stringData"`
	}
	if err := json.Unmarshal(rec.Audit.RequestObject.Raw, &sec); err != nil {
		t.Fatalf("redacted Secret is not a Secret any more: %v", err)
	}
	if string(sec.Data["password"]) != Marker || sec.StringData["token"] != Marker {
		t.Errorf("got %+v", sec)
	}
}

func TestRedactionDisabled(t *testing.T) {
	s := newSanitizer(t, nil, func(c *config.CollectorConfig) { c.Redaction.Enabled = false })
	rec := decodeOne(t, auditLine("create", "/api/v1/namespaces/ns1/secrets?token="+plantURIToken, "secrets", "", secretObj, ""))
	orig := string(rec.Object)
	if err := s.Apply(rec); err != nil {
		t.Fatal(err)
	}
	if string(rec.Object) != orig || len(rec.Flags.Redacted) != 0 {
		t.Errorf("disabled redaction changed the record")
	}
}

func TestConfiguredPatternsAndParams(t *testing.T) {
	s := newSanitizer(t, nil, func(c *config.CollectorConfig) {
		c.Redaction.ConfigMapKeyPatterns = []string{`^conn(ection)?_string$`}
		c.Redaction.ExtraQueryParams = []string{"sig"}
	})
	cm := fmt.Sprintf(`{"kind":"ConfigMap","data":{"CONNECTION_STRING":%q,"password":%q}}`, plantCMPassword, keepValue)
	rec := decodeOne(t, auditLine("create", "/api/v1/namespaces/ns1/configmaps?sig="+plantURIToken, "configmaps", "", cm, ""))
	if err := s.Apply(rec); err != nil {
		t.Fatal(err)
	}
	out := string(rec.Object)
	if l := leaks(out); len(l) > 0 {
		t.Errorf("leaked %v: %s", l, out)
	}
	if !strings.Contains(out, keepValue) {
		t.Errorf("key not in the configured patterns was redacted: %s", out)
	}
}

// TestEventMessages: an Event keeps everything but credential patterns in
// its message or note; one without them is not re-encoded.
func TestEventMessages(t *testing.T) {
	tests := []struct {
		name, ev  string
		wantKinds string
		keep      []string
	}{
		{"core message with a token", `{"kind":"Event","apiVersion":"v1","metadata":{"name":"p.1","namespace":"default","uid":"e1"},"involvedObject":{"kind":"Pod","name":"p","uid":"pu"},"reason":"BackOff","message":"pull failed: token=` + plantURIToken + ` for ` + keepValue + `","count":1}`,
			KindCredentialText, []string{"token=" + Marker, keepValue, "BackOff"}},
		{"events.k8s.io note with a password", `{"kind":"Event","apiVersion":"events.k8s.io/v1","metadata":{"name":"p.1","namespace":"default","uid":"e2"},"regarding":{"kind":"Pod","name":"p","uid":"pu"},"reason":"Failed","note":"login with password: ` + plantURIPassword + `","eventTime":"2026-01-02T03:04:05.000000Z","action":"x","reportingController":"c","reportingInstance":"i","type":"Warning"}`,
			KindCredentialText, []string{"password: " + Marker}},
		{"plain message untouched", `{"kind":"Event","apiVersion":"v1","metadata":{"name":"p.1","namespace":"default","uid":"e3"},"involvedObject":{"kind":"Pod","name":"p","uid":"pu"},"reason":"BackOff","message":"Back-off restarting ` + keepValue + `","count":1}`,
			"", []string{keepValue}},
		{"audit of an Event create", auditLine("create", "/api/v1/namespaces/ns1/events", "events", "", `{"kind":"Event","apiVersion":"v1","metadata":{"name":"x"},"message":"password=`+plantURIPassword+` `+keepValue+`"}`, ""),
			KindCredentialText, []string{keepValue}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSanitizer(t, nil)
			rec := decodeOne(t, tc.ev)
			orig := string(rec.Object)
			if err := s.Apply(rec); err != nil {
				t.Fatal(err)
			}
			out, _ := record.Marshal(rec)
			if l := leaks(string(out)); len(l) > 0 {
				t.Errorf("leaked %v: %s", l, out)
			}
			for _, k := range tc.keep {
				if !strings.Contains(string(out), k) {
					t.Errorf("lost %q: %s", k, out)
				}
			}
			if got := strings.Join(rec.Flags.Redacted, ","); got != tc.wantKinds {
				t.Errorf("Flags.Redacted = %q, want %q", got, tc.wantKinds)
			}
			if tc.wantKinds == "" && string(rec.Object) != orig {
				t.Error("unchanged Event was re-encoded")
			}
		})
	}
}

func TestUnparsableSensitiveBodyIsDropped(t *testing.T) {
	s := newSanitizer(t, nil)
	rec := decodeOne(t, auditLine("create", "/api/v1/namespaces/ns1/secrets", "secrets", "", secretObj, secretObj))
	rec.Audit.RequestObject = &runtime.Unknown{Raw: []byte(`{"data":{"p":"` + plantSecretData), ContentType: runtime.ContentTypeJSON}
	if err := s.Apply(rec); err != nil {
		t.Fatal(err)
	}
	out, err := record.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if l := leaks(string(out)); len(l) > 0 || rec.Audit.RequestObject != nil {
		t.Errorf("unparsable body kept: %s", out)
	}
	if !strings.Contains(strings.Join(rec.Flags.Redacted, ","), KindBodyDropped) {
		t.Errorf("flags %v lack %s", rec.Flags.Redacted, KindBodyDropped)
	}
}

func TestRedactURI(t *testing.T) {
	s := newSanitizer(t, nil)
	tests := []struct{ in, want string }{
		{"/api/v1/pods", "/api/v1/pods"},
		{"/api/v1/pods?", "/api/v1/pods?"},
		{"/api/v1/pods?token=x", "/api/v1/pods?token=REDACTED"},
		{"/api/v1/pods?a=1&TOKEN=x&b=2", "/api/v1/pods?a=1&TOKEN=REDACTED&b=2"},
		{"/api/v1/pods?token", "/api/v1/pods?token"},
		{"/api/v1/pods?token=", "/api/v1/pods?token="},
		{"/api/v1/pods?tokens=x&mytoken=y", "/api/v1/pods?tokens=x&mytoken=y"},
		{"/x?password=a&password=b", "/x?password=REDACTED&password=REDACTED"},
		{"/x?a=b=c&secret=d=e", "/x?a=b=c&secret=REDACTED"},
		{"/x?pass%77ord=a", "/x?pass%77ord=REDACTED"},
		{"/x?%zz=a", "/x?%zz=a"},
	}
	for _, tc := range tests {
		got, _ := s.redactURI(tc.in)
		if got != tc.want {
			t.Errorf("redactURI(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestResourceFromURI(t *testing.T) {
	tests := []struct{ in, res, sub string }{
		{"/api/v1/namespaces/ns/secrets/x", "secrets", ""},
		{"/api/v1/namespaces/ns/secrets", "secrets", ""},
		{"/api/v1/secrets?watch=1", "secrets", ""},
		{"/api/v1/namespaces/ns", "namespaces", ""},
		{"/api/v1/namespaces/ns/serviceaccounts/sa/token", "serviceaccounts", "token"},
		{"/apis/authentication.k8s.io/v1/tokenreviews", "tokenreviews", ""},
		{"/healthz", "", ""},
		{"", "", ""},
	}
	for _, tc := range tests {
		r, s := resourceFromURI(tc.in)
		if r != tc.res || s != tc.sub {
			t.Errorf("resourceFromURI(%q) = %q,%q want %q,%q", tc.in, r, s, tc.res, tc.sub)
		}
	}
}

func TestRedactionMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := newSanitizer(t, reg)
	for _, line := range []string{
		auditLine("create", "/api/v1/namespaces/ns1/secrets", "secrets", "", secretObj, ""),
		auditLine("create", "/api/v1/namespaces/ns1/secrets?token=x", "secrets", "", secretObj, ""),
		auditLine("create", "/apis/authentication.k8s.io/v1/tokenreviews", "tokenreviews", "", tokenReviewReq, ""),
	} {
		if err := s.Apply(decodeOne(t, line)); err != nil {
			t.Fatal(err)
		}
	}
	for kind, want := range map[string]float64{KindSecretData: 2, KindSecretLastApplied: 2, KindURIQuery: 1, KindTokenReview: 1, KindConfigMapCredential: 0} {
		if got := testutil.ToFloat64(s.redacted.WithLabelValues(kind)); got != want {
			t.Errorf("redacted{kind=%s} = %v, want %v", kind, got, want)
		}
	}
}

func TestSizePolicy(t *testing.T) {
	big := `{"kind":"ConfigMap","metadata":{"name":"big"},"data":{"blob":"` + strings.Repeat("x", 20000) + `"}}`
	tests := []struct {
		name          string
		line          string
		max           int
		wantTruncated bool
		wantOversize  float64
	}{
		{"small record untouched", auditLine("create", "/api/v1/namespaces/ns1/configmaps", "configmaps", "", `{"kind":"ConfigMap","data":{"a":"b"}}`, ""), 10000, false, 0},
		{"big bodies dropped", auditLine("create", "/api/v1/namespaces/ns1/configmaps", "configmaps", "", big, big), 10000, true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSanitizer(t, nil, func(c *config.CollectorConfig) { c.Size.MaxRecordBytes = tc.max })
			rec := decodeOne(t, tc.line)
			if err := s.Apply(rec); err != nil {
				t.Fatal(err)
			}
			out, err := record.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			if rec.Flags.Truncated != tc.wantTruncated {
				t.Errorf("Truncated = %v", rec.Flags.Truncated)
			}
			if tc.wantTruncated {
				if len(out) > tc.max {
					t.Errorf("truncated record is %d bytes > %d", len(out), tc.max)
				}
				if rec.Audit.RequestObject != nil || rec.Audit.ResponseObject != nil {
					t.Error("bodies kept")
				}
				back, err := record.Unmarshal(out)
				if err != nil || back.Audit.Verb != "create" || back.Audit.User.Username != "alice" || back.Audit.ObjectRef.Resource != "configmaps" || !back.Flags.Truncated {
					t.Errorf("metadata lost: %v %s", err, out)
				}
				if got := testutil.ToFloat64(s.truncated); got != 1 {
					t.Errorf("truncated counter %v", got)
				}
			}
			if got := testutil.ToFloat64(s.oversize); got != tc.wantOversize {
				t.Errorf("oversize counter %v, want %v", got, tc.wantOversize)
			}
		})
	}
}

// The size estimate must never be below the real encoded size, or the policy
// would let through records the publisher cannot send.
func TestEstimateIsAnUpperBound(t *testing.T) {
	s := newSanitizer(t, nil)
	lines := []string{
		auditLine("create", "/api/v1/namespaces/ns1/secrets", "secrets", "", secretObj, secretObj),
		auditLine("get", "/api/v1/pods?a=<b>&c=d", "pods", "", `{"x":"<<<>>>&&&"}`, ""),
		`{"auditID":"x","stage":"ResponseComplete","user":{"username":"u"}}`,
	}
	for _, l := range lines {
		rec := decodeOne(t, l)
		if err := s.Apply(rec); err != nil {
			t.Fatal(err)
		}
		rec.ObservedTime = time.Date(2026, 1, 1, 0, 0, 0, 123456789, time.FixedZone("x", 3600))
		out, _ := record.Marshal(rec)
		s.maxRecord = 1 // force the escape counting branch
		if est := s.estimate(rec); est < len(out) {
			t.Errorf("estimate %d < encoded %d", est, len(out))
		}
		s.maxRecord = 1 << 20
	}
}

func TestNewRejectsBadPattern(t *testing.T) {
	c := config.Default().Collector
	c.Redaction.ConfigMapKeyPatterns = []string{"("}
	if _, err := New(c.Redaction, c.Size, 0, nil, nil); err == nil || !strings.Contains(err.Error(), "configmap_key_patterns[0]") {
		t.Errorf("err = %v", err)
	}
}
