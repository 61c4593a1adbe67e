/*
 * Binlog event decoding (see include/tor/binlog_decode.h).
 *
 * The bytes come from a network peer, so every read goes through a cursor
 * that knows where its buffer ends: a cursor never hands out a byte past
 * the end, and every refusal names the event and the field that did not
 * fit.  Counts read from the input (columns, enum members) are bounded by
 * what a table can hold and by the bytes that remain before anything is
 * allocated for them, and an inflated event may not claim more than zlib's
 * best ratio allows (nor more than TOR_EVENT_MAX) and gets memory only as
 * it inflates, so a hostile length field cannot make us allocate more than
 * a small multiple of what was received.  Nor is anything walked once per
 * item of the input (a charset pair, a repeated field, a row's step over
 * the table's columns), so an event costs time in proportion to its bytes.
 *
 * Row images are decoded in two steps: column_size() learns how many bytes
 * a value occupies from the column type and the TABLE_MAP metadata (which
 * is all that is needed to step over an UPDATE's before image), and
 * render_value() turns those bytes into the text the header promises.
 * Strings point into the event; everything else is rendered into the
 * rows' scratch buffer and the pointers are fixed up once the row is done,
 * because the scratch may move while it grows.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <isa-l/crc.h>
#include <zlib.h>

#include "tor/binlog_decode.h"
#include "tor/binlog_json.h"
#include "tor/buf.h"
#include "tor/err.h"

#define COMMON_HEADER_LEN       19
#define CHECKSUM_LEN            4
#define FDE_FIXED_LEN           57      /* version, server version, time, hlen */
#define CHECKSUM_ALG_OFF        0
#define CHECKSUM_ALG_CRC32      1
/* zlib cannot expand data by more than about 1032:1; a compressed event
 * claiming more is lying, and we refuse before allocating.  A claim within
 * that may still lie: the buffer starts at INFLATE_FIRST and grows only as
 * the data inflates. */
#define ZLIB_MAX_RATIO          1032
#define INFLATE_FIRST           (1u << 20)
#define CHARSET_BINARY          63
/* What a table can hold on MySQL and MariaDB alike: 4096 columns
 * (MAX_FIELDS), 64 members in a SET, 65535 in an ENUM.  A map or a row
 * past them is not from a server, and would cost memory or time in
 * proportion. */
#define TABLE_COLUMNS_MAX       4096
#define SET_MEMBERS_MAX         64
#define ENUM_MEMBERS_MAX        65535

/* Optional metadata field types of a TABLE_MAP (binlog_row_metadata).
 * A server writes each at most once. */
enum {
	OPT_SIGNEDNESS = 1,
	OPT_DEFAULT_CHARSET = 2,
	OPT_COLUMN_CHARSET = 3,
	OPT_COLUMN_NAME = 4,
	OPT_SET_STR_VALUE = 5,
	OPT_ENUM_STR_VALUE = 6,
};

static const char *const opt_names[] = { NULL, "SIGNEDNESS",
    "DEFAULT_CHARSET", "COLUMN_CHARSET", "COLUMN_NAME", "SET_STR_VALUE",
    "ENUM_STR_VALUE" };

/* A read position inside one event; `what` names the event in messages. */
struct cursor {
	const uint8_t *p;
	const uint8_t *end;
	const char *what;
};

uint64_t
tor_le_read(const uint8_t *p, size_t n)
{
	uint64_t v = 0;

	for (size_t i = n; i > 0; i--)
		v = v << 8 | p[i - 1];
	return v;
}

