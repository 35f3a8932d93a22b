// Package rules is kubesift's detection engine: rule files in YAML whose
// conditions are expr expressions over a typed view of each record, compiled
// once at load, indexed by (source, verb, resource) so a record meets only the
// rules that can apply, with stateful forms (threshold, distinct, sequence,
// new_term) evaluated on each record's own event time.
//
// # Contract
//
// Engine.Eval(record) returns the alerts the record raises. It is safe for
// concurrent use: the processor calls it from one goroutine per Kafka
// partition, and since all records of one identity share a partition (the
// collector keys audit records by cluster/user), per-identity stateful rules
// see that identity's records in order. Eval never fails: a rule whose
// expression errors on a record is counted (errors) and treated as no match.
// Reload swaps the compiled set atomically; a bad reload keeps the old set.
// Object rules (source: object) are posture checks: Eval skips them, and
// rules/posture evaluates them through Set.ObjectChecks against an
// inventory.
//
// The rule language is documented in rules/README.md.
package rules

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/expr-lang/expr/vm"

	"github.com/kubesift/kubesift/record"
)

// Alert is one detection.
type Alert struct {
	// ID is deterministic (rule id + record id), so a re-delivered record
	// yields the same alert id and the alerts index stays free of duplicates.
	ID       string        `json:"id"`
	RuleID   string        `json:"rule_id"`
	Title    string        `json:"title"`
	Severity Severity      `json:"severity"`
	Mitre    Mitre         `json:"mitre"`
	Tags     []string      `json:"tags"`
	RecordID string        `json:"record_id"`
	Source   record.Source `json:"source"`
	Cluster  string        `json:"cluster"`
	Time     time.Time     `json:"time"`
	Message  string        `json:"message"`
	// GroupKey and Count are set by stateful rules.
	GroupKey string `json:"group_key,omitempty"`
	Count    int    `json:"count,omitempty"`
	// Who, what and where, for routing and notifications.
	User      string `json:"user,omitempty"`
	Verb      string `json:"verb,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Resource  string `json:"resource,omitempty"`
	Name      string `json:"name,omitempty"`
	// Where the request came from and its audit record, when known (a
	// posture alert's actor). An audit rule's alert carries SourceIP: the
	// record's origin address (the source object's ip).
	UserAgent string `json:"user_agent,omitempty"`
	SourceIP  string `json:"source_ip,omitempty"`
	AuditID   string `json:"audit_id,omitempty"`
}

// compiledRule is a rule ready to run.
type compiledRule struct {
	Rule
	source        record.Source
	enabled       bool
	cond          *program
	groupBy       []*program
	distinctField *program
	steps         []compiledStep
	exceptions    []compiledException
	output        []outSeg
	objects       objectUse           // request/response bodies the rule reads
	keys          [indexKeys][]string // prefilter: accepted values per key field
	keyed         [indexKeys]bool     // whether keys[i] constrains
	state         state
	stateFP       uint64 // statefulFingerprint, for durable state (Scope)
	stats         *RuleStats
}

type compiledStep struct {
	cond    *program
	groupBy []*program
}

type compiledException struct {
	name  string
	field *program
	m     *matcher
}

// RuleStats counts what one rule did. They survive reloads (keyed by rule id).
type RuleStats struct {
	Evaluated  atomic.Uint64
	Matched    atomic.Uint64
	Suppressed atomic.Uint64
	Errors     atomic.Uint64
}

// Set is a compiled, immutable rule set.
type Set struct {
	rules      []*compiledRule
	index      map[record.Source]*index
	cisVersion string
}

// Rules returns the compiled rules' definitions (after layering), by id.
func (s *Set) Rules() []Rule {
	out := make([]Rule, len(s.rules))
	for i, r := range s.rules {
		out[i] = r.Rule
	}
	return out
}

// Load reads, layers and compiles rules. The error lists every problem found,
// each naming file, line and rule.
func Load(opts LoadOptions) (*Set, error) {
	layers, err := readLayers(opts)
	if err != nil {
		return nil, err
	}
	m, errs := merge(layers)
	set := &Set{index: map[record.Source]*index{}, cisVersion: m.cisVersion}
	for _, r := range m.rules {
		cr, rerrs := compileRule(r, m, opts.MaxGroups)
		errs = append(errs, rerrs...)
		if cr != nil && cr.enabled {
			set.rules = append(set.rules, cr)
		}
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	for src, se := range sources {
		var rs []*compiledRule
		for _, r := range set.rules {
			if r.source == src {
				rs = append(rs, r)
			}
		}
		set.index[src] = newIndex(se, rs)
	}
	return set, nil
}

// newIndex indexes rules (all of se's source) on se's keys.
func newIndex(se *sourceEnv, rules []*compiledRule) *index {
	ix := &index{keys: se.keys, rules: rules, cache: map[[indexKeys]string][]*compiledRule{}}
	for k, kind := range se.kinds {
		if kind != keyOpen {
			continue
		}
		ix.named[k] = map[string]bool{}
		for _, r := range rules {
			for _, v := range r.keys[k] {
				if v != anyValue {
					ix.named[k][v] = true
				}
			}
		}
	}
	return ix
}

// joinErrors sorts errors for stable output (they come from maps).
func joinErrors(errs []error) error {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	sort.Strings(msgs)
	return &LoadError{Problems: msgs}
}

// LoadError lists every problem of a rule load.
type LoadError struct{ Problems []string }

func (e *LoadError) Error() string {
	return fmt.Sprintf("%d problem(s) in rules:\n  %s", len(e.Problems), strings.Join(e.Problems, "\n  "))
}

// index finds the rules of one source that can match a record, by the
// values of up to indexKeys key fields.
type index struct {
	keys  [indexKeys]string
	rules []*compiledRule
	// named holds, per keyOpen key, the values some rule names; nil for
	// the other keys.
	named [indexKeys]map[string]bool
	mu    sync.RWMutex
	cache map[[indexKeys]string][]*compiledRule
}

// maxIndexCache bounds the candidate cache; the (verb, resource) space of a
// cluster is small, but custom resources and garbage input must not grow it
// without bound. Past the bound candidates are computed without caching.
const maxIndexCache = 20000

func (ix *index) candidates(k [indexKeys]string) []*compiledRule {
	for i, named := range ix.named {
		if named != nil && k[i] != "" && !named[k[i]] {
			k[i] = anyValue
		}
	}
	ix.mu.RLock()
	c, ok := ix.cache[k]
	ix.mu.RUnlock()
	if ok {
		return c
	}
	for _, r := range ix.rules {
		if r.accepts(k) {
			c = append(c, r)
		}
	}
	ix.mu.Lock()
	if len(ix.cache) < maxIndexCache {
		ix.cache[k] = c
	}
	ix.mu.Unlock()
	return c
}

func (r *compiledRule) accepts(k [indexKeys]string) bool {
	for i := range k {
		if !r.keyed[i] {
			continue
		}
		ok := false
		for _, v := range r.keys[i] {
			if v == k[i] || (v == anyValue && k[i] != "") {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// Engine evaluates records against the current rule set.
type Engine struct {
	set   atomic.Pointer[Set]
	mu    sync.Mutex // guards stats map and reloads
	stats map[string]*RuleStats
	opts  LoadOptions
	vms   sync.Pool
	// loadedFP is the fingerprint of the user rule files the current set
	// was loaded from (see Watch).
	loadedFP [32]byte
}

// New loads rules and returns an Engine.
func New(opts LoadOptions) (*Engine, error) {
	e := &Engine{stats: map[string]*RuleStats{}, opts: opts}
	fp := e.fingerprint() // before loading: a change during the load is seen later
	set, err := Load(opts)
	if err != nil {
		return nil, err
	}
	e.loadedFP = fp
	e.vms.New = func() any { return &vm.VM{} }
	e.install(set, nil)
	return e, nil
}

// install attaches stats (and, from old, the state of unchanged stateful
// rules) to set and makes it current.
func (e *Engine) install(set, old *Set) {
	e.mu.Lock()
	defer e.mu.Unlock()
	prev := map[string]*compiledRule{}
	if old != nil {
		for _, r := range old.rules {
			prev[r.ID] = r
		}
	}
	for _, r := range set.rules {
		st, ok := e.stats[r.ID]
		if !ok {
			st = &RuleStats{}
			e.stats[r.ID] = st
		}
		r.stats = st
		if r.state != nil {
			r.stateFP = statefulFingerprint(&r.Rule)
		}
		if p, ok := prev[r.ID]; ok && p.state != nil && sameStatefulDef(&p.Rule, &r.Rule) {
			r.state = p.state // keep windows across a reload that did not change the rule
		}
	}
	e.set.Store(set)
}

func sameStatefulDef(a, b *Rule) bool {
	return fmt.Sprint(a.Condition, a.GroupBy, a.Threshold, a.Distinct, a.Sequence, a.NewTerm) ==
		fmt.Sprint(b.Condition, b.GroupBy, b.Threshold, b.Distinct, b.Sequence, b.NewTerm)
}

// Reload loads the rules again; on error the current set stays in force.
func (e *Engine) Reload() error {
	fp := e.fingerprint()
	set, err := Load(e.opts)
	e.mu.Lock()
	e.loadedFP = fp // a bad set is not retried until the files change again
	e.mu.Unlock()
	if err != nil {
		return err
	}
	e.install(set, e.set.Load())
	return nil
}

// resetState gives every stateful rule empty windows (fixtures run each case
// from a clean slate without recompiling the set).
func (e *Engine) resetState() {
	for _, r := range e.set.Load().rules {
		if r.state != nil {
			r.state = newState(&r.Rule, e.opts.MaxGroups)
		}
	}
}

// Set returns the current compiled set.
func (e *Engine) Set() *Set { return e.set.Load() }

// Stats returns a snapshot of per-rule statistics by rule id.
func (e *Engine) Stats() map[string]*RuleStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]*RuleStats, len(e.stats))
	for k, v := range e.stats {
		out[k] = v
	}
	return out
}

// evalCtx carries one record's environment through its candidate rules.
type evalCtx struct {
	scope   *Scope // stateful rules' memory; nil: the engine's own
	env     any
	audit   *AuditEnv
	event   *EventEnv
	objects objectUse // bodies already parsed into the env
}

// box sets env, what the rules' programs read, to a copy of the record's
// environment held by value. expr reads a field by reflection and hands it
// over as an interface: from the struct behind a pointer (addressable),
// reflection must copy every value it hands over, an allocation per read of
// a string; from a struct held by value in an interface it hands over a
// pointer into that one copy. A copy per record (and another when a body is
// parsed into the environment) costs less than the reads it saves.
func (c *evalCtx) box() {
	if c.audit != nil {
		c.env = *c.audit
	} else {
		c.env = *c.event
	}
}

// Eval returns the alerts r raises (shadow rules are counted, not returned).
func (e *Engine) Eval(r *record.Record) []Alert { return e.eval(r, nil) }

func (e *Engine) eval(r *record.Record, sc *Scope) []Alert {
	set := e.set.Load()
	ix := set.index[r.Source]
	if ix == nil || len(ix.rules) == 0 {
		return nil
	}
	ctx := evalCtx{scope: sc}
	var k [indexKeys]string
	switch r.Source {
	case record.SourceAudit:
		if r.Audit == nil {
			return nil
		}
		ctx.audit = newAuditEnv(r)
		defer releaseAuditEnv(ctx.audit)
		k = auditKey(ctx.audit)
	case record.SourceEvent:
		ctx.event = newEventEnv(r)
		k = [indexKeys]string{ctx.event.Reason}
	case record.SourceObject:
		// Object rules are posture checks: their verdict depends on the
		// inventory (other objects), so they run in rules/posture, which
		// keeps one, and raise findings with a lifecycle instead of alerts.
		return nil
	}
	cands := ix.candidates(k)
	if len(cands) == 0 {
		return nil
	}
	ctx.box()
	rn := runner{m: e.vms.Get().(*vm.VM), ctx: &ctx}
	defer e.vms.Put(rn.m)
	var alerts []Alert
	for _, cr := range cands {
		if a, ok := e.evalRule(&rn, cr, r, &ctx); ok && !cr.Shadow {
			alerts = append(alerts, a)
		}
	}
	return alerts
}

// evalSequence feeds the steps r matches to the rule's sequenceState, the
// last step first, so that one record cannot both start and finish a
// sequence. Exceptions are checked on a last step before it reaches the
// state: an excepted record must not complete a sequence, as it must not
// count towards a threshold. The alert is the last step's, raised on that
// record or — for a two-step sequence — on a first step read after it.
func (e *Engine) evalSequence(m *runner, cr *compiledRule, r *record.Record, ctx *evalCtx) (Alert, bool) {
	last := len(cr.steps) - 1
	var fired *Alert
	for i := last; i >= 0; i-- {
		ok, err := m.runBool(cr.steps[i].cond)
		if err != nil {
			cr.stats.Errors.Add(1)
			return Alert{}, false
		}
		if !ok || (cr.cond != nil && !m.mustBool(cr.cond, cr.stats)) {
			continue
		}
		key, ok := groupKeyOf(m, cr.steps[i].groupBy, cr.stats)
		if !ok {
			continue
		}
		if i == last && e.excepted(m, cr) {
			continue
		}
		st, already := ctx.scope.stateOf(cr)
		if already {
			continue
		}
		mk := func() Alert { return e.alertOf(m, cr, r, ctx, key, len(cr.steps)) }
		if a := st.(*sequenceState).feed(key, r.EventTime, i, mk); a != nil {
			fired = a
		}
	}
	if fired == nil {
		return Alert{}, false
	}
	cr.stats.Matched.Add(1)
	return *fired, true
}

// excepted reports whether one of the rule's exceptions matches the record
// (counted as suppressed).
func (e *Engine) excepted(m *runner, cr *compiledRule) bool { return cr.excepted(m) }

func (cr *compiledRule) excepted(m *runner) bool {
	for _, ex := range cr.exceptions {
		v, err := m.run(ex.field)
		if err == nil && ex.m.matchAll(v) {
			cr.stats.Suppressed.Add(1)
			return true
		}
	}
	return false
}

func (e *Engine) evalRule(m *runner, cr *compiledRule, r *record.Record, ctx *evalCtx) (Alert, bool) {
	cr.stats.Evaluated.Add(1)
	if cr.Sequence != nil {
		return e.evalSequence(m, cr, r, ctx)
	}
	ok, err := m.runBool(cr.cond)
	if err != nil {
		cr.stats.Errors.Add(1)
		return Alert{}, false
	}
	if !ok {
		return Alert{}, false
	}
	// Exceptions apply before state: an excepted record must not count
	// towards a threshold either.
	if e.excepted(m, cr) {
		return Alert{}, false
	}
	var groupKey string
	var count int
	if cr.state != nil {
		key, ok := groupKeyOf(m, cr.groupBy, cr.stats)
		if !ok {
			return Alert{}, false
		}
		value := ""
		if cr.distinctField != nil {
			v, err := m.run(cr.distinctField)
			if err != nil || v == nil {
				cr.stats.Errors.Add(1)
				return Alert{}, false
			}
			value = fmt.Sprint(v)
		}
		st, already := ctx.scope.stateOf(cr)
		if already {
			return Alert{}, false
		}
		fire, n := st.observe(key, r.EventTime, 0, value)
		if !fire {
			return Alert{}, false
		}
		groupKey, count = key, n
	}
	cr.stats.Matched.Add(1)
	return e.alertOf(m, cr, r, ctx, groupKey, count), true
}

// alertOf is the alert rule cr raises on record r.
func (e *Engine) alertOf(m *runner, cr *compiledRule, r *record.Record, ctx *evalCtx, groupKey string, count int) Alert {
	a := Alert{
		ID: cr.ID + ":" + r.ID, RuleID: cr.ID, Title: cr.Title, Severity: cr.Severity, Mitre: cr.Mitre,
		Tags: cr.Tags, RecordID: r.ID, Source: r.Source, Cluster: r.Cluster.Name, Time: r.EventTime,
		GroupKey: groupKey, Count: count,
		Message: render(m, cr.output),
	}
	if au := ctx.audit; au != nil {
		a.User, a.Verb, a.Namespace, a.Resource, a.Name = au.User, au.Verb, au.Namespace, au.Resource, au.Name
		if au.origin.Known() {
			a.SourceIP = au.origin.IPString(au.SourceIPs)
		}
	} else if ev := ctx.event; ev != nil {
		a.Namespace, a.Resource, a.Name = ev.Namespace, strings.ToLower(ev.Kind), ev.Name
	}
	if a.Message == "" {
		a.Message = cr.Title
	}
	return a
}

// runner evaluates a rule's programs on one record, parsing a request or
// response body into the environment the first time a program needs it.
type runner struct {
	m   *vm.VM
	ctx *evalCtx
}

func (r *runner) run(p *program) (any, error) {
	prog := p.p
	if p.pre != nil {
		ok, err := r.m.Run(p.pre, r.ctx.env)
		if err != nil {
			return nil, err
		}
		if b, _ := ok.(bool); !b {
			return false, nil
		}
		if p.rest != nil {
			prog = p.rest
		}
	}
	r.ctx.need(p.use)
	return r.m.Run(prog, r.ctx.env)
}

// need fills in the bodies use names that the environment lacks, and boxes
// it again: programs read the boxed copy, so anything filled into the
// environment after box must be followed by box to be seen.
func (c *evalCtx) need(use objectUse) {
	if missing := use &^ c.objects; missing != 0 && c.audit != nil {
		c.objects |= c.audit.withObjects(missing)
		c.box()
	}
}

func (r *runner) runBool(p *program) (bool, error) {
	out, err := r.run(p)
	if err != nil {
		return false, err
	}
	b, _ := out.(bool)
	return b, nil
}

func (r *runner) mustBool(p *program, st *RuleStats) bool {
	b, err := r.runBool(p)
	if err != nil {
		st.Errors.Add(1)
	}
	return b
}

// groupKeyOf evaluates group_by expressions into one key. Each value is
// rendered with %v; a list value (e.g. subject_users) uses its first element
// so a binding's subject and a later request's user compare equal.
func groupKeyOf(m *runner, progs []*program, st *RuleStats) (string, bool) {
	var b strings.Builder
	for i, p := range progs {
		v, err := m.run(p)
		if err != nil {
			st.Errors.Add(1)
			return "", false
		}
		switch x := v.(type) {
		case []string:
			if len(x) == 0 {
				return "", false
			}
			v = x[0]
		case []any:
			if len(x) == 0 {
				return "", false
			}
			v = x[0]
		}
		if i > 0 {
			b.WriteByte('|')
		}
		fmt.Fprint(&b, v)
	}
	return b.String(), true
}

func render(m *runner, segs []outSeg) string {
	var b strings.Builder
	for _, s := range segs {
		if s.prog == nil {
			b.WriteString(s.lit)
			continue
		}
		v, err := m.run(s.prog)
		if err != nil || v == nil {
			b.WriteString("<none>")
			continue
		}
		fmt.Fprint(&b, v)
	}
	return b.String()
}
