/*
 * One Redis connection, set up as cfg->redis says and rebuilt on demand.
 * The bytes go through ha/link.c (TCP, or TLS when redis.tls or
 * redis.sentinel.tls is enabled); hiredis builds the commands and parses
 * the replies.
 *
 * The idea: a connection that has seen an error is not trusted again (a
 * reply may be half read), so we free it at once and keep NULL; the next
 * command finds NULL and connects again, with AUTH and SELECT, before it
 * runs.  A failed command is never replayed here — a lease renew or a
 * checkpoint write must be retried only by a caller that knows it is safe.
 * Every error names the server ("redis host:port: ...") and never the
 * password.
 *
 * With redis.sentinel.master set, "connect" means "find the master first":
 * each Sentinel in turn is asked for the master's address, and the server it
 * names is used only if ROLE says it is a master (a Sentinel's view lags a
 * failover by a moment; a just-demoted master must not take our writes).
 * Because every reconnect goes through the Sentinels again, a failover is
 * followed simply by dropping the connection: on a connection error, on a
 * READONLY reply (the server we hold was demoted under us), and when a
 * Sentinel names another master.  That last check matters most: Sentinel
 * demotes the old master only seconds after it promoted a replica, and
 * until then the old one takes writes that the new one never sees — a
 * leader renewing its lease there would let the lease on the new master
 * expire.  So before a command, at most once per ha.renew_ms, we ask a
 * Sentinel (on a connection kept for that) who the master is.
 *
 * With redis.cluster.nodes set, "connect" means "find the node that serves
 * the group's slot": every key of a group carries the hash tag {<group>},
 * so one slot holds them all, and one connection to its master serves
 * every command, the keyless ones (ROLE, WAIT, CLIENT ID) included.  A
 * node is asked CLUSTER SLOTS at each connect.  The cluster's own
 * redirections are followed inside a command, since a redirected command
 * did not run and may be sent again: MOVED moves the connection to the
 * named node for good, ASK sends ASKING and that one command to the named
 * node, TRYAGAIN (the group's keys half migrated) waits a moment and sends
 * again.  A node that fails makes the next connect start over from the
 * configured nodes.  Scripts go out as EVAL with their text, so a node
 * never lacks one (no NOSCRIPT after a redirect).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tor/clock.h"
#include "tor/link.h"
#include "tor/log.h"
#include "tor/redis.h"

struct tor_redis {
	const struct tor_config *cfg;
	struct tor_link *c;     /* NULL: not connected */
	const char *host;       /* the server c talks to (or last tried) */
	int port;
	/* Sentinel mode only: */
	char master_host[256];  /* the master; host points here */
	char followed[280];     /* "host:port" last followed, so that a change
				   of master is logged once */
	struct tor_link *sc;    /* kept connection to a Sentinel, or NULL */
	size_t sc_node;         /* which of redis.sentinel.nodes sc talks to */
	int64_t checked_ms;     /* when a Sentinel last confirmed the master */
	/* Who c is on which server run (tor_redis_identity), asked once per
	 * connection; client_id 0 when the server would not say. */
	bool identified;
	long long client_id;
	char run_id[48];
	uint64_t drops;         /* connections dropped (tor_redis_connection) */
	int wait_ms;            /* a command's wait for its reply, 0: the
				   config's redis.timeout_ms */
	/* redis.tls and redis.sentinel.tls set up, at the first connect that
	 * needs them; NULL before and in clear text. */
	struct tor_link_tls *tls;
	struct tor_link_tls *sentinel_tls;
	/* Cluster mode only: */
	int slot;               /* the hash slot of the keys served */
	char owner[320];        /* whose slot, for messages: "group <G>" */
	char node_host[256];    /* the node that serves it; host points here */
	int node_port;          /* 0: none known, ask the configured nodes */
};

/* Redirections (MOVED, ASK) and TRYAGAIN waits one command may take before
 * it fails: a slot map that keeps moving is an error, not a loop. */
#define MAX_REDIRECTS 5
#define TRYAGAIN_WAIT_MS 20

/* How often the master is checked with a Sentinel: once per lease renew,
 * so that a leader's renews move to a new master while the lease it
 * replicated there still holds; at least once a second otherwise. */
#define CHECK_MAX_MS 1000

static bool
use_sentinel(const struct tor_config *cfg)
{
	/* Hand-built configs (unit tests) leave the group zeroed. */
	return cfg->redis.sentinel.master != NULL &&
	    cfg->redis.sentinel.master[0] != '\0';
}

static bool
use_cluster(const struct tor_config *cfg)
{
	return cfg->redis.cluster.n_nodes > 0;
}

/* CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), Redis Cluster's key
 * hash. */
static unsigned
crc16(const char *s, size_t len)
{
	unsigned crc = 0;

	for (size_t i = 0; i < len; i++) {
		crc ^= (unsigned)(unsigned char)s[i] << 8;
		for (int b = 0; b < 8; b++)
			crc = (crc & 0x8000) != 0 ? (crc << 1) ^ 0x1021 :
			    crc << 1;
		crc &= 0xffff;
	}
	return crc;
}

