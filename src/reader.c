/*
 * The source-transaction reader (see include/tor/reader.h).
 *
 * The reader follows the binlog's groups: a GTID event or BEGIN opens one;
 * XID, COMMIT, ROLLBACK, XA_PREPARE, XA COMMIT/ROLLBACK or the end of a
 * standalone statement closes it at the position after its last event.
 * Rows inserted into an outbox table become messages handed to the owner
 * with the owner's number for their transaction.  Positions are taken only
 * at group boundaries, where every server writes real ones; a stream that
 * starts from a GTID has none until its first group ends.
 *
 * Two ideas keep what is handed out exact.  A group read again (the stream
 * broke inside it, or Kafka already has part of it) hands out only the rows
 * past the most it handed out before.  And an XA transaction's rows, which
 * the binlog holds at XA PREPARE, wait in memory until its XA COMMIT (then
 * they are handed out as that group's rows) or XA ROLLBACK (then they are
 * dropped); meanwhile the owner holds the checkpoint before the prepare, so
 * a restart reads them again.
 *
 * An event the reader cannot take (it does not decode, or its type is one
 * nobody taught us and the server did not mark ignorable) stops it with an
 * error that names the binlog file and the position where the event
 * starts: skipping it could skip outbox rows.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tor/binlog_payload.h"
#include "tor/log.h"
#include "tor/reader.h"

/* What the prepared XA transactions may hold in memory, together (their
 * rows' copies, counted whole): a prepare that never ends keeps its rows
 * for ever, and the transactions after it add theirs. */
#define XA_MAX_BYTES (64u << 20)

/* The latest table map of one outbox table. */
struct table_slot {
	bool valid;
	uint64_t table_id;
	uint8_t *raw;           /* the TABLE_MAP body it was decoded from */
	size_t raw_len;
	struct tor_table_map tm;
	struct tor_value *values;
};

/* The outbox rows of one XA transaction, from its prepare to its end. */
struct xa_txn {
	char xid[TOR_XID_TEXT];
	struct tor_message **rows;      /* copies (tor_outbox_message_copy) */
	size_t n, cap, bytes;
	uint64_t hold_seq;              /* the prepare's, held; 0: none */
	char at[300];                   /* "<file>:<start>" of the prepare */
	int64_t prepared_ms;            /* its binlog time */
	struct xa_txn *next;
};

struct tor_reader {
	const struct tor_config *cfg;
	struct tor_outbox *outbox;
	struct tor_metrics *metrics;
	struct tor_reader_ops ops;
	void *ctx;
	uint64_t epoch;

	struct tor_format fmt;
	struct table_slot *slots;       /* one per cfg->outbox.tables entry */
	char file[256];                 /* binlog file being read */
	uint64_t ev_pos;                /* the next event starts here or later */
	uint64_t ev_start;              /* the event being fed: its start, */
	bool ev_start_known;            /* or unknown (after ev_pos) */
	struct tor_payload *payload;    /* TRANSACTION_PAYLOAD's events */
	bool in_payload;                /* feeding them now */
	struct tor_position read_pos;   /* end of the last group read */
	bool positioned;                /* read_pos has a real file:pos */

	/* What is published already (tor_reader_skip_until). */
	struct tor_position done;
	uint32_t done_rows;
	bool has_done;

	/* The group being read. */
	bool in_txn;
	bool rereading;                 /* it broke off: read it again */
	bool silent;                    /* published already: hand out none */
	bool standalone;
	bool has_gtid;
	struct tor_gtid gtid;
	uint64_t txn_seq;
	uint64_t txn_start_pos;
	uint32_t txn_rows;              /* outbox rows seen in it */
	uint32_t skip_rows;             /* the most handed out before */
	char pos_prefix[320];           /* its rows' tor.pos before the index */
	size_t pos_prefix_len;          /* 0: not formatted yet */
	int64_t txn_ts_ms;

	/* XA: the prepare group being read (rows wait), and the prepared
	 * transactions waiting for their end. */
	bool xa_group;
	struct xa_txn *xa_open;
	struct xa_txn *xa_pending;
	size_t xa_bytes;

	struct tor_reader_counts counts;
};

static void
count_skip(struct tor_reader *rd, enum tor_skip_reason why, const char *pos)
{
	atomic_fetch_add_explicit(&rd->metrics->skipped[why], 1,
	    memory_order_relaxed);
	if (rd->ops.skipped != NULL)
		rd->ops.skipped(rd->ctx, why, pos);
}

struct tor_reader *
tor_reader_new(const struct tor_config *cfg, struct tor_outbox *outbox,
    struct tor_metrics *metrics, const struct tor_reader_ops *ops, void *ctx,
    const struct tor_position *start)
{
	struct tor_reader *rd = calloc(1, sizeof(*rd));

	if (rd == NULL)
		return NULL;
	rd->slots = calloc(cfg->outbox.n_tables ? cfg->outbox.n_tables : 1,
	    sizeof(*rd->slots));
	if (rd->slots == NULL) {
		free(rd);
		return NULL;
	}
	rd->cfg = cfg;
	rd->outbox = outbox;
	rd->metrics = metrics;
	rd->ops = *ops;
	rd->ctx = ctx;
	rd->read_pos = *start;
	rd->positioned = start->file[0] != '\0';
	snprintf(rd->file, sizeof(rd->file), "%s", start->file);
	rd->ev_pos = start->pos;
	tor_format_init(&rd->fmt, false);
	return rd;
}

