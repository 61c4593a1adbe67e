/*
 * Unit tests of ha/members.c: the member line, the share, the target and
 * the group a replica sheds (pure functions), then the beat, leave and
 * decision scripts against a private redis-server (redis_server.h) and
 * against a private three-master Redis Cluster, where every script must
 * run from whichever node a replica was told of.
 *
 * Two replicas are two configs that differ in cfg->instance.  Beats use
 * pool.beat_ms 100, so a member is dropped 300 ms after its last beat.
 */
#include "redis_server.h"

#include <dirent.h>
#include <stdatomic.h>

#include "tor/members.h"

static struct tor_member
member(const char *instance, int led, bool healthy, bool draining,
    int64_t since_ms)
{
	struct tor_member m = { .led = led, .healthy = healthy,
	    .draining = draining, .max_leading = 64, .groups_hash = 1,
	    .since_ms = since_ms };

	snprintf(m.instance, sizeof(m.instance), "%s", instance);
	return m;
}

/* ---- the line ---- */

static void
test_line_round_trip(void **state)
{
	struct tor_member m = member("r1", 7, true, false, 1765000000123),
	    back;
	char line[TOR_MEMBER_LINE_MAX];

	(void)state;
	m.max_leading = 100;
	m.groups_hash = 0x00ab00cd00ef0012ull;
	assert_int_equal(tor_member_format(&m, line, sizeof(line)), 0);
	assert_string_equal(line, "7 1 0 100 00ab00cd00ef0012 1765000000123");
	memset(&back, 0, sizeof(back));
	assert_int_equal(tor_member_parse(line, &back), 0);
	assert_int_equal(back.led, 7);
	assert_true(back.healthy);
	assert_false(back.draining);
	assert_int_equal(back.max_leading, 100);
	assert_true(back.groups_hash == m.groups_hash);
	assert_true(back.since_ms == 1765000000123);

	m = member("r2", 0, false, true, 0);
	m.groups_hash = UINT64_MAX;
	assert_int_equal(tor_member_format(&m, line, sizeof(line)), 0);
	assert_string_equal(line, "0 0 1 64 ffffffffffffffff 0");
	assert_int_equal(tor_member_parse(line, &back), 0);
	assert_false(back.healthy);
	assert_true(back.draining);
	assert_true(back.groups_hash == UINT64_MAX);
	assert_int_equal(tor_member_format(&m, line, 20), -1);
}

static void
test_line_refusals(void **state)
{
	static const char *const bad[] = {
		"",
		"1 1 0 64 00000000000000aa",            /* no since */
		"1 1 0 64 00000000000000aa 5 6",        /* one field more */
		"1 1 0 64 00000000000000aa 5 ",
		" 1 1 0 64 00000000000000aa 5",
		"1  1 0 64 00000000000000aa 5",
		"-1 1 0 64 00000000000000aa 5",         /* a sign */
		"+1 1 0 64 00000000000000aa 5",
		"1 2 0 64 00000000000000aa 5",          /* a flag not 0/1 */
		"1 1 7 64 00000000000000aa 5",
		"1 1 0 0 00000000000000aa 5",           /* max_leading < 1 */
		"1 1 0 64 00000000000000AA 5",          /* upper case */
		"1 1 0 64 aa 5",                        /* short hash */
		"1 1 0 64 00000000000000aa0 5",         /* long hash */
		"1 1 0 64 00000000000000ag 5",
		"01 1 0 64 00000000000000aa 5",         /* a leading zero */
		"2147483648 1 0 64 00000000000000aa 5", /* past an int */
		"1 1 0 64 00000000000000aa 99999999999999999999",
		"1 1 0 64 00000000000000aa 5x",
		"1\t1 0 64 00000000000000aa 5",
	};
	struct tor_member m;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (tor_member_parse(bad[i], &m) != -1)
			fail_msg("accepted \"%s\"", bad[i]);
}

/* ---- the share ---- */