int
tor_redis_slot(const char *key)
{
	const char *lb = strchr(key, '{'), *rb;

	/* The hash tag: what lies between the first '{' and the next '}',
	 * when that is not empty; else the whole key. */
	if (lb != NULL && (rb = strchr(lb + 1, '}')) != NULL && rb > lb + 1)
		return (int)(crc16(lb + 1, (size_t)(rb - lb - 1)) % 16384);
	return (int)(crc16(key, strlen(key)) % 16384);
}

struct tor_redis *
tor_redis_new(const struct tor_config *cfg)
{
	struct tor_redis *r;
	char key[512];

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	r->cfg = cfg;
	r->host = cfg->redis.host;
	r->port = cfg->redis.port;
	if (use_cluster(cfg)) {
		r->host = r->node_host;
		tor_redis_key(cfg, "", key, sizeof(key));
		r->slot = tor_redis_slot(key);
		snprintf(r->owner, sizeof(r->owner), "group %s", cfg->group);
	}
	return r;
}

struct tor_redis *
tor_redis_new_tag(const struct tor_config *cfg, const char *tag)
{
	struct tor_redis *r;
	char key[300];

	if ((r = tor_redis_new(cfg)) == NULL)
		return NULL;
	snprintf(key, sizeof(key), "{%s}", tag);
	r->slot = tor_redis_slot(key);
	snprintf(r->owner, sizeof(r->owner), "keys %s", key);
	return r;
}

static void
drop_connection(struct tor_redis *r)
{
	if (r->c != NULL)
		r->drops++;
	tor_link_free(r->c);
	r->c = NULL;
	r->identified = false;
}

static void
drop_sentinel(struct tor_redis *r)
{
	tor_link_free(r->sc);
	r->sc = NULL;
}

void
tor_redis_free(struct tor_redis *r)
{
	if (r == NULL)
		return;
	drop_connection(r);
	drop_sentinel(r);
	tor_link_tls_free(r->tls);
	tor_link_tls_free(r->sentinel_tls);
	free(r);
}

static int
server_err(tor_err *err, const char *host, int port, const char *what,
    const char *text)
{
	return tor_err_set(err, "redis %s:%d: %s%s%s", host, port, what,
	    what[0] != '\0' ? ": " : "", text);
}

static int
redis_err(const struct tor_redis *r, tor_err *err, const char *what,
    const char *text)
{
	return server_err(err, r->host, r->port, what, text);
}

/*
 * Opens a connection to host:port, to a Sentinel or to a Redis server, in
 * TLS when its tls group says so; redis.timeout_ms bounds the connect, the
 * handshake and each command.  Returns the link, or NULL with err naming
 * host:port.
 */
static struct tor_link *
dial(struct tor_redis *r, bool sentinel, const char *host, int port,
    tor_err *err)
{
	const struct tor_redis_tls *cfg = sentinel ?
	    &r->cfg->redis.sentinel.tls : &r->cfg->redis.tls;
	const char *path = sentinel ? "redis.sentinel.tls" : "redis.tls";
	struct tor_link_tls **tls = sentinel ? &r->sentinel_tls : &r->tls;
	struct tor_link *l;
	const char *key;
	tor_err e;

	/* The loader tried the same files; this fails only if they changed
	 * since. */
	if (cfg->enabled && *tls == NULL &&
	    tor_link_tls_new(cfg, tls, &key, &e) == -1) {
		tor_err_set(err, "redis %s:%d: %s.%s: %s", host, port, path,
		    key, e.msg);
		return NULL;
	}
	l = tor_link_open(host, port, r->cfg->redis.timeout_ms,
	    cfg->enabled ? *tls : NULL, path, &e);
	if (l == NULL)
		server_err(err, host, port, "", e.msg);
	return l;
}

/* AUTH's arguments after the command: the user and the password for an
 * ACL user (Redis 6+), else the default user's password alone.  Returns
 * how many (with "AUTH"). */
static int
auth_args(const char *user, const char *password, const char *argv[3])
{
	bool acl = user != NULL && user[0] != '\0';

	argv[0] = "AUTH";
	argv[1] = acl ? user : password;
	argv[2] = password;
	return acl ? 3 : 2;
}

/* One setup command on link l to host:port: 0, or -1 with err naming the
 * server and what ("AUTH", "SELECT"). */
static int
setup_command(struct tor_link *l, const char *host, int port, int argc,
    const char **argv, const char *what, tor_err *err)
{
	redisReply *reply;
	tor_err e;
	int rc = -1;

	if ((reply = tor_link_command(l, argc, argv, NULL, &e)) == NULL)
		server_err(err, host, port, what, e.msg);
	else if (reply->type == REDIS_REPLY_ERROR)
		server_err(err, host, port, what, reply->str);
	else
		rc = 0;
	if (reply != NULL)
		freeReplyObject(reply);
	return rc;
}

/* AUTH (as redis.user when set) when a password is set, SELECT redis.db,
 * on link l to host:port. */