static void
slot_clear(struct table_slot *s)
{
	free(s->raw);
	free(s->values);
	tor_table_map_free(&s->tm);
	memset(s, 0, sizeof(*s));
}

static void
xa_free(struct tor_reader *rd, struct xa_txn *x)
{
	if (x == NULL)
		return;
	for (size_t i = 0; i < x->n; i++)
		free(x->rows[i]);
	rd->xa_bytes -= x->bytes;
	free(x->rows);
	free(x);
}

void
tor_reader_free(struct tor_reader *rd)
{
	struct xa_txn *x, *next;

	if (rd == NULL)
		return;
	for (size_t i = 0; i < rd->cfg->outbox.n_tables; i++)
		slot_clear(&rd->slots[i]);
	free(rd->slots);
	xa_free(rd, rd->xa_open);
	for (x = rd->xa_pending; x != NULL; x = next) {
		next = x->next;
		xa_free(rd, x);
	}
	tor_payload_free(rd->payload);
	free(rd);
}

void
tor_reader_set_epoch(struct tor_reader *rd, uint64_t epoch)
{
	rd->epoch = epoch;
}

void
tor_reader_skip_until(struct tor_reader *rd, const struct tor_position *done,
    uint32_t rows)
{
	rd->done = *done;
	rd->done_rows = rows;
	rd->has_done = done->file[0] != '\0';
	if (!rd->has_done && rows > 0)
		rd->skip_rows = rows;   /* the first group read, by GTID */
}

void
tor_reader_reset_format(struct tor_reader *rd, bool checksum)
{
	tor_format_init(&rd->fmt, checksum);
}

void
tor_reader_reopened(struct tor_reader *rd)
{
	/* The stream says again which table each id is: a map read past the
	 * resume point must not decode the events before it.  The raw bytes
	 * stay, so the same map read again is not decoded again. */
	for (size_t i = 0; i < rd->cfg->outbox.n_tables; i++)
		rd->slots[i].valid = false;
	if (!rd->in_txn)
		return;
	/* The group is read again from its start.  A second break may come
	 * before the first break's point: keep the most handed out. */
	if (rd->txn_rows > rd->skip_rows)
		rd->skip_rows = rd->txn_rows;
	rd->rereading = true;
}

const struct tor_position *
tor_reader_resume(const struct tor_reader *rd)
{
	return &rd->read_pos;
}

static int
blame_at(const struct tor_reader *rd, uint64_t start, bool known,
    tor_err *err)
{
	if (rd->in_payload)
		tor_err_prefix(err, "its event at offset %" PRIu64 ": ",
		    tor_payload_offset(rd->payload));
	if (rd->file[0] == '\0')
		return tor_err_prefix(err, "binlog event at the stream's start "
		    "(before its first ROTATE): ");
	if (!known)
		return tor_err_prefix(err, "binlog event in %s after %" PRIu64
		    ": ", rd->file, start);
	return tor_err_prefix(err, "binlog event at %s:%" PRIu64 ": ",
	    rd->file, start);
}

int
tor_reader_blame(const struct tor_reader *rd, uint64_t start, tor_err *err)
{
	if (start != 0 && start >= rd->ev_pos)
		return blame_at(rd, start, true, err);
	return blame_at(rd, rd->ev_pos, false, err);
}

/* The event being fed did not decode, or cannot be taken: err names it. */
static int
bad_event(const struct tor_reader *rd, tor_err *err)
{
	return blame_at(rd, rd->ev_start, rd->ev_start_known, err);
}

bool
tor_reader_in_txn(const struct tor_reader *rd)
{
	return rd->in_txn;
}

uint32_t
tor_reader_txn_rows(const struct tor_reader *rd)
{
	return rd->txn_rows > rd->skip_rows ? rd->txn_rows : rd->skip_rows;
}

void
tor_reader_counts(const struct tor_reader *rd, struct tor_reader_counts *out)
{
	*out = rd->counts;
}

static struct table_slot *
slot_by_table_id(struct tor_reader *rd, uint64_t table_id)
{
	for (size_t i = 0; i < rd->cfg->outbox.n_tables; i++)
		if (rd->slots[i].valid && rd->slots[i].table_id == table_id)
			return &rd->slots[i];
	return NULL;
}

