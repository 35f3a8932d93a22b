package record

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kubesift/kubesift/internal/testenv"
)

var testOpts = DecodeOptions{
	Cluster: Cluster{Name: "test", UID: "c-uid"},
	Now:     func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) },
}

const (
	auditV1      = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods","verb":"create","user":{"username":"alice","groups":["dev"]},"sourceIPs":["10.0.0.1"],"objectRef":{"resource":"pods","namespace":"default","name":"p","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestReceivedTimestamp":"2025-03-04T06:22:18.819232Z","stageTimestamp":"2025-03-04T06:22:18.822532Z","annotations":{"authorization.k8s.io/decision":"allow"}}`
	auditV1beta1 = `{"kind":"Event","apiVersion":"audit.k8s.io/v1beta1","metadata":{"creationTimestamp":"2018-10-25T14:09:12Z"},"level":"Request","timestamp":"2018-10-25T14:09:12Z","auditID":"b1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces","verb":"create","user":{"username":"bob"}}`
	auditNoAPI   = `{"auditID":"c1","stage":"ResponseStarted","verb":"get","user":{"username":"carol"},"stageTimestamp":"2025-01-01T00:00:00Z"}`
	coreEvent    = `{"kind":"Event","apiVersion":"v1","metadata":{"name":"p.1","namespace":"default","uid":"e1"},"involvedObject":{"kind":"Pod","namespace":"default","name":"p","uid":"pod-uid"},"reason":"BackOff","count":7,"lastTimestamp":"2025-02-02T00:00:00Z","type":"Warning"}`
	eventsEvent  = `{"kind":"Event","apiVersion":"events.k8s.io/v1","metadata":{"name":"p.2","namespace":"default","uid":"e2"},"regarding":{"kind":"Pod","namespace":"default","name":"p","uid":"pod-uid"},"reason":"Killing","series":{"count":3,"lastObservedTime":"2025-02-03T00:00:00.000000Z"},"eventTime":"2025-02-01T00:00:00.000000Z","reportingController":"kubelet","reportingInstance":"n1","action":"Kill","type":"Normal"}`
)

func decodeString(t *testing.T, in string) (ids []string, errs []string) {
	t.Helper()
	d := NewDecoder(strings.NewReader(in), "in.json", testOpts)
	for {
		r, err := d.Next()
		if err == io.EOF {
			return ids, errs
		}
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("non-decode error: %v", err)
			}
			errs = append(errs, err.Error())
			continue
		}
		ids = append(ids, string(r.Source)+" "+r.ID)
	}
}

