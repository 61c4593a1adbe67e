/*
 * libFuzzer target for the outbox mapping (src/outbox.c), driven the way
 * the relay drives it: a stream of binlog events goes through the
 * source-transaction reader (src/reader.c), and the reader's callbacks
 * collect the messages.  No server, broker or Redis is involved.
 *
 * Input: four knob bytes, then records [type][flags][len lo][len hi][body].
 * Each body is wrapped in a common header (its size, its position in one
 * synthetic binlog file, a timestamp; flags bit 0 zeroes log_pos, as MariaDB
 * 11.4 does inside transactions, the other bits go to the header's flags)
 * and, while the stream has checksums (knob, then what each
 * FORMAT_DESCRIPTION says), a CRC32: the fuzzer works on event bodies, not
 * on framing the decoder target covers already.  A record of type 0 is a
 * break: the stream is reopened where tor_reader_resume() says, with the
 * artificial ROTATE and the FORMAT_DESCRIPTION a server sends first.
 *
 * Knobs: byte 0 bits 0-1 outbox.unrouted (fail, skip, dlq, dlq), bit 2 a
 * topic_template, bit 3 no routes (with a template), bit 4 no id column,
 * bit 5 columns from "information_schema" are unsigned, bit 6 the sink
 * refuses every message once as too large, bit 7 checksums negotiated;
 * byte 1 the row whose callback stops the feed (0: none); byte 2 the record
 * up to which everything is published already (tor_reader_skip_until, 0:
 * nothing) and byte 3 bits 0-2 its rows, bit 3 a start from a GTID, bit 4
 * outbox.route = all (with a fourth route, to "order" again), bit 5
 * columns.partition on fz.outbox_typed's id.
 *
 * Checks, besides the sanitizers: rows come only inside a transaction the
 * owner opened, with its number; every message has a legal topic, at most
 * TOR_MAX_HEADERS headers, tor.pos equal to the row's origin, and copies
 * (tor_outbox_message_copy) equal; holds are released once; the oversized
 * policy does what outbox.h says; the fan-out topics are legal, distinct,
 * msg->topic first, and a copy's are the message's; a row naming no
 * partition 0-3 gets what outbox.unrouted says.  And the stream read with its breaks
 * hands out exactly what it hands out read straight through: the same
 * rows, in the same transactions, with the same commits.
 *
 * Seeds (tests/fuzz/corpus/fuzz_outbox) are transactions cut from a real
 * MariaDB binlog by tests/tools/make_fuzz_corpus.sh, whose tables fz.outbox
 * and fz.outbox_typed are the ones configured here.
 */
#include <regex.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <inttypes.h>

#include <zlib.h>

#include "tor/log.h"
#include "tor/reader.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FILE_NAME       "fz-bin.000001"
#define HEADER_LEN      19
#define STOP_CODE       7       /* the owner's own code, from the row callback */
#define MAX_HOLDS       256

enum { T_OUTBOX, T_TYPED, N_TABLES };

static struct tor_config cfg;
static struct tor_outbox_table tables[N_TABLES];
static struct tor_header_map outbox_headers[2] = {
	{ (char *)"trace", (char *)"traceparent" },
	{ (char *)"uuid", (char *)"uuid" },
};
static struct tor_header_map typed_headers[2] = {
	{ (char *)"id", (char *)"row-id" },
	{ (char *)"ts", (char *)"created" },
};
static struct tor_route routes[4];
/* FUZZ_OUTBOX_TRACE=1: what each run hands out, to read a crash input. */
static bool tracing;

