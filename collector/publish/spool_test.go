package publish

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/config"
)

type spoolRecorder struct {
	bytes    int64
	segments int
	cut      map[string]int64
}

func testSpool(t *testing.T, dir string, maxBytes, segBytes int64, rec *spoolRecorder) *spool {
	t.Helper()
	if rec != nil {
		rec.cut = map[string]int64{}
	}
	s, err := openSpool(spoolOptions{
		Dir: dir, MaxBytes: maxBytes, SegmentBytes: segBytes, Fsync: config.SpoolFsyncAlways,
		OnChange: func(b int64, n int) {
			if rec != nil {
				rec.bytes, rec.segments = b, n
			}
		},
		OnTruncate: func(cause string, n int64) {
			if rec != nil {
				rec.cut[cause] += n
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func payloads(from, n, size int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		p := fmt.Appendf(nil, "rec-%06d:", from+i)
		for len(p) < size {
			p = append(p, byte('a'+(from+i)%26))
		}
		out[i] = p
	}
	return out
}

// drainAll reads and commits everything, returning the payloads in order.
func drainAll(t *testing.T, s *spool, round int64) [][]byte {
	t.Helper()
	var got [][]byte
	for s.Unread() {
		es, pos, err := s.Read(round)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			got = append(got, bytes.Clone(e.payload))
		}
		if err := s.Commit(pos); err != nil {
			t.Fatal(err)
		}
	}
	return got
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+segSuffix))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(m)
	return m
}

func TestSpoolOrderAndRoll(t *testing.T) {
	tests := []struct {
		name                  string
		segBytes, round       int64
		batches, perBatch, sz int
		wantSegsAtLeast       int
	}{
		{"one segment", 1 << 20, 1 << 20, 3, 10, 100, 1},
		{"many segments, small rounds", 2048, 700, 10, 7, 200, 7},
		{"entry larger than the round", 4096, 10, 2, 5, 1000, 3},
		{"one entry per segment", 300, 1 << 20, 4, 3, 250, 12},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var rec spoolRecorder
			s := testSpool(t, dir, 1<<30, tc.segBytes, &rec)
			defer s.Close()
			var want [][]byte
			for b := range tc.batches {
				ps := payloads(b*tc.perBatch, tc.perBatch, tc.sz)
				if err := s.Append(ps); err != nil {
					t.Fatal(err)
				}
				want = append(want, ps...)
			}
			if rec.segments < tc.wantSegsAtLeast || len(segFiles(t, dir)) != rec.segments {
				t.Fatalf("segments: gauge %d, files %d, want at least %d", rec.segments, len(segFiles(t, dir)), tc.wantSegsAtLeast)
			}
			for _, f := range segFiles(t, dir) {
				if st, _ := os.Stat(f); st.Size() > max(tc.segBytes, int64(tc.sz)+entryHeaderSize+segHeaderSize) {
					t.Errorf("%s is %d bytes, over the segment size %d", f, st.Size(), tc.segBytes)
				}
			}
			got := drainAll(t, s, tc.round)
			if !slices.EqualFunc(got, want, bytes.Equal) {
				t.Fatalf("drained %d entries, want %d in order", len(got), len(want))
			}
			if !s.Empty() || rec.bytes != 0 || rec.segments != 0 || len(segFiles(t, dir)) != 0 {
				t.Errorf("after drain: empty=%v bytes=%d segments=%d files=%v", s.Empty(), rec.bytes, rec.segments, segFiles(t, dir))
			}
			// The spool keeps working after it emptied.
			if err := s.Append(payloads(0, 2, 10)); err != nil {
				t.Fatal(err)
			}
			if got := drainAll(t, s, 1<<20); len(got) != 2 {
				t.Errorf("after re-use: %d entries", len(got))
			}
		})
	}
}

