package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kubesift/kubesift/internal/backoff"
	"github.com/kubesift/kubesift/internal/match"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink"
	"github.com/kubesift/kubesift/sink/elasticsearch"
)

// Silence mutes every alert its matchers match while it is active
// (StartsAt <= now < EndsAt). Expiring a silence sets EndsAt to now; it is
// kept (and listed as expired) for the record.
type Silence struct {
	ID        string           `json:"id"`
	Matchers  []*match.Matcher `json:"matchers"`
	StartsAt  time.Time        `json:"starts_at"`
	EndsAt    time.Time        `json:"ends_at"`
	CreatedBy string           `json:"created_by"`
	Comment   string           `json:"comment"`
	CreatedAt time.Time        `json:"created_at"`
	UpdatedAt time.Time        `json:"updated_at"`
}

// Active reports whether s mutes at now.
func (s *Silence) Active(now time.Time) bool { return !now.Before(s.StartsAt) && now.Before(s.EndsAt) }

// Status is "pending", "active" or "expired" at now.
func (s *Silence) Status(now time.Time) string {
	switch {
	case now.Before(s.StartsAt):
		return "pending"
	case now.Before(s.EndsAt):
		return "active"
	}
	return "expired"
}

// Validate checks the form of a silence before it is stored. Whether it
// mutes every alert is a separate check (MutesEverything), made where
// silences are requested, because a request may override it with force.
func (s *Silence) Validate() error {
	var errs []error
	if len(s.Matchers) == 0 {
		errs = append(errs, errors.New("matchers: at least one is required"))
	}
	for i, m := range s.Matchers {
		if m == nil {
			errs = append(errs, fmt.Errorf("matchers[%d]: empty", i))
			continue
		}
		if !match.KnownName(m.Name) {
			errs = append(errs, fmt.Errorf("matchers[%d]: label %q is not one of %s", i, m.Name, strings.Join(match.AlertLabelNames, ", ")))
		}
	}
	if s.StartsAt.IsZero() || s.EndsAt.IsZero() {
		errs = append(errs, errors.New("starts_at, ends_at: required"))
	} else if !s.EndsAt.After(s.StartsAt) {
		errs = append(errs, errors.New("ends_at: must be after starts_at"))
	}
	if strings.TrimSpace(s.CreatedBy) == "" {
		errs = append(errs, errors.New("created_by: required"))
	}
	if strings.TrimSpace(s.Comment) == "" {
		errs = append(errs, errors.New("comment: required (say why)"))
	}
	if len(s.Comment) > 4096 || len(s.CreatedBy) > 256 || len(s.Matchers) > 64 {
		errs = append(errs, errors.New("too large: comment <= 4096 bytes, created_by <= 256, matchers <= 64"))
	}
	if len(errs) == 0 {
		return nil
	}
	return &InvalidSilenceError{Err: errors.Join(errs...)}
}

// alertLabelDomains are the labels Labels gives every alert and the values
// they can take; the labels not listed are optional and open (an absent
// one matches as ""). The silence guardrail (MutesEverything) reads them;
// TestAlertLabelDomains checks them against Labels. Taking a label to be
// never empty errs towards refusing: cluster=~.+ is refused although an
// alert from a collector without cluster.name would escape it.
var alertLabelDomains = func() map[string]match.Domain {
	var sev []string
	for s := rules.SeverityInfo; s <= rules.SeverityCritical; s++ {
		sev = append(sev, s.String())
	}
	return map[string]match.Domain{
		"severity": {Values: sev},
		// The deadman alert has no source.
		"source":  {Values: []string{string(record.SourceAudit), string(record.SourceEvent), string(record.SourceObject), ""}},
		"rule_id": {Required: true}, "alertname": {Required: true}, "title": {Required: true}, "cluster": {Required: true},
	}
}()