static void
trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
trace(const char *fmt, ...)
{
	va_list ap;

	if (!tracing)
		return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

/* Names a table map without them gets, by column index: the columns of
 * both outbox tables. */
static const char *const described_names[] = { "id", "uuid",
	"aggregate_id", "aggregate_type", "payload", "trace", "k", "t", "p",
	"ts" };

static void
add_route(const char *match, const char *topic, bool icase)
{
	struct tor_route *r = &routes[cfg.outbox.n_routes++];

	r->match = (char *)match;
	r->topic = (char *)topic;
	r->icase = icase;
	if (regcomp(&r->re, match, REG_EXTENDED | REG_NOSUB |
	    (icase ? REG_ICASE : 0)) != 0)
		abort();
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* The reader logs each table map and odd groups: keep the run quiet. */
	tracing = getenv("FUZZ_OUTBOX_TRACE") != NULL;
	tor_log_setup(tracing ? TOR_LOG_DEBUG : TOR_LOG_ERROR,
	    TOR_LOG_LOGFMT, "fuzz");
	cfg.path = (char *)"fuzz_outbox.cfg";
	cfg.group = (char *)"fz";
	tables[T_OUTBOX] = (struct tor_outbox_table){
		.schema = (char *)"fz", .table = (char *)"outbox",
		.col_id = (char *)"uuid", .col_key = (char *)"aggregate_id",
		.col_type = (char *)"aggregate_type",
		.col_payload = (char *)"payload",
		.headers = outbox_headers, .n_headers = 2, .line = 1,
	};
	tables[T_TYPED] = (struct tor_outbox_table){
		.schema = (char *)"fz", .table = (char *)"outbox_typed",
		.col_key = (char *)"k", .col_type = (char *)"t",
		.col_payload = (char *)"p",
		.headers = typed_headers, .n_headers = 2, .line = 2,
	};
	cfg.outbox.tables = tables;
	cfg.outbox.n_tables = N_TABLES;
	cfg.outbox.routes = routes;
	add_route("^order$", "order", true);
	add_route("^invoice", "invoice", false);
	add_route("^(pay|ship)ment\\.[a-z]+$", "logistics", false);
	add_route("^(order|pay)", "order", true);     /* route = all only */
	cfg.outbox.dlq_topic = (char *)"dlq";
	return 0;
}

/* One record of the input. */
struct rec {
	uint8_t type;
	uint8_t flags;
	const uint8_t *body;
	size_t len;
	uint64_t pos;           /* where its event starts (breaks: the next) */
	uint64_t end;           /* where the next starts */
	bool checksum;          /* its event carries a CRC32 */
};

struct knobs {
	enum tor_unrouted unrouted;
	bool template, no_routes, no_id, is_unsigned, oversized, checksum;
	uint32_t stop_at_row;
	uint32_t done_rec;
	uint32_t done_rows;
	bool gtid_start;
	bool fan_out, partition;
};

/* What one feed of the stream handed out, and the owner's view of it. */
struct run {
	const struct knobs *k;
	struct tor_outbox *ob;
	struct tor_reader *rd;
	uint64_t next_seq;
	bool open;
	uint64_t open_seq;
	bool reopened;          /* a break since the last begin */
	uint32_t rows;
	uint64_t digest;        /* of rows, commits, holds and releases */
	uint64_t held[MAX_HOLDS];
	bool released[MAX_HOLDS];
	size_t n_held;
};

static void
mix(struct run *r, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		r->digest = (r->digest ^ b[i]) * 0x100000001b3ull;
}

static void
mix_u64(struct run *r, uint64_t v)
{
	mix(r, &v, sizeof(v));
}

static void
mix_bytes(struct run *r, const uint8_t *p, size_t n)
{
	mix_u64(r, p != NULL ? n : UINT64_MAX);
	if (p != NULL && n > 0)
		mix(r, p, n);
}

static bool
topic_ok(const char *s)
{
	size_t n;

	if (s == NULL || (n = strlen(s)) == 0 || n > 249)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '.' ||
		    s[i] == '_' || s[i] == '-'))
			return false;
	return true;
}

static bool
bytes_equal(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
	if ((a == NULL) != (b == NULL) || an != bn)
		return false;
	return an == 0 || memcmp(a, b, an) == 0;
}

