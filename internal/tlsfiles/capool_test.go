package tlsfiles

import (
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kubesift/kubesift/internal/testenv"
)

// TestCAPoolReload: a rotated CA bundle is trusted after the check interval
// without a restart; a bundle caught half-written, one that is not PEM, or
// a removed file keep the previous pool and count one failed reload.
func TestCAPoolReload(t *testing.T) {
	oldCA, newCA := newCA(t), newCA(t)
	oldPEM, _ := oldCA.PEM()
	newPEM, _ := newCA.PEM()
	clientOf := func(parent ca) *x509.Certificate {
		return testenv.NewKeyPair(t, testenv.CertSpec{CN: "client", Parent: parent.KeyPair, EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}).Cert
	}
	oldClient, newClient := clientOf(oldCA), clientOf(newCA)
	stamp := time.Now().Add(-time.Hour)
	next := func() time.Time { stamp = stamp.Add(time.Second); return stamp }

	tests := []struct {
		name             string
		change           func(t *testing.T, file string)
		wantOld, wantNew bool // which clients verify after the check
		reloads, fails   float64
	}{
		{"unchanged", func(*testing.T, string) {}, true, false, 0, 0},
		{"rotation: the new CA added beside the old", func(t *testing.T, f string) {
			write(t, f, append(append([]byte{}, oldPEM...), newPEM...), next())
		}, true, true, 1, 0},
		{"only the new CA", func(t *testing.T, f string) { write(t, f, newPEM, next()) }, false, true, 1, 0},
		{"half-written bundle keeps the old pool", func(t *testing.T, f string) {
			both := append(append([]byte{}, newPEM...), oldPEM...)
			write(t, f, both[:len(newPEM)+len(oldPEM)/2], next())
		}, true, false, 0, 1},
		{"not PEM keeps the old pool", func(t *testing.T, f string) { write(t, f, []byte("garbage"), next()) }, true, false, 0, 1},
		{"removed file keeps the old pool", func(t *testing.T, f string) { os.Remove(f) }, true, false, 0, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "ca.crt")
			write(t, file, oldPEM, next())
			now := time.Now()
			p, err := LoadCAPool(file, Options{Field: "x.client_ca_file", Now: func() time.Time { return now },
				Log: slog.New(slog.NewTextHandler(&strings.Builder{}, nil))})
			if err != nil {
				t.Fatal(err)
			}
			verifies := func(c *x509.Certificate) bool {
				_, err := c.Verify(x509.VerifyOptions{Roots: p.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
				return err == nil
			}
			tc.change(t, file)
			if !verifies(oldClient) || verifies(newClient) {
				t.Fatal("the pool changed before the check interval passed")
			}
			now = now.Add(DefaultCheckInterval)
			if got := verifies(oldClient); got != tc.wantOld {
				t.Errorf("old CA's client verifies: %v, want %v", got, tc.wantOld)
			}
			if got := verifies(newClient); got != tc.wantNew {
				t.Errorf("new CA's client verifies: %v, want %v", got, tc.wantNew)
			}
			// A failure is counted once, not on every later check.
			now = now.Add(DefaultCheckInterval)
			p.Pool()
			counters := p.Collectors("test")
			ok, failed := testutil.ToFloat64(counters[0]), testutil.ToFloat64(counters[1])
			if ok != tc.reloads || failed != tc.fails {
				t.Errorf("reloads ok=%v failed=%v, want %v and %v", ok, failed, tc.reloads, tc.fails)
			}
		})
	}
}
