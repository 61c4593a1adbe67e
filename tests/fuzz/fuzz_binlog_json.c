/*
 * libFuzzer target for the MySQL binary JSON renderer (src/binlog_json.c).
 *
 * Besides the sanitizers' checks, it holds the renderer to its contract:
 * failure leaves the buffer untouched with a message set, and grown no
 * further than its bound, and success appends text that is syntactically
 * valid JSON (checked by a small parser here) and no longer than the
 * output budget.
 *
 * Build: clang -std=c11 -D_GNU_SOURCE -g -O1 -Iinclude
 *        -fsanitize=fuzzer,address,undefined tests/fuzz/fuzz_binlog_json.c
 *        src/binlog_json.c src/buf.c src/err.c -lm
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tor/binlog_json.h"

struct cursor {
	const uint8_t *p, *end;
};

static int parse_value(struct cursor *, int);

static void
skip_ws(struct cursor *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' ||
	    *c->p == '\t' || *c->p == '\r'))
		c->p++;
}

static int
take(struct cursor *c, char ch)
{
	skip_ws(c);
	if (c->p < c->end && *c->p == (uint8_t)ch) {
		c->p++;
		return 1;
	}
	return 0;
}

static int
is_hex(uint8_t ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
	    (ch >= 'A' && ch <= 'F');
}

static int
parse_string(struct cursor *c)
{
	int i;

	if (!take(c, '"'))
		return 0;
	while (c->p < c->end && *c->p != '"') {
		if (*c->p < 0x20)
			return 0;
		if (*c->p++ != '\\')
			continue;
		if (c->p >= c->end)
			return 0;
		if (*c->p == 'u') {
			c->p++;
			for (i = 0; i < 4; i++)
				if (c->p >= c->end || !is_hex(*c->p++))
					return 0;
		} else if (strchr("\"\\/bfnrt", *c->p) != NULL && *c->p != 0)
			c->p++;
		else
			return 0;
	}
	return take(c, '"');
}

static int
digits(struct cursor *c)
{
	const uint8_t *start = c->p;

	while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
		c->p++;
	return c->p > start;
}

static int
parse_number(struct cursor *c)
{
	if (c->p < c->end && *c->p == '-')
		c->p++;
	if (c->p < c->end && *c->p == '0')
		c->p++;
	else if (!digits(c))
		return 0;
	if (c->p < c->end && *c->p == '.') {
		c->p++;
		if (!digits(c))
			return 0;
	}
	if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
		c->p++;
		if (c->p < c->end && (*c->p == '-' || *c->p == '+'))
			c->p++;
		if (!digits(c))
			return 0;
	}
	return 1;
}

static int
parse_word(struct cursor *c, const char *w)
{
	size_t n = strlen(w);

	if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n) != 0)
		return 0;
	c->p += n;
	return 1;
}

static int
parse_value(struct cursor *c, int depth)
{
	if (depth > TOR_JSON_MAX_DEPTH)
		return 0;
	skip_ws(c);
	if (c->p >= c->end)
		return 0;
	switch (*c->p) {
	case '{':
		c->p++;
		if (take(c, '}'))
			return 1;
		do {
			if (!parse_string(c) || !take(c, ':') ||
			    !parse_value(c, depth + 1))
				return 0;
		} while (take(c, ','));
		return take(c, '}');
	case '[':
		c->p++;
		if (take(c, ']'))
			return 1;
		do {
			if (!parse_value(c, depth + 1))
				return 0;
		} while (take(c, ','));
		return take(c, ']');
	case '"':
		return parse_string(c);
	case 't':
		return parse_word(c, "true");
	case 'f':
		return parse_word(c, "false");
	case 'n':
		return parse_word(c, "null");
	default:
		return parse_number(c);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tor_buf out = { 0 };
	/* Every fourth size bounds the text by the input's size: most
	 * documents come out longer, and reach the refusal of a text past
	 * its bound (TOR_JSON_TEXT_MAX is out of the fuzzer's reach). */
	size_t max_text = size % 4 == 0 ? size : TOR_JSON_TEXT_MAX;
	struct cursor c;
	tor_err err;

	err.msg[0] = '\0';
	/* Something already in the buffer, as the row decoder will have. */
	if (tor_buf_append(&out, "x", 1) == -1)
		abort();
	if (tor_json_render(data, size, max_text, &out, &err) == -1) {
		if (out.len != 1 || err.msg[0] == '\0' ||
		    (out.cap > 64 && out.cap > max_text + 2))
			abort();
	} else {
		if (out.len - 1 > 16 * size + 1024 || out.len - 1 > max_text)
			abort();
		c.p = out.data + 1;
		c.end = out.data + out.len;
		if (!parse_value(&c, 0))
			abort();
		skip_ws(&c);
		if (c.p != c.end)
			abort();
	}
	tor_buf_free(&out);
	return 0;
}
