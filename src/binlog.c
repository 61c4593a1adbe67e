/*
 * The binlog source: Connector/C's replication API for the byte stream, an
 * ordinary connection for the questions (settings, start positions, column
 * names).
 *
 * Two ideas keep it honest.  First, nothing the library parses is trusted:
 * we hand the raw bytes to our own decoder (DESIGN.md §2 lists the library's
 * traps).  Second, every (re)connect builds fresh MYSQL handles, because the
 * library keeps an error set after it happened; a stale handle would make a
 * healthy stream look broken.
 *
 * The dump connection is read by a thread of its own into a bounded ring of
 * events, so the relay thread never sits in a blocking read: it waits on
 * the ring's eventfd and on Kafka's acknowledgements at once, and moves the
 * checkpoint as soon as the last message of a burst is acknowledged.
 */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mysql.h>
#include <errmsg.h>
#include <mariadb_rpl.h>
#include <mysqld_error.h>

#include "tor/binlog.h"
#include "tor/gtid_set.h"
#include "tor/log.h"

/* Bytes of events the reader may hold ahead of the relay; a larger event
 * grows the ring (and the relay's copy of it) to fit it, and both go back
 * to this size once it has been read. */
#define RING_CAP (4u << 20)

struct tor_binlog {
	const struct tor_config *cfg;
	MYSQL *query;           /* questions: settings, SHOW BINARY LOGS... */
	MYSQL *stream;          /* the dump connection, the reader's alone */
	MARIADB_RPL *rpl;
	bool checksum;

	/* The reader thread and the ring it fills: records of a 4-byte
	 * length and the event's bytes, never split at the ring's end. */
	pthread_t reader;
	bool reader_running;
	pthread_mutex_t mu;
	pthread_cond_t space;
	int event_fd;           /* readable: events, or the reader's end */
	uint8_t *ring;
	size_t cap;
	size_t head, tail, used;        /* byte offsets; used = bytes held */
	size_t wrap;                    /* where the writer wrapped, or 0 */
	bool writer_waiting;            /* the reader waits for room */
	bool closing;
	bool ended;                     /* the reader stopped: see end_* */
	int end_code;
	uint64_t refused_at;            /* the event the library refused, or 0 */
	char end_msg[sizeof(((tor_err *)0)->msg)];

	uint8_t *event;         /* the event handed out by tor_binlog_next */
	size_t event_cap;

	/* The server_id of the session's source (tor_binlog_identify, or the
	 * first stream): a stream reopened on another one is refused. */
	unsigned long source_id;
};

struct tor_binlog *
tor_binlog_new(const struct tor_config *cfg)
{
	struct tor_binlog *b = calloc(1, sizeof(*b));

	if (b == NULL)
		return NULL;
	b->cfg = cfg;
	b->cap = RING_CAP;
	b->ring = malloc(b->cap);
	b->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (b->ring == NULL || b->event_fd < 0) {
		free(b->ring);
		if (b->event_fd >= 0)
			close(b->event_fd);
		free(b);
		return NULL;
	}
	pthread_mutex_init(&b->mu, NULL);
	pthread_cond_init(&b->space, NULL);
	return b;
}