static int
on_table_map(struct tor_reader *rd, const struct tor_event *ev, tor_err *err)
{
	const char *schema, *table;
	size_t schema_len, table_len;
	uint64_t table_id;
	struct table_slot *s;
	int idx;

	if (tor_table_map_peek(ev, &rd->fmt, &table_id, &schema, &schema_len,
	    &table, &table_len, err) < 0)
		return bad_event(rd, err);
	idx = tor_outbox_find_table(rd->outbox, schema, schema_len, table,
	    table_len);
	if (idx < 0) {
		/* Table ids are reused for other tables: forget a stale one. */
		if ((s = slot_by_table_id(rd, table_id)) != NULL)
			s->valid = false;
		return 0;
	}
	s = &rd->slots[idx];
	if (s->raw != NULL && s->raw_len == ev->body_len &&
	    memcmp(s->raw, ev->body, ev->body_len) == 0) {
		s->valid = true;
		return 0;
	}
	slot_clear(s);
	if (tor_table_map_parse(ev, &rd->fmt, &s->tm, err) < 0)
		return bad_event(rd, err);
	if ((!s->tm.has_names || tor_table_map_has_old_temporal(&s->tm)) &&
	    rd->ops.describe(rd->ctx, &s->tm, err) < 0)
		goto fail;
	if (tor_outbox_bind(rd->outbox, idx, &s->tm, err) < 0)
		goto fail;
	for (uint32_t c = 0; c < s->tm.ncols; c++)
		s->tm.cols[c].skip = !tor_outbox_uses_column(rd->outbox, idx, c);
	s->raw = malloc(ev->body_len);
	s->values = calloc(s->tm.ncols ? s->tm.ncols : 1, sizeof(*s->values));
	if (s->raw == NULL || s->values == NULL) {
		tor_err_set(err, "out of memory");
		goto fail;
	}
	memcpy(s->raw, ev->body, ev->body_len);
	s->raw_len = ev->body_len;
	s->table_id = table_id;
	s->valid = true;
	log_info("outbox", "table map of %s.%s: table id %" PRIu64 ", %" PRIu32
	    " columns", s->tm.schema, s->tm.table, table_id, s->tm.ncols);
	return 0;
fail:
	slot_clear(s);
	return bad_event(rd, err);
}

/* "<gtid>:<row>" where the group has a GTID, else "<file>:<start
 * pos>:<row>".  The part before the row index is formatted once per group. */
static void
format_row_pos(struct tor_reader *rd, uint32_t row, char *buf, size_t cap)
{
	char digits[10];
	size_t n = 0, len;

	if (rd->pos_prefix_len == 0) {
		char gtid[96];
		int w;

		if (rd->has_gtid) {
			tor_gtid_format(&rd->gtid, gtid, sizeof(gtid));
			w = snprintf(rd->pos_prefix, sizeof(rd->pos_prefix),
			    "%s:", gtid);
		} else {
			w = snprintf(rd->pos_prefix, sizeof(rd->pos_prefix),
			    "%s:%" PRIu64 ":", rd->file, rd->txn_start_pos);
		}
		rd->pos_prefix_len = w < 0 ? 0 : (size_t)w >=
		    sizeof(rd->pos_prefix) ? sizeof(rd->pos_prefix) - 1 :
		    (size_t)w;
	}
	do {
		digits[n++] = (char)('0' + row % 10);
		row /= 10;
	} while (row > 0);
	len = rd->pos_prefix_len;
	if (len + n + 1 > cap)
		len = cap - n - 1;
	memcpy(buf, rd->pos_prefix, len);
	while (n > 0)
		buf[len++] = digits[--n];
	buf[len] = '\0';
}

/*
 * Hands out one row of the group being read: the next row index, unless
 * rows up to it were handed out before (a group read again) or the group
 * is published already.  msg carries the row and origin where it was
 * mapped from; an XA row waiting since its prepare (origin NULL) gets this
 * group's tor.pos, token and time here.
 */
static int
hand_out(struct tor_reader *rd, struct tor_message *msg,
    const struct tor_row_origin *origin, tor_err *err)
{
	struct tor_row_origin now;
	char pos[512];
	uint32_t row = rd->txn_rows++;

	if (rd->silent || row < rd->skip_rows)
		return 0;
	if (origin == NULL) {
		format_row_pos(rd, row, pos, sizeof(pos));
		now = (struct tor_row_origin){
			.pos = pos,
			.epoch = rd->epoch,
			.ts_ms = rd->txn_ts_ms,
		};
		tor_outbox_restamp(rd->outbox, msg, &now);
		origin = &now;
	}
	rd->counts.rows++;
	return rd->ops.row(rd->ctx, rd->txn_seq, msg, origin, err);
}

/* An XA prepare group's row: kept until the transaction ends. */
static int
xa_keep(struct tor_reader *rd, const struct tor_message *msg, tor_err *err)
{
	struct xa_txn *x = rd->xa_open;
	struct tor_message *copy;

	if (x == NULL && (x = rd->xa_open = calloc(1, sizeof(*x))) == NULL)
		return tor_err_set(err, "out of memory");
	if (x->n == x->cap) {
		size_t cap = x->cap ? 2 * x->cap : 16;
		struct tor_message **rows = realloc(x->rows,
		    cap * sizeof(*rows));

		if (rows == NULL)
			return tor_err_set(err, "out of memory");
		x->rows = rows;
		x->cap = cap;
	}
	if ((copy = tor_outbox_message_copy(msg)) == NULL)
		return tor_err_set(err, "out of memory");
	x->rows[x->n++] = copy;
	x->bytes += tor_outbox_copy_size(msg) + sizeof(*x->rows);
	rd->xa_bytes += tor_outbox_copy_size(msg) + sizeof(*x->rows);
	if (rd->xa_bytes > XA_MAX_BYTES)
		return tor_err_set(err, "binlog: prepared XA transactions hold "
		    "more than %u MiB of outbox rows (the group at %s:%" PRIu64
		    " adds to them): tor keeps them in memory until their XA "
		    "COMMIT; commit or roll back the prepared transactions",
		    XA_MAX_BYTES >> 20, rd->file, rd->txn_start_pos);
	return 0;
}

