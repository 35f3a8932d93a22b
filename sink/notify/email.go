package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"sort"
	"strings"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/tlsfiles"
	"github.com/kubesift/kubesift/sink"
)

// Headers of a notification mail beside the standard ones.
const (
	// EmailGroupKeyHeader carries Notification.GroupKey, so mail clients
	// and filters can thread or sort by group.
	EmailGroupKeyHeader = "X-Kubesift-Group-Key"
	// EmailIdempotencyHeader carries Notification.IdempotencyKey; the
	// Message-Id is derived from it too, so a re-sent notification is
	// the same message to the systems that drop duplicate Message-Ids.
	EmailIdempotencyHeader = "X-Kubesift-Idempotency-Key"
)

// Email sends one multipart/alternative mail (text and HTML) per
// notification over SMTP: implicit TLS on port 465, STARTTLS otherwise
// (required unless require_tls is false), then SMTP AUTH when a user is
// configured.
//
// Classification, the SMTP counterpart of sink.Retryable's: no answer
// (refused, reset, timeout) and 4xx replies are retried; 5xx replies
// (550 mailbox unknown, 535 authentication failed), a missing STARTTLS
// and a certificate that does not verify fail for good. A recipient the
// server refuses fails the whole mail before DATA, so a retry never sends
// twice to the recipients that were accepted.
type Email struct {
	cfg         config.EmailConfig
	addr, host  string
	implicitTLS bool
	tls         *tls.Config
	from        *mail.Address
	to          []*mail.Address
	password    string // a credential, never logged nor in an error
	subject     *Template
	text        *Template
	html        *Template
	timeout     time.Duration
	// Now is the clock of the Date header (tests).
	Now func() time.Time
}

// The built-in templates. Alert fields are attacker-controlled; the HTML
// one is an html/template, so they are escaped there.
const (
	defaultEmailSubject = `{{ if eq .Status "resolved" }}[RESOLVED]{{ else }}[{{ index .CommonLabels "severity" | default "mixed" | upper }}]{{ end }} ` +
		`{{ range $i, $a := .Alerts }}{{ if eq $i 0 }}{{ $a.Title }}{{ end }}{{ else }}kubesift alerts{{ end }}` +
		`{{ if gt .Count 1 }} ({{ .Count }} alerts){{ end }}{{ with index .GroupLabels "cluster" }} in {{ . }}{{ end }}`
	defaultEmailText = `{{ if eq .Status "resolved" }}RESOLVED: this group is closed; it took no new alert for its repeat interval.

{{ end }}{{ .Count }} alert(s) in group {{ .GroupKey }}
(receiver {{ .Receiver }}, notification {{ .Seq }}, {{ .Total }} alerts since the group opened)
{{ range .Alerts }}
[{{ .Severity }}] {{ .Title }} ({{ .RuleID }})
  {{ .Message }}
  who:   {{ .User | default "-" }}
  what:  {{ .Verb }} {{ .Resource }}/{{ .Name }}
  where: namespace {{ .Namespace | default "-" }}, cluster {{ .Cluster }}
  time:  {{ .Time.UTC.Format "2006-01-02T15:04:05Z07:00" }}
  id:    {{ .ID }}
{{ end }}{{ if .Truncated }}
… and {{ .Truncated }} more not listed.
{{ end }}`
	defaultEmailHTML = `<!DOCTYPE html>
<html><body style="font-family: sans-serif; font-size: 14px">
{{ if eq .Status "resolved" }}<h2 style="color: #2E7D32">Resolved</h2>
<p>This group is closed: it took no new alert for its repeat interval.</p>
{{ end }}<p>{{ .Count }} alert(s) in group <code>{{ .GroupKey }}</code>
(receiver {{ .Receiver }}, notification {{ .Seq }}, {{ .Total }} alerts since the group opened)</p>
<table cellpadding="6" style="border-collapse: collapse" border="1">
<tr><th align="left">Severity</th><th align="left">Alert</th><th align="left">Who</th><th align="left">What</th><th align="left">Where</th><th align="left">Time (UTC)</th></tr>
{{ range .Alerts }}<tr><td>{{ .Severity }}</td><td><b>{{ .Title }}</b> ({{ .RuleID }})<br>{{ .Message }}</td><td>{{ .User | default "-" }}</td><td>{{ .Verb }} {{ .Resource }}/{{ .Name }}</td><td>namespace {{ .Namespace | default "-" }}<br>cluster {{ .Cluster }}</td><td>{{ .Time.UTC.Format "2006-01-02 15:04:05" }}</td></tr>
{{ end }}</table>
{{ if .Truncated }}<p>… and {{ .Truncated }} more not listed.</p>
{{ end }}</body></html>
`
)

