package ndjson

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	jsoniter "github.com/json-iterator/go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/sink"
)

// vdoc is a versioned document the way sink/ecs builds a finding's state
// document: its version in kubesift.finding.version.
func vdoc(id string, v int64) sink.Doc {
	return sink.Doc{Index: "kubesift-findings", ID: id, Version: v, Body: vline(id, v)}
}

func vline(id string, v int64) []byte {
	return []byte(`{"event":{"id":"` + id + `"},"kubesift":{"finding":{"version":` + strconv.FormatInt(v, 10) + `}}}`)
}

// TestVersionedDocuments: documents with a Version follow external
// versioning — a higher version is appended and becomes the ID's last line,
// an equal or lower one is a Duplicate counted as a version conflict — also
// against versions read back from an existing file.
func TestVersionedDocuments(t *testing.T) {
	tests := []struct {
		name      string
		existing  []string // lines already in kubesift-findings.ndjson
		docs      []sink.Doc
		want      []sink.Status // per document, in order
		last      map[string]int64
		lines     int
		conflicts float64
		dups      float64
		files     int // Docs of the file in Files
	}{
		{name: "a higher version replaces", docs: []sink.Doc{vdoc("a", 2), vdoc("a", 4)},
			want: []sink.Status{sink.Indexed, sink.Indexed}, last: map[string]int64{"a": 4}, lines: 2, files: 1},
		{name: "an equal version is a conflict", docs: []sink.Doc{vdoc("a", 2), vdoc("a", 2)},
			want: []sink.Status{sink.Indexed, sink.Duplicate}, last: map[string]int64{"a": 2}, lines: 1, conflicts: 1, files: 1},
		{name: "a lower version is a conflict", docs: []sink.Doc{vdoc("a", 4), vdoc("a", 3), vdoc("a", 5)},
			want: []sink.Status{sink.Indexed, sink.Duplicate, sink.Indexed}, last: map[string]int64{"a": 5}, lines: 2, conflicts: 1, files: 1},
		{name: "versions are per ID", docs: []sink.Doc{vdoc("a", 4), vdoc("b", 2)},
			want: []sink.Status{sink.Indexed, sink.Indexed}, last: map[string]int64{"a": 4, "b": 2}, lines: 2, files: 2},
		{name: "the highest version in the existing file counts", existing: []string{string(vline("a", 3)), string(vline("a", 5))},
			docs: []sink.Doc{vdoc("a", 5), vdoc("a", 4), vdoc("a", 6)},
			want: []sink.Status{sink.Duplicate, sink.Duplicate, sink.Indexed}, last: map[string]int64{"a": 6}, lines: 3, conflicts: 2, files: 1},
		{name: "a document stored without a version is replaced", existing: []string{`{"event":{"id":"a"}}`},
			docs: []sink.Doc{vdoc("a", 1)}, want: []sink.Status{sink.Indexed}, last: map[string]int64{"a": 1}, lines: 2, files: 1},
		{name: "unversioned documents keep create semantics", docs: []sink.Doc{doc("kubesift-findings", "u"), doc("kubesift-findings", "u"), vdoc("a", 1)},
			want: []sink.Status{sink.Indexed, sink.Duplicate, sink.Indexed}, last: map[string]int64{"a": 1}, lines: 2, dups: 1, files: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "kubesift-findings.ndjson")
			if tc.existing != nil {
				if err := os.WriteFile(path, []byte(joinLines(tc.existing)), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			reg := prometheus.NewRegistry()
			w, err := New(Options{Dir: dir, FlushInterval: 10 * time.Millisecond, Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			r := newResults()
			for i, d := range tc.docs {
				if err := w.Add(context.Background(), d, r.done(strconv.Itoa(i))); err != nil {
					t.Fatal(err)
				}
			}
			r.wait(t)
			files := w.Files()
			if err := w.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			var got []sink.Status
			for i := range tc.docs {
				got = append(got, r.got[strconv.Itoa(i)][0].Status)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("statuses %v, want %v", got, tc.want)
			}
			lines := readLines(t, path)
			if len(lines) != tc.lines {
				t.Errorf("%d lines, want %d:\n%s", len(lines), tc.lines, joinLines(lines))
			}
			// What a reader following the package doc sees: the last line
			// of each ID.
			last := map[string]int64{}
			for _, l := range lines {
				if v := versionOf(l); v > 0 {
					last[idOf(l)] = v
				}
			}
			for id, v := range tc.last {
				if last[id] != v {
					t.Errorf("%s: last line has version %d, want %d", id, last[id], v)
				}
			}
			if n := testenv.Metric(t, reg, "kubesift_sink_ndjson_docs_version_conflict_total"); n != tc.conflicts {
				t.Errorf("version conflicts counted %v, want %v", n, tc.conflicts)
			}
			if n := testenv.Metric(t, reg, "kubesift_sink_ndjson_docs_duplicate_total"); n != tc.dups {
				t.Errorf("duplicates counted %v, want %v", n, tc.dups)
			}
			if len(files) != 1 || files[0].Docs != tc.files {
				t.Errorf("Files %+v, want one file of %d documents", files, tc.files)
			}
		})
	}
}

func joinLines(ls []string) string {
	var b []byte
	for _, l := range ls {
		b = append(append(b, l...), '\n')
	}
	return string(b)
}

func idOf(line string) string { return jsoniter.Get([]byte(line), "event", "id").ToString() }

func versionOf(line string) int64 { return jsoniter.Get([]byte(line), versionField...).ToInt64() }

// BenchmarkVersionSet prints the heap a versioned ID costs beyond the
// deduplication set (its entry in versions), with the deduplication set's
// own cost per ID as the baseline in the same run (finding ids as the
// posture engine makes them: cluster/check/object-uid).
//
//	go test -run '^$' -bench VersionSet -benchtime 1x ./sink/ndjson/
func BenchmarkVersionSet(b *testing.B) {
	const n = 200_000
	id := func(i int) string {
		return fmt.Sprintf("prod/posture-host-pid/6f1c0e2a-%04x-4000-8000-%012x", i>>16&0xffff, i)
	}
	heap := func(fill func()) float64 { return heapPer(n, fill) }
	for range b.N {
		var seen map[docKey]struct{}
		seenBytes := heap(func() {
			seen = make(map[docKey]struct{})
			for i := range n {
				seen[keyOf("kubesift-findings", id(i))] = struct{}{}
			}
		})
		var versions map[docKey]int64
		versionBytes := heap(func() {
			versions = make(map[docKey]int64)
			for i := range n {
				versions[keyOf("kubesift-findings", id(i))] = int64(i)
			}
		})
		runtime.KeepAlive(seen)
		runtime.KeepAlive(versions)
		b.ReportMetric(versionBytes, "B/versioned_id")
		b.ReportMetric(seenBytes, "baseline_dedup_B/id")
	}
}
