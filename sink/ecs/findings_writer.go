package ecs

import (
	"context"
	"sort"
	"sync/atomic"
	"time"

	"github.com/kubesift/kubesift/rules/posture"
	"github.com/kubesift/kubesift/sink"
)

// The reasons FindingsWriter reports to its invalid callback (a metric
// label: kubesift_sink_es_docs_rejected_total{reason}).
const (
	RejectInvalidFinding = "invalid_finding" // a finding no document can be made of
	RejectInvalidScore   = "invalid_score"   // a score no document can be made of
)

// FindingsWriter writes posture findings and scores as FindingDocs
// documents through a store's Writer, so they share its buffer, retries and
// budget. sink/elasticsearch and sink/ndjson wrap it with their own
// metrics; each store's doc states what Indexed, Duplicate and Rejected
// mean for its documents.
//
// # The findings ack contract
//
// Write turns each finding transition into two documents: its state
// (FindingState: the finding id as the document id, versioned with
// FindingVersion, so an older or replayed state is refused) and its
// transition (FindingTransition: created once, a replay is Duplicate).
// done is called exactly once per finding, after both documents are final:
// Indexed when either was written; Duplicate when both were already there
// (for the state, an equal or newer version is stored); Rejected when the
// store refused either for good (Reason says which and why) or the finding
// cannot be written at all (no id, check, cluster or object uid, a state
// other than open/resolved/reopened, a resourceVersion that is not a
// positive decimal revision: counted through Invalid, never sent). Write
// blocks while the Writer's buffer is full and returns an error only when
// ctx ends or the Writer is closed; the finding being added then, and those
// after it, are not done — the caller does not acknowledge them and writes
// them again later, which the versioning and the deterministic transition
// ids make harmless.
type FindingsWriter struct {
	w    sink.Writer
	docs *FindingDocs
	// invalid counts a finding ("invalid_finding") or score
	// ("invalid_score") that cannot be made into a document.
	invalid func(reason string)
}

// NewFindingsWriter returns a FindingsWriter adding docs' documents to w;
// invalid (nil: not counted) is told of each finding or score that cannot
// be made into a document.
func NewFindingsWriter(w sink.Writer, docs *FindingDocs, invalid func(reason string)) *FindingsWriter {
	if invalid == nil {
		invalid = func(string) {}
	}
	return &FindingsWriter{w: w, docs: docs, invalid: invalid}
}

// Docs is the document builder, for a caller (or test) that sets Now.
func (fw *FindingsWriter) Docs() *FindingDocs { return fw.docs }

// Write adds the documents of every finding; see the type's doc for done.
func (fw *FindingsWriter) Write(ctx context.Context, fs []Finding, done func(f *Finding, r sink.Result)) error {
	for i := range fs {
		f := &fs[i]
		report := func(r sink.Result) {
			if done != nil {
				done(f, r)
			}
		}
		state, err := fw.docs.FindingState(f)
		var tr sink.Doc
		if err == nil {
			tr, err = fw.docs.FindingTransition(f)
		}
		if err != nil {
			fw.invalid(RejectInvalidFinding)
			report(sink.Result{Status: sink.Rejected, Reason: err.Error()})
			continue
		}
		if err := fw.add(ctx, []sink.Doc{state, tr}, []string{"state", "transition"}, report); err != nil {
			return err
		}
	}
	return nil
}

// WriteScores adds one score document for the cluster and one per
// namespace, all stamped at (zero: now). done is called once, after every
// document is final: Rejected if any was, Duplicate if all were already
// there (the same snapshot written twice), else Indexed. Errors as for
// Write.
func (fw *FindingsWriter) WriteScores(ctx context.Context, cluster string, total posture.Score, byNamespace map[string]posture.Score, at time.Time, done func(sink.Result)) error {
	if done == nil {
		done = func(sink.Result) {}
	}
	if at.IsZero() {
		at = fw.docs.Now()
	}
	namespaces := make([]string, 0, len(byNamespace))
	for ns := range byNamespace {
		namespaces = append(namespaces, ns)
	}
	sort.Strings(namespaces)
	docs := make([]sink.Doc, 0, 1+len(namespaces))
	names := make([]string, 0, cap(docs))
	for i, ns := range append([]string{""}, namespaces...) {
		s := total
		if i > 0 {
			s = byNamespace[ns]
		}
		d, err := fw.docs.Score(cluster, ns, s, at)
		if err != nil {
			fw.invalid(RejectInvalidScore)
			done(sink.Result{Status: sink.Rejected, Reason: err.Error()})
			return nil
		}
		docs, names = append(docs, d), append(names, d.ID)
	}
	return fw.add(ctx, docs, names, done)
}

// add adds docs and calls done once when all are final: Rejected (naming
// the document) if any was, Indexed if any was written, else Duplicate.
func (fw *FindingsWriter) add(ctx context.Context, docs []sink.Doc, names []string, done func(sink.Result)) error {
	var left atomic.Int32
	left.Store(int32(len(docs)))
	results := make([]sink.Result, len(docs)) // each slot written by its own callback, read by the last
	for i, d := range docs {
		err := fw.w.Add(ctx, d, func(r sink.Result) {
			results[i] = r
			if left.Add(-1) == 0 {
				done(combined(results, names))
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func combined(results []sink.Result, names []string) sink.Result {
	out := sink.Result{Status: sink.Duplicate}
	for i, r := range results {
		switch r.Status {
		case sink.Rejected:
			return sink.Result{Status: sink.Rejected, Reason: names[i] + ": " + r.Reason}
		case sink.Indexed:
			out.Status = sink.Indexed
		}
	}
	return out
}
