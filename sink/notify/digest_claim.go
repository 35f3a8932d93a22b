package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/kubesift/kubesift/sink/elasticsearch"

	"github.com/kubesift/kubesift/internal/backoff"
)

// DigestClaims make exactly one notifier replica send each (cluster, day)
// digest. The claim is a document per (cluster, day) in an index of its
// own, created with op_type=create: Elasticsearch accepts the first create
// of an _id and answers 409 to every later one, atomically across
// replicas, so the replica whose create succeeds sends and the others do
// not. The sender marks the document done once every receiver has taken
// the digest or given up.
//
// A replica that dies between its claim and done would leave the day
// unsent, so a claim that is not done after the claim timeout may be
// taken over: the taker rewrites the document with if_seq_no and
// if_primary_term of the version it read, and of several replicas taking
// over at once only the first write succeeds. The one case that sends
// twice is a sender slower than the timeout; both sends carry the same
// idempotency key (DigestKey). The owner of a claim may retake it at once
// (it failed to build the digest and tries again).
type DigestClaims struct {
	es      *elasticsearch.Client
	index   string
	owner   string
	timeout time.Duration
	retry   backoff.Policy
	// Now is the clock of claimed_at and the takeover (tests).
	Now func() time.Time
}

// Outcomes of DigestClaims.Claim.
const (
	ClaimWon      = "won"        // this replica created the claim
	ClaimTakeover = "taken_over" // this replica took over a stale claim
	ClaimHeld     = "held"       // another replica's claim stands
	ClaimDone     = "done"       // the digest was sent already
)

// DigestClaim is a claim this replica holds.
type DigestClaim struct {
	Cluster, Day string
	id           string
	seqNo, term  int64
	at           time.Time // claimed_at
}

// digestClaimMapping is strict so that nothing but claims ends up there.
const digestClaimMapping = `{
  "settings": {"index": {"number_of_shards": 1, "auto_expand_replicas": "0-1"}},
  "mappings": {"dynamic": "strict", "properties": {
    "cluster": {"type": "keyword"}, "day": {"type": "keyword"}, "state": {"type": "keyword"},
    "owner": {"type": "keyword"}, "claimed_at": {"type": "date"}, "done_at": {"type": "date"},
    "failed": {"type": "keyword"}
  }}
}`

type claimDoc struct {
	Cluster   string     `json:"cluster"`
	Day       string     `json:"day"`
	State     string     `json:"state"` // claimed | done
	Owner     string     `json:"owner"`
	ClaimedAt time.Time  `json:"claimed_at"`
	DoneAt    *time.Time `json:"done_at,omitempty"`
	// Failed names the integrations that gave up.
	Failed []string `json:"failed,omitempty"`
}

// NewDigestClaims opens the claims in index, creating it if it is
// missing. owner names this replica in the documents.
func NewDigestClaims(ctx context.Context, es *elasticsearch.Client, index, owner string, timeout time.Duration) (*DigestClaims, error) {
	c := &DigestClaims{es: es, index: index, owner: owner, timeout: timeout, Now: time.Now,
		retry: backoff.Policy{Initial: 200 * time.Millisecond, Max: 5 * time.Second, Attempts: 5}}
	if err := esCreateIndex(ctx, es, c.retry, "create digest index", index, digestClaimMapping); err != nil {
		return nil, err
	}
	return c, nil
}

// claimID is the document id of (cluster, day); a cluster name too long
// for an _id (512 bytes) is hashed.
func claimID(cluster, day string) string {
	if len(cluster) > 200 {
		cluster = hashedName(cluster)
	}
	return cluster + "/" + day
}

// hashedName stands for a cluster name that cannot be used as it is (too
// long for an _id, not a plain directory name).
func hashedName(cluster string) string {
	sum := sha256.Sum256([]byte(cluster))
	return "sha256-" + hex.EncodeToString(sum[:16])
}

