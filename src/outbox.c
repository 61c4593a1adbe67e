/*
 * Outbox rows to Kafka messages (DESIGN.md §4).
 *
 * Two ideas keep the per-row path cheap and the failures loud.  Column names
 * are resolved to indexes once per table map (tor_outbox_bind), so mapping a
 * row is a few array lookups, one route match and a handful of small
 * formatted numbers.  And nothing is copied: a message points into the row's
 * values and into buffers owned by the handle, which is why a message lives
 * only until the next call.  A row that no route takes, or a message the
 * sink refuses as too large, goes through one policy (outbox.unrouted):
 * halt, skip, or the dead-letter topic — never a silent drop.
 */
#include <ctype.h>
#include <inttypes.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tor/outbox.h"

/* The tor.* headers: id, type, group, pos, epoch, ts, and error (oversized
 * only). */
#define TOR_OWN_HEADERS 7
#define MAX_CONFIGURED_HEADERS (TOR_MAX_HEADERS - TOR_OWN_HEADERS)

/* Kafka's limit on topic names (and its legal characters, below). */
#define TOPIC_MAX 249

#define TYPE_PLACEHOLDER "${aggregate_type}"

/* Column indexes of one outbox table in the current table map. */
struct binding {
	bool bound;
	int id;                 /* -1 when no id column is configured */
	int key;
	int type;
	int payload;
	int timestamp;          /* -1 when no timestamp column is configured */
	int partition;          /* -1 when no partition column is configured */
	int *headers;           /* one per configured header mapping */
};

struct tor_outbox {
	const struct tor_config *cfg;
	struct binding *binds;  /* one per cfg->outbox.tables entry */

	char *type_buf;         /* the aggregate type, NUL-terminated for regexec */
	size_t type_cap;
	/* The last routing answer: rows of a burst mostly share their type,
	 * and a regex match per row would cost more than the rest of mapping. */
	bool route_cached;
	size_t route_type_len;          /* type_buf holds that type */
	const char *route_topic;
	/* outbox.route = all: the distinct topics of every route the cached
	 * type matches, route_topic first; n_fan 0 when no route matched. */
	const char **fan;
	size_t n_fan;
	uint64_t epoch_val;             /* what epoch and ts hold, when set */
	int64_t ts_val;
	bool epoch_set, ts_set;
	size_t epoch_len, ts_len, group_len;
	char topic[TOPIC_MAX + 1];      /* a topic built from topic_template */
	char epoch[24];                 /* tor.epoch value */
	char ts[24];                    /* tor.ts value */
	char error[TOPIC_MAX + 128];    /* tor.error value */
};

struct tor_outbox *
tor_outbox_new(const struct tor_config *cfg, tor_err *err)
{
	struct tor_outbox *ob;
	size_t i;

	/* Found here rather than at the first row: the limit is a property of
	 * the configuration, and the relay should refuse it at start. */
	for (i = 0; i < cfg->outbox.n_tables; i++) {
		const struct tor_outbox_table *t = &cfg->outbox.tables[i];

		if (t->n_headers > MAX_CONFIGURED_HEADERS) {
			tor_err_set(err, "%s.%s: %zu header mappings, at most %d "
			    "(outbox table at %s:%d)", t->schema, t->table,
			    t->n_headers, MAX_CONFIGURED_HEADERS,
			    cfg->path != NULL ? cfg->path : "?", t->line);
			return NULL;
		}
	}

	if ((ob = calloc(1, sizeof(*ob))) == NULL)
		goto nomem;
	ob->cfg = cfg;
	ob->group_len = strlen(cfg->group);
	if (cfg->outbox.n_routes > 0 &&
	    (ob->fan = calloc(cfg->outbox.n_routes, sizeof(*ob->fan))) == NULL)
		goto nomem;
	if (cfg->outbox.n_tables > 0 &&
	    (ob->binds = calloc(cfg->outbox.n_tables, sizeof(*ob->binds))) == NULL)
		goto nomem;
	for (i = 0; i < cfg->outbox.n_tables; i++) {
		size_t n = cfg->outbox.tables[i].n_headers;

		if (n > 0 && (ob->binds[i].headers =
		    calloc(n, sizeof(*ob->binds[i].headers))) == NULL)
			goto nomem;
	}
	return ob;

nomem:
	tor_outbox_free(ob);
	tor_err_set(err, "outbox: out of memory");
	return NULL;
}

