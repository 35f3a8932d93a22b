package publish

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

func objectRecords(t testing.TB) (live, gone *record.Record) {
	t.Helper()
	ref := record.ObjectRef{APIVersion: "v1", Kind: "Pod", Namespace: "ns", Name: "a", UID: "u-a", ResourceVersion: "7"}
	live, err := record.NewObject(ref, []byte(`{"kind":"Pod"}`), testCluster, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ref.ResourceVersion = "8"
	gone, err = record.NewObjectTombstone(ref, testCluster, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return live, gone
}

// A tombstone's nil value must stay nil through the spool's encoding (which
// stores values without a length), while an empty value of another kind
// stays empty.
func TestTombstoneSpoolPayload(t *testing.T) {
	live, gone := objectRecords(t)
	cases := []struct {
		name    string
		rec     *record.Record
		wantNil bool
	}{
		{"object", live, false},
		{"tombstone", gone, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := fromRecord(tc.rec, []byte("objects"))
			if err != nil {
				t.Fatal(err)
			}
			if (m.value == nil) != tc.wantNil || string(m.key) != tc.rec.Key {
				t.Fatalf("message value nil=%v key %q", m.value == nil, m.key)
			}
			back, err := decodePayload(encodePayload(nil, &m))
			if err != nil {
				t.Fatal(err)
			}
			if (back.value == nil) != tc.wantNil || !bytes.Equal(back.value, m.value) || string(back.key) != tc.rec.Key {
				t.Fatalf("after the spool: value nil=%v %q", back.value == nil, back.value)
			}
			if id, _ := header(kafka.Message{Headers: back.headers}, record.HeaderID); id != tc.rec.ID {
				t.Fatalf("id header %q, want %q", id, tc.rec.ID)
			}
		})
	}
	t.Run("dead letter keeps empty data", func(t *testing.T) {
		m := outMsg{kind: kindDLQ, value: []byte{}}
		back, err := decodePayload(encodePayload(nil, &m))
		if err != nil || back.value == nil {
			t.Fatalf("empty dead letter came back nil: %v", err)
		}
	})
}

// A tombstone published while Kafka is unreachable is spooled, survives the
// publisher's restart, and reaches the objects topic as a real tombstone
// (null value) behind the record it deletes.
func TestTombstoneSurvivesOutageInSpool(t *testing.T) {
	dir := t.TempDir()
	cfg := testPublishConfig(dir)
	cfg.AckTimeout = time.Second
	p := newTestPublisher(t, testKafkaConfig([]string{"127.0.0.1:1"}, fakePrefix), cfg, prometheus.NewRegistry())
	live, gone := objectRecords(t)
	publishAll(t, p, []*record.Record{live, gone}, 2)
	if st := p.Stats(); !st.Spooling || st.SpoolBytes == 0 {
		t.Fatalf("nothing spooled with Kafka unreachable: %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	p.Close(ctx) // the writer may still be retrying: fine
	cancel()

	c := fakeCluster(t)
	k := testKafkaConfig(c.ListenAddrs(), fakePrefix)
	p2 := newTestPublisher(t, k, cfg, prometheus.NewRegistry())
	defer closePublisher(t, p2)
	testenv.WaitFor(t, "leftover spool drained", 30*time.Second, func() bool { return p2.Stats().SpoolBytes == 0 })
	msgs := testenv.ReadTopic(t, c.ListenAddrs()[0], k.Topics.Objects)
	if len(msgs) != 2 {
		t.Fatalf("%d messages on the objects topic, want 2", len(msgs))
	}
	if msgs[0].Value == nil || msgs[1].Value != nil || string(msgs[1].Key) != gone.Key {
		t.Fatalf("want the record then a tombstone; values %q, %q", msgs[0].Value, msgs[1].Value)
	}
	if id, _ := header(msgs[1], record.HeaderID); id != gone.ID {
		t.Fatalf("tombstone id %q, want %q", id, gone.ID)
	}
}