// emailSubjectMax bounds the subject, in runes.
const emailSubjectMax = 250

// NewEmail builds an e-mail notifier. timeout bounds one delivery (the
// whole SMTP dialogue) when the context has no earlier deadline. The
// templates are parsed here, so a broken one fails the start.
func NewEmail(cfg config.EmailConfig, timeout time.Duration) (*Email, error) {
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	e := &Email{cfg: cfg, addr: cfg.Smarthost, password: string(cfg.AuthPassword), timeout: timeout, Now: time.Now}
	host, port, err := net.SplitHostPort(cfg.Smarthost)
	if err != nil {
		return nil, fmt.Errorf("email: smarthost: %w", err)
	}
	e.host, e.implicitTLS = host, port == "465"
	if e.from, err = mail.ParseAddress(cfg.From); err != nil {
		return nil, fmt.Errorf("email: from: %w", err)
	}
	if len(cfg.To) == 0 {
		return nil, errors.New("email: no recipient")
	}
	for i, s := range cfg.To {
		a, err := mail.ParseAddress(s)
		if err != nil {
			return nil, fmt.Errorf("email: to[%d]: %w", i, err)
		}
		e.to = append(e.to, a)
	}
	if e.cfg.Hello == "" {
		e.cfg.Hello = "localhost"
	}
	e.tls = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: orDefault(cfg.TLS.ServerName, host),
		// Only for test relays; the operator sees it in the file.
		InsecureSkipVerify: cfg.TLS.InsecureSkipVerify}
	if cfg.TLS.CAFile != "" {
		if e.tls.RootCAs, err = tlsfiles.CertPool(cfg.TLS.CAFile, "email: tls.ca_file"); err != nil {
			return nil, err
		}
	}
	if e.subject, err = ParseTemplate("email subject", orDefault(cfg.Subject, defaultEmailSubject)); err != nil {
		return nil, err
	}
	if e.text, err = ParseTemplate("email text", orDefault(cfg.Text, defaultEmailText)); err != nil {
		return nil, err
	}
	if e.html, err = ParseHTMLTemplate("email html", orDefault(cfg.HTML, defaultEmailHTML)); err != nil {
		return nil, err
	}
	return e, nil
}

// Notify implements Notifier. A resolved notification is sent only with
// send_resolved; otherwise it is accepted and dropped here, on purpose.
func (e *Email) Notify(ctx context.Context, n *Notification) (bool, error) {
	if n.Resolved && !e.cfg.SendResolved {
		return false, nil
	}
	msg, err := e.Message(n)
	if err != nil {
		return false, err
	}
	return e.send(ctx, msg)
}

// Message renders the whole mail of n: headers and the text and HTML
// alternatives, quoted-printable, CRLF line ends.
func (e *Email) Message(n *Notification) ([]byte, error) {
	d := NewTemplateData(n)
	subject, err := e.subject.Execute(d)
	if err != nil {
		return nil, fmt.Errorf("email: %w", err)
	}
	text, err := e.text.Execute(d)
	if err != nil {
		return nil, fmt.Errorf("email: %w", err)
	}
	html, err := e.html.Execute(d)
	if err != nil {
		return nil, fmt.Errorf("email: %w", err)
	}
	id := n.IdempotencyKey
	if n.Resolved {
		id += ".resolved"
	}
	return e.compose(subject, text, html, id, n.GroupKey, n.IdempotencyKey)
}