func TestSpoolInterleavedAppendAndRead(t *testing.T) {
	s := testSpool(t, t.TempDir(), 1<<30, 1500, nil)
	defer s.Close()
	var want, got [][]byte
	for i := range 50 {
		ps := payloads(i*3, 3, 90+i)
		if err := s.Append(ps); err != nil {
			t.Fatal(err)
		}
		want = append(want, ps...)
		if i%4 == 0 {
			es, pos, err := s.Read(500)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range es {
				got = append(got, bytes.Clone(e.payload))
			}
			if i%8 == 0 {
				// A failed send: read again from the committed position.
				s.Rewind()
				got = got[:len(got)-len(es)]
				continue
			}
			if err := s.Commit(pos); err != nil {
				t.Fatal(err)
			}
		}
	}
	got = append(got, drainAll(t, s, 333)...)
	if !slices.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("got %d entries, want %d in order", len(got), len(want))
	}
}

func TestSpoolMaxBytesBackpressure(t *testing.T) {
	dir := t.TempDir()
	var rec spoolRecorder
	const maxBytes = 10 << 10
	s := testSpool(t, dir, maxBytes, 4<<10, &rec)
	defer s.Close()
	n := 0
	var err error
	for ; n < 1000; n++ {
		if err = s.Append(payloads(n*5, 5, 200)); err != nil {
			break
		}
	}
	if !errors.Is(err, errSpoolFull) {
		t.Fatalf("err = %v after %d batches, want errSpoolFull", err, n)
	}
	if rec.bytes > maxBytes {
		t.Fatalf("spool holds %d bytes, limit %d", rec.bytes, maxBytes)
	}
	var onDisk int64
	for _, f := range segFiles(t, dir) {
		st, _ := os.Stat(f)
		onDisk += st.Size()
	}
	if onDisk != rec.bytes {
		t.Errorf("gauge says %d bytes, files hold %d", rec.bytes, onDisk)
	}
	// The refused batch left nothing behind: all or none.
	if got := drainAll(t, s, 1<<20); len(got) != n*5 {
		t.Fatalf("drained %d entries, want %d (refused batches must not be partly written)", len(got), n*5)
	}
	// Room again after draining.
	if err := s.Append(payloads(0, 5, 200)); err != nil {
		t.Fatalf("after drain: %v", err)
	}
}

func TestSpoolTornTailRecovery(t *testing.T) {
	tests := []struct {
		name string
		cut  func(size int64, lastEntry int64) int64 // new file size
		// how many of the last batch's entries survive
		wantLost int
	}{
		{"mid payload", func(size, last int64) int64 { return size - 10 }, 1},
		{"mid entry header", func(size, last int64) int64 { return last + 3 }, 1},
		{"right after header", func(size, last int64) int64 { return last + entryHeaderSize }, 1},
		{"at a boundary", func(size, last int64) int64 { return last }, 1},
		{"nothing cut", func(size, last int64) int64 { return size }, 0},
		{"torn segment header", func(size, last int64) int64 { return 5 }, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := testSpool(t, dir, 1<<30, 1<<20, nil)
			want := payloads(0, 10, 120)
			if err := s.Append(want); err != nil {
				t.Fatal(err)
			}
			s.Close()
			files := segFiles(t, dir)
			f := files[len(files)-1]
			st, _ := os.Stat(f)
			lastEntry := st.Size() - int64(entryHeaderSize+len(want[9]))
			if err := os.Truncate(f, tc.cut(st.Size(), lastEntry)); err != nil {
				t.Fatal(err)
			}

			var rec spoolRecorder
			s = testSpool(t, dir, 1<<30, 1<<20, &rec)
			defer s.Close()
			got := drainAll(t, s, 1<<20)
			wantN := len(want) - tc.wantLost
			if !slices.EqualFunc(got, want[:wantN], bytes.Equal) {
				t.Fatalf("recovered %d entries, want the first %d", len(got), wantN)
			}
			if tc.wantLost > 0 && tc.name != "at a boundary" && tc.name != "torn segment header" && rec.cut["torn_tail"] == 0 {
				t.Errorf("torn tail not counted: %v", rec.cut)
			}
			if rec.cut["corrupt"] != 0 {
				t.Errorf("torn tail counted as corruption: %v", rec.cut)
			}
			// And it appends again after recovery.
			if err := s.Append(payloads(100, 2, 50)); err != nil {
				t.Fatal(err)
			}
			if got := drainAll(t, s, 1<<20); len(got) != 2 {
				t.Fatalf("after recovery: %d entries", len(got))
			}
		})
	}
}

