/*
 * Binlog event decoding: bytes in, structs out, no I/O.
 *
 * Everything the relay learns from the replication stream passes through
 * here, so it is written to be fed hostile bytes: every length is checked
 * against the buffer before it is read, and malformed input yields -1 with a
 * message, never a crash (tests/fuzz drives it with libFuzzer).  It decodes
 * the events of MySQL 5.7/8.x and MariaDB 10.x/11.x that the relay needs:
 * FORMAT_DESCRIPTION, ROTATE, QUERY, XID, GTID (both flavours), TABLE_MAP
 * (with optional metadata) and ROWS v1/v2 (and MariaDB's compressed forms).
 *
 * Column values come out as bytes: strings and blobs exactly as stored,
 * every other type rendered as text the way MySQL prints it (see
 * struct tor_value).
 */
#ifndef TOR_BINLOG_DECODE_H
#define TOR_BINLOG_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tor/buf.h"
#include "tor/err.h"

/* Event type codes (the byte at offset 4 of the common header). */
enum tor_event_type {
	TOR_EV_QUERY = 2,
	TOR_EV_STOP = 3,
	TOR_EV_ROTATE = 4,
	TOR_EV_INTVAR = 5,
	TOR_EV_APPEND_BLOCK = 9,
	TOR_EV_DELETE_FILE = 11,
	TOR_EV_RAND = 13,
	TOR_EV_USER_VAR = 14,
	TOR_EV_FORMAT_DESCRIPTION = 15,
	TOR_EV_XID = 16,
	TOR_EV_BEGIN_LOAD_QUERY = 17,
	TOR_EV_EXECUTE_LOAD_QUERY = 18,
	TOR_EV_TABLE_MAP = 19,
	TOR_EV_WRITE_ROWS_V0 = 20,      /* MySQL 5.1.0-5.1.15 era; rejected */
	TOR_EV_UPDATE_ROWS_V0 = 21,
	TOR_EV_DELETE_ROWS_V0 = 22,
	TOR_EV_WRITE_ROWS_V1 = 23,
	TOR_EV_UPDATE_ROWS_V1 = 24,
	TOR_EV_DELETE_ROWS_V1 = 25,
	TOR_EV_INCIDENT = 26,
	TOR_EV_HEARTBEAT = 27,
	TOR_EV_IGNORABLE = 28,
	TOR_EV_ROWS_QUERY = 29,
	TOR_EV_WRITE_ROWS_V2 = 30,
	TOR_EV_UPDATE_ROWS_V2 = 31,
	TOR_EV_DELETE_ROWS_V2 = 32,
	TOR_EV_MYSQL_GTID = 33,
	TOR_EV_MYSQL_ANONYMOUS_GTID = 34,
	TOR_EV_MYSQL_PREVIOUS_GTIDS = 35,
	TOR_EV_MYSQL_TRANSACTION_CONTEXT = 36,
	TOR_EV_MYSQL_VIEW_CHANGE = 37,
	TOR_EV_XA_PREPARE = 38,         /* both flavours */
	TOR_EV_MYSQL_PARTIAL_UPDATE_ROWS = 39,
	TOR_EV_MYSQL_TRANSACTION_PAYLOAD = 40,
	TOR_EV_HEARTBEAT_V2 = 41,
	TOR_EV_MYSQL_GTID_TAGGED = 42,
	TOR_EV_MARIADB_ANNOTATE_ROWS = 160,
	TOR_EV_MARIADB_BINLOG_CHECKPOINT = 161,
	TOR_EV_MARIADB_GTID = 162,
	TOR_EV_MARIADB_GTID_LIST = 163,
	TOR_EV_MARIADB_START_ENCRYPTION = 164,
	TOR_EV_MARIADB_QUERY_COMPRESSED = 165,
	TOR_EV_MARIADB_WRITE_ROWS_COMPRESSED_V1 = 166,
	TOR_EV_MARIADB_UPDATE_ROWS_COMPRESSED_V1 = 167,
	TOR_EV_MARIADB_DELETE_ROWS_COMPRESSED_V1 = 168,
	TOR_EV_MARIADB_WRITE_ROWS_COMPRESSED = 169,
	TOR_EV_MARIADB_UPDATE_ROWS_COMPRESSED = 170,
	TOR_EV_MARIADB_DELETE_ROWS_COMPRESSED = 171,
};