static uint64_t
get_be(const uint8_t *p, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

static size_t
cur_left(const struct cursor *c)
{
	return (size_t)(c->end - c->p);
}

/* Hands out the next n bytes (n may come straight from the input, hence
 * 64 bits). */
static int
cur_take(struct cursor *c, uint64_t n, const uint8_t **out, const char *field,
    tor_err *err)
{
	if (n > cur_left(c))
		return tor_err_set(err, "%s: truncated %s (need %llu bytes, "
		    "%zu left)", c->what, field, (unsigned long long)n,
		    cur_left(c));
	if (out != NULL)
		*out = c->p;
	c->p += n;
	return 0;
}

static int
cur_le(struct cursor *c, size_t n, uint64_t *v, const char *field,
    tor_err *err)
{
	const uint8_t *p;

	if (cur_take(c, n, &p, field, err) == -1)
		return -1;
	*v = tor_le_read(p, n);
	return 0;
}

/* A length-encoded ("packed") integer. 251 means SQL NULL in the client
 * protocol and never occurs in a binlog length, so it is refused. */
static int
cur_packed(struct cursor *c, uint64_t *v, const char *field, tor_err *err)
{
	const uint8_t *p;

	if (cur_take(c, 1, &p, field, err) == -1)
		return -1;
	switch (*p) {
	case 251:
	case 255:
		return tor_err_set(err, "%s: bad packed integer prefix 0x%02x "
		    "in %s", c->what, *p, field);
	case 252:
		return cur_le(c, 2, v, field, err);
	case 253:
		return cur_le(c, 3, v, field, err);
	case 254:
		return cur_le(c, 8, v, field, err);
	default:
		*v = *p;
		return 0;
	}
}

static bool
bit_lsb(const uint8_t *map, size_t i)
{
	return (map[i / 8] >> (i % 8)) & 1;
}

const char *
tor_event_name(uint8_t type)
{
	switch (type) {
	case TOR_EV_QUERY: return "QUERY";
	case TOR_EV_STOP: return "STOP";
	case TOR_EV_ROTATE: return "ROTATE";
	case TOR_EV_INTVAR: return "INTVAR";
	case TOR_EV_APPEND_BLOCK: return "APPEND_BLOCK";
	case TOR_EV_DELETE_FILE: return "DELETE_FILE";
	case TOR_EV_RAND: return "RAND";
	case TOR_EV_USER_VAR: return "USER_VAR";
	case TOR_EV_FORMAT_DESCRIPTION: return "FORMAT_DESCRIPTION";
	case TOR_EV_XID: return "XID";
	case TOR_EV_BEGIN_LOAD_QUERY: return "BEGIN_LOAD_QUERY";
	case TOR_EV_EXECUTE_LOAD_QUERY: return "EXECUTE_LOAD_QUERY";
	case TOR_EV_TABLE_MAP: return "TABLE_MAP";
	case TOR_EV_WRITE_ROWS_V0: return "WRITE_ROWS_V0";
	case TOR_EV_UPDATE_ROWS_V0: return "UPDATE_ROWS_V0";
	case TOR_EV_DELETE_ROWS_V0: return "DELETE_ROWS_V0";
	case TOR_EV_WRITE_ROWS_V1: return "WRITE_ROWS_V1";
	case TOR_EV_UPDATE_ROWS_V1: return "UPDATE_ROWS_V1";
	case TOR_EV_DELETE_ROWS_V1: return "DELETE_ROWS_V1";
	case TOR_EV_INCIDENT: return "INCIDENT";
	case TOR_EV_HEARTBEAT: return "HEARTBEAT";
	case TOR_EV_IGNORABLE: return "IGNORABLE";
	case TOR_EV_ROWS_QUERY: return "ROWS_QUERY";
	case TOR_EV_WRITE_ROWS_V2: return "WRITE_ROWS";
	case TOR_EV_UPDATE_ROWS_V2: return "UPDATE_ROWS";
	case TOR_EV_DELETE_ROWS_V2: return "DELETE_ROWS";
	case TOR_EV_MYSQL_GTID: return "GTID";
	case TOR_EV_MYSQL_ANONYMOUS_GTID: return "ANONYMOUS_GTID";
	case TOR_EV_MYSQL_PREVIOUS_GTIDS: return "PREVIOUS_GTIDS";
	case TOR_EV_MYSQL_TRANSACTION_CONTEXT: return "TRANSACTION_CONTEXT";
	case TOR_EV_MYSQL_VIEW_CHANGE: return "VIEW_CHANGE";
	case TOR_EV_XA_PREPARE: return "XA_PREPARE";
	case TOR_EV_MYSQL_PARTIAL_UPDATE_ROWS: return "PARTIAL_UPDATE_ROWS";
	case TOR_EV_MYSQL_TRANSACTION_PAYLOAD: return "TRANSACTION_PAYLOAD";
	case TOR_EV_HEARTBEAT_V2: return "HEARTBEAT_V2";
	case TOR_EV_MYSQL_GTID_TAGGED: return "GTID_TAGGED";
	case TOR_EV_MARIADB_ANNOTATE_ROWS: return "ANNOTATE_ROWS";
	case TOR_EV_MARIADB_BINLOG_CHECKPOINT: return "BINLOG_CHECKPOINT";
	case TOR_EV_MARIADB_GTID: return "MARIADB_GTID";
	case TOR_EV_MARIADB_GTID_LIST: return "GTID_LIST";
	case TOR_EV_MARIADB_START_ENCRYPTION: return "START_ENCRYPTION";
	case TOR_EV_MARIADB_QUERY_COMPRESSED: return "QUERY_COMPRESSED";
	case TOR_EV_MARIADB_WRITE_ROWS_COMPRESSED_V1:
		return "WRITE_ROWS_COMPRESSED_V1";
	case TOR_EV_MARIADB_UPDATE_ROWS_COMPRESSED_V1:
		return "UPDATE_ROWS_COMPRESSED_V1";
	case TOR_EV_MARIADB_DELETE_ROWS_COMPRESSED_V1:
		return "DELETE_ROWS_COMPRESSED_V1";
	case TOR_EV_MARIADB_WRITE_ROWS_COMPRESSED:
		return "WRITE_ROWS_COMPRESSED";
	case TOR_EV_MARIADB_UPDATE_ROWS_COMPRESSED:
		return "UPDATE_ROWS_COMPRESSED";
	case TOR_EV_MARIADB_DELETE_ROWS_COMPRESSED:
		return "DELETE_ROWS_COMPRESSED";
	default: return NULL;
	}
}

static const char *
event_name(uint8_t type)
{
	const char *n = tor_event_name(type);

	return n != NULL ? n : "binlog";
}

static const char *
type_name(uint8_t type)
{
	switch (type) {
	case TOR_TYPE_DECIMAL: return "DECIMAL(old)";
	case TOR_TYPE_TINY: return "TINYINT";
	case TOR_TYPE_SHORT: return "SMALLINT";
	case TOR_TYPE_LONG: return "INT";
	case TOR_TYPE_FLOAT: return "FLOAT";
	case TOR_TYPE_DOUBLE: return "DOUBLE";
	case TOR_TYPE_NULL: return "NULL";
	case TOR_TYPE_TIMESTAMP: return "TIMESTAMP(old)";
	case TOR_TYPE_LONGLONG: return "BIGINT";
	case TOR_TYPE_INT24: return "MEDIUMINT";
	case TOR_TYPE_DATE: return "DATE";
	case TOR_TYPE_TIME: return "TIME(old)";
	case TOR_TYPE_DATETIME: return "DATETIME(old)";
	case TOR_TYPE_YEAR: return "YEAR";
	case TOR_TYPE_NEWDATE: return "NEWDATE";
	case TOR_TYPE_VARCHAR: return "VARCHAR";
	case TOR_TYPE_BIT: return "BIT";
	case TOR_TYPE_TIMESTAMP2: return "TIMESTAMP";
	case TOR_TYPE_DATETIME2: return "DATETIME";
	case TOR_TYPE_TIME2: return "TIME";
	case TOR_TYPE_VECTOR: return "VECTOR";
	case TOR_TYPE_JSON: return "JSON";
	case TOR_TYPE_NEWDECIMAL: return "DECIMAL";
	case TOR_TYPE_ENUM: return "ENUM";
	case TOR_TYPE_SET: return "SET";
	case TOR_TYPE_TINY_BLOB: return "TINYBLOB";
	case TOR_TYPE_MEDIUM_BLOB: return "MEDIUMBLOB";
	case TOR_TYPE_LONG_BLOB: return "LONGBLOB";
	case TOR_TYPE_BLOB: return "BLOB";
	case TOR_TYPE_VAR_STRING: return "VAR_STRING";
	case TOR_TYPE_STRING: return "CHAR";
	case TOR_TYPE_GEOMETRY: return "GEOMETRY";
	default: return "unknown";
	}
}

/*
 * Formats and events
 */

void
tor_format_init(struct tor_format *fmt, bool checksum)
{
	memset(fmt, 0, sizeof(*fmt));
	fmt->binlog_version = 4;
	fmt->header_len = COMMON_HEADER_LEN;
	fmt->checksum = checksum;
	/* The v4 post-header lengths every server since 5.0 agrees on, so the
	 * events before the first FORMAT_DESCRIPTION (a fake ROTATE) parse. */
	fmt->post_header_len[TOR_EV_QUERY] = 13;
	fmt->post_header_len[TOR_EV_ROTATE] = 8;
	fmt->post_header_len[TOR_EV_FORMAT_DESCRIPTION] = 84;
	fmt->post_header_len[TOR_EV_TABLE_MAP] = 8;
	for (int t = TOR_EV_WRITE_ROWS_V1; t <= TOR_EV_DELETE_ROWS_V1; t++)
		fmt->post_header_len[t] = 8;
	for (int t = TOR_EV_WRITE_ROWS_V2; t <= TOR_EV_DELETE_ROWS_V2; t++)
		fmt->post_header_len[t] = 10;
	fmt->post_header_len[TOR_EV_MYSQL_GTID] = 42;
	fmt->post_header_len[TOR_EV_MYSQL_ANONYMOUS_GTID] = 42;
	fmt->post_header_len[TOR_EV_MARIADB_GTID] = 19;
	fmt->post_header_len[TOR_EV_MARIADB_QUERY_COMPRESSED] = 13;
	for (int t = TOR_EV_MARIADB_WRITE_ROWS_COMPRESSED_V1;
	    t <= TOR_EV_MARIADB_DELETE_ROWS_COMPRESSED_V1; t++)
		fmt->post_header_len[t] = 8;
	for (int t = TOR_EV_MARIADB_WRITE_ROWS_COMPRESSED;
	    t <= TOR_EV_MARIADB_DELETE_ROWS_COMPRESSED; t++)
		fmt->post_header_len[t] = 10;
}

/* Whether a server of this version writes the checksum algorithm byte into
 * its FORMAT_DESCRIPTION: MySQL from 5.6.1, MariaDB from 5.3.0. */
static bool
version_has_checksum(const uint8_t *ver, size_t cap)
{
	char s[51];
	unsigned int v[3] = { 0, 0, 0 };
	const char *p;
	bool mariadb;

	if (cap > sizeof(s) - 1)
		cap = sizeof(s) - 1;
	memcpy(s, ver, cap);
	s[cap] = '\0';
	mariadb = strstr(s, "MariaDB") != NULL || strstr(s, "-maria-") != NULL;
	p = s;
	for (int i = 0; i < 3; i++) {
		unsigned int n = 0;

		while (*p >= '0' && *p <= '9') {
			if (n < 100000)
				n = n * 10 + (unsigned int)(*p - '0');
			p++;
		}
		v[i] = n;
		if (*p != '.')
			break;
		p++;
	}
	if (mariadb)
		return v[0] > 5 || (v[0] == 5 && v[1] >= 3);
	return v[0] > 5 || (v[0] == 5 && (v[1] > 6 || (v[1] == 6 && v[2] >= 1)));
}

/*
 * A server sets LOG_EVENT_BINLOG_IN_USE_F in the FORMAT_DESCRIPTION of the
 * binlog file it is writing and clears it in place when it closes the file,
 * without rewriting the checksum: the checksum is always computed with the
 * flag clear.
 */
#define BINLOG_IN_USE_F 0x1

static int
check_crc(const uint8_t *raw, size_t len, uint8_t type, uint32_t next_pos,
    tor_err *err)
{
	uint32_t want = (uint32_t)tor_le_read(raw + len - CHECKSUM_LEN, CHECKSUM_LEN);
	uint32_t got;
	uint8_t flags = raw[17];

	if (type == TOR_EV_FORMAT_DESCRIPTION)
		flags &= ~BINLOG_IN_USE_F;
	/* The binlog's CRC-32 is zlib's; ISA-L computes the same one with
	 * carry-less multiplication, about fifteen times faster than zlib on
	 * events of a few hundred bytes (every event is checked). */
	got = crc32_gzip_refl(0, raw, 17);
	got = crc32_gzip_refl(got, &flags, 1);
	got = crc32_gzip_refl(got, raw + 18, len - 18 - CHECKSUM_LEN);
	if (want != got)
		return tor_err_set(err, "checksum mismatch in %s event at %u "
		    "(stored 0x%08x, computed 0x%08x)", event_name(type),
		    next_pos, want, got);
	return 0;
}

int
tor_event_parse(const uint8_t *raw, size_t len, const struct tor_format *fmt,
    struct tor_event *ev, tor_err *err)
{
	size_t hlen = fmt->header_len < COMMON_HEADER_LEN ? COMMON_HEADER_LEN :
	    fmt->header_len;
	size_t tail = 0;

	if (len < COMMON_HEADER_LEN)
		return tor_err_set(err, "binlog event too short: %zu bytes, the "
		    "common header alone needs %d", len, COMMON_HEADER_LEN);
	memset(ev, 0, sizeof(*ev));
	ev->timestamp = (uint32_t)tor_le_read(raw, 4);
	ev->type = raw[4];
	ev->server_id = (uint32_t)tor_le_read(raw + 5, 4);
	ev->size = (uint32_t)tor_le_read(raw + 9, 4);
	ev->next_pos = (uint32_t)tor_le_read(raw + 13, 4);
	ev->flags = (uint16_t)tor_le_read(raw + 17, 2);
	if (ev->size != len)
		return tor_err_set(err, "%s event at %u: size field says %u "
		    "bytes but %zu were received", event_name(ev->type),
		    ev->next_pos, ev->size, len);
	if (ev->type == TOR_EV_FORMAT_DESCRIPTION) {
		/* Its header is frozen at 19 bytes, and it says by itself
		 * whether it carries a checksum, whatever came before. */
		hlen = COMMON_HEADER_LEN;
		if (len >= hlen + FDE_FIXED_LEN + 1 + CHECKSUM_LEN &&
		    version_has_checksum(raw + hlen + 2, 50)) {
			uint8_t alg = raw[len - CHECKSUM_LEN - 1];

			if (alg == CHECKSUM_ALG_CRC32) {
				if (check_crc(raw, len, ev->type, ev->next_pos,
				    err) == -1)
					return -1;
			} else if (alg != CHECKSUM_ALG_OFF) {
				return tor_err_set(err, "FORMAT_DESCRIPTION "
				    "event at %u: unknown checksum algorithm %u",
				    ev->next_pos, alg);
			}
			/* Keep the algorithm byte in the body for
			 * tor_format_parse; the 4 bytes after it are there
			 * even when checksums are off. */
			tail = CHECKSUM_LEN;
		}
	} else if (fmt->checksum) {
		if (len < hlen + CHECKSUM_LEN)
			return tor_err_set(err, "%s event at %u: %zu bytes "
			    "cannot hold the header and a checksum",
			    event_name(ev->type), ev->next_pos, len);
		if (check_crc(raw, len, ev->type, ev->next_pos, err) == -1)
			return -1;
		tail = CHECKSUM_LEN;
	}
	if (len < hlen + tail)
		return tor_err_set(err, "%s event at %u: %zu bytes cannot hold "
		    "a %zu-byte header", event_name(ev->type), ev->next_pos,
		    len, hlen);
	ev->body = raw + hlen;
	ev->body_len = len - hlen - tail;
	return 0;
}

int
tor_format_parse(const struct tor_event *ev, struct tor_format *fmt,
    tor_err *err)
{
	struct cursor c = { ev->body, ev->body + ev->body_len,
	    "FORMAT_DESCRIPTION" };
	const uint8_t *ver, *hl;
	uint64_t v;
	size_t n;
	bool has_alg;
	struct tor_format f;

	if (ev->type != TOR_EV_FORMAT_DESCRIPTION)
		return tor_err_set(err, "expected a FORMAT_DESCRIPTION event, "
		    "got type %u", ev->type);
	if (cur_le(&c, 2, &v, "binlog version", err) == -1 ||
	    cur_take(&c, 50, &ver, "server version", err) == -1 ||
	    cur_take(&c, 4, NULL, "create timestamp", err) == -1 ||
	    cur_take(&c, 1, &hl, "header length", err) == -1)
		return -1;
	if (v != 4)
		return tor_err_set(err, "FORMAT_DESCRIPTION: binlog version %u "
		    "is not supported (only 4, MySQL 5.0 and later)",
		    (unsigned int)v);
	if (*hl < COMMON_HEADER_LEN)
		return tor_err_set(err, "FORMAT_DESCRIPTION: common header "
		    "length %u is shorter than %d", *hl, COMMON_HEADER_LEN);
	tor_format_init(&f, false);
	f.binlog_version = (uint16_t)v;
	memcpy(f.server_version, ver, 50);
	f.server_version[50] = '\0';
	f.mariadb = strstr(f.server_version, "MariaDB") != NULL;
	f.header_len = *hl;
	has_alg = version_has_checksum(ver, 50);
	n = cur_left(&c);
	if (has_alg) {
		if (n < 1)
			return tor_err_set(err, "FORMAT_DESCRIPTION: missing "
			    "checksum algorithm byte");
		n--;
		f.checksum = c.p[n] == CHECKSUM_ALG_CRC32;
	}
	/* One length per event type, starting at type 1. */
	if (n > 255)
		n = 255;
	for (size_t i = 0; i < n; i++)
		f.post_header_len[i + 1] = c.p[i];
	*fmt = f;
	return 0;
}

int
tor_rotate_parse(const struct tor_event *ev, const struct tor_format *fmt,
    char *file, size_t file_cap, uint64_t *pos, tor_err *err)
{
	struct cursor c = { ev->body, ev->body + ev->body_len, "ROTATE" };
	size_t phl = fmt->post_header_len[TOR_EV_ROTATE];
	size_t n;

	if (ev->type != TOR_EV_ROTATE)
		return tor_err_set(err, "expected a ROTATE event, got type %u",
		    ev->type);
	if (phl < 8)
		phl = 8;
	if (cur_le(&c, 8, pos, "position", err) == -1 ||
	    cur_take(&c, phl - 8, NULL, "post-header", err) == -1)
		return -1;
	n = cur_left(&c);
	if (n == 0)
		return tor_err_set(err, "ROTATE: empty file name");
	if (memchr(c.p, '\0', n) != NULL)
		return tor_err_set(err, "ROTATE: file name contains a NUL byte");
	if (n >= file_cap)
		return tor_err_set(err, "ROTATE: file name of %zu bytes does "
		    "not fit in %zu", n, file_cap);
	memcpy(file, c.p, n);
	file[n] = '\0';
	return 0;
}

/*
 * MySQL's serialization format (8.3+, GTID_TAGGED): integers are
 * variable-length, the count of trailing one bits of the first byte
 * saying how many more bytes follow (eight ones: the next eight bytes
 * are the value), the value shifted left past those bits; signed values
 * zigzag-encoded.
 */
static int
cur_varlen(struct cursor *c, uint64_t *v, const char *field, tor_err *err)
{
	const uint8_t *p;
	size_t n = 1;

	if (cur_take(c, 1, &p, field, err) == -1)
		return -1;
	while (n < 9 && (p[0] >> (n - 1) & 1))
		n++;
	if (n > 1 && cur_take(c, n - 1, NULL, field, err) == -1)
		return -1;
	if (n == 9)
		*v = tor_le_read(p + 1, 8);
	else
		*v = tor_le_read(p, n) >> n;
	return 0;
}

/* The fields of a tagged GTID event, by their number: a message header
 * (format version, size, last field a reader must know), then (number,
 * value) pairs in increasing order.  Only the GTID's parts are read. */
enum {
	TAGGED_FLAGS = 0, TAGGED_SID = 1, TAGGED_GNO = 2, TAGGED_TAG = 3,
	TAGGED_LAST_KNOWN = 11,         /* commit_group_ticket, MySQL 8.4 */
};

static int
parse_tagged_gtid(struct cursor *c, struct tor_gtid *gtid, tor_err *err)
{
	uint64_t version, size, last, id, v, len;
	const uint8_t *tag, *start = c->p;
	bool has_sid = false, has_gno = false;

	if (cur_varlen(c, &version, "format version", err) == -1 ||
	    cur_varlen(c, &size, "size", err) == -1 ||
	    cur_varlen(c, &last, "last required field", err) == -1)
		return -1;
	if (size > (uint64_t)(c->end - start) ||
	    size < (uint64_t)(c->p - start))
		return tor_err_set(err, "GTID_TAGGED: size %llu, the event "
		    "holds %zu and its header alone %zu",
		    (unsigned long long)size, (size_t)(c->end - start),
		    (size_t)(c->p - start));
	c->end = start + size;
	/* A field a reader must know that this one does not. */
	if (last > TAGGED_LAST_KNOWN)
		return tor_err_set(err, "GTID_TAGGED: field %llu is required "
		    "and unknown to tor (a newer server?)",
		    (unsigned long long)last);
	while (cur_left(c) > 0) {
		if (cur_varlen(c, &id, "field number", err) == -1)
			return -1;
		if (id > TAGGED_TAG)
			break;
		switch (id) {
		case TAGGED_FLAGS:
			if (cur_varlen(c, &v, "flags", err) == -1)
				return -1;
			break;
		case TAGGED_SID:
			for (int i = 0; i < 16; i++) {
				if (cur_varlen(c, &v, "source id", err) == -1)
					return -1;
				gtid->sid[i] = (uint8_t)v;
			}
			has_sid = true;
			break;
		case TAGGED_GNO:
			if (cur_varlen(c, &v, "transaction number", err) == -1)
				return -1;
			gtid->gno = (v >> 1) ^ (0 - (v & 1));
			has_gno = true;
			break;
		case TAGGED_TAG:
			if (cur_varlen(c, &len, "tag length", err) == -1 ||
			    cur_take(c, len, &tag, "tag", err) == -1)
				return -1;
			if (len >= sizeof(gtid->tag))
				return tor_err_set(err, "GTID_TAGGED: tag of "
				    "%llu bytes, at most 32",
				    (unsigned long long)len);
			memcpy(gtid->tag, tag, len);
			gtid->tag[len] = '\0';
			break;
		}
	}
	if (!has_sid || !has_gno)
		return tor_err_set(err, "GTID_TAGGED: no %s field",
		    has_sid ? "transaction number" : "source id");
	return 0;
}

int
tor_gtid_parse(const struct tor_event *ev, const struct tor_format *fmt,
    struct tor_gtid *gtid, tor_err *err)
{
	struct cursor c = { ev->body, ev->body + ev->body_len,
	    event_name(ev->type) };
	const uint8_t *p;
	uint64_t v;

	(void)fmt;
	memset(gtid, 0, sizeof(*gtid));
	switch (ev->type) {
	case TOR_EV_MARIADB_GTID:
		gtid->mariadb = true;
		gtid->server_id = ev->server_id;
		if (cur_le(&c, 8, &gtid->seq_no, "sequence number", err) == -1 ||
		    cur_le(&c, 4, &v, "domain id", err) == -1 ||
		    cur_take(&c, 1, &p, "flags", err) == -1)
			return -1;
		gtid->domain_id = (uint32_t)v;
		gtid->standalone = (*p & 1) != 0;
		gtid->xa_prepare = (*p & 0x40) != 0;
		return 0;
	case TOR_EV_MYSQL_GTID:
	case TOR_EV_MYSQL_ANONYMOUS_GTID:
		if (cur_take(&c, 1, NULL, "flags", err) == -1 ||
		    cur_take(&c, 16, &p, "source id", err) == -1 ||
		    cur_le(&c, 8, &gtid->gno, "transaction number", err) == -1)
			return -1;
		memcpy(gtid->sid, p, 16);
		return 0;
	case TOR_EV_MYSQL_GTID_TAGGED:
		return parse_tagged_gtid(&c, gtid, err);
	default:
		return tor_err_set(err, "expected a GTID event, got type %u",
		    ev->type);
	}
}

/* The high bit of a 7-byte commit time (4-byte server version) says that
 * the original one follows; else the original equals the immediate. */
#define COMMIT_TS_ORIGINAL_FOLLOWS      (1ULL << 55)
#define SERVER_VERSION_ORIGINAL_FOLLOWS (1ULL << 31)
#define LOGICAL_CLOCK_TYPECODE          2

int
tor_gtid_commit_parse(const struct tor_event *ev, const struct tor_format *fmt,
    struct tor_gtid_commit *cm, tor_err *err)
{
	struct cursor c = { ev->body, ev->body + ev->body_len,
	    event_name(ev->type) };
	const uint8_t *p;
	uint64_t v;

	(void)fmt;
	memset(cm, 0, sizeof(*cm));
	if (ev->type != TOR_EV_MYSQL_GTID &&
	    ev->type != TOR_EV_MYSQL_ANONYMOUS_GTID)
		return tor_err_set(err, "expected a MySQL GTID event, got type "
		    "%u", ev->type);
	/* flags, sid, gno: what tor_gtid_parse reads.  5.6 stops there. */
	if (cur_take(&c, 1 + 16 + 8, NULL, "GTID", err) == -1)
		return -1;
	if (cur_left(&c) == 0)
		return 0;
	if (cur_take(&c, 1, &p, "logical clock typecode", err) == -1)
		return -1;
	if (*p != LOGICAL_CLOCK_TYPECODE)
		return tor_err_set(err, "%s: logical clock typecode %u, "
		    "expected %u", c.what, *p, LOGICAL_CLOCK_TYPECODE);
	if (cur_le(&c, 8, &v, "last_committed", err) == -1)
		return -1;
	cm->last_committed = (int64_t)v;
	if (cur_le(&c, 8, &v, "sequence_number", err) == -1)
		return -1;
	cm->sequence_number = (int64_t)v;
	/* 8.0.1+: the commit times; 8.0.2+ the length; 8.0.14+ versions. */
	if (cur_left(&c) == 0)
		return 0;
	if (cur_le(&c, 7, &v, "immediate_commit_timestamp", err) == -1)
		return -1;
	cm->immediate_commit_us = (int64_t)(v & ~COMMIT_TS_ORIGINAL_FOLLOWS);
	cm->original_commit_us = cm->immediate_commit_us;
	if ((v & COMMIT_TS_ORIGINAL_FOLLOWS) != 0) {
		if (cur_le(&c, 7, &v, "original_commit_timestamp", err) == -1)
			return -1;
		cm->original_commit_us = (int64_t)v;
	}
	if (cur_left(&c) == 0)
		return 0;
	if (cur_packed(&c, &cm->transaction_length, "transaction_length",
	    err) == -1)
		return -1;
	if (cur_left(&c) == 0)
		return 0;
	if (cur_le(&c, 4, &v, "immediate_server_version", err) == -1)
		return -1;
	cm->immediate_server_version = (uint32_t)(v &
	    ~SERVER_VERSION_ORIGINAL_FOLLOWS);
	cm->original_server_version = cm->immediate_server_version;
	if ((v & SERVER_VERSION_ORIGINAL_FOLLOWS) != 0) {
		if (cur_le(&c, 4, &v, "original_server_version", err) == -1)
			return -1;
		cm->original_server_version = (uint32_t)v;
	}
	/* Later fields (8.0.33+ commit_group_ticket) are not needed. */
	return 0;
}

int
tor_gtid_format(const struct tor_gtid *gtid, char *buf, size_t cap)
{
	const uint8_t *s = gtid->sid;

	if (gtid->mariadb)
		return snprintf(buf, cap, "%u-%u-%llu", gtid->domain_id,
		    gtid->server_id, (unsigned long long)gtid->seq_no);
	return snprintf(buf, cap, "%02x%02x%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x-%02x%02x%02x%02x%02x%02x:%s%s%llu", s[0], s[1], s[2],
	    s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10], s[11], s[12],
	    s[13], s[14], s[15], gtid->tag, gtid->tag[0] != '\0' ? ":" : "",
	    (unsigned long long)gtid->gno);
}

