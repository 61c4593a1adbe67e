/*
 * The binlog source: a replication client that streams raw events from a
 * MySQL/MariaDB server, from a given position, and answers the few queries the
 * relay needs on a second, ordinary connection.
 *
 * It only moves bytes.  Decoding is tor/binlog_decode.h; deciding where to
 * resume after a lost connection is the relay's job (it knows which
 * transactions it has fully handled).
 */
#ifndef TOR_BINLOG_H
#define TOR_BINLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tor/binlog_decode.h"
#include "tor/checkpoint.h"
#include "tor/config.h"
#include "tor/err.h"

struct tor_binlog;

/* Keeps a pointer to cfg, which must outlive the handle.  Connects nothing. */
struct tor_binlog *tor_binlog_new(const struct tor_config *cfg);
void tor_binlog_free(struct tor_binlog *b);

/* Opens the query connection (when not open) and checks the server: log_bin
 * ON, binlog_format ROW, binlog_row_image FULL.  Returns 0, TOR_BINLOG_ERROR
 * when the server cannot be asked, or TOR_BINLOG_FATAL for a wrong setting,
 * with a message naming the variable, its value and what tor needs. */
int tor_binlog_check_server(struct tor_binlog *b, tor_err *err);

/* Looks the configured outbox tables and their columns up in
 * information_schema: 0, TOR_BINLOG_ERROR when the server cannot be asked,
 * TOR_BINLOG_FATAL with "schema.table: no such table" or
 * "schema.table.column: no such column". */
int tor_binlog_check_outbox(struct tor_binlog *b, tor_err *err);

/* Turns mysql.start into a position: "end" is the server's current end of
 * binlog, "beginning" the first binlog file it still has, "<file>:<pos>" and
 * GTID lists as given.  gtid_set (TOR_GTID_SET_TEXT bytes, or NULL) gets
 * MySQL's executed GTID set there, "" where there is none (MariaDB,
 * gtid_mode=OFF, a file:pos given): for "end" the Executed_Gtid_Set of the
 * same SHOW MASTER STATUS as file and position, for "beginning"
 * gtid_purged (what the oldest file's PREVIOUS_GTIDS says), and a MySQL
 * GTID set given goes there alone, as the position. */
int tor_binlog_resolve_start(struct tor_binlog *b, const char *start,
    struct tor_position *pos, char *gtid_set, tor_err *err);

/* A file:pos without a GTID state (mysql.start, an operator's move) gets
 * the server's state there (MariaDB's BINLOG_GTID_POS), so that a later
 * failover can follow it by GTID; nothing on MySQL.  -1 when the server
 * cannot be asked. */
int tor_binlog_gtid_at(struct tor_binlog *b, struct tor_position *pos,
    tor_err *err);

/* Fails unless the server still has the binlog file of pos (a position in a
 * purged file can never be streamed: the relay must halt, not skip).  A
 * server without the file whose gtid_binlog_pos is behind pos's GTID state
 * never wrote it: the message says another server, not a purge. */
int tor_binlog_check_available(struct tor_binlog *b,
    const struct tor_position *pos, tor_err *err);

/* Whether file:pos of pos names, on this server, the point the checkpoint
 * was taken at: where pos has both a file and a MariaDB GTID state, an
 * event must start there and the server's GTID state there
 * (BINLOG_GTID_POS) must reach each domain's GTID of it (the checkpoint's
 * may lag its file:pos, never lead it), and its gtid_binlog_state must
 * hold those GTIDs (the same server_id at or past each).  Another server (a promoted replica) or a reset or restored binlog
 * names other transactions there, and a replay compared with what Kafka
 * holds would skip its new rows.  0, TOR_BINLOG_ERROR when the server
 * cannot be asked, or TOR_BINLOG_FATAL naming the server (server_id,
 * gtid_binlog_state), both GTID states and `tor checkpoint set`. */
int tor_binlog_check_identity(struct tor_binlog *b,
    const struct tor_position *pos, tor_err *err);

/* One binlog file the server holds, as SHOW BINARY LOGS lists it. */
struct tor_binlog_file {
	char name[256];
	uint64_t size;
};

/* The binlog files the server holds, oldest first (SHOW BINARY LOGS), in
 * *files (malloc'ed, the caller frees it; NULL when there are none).
 * 0, or -1 with err set when the server cannot be asked. */
int tor_binlog_files(struct tor_binlog *b, struct tor_binlog_file **files,
    size_t *n, tor_err *err);

/* The server's global variable name as text in buf ("" when the server has
 * no such variable).  0, or -1 with err set. */
int tor_binlog_global(struct tor_binlog *b, const char *name, char *buf,
    size_t cap, tor_err *err);

/* When the server began file: the timestamp (seconds since the epoch) of
 * its format description event, read over a dump connection of its own
 * (server_id 0, so the server ends no other replica's dump, and
 * non-blocking) that is closed after that event.  0, or -1 with err set. */
