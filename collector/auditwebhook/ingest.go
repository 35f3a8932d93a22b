package auditwebhook

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/record"
)

// A body is decoded item by item (record.NewBodyDecoder) and published in
// sub-batches, so what is held decoded at once is one sub-batch, not the
// body: a 32 MiB EventList of 100,000 small events would otherwise be
// 100,000 records in memory beside its raw bytes. The bounds are in
// records and in bytes because both tiny and huge events come in bodies of
// the same size.
const (
	subBatchRecords = 2000
	subBatchBytes   = 4 << 20
	// Dead letters are carried in fewer, larger batches: a body of garbage
	// items should cost a few Kafka round trips, not one per sub-batch.
	deadLetterBatch      = 20000
	deadLetterBatchBytes = 8 << 20
)

// ingest decodes body, redacts its records and makes them and the dead
// letters of its bad items durable. nil means everything of the body is
// durable and the request may be acknowledged; on an error some of it may
// already be published, and the API server's retry of the whole batch is
// deduplicated by record ID. what says which publish failed.
func (r *Receiver) ingest(ctx context.Context, body []byte, remote string) (what string, err error) {
	d := record.NewBodyDecoder(body, Source, record.DecodeOptions{
		Cluster: r.cluster, Now: r.now, MaxDocBytes: int(r.cfg.MaxBodyBytes) + 1,
	})
	var (
		recs              = make([]*record.Record, 0, 64)
		recBytes, dlBytes int
		dls               []collector.DeadLetter
		run               badRun
		bad               int   // bad documents and items
		firstBad          error // the first of them, for the log
	)
	// Counted and logged once per body, not per item: a body of 100,000
	// garbage items would otherwise take the metric's and the log limiter's
	// locks 100,000 times, against every other request.
	defer func() {
		if bad > 0 {
			r.m.rejected.WithLabelValues(collector.ReasonMalformed).Add(float64(bad))
			r.logLimit.Warn(r.log, "malformed", "audit webhook: documents rejected, sent to the dead-letter topic",
				"remote", remote, "count", bad, "reason", reasonOf(firstBad), "first", firstBad)
		}
	}()
	addDL := func(dl collector.DeadLetter) {
		dls, dlBytes = append(dls, dl), dlBytes+len(dl.Data)+len(dl.Error)
	}
	for {
		rec, err := d.Next()
		if err == io.EOF {
			break
		}
		var de *record.DecodeError
		switch {
		case errors.As(err, &de) && de.Item != nil:
			if bad++; firstBad == nil {
				firstBad = err
			}
			if !run.fits(de.Item, r.deadMax) {
				addDL(r.runDeadLetter(&run, remote))
			}
			run.add(de)
			continue // a run of bad items is one dead letter
		case err != nil:
			if bad++; firstBad == nil {
				firstBad = err
			}
			addDL(r.deadLetter(body, remote, reasonOf(err), err.Error()))
		default:
			if run.n > 0 {
				addDL(r.runDeadLetter(&run, remote))
			}
			if err := r.san.Apply(rec); err != nil {
				r.logLimit.Warn(r.log, "redaction", "audit webhook: record could not be redacted; sent to the dead-letter topic instead", "id", rec.ID, "err", err)
				addDL(r.deadLetter(rec.Object, remote, collector.ReasonRedaction, err.Error()))
			} else {
				r.m.received.Inc()
				recs, recBytes = append(recs, rec), recBytes+len(rec.Object)
			}
		}
		if len(dls) >= deadLetterBatch || dlBytes >= deadLetterBatchBytes {
			if err := r.publishDeadLetters(ctx, dls); err != nil {
				return "dead letter", err
			}
			dls, dlBytes = nil, 0
		}
		if len(recs) >= subBatchRecords || recBytes >= subBatchBytes {
			if err := r.pub.Publish(ctx, recs); err != nil {
				return "batch", err
			}
			clear(recs)
			recs, recBytes = recs[:0], 0
		}
	}
	if run.n > 0 {
		addDL(r.runDeadLetter(&run, remote))
	}
	if err := r.publishDeadLetters(ctx, dls); err != nil {
		return "dead letter", err
	}
	if len(recs) > 0 {
		if err := r.pub.Publish(ctx, recs); err != nil {
			return "batch", err
		}
	}
	return "", nil
}

func (r *Receiver) publishDeadLetters(ctx context.Context, dls []collector.DeadLetter) error {
	if len(dls) == 0 {
		return nil
	}
	if err := r.pub.PublishDeadLetters(ctx, dls); err != nil {
		return err
	}
	for _, dl := range dls {
		r.m.deadLetters.WithLabelValues(dl.Reason).Inc()
	}
	return nil
}

// badRun is a stretch of consecutive bad list items, kept as one dead letter
// (a JSON array of the items, at most dead_letter_max_bytes): a body of
// 100,000 garbage items becomes a few dozen dead letters that hold every
// item, instead of 100,000 Kafka messages that take the dead-letter topic
// most of a minute to absorb while the body holds a max_in_flight slot.
// A good item ends the run, so a bad item among good ones stays a dead
// letter of its own.
type badRun struct {
	items [][]byte
	bytes int
	n     int
	first *record.DecodeError
}

// fits reports whether item can join the run within limit bytes; an empty
// run takes any item (the sanitizer cuts what is over the limit).
func (b *badRun) fits(item []byte, limit int) bool {
	return b.n == 0 || b.bytes+len(item)+2 <= limit
}

func (b *badRun) add(de *record.DecodeError) {
	if b.n == 0 {
		b.first = de
	}
	b.items = append(b.items, de.Item)
	b.bytes += len(de.Item) + 1
	b.n++
}

// runDeadLetter makes the run one dead letter and empties it.
func (r *Receiver) runDeadLetter(b *badRun, remote string) collector.DeadLetter {
	data, msg := b.items[0], b.first.Error()
	if b.n > 1 {
		data = make([]byte, 0, b.bytes+2)
		data = append(data, '[')
		for i, it := range b.items {
			if i > 0 {
				data = append(data, ',')
			}
			data = append(data, it...)
		}
		data = append(data, ']')
		msg = fmt.Sprintf("%d consecutive bad items, kept as a JSON array; the first: %s", b.n, msg)
	}
	dl := r.deadLetter(data, remote, b.first.Reason(), msg)
	clear(b.items)
	*b = badRun{items: b.items[:0]}
	return dl
}

func reasonOf(err error) string {
	var de *record.DecodeError
	if errors.As(err, &de) {
		return de.Reason()
	}
	return "other"
}
