package testenv

import (
	"context"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Mailpit is a real SMTP server (github.com/axllent/mailpit, built from the
// pinned Go module by hack/testenv/build-mailpit.sh) that one test starts
// for itself, and its HTTP API to read back what it received.
type Mailpit struct {
	// SMTPAddr is the SMTP listener, 127.0.0.1:port.
	SMTPAddr string
	// APIURL is the HTTP API's base URL, http://127.0.0.1:port.
	APIURL string
	// CAFile and Pool trust the SMTP server's certificate (with TLS).
	CAFile string
	Pool   *x509.CertPool
	Proc   *Proc
}

// MailpitOptions configure a mailpit process.
type MailpitOptions struct {
	// TLS serves STARTTLS with a certificate for 127.0.0.1.
	TLS bool
	// ImplicitTLS serves TLS from the first byte (port-465 style); it
	// implies TLS.
	ImplicitTLS bool
	// Users are the SMTP AUTH accounts (user → password); with any,
	// every client must authenticate.
	Users map[string]string
	// AllowInsecureAuth lets clients send PLAIN/LOGIN credentials
	// without TLS (mailpit refuses accounts without TLS otherwise).
	AllowInsecureAuth bool
}

// MailpitEnv names the variable that points at a mailpit binary, for a
// machine that has one elsewhere; without it the cached build is used.
const MailpitEnv = "KUBESIFT_MAILPIT_BIN"

// MailpitBinary returns the mailpit binary: $KUBESIFT_MAILPIT_BIN, or the
// cached build of hack/testenv/build-mailpit.sh (never built from here: a
// cold build takes minutes; hack/test.sh builds it before go test). A
// missing binary skips the test (fails it under KUBESIFT_REQUIRE_REAL=1).
func MailpitBinary(t testing.TB) string {
	t.Helper()
	Short(t)
	if bin := Get(MailpitEnv); bin != "" {
		return bin
	}
	cmd := exec.Command(filepath.Join(Root(), "hack", "testenv", "build-mailpit.sh"), "--cached")
	out, err := cmd.Output()
	if err != nil {
		Missing(t, "mailpit is not built: run hack/testenv/build-mailpit.sh (or set "+MailpitEnv+")")
	}
	return filepath.Join(strings.TrimSpace(string(out)), "mailpit")
}

// StartMailpit starts a mailpit process on free loopback ports and waits
// until its API and SMTP listener answer. It is killed when the test ends.
func StartMailpit(t testing.TB, o MailpitOptions) *Mailpit {
	t.Helper()
	bin := MailpitBinary(t)
	dir := t.TempDir()
	m := &Mailpit{SMTPAddr: FreeAddr(t)}
	httpAddr := FreeAddr(t)
	m.APIURL = "http://" + httpAddr
	args := []string{
		"--smtp", m.SMTPAddr, "--listen", httpAddr, "--database", filepath.Join(dir, "mailpit.db"),
		"--smtp-disable-rdns", "--disable-version-check",
	}
	if o.TLS || o.ImplicitTLS {
		var certFile, keyFile string
		certFile, keyFile, m.Pool = SelfSigned(t, dir)
		m.CAFile = certFile
		args = append(args, "--smtp-tls-cert", certFile, "--smtp-tls-key", keyFile)
		if o.ImplicitTLS {
			args = append(args, "--smtp-require-tls")
		}
	}
	if len(o.Users) > 0 {
		f := filepath.Join(dir, "smtp-users")
		if err := os.WriteFile(f, []byte(htpasswd(o.Users)), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--smtp-auth-file", f)
	}
	if o.AllowInsecureAuth {
		args = append(args, "--smtp-auth-allow-insecure")
	}
	m.Proc = startBinary(t, "mailpit", bin, nil, args...)
	WaitForNil(t, "mailpit to answer on "+httpAddr+" and "+m.SMTPAddr, 30*time.Second, func() error {
		if m.Proc.Exited() {
			return fmt.Errorf("mailpit exited: %s", Tail(m.Proc.LogPath, 10))
		}
		var info struct{ Version string }
		if err := m.get(context.Background(), "/api/v1/info", &info); err != nil {
			return err
		}
		c, err := net.DialTimeout("tcp", m.SMTPAddr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
	return m
}

// htpasswd renders users as an htpasswd file ({SHA} entries: standard
// library only, and mailpit reads them).
func htpasswd(users map[string]string) string {
	names := make([]string, 0, len(users))
	for u := range users {
		names = append(names, u)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, u := range names {
		sum := sha1.Sum([]byte(users[u]))
		fmt.Fprintf(&b, "%s:{SHA}%s\n", u, base64.StdEncoding.EncodeToString(sum[:]))
	}
	return b.String()
}

// MailpitSummary is one entry of GET /api/v1/messages.
type MailpitSummary struct {
	ID, MessageID, Subject string
	From                   *mail.Address
	To                     []*mail.Address
}

// MailpitMessage is GET /api/v1/message/{ID}: the decoded message.
type MailpitMessage struct {
	ID, MessageID, Subject string
	From                   *mail.Address
	To                     []*mail.Address
	Text, HTML             string
	// Username is who authenticated over SMTP, if anyone did.
	Username string
}

// List lists what mailpit received, newest first.
func (m *Mailpit) List() ([]MailpitSummary, error) {
	var l struct {
		Messages []MailpitSummary `json:"messages"`
	}
	err := m.get(context.Background(), "/api/v1/messages", &l)
	return l.Messages, err
}

// WaitMessages waits until mailpit holds n messages and returns them.
func (m *Mailpit) WaitMessages(t testing.TB, n int, timeout time.Duration) []MailpitSummary {
	t.Helper()
	var got []MailpitSummary
	WaitForNil(t, fmt.Sprintf("%d messages in mailpit", n), timeout, func() error {
		var err error
		if got, err = m.List(); err != nil {
			return err
		}
		if len(got) != n {
			return fmt.Errorf("%d messages", len(got))
		}
		return nil
	})
	return got
}

// Message reads one message, its text and HTML parts decoded.
func (m *Mailpit) Message(t testing.TB, id string) MailpitMessage {
	t.Helper()
	var msg MailpitMessage
	if err := m.get(context.Background(), "/api/v1/message/"+url.PathEscape(id), &msg); err != nil {
		t.Fatal(err)
	}
	return msg
}

// Headers reads the headers of one message as received.
func (m *Mailpit) Headers(t testing.TB, id string) map[string][]string {
	t.Helper()
	h := map[string][]string{}
	if err := m.get(context.Background(), "/api/v1/message/"+url.PathEscape(id)+"/headers", &h); err != nil {
		t.Fatal(err)
	}
	return h
}

func (m *Mailpit) get(ctx context.Context, path string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.APIURL+path, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("mailpit GET %s: HTTP %d", path, res.StatusCode)
	}
	return json.NewDecoder(res.Body).Decode(out)
}
