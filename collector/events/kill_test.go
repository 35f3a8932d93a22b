package events

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/record"
)

// The kill -9 test runs two collectors as separate processes: this test
// binary re-executed with childEnv set runs one collector (the package's
// real code) whose publisher appends each acknowledged record ID to a file
// and fsyncs before acknowledging — a durable sink the parent can read even
// after the process is killed. (`kubesift collect` is not wired to the Events
// collector yet; when it is, the same test can run the binary instead.)
const childEnv = "KUBESIFT_EVENTS_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	os.Exit(m.Run())
}

// runChild is the child process: a collector configured from the
// environment, until SIGTERM (clean) or SIGKILL (not).
func runChild() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var cfg config.EventsConfig
	if err := json.Unmarshal([]byte(os.Getenv(childEnv+"_CONFIG")), &cfg); err != nil {
		log.Error("config", "err", err)
		return 2
	}
	rc := &rest.Config{
		Host: os.Getenv(childEnv + "_URL"), BearerToken: os.Getenv(childEnv + "_TOKEN"),
		TLSClientConfig: rest.TLSClientConfig{CAFile: os.Getenv(childEnv + "_CA")}, QPS: 50, Burst: 100,
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		log.Error("client", "err", err)
		return 2
	}
	pub, err := newFilePublisher(os.Getenv(childEnv + "_OUT"))
	if err != nil {
		log.Error("publisher", "err", err)
		return 2
	}
	c, err := New(cfg, record.Cluster{Name: "it"}, cs, pub, nil, log)
	if err != nil {
		log.Error("new", "err", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := c.Run(ctx); err != nil {
		log.Error("run", "err", err)
		return 1
	}
	return 0
}

// filePublisher acknowledges a batch once its IDs are fsynced to a file.
type filePublisher struct {
	mu sync.Mutex
	f  *os.File
}

func newFilePublisher(path string) (*filePublisher, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &filePublisher{f: f}, nil
}

func (p *filePublisher) Publish(_ context.Context, recs []*record.Record) error {
	var b bytes.Buffer
	for _, r := range recs {
		b.WriteString(r.ID)
		b.WriteByte('\n')
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.f.Write(b.Bytes()); err != nil {
		return err
	}
	return p.f.Sync()
}

func (p *filePublisher) PublishDeadLetters(context.Context, []collector.DeadLetter) error { return nil }

// readIDs reads a child's acknowledged IDs (a torn last line is ignored).
func readIDs(path string) map[string]int {
	ids := map[string]int{}
	data, err := os.ReadFile(path)
	if err != nil {
		return ids
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	complete := bytes.HasSuffix(data, []byte("\n"))
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if !complete && len(lines) > 0 {
		lines = lines[:len(lines)-1]
	}
	for _, l := range lines {
		ids[l]++
	}
	return ids
}

type child struct {
	id   string
	out  string
	cmd  *exec.Cmd
	logs *bytes.Buffer
}

func startChild(t *testing.T, restCfg *rest.Config, cfg config.EventsConfig, id, dir string) *child {
	t.Helper()
	cfg.LeaderElection.Identity = id
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ch := &child{id: id, out: filepath.Join(dir, id+".ids"), logs: &bytes.Buffer{}}
	ch.cmd = exec.Command(os.Args[0], "-test.run=^$")
	ch.cmd.Env = append(os.Environ(), childEnv+"=1", childEnv+"_CONFIG="+string(js), childEnv+"_OUT="+ch.out,
		childEnv+"_URL="+restCfg.Host, childEnv+"_TOKEN="+restCfg.BearerToken, childEnv+"_CA="+restCfg.CAFile)
	ch.cmd.Stdout, ch.cmd.Stderr = ch.logs, ch.logs
	if err := ch.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = ch.cmd.Process.Kill()
		_ = ch.cmd.Wait()
		if t.Failed() {
			t.Logf("----- %s (pid %d) log -----\n%s", id, ch.cmd.Process.Pid, lastLines(ch.logs.String(), 40))
		}
	})
	return ch
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestIntegrationKill9Failover: two collector processes in one leader
// election; the leader gets SIGKILL while Events keep coming. The other
// process takes over within the lease duration (plus the follower's polling
// period) and every (uid, count) written is in one of the two durable sinks.
func TestIntegrationKill9Failover(t *testing.T) {
	restCfg, cs := realKube(t)
	ns := testNamespace(t, cs)
	cfg := realConfig(ns)
	dir := t.TempDir()
	a := startChild(t, restCfg, cfg, "proc-a", dir)
	b := startChild(t, restCfg, cfg, "proc-b", dir)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	holder := func() string {
		l, err := cs.CoordinationV1().Leases(ns).Get(ctx, cfg.LeaderElection.LeaseName, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	testenv.WaitFor(t, "a lease holder", 30*time.Second, func() bool { return holder() != "" })
	leader, follower := a, b
	if holder() == b.id {
		leader, follower = b, a
	}
	g := newLoadGen(cs, ns)
	// The first Event doubles as a probe: shipped means the leader's
	// informers run.
	testenv.WaitFor(t, "the leader shipping", 30*time.Second, func() bool {
		if _, err := g.create(ctx, -1); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // paces the probes: at most one Event per 200 ms
		return len(readIDs(leader.out)) > 0
	})
	if err := g.run(ctx, 150, 4, func(i int) int { return i % 3 }); err != nil {
		t.Fatal(err)
	}
	phase1 := g.wanted()
	testenv.WaitFor(t, "phase 1 in the leader's sink", time.Minute, func() bool { n, _ := missing(phase1, readIDs(leader.out)); return n == 0 })
	if n := len(readIDs(follower.out)); n != 0 {
		t.Errorf("follower %s shipped %d records while not leading", follower.id, n)
	}

	genCtx, stopGen := context.WithCancel(ctx)
	genDone := make(chan error, 1)
	go func() {
		var err error
		for i := 0; genCtx.Err() == nil && err == nil; i++ {
			var ge *genEvent
			if ge, err = g.create(genCtx, 20000+i); err == nil && i%2 == 0 {
				err = g.bump(genCtx, ge)
			}
			if err == nil && i%5 == 0 {
				err = g.bumpExisting(genCtx, 30, 1)
			}
			time.Sleep(20 * time.Millisecond) // the generator's pace, part of the load
		}
		if genCtx.Err() != nil {
			err = nil
		}
		genDone <- err
	}()
	time.Sleep(2 * time.Second) // load before the kill: the fault's timeline, not a wait
	if err := leader.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	_ = leader.cmd.Wait()
	testenv.WaitFor(t, "the follower to hold the lease", 30*time.Second, func() bool { return holder() == follower.id })
	leaseTakeover := time.Since(killedAt)
	before := len(readIDs(follower.out))
	testenv.WaitFor(t, "the follower shipping", 30*time.Second, func() bool { return len(readIDs(follower.out)) > before })
	shipping := time.Since(killedAt)
	time.Sleep(3 * time.Second) // load after the takeover: the fault's timeline, not a wait
	stopGen()
	if err := <-genDone; err != nil {
		t.Fatal(err)
	}
	want := g.wanted()
	union := func() map[string]int {
		u := readIDs(leader.out)
		for id, n := range readIDs(follower.out) {
			u[id] += n
		}
		return u
	}
	testenv.WaitFor(t, "every occurrence in one of the sinks", time.Minute, func() bool { n, _ := missing(want, union()); return n == 0 })
	la, fa := readIDs(leader.out), readIDs(follower.out)
	both := 0
	for id := range fa {
		if la[id] > 0 {
			both++
		}
	}
	t.Logf("SIGKILL %s (pid %d): %s held the lease %v later and shipped %v later (lease_duration %v, retry_period %v); "+
		"%d occurrences written, none missing; %d shipped by both processes (same record id)",
		leader.id, leader.cmd.Process.Pid, follower.id, leaseTakeover.Round(time.Millisecond), shipping.Round(time.Millisecond),
		cfg.LeaderElection.LeaseDuration, cfg.LeaderElection.RetryPeriod, len(want), both)
	if limit := cfg.LeaderElection.LeaseDuration + 2*cfg.LeaderElection.RetryPeriod + time.Second; leaseTakeover > limit {
		t.Errorf("lease takeover took %v, more than lease_duration + 2 retry periods + 1s (%v)", leaseTakeover, limit)
	}
}
