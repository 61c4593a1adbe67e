/*
 * Unit tests of ha/lease.c against a real Redis (redis_server.h): who may
 * take, keep and give up the lease, that tokens only grow, the hand-off
 * wake-up (the list and the free channel), handoff_to and takeover_only,
 * and that every operation says which server failed when Redis is down.
 *
 * Two replicas are two tor_redis handles with two configs that differ in
 * cfg->instance, as on two machines.
 */
#include "redis_server.h"

#include "tor/clock.h"
#include "tor/lease.h"

struct pair {
	struct server *s;
	struct tor_config cfg_b;        /* s->cfg is replica A */
	struct tor_redis *a, *b;
	redisContext *c;                /* raw, to look without our code */
};

static int
setup_pair(void **state)
{
	struct pair *p = calloc(1, sizeof(*p));

	assert_non_null(p);
	*state = p;
	assert_int_equal(setup_server((void **)&p->s), 0);
	p->cfg_b = p->s->cfg;
	p->cfg_b.instance = (char *)"relay-b";
	p->a = tor_redis_new(&p->s->cfg);
	p->b = tor_redis_new(&p->cfg_b);
	assert_non_null(p->a);
	assert_non_null(p->b);
	p->c = raw_connect(p->s);
	return 0;
}

static int
teardown_pair(void **state)
{
	struct pair *p = *state;

	if (p->c != NULL)
		redisFree(p->c);
	tor_redis_free(p->a);
	tor_redis_free(p->b);
	if (p->s != NULL)
		teardown_server((void **)&p->s);
	free(p);
	return 0;
}

/* A raw command whose reply is an integer (or nil, read as -100). */
static long long
raw_int(redisContext *c, const char *cmd)
{
	redisReply *reply = redisCommand(c, cmd);
	long long v;

	assert_non_null(reply);
	if (reply->type == REDIS_REPLY_NIL)
		v = -100;
	else if (reply->type == REDIS_REPLY_STRING)
		v = strtoll(reply->str, NULL, 10);
	else {
		assert_int_equal(reply->type, REDIS_REPLY_INTEGER);
		v = reply->integer;
	}
	freeReplyObject(reply);
	return v;
}

static void
raw_lease_equals(redisContext *c, const char *want)
{
	redisReply *reply = redisCommand(c, "GET tor:{orders}:lease");

	assert_non_null(reply);
	if (want == NULL)
		assert_int_equal(reply->type, REDIS_REPLY_NIL);
	else {
		assert_int_equal(reply->type, REDIS_REPLY_STRING);
		assert_string_equal(reply->str, want);
	}
	freeReplyObject(reply);
}

/* The not-before time of the last acquire (acquire_as). */
static int64_t last_not_before;

static int
acquire_as(struct tor_redis *r, const struct tor_config *cfg,
    bool takeover_only, uint64_t *token)
{
	tor_err err = { "" };
	int64_t before = tor_mono_ms(), sent = 0;
	int rc = tor_lease_acquire(r, cfg, takeover_only, token, &sent,
	    &last_not_before, &err);

	if (rc == -1)
		fail_msg("acquire: %s", err.msg);
	/* The winning script's send time, on the lease clock. */
	if (rc == 1)
		assert_true(sent >= before && sent <= tor_mono_ms());
	else
		assert_true(last_not_before == 0);
	return rc;
}

static int
acquire(struct tor_redis *r, const struct tor_config *cfg, uint64_t *token)
{
	return acquire_as(r, cfg, false, token);
}

/* tor_lease_acquire for the calls that expect an error. */
static int
acquire_err(struct tor_redis *r, const struct tor_config *cfg,
    uint64_t *token, tor_err *err)
{
	int64_t sent, not_before;

	return tor_lease_acquire(r, cfg, false, token, &sent, &not_before,
	    err);
}

static void
test_acquire_renew(void **state)
{
	struct pair *p = *state;
	struct tor_config *a = &p->s->cfg;
	uint64_t t = 0, tb = 0;
	tor_err err = { "" };
	char want[64];

	assert_int_equal(acquire(p->a, a, &t), 1);
	assert_true(t >= 1);
	snprintf(want, sizeof(want), "relay-a %llu", (unsigned long long)t);
	raw_lease_equals(p->c, want);
	assert_true(raw_int(p->c, "GET tor:{orders}:epoch") == (long long)t);
	assert_true(raw_int(p->c, "PTTL tor:{orders}:lease") > 2000);

	/* B cannot take it, and spends no token trying. */
	assert_int_equal(acquire(p->b, &p->cfg_b, &tb), 0);
	assert_int_equal(acquire(p->a, a, &tb), 0);
	assert_true(raw_int(p->c, "GET tor:{orders}:epoch") == (long long)t);
	raw_lease_equals(p->c, want);

	/* A renews: the ttl is lease_ms again. */
	freeReplyObject(redisCommand(p->c, "PEXPIRE tor:{orders}:lease 500"));
	assert_int_equal(tor_lease_renew(p->a, a, t, &err), 1);
	assert_true(raw_int(p->c, "PTTL tor:{orders}:lease") > 2000);

	/* B with A's token, and A with another token, are not the holder. */
	freeReplyObject(redisCommand(p->c, "PEXPIRE tor:{orders}:lease 5000"));
	assert_int_equal(tor_lease_renew(p->b, &p->cfg_b, t, &err), 0);
	assert_int_equal(tor_lease_renew(p->a, a, t + 1, &err), 0);
	assert_int_equal(tor_lease_renew(p->a, a, t - 1, &err), 0);
	/* Their failed renews did not touch the ttl. */
	assert_true(raw_int(p->c, "PTTL tor:{orders}:lease") > 4000);
	raw_lease_equals(p->c, want);
}

