package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/rules/posture"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/ecs"
)

// kindFinding is the HeaderDLQKind of a finding the store refused: the
// value is the Decision in JSON.
const kindFinding = "finding"

// hold is what the transitions of one change report to: a live message's
// pending, or a rebuild's batchHold.
type hold interface {
	add()
	finish(ok bool)
}

// handleLive applies one live message of the objects topic. The engine
// call is synchronous, in partition order; what it decided finishes in
// callbacks, and the offset is acknowledged when all of it is done.
func (c *PostureConsumer) handleLive(ctx, work context.Context, part *partition, ps *partState, m kafka.Message) {
	size := int64(len(m.Key) + len(m.Value))
	if err := part.win.acquire(ctx, size); err != nil {
		return // generation over: not applied, the next owner rebuilds
	}
	if err := part.tracker.Add(m.Offset); err != nil {
		part.win.release(size)
		c.log.Error("offset tracker", "partition", part.id, "err", err)
		return
	}
	pm := &pending{part: part, msg: m, offset: m.Offset, size: size, log: c.log}
	pm.parts.Store(1)
	defer pm.finish(true)
	bad := func(stage string, err error) {
		c.m.objects.WithLabelValues(resultInvalid).Inc()
		c.deadLetter(work, pm, deadLetter{orig: m, kind: kindRecord, value: m.Value, stage: stage, reason: stage, err: err.Error()})
	}
	lc, err := decodeLive(m)
	if err != nil {
		bad(StageDecode, err)
		return
	}
	cl := lc.change.Cluster
	if c.restore(ctx, ps, cl) != nil {
		pm.lost.Store(true) // generation over before the states were read: the next owner rebuilds
		return
	}
	var ds []posture.Decision
	if lc.object == nil {
		ds = c.o.Engine.Delete(cl, lc.change.Kind, lc.change.Namespace, lc.change.Name)
		c.m.objects.WithLabelValues(resultDeleted).Inc()
	} else {
		if ds, err = c.o.Engine.Apply(cl, *lc.object); err != nil {
			bad(StageDocument, err)
			return
		}
		c.m.objects.WithLabelValues(resultApplied).Inc()
	}
	if len(ds) > 0 {
		ps.dirty[cl] = true
	}
	c.emitLive(ctx, work, pm, part, m, ds, lc.change.ObservedAt, &lc.change, lc.initial)
}

// liveChange is one live message of the objects topic, decoded: the
// change it reports, and the object's new version (nil for a tombstone).
type liveChange struct {
	change  ActorChange
	object  *posture.Object
	initial bool // record.Record.InitialList
}

// decodeLive reads an object record or a tombstone. A tombstone's
// resourceVersion is the last one seen, from its id, and its observation
// time the message's; an object record's is its own (observedAt).
func decodeLive(m kafka.Message) (*liveChange, error) {
	if m.Value == nil {
		rec, err := record.ParseTombstone(m.Key, recordHeaders(m.Headers))
		if err != nil {
			return nil, fmt.Errorf("tombstone at offset %d: %w", m.Offset, err)
		}
		cl, kind, ns, name, _ := record.ParseObjectKey(rec.Key) // ParseTombstone checked the key
		_, rv, _ := strings.Cut(rec.ID, ":")
		return &liveChange{change: ActorChange{Cluster: cl, Kind: kind, Namespace: ns, Name: name, ResourceVersion: rv,
			Deleted: true, ObservedAt: m.Time}}, nil
	}
	o, rec, err := objectOf(m)
	if err != nil {
		return nil, fmt.Errorf("object record at offset %d: %w", m.Offset, err)
	}
	return &liveChange{change: ActorChange{Cluster: rec.Cluster.Name, Kind: o.Kind, Namespace: o.Namespace, Name: o.Name,
		ResourceVersion: o.ResourceVersion, ObservedAt: o.Observed}, object: &o, initial: rec.InitialList}, nil
}

// observedAt is when the collector observed the object's version (the
// record's observed time), else when the message was produced. The record's
// time is the change's, whoever replays it and however long it waited in a
// spool, so every store and every replay of one change stamps its findings
// and alerts alike.
func observedAt(rec *record.Record, m kafka.Message) time.Time {
	if !rec.ObservedTime.IsZero() {
		return rec.ObservedTime
	}
	return m.Time
}