/* The largest event tor reads, as it comes or out of a TRANSACTION_PAYLOAD
 * or a compressed event: 1 GiB.  No server writes a larger one (MySQL's
 * max_log_event_size, which its dump thread and its own payload reader
 * hold events to; max_allowed_packet's ceiling on MySQL and MariaDB), and
 * tor's stream takes no larger packet (src/binlog.c).  A smaller limit
 * would refuse real events: binlog_row_event_max_size is a soft limit,
 * and a row larger than it makes an event of its own, up to this size. */
#define TOR_EVENT_MAX (1u << 30)

/* A header flag (the 2 bytes at offset 17): a reader that does not know the
 * event's type may skip it (the server's LOG_EVENT_IGNORABLE_F). */
#define TOR_EV_F_IGNORABLE      0x0080

/* What the last FORMAT_DESCRIPTION event said about the events after it. */
struct tor_format {
	uint16_t binlog_version;
	char server_version[51];
	bool mariadb;                   /* server_version contains "MariaDB" */
	uint8_t header_len;             /* common header length, 19 for v4 */
	uint8_t post_header_len[256];   /* indexed by event type */
	bool checksum;                  /* events end with a 4-byte CRC32 */
};

/* The type's name as the servers' docs spell it ("WRITE_ROWS",
 * "TRANSACTION_PAYLOAD"), or NULL for a type tor does not know. */
const char *tor_event_name(uint8_t type);

/* The state before any FORMAT_DESCRIPTION was seen: v4 header, and checksums
 * as the connection negotiated them (@master_binlog_checksum). */
void tor_format_init(struct tor_format *fmt, bool checksum);

/* One event split into its parts.  body points into the caller's buffer and
 * excludes the common header and the trailing checksum. */
struct tor_event {
	uint32_t timestamp;
	uint8_t type;
	uint32_t server_id;
	uint32_t size;                  /* whole event, as the header says */
	uint32_t next_pos;              /* log_pos: position after this event (0
	                                 * inside transactions on MariaDB 11.4+) */
	uint16_t flags;
	const uint8_t *body;
	size_t body_len;
};

/* The n-byte little-endian unsigned integer at p (n at most 8), as the
 * binlog writes its numbers. */
uint64_t tor_le_read(const uint8_t *p, size_t n);

/* Splits raw (one whole event: header, body and checksum when fmt->checksum,
 * exactly len bytes) and verifies its CRC32.  A FORMAT_DESCRIPTION event
 * carries its own checksum algorithm byte and is split by that instead (its
 * body then ends with that byte; the CRC is cut off and checked with the
 * "binlog in use" header flag cleared, as servers compute it).
 * Fails on short input, a size field that disagrees with len, or a checksum
 * mismatch ("checksum mismatch in <type> event at <next_pos>"). */
int tor_event_parse(const uint8_t *raw, size_t len, const struct tor_format *fmt,
    struct tor_event *ev, tor_err *err);

/* Reads a FORMAT_DESCRIPTION event into fmt. */
int tor_format_parse(const struct tor_event *ev, struct tor_format *fmt,
    tor_err *err);

/* ROTATE: the next file and the position to continue at.  Taken from the raw
 * bytes (the client library's own parse of it is unreliable). */
int tor_rotate_parse(const struct tor_event *ev, const struct tor_format *fmt,
    char *file, size_t file_cap, uint64_t *pos, tor_err *err);

/* A transaction's GTID, from a MariaDB GTID event (162) or a MySQL GTID or
 * ANONYMOUS_GTID event (33/34). */
struct tor_gtid {
	bool mariadb;
	/* MariaDB: domain-server-seq; server_id is the event header's. */
	uint32_t domain_id;
	uint32_t server_id;
	uint64_t seq_no;
	bool standalone;        /* FL_STANDALONE: a single statement (DDL) with
	                         * no XID or COMMIT after it */
	bool xa_prepare;        /* FL_PREPARED_XA: the group ends with an
	                         * XA_PREPARE event, not a commit */
	/* MySQL: sid:gno (anonymous: all zero), or sid:tag:gno (8.3+). */
	uint8_t sid[16];
	uint64_t gno;
	char tag[33];           /* "" untagged */
};