static int
link_auth(struct tor_redis *r, struct tor_link *l, const char *host,
    int port, tor_err *err)
{
	const struct tor_config *cfg = r->cfg;
	char db[16];

	if (cfg->redis.password != NULL && cfg->redis.password[0] != '\0') {
		const char *argv[3];
		int argc = auth_args(cfg->redis.user, cfg->redis.password,
		    argv);

		if (setup_command(l, host, port, argc, argv, "AUTH", err) < 0)
			return -1;
	}
	if (cfg->redis.db != 0) {
		const char *argv[] = { "SELECT", db };

		snprintf(db, sizeof(db), "%d", cfg->redis.db);
		if (setup_command(l, host, port, 2, argv, "SELECT", err) < 0)
			return -1;
	}
	return 0;
}

/* AUTH and SELECT on the live connection; drops it on failure. */
static int
authenticate(struct tor_redis *r, tor_err *err)
{
	if (link_auth(r, r->c, r->host, r->port, err) == -1) {
		drop_connection(r);
		return -1;
	}
	return 0;
}

/* Splits "host:port" or "[v6]:port" (validated by the config loader). */
static void
split_node(const char *node, char *host, size_t cap, int *port)
{
	const char *colon = strrchr(node, ':');
	size_t len = (size_t)(colon - node);

	if (node[0] == '[' && len >= 2) {
		node++;
		len -= 2;
	}
	snprintf(host, cap, "%.*s", (int)len, node);
	*port = atoi(colon + 1);
}

/* Waits ms (TRYAGAIN: the keys of the slot are on both sides of a
 * migration for a moment). */
static void
pause_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

int
tor_redis_parse_redirect(const char *text, int *slot, char *host,
    size_t cap, int *port)
{
	const char *sp, *colon;
	char *end;
	long n;
	int kind;

	if (strncmp(text, "TRYAGAIN", 8) == 0 &&
	    (text[8] == '\0' || text[8] == ' '))
		return TOR_REDIRECT_TRYAGAIN;
	if (strncmp(text, "MOVED ", 6) == 0)
		kind = TOR_REDIRECT_MOVED;
	else if (strncmp(text, "ASK ", 4) == 0)
		kind = TOR_REDIRECT_ASK;
	else
		return TOR_REDIRECT_NONE;
	sp = strchr(text, ' ') + 1;
	errno = 0;
	n = strtol(sp, &end, 10);
	if (errno != 0 || end == sp || *end != ' ' || n < 0 || n > 16383)
		return -1;
	*slot = (int)n;
	sp = end + 1;
	/* "host:port", "[v6]:port", or ":port" (the node asked: a node that
	 * does not know its own address). */
	if ((colon = strrchr(sp, ':')) == NULL)
		return -1;
	n = strtol(colon + 1, &end, 10);
	if (end == colon + 1 || *end != '\0' || n < 1 || n > 65535 ||
	    (size_t)(colon - sp) >= cap)
		return -1;
	*port = (int)n;
	if (sp[0] == '[' && colon > sp + 1 && colon[-1] == ']')
		snprintf(host, cap, "%.*s", (int)(colon - sp - 2), sp + 1);
	else
		snprintf(host, cap, "%.*s", (int)(colon - sp), sp);
	return kind;
}

/* Logs the node that serves the group's slot when it is a new one: once
 * at the first connect, once after each move.  how says why we went. */
static void
note_node(struct tor_redis *r, const char *how)
{
	char now[sizeof(r->followed)];

	snprintf(now, sizeof(now), "%s:%d", r->host, r->port);
	if (strcmp(now, r->followed) == 0)
		return;
	if (r->followed[0] == '\0')
		log_info("redis", "cluster slot %d (%s) is served by %s (%s)",
		    r->slot, r->owner, now, how);
	else
		log_info("redis", "following cluster slot %d (%s) to %s, "
		    "was %s (%s)", r->slot, r->owner, now, r->followed,
		    how);
	snprintf(r->followed, sizeof(r->followed), "%s", now);
}

/* Cluster mode: connects to host:port as the node of the slot (host may
 * be r->node_host itself).  0, or -1 with err set, not connected. */
static int
open_node(struct tor_redis *r, const char *host, int port, tor_err *err)
{
	char copy[sizeof(r->node_host)];

	drop_connection(r);
	snprintf(copy, sizeof(copy), "%s", host);
	memcpy(r->node_host, copy, sizeof(copy));
	r->host = r->node_host;
	r->port = r->node_port = port;
	if ((r->c = dial(r, false, r->host, r->port, err)) == NULL)
		return -1;
	return authenticate(r, err);
}

/* Sends argv to host:port after ASKING, on a connection of its own that
 * is closed after the reply: an ASK holds for this one command.  Returns
 * the reply (an error reply too), or NULL with err set. */
static redisReply *
ask_node(struct tor_redis *r, const char *host, int port, int argc,
    const char **argv, const size_t *argvlen, tor_err *err)
{
	const char *asking[] = { "ASKING" };
	struct tor_link *l;
	redisReply *reply = NULL;
	tor_err e;

	if ((l = dial(r, false, host, port, err)) == NULL)
		return NULL;
	if (link_auth(r, l, host, port, err) == 0 &&
	    setup_command(l, host, port, 1, asking, "ASKING", err) == 0 &&
	    (reply = tor_link_command(l, argc, argv, argvlen, &e)) == NULL)
		server_err(err, host, port, "", e.msg);
	tor_link_free(l);
	return reply;
}

