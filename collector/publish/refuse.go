package publish

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/collector"
	"github.com/kubesift/kubesift/record"
)

// Records Kafka refuses for good, and records whose topic is missing.
//
// Most produce errors pass (a broker restarting, a leader moving, a network
// cut), and the drainer retries them forever: that is what makes an outage
// lossless. A few never pass for a given record: it is larger than the
// topic's max.message.bytes, the broker rejects its content, or its topic
// may not be written. Retrying those would stop the drain for every record
// behind it, fill the spool and push back on every source — one bad record
// would stop the whole collector. So the drainer sends such a record to the
// dead-letter topic, with the broker's error, and goes on.
//
// A topic that does not exist is different: nothing is wrong with the
// record, the topic has not been created yet (`kubesift setup kafka`), and
// once it is, every record must arrive. So its records stay in the spool,
// and the drain waits for the topic, retrying with its usual backoff: the
// spool's byte budget bounds the wait, and when it is full Publish pushes
// back as during any outage. The spool is one line, so records of other
// topics behind them wait too. While a topic is missing, the publisher logs
// it at error level (once), sets kubesift_collector_publish_topic_missing
// {topic} to 1 and names it in Stats().MissingTopics; the components' topic
// check (internal/kafkatopics) fails /readyz with the same reason.
// TestMissingTopicWaitsInTheSpool guards this.
//
// A broker error for a produce batch does not say which record caused it,
// and a batch of small records can be refused as a whole (a batch larger
// than max.message.bytes). So the verdict is taken only for a record sent
// alone: when a drain round fails with an error that may be permanent, its
// unacknowledged records are re-sent one at a time (isolate), and only one
// that is refused alone is dead-lettered.

// verdict is what an error means for a record sent alone.
type verdict uint8

const (
	// retry: the error may pass (network, broker restart, leader change,
	// timeouts, anything unknown). The record stays in the spool.
	retry verdict = iota
	// refused: this record will never be written; dead-letter it.
	refused
	// topicMissing: the topic does not exist. The record stays in the
	// spool until it does.
	topicMissing
)

// refusedHead is what a dead letter keeps of a refused record (or dead
// letter) that the dead-letter topic refused as too large, too: small enough
// for any broker's message.max.bytes.
const refusedHead = 16 << 10

// refusalReasons are the reasons classify gives the records it refuses
// (pre-created metric labels).
var refusalReasons = []string{"kafka_message_too_large", "kafka_invalid_record", "kafka_topic_authorization_failed",
	"kafka_invalid_topic", "kafka_policy_violation", "kafka_unsupported_message_format"}

// classify maps a produce error to a verdict and a short stable reason (the
// value of the dead letter's reason header and of the metric label).
func classify(err error) (verdict, string) {
	var ke kafka.Error
	switch {
	case err == nil:
		return retry, ""
	case errors.As(err, &ke):
	default:
		var we kafka.WriteErrors
		if errors.As(err, &we) {
			for _, e := range we {
				if e != nil {
					return classify(e)
				}
			}
		}
		return retry, ""
	}
	switch ke {
	case kafka.MessageSizeTooLarge, kafka.RecordListTooLarge:
		return refused, "kafka_message_too_large"
	case kafka.InvalidRecord, kafka.InvalidMessage:
		// InvalidMessage (CORRUPT_MESSAGE) is retriable in the protocol (a CRC error in
		// transit) — but it only reaches this point when the record was
		// refused alone after the writer's own retries.
		return refused, "kafka_invalid_record"
	case kafka.TopicAuthorizationFailed:
		return refused, "kafka_topic_authorization_failed"
	case kafka.InvalidTopic:
		return refused, "kafka_invalid_topic"
	case kafka.PolicyViolation:
		return refused, "kafka_policy_violation"
	case kafka.UnsupportedForMessageFormat:
		return refused, "kafka_unsupported_message_format"
	case kafka.UnknownTopicOrPartition:
		return topicMissing, "kafka_unknown_topic"
	}
	return retry, ""
}

