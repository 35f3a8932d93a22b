package report

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	jsoniter "github.com/json-iterator/go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/internal/obs"
)

// maxLineBytes bounds one document line Dir reads; a longer line is
// skipped without being held. The collector caps records well below it.
const maxLineBytes = 16 << 20

// maxSamples is how many skipped lines the Summary names.
const maxSamples = 5

var docJSON = jsoniter.ConfigCompatibleWithStandardLibrary

// Dir is the Source of an NDJSON output folder of `kubesift run`.
type Dir struct {
	path    string
	indices Indices
	skipped *prometheus.CounterVec
}

// NewDir returns the Source of the folder path, whose files are named
// after indices. reg may be nil.
func NewDir(path string, indices Indices, reg prometheus.Registerer) (*Dir, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("report: %s is not a directory", path)
	}
	d := &Dir{path: path, indices: indices, skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kubesift_report_lines_skipped_total",
		Help: "Lines of an NDJSON output folder the report could not read, by index and reason (not_json, too_long).",
	}, []string{"index", "reason"})}
	if err := obs.Register(reg, d.skipped); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	return d, nil
}

// Summary reads every file of the folder once.
func (d *Dir) Summary(ctx context.Context, w Window) (*Summary, error) {
	a := newAggregator(w)
	a.s.Source = d.path
	type part struct {
		index string
		line  func([]byte) error
	}
	parts := []part{
		{d.indices.Alerts, func(b []byte) error { return decodeInto(b, new(alertDoc), a.alert) }},
		{d.indices.Events, func(b []byte) error { return decodeInto(b, new(eventDoc), a.event) }},
		{d.indices.Audit, func(b []byte) error {
			if t, ok := leadingTimestamp(b); ok {
				a.audit(&auditDoc{Timestamp: t})
				return nil
			}
			return decodeInto(b, new(auditDoc), a.audit)
		}},
		{d.indices.Findings, func(b []byte) error { return decodeInto(b, new(findingDoc), a.finding) }},
		{d.indices.Scores, func(b []byte) error { return decodeInto(b, new(scoreDoc), a.score) }},
	}
	for _, p := range parts {
		if p.index == "" {
			continue
		}
		if err := d.readFile(ctx, &a.s, p.index, p.line); err != nil {
			return nil, err
		}
	}
	return a.summary(), nil
}

// leadingTimestamp reads @timestamp without decoding the document when
// it is the first member, as sink/ecs writes every document. Audit
// documents are most of a folder and the report only counts them, so
// their line is not otherwise checked beyond ending as an object; any
// other shape goes through the decoder.
func leadingTimestamp(b []byte) (time.Time, bool) {
	const prefix = `{"@timestamp":"`
	if !bytes.HasPrefix(b, []byte(prefix)) || b[len(b)-1] != '}' {
		return time.Time{}, false
	}
	end := bytes.IndexByte(b[len(prefix):], '"')
	if end < 0 {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(b[len(prefix):len(prefix)+end]))
	return t, err == nil
}

func decodeInto[T any](b []byte, v *T, use func(*T)) error {
	if err := docJSON.Unmarshal(b, v); err != nil {
		return err
	}
	use(v)
	return nil
}

// readFile feeds each line of <index>.ndjson to line; a missing file is
// an empty index.
func (d *Dir) readFile(ctx context.Context, s *Summary, index string, line func([]byte) error) error {
	name := filepath.Join(d.path, index+".ndjson")
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	buf := make([]byte, 0, 64<<10)
	for n := 1; ; n++ {
		if n%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		b, tooLong, err := readLine(r, buf[:0])
		buf = b[:0]
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("report: %s: line %d: %w", name, n, err)
		}
		switch {
		case tooLong:
			d.skip(s, index, "too_long", fmt.Sprintf("%s:%d: line over %d bytes", filepath.Base(name), n, maxLineBytes))
		case len(b) > 0:
			if jerr := line(b); jerr != nil {
				d.skip(s, index, "not_json", fmt.Sprintf("%s:%d: %s", filepath.Base(name), n, clip(jerr.Error(), 160)))
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
	}
}

func (d *Dir) skip(s *Summary, index, reason, sample string) {
	d.skipped.WithLabelValues(index, reason).Inc()
	s.Skipped++
	if len(s.SkippedSamples) < maxSamples {
		s.SkippedSamples = append(s.SkippedSamples, sample)
	}
}

// readLine appends the next line (without its newline) to buf. A line
// over maxLineBytes is read to its end but not kept: tooLong is set.
func readLine(r *bufio.Reader, buf []byte) (line []byte, tooLong bool, err error) {
	for {
		part, err := r.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(part) > maxLineBytes+1 {
				tooLong, buf = true, buf[:0]
			} else {
				buf = append(buf, part...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if n := len(buf); n > 0 && buf[n-1] == '\n' {
			buf = buf[:n-1]
		}
		return buf, tooLong, err
	}
}
