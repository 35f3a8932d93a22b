package kibana

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/kubesift/kubesift/internal/backoff"
	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/tlsfiles"
	"github.com/kubesift/kubesift/sink"
)

// ImportOptions say where and as whom Import writes.
type ImportOptions struct {
	// URL is Kibana's base URL, with its base path if it has one
	// (https://kibana.example:5601/kibana).
	URL string
	// Space is the Kibana space; empty or "default" is the default space.
	Space string
	// APIKey is an Elasticsearch API key, encoded (base64 of id:key) as
	// Elasticsearch returns it; it wins over Username and Password.
	APIKey   config.Secret
	Username string
	Password config.Secret
	// CAFile is a PEM file of the CA that signed Kibana's certificate.
	CAFile             string
	InsecureSkipVerify bool
	// Timeout bounds one request attempt (default 60 s).
	Timeout time.Duration
}

// ImportResult is what Kibana reports for a successful import.
type ImportResult struct {
	// Created are the objects that did not exist before; Replaced the ones
	// overwritten (a second import replaces every object).
	Created, Replaced []ImportedObject
}

// ImportedObject is one imported object.
type ImportedObject struct {
	Type, ID, Title string
}

// importBackoff retries a Kibana that is still starting (503) or
// unreachable a few times before giving up.
var importBackoff = backoff.Policy{Initial: time.Second, Max: 10 * time.Second, Attempts: 6}

// maxAnswer bounds how much of Kibana's answer is read (the success
// answer lists every object).
const maxAnswer = 8 << 20

// spaceID is what Kibana accepts as a space id (empty: the default space).
var spaceID = regexp.MustCompile(`^[a-z0-9_-]*$`)

// Importer imports saved objects into one Kibana space.
type Importer struct {
	opts   ImportOptions
	client *http.Client
	// endpoint is the import API's URL with overwrite=true.
	endpoint string
	// Backoff is the retry schedule (importBackoff unless a test sets it).
	Backoff backoff.Policy
	// Log gets one warning per retry; nil discards them.
	Log *slog.Logger
}

// NewImporter checks opts and builds the HTTP client: TLS verified
// against CAFile (or the system roots), or not at all with
// InsecureSkipVerify.
func NewImporter(opts ImportOptions) (*Importer, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("kibana: --url %q is not an http(s) URL", opts.URL)
	}
	if u.User != nil {
		return nil, errors.New("kibana: --url must not carry credentials; use --username/--password or --api-key")
	}
	if (opts.Username == "") != (opts.Password == "") {
		return nil, errors.New("kibana: username and password go together")
	}
	if opts.InsecureSkipVerify && opts.CAFile != "" {
		return nil, errors.New("kibana: a CA file and skipping verification exclude each other")
	}
	if !spaceID.MatchString(opts.Space) {
		return nil, fmt.Errorf("kibana: --space %q is not a space id (lowercase letters, digits, _ and -)", opts.Space)
	}
	path := strings.TrimRight(u.Path, "/")
	if s := opts.Space; s != "" && s != "default" {
		path += "/s/" + s
	}
	u.Path, u.RawPath = path+"/api/saved_objects/_import", ""
	u.RawQuery = "overwrite=true"
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: opts.InsecureSkipVerify}
	if opts.CAFile != "" {
		pool, err := tlsfiles.CertPool(opts.CAFile, "kibana --ca-file")
		if err != nil {
			return nil, err
		}
		tlsCfg.RootCAs = pool
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	return &Importer{opts: opts, client: &http.Client{Transport: tr, Timeout: timeout}, endpoint: u.String(), Backoff: importBackoff}, nil
}

// Endpoint is the URL Import posts to (no credentials in it).
func (im *Importer) Endpoint() string { return im.endpoint }

// Import posts ndjson to the import API with overwrite=true. A 2xx answer
// whose success is false (an object Kibana rejected) is an error listing
// each rejected object; 401, 403, 404 and 400 are errors saying what to
// check. Errors never carry the credentials.
func (im *Importer) Import(ctx context.Context, ndjson []byte) (ImportResult, error) {
	body, contentType, err := multipartFile(ndjson)
	if err != nil {
		return ImportResult{}, err
	}
	var answer importAnswer
	err = sink.Do(ctx, im.Backoff, func(ctx context.Context) (bool, error) {
		status, b, err := im.post(ctx, body, contentType)
		var certErr *tls.CertificateVerificationError
		if errors.As(err, &certErr) {
			// Retrying cannot fix a certificate the client does not trust.
			return false, fmt.Errorf("%w (give the CA that signed Kibana's certificate with --ca-file)", err)
		}
		if err != nil {
			return sink.Retryable(0, err), err
		}
		if status/100 != 2 {
			e := im.statusError(status, b)
			return sink.Retryable(status, nil), e
		}
		if err := json.Unmarshal(b, &answer); err != nil {
			return false, fmt.Errorf("kibana import: the answer is not Kibana's import result (is --url Kibana?): %w", err)
		}
		return false, nil
	}, func(n int, err error) {
		if im.Log != nil {
			im.Log.Warn("kibana import: retrying", "attempt", n, "error", err)
		}
	})
	if err != nil {
		return ImportResult{}, err
	}
	return answer.result()
}

