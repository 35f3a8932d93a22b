package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/kubesift/kubesift/sink"
)

// SilenceClient talks to the silence HTTP API (`kubesift silence`).
type SilenceClient struct {
	// URL is the API's base URL, e.g. http://kubesift-notify:9095.
	URL string
	// Token is the bearer token.
	Token string
	HTTP  *http.Client
}

func (c *SilenceClient) do(ctx context.Context, op, method, path string, in, out any, want int) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.URL, "/")+path, body)
	if err != nil {
		return fmt.Errorf("%s: %w", op, stripURL(err))
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Content-Type", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	res, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", op, stripURL(err))
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if res.StatusCode != want {
		// The API's own error messages are safe to show.
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		return &sink.StatusError{Op: op, StatusCode: res.StatusCode, Detail: e.Error}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s: decode answer: %w", op, err)
		}
	}
	return nil
}

// Create creates a silence.
func (c *SilenceClient) Create(ctx context.Context, r SilenceRequest) (Silence, error) {
	var s Silence
	err := c.do(ctx, "create silence", http.MethodPost, silencesPath, r, &s, http.StatusCreated)
	return s, err
}

// List lists active and pending silences, and expired ones if withExpired.
func (c *SilenceClient) List(ctx context.Context, withExpired bool) ([]SilenceView, error) {
	var l SilenceList
	p := silencesPath
	if withExpired {
		p += "?expired=true"
	}
	err := c.do(ctx, "list silences", http.MethodGet, p, nil, &l, http.StatusOK)
	return l.Silences, err
}

// Expire ends a silence now.
func (c *SilenceClient) Expire(ctx context.Context, id string) error {
	return c.do(ctx, "expire silence", http.MethodDelete, silencesPath+"/"+url.PathEscape(id), nil, nil, http.StatusNoContent)
}
