// Package kibanatest is a stand-in for Kibana's saved-objects import API,
// for the tests of sink/kibana and of `kubesift setup kibana`: Kibana
// cannot be installed on the test ground. It checks each request as Kibana
// does (POST, the path with its space, overwrite=true, the kbn-xsrf
// header, the credentials, a multipart form whose field "file" holds an
// .ndjson file of saved objects) and answers with Kibana's bodies: the
// success/successCount/successResults/errors result, and the
// statusCode/error/message object for 400, 401, 403, 404 and 503.
package kibanatest

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Server is the stand-in Kibana. Set its fields before the first request.
type Server struct {
	*httptest.Server
	// Username/Password and APIKey are the credentials it accepts (basic
	// auth, or "ApiKey <key>"); with none set, any request is accepted.
	Username, Password, APIKey string
	// ReadOnly users are authenticated but may not write saved objects
	// (403), like a user without the saved-objects privilege.
	ReadOnlyUser string
	// Spaces besides "default".
	Spaces []string
	// Unavailable answers 503 to that many requests first (Kibana
	// starting).
	Unavailable int
	// Reject makes the object with this type/id fail the import, with
	// Kibana's error for a document from a newer Kibana.
	Reject string

	mu       sync.Mutex
	requests int
	// objects per space, by type/id.
	objects map[string]map[string]json.RawMessage
}

// New starts a Server on plain HTTP; it stops when the test ends.
func New(t testing.TB) *Server {
	s := &Server{objects: map[string]map[string]json.RawMessage{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// NewTLS starts a Server on HTTPS with a certificate of its own CA and
// returns the path of that CA's PEM file (in a test directory).
func NewTLS(t testing.TB) (*Server, string) {
	s := &Server{objects: map[string]map[string]json.RawMessage{}}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	ca := filepath.Join(t.TempDir(), "kibana-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return s, ca
}

// Requests is the number of requests received.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Objects returns the objects stored in space, by type/id.
func (s *Server) Objects(space string) map[string]json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]json.RawMessage{}
	for k, v := range s.objects[space] {
		out[k] = v
	}
	return out
}

func answer(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"statusCode": status, "error": http.StatusText(status), "message": msg})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	if s.Unavailable > 0 {
		s.Unavailable--
		answer(w, http.StatusServiceUnavailable, "Kibana server is not ready yet")
		return
	}
	user, ok := s.authenticate(r)
	if !ok {
		answer(w, http.StatusUnauthorized, "[security_exception]: unable to authenticate user for REST request [/_security/_authenticate]")
		return
	}
	space, path := "default", r.URL.Path
	if rest, found := strings.CutPrefix(path, "/s/"); found {
		space, path, _ = strings.Cut(rest, "/")
		path = "/" + path
		if !s.hasSpace(space) {
			answer(w, http.StatusNotFound, "Not Found")
			return
		}
	}
	if path != "/api/saved_objects/_import" {
		answer(w, http.StatusNotFound, "Not Found")
		return
	}
	if r.Method != http.MethodPost {
		answer(w, http.StatusNotFound, "Not Found")
		return
	}
	if r.Header.Get("kbn-xsrf") == "" {
		answer(w, http.StatusBadRequest, "Request must contain a kbn-xsrf header.")
		return
	}
	if r.URL.Query().Get("overwrite") != "true" {
		answer(w, http.StatusBadRequest, "this stand-in expects overwrite=true")
		return
	}
	if user != "" && user == s.ReadOnlyUser {
		answer(w, http.StatusForbidden, "Unable to bulk_create index-pattern,visualization,search,dashboard")
		return
	}
	objs, err := readFile(r)
	if err != nil {
		answer(w, http.StatusBadRequest, err.Error())
		return
	}
	s.importObjects(w, space, objs)
}

func (s *Server) hasSpace(space string) bool {
	for _, sp := range s.Spaces {
		if sp == space {
			return true
		}
	}
	return space == "default"
}

// authenticate returns the user name (empty for an API key) and whether
// the credentials are accepted.
func (s *Server) authenticate(r *http.Request) (string, bool) {
	if s.Username == "" && s.APIKey == "" {
		return "", true
	}
	h := r.Header.Get("Authorization")
	if key, ok := strings.CutPrefix(h, "ApiKey "); ok {
		return "", s.APIKey != "" && key == s.APIKey
	}
	if enc, ok := strings.CutPrefix(h, "Basic "); ok {
		b, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			return "", false
		}
		u, p, _ := strings.Cut(string(b), ":")
		if u == s.ReadOnlyUser && p == s.Password {
			return u, true
		}
		return u, u == s.Username && p == s.Password
	}
	return "", false
}

type object struct {
	Type       string         `json:"type"`
	ID         string         `json:"id"`
	Attributes map[string]any `json:"attributes"`
	raw        json.RawMessage
}

// readFile reads the multipart field "file" as Kibana does: an .ndjson
// file, one saved object per non-empty line.
func readFile(r *http.Request) ([]object, error) {
	f, hdr, err := r.FormFile("file")
	if err != nil {
		return nil, fmt.Errorf("[request body.file]: expected value of type [Stream] but got [undefined]")
	}
	defer f.Close()
	if !strings.HasSuffix(hdr.Filename, ".ndjson") {
		return nil, fmt.Errorf("invalid file extension %s", hdr.Filename)
	}
	var out []object
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var o object
		if err := json.Unmarshal(line, &o); err != nil {
			return nil, fmt.Errorf("unexpected token in JSON: %v", err)
		}
		if o.Type == "" || o.ID == "" {
			return nil, fmt.Errorf("a line without type or id")
		}
		o.raw = append(json.RawMessage(nil), line...)
		out = append(out, o)
	}
	return out, sc.Err()
}

func (s *Server) importObjects(w http.ResponseWriter, space string, objs []object) {
	if s.objects[space] == nil {
		s.objects[space] = map[string]json.RawMessage{}
	}
	store := s.objects[space]
	var results, errs []map[string]any
	for _, o := range objs {
		key := o.Type + "/" + o.ID
		title, _ := o.Attributes["title"].(string)
		if key == s.Reject {
			errs = append(errs, map[string]any{"id": o.ID, "type": o.Type, "meta": map[string]any{"title": title},
				"error": map[string]any{"type": "unknown", "message": fmt.Sprintf("Document %q belongs to a more recent version of Kibana [99.0.0] when the last known version is [8.5.0].", o.ID)}})
			continue
		}
		_, exists := store[key]
		store[key] = o.raw
		res := map[string]any{"id": o.ID, "type": o.Type, "meta": map[string]any{"title": title}}
		if exists {
			res["overwrite"] = true
		}
		results = append(results, res)
	}
	w.Header().Set("Content-Type", "application/json")
	body := map[string]any{"success": len(errs) == 0, "successCount": len(results), "successResults": results}
	if len(errs) > 0 {
		body["errors"] = errs
	}
	_ = json.NewEncoder(w).Encode(body)
}