// mayBePermanent says whether a round failed with an error worth isolating
// its records for.
func mayBePermanent(err error) bool {
	v, _ := classify(err)
	return v != retry
}

// isolate sends msgs (the records of a drain round Kafka did not
// acknowledge, in spool order) one at a time with the single-record writer
// and dead-letters each one refused alone. It returns how many of msgs,
// from the first, are done with (acknowledged or dead-lettered), and an
// error as soon as one fails with an error that may pass or its topic is
// missing: that record and the ones after it are sent again in a later
// round.
func (p *Publisher) isolate(ctx context.Context, msgs []outMsg) (int, error) {
	for i := range msgs {
		m := &msgs[i]
		err := p.sendOne(ctx, m)
		if err == nil {
			p.markTopicFound(m.kind)
			continue
		}
		v, reason := classify(err)
		switch v {
		case retry:
			return i, fmt.Errorf("record %d of %d sent alone: %w", i+1, len(msgs), err)
		case topicMissing:
			p.markTopicMissing(m.kind, err)
			return i, fmt.Errorf("topic %s does not exist; its records wait in the spool: %w", p.topics[m.kind], err)
		}
		if err := p.deadLetterRefused(ctx, m, reason, err); err != nil {
			return i, err
		}
	}
	return len(msgs), nil
}

// markTopicMissing records that k's topic does not exist: logged once (until it
// is found again), the gauge set and the topic listed in Stats.
func (p *Publisher) markTopicMissing(k kind, cause error) {
	p.missingMu.Lock()
	known := p.missing[k]
	p.missing[k] = true
	p.missingMu.Unlock()
	if known {
		return
	}
	p.m.topicMissing.WithLabelValues(p.topics[k]).Set(1)
	p.log.Error("Kafka topic does not exist; its records (and the spooled records behind them) wait in the spool until it is created. Create the topics with: kubesift setup kafka -c <config>",
		"topic", p.topics[k], "spool", p.cfg.Spool.Dir, "error", cause)
}

// markTopicFound clears what markTopicMissing recorded once a record of
// k's topic was acknowledged.
func (p *Publisher) markTopicFound(k kind) {
	p.missingMu.Lock()
	known := p.missing[k]
	delete(p.missing, k)
	p.missingMu.Unlock()
	if known {
		p.m.topicMissing.WithLabelValues(p.topics[k]).Set(0)
		p.log.Info("Kafka topic exists now; draining its records", "topic", p.topics[k])
	}
}

// markTopicsFound is markTopicFound for the kinds of msgs, all acknowledged.
func (p *Publisher) markTopicsFound(msgs []outMsg) {
	p.missingMu.Lock()
	none := len(p.missing) == 0
	p.missingMu.Unlock()
	if none {
		return
	}
	for i := range msgs {
		p.markTopicFound(msgs[i].kind)
	}
}

// sendOne writes one message alone (its own produce request) and waits for
// the acknowledgement.
func (p *Publisher) sendOne(ctx context.Context, m *outMsg) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.AckTimeout)
	defer cancel()
	km := kafka.Message{Topic: p.topics[m.kind], Key: m.key, Value: m.value, Headers: m.headers}
	p.m.sent.WithLabelValues("isolate").Inc()
	if err := p.single.WriteMessages(ctx, km); err != nil {
		var we kafka.WriteErrors
		if errors.As(err, &we) && len(we) == 1 && we[0] != nil {
			err = we[0] // one message: its error says it all
		}
		return err
	}
	p.m.acked.Inc()
	return nil
}

