/*
 * MySQL GTID sets (include/tor/gtid_set.h).
 *
 * The representation is MySQL's own: per sid a sorted array of half-open
 * intervals that never touch, so that equal sets have equal arrays and the
 * binary form falls out of a walk over them.  Every insertion goes through
 * add_interval(), which finds the first interval that ends at or after the
 * new start, swallows the ones the new interval reaches, and leaves one.
 * Sets are small (a sid per server that ever wrote a transaction; a
 * handful of intervals each), so arrays and linear searches are enough.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tor/gtid_set.h"

void
tor_gtid_set_init(struct tor_gtid_set *s)
{
	memset(s, 0, sizeof(*s));
}

void
tor_gtid_set_free(struct tor_gtid_set *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->sids[i].iv);
	free(s->sids);
	tor_gtid_set_init(s);
}

static int
hex_value(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

size_t
tor_uuid_parse(const char *text, uint8_t uuid[16])
{
	size_t at = 0;

	for (int i = 0; i < 16; i++) {
		int hi, lo;

		if (i == 4 || i == 6 || i == 8 || i == 10) {
			if (text[at] != '-')
				return 0;
			at++;
		}
		if ((hi = hex_value((unsigned char)text[at])) < 0 ||
		    (lo = hex_value((unsigned char)text[at + 1])) < 0)
			return 0;
		uuid[i] = (uint8_t)(hi << 4 | lo);
		at += 2;
	}
	return at;
}

void
tor_uuid_format(const uint8_t u[16], char out[37])
{
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3], u[4], u[5],
	    u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

/* The sid of uuid, made (in byte order) when create; NULL when absent or
 * out of memory. */
static struct tor_gtid_sid *
find_sid(struct tor_gtid_set *s, const uint8_t uuid[16], bool create)
{
	size_t at = 0;
	int cmp = 1;

	while (at < s->n && (cmp = memcmp(s->sids[at].uuid, uuid, 16)) < 0)
		at++;
	if (at < s->n && cmp == 0)
		return &s->sids[at];
	if (!create)
		return NULL;
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 4;
		struct tor_gtid_sid *grown = realloc(s->sids,
		    cap * sizeof(*grown));

		if (grown == NULL)
			return NULL;
		s->sids = grown;
		s->cap = cap;
	}
	memmove(&s->sids[at + 1], &s->sids[at], (s->n - at) *
	    sizeof(s->sids[0]));
	memset(&s->sids[at], 0, sizeof(s->sids[0]));
	memcpy(s->sids[at].uuid, uuid, 16);
	s->n++;
	return &s->sids[at];
}

static const struct tor_gtid_sid *
find_sid_const(const struct tor_gtid_set *s, const uint8_t uuid[16])
{
	for (size_t i = 0; i < s->n; i++)
		if (memcmp(s->sids[i].uuid, uuid, 16) == 0)
			return &s->sids[i];
	return NULL;
}

/* Merges [start, end) into sid's intervals. */
static int
add_interval(struct tor_gtid_sid *sid, int64_t start, int64_t end)
{
	size_t first = 0, last;

	/* The first interval that ends at or after start: it and the ones
	 * after it that begin at or before end merge with the new one. */
	while (first < sid->n && sid->iv[first].end < start)
		first++;
	last = first;
	while (last < sid->n && sid->iv[last].start <= end) {
		if (sid->iv[last].start < start)
			start = sid->iv[last].start;
		if (sid->iv[last].end > end)
			end = sid->iv[last].end;
		last++;
	}
	if (last > first) {
		sid->iv[first].start = start;
		sid->iv[first].end = end;
		memmove(&sid->iv[first + 1], &sid->iv[last], (sid->n - last) *
		    sizeof(sid->iv[0]));
		sid->n -= last - first - 1;
		return 0;
	}
	if (sid->n == sid->cap) {
		size_t cap = sid->cap ? 2 * sid->cap : 4;
		struct tor_gtid_interval *grown = realloc(sid->iv,
		    cap * sizeof(*grown));

		if (grown == NULL)
			return -1;
		sid->iv = grown;
		sid->cap = cap;
	}
	memmove(&sid->iv[first + 1], &sid->iv[first], (sid->n - first) *
	    sizeof(sid->iv[0]));
	sid->iv[first].start = start;
	sid->iv[first].end = end;
	sid->n++;
	return 0;
}

int
tor_gtid_set_add_interval(struct tor_gtid_set *s, const uint8_t uuid[16],
    int64_t start, int64_t end, tor_err *err)
{
	struct tor_gtid_sid *sid;

	if (start < 1 || end <= start || end > TOR_GNO_MAX + 1)
		return tor_err_set(err, "GTID interval [%" PRId64 ", %" PRId64
		    ") is not within 1 to %" PRId64, start, end, TOR_GNO_MAX);
	if ((sid = find_sid(s, uuid, true)) == NULL ||
	    add_interval(sid, start, end) < 0)
		return tor_err_set(err, "GTID set: out of memory");
	return 0;
}

