// Package publish is the collector's Kafka publisher: it implements
// collector.Publisher with kafka-go and a bounded on-disk spool.
//
// # Path of a record
//
//	Publish(recs) ──encode──> [Kafka or spool?] ──Kafka──> in-flight window ──> kafka.Writer (async, acks=all)
//	                                 │                                               │ Completion
//	                                 │ spooling                                      v
//	                                 └────────────> spool (segments, fsync) <── not acked in time / failed
//	                                                      │
//	                                       drainer ───────┘──> kafka.Writer ──> commit + checkpoint
//
// Each record becomes one Kafka message: the value is record.Marshal, the key
// record.Key (cluster/user for audit), the headers record.Headers; the topic
// is chosen by the record's source (kafka.topics.audit, .events, .objects).
// An object's tombstone (record.Record.Deleted) is sent with a nil value, so
// that compaction of the objects topic drops the object; the spool keeps the
// nil across an outage (tombstone.go).
// Messages are partitioned by murmur2 of the key, except on the objects
// topic, where the partition is murmur2 of the key's cluster part, so that
// each partition holds whole clusters (balancer.go says why). Records published
// through For(source) also carry HeaderOrigin, naming the source. Publish queues the batch
// on an asynchronous kafka-go Writer and waits for the Completion callback of
// every message; it returns nil once each one is acknowledged (acks=all) or
// written to the spool — which is what lets a source acknowledge its own
// input (collector package doc).
//
// # Bounded everywhere
//
// kafka-go's Writer queues without limit, so a window of max_in_flight_bytes
// sits in front of it: Publish waits for room, and after ack_timeout it
// stops waiting and spools. Room comes back only through Completion (not
// when a caller gives up), so the writer never holds more than the window.
// No goroutine is started per record or per batch: the callers' goroutines
// wait, plus one drainer, plus kafka-go's own per-partition writers.
//
// # The spool
//
// When the writer gives up on a batch (max_attempts used) or Kafka does not
// acknowledge within ack_timeout, the records not acknowledged go to the
// spool and the publisher switches to spooling: every later Publish appends
// to the spool too, so new records queue behind the old ones rather than
// overtaking them. One drainer goroutine sends spooled records to Kafka in
// order, a round (drain_batch_bytes) at a time, deletes a segment once all
// its records are acknowledged and checkpoints its position (atomic rename),
// so that a restart re-sends at most one round. A round goes out in parts
// of one produce batch (batch_size, batch_bytes), each acknowledged before
// the next is sent, on a writer of its own: kafka-go sends a partition's
// next batch even when the one before it failed, so a round sent at once
// could land a key's later records before its earlier ones. When the spool is empty the
// publisher goes back to direct publishing. A spool left by a previous run is
// drained first.
//
// The spool is bounded by spool.max_bytes: an append that does not fit is
// refused whole and Publish returns collector.ErrBackpressure (the webhook
// answers 429/503, the tail pauses). Nothing is dropped to make room.
//
// Segment entries are length-prefixed and CRC-32C protected (segment.go).
// With fsync: always, an append is on disk before Publish returns — one
// fsync per Publish batch. A crash mid-append leaves a torn tail, which the
// next start cuts off (that batch never got its nil, so its source still has
// it). Damage inside fully written data (a disk fault, or fsync: never and a
// host crash) costs the rest of that segment: logged and counted in
// kubesift_collector_spool_truncated_bytes_total{cause="corrupt"}.
//
// # Guarantees and their limits
//
//   - At least once: a record for which Publish returned nil reaches Kafka,
//     across Kafka outages and collector restarts, as long as the spool
//     directory survives. Duplicates happen (a late acknowledgement of a
//     record that was already spooled; a drain round re-sent after a partial
//     failure or a crash) and carry the same record ID.
//   - Order: the first copy of each record comes in publish order per key,
//     while Kafka is healthy and across an outage and a failed drain round
//     (its re-sent records are duplicates, later than their first copy),
//     with one exception: records of Publish calls already in flight when
//     Kafka failed can be acknowledged after earlier records of the same
//     key went to the spool.
//   - A record larger than publish.batch_bytes (the size policy could not
//     make it fit) or one that cannot be encoded is never sent: its dead
//     letter (reason too_large or encode, the record's kubesift-id, its
//     envelope cut to fit) takes its place in the batch, and Publish
//     returns nil once the batch is durable (reject.go). Counted in
//     publish_refused_records_total{reason}.
//   - A record Kafka refuses for good goes to the dead-letter topic and the
//     drain goes on (refuse.go). Errors are classified for a record sent
//     alone: when a drain round fails with an error that may be permanent,
//     its unacknowledged records are re-sent one per produce request, so a
//     batch refused as a whole (larger than max.message.bytes, while each
//     record fits) costs single sends, not dead letters. Refused: message
//     too large, invalid record, topic not authorised, invalid topic,
//     policy violation. Everything else (network, leaders, timeouts, cluster
//     authorisation) is retried forever. The dead letter holds the record
//     (its head if the dead-letter topic refuses the whole), the broker's
//     error, the topic as origin, and the record's kubesift-id; counted in
//     publish_refused_records_total{reason}. A dead letter the dead-letter
//     topic itself cannot take (missing, not authorised) stops the drain,
//     logged every 30 s: there is nowhere left to put it.
//   - A record whose topic does not exist is not a dead letter: it stays in
//     the spool, and the drain waits (retrying) until the topic is created,
//     bounded by spool.max_bytes like any outage; the records behind it in
//     the spool wait too. Logged once at error level, naming `kubesift setup
//     kafka`; publish_topic_missing{topic} is 1 meanwhile (refuse.go).
//   - A drain round that fails commits the records before the first one not
//     done with, so a round failing for a long time on one record does not
//     send the ones before it again on every retry.
//
// # Metrics
//
// All prefixed kubesift_collector_: publish_sent_records_total{path},
// publish_acked_records_total, publish_failed_records_total{reason},
// publish_refused_records_total{reason},
// spooled_records_total, spool_bytes, spool_segments,
// spool_drained_records_total, spool_truncated_bytes_total{cause},
// publish_dead_letters_total, dead_letters_truncated_total,
// publish_backpressure_total, publish_spooling, publish_topic_missing{topic},
// publish_in_flight_bytes, publish_duration_seconds{result},
// spool_oldest_record_age_seconds (the oldest segment still holding
// records, so a stalled drain shows as a growing age even while spool_bytes
// stands still).
package publish