void
tor_outbox_free(struct tor_outbox *ob)
{
	size_t i;

	if (ob == NULL)
		return;
	if (ob->binds != NULL)
		for (i = 0; i < ob->cfg->outbox.n_tables; i++)
			free(ob->binds[i].headers);
	free(ob->binds);
	free(ob->fan);
	free(ob->type_buf);
	free(ob);
}

/* Schema and table names compare exactly: MySQL on Linux keeps them as
 * file names, which are case-sensitive. */
int
tor_outbox_find_table(const struct tor_outbox *ob, const char *schema,
    size_t schema_len, const char *table, size_t table_len)
{
	size_t i;

	for (i = 0; i < ob->cfg->outbox.n_tables; i++) {
		const struct tor_outbox_table *t = &ob->cfg->outbox.tables[i];

		if (strlen(t->schema) == schema_len &&
		    strlen(t->table) == table_len &&
		    memcmp(t->schema, schema, schema_len) == 0 &&
		    memcmp(t->table, table, table_len) == 0)
			return (int)i;
	}
	return -1;
}

/* Column names compare case-insensitively, as MySQL's do. */
static int
column_index(const struct tor_table_map *tm, const char *name)
{
	uint32_t i;

	for (i = 0; i < tm->ncols; i++)
		if (tm->cols[i].name != NULL &&
		    strcasecmp(tm->cols[i].name, name) == 0)
			return (int)i;
	return -1;
}

static int
bind_column(const struct tor_config *cfg, const struct tor_outbox_table *t,
    const struct tor_table_map *tm, const char *name, int *idx, tor_err *err)
{
	if ((*idx = column_index(tm, name)) < 0)
		return tor_err_set(err, "%s.%s.%s: no such column (outbox table "
		    "at %s:%d)", t->schema, t->table, name,
		    cfg->path != NULL ? cfg->path : "?", t->line);
	return 0;
}

/* columns.partition names a partition: an integer column, nothing else. */
static int
check_integer(const struct tor_config *cfg, const struct tor_outbox_table *t,
    const struct tor_table_map *tm, int idx, tor_err *err)
{
	switch (tm->cols[idx].type) {
	case TOR_TYPE_TINY:
	case TOR_TYPE_SHORT:
	case TOR_TYPE_INT24:
	case TOR_TYPE_LONG:
	case TOR_TYPE_LONGLONG:
		return 0;
	default:
		return tor_err_set(err, "%s.%s.%s: columns.partition must be "
		    "an integer column (outbox table at %s:%d)", t->schema,
		    t->table, tm->cols[idx].name, cfg->path != NULL ?
		    cfg->path : "?", t->line);
	}
}

int
tor_outbox_bind(struct tor_outbox *ob, int table_idx,
    const struct tor_table_map *tm, tor_err *err)
{
	const struct tor_outbox_table *t;
	struct binding *b;
	size_t i;

	if (table_idx < 0 || (size_t)table_idx >= ob->cfg->outbox.n_tables)
		return tor_err_set(err, "outbox: no outbox table %d", table_idx);
	t = &ob->cfg->outbox.tables[table_idx];
	b = &ob->binds[table_idx];

	/* A failed bind leaves the table unbound, so that rows of a table whose
	 * new map lacks a column are refused rather than mapped by the old
	 * indexes. */
	b->bound = false;
	b->id = -1;
	b->timestamp = -1;
	b->partition = -1;
	if (t->col_id != NULL &&
	    bind_column(ob->cfg, t, tm, t->col_id, &b->id, err) == -1)
		return -1;
	if (t->col_timestamp != NULL && bind_column(ob->cfg, t, tm,
	    t->col_timestamp, &b->timestamp, err) == -1)
		return -1;
	if (t->col_partition != NULL && (bind_column(ob->cfg, t, tm,
	    t->col_partition, &b->partition, err) == -1 ||
	    check_integer(ob->cfg, t, tm, b->partition, err) == -1))
		return -1;
	if (bind_column(ob->cfg, t, tm, t->col_key, &b->key, err) == -1 ||
	    bind_column(ob->cfg, t, tm, t->col_type, &b->type, err) == -1 ||
	    bind_column(ob->cfg, t, tm, t->col_payload, &b->payload, err) == -1)
		return -1;
	for (i = 0; i < t->n_headers; i++)
		if (bind_column(ob->cfg, t, tm, t->headers[i].column,
		    &b->headers[i], err) == -1)
			return -1;
	b->bound = true;
	return 0;
}

