/*
 * The inner events of a TRANSACTION_PAYLOAD, decompressed as they are read.
 */
#include "tor/binlog_payload.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#define HEADER_LEN 19           /* an inner event's common header */
#define TYPE_TEXT 16

struct tor_payload {
	struct tor_payload_info info;
	ZSTD_DStream *zs;
	ZSTD_inBuffer in;
	bool frame_end;                 /* the last zstd call ended a frame */

	/* Decompressed bytes not handed out yet: buf[start, end).  For an
	 * uncompressed payload, buf is unused and start/end count into
	 * info.data. */
	uint8_t *buf;
	size_t cap, start, end;
	uint64_t produced;              /* bytes out of zstd so far */
	uint64_t offset;                /* of the event handed out last */
	size_t handed;                  /* its length: dropped at the next call */
};

struct tor_payload *
tor_payload_new(void)
{
	return calloc(1, sizeof(struct tor_payload));
}

void
tor_payload_free(struct tor_payload *p)
{
	if (p == NULL)
		return;
	ZSTD_freeDStream(p->zs);
	free(p->buf);
	free(p);
}

/* Lets go of a buffer or a zstd window grown for an outsized event, so
 * that one event does not set the reader's memory for good. */
static void
release_outsized(struct tor_payload *p)
{
	if (p->cap > TOR_PAYLOAD_KEEP) {
		free(p->buf);
		p->buf = NULL;
		p->cap = p->start = p->end = 0;
	}
	if (p->zs != NULL && ZSTD_sizeof_DStream(p->zs) > TOR_PAYLOAD_KEEP) {
		ZSTD_freeDStream(p->zs);
		p->zs = NULL;
	}
}

void
tor_payload_start(struct tor_payload *p, const struct tor_payload_info *info)
{
	release_outsized(p);
	p->info = *info;
	p->in = (ZSTD_inBuffer){ info->data, info->data_len, 0 };
	p->frame_end = false;
	p->start = p->end = 0;
	p->produced = 0;
	p->offset = 0;
	p->handed = 0;
	if (p->zs != NULL)
		ZSTD_DCtx_reset(p->zs, ZSTD_reset_session_only);
}

uint64_t
tor_payload_offset(const struct tor_payload *p)
{
	return p->offset;
}

/* Room for at least one zstd output block after end, the bytes kept moved
 * to the front first.  The buffer grows only as data comes out, so a size
 * field that lies cannot make it large; it doubles, but never past the
 * need bytes wanted from start (the event being read) and one block. */
static int
make_room(struct tor_payload *p, size_t need, tor_err *err)
{
	size_t chunk = ZSTD_DStreamOutSize(), want, most;
	uint8_t *n;

	if (p->cap - p->end >= chunk)
		return 0;
	if (p->start > 0) {
		memmove(p->buf, p->buf + p->start, p->end - p->start);
		p->end -= p->start;
		p->start = 0;
		if (p->cap - p->end >= chunk)
			return 0;
	}
	want = p->cap * 2 > p->end + chunk ? p->cap * 2 : p->end + chunk;
	most = need > p->end + chunk ? need : p->end + chunk;
	if (want > most)
		want = most;
	if ((n = realloc(p->buf, want)) == NULL)
		return tor_err_set(err, "TRANSACTION_PAYLOAD: out of memory for "
		    "%zu bytes of events", want);
	p->buf = n;
	p->cap = want;
	return 0;
}

/* Decompresses until need bytes are kept or the data ends: 1 when they
 * are there, 0 when the data ended first, -1 on a zstd error. */
static int
fill(struct tor_payload *p, size_t need, tor_err *err)
{
	if (p->zs == NULL && (p->zs = ZSTD_createDStream()) == NULL)
		return tor_err_set(err, "TRANSACTION_PAYLOAD: out of memory "
		    "for a zstd stream");
	while (p->end - p->start < need) {
		ZSTD_outBuffer out;
		size_t before, in_before, rc;

		if (p->in.pos == p->in.size && p->frame_end)
			return 0;
		if (make_room(p, need, err) == -1)
			return -1;
		out = (ZSTD_outBuffer){ p->buf, p->cap, p->end };
		before = p->end;
		in_before = p->in.pos;
		rc = ZSTD_decompressStream(p->zs, &out, &p->in);
		if (ZSTD_isError(rc))
			return tor_err_set(err, "TRANSACTION_PAYLOAD: zstd: %s "
			    "(at compressed byte %zu of %zu)",
			    ZSTD_getErrorName(rc), p->in.pos, p->in.size);
		p->end = out.pos;
		p->produced += out.pos - before;
		p->frame_end = rc == 0;
		/* zstd wants input the event does not have. */
		if (out.pos == before && p->in.pos == in_before &&
		    p->in.pos == p->in.size)
			return 0;
	}
	return 1;
}

