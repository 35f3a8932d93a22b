package audittail

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

func TestStartAt(t *testing.T) {
	tests := []struct {
		name     string
		startAt  string
		existing string // file content before the first start
		want     []string
	}{
		{"beginning reads what is there", "beginning", line("a1", 0) + line("a2", 0), []string{"a1", "a2", "n1"}},
		{"end skips what is there", "end", line("a1", 0) + line("a2", 0), []string{"n1"}},
		{"end never starts inside a line being written", "end", line("a1", 0) + strings.TrimSuffix(line("p1", 0), "\n"), []string{"p1", "n1"}},
		{"end on a file holding one unfinished line", "end", strings.TrimSuffix(line("p1", 0), "\n"), []string{"p1", "n1"}},
		{"end on an empty file", "end", "", []string{"n1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newTailEnv(t)
			os.WriteFile(e.path, []byte(tc.existing), 0o644)
			e.start(startAt(tc.startAt))
			if strings.HasSuffix(tc.existing, "}") {
				e.write("\n")
			}
			e.write(line("n1", 0))
			testenv.WaitFor(t, "n1", 5*time.Second, func() bool { return e.pub.n(rid("n1")) > 0 })
			e.settle()
			var want []string
			for _, id := range tc.want {
				want = append(want, rid(id))
			}
			if got := strings.Join(e.pub.published(), " "); got != strings.Join(want, " ") {
				t.Errorf("published %q, want %q", got, strings.Join(want, " "))
			}
		})
	}
}

func TestFileThatAppearsLaterIsReadFromItsBeginning(t *testing.T) {
	e := newTailEnv(t)
	e.start(startAt("end"))
	e.write(line("a1", 0) + line("a2", 0))
	testenv.WaitFor(t, "both lines", 5*time.Second, func() bool { return e.pub.count() == 2 })
}

func TestPartialLineWaitsForItsNewline(t *testing.T) {
	e := newTailEnv(t)
	e.start()
	l := line("a1", 0)
	e.write(line("a0", 0) + l[:50])
	testenv.WaitFor(t, "a0", 5*time.Second, func() bool { return e.pub.count() == 1 })
	partial := float64(len(l[:50]))
	testenv.WaitFor(t, "a0 committed with the partial line seen at EOF", 5*time.Second, func() bool {
		return testutil.ToFloat64(e.tl.m.lag.WithLabelValues(e.path)) == partial
	})
	// Many poll intervals and batch waits in which a wrongly emitted partial
	// line would show: that nothing is emitted cannot be awaited.
	time.Sleep(200 * time.Millisecond)
	if e.pub.count() != 1 || len(e.pub.deadLetters()) != 0 {
		t.Fatalf("a partial line was emitted: %v %v", e.pub.published(), e.pub.deadLetters())
	}
	pos := e.tl.Positions()[e.path]
	if pos.Offset != int64(len(line("a0", 0))) {
		t.Errorf("position %d is not at the end of the last complete line", pos.Offset)
	}
	e.write(l[50:])
	testenv.WaitFor(t, "a1", 5*time.Second, func() bool { return e.pub.count() == 2 })
	if d := e.pub.duplicates(); len(d) > 0 {
		t.Errorf("duplicates %v", d)
	}
}

