/*
 * The pool's balancer (see include/tor/balancer.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tor/balancer.h"
#include "tor/clock.h"
#include "tor/log.h"
#include "tor/redis.h"

/* Members a beat reads at most: far more replicas than a pool needs. */
#define MEMBERS_MAX 256

struct tor_balancer {
	const struct tor_config *cfgs;  /* cfgs[0]: the pool's keys */
	struct tor_elector *const *els;
	size_t n;
	struct tor_redis *redis;        /* on the pool's slot */
	uint64_t groups_hash;

	struct tor_member members[MEMBERS_MAX];
	size_t n_members;
	int64_t server_ms;              /* Redis's time at the last beat */

	int64_t next_beat_ms;           /* monotonic */
	int64_t over_since_ms;          /* leading above the share since, or 0 */
	int in_flight;                  /* hand-overs asked for, not done */
	int64_t quiet_until_ms;         /* no hand-over before (monotonic) */
	int paused;                     /* why balancing pauses, logged once */
	bool stuck_logged;              /* above the share, nobody to take */
	bool drained;                   /* the last beat said draining */

	struct tor_pool_metrics m;
};

enum pause {
	RUNNING,
	PAUSE_REDIS,
	PAUSE_MISMATCH,
};

struct tor_balancer *
tor_balancer_new(const struct tor_config *cfgs,
    struct tor_elector *const *els, size_t n, tor_err *err)
{
	struct tor_balancer *b = calloc(1, sizeof(*b));
	char tag[300];

	if (b == NULL) {
		tor_err_set(err, "out of memory");
		return NULL;
	}
	b->cfgs = cfgs;
	b->els = els;
	b->n = n;
	b->groups_hash = tor_pool_groups_hash(cfgs, n);
	snprintf(tag, sizeof(tag), "pool:%s", cfgs[0].pool.name);
	if ((b->redis = tor_redis_new_tag(&cfgs[0], tag)) == NULL) {
		free(b);
		tor_err_set(err, "out of memory");
		return NULL;
	}
	atomic_store(&b->m.share, -1);
	return b;
}

void
tor_balancer_free(struct tor_balancer *b)
{
	if (b == NULL)
		return;
	tor_redis_free(b->redis);
	free(b);
}

struct tor_pool_metrics *
tor_balancer_metrics(struct tor_balancer *b)
{
	return &b->m;
}

static int
leading(const struct tor_balancer *b)
{
	int led = 0;

	for (size_t i = 0; i < b->n; i++)
		if (tor_elector_state(b->els[i]) == TOR_LEADER)
			led++;
	return led;
}

/* How every elector competes: ANY below the share, TAKEOVER_ONLY at it (a
 * dead holder's lease is still taken over at once, and a lease left free
 * for long), NONE at pool.max_leading.  A leader is not affected. */
static void
set_modes(struct tor_balancer *b, int led, int share)
{
	enum tor_acquire_mode mode = led >= b->cfgs[0].pool.max_leading ?
	    TOR_ACQUIRE_NONE : share >= 0 && led >= share ?
	    TOR_ACQUIRE_TAKEOVER_ONLY : TOR_ACQUIRE_ANY;

	for (size_t i = 0; i < b->n; i++)
		tor_elector_set_acquire(b->els[i], mode);
	if (atomic_exchange(&b->m.at_cap, mode == TOR_ACQUIRE_NONE) !=
	    (mode == TOR_ACQUIRE_NONE) && mode == TOR_ACQUIRE_NONE)
		log_warn("pool", "leading %d groups, pool.max_leading: taking "
		    "no more", led);
}

/* Balancing pauses: every group competes under the plain lease rules. */
static void
pause_balancing(struct tor_balancer *b, enum pause why, const char *msg,
    int led)
{
	if (b->paused != (int)why)
		log_warn("pool", "balancing paused, every group competes as "
		    "alone: %s", msg);
	b->paused = why;
	b->over_since_ms = 0;
	atomic_store(&b->m.share, -1);
	set_modes(b, led, -1);
}

static void
record(struct tor_balancer *b, const char *what, const char *group,
    const char *target, int led, int share)
{
	char line[TOR_DECISION_MAX];
	tor_err err;

	snprintf(line, sizeof(line), "%" PRId64 " %s %s %s %s leading=%d,"
	    "share=%d", b->server_ms, b->cfgs[0].instance, what, group, target,
	    led, share);
	if (tor_members_record(b->redis, &b->cfgs[0], line, &err) < 0)
		log_warn("pool", "cannot record the decision: %s", err.msg);
}

/* The next group to hand over: of those led and not chosen yet, the one
 * this instance's rendezvous hash ranks lowest.  Its index in the groups,
 * or b->n when none is left. */
static size_t
group_to_shed(const struct tor_balancer *b, const bool *chosen)
{
	const char *names[b->n];
	size_t idx[b->n], k = 0;

	for (size_t i = 0; i < b->n; i++)
		if (!chosen[i] && tor_elector_state(b->els[i]) == TOR_LEADER) {
			names[k] = b->cfgs[i].group;
			idx[k++] = i;
		}
	return k == 0 ? b->n : idx[tor_pool_pick_group(b->cfgs[0].instance,
	    names, k)];
}