// recordHeaders converts kafka-go headers for record.ParseTombstone.
func recordHeaders(hs []kafka.Header) []record.Header {
	out := make([]record.Header, len(hs))
	for i, h := range hs {
		out[i] = record.Header{Key: h.Key, Value: h.Value}
	}
	return out
}

// emit writes the transitions ds, caused by a change observed at at (zero
// for a rebuild: transitionTime), under
// h. A transition that raises an alert is written to the findings index
// only once Kafka acknowledged its alert (PostureConsumer's contract).
func (c *PostureConsumer) emit(ctx context.Context, h hold, part *partition, orig kafka.Message, ds []posture.Decision, at time.Time) {
	var plain []ecs.Finding
	for _, d := range ds {
		c.m.transitions.WithLabelValues(string(d.State)).Inc()
		at := transitionTime(&d, at)
		f := ecs.Finding{Decision: d, At: at}
		if !c.alerts(&d) {
			plain = append(plain, f)
			continue
		}
		a := postureAlert(&d, at)
		value, err := json.Marshal(a)
		if err != nil { // plain data; a bug if it happens
			c.log.Error("posture alert: encode", "id", a.ID, "err", err)
			plain = append(plain, f)
			continue
		}
		c.alertDocument(ctx, h, orig, a, value)
		h.add()
		err = c.prod.Produce(ctx, kindAlert, alertMessage(c.o.Kafka.Topics.Alerts, a, value), func(err error) {
			if err == nil {
				c.m.alerts.Inc()
				// Off the producer's completion goroutine: Write blocks while
				// the store's queue is full, and the store's own callbacks
				// may be waiting on this producer for a dead letter. The
				// partition's window bounds how many run at once.
				h.add()
				go func() {
					c.writeFindings(c.life, h, orig, []ecs.Finding{f})
					h.finish(true)
				}()
			}
			h.finish(err == nil)
		})
		if err != nil {
			h.finish(false)
			return
		}
	}
	c.writeFindings(ctx, h, orig, plain)
}

// transitionTime is when transition d happened: at, the observation of
// the change that caused it, when there was one; for a rebuild (zero at) an
// opening's own OpenedAt — the observation of the object version that made
// it fail, the same in every store and every rebuild — and otherwise now (a
// finding resolved because its object went while no process watched).
func transitionTime(d *posture.Decision, at time.Time) time.Time {
	switch {
	case !at.IsZero():
		return at
	case d.Open() && !d.OpenedAt.IsZero():
		return d.OpenedAt
	}
	return time.Now()
}

// alerts reports whether d raises an alert: newly failing, at or above
// processor.posture.alert_severity.
func (c *PostureConsumer) alerts(d *posture.Decision) bool {
	return d.State != posture.StateResolved && d.Severity >= c.minSev
}

// writeFindings hands fs to the findings writer under h; a finding the
// store refuses for good is dead-lettered before its part finishes. They
// are handed one at a time so that, when Write fails (ctx ended, writer
// closed), exactly the findings already handed have their done to come.
func (c *PostureConsumer) writeFindings(ctx context.Context, h hold, orig kafka.Message, fs []ecs.Finding) {
	done := func(f *ecs.Finding, r sink.Result) {
		switch r.Status {
		case sink.Indexed, sink.Duplicate:
			h.finish(true)
		case sink.Rejected:
			value, _ := json.Marshal(f.Decision)
			c.deadLetter(c.life, h, deadLetter{orig: orig, kind: kindFinding, value: value,
				stage: StageIndex, reason: reasonType(r.Reason), err: fmt.Sprintf("finding %s: %s", f.ID, r.Reason)})
			h.finish(true)
		default:
			h.finish(false)
		}
	}
	for i := range fs {
		h.add()
		if err := c.o.Findings.Write(ctx, fs[i:i+1], done); err != nil {
			// This finding and those after it are not written: the
			// message stays unacknowledged.
			h.finish(false)
			return
		}
	}
}