bool
tor_outbox_uses_column(const struct tor_outbox *ob, int table_idx,
    uint32_t col)
{
	const struct binding *b = &ob->binds[table_idx];
	int c = (int)col;

	if (!b->bound)
		return true;
	if (c == b->id || c == b->key || c == b->type || c == b->payload ||
	    c == b->timestamp || c == b->partition)
		return true;
	for (size_t i = 0; i < ob->cfg->outbox.tables[table_idx].n_headers; i++)
		if (c == b->headers[i])
			return true;
	return false;
}

static bool
topic_valid(const char *topic, size_t len)
{
	size_t i;

	if (len == 0 || len > TOPIC_MAX)
		return false;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)topic[i];

		if (!isalnum(c) && c != '.' && c != '_' && c != '-')
			return false;
	}
	return true;
}

/* Expands topic_template into ob->topic; NULL when the result is not a
 * legal topic name (too long, or the type brought in a bad character). */
static const char *
expand_template(struct tor_outbox *ob, const char *type, size_t type_len)
{
	const char *tmpl = ob->cfg->outbox.topic_template, *at;
	const size_t ph_len = sizeof(TYPE_PLACEHOLDER) - 1;
	size_t len = 0, n;

	while (*tmpl != '\0') {
		if ((at = strstr(tmpl, TYPE_PLACEHOLDER)) == NULL)
			at = tmpl + strlen(tmpl);
		n = (size_t)(at - tmpl);
		if (len + n > TOPIC_MAX)
			return NULL;
		memcpy(ob->topic + len, tmpl, n);
		len += n;
		tmpl = at;
		if (*tmpl == '\0')
			break;
		if (len + type_len > TOPIC_MAX)
			return NULL;
		memcpy(ob->topic + len, type, type_len);
		len += type_len;
		tmpl += ph_len;
	}
	ob->topic[len] = '\0';
	return topic_valid(ob->topic, len) ? ob->topic : NULL;
}

/* Makes room for a type of len bytes and its NUL.  Kept apart so that
 * tor_outbox_map can tell running out of memory from "no route": under
 * unrouted = skip, the one would otherwise pass for the other. */
static int
reserve_type(struct tor_outbox *ob, size_t len)
{
	char *p;

	if (len + 1 <= ob->type_cap)
		return 0;
	if ((p = realloc(ob->type_buf, len + 1)) == NULL)
		return -1;
	ob->type_buf = p;
	ob->type_cap = len + 1;
	return 0;
}

/* Whether the fan-out list has topic already: two routes to one topic give
 * the row one copy there, not two. */
static bool
fan_has(const struct tor_outbox *ob, const char *topic)
{
	for (size_t i = 0; i < ob->n_fan; i++)
		if (strcmp(ob->fan[i], topic) == 0)
			return true;
	return false;
}

const char *
tor_outbox_route(struct tor_outbox *ob, const uint8_t *type, size_t type_len)
{
	const struct tor_config *cfg = ob->cfg;
	size_t i;

	/* A NUL inside the type would cut it short for regexec and match on a
	 * prefix: such a type matches no route (nor makes a legal topic). */
	if (type_len > 0 && memchr(type, '\0', type_len) != NULL)
		return NULL;
	if (ob->route_cached && ob->route_type_len == type_len &&
	    (type_len == 0 || memcmp(ob->type_buf, type, type_len) == 0))
		return ob->route_topic;
	ob->route_cached = false;
	if (reserve_type(ob, type_len) == -1)
		return NULL;
	if (type_len > 0)
		memcpy(ob->type_buf, type, type_len);
	ob->type_buf[type_len] = '\0';

	ob->route_topic = NULL;
	ob->n_fan = 0;
	for (i = 0; i < cfg->outbox.n_routes; i++) {
		const char *topic = cfg->outbox.routes[i].topic;

		if (regexec(&cfg->outbox.routes[i].re, ob->type_buf, 0, NULL,
		    0) != 0)
			continue;
		if (ob->route_topic == NULL)
			ob->route_topic = topic;
		if (cfg->outbox.route != TOR_ROUTE_ALL)
			break;
		if (!fan_has(ob, topic))
			ob->fan[ob->n_fan++] = topic;
	}
	if (ob->route_topic == NULL && cfg->outbox.topic_template != NULL &&
	    cfg->outbox.topic_template[0] != '\0')
		ob->route_topic = expand_template(ob, ob->type_buf, type_len);
	ob->route_cached = true;
	ob->route_type_len = type_len;
	return ob->route_topic;
}

