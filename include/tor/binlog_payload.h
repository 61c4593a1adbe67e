/*
 * The inner events of a MySQL TRANSACTION_PAYLOAD event, one at a time.
 *
 * A payload can hold many MiB of events; they are decompressed as they are
 * read, so memory stays at about the largest inner event plus zstd's
 * window, not the whole transaction.  The handle is reused from one
 * payload to the next: its buffer and zstd context are kept, unless they
 * grew past TOR_PAYLOAD_KEEP for an outsized event or window, then they
 * are released once the payload is read.  Hostile bytes give -1 with a
 * message that names the offset in the uncompressed events, never a crash
 * (tests/fuzz drives it); an inner event may not be larger than
 * TOR_EVENT_MAX, like any other.
 */
#ifndef TOR_BINLOG_PAYLOAD_H
#define TOR_BINLOG_PAYLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "tor/binlog_decode.h"
#include "tor/err.h"

/* What the handle keeps between payloads: the binlog reader's own ring
 * size (src/binlog.c), several times what MySQL's default compression
 * level needs (a 2 MiB window, events of 8 KiB). */
#define TOR_PAYLOAD_KEEP (4u << 20)

struct tor_payload;

struct tor_payload *tor_payload_new(void);
void tor_payload_free(struct tor_payload *p);

/* Starts reading the events of info (from tor_payload_parse), whose data
 * must stay valid until the last tor_payload_next. */
void tor_payload_start(struct tor_payload *p,
    const struct tor_payload_info *info);

/* 1 and the next inner event, whole (raw, len: valid until the next call);
 * 0 after the last one, when the events fill exactly the uncompressed size;
 * -1 on corrupt or truncated data. */
int tor_payload_next(struct tor_payload *p, const uint8_t **raw, size_t *len,
    tor_err *err);

/* Where the event tor_payload_next handed out last starts, counted in the
 * uncompressed events (for messages). */
uint64_t tor_payload_offset(const struct tor_payload *p);

#endif
