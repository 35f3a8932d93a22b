package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/sink/notify/notifytest"
)

const testSMTPPassword = "hunter2-SECRET"

// fakeSMTP is a scripted SMTP server for the unit tests: it answers every
// command with a success unless replies names another answer for its verb
// (GREETING, EHLO, AUTH, MAIL, RCPT, DATA, END for the reply after the
// message; "hang" never answers), and records every line it reads.
type fakeSMTP struct {
	addr     string
	ext      []string // EHLO keywords, e.g. "STARTTLS", "AUTH PLAIN LOGIN"
	replies  map[string]string
	cert     *tls.Config // for STARTTLS, or from the first byte when implicit
	implicit bool

	mu    sync.Mutex
	lines []string
	mails [][]byte
}

func startFakeSMTP(t *testing.T, f *fakeSMTP) *fakeSMTP {
	t.Helper()
	f.addr = serveTCP(t, f.serve)
	return f
}

// serveTCP listens on a loopback port and runs handle for each connection
// until the test ends, when it closes the listener and the connections
// and waits for the handlers.
func serveTCP(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var conns sync.Map
	t.Cleanup(func() {
		ln.Close()
		conns.Range(func(c, _ any) bool { c.(net.Conn).Close(); return true })
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Store(c, true)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

func (f *fakeSMTP) log() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.lines, "\n")
}

func (f *fakeSMTP) accepted() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.mails)
}

func (f *fakeSMTP) serve(conn net.Conn) {
	if f.implicit {
		conn = tls.Server(conn, f.cert)
	}
	tp := textproto.NewConn(conn)
	read := func() (string, bool) {
		l, err := tp.ReadLine()
		if err != nil {
			return "", false
		}
		f.mu.Lock()
		f.lines = append(f.lines, l)
		f.mu.Unlock()
		return l, true
	}
	// reply sends the scripted or the default answer; false when the
	// server hangs or gave up.
	reply := func(verb, def string) bool {
		r, ok := f.replies[verb]
		if !ok {
			r = def
		}
		if r == "hang" {
			_, _ = io.Copy(io.Discard, conn)
			return false
		}
		return tp.PrintfLine("%s", r) == nil && r[0] < '4'
	}
	if !reply("GREETING", "220 fake ESMTP") {
		return
	}
	tlsOn := f.implicit
	for {
		line, ok := read()
		if !ok {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO", "HELO":
			ext := []string{"fake"}
			for _, e := range f.ext {
				if e != "STARTTLS" || (!tlsOn && f.cert != nil) {
					ext = append(ext, e)
				}
			}
			var b strings.Builder
			for i, e := range ext {
				sep := "-"
				if i == len(ext)-1 {
					sep = " "
				}
				b.WriteString("250" + sep + e)
				if i < len(ext)-1 {
					b.WriteString("\r\n")
				}
			}
			reply("EHLO", b.String())
		case "STARTTLS":
			_ = tp.PrintfLine("220 go ahead")
			tc := tls.Server(conn, f.cert)
			if tc.Handshake() != nil {
				return
			}
			conn, tp, tlsOn = tc, textproto.NewConn(tc), true
		case "AUTH":
			if r, ok := f.replies["AUTH"]; ok {
				_ = tp.PrintfLine("%s", r)
				continue
			}
			mech, initial, _ := strings.Cut(arg, " ")
			steps := map[string][]string{"PLAIN": nil, "LOGIN": {"VXNlcm5hbWU6", "UGFzc3dvcmQ6"},
				"CRAM-MD5": {base64.StdEncoding.EncodeToString([]byte("<1.2@fake>"))}}[mech]
			if mech == "PLAIN" && initial == "" {
				steps = []string{""}
			}
			for _, s := range steps {
				_ = tp.PrintfLine("334 %s", s)
				if _, ok := read(); !ok {
					return
				}
			}
			_ = tp.PrintfLine("235 2.7.0 ok")
		case "MAIL":
			reply("MAIL", "250 ok")
		case "RCPT":
			reply("RCPT", "250 ok")
		case "DATA":
			if !reply("DATA", "354 go ahead") {
				continue
			}
			b, err := tp.ReadDotBytes()
			if err != nil {
				return
			}
			if reply("END", "250 queued") {
				f.mu.Lock()
				f.mails = append(f.mails, b)
				f.mu.Unlock()
			}
		case "QUIT":
			_ = tp.PrintfLine("221 bye")
			return
		default:
			_ = tp.PrintfLine("250 ok")
		}
	}
}

