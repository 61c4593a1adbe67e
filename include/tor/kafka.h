/*
 * The Kafka sink: one asynchronous librdkafka producer (idempotent,
 * acks=all, murmur2_random partitioner), batched by librdkafka.
 *
 * Delivery reports are served only inside tor_sink_poll/tor_sink_flush, in
 * the caller's thread, so the ack callback needs no locking.  The producer's
 * queue is bounded: tor_sink_produce answers TOR_SINK_BUSY instead of
 * growing it, and the caller polls and tries again (back-pressure).
 */
#ifndef TOR_KAFKA_H
#define TOR_KAFKA_H

#include <stdbool.h>
#include <stdint.h>

#include "tor/config.h"
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
 * enable.idempotence, acks and the partitioner may not be overridden). */
struct tor_sink *tor_sink_new(const struct tor_config *cfg,
    tor_sink_ack_fn *ack, void *ack_ctx, tor_err *err);
/* Waits at most 2 s for outstanding acks, then purges the rest (acking them
 * with an error, logged) and destroys the producer; never hangs.  Flush
 * first to wait longer.  NULL is a no-op. */
void tor_sink_free(struct tor_sink *sink);

/* Creates the topics of cfg->kafka.topics that do not exist yet; "already
 * exists" counts as success.  Lists all topics first (one metadata request,
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
	TOR_SINK_RETRY = 5,     /* transactional: the call may be retried */
};

/* Queues msg (copied; the caller may reuse its buffers).  Returns TOR_SINK_OK,
 * TOR_SINK_BUSY, TOR_SINK_TOO_LARGE (err says so), or -1 on any other error
 * (a topic Kafka says does not exist, a fatal producer error), err naming
 * the topic or the reason.  Only TOR_SINK_OK is ever acked.  A failed
 * ProduceRequest (acked with its code) also makes the producer fatal
 * (enable.gapless.guarantee), so that no later message of the partition
 * overtakes the failed one; produce and poll then return -1. */
int tor_sink_produce(struct tor_sink *sink, const struct tor_message *msg,
    uint64_t seq, tor_err *err);

/* Serves delivery reports (calling the ack function) for up to timeout_ms.
 * Returns -1 with err set when the producer hit a fatal error, else 0. */
int tor_sink_poll(struct tor_sink *sink, int timeout_ms, tor_err *err);

/* Waits up to timeout_ms until every queued message is acknowledged,
 * serving delivery reports; -1 when some remain or on a fatal error. */
int tor_sink_flush(struct tor_sink *sink, int timeout_ms, tor_err *err);

/* Drops every message not yet acknowledged, at once: a replica that lost its
 * leadership must not publish what it had queued.  Their acks come with a
 * purge error.  A message already on the wire may still land: the fences
 * (Kafka's producer epoch, the checkpoint token) bound what that can do. */
void tor_sink_purge(struct tor_sink *sink);

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
 * position become visible together. */
int tor_sink_txn_commit(struct tor_sink *sink, const char *record,
    int timeout_ms, tor_err *err);
int tor_sink_txn_abort(struct tor_sink *sink, int timeout_ms, tor_err *err);
bool tor_sink_fenced(const struct tor_sink *sink);

/* The group's last committed position record on kafka.checkpoint_topic
 * (read_committed), with its own short-lived consumer.  *found is false when
 * there is none. */
int tor_sink_read_position(const struct tor_config *cfg, char *record,
    size_t cap, bool *found, int timeout_ms, tor_err *err);

/* Messages queued or in flight, not yet acknowledged. */
int tor_sink_in_flight(const struct tor_sink *sink);

#endif