func TestMalformedLinesBecomeDeadLetters(t *testing.T) {
	e := newTailEnv(t)
	secretURI := strings.Replace(line("s1", 0), "configmaps/x", "secrets/x?token=planted-token-value", 1)
	content := line("g1", 0) + // line 1
		"this is not json\n" + // 2
		line("g2", 0) + // 3
		`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"trunc` + "\n" + // 4: truncated mid-write
		line("g3", 0) + // 5
		strings.Replace(line("bad", 0), `"username":"alice"`, `"username":7`, 1) + // 6
		"\n" + // 7 (blank: skipped, not an error)
		secretURI[:len(secretURI)-20] + "\n" // 8: malformed with a secret in it
	os.WriteFile(e.path, []byte(content), 0o644)
	e.start()
	testenv.WaitFor(t, "3 records and 4 dead letters", 5*time.Second, func() bool {
		return e.pub.count() == 3 && len(e.pub.deadLetters()) == 4
	})
	want := []struct {
		line   int
		reason string
		data   string
	}{{2, "syntax", "this is not json"}, {4, "syntax", `"auditID":"trunc`}, {6, "field", `"auditID":"bad"`}, {8, "syntax", `"auditID":"s1"`}}
	lines := strings.SplitAfter(content, "\n")
	for i, dl := range e.pub.deadLetters() {
		w := want[i]
		var off int64
		for _, l := range lines[:w.line-1] {
			off += int64(len(l))
		}
		if dl.Line != w.line || dl.Offset != off || dl.Reason != w.reason || dl.Origin != e.path || dl.Source != Source ||
			!strings.Contains(string(dl.Data), w.data) || !strings.Contains(dl.Error, fmt.Sprintf("%s:%d (byte %d)", e.path, w.line, off)) {
			t.Errorf("dead letter %d = %+v (data %.60s), want line %d offset %d reason %s", i, dl, dl.Data, w.line, off, w.reason)
		}
		if strings.Contains(string(dl.Data), "planted-token-value") {
			t.Errorf("dead letter %d leaks a query token: %s", i, dl.Data)
		}
	}
	if got := testutil.ToFloat64(e.tl.m.rejected.WithLabelValues("malformed")); got != 4 {
		t.Errorf("rejected{malformed} = %v", got)
	}
	if got := testutil.ToFloat64(e.tl.m.deadLetters.WithLabelValues("syntax")); got != 3 {
		t.Errorf("dead_letters{syntax} = %v", got)
	}
}

// A line cut short runs on, for the JSON decoder, into the next one; when
// that one is no JSON either, both must still be dead letters of their own
// (found end to end: the garbage line was in no dead letter).
func TestTruncatedLineThenGarbageAreTwoDeadLetters(t *testing.T) {
	e := newTailEnv(t)
	content := line("g1", 0) + // 1
		`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"cut-off` + "\n" + // 2
		"this is not JSON\n" + // 3
		line("g2", 0) // 4
	os.WriteFile(e.path, []byte(content), 0o644)
	e.start()
	testenv.WaitFor(t, "2 records and 2 dead letters", 5*time.Second, func() bool {
		return e.pub.count() == 2 && len(e.pub.deadLetters()) == 2
	})
	lines := strings.SplitAfter(content, "\n")
	for i, dl := range e.pub.deadLetters() {
		off := int64(len(lines[0]))
		if i == 1 {
			off += int64(len(lines[1]))
		}
		// An unparsable line is kept as its masked head, then its length
		// and hash (redact.Sanitizer.DeadLetter).
		want := strings.TrimSuffix(lines[i+1], "\n")
		want += fmt.Sprintf(" [kubesift: unparsable input of %d bytes, sha256 ", len(want))
		if dl.Line != i+2 || dl.Offset != off || !strings.HasPrefix(string(dl.Data), want) || dl.Reason != "syntax" {
			t.Errorf("dead letter %d: line %d offset %d reason %s data %q; want line %d offset %d data %q",
				i, dl.Line, dl.Offset, dl.Reason, dl.Data, i+2, off, want)
		}
	}
}

// After start_at end the line numbers of dead letters are counted lazily.
func TestDeadLetterLineNumberAfterStartAtEnd(t *testing.T) {
	e := newTailEnv(t)
	os.WriteFile(e.path, []byte(strings.Repeat(line("old", 0), 10)), 0o644)
	e.start(startAt("end"))
	e.write(line("n1", 0) + "garbage\n")
	testenv.WaitFor(t, "dead letter", 5*time.Second, func() bool { return len(e.pub.deadLetters()) == 1 })
	if dl := e.pub.deadLetters()[0]; dl.Line != 12 {
		t.Errorf("line %d, want 12", dl.Line)
	}
}

