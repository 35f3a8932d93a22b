package publish

import (
	"errors"
	"fmt"
	"time"
)

// drain is the drainer goroutine: while the spool holds records it sends
// them to Kafka in spool order, one round (about drain_batch_bytes) at a
// time, and commits a round when Kafka acknowledged all of it. A failed
// round is rewound to its first record not acknowledged and sent again from
// there after a backoff, so within a key the order is kept, and a re-send
// carries the same record IDs. When the spool is
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
		p.m.drained.Add(float64(n))
		if err == nil {
			if failures > 0 {
				p.log.Info("Kafka is reachable again; draining the spool",
					"failed_rounds", failures, "outage", time.Since(outageStart).Round(time.Millisecond))
			}
			failures, backoff = 0, base
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
// acknowledged. It returns how many records it drained (committed): on an
// error, the records before the first one not done with are committed, so
// that a round that keeps failing on one record (its topic missing, for
// hours) does not send the records before it again on every retry.
//
// The round goes out in parts that each fit one produce batch, one part at
// a time, and the first part that fails ends the round: kafka-go sends the
// batches of one partition one after the other whatever became of the one
// before, so if a later batch went through after an earlier one failed, the
// re-sent round would put the earlier records behind the later ones and
// break the order of a key. A part of at most batch_size records and
// batch_bytes is one batch for every partition it touches (wireSize is
// never less than kafka-go's own measure of a message, and one
// WriteMessages call queues a partition's share under one lock, so the
// batch timer cannot cut it), so nothing of a partition is sent after a
// failure of that partition. The price is one round trip per part instead
// of one per round. TestPartIsOneKafkaGoBatch guards the premise and
// TestDrainKeepsKeyOrderWhenABatchFails the order.
func (p *Publisher) drainRound() (int, error) {
	entries, end, err := p.sp.Read(p.cfg.Spool.DrainBatchBytes)
	if err != nil {
		return 0, fmt.Errorf("read spool: %w", err)
	}
	msgs := make([]outMsg, 0, len(entries))
	ends := make([]spoolPos, 0, len(entries)) // ends[i]: the spool position past msgs[i]
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
		ends = append(ends, e.end)
	}
	for start := 0; start < len(msgs); {
		n := partLen(msgs[start:], p.cfg.BatchSize, p.cfg.BatchBytes)
		done, err := p.drainPart(msgs[start : start+n])
		if err != nil {
			if start > 0 {
				err = fmt.Errorf("after %d of %d records of the round: %w", start, len(msgs), err)
			}
			if done += start; done > 0 {
				if cerr := p.sp.Commit(ends[done-1]); cerr != nil {
					return 0, errors.Join(err, cerr)
				}
			}
			return done, err
		}
		start += n
	}
	// Only now: a crash before this line re-sends the whole round, and the
	// parts already acknowledged come twice, with the same record IDs.
	if err := p.sp.Commit(end); err != nil {
		return 0, err
	}
	return len(msgs), nil
}

// partLen is how many of msgs (at least one) fit one produce batch: at most
// batchSize records and batchBytes of wireSize. Every spooled record fits
// alone: Publish refuses larger ones, and dead letters are cut to fit.
func partLen(msgs []outMsg, batchSize int, batchBytes int64) int {
	var bytes int64
	for i := range msgs {
		bytes += msgs[i].wireSize()
		if i > 0 && (i >= batchSize || bytes > batchBytes) {
			return i
		}
	}
	return len(msgs)
}

// drainPart sends one part of a round (partLen) with the drain writer and
// waits until every record is acknowledged, dead-lettered as refused for
// good, or the part failed. It returns how many of msgs, from the first,
// are done with: all of them, or on an error the ones isolate finished.
func (p *Publisher) drainPart(msgs []outMsg) (int, error) {
	deadline := time.Now().Add(p.cfg.AckTimeout)
	t, err := p.send(p.drainCtx, p.drainW, msgs, deadline, "drain")
	switch {
	case err != nil && !mayBePermanent(err):
		return 0, err
	case err != nil:
		// WriteMessages failed before queueing anything, on the metadata
		// of a topic (unknown, not authorised): find out which records it
		// concerns, one at a time (refuse.go).
		return p.isolate(p.drainCtx, msgs)
	}
	werr := t.wait(p.drainCtx, deadline, p.stop)
	rest, pending := t.unacked()
	if len(rest) == 0 {
		p.markTopicsFound(msgs)
		return len(msgs), nil
	}
	if pending > 0 {
		p.m.failed.WithLabelValues(reasonAckTimeout).Add(float64(pending))
	}
	if pending == 0 && t.anyMayBePermanent() {
		// Every message completed and some batch was refused in a way
		// that may be for good: re-send the unacknowledged ones alone,
		// dead-lettering those refused alone. The acknowledged ones are
		// not sent again; they are in other partitions than the refused
		// batch (one batch per partition), so no order is lost.
		left := make([]outMsg, len(rest))
		for i, idx := range rest {
			left[i] = msgs[idx]
		}
		n, err := p.isolate(p.drainCtx, left)
		if err == nil {
			return len(msgs), nil
		}
		return donePrefix(len(msgs), rest, n), err
	}
	cause := t.firstErr()
	if cause == nil {
		cause = werr
	}
	return 0, fmt.Errorf("%d of %d records not acknowledged: %w", len(rest), len(msgs), cause)
}

// donePrefix is how many of a part's total records, from the first, are
// done with when the ones at the indexes in rest (ascending) were not
// acknowledged and isolate finished the first n of those: an acknowledged
// record is done, an unacknowledged one only if isolate finished it.
func donePrefix(total int, rest []int, n int) int {
	done, j := 0, 0
	for done < total {
		if j < len(rest) && rest[j] == done {
			if j >= n {
				break
			}
			j++
		}
		done++
	}
	return done
}
