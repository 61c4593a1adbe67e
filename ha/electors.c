/*
 * The driver of every elector in the process, and the listener of hand-off
 * wake-ups (see tor/electors.h).
 *
 * The driver keeps, per elector, the time its next step is due (the lease
 * clock, which counts a suspend) and steps the one most overdue, a
 * leader before any other; then it sleeps until the next due time or a
 * wake-up.  A step blocks only on one Redis call, bounded by its timeout,
 * so a slow server delays the other electors by that much at most.
 *
 * The listener holds one subscribed connection per Redis server the
 * electors use, subscribed to every distinct free channel on it, and
 * waits on each in turn.  A message names the group whose lease was
 * released: that group's elector is woken.  A connection that fails is
 * made again (in Sentinel mode to the current master); what was published
 * meanwhile is lost, and costs the followers their retry period.
 */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tor/clock.h"
#include "tor/electors.h"
#include "tor/lease.h"
#include "tor/log.h"
#include "tor/redis.h"

/* The driver's sleep runs on CLOCK_MONOTONIC (glibc's condition variables
 * take no other clock), which stands still while the machine is suspended:
 * a leader's step is due at most this long after its last one, so that a
 * suspend that passed its deadline is seen this soon after the wake-up. */
#define LEADER_SLEEP_MAX_MS	100
/* The longest the driver sleeps with nothing due (a retired elector). */
#define IDLE_MAX_MS		60000
/* The listener's wait on its connections, in all, per round: also how
 * soon it sees a stop. */
#define LISTEN_ROUND_MS		200
/* After a failed subscribe or a broken connection, the next try. */
#define RESUBSCRIBE_MS		200
/* After Redis refused the SUBSCRIBE itself (an ACL without channel
 * rights): the next try, quietly. */
#define REFUSED_RETRY_MS	10000
/* How often a subscribed connection follows a Sentinel failover. */
#define CHECK_MS		1000

struct slot {
	struct tor_electors *d;
	struct tor_elector *el;
	int64_t due;            /* the lease clock's ms; guarded by d->mu */
	bool kicked;            /* step now; guarded by d->mu */
	char channel[256];      /* its free channel ("" when not on Redis) */
};

/* One subscribed connection: the electors whose Redis is one server. */
struct sub {
	const struct tor_config *cfg;   /* the first such elector's */
	struct tor_redis *r;
	char **channels;
	size_t n_channels;
	bool subscribed;
	uint64_t conn;                  /* tor_redis_connection subscribed */
	int64_t retry_at, checked_at;
	bool failing;                   /* in a streak of failures */
};

struct tor_electors {
	pthread_mutex_t mu;
	pthread_cond_t cond;            /* a kick, or stop */
	struct slot **slots;
	size_t n;
	bool stopping;                  /* guarded by mu */

	pthread_t thread;
	_Atomic bool running;

	struct sub *subs;
	size_t n_subs;
	pthread_t listener;
	bool listening;
	_Atomic bool stop_listening;
};

struct tor_electors *
tor_electors_new(void)
{
	struct tor_electors *d;
	pthread_condattr_t ca;

	if ((d = calloc(1, sizeof(*d))) == NULL)
		return NULL;
	pthread_mutex_init(&d->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->cond, &ca);
	pthread_condattr_destroy(&ca);
	atomic_init(&d->running, false);
	atomic_init(&d->stop_listening, false);
	return d;
}

/* The elector's waker: its next step is due now.  The driver's own steps
 * need no kick (it uses the delay they return). */
static void
kick(void *ctx)
{
	struct slot *s = ctx;
	struct tor_electors *d = s->d;

	if (atomic_load(&d->running) && pthread_equal(pthread_self(), d->thread))
		return;
	pthread_mutex_lock(&d->mu);
	s->kicked = true;
	pthread_cond_signal(&d->cond);
	pthread_mutex_unlock(&d->mu);
}