/* Writes bytes for an error message: printable ASCII as is, the rest (and
 * the quote and backslash) escaped, cut at about 100 bytes. */
static void
escape_bytes(const uint8_t *s, size_t len, char *buf, size_t cap)
{
	size_t at = 0, i;

	for (i = 0; i < len && at + 8 < cap; i++) {
		if (at > 100) {
			memcpy(buf + at, "...", 3);
			at += 3;
			break;
		}
		if (s[i] == '\'' || s[i] == '\\')
			at += (size_t)snprintf(buf + at, cap - at, "\\%c", s[i]);
		else if (s[i] < 0x20 || s[i] >= 0x7f)
			at += (size_t)snprintf(buf + at, cap - at, "\\x%02x",
			    s[i]);
		else
			buf[at++] = (char)s[i];
	}
	buf[at] = '\0';
}

static const char *
origin_pos(const struct tor_row_origin *origin)
{
	return origin->pos != NULL ? origin->pos : "?";
}

/* A header name literal and its length. */
#define NAME(literal) literal, sizeof(literal) - 1

static void
add_header(struct tor_message *msg, const char *name, size_t name_len,
    const uint8_t *value, size_t len)
{
	struct tor_header *h = &msg->headers[msg->n_headers++];

	h->name = name;
	h->name_len = name_len;
	h->value = value;
	h->len = len;
}

static void
add_value_header(struct tor_message *msg, const char *name, size_t name_len,
    const struct tor_value *v)
{
	if (v->is_null)
		add_header(msg, name, name_len, NULL, 0);
	else
		add_header(msg, name, name_len, v->data, v->len);
}

/* Sets header name to value, replacing the one already there. */
static void
set_header(struct tor_message *msg, const char *name, size_t name_len,
    const uint8_t *value, size_t len)
{
	for (size_t i = 0; i < msg->n_headers; i++)
		if (strcmp(msg->headers[i].name, name) == 0) {
			msg->headers[i].value = value;
			msg->headers[i].len = len;
			return;
		}
	add_header(msg, name, name_len, value, len);
}

/* tor.pos, tor.epoch and tor.ts: where the row is published from, and
 * when.  A new message gets them appended (the per-row path), a waiting
 * one replaced. */
static void
stamp(struct tor_outbox *ob, struct tor_message *msg,
    const struct tor_row_origin *origin, bool replace)
{
	void (*set)(struct tor_message *, const char *, size_t,
	    const uint8_t *, size_t) = replace ? set_header : add_header;

	if (origin->pos != NULL)
		set(msg, NAME("tor.pos"), (const uint8_t *)origin->pos,
		    strlen(origin->pos));
	else
		set(msg, NAME("tor.pos"), NULL, 0);
	/* Formatted again only when they change (per run, per second). */
	if (!ob->epoch_set || ob->epoch_val != origin->epoch) {
		ob->epoch_len = (size_t)snprintf(ob->epoch, sizeof(ob->epoch),
		    "%" PRIu64, origin->epoch);
		ob->epoch_val = origin->epoch;
		ob->epoch_set = true;
	}
	set(msg, NAME("tor.epoch"), (const uint8_t *)ob->epoch, ob->epoch_len);
	/* The row's own time, when its table names a column for it and the
	 * value is one, else the commit's. */
	if (!msg->timestamp_from_row)
		msg->timestamp_ms = origin->ts_ms;
	if (!ob->ts_set || ob->ts_val != msg->timestamp_ms) {
		ob->ts_len = (size_t)snprintf(ob->ts, sizeof(ob->ts), "%" PRId64,
		    msg->timestamp_ms);
		ob->ts_val = msg->timestamp_ms;
		ob->ts_set = true;
	}
	set(msg, NAME("tor.ts"), (const uint8_t *)ob->ts, ob->ts_len);
}

/* Every configured column must be in the row image: a partial image
 * (binlog_row_image MINIMAL or NOBLOB) would publish holes. */
