/*
 * The elector: one state machine, FOLLOWER -> CANDIDATE -> LEADER ->
 * STEPPING_DOWN -> FOLLOWER, driven by one function, every transition logged
 * once with its reason (DESIGN.md §3).
 *
 * A driver thread (tor/electors.h) steps it, beside other electors; it has
 * its own Redis connection for the lease.  No step blocks on anything but
 * one bounded Redis call.  The handshake with the relay thread: every
 * leadership the elector grants (numbered 1, 2, ...) is taken by the relay
 * exactly once
 * (tor_elector_take), even one that ended before the relay looked, and
 * ended by it exactly once (tor_elector_end, or tor_elector_release at a
 * clean stop).  The relay may publish for leadership id only while
 * tor_elector_may_publish(id) holds: that leadership is the current one,
 * and its local deadline (the lease clock's time the last successful renew
 * was sent, plus lease_ms, less a drift margin) has not passed, even when
 * Redis cannot be reached to say so.  STEPPING_DOWN lasts until the relay
 * ends the leadership; the next one is granted only after that, so at most
 * one leadership is outstanding.
 *
 * The lease operations and the clock come through struct tor_elector_ops, so
 * the unit tests drive the machine with a fake Redis and a fake clock.
 */
#ifndef TOR_ELECTOR_H
#define TOR_ELECTOR_H

#include <stdbool.h>
#include <stdint.h>

#include "tor/config.h"
#include "tor/err.h"
#include "tor/log.h"

enum tor_elector_state {
	TOR_FOLLOWER,
	TOR_CANDIDATE,
	TOR_LEADER,
	TOR_STEPPING_DOWN,
};

/* The state's name as logs and /metrics show it: "follower"... */
const char *tor_elector_state_name(enum tor_elector_state state);

/* The lease backend and the clock.  The real one wraps tor/lease.h on a
 * connection of the elector's own (tor_elector_ops_redis). */
struct tor_elector_ops {
	/* 1 acquired (*token set, *sent_ms to the clock's time the request
	 * that won was sent: the lease's expiry in Redis runs from later
	 * than that; *not_before_ms to the clock's time before which the
	 * leadership must not start, 0 for none), 0 held by another,
	 * TOR_LEASE_FREE the lease was free and left alone (takeover_only:
	 * only a dead holder's lease is taken), -1 error */
	int (*acquire)(void *ctx, bool takeover_only, uint64_t *token,
	    int64_t *sent_ms, int64_t *not_before_ms, tor_err *err);
	/* 1 renewed, 0 not ours any more, -1 error; its answer waited for
	 * wait_ms (as the ping's) */
	int (*renew)(void *ctx, uint64_t token, int wait_ms, tor_err *err);
	/* 1 released, 0 not ours, -1 error */
	int (*release)(void *ctx, uint64_t token, tor_err *err);
	/* the lease clock, in ms: never goes back, and counts the time the
	 * machine was suspended (tor_mono_ms) */
	int64_t (*now_ms)(void *ctx);
	/* true when the connection the lease was recorded with is gone (may
	 * be NULL: never); looked at between renews, without blocking */
	bool (*connection_lost)(void *ctx);
	/* a round trip on that same connection: 1 answered, 0 that connection is gone (nothing sent), -1
	 * error (may be NULL: the renews alone are heard) */
	int (*ping)(void *ctx, int wait_ms, tor_err *err);
};

struct tor_elector;

/* ops and ctx must outlive the elector. */
struct tor_elector *tor_elector_new(const struct tor_config *cfg,
    const struct tor_elector_ops *ops, void *ctx);

/* The real elector: tor/lease.h on a Redis connection of its own
 * (redis.timeout_ms).  Hand-off wake-ups come from the driver's listener
 * (tor_elector_wake). */
struct tor_elector *tor_elector_new_redis(const struct tor_config *cfg,
    tor_err *err);
void tor_elector_free(struct tor_elector *el);

/* Does what the current state calls for, once, without waiting: a
 * follower becomes a candidate when its retry period (retry_ms, jittered)
 * is over or a hand-off wake-up came, else returns the ms left; a
 * candidate tries to acquire (a lease whose reply came past its deadline
 * is given back, not granted; a take-over's grant is kept back until its
 * not-before time, the step returning the ms left); a leader renews when
 * due and steps down when the lease is lost or its deadline passes; a
 * replica stepping down waits for the relay to end the leadership.
 * Returns the ms until the next step is due (0: at once).  The driver
 * calls it; the unit tests call it directly. */
int tor_elector_step(struct tor_elector *el);

/* The log context of the group the elector competes for (a replica of
 * several groups): the driver logs its steps under that group. */
void tor_elector_set_log_group(struct tor_elector *el,
    struct tor_log_group *g);
struct tor_log_group *tor_elector_log_group(const struct tor_elector *el);

/* For the driver: fn(ctx) is called whenever the next step should come
 * sooner than the last one said (a transition, a hand-off wake-up, a
 * hold-off or an acquire mode set from any thread), with the elector's
 * mutex held, so it must only take a lock of its own and signal.  Set
 * before any other thread uses the elector. */
void tor_elector_set_waker(struct tor_elector *el, void (*fn)(void *),
    void *ctx);

