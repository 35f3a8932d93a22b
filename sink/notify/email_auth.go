package notify

import (
	"errors"
	"net/smtp"
	"slices"
)

// pickAuth chooses the SMTP AUTH mechanism among those the server offers:
// PLAIN, else LOGIN — both send the password itself, so only over TLS —
// else CRAM-MD5, which sends a keyed digest and may go over a plain
// connection.
func pickAuth(offered []string, tlsOn bool, identity, user, password string) (smtp.Auth, error) {
	has := func(m string) bool { return slices.Contains(offered, m) }
	switch {
	case tlsOn && has("PLAIN"):
		return &plainAuth{identity: identity, user: user, password: password}, nil
	case tlsOn && has("LOGIN"):
		return &loginAuth{user: user, password: password}, nil
	case has("CRAM-MD5"):
		return smtp.CRAMMD5Auth(user, password), nil
	case has("PLAIN") || has("LOGIN"):
		return nil, errInsecureAuth
	}
	return nil, errors.New("the server offers none of PLAIN, LOGIN, CRAM-MD5")
}

// errAuthNeedsTLS is what the mechanisms themselves answer when asked to
// send a password in clear text; pickAuth never asks them to, this is
// the second lock on the same door.
var errAuthNeedsTLS = errors.New("refusing to send a password over an unencrypted connection")

// plainAuth is AUTH PLAIN (RFC 4616). net/smtp's PlainAuth would also
// send the password in clear text to a server named localhost; this one
// never does.
type plainAuth struct{ identity, user, password string }

func (a *plainAuth) Start(server *smtp.ServerInfo) (string, []byte, error) {
	if !server.TLS {
		return "", nil, errAuthNeedsTLS
	}
	return "PLAIN", []byte(a.identity + "\x00" + a.user + "\x00" + a.password), nil
}

func (a *plainAuth) Next(_ []byte, more bool) ([]byte, error) {
	if more {
		return nil, errors.New("unexpected server challenge after AUTH PLAIN")
	}
	return nil, nil
}

// loginAuth is the AUTH LOGIN of older servers (draft-murchison-sasl-login):
// the user name, then the password, each in answer to a challenge.
type loginAuth struct {
	user, password string
	step           int
}

func (a *loginAuth) Start(server *smtp.ServerInfo) (string, []byte, error) {
	if !server.TLS {
		return "", nil, errAuthNeedsTLS
	}
	a.step = 0
	return "LOGIN", nil, nil
}

func (a *loginAuth) Next(_ []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	a.step++
	switch a.step {
	case 1:
		return []byte(a.user), nil
	case 2:
		return []byte(a.password), nil
	}
	return nil, errors.New("unexpected third challenge after AUTH LOGIN")
}