// MutesEverything returns an error naming the matchers when ms would
// silence every alert (match.MatchEverything: exact for = and != and for
// closed label sets, a heuristic for regexes that errs towards refusing).
// Such a silence is usually a typo or a misunderstanding, and it would stop
// every notification without anyone noticing; the API refuses it unless the
// request says force.
func MutesEverything(ms []*match.Matcher) error {
	if !match.MatchEverything(ms, alertLabelDomains) {
		return nil
	}
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.String()
	}
	verb := "matches"
	if len(ms) > 1 {
		verb = "each match"
	}
	return fmt.Errorf("matchers: would silence every alert (%s %s every alert); narrow the matchers, or set \"force\": true (kubesift silence add --force) to create it anyway",
		strings.Join(names, ", "), verb)
}

// InvalidSilenceError says what is wrong with a silence, field by field.
type InvalidSilenceError struct{ Err error }

func (e *InvalidSilenceError) Error() string { return e.Err.Error() }
func (e *InvalidSilenceError) Unwrap() error { return e.Err }

// ErrSilenceNotFound is returned for an unknown silence ID.
var ErrSilenceNotFound = errors.New("silence not found")

// SilenceStore keeps silences durably, shared by every notifier replica.
type SilenceStore interface {
	// Create stores a new silence (its ID set, validated).
	Create(ctx context.Context, s Silence) error
	// List returns the silences that end at or after since.
	List(ctx context.Context, since time.Time) ([]Silence, error)
	// Expire ends a silence at now (no-op if it already ended);
	// ErrSilenceNotFound if there is none with that ID.
	Expire(ctx context.Context, id string, now time.Time) error
}

// NewSilenceID returns a random silence ID.
func NewSilenceID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// ESSilences is the SilenceStore in an Elasticsearch index (one document per
// silence, _id = silence ID). Every call is retried through sink.Do on 429,
// 5xx and network errors; every other non-2xx is a *sink.StatusError.
type ESSilences struct {
	es    *elasticsearch.Client
	index string
	retry backoff.Policy
}

// silenceMapping is strict so that nothing but silences ends up there;
// comment is stored, not searched.
const silenceMapping = `{
  "settings": {"index": {"number_of_shards": 1, "auto_expand_replicas": "0-1"}},
  "mappings": {"dynamic": "strict", "properties": {
    "id": {"type": "keyword"}, "matchers": {"type": "keyword"},
    "starts_at": {"type": "date"}, "ends_at": {"type": "date"},
    "created_by": {"type": "keyword"}, "comment": {"type": "keyword", "index": false, "doc_values": false},
    "created_at": {"type": "date"}, "updated_at": {"type": "date"}
  }}
}`

// NewESSilences opens the store, creating the index if it is missing.
func NewESSilences(ctx context.Context, es *elasticsearch.Client, index string) (*ESSilences, error) {
	s := &ESSilences{es: es, index: index, retry: backoff.Policy{Initial: 200 * time.Millisecond, Max: 5 * time.Second, Attempts: 5}}
	if err := esCreateIndex(ctx, es, s.retry, "create silences index", index, silenceMapping); err != nil {
		return nil, err
	}
	return s, nil
}

// esCreateIndex creates index with mapping unless it exists already.
func esCreateIndex(ctx context.Context, es *elasticsearch.Client, retry backoff.Policy, op, index, mapping string) error {
	status, body, err := esCall(ctx, es, retry, op, http.MethodPut, "/"+url.PathEscape(index), []byte(mapping), http.StatusBadRequest)
	if err != nil {
		return err
	}
	if status/100 != 2 && !elasticsearch.AlreadyExists(status, body) {
		return &sink.StatusError{Op: op, StatusCode: status, Detail: elasticsearch.ErrorType(body)}
	}
	return nil
}

// call performs one request with retries (esCall).
func (s *ESSilences) call(ctx context.Context, op, method, path string, body []byte, ok ...int) (int, []byte, error) {
	return esCall(ctx, s.es, s.retry, op, method, path, body, ok...)
}

