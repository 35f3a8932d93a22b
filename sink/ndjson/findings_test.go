package ndjson

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/rules/posture"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/ecs"
)

// transition is one finding transition of cluster "prod" on object uid at
// resourceVersion rv.
func transition(uid string, st posture.State, rv int) ecs.Finding {
	return ecs.Finding{Decision: posture.Decision{ID: "prod/k8s-privileged/" + uid, Cluster: "prod", State: st,
		CheckID: "k8s-privileged", Title: "Privileged container", CIS: []string{"5.2.2"}, Severity: rules.SeverityHigh,
		Object:          posture.ObjectRef{Kind: "Pod", Namespace: "shop", Name: "pod-" + uid, UID: uid},
		ResourceVersion: strconv.Itoa(rv)}}
}

// findingsStore opens a Writer and its FindingsWriter on dir.
func findingsStore(t *testing.T, dir string) (*Writer, *FindingsWriter, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	w, err := New(Options{Dir: dir, FlushInterval: 10 * time.Millisecond, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	fw, err := NewFindingsWriter(w, config.Default().Sink.Elasticsearch)
	if err != nil {
		t.Fatal(err)
	}
	return w, fw, reg
}

// writeFindings writes fs one Write each, in order, and returns the done
// status of each once all are done.
func writeFindings(t *testing.T, fw *FindingsWriter, fs ...ecs.Finding) []sink.Status {
	t.Helper()
	var mu sync.Mutex
	got := make([]sink.Status, len(fs))
	n := 0
	for i := range fs {
		err := fw.Write(context.Background(), fs[i:i+1], func(_ *ecs.Finding, r sink.Result) {
			mu.Lock()
			defer mu.Unlock()
			got[i] = r.Status
			n++
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, fmt.Sprintf("%d findings done", len(fs)), time.Minute, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return n == len(fs)
	})
	return got
}

// TestFindingsWriterVersions: the state file keeps, per finding, the
// newest state written — a late or replayed transition is refused as
// Elasticsearch's external versioning refuses it — and States reads back
// that state, across a reopen of the store.
func TestFindingsWriterVersions(t *testing.T) {
	tests := []struct {
		name      string
		before    []ecs.Finding // written, then the store is closed and reopened
		after     []ecs.Finding
		want      []sink.Status // of after (of before when after is empty)
		states    map[string]posture.State
		conflicts float64 // after the reopen
	}{
		{name: "open then resolve", after: []ecs.Finding{transition("a", posture.StateOpen, 5), transition("a", posture.StateResolved, 9)},
			want: []sink.Status{sink.Indexed, sink.Indexed}, states: map[string]posture.State{"a": posture.StateResolved}},
		// The late transition's own document is new (it did happen), so
		// the finding is Indexed; its state is what is refused.
		{name: "a late open does not regress the state", after: []ecs.Finding{transition("a", posture.StateResolved, 9), transition("a", posture.StateOpen, 5)},
			want: []sink.Status{sink.Indexed, sink.Indexed}, states: map[string]posture.State{"a": posture.StateResolved}, conflicts: 1},
		{name: "a resolve on delete wins over the open of the same revision",
			after: []ecs.Finding{transition("a", posture.StateOpen, 5), transition("a", posture.StateResolved, 5)},
			want:  []sink.Status{sink.Indexed, sink.Indexed}, states: map[string]posture.State{"a": posture.StateResolved}},
		{name: "a replay after a reopen is a duplicate", before: []ecs.Finding{transition("a", posture.StateOpen, 5), transition("b", posture.StateOpen, 6)},
			after: []ecs.Finding{transition("a", posture.StateOpen, 5), transition("b", posture.StateResolved, 8)},
			want:  []sink.Status{sink.Duplicate, sink.Indexed}, states: map[string]posture.State{"a": posture.StateOpen, "b": posture.StateResolved}, conflicts: 1},
		{name: "an older state after a reopen does not regress the state", before: []ecs.Finding{transition("a", posture.StateReopened, 20)},
			after: []ecs.Finding{transition("a", posture.StateResolved, 11)},
			want:  []sink.Status{sink.Indexed}, states: map[string]posture.State{"a": posture.StateReopened}, conflicts: 1},
		{name: "an invalid finding is rejected, the rest written", after: []ecs.Finding{transition("a", posture.StateOpen, 0), transition("b", posture.StateOpen, 3)},
			want: []sink.Status{sink.Rejected, sink.Indexed}, states: map[string]posture.State{"b": posture.StateOpen}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if len(tc.before) > 0 {
				w, fw, _ := findingsStore(t, dir)
				writeFindings(t, fw, tc.before...)
				if err := w.Close(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			w, fw, reg := findingsStore(t, dir)
			defer w.Close(context.Background())
			if got := writeFindings(t, fw, tc.after...); !slices.Equal(got, tc.want) {
				t.Fatalf("statuses %v, want %v", got, tc.want)
			}
			states, skipped, err := fw.States(context.Background(), "prod")
			if err != nil || skipped != 0 {
				t.Fatalf("States: skipped %d, err %v", skipped, err)
			}
			got := map[string]posture.State{}
			for _, d := range states {
				got[d.Object.UID] = d.State
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.states) {
				t.Errorf("states %v, want %v", got, tc.states)
			}
			if n := testenv.Metric(t, reg, "kubesift_sink_ndjson_docs_version_conflict_total"); n != tc.conflicts {
				t.Errorf("version conflicts %v, want %v", n, tc.conflicts)
			}
			if other, _, _ := fw.States(context.Background(), "staging"); len(other) != 0 {
				t.Errorf("another cluster's states: %+v", other)
			}
		})
	}
}

// TestFindingsWriterDoneOrder: each finding is done once, after both its
// documents are in their files, in the order written; the transitions file
// holds one line per transition in that order.
func TestFindingsWriterDoneOrder(t *testing.T) {
	dir := t.TempDir()
	w, fw, _ := findingsStore(t, dir)
	var fs []ecs.Finding
	for i := range 50 {
		fs = append(fs, transition(strconv.Itoa(i%7), []posture.State{posture.StateOpen, posture.StateResolved}[i/7%2], 10+i))
	}
	var mu sync.Mutex
	var order []string
	err := fw.Write(context.Background(), fs, func(f *ecs.Finding, r sink.Result) {
		if r.Status != sink.Indexed {
			t.Errorf("%s: %+v", f.ID, r)
		}
		// done means written: both lines are in the files now.
		if !fileHas(t, filepath.Join(dir, config.DefaultFindingTransitionsStream+".ndjson"), ecs.TransitionID(&f.Decision)) {
			t.Errorf("%s done before its transition line was written", f.ID)
		}
		mu.Lock()
		order = append(order, ecs.TransitionID(&f.Decision))
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	var want, lines []string
	for i := range fs {
		want = append(want, ecs.TransitionID(&fs[i].Decision))
	}
	for _, l := range readLines(t, filepath.Join(dir, config.DefaultFindingTransitionsStream+".ndjson")) {
		lines = append(lines, idOf(l))
	}
	if !slices.Equal(order, want) || !slices.Equal(lines, want) {
		t.Fatalf("done order %v\nfile order %v\nwant %v", order, lines, want)
	}
}

func fileHas(t *testing.T, path, id string) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(splitLines(b), func(l string) bool { return idOf(l) == id })
}

func splitLines(b []byte) []string {
	var out []string
	for len(b) > 0 {
		i := slices.Index(b, '\n')
		if i < 0 {
			return append(out, string(b))
		}
		out, b = append(out, string(b[:i])), b[i+1:]
	}
	return out
}

// TestFindingsWriterScoresAndSkippedStates: the score documents of a
// snapshot land in the scores file and are done once; a state line that
// is not a finding is skipped and counted by States, not fatal.
func TestFindingsWriterScoresAndSkippedStates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, config.DefaultFindingsIndex+".ndjson")
	if err := os.WriteFile(path, []byte(`{"event":{"id":"x"},"kubesift":{"finding":{"id":"x","severity":"dire"}}}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w, fw, _ := findingsStore(t, dir)
	defer w.Close(context.Background())
	res := make(chan sink.Result, 2)
	at := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	total := posture.Score{Passed: 3, Failed: 1, PassedWeight: 9, Weight: 15, Percent: 60}
	byNS := map[string]posture.Score{"shop": total, "kube-system": {Percent: 100}}
	for range 2 {
		if err := fw.WriteScores(context.Background(), "prod", total, byNS, at, func(r sink.Result) { res <- r }); err != nil {
			t.Fatal(err)
		}
	}
	if r1, r2 := <-res, <-res; r1.Status != sink.Indexed || r2.Status != sink.Duplicate {
		t.Fatalf("results %+v, %+v; want Indexed, then Duplicate (the same snapshot)", r1, r2)
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(readLines(t, filepath.Join(dir, config.DefaultPostureScoresStream+".ndjson"))); n != 3 {
		t.Fatalf("%d score lines, want 3 (cluster and two namespaces)", n)
	}
	states, skipped, err := fw.States(context.Background(), "prod")
	if err != nil || skipped != 1 || len(states) != 0 {
		t.Fatalf("States: %d states, %d skipped, err %v; want 0, 1, nil", len(states), skipped, err)
	}
}