int
tor_xid_parse(const struct tor_event *ev, const struct tor_format *fmt,
    uint64_t *xid, tor_err *err)
{
	struct cursor c = { ev->body, ev->body + ev->body_len, "XID" };

	(void)fmt;
	if (ev->type != TOR_EV_XID)
		return tor_err_set(err, "expected an XID event, got type %u",
		    ev->type);
	if (ev->body_len != 8)
		return tor_err_set(err, "XID event at %" PRIu32 ": body of %zu "
		    "bytes, expected 8", ev->next_pos, ev->body_len);
	return cur_le(&c, 8, xid, "xid", err);
}

/* Appends X'<hex>' of n bytes to buf at *at. */
static void
put_hex_literal(char *buf, size_t cap, size_t *at, const uint8_t *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	if (*at + 3 + 2 * n >= cap)
		return;
	buf[(*at)++] = 'X';
	buf[(*at)++] = '\'';
	for (size_t i = 0; i < n; i++) {
		buf[(*at)++] = hex[p[i] >> 4];
		buf[(*at)++] = hex[p[i] & 15];
	}
	buf[(*at)++] = '\'';
	buf[*at] = '\0';
}

int
tor_xa_prepare_parse(const struct tor_event *ev, const struct tor_format *fmt,
    bool *one_phase, char *xid, size_t cap, tor_err *err)
{
	struct cursor c = { ev->body, ev->body + ev->body_len, "XA_PREPARE" };
	const uint8_t *p, *data;
	uint64_t format_id, gtrid_len, bqual_len;
	size_t at = 0;

	(void)fmt;
	if (ev->type != TOR_EV_XA_PREPARE)
		return tor_err_set(err, "expected an XA_PREPARE event, got "
		    "type %u", ev->type);
	if (cur_take(&c, 1, &p, "one phase flag", err) == -1 ||
	    cur_le(&c, 4, &format_id, "format id", err) == -1 ||
	    cur_le(&c, 4, &gtrid_len, "gtrid length", err) == -1 ||
	    cur_le(&c, 4, &bqual_len, "bqual length", err) == -1)
		return -1;
	/* An XID is at most 64 bytes of gtrid and 64 of bqual. */
	if (gtrid_len > 64 || bqual_len > 64)
		return tor_err_set(err, "XA_PREPARE event at %" PRIu32 ": XID "
		    "lengths %" PRIu64 " and %" PRIu64 " (at most 64 each)",
		    ev->next_pos, gtrid_len, bqual_len);
	if (cur_take(&c, (size_t)(gtrid_len + bqual_len), &data, "XID data",
	    err) == -1)
		return -1;
	if (c.p != c.end)
		return tor_err_set(err, "XA_PREPARE event at %" PRIu32 ": %zu "
		    "bytes after the XID", ev->next_pos, (size_t)(c.end - c.p));
	*one_phase = *p != 0;
	xid[0] = '\0';
	put_hex_literal(xid, cap, &at, data, (size_t)gtrid_len);
	if (at + 1 < cap)
		xid[at++] = ',';
	xid[at] = '\0';
	put_hex_literal(xid, cap, &at, data + gtrid_len, (size_t)bqual_len);
	snprintf(xid + at, at < cap ? cap - at : 0, ",%" PRIu64, format_id);
	return 0;
}

int
tor_incident_parse(const struct tor_event *ev, const struct tor_format *fmt,
    unsigned *number, const char **msg, size_t *len, tor_err *err)
{
	struct cursor c = { ev->body, ev->body + ev->body_len, "INCIDENT" };
	const uint8_t *p;
	uint64_t n, mlen;

	(void)fmt;
	if (ev->type != TOR_EV_INCIDENT)
		return tor_err_set(err, "expected an INCIDENT event, got type "
		    "%u", ev->type);
	if (cur_le(&c, 2, &n, "incident number", err) == -1 ||
	    cur_le(&c, 1, &mlen, "message length", err) == -1 ||
	    cur_take(&c, (size_t)mlen, &p, "message", err) == -1)
		return -1;
	*number = (unsigned)n;
	*msg = (const char *)p;
	*len = (size_t)mlen;
	return 0;
}

/*
 * The payload's header is a list of fields, each a packed type, a packed
 * length and (for the fields known here) a packed value, ended by type 0;
 * the events follow.  Fields of other types are skipped by their length: a
 * newer server may append some.
 */
int
tor_payload_parse(const struct tor_event *ev, struct tor_payload_info *out,
    tor_err *err)
{
	struct cursor c = { ev->body, ev->body + ev->body_len,
	    "TRANSACTION_PAYLOAD" };
	uint64_t type, len, v, size = 0, compression = 0, usize = 0;
	bool has_size = false, has_compression = false, has_usize = false;

	if (ev->type != TOR_EV_MYSQL_TRANSACTION_PAYLOAD)
		return tor_err_set(err, "expected a TRANSACTION_PAYLOAD event, "
		    "got type %u", ev->type);
	for (;;) {
		struct cursor f;
		const uint8_t *p;

		if (cur_packed(&c, &type, "field type", err) == -1)
			return -1;
		if (type == 0)
			break;
		if (cur_packed(&c, &len, "field length", err) == -1 ||
		    cur_take(&c, len, &p, "field", err) == -1)
			return -1;
		if (type > 3)
			continue;
		f = (struct cursor){ p, p + len, "TRANSACTION_PAYLOAD" };
		if (cur_packed(&f, &v, "field value", err) == -1)
			return -1;
		if (type == 1) {
			size = v;
			has_size = true;
		} else if (type == 2) {
			compression = v;
			has_compression = true;
		} else {
			usize = v;
			has_usize = true;
		}
	}
	if (!has_size || !has_compression)
		return tor_err_set(err, "TRANSACTION_PAYLOAD: no %s field",
		    has_size ? "compression type" : "payload size");
	if (size != cur_left(&c))
		return tor_err_set(err, "TRANSACTION_PAYLOAD: payload size field "
		    "says %llu bytes, the event holds %zu",
		    (unsigned long long)size, cur_left(&c));
	if (compression != TOR_PAYLOAD_ZSTD && compression != TOR_PAYLOAD_NONE)
		return tor_err_set(err, "TRANSACTION_PAYLOAD: compression type "
		    "%llu is not supported (tor reads zstd, 0, and none, 255)",
		    (unsigned long long)compression);
	if (compression == TOR_PAYLOAD_ZSTD && !has_usize)
		return tor_err_set(err, "TRANSACTION_PAYLOAD: zstd payload "
		    "without an uncompressed size field");
	out->compression = (unsigned)compression;
	out->data = c.p;
	out->data_len = cur_left(&c);
	out->uncompressed_size = compression == TOR_PAYLOAD_NONE ?
	    out->data_len : usize;
	return 0;
}

