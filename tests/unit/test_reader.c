/*
 * The source-transaction reader against a real MariaDB 10.11 binlog
 * (tests/unit/binlog/mariadb-bin.000003, see
 * tests/tools/make_binlog_fixtures.sh) and a few events built by hand (what
 * the server cannot be made to write: an INCIDENT, the artificial ROTATE
 * that starts a dump).
 *
 * The file holds, in order: three CREATE TABLEs; T1, one INSERT of three
 * outbox rows a1 a2 a3; XA x1 prepared (x1a x1b); XA x2 prepared (x2a); T2
 * (b1); XA COMMIT x1; XA ROLLBACK x2; a statement-format group of two
 * inserts into other tables that ends with ROLLBACK; T3 (c1); XA x3
 * committed in one phase (x3a).  The positions below are that file's, as
 * SHOW BINLOG EVENTS printed them.
 *
 * The reader's owner is played by callbacks that record what they are told
 * and can end the feed at a chosen row with a code of their own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>
#include <zstd.h>

#include "tor/reader.h"

#define FIXTURE "tests/unit/binlog/mariadb-bin.000003"
#define FILE_NAME "mariadb-bin.000003"

/* Positions in the fixture (SHOW BINLOG EVENTS). */
#define T1_START	1106    /* its GTID event */
#define T1_MAP		1306    /* its TABLE_MAP event */
#define T1_ROWS		1412    /* its WRITE_ROWS event */
#define T1_XID		1496
#define T1_END		1527
#define X1_PREPARE_END	2008
#define X2_PREPARE_END	2447
#define T2_END		2788
#define X1_COMMIT_END	2920
#define X2_ROLLBACK_END	3054
#define ROLLBACK_START	3054
#define ROLLBACK_END	3439
#define T3_END		3780
#define X3_END		4123

enum rec_kind { R_BEGIN, R_ROW, R_COMMIT, R_ROTATE, R_HOLD, R_RELEASE };

struct rec {
	enum rec_kind kind;
	uint64_t seq;
	char payload[16];
	char pos[128];
	uint64_t end;
	bool positioned;
};

struct fx {
	struct tor_config cfg;
	struct tor_outbox_table table;
	struct tor_route route;
	struct tor_metrics metrics;
	struct tor_outbox *ob;
	struct tor_reader *rd;

	uint8_t *data;          /* the fixture file */
	size_t len;

	struct rec recs[128];
	size_t n;
	char last_pos[128];     /* of the last row, kept or not */
	uint64_t last_end;      /* of the last commit, kept or not */
	uint64_t next_seq;
	int rows_seen;
	int stop_at_row;        /* 1-based; 0: never */
	int stop_code;
};

static int
cb_begin(void *ctx, uint64_t *seq, tor_err *err)
{
	struct fx *f = ctx;

	(void)err;
	*seq = ++f->next_seq;
	assert_true(f->n < 128);
	f->recs[f->n++] = (struct rec){ .kind = R_BEGIN, .seq = *seq };
	return 0;
}

static int
cb_row(void *ctx, uint64_t seq, struct tor_message *msg,
    const struct tor_row_origin *origin, tor_err *err)
{
	struct fx *f = ctx;
	struct rec *r;

	(void)err;
	snprintf(f->last_pos, sizeof(f->last_pos), "%s", origin->pos);
	/* Beyond 128 rows (a big payload) they are counted only. */
	if (f->n < 128) {
		r = &f->recs[f->n++];
		*r = (struct rec){ .kind = R_ROW, .seq = seq };
		snprintf(r->payload, sizeof(r->payload), "%.*s",
		    (int)msg->value_len, (const char *)msg->value);
		snprintf(r->pos, sizeof(r->pos), "%s", origin->pos);
	}
	if (++f->rows_seen == f->stop_at_row)
		return f->stop_code;
	return 0;
}

static int
cb_commit(void *ctx, const struct tor_reader_end *end, tor_err *err)
{
	struct fx *f = ctx;

	(void)err;
	f->last_end = end->pos;
	if (f->n < 128)
		f->recs[f->n++] = (struct rec){ .kind = R_COMMIT,
		    .end = end->pos };
	return 0;
}

static int
cb_rotate(void *ctx, const char *file, uint64_t pos, bool positioned,
    tor_err *err)
{
	struct fx *f = ctx;

	(void)err;
	(void)file;
	assert_true(f->n < 128);
	f->recs[f->n++] = (struct rec){ .kind = R_ROTATE, .end = pos,
	    .positioned = positioned };
	return 0;
}

