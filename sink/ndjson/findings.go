package ndjson

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync/atomic"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/rules/posture"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/ecs"
)

// FindingsWriter writes posture findings into the NDJSON store: the posture
// consumer's FindingsSink for `kubesift run` without Elasticsearch. Its
// documents are the sink/ecs FindingDocs ones, and the layout is the
// Elasticsearch one, each index a file:
//
//   - <findings index>.ndjson: one state document per transition, its
//     event.id the finding id, written as a versioned document
//     (ecs.FindingVersion), so an older or replayed state is refused as
//     Elasticsearch's external versioning refuses it, and the last line of
//     an id is its current state;
//   - <transitions stream>.ndjson: one document per transition, its
//     event.id ecs.TransitionID (create semantics: a replay is Duplicate);
//   - <scores stream>.ndjson: the score documents.
//
// The findings ack contract of sink/elasticsearch.FindingsWriter holds: done
// is called once per finding after both its documents are final, Indexed
// when either was written, Duplicate when both were already there (for the
// state: an equal or newer version, counted in
// kubesift_sink_ndjson_docs_version_conflict_total), Rejected when the
// finding cannot be written at all (counted in
// kubesift_sink_ndjson_docs_rejected_total) or the store refused a document.
// Write and WriteScores block while the Writer's buffer is full and return
// an error only when ctx ends or the Writer is closed.
type FindingsWriter struct {
	w    *Writer
	docs *ecs.FindingDocs
}

// NewFindingsWriter returns a FindingsWriter writing through w to the
// files named by cfg.Findings. Closing w closes it.
func NewFindingsWriter(w *Writer, cfg config.ElasticsearchConfig) (*FindingsWriter, error) {
	if w == nil {
		return nil, errors.New("ndjson findings writer: no writer")
	}
	docs, err := ecs.NewFindingDocs(cfg)
	if err != nil {
		return nil, err
	}
	return &FindingsWriter{w: w, docs: docs}, nil
}

// Docs is the document builder, for a caller (or test) that sets Now.
func (fw *FindingsWriter) Docs() *ecs.FindingDocs { return fw.docs }

// Write adds the state and transition documents of every finding; see the
// type's doc for done.
func (fw *FindingsWriter) Write(ctx context.Context, fs []ecs.Finding, done func(f *ecs.Finding, r sink.Result)) error {
	for i := range fs {
		f := &fs[i]
		state, err := fw.docs.FindingState(f)
		var tr sink.Doc
		if err == nil {
			tr, err = fw.docs.FindingTransition(f)
		}
		report := func(r sink.Result) {
			if done != nil {
				done(f, r)
			}
		}
		if err != nil {
			fw.w.m.rejected.Inc()
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
// namespace, stamped at (zero: now); done is called once, after every
// document is final, as for Write.
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
			fw.w.m.rejected.Inc()
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

// States reads the current state of every finding of cluster from the
// findings file: the last line of each finding id, which is the highest
// version the store accepted. It is the posture consumer's StateReader. A
// missing file means nothing was written yet. A line that is not a state
// document is skipped and counted in skipped (the engine then judges that
// finding afresh).
//
// It reads what is in the file, not the lines still buffered: the posture
// consumer asks on a partition's assignment, and whatever it wrote before
// was done — written to the file — when it gave the partition up, since
// done here means written.
func (fw *FindingsWriter) States(ctx context.Context, cluster string) (states []posture.Decision, skipped int, err error) {
	path := filepath.Join(fw.w.o.Dir, fw.docs.FindingsIndex()+".ndjson")
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("finding states: %w", err)
	}
	defer f.Close()
	type current struct {
		d posture.Decision
		v int64
	}
	byID := map[string]current{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for line := 1; sc.Scan(); line++ {
		if line%1024 == 0 && ctx.Err() != nil {
			return nil, 0, fmt.Errorf("finding states: %s line %d: %w", path, line, ctx.Err())
		}
		d, v, err := ecs.DecodeFindingState(sc.Bytes())
		switch {
		case err != nil:
			skipped++
		case d.Cluster == cluster && v > byID[d.ID].v:
			byID[d.ID] = current{d, v}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, 0, fmt.Errorf("finding states: reading %s: %w", path, err)
	}
	states = make([]posture.Decision, 0, len(byID))
	for _, c := range byID {
		states = append(states, c.d)
	}
	sort.Slice(states, func(i, j int) bool { return states[i].ID < states[j].ID })
	return states, skipped, nil
}
