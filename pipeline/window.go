package pipeline

import (
	"context"
	"sync"
)

// window bounds what one partition has in flight: messages read and not yet
// done, and their bytes. The partition's loop acquires room before it reads
// on; completions (from sink and Kafka callbacks) release it. This is the
// processor's own backpressure: however slow the sinks are, a partition holds
// at most maxN messages / maxBytes bytes in memory.
type window struct {
	mu       sync.Mutex
	n, bytes int64
	maxN     int64
	maxBytes int64
	// changed is closed and replaced on a release while someone waits,
	// waking every waiter (acquire and drain) to re-check; a broadcast
	// without sync.Cond, so a waiter can also select on its ctx. waiting
	// says whether anyone took changed since it was last replaced: with
	// nobody waiting (the common case) a release costs no new channel.
	changed  chan struct{}
	waiting  bool
	onChange func(deltaN int64)
}

func newWindow(maxN, maxBytes int64, onChange func(deltaN int64)) *window {
	return &window{maxN: maxN, maxBytes: maxBytes, changed: make(chan struct{}), onChange: onChange}
}

// acquire waits until there is room for a message of size bytes and takes
// it. A message larger than maxBytes is let through when nothing else is in
// flight, so it cannot wedge the partition.
func (w *window) acquire(ctx context.Context, size int64) error {
	for {
		w.mu.Lock()
		if w.n == 0 || (w.n < w.maxN && w.bytes+size <= w.maxBytes) {
			w.n++
			w.bytes += size
			w.mu.Unlock()
			if w.onChange != nil {
				w.onChange(1)
			}
			return nil
		}
		ch := w.changed
		w.waiting = true
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// release gives back the room of one message.
func (w *window) release(size int64) {
	w.mu.Lock()
	w.n--
	w.bytes -= size
	if w.waiting {
		close(w.changed)
		w.changed = make(chan struct{})
		w.waiting = false
	}
	w.mu.Unlock()
	if w.onChange != nil {
		w.onChange(-1)
	}
}

// drain waits until nothing is in flight or ctx ends; it reports whether the
// window emptied.
func (w *window) drain(ctx context.Context) bool {
	for {
		w.mu.Lock()
		if w.n == 0 {
			w.mu.Unlock()
			return true
		}
		ch := w.changed
		w.waiting = true
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return false
		case <-ch:
		}
	}
}

// inFlight returns the messages and bytes in flight.
func (w *window) inFlight() (n, bytes int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n, w.bytes
}
