package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/backoff"
	"github.com/kubesift/kubesift/internal/config"
)

// ErrClosed is returned by the producer (and the processor) once closed.
var ErrClosed = errors.New("pipeline: closed")

// producer writes the processor's own messages — alerts and dead letters — to
// Kafka with acks=all and tells each caller the fate of its message through a
// callback, like sink.Writer does for documents.
//
// A message Kafka did not acknowledge is retried with backoff until it is, or
// until the producer is aborted: an alert or a dead letter is the only copy
// of something the processor is about to commit past, so giving up would
// lose it. Meanwhile the callers' offsets stay uncommitted and the bounded
// in-flight count (sem) makes Produce wait: a Kafka outage pauses the
// processor instead of growing its memory.
type producer struct {
	w       *kafka.Writer
	sem     chan struct{} // one token per message handed to w and not yet done
	retries chan *produceReq
	backoff backoff.Policy
	log     *slog.Logger
	m       *metrics

	abort     chan struct{} // closed by Close's ctx ending: stop retrying
	abortOnce sync.Once
	closing   chan struct{}
	closeOnce sync.Once
	stop      chan struct{} // ends retryLoop, after every request is done
	wg        sync.WaitGroup
	inflight  sync.WaitGroup
}

// produceReq travels with its message through kafka-go (Message.WriterData)
// and back in Completion.
type produceReq struct {
	msg     kafka.Message
	done    func(error)
	attempt int
	kind    string // "alert" | "dlq", for metrics
}

func newProducer(k config.KafkaConfig, c config.ProcessorProduceConfig, rt kafka.RoundTripper, log *slog.Logger, m *metrics) *producer {
	p := &producer{
		sem:     make(chan struct{}, c.MaxInFlight),
		retries: make(chan *produceReq, c.MaxInFlight), // never blocks: each entry holds a sem token
		backoff: backoff.Policy{Initial: c.RetryBackoff, Max: c.RetryMaxBackoff},
		log:     log,
		m:       m,
		abort:   make(chan struct{}),
		closing: make(chan struct{}),
		stop:    make(chan struct{}),
	}
	p.w = &kafka.Writer{
		Addr: kafka.TCP(k.Brokers...),
		// Murmur2 on the key, like the collector's publisher and the Java
		// client: alerts of one <cluster>/<rule_id> share a partition, so
		// the notifier sees them in order.
		Balancer:        kafka.Murmur2Balancer{},
		MaxAttempts:     3,
		WriteBackoffMin: 100 * time.Millisecond,
		WriteBackoffMax: time.Second,
		BatchSize:       c.BatchSize,
		BatchBytes:      c.BatchBytes,
		BatchTimeout:    c.BatchTimeout,
		ReadTimeout:     c.WriteTimeout,
		WriteTimeout:    c.WriteTimeout,
		RequiredAcks:    kafka.RequireAll,
		Async:           true,
		Completion:      p.completion,
		Compression:     kafka.Zstd,
		Transport:       rt,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			if log.Enabled(context.Background(), slog.LevelDebug) {
				log.Debug(fmt.Sprintf(msg, args...), "source", "kafka-go")
			}
		}),
	}
	p.wg.Add(1)
	go p.retryLoop()
	return p
}

// Produce hands msg to Kafka; done is called exactly once, with nil when
// Kafka acknowledged it, or with an error only when the producer was aborted
// first. Produce waits for room (bounded in-flight) and returns an error,
// without calling done, when ctx ends or the producer is closed.
func (p *producer) Produce(ctx context.Context, kind string, msg kafka.Message, done func(error)) error {
	select {
	case <-p.closing:
		return ErrClosed
	default:
	}
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-p.closing:
		return ErrClosed
	}
	p.inflight.Add(1)
	r := &produceReq{msg: msg, done: done, kind: kind}
	p.write([]*produceReq{r})
	return nil
}

