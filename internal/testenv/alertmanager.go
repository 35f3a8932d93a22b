package testenv

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// AlertmanagerBinVar names the Prometheus Alertmanager binary that
// hack/testenv/build-alertmanager.sh builds from the pinned module
// test/tools/alertmanager and writes to $KUBESIFT_TESTENV/env.alertmanager.
const AlertmanagerBinVar = "KUBESIFT_ALERTMANAGER_BIN"

// Alertmanager is a real Prometheus Alertmanager run for one test.
type Alertmanager struct {
	// URL is its base URL, http://127.0.0.1:port.
	URL string
}

// StartAlertmanager runs the test ground's Alertmanager with the given
// configuration (alertmanager.yml text) on a free loopback port, with its
// own storage and clustering off, and waits until it is ready. Each test
// gets its own process, so its routes, groups and alerts are its own. It is
// killed when the test ends, and its log tail is printed if the test
// failed. Without the binary the test skips (fails under
// KUBESIFT_REQUIRE_REAL=1), saying how to build it.
func StartAlertmanager(t testing.TB, config string) *Alertmanager {
	t.Helper()
	Short(t)
	bin := Get(AlertmanagerBinVar)
	if bin == "" {
		Missing(t, AlertmanagerBinVar+" unset: build Alertmanager with hack/testenv/build-alertmanager.sh")
		return nil
	}
	if _, err := os.Stat(bin); err != nil {
		Missing(t, fmt.Sprintf("Alertmanager binary: %v; rebuild it with hack/testenv/build-alertmanager.sh", err))
		return nil
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := FreeAddr(t)
	logPath := filepath.Join(dir, "alertmanager.log")
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=info")
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		t.Fatalf("start alertmanager: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); lf.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		if t.Failed() {
			t.Logf("--- last lines of alertmanager's log (%s):\n%s", logPath, Tail(logPath, 40))
		}
	})
	am := &Alertmanager{URL: "http://" + addr}
	WaitForNil(t, "Alertmanager to be ready", time.Minute, func() error {
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("alertmanager exited before it was ready: %v", err)
		default:
		}
		res, err := http.Get(am.URL + "/-/ready")
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("/-/ready: HTTP %d", res.StatusCode)
		}
		return nil
	})
	return am
}