func TestDecoderForms(t *testing.T) {
	pretty := "{\n  \"kind\": \"EventList\",\n  \"apiVersion\": \"audit.k8s.io/v1\",\n  \"items\": [\n    " + auditV1 + ",\n    " + auditNoAPI + "\n  ]\n}\n"
	tests := []struct {
		name     string
		in       string
		wantIDs  []string
		wantErrs []string // substrings, in order
	}{
		{"single v1", auditV1, []string{"audit a1:ResponseComplete"}, nil},
		{"v1beta1", auditV1beta1, []string{"audit b1:ResponseComplete"}, nil},
		{"no apiVersion", auditNoAPI, []string{"audit c1:ResponseStarted"}, nil},
		{"EventList", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + auditV1 + `,` + auditNoAPI + `]}`,
			[]string{"audit a1:ResponseComplete", "audit c1:ResponseStarted"}, nil},
		{"pretty-printed list", pretty, []string{"audit a1:ResponseComplete", "audit c1:ResponseStarted"}, nil},
		{"NDJSON with blank lines", auditV1 + "\n\n" + auditV1beta1 + "\r\n" + auditNoAPI,
			[]string{"audit a1:ResponseComplete", "audit b1:ResponseComplete", "audit c1:ResponseStarted"}, nil},
		{"two documents on one line", auditV1 + " " + auditNoAPI, []string{"audit a1:ResponseComplete", "audit c1:ResponseStarted"}, nil},
		{"empty object then a document on one line", "{} " + auditNoAPI, []string{"audit c1:ResponseStarted"}, []string{"in.json:1: (document): kind missing"}},
		{"JSON array", "[" + auditV1 + "," + coreEvent + "]", []string{"audit a1:ResponseComplete", "event e1:7"}, nil},
		{"core/v1 Event", coreEvent, []string{"event e1:7"}, nil},
		{"events.k8s.io Event uses series count", eventsEvent, []string{"event e2:3"}, nil},
		{"core EventList", `{"kind":"EventList","apiVersion":"v1","items":[` + coreEvent + `]}`, []string{"event e1:7"}, nil},
		{"kubectl List", `{"kind":"List","apiVersion":"v1","items":[` + eventsEvent + `]}`, []string{"event e2:3"}, nil},
		{"AKS wrapper with string log", `{"category":"kube-audit","properties":{"log":` + jsonQuote(auditV1) + `}}`, []string{"audit a1:ResponseComplete"}, nil},
		{"AKS wrapper with object log", `{"category":"kube-audit","properties":{"log":` + auditV1 + `}}`, []string{"audit a1:ResponseComplete"}, nil},
		{"Azure Monitor records batch", `{"records":[{"category":"kube-audit","properties":{"log":` + jsonQuote(auditV1) + `}},{"category":"kube-audit","properties":{"log":` + auditNoAPI + `}}]}`,
			[]string{"audit a1:ResponseComplete", "audit c1:ResponseStarted"}, nil},
		{"Azure records with a bad entry keeps the others", `{"records":[{"category":"kube-audit","properties":{"log":"nope"}},{"properties":{"log":` + jsonQuote(auditV1) + `}}]}`,
			[]string{"audit a1:ResponseComplete"}, []string{"in.json:1: records[0].properties.log: does not hold a JSON object"}},
		{"Azure records not a list", `{"records":null}`, nil, []string{"in.json:1: records: is not a JSON array"}},
		{"CloudWatch subscription payload", `{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"/aws/eks/prod/cluster","logStream":"kube-apiserver-audit-1","logEvents":[{"id":"1","timestamp":1,"message":` + jsonQuote(auditV1) + `},{"id":"2","timestamp":2,"message":` + jsonQuote(auditV1beta1) + `}]}`,
			[]string{"audit a1:ResponseComplete", "audit b1:ResponseComplete"}, nil},
		{"Firehose objects written back to back", `{"logEvents":[{"message":` + jsonQuote(auditV1) + `}]}{"logEvents":[{"message":` + jsonQuote(auditNoAPI) + `}]}`,
			[]string{"audit a1:ResponseComplete", "audit c1:ResponseStarted"}, nil},
		{"CloudWatch filter-log-events output", `{"events":[{"logStreamName":"kube-apiserver-audit-1","timestamp":1,"message":` + jsonQuote(auditNoAPI) + `,"eventId":"e"}],"searchedLogStreams":[]}`,
			[]string{"audit c1:ResponseStarted"}, nil},
		{"CloudWatch bad log events name the item", `{"logEvents":[{"id":"1"},{"message":"not json"},{"message":5},{"message":` + jsonQuote(auditV1) + `}]}`,
			[]string{"audit a1:ResponseComplete"}, []string{"in.json:1: logEvents[0].message: missing", "in.json:1: logEvents[1].message: does not hold a JSON object", "in.json:1: logEvents[2].message: cannot use JSON number as string"}},
		{"GKE entry", `{"protoPayload":{"methodName":"io.k8s.core.v1.pods.create","resourceName":"core/v1/namespaces/default/pods/p","authenticationInfo":{"principalEmail":"dave"},"status":{"code":7}},"insertId":"g1","operation":{"id":"op1"},"timestamp":"2025-07-13T08:38:39.127266Z"}`,
			[]string{"audit op1:ResponseComplete"}, nil},
		{"malformed line between good ones", auditV1 + "\n{\"kind\": \n" + auditNoAPI,
			[]string{"audit a1:ResponseComplete", "audit c1:ResponseStarted"}, []string{"in.json:2: invalid JSON"}},
		{"wrong type names the field", `{"kind": 0}`, nil, []string{"in.json:1: kind: cannot use JSON number as string"}},
		{"bad field inside a list item names the item", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + auditV1 + `,{"auditID":"x","stage":"ResponseComplete","user":{"username":5}}]}`,
			[]string{"audit a1:ResponseComplete"}, []string{"in.json:1: items[1].user.username: cannot use JSON number as string"}},
		{"missing auditID", `{"apiVersion":"audit.k8s.io/v1","kind":"Event","stage":"ResponseComplete"}`, nil, []string{"in.json:1: auditID: missing"}},
		{"unknown kind", `{"kind":"Pod","apiVersion":"v1"}`, nil, []string{`kind "Pod", apiVersion "v1": not an audit event`}},
		{"scalar line", "42\n" + auditV1, []string{"audit a1:ResponseComplete"}, []string{"in.json:1: not an audit event"}},
		{"garbage line", "hello world\n" + auditV1, []string{"audit a1:ResponseComplete"}, []string{"in.json:1: invalid JSON"}},
		{"truncated last line", auditV1 + "\n" + auditV1[:40], []string{"audit a1:ResponseComplete"}, []string{"in.json:2: invalid JSON"}},
		{"unknown fields ignored", `{"apiVersion":"audit.k8s.io/v1","kind":"Event","auditID":"u1","stage":"Panic","futureField":{"x":[1,2]}}`,
			[]string{"audit u1:Panic"}, nil},
		{"bad time names the document", `{"apiVersion":"audit.k8s.io/v1","kind":"Event","auditID":"t1","stage":"Panic","stageTimestamp":"yesterday"}`,
			nil, []string{"in.json:1: (document): parsing time"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ids, errs := decodeString(t, tc.in)
			if strings.Join(ids, ",") != strings.Join(tc.wantIDs, ",") {
				t.Errorf("ids = %v, want %v", ids, tc.wantIDs)
			}
			if len(errs) != len(tc.wantErrs) {
				t.Fatalf("errors = %q, want %d matching %q", errs, len(tc.wantErrs), tc.wantErrs)
			}
			for i, want := range tc.wantErrs {
				if !strings.Contains(errs[i], want) {
					t.Errorf("error %d = %q, want it to contain %q", i, errs[i], want)
				}
			}
		})
	}
}