int tor_gtid_parse(const struct tor_event *ev, const struct tor_format *fmt,
    struct tor_gtid *gtid, tor_err *err);

/* What a MySQL GTID or ANONYMOUS_GTID event (33/34) says beyond the GTID:
 * the logical clock of parallel replication (5.7+), and from 8.0 the
 * commit times in microseconds since the epoch (the original one is the
 * first server's, the immediate one this server's), the transaction's
 * length in bytes (this event included) and the two servers' versions
 * (80034 for 8.0.34).  A field the event is too old to carry is 0. */
struct tor_gtid_commit {
	int64_t last_committed;
	int64_t sequence_number;
	int64_t original_commit_us;
	int64_t immediate_commit_us;
	uint64_t transaction_length;
	uint32_t original_server_version;
	uint32_t immediate_server_version;
};

int tor_gtid_commit_parse(const struct tor_event *ev,
    const struct tor_format *fmt, struct tor_gtid_commit *c, tor_err *err);

/* Formats a GTID the way its server spells it: "0-1-42" or
 * "3e11fa47-71ca-11e1-9e33-c80aa9429562:23".  Returns the length written
 * (snprintf semantics). */
int tor_gtid_format(const struct tor_gtid *gtid, char *buf, size_t cap);

/* XID: the commit of a transactional transaction.  Its body is exactly the
 * 8-byte transaction id. */
int tor_xid_parse(const struct tor_event *ev, const struct tor_format *fmt,
    uint64_t *xid, tor_err *err);

/* XA_PREPARE: the end of an XA transaction's prepare group (or, with
 * *one_phase, its commit).  xid receives the XID the way the server spells
 * it in XA COMMIT and XA ROLLBACK statements: X'<gtrid hex>',X'<bqual
 * hex>',<formatID>.  TOR_XID_TEXT always suffices. */
#define TOR_XID_TEXT 300
int tor_xa_prepare_parse(const struct tor_event *ev,
    const struct tor_format *fmt, bool *one_phase, char *xid, size_t cap,
    tor_err *err);

/* INCIDENT: the server says the binlog has a gap here.  *number is the
 * incident (1: LOST_EVENTS); msg/len its text, pointing into ev. */
int tor_incident_parse(const struct tor_event *ev, const struct tor_format *fmt,
    unsigned *number, const char **msg, size_t *len, tor_err *err);

/* TRANSACTION_PAYLOAD (MySQL 8.0.20+, binlog_transaction_compression): a
 * whole transaction's events inside one event, without their checksums,
 * zstd-compressed or stored as they are.  data points into ev. */
#define TOR_PAYLOAD_ZSTD 0
#define TOR_PAYLOAD_NONE 255
struct tor_payload_info {
	unsigned compression;           /* TOR_PAYLOAD_ZSTD or _NONE */
	uint64_t uncompressed_size;     /* the inner events' bytes */
	const uint8_t *data;
	size_t data_len;
};
int tor_payload_parse(const struct tor_event *ev,
    struct tor_payload_info *out, tor_err *err);

/* QUERY (and MariaDB QUERY_COMPRESSED): the default schema and the statement
 * text ("BEGIN", "COMMIT", DDL...).  Both point into ev's buffer, or, for a
 * compressed event, into q->owned (free with tor_query_free). */
struct tor_query {
	const char *schema;
	size_t schema_len;
	const char *sql;
	size_t sql_len;
	uint8_t *owned;
};

int tor_query_parse(const struct tor_event *ev, const struct tor_format *fmt,
    struct tor_query *q, tor_err *err);
void tor_query_free(struct tor_query *q);

