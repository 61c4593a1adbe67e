/*
 * The relay loop: binlog events in, Kafka messages out, checkpoint forward.
 *
 * One thread reads, decodes, maps and produces; librdkafka's own threads send.
 * Delivery reports are served in this thread between events, so the progress
 * tracker needs no locks.
 */
#ifndef TOR_RELAY_H
#define TOR_RELAY_H

#include <signal.h>
#include <stdint.h>

#include "tor/config.h"
#include "tor/err.h"

/* Runs until *stop becomes non-zero (then it finishes the source transaction
 * it is in, flushes Kafka, writes the final checkpoint and returns 0) or until
 * a fatal error (returns -1 with err set, after writing the checkpoint that
 * is safe).  Transient failures of MySQL, Redis and Kafka are retried. */
int tor_relay_run(const struct tor_config *cfg, volatile sig_atomic_t *stop,
    tor_err *err);

#endif
