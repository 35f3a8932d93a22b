package pipeline

import (
	"context"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/testenv"
)

// hasWaiter reports whether an acquire or drain is waiting on w.
func (w *window) hasWaiter() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.waiting
}

// TestWindowWakesWaiters: a release wakes an acquire waiting for room and a
// drain waiting for the window to empty, however many releases happened
// while nobody waited (those replace no channel).
func TestWindowWakesWaiters(t *testing.T) {
	for _, tc := range []struct {
		name       string
		maxN       int64
		maxBytes   int64
		sizes      []int64 // acquired before waiting
		idleCycles int     // acquire+release pairs with nobody waiting first
	}{
		{"full by count", 2, 1 << 20, []int64{1, 1}, 0},
		{"full by bytes", 100, 10, []int64{6, 4}, 0},
		{"after idle releases", 2, 1 << 20, []int64{1, 1}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWindow(tc.maxN, tc.maxBytes, nil)
			ctx := context.Background()
			for range tc.idleCycles {
				if err := w.acquire(ctx, 1); err != nil {
					t.Fatal(err)
				}
				w.release(1)
			}
			for _, sz := range tc.sizes {
				if err := w.acquire(ctx, sz); err != nil {
					t.Fatal(err)
				}
			}
			got := make(chan error, 1)
			go func() { got <- w.acquire(ctx, 1) }()
			testenv.WaitFor(t, "acquire waiting for room", 30*time.Second, w.hasWaiter)
			select {
			case err := <-got:
				t.Fatalf("acquire on a full window returned %v", err)
			default:
			}
			w.release(tc.sizes[0])
			select {
			case err := <-got:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("release did not wake the waiting acquire")
			}
			drained := make(chan bool, 1)
			go func() {
				dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				drained <- w.drain(dctx)
			}()
			testenv.WaitFor(t, "drain waiting for the window to empty", 30*time.Second, w.hasWaiter)
			for _, sz := range append(tc.sizes[1:], 1) {
				w.release(sz)
			}
			if !<-drained {
				t.Fatal("drain did not see the window empty")
			}
			if n, b := w.inFlight(); n != 0 || b != 0 {
				t.Fatalf("in flight %d messages, %d bytes after releasing all", n, b)
			}
		})
	}
}

// TestWindowAcquireCancelled: a waiting acquire returns when its ctx ends.
func TestWindowAcquireCancelled(t *testing.T) {
	w := newWindow(1, 1<<20, nil)
	if err := w.acquire(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := w.acquire(ctx, 1); err == nil {
		t.Fatal("acquire on a full window succeeded")
	}
}