int tor_binlog_file_started(struct tor_binlog *b, const char *file,
    int64_t *started_s, tor_err *err);

/* The start of the binlog group (transaction) that holds at, a file
 * position where an event starts or the file's end: at itself when it is
 * between transactions, else where its transaction began (SHOW BINLOG
 * EVENTS, read up to at).  Returns 0, 1 when the server refuses at (no
 * event starts there, past the file's end; err says so), -1 when the
 * server could not be asked. */
int tor_binlog_group_start(struct tor_binlog *b, const struct tor_position *at,
    struct tor_position *start, tor_err *err);

/* Fills what tm lacks from information_schema: the names and signedness of
 * its columns (table maps written without binlog_row_metadata=FULL), and
 * the fractional digits of old-format TIME, DATETIME and TIMESTAMP columns
 * (in meta).  Fails when the table's current column count differs from the
 * map's. */
int tor_binlog_describe_table(struct tor_binlog *b, struct tor_table_map *tm,
    tor_err *err);

/* Starts streaming at pos (file:pos when pos->file is set, else the GTID
 * list; with neither, MySQL's GTID set gtid_set by auto-positioning,
 * tor_binlog_open_gtid), with checksums and heartbeats negotiated, from the session's
 * source only (tor_binlog_identify, else the first stream's server): on
 * another server_id it is TOR_BINLOG_MOVED naming both, and the session
 * must end (its positions are the old server's); -1 when the server
 * cannot be reached. */
int tor_binlog_stream(struct tor_binlog *b, const struct tor_position *pos,
    const char *gtid_set, tor_err *err);

/* Opens rpl (mariadb_rpl_init'ed, its options set) as a MySQL replica
 * with auto-positioning does: COM_BINLOG_DUMP_GTID, the server streaming
 * every transaction not in gtid_set (text form), starting with a ROTATE
 * naming the file it reads.  0, or -1 with err ("bad GTID set ...", or
 * the server's or the connection's error). */
struct st_mariadb_rpl;
int tor_binlog_open_gtid(struct st_mariadb_rpl *rpl, const char *gtid_set,
    uint32_t server_id, tor_err *err);

/* Whether the server sends event checksums on the stream. */
bool tor_binlog_checksum(const struct tor_binlog *b);

/* A new session's source: asks the server its server_id (into
 * *server_id), which every stream of the session must then reach, and its
 * gtid_binlog_state (into state, cap bytes; "" without GTIDs).  0, or -1
 * when the server cannot be asked. */
int tor_binlog_identify(struct tor_binlog *b, uint32_t *server_id,
    char *state, size_t cap, tor_err *err);

/* Whether this server (server_id, another than cp's) may resume cp: by
 * GTID only, so cp must have one, and the server's gtid_binlog_state must
 * hold each of its GTIDs (the same domain and server_id at or past it).
 * A MySQL checkpoint's executed GTID set (cp->gtid_set, where cp has no
 * MariaDB GTID) must be in the server's gtid_executed, and its
 * gtid_purged in the set (tor_gtid_set_resume_check).
 * 0; TOR_BINLOG_ERROR when the server cannot be asked; TOR_BINLOG_FATAL
 * naming both servers and positions, what the lost transactions mean for
 * the database and Kafka, and `tor checkpoint set`. */
int tor_binlog_check_held(struct tor_binlog *b, const struct tor_checkpoint *cp,
    uint32_t server_id, tor_err *err);

enum {
	TOR_BINLOG_NONE = 0,            /* nothing yet: wait on tor_binlog_fd */
	TOR_BINLOG_EVENT = 1,
	TOR_BINLOG_ERROR = -1,          /* the connection is gone: reconnect */
	TOR_BINLOG_FATAL = -2,          /* reconnecting cannot help (purged
	                                 * position, server misconfigured) */
	TOR_BINLOG_MOVED = -3,          /* another server answers: the
	                                 * session ends (tor_binlog_stream) */
};

/* Takes the next event without waiting: TOR_BINLOG_EVENT with its raw bytes
 * (header to checksum; valid until the next call), TOR_BINLOG_NONE when the
 * reader has none yet, or why the stream ended.  A thread reads the stream
 * ahead into a bounded buffer; heartbeats are events too, so one arrives at
 * least every mysql.heartbeat_ms on an idle server. */
int tor_binlog_next(struct tor_binlog *b, const uint8_t **raw, size_t *len,
    tor_err *err);

/* After tor_binlog_next said TOR_BINLOG_FATAL because the client library
 * refused an event (it parses each one itself): where that event starts,
 * from its header; else 0. */
uint64_t tor_binlog_refused_at(const struct tor_binlog *b);

/* Readable (poll) when tor_binlog_next may have something to say. */
int tor_binlog_fd(const struct tor_binlog *b);

/* Closes the stream and the query connection. */
void tor_binlog_close(struct tor_binlog *b);

#endif