func jsonQuote(s string) string {
	var b bytes.Buffer
	b.WriteByte('"')
	for _, c := range s {
		switch c {
		case '"', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	b.WriteByte('"')
	return b.String()
}

func TestRecordFields(t *testing.T) {
	recs, errs := DecodeAll([]byte(auditV1+"\n"+coreEvent+"\n"+eventsEvent), "x", testOpts)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	a, c, e := recs[0], recs[1], recs[2]
	tests := []struct{ name, got, want string }{
		{"audit key is cluster/user", a.Key, "test/alice"},
		{"audit event time is stage time", a.EventTime.Format(time.RFC3339Nano), "2025-03-04T06:22:18.822532Z"},
		{"audit api version", a.APIVersion, APIAuditV1},
		{"audit observed", a.ObservedTime.Format(time.RFC3339), "2026-01-02T03:04:05Z"},
		{"audit typed view", a.Audit.ObjectRef.Resource, "pods"},
		{"cluster stamped", a.Cluster.Name + "/" + a.Cluster.UID, "test/c-uid"},
		{"core key is involved object", c.Key, "test/pod-uid"},
		{"core time", c.EventTime.Format(time.RFC3339), "2025-02-02T00:00:00Z"},
		{"core typed view", c.CoreEvent.Reason, "BackOff"},
		{"events time is series last observed", e.EventTime.Format(time.RFC3339), "2025-02-03T00:00:00Z"},
		{"events typed view", e.Event.Reason, "Killing"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	if string(a.Object) != auditV1 {
		t.Errorf("Object is not the original JSON: %s", a.Object)
	}
}

func TestDecoderTooLarge(t *testing.T) {
	opts := testOpts
	opts.MaxDocBytes = 1024
	huge := `{"auditID":"big","stage":"ResponseComplete","requestObject":{"x":"` + strings.Repeat("a", 5000) + `"}}`
	hugePretty := "{\n \"auditID\": \"big2\",\n" + strings.Repeat(" \"pad\": \""+strings.Repeat("b", 100)+"\",\n", 30) + " \"stage\": \"Panic\"\n}"
	d := NewDecoder(strings.NewReader(huge+"\n"+auditV1+"\n"+hugePretty+"\n"+auditNoAPI+"\n"), "big.log", opts)
	var got []string
	for {
		r, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("want ErrTooLarge, got %v", err)
			}
			got = append(got, "too-large@"+strings.Split(err.Error(), ": ")[0])
			continue
		}
		got = append(got, r.ID)
	}
	want := "too-large@big.log:1,a1:ResponseComplete,too-large@big.log:3,c1:ResponseStarted"
	if strings.Join(got, ",") != want {
		t.Errorf("got %v, want %s", got, want)
	}
}

func TestDecodeErrorReason(t *testing.T) {
	tests := []struct {
		in, reason string
	}{
		{`{"kind": 0}`, "field"},
		{`{"kind": `, "syntax"},
		{`{"kind":"Pod"}`, "unknown_kind"},
	}
	for _, tc := range tests {
		_, errs := DecodeAll([]byte(tc.in), "r", testOpts)
		if len(errs) != 1 {
			t.Fatalf("%s: errs=%v", tc.in, errs)
		}
		var de *DecodeError
		if !errors.As(errs[0], &de) || de.Reason() != tc.reason {
			t.Errorf("%s: reason of %v = %q, want %q", tc.in, errs[0], Reason(errs[0]), tc.reason)
		}
	}
}

// TestCorpus decodes every file of the shared corpus. Each must decode fully,
// except the one Falco ships as deliberately malformed, which must fail with
// an error naming the file, the line and the field.
func TestCorpus(t *testing.T) {
	dir := testenv.Corpus(t)
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
	malformed := map[string]string{"fal_01_003.json": "fal_01_003.json:1: kind: cannot use JSON number as string"}
	n := 0
	for _, f := range files {
		base := filepath.Base(f)
		if strings.HasSuffix(base, ".md") {
			continue
		}
		n++
		t.Run(base, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			recs, errs := DecodeAll(data, base, testOpts)
			if want, ok := malformed[base]; ok {
				if len(errs) != 1 || !strings.Contains(errs[0].Error(), want) {
					t.Fatalf("want one error containing %q, got %v", want, errs)
				}
				return
			}
			if len(errs) > 0 {
				t.Fatalf("decode errors: %v", errs)
			}
			if len(recs) == 0 {
				t.Fatal("no records")
			}
			for _, r := range recs {
				if r.ID == "" || r.Key == "" || r.EventTime.IsZero() || r.Audit == nil {
					t.Errorf("incomplete record %+v", r)
				}
			}
		})
	}
	if n < 49 {
		t.Errorf("corpus has %d files, expected the falco and elastic sets (>= 49)", n)
	}
}

// TestAuditLiteMatchesPlainDecode checks the fast path for large bodies
// against a plain decode of every event of the recorded benchmark corpus.
func TestAuditLiteMatchesPlainDecode(t *testing.T) {
	lite := 0
	for line := range bytes.Lines(testenv.BenchAuditLog(t)) {
		line = bytes.TrimSuffix(line, []byte("\n"))
		var p probe
		if scanProbe(line, &p) != nil {
			continue
		}
		var fast, plain auditv1.Event
		if !decodeAuditLite(line, &p, &fast) {
			continue
		}
		lite++
		if err := json.Unmarshal(line, &plain); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fast, plain) {
			t.Fatalf("lite decode differs on %s", plain.AuditID)
		}
	}
	if lite < 100 {
		t.Errorf("only %d events took the lite path", lite)
	}
}

