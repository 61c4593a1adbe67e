/*
 * The driver: one thread that steps every elector of the process, each
 * when its step is due (the ms tor_elector_step returned), and, for the
 * electors on Redis, one listener thread that hears the hand-off wake-ups
 * (the release's PUBLISH on the free channel, tor_lease_free_channel) and
 * makes the follower of that group compete at once.
 *
 * Among steps due at the same time a leader's comes first: its renew keeps
 * a lease, a follower's attempt only tries for one.  A transition made in
 * another thread (resign, end, release, hold-off, hand-over, an acquire
 * mode) wakes the driver, which steps that elector at once.  A lost
 * wake-up costs a follower its retry period, nothing else.
 *
 * Safety does not rest on the driver being on time: a leader's deadline
 * counts from the send of its last successful renew and the relay reads
 * it itself; a late driver loses leases, it never lets two leaders
 * publish.  Signals stay with the main thread.
 */
#ifndef TOR_ELECTORS_H
#define TOR_ELECTORS_H

#include "tor/elector.h"
#include "tor/err.h"

struct tor_electors;

struct tor_electors *tor_electors_new(void);

/* Adds el (before tor_electors_start; el must outlive the driver).  0, or
 * -1 with err set. */
int tor_electors_add(struct tor_electors *d, struct tor_elector *el,
    tor_err *err);

/* Starts the driver thread and, when an elector runs on Redis, the
 * listener.  0, or -1 with err set. */
int tor_electors_start(struct tor_electors *d, tor_err *err);

/* Stops both threads; waits for a Redis call in flight (at most its
 * command timeout).  Harmless when not started, or twice. */
void tor_electors_stop(struct tor_electors *d);

/* Stops, then frees the driver (not the electors). */
void tor_electors_free(struct tor_electors *d);

#endif