static void
test_share(void **state)
{
	const int64_t now = 1000000, settle = 10000;
	struct tor_member m[4];

	(void)state;
	/* Alone: everything, up to the cap. */
	m[0] = member("me", 0, true, false, now);
	assert_int_equal(tor_pool_share(m, 1, "me", 10, settle, now, 64), 10);
	assert_int_equal(tor_pool_share(m, 1, "me", 10, settle, now, 4), 4);
	assert_int_equal(tor_pool_share(m, 1, "me", 0, settle, now, 64), 0);
	/* The caller counts even when it has just come (and when its own
	 * line is missing from the list). */
	m[1] = member("b", 3, true, false, now - settle);
	m[2] = member("c", 3, true, false, now - settle - 1);
	assert_int_equal(tor_pool_share(m, 3, "me", 10, settle, now, 64), 4);
	assert_int_equal(tor_pool_share(m + 1, 2, "me", 10, settle, now, 64),
	    4);
	/* 10 on 3: 4 (ceil), capped. */
	assert_int_equal(tor_pool_share(m, 3, "me", 10, settle, now, 3), 3);
	/* Unsettled by one ms: not counted yet. */
	m[2].since_ms = now - settle + 1;
	assert_int_equal(tor_pool_share(m, 3, "me", 10, settle, now, 64), 5);
	/* Unhealthy, draining: not counted. */
	m[2].since_ms = now - settle;
	m[1].healthy = false;
	assert_int_equal(tor_pool_share(m, 3, "me", 10, settle, now, 64), 5);
	m[1].healthy = true;
	m[2].draining = true;
	assert_int_equal(tor_pool_share(m, 3, "me", 10, settle, now, 64), 5);
	/* settle_ms 0: a newcomer counts at once. */
	m[2].draining = false;
	m[3] = member("d", 0, true, false, now);
	assert_int_equal(tor_pool_share(m, 4, "me", 10, 0, now, 64), 3);
	assert_int_equal(tor_pool_share(m, 4, "me", 10, settle, now, 64), 4);
}

/* ---- the target ---- */

static void
test_pick_target(void **state)
{
	const int64_t now = 1000000, settle = 10000, old = now - settle;
	struct tor_member m[6];

	(void)state;
	m[0] = member("me", 6, true, false, old);
	m[1] = member("zed", 2, true, false, old);
	m[2] = member("bee", 2, true, false, old);
	m[3] = member("ant", 1, false, false, old);      /* unhealthy */
	m[4] = member("cat", 0, true, true, old);        /* draining */
	m[5] = member("dog", 0, true, false, now - 1);   /* unsettled */
	/* Fewest led among the eligible: zed and bee tie, bee is lower. */
	assert_int_equal(tor_pool_pick_target(m, 6, "me", 4, settle, now), 2);
	/* The same whatever the order. */
	assert_int_equal(tor_pool_pick_target(m + 1, 2, "me", 4, settle, now),
	    1);
	/* Fewer led wins over the name. */
	m[1].led = 1;
	assert_int_equal(tor_pool_pick_target(m, 6, "me", 4, settle, now), 1);
	/* Settled now: dog leads nothing. */
	assert_int_equal(tor_pool_pick_target(m, 6, "me", 4, 1, now), 5);
	/* At their share, or at their own cap: nobody. */
	m[1].led = 2;
	assert_int_equal(tor_pool_pick_target(m, 6, "me", 2, settle, now), -1);
	m[1].max_leading = 2;
	m[2].max_leading = 1;
	assert_int_equal(tor_pool_pick_target(m, 6, "me", 4, settle, now), -1);
	/* Never me, even below the share. */
	m[0].led = 0;
	assert_int_equal(tor_pool_pick_target(m, 1, "me", 4, settle, now), -1);
	assert_int_equal(tor_pool_pick_target(m, 0, "me", 4, settle, now), -1);
}

/* ---- the group ---- */