int
tor_electors_add(struct tor_electors *d, struct tor_elector *el,
    tor_err *err)
{
	struct slot **slots, *s;

	if (atomic_load(&d->running))
		return tor_err_set(err, "electors: add after start");
	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (slots = realloc(d->slots, (d->n + 1) * sizeof(*slots))) == NULL) {
		free(s);
		return tor_err_set(err, "electors: out of memory");
	}
	d->slots = slots;
	s->d = d;
	s->el = el;
	if (tor_elector_on_redis(el))
		tor_lease_free_channel(tor_elector_config(el), s->channel,
		    sizeof(s->channel));
	d->slots[d->n++] = s;
	tor_elector_set_waker(el, kick, s);
	return 0;
}

/* The slot to step now (mu held): among those due, a leader first, then
 * the most overdue; NULL when none is due, with *next the earliest due. */
static struct slot *
pick(struct tor_electors *d, int64_t now, int64_t *next)
{
	struct slot *best = NULL;
	int64_t best_due = 0, due;
	bool best_leader = false, leader;

	*next = now + IDLE_MAX_MS;
	for (size_t i = 0; i < d->n; i++) {
		struct slot *s = d->slots[i];

		due = s->kicked ? now : s->due;
		if (due > now) {
			if (due < *next)
				*next = due;
			continue;
		}
		leader = tor_elector_state(s->el) == TOR_LEADER;
		if (best == NULL || (leader && !best_leader) ||
		    (leader == best_leader && due < best_due)) {
			best = s;
			best_due = due;
			best_leader = leader;
		}
	}
	return best;
}

