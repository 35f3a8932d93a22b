package audittail

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kubesift/kubesift/collector/publish/publishtest"
	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// A record the publisher refuses for good (an error other than
// backpressure, every time) is dead-lettered after permanentAttempts tries
// and the tail moves on: its neighbours are published, the position passes
// it, and a restart does not try it again: one line cannot hold back the
// lines after it.
func TestRecordRefusedForGoodIsDeadLetteredAndTheTailMovesOn(t *testing.T) {
	e := newTailEnv(t)
	e.pub.poison = map[string]error{rid("bad"): errors.New("record refused for good")}
	e.write(line("g1", 0) + line("bad", 0) + line("g2", 0))
	e.start()
	testenv.WaitFor(t, "the neighbours", 20*time.Second, func() bool { return e.pub.n(rid("g1")) == 1 && e.pub.n(rid("g2")) == 1 })
	size := int64(len(line("g1", 0) + line("bad", 0) + line("g2", 0)))
	testenv.WaitFor(t, "the position past the file", 5*time.Second, func() bool { return e.tl.Positions()[e.path].Offset == size })
	dls := e.pub.deadLetters()
	if len(dls) != 1 || dls[0].Reason != ReasonPublish || !strings.Contains(dls[0].Error, rid("bad")) || !strings.Contains(string(dls[0].Data), `"auditID":"bad"`) {
		t.Fatalf("dead letters %+v, want one for %s", dls, rid("bad"))
	}
	if got := testutil.ToFloat64(e.tl.m.deadLetters.WithLabelValues(ReasonPublish)); got != 1 {
		t.Errorf("dead_letters{reason=%s} = %v, want 1", ReasonPublish, got)
	}
	e.stop()
	calls := e.pub.calls
	e.write(line("g3", 0))
	e.start()
	testenv.WaitFor(t, "the line after the restart", 10*time.Second, func() bool { return e.pub.n(rid("g3")) == 1 })
	if n := len(e.pub.deadLetters()); n != 1 {
		t.Errorf("%d dead letters after the restart, want still 1", n)
	}
	if e.pub.calls != calls+1 {
		t.Errorf("%d Publish calls after the restart, want 1 (the refused record not tried again)", e.pub.calls-calls)
	}
}

// A line whose requestURI alone is over a megabyte (no body to drop), between
// good lines, through a real publisher (publishtest: kfake, default
// limits): every line reaches Kafka — the big one cut to fit — the position
// passes it, and a restart goes on from there.
func TestMegabyteRequestURILineDoesNotBlockTheTail(t *testing.T) {
	e := newTailEnv(t)
	pub, k := publishtest.New(t, "tail", prometheus.NewRegistry())
	e.pipe = pub
	big := strings.Replace(line("big", 0), "configmaps/x", "configmaps/x?q="+strings.Repeat("a", 1_050_000), 1)
	e.write(line("g1", 0) + big + line("g2", 0))
	e.start()
	onTopic := func(ids ...string) bool {
		got := map[string]bool{}
		for _, m := range testenv.ReadTopic(t, k.Brokers[0], k.Topics.Audit) {
			r, err := record.Unmarshal(m.Value)
			if err != nil {
				t.Fatal(err)
			}
			got[r.ID] = r.Flags.Truncated
		}
		for _, id := range ids {
			if _, ok := got[id]; !ok {
				return false
			}
		}
		return got[rid("big")]
	}
	testenv.WaitFor(t, "every line on Kafka, the big one cut", 20*time.Second, func() bool { return onTopic(rid("g1"), rid("big"), rid("g2")) })
	st, err := os.Stat(e.path)
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the position at the end of the file", 5*time.Second, func() bool { return e.tl.Positions()[e.path].Offset == st.Size() })
	e.stop()
	e.write(line("g3", 0))
	e.start()
	testenv.WaitFor(t, "the line after the restart", 20*time.Second, func() bool { return onTopic(rid("g3")) })
}

// A tail that cannot get past its data — here a publisher that never
// returns — fails its readiness check once its position stayed put for
// stall_after with bytes unread, and passes again once it moves; the tail's
// "started" check alone cannot see this.
func TestStalledTailFailsReadiness(t *testing.T) {
	e := newTailEnv(t)
	e.pub.block = make(chan struct{})
	e.write(line("a1", 0))
	tl := e.start()
	checks := make(chan error, 100)
	w, err := obs.NewStallWatch(100*time.Millisecond, prometheus.NewRegistry(), func(_ string, err error) {
		select {
		case checks <- err:
		default: // the test reads them as it goes; a full buffer only drops repeats
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	w.Add("audit-tail:"+e.path, func() obs.Progress { return tl.Progress(e.path) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	next := func(wantReady bool) error {
		t.Helper()
		for {
			select {
			case err := <-checks:
				if (err == nil) == wantReady {
					return err
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("readiness never became %v", wantReady)
			}
		}
	}
	if err := next(false); !strings.Contains(err.Error(), "stalled") {
		t.Errorf("readiness error %q", err)
	}
	if p := tl.Progress(e.path); p.Position != 0 || p.Pending != int64(len(line("a1", 0))) {
		t.Errorf("progress %+v, want position 0 with the line pending", p)
	}
	close(e.pub.block)
	next(true)
}
