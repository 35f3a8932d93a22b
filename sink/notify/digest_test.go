package notify

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/sink/elasticsearch"
)

// digestHostile is record text as it reaches a digest: an Event reason.
const digestHostile = "<!channel> <https://evil.example|click> [x](https://evil.example) ```"

func testDigestMessage() *Digest {
	return &Digest{
		Receiver: "sec", Cluster: "prod", Day: "2026-12-07",
		From: time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC), To: time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC),
		Title: "kubesift digest: prod, 2026-12-06 08:00 – 2026-12-07 08:00 UTC",
		Text:  "Alerts  3\n  " + digestHostile + "  2\n", HTML: "<p>digest</p>",
		Data: json.RawMessage(`{"cluster":"prod","alerts":3}`), IdempotencyKey: DigestKey("sec", "prod", "2026-12-07"),
	}
}

// TestTakesDigest: the integrations a digest goes to, and those it never
// does (a digest is neither an alert nor an incident).
func TestTakesDigest(t *testing.T) {
	client := http.DefaultClient
	must := func(n Notifier, err error) Notifier {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, tc := range []struct {
		name string
		n    Notifier
		want bool
	}{
		{"slack", must(NewSlack(config.SlackConfig{URL: "https://hooks.example/x"}, client)), true},
		{"teams", must(NewTeams(config.TeamsConfig{URL: "https://flows.example/x"}, client)), true},
		{"email", must(NewEmail(testEmailConfig("smtp.example:587"), time.Second)), true},
		{"webhook kubesift", must(NewWebhook(config.WebhookConfig{URL: "https://h.example/x"}, client)), true},
		{"webhook alertmanager", must(NewWebhook(config.WebhookConfig{URL: "https://h.example/x", Format: config.WebhookFormatAlertmanager}, client)), false},
		{"pagerduty", must(NewPagerDuty(config.PagerDutyConfig{RoutingKey: "k"}, client)), false},
		{"function", NotifierFunc(func(context.Context, *Notification) (bool, error) { return false, nil }), false},
	} {
		if _, got := TakesDigest(tc.n); got != tc.want {
			t.Errorf("%s: TakesDigest = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestDigestKey: one key per receiver, cluster and day — the same for a
// second send of the same digest.
func TestDigestKey(t *testing.T) {
	k := DigestKey("sec", "prod", "2026-12-07")
	for _, other := range []string{DigestKey("ops", "prod", "2026-12-07"), DigestKey("sec", "staging", "2026-12-07"), DigestKey("sec", "prod", "2026-12-08")} {
		if other == k {
			t.Errorf("key %s repeats", k)
		}
	}
	if DigestKey("sec", "prod", "2026-12-07") != k {
		t.Error("key not deterministic")
	}
}

// TestWebhookDigest: the kubesift/v1 digest payload, signed, with its
// idempotency key, the figures verbatim; a 503 is retried.
func TestWebhookDigest(t *testing.T) {
	var mu sync.Mutex
	var got []*http.Request
	var bodies [][]byte
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		got, bodies = append(got, r), append(bodies, b)
		w.WriteHeader(status)
	}))
	defer srv.Close()
	w, err := NewWebhook(config.WebhookConfig{URL: config.Secret(srv.URL + "/hook?token=SECRET"), Secret: "s3"}, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 7, 8, 0, 5, 0, time.UTC)
	w.Now = func() time.Time { return now }
	d := testDigestMessage()
	if retry, err := w.NotifyDigest(context.Background(), d); err != nil || retry {
		t.Fatalf("NotifyDigest = %v, %v", retry, err)
	}
	var p DigestPayload
	if err := json.Unmarshal(bodies[0], &p); err != nil {
		t.Fatal(err)
	}
	if p.Version != PayloadVersion || p.Kind != "digest" || p.Cluster != "prod" || p.Day != "2026-12-07" || p.Receiver != "sec" ||
		p.IdempotencyKey != d.IdempotencyKey || string(p.Digest) != string(d.Data) || !p.SentAt.Equal(now) || !p.To.Equal(d.To) {
		t.Errorf("payload %s", bodies[0])
	}
	if h := got[0].Header.Get(IdempotencyHeader); h != d.IdempotencyKey {
		t.Errorf("Idempotency-Key %q", h)
	}
	if err := VerifySignature([]byte("s3"), got[0].Header.Get(SignatureHeader), bodies[0], now, time.Minute); err != nil {
		t.Errorf("signature: %v", err)
	}
	status = http.StatusServiceUnavailable
	retry, err := w.NotifyDigest(context.Background(), d)
	if !retry || err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("503: retry %v err %v", retry, err)
	}
}

// TestSlackDigest: record text in the digest cannot ping, link or end the
// preformatted block.
func TestSlackDigest(t *testing.T) {
	s, err := NewSlack(config.SlackConfig{URL: "https://hooks.example/x", Channel: "#sec"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := s.DigestMessage(testDigestMessage())
	b, _ := json.Marshal(m)
	body := m.Attachments[0].Blocks[1].Text.Text
	if strings.Contains(string(b), "<!channel>") || strings.Contains(string(b), "<https://") || strings.Count(body, "```") != 2 ||
		!strings.HasPrefix(body, "```") || !strings.HasSuffix(body, "```") || m.Channel != "#sec" {
		t.Errorf("message %s", b)
	}
	long := testDigestMessage()
	long.Text = strings.Repeat("x", 10000)
	if n := len([]rune(s.DigestMessage(long).Attachments[0].Blocks[1].Text.Text)); n > slackSectionMax {
		t.Errorf("section of %d runes", n)
	}
}

// TestTeamsDigest: markdown in record text is inert, and a digest too
// long for Teams is cut to fit.
func TestTeamsDigest(t *testing.T) {
	tm, err := NewTeams(config.TeamsConfig{URL: "https://flows.example/x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tm.DigestBody(testDigestMessage())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "[x](https://") || !strings.Contains(string(b), `\\[x\\]\\(https://evil.example\\)`) {
		t.Errorf("body %s", b)
	}
	long := testDigestMessage()
	long.Text = strings.Repeat("a line of a long digest\n", 5000)
	if b, err = tm.DigestBody(long); err != nil || len(b) > TeamsMaxBody || strings.Count(string(b), "a line of a long digest") < 500 {
		t.Errorf("long digest: %d bytes, %d lines, %v", len(b), strings.Count(string(b), "a line of a long digest"), err)
	}
}

// TestEmailDigestMessage: subject, both alternatives, and a Message-Id
// and idempotency header of the digest's key, distinct from any alert
// notification's.
func TestEmailDigestMessage(t *testing.T) {
	e, err := NewEmail(testEmailConfig("smtp.example:587"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	d := testDigestMessage()
	m, err := e.DigestMessage(d)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Message-Id: <digest." + d.IdempotencyKey + "@example.com>", EmailIdempotencyHeader + ": " + d.IdempotencyKey,
		EmailGroupKeyHeader + ": digest/prod/2026-12-07", "Subject: =?utf-8?q?kubesift_digest", "text/plain", "text/html",
	} {
		if !strings.Contains(string(m), want) {
			t.Errorf("missing %q in\n%s", want, m)
		}
	}
}

// TestDigestClaims (real Elasticsearch): of replicas claiming one (cluster,
// day) at once exactly one wins; a done claim stays done; a claim not done
// within the claim timeout is taken over by exactly one of the replicas
// trying at once; the owner may retake its own claim; Done of a claim
// taken over says so.
func TestDigestClaims(t *testing.T) {
	es, err := elasticsearch.NewClient(config.ElasticsearchConfig{Addresses: []string{esURL(t)}})
	if err != nil {
		t.Fatal(err)
	}
	index := strings.Replace(testIndex(t), "silences", "digests", 1)
	t.Cleanup(func() { es.Indices.Delete([]string{index}) })
	now := time.Now()
	replicas := make([]*DigestClaims, 4)
	for i := range replicas {
		if replicas[i], err = NewDigestClaims(t.Context(), es, index, string(rune('a'+i)), time.Hour); err != nil {
			t.Fatal(err)
		}
		replicas[i].Now = func() time.Time { return now }
	}
	race := func(day string) (won []*DigestClaim, outcomes map[string]int) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		outcomes = map[string]int{}
		for _, r := range replicas {
			wg.Go(func() {
				c, how, err := r.Claim(t.Context(), "prod", day)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					t.Error(err)
				}
				outcomes[how]++
				if c != nil {
					won = append(won, c)
				}
			})
		}
		wg.Wait()
		return won, outcomes
	}
	won, outcomes := race("2026-12-07")
	if len(won) != 1 || outcomes[ClaimWon] != 1 || outcomes[ClaimHeld] != 3 {
		t.Fatalf("first claims: %d won, outcomes %v", len(won), outcomes)
	}
	// Done writes over the claimed version, whichever store writes it.
	if err := replicas[0].Done(t.Context(), won[0], []string{"sec/email[0]"}); err != nil {
		t.Fatal(err)
	}
	if _, outcomes = race("2026-12-07"); outcomes[ClaimDone] != 4 {
		t.Errorf("after done: %v", outcomes)
	}

	// The owner of an unfinished claim retakes it at once; the others
	// do not.
	won, _ = race("2026-12-08")
	if len(won) != 1 {
		t.Fatalf("%d won", len(won))
	}
	retaken := 0
	for _, r := range replicas {
		c, how, err := r.Claim(t.Context(), "prod", "2026-12-08")
		switch {
		case err != nil:
			t.Fatal(err)
		case c != nil && how == ClaimTakeover:
			retaken++
			won[0] = c
		case how != ClaimHeld:
			t.Errorf("a replica's claim: %s", how)
		}
	}
	if retaken != 1 {
		t.Fatalf("%d owners retook their claim", retaken)
	}

	// Not done within the timeout: exactly one of the replicas trying at
	// once takes it over, and the stale claim's Done is refused.
	later := now.Add(2 * time.Hour)
	for _, r := range replicas {
		r.Now = func() time.Time { return later }
	}
	taken, outcomes := race("2026-12-08")
	if len(taken) != 1 || outcomes[ClaimTakeover] != 1 || outcomes[ClaimHeld] != 3 {
		t.Fatalf("takeover: %d, %v", len(taken), outcomes)
	}
	if err := replicas[0].Done(t.Context(), won[0], nil); !errors.Is(err, ErrClaimLost) {
		t.Errorf("Done of a claim taken over = %v", err)
	}
	if err := replicas[0].Done(t.Context(), taken[0], nil); err != nil {
		t.Errorf("Done of the takeover: %v", err)
	}
}