static void
test_pick_group_stable(void **state)
{
	const char *groups[] = { "orders", "billing", "shop-eu", "shop-us",
	    "audit", "payments", "crm", "stock" };
	const char *reversed[8], *without[7];
	size_t n = 8, pick, k = 0;

	(void)state;
	assert_int_equal(tor_pool_pick_group("tor-0", groups, 0), 0);
	pick = tor_pool_pick_group("tor-0", groups, n);
	assert_true(pick < n);
	/* The same group whatever the order of the list... */
	for (size_t i = 0; i < n; i++)
		reversed[i] = groups[n - 1 - i];
	assert_string_equal(reversed[tor_pool_pick_group("tor-0", reversed,
	    n)], groups[pick]);
	/* ...and when another group has left. */
	for (size_t i = 0; i < n; i++)
		if (i != (pick + 1) % n)
			without[k++] = groups[i];
	assert_string_equal(without[tor_pool_pick_group("tor-0", without,
	    n - 1)], groups[pick]);
	/* Pinned: the choice is the same in every process and build. */
	assert_string_equal(groups[pick], "payments");
	assert_string_equal(groups[tor_pool_pick_group("tor-1", groups, n)],
	    "audit");
}

/* Replicas that lead the same groups shed different ones, and over many
 * groups each replica ranks about a third lowest. */
static void
test_pick_group_spreads(void **state)
{
	const char *inst[] = { "tor-0", "tor-1", "tor-2" };
	static char names[300][24];
	const char *two[2];
	int lowest[3] = { 0, 0, 0 }, differ = 0;

	(void)state;
	for (int g = 0; g < 300; g++)
		snprintf(names[g], sizeof(names[g]), "group-%d", g);
	/* For each group, which replica ranks it lowest (would shed it
	 * first between just that group and another). */
	for (int g = 0; g < 300; g += 2) {
		size_t p[3];

		two[0] = names[g];
		two[1] = names[g + 1];
		for (int i = 0; i < 3; i++)
			p[i] = tor_pool_pick_group(inst[i], two, 2);
		if (p[0] != p[1] || p[1] != p[2])
			differ++;
		for (int i = 0; i < 3; i++)
			lowest[i] += p[i] == 0;
	}
	print_message("  150 pairs: replicas disagree on %d; first of the "
	    "pair shed %d, %d, %d times\n", differ, lowest[0], lowest[1],
	    lowest[2]);
	/* Independent coins: three agree on a pair a quarter of the time. */
	assert_in_range(differ, 80, 140);
	for (int i = 0; i < 3; i++)
		assert_in_range(lowest[i], 45, 105);
}

static void
test_groups_hash(void **state)
{
	struct tor_config a[3], b[3], c[2];
	uint64_t h;

	(void)state;
	memset(a, 0, sizeof(a));
	memset(b, 0, sizeof(b));
	memset(c, 0, sizeof(c));
	a[0].group = (char *)"shop-eu";
	a[1].group = (char *)"billing";
	a[2].group = (char *)"audit";
	b[0].group = (char *)"audit";
	b[1].group = (char *)"shop-eu";
	b[2].group = (char *)"billing";
	c[0].group = (char *)"audit";
	c[1].group = (char *)"billing";
	h = tor_pool_groups_hash(a, 3);
	assert_true(h == tor_pool_groups_hash(b, 3));
	assert_true(h != tor_pool_groups_hash(c, 2));
	/* Names are not run together: "ab","c" is not "a","bc". */
	c[0].group = (char *)"ab";
	c[1].group = (char *)"c";
	b[0].group = (char *)"a";
	b[1].group = (char *)"bc";
	assert_true(tor_pool_groups_hash(c, 2) != tor_pool_groups_hash(b, 2));
	/* Pinned, so that a change of the function is a change of the
	 * protocol that a rolling upgrade would see as a config mismatch. */
	assert_true(h == 0x85744781f9e4d23aull);
}

/* ---- the scripts, on one Redis ---- */

struct two {
	struct server *s;
	struct tor_config cfg_b;        /* s->cfg is member A */
	struct tor_redis *a, *b;
	redisContext *c;
};

static int
setup_two(void **state)
{
	struct two *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	*state = t;
	assert_int_equal(setup_server((void **)&t->s), 0);
	t->s->cfg.pool.enabled = true;
	t->s->cfg.pool.name = (char *)"orders";
	t->s->cfg.pool.beat_ms = 100;
	t->s->cfg.pool.max_leading = 64;
	t->cfg_b = t->s->cfg;
	t->cfg_b.instance = (char *)"relay-b";
	t->a = tor_redis_new_tag(&t->s->cfg, "pool:orders");
	t->b = tor_redis_new_tag(&t->cfg_b, "pool:orders");
	assert_non_null(t->a);
	assert_non_null(t->b);
	t->c = raw_connect(t->s);
	return 0;
}