static int
cb_describe(void *ctx, struct tor_table_map *tm, tor_err *err)
{
	(void)ctx;
	(void)tm;
	return tor_err_set(err, "the fixture has column names");
}

static int
cb_hold(void *ctx, uint64_t seq, tor_err *err)
{
	struct fx *f = ctx;

	(void)err;
	assert_true(f->n < 128);
	f->recs[f->n++] = (struct rec){ .kind = R_HOLD, .seq = seq };
	return 0;
}

static void
cb_release(void *ctx, uint64_t seq)
{
	struct fx *f = ctx;

	assert_true(f->n < 128);
	f->recs[f->n++] = (struct rec){ .kind = R_RELEASE, .seq = seq };
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
load_fixture(struct fx *f)
{
	FILE *fp = fopen(FIXTURE, "rb");
	long n;

	assert_non_null(fp);
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	n = ftell(fp);
	rewind(fp);
	f->data = malloc((size_t)n);
	assert_non_null(f->data);
	assert_int_equal(fread(f->data, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	f->len = (size_t)n;
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	tor_err err;

	assert_non_null(f);
	f->cfg.group = (char *)"g";
	f->table.schema = (char *)"fx";
	f->table.table = (char *)"outbox";
	f->table.col_id = (char *)"id";
	f->table.col_key = (char *)"aggregate_id";
	f->table.col_type = (char *)"aggregate_type";
	f->table.col_payload = (char *)"payload";
	f->cfg.outbox.tables = &f->table;
	f->cfg.outbox.n_tables = 1;
	f->route.match = (char *)"^order$";
	f->route.topic = (char *)"order";
	assert_int_equal(regcomp(&f->route.re, "^order$",
	    REG_EXTENDED | REG_NOSUB), 0);
	f->cfg.outbox.routes = &f->route;
	f->cfg.outbox.n_routes = 1;
	f->cfg.outbox.topic_template = (char *)"";
	f->cfg.outbox.unrouted = TOR_UNROUTED_FAIL;
	f->ob = tor_outbox_new(&f->cfg, &err);
	assert_non_null(f->ob);
	load_fixture(f);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	tor_reader_free(f->rd);
	tor_outbox_free(f->ob);
	regfree(&f->route.re);
	free(f->data);
	free(f);
	return 0;
}

static void
start_at(struct fx *f, const char *file, uint64_t pos, const char *gtid)
{
	struct tor_position p;

	memset(&p, 0, sizeof(p));
	snprintf(p.file, sizeof(p.file), "%s", file);
	p.pos = pos;
	snprintf(p.gtid, sizeof(p.gtid), "%s", gtid);
	tor_reader_free(f->rd);
	f->rd = tor_reader_new(&f->cfg, f->ob, &f->metrics, &ops, f, &p);
	assert_non_null(f->rd);
	tor_reader_set_epoch(f->rd, 3);
	tor_reader_reset_format(f->rd, true);
}

static uint32_t
event_size(const struct fx *f, size_t off)
{
	const uint8_t *p = f->data + off;

	return (uint32_t)p[9] | (uint32_t)p[10] << 8 | (uint32_t)p[11] << 16 |
	    (uint32_t)p[12] << 24;
}

/* Feeds the fixture's FORMAT_DESCRIPTION, then the events from offset
 * `from` up to (not including) offset `to`; returns the first non-zero
 * result of tor_reader_feed, or 0. */
static int
feed_range(struct fx *f, size_t from, size_t to, tor_err *err)
{
	size_t off = from;
	int rc;

	if ((rc = tor_reader_feed(f->rd, f->data + 4, event_size(f, 4),
	    err)) != 0)
		return rc;
	while (off < to && off < f->len) {
		uint32_t size = event_size(f, off);

		if ((rc = tor_reader_feed(f->rd, f->data + off, size, err)) != 0)
			return rc;
		off += size;
	}
	return 0;
}

static size_t
count_rows(const struct fx *f, const char *payload)
{
	size_t n = 0;

	for (size_t i = 0; i < f->n; i++)
		if (f->recs[i].kind == R_ROW &&
		    strcmp(f->recs[i].payload, payload) == 0)
			n++;
	return n;
}

/* The rows handed out, in order, joined by spaces. */
static void
rows_text(const struct fx *f, char *buf, size_t cap)
{
	size_t at = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < f->n && at < cap; i++)
		if (f->recs[i].kind == R_ROW)
			at += (size_t)snprintf(buf + at, cap - at, "%s%s",
			    at ? " " : "", f->recs[i].payload);
}

static bool
has_commit_at(const struct fx *f, uint64_t end)
{
	for (size_t i = 0; i < f->n; i++)
		if (f->recs[i].kind == R_COMMIT && f->recs[i].end == end)
			return true;
	return false;
}

/* The whole file: every row in commit order, every group ends where the
 * server says it does. */
static void
test_whole_file(void **state)
{
	struct fx *f = *state;
	char rows[256];
	tor_err err = { "" };

	start_at(f, FILE_NAME, 4, "");
	assert_int_equal(feed_range(f, 4 + event_size(f, 4), f->len, &err), 0);
	rows_text(f, rows, sizeof(rows));
	assert_string_equal(rows, "a1 a2 a3 b1 x1a x1b c1 x3a");
	assert_true(has_commit_at(f, T1_END));
	assert_true(has_commit_at(f, T2_END));
	assert_true(has_commit_at(f, T3_END));
	assert_true(has_commit_at(f, X3_END));
	assert_string_equal(tor_reader_resume(f->rd)->file, FILE_NAME);
	assert_int_equal(tor_reader_resume(f->rd)->pos, X3_END);
	assert_false(tor_reader_in_txn(f->rd));
}

/* A code from the row callback ends the feed at once and comes back
 * unchanged: the rest of the ROWS event is not handed out, and the
 * transaction does not end. */
static void
test_row_code_ends_the_feed(void **state)
{
	struct fx *f = *state;
	char rows[256];
	tor_err err = { "" };

	start_at(f, FILE_NAME, 4, "");
	f->stop_at_row = 2;
	f->stop_code = 3;
	assert_int_equal(feed_range(f, 4 + event_size(f, 4), f->len, &err), 3);
	rows_text(f, rows, sizeof(rows));
	assert_string_equal(rows, "a1 a2");
	assert_false(has_commit_at(f, T1_END));
	assert_true(tor_reader_in_txn(f->rd));
	assert_int_equal(tor_reader_resume(f->rd)->pos, T1_START);
}

/* Two breaks inside T1: after the first, all three rows were handed out;
 * the second comes before the ROWS event is read again.  The reopened
 * stream must still not hand out any of them again. */
static void
test_second_break_keeps_the_larger_skip(void **state)
{
	struct fx *f = *state;
	char rows[256];
	tor_err err = { "" };

	start_at(f, FILE_NAME, T1_START, "");
	assert_int_equal(feed_range(f, T1_START, T1_END - 31, &err), 0);
	tor_reader_reopened(f->rd);
	assert_true(tor_reader_in_txn(f->rd));
	assert_int_equal(tor_reader_resume(f->rd)->pos, T1_START);
	assert_int_equal(feed_range(f, T1_START, T1_ROWS, &err), 0);
	tor_reader_reopened(f->rd);
	assert_int_equal(feed_range(f, T1_START, T1_END, &err), 0);
	rows_text(f, rows, sizeof(rows));
	assert_string_equal(rows, "a1 a2 a3");
	assert_true(has_commit_at(f, T1_END));
	assert_false(tor_reader_in_txn(f->rd));
}

/* A group that ends with ROLLBACK is a whole transaction. */
static void
test_rollback_ends_the_group(void **state)
{
	struct fx *f = *state;
	tor_err err = { "" };

	start_at(f, FILE_NAME, ROLLBACK_START, "");
	assert_int_equal(feed_range(f, ROLLBACK_START, ROLLBACK_END, &err), 0);
	assert_true(has_commit_at(f, ROLLBACK_END));
	assert_false(tor_reader_in_txn(f->rd));
	assert_int_equal(tor_reader_resume(f->rd)->pos, ROLLBACK_END);
}

/* XA: prepared rows come out at XA COMMIT (with the commit group's
 * position), never at XA ROLLBACK; the prepare groups end transactions of
 * their own. */
static void
test_xa_commit_and_rollback(void **state)
{
	struct fx *f = *state;
	tor_err err = { "" };
	size_t i, commit_at = 0, row_at = 0;

	start_at(f, FILE_NAME, T1_END, "");
	assert_int_equal(feed_range(f, T1_END, X2_ROLLBACK_END, &err), 0);
	assert_int_equal(count_rows(f, "x1a"), 1);
	assert_int_equal(count_rows(f, "x1b"), 1);
	assert_int_equal(count_rows(f, "x2a"), 0);
	assert_true(has_commit_at(f, X1_PREPARE_END));
	assert_true(has_commit_at(f, X2_PREPARE_END));
	assert_true(has_commit_at(f, X1_COMMIT_END));
	assert_true(has_commit_at(f, X2_ROLLBACK_END));
	/* x1's rows belong to the XA COMMIT group: after b1's commit. */
	for (i = 0; i < f->n; i++) {
		if (f->recs[i].kind == R_COMMIT && f->recs[i].end == T2_END)
			commit_at = i;
		if (f->recs[i].kind == R_ROW &&
		    strcmp(f->recs[i].payload, "x1a") == 0)
			row_at = i;
	}
	assert_true(row_at > commit_at);
	assert_int_equal(tor_reader_resume(f->rd)->pos, X2_ROLLBACK_END);
	/* Each prepare held the checkpoint (its own group's number) until its
	 * transaction ended. */
	for (i = 0; i < f->n && f->recs[i].kind != R_HOLD; i++)
		;
	assert_true(i < f->n);
	assert_int_equal(f->recs[i].seq, 1);            /* x1's prepare */
	for (i++; i < f->n && f->recs[i].kind != R_HOLD; i++)
		;
	assert_true(i < f->n);
	assert_int_equal(f->recs[i].seq, 2);            /* x2's */
	for (i = 0; i < f->n && f->recs[i].kind != R_RELEASE; i++)
		;
	assert_true(i < f->n && f->recs[i].seq == 1);
	for (i++; i < f->n && f->recs[i].kind != R_RELEASE; i++)
		;
	assert_true(i < f->n && f->recs[i].seq == 2);
}

/* Groups published already (tor_reader_skip_until) hand out nothing, but
 * their XA prepares are kept: x1 committed after the done point still comes
 * out whole; the group right after done hands out only rows past `rows`. */
static void
test_skip_until(void **state)
{
	struct fx *f = *state;
	struct tor_position done;
	char rows[256];
	tor_err err = { "" };

	start_at(f, FILE_NAME, T1_START, "");
	memset(&done, 0, sizeof(done));
	snprintf(done.file, sizeof(done.file), FILE_NAME);
	done.pos = T1_END;
	tor_reader_skip_until(f->rd, &done, 0);
	assert_int_equal(feed_range(f, T1_START, T2_END, &err), 0);
	rows_text(f, rows, sizeof(rows));
	assert_string_equal(rows, "b1");
	f->n = 0;
	start_at(f, FILE_NAME, T1_START, "");
	done.pos = T2_END;
	tor_reader_skip_until(f->rd, &done, 1);
	assert_int_equal(feed_range(f, T1_START, X1_COMMIT_END, &err), 0);
	rows_text(f, rows, sizeof(rows));
	assert_string_equal(rows, "x1b");
}

/*
 * Hand-made events: an INCIDENT, and the artificial ROTATE a dump from a
 * GTID starts with.
 */
struct bytes {
	uint8_t b[512];
	size_t n;
};

static void
put_le(struct bytes *o, uint64_t v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		o->b[o->n++] = (uint8_t)(v >> (8 * i));
}

static void
make_event(struct bytes *ev, uint8_t type, uint32_t next_pos, uint16_t flags,
    const uint8_t *body, size_t body_len)
{
	size_t size = 19 + body_len + 4;

	ev->n = 0;
	put_le(ev, type == 4 ? 0 : 1700000000, 4);
	put_le(ev, type, 1);
	put_le(ev, 1, 4);
	put_le(ev, size, 4);
	put_le(ev, next_pos, 4);
	put_le(ev, flags, 2);
	memcpy(ev->b + ev->n, body, body_len);
	ev->n += body_len;
	put_le(ev, crc32(0L, ev->b, (uInt)ev->n), 4);
}

/* An INCIDENT (a gap in the binlog) halts the reader, naming where and
 * which. */
static void
test_incident_halts(void **state)
{
	static const uint8_t body[] = { 1, 0, 11, 'L', 'O', 'S', 'T', '_',
	    'E', 'V', 'E', 'N', 'T', 'S' };
	struct fx *f = *state;
	struct bytes ev;
	tor_err err = { "" };

	start_at(f, FILE_NAME, T1_END, "");
	assert_int_equal(feed_range(f, T1_END, T2_END, &err), 0);
	make_event(&ev, 26, T2_END + 19 + sizeof(body) + 4, 0, body,
	    sizeof(body));
	assert_int_equal(tor_reader_feed(f->rd, ev.b, ev.n, &err), -1);
	assert_non_null(strstr(err.msg, "incident"));
	assert_non_null(strstr(err.msg, "LOST_EVENTS"));
	assert_non_null(strstr(err.msg, FILE_NAME ":2788"));
}

/* A dump from a GTID starts with an artificial ROTATE to position 4 of the
 * file: that is not a position to resume from, and no position is known
 * before the first transaction ends. */
static void
test_gtid_start_has_no_position_before_a_commit(void **state)
{
	struct fx *f = *state;
	struct bytes ev;
	uint8_t body[64];
	size_t n = 0;
	tor_err err = { "" };

	start_at(f, "", 0, "0-1-23");
	memset(body, 0, 8);
	body[0] = 4;
	n = 8;
	memcpy(body + n, FILE_NAME, strlen(FILE_NAME));
	n += strlen(FILE_NAME);
	make_event(&ev, 4, 0, 0x20, body, n);
	assert_int_equal(tor_reader_feed(f->rd, ev.b, ev.n, &err), 0);
	assert_int_equal(f->recs[0].kind, R_ROTATE);
	assert_false(f->recs[0].positioned);
	assert_string_equal(tor_reader_resume(f->rd)->file, "");
	assert_string_equal(tor_reader_resume(f->rd)->gtid, "0-1-23");
	/* The format description and the events up to T1 carry no
	 * transaction end: still no position. */
	assert_int_equal(feed_range(f, 4 + event_size(f, 4), T1_START, &err),
	    0);
	assert_true(has_commit_at(f, T1_START));        /* the DDL groups */
	assert_string_equal(tor_reader_resume(f->rd)->file, FILE_NAME);
	assert_int_equal(tor_reader_resume(f->rd)->pos, T1_START);
}

/* A stream that starts inside a transaction (an operator's start at T1's
 * TABLE_MAP, past its GTID) has rows before any GTID or BEGIN: they come
 * in a transaction the owner was told of first, which ends with T1.
 * Found by tests/fuzz/fuzz_outbox.c (rows handed out with no transaction
 * begun, under the number of the one before or 0). */
static void
test_rows_before_a_group_open_one(void **state)
{
	struct fx *f = *state;
	size_t off, tmap = 0;
	tor_err err = { "" };

	for (off = T1_START; off < T1_ROWS; off += event_size(f, off))
		tmap = off;
	start_at(f, FILE_NAME, tmap, "");
	assert_int_equal(feed_range(f, tmap, T1_END, &err), 0);
	assert_true(f->n >= 5);
	assert_int_equal(f->recs[0].kind, R_BEGIN);
	for (size_t i = 1; i <= 3; i++) {
		assert_int_equal(f->recs[i].kind, R_ROW);
		assert_int_equal(f->recs[i].seq, f->recs[0].seq);
	}
	assert_int_equal(f->recs[4].kind, R_COMMIT);
	assert_int_equal(f->recs[4].end, T1_END);
	assert_false(tor_reader_in_txn(f->rd));
}

/* Such a group, broken off before its end and read again from where the
 * stream started, hands out its rows once. */
static void
test_rows_before_a_group_read_again_once(void **state)
{
	struct fx *f = *state;
	size_t off, tmap = 0;
	char rows[256];
	tor_err err = { "" };

	for (off = T1_START; off < T1_ROWS; off += event_size(f, off))
		tmap = off;
	start_at(f, FILE_NAME, tmap, "");
	assert_int_equal(feed_range(f, tmap, T1_END - 31, &err), 0);
	tor_reader_reopened(f->rd);
	assert_true(tor_reader_in_txn(f->rd));
	assert_int_equal(tor_reader_resume(f->rd)->pos, tmap);
	assert_int_equal(feed_range(f, tmap, T1_END, &err), 0);
	rows_text(f, rows, sizeof(rows));
	assert_string_equal(rows, "a1 a2 a3");
	assert_true(has_commit_at(f, T1_END));
	assert_false(tor_reader_in_txn(f->rd));
}

/* A reopened stream says again which table each id is: a table map read
 * past the resume point must not decode the rows read again before it.
 * Here a stream started at T1's ROWS event, past its TABLE_MAP (whose rows
 * are not read: no map), then the map and the ROWS event again, then a
 * break: read again, the first ROWS event has no map as before, and the
 * rows come out once.  Found by tests/fuzz/fuzz_outbox.c (a stream read
 * with a break handed out more than read straight through). */
static void
test_reopened_stream_forgets_later_table_maps(void **state)
{
	struct fx *f = *state;
	size_t off, tmap = 0;
	char rows[256];
	tor_err err = { "" };

	for (off = T1_START; off < T1_ROWS; off += event_size(f, off))
		tmap = off;
	start_at(f, FILE_NAME, T1_ROWS, "");
	for (int pass = 0; pass < 2; pass++) {
		const size_t order[] = { 4, T1_ROWS, tmap, T1_ROWS };

		for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
			assert_int_equal(tor_reader_feed(f->rd, f->data +
			    order[i], event_size(f, order[i]), &err), 0);
		if (pass == 0)
			tor_reader_reopened(f->rd);
	}
	rows_text(f, rows, sizeof(rows));
	assert_string_equal(rows, "a1 a2 a3");
}

/* A MySQL 8.3+ tagged GTID opens T1 instead of its MariaDB GTID: its rows'
 * tor.pos carry the GTID with its tag (the body is one Percona Server
 * 8.4.11 wrote, see test_binlog_decode). */
static void
test_tagged_gtid_names_the_rows(void **state)
{
	static const uint8_t body[] = {
	    0x02, 0x7c, 0x00, 0x00, 0x02, 0x02, 0xee, 0x45, 0x03, 0x41, 0x02,
	    0x58, 0x02, 0x69, 0x03, 0x22, 0xc5, 0x03, 0x69, 0x02, 0x82, 0x41,
	    0x02, 0x35, 0x02, 0xdc, 0xbe, 0xdc, 0x35, 0x02, 0x04, 0x04, 0x06,
	    0x10, 0x74, 0x65, 0x73, 0x74, 0x5f, 0x74, 0x61, 0x67, 0x08, 0x00,
	    0x0a, 0x04, 0x0c, 0x7f, 0x00, 0x3e, 0x89, 0x00, 0xfa, 0x5b, 0x06,
	    0x10, 0x45, 0x05, 0x12, 0xdb, 0xd0, 0x09 };
	struct fx *f = *state;
	struct bytes ev;
	tor_err err = { "" };

	start_at(f, FILE_NAME, 4, "");
	assert_int_equal(feed_range(f, 4 + event_size(f, 4), T1_START, &err),
	    0);
	make_event(&ev, 42, T1_MAP, 0, body, sizeof(body));
	assert_int_equal(tor_reader_feed(f->rd, ev.b, ev.n, &err), 0);
	for (size_t off = T1_MAP; off < T1_END; off += event_size(f, off))
		assert_int_equal(tor_reader_feed(f->rd, f->data + off,
		    event_size(f, off), &err), 0);
	assert_int_equal(count_rows(f, "a1"), 1);
	assert_string_equal(f->last_pos,
	    "77d1902c-01da-11f1-9a41-908d6e5f6e8d:test_tag:1:2");
	assert_true(has_commit_at(f, T1_END));
}

/*
 * MySQL's compressed transactions (TRANSACTION_PAYLOAD), built from the
 * fixture's T1 the way MySQL 8.0.20+ writes one: its GTID outside, its
 * TABLE_MAP, rows and XID inside, each without its checksum, after a
 * header of packed (type, length, value) fields.
 */
struct payload {
	uint8_t *b;
	size_t n, cap;
};

static void
pl_put(struct payload *o, const void *p, size_t n)
{
	if (o->n + n > o->cap) {
		o->cap = (o->n + n) * 2;
		o->b = realloc(o->b, o->cap);
		assert_non_null(o->b);
	}
	memcpy(o->b + o->n, p, n);
	o->n += n;
}

static void
pl_le(struct payload *o, uint64_t v, size_t n)
{
	uint8_t b[8];

	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	pl_put(o, b, n);
}

/* MySQL's packed integer, and the byte count it takes. */
static size_t
packed_len(uint64_t v)
{
	return v < 251 ? 1 : v < 65536 ? 3 : v < 16777216 ? 4 : 9;
}

static void
pl_packed(struct payload *o, uint64_t v)
{
	static const uint8_t prefix[] = { 0, 0, 0, 252, 253, 0, 0, 0, 0, 254 };
	size_t n = packed_len(v);

	if (n == 1) {
		pl_le(o, v, 1);
		return;
	}
	pl_le(o, prefix[n], 1);
	pl_le(o, v, n - 1);
}

static void
pl_field(struct payload *o, uint64_t type, uint64_t v)
{
	pl_packed(o, type);
	pl_packed(o, packed_len(v));
	pl_packed(o, v);
}

/* The fixture's event at off, without its checksum. */
static void
pl_inner(struct payload *o, const struct fx *f, size_t off)
{
	uint32_t size = event_size(f, off) - 4;
	size_t at = o->n;

	pl_put(o, f->data + off, size);
	for (size_t i = 0; i < 4; i++)
		o->b[at + 9 + i] = (uint8_t)(size >> (8 * i));
}

/* T1's inner events, its WRITE_ROWS `copies` times. */
static void
t1_inner(struct payload *o, const struct fx *f, int copies)
{
	pl_inner(o, f, T1_MAP);
	for (int i = 0; i < copies; i++)
		pl_inner(o, f, T1_ROWS);
	pl_inner(o, f, T1_XID);
}

/* A TRANSACTION_PAYLOAD event ending at next_pos that holds `inner`,
 * zstd-compressed unless compression is 255; `usize` is the uncompressed
 * size it claims (0: the true one).  Its checksum is right. */
static void
payload_event(struct payload *ev, const struct payload *inner,
    unsigned compression, uint64_t usize, uint32_t next_pos)
{
	struct payload body = { 0 };
	uint8_t *data = inner->b;
	size_t data_len = inner->n, at;

	if (compression == 0) {
		size_t cap = ZSTD_compressBound(inner->n);

		data = malloc(cap);
		assert_non_null(data);
		data_len = ZSTD_compress(data, cap, inner->b, inner->n, 3);
		assert_false(ZSTD_isError(data_len));
	}
	pl_field(&body, 2, compression);
	if (compression == 0)
		pl_field(&body, 3, usize != 0 ? usize : inner->n);
	pl_field(&body, 1, data_len);
	pl_packed(&body, 0);
	pl_put(&body, data, data_len);
	if (data != inner->b)
		free(data);
	ev->n = 0;
	pl_le(ev, 1700000000, 4);
	pl_le(ev, 40, 1);
	pl_le(ev, 1, 4);
	pl_le(ev, 19 + body.n + 4, 4);
	pl_le(ev, next_pos, 4);
	pl_le(ev, 0, 2);
	pl_put(ev, body.b, body.n);
	at = ev->n;
	pl_le(ev, crc32(0L, ev->b, (uInt)at), 4);
	free(body.b);
}

/* The fixture up to T1's GTID event, then the payload event. */
static int
feed_t1_payload(struct fx *f, const struct payload *ev, tor_err *err)
{
	int rc;

	start_at(f, FILE_NAME, 4, "");
	if ((rc = feed_range(f, 4 + event_size(f, 4), T1_MAP, err)) != 0)
		return rc;
	return tor_reader_feed(f->rd, ev->b, ev->n, err);
}

/* Compressed or not, T1 in a payload gives what T1 as plain events gives:
 * the same rows with the same tor.pos, the group's end at the payload's
 * end; the file after it reads on as before. */
static void
test_payload_reads_like_plain_events(void **state)
{
	struct fx *f = *state;
	struct payload inner = { 0 }, ev = { 0 };
	char plain[256], rows[256], pos[3][128];
	tor_err err = { "" };

	start_at(f, FILE_NAME, 4, "");
	assert_int_equal(feed_range(f, 4 + event_size(f, 4), T1_END, &err), 0);
	rows_text(f, plain, sizeof(plain));
	assert_string_equal(plain, "a1 a2 a3");
	for (int i = 0; i < 3; i++)
		snprintf(pos[i], sizeof(pos[i]), "%s", f->recs[i + 1].pos);
	t1_inner(&inner, f, 1);
	for (unsigned c = 0; c < 2; c++) {
		payload_event(&ev, &inner, c == 0 ? 0 : 255, 0, T1_END);
		f->n = 0;
		assert_int_equal(feed_t1_payload(f, &ev, &err), 0);
		rows_text(f, rows, sizeof(rows));
		assert_string_equal(rows, "a1 a2 a3");
		for (int i = 0; i < 3; i++)
			assert_string_equal(f->recs[i + 1].pos, pos[i]);
		assert_true(has_commit_at(f, T1_END));
		assert_int_equal(tor_reader_feed(f->rd, f->data + T1_END,
		    event_size(f, T1_END), &err), 0);
	}
	free(inner.b);
	free(ev.b);
}

/* A payload of 320 KB of events (4,000 rows events) is read through a
 * buffer that holds a few of them: every row, in order, row indices 0 to
 * 11,999 of one group. */
static void
test_payload_big_transaction(void **state)
{
	struct fx *f = *state;
	struct payload inner = { 0 }, ev = { 0 };
	tor_err err = { "" };
	const char *idx;

	t1_inner(&inner, f, 4000);
	assert_true(inner.n > 300000);
	payload_event(&ev, &inner, 0, 0, T1_END);
	assert_int_equal(feed_t1_payload(f, &ev, &err), 0);
	assert_int_equal(f->rows_seen, 12000);
	idx = strrchr(f->last_pos, ':');
	assert_non_null(idx);
	assert_string_equal(idx, ":11999");
	assert_int_equal(f->last_end, T1_END);
	free(inner.b);
	free(ev.b);
}

/* Payloads that lie halt the reader, naming the payload's position and
 * what is wrong; nothing of them is handed out as a committed group. */
static void
test_payload_bad_halts(void **state)
{
	struct fx *f = *state;
	struct payload inner = { 0 }, ev = { 0 };
	tor_err err = { "" };

	t1_inner(&inner, f, 1);
	/* The compressed data cut short (sizes fixed up to match). */
	payload_event(&ev, &inner, 0, 0, T1_END);
	{
		struct payload cut = { 0 }, head = { 0 };
		size_t clen = ZSTD_compressBound(inner.n);
		uint8_t *c = malloc(clen);

		clen = ZSTD_compress(c, clen, inner.b, inner.n, 3);
		pl_field(&head, 2, 0);
		pl_field(&head, 3, inner.n);
		pl_field(&head, 1, clen - 8);
		pl_packed(&head, 0);
		pl_put(&head, c, clen - 8);
		pl_le(&cut, 1700000000, 4);
		pl_le(&cut, 40, 1);
		pl_le(&cut, 1, 4);
		pl_le(&cut, 19 + head.n + 4, 4);
		pl_le(&cut, T1_END, 4);
		pl_le(&cut, 0, 2);
		pl_put(&cut, head.b, head.n);
		pl_le(&cut, crc32(0L, cut.b, (uInt)cut.n), 4);
		assert_int_equal(feed_t1_payload(f, &cut, &err), -1);
		assert_non_null(strstr(err.msg, "TRANSACTION_PAYLOAD"));
		assert_non_null(strstr(err.msg, "binlog event at " FILE_NAME
		    ":"));
		assert_false(has_commit_at(f, T1_END));
		free(c);
		free(cut.b);
		free(head.b);
	}
	/* An uncompressed size that is not the events': found only at the
	 * end, once its events (whole and decoded) were read, its commit
	 * included; the reader halts there all the same. */
	f->n = 0;
	payload_event(&ev, &inner, 0, inner.n + 100, T1_END);
	assert_int_equal(feed_t1_payload(f, &ev, &err), -1);
	assert_non_null(strstr(err.msg, "TRANSACTION_PAYLOAD"));
	assert_non_null(strstr(err.msg, "the event says"));
	/* An inner event whose size runs past the payload. */
	f->n = 0;
	inner.b[9 + 2] = 0x10;
	payload_event(&ev, &inner, 255, 0, T1_END);
	assert_int_equal(feed_t1_payload(f, &ev, &err), -1);
	assert_non_null(strstr(err.msg, "offset 0"));
	assert_non_null(strstr(err.msg, "says it is"));
	/* A payload inside a payload. */
	f->n = 0;
	{
		struct payload nested = { 0 };

		t1_inner(&inner, f, 1);
		inner.n = 0;
		t1_inner(&inner, f, 1);
		payload_event(&ev, &inner, 255, 0, T1_END);
		nested.n = 0;
		pl_put(&nested, ev.b, ev.n - 4);
		nested.b[9] = (uint8_t)(ev.n - 4);
		nested.b[10] = (uint8_t)((ev.n - 4) >> 8);
		payload_event(&ev, &nested, 255, 0, T1_END);
		assert_int_equal(feed_t1_payload(f, &ev, &err), -1);
		assert_non_null(strstr(err.msg, "holds a TRANSACTION_PAYLOAD"));
		free(nested.b);
	}
	/* An unknown compression type. */
	f->n = 0;
	payload_event(&ev, &inner, 7, 0, T1_END);
	assert_int_equal(feed_t1_payload(f, &ev, &err), -1);
	assert_non_null(strstr(err.msg, "compression type 7"));
	free(inner.b);
	free(ev.b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_whole_file, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_row_code_ends_the_feed,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_second_break_keeps_the_larger_skip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rollback_ends_the_group,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_xa_commit_and_rollback,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_skip_until, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_incident_halts, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_gtid_start_has_no_position_before_a_commit, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_rows_before_a_group_open_one, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_rows_before_a_group_read_again_once, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_reopened_stream_forgets_later_table_maps, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_tagged_gtid_names_the_rows, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_payload_reads_like_plain_events, setup, teardown),
		cmocka_unit_test_setup_teardown(test_payload_big_transaction,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_payload_bad_halts, setup,
		    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
