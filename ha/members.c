/*
 * The pool's membership in Redis and the balancer's choices
 * (include/tor/members.h, docs/pool-design.md §4).
 *
 * Membership is soft state: each replica writes its own line every beat
 * and everyone reads all lines back in the same script, so a lost key or
 * a restarted Redis is rebuilt by the next beats.  Expiry is judged by the
 * Redis server's clock alone (TIME inside the script): replicas' clocks
 * may disagree, one server's clock agrees with itself.  The sorted set
 * holds each member's expiry so that the script can find the dead without
 * scanning keys; the lines carry PX too, so nothing outlives its member
 * if no beat ever comes again.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tor/log.h"
#include "tor/members.h"

#define FNV_OFFSET 14695981039346656037ull
#define FNV_PRIME 1099511628211ull

/* The server's time in ms as now, and as the text nows. */
#define NOW_LUA \
    "local t = redis.call('TIME')\n" \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n" \
    "local nows = string.format('%.0f', now)\n"

/* Returns {nows, instance, line, ...} of the members KEYS[1] holds live
 * at nows whose line (under the prefix ARGV[argi]) exists. */
#define LIVE_LUA(argi) \
    "local out = {nows}\n" \
    "for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], nows, '+inf')) do\n" \
    "  local line = redis.call('GET', ARGV[" argi "] .. m)\n" \
    "  if line then\n" \
    "    out[#out + 1] = m\n" \
    "    out[#out + 1] = line\n" \
    "  end\n" \
    "end\n" \
    "return out\n"

/*
 * KEYS members, this member's line; ARGV instance, ttl ms, the line's
 * first five fields, the prefix of member line keys.  The other members'
 * line keys are built here: they share the slot tag, so the script stays
 * on one slot.  Numbers are printed with %.0f: Lua's own tostring would
 * write a large one as "1.7e+12".  Returns {server ms, instance, line,
 * ...} of the live members.
 */
static const char beat_lua[] =
    NOW_LUA
    "local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. nows)\n"
    "for _, m in ipairs(gone) do redis.call('DEL', ARGV[4] .. m) end\n"
    "if #gone > 0 then\n"
    "  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. nows)\n"
    "end\n"
    "local since = nows\n"
    "if redis.call('ZSCORE', KEYS[1], ARGV[1]) then\n"
    "  local s = string.match(redis.call('GET', KEYS[2]) or '', ' (%d+)$')\n"
    "  if s then since = s end\n"
    "end\n"
    "redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[2])),\n"
    "    ARGV[1])\n"
    "redis.call('SET', KEYS[2], ARGV[3] .. ' ' .. since, 'PX', ARGV[2])\n"
    LIVE_LUA("4");

/* KEYS members; ARGV the member line key prefix.  What a beat returns,
 * for someone who is no member (tor status): the live members, nothing
 * written. */
static const char list_lua[] =
    NOW_LUA
    LIVE_LUA("1");

/* KEYS members, this member's line; ARGV instance. */
static const char leave_lua[] =
    "redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "redis.call('DEL', KEYS[2])\n"
    "return 1\n";

/* KEYS decisions; ARGV the line, the last index kept. */
static const char record_lua[] =
    "redis.call('LPUSH', KEYS[1], ARGV[1])\n"
    "redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]))\n"
    "return 1\n";