func (im *Importer) post(ctx context.Context, body []byte, contentType string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, im.endpoint, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", contentType)
	// Kibana refuses state-changing API calls without it (XSRF guard).
	req.Header.Set("kbn-xsrf", "kubesift")
	switch {
	case im.opts.APIKey != "":
		req.Header.Set("Authorization", "ApiKey "+string(im.opts.APIKey))
	case im.opts.Username != "":
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(im.opts.Username+":"+string(im.opts.Password))))
	}
	res, err := im.client.Do(req)
	if err != nil {
		// *url.Error names the URL, which holds no credentials.
		return 0, nil, fmt.Errorf("kibana import: %w", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxAnswer))
	if err != nil {
		return 0, nil, fmt.Errorf("kibana import: read the answer: %w", err)
	}
	return res.StatusCode, b, nil
}

// multipartFile is the form Kibana's import API reads: one file field
// named "file" whose name ends in .ndjson.
func multipartFile(ndjson []byte) ([]byte, string, error) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	fw, err := w.CreateFormFile("file", "kubesift.ndjson")
	if err == nil {
		_, err = fw.Write(ndjson)
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		return nil, "", fmt.Errorf("kibana import: build the form: %w", err)
	}
	return buf.Bytes(), w.FormDataContentType(), nil
}

// kibanaError is Kibana's error answer.
type kibanaError struct {
	StatusCode int    `json:"statusCode"`
	Error      string `json:"error"`
	Message    string `json:"message"`
}

// statusError explains a refused import: what Kibana said and what to
// check for the statuses a user can fix.
func (im *Importer) statusError(status int, body []byte) error {
	var ke kibanaError
	_ = json.Unmarshal(body, &ke)
	detail := clip(ke.Message)
	var hint string
	switch status {
	case http.StatusUnauthorized:
		hint = "check --username/--password or --api-key"
	case http.StatusForbidden:
		hint = "the user needs the saved-objects management privilege (All on Management > Saved Objects, or the kibana_admin role) in this space"
	case http.StatusNotFound:
		hint = "no such space or no import API at this URL"
		if s := im.opts.Space; s != "" && s != "default" {
			hint = fmt.Sprintf("space %q does not exist (create it in Kibana, or leave --space out for the default space), or --url is not Kibana", s)
		}
	case http.StatusBadRequest:
		hint = "Kibana refused the file (is it kubesift's NDJSON?)"
	}
	op := "kibana import " + im.endpoint
	if hint != "" {
		if detail != "" {
			detail += "; "
		}
		detail += hint
	}
	return &sink.StatusError{Op: op, StatusCode: status, Detail: detail}
}

// importAnswer is the body of a 200 from the import API.
type importAnswer struct {
	Success        bool `json:"success"`
	SuccessCount   int  `json:"successCount"`
	SuccessResults []struct {
		Type      string `json:"type"`
		ID        string `json:"id"`
		Overwrite bool   `json:"overwrite"`
		Meta      struct {
			Title string `json:"title"`
		} `json:"meta"`
	} `json:"successResults"`
	Errors []struct {
		Type  string `json:"type"`
		ID    string `json:"id"`
		Title string `json:"title"`
		Meta  struct {
			Title string `json:"title"`
		} `json:"meta"`
		Error struct {
			Type       string `json:"type"`
			Message    string `json:"message"`
			References []struct {
				Type string `json:"type"`
				ID   string `json:"id"`
			} `json:"references"`
		} `json:"error"`
	} `json:"errors"`
}

func (a *importAnswer) result() (ImportResult, error) {
	var r ImportResult
	for _, s := range a.SuccessResults {
		o := ImportedObject{Type: s.Type, ID: s.ID, Title: s.Meta.Title}
		if s.Overwrite {
			r.Replaced = append(r.Replaced, o)
		} else {
			r.Created = append(r.Created, o)
		}
	}
	if a.Success && len(a.Errors) == 0 {
		return r, nil
	}
	msgs := make([]string, 0, len(a.Errors))
	for _, e := range a.Errors {
		m := fmt.Sprintf("%s %s: %s", e.Type, e.ID, e.Error.Type)
		switch {
		case e.Error.Message != "":
			m += " (" + clip(e.Error.Message) + ")"
		case len(e.Error.References) > 0:
			var refs []string
			for _, ref := range e.Error.References {
				refs = append(refs, ref.Type+" "+ref.ID)
			}
			m += " (" + strings.Join(refs, ", ") + ")"
		}
		msgs = append(msgs, m)
	}
	if len(msgs) == 0 {
		msgs = append(msgs, "Kibana answered success: false without errors")
	}
	err := fmt.Errorf("kibana import: %d of %d objects imported; refused: %s", a.SuccessCount, a.SuccessCount+len(a.Errors), strings.Join(msgs, "; "))
	for _, m := range msgs {
		if strings.Contains(m, "more recent version") {
			return r, fmt.Errorf("%w; kubesift's saved objects need Kibana 8.9 or later", err)
		}
	}
	return r, err
}

// clip bounds a message Kibana wrote.
func clip(s string) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}
