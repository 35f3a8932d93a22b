package audittail

import (
	"context"

	"github.com/kubesift/kubesift/collector"
)

// Commit: each batch carries the position after it, which the committer
// stores only once the batch is durable, strictly in file order.

// sendPosition hands a batch of dead letters (possibly none) that commits the
// current offset.
func (f *follower) sendPosition(ctx context.Context, dls []collector.DeadLetter) bool {
	return f.send(ctx, &batch{dls: dls, pos: f.position(f.off)})
}

func (f *follower) position(off int64) Position {
	if want := int(min(off, headMax)); f.headLen < want {
		// The bytes before the position never change in an append-only
		// file: fingerprint them once (up to 1 KiB, in the first batches).
		buf := make([]byte, want)
		if n, _ := f.f.ReadAt(buf, 0); n == want {
			f.headLen, f.headHash = want, fnv64(buf)
		}
	}
	p := Position{Inode: f.ino, Offset: off, HeadLen: f.headLen, HeadHash: f.headHash}
	if f.lineKnown {
		p.Line = f.line
	}
	return p
}

func (f *follower) send(ctx context.Context, b *batch) bool {
	select {
	case f.out <- b:
		return true
	case <-ctx.Done():
		return false
	}
}

func (f *follower) updateLag() {
	f.t.m.lag.WithLabelValues(f.path).Set(float64(max(f.size.Load()-f.committed.Load(), 0)))
}

// publishDepth is how many batches of one file the committer keeps in
// flight when the publisher can pipeline (collector.Pipeliner): each Publish
// waits for Kafka's acknowledgement (a batch timeout plus a produce round
// trip), so one batch at a time leaves the tail idle most of the time.
const publishDepth = 3

// commitLoop is the committer goroutine: publish each batch, then commit its
// position, strictly in file order. When ctx ends it stops without
// committing what is not durable.
func (f *follower) commitLoop(ctx context.Context) {
	pl, ok := f.t.pub.(collector.Pipeliner)
	if !ok {
		for b := range f.out {
			if !f.publish(ctx, b) {
				for range f.out { // the reader is stopping; drop, do not commit
				}
				return
			}
			f.commit(b)
		}
		return
	}
	// Pipelined: up to publishDepth batches begun, committed oldest first.
	// Each begun batch has one goroutine waiting for its outcome (so the
	// loop can wait for the oldest and for new batches at once): at most
	// publishDepth per file, never one per record.
	type inflight struct {
		b    *batch
		done chan struct{}
		err  error
	}
	var fifo []*inflight
	// finish commits the oldest batch, which is done; false when ctx
	// ended before it was durable.
	finish := func() bool {
		j := fifo[0]
		fifo = fifo[1:]
		if j.err != nil {
			// Not durable (the spool full, …): publish it again the
			// ordinary way, retrying until it is or ctx ends.
			if !f.publishRecords(ctx, j.b) {
				return false
			}
		}
		f.commit(j.b)
		return true
	}
	stop := func() {
		for _, j := range fifo {
			<-j.done // ends: acknowledged, spooled, or ctx's end
		}
		for range f.out { // the reader is stopping; drop, do not commit
		}
	}
	for {
		var b *batch
		more := true
		switch {
		case len(fifo) == 0:
			b, more = <-f.out
		case len(fifo) >= publishDepth:
			<-fifo[0].done
		default:
			select {
			case b, more = <-f.out:
			case <-fifo[0].done:
			}
		}
		if b == nil && more { // the oldest is done
			if !finish() {
				stop()
				return
			}
			continue
		}
		if !more {
			for len(fifo) > 0 {
				<-fifo[0].done
				if !finish() {
					stop()
					return
				}
			}
			return
		}
		if !f.publishDeadLetters(ctx, b) {
			stop()
			return
		}
		j := &inflight{b: b, done: make(chan struct{})}
		if len(b.recs) == 0 {
			close(j.done)
		} else {
			wait := pl.Begin(ctx, b.recs)
			go func() {
				j.err = wait(ctx)
				close(j.done)
			}()
		}
		fifo = append(fifo, j)
	}
}

// commit records b's position as durable.
func (f *follower) commit(b *batch) {
	f.t.positions.set(f.path, b.pos)
	f.committed.Store(b.pos.Offset)
	f.updateLag()
}
