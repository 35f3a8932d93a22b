package main

import (
	"context"
	"maps"
	"sync"

	"github.com/kubesift/kubesift/pipeline"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink"
)

// alertTally counts the alerts the rules raise, by rule and severity, for
// the summary. It wraps the engine the processor evaluates with.
type alertTally struct {
	eng    pipeline.Evaluator
	mu     sync.Mutex
	byRule map[string]int
	sev    map[string]rules.Severity
	total  int
}

func newAlertTally(eng pipeline.Evaluator) *alertTally {
	return &alertTally{eng: eng, byRule: map[string]int{}, sev: map[string]rules.Severity{}}
}

// Eval is the engine's, counted.
func (t *alertTally) Eval(r *record.Record) []rules.Alert { return t.count(t.eng.Eval(r)) }

// NewScope and EvalIn are the engine's (durable rule state), counted; with
// an engine that keeps no per-partition state NewScope is nil, and the
// processor refuses processor.rule_state.
func (t *alertTally) NewScope(o rules.ScopeOptions) *rules.Scope {
	if se, ok := t.eng.(pipeline.ScopedEvaluator); ok {
		return se.NewScope(o)
	}
	return nil
}

func (t *alertTally) EvalIn(r *record.Record, sc *rules.Scope, offset int64) []rules.Alert {
	if se, ok := t.eng.(pipeline.ScopedEvaluator); ok {
		return t.count(se.EvalIn(r, sc, offset))
	}
	return t.count(t.eng.Eval(r))
}

func (t *alertTally) count(as []rules.Alert) []rules.Alert {
	if len(as) == 0 {
		return as
	}
	t.mu.Lock()
	for i := range as {
		t.byRule[as[i].RuleID]++
		t.sev[as[i].RuleID] = as[i].Severity
		t.total++
	}
	t.mu.Unlock()
	return as
}

type tallySnapshot struct {
	total  int
	byRule map[string]int
	sev    map[string]rules.Severity
}

func (t *alertTally) snapshot() tallySnapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := tallySnapshot{total: t.total, byRule: map[string]int{}, sev: map[string]rules.Severity{}}
	for k, v := range t.byRule {
		s.byRule[k], s.sev[k] = v, t.sev[k]
	}
	return s
}

// countingWriter counts the documents its store finished, by index.
type countingWriter struct {
	sink.Writer
	mu       sync.Mutex
	byIndex  map[string]int // indexed or duplicate
	rejected int
}

func newCountingWriter(w sink.Writer) *countingWriter {
	return &countingWriter{Writer: w, byIndex: map[string]int{}}
}

// Add passes d on and counts its outcome.
func (c *countingWriter) Add(ctx context.Context, d sink.Doc, done func(sink.Result)) error {
	idx := d.Index
	return c.Writer.Add(ctx, d, func(r sink.Result) {
		c.mu.Lock()
		if r.Status == sink.Rejected {
			c.rejected++
		} else {
			c.byIndex[idx]++
		}
		c.mu.Unlock()
		done(r)
	})
}

func (c *countingWriter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.byIndex)
}