/* "<prefix>:{pool:<name>}:<name>" into buf; -1 when it does not fit. */
static int
pool_key(const struct tor_config *cfg, const char *name, char *buf,
    size_t cap)
{
	int n = snprintf(buf, cap, "%s:{pool:%s}:%s", cfg->redis.prefix,
	    cfg->pool.name, name);

	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int
tor_member_format(const struct tor_member *m, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "%d %d %d %d %016" PRIx64 " %" PRId64,
	    m->led, m->healthy ? 1 : 0, m->draining ? 1 : 0, m->max_leading,
	    m->groups_hash, m->since_ms);

	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* Decimal digits at *p, then one blank or the end as last says, into *v
 * (0..max).  Advances *p past them and the blank. */
static bool
field(const char **p, bool last, int64_t max, int64_t *v)
{
	const char *s = *p;
	char *end;
	long long x;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	x = strtoll(s, &end, 10);
	/* As tor_member_format writes it: no leading zero. */
	if (errno != 0 || x > max || (s[0] == '0' && end - s > 1))
		return false;
	if (last ? *end != '\0' : *end != ' ')
		return false;
	*v = x;
	*p = last ? end : end + 1;
	return true;
}

int
tor_member_parse(const char *line, struct tor_member *m)
{
	const char *p = line;
	int64_t led, healthy, draining, max_leading, since;
	uint64_t hash = 0;

	if (!field(&p, false, INT32_MAX, &led) ||
	    !field(&p, false, 1, &healthy) ||
	    !field(&p, false, 1, &draining) ||
	    !field(&p, false, INT32_MAX, &max_leading) || max_leading < 1)
		return -1;
	for (int i = 0; i < 16; i++, p++) {
		if (*p >= '0' && *p <= '9')
			hash = hash << 4 | (uint64_t)(*p - '0');
		else if (*p >= 'a' && *p <= 'f')
			hash = hash << 4 | (uint64_t)(*p - 'a' + 10);
		else
			return -1;
	}
	if (*p++ != ' ' || !field(&p, true, INT64_MAX, &since))
		return -1;
	m->led = (int)led;
	m->healthy = healthy == 1;
	m->draining = draining == 1;
	m->max_leading = (int)max_leading;
	m->groups_hash = hash;
	m->since_ms = since;
	return 0;
}

/* A reply element that is a string without NULs (a member name, a line). */
static bool
plain_string(const redisReply *e)
{
	return e->type == REDIS_REPLY_STRING && strlen(e->str) == e->len;
}

/* The beat's reply {server ms, instance, line, ...} into out. */
static int
read_members(const redisReply *reply, const char *key, struct tor_member *out,
    size_t cap, size_t *n, int64_t *server_ms, tor_err *err)
{
	const char *p;
	int64_t now;
	size_t i;

	if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 2 != 1 ||
	    !plain_string(reply->element[0]))
		return tor_err_set(err, "pool beat: %s: unexpected reply", key);
	p = reply->element[0]->str;
	if (!field(&p, true, INT64_MAX, &now))
		return tor_err_set(err, "pool beat: %s: unexpected reply", key);
	*n = 0;
	for (i = 1; i + 1 < reply->elements; i += 2) {
		const redisReply *inst = reply->element[i];
		const redisReply *line = reply->element[i + 1];
		struct tor_member *m = &out[*n];

		if (*n == cap)
			return tor_err_set(err, "pool beat: %s: more than %zu "
			    "members", key, cap);
		if (!plain_string(inst) || !plain_string(line) ||
		    inst->len >= sizeof(m->instance) ||
		    tor_member_parse(line->str, m) == -1) {
			log_warn("pool", "%s: member %.64s: not a member line: "
			    "\"%.80s\"; left out", key, plain_string(inst) ?
			    inst->str : "?", plain_string(line) ? line->str :
			    "?");
			continue;
		}
		memcpy(m->instance, inst->str, inst->len + 1);
		(*n)++;
	}
	*server_ms = now;
	return 0;
}

/* EVAL script with nkeys keys then the arguments in rest (keys first).
 * The reply, or NULL with err reading "<what>: redis host:port: ...". */
static redisReply *
eval(struct tor_redis *r, const char *script, int nkeys, int nrest,
    const char **rest, const char *what, tor_err *err)
{
	const char *argv[3 + 6];   /* the most a script here takes */
	char numkeys[16];
	redisReply *reply;

	snprintf(numkeys, sizeof(numkeys), "%d", nkeys);
	argv[0] = "EVAL";
	argv[1] = script;
	argv[2] = numkeys;
	for (int i = 0; i < nrest; i++)
		argv[3 + i] = rest[i];
	if ((reply = tor_redis_command(r, 3 + nrest, argv, NULL, err)) == NULL)
		tor_err_prefix(err, "%s: ", what);
	return reply;
}

/* The members key, the member line key prefix and cfg->instance's line
 * key. */
struct member_keys {
	char members[512];
	char prefix[512];
	char mine[1024];
};