static void
wake_relay(struct tor_binlog *b)
{
	uint64_t one = 1;

	if (write(b->event_fd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is already non-zero, the relay wakes. */
	}
}

/* Stops the reader (unblocking its read by shutting the socket down) and
 * closes the dump connection. */
static void
close_stream(struct tor_binlog *b)
{
	if (b->reader_running) {
		pthread_mutex_lock(&b->mu);
		b->closing = true;
		pthread_cond_signal(&b->space);
		pthread_mutex_unlock(&b->mu);
		if (b->stream != NULL)
			shutdown(mysql_get_socket(b->stream), SHUT_RDWR);
		pthread_join(b->reader, NULL);
		b->reader_running = false;
	}
	if (b->rpl != NULL)
		mariadb_rpl_close(b->rpl);
	b->rpl = NULL;
	if (b->stream != NULL)
		mysql_close(b->stream);
	b->stream = NULL;
	b->head = b->tail = b->used = b->wrap = 0;
	b->closing = false;
	b->ended = false;
	b->refused_at = 0;
}

void
tor_binlog_close(struct tor_binlog *b)
{
	close_stream(b);
	if (b->query != NULL)
		mysql_close(b->query);
	b->query = NULL;
}

void
tor_binlog_free(struct tor_binlog *b)
{
	if (b == NULL)
		return;
	tor_binlog_close(b);
	pthread_mutex_destroy(&b->mu);
	pthread_cond_destroy(&b->space);
	close(b->event_fd);
	free(b->ring);
	free(b->event);
	free(b);
}

int
tor_binlog_fd(const struct tor_binlog *b)
{
	return b->event_fd;
}

bool
tor_binlog_checksum(const struct tor_binlog *b)
{
	return b->checksum;
}

static unsigned int
ms_to_s(int ms)
{
	return ms <= 1000 ? 1 : (unsigned int)((ms + 999) / 1000);
}

/* A connection with the configured timeouts and TLS.  read_timeout_ms bounds
 * how long a read may wait: for the stream, a few heartbeats. */
static MYSQL *
connect_server(const struct tor_config *cfg, int read_timeout_ms, tor_err *err)
{
	unsigned int connect_s = ms_to_s(cfg->mysql.connect_timeout_ms);
	unsigned int read_s = ms_to_s(read_timeout_ms);
	unsigned long max_packet = TOR_EVENT_MAX;
	MYSQL *m = mysql_init(NULL);

	if (m == NULL)
		return tor_err_set(err, "mysql: out of memory"), NULL;
	mysql_optionsv(m, MYSQL_OPT_CONNECT_TIMEOUT, &connect_s);
	mysql_optionsv(m, MYSQL_OPT_READ_TIMEOUT, &read_s);
	mysql_optionsv(m, MYSQL_OPT_WRITE_TIMEOUT, &connect_s);
	/* One event is one packet: a row with a large payload makes a large one. */
	mysql_optionsv(m, MYSQL_OPT_MAX_ALLOWED_PACKET, &max_packet);
	if (cfg->mysql.tls.mode != TOR_TLS_DISABLED) {
		const char *ca = cfg->mysql.tls.ca, *cert = cfg->mysql.tls.cert,
		    *key = cfg->mysql.tls.key;
		my_bool yes = 1;

		mysql_ssl_set(m, key[0] ? key : NULL, cert[0] ? cert : NULL,
		    ca[0] ? ca : NULL, NULL, NULL);
		if (cfg->mysql.tls.mode >= TOR_TLS_REQUIRED)
			mysql_optionsv(m, MYSQL_OPT_SSL_ENFORCE, &yes);
		if (cfg->mysql.tls.mode == TOR_TLS_VERIFY)
			mysql_optionsv(m, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &yes);
	}
	/* MySQL 8's caching_sha2_password sends the password over TLS, or
	 * RSA-encrypted with the server's key: pinned here, or asked for. */
	if (cfg->mysql.server_public_key[0] != '\0')
		mysql_optionsv(m, MYSQL_SERVER_PUBLIC_KEY,
		    cfg->mysql.server_public_key);
	if (mysql_real_connect(m, cfg->mysql.host, cfg->mysql.user,
	    cfg->mysql.password, NULL, (unsigned int)cfg->mysql.port, NULL,
	    0) == NULL) {
		const char *e = mysql_error(m);

		tor_err_set(err, "mysql %s:%d: %s%s", cfg->mysql.host,
		    cfg->mysql.port, e, strstr(e, "sha2") != NULL ||
		    strstr(e, "RSA") != NULL || strstr(e, "sha256") != NULL ?
		    " (the user authenticates with caching_sha2_password or "
		    "sha256_password, MySQL 8's default: it needs TLS, "
		    "mysql.tls.mode = required, or the server's RSA key, "
		    "mysql.server_public_key)" : "");
		mysql_close(m);
		return NULL;
	}
	return m;
}

static int
ensure_query(struct tor_binlog *b, tor_err *err)
{
	if (b->query != NULL && mysql_ping(b->query) == 0)
		return 0;
	if (b->query != NULL)
		mysql_close(b->query);
	b->query = connect_server(b->cfg, b->cfg->mysql.connect_timeout_ms, err);
	return b->query != NULL ? 0 : -1;
}

/* Runs a statement that returns rows; the caller frees the result. */
static MYSQL_RES *
query_rows(struct tor_binlog *b, const char *sql, tor_err *err)
{
	MYSQL_RES *res;

	if (ensure_query(b, err) < 0)
		return NULL;
	if (mysql_query(b->query, sql) != 0) {
		tor_err_set(err, "mysql %s:%d: %s: %s", b->cfg->mysql.host,
		    b->cfg->mysql.port, sql, mysql_error(b->query));
		return NULL;
	}
	res = mysql_store_result(b->query);
	if (res == NULL)
		tor_err_set(err, "mysql %s:%d: %s: no result", b->cfg->mysql.host,
		    b->cfg->mysql.port, sql);
	return res;
}

int
tor_binlog_check_server(struct tor_binlog *b, tor_err *err)
{
	static const struct {
		const char *name;
		const char *want;
	} needs[] = {
		{ "log_bin", "ON" },
		{ "binlog_format", "ROW" },
		{ "binlog_row_image", "FULL" },
	};
	char seen[3][64] = { "", "", "" }, gtid_mode[32] = "";
	bool row_metadata_full = false;
	MYSQL_RES *res;
	MYSQL_ROW row;

	res = query_rows(b, "SHOW GLOBAL VARIABLES WHERE Variable_name IN "
	    "('log_bin', 'binlog_format', 'binlog_row_image', "
	    "'binlog_row_metadata', 'gtid_mode')", err);
	if (res == NULL)
		return TOR_BINLOG_ERROR;
	while ((row = mysql_fetch_row(res)) != NULL) {
		if (row[0] == NULL || row[1] == NULL)
			continue;
		for (size_t i = 0; i < 3; i++)
			if (strcmp(row[0], needs[i].name) == 0)
				snprintf(seen[i], sizeof(seen[i]), "%s", row[1]);
		if (strcmp(row[0], "binlog_row_metadata") == 0)
			row_metadata_full = strcasecmp(row[1], "FULL") == 0;
		if (strcmp(row[0], "gtid_mode") == 0)
			snprintf(gtid_mode, sizeof(gtid_mode), "%s", row[1]);
	}
	mysql_free_result(res);
	for (size_t i = 0; i < 3; i++) {
		if (strcasecmp(seen[i], needs[i].want) != 0)
			return tor_err_set(err, "mysql %s:%d: %s is '%s', tor "
			    "needs %s=%s (set it in the server's configuration)",
			    b->cfg->mysql.host, b->cfg->mysql.port,
			    needs[i].name, seen[i], needs[i].name,
			    needs[i].want), TOR_BINLOG_FATAL;
	}
	/* MySQL only (MariaDB's GTIDs are always on and have no such
	 * variable). */
	if (gtid_mode[0] != '\0')
		log_info("binlog", "MySQL gtid_mode %s: %s; tor resumes by "
		    "file:pos on MySQL (its GTID resume needs a protocol call "
		    "the client library lacks)", gtid_mode,
		    strcasecmp(gtid_mode, "ON") == 0 ? "every row's tor.pos "
		    "names its transaction's GTID" : "rows of transactions "
		    "without a GTID carry <file>:<pos>:<row> in tor.pos");
	if (!row_metadata_full)
		log_warn("binlog", "binlog_row_metadata is not FULL: column names "
		    "come from information_schema, which is only right while the "
		    "outbox table's schema has not changed since the rows were "
		    "written");
	return 0;
}

/* Whether the result's first column holds name (MySQL column names are
 * compared without case). */
static bool
has_column(MYSQL_RES *res, const char *name)
{
	MYSQL_ROW row;

	mysql_data_seek(res, 0);
	while ((row = mysql_fetch_row(res)) != NULL)
		if (row[0] != NULL && strcasecmp(row[0], name) == 0)
			return true;
	return false;
}

/* The configured columns of t that the table lacks, the first one. */
static const char *
missing_column(const struct tor_outbox_table *t, MYSQL_RES *res)
{
	const char *cols[6] = { t->col_id, t->col_key, t->col_type,
	    t->col_payload, t->col_timestamp, t->col_partition };

	for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++)
		if (cols[i] != NULL && !has_column(res, cols[i]))
			return cols[i];
	for (size_t i = 0; i < t->n_headers; i++)
		if (!has_column(res, t->headers[i].column))
			return t->headers[i].column;
	return NULL;
}

/* information_schema's rows for schema.table's columns, in order: name,
 * whether unsigned, fractional digits.  NULL with err set on failure.  The
 * names are MySQL's, at most 64 characters (a table map's, or checked). */
static MYSQL_RES *
table_columns(struct tor_binlog *b, const char *schema_name,
    const char *table_name, tor_err *err)
{
	char schema[2 * 64 + 1], table[2 * 64 + 1], sql[600];

	if (ensure_query(b, err) < 0)
		return NULL;
	mysql_real_escape_string(b->query, schema, schema_name,
	    (unsigned long)strlen(schema_name));
	mysql_real_escape_string(b->query, table, table_name,
	    (unsigned long)strlen(table_name));
	snprintf(sql, sizeof(sql), "SELECT COLUMN_NAME, COLUMN_TYPE LIKE "
	    "'%%unsigned%%', COALESCE(DATETIME_PRECISION, 0) FROM "
	    "information_schema.COLUMNS WHERE TABLE_SCHEMA = '%s' AND "
	    "TABLE_NAME = '%s' ORDER BY ORDINAL_POSITION", schema, table);
	return query_rows(b, sql, err);
}

int
tor_binlog_check_outbox(struct tor_binlog *b, tor_err *err)
{
	const struct tor_config *cfg = b->cfg;

	for (size_t i = 0; i < cfg->outbox.n_tables; i++) {
		const struct tor_outbox_table *t = &cfg->outbox.tables[i];
		const char *missing;
		MYSQL_RES *res;

		if (strlen(t->schema) > 64 || strlen(t->table) > 64)
			return tor_err_set(err, "%s.%s: a name longer than 64 "
			    "characters", t->schema, t->table), TOR_BINLOG_FATAL;
		if ((res = table_columns(b, t->schema, t->table, err)) == NULL)
			return TOR_BINLOG_ERROR;
		if (mysql_num_rows(res) == 0) {
			mysql_free_result(res);
			return tor_err_set(err, "%s.%s: no such table (or the "
			    "user %s may not see it: grant it SELECT) on mysql "
			    "%s:%d", t->schema, t->table, cfg->mysql.user,
			    cfg->mysql.host, cfg->mysql.port), TOR_BINLOG_FATAL;
		}
		missing = missing_column(t, res);
		mysql_free_result(res);
		if (missing != NULL)
			return tor_err_set(err, "%s.%s.%s: no such column (outbox "
			    "table at %s:%d)", t->schema, t->table, missing,
			    cfg->path, t->line), TOR_BINLOG_FATAL;
	}
	return 0;
}

