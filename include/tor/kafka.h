/*
 * The Kafka sink: one asynchronous librdkafka producer (idempotent,
 * acks=all, the partition picked by kafka.partitioner), batched by
 * librdkafka.
 *
 * Delivery reports are served only inside tor_sink_poll/tor_sink_flush, in
 * the caller's thread, so the ack callback needs no locking.  The producer's
 * queue is bounded: tor_sink_produce answers TOR_SINK_BUSY instead of
 * growing it, and the caller polls and tries again (back-pressure).
 */
#ifndef TOR_KAFKA_H
#define TOR_KAFKA_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "tor/config.h"
#include "tor/dedup.h"
#include "tor/err.h"
#include "tor/outbox.h"

struct tor_sink;

/* Called exactly once per message that tor_sink_produce queued, in
 * acknowledgement order (produce order within a partition).  err is 0 when
 * Kafka stored the message (all in-sync replicas), else an
 * rd_kafka_resp_err_t code with its text in errstr ("" when err is 0).  seq
 * is what tor_sink_produce was given.  tor_sink_free calls it too, for
 * messages it had to purge (err RD_KAFKA_RESP_ERR__PURGE_QUEUE/INFLIGHT). */
typedef void tor_sink_ack_fn(void *ctx, uint64_t seq, int err,
    const char *errstr);

/* Builds the producer from cfg->kafka (properties passed through after the
 * fixed ones, so an operator can tune but the safety settings are checked:
 * enable.idempotence, acks and the partitioner may not be overridden).  An
 * error never shows a property's value. */
struct tor_sink *tor_sink_new(const struct tor_config *cfg,
    tor_sink_ack_fn *ack, void *ack_ctx, tor_err *err);
/* Purges what is still queued (acking it with an error, logged) and
 * destroys the producer; never sends and never hangs.  A caller that may
 * still publish flushes first.  NULL is a no-op. */
void tor_sink_free(struct tor_sink *sink);

/* The leadership check of the calls that wait (flush, the transactional
 * commit): while may_publish(ctx) is false they stop, purge or abort, and
 * return.  Without one they wait out their timeouts. */
void tor_sink_set_guard(struct tor_sink *sink, bool (*may_publish)(void *ctx),
    void *ctx);

/* Creates the topics of cfg->kafka.topics that do not exist yet; "already
 * exists" counts as success.  TOR_SINK_RETRY (err says why) when Kafka
 * could not be asked or was busy (brokers down, an election): the caller
 * tries again later; -1 on a refusal that stays.  Lists all topics first (one metadata request,
 * no per-topic lookups, which would auto-create them) and sends CreateTopics
 * only for the missing ones, one log line per topic.  An error (a timeout
 * included) names the topics.  On the dev broker CreateTopics always times
 * out (DESIGN.md §9), so it must pre-create the configured topics. */
int tor_sink_create_topics(struct tor_sink *sink, int timeout_ms, tor_err *err);

enum {
	TOR_SINK_OK = 0,
	TOR_SINK_BUSY = 1,      /* queue full: poll, then try again */
	TOR_SINK_TOO_LARGE = 2, /* over message.max.bytes: not queued */
	TOR_SINK_FENCED = 3,    /* transactional: fenced or fatal, step down */
	TOR_SINK_ABORT = 4,     /* transactional: abort, replay from the commit */
	TOR_SINK_RETRY = 5,     /* transactional: the call may be retried;
				 * produce: the topic's partition count is
				 * unknown yet */
	TOR_SINK_LOST = 6,      /* the guard said the leadership ended */
};

/* Queues msg (copied; the caller may reuse its buffers), with header
 * tor.partitioning added.  Returns TOR_SINK_OK, TOR_SINK_BUSY,
 * TOR_SINK_TOO_LARGE (err says so), TOR_SINK_RETRY (the topic's partition
 * count is unknown, a topic that does not exist included: err says why),
 * or -1 on any other error (a fatal producer error), err naming the topic
 * or the reason.  Only TOR_SINK_OK is ever acked.  A failed
 * ProduceRequest (acked with its code) also makes the producer fatal
 * (enable.gapless.guarantee), so that no later message of the partition
 * overtakes the failed one; produce and poll then return -1. */
int tor_sink_produce(struct tor_sink *sink, const struct tor_message *msg,
    uint64_t seq, tor_err *err);

/* Makes every error the producer reports (see sink_error_cb) add one to
 * *counter, from then on. */
void tor_sink_count_errors(struct tor_sink *sink, _Atomic uint64_t *counter);

/* Since when (monotonic ms) the producer has reached no broker, from
 * librdkafka's statistics a second apart; 0 while one is up. */
int64_t tor_sink_down_since(const struct tor_sink *sink);

/* Whether a broker answers a metadata request (brokers only, no topics)
 * within timeout_ms: a standby's view of Kafka for its health report.  An
 * idle connection says nothing of a link cut since; a request does. */
bool tor_sink_reachable(struct tor_sink *sink, int timeout_ms);

