package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// tracker remembers the Audit-IDs the recorder sent, to pick its own lines
// out of the shared audit log.
type tracker struct {
	mu  sync.Mutex
	ids map[string]bool
}

func (t *tracker) add(id string) {
	t.mu.Lock()
	t.ids[id] = true
	t.mu.Unlock()
}

func (t *tracker) has(id string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ids[id]
}

// tagger stamps each request with a fresh Audit-ID (which kube-apiserver
// keeps as the event's auditID) and the actor's client address as
// X-Forwarded-For (which it lists first in sourceIPs, as behind a load
// balancer). Untracked actors get ids too, but they are not remembered: their
// requests are scaffolding (what a kubelet or scheduler would do), not part
// of the recorded log.
type tagger struct {
	rt    http.RoundTripper
	ip    string
	track *tracker // nil: not recorded
}

func (t *tagger) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	id := string(uuid.NewUUID())
	r.Header.Set("Audit-ID", id)
	if t.ip != "" {
		r.Header.Set("X-Forwarded-For", t.ip)
	}
	if t.track != nil {
		t.track.add(id)
	}
	return t.rt.RoundTrip(r)
}

// actor is one identity of the story: a bearer token, a client address and a
// user agent.
type actor struct {
	name string
	cfg  *rest.Config
	cs   *kubernetes.Clientset
	http *http.Client // HTTP/1.1 client for upgrade requests (exec, port-forward)
}

type actorSpec struct {
	name      string
	token     string // "": anonymous
	ip        string
	userAgent string
	tracked   bool
	// impersonate, when set, is sent as Impersonate-User (and groups).
	impersonate       string
	impersonateGroups []string
}

func (s *scenario) newActor(spec actorSpec) (*actor, error) {
	cfg := &rest.Config{
		Host:            s.env["KUBESIFT_KUBE_URL"],
		TLSClientConfig: rest.TLSClientConfig{CAFile: s.env["KUBESIFT_KUBE_CA"]},
		BearerToken:     spec.token,
		UserAgent:       spec.userAgent,
		QPS:             200,
		Burst:           400,
		WarningHandler:  rest.NoWarnings{},
	}
	if spec.impersonate != "" {
		cfg.Impersonate = rest.ImpersonationConfig{UserName: spec.impersonate, Groups: spec.impersonateGroups}
	}
	var tr *tracker
	if spec.tracked {
		tr = s.track
	}
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return &tagger{rt: rt, ip: spec.ip, track: tr} }
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	// Upgrade requests (SPDY/WebSocket) need HTTP/1.1; Go's HTTP/2 transport
	// refuses a Connection: Upgrade header.
	tlsCfg, err := rest.TLSConfigFor(cfg)
	if err != nil {
		return nil, err
	}
	h1 := &http.Transport{TLSClientConfig: tlsCfg, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	rt, err := rest.HTTPWrappersForConfig(cfg, h1)
	if err != nil {
		return nil, err
	}
	return &actor{name: spec.name, cfg: cfg, cs: cs, http: &http.Client{Transport: rt}}, nil
}

// upgrade sends a streaming request as kubectl does (exec, attach,
// port-forward): SPDY over POST, or WebSocket over GET. There is no kubelet
// behind the ground's kube-apiserver, so the session is refused after
// authorization; the audit log records it all the same. It returns the HTTP
// status.
func (a *actor) upgrade(ctx context.Context, method, path string, websocket bool) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(a.cfg.Host, "/")+path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Connection", "Upgrade")
	if websocket {
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		req.Header.Set("Sec-WebSocket-Protocol", "v5.channel.k8s.io,v4.channel.k8s.io")
	} else {
		req.Header.Set("Upgrade", "SPDY/3.1")
		req.Header.Set("X-Stream-Protocol-Version", "v4.channel.k8s.io")
		req.Header.Add("X-Stream-Protocol-Version", "v3.channel.k8s.io")
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, nil
}

// raw sends a plain request (nodes/proxy, paths client-go has no typed call
// for) and returns the status.
func (a *actor) raw(ctx context.Context, method, path string, body []byte) (int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(a.cfg.Host, "/")+path, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, nil
}

func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
