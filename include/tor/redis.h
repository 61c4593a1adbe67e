/*
 * One Redis connection with the settings of cfg->redis (timeouts, AUTH,
 * SELECT), reconnected on demand.  With redis.sentinel.master set, every
 * (re)connect first asks the Sentinels where the master is, so the next
 * command after a connection error follows a failover.
 *
 * With redis.cluster.nodes set, the connection goes to the node that
 * serves the group's hash slot, and commands follow the cluster's MOVED,
 * ASK and TRYAGAIN answers (at most 5 per command).
 *
 * A connection is not thread-safe: each thread that talks to Redis owns
 * its own tor_redis.  A command that fails because the connection broke is
 * not retried here: the caller decides (a lease renew must not be replayed
 * blindly); the next command reconnects first.
 */
#ifndef TOR_REDIS_H
#define TOR_REDIS_H

#include <stdbool.h>
#include <stddef.h>

#include <hiredis/hiredis.h>

#include "tor/config.h"
#include "tor/err.h"

struct tor_redis;

/* Does not connect yet; the first command does. */
struct tor_redis *tor_redis_new(const struct tor_config *cfg);
void tor_redis_free(struct tor_redis *r);

/* As tor_redis_new, for keys of the hash tag {tag} instead of the group's
 * (the pool's keys, "pool:<name>"): in cluster mode the connection goes to
 * the node that serves that slot, and messages name "keys {tag}". */
struct tor_redis *tor_redis_new_tag(const struct tor_config *cfg,
    const char *tag);

/* Connects (or reconnects) now: connect with redis.timeout_ms, AUTH when a
 * password is set, SELECT redis.db.  In Sentinel mode the server is the one
 * the first answering Sentinel names (redis.sentinel.nodes in order) and
 * ROLE confirms as a master; a change of master is logged at info.  When
 * no Sentinel leads to a master, err reads "redis master <name>: no usable
 * master from sentinels <nodes>; last: <reason>". */
int tor_redis_connect(struct tor_redis *r, tor_err *err);

/* Does now what a command would do first: follows a Sentinel failover
 * when the check is due, and connects when not connected.  0, or -1 with
 * err set as tor_redis_command's.  A command right after it is one round
 * trip (the lease's acquire times its request from there). */
int tor_redis_ready(struct tor_redis *r, tor_err *err);

/* Runs one command given as argv (binary-safe).  Returns the reply (free it
 * with freeReplyObject) or NULL with err set for a connection failure or a
 * Redis error reply ("redis 127.0.0.1:6379: ERR ...").  In Sentinel mode,
 * at most once per ha.renew_ms (and at least once a second) a Sentinel is
 * asked first whether the master moved, and a move or a READONLY reply
 * drops the connection so that the next command follows the new master. */
redisReply *tor_redis_command(struct tor_redis *r, int argc,
    const char **argv, const size_t *argvlen, tor_err *err);

/* Asks ROLE (connecting first if need be).  Returns how many replicas the
 * master lists, or -1 with err set: a Redis error, or the server is not a
 * master ("redis host:port: ROLE: slave, not a master"). */
int tor_redis_replicas(struct tor_redis *r, tor_err *err);

/* Asks the server how it keeps data (CONFIG GET) and logs a warning for
 * each setting the lease and checkpoint cannot live with: no persistence,
 * maxmemory with an eviction policy, and under Sentinel a master that
 * takes writes without replicas (min-replicas-to-write 0).  Best effort: a
 * server that does not answer CONFIG (ACL, renamed) is left alone, but
 * under Sentinel the log says that min-replicas-to-write went unchecked. */
void tor_redis_check_settings(struct tor_redis *r);

/* Who this connection is (CLIENT ID) on which run of which server (INFO's
 * run_id), asked once per connection (connecting first if need be).
 * *client_id is 0 when the server would not say (an ACL).  Returns 0, or -1
 * with err set when Redis cannot be reached. */
int tor_redis_identity(struct tor_redis *r, char *run_id, size_t cap,
    long long *client_id, tor_err *err);

/* Whether client client_id is connected to the server now (CLIENT LIST ID,
 * Redis 6.2+): 1 yes, 0 no, -1 with err set (an error, or refused). */
int tor_redis_client_connected(struct tor_redis *r, long long client_id,
    tor_err *err);

/* Whether the connection is gone: never made, dropped after an error, or
 * closed by the server since the last command (looked at without
 * blocking).  A closed one is dropped, so the next command reconnects. */
bool tor_redis_lost(struct tor_redis *r);

/* A number that changes whenever the connection is dropped: two reads
 * that agree, with the connection up at both, saw the same connection. */
uint64_t tor_redis_connection(const struct tor_redis *r);

/* PING on the connection as it stands: never connects, never asks a
 * Sentinel.  Returns 1 answered, 0 when not connected, -1 with err set on
 * an error (the connection is then dropped). */
int tor_redis_ping(struct tor_redis *r, tor_err *err);

/* What a Redis Cluster error reply asks of the client. */
enum tor_redirect {
	TOR_REDIRECT_NONE = 0,  /* not a redirection */
	TOR_REDIRECT_MOVED,     /* the slot lives at host:port from now on */
	TOR_REDIRECT_ASK,       /* this command only: ASKING, then it, there */
	TOR_REDIRECT_TRYAGAIN   /* the keys are mid-migration: send again */
};

/* Reads an error reply's text: "MOVED <slot> <host>:<port>", "ASK <slot>
 * <host>:<port>" (host may be "[v6]" or empty: the node that answered)
 * fill *slot, host and *port; "TRYAGAIN ..." fills nothing.  Returns a
 * tor_redirect, or -1 for a MOVED or ASK that does not parse. */
int tor_redis_parse_redirect(const char *text, int *slot, char *host,
    size_t cap, int *port);

/* The Redis Cluster hash slot of key (CRC16 of its hash tag, or of the
 * whole key when it has none, modulo 16384). */
int tor_redis_slot(const char *key);

/* A subscribed connection (SUBSCRIBE): tor_redis_send sends one command
 * without waiting for its reply (connecting first, as a command would:
 * in Sentinel mode to the current master, in Cluster mode to the node of
 * the group's slot, which hears every node's PUBLISH); tor_redis_receive
 * waits up to wait_ms for the next reply: 1 with *reply set (free it), 0
 * none came, -1 with err set (the connection is then dropped; the next
 * send reconnects).  Not to be mixed with tor_redis_command. */
int tor_redis_send(struct tor_redis *r, int argc, const char **argv,
    tor_err *err);
int tor_redis_receive(struct tor_redis *r, int wait_ms, redisReply **reply,
    tor_err *err);

/* How long the commands that follow wait for their replies (0: back to
 * redis.timeout_ms).  Connecting keeps redis.timeout_ms. */
void tor_redis_set_wait(struct tor_redis *r, int wait_ms);

/* Builds the key "<prefix>:{<group>}:<name>" into buf. */
void tor_redis_key(const struct tor_config *cfg, const char *name, char *buf,
    size_t cap);

#endif