static int
member_keys(const struct tor_config *cfg, struct member_keys *k,
    const char *what, tor_err *err)
{
	if (pool_key(cfg, "members", k->members, sizeof(k->members)) == -1 ||
	    pool_key(cfg, "member:", k->prefix, sizeof(k->prefix)) == -1 ||
	    (size_t)snprintf(k->mine, sizeof(k->mine), "%s%s", k->prefix,
	    cfg->instance) >= sizeof(k->mine) ||
	    strlen(cfg->instance) >= TOR_MEMBER_INSTANCE_MAX)
		return tor_err_set(err, "%s: pool name, prefix or instance too "
		    "long", what);
	return 0;
}

int
tor_members_beat(struct tor_redis *r, const struct tor_config *cfg,
    const struct tor_member *me, struct tor_member *out, size_t cap,
    size_t *n, int64_t *server_ms, tor_err *err)
{
	const char *what = "pool beat", *rest[6];
	struct member_keys k;
	struct tor_member fields = *me;
	char line[TOR_MEMBER_LINE_MAX], ttl[24], *sp;
	redisReply *reply;
	int rc;

	*n = 0;
	if (member_keys(cfg, &k, what, err) == -1)
		return -1;
	/* The script appends since_ms itself. */
	fields.since_ms = 0;
	if (tor_member_format(&fields, line, sizeof(line)) == -1)
		return tor_err_set(err, "%s: line too long", what);
	sp = strrchr(line, ' ');
	*sp = '\0';
	snprintf(ttl, sizeof(ttl), "%lld", 3LL * cfg->pool.beat_ms);
	rest[0] = k.members;
	rest[1] = k.mine;
	rest[2] = cfg->instance;
	rest[3] = ttl;
	rest[4] = line;
	rest[5] = k.prefix;
	if ((reply = eval(r, beat_lua, 2, 6, rest, what, err)) == NULL)
		return -1;
	rc = read_members(reply, k.members, out, cap, n, server_ms, err);
	freeReplyObject(reply);
	return rc;
}

int
tor_members_list(struct tor_redis *r, const struct tor_config *cfg,
    struct tor_member *out, size_t cap, size_t *n, int64_t *server_ms,
    tor_err *err)
{
	const char *what = "pool members", *rest[2];
	struct member_keys k;
	redisReply *reply;
	int rc;

	*n = 0;
	if (member_keys(cfg, &k, what, err) == -1)
		return -1;
	rest[0] = k.members;
	rest[1] = k.prefix;
	if ((reply = eval(r, list_lua, 1, 2, rest, what, err)) == NULL)
		return -1;
	rc = read_members(reply, k.members, out, cap, n, server_ms, err);
	freeReplyObject(reply);
	return rc;
}

int
tor_members_leave(struct tor_redis *r, const struct tor_config *cfg,
    tor_err *err)
{
	const char *what = "pool leave", *rest[3];
	struct member_keys k;
	redisReply *reply;

	if (member_keys(cfg, &k, what, err) == -1)
		return -1;
	rest[0] = k.members;
	rest[1] = k.mine;
	rest[2] = cfg->instance;
	if ((reply = eval(r, leave_lua, 2, 3, rest, what, err)) == NULL)
		return -1;
	freeReplyObject(reply);
	return 0;
}

int
tor_members_record(struct tor_redis *r, const struct tor_config *cfg,
    const char *line, tor_err *err)
{
	const char *what = "pool decision", *rest[3];
	char key[512], last[16];
	redisReply *reply;

	if (pool_key(cfg, "decisions", key, sizeof(key)) == -1)
		return tor_err_set(err, "%s: pool name or prefix too long",
		    what);
	snprintf(last, sizeof(last), "%d", TOR_DECISIONS_KEEP - 1);
	rest[0] = key;
	rest[1] = line;
	rest[2] = last;
	if ((reply = eval(r, record_lua, 1, 3, rest, what, err)) == NULL)
		return -1;
	freeReplyObject(reply);
	return 0;
}

int
tor_members_decisions(struct tor_redis *r, const struct tor_config *cfg,
    struct tor_decision *out, size_t cap, size_t *n, tor_err *err)
{
	const char *argv[4];
	char key[512], stop[24];
	redisReply *reply;
	int rc = 0;