/*
 * The hand-overs of one round: the surplus (led - share) given out one
 * group at a time to the member tor_pool_pick_target names, each choice
 * counted against that member before the next, so that members below
 * their share are filled up together.  Into h[0..cap); returns how many.
 */
static size_t
plan(struct tor_balancer *b, int led, int share, struct tor_handover *h,
    size_t cap)
{
	const struct tor_pool_config *p = &b->cfgs[0].pool;
	struct tor_member *m = malloc(b->n_members * sizeof(*m));
	bool *chosen = calloc(b->n, sizeof(*chosen));
	size_t k = 0, g;
	int t;

	if (m == NULL || chosen == NULL) {
		free(m);
		free(chosen);
		return 0;
	}
	memcpy(m, b->members, b->n_members * sizeof(*m));
	while (k < cap && (int)k < led - share) {
		t = tor_pool_pick_target(m, b->n_members, b->cfgs[0].instance,
		    share, p->settle_ms, b->server_ms);
		if (t < 0 || (g = group_to_shed(b, chosen)) == b->n)
			break;
		chosen[g] = true;
		m[t].led++;
		h[k].group = g;
		snprintf(h[k].target, sizeof(h[k].target), "%s",
		    m[t].instance);
		k++;
	}
	free(m);
	free(chosen);
	return k;
}

size_t
tor_balancer_tick(struct tor_balancer *b, bool healthy, bool draining,
    struct tor_handover *h, size_t cap)
{
	const struct tor_pool_config *p = &b->cfgs[0].pool;
	struct tor_member me = { .healthy = healthy, .draining = draining,
	    .max_leading = p->max_leading, .groups_hash = b->groups_hash };
	int64_t now = tor_mono_ms();
	int led, share;
	size_t k;
	tor_err err;

	/* A stop is said at once, not at the next beat. */
	if (now < b->next_beat_ms && !(draining && !b->drained))
		return 0;
	b->drained = draining;
	b->next_beat_ms = now + p->beat_ms;
	led = leading(b);
	me.led = led;
	snprintf(me.instance, sizeof(me.instance), "%s", b->cfgs[0].instance);
	atomic_store(&b->m.leading, led);
	if (tor_members_beat(b->redis, &b->cfgs[0], &me, b->members,
	    MEMBERS_MAX, &b->n_members, &b->server_ms, &err) < 0) {
		atomic_fetch_add(&b->m.beats_failed, 1);
		pause_balancing(b, PAUSE_REDIS, err.msg, led);
		return 0;
	}
	atomic_store(&b->m.members, (int)b->n_members);
	for (size_t i = 0; i < b->n_members; i++)
		if (b->members[i].groups_hash != b->groups_hash) {
			char why[TOR_MEMBER_INSTANCE_MAX + 100];

			snprintf(why, sizeof(why), "member %s runs other "
			    "sources (a rollout?)", b->members[i].instance);
			atomic_store(&b->m.config_mismatch, true);
			pause_balancing(b, PAUSE_MISMATCH, why, led);
			return 0;
		}
	atomic_store(&b->m.config_mismatch, false);
	if (b->paused != RUNNING)
		log_info("pool", "balancing again: %zu members agree",
		    b->n_members);
	b->paused = RUNNING;
	share = tor_pool_share(b->members, b->n_members, me.instance,
	    (int)b->n, p->settle_ms, b->server_ms, p->max_leading);
	atomic_store(&b->m.share, share);
	atomic_store(&b->m.counted, tor_pool_counted(b->members,
	    b->n_members, me.instance, p->settle_ms, b->server_ms));
	set_modes(b, led, share);
	if (draining || led <= share) {
		b->over_since_ms = 0;
		b->stuck_logged = false;
		return 0;
	}
	if (b->over_since_ms == 0)
		b->over_since_ms = now;
	if (now - b->over_since_ms < p->settle_ms || b->in_flight > 0 ||
	    now < b->quiet_until_ms)
		return 0;
	if ((k = plan(b, led, share, h, cap)) == 0) {
		if (!b->stuck_logged)
			log_info("pool", "leading %d groups, share %d: no "
			    "settled healthy member below its share to take "
			    "one", led, share);
		b->stuck_logged = true;
		return 0;
	}
	b->stuck_logged = false;
	for (size_t i = 0; i < k; i++) {
		log_info("pool", "handing group %s over to %s: leading %d, "
		    "share %d", b->cfgs[h[i].group].group, h[i].target, led,
		    share);
		record(b, "shed", b->cfgs[h[i].group].group, h[i].target, led,
		    share);
	}
	b->in_flight = (int)k;
	return k;
}

void
tor_balancer_handed_over(struct tor_balancer *b, bool done)
{
	if (done)
		atomic_fetch_add(&b->m.handovers, 1);
	/* The next round after the members' next beats show this one. */
	if (b->in_flight > 0 && --b->in_flight == 0)
		b->quiet_until_ms = tor_mono_ms() + 2 *
		    b->cfgs[0].pool.beat_ms;
}

void
tor_balancer_leave(struct tor_balancer *b)
{
	tor_err err;

	if (b == NULL)
		return;
	if (tor_members_leave(b->redis, &b->cfgs[0], &err) < 0)
		log_warn("pool", "cannot leave the pool (its line expires by "
		    "itself): %s", err.msg);
}
