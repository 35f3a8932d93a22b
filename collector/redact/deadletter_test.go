package redact

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
)

func TestScrubDeadLetter(t *testing.T) {
	secretEvent := auditLine("create", "/api/v1/namespaces/ns1/secrets?token="+plantURIToken, "secrets", "", secretObj, secretObj)
	// The same event with a field of the wrong type: valid JSON, rejected by the decoder.
	badField := strings.Replace(secretEvent, `"username":"alice"`, `"username":5`, 1)
	noRef := strings.Replace(badField, `"objectRef"`, `"objectRefX"`, 1)
	noRef = strings.Replace(noRef, `/api/v1/namespaces/ns1/secrets`, `/weird`, 1)
	aks, _ := json.Marshal(map[string]any{"category": "kube-audit", "properties": map[string]any{"log": badField}})
	// Dead letters of kinds without secret data, core Events, unknown kinds
	// and credentials in unparsable text.
	podEvent := auditLine("create", "/api/v1/namespaces/ns1/pods", "pods", "", podWithCreds, podWithCreds)
	podBadField := strings.Replace(podEvent, `"username":"alice"`, `"username":5`, 1)
	coreEvent := `{"kind":"Event","apiVersion":"v1","metadata":{"name":"p.1","namespace":"ns1"},"involvedObject":{"kind":"Pod","name":"p"},"reason":"Failed","message":"login failed with password=` + plantEnvPassword + ` for ` + keepValue + `","count":"x"}`
	unknownKind := `{"kind":"Widget","apiVersion":"example.com/v1","metadata":{"name":"w","annotations":{"example.com/db-password":"` + plantEnvPassword + `","authorization.k8s.io/decision":"` + keepValue + `"}},"spec":{"adminPassword":"` + plantDotEnv + `","config":` + quoteJSON(credsINI) + `,"args":["--token=` + plantYAMLToken + `","--v=2"],"template":{"spec":` + podSpecWithCreds + `}}}`
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
		{"pod event with a bad field", podBadField, []string{`"username":5`, `"DB_PASSWORD"`, keepValue}},
		{"pod list item", podList, []string{`"DB_PASSWORD"`, keepValue}},
		{"core Event message", coreEvent, []string{"password=" + Marker, keepValue, `"reason":"Failed"`}},
		{"unknown kind", unknownKind, []string{`"adminPassword":"` + Marker, "region = eu-west-1", "--v=2", `"authorization.k8s.io/decision":"` + keepValue}},
		{"password= in unparsable JSON", `{"kind":"Widget","spec":{"x":"password=` + plantDotEnv + `","y":"` + plantAWSKeyID, []string{"unparsable input", "sha256", `"kind":"Widget"`}},
		{"credentials file in a truncated line", credsINI[:len(credsINI)-3], []string{"[default]", "region"}},
		{"JWT straddling the head limit", strings.Repeat("x", unparsableHead-10) + " eyJhbGciOiJIUzI1NiJ9." + plantJWTPayload + ".c2ln", []string{"sha256"}},
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

// TestUnparsableDeadLetterSummary: an unparsable dead letter is kept as its
// length, hash and a bounded head.
func TestUnparsableDeadLetterSummary(t *testing.T) {
	s := newSanitizer(t, nil)
	in := []byte("garbage " + strings.Repeat("y", 5000))
	out := string(s.ScrubDeadLetter(in))
	sum := sha256.Sum256(in)
	for _, want := range []string{"5008 bytes", hex.EncodeToString(sum[:]), "garbage yyy", cutNotice} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q: %s", want, out)
		}
	}
	if len(out) > unparsableHead+300 {
		t.Errorf("summary is %d bytes", len(out))
	}
}

// TestDeadLetterMasksError: the Error text can quote the input.
func TestDeadLetterMasksError(t *testing.T) {
	for _, san := range []*Sanitizer{newSanitizer(t, nil), nil} {
		dl := san.DeadLetter(collector.DeadLetter{
			Data:  []byte(`{"kind":"Pod","spec":` + podSpecWithCreds + `}`),
			Error: `line 3: bad value "token=` + plantYAMLToken + `" in field spec.x`, Reason: "field", Source: "test",
		})
		if l := leaks(dl.Error + string(dl.Data)); len(l) > 0 {
			t.Errorf("sanitizer %v: leaked %v: %s / %s", san != nil, l, dl.Error, dl.Data)
		}
		if !strings.Contains(dl.Error, "in field spec.x") || dl.Reason != "field" || dl.Source != "test" {
			t.Errorf("dead letter lost its description: %+v", dl)
		}
	}
}

// TestSourcesScrubDeadLetters guards the choke point: every dead letter a
// source builds (a collector.DeadLetter composite literal outside the
// publisher, which only re-wraps records and dead letters already redacted)
// is the direct argument of a DeadLetter call of a Sanitizer.
func TestSourcesScrubDeadLetters(t *testing.T) {
	root := filepath.Join(testenv.Root())
	var files []string
	for _, dir := range []string{"collector", "cmd"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && (d.Name() == "publish" || d.Name() == "redact") {
				return filepath.SkipDir
			}
			if !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	fset := token.NewFileSet()
	found := 0
	for _, p := range files {
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		wrapped := map[ast.Expr]bool{}
		ast.Inspect(f, func(n ast.Node) bool {
			if call, ok := n.(*ast.CallExpr); ok {
				if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "DeadLetter" && len(call.Args) == 1 {
					wrapped[call.Args[0]] = true
				}
			}
			lit, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			if sel, ok := lit.Type.(*ast.SelectorExpr); ok && sel.Sel.Name == "DeadLetter" && len(lit.Elts) > 0 {
				found++
				if !wrapped[lit] {
					t.Errorf("%s: a dead letter built without Sanitizer.DeadLetter", fset.Position(lit.Pos()))
				}
			}
			return true
		})
	}
	if found < 4 {
		t.Errorf("found only %d dead-letter constructions; the walk misses the sources", found)
	}
}