int
tor_gtid_set_add(struct tor_gtid_set *s, const uint8_t uuid[16], int64_t gno,
    tor_err *err)
{
	if (gno < 1 || gno > TOR_GNO_MAX)
		return tor_err_set(err, "GTID number %" PRId64 " is not within "
		    "1 to %" PRId64, gno, TOR_GNO_MAX);
	return tor_gtid_set_add_interval(s, uuid, gno, gno + 1, err);
}

int
tor_gtid_set_add_set(struct tor_gtid_set *s, const struct tor_gtid_set *src,
    tor_err *err)
{
	for (size_t i = 0; i < src->n; i++)
		for (size_t j = 0; j < src->sids[i].n; j++)
			if (tor_gtid_set_add_interval(s, src->sids[i].uuid,
			    src->sids[i].iv[j].start, src->sids[i].iv[j].end,
			    err) < 0)
				return -1;
	return 0;
}

/* A transaction number at *p: digits only, 1..TOR_GNO_MAX. */
static bool
parse_gno(const char **p, int64_t *gno)
{
	int64_t v = 0;

	if (!isdigit((unsigned char)**p))
		return false;
	for (; isdigit((unsigned char)**p); (*p)++) {
		if (v > (TOR_GNO_MAX - (**p - '0')) / 10)
			return false;
		v = v * 10 + (**p - '0');
	}
	*gno = v;
	return v >= 1;
}

static int
bad_set(const char *text, const char *at, const char *why, tor_err *err)
{
	return tor_err_set(err, "bad GTID set '%.300s': %s at offset %zu",
	    text, why, (size_t)(at - text));
}

/* One "uuid:interval[:interval...]" at *p. */
static int
parse_sid_part(struct tor_gtid_set *s, const char *text, const char **p,
    tor_err *err)
{
	uint8_t uuid[16];
	size_t used = tor_uuid_parse(*p, uuid);

	if (used == 0)
		return bad_set(text, *p, "expected a UUID like "
		    "3e11fa47-71ca-11e1-9e33-c80aa9429562", err);
	*p += used;
	if (**p != ':')
		return bad_set(text, *p, "expected ':' and transaction numbers "
		    "after the UUID", err);
	while (**p == ':') {
		int64_t start, end;

		(*p)++;
		if (isalpha((unsigned char)**p) || **p == '_')
			return bad_set(text, *p, "a tagged GTID (MySQL 8.4 "
			    "uuid:tag:n), which tor does not support", err);
		if (!parse_gno(p, &start))
			return bad_set(text, *p, "expected a transaction number "
			    "from 1 to 9223372036854775806", err);
		end = start;
		if (**p == '-') {
			(*p)++;
			if (!parse_gno(p, &end))
				return bad_set(text, *p, "expected the "
				    "interval's last transaction number", err);
			if (end < start)
				return bad_set(text, *p, "an interval that "
				    "ends before it starts", err);
		}
		if (tor_gtid_set_add_interval(s, uuid, start, end + 1, err) < 0)
			return -1;
	}
	return 0;
}

int
tor_gtid_set_parse(struct tor_gtid_set *s, const char *text, tor_err *err)
{
	const char *p = text;

	while (isspace((unsigned char)*p))
		p++;
	if (*p == '\0')
		return 0;
	for (;;) {
		if (parse_sid_part(s, text, &p, err) < 0)
			return -1;
		while (isspace((unsigned char)*p))
			p++;
		if (*p == '\0')
			return 0;
		if (*p != ',')
			return bad_set(text, p, "expected ',' or the end", err);
		p++;
		while (isspace((unsigned char)*p))
			p++;
	}
}

int
tor_gtid_set_format(const struct tor_gtid_set *s, char *buf, size_t cap)
{
	size_t at = 0;
	char uuid[37];

#define PUT(...) do { \
	int w_ = snprintf(at < cap ? buf + at : NULL, at < cap ? cap - at : 0, \
	    __VA_ARGS__); \
	at += (size_t)w_; \
} while (0)
	if (cap > 0)
		buf[0] = '\0';
	for (size_t i = 0; i < s->n; i++) {
		const struct tor_gtid_sid *sid = &s->sids[i];

		if (sid->n == 0)
			continue;
		tor_uuid_format(sid->uuid, uuid);
		PUT("%s%s", at > 0 ? "," : "", uuid);
		for (size_t j = 0; j < sid->n; j++) {
			if (sid->iv[j].end - 1 == sid->iv[j].start)
				PUT(":%" PRId64, sid->iv[j].start);
			else
				PUT(":%" PRId64 "-%" PRId64, sid->iv[j].start,
				    sid->iv[j].end - 1);
		}
	}