static const struct tor_header *
find_header(const struct tor_message *msg, const char *name)
{
	for (size_t i = 0; i < msg->n_headers; i++)
		if (strcmp(msg->headers[i].name, name) == 0)
			return &msg->headers[i];
	return NULL;
}

static void
check_message(const struct tor_message *msg,
    const struct tor_row_origin *origin)
{
	const struct tor_header *pos;
	struct tor_message *copy;

	if (!topic_ok(msg->topic) || msg->n_headers > TOR_MAX_HEADERS ||
	    (msg->key == NULL && msg->key_len != 0) ||
	    (msg->value == NULL && msg->value_len != 0) ||
	    origin->pos == NULL)
		abort();
	for (size_t i = 0; i < msg->n_headers; i++)
		if (msg->headers[i].name == NULL ||
		    (msg->headers[i].value == NULL && msg->headers[i].len != 0))
			abort();
	pos = find_header(msg, "tor.pos");
	if (pos == NULL || !bytes_equal(pos->value, pos->len,
	    (const uint8_t *)origin->pos, strlen(origin->pos)) ||
	    find_header(msg, "tor.epoch") == NULL ||
	    find_header(msg, "tor.ts") == NULL ||
	    find_header(msg, "tor.type") == NULL)
		abort();

	if ((copy = tor_outbox_message_copy(msg)) == NULL)
		abort();
	if (strcmp(copy->topic, msg->topic) != 0 ||
	    !bytes_equal(copy->key, copy->key_len, msg->key, msg->key_len) ||
	    !bytes_equal(copy->value, copy->value_len, msg->value,
	    msg->value_len) || copy->n_headers != msg->n_headers)
		abort();
	for (size_t i = 0; i < msg->n_headers; i++)
		if (strcmp(copy->headers[i].name, msg->headers[i].name) != 0 ||
		    !bytes_equal(copy->headers[i].value, copy->headers[i].len,
		    msg->headers[i].value, msg->headers[i].len))
			abort();
	free(copy);
}

/* The topics of msg's copies: legal, distinct, msg->topic first, the same
 * for a held copy of it. */
static void
check_fan_out(struct run *r, const struct tor_message *msg)
{
	const char *const *topics;
	struct tor_message *copy;
	size_t n = tor_outbox_topics(r->ob, msg, &topics), m;
	char last[512];

	if (n < 1 || n > 4 || strcmp(topics[0], msg->topic) != 0)
		abort();
	for (size_t i = 0; i < n; i++) {
		if (!topic_ok(topics[i]))
			abort();
		for (size_t j = 0; j < i; j++)
			if (strcmp(topics[i], topics[j]) == 0)
				abort();
	}
	if (cfg.outbox.route != TOR_ROUTE_ALL && n != 1)
		abort();
	snprintf(last, sizeof(last), "%s", topics[n - 1]);
	if ((copy = tor_outbox_message_copy(msg)) == NULL)
		abort();
	m = tor_outbox_topics(r->ob, copy, &topics);
	if (m != n || strcmp(topics[m - 1], last) != 0)
		abort();
	free(copy);
}

/* A row naming no partition of a 4-partition topic: outbox.unrouted. */
static void
check_partition(struct run *r, struct tor_message *msg,
    const struct tor_row_origin *origin)
{
	tor_err err;
	int rc;

	if (!msg->partition_given || (!msg->partition_null &&
	    msg->partition >= 0 && msg->partition < 4))
		return;
	err.msg[0] = '\0';
	rc = tor_outbox_unroutable(r->ob, msg, "partition out of range",
	    origin, &err);
	if (cfg.outbox.unrouted == TOR_UNROUTED_SKIP ? rc != TOR_OUTBOX_SKIPPED :
	    cfg.outbox.unrouted == TOR_UNROUTED_FAIL ? rc != -1 ||
	    strstr(err.msg, "partition out of range (row ") == NULL :
	    rc == -1 ? msg->n_headers < TOR_MAX_HEADERS :
	    rc != TOR_OUTBOX_MAPPED || strcmp(msg->topic, "dlq") != 0 ||
	    msg->partition_given || find_header(msg, "tor.error") == NULL)
		abort();
	if (rc == TOR_OUTBOX_MAPPED)
		check_message(msg, origin);
}

