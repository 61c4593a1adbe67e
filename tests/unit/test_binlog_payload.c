/*
 * The TRANSACTION_PAYLOAD reader (src/binlog_payload.c) against zstd
 * frames written by hand: a raw block for an inner event's header, then
 * RLE blocks (one byte repeated up to 128 KiB each, four bytes of input
 * apiece) for its body.  That is how a few KB of input describe an inner
 * event of many MiB, as a column of zeros compresses on a real server, and
 * what the reader's memory is measured against (tests/unit/alloc_probe.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zstd.h>

#include "tor/binlog_decode.h"
#include "tor/binlog_payload.h"
#include "tor/buf.h"

#include "alloc_probe.h"
#include "buf_put.h"

#define RLE_BLOCK_MAX (128u << 10)

/* The header of a zstd frame without a content size, whose window is
 * 2^window_log bytes. */
static void
frame_start(struct tor_buf *f, unsigned int window_log)
{
	buf_le(f, ZSTD_MAGICNUMBER, 4);
	buf_le(f, 0x00, 1);                     /* no size, no checksum */
	buf_le(f, (window_log - 10) << 3, 1);
}

static void
frame_raw(struct tor_buf *f, const void *p, size_t n)
{
	buf_le(f, n << 3, 3);
	buf_put(f, p, n);
}

static void
frame_rle(struct tor_buf *f, uint8_t byte, size_t n)
{
	while (n > 0) {
		size_t k = n < RLE_BLOCK_MAX ? n : RLE_BLOCK_MAX;

		buf_le(f, k << 3 | 1 << 1, 3);
		buf_le(f, byte, 1);
		n -= k;
	}
}

/* An empty raw block that ends the frame. */
static void
frame_end(struct tor_buf *f)
{
	buf_le(f, 1, 3);
}

/* An inner event's common header: type, and size in bytes. */
static void
frame_event_header(struct tor_buf *f, uint8_t type, uint64_t size)
{
	struct tor_buf h = { 0 };

	buf_le(&h, 1700000000, 4);
	buf_le(&h, type, 1);
	buf_le(&h, 7, 4);
	buf_le(&h, size, 4);
	buf_le(&h, 0, 4);
	buf_le(&h, 0, 2);
	frame_raw(f, h.data, h.len);
	tor_buf_free(&h);
}

/* One field of a payload's header: type, length, packed value. */
static void
payload_field(struct tor_buf *b, uint64_t type, uint64_t v)
{
	struct tor_buf value = { 0 };

	buf_packed(&value, v);
	buf_packed(b, type);
	buf_packed(b, value.len);
	buf_put(b, value.data, value.len);
	tor_buf_free(&value);
}

/* The body of a TRANSACTION_PAYLOAD event around data. */
static void
payload_body(struct tor_buf *b, unsigned int compression, uint64_t usize,
    const struct tor_buf *data)
{
	payload_field(b, 2, compression);
	if (compression == TOR_PAYLOAD_ZSTD)
		payload_field(b, 3, usize);
	payload_field(b, 1, data->len);
	buf_packed(b, 0);
	buf_put(b, data->data, data->len);
}

static void
start_payload(struct tor_payload *p, const struct tor_buf *body)
{
	struct tor_event ev = { .type = TOR_EV_MYSQL_TRANSACTION_PAYLOAD,
	    .body = body->data, .body_len = body->len };
	struct tor_payload_info info;
	tor_err err;

	if (tor_payload_parse(&ev, &info, &err) == -1)
		fail_msg("%s", err.msg);
	tor_payload_start(p, &info);
}

/* An inner event of 64 MiB from 2 KB of input, in two frames (the first
 * ends 100 bytes short of it).  The buffer it is read into grew by
 * doubling to twice the event (a 1 GiB event, the largest a server
 * writes, took 2 GiB from 32 KB), and kept that size for ever; it
 * may be the event and one zstd block at most, and is released once the
 * payload has been read. */