/*
 * MariaDB's compressed block (log_bin_compress): one header byte 0b1000_0LLL
 * (top bit set, algorithm 0 = zlib in bits 4-6, LLL = 1..4 bytes of length),
 * the uncompressed length big-endian in LLL bytes, then a zlib stream.
 */
static int
inflate_block(const struct tor_event *ev, const uint8_t *p, size_t n,
    uint8_t **out, size_t *out_len, tor_err *err)
{
	const char *what = event_name(ev->type);
	size_t lenlen, ulen, avail, cap;
	z_stream zs;
	uint8_t *buf, *grown;
	int rc;

	if (n < 2)
		return tor_err_set(err, "%s: compressed block of %zu bytes is "
		    "too short", what, n);
	if ((p[0] & 0xe0) != 0x80)
		return tor_err_set(err, "%s: bad compressed block header 0x%02x "
		    "(want zlib, 0x81-0x84)", what, p[0]);
	lenlen = p[0] & 0x07;
	if (lenlen < 1 || lenlen > 4 || n < 1 + lenlen)
		return tor_err_set(err, "%s: bad compressed block header 0x%02x "
		    "for %zu bytes", what, p[0], n);
	ulen = (size_t)get_be(p + 1, lenlen);
	avail = n - 1 - lenlen;
	if (ulen == 0)
		return tor_err_set(err, "%s: compressed block claims 0 bytes",
		    what);
	if (ulen > TOR_EVENT_MAX)
		return tor_err_set(err, "%s event at %u: compressed block claims "
		    "%zu bytes inflated, more than the %u of the largest event "
		    "a server writes", what, ev->next_pos, ulen, TOR_EVENT_MAX);
	if (ulen / ZLIB_MAX_RATIO > avail)
		return tor_err_set(err, "%s: compressed block of %zu bytes "
		    "claims an impossible %zu bytes inflated", what, avail, ulen);
	cap = ulen < INFLATE_FIRST ? ulen : INFLATE_FIRST;
	memset(&zs, 0, sizeof(zs));
	if ((buf = malloc(cap)) == NULL || inflateInit(&zs) != Z_OK) {
		free(buf);
		return tor_err_set(err, "%s: out of memory inflating %zu bytes",
		    what, cap);
	}
	zs.next_in = (Bytef *)(uintptr_t)(p + 1 + lenlen);
	zs.avail_in = (uInt)avail;
	for (;;) {
		zs.next_out = buf + zs.total_out;
		zs.avail_out = (uInt)(cap - zs.total_out);
		rc = inflate(&zs, Z_FINISH);
		if ((rc != Z_OK && rc != Z_BUF_ERROR) || zs.avail_out != 0 ||
		    cap == ulen)
			break;
		/* Full, and the stream has more: it has earned more room. */
		cap = cap > ulen / 2 ? ulen : cap * 2;
		if ((grown = realloc(buf, cap)) == NULL) {
			inflateEnd(&zs);
			free(buf);
			return tor_err_set(err, "%s: out of memory inflating %zu "
			    "bytes", what, cap);
		}
		buf = grown;
	}
	inflateEnd(&zs);
	if (rc != Z_STREAM_END || zs.total_out != ulen) {
		free(buf);
		return tor_err_set(err, "%s: zlib could not inflate the "
		    "compressed block (%s, %lu of %zu bytes)", what,
		    rc == Z_STREAM_END ? "short" : zs.avail_out == 0 ? "longer" :
		    rc == Z_BUF_ERROR ? "truncated" : zError(rc), zs.total_out,
		    ulen);
	}
	*out = buf;
	*out_len = ulen;
	return 0;
}

int
tor_query_parse(const struct tor_event *ev, const struct tor_format *fmt,
    struct tor_query *q, tor_err *err)
{
	struct cursor c = { ev->body, ev->body + ev->body_len,
	    event_name(ev->type) };
	size_t phl = fmt->post_header_len[ev->type];
	const uint8_t *dblen, *db, *nul;
	uint64_t svlen = 0;

	memset(q, 0, sizeof(*q));
	if (ev->type != TOR_EV_QUERY &&
	    ev->type != TOR_EV_MARIADB_QUERY_COMPRESSED)
		return tor_err_set(err, "expected a QUERY event, got type %u",
		    ev->type);
	if (phl == 0)
		phl = 13;
	if (phl < 11)
		return tor_err_set(err, "%s: post-header length %zu is shorter "
		    "than 11", c.what, phl);
	/* thread id (4), exec time (4), schema length (1), error code (2),
	 * status variables length (2, since binlog v4). */
	if (cur_take(&c, 8, NULL, "thread id and exec time", err) == -1 ||
	    cur_take(&c, 1, &dblen, "schema length", err) == -1 ||
	    cur_take(&c, 2, NULL, "error code", err) == -1)
		return -1;
	if (phl >= 13 && cur_le(&c, 2, &svlen, "status variables length",
	    err) == -1)
		return -1;
	if (cur_take(&c, phl - (phl >= 13 ? 13 : 11), NULL, "post-header",
	    err) == -1 ||
	    cur_take(&c, svlen, NULL, "status variables", err) == -1 ||
	    cur_take(&c, *dblen, &db, "schema", err) == -1 ||
	    cur_take(&c, 1, &nul, "schema terminator", err) == -1)
		return -1;
	if (*nul != '\0')
		return tor_err_set(err, "%s: schema name is not NUL-terminated",
		    c.what);
	q->schema = (const char *)db;
	q->schema_len = *dblen;
	if (ev->type == TOR_EV_MARIADB_QUERY_COMPRESSED) {
		if (inflate_block(ev, c.p, cur_left(&c), &q->owned,
		    &q->sql_len, err) == -1)
			return -1;
		q->sql = (const char *)q->owned;
	} else {
		q->sql = (const char *)c.p;
		q->sql_len = cur_left(&c);
	}
	return 0;
}

void
tor_query_free(struct tor_query *q)
{
	free(q->owned);
	q->owned = NULL;
}

/*
 * TABLE_MAP
 */

/* Reads the table id and flags at the start of a TABLE_MAP or ROWS body:
 * 6 bytes of id, or 4 when the post-header is 6 bytes long (MySQL 5.1.x). */
static int
read_table_id(struct cursor *c, size_t phl, uint64_t *id, uint64_t *flags,
    tor_err *err)
{
	if (cur_le(c, phl == 6 ? 4 : 6, id, "table id", err) == -1 ||
	    cur_le(c, 2, flags, "flags", err) == -1)
		return -1;
	return 0;
}

/* The schema and table names: a length byte, the name, a NUL. */
static int
read_name(struct cursor *c, const char **name, size_t *len, const char *field,
    tor_err *err)
{
	const uint8_t *n, *p, *nul;

	if (cur_take(c, 1, &n, field, err) == -1 ||
	    cur_take(c, *n, &p, field, err) == -1 ||
	    cur_take(c, 1, &nul, field, err) == -1)
		return -1;
	if (*nul != '\0')
		return tor_err_set(err, "%s: %s is not NUL-terminated", c->what,
		    field);
	*name = (const char *)p;
	*len = *n;
	return 0;
}

static int
table_map_head(const struct tor_event *ev, const struct tor_format *fmt,
    struct cursor *c, uint64_t *table_id, const char **schema,
    size_t *schema_len, const char **table, size_t *table_len, tor_err *err)
{
	size_t phl = fmt->post_header_len[TOR_EV_TABLE_MAP];
	uint64_t flags;

	if (ev->type != TOR_EV_TABLE_MAP)
		return tor_err_set(err, "expected a TABLE_MAP event, got type "
		    "%u", ev->type);
	c->p = ev->body;
	c->end = ev->body + ev->body_len;
	c->what = "TABLE_MAP";
	if (phl == 0)
		phl = 8;
	if (read_table_id(c, phl, table_id, &flags, err) == -1 ||
	    (phl > 8 && cur_take(c, phl - 8, NULL, "post-header", err) == -1))
		return -1;
	if (read_name(c, schema, schema_len, "schema name", err) == -1 ||
	    read_name(c, table, table_len, "table name", err) == -1)
		return -1;
	return 0;
}

int
tor_table_map_peek(const struct tor_event *ev, const struct tor_format *fmt,
    uint64_t *table_id, const char **schema, size_t *schema_len,
    const char **table, size_t *table_len, tor_err *err)
{
	struct cursor c;

	return table_map_head(ev, fmt, &c, table_id, schema, schema_len, table,
	    table_len, err);
}

/* The per-type metadata of one column, turned into tor_column's meta.  1
 * for a type tor does not know: how many metadata bytes it has is unknown
 * too, so the columns after it cannot be read. */
static int
read_column_meta(struct cursor *c, struct tor_column *col, uint32_t i,
    tor_err *err)
{
	const uint8_t *m;

	switch (col->type) {
	case TOR_TYPE_FLOAT:
	case TOR_TYPE_DOUBLE:
	case TOR_TYPE_TINY_BLOB:
	case TOR_TYPE_MEDIUM_BLOB:
	case TOR_TYPE_LONG_BLOB:
	case TOR_TYPE_BLOB:
	case TOR_TYPE_GEOMETRY:
	case TOR_TYPE_JSON:
	case TOR_TYPE_VECTOR:
	case TOR_TYPE_TIME2:
	case TOR_TYPE_DATETIME2:
	case TOR_TYPE_TIMESTAMP2:
		if (cur_take(c, 1, &m, "column metadata", err) == -1)
			return -1;
		col->meta = m[0];
		break;
	case TOR_TYPE_VARCHAR:
	case TOR_TYPE_VAR_STRING:
		if (cur_take(c, 2, &m, "column metadata", err) == -1)
			return -1;
		col->meta = (uint16_t)tor_le_read(m, 2);
		break;
	case TOR_TYPE_NEWDECIMAL:
		if (cur_take(c, 2, &m, "column metadata", err) == -1)
			return -1;
		col->meta = (uint16_t)(m[0] << 8 | m[1]);
		break;
	case TOR_TYPE_BIT:
		if (cur_take(c, 2, &m, "column metadata", err) == -1)
			return -1;
		col->meta = (uint16_t)(m[1] * 8 + m[0]);
		break;
	case TOR_TYPE_STRING:
	case TOR_TYPE_ENUM:
	case TOR_TYPE_SET:
		/* The real type, then the length.  A CHAR longer than 255
		 * bytes keeps bits 8-9 of its length in bits 4-5 of the type
		 * byte, inverted: real types all have both bits set. */
		if (cur_take(c, 2, &m, "column metadata", err) == -1)
			return -1;
		if ((m[0] & 0x30) != 0x30) {
			col->type = m[0] | 0x30;
			col->meta = (uint16_t)(m[1] | ((m[0] & 0x30) ^ 0x30) << 4);
		} else {
			col->type = m[0];
			col->meta = m[1];
		}
		if (col->type != TOR_TYPE_STRING &&
		    col->type != TOR_TYPE_ENUM && col->type != TOR_TYPE_SET)
			return tor_err_set(err, "TABLE_MAP: column %u has "
			    "string metadata with real type %u", i, col->type);
		break;
	case TOR_TYPE_DECIMAL:
	case TOR_TYPE_TINY:
	case TOR_TYPE_SHORT:
	case TOR_TYPE_LONG:
	case TOR_TYPE_NULL:
	case TOR_TYPE_TIMESTAMP:
	case TOR_TYPE_LONGLONG:
	case TOR_TYPE_INT24:
	case TOR_TYPE_DATE:
	case TOR_TYPE_TIME:
	case TOR_TYPE_DATETIME:
	case TOR_TYPE_YEAR:
	case TOR_TYPE_NEWDATE:
		col->meta = 0;
		break;
	default:
		return 1;
	}
	return 0;
}