/* The binlog files the server still has, in order, one per row. */
static MYSQL_RES *
binary_logs(struct tor_binlog *b, tor_err *err)
{
	return query_rows(b, "SHOW BINARY LOGS", err);
}

/* MariaDB, not MySQL (which has no gtid_binlog_state, gtid_binlog_pos or
 * BINLOG_GTID_POS). */
static bool
is_mariadb(MYSQL *m)
{
	const char *info = mysql_get_server_info(m);

	return info != NULL && strstr(info, "MariaDB") != NULL;
}

/* MySQL's executed set of the start into out (TOR_GTID_SET_TEXT bytes) in
 * the checkpoint's form: text as a server shows it ("" when it has none). */
static int
start_gtid_set(struct tor_binlog *b, const char *text, char *out,
    tor_err *err)
{
	struct tor_position none;

	if (tor_position_parse_set(text, &none, out, err) < 0 && text[0] != '\0')
		return tor_err_prefix(err, "mysql %s:%d: its executed GTID set: ",
		    b->cfg->mysql.host, b->cfg->mysql.port);
	return 0;
}

int
tor_binlog_resolve_start(struct tor_binlog *b, const char *start,
    struct tor_position *pos, char *gtid_set, tor_err *err)
{
	char set[TOR_GTID_SET_TEXT] = "";
	MYSQL_RES *res;
	MYSQL_ROW row;
	int rc = 0;

	memset(pos, 0, sizeof(*pos));
	if (strcmp(start, "end") == 0) {
		res = query_rows(b, "SHOW MASTER STATUS", err);
		if (res == NULL) {
			/* MySQL 8.4 knows only the new spelling. */
			res = query_rows(b, "SHOW BINARY LOG STATUS", err);
			if (res == NULL)
				return -1;
		}
	} else if (strcmp(start, "beginning") == 0) {
		res = binary_logs(b, err);
		if (res == NULL)
			return -1;
	} else {
		return tor_position_parse_set(start, pos, gtid_set != NULL ?
		    gtid_set : set, err);
	}
	row = mysql_fetch_row(res);
	if (row == NULL || row[0] == NULL) {
		mysql_free_result(res);
		return tor_err_set(err, "mysql %s:%d: the server reports no "
		    "binlog file (is log_bin on?)", b->cfg->mysql.host,
		    b->cfg->mysql.port);
	}
	snprintf(pos->file, sizeof(pos->file), "%s", row[0]);
	pos->pos = strcmp(start, "end") == 0 && row[1] != NULL ?
	    strtoull(row[1], NULL, 10) : 4;
	/* MySQL's fifth column, Executed_Gtid_Set: the set at this very
	 * file and position (MariaDB has four). */
	if (gtid_set != NULL && strcmp(start, "end") == 0 &&
	    mysql_num_fields(res) >= 5 && row[4] != NULL)
		rc = start_gtid_set(b, row[4], gtid_set, err);
	mysql_free_result(res);
	if (gtid_set == NULL || rc < 0 || strcmp(start, "beginning") != 0 ||
	    is_mariadb(b->query))
		return rc;
	/* The oldest file starts after what was purged. */
	if ((res = query_rows(b, "SELECT @@global.gtid_purged", err)) == NULL)
		return -1;
	row = mysql_fetch_row(res);
	rc = start_gtid_set(b, row != NULL && row[0] != NULL ? row[0] : "",
	    gtid_set, err);
	mysql_free_result(res);
	return rc;
}

int
tor_binlog_gtid_at(struct tor_binlog *b, struct tor_position *pos,
    tor_err *err)
{
	char file[2 * sizeof(pos->file) + 1], sql[sizeof(file) + 64];
	MYSQL_RES *res;
	MYSQL_ROW row;

	if (pos->file[0] == '\0' || pos->gtid[0] != '\0')
		return 0;
	if (ensure_query(b, err) < 0)
		return -1;
	if (!is_mariadb(b->query))
		return 0;       /* MySQL: no such function */
	mysql_real_escape_string(b->query, file, pos->file,
	    (unsigned long)strlen(pos->file));
	snprintf(sql, sizeof(sql), "SELECT BINLOG_GTID_POS('%s', %" PRIu64 ")",
	    file, pos->pos);
	if ((res = query_rows(b, sql, err)) == NULL)
		return -1;
	if ((row = mysql_fetch_row(res)) != NULL && row[0] != NULL)
		snprintf(pos->gtid, sizeof(pos->gtid), "%s", row[0]);
	mysql_free_result(res);
	return 0;
}

/* Whether the server's GTID state at a position (have) is at or past each
 * domain's GTID of the checkpoint's (want), and the same GTID where the
 * sequence numbers are equal.  The checkpoint's state may lag its file:pos
 * (transactions without outbox rows), never lead it. */
static bool
gtid_state_reaches(const char *have, const char *want)
{
	while (*want != '\0') {
		unsigned long d, sv, hsv;
		unsigned long long n, hn;
		int used = 0;

		if (sscanf(want, "%lu-%lu-%llu%n", &d, &sv, &n, &used) != 3)
			return true;    /* not a MariaDB state: nothing to check */
		if (!tor_gtid_of_domain(have, d, &hsv, &hn) || hn < n ||
		    (hn == n && hsv != sv))
			return false;
		want += used;
		want += *want == ',';
	}
	return true;
}

/* Whether a binlog's state (gtid_binlog_state: each domain's last GTID
 * from each server_id) holds each GTID of want: one of the same domain and
 * server_id at or past its sequence number.  A promoted replica that never
 * got the old primary's last transactions may have passed their sequence
 * numbers with its own server_id. */
static bool
gtid_state_holds(const char *state, const char *want)
{
	while (*want != '\0') {
		unsigned long d, sv;
		unsigned long long n;
		const char *h = state;
		bool held = false;
		int used = 0;

		if (sscanf(want, "%lu-%lu-%llu%n", &d, &sv, &n, &used) != 3)
			return true;    /* not a MariaDB state: nothing to check */
		while (!held && *h != '\0') {
			unsigned long hd, hsv;
			unsigned long long hn;
			int hused = 0;

			if (sscanf(h, "%lu-%lu-%llu%n", &hd, &hsv, &hn,
			    &hused) != 3)
				break;
			held = hd == d && hsv == sv && hn >= n;
			h += hused;
			h += *h == ',';
		}
		if (!held)
			return false;
		want += used;
		want += *want == ',';
	}
	return true;
}

/* The server's identity (server_id, gtid_binlog_state); "?" and "" when
 * it does not say (MySQL: no GTID state of that form).  -1 when it cannot
 * be asked. */
static int
server_identity(struct tor_binlog *b, char *id, size_t idlen, char *gtid,
    size_t gtidlen, tor_err *err)
{
	MYSQL_RES *res;
	MYSQL_ROW row;

	snprintf(id, idlen, "?");
	gtid[0] = '\0';
	if (ensure_query(b, err) < 0)
		return -1;
	if ((res = query_rows(b, is_mariadb(b->query) ?
	    "SELECT @@global.server_id, @@global.gtid_binlog_state" :
	    "SELECT @@global.server_id, ''", err)) == NULL)
		return -1;
	if ((row = mysql_fetch_row(res)) != NULL) {
		snprintf(id, idlen, "%s", row[0] ? row[0] : "?");
		snprintf(gtid, gtidlen, "%s", row[1] ? row[1] : "");
	}
	mysql_free_result(res);
	return 0;
}

