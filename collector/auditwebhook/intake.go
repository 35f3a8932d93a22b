package auditwebhook

import (
	"errors"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"
)

// The intake is what happens between the headers and the decoder: the body
// is admitted against the shared byte budget, read under its own deadline,
// and only then does the request compete for one of the max_in_flight
// processing slots. So a client that trickles its body holds bytes of the
// budget for at most body_read_timeout, never a slot, and the bodies held in
// memory at once never exceed max_inflight_bytes, however many connections
// are open (TestTricklingClientsDoNotStarveValidBatches,
// TestInflightBytesBudget).

// byteBudget is max_inflight_bytes: the body bytes all requests may hold at
// once. Admission never waits: a request that does not fit is answered 429
// so the API server retries later, instead of piling up goroutines and
// buffers here.
type byteBudget struct {
	mu   sync.Mutex
	used int64
	max  int64
}

// take reserves n bytes, or reports false and reserves nothing.
func (b *byteBudget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.max {
		return false
	}
	b.used += n
	return true
}

func (b *byteBudget) give(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

func (b *byteBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

var (
	// errOverBudget: the body does not fit in max_inflight_bytes now.
	errOverBudget = errors.New("max_inflight_bytes reached")
	// errTooLarge: the body is over max_body_bytes; what was read is the
	// head kept for the dead letter.
	errTooLarge = errors.New("body exceeds max_body_bytes")
)

// readChunk is the first buffer of a body of unknown length.
const readChunk = 16 << 10

// body is a request body read into memory and the budget it holds; release
// gives the budget back once nothing refers to data any more.
type body struct {
	data    []byte
	charged int64
	budget  *byteBudget
}

func (b *body) release() {
	if b.charged > 0 {
		b.budget.give(b.charged)
		b.charged = 0
	}
}

// readBody reads req's body under body_read_timeout, charged to the byte
// budget: all of Content-Length up front when it is known, else chunk by
// chunk as it arrives. It returns errOverBudget (nothing held), errTooLarge
// with the head of the body (at most the dead-letter size), an error
// wrapping os.ErrDeadlineExceeded for a body that did not arrive in time, or
// the read error. The caller releases the body in every case.
func (r *Receiver) readBody(w http.ResponseWriter, req *http.Request) (*body, error) {
	b := &body{budget: r.budget}
	// The server's ReadTimeout is far longer (it covers whole keep-alive
	// requests); this one bounds how long one body may take to arrive.
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(r.cfg.BodyReadTimeout)); err != nil {
		r.log.Debug("audit webhook: the connection does not support a body read deadline", "err", err)
	}
	limit := r.cfg.MaxBodyBytes
	n := req.ContentLength
	switch {
	case n > limit:
		// Rejected without reading more than the head the dead letter keeps.
		if err := r.readKnownLength(req.Body, b, min(int64(r.deadMax), n)); err != nil {
			return b, err
		}
		return b, errTooLarge
	case n >= 0:
		if err := r.readKnownLength(req.Body, b, n); err != nil {
			return b, err
		}
	default:
		if err := r.readUnknownLength(req.Body, b); err != nil {
			return b, err
		}
	}
	// The deadline may pass while the body is published: net/http lifts it
	// when it starts watching the connection after the body's end, and a
	// body read to its length is not read again
	// (TestBodyDeadlineEndsWithTheBody).
	return b, nil
}

// readKnownLength reads n bytes of rd into b, charged to the budget first.
func (r *Receiver) readKnownLength(rd io.Reader, b *body, n int64) error {
	if !r.budget.take(n) {
		return errOverBudget
	}
	b.charged = n
	b.data = make([]byte, n)
	k, err := io.ReadFull(rd, b.data)
	b.data = b.data[:k]
	return err
}

// readUnknownLength reads a chunked body into a buffer that doubles as it
// fills, charging the budget for each growth before it is made (what is
// charged is the buffer's capacity, what the process really holds).
func (r *Receiver) readUnknownLength(rd io.Reader, b *body) error {
	limit := int(r.cfg.MaxBodyBytes)
	for {
		if len(b.data) == cap(b.data) {
			grow := max(cap(b.data), readChunk)
			if !r.budget.take(int64(grow)) {
				return errOverBudget
			}
			b.charged += int64(grow)
			b.data = slices.Grow(b.data, grow)
		}
		end := min(cap(b.data), limit+1)
		k, err := rd.Read(b.data[len(b.data):end])
		b.data = b.data[:len(b.data)+k]
		if len(b.data) > limit {
			b.data = b.data[:min(len(b.data), r.deadMax)]
			return errTooLarge
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// smallBody is the size below which a body may use the max_in_flight slot
// that larger bodies leave free. kube-apiserver's batches at Metadata level
// (400 events by default) stay well under it; so however many huge or
// garbage bodies arrive, an ordinary batch waits only for another ordinary
// one, not for a 32 MiB body to be decoded and published.
const smallBody = 1 << 20

// takeSlot takes one of the max_in_flight processing slots for a body of
// size bytes, without waiting: a body of smallBody or more takes one of the
// max_in_flight-1 slots for large bodies as well (when max_in_flight > 1).
// The returned function gives them back.
func (r *Receiver) takeSlot(size int) (func(), bool) {
	large := size >= smallBody && cap(r.largeSem) > 0
	if large {
		select {
		case r.largeSem <- struct{}{}:
		default:
			return nil, false
		}
	}
	select {
	case r.sem <- struct{}{}:
		r.m.inFlight.Inc()
		return func() {
			r.m.inFlight.Dec()
			<-r.sem
			if large {
				<-r.largeSem
			}
		}, true
	default:
		if large {
			<-r.largeSem
		}
		return nil, false
	}
}

// isTimeout tells a body that did not arrive within body_read_timeout.
func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }
