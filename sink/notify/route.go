package notify

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/match"
)

// Route is one compiled node of the routing tree. Unset fields of the
// configuration are inherited from the parent when the tree is built, so a
// Route holds its effective values.
type Route struct {
	Receiver       string
	Continue       bool
	GroupBy        []string
	GroupWait      time.Duration
	GroupInterval  time.Duration
	RepeatInterval time.Duration
	// ResolveTimeout is the idle time after which a group that sent a
	// notification is resolved (see Dispatcher).
	ResolveTimeout time.Duration
	Routes         []*Route

	matchers []*match.Matcher
	// key identifies the route in group keys: the path of matcher sets
	// from the root, with each child's index so that siblings with equal
	// matchers stay distinct.
	key string
}

// NewRoute compiles the routing tree of cfg (the root route). The
// configuration must have been validated; errors name the route's path.
func NewRoute(cfg *config.RouteConfig) (*Route, error) {
	if cfg.GroupWait == nil || cfg.GroupInterval == nil || cfg.RepeatInterval == nil {
		return nil, fmt.Errorf("notify.route: group_wait, group_interval and repeat_interval must be set on the root route")
	}
	if cfg.Receiver == "" {
		return nil, fmt.Errorf("notify.route.receiver: required")
	}
	root := *cfg
	if root.ResolveTimeout == nil {
		// A route built in code without the configuration's defaults.
		d := config.DefaultResolveTimeout
		root.ResolveTimeout = &d
	}
	return newRoute(&root, nil, "notify.route", "{}")
}

func newRoute(cfg *config.RouteConfig, parent *Route, path, key string) (*Route, error) {
	r := &Route{Continue: cfg.Continue, key: key}
	if parent != nil {
		// Inherit from the parent, as Alertmanager does.
		r.Receiver, r.GroupBy = parent.Receiver, parent.GroupBy
		r.GroupWait, r.GroupInterval, r.RepeatInterval = parent.GroupWait, parent.GroupInterval, parent.RepeatInterval
		r.ResolveTimeout = parent.ResolveTimeout
	}
	if cfg.Receiver != "" {
		r.Receiver = cfg.Receiver
	}
	if cfg.GroupBy != nil {
		r.GroupBy = append([]string(nil), cfg.GroupBy...)
		sort.Strings(r.GroupBy)
	}
	if cfg.GroupWait != nil {
		r.GroupWait = *cfg.GroupWait
	}
	if cfg.GroupInterval != nil {
		r.GroupInterval = *cfg.GroupInterval
	}
	if cfg.RepeatInterval != nil {
		r.RepeatInterval = *cfg.RepeatInterval
	}
	if cfg.ResolveTimeout != nil {
		r.ResolveTimeout = *cfg.ResolveTimeout
	}
	ms, err := cfg.CompiledMatchers()
	if err != nil {
		return nil, fmt.Errorf("%s.%w", path, err)
	}
	r.matchers = ms
	for i := range cfg.Routes {
		c := &cfg.Routes[i]
		cms, err := c.CompiledMatchers()
		if err != nil {
			return nil, fmt.Errorf("%s.routes[%d].%w", path, i, err)
		}
		ck := key + "/" + strconv.Itoa(i) + matcherSet(cms)
		child, err := newRoute(c, r, fmt.Sprintf("%s.routes[%d]", path, i), ck)
		if err != nil {
			return nil, err
		}
		r.Routes = append(r.Routes, child)
	}
	return r, nil
}

func matcherSet(ms []*match.Matcher) string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = m.String()
	}
	return "{" + strings.Join(s, ",") + "}"
}

// Key identifies the route in group keys.
func (r *Route) Key() string { return r.key }

// Match returns the routes that take an alert with labels l: the deepest
// matching routes, trying children in order and stopping at the first
// match unless it has continue — Alertmanager's semantics. The root always
// matches; nil means this route does not.
func (r *Route) Match(l match.Labels) []*Route {
	if !match.All(r.matchers, l) {
		return nil
	}
	var all []*Route
	for _, c := range r.Routes {
		m := c.Match(l)
		all = append(all, m...)
		if m != nil && !c.Continue {
			break
		}
	}
	if len(all) == 0 {
		all = append(all, r)
	}
	return all
}

// groupLabels picks the route's group_by labels of l.
func (r *Route) groupLabels(l match.Labels) map[string]string {
	g := make(map[string]string, len(r.GroupBy))
	for _, n := range r.GroupBy {
		g[n] = l.Get(n)
	}
	return g
}

// groupKey is the route key and the group labels in a stable order, e.g.
// `{}/0{severity="critical"}:{cluster="prod",rule_id="x"}`.
func (r *Route) groupKey(g map[string]string) string {
	var b strings.Builder
	b.WriteString(r.key)
	b.WriteString(":{")
	for i, n := range r.GroupBy { // sorted in newRoute
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(g[n]))
	}
	b.WriteByte('}')
	return b.String()
}