/*
 * Runs one command on the live connection; a broken one is dropped so
 * that the next command reconnects.  what names the command in errors (""
 * for none).  In cluster mode a redirection is followed here (see the top
 * of the file), at most MAX_REDIRECTS times; err then names the slot and
 * the nodes the command went through.
 */
static redisReply *
run(struct tor_redis *r, int argc, const char **argv, const size_t *argvlen,
    const char *what, tor_err *err)
{
	char host[sizeof(r->node_host)], ask_host[sizeof(r->node_host)];
	char trail[512];
	const char *at_host = r->host;
	int at_port = r->port, hops = 0, slot, port, kind;
	size_t len;
	redisReply *reply;
	tor_err e;

	len = (size_t)snprintf(trail, sizeof(trail), "%s:%d", r->host, r->port);
	for (;;) {
		tor_link_set_timeout(r->c, r->wait_ms > 0 ? r->wait_ms :
		    r->cfg->redis.timeout_ms);
		if ((reply = tor_link_command(r->c, argc, argv, argvlen, &e)) ==
		    NULL) {
			redis_err(r, err, what, e.msg);
			drop_connection(r);
			return NULL;
		}
		at_host = r->host;
		at_port = r->port;
again:
		if (reply->type != REDIS_REPLY_ERROR)
			return reply;
		kind = use_cluster(r->cfg) ? tor_redis_parse_redirect(
		    reply->str, &slot, host, sizeof(host), &port) :
		    TOR_REDIRECT_NONE;
		if (kind <= TOR_REDIRECT_NONE)
			break;
		if (hops++ == MAX_REDIRECTS) {
			tor_err_set(err, "redis cluster slot %d (%s): "
			    "%s: more than %d redirections (%s); last: %s",
			    r->slot, r->owner, what[0] != '\0' ? what :
			    argv[0], MAX_REDIRECTS, trail, reply->str);
			freeReplyObject(reply);
			return NULL;
		}
		if (kind == TOR_REDIRECT_TRYAGAIN) {
			freeReplyObject(reply);
			pause_ms(TRYAGAIN_WAIT_MS * hops);
			if (len < sizeof(trail))
				len += (size_t)snprintf(trail + len,
				    sizeof(trail) - len, " TRYAGAIN");
			continue;
		}
		if (host[0] == '\0')
			snprintf(host, sizeof(host), "%s", at_host);
		if (len < sizeof(trail))
			len += (size_t)snprintf(trail + len, sizeof(trail) - len,
			    " -%s-> %s:%d", kind == TOR_REDIRECT_MOVED ?
			    "MOVED" : "ASK", host, port);
		freeReplyObject(reply);
		if (kind == TOR_REDIRECT_MOVED) {
			if (open_node(r, host, port, err) == -1)
				return NULL;
			note_node(r, "MOVED");
			continue;
		}
		memcpy(ask_host, host, sizeof(host));
		if ((reply = ask_node(r, ask_host, port, argc, argv, argvlen,
		    err)) == NULL)
			return NULL;
		at_host = ask_host;
		at_port = port;
		goto again;
	}
	server_err(err, at_host, at_port, what, reply->str);
	/* The master we found was demoted: find the new one before the next
	 * command instead of failing on this one forever.  A cluster node
	 * that says the cluster is down is left the same way: the next
	 * command asks again who serves the slot. */
	if ((use_sentinel(r->cfg) && strncmp(reply->str, "READONLY", 8) == 0) ||
	    (use_cluster(r->cfg) && strncmp(reply->str, "CLUSTERDOWN", 11) == 0))
		drop_connection(r);
	freeReplyObject(reply);
	return NULL;
}

/* CLUSTER SLOTS on the live connection: the node that serves the group's
 * slot, into host and *port.  0, or -1 with err set. */
static int
slot_owner(struct tor_redis *r, char *host, size_t cap, int *port,
    tor_err *err)
{
	const char *argv[] = { "CLUSTER", "SLOTS" };
	redisReply *reply, *range, *node;
	char text[400];
	int rc = -1;

	if ((reply = run(r, 2, argv, NULL, "CLUSTER SLOTS", err)) == NULL)
		return -1;
	for (size_t i = 0; reply->type == REDIS_REPLY_ARRAY &&
	    i < reply->elements; i++) {
		range = reply->element[i];
		if (range->type != REDIS_REPLY_ARRAY || range->elements < 3 ||
		    range->element[0]->type != REDIS_REPLY_INTEGER ||
		    range->element[1]->type != REDIS_REPLY_INTEGER ||
		    r->slot < range->element[0]->integer ||
		    r->slot > range->element[1]->integer)
			continue;
		node = range->element[2];
		if (node->type != REDIS_REPLY_ARRAY || node->elements < 2 ||
		    node->element[0]->type != REDIS_REPLY_STRING ||
		    node->element[1]->type != REDIS_REPLY_INTEGER ||
		    node->element[1]->integer < 1 ||
		    node->element[1]->integer > 65535)
			break;
		/* An empty or unknown endpoint is the node asked. */
		snprintf(host, cap, "%s", node->element[0]->str[0] != '\0' &&
		    strcmp(node->element[0]->str, "?") != 0 ?
		    node->element[0]->str : r->host);
		*port = (int)node->element[1]->integer;
		rc = 0;
		break;
	}
	if (rc == -1) {
		snprintf(text, sizeof(text), "no node serves slot %d (%s) in "
		    "the reply", r->slot, r->owner);
		redis_err(r, err, "CLUSTER SLOTS", text);
	}
	freeReplyObject(reply);
	return rc;
}