static void
test_expiry(void **state)
{
	struct pair *p = *state;
	struct tor_config *a = &p->s->cfg;
	uint64_t t = 0, t2 = 0;
	tor_err err = { "" };
	char want[64];

	a->ha.lease_ms = 200;
	p->cfg_b.ha.lease_ms = 200;
	assert_int_equal(acquire(p->a, a, &t), 1);
	assert_int_equal(acquire(p->b, &p->cfg_b, &t2), 0);
	sleep_ms(300);

	/* A stopped renewing (paused, partitioned): B takes over with the
	 * next token, and A's renew now fails. */
	assert_int_equal(acquire(p->b, &p->cfg_b, &t2), 1);
	assert_true(t2 == t + 1);
	snprintf(want, sizeof(want), "relay-b %llu", (unsigned long long)t2);
	raw_lease_equals(p->c, want);
	assert_int_equal(tor_lease_renew(p->a, a, t, &err), 0);
	/* Nor can A release B's lease. */
	assert_int_equal(tor_lease_release(p->a, a, t, &err), 0);
	raw_lease_equals(p->c, want);
}

static void
test_release(void **state)
{
	struct pair *p = *state;
	struct tor_config *a = &p->s->cfg;
	uint64_t t = 0, tb = 0;
	tor_err err = { "" };
	char want[64];
	int i;

	assert_int_equal(acquire(p->a, a, &t), 1);
	snprintf(want, sizeof(want), "relay-a %llu", (unsigned long long)t);

	/* Not the holder: the lease stays. */
	assert_int_equal(tor_lease_release(p->b, &p->cfg_b, t, &err), 0);
	assert_int_equal(tor_lease_release(p->a, a, t + 1, &err), 0);
	raw_lease_equals(p->c, want);

	/* The holder: deleted, wake-up pushed, and B can take over at once. */
	freeReplyObject(redisCommand(p->c, "DEL tor:{orders}:handoff"));
	assert_int_equal(tor_lease_release(p->a, a, t, &err), 1);
	raw_lease_equals(p->c, NULL);
	assert_true(raw_int(p->c, "LLEN tor:{orders}:handoff") >= 1);
	assert_int_equal(acquire(p->b, &p->cfg_b, &tb), 1);
	assert_true(tb == t + 1);

	/* A leader that flaps cannot grow the list. */
	for (i = 0; i < 30; i++)
		assert_int_equal(tor_lease_release(p->a, a, t, &err), 0);
	assert_true(raw_int(p->c, "LLEN tor:{orders}:handoff") <= 8);
	assert_true(raw_int(p->c, "LLEN tor:{orders}:handoff") >= 1);
}

/* A release leaves its wake-up twice: on the handoff list (for replicas of
 * the previous version, which BLPOP it) and as the group's name published
 * on the free channel, whether or not the lease was still ours. */
static void
test_release_wakes_up(void **state)
{
	struct pair *p = *state;
	struct tor_config *a = &p->s->cfg;
	redisContext *sub = raw_connect(p->s);
	struct timeval tv = { 2, 0 };
	redisReply *reply;
	uint64_t t = 0;
	tor_err err = { "" };
	void *r;
	char channel[64];

	tor_lease_free_channel(a, channel, sizeof(channel));
	assert_string_equal(channel, "tor:pool:free");
	reply = redisCommand(sub, "SUBSCRIBE %s", channel);
	assert_non_null(reply);
	freeReplyObject(reply);
	redisSetTimeout(sub, tv);

	assert_int_equal(acquire(p->a, a, &t), 1);
	assert_int_equal(tor_lease_release(p->a, a, t, &err), 1);
	assert_true(raw_int(p->c, "LLEN tor:{orders}:handoff") == 1);
	assert_int_equal(redisGetReply(sub, &r), REDIS_OK);
	reply = r;
	assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
	assert_int_equal(reply->elements, 3);
	assert_string_equal(reply->element[0]->str, "message");
	assert_string_equal(reply->element[1]->str, "tor:pool:free");
	assert_string_equal(reply->element[2]->str, "orders");
	freeReplyObject(reply);

	/* Not ours any more: the wake-ups all the same. */
	assert_int_equal(tor_lease_release(p->a, a, t, &err), 0);
	assert_true(raw_int(p->c, "LLEN tor:{orders}:handoff") == 2);
	assert_int_equal(redisGetReply(sub, &r), REDIS_OK);
	reply = r;
	assert_string_equal(reply->element[2]->str, "orders");
	freeReplyObject(reply);
	redisFree(sub);
}

