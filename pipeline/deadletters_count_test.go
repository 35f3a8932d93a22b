package pipeline

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/sink/report"
)

// deadLetterAt is a dead letter of cluster written by source at t.
func deadLetterAt(cluster, source, reason, kind string, t time.Time) kafka.Message {
	hs := []kafka.Header{{Key: record.HeaderCluster, Value: []byte(cluster)},
		{Key: HeaderDLQSource, Value: []byte(source)}, {Key: HeaderDLQReason, Value: []byte(reason)}}
	if kind != "" {
		hs = append(hs, kafka.Header{Key: HeaderDLQKind, Value: []byte(kind)})
	}
	return kafka.Message{Key: []byte(cluster + "/" + reason), Value: []byte(`{"kind":"Event"`), Time: t, Headers: hs}
}

// TestDeadLetterCounter (real Kafka): the dead letters of a window are
// counted per cluster, by kind and by (source, reason), across the
// topic's partitions, and none from before or after the window; a spent
// byte budget says partial; a topic nobody created has none.
func TestDeadLetterCounter(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := fmt.Sprintf("it-dlq-count-%d", time.Now().UnixNano())
	testenv.CreateTopics(t, brokers[0], 2, topic)
	end := time.Now().UTC().Truncate(time.Hour)
	in := func(h int) time.Time { return end.Add(time.Duration(-h) * time.Hour) }
	// Written oldest first, as producers do: Kafka finds offsets by time
	// over each partition's timestamps in order.
	msgs := []kafka.Message{deadLetterAt("prod", SourceProcessor, "es_rejected", kindRecord, end.Add(-30*time.Hour))}
	for h := 20; h > 17; h-- {
		msgs = append(msgs, deadLetterAt("prod", "audit-webhook", "body_too_large", "", in(h)))
	}
	msgs = append(msgs,
		deadLetterAt("prod", SourceProcessor, "es_rejected", kindRecord, in(10)),
		deadLetterAt("dev", "events", "invalid_json", "", in(9)),
		deadLetterAt("prod", SourceProcessor, "es_rejected", kindRecord, in(8)),
		deadLetterAt("dev", "events", "invalid_json", "", in(7)),
		deadLetterAt("prod", "notifier", "undecodable_alert", kindAlert, in(1)),
		deadLetterAt("prod", SourceProcessor, "es_rejected", kindRecord, end),
		deadLetterAt("prod", SourceProcessor, "es_rejected", kindRecord, end.Add(time.Hour)),
	)
	writeMessages(t, brokers, topic, msgs...)
	dialer := &kafka.Dialer{Timeout: 10 * time.Second}
	w := report.Window{From: end.Add(-24 * time.Hour), To: end}
	count := func(topic string, budget int64) *report.DeadLetterTally {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c := &DeadLetterCounter{Dialer: dialer, Brokers: brokers, Topic: topic, MaxBytes: budget}
		tl, err := c.Count(ctx, w)
		if err != nil {
			t.Fatal(err)
		}
		return tl
	}
	tl := count(topic, 0)
	want := &report.DeadLetters{Records: 5, Alerts: 1, Reasons: []report.DeadLetterReason{
		{Source: "audit-webhook", Reason: "body_too_large", Letters: 3},
		{Source: SourceProcessor, Reason: "es_rejected", Letters: 2},
		{Source: "notifier", Reason: "undecodable_alert", Letters: 1},
	}}
	if got := tl.Of("prod"); !reflect.DeepEqual(got, want) {
		t.Errorf("prod\n got %+v\nwant %+v", got, want)
	}
	if got := tl.Of("dev"); got.Records != 2 || got.Alerts != 0 || len(got.Reasons) != 1 {
		t.Errorf("dev: %+v", got)
	}
	if p := count(topic, 1).Of("prod"); !p.Partial || p.Records+p.Alerts >= 6 {
		t.Errorf("a spent budget: %+v, want partial and fewer", p)
	}
	if none := count(topic+"-never-created", 0).Of("prod"); none.Records != 0 || none.Partial {
		t.Errorf("a missing topic: %+v", none)
	}
}