static int txn_begin(struct tor_reader *, const struct tor_event *, tor_err *);

static int
on_rows(struct tor_reader *rd, const struct tor_event *ev, tor_err *err)
{
	struct tor_rows rows;
	struct table_slot *s;
	int rc;

	if (tor_rows_parse(ev, &rd->fmt, &rows, err) < 0)
		return bad_event(rd, err);
	s = slot_by_table_id(rd, rows.table_id);
	if (s == NULL) {
		tor_rows_free(&rows);
		return 0;
	}
	/* Rows before any GTID or BEGIN (a stream started inside a
	 * transaction, at its TABLE_MAP) open a group of their own, as BEGIN
	 * would, and start it again when it is read again: the owner counts
	 * rows only in a transaction it was told of, and once. */
	if ((!rd->in_txn || rd->rereading) &&
	    (rc = txn_begin(rd, ev, err)) != 0) {
		tor_rows_free(&rows);
		return rc;
	}
	/* Updates and deletes of outbox rows are not published: counted by
	 * event, their images never decoded, so that an image tor cannot
	 * read (a partial JSON update, a MINIMAL image) cannot stop it. */
	if (rows.kind != TOR_ROWS_WRITE) {
		bool update = rows.kind == TOR_ROWS_UPDATE;

		if (update)
			rd->counts.updated++;
		else
			rd->counts.deleted++;
		count_skip(rd, update ? TOR_SKIP_UPDATE : TOR_SKIP_DELETE,
		    NULL);
		tor_rows_free(&rows);
		return 0;
	}
	for (;;) {
		struct tor_message msg;
		struct tor_row_origin origin;
		char pos[512];

		/* A row that does not decode is the event's fault; a row that
		 * does not map or publish names itself (its tor.pos). */
		if ((rc = tor_rows_next(&rows, &s->tm, s->values, err)) != 1) {
			if (rc < 0)
				bad_event(rd, err);
			break;
		}
		format_row_pos(rd, rd->txn_rows, pos, sizeof(pos));
		origin = (struct tor_row_origin){
			.pos = pos,
			.epoch = rd->epoch,
			.ts_ms = rd->txn_ts_ms,
		};
		rc = tor_outbox_map(rd->outbox, (int)(s - rd->slots), s->values,
		    &origin, &msg, err);
		if (rc < 0)
			break;
		if (rc == TOR_OUTBOX_SKIPPED) {
			rd->counts.skipped++;
			count_skip(rd, TOR_SKIP_UNROUTED, pos);
			continue;
		}
		if (rd->xa_group) {
			rd->txn_rows++;
			rc = xa_keep(rd, &msg, err);
		} else
			rc = hand_out(rd, &msg, &origin, err);
		if (rc != 0)
			break;
	}
	tor_rows_free(&rows);
	return rc;
}

/* Whether a group that starts at the current read position is published
 * already (everything up to rd->done is). */
static bool
published_already(struct tor_reader *rd, uint64_t start)
{
	struct tor_position here;
	int c;

	if (!rd->has_done || !rd->positioned)
		return false;
	memset(&here, 0, sizeof(here));
	snprintf(here.file, sizeof(here.file), "%s", rd->file);
	here.pos = start;
	c = tor_position_compare(&here, &rd->done);
	if (c == 0 && rd->done_rows > rd->skip_rows)
		rd->skip_rows = rd->done_rows;  /* the group done in part */
	return c < 0;
}

/* Ends the group being read at end_pos: the owner is told, and the end
 * becomes the resume position. */
static int
end_group(struct tor_reader *rd, uint64_t end_pos, int64_t ts_ms, tor_err *err)
{
	struct tor_reader_end end = {
		.file = rd->file,
		.pos = end_pos,
		.gtid = rd->has_gtid ? &rd->gtid : NULL,
		.ts_ms = ts_ms,
	};
	int rc;

	if ((rc = rd->ops.commit(rd->ctx, &end, err)) != 0)
		return rc;
	snprintf(rd->read_pos.file, sizeof(rd->read_pos.file), "%s", rd->file);
	rd->read_pos.pos = end_pos;
	rd->positioned = true;
	rd->in_txn = false;
	rd->rereading = false;
	rd->silent = false;
	rd->standalone = false;
	rd->has_gtid = false;
	rd->xa_group = false;
	rd->skip_rows = 0;
	rd->txn_rows = 0;
	return 0;
}

static int
txn_begin(struct tor_reader *rd, const struct tor_event *ev, tor_err *err)
{
	uint64_t start = ev->next_pos >= ev->size ? ev->next_pos - ev->size : 0;
	int rc;

	if (rd->in_txn && !rd->rereading) {
		log_warn("binlog", "the group at %s:%" PRIu64 " has no COMMIT, "
		    "XID or ROLLBACK the reader knows before the next group at "
		    "%" PRIu64 "; taking it as ended there", rd->file,
		    rd->txn_start_pos, start);
		if ((rc = end_group(rd, start, rd->txn_ts_ms, err)) != 0)
			return rc;
	}
	if (!rd->rereading) {
		rd->txn_start_pos = start;
		rd->silent = published_already(rd, start);
	}
	rd->in_txn = true;
	rd->rereading = false;
	rd->txn_rows = 0;
	rd->pos_prefix_len = 0;
	rd->xa_group = false;
	rd->txn_ts_ms = (int64_t)ev->timestamp * 1000;
	xa_free(rd, rd->xa_open);
	rd->xa_open = NULL;
	return rd->ops.begin(rd->ctx, &rd->txn_seq, err);
}

