package notify

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubesift/kubesift/internal/match"
	"github.com/kubesift/kubesift/internal/obs"
)

// The silence HTTP API (docs/alerting.md):
//
//	POST   /api/v1/silences       create; body SilenceRequest; 201 + Silence
//	GET    /api/v1/silences       list active and pending; ?expired=true adds expired
//	DELETE /api/v1/silences/{id}  expire; 204, 404 if unknown
//
// Every request carries "Authorization: Bearer <token>" (the scheme in any
// case, the token compared in constant time: obs.Token); errors are
// {"error": "..."}.
const silencesPath = "/api/v1/silences"

// SilenceRequest is the body of POST /api/v1/silences. Give ends_at or
// duration (e.g. "2h"); starts_at defaults to now.
type SilenceRequest struct {
	Matchers  []string   `json:"matchers"`
	StartsAt  *time.Time `json:"starts_at,omitempty"`
	EndsAt    *time.Time `json:"ends_at,omitempty"`
	Duration  string     `json:"duration,omitempty"`
	CreatedBy string     `json:"created_by"`
	Comment   string     `json:"comment"`
	// Force creates a silence that would mute every alert
	// (MutesEverything), which is refused without it.
	Force bool `json:"force,omitempty"`
}

// SilenceList is the body of GET /api/v1/silences.
type SilenceList struct {
	Silences []SilenceView `json:"silences"`
}

// SilenceView is a silence with its status at the time of the answer.
type SilenceView struct {
	Silence
	Status string `json:"status"`
}

// maxSilenceBody caps a request body.
const maxSilenceBody = 64 << 10

// DecodeSilenceRequest reads and checks a create request: strict JSON (an
// unknown field is an error), one value, matchers compiled, times resolved
// against now. Errors name the field.
func DecodeSilenceRequest(r io.Reader, now time.Time) (Silence, error) {
	dec := json.NewDecoder(io.LimitReader(r, maxSilenceBody+1))
	dec.DisallowUnknownFields()
	var req SilenceRequest
	if err := dec.Decode(&req); err != nil {
		return Silence{}, fmt.Errorf("body: %w", err)
	}
	if dec.More() {
		return Silence{}, errors.New("body: more than one JSON value")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Silence{}, errors.New("body: trailing data (or larger than 64 KiB)")
	}
	var s Silence
	for i, m := range req.Matchers {
		pm, err := match.Parse(m)
		if err != nil {
			return Silence{}, fmt.Errorf("matchers[%d]: %w", i, err)
		}
		s.Matchers = append(s.Matchers, pm)
	}
	s.StartsAt = now.UTC()
	if req.StartsAt != nil {
		s.StartsAt = req.StartsAt.UTC()
	}
	switch {
	case req.EndsAt != nil && req.Duration != "":
		return Silence{}, errors.New("ends_at, duration: give one, not both")
	case req.EndsAt != nil:
		s.EndsAt = req.EndsAt.UTC()
	case req.Duration != "":
		d, err := time.ParseDuration(req.Duration)
		if err != nil || d <= 0 {
			return Silence{}, fmt.Errorf("duration: %q is not a positive duration like 2h", req.Duration)
		}
		s.EndsAt = s.StartsAt.Add(d)
	default:
		return Silence{}, errors.New("ends_at or duration: required")
	}
	if !s.EndsAt.After(now) {
		return Silence{}, errors.New("ends_at: already in the past")
	}
	s.CreatedBy, s.Comment = strings.TrimSpace(req.CreatedBy), strings.TrimSpace(req.Comment)
	if err := s.Validate(); err != nil {
		return Silence{}, err
	}
	if !req.Force {
		if err := MutesEverything(s.Matchers); err != nil {
			return Silence{}, &InvalidSilenceError{Err: err}
		}
	}
	return s, nil
}

// NewSilenceAPI returns the API handler. token must not be empty. Refused
// requests are counted in kubesift_listener_auth_rejected_total
// {listener="silence-api"} (registered with reg) and logged, rate-limited,
// with their remote address and without the token.
func NewSilenceAPI(s *Silencer, token string, log *slog.Logger, reg prometheus.Registerer) (http.Handler, error) {
	if token == "" {
		return nil, errors.New("silence API: empty token")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+silencesPath, func(w http.ResponseWriter, r *http.Request) {
		sil, err := DecodeSilenceRequest(http.MaxBytesReader(w, r.Body, maxSilenceBody), s.now())
		if err != nil {
			apiError(w, http.StatusBadRequest, err.Error())
			return
		}
		created, err := s.Create(r.Context(), sil)
		if err != nil {
			storeError(w, log, "create", err)
			return
		}
		if MutesEverything(created.Matchers) != nil {
			log.Warn("notify: silence created with force; it mutes every alert", "id", created.ID, "by", created.CreatedBy, "ends_at", created.EndsAt)
		} else {
			log.Info("notify: silence created", "id", created.ID, "by", created.CreatedBy, "ends_at", created.EndsAt)
		}
		writeJSON(w, http.StatusCreated, created)
	})
	mux.HandleFunc("GET "+silencesPath, func(w http.ResponseWriter, r *http.Request) {
		// Read from the store, not the cache, so a silence made on another
		// replica a moment ago is listed.
		if err := s.Refresh(r.Context()); err != nil {
			storeError(w, log, "list", err)
			return
		}
		now := s.now()
		out := SilenceList{Silences: []SilenceView{}}
		for _, sil := range s.List(now, r.URL.Query().Get("expired") == "true") {
			out.Silences = append(out.Silences, SilenceView{Silence: sil, Status: sil.Status(now)})
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("DELETE "+silencesPath+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if err := s.Expire(r.Context(), id); err != nil {
			if errors.Is(err, ErrSilenceNotFound) {
				apiError(w, http.StatusNotFound, "no silence "+id)
				return
			}
			storeError(w, log, "expire", err)
			return
		}
		log.Info("notify: silence expired", "id", id)
		w.WriteHeader(http.StatusNoContent)
	})
	return obs.NewToken(token).RequireToken(mux, "silence-api", "kubesift", reg, log)
}

func storeError(w http.ResponseWriter, log *slog.Logger, op string, err error) {
	var invalid *InvalidSilenceError
	if errors.As(err, &invalid) {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	// Store errors are URL-free (stripURL, sink.StatusError).
	log.Error("notify: silence store", "op", op, "err", err)
	apiError(w, http.StatusServiceUnavailable, "silence store unavailable: "+err.Error())
}

func apiError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
