/*
 * The source-transaction reader (see include/tor/reader.h).
 *
 * The reader follows the binlog's transactions: a GTID event or BEGIN opens
 * one, XID, COMMIT or the end of a standalone statement closes it at the
 * position of its last event.  Rows inserted into an outbox table become
 * messages handed to the owner with the owner's number for their
 * transaction.  Positions are taken only at transaction boundaries, where
 * every server writes real ones.
 *
 * A broken stream is reopened at the end of the last transaction read; the
 * rows of a transaction that were already handed out are skipped on replay.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tor/log.h"
#include "tor/reader.h"

/* The latest table map of one outbox table. */
struct table_slot {
	bool valid;
	uint64_t table_id;
	uint8_t *raw;           /* the TABLE_MAP body it was decoded from */
	size_t raw_len;
	struct tor_table_map tm;
	struct tor_value *values;
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
	struct tor_position read_pos;   /* end of the last transaction read */

	/* The transaction being read. */
	bool in_txn;
	bool standalone;
	bool has_gtid;
	struct tor_gtid gtid;
	uint64_t txn_seq;
	uint64_t txn_start_pos;
	uint32_t txn_rows;              /* outbox rows seen in it */
	uint32_t skip_rows;             /* already handed out before */
	char pos_prefix[320];           /* its rows' tor.pos before the index */
	size_t pos_prefix_len;          /* 0: not formatted yet */

	struct tor_reader_counts counts;
};

