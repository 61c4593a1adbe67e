/*
 * The group's lease in Redis (DESIGN.md §3): who leads, with which fencing
 * token, and the wake-up a leader leaves when it steps down.
 *
 * Every operation is one Lua script (or one command), so it is atomic on the
 * Redis master, and every key carries the group's hash tag {G}, so scripts
 * that touch two keys stay legal on Redis Cluster.  The lease value is
 * "<instance> <token>": two replicas that share an instance name still never
 * mistake each other's lease for their own.
 */
#ifndef TOR_LEASE_H
#define TOR_LEASE_H

#include <stdbool.h>
#include <stdint.h>

#include "tor/config.h"
#include "tor/err.h"
#include "tor/redis.h"

/* The largest fencing token: 18 digits.  Redis's INCR works on signed 64
 * bits, so an epoch at or below this bound can always be raised by one;
 * and no group comes near it (a leadership a millisecond for thirty
 * million years).  A token past it was not drawn by a replica. */
#define TOR_TOKEN_MAX 999999999999999999ULL
/* The same, as the Lua scripts compare it (strings of digits). */
#define TOR_TOKEN_MAX_TEXT "999999999999999999"

/* With ha.fast_failover a leader looks at its Redis connection, and sends
 * a PING on it, at least this often between renews; it stops publishing
 * once it finds the connection closed: a successor may take the lease
 * over from then on. */
#define TOR_LEASE_WATCH_MS 5

/* How long after a take-over (see tor_lease_acquire) its winner may start
 * to lead.  Redis closed the old leader's connection before the take-over
 * ran, so the winner leads at least this long after the close. */
#define TOR_LEASE_TAKEOVER_GRACE_MS 50

/* With ha.fast_failover a leader hands messages to the producer only while
 * a round trip on the lease's connection, sent less than this long ago,
 * was answered: Redis had not closed that connection when it answered, so
 * no successor leads before the grace has passed from the sending.  A
 * leader that hears nothing (its replies cut, while Redis closed the
 * connection) thus stops handing messages over a margin before any
 * successor leads; the margin (the grace less this) is for what it handed
 * over last to reach the broker. */
#define TOR_LEASE_HEARD_MS 25

/* What tor_lease_acquire answers when told takeover_only and the lease is
 * free: left alone. */
#define TOR_LEASE_FREE 2

/* SET lease NX PX lease_ms and, only when that took, INCR epoch (past the
 * checkpoint's token when the epoch is behind it) and store
 * "<instance> <token>"; with ha.fast_failover, P:{G}:lease_client records
 * "<token> <run_id> <client id> <replicas>" of this connection beside it
 * (the master's replicas, "ip:port,..." or "-").  A lease held by a leader
 * whose recorded client is no longer connected to this same server run
 * (the process died: the kernel closed its socket) is taken over, with a
 * fresh token, compare-and-set on the lease and its record, and only
 * while this server is a master that still has every replica the leader
 * recorded (else the leader may be renewing on one of them, promoted).
 * While P:{G}:handoff_to lives and names another instance, the lease is
 * "held" for this one, free or taken over alike.  With takeover_only a
 * free lease is left alone (TOR_LEASE_FREE), unless handoff_to names this
 * instance.  Returns 1 with *token set when this replica now holds the
 * lease, 0 when another does, TOR_LEASE_FREE, or -1 on a Redis error, or
 * when no token is left below TOR_TOKEN_MAX (the lease is then left as it
 * was).  *sent_ms is the lease clock's time (tor_mono_ms) the script that
 * won was sent: the lease's PX expiry runs from later than that, whatever
 * came before (a reconnect, a Sentinel's answer) or after (WAIT for a
 * replica).  *not_before_ms is 0, or after a take-over the lease clock's
 * time TOR_LEASE_TAKEOVER_GRACE_MS after it won: the caller must not lead
 * before it. */
int tor_lease_acquire(struct tor_redis *r, const struct tor_config *cfg,
    bool takeover_only, uint64_t *token, int64_t *sent_ms,
    int64_t *not_before_ms, tor_err *err);

/* PEXPIRE lease lease_ms if it still holds "<instance> <token>", and
 * record this connection's client beside it again, with the replicas seen
 * now and, on the same server run, at the earlier renews of this
 * leadership.  Returns 1 renewed, 0 the lease is not ours any more
 * (expired, taken, or deleted by `tor checkpoint set`), -1 on a Redis
 * error. */
int tor_lease_renew(struct tor_redis *r, const struct tor_config *cfg,
    uint64_t token, tor_err *err);

/* DEL lease if it still holds "<instance> <token>", and give the hand-off
 * wake-up either way: PUBLISH the group's name on the free channel
 * (tor_lease_free_channel), and LPUSH handoff (trimmed to a few entries)
 * for replicas of the previous version, which BLPOP it.  Returns 1
 * released, 0 it was not ours, -1 on a Redis error. */
int tor_lease_release(struct tor_redis *r, const struct tor_config *cfg,
    uint64_t token, tor_err *err);

/* The channel the release's wake-up is published on:
 * "<redis.prefix>:pool:free" (a channel is not a key: no hash tag). */
void tor_lease_free_channel(const struct tor_config *cfg, char *buf,
    size_t cap);

/* SET P:{G}:handoff_to instance PX ttl_ms: until it expires, only that
 * instance may acquire the lease (a graceful hand-over's target).  0, or
 * -1 with err set. */
int tor_lease_set_handoff_to(struct tor_redis *r, const struct tor_config *cfg,
    const char *instance, int ttl_ms, tor_err *err);

/* The lease as it stands, for `tor status`: 1 with the holder's instance,
 * its token and the ms left, 0 when nobody holds it, -1 on error. */
int tor_lease_read(struct tor_redis *r, const struct tor_config *cfg,
    char *instance, size_t cap, uint64_t *token, int64_t *ttl_ms,
    tor_err *err);

/* A fresh token for a write that is not a leader's (`tor checkpoint set`),
 * or to put the epoch past a token seen elsewhere (Kafka's copy of the
 * checkpoint): the epoch is raised to floor first when below it, then
 * INCRed.  Returns 0 with *token set, or -1. */
int tor_lease_next_token(struct tor_redis *r, const struct tor_config *cfg,
    uint64_t floor, uint64_t *token, tor_err *err);

/* Redis lost its data while a leadership may still run (the token drawn
 * is not above the one Kafka's copy of the checkpoint carries): raises the
 * epoch past floor as tor_lease_next_token does and, while the lease still
 * holds held_token, replaces it with a hold (TOR_LEASE_HOLD) for
 * ha.lease_ms that no replica can take.  Whoever led before the loss has
 * seen its lease gone, or its own deadline pass, when the hold expires.
 * Returns 0 with *token set, or -1. */
int tor_lease_hold(struct tor_redis *r, const struct tor_config *cfg,
    uint64_t held_token, uint64_t floor, uint64_t *token, tor_err *err);

/* The holder's name in a lease taken by `tor checkpoint set`
 * (tor_checkpoint_move): instance names have no blanks, so no replica
 * mistakes it for its own. */
#define TOR_LEASE_OPERATOR "tor checkpoint set"

/* The holder's name in the hold of tor_lease_hold. */
#define TOR_LEASE_HOLD "tor redis-lost-data"

#endif