func TestOverlongLine(t *testing.T) {
	e := newTailEnv(t)
	long := line("long", 5000)
	e.write(line("a1", 0) + long + line("a2", 0))
	e.start(maxLine(2000))
	testenv.WaitFor(t, "2 records and 1 dead letter", 5*time.Second, func() bool { return e.pub.count() == 2 && len(e.pub.deadLetters()) == 1 })
	dl := e.pub.deadLetters()[0]
	if dl.Reason != "too_large" || dl.Line != 2 || dl.Offset != int64(len(line("a1", 0))) || len(dl.Data) == 0 || len(dl.Data) > 512 ||
		!strings.HasPrefix(string(dl.Data), `{"kind":"Event"`) {
		t.Errorf("dead letter %+v", dl)
	}
	// A long line still being written at EOF is not a dead letter yet.
	e.write(long[:3000])
	time.Sleep(100 * time.Millisecond) // the writer pausing mid-line is the case under test
	e.write(long[3000:] + line("a3", 0))
	testenv.WaitFor(t, "a3", 5*time.Second, func() bool { return e.pub.count() == 3 && len(e.pub.deadLetters()) == 2 })
	e.stop()
	if pos := e.tl.Positions()[e.path]; pos.Offset != int64(2*len(line("a1", 0))+2*len(long)+len(line("a3", 0))) || pos.Line != 5 {
		t.Errorf("position %+v", pos)
	}
}

func TestResumeAfterRestart(t *testing.T) {
	e := newTailEnv(t)
	var content string
	for i := range 50 {
		content += line(fmt.Sprintf("a%d", i), i)
	}
	os.WriteFile(e.path, []byte(content), 0o644)
	e.start(batchLines(7))
	testenv.WaitFor(t, "50 records", 5*time.Second, func() bool { return e.pub.count() == 50 })
	e.stop()
	// The positions file on disk says where we are.
	data, err := os.ReadFile(e.positions)
	if err != nil {
		t.Fatal(err)
	}
	m, err := parsePositions(data)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(e.path)
	if p := m[e.path]; p.Offset != int64(len(content)) || p.Line != 50 || p.Inode != inode(fi) {
		t.Fatalf("positions file %q: %+v, want offset %d line 50 inode %d", data, p, len(content), inode(fi))
	}
	if entries, _ := os.ReadDir(filepath.Dir(e.positions)); len(entries) != 1 {
		t.Errorf("temporary files left next to the positions file: %v", entries)
	}
	e.write(line("b1", 0) + line("b2", 0))
	e.start(startAt("end")) // start_at must not matter once there is a position
	testenv.WaitFor(t, "b1, b2", 5*time.Second, func() bool { return e.pub.count() == 52 })
	e.settle()
	if d := e.pub.duplicates(); len(d) > 0 {
		t.Errorf("re-published after restart: %v", d)
	}
}

// The position is committed only after Publish returned nil.
func TestPositionOnlyAdvancesAfterPublish(t *testing.T) {
	e := newTailEnv(t)
	e.pub.block = make(chan struct{})
	e.write(line("a1", 0))
	e.start()
	calls := func() int { e.pub.mu.Lock(); defer e.pub.mu.Unlock(); return e.pub.calls }
	testenv.WaitFor(t, "the batch held in Publish and its line counted as lag", 5*time.Second, func() bool {
		return calls() > 0 && testutil.ToFloat64(e.tl.m.lag.WithLabelValues(e.path)) == float64(len(line("a1", 0)))
	})
	if p := e.tl.Positions()[e.path]; p.Offset != 0 {
		t.Fatalf("position %d committed while Publish had not returned", p.Offset)
	}
	if lag := testutil.ToFloat64(e.tl.m.lag.WithLabelValues(e.path)); lag != float64(len(line("a1", 0))) {
		t.Errorf("lag %v", lag)
	}
	e.stop() // Publish is cancelled: nothing committed, positions file says 0
	data, _ := os.ReadFile(e.positions)
	if m, _ := parsePositions(data); m[e.path].Offset != 0 {
		t.Fatalf("positions file advanced past an unpublished batch: %s", data)
	}
	e.pub.block = nil
	e.start()
	testenv.WaitFor(t, "a1", 5*time.Second, func() bool { return e.pub.count() == 1 })
	testenv.WaitFor(t, "position", 5*time.Second, func() bool { return e.tl.Positions()[e.path].Offset == int64(len(line("a1", 0))) })
	testenv.WaitFor(t, "lag 0", 5*time.Second, func() bool { return testutil.ToFloat64(e.tl.m.lag.WithLabelValues(e.path)) == 0 })
}