/* The listener's side (tor_redis_send, tor_redis_receive): a SUBSCRIBE's
 * confirmation and then the release's message come as pushed replies; a
 * wait with nothing pushed says so without an error and keeps the
 * connection; a server that dies is an error, and a send reconnects. */
static void
test_subscriber_hears_the_release(void **state)
{
	struct pair *p = *state;
	struct tor_config *a = &p->s->cfg;
	const char *argv[] = { "SUBSCRIBE", "tor:pool:free" };
	redisReply *reply = NULL;
	uint64_t t = 0;
	tor_err err = { "" };

	assert_int_equal(tor_redis_send(p->b, 2, argv, &err), 0);
	assert_int_equal(tor_redis_receive(p->b, 1000, &reply, &err), 1);
	assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
	assert_string_equal(reply->element[0]->str, "subscribe");
	freeReplyObject(reply);
	assert_int_equal(tor_redis_receive(p->b, 50, &reply, &err), 0);
	assert_false(tor_redis_lost(p->b));

	assert_int_equal(acquire(p->a, a, &t), 1);
	assert_int_equal(tor_lease_release(p->a, a, t, &err), 1);
	assert_int_equal(tor_redis_receive(p->b, 1000, &reply, &err), 1);
	assert_string_equal(reply->element[0]->str, "message");
	assert_string_equal(reply->element[2]->str, "orders");
	freeReplyObject(reply);

	freeReplyObject(redisCommand(p->c, "CLIENT KILL TYPE pubsub"));
	assert_int_equal(tor_redis_receive(p->b, 1000, &reply, &err), -1);
	assert_non_null(strstr(err.msg, "redis 127.0.0.1:"));
	assert_int_equal(tor_redis_send(p->b, 2, argv, &err), 0);
	assert_int_equal(tor_redis_receive(p->b, 1000, &reply, &err), 1);
	assert_string_equal(reply->element[0]->str, "subscribe");
	freeReplyObject(reply);
}

/* An ACL user without channel rights (Redis 7 gives new users none): the
 * release's PUBLISH is refused inside the script, and the lease is
 * released all the same. */
static void
test_release_without_channel_rights(void **state)
{
	struct pair *p = *state;
	struct tor_config cfg = p->s->cfg;
	struct tor_redis *r;
	uint64_t t = 0;
	tor_err err = { "" };

	freeReplyObject(redisCommand(p->c, "ACL SETUSER nochan reset on "
	    ">pw ~* resetchannels +@all"));
	cfg.redis.user = (char *)"nochan";
	cfg.redis.password = (char *)"pw";
	r = tor_redis_new(&cfg);
	assert_non_null(r);
	assert_int_equal(acquire(r, &cfg, &t), 1);
	assert_int_equal(tor_lease_release(r, &cfg, t, &err), 1);
	raw_lease_equals(p->c, NULL);
	assert_true(raw_int(p->c, "LLEN tor:{orders}:handoff") == 1);
	tor_redis_free(r);
	freeReplyObject(redisCommand(p->c, "ACL DELUSER nochan"));
}

/* While handoff_to names an instance, the lease is "held" for every other
 * one, free or not; that one takes it, even told takeover_only. */
static void
test_handoff_to(void **state)
{
	struct pair *p = *state;
	struct tor_config *a = &p->s->cfg;
	uint64_t t = 0, n = 0;
	tor_err err = { "" };

	assert_int_equal(tor_lease_set_handoff_to(p->a, a, "relay-b", 3000,
	    &err), 0);
	assert_true(raw_int(p->c, "PTTL tor:{orders}:handoff_to") > 2000);
	assert_int_equal(acquire(p->a, a, &t), 0);
	raw_lease_equals(p->c, NULL);
	assert_int_equal(acquire_as(p->b, &p->cfg_b, true, &n), 1);
	raw_lease_equals(p->c, "relay-b 1");
	assert_int_equal(tor_lease_release(p->b, &p->cfg_b, n, &err), 1);

	/* Expired: anyone again. */
	freeReplyObject(redisCommand(p->c, "PEXPIRE tor:{orders}:handoff_to 1"));
	sleep_ms(20);
	assert_int_equal(acquire(p->a, a, &t), 1);
	assert_true(t == 2);
}

/* takeover_only leaves a free lease alone, and says so; a held one is
 * held as ever. */
static void
test_takeover_only(void **state)
{
	struct pair *p = *state;
	struct tor_config *a = &p->s->cfg;
	uint64_t t = 0, n = 0;

	assert_int_equal(acquire_as(p->a, a, true, &t), TOR_LEASE_FREE);
	raw_lease_equals(p->c, NULL);
	assert_int_equal(raw_int(p->c, "EXISTS tor:{orders}:epoch"), 0);
	assert_int_equal(acquire(p->b, &p->cfg_b, &n), 1);
	assert_int_equal(acquire_as(p->a, a, true, &t), 0);
}

