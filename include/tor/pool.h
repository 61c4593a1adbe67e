/*
 * A replica of several groups (the `sources` form of tor.cfg): each group's
 * relay runs in a thread of its own with its own lease, token, checkpoint,
 * de-duplication and metrics; a group that halts gives its lease back and
 * the others go on.  docs/pool-design.md says why it is built so.
 */
#ifndef TOR_POOL_H
#define TOR_POOL_H

#include <signal.h>
#include <stddef.h>

#include "tor/config.h"
#include "tor/err.h"

/* Runs the n groups of cfgs (from tor_config_load_sources; the process
 * keys, instance, http and log, are cfgs[0]'s) until *stop (every group
 * ends as a replica of one does at a stop: 0), or until every group has
 * halted (-1 with err set). */
int tor_pool_run(const struct tor_config *cfgs, size_t n,
    volatile sig_atomic_t *stop, tor_err *err);

#endif