func TestBackpressurePausesAndRetriesTheSameBatch(t *testing.T) {
	for _, refuseWith := range []error{collector.ErrBackpressure, errors.New("broker gone")} {
		t.Run(refuseWith.Error(), func(t *testing.T) {
			e := newTailEnv(t)
			e.pub.refuse, e.pub.err = 4, refuseWith
			for i := range 30 {
				e.write(line(fmt.Sprintf("a%d", i), 0))
			}
			e.start(batchLines(10))
			testenv.WaitFor(t, "30 records", 20*time.Second, func() bool { return e.pub.count() == 30 })
			e.settle()
			if d := e.pub.duplicates(); len(d) > 0 {
				t.Errorf("duplicates %v", d)
			}
			reason := "error"
			if errors.Is(refuseWith, collector.ErrBackpressure) {
				reason = "backpressure"
			}
			if got := testutil.ToFloat64(e.tl.m.retries.WithLabelValues(e.path, reason)); got != 4 {
				t.Errorf("retries{%s} = %v", reason, got)
			}
			if got := strings.Join(e.pub.published()[:3], " "); got != "a0:ResponseComplete a1:ResponseComplete a2:ResponseComplete" {
				t.Errorf("order lost: %s", got)
			}
		})
	}
}

func TestCorruptPositionsFileRereadsFromTheBeginning(t *testing.T) {
	e := newTailEnv(t)
	os.MkdirAll(filepath.Dir(e.positions), 0o755)
	os.WriteFile(e.positions, []byte("positions: [this is: not: a map"), 0o644)
	e.write(line("a1", 0) + line("a2", 0))
	e.start(startAt("end"))
	testenv.WaitFor(t, "both lines despite start_at end", 5*time.Second, func() bool { return e.pub.count() == 2 })
	matches, _ := filepath.Glob(e.positions + ".corrupt-*")
	if len(matches) != 1 {
		t.Errorf("corrupt file not moved aside: %v", matches)
	}
}

func TestRotationWhileStopped(t *testing.T) {
	tests := []struct {
		name       string
		keepOld    bool
		wantOld    bool
		wantGap    float64
		wantRename float64
	}{
		{"rotated file still there: finished first", true, true, 0, 1},
		{"rotated file deleted: gap counted, new file from 0", false, false, 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newTailEnv(t)
			e.write(line("a1", 0))
			e.start()
			testenv.WaitFor(t, "a1", 5*time.Second, func() bool { return e.pub.count() == 1 })
			e.stop()
			e.write(line("old-rest", 0)) // written after we stopped, before the rotation
			rotated := e.path + ".1"
			os.Rename(e.path, rotated)
			if !tc.keepOld {
				os.Remove(rotated)
			}
			e.write(line("new1", 0))
			e.start()
			testenv.WaitFor(t, "new1", 5*time.Second, func() bool { return e.pub.n(rid("new1")) == 1 })
			e.settle()
			if got := e.pub.n(rid("old-rest")) == 1; got != tc.wantOld {
				t.Errorf("old-rest published: %v, want %v", got, tc.wantOld)
			}
			if tc.wantOld {
				p := e.pub.published()
				if p[len(p)-2] != rid("old-rest") {
					t.Errorf("order %v: the rotated file must be finished first", p)
				}
			}
			if got := testutil.ToFloat64(e.tl.m.gaps.WithLabelValues(e.path)); got != tc.wantGap {
				t.Errorf("gaps %v", got)
			}
			if got := testutil.ToFloat64(e.tl.m.rotations.WithLabelValues(e.path, "rename")); got != tc.wantRename {
				t.Errorf("rename rotations %v", got)
			}
		})
	}
}

