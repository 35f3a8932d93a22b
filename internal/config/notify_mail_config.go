package config

import (
	"fmt"
	"net"
	"net/mail"
	"strconv"
	"strings"
)

// TeamsConfig posts Adaptive Cards to a Microsoft Teams channel through a
// Workflows webhook ("Post to a channel when a webhook request is
// received"). The webhook URL carries a signature, so it is a credential:
// give it as url_file or url_env, or inline as url; it never prints.
type TeamsConfig struct {
	URL     Secret `yaml:"url"`
	URLFile string `yaml:"url_file"`
	URLEnv  string `yaml:"url_env"`
	// Title and Text are text templates (see docs/alerting.md) of the
	// card's heading and its first paragraph; empty uses the built-in ones.
	Title string `yaml:"title"`
	Text  string `yaml:"text"`
	// KibanaURL and KibanaDataView: as for Slack, a Discover button.
	KibanaURL      string `yaml:"kibana_url"`
	KibanaDataView string `yaml:"kibana_data_view"`
	// MaxAlerts caps the alerts listed in one card (the count shows all);
	// fewer are listed when the card would pass Teams' message size limit.
	MaxAlerts int `yaml:"max_alerts"`
	// SendResolved also sends a card when a group closes.
	SendResolved bool `yaml:"send_resolved"`
}

// EmailConfig sends multipart (text and HTML) mail over SMTP.
type EmailConfig struct {
	// To are the recipients (RFC 5322 addresses, "Name <a@b>" allowed).
	To []string `yaml:"to"`
	// From is the sender address, also the envelope sender.
	From string `yaml:"from"`
	// Smarthost is the SMTP server, host:port. Port 465 speaks TLS from
	// the first byte (implicit TLS); any other port upgrades with STARTTLS.
	Smarthost string `yaml:"smarthost"`
	// Hello is the name sent in EHLO (default localhost).
	Hello string `yaml:"hello"`
	// AuthUsername enables SMTP AUTH (PLAIN, else LOGIN, else CRAM-MD5;
	// PLAIN and LOGIN only over TLS). The password is a secret: also from
	// auth_password_file or auth_password_env.
	AuthUsername     string `yaml:"auth_username"`
	AuthPassword     Secret `yaml:"auth_password"`
	AuthPasswordFile string `yaml:"auth_password_file"`
	AuthPasswordEnv  string `yaml:"auth_password_env"`
	// AuthIdentity is the PLAIN authorization identity (usually empty).
	AuthIdentity string `yaml:"auth_identity"`
	// RequireTLS refuses to talk to a server that does not offer
	// STARTTLS (default true). STARTTLS is used whenever it is offered.
	RequireTLS bool `yaml:"require_tls"`
	// TLS configures the verification of the server's certificate.
	TLS EmailTLSConfig `yaml:"tls"`
	// Headers are added to every mail; they may not replace the headers
	// kubesift sets itself (From, To, Subject, Date, Message-Id, MIME and
	// X-Kubesift-* headers).
	Headers map[string]string `yaml:"headers"`
	// Subject and Text are text templates, HTML an html/template (see
	// docs/alerting.md); empty uses the built-in ones.
	Subject string `yaml:"subject"`
	Text    string `yaml:"text"`
	HTML    string `yaml:"html"`
	// SendResolved also sends a mail when a group closes.
	SendResolved bool `yaml:"send_resolved"`
}