func TestSpoolCorruptSealedSegment(t *testing.T) {
	dir := t.TempDir()
	s := testSpool(t, dir, 1<<30, 1000, nil)
	all := payloads(0, 20, 150) // 158 bytes per entry: 6 per segment
	if err := s.Append(all); err != nil {
		t.Fatal(err)
	}
	s.Close()
	files := segFiles(t, dir)
	if len(files) < 3 {
		t.Fatalf("want several segments, got %d", len(files))
	}
	// Flip a payload byte of the third entry of the first (sealed) segment.
	b, _ := os.ReadFile(files[0])
	b[segHeaderSize+2*(entryHeaderSize+150)+entryHeaderSize+5] ^= 0xff
	os.WriteFile(files[0], b, 0o640)

	var rec spoolRecorder
	s = testSpool(t, dir, 1<<30, 1000, &rec)
	defer s.Close()
	// A failed send and re-read must not count the damage twice.
	if _, _, err := s.Read(1 << 20); err != nil {
		t.Fatal(err)
	}
	s.Rewind()
	got := drainAll(t, s, 1<<20)
	// Entries 0 and 1 survive; 2..5 (rest of segment 1) are lost; 6.. survive.
	want := append(slices.Clone(all[:2]), all[6:]...)
	if !slices.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("got %d entries, want %d", len(got), len(want))
	}
	if rec.cut["corrupt"] != 4*(entryHeaderSize+150) {
		t.Errorf("corrupt bytes counted %d, want %d", rec.cut["corrupt"], 4*(entryHeaderSize+150))
	}
	if len(segFiles(t, dir)) != 0 {
		t.Errorf("damaged segment not deleted after draining: %v", segFiles(t, dir))
	}
}

func TestSpoolCheckpointResume(t *testing.T) {
	tests := []struct {
		name       string
		damage     func(dir string)
		wantResume bool // resume after the committed entries (else from the segment start)
	}{
		{"intact checkpoint", func(string) {}, true},
		{"damaged checkpoint", func(dir string) {
			p := filepath.Join(dir, checkpointName)
			b, _ := os.ReadFile(p)
			b[6] ^= 1
			os.WriteFile(p, b, 0o640)
		}, false},
		{"missing checkpoint", func(dir string) { os.Remove(filepath.Join(dir, checkpointName)) }, false},
		{"checkpoint off an entry boundary", func(dir string) {
			s := &spool{opts: spoolOptions{Dir: dir, Fsync: config.SpoolFsyncNever}}
			segs := segFiles(t, dir)
			var seq uint64
			fmt.Sscanf(filepath.Base(segs[0]), "%d", &seq)
			s.writeCheckpoint(spoolPos{seq: seq, off: segHeaderSize + 3})
		}, false},
		{"leftover temp file", func(dir string) {
			os.WriteFile(filepath.Join(dir, checkpointName+".tmp"), []byte("junk"), 0o640)
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := testSpool(t, dir, 1<<30, 1<<20, nil)
			all := payloads(0, 30, 100)
			if err := s.Append(all); err != nil {
				t.Fatal(err)
			}
			// Commit the first ~10 entries (one read of ~1 KiB).
			es, pos, err := s.Read(10 * (entryHeaderSize + 100))
			if err != nil || len(es) != 10 {
				t.Fatalf("read %d entries, err %v", len(es), err)
			}
			if err := s.Commit(pos); err != nil {
				t.Fatal(err)
			}
			// Read more without committing: lost on restart (re-sent).
			if _, _, err := s.Read(500); err != nil {
				t.Fatal(err)
			}
			s.Close()
			tc.damage(dir)

			s = testSpool(t, dir, 1<<30, 1<<20, nil)
			defer s.Close()
			got := drainAll(t, s, 1<<20)
			want := all
			if tc.wantResume {
				want = all[10:]
			}
			if !slices.EqualFunc(got, want, bytes.Equal) {
				t.Fatalf("after reopen got %d entries, want %d", len(got), len(want))
			}
			if _, err := os.Stat(filepath.Join(dir, checkpointName+".tmp")); err == nil {
				t.Error("temporary checkpoint left behind")
			}
		})
	}
}