	*n = 0;
	if (cap == 0)
		return 0;
	if (pool_key(cfg, "decisions", key, sizeof(key)) == -1)
		return tor_err_set(err, "pool decisions: pool name or prefix "
		    "too long");
	snprintf(stop, sizeof(stop), "%zu", (cap < TOR_DECISIONS_KEEP ? cap :
	    TOR_DECISIONS_KEEP) - 1);
	argv[0] = "LRANGE";
	argv[1] = key;
	argv[2] = "0";
	argv[3] = stop;
	if ((reply = tor_redis_command(r, 4, argv, NULL, err)) == NULL)
		return tor_err_prefix(err, "pool decisions: ");
	if (reply->type != REDIS_REPLY_ARRAY) {
		rc = tor_err_set(err, "pool decisions: %s: unexpected reply",
		    key);
	} else {
		for (size_t i = 0; i < reply->elements && *n < cap; i++) {
			if (reply->element[i]->type != REDIS_REPLY_STRING)
				continue;
			snprintf(out[*n].line, sizeof(out[*n].line), "%s",
			    reply->element[i]->str);
			(*n)++;
		}
	}
	freeReplyObject(reply);
	return rc;
}

static uint64_t
fnv1a(uint64_t h, const char *s)
{
	/* The NUL too: "ab","c" and "a","bc" must differ. */
	do
		h = (h ^ (unsigned char)*s) * FNV_PRIME;
	while (*s++ != '\0');
	return h;
}

uint64_t
tor_pool_groups_hash(const struct tor_config *cfgs, size_t n)
{
	const char *prev = NULL, *next;
	uint64_t h = FNV_OFFSET;

	/* In sorted order without sorting a copy: the next name after prev,
	 * n times (group names are unique, and n is tens or hundreds). */
	for (size_t k = 0; k < n; k++) {
		next = NULL;
		for (size_t i = 0; i < n; i++) {
			const char *g = cfgs[i].group;

			if ((prev == NULL || strcmp(g, prev) > 0) &&
			    (next == NULL || strcmp(g, next) < 0))
				next = g;
		}
		if (next == NULL)
			break;
		h = fnv1a(h, next);
		prev = next;
	}
	return h;
}

/* Counted in R: up, staying, and a member for settle_ms. */
static bool
counts(const struct tor_member *m, int settle_ms, int64_t now_ms)
{
	return m->healthy && !m->draining && now_ms - m->since_ms >= settle_ms;
}

int
tor_pool_counted(const struct tor_member *m, size_t n, const char *me,
    int settle_ms, int64_t now_ms)
{
	int replicas = me != NULL ? 1 : 0;

	for (size_t i = 0; i < n; i++)
		if ((me == NULL || strcmp(m[i].instance, me) != 0) &&
		    counts(&m[i], settle_ms, now_ms))
			replicas++;
	return replicas;
}

int
tor_pool_share(const struct tor_member *m, size_t n, const char *me,
    int groups, int settle_ms, int64_t now_ms, int max_leading)
{
	int replicas = tor_pool_counted(m, n, me, settle_ms, now_ms), share;

	if (groups <= 0)
		return 0;
	if (replicas == 0)
		replicas = 1;
	share = (groups + replicas - 1) / replicas;
	return share < max_leading ? share : max_leading;
}

int
tor_pool_pick_target(const struct tor_member *m, size_t n, const char *me,
    int share, int settle_ms, int64_t now_ms)
{
	int best = -1;

	for (size_t i = 0; i < n; i++) {
		const struct tor_member *c = &m[i];

		if (strcmp(c->instance, me) == 0 ||
		    !counts(c, settle_ms, now_ms) || c->led >= share ||
		    c->led >= c->max_leading)
			continue;
		if (best == -1 || c->led < m[best].led ||
		    (c->led == m[best].led &&
		    strcmp(c->instance, m[best].instance) < 0))
			best = (int)i;
	}
	return best;
}

/* The rendezvous score of (instance, group): FNV-1a, then a 64-bit
 * finalizer so that names differing in one letter spread apart. */
static uint64_t
rendezvous(const char *instance, const char *group)
{
	uint64_t h = fnv1a(fnv1a(FNV_OFFSET, instance), group);

	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

size_t
tor_pool_pick_group(const char *instance, const char *const *led_groups,
    size_t n)
{
	size_t best = n;
	uint64_t low = 0, s;

	for (size_t i = 0; i < n; i++) {
		s = rendezvous(instance, led_groups[i]);
		if (best == n || s < low || (s == low &&
		    strcmp(led_groups[i], led_groups[best]) < 0)) {
			best = i;
			low = s;
		}
	}
	return best;
}
