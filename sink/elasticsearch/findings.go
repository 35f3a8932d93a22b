package elasticsearch

import (
	"errors"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/sink/ecs"
)

// FindingsWriter writes posture findings through a Writer, so findings share
// its bulk requests, status classifier, retries and queue budget: the state
// document goes to the findings index (_id the finding id, version_type
// external with ecs.FindingVersion), the transition to the transitions data
// stream (_id finding id + state + resourceVersion, op create), the scores
// to the scores stream.
//
// The findings ack contract is ecs.FindingsWriter's. Here a Duplicate state
// means Elasticsearch holds a greater or equal version — a late transition
// lost to a newer one, which is the point of the versioning, counted in
// kubesift_sink_es_docs_version_conflict_total; a finding or score that
// cannot be written at all is counted as
// kubesift_sink_es_docs_rejected_total{reason="invalid_finding"} (or
// "invalid_score"). 429, 5xx and refused requests are retried inside the
// Writer and never reach done.
type FindingsWriter struct{ *ecs.FindingsWriter }

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
	return &FindingsWriter{ecs.NewFindingsWriter(w, docs, func(reason string) { w.m.rejected.WithLabelValues(reason).Inc() })}, nil
}
