/*
 * The group's checkpoint in Redis: hash P:{G}:checkpoint with fields file,
 * pos, gtid, epoch, updated_ms, and mac when a checkpoint key is configured.
 *
 * A checkpoint names the end of a whole source transaction: resuming there
 * starts at a transaction boundary, with a fresh table map.  It is written
 * by exactly one function, tor_checkpoint_store_fenced(), which is where the
 * lease token is checked.
 *
 * With cfg->checkpoint.has_key, mac is the lowercase hex of HMAC-SHA-256
 * (key cfg->checkpoint.key) over
 *
 *	"tor-checkpoint-v1\n" <group> <file> <pos> <gtid> <epoch> <updated_ms>
 *
 * each value written as "<byte length>:<value>\n", and the numbers in
 * decimal without leading zeros, as encode writes them.  The group is in
 * it so that one group's checkpoint copied to another's key does not verify.
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

struct tor_checkpoint {
	struct tor_position pos;
	uint64_t epoch;         /* fencing token of the writer */
	int64_t updated_ms;     /* wall clock of the write, ms since the epoch */
};

/* Parses an operator's position: "<file>:<pos>" (file a binlog base name:
 * non-empty, no '/'; pos a decimal >= 4 that fits 64 bits) or a MariaDB GTID
 * list "D-S-N[,D-S-N...]" (at most one GTID per domain).  Fails with "bad
 * position 'x': expected <file>:<pos> or a GTID list like 0-1-42", followed
 * by the reason in parentheses where the form is right but a value is not
 * (a pos below 4, two GTIDs of one domain, too long). */
int tor_position_parse(const char *text, struct tor_position *p, tor_err *err);

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
 * file, pos, gtid, epoch, updated_ms, and mac when cfg has a checkpoint key.
 * Field values are written into buf (cap bytes; TOR_CHECKPOINT_BUF always
 * suffices) and names are static strings.  Returns the number of field/value
 * pairs (5, or 6 with the mac), or -1 when buf is too small or libsodium
 * cannot start. */
#define TOR_CHECKPOINT_FIELDS 6         /* at most */
#define TOR_CHECKPOINT_BUF 1024
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

/* The operator's writer (`tor checkpoint set`): writes cp, whose epoch must be
 * a fresh token (tor_lease_next_token), refusing only when the stored epoch
 * is above it.  Same returns. */
int tor_checkpoint_store_operator(struct tor_redis *r,
    const struct tor_config *cfg, struct tor_checkpoint *cp, tor_err *err);

#endif