// esCall performs one request to es with retries through sink.Do. Statuses
// in ok besides 2xx are returned to the caller instead of becoming errors.
func esCall(ctx context.Context, es *elasticsearch.Client, retry backoff.Policy, op, method, path string, body []byte, ok ...int) (int, []byte, error) {
	var status int
	var resp []byte
	err := sink.Do(ctx, retry, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, method, path, bytes.NewReader(body))
		if err != nil {
			return false, err
		}
		req.Header.Set("Content-Type", "application/json")
		res, err := es.Perform(req)
		if err != nil {
			return sink.Retryable(0, err), fmt.Errorf("%s: %w", op, stripURL(err))
		}
		defer res.Body.Close()
		resp, _ = io.ReadAll(io.LimitReader(res.Body, 32<<20))
		status = res.StatusCode
		if status >= 200 && status < 300 {
			return false, nil
		}
		for _, o := range ok {
			if status == o {
				return false, nil
			}
		}
		return sink.Retryable(status, nil), &sink.StatusError{Op: op, StatusCode: status, Detail: elasticsearch.ErrorType(resp),
			After: retryAfter(res.Header.Get("Retry-After"), time.Now())}
	}, nil)
	return status, resp, err
}

// Create implements SilenceStore (op_type=create, so an ID is never reused).
func (s *ESSilences) Create(ctx context.Context, sil Silence) error {
	if sil.ID == "" {
		return errors.New("silence: no ID")
	}
	if err := sil.Validate(); err != nil {
		return err
	}
	body, err := json.Marshal(&sil)
	if err != nil {
		return err
	}
	_, _, err = s.call(ctx, "create silence", http.MethodPut,
		"/"+url.PathEscape(s.index)+"/_create/"+url.PathEscape(sil.ID)+"?refresh=wait_for", body)
	return err
}

// maxSilences bounds List: silences are few; more than this is a mistake
// worth an error rather than a silent cut.
const maxSilences = 10000