/* Appends node to the list of nodes tried. */
static void
add_tried(char *tried, size_t cap, size_t *at, const char *host, int port)
{
	int n = snprintf(tried + *at, cap - *at, "%s%s:%d", *at > 0 ? ", " :
	    "", host, port);

	if (n > 0 && (size_t)n < cap - *at)
		*at += (size_t)n;
}

/*
 * Cluster mode's connect: the node last known to serve the slot first,
 * then redis.cluster.nodes in order; the first that answers CLUSTER SLOTS
 * names the node to use.  The error when none leads to it names the slot,
 * the nodes tried and the last reason.
 */
static int
connect_cluster(struct tor_redis *r, tor_err *err)
{
	const struct tor_config *cfg = r->cfg;
	char tried[512], why[sizeof(err->msg)], host[sizeof(r->node_host)];
	char owner[sizeof(r->node_host)], via[300];
	long k = r->node_port != 0 ? -1 : 0;
	size_t at = 0;
	int port, oport;
	tor_err e;

	tried[0] = '\0';
	why[0] = '\0';
	for (; k < (long)cfg->redis.cluster.n_nodes; k++) {
		if (k < 0) {
			snprintf(host, sizeof(host), "%s", r->node_host);
			port = r->node_port;
		} else
			split_node(cfg->redis.cluster.nodes[k], host,
			    sizeof(host), &port);
		add_tried(tried, sizeof(tried), &at, host, port);
		if (open_node(r, host, port, &e) == -1 ||
		    slot_owner(r, owner, sizeof(owner), &oport, &e) == -1) {
			drop_connection(r);
			snprintf(why, sizeof(why), "%s", e.msg);
			continue;
		}
		snprintf(via, sizeof(via), "CLUSTER SLOTS of %s:%d", host,
		    port);
		if ((oport != port || strcmp(owner, host) != 0) &&
		    open_node(r, owner, oport, &e) == -1) {
			snprintf(why, sizeof(why), "%.400s (named by %.64s:%d)",
			    e.msg, host, port);
			continue;
		}
		note_node(r, via);
		return 0;
	}
	r->node_port = 0;
	return tor_err_set(err, "redis cluster slot %d (%s): no node "
	    "serving it reached from %s; last: %s", r->slot, r->owner,
	    tried, why);
}

/*
 * ROLE on the live connection.  Returns the number of replicas a master
 * lists, or -1 with err set: a Redis error, or a role other than master
 * (named in err, e.g. "ROLE: slave, not a master").
 */
static int
role_replicas(struct tor_redis *r, tor_err *err)
{
	const char *argv[] = { "ROLE" };
	redisReply *reply;
	int n = -1;

	if ((reply = run(r, 1, argv, NULL, "ROLE", err)) == NULL)
		return -1;
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
	    reply->element[0]->type != REDIS_REPLY_STRING)
		redis_err(r, err, "ROLE", "unexpected reply");
	else if (strcmp(reply->element[0]->str, "master") != 0) {
		char text[96];

		snprintf(text, sizeof(text), "%.32s, not a master",
		    reply->element[0]->str);
		redis_err(r, err, "ROLE", text);
		/* Demoted since we found it: look again next time. */
		if (use_sentinel(r->cfg))
			drop_connection(r);
	} else if (reply->elements >= 3 &&
	    reply->element[2]->type == REDIS_REPLY_ARRAY)
		n = (int)reply->element[2]->elements;
	else
		n = 0;
	freeReplyObject(reply);
	return n;
}

/* AUTH on a new Sentinel connection when redis.sentinel has a password
 * (Sentinels keep their own users, apart from the master's). */
static int
sentinel_auth(struct tor_redis *r, const char *host, int port, tor_err *err)
{
	const struct tor_config *cfg = r->cfg;
	const char *password = cfg->redis.sentinel.password;
	const char *argv[3];
	redisReply *reply;
	tor_err e;
	int argc, rc = -1;

	if (password == NULL || password[0] == '\0')
		return 0;
	argc = auth_args(cfg->redis.sentinel.user, password, argv);
	reply = tor_link_command(r->sc, argc, argv, NULL, &e);
	if (reply == NULL) {
		server_err(err, host, port, "AUTH", e.msg);
	} else if (reply->type == REDIS_REPLY_ERROR) {
		server_err(err, host, port, "AUTH", reply->str);
	} else {
		rc = 0;
	}
	if (reply != NULL)
		freeReplyObject(reply);
	return rc;
}