/* The partition count of topic, from its metadata: looked up again at each
 * call until known, then fixed for the sink's life.  -1 with err while
 * unknown: tor_sink_produce answers TOR_SINK_RETRY then (a row placed
 * without the count could not be found again at a takeover). */
int tor_sink_partitions(struct tor_sink *sink, const char *topic,
    tor_err *err);

/* How this sink places rows in topic, the value of header
 * tor.partitioning every message carries: "<kafka.partitioner>/<partition
 * count>" ("murmur2/12").  -1 with err while the count is unknown. */
int tor_sink_placement(struct tor_sink *sink, const char *topic, char *buf,
    size_t cap, tor_err *err);

/* Whether msg (to msg->topic, headers as the sink adds them) is within
 * message.max.bytes: 1 surely, 0 surely not (tor_sink_produce would
 * answer TOR_SINK_TOO_LARGE), -1 too close to tell (or the topic's count is
 * unknown). */
int tor_sink_fits(struct tor_sink *sink, const struct tor_message *msg);

/* The partition msg had under placement (a tor.partitioning value,
 * "<partitioner>/<partition count>"), or -1 when placement names none (a
 * message without the header). */
int tor_sink_partition_as(struct tor_sink *sink, const struct tor_message *msg,
    const char *placement);

/* The partition tor_sink_produce gives msg: kafka.partitioner's hash (the
 * Java producer's murmur2, Sarama's fnv1a or crc32) of the key, or of
 * tor.pos for a message without a key; -1 when the topic's partition count
 * is unknown. */
int tor_sink_partition(struct tor_sink *sink, const struct tor_message *msg);

/* Serves delivery reports (calling the ack function) for up to timeout_ms.
 * Returns -1 with err set when the producer hit a fatal error or a broker
 * refused its TLS or SASL (a configuration error: err names the broker and
 * what failed), else 0. */
int tor_sink_poll(struct tor_sink *sink, int timeout_ms, tor_err *err);

/* Waits up to timeout_ms until every queued message is acknowledged,
 * serving delivery reports; -1 when some remain or on a fatal error. */
int tor_sink_flush(struct tor_sink *sink, int timeout_ms, tor_err *err);

/* Drops every message not yet acknowledged, at once: a replica that lost its
 * leadership must not publish what it had queued.  Their acks come with a
 * purge error.  A message already on the wire may still land: the fences
 * (Kafka's producer epoch, the checkpoint token) bound what that can do. */
void tor_sink_purge(struct tor_sink *sink);

/* The same drop from any thread (the elector's, the moment the leadership
 * ends); the acks are served by the owner's next poll. */
void tor_sink_purge_now(struct tor_sink *sink);

/* Messages the broker refused as too large (its message.max.bytes can be
 * below the client's): their tor.pos and size, collected (and forgotten)
 * by tor_sink_rejected.  Such an ack has err MSG_SIZE_TOO_LARGE and makes
 * the producer fatal (gapless), so the caller starts over with a new one. */
#define TOR_SINK_MAX_REJECTED 16
#define TOR_SINK_ERR_TOO_LARGE 10       /* the ack's err: MESSAGE_TOO_LARGE */
struct tor_sink_rejection {
	char pos[128];
	size_t bytes;
};
size_t tor_sink_rejected(struct tor_sink *sink,
    struct tor_sink_rejection *out, size_t max);

/* Whether only this producer is done for: its idempotence state lost step
 * with a partition's leader, which librdkafka 2.0.2 makes fatal (e.g.
 * OUT_OF_ORDER_SEQUENCE_NUMBER for the batch after one a new leader refused
 * with NOT_ENOUGH_REPLICAS), as an ack's err or the producer's fatal error
 * says (the acks of the messages it purged then may come first).  A new
 * producer may continue from the checkpoint. */
bool tor_sink_out_of_step(const struct tor_sink *sink, int err);

/* Whether an ack's err says the producer's metadata lost the message's
 * partition for a moment, not that a broker refused it: librdkafka 2.0.2
 * takes the answer of a broker that does not know a just auto-created topic
 * yet for a topic of no partitions ("partition count changed from 4 to 0")
 * and fails what it queued for them (_UNKNOWN_PARTITION, or _DESTROY from
 * the partition's broker handle).  A new producer may continue from the
 * checkpoint. */
bool tor_sink_partition_lost(int err);

/* A position record (see tor/checkpoint.h) on partition 0 of
 * kafka.checkpoint_topic, key = group: the durable copy of the checkpoint
 * in idempotent mode.  Acked like a message with seq 0.  TOR_SINK_OK,
 * TOR_SINK_BUSY or -1. */
int tor_sink_produce_position(struct tor_sink *sink, const char *record,
    tor_err *err);

/* Readable (poll) when delivery reports wait for tor_sink_poll. */
int tor_sink_fd(const struct tor_sink *sink);