static void
count_skip(struct tor_reader *rd, enum tor_skip_reason why)
{
	atomic_fetch_add_explicit(&rd->metrics->skipped[why], 1,
	    memory_order_relaxed);
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
	snprintf(rd->file, sizeof(rd->file), "%s", start->file);
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

void
tor_reader_free(struct tor_reader *rd)
{
	if (rd == NULL)
		return;
	for (size_t i = 0; i < rd->cfg->outbox.n_tables; i++)
		slot_clear(&rd->slots[i]);
	free(rd->slots);
	free(rd);
}

void
tor_reader_set_epoch(struct tor_reader *rd, uint64_t epoch)
{
	rd->epoch = epoch;
}

void
tor_reader_skip_rows(struct tor_reader *rd, uint32_t rows)
{
	rd->skip_rows = rows;
}

void
tor_reader_reset_format(struct tor_reader *rd, bool checksum)
{
	tor_format_init(&rd->fmt, checksum);
}

void
tor_reader_reopened(struct tor_reader *rd)
{
	if (rd->in_txn) {
		/* The transaction is read again from its start; its rows
		 * handed out so far are not handed out twice. */
		rd->skip_rows = rd->txn_rows;
		rd->in_txn = false;
	}
}

const struct tor_position *
tor_reader_resume(const struct tor_reader *rd)
{
	return &rd->read_pos;
}

bool
tor_reader_in_txn(const struct tor_reader *rd)
{
	return rd->in_txn;
}

uint32_t
tor_reader_txn_rows(const struct tor_reader *rd)
{
	return rd->txn_rows;
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
		return -1;
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
		return -1;
	if (!s->tm.has_names && rd->ops.describe(rd->ctx, &s->tm, err) < 0)
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
	return -1;
}

/* "<gtid>:<row>" where the transaction has a GTID, else
 * "<file>:<start pos>:<row>".  The part before the row index is formatted
 * once per transaction. */
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

static int
on_rows(struct tor_reader *rd, const struct tor_event *ev, tor_err *err)
{
	struct tor_rows rows;
	struct table_slot *s;
	int rc;

	if (tor_rows_parse(ev, &rd->fmt, &rows, err) < 0)
		return -1;
	s = slot_by_table_id(rd, rows.table_id);
	if (s == NULL) {
		tor_rows_free(&rows);
		return 0;
	}
	while ((rc = tor_rows_next(&rows, &s->tm, s->values, err)) == 1) {
		struct tor_message msg;
		struct tor_row_origin origin;
		char pos[512];
		uint32_t row;

		if (rows.kind == TOR_ROWS_UPDATE) {
			rd->counts.updated++;
			count_skip(rd, TOR_SKIP_UPDATE);
			continue;
		}
		if (rows.kind == TOR_ROWS_DELETE) {
			rd->counts.deleted++;
			count_skip(rd, TOR_SKIP_DELETE);
			continue;
		}
		row = rd->txn_rows++;
		if (row < rd->skip_rows)
			continue;       /* handed out before the stream broke */
		format_row_pos(rd, row, pos, sizeof(pos));
		origin = (struct tor_row_origin){
			.pos = pos,
			.epoch = rd->epoch,
			.ts_ms = (int64_t)ev->timestamp * 1000,
		};
		rc = tor_outbox_map(rd->outbox, (int)(s - rd->slots), s->values,
		    &origin, &msg, err);
		if (rc < 0)
			break;
		if (rc == TOR_OUTBOX_SKIPPED) {
			rd->counts.skipped++;
			count_skip(rd, TOR_SKIP_UNROUTED);
			continue;
		}
		rd->counts.rows++;
		if ((rc = rd->ops.row(rd->ctx, rd->txn_seq, &msg, &origin,
		    err)) != 0)
			break;
	}
	tor_rows_free(&rows);
	return rc < 0 ? -1 : rc == 2 ? 2 : 0;
}

static int
txn_begin(struct tor_reader *rd, const struct tor_event *ev, tor_err *err)
{
	rd->in_txn = true;
	rd->txn_start_pos = ev->next_pos >= ev->size ?
	    ev->next_pos - ev->size : 0;
	rd->txn_rows = 0;
	rd->pos_prefix_len = 0;
	return rd->ops.begin(rd->ctx, &rd->txn_seq, err);
}

static int
txn_commit(struct tor_reader *rd, const struct tor_event *ev, tor_err *err)
{
	struct tor_reader_end end;
	int rc;

	if (!rd->in_txn && (rc = txn_begin(rd, ev, err)) != 0)
		return rc;
	end = (struct tor_reader_end){
		.file = rd->file,
		.pos = ev->next_pos,
		.gtid = rd->has_gtid ? &rd->gtid : NULL,
		.ts_ms = (int64_t)ev->timestamp * 1000,
	};
	if ((rc = rd->ops.commit(rd->ctx, &end, err)) != 0)
		return rc;
	snprintf(rd->read_pos.file, sizeof(rd->read_pos.file), "%s", rd->file);
	rd->read_pos.pos = ev->next_pos;
	rd->in_txn = false;
	rd->standalone = false;
	rd->has_gtid = false;
	rd->skip_rows = 0;
	rd->txn_rows = 0;
	return 0;
}

static bool
sql_is(const struct tor_query *q, const char *word)
{
	size_t n = strlen(word);

	return q->sql_len == n && strncasecmp(q->sql, word, n) == 0;
}

static int
on_query(struct tor_reader *rd, const struct tor_event *ev, tor_err *err)
{
	struct tor_query q;
	int rc = 0;

	if (tor_query_parse(ev, &rd->fmt, &q, err) < 0)
		return -1;
	if (sql_is(&q, "BEGIN")) {
		if (!rd->in_txn)
			rc = txn_begin(rd, ev, err);
	} else if (sql_is(&q, "COMMIT")) {
		rc = txn_commit(rd, ev, err);
	} else if (!rd->in_txn || rd->standalone) {
		/* DDL and other statements that are their own transaction. */
		rc = txn_commit(rd, ev, err);
	}
	tor_query_free(&q);
	return rc;
}

static int
on_gtid(struct tor_reader *rd, const struct tor_event *ev, tor_err *err)
{
	int rc;

	if (tor_gtid_parse(ev, &rd->fmt, &rd->gtid, err) < 0)
		return -1;
	if ((rc = txn_begin(rd, ev, err)) != 0)
		return rc;
	rd->has_gtid = ev->type != TOR_EV_MYSQL_ANONYMOUS_GTID;
	rd->standalone = rd->gtid.mariadb && rd->gtid.standalone;
	if (!rd->gtid.mariadb)
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
		return -1;
	if (sql_is(&q, "BEGIN")) {
		rd->standalone = false;
		*handled = true;
	}
	tor_query_free(&q);
	return 0;
}

int
tor_reader_feed(struct tor_reader *rd, const uint8_t *raw, size_t len,
    tor_err *err)
{
	struct tor_event ev;
	uint64_t pos, xid;
	bool handled;

	if (tor_event_parse(raw, len, &rd->fmt, &ev, err) < 0)
		return -1;
	rd->counts.events++;
	atomic_fetch_add_explicit(&rd->metrics->events_read, 1,
	    memory_order_relaxed);
	switch (ev.type) {
	case TOR_EV_FORMAT_DESCRIPTION:
		return tor_format_parse(&ev, &rd->fmt, err);
	case TOR_EV_ROTATE:
		if (tor_rotate_parse(&ev, &rd->fmt, rd->file, sizeof(rd->file),
		    &pos, err) < 0)
			return -1;
		if (!rd->in_txn) {
			snprintf(rd->read_pos.file, sizeof(rd->read_pos.file),
			    "%s", rd->file);
			rd->read_pos.pos = pos;
		}
		return rd->ops.rotate(rd->ctx, rd->file, pos, true, err);
	case TOR_EV_MARIADB_GTID:
	case TOR_EV_MYSQL_GTID:
	case TOR_EV_MYSQL_ANONYMOUS_GTID:
		return on_gtid(rd, &ev, err);
	case TOR_EV_QUERY:
	case TOR_EV_MARIADB_QUERY_COMPRESSED:
		if (on_mysql_begin(rd, &ev, &handled, err) < 0)
			return -1;
		return handled ? 0 : on_query(rd, &ev, err);
	case TOR_EV_XID:
		if (tor_xid_parse(&ev, &rd->fmt, &xid, err) < 0)
			return -1;
		return txn_commit(rd, &ev, err);
	case TOR_EV_TABLE_MAP:
		return on_table_map(rd, &ev, err);
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
		return on_rows(rd, &ev, err);
	case TOR_EV_MYSQL_TRANSACTION_PAYLOAD:
		return tor_err_set(err, "binlog: MySQL compressed transaction "
		    "payloads are not supported yet; set "
		    "binlog_transaction_compression=OFF on the server");
	default:
		return 0;       /* heartbeats, GTID lists, checkpoints... */
	}
}
