package report

import (
	"cmp"
	"slices"
)

// DeadLetters are a cluster's messages that reached the dead-letter topic
// (kafka.topics.dlq) within a digest's window, by when they were
// dead-lettered: records a collector refused or could not publish whole,
// records and alerts the processor could not decode, build or index, and
// alerts the notifier could not decode. None of them is in Elasticsearch
// (a record trimmed to fit is, and counts in Digest.Trimmed instead), so the
// store cannot count them: the digest reads the topic itself.
type DeadLetters struct {
	// Records and Alerts count the dead letters by what they hold
	// (kubesift-dlq-kind; a collector's are records).
	Records int64 `json:"records"`
	Alerts  int64 `json:"alerts"`
	// Reasons are the DigestTopReasons most frequent (source, reason)
	// pairs, OtherReasons the dead letters of the rest.
	Reasons      []DeadLetterReason `json:"by_reason"`
	OtherReasons int64              `json:"other_reasons"`
	// Partial says that reading stopped at its byte budget: the figures
	// count what was read, and the window held more.
	Partial bool `json:"partial,omitempty"`
}

// DeadLetterReason is one (source, reason) pair's dead letters: source is
// the component that wrote them (processor, notifier, or the collector's
// input, e.g. audit-webhook), reason its machine-readable reason.
type DeadLetterReason struct {
	Source  string `json:"source"`
	Reason  string `json:"reason"`
	Letters int64  `json:"dead_letters"`
}

// MaxDeadLetterTallyKeys bounds the distinct (cluster, source, reason)
// triples a DeadLetterTally keeps; the dead letters of further ones count
// as other reasons of their cluster (clusters are kept whatever their
// number: one counter each).
const MaxDeadLetterTallyKeys = 10_000

// DeadLetterTally counts dead letters per cluster as they are read. The
// zero value is ready; it is not safe for concurrent use.
type DeadLetterTally struct {
	clusters map[string]*DeadLetters
	reasons  map[tallyKey]int64
	partial  bool
}

type tallyKey struct{ cluster, source, reason string }

// Add counts one dead letter of cluster; alert says it holds an alert.
func (t *DeadLetterTally) Add(cluster, source, reason string, alert bool) {
	if t.clusters == nil {
		t.clusters, t.reasons = map[string]*DeadLetters{}, map[tallyKey]int64{}
	}
	d := t.clusters[cluster]
	if d == nil {
		d = &DeadLetters{}
		t.clusters[cluster] = d
	}
	if alert {
		d.Alerts++
	} else {
		d.Records++
	}
	k := tallyKey{cluster, source, reason}
	if _, ok := t.reasons[k]; ok || len(t.reasons) < MaxDeadLetterTallyKeys {
		t.reasons[k]++
		return
	}
	d.OtherReasons++
}

// SetPartial marks every figure as partial (the reading stopped early).
func (t *DeadLetterTally) SetPartial() { t.partial = true }

// Of is cluster's dead letters: zero counts, never nil, for a cluster
// with none.
func (t *DeadLetterTally) Of(cluster string) *DeadLetters {
	out := &DeadLetters{Partial: t.partial}
	d := t.clusters[cluster]
	if d == nil {
		return out
	}
	out.Records, out.Alerts, out.OtherReasons = d.Records, d.Alerts, d.OtherReasons
	for k, n := range t.reasons {
		if k.cluster == cluster {
			out.Reasons = append(out.Reasons, DeadLetterReason{Source: k.source, Reason: k.reason, Letters: n})
		}
	}
	slices.SortFunc(out.Reasons, func(a, b DeadLetterReason) int {
		return cmp.Or(cmp.Compare(b.Letters, a.Letters), cmp.Compare(a.Source, b.Source), cmp.Compare(a.Reason, b.Reason))
	})
	if len(out.Reasons) > DigestTopReasons {
		for _, r := range out.Reasons[DigestTopReasons:] {
			out.OtherReasons += r.Letters
		}
		out.Reasons = out.Reasons[:DigestTopReasons]
	}
	return out
}
