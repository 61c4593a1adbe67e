/*
 * The operator's commands beside running a replica (DESIGN.md §7):
 *
 *   tor status -c tor.cfg
 *   tor checkpoint show -c tor.cfg
 *   tor checkpoint set --to <file>:<pos>|<gtid>|end -c tor.cfg
 *   tor checkpoint import --go-tor-key KEY [--redis-host H ...] -c tor.cfg
 *
 * They read and write the group's keys in Redis and, for `set`, ask the MySQL
 * server whether it still has the position.  Output is for people and for
 * scripts: one "key: value" line per fact, or with json one JSON object of
 * the same keys (absent facts null).
 */
#ifndef TOR_CLI_H
#define TOR_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "tor/config.h"

/* Prints each of the n groups' leader (instance, token, lease ms left) and
 * checkpoint (position, gtid, age, token): a blank line between groups, or
 * one JSON object a line; then, for several groups of a pool, the pool's
 * members, share and last decisions.  Exit code: 0 when a leader holds
 * every group's lease, 1 when one has none, 2 when Redis cannot be asked. */
int tor_cli_status(const struct tor_config *cfgs, size_t n, bool json,
    FILE *out);

/* `checkpoint show`: the checkpoint's fields; exit 0, 1 when there is none, 2
 * on error.  `checkpoint set --to X`: refuses (exit 1, message naming the
 * position) a position the server no longer has or a malformed one; else
 * writes it with a fresh token, breaks the lease so the running leader steps
 * down and the next one starts there, prints what it wrote, exit 0. */
int tor_cli_checkpoint_show(const struct tor_config *cfg, bool json,
    FILE *out);
int tor_cli_checkpoint_set(const struct tor_config *cfg, const char *to,
    FILE *out);

/* Where `checkpoint import` finds the Go tor's position: its Redis key, in
 * the Redis at host:port/db (host NULL: tor's own Redis). */
struct tor_go_tor_source {
	const char *key;
	const char *host;
	int port;
	int db;
};

/* `checkpoint import`: reads the Go tor's position (JSON {"name": file,
 * "pos": n}), moves it back to the start of its transaction when it lies
 * inside one, and writes it as the group's checkpoint as `set` does (a
 * fresh token, the leader steps down).  Exit 0; 1 when the key is missing
 * or not a Go tor position, or the server refuses the position; 2 when
 * Redis or MySQL cannot be asked. */
int tor_cli_checkpoint_import(const struct tor_config *cfg,
    const struct tor_go_tor_source *src, FILE *out);

#endif