/*
 * Asks the Sentinel nodes[i] where the master is, over the kept Sentinel
 * connection when it goes there (it is dialled and kept otherwise).
 * Returns 0 with the master's address in host/port, or -1 with err naming
 * the Sentinel; a Sentinel that fails is not kept.
 */
static int
ask_sentinel(struct tor_redis *r, size_t i, char *host, size_t cap,
    int *port, tor_err *err)
{
	const struct tor_config *cfg = r->cfg;
	const char *argv[] = { "SENTINEL", "get-master-addr-by-name",
	    cfg->redis.sentinel.master };
	const char *what = "SENTINEL get-master-addr-by-name";
	char shost[256], text[160];
	redisReply *reply;
	tor_err e;
	int sport, rc = -1;

	split_node(cfg->redis.sentinel.nodes[i], shost, sizeof(shost), &sport);
	if (r->sc != NULL && r->sc_node != i)
		drop_sentinel(r);
	if (r->sc == NULL) {
		if ((r->sc = dial(r, true, shost, sport, err)) == NULL)
			return -1;
		r->sc_node = i;
		if (sentinel_auth(r, shost, sport, err) < 0) {
			drop_sentinel(r);
			return -1;
		}
	}
	reply = tor_link_command(r->sc, 3, argv, NULL, &e);
	if (reply == NULL) {
		server_err(err, shost, sport, what, e.msg);
	} else if (reply->type == REDIS_REPLY_ERROR)
		server_err(err, shost, sport, what, reply->str);
	else if (reply->type == REDIS_REPLY_NIL) {
		snprintf(text, sizeof(text), "no master named \"%.64s\"",
		    cfg->redis.sentinel.master);
		server_err(err, shost, sport, what, text);
	} else if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
	    reply->element[0]->type != REDIS_REPLY_STRING ||
	    reply->element[1]->type != REDIS_REPLY_STRING ||
	    (*port = atoi(reply->element[1]->str)) < 1 || *port > 65535)
		server_err(err, shost, sport, what, "unexpected reply");
	else {
		snprintf(host, cap, "%s", reply->element[0]->str);
		rc = 0;
	}
	if (reply != NULL)
		freeReplyObject(reply);
	if (rc == -1)
		drop_sentinel(r);
	return rc;
}

/* Logs the master this connection follows when it is a new one: once at
 * the first discovery, once after each failover. */
static void
note_master(struct tor_redis *r, const char *node)
{
	const char *master = r->cfg->redis.sentinel.master;
	char now[sizeof(r->followed)];

	snprintf(now, sizeof(now), "%s:%d", r->host, r->port);
	if (strcmp(now, r->followed) == 0)
		return;
	if (r->followed[0] == '\0')
		log_info("redis", "master %s is %s (via sentinel %s)", master,
		    now, node);
	else
		log_info("redis", "following master %s at %s, was %s (via "
		    "sentinel %s)", master, now, r->followed, node);
	snprintf(r->followed, sizeof(r->followed), "%s", now);
}

/*
 * Sentinel mode's connect: the first Sentinel that names a server which
 * answers, authenticates and says it is a master wins.  A Sentinel that
 * fails is passed over; the error when all fail names the master, the
 * Sentinels tried and the last reason.
 */
static int
connect_via_sentinel(struct tor_redis *r, tor_err *err)
{
	const struct tor_config *cfg = r->cfg;
	char tried[256], why[sizeof(err->msg)], host[sizeof(r->master_host)];
	const char *via = NULL;  /* the Sentinel that named the last failure */
	size_t i, at = 0;
	int port;
	tor_err e;

	tried[0] = '\0';
	why[0] = '\0';
	for (i = 0; i < cfg->redis.sentinel.n_nodes; i++) {
		const char *node = cfg->redis.sentinel.nodes[i];
		int n;

		n = snprintf(tried + at, sizeof(tried) - at, "%s%s",
		    i > 0 ? ", " : "", node);
		if (n > 0 && (size_t)n < sizeof(tried) - at)
			at += (size_t)n;

		if (ask_sentinel(r, i, host, sizeof(host), &port, &e) == -1) {
			snprintf(why, sizeof(why), "%s", e.msg);
			via = NULL;
			continue;
		}
		memcpy(r->master_host, host, sizeof(host));
		r->host = r->master_host;
		r->port = port;
		if ((r->c = dial(r, false, r->host, r->port, &e)) == NULL ||
		    authenticate(r, &e) == -1 || role_replicas(r, &e) == -1) {
			drop_connection(r);
			snprintf(why, sizeof(why), "%s", e.msg);
			via = node;
			continue;
		}
		note_master(r, node);
		r->checked_ms = tor_mono_ms();
		return 0;
	}
	return tor_err_set(err, "redis master %s: no usable master from "
	    "sentinels %s; last: %s%s%s%s", cfg->redis.sentinel.master, tried,
	    why, via != NULL ? " (via sentinel " : "", via != NULL ? via : "",
	    via != NULL ? ")" : "");
}

