/*
 * Test input written into a tor_buf: little-endian integers, bytes, and
 * packed (length-encoded) integers in their shortest form, for events too
 * big or too varied for a fixed array.  Static inline, so that each test
 * binary takes only what it uses.
 */
#ifndef TOR_TEST_BUF_PUT_H
#define TOR_TEST_BUF_PUT_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tor/buf.h"

static inline void
buf_put(struct tor_buf *b, const void *p, size_t n)
{
	assert_int_equal(tor_buf_append(b, p, n), 0);
}

static inline void
buf_le(struct tor_buf *b, uint64_t v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t c = (uint8_t)(v >> (8 * i));

		buf_put(b, &c, 1);
	}
}

static inline void
buf_packed(struct tor_buf *b, uint64_t v)
{
	if (v < 251) {
		buf_le(b, v, 1);
	} else if (v < (1u << 16)) {
		buf_le(b, 252, 1);
		buf_le(b, v, 2);
	} else if (v < (1u << 24)) {
		buf_le(b, 253, 1);
		buf_le(b, v, 3);
	} else {
		buf_le(b, 254, 1);
		buf_le(b, v, 8);
	}
}

#endif