static int
teardown_two(void **state)
{
	struct two *t = *state;

	if (t->c != NULL)
		redisFree(t->c);
	tor_redis_free(t->a);
	tor_redis_free(t->b);
	if (t->s != NULL)
		teardown_server((void **)&t->s);
	free(t);
	return 0;
}

/* Beats as cfg's instance with led groups; the members into out. */
static size_t
beat(struct tor_redis *r, const struct tor_config *cfg, int led,
    struct tor_member *out, size_t cap, int64_t *now)
{
	struct tor_member me = member(cfg->instance, led, true, false, 0);
	tor_err err = { "" };
	size_t n = 0;

	me.groups_hash = 0xfeed;
	if (tor_members_beat(r, cfg, &me, out, cap, &n, now, &err) != 0)
		fail_msg("beat: %s", err.msg);
	return n;
}

static const struct tor_member *
find(const struct tor_member *m, size_t n, const char *instance)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(m[i].instance, instance) == 0)
			return &m[i];
	return NULL;
}

static long long
raw_int(redisContext *c, const char *fmt, const char *arg)
{
	redisReply *reply = redisCommand(c, fmt, arg);
	long long v;

	assert_non_null(reply);
	assert_int_equal(reply->type, REDIS_REPLY_INTEGER);
	v = reply->integer;
	freeReplyObject(reply);
	return v;
}

static void
test_beat_two_members(void **state)
{
	struct two *t = *state;
	struct tor_member m[8];
	const struct tor_member *a, *b;
	int64_t now, now2, since_a;
	size_t n;

	n = beat(t->a, &t->s->cfg, 3, m, 8, &now);
	assert_int_equal(n, 1);
	assert_string_equal(m[0].instance, "relay-a");
	assert_int_equal(m[0].led, 3);
	assert_true(m[0].groups_hash == 0xfeed);
	/* The server's time, and since is the first beat's. */
	assert_true(llabs(now - now_ms()) < 5000);
	assert_true(m[0].since_ms == now);
	since_a = now;

	sleep_ms(30);
	n = beat(t->b, &t->cfg_b, 1, m, 8, &now2);
	assert_int_equal(n, 2);
	assert_true(now2 >= now);
	a = find(m, n, "relay-a");
	b = find(m, n, "relay-b");
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(a->led, 3);
	assert_int_equal(b->led, 1);
	assert_true(a->since_ms == since_a);
	assert_true(b->since_ms == now2);

	/* Kept over later beats, whatever else changes. */
	sleep_ms(50);
	n = beat(t->a, &t->s->cfg, 5, m, 8, &now);
	a = find(m, n, "relay-a");
	assert_non_null(a);
	assert_int_equal(a->led, 5);
	assert_true(a->since_ms == since_a);
	assert_true(now > since_a);
	/* The keys as the design names them, on the server. */
	assert_int_equal(raw_int(t->c, "ZCARD %s", "tor:{pool:orders}:members"),
	    2);
	assert_in_range(raw_int(t->c, "PTTL %s",
	    "tor:{pool:orders}:member:relay-a"), 1, 300);

	/* Too many for the caller's array: an error, not a cut list. */
	{
		struct tor_member me = member("relay-a", 0, true, false, 0);
		tor_err err = { "" };

		assert_int_equal(tor_members_beat(t->a, &t->s->cfg, &me, m, 1,
		    &n, &now, &err), -1);
		assert_non_null(strstr(err.msg, "more than 1 members"));
	}
}

/* A member that stops beating is dropped after three beats (300 ms) by
 * the next beat of another, its line too; one that comes back starts a
 * new since. */