/* The columns the SIGNEDNESS bitmap counts.  MariaDB counts every numeric
 * field class, YEAR included (its fixtures show it); MySQL does not count
 * YEAR. */
static bool
is_numeric(uint8_t type, bool mariadb)
{
	switch (type) {
	case TOR_TYPE_TINY:
	case TOR_TYPE_SHORT:
	case TOR_TYPE_INT24:
	case TOR_TYPE_LONG:
	case TOR_TYPE_LONGLONG:
	case TOR_TYPE_NEWDECIMAL:
	case TOR_TYPE_FLOAT:
	case TOR_TYPE_DOUBLE:
		return true;
	case TOR_TYPE_YEAR:
		return mariadb;
	default:
		return false;
	}
}

/* The columns the charset fields of the optional metadata count: GEOMETRY
 * too (a BLOB underneath), ENUM and SET not (they have fields of their
 * own). */
static bool
is_character(uint8_t type)
{
	switch (type) {
	case TOR_TYPE_GEOMETRY:
	case TOR_TYPE_STRING:
	case TOR_TYPE_VARCHAR:
	case TOR_TYPE_VAR_STRING:
	case TOR_TYPE_TINY_BLOB:
	case TOR_TYPE_MEDIUM_BLOB:
	case TOR_TYPE_LONG_BLOB:
	case TOR_TYPE_BLOB:
		return true;
	default:
		return false;
	}
}

/* DEFAULT_CHARSET: the most common collation, then (index among character
 * columns, collation) pairs for the exceptions.  COLUMN_CHARSET: one
 * collation per character column.  The character columns are listed once,
 * so that a pair costs one step however many columns there are. */
static int
read_charsets(struct cursor *c, struct tor_table_map *tm, bool per_column,
    tor_err *err)
{
	uint16_t chars[TABLE_COLUMNS_MAX];
	uint32_t nchars = 0;
	uint64_t cs, idx;

	if (!per_column && cur_packed(c, &cs, "default charset", err) == -1)
		return -1;
	for (uint32_t i = 0; i < tm->ncols; i++) {
		if (!is_character(tm->cols[i].type))
			continue;
		if (per_column && cur_packed(c, &cs, "column charset", err) ==
		    -1)
			return -1;
		tm->cols[i].charset = (uint16_t)cs;
		chars[nchars++] = (uint16_t)i;
	}
	while (!per_column && cur_left(c) > 0) {
		if (cur_packed(c, &idx, "charset column index", err) == -1 ||
		    cur_packed(c, &cs, "column charset", err) == -1)
			return -1;
		if (idx < nchars)
			tm->cols[chars[idx]].charset = (uint16_t)cs;
	}
	return 0;
}

static int
read_string(struct cursor *c, char **out, const char *field, tor_err *err)
{
	const uint8_t *p;
	uint64_t n;

	if (cur_packed(c, &n, field, err) == -1 ||
	    cur_take(c, n, &p, field, err) == -1)
		return -1;
	if ((*out = malloc((size_t)n + 1)) == NULL)
		return tor_err_set(err, "%s: out of memory", c->what);
	memcpy(*out, p, (size_t)n);
	(*out)[n] = '\0';
	return 0;
}

/* n member names (each a packed length and the bytes) as one allocation:
 * the n pointers, then the names, each NUL-terminated. */
static int
read_names(struct cursor *c, uint64_t n, char ***out, tor_err *err)
{
	struct cursor scan = *c;
	const uint8_t *p;
	uint64_t len;
	size_t bytes = 0;
	char *at;

	for (uint64_t k = 0; k < n; k++) {
		if (cur_packed(&scan, &len, "member name", err) == -1 ||
		    cur_take(&scan, len, NULL, "member name", err) == -1)
			return -1;
		bytes += (size_t)len + 1;
	}
	/* An empty list is a list too: names known, none of them. */
	if ((*out = malloc((size_t)n * sizeof(char *) + bytes + 1)) == NULL)
		return tor_err_set(err, "TABLE_MAP: out of memory");
	at = (char *)(*out + n);
	for (uint64_t k = 0; k < n; k++) {
		/* As the scan read them: these reads cannot fail. */
		if (cur_packed(c, &len, "member name", err) == -1 ||
		    cur_take(c, len, &p, "member name", err) == -1) {
			free(*out);
			*out = NULL;
			return -1;
		}
		memcpy(at, p, (size_t)len);
		at[len] = '\0';
		(*out)[k] = at;
		at += len + 1;
	}
	return 0;
}

/* SET_STR_VALUE or ENUM_STR_VALUE: for each column of that type in order,
 * a count and that many strings. */
static int
read_member_lists(struct cursor *c, struct tor_table_map *tm, uint8_t type,
    tor_err *err)
{
	bool is_enum = type == TOR_TYPE_ENUM;
	uint64_t most = is_enum ? ENUM_MEMBERS_MAX : SET_MEMBERS_MAX;

	for (uint32_t i = 0; i < tm->ncols && cur_left(c) > 0; i++) {
		struct tor_column *col = &tm->cols[i];
		uint64_t n;

		if (col->type != type)
			continue;
		if (cur_packed(c, &n, "member count", err) == -1)
			return -1;
		if (n > most)
			return tor_err_set(err, "TABLE_MAP: %s column %u lists "
			    "%llu members, more than the %llu %s can have",
			    is_enum ? "ENUM" : "SET", i, (unsigned long long)n,
			    (unsigned long long)most, is_enum ? "an ENUM" :
			    "a SET");
		if (read_names(c, n, is_enum ? &col->enum_values :
		    &col->set_values, err) == -1)
			return -1;
		*(is_enum ? &col->n_enum_values : &col->n_set_values) =
		    (size_t)n;
	}
	if (cur_left(c) > 0)
		return tor_err_set(err, "TABLE_MAP: member names for more "
		    "%s columns than the table has",
		    is_enum ? "ENUM" : "SET");
	return 0;
}

static int
read_optional_field(struct cursor *c, struct tor_table_map *tm, uint8_t kind,
    bool mariadb, tor_err *err)
{
	uint32_t k = 0;

	switch (kind) {
	case OPT_SIGNEDNESS:
		/* One bit per numeric column, most significant bit first. */
		for (uint32_t i = 0; i < tm->ncols; i++) {
			if (!is_numeric(tm->cols[i].type, mariadb))
				continue;
			if (k / 8 >= cur_left(c))
				return tor_err_set(err, "TABLE_MAP: signedness "
				    "bitmap too short for column %u", i);
			tm->cols[i].is_unsigned =
			    (c->p[k / 8] & (0x80 >> (k % 8))) != 0;
			k++;
		}
		return 0;
	case OPT_COLUMN_NAME:
		for (uint32_t i = 0; i < tm->ncols; i++)
			if (read_string(c, &tm->cols[i].name, "column name",
			    err) == -1)
				return -1;
		tm->has_names = true;
		if (cur_left(c) > 0)
			return tor_err_set(err, "TABLE_MAP: %zu bytes after "
			    "the last column name", cur_left(c));
		return 0;
	case OPT_DEFAULT_CHARSET:
		return read_charsets(c, tm, false, err);
	case OPT_COLUMN_CHARSET:
		return read_charsets(c, tm, true, err);
	case OPT_SET_STR_VALUE:
		return read_member_lists(c, tm, TOR_TYPE_SET, err);
	case OPT_ENUM_STR_VALUE:
		return read_member_lists(c, tm, TOR_TYPE_ENUM, err);
	default:
		/* Charsets, geometry types, keys, visibility: not needed to
		 * decode values, and newer servers add more. */
		return 0;
	}
}

/* Named when the optional metadata has the names: they are read despite
 * the unknown column, as they do not depend on it. */
static void
unknown_type_error(const struct tor_table_map *tm, uint32_t i, tor_err *err)
{
	const struct tor_column *col = &tm->cols[i];

	tor_err_set(err, "column %u (%s%s%s) has type code %u, which tor "
	    "cannot decode (a server newer than tor?): its rows cannot be "
	    "read", i, col->name != NULL ? "`" : "", col->name != NULL ?
	    col->name : "no name: binlog_row_metadata is not FULL",
	    col->name != NULL ? "`" : "", col->type);
}

int
tor_table_map_parse(const struct tor_event *ev, const struct tor_format *fmt,
    struct tor_table_map *tm, tor_err *err)
{
	struct cursor c, m;
	const char *schema, *table;
	size_t schema_len, table_len;
	const uint8_t *types, *meta, *nullmap;
	uint64_t ncols, metalen;
	int64_t unknown = -1;           /* a column of a type tor does not know */
	uint32_t seen = 0;              /* optional metadata read, by type */
	int rc;

	memset(tm, 0, sizeof(*tm));
	if (table_map_head(ev, fmt, &c, &tm->table_id, &schema, &schema_len,
	    &table, &table_len, err) == -1)
		return -1;
	if (schema_len >= sizeof(tm->schema) || table_len >= sizeof(tm->table))
		return tor_err_set(err, "TABLE_MAP: name longer than 64 bytes");
	memcpy(tm->schema, schema, schema_len);
	memcpy(tm->table, table, table_len);
	if (cur_packed(&c, &ncols, "column count", err) == -1)
		return -1;
	if (ncols > TABLE_COLUMNS_MAX)
		return tor_err_set(err, "TABLE_MAP event at %u for %s.%s: %llu "
		    "columns, more than the %d a table can have", ev->next_pos,
		    tm->schema, tm->table, (unsigned long long)ncols,
		    TABLE_COLUMNS_MAX);
	if (ncols == 0 || ncols > cur_left(&c))
		return tor_err_set(err, "TABLE_MAP for %s.%s: %llu columns "
		    "cannot fit in %zu bytes", tm->schema, tm->table,
		    (unsigned long long)ncols, cur_left(&c));
	if (cur_take(&c, (size_t)ncols, &types, "column types", err) == -1 ||
	    cur_packed(&c, &metalen, "metadata length", err) == -1 ||
	    cur_take(&c, metalen, &meta, "column metadata", err) == -1 ||
	    cur_take(&c, ((size_t)ncols + 7) / 8, &nullmap, "null bitmap",
	    err) == -1)
		return -1;
	if ((tm->cols = calloc((size_t)ncols, sizeof(*tm->cols))) == NULL)
		return tor_err_set(err, "TABLE_MAP: out of memory");
	tm->ncols = (uint32_t)ncols;
	m.p = meta;
	m.end = meta + metalen;
	m.what = "TABLE_MAP";
	for (uint32_t i = 0; i < tm->ncols; i++) {
		tm->cols[i].type = types[i];
		tm->cols[i].nullable = bit_lsb(nullmap, i);
	}
	for (uint32_t i = 0; i < tm->ncols; i++) {
		if ((rc = read_column_meta(&m, &tm->cols[i], i, err)) == -1)
			goto fail;
		if (rc == 1) {
			unknown = (int64_t)i;
			break;
		}
	}
	if (unknown < 0 && cur_left(&m) != 0) {
		tor_err_set(err, "TABLE_MAP for %s.%s: %zu metadata bytes left "
		    "over after the last column", tm->schema, tm->table,
		    cur_left(&m));
		goto fail;
	}
	/* Optional metadata: type, packed length, value; until the end.  A
	 * field read twice would be walked over the columns twice. */
	while (cur_left(&c) > 0) {
		const uint8_t *kind, *val;
		uint64_t len;
		struct cursor f;

		if (cur_take(&c, 1, &kind, "optional metadata type", err) ==
		    -1 ||
		    cur_packed(&c, &len, "optional metadata length", err) ==
		    -1 ||
		    cur_take(&c, len, &val, "optional metadata", err) == -1)
			goto fail;
		if (*kind <= OPT_ENUM_STR_VALUE && *kind >= OPT_SIGNEDNESS) {
			if (seen & 1u << *kind) {
				tor_err_set(err, "TABLE_MAP: optional metadata "
				    "%s given twice", opt_names[*kind]);
				goto fail;
			}
			seen |= 1u << *kind;
		}
		f.p = val;
		f.end = val + len;
		f.what = "TABLE_MAP";
		if (read_optional_field(&f, tm, *kind, fmt->mariadb, err) == -1)
			goto fail;
	}
	if (unknown < 0)
		return 0;
fail:
	/* The unknown type is the cause of whatever went wrong after it. */
	if (unknown >= 0)
		unknown_type_error(tm, (uint32_t)unknown, err);
	tor_err_prefix(err, "table %s.%s: ", tm->schema, tm->table);
	tor_table_map_free(tm);
	return -1;
}

