package publish

import (
	"errors"
	"fmt"
	"time"
)

// drain is the drainer goroutine: while the spool holds records it sends
// them to Kafka in spool order, one round (about drain_batch_bytes) at a
// time, and commits a round only when Kafka acknowledged all of it. A failed
// round is rewound and sent again after a backoff, so within a key the order
// is kept, and a re-send carries the same record IDs. When the spool is
// empty it switches the publisher back to direct publishing.
func (p *Publisher) drain() {
	defer close(p.drainDone)
	base := p.cfg.Spool.RetryBackoff
	backoff := base
	failures := 0
	var outageStart time.Time
	for {
		if !p.sp.Unread() {
			// Everything read was committed (rounds are sequential), so
			// no unread data means an empty spool unless an Append just
			// landed — which the lock below orders against.
			p.mu.Lock()
			if p.spooling && p.sp.Empty() {
				p.setSpooling(false)
				p.log.Info("spool drained; publishing to Kafka directly again")
			}
			p.mu.Unlock()
			select {
			case <-p.wake:
				continue
			case <-p.stop:
				return
			}
		}

		n, err := p.drainRound()
		if err == nil {
			if failures > 0 {
				p.log.Info("Kafka is reachable again; draining the spool",
					"failed_rounds", failures, "outage", time.Since(outageStart).Round(time.Millisecond))
			}
			failures, backoff = 0, base
			p.m.drained.Add(float64(n))
			continue
		}
		if errors.Is(err, errSpoolClosed) || p.drainCtx.Err() != nil {
			return
		}
		p.sp.Rewind()
		if failures == 0 {
			outageStart = time.Now()
		}
		failures++
		if failures == 1 || p.logLimit.allow("drain", 30*time.Second) {
			p.log.Warn("cannot drain the spool yet; retrying", "error", err, "retry_in", backoff, "failed_rounds", failures)
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-p.stop:
			t.Stop()
			return
		}
		// Capped low: a failed round costs one refused connection, and a
		// long pause would only delay the drain once Kafka is back.
		backoff = min(backoff*2, 5*base)
	}
}

// drainRound sends one round of spooled records and commits it once all are
// acknowledged. It returns how many records it drained.
func (p *Publisher) drainRound() (int, error) {
	entries, end, err := p.sp.Read(p.cfg.Spool.DrainBatchBytes)
	if err != nil {
		return 0, fmt.Errorf("read spool: %w", err)
	}
	msgs := make([]outMsg, 0, len(entries))
	for _, e := range entries {
		m, err := decodePayload(e.payload)
		if err != nil {
			// The CRC matched, so these are the bytes that were written:
			// a payload this build cannot read (a newer version wrote
			// it). It cannot be sent; drop it loudly and count it.
			p.log.Error("spool: undecodable entry dropped", "error", err, "bytes", len(e.payload))
			p.m.spoolCut.WithLabelValues("corrupt").Add(float64(len(e.payload)))
			continue
		}
		msgs = append(msgs, m)
	}
	if len(msgs) > 0 {
		deadline := time.Now().Add(p.cfg.AckTimeout)
		t, err := p.send(p.drainCtx, msgs, deadline, "drain")
		switch {
		case err != nil && !mayBePermanent(err):
			return 0, err
		case err != nil:
			// WriteMessages failed before queueing anything, on the
			// metadata of a topic (unknown, not authorised): find out
			// which records it concerns, one at a time (refuse.go).
			if err := p.isolate(p.drainCtx, msgs); err != nil {
				return 0, err
			}
		default:
			werr := t.wait(p.drainCtx, deadline, p.stop)
			rest, pending := t.unacked()
			if len(rest) == 0 {
				break
			}
			if pending > 0 {
				p.m.failed.WithLabelValues(reasonAckTimeout).Add(float64(pending))
			}
			if pending == 0 && t.anyMayBePermanent() {
				// Every message completed and some batch was refused in
				// a way that may be for good: re-send the unacknowledged
				// ones alone, dead-lettering those refused alone. The
				// acknowledged ones are not sent again.
				left := make([]outMsg, len(rest))
				for i, idx := range rest {
					left[i] = msgs[idx]
				}
				if err := p.isolate(p.drainCtx, left); err != nil {
					return 0, err
				}
				break
			}
			cause := t.firstErr()
			if cause == nil {
				cause = werr
			}
			return 0, fmt.Errorf("%d of %d records not acknowledged: %w", len(rest), len(msgs), cause)
		}
	}
	if err := p.sp.Commit(end); err != nil {
		return 0, err
	}
	return len(msgs), nil
}
