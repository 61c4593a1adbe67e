/*
 * The elector: which replica of the group leads, and until when (DESIGN.md §3).
 *
 * One enum of states and one function, transition(), that moves between them
 * and logs each move once with its reason.  tor_elector_step() does what the
 * current state calls for, once, and says when it wants the next step; a
 * driver thread (ha/electors.c) steps many electors that way, and the unit
 * tests call it directly with a fake Redis and a fake clock.  No step
 * waits for anything but one bounded Redis call: a follower's retry period
 * and a take-over's grace are due times, not sleeps.
 *
 * Three ideas make it safe:
 *
 * - The leader trusts its own clock, not Redis.  Its deadline is the lease
 *   clock's time (CLOCK_BOOTTIME, which counts a suspend) at which the last
 *   successful renew was *sent*, plus lease_ms, less a drift margin; the
 *   lease in Redis cannot have expired before that.  The relay may publish
 *   only while now < deadline, so a leader cut off from Redis, or woken
 *   from a suspend, stops on time without hearing from anyone.
 *
 * - Calls that block on Redis (acquire, renew, ping) are made by the
 *   stepping thread with the mutex dropped, and their result applies
 *   only if no transition happened meanwhile (a generation count says so).
 *   So a resign, an end or a release from the relay thread always wins over
 *   a renew or an acquire that was in flight: a replica that stepped down
 *   never drifts back to leading on a stale answer.
 *
 * - Leaderships are counted, not observed.  Each one granted is taken by
 *   the relay once and ended by it once, by number, however short it was:
 *   the relay cannot miss a leadership that began and ended between two of
 *   its looks, and STEPPING_DOWN ends only when the relay says that
 *   leadership's session is over.  A session that saw its leadership end
 *   ends it for good, even if a renew in flight would have kept the lease:
 *   no second session runs under a token the first one gave up.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tor/clock.h"
#include "tor/elector.h"
#include "tor/lease.h"
#include "tor/log.h"
#include "tor/redis.h"

/* STEPPING_DOWN waits for the relay to end the leadership (which wakes the
 * driver): nothing to do meanwhile. */
#define STEPPING_DOWN_WAIT_MS	1000
/* With ha.fast_failover a leader looks at its Redis connection, and pings
 * on it, this often between renews: a successor may take the lease over
 * once Redis sees that connection close, TOR_LEASE_TAKEOVER_GRACE_MS
 * before it leads; the leader hands messages over only while it hears
 * Redis on it (tor_elector_heard). */
#define WATCH_MS		TOR_LEASE_WATCH_MS
/* With ha.fast_failover a follower tries at least this often. */
#define FAST_RETRY_MS		100
/* A retired elector (released) has nothing left to do. */
#define RETIRED_DELAY_MS	60000

static const char *const state_names[] = {
	[TOR_FOLLOWER] = "follower",
	[TOR_CANDIDATE] = "candidate",
	[TOR_LEADER] = "leader",
	[TOR_STEPPING_DOWN] = "stepping_down",
};

struct redis_backend;

struct tor_elector {
	bool tried;             /* the start-up attempt was made */
	const struct tor_config *cfg;
	const struct tor_elector_ops *ops;
	void *ctx;
	struct redis_backend *backend;  /* tor_elector_new_redis only */

	int drift_ms;

	/*
	 * Read by the relay thread without the mutex.  Written only under it,
	 * in an order that keeps may_publish() honest: the deadline and the
	 * leadership's number are set before the state becomes LEADER, and
	 * the deadline is cleared before it stops being LEADER.
	 */
	_Atomic int state;
	_Atomic uint64_t token;
	_Atomic int64_t deadline;
	_Atomic uint64_t failovers;
	_Atomic uint64_t leadership;    /* number of the last one granted */
	/* When the last round trip answered on the lease's connection was
	 * sent (the lease clock), for tor_elector_heard. */
	_Atomic int64_t heard_sent;

	/* Set from any thread (tor_elector_set_acquire, tor_elector_wake). */
	_Atomic int acquire_mode;
	_Atomic bool woken;             /* a hand-off wake-up came */

	/* Guarded by mu. */
	pthread_mutex_t mu;
	pthread_cond_t wake;            /* transitions signal it (take) */
	uint64_t gen;                   /* bumped by every transition */
	bool retired;                   /* released: never competes again */
	int64_t hold_until;             /* no competing before (lease clock) */
	int64_t next_try;               /* a follower's next attempt (lease
					   clock; 0: not drawn yet) */
	int64_t free_since;             /* TAKEOVER_ONLY: the lease was seen
					   free since (lease clock; 0: not) */
	/* A take-over won but kept back until not_before (token 0: none). */
	uint64_t pending_token;
	int64_t pending_sent, pending_not_before;
	int64_t renew_sent;             /* when the last renew was sent */
	int64_t ping_sent;              /* when the last PING was sent */
	uint64_t granted_token;         /* the last leadership's token */
	uint64_t taken, ended;          /* the last leadership taken, ended */
	char last_poll_reason[2][64];   /* see transition() */