static void
test_beat_drops_the_silent(void **state)
{
	struct two *t = *state;
	struct tor_member m[8];
	int64_t now, first_b, b_last;
	size_t n;
	int seen_until = 0;

	beat(t->b, &t->cfg_b, 1, m, 8, &first_b);
	b_last = first_b;
	/* A beats every 100 ms; B beats once more, then stops. */
	sleep_ms(100);
	beat(t->b, &t->cfg_b, 1, m, 8, &b_last);
	for (int i = 1; i <= 8; i++) {
		sleep_ms(100);
		n = beat(t->a, &t->s->cfg, 0, m, 8, &now);
		if (find(m, n, "relay-b") != NULL) {
			/* Listed only while its expiry has not passed. */
			assert_true(now - b_last <= 300);
			seen_until = i;
		} else {
			assert_true(now - b_last >= 300);
		}
	}
	print_message("  the silent member was listed for %d of A's beats "
	    "after its last\n", seen_until);
	assert_in_range(seen_until, 1, 3);
	assert_int_equal(n, 1);
	assert_int_equal(raw_int(t->c, "EXISTS %s",
	    "tor:{pool:orders}:member:relay-b"), 0);
	assert_int_equal(raw_int(t->c, "ZCARD %s", "tor:{pool:orders}:members"),
	    1);

	/* Back: a newcomer again, settle_ms counts from now. */
	n = beat(t->b, &t->cfg_b, 0, m, 8, &now);
	assert_int_equal(n, 2);
	assert_true(find(m, n, "relay-b")->since_ms == now);
	assert_true(now > first_b);
}

static void
test_leave(void **state)
{
	struct two *t = *state;
	struct tor_member m[8];
	tor_err err = { "" };
	int64_t now;
	size_t n;

	beat(t->a, &t->s->cfg, 0, m, 8, &now);
	assert_int_equal(beat(t->b, &t->cfg_b, 0, m, 8, &now), 2);
	assert_int_equal(tor_members_leave(t->b, &t->cfg_b, &err), 0);
	n = beat(t->a, &t->s->cfg, 0, m, 8, &now);
	assert_int_equal(n, 1);
	assert_string_equal(m[0].instance, "relay-a");
	assert_int_equal(raw_int(t->c, "EXISTS %s",
	    "tor:{pool:orders}:member:relay-b"), 0);
	/* Leaving twice is harmless. */
	assert_int_equal(tor_members_leave(t->b, &t->cfg_b, &err), 0);
}

/* A line that does not parse (set by hand, a future version) is left out;
 * the beat still works.  An expired member's line is deleted even when it
 * would outlive it. */
static void
test_beat_skips_a_bad_line(void **state)
{
	struct two *t = *state;
	struct tor_member m[8];
	redisReply *reply;
	int64_t now;
	size_t n;

	reply = redisCommand(t->c, "ZADD tor:{pool:orders}:members "
	    "99999999999999 odd");
	freeReplyObject(reply);
	reply = redisCommand(t->c, "SET tor:{pool:orders}:member:odd "
	    "hello");
	freeReplyObject(reply);
	/* A member expired in the set whose line has no expiry of its own:
	 * the line goes with it. */
	reply = redisCommand(t->c, "ZADD tor:{pool:orders}:members 1 ghost");
	freeReplyObject(reply);
	reply = redisCommand(t->c, "SET tor:{pool:orders}:member:ghost "
	    "%s", "1 1 0 64 000000000000feed 1");
	freeReplyObject(reply);
	n = beat(t->a, &t->s->cfg, 2, m, 8, &now);
	assert_int_equal(n, 1);
	assert_string_equal(m[0].instance, "relay-a");
	assert_int_equal(raw_int(t->c, "EXISTS %s",
	    "tor:{pool:orders}:member:ghost"), 0);
}