func TestSpoolDirLockedOnce(t *testing.T) {
	dir := t.TempDir()
	s := testSpool(t, dir, 1<<20, 1<<16, nil)
	if _, err := openSpool(spoolOptions{Dir: dir, MaxBytes: 1 << 20, SegmentBytes: 1 << 16, Fsync: config.SpoolFsyncNever}); err == nil {
		t.Fatal("a second spool opened the same directory")
	}
	s.Close()
	s2 := testSpool(t, dir, 1<<20, 1<<16, nil)
	s2.Close()
}

func TestSpoolRefusesForeignSegment(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, fmt.Sprintf("%020d%s", 1, segSuffix)), []byte("this is not a spool segment"), 0o640)
	_, err := openSpool(spoolOptions{Dir: dir, MaxBytes: 1 << 20, SegmentBytes: 1 << 16, Fsync: config.SpoolFsyncNever})
	if err == nil {
		t.Fatal("opened a directory with a foreign .seg file")
	}
}

func TestSpoolFsyncPolicies(t *testing.T) {
	for _, policy := range []string{config.SpoolFsyncAlways, config.SpoolFsyncInterval, config.SpoolFsyncNever} {
		t.Run(policy, func(t *testing.T) {
			dir := t.TempDir()
			s, err := openSpool(spoolOptions{Dir: dir, MaxBytes: 1 << 20, SegmentBytes: 4096, Fsync: policy, FsyncInterval: 5e6})
			if err != nil {
				t.Fatal(err)
			}
			want := payloads(0, 40, 300)
			if err := s.Append(want); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s, err = openSpool(spoolOptions{Dir: dir, MaxBytes: 1 << 20, SegmentBytes: 4096, Fsync: policy, FsyncInterval: 5e6})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := drainAll(t, s, 1<<20); !slices.EqualFunc(got, want, bytes.Equal) {
				t.Fatalf("got %d entries, want %d", len(got), len(want))
			}
		})
	}
}

// BenchmarkSpoolAppend measures the spool alone: batches of 500 ~1.5 KB
// entries with one fsync per batch (fsync: always).
func BenchmarkSpoolAppend(b *testing.B) {
	s, err := openSpool(spoolOptions{Dir: b.TempDir(), MaxBytes: 1 << 40, SegmentBytes: 64 << 20, Fsync: config.SpoolFsyncAlways})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	m, err := fromRecord(auditRecord(1, "alice", 1500), nil)
	if err != nil {
		b.Fatal(err)
	}
	batch := make([][]byte, 500)
	for i := range batch {
		batch[i] = encodePayload(nil, &m)
	}
	b.SetBytes(int64(len(batch) * len(batch[0])))
	b.ResetTimer()
	for b.Loop() {
		if err := s.Append(batch); err != nil {
			b.Fatal(err)
		}
		// Keep the disk use flat: drain what was written.
		es, pos, err := s.Read(1 << 30)
		if err != nil || len(es) != len(batch) {
			b.Fatalf("read %d: %v", len(es), err)
		}
		s.Commit(pos)
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "records/s")
}