func TestTruncatedWhileStopped(t *testing.T) {
	e := newTailEnv(t)
	e.write(line("a1", 0) + line("a2", 0))
	e.start()
	testenv.WaitFor(t, "a1 a2", 5*time.Second, func() bool { return e.pub.count() == 2 })
	e.stop()
	os.WriteFile(e.path, []byte(line("b1", 0)), 0o644) // same inode, shorter
	e.start()
	testenv.WaitFor(t, "b1", 5*time.Second, func() bool { return e.pub.count() == 3 })
	if got := testutil.ToFloat64(e.tl.m.rotations.WithLabelValues(e.path, "truncate")); got != 1 {
		t.Errorf("truncate rotations %v", got)
	}
}

func TestPlainTruncateWithoutCopy(t *testing.T) {
	e := newTailEnv(t)
	e.write(line("a1", 0) + line("a2", 0))
	e.start()
	testenv.WaitFor(t, "a1 a2", 5*time.Second, func() bool { return e.pub.count() == 2 })
	// Truncate and write more than before: the size alone would not show it.
	os.WriteFile(e.path, []byte(line("b1", 100)+line("b2", 100)+line("b3", 100)), 0o644)
	testenv.WaitFor(t, "b1 b2 b3", 5*time.Second, func() bool { return e.pub.count() == 5 })
	e.settle()
	if n := len(e.pub.deadLetters()); n != 0 {
		t.Errorf("%d dead letters: %+v", n, e.pub.deadLetters())
	}
	if got := testutil.ToFloat64(e.tl.m.gaps.WithLabelValues(e.path)); got != 1 {
		t.Errorf("gaps %v", got)
	}
}

func TestPartialLineLeftInARotatedFile(t *testing.T) {
	e := newTailEnv(t)
	e.start()
	e.write(line("a1", 0) + `{"kind":"Event","auditID":"cut-off`)
	testenv.WaitFor(t, "a1", 5*time.Second, func() bool { return e.pub.count() == 1 })
	os.Rename(e.path, e.path+".1")
	e.write(line("b1", 0))
	testenv.WaitFor(t, "b1 and the fragment", 5*time.Second, func() bool { return e.pub.count() == 2 && len(e.pub.deadLetters()) == 1 })
	if dl := e.pub.deadLetters()[0]; dl.Reason != "partial_line" || dl.Line != 2 || !strings.Contains(string(dl.Data), "cut-off") {
		t.Errorf("dead letter %+v", dl)
	}
}

// rotatingWriter appends numbered lines to path and rotates it every
// `every` lines, the way kube-apiserver's lumberjack (rename) or logrotate's
// copytruncate does. The writer and the rotation are serialised, as they are
// in lumberjack and as copytruncate needs for no line to be lost.
type rotatingWriter struct {
	path    string
	mode    string // rename | copytruncate
	every   int
	f       *os.File
	written []string
	rotated int
	pace    int // sleep 1ms every pace lines (default 50)
	// beforeRotate, when set, is called before each rotation with the
	// lines written before the previous one, and may block: the tail
	// bridges one rotation between two of its reads (package doc), so a
	// test that must lose nothing holds the next rotation until the tail
	// has read the file before the current one.
	beforeRotate func(prev []string)
	prevMark     int
}

func (w *rotatingWriter) open(t testing.TB) {
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	w.f = f
}

func (w *rotatingWriter) rotate(t testing.TB) {
	w.rotated++
	dst := fmt.Sprintf("%s.%d", w.path, w.rotated)
	switch w.mode {
	case "rename":
		w.f.Close()
		if err := os.Rename(w.path, dst); err != nil {
			t.Fatal(err)
		}
		w.open(t)
	case "copytruncate":
		src, _ := os.Open(w.path)
		out, _ := os.Create(dst)
		io.Copy(out, src)
		out.Close()
		src.Close()
		if err := os.Truncate(w.path, 0); err != nil {
			t.Fatal(err)
		}
	}
}

