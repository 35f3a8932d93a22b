package replay

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/collector/redact"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/record"
)

// memPublisher keeps what it is given; it refuses the first refuse calls
// with backpressure.
type memPublisher struct {
	mu     sync.Mutex
	recs   []*record.Record
	dls    []collector.DeadLetter
	refuse int
}

func (p *memPublisher) Publish(_ context.Context, recs []*record.Record) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.refuse > 0 {
		p.refuse--
		return collector.ErrBackpressure
	}
	p.recs = append(p.recs, recs...)
	return nil
}

func (p *memPublisher) PublishDeadLetters(_ context.Context, dls []collector.DeadLetter) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dls = append(p.dls, dls...)
	return nil
}

func sanitizer(t *testing.T) *redact.Sanitizer {
	t.Helper()
	c := config.Default().Collector
	s, err := redact.New(c.Redaction, c.Size, c.DeadLetterMaxBytes, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const sample = "../../cmd/kubesift/sample/audit.log"

func TestReplay(t *testing.T) {
	raw, err := os.ReadFile(sample)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Count(string(raw), "\n")
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(raw)
	_ = zw.Close()
	event := `{"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"name":"web.1","namespace":"shop","uid":"u-1","resourceVersion":"7"},"reason":"BackOff","note":"Back-off restarting failed container","type":"Warning","regarding":{"kind":"Pod","namespace":"shop","name":"web"},"reportingController":"kubelet","eventTime":"2026-11-25T19:19:25.000000Z"}` + "\n"
	bad := string(raw[:strings.IndexByte(string(raw), '\n')+1]) + "{not json\n" + event
	// What an EKS cluster's audit log looks like after a CloudWatch Logs
	// subscription and Firehose: gzipped DATA_MESSAGE payloads, back to back,
	// each holding some audit events as message strings.
	var cw, cwgz bytes.Buffer
	auditLines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	for i := 0; i < len(auditLines); i += 10 {
		type logEvent struct {
			ID      string `json:"id"`
			Message string `json:"message"`
		}
		payload := struct {
			MessageType string     `json:"messageType"`
			LogGroup    string     `json:"logGroup"`
			LogEvents   []logEvent `json:"logEvents"`
		}{MessageType: "DATA_MESSAGE", LogGroup: "/aws/eks/prod/cluster"}
		for j := i; j < i+10 && j < len(auditLines); j++ {
			payload.LogEvents = append(payload.LogEvents, logEvent{ID: strconv.Itoa(j), Message: auditLines[j]})
		}
		b, err := json.Marshal(payload)
		if err != nil {
			t.Fatal(err)
		}
		cw.Write(b)
	}
	zw = gzip.NewWriter(&cwgz)
	_, _ = zw.Write(cw.Bytes())
	_ = zw.Close()

	tests := []struct {
		name      string
		paths     func() []string
		refuse    int
		wantRecs  int
		wantDLs   int
		wantAudit int64
		wantEvent int64
		dlLine    int
	}{
		{name: "audit log", paths: func() []string { return []string{write("a.log", raw)} }, wantRecs: lines, wantAudit: int64(lines)},
		{name: "gzip", paths: func() []string { return []string{write("a.log.gz", gz.Bytes())} }, wantRecs: lines, wantAudit: int64(lines)},
		{name: "EKS audit log through CloudWatch and Firehose", paths: func() []string { return []string{write("firehose-1.gz", cwgz.Bytes())} },
			wantRecs: lines, wantAudit: int64(lines)},
		{name: "backpressure is waited out", refuse: 3, paths: func() []string { return []string{write("a.log", raw)} }, wantRecs: lines, wantAudit: int64(lines)},
		{name: "bad line is a dead letter, the rest publish", paths: func() []string { return []string{write("bad.ndjson", []byte(bad))} },
			wantRecs: 2, wantDLs: 1, wantAudit: 1, wantEvent: 1, dlLine: 2},
		{name: "directory: replayable files in name order", paths: func() []string {
			d := filepath.Join(dir, "scenario")
			_ = os.MkdirAll(d, 0o750)
			_ = os.WriteFile(filepath.Join(d, "audit.log"), raw, 0o600)
			_ = os.WriteFile(filepath.Join(d, "events.ndjson"), []byte(event), 0o600)
			_ = os.WriteFile(filepath.Join(d, "README.md"), []byte("# not replayed"), 0o600)
			return []string{d}
		}, wantRecs: lines + 1, wantAudit: int64(lines), wantEvent: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pub := &memPublisher{refuse: tc.refuse}
			r, err := New(Options{Paths: tc.paths(), Publisher: pub, Sanitizer: sanitizer(t), Cluster: record.Cluster{Name: "local"}, BatchSize: 7})
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			if len(pub.recs) != tc.wantRecs || len(pub.dls) != tc.wantDLs {
				t.Fatalf("records %d dead letters %d, want %d and %d", len(pub.recs), len(pub.dls), tc.wantRecs, tc.wantDLs)
			}
			p := r.Progress()
			if p.Published != int64(tc.wantRecs) || p.Audit != tc.wantAudit || p.Events != tc.wantEvent || p.DeadLetters != int64(tc.wantDLs) {
				t.Errorf("progress %+v", p)
			}
			for _, rec := range pub.recs {
				if rec.Cluster.Name != "local" {
					t.Fatalf("record %s without the cluster", rec.ID)
				}
			}
			if tc.wantDLs > 0 {
				dl := pub.dls[0]
				if dl.Line != tc.dlLine || dl.Source != Source || !strings.Contains(dl.Error, "bad.ndjson:2") || !strings.HasPrefix(string(dl.Data), "{not json [kubesift: unparsable input of 9 bytes") {
					t.Errorf("dead letter %+v (data %q)", dl, dl.Data)
				}
			}
		})
	}
}

func TestExpandErrorsNameThePath(t *testing.T) {
	empty := t.TempDir()
	for _, tc := range []struct{ path, want string }{
		{"/nonexistent/x.log", "/nonexistent/x.log"},
		{empty, empty},
	} {
		if _, err := Expand([]string{tc.path}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Expand(%s) = %v, want an error naming it", tc.path, err)
		}
	}
}

func TestReplayRedacts(t *testing.T) {
	// A Secret created with its data in the request body: the value must
	// not reach the publisher.
	line := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"5b6c1d0e-0000-4000-8000-000000000001","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/shop/secrets","verb":"create","user":{"username":"alice"},"objectRef":{"resource":"secrets","namespace":"shop","name":"db","apiVersion":"v1"},"responseStatus":{"code":201},"requestObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db"},"data":{"password":"cGxhbnRlZC1zM2NyZXQ="}},"requestReceivedTimestamp":"2026-11-25T19:19:25.000000Z","stageTimestamp":"2026-11-25T19:19:25.100000Z"}` + "\n"
	pub := replayFile(t, "s.log", line)
	if len(pub.recs) != 1 {
		t.Fatalf("%d records", len(pub.recs))
	}
	if bytes.Contains(pub.recs[0].Object, []byte("cGxhbnRlZC1zM2NyZXQ=")) {
		t.Fatal("the Secret's value reached the publisher")
	}
}

// TestReplayTruncatedLineSwallowsNext: a line cut short runs on into the
// next one in the decoder's eyes; the dead letter must hold both, so the
// second line is not lost between the records and the dead letters.
func TestReplayTruncatedLineSwallowsNext(t *testing.T) {
	raw, err := os.ReadFile(sample)
	if err != nil {
		t.Fatal(err)
	}
	good := strings.SplitN(string(raw), "\n", 2)[0]
	data := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"cut-he` + "\n" + "garbage here\n" + good + "\n"
	pub := replayFile(t, "cut.log", data)
	if len(pub.recs) != 1 || len(pub.dls) != 1 {
		t.Fatalf("records %d dead letters %d, want 1 and 1", len(pub.recs), len(pub.dls))
	}
	if dl := pub.dls[0]; !strings.Contains(string(dl.Data), "cut-he") || !strings.Contains(string(dl.Data), "garbage here") || dl.Line != 1 {
		t.Fatalf("dead letter line %d data %q: want both bad lines", dl.Line, dl.Data)
	}
}

// replayFile writes data to a file called name, replays it to the end and
// returns what the publisher got.
func replayFile(t *testing.T, name, data string) *memPublisher {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	pub := &memPublisher{}
	r, err := New(Options{Paths: []string{p}, Publisher: pub, Sanitizer: sanitizer(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return pub
}
