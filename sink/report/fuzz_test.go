package report

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/kubesift/kubesift/internal/config"
)

// FuzzDir: whatever a folder's files hold, Dir returns a Summary (bad
// lines skipped and counted, never an error or a panic), and the page of
// that Summary renders.
func FuzzDir(f *testing.F) {
	f.Add([]byte(`{"@timestamp":"2026-12-01T20:00:00Z","event":{"id":"a","severity":5},"rule":{"id":"r"},"user":{"name":"u"}}`), []byte(`{"event":{"id":"f"},"kubesift":{"finding":{"state":"open","check_id":"c","severity":"high"}}}`))
	f.Add([]byte("not json\n\x00\xff\n{}\n"), []byte(`{"kubesift":{"posture_score":{"scope":"cluster","percent":"x"}}}`))
	f.Add([]byte(`{"@timestamp":"0001-01-01T00:00:00Z","event":{"severity":-3}}`+"\n"+`{"@timestamp":"9999-12-31T23:59:59Z","event":{"severity":99}}`), []byte(`[1,2]`))
	f.Add([]byte(`{"threat":{"tactic":{"name":["a","a","b","c","d","e","f","g","h","i"]}},"rule":{"id":"r"}}`), []byte("\n\n"))
	f.Fuzz(func(t *testing.T, alerts, findings []byte) {
		dir := t.TempDir()
		idx := IndicesFrom(config.Default().Sink.Elasticsearch)
		for name, data := range map[string][]byte{idx.Alerts: alerts, idx.Findings: findings, idx.Events: alerts, idx.Scores: findings} {
			if err := os.WriteFile(filepath.Join(dir, name+".ndjson"), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		d, err := NewDir(dir, idx, nil)
		if err != nil {
			t.Fatal(err)
		}
		s, err := d.Summary(t.Context(), Window{})
		if err != nil {
			t.Fatalf("Summary: %v", err)
		}
		if len(s.Timeline.Counts) > 20_000 {
			t.Fatalf("%d timeline buckets", len(s.Timeline.Counts))
		}
		if err := Render(&bytes.Buffer{}, s, Options{}); err != nil {
			t.Fatalf("Render: %v", err)
		}
	})
}