	/* Touched only by the thread that steps. */
	uint64_t rng;
	bool redis_failing;             /* in a streak of Redis errors */
	bool woken_attempt;             /* this attempt follows a wake-up */

	struct tor_log_group *log_group;        /* NULL: the process's */

	/* Told at every move out of LEADER, from whichever thread makes it. */
	void (*on_end)(void *);
	void *on_end_ctx;
	/* The driver's: the next step is due now. */
	void (*waker)(void *);
	void *waker_ctx;
};

const char *
tor_elector_state_name(enum tor_elector_state state)
{
	if ((unsigned)state >= sizeof(state_names) / sizeof(state_names[0]))
		return "unknown";
	return state_names[state];
}

/* Tells the driver that the next step is due now.  Called with mu held. */
static void
kick(struct tor_elector *el)
{
	if (el->waker != NULL)
		el->waker(el->waker_ctx);
}

/*
 * The one place the state changes.  Called with mu held.  Every transition
 * is logged exactly once; the two edges a follower walks every retry_ms while
 * another replica leads (follower -> candidate -> follower) go to debug when
 * their reason repeats, so a healthy standby does not write ten lines a
 * second, yet the first of each streak is seen at info.
 */
static void
transition(struct tor_elector *el, enum tor_elector_state to,
    const char *reason)
{
	enum tor_elector_state from = atomic_load(&el->state);
	enum tor_log_level level = TOR_LOG_INFO;
	char *last = NULL;

	if (from == TOR_FOLLOWER && to == TOR_CANDIDATE)
		last = el->last_poll_reason[0];
	else if (from == TOR_CANDIDATE && to == TOR_FOLLOWER)
		last = el->last_poll_reason[1];
	if (last != NULL) {
		if (strncmp(last, reason, sizeof(el->last_poll_reason[0]) - 1)
		    == 0)
			level = TOR_LOG_DEBUG;
		snprintf(last, sizeof(el->last_poll_reason[0]), "%s", reason);
	} else {
		/* Anything else happened: the next poll streak is news. */
		memset(el->last_poll_reason, 0, sizeof(el->last_poll_reason));
	}

	if (to == TOR_FOLLOWER)
		el->next_try = 0;       /* drawn afresh at the first step */
	if (from == TOR_LEADER) {
		atomic_store(&el->deadline, 0);
		/* Before anything else: what the producer holds must not go
		 * out past the leadership (it is purged there). */
		if (el->on_end != NULL)
			el->on_end(el->on_end_ctx);
	}
	if (to == TOR_FOLLOWER)
		atomic_store(&el->token, 0);
	if (to == TOR_LEADER) {
		if (atomic_fetch_add(&el->leadership, 1) > 0)
			atomic_fetch_add(&el->failovers, 1);
		el->granted_token = atomic_load(&el->token);
		/* A wake-up heard while competing is spent. */
		atomic_store(&el->woken, false);
		/* Before the log line, so that line carries the new token. */
		tor_log_set_token(atomic_load(&el->token));
	}
	atomic_store(&el->state, to);
	el->gen++;
	pthread_cond_broadcast(&el->wake);
	kick(el);

	tor_log(level, "elector", "%s -> %s: %s", tor_elector_state_name(from),
	    tor_elector_state_name(to), reason);
}

/* A Redis error in a streak is logged once, at its start; the end of the
 * streak once too. */
static void
redis_failed(struct tor_elector *el, const char *what, const tor_err *err)
{
	if (el->redis_failing)
		return;
	el->redis_failing = true;
	log_warn("elector", "%s: %s (retrying quietly until Redis answers)",
	    what, err->msg);
}

static void
redis_answered(struct tor_elector *el)
{
	if (!el->redis_failing)
		return;
	el->redis_failing = false;
	log_info("elector", "Redis answers again");
}

/* xorshift64*: jitter needs spread, not quality, and must not share
 * rand()'s hidden state with anyone. */
static uint64_t
next_random(struct tor_elector *el)
{
	el->rng ^= el->rng >> 12;
	el->rng ^= el->rng << 25;
	el->rng ^= el->rng >> 27;
	return el->rng * 0x2545f4914f6cdd1dULL;
}

/* A follower's period before jitter. */
static int
retry_ms(const struct tor_config *cfg)
{
	/* A dead leader's lease is free the moment Redis drops its client:
	 * the sooner a follower looks, the shorter the failover. */
	if (cfg->ha.fast_failover && cfg->ha.retry_ms > FAST_RETRY_MS)
		return FAST_RETRY_MS;
	return cfg->ha.retry_ms;
}

