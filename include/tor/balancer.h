/*
 * The pool's balancer (docs/pool-design.md §4): every pool.beat_ms it
 * records this replica in the pool's membership (tor/members.h), works out
 * its share of the groups, tells each elector how to compete, and picks
 * the group to hand over when this replica leads more than its share.
 *
 * It never takes a lease itself: the electors do, under the plain lease
 * rules, so that no group's liveness rests on it.  It runs in the pool's
 * main thread.
 */
#ifndef TOR_BALANCER_H
#define TOR_BALANCER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tor/config.h"
#include "tor/elector.h"
#include "tor/err.h"
#include "tor/members.h"
#include "tor/metrics.h"

struct tor_balancer;

/* The groups' configs (cfgs[0]'s pool, instance, redis and prefix are the
 * pool's) and their electors, in the same order; all must outlive it. */
struct tor_balancer *tor_balancer_new(const struct tor_config *cfgs,
    struct tor_elector *const *els, size_t n, tor_err *err);
void tor_balancer_free(struct tor_balancer *b);

/* A hand-over the balancer asks for: group index, and the member meant to
 * take it (tor_lease_set_handoff_to). */
struct tor_handover {
	size_t group;
	char target[TOR_MEMBER_INSTANCE_MAX];
};

/*
 * Called every tick; beats when one is due.  healthy: this replica's Kafka
 * answers; draining: it is stopping (its last beat says so, and it sheds
 * nothing).  Fills h[0..cap) with the groups to hand over now, each with
 * the member meant to take it (when this replica leads more than its
 * share: the surplus, spread over the members below theirs), and returns
 * how many; the caller ends each one's leadership and tells the balancer
 * with tor_balancer_handed_over.  The next round comes two beats after the
 * last of them is done.
 */
size_t tor_balancer_tick(struct tor_balancer *b, bool healthy,
    bool draining, struct tor_handover *h, size_t cap);

/* One hand-over of tor_balancer_tick is done (or gave up: done false). */
void tor_balancer_handed_over(struct tor_balancer *b, bool done);

/* Leaves the pool at a clean exit (the others stop counting this replica
 * at once). */
void tor_balancer_leave(struct tor_balancer *b);

struct tor_pool_metrics *tor_balancer_metrics(struct tor_balancer *b);

#endif