/* The sink refuses msg as too large: outbox.unrouted decides. */
static void
refuse_as_too_large(struct run *r, struct tor_message *msg,
    const struct tor_row_origin *origin)
{
	tor_err err;
	int rc;

	err.msg[0] = '\0';
	rc = tor_outbox_oversized(r->ob, msg, origin, &err);
	switch (cfg.outbox.unrouted) {
	case TOR_UNROUTED_SKIP:
		if (rc != TOR_OUTBOX_SKIPPED)
			abort();
		return;
	case TOR_UNROUTED_FAIL:
		if (rc != -1 || err.msg[0] == '\0')
			abort();
		return;
	case TOR_UNROUTED_DLQ:
		if (rc == -1) {
			/* Only when there is no room for tor.error. */
			if (msg->n_headers < TOR_MAX_HEADERS)
				abort();
			return;
		}
		if (rc != TOR_OUTBOX_MAPPED || strcmp(msg->topic, "dlq") != 0 ||
		    msg->value != NULL || find_header(msg, "tor.error") == NULL)
			abort();
		check_message(msg, origin);
		/* Still too large for the dead-letter topic: nothing left to
		 * strip, so it fails. */
		if (tor_outbox_oversized(r->ob, msg, origin, &err) != -1)
			abort();
		return;
	}
}

static int
cb_begin(void *ctx, uint64_t *seq, tor_err *err)
{
	struct run *r = ctx;

	(void)err;
	/* Like tor_progress_begin: a transaction a break left open is
	 * reopened, with its number; otherwise one must not be open. */
	if (r->open) {
		if (!r->reopened)
			abort();
	} else {
		r->open = true;
		r->open_seq = ++r->next_seq;
	}
	r->reopened = false;
	*seq = r->open_seq;
	trace("begin %" PRIu64 "\n", *seq);
	return 0;
}

static int
cb_row(void *ctx, uint64_t seq, struct tor_message *msg,
    const struct tor_row_origin *origin, tor_err *err)
{
	struct run *r = ctx;

	(void)err;
	if (!r->open || seq != r->open_seq)
		abort();
	check_message(msg, origin);
	trace("row %" PRIu64 " %s topic %s value %.*s\n", seq, origin->pos,
	    msg->topic, (int)(msg->value_len > 40 ? 40 : msg->value_len),
	    msg->value != NULL ? (const char *)msg->value : "NULL");
	mix(r, "R", 1);
	mix_u64(r, seq);
	mix_bytes(r, (const uint8_t *)origin->pos, strlen(origin->pos));
	mix_bytes(r, (const uint8_t *)msg->topic, strlen(msg->topic));
	mix_bytes(r, msg->key, msg->key_len);
	mix_bytes(r, msg->value, msg->value_len);
	mix_u64(r, msg->n_headers);
	for (size_t i = 0; i < msg->n_headers; i++) {
		mix_bytes(r, (const uint8_t *)msg->headers[i].name,
		    strlen(msg->headers[i].name));
		mix_bytes(r, msg->headers[i].value, msg->headers[i].len);
	}
	check_fan_out(r, msg);
	if (r->k->partition)
		check_partition(r, msg, origin);
	else if (r->k->oversized)
		refuse_as_too_large(r, msg, origin);
	if (++r->rows == r->k->stop_at_row)
		return STOP_CODE;
	return 0;
}