void
tor_table_map_free(struct tor_table_map *tm)
{
	for (uint32_t i = 0; tm->cols != NULL && i < tm->ncols; i++) {
		free(tm->cols[i].name);
		free(tm->cols[i].enum_values);
		free(tm->cols[i].set_values);
	}
	free(tm->cols);
	tm->cols = NULL;
	tm->ncols = 0;
}

/*
 * ROWS
 */

int
tor_rows_parse(const struct tor_event *ev, const struct tor_format *fmt,
    struct tor_rows *rows, tor_err *err)
{
	struct cursor c = { ev->body, ev->body + ev->body_len,
	    event_name(ev->type) };
	size_t phl = fmt->post_header_len[ev->type];
	bool v2 = false, compressed = false;
	uint64_t flags, width;

	memset(rows, 0, sizeof(*rows));
	switch (ev->type) {
	case TOR_EV_MARIADB_WRITE_ROWS_COMPRESSED:
	case TOR_EV_MARIADB_UPDATE_ROWS_COMPRESSED:
	case TOR_EV_MARIADB_DELETE_ROWS_COMPRESSED:
		compressed = true;
		/* FALLTHROUGH */
	case TOR_EV_WRITE_ROWS_V2:
	case TOR_EV_UPDATE_ROWS_V2:
	case TOR_EV_DELETE_ROWS_V2:
		v2 = true;
		break;
	case TOR_EV_MARIADB_WRITE_ROWS_COMPRESSED_V1:
	case TOR_EV_MARIADB_UPDATE_ROWS_COMPRESSED_V1:
	case TOR_EV_MARIADB_DELETE_ROWS_COMPRESSED_V1:
		compressed = true;
		break;
	case TOR_EV_WRITE_ROWS_V1:
	case TOR_EV_UPDATE_ROWS_V1:
	case TOR_EV_DELETE_ROWS_V1:
		break;
	case TOR_EV_MYSQL_PARTIAL_UPDATE_ROWS:
		return tor_err_set(err, "PARTIAL_UPDATE_ROWS events "
		    "(binlog_row_value_options=PARTIAL_JSON) are not decoded");
	case TOR_EV_WRITE_ROWS_V0:
	case TOR_EV_UPDATE_ROWS_V0:
	case TOR_EV_DELETE_ROWS_V0:
		return tor_err_set(err, "ROWS v0 events (MySQL 5.1.0-5.1.15) "
		    "are not supported");
	default:
		return tor_err_set(err, "expected a ROWS event, got type %u",
		    ev->type);
	}
	switch (ev->type) {
	case TOR_EV_WRITE_ROWS_V1:
	case TOR_EV_WRITE_ROWS_V2:
	case TOR_EV_MARIADB_WRITE_ROWS_COMPRESSED_V1:
	case TOR_EV_MARIADB_WRITE_ROWS_COMPRESSED:
		rows->kind = TOR_ROWS_WRITE;
		break;
	case TOR_EV_UPDATE_ROWS_V1:
	case TOR_EV_UPDATE_ROWS_V2:
	case TOR_EV_MARIADB_UPDATE_ROWS_COMPRESSED_V1:
	case TOR_EV_MARIADB_UPDATE_ROWS_COMPRESSED:
		rows->kind = TOR_ROWS_UPDATE;
		break;
	default:
		rows->kind = TOR_ROWS_DELETE;
		break;
	}
	if (phl == 0)
		phl = v2 ? 10 : 8;
	if (read_table_id(&c, phl, &rows->table_id, &flags, err) == -1)
		return -1;
	rows->flags = (uint16_t)flags;
	if (v2) {
		/* Extra data (MySQL: partition info, NDB data): its length
		 * counts its own two bytes. */
		uint64_t extra;

		if (cur_le(&c, 2, &extra, "extra data length", err) == -1)
			return -1;
		if (extra < 2)
			return tor_err_set(err, "%s: extra data length %u is "
			    "below 2", c.what, (unsigned int)extra);
		if (cur_take(&c, extra - 2, NULL, "extra data", err) == -1)
			return -1;
	} else if (phl > 8 && cur_take(&c, phl - 8, NULL, "post-header",
	    err) == -1) {
		return -1;
	}
	if (cur_packed(&c, &width, "column count", err) == -1)
		return -1;
	if (width > TABLE_COLUMNS_MAX)
		return tor_err_set(err, "%s event at %u: %llu columns, more than "
		    "the %d a table can have", c.what, ev->next_pos,
		    (unsigned long long)width, TABLE_COLUMNS_MAX);
	/* Compared as bits: (width + 7) / 8 wraps for a count near 2^64. */
	if (width == 0 || width > (uint64_t)cur_left(&c) * 8)
		return tor_err_set(err, "%s: %llu columns do not fit in %zu "
		    "bytes", c.what, (unsigned long long)width, cur_left(&c));
	rows->ncols = (uint32_t)width;
	if (cur_take(&c, ((size_t)width + 7) / 8, &rows->present,
	    "column bitmap", err) == -1)
		return -1;
	rows->present_after = rows->present;
	if (rows->kind == TOR_ROWS_UPDATE && cur_take(&c, ((size_t)width + 7) /
	    8, &rows->present_after, "after-image column bitmap", err) == -1)
		return -1;
	/* Counted once: every row's null bitmap is this many bits. */
	for (uint32_t i = 0; i < rows->ncols; i++) {
		rows->npresent += bit_lsb(rows->present, i);
		rows->npresent_after += bit_lsb(rows->present_after, i);
	}
	if (compressed) {
		size_t n;

		if (inflate_block(ev, c.p, cur_left(&c), &rows->inflated, &n,
		    err) == -1)
			return -1;
		rows->cur = rows->inflated;
		rows->end = rows->inflated + n;
	} else {
		rows->cur = c.p;
		rows->end = c.end;
	}
	return 0;
}

void
tor_rows_free(struct tor_rows *rows)
{
	free(rows->inflated);
	rows->inflated = NULL;
	if (rows->cols_after != rows->cols)
		free(rows->cols_after);
	free(rows->cols);
	rows->cols = rows->cols_after = NULL;
	tor_buf_free(&rows->scratch);
	rows->cur = rows->end = NULL;
}

/* Bytes of the binary DECIMAL: 9 digits per 4 bytes, leftover digits in
 * the fewest bytes that hold them. */
static const uint8_t dig2bytes[10] = { 0, 1, 1, 2, 2, 3, 3, 4, 4, 4 };

static int
decimal_size(uint16_t meta, size_t *size)
{
	unsigned int prec = meta >> 8, scale = meta & 0xff;
	unsigned int intg = prec - scale;

	if (prec == 0 || prec > 65 || scale > 38 || scale > prec)
		return -1;
	*size = intg / 9 * 4 + dig2bytes[intg % 9] + scale / 9 * 4 +
	    dig2bytes[scale % 9];
	return 0;
}

/*
 * The pre-MySQL-5.6 temporal types.  Without fractional digits they are
 * the old formats: TIME as the decimal number HHMMSS in 3 bytes, DATETIME
 * as YYYYMMDDhhmmss in 8, TIMESTAMP as 4 bytes of seconds.  MariaDB writes
 * the same type codes for TIME(n), DATETIME(n) and TIMESTAMP(n) in its own
 * formats (tables from before 10.1.2, or mysql56_temporal_format=OFF), and
 * the table map carries no n: the caller fills meta from
 * information_schema.  In those formats TIME and DATETIME are one
 * big-endian number of microseconds divided by 10^(6-n) (TIME offset by
 * its zero point, DATETIME packed as
 * ((((year*13+month)*32+day)*24+hour)*60+minute)*60+second), and
 * TIMESTAMP is 4 bytes of seconds then the fraction big-endian.
 */
static const uint8_t time_hires_bytes[7] = { 3, 4, 4, 5, 5, 5, 6 };
static const uint8_t datetime_hires_bytes[7] = { 5, 6, 6, 7, 7, 7, 8 };
static const uint8_t fraction_bytes[7] = { 0, 1, 1, 2, 2, 3, 3 };
/* (838:59:59 + 1 s) in microseconds: TIME(n)'s zero point, before the
 * division by 10^(6-n). */
#define TIME_HIRES_ZERO INT64_C(3020400000000)

static size_t
old_temporal_size(uint8_t type, uint16_t fsp)
{
	switch (type) {
	case TOR_TYPE_TIME:
		return fsp == 0 ? 3 : time_hires_bytes[fsp];
	case TOR_TYPE_TIMESTAMP:
		return 4 + fraction_bytes[fsp];
	default:
		return fsp == 0 ? 8 : datetime_hires_bytes[fsp];
	}
}

bool
tor_table_map_has_old_temporal(const struct tor_table_map *tm)
{
	for (uint32_t i = 0; i < tm->ncols; i++)
		if (tm->cols[i].type == TOR_TYPE_TIME ||
		    tm->cols[i].type == TOR_TYPE_TIMESTAMP ||
		    tm->cols[i].type == TOR_TYPE_DATETIME)
			return true;
	return false;
}

/* The length prefix of a string column: 1 byte up to 255, else 2. */
static size_t
string_prefix(uint16_t maxlen)
{
	return maxlen > 255 ? 2 : 1;
}

/* How many bytes the value of col takes at p (avail bytes left); -1 with
 * *why set when the metadata is impossible or the value overruns. */
static int
column_size(const struct tor_column *col, const uint8_t *p, size_t avail,
    size_t *size, const char **why)
{
	size_t n, lb = 0;

	*why = "truncated value";
	switch (col->type) {
	case TOR_TYPE_TINY:
	case TOR_TYPE_YEAR:
		n = 1;
		break;
	case TOR_TYPE_SHORT:
		n = 2;
		break;
	case TOR_TYPE_INT24:
	case TOR_TYPE_DATE:
	case TOR_TYPE_NEWDATE:
		n = 3;
		break;
	case TOR_TYPE_LONG:
	case TOR_TYPE_FLOAT:
		n = 4;
		break;
	case TOR_TYPE_LONGLONG:
	case TOR_TYPE_DOUBLE:
		n = 8;
		break;
	case TOR_TYPE_TIME:
	case TOR_TYPE_TIMESTAMP:
	case TOR_TYPE_DATETIME:
		if (col->meta > 6) {
			*why = "fractional digits above 6";
			return -1;
		}
		n = old_temporal_size(col->type, col->meta);
		break;
	case TOR_TYPE_NULL:
		n = 0;
		break;
	case TOR_TYPE_TIMESTAMP2:
	case TOR_TYPE_DATETIME2:
	case TOR_TYPE_TIME2:
		if (col->meta > 6) {
			*why = "fractional digits above 6";
			return -1;
		}
		n = (col->type == TOR_TYPE_TIMESTAMP2 ? 4 :
		    col->type == TOR_TYPE_DATETIME2 ? 5 : 3) +
		    (col->meta + 1u) / 2;
		break;
	case TOR_TYPE_NEWDECIMAL:
		if (decimal_size(col->meta, &n) == -1) {
			*why = "impossible precision or scale";
			return -1;
		}
		break;
	case TOR_TYPE_BIT:
		if (col->meta < 1 || col->meta > 64) {
			*why = "BIT width outside 1-64";
			return -1;
		}
		n = (col->meta + 7u) / 8;
		break;
	case TOR_TYPE_ENUM:
	case TOR_TYPE_SET:
		if (col->meta < 1 || col->meta > (col->type == TOR_TYPE_ENUM ?
		    2 : 8)) {
			*why = "impossible stored size";
			return -1;
		}
		n = col->meta;
		break;
	case TOR_TYPE_VARCHAR:
	case TOR_TYPE_VAR_STRING:
	case TOR_TYPE_STRING:
		lb = string_prefix(col->meta);
		break;
	case TOR_TYPE_TINY_BLOB:
	case TOR_TYPE_MEDIUM_BLOB:
	case TOR_TYPE_LONG_BLOB:
	case TOR_TYPE_BLOB:
	case TOR_TYPE_GEOMETRY:
	case TOR_TYPE_JSON:
	case TOR_TYPE_VECTOR:
		if (col->meta < 1 || col->meta > 4) {
			*why = "length prefix outside 1-4 bytes";
			return -1;
		}
		lb = col->meta;
		break;
	default:
		*why = "unsupported column type";
		return -1;
	}
	if (lb > 0) {
		if (lb > avail)
			return -1;
		n = (size_t)tor_le_read(p, lb);
		if (n > avail - lb)
			return -1;
		*size = lb + n;
		return 0;
	}
	if (n > avail)
		return -1;
	*size = n;
	return 0;
}

