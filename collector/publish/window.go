package publish

import (
	"context"
	"errors"
	"sync"
	"time"
)

// errWindowTimeout: no room in the in-flight window before the deadline.
var errWindowTimeout = errors.New("in-flight window full until the ack deadline")

// errAborted: Close gave up waiting.
var errAborted = errors.New("publisher closing")

// window bounds the bytes handed to the Kafka writer and not yet completed.
// kafka-go's Writer queues without limit, so this is what keeps memory
// bounded while Kafka is slow: Publish waits here (up to its ack deadline,
// then spools instead), it never queues more.
//
// Room is returned only by the writer's Completion callback, not when a
// Publish stops waiting: a message the writer still holds still takes
// memory, whether or not anyone waits for it.
type window struct {
	mu      sync.Mutex
	used    int64
	max     int64
	changed chan struct{} // closed and replaced on every release
	onUse   func(int64)
}

func newWindow(max int64, onUse func(int64)) *window {
	return &window{max: max, changed: make(chan struct{}), onUse: onUse}
}

// acquire takes n bytes, waiting until there is room, the deadline passes,
// ctx ends or abort is closed. A request larger than the whole window is
// granted when the window is empty, so it cannot wait forever.
func (w *window) acquire(ctx context.Context, n int64, deadline time.Time, abort <-chan struct{}) error {
	var timer *time.Timer
	for {
		w.mu.Lock()
		if w.used == 0 || w.used+n <= w.max {
			w.used += n
			w.onUse(w.used)
			w.mu.Unlock()
			if timer != nil {
				timer.Stop()
			}
			return nil
		}
		ch := w.changed
		w.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(time.Until(deadline))
			defer timer.Stop()
		}
		select {
		case <-ch:
		case <-timer.C:
			return errWindowTimeout
		case <-ctx.Done():
			return ctx.Err()
		case <-abort:
			return errAborted
		}
	}
}

// release returns n bytes and wakes every waiter (they re-check).
func (w *window) release(n int64) {
	w.mu.Lock()
	w.used -= n
	w.onUse(w.used)
	close(w.changed)
	w.changed = make(chan struct{})
	w.mu.Unlock()
}
