/*
 * De-duplication at takeover (DESIGN.md §3, idempotent mode).  Kafka says
 * what the previous leaders already published: within a partition the
 * messages of one group are in binlog order, so the newest one of the
 * group (its tor.pos) tells that every row up to it that goes to that
 * partition is there.  A new leader learns that position per partition
 * before it publishes there, and a replayed row at or before it is not
 * published again.
 *
 * Positions are compared within one binlog lineage only: a MariaDB GTID
 * domain (by sequence number), a MySQL server uuid (by transaction
 * number), or one binlog base name (by file sequence and offset).  A row
 * that cannot be compared with its partition's position is published
 * (at-least-once) and counted.
 *
 * A domain's sequence goes on across a primary failover, but one that
 * lost transactions numbers its own as the lost ones were: a partition's
 * newest message may be of a transaction the source never had.  So where
 * the source's GTID state is known (tor_dedup_source) and does not hold
 * that message's GTID, a row of another server_id at or before it is
 * not taken for published.
 *
 * That proves a row is there only if it went to the same partition
 * before: every message says how its leadership placed rows
 * (tor.partitioning, "<partitioner>/<partition count>").  Where the
 * newest message says otherwise than this leadership would (partitions
 * were added, or another partitioner), a row placed by its key may have
 * gone elsewhere: it is published, not skipped.
 */
#ifndef TOR_DEDUP_H
#define TOR_DEDUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A row's position as tor.pos writes it, parsed for comparing. */
struct tor_row_pos {
	enum { TOR_POS_MARIADB, TOR_POS_MYSQL, TOR_POS_FILE } kind;
	char lineage[80];       /* domain, server uuid[:tag], or binlog base
	                         * name */
	uint64_t major;         /* seq_no, gno, or the file's sequence number */
	uint64_t minor;         /* 0, 0, or the transaction's start offset */
	uint64_t row;
	uint64_t server;        /* MariaDB: the GTID's server_id; else 0 */
};

/* Parses "<d>-<s>-<n>:<row>", "<uuid>:<gno>:<row>" or
 * "<file>:<pos>:<row>" (len bytes, not NUL-terminated).  false when it is
 * none of them. */
bool tor_row_pos_parse(const char *text, size_t len, struct tor_row_pos *p);

#define TOR_ROW_POS_UNORDERED 2

/* <0, 0 or >0 by binlog order, or TOR_ROW_POS_UNORDERED across lineages. */
int tor_row_pos_cmp(const struct tor_row_pos *a, const struct tor_row_pos *b);

/* What one partition holds of the group: its newest message's position. */
struct tor_partition_tail {
	bool known;             /* the tail was read */
	bool found;             /* the group has a message there */
	struct tor_row_pos pos; /* (found) that message's tor.pos */
	char placement[32];     /* (found) its tor.partitioning, "" without */
};

struct tor_dedup;

struct tor_dedup *tor_dedup_new(void);
void tor_dedup_free(struct tor_dedup *d);

/* What a takeover learned of topic: n partitions' tails (copied), and
 * how this leadership places rows there (tor.partitioning's value). */
int tor_dedup_learn(struct tor_dedup *d, const char *topic, int n,
    const struct tor_partition_tail *tails, const char *placement);

/* The source's gtid_binlog_state ("D-S-N,...", each domain's last GTID
 * of each server_id): which tails' transactions it has.  0, or -1 when
 * out of memory. */
int tor_dedup_source(struct tor_dedup *d, const char *gtid_state);

/* Whether topic's tails were learned (or tried) in this leadership. */
bool tor_dedup_knows(const struct tor_dedup *d, const char *topic);

enum {
	TOR_DEDUP_PUBLISH = 0,  /* not there yet: publish */
	TOR_DEDUP_SKIP = 1,     /* the partition holds it already */
	TOR_DEDUP_UNKNOWN = 2,  /* cannot tell (another lineage, no tail):
				 * publish, at-least-once */
};

/* How the newest message of topic's partition was placed, when not as this
 * leadership places rows (tor.partitioning's value, "" when it had none),
 * else NULL. */
const char *tor_dedup_placed_otherwise(const struct tor_dedup *d,
    const char *topic, int partition);

/* The verdict for a row of pos going to topic's partition.  moved: the row
 * may have gone to another partition before (placed by its key or tor.pos
 * where the partition's newest message was placed otherwise, and that
 * placement puts the row elsewhere or cannot be told); such a row is never
 * skipped there, nor one of another server_id than a tail the source does
 * not have (TOR_DEDUP_UNKNOWN).  Once a row passes a partition's position, the rest of
 * that partition publishes without comparing. */
int tor_dedup_check(struct tor_dedup *d, const char *topic, int partition,
    const char *pos, bool moved);

/* Whether every learned partition has been passed (nothing left to skip). */
bool tor_dedup_done(const struct tor_dedup *d);

#endif