static void
test_read(void **state)
{
	struct pair *p = *state;
	struct tor_config *a = &p->s->cfg;
	uint64_t t = 0, rt = 0;
	int64_t ttl = 0;
	tor_err err = { "" };
	char inst[64];

	assert_int_equal(tor_lease_read(p->b, &p->cfg_b, inst, sizeof(inst),
	    &rt, &ttl, &err), 0);

	assert_int_equal(acquire(p->a, a, &t), 1);
	memset(inst, 'x', sizeof(inst));
	assert_int_equal(tor_lease_read(p->b, &p->cfg_b, inst, sizeof(inst),
	    &rt, &ttl, &err), 1);
	assert_string_equal(inst, "relay-a");
	assert_true(rt == t);
	assert_true(ttl > 2000 && ttl <= 3000);

	/* An instance name with a space: split at the last one. */
	freeReplyObject(redisCommand(p->c, "SET tor:{orders}:lease %s",
	    "web 1 42"));
	assert_int_equal(tor_lease_read(p->b, &p->cfg_b, inst, sizeof(inst),
	    &rt, &ttl, &err), 1);
	assert_string_equal(inst, "web 1");
	assert_true(rt == 42);
	/* No expiry (set by hand): ttl -1, as PTTL says. */
	assert_true(ttl == -1);
}

static void
test_read_bad_values(void **state)
{
	struct pair *p = *state;
	const char *bad[] = { "relay-a", "relay-a x", "relay-a -1", "relay-a ",
	    " 5", "relay-a 0", "relay-a 18446744073709551616" };
	uint64_t rt;
	int64_t ttl;
	tor_err err = { "" };
	char inst[64];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		freeReplyObject(redisCommand(p->c, "SET tor:{orders}:lease %s",
		    bad[i]));
		if (tor_lease_read(p->b, &p->cfg_b, inst, sizeof(inst), &rt,
		    &ttl, &err) != -1)
			fail_msg("'%s' read as a lease", bad[i]);
		assert_string_equal(err.msg, "lease read: tor:{orders}:lease: "
		    "not \"<instance> <token>\"");
	}

	/* Wrong types: Redis's own error, said for which operation. */
	freeReplyObject(redisCommand(p->c, "DEL tor:{orders}:lease"));
	freeReplyObject(redisCommand(p->c, "HSET tor:{orders}:lease a b"));
	assert_int_equal(tor_lease_read(p->b, &p->cfg_b, inst, sizeof(inst),
	    &rt, &ttl, &err), -1);
	assert_non_null(strstr(err.msg, "lease read: redis 127.0.0.1:"));
	assert_non_null(strstr(err.msg, "WRONGTYPE"));
	assert_int_equal(tor_lease_renew(p->b, &p->cfg_b, 1, &err), -1);
	assert_non_null(strstr(err.msg, "WRONGTYPE"));

	freeReplyObject(redisCommand(p->c, "SET tor:{orders}:epoch nope"));
	assert_int_equal(tor_lease_next_token(p->b, &p->cfg_b, 0, &rt, &err),
	    -1);
	assert_non_null(strstr(err.msg, "lease next token: redis 127.0.0.1:"));
	freeReplyObject(redisCommand(p->c, "SET tor:{orders}:epoch -3"));
	assert_int_equal(tor_lease_next_token(p->b, &p->cfg_b, 0, &rt, &err),
	    -1);
	assert_string_equal(err.msg, "lease next token: tor:{orders}:epoch: "
	    "not a token ('-2')");
}

static void
test_acquire_failed_incr(void **state)
{
	struct pair *p = *state;
	uint64_t t = 0;
	tor_err err = { "" };

	/* INCR fails half-way through the script: the error comes back and
	 * no 'pending' lease is left to block everyone for lease_ms. */
	freeReplyObject(redisCommand(p->c, "SET tor:{orders}:epoch nope"));
	assert_int_equal(acquire_err(p->a, &p->s->cfg, &t, &err),
	    -1);
	assert_non_null(strstr(err.msg, "lease acquire: redis 127.0.0.1:"));
	raw_lease_equals(p->c, NULL);

	freeReplyObject(redisCommand(p->c, "SET tor:{orders}:epoch 41"));
	assert_int_equal(acquire(p->a, &p->s->cfg, &t), 1);
	assert_true(t == 42);
}

static void
test_tokens_grow(void **state)
{
	struct pair *p = *state;
	struct tor_config *a = &p->s->cfg;
	uint64_t t = 0, n = 0, prev = 0;
	tor_err err = { "" };
	int i;

	for (i = 0; i < 5; i++) {
		assert_int_equal(tor_lease_next_token(p->a, a, 0, &n, &err), 0);
		assert_true(n == prev + 1);
		prev = n;
	}
	assert_int_equal(acquire(p->a, a, &t), 1);
	assert_true(t == n + 1);
	assert_int_equal(tor_lease_next_token(p->b, &p->cfg_b, 0, &n, &err), 0);
	assert_true(n == t + 1);
	/* A floor puts the epoch past a token seen elsewhere; a floor below
	 * it changes nothing. */
	assert_int_equal(tor_lease_next_token(p->b, &p->cfg_b, 1000, &n, &err),
	    0);
	assert_true(n == 1001);
	assert_int_equal(tor_lease_next_token(p->b, &p->cfg_b, 5, &n, &err), 0);
	assert_true(n == 1002);

	/* Beyond a double's 53 bits the token is still exact. */
	freeReplyObject(redisCommand(p->c, "DEL tor:{orders}:lease"));
	freeReplyObject(redisCommand(p->c, "SET tor:{orders}:epoch %s",
	    "9007199254740993"));
	assert_int_equal(acquire(p->a, a, &t), 1);
	assert_true(t == 9007199254740994ULL);
	raw_lease_equals(p->c, "relay-a 9007199254740994");
	assert_int_equal(tor_lease_renew(p->a, a, t, &err), 1);
}

