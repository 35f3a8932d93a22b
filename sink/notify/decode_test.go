package notify

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink/notify/notifytest"
)

func TestDecodeAlertMessage(t *testing.T) {
	good := notifytest.AlertMessage(t, notifytest.PrivilegedPod(0, "p"))
	a, err := DecodeAlertMessage(good)
	if err != nil || a.ID != notifytest.PrivilegedPod(0, "p").ID || a.Severity != rules.SeverityCritical || !a.Time.Equal(t0) {
		t.Fatalf("%+v %v", a, err)
	}
	mod := func(f func(m *kafka.Message)) kafka.Message {
		m := notifytest.AlertMessage(t, notifytest.PrivilegedPod(0, "p"))
		f(&m)
		return m
	}
	for _, tc := range []struct {
		name string
		m    kafka.Message
		want string
	}{
		{"not json", mod(func(m *kafka.Message) { m.Value = []byte("nope") }), "value: invalid character"},
		{"schema", mod(func(m *kafka.Message) { m.Headers[0].Value = []byte("2") }), `header kubesift-schema: schema "2"`},
		{"id header", mod(func(m *kafka.Message) { m.Headers[1].Value = []byte("other") }), "header kubesift-id"},
		{"cluster header", mod(func(m *kafka.Message) { m.Headers[2].Value = []byte("other") }), "header kubesift-cluster"},
		{"severity", mod(func(m *kafka.Message) {
			m.Value = []byte(strings.Replace(string(m.Value), `"critical"`, `"urgent"`, 1))
		}), "severity"},
		{"no id", mod(func(m *kafka.Message) {
			m.Value = []byte(`{"rule_id":"r","cluster":"c","severity":"low","time":"2026-01-01T00:00:00Z"}`)
			m.Headers = nil
		}), "id: missing"},
		{"no time", mod(func(m *kafka.Message) {
			m.Value = []byte(`{"id":"i","rule_id":"r","cluster":"c","severity":"low"}`)
			m.Headers = nil
		}), "time: missing"},
		{"two values", mod(func(m *kafka.Message) { m.Value = append(m.Value, []byte(" {}")...) }), "more than one JSON value"},
	} {
		if _, err := DecodeAlertMessage(tc.m); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// FuzzDecodeAlertMessage: any value either decodes into an alert with the
// required fields or is refused; never a panic.
func FuzzDecodeAlertMessage(f *testing.F) {
	b, _ := json.Marshal(notifytest.PrivilegedPod(0, "p"))
	f.Add(b)
	f.Add([]byte(`{"id":"i","rule_id":"r","cluster":"c","severity":"low","time":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"severity":7}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, v []byte) {
		a, err := DecodeAlertMessage(kafka.Message{Value: v})
		if err != nil {
			return
		}
		if a.ID == "" || a.RuleID == "" || a.Cluster == "" || a.Time.IsZero() || a.Severity.String() == "" {
			t.Fatalf("accepted an incomplete alert: %+v", a)
		}
		// Whatever is accepted routes without a panic.
		_ = Labels(&a)
	})
}
