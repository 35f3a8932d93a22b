package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/kafkaopts"
	"github.com/kubesift/kubesift/internal/obs"
	"github.com/kubesift/kubesift/record"
	"github.com/kubesift/kubesift/rules"
	"github.com/kubesift/kubesift/sink"
)

// What the record processor and the posture consumer share: how they join
// a consumer group, follow its generations, read a partition, and write an
// alert message.

// newGroup joins consumer group id on topics with the processor's
// session settings; a new group starts at start.
func newGroup(id string, topics []string, k config.KafkaConfig, pc config.ProcessorConfig, d *kafka.Dialer, start int64,
	log *slog.Logger, lim *obs.LogLimiter) (*kafka.ConsumerGroup, error) {
	return kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                     id,
		Brokers:                k.Brokers,
		Dialer:                 d,
		Topics:                 topics,
		HeartbeatInterval:      pc.HeartbeatInterval,
		SessionTimeout:         pc.SessionTimeout,
		RebalanceTimeout:       pc.RebalanceTimeout,
		JoinGroupBackoff:       time.Second,
		WatchPartitionChanges:  true,
		PartitionWatchInterval: 10 * time.Second,
		StartOffset:            start,
		Timeout:                10 * time.Second,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			lim.Warn(log, "group", "consumer group: "+fmt.Sprintf(msg, args...))
		}),
	})
}

// followGroup hands every generation of cg to started until ctx ends or
// the group is closed. Join/sync errors are only reported (notJoined): the
// group retries by itself, with JoinGroupBackoff.
func followGroup(ctx context.Context, cg *kafka.ConsumerGroup, notJoined func(error), started func(*kafka.Generation)) {
	for {
		gen, err := cg.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
				return
			}
			notJoined(err)
			continue
		}
		started(gen)
	}
}

// newPartitionReader reads one partition with the processor's fetch
// settings.
func newPartitionReader(k config.KafkaConfig, pc config.ProcessorConfig, d *kafka.Dialer, topic string, partition int,
	log *slog.Logger, lim *obs.LogLimiter) *kafka.Reader {
	return kafka.NewReader(kafka.ReaderConfig{
		Brokers:        k.Brokers,
		Topic:          topic,
		Partition:      partition,
		Dialer:         d,
		MinBytes:       1,
		MaxBytes:       pc.FetchMaxBytes,
		MaxWait:        kafkaopts.ReaderMaxWait(pc.FetchMaxWait),
		QueueCapacity:  pc.QueueCapacity,
		ReadBackoffMin: 100 * time.Millisecond,
		ReadBackoffMax: time.Second,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			text := fmt.Sprintf(msg, args...)
			// kafka-go reports a fetch whose response came after its read
			// deadline (a second after the broker's wait) as an error and
			// simply fetches again; that is not worth a warning. Outages
			// show up as dial errors, which are.
			if strings.Contains(text, "i/o timeout") {
				log.Debug("partition reader: "+text, "source", "kafka-go")
				return
			}
			lim.Warn(log, "reader/"+topic, "partition reader: "+text)
		}),
	})
}

// closeSinks closes w (whose last done callbacks may still write dead
// letters) and then prod, within timeout, and then ends the consumer's
// lifetime context.
func closeSinks(timeout time.Duration, w sink.Writer, prod *producer, endLife context.CancelFunc) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	werr := w.Close(ctx)
	if werr != nil {
		werr = fmt.Errorf("pipeline: closing the writer: %w", werr)
	}
	perr := prod.Close(ctx)
	endLife()
	return errors.Join(werr, perr)
}

// alertMessage is the alerts-topic message of a: the value is the
// rules.Alert in encoding/json, the key "<cluster>/<rule_id>" (the
// notifier's grouping and ordering unit), the headers name the schema, the
// alert ID and the cluster.
func alertMessage(topic string, a *rules.Alert, value []byte) kafka.Message {
	return kafka.Message{
		Topic: topic,
		Key:   []byte(a.Cluster + "/" + a.RuleID),
		Value: value,
		Headers: []kafka.Header{
			{Key: record.HeaderSchema, Value: []byte(strconv.Itoa(record.SchemaVersion))},
			{Key: record.HeaderID, Value: []byte(a.ID)},
			{Key: record.HeaderCluster, Value: []byte(a.Cluster)},
		},
	}
}