#undef PUT
	return (int)at;
}

/* The interval of sid holding gno, or NULL. */
static const struct tor_gtid_interval *
interval_of(const struct tor_gtid_sid *sid, int64_t gno)
{
	for (size_t i = 0; i < sid->n && sid->iv[i].start <= gno; i++)
		if (gno < sid->iv[i].end)
			return &sid->iv[i];
	return NULL;
}

bool
tor_gtid_set_contains(const struct tor_gtid_set *s, const uint8_t uuid[16],
    int64_t gno)
{
	const struct tor_gtid_sid *sid = find_sid_const(s, uuid);

	return sid != NULL && interval_of(sid, gno) != NULL;
}

bool
tor_gtid_set_is_subset(const struct tor_gtid_set *a,
    const struct tor_gtid_set *b)
{
	for (size_t i = 0; i < a->n; i++) {
		const struct tor_gtid_sid *sa = &a->sids[i];
		const struct tor_gtid_sid *sb;

		if (sa->n == 0)
			continue;
		if ((sb = find_sid_const(b, sa->uuid)) == NULL)
			return false;
		/* b's intervals never touch, so each of a's lies within one
		 * of b's or is not covered. */
		for (size_t j = 0; j < sa->n; j++) {
			const struct tor_gtid_interval *in =
			    interval_of(sb, sa->iv[j].start);

			if (in == NULL || in->end < sa->iv[j].end)
				return false;
		}
	}
	return true;
}

bool
tor_gtid_set_equal(const struct tor_gtid_set *a, const struct tor_gtid_set *b)
{
	return tor_gtid_set_is_subset(a, b) && tor_gtid_set_is_subset(b, a);
}

/* Adds to out the parts of [start, end) that sid (may be NULL) lacks. */
static int
add_missing(struct tor_gtid_set *out, const uint8_t uuid[16],
    const struct tor_gtid_sid *sid, int64_t start, int64_t end, tor_err *err)
{
	for (size_t i = 0; sid != NULL && i < sid->n && start < end; i++) {
		const struct tor_gtid_interval *iv = &sid->iv[i];

		if (iv->end <= start)
			continue;
		if (iv->start >= end)
			break;
		if (iv->start > start && tor_gtid_set_add_interval(out, uuid,
		    start, iv->start, err) < 0)
			return -1;
		start = iv->end;
	}
	if (start < end)
		return tor_gtid_set_add_interval(out, uuid, start, end, err);
	return 0;
}

int
tor_gtid_set_subtract(struct tor_gtid_set *out, const struct tor_gtid_set *a,
    const struct tor_gtid_set *b, tor_err *err)
{
	tor_gtid_set_free(out);
	for (size_t i = 0; i < a->n; i++) {
		const struct tor_gtid_sid *sa = &a->sids[i];
		const struct tor_gtid_sid *sb = find_sid_const(b, sa->uuid);

		for (size_t j = 0; j < sa->n; j++)
			if (add_missing(out, sa->uuid, sb, sa->iv[j].start,
			    sa->iv[j].end, err) < 0)
				return -1;
	}
	return 0;
}

/* err = before, the text of s (cut to fit), after. */
static int
set_error_naming(const char *before, const struct tor_gtid_set *s,
    const char *after, tor_err *err)
{
	char text[sizeof(err->msg)];

	tor_gtid_set_format(s, text, sizeof(text));
	return tor_err_set(err, "%s%s%s", before, text, after);
}

int
tor_gtid_set_resume_check(const struct tor_gtid_set *checkpoint,
    const struct tor_gtid_set *executed, const struct tor_gtid_set *purged,
    tor_err *err)
{
	struct tor_gtid_set diff;
	int rc = 0;

	tor_gtid_set_init(&diff);
	if (tor_gtid_set_subtract(&diff, checkpoint, executed, err) < 0)
		rc = -1;
	else if (diff.n > 0)
		rc = set_error_naming("the server lacks ", &diff,
		    " of the checkpoint", err);
	else if (tor_gtid_set_subtract(&diff, purged, checkpoint, err) < 0)
		rc = -1;
	else if (diff.n > 0)
		rc = set_error_naming("the server has purged ", &diff,
		    ", which the checkpoint lacks", err);
	tor_gtid_set_free(&diff);
	return rc;
}

static size_t
nonempty_sids(const struct tor_gtid_set *s)
{
	size_t n = 0;

	for (size_t i = 0; i < s->n; i++)
		n += s->sids[i].n > 0;
	return n;
}

size_t
tor_gtid_set_encoded_len(const struct tor_gtid_set *s)
{
	size_t len = 8;

	for (size_t i = 0; i < s->n; i++)
		if (s->sids[i].n > 0)
			len += 16 + 8 + 16 * s->sids[i].n;
	return len;
}

