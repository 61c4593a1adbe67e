/*
 * A growable byte buffer: the one place where tor appends bytes of unknown
 * total length (rendered column values, JSON text).
 *
 * The buffer is a plain struct so callers can read data/len directly; it
 * grows by doubling, and a zeroed struct is an empty buffer that owns
 * nothing.  Appends never leave the buffer half-written: on failure data,
 * len and cap are unchanged.
 */
#ifndef TOR_BUF_H
#define TOR_BUF_H

#include <stddef.h>
#include <stdint.h>

struct tor_buf {
	uint8_t *data;          /* malloc'd, or NULL while cap is 0 */
	size_t len;             /* bytes in use */
	size_t cap;             /* bytes allocated */
};

/* Makes room for n more bytes after len.  Returns 0, or -1 when the size
 * overflows or memory runs out (the buffer is then unchanged). */
int tor_buf_reserve(struct tor_buf *b, size_t n);

/* The same for a buffer that will never hold more than most - 1 bytes (a
 * text with a bound): it does not double past most.  -1 also when len + n
 * would pass most - 1. */
int tor_buf_reserve_within(struct tor_buf *b, size_t n, size_t most);

/* Appends n bytes from p (p may be NULL when n is 0).  Returns 0 or -1 as
 * tor_buf_reserve. */
int tor_buf_append(struct tor_buf *b, const void *p, size_t n);

/* Appends printf-formatted text (no NUL is counted in len).  Returns 0 or
 * -1. */
int tor_buf_appendf(struct tor_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Appends v in decimal, zero-padded to at least min_digits digits (as
 * printf's "%0*llu"; at most 20).  Returns 0 or -1. */
int tor_buf_append_uint(struct tor_buf *b, uint64_t v, unsigned int min_digits);

/* Appends v in decimal, with a '-' when negative.  Returns 0 or -1. */
int tor_buf_append_int(struct tor_buf *b, int64_t v);

/* Forgets the contents but keeps the memory for reuse. */
void tor_buf_reset(struct tor_buf *b);

/* Releases the memory; the buffer is empty and reusable afterwards. */
void tor_buf_free(struct tor_buf *b);

#endif