static int
check_present(const struct tor_outbox_table *t, const struct binding *b,
    const struct tor_value *values, tor_err *err)
{
	const char *missing = NULL;
	size_t i;

	if (b->id >= 0 && !values[b->id].present)
		missing = t->col_id;
	else if (b->timestamp >= 0 && !values[b->timestamp].present)
		missing = t->col_timestamp;
	else if (b->partition >= 0 && !values[b->partition].present)
		missing = t->col_partition;
	else if (!values[b->key].present)
		missing = t->col_key;
	else if (!values[b->type].present)
		missing = t->col_type;
	else if (!values[b->payload].present)
		missing = t->col_payload;
	for (i = 0; missing == NULL && i < t->n_headers; i++)
		if (!values[b->headers[i]].present)
			missing = t->headers[i].column;
	if (missing != NULL)
		return tor_err_set(err, "%s.%s.%s: not in the row image; "
		    "binlog_row_image must be FULL", t->schema, t->table, missing);
	return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static bool
digits(const uint8_t *p, size_t n, int64_t *v)
{
	*v = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		*v = *v * 10 + (p[i] - '0');
	}
	return n > 0;
}

/* The value of columns.partition (an integer column, rendered as decimal
 * text); false for NULL. */
static bool
row_partition(const struct tor_value *v, int64_t *partition)
{
	const uint8_t *p = v->data;
	size_t n = v->len;

	if (v->is_null || p == NULL || n == 0)
		return false;
	/* Past 18 digits no partition can be meant: it stays out of range. */
	if (n > 19 || (n == 19 && p[0] != '-')) {
		*partition = p[0] == '-' ? -1 : INT64_MAX;
		return true;
	}
	if (p[0] == '-' && n > 1 && digits(p + 1, n - 1, partition)) {
		*partition = -*partition;
		return true;
	}
	if (!digits(p, n, partition))
		*partition = -1;
	return true;
}

/*
 * The event time of columns.timestamp, in ms since the epoch: an integer
 * column is taken as ms, a DATETIME or TIMESTAMP as the text the decoder
 * renders ("YYYY-MM-DD HH:MM:SS[.ffffff]"; a TIMESTAMP is UTC, a DATETIME
 * is taken as UTC).  false for NULL, a zero date and anything else: the
 * commit time stands then.
 */
static bool
row_time(const struct tor_value *v, int64_t *ms)
{
	const uint8_t *p = v->data;
	int64_t y, mo, d, h, mi, s, frac = 0;
	size_t n = v->len;

	if (v->is_null || p == NULL || n == 0)
		return false;
	/* At most 18 digits: no overflow. */
	if (p[0] == '-' && n > 1 && n <= 19 && digits(p + 1, n - 1, ms)) {
		*ms = -*ms;
		return true;
	}
	if (n <= 18 && digits(p, n, ms))
		return true;
	if (n < 19 || p[4] != '-' || p[7] != '-' || p[10] != ' ' ||
	    p[13] != ':' || p[16] != ':' || !digits(p, 4, &y) ||
	    !digits(p + 5, 2, &mo) || !digits(p + 8, 2, &d) ||
	    !digits(p + 11, 2, &h) || !digits(p + 14, 2, &mi) ||
	    !digits(p + 17, 2, &s) || mo < 1 || mo > 12 || d < 1 || d > 31 ||
	    h > 23 || mi > 59 || s > 59)
		return false;
	if (n > 19) {
		if (p[19] != '.' || n > 26 || !digits(p + 20, n - 20, &frac))
			return false;
		for (size_t i = n - 20; i < 3; i++)
			frac *= 10;
		for (size_t i = n - 20; i > 3; i--)
			frac /= 10;
	}
	*ms = ((days_from_civil(y, (unsigned)mo, (unsigned)d) * 24 + h) * 60 +
	    mi) * 60 * 1000 + s * 1000 + frac;
	return true;
}

int
tor_outbox_map(struct tor_outbox *ob, int table_idx,
    const struct tor_value *values, const struct tor_row_origin *origin,
    struct tor_message *msg, tor_err *err)
{
	const struct tor_config *cfg = ob->cfg;
	const struct tor_outbox_table *t;
	const struct tor_value *type, *key, *payload;
	const struct binding *b;
	char shown[512];
	size_t i;

	if (table_idx < 0 || (size_t)table_idx >= cfg->outbox.n_tables)
		return tor_err_set(err, "outbox: no outbox table %d", table_idx);
	t = &cfg->outbox.tables[table_idx];
	b = &ob->binds[table_idx];
	if (!b->bound)
		return tor_err_set(err, "%s.%s: row before a table map was "
		    "bound (row %s)", t->schema, t->table, origin_pos(origin));
	if (check_present(t, b, values, err) == -1)
		return -1;

