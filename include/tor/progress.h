/*
 * Which source transactions are done, and so how far the checkpoint may go.
 *
 * The relay opens a transaction when the binlog starts one, adds one pending
 * message per produced row, and commits it at its end position.  Kafka's
 * acknowledgements retire the messages.  The safe position is the end of the
 * newest committed transaction whose messages, and every message before them,
 * are acknowledged (DESIGN.md §2).  Transactions without messages are done at
 * once, so the position keeps moving while the outbox is idle.
 *
 * Memory stays proportional to the transactions in flight: runs of finished
 * transactions collapse into one entry.
 */
#ifndef TOR_PROGRESS_H
#define TOR_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tor/binlog_decode.h"
#include "tor/checkpoint.h"
#include "tor/err.h"

struct tor_progress;

/* Starts at pos (the checkpoint the stream resumes from). */
struct tor_progress *tor_progress_new(const struct tor_position *start);
void tor_progress_free(struct tor_progress *p);

/* The binlog moved to another file (ROTATE).  Later commits are positions in
 * it.  With nothing in flight and positioned (pos is a real position, not
 * the top of the file a dump from a GTID starts at), the safe position
 * moves to (file, pos). */
int tor_progress_rotate(struct tor_progress *p, const char *file,
    uint64_t pos, bool positioned, tor_err *err);

/* Opens a transaction and returns its sequence number, or 0 when memory
 * runs out.  When the previous transaction was left open (the stream broke
 * inside it), it is reopened instead and its number returned again. */
uint64_t tor_progress_begin(struct tor_progress *p);

/* One more message pending in the open transaction. */
void tor_progress_add(struct tor_progress *p);

/* Whether a transaction is open. */
bool tor_progress_in_txn(const struct tor_progress *p);

/* Closes the open transaction at end_pos of the current file; gtid may be
 * NULL (no GTID). */
void tor_progress_commit(struct tor_progress *p, uint64_t end_pos,
    const struct tor_gtid *gtid);

/* Kafka acknowledged one message of transaction seq. */
void tor_progress_ack(struct tor_progress *p, uint64_t seq);

/* The open transaction holds the safe position before it until
 * tor_progress_release(seq): an XA PREPARE whose rows wait for its commit
 * (they are in the binlog only there). */
void tor_progress_hold(struct tor_progress *p);
void tor_progress_release(struct tor_progress *p, uint64_t seq);

/* How far everything is acknowledged, holds aside: the end of the newest
 * transaction whose messages and all before them are acknowledged (file and
 * pos only).  False when that is no further than the safe position's
 * entries reach (nothing is in the ring). */
bool tor_progress_done(const struct tor_progress *p, struct tor_position *out);

/* Copies the safe position into out; returns true when it moved since the
 * last call. */
bool tor_progress_take_safe(struct tor_progress *p, struct tor_position *out);

/* Whether the safe position moved since the last tor_progress_take_safe. */
bool tor_progress_moved(const struct tor_progress *p);

/* The safe position, without consuming the "moved" flag. */
void tor_progress_safe(const struct tor_progress *p, struct tor_position *out);

/* How far the transactions read reach, acknowledged or not, up to the first
 * one that holds: what a Kafka commit of everything produced makes safe
 * (transactional mode), its GTID state the same place's. */
void tor_progress_read(const struct tor_progress *p, struct tor_position *out);

/*
 * MySQL (gtid_mode=ON): the executed GTID set at the safe position, kept
 * from a start set on: each transaction's GTID (tor_progress_commit's) is
 * added as the safe position passes it, so the set describes exactly what
 * is before that position.  Without a start set (a file:pos start, an
 * older checkpoint, MariaDB) no set is known.
 *
 * _start_gtid_set: the set at the start position (its text form);
 * -1 with err when it does not parse.  _safe_gtid_set: the set at the
 * safe position into buf, snprintf semantics, or -1 when none is known
 * (no start set, or memory ran out while adding to it: a set missing a
 * transaction is never given out).  _read_gtid_set: the same at
 * tor_progress_read's position.
 */
int tor_progress_start_gtid_set(struct tor_progress *p, const char *text,
    tor_err *err);
int tor_progress_safe_gtid_set(const struct tor_progress *p, char *buf,
    size_t cap);
int tor_progress_read_gtid_set(const struct tor_progress *p, char *buf,
    size_t cap);

/* Entries the tracker keeps (what bounds its memory). */
size_t tor_progress_entries(const struct tor_progress *p);

/* Transactions and messages in flight (committed or open, not all acked). */
uint64_t tor_progress_pending_messages(const struct tor_progress *p);

#endif
