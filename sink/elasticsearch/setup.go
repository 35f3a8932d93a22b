package elasticsearch

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/kubesift/kubesift/internal/backoff"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/ecs"
)

// Names of what Setup installs. Component templates carry the mappings of
// sink/ecs and do not depend on the configuration, so every kubesift
// installation (and every test) writes identical content to them; index
// templates are named after the stream or index they serve, so several
// configurations can share one cluster.
const (
	ComponentECS     = "kubesift-ecs@mappings"
	ComponentAudit   = "kubesift-audit@mappings"
	ComponentEvents  = "kubesift-events@mappings"
	ComponentPosture = "kubesift-posture@mappings"
	ComponentAlerts  = "kubesift-alerts@mappings"
	// ComponentFindings maps the findings state index and the transitions
	// data stream; ComponentScores the posture scores data stream.
	ComponentFindings = "kubesift-findings@mappings"
	ComponentScores   = "kubesift-posture-scores@mappings"
	// ComponentUsage maps the RBAC usage index (rbacusage.go).
	ComponentUsage = "kubesift-rbac-usage@mappings"

	// TemplatePriority wins over Elasticsearch's built-in logs-*-*
	// template (100) and over Fleet integration templates (200), e.g.
	// logs-kubernetes.audit_logs when the audit stream is written there.
	TemplatePriority = 250
)

// IndexTemplateName is the name of the index template of a stream or index.
func IndexTemplateName(streamOrIndex string) string { return "kubesift-" + streamOrIndex }

// setupBackoff retries refused setup requests a few times (a cluster that
// is still starting), then reports.
var setupBackoff = backoff.Policy{Initial: 500 * time.Millisecond, Max: 5 * time.Second, Attempts: 6}

// Setup installs, idempotently: the ILM policy (where the cluster has ILM),
// the component templates, one composable index template per data stream
// (data_stream: {}), the data streams themselves (finding transitions and
// posture scores among them), the alerts index (a plain index: the notifier
// updates documents in place) and the findings state index (a plain index:
// one document per finding, replaced on each transition) and the RBAC usage
// index (a plain index: one document per usage tuple). Running it again
// changes nothing; a newer kubesift updates templates and the current
// write index's mapping. Every refused request is an error naming what was
// being installed.
func Setup(ctx context.Context, es *Client, cfg config.ElasticsearchConfig, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &setup{es: es, log: log}

	ilm := false
	if cfg.ILM.Enabled {
		var err error
		if ilm, err = s.ilmPolicy(ctx, cfg.ILM); err != nil {
			return err
		}
	}

	meta := map[string]any{"managed_by": "kubesift", "mapping_version": ecs.MappingVersion}
	components := []struct {
		name     string
		mappings map[string]any
		settings map[string]any
	}{
		{ComponentECS, ecs.BaseMappings(), nil},
		// Annotation fields are dynamic (a handful per cluster); the
		// headroom over the default 1000 fields is for them.
		{ComponentAudit, ecs.AuditMappings(), map[string]any{"index.mapping.total_fields.limit": 2000}},
		{ComponentEvents, ecs.EventsMappings(), nil},
		{ComponentPosture, ecs.PostureMappings(), nil},
		{ComponentAlerts, ecs.AlertsMappings(), nil},
		{ComponentFindings, ecs.FindingsMappings(), nil},
		{ComponentScores, ecs.ScoresMappings(), nil},
		{ComponentUsage, UsageMappings(), nil},
	}
	for _, c := range components {
		tmpl := map[string]any{"mappings": c.mappings}
		if c.settings != nil {
			tmpl["settings"] = c.settings
		}
		body := map[string]any{"template": tmpl, "version": ecs.MappingVersion, "_meta": meta}
		if err := s.put(ctx, "component template "+c.name, "/_component_template/"+url.PathEscape(c.name), body); err != nil {
			return err
		}
	}

	settings := map[string]any{}
	if ilm {
		settings["index.lifecycle.name"] = cfg.ILM.Policy
	}
	streams := []struct{ name, component string }{
		{cfg.Streams.Audit, ComponentAudit},
		{cfg.Streams.Events, ComponentEvents},
		{cfg.Streams.Posture, ComponentPosture},
		{cfg.Findings.TransitionsStream, ComponentFindings},
		{cfg.Findings.ScoresStream, ComponentScores},
	}
	for _, st := range streams {
		name := IndexTemplateName(st.name)
		body := map[string]any{
			// The exact stream name, not a wildcard: kubesift's template must
			// not capture other namespaces of a dataset it shares (e.g. the
			// integration's own logs-kubernetes.audit_logs-*).
			"index_patterns": []string{st.name},
			"data_stream":    map[string]any{},
			"priority":       TemplatePriority,
			"composed_of":    []string{ComponentECS, st.component},
			"template":       map[string]any{"settings": settings},
			"version":        ecs.MappingVersion,
			"_meta":          meta,
		}
		if err := s.put(ctx, "index template "+name, "/_index_template/"+url.PathEscape(name), body); err != nil {
			return err
		}
		if err := s.dataStream(ctx, st.name, st.component); err != nil {
			return err
		}
	}
	if err := s.plainIndex(ctx, "alerts index", cfg.AlertsIndex, ComponentAlerts, meta); err != nil {
		return err
	}
	if err := s.plainIndex(ctx, "findings index", cfg.Findings.Index, ComponentFindings, meta); err != nil || cfg.Findings.UsageIndex == "" {
		return err // no usage index named: RBAC usage is not kept
	}
	return s.plainIndex(ctx, "rbac usage index", cfg.Findings.UsageIndex, ComponentUsage, meta)
}