	type = &values[b->type];
	key = &values[b->key];
	payload = &values[b->payload];

	/* Not memset: the header array is most of the struct, and only
	 * n_headers of it is read. */
	msg->topic = NULL;
	msg->key = msg->value = NULL;
	msg->key_len = msg->value_len = 0;
	msg->n_headers = 0;
	msg->timestamp_from_row = b->timestamp >= 0 &&
	    row_time(&values[b->timestamp], &msg->timestamp_ms);
	msg->partition_given = b->partition >= 0;
	if (msg->partition_given)
		msg->partition_null = !row_partition(&values[b->partition],
		    &msg->partition);
	/* A NULL type has nothing to match; it is unrouted like any other. */
	if (!type->is_null) {
		if (reserve_type(ob, type->len) == -1)
			return tor_err_set(err, "outbox: out of memory (row %s)",
			    origin_pos(origin));
		msg->topic = tor_outbox_route(ob, type->data, type->len);
	}
	if (msg->topic == NULL) {
		switch (cfg->outbox.unrouted) {
		case TOR_UNROUTED_SKIP:
			return TOR_OUTBOX_SKIPPED;
		case TOR_UNROUTED_DLQ:
			msg->topic = cfg->outbox.dlq_topic;
			break;
		case TOR_UNROUTED_FAIL:
		default:
			if (type->is_null)
				return tor_err_set(err, "no route for aggregate "
				    "type NULL (row %s)", origin_pos(origin));
			escape_bytes(type->data, type->len, shown,
			    sizeof(shown));
			return tor_err_set(err, "no route for aggregate type "
			    "'%s' (row %s)", shown, origin_pos(origin));
		}
	}

	if (!key->is_null) {
		msg->key = key->data;
		msg->key_len = key->len;
	}
	if (!payload->is_null) {
		msg->value = payload->data;
		msg->value_len = payload->len;
	}
	/* A zero-length key or payload must stay distinguishable from NULL. */
	if (msg->key == NULL && !key->is_null)
		msg->key = (const uint8_t *)"";
	if (msg->value == NULL && !payload->is_null)
		msg->value = (const uint8_t *)"";

	for (i = 0; i < t->n_headers; i++)
		add_value_header(msg, t->headers[i].header,
		    strlen(t->headers[i].header), &values[b->headers[i]]);
	if (b->id >= 0)
		add_value_header(msg, NAME("tor.id"), &values[b->id]);
	add_value_header(msg, NAME("tor.type"), type);
	/* Which group wrote it: a takeover reads back its group's own
	 * messages where several groups (or other producers) share a topic. */
	add_header(msg, NAME("tor.group"), (const uint8_t *)cfg->group,
	    ob->group_len);
	stamp(ob, msg, origin, false);
	return TOR_OUTBOX_MAPPED;
}

size_t
tor_outbox_copy_size(const struct tor_message *msg)
{
	size_t need = sizeof(*msg) + strlen(msg->topic) + 1 + msg->key_len +
	    msg->value_len;

	for (size_t i = 0; i < msg->n_headers; i++)
		need += msg->headers[i].name_len + 1 + msg->headers[i].len;
	return need;
}

struct tor_message *
tor_outbox_message_copy(const struct tor_message *msg)
{
	struct tor_message *c;
	size_t i;
	char *p;

	if ((c = malloc(tor_outbox_copy_size(msg))) == NULL)
		return NULL;
	*c = *msg;
	p = (char *)(c + 1);
	c->topic = p;
	p = stpcpy(p, msg->topic) + 1;
	if (msg->key != NULL) {
		memcpy(p, msg->key, msg->key_len);
		c->key = (const uint8_t *)p;
		p += msg->key_len;
	}
	if (msg->value != NULL) {
		memcpy(p, msg->value, msg->value_len);
		c->value = (const uint8_t *)p;
		p += msg->value_len;
	}
	for (i = 0; i < msg->n_headers; i++) {
		c->headers[i].name = p;
		memcpy(p, msg->headers[i].name, msg->headers[i].name_len + 1);
		p += msg->headers[i].name_len + 1;
		if (msg->headers[i].value != NULL) {
			memcpy(p, msg->headers[i].value, msg->headers[i].len);
			c->headers[i].value = (const uint8_t *)p;
			p += msg->headers[i].len;
		}
	}
	return c;
}

