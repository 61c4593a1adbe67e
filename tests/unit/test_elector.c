/*
 * The elector's state machine, driven step by step with a fake Redis and a
 * fake clock: every transition, the deadline arithmetic (counted from the
 * time a request was sent, not answered), the handshake with the relay
 * (every leadership taken once and ended once, by number, however short),
 * and the races the relay thread can cause (a resign, an end or a release
 * while a Redis call is in flight) made deterministic.  The fake's calls
 * run with the elector's mutex dropped, so a hook that calls back into the
 * elector from inside one would deadlock if the elector held it.  The
 * acquire modes, a take-over's grace kept as a due time (not a sleep), the
 * hand-off wake-up flag and the hand-over come next; the last tests run
 * the real driver thread (tor/electors.h), one elector or several, and read
 * the real lease clock in a time namespace.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "tor/clock.h"
#include "tor/elector.h"
#include "tor/electors.h"
#include "tor/lease.h"

#include "alloc_probe.h"

#define LEASE_MS	3000
#define RENEW_MS	1000
#define RETRY_MS	200
#define DRIFT_MS	300     /* max(LEASE_MS / 10, 20) */

struct fake {
	int64_t now;
	bool real_clock;

	int acquire_rc;
	uint64_t acquire_token;
	int64_t acquire_prelude_ms;     /* before the script is sent */
	int64_t acquire_takes_ms;       /* from the send to the reply */
	int acquire_sleeps_ms;          /* real time (a slow Redis) */
	int64_t acquire_grace_ms;       /* a take-over: not before reply+this */
	bool lease_free;                /* takeover_only finds it free */
	bool acquire_only;              /* the last call's takeover_only */
	int acquire_calls;

	int renew_rc;
	int64_t renew_takes_ms;
	int renew_calls;
	uint64_t renew_token;
	int64_t renew_sent_at;

	int release_rc;
	int release_calls;
	uint64_t release_token;

	bool lost;              /* the connection is gone */
	int lost_calls;

	int ping_rc;
	int64_t ping_takes_ms;
	int ping_calls;
	int ping_wait_ms;
	int renew_wait_ms;

	/* Called from inside acquire or renew, once, then cleared. */
	void (*during)(struct fake *);
	struct tor_elector *el;
};

