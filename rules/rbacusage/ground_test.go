package rbacusage

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/kubesift/kubesift/internal/testenv"
)

// TestParseReasonsOfTheGroundAuditLog: every authorization reason the
// ground's kube-apiserver wrote in the last 64 MiB of its audit log parses:
// RBAC's into a grant that prints back to the same text, every other one
// (Node, system:masters' empty reason) as ErrNotRBAC. It reads the file
// only, so other tests' traffic is its corpus.
func TestParseReasonsOfTheGroundAuditLog(t *testing.T) {
	path := testenv.KubeAPIServer(t).AuditLog
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const tail = 64 << 20
	if st, err := f.Stat(); err == nil && st.Size() > tail {
		if _, err := f.Seek(st.Size()-tail, io.SeekStart); err != nil {
			t.Fatal(err)
		}
	}
	data, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	const key = `"authorization.k8s.io/reason":`
	seen := map[string]bool{}
	rbac, other := 0, 0
	for rest := data; ; {
		i := bytes.Index(rest, []byte(key))
		if i < 0 {
			break
		}
		rest = rest[i+len(key):]
		var reason string
		dec := json.NewDecoder(bytes.NewReader(rest))
		if err := dec.Decode(&reason); err != nil || seen[reason] {
			continue // cut at the start of the tail, or seen
		}
		seen[reason] = true
		g, err := ParseReason(reason, "")
		switch {
		case errors.Is(err, ErrNotRBAC):
			other++
		case err != nil:
			t.Errorf("%q: %v", reason, err)
		default:
			rbac++
			if format(g) != strings.TrimSpace(reason) {
				t.Errorf("%q parsed to %+v, which prints as %q", reason, g, format(g))
			}
		}
	}
	t.Logf("%d distinct RBAC reasons parsed, %d of other authorizers, in the last %d MiB of %s", rbac, other, len(data)>>20, path)
	if rbac == 0 {
		t.Error("no RBAC reason in the audit log's tail: nothing was checked")
	}
}