// deadLetterRefused writes a refused message to the dead-letter topic: the
// message's value with the broker's error, the topic it was meant for and
// the record's ID. If the dead-letter topic refuses it as too large as well,
// its head is kept. A dead letter that cannot be written at all (the
// dead-letter topic missing or not writable) stops the drain: there is no
// place left to put it, and dropping it would be a silent loss.
func (p *Publisher) deadLetterRefused(ctx context.Context, m *outMsg, reason string, cause error) error {
	topic := p.topics[m.kind]
	dl := collector.DeadLetter{
		Data: m.value, Source: "publish", Origin: topic, Offset: -1, Reason: reason,
		Error:   fmt.Sprintf("Kafka refused the record for topic %s: %v", topic, cause),
		Cluster: record.Cluster{Name: headerValue(m.headers, record.HeaderCluster)},
	}
	if m.kind == kindDLQ {
		// Already a dead letter: keep its own headers (source, origin,
		// offset of the original input) and only say what happened now.
		dl.Source = headerValue(m.headers, HeaderDLQSource)
		dl.Origin = headerValue(m.headers, HeaderDLQOrigin)
		dl.Offset, _ = strconv.ParseInt(headerValue(m.headers, HeaderDLQOffset), 10, 64)
		dl.Line, _ = strconv.Atoi(headerValue(m.headers, HeaderDLQLine))
		dl.Error = headerValue(m.headers, HeaderDLQError) + "; then " + dl.Error
		dl.Reason = headerValue(m.headers, HeaderDLQReason)
	}
	out, _ := p.refusedLetter(dl, m.headers, reason)
	err := p.sendOne(ctx, &out)
	if v, r := classify(err); v == refused && r == "kafka_message_too_large" && len(out.value) > refusedHead {
		// Too large for the dead-letter topic too: keep the head, which
		// says what the record was, and mark the cut.
		out.headers = append(out.headers, kafka.Header{Key: HeaderDLQTruncated, Value: []byte(strconv.Itoa(len(out.value)))})
		out.value = out.value[:refusedHead]
		p.m.dlqTruncated.Inc()
		err = p.sendOne(ctx, &out)
	}
	if err != nil {
		return fmt.Errorf("record for %s refused (%s) and the dead-letter topic %s did not take it either: %w",
			topic, reason, p.topics[kindDLQ], err)
	}
	p.m.refused.WithLabelValues(reason).Inc()
	p.m.deadLetters.Inc()
	if p.logLimit.allow("refused-"+reason, 10*time.Second) {
		p.log.Error("Kafka refused a record for good; sent it to the dead-letter topic",
			"topic", topic, "reason", reason, "id", headerValue(m.headers, record.HeaderID),
			"bytes", len(m.value), "dlq", p.topics[kindDLQ], "error", cause)
	}
	return nil
}

// refusedLetter builds the dead-letter message of a record the publisher
// will not deliver: dl (its data cut to fit publish.batch_bytes), the
// record's kubesift-id, kubesift-source and HeaderOrigin headers taken from
// hs, and HeaderDLQRefused set to reason. cut says whether dl.Data was cut.
func (p *Publisher) refusedLetter(dl collector.DeadLetter, hs []kafka.Header, reason string) (out outMsg, cut bool) {
	var extra []kafka.Header
	var size int64
	for _, h := range []string{record.HeaderID, record.HeaderSource, HeaderOrigin} {
		if v := headerValue(hs, h); v != "" {
			// Capped like the error text: a record refused for its size
			// may owe it to its ID.
			extra = append(extra, kafka.Header{Key: h, Value: []byte(v[:min(len(v), maxDLQErrorLen)])})
		}
	}
	extra = append(extra, kafka.Header{Key: HeaderDLQRefused, Value: []byte(reason)})
	for _, h := range extra {
		size += int64(len(h.Key)+len(h.Value)) + 20
	}
	out, cut = fromDeadLetter(dl, p.cfg.BatchBytes-size)
	out.headers = append(out.headers, extra...)
	return out, cut
}

func headerValue(hs []kafka.Header, key string) string {
	for _, h := range hs {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