// compose builds a mail from its parts: headers (the Message-Id from
// msgID, see messageID), then the text and HTML alternatives,
// quoted-printable, CRLF line ends.
func (e *Email) compose(subject, text, html, msgID, groupKey, idempotencyKey string) ([]byte, error) {
	body, boundary, err := alternatives(text, html)
	if err != nil {
		return nil, fmt.Errorf("email: %w", err)
	}
	var m bytes.Buffer
	header := func(k, v string) { m.WriteString(k + ": " + v + "\r\n") }
	header("Date", e.Now().Format(time.RFC1123Z))
	header("From", e.from.String())
	to := make([]string, len(e.to))
	for i, a := range e.to {
		to[i] = a.String()
	}
	header("To", strings.Join(to, ", "))
	header("Subject", headerValue(subject, emailSubjectMax))
	header("Message-Id", e.messageID(msgID))
	header(EmailGroupKeyHeader, headerValue(groupKey, 500))
	header(EmailIdempotencyHeader, idempotencyKey)
	names := make([]string, 0, len(e.cfg.Headers))
	for k := range e.cfg.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		header(textproto.CanonicalMIMEHeaderKey(k), headerValue(e.cfg.Headers[k], 500))
	}
	header("MIME-Version", "1.0")
	header("Content-Type", "multipart/alternative; boundary="+boundary)
	m.WriteString("\r\n")
	m.Write(body)
	return m.Bytes(), nil
}

// alternatives is the multipart/alternative body of text and html,
// quoted-printable (safe for any line length and any UTF-8).
func alternatives(text, html string) ([]byte, string, error) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, p := range []struct{ typ, content string }{{"text/plain", text}, {"text/html", html}} {
		w, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type": {p.typ + "; charset=utf-8"}, "Content-Transfer-Encoding": {"quoted-printable"}})
		if err != nil {
			return nil, "", err
		}
		qp := quotedprintable.NewWriter(w)
		if _, err := qp.Write([]byte(p.content)); err != nil {
			return nil, "", err
		}
		if err := qp.Close(); err != nil {
			return nil, "", err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, "", err
	}
	return body.Bytes(), mw.Boundary(), nil
}

// messageID is deterministic in the notification (its idempotency key,
// with ".resolved" for a group's resolved mail and a "digest." prefix for
// a digest), so a retry is the same message.
func (e *Email) messageID(id string) string {
	domain := "kubesift.invalid"
	if _, d, ok := strings.Cut(e.from.Address, "@"); ok && d != "" {
		domain = d
	}
	return "<" + id + "@" + domain + ">"
}

// headerValue makes s a safe header value: one line (a line break from an
// attacker-chosen label would inject headers), at most n runes, and
// RFC 2047-encoded when it is not ASCII.
func headerValue(s string, n int) string {
	return mime.QEncoding.Encode("utf-8", cut(strings.TrimSpace(oneLine(s)), n))
}

// Errors that fail a delivery for good without the server saying so.
var (
	errNoStartTLS   = errors.New("the server does not offer STARTTLS and require_tls is set: nothing sent, credentials withheld")
	errInsecureAuth = errors.New("the server offers only PLAIN/LOGIN authentication on an unencrypted connection: credentials withheld")
)

// send runs one SMTP dialogue. Every read and write is bounded by ctx's
// deadline (or the configured timeout), and ending ctx aborts it.
func (e *Email) send(ctx context.Context, msg []byte) (bool, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", e.addr)
	if err != nil {
		return smtpFailure(ctx, "connect to "+e.addr, err)
	}
	defer conn.Close()
	deadline, ok := ctx.Deadline()
	if !ok || time.Until(deadline) > e.timeout {
		deadline = time.Now().Add(e.timeout)
	}
	_ = conn.SetDeadline(deadline)
	// Unblocks a read or write in progress when ctx ends; net/smtp has no
	// context of its own.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c, retry, err := e.secure(ctx, conn)
	if err != nil {
		return retry, err
	}
	defer c.Close()
	if e.cfg.AuthUsername != "" {
		if retry, err := e.authenticate(ctx, c); err != nil {
			return retry, err
		}
	}
	return e.transact(ctx, c, msg)
}