static void
test_payload_buffer_fits_event_and_is_released(void **state)
{
	const size_t size = 64u << 20;
	struct tor_buf frame = { 0 }, body = { 0 };
	struct tor_payload *p = tor_payload_new();
	const uint8_t *raw;
	size_t len, largest, held;
	tor_err err;

	(void)state;
	assert_non_null(p);
	frame_start(&frame, 17);
	frame_event_header(&frame, TOR_EV_WRITE_ROWS_V2, size);
	frame_rle(&frame, 0xab, size - 19 - 100);
	frame_end(&frame);
	frame_start(&frame, 17);
	frame_rle(&frame, 0xab, 100);
	frame_end(&frame);
	payload_body(&body, TOR_PAYLOAD_ZSTD, size, &frame);
	alloc_probe_start();
	start_payload(p, &body);
	if (tor_payload_next(p, &raw, &len, &err) != 1)
		fail_msg("%s", err.msg);
	assert_int_equal(len, size);
	assert_int_equal(raw[4], TOR_EV_WRITE_ROWS_V2);
	assert_int_equal(raw[size - 1], 0xab);
	largest = alloc_probe.largest;
	if (tor_payload_next(p, &raw, &len, &err) != 0)
		fail_msg("%s", err.msg);
	held = alloc_probe_held();
	alloc_probe_stop();
	printf("  payload of %zu bytes, one event of %zu: largest allocation "
	    "%zu, %zu held once read\n", body.len, size, largest, held);
	assert_true(largest <= size + ZSTD_DStreamOutSize());
	assert_true(held <= TOR_PAYLOAD_KEEP);
	tor_buf_free(&frame);
	tor_buf_free(&body);
	tor_payload_free(p);
}

/* A frame may ask for a window of 128 MiB (zstd's default limit, what
 * level 22 writes) with a few bytes; zstd's buffers for it were kept with
 * the stream for ever.  Released once the payload has been read, and the
 * next payload still reads. */
static void
test_payload_zstd_window_is_released(void **state)
{
	struct tor_buf frame = { 0 }, body = { 0 };
	struct tor_payload *p = tor_payload_new();
	const uint8_t *raw;
	size_t len, peak, held;
	tor_err err;

	(void)state;
	assert_non_null(p);
	frame_start(&frame, 27);
	frame_event_header(&frame, TOR_EV_XID, 27);
	frame_rle(&frame, 0, 8);
	frame_end(&frame);
	payload_body(&body, TOR_PAYLOAD_ZSTD, 27, &frame);
	alloc_probe_start();
	for (int round = 0; round < 2; round++) {
		start_payload(p, &body);
		if (tor_payload_next(p, &raw, &len, &err) != 1)
			fail_msg("%s", err.msg);
		assert_int_equal(len, 27);
		assert_int_equal(raw[4], TOR_EV_XID);
		if (tor_payload_next(p, &raw, &len, &err) != 0)
			fail_msg("%s", err.msg);
	}
	peak = alloc_probe.peak;
	held = alloc_probe_held();
	alloc_probe_stop();
	printf("  payload of %zu bytes with a 128 MiB window: peak %zu, %zu "
	    "held once read\n", body.len, peak, held);
	assert_true(peak >= (128u << 20));
	assert_true(held <= TOR_PAYLOAD_KEEP);
	tor_buf_free(&frame);
	tor_buf_free(&body);
	tor_payload_free(p);
}

/* An inner event that says it is larger than any event a server writes
 * is refused from its header, naming its type, offset and the limit,
 * before anything of that size is allocated. */
static void
test_payload_event_over_limit(void **state)
{
	struct tor_buf frame = { 0 }, body = { 0 };
	struct tor_payload *p = tor_payload_new();
	const uint8_t *raw;
	size_t len;
	tor_err err;

	(void)state;
	assert_non_null(p);
	frame_start(&frame, 17);
	frame_event_header(&frame, TOR_EV_WRITE_ROWS_V2,
	    (uint64_t)TOR_EVENT_MAX + 1);
	frame_rle(&frame, 0, 1000);
	frame_end(&frame);
	payload_body(&body, TOR_PAYLOAD_ZSTD, (uint64_t)TOR_EVENT_MAX * 2,
	    &frame);
	alloc_probe_start();
	start_payload(p, &body);
	assert_int_equal(tor_payload_next(p, &raw, &len, &err), -1);
	alloc_probe_stop();
	printf("  %s (largest allocation %zu)\n", err.msg,
	    alloc_probe.largest);
	assert_non_null(strstr(err.msg, "WRITE_ROWS event at offset 0"));
	assert_non_null(strstr(err.msg, "1073741825 bytes"));
	assert_non_null(strstr(err.msg, "1073741824"));
	assert_true(alloc_probe.largest < (1u << 20));
	tor_buf_free(&frame);
	tor_buf_free(&body);
	tor_payload_free(p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_payload_buffer_fits_event_and_is_released),
		cmocka_unit_test(test_payload_zstd_window_is_released),
		cmocka_unit_test(test_payload_event_over_limit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
