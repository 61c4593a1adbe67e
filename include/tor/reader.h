/*
 * The source-transaction reader: raw binlog events in, source transactions
 * of outbox rows out.
 *
 * It follows the binlog's transactions (a GTID event or BEGIN opens one;
 * XID, COMMIT, ROLLBACK or the end of a standalone statement closes it),
 * keeps the table maps of the outbox tables, decodes their inserted rows and
 * maps them to messages, and knows where a stream must be reopened: the end
 * of the last whole transaction read.  It does no I/O of its own; what it
 * learns goes to its owner through struct tor_reader_ops, and the owner
 * (the relay) publishes, tracks acknowledgements and moves the checkpoint.
 *
 * Callbacks return 0 to go on, -1 with err set on an error, or a positive
 * code of the owner's (a leadership that ends, a restart): tor_reader_feed
 * stops at once and returns that code unchanged, and the owner reopens the
 * stream (tor_reader_reopened) or drops the reader.
 */
#ifndef TOR_READER_H
#define TOR_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tor/binlog_decode.h"
#include "tor/checkpoint.h"
#include "tor/config.h"
#include "tor/err.h"
#include "tor/metrics.h"
#include "tor/outbox.h"

/* The end of a source transaction, as the binlog names it. */
struct tor_reader_end {
	const char *file;
	uint64_t pos;                   /* the position after its last event */
	const struct tor_gtid *gtid;    /* NULL: none */
	int64_t ts_ms;                  /* its commit time; 0 unknown */
};

struct tor_reader_ops {
	/* A source transaction starts; *seq receives the owner's number for
	 * it, which later rows carry. */
	int (*begin)(void *ctx, uint64_t *seq, tor_err *err);
	/* One inserted outbox row of transaction seq, mapped to msg (valid
	 * during the call only). */
	int (*row)(void *ctx, uint64_t seq, struct tor_message *msg,
	    const struct tor_row_origin *origin, tor_err *err);
	/* The open transaction ended. */
	int (*commit)(void *ctx, const struct tor_reader_end *end,
	    tor_err *err);
	/* The stream moved to another binlog file (or names the one it starts
	 * in); pos is where it continues.  positioned is false while the
	 * stream started from a GTID has not reached a real position yet. */
	int (*rotate)(void *ctx, const char *file, uint64_t pos,
	    bool positioned, tor_err *err);
	/* What a table map lacks, from information_schema: column names and
	 * signedness (written without them), the fractional digits of
	 * old-format temporal columns. */
	int (*describe)(void *ctx, struct tor_table_map *tm, tor_err *err);
	/* The open transaction (an XA PREPARE whose outbox rows wait for its
	 * commit) must keep the checkpoint before it until release(seq). */
	int (*hold)(void *ctx, uint64_t seq, tor_err *err);
	void (*release)(void *ctx, uint64_t seq);
	/* Optional: a row (its tor.pos) or a whole rows event (pos NULL) is
	 * not published, and why.  Already counted in the metrics. */
	void (*skipped)(void *ctx, enum tor_skip_reason why, const char *pos);
};

struct tor_reader;

/* A reader for one stream starting at start (a transaction boundary).  cfg,
 * outbox and metrics (events read, rows skipped) must outlive it; ops is
 * copied. */
struct tor_reader *tor_reader_new(const struct tor_config *cfg,
    struct tor_outbox *outbox, struct tor_metrics *metrics,
    const struct tor_reader_ops *ops, void *ctx,
    const struct tor_position *start);
void tor_reader_free(struct tor_reader *rd);

/* The fencing token the rows' messages carry (tor.epoch). */
void tor_reader_set_epoch(struct tor_reader *rd, uint64_t epoch);

/* What is published already: every group that ends at or before done, and
 * the first `rows` outbox rows of the group after it.  Such groups are read
 * (their XA prepares are kept) but hand out nothing.  A done without a file
 * (a GTID) applies `rows` to the first group read. */
void tor_reader_skip_until(struct tor_reader *rd,
    const struct tor_position *done, uint32_t rows);

/* Before the stream is (re)opened: the events that follow are read with
 * checksums or without, until a FORMAT_DESCRIPTION says otherwise. */
void tor_reader_reset_format(struct tor_reader *rd, bool checksum);

/* The stream broke and is reopened at tor_reader_resume(): a transaction
 * that was being read is read again from its start, without handing out
 * the rows it handed out already. */
void tor_reader_reopened(struct tor_reader *rd);

/* Where to (re)open the stream: the end of the last whole transaction. */
const struct tor_position *tor_reader_resume(const struct tor_reader *rd);

/* For a failure of the stream itself (tor_reader_feed names its own
 * events): prefixes err with "binlog event at <file>:<start>: ", or, when
 * start is 0 or before the end of the last event fed, "binlog event in
 * <file> after <end of the last event>: ".  Returns -1. */
int tor_reader_blame(const struct tor_reader *rd, uint64_t start,
    tor_err *err);

/* Whether the reader is inside a source transaction (one being read, or
 * one a reopened stream has to read again): a clean stop waits for it. */
bool tor_reader_in_txn(const struct tor_reader *rd);

/* Rows of the open transaction handed out so far (after skips). */
uint32_t tor_reader_txn_rows(const struct tor_reader *rd);

/* One whole event (header to checksum). */
int tor_reader_feed(struct tor_reader *rd, const uint8_t *raw, size_t len,
    tor_err *err);

/* The prepared XA transactions whose outbox rows wait for their XA COMMIT
 * (each holds the checkpoint before its prepare): how many, and of the
 * oldest its XID, where its prepare group starts and when it was prepared
 * (the binlog's time, ms since the epoch).  count 0: none. */
struct tor_reader_prepared {
	size_t count;
	char xid[TOR_XID_TEXT];
	char at[300];
	int64_t since_ms;
};
void tor_reader_prepared(const struct tor_reader *rd,
    struct tor_reader_prepared *out);

/* Counts for the log line at the end of a session: events read, rows
 * handed out and skipped, and UPDATE and DELETE rows events on outbox
 * tables (events, not rows: their images are not decoded). */
struct tor_reader_counts {
	uint64_t events, rows, skipped, updated, deleted;
};
void tor_reader_counts(const struct tor_reader *rd,
    struct tor_reader_counts *out);

#endif