// List implements SilenceStore.
func (s *ESSilences) List(ctx context.Context, since time.Time) ([]Silence, error) {
	q, _ := json.Marshal(map[string]any{
		"size":             maxSilences,
		"track_total_hits": true,
		"query":            map[string]any{"range": map[string]any{"ends_at": map[string]any{"gte": since.UTC().Format(time.RFC3339Nano)}}},
		"sort":             []any{map[string]any{"created_at": "asc"}},
	})
	_, body, err := s.call(ctx, "list silences", http.MethodPost, "/"+url.PathEscape(s.index)+"/_search", q)
	if err != nil {
		return nil, err
	}
	var res struct {
		Hits struct {
			Total struct {
				Value int `json:"value"`
			} `json:"total"`
			Hits []struct {
				Source json.RawMessage `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return nil, fmt.Errorf("list silences: decode answer: %w", err)
	}
	if res.Hits.Total.Value > maxSilences {
		return nil, fmt.Errorf("list silences: %d silences end after %s, more than %d", res.Hits.Total.Value, since.Format(time.RFC3339), maxSilences)
	}
	out := make([]Silence, 0, len(res.Hits.Hits))
	for i, h := range res.Hits.Hits {
		var sil Silence
		if err := json.Unmarshal(h.Source, &sil); err != nil {
			// One bad document must not unsilence the others.
			return nil, fmt.Errorf("list silences: hit %d: %w", i, err)
		}
		out = append(out, sil)
	}
	return out, nil
}

// Expire implements SilenceStore: read, set ends_at, write back with
// optimistic concurrency (if_seq_no), re-read on a conflict.
func (s *ESSilences) Expire(ctx context.Context, id string, now time.Time) error {
	path := "/" + url.PathEscape(s.index) + "/_doc/" + url.PathEscape(id)
	for range 5 {
		status, body, err := s.call(ctx, "get silence", http.MethodGet, path, nil, http.StatusNotFound)
		if err != nil {
			return err
		}
		if status == http.StatusNotFound {
			return ErrSilenceNotFound
		}
		var doc struct {
			SeqNo       int64   `json:"_seq_no"`
			PrimaryTerm int64   `json:"_primary_term"`
			Source      Silence `json:"_source"`
		}
		if err := json.Unmarshal(body, &doc); err != nil {
			return fmt.Errorf("get silence: decode answer: %w", err)
		}
		sil := doc.Source
		if !sil.EndsAt.After(now) {
			return nil // already over
		}
		sil.EndsAt, sil.UpdatedAt = now.UTC(), now.UTC()
		if sil.StartsAt.After(sil.EndsAt) {
			sil.StartsAt = sil.EndsAt // a pending silence expires before it starts
		}
		b, _ := json.Marshal(&sil)
		status, _, err = s.call(ctx, "expire silence", http.MethodPut,
			path+"?refresh=wait_for&if_seq_no="+strconv.FormatInt(doc.SeqNo, 10)+"&if_primary_term="+strconv.FormatInt(doc.PrimaryTerm, 10),
			b, http.StatusConflict)
		if err != nil {
			return err
		}
		if status != http.StatusConflict {
			return nil
		}
	}
	return errors.New("expire silence: still conflicting after 5 tries")
}

// Silencer is the notifier's view of the silences: the store's silences
// cached in memory, refreshed every interval so that silences created on
// another replica apply here too. It implements Muter.
type Silencer struct {
	store    SilenceStore
	interval time.Duration
	now      func() time.Time
	log      *slog.Logger
	cur      atomic.Pointer[[]Silence]
	mu       sync.Mutex // serialises refreshes
	loaded   atomic.Bool
}

// keepExpired is how long expired silences stay in List answers.
const keepExpired = 7 * 24 * time.Hour

// NewSilencer wraps a store. Call Refresh once before use (a notifier must
// not deliver before it knows the silences), then Run.
func NewSilencer(store SilenceStore, interval time.Duration, log *slog.Logger) *Silencer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Silencer{store: store, interval: interval, now: time.Now, log: log}
	s.cur.Store(&[]Silence{})
	return s
}

// Refresh re-reads the silences from the store. On error the old cache is
// kept.
func (s *Silencer) Refresh(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	list, err := s.store.List(ctx, s.now().Add(-keepExpired))
	if err != nil {
		return err
	}
	s.cur.Store(&list)
	s.loaded.Store(true)
	return nil
}

// Loaded reports whether a Refresh has succeeded (readiness).
func (s *Silencer) Loaded() bool { return s.loaded.Load() }

// Run refreshes every interval until ctx ends; failures are logged and
// the last good set stays in force.
func (s *Silencer) Run(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Refresh(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("notify: silences refresh failed; keeping the last set", "err", err)
			}
		}
	}
}

// Mutes implements Muter: the first active silence whose matchers all
// match.
func (s *Silencer) Mutes(l match.Labels, _ *rules.Alert, now time.Time) (string, bool) {
	list := *s.cur.Load()
	for i := range list {
		sil := &list[i]
		if sil.Active(now) && match.All(sil.Matchers, l) {
			return "silence " + sil.ID + " by " + sil.CreatedBy, true
		}
	}
	return "", false
}

// List returns the cached silences (active and pending first, each group
// by end time); expired ones only if withExpired.
func (s *Silencer) List(now time.Time, withExpired bool) []Silence {
	var out []Silence
	for _, sil := range *s.cur.Load() {
		if withExpired || sil.EndsAt.After(now) {
			out = append(out, sil)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		ei, ej := !out[i].EndsAt.After(now), !out[j].EndsAt.After(now)
		if ei != ej {
			return !ei
		}
		return out[i].EndsAt.Before(out[j].EndsAt)
	})
	return out
}

// Create stores a new silence and refreshes the cache, so this replica
// applies it at once.
func (s *Silencer) Create(ctx context.Context, sil Silence) (Silence, error) {
	now := s.now().UTC()
	sil.ID = NewSilenceID()
	sil.CreatedAt, sil.UpdatedAt = now, now
	if sil.StartsAt.IsZero() {
		sil.StartsAt = now
	}
	if err := sil.Validate(); err != nil {
		return Silence{}, err
	}
	if err := s.store.Create(ctx, sil); err != nil {
		return Silence{}, err
	}
	return sil, s.Refresh(ctx)
}

// Expire ends a silence now and refreshes the cache.
func (s *Silencer) Expire(ctx context.Context, id string) error {
	if err := s.store.Expire(ctx, id, s.now()); err != nil {
		return err
	}
	return s.Refresh(ctx)
}