// TestBodyDecoderIsLazy: NewBodyDecoder decodes a list's items as Next asks
// for them (a caller taking records in small batches never holds the whole
// list decoded), and each error of an item carries the outermost item.
func TestBodyDecoderIsLazy(t *testing.T) {
	bad := `{"auditID":"x","stage":"ResponseComplete","user":{"username":5}}`
	tests := []struct {
		name      string
		body      string
		wantItems []string // DecodeError.Item of each error, in order
		wantRecs  int
	}{
		{"event list", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + auditV1 + `,{"kind":"Pod"},` + bad + `,` + auditNoAPI + `]}`,
			[]string{`{"kind":"Pod"}`, bad}, 2},
		{"array of lists: the outer item", ` [{"items":[` + auditV1 + `,1]}]`, []string{`{"items":[` + auditV1 + `,1]}`}, 1},
		{"not in a list", `{"kind":"Pod"}`, []string{""}, 0},
		{"two documents", auditV1 + "\n" + `{"items":[2]}`, []string{"2"}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := NewBodyDecoder([]byte(tc.body), "body", testOpts)
			var items []string
			recs := 0
			for {
				r, err := d.Next()
				if err == io.EOF {
					break
				}
				if len(d.pending) > 1 {
					t.Fatalf("%d results decoded ahead of Next", len(d.pending))
				}
				var de *DecodeError
				switch {
				case errors.As(err, &de):
					items = append(items, string(de.Item))
				case err != nil:
					t.Fatal(err)
				case r.ID == "":
					t.Fatalf("record without id")
				default:
					recs++
				}
			}
			if !reflect.DeepEqual(items, tc.wantItems) || recs != tc.wantRecs {
				t.Errorf("items %q and %d records, want %q and %d", items, recs, tc.wantItems, tc.wantRecs)
			}
		})
	}
}