/*
 * retry_ms scaled by a factor in [0.8, 1.2): followers that started together
 * (a deploy, a Redis restart) spread out instead of hammering Redis in step.
 */
static int
jittered_retry_ms(struct tor_elector *el)
{
	int retry = retry_ms(el->cfg);
	int low = retry - retry / 5;
	int span = retry / 5 * 2;

	if (span <= 0)
		return retry;
	return low + (int)(next_random(el) % (uint64_t)span);
}

/* Seeded from instance and pid so that replicas on one host, or replicas
 * started by one script at the same instant, still draw apart. */
static uint64_t
seed_random(const struct tor_config *cfg)
{
	uint64_t h = 0xcbf29ce484222325ULL;     /* FNV-1a */
	const char *s = cfg->instance != NULL ? cfg->instance : "";

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	h ^= (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL;
	return h != 0 ? h : 1;
}

/*
 * FOLLOWER: compete when the retry period (jittered, drawn at the first
 * step after becoming a follower) is over, or at once when a hand-off
 * wake-up came; else say how long is left.  Nothing here waits.
 */
static int
step_follower(struct tor_elector *el)
{
	int64_t now;

	if (el->retired)
		return RETIRED_DELAY_MS;
	now = el->ops->now_ms(el->ctx);
	/* A leader that yielded lets a standby win alone for a while, and
	 * does not take the hand-off wake-up meant for it. */
	if (now < el->hold_until) {
		atomic_store(&el->woken, false);
		return (int)(el->hold_until - now);
	}
	if (atomic_load(&el->acquire_mode) == TOR_ACQUIRE_NONE) {
		atomic_store(&el->woken, false);
		return retry_ms(el->cfg);
	}
	if (!el->tried) {
		/* A replica that just started tries at once: nobody may hold
		 * the lease, and waiting would only delay the first message. */
		el->tried = true;
		transition(el, TOR_CANDIDATE, "start-up");
		return 0;
	}
	if (atomic_exchange(&el->woken, false)) {
		el->woken_attempt = true;
		transition(el, TOR_CANDIDATE, "hand-off wake-up");
		return 0;
	}
	if (el->next_try == 0)
		el->next_try = now + jittered_retry_ms(el);
	if (now < el->next_try)
		return (int)(el->next_try - now);
	transition(el, TOR_CANDIDATE, "retry");
	return 0;
}

/* Whether the leader watches its connection (see WATCH_MS). */
static bool
watching(const struct tor_elector *el)
{
	return el->cfg->ha.fast_failover && el->ops->connection_lost != NULL;
}

/* ms until the leader's next renew, its deadline or its next look at (and
 * PING on) the connection, whichever comes first. */
static int
leader_delay(struct tor_elector *el, int64_t now)
{
	int64_t next = el->renew_sent + el->cfg->ha.renew_ms;
	int64_t deadline = atomic_load(&el->deadline);

	if (deadline < next)
		next = deadline;
	if (watching(el) && now + WATCH_MS < next)
		next = now + WATCH_MS;
	if (next <= now)
		return 0;
	return next - now > INT32_MAX ? INT32_MAX : (int)(next - now);
}

/* Gives back a lease this replica holds but will not use, with mu dropped
 * (the compare-and-DEL blocks on Redis). */
static void
give_back(struct tor_elector *el, uint64_t token)
{
	tor_err err;

	pthread_mutex_unlock(&el->mu);
	err.msg[0] = '\0';
	if (el->ops->release(el->ctx, token, &err) < 0)
		log_warn("elector", "cannot give back the lease (token %" PRIu64
		    "), it will expire: %s", token, err.msg);
	pthread_mutex_lock(&el->mu);
}

/*
 * A won lease becomes a leadership.  The deadline counts from the time the
 * request that won was sent: the PX expiry in Redis started later than
 * that, never earlier.  A lease whose deadline has passed already (the
 * process was paused, Redis stalled, a take-over's grace ran long) wins
 * nothing worth granting: it is given back and the replica competes again.
 */
static int
grant(struct tor_elector *el, uint64_t token, int64_t sent)
{
	int64_t deadline = sent + el->cfg->ha.lease_ms - el->drift_ms;
	int64_t now = el->ops->now_ms(el->ctx);
	char reason[128];

	if (now >= deadline) {
		snprintf(reason, sizeof(reason), "acquired the lease (token %"
		    PRIu64 ") %" PRId64 " ms after asking, past its deadline: "
		    "giving it back", token, now - sent);
		transition(el, TOR_FOLLOWER, reason);
		give_back(el, token);
		return 0;
	}
	atomic_store(&el->token, token);
	atomic_store(&el->deadline, deadline);
	atomic_store(&el->heard_sent, sent);
	el->renew_sent = sent;
	el->ping_sent = 0;
	snprintf(reason, sizeof(reason), "acquired the lease (token %" PRIu64
	    ")", token);
	transition(el, TOR_LEADER, reason);
	return leader_delay(el, now);
}

/* A take-over kept back for its grace: granted once not_before passed. */
static int
step_pending(struct tor_elector *el)
{
	int64_t now = el->ops->now_ms(el->ctx);
	uint64_t token = el->pending_token;

	if (now < el->pending_not_before)
		return (int)(el->pending_not_before - now);
	el->pending_token = 0;
	return grant(el, token, el->pending_sent);
}

/* Whether this attempt may take a free lease (see tor_elector_set_acquire). */
static bool
takeover_only(struct tor_elector *el, int64_t now)
{
	if (atomic_load(&el->acquire_mode) != TOR_ACQUIRE_TAKEOVER_ONLY)
		return false;
	return el->free_since == 0 || now - el->free_since <= el->cfg->ha.lease_ms;
}

/*
 * CANDIDATE: one acquire (or, for a take-over won already, its grace).  A
 * take-over's grant waits for its not-before time as a due time of this
 * state: the relay sees no leadership until then.
 */
static int
step_candidate(struct tor_elector *el)
{
	uint64_t gen = el->gen, token = 0;
	int64_t sent = 0, not_before = 0, now;
	bool only;
	tor_err err;
	int rc;

	if (el->pending_token != 0)
		return step_pending(el);
	now = el->ops->now_ms(el->ctx);
	if (atomic_load(&el->acquire_mode) == TOR_ACQUIRE_NONE) {
		transition(el, TOR_FOLLOWER, "not competing (acquire mode none)");
		return 0;
	}
	/* A lease just given back is taken whatever the share: a balance
	 * hand-over names its taker (handoff_to), and a replica stopping
	 * or yielding wants its group led at once. */
	only = !el->woken_attempt && takeover_only(el, now);
	el->woken_attempt = false;
	pthread_mutex_unlock(&el->mu);
	err.msg[0] = '\0';
	rc = el->ops->acquire(el->ctx, only, &token, &sent, &not_before, &err);
	pthread_mutex_lock(&el->mu);

	if (rc < 0)
		redis_failed(el, "cannot acquire the lease", &err);
	else
		redis_answered(el);

	if (gen != el->gen) {
		/* Released while the acquire was in flight.  A lease won now
		 * would only keep the others waiting for it to expire. */
		if (rc == 1) {
			log_info("elector", "acquired the lease (token %" PRIu64
			    ") during shutdown: giving it back", token);
			give_back(el, token);
		}
		return 0;
	}

	switch (rc) {
	case 1:
		el->free_since = 0;
		if (not_before > el->ops->now_ms(el->ctx)) {
			el->pending_token = token;
			el->pending_sent = sent;
			el->pending_not_before = not_before;
			return step_pending(el);
		}
		return grant(el, token, sent);
	case TOR_LEASE_FREE:
		if (el->free_since == 0)
			el->free_since = now;
		transition(el, TOR_FOLLOWER, "lease free: left to a replica "
		    "below its share (acquire mode takeover_only)");
		return 0;
	case 0:
		el->free_since = 0;
		transition(el, TOR_FOLLOWER, "lease held by another replica");
		return 0;
	default:
		transition(el, TOR_FOLLOWER, "Redis error");
		return 0;
	}
}

/*
 * How long a leader waits for the answer to a renew or a PING sent at t0:
 * until its local deadline, not redis.timeout_ms.  An answer that comes
 * before the deadline is as good as a quick one (the relay pauses while a
 * PING is unanswered), while a command that times out drops the connection,
 * which Redis sees close, and a standby takes the lease over at once
 * (ha.fast_failover): one late reply on a lossy link (TCP resends a lost
 * packet after 200 ms, 600 ms for two in a row) would move the leadership.
 */
static int
wait_ms(struct tor_elector *el, int64_t t0)
{
	int64_t left = atomic_load(&el->deadline) - t0;

	return left < 1 ? 1 : left > INT32_MAX ? INT32_MAX : (int)left;
}

/*
 * A leader's PING on the lease's connection (ha.fast_failover), with mu
 * dropped: an answer means Redis had not closed that connection when the
 * PING was sent, so no successor leads within the grace of that time
 * (tor_elector_heard).  A connection found gone, or failing, is the lost
 * connection the next step steps down on.
 */
static int
ping(struct tor_elector *el)
{
	uint64_t gen = el->gen;
	int64_t t0;
	tor_err err;
	int rc;

	pthread_mutex_unlock(&el->mu);
	err.msg[0] = '\0';
	t0 = el->ops->now_ms(el->ctx);
	rc = el->ops->ping(el->ctx, wait_ms(el, t0), &err);
	pthread_mutex_lock(&el->mu);
	el->ping_sent = t0;
	if (rc < 0)
		redis_failed(el, "no answer to a PING on the lease's connection",
		    &err);
	else if (rc == 1)
		redis_answered(el);
	if (gen != el->gen || rc != 1)
		return 0;
	atomic_store(&el->heard_sent, t0);
	return leader_delay(el, el->ops->now_ms(el->ctx));
}

/*
 * LEADER: step down at the local deadline without asking Redis; otherwise
 * renew every renew_ms counted from the last renew sent, and with
 * ha.fast_failover ping between renews.
 */
static int
step_leader(struct tor_elector *el)
{
	uint64_t gen, token;
	int64_t now, t0;
	tor_err err;
	int rc;

	now = el->ops->now_ms(el->ctx);
	if (now >= atomic_load(&el->deadline)) {
		transition(el, TOR_STEPPING_DOWN,
		    "local deadline passed: lease may have expired");
		return STEPPING_DOWN_WAIT_MS;
	}
	/* Redis saw the connection close, as it would a dead process's: a
	 * follower may take the lease now (ha.fast_failover). */
	if (watching(el) && el->ops->connection_lost(el->ctx)) {
		transition(el, TOR_STEPPING_DOWN, "Redis connection lost: the "
		    "lease may be taken over at once");
		return STEPPING_DOWN_WAIT_MS;
	}
	if (now < el->renew_sent + el->cfg->ha.renew_ms) {
		if (watching(el) && el->ops->ping != NULL &&
		    now >= el->ping_sent + WATCH_MS)
			return ping(el);
		return leader_delay(el, now);
	}

	gen = el->gen;
	token = atomic_load(&el->token);
	pthread_mutex_unlock(&el->mu);
	err.msg[0] = '\0';
	/* Read the clock again, as late as possible before sending. */
	t0 = el->ops->now_ms(el->ctx);
	rc = el->ops->renew(el->ctx, token, wait_ms(el, t0), &err);
	pthread_mutex_lock(&el->mu);

	if (rc < 0)
		redis_failed(el, "cannot renew the lease", &err);
	else
		redis_answered(el);
	if (gen != el->gen)
		return 0;       /* resigned or released meanwhile: that wins */

	/* A failed renew counts as sent: the next try is renew_ms later, and
	 * the deadline stands where the last success put it. */
	el->renew_sent = t0;
	switch (rc) {
	case 1:
		atomic_store(&el->deadline,
		    t0 + el->cfg->ha.lease_ms - el->drift_ms);
		atomic_store(&el->heard_sent, t0);
		break;
	case 0:
		transition(el, TOR_STEPPING_DOWN, "lease lost: held by another "
		    "replica or broken by an operator");
		return STEPPING_DOWN_WAIT_MS;
	default:
		break;
	}
	return leader_delay(el, el->ops->now_ms(el->ctx));
}

int
tor_elector_step(struct tor_elector *el)
{
	int delay;

	pthread_mutex_lock(&el->mu);
	switch (atomic_load(&el->state)) {
	case TOR_FOLLOWER:
		delay = step_follower(el);
		break;
	case TOR_CANDIDATE:
		delay = step_candidate(el);
		break;
	case TOR_LEADER:
		delay = step_leader(el);
		break;
	default:
		/* The relay's session is stopping; tor_elector_end ends it. */
		delay = STEPPING_DOWN_WAIT_MS;
		break;
	}
	pthread_mutex_unlock(&el->mu);
	return delay;
}

struct tor_elector *
tor_elector_new(const struct tor_config *cfg, const struct tor_elector_ops *ops,
    void *ctx)
{
	struct tor_elector *el;
	pthread_condattr_t ca;

	if ((el = calloc(1, sizeof(*el))) == NULL)
		return NULL;
	el->cfg = cfg;
	el->ops = ops;
	el->ctx = ctx;
	/* The drift margin: see tor_config_drift_ms. */
	el->drift_ms = tor_config_drift_ms(cfg->ha.lease_ms);
	el->rng = seed_random(cfg);
	atomic_init(&el->state, TOR_FOLLOWER);
	atomic_init(&el->token, 0);
	atomic_init(&el->deadline, 0);
	atomic_init(&el->failovers, 0);
	atomic_init(&el->leadership, 0);
	atomic_init(&el->heard_sent, 0);
	pthread_mutex_init(&el->mu, NULL);
	/* The relay's wait in tor_elector_take is timed on CLOCK_MONOTONIC:
	 * glibc refuses CLOCK_BOOTTIME here (EINVAL), and the wall clock can
	 * be stepped. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&el->wake, &ca);
	pthread_condattr_destroy(&ca);
	return el;
}

void
tor_elector_set_log_group(struct tor_elector *el, struct tor_log_group *g)
{
	el->log_group = g;
}

struct tor_log_group *
tor_elector_log_group(const struct tor_elector *el)
{
	return el->log_group;
}

void
tor_elector_set_waker(struct tor_elector *el, void (*fn)(void *), void *ctx)
{
	pthread_mutex_lock(&el->mu);
	el->waker = fn;
	el->waker_ctx = ctx;
	pthread_mutex_unlock(&el->mu);
}

void
tor_elector_wake(struct tor_elector *el)
{
	atomic_store(&el->woken, true);
	pthread_mutex_lock(&el->mu);
	kick(el);
	pthread_mutex_unlock(&el->mu);
}

const struct tor_config *
tor_elector_config(const struct tor_elector *el)
{
	return el->cfg;
}

bool
tor_elector_on_redis(const struct tor_elector *el)
{
	return el->backend != NULL;
}

static const char *const mode_names[] = {
	[TOR_ACQUIRE_ANY] = "any",
	[TOR_ACQUIRE_TAKEOVER_ONLY] = "takeover_only",
	[TOR_ACQUIRE_NONE] = "none",
};

void
tor_elector_set_acquire(struct tor_elector *el, enum tor_acquire_mode m)
{
	int was = atomic_exchange(&el->acquire_mode, (int)m);

	if (was == (int)m)
		return;
	log_debug("elector", "acquire mode %s -> %s", mode_names[was],
	    mode_names[m]);
	pthread_mutex_lock(&el->mu);
	el->free_since = 0;
	kick(el);
	pthread_mutex_unlock(&el->mu);
}

enum tor_acquire_mode
tor_elector_acquire_mode(const struct tor_elector *el)
{
	return atomic_load(&el->acquire_mode);
}

enum tor_elector_state
tor_elector_state(const struct tor_elector *el)
{
	return atomic_load(&el->state);
}

uint64_t
tor_elector_token(const struct tor_elector *el)
{
	return atomic_load(&el->token);
}

int64_t
tor_elector_deadline(const struct tor_elector *el)
{
	return atomic_load(&el->deadline);
}

uint64_t
tor_elector_failovers(const struct tor_elector *el)
{
	return atomic_load(&el->failovers);
}

int
tor_elector_take(struct tor_elector *el, int timeout_ms,
    struct tor_leadership *l)
{
	struct timespec until = tor_cond_deadline(timeout_ms);
	int rc = 0;

	pthread_mutex_lock(&el->mu);
	/* Every transition wakes the waiters: wait on until this one's. */
	while (atomic_load(&el->leadership) == el->taken && timeout_ms > 0 &&
	    pthread_cond_timedwait(&el->wake, &el->mu, &until) != ETIMEDOUT)
		;
	if (atomic_load(&el->leadership) != el->taken) {
		el->taken = atomic_load(&el->leadership);
		l->id = el->taken;
		l->token = el->granted_token;
		rc = 1;
	}
	pthread_mutex_unlock(&el->mu);
	return rc;
}

/* The state is read before the number and the deadline: a leadership that
 * ended in between shows a deadline of 0, so the answer is never "yes" on
 * a stale triple; and no other leadership is granted while the relay still
 * holds id (it has not ended it), so a current number is id's own. */
bool
tor_elector_may_publish(const struct tor_elector *el, uint64_t id)
{
	if (atomic_load(&el->state) != TOR_LEADER ||
	    atomic_load(&el->leadership) != id)
		return false;
	return el->ops->now_ms(el->ctx) < atomic_load(&el->deadline);
}

/* Without pings (a backend that cannot) only the lease's own round trips
 * would count, and those come a renew_ms apart: nothing to go by. */
bool
tor_elector_heard(const struct tor_elector *el)
{
	if (!watching(el) || el->ops->ping == NULL)
		return true;
	return el->ops->now_ms(el->ctx) <
	    atomic_load(&el->heard_sent) + TOR_LEASE_HEARD_MS;
}

void
tor_elector_resign(struct tor_elector *el, uint64_t id, const char *reason)
{
	pthread_mutex_lock(&el->mu);
	if (atomic_load(&el->state) == TOR_LEADER &&
	    atomic_load(&el->leadership) == id)
		transition(el, TOR_STEPPING_DOWN,
		    reason != NULL ? reason : "resigned");
	pthread_mutex_unlock(&el->mu);
}

void
tor_elector_hold_off(struct tor_elector *el, int ms)
{
	pthread_mutex_lock(&el->mu);
	el->hold_until = el->ops->now_ms(el->ctx) + ms;
	kick(el);
	pthread_mutex_unlock(&el->mu);
}

void
tor_elector_on_leadership_end(struct tor_elector *el, void (*fn)(void *),
    void *ctx)
{
	pthread_mutex_lock(&el->mu);
	el->on_end = fn;
	el->on_end_ctx = ctx;
	pthread_mutex_unlock(&el->mu);
}

/*
 * The relay's session for leadership id is over.  A leader (its deadline
 * passed before the driver noticed, or the relay gave up) steps
 * down, and then, like one stepping down already, becomes a follower; the
 * lease, when it is still ours, is given back with a hand-off wake-up, so
 * that a successor takes over now rather than at its expiry.
 */
void
tor_elector_end(struct tor_elector *el, uint64_t id, const char *reason)
{
	uint64_t token = 0;
	bool retired;
	tor_err err;
	int rc;

	pthread_mutex_lock(&el->mu);
	if (id == 0 || id != atomic_load(&el->leadership) || id == el->ended) {
		pthread_mutex_unlock(&el->mu);
		log_debug("elector", "leadership %" PRIu64 " is not the current "
		    "one, or ended already: nothing to end", id);
		return;
	}
	el->ended = id;
	retired = el->retired;
	if (atomic_load(&el->state) == TOR_LEADER)
		transition(el, TOR_STEPPING_DOWN,
		    el->ops->now_ms(el->ctx) >= atomic_load(&el->deadline) ?
		    "local deadline passed: lease may have expired" :
		    reason != NULL ? reason : "the relay ended the leadership");
	if (atomic_load(&el->state) == TOR_STEPPING_DOWN) {
		token = atomic_load(&el->token);
		transition(el, TOR_FOLLOWER, "relay stopped publishing");
	}
	pthread_mutex_unlock(&el->mu);
	if (token == 0 || retired)
		return;
	err.msg[0] = '\0';
	rc = el->ops->release(el->ctx, token, &err);
	if (rc == 1)
		log_info("elector", "gave the lease (token %" PRIu64 ") back",
		    token);
	else if (rc < 0)
		log_warn("elector", "cannot give the lease (token %" PRIu64 ") "
		    "back, it will expire: %s", token, err.msg);
}

/*
 * Ends the current leadership (or a take-over kept back for its grace) and
 * returns the token of the lease to give back (0: none).  Called with mu
 * held.  The state changes first, under the mutex, so publishing stops and
 * the driver backs off at once; the compare-and-DEL then runs with the
 * mutex dropped, like every other call that can block on Redis.
 */
static uint64_t
stop_competing(struct tor_elector *el, const char *released,
    const char *stopped)
{
	enum tor_elector_state state = atomic_load(&el->state);
	uint64_t token = 0;

	el->ended = atomic_load(&el->leadership);
	if (state == TOR_LEADER || state == TOR_STEPPING_DOWN)
		token = atomic_load(&el->token);
	else if (state == TOR_CANDIDATE)
		token = el->pending_token;
	el->pending_token = 0;
	if (token != 0)
		transition(el, TOR_FOLLOWER, released);
	else if (state != TOR_FOLLOWER)
		transition(el, TOR_FOLLOWER, stopped);
	else
		el->gen++;      /* a step in flight must not lead anywhere */
	return token;
}

/* The compare-and-DEL of stop_competing's token, with mu dropped. */
static int
release_token(struct tor_elector *el, uint64_t token, tor_err *err)
{
	int rc;

	if (token == 0)
		return 0;
	rc = el->ops->release(el->ctx, token, err);
	if (rc < 0)
		return tor_err_prefix(err, "elector: release lease (token %"
		    PRIu64 "), it will expire by itself: ", token);
	if (rc == 0)
		log_warn("elector", "the lease (token %" PRIu64 ") was no "
		    "longer ours at release", token);
	return 0;
}

int
tor_elector_release(struct tor_elector *el, tor_err *err)
{
	uint64_t token;

	pthread_mutex_lock(&el->mu);
	if (el->retired) {
		pthread_mutex_unlock(&el->mu);
		return 0;
	}
	el->retired = true;
	token = stop_competing(el, "released the lease: clean shutdown",
	    "stopped competing: clean shutdown");
	pthread_mutex_unlock(&el->mu);
	return release_token(el, token, err);
}

int
tor_elector_hand_over(struct tor_elector *el, int hold_ms, tor_err *err)
{
	uint64_t token;

	pthread_mutex_lock(&el->mu);
	if (el->retired) {
		pthread_mutex_unlock(&el->mu);
		return 0;
	}
	el->hold_until = el->ops->now_ms(el->ctx) + hold_ms;
	atomic_store(&el->woken, false);
	token = stop_competing(el, "handed the lease over",
	    "handing over: not competing for now");
	pthread_mutex_unlock(&el->mu);
	return release_token(el, token, err);
}

/*
 * The real backend: tor/lease.h on a connection of the elector's own.
 *
 * The lease connection (acquire, renew, release, and the one watched for
 * fast failover) keeps redis.timeout_ms, which the configuration bounds
 * against lease_ms.  The driver thread and the relay thread (end,
 * release) both use it, and a hiredis context must not be shared, so every
 * command takes the io mutex.
 */
struct redis_backend {
	const struct tor_config *cfg;
	struct tor_redis *lease;
	pthread_mutex_t io;
	/* tor_redis_connection of the lease's connection at the last acquire
	 * or renew that recorded it in Redis: a connection made since is not
	 * the one a successor looks for. */
	uint64_t recorded;
};

static int
redis_acquire(void *ctx, bool takeover_only, uint64_t *token,
    int64_t *sent_ms, int64_t *not_before_ms, tor_err *err)
{
	struct redis_backend *b = ctx;
	int rc;

	pthread_mutex_lock(&b->io);
	rc = tor_lease_acquire(b->lease, b->cfg, takeover_only, token, sent_ms,
	    not_before_ms, err);
	if (rc == 1)
		b->recorded = tor_redis_connection(b->lease);
	pthread_mutex_unlock(&b->io);
	return rc;
}

static int
redis_renew(void *ctx, uint64_t token, int wait_ms, tor_err *err)
{
	struct redis_backend *b = ctx;
	int rc;

	pthread_mutex_lock(&b->io);
	tor_redis_set_wait(b->lease, wait_ms);
	rc = tor_lease_renew(b->lease, b->cfg, token, err);
	tor_redis_set_wait(b->lease, 0);
	if (rc == 1)
		b->recorded = tor_redis_connection(b->lease);
	pthread_mutex_unlock(&b->io);
	return rc;
}

static int
redis_release(void *ctx, uint64_t token, tor_err *err)
{
	struct redis_backend *b = ctx;
	int rc;

	pthread_mutex_lock(&b->io);
	rc = tor_lease_release(b->lease, b->cfg, token, err);
	pthread_mutex_unlock(&b->io);
	return rc;
}

static int64_t
lease_clock_ms(void *ctx)
{
	(void)ctx;
	return tor_mono_ms();
}

/* Gone, or replaced since the lease recorded it.  Called with io held. */
static bool
recorded_lost(struct redis_backend *b)
{
	return tor_redis_lost(b->lease) ||
	    tor_redis_connection(b->lease) != b->recorded;
}

/* Skipped while another thread uses the connection (a release): that
 * command will tell. */
static bool
redis_connection_lost(void *ctx)
{
	struct redis_backend *b = ctx;
	bool lost;

	if (pthread_mutex_trylock(&b->io) != 0)
		return false;
	lost = recorded_lost(b);
	pthread_mutex_unlock(&b->io);
	return lost;
}

static int
redis_ping(void *ctx, int wait_ms, tor_err *err)
{
	struct redis_backend *b = ctx;
	int rc = 0;

	pthread_mutex_lock(&b->io);
	if (!recorded_lost(b)) {
		tor_redis_set_wait(b->lease, wait_ms);
		rc = tor_redis_ping(b->lease, err);
		tor_redis_set_wait(b->lease, 0);
	}
	pthread_mutex_unlock(&b->io);
	return rc;
}

static const struct tor_elector_ops redis_ops = {
	.acquire = redis_acquire,
	.renew = redis_renew,
	.release = redis_release,
	.now_ms = lease_clock_ms,
	.connection_lost = redis_connection_lost,
	.ping = redis_ping,
};

struct tor_elector *
tor_elector_new_redis(const struct tor_config *cfg, tor_err *err)
{
	struct redis_backend *b;
	struct tor_elector *el;

	if ((b = calloc(1, sizeof(*b))) == NULL)
		goto nomem;
	b->cfg = cfg;
	pthread_mutex_init(&b->io, NULL);
	if ((b->lease = tor_redis_new(cfg)) == NULL)
		goto nomem;
	if ((el = tor_elector_new(cfg, &redis_ops, b)) == NULL)
		goto nomem;
	el->backend = b;
	return el;

nomem:
	if (b != NULL) {
		tor_redis_free(b->lease);
		pthread_mutex_destroy(&b->io);
		free(b);
	}
	tor_err_format(err, "elector: out of memory");
	return NULL;
}

void
tor_elector_free(struct tor_elector *el)
{
	if (el == NULL)
		return;
	if (el->backend != NULL) {
		tor_redis_free(el->backend->lease);
		pthread_mutex_destroy(&el->backend->io);
		free(el->backend);
	}
	pthread_cond_destroy(&el->wake);
	pthread_mutex_destroy(&el->mu);
	free(el);
}
