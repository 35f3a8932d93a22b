package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/atomicfile"
)

// DeadLetterLine is one line of the file SaveDeadLetters writes (run's
// dead-letters.ndjson).
type DeadLetterLine struct {
	Offset  int64             `json:"offset"`
	Time    time.Time         `json:"time"`
	Key     string            `json:"key,omitempty"`
	Headers map[string]string `json:"headers"`
	// Value is the message when it is text; ValueBase64 otherwise.
	Value       string `json:"value,omitempty"`
	ValueBase64 []byte `json:"value_base64,omitempty"`
}

// deadLetterBatchBytes bounds one fetch of SaveDeadLetters; it matches the
// largest message the embedded broker takes.
const deadLetterBatchBytes = 64 << 20

// SaveDeadLetters appends the messages of partition 0 of topic (run's
// embedded, single-partition dead-letter topic) to path, one DeadLetterLine
// each, and returns how many it wrote. For a broker that keeps its log on
// disk, mark names the file holding the next offset to save (written by
// atomic rename), so the next run does not append the old dead letters
// again; "" for an in-memory broker, whose topic starts empty. No file is
// written when there are none. ctx's deadline bounds the reading.
func SaveDeadLetters(ctx context.Context, broker, topic, path, mark string) (int, error) {
	conn, err := kafka.DialLeader(ctx, "tcp", broker, topic, 0)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	first, last, err := conn.ReadOffsets()
	if err != nil {
		return 0, err
	}
	first = savedUpTo(mark, first, last)
	if last <= first {
		return 0, nil
	}
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetReadDeadline(dl); err != nil {
			return 0, err
		}
	}
	if _, err := conn.Seek(first, kafka.SeekAbsolute); err != nil {
		return 0, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return 0, err
	}
	n, err := copyDeadLetters(conn, first, last, json.NewEncoder(f))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil || mark == "" {
		return n, err
	}
	return n, atomicfile.WriteFile(mark, []byte(strconv.FormatInt(last, 10)+"\n"))
}

// savedUpTo is the next offset to save according to mark, or first when
// mark is unset, unreadable or outside (first, last].
func savedUpTo(mark string, first, last int64) int64 {
	if mark == "" {
		return first
	}
	b, err := os.ReadFile(mark)
	if err != nil {
		return first
	}
	next, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || next <= first || next > last {
		return first
	}
	return next
}

// copyDeadLetters encodes the messages [first, last) read from conn.
func copyDeadLetters(conn *kafka.Conn, first, last int64, enc *json.Encoder) (int, error) {
	n := 0
	err := readRange(conn, first, last, func(m kafka.Message) (bool, error) {
		if err := enc.Encode(deadLetterLine(m)); err != nil {
			return false, err
		}
		n++
		return true, nil
	})
	return n, err
}

// readRange hands fn the messages [first, last) of conn's partition, conn
// positioned at first, until fn says stop or returns an error.
func readRange(conn *kafka.Conn, first, last int64, fn func(kafka.Message) (more bool, err error)) (err error) {
	batch := conn.ReadBatch(1, deadLetterBatchBytes)
	defer func() {
		// After a failed read the batch's error is the one returned
		// already; after a clean read it is the only report.
		if cerr := batch.Close(); err == nil {
			err = cerr
		}
	}()
	for next := first; next < last; {
		m, err := batch.ReadMessage()
		if errors.Is(err, io.EOF) {
			// The batch ended before the high watermark: fetch the next.
			if err := batch.Close(); err != nil {
				return err
			}
			batch = conn.ReadBatch(1, deadLetterBatchBytes)
			continue
		}
		if err != nil {
			return err
		}
		next = m.Offset + 1
		if m.Offset >= last {
			return nil // a batch may run past the end asked for
		}
		more, err := fn(m)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// deadLetterLine is m as a line of the dead-letter file.
func deadLetterLine(m kafka.Message) *DeadLetterLine {
	line := &DeadLetterLine{Offset: m.Offset, Time: m.Time.UTC(), Key: string(m.Key), Headers: map[string]string{}}
	for _, h := range m.Headers {
		line.Headers[h.Key] = string(h.Value)
	}
	if utf8.Valid(m.Value) {
		line.Value = string(m.Value)
	} else {
		line.ValueBase64 = m.Value
	}
	return line
}