// TestReuseBuffer checks DecodeOptions.ReuseBuffer: each record is the same
// as without it when it is returned, and every string it holds keeps its
// bytes after the buffer and the record have been used again and again:
// no string aliases the memory the decoder reuses.
func TestReuseBuffer(t *testing.T) {
	pretty := "{\n  \"kind\": \"EventList\",\n  \"apiVersion\": \"audit.k8s.io/v1\",\n  \"items\": [\n    " + auditV1 + ",\n    " + auditNoAPI + "\n  ]\n}\n"
	list := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + auditV1 + `,` + auditNoAPI + `]}`
	tests := []struct {
		name string
		in   string
	}{
		{"bench corpus", string(testenv.BenchAuditLog(t))},
		{"forms", strings.Join([]string{auditV1, auditV1beta1, auditNoAPI, coreEvent, eventsEvent, list, "not json", `{"auditID":`, auditV1 + " " + auditNoAPI, strings.Repeat(" ", 3) + auditV1}, "\n") + "\n" + pretty},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			decode := func(reuse bool, each func(i int, r *Record, err error)) {
				opts := testOpts
				opts.ReuseBuffer = reuse
				d := NewDecoder(strings.NewReader(tc.in), "in.json", opts)
				for i := 0; ; i++ {
					r, err := d.Next()
					if err == io.EOF {
						return
					}
					each(i, r, err)
				}
			}
			var want []*Record
			var wantErrs []string
			decode(false, func(_ int, r *Record, err error) {
				want = append(want, r)
				if err != nil {
					wantErrs = append(wantErrs, err.Error())
				}
			})
			var held, copies []string // every string of every record, and a copy of each
			var errs []string
			n := 0
			decode(true, func(i int, r *Record, err error) {
				n++
				if err != nil {
					errs = append(errs, err.Error())
				}
				if i >= len(want) || !reflect.DeepEqual(r, want[i]) {
					t.Fatalf("record %d differs from the one decoded without ReuseBuffer", i)
				}
				for _, s := range stringsOf(reflect.ValueOf(r)) {
					held, copies = append(held, s), append(copies, strings.Clone(s))
				}
			})
			if n != len(want) || !reflect.DeepEqual(errs, wantErrs) {
				t.Fatalf("%d records, errors %q; want %d, %q", n, errs, len(want), wantErrs)
			}
			if len(held) == 0 {
				t.Fatal("no strings held")
			}
			for i := range held {
				if held[i] != copies[i] {
					t.Fatalf("a string a record held changed after later records were read: %q, was %q", held[i], copies[i])
				}
			}
			// DecodeAll keeps every record: it ignores the option.
			opts := testOpts
			opts.ReuseBuffer = true
			all, _ := DecodeAll([]byte(tc.in), "in.json", opts)
			var wantRecs []*Record
			for _, r := range want {
				if r != nil {
					wantRecs = append(wantRecs, r)
				}
			}
			if !reflect.DeepEqual(all, wantRecs) {
				t.Errorf("DecodeAll with ReuseBuffer: %d records, not the %d decoded one by one", len(all), len(wantRecs))
			}
		})
	}
}

// stringsOf returns every string reachable from v: fields, elements, map
// keys and values, through pointers and interfaces.
func stringsOf(v reflect.Value) []string {
	var out []string
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.String:
			out = append(out, v.String())
		case reflect.Pointer, reflect.Interface:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Struct:
			for i := range v.NumField() {
				walk(v.Field(i))
			}
		case reflect.Slice, reflect.Array:
			for i := range v.Len() {
				walk(v.Index(i))
			}
		case reflect.Map:
			for it := v.MapRange(); it.Next(); {
				walk(it.Key())
				walk(it.Value())
			}
		}
	}
	walk(v)
	return out
}
