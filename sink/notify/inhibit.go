package notify

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/match"
	"github.com/kubesift/kubesift/rules"
)

// Inhibitor mutes target alerts while a source alert with the same values
// of the rule's equal labels was seen within the rule's window of the
// target's time (Alertmanager's inhibit_rules, on event time because
// kubesift alerts never resolve). The dispatcher shows it every alert
// (Observe) before routing and asks it (Mutes) when a group is flushed.
type Inhibitor struct {
	rules []*inhibitRule
}

type inhibitRule struct {
	idx            int
	source, target []*match.Matcher
	equal          []string
	window         time.Duration

	mu   sync.Mutex
	seen map[string]sourceSeen // by equal-label values
}

type sourceSeen struct {
	t      time.Time
	id     string
	ruleID string
}

// maxInhibitSources bounds the sources each rule remembers; when full, the
// ones older than the window are pruned, and if none are, the newest source
// is not remembered (inhibition is best effort; delivery is not).
const maxInhibitSources = 100000

// NewInhibitor compiles inhibit rules (validated configuration).
func NewInhibitor(cfgs []config.InhibitRuleConfig) (*Inhibitor, error) {
	in := &Inhibitor{}
	for i := range cfgs {
		c := &cfgs[i]
		src, tgt, err := c.Compiled()
		if err != nil {
			return nil, fmt.Errorf("notify.inhibit_rules[%d].%w", i, err)
		}
		w := c.Window
		if w <= 0 {
			w = time.Hour
		}
		in.rules = append(in.rules, &inhibitRule{idx: i, source: src, target: tgt, equal: c.Equal, window: w, seen: map[string]sourceSeen{}})
	}
	return in, nil
}

func (r *inhibitRule) key(l match.Labels) string {
	parts := make([]string, len(r.equal))
	for i, n := range r.equal {
		parts[i] = l.Get(n)
	}
	// NUL cannot occur in label values from JSON alerts in practice, and a
	// collision would only mute, never leak.
	return strings.Join(parts, "\x00")
}

// Observe remembers a as a source of every rule whose source matchers it
// satisfies.
func (in *Inhibitor) Observe(a *rules.Alert, l match.Labels) {
	for _, r := range in.rules {
		if len(r.source) == 0 || !match.All(r.source, l) {
			continue
		}
		k := r.key(l)
		r.mu.Lock()
		if old, ok := r.seen[k]; !ok || a.Time.After(old.t) {
			if !ok && len(r.seen) >= maxInhibitSources {
				for sk, s := range r.seen {
					if a.Time.Sub(s.t) > r.window {
						delete(r.seen, sk)
					}
				}
			}
			if ok || len(r.seen) < maxInhibitSources {
				r.seen[k] = sourceSeen{t: a.Time, id: a.ID, ruleID: a.RuleID}
			}
		}
		r.mu.Unlock()
	}
}

// Mutes implements Muter.
func (in *Inhibitor) Mutes(l match.Labels, a *rules.Alert, _ time.Time) (string, bool) {
	for _, r := range in.rules {
		if len(r.target) == 0 || !match.All(r.target, l) {
			continue
		}
		r.mu.Lock()
		s, ok := r.seen[r.key(l)]
		r.mu.Unlock()
		if !ok || s.id == a.ID {
			continue // an alert never inhibits itself
		}
		d := a.Time.Sub(s.t)
		if d < 0 {
			d = -d
		}
		if d <= r.window {
			return fmt.Sprintf("inhibited by alert %s (rule %s, inhibit_rules[%d])", s.id, s.ruleID, r.idx), true
		}
	}
	return "", false
}
