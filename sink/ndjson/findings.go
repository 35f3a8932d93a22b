package ndjson

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/rules/posture"
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
//     Elasticsearch's external versioning refuses it (counted in
//     kubesift_sink_ndjson_docs_version_conflict_total), and the last line
//     of an id is its current state;
//   - <transitions stream>.ndjson: one document per transition, its
//     event.id ecs.TransitionID (create semantics: a replay is Duplicate);
//   - <scores stream>.ndjson: the score documents.
//
// The findings ack contract is ecs.FindingsWriter's; a finding that cannot
// be written at all is counted in kubesift_sink_ndjson_docs_rejected_total.
type FindingsWriter struct {
	*ecs.FindingsWriter
	w *Writer
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
	return &FindingsWriter{FindingsWriter: ecs.NewFindingsWriter(w, docs, func(string) { w.m.rejected.Inc() }), w: w}, nil
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
	path := filepath.Join(fw.w.o.Dir, fw.Docs().FindingsIndex()+".ndjson")
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