/* The epoch key lost while the checkpoint kept its token: the next acquire
 * still draws a token above the checkpoint's, so the new leader's writes
 * are not refused (no flapping). */
static void
test_acquire_past_the_checkpoint_token(void **state)
{
	struct pair *p = *state;
	struct tor_config *a = &p->s->cfg;
	uint64_t t = 0;

	freeReplyObject(redisCommand(p->c,
	    "HSET tor:{orders}:checkpoint file f pos 4 epoch 57"));
	assert_int_equal(acquire(p->a, a, &t), 1);
	assert_true(t == 58);
	raw_lease_equals(p->c, "relay-a 58");
	freeReplyObject(redisCommand(p->c, "DEL tor:{orders}:lease"));
	/* Beyond 53 bits, compared as digits. */
	freeReplyObject(redisCommand(p->c, "HSET tor:{orders}:checkpoint epoch "
	    "%s", "9007199254740993"));
	assert_int_equal(acquire(p->a, a, &t), 1);
	assert_true(t == 9007199254740994ULL);
	freeReplyObject(redisCommand(p->c, "DEL tor:{orders}:lease"));
	/* A checkpoint below the epoch changes nothing. */
	freeReplyObject(redisCommand(p->c, "HSET tor:{orders}:checkpoint epoch "
	    "3"));
	assert_int_equal(acquire(p->a, a, &t), 1);
	assert_true(t == 9007199254740995ULL);
}

/* A lease key that is still there, in ms, or -2 when there is none. */
static long long
raw_lease_ttl(redisContext *c)
{
	return raw_int(c, "PTTL tor:{orders}:lease");
}

/* Tokens are bounded (TOR_TOKEN_MAX): a checkpoint whose epoch is past
 * the bound (tampered with: no leader draws such a token) gives the
 * acquire no floor, and the hold refuses it as a floor.
 * An epoch key at the bound, or past Redis's integers, fails every
 * acquire with a message that says so, and never leaves the 'pending'
 * lease behind, which would block every replica for lease_ms. */
static void
test_tokens_bounded(void **state)
{
	struct pair *p = *state;
	struct tor_config *a = &p->s->cfg;
	uint64_t t = 0, n = 0;
	tor_err err = { "" };
	char max[24], over[24];
	redisReply *reply;
	int i;

	snprintf(max, sizeof(max), "%llu", (unsigned long long)TOR_TOKEN_MAX);
	snprintf(over, sizeof(over), "%llu",
	    (unsigned long long)TOR_TOKEN_MAX + 1);
	freeReplyObject(redisCommand(p->c, "HSET tor:{orders}:checkpoint "
	    "file f pos 4 epoch %s", "9223372036854775807"));
	for (i = 0; i < 2; i++) {
		/* A failed acquire must leave no lease behind: a 'pending' one
		 * would hold every replica off for lease_ms, every time. */
		if (acquire_err(p->a, a, &t, &err) != 1) {
			reply = redisCommand(p->c, "GET tor:{orders}:lease");
			snprintf(max, sizeof(max), "%s",
			    reply->type == REDIS_REPLY_STRING ? reply->str :
			    "(none)");
			freeReplyObject(reply);
			fail_msg("acquire %d: %s; the lease is then '%s', %lld "
			    "ms to live", i, err.msg, max, raw_lease_ttl(p->c));
		}
		assert_true(t == (uint64_t)i + 1);
		assert_int_equal(tor_lease_release(p->a, a, t, &err), 1);
	}
	freeReplyObject(redisCommand(p->c, "HSET tor:{orders}:checkpoint "
	    "epoch %s", "99999999999999999999999"));
	assert_int_equal(acquire(p->a, a, &t), 1);
	assert_true(t == 3);
	assert_int_equal(tor_lease_release(p->a, a, t, &err), 1);
	/* The largest token is a floor like any other; the next one is past
	 * the bound. */
	freeReplyObject(redisCommand(p->c, "HSET tor:{orders}:checkpoint "
	    "epoch %s", max));
	for (i = 0; i < 2; i++) {
		assert_int_equal(acquire_err(p->a, a, &t, &err), -1);
		assert_non_null(strstr(err.msg, "lease acquire: redis "
		    "127.0.0.1:"));
		assert_non_null(strstr(err.msg, "past the largest token"));
		assert_true(raw_lease_ttl(p->c) == -2);
	}
	freeReplyObject(redisCommand(p->c, "DEL tor:{orders}:checkpoint"));

	/* The epoch key itself at the bound, or past Redis's integers. */
	freeReplyObject(redisCommand(p->c, "SET tor:{orders}:epoch %s", max));
	assert_int_equal(acquire_err(p->a, a, &t, &err), -1);
	assert_non_null(strstr(err.msg, "past the largest token"));
	assert_true(raw_lease_ttl(p->c) == -2);
	freeReplyObject(redisCommand(p->c, "SET tor:{orders}:epoch %s",
	    "9223372036854775807"));
	assert_int_equal(acquire_err(p->a, a, &t, &err), -1);
	assert_true(raw_lease_ttl(p->c) == -2);
	assert_int_equal(tor_lease_next_token(p->a, a, 0, &n, &err), -1);
	assert_non_null(strstr(err.msg, "lease next token: "));
	assert_int_equal(tor_lease_hold(p->a, a, 1, 0, &n, &err), -1);
	assert_non_null(strstr(err.msg, "lease hold: "));

	/* A floor from elsewhere (Kafka's copy) at or past the bound. */
	freeReplyObject(redisCommand(p->c, "SET tor:{orders}:epoch 5"));
	assert_int_equal(tor_lease_next_token(p->a, a, TOR_TOKEN_MAX, &n, &err),
	    -1);
	assert_non_null(strstr(err.msg, "past the largest token"));
	assert_int_equal(tor_lease_hold(p->a, a, 1, UINT64_MAX, &n, &err), -1);
	assert_non_null(strstr(err.msg, "past the largest token"));
	assert_true(raw_int(p->c, "GET tor:{orders}:epoch") == 5);
	assert_int_equal(tor_lease_next_token(p->a, a, TOR_TOKEN_MAX - 1, &n,
	    &err), 0);
	assert_true(n == TOR_TOKEN_MAX);
	/* A lease value with a token past the bound is not a token. */
	freeReplyObject(redisCommand(p->c, "SET tor:{orders}:lease %s%s",
	    "relay-b ", over));
	assert_int_equal(tor_lease_read(p->a, a, max, sizeof(max), &n,
	    &(int64_t){ 0 }, &err), -1);
}

