package elasticsearch

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/kubesift/kubesift/rules/posture"
	"github.com/kubesift/kubesift/sink/ecs"
)

// statesPage is how many state documents one search returns; search_after
// pages through the rest, so a cluster of any size is read in bounded
// answers.
var statesPage = 1000

// refreshIndex makes what was written to index visible to searches; found
// is false when the index does not exist. Readers that take over from
// another writer call it first: that writer's last documents may be younger
// than a refresh interval.
func refreshIndex(ctx context.Context, es *Client, index string) (found bool, err error) {
	status, body, h, err := Call(ctx, es, http.MethodPost, "/"+url.PathEscape(index)+"/_refresh", nil)
	switch {
	case err != nil:
		return false, fmt.Errorf("refresh %s: %w", index, err)
	case status == http.StatusNotFound:
		return false, nil
	case status >= 300:
		return false, StatusError("refresh "+index, status, body, h)
	}
	return true, nil
}

// FindingStates reads the current state of every finding of cluster from
// the findings index — the last transition written of each, which is what
// posture.Engine.Restore needs so that a restarted consumer does not repeat
// transitions. The index is refreshed first: the previous owner of the
// cluster may have written its last states less than a refresh interval
// ago. A missing index means nothing was written yet (no states, no error).
// A document that cannot be read as a finding is skipped and counted in
// skipped; the engine then judges that finding afresh. Each state keeps
// its actor, so a finding still open after the restart still names who
// opened it.
func FindingStates(ctx context.Context, es *Client, index, cluster string) (states []posture.Decision, skipped int, err error) {
	if found, err := refreshIndex(ctx, es, index); err != nil || !found {
		if err != nil {
			err = fmt.Errorf("finding states: %w", err)
		}
		return nil, 0, err
	}
	var after []any
	for {
		q := map[string]any{
			"size":    statesPage,
			"query":   map[string]any{"term": map[string]any{"orchestrator.cluster.name": cluster}},
			"sort":    []any{map[string]any{"kubesift.finding.id": "asc"}},
			"_source": []string{"orchestrator.cluster.name", "kubesift.finding"},
		}
		if after != nil {
			q["search_after"] = after
		}
		req, _ := json.Marshal(q)
		status, body, h, err := Call(ctx, es, http.MethodPost, "/"+url.PathEscape(index)+"/_search", req)
		switch {
		case err != nil:
			return nil, 0, fmt.Errorf("finding states: search %s: %w", index, err)
		case status >= 300:
			return nil, 0, fmt.Errorf("finding states: %w", StatusError("search "+index, status, body, h))
		}
		var res stateHits
		if err := json.Unmarshal(body, &res); err != nil {
			return nil, 0, fmt.Errorf("finding states: search %s: decode the answer: %w", index, err)
		}
		for _, hit := range res.Hits.Hits {
			d, _, err := ecs.DecodeFindingState(hit.Source)
			if err != nil {
				skipped++
				continue
			}
			states = append(states, d)
		}
		if len(res.Hits.Hits) < statesPage {
			return states, skipped, nil
		}
		after = res.Hits.Hits[len(res.Hits.Hits)-1].Sort
	}
}

type stateHits struct {
	Hits struct {
		Hits []struct {
			Sort   []any           `json:"sort"`
			Source json.RawMessage `json:"_source"`
		} `json:"hits"`
	} `json:"hits"`
}
