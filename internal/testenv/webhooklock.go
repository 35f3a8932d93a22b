package testenv

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// WebhookLockName is the lock file, in the test ground's state directory,
// that serialises the tests listening on the audit webhook address
// (KUBESIFT_AUDIT_WEBHOOK_ADDR, 127.0.0.1:19443): only one process can bind
// it, and the test kube-apiserver posts there whoever listens.
const WebhookLockName = ".webhook.lock"

// webhookLockWait bounds how long LockWebhook waits for another test binary.
const webhookLockWait = 10 * time.Minute

// LockWebhook takes the webhook lock exclusively for the rest of the test,
// waiting for any other test (in this process or another package's test
// binary) that holds it. Take it before listening on the webhook address; it
// is released by t.Cleanup, registered first so that it runs after the
// listener's own cleanup. flock locks die with the process, so a crashed test
// cannot wedge the others.
func LockWebhook(t testing.TB) {
	t.Helper()
	dir := Dir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("webhook lock: %v", err)
	}
	path := filepath.Join(dir, WebhookLockName)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("webhook lock: %v", err)
	}
	deadline := time.Now().Add(webhookLockWait)
	logged := false
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if err != syscall.EWOULDBLOCK && err != syscall.EINTR {
			f.Close()
			t.Fatalf("webhook lock %s: %v", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			t.Fatalf("webhook lock %s: still held by another test after %s", path, webhookLockWait)
		}
		if !logged {
			t.Logf("waiting for %s (another test listens on the audit webhook address)", path)
			logged = true
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Cleanup(func() { f.Close() })
}