/* The halt on a server that is not the checkpoint's: here is the GTID state
 * its binlog has at the checkpoint's file:pos, if any. */
static int
not_the_source(struct tor_binlog *b, const struct tor_position *pos,
    const char *server_id, const char *state_name, const char *state,
    const char *here, tor_err *err)
{
	return tor_err_set(err, "mysql %s:%d (server_id %s, %s '%s'): its "
	    "binlog at %s:%" PRIu64 " is at GTID '%s', short of "
	    "the checkpoint's '%s': this is not the server (or not the "
	    "binlog) the checkpoint was written from (a promoted replica? a "
	    "restored or reset server?), and resuming by file:pos would "
	    "publish the wrong rows or skip new ones. Halting. Check which "
	    "transactions this server has, then move the checkpoint with `tor "
	    "checkpoint set <gtid or file:pos>`", b->cfg->mysql.host,
	    b->cfg->mysql.port, server_id, state_name, state, pos->file,
	    pos->pos, here, pos->gtid), TOR_BINLOG_FATAL;
}

int
tor_binlog_check_available(struct tor_binlog *b,
    const struct tor_position *pos, tor_err *err)
{
	char oldest[256] = "";
	MYSQL_RES *res;
	MYSQL_ROW row;
	bool found = false;

	if (pos->file[0] == '\0')
		return 0;       /* GTID: the server answers at the first fetch */
	res = binary_logs(b, err);
	if (res == NULL)
		return -1;
	while ((row = mysql_fetch_row(res)) != NULL) {
		if (row[0] == NULL)
			continue;
		if (oldest[0] == '\0')
			snprintf(oldest, sizeof(oldest), "%s", row[0]);
		if (strcmp(row[0], pos->file) == 0)
			found = true;
	}
	mysql_free_result(res);
	/* A server whose binlog never had the checkpoint's GTIDs (none
	 * as far, from the server_id that wrote each) is not the one the
	 * checkpoint was written from: not a purge, another server. */
	if (!found && pos->gtid[0] != '\0') {
		char id[24], gtid[sizeof(pos->gtid)];

		if (server_identity(b, id, sizeof(id), gtid, sizeof(gtid),
		    err) < 0)
			return -1;
		if (!gtid_state_holds(gtid, pos->gtid))
			return not_the_source(b, pos, id, "gtid_binlog_state",
			    gtid, "none (no such file)", err), -1;
	}
	if (!found)
		return tor_err_set(err, "mysql %s:%d: binlog file %s is no "
		    "longer on the server (purged?); its oldest is %s. Events "
		    "may have been lost: reset the checkpoint with `tor "
		    "checkpoint set` once you know what to replay",
		    b->cfg->mysql.host, b->cfg->mysql.port, pos->file,
		    oldest[0] ? oldest : "none");
	return 0;
}

int
tor_binlog_check_identity(struct tor_binlog *b,
    const struct tor_position *pos, tor_err *err)
{
	char file[2 * sizeof(pos->file) + 1], sql[sizeof(file) + 160];
	char here[sizeof(pos->gtid)] = "", state[4096] = "";
	char server_id[24] = "?";
	MYSQL_RES *res;
	MYSQL_ROW row;

	if (pos->file[0] == '\0' || pos->gtid[0] == '\0')
		return 0;
	if (ensure_query(b, err) < 0)
		return TOR_BINLOG_ERROR;
	mysql_real_escape_string(b->query, file, pos->file,
	    (unsigned long)strlen(pos->file));
	snprintf(sql, sizeof(sql), "SELECT @@global.server_id, "
	    "@@global.gtid_binlog_state, BINLOG_GTID_POS('%s', %" PRIu64 ")",
	    file, pos->pos);
	if ((res = query_rows(b, sql, err)) == NULL)
		return TOR_BINLOG_ERROR;
	if ((row = mysql_fetch_row(res)) != NULL) {
		snprintf(server_id, sizeof(server_id), "%s", row[0] ? row[0] :
		    "?");
		snprintf(state, sizeof(state), "%s", row[1] ? row[1] : "");
		snprintf(here, sizeof(here), "%s", row[2] ? row[2] : "");
	}
	mysql_free_result(res);
	/* Past the checkpoint's sequence numbers is not enough: a promoted
	 * replica that lost the old primary's last transactions passes them
	 * with its own server_id. */
	if (here[0] != '\0' && gtid_state_reaches(here, pos->gtid) &&
	    gtid_state_holds(state, pos->gtid))
		return 0;
	return not_the_source(b, pos, server_id, "gtid_binlog_state", state,
	    here[0] ? here : "none (no event starts there)", err);
}

/* Events a group of the binlog starts with, and events never inside one
 * (SHOW BINLOG EVENTS names): a position where one starts is between
 * transactions. */
static bool
starts_outside_a_group(const char *type, const char *info, bool after_gtid)
{
	static const char *const outside[] = { "Gtid", "Anonymous_Gtid",
	    "Gtid_tagged", "Format_desc", "Gtid_list", "Binlog_checkpoint",
	    "Previous_gtids", "Rotate", "Stop", "Start_encryption", NULL };

	for (size_t i = 0; outside[i] != NULL; i++)
		if (strcmp(type, outside[i]) == 0)
			return true;
	/* Without GTIDs (MySQL 5.6) a transaction starts at its BEGIN. */
	return !after_gtid && strcmp(type, "Query") == 0 && info != NULL &&
	    strcmp(info, "BEGIN") == 0;
}

#define EVENTS_PAGE 10000

int
tor_binlog_group_start(struct tor_binlog *b, const struct tor_position *at,
    struct tor_position *start, tor_err *err)
{
	uint64_t from = 4, best = 4;
	bool after_gtid = false, seen = at->pos == 4, past = false;
	char file[2 * sizeof(at->file) + 1], sql[sizeof(file) + 100];

	if (ensure_query(b, err) < 0)
		return -1;
	mysql_real_escape_string(b->query, file, at->file,
	    (unsigned long)strlen(at->file));
	/* A page at a time, from one event's start to the next: a big file
	 * is read only up to at. */
	while (!past) {
		MYSQL_RES *res;
		MYSQL_ROW row;
		int rows = 0;

		snprintf(sql, sizeof(sql), "SHOW BINLOG EVENTS IN '%s' FROM %"
		    PRIu64 " LIMIT %d", file, from, EVENTS_PAGE);
		if ((res = query_rows(b, sql, err)) == NULL)
			return -1;
		while (!past && (row = mysql_fetch_row(res)) != NULL) {
			uint64_t pos = strtoull(row[1] ? row[1] : "0", NULL, 10);
			const char *type = row[2] != NULL ? row[2] : "";

			rows++;
			if (pos > at->pos) {
				past = true;
				break;
			}
			seen |= pos == at->pos;
			if (starts_outside_a_group(type, row[5], after_gtid))
				best = pos;
			after_gtid = strstr(type, "Gtid") != NULL;
			from = strtoull(row[4] ? row[4] : "0", NULL, 10);
		}
		mysql_free_result(res);
		if (rows < EVENTS_PAGE)
			break;
	}
	/* Past the last event: the file's end is between transactions. */
	if (!past && at->pos == from)
		seen = true, best = from;
	else if (!past && at->pos > from)
		return tor_err_set(err, "mysql %s:%d: position %s:%" PRIu64
		    " is beyond the end of binlog file %s (%" PRIu64 ")",
		    b->cfg->mysql.host, b->cfg->mysql.port, at->file, at->pos,
		    at->file, from), 1;
	if (!seen)
		return tor_err_set(err, "mysql %s:%d: no event starts at %s:%"
		    PRIu64, b->cfg->mysql.host, b->cfg->mysql.port, at->file,
		    at->pos), 1;
	*start = *at;
	start->pos = best;
	start->gtid[0] = '\0';
	return 0;
}

