/*
 * The group's checkpoint in Redis: hash P:{G}:checkpoint with fields file,
 * pos, gtid, epoch, updated_ms, and mac when a checkpoint key is configured.
 *
 * A checkpoint names the end of a whole source transaction: resuming there
 * starts at a transaction boundary, with a fresh table map.  It is written
 * by exactly one function, tor_checkpoint_store_fenced(), which is where the
 * lease token is checked.
 *
 * and, when there is more published than pos says, done ("file:pos") and
 * rows; after an operator's move, moved (its token); server_id, the source
 * server whose binlog file and done name (absent in a checkpoint written
 * before tor recorded it, or by an operator: unknown); gtid_set, the MySQL
 * executed GTID set at pos (absent: none, as in a checkpoint written
 * before tor recorded it, or on MariaDB).  With cfg->checkpoint.has_key,
 * mac is the lowercase hex of HMAC-SHA-256 (key cfg->checkpoint.key) over
 *
 *	"tor-checkpoint-v1\n" <group> <file> <pos> <gtid> <epoch> <updated_ms>
 *	    [ "done" <done> ] [ "rows" <rows> ] [ "moved" <moved> ]
 *	    [ "server_id" <server_id> ] [ "gtid_set" <gtid_set> ]
 *
 * each value written as "<byte length>:<value>\n", and the numbers in
 * decimal without leading zeros, as encode writes them.  The group is in
 * it so that one group's checkpoint copied to another's key does not verify.
 *
 * Kafka keeps a copy (DESIGN.md §3): a position record on the checkpoint
 * topic, key = group, value "v2 token=<epoch> file=<f> pos=<p> gtid=<g>
 * done=<file:pos> rows=<n> [moved=<token>] [server_id=<id>] [gtid_set=<set>]
 * [mac=<hex>]",
 * empty values written as "-", the
 * mac (with a checkpoint key) over "tor-record-v2\n", the group and the
 * text before " mac=".  Version 1 records ("v1 <token> <file> <pos>") are
 * still read.
 */
#ifndef TOR_CHECKPOINT_H
#define TOR_CHECKPOINT_H

#include <stdbool.h>
#include <stdint.h>

#include "tor/config.h"
#include "tor/err.h"
#include "tor/redis.h"

/* A position in the source's binlog.  file/pos is where to resume on the same
 * server; gtid ("0-1-42[,1-2-7]", MariaDB GTID state) where the server has
 * GTIDs.  Either may be empty ("" / 0). */
struct tor_position {
	char file[256];
	uint64_t pos;
	char gtid[512];
};

#define TOR_GTID_SET_TEXT 8192    /* a checkpoint's gtid_set and its NUL */

struct tor_checkpoint {
	struct tor_position pos;  /* where to resume: a group boundary */
	uint64_t epoch;         /* fencing token of the writer */
	int64_t updated_ms;     /* wall clock of the write, ms since the epoch */
	/* What is published beyond pos (tor_reader_skip_until): every group
	 * that ends at or before done, and the first `rows` outbox rows of the
	 * group after it.  done.file is "" when nothing is: then `rows`, if
	 * not 0, counts rows of the group at pos.  pos stays behind done while
	 * an XA transaction prepared after pos waits for its commit (its rows
	 * are only in the binlog there), or while a big source transaction is
	 * published in parts (transactional mode). */
	struct tor_position done;
	uint32_t rows;
	/* The token of the last operator's move (`tor checkpoint set`), or 0;
	 * carried by every checkpoint after it.  Messages published under a
	 * lower token are not counted as published by de-duplication at
	 * takeover: the move asked for them again. */
	uint64_t moved;
	/* The server_id of the source server whose binlog pos.file and done
	 * are positions in, or 0 when unknown (an older checkpoint, an
	 * operator's move).  Another server is resumed by pos.gtid alone. */
	uint32_t server_id;
	/* MySQL (gtid_mode=ON): the executed GTID set at pos, in the text
	 * form tor_gtid_set_format writes (no blanks), or "".  What a resume
	 * on another server asks for by auto-positioning.  A set whose text
	 * does not fit is not recorded (the relay says so): the checkpoint
	 * then resumes by file:pos on its own server only. */
	char gtid_set[TOR_GTID_SET_TEXT];
};

/* Parses an operator's position: "<file>:<pos>" (file a binlog base name:
 * non-empty, no '/'; pos a decimal >= 4 that fits 64 bits) or a MariaDB GTID
 * list "D-S-N[,D-S-N...]" (at most one GTID per domain).  Fails with "bad
 * position 'x': expected <file>:<pos> or a GTID list like 0-1-42", followed
 * by the reason in parentheses where the form is right but a value is not
 * (a pos below 4, two GTIDs of one domain, too long). */