static void
test_decisions_trimmed(void **state)
{
	struct two *t = *state;
	struct tor_decision d[120];
	tor_err err = { "" };
	char line[128];
	size_t n;

	assert_int_equal(tor_members_decisions(t->a, &t->s->cfg, d, 120, &n,
	    &err), 0);
	assert_int_equal(n, 0);
	for (int i = 0; i < 105; i++) {
		snprintf(line, sizeof(line), "%d relay-a shed g%d relay-b "
		    "balance", 1000 + i, i);
		assert_int_equal(tor_members_record(t->a, &t->s->cfg, line,
		    &err), 0);
	}
	assert_int_equal(raw_int(t->c, "LLEN %s", "tor:{pool:orders}:decisions"),
	    100);
	assert_int_equal(tor_members_decisions(t->b, &t->cfg_b, d, 120, &n,
	    &err), 0);
	assert_int_equal(n, 100);
	assert_string_equal(d[0].line, "1104 relay-a shed g104 relay-b "
	    "balance");
	assert_string_equal(d[99].line, "1005 relay-a shed g5 relay-b "
	    "balance");
	assert_int_equal(tor_members_decisions(t->b, &t->cfg_b, d, 3, &n,
	    &err), 0);
	assert_int_equal(n, 3);
	assert_string_equal(d[2].line, "1102 relay-a shed g102 relay-b "
	    "balance");
}

static void
test_redis_down(void **state)
{
	struct two *t = *state;
	struct tor_member me = member("relay-a", 0, true, false, 0), m[2];
	tor_err err = { "" };
	int64_t now;
	size_t n;

	server_stop(t->s, SIGKILL);
	assert_int_equal(tor_members_beat(t->a, &t->s->cfg, &me, m, 2, &n,
	    &now, &err), -1);
	assert_non_null(strstr(err.msg, "pool beat: redis 127.0.0.1:"));
	assert_int_equal(tor_members_record(t->a, &t->s->cfg, "x", &err), -1);
	assert_non_null(strstr(err.msg, "pool decision: redis 127.0.0.1:"));
	assert_int_equal(tor_members_leave(t->a, &t->s->cfg, &err), -1);
	assert_non_null(strstr(err.msg, "pool leave: redis 127.0.0.1:"));
}

/* ---- the scripts, on a Redis Cluster ---- */

#define NODES 3

struct cluster {
	pid_t pid[NODES];
	int port[NODES];
	char dir[64];
	char seed[NODES][32];
	char *seeds[NODES];
};

static redisContext *
node_connect(int port)
{
	struct timeval tv = { 2, 0 };
	redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);

	assert_non_null(c);
	assert_int_equal(c->err, 0);
	return c;
}

static void
node_cmd(int port, const char *fmt, ...)
{
	redisContext *c = node_connect(port);
	redisReply *reply;
	va_list ap;

	va_start(ap, fmt);
	reply = redisvCommand(c, fmt, ap);
	va_end(ap);
	assert_non_null(reply);
	if (reply->type == REDIS_REPLY_ERROR)
		fail_msg("node %d: %s", port, reply->str);
	freeReplyObject(reply);
	redisFree(c);
}

static bool
cluster_ok(int port)
{
	redisContext *c = node_connect(port);
	redisReply *reply = redisCommand(c, "CLUSTER INFO");
	bool ok = reply != NULL && reply->type == REDIS_REPLY_STRING &&
	    strstr(reply->str, "cluster_state:ok") != NULL &&
	    strstr(reply->str, "cluster_known_nodes:3") != NULL;

	if (reply != NULL)
		freeReplyObject(reply);
	redisFree(c);
	return ok;
}

