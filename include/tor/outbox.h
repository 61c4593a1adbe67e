/*
 * Outbox mapping and routing (DESIGN.md §4): an inserted outbox row becomes
 * one Kafka message — topic, key, value and headers.
 *
 * Column names are resolved to indexes once per table map (tor_outbox_bind),
 * so mapping a row is index lookups and a route match, nothing more.
 */
#ifndef TOR_OUTBOX_H
#define TOR_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tor/binlog_decode.h"
#include "tor/config.h"
#include "tor/err.h"

/* At most this many headers on one message: the configured ones plus the
 * tor.* headers (six, and tor.error on a dead-lettered oversized message),
 * so a table may configure at most TOR_MAX_HEADERS - 7 mappings
 * (tor_outbox_new refuses more). */
#define TOR_MAX_HEADERS 32

struct tor_header {
	const char *name;
	size_t name_len;        /* strlen(name), known where the name is */
	const uint8_t *value;   /* NULL for SQL NULL */
	size_t len;
};

/* A message ready for the sink.  Pointers refer to the row's values and to
 * buffers inside the tor_outbox handle, valid until the next tor_outbox_map. */
struct tor_message {
	const char *topic;
	const uint8_t *key;     /* NULL: no key (SQL NULL) */
	size_t key_len;
	const uint8_t *value;   /* NULL: tombstone (SQL NULL payload) */
	size_t value_len;
	struct tor_header headers[TOR_MAX_HEADERS];
	size_t n_headers;
	int64_t timestamp_ms;   /* the Kafka timestamp (tor.ts); 0: the broker's
	                         * clock at produce */
	bool timestamp_from_row;/* columns.timestamp gave it, not the commit */
	/* columns.partition: the row names its partition (partition_given),
	 * or its value was NULL (partition_null); the relay checks it against
	 * the topic's partition count before the message goes out. */
	bool partition_given;
	bool partition_null;
	int64_t partition;
};

/* Where a row came from, for the tor.* headers. */
struct tor_row_origin {
	const char *pos;        /* "<file>:<end pos of its transaction>:<row index>"
	                         * or "<gtid>:<row index>" */
	uint64_t epoch;         /* fencing token */
	int64_t ts_ms;          /* source commit time, ms since the epoch */
};

struct tor_outbox;

/* The handle keeps a pointer to cfg, which must outlive it. */
struct tor_outbox *tor_outbox_new(const struct tor_config *cfg, tor_err *err);
void tor_outbox_free(struct tor_outbox *ob);

/* The index of schema.table in cfg->outbox.tables, or -1 when it is not an
 * outbox table.  Names need not be NUL-terminated. */
int tor_outbox_find_table(const struct tor_outbox *ob, const char *schema,
    size_t schema_len, const char *table, size_t table_len);

/* Resolves the configured columns of table `table_idx` against tm (whose
 * columns must have names).  Call whenever the table map of that table
 * changes.  A configured column missing from tm fails with
 * "schema.table.column: no such column (outbox table at file:line)". */
int tor_outbox_bind(struct tor_outbox *ob, int table_idx,
    const struct tor_table_map *tm, tor_err *err);

/* Whether mapping rows of bound table `table_idx` reads column col (the
 * relay lets the decoder step over the others without rendering them). */
bool tor_outbox_uses_column(const struct tor_outbox *ob, int table_idx,
    uint32_t col);

/* The topic for an aggregate type: the first matching route, else
 * topic_template with ${aggregate_type} replaced; NULL when neither gives a
 * valid topic name.  The result is valid until the next call. */
const char *tor_outbox_route(struct tor_outbox *ob, const uint8_t *type,
    size_t type_len);

enum {
	TOR_OUTBOX_MAPPED = 0,  /* msg is ready (possibly for the dead-letter topic) */
	TOR_OUTBOX_SKIPPED = 1, /* unrouted, and outbox.unrouted = skip */
};

/* Maps one inserted row of a bound table into msg, applying outbox.unrouted
 * to a row that no route takes (a NULL aggregate type included).  Returns
 * TOR_OUTBOX_MAPPED, TOR_OUTBOX_SKIPPED, or -1: unrouted = fail ("no route
 * for aggregate type 'x' (row <pos>)", non-printable bytes escaped), a table
 * not bound yet, or a configured column missing from a partial row image
 * ("schema.table.column: not in the row image; binlog_row_image must be
 * FULL"). */
int tor_outbox_map(struct tor_outbox *ob, int table_idx,
    const struct tor_value *values, const struct tor_row_origin *origin,
    struct tor_message *msg, tor_err *err);

/* A copy of msg that owns its bytes (one block: free() it), for a row that
 * must wait: an XA transaction's, until its commit.  NULL when out of
 * memory. */
struct tor_message *tor_outbox_message_copy(const struct tor_message *msg);

/* The bytes tor_outbox_message_copy allocates for msg. */
size_t tor_outbox_copy_size(const struct tor_message *msg);

/* The topics msg goes to: with outbox.route = all every distinct topic of
 * the routes its tor.type matches (msg->topic first), else msg->topic
 * alone.  Returns their number (at least 1); *topics is valid until the
 * next call of this or of tor_outbox_map. */
size_t tor_outbox_topics(struct tor_outbox *ob, const struct tor_message *msg,
    const char *const **topics);

/* Applies outbox.unrouted to a mapped message that cannot go where it was
 * routed, `why` saying so (e.g. its partition is not one of the topic's):
 * TOR_OUTBOX_SKIPPED, TOR_OUTBOX_MAPPED with msg->topic set to the
 * dead-letter topic, its partition the key's and header tor.error = why,
 * or -1 with "<why> (row <pos>)". */
int tor_outbox_unroutable(struct tor_outbox *ob, struct tor_message *msg,
    const char *why, const struct tor_row_origin *origin, tor_err *err);

/* Points msg's tor.pos, tor.epoch and tor.ts at origin's (the transaction
 * that publishes the row now).  Valid until the next call of this or of
 * tor_outbox_map. */
void tor_outbox_restamp(struct tor_outbox *ob, struct tor_message *msg,
    const struct tor_row_origin *origin);

/* Redirects an already-mapped message that the sink refused as too large,
 * following outbox.unrouted: TOR_OUTBOX_MAPPED with msg->topic set to the
 * dead-letter topic (key and headers kept, value NULL since it is what was
 * too large, plus header tor.error = "message too large (N bytes)", N being
 * key + value + header names and values), TOR_OUTBOX_SKIPPED, or -1 with an
 * error naming the row's position and size.  A message that is still too
 * large for the dead-letter topic (it already carries tor.error) fails. */
int tor_outbox_oversized(struct tor_outbox *ob, struct tor_message *msg,
    const struct tor_row_origin *origin, tor_err *err);

#endif
