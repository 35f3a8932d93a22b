package notify

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/sink/notify/notifytest"
)

// The tests in this file talk to a real SMTP server: a mailpit process each
// test starts for itself (testenv.StartMailpit), read back through its API.

// TestEmailThroughMailpit: a notification sent over STARTTLS with AUTH
// arrives with its subject, addresses, both alternatives and headers; a
// wrong password fails for good without showing the password.
func TestEmailThroughMailpit(t *testing.T) {
	mp := testenv.StartMailpit(t, testenv.MailpitOptions{TLS: true, Users: map[string]string{"kubesift": testSMTPPassword}})
	cfg := testEmailConfig(mp.SMTPAddr)
	cfg.TLS.CAFile = mp.CAFile
	cfg.Headers = map[string]string{"X-Team": "security"}
	e, err := NewEmail(cfg, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	a := notifytest.PrivilegedPod(0, "evil-0")
	a.Title = "Privilegierter Pod erstellt – ü"
	a.Message = "pod <b>evil-0</b> & more"
	n := testNotification(a, notifytest.PrivilegedPod(1, "evil-1"))
	if retry, err := e.Notify(context.Background(), n); err != nil || retry {
		t.Fatalf("Notify = %v, %v", retry, err)
	}
	got := mp.WaitMessages(t, 1, 10*time.Second)
	m := mp.Message(t, got[0].ID)
	if want := "[CRITICAL] Privilegierter Pod erstellt – ü (2 alerts) in prod-eu-1"; m.Subject != want {
		t.Errorf("Subject %q, want %q", m.Subject, want)
	}
	if m.From == nil || m.From.Address != "alerts@example.com" || len(m.To) != 2 || m.To[1].Address != "ops@example.com" || m.To[1].Name != "Ops Team" {
		t.Errorf("From %v To %v", m.From, m.To)
	}
	if m.Username != "kubesift" {
		t.Errorf("authenticated as %q", m.Username)
	}
	if m.MessageID != n.IdempotencyKey+"@example.com" {
		t.Errorf("Message-Id %q", m.MessageID)
	}
	if !strings.Contains(m.Text, "pod <b>evil-0</b> & more") || !strings.Contains(m.Text, "who:   alice") {
		t.Errorf("text part:\n%s", m.Text)
	}
	if !strings.Contains(m.HTML, "pod &lt;b&gt;evil-0&lt;/b&gt; &amp; more") || strings.Contains(m.HTML, "<b>evil-0") {
		t.Errorf("HTML part:\n%s", m.HTML)
	}
	h := mp.Headers(t, got[0].ID)
	for name, want := range map[string]string{
		EmailIdempotencyHeader: n.IdempotencyKey, EmailGroupKeyHeader: n.GroupKey, "X-Team": "security", "Mime-Version": "1.0",
	} {
		if v := headerGet(h, name); v != want {
			t.Errorf("header %s = %q, want %q", name, v, want)
		}
	}

	cfg.AuthPassword = "wrong-" + testSMTPPassword
	e, _ = NewEmail(cfg, 10*time.Second)
	retry, err := e.Notify(context.Background(), n)
	if retry || err == nil || !strings.Contains(err.Error(), "535") {
		t.Fatalf("wrong password: retry %v err %v", retry, err)
	}
	if strings.Contains(err.Error(), testSMTPPassword) {
		t.Errorf("error shows the password: %v", err)
	}
	if l := mp.WaitMessages(t, 1, time.Second); len(l) != 1 {
		t.Errorf("%d messages after the refused one", len(l))
	}
}

// TestEmailImplicitTLSThroughMailpit: TLS from the first byte (port 465's
// way), then AUTH PLAIN.
func TestEmailImplicitTLSThroughMailpit(t *testing.T) {
	mp := testenv.StartMailpit(t, testenv.MailpitOptions{ImplicitTLS: true, Users: map[string]string{"kubesift": testSMTPPassword}})
	cfg := testEmailConfig(mp.SMTPAddr)
	cfg.TLS.CAFile = mp.CAFile
	e, err := NewEmail(cfg, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// mailpit listens on a free port, not 465: say it is implicit TLS.
	e.implicitTLS = true
	if retry, err := e.Notify(context.Background(), testNotification(manyAlerts(1)...)); err != nil || retry {
		t.Fatalf("Notify = %v, %v", retry, err)
	}
	if m := mp.Message(t, mp.WaitMessages(t, 1, 10*time.Second)[0].ID); m.Username != "kubesift" {
		t.Errorf("authenticated as %q", m.Username)
	}
}

// TestEmailWithholdsCredentialsWithoutTLS: against a real server without
// TLS that would take PLAIN credentials in clear text, the notifier sends
// neither credentials nor the mail — checked on the wire, through a proxy
// that records what the client sent.
func TestEmailWithholdsCredentialsWithoutTLS(t *testing.T) {
	mp := testenv.StartMailpit(t, testenv.MailpitOptions{AllowInsecureAuth: true, Users: map[string]string{"kubesift": testSMTPPassword}})
	for _, tc := range []struct {
		name       string
		requireTLS bool
		wantErr    error
	}{
		{"require_tls", true, errNoStartTLS},
		{"require_tls off, PLAIN offered in clear", false, errInsecureAuth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, sent := recordingProxy(t, mp.SMTPAddr)
			cfg := testEmailConfig(addr)
			cfg.RequireTLS = tc.requireTLS
			e, err := NewEmail(cfg, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			retry, err := e.Notify(context.Background(), testNotification(manyAlerts(1)...))
			if retry || !errors.Is(err, tc.wantErr) {
				t.Fatalf("retry %v err %v, want %v", retry, err, tc.wantErr)
			}
			wire := sent()
			for _, secret := range []string{"AUTH", "MAIL FROM", testSMTPPassword, base64.StdEncoding.EncodeToString([]byte("\x00kubesift\x00" + testSMTPPassword))} {
				if strings.Contains(wire, secret) {
					t.Errorf("client sent %q:\n%s", secret, wire)
				}
			}
			if !strings.Contains(wire, "EHLO") {
				t.Errorf("the proxy saw no SMTP dialogue:\n%s", wire)
			}
		})
	}
	if l := mp.WaitMessages(t, 0, time.Second); len(l) != 0 {
		t.Errorf("%d messages arrived", len(l))
	}
}

// recordingProxy forwards each TCP connection to target and returns its
// address and what clients sent so far. A client's line is recorded before
// it is forwarded, so whatever the server answered is in the record.
func recordingProxy(t *testing.T, target string) (string, func() string) {
	t.Helper()
	var mu sync.Mutex
	var sent strings.Builder
	addr := serveTCP(t, func(c net.Conn) {
		s, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer s.Close()
		go func() { // server → client; ends when either side closes
			_, _ = io.Copy(c, s)
			c.Close()
		}()
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			mu.Lock()
			sent.Write(buf[:k])
			mu.Unlock()
			if k > 0 {
				if _, werr := s.Write(buf[:k]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	return addr, func() string {
		mu.Lock()
		defer mu.Unlock()
		return sent.String()
	}
}

// headerGet reads a header of mailpit's header map, whose keys keep the
// message's spelling.
func headerGet(h map[string][]string, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}