/* True when port is free on 127.0.0.1 now. */
static bool
port_free(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
	    .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* A free port for a cluster node: its bus listens 10000 above it, so it
 * must be 55535 at most and that one free too. */
static int
node_port(void)
{
	for (int i = 0; i < 1000; i++) {
		int port = free_port();

		if (port <= 55535 && port_free(port + 10000))
			return port;
	}
	fail_msg("no port for a cluster node");
	return -1;
}

static int
teardown_cluster(void **state)
{
	struct cluster *cl = *state;
	struct dirent *e;
	char path[320];
	DIR *d;
	int status;

	for (int i = 0; i < NODES; i++)
		if (cl->pid[i] > 0) {
			kill(cl->pid[i], SIGKILL);
			waitpid(cl->pid[i], &status, 0);
		}
	if ((d = opendir(cl->dir)) != NULL) {
		while ((e = readdir(d)) != NULL)
			if (e->d_name[0] != '.') {
				snprintf(path, sizeof(path), "%s/%s", cl->dir,
				    e->d_name);
				unlink(path);
			}
		closedir(d);
		rmdir(cl->dir);
	}
	free(cl);
	return 0;
}

/* Three masters, no replicas, slots split in three, every node told of
 * the others; ready when each says cluster_state:ok. */
static int
setup_cluster(void **state)
{
	struct cluster *cl = calloc(1, sizeof(*cl));
	static const int from[NODES] = { 0, 5461, 10923 };
	static const int to[NODES] = { 5460, 10922, 16383 };
	pid_t parent = getpid();
	char port[16], conf[32];
	int i, tries;

	assert_non_null(cl);
	*state = cl;
	snprintf(cl->dir, sizeof(cl->dir), "/tmp/tor-members-XXXXXX");
	assert_non_null(mkdtemp(cl->dir));
	for (i = 0; i < NODES; i++) {
		cl->port[i] = node_port();
		snprintf(cl->seed[i], sizeof(cl->seed[i]), "127.0.0.1:%d",
		    cl->port[i]);
		cl->seeds[i] = cl->seed[i];
		snprintf(port, sizeof(port), "%d", cl->port[i]);
		snprintf(conf, sizeof(conf), "nodes-%d.conf", cl->port[i]);
		if ((cl->pid[i] = fork()) == 0) {
			int fd = open("/dev/null", O_RDWR);

			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != parent)
				_exit(127);
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
			execlp("redis-server", "redis-server", "--port", port,
			    "--bind", "127.0.0.1", "--save", "", "--appendonly",
			    "no", "--dir", cl->dir, "--cluster-enabled", "yes",
			    "--cluster-config-file", conf,
			    "--cluster-node-timeout", "1000", (char *)NULL);
			_exit(127);
		}
		assert_true(cl->pid[i] > 0);
	}
	for (i = 0; i < NODES; i++) {
		for (tries = 0; tries < 100 && !server_answers(cl->port[i]);
		    tries++)
			sleep_ms(50);
		if (!server_answers(cl->port[i]))
			break;
		node_cmd(cl->port[i], "CLUSTER ADDSLOTSRANGE %d %d", from[i],
		    to[i]);
	}
	if (i < NODES) {
		int port_down = cl->port[i];

		/* cmocka skips the teardown of a failed setup. */
		teardown_cluster(state);
		fail_msg("cluster node on port %d did not answer", port_down);
	}
	for (i = 1; i < NODES; i++)
		node_cmd(cl->port[0], "CLUSTER MEET 127.0.0.1 %d", cl->port[i]);
	for (tries = 0; tries < 200; tries++) {
		bool all = true;

		for (i = 0; i < NODES && all; i++)
			all = cluster_ok(cl->port[i]);
		if (all)
			return 0;
		sleep_ms(50);
	}
	teardown_cluster(state);
	fail_msg("the cluster was not ok within 10 s");
	return -1;
}

/* The port of the node that serves key's slot (CLUSTER SLOTS of node 0). */
static int
serving(const struct cluster *cl, const char *key)
{
	int slot = tor_redis_slot(key), port = -1;
	redisContext *c = node_connect(cl->port[0]);
	redisReply *reply = redisCommand(c, "CLUSTER SLOTS");

	assert_non_null(reply);
	for (size_t i = 0; i < reply->elements; i++) {
		redisReply *r = reply->element[i];

		if (slot >= r->element[0]->integer &&
		    slot <= r->element[1]->integer)
			port = (int)r->element[2]->element[1]->integer;
	}
	freeReplyObject(reply);
	redisFree(c);
	assert_int_not_equal(port, -1);
	return port;
}

/*
 * Each member is told of one node only, a different one each, and one of
 * them through a connection made for its group's slot: every script still
 * runs (the MOVED is followed), the keys land on the node that serves the
 * pool's slot, and each member sees the others.
 */