/* Redis lost its data under a leader: the hold raises the epoch past the
 * floor, replaces our lease with one nobody can take (nor renew), for
 * lease_ms; a lease that is no longer ours is left alone. */
static void
test_hold_after_data_loss(void **state)
{
	struct pair *p = *state;
	struct tor_config *a = &p->s->cfg;
	uint64_t t = 0, n = 0;
	tor_err err = { "" };
	char holder[64];
	int64_t ttl;

	assert_int_equal(acquire(p->a, a, &t), 1);
	assert_true(t == 1);
	assert_int_equal(tor_lease_hold(p->a, a, t, 40, &n, &err), 0);
	assert_true(n == 41);
	raw_lease_equals(p->c, TOR_LEASE_HOLD " 41");
	ttl = raw_int(p->c, "PTTL tor:{orders}:lease");
	assert_true(ttl > a->ha.lease_ms - 1000 && ttl <= a->ha.lease_ms);
	assert_int_equal(tor_lease_read(p->b, &p->cfg_b, holder, sizeof(holder),
	    &n, &ttl, &err), 1);
	assert_string_equal(holder, TOR_LEASE_HOLD);
	assert_int_equal(acquire(p->b, &p->cfg_b, &n), 0);
	assert_int_equal(tor_lease_renew(p->a, a, t, &err), 0);
	/* After it, tokens go on above it. */
	freeReplyObject(redisCommand(p->c, "DEL tor:{orders}:lease"));
	assert_int_equal(acquire(p->b, &p->cfg_b, &n), 1);
	assert_true(n == 42);
	/* Not our lease (any more): the epoch is raised, the lease stays. */
	assert_int_equal(tor_lease_hold(p->a, a, t, 100, &n, &err), 0);
	assert_true(n == 101);
	raw_lease_equals(p->c, "relay-b 42");
}

/* The recorded client of a's connection, "<token> <run_id> <id>". */
static void
raw_record(redisContext *c, char *buf, size_t cap)
{
	redisReply *reply = redisCommand(c, "GET tor:{orders}:lease_client");

	assert_non_null(reply);
	assert_int_equal(reply->type, REDIS_REPLY_STRING);
	snprintf(buf, cap, "%s", reply->str);
	freeReplyObject(reply);
}

static long long
recorded_client(redisContext *c)
{
	char rec[128], tok[24], run[48];
	long long id = 0;

	raw_record(c, rec, sizeof(rec));
	assert_int_equal(sscanf(rec, "%23s %47s %lld", tok, run, &id), 3);
	return id;
}

/* ha.fast_failover: the lease records its leader's client; once Redis no
 * longer has that client (the process died), a follower takes the lease at
 * once with a fresh token.  A live client (a paused process keeps its
 * connection) is waited out; so is a record of another lease, or of another
 * server run. */
