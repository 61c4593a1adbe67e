/*
 * libFuzzer target for MySQL's TRANSACTION_PAYLOAD: the header fields
 * (tor_payload_parse), the streaming reader of its inner events
 * (tor_payload_next), and each inner event's split (tor_event_parse).
 *
 * Byte 0 picks the form of the rest: even, the rest is a payload event's
 * body as it comes (fields, end mark, data); odd, the rest is inner events
 * that are wrapped here in a valid header, zstd-compressed when bit 1 is
 * set, else stored, so that the fuzzer reaches the event iteration behind
 * a frame it could not forge.  Seeds (tests/fuzz/corpus/fuzz_payload) are
 * a real transaction's events from the fixture binlog, its compressed
 * payload, and payloads at the reader's limits (limit-*,
 * tests/tools/make_limit_seeds.py: an inner event past 1 GiB, one past
 * what the handle keeps, a 128 MiB window).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "tor/binlog_decode.h"
#include "tor/binlog_payload.h"

static struct tor_payload *payload;

static void
put_packed(uint8_t *b, size_t *n, uint64_t v)
{
	if (v < 251) {
		b[(*n)++] = (uint8_t)v;
		return;
	}
	b[(*n)++] = 254;
	for (int i = 0; i < 8; i++)
		b[(*n)++] = (uint8_t)(v >> (8 * i));
}

static void
put_field(uint8_t *b, size_t *n, uint64_t type, uint64_t v)
{
	put_packed(b, n, type);
	put_packed(b, n, v < 251 ? 1 : 9);
	put_packed(b, n, v);
}

/* A payload body around events: zstd or stored. */
static uint8_t *
wrap(const uint8_t *events, size_t len, int zstd, size_t *body_len)
{
	size_t cap = ZSTD_compressBound(len), n = 0, data_len = len;
	uint8_t *data = (uint8_t *)events, *body;

	if (zstd) {
		if ((data = malloc(cap)) == NULL)
			return NULL;
		data_len = ZSTD_compress(data, cap, events, len, 1);
		if (ZSTD_isError(data_len)) {
			free(data);
			return NULL;
		}
	}
	if ((body = malloc(40 + data_len)) != NULL) {
		put_field(body, &n, 2, zstd ? TOR_PAYLOAD_ZSTD :
		    TOR_PAYLOAD_NONE);
		if (zstd)
			put_field(body, &n, 3, len);
		put_field(body, &n, 1, data_len);
		put_packed(body, &n, 0);
		memcpy(body + n, data, data_len);
		*body_len = n + data_len;
	}
	if (data != events)
		free(data);
	return body;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tor_format fmt;
	struct tor_payload_info info;
	struct tor_event ev, inner;
	const uint8_t *raw;
	uint8_t *body;
	size_t len, body_len;
	tor_err err;

	if (size < 1)
		return 0;
	if (payload == NULL && (payload = tor_payload_new()) == NULL)
		abort();
	if (data[0] & 1) {
		if ((body = wrap(data + 1, size - 1, data[0] & 2, &body_len)) ==
		    NULL)
			return 0;
	} else {
		/* A copy of its own, so that ASan sees a read past it. */
		body_len = size - 1;
		if ((body = malloc(body_len + 1)) == NULL)
			return 0;
		memcpy(body, data + 1, body_len);
	}
	memset(&ev, 0, sizeof(ev));
	ev.type = TOR_EV_MYSQL_TRANSACTION_PAYLOAD;
	ev.body = body;
	ev.body_len = body_len;
	tor_format_init(&fmt, false);
	if (tor_payload_parse(&ev, &info, &err) == 0) {
		tor_payload_start(payload, &info);
		while (tor_payload_next(payload, &raw, &len, &err) == 1)
			(void)tor_event_parse(raw, len, &fmt, &inner, &err);
	}
	free(body);
	return 0;
}