static void
test_cluster_from_any_node(void **state)
{
	struct cluster *cl = *state;
	struct tor_config cfg[NODES];
	struct tor_redis *r[NODES];
	static const char *const inst[NODES] = { "tor-0", "tor-1", "tor-2" };
	struct tor_decision d[4];
	struct tor_member m[8];
	tor_err err = { "" };
	redisContext *c;
	redisReply *reply;
	int64_t now;
	size_t n;
	int owner;

	owner = serving(cl, "{pool:orders}");
	/* tor-0's connection starts on another node than the pool's. */
	assert_int_not_equal(serving(cl, "{orders}"), owner);
	print_message("  slot %d of {pool:orders} on node %d, group orders' "
	    "slot %d on node %d\n", tor_redis_slot("{pool:orders}"), owner,
	    tor_redis_slot("{orders}"), serving(cl, "{orders}"));
	for (int i = 0; i < NODES; i++) {
		memset(&cfg[i], 0, sizeof(cfg[i]));
		cfg[i].group = (char *)"orders";
		cfg[i].instance = (char *)inst[i];
		cfg[i].redis.password = (char *)"";
		cfg[i].redis.prefix = (char *)"tor";
		cfg[i].redis.timeout_ms = 2000;
		cfg[i].redis.cluster.nodes = &cl->seeds[i];
		cfg[i].redis.cluster.n_nodes = 1;
		cfg[i].pool.name = (char *)"orders";
		cfg[i].pool.beat_ms = 1000;
		/* tor-0 on a connection made for its group's slot. */
		r[i] = i == 0 ? tor_redis_new(&cfg[i]) :
		    tor_redis_new_tag(&cfg[i], "pool:orders");
		assert_non_null(r[i]);
	}
	for (int round = 0; round < 2; round++)
		for (int i = 0; i < NODES; i++) {
			n = beat(r[i], &cfg[i], i, m, 8, &now);
			assert_int_equal(n, round == 0 ? (size_t)i + 1 : NODES);
		}
	for (int i = 0; i < NODES; i++)
		assert_int_equal(find(m, n, inst[i])->led, i);
	assert_int_equal(tor_members_record(r[1], &cfg[1], "1 tor-1 shed "
	    "orders tor-2 balance", &err), 0);
	assert_int_equal(tor_members_decisions(r[2], &cfg[2], d, 4, &n, &err),
	    0);
	assert_int_equal(n, 1);
	assert_int_equal(tor_members_leave(r[0], &cfg[0], &err), 0);
	assert_int_equal(beat(r[2], &cfg[2], 0, m, 8, &now), 2);

	/* Where the keys are: on the pool slot's node. */
	c = node_connect(owner);
	reply = redisCommand(c, "ZCARD tor:{pool:orders}:members");
	assert_int_equal(reply->type, REDIS_REPLY_INTEGER);
	assert_int_equal(reply->integer, 2);
	freeReplyObject(reply);
	reply = redisCommand(c, "EXISTS tor:{pool:orders}:member:tor-2 "
	    "tor:{pool:orders}:decisions");
	assert_int_equal(reply->integer, 2);
	freeReplyObject(reply);
	redisFree(c);
	for (int i = 0; i < NODES; i++)
		tor_redis_free(r[i]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_line_round_trip),
		cmocka_unit_test(test_line_refusals),
		cmocka_unit_test(test_share),
		cmocka_unit_test(test_pick_target),
		cmocka_unit_test(test_pick_group_stable),
		cmocka_unit_test(test_pick_group_spreads),
		cmocka_unit_test(test_groups_hash),
		cmocka_unit_test_setup_teardown(test_beat_two_members,
		    setup_two, teardown_two),
		cmocka_unit_test_setup_teardown(test_beat_drops_the_silent,
		    setup_two, teardown_two),
		cmocka_unit_test_setup_teardown(test_leave, setup_two,
		    teardown_two),
		cmocka_unit_test_setup_teardown(test_beat_skips_a_bad_line,
		    setup_two, teardown_two),
		cmocka_unit_test_setup_teardown(test_decisions_trimmed,
		    setup_two, teardown_two),
		cmocka_unit_test_setup_teardown(test_redis_down, setup_two,
		    teardown_two),
		cmocka_unit_test_setup_teardown(test_cluster_from_any_node,
		    setup_cluster, teardown_cluster),
	};

	tor_log_setup(getenv("TOR_TEST_LOG") != NULL ? TOR_LOG_DEBUG :
	    TOR_LOG_ERROR, TOR_LOG_LOGFMT, "test");
	return cmocka_run_group_tests_name("members", tests, NULL, NULL);
}