static void
test_dead_leader_taken_over(void **state)
{
	struct pair *p = *state;
	struct tor_config *a = &p->s->cfg;
	uint64_t t = 0, n = 0;
	tor_err err = { "" };
	char rec[128], want[160];
	long long id;
	int64_t t0;

	a->ha.fast_failover = true;
	p->cfg_b.ha.fast_failover = true;
	assert_int_equal(acquire(p->a, a, &t), 1);
	raw_record(p->c, rec, sizeof(rec));
	assert_true(strncmp(rec, "1 ", 2) == 0);
	/* No replicas: the record says so. */
	assert_true(strcmp(rec + strlen(rec) - 2, " -") == 0);
	id = recorded_client(p->c);
	assert_true(id > 0);

	/* Alive: b waits; a renews and keeps its record. */
	assert_int_equal(acquire(p->b, &p->cfg_b, &n), 0);
	assert_int_equal(tor_lease_renew(p->a, a, t, &err), 1);
	assert_true(recorded_client(p->c) == id);

	/* A record of another server run (a restart, another master): not
	 * trusted, even for a client that does not exist. */
	snprintf(want, sizeof(want), "SET tor:{orders}:lease_client %s",
	    "1 0123456789abcdef0123456789abcdef01234567 999999 -");
	freeReplyObject(redisCommand(p->c, want));
	assert_int_equal(acquire(p->b, &p->cfg_b, &n), 0);
	/* Renew records the live connection again. */
	assert_int_equal(tor_lease_renew(p->a, a, t, &err), 1);
	assert_true(recorded_client(p->c) == id);

	/* The connection closes (as a killed process's does): b takes the
	 * lease at once, and may lead only a grace period later, by which a
	 * live leader that was told of the close has stopped: the acquire
	 * says when, it does not sleep. */
	freeReplyObject(redisCommand(p->c, "CLIENT KILL ID %lld", id));
	assert_true(tor_redis_lost(p->a));
	t0 = tor_mono_ms();
	assert_int_equal(acquire(p->b, &p->cfg_b, &n), 1);
	assert_true(last_not_before >= t0 + TOR_LEASE_TAKEOVER_GRACE_MS);
	assert_true(last_not_before <= tor_mono_ms() +
	    TOR_LEASE_TAKEOVER_GRACE_MS);
	assert_true(n == 2);
	raw_lease_equals(p->c, "relay-b 2");
	raw_record(p->c, rec, sizeof(rec));
	assert_true(strncmp(rec, "2 ", 2) == 0);
	/* a's renew on a new connection finds the lease gone. */
	assert_int_equal(tor_lease_renew(p->a, a, t, &err), 0);

	/* A record that is not this lease's (the operator's lease, a hold):
	 * nothing to take over. */
	freeReplyObject(redisCommand(p->c, "SET tor:{orders}:lease %s",
	    "tor checkpoint set 9"));
	freeReplyObject(redisCommand(p->c, "SET tor:{orders}:lease_client %s",
	    "2 x 999999 -"));
	assert_int_equal(acquire(p->a, a, &n), 0);

	/* Without fast failover nothing is recorded and nothing is taken. */
	freeReplyObject(redisCommand(p->c, "DEL tor:{orders}:lease "
	    "tor:{orders}:lease_client"));
	a->ha.fast_failover = false;
	assert_int_equal(acquire(p->a, a, &t), 1);
	assert_int_equal(raw_int(p->c, "EXISTS tor:{orders}:lease_client"), 0);
	/* Release takes the record with the lease. */
	a->ha.fast_failover = true;
	assert_int_equal(tor_lease_renew(p->a, a, t, &err), 1);
	assert_int_equal(raw_int(p->c, "EXISTS tor:{orders}:lease_client"), 1);
	assert_int_equal(tor_lease_release(p->a, a, t, &err), 1);
	assert_int_equal(raw_int(p->c, "EXISTS tor:{orders}:lease_client"), 0);
}

/* How many replicas the master of p lists as online. */
static int
online_replicas(redisContext *c)
{
	redisReply *reply = redisCommand(c, "INFO replication");
	const char *at;
	int n = 0;

	assert_non_null(reply);
	for (at = reply->str; (at = strstr(at, ",state=online,")) != NULL;
	    at++)
		n++;
	freeReplyObject(reply);
	return n;
}

static void
wait_replicas(redisContext *c, int want)
{
	int i;

	for (i = 0; i < 200 && online_replicas(c) != want; i++)
		sleep_ms(50);
	assert_int_equal(online_replicas(c), want);
}

/* A Sentinel failover in small: the leader recorded the master's replica;
 * the replica is promoted (it leaves the master) and the leader, alive,
 * follows it there, so its client is gone from the old master, which
 * still takes writes.  A follower on the old master must not take the
 * lease over, even after the leader's last renew there (which keeps the
 * replica it had seen in the record); once the replica is back, the gone
 * client is trusted again. */
