/*
 * The pool's membership in Redis and the balancer's choices
 * (docs/pool-design.md §4).
 *
 * Keys, on the Redis and under the prefix of the config passed (the top
 * level's), all in the slot of the tag {pool:<pool.name>}:
 *   P:{pool:N}:members            sorted set: instance -> expiry, server ms
 *   P:{pool:N}:member:<instance>  the member's line, PX 3 x pool.beat_ms
 *   P:{pool:N}:decisions          list of decision lines, the last 100
 * Every script names keys of that one slot only, so it runs on whichever
 * Redis Cluster node serves it (tor_redis_new_tag(cfg, "pool:<name>") goes
 * there; a connection sent elsewhere follows the MOVED).
 *
 * The pure functions (share, target, group, hash, line) do no I/O.
 */
#ifndef TOR_MEMBERS_H
#define TOR_MEMBERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tor/config.h"
#include "tor/err.h"
#include "tor/redis.h"

#define TOR_MEMBER_INSTANCE_MAX 256     /* longest instance kept, with NUL */
#define TOR_MEMBER_LINE_MAX 128         /* a formatted line, with NUL */
#define TOR_DECISIONS_KEEP 100          /* decision lines kept in Redis */
#define TOR_DECISION_MAX 512            /* a decision line, with NUL */

struct tor_member {
	char instance[TOR_MEMBER_INSTANCE_MAX];
	int led;                /* groups it leads */
	bool healthy;           /* its lease connection and Kafka answer */
	bool draining;          /* stopping: hands everything over */
	int max_leading;        /* its pool.max_leading */
	uint64_t groups_hash;   /* tor_pool_groups_hash of its sources */
	int64_t since_ms;       /* server time of its first beat while live */
};

struct tor_decision {
	char line[TOR_DECISION_MAX];
};

/* The line "<led> <healthy 0/1> <draining 0/1> <max_leading> <groups hash,
 * 16 hex digits> <since_ms>" of m (instance not included).  Returns 0, or
 * -1 when cap is too small. */
int tor_member_format(const struct tor_member *m, char *buf, size_t cap);

/* Reads a line as tor_member_format writes it into m's fields (the
 * instance is left alone).  Refuses (-1) anything else: a missing or
 * extra field, a sign, a blank too many, a flag not 0 or 1, max_leading
 * below 1, a number out of range, a hash not 16 lowercase hex digits. */
int tor_member_parse(const char *line, struct tor_member *m);

/*
 * One beat, one script on the pool's slot: drops the members whose expiry
 * passed (their lines too), records *me (ZADD members with expiry server
 * time + 3 x pool.beat_ms, SET its line PX the same) under the name
 * cfg->instance, and returns every live member, *me included, into
 * out[0..*n).  me->instance and me->since_ms are not read:
 * the script keeps the since_ms of the member's line while it stays live
 * and starts a new one (the server's time now) otherwise; out holds the
 * value kept.  *server_ms is the server's time of the beat (Redis TIME),
 * which tor_pool_share and tor_pool_pick_target compare since_ms with, so
 * that the replicas' own clocks never matter.  A member whose line does not
 * parse is left out (logged at each beat).  Returns 0, or -1 with err
 * set: Redis failed, or more than cap members.
 */
int tor_members_beat(struct tor_redis *r, const struct tor_config *cfg,
    const struct tor_member *me, struct tor_member *out, size_t cap,
    size_t *n, int64_t *server_ms, tor_err *err);

/* The live members as a beat would return them, writing nothing (for
 * tor status, which is no member).  0, or -1 with err set. */
int tor_members_list(struct tor_redis *r, const struct tor_config *cfg,
    struct tor_member *out, size_t cap, size_t *n, int64_t *server_ms,
    tor_err *err);

/* Removes instance cfg->instance from the pool (ZREM, and DEL of its
 * line), at a clean exit; the others stop counting it at once instead of
 * after three beats.  0, or -1 with err set. */
int tor_members_leave(struct tor_redis *r, const struct tor_config *cfg,
    tor_err *err);

/* Pushes one decision line ("<ms> <instance> <decision> <group> <target>
 * <reason>", the caller's) in front of the pool's list and trims it to
 * TOR_DECISIONS_KEEP.  0, or -1 with err set. */
int tor_members_record(struct tor_redis *r, const struct tor_config *cfg,
    const char *line, tor_err *err);

/* The last decisions, newest first, at most cap (and TOR_DECISIONS_KEEP);
 * a longer line is cut.  0, or -1 with err set. */
int tor_members_decisions(struct tor_redis *r, const struct tor_config *cfg,
    struct tor_decision *out, size_t cap, size_t *n, tor_err *err);

/* A hash of the group names of cfgs[0..n), in sorted order, so that two
 * replicas with the same sources agree whatever the order in their files
 * (FNV-1a 64 over each name and a NUL: the same in every process). */
uint64_t tor_pool_groups_hash(const struct tor_config *cfgs, size_t n);

/* R, the members the share counts: the caller (instance me, always; NULL:
 * none, for an onlooker such as tor status) and every other member that is
 * healthy, not draining and settled (a member for at least settle_ms at
 * server time now_ms). */
int tor_pool_counted(const struct tor_member *m, size_t n, const char *me,
    int settle_ms, int64_t now_ms);

/*
 * The number of groups each replica should lead: ceil(groups / R), R as
 * tor_pool_counted counts (at least 1), capped by max_leading.  0 when
 * groups is 0.
 */
int tor_pool_share(const struct tor_member *m, size_t n, const char *me,
    int groups, int settle_ms, int64_t now_ms, int max_leading);

/* Whom to hand a group to: the member other than me that is healthy, not
 * draining, settled, and leads fewer than share groups (and fewer than its
 * own max_leading), with the fewest led; ties go to the lowest instance
 * name (strcmp).  Its index in m, or -1 when none qualifies. */
int tor_pool_pick_target(const struct tor_member *m, size_t n,
    const char *me, int share, int settle_ms, int64_t now_ms);

/* Which led group to shed: the one whose rendezvous hash with instance
 * ranks lowest (ties: the lowest name), so that a replica keeps the same
 * groups across restarts and replicas shed different ones.  Its index in
 * led_groups, or n when n is 0. */
size_t tor_pool_pick_group(const char *instance,
    const char *const *led_groups, size_t n);

#endif
