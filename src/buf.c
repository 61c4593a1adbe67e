/*
 * Growable byte buffer (see include/tor/buf.h).
 *
 * Capacity doubles so that n appends cost O(n) copies in total; every size
 * computation is checked for overflow because lengths often come from
 * untrusted input.  One spare byte is always kept after len so appendf can
 * let vsnprintf write its NUL without a second allocation.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tor/buf.h"

int
tor_buf_reserve(struct tor_buf *b, size_t n)
{
	return tor_buf_reserve_within(b, n, SIZE_MAX);
}

int
tor_buf_reserve_within(struct tor_buf *b, size_t n, size_t most)
{
	size_t need, cap;
	uint8_t *p;

	if (n > SIZE_MAX - b->len - 1)
		return -1;
	need = b->len + n + 1;
	if (need <= b->cap)
		return 0;
	if (need > most)
		return -1;
	cap = b->cap < 64 ? 64 : b->cap;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	if (cap > most)
		cap = most;
	if ((p = realloc(b->data, cap)) == NULL)
		return -1;
	b->data = p;
	b->cap = cap;
	return 0;
}

int
tor_buf_append(struct tor_buf *b, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	if (tor_buf_reserve(b, n) == -1)
		return -1;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

int
tor_buf_appendf(struct tor_buf *b, const char *fmt, ...)
{
	va_list ap;
	size_t room = b->cap > b->len ? b->cap - b->len : 0;
	int n;

	/* Most texts fit the room already there: one formatting pass. */
	va_start(ap, fmt);
	n = vsnprintf(room > 0 ? (char *)b->data + b->len : NULL, room, fmt,
	    ap);
	va_end(ap);
	if (n < 0)
		return -1;
	if ((size_t)n >= room) {
		if (tor_buf_reserve(b, (size_t)n) == -1)
			return -1;
		va_start(ap, fmt);
		vsnprintf((char *)b->data + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
	return 0;
}

int
tor_buf_append_uint(struct tor_buf *b, uint64_t v, unsigned int min_digits)
{
	char digits[20];
	size_t n = 0;

	do {
		digits[sizeof(digits) - ++n] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	if (min_digits > sizeof(digits))
		min_digits = sizeof(digits);
	while (n < min_digits)
		digits[sizeof(digits) - ++n] = '0';
	return tor_buf_append(b, digits + sizeof(digits) - n, n);
}

int
tor_buf_append_int(struct tor_buf *b, int64_t v)
{
	uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

	if (v < 0 && tor_buf_append(b, "-", 1) == -1)
		return -1;
	return tor_buf_append_uint(b, mag, 1);
}

void
tor_buf_reset(struct tor_buf *b)
{
	b->len = 0;
}

void
tor_buf_free(struct tor_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}
