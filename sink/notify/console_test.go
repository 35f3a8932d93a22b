package notify

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/rules"
)

func TestConsole(t *testing.T) {
	at := time.Date(2026, 11, 25, 19, 19, 25, 0, time.UTC)
	tests := []struct {
		name string
		n    Notification
		want string
	}{
		{name: "one line per alert", n: Notification{Count: 2, Alerts: []rules.Alert{
			{RuleID: "cluster-admin-binding", Severity: rules.SeverityHigh, Message: "alice bound cluster-admin", Cluster: "prod", Time: at},
			{RuleID: "pod-exec", Severity: rules.SeverityMedium, Title: "Exec into a pod", Cluster: "prod", Time: at},
		}}, want: "19:19:25  HIGH      cluster-admin-binding              alice bound cluster-admin [prod]\n" +
			"19:19:25  MEDIUM    pod-exec                           Exec into a pod [prod]\n"},
		{name: "counted alerts are summed up", n: Notification{Count: 5, GroupLabels: map[string]string{"rule_id": "forbidden-burst"},
			Alerts: []rules.Alert{{RuleID: "forbidden-burst", Severity: rules.SeverityLow, Message: "m", Cluster: "c", Time: at}}},
			want: "19:19:25  LOW       forbidden-burst                    m [c]\n          +4 more  forbidden-burst\n"},
		{name: "control characters never reach the terminal", n: Notification{Count: 1, Alerts: []rules.Alert{
			{RuleID: "x", Severity: rules.SeverityInfo, Message: "ua \x1b[2J\x1b]0;pwned\x07 evil\nline2 \u202eabc", Cluster: "c", Time: at}}},
			want: "19:19:25  INFO      x                                  ua  [2J ]0;pwned  evil line2  abc [c]\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			retry, err := NewConsole(&b, time.UTC).Notify(context.Background(), &tc.n)
			if err != nil || retry {
				t.Fatalf("Notify = %v, %v", retry, err)
			}
			if b.String() != tc.want {
				t.Errorf("got\n%q\nwant\n%q", b.String(), tc.want)
			}
		})
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestConsoleWriteErrorIsFinal(t *testing.T) {
	n := &Notification{Count: 1, Alerts: []rules.Alert{{RuleID: "x", Severity: rules.SeverityInfo}}}
	retry, err := NewConsole(failWriter{}, nil).Notify(context.Background(), n)
	if err == nil || retry {
		t.Fatalf("Notify on a broken console = %v, %v; want a final error", retry, err)
	}
}