int
tor_redis_connect(struct tor_redis *r, tor_err *err)
{
	const struct tor_config *cfg = r->cfg;

	drop_connection(r);
	if (use_sentinel(cfg))
		return connect_via_sentinel(r, err);
	if (use_cluster(cfg))
		return connect_cluster(r, err);
	r->host = cfg->redis.host;
	r->port = cfg->redis.port;
	if ((r->c = dial(r, false, r->host, r->port, err)) == NULL)
		return -1;
	return authenticate(r, err);
}

/*
 * Sentinel mode, connected, and the last check is older than the check
 * period: asks the Sentinels in turn, starting with the kept one, who the
 * master is, and drops the connection when they name another server.  When
 * no Sentinel answers the connection is kept: the master may well be fine,
 * and a command on it will tell.
 */
static void
check_master(struct tor_redis *r)
{
	const struct tor_config *cfg = r->cfg;
	size_t n = cfg->redis.sentinel.n_nodes, k, i;
	int64_t now = tor_mono_ms();
	int period = cfg->ha.renew_ms, port;
	char host[sizeof(r->master_host)];
	tor_err e;

	if (!use_sentinel(cfg) || r->c == NULL || n == 0)
		return;
	if (period <= 0 || period > CHECK_MAX_MS)
		period = CHECK_MAX_MS;
	if (now - r->checked_ms < period)
		return;
	for (k = 0; k < n; k++) {
		i = (r->sc_node + k) % n;
		if (ask_sentinel(r, i, host, sizeof(host), &port, &e) == -1)
			continue;
		r->checked_ms = now;
		if (port != r->port || strcmp(host, r->host) != 0)
			drop_connection(r);     /* the next connect follows */
		return;
	}
}

/* Before a command: follows a Sentinel failover, reconnects if need be. */
static int
ready(struct tor_redis *r, tor_err *err)
{
	check_master(r);
	if (r->c == NULL && tor_redis_connect(r, err) == -1)
		return -1;
	return 0;
}

int
tor_redis_ready(struct tor_redis *r, tor_err *err)
{
	return ready(r, err);
}

redisReply *
tor_redis_command(struct tor_redis *r, int argc, const char **argv,
    const size_t *argvlen, tor_err *err)
{
	if (ready(r, err) == -1)
		return NULL;
	return run(r, argc, argv, argvlen, "", err);
}

int
tor_redis_send(struct tor_redis *r, int argc, const char **argv,
    tor_err *err)
{
	tor_err e;

	if (ready(r, err) == -1)
		return -1;
	if (tor_link_send(r->c, argc, argv, &e) == -1) {
		redis_err(r, err, argv[0], e.msg);
		drop_connection(r);
		return -1;
	}
	return 0;
}

int
tor_redis_receive(struct tor_redis *r, int wait_ms, redisReply **reply,
    tor_err *err)
{
	tor_err e;
	int rc;

	if (r->c == NULL)
		return redis_err(r, err, "", "not connected");
	if ((rc = tor_link_receive(r->c, wait_ms, reply, &e)) == -1) {
		redis_err(r, err, "", e.msg);
		drop_connection(r);
	}
	return rc;
}

int
tor_redis_replicas(struct tor_redis *r, tor_err *err)
{
	if (ready(r, err) == -1)
		return -1;
	return role_replicas(r, err);
}

void
tor_redis_key(const struct tor_config *cfg, const char *name, char *buf,
    size_t cap)
{
	snprintf(buf, cap, "%s:{%s}:%s", cfg->redis.prefix, cfg->group, name);
}

/* The value of CONFIG GET name, copied into buf; false when not answered. */
static bool
config_get(struct tor_redis *r, const char *name, char *buf, size_t cap)
{
	const char *argv[] = { "CONFIG", "GET", name };
	redisReply *reply;
	tor_err err;
	bool ok = false;

	if ((reply = tor_redis_command(r, 3, argv, NULL, &err)) == NULL) {
		log_debug("redis", "CONFIG GET %s: %s", name, err.msg);
		return false;
	}
	if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
	    reply->element[1]->type == REDIS_REPLY_STRING) {
		snprintf(buf, cap, "%s", reply->element[1]->str);
		ok = true;
	}
	freeReplyObject(reply);
	return ok;
}

/*
 * Under Sentinel, a master cut off from its Sentinels and replicas stays a
 * writable master on its side of the partition while a replica is promoted
 * on the other: a tor replica left with the old master wins the lease
 * there once the leader's renews stop reaching it, and leads beside the
 * leader on the new master.  min-replicas-to-write makes the old master
 * refuse writes once its replicas stop acknowledging (DESIGN.md §3).  Only
 * the master is asked; the replicas need the same setting for when they
 * are promoted.
 */
static void
check_min_replicas(struct tor_redis *r)
{
	char n[16];

	if (!use_sentinel(r->cfg))
		return;
	if (!config_get(r, "min-replicas-to-write", n, sizeof(n)))
		log_info("redis", "redis %s:%d: cannot read min-replicas-to-write "
		    "(CONFIG GET refused?): a master cut off from its Sentinels "
		    "must refuse writes (min-replicas-to-write 1), or two "
		    "replicas may lead at once during a failover", r->host,
		    r->port);
	else if (strcmp(n, "0") == 0)
		log_warn("redis", "redis %s:%d: min-replicas-to-write is 0 "
		    "under Sentinel: a master cut off from its Sentinels and "
		    "replicas stays writable, and a replica on its side may lead "
		    "there beside the leader on the promoted master; set "
		    "min-replicas-to-write 1 and min-replicas-max-lag on every "
		    "server of the group", r->host, r->port);
}

