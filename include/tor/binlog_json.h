/*
 * MySQL binary JSON to JSON text.
 *
 * MySQL 5.7+ stores a JSON column in row events in its own binary format
 * (sql-common/json_binary.h describes it); the relay publishes JSON text.
 * The text is what `SELECT json_col` prints on MySQL 8: ", " between members
 * and elements, ": " after keys, doubles in MySQL's shortest form ("3.14",
 * "1e100", "2.0"), DECIMAL as its exact number, DATE/TIME/DATETIME/TIMESTAMP
 * as quoted strings with six fraction digits, other opaque MySQL values as
 * "base64:type<N>:<data>".
 *
 * The input is untrusted: every offset and length is checked against the
 * enclosing value, nesting is capped at TOR_JSON_MAX_DEPTH, and the output
 * is capped at a small multiple of the input so that a document whose
 * entries all point at the same sub-value cannot blow up exponentially,
 * and at the caller's bound (TOR_JSON_TEXT_MAX for a column).
 */
#ifndef TOR_BINLOG_JSON_H
#define TOR_BINLOG_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "tor/buf.h"
#include "tor/err.h"

/* MySQL refuses documents nested deeper than this; so do we. */
#define TOR_JSON_MAX_DEPTH 100

/* The longest text of one JSON value: 1 GiB.  MySQL sends no value
 * longer than max_allowed_packet (at most 1 GiB) to a client, so no SELECT
 * prints a longer JSON text than this. */
#define TOR_JSON_TEXT_MAX (1u << 30)

/* Appends the JSON text of one binary JSON value (the bytes of a JSON column
 * in a row event) to out, at most max_text bytes of it (and at most 16
 * times len and 1 KB).  An empty value (len 0, written by MySQL for '' in
 * non-strict mode) renders as null, as MySQL itself reads it.
 *
 * Returns 0, or -1 with err set when the value is malformed, its text
 * longer than allowed, or memory runs out; out is then left as it was
 * before the call (nothing half-written), and never grew past max_text
 * bytes more than it held. */
int tor_json_render(const uint8_t *data, size_t len, size_t max_text,
    struct tor_buf *out, tor_err *err);

/* Appends s (n bytes, UTF-8 passing through) to out as a JSON string:
 * quotes, backslash and control characters escaped.  -1 when out of
 * memory. */
int tor_json_quote(struct tor_buf *out, const uint8_t *s, size_t n);

#endif