// testServerTLS is a server certificate for 127.0.0.1 and a CA file
// trusting it.
func testServerTLS(t *testing.T) (*tls.Config, string) {
	t.Helper()
	kp := testenv.NewKeyPair(t, testenv.CertSpec{CN: "smtp test", IsCA: true,
		EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	caFile, _ := kp.Write(t, t.TempDir(), "smtp")
	return &tls.Config{Certificates: []tls.Certificate{kp.TLS()}, MinVersion: tls.VersionTLS12}, caFile
}

func testEmailConfig(addr string) config.EmailConfig {
	return config.EmailConfig{
		To: []string{"sec@example.com", "Ops Team <ops@example.com>"}, From: "kubesift <alerts@example.com>",
		Smarthost: addr, AuthUsername: "kubesift", AuthPassword: testSMTPPassword, RequireTLS: true,
	}
}

// TestEmailSMTPClassification: each SMTP failure is retried or not as the
// Email doc says, credentials and content never cross an unencrypted
// connection unless allowed, and no error shows the password.
func TestEmailSMTPClassification(t *testing.T) {
	serverTLS, caFile := testServerTLS(t)
	_, otherCA := testServerTLS(t)
	tlsAuth := []string{"STARTTLS", "AUTH PLAIN LOGIN"}
	for _, tc := range []struct {
		name     string
		ext      []string
		replies  map[string]string
		noTLS    bool // the server has no certificate
		implicit bool
		cfg      func(*config.EmailConfig)
		retry    bool
		wantErr  string // "" for success
		wantLog  []string
		notLog   []string
	}{
		{name: "accepted with STARTTLS and PLAIN", ext: tlsAuth, wantLog: []string{"STARTTLS", "AUTH PLAIN", "MAIL FROM:<alerts@example.com>", "RCPT TO:<ops@example.com>"}},
		{name: "LOGIN when PLAIN is not offered", ext: []string{"STARTTLS", "AUTH LOGIN CRAM-MD5"}, wantLog: []string{"AUTH LOGIN"}},
		{name: "CRAM-MD5 without TLS", ext: []string{"AUTH CRAM-MD5 PLAIN"}, noTLS: true,
			cfg: func(c *config.EmailConfig) { c.RequireTLS = false }, wantLog: []string{"AUTH CRAM-MD5"}},
		{name: "implicit TLS", ext: []string{"AUTH PLAIN"}, implicit: true, wantLog: []string{"AUTH PLAIN"}, notLog: []string{"STARTTLS"}},
		{name: "no auth configured", ext: tlsAuth, cfg: func(c *config.EmailConfig) { c.AuthUsername, c.AuthPassword = "", "" },
			notLog: []string{"AUTH"}},
		{name: "greeting 421", replies: map[string]string{"GREETING": "421 4.3.2 try later"}, retry: true, wantErr: "greeting: 421"},
		{name: "greeting 554", replies: map[string]string{"GREETING": "554 5.7.1 go away"}, wantErr: "greeting: 554"},
		{name: "wrong password 535", ext: tlsAuth, replies: map[string]string{"AUTH": "535 5.7.8 Authentication credentials invalid"}, wantErr: "AUTH: 535"},
		{name: "auth 454 temporary", ext: tlsAuth, replies: map[string]string{"AUTH": "454 4.7.0 temporary failure"}, retry: true, wantErr: "AUTH: 454"},
		{name: "MAIL 451", ext: tlsAuth, replies: map[string]string{"MAIL": "451 4.3.0 busy"}, retry: true, wantErr: "MAIL FROM: 451"},
		{name: "mailbox unknown 550", ext: tlsAuth, replies: map[string]string{"RCPT": "550 5.1.1 no such user"}, wantErr: "RCPT TO <sec@example.com>: 550", notLog: []string{"DATA"}},
		{name: "RCPT 452", ext: tlsAuth, replies: map[string]string{"RCPT": "452 4.5.3 too many"}, retry: true, wantErr: "452"},
		{name: "message refused 552", ext: tlsAuth, replies: map[string]string{"END": "552 5.3.4 too big"}, wantErr: "DATA: 552"},
		{name: "message deferred 451", ext: tlsAuth, replies: map[string]string{"END": "451 4.3.0 later"}, retry: true, wantErr: "DATA: 451"},
		{name: "no STARTTLS but require_tls", ext: []string{"AUTH PLAIN LOGIN"}, noTLS: true, wantErr: "does not offer STARTTLS",
			notLog: []string{"AUTH", "MAIL"}},
		{name: "only PLAIN/LOGIN without TLS", ext: []string{"AUTH PLAIN LOGIN"}, noTLS: true,
			cfg: func(c *config.EmailConfig) { c.RequireTLS = false }, wantErr: "credentials withheld", notLog: []string{"AUTH"}},
		{name: "untrusted certificate", ext: tlsAuth, cfg: func(c *config.EmailConfig) { c.TLS.CAFile = otherCA },
			wantErr: "STARTTLS", notLog: []string{"AUTH", "MAIL"}},
		{name: "server offers no AUTH", ext: []string{"STARTTLS"}, wantErr: "offers no authentication", notLog: []string{"MAIL"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeSMTP{ext: tc.ext, replies: tc.replies, cert: serverTLS, implicit: tc.implicit}
			if tc.noTLS {
				f.cert = nil
			}
			startFakeSMTP(t, f)
			cfg := testEmailConfig(f.addr)
			cfg.TLS.CAFile = caFile
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			e, err := NewEmail(cfg, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			e.implicitTLS = tc.implicit
			retry, err := e.Notify(context.Background(), testNotification(manyAlerts(2)...))
			if tc.wantErr == "" {
				if err != nil || retry || f.accepted() != 1 {
					t.Fatalf("retry %v err %v, %d mails accepted", retry, err, f.accepted())
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) || retry != tc.retry {
				t.Fatalf("retry %v err %v; want retry %v and an error with %q", retry, err, tc.retry, tc.wantErr)
			}
			if err != nil && (strings.Contains(err.Error(), testSMTPPassword) || strings.Contains(err.Error(), base64.StdEncoding.EncodeToString([]byte(testSMTPPassword)))) {
				t.Errorf("error shows the password: %v", err)
			}
			log := f.log()
			for _, w := range tc.wantLog {
				if !strings.Contains(log, w) {
					t.Errorf("server never read %q:\n%s", w, log)
				}
			}
			for _, w := range tc.notLog {
				if strings.Contains(log, w) {
					t.Errorf("server read %q:\n%s", w, log)
				}
			}
		})
	}
}

// TestEmailNetworkFailures: no answer is retried; the context's deadline
// bounds the dialogue and shows in the error.
func TestEmailNetworkFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	e, _ := NewEmail(testEmailConfig(refused), 10*time.Second)
	if retry, err := e.Notify(context.Background(), testNotification(manyAlerts(1)...)); !retry || err == nil {
		t.Errorf("refused: retry %v err %v", retry, err)
	}

	f := startFakeSMTP(t, &fakeSMTP{replies: map[string]string{"GREETING": "hang"}})
	e, _ = NewEmail(testEmailConfig(f.addr), 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	retry, err := e.Notify(ctx, testNotification(manyAlerts(1)...))
	if !retry || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("silent server: retry %v err %v", retry, err)
	}
	// An upper bound far above the deadline: only a missing deadline
	// (a dialogue waiting for the 10 s timeout) goes past it.
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v with a 200ms deadline", d)
	}
}

func TestPickAuth(t *testing.T) {
	for _, tc := range []struct {
		offered string
		tls     bool
		want    string // mechanism, or the error
	}{
		{"PLAIN LOGIN CRAM-MD5", true, "PLAIN"},
		{"LOGIN CRAM-MD5", true, "LOGIN"},
		{"CRAM-MD5", true, "CRAM-MD5"},
		{"PLAIN LOGIN CRAM-MD5", false, "CRAM-MD5"},
		{"PLAIN LOGIN", false, errInsecureAuth.Error()},
		{"XOAUTH2", true, "none of"},
	} {
		a, err := pickAuth(strings.Fields(tc.offered), tc.tls, "", "u", "p")
		got := ""
		if err != nil {
			got = err.Error()
		} else {
			got, _, err = a.Start(&smtp.ServerInfo{Name: "h", TLS: tc.tls})
			if err != nil {
				got = err.Error()
			}
		}
		if !strings.Contains(got, tc.want) {
			t.Errorf("%q tls=%v: got %q, want %q", tc.offered, tc.tls, got, tc.want)
		}
	}
	// The mechanisms refuse on their own too.
	for _, a := range []smtp.Auth{&plainAuth{user: "u", password: "p"}, &loginAuth{user: "u", password: "p"}} {
		if _, resp, err := a.Start(&smtp.ServerInfo{Name: "localhost"}); !errors.Is(err, errAuthNeedsTLS) || resp != nil {
			t.Errorf("%T over plain text to localhost: %q %v", a, resp, err)
		}
	}
}

// TestEmailMessage: headers (encoded subject, stable Message-Id and group
// headers, no injection from alert text) and both alternatives, the HTML
// one escaping alert text.
func TestEmailMessage(t *testing.T) {
	cfg := testEmailConfig("smtp.example.com:587")
	cfg.Headers = map[string]string{"x-team": "Sicherheit ü"}
	e, err := NewEmail(cfg, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	e.Now = func() time.Time { return t0 }
	a := notifytest.PrivilegedPod(0, "evil-0")
	a.Title = "Privilegierter Pod erstellt – ü"
	a.Message = "pod <script>alert(1)</script> & more"
	b := notifytest.PrivilegedPod(1, "evil-1")
	b.Title = a.Title
	for _, tc := range []struct {
		name     string
		resolved bool
		groupKey string
		subject  string
		idSuffix string
		text     []string
	}{
		{"firing", false, "", "[CRITICAL] Privilegierter Pod erstellt – ü (2 alerts) in prod-eu-1", "",
			[]string{"2 alert(s) in group", "who:   alice", "pod <script>alert(1)</script> & more"}},
		{"resolved", true, "", "[RESOLVED] Privilegierter Pod erstellt – ü (2 alerts) in prod-eu-1", ".resolved",
			[]string{"RESOLVED: this group is closed"}},
		{"header injection", false, "{}:{user=\"x\r\nBcc: victim@example.com\"}", "[CRITICAL] Privilegierter Pod erstellt – ü (2 alerts) in prod-eu-1", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := testNotification(a, b)
			n.Resolved = tc.resolved
			if tc.groupKey != "" {
				n.GroupKey = tc.groupKey
			}
			raw, err := e.Message(n)
			if err != nil {
				t.Fatal(err)
			}
			m, err := mail.ReadMessage(bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			h := m.Header
			var dec mime.WordDecoder
			if got, _ := dec.DecodeHeader(h.Get("Subject")); got != tc.subject || !strings.HasPrefix(h.Get("Subject"), "=?utf-8?q?") {
				t.Errorf("Subject %q (raw %q), want %q", got, h.Get("Subject"), tc.subject)
			}
			if d, err := h.Date(); err != nil || !d.Equal(t0) {
				t.Errorf("Date %q: %v", h.Get("Date"), err)
			}
			if to, err := h.AddressList("To"); err != nil || len(to) != 2 || to[1].Address != "ops@example.com" {
				t.Errorf("To %q: %v", h.Get("To"), err)
			}
			if from, err := mail.ParseAddress(h.Get("From")); err != nil || from.Address != "alerts@example.com" {
				t.Errorf("From %q", h.Get("From"))
			}
			if want := "<" + n.IdempotencyKey + tc.idSuffix + "@example.com>"; h.Get("Message-Id") != want {
				t.Errorf("Message-Id %q, want %q", h.Get("Message-Id"), want)
			}
			if h.Get(EmailIdempotencyHeader) != n.IdempotencyKey || h.Get("MIME-Version") != "1.0" {
				t.Errorf("headers %v", h)
			}
			if got, _ := dec.DecodeHeader(h.Get(EmailGroupKeyHeader)); !strings.HasPrefix(got, "{}") {
				t.Errorf("%s %q", EmailGroupKeyHeader, got)
			}
			if got, _ := dec.DecodeHeader(h.Get("X-Team")); got != "Sicherheit ü" {
				t.Errorf("X-Team %q", got)
			}
			if h.Get("Bcc") != "" {
				t.Errorf("alert text injected a header: Bcc %q", h.Get("Bcc"))
			}
			text, html := emailParts(t, h.Get("Content-Type"), m.Body)
			for _, w := range tc.text {
				if !strings.Contains(text, w) {
					t.Errorf("text lacks %q:\n%s", w, text)
				}
			}
			if strings.Contains(html, "<script>") || !strings.Contains(html, "&lt;script&gt;") {
				t.Errorf("HTML does not escape alert text:\n%s", html)
			}
			if tc.resolved != strings.Contains(html, "Resolved") {
				t.Errorf("resolved %v, HTML:\n%s", tc.resolved, html)
			}
			for _, line := range strings.Split(string(raw), "\r\n") {
				if len(line) > 998 {
					t.Errorf("line of %d bytes", len(line))
				}
			}
		})
	}
}

// emailParts returns the decoded text/plain and text/html parts of a
// multipart/alternative body.
func emailParts(t *testing.T, contentType string, body io.Reader) (text, html string) {
	t.Helper()
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("Content-Type %q: %v", contentType, err)
	}
	mr := multipart.NewReader(body, params["boundary"])
	for {
		p, err := mr.NextPart() // undoes the quoted-printable encoding
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		switch ct := p.Header.Get("Content-Type"); ct {
		case "text/plain; charset=utf-8":
			text = string(b)
		case "text/html; charset=utf-8":
			html = string(b)
		default:
			t.Errorf("part %q", ct)
		}
	}
	if text == "" || html == "" {
		t.Fatalf("parts missing: text %d bytes, html %d bytes", len(text), len(html))
	}
	return text, html
}

func TestEmailTemplatesAndResolved(t *testing.T) {
	f := startFakeSMTP(t, &fakeSMTP{ext: []string{"AUTH CRAM-MD5"}})
	cfg := testEmailConfig(f.addr)
	cfg.RequireTLS = false
	for _, tc := range []struct {
		name    string
		set     func(*config.EmailConfig)
		wantErr string
	}{
		{"broken subject", func(c *config.EmailConfig) { c.Subject = "{{ .Nope " }, "template email subject"},
		{"broken html", func(c *config.EmailConfig) { c.HTML = "{{ if }}" }, "template email html"},
		{"bad from", func(c *config.EmailConfig) { c.From = "not an address" }, "email: from"},
	} {
		c := cfg
		tc.set(&c)
		if _, err := NewEmail(c, time.Second); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.wantErr)
		}
	}
	// A template that fails at run time fails the notification for good.
	c := cfg
	c.Text = `{{ .GroupLabels.nope }}`
	e, err := NewEmail(c, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if retry, err := e.Notify(context.Background(), testNotification(manyAlerts(1)...)); retry || err == nil {
		t.Errorf("missing key: retry %v err %v", retry, err)
	}
	// Resolved mails only with send_resolved.
	e, _ = NewEmail(cfg, time.Second)
	n := testNotification(manyAlerts(1)...)
	n.Resolved = true
	if retry, err := e.Notify(context.Background(), n); retry || err != nil || f.accepted() != 0 {
		t.Errorf("resolved without send_resolved: retry %v err %v, %d sent", retry, err, f.accepted())
	}
	cfg.SendResolved = true
	e, _ = NewEmail(cfg, time.Second)
	if retry, err := e.Notify(context.Background(), n); retry || err != nil || f.accepted() != 1 {
		t.Errorf("resolved with send_resolved: retry %v err %v, %d sent", retry, err, f.accepted())
	}
}