type setup struct {
	es  *Client
	log *slog.Logger
}

// request sends one setup request with retries and returns the final answer
// (any status); err is set when there was no answer after the retries.
func (s *setup) request(ctx context.Context, what, method, path string, body any) (int, []byte, error) {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return 0, nil, fmt.Errorf("setup %s: %w", what, err)
		}
	}
	var (
		status int
		resp   []byte
	)
	err := sink.Do(ctx, setupBackoff, func(ctx context.Context) (bool, error) {
		st, rb, h, err := Call(ctx, s.es, method, path, b)
		if err != nil {
			return sink.Retryable(0, err), err
		}
		status, resp = st, rb
		if sink.Retryable(st, nil) {
			return true, StatusError(what, st, rb, h)
		}
		return false, nil
	}, func(n int, err error) {
		s.log.Warn("elasticsearch setup: retrying", "what", what, "attempt", n, "error", err)
	})
	if err != nil {
		return 0, nil, fmt.Errorf("setup %s: %w", what, err)
	}
	return status, resp, nil
}

// put installs one object; any non-2xx is an error.
func (s *setup) put(ctx context.Context, what, path string, body any) error {
	status, resp, err := s.request(ctx, what, http.MethodPut, path, body)
	if err != nil {
		return err
	}
	if status/100 != 2 {
		return fmt.Errorf("setup: %w", StatusError("put "+what, status, resp, nil))
	}
	s.log.Debug("elasticsearch setup: installed", "what", what)
	return nil
}

// ilmPolicy installs the lifecycle policy. It reports false (and logs one
// warning) when the cluster has no ILM: _ilm answers a client error other
// than 401/403 (no such endpoint, or ILM disabled). Missing permissions are
// an error: skipping them silently would leave data to grow forever.
func (s *setup) ilmPolicy(ctx context.Context, c config.ESILMConfig) (bool, error) {
	rollover := map[string]any{}
	if c.RolloverMaxAge > 0 {
		rollover["max_age"] = config.ESDuration(c.RolloverMaxAge)
	}
	if c.RolloverMaxPrimaryShardSize != "" {
		rollover["max_primary_shard_size"] = c.RolloverMaxPrimaryShardSize
	}
	phases := map[string]any{"hot": map[string]any{"actions": map[string]any{"rollover": rollover}}}
	if c.DeleteAfter > 0 {
		phases["delete"] = map[string]any{"min_age": config.ESDuration(c.DeleteAfter), "actions": map[string]any{"delete": map[string]any{}}}
	}
	body := map[string]any{"policy": map[string]any{"phases": phases, "_meta": map[string]any{"managed_by": "kubesift"}}}
	what := "ILM policy " + c.Policy
	status, resp, err := s.request(ctx, what, http.MethodPut, "/_ilm/policy/"+url.PathEscape(c.Policy), body)
	if err != nil {
		return false, err
	}
	switch {
	case status/100 == 2:
		return true, nil
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return false, fmt.Errorf("setup: %w (the user needs the manage_ilm cluster privilege, or set sink.elasticsearch.ilm.enabled: false)",
			StatusError("put "+what, status, resp, nil))
	case status/100 == 4:
		s.log.Warn("elasticsearch has no index lifecycle management: data streams will not roll over or expire; "+
			"manage retention yourself, or set sink.elasticsearch.ilm.enabled: false to silence this",
			"policy", c.Policy, "status", status, "reason", errorReason(resp))
		return false, nil
	}
	return false, fmt.Errorf("setup: %w", StatusError("put "+what, status, resp, nil))
}