// EmailTLSConfig configures the TLS client of an e-mail integration.
type EmailTLSConfig struct {
	// CAFile is a PEM bundle of the CAs to trust instead of the system's.
	CAFile string `yaml:"ca_file"`
	// ServerName is the name to verify (default: the smarthost's host).
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify disables certificate verification (test relays).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// ReservedEmailHeaders are the headers an e-mail integration sets itself;
// email_configs[].headers may not name them (compared case-insensitively).
var ReservedEmailHeaders = []string{
	"From", "To", "Cc", "Bcc", "Subject", "Date", "Message-Id", "MIME-Version",
	"Content-Type", "Content-Transfer-Encoding", "X-Kubesift-Group-Key", "X-Kubesift-Idempotency-Key",
}

// UnmarshalYAML fills the defaults of a Teams integration before reading it.
func (t *TeamsConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*t = TeamsConfig{MaxAlerts: 20}
	type plain TeamsConfig
	return unmarshal((*plain)(t))
}

// UnmarshalYAML fills the defaults of an e-mail integration before reading it.
func (e *EmailConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*e = EmailConfig{RequireTLS: true}
	type plain EmailConfig
	return unmarshal((*plain)(e))
}

// resolveMailSecrets reads the Teams URLs and SMTP passwords of receiver
// i with read (see NotifyConfig.resolveSecrets).
func (r *ReceiverConfig) resolveMailSecrets(i int, read func(dst *Secret, env, file, field string)) {
	for j := range r.TeamsConfigs {
		t := &r.TeamsConfigs[j]
		read(&t.URL, t.URLEnv, t.URLFile, fmt.Sprintf("notify.receivers[%d].teams_configs[%d].url_file", i, j))
	}
	for j := range r.EmailConfigs {
		e := &r.EmailConfigs[j]
		read(&e.AuthPassword, e.AuthPasswordEnv, e.AuthPasswordFile, fmt.Sprintf("notify.receivers[%d].email_configs[%d].auth_password_file", i, j))
	}
}

// validateMail adds the problems of the receiver's teams_configs and
// email_configs to v.
func (r *ReceiverConfig) validateMail(v *validator, path string) {
	for i := range r.TeamsConfigs {
		t := &r.TeamsConfigs[i]
		p := fmt.Sprintf("%s.teams_configs[%d]", path, i)
		secretURL(v, p, t.URL, t.URLEnv)
		httpURL(v, p+".kibana_url", t.KibanaURL, false)
		if t.MaxAlerts <= 0 {
			v.add(p+".max_alerts", "must be positive")
		}
	}
	for i := range r.EmailConfigs {
		r.EmailConfigs[i].validate(v, fmt.Sprintf("%s.email_configs[%d]", path, i))
	}
}

func (e *EmailConfig) validate(v *validator, p string) {
	if len(e.To) == 0 {
		v.add(p+".to", "at least one recipient is required")
	}
	for i, to := range e.To {
		if _, err := mail.ParseAddress(to); err != nil {
			v.add(fmt.Sprintf("%s.to[%d]", p, i), fmt.Sprintf("not an e-mail address: %v", err))
		}
	}
	if e.From == "" {
		v.add(p+".from", "required")
	} else if _, err := mail.ParseAddress(e.From); err != nil {
		v.add(p+".from", fmt.Sprintf("not an e-mail address: %v", err))
	}
	host, port, err := net.SplitHostPort(e.Smarthost)
	if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n <= 0 || n > 65535 {
		v.add(p+".smarthost", "not host:port")
	}
	if strings.ContainsAny(e.Hello, " \r\n") {
		v.add(p+".hello", "must be a single host name")
	}
	switch {
	case e.AuthUsername == "" && e.AuthPassword != "":
		v.add(p+".auth_username", "required with a password")
	case e.AuthUsername != "" && e.AuthPassword == "":
		if e.AuthPasswordEnv != "" {
			v.add(p+".auth_password_env", fmt.Sprintf("environment variable %s is empty or unset", e.AuthPasswordEnv))
		} else {
			v.add(p+".auth_password", "required with auth_username (auth_password, auth_password_file or auth_password_env)")
		}
	}
	for name, val := range e.Headers {
		if name == "" || strings.ContainsAny(name, " :\r\n") {
			v.add(p+".headers", fmt.Sprintf("%q is not a header name", name))
			continue
		}
		for _, r := range ReservedEmailHeaders {
			if strings.EqualFold(name, r) {
				v.add(p+".headers."+name, "set by kubesift itself")
			}
		}
		if strings.ContainsAny(val, "\r\n") {
			v.add(p+".headers."+name, "a header value may not contain a line break")
		}
	}
}