/* A hand-off wake-up for this group arrived (the lease was released): a
 * follower competes at its next step instead of at the end of its retry
 * period.  Any thread; a follower holding off ignores it. */
void tor_elector_wake(struct tor_elector *el);

/* The config the elector was made with (its group, its Redis). */
const struct tor_config *tor_elector_config(const struct tor_elector *el);

/* Whether it runs on Redis (tor_elector_new_redis), not on test ops. */
bool tor_elector_on_redis(const struct tor_elector *el);

/* When a follower competes (the balancer sets it; any thread):
 * TOR_ACQUIRE_ANY at every retry, as a single-group replica does;
 * TOR_ACQUIRE_TAKEOVER_ONLY takes over only a lease whose holder's Redis
 * client is gone (ha.fast_failover) and leaves a free lease alone, unless
 * this elector has seen it free for longer than lease_ms (so no group
 * stays unled when every replica is at its share) or a hand-off wake-up
 * says it was just given back (a replica stopping or yielding; a balance
 * hand-over's taker is named in handoff_to); TOR_ACQUIRE_NONE never
 * competes.  A leader is not affected. */
enum tor_acquire_mode {
	TOR_ACQUIRE_ANY,
	TOR_ACQUIRE_TAKEOVER_ONLY,
	TOR_ACQUIRE_NONE,
};
void tor_elector_set_acquire(struct tor_elector *el, enum tor_acquire_mode m);
enum tor_acquire_mode tor_elector_acquire_mode(const struct tor_elector *el);

/* For /metrics and the probes. */
enum tor_elector_state tor_elector_state(const struct tor_elector *el);
uint64_t tor_elector_token(const struct tor_elector *el);

/* A leadership as the relay takes it. */
struct tor_leadership {
	uint64_t id;            /* 1, 2, ...: this replica's leaderships */
	uint64_t token;         /* its fencing token */
};

/* Waits up to timeout_ms (0: does not wait) for a leadership the relay has
 * not taken yet: 1 with *l set, 0 when none came.  Each leadership granted
 * is returned once, whether or not it is still on. */
int tor_elector_take(struct tor_elector *el, int timeout_ms,
    struct tor_leadership *l);

/* Whether the relay may publish for leadership id now: it is the current
 * one, LEADER, and its local deadline has not passed. */
bool tor_elector_may_publish(const struct tor_elector *el, uint64_t id);

/* Whether the leader may hand messages to the producer now: without
 * ha.fast_failover always; with it, only while a round trip on the lease's
 * connection (acquire, renew, or the PING the leader sends every
 * TOR_LEASE_WATCH_MS) sent within the last TOR_LEASE_HEARD_MS was
 * answered.  A leader that hears nothing pauses: it still leads (see
 * tor_elector_may_publish), and goes on once Redis answers. */
bool tor_elector_heard(const struct tor_elector *el);

/* The lease clock's ms at which the current leader must stop publishing (0
 * when not leader). */
int64_t tor_elector_deadline(const struct tor_elector *el);

/* The relay gives up leadership id at once (its checkpoint write was
 * refused, Kafka fenced it): LEADER -> STEPPING_DOWN.  Nothing when id is
 * not the current leadership or it is over already. */
void tor_elector_resign(struct tor_elector *el, uint64_t id,
    const char *reason);

/* A leader that yielded (it stalled while a standby is healthy) does not
 * compete for ms from now: the standby wins the lease alone.  Called before
 * the leadership ends, so the first follower step already holds off. */
void tor_elector_hold_off(struct tor_elector *el, int ms);

/* The relay's session for leadership id is over (it lost it, or gave it
 * up), and nothing of it can be published any more: LEADER (for reason)
 * or STEPPING_DOWN -> FOLLOWER, and a lease still ours is given back
 * (compare-and-DEL, hand-off wake-up).  The replica competes again.
 * Nothing when id is not the current leadership or was ended already. */
void tor_elector_end(struct tor_elector *el, uint64_t id,
    const char *reason);

/* fn(ctx) is called at every move out of LEADER (the deadline, a lost
 * lease, a resign, a release), in the thread that makes it and with the
 * elector's mutex held: it must be quick and must not call the elector
 * (the relay purges its producer there). */
void tor_elector_on_leadership_end(struct tor_elector *el, void (*fn)(void *),
    void *ctx);

/* Clean shutdown of a leader, after its final checkpoint, and every exit of
 * the relay: ends the current leadership, releases the lease
 * (compare-and-DEL, hand-off wake-up) and becomes a follower that no longer
 * competes.  Returns 0, or -1 when Redis could not be told (the lease then
 * expires by itself). */
int tor_elector_release(struct tor_elector *el, tor_err *err);

/* A graceful hand-over (the balancer, after the relay's clean stop of this
 * group): ends the current leadership and releases the lease as
 * tor_elector_release does (compare-and-DEL, hand-off wake-up), but the
 * elector is not retired: it holds off for hold_ms, then competes again.
 * Returns 0, or -1 when Redis could not be told (the lease then expires by
 * itself). */
int tor_elector_hand_over(struct tor_elector *el, int hold_ms, tor_err *err);

/* Failovers seen (transitions into LEADER after the first), for metrics. */
uint64_t tor_elector_failovers(const struct tor_elector *el);

#endif