static void
test_takeover_needs_the_leaders_replicas(void **state)
{
	struct pair *p = *state;
	struct tor_config *a = &p->s->cfg;
	struct server rs = { .port = free_port() };
	redisContext *rc;
	uint64_t t = 0, n = 0;
	tor_err err = { "" };
	char rec[256], want[64];

	server_start(&rs);
	rc = raw_connect(&rs);
	/* A sync at once, not after the default 5 s wait for more
	 * replicas, and loaded from the socket: a replica writes what it
	 * received to a dump.rdb in its directory otherwise, which every
	 * later server of the tests would load. */
	freeReplyObject(redisCommand(p->c, "CONFIG SET "
	    "repl-diskless-sync-delay 0"));
	freeReplyObject(redisCommand(rc, "CONFIG SET repl-diskless-load "
	    "swapdb"));
	freeReplyObject(redisCommand(rc, "REPLICAOF 127.0.0.1 %d", p->s->port));
	wait_replicas(p->c, 1);
	a->ha.fast_failover = true;
	p->cfg_b.ha.fast_failover = true;
	assert_int_equal(acquire(p->a, a, &t), 1);
	assert_true(t == 1);

	/* Promoted: it leaves the old master.  The leader renews once more
	 * on the old master before it follows. */
	freeReplyObject(redisCommand(rc, "REPLICAOF NO ONE"));
	wait_replicas(p->c, 0);
	assert_int_equal(tor_lease_renew(p->a, a, t, &err), 1);
	freeReplyObject(redisCommand(p->c, "CLIENT KILL ID %lld",
	    recorded_client(p->c)));
	assert_true(tor_redis_lost(p->a));
	assert_int_equal(acquire(p->b, &p->cfg_b, &n), 0);
	snprintf(want, sizeof(want), "relay-a %llu", (unsigned long long)t);
	raw_lease_equals(p->c, want);
	/* The record kept the replica the leader saw first. */
	raw_record(p->c, rec, sizeof(rec));
	snprintf(want, sizeof(want), " 127.0.0.1:%d", rs.port);
	assert_non_null(strstr(rec, want));
	snprintf(want, sizeof(want), "relay-a %llu", (unsigned long long)t);

	/* Back as a replica of this master: the leader cannot be renewing
	 * there; a gone client is dead. */
	freeReplyObject(redisCommand(rc, "REPLICAOF 127.0.0.1 %d", p->s->port));
	wait_replicas(p->c, 1);
	raw_lease_equals(p->c, want);
	assert_int_equal(acquire(p->b, &p->cfg_b, &n), 1);
	assert_true(n == t + 1);

	/* A record that names no replicas (as an older version wrote it) is
	 * not trusted either. */
	raw_record(p->c, rec, sizeof(rec));
	*strrchr(rec, ' ') = '\0';
	*strrchr(rec, ' ') = '\0';
	freeReplyObject(redisCommand(p->c, "SET tor:{orders}:lease_client "
	    "%s 999999", rec));
	assert_int_equal(acquire(p->a, a, &t), 0);
	snprintf(want, sizeof(want), "relay-b %llu", (unsigned long long)n);
	raw_lease_equals(p->c, want);
	redisFree(rc);
	server_stop(&rs, SIGTERM);
}

/* Every operation fails with -1 and names the server and the operation. */
static void
test_redis_down(void **state)
{
	struct pair *p = *state;
	struct tor_config *a = &p->s->cfg;
	uint64_t t = 0;
	int64_t ttl;
	tor_err err;
	char inst[64], want[128];
	int rc, i;

	server_stop(p->s, SIGKILL);
	snprintf(want, sizeof(want), "redis 127.0.0.1:%d", p->s->port);
	for (i = 0; i < 6; i++) {
		const char *op;

		memset(&err, 0, sizeof(err));
		switch (i) {
		case 0:
			op = "lease acquire: ";
			rc = acquire_err(p->a, a, &t, &err);
			break;
		case 1:
			op = "lease renew: ";
			rc = tor_lease_renew(p->a, a, 1, &err);
			break;
		case 2:
			op = "lease release: ";
			rc = tor_lease_release(p->a, a, 1, &err);
			break;
		case 3:
			op = "lease handoff_to: ";
			rc = tor_lease_set_handoff_to(p->a, a, "relay-b", 100,
			    &err);
			break;
		case 4:
			op = "lease read: ";
			rc = tor_lease_read(p->a, a, inst, sizeof(inst), &t,
			    &ttl, &err);
			break;
		default:
			op = "lease next token: ";
			rc = tor_lease_next_token(p->a, a, 0, &t, &err);
			break;
		}
		if (rc != -1)
			fail_msg("%s returned %d with Redis down", op, rc);
		assert_memory_equal(err.msg, op, strlen(op));
		if (strstr(err.msg, want) == NULL)
			fail_msg("'%s' does not name %s", err.msg, want);
	}
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup_pair, teardown_pair)
	const struct CMUnitTest tests[] = {
		T(test_acquire_renew),
		T(test_expiry),
		T(test_release),
		T(test_release_wakes_up),
		T(test_subscriber_hears_the_release),
		T(test_release_without_channel_rights),
		T(test_handoff_to),
		T(test_takeover_only),
		T(test_read),
		T(test_read_bad_values),
		T(test_acquire_failed_incr),
		T(test_tokens_grow),
		T(test_acquire_past_the_checkpoint_token),
		T(test_tokens_bounded),
		T(test_hold_after_data_loss),
		T(test_dead_leader_taken_over),
		T(test_takeover_needs_the_leaders_replicas),
		T(test_redis_down),
	};
#undef T

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