static int
txn_commit(struct tor_reader *rd, const struct tor_event *ev, tor_err *err)
{
	int rc;

	if (!rd->in_txn && (rc = txn_begin(rd, ev, err)) != 0)
		return rc;
	return end_group(rd, ev->next_pos, (int64_t)ev->timestamp * 1000, err);
}

static bool
sql_is(const struct tor_query *q, const char *word)
{
	size_t n = strlen(word);

	return q->sql_len == n && strncasecmp(q->sql, word, n) == 0;
}

/* The XID after "XA COMMIT " or "XA ROLLBACK " in q (prefix matched
 * without case), copied into xid; false when q is not that statement. */
static bool
xa_statement(const struct tor_query *q, const char *prefix, char *xid,
    size_t cap)
{
	size_t n = strlen(prefix), len;

	if (q->sql_len <= n || strncasecmp(q->sql, prefix, n) != 0)
		return false;
	len = q->sql_len - n;
	while (len > 0 && (q->sql[n + len - 1] == ' ' ||
	    q->sql[n + len - 1] == ';'))
		len--;
	snprintf(xid, cap, "%.*s", (int)len, q->sql + n);
	return true;
}

static struct xa_txn *
xa_take(struct tor_reader *rd, const char *xid)
{
	struct xa_txn **at, *x;

	for (at = &rd->xa_pending; (x = *at) != NULL; at = &x->next)
		if (strcmp(x->xid, xid) == 0) {
			*at = x->next;
			x->next = NULL;
			return x;
		}
	return NULL;
}

/*
 * XA COMMIT or XA ROLLBACK of a prepared transaction: its waiting rows are
 * handed out as this group's (commit) or dropped (rollback), the hold on
 * the checkpoint goes, and the group ends.
 */
static int
xa_end(struct tor_reader *rd, const struct tor_event *ev, const char *xid,
    bool commit, tor_err *err)
{
	struct xa_txn *x = xa_take(rd, xid);
	int rc = 0;

	if (!rd->in_txn && (rc = txn_begin(rd, ev, err)) != 0)
		return rc;
	if (x == NULL) {
		log_warn("binlog", "XA %s %s at %s:%" PRIu64 ": its XA PREPARE "
		    "was not read by this stream (it is before where the "
		    "stream started); outbox rows it held, if any, are not "
		    "published", commit ? "COMMIT" : "ROLLBACK", xid, rd->file,
		    rd->txn_start_pos);
		return txn_commit(rd, ev, err);
	}
	for (size_t i = 0; commit && rc == 0 && i < x->n; i++)
		rc = hand_out(rd, x->rows[i], NULL, err);
	if (rc == 0) {
		if (x->hold_seq != 0)
			rd->ops.release(rd->ctx, x->hold_seq);
		xa_free(rd, x);
		return txn_commit(rd, ev, err);
	}
	/* Stopped half-way: the group is read again, and so is the prepare
	 * (the owner drops this reader). */
	x->next = rd->xa_pending;
	rd->xa_pending = x;
	return rc;
}

static int
on_query(struct tor_reader *rd, const struct tor_event *ev, tor_err *err)
{
	struct tor_query q;
	char xid[TOR_XID_TEXT];
	int rc = 0;

	if (tor_query_parse(ev, &rd->fmt, &q, err) < 0)
		return bad_event(rd, err);
	if (sql_is(&q, "BEGIN")) {
		if (!rd->in_txn || rd->rereading)
			rc = txn_begin(rd, ev, err);
	} else if (sql_is(&q, "COMMIT") || sql_is(&q, "ROLLBACK")) {
		/* ROLLBACK ends a group that changed a table that cannot
		 * roll back: its changes stay, the group is whole. */
		rc = txn_commit(rd, ev, err);
	} else if (xa_statement(&q, "XA COMMIT ", xid, sizeof(xid))) {
		rc = xa_end(rd, ev, xid, true, err);
	} else if (xa_statement(&q, "XA ROLLBACK ", xid, sizeof(xid))) {
		rc = xa_end(rd, ev, xid, false, err);
	} else if (xa_statement(&q, "XA START ", xid, sizeof(xid))) {
		rd->xa_group = true;            /* MySQL marks it so */
	} else if (xa_statement(&q, "XA END ", xid, sizeof(xid))) {
		/* the XA_PREPARE event after it ends the group */
	} else if (!rd->in_txn || rd->standalone) {
		/* DDL and other statements that are their own group. */
		rc = txn_commit(rd, ev, err);
	}
	tor_query_free(&q);
	return rc;
}

