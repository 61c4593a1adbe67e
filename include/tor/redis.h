/*
 * One Redis connection with the settings of cfg->redis (timeouts, AUTH,
 * SELECT), reconnected on demand.
 *
 * hiredis contexts are not thread-safe: each thread that talks to Redis owns
 * its own tor_redis.  A command that fails because the connection broke is
 * not retried here: the caller decides (a lease renew must not be replayed
 * blindly); the next command reconnects first.
 */
#ifndef TOR_REDIS_H
#define TOR_REDIS_H

#include <hiredis/hiredis.h>

#include "tor/config.h"
#include "tor/err.h"

struct tor_redis;

/* Does not connect yet; the first command does. */
struct tor_redis *tor_redis_new(const struct tor_config *cfg);
void tor_redis_free(struct tor_redis *r);

/* Connects (or reconnects) now: connect with redis.timeout_ms, AUTH when a
 * password is set, SELECT redis.db. */
int tor_redis_connect(struct tor_redis *r, tor_err *err);

/* Runs one command given as argv (binary-safe).  Returns the reply (free it
 * with freeReplyObject) or NULL with err set for a connection failure or a
 * Redis error reply ("redis 127.0.0.1:6379: ERR ..."). */
redisReply *tor_redis_command(struct tor_redis *r, int argc,
    const char **argv, const size_t *argvlen, tor_err *err);

/* Builds the key "<prefix>:{<group>}:<name>" into buf. */
void tor_redis_key(const struct tor_config *cfg, const char *name, char *buf,
    size_t cap);

#endif