/*
 * Transactional mode (kafka.mode = "transactional", DESIGN.md §5): the
 * producer has transactional.id = kafka.transactional_id, shared by every
 * replica of the group.  Each call returns 0, or TOR_SINK_FENCED (another
 * producer took the id: step down, never init again before winning the
 * lease), TOR_SINK_ABORT (abort, then replay from the last commit), or -1.
 */
int tor_sink_txn_init(struct tor_sink *sink, int timeout_ms, tor_err *err);
int tor_sink_txn_begin(struct tor_sink *sink, tor_err *err);

/* Adds the position record (key = group, value = record) to partition 0 of
 * kafka.checkpoint_topic and commits the transaction: the messages and the
 * position become visible together.  A full queue is waited out (acks
 * served); the commit is retried in short attempts while the guard allows,
 * for at most timeout_ms: TOR_SINK_LOST when the leadership ended first,
 * TOR_SINK_ABORT when time ran out (the caller aborts). */
int tor_sink_txn_commit(struct tor_sink *sink, const char *record,
    int timeout_ms, tor_err *err);

/* transaction.timeout.ms as the producer has it: past it the broker aborts
 * a transaction, so a big source transaction is split well before. */
int tor_sink_txn_timeout_ms(const struct tor_sink *sink);
int tor_sink_txn_abort(struct tor_sink *sink, int timeout_ms, tor_err *err);

/* Whether another producer took the transactional.id: a transactional call
 * answered TOR_SINK_FENCED, or the producer went fatal as fenced while it
 * produced. */
bool tor_sink_fenced(const struct tor_sink *sink);

/* Whether a librdkafka property concerns the producer alone (linger.ms,
 * compression.type, acks, ...): tor's consumers leave those of
 * kafka.properties out and take the rest. */
bool tor_sink_producer_only(const char *name);

/* The reader of the group's position records on kafka.checkpoint_topic:
 * two consumers of its own (one read_uncommitted, for the log's end; one
 * read_committed, for the records) with kafka.properties (see
 * tor_sink_producer_only), made once and kept connected, so a takeover
 * does not wait for connections.  Fails when a broker refused their TLS or
 * SASL while they connected. */
struct tor_position_reader;
struct tor_position_reader *tor_position_reader_new(
    const struct tor_config *cfg, tor_err *err);
void tor_position_reader_free(struct tor_position_reader *pr);

/* Serves the reader's events: -1 with err when a broker refused its TLS or
 * SASL (as tor_sink_poll), else 0.  The reads below only time out then. */
int tor_position_reader_poll(struct tor_position_reader *pr, tor_err *err);

/* De-duplication at takeover (tor/dedup.h): for each of topic's n
 * partitions, the newest message this group published there (header
 * tor.group) among the partition's last records, in windows of 16, 1024,
 * 32768 records, then the whole partition, all partitions read at once,
 * within timeout_ms; a message whose tor.epoch is below
 * floor does not count (it was published before an operator's move, which
 * asked for a replay).  tails[p].known is false where the read timed out
 * before it reached the group's newest message.  Returns 0, or -1 with err
 * set. */
int tor_position_reader_tails(struct tor_position_reader *pr,
    const char *topic, int n, uint64_t floor,
    struct tor_partition_tail *tails, int timeout_ms, tor_err *err);

/* The group's committed position records, read up to the end the log had
 * when the read started (see tor_position_scan), among the partition's
 * last records in windows of 16, 1024, then the whole partition: take gets
 * each one of the first window that holds any, in offset order (a caller
 * picks the newest decision among them, tor_checkpoint_pick); one of cap
 * bytes or more is skipped, with a warning.  *found is false when there is
 * none. */
int tor_position_reader_read(struct tor_position_reader *pr, size_t cap,
    void (*take)(void *tctx, const void *value, size_t len), void *tctx,
    bool *found, int timeout_ms, tor_err *err);

/* One item of a read of the checkpoint partition: a record, or the end of
 * what can be read now (eof, at offset). */
struct tor_position_item {
	bool eof;
	int64_t offset;
	const void *key, *value;
	size_t key_len, value_len;
};

/* The scan behind tor_position_reader_read, over any source: next() gives
 * the next item (1), or nothing within timeout_ms (0).  Hands every value
 * whose key is group to take(tctx, value, len) in offset order (*found
 * then), but for one of cap bytes or more (no tor writes such a record),
 * which is skipped with a warning naming its offset; ends only once the
 * read has reached hi: an end of partition before hi is a last stable
 * offset held back by an open transaction, and is waited past.  -1 with
 * err when timeout_ms runs out first. */
int tor_position_scan(int (*next)(void *ctx, int timeout_ms,
    struct tor_position_item *it), void *ctx, const char *group, int64_t hi,
    int timeout_ms, size_t cap,
    void (*take)(void *tctx, const void *value, size_t len), void *tctx,
    bool *found, tor_err *err);

/* Messages queued or in flight, not yet acknowledged. */
int tor_sink_in_flight(const struct tor_sink *sink);

#endif
