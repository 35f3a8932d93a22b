package netorigin

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/internal/testenv"
)

// writeList writes content to path with a modification time of its own,
// so a rewrite is seen even where the file system's clock is coarse.
func writeList(t *testing.T, path, content string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func TestNewFailsOnABadList(t *testing.T) {
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.txt"), filepath.Join(dir, "bad.txt")
	writeList(t, good, "203.0.113.7\n", time.Now())
	writeList(t, bad, "203.0.113.8\nnot-an-ip\n", time.Now())
	for _, tc := range []struct {
		name  string
		files []string
		want  string
	}{
		{"bad line", []string{good, bad}, `network list "ioc": ` + bad + `:2: "not-an-ip" is not a CIDR or IP address`},
		{"missing file", []string{filepath.Join(dir, "absent.txt")}, `network list "ioc": stat ` + filepath.Join(dir, "absent.txt")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Options{Lists: []ListSpec{{Name: "ioc", Files: tc.files}}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestReloadKeepsTheOldListWhenTheNewOneIsBroken: a changed list is
// swapped in; a broken one keeps the previous content, is logged naming
// file and line, counted once per change, and a fixed file is taken again.
func TestReloadKeepsTheOldListWhenTheNewOneIsBroken(t *testing.T) {
	dir := t.TempDir()
	ioc, corp := filepath.Join(dir, "ioc.txt"), filepath.Join(dir, "corp.txt")
	t0 := time.Now().Add(-time.Hour)
	writeList(t, ioc, "203.0.113.7\n", t0)
	writeList(t, corp, "198.51.100.0/24\n", t0)
	reg := prometheus.NewPedanticRegistry()
	var logs bytes.Buffer
	r, err := New(Options{
		Lists:      []ListSpec{{Name: "corp", Files: []string{corp}}, {Name: "ioc", Files: []string{ioc}}},
		Registerer: reg, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	lists := func(ip string) []string { return r.Lookup(ip).Lists }
	metric := func(result string) float64 {
		return testenv.Metric(t, reg, "kubesift_network_list_reloads_total", "list", "ioc", "result", result)
	}
	steps := []struct {
		name     string
		content  string
		reloaded bool
		on, off  string // an address now on ioc, and one not
		ok, bad  float64
	}{
		{"unchanged", "", false, "203.0.113.7", "203.0.113.8", 0, 0},
		{"changed", "203.0.113.8 # new\n", true, "203.0.113.8", "203.0.113.7", 1, 0},
		{"broken", "203.0.113.9\n203.0.113.999\n", false, "203.0.113.8", "203.0.113.9", 1, 1},
		{"still broken, not counted again", "", false, "203.0.113.8", "203.0.113.9", 1, 1},
		{"fixed", "203.0.113.9\n", true, "203.0.113.9", "203.0.113.8", 2, 1},
	}
	for i, s := range steps {
		if s.content != "" {
			writeList(t, ioc, s.content, t0.Add(time.Duration(i+1)*time.Minute))
		}
		if got := r.Reload(1); got != s.reloaded {
			t.Errorf("%s: Reload = %v, want %v", s.name, got, s.reloaded)
		}
		if !slices.Contains(lists(s.on), "ioc") || slices.Contains(lists(s.off), "ioc") {
			t.Errorf("%s: %s on %v, %s on %v", s.name, s.on, lists(s.on), s.off, lists(s.off))
		}
		if got := lists("198.51.100.5"); !slices.Equal(got, []string{"corp"}) {
			t.Errorf("%s: the other list changed: %v", s.name, got)
		}
		if metric("ok") != s.ok || metric("error") != s.bad {
			t.Errorf("%s: reloads ok %v error %v, want %v %v", s.name, metric("ok"), metric("error"), s.ok, s.bad)
		}
	}
	if !strings.Contains(logs.String(), ioc+`:2: \"203.0.113.999\" is not a CIDR or IP address`) {
		t.Errorf("log does not name the file and line:\n%s", logs.String())
	}
	if got := testenv.Metric(t, reg, "kubesift_network_list_networks", "list", "ioc"); got != 1 {
		t.Errorf("kubesift_network_list_networks{list=ioc} = %v, want 1", got)
	}
}

// TestRunReloadsOnItsInterval: while Run runs, a rewritten list takes
// effect without a call from outside; Run returns when ctx ends.
func TestRunReloadsOnItsInterval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tor.txt")
	writeList(t, path, "192.0.2.1\n", time.Now().Add(-time.Hour))
	r, err := New(Options{Lists: []ListSpec{{Name: "tor", Files: []string{path}, ReloadInterval: 5 * time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	writeList(t, path, "192.0.2.2\n192.0.2.3\n", time.Now())
	testenv.WaitFor(t, "192.0.2.3 on the reloaded list", 10*time.Second, func() bool {
		return slices.Contains(r.LookupAddr(netip.MustParseAddr("192.0.2.3")).Lists, "tor")
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// TestLookupsDuringReloads: lookups run while the list is swapped, each
// seeing a whole table (the race detector checks the swap).
func TestLookupsDuringReloads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ioc.txt")
	t0 := time.Now().Add(-time.Hour)
	writeList(t, path, "203.0.113.0/24\n", t0)
	r, err := New(Options{Lists: []ListSpec{{Name: "ioc", Files: []string{path}}}})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	errs := make(chan string, 4)
	for range 4 {
		go func() {
			a, b := netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("198.51.100.1")
			for {
				select {
				case <-stop:
					errs <- ""
					return
				default:
				}
				for _, addr := range []netip.Addr{a, b} {
					if l := r.LookupAddr(addr).Lists; l != nil && !slices.Equal(l, []string{"ioc"}) {
						errs <- fmt.Sprintf("%v on %v", addr, l)
						return
					}
				}
			}
		}()
	}
	for i := range 50 {
		content := "203.0.113.0/24\n"
		if i%2 == 0 {
			content = "198.51.100.0/24\n"
		}
		writeList(t, path, content, t0.Add(time.Duration(i+1)*time.Second))
		if !r.Reload(0) {
			t.Fatalf("reload %d: not taken", i)
		}
	}
	close(stop)
	for range 4 {
		if e := <-errs; e != "" {
			t.Error(e)
		}
	}
}