/* Shortest %g text that reads back as the same float or double. */
static int
render_float(struct tor_buf *out, double v, bool is_float)
{
	char s[40];

	for (int prec = 1; prec <= 17; prec++) {
		snprintf(s, sizeof(s), "%.*g", prec, v);
		if (is_float ? strtof(s, NULL) == (float)v :
		    strtod(s, NULL) == v)
			break;
	}
	return tor_buf_append(out, s, strlen(s));
}

static int
render_decimal(struct tor_buf *out, const uint8_t *p, size_t size,
    uint16_t meta)
{
	unsigned int prec = meta >> 8, scale = meta & 0xff;
	unsigned int intg = prec - scale;
	uint8_t b[40];
	char digits[80], *d = digits;
	size_t at = 0, first;
	bool neg;
	static const uint32_t pow10[10] = { 1, 10, 100, 1000, 10000, 100000,
	    1000000, 10000000, 100000000, 1000000000 };

	if (size > sizeof(b))
		return -1;
	memcpy(b, p, size);
	/* The sign is the inverted top bit; negative numbers have every
	 * byte inverted too, so that the bytes sort like the numbers. */
	neg = (b[0] & 0x80) == 0;
	b[0] ^= 0x80;
	if (neg)
		for (size_t i = 0; i < size; i++)
			b[i] ^= 0xff;
	/* Integer digits: the leftover group first, then groups of 9. */
	for (unsigned int left = intg; left > 0;) {
		unsigned int nd = left % 9 != 0 ? left % 9 : 9;
		size_t nb = dig2bytes[nd];
		uint32_t v = (uint32_t)get_be(b + at, nb);

		if (v >= pow10[nd])
			return -1;
		d += sprintf(d, "%0*u", (int)nd, v);
		at += nb;
		left -= nd;
	}
	first = 0;
	while (first + 1 < (size_t)(d - digits) && digits[first] == '0')
		first++;
	if (d == digits)
		*d++ = '0';
	if (scale > 0) {
		*d++ = '.';
		for (unsigned int left = scale; left > 0;) {
			unsigned int nd = left >= 9 ? 9 : left;
			size_t nb = dig2bytes[nd];
			uint32_t v = (uint32_t)get_be(b + at, nb);

			if (v >= pow10[nd])
				return -1;
			d += sprintf(d, "%0*u", (int)nd, v);
			at += nb;
			left -= nd;
		}
	}
	*d = '\0';
	if (neg && strspn(digits, "0.") != strlen(digits) &&
	    tor_buf_append(out, "-", 1) == -1)
		return -1;
	return tor_buf_append(out, digits + first, strlen(digits + first));
}

/* a<sep>bb<sep>cc, each field zero-padded (a to a_digits) and never cut,
 * as printf's "%0*u-%02u-%02u": dates and times of day. */
static int
append_fields(struct tor_buf *out, uint64_t a, unsigned int a_digits,
    char sep, uint64_t b, uint64_t c)
{
	if (tor_buf_append_uint(out, a, a_digits) == -1 ||
	    tor_buf_append(out, &sep, 1) == -1 ||
	    tor_buf_append_uint(out, b, 2) == -1 ||
	    tor_buf_append(out, &sep, 1) == -1)
		return -1;
	return tor_buf_append_uint(out, c, 2);
}

static int
append_date(struct tor_buf *out, uint64_t y, uint64_t mo, uint64_t d)
{
	return append_fields(out, y, 4, '-', mo, d);
}

/* [-]hh:mm:ss, hours as many digits as they take. */
static int
append_time(struct tor_buf *out, bool neg, uint64_t h, uint64_t mi,
    uint64_t s)
{
	if (neg && tor_buf_append(out, "-", 1) == -1)
		return -1;
	return append_fields(out, h, 2, ':', mi, s);
}

static int
append_datetime(struct tor_buf *out, uint64_t y, uint64_t mo, uint64_t d,
    uint64_t h, uint64_t mi, uint64_t s)
{
	if (append_date(out, y, mo, d) == -1 ||
	    tor_buf_append(out, " ", 1) == -1)
		return -1;
	return append_time(out, false, h, mi, s);
}

/* Appends ".ffffff" cut to fsp digits (nothing for fsp 0). */
static int
append_fraction(struct tor_buf *out, uint32_t usec, unsigned int fsp)
{
	static const uint32_t div[7] = { 1000000, 100000, 10000, 1000, 100,
	    10, 1 };

	if (fsp == 0)
		return 0;
	if (tor_buf_append(out, ".", 1) == -1)
		return -1;
	return tor_buf_append_uint(out, usec / div[fsp], fsp);
}

/* The fraction of TIMESTAMP2/DATETIME2, big-endian in (fsp+1)/2 bytes, as
 * microseconds. */
static uint32_t
read_fraction(const uint8_t *p, unsigned int fsp)
{
	switch ((fsp + 1) / 2) {
	case 1:
		return (uint32_t)p[0] * 10000;
	case 2:
		return (uint32_t)get_be(p, 2) * 100;
	case 3:
		return (uint32_t)get_be(p, 3);
	default:
		return 0;
	}
}