/* Field types as the binlog writes them (enum_field_types). */
enum tor_field_type {
	TOR_TYPE_DECIMAL = 0,
	TOR_TYPE_TINY = 1,
	TOR_TYPE_SHORT = 2,
	TOR_TYPE_LONG = 3,
	TOR_TYPE_FLOAT = 4,
	TOR_TYPE_DOUBLE = 5,
	TOR_TYPE_NULL = 6,
	TOR_TYPE_TIMESTAMP = 7,
	TOR_TYPE_LONGLONG = 8,
	TOR_TYPE_INT24 = 9,
	TOR_TYPE_DATE = 10,
	TOR_TYPE_TIME = 11,
	TOR_TYPE_DATETIME = 12,
	TOR_TYPE_YEAR = 13,
	TOR_TYPE_NEWDATE = 14,
	TOR_TYPE_VARCHAR = 15,
	TOR_TYPE_BIT = 16,
	TOR_TYPE_TIMESTAMP2 = 17,
	TOR_TYPE_DATETIME2 = 18,
	TOR_TYPE_TIME2 = 19,
	TOR_TYPE_VECTOR = 242,          /* MySQL 9: float32s, stored like a BLOB */
	TOR_TYPE_JSON = 245,
	TOR_TYPE_NEWDECIMAL = 246,
	TOR_TYPE_ENUM = 247,
	TOR_TYPE_SET = 248,
	TOR_TYPE_TINY_BLOB = 249,
	TOR_TYPE_MEDIUM_BLOB = 250,
	TOR_TYPE_LONG_BLOB = 251,
	TOR_TYPE_BLOB = 252,
	TOR_TYPE_VAR_STRING = 253,
	TOR_TYPE_STRING = 254,
	TOR_TYPE_GEOMETRY = 255,
};

/* One column of a TABLE_MAP.  `type` is the binlog type; for ENUM and SET,
 * written as STRING with the real type in the metadata, `type` holds the real
 * type (TOR_TYPE_ENUM/TOR_TYPE_SET) already.  Names and value lists come from
 * the optional metadata (binlog_row_metadata=FULL) and are NULL without it;
 * the relay may fill `name` and `is_unsigned` from information_schema. */
struct tor_column {
	uint8_t type;
	/* Type-specific, decoded from the TABLE_MAP metadata:
	 *   FLOAT, DOUBLE                  4 or 8 (the stored size)
	 *   VARCHAR, VAR_STRING, STRING    maximum length in bytes (STRING's
	 *                                  >255 encoding already undone)
	 *   ENUM, SET                      stored size in bytes (1-2, 1-8)
	 *   BLOB (all sizes), GEOMETRY,
	 *   JSON                           bytes of the length prefix (1-4)
	 *   NEWDECIMAL                     precision << 8 | scale
	 *   BIT                            number of bits (1-64)
	 *   TIME2, DATETIME2, TIMESTAMP2   fractional digits (0-6)
	 *   others                         0 */
	uint16_t meta;
	bool nullable;
	bool is_unsigned;
	bool skip;              /* set by the caller: step over this column's
	                         * values without rendering them (present,
	                         * not NULL, data NULL) */
	/* Collation id of a character column (CHAR, VARCHAR, TEXT/BLOB) from
	 * the optional metadata, 0 when unknown.  63 (binary) makes a CHAR
	 * column a BINARY(n), whose values the binlog stores without their
	 * trailing 0x00 bytes: they are padded back to n bytes. */
	uint16_t charset;
	char *name;             /* malloc'd, or NULL */
	char **enum_values;     /* n_enum_values names, or NULL: one malloc'd
	                         * block, the names after the pointers */
	size_t n_enum_values;   /* at most 65535 */
	char **set_values;      /* the same, at most 64 */
	size_t n_set_values;
};

struct tor_table_map {
	uint64_t table_id;
	char schema[65];
	char table[65];
	uint32_t ncols;
	struct tor_column *cols;        /* malloc'd, ncols entries */
	bool has_names;                 /* every column has a name */
};

/* Cheap look at a TABLE_MAP: the table id and the names, without decoding
 * the columns, so that maps of tables that are not outbox tables cost little.
 * schema and table point into ev's buffer and are not NUL-terminated. */
int tor_table_map_peek(const struct tor_event *ev, const struct tor_format *fmt,
    uint64_t *table_id, const char **schema, size_t *schema_len,
    const char **table, size_t *table_len, tor_err *err);

/* Whether tm has a TIME, DATETIME or TIMESTAMP column of the old type
 * codes, whose fractional digits the caller must set in meta. */
bool tor_table_map_has_old_temporal(const struct tor_table_map *tm);