// alertDocument writes the alert's document to the store, as the record
// processor does for rule alerts.
func (c *PostureConsumer) alertDocument(ctx context.Context, h hold, orig kafka.Message, a *rules.Alert, value []byte) {
	doc, err := c.o.Documents.Alert(a)
	if err != nil {
		c.deadLetter(ctx, h, deadLetter{orig: orig, kind: kindAlert, value: value, stage: StageDocument, reason: StageDocument,
			err: fmt.Sprintf("alert %s: %v", a.ID, err)})
		return
	}
	h.add()
	err = c.o.Writer.Add(ctx, doc, func(r sink.Result) {
		if r.Status == sink.Rejected {
			c.deadLetter(c.life, h, deadLetter{orig: orig, kind: kindAlert, value: value, stage: StageIndex,
				reason: reasonType(r.Reason), err: fmt.Sprintf("alert %s: %s", a.ID, r.Reason)})
		}
		h.finish(r.Status == sink.Indexed || r.Status == sink.Duplicate || r.Status == sink.Rejected)
	})
	if err != nil {
		h.finish(false)
	}
}

// postureAlert is the alert of a newly failing finding, in the shape of
// rule alerts so that the notifier routes, groups and silences it like
// any: rule_id is the check id. Its id is the transition's, so a replayed
// transition raises the same alert id (deduplicated by the alerts index
// and the notifier). The CIS items are tags ("cis:5.2.2"), the object is
// namespace/resource/name, and the remediation closes the message. The
// actor, when known, is the alert's user, verb, user agent, source IP and
// audit id; a pre-existing finding is tagged "pre-existing".
func postureAlert(d *posture.Decision, at time.Time) *rules.Alert {
	tags := []string{"posture"}
	for _, id := range d.CIS {
		tags = append(tags, "cis:"+id)
	}
	if d.Actor != nil && d.Actor.PreExisting {
		tags = append(tags, "pre-existing")
	}
	msg := d.Message
	if d.Remediation != "" {
		msg = strings.TrimSpace(msg + " Remediation: " + d.Remediation)
	}
	a := &rules.Alert{
		ID: ecs.TransitionID(d), RuleID: d.CheckID, Title: d.Title, Severity: d.Severity, Mitre: d.Mitre, Tags: tags,
		RecordID: record.ObjectRecordID(d.Object.UID, d.ResourceVersion), Source: record.SourceObject,
		Cluster: d.Cluster, Time: at.UTC(), Message: msg,
		Namespace: d.Object.Namespace, Resource: strings.ToLower(d.Object.Kind), Name: d.Object.Name,
	}
	if act := d.Actor; act != nil {
		a.User, a.Verb, a.UserAgent, a.SourceIP, a.AuditID = act.User, act.Verb, act.UserAgent, act.SourceIP, act.AuditID
	}
	return a
}

// deadLetter writes dl to the dead-letter topic under h.
func (c *PostureConsumer) deadLetter(ctx context.Context, h hold, dl deadLetter) {
	h.add()
	err := c.prod.Produce(ctx, kindDLQ, dl.message(c.o.Kafka.Topics.DLQ, c.pc.Produce.BatchBytes), func(err error) {
		if err == nil {
			c.m.deadLetters.WithLabelValues(dl.stage).Inc()
		}
		h.finish(err == nil)
	})
	if err != nil {
		h.finish(false)
		return
	}
	c.lim.Warn(c.log, "dlq/"+dl.stage, "message sent to the dead-letter topic", "stage", dl.stage, "reason", dl.reason,
		"partition", dl.orig.Partition, "offset", dl.orig.Offset, "err", dl.err)
}

// writeScores exports and indexes the score of every cluster that changed
// since its last score (all of the partition's clusters when all is set).
// Scores are snapshots: one lost is replaced by the next, so they are not
// part of any message's acknowledgement.
func (c *PostureConsumer) writeScores(ctx context.Context, ps *partState, all bool) {
	now := time.Now()
	for cl := range ps.clusters {
		if !all && !ps.dirty[cl] {
			continue
		}
		delete(ps.dirty, cl)
		total, byNS := c.o.Engine.Score(cl)
		// Dropped and set again, so a namespace that is gone loses its series.
		c.m.score.DeletePartialMatch(prometheus.Labels{"cluster": cl})
		c.m.score.WithLabelValues(cl, "").Set(total.Percent)
		for ns, s := range byNS {
			c.m.score.WithLabelValues(cl, ns).Set(s.Percent)
		}
		err := c.o.Findings.WriteScores(ctx, cl, total, byNS, now, func(r sink.Result) {
			if r.Status == sink.Rejected {
				c.lim.Warn(c.log, "score", "posture score refused by the store", "cluster", cl, "reason", r.Reason)
			}
		})
		if err != nil {
			return
		}
	}
}
