package record

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestEnvelopeFastTakesMarshalOutput checks that every envelope Marshal
// writes for the bench corpus takes the hand-written path and reads as
// json-iterator (the general path) reads it.
func TestEnvelopeFastTakesMarshalOutput(t *testing.T) {
	msgs, _ := wireCorpus(t)
	for i, m := range msgs {
		var fast, general Record
		if !unmarshalEnvelopeFast(m, &fast, &probe{members: make([]member, maxMembers)}) {
			t.Fatalf("message %d: not taken by the fast path: %.300s", i, m)
		}
		if err := fastJSON.Unmarshal(m, &general); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fast, general) {
			t.Fatalf("message %d: fast path differs:\n fast %+v\n general %+v", i, fast, general)
		}
	}
}

// TestEnvelopeFastDeclines lists envelopes the hand-written path leaves to
// the general one.
func TestEnvelopeFastDeclines(t *testing.T) {
	for _, in := range []string{
		`{"schema":1,"ID":"x"}`, `{"schema":1,"id":"x","id":"y"}`, `{"schema":"1"}`, `{"schema":1.0}`,
		`{"event_time":"yesterday"}`, `{"initial_list":1}`, `{"cluster":{"name":1}}`, `{"cluster":{"Name":"a"}}`,
		`{"object":{"a":tru}}`, `{"object":{"a":"\x"}}`, `{"object":{"a":"\ud83d\ude00"}}`, "{\"object\":{\"a\":\"\xff\"}}",
		`{"object":{"a":1}`, `{"object":{"a":01}}`, `{"object":[1,]}`,
	} {
		var r Record
		if unmarshalEnvelopeFast([]byte(in), &r, &probe{}) {
			t.Errorf("accepted %s: %+v", in, r)
		}
	}
}

// FuzzEnvelopeFast checks the hand-written envelope reader against
// encoding/json: whatever it accepts, encoding/json accepts and reads the
// same.
func FuzzEnvelopeFast(f *testing.F) {
	f.Add([]byte(`{"schema":1,"id":"a:b","cluster":{"name":"c","uid":"u"},"source":"audit","api_version":"audit.k8s.io/v1","event_time":"2025-01-01T00:00:00.123Z","observed_time":"2025-01-01T00:00:01Z","key":"c/u","initial_list":false,"flags":{"truncated":true,"redacted":["x"]},"object":{"a":[1,-2e3,"\u00e9\n",true,null,{}]}}`))
	f.Add([]byte(`{"object":null,"x":[1,{"y":2}]}`))
	f.Add([]byte(`{"schema":1,"id":"a1:x","source":"audit","object":{"auditID":"a1","stage":"x","requestObject":{"a":[1,2]},"responseObject":"s"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var fast Record
		if !unmarshalEnvelopeFast(data, &fast, &probe{members: make([]member, maxMembers)}) {
			return
		}
		var std Record
		if err := json.Unmarshal(data, &std); err != nil {
			t.Fatalf("accepted what encoding/json refuses (%v): %q", err, data)
		}
		if !reflect.DeepEqual(fast, std) {
			t.Fatalf("reads %q differently from encoding/json:\n fast %+v\n  std %+v", data, fast, std)
		}
	})
}

// TestUnmarshalDoesNotAliasItsInput: callers hand Unmarshal buffers they
// reuse (a bufio.Scanner's line in collector/replay), so the record must
// not keep pointing into it.
func TestUnmarshalDoesNotAliasItsInput(t *testing.T) {
	msgs, _ := wireCorpus(t)
	for _, m := range msgs[:50] {
		buf := append([]byte(nil), m...)
		r, err := Unmarshal(buf)
		if err != nil {
			t.Fatal(err)
		}
		want := string(r.Object)
		for i := range buf {
			buf[i] = 'x'
		}
		if string(r.Object) != want {
			t.Fatalf("record %s: Object changed with the buffer it was read from", r.ID)
		}
	}
}
