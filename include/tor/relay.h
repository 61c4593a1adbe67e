/*
 * The relay: one group's leadership sessions, one after another: binlog
 * events in, Kafka messages out, checkpoint forward.
 *
 * One thread reads, decodes, maps and produces; librdkafka's own threads send.
 * Delivery reports are served in this thread between events, so the progress
 * tracker needs no locks.
 */
#ifndef TOR_RELAY_H
#define TOR_RELAY_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "tor/config.h"
#include "tor/elector.h"
#include "tor/err.h"
#include "tor/kafka.h"
#include "tor/metrics.h"

struct tor_relay;

/* One group's relay, its Redis connection and its elector (not started).
 * stop is the process's stop flag.  cold: a group of a pool, which holds
 * no Kafka client while it follows (see tor_relay_set_kafka_probe); else
 * the producer and the position reader are kept warm for a take-over.
 * cfg must outlive the relay. */
struct tor_relay *tor_relay_new(const struct tor_config *cfg,
    volatile sig_atomic_t *stop, bool cold, tor_err *err);
/* Stops a running elector first. */
void tor_relay_free(struct tor_relay *r);

struct tor_elector *tor_relay_elector(struct tor_relay *r);
struct tor_metrics *tor_relay_metrics(struct tor_relay *r);

/* The producer a cold group's standby health report asks whether a broker
 * answers (shared by the pool's groups with the same Kafka; not owned). */
void tor_relay_set_kafka_probe(struct tor_relay *r, struct tor_sink *probe);

/* Asks this group alone to stop, as the process's stop flag does: from any
 * thread. */
void tor_relay_stop(struct tor_relay *r);

/* Asks this group to hand its leadership over to the member target (the
 * pool's balancer): the session ends as at a stop, the lease is given back
 * with target named to take it for a few retries (5 x ha.retry_ms, at
 * least 1 s), during which this replica holds off, and the relay goes on
 * following.  From any thread; tor_relay_handing_over is true until it is
 * done (or found nothing to hand over). */
void tor_relay_hand_over(struct tor_relay *r, const char *target);
bool tor_relay_handing_over(struct tor_relay *r);

/* Follows and leads, with the elector running (started by the caller),
 * until a stop (the process's or the group's: it finishes the source
 * transaction it is in, flushes Kafka, writes the final checkpoint, gives
 * the lease back and returns 0) or a fatal error (returns -1 with err set,
 * after writing the checkpoint that is safe and giving the lease back).
 * Transient failures of MySQL, Redis and Kafka are retried. */
int tor_relay_serve(struct tor_relay *r, tor_err *err);

/* A replica of one group: tor_relay_new, the HTTP server, the elector's
 * thread, tor_relay_serve. */
int tor_relay_run(const struct tor_config *cfg, volatile sig_atomic_t *stop,
    tor_err *err);

#endif
