package auditwebhook

import (
	"context"
	"errors"
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
	)
	for {
		rec, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			dl := r.decodeDeadLetter(body, err, remote)
			dls, dlBytes = append(dls, dl), dlBytes+len(dl.Data)+len(dl.Error)
		} else if err := r.san.Apply(rec); err != nil {
			r.logLimit.Warn(r.log, "redaction", "audit webhook: record could not be redacted; sent to the dead-letter topic instead", "id", rec.ID, "err", err)
			dl := r.deadLetter(rec.Object, remote, "redaction", err.Error())
			dls, dlBytes = append(dls, dl), dlBytes+len(dl.Data)+len(dl.Error)
		} else {
			r.m.received.Inc()
			recs, recBytes = append(recs, rec), recBytes+len(rec.Object)
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

// decodeDeadLetter turns a decode error into a dead letter: the bad item
// itself for an item of an EventList (or a JSON array), else the head of
// the body (the body is not JSON, not a list, …).
func (r *Receiver) decodeDeadLetter(body []byte, err error, remote string) collector.DeadLetter {
	var de *record.DecodeError
	reason, data := "other", body
	if errors.As(err, &de) {
		reason = de.Reason()
		if de.Item != nil {
			data = de.Item
		}
	}
	r.m.rejected.WithLabelValues("malformed").Inc()
	r.logLimit.Warn(r.log, "malformed", "audit webhook: document rejected, sent to the dead-letter topic", "remote", remote, "reason", reason, "err", err)
	return r.deadLetter(data, remote, reason, err.Error())
}