static int64_t
fake_now(void *ctx)
{
	struct fake *f = ctx;
	struct timespec ts;

	if (!f->real_clock)
		return f->now;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
run_hook(struct fake *f)
{
	void (*during)(struct fake *) = f->during;

	if (during != NULL) {
		f->during = NULL;
		during(f);
	}
}

static int
fake_acquire(void *ctx, bool takeover_only, uint64_t *token, int64_t *sent_ms,
    int64_t *not_before_ms, tor_err *err)
{
	struct fake *f = ctx;

	f->acquire_calls++;
	f->acquire_only = takeover_only;
	f->now += f->acquire_prelude_ms;        /* a reconnect, say */
	*sent_ms = fake_now(f);
	f->now += f->acquire_takes_ms;
	if (f->acquire_sleeps_ms > 0)
		nanosleep(&(struct timespec){ 0, f->acquire_sleeps_ms *
		    1000000L }, NULL);
	run_hook(f);
	*not_before_ms = f->acquire_grace_ms > 0 ?
	    fake_now(f) + f->acquire_grace_ms : 0;
	if (takeover_only && f->lease_free)
		return TOR_LEASE_FREE;
	if (f->acquire_rc == 1)
		*token = f->acquire_token;
	if (f->acquire_rc < 0)
		tor_err_format(err, "redis 127.0.0.1:6379: connection refused");
	return f->acquire_rc;
}

static int
fake_renew(void *ctx, uint64_t token, int wait_ms, tor_err *err)
{
	struct fake *f = ctx;

	f->renew_calls++;
	f->renew_wait_ms = wait_ms;
	f->renew_token = token;
	f->renew_sent_at = f->now;
	f->now += f->renew_takes_ms;    /* a slow reply */
	run_hook(f);
	if (f->renew_rc < 0)
		tor_err_format(err, "redis 127.0.0.1:6379: timeout");
	return f->renew_rc;
}

static int
fake_release(void *ctx, uint64_t token, tor_err *err)
{
	struct fake *f = ctx;

	f->release_calls++;
	f->release_token = token;
	if (f->release_rc < 0)
		tor_err_format(err, "redis 127.0.0.1:6379: connection refused");
	return f->release_rc;
}

static bool
fake_lost(void *ctx)
{
	struct fake *f = ctx;

	f->lost_calls++;
	return f->lost;
}

static int
fake_ping(void *ctx, int wait_ms, tor_err *err)
{
	struct fake *f = ctx;

	f->ping_calls++;
	f->ping_wait_ms = wait_ms;
	f->now += f->ping_takes_ms;
	if (f->ping_rc < 0)
		tor_err_format(err, "redis 127.0.0.1:6379: timeout");
	return f->ping_rc;
}

static const struct tor_elector_ops fake_ops = {
	.acquire = fake_acquire,
	.renew = fake_renew,
	.release = fake_release,
	.now_ms = fake_now,
	.connection_lost = fake_lost,
	.ping = fake_ping,
};

struct fixture {
	struct tor_config cfg;
	struct fake fake;
	struct tor_elector *el;
	struct tor_leadership l;        /* the last one the "relay" took */
};

static int
setup(void **state)
{
	static struct fixture fx;

	memset(&fx, 0, sizeof(fx));
	fx.cfg.instance = "test-1";
	fx.cfg.group = "default";
	fx.cfg.redis.timeout_ms = 500;
	fx.cfg.ha.lease_ms = LEASE_MS;
	fx.cfg.ha.renew_ms = RENEW_MS;
	fx.cfg.ha.retry_ms = RETRY_MS;
	fx.fake.now = 100000;
	fx.fake.acquire_rc = 1;
	fx.fake.acquire_token = 7;
	fx.fake.renew_rc = 1;
	fx.fake.release_rc = 1;
	fx.fake.ping_rc = 1;
	fx.el = tor_elector_new(&fx.cfg, &fake_ops, &fx.fake);
	assert_non_null(fx.el);
	fx.fake.el = fx.el;
	*state = &fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *fx = *state;

	tor_elector_free(fx->el);
	return 0;
}

/* A follower's steps as the driver makes them: each delay it asks for
 * passes (on the fake clock) until it competes.  Returns the ms waited. */
static int64_t
compete(struct fixture *fx)
{
	int64_t waited = 0;
	int delay;

	for (int i = 0; i < 4 &&
	    tor_elector_state(fx->el) == TOR_FOLLOWER; i++) {
		delay = tor_elector_step(fx->el);
		if (tor_elector_state(fx->el) == TOR_FOLLOWER) {
			fx->fake.now += delay;
			waited += delay;
		}
	}
	assert_int_equal(tor_elector_state(fx->el), TOR_CANDIDATE);
	return waited;
}

/* follower -> candidate -> leader, at fake time t0 of the acquire; the
 * relay takes the leadership (fx->l). */
static int64_t
become_leader(struct fixture *fx)
{
	int64_t t0;

	compete(fx);
	t0 = fx->fake.now;
	tor_elector_step(fx->el);
	assert_int_equal(tor_elector_state(fx->el), TOR_LEADER);
	assert_int_equal(tor_elector_take(fx->el, 0, &fx->l), 1);
	assert_int_equal(fx->l.token, fx->fake.acquire_token);
	return t0;
}

/* What the relay asks before it publishes. */
static bool
may_publish(struct fixture *fx)
{
	return tor_elector_may_publish(fx->el, fx->l.id);
}

static void
test_state_names(void **state)
{
	(void)state;
	assert_string_equal(tor_elector_state_name(TOR_FOLLOWER), "follower");
	assert_string_equal(tor_elector_state_name(TOR_CANDIDATE), "candidate");
	assert_string_equal(tor_elector_state_name(TOR_LEADER), "leader");
	assert_string_equal(tor_elector_state_name(TOR_STEPPING_DOWN),
	    "stepping_down");
}

static void
test_starts_as_follower(void **state)
{
	struct fixture *fx = *state;

	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
	assert_int_equal(tor_elector_token(fx->el), 0);
	assert_int_equal(tor_elector_deadline(fx->el), 0);
	assert_false(may_publish(fx));
	assert_int_equal(tor_elector_failovers(fx->el), 0);
}

static void
test_follower_waits_jittered_then_becomes_candidate(void **state)
{
	struct fixture *fx = *state;
	int lowest = RETRY_MS, highest = 0;

	fx->fake.acquire_rc = 0;
	/* A replica that just started tries at once, without waiting. */
	assert_int_equal(tor_elector_step(fx->el), 0);
	assert_int_equal(tor_elector_state(fx->el), TOR_CANDIDATE);
	tor_elector_step(fx->el);
	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
	assert_int_equal(fx->fake.acquire_calls, 1);
	for (int i = 0; i < 200; i++) {
		int delay = tor_elector_step(fx->el);

		/* The period is a due time, not a wait: asked again before
		 * it is over, the step says what is left. */
		assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
		assert_true(delay >= RETRY_MS * 8 / 10);
		assert_true(delay < RETRY_MS * 12 / 10);
		fx->fake.now += delay / 2;
		assert_int_equal(tor_elector_step(fx->el), delay - delay / 2);
		assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
		fx->fake.now += delay - delay / 2;
		assert_int_equal(tor_elector_step(fx->el), 0);
		assert_int_equal(tor_elector_state(fx->el), TOR_CANDIDATE);
		if (delay < lowest)
			lowest = delay;
		if (delay > highest)
			highest = delay;
		tor_elector_step(fx->el);
		assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
	}
	/* Jitter, not a constant. */
	assert_true(lowest < highest);
	assert_int_equal(fx->fake.acquire_calls, 201);
}

/* The woken flag: a follower in its retry period competes at its next
 * step once a hand-off wake-up came, and only once per wake-up. */
static void
test_handoff_wakeup_makes_a_candidate(void **state)
{
	struct fixture *fx = *state;
	int delay;

	fx->fake.acquire_rc = 0;
	tor_elector_step(fx->el);               /* start-up */
	tor_elector_step(fx->el);               /* held */
	delay = tor_elector_step(fx->el);
	assert_true(delay >= RETRY_MS * 8 / 10);
	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
	tor_elector_wake(fx->el);
	assert_int_equal(tor_elector_step(fx->el), 0);
	assert_int_equal(tor_elector_state(fx->el), TOR_CANDIDATE);
	assert_int_equal(fx->fake.acquire_calls, 1);
	tor_elector_step(fx->el);               /* held again */
	assert_int_equal(fx->fake.acquire_calls, 2);
	assert_true(tor_elector_step(fx->el) > 0);
	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
}

static void
test_redis_down_while_following_still_competes(void **state)
{
	struct fixture *fx = *state;

	fx->fake.acquire_rc = -1;
	for (int i = 0; i < 5; i++) {
		compete(fx);
		tor_elector_step(fx->el);
		assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
	}
	assert_int_equal(fx->fake.acquire_calls, 5);
}

static void
test_candidate_acquires_with_deadline_from_send_time(void **state)
{
	struct fixture *fx = *state;
	int64_t t0;
	int delay;

	tor_elector_step(fx->el);
	t0 = fx->fake.now;
	fx->fake.acquire_takes_ms = 50;         /* the reply comes later */
	delay = tor_elector_step(fx->el);
	assert_int_equal(tor_elector_state(fx->el), TOR_LEADER);
	assert_int_equal(tor_elector_token(fx->el), 7);
	assert_int_equal(tor_elector_deadline(fx->el),
	    t0 + LEASE_MS - DRIFT_MS);
	assert_int_equal(tor_elector_take(fx->el, 0, &fx->l), 1);
	assert_true(may_publish(fx));
	/* Next renew renew_ms after the acquire was sent. */
	assert_int_equal(delay, RENEW_MS - 50);
	assert_int_equal(fx->fake.renew_calls, 0);
}

static void
test_drift_has_a_floor(void **state)
{
	struct fixture *fx = *state;
	struct tor_elector *el;
	int64_t t0;

	fx->cfg.ha.lease_ms = 150;              /* a tenth would be 15 ms */
	fx->cfg.ha.renew_ms = 50;
	el = tor_elector_new(&fx->cfg, &fake_ops, &fx->fake);
	tor_elector_step(el);
	t0 = fx->fake.now;
	tor_elector_step(el);
	assert_int_equal(tor_elector_state(el), TOR_LEADER);
	assert_int_equal(tor_elector_deadline(el), t0 + 150 - 20);
	tor_elector_free(el);
}

static void
test_acquire_held_by_another_makes_a_follower(void **state)
{
	struct fixture *fx = *state;

	fx->fake.acquire_rc = 0;
	tor_elector_step(fx->el);
	tor_elector_step(fx->el);
	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
	assert_int_equal(tor_elector_token(fx->el), 0);
	assert_false(may_publish(fx));
}

static void
test_acquire_error_makes_a_follower(void **state)
{
	struct fixture *fx = *state;

	fx->fake.acquire_rc = -1;
	tor_elector_step(fx->el);
	tor_elector_step(fx->el);
	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
	assert_int_equal(tor_elector_token(fx->el), 0);
	assert_false(may_publish(fx));
	/* And it keeps trying. */
	fx->fake.acquire_rc = 1;
	become_leader(fx);
}

static void
test_leader_renews_every_renew_ms_not_earlier(void **state)
{
	struct fixture *fx = *state;
	int64_t t0 = become_leader(fx);

	fx->fake.now = t0 + RENEW_MS - 1;
	assert_int_equal(tor_elector_step(fx->el), 1);
	assert_int_equal(fx->fake.renew_calls, 0);

	fx->fake.now = t0 + RENEW_MS;
	assert_int_equal(tor_elector_step(fx->el), RENEW_MS);
	assert_int_equal(fx->fake.renew_calls, 1);
	assert_int_equal(fx->fake.renew_token, 7);
	assert_int_equal(tor_elector_deadline(fx->el),
	    t0 + RENEW_MS + LEASE_MS - DRIFT_MS);

	/* Stepping again early changes nothing. */
	fx->fake.now = t0 + RENEW_MS + 300;
	assert_int_equal(tor_elector_step(fx->el), RENEW_MS - 300);
	assert_int_equal(fx->fake.renew_calls, 1);

	fx->fake.now = t0 + 2 * RENEW_MS;
	tor_elector_step(fx->el);
	assert_int_equal(fx->fake.renew_calls, 2);
	assert_int_equal(tor_elector_state(fx->el), TOR_LEADER);
}

static void
test_slow_renew_counts_from_send_time(void **state)
{
	struct fixture *fx = *state;
	int64_t t0 = become_leader(fx), sent;
	int delay;

	fx->fake.now = t0 + RENEW_MS;
	fx->fake.renew_takes_ms = 400;
	delay = tor_elector_step(fx->el);
	sent = fx->fake.renew_sent_at;
	assert_int_equal(sent, t0 + RENEW_MS);
	/* Its answer was waited for until the deadline the last one set. */
	assert_int_equal(fx->fake.renew_wait_ms, t0 + LEASE_MS - DRIFT_MS -
	    sent);
	assert_int_equal(fx->fake.now, sent + 400);
	assert_int_equal(tor_elector_deadline(fx->el),
	    sent + LEASE_MS - DRIFT_MS);
	/* The next renew is due renew_ms after the send, not the reply. */
	assert_int_equal(delay, RENEW_MS - 400);
}

static void
test_renew_lost_steps_down(void **state)
{
	struct fixture *fx = *state;
	int64_t t0 = become_leader(fx);
	int delay;

	fx->fake.now = t0 + RENEW_MS;
	fx->fake.renew_rc = 0;
	delay = tor_elector_step(fx->el);
	assert_int_equal(tor_elector_state(fx->el), TOR_STEPPING_DOWN);
	assert_true(delay > 0);
	assert_false(may_publish(fx));
	assert_int_equal(tor_elector_deadline(fx->el), 0);
	/* The token stays while the relay winds down. */
	assert_int_equal(tor_elector_token(fx->el), 7);
}

/* ha.fast_failover: between renews the leader looks at its connection
 * every few ms and steps down the moment it is gone (a successor may take
 * the lease at once); without it, the connection is not looked at. */
static void
test_lost_connection_steps_down_at_once(void **state)
{
	struct fixture *fx = *state;
	int64_t t0;
	int delay;

	fx->cfg.ha.fast_failover = true;
	t0 = become_leader(fx);
	fx->fake.now = t0 + 1;
	delay = tor_elector_step(fx->el);
	assert_true(delay > 0 && delay <= TOR_LEASE_WATCH_MS);
	assert_int_equal(fx->fake.lost_calls, 1);
	assert_int_equal(tor_elector_state(fx->el), TOR_LEADER);
	fx->fake.lost = true;
	fx->fake.now = t0 + 1 + delay;
	tor_elector_step(fx->el);
	assert_int_equal(tor_elector_state(fx->el), TOR_STEPPING_DOWN);
	assert_false(may_publish(fx));
	assert_int_equal(fx->fake.renew_calls, 0);
	/* The relay stops: the lease is given back (on a new connection). */
	tor_elector_end(fx->el, fx->l.id, "test");
	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
	assert_int_equal(fx->fake.release_calls, 1);
	assert_int_equal(fx->fake.release_token, 7);
}

/* ha.fast_failover: the leader pings between renews and hands messages
 * over only while a round trip sent within TOR_LEASE_HEARD_MS was
 * answered; unanswered, it pauses (still leading) until one is; a ping
 * that finds the connection gone leads to the step-down. */
static void
test_leader_pauses_when_redis_is_not_heard(void **state)
{
	struct fixture *fx = *state;
	int64_t t0;

	fx->cfg.ha.fast_failover = true;
	t0 = become_leader(fx);
	assert_true(tor_elector_heard(fx->el));         /* the acquire */
	fx->fake.now = t0 + TOR_LEASE_WATCH_MS;
	tor_elector_step(fx->el);
	assert_int_equal(fx->fake.ping_calls, 1);
	/* Its answer is waited for until the local deadline. */
	assert_int_equal(fx->fake.ping_wait_ms,
	    tor_elector_deadline(fx->el) - fx->fake.now);
	fx->fake.now = t0 + TOR_LEASE_WATCH_MS + TOR_LEASE_HEARD_MS - 1;
	assert_true(tor_elector_heard(fx->el));
	fx->fake.now++;
	assert_false(tor_elector_heard(fx->el));
	/* A ping sent now and answered late is heard from its sending. */
	fx->fake.ping_takes_ms = 100;
	t0 = fx->fake.now;
	tor_elector_step(fx->el);
	assert_int_equal(fx->fake.ping_calls, 2);
	assert_false(tor_elector_heard(fx->el));
	assert_true(may_publish(fx));                   /* paused, leading */
	fx->fake.now = t0 + TOR_LEASE_HEARD_MS - 1;
	assert_true(tor_elector_heard(fx->el));
	/* The ping finds the connection gone: the next step steps down. */
	fx->fake.ping_takes_ms = 0;
	fx->fake.now = t0 + 200;
	fx->fake.ping_rc = 0;
	tor_elector_step(fx->el);
	assert_false(tor_elector_heard(fx->el));
	fx->fake.lost = true;
	tor_elector_step(fx->el);
	assert_int_equal(tor_elector_state(fx->el), TOR_STEPPING_DOWN);
	assert_false(may_publish(fx));
}

/* Without ha.fast_failover no ping is sent and nothing pauses. */
static void
test_no_ping_without_fast_failover(void **state)
{
	struct fixture *fx = *state;
	int64_t t0;

	t0 = become_leader(fx);
	fx->fake.now = t0 + RENEW_MS / 2;
	tor_elector_step(fx->el);
	assert_int_equal(fx->fake.ping_calls, 0);
	assert_true(tor_elector_heard(fx->el));
}

/* With fast failover a follower looks at least every 100 ms (jittered),
 * whatever retry_ms says: a dead leader's lease is free at once. */
static void
test_fast_failover_follower_looks_often(void **state)
{
	struct fixture *fx = *state;

	fx->cfg.ha.fast_failover = true;
	fx->fake.acquire_rc = 0;
	tor_elector_step(fx->el);               /* start-up: candidate */
	tor_elector_step(fx->el);               /* held: follower */
	for (int i = 0; i < 20; i++) {
		int64_t waited = compete(fx);

		assert_true(waited >= 80 && waited < 120);
		tor_elector_step(fx->el);       /* held again */
	}
}

static void
test_connection_not_watched_without_fast_failover(void **state)
{
	struct fixture *fx = *state;
	int64_t t0 = become_leader(fx);

	fx->fake.lost = true;
	fx->fake.now = t0 + 1;
	assert_int_equal(tor_elector_step(fx->el), RENEW_MS - 1);
	assert_int_equal(fx->fake.lost_calls, 0);
	assert_int_equal(tor_elector_state(fx->el), TOR_LEADER);
}

static void
test_redis_silent_leader_steps_down_at_deadline(void **state)
{
	struct fixture *fx = *state;
	int64_t t0 = become_leader(fx), deadline = t0 + LEASE_MS - DRIFT_MS;
	int calls;

	fx->fake.renew_rc = -1;
	fx->fake.now = t0 + RENEW_MS;
	tor_elector_step(fx->el);
	fx->fake.now = t0 + 2 * RENEW_MS;
	tor_elector_step(fx->el);
	assert_int_equal(fx->fake.renew_calls, 2);
	assert_int_equal(tor_elector_state(fx->el), TOR_LEADER);
	/* Failed renews do not move the deadline. */
	assert_int_equal(tor_elector_deadline(fx->el), deadline);

	/* The step is due at the deadline, before the next renew. */
	assert_int_equal(tor_elector_step(fx->el),
	    deadline - (t0 + 2 * RENEW_MS));

	fx->fake.now = deadline - 1;
	assert_true(may_publish(fx));
	fx->fake.now = deadline;
	/* False exactly at the deadline, before the elector even steps. */
	assert_false(may_publish(fx));
	calls = fx->fake.renew_calls;
	tor_elector_step(fx->el);
	assert_int_equal(tor_elector_state(fx->el), TOR_STEPPING_DOWN);
	/* Without asking Redis. */
	assert_int_equal(fx->fake.renew_calls, calls);
}

static void
test_renew_error_then_success_extends(void **state)
{
	struct fixture *fx = *state;
	int64_t t0 = become_leader(fx);

	fx->fake.renew_rc = -1;
	fx->fake.now = t0 + RENEW_MS;
	tor_elector_step(fx->el);
	fx->fake.renew_rc = 1;
	fx->fake.now = t0 + 2 * RENEW_MS;
	tor_elector_step(fx->el);
	assert_int_equal(tor_elector_state(fx->el), TOR_LEADER);
	assert_int_equal(tor_elector_deadline(fx->el),
	    t0 + 2 * RENEW_MS + LEASE_MS - DRIFT_MS);
}

static void
test_resign_then_end(void **state)
{
	struct fixture *fx = *state;

	become_leader(fx);
	tor_elector_resign(fx->el, fx->l.id, "checkpoint write refused");
	assert_int_equal(tor_elector_state(fx->el), TOR_STEPPING_DOWN);
	assert_false(may_publish(fx));

	/* Stepping down waits for the relay's end, without Redis, and
	 * however long it takes. */
	for (int i = 0; i < 100; i++) {
		assert_true(tor_elector_step(fx->el) > 0);
		assert_int_equal(tor_elector_state(fx->el), TOR_STEPPING_DOWN);
		fx->fake.now += 1000;
	}
	assert_int_equal(fx->fake.renew_calls, 0);
	assert_int_equal(fx->fake.acquire_calls, 1);

	tor_elector_end(fx->el, fx->l.id, "test");
	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
	assert_int_equal(tor_elector_token(fx->el), 0);
	/* The lease it still held goes back at once (compare-and-delete, and
	 * a hand-off wake-up): the successor does not wait for it to expire. */
	assert_int_equal(fx->fake.release_calls, 1);
	assert_int_equal(fx->fake.release_token, 7);

	/* And competes again. */
	compete(fx);
}

/* A leader that yielded (a stall, a healthy standby) holds off: for the
 * hold-off it neither takes a hand-off wake-up (it is the standby's) nor
 * acquires; then it competes again. */
static void
test_yield_holds_off_then_competes(void **state)
{
	struct fixture *fx = *state;
	int64_t until;

	become_leader(fx);
	tor_elector_hold_off(fx->el, 8000);
	until = fx->fake.now + 8000;
	tor_elector_resign(fx->el, fx->l.id, "kafka_stall");
	tor_elector_end(fx->el, fx->l.id, "the relay gave the leadership up");
	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
	assert_int_equal(fx->fake.release_calls, 1);
	while (fx->fake.now < until) {
		int delay = tor_elector_step(fx->el);

		assert_true(delay > 0 && delay <= until - fx->fake.now);
		assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
		tor_elector_wake(fx->el);
		fx->fake.now += delay < 1000 ? delay : 1000;
	}
	assert_int_equal(fx->fake.acquire_calls, 1);
	compete(fx);
}

/* The relay saw the local deadline pass before the elector's thread did:
 * its session ends, and the replica still ends up a follower that competes
 * again, never stuck as a leader that may not publish. */
static void
test_end_past_the_deadline(void **state)
{
	struct fixture *fx = *state;
	int64_t t0 = become_leader(fx);

	fx->fake.now = t0 + LEASE_MS;
	assert_false(may_publish(fx));
	assert_int_equal(tor_elector_state(fx->el), TOR_LEADER);
	tor_elector_end(fx->el, fx->l.id, "test");
	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
	compete(fx);
}

static int ends_seen;

static void
count_end(void *ctx)
{
	(void)ctx;
	ends_seen++;
}

/* Every way out of LEADER tells the relay at once, from whichever thread
 * makes the move: its producer is purged before anything else runs. */
static void
test_leadership_end_is_told(void **state)
{
	struct fixture *fx = *state;
	int64_t t0;

	ends_seen = 0;
	tor_elector_on_leadership_end(fx->el, count_end, NULL);
	t0 = become_leader(fx);
	fx->fake.now = t0 + LEASE_MS - DRIFT_MS;
	tor_elector_step(fx->el);               /* the deadline */
	assert_int_equal(tor_elector_state(fx->el), TOR_STEPPING_DOWN);
	assert_int_equal(ends_seen, 1);
	tor_elector_end(fx->el, fx->l.id, "test");
	become_leader(fx);
	tor_elector_resign(fx->el, fx->l.id, "checkpoint write refused");
	assert_int_equal(ends_seen, 2);
	tor_elector_end(fx->el, fx->l.id, "test");
	t0 = become_leader(fx);
	fx->fake.renew_rc = 0;
	fx->fake.now = t0 + RENEW_MS;
	tor_elector_step(fx->el);               /* the lease is gone */
	assert_int_equal(ends_seen, 3);
}

/* A resign or an end names its leadership: one that is not the current
 * one (never granted, or replaced since) or that ended already changes
 * nothing. */
static void
test_resign_and_end_of_other_leaderships_do_nothing(void **state)
{
	struct fixture *fx = *state;

	tor_elector_resign(fx->el, 1, "nothing to resign");
	tor_elector_end(fx->el, 1, "nothing to end");
	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
	assert_int_equal(fx->fake.release_calls, 0);
	become_leader(fx);
	tor_elector_resign(fx->el, fx->l.id + 1, "not granted yet");
	tor_elector_end(fx->el, fx->l.id + 1, "not granted yet");
	tor_elector_end(fx->el, 0, "none");
	assert_int_equal(tor_elector_state(fx->el), TOR_LEADER);
	assert_true(may_publish(fx));
	tor_elector_end(fx->el, fx->l.id, "test");
	tor_elector_end(fx->el, fx->l.id, "twice");
	assert_int_equal(fx->fake.release_calls, 1);
}

/* The relay's session of leadership 1 ends (late, say) after leadership 2
 * was granted: leadership 2 goes on untouched. */
static void
test_end_of_a_replaced_leadership_does_nothing(void **state)
{
	struct fixture *fx = *state;
	struct tor_leadership first;

	become_leader(fx);
	first = fx->l;
	tor_elector_end(fx->el, first.id, "lost");
	fx->fake.acquire_token = 9;
	become_leader(fx);
	assert_int_equal(fx->l.id, first.id + 1);
	tor_elector_resign(fx->el, first.id, "a stale session");
	tor_elector_end(fx->el, first.id, "a stale session");
	assert_int_equal(tor_elector_state(fx->el), TOR_LEADER);
	assert_int_equal(tor_elector_token(fx->el), 9);
	assert_true(may_publish(fx));
	assert_false(tor_elector_may_publish(fx->el, first.id));
	assert_int_equal(fx->fake.release_calls, 1);
}

static void
resign_now(struct fake *f)
{
	tor_elector_resign(f->el, 1, "Kafka fenced the producer");
}

static void
test_resign_during_renew_wins(void **state)
{
	struct fixture *fx = *state;
	int64_t t0 = become_leader(fx);

	fx->fake.now = t0 + RENEW_MS;
	fx->fake.during = resign_now;
	tor_elector_step(fx->el);
	assert_int_equal(fx->fake.renew_calls, 1);
	assert_int_equal(tor_elector_state(fx->el), TOR_STEPPING_DOWN);
	assert_int_equal(tor_elector_deadline(fx->el), 0);
	assert_false(may_publish(fx));
	tor_elector_step(fx->el);
	assert_int_equal(tor_elector_state(fx->el), TOR_STEPPING_DOWN);
	tor_elector_end(fx->el, fx->l.id, "fenced");
	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
	assert_int_equal(fx->fake.release_token, 7);
}

static void
test_release_gives_back_the_lease_and_retires(void **state)
{
	struct fixture *fx = *state;
	tor_err err;

	become_leader(fx);
	assert_int_equal(tor_elector_release(fx->el, &err), 0);
	assert_int_equal(fx->fake.release_calls, 1);
	assert_int_equal(fx->fake.release_token, 7);
	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
	assert_false(may_publish(fx));

	/* Never competes again, woken or not, and does not spin. */
	for (int i = 0; i < 10; i++) {
		tor_elector_wake(fx->el);
		assert_true(tor_elector_step(fx->el) >= 1000);
		assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
		fx->fake.now += 1000;
	}
	assert_int_equal(fx->fake.acquire_calls, 1);

	/* A second release has nothing to give back. */
	assert_int_equal(tor_elector_release(fx->el, &err), 0);
	assert_int_equal(fx->fake.release_calls, 1);
}

static void
test_release_while_stepping_down(void **state)
{
	struct fixture *fx = *state;
	tor_err err;

	become_leader(fx);
	tor_elector_resign(fx->el, fx->l.id, "fatal relay error");
	assert_int_equal(tor_elector_release(fx->el, &err), 0);
	assert_int_equal(fx->fake.release_calls, 1);
	assert_int_equal(fx->fake.release_token, 7);
	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
}

static void
test_release_error_is_reported(void **state)
{
	struct fixture *fx = *state;
	tor_err err;

	become_leader(fx);
	fx->fake.release_rc = -1;
	assert_int_equal(tor_elector_release(fx->el, &err), -1);
	assert_non_null(strstr(err.msg, "connection refused"));
	assert_non_null(strstr(err.msg, "token 7"));
	/* Retired all the same: the lease expires by itself. */
	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
	tor_elector_step(fx->el);
	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
}

static void
test_release_as_follower_calls_nothing(void **state)
{
	struct fixture *fx = *state;
	tor_err err;

	assert_int_equal(tor_elector_release(fx->el, &err), 0);
	assert_int_equal(fx->fake.release_calls, 0);
	tor_elector_step(fx->el);
	assert_int_equal(fx->fake.acquire_calls, 0);
	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
}

static void
release_now(struct fake *f)
{
	tor_err err;

	assert_int_equal(tor_elector_release(f->el, &err), 0);
}

static void
test_release_during_acquire_gives_back_the_won_lease(void **state)
{
	struct fixture *fx = *state;

	tor_elector_step(fx->el);
	fx->fake.during = release_now;
	tor_elector_step(fx->el);
	assert_int_equal(fx->fake.acquire_calls, 1);
	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
	assert_int_equal(tor_elector_token(fx->el), 0);
	assert_int_equal(fx->fake.release_calls, 1);
	assert_int_equal(fx->fake.release_token, 7);
	assert_int_equal(tor_elector_failovers(fx->el), 0);
}

static void
test_failovers_count_leaderships_after_the_first(void **state)
{
	struct fixture *fx = *state;
	int64_t t0;

	t0 = become_leader(fx);
	assert_int_equal(tor_elector_failovers(fx->el), 0);

	fx->fake.now = t0 + RENEW_MS;
	fx->fake.renew_rc = 0;
	tor_elector_step(fx->el);
	tor_elector_end(fx->el, fx->l.id, "test");

	fx->fake.acquire_token = 9;
	become_leader(fx);
	assert_int_equal(tor_elector_token(fx->el), 9);
	assert_int_equal(tor_elector_failovers(fx->el), 1);

	tor_elector_resign(fx->el, fx->l.id, "test");
	tor_elector_end(fx->el, fx->l.id, "test");
	fx->fake.acquire_token = 12;
	become_leader(fx);
	assert_int_equal(tor_elector_failovers(fx->el), 2);
}

/*
 * The handshake with the relay (DESIGN.md §3): every leadership granted is
 * taken once and ended once, by its number, however short it was.
 */

/* An acquire whose reply comes after the lease's deadline (the process
 * was paused, Redis stalled) wins a lease already over: it is given back
 * at once, no leadership is granted, and the replica competes again.  (It
 * was granted, and ended a moment later, and the relay, which polled for
 * LEADER, never saw it: the replica stayed stepping down for ever.) */
static void
test_acquire_reply_past_its_deadline_gives_the_lease_back(void **state)
{
	struct fixture *fx = *state;
	struct tor_leadership l;

	fx->fake.acquire_takes_ms = LEASE_MS - DRIFT_MS;
	tor_elector_step(fx->el);
	tor_elector_step(fx->el);
	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
	assert_int_equal(fx->fake.release_calls, 1);
	assert_int_equal(fx->fake.release_token, 7);
	assert_int_equal(tor_elector_take(fx->el, 0, &l), 0);
	assert_int_equal(tor_elector_failovers(fx->el), 0);
	/* Competes again, and wins when the reply is on time. */
	fx->fake.acquire_takes_ms = LEASE_MS - DRIFT_MS - 1;
	fx->fake.acquire_token = 8;
	compete(fx);
	tor_elector_step(fx->el);
	assert_int_equal(tor_elector_state(fx->el), TOR_LEADER);
	assert_int_equal(tor_elector_take(fx->el, 0, &l), 1);
	assert_int_equal(l.id, 1);
	assert_int_equal(l.token, 8);
	assert_true(tor_elector_may_publish(fx->el, l.id));
}

/* The deadline runs from the moment the script that won was sent, not from
 * the start of the acquire (a reconnect before it, the Sentinels asked). */
static void
test_acquire_deadline_from_the_winning_request(void **state)
{
	struct fixture *fx = *state;
	int64_t start;

	tor_elector_step(fx->el);
	start = fx->fake.now;
	fx->fake.acquire_prelude_ms = LEASE_MS;
	fx->fake.acquire_takes_ms = 10;
	tor_elector_step(fx->el);
	assert_int_equal(tor_elector_state(fx->el), TOR_LEADER);
	assert_int_equal(tor_elector_deadline(fx->el),
	    start + LEASE_MS + LEASE_MS - DRIFT_MS);
}

/* The leadership is over before the relay looked (the Redis connection
 * dropped right after the acquire): the relay still takes it, sees at once
 * that it may not publish, and ends it; the replica competes again, and
 * the next leadership is the next number. */
static void
test_leadership_over_before_taken_is_taken_and_ended(void **state)
{
	struct fixture *fx = *state;
	struct tor_leadership l;
	int64_t t0;

	fx->cfg.ha.fast_failover = true;
	tor_elector_step(fx->el);
	t0 = fx->fake.now;
	tor_elector_step(fx->el);
	assert_int_equal(tor_elector_state(fx->el), TOR_LEADER);
	fx->fake.lost = true;
	fx->fake.now = t0 + 1;
	tor_elector_step(fx->el);
	assert_int_equal(tor_elector_state(fx->el), TOR_STEPPING_DOWN);
	/* Stepping down waits for the relay, which has not looked yet. */
	for (int i = 0; i < 10; i++)
		tor_elector_step(fx->el);
	assert_int_equal(tor_elector_state(fx->el), TOR_STEPPING_DOWN);
	assert_int_equal(fx->fake.acquire_calls, 1);

	assert_int_equal(tor_elector_take(fx->el, 0, &l), 1);
	assert_int_equal(l.id, 1);
	assert_int_equal(l.token, 7);
	assert_false(tor_elector_may_publish(fx->el, l.id));
	/* Taken once only. */
	assert_int_equal(tor_elector_take(fx->el, 0, &l), 0);
	tor_elector_end(fx->el, 1, "ended before its session");
	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
	assert_int_equal(fx->fake.release_calls, 1);
	assert_int_equal(fx->fake.release_token, 7);

	fx->fake.lost = false;
	fx->fake.acquire_token = 9;
	compete(fx);
	tor_elector_step(fx->el);
	assert_int_equal(tor_elector_take(fx->el, 0, &l), 1);
	assert_int_equal(l.id, 2);
	assert_int_equal(l.token, 9);
	assert_true(tor_elector_may_publish(fx->el, l.id));
}

/* The relay took the leadership; its deadline passes before it publishes
 * and before the elector's thread steps: the relay may not publish, ends
 * it, and the replica competes again. */
static void
test_deadline_between_take_and_publish(void **state)
{
	struct fixture *fx = *state;
	int64_t t0 = become_leader(fx);

	fx->fake.now = t0 + LEASE_MS - DRIFT_MS;
	assert_false(may_publish(fx));
	assert_int_equal(tor_elector_state(fx->el), TOR_LEADER);
	tor_elector_end(fx->el, fx->l.id, "the relay saw the leadership end");
	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
	assert_int_equal(fx->fake.release_calls, 1);
	compete(fx);
}

/* The relay's session saw the deadline pass while a renew was on the
 * wire, and ended its leadership; the renew then succeeds.  The end wins:
 * the lease is given back and no second session runs under that token
 * (it did, and took its own checkpoint for Redis's data loss). */
static struct fixture *ending;

static void
session_ends_meanwhile(struct fake *f)
{
	f->now += 1800;         /* past the old deadline, before the new one */
	assert_false(tor_elector_may_publish(f->el, ending->l.id));
	tor_elector_end(f->el, ending->l.id, "the relay saw the leadership "
	    "end");
}

static void
test_session_lost_during_a_renew_ends_the_leadership(void **state)
{
	struct fixture *fx = *state;
	struct tor_leadership l;
	int64_t t0 = become_leader(fx);

	ending = fx;
	fx->fake.now = t0 + RENEW_MS;
	fx->fake.during = session_ends_meanwhile;
	tor_elector_step(fx->el);
	assert_int_equal(fx->fake.renew_calls, 1);
	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
	assert_false(may_publish(fx));
	assert_int_equal(fx->fake.release_calls, 1);
	assert_int_equal(fx->fake.release_token, 7);
	assert_int_equal(tor_elector_take(fx->el, 0, &l), 0);
	/* The next leadership has a token of its own. */
	fx->fake.acquire_token = 8;
	become_leader(fx);
	assert_int_equal(fx->l.id, 2);
	assert_int_equal(fx->l.token, 8);
}

/* A suspend of the machine (the fake clock jumps) past the deadline: the
 * relay may not publish from the first look after the wake-up, before the
 * elector's thread has stepped or Redis has been asked; the elector then
 * steps down without a renew. */
static void
test_suspend_past_the_deadline(void **state)
{
	struct fixture *fx = *state;
	int64_t t0 = become_leader(fx);

	fx->fake.now = t0 + 300;
	assert_true(may_publish(fx));
	fx->fake.now += 3600 * 1000;            /* an hour asleep */
	assert_false(may_publish(fx));
	tor_elector_step(fx->el);
	assert_int_equal(tor_elector_state(fx->el), TOR_STEPPING_DOWN);
	assert_int_equal(fx->fake.renew_calls, 0);
	tor_elector_end(fx->el, fx->l.id, "the relay saw the leadership end");
	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
}

/* A driver of the given electors, started. */
static struct tor_electors *
driver_of(struct tor_elector **els, size_t n)
{
	struct tor_electors *d = tor_electors_new();
	tor_err err;

	assert_non_null(d);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(tor_electors_add(d, els[i], &err), 0);
	assert_int_equal(tor_electors_start(d, &err), 0);
	return d;
}

/* The real driver: leaderships that each end within WATCH_MS (the Redis
 * connection is gone at every look) are taken one after the other, in
 * order and none skipped, by a relay that blocks in tor_elector_take; each
 * is over when taken, ended, and the next one follows. */
static void
test_thread_every_leadership_taken_once(void **state)
{
	struct fixture *fx = *state;
	struct tor_leadership l;
	struct tor_electors *d;
	struct tor_elector *el;

	fx->cfg.ha.lease_ms = 300;
	fx->cfg.ha.renew_ms = 50;
	fx->cfg.ha.retry_ms = 20;
	fx->cfg.ha.fast_failover = true;
	fx->fake.real_clock = true;
	fx->fake.lost = true;
	el = tor_elector_new(&fx->cfg, &fake_ops, &fx->fake);
	assert_non_null(el);
	d = driver_of(&el, 1);
	for (uint64_t id = 1; id <= 5; id++) {
		assert_int_equal(tor_elector_take(el, 5000, &l), 1);
		assert_int_equal(l.id, id);
		/* The elector steps down within WATCH_MS and then waits for
		 * this end, however late it comes. */
		nanosleep(&(struct timespec){ 0, 60 * 1000000L }, NULL);
		assert_int_equal(tor_elector_state(el), TOR_STEPPING_DOWN);
		assert_false(tor_elector_may_publish(el, l.id));
		tor_elector_end(el, l.id, "the relay saw the leadership end");
	}
	tor_electors_free(d);
	assert_int_equal(fx->fake.release_calls, 5);
	tor_elector_free(el);
}

/* The lease clock counts a suspend: tor_mono_ms reads CLOCK_BOOTTIME, not
 * CLOCK_MONOTONIC.  A machine that was never suspended has both equal, so
 * a child runs in a time namespace whose BOOTTIME is an hour ahead of its
 * MONOTONIC (what an hour's suspend leaves behind) and reports which one
 * tor_mono_ms follows.  Needs CAP_SYS_ADMIN (unshare CLONE_NEWTIME):
 * skipped without it. */
static int64_t
clock_ms(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
test_lease_clock_counts_suspend(void **state)
{
	pid_t pid;
	int status, fd;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (unshare(CLONE_NEWTIME) < 0)
			_exit(errno == EPERM ? 77 : 70);
		fd = open("/proc/self/timens_offsets", O_WRONLY);
		if (fd < 0 || write(fd, "boottime 3600 0", 15) != 15)
			_exit(71);
		close(fd);
		/* The new namespace is the children's. */
		if ((pid = fork()) == 0) {
			int64_t mono = clock_ms(CLOCK_MONOTONIC);
			int64_t lease = tor_mono_ms();
			int64_t boot = clock_ms(CLOCK_BOOTTIME);

			if (boot - mono < 3599 * 1000)
				_exit(72);      /* the offset did not apply */
			_exit(lease >= mono + 3599 * 1000 && lease <= boot ?
			    0 : 1);
		}
		if (pid < 0 || waitpid(pid, &status, 0) != pid ||
		    !WIFEXITED(status))
			_exit(73);
		_exit(WEXITSTATUS(status));
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77)
		skip();
	/* 1: tor_mono_ms followed CLOCK_MONOTONIC, an hour behind. */
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* The real driver, with a real clock: starts, leads, renews, stops. */
static void
test_thread_leads_and_stops(void **state)
{
	struct fixture *fx = *state;
	struct timespec tick = { 0, 10 * 1000000L };
	struct tor_leadership l;
	struct tor_electors *d;
	struct tor_elector *el;
	bool led = false;

	fx->cfg.ha.lease_ms = 300;
	fx->cfg.ha.renew_ms = 50;
	fx->cfg.ha.retry_ms = 20;
	fx->fake.real_clock = true;
	el = tor_elector_new(&fx->cfg, &fake_ops, &fx->fake);
	assert_non_null(el);
	d = driver_of(&el, 1);
	/* The relay's wait: it returns when the leadership is granted. */
	assert_int_equal(tor_elector_take(el, 5000, &l), 1);
	assert_int_equal(l.id, 1);
	assert_int_equal(l.token, 7);
	for (int i = 0; i < 20; i++) {
		nanosleep(&tick, NULL);
		if (tor_elector_may_publish(el, l.id))
			led = true;
	}
	tor_electors_stop(d);
	assert_true(led);
	assert_int_equal(tor_elector_state(el), TOR_LEADER);
	assert_int_equal(fx->fake.acquire_calls, 1);
	/* ~200 ms at a 50 ms period: a few renews, not a spin. */
	assert_true(fx->fake.renew_calls >= 2);
	assert_true(fx->fake.renew_calls <= 6);
	tor_electors_stop(d);           /* twice is harmless */
	tor_electors_free(d);
	tor_elector_free(el);
}

/*
 * A take-over's grace is a due time of the candidate, not a sleep: the
 * acquire returns at once with a not-before time, the grant is kept back
 * (no leadership to take, nothing to publish) and the step says how long;
 * once it has passed, the leadership starts with its deadline counted from
 * the request's send time, as ever.
 */
static void
test_takeover_grace_keeps_the_grant_back(void **state)
{
	struct fixture *fx = *state;
	struct tor_leadership l;
	int64_t sent;

	fx->fake.acquire_grace_ms = 50;
	fx->fake.acquire_takes_ms = 2;
	compete(fx);
	sent = fx->fake.now;
	assert_int_equal(tor_elector_step(fx->el), 50);
	assert_int_equal(tor_elector_state(fx->el), TOR_CANDIDATE);
	assert_int_equal(tor_elector_take(fx->el, 0, &l), 0);
	fx->fake.now += 20;
	assert_int_equal(tor_elector_step(fx->el), 30);
	assert_int_equal(fx->fake.acquire_calls, 1);
	assert_int_equal(tor_elector_take(fx->el, 0, &l), 0);
	fx->fake.now += 30;
	tor_elector_step(fx->el);
	assert_int_equal(tor_elector_state(fx->el), TOR_LEADER);
	assert_int_equal(fx->fake.acquire_calls, 1);
	assert_int_equal(tor_elector_take(fx->el, 0, &l), 1);
	assert_true(tor_elector_may_publish(fx->el, l.id));
	assert_int_equal(tor_elector_deadline(fx->el),
	    sent + LEASE_MS - DRIFT_MS);
}

/* A release during the grace gives the won lease back: it was never
 * granted, and nobody waits for it to expire. */
static void
test_release_during_the_grace_gives_the_lease_back(void **state)
{
	struct fixture *fx = *state;
	struct tor_leadership l;
	tor_err err;

	fx->fake.acquire_grace_ms = 50;
	compete(fx);
	tor_elector_step(fx->el);
	assert_int_equal(tor_elector_state(fx->el), TOR_CANDIDATE);
	assert_int_equal(tor_elector_release(fx->el, &err), 0);
	assert_int_equal(fx->fake.release_calls, 1);
	assert_int_equal(fx->fake.release_token, 7);
	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
	fx->fake.now += 100;
	tor_elector_step(fx->el);
	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
	assert_int_equal(tor_elector_take(fx->el, 0, &l), 0);
}

/* TOR_ACQUIRE_NONE: a follower never competes, woken or not; a leader is
 * not affected; back to ANY, it competes again. */
static void
test_acquire_mode_none(void **state)
{
	struct fixture *fx = *state;
	int64_t t0;

	tor_elector_set_acquire(fx->el, TOR_ACQUIRE_NONE);
	assert_int_equal(tor_elector_acquire_mode(fx->el), TOR_ACQUIRE_NONE);
	for (int i = 0; i < 20; i++) {
		tor_elector_wake(fx->el);
		fx->fake.now += tor_elector_step(fx->el);
		assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
	}
	assert_int_equal(fx->fake.acquire_calls, 0);
	tor_elector_set_acquire(fx->el, TOR_ACQUIRE_ANY);
	t0 = become_leader(fx);
	tor_elector_set_acquire(fx->el, TOR_ACQUIRE_NONE);
	fx->fake.now = t0 + RENEW_MS;
	tor_elector_step(fx->el);
	assert_int_equal(fx->fake.renew_calls, 1);
	assert_int_equal(tor_elector_state(fx->el), TOR_LEADER);
	assert_true(may_publish(fx));
}

/* TOR_ACQUIRE_TAKEOVER_ONLY: every attempt asks for a take-over only, and
 * a free lease is left alone, until this elector has seen it free for
 * longer than lease_ms: then one normal attempt wins it, so no group stays
 * unled when every replica is at its share.  A lease seen held starts the
 * count again. */
static void
test_acquire_mode_takeover_only(void **state)
{
	struct fixture *fx = *state;
	int64_t first, again;

	tor_elector_set_acquire(fx->el, TOR_ACQUIRE_TAKEOVER_ONLY);
	fx->fake.lease_free = true;
	compete(fx);
	first = fx->fake.now;
	tor_elector_step(fx->el);
	assert_true(fx->fake.acquire_only);
	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
	/* Seen held once: the count starts again at the next free answer. */
	fx->fake.lease_free = false;
	fx->fake.acquire_rc = 0;
	compete(fx);
	tor_elector_step(fx->el);
	assert_true(fx->fake.acquire_only);
	fx->fake.lease_free = true;
	fx->fake.acquire_rc = 1;
	compete(fx);
	again = fx->fake.now;
	assert_true(again - first > 100);
	do {
		tor_elector_step(fx->el);
		assert_true(fx->fake.acquire_only);
		assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
		compete(fx);
	} while (fx->fake.now - first <= LEASE_MS + 100);
	/* Past lease_ms from the fresh count: one normal attempt wins. */
	while (fx->fake.now - again <= LEASE_MS) {
		tor_elector_step(fx->el);
		assert_true(fx->fake.acquire_only);
		compete(fx);
	}
	tor_elector_step(fx->el);
	assert_false(fx->fake.acquire_only);
	assert_int_equal(tor_elector_state(fx->el), TOR_LEADER);
}

/* A hand-off wake-up (a lease just given back: a replica stopping or
 * yielding; a balance hand-over names its taker in handoff_to, which the
 * script enforces) makes one normal attempt even at the share, so a
 * stopping replica's groups are taken at once, not lease_ms later. */
static void
test_takeover_only_wakeup_makes_a_normal_attempt(void **state)
{
	struct fixture *fx = *state;

	tor_elector_set_acquire(fx->el, TOR_ACQUIRE_TAKEOVER_ONLY);
	fx->fake.lease_free = true;
	compete(fx);
	tor_elector_step(fx->el);
	assert_true(fx->fake.acquire_only);
	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
	tor_elector_wake(fx->el);
	tor_elector_step(fx->el);
	assert_int_equal(tor_elector_state(fx->el), TOR_CANDIDATE);
	tor_elector_step(fx->el);
	assert_false(fx->fake.acquire_only);
	assert_int_equal(tor_elector_state(fx->el), TOR_LEADER);
}

/* A hand-over ends the leadership and gives the lease back like a
 * release, but the elector is not retired: it holds off (woken or not),
 * then competes again. */
static void
test_hand_over_holds_off_then_competes(void **state)
{
	struct fixture *fx = *state;
	struct tor_leadership l;
	tor_err err;
	int64_t until;

	become_leader(fx);
	assert_int_equal(tor_elector_hand_over(fx->el, 6000, &err), 0);
	until = fx->fake.now + 6000;
	assert_int_equal(fx->fake.release_calls, 1);
	assert_int_equal(fx->fake.release_token, 7);
	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
	assert_false(may_publish(fx));
	/* The leadership is over: the relay's end of it does nothing more. */
	tor_elector_end(fx->el, fx->l.id, "test");
	assert_int_equal(fx->fake.release_calls, 1);
	while (fx->fake.now < until) {
		tor_elector_wake(fx->el);
		fx->fake.now += tor_elector_step(fx->el);
		assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
	}
	assert_int_equal(fx->fake.acquire_calls, 1);
	fx->fake.acquire_token = 8;
	compete(fx);
	tor_elector_step(fx->el);
	assert_int_equal(tor_elector_state(fx->el), TOR_LEADER);
	assert_int_equal(tor_elector_take(fx->el, 0, &l), 1);
	assert_int_equal(l.id, 2);
	assert_int_equal(l.token, 8);
	/* A Redis that cannot be told: the error, and still a follower. */
	fx->fake.release_rc = -1;
	assert_int_equal(tor_elector_hand_over(fx->el, 6000, &err), -1);
	assert_non_null(strstr(err.msg, "token 8"));
	assert_int_equal(tor_elector_state(fx->el), TOR_FOLLOWER);
}

/* Several electors on one driver, with a real clock: one leads and renews
 * every 50 ms while five followers compete every 20 ms, each attempt
 * taking 15 ms (a slow Redis, within its timeout).  The leader keeps its
 * lease throughout: its renews are late by one follower's call at most,
 * far inside its deadline. */
#define N_FOLLOWERS 5
static void
test_driver_leader_renews_on_time_beside_followers(void **state)
{
	struct fixture *fx = *state;
	static struct fake fakes[N_FOLLOWERS];
	struct tor_elector *els[1 + N_FOLLOWERS];
	struct tor_config cfg = fx->cfg;
	struct tor_leadership l;
	struct tor_electors *d;
	int attempts = 0;

	cfg.ha.lease_ms = 300;
	cfg.ha.renew_ms = 50;
	cfg.ha.retry_ms = 20;
	fx->fake.real_clock = true;
	els[0] = tor_elector_new(&cfg, &fake_ops, &fx->fake);
	for (int i = 0; i < N_FOLLOWERS; i++) {
		fakes[i] = fx->fake;
		fakes[i].acquire_rc = 0;
		fakes[i].acquire_sleeps_ms = 15;
		els[1 + i] = tor_elector_new(&cfg, &fake_ops, &fakes[i]);
		assert_non_null(els[1 + i]);
	}
	d = driver_of(els, 1 + N_FOLLOWERS);
	assert_int_equal(tor_elector_take(els[0], 5000, &l), 1);
	for (int i = 0; i < 50; i++) {
		nanosleep(&(struct timespec){ 0, 10 * 1000000L }, NULL);
		assert_true(tor_elector_may_publish(els[0], l.id));
	}
	tor_electors_free(d);
	for (int i = 0; i < N_FOLLOWERS; i++)
		attempts += fakes[i].acquire_calls;
	print_message("  500 ms: leader renewed %d times, followers made %d "
	    "attempts\n", fx->fake.renew_calls, attempts);
	assert_int_equal(tor_elector_state(els[0]), TOR_LEADER);
	assert_int_equal(tor_elector_failovers(els[0]), 0);
	assert_true(fx->fake.renew_calls >= 5);
	assert_true(attempts >= 2 * N_FOLLOWERS);
	for (int i = 0; i < 1 + N_FOLLOWERS; i++)
		tor_elector_free(els[i]);
}

/* On a driver, a hand-off wake-up makes a follower with a long retry
 * period compete at once, not at the end of the period. */
static void
test_driver_wake_up_competes_at_once(void **state)
{
	struct fixture *fx = *state;
	struct tor_electors *d;
	struct tor_elector *el;
	int i;

	fx->cfg.ha.retry_ms = 10000;
	fx->fake.real_clock = true;
	fx->fake.acquire_rc = 0;
	el = tor_elector_new(&fx->cfg, &fake_ops, &fx->fake);
	d = driver_of(&el, 1);
	for (i = 0; i < 200 && fx->fake.acquire_calls < 1; i++)
		nanosleep(&(struct timespec){ 0, 5 * 1000000L }, NULL);
	assert_int_equal(fx->fake.acquire_calls, 1);    /* the start-up's */
	fx->fake.acquire_rc = 1;
	tor_elector_wake(el);
	for (i = 0; i < 200 && tor_elector_state(el) != TOR_LEADER; i++)
		nanosleep(&(struct timespec){ 0, 5 * 1000000L }, NULL);
	assert_int_equal(tor_elector_state(el), TOR_LEADER);
	assert_int_equal(fx->fake.acquire_calls, 2);
	tor_electors_free(d);
	tor_elector_free(el);
}

/* Builds the real backend (it connects lazily, so no Redis is needed) and
 * frees it whole: ASan's leak check watches. */
static void
test_redis_elector_builds_and_frees(void **state)
{
	struct fixture *fx = *state;
	struct tor_elector *el;
	tor_err err;

	fx->cfg.redis.host = "127.0.0.1";
	fx->cfg.redis.port = 6379;
	fx->cfg.ha.retry_ms = 1000;     /* above the command timeout */
	el = tor_elector_new_redis(&fx->cfg, &err);
	assert_non_null(el);
	assert_int_equal(tor_elector_state(el), TOR_FOLLOWER);
	assert_false(tor_elector_may_publish(el, 1));
	tor_elector_free(el);
}

/* The backend's copy of the config carries the checkpoint key; freeing
 * the elector leaves no copy of it in freed memory. */
static void
test_redis_elector_free_wipes_the_key(void **state)
{
	struct fixture *fx = *state;
	struct tor_elector *el;
	size_t freed_with;
	tor_err err;

	fx->cfg.redis.host = "127.0.0.1";
	fx->cfg.redis.port = 6379;
	fx->cfg.ha.retry_ms = 1000;
	for (size_t i = 0; i < sizeof(fx->cfg.checkpoint.key); i++)
		fx->cfg.checkpoint.key[i] = (unsigned char)(0xa0 + i);
	fx->cfg.checkpoint.has_key = true;
	el = tor_elector_new_redis(&fx->cfg, &err);
	assert_non_null(el);
	alloc_probe_watch(fx->cfg.checkpoint.key, sizeof(fx->cfg.checkpoint.key));
	tor_elector_free(el);
	alloc_probe_stop();
	freed_with = alloc_probe.freed_with;
	assert_int_equal(freed_with, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_state_names),
		T(test_starts_as_follower),
		T(test_follower_waits_jittered_then_becomes_candidate),
		T(test_handoff_wakeup_makes_a_candidate),
		T(test_redis_down_while_following_still_competes),
		T(test_candidate_acquires_with_deadline_from_send_time),
		T(test_drift_has_a_floor),
		T(test_acquire_held_by_another_makes_a_follower),
		T(test_acquire_error_makes_a_follower),
		T(test_leader_renews_every_renew_ms_not_earlier),
		T(test_slow_renew_counts_from_send_time),
		T(test_renew_lost_steps_down),
		T(test_lost_connection_steps_down_at_once),
		T(test_leader_pauses_when_redis_is_not_heard),
		T(test_no_ping_without_fast_failover),
		T(test_connection_not_watched_without_fast_failover),
		T(test_fast_failover_follower_looks_often),
		T(test_redis_silent_leader_steps_down_at_deadline),
		T(test_renew_error_then_success_extends),
		T(test_yield_holds_off_then_competes),
		T(test_resign_then_end),
		T(test_end_past_the_deadline),
		T(test_leadership_end_is_told),
		T(test_resign_and_end_of_other_leaderships_do_nothing),
		T(test_end_of_a_replaced_leadership_does_nothing),
		T(test_resign_during_renew_wins),
		T(test_release_gives_back_the_lease_and_retires),
		T(test_release_while_stepping_down),
		T(test_release_error_is_reported),
		T(test_release_as_follower_calls_nothing),
		T(test_release_during_acquire_gives_back_the_won_lease),
		T(test_failovers_count_leaderships_after_the_first),
		T(test_acquire_reply_past_its_deadline_gives_the_lease_back),
		T(test_acquire_deadline_from_the_winning_request),
		T(test_leadership_over_before_taken_is_taken_and_ended),
		T(test_deadline_between_take_and_publish),
		T(test_session_lost_during_a_renew_ends_the_leadership),
		T(test_suspend_past_the_deadline),
		T(test_thread_every_leadership_taken_once),
		T(test_lease_clock_counts_suspend),
		T(test_thread_leads_and_stops),
		T(test_takeover_grace_keeps_the_grant_back),
		T(test_release_during_the_grace_gives_the_lease_back),
		T(test_acquire_mode_none),
		T(test_acquire_mode_takeover_only),
		T(test_takeover_only_wakeup_makes_a_normal_attempt),
		T(test_hand_over_holds_off_then_competes),
		T(test_driver_leader_renews_on_time_beside_followers),
		T(test_driver_wake_up_competes_at_once),
		T(test_redis_elector_builds_and_frees),
		T(test_redis_elector_free_wipes_the_key),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
