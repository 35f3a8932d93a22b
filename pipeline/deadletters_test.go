package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/testenv"
)

// writeMessages writes msgs to topic with a transport of its own: a shared
// one may hold metadata from before the topic was created and refuse it.
func writeMessages(t *testing.T, brokers []string, topic string, msgs ...kafka.Message) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll,
		BatchTimeout: 5 * time.Millisecond, Transport: &kafka.Transport{}}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("write to %s: %v", topic, err)
	}
}

// readDeadLetterFile decodes every line of path.
func readDeadLetterFile(t *testing.T, path string) []DeadLetterLine {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []DeadLetterLine
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var l DeadLetterLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%s: %v: %s", path, err, sc.Bytes())
		}
		out = append(out, l)
	}
	return out
}

// TestSaveDeadLetters (real Kafka): every message of the dead-letter topic
// becomes one line with its key, headers and value (text as text, other
// bytes as base64); with a mark file a later save appends only what came
// since, without one it appends the whole topic again (an in-memory
// broker's topic starts empty, so nothing is repeated there).
func TestSaveDeadLetters(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	run := fmt.Sprint(time.Now().UnixNano())
	text := kafka.Message{Key: []byte("local/alice"), Value: []byte(`{"kind":"Event", oops`),
		Headers: []kafka.Header{{Key: HeaderDLQStage, Value: []byte(StageDecode)}, {Key: "kubesift-dlq-line", Value: []byte("1")}}}
	binary := kafka.Message{Value: []byte{0xff, 0xfe, 0x00}}
	later := kafka.Message{Value: []byte("later")}

	tests := []struct {
		name      string
		mark      bool
		wantFirst int // lines after the first save (text, binary)
		wantAfter int // lines after a save with nothing new, then one more message saved
	}{
		{name: "with a mark, nothing twice", mark: true, wantFirst: 2, wantAfter: 3},
		{name: "without a mark, the whole topic each time", mark: false, wantFirst: 2, wantAfter: 2 + 2 + 3},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			topic := fmt.Sprintf("it-dlq-save-%s-%d", run, i)
			testenv.CreateTopics(t, brokers[0], 1, topic)
			dir := t.TempDir()
			path, mark := filepath.Join(dir, "dead-letters.ndjson"), ""
			if tc.mark {
				mark = filepath.Join(dir, "dead-letters.next")
			}
			save := func() int {
				t.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				n, err := SaveDeadLetters(ctx, brokers[0], topic, path, mark)
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
			if n := save(); n != 0 || readDeadLetterFile(t, path) != nil {
				t.Fatalf("an empty topic saved %d and wrote a file", n)
			}
			writeMessages(t, brokers, topic, text, binary)
			if n := save(); n != 2 {
				t.Fatalf("saved %d, want 2", n)
			}
			lines := readDeadLetterFile(t, path)
			if len(lines) != tc.wantFirst {
				t.Fatalf("%d lines, want %d", len(lines), tc.wantFirst)
			}
			if l := lines[0]; l.Offset != 0 || l.Key != "local/alice" || l.Value != string(text.Value) ||
				l.Headers[HeaderDLQStage] != StageDecode || l.Headers["kubesift-dlq-line"] != "1" || l.Time.IsZero() {
				t.Errorf("text dead letter: %+v", l)
			}
			if l := lines[1]; l.Offset != 1 || l.Value != "" || !bytes.Equal(l.ValueBase64, binary.Value) {
				t.Errorf("binary dead letter: %+v", l)
			}
			save()
			writeMessages(t, brokers, topic, later)
			save()
			if lines := readDeadLetterFile(t, path); len(lines) != tc.wantAfter || lines[len(lines)-1].Value != "later" {
				t.Fatalf("%d lines ending %+v, want %d ending with the later message", len(lines), lines[len(lines)-1], tc.wantAfter)
			}
		})
	}
}
