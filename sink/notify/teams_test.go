package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink/notify/notifytest"
)

// Adaptive Card elements and actions kubesift may send, with their required
// properties and every property allowed, per the Adaptive Card schema
// (adaptivecards.io/explorer).
var (
	cardElements = map[string]struct{ required, allowed []string }{
		"TextBlock": {[]string{"text"}, []string{"type", "text", "size", "weight", "color", "isSubtle", "wrap", "separator", "spacing", "maxLines", "horizontalAlignment", "fontType", "style", "id"}},
		"FactSet":   {[]string{"facts"}, []string{"type", "facts", "separator", "spacing", "id"}},
	}
	cardActions = map[string]struct{ required, allowed []string }{
		"Action.OpenUrl": {[]string{"url"}, []string{"type", "url", "title", "iconUrl", "style", "id"}},
	}
	cardEnums = map[string][]string{
		"size":   {"default", "small", "medium", "large", "extraLarge", "Default", "Small", "Medium", "Large", "ExtraLarge"},
		"weight": {"default", "lighter", "bolder", "Default", "Lighter", "Bolder"},
		"color":  {"default", "dark", "light", "accent", "good", "warning", "attention", "Default", "Dark", "Light", "Accent", "Good", "Warning", "Attention"},
	}
)

// validateTeamsBody checks body as a Workflows webhook and Teams would:
// the message envelope, one Adaptive Card attachment, only known elements
// with their required properties and valid enum values, and the size.
func validateTeamsBody(body []byte) error {
	if len(body) > TeamsMaxBody {
		return fmt.Errorf("body is %d bytes, over %d", len(body), TeamsMaxBody)
	}
	var m struct {
		Type        string
		Attachments []map[string]json.RawMessage
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return fmt.Errorf("not JSON: %v", err)
	}
	if m.Type != "message" || len(m.Attachments) != 1 {
		return fmt.Errorf("envelope: type %q, %d attachments", m.Type, len(m.Attachments))
	}
	a := m.Attachments[0]
	if string(a["contentType"]) != `"`+AdaptiveCardContentType+`"` {
		return fmt.Errorf("contentType %s", a["contentType"])
	}
	if u, ok := a["contentUrl"]; !ok || string(u) != "null" {
		return fmt.Errorf("contentUrl must be present and null, is %s", u)
	}
	var card struct {
		Schema  string           `json:"$schema"`
		Type    string           `json:"type"`
		Version string           `json:"version"`
		Body    []map[string]any `json:"body"`
		Actions []map[string]any `json:"actions"`
	}
	if err := json.Unmarshal(a["content"], &card); err != nil {
		return fmt.Errorf("content: %v", err)
	}
	if card.Schema != AdaptiveCardSchema || card.Type != "AdaptiveCard" || card.Version != "1.4" {
		return fmt.Errorf("card header: %q %q %q", card.Schema, card.Type, card.Version)
	}
	if len(card.Body) == 0 {
		return fmt.Errorf("empty body")
	}
	for i, el := range card.Body {
		if err := checkCardObject(el, cardElements); err != nil {
			return fmt.Errorf("body[%d]: %v", i, err)
		}
		if el["type"] == "FactSet" {
			facts, _ := el["facts"].([]any)
			if len(facts) == 0 {
				return fmt.Errorf("body[%d]: FactSet without facts", i)
			}
			for j, f := range facts {
				fm, _ := f.(map[string]any)
				if _, ok := fm["title"].(string); !ok || len(fm) != 2 {
					return fmt.Errorf("body[%d].facts[%d]: %v", i, j, f)
				}
				if _, ok := fm["value"].(string); !ok {
					return fmt.Errorf("body[%d].facts[%d]: %v", i, j, f)
				}
			}
		}
		if text, ok := el["text"].(string); ok && text == "" {
			return fmt.Errorf("body[%d]: empty text", i)
		}
	}
	for i, ac := range card.Actions {
		if err := checkCardObject(ac, cardActions); err != nil {
			return fmt.Errorf("actions[%d]: %v", i, err)
		}
	}
	return nil
}