/* XA_PREPARE ends a prepare group; with one_phase it is the commit. */
static int
on_xa_prepare(struct tor_reader *rd, const struct tor_event *ev, tor_err *err)
{
	struct xa_txn *x;
	bool one_phase;
	char xid[TOR_XID_TEXT];
	int rc = 0;

	if (tor_xa_prepare_parse(ev, &rd->fmt, &one_phase, xid, sizeof(xid),
	    err) < 0)
		return bad_event(rd, err);
	if (!rd->in_txn && (rc = txn_begin(rd, ev, err)) != 0)
		return rc;
	x = rd->xa_open;
	rd->xa_open = NULL;
	rd->xa_group = false;
	if (one_phase) {
		for (size_t i = 0; x != NULL && rc == 0 && i < x->n; i++)
			rc = hand_out(rd, x->rows[i], NULL, err);
		xa_free(rd, x);
		return rc != 0 ? rc : txn_commit(rd, ev, err);
	}
	if (x == NULL && (x = calloc(1, sizeof(*x))) == NULL)
		return tor_err_set(err, "out of memory");
	snprintf(x->xid, sizeof(x->xid), "%s", xid);
	/* The prepare's rows live only in this group of the binlog: the
	 * checkpoint stays before it until the transaction ends. */
	if (x->n > 0 && (rc = rd->ops.hold(rd->ctx, rd->txn_seq, err)) != 0) {
		xa_free(rd, x);
		return rc;
	}
	if (x->n > 0)
		x->hold_seq = rd->txn_seq;
	snprintf(x->at, sizeof(x->at), "%s:%" PRIu64, rd->file,
	    rd->txn_start_pos);
	x->prepared_ms = (int64_t)ev->timestamp * 1000;
	x->next = rd->xa_pending;
	rd->xa_pending = x;
	return txn_commit(rd, ev, err);
}

static int
on_gtid(struct tor_reader *rd, const struct tor_event *ev, tor_err *err)
{
	struct tor_gtid g;
	char a[96], b[96];
	int rc;

	if (tor_gtid_parse(ev, &rd->fmt, &g, err) < 0)
		return bad_event(rd, err);
	/* The group read again must be the one that broke off. */
	if (rd->rereading && rd->has_gtid &&
	    ev->type != TOR_EV_MYSQL_ANONYMOUS_GTID &&
	    (g.mariadb != rd->gtid.mariadb || g.seq_no != rd->gtid.seq_no ||
	    g.domain_id != rd->gtid.domain_id || g.gno != rd->gtid.gno ||
	    memcmp(g.sid, rd->gtid.sid, sizeof(g.sid)) != 0 ||
	    strcmp(g.tag, rd->gtid.tag) != 0)) {
		tor_gtid_format(&rd->gtid, a, sizeof(a));
		tor_gtid_format(&g, b, sizeof(b));
		return tor_err_set(err, "binlog: the stream reopened at %s:%"
		    PRIu64 " began with transaction %s, not %s, which it was "
		    "reading when it broke", rd->read_pos.file,
		    rd->read_pos.pos, b, a);
	}
	if ((rc = txn_begin(rd, ev, err)) != 0)
		return rc;
	rd->gtid = g;
	rd->has_gtid = ev->type != TOR_EV_MYSQL_ANONYMOUS_GTID;
	rd->standalone = g.mariadb && g.standalone;
	rd->xa_group = g.mariadb && g.xa_prepare;
	if (!g.mariadb)
		rd->standalone = true;  /* until a BEGIN says otherwise */
	return 0;
}

static int
on_mysql_begin(struct tor_reader *rd, const struct tor_event *ev,
    bool *handled, tor_err *err)
{
	struct tor_query q;

	/* MySQL: a GTID then BEGIN is a multi-event transaction. */
	*handled = false;
	if (rd->gtid.mariadb || !rd->in_txn || !rd->standalone)
		return 0;
	if (tor_query_parse(ev, &rd->fmt, &q, err) < 0)
		return bad_event(rd, err);
	if (sql_is(&q, "BEGIN")) {
		rd->standalone = false;
		*handled = true;
	}
	tor_query_free(&q);
	return 0;
}

static int
on_rotate(struct tor_reader *rd, const struct tor_event *ev, tor_err *err)
{
	uint64_t pos;

	if (tor_rotate_parse(ev, &rd->fmt, rd->file, sizeof(rd->file), &pos,
	    err) < 0)
		return bad_event(rd, err);
	rd->ev_pos = pos;
	/* A stream from a GTID begins with an artificial ROTATE to the top
	 * of a file: not a position until a group ends there. */
	if (!rd->in_txn && rd->positioned) {
		snprintf(rd->read_pos.file, sizeof(rd->read_pos.file), "%s",
		    rd->file);
		rd->read_pos.pos = pos;
	}
	return rd->ops.rotate(rd->ctx, rd->file, pos, rd->positioned, err);
}

static int
on_incident(struct tor_reader *rd, const struct tor_event *ev, tor_err *err)
{
	static const char *const names[] = { "NONE", "LOST_EVENTS" };
	const char *msg;
	unsigned number;
	size_t len;

	if (tor_incident_parse(ev, &rd->fmt, &number, &msg, &len, err) < 0)
		return bad_event(rd, err);
	return tor_err_set(err, "binlog: incident %s (%u) at %s:%" PRIu32
	    ": \"%.*s\"; the server says events are missing from its binlog "
	    "here, so rows may be lost: tor stops rather than skip them "
	    "(check the server, then move the checkpoint past it with `tor "
	    "checkpoint set` once you know what to replay)",
	    number < 2 ? names[number] : "unknown", number, rd->file,
	    ev->next_pos >= ev->size ? ev->next_pos - ev->size : 0,
	    (int)(len > 200 ? 200 : len), msg);
}