static void *
drive(void *arg)
{
	struct tor_electors *d = arg;
	struct timespec until;
	struct slot *s;
	int64_t now, next;
	int delay;

	pthread_mutex_lock(&d->mu);
	while (!d->stopping) {
		now = tor_mono_ms();
		if ((s = pick(d, now, &next)) != NULL) {
			s->kicked = false;
			pthread_mutex_unlock(&d->mu);
			/* Its lines name its group (several in a replica). */
			tor_log_use_group(tor_elector_log_group(s->el));
			delay = tor_elector_step(s->el);
			pthread_mutex_lock(&d->mu);
			if (delay < 0)
				delay = 0;
			if (tor_elector_state(s->el) == TOR_LEADER &&
			    delay > LEADER_SLEEP_MAX_MS)
				delay = LEADER_SLEEP_MAX_MS;
			s->due = tor_mono_ms() + delay;
			continue;
		}
		/* Until the next step is due, or a transition made elsewhere
		 * (resign, end, release, a wake-up) or stop wakes us. */
		until = tor_cond_deadline(next - now);
		pthread_cond_timedwait(&d->cond, &d->mu, &until);
	}
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

static bool
same_text(const char *a, const char *b)
{
	return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

/* Whether two configs reach one Redis server the same way (a channel is
 * the server's, whatever the database). */
static bool
same_server(const struct tor_config *a, const struct tor_config *b)
{
	return same_text(a->redis.host, b->redis.host) &&
	    a->redis.port == b->redis.port &&
	    same_text(a->redis.user, b->redis.user) &&
	    same_text(a->redis.password, b->redis.password) &&
	    a->redis.tls.enabled == b->redis.tls.enabled &&
	    same_text(a->redis.sentinel.master, b->redis.sentinel.master) &&
	    a->redis.sentinel.n_nodes == b->redis.sentinel.n_nodes &&
	    (a->redis.sentinel.n_nodes == 0 || same_text(
	    a->redis.sentinel.nodes[0], b->redis.sentinel.nodes[0])) &&
	    a->redis.cluster.n_nodes == b->redis.cluster.n_nodes &&
	    (a->redis.cluster.n_nodes == 0 || same_text(
	    a->redis.cluster.nodes[0], b->redis.cluster.nodes[0]));
}

/* Adds channel to sub's list unless there already. */
static int
add_channel(struct sub *sub, const char *channel)
{
	char **list;

	for (size_t i = 0; i < sub->n_channels; i++)
		if (strcmp(sub->channels[i], channel) == 0)
			return 0;
	if ((list = realloc(sub->channels, (sub->n_channels + 1) *
	    sizeof(*list))) == NULL)
		return -1;
	sub->channels = list;
	if ((list[sub->n_channels] = strdup(channel)) == NULL)
		return -1;
	sub->n_channels++;
	return 0;
}

/* One sub per distinct server, with its distinct channels. */
static int
plan_subs(struct tor_electors *d, tor_err *err)
{
	for (size_t i = 0; i < d->n; i++) {
		const struct tor_config *cfg;
		struct sub *sub = NULL, *subs;
		size_t k;

		if (d->slots[i]->channel[0] == '\0')
			continue;
		cfg = tor_elector_config(d->slots[i]->el);
		for (k = 0; k < d->n_subs; k++)
			if (same_server(d->subs[k].cfg, cfg))
				sub = &d->subs[k];
		if (sub == NULL) {
			if ((subs = realloc(d->subs, (d->n_subs + 1) *
			    sizeof(*subs))) == NULL)
				goto nomem;
			d->subs = subs;
			sub = &d->subs[d->n_subs];
			memset(sub, 0, sizeof(*sub));
			sub->cfg = cfg;
			d->n_subs++;
			if ((sub->r = tor_redis_new(cfg)) == NULL)
				goto nomem;
		}
		if (add_channel(sub, d->slots[i]->channel) < 0)
			goto nomem;
	}
	return 0;
nomem:
	return tor_err_set(err, "electors: out of memory");
}

static void
pause_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static void
sub_failed(struct sub *sub, const char *what, const tor_err *err,
    int retry_ms)
{
	sub->subscribed = false;
	sub->retry_at = tor_mono_ms() + retry_ms;
	if (sub->failing)
		return;
	sub->failing = true;
	log_warn("elector", "hand-off wake-ups: %s: %s (followers retry at "
	    "their period meanwhile)", what, err->msg);
}

/* Channels differ only by redis.prefix: a handful per server at most, so
 * one SUBSCRIBE takes the first 64. */
static void
subscribe(struct sub *sub)
{
	const char *argv[1 + 64];
	size_t n = sub->n_channels < 64 ? sub->n_channels : 64;
	tor_err err;

	argv[0] = "SUBSCRIBE";
	for (size_t i = 0; i < n; i++)
		argv[1 + i] = sub->channels[i];
	if (tor_redis_send(sub->r, (int)(1 + n), argv, &err) < 0) {
		sub_failed(sub, "cannot subscribe", &err, RESUBSCRIBE_MS);
		return;
	}
	sub->subscribed = true;
	sub->conn = tor_redis_connection(sub->r);
	sub->checked_at = tor_mono_ms();
}

/* A pushed reply: a message wakes the elector of the group it names on
 * that channel; a subscribe confirmation ends a failure streak. */
static void
heard(struct tor_electors *d, struct sub *sub, const redisReply *reply)
{
	const redisReply *kind, *channel, *group;
	tor_err err;

	if (reply->type == REDIS_REPLY_ERROR) {
		tor_err_set(&err, "%s", reply->str);
		sub_failed(sub, "SUBSCRIBE refused", &err, REFUSED_RETRY_MS);
		return;
	}
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
		return;
	kind = reply->element[0];
	channel = reply->element[1];
	group = reply->element[2];
	if (kind->type != REDIS_REPLY_STRING ||
	    channel->type != REDIS_REPLY_STRING)
		return;
	if (strcmp(kind->str, "subscribe") == 0) {
		if (sub->failing)
			log_info("elector", "hand-off wake-ups: subscribed again");
		sub->failing = false;
		return;
	}
	if (strcmp(kind->str, "message") != 0 ||
	    group->type != REDIS_REPLY_STRING)
		return;
	for (size_t i = 0; i < d->n; i++) {
		struct slot *s = d->slots[i];

		if (strcmp(s->channel, channel->str) == 0 &&
		    strcmp(tor_elector_config(s->el)->group, group->str) == 0 &&
		    same_server(tor_elector_config(s->el), sub->cfg))
			tor_elector_wake(s->el);
	}
}

/* One look at one connection, up to wait_ms. */
static void
listen_once(struct tor_electors *d, struct sub *sub, int wait_ms)
{
	redisReply *reply;
	int64_t now = tor_mono_ms();
	tor_err err;
	int rc;

	if (!sub->subscribed) {
		if (now < sub->retry_at) {
			pause_ms(wait_ms);
			return;
		}
		subscribe(sub);
		if (!sub->subscribed)
			return;
	}
	/* Follows a Sentinel failover: a move drops the connection, and the
	 * reconnect goes to the new master, where we subscribe again. */
	if (now - sub->checked_at >= CHECK_MS) {
		sub->checked_at = now;
		if (tor_redis_ready(sub->r, &err) < 0) {
			sub_failed(sub, "cannot reach Redis", &err,
			    RESUBSCRIBE_MS);
			return;
		}
		if (tor_redis_connection(sub->r) != sub->conn) {
			sub->subscribed = false;
			return;
		}
	}
	rc = tor_redis_receive(sub->r, wait_ms, &reply, &err);
	if (rc < 0)
		sub_failed(sub, "connection lost", &err, RESUBSCRIBE_MS);
	else if (rc == 1) {
		heard(d, sub, reply);
		freeReplyObject(reply);
	}
}

static void *
listen_thread(void *arg)
{
	struct tor_electors *d = arg;
	int wait_ms = LISTEN_ROUND_MS / (int)d->n_subs;

	if (wait_ms < 10)
		wait_ms = 10;
	while (!atomic_load(&d->stop_listening))
		for (size_t i = 0; i < d->n_subs; i++)
			listen_once(d, &d->subs[i], wait_ms);
	return NULL;
}

/* Signals belong to the main thread (SIGTERM starts a clean shutdown): a
 * thread made here inherits a mask that blocks them all. */
static int
start_thread(pthread_t *t, const char *name, void *(*fn)(void *), void *arg,
    tor_err *err)
{
	sigset_t all, old;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		return tor_err_set(err, "electors: cannot start a thread: %s",
		    strerror(rc));
	/* For ps -L and /proc: which thread is which. */
	pthread_setname_np(*t, name);
	return 0;
}

int
tor_electors_start(struct tor_electors *d, tor_err *err)
{
	if (atomic_load(&d->running))
		return tor_err_set(err, "electors: already started");
	if (plan_subs(d, err) < 0)
		return -1;
	d->stopping = false;
	if (start_thread(&d->thread, "tor-electors", drive, d, err) < 0)
		return -1;
	atomic_store(&d->running, true);
	if (d->n_subs > 0) {
		if (start_thread(&d->listener, "tor-wakeups", listen_thread, d,
		    err) < 0) {
			tor_electors_stop(d);
			return -1;
		}
		d->listening = true;
	}
	return 0;
}

void
tor_electors_stop(struct tor_electors *d)
{
	if (d == NULL)
		return;
	if (d->listening) {
		atomic_store(&d->stop_listening, true);
		pthread_join(d->listener, NULL);
		d->listening = false;
	}
	if (!atomic_load(&d->running))
		return;
	pthread_mutex_lock(&d->mu);
	d->stopping = true;
	pthread_cond_signal(&d->cond);
	pthread_mutex_unlock(&d->mu);
	pthread_join(d->thread, NULL);
	atomic_store(&d->running, false);
}

void
tor_electors_free(struct tor_electors *d)
{
	if (d == NULL)
		return;
	tor_electors_stop(d);
	for (size_t i = 0; i < d->n; i++) {
		tor_elector_set_waker(d->slots[i]->el, NULL, NULL);
		free(d->slots[i]);
	}
	free(d->slots);
	for (size_t k = 0; k < d->n_subs; k++) {
		tor_redis_free(d->subs[k].r);
		for (size_t i = 0; i < d->subs[k].n_channels; i++)
			free(d->subs[k].channels[i]);
		free(d->subs[k].channels);
	}
	free(d->subs);
	pthread_cond_destroy(&d->cond);
	pthread_mutex_destroy(&d->mu);
	free(d);
}