func (w *rotatingWriter) run(t testing.TB, n int, stop *atomic.Bool) {
	w.open(t)
	defer w.f.Close()
	var buf strings.Builder
	for i := 0; i < n && !stop.Load(); i++ {
		id := fmt.Sprintf("r%06d", i)
		buf.Reset()
		buf.WriteString(line(id, i%700))
		if _, err := w.f.WriteString(buf.String()); err != nil {
			t.Error(err)
			return
		}
		w.written = append(w.written, rid(id))
		if (i+1)%w.every == 0 {
			if w.beforeRotate != nil {
				w.beforeRotate(w.written[:w.prevMark])
			}
			w.prevMark = len(w.written)
			w.rotate(t)
		}
		if pace := max(w.pace, 1); w.pace == 0 && i%50 == 0 || w.pace > 0 && i%pace == 0 {
			time.Sleep(time.Millisecond) // let the tail catch up sometimes, and fall behind other times
		}
	}
}

func TestRotationUnderLoadLosesNothing(t *testing.T) {
	for _, mode := range []string{"rename", "copytruncate"} {
		t.Run(mode, func(t *testing.T) {
			e := newTailEnv(t)
			e.start(batchLines(100))
			w := &rotatingWriter{path: e.path, mode: mode, every: 1500}
			if mode == "copytruncate" {
				// Writes never stop, but each rotation takes longer than
				// reading one copy (a copytruncate more often than that can
				// skip a copy; see the package doc). Rename has no such
				// limit: rotated files are held open.
				w.pace = 4
			}
			var stop atomic.Bool
			const n = 12000
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); w.run(t, n, &stop) }()
			wg.Wait()
			testenv.WaitFor(t, fmt.Sprintf("%d records", n), 60*time.Second, func() bool { return e.pub.count() >= len(w.written) })
			e.settle()
			var missing []string
			for _, id := range w.written {
				if e.pub.n(id) == 0 {
					missing = append(missing, id)
				}
			}
			if len(missing) > 0 {
				t.Errorf("%d lines lost, e.g. %v", len(missing), missing[:min(5, len(missing))])
			}
			if d := e.pub.duplicates(); len(d) > 0 {
				t.Errorf("%d duplicates, e.g. %v", len(d), d[:min(5, len(d))])
			}
			if dls := e.pub.deadLetters(); len(dls) > 0 {
				t.Errorf("%d dead letters, e.g. %+v", len(dls), dls[0])
			}
			kind := map[string]string{"rename": "rename", "copytruncate": "truncate"}[mode]
			if got := testutil.ToFloat64(e.tl.m.rotations.WithLabelValues(e.path, kind)); got != float64(w.rotated) {
				t.Errorf("%s rotations counted %v, happened %d", kind, got, w.rotated)
			}
			if got := testutil.ToFloat64(e.tl.m.gaps.WithLabelValues(e.path)); got != 0 {
				t.Errorf("gaps %v", got)
			}
		})
	}
}

// A restart in the middle of a rotated stream: every line arrives (at least
// once; duplicates only from the batch in flight at the stop).
func TestRestartsDuringRotationLoseNothing(t *testing.T) {
	e := newTailEnv(t)
	w := &rotatingWriter{path: e.path, mode: "rename", every: 700, pace: 2}
	var stop atomic.Bool
	// Only one rotation can be bridged while the tail is stopped (see the
	// package doc), however long a restart takes on a busy machine: the
	// next rotation waits until every line of the file before the current
	// one has arrived.
	w.beforeRotate = func(prev []string) {
		err := testenv.Await(2*time.Minute, func() error {
			for _, id := range prev {
				if e.pub.n(id) == 0 {
					return fmt.Errorf("line %s of a rotated file has not arrived", id)
				}
			}
			return nil
		})
		if err != nil {
			t.Error(err)
			stop.Store(true)
		}
	}
	var writing atomic.Bool
	writing.Store(true)
	go func() { defer writing.Store(false); w.run(t, 6000, &stop) }()
	restarts := 0
	for writing.Load() {
		e.start(batchLines(50))
		time.Sleep(150 * time.Millisecond) // a run cut short by a restart is the case under test
		e.stop()
		restarts++
	}
	t.Logf("%d restarts, %d rotations", restarts, w.rotated)
	e.start(batchLines(50))
	testenv.WaitFor(t, "every line", 60*time.Second, func() bool {
		for _, id := range w.written {
			if e.pub.n(id) == 0 {
				return false
			}
		}
		return true
	})
}