// Claim tries to claim (cluster, day). The claim is non-nil when this
// replica is to send (outcome ClaimWon or ClaimTakeover).
func (c *DigestClaims) Claim(ctx context.Context, cluster, day string) (*DigestClaim, string, error) {
	id := claimID(cluster, day)
	doc := claimDoc{Cluster: cluster, Day: day, State: "claimed", Owner: c.owner, ClaimedAt: c.Now().UTC()}
	body, err := json.Marshal(doc)
	if err != nil {
		return nil, "", err
	}
	base := "/" + url.PathEscape(c.index)
	status, resp, err := esCall(ctx, c.es, c.retry, "claim digest", http.MethodPut, base+"/_create/"+url.PathEscape(id), body, http.StatusConflict)
	if err != nil {
		return nil, "", err
	}
	if status != http.StatusConflict {
		cl, err := claimOf(doc, id, resp)
		return cl, ClaimWon, err
	}
	_, resp, err = esCall(ctx, c.es, c.retry, "read digest claim", http.MethodGet, base+"/_doc/"+url.PathEscape(id), nil)
	if err != nil {
		return nil, "", err
	}
	var cur struct {
		SeqNo  int64    `json:"_seq_no"`
		Term   int64    `json:"_primary_term"`
		Source claimDoc `json:"_source"`
	}
	if err := json.Unmarshal(resp, &cur); err != nil {
		return nil, "", fmt.Errorf("read digest claim: decode answer: %w", err)
	}
	switch {
	case cur.Source.State == "done":
		return nil, ClaimDone, nil
	case cur.Source.Owner != c.owner && c.Now().Sub(cur.Source.ClaimedAt) < c.timeout:
		return nil, ClaimHeld, nil
	}
	path := fmt.Sprintf("%s/_doc/%s?if_seq_no=%d&if_primary_term=%d", base, url.PathEscape(id), cur.SeqNo, cur.Term)
	status, resp, err = esCall(ctx, c.es, c.retry, "take over digest claim", http.MethodPut, path, body, http.StatusConflict)
	if err != nil {
		return nil, "", err
	}
	if status == http.StatusConflict {
		return nil, ClaimHeld, nil // another replica took it over first
	}
	cl, err := claimOf(doc, id, resp)
	return cl, ClaimTakeover, err
}

// claimOf reads the version of the claim just written.
func claimOf(doc claimDoc, id string, resp []byte) (*DigestClaim, error) {
	var w struct {
		SeqNo int64 `json:"_seq_no"`
		Term  int64 `json:"_primary_term"`
	}
	if err := json.Unmarshal(resp, &w); err != nil {
		return nil, fmt.Errorf("claim digest: decode answer: %w", err)
	}
	return &DigestClaim{Cluster: doc.Cluster, Day: doc.Day, id: id, seqNo: w.SeqNo, term: w.Term, at: doc.ClaimedAt}, nil
}

// Done marks a claim sent, naming the integrations that gave up. It
// writes only over the version this replica claimed: a replica that took
// the claim over meanwhile owns it now, and ErrClaimLost says so.
func (c *DigestClaims) Done(ctx context.Context, cl *DigestClaim, failed []string) error {
	now := c.Now().UTC()
	body, err := json.Marshal(claimDoc{Cluster: cl.Cluster, Day: cl.Day, State: "done", Owner: c.owner, ClaimedAt: cl.at, DoneAt: &now, Failed: failed})
	if err != nil {
		return err
	}
	path := fmt.Sprintf("/%s/_doc/%s?if_seq_no=%d&if_primary_term=%d", url.PathEscape(c.index), url.PathEscape(cl.id), cl.seqNo, cl.term)
	status, _, err := esCall(ctx, c.es, c.retry, "mark digest done", http.MethodPut, path, body, http.StatusConflict)
	if err != nil {
		return err
	}
	if status == http.StatusConflict {
		return ErrClaimLost
	}
	return nil
}

// ErrClaimLost: another replica took the claim over before Done.
var ErrClaimLost = fmt.Errorf("digest claim taken over by another replica")
