package reporttest

import (
	"os"
	"path/filepath"
	"testing"
)

// TestOpenSeesErrors: what Open reports is what the browser saw — a
// console error, an exception and a refused load are all in Errors, and
// the charts and elements are counted.
func TestOpenSeesErrors(t *testing.T) {
	Chromium(t)
	page := `<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="img-src 'none'"></head><body>
<svg data-chart="c"><rect class="bar"/><rect class="bar"/></svg><p data-chart-empty="d"></p>
<img src="missing.png"><script>console.error("boom"); undefinedFunction();</script></body></html>`
	path := filepath.Join(t.TempDir(), "page.html")
	if err := os.WriteFile(path, []byte(page), 0o600); err != nil {
		t.Fatal(err)
	}
	p := Open(t, path)
	if len(p.Errors) < 3 {
		t.Errorf("errors %q, want the console error, the exception and the refused image", p.Errors)
	}
	if p.Charts["c"] != 2 || len(p.Empty) != 1 || p.Elements["img"] != 1 || p.Elements["script"] != 1 {
		t.Errorf("charts %v, empty %v, elements %v", p.Charts, p.Empty, p.Elements)
	}
	if p.LoadMillis <= 0 {
		t.Errorf("load time %v", p.LoadMillis)
	}
	if st, err := os.Stat(p.Screenshot); err != nil || st.Size() == 0 {
		t.Errorf("screenshot: %v", err)
	}
}