// secure greets the server over TLS: from the first byte (port 465), or
// with STARTTLS whenever offered. Its absence is fatal only with
// require_tls, and then before any credential or content is sent.
func (e *Email) secure(ctx context.Context, conn net.Conn) (*smtp.Client, bool, error) {
	if e.implicitTLS {
		tc := tls.Client(conn, e.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			retry, err := smtpFailure(ctx, "TLS handshake with "+e.addr, err)
			return nil, retry, err
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, e.host)
	if err != nil {
		retry, err := smtpFailure(ctx, "greeting", err)
		return nil, retry, err
	}
	fail := func(op string, err error) (*smtp.Client, bool, error) {
		c.Close()
		retry, err := smtpFailure(ctx, op, err)
		return nil, retry, err
	}
	if err := c.Hello(e.cfg.Hello); err != nil {
		return fail("EHLO", err)
	}
	if e.implicitTLS {
		return c, false, nil
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		if err := c.StartTLS(e.tls); err != nil {
			return fail("STARTTLS", err)
		}
	} else if e.cfg.RequireTLS {
		return fail(e.addr, errNoStartTLS)
	}
	return c, false, nil
}

// transact sends the envelope and msg. Every recipient must be accepted
// before DATA: a refused one fails the mail for all (see Email).
func (e *Email) transact(ctx context.Context, c *smtp.Client, msg []byte) (bool, error) {
	if err := c.Mail(e.from.Address); err != nil {
		return smtpFailure(ctx, "MAIL FROM", err)
	}
	for _, a := range e.to {
		if err := c.Rcpt(a.Address); err != nil {
			return smtpFailure(ctx, "RCPT TO <"+a.Address+">", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return smtpFailure(ctx, "DATA", err)
	}
	if _, err := w.Write(msg); err != nil {
		return smtpFailure(ctx, "DATA", err)
	}
	if err := w.Close(); err != nil {
		return smtpFailure(ctx, "DATA", err)
	}
	// The server took the mail with its reply to DATA; a failed QUIT
	// changes nothing.
	_ = c.Quit()
	return false, nil
}

// authenticate picks PLAIN, else LOGIN (both only over TLS), else CRAM-MD5.
func (e *Email) authenticate(ctx context.Context, c *smtp.Client) (bool, error) {
	ok, mechs := c.Extension("AUTH")
	if !ok {
		return false, fmt.Errorf("email: AUTH: %s offers no authentication but auth_username is set", e.addr)
	}
	_, tlsOn := c.TLSConnectionState()
	a, err := pickAuth(strings.Fields(strings.ToUpper(mechs)), tlsOn, e.cfg.AuthIdentity, e.cfg.AuthUsername, e.password)
	if err != nil {
		return false, fmt.Errorf("email: AUTH: %s: %w", e.addr, err)
	}
	if err := c.Auth(a); err != nil {
		return smtpFailure(ctx, "AUTH", err)
	}
	return false, nil
}

// smtpFailure wraps err with op and classifies it (see Email).
func smtpFailure(ctx context.Context, op string, err error) (bool, error) {
	// The connection's deadline is ctx's, so a read may time out an
	// instant before ctx says it is done: a passed deadline counts.
	cerr := ctx.Err()
	if d, ok := ctx.Deadline(); cerr == nil && ok && !time.Now().Before(d) {
		cerr = context.DeadlineExceeded
	}
	if cerr != nil && !errors.Is(err, cerr) {
		// Say why the dialogue stopped, and let errors.Is(err,
		// context.Canceled) see it (the retry stage stops on it).
		err = fmt.Errorf("%w (%w)", err, cerr)
	}
	err = fmt.Errorf("email: %s: %w", op, err)
	var te *textproto.Error
	var ce *tls.CertificateVerificationError
	switch {
	case errors.As(err, &te):
		return te.Code >= 400 && te.Code < 500, err
	case errors.As(err, &ce), errors.Is(err, errAuthNeedsTLS), errors.Is(err, errInsecureAuth), errors.Is(err, errNoStartTLS):
		return false, err
	}
	return sink.Retryable(0, err), err
}