int tor_position_parse(const char *text, struct tor_position *p, tor_err *err);

/* An operator's position as tor_position_parse reads it, or a MySQL GTID
 * set (text that starts with a server UUID and ':', in MySQL's spelling,
 * blanks after commas allowed), which is written to gtid_set in the one
 * form a checkpoint holds (p emptied); gtid_set is "" for the other forms.
 * A set that does not parse, or longer than a checkpoint holds, fails with
 * "bad position '...': <why>". */
int tor_position_parse_set(const char *text, struct tor_position *p,
    char gtid_set[TOR_GTID_SET_TEXT], tor_err *err);

/* Orders two positions of one server's binlog: by the file's sequence
 * number (the digits after its last '.'), then the offset.  Returns <0, 0
 * or >0, or TOR_POSITION_UNORDERED when either has no file (a GTID alone
 * says nothing about file offsets). */
#define TOR_POSITION_UNORDERED 2
int tor_position_compare(const struct tor_position *a,
    const struct tor_position *b);

/* "file:pos" when file is set, else the gtid. snprintf semantics. */
int tor_position_format(const struct tor_position *p, char *buf, size_t cap);

/* The hash fields of cfg->group's checkpoint cp, as HSET would be given them:
 * file, pos, gtid, epoch, updated_ms, done, rows, moved, server_id and
 * gtid_set when set, and mac when cfg has a checkpoint key.
 * Field values are written into buf (cap bytes; TOR_CHECKPOINT_BUF always
 * suffices) and names are static strings.  Returns the number of field/value
 * pairs (5 to 11), or -1 when buf is too small or libsodium cannot start. */
#define TOR_CHECKPOINT_FIELDS 11        /* at most */
#define TOR_CHECKPOINT_BUF (1536 + TOR_GTID_SET_TEXT)
int tor_checkpoint_encode(const struct tor_config *cfg,
    const struct tor_checkpoint *cp, const char *names[TOR_CHECKPOINT_FIELDS],
    const char *values[TOR_CHECKPOINT_FIELDS], char *buf, size_t cap);

/* Reads cfg->group's checkpoint back from field/value pairs (the HGETALL
 * reply order).  A malformed or incomplete hash fails naming the field: it
 * is never used.  file and pos are required (pos, epoch and updated_ms
 * decimal), gtid, epoch and updated_ms default to ""/0, unknown fields are
 * ignored, and a hash whose file and gtid are both empty names no position
 * and fails.  Errors read "checkpoint field 'pos': not a number ('x')" or
 * "checkpoint field 'file': missing".
 *
 * With a checkpoint key the mac must be there and verify, else decode fails
 * with "no mac field, but a checkpoint key is configured (...)" or "mac does
 * not verify (...)"; the fields are checked first, so a field that does not
 * parse is named even in a tampered hash.  Without a key a mac is ignored:
 * a replica that has none cannot judge it. */
int tor_checkpoint_decode(const struct tor_config *cfg, size_t n,
    const char *const *names, const char *const *values,
    struct tor_checkpoint *cp, tor_err *err);

/* Loads the group's checkpoint (HGETALL).  *found is false (and 0 returned)
 * when the key does not exist.  A hash that does not decode (or whose mac
 * does not verify) fails, its message prefixed with the key; Redis errors
 * read "redis host:port: ...". */
int tor_checkpoint_load(struct tor_redis *r, const struct tor_config *cfg,
    struct tor_checkpoint *cp, bool *found, tor_err *err);

enum {
	TOR_CHECKPOINT_WRITTEN = 0,
	TOR_CHECKPOINT_REFUSED = 1,
};

/* The leader's one writer of the checkpoint: a Lua script that writes only
 * while the lease holds "<cfg->instance> <cp->epoch>" and the stored
 * checkpoint's epoch is not above cp->epoch (a token never goes down).  The
 * hash is replaced whole, mac included (or dropped, without a key).  Sets
 * updated_ms.  Returns TOR_CHECKPOINT_WRITTEN, TOR_CHECKPOINT_REFUSED (this
 * replica is a zombie, or an operator moved the checkpoint: step down), or -1
 * on a Redis error. */
int tor_checkpoint_store_fenced(struct tor_redis *r,
    const struct tor_config *cfg, struct tor_checkpoint *cp, tor_err *err);