/* For messages: the type's name, or its number in buf. */
static const char *
type_text(uint8_t type, char buf[TYPE_TEXT])
{
	const char *n = tor_event_name(type);

	if (n != NULL)
		return n;
	snprintf(buf, TYPE_TEXT, "type %u", type);
	return buf;
}

static uint32_t
le32(const uint8_t *b)
{
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
	    (uint32_t)b[3] << 24;
}

static int next_event(struct tor_payload *, const uint8_t **, size_t *,
    tor_err *);

int
tor_payload_next(struct tor_payload *p, const uint8_t **raw, size_t *len,
    tor_err *err)
{
	int rc = next_event(p, raw, len, err);

	if (rc != 1)
		release_outsized(p);
	return rc;
}

static int
next_event(struct tor_payload *p, const uint8_t **raw, size_t *len,
    tor_err *err)
{
	bool zstd = p->info.compression == TOR_PAYLOAD_ZSTD;
	const uint8_t *at;
	uint64_t left;
	uint32_t size;
	uint8_t type;
	char tname[TYPE_TEXT];
	int rc;

	p->start += p->handed;
	p->offset += p->handed;
	p->handed = 0;
	if (!zstd)
		p->end = p->info.data_len;
	else if ((rc = fill(p, 1, err)) < 0)
		return -1;
	if (p->start == p->end) {
		if (zstd && !p->frame_end)
			return tor_err_set(err, "TRANSACTION_PAYLOAD: the zstd "
			    "data ends inside its frame, after %llu bytes of "
			    "events", (unsigned long long)p->produced);
		if (p->offset != p->info.uncompressed_size)
			return tor_err_set(err, "TRANSACTION_PAYLOAD: %llu bytes "
			    "of events, the event says %llu",
			    (unsigned long long)p->offset,
			    (unsigned long long)p->info.uncompressed_size);
		return 0;
	}
	if (zstd && (rc = fill(p, HEADER_LEN, err)) < 0)
		return -1;
	if (p->end - p->start < HEADER_LEN)
		return tor_err_set(err, "TRANSACTION_PAYLOAD: %zu bytes at "
		    "offset %llu cannot hold an event header",
		    p->end - p->start, (unsigned long long)p->offset);
	at = (zstd ? p->buf : p->info.data) + p->start;
	type = at[4];
	size = le32(at + 9);
	left = p->info.uncompressed_size > p->offset ?
	    p->info.uncompressed_size - p->offset : 0;
	if (size > TOR_EVENT_MAX)
		return tor_err_set(err, "TRANSACTION_PAYLOAD: %s event at offset "
		    "%llu says it is %u bytes, more than the %u of the largest "
		    "event a server writes", type_text(type, tname),
		    (unsigned long long)p->offset, size, TOR_EVENT_MAX);
	if (size < HEADER_LEN || size > left)
		return tor_err_set(err, "TRANSACTION_PAYLOAD: %s event at offset "
		    "%llu says it is %u bytes (%llu left of %llu)",
		    type_text(type, tname), (unsigned long long)p->offset, size,
		    (unsigned long long)left,
		    (unsigned long long)p->info.uncompressed_size);
	if (zstd && (rc = fill(p, size, err)) < 0)
		return -1;
	if (p->end - p->start < size)
		return tor_err_set(err, "TRANSACTION_PAYLOAD: %s event at offset "
		    "%llu is cut off (%zu of its %u bytes)",
		    type_text(type, tname), (unsigned long long)p->offset,
		    p->end - p->start, size);
	*raw = (zstd ? p->buf : p->info.data) + p->start;
	*len = size;
	p->handed = size;
	return 1;
}
