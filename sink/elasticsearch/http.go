package elasticsearch

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kubesift/kubesift/sink"
)

// maxErrorBody bounds how much of an error answer is read for its reason.
const maxErrorBody = 64 << 10

// Call performs one request and returns the status and body of any answer
// (a success answer up to 64 MiB, an error answer up to 64 KiB: enough for
// its reason). err is set only when there was no answer (network,
// timeout); a non-2xx answer is for StatusError.
func Call(ctx context.Context, es *Client, method, path string, body []byte) (int, []byte, http.Header, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := es.Perform(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer res.Body.Close()
	limit := int64(maxErrorBody)
	if res.StatusCode < 300 {
		limit = 64 << 20 // success answers (bulk items) are read whole
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, limit))
	if err != nil {
		return 0, nil, nil, err
	}
	return res.StatusCode, b, res.Header, nil
}

// StatusError turns a non-2xx answer into a *sink.StatusError whose Detail
// is Elasticsearch's error type and reason (never the request body).
func StatusError(op string, status int, body []byte, h http.Header) *sink.StatusError {
	e := &sink.StatusError{Op: op, StatusCode: status, Detail: errorReason(body)}
	if h != nil {
		if s, err := strconv.Atoi(h.Get("Retry-After")); err == nil && s > 0 {
			e.After = time.Duration(s) * time.Second
		}
	}
	return e
}

// esError is Elasticsearch's error object.
type esError struct {
	Type     string   `json:"type"`
	Reason   string   `json:"reason"`
	CausedBy *esError `json:"caused_by"`
}

// String renders "type: reason (caused by type)", bounded and without
// document contents: Elasticsearch appends "Preview of field's value: '…'"
// to parse errors and quotes the value in the cause's reason, so the
// preview is cut and only the cause's type is kept.
func (e *esError) String() string {
	if e == nil {
		return ""
	}
	s := e.Type
	if r := withoutPreview(e.Reason); r != "" {
		s += ": " + r
	}
	if c := e.CausedBy; c != nil && c.Type != "" {
		s += " (caused by " + c.Type + ")"
	}
	return clip(s, 500)
}

// withoutPreview drops Elasticsearch's quotation of a field's value.
func withoutPreview(reason string) string {
	for _, marker := range []string{". Preview of field's value:", "Preview of field's value:"} {
		if i := strings.Index(reason, marker); i >= 0 {
			return strings.TrimSpace(reason[:i])
		}
	}
	return reason
}

func errorReason(body []byte) string {
	var w struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &w) != nil || len(w.Error) == 0 {
		return ""
	}
	var e esError
	if json.Unmarshal(w.Error, &e) == nil && e.Type != "" {
		return e.String()
	}
	var s string
	if json.Unmarshal(w.Error, &s) == nil {
		return clip(s, 500)
	}
	return ""
}

func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