static uint8_t *
put_le(uint8_t *p, uint64_t v, size_t n)
{
	for (size_t i = 0; i < n; i++, v >>= 8)
		*p++ = (uint8_t)v;
	return p;
}

void
tor_gtid_set_encode(const struct tor_gtid_set *s, uint8_t *out)
{
	out = put_le(out, nonempty_sids(s), 8);
	for (size_t i = 0; i < s->n; i++) {
		const struct tor_gtid_sid *sid = &s->sids[i];

		if (sid->n == 0)
			continue;
		memcpy(out, sid->uuid, 16);
		out = put_le(out + 16, sid->n, 8);
		for (size_t j = 0; j < sid->n; j++) {
			out = put_le(out, (uint64_t)sid->iv[j].start, 8);
			out = put_le(out, (uint64_t)sid->iv[j].end, 8);
		}
	}
}

int
tor_gtid_set_decode(struct tor_gtid_set *s, const uint8_t *p, size_t n,
    tor_err *err)
{
	const uint8_t *end = p + n;
	uint64_t n_sids;

	if (n < 8)
		return tor_err_set(err, "GTID set: %zu bytes, too short for "
		    "its count", n);
	n_sids = tor_le_read(p, 8);
	p += 8;
	/* MySQL 8.4 puts a format byte in the top (and bottom) byte of the
	 * count when the set holds tagged GTIDs. */
	if (n_sids >> 56 != 0)
		return tor_err_set(err, "GTID set: format %u (tagged GTIDs, "
		    "MySQL 8.4), which tor does not support",
		    (unsigned)(n_sids >> 56));
	for (uint64_t i = 0; i < n_sids; i++) {
		uint64_t n_iv;
		int64_t last = 0;
		const uint8_t *uuid;

		if ((size_t)(end - p) < 16 + 8)
			return tor_err_set(err, "GTID set: sid %" PRIu64 " of %"
			    PRIu64 " cut short", i + 1, n_sids);
		uuid = p;
		n_iv = tor_le_read(p + 16, 8);
		p += 16 + 8;
		if (n_iv == 0 || n_iv > (size_t)(end - p) / 16)
			return tor_err_set(err, "GTID set: %" PRIu64 " intervals "
			    "where %zu bytes are left", n_iv,
			    (size_t)(end - p));
		for (uint64_t j = 0; j < n_iv; j++, p += 16) {
			int64_t start = (int64_t)tor_le_read(p, 8);
			int64_t stop = (int64_t)tor_le_read(p + 8, 8);

			if (start <= last || stop <= start)
				return tor_err_set(err, "GTID set: interval [%"
				    PRId64 ", %" PRId64 ") after %" PRId64
				    " (intervals must be ordered, apart and "
				    "not empty)", start, stop, last);
			if (tor_gtid_set_add_interval(s, uuid, start, stop,
			    err) < 0)
				return -1;
			last = stop;
		}
	}
	if (p != end)
		return tor_err_set(err, "GTID set: %zu bytes after its last "
		    "sid", (size_t)(end - p));
	return 0;
}

int
tor_gtid_set_from_previous_gtids(struct tor_gtid_set *s,
    const struct tor_event *ev, tor_err *err)
{
	if (ev->type != TOR_EV_MYSQL_PREVIOUS_GTIDS)
		return tor_err_set(err, "expected a PREVIOUS_GTIDS event, got "
		    "type %u", ev->type);
	if (tor_gtid_set_decode(s, ev->body, ev->body_len, err) < 0) {
		tor_err_prefix(err, "PREVIOUS_GTIDS event at %" PRIu32 ": ",
		    ev->next_pos);
		return -1;
	}
	return 0;
}

int
tor_gtid_set_dump_request(const struct tor_gtid_set *s, uint16_t flags,
    uint32_t server_id, const char *file, uint64_t pos, uint8_t **out,
    size_t *len, tor_err *err)
{
	size_t name = strlen(file), data = tor_gtid_set_encoded_len(s);
	uint8_t *p;

	/* The server reads the name into a buffer of FN_REFLEN (512). */
	if (name > 511)
		return tor_err_set(err, "binlog file name of %zu bytes", name);
	if (data > UINT32_MAX - 64)
		return tor_err_set(err, "GTID set of %zu bytes", data);
	*len = 1 + 2 + 4 + 4 + name + 8 + 4 + data;
	if ((*out = p = malloc(*len)) == NULL)
		return tor_err_set(err, "out of memory");
	*p++ = TOR_COM_BINLOG_DUMP_GTID;
	p = put_le(p, flags, 2);
	p = put_le(p, server_id, 4);
	p = put_le(p, name, 4);
	memcpy(p, file, name);
	p = put_le(p + name, pos, 8);
	p = put_le(p, data, 4);
	tor_gtid_set_encode(s, p);
	return 0;
}