int
tor_binlog_describe_table(struct tor_binlog *b, struct tor_table_map *tm,
    tor_err *err)
{
	MYSQL_RES *res;
	MYSQL_ROW row;
	uint32_t i = 0;

	if ((res = table_columns(b, tm->schema, tm->table, err)) == NULL)
		return -1;
	if (mysql_num_rows(res) != tm->ncols) {
		unsigned long long n = mysql_num_rows(res);

		mysql_free_result(res);
		return tor_err_set(err, "%s.%s: information_schema has %llu "
		    "columns but the binlog's table map has %" PRIu32 " (the "
		    "table changed since; set binlog_row_metadata=FULL so the "
		    "binlog carries column names)", tm->schema, tm->table, n,
		    tm->ncols);
	}
	while ((row = mysql_fetch_row(res)) != NULL && i < tm->ncols) {
		struct tor_column *col = &tm->cols[i];

		if (!tm->has_names) {
			free(col->name);
			col->name = strdup(row[0] != NULL ? row[0] : "");
			col->is_unsigned = row[1] != NULL && row[1][0] == '1';
		}
		/* The old type codes carry no fractional digits in the map
		 * (MariaDB's pre-10.1.2 TIME(n), DATETIME(n), TIMESTAMP(n)). */
		if ((col->type == TOR_TYPE_TIME ||
		    col->type == TOR_TYPE_DATETIME ||
		    col->type == TOR_TYPE_TIMESTAMP) && row[2] != NULL)
			col->meta = (uint16_t)strtoul(row[2], NULL, 10);
		i++;
	}
	mysql_free_result(res);
	tm->has_names = true;
	return 0;
}

static int
set_session(MYSQL *m, const char *sql, tor_err *err)
{
	if (mysql_query(m, sql) != 0)
		return tor_err_set(err, "mysql: %s: %s", sql, mysql_error(m));
	return 0;
}

/* What the server will append to every event: CRC32 or nothing. */
static int
negotiate_checksum(struct tor_binlog *b, tor_err *err)
{
	MYSQL_RES *res;
	MYSQL_ROW row;

	if (set_session(b->stream, "SET @master_binlog_checksum = "
	    "@@global.binlog_checksum", err) < 0)
		return -1;
	if (mysql_query(b->stream, "SELECT @@global.binlog_checksum") != 0 ||
	    (res = mysql_store_result(b->stream)) == NULL)
		return tor_err_set(err, "mysql: binlog_checksum: %s",
		    mysql_error(b->stream));
	row = mysql_fetch_row(res);
	b->checksum = row != NULL && row[0] != NULL &&
	    strcasecmp(row[0], "NONE") != 0;
	mysql_free_result(res);
	return 0;
}

static void *reader_main(void *arg);

/* Starts the reader with the stop signals blocked, so they reach the relay
 * thread and interrupt its wait. */
static int
start_reader(struct tor_binlog *b)
{
	sigset_t all, old;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&b->reader, NULL, reader_main, b);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

int
tor_binlog_identify(struct tor_binlog *b, uint32_t *server_id, char *state,
    size_t cap, tor_err *err)
{
	char id[24];

	if (server_identity(b, id, sizeof(id), state, cap, err) < 0)
		return -1;
	b->source_id = strtoul(id, NULL, 10);
	*server_id = (uint32_t)b->source_id;
	return 0;
}

/* Whether this MySQL server (server_id) can resume cp's executed GTID
 * set: it holds all of it and has purged none it lacks
 * (tor_gtid_set_resume_check, from its gtid_executed and gtid_purged). */
static int
check_held_set(struct tor_binlog *b, const struct tor_checkpoint *cp,
    uint32_t server_id, tor_err *err)
{
	struct tor_gtid_set want, executed, purged;
	MYSQL_RES *res;
	MYSQL_ROW row;
	tor_err why;
	int rc = 0;

	if (ensure_query(b, err) < 0)
		return TOR_BINLOG_ERROR;
	if (is_mariadb(b->query))
		return tor_err_set(err, "mysql %s:%d is MariaDB: the checkpoint's "
		    "MySQL GTID set names no position there. Halting: move the "
		    "checkpoint with `tor checkpoint set <gtid or file:pos>`",
		    b->cfg->mysql.host, b->cfg->mysql.port), TOR_BINLOG_FATAL;
	if ((res = query_rows(b, "SELECT @@global.gtid_executed, "
	    "@@global.gtid_purged", err)) == NULL)
		return TOR_BINLOG_ERROR;
	tor_gtid_set_init(&want);
	tor_gtid_set_init(&executed);
	tor_gtid_set_init(&purged);
	row = mysql_fetch_row(res);
	if (tor_gtid_set_parse(&want, cp->gtid_set, &why) < 0 ||
	    tor_gtid_set_parse(&executed, row != NULL && row[0] != NULL ?
	    row[0] : "", &why) < 0 ||
	    tor_gtid_set_parse(&purged, row != NULL && row[1] != NULL ?
	    row[1] : "", &why) < 0)
		rc = (tor_err_set(err, "mysql %s:%d: %s", b->cfg->mysql.host,
		    b->cfg->mysql.port, why.msg), TOR_BINLOG_FATAL);
	else if (tor_gtid_set_resume_check(&want, &executed, &purged,
	    &why) < 0)
		rc = (tor_err_set(err, "mysql %s:%d (server_id %" PRIu32 ") "
		    "cannot resume the checkpoint (server_id %" PRIu32 ", 0 when "
		    "unknown) by "
		    "its GTID set: %s. Transactions published from the old "
		    "server that this one lacks were lost in the failover (in "
		    "Kafka, not in this database); purged ones the checkpoint "
		    "lacks can never be read. Halting: check what this server "
		    "has, then `tor checkpoint set <gtid set or file:pos>`",
		    b->cfg->mysql.host, b->cfg->mysql.port, server_id,
		    cp->server_id, why.msg), TOR_BINLOG_FATAL);
	mysql_free_result(res);
	tor_gtid_set_free(&want);
	tor_gtid_set_free(&executed);
	tor_gtid_set_free(&purged);
	return rc;
}

