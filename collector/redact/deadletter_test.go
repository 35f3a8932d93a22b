package redact

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/kubesift/kubesift/internal/config"
)

func TestScrubDeadLetter(t *testing.T) {
	secretEvent := auditLine("create", "/api/v1/namespaces/ns1/secrets?token="+plantURIToken, "secrets", "", secretObj, secretObj)
	// The same event with a field of the wrong type: valid JSON, rejected by the decoder.
	badField := strings.Replace(secretEvent, `"username":"alice"`, `"username":5`, 1)
	noRef := strings.Replace(badField, `"objectRef"`, `"objectRefX"`, 1)
	noRef = strings.Replace(noRef, `/api/v1/namespaces/ns1/secrets`, `/weird`, 1)
	aks, _ := json.Marshal(map[string]any{"category": "kube-audit", "properties": map[string]any{"log": badField}})
	tests := []struct {
		name string
		in   string
		keep []string
	}{
		{"wrong field type, secret bodies", badField, []string{`"username":5`, `"verb":"create"`, `"password"`}},
		{"no objectRef and unknown URI: bodies removed", noRef, []string{`"verb":"create"`}},
		{"truncated line", secretEvent[:len(secretEvent)/2], []string{`"auditID":"id-secrets-create"`}},
		{"truncated line in kube-apiserver's key order", `{"kind":"Event","auditID":"a1","requestURI":"/api/v1/namespaces/ns1/secrets?token=` + plantURIToken + `\u0026limit=1","requestObject":{"data":{"p":"` + b64(plantSecretData), []string{`"auditID":"a1"`, "token=" + Marker + `\u0026limit=1`}},
		{"truncated AKS wrapper", string(aks[:len(aks)-40]), []string{"kube-audit"}},
		{"AKS wrapper with the event as a string", string(aks), []string{"kube-audit", `\"username\":5`}},
		{"bare Secret", secretObj, []string{`"name":"db"`}},
		{"bare ConfigMapList", cmList, []string{keepValue}},
		{"TokenReview", tokenReviewResp, []string{`"authenticated":true`}},
		{"GKE entry", `{"protoPayload":{"methodName":"io.k8s.core.v1.secrets.create","request":{"data":{"p":"` + b64(plantSecretData) + `"}},"response":{"x":1}},"insertId":"g1"}`, []string{"g1", "methodName"}},
		{"garbage", "not json at all token=" + plantURIToken, []string{"not json at all"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSanitizer(t, nil)
			out := string(s.ScrubDeadLetter([]byte(tc.in)))
			if l := leaks(out); len(l) > 0 {
				t.Errorf("leaked %v:\n%s", l, out)
			}
			for _, k := range tc.keep {
				if !strings.Contains(out, k) {
					t.Errorf("lost %q:\n%s", k, out)
				}
			}
		})
	}
}

func TestScrubDeadLetterLimits(t *testing.T) {
	s := newSanitizer(t, nil, func(c *config.CollectorConfig) { c.DeadLetterMaxBytes = 100 })
	in := []byte(strings.Repeat("x", 1000))
	out := s.ScrubDeadLetter(in)
	if len(out) != 100 {
		t.Errorf("len %d", len(out))
	}
	out[0] = 'y'
	if in[0] != 'x' {
		t.Error("result aliases the input")
	}
	off := newSanitizer(t, nil, func(c *config.CollectorConfig) { c.Redaction.Enabled = false })
	if got := string(off.ScrubDeadLetter([]byte(secretObj))); got != secretObj {
		t.Errorf("redaction off changed the dead letter")
	}
}
