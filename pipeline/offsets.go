// Package pipeline holds the loops between Kafka and the sinks: the processor
// (Processor: consume records, evaluate rules, index, hand alerts on) and the
// notifier's consumer (NotifyConsumer: read the alerts topic, hand each alert
// to a sink/notify Dispatcher, which routes, groups, mutes and delivers it).
// It is a room of its own because it is neither a source (collector) nor a
// destination (sink): it owns consumption and the commit of Kafka offsets,
// and it sits above both, so it may import sink and collector while
// neither imports it.
//
// # Building
//
// Each command builds these loops in one place, so `kubesift process`,
// `kubesift notify` and the all-in-one `kubesift run` cannot drift:
// NewProcessor (build.go) builds the rules engine, the documents, the
// Elasticsearch writer (or takes the command's store, and optional wrappers
// that observe what is written and raised) and registers the rules metrics;
// NewNotifier (notifier.go) builds the receivers, the dispatcher, the
// silences and their API, the delivery states and the alerts consumer with
// its dead-letter writer. Both are run by adding them to an
// internal/lifecycle Group (BuiltProcessor.Add adds the rule-file watcher
// too). WaitDrained (drain.go) tells, from the broker's committed offsets,
// when both consumer groups have taken everything; LagMonitor (lag.go)
// exports each group's lag from the same answers; SaveDeadLetters
// (deadletters.go) copies a dead-letter topic to an NDJSON file.
// NewProcessor also builds the posture consumer (PostureConsumer) when
// processor.posture.enabled: a consumer group of its own on the objects
// topic, which is partitioned by cluster so that each member holds whole
// clusters — the inventory that cross-object checks need. It rebuilds its
// clusters from the compacted topic and the findings state index on every
// assignment, then applies live changes (posture.go).
//
// # Offsets
//
// A consumer hands records of one partition to sinks that acknowledge them
// out of order (bulk requests complete in any order, retries reorder). Kafka
// offsets, however, say "everything before this is done". Tracker keeps, per
// partition, the offsets handed out and the ones acknowledged, and exposes the
// highest offset below which every record has been acknowledged — the only
// offset it is safe to commit. A crash then re-delivers at most the records
// after it, and since every record has a deterministic id the sinks turn that
// re-delivery into no duplicate.
package pipeline

import (
	"fmt"
	"sort"
	"sync"
)

// Tracker tracks in-flight offsets of one partition. It is safe for
// concurrent use: the consumer calls Add, sink completions call Ack.
//
// Offsets are kept in the order they were added (Kafka delivers a partition
// in order), each with an acknowledged flag; acknowledged entries at the front
// are dropped, and the commit point is the first entry still waiting — or,
// with none waiting, one past the last offset handed out. Gaps in the offsets
// (compaction, transaction markers) need no special case.
type Tracker struct {
	mu      sync.Mutex
	entries []entry // in increasing offset order
	head    int     // entries[:head] are acknowledged and dropped
	next    int64   // commit point when nothing is in flight
}

type entry struct {
	offset int64
	acked  bool
}

// NewTracker returns a Tracker for a partition whose consumption starts at
// offset start (the committed offset the group resumed from).
func NewTracker(start int64) *Tracker { return &Tracker{next: start} }

// Add records that offset was handed to the sinks. Offsets must increase.
func (t *Tracker) Add(offset int64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := len(t.entries); n > t.head && offset <= t.entries[n-1].offset || offset < t.next {
		return fmt.Errorf("pipeline: offset %d added out of order", offset)
	}
	t.entries = append(t.entries, entry{offset: offset})
	return nil
}

// Ack records that offset is durable in every sink and returns the offset
// that may now be committed (Kafka's convention: the next offset to read).
func (t *Tracker) Ack(offset int64) (commit int64, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	live := t.entries[t.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].offset >= offset })
	if i == len(live) || live[i].offset != offset || live[i].acked {
		return t.commitLocked(), fmt.Errorf("pipeline: ack of offset %d that is not in flight", offset)
	}
	live[i].acked = true
	for t.head < len(t.entries) && t.entries[t.head].acked {
		t.next = t.entries[t.head].offset + 1
		t.head++
	}
	// Compact once the dropped prefix dominates, so memory stays bounded by
	// what is in flight.
	if t.head > 1024 && t.head*2 > len(t.entries) {
		t.entries = append(t.entries[:0:0], t.entries[t.head:]...)
		t.head = 0
	}
	return t.commitLocked(), nil
}

func (t *Tracker) commitLocked() int64 {
	if t.head < len(t.entries) {
		return t.entries[t.head].offset
	}
	return t.next
}

// Committable is the offset that may be committed now.
func (t *Tracker) Committable() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.commitLocked()
}

// InFlight is the number of records handed out and not yet acknowledged.
func (t *Tracker) InFlight() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, e := range t.entries[t.head:] {
		if !e.acked {
			n++
		}
	}
	return n
}