int
tor_binlog_check_held(struct tor_binlog *b, const struct tor_checkpoint *cp,
    uint32_t server_id, tor_err *err)
{
	const struct tor_position *pos = &cp->pos;
	char id[24], state[4096], at[300];

	tor_position_format(pos, at, sizeof(at));
	if (pos->gtid[0] == '\0' && cp->gtid_set[0] != '\0')
		return check_held_set(b, cp, server_id, err);
	if (pos->gtid[0] == '\0')
		return tor_err_set(err, "the checkpoint (%s) was written from "
		    "server_id %" PRIu32 " and has no GTID; mysql %s:%d is "
		    "server_id %" PRIu32 ", whose binlog files are not that "
		    "server's: a file:pos is never resumed on another server. "
		    "Halting. Find this server's position of the last "
		    "transaction published, then move the checkpoint with `tor "
		    "checkpoint set <gtid or file:pos>`", at, cp->server_id,
		    b->cfg->mysql.host, b->cfg->mysql.port, server_id),
		    TOR_BINLOG_FATAL;
	if (server_identity(b, id, sizeof(id), state, sizeof(state), err) < 0)
		return TOR_BINLOG_ERROR;
	if (gtid_state_holds(state, pos->gtid))
		return 0;
	/* The state last: it may be long, and the message has a limit. */
	return tor_err_set(err, "mysql %s:%d (server_id %s) lacks GTID '%s' "
	    "of the checkpoint (%s, server_id %" PRIu32 "): transactions "
	    "published from there were lost in the failover: in Kafka, not in "
	    "this database (written again, published twice); this server's "
	    "own under their sequence numbers would pass for published. "
	    "Halting: check what this server has, then `tor checkpoint set "
	    "<gtid or file:pos>`. Its gtid_binlog_state: '%s'",
	    b->cfg->mysql.host, b->cfg->mysql.port, id, pos->gtid, at,
	    cp->server_id, state), TOR_BINLOG_FATAL;
}

/* The server the dump connection reached is the session's source (the
 * one tor_binlog_identify asked): a failover or a moved address behind
 * mysql.host leaves the same file names at other offsets, and a position
 * of the session read there is another transaction, or none.  0, -1 (not
 * answered), or TOR_BINLOG_MOVED. */
static int
check_same_source(struct tor_binlog *b, tor_err *err)
{
	char gtid[512] = "";
	unsigned long id = 0;
	MYSQL_RES *res;
	MYSQL_ROW row;

	if (mysql_query(b->stream, is_mariadb(b->stream) ?
	    "SELECT @@global.server_id, @@global.gtid_binlog_pos" :
	    "SELECT @@global.server_id, ''") != 0 ||
	    (res = mysql_store_result(b->stream)) == NULL)
		return tor_err_set(err, "mysql %s:%d: server_id: %s",
		    b->cfg->mysql.host, b->cfg->mysql.port,
		    mysql_error(b->stream));
	if ((row = mysql_fetch_row(res)) != NULL) {
		id = strtoul(row[0] ? row[0] : "0", NULL, 10);
		snprintf(gtid, sizeof(gtid), "%s", row[1] ? row[1] : "");
	}
	mysql_free_result(res);
	if (b->source_id == 0 || id == b->source_id) {
		b->source_id = id;
		return 0;
	}
	return tor_err_set(err, "mysql %s:%d is now server_id %lu "
	    "(gtid_binlog_pos '%s'), not server_id %lu whose binlog this "
	    "session read: the source failed over or moved",
	    b->cfg->mysql.host, b->cfg->mysql.port, id, gtid, b->source_id),
	    TOR_BINLOG_MOVED;
}

/*
 * The client library has no call for COM_BINLOG_DUMP_GTID, and its
 * mariadb_rpl_open does more than send COM_BINLOG_DUMP: it asks the
 * server's binlog_checksum first and sets up the handle's reading from the
 * answer.  So the open runs as it is, through a copy of the connection's
 * methods whose command writer sends our request in place of its
 * COM_BINLOG_DUMP; the methods are put back at once.  The request is per
 * thread: each relay thread opens its own stream.
 */
static _Thread_local struct {
	const struct st_mariadb_methods *methods;
	const uint8_t *req;
	size_t len;
	bool sent;
} swap;

static int
swapped_command(MYSQL *m, enum enum_server_command command, const char *arg,
    size_t len, my_bool skip_check, void *opt)
{
	if (command != COM_BINLOG_DUMP)
		return swap.methods->db_command(m, command, arg, len,
		    skip_check, opt);
	swap.sent = true;
	/* The command byte is the payload's first: the writer puts it
	 * before arg itself. */
	return swap.methods->db_command(m, (enum enum_server_command)swap.req[0],
	    (const char *)swap.req + 1, swap.len - 1, skip_check, opt);
}

int
tor_binlog_open_gtid(MARIADB_RPL *rpl, const char *gtid_set,
    uint32_t server_id, tor_err *err)
{
	struct st_mariadb_methods methods;
	struct tor_gtid_set set;
	MYSQL *m = rpl->mysql;
	uint8_t *req = NULL;
	size_t len;
	int rc;

	tor_gtid_set_init(&set);
	/* Flags 0: wait at the end for more (not NON_BLOCK), no THROUGH_*
	 * limits; no file and position 4, as a replica with auto-positioning
	 * sends them. */
	rc = tor_gtid_set_parse(&set, gtid_set, err) < 0 ||
	    tor_gtid_set_dump_request(&set, 0, server_id, "", 4, &req, &len,
	    err) < 0 ? -1 : 0;
	tor_gtid_set_free(&set);
	if (rc < 0)
		return -1;
	methods = *m->methods;
	methods.db_command = swapped_command;
	swap.methods = m->methods;
	swap.req = req;
	swap.len = len;
	swap.sent = false;
	m->methods = &methods;
	rc = mariadb_rpl_open(rpl);
	m->methods = swap.methods;
	if (rc != 0)
		rc = tor_err_set(err, "binlog dump by GTID set: %s",
		    mysql_error(m));
	else if (!swap.sent)
		rc = tor_err_set(err, "binlog dump by GTID set: the client "
		    "library opened the stream without a COM_BINLOG_DUMP to "
		    "replace");
	free(req);
	memset(&swap, 0, sizeof(swap));
	return rc;
}

int
tor_binlog_stream(struct tor_binlog *b, const struct tor_position *pos,
    const char *gtid_set, tor_err *err)
{
	bool by_set = pos->file[0] == '\0' && pos->gtid[0] == '\0' &&
	    gtid_set != NULL && gtid_set[0] != '\0';
	const struct tor_config *cfg = b->cfg;
	char sql[2 * sizeof(pos->gtid) + 128];
	unsigned long start = pos->file[0] != '\0' ? (unsigned long)pos->pos : 4;
	const char *file = pos->file;
	int rc;

	close_stream(b);
	/* A read that waits longer than a few heartbeats means a dead peer. */
	b->stream = connect_server(cfg, 3 * cfg->mysql.heartbeat_ms + 1000, err);
	if (b->stream == NULL)
		return -1;
	if ((rc = check_same_source(b, err)) != 0) {
		close_stream(b);
		return rc;
	}
	if (negotiate_checksum(b, err) < 0)
		goto fail;
	/* GTID events instead of BEGIN queries, and GTID resume (MariaDB). */
	if (set_session(b->stream, "SET @mariadb_slave_capability = 4", err) < 0)
		goto fail;
	snprintf(sql, sizeof(sql), "SET @master_heartbeat_period = %" PRIu64,
	    (uint64_t)cfg->mysql.heartbeat_ms * 1000000);
	if (set_session(b->stream, sql, err) < 0)
		goto fail;
	if (pos->file[0] == '\0' && !by_set) {
		char gtid[2 * sizeof(pos->gtid) + 1];

		mysql_real_escape_string(b->stream, gtid, pos->gtid,
		    (unsigned long)strlen(pos->gtid));
		snprintf(sql, sizeof(sql), "SET @slave_connect_state = '%s'",
		    gtid);
		if (set_session(b->stream, sql, err) < 0 ||
		    set_session(b->stream, "SET @slave_gtid_strict_mode = 1",
		    err) < 0 ||
		    set_session(b->stream, "SET @slave_gtid_ignore_duplicates "
		    "= 0", err) < 0)
			goto fail;
		file = "";
	}
	if (start > UINT32_MAX) {
		tor_err_set(err, "binlog position %lu does not fit the dump "
		    "protocol's 32 bits", start);
		goto fail;
	}

	b->rpl = mariadb_rpl_init(b->stream);
	if (b->rpl == NULL) {
		tor_err_set(err, "mysql: cannot start replication: %s",
		    mysql_error(b->stream));
		goto fail;
	}
	mariadb_rpl_optionsv(b->rpl, MARIADB_RPL_FILENAME, file, strlen(file));
	mariadb_rpl_optionsv(b->rpl, MARIADB_RPL_START, start);
	mariadb_rpl_optionsv(b->rpl, MARIADB_RPL_SERVER_ID,
	    (unsigned int)cfg->mysql.server_id);
	mariadb_rpl_optionsv(b->rpl, MARIADB_RPL_FLAGS, 0);
	if (by_set) {
		if (tor_binlog_open_gtid(b->rpl, gtid_set,
		    (uint32_t)cfg->mysql.server_id, err) < 0) {
			tor_err_prefix(err, "mysql %s:%d: ", cfg->mysql.host,
			    cfg->mysql.port);
			goto fail;
		}
	} else if (mariadb_rpl_open(b->rpl) != 0) {
		tor_err_set(err, "mysql %s:%d: binlog dump from %s:%lu: %s",
		    cfg->mysql.host, cfg->mysql.port, file, start,
		    mysql_error(b->stream));
		goto fail;
	}
	if (start_reader(b) != 0) {
		tor_err_set(err, "binlog: cannot start the reader thread");
		goto fail;
	}
	b->reader_running = true;
	return 0;
fail:
	close_stream(b);
	return -1;
}