func checkCardObject(o map[string]any, known map[string]struct{ required, allowed []string }) error {
	typ, _ := o["type"].(string)
	spec, ok := known[typ]
	if !ok {
		return fmt.Errorf("unknown type %q", typ)
	}
	for _, r := range spec.required {
		if _, ok := o[r]; !ok {
			return fmt.Errorf("%s without %s", typ, r)
		}
	}
	for k, v := range o {
		if !slices.Contains(spec.allowed, k) {
			return fmt.Errorf("%s has unknown property %q", typ, k)
		}
		if enum, ok := cardEnums[k]; ok && !slices.Contains(enum, fmt.Sprint(v)) {
			return fmt.Errorf("%s.%s = %v", typ, k, v)
		}
	}
	return nil
}

// teamsServer is a Workflows endpoint that validates every card it gets
// and answers 202 Accepted, as Workflows does.
func teamsServer(t *testing.T) (*httptest.Server, <-chan []byte) {
	t.Helper()
	got := make(chan []byte, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if ct := r.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
			t.Errorf("Content-Type %q", ct)
		}
		if err := validateTeamsBody(b); err != nil {
			t.Errorf("invalid card: %v\n%s", err, b)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		got <- b
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

type decodedCard struct {
	Attachments []struct {
		Content AdaptiveCard `json:"content"`
	} `json:"attachments"`
}

func decodeCard(t *testing.T, b []byte) AdaptiveCard {
	t.Helper()
	var m decodedCard
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m.Attachments[0].Content
}

func manyAlerts(n int) []rules.Alert {
	as := make([]rules.Alert, n)
	for i := range as {
		as[i] = notifytest.PrivilegedPod(i, fmt.Sprintf("evil-%d", i))
	}
	return as
}

// TestTeamsCardsAreValid: every card a Workflows endpoint gets is a valid
// Adaptive Card within Teams' size limit, for small and huge groups and for
// alert fields at their worst.
func TestTeamsCardsAreValid(t *testing.T) {
	huge := notifytest.PrivilegedPod(0, strings.Repeat("ü\x01<", 3000))
	huge.Title = strings.Repeat("Ţ\"", 2000)
	huge.Message = strings.Repeat("\\\u2028*", 5000)
	huge.User = strings.Repeat("é", 5000)
	huge.RuleID = strings.Repeat("r", 300) // the Kibana link is built from it
	for _, tc := range []struct {
		name      string
		alerts    []rules.Alert
		count     int // 0: len(alerts)
		max       int
		resolved  bool
		wantShown int  // alerts listed in the "others" list, -1: don't check
		wantMore  bool // a "… and N more" line
	}{
		{"one alert", manyAlerts(1), 0, 20, false, 0, false},
		{"three", manyAlerts(3), 0, 20, false, 2, false},
		{"max_alerts cuts the list", manyAlerts(30), 0, 5, false, 4, true},
		{"counted only", manyAlerts(3), 900, 20, false, 2, true},
		{"500 alerts cut to the size limit", manyAlerts(500), 0, 500, false, -1, true},
		{"resolved", manyAlerts(2), 0, 20, true, 1, false},
		{"no alerts listed", nil, 7, 20, false, 0, true},
		{"worst-case fields", append([]rules.Alert{huge}, huge, huge, huge), 0, 20, false, -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, got := teamsServer(t)
			tm, err := NewTeams(config.TeamsConfig{URL: config.Secret(srv.URL + "/workflows/SIG"), KibanaURL: "https://kibana.example.com",
				MaxAlerts: tc.max, SendResolved: true}, srv.Client())
			if err != nil {
				t.Fatal(err)
			}
			n := testNotification(tc.alerts...)
			if tc.count > 0 {
				n.Count, n.Total = tc.count, tc.count
			}
			n.Resolved = tc.resolved
			if retry, err := tm.Notify(context.Background(), n); err != nil || retry {
				t.Fatalf("Notify = %v, %v", retry, err)
			}
			card := decodeCard(t, <-got)
			title := card.Body[0]
			if len(tc.alerts) > 0 && tc.name != "worst-case fields" && !strings.Contains(title.Text, "Privileged pod created") {
				t.Errorf("title %q", title.Text)
			}
			if wantColor := map[bool]string{true: "good", false: "attention"}[tc.resolved]; len(tc.alerts) > 0 && title.Color != wantColor {
				t.Errorf("title colour %q, want %q", title.Color, wantColor)
			}
			if tc.resolved != strings.HasPrefix(title.Text, "Resolved: ") {
				t.Errorf("resolved %v, title %q", tc.resolved, title.Text)
			}
			var list, more string
			for _, el := range card.Body {
				switch {
				case el.Separator:
					list = el.Text
				case strings.HasPrefix(el.Text, "… and "):
					more = el.Text
				}
			}
			if shown := strings.Count(list, "\n- ") + min(1, len(list)); tc.wantShown >= 0 && shown != tc.wantShown {
				t.Errorf("%d others listed, want %d:\n%s", shown, tc.wantShown, list)
			}
			if (more != "") != tc.wantMore {
				t.Errorf("more line %q, want one: %v", more, tc.wantMore)
			}
			if tc.name == "500 alerts cut to the size limit" {
				// Cut to the limit, but not far below it: the list is as
				// long as fits.
				b, _ := tm.Body(n)
				if shown := strings.Count(list, "\n- ") + 1; shown < 20 || len(b) < TeamsMaxBody*3/4 {
					t.Errorf("only %d listed in %d bytes", shown, len(b))
				}
				if !strings.Contains(more, "500 alerts in this notification") {
					t.Errorf("more line %q", more)
				}
			}
			for _, el := range card.Body {
				if !utf8.ValidString(el.Text) {
					t.Errorf("invalid UTF-8 in %q", el.Text)
				}
			}
		})
	}
}

func TestTeamsResolvedOnlyWithSendResolved(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1); w.WriteHeader(http.StatusAccepted) }))
	defer srv.Close()
	tm, err := NewTeams(config.TeamsConfig{URL: config.Secret(srv.URL), MaxAlerts: 10}, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	n := testNotification(manyAlerts(2)...)
	n.Resolved = true
	if retry, err := tm.Notify(context.Background(), n); err != nil || retry || calls.Load() != 0 {
		t.Fatalf("resolved without send_resolved: retry %v err %v, %d requests", retry, err, calls.Load())
	}
}

