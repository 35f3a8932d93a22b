package notify

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode"
)

// Console writes notifications as text, one line per alert, for `kubesift
// run` and for trying routes without a Slack workspace. A line is
//
//	15:04:05  HIGH      cluster-admin-binding          <message> [cluster]
//
// followed, when the group held more alerts than a notification carries,
// by "          +N more  <rule_id>". Alert text comes from the audited
// requests (user names, user agents, object names an attacker chose), so
// every control character is replaced before it reaches a terminal: an
// escape sequence in a user agent must not rewrite the operator's screen.
//
// A write error is final (retry false): a closed or full console does not
// come back by waiting, and the alert's delivery state says it failed.
type Console struct {
	mu  sync.Mutex
	w   io.Writer
	loc *time.Location
}

// NewConsole returns a Console writing to w; times are printed in loc
// (time.Local when nil).
func NewConsole(w io.Writer, loc *time.Location) *Console {
	if loc == nil {
		loc = time.Local
	}
	return &Console{w: w, loc: loc}
}

// Notify writes n's alerts; see the type's doc.
func (c *Console) Notify(_ context.Context, n *Notification) (bool, error) {
	var b strings.Builder
	for i := range n.Alerts {
		a := &n.Alerts[i]
		msg := a.Message
		if msg == "" {
			msg = a.Title
		}
		fmt.Fprintf(&b, "%s  %-8s  %-34s %s [%s]\n", a.Time.In(c.loc).Format("15:04:05"),
			strings.ToUpper(a.Severity.String()), safeText(a.RuleID, 80), safeText(msg, 400), safeText(a.Cluster, 80))
	}
	if extra := n.Truncated(); extra > 0 {
		rule := n.GroupLabels["rule_id"]
		if rule == "" && len(n.Alerts) > 0 {
			rule = n.Alerts[0].RuleID
		}
		fmt.Fprintf(&b, "          +%d more  %s\n", extra, safeText(rule, 80))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := io.WriteString(c.w, b.String()); err != nil {
		return false, fmt.Errorf("console: %w", err)
	}
	return false, nil
}

// safeText replaces control characters (newlines and escapes included)
// with spaces and cuts s to max runes.
func safeText(s string, max int) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == max {
			b.WriteString("…")
			break
		}
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' {
			r = ' '
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}