/* Days since 1970-01-01 to a civil date (proleptic Gregorian). */
static void
civil_from_days(int64_t z, int64_t *y, unsigned int *m, unsigned int *d)
{
	int64_t era, yoe, doy, mp;
	int64_t doe;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (unsigned int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (unsigned int)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

static int
render_epoch(struct tor_buf *out, uint64_t secs, uint32_t usec,
    unsigned int fsp)
{
	int64_t y;
	unsigned int mo, d;
	uint64_t t = secs % 86400;

	if (secs == 0 && usec == 0) {
		if (tor_buf_append(out, "0000-00-00 00:00:00", 19) == -1)
			return -1;
		return append_fraction(out, 0, fsp);
	}
	civil_from_days((int64_t)(secs / 86400), &y, &mo, &d);
	if (append_datetime(out, (uint64_t)y, mo, d, t / 3600, t / 60 % 60,
	    t % 60) == -1)
		return -1;
	return append_fraction(out, usec, fsp);
}

static uint32_t
pow10_u32(unsigned int n)
{
	uint32_t v = 1;

	while (n-- > 0)
		v *= 10;
	return v;
}

/* hh:mm:ss with hours up to 838, minutes and seconds below 60. */
static bool
time_fields_ok(uint64_t h, uint64_t m, uint64_t s)
{
	return h <= 838 && m < 60 && s < 60;
}

/* A date and time as SELECT would print it: a zero date, or fields in
 * range (months 1-12, days 1-31; MySQL's zero-in-date values 0 too). */
static bool
datetime_fields_ok(uint64_t y, uint64_t mo, uint64_t d, uint64_t h,
    uint64_t mi, uint64_t s)
{
	return y <= 9999 && mo <= 12 && d <= 31 && h < 24 && mi < 60 && s < 60;
}

static int
render_old_time(struct tor_buf *out, const uint8_t *p, unsigned int fsp)
{
	uint64_t mag, secs;
	uint32_t usec = 0;
	bool neg;

	if (fsp == 0) {
		/* HHMMSS as a signed decimal number in 3 bytes. */
		uint64_t v = tor_le_read(p, 3);
		int64_t t = (v & 0x800000) ? (int64_t)v - 0x1000000 :
		    (int64_t)v;

		neg = t < 0;
		mag = neg ? (uint64_t)-t : (uint64_t)t;
		secs = mag / 10000 * 3600 + mag / 100 % 100 * 60 + mag % 100;
		if (!time_fields_ok(mag / 10000, mag / 100 % 100, mag % 100))
			return -1;
	} else {
		int64_t v = (int64_t)get_be(p, time_hires_bytes[fsp]) -
		    TIME_HIRES_ZERO / pow10_u32(6 - fsp);

		neg = v < 0;
		mag = (neg ? (uint64_t)-v : (uint64_t)v) * pow10_u32(6 - fsp);
		usec = (uint32_t)(mag % 1000000);
		secs = mag / 1000000;
		if (!time_fields_ok(secs / 3600, secs / 60 % 60, secs % 60))
			return -1;
	}
	if (append_time(out, neg, secs / 3600, secs / 60 % 60, secs % 60) == -1)
		return -1;
	return append_fraction(out, usec, fsp);
}

static int
render_old_datetime(struct tor_buf *out, const uint8_t *p, unsigned int fsp)
{
	uint64_t y, mo, d, h, mi, s, v;
	uint32_t usec = 0;

	if (fsp == 0) {
		/* YYYYMMDDhhmmss as a decimal number in 8 bytes. */
		uint64_t date, t;

		v = tor_le_read(p, 8);
		date = v / 1000000;
		t = v % 1000000;
		y = date / 10000;
		mo = date / 100 % 100;
		d = date % 100;
		h = t / 10000;
		mi = t / 100 % 100;
		s = t % 100;
	} else {
		v = get_be(p, datetime_hires_bytes[fsp]) * pow10_u32(6 - fsp);
		usec = (uint32_t)(v % 1000000);
		v /= 1000000;
		s = v % 60;
		v /= 60;
		mi = v % 60;
		v /= 60;
		h = v % 24;
		v /= 24;
		d = v % 32;
		v /= 32;
		mo = v % 13;
		y = v / 13;
	}
	if (!datetime_fields_ok(y, mo, d, h, mi, s))
		return -1;
	if (append_datetime(out, y, mo, d, h, mi, s) == -1)
		return -1;
	return append_fraction(out, usec, fsp);
}

static int
render_datetime2(struct tor_buf *out, const uint8_t *p, unsigned int fsp)
{
	int64_t v = (int64_t)get_be(p, 5) - INT64_C(0x8000000000);
	uint32_t usec = read_fraction(p + 5, fsp);
	uint64_t ymd, ym, hms;

	if (v < 0 || usec > 999999)
		return -1;
	ymd = (uint64_t)v >> 17;
	ym = ymd >> 5;
	hms = (uint64_t)v & 0x1ffff;
	if (append_datetime(out, ym / 13, ym % 13, ymd & 31, hms >> 12,
	    hms >> 6 & 63, hms & 63) == -1)
		return -1;
	return append_fraction(out, usec, fsp);
}

/*
 * TIME2: a packed signed value, intpart << 24 | microseconds, stored with
 * an offset so that it sorts as unsigned bytes.  For fsp 1-4 the integer
 * and fractional parts are stored apart, and a negative value with a
 * fraction keeps the fraction as its complement: undo that first.
 */
static int
render_time2(struct tor_buf *out, const uint8_t *p, unsigned int fsp)
{
	int64_t ip = (int64_t)get_be(p, 3) - 0x800000, packed, frac = 0;
	uint64_t mag, hms;
	uint32_t usec;

	switch ((fsp + 1) / 2) {
	case 0:
		packed = ip * 16777216;
		break;
	case 1:
		frac = p[3];
		if (ip < 0 && frac != 0) {
			ip++;
			frac -= 0x100;
		}
		packed = ip * 16777216 + frac * 10000;
		break;
	case 2:
		frac = (int64_t)get_be(p + 3, 2);
		if (ip < 0 && frac != 0) {
			ip++;
			frac -= 0x10000;
		}
		packed = ip * 16777216 + frac * 100;
		break;
	default:
		packed = (int64_t)get_be(p, 6) - INT64_C(0x800000000000);
		break;
	}
	mag = packed < 0 ? (uint64_t)-packed : (uint64_t)packed;
	hms = mag >> 24;
	usec = (uint32_t)(mag & 0xffffff);
	if (usec > 999999)
		return -1;
	if (append_time(out, packed < 0, hms >> 12 & 0x3ff, hms >> 6 & 63,
	    hms & 63) == -1)
		return -1;
	return append_fraction(out, usec, fsp);
}

static int
render_enum(struct tor_buf *out, const struct tor_column *col, uint64_t idx)
{
	const char *name;

	if (idx == 0)
		return 0;
	if (col->enum_values == NULL || idx > col->n_enum_values)
		return tor_buf_append_uint(out, idx, 1);
	name = col->enum_values[idx - 1];
	return tor_buf_append(out, name, strlen(name));
}

static int
render_set(struct tor_buf *out, const struct tor_column *col, uint64_t mask)
{
	bool first = true;

	/* A bit beyond the known members (at most 64: the map's parse
	 * refuses more) means the names do not belong to this value: show
	 * the number rather than a partial list. */
	if (col->set_values == NULL || (col->n_set_values < 64 &&
	    mask >> col->n_set_values != 0))
		return tor_buf_append_uint(out, mask, 1);
	for (size_t i = 0; i < col->n_set_values; i++) {
		if ((mask >> i & 1) == 0)
			continue;
		if ((!first && tor_buf_append(out, ",", 1) == -1) ||
		    tor_buf_append(out, col->set_values[i],
		    strlen(col->set_values[i])) == -1)
			return -1;
		first = false;
	}
	return 0;
}

static int
render_int(struct tor_buf *out, const uint8_t *p, size_t n, bool is_unsigned)
{
	uint64_t u = tor_le_read(p, n);

	if (is_unsigned)
		return tor_buf_append_uint(out, u, 1);
	if (n < 8 && (u >> (n * 8 - 1) & 1))
		u |= ~UINT64_C(0) << (n * 8);
	return tor_buf_append_int(out, (int64_t)u);
}

/* Renders the non-string value at p (size bytes) into out.  -1 with *why
 * on a value that cannot be (bad digits, fields out of range). */
static int
render_scalar(struct tor_buf *out, const struct tor_column *col,
    const uint8_t *p, size_t size, const char **why, tor_err *err)
{
	uint64_t v;
	int rc;

	*why = "out of memory";
	switch (col->type) {
	case TOR_TYPE_TINY:
	case TOR_TYPE_SHORT:
	case TOR_TYPE_INT24:
	case TOR_TYPE_LONG:
	case TOR_TYPE_LONGLONG:
		return render_int(out, p, size, col->is_unsigned);
	case TOR_TYPE_FLOAT: {
		uint32_t bits = (uint32_t)tor_le_read(p, 4);
		float f;

		memcpy(&f, &bits, sizeof(f));
		return render_float(out, f, true);
	}
	case TOR_TYPE_DOUBLE: {
		uint64_t bits = tor_le_read(p, 8);
		double d;

		memcpy(&d, &bits, sizeof(d));
		return render_float(out, d, false);
	}
	case TOR_TYPE_NEWDECIMAL:
		*why = "bad DECIMAL digits";
		return render_decimal(out, p, size, col->meta);
	case TOR_TYPE_YEAR:
		return p[0] == 0 ? tor_buf_append(out, "0000", 4) :
		    tor_buf_append_uint(out, 1900u + p[0], 1);
	case TOR_TYPE_DATE:
	case TOR_TYPE_NEWDATE:
		v = tor_le_read(p, 3);
		return append_date(out, v >> 9, v >> 5 & 15, v & 31);
	case TOR_TYPE_TIME:
		*why = "bad TIME value";
		return render_old_time(out, p, col->meta);
	case TOR_TYPE_DATETIME:
		*why = "bad DATETIME value";
		return render_old_datetime(out, p, col->meta);
	case TOR_TYPE_TIMESTAMP: {
		uint32_t usec = col->meta == 0 ? 0 :
		    (uint32_t)get_be(p + 4, fraction_bytes[col->meta]) *
		    pow10_u32(6 - col->meta);

		if (usec > 999999)
			break;
		return render_epoch(out, col->meta == 0 ? tor_le_read(p, 4) :
		    get_be(p, 4), usec, col->meta);
	}
	case TOR_TYPE_TIMESTAMP2: {
		uint32_t usec = read_fraction(p + 4, col->meta);

		if (usec > 999999)
			break;
		return render_epoch(out, get_be(p, 4), usec, col->meta);
	}
	case TOR_TYPE_DATETIME2:
		*why = "bad DATETIME value";
		return render_datetime2(out, p, col->meta);
	case TOR_TYPE_TIME2:
		*why = "bad TIME value";
		return render_time2(out, p, col->meta);
	case TOR_TYPE_BIT:
		return tor_buf_append_uint(out, get_be(p, size), 1);
	case TOR_TYPE_ENUM:
		return render_enum(out, col, tor_le_read(p, size));
	case TOR_TYPE_SET:
		return render_set(out, col, tor_le_read(p, size));
	case TOR_TYPE_JSON: {
		size_t lb = col->meta;

		rc = tor_json_render(p + lb, size - lb, TOR_JSON_TEXT_MAX, out,
		    err);
		*why = err != NULL ? err->msg : "bad JSON";
		return rc;
	}
	case TOR_TYPE_NULL:
		return 0;
	default:
		break;
	}
	*why = "value out of range";
	return -1;
}

static bool
is_string_type(uint8_t type)
{
	switch (type) {
	case TOR_TYPE_VARCHAR:
	case TOR_TYPE_VAR_STRING:
	case TOR_TYPE_STRING:
	case TOR_TYPE_TINY_BLOB:
	case TOR_TYPE_MEDIUM_BLOB:
	case TOR_TYPE_LONG_BLOB:
	case TOR_TYPE_BLOB:
	case TOR_TYPE_GEOMETRY:
	case TOR_TYPE_VECTOR:
		return true;
	default:
		return false;
	}
}

/* BINARY(n): the stored bytes, then the 0x00 bytes the binlog trimmed. */
static int
render_binary(struct tor_buf *out, const struct tor_column *col,
    const uint8_t *p, size_t size)
{
	size_t lb = string_prefix(col->meta), n = size - lb;

	if (n > col->meta)
		n = col->meta;
	if (tor_buf_append(out, p + lb, n) == -1 ||
	    tor_buf_reserve(out, col->meta - n) == -1)
		return -1;
	memset(out->data + out->len, 0, col->meta - n);
	out->len += col->meta - n;
	return 0;
}

static int
column_error(const struct tor_table_map *tm, uint32_t i, const char *why,
    tor_err *err)
{
	const struct tor_column *col = &tm->cols[i];
	char reason[sizeof(err->msg)];

	snprintf(reason, sizeof(reason), "%s", why);
	return tor_err_set(err, "row of %s.%s, column %u (%s%s%s, %s meta %u): "
	    "%s", tm->schema, tm->table, i, col->name != NULL ? "`" : "",
	    col->name != NULL ? col->name : "unnamed",
	    col->name != NULL ? "`" : "", type_name(col->type), col->meta,
	    reason);
}

/*
 * Decodes one row image: the before image, or the after image of an
 * UPDATE.  With values NULL it only steps over the image (an UPDATE's
 * before image, or a row checked before any goes out), and only the
 * image's present columns are visited, so that a row costs what it holds,
 * not what the table has.  values (all cleared by the caller) get the
 * present columns; those rendered into the scratch are left with data
 * NULL and fixed up by the caller once the scratch stops moving.
 */
static int
decode_image(struct tor_rows *rows, const struct tor_table_map *tm,
    bool after, struct tor_value *values, tor_err *err)
{
	const uint16_t *cols = after ? rows->cols_after : rows->cols;
	size_t n = after ? rows->npresent_after : rows->npresent;
	const uint8_t *nulls;

	if ((n + 7) / 8 > (size_t)(rows->end - rows->cur))
		return tor_err_set(err, "row of %s.%s: truncated null bitmap",
		    tm->schema, tm->table);
	nulls = rows->cur;
	rows->cur += (n + 7) / 8;
	for (size_t k = 0; k < n; k++) {
		uint32_t i = cols[k];
		const struct tor_column *col = &tm->cols[i];
		struct tor_value *v = values != NULL ? &values[i] : NULL;
		const char *why;
		size_t size;

		if (v != NULL)
			v->present = true;
		if (bit_lsb(nulls, k)) {
			if (v != NULL)
				v->is_null = true;
			continue;
		}
		if (column_size(col, rows->cur, (size_t)(rows->end - rows->cur),
		    &size, &why) == -1)
			return column_error(tm, i, why, err);
		if (col->skip) {
			rows->cur += size;
			continue;
		}
		if (v != NULL && col->type == TOR_TYPE_STRING &&
		    col->charset == CHARSET_BINARY) {
			if (render_binary(&rows->scratch, col, rows->cur,
			    size) == -1)
				return column_error(tm, i, "out of memory", err);
			v->len = col->meta;
		} else if (v != NULL && is_string_type(col->type)) {
			size_t lb = col->type == TOR_TYPE_VARCHAR ||
			    col->type == TOR_TYPE_VAR_STRING ||
			    col->type == TOR_TYPE_STRING ?
			    string_prefix(col->meta) : col->meta;

			v->data = rows->cur + lb;
			v->len = size - lb;
		} else if (v != NULL) {
			size_t at = rows->scratch.len;

			if (render_scalar(&rows->scratch, col, rows->cur, size,
			    &why, err) == -1)
				return column_error(tm, i, why, err);
			v->len = rows->scratch.len - at;
		}
		rows->cur += size;
	}
	return 0;
}

/*
 * Steps over the rows of the event from the current one on, without
 * rendering: the table map must describe them so that the last row ends
 * exactly where the event does.  Run before the first row is handed out,
 * so that a map that does not fit (a column sized wrong shifts every
 * column after it) never yields a row; first is the current row's number.
 */
static int
rows_fit(struct tor_rows *rows, const struct tor_table_map *tm,
    unsigned int first, tor_err *err)
{
	const uint8_t *from = rows->cur, *row;
	unsigned int n = first;
	int rc = 0;

	while (rc == 0 && rows->cur < rows->end) {
		row = rows->cur;
		if ((rows->kind == TOR_ROWS_UPDATE &&
		    decode_image(rows, tm, false, NULL, err) == -1) ||
		    decode_image(rows, tm, rows->kind == TOR_ROWS_UPDATE, NULL,
		    err) == -1)
			rc = tor_err_prefix(err, "rows event for %s.%s does not "
			    "fit its table map (row %u): ", tm->schema,
			    tm->table, n);
		else if (rows->cur == row)
			rc = tor_err_set(err, "rows event for %s.%s: row image "
			    "without any column", tm->schema, tm->table);
		n++;
	}
	rows->cur = from;
	return rc;
}

/* The present columns of each image, in order, listed once per event. */
static int
list_present(struct tor_rows *rows, tor_err *err)
{
	bool update = rows->kind == TOR_ROWS_UPDATE;
	size_t k = 0, ka = 0;

	rows->cols = malloc((rows->npresent + 1) * sizeof(uint16_t));
	rows->cols_after = update ?
	    malloc((rows->npresent_after + 1) * sizeof(uint16_t)) : rows->cols;
	if (rows->cols == NULL || rows->cols_after == NULL)
		return tor_err_set(err, "rows event: out of memory");
	for (uint32_t i = 0; i < rows->ncols; i++) {
		if (bit_lsb(rows->present, i))
			rows->cols[k++] = (uint16_t)i;
		if (update && bit_lsb(rows->present_after, i))
			rows->cols_after[ka++] = (uint16_t)i;
	}
	return 0;
}

int
tor_rows_next(struct tor_rows *rows, const struct tor_table_map *tm,
    struct tor_value *values, tor_err *err)
{
	bool update = rows->kind == TOR_ROWS_UPDATE;
	const uint16_t *handed;
	const uint8_t *start;
	size_t at = 0, n;

	if (rows->cur == NULL || rows->cur >= rows->end)
		return 0;
	if (rows->table_id != tm->table_id)
		return tor_err_set(err, "rows event for table id %llu, table "
		    "map is for id %llu (%s.%s)",
		    (unsigned long long)rows->table_id,
		    (unsigned long long)tm->table_id, tm->schema, tm->table);
	if (rows->ncols != tm->ncols)
		return tor_err_set(err, "rows event for table id %llu has %u "
		    "columns, table map has %u", (unsigned long long)
		    rows->table_id, rows->ncols, tm->ncols);
	if (rows->cols == NULL && list_present(rows, err) == -1)
		return -1;
	tor_buf_reset(&rows->scratch);
	memset(values, 0, rows->ncols * sizeof(*values));
	start = rows->cur;
	if ((update && decode_image(rows, tm, false, NULL, err) == -1) ||
	    decode_image(rows, tm, update, values, err) == -1) {
		/* A first row that cannot be read: a map that does not fit
		 * the event is the likelier cause, and names it better. */
		rows->cur = start;
		if (!rows->fits)
			(void)rows_fit(rows, tm, 0, err);
		return -1;
	}
	/* An image without columns takes no bytes; a row of them would
	 * repeat forever. */
	if (rows->cur == start)
		return tor_err_set(err, "rows event for %s.%s: row image without "
		    "any column", tm->schema, tm->table);
	/* The first row read is checked whole by its decoding; the rest of
	 * the event (none, for the common one-row event) before it goes out. */
	if (!rows->fits) {
		if (rows->cur < rows->end && rows_fit(rows, tm, 1, err) == -1)
			return -1;
		rows->fits = true;
	}
	handed = update ? rows->cols_after : rows->cols;
	n = update ? rows->npresent_after : rows->npresent;
	for (size_t k = 0; k < n; k++) {
		struct tor_value *v = &values[handed[k]];

		if (v->is_null || v->data != NULL)
			continue;
		v->data = rows->scratch.data != NULL ? rows->scratch.data + at :
		    (const uint8_t *)"";
		at += v->len;
	}
	return 1;
}
