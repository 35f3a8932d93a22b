package report

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kubesift/kubesift/rules"
)

// Bounds of Dir's aggregation (see the package doc).
const (
	maxKeys     = 50_000
	maxFindings = 200_000
	// maxTacticsKept bounds the tactic names kept per rule: ATT&CK has
	// 14 tactics, and a rule's unknown slugs are kept as written.
	maxTacticsKept = 64
)

// alertDoc is what a report reads of a sink/ecs alert document.
type alertDoc struct {
	Timestamp time.Time `json:"@timestamp"`
	Event     struct {
		ID       string `json:"id"`
		Severity int    `json:"severity"`
	} `json:"event"`
	Rule struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"rule"`
	Threat struct {
		Tactic struct {
			Name []string `json:"name"`
		} `json:"tactic"`
	} `json:"threat"`
	User struct {
		Name string `json:"name"`
	} `json:"user"`
	Orchestrator orchestratorDoc `json:"orchestrator"`
	Kubesift     struct {
		Alert struct {
			Message string `json:"message"`
		} `json:"alert"`
	} `json:"kubesift"`
	Message string `json:"message"`
}

type orchestratorDoc struct {
	Cluster struct {
		Name string `json:"name"`
	} `json:"cluster"`
	Namespace string `json:"namespace"`
	Resource  struct {
		Type string `json:"type"`
		Name string `json:"name"`
	} `json:"resource"`
}

// row is the alert's row of the highest-severity table.
func (d *alertDoc) row() Alert {
	msg := d.Kubesift.Alert.Message
	if msg == "" {
		msg = d.Message
	}
	obj := d.Orchestrator.Resource.Type
	if n := d.Orchestrator.Resource.Name; n != "" {
		obj = strings.TrimPrefix(obj+"/"+n, "/")
	}
	return Alert{ID: d.Event.ID, Time: d.Timestamp.UTC(), Severity: rules.Severity(d.Event.Severity), RuleID: d.Rule.ID,
		RuleName: d.Rule.Name, Message: msg, User: d.User.Name, Cluster: d.Orchestrator.Cluster.Name,
		Namespace: d.Orchestrator.Namespace, Object: obj, Tactics: sortedSet(d.Threat.Tactic.Name, maxTactics)}
}

// auditDoc is what a report reads of an audit document: only its time
// (the decoder skips the rest without building it).
type auditDoc struct {
	Timestamp time.Time `json:"@timestamp"`
}

// eventDoc is what a report reads of an Event document.
type eventDoc struct {
	Timestamp  time.Time `json:"@timestamp"`
	Kubernetes struct {
		Event struct {
			Type   string `json:"type"`
			Reason string `json:"reason"`
		} `json:"event"`
	} `json:"kubernetes"`
}

// findingDoc is what a report reads of a finding state document.
type findingDoc struct {
	Event struct {
		ID string `json:"id"`
	} `json:"event"`
	Kubesift struct {
		Finding struct {
			State    string `json:"state"`
			CheckID  string `json:"check_id"`
			Title    string `json:"title"`
			Severity string `json:"severity"`
		} `json:"finding"`
	} `json:"kubesift"`
}

// scoreDoc is what a report reads of a posture score document.
type scoreDoc struct {
	Timestamp    time.Time       `json:"@timestamp"`
	Orchestrator orchestratorDoc `json:"orchestrator"`
	Kubesift     struct {
		PostureScore struct {
			Scope   string  `json:"scope"`
			Passed  int64   `json:"passed"`
			Failed  int64   `json:"failed"`
			Percent float64 `json:"percent"`
		} `json:"posture_score"`
	} `json:"kubesift"`
}

// isOpen reports whether a finding state counts as failing.
func isOpen(state string) bool { return state == "open" || state == "reopened" }

// aggregator folds documents into a Summary in bounded memory.
type aggregator struct {
	s        Summary
	hist     histogram
	rules    keyed[ruleAcc]
	actors   keyed[ActorCount]
	reasons  keyed[ReasonCount]
	top      topAlerts
	findings map[string]findingState
	scores   map[string]Score
	sawPost  bool
	overFind int64
}

type ruleAcc struct {
	RuleCount
	tactics map[string]struct{}
}

type findingState struct {
	open         bool
	check, title string
	severity     rules.Severity
}

func newAggregator(w Window) *aggregator {
	a := &aggregator{findings: map[string]findingState{}, scores: map[string]Score{}}
	a.s.Window = w
	a.rules.init("rules")
	a.actors.init("actors")
	a.reasons.init("Event reasons")
	return a
}

func (a *aggregator) audit(d *auditDoc) {
	if a.s.Window.Contains(d.Timestamp) {
		a.s.AuditRecords++
	}
}

func (a *aggregator) alert(d *alertDoc) {
	if !a.s.Window.Contains(d.Timestamp) {
		return
	}
	sev := rules.Severity(d.Event.Severity)
	a.s.Alerts++
	if i := severityIndex(sev); i >= 0 {
		a.s.BySeverity[i]++
	}
	a.hist.add(d.Timestamp, sev)
	// Documents without a rule, user or reason are in the totals but in
	// no top list, as Elasticsearch's terms aggregation leaves them out.
	if r := a.rules.get(d.Rule.ID); r != nil {
		r.ID, r.Count = d.Rule.ID, r.Count+1
		r.Name = minName(r.Name, d.Rule.Name)
		r.Severity = max(r.Severity, sev)
		for _, t := range d.Threat.Tactic.Name {
			if r.tactics == nil {
				r.tactics = map[string]struct{}{}
			}
			if _, ok := r.tactics[t]; ok || len(r.tactics) < maxTacticsKept {
				r.tactics[t] = struct{}{}
			}
		}
	}
	if u := a.actors.get(d.User.Name); u != nil {
		u.User, u.Count, u.Severity = d.User.Name, u.Count+1, max(u.Severity, sev)
	}
	a.top.add(d.row())
}

func (a *aggregator) event(d *eventDoc) {
	if !a.s.Window.Contains(d.Timestamp) {
		return
	}
	a.s.Events++
	ev := d.Kubernetes.Event
	if r := a.reasons.get(ev.Reason); r != nil {
		r.Reason, r.Count = ev.Reason, r.Count+1
		if ev.Type == "Warning" {
			r.Warnings++
		}
	}
}

// finding keeps the last line of each finding: the store appends a newer
// version as a new line (sink/ndjson, "Versioned documents").
func (a *aggregator) finding(d *findingDoc) {
	a.sawPost = true
	f := d.Kubesift.Finding
	if _, ok := a.findings[d.Event.ID]; !ok && len(a.findings) >= maxFindings {
		a.overFind++
		return
	}
	sev, _ := rules.ParseSeverity(f.Severity)
	a.findings[d.Event.ID] = findingState{open: isOpen(f.State), check: f.CheckID, title: f.Title, severity: sev}
}

// score keeps each cluster's latest cluster-scope score.
func (a *aggregator) score(d *scoreDoc) {
	a.sawPost = true
	ps := d.Kubesift.PostureScore
	if ps.Scope != "cluster" {
		return
	}
	c := d.Orchestrator.Cluster.Name
	if old, ok := a.scores[c]; ok && !d.Timestamp.After(old.At) {
		return
	}
	if _, ok := a.scores[c]; !ok && len(a.scores) >= maxKeys {
		return
	}
	a.scores[c] = Score{Cluster: c, Percent: ps.Percent, Passed: ps.Passed, Failed: ps.Failed, At: d.Timestamp.UTC()}
}

// summary finishes the aggregation.
func (a *aggregator) summary() *Summary {
	s := &a.s
	s.Timeline = a.hist.timeline()
	rl := make([]RuleCount, 0, len(a.rules.m))
	for _, r := range a.rules.m {
		// The first maxTactics by name, as Elasticsearch's terms
		// aggregation ordered by key returns them.
		if r.Tactics = sortedKeys(r.tactics); len(r.Tactics) > maxTactics {
			r.Tactics = r.Tactics[:maxTactics]
		}
		rl = append(rl, r.RuleCount)
	}
	s.Rules, s.OtherRules = topN(rl, TopRules, s.Alerts, func(r RuleCount) (int64, string) { return r.Count, r.ID })
	al := make([]ActorCount, 0, len(a.actors.m))
	for _, u := range a.actors.m {
		al = append(al, *u)
	}
	s.Actors, s.OtherActors = topN(al, TopActors, sumCounts(al, func(u ActorCount) int64 { return u.Count })+a.actors.over,
		func(u ActorCount) (int64, string) { return u.Count, u.User })
	re := make([]ReasonCount, 0, len(a.reasons.m))
	for _, r := range a.reasons.m {
		re = append(re, *r)
	}
	s.Reasons, s.OtherEvents = topN(re, TopReasons, s.Events, func(r ReasonCount) (int64, string) { return r.Count, r.Reason })
	s.TopAlerts = a.top.sorted()
	s.Posture = a.posture()
	for _, k := range []*keyedBase{&a.rules.keyedBase, &a.actors.keyedBase, &a.reasons.keyedBase} {
		if k.over > 0 {
			s.Notes = append(s.Notes, fmt.Sprintf("more than %d distinct %s: %d documents of the rest are counted as other", maxKeys, k.what, k.over))
		}
	}
	if a.overFind > 0 {
		s.Notes = append(s.Notes, fmt.Sprintf("more than %d findings: %d lines of further findings were not read", maxFindings, a.overFind))
	}
	return s
}

func (a *aggregator) posture() *Posture {
	if !a.sawPost {
		return nil
	}
	p := &Posture{Findings: int64(len(a.findings))}
	checks := map[string]*Check{}
	for _, f := range a.findings {
		if !f.open {
			continue
		}
		p.Open++
		c := checks[f.check]
		if c == nil {
			c = &Check{ID: f.check, Title: f.title, Severity: f.severity}
			checks[f.check] = c
		}
		c.Open++
		c.Severity = max(c.Severity, f.severity)
		c.Title = minName(c.Title, f.title)
	}
	cl := make([]Check, 0, len(checks))
	for _, c := range checks {
		cl = append(cl, *c)
	}
	p.Failing, p.OtherFailing = topN(cl, TopChecks, p.Open, func(c Check) (int64, string) { return c.Open, c.ID })
	for _, sc := range a.scores {
		p.Scores = append(p.Scores, sc)
	}
	// The first maxClusters by name, as Elasticsearch answers.
	sort.Slice(p.Scores, func(i, j int) bool { return p.Scores[i].Cluster < p.Scores[j].Cluster })
	if len(p.Scores) > maxClusters {
		p.Scores = p.Scores[:maxClusters]
	}
	return p
}

// minName keeps the least non-empty name of a rule or check, the one
// Elasticsearch's terms aggregation ordered by key names first.
func minName(have, next string) string {
	if have == "" || (next != "" && next < have) {
		return next
	}
	return have
}

// keyedBase counts what a keyed map could not hold.
type keyedBase struct {
	what string
	over int64
}

// keyed is a map of at most maxKeys entries; get returns nil for the
// empty key, and for a new key once it is full (the caller's document is
// then counted as over).
type keyed[V any] struct {
	keyedBase
	m map[string]*V
}

func (k *keyed[V]) init(what string) { k.what, k.m = what, map[string]*V{} }

func (k *keyed[V]) get(key string) *V {
	if key == "" {
		return nil
	}
	v, ok := k.m[key]
	if !ok {
		if len(k.m) >= maxKeys {
			k.over++
			return nil
		}
		v = new(V)
		k.m[key] = v
	}
	return v
}

// topN sorts by count (descending), then key, and keeps n; other is total
// less what is kept.
func topN[T any](xs []T, n int, total int64, by func(T) (int64, string)) ([]T, int64) {
	sort.Slice(xs, func(i, j int) bool {
		ci, ki := by(xs[i])
		cj, kj := by(xs[j])
		if ci != cj {
			return ci > cj
		}
		return ki < kj
	})
	if len(xs) > n {
		xs = xs[:n]
	}
	if len(xs) == 0 {
		xs = nil // as an answer without buckets leaves it
	}
	other := total - sumCounts(xs, func(x T) int64 { c, _ := by(x); return c })
	return xs, other
}

func sumCounts[T any](xs []T, count func(T) int64) int64 {
	var n int64
	for _, x := range xs {
		n += count(x)
	}
	return n
}

func sortedKeys(m map[string]struct{}) []string {
	if len(m) == 0 {
		return nil
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// sortedSet is xs without repeats, sorted, at most n.
func sortedSet(xs []string, n int) []string {
	m := map[string]struct{}{}
	for _, x := range xs {
		if len(m) == n {
			break
		}
		m[x] = struct{}{}
	}
	return sortedKeys(m)
}

// topAlerts keeps the TopAlerts most severe alerts.
type topAlerts struct{ rows []Alert }

// before orders rows: higher severity, then later, then by id.
func before(a, b *Alert) bool {
	if a.Severity != b.Severity {
		return a.Severity > b.Severity
	}
	// Elasticsearch sorts @timestamp in milliseconds; so does this.
	if ta, tb := a.Time.UnixMilli(), b.Time.UnixMilli(); ta != tb {
		return ta > tb
	}
	return a.ID < b.ID
}

func (t *topAlerts) add(r Alert) {
	if len(t.rows) == TopAlerts && !before(&r, &t.rows[len(t.rows)-1]) {
		return
	}
	i := sort.Search(len(t.rows), func(i int) bool { return before(&r, &t.rows[i]) })
	if len(t.rows) < TopAlerts {
		t.rows = append(t.rows, Alert{})
	}
	copy(t.rows[i+1:], t.rows[i:])
	t.rows[i] = r
}

func (t *topAlerts) sorted() []Alert { return t.rows }

// histogram counts alerts in at most MaxBuckets buckets, widening along
// widthLadder as the span it has seen grows.
type histogram struct {
	step   int
	lo, hi int64
	counts map[int64]*[numSeverity]int64
}

func (h *histogram) add(t time.Time, sev rules.Severity) {
	if h.counts == nil {
		h.counts = map[int64]*[numSeverity]int64{}
		h.lo = bucketOf(t, widthLadder[h.step])
		h.hi = h.lo
	}
	k := bucketOf(t, widthLadder[h.step])
	h.lo, h.hi = min(h.lo, k), max(h.hi, k)
	for h.hi-h.lo >= MaxBuckets && h.step < len(widthLadder)-1 {
		h.widen()
		k = bucketOf(t, widthLadder[h.step])
	}
	c := h.counts[k]
	if c == nil {
		c = new([numSeverity]int64)
		h.counts[k] = c
	}
	// An alert of no known severity still widens the span, as it does
	// the span Elasticsearch reports, so both sources pick one width.
	if i := severityIndex(sev); i >= 0 {
		c[i]++
	}
}

// widen moves to the next ladder width and merges buckets into it.
func (h *histogram) widen() {
	f := int64(widthLadder[h.step+1] / widthLadder[h.step])
	h.step++
	merged := make(map[int64]*[numSeverity]int64, len(h.counts))
	for k, c := range h.counts {
		nk := floorDiv(k, f)
		m := merged[nk]
		if m == nil {
			m = new([numSeverity]int64)
			merged[nk] = m
		}
		for i := range c {
			m[i] += c[i]
		}
	}
	h.counts, h.lo, h.hi = merged, floorDiv(h.lo, f), floorDiv(h.hi, f)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

func (h *histogram) timeline() Timeline {
	if h.counts == nil {
		return Timeline{}
	}
	w := widthLadder[h.step]
	tl := Timeline{Start: time.Unix(h.lo*int64(w/time.Second), 0).UTC(), Width: w,
		Counts: make([][numSeverity]int64, h.hi-h.lo+1)}
	for k, c := range h.counts {
		tl.Counts[k-h.lo] = *c
	}
	return tl
}