size_t
tor_outbox_topics(struct tor_outbox *ob, const struct tor_message *msg,
    const char *const **topics)
{
	const struct tor_header *type = NULL;

	*topics = &msg->topic;
	if (ob->cfg->outbox.route != TOR_ROUTE_ALL)
		return 1;
	for (size_t i = 0; i < msg->n_headers && type == NULL; i++)
		if (msg->headers[i].name_len == 8 &&
		    memcmp(msg->headers[i].name, "tor.type", 8) == 0)
			type = &msg->headers[i];
	if (type == NULL || type->value == NULL ||
	    tor_outbox_route(ob, type->value, type->len) == NULL ||
	    ob->n_fan == 0)
		return 1;       /* unrouted, the template's or dead-lettered */
	*topics = ob->fan;
	return ob->n_fan;
}

/* Sends msg to the dead-letter topic, on its key's partition there, with
 * header tor.error = why. */
static int
dead_letter(struct tor_outbox *ob, struct tor_message *msg, const char *why,
    const struct tor_row_origin *origin, tor_err *err)
{
	if (msg->n_headers >= TOR_MAX_HEADERS)
		return tor_err_set(err, "%s, no room for its tor.error header "
		    "(row %s)", why, origin_pos(origin));
	msg->topic = ob->cfg->outbox.dlq_topic;
	msg->partition_given = false;
	snprintf(ob->error, sizeof(ob->error), "%s", why);
	add_header(msg, NAME("tor.error"), (const uint8_t *)ob->error,
	    strlen(ob->error));
	return TOR_OUTBOX_MAPPED;
}

int
tor_outbox_unroutable(struct tor_outbox *ob, struct tor_message *msg,
    const char *why, const struct tor_row_origin *origin, tor_err *err)
{
	const struct tor_config *cfg = ob->cfg;

	switch (cfg->outbox.unrouted) {
	case TOR_UNROUTED_SKIP:
		return TOR_OUTBOX_SKIPPED;
	case TOR_UNROUTED_DLQ:
		return dead_letter(ob, msg, why, origin, err);
	case TOR_UNROUTED_FAIL:
	default:
		return tor_err_set(err, "%s (row %s)", why, origin_pos(origin));
	}
}

void
tor_outbox_restamp(struct tor_outbox *ob, struct tor_message *msg,
    const struct tor_row_origin *origin)
{
	stamp(ob, msg, origin, true);
}

/* The bytes tor hands the sink for msg: key, value, header names and
 * values.  The broker's own count adds framing; this is what the operator
 * can act on. */
static size_t
message_size(const struct tor_message *msg)
{
	size_t n = msg->key_len + msg->value_len, i;

	for (i = 0; i < msg->n_headers; i++)
		n += msg->headers[i].name_len + msg->headers[i].len;
	return n;
}

int
tor_outbox_oversized(struct tor_outbox *ob, struct tor_message *msg,
    const struct tor_row_origin *origin, tor_err *err)
{
	const struct tor_config *cfg = ob->cfg;
	size_t size = message_size(msg), i;
	char why[64];

	switch (cfg->outbox.unrouted) {
	case TOR_UNROUTED_SKIP:
		return TOR_OUTBOX_SKIPPED;
	case TOR_UNROUTED_DLQ:
		/* Already stripped once: the key and headers alone are too
		 * large, and there is nothing left to drop. */
		for (i = 0; i < msg->n_headers; i++)
			if (strcmp(msg->headers[i].name, "tor.error") == 0)
				return tor_err_set(err, "message too large "
				    "(%zu bytes) even without its value for "
				    "dead-letter topic '%s' (row %s)", size,
				    cfg->outbox.dlq_topic, origin_pos(origin));
		snprintf(why, sizeof(why), "message too large (%zu bytes)",
		    size);
		if (dead_letter(ob, msg, why, origin, err) < 0)
			return -1;
		/* The value is what made it too large; the key and headers
		 * are enough for someone to find the row and replay it. */
		msg->value = NULL;
		msg->value_len = 0;
		return TOR_OUTBOX_MAPPED;
	case TOR_UNROUTED_FAIL:
	default:
		return tor_err_set(err, "message too large (%zu bytes) for "
		    "topic '%s' (row %s)", size,
		    msg->topic != NULL ? msg->topic : "?", origin_pos(origin));
	}
}
