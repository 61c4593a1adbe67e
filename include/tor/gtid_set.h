/*
 * MySQL GTID sets: what a MySQL server (gtid_mode=ON) has executed, as
 * "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7-9,<uuid>:1-100", and the
 * binary form its replication protocol carries (PREVIOUS_GTIDS_LOG_EVENT
 * bodies, COM_BINLOG_DUMP_GTID requests).
 *
 * A set holds, per source UUID (sid, kept in byte order: the order MySQL
 * writes them in), sorted, disjoint, non-adjacent intervals [start, end)
 * of transaction numbers (gno, 1 to 2^63 - 2).  Adding a GTID merges it
 * into its neighbours, so a set that grows by one transaction at a time
 * stays a handful of intervals.  Errors are tor_err, functions return 0 or
 * -1.  Not MariaDB's GTIDs (domain-server-seq): those are a position per
 * domain, not a set.
 */
#ifndef TOR_GTID_SET_H
#define TOR_GTID_SET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tor/binlog_decode.h"
#include "tor/err.h"

#define TOR_GNO_MAX (INT64_MAX - 1)     /* the last transaction number */

struct tor_gtid_interval {
	int64_t start, end;     /* [start, end): end is one past the last */
};

struct tor_gtid_sid {
	uint8_t uuid[16];
	struct tor_gtid_interval *iv;
	size_t n, cap;
};

struct tor_gtid_set {
	struct tor_gtid_sid *sids;
	size_t n, cap;
};

/* An empty set (a zeroed struct is one too).  _free releases what the set
 * holds and leaves it empty. */
void tor_gtid_set_init(struct tor_gtid_set *s);
void tor_gtid_set_free(struct tor_gtid_set *s);

/* Adds transaction gno (1..TOR_GNO_MAX) of source uuid, or [start, end).
 * -1 when out of memory or out of range (err says which). */
int tor_gtid_set_add(struct tor_gtid_set *s, const uint8_t uuid[16],
    int64_t gno, tor_err *err);
int tor_gtid_set_add_interval(struct tor_gtid_set *s, const uint8_t uuid[16],
    int64_t start, int64_t end, tor_err *err);

/* Adds every transaction of src to s (s != src). */
int tor_gtid_set_add_set(struct tor_gtid_set *s, const struct tor_gtid_set *src,
    tor_err *err);

/* Adds every transaction of the text form (MySQL's spelling: UUIDs with
 * dashes, either case; intervals "n" or "a-b"; blanks and newlines after
 * commas, as gtid_executed shows them; "" is the empty set).  Overlapping
 * or repeated parts are merged.  Fails with "bad GTID set '<text>': ..."
 * naming what is wrong; MySQL 8.4's tagged GTIDs (uuid:tag:n) are refused
 * by name.  On failure the set holds what was added before the fault. */
int tor_gtid_set_parse(struct tor_gtid_set *s, const char *text,
    tor_err *err);

/* The text form, sids in byte order, lowercase: snprintf semantics (the
 * length it needs, whatever cap is). */
int tor_gtid_set_format(const struct tor_gtid_set *s, char *buf, size_t cap);

bool tor_gtid_set_contains(const struct tor_gtid_set *s,
    const uint8_t uuid[16], int64_t gno);

/* Whether every transaction of a is in b. */
bool tor_gtid_set_is_subset(const struct tor_gtid_set *a,
    const struct tor_gtid_set *b);

bool tor_gtid_set_equal(const struct tor_gtid_set *a,
    const struct tor_gtid_set *b);

/* out = a - b: the transactions of a that b lacks (out is emptied first;
 * it must not be a or b). */
int tor_gtid_set_subtract(struct tor_gtid_set *out,
    const struct tor_gtid_set *a, const struct tor_gtid_set *b,
    tor_err *err);

/* Whether a MySQL server whose gtid_executed is executed and gtid_purged
 * is purged can stream, by auto-positioning, every transaction after a
 * checkpoint whose executed set is checkpoint: it must hold all of the
 * checkpoint's (else it lacks published transactions: a promoted replica
 * that was behind, or another lineage) and have purged none the
 * checkpoint lacks (else they can never be read).  MySQL refuses both
 * itself at the first read; this says it before, naming the GTIDs.  0, or
 * -1 with "the server lacks <set> of the checkpoint" or "the server has
 * purged <set>, which the checkpoint lacks". */
int tor_gtid_set_resume_check(const struct tor_gtid_set *checkpoint,
    const struct tor_gtid_set *executed, const struct tor_gtid_set *purged,
    tor_err *err);

/* The binary form: n_sids (8 bytes), then per sid its 16-byte UUID,
 * n_intervals (8) and each interval's start and end (8 each), every
 * integer little-endian.  _encoded_len is its size; _encode writes exactly
 * that many bytes to out. */
size_t tor_gtid_set_encoded_len(const struct tor_gtid_set *s);
void tor_gtid_set_encode(const struct tor_gtid_set *s, uint8_t *out);

/* Adds the set of a binary form (n bytes, all of them).  Refuses what
 * MySQL's own reader refuses (intervals out of order, touching, or empty;
 * a count the bytes cannot hold; bytes left over), and the tagged form of
 * MySQL 8.4 (a format byte in n_sids) by name. */
int tor_gtid_set_decode(struct tor_gtid_set *s, const uint8_t *p, size_t n,
    tor_err *err);

/* A PREVIOUS_GTIDS_LOG_EVENT (35): the set of every transaction in the
 * binlog files before this one, added to s. */
int tor_gtid_set_from_previous_gtids(struct tor_gtid_set *s,
    const struct tor_event *ev, tor_err *err);

/* COM_BINLOG_DUMP_GTID (0x1e): a MySQL replica's request to stream from
 * the first transaction not in s (auto-positioning), file:pos being
 * where to look first (a replica with auto-positioning sends "" and 4).
 * flags: TOR_DUMP_* below.  The payload (what follows the 4-byte packet
 * header): command, flags (2), server_id (4), name length (4), name,
 * position (8), data size (4), the set's binary form.  *out is malloc'ed
 * (the caller frees it), *len its size. */
#define TOR_DUMP_NON_BLOCK              0x0001  /* EOF at the end, no wait */
#define TOR_DUMP_THROUGH_POSITION       0x0002
#define TOR_DUMP_THROUGH_GTID           0x0004
#define TOR_COM_BINLOG_DUMP_GTID        0x1e
int tor_gtid_set_dump_request(const struct tor_gtid_set *s, uint16_t flags,
    uint32_t server_id, const char *file, uint64_t pos, uint8_t **out,
    size_t *len, tor_err *err);

/* UUID text (36 characters with dashes at 8, 13, 18, 23) to its 16 bytes,
 * and back (37 bytes with the NUL).  parse returns the characters used
 * (36) or 0 when text does not start with one. */
size_t tor_uuid_parse(const char *text, uint8_t uuid[16]);
void tor_uuid_format(const uint8_t uuid[16], char out[37]);

#endif
