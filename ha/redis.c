/*
 * One Redis connection, set up as cfg->redis says and rebuilt on demand.
 *
 * The idea: a hiredis context that has seen a connection error is useless
 * (its err stays set), so we free it at once and keep a NULL context; the
 * next command finds NULL and connects again, with AUTH and SELECT, before
 * it runs.  A failed command is never replayed here — a lease renew or a
 * checkpoint write must be retried only by a caller that knows it is safe.
 * Every error names the server ("redis host:port: ...") and never the
 * password.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "tor/redis.h"

struct tor_redis {
	const struct tor_config *cfg;
	redisContext *c;        /* NULL: not connected */
};

struct tor_redis *
tor_redis_new(const struct tor_config *cfg)
{
	struct tor_redis *r;

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	r->cfg = cfg;
	return r;
}

static void
drop_connection(struct tor_redis *r)
{
	if (r->c != NULL) {
		redisFree(r->c);
		r->c = NULL;
	}
}

void
tor_redis_free(struct tor_redis *r)
{
	if (r == NULL)
		return;
	drop_connection(r);
	free(r);
}

static int
redis_err(const struct tor_redis *r, tor_err *err, const char *what,
    const char *text)
{
	return tor_err_set(err, "redis %s:%d: %s%s%s", r->cfg->redis.host,
	    r->cfg->redis.port, what, what[0] != '\0' ? ": " : "", text);
}

/* Runs one command on the live context; on a broken connection the context
 * is dropped so that the next command reconnects.  what names the command in
 * errors ("" for none). */
static redisReply *
run(struct tor_redis *r, int argc, const char **argv, const size_t *argvlen,
    const char *what, tor_err *err)
{
	redisReply *reply;

	reply = redisCommandArgv(r->c, argc, argv, argvlen);
	if (reply == NULL) {
		char text[160];

		/* hiredis reports a socket timeout as the bare EAGAIN text;
		 * say what it means (a paused or overloaded server). */
		if (r->c->err == REDIS_ERR_IO &&
		    (errno == EAGAIN || errno == EWOULDBLOCK))
			snprintf(text, sizeof(text), "no reply within %d ms",
			    r->cfg->redis.timeout_ms);
		else
			snprintf(text, sizeof(text), "%s", r->c->err != 0 ?
			    r->c->errstr : "no reply");
		redis_err(r, err, what, text);
		drop_connection(r);
		return NULL;
	}
	if (reply->type == REDIS_REPLY_ERROR) {
		redis_err(r, err, what, reply->str);
		freeReplyObject(reply);
		return NULL;
	}
	return reply;
}

int
tor_redis_connect(struct tor_redis *r, tor_err *err)
{
	const struct tor_config *cfg = r->cfg;
	struct timeval tv;
	redisReply *reply;
	char db[16];

	drop_connection(r);
	tv.tv_sec = cfg->redis.timeout_ms / 1000;
	tv.tv_usec = (cfg->redis.timeout_ms % 1000) * 1000;
	if (cfg->redis.timeout_ms > 0)
		r->c = redisConnectWithTimeout(cfg->redis.host, cfg->redis.port,
		    tv);
	else
		r->c = redisConnect(cfg->redis.host, cfg->redis.port);
	if (r->c == NULL)
		return redis_err(r, err, "connect", "out of memory");
	if (r->c->err != 0) {
		redis_err(r, err, "connect", r->c->errstr);
		drop_connection(r);
		return -1;
	}
	/* The connect timeout does not cover commands: without this a dead
	 * server that keeps the socket open would block a lease renew. */
	if (cfg->redis.timeout_ms > 0 && redisSetTimeout(r->c, tv) != REDIS_OK) {
		redis_err(r, err, "connect", "cannot set the command timeout");
		drop_connection(r);
		return -1;
	}
	/* Notices a peer that vanished without a FIN (a killed VM) on an idle
	 * connection; failure is harmless, the command timeout still holds. */
	(void)redisEnableKeepAlive(r->c);

	if (cfg->redis.password != NULL && cfg->redis.password[0] != '\0') {
		const char *argv[] = { "AUTH", cfg->redis.password };

		if ((reply = run(r, 2, argv, NULL, "AUTH", err)) == NULL) {
			drop_connection(r);
			return -1;
		}
		freeReplyObject(reply);
	}
	if (cfg->redis.db != 0) {
		const char *argv[] = { "SELECT", db };

		snprintf(db, sizeof(db), "%d", cfg->redis.db);
		if ((reply = run(r, 2, argv, NULL, "SELECT", err)) == NULL) {
			drop_connection(r);
			return -1;
		}
		freeReplyObject(reply);
	}
	return 0;
}

redisReply *
tor_redis_command(struct tor_redis *r, int argc, const char **argv,
    const size_t *argvlen, tor_err *err)
{
	if (r->c == NULL && tor_redis_connect(r, err) == -1)
		return NULL;
	return run(r, argc, argv, argvlen, "", err);
}

void
tor_redis_key(const struct tor_config *cfg, const char *name, char *buf,
    size_t cap)
{
	snprintf(buf, cap, "%s:{%s}:%s", cfg->redis.prefix, cfg->group, name);
}