// TestSpoolAppendRollsBackOnError makes segment creation fail in the middle
// of a batch that needs new segments: the batch must vanish completely and
// the spool must keep working.
func TestSpoolAppendRollsBackOnError(t *testing.T) {
	dir := t.TempDir()
	var rec spoolRecorder
	s := testSpool(t, dir, 1<<30, 2048, &rec)
	defer s.Close()
	first := payloads(0, 5, 200) // fits in the first segment
	if err := s.Append(first); err != nil {
		t.Fatal(err)
	}
	bytesBefore, segsBefore := rec.bytes, rec.segments

	tests := []struct {
		name      string
		failAfter int // successful creates before the failure
	}{
		{"first roll fails", 0},
		{"second roll fails", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			orig := createSegment
			defer func() { createSegment = orig }()
			n := 0
			createSegment = func(path string) (*os.File, error) {
				if n == tc.failAfter {
					return nil, errors.New("injected: no space left on device")
				}
				n++
				return orig(path)
			}
			err := s.Append(payloads(100, 30, 200)) // needs several segments
			if err == nil || !strings.Contains(err.Error(), "injected") {
				t.Fatalf("err = %v", err)
			}
			if b, n := s.Stats(); b != bytesBefore || n != segsBefore || len(segFiles(t, dir)) != segsBefore {
				t.Fatalf("after a failed append: %d bytes, %d segments, files %v; want %d, %d", b, n, segFiles(t, dir), bytesBefore, segsBefore)
			}
		})
	}
	// It still appends, and only the successful batches are read.
	second := payloads(200, 12, 200)
	if err := s.Append(second); err != nil {
		t.Fatal(err)
	}
	got := drainAll(t, s, 1<<20)
	want := append(slices.Clone(first), second...)
	if !slices.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("got %d entries, want %d", len(got), len(want))
	}
}

// TestSpoolOldestAge steps a spool through appends, drains and a restart on
// a clock of its own, and checks the age of its oldest record at each step.
func TestSpoolOldestAge(t *testing.T) {
	base := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	now := base
	dir := t.TempDir()
	open := func() *spool {
		s, err := openSpool(spoolOptions{Dir: dir, MaxBytes: 1 << 30, Fsync: config.SpoolFsyncNever,
			// Three 100-byte entries fill a segment.
			SegmentBytes: segHeaderSize + 3*(entryHeaderSize+100), Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	t.Cleanup(func() { s.Close() })
	appendN := func(n int) {
		if err := s.Append(payloads(0, n, 100)); err != nil {
			t.Fatal(err)
		}
	}
	commitN := func(n int) {
		es, pos, err := s.Read(int64(n) * (entryHeaderSize + 100))
		if err != nil || len(es) != n {
			t.Fatalf("read %d entries (err %v), want %d", len(es), err, n)
		}
		if err := s.Commit(pos); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name string
		at   time.Duration // the clock, from base, before do
		do   func()
		want time.Duration
	}{
		{"empty spool", 0, nil, 0},
		{"the first append starts the clock", 0, func() { appendN(3) }, 0},
		{"the age grows while nothing drains", 90 * time.Second, nil, 90 * time.Second},
		{"a newer segment does not lower it", 90 * time.Second, func() { appendN(3) }, 90 * time.Second},
		{"the oldest segment drained: the next one's age", 100 * time.Second, func() { commitN(3) }, 10 * time.Second},
		{"a partly drained segment keeps its start", 110 * time.Second, func() { commitN(1) }, 20 * time.Second},
		{"drained: zero", 120 * time.Second, func() { drainAll(t, s, 1<<20) }, 0},
		{"a segment left by an earlier run dates from its last write", 200 * time.Second, func() {
			appendN(2)
			s.Close()
			if err := os.Chtimes(segFiles(t, dir)[0], base.Add(150*time.Second), base.Add(150*time.Second)); err != nil {
				t.Fatal(err)
			}
			s = open()
		}, 50 * time.Second},
	}
	for _, st := range steps {
		now = base.Add(st.at)
		if st.do != nil {
			st.do()
		}
		if got := s.OldestAge(); got != st.want {
			t.Fatalf("%s: OldestAge %v, want %v", st.name, got, st.want)
		}
	}
}