/* The client library parses each event before handing it over, and
 * refuses one it cannot: a type it does not know that the server did not
 * mark ignorable (5020), or bytes that do not parse (5021). */
static bool
is_refused_event(unsigned int code)
{
	switch (code) {
#ifdef CR_UNKNOWN_BINLOG_EVENT
	case CR_UNKNOWN_BINLOG_EVENT:
#endif
#ifdef CR_BINLOG_ERROR
	case CR_BINLOG_ERROR:
#endif
		return true;
	default:
		return false;
	}
}

/* Errors after which a new connection cannot do better: a refused event
 * comes again, the server sends the same bytes. */
static bool
is_fatal(unsigned int code)
{
	switch (code) {
	case ER_MASTER_FATAL_ERROR_READING_BINLOG:     /* 1236: purged, bad pos */
	case ER_ACCESS_DENIED_ERROR:
	case ER_SPECIFIC_ACCESS_DENIED_ERROR:
	case ER_DBACCESS_DENIED_ERROR:
		return true;
	default:
		return is_refused_event(code);
	}
}

/* Where the event the library refused starts (its log_pos less its size),
 * read from the packet it leaves in the connection's buffer; 0 when the
 * buffer does not hold an event. */
static uint64_t
refused_event_start(const MYSQL *m)
{
	const unsigned char *p = m->net.read_pos;
	uint32_t size, pos;

	if (p == NULL || m->net.buff_end < p + 1 + 17 || p[0] != 0)
		return 0;
	size = (uint32_t)p[10] | (uint32_t)p[11] << 8 | (uint32_t)p[12] << 16 |
	    (uint32_t)p[13] << 24;
	pos = (uint32_t)p[14] | (uint32_t)p[15] << 8 | (uint32_t)p[16] << 16 |
	    (uint32_t)p[17] << 24;
	return pos > size ? pos - size : 0;
}

/* Read after tor_binlog_next reported the end, which it read under the
 * mutex the reader set refused_at under. */
uint64_t
tor_binlog_refused_at(const struct tor_binlog *b)
{
	return b->ended ? b->refused_at : 0;
}

/* The reader's last word: why the stream ended. */
static void
reader_end(struct tor_binlog *b, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
reader_end(struct tor_binlog *b, int code, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&b->mu);
	va_start(ap, fmt);
	vsnprintf(b->end_msg, sizeof(b->end_msg), fmt, ap);
	va_end(ap);
	b->end_code = code;
	b->ended = true;
	pthread_mutex_unlock(&b->mu);
	wake_relay(b);
}

/* Copies one event into the ring, waiting for room: 1 when done, 0 when
 * the stream is closing, -1 out of memory. */
static int
ring_put(struct tor_binlog *b, const uint8_t *data, size_t len)
{
	size_t need = 4 + len;
	uint32_t len32 = (uint32_t)len;
	bool was_empty;

	pthread_mutex_lock(&b->mu);
	for (;;) {
		if (b->closing) {
			pthread_mutex_unlock(&b->mu);
			return 0;
		}
		/* A record goes at tail, or at 0 when it does not fit before
		 * the end; it needs the bytes up to head free. */
		if (b->used == 0) {
			b->head = b->tail = 0;
			b->wrap = 0;
			if (need > b->cap) {
				uint8_t *ring = realloc(b->ring, need);

				if (ring == NULL) {
					pthread_mutex_unlock(&b->mu);
					return -1;
				}
				b->ring = ring;
				b->cap = need;
			}
		}
		if (b->tail >= b->head && b->wrap == 0) {
			if (b->tail + need <= b->cap)
				break;
			if (need < b->head) {
				b->wrap = b->tail;
				b->tail = 0;
				break;
			}
		} else if (b->tail + need < b->head) {
			break;
		}
		b->writer_waiting = true;
		pthread_cond_wait(&b->space, &b->mu);
		b->writer_waiting = false;
	}
	memcpy(b->ring + b->tail, &len32, 4);
	memcpy(b->ring + b->tail + 4, data, len);
	b->tail += need;
	was_empty = b->used == 0;
	b->used += need;
	pthread_mutex_unlock(&b->mu);
	if (was_empty)
		wake_relay(b);
	return 1;
}

static void *
reader_main(void *arg)
{
	struct tor_binlog *b = arg;
	MARIADB_RPL_EVENT *ev;
	unsigned int code;

	for (;;) {
		ev = mariadb_rpl_fetch(b->rpl, NULL);
		if (ev == NULL)
			break;
		/* raw_data starts with the protocol's OK byte. */
		if (ev->raw_data_size < 1 + 19) {
			size_t n = ev->raw_data_size;

			mariadb_free_rpl_event(ev);
			reader_end(b, TOR_BINLOG_ERROR, "binlog stream: short "
			    "packet (%zu bytes)", n);
			return NULL;
		}
		size_t n = ev->raw_data_size - 1;
		int put = ring_put(b, ev->raw_data + 1, n);

		mariadb_free_rpl_event(ev);
		if (put == 0)
			return NULL;    /* closing */
		if (put < 0) {
			reader_end(b, TOR_BINLOG_FATAL, "binlog: out of memory "
			    "for an event of %zu bytes", n);
			return NULL;
		}
	}
	code = mysql_errno(b->stream);
	if (code == 0)
		code = b->rpl->error_no;
	if (is_refused_event(code)) {
		pthread_mutex_lock(&b->mu);
		b->refused_at = refused_event_start(b->stream);
		pthread_mutex_unlock(&b->mu);
	}
	reader_end(b, is_fatal(code) ? TOR_BINLOG_FATAL : TOR_BINLOG_ERROR,
	    "mysql %s:%d: binlog stream: %s (%u)", b->cfg->mysql.host,
	    b->cfg->mysql.port, code != 0 ? (mysql_errno(b->stream) ?
	    mysql_error(b->stream) : b->rpl->error_msg) :
	    "the server ended the stream", code);
	return NULL;
}