void
tor_redis_check_settings(struct tor_redis *r)
{
	char policy[64], maxmem[32], aof[16], save[128];

	check_min_replicas(r);

	if (config_get(r, "maxmemory-policy", policy, sizeof(policy)) &&
	    config_get(r, "maxmemory", maxmem, sizeof(maxmem)) &&
	    strcmp(maxmem, "0") != 0 && strcmp(policy, "noeviction") != 0)
		log_warn("redis", "redis %s:%d: maxmemory-policy is %s with "
		    "maxmemory %s: Redis may evict the lease, the epoch and the "
		    "checkpoint; the lease store needs noeviction (tor then "
		    "resumes from Kafka's copy of the checkpoint, but two "
		    "replicas may lead at once until it does)", r->host,
		    r->port, policy, maxmem);
	if (config_get(r, "appendonly", aof, sizeof(aof)) &&
	    config_get(r, "save", save, sizeof(save)) &&
	    strcmp(aof, "no") == 0 && save[0] == '\0')
		log_warn("redis", "redis %s:%d: no persistence (appendonly no, "
		    "save \"\"): a restart of Redis loses the checkpoint and the "
		    "epoch; tor resumes from Kafka's copy then, but set "
		    "appendonly yes", r->host, r->port);
}

/* CLIENT ID and the run_id line of INFO server, on the live connection.  A
 * server that refuses either (an ACL, a renamed command) leaves client_id
 * 0: leases then expire as they always did.  A connection that breaks
 * meanwhile is dropped, with the reason in err. */
static void
identify(struct tor_redis *r, tor_err *err)
{
	const char *id_argv[] = { "CLIENT", "ID" };
	const char *info_argv[] = { "INFO", "server" };
	redisReply *reply;
	const char *line;
	size_t n;

	r->identified = true;
	r->client_id = 0;
	r->run_id[0] = '\0';
	if ((reply = run(r, 2, id_argv, NULL, "CLIENT ID", err)) == NULL) {
		/* Refused, not a broken connection: say what it costs. */
		if (r->c != NULL)
			log_warn("redis", "%s: a dead leader's lease is not "
			    "taken over at once (ha.fast_failover needs CLIENT "
			    "ID and CLIENT LIST)", err->msg);
		return;
	}
	if (reply->type == REDIS_REPLY_INTEGER)
		r->client_id = reply->integer;
	freeReplyObject(reply);
	if ((reply = run(r, 2, info_argv, NULL, "INFO", err)) == NULL) {
		r->client_id = 0;
		return;
	}
	if (reply->type == REDIS_REPLY_STRING) {
		if ((line = strstr(reply->str, "run_id:")) != NULL) {
			line += strlen("run_id:");
			n = strcspn(line, "\r\n");
			if (n > 0 && n < sizeof(r->run_id))
				snprintf(r->run_id, sizeof(r->run_id), "%.*s",
				    (int)n, line);
		}
	}
	freeReplyObject(reply);
	if (r->run_id[0] == '\0')
		r->client_id = 0;
}

int
tor_redis_identity(struct tor_redis *r, char *run_id, size_t cap,
    long long *client_id, tor_err *err)
{
	if (ready(r, err) == -1)
		return -1;
	if (!r->identified)
		identify(r, err);
	if (r->c == NULL)
		return -1;
	snprintf(run_id, cap, "%s", r->run_id);
	*client_id = r->client_id;
	return 0;
}

int
tor_redis_client_connected(struct tor_redis *r, long long client_id,
    tor_err *err)
{
	const char *argv[] = { "CLIENT", "LIST", "ID", NULL };
	char id[24];
	redisReply *reply;
	int rc;

	snprintf(id, sizeof(id), "%lld", client_id);
	argv[3] = id;
	if ((reply = tor_redis_command(r, 4, argv, NULL, err)) == NULL)
		return -1;
	if (reply->type == REDIS_REPLY_STRING)
		rc = reply->len > 0;
	else
		rc = redis_err(r, err, "CLIENT LIST", "unexpected reply");
	freeReplyObject(reply);
	return rc;
}

uint64_t
tor_redis_connection(const struct tor_redis *r)
{
	return r->drops;
}

int
tor_redis_ping(struct tor_redis *r, tor_err *err)
{
	const char *argv[] = { "PING" };
	redisReply *reply;

	if (r->c == NULL)
		return 0;
	if ((reply = run(r, 1, argv, NULL, "PING", err)) == NULL)
		return -1;
	freeReplyObject(reply);
	return 1;
}

void
tor_redis_set_wait(struct tor_redis *r, int wait_ms)
{
	r->wait_ms = wait_ms;
}

bool
tor_redis_lost(struct tor_redis *r)
{
	if (r->c == NULL)
		return true;
	if (!tor_link_closed(r->c))
		return false;
	drop_connection(r);
	return true;
}
