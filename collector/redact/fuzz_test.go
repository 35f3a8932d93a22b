package redact

import (
	"encoding/json"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubesift/kubesift/record"
)

// FuzzRedactBody puts arbitrary JSON into the bodies of an audit event of
// every sensitive resource. Apply must not fail or panic, the record must
// still marshal, and every value under a Secret's data/stringData must be
// the marker afterwards.
func FuzzRedactBody(f *testing.F) {
	for _, s := range []string{secretObj, secretList, secretTable, secretJSONPatch, secretMergePatch, cmObj, cmList, cmJSONPatch,
		tokenRequestResp, tokenReviewReq, podObj, `[]`, `[{"op":"add","path":"","value":{"data":{"a":"b"}}}]`, `{"data":"x"}`,
		`{"a":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"data\":{\"password\":\"x\"}}"}}}`, `"str"`, `null`, `1e999`} {
		f.Add(s, uint8(0))
	}
	resources := []struct{ res, sub string }{{"secrets", ""}, {"configmaps", ""}, {"serviceaccounts", "token"}, {"tokenreviews", ""}, {"pods", ""}}
	s := newSanitizer(f, nil)
	f.Fuzz(func(t *testing.T, body string, which uint8) {
		if !json.Valid([]byte(body)) {
			return // the decoder never hands over invalid JSON as a body
		}
		r := resources[int(which)%len(resources)]
		rec := decodeOne(t, auditLine("create", "/api/v1/namespaces/ns1/"+r.res, r.res, r.sub, "", ""))
		rec.Audit.RequestObject = &runtime.Unknown{Raw: []byte(body), ContentType: runtime.ContentTypeJSON}
		rec.Audit.ResponseObject = &runtime.Unknown{Raw: []byte(body), ContentType: runtime.ContentTypeJSON}
		if err := rec.SyncObject(); err != nil {
			return
		}
		if err := s.Apply(rec); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if _, err := record.Marshal(rec); err != nil {
			t.Fatalf("Marshal after Apply: %v", err)
		}
		if r.res != "secrets" || rec.Audit.RequestObject == nil {
			return
		}
		v, err := parseJSON(rec.Audit.RequestObject.Raw)
		if err != nil {
			t.Fatalf("redacted body is not JSON: %v", err)
		}
		checkSecretData(t, v, 0)
	})
}

// checkSecretData fails if any value of a data/stringData map (outside JSON
// patch values, which are checked by path) is not a marker.
func checkSecretData(t *testing.T, v any, depth int) {
	if depth > maxDepth-2 {
		return
	}
	switch x := v.(type) {
	case []any:
		if isJSONPatch(x) {
			return
		}
		for _, e := range x {
			checkSecretData(t, e, depth+1)
		}
	case map[string]any:
		for k, val := range x {
			if m, ok := val.(map[string]any); ok && (k == "data" || k == "stringData") {
				for dk, dv := range m {
					if dv != Marker && dv != MarkerBase64 {
						t.Fatalf("%s.%s = %v survived redaction", k, dk, dv)
					}
				}
				continue
			}
			checkSecretData(t, val, depth+1)
		}
	}
}

// FuzzScrubDeadLetter feeds arbitrary bytes to the dead-letter scrubber: no
// panic, never longer than the limit.
func FuzzScrubDeadLetter(f *testing.F) {
	for _, s := range []string{secretObj, auditLine("create", "/api/v1/namespaces/ns1/secrets?token=x", "secrets", "", secretObj, ""),
		`{"properties":{"log":"{\"requestObject\":{}}"}}`, `{"protoPayload":{"request":{}}}`, "garbage ?token=x&a", `[{"kind":"SecretList","items":[{}]}]`} {
		f.Add([]byte(s))
	}
	s := newSanitizer(f, nil)
	f.Fuzz(func(t *testing.T, data []byte) {
		out := s.ScrubDeadLetter(data)
		if len(out) > s.deadMax {
			t.Fatalf("%d bytes > limit %d", len(out), s.deadMax)
		}
	})
}

// FuzzMaskText feeds arbitrary text to the credentials-file detector: no
// panic, masking twice changes nothing more, and a password= line appended
// to the text loses its value whatever came before it.
func FuzzMaskText(f *testing.F) {
	for _, s := range []string{credsINI, credsDotEnv, credsYAML, credsPEM, "Authorization: Bearer abcdefgh", "x://u:p@h/?sig=1&a=2",
		`{\"password\":\"x\"}`, "-----BEGIN PRIVATE KEY-----", "AKIA", "eyJ", ""} {
		f.Add(s)
	}
	s := newSanitizer(f, nil)
	f.Fuzz(func(t *testing.T, text string) {
		once, _ := s.maskText(text)
		if twice, _ := s.maskText(once); twice != once {
			t.Fatalf("not idempotent:\n%q\n%q", once, twice)
		}
		const v = "fuzzplantedvalue42"
		out, _ := s.maskText(text + "\npassword=" + v + "\n")
		if strings.Contains(out, v) {
			t.Fatalf("planted value survived: %q", out)
		}
	})
}