/* An empty ring grown for an outsized event goes back to RING_CAP (the
 * writer grows it again when it must).  Called with the lock held. */
static void
shrink_ring(struct tor_binlog *b)
{
	uint8_t *ring;

	if (b->used != 0 || b->cap <= RING_CAP)
		return;
	if ((ring = malloc(RING_CAP)) == NULL)
		return;
	free(b->ring);
	b->ring = ring;
	b->cap = RING_CAP;
	b->head = b->tail = b->wrap = 0;
}

int
tor_binlog_next(struct tor_binlog *b, const uint8_t **raw, size_t *len,
    tor_err *err)
{
	uint32_t n;
	uint64_t count;

	if (b->rpl == NULL)
		return tor_err_set(err, "binlog: no stream open"), TOR_BINLOG_ERROR;
	/* Reset the wake-up first: an event put after this wakes us again. */
	if (read(b->event_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		return tor_err_set(err, "binlog: eventfd: %s", strerror(errno)),
		    TOR_BINLOG_ERROR;
	pthread_mutex_lock(&b->mu);
	if (b->used == 0) {
		int code = b->ended ? b->end_code : TOR_BINLOG_NONE;

		if (b->ended)
			tor_err_set(err, "%s", b->end_msg);
		pthread_mutex_unlock(&b->mu);
		return code;
	}
	if (b->wrap != 0 && b->head == b->wrap) {
		b->head = 0;
		b->wrap = 0;
	}
	memcpy(&n, b->ring + b->head, 4);
	/* The last event is done with: a fresh buffer, not a copy of it. */
	if (n > b->event_cap || (b->event_cap > RING_CAP && n <= RING_CAP)) {
		size_t want = n > RING_CAP ? n : RING_CAP;
		uint8_t *e = malloc(want);

		if (e == NULL) {
			pthread_mutex_unlock(&b->mu);
			return tor_err_set(err, "out of memory"), TOR_BINLOG_ERROR;
		}
		free(b->event);
		b->event = e;
		b->event_cap = want;
	}
	memcpy(b->event, b->ring + b->head + 4, n);
	b->head += 4 + n;
	b->used -= 4 + n;
	shrink_ring(b);
	/* Wake a waiting reader only once half the ring is free: one wake-up
	 * per batch of events, not per event. */
	if (b->writer_waiting && b->used <= b->cap / 2)
		pthread_cond_signal(&b->space);
	pthread_mutex_unlock(&b->mu);
	*raw = b->event;
	*len = n;
	return TOR_BINLOG_EVENT;
}

int
tor_binlog_files(struct tor_binlog *b, struct tor_binlog_file **files,
    size_t *n, tor_err *err)
{
	MYSQL_RES *res = binary_logs(b, err);
	MYSQL_ROW row;
	size_t rows;

	*files = NULL;
	*n = 0;
	if (res == NULL)
		return -1;
	rows = (size_t)mysql_num_rows(res);
	if (rows > 0 && (*files = calloc(rows, sizeof(**files))) == NULL) {
		mysql_free_result(res);
		return tor_err_set(err, "binlog: out of memory");
	}
	while ((row = mysql_fetch_row(res)) != NULL && *n < rows) {
		if (row[0] == NULL)
			continue;
		snprintf((*files)[*n].name, sizeof((*files)[*n].name), "%s",
		    row[0]);
		(*files)[*n].size = row[1] != NULL ? strtoull(row[1], NULL, 10) :
		    0;
		(*n)++;
	}
	mysql_free_result(res);
	return 0;
}

int
tor_binlog_global(struct tor_binlog *b, const char *name, char *buf,
    size_t cap, tor_err *err)
{
	char esc[2 * 64 + 1], sql[sizeof(esc) + 64];
	MYSQL_RES *res;
	MYSQL_ROW row;

	buf[0] = '\0';
	if (strlen(name) > 64)
		return tor_err_set(err, "mysql: no variable is named '%s'", name);
	if (ensure_query(b, err) < 0)
		return -1;
	mysql_real_escape_string(b->query, esc, name,
	    (unsigned long)strlen(name));
	snprintf(sql, sizeof(sql), "SHOW GLOBAL VARIABLES LIKE '%s'", esc);
	if ((res = query_rows(b, sql, err)) == NULL)
		return -1;
	if ((row = mysql_fetch_row(res)) != NULL && row[1] != NULL)
		snprintf(buf, cap, "%s", row[1]);
	mysql_free_result(res);
	return 0;
}

int
tor_binlog_file_started(struct tor_binlog *b, const char *file,
    int64_t *started_s, tor_err *err)
{
	const struct tor_config *cfg = b->cfg;
	MYSQL *m;
	MARIADB_RPL *rpl;
	MARIADB_RPL_EVENT *ev;
	int rc = -1;

	m = connect_server(cfg, cfg->mysql.connect_timeout_ms, err);
	if (m == NULL)
		return -1;
	if (set_session(m, "SET @master_binlog_checksum = "
	    "@@global.binlog_checksum", err) < 0) {
		mysql_close(m);
		return -1;
	}
	if ((rpl = mariadb_rpl_init(m)) == NULL) {
		tor_err_set(err, "mysql: cannot start replication: %s",
		    mysql_error(m));
		mysql_close(m);
		return -1;
	}
	mariadb_rpl_optionsv(rpl, MARIADB_RPL_FILENAME, file, strlen(file));
	mariadb_rpl_optionsv(rpl, MARIADB_RPL_START, 4UL);
	mariadb_rpl_optionsv(rpl, MARIADB_RPL_SERVER_ID, 0U);
	mariadb_rpl_optionsv(rpl, MARIADB_RPL_FLAGS,
	    (unsigned int)MARIADB_RPL_BINLOG_DUMP_NON_BLOCK);
	if (mariadb_rpl_open(rpl) != 0) {
		tor_err_set(err, "mysql %s:%d: binlog dump from %s:4: %s",
		    cfg->mysql.host, cfg->mysql.port, file, mysql_error(m));
		goto out;
	}
	/* A dump from 4 opens with a fake ROTATE (timestamp 0), then the
	 * file's own format description event. */
	for (int i = 0; i < 4 && rc < 0; i++) {
		if ((ev = mariadb_rpl_fetch(rpl, NULL)) == NULL)
			break;
		/* raw_data starts with the protocol's OK byte. */
		if (ev->raw_data_size >= 1 + 19 &&
		    ev->raw_data[1 + 4] == FORMAT_DESCRIPTION_EVENT) {
			const uint8_t *h = ev->raw_data + 1;

			*started_s = (int64_t)((uint32_t)h[0] |
			    (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 |
			    (uint32_t)h[3] << 24);
			rc = 0;
		}
		mariadb_free_rpl_event(ev);
	}
	if (rc < 0)
		tor_err_set(err, "mysql %s:%d: binlog %s: no format description "
		    "event at its start%s%s", cfg->mysql.host, cfg->mysql.port,
		    file, mysql_errno(m) ? ": " : "",
		    mysql_errno(m) ? mysql_error(m) : "");
out:
	mariadb_rpl_close(rpl);
	mysql_close(m);
	return rc;
}
