package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/testenv"
)

// ca signs leaf certificates for 127.0.0.1 with the serial asked for.
type ca struct{ *testenv.KeyPair }

func newCA(t *testing.T) ca {
	return ca{testenv.NewKeyPair(t, testenv.CertSpec{CN: "test CA", IsCA: true, NotAfter: time.Now().Add(24 * time.Hour)})}
}

// leaf returns the PEM of a new certificate with serial and its key.
func (c ca) leaf(t *testing.T, serial int64, notAfter time.Time) (certPEM, keyPEM []byte) {
	return testenv.NewKeyPair(t, testenv.CertSpec{CN: "kubesift", Parent: c.KeyPair, Serial: serial, NotAfter: notAfter,
		EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPs: []net.IP{net.ParseIP("127.0.0.1")}}).PEM()
}

// write replaces path's content and moves its modification time on, so a
// rewrite within the file system's time granularity still shows.
func write(t *testing.T, path string, b []byte, mod time.Time) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mod, mod); err != nil {
		t.Fatal(err)
	}
}

// served does a real TLS handshake with a server using c and returns the
// serial the client saw.
func served(t *testing.T, c *Certificate, pool *x509.CertPool) int64 {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: c.GetCertificate, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		_ = conn.(*tls.Conn).Handshake()
		_, _ = io.Copy(io.Discard, conn)
		conn.Close()
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

func TestReload(t *testing.T) {
	authority := newCA(t)
	base := time.Now().Truncate(time.Second)
	expiry := func(serial int64) time.Time { return base.Add(time.Duration(serial) * time.Hour) }
	cert1, key1 := authority.leaf(t, 1, expiry(1))
	cert2, key2 := authority.leaf(t, 2, expiry(2))
	cert3, key3 := authority.leaf(t, 3, expiry(3))
	stamp := time.Now().Add(-time.Hour)
	next := func() time.Time { stamp = stamp.Add(time.Second); return stamp }

	tests := []struct {
		name   string
		change func(t *testing.T, certFile, keyFile string)
		want   int64 // serial served after the change and a check
		fails  int64
	}{
		{"unchanged files keep the certificate", func(*testing.T, string, string) {}, 1, 0},
		{"a renewal is served", func(t *testing.T, c, k string) { m := next(); write(t, k, key2, m); write(t, c, cert2, m) }, 2, 0},
		{"half-written renewal keeps the old pair", func(t *testing.T, c, _ string) { write(t, c, cert2, next()) }, 1, 1},
		{"a file that is not PEM keeps the old pair", func(t *testing.T, _, k string) { write(t, k, []byte("garbage"), next()) }, 1, 1},
		{"removed files keep the old pair", func(t *testing.T, c, _ string) { os.Remove(c) }, 1, 1},
		{"a Secret volume's symlink swap is followed", func(t *testing.T, c, k string) {
			// The kubelet writes a new ..timestamp directory and renames
			// the ..data symlink onto it; tls.crt links through ..data.
			dir := filepath.Dir(c)
			for i, pair := range [][2][]byte{{cert1, key1}, {cert3, key3}} {
				d := filepath.Join(dir, "..v"+string(rune('0'+i)))
				os.MkdirAll(d, 0o700)
				m := next()
				write(t, filepath.Join(d, "tls.crt"), pair[0], m)
				write(t, filepath.Join(d, "tls.key"), pair[1], m)
				os.Symlink(filepath.Base(d), filepath.Join(dir, "..data.tmp"))
				if err := os.Rename(filepath.Join(dir, "..data.tmp"), filepath.Join(dir, "..data")); err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					os.Remove(c)
					os.Remove(k)
					os.Symlink("..data/tls.crt", c)
					os.Symlink("..data/tls.key", k)
				}
			}
		}, 3, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
			m := next()
			write(t, certFile, cert1, m)
			write(t, keyFile, key1, m)
			now := time.Now()
			var logs strings.Builder
			c, err := Load(certFile, keyFile, Options{Field: "x.tls_cert_file", Now: func() time.Time { return now },
				Log: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			if got := served(t, c, authority.Pool()); got != 1 {
				t.Fatalf("served serial %d before the change", got)
			}
			tc.change(t, certFile, keyFile)
			if got := served(t, c, authority.Pool()); got != 1 {
				t.Errorf("served serial %d before the check interval passed, want 1", got)
			}
			now = now.Add(DefaultCheckInterval)
			if got := served(t, c, authority.Pool()); got != tc.want {
				t.Errorf("served serial %d, want %d", got, tc.want)
			}
			if got := c.NotAfter(); !got.Equal(expiry(tc.want)) {
				t.Errorf("NotAfter %v, want %v", got, expiry(tc.want))
			}
			reloads, fails := c.Stats()
			if fails != tc.fails || reloads != map[bool]int64{true: 1}[tc.want != 1] {
				t.Errorf("reloads %d failures %d, want failures %d", reloads, fails, tc.fails)
			}
			// A failure is logged once, not on every later check.
			now = now.Add(DefaultCheckInterval)
			served(t, c, authority.Pool())
			if _, f := c.Stats(); f != tc.fails {
				t.Errorf("failures %d after another check, want %d", f, tc.fails)
			}
			if strings.Contains(logs.String(), "PRIVATE KEY") {
				t.Error("a key reached the log")
			}
		})
	}
}

func TestLoadErrorsNameTheField(t *testing.T) {
	authority := newCA(t)
	cert, key := authority.leaf(t, 1, time.Now().Add(time.Hour))
	_, otherKey := authority.leaf(t, 2, time.Now().Add(time.Hour))
	dir := t.TempDir()
	for _, tc := range []struct {
		name       string
		cert, key  []byte
		noCertFile bool
		want       string
	}{
		{"missing file", nil, key, true, "no such file"},
		{"not PEM", []byte("hello"), key, false, "failed to find any PEM data"},
		{"key of another certificate", cert, otherKey, false, "private key does not match public key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, k := filepath.Join(dir, tc.name+".crt"), filepath.Join(dir, tc.name+".key")
			if !tc.noCertFile {
				write(t, c, tc.cert, time.Now())
			}
			write(t, k, tc.key, time.Now())
			_, err := Load(c, k, Options{Field: "notify.silences.api.tls_cert_file/tls_key_file"})
			if err == nil || !strings.HasPrefix(err.Error(), "notify.silences.api.tls_cert_file/tls_key_file: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want the field and %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Error("the key is in the error")
			}
		})
	}
}

func TestCertPool(t *testing.T) {
	dir := t.TempDir()
	caPEM, _ := newCA(t).PEM()
	good, empty := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "empty.crt")
	write(t, good, caPEM, time.Now())
	write(t, empty, []byte("not a certificate"), time.Now())
	for _, tc := range []struct{ name, file, want string }{
		{"good", good, ""},
		{"missing", filepath.Join(dir, "nope.crt"), "kafka.tls.ca_file: open "},
		{"no PEM", empty, "kafka.tls.ca_file: " + empty + " holds no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool, err := CertPool(tc.file, "kafka.tls.ca_file")
			switch {
			case tc.want == "" && (err != nil || pool == nil):
				t.Fatalf("CertPool: %v", err)
			case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
				t.Fatalf("err = %v, want it to start with %q", err, tc.want)
			}
		})
	}
}