/* Decodes a whole TABLE_MAP into tm (allocating; free with
 * tor_table_map_free, which also frees names the caller set with malloc). */
int tor_table_map_parse(const struct tor_event *ev, const struct tor_format *fmt,
    struct tor_table_map *tm, tor_err *err);
void tor_table_map_free(struct tor_table_map *tm);

enum tor_rows_kind {
	TOR_ROWS_WRITE,
	TOR_ROWS_UPDATE,
	TOR_ROWS_DELETE,
};

/* A ROWS event being walked row by row.  Owns the inflated body of a
 * compressed event, the lists of its present columns and the scratch where
 * non-string values are rendered. */
struct tor_rows {
	enum tor_rows_kind kind;
	uint64_t table_id;
	uint16_t flags;                 /* STMT_END_F = 1 ends the statement */
	uint32_t ncols;
	const uint8_t *present;         /* columns present in the (before) image */
	const uint8_t *present_after;   /* UPDATE: columns of the after image */
	uint32_t npresent, npresent_after;      /* bits set in each */
	uint16_t *cols, *cols_after;    /* owned: the columns set in each,
	                                 * listed at the first tor_rows_next */
	const uint8_t *cur;             /* next row image */
	const uint8_t *end;
	uint8_t *inflated;              /* owned */
	struct tor_buf scratch;         /* owned: rendered values */
	bool fits;                      /* every row checked against the map */
};

/* Parses a ROWS event (v1, v2, or MariaDB compressed) up to its first row.
 * Needs only the event, so the relay can read table_id and skip events of
 * tables it does not relay. */
int tor_rows_parse(const struct tor_event *ev, const struct tor_format *fmt,
    struct tor_rows *rows, tor_err *err);

/* One column of a decoded row.
 *
 * data/len, for each type:
 *   integers (all sizes)   decimal text, signed or unsigned as the column is
 *   FLOAT, DOUBLE          shortest text that reads back as the same value
 *   DECIMAL                exact decimal text ("-12.340")
 *   CHAR, VARCHAR, BINARY, VARBINARY, TEXT, BLOB (every size), GEOMETRY:
 *                          the bytes as stored (CHAR without its trailing
 *                          spaces, as SELECT shows it; BINARY(n) padded to
 *                          n bytes with 0x00 when its charset is known)
 *   JSON (MySQL binary)    JSON text; (MariaDB's JSON is LONGTEXT: bytes)
 *   DATE                   "YYYY-MM-DD"
 *   TIME(n)                "[-]HH:MM:SS[.f...]" with n fraction digits
 *   DATETIME(n)            "YYYY-MM-DD HH:MM:SS[.f...]"
 *   TIMESTAMP(n)           "YYYY-MM-DD HH:MM:SS[.f...]" in UTC
 *   YEAR                   "YYYY" ("0000" for 0)
 *   ENUM                   the member's name, or its index when names are
 *                          unknown (and "" for index 0)
 *   SET                    member names joined by ",", or the bitmask as a
 *                          number when names are unknown
 *   BIT(n)                 the value as an unsigned decimal number
 * is_null marks SQL NULL (data NULL, len 0); present is false for a column
 * missing from a partial (MINIMAL/NOBLOB) row image. */
struct tor_value {
	bool present;
	bool is_null;
	const uint8_t *data;
	size_t len;
};

/* Decodes the next row into values[0..tm->ncols-1] (for UPDATE the after
 * image; the before image is stepped over).  Values point into the event or
 * into rows->scratch and stay valid until the next call or tor_rows_free.
 * values must have room for tm->ncols entries.
 * Returns 1 with a row, 0 when the event has no more rows, -1 on malformed
 * data (naming the table, column and type; temporal fields out of range are
 * malformed) or a table map that does not fit the event ("rows event for
 * table id N has X columns, table map has Y"; "... does not fit its table
 * map (row N): ...").  The first call checks every row of the event against
 * the map, so a map that does not fit yields no row at all.
 * MySQL's PARTIAL_UPDATE_ROWS (partial JSON) is refused by tor_rows_parse. */
int tor_rows_next(struct tor_rows *rows, const struct tor_table_map *tm,
    struct tor_value *values, tor_err *err);
void tor_rows_free(struct tor_rows *rows);

#endif
