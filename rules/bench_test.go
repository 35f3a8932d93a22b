package rules

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"

	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// The benchmarks run on rules/testdata/bench-audit.log.gz, recorded from the
// real test-ground kube-apiserver by hack/record-bench-corpus.sh (median event
// ~1.5 KB). Each reports ns/event and events/s; allocs/op is per event too,
// since one op is one event. BenchmarkBaselineJSONMap, in the same run, is the
// floor any decoder must pay (encoding/json into a generic map), so the decode
// figure can be read against it on a noisy machine. Decode plus rules as
// users run it, beside an older commit's binary in the same run, is
// hack/bench-eval.sh (make bench); the hand-written decoders and the body
// parser have their general paths beside them in record's benchmarks.

func benchCorpus(tb testing.TB) [][]byte {
	tb.Helper()
	lines := bytes.Split(bytes.TrimSuffix(testenv.BenchAuditLog(tb), []byte("\n")), []byte("\n"))
	if len(lines) == 0 {
		tb.Fatal("empty corpus")
	}
	return lines
}

func decodeLine(tb testing.TB, line []byte) *record.Record {
	d := record.NewDecoder(bytes.NewReader(line), "bench", record.DecodeOptions{Cluster: record.Cluster{Name: "bench"}})
	r, err := d.Next()
	if err != nil && err != io.EOF {
		tb.Fatal(err)
	}
	return r
}

// corpora returns the whole corpus and the part of it of events of at most
// 4 KiB (90% of events): the whole corpus has a heavy tail of list responses
// recorded at RequestResponse level (mean ~11 KB), the subset is what a
// production audit policy mostly produces (median ~1.4 KB).
func corpora(b *testing.B) map[string][][]byte {
	all := benchCorpus(b)
	var small [][]byte
	for _, l := range all {
		if len(l) <= 4096 {
			small = append(small, l)
		}
	}
	return map[string][][]byte{"all": all, "le4KiB": small}
}

func meanBytes(lines [][]byte) int64 {
	n := 0
	for _, l := range lines {
		n += len(l)
	}
	return int64(n / len(lines))
}

func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/event")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// forCorpora runs fn as a sub-benchmark per corpus, with bytes/op set to the
// corpus's mean event size so MB/s is printed too.
func forCorpora(b *testing.B, fn func(b *testing.B, lines [][]byte)) {
	for _, name := range []string{"all", "le4KiB"} {
		lines := corpora(b)[name]
		b.Run(name, func(b *testing.B) {
			b.SetBytes(meanBytes(lines))
			b.ReportAllocs()
			fn(b, lines)
			reportRate(b)
		})
	}
}

func BenchmarkBaselineJSONMap(b *testing.B) {
	forCorpora(b, func(b *testing.B, lines [][]byte) {
		for i := 0; i < b.N; i++ {
			var m map[string]any
			if err := json.Unmarshal(lines[i%len(lines)], &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// stream decodes b.N records from lines, joined and read again from the
// start as often as needed, through one Decoder per pass as `kubesift rules
// eval` reads a file (ReuseBuffer: fn keeps no record), and hands each to fn.
func stream(b *testing.B, lines [][]byte, fn func(*record.Record)) {
	data := append(bytes.Join(lines, []byte("\n")), '\n')
	for n := 0; n < b.N; {
		d := record.NewDecoder(bytes.NewReader(data), "bench", record.DecodeOptions{Cluster: record.Cluster{Name: "bench"}, ReuseBuffer: true})
		for ; n < b.N; n++ {
			r, err := d.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			fn(r)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	forCorpora(b, func(b *testing.B, lines [][]byte) {
		stream(b, lines, func(*record.Record) {})
	})
}

// BenchmarkRules is rules only: records are decoded before the timer starts;
// Eval builds the rule environment (and parses request/response objects
// when a candidate rule needs them) every time, as it does live.
func BenchmarkRules(b *testing.B) {
	forCorpora(b, func(b *testing.B, lines [][]byte) {
		b.StopTimer()
		recs := make([]*record.Record, len(lines))
		for i, l := range lines {
			recs[i] = decodeLine(b, l)
		}
		e, err := New(LoadOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(e.Set().rules)), "rules")
		b.StartTimer()
		for i := 0; i < b.N; i++ {
			e.Eval(recs[i%len(recs)])
		}
	})
}

func BenchmarkDecodeRules(b *testing.B) {
	forCorpora(b, func(b *testing.B, lines [][]byte) {
		b.StopTimer()
		e, err := New(LoadOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		stream(b, lines, func(r *record.Record) { e.Eval(r) })
	})
}