// dataStream creates a data stream (so it exists, with its mapping, before
// the first document) or, when it exists, brings the mapping of its write
// index up to date with the template (a new kubesift version's fields).
func (s *setup) dataStream(ctx context.Context, name, component string) error {
	what := "data stream " + name
	status, resp, err := s.request(ctx, what, http.MethodPut, "/_data_stream/"+url.PathEscape(name), nil)
	if err != nil {
		return err
	}
	if status/100 == 2 {
		return nil
	}
	if !AlreadyExists(status, resp) {
		return fmt.Errorf("setup: %w", StatusError("create "+what, status, resp, nil))
	}
	mapping := ecs.MergeMappings(ecs.BaseMappings(), componentMappings(component))
	delete(mapping, "dynamic_templates") // merged by the template at rollover; PUT _mapping would replace them
	return s.put(ctx, "mapping of "+what, "/"+url.PathEscape(name)+"/_mapping?write_index_only=true", mapping)
}

// plainIndex installs a plain index (alerts, finding states): an index
// template (so a document written before setup still gets the mapping) and
// the index itself; an existing index gets its mapping brought up to date.
func (s *setup) plainIndex(ctx context.Context, kind, index, component string, meta map[string]any) error {
	name := IndexTemplateName(index)
	body := map[string]any{
		"index_patterns": []string{index},
		"priority":       TemplatePriority,
		"composed_of":    []string{ComponentECS, component},
		"version":        ecs.MappingVersion,
		"_meta":          meta,
	}
	if err := s.put(ctx, "index template "+name, "/_index_template/"+url.PathEscape(name), body); err != nil {
		return err
	}
	what := kind + " " + index
	status, resp, err := s.request(ctx, what, http.MethodPut, "/"+url.PathEscape(index), map[string]any{})
	if err != nil {
		return err
	}
	if status/100 == 2 {
		return nil
	}
	if !AlreadyExists(status, resp) {
		return fmt.Errorf("setup: %w", StatusError("create "+what, status, resp, nil))
	}
	return s.put(ctx, "mapping of "+what, "/"+url.PathEscape(index)+"/_mapping",
		ecs.MergeMappings(ecs.BaseMappings(), componentMappings(component)))
}

func componentMappings(component string) map[string]any {
	switch component {
	case ComponentAudit:
		return ecs.AuditMappings()
	case ComponentEvents:
		return ecs.EventsMappings()
	case ComponentPosture:
		return ecs.PostureMappings()
	case ComponentFindings:
		return ecs.FindingsMappings()
	case ComponentScores:
		return ecs.ScoresMappings()
	case ComponentUsage:
		return UsageMappings()
	}
	return ecs.AlertsMappings()
}

// ErrorType is the error.type of an Elasticsearch error body: a short,
// content-free reason ("" when the body has none).
func ErrorType(body []byte) string {
	var w struct {
		Error struct {
			Type string `json:"type"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &w)
	return w.Error.Type
}

// AlreadyExists reports whether an answer to creating an index or a data
// stream says it exists already.
func AlreadyExists(status int, body []byte) bool {
	return status == http.StatusBadRequest && ErrorType(body) == "resource_already_exists_exception"
}
