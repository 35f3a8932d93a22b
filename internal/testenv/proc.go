package testenv

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// End-to-end tests run the real kubesift binary as a child process, so that
// kill -9, restarts and peak RSS are those of the shipped program and not of
// a goroutine inside the test binary.

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Kubesift builds ./cmd/kubesift once per test binary and returns its path.
// The binary lands under the test ground's state directory (not t.TempDir,
// which would vanish with the first test that used it).
func Kubesift(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir := filepath.Join(Dir(), "bin")
		if buildErr = os.MkdirAll(dir, 0o755); buildErr != nil {
			return
		}
		removeOrphans(dir)
		buildPath = filepath.Join(dir, fmt.Sprintf("kubesift-test-%d", os.Getpid()))
		cmd := exec.Command("go", "build", "-o", buildPath, "./cmd/kubesift")
		cmd.Dir = Root()
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/kubesift: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// removeOrphans deletes the binaries of test processes that are gone. A
// test binary cannot delete its own at exit (no hook runs after the last
// test without a TestMain in every package), so each build sweeps the ones
// left by earlier runs; a binary still in use by a live test process stays.
func removeOrphans(dir string) {
	old, _ := filepath.Glob(filepath.Join(dir, "kubesift-test-*"))
	for _, f := range old {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(f), "kubesift-test-"))
		if err != nil {
			continue
		}
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); os.IsNotExist(err) {
			os.Remove(f)
		}
	}
}

// Proc is a running kubesift child process. Its stdout and stderr go to
// LogPath; a test failure prints the log's tail.
type Proc struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	peakKiB atomic.Int64 // written by the sampler, read by the test
}

// Start runs the kubesift binary with args (e.g. "collect", "-c", cfg) and
// extra environment variables ("K=V"). The process is killed in t.Cleanup if
// still running, and its log tail is printed when the test failed.
func Start(t testing.TB, name string, env []string, args ...string) *Proc {
	t.Helper()
	return startBinary(t, name, Kubesift(t), env, args...)
}

// startBinary runs bin as Start describes.
func startBinary(t testing.TB, name, bin string, env []string, args ...string) *Proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	// Its own process group, so a kill reaches nothing else of the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Proc{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go p.sampleRSS()
	go func() {
		p.waitErr = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("--- last lines of %s (%s):\n%s", name, logPath, Tail(logPath, 40))
		}
	})
	return p
}

// Pid is the child's process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Kill sends SIGKILL (kill -9) and waits for the process to be gone.
func (p *Proc) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits up to timeout for a clean exit; it returns
// the exit error (nil for exit code 0) or an error if it had to kill.
func (p *Proc) Stop(timeout time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.waitErr
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("%s did not exit within %v of SIGTERM; killed", p.Name, timeout)
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Wait waits up to timeout for the process to end and returns its exit
// error (nil for exit code 0, an *exec.ExitError otherwise), or an error
// saying it still runs.
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.waitErr
	case <-time.After(timeout):
		return fmt.Errorf("%s still runs after %v", p.Name, timeout)
	}
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// PeakRSSKiB is the highest resident set size seen (VmHWM from /proc, read
// every 100 ms while the process lives), in KiB.
func (p *Proc) PeakRSSKiB() int64 {
	p.readHWM()
	return p.peakKiB.Load()
}

func (p *Proc) sampleRSS() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
			p.readHWM()
		}
	}
}

func (p *Proc) readHWM() {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/status")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kib, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			// CAS: the sampler and PeakRSSKiB both update it.
			for cur := p.peakKiB.Load(); kib > cur && !p.peakKiB.CompareAndSwap(cur, kib); cur = p.peakKiB.Load() {
			}
		}
	}
}

// Tail returns the last n lines of a file.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Metrics scrapes a Prometheus text endpoint (http://addr/metrics) and
// returns each sample as "name{labels}" -> value, labels as exposed. It
// returns an error while the endpoint is not up.
func Metrics(ctx context.Context, addr string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: HTTP %d", res.StatusCode)
	}
	return parseMetrics(res.Body)
}

func parseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		// The value follows the last space outside the label braces.
		i := strings.LastIndexByte(line, ' ')
		if j := strings.LastIndexByte(line, '}'); j > i {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] += v
	}
	return out, sc.Err()
}

// Sum adds the samples whose name (before any labels) is name and whose
// labels contain every given "k=\"v\"" fragment.
func Sum(m map[string]float64, name string, labels ...string) float64 {
	var s float64
	for k, v := range m {
		n, rest, _ := strings.Cut(k, "{")
		if n != name {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				ok = false
				break
			}
		}
		if ok {
			s += v
		}
	}
	return s
}

// Script runs hack/testenv/<part>.sh with args against this test ground
// (e.g. Script(t, "kafka", "stop")) and logs what it printed and how long it
// took. Fault tests use it, holding FaultLock, to stop and restart a server.
func Script(t testing.TB, part string, args ...string) error {
	t.Helper()
	cmd := exec.Command(filepath.Join(Root(), "hack", "testenv", part+".sh"), args...)
	cmd.Env = append(os.Environ(), "KUBESIFT_TESTENV="+Dir())
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("%s.sh %s (%s): %s", part, strings.Join(args, " "), time.Since(start).Round(time.Millisecond), strings.TrimSpace(string(out)))
	return err
}

// FreeAddr returns a loopback host:port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// RepeatAuditLog writes copies of the audit log src into a new file and
// returns its path; every copy's audit IDs are made unique (the first 8 hex
// digits of each auditID become the copy's number), so each line is a new
// record. For replay and shutdown tests that need a long input.
func RepeatAuditLog(t testing.TB, src string, copies int) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	id := regexp.MustCompile(`"auditID":"[0-9a-f]{8}`)
	p := filepath.Join(t.TempDir(), "repeated-audit.log")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for c := 0; c < copies; c++ {
		prefix := fmt.Sprintf(`"auditID":"%08x`, c)
		for _, l := range lines {
			w.WriteString(id.ReplaceAllLiteralString(l, prefix))
			w.WriteByte('\n')
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// Buffer is a bytes.Buffer safe for concurrent writers (a logger, a
// console receiver) and the test reading it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
