package elasticsearch

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/rules/posture"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/ecs"
)

// FindingsWriter writes posture findings through a Writer, so findings share
// its bulk requests, status classifier, retries and queue budget.
//
// # The findings ack contract
//
// Write turns each finding transition into two documents: its state in the
// findings index (_id the finding id, written with external versioning,
// ecs.FindingVersion) and a transition document in the transitions data
// stream (_id finding id + state + resourceVersion, written with create).
// done is called exactly once per finding, after both documents are final:
//
//   - Indexed when both were written, or one was and the other already
//     there;
//   - Duplicate when both were already there: a replay. For the state
//     document that means a greater or equal version is stored — a late
//     transition lost to a newer one, which is the point of the versioning
//     and counted in kubesift_sink_es_docs_version_conflict_total; for the
//     transition, the same transition was written before;
//   - Rejected when either document was refused for good (Reason says
//     which and why), or the finding cannot be written at all: no id, check,
//     cluster or object uid, a state other than open/resolved/reopened, a
//     resourceVersion that is not a positive decimal revision. Those are
//     counted as kubesift_sink_es_docs_rejected_total{reason="invalid_finding"}
//     and never sent.
//
// 429, 5xx and refused requests are retried inside the Writer and never
// reach done. Write blocks while the Writer's queue is full (backpressure)
// and returns an error only when ctx ends or the Writer is closed; the
// finding being added then, and those after it, are not done — the caller
// does not acknowledge them and writes them again later, which the
// versioning and the deterministic transition ids make harmless.
type FindingsWriter struct {
	w    *Writer
	docs *ecs.FindingDocs
}

// NewFindingsWriter returns a FindingsWriter writing through w to the
// index and streams named in cfg.Findings. Closing w closes it.
func NewFindingsWriter(w *Writer, cfg config.ElasticsearchConfig) (*FindingsWriter, error) {
	if w == nil {
		return nil, errors.New("elasticsearch findings writer: no writer")
	}
	docs, err := ecs.NewFindingDocs(cfg)
	if err != nil {
		return nil, err
	}
	return &FindingsWriter{w: w, docs: docs}, nil
}

// Docs is the document builder, for a caller (or test) that sets Now.
func (fw *FindingsWriter) Docs() *ecs.FindingDocs { return fw.docs }

// Write adds the documents of every finding; see the type's doc for done.
func (fw *FindingsWriter) Write(ctx context.Context, fs []ecs.Finding, done func(f *ecs.Finding, r sink.Result)) error {
	if done == nil {
		done = func(*ecs.Finding, sink.Result) {}
	}
	for i := range fs {
		f := &fs[i]
		state, err := fw.docs.FindingState(f)
		var tr sink.Doc
		if err == nil {
			tr, err = fw.docs.FindingTransition(f)
		}
		if err != nil {
			fw.w.m.rejected.WithLabelValues("invalid_finding").Inc()
			done(f, sink.Result{Status: sink.Rejected, Reason: err.Error()})
			continue
		}
		j := newJoin(2, func(r sink.Result) { done(f, r) })
		if err := fw.w.Add(ctx, state, j.part("state")); err != nil {
			return err
		}
		if err := fw.w.Add(ctx, tr, j.part("transition")); err != nil {
			return err
		}
	}
	return nil
}

// WriteScores adds one score document for the cluster and one per
// namespace, all stamped at (zero: now). done is called once, after every
// document is final: Rejected if any was, Duplicate if all were already
// there (the same snapshot written twice), else Indexed. Errors as for Write.
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
	d, err := fw.docs.Score(cluster, "", total, at)
	if err != nil {
		fw.w.m.rejected.WithLabelValues("invalid_score").Inc()
		done(sink.Result{Status: sink.Rejected, Reason: err.Error()})
		return nil
	}
	docs = append(docs, d)
	for _, ns := range namespaces {
		d, err := fw.docs.Score(cluster, ns, byNamespace[ns], at)
		if err != nil {
			fw.w.m.rejected.WithLabelValues("invalid_score").Inc()
			done(sink.Result{Status: sink.Rejected, Reason: err.Error()})
			return nil
		}
		docs = append(docs, d)
	}
	j := newJoin(len(docs), done)
	for _, d := range docs {
		if err := fw.w.Add(ctx, d, j.part(d.ID)); err != nil {
			return err
		}
	}
	return nil
}

// join calls done once when n parts are final, with the combined result.
type join struct {
	mu      sync.Mutex
	left    int
	indexed bool
	reject  *sink.Result
	done    func(sink.Result)
}

func newJoin(n int, done func(sink.Result)) *join { return &join{left: n, done: done} }

// part returns the done callback of one part, named in a Rejected reason.
func (j *join) part(name string) func(sink.Result) {
	return func(r sink.Result) {
		j.mu.Lock()
		switch r.Status {
		case sink.Rejected:
			if j.reject == nil {
				j.reject = &sink.Result{Status: sink.Rejected, Reason: name + ": " + r.Reason}
			}
		case sink.Indexed:
			j.indexed = true
		}
		j.left--
		last := j.left == 0
		j.mu.Unlock()
		if !last {
			return
		}
		switch {
		case j.reject != nil:
			j.done(*j.reject)
		case j.indexed:
			j.done(sink.Result{Status: sink.Indexed})
		default:
			j.done(sink.Result{Status: sink.Duplicate})
		}
	}
}