/* Types that carry no outbox row: heartbeats, GTID lists and binlog
 * checkpoints, the context of statement-based events, MySQL's previous
 * GTIDs and group replication events, and partial JSON updates (updates of
 * outbox rows are ignored).  The reader reads past them. */
static bool
carries_no_rows(uint8_t type)
{
	switch (type) {
	case TOR_EV_STOP:
	case TOR_EV_INTVAR:
	case TOR_EV_APPEND_BLOCK:
	case TOR_EV_DELETE_FILE:
	case TOR_EV_RAND:
	case TOR_EV_USER_VAR:
	case TOR_EV_BEGIN_LOAD_QUERY:
	case TOR_EV_EXECUTE_LOAD_QUERY:
	case TOR_EV_HEARTBEAT:
	case TOR_EV_IGNORABLE:
	case TOR_EV_ROWS_QUERY:
	case TOR_EV_MYSQL_PREVIOUS_GTIDS:
	case TOR_EV_MYSQL_TRANSACTION_CONTEXT:
	case TOR_EV_MYSQL_VIEW_CHANGE:
	case TOR_EV_MYSQL_PARTIAL_UPDATE_ROWS:
	case TOR_EV_HEARTBEAT_V2:
	case TOR_EV_MARIADB_ANNOTATE_ROWS:
	case TOR_EV_MARIADB_BINLOG_CHECKPOINT:
	case TOR_EV_MARIADB_GTID_LIST:
	case TOR_EV_MARIADB_START_ENCRYPTION:
		return true;
	default:
		return false;
	}
}

/* An event of a type the reader does not decode: read past when it carries
 * no rows or the server marked it ignorable, else a halt (a newer server's
 * event, or a corrupted one, may hold rows). */
static int
on_other(struct tor_reader *rd, const struct tor_event *ev, tor_err *err)
{
	if (carries_no_rows(ev->type) || (ev->flags & TOR_EV_F_IGNORABLE))
		return 0;
	tor_err_set(err, "unknown event type %u (%" PRIu32 " bytes, flags "
	    "0x%04x, not marked ignorable): it may hold outbox rows, so tor "
	    "stops rather than skip it (a server newer than tor, or a "
	    "corrupted binlog)", ev->type, ev->size, ev->flags);
	return bad_event(rd, err);
}

/* Where the event in raw starts, for messages: its log_pos less its size,
 * unless that lies before the end of the last event (a size field that
 * lies, or a log_pos the server left 0: MariaDB 11.4+ inside a
 * transaction), when the received length may tell, else only "after the
 * last event".  The server skips events it does not send (ANNOTATE_ROWS),
 * so the end of the last event is not always the next one's start. */
static void
locate(struct tor_reader *rd, const uint8_t *raw, size_t len)
{
	uint64_t size, pos;

	rd->ev_start = rd->ev_pos;
	rd->ev_start_known = false;
	if (len < 17)
		return;
	size = (uint64_t)raw[9] | (uint64_t)raw[10] << 8 |
	    (uint64_t)raw[11] << 16 | (uint64_t)raw[12] << 24;
	pos = (uint64_t)raw[13] | (uint64_t)raw[14] << 8 |
	    (uint64_t)raw[15] << 16 | (uint64_t)raw[16] << 24;
	if (pos == 0)
		return;
	if (size <= pos && pos - size >= rd->ev_pos)
		rd->ev_start = pos - size;
	else if (len <= pos && pos - len >= rd->ev_pos)
		rd->ev_start = pos - len;
	else
		return;
	rd->ev_start_known = true;
}

/* After an event: the next one starts at its log_pos or later.  A log_pos
 * of 0 (an artificial event, MariaDB 11.4+ inside a transaction) says
 * nothing, and a FORMAT_DESCRIPTION replayed at a stream's start inside a
 * file carries the log_pos of the file's top: positions only move forward
 * within a file. */
static void
advance(struct tor_reader *rd, const struct tor_event *ev)
{
	if (ev->next_pos > rd->ev_pos)
		rd->ev_pos = ev->next_pos;
}

static int dispatch(struct tor_reader *, const struct tor_event *, tor_err *);

/*
 * A MySQL compressed transaction: its events, read out one at a time, are
 * dispatched as if the server had sent them, except that each takes the
 * payload's place in the binlog (its start and end).  So the group's
 * positions, tor.pos and the checkpoint are those of the payload, and a
 * resume lands before or after it, never inside.  The inner events carry
 * no checksums.
 */