static int
cb_commit(void *ctx, const struct tor_reader_end *end, tor_err *err)
{
	struct run *r = ctx;
	char gtid[96] = "";

	(void)err;
	if (!r->open || end->file == NULL)
		abort();
	r->open = false;
	r->reopened = false;
	if (end->gtid != NULL)
		tor_gtid_format(end->gtid, gtid, sizeof(gtid));
	trace("commit %" PRIu64 " at %s:%" PRIu64 " %s\n", r->open_seq,
	    end->file, end->pos, gtid);
	mix(r, "C", 1);
	mix_u64(r, r->open_seq);
	mix_u64(r, end->pos);
	mix_bytes(r, (const uint8_t *)gtid, strlen(gtid));
	return 0;
}

static int
cb_rotate(void *ctx, const char *file, uint64_t pos, bool positioned,
    tor_err *err)
{
	(void)ctx;
	(void)pos;
	(void)positioned;
	(void)err;
	if (file == NULL)
		abort();
	return 0;
}

/* What information_schema would say: names by column index, the
 * precision of old temporal columns. */
static int
cb_describe(void *ctx, struct tor_table_map *tm, tor_err *err)
{
	struct run *r = ctx;
	const size_t n_names = sizeof(described_names) /
	    sizeof(described_names[0]);

	(void)err;
	for (uint32_t i = 0; i < tm->ncols; i++) {
		struct tor_column *col = &tm->cols[i];

		if (!tm->has_names) {
			free(col->name);
			if ((col->name = strdup(described_names[i % n_names])) ==
			    NULL)
				abort();
			col->is_unsigned = r->k->is_unsigned;
		}
		if (col->type == TOR_TYPE_TIME || col->type == TOR_TYPE_DATETIME ||
		    col->type == TOR_TYPE_TIMESTAMP)
			col->meta = (uint16_t)(i % 7);
	}
	tm->has_names = true;
	return 0;
}

static int
cb_hold(void *ctx, uint64_t seq, tor_err *err)
{
	struct run *r = ctx;

	(void)err;
	if (!r->open || seq != r->open_seq)
		abort();
	if (r->n_held < MAX_HOLDS) {
		r->held[r->n_held] = seq;
		r->released[r->n_held++] = false;
	}
	trace("hold %" PRIu64 "\n", seq);
	mix(r, "H", 1);
	mix_u64(r, seq);
	return 0;
}

static void
cb_release(void *ctx, uint64_t seq)
{
	struct run *r = ctx;
	size_t i;

	for (i = 0; i < r->n_held && r->held[i] != seq; i++)
		;
	if (i == r->n_held) {
		if (r->n_held < MAX_HOLDS)
			abort();        /* never held */
	} else {
		if (r->released[i])
			abort();        /* released twice */
		r->released[i] = true;
	}
	trace("release %" PRIu64 "\n", seq);
	mix(r, "L", 1);
	mix_u64(r, seq);
}

static const struct tor_reader_ops ops = {
	.begin = cb_begin,
	.row = cb_row,
	.commit = cb_commit,
	.rotate = cb_rotate,
	.describe = cb_describe,
	.hold = cb_hold,
	.release = cb_release,
};