// TestTeamsStatusClassification: Workflows' 202 is success; 429 and 5xx are
// retried, other 4xx are not; no error shows the URL's signature.
func TestTeamsStatusClassification(t *testing.T) {
	for _, tc := range []struct {
		status int
		retry  bool
	}{{202, false}, {200, false}, {400, false}, {401, false}, {404, false}, {413, false}, {429, true}, {500, true}, {502, true}} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(tc.status) }))
		tm, _ := NewTeams(config.TeamsConfig{URL: config.Secret(srv.URL + "/workflows/x/triggers/manual/paths/invoke?sig=SECRETSIG"), MaxAlerts: 10}, srv.Client())
		retry, err := tm.Notify(context.Background(), testNotification(manyAlerts(1)...))
		srv.Close()
		if retry != tc.retry || (err == nil) != (tc.status < 300) {
			t.Errorf("HTTP %d: retry %v err %v", tc.status, retry, err)
		}
		if err != nil && strings.Contains(err.Error(), "SECRETSIG") {
			t.Errorf("HTTP %d: error shows the URL: %v", tc.status, err)
		}
	}
}

// TestTeamsEscapesMarkdown: audit fields cannot plant links or formatting.
func TestTeamsEscapesMarkdown(t *testing.T) {
	tm, _ := NewTeams(config.TeamsConfig{URL: "http://x/", MaxAlerts: 10}, http.DefaultClient)
	a := notifytest.PrivilegedPod(0, "[click](https://evil.example)")
	a.User = "**admin**"
	a.Message = "see [here](https://evil.example)"
	b, err := tm.Body(testNotification(a, a))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"[click](", "[here](", "**admin**"} {
		if strings.Contains(string(b), bad) {
			t.Errorf("card contains unescaped %q: %s", bad, b)
		}
	}
}

func TestTeamsTemplates(t *testing.T) {
	for _, tc := range []struct {
		name, title, text string
		wantErr           string // at NewTeams
		wantTitle         string
	}{
		{"custom", `{{ .Status }} {{ .Count }} in {{ index .GroupLabels "cluster" }}`, `{{ .Receiver }}`, "", "firing 2 in prod-eu-1"},
		{"broken", `{{ .Status `, "", "template teams title", ""},
		{"empty title falls back", ` `, "", "", "2 kubesift alerts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tm, err := NewTeams(config.TeamsConfig{URL: "http://x/", MaxAlerts: 10, Title: tc.title, Text: tc.text}, http.DefaultClient)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := tm.Body(testNotification(manyAlerts(2)...))
			if err != nil {
				t.Fatal(err)
			}
			if got := decodeCard(t, b).Body[0].Text; got != tc.wantTitle {
				t.Errorf("title %q, want %q", got, tc.wantTitle)
			}
		})
	}
}