/* The operator's move (`tor checkpoint set`), in one step on the Redis
 * master: a fresh token (cp->epoch is set to it), the lease taken as
 * TOR_LEASE_OPERATOR for lease_ms (the leader's renew fails and it steps
 * down; nobody acquires before its deadline has passed) and the checkpoint
 * written under that token.  A replica that acquires meanwhile makes the
 * step start over with a newer token, so no leader elected before the move
 * can overwrite it.  TOR_CHECKPOINT_WRITTEN or -1. */
int tor_checkpoint_move(struct tor_redis *r, const struct tor_config *cfg,
    struct tor_checkpoint *cp, tor_err *err);

/* The position record of cp (see above) into buf; snprintf semantics.
 * TOR_CHECKPOINT_RECORD always suffices: it holds the longest record, every
 * field at its widest (ha/checkpoint.c checks it when compiled), and a
 * reader of the topic skips a longer one. */
#define TOR_CHECKPOINT_RECORD (2048 + 16 + TOR_GTID_SET_TEXT)
int tor_checkpoint_record_format(const struct tor_config *cfg,
    const struct tor_checkpoint *cp, char *buf, size_t cap);

/* Reads a position record back.  A record that does not parse, lacks a
 * position, or (with a checkpoint key) lacks a mac or does not verify
 * fails naming why. */
int tor_checkpoint_record_parse(const struct tor_config *cfg, const char *text,
    struct tor_checkpoint *cp, tor_err *err);

/* The GTID of domain d in a MariaDB GTID list "D-S-N[,D-S-N...]": its
 * server_id and sequence number; false when the list has none (or does not
 * parse). */
bool tor_gtid_of_domain(const char *list, unsigned long d,
    unsigned long *server, unsigned long long *seq);

/* Which of two checkpoints of the group is the newer decision: the higher
 * token; for equal tokens (one leadership wrote both) the one that names
 * more published, or, when they belong to two servers (the leadership
 * followed a failover), the one further on in the GTID domains, else b
 * (met later).  Returns true when b wins over a. */
bool tor_checkpoint_newer(const struct tor_checkpoint *a,
    const struct tor_checkpoint *b);

/*
 * Kafka's copy of the checkpoint, picked out of the group's position
 * records as a read of the checkpoint topic meets them, in offset order:
 * the newer decision (tor_checkpoint_newer) wins, not the last record,
 * which may be a paused leader's that reached the broker after its
 * successor's.  The last record must parse, as a lone one must (one that
 * does not, tampered or signed with another key, fails the pick); an
 * earlier one that does not is passed over, and counted.
 */
struct tor_record_pick {
	const struct tor_config *cfg;
	bool have;                      /* best holds a record */
	struct tor_checkpoint best;
	uint64_t last_epoch;            /* the last record's token */
	bool last_bad;                  /* the last record does not parse */
	tor_err bad;                    /* why */
	unsigned passed;                /* earlier records that did not */
};

void tor_checkpoint_pick_start(struct tor_record_pick *p,
    const struct tor_config *cfg);

/* The next record's value (len bytes, no NUL needed); p is a struct
 * tor_record_pick, as tor_position_scan hands it. */
void tor_checkpoint_pick(void *p, const void *value, size_t len);

/* The pick: 1 with *cp set, 0 when no record came, -1 with err (why the
 * last record does not parse). */
int tor_checkpoint_picked(const struct tor_record_pick *p,
    struct tor_checkpoint *cp, tor_err *err);

/*
 * Rows the broker refused as too large, shared by the group's replicas so
 * that the next leader does not offer one to the broker again (set
 * P:{G}:refused of their tor.pos, each signed with the checkpoint key when
 * there is one; kept a week past its last addition).  Advice, not fenced:
 * a zombie's addition is as true as the leader's.
 */
#define TOR_REFUSED_POS 128     /* a tor.pos and its NUL, at most */

/* Adds pos.  0, or -1 with err (Redis errors read "refused rows: redis
 * host:port: ..."). */
int tor_checkpoint_refused_add(struct tor_redis *r,
    const struct tor_config *cfg, const char *pos, tor_err *err);

/* Calls fn(ctx, pos) for every row listed; a member that does not verify
 * with the checkpoint key (or is not one) is counted in *ignored instead.
 * 0, or -1 with err. */
int tor_checkpoint_refused_load(struct tor_redis *r,
    const struct tor_config *cfg, void (*fn)(void *ctx, const char *pos),
    void *ctx, size_t *ignored, tor_err *err);

#endif