static void
put_le(uint8_t *p, uint64_t v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* The event of one record, in a heap block of its exact size (so that ASan
 * sees a read past its end), with a CRC32 when checksum says so.  A
 * FORMAT_DESCRIPTION's body ends with its checksum algorithm byte and is
 * always followed by 4 bytes, its CRC computed without the in-use flag. */
static uint8_t *
make_event(uint8_t type, uint32_t ts, uint16_t flags, uint64_t log_pos,
    const uint8_t *body, size_t body_len, bool checksum, size_t *len)
{
	bool fde = type == TOR_EV_FORMAT_DESCRIPTION;
	bool crc = fde ? body_len > 0 && body[body_len - 1] == 1 : checksum;
	size_t size = HEADER_LEN + body_len + (fde || crc ? 4 : 0);
	uint8_t *ev = malloc(size);

	if (ev == NULL)
		abort();
	put_le(ev, ts, 4);
	ev[4] = type;
	put_le(ev + 5, 1, 4);
	put_le(ev + 9, size, 4);
	put_le(ev + 13, log_pos, 4);
	put_le(ev + 17, fde ? flags & ~1u : flags, 2);
	if (body_len > 0)
		memcpy(ev + HEADER_LEN, body, body_len);
	if (fde || crc)
		put_le(ev + size - 4, crc ? crc32(0L, ev, (uInt)(size - 4)) : 0,
		    4);
	if (fde)
		put_le(ev + 17, flags, 2);
	*len = size;
	return ev;
}

static bool
checksum_after(const struct rec *rc, bool checksum)
{
	if (rc->type == TOR_EV_FORMAT_DESCRIPTION)
		return rc->len > 0 && rc->body[rc->len - 1] == 1;
	return checksum;
}

static int
feed_rec(struct run *r, const struct rec *rc, size_t index, tor_err *err)
{
	size_t len;
	uint8_t *ev = make_event(rc->type, 1700000000u + (uint32_t)index,
	    (uint16_t)(rc->flags >> 1), rc->flags & 1 ? 0 : rc->end, rc->body,
	    rc->len, rc->checksum, &len);
	int ret = tor_reader_feed(r->rd, ev, len, err);

	free(ev);
	return ret;
}

/* The artificial ROTATE a dump starts with, to FILE_NAME at pos. */
static int
feed_artificial_rotate(struct run *r, uint64_t pos, bool checksum,
    tor_err *err)
{
	uint8_t body[8 + sizeof(FILE_NAME) - 1];
	size_t len;
	uint8_t *ev;
	int ret;

	put_le(body, pos, 8);
	memcpy(body + 8, FILE_NAME, sizeof(FILE_NAME) - 1);
	ev = make_event(TOR_EV_ROTATE, 0, 0x20, 0, body, sizeof(body), checksum,
	    &len);
	ret = tor_reader_feed(r->rd, ev, len, err);
	free(ev);
	return ret;
}

/*
 * Reads the records through a new reader.  With breaks, each break record
 * reopens the stream once, at the reader's resume position; *comparable
 * turns false when that position is not one this synthetic file can be
 * reopened at (after a ROTATE, or a position no event starts at).
 * Returns what tor_reader_feed last said.
 */
static int
read_stream(struct run *r, const struct rec *recs, size_t n,
    bool with_breaks, bool *comparable)
{
	struct tor_position start, done;
	bool rotated = false, *broken = NULL;
	size_t i = 0;
	tor_err err;
	int ret = 0;

	memset(&start, 0, sizeof(start));
	if (r->k->gtid_start)
		snprintf(start.gtid, sizeof(start.gtid), "0-1-1");
	else {
		snprintf(start.file, sizeof(start.file), FILE_NAME);
		start.pos = 4;
	}
	r->rd = tor_reader_new(&cfg, r->ob, &(struct tor_metrics){ 0 }, &ops,
	    r, &start);
	if (r->rd == NULL)
		abort();
	tor_reader_set_epoch(r->rd, 5);
	tor_reader_reset_format(r->rd, r->k->checksum);
	memset(&done, 0, sizeof(done));
	if (r->k->done_rec > 0 && n > 0) {
		snprintf(done.file, sizeof(done.file), FILE_NAME);
		done.pos = recs[(r->k->done_rec - 1) % n].pos;
	}
	if (r->k->done_rec > 0 || r->k->done_rows > 0)
		tor_reader_skip_until(r->rd, &done, r->k->done_rows);
	if (with_breaks && (broken = calloc(n + 1, sizeof(*broken))) == NULL)
		abort();

	while (i < n) {
		const struct rec *rc = &recs[i];
		const struct tor_position *resume;
		size_t k, fde = n;

		err.msg[0] = '\0';
		if (rc->type != 0) {
			if (rc->type == TOR_EV_ROTATE)
				rotated = true;
			if ((ret = feed_rec(r, rc, i, &err)) != 0)
				break;
			i++;
			continue;
		}
		if (!with_breaks || broken[i]) {
			i++;
			continue;
		}
		broken[i] = true;
		tor_reader_reopened(r->rd);
		r->reopened = true;
		resume = tor_reader_resume(r->rd);
		trace("break at record %zu: reopen at %s:%" PRIu64 "\n", i,
		    resume->file, resume->pos);
		if (rotated || strcmp(resume->file, FILE_NAME) != 0) {
			*comparable = false;
			break;
		}
		for (k = 0; k < n && (recs[k].type == 0 ||
		    recs[k].pos != resume->pos); k++)
			;
		if (k == n && (n == 0 || resume->pos != recs[n - 1].end)) {
			*comparable = false;
			break;
		}
		/* The server sends the ROTATE, then the file's FORMAT_DESCRIPTION,
		 * then the events from the position on. */
		tor_reader_reset_format(r->rd, r->k->checksum);
		if ((ret = feed_artificial_rotate(r, resume->pos,
		    r->k->checksum, &err)) != 0)
			break;
		for (size_t j = 0; j < k; j++)
			if (recs[j].type == TOR_EV_FORMAT_DESCRIPTION)
				fde = j;
		if (fde < n && (ret = feed_rec(r, &recs[fde], fde, &err)) != 0)
			break;
		i = k;
	}
	trace("%s: rc %d %s\n", with_breaks ? "with breaks" : "straight",
	    ret, ret < 0 ? err.msg : "");
	if (ret < 0 && (err.msg[0] == '\0' ||
	    memchr(err.msg, '\0', sizeof(err.msg)) == NULL))
		abort();
	free(broken);
	tor_reader_free(r->rd);
	r->rd = NULL;
	return ret;
}

/* Splits the records off the input and gives each its position and
 * whether it carries a checksum (the knob's, then what each
 * FORMAT_DESCRIPTION says); a record cut short by the end of the input is
 * dropped. */
static size_t
split_records(const uint8_t *data, size_t size, bool checksum,
    struct rec *recs)
{
	uint64_t pos = 4;
	size_t n = 0;

	while (size >= 4) {
		struct rec *rc = &recs[n];
		size_t len = (size_t)data[2] | (size_t)data[3] << 8;

		if (len > size - 4)
			break;
		rc->type = data[0];
		rc->flags = data[1];
		rc->body = data + 4;
		rc->len = len;
		rc->pos = pos;
		rc->checksum = checksum;
		if (rc->type != 0) {
			pos += HEADER_LEN + len + (checksum ||
			    rc->type == TOR_EV_FORMAT_DESCRIPTION ? 4 : 0);
			checksum = checksum_after(rc, checksum);
		}
		rc->end = pos;
		data += 4 + len;
		size -= 4 + len;
		n++;
	}
	return n;
}

static bool
is_rows_type(uint8_t type)
{
	return (type >= TOR_EV_WRITE_ROWS_V0 && type <= TOR_EV_DELETE_ROWS_V1) ||
	    (type >= TOR_EV_WRITE_ROWS_V2 && type <= TOR_EV_DELETE_ROWS_V2) ||
	    (type >= TOR_EV_MARIADB_WRITE_ROWS_COMPRESSED_V1 &&
	    type <= TOR_EV_MARIADB_DELETE_ROWS_COMPRESSED);
}

/*
 * Whether every ROWS record has its TABLE_MAP (the same 6 table id bytes)
 * since the last event that may bound a group (GTID, QUERY, XID,
 * XA_PREPARE), as servers write them.  Only then is the stream read with
 * breaks held to the straight read: a reopened reader knows only the maps
 * the reopened stream sends, while the straight one may still hold a map
 * from a group before the resume point.
 */
static bool
maps_precede_rows(const struct rec *recs, size_t n)
{
	size_t seg = 0;

	for (size_t i = 0; i < n; i++) {
		const struct rec *rc = &recs[i];
		bool mapped = false;

		switch (rc->type) {
		case TOR_EV_MARIADB_GTID:
		case TOR_EV_MYSQL_GTID:
		case TOR_EV_MYSQL_ANONYMOUS_GTID:
		case TOR_EV_QUERY:
		case TOR_EV_MARIADB_QUERY_COMPRESSED:
		case TOR_EV_XID:
		case TOR_EV_XA_PREPARE:
			seg = i + 1;
			continue;
		default:
			break;
		}
		if (!is_rows_type(rc->type))
			continue;
		if (rc->len < 6)
			return false;
		for (size_t j = seg; j < i && !mapped; j++)
			mapped = recs[j].type == TOR_EV_TABLE_MAP &&
			    recs[j].len >= 6 &&
			    memcmp(recs[j].body, rc->body, 6) == 0;
		if (!mapped)
			return false;
	}
	return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct knobs k;
	struct run straight, broken;
	struct rec *recs;
	bool comparable;
	size_t n;
	int ret_straight, ret_broken;
	tor_err err;

	if (size < 4)
		return 0;
	k = (struct knobs){
		.unrouted = (data[0] & 3) == 0 ? TOR_UNROUTED_FAIL :
		    (data[0] & 3) == 1 ? TOR_UNROUTED_SKIP : TOR_UNROUTED_DLQ,
		.template = data[0] & 4,
		.no_routes = (data[0] & 4) && (data[0] & 8),
		.no_id = data[0] & 16,
		.is_unsigned = data[0] & 32,
		.oversized = data[0] & 64,
		.checksum = data[0] & 128,
		.stop_at_row = data[1],
		.done_rec = data[2],
		.done_rows = data[3] & 7,
		.gtid_start = data[3] & 8,
		.fan_out = data[3] & 16,
		.partition = data[3] & 32,
	};
	cfg.outbox.unrouted = k.unrouted;
	cfg.outbox.topic_template = (char *)(k.template ?
	    "outbox.event.${aggregate_type}" : "");
	cfg.outbox.n_routes = k.no_routes ? 0 : k.fan_out ? 4 : 3;
	cfg.outbox.route = k.fan_out ? TOR_ROUTE_ALL : TOR_ROUTE_FIRST;
	tables[T_TYPED].col_partition = k.partition ? (char *)"id" : NULL;
	tables[T_OUTBOX].col_id = k.no_id ? NULL : (char *)"uuid";
	data += 4;
	size -= 4;

	if ((recs = calloc(size / 4 + 1, sizeof(*recs))) == NULL)
		abort();
	n = split_records(data, size, k.checksum, recs);
	comparable = maps_precede_rows(recs, n);

	/* Once straight through, once with the breaks: the same outcome. */
	memset(&straight, 0, sizeof(straight));
	memset(&broken, 0, sizeof(broken));
	straight.k = broken.k = &k;
	if ((straight.ob = tor_outbox_new(&cfg, &err)) == NULL ||
	    (broken.ob = tor_outbox_new(&cfg, &err)) == NULL)
		abort();
	ret_straight = read_stream(&straight, recs, n, false, &comparable);
	ret_broken = read_stream(&broken, recs, n, true, &comparable);
	if (comparable && (ret_straight != ret_broken ||
	    straight.digest != broken.digest || straight.rows != broken.rows)) {
		fprintf(stderr, "with breaks: rc %d, %u rows; straight: rc %d, "
		    "%u rows\n", ret_broken, broken.rows, ret_straight,
		    straight.rows);
		abort();
	}
	tor_outbox_free(straight.ob);
	tor_outbox_free(broken.ob);
	free(recs);
	return 0;
}