// write hands reqs to the kafka-go writer. An error here (no metadata for
// the topic while Kafka is away, writer closed) comes before any batch was
// formed, so every request goes to the retry loop.
func (p *producer) write(reqs []*produceReq) {
	msgs := make([]kafka.Message, len(reqs))
	for i, r := range reqs {
		msgs[i] = r.msg
		msgs[i].WriterData = r
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.w.WriteTimeout)
	defer cancel()
	if err := p.w.WriteMessages(ctx, msgs...); err != nil {
		for _, r := range reqs {
			p.failed(r, err)
		}
	}
}

// completion is kafka-go's callback for every batch.
func (p *producer) completion(msgs []kafka.Message, err error) {
	for i := range msgs {
		r, ok := msgs[i].WriterData.(*produceReq)
		if !ok {
			continue
		}
		if err != nil {
			p.failed(r, err)
			continue
		}
		p.finish(r, nil)
	}
}

// failed queues r for another attempt, or ends it when aborted.
func (p *producer) failed(r *produceReq, err error) {
	r.attempt++
	p.m.produceRetries.WithLabelValues(r.kind).Inc()
	if r.attempt == 1 || r.attempt%20 == 0 {
		p.log.Warn("kafka did not acknowledge a message; retrying", "kind", r.kind, "topic", r.msg.Topic, "attempt", r.attempt, "error", err)
	}
	if p.aborted() {
		p.finish(r, fmt.Errorf("pipeline: %s to %s not acknowledged before shutdown: %w", r.kind, r.msg.Topic, err))
		return
	}
	// Room is certain: r holds a sem token. If the abort comes after this
	// check, retryLoop (which runs until Close is done) ends r.
	p.retries <- r
}

func (p *producer) finish(r *produceReq, err error) {
	if err == nil && r.kind == kindAlert {
		p.m.alertsProduced.Inc()
	}
	r.done(err)
	<-p.sem
	p.inflight.Done()
}

// retryLoop waits out a backoff and writes every request that failed
// meanwhile again, in one call: a broker outage fails many messages at once
// and they should not each sleep in turn. (This is why it is not sink.Do:
// the writes are asynchronous and batched, so one wait serves many
// messages.) Once aborted it ends every request it receives with an error.
func (p *producer) retryLoop() {
	defer p.wg.Done()
	for {
		var batch []*produceReq
		select {
		case r := <-p.retries:
			batch = append(batch, r)
		case <-p.stop:
			return
		}
		t := time.NewTimer(p.backoff.Wait(batch[0].attempt))
		select {
		case <-t.C:
		case <-p.abort:
			t.Stop()
		}
	more:
		for {
			select {
			case r := <-p.retries:
				batch = append(batch, r)
			default:
				break more
			}
		}
		if p.aborted() {
			for _, r := range batch {
				p.finish(r, fmt.Errorf("pipeline: %s to %s not acknowledged before shutdown", r.kind, r.msg.Topic))
			}
			continue
		}
		p.write(batch)
	}
}

func (p *producer) aborted() bool {
	select {
	case <-p.abort:
		return true
	default:
		return false
	}
}

// Close stops accepting, waits until every accepted message is done, and
// closes the writer. When ctx ends first, retries stop and the remaining
// callbacks get an error (their offsets are then not committed).
func (p *producer) Close(ctx context.Context) error {
	p.closeOnce.Do(func() { close(p.closing) })
	idle := make(chan struct{})
	go func() { p.inflight.Wait(); close(idle) }()
	var err error
	select {
	case <-idle:
	case <-ctx.Done():
		err = fmt.Errorf("pipeline: producer closed with messages unacknowledged: %w", ctx.Err())
		p.abortOnce.Do(func() { close(p.abort) })
		// What kafka-go still holds completes (or fails) within its own
		// attempts and timeouts.
		<-idle
	}
	p.abortOnce.Do(func() { close(p.abort) })
	close(p.stop)
	p.wg.Wait()
	return errors.Join(err, p.w.Close())
}