// pipePub is a collector.Pipeliner around fakePub whose waits return only
// when the test releases them, in any order.
type pipePub struct {
	*fakePub
	mu            sync.Mutex
	begun         []chan struct{}
	open, maxOpen int
}

func (p *pipePub) Begin(_ context.Context, recs []*record.Record) func(context.Context) error {
	// A Pipeliner is given records without typed views (the tail drops
	// them after redaction: collector.Pipeliner); fakePub.Publish checks
	// for a view, so lend each record a stand-in one.
	recs = slices.Clone(recs)
	for i, r := range recs {
		if r.Audit != nil {
			return func(context.Context) error { return fmt.Errorf("record %s: typed view kept for a Pipeliner", r.ID) }
		}
		c := *r
		c.Audit = &auditv1.Event{}
		recs[i] = &c
	}
	rel := make(chan struct{})
	p.mu.Lock()
	p.begun = append(p.begun, rel)
	p.open++
	p.maxOpen = max(p.maxOpen, p.open)
	p.mu.Unlock()
	return func(ctx context.Context) error {
		defer func() {
			p.mu.Lock()
			p.open--
			p.mu.Unlock()
		}()
		select {
		case <-rel:
		case <-ctx.Done():
			return ctx.Err()
		}
		return p.fakePub.Publish(ctx, recs)
	}
}

func (p *pipePub) nbegun() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.begun)
}

func (p *pipePub) release(i int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.begun[i])
}

// TestPipelinedCommitsInOrder: with a publisher that pipelines, up to
// publishDepth batches are in flight, and a position is committed only once
// every batch before it is durable, whatever order the acknowledgements
// come in.
func TestPipelinedCommitsInOrder(t *testing.T) {
	e := newTailEnv(t)
	pp := &pipePub{fakePub: e.pub}
	e.pipe = pp
	var content string
	for i := range 6 {
		content += line(fmt.Sprintf("p%d", i), 0)
	}
	os.WriteFile(e.path, []byte(content), 0o644)
	e.start(batchLines(1))
	lines := strings.SplitAfter(content, "\n")
	end := func(n int) int64 { // offset after the first n lines
		var off int64
		for _, l := range lines[:n] {
			off += int64(len(l))
		}
		return off
	}
	pos := func() int64 { return e.tl.Positions()[e.path].Offset }
	testenv.WaitFor(t, "publishDepth batches begun", 5*time.Second, func() bool { return pp.nbegun() == publishDepth })
	// A window in which a fourth batch would begin (it must not): that
	// nothing happens cannot be awaited.
	time.Sleep(100 * time.Millisecond)
	if n := pp.nbegun(); n != publishDepth {
		t.Fatalf("%d batches begun with none finished, want %d", n, publishDepth)
	}
	pp.release(2)
	pp.release(1)
	testenv.WaitFor(t, "batches 1 and 2 published", 5*time.Second, func() bool { return e.pub.count() == 2 })
	// A window in which a wrong commit of their positions would show.
	time.Sleep(100 * time.Millisecond)
	if p := pos(); p != 0 {
		t.Fatalf("position %d committed while the first batch is not durable", p)
	}
	pp.release(0)
	testenv.WaitFor(t, "position after line 3", 5*time.Second, func() bool { return pos() == end(3) })
	testenv.WaitFor(t, "all 6 begun", 5*time.Second, func() bool { return pp.nbegun() == 6 })
	for i := 3; i < 6; i++ {
		pp.release(i)
	}
	testenv.WaitFor(t, "position at the end", 5*time.Second, func() bool { return pos() == end(6) })
	if e.pub.count() != 6 || pp.maxOpen > publishDepth {
		t.Errorf("%d records published, %d batches open at most (depth %d)", e.pub.count(), pp.maxOpen, publishDepth)
	}
}
