// Package notifytest holds the alert fixtures that the notifier's tests
// share: sink/notify's own and pipeline's tests of the notifier loop. It
// imports only record and rules, so sink/notify's internal tests can use it
// without an import cycle.
package notifytest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
)

// T0 is the time of PrivilegedPod(0, …).
var T0 = time.Date(2026, 11, 30, 14, 3, 7, 0, time.UTC)

// PrivilegedPod is the alert the built-in pack raises for a privileged pod
// named name, i seconds after T0.
func PrivilegedPod(i int, name string) rules.Alert {
	return rules.Alert{
		ID: "k8s-privileged-pod:audit-" + name, RuleID: "k8s-privileged-pod", Title: "Privileged pod created",
		Severity: rules.SeverityCritical,
		Mitre:    rules.Mitre{Tactics: []string{"privilege-escalation"}, Techniques: []string{"T1610", "T1611"}},
		Tags:     []string{"workload", "privileged"}, RecordID: "audit-" + name, Source: record.SourceAudit,
		Cluster: "prod-eu-1", Time: T0.Add(time.Duration(i) * time.Second),
		Message: "user alice created privileged pod " + name + " in namespace payments",
		User:    "alice", Verb: "create", Namespace: "payments", Resource: "pods", Name: name,
	}
}

// AlertMessage is the alerts-topic message the processor produces for a:
// key "<cluster>/<rule_id>", the JSON of a, the record wire headers.
func AlertMessage(t testing.TB, a rules.Alert) kafka.Message {
	t.Helper()
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return kafka.Message{Key: []byte(a.Cluster + "/" + a.RuleID), Value: b, Headers: []kafka.Header{
		{Key: record.HeaderSchema, Value: []byte("1")}, {Key: record.HeaderID, Value: []byte(a.ID)}, {Key: record.HeaderCluster, Value: []byte(a.Cluster)},
	}}
}