static int
on_payload(struct tor_reader *rd, const struct tor_event *ev, tor_err *err)
{
	struct tor_payload_info info;
	struct tor_format inner = rd->fmt;
	const uint8_t *raw;
	size_t len;
	int rc;

	if (tor_payload_parse(ev, &info, err) < 0)
		return bad_event(rd, err);
	if (rd->payload == NULL && (rd->payload = tor_payload_new()) == NULL) {
		tor_err_set(err, "TRANSACTION_PAYLOAD: out of memory");
		return bad_event(rd, err);
	}
	inner.checksum = false;
	tor_payload_start(rd->payload, &info);
	rd->in_payload = true;
	for (;;) {
		struct tor_event iev;

		if ((rc = tor_payload_next(rd->payload, &raw, &len, err)) <= 0) {
			if (rc < 0)
				bad_event(rd, err);
			break;
		}
		if (tor_event_parse(raw, len, &inner, &iev, err) < 0) {
			rc = bad_event(rd, err);
			break;
		}
		if (iev.type == TOR_EV_MYSQL_TRANSACTION_PAYLOAD ||
		    iev.type == TOR_EV_FORMAT_DESCRIPTION ||
		    iev.type == TOR_EV_ROTATE) {
			tor_err_set(err, "TRANSACTION_PAYLOAD holds a %s event, "
			    "which no transaction can hold",
			    tor_event_name(iev.type));
			rc = bad_event(rd, err);
			break;
		}
		iev.size = ev->size;
		iev.next_pos = ev->next_pos;
		if ((rc = dispatch(rd, &iev, err)) != 0)
			break;
	}
	rd->in_payload = false;
	return rc;
}

static int
dispatch(struct tor_reader *rd, const struct tor_event *ev, tor_err *err)
{
	uint64_t xid;
	bool handled;

	switch (ev->type) {
	case TOR_EV_FORMAT_DESCRIPTION:
		if (tor_format_parse(ev, &rd->fmt, err) < 0)
			return bad_event(rd, err);
		return 0;
	case TOR_EV_ROTATE:
		return on_rotate(rd, ev, err);
	case TOR_EV_MARIADB_GTID:
	case TOR_EV_MYSQL_GTID:
	case TOR_EV_MYSQL_ANONYMOUS_GTID:
	case TOR_EV_MYSQL_GTID_TAGGED:
		return on_gtid(rd, ev, err);
	case TOR_EV_QUERY:
	case TOR_EV_MARIADB_QUERY_COMPRESSED:
		if (on_mysql_begin(rd, ev, &handled, err) < 0)
			return -1;
		return handled ? 0 : on_query(rd, ev, err);
	case TOR_EV_XID:
		if (tor_xid_parse(ev, &rd->fmt, &xid, err) < 0)
			return bad_event(rd, err);
		return txn_commit(rd, ev, err);
	case TOR_EV_XA_PREPARE:
		return on_xa_prepare(rd, ev, err);
	case TOR_EV_TABLE_MAP:
		return on_table_map(rd, ev, err);
	case TOR_EV_WRITE_ROWS_V0:
	case TOR_EV_UPDATE_ROWS_V0:
	case TOR_EV_DELETE_ROWS_V0:
	case TOR_EV_WRITE_ROWS_V1:
	case TOR_EV_UPDATE_ROWS_V1:
	case TOR_EV_DELETE_ROWS_V1:
	case TOR_EV_WRITE_ROWS_V2:
	case TOR_EV_UPDATE_ROWS_V2:
	case TOR_EV_DELETE_ROWS_V2:
	case TOR_EV_MARIADB_WRITE_ROWS_COMPRESSED_V1:
	case TOR_EV_MARIADB_UPDATE_ROWS_COMPRESSED_V1:
	case TOR_EV_MARIADB_DELETE_ROWS_COMPRESSED_V1:
	case TOR_EV_MARIADB_WRITE_ROWS_COMPRESSED:
	case TOR_EV_MARIADB_UPDATE_ROWS_COMPRESSED:
	case TOR_EV_MARIADB_DELETE_ROWS_COMPRESSED:
		return on_rows(rd, ev, err);
	case TOR_EV_INCIDENT:
		return on_incident(rd, ev, err);
	case TOR_EV_MYSQL_TRANSACTION_PAYLOAD:
		return on_payload(rd, ev, err);
	default:
		return on_other(rd, ev, err);
	}
}

int
tor_reader_feed(struct tor_reader *rd, const uint8_t *raw, size_t len,
    tor_err *err)
{
	struct tor_event ev;
	int rc;

	locate(rd, raw, len);
	if (tor_event_parse(raw, len, &rd->fmt, &ev, err) < 0)
		return bad_event(rd, err);
	rd->counts.events++;
	atomic_fetch_add_explicit(&rd->metrics->events_read, 1,
	    memory_order_relaxed);
	rc = dispatch(rd, &ev, err);
	/* A ROTATE moved the position itself, to its new file. */
	if (rc == 0 && ev.type != TOR_EV_ROTATE)
		advance(rd, &ev);
	return rc;
}

void
tor_reader_prepared(const struct tor_reader *rd,
    struct tor_reader_prepared *out)
{
	const struct xa_txn *oldest = NULL;

	memset(out, 0, sizeof(*out));
	/* Newest first; only those with rows hold the checkpoint. */
	for (const struct xa_txn *x = rd->xa_pending; x != NULL; x = x->next)
		if (x->hold_seq != 0) {
			out->count++;
			oldest = x;
		}
	if (oldest == NULL)
		return;
	snprintf(out->xid, sizeof(out->xid), "%s", oldest->xid);
	snprintf(out->at, sizeof(out->at), "%s", oldest->at);
	out->since_ms = oldest->prepared_ms;
}
