package pipeline

import (
	"math/rand/v2"
	"sync"
	"testing"
)

func TestTracker(t *testing.T) {
	tests := []struct {
		name   string
		start  int64
		add    []int64
		acks   []int64
		commit []int64 // commit point after each ack
	}{
		{"in order", 10, []int64{10, 11, 12}, []int64{10, 11, 12}, []int64{11, 12, 13}},
		{"out of order waits for the gap", 0, []int64{0, 1, 2, 3}, []int64{2, 1, 3, 0}, []int64{0, 0, 0, 4}},
		{"offset gaps from compaction", 5, []int64{5, 9, 20}, []int64{9, 5, 20}, []int64{5, 20, 21}},
		{"first added above start", 0, []int64{7, 8}, []int64{8, 7}, []int64{7, 9}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTracker(tc.start)
			for _, o := range tc.add {
				if err := tr.Add(o); err != nil {
					t.Fatal(err)
				}
			}
			for i, o := range tc.acks {
				c, err := tr.Ack(o)
				if err != nil {
					t.Fatal(err)
				}
				if c != tc.commit[i] {
					t.Errorf("after ack %d: commit %d, want %d", o, c, tc.commit[i])
				}
			}
			if tr.InFlight() != 0 {
				t.Errorf("in flight %d", tr.InFlight())
			}
		})
	}
}

func TestTrackerErrors(t *testing.T) {
	tr := NewTracker(0)
	tr.Add(1)
	if err := tr.Add(1); err == nil {
		t.Error("duplicate add accepted")
	}
	if _, err := tr.Ack(5); err == nil {
		t.Error("ack of unknown offset accepted")
	}
	tr.Ack(1)
	if _, err := tr.Ack(1); err == nil {
		t.Error("double ack accepted")
	}
}

// TestTrackerConcurrentNeverCommitsPastUnacked acks 100,000 offsets from
// several goroutines in random order and checks that no commit point ever
// passes an offset that was not yet acknowledged.
func TestTrackerConcurrentNeverCommitsPastUnacked(t *testing.T) {
	const n = 100000
	tr := NewTracker(0)
	for i := int64(0); i < n; i++ {
		tr.Add(i)
	}
	acked := make([]bool, n)
	var mu sync.Mutex
	order := rand.Perm(n)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				o := int64(order[i])
				mu.Lock()
				acked[o] = true
				c, err := tr.Ack(o)
				if err != nil {
					t.Error(err)
				}
				for j := int64(0); j < c; j += 997 {
					if !acked[j] {
						t.Errorf("commit %d passes unacked offset %d", c, j)
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if c := tr.Committable(); c != n {
		t.Errorf("final commit %d, want %d", c, n)
	}
}
