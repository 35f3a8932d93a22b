package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubesift/kubesift/sink/elasticsearch"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/sink/notify"
)

// TestSilenceCLI runs `kubesift silence add|list|expire` against the silence
// API of a notifier whose store is the real test Elasticsearch.
func TestSilenceCLI(t *testing.T) {
	url := testenv.ElasticsearchURL(t)
	testenv.SharedLock(t) // no fault test stops Elasticsearch meanwhile
	es, err := elasticsearch.NewClient(config.ElasticsearchConfig{Addresses: []string{url}})
	if err != nil {
		t.Fatal(err)
	}
	index := fmt.Sprintf("kubesift-silences-cli-%d", time.Now().UnixNano())
	t.Cleanup(func() { es.Indices.Delete([]string{index}) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store, err := notify.NewESSilences(ctx, es, index)
	if err != nil {
		t.Fatal(err)
	}
	sil := notify.NewSilencer(store, time.Minute, nil)
	if err := sil.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	h, err := notify.NewSilenceAPI(sil, "cli-token", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	tok := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tok, []byte("cli-token\n"), 0o600)
	flags := []string{"--server", srv.URL, "--token-file", tok}

	out, errs, code := runCLI(t, "", append([]string{"silence", "add", "-m", "rule_id=k8s-privileged-pod", "-m", `namespace=~"ci-.*"`,
		"--duration", "1h", "--author", "alice", "--comment", "CI noise"}, flags...)...)
	if code != 0 {
		t.Fatalf("add: exit %d: %s", code, errs)
	}
	id := strings.TrimSpace(out)
	if len(id) != 32 {
		t.Fatalf("add printed %q, want an ID", out)
	}
	out, errs, code = runCLI(t, "", append([]string{"silence", "list"}, flags...)...)
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "active") || !strings.Contains(out, `namespace=~ci-.*`) {
		t.Errorf("list: exit %d\n%s%s", code, out, errs)
	}
	if _, errs, code = runCLI(t, "", append([]string{"silence", "expire", id}, flags...)...); code != 0 {
		t.Errorf("expire: exit %d: %s", code, errs)
	}
	out, _, _ = runCLI(t, "", append([]string{"silence", "list"}, flags...)...)
	if strings.Contains(out, id) {
		t.Errorf("expired silence still listed:\n%s", out)
	}
	out, _, _ = runCLI(t, "", append([]string{"silence", "list", "--expired", "-o", "json"}, flags...)...)
	if !strings.Contains(out, `"status": "expired"`) {
		t.Errorf("list --expired:\n%s", out)
	}
	// Errors say what is wrong; a wrong token is refused.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"silence", "add", "-m", "rule_id=~.*", "--author", "bob", "--comment", "x"}, "would silence every alert"},
		{[]string{"silence", "add", "-m", "rule_id=~.+", "-m", "severity!=urgent", "--author", "bob", "--comment", "x"}, "--force"},
		{[]string{"silence", "add", "--comment", "x"}, "at least one --matcher"},
		{[]string{"silence", "expire", "nope"}, "HTTP 404"},
	} {
		if _, errs, code := runCLI(t, "", append(tc.args, flags...)...); code == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", tc.args, code, errs, tc.want)
		}
	}
	// --force creates what the guardrail refuses.
	out, errs, code = runCLI(t, "", append([]string{"silence", "add", "-m", "rule_id=~.+", "--force", "--author", "bob", "--duration", "1h", "--comment", "incident"}, flags...)...)
	if code != 0 || len(strings.TrimSpace(out)) != 32 {
		t.Errorf("add --force: exit %d: %s%s", code, out, errs)
	}
	os.WriteFile(tok, []byte("wrong"), 0o600)
	if _, errs, code := runCLI(t, "", append([]string{"silence", "list"}, flags...)...); code == 0 || !strings.Contains(errs, "HTTP 401") {
		t.Errorf("wrong token: exit %d, %q", code, errs)
	}
}

func TestSilenceAddRequest(t *testing.T) {
	t.Setenv("USER", "from-env")
	end := time.Date(2026, 12, 24, 8, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		flags   silenceAddFlags
		want    string // the request's CreatedBy, Duration and EndsAt
		wantErr string
	}{
		{name: "duration, author from $USER", flags: silenceAddFlags{matchers: []string{"a=b"}, duration: time.Hour},
			want: "from-env 1h0m0s <nil>"},
		{name: "--ends-at wins over --duration", flags: silenceAddFlags{matchers: []string{"a=b"}, duration: time.Hour,
			endsAt: end.Format(time.RFC3339), author: "alice"}, want: "alice  " + end.String()},
		{name: "no matcher", flags: silenceAddFlags{duration: time.Hour}, wantErr: "at least one --matcher"},
		{name: "bad --starts-at", flags: silenceAddFlags{matchers: []string{"a=b"}, startsAt: "tomorrow"}, wantErr: "--starts-at: "},
		{name: "bad --ends-at", flags: silenceAddFlags{matchers: []string{"a=b"}, endsAt: "2026-12-24"}, wantErr: "--ends-at: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := tc.flags.request()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ends := "<nil>"
			if req.EndsAt != nil {
				ends = req.EndsAt.String()
			}
			if got := fmt.Sprintf("%s %s %s", req.CreatedBy, req.Duration, ends); got != tc.want {
				t.Errorf("request = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSilenceServerFromTheConfig(t *testing.T) {
	tests := []struct {
		name string
		api  config.SilenceAPIConfig
		want string
	}{
		{"API off: the default", config.SilenceAPIConfig{}, "http://127.0.0.1:9095"},
		{"wildcard listen: loopback", config.SilenceAPIConfig{Listen: ":9100"}, "http://127.0.0.1:9100"},
		{"IPv6 wildcard: loopback", config.SilenceAPIConfig{Listen: "[::]:9100"}, "http://127.0.0.1:9100"},
		{"a named host", config.SilenceAPIConfig{Listen: "notify.example:9100"}, "http://notify.example:9100"},
		{"with a certificate: https", config.SilenceAPIConfig{Listen: "0.0.0.0:9100", TLSCertFile: "tls.crt"}, "https://127.0.0.1:9100"},
		{"unparsable listen: the default", config.SilenceAPIConfig{Listen: "nope"}, "http://127.0.0.1:9095"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := silenceServer(tc.api); got != tc.want {
				t.Errorf("server = %q, want %q", got, tc.want)
			}
		})
	}
}
