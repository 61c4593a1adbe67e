/*
 * The group's lease in Redis (DESIGN.md §3): P:{G}:lease holds
 * "<instance> <token>" of the leader with a PX expiry, P:{G}:epoch the last
 * fencing token handed out, P:{G}:handoff the wake-ups of leaders that
 * stepped down (for replicas of the previous version; this one listens on
 * the free channel), P:{G}:handoff_to the only instance that may take the
 * lease during a graceful hand-over.
 *
 * Two ideas make it work.  Every read-then-write is one Lua script, so it
 * runs whole on the Redis master with nothing in between: a replica cannot
 * renew or delete a lease that changed hands between its GET and its
 * PEXPIRE.  And a lease is compared by its whole value, instance and token:
 * the token is fresh for every acquire (INCR epoch), so a zombie that shares
 * its instance name with the new leader (a restarted pod) still cannot touch
 * the new lease.  The lease only decides who should lead; the token is what
 * the checkpoint and Kafka fence on (see ha/checkpoint.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tor/clock.h"
#include "tor/lease.h"
#include "tor/log.h"

/* The wake-ups kept on the handoff list: enough for every follower that is
 * not waiting right now to find one, few enough that a flapping leader
 * cannot grow the list. */
#define HANDOFF_KEEP "7"        /* LTRIM 0 7: eight entries */

/*
 * Lua shared by the scripts that draw a token; tokens are compared as
 * strings of digits, by length then bytes (a Lua number is a double,
 * exact only to 2^53).  next_token(key, floor)
 * raises the epoch key to floor when it is below (floor: digits without
 * leading zeros, or '' for none), INCRs it and returns the token as the
 * key's own string, not as INCR's Lua number, which would print a large
 * token as "1e+14".  When the token would pass TOR_TOKEN_MAX it writes
 * nothing and answers an error: INCR works on signed 64 bits, and an epoch
 * pushed to the edge would fail every acquire from then on.  A key that
 * is not a number fails in INCR, in Redis's words.
 */
#define TOKEN_LUA \
    "local MAX = '" TOR_TOKEN_MAX_TEXT "'\n" \
    "local function above(a, b)\n" \
    "  return #a > #b or (#a == #b and a > b)\n" \
    "end\n" \
    "local function next_token(key, floor)\n" \
    "  local e = redis.call('GET', key) or '0'\n" \
    "  if string.match(e, '^%d+$') then\n" \
    "    local raise = above(floor, e)\n" \
    "    if raise then e = floor end\n" \
    "    if not above(MAX, e) then\n" \
    "      return redis.error_reply(key .. ': no token after ' .. e ..\n" \
    "          ', past the largest token (' .. MAX .. '): an epoch or a ' ..\n" \
    "          'checkpoint set by hand, or tampered with')\n" \
    "    end\n" \
    "    if raise then redis.call('SET', key, floor) end\n" \
    "  end\n" \
    "  redis.call('INCR', key)\n" \
    "  return redis.call('GET', key)\n" \
    "end\n"

/*
 * Lua shared by acquire and renew: the replicas of the master a client
 * record was made on.  A record is "<token> <run_id> <client id>
 * <replicas>", the last "ip:port" of each replica INFO lists, sorted and
 * joined by commas ("-": none).  Within one leadership on one server run
 * the renews keep every replica ever seen (joined()): a replica that left
 * may be the master the leader now renews on.
 */
#define REPLICAS_LUA \
    "local function replicas()\n" \
    "  local info = redis.call('INFO', 'replication')\n" \
    "  local set = {}\n" \
    "  if not string.match(info, 'role:master') then return nil end\n" \
    "  for ip, port in string.gmatch(info,\n" \
    "      'slave%d+:ip=([^,]+),port=(%d+)') do\n" \
    "    set[ip .. ':' .. port] = true\n" \
    "  end\n" \
    "  return set\n" \
    "end\n" \
    "local function recorded(rec)\n" \
    "  local tok, run, list = string.match(rec or '',\n" \
    "      '^(%S+) (%S+) %S+ (%S+)$')\n" \
    "  local set = {}\n" \
    "  if list and list ~= '-' then\n" \
    "    for name in string.gmatch(list, '[^,]+') do set[name] = true end\n" \
    "  end\n" \
    "  return set, tok, run\n" \
    "end\n" \
    "local function joined(a, b)\n" \
    "  local list = {}\n" \
    "  for name in pairs(a) do list[#list + 1] = name end\n" \
    "  for name in pairs(b) do\n" \
    "    if not a[name] then list[#list + 1] = name end\n" \
    "  end\n" \
    "  if #list == 0 then return '-' end\n" \
    "  table.sort(list)\n" \
    "  return table.concat(list, ',')\n" \
    "end\n"

/*
 * KEYS lease, epoch, checkpoint, client, handoff_to; ARGV instance,
 * lease_ms, this connection's client record ("<run_id> <client id>", ""
 * for none), to take over a dead leader's lease the lease value and the
 * client record found (else ""), and "1" to leave a free lease alone
 * (takeover_only; else "").  SET NX first, so that the token is spent only
 * by the replica that wins; a lease held comes back as {value, client
 * record} and, when refused for another reason, the reason; a free lease
 * left alone as 0.
 *
 * While handoff_to names another instance the lease is held for this one,
 * free or not, taken over or not: checked here, in the script, so nothing
 * comes between the check and the SET NX.  The instance named deletes the
 * name when it wins: should it die then, the others take the group over
 * at once, not when the name expires.
 *
 * A take-over needs the lease and its record unchanged, this server still
 * a master, and every replica the leader recorded still its replica: a
 * replica that left may have been promoted, and the leader, alive, may be
 * renewing there (a Sentinel failover, during which the old master takes
 * writes until it is demoted).  The caller checked that the recorded
 * client is gone.
 *
 * The token is drawn past the checkpoint's own token when the epoch key
 * is behind it (lost, or restored from an older snapshot): every write of
 * the new leader would be refused otherwise, and every replica would flap.
 * A checkpoint token past TOR_TOKEN_MAX is no leader's: it gives no floor
 * (the winner then finds it above its own token, and tor_lease_hold
 * refuses to raise the epoch past the bound, naming it), and nor does a
 * checkpoint key that is not a hash.  Everything after the
 * 'pending' lease runs under pcall: a script that fails half-way keeps its
 * writes, and a 'pending' lease left behind would block every replica for
 * lease_ms, at every attempt.
 */
static const char acquire_lua[] =
    TOKEN_LUA
    REPLICAS_LUA
    "local function held(why)\n"
    "  return {redis.call('GET', KEYS[1]) or '',\n"
    "          redis.call('GET', KEYS[4]) or '', why}\n"
    "end\n"
    "local to = redis.call('GET', KEYS[5])\n"
    "if to and to ~= ARGV[1] then\n"
    "  return held('handed over to ' .. to)\n"
    "end\n"
    "if ARGV[4] == '' and ARGV[6] == '1' and not to and\n"
    "    redis.call('EXISTS', KEYS[1]) == 0 then\n"
    "  return 0\n"
    "end\n"
    "if ARGV[4] ~= '' then\n"
    "  if redis.call('GET', KEYS[1]) ~= ARGV[4] or\n"
    "      (redis.call('GET', KEYS[4]) or '') ~= ARGV[5] then\n"
    "    return held()\n"
    "  end\n"
    "  local now, was, tok = replicas(), recorded(ARGV[5])\n"
    "  if not now then return held('this server is not a master') end\n"
    "  if not tok then return held('the record names no replicas') end\n"
    "  for name in pairs(was) do\n"
    "    if not now[name] then\n"
    "      return held('replica ' .. name .. ' left this master since ' ..\n"
    "          'the leader recorded it: the leader may be renewing there')\n"
    "    end\n"
    "  end\n"
    "  redis.call('DEL', KEYS[1])\n"
    "end\n"
    "if not redis.call('SET', KEYS[1], 'pending', 'NX', 'PX', ARGV[2]) then\n"
    "  return held()\n"
    "end\n"
    "if to then redis.call('DEL', KEYS[5]) end\n"
    "local ok, token = pcall(function()\n"
    "  local floor = redis.pcall('HGET', KEYS[3], 'epoch')\n"
    "  if type(floor) ~= 'string' or not string.match(floor, '^%d+$') then\n"
    "    floor = ''\n"
    "  end\n"
    "  floor = string.match(floor, '^0*(%d-)$')\n"
    "  if #floor > #MAX then floor = '' end\n"
    "  return next_token(KEYS[2], floor)\n"
    "end)\n"
    "if not ok or type(token) ~= 'string' or\n"
    "    not string.match(token, '^[1-9]%d*$') then\n"
    "  redis.call('DEL', KEYS[1])\n"
    "  if not ok then\n"
    "    return redis.error_reply(type(token) == 'table' and token.err or\n"
    "        tostring(token))\n"
    "  end\n"
    "  if type(token) == 'table' then return token end\n"
    "  return redis.error_reply(KEYS[2] .. ': not a token (\\'' ..\n"
    "      tostring(token) .. '\\')')\n"
    "end\n"
    "redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. token, 'PX', ARGV[2])\n"
    "if ARGV[3] ~= '' then\n"
    "  redis.call('SET', KEYS[4], token .. ' ' .. ARGV[3] .. ' ' ..\n"
    "      joined(replicas() or {}, {}), 'PX', ARGV[2])\n"
    "else\n"
    "  redis.call('DEL', KEYS[4])\n"
    "end\n"
    "return token\n";

/* KEYS lease and, with a client record, client; ARGV value, lease_ms,
 * token, this connection's client record ("" for none).  The record is
 * written again at every renew: after a reconnect it names the new
 * connection, and its replicas are the ones seen now and, on the same
 * server run within this leadership, before.  Without a record the client
 * key is not named: the acquire deleted it, and in a Redis Cluster slot
 * under migration a script naming a key that does not exist beside one
 * that does is refused (TRYAGAIN) until the migration ends. */
static const char renew_lua[] =
    REPLICAS_LUA
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "  if ARGV[4] ~= '' then\n"
    "    local was, tok, run = recorded(redis.call('GET', KEYS[2]))\n"
    "    if tok ~= ARGV[3] or run ~= string.match(ARGV[4], '^%S+') then\n"
    "      was = {}\n"
    "    end\n"
    "    redis.call('SET', KEYS[2], ARGV[3] .. ' ' .. ARGV[4] .. ' ' ..\n"
    "        joined(replicas() or {}, was), 'PX', ARGV[2])\n"
    "  end\n"
    "  return 1\n"
    "end\n"
    "return 0\n";

/* KEYS lease, handoff, client; ARGV value, token, the free channel, the
 * group.  The wake-up is given even when the lease was not ours: a replica
 * stepping down says so either way, and a spare wake-up costs a follower
 * one failed acquire.  The PUBLISH is a pcall: an ACL user without
 * channel rights (Redis 7's default for new users) must still release. */
static const char release_lua[] =
    "local released = 0\n"
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  redis.call('DEL', KEYS[1], KEYS[3])\n"
    "  released = 1\n"
    "end\n"
    "redis.pcall('PUBLISH', ARGV[3], ARGV[4])\n"
    "redis.call('LPUSH', KEYS[2], ARGV[2])\n"
    "redis.call('LTRIM', KEYS[2], 0, " HANDOFF_KEEP ")\n"
    "return released\n";

/* KEYS lease.  GET and PTTL in one script, so the ttl is the value's. */
static const char read_lua[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if not v then return false end\n"
    "return {v, redis.call('PTTL', KEYS[1])}\n";

struct lease_keys {
	char lease[512];
	char client[512];
	char epoch[512];
	char handoff[512];
	char handoff_to[512];
	char checkpoint[512];
};

static void
lease_keys(const struct tor_config *cfg, struct lease_keys *k)
{
	tor_redis_key(cfg, "lease", k->lease, sizeof(k->lease));
	tor_redis_key(cfg, "lease_client", k->client, sizeof(k->client));
	tor_redis_key(cfg, "epoch", k->epoch, sizeof(k->epoch));
	tor_redis_key(cfg, "handoff", k->handoff, sizeof(k->handoff));
	tor_redis_key(cfg, "handoff_to", k->handoff_to, sizeof(k->handoff_to));
	tor_redis_key(cfg, "checkpoint", k->checkpoint, sizeof(k->checkpoint));
}

/* "<instance> <token>", the lease value this replica writes and compares. */
static int
lease_value(const struct tor_config *cfg, uint64_t token, char *buf,
    size_t cap, const char *what, tor_err *err)
{
	int n;

	n = snprintf(buf, cap, "%s %" PRIu64, cfg->instance, token);
	if (n < 0 || (size_t)n >= cap)
		return tor_err_set(err, "%s: instance name too long", what);
	return 0;
}

static const char *
reply_type_name(int type)
{
	switch (type) {
	case REDIS_REPLY_STRING:
		return "string";
	case REDIS_REPLY_ARRAY:
		return "array";
	case REDIS_REPLY_INTEGER:
		return "integer";
	case REDIS_REPLY_NIL:
		return "nil";
	case REDIS_REPLY_STATUS:
		return "status";
	default:
		return "unknown";
	}
}

/* Says that key gave a reply of a shape its script never returns (a value
 * someone set by hand, a foreign tool sharing the prefix); evaluates to -1. */
static int
unexpected(const char *what, const char *key, const redisReply *reply,
    tor_err *err)
{
	return tor_err_set(err, "%s: %s: unexpected %s reply", what, key,
	    reply_type_name(reply->type));
}

/* EVAL script with nkeys keys then the arguments in rest (keys first).
 * Returns the reply, or NULL with err reading "<what>: redis host:port: ..". */
static redisReply *
eval(struct tor_redis *r, const char *script, int nkeys, int nrest,
    const char **rest, const char *what, tor_err *err)
{
	const char *argv[16];
	char numkeys[16];
	redisReply *reply;
	int i;

	/* Every script here takes at most eleven keys and arguments. */
	if (nrest > (int)(sizeof(argv) / sizeof(argv[0])) - 3) {
		tor_err_set(err, "%s: too many script arguments", what);
		return NULL;
	}
	snprintf(numkeys, sizeof(numkeys), "%d", nkeys);
	argv[0] = "EVAL";
	argv[1] = script;
	argv[2] = numkeys;
	for (i = 0; i < nrest; i++)
		argv[3 + i] = rest[i];
	if ((reply = tor_redis_command(r, 3 + nrest, argv, NULL, err)) == NULL)
		tor_err_prefix(err, "%s: ", what);
	return reply;
}

/* A token as Redis stores it: digits only, 1 to TOR_TOKEN_MAX.  strtoull
 * alone would take " -1" and wrap it. */
static bool
parse_token(const char *s, size_t len, uint64_t *out)
{
	char *end;

	if (len == 0 || len > 20 || strlen(s) != len || s[0] < '0' ||
	    s[0] > '9')
		return false;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno == 0 && *end == '\0' && *out > 0 &&
	    *out <= TOR_TOKEN_MAX;
}

/* An integer reply that must be 0 or 1 (a script's verdict). */
static int
verdict(const char *what, const char *key, redisReply *reply, tor_err *err)
{
	int rc;

	if (reply->type != REDIS_REPLY_INTEGER ||
	    (reply->integer != 0 && reply->integer != 1))
		rc = unexpected(what, key, reply, err);
	else
		rc = (int)reply->integer;
	freeReplyObject(reply);
	return rc;
}

/*
 * Where the master has replicas, WAIT until one of them holds the new lease
 * and token, so that a Sentinel failover right after the acquire promotes a
 * replica that has them (DESIGN.md §3).  Failures are only logged: the
 * lease is there for liveness and the fences for safety, and the lease is
 * won either way.  WAIT gets half of redis.timeout_ms because it must give
 * up inside Redis before the command timeout gives up in hiredis, which
 * would throw the connection away.
 */
static void
wait_for_replica(struct tor_redis *r, const struct tor_config *cfg,
    uint64_t token)
{
	const char *argv[3];
	char ms[16];
	redisReply *reply;
	tor_err err;
	int n, wait_ms = cfg->redis.timeout_ms / 2;

	if ((n = tor_redis_replicas(r, &err)) == -1) {
		log_warn("lease", "token %" PRIu64 ": cannot ask for the "
		    "master's replicas, not waiting for one: %s", token,
		    err.msg);
		return;
	}
	if (n == 0)
		return;
	snprintf(ms, sizeof(ms), "%d", wait_ms > 0 ? wait_ms : 1);
	argv[0] = "WAIT";
	argv[1] = "1";
	argv[2] = ms;
	if ((reply = tor_redis_command(r, 3, argv, NULL, &err)) == NULL) {
		log_warn("lease", "token %" PRIu64 ": WAIT for a replica: %s",
		    token, err.msg);
		return;
	}
	if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 0)
		log_warn("lease", "token %" PRIu64 ": none of %d replicas "
		    "confirmed the lease within %s ms; a failover now may "
		    "lose it", token, n, ms);
	freeReplyObject(reply);
}

/* This connection's client record, "<run_id> <client id>", into buf: ""
 * when fast failover is off or the server would not say who we are. */
static int
client_record(struct tor_redis *r, const struct tor_config *cfg, char *buf,
    size_t cap, tor_err *err)
{
	char run_id[48];
	long long id;

	buf[0] = '\0';
	if (!cfg->ha.fast_failover)
		return 0;
	if (tor_redis_identity(r, run_id, sizeof(run_id), &id, err) < 0)
		return -1;
	if (id > 0)
		snprintf(buf, cap, "%s %lld", run_id, id);
	return 0;
}

/* A lease held: its value and its client record, as acquire_lua found
 * them, and why a take-over was refused ("" when none was tried).  A
 * record longer than the buffer (a master with very many replicas) is cut,
 * and so never matches for a take-over: the lease is waited out. */
struct held_lease {
	char value[512];
	char record[1024];
	char why[256];
};

/* One acquire_lua: 1 won (*token), 0 held (*h filled), TOR_LEASE_FREE
 * (takeover_only), -1. */
static int
try_acquire(struct tor_redis *r, const struct tor_config *cfg,
    const struct lease_keys *k, const char *record,
    const struct held_lease *expect, bool takeover_only, uint64_t *token,
    struct held_lease *h, tor_err *err)
{
	const char *what = "lease acquire", *rest[11];
	char ms[16];
	redisReply *reply;
	size_t i;
	int rc = -1;

	snprintf(ms, sizeof(ms), "%d", cfg->ha.lease_ms);
	rest[0] = k->lease;
	rest[1] = k->epoch;
	rest[2] = k->checkpoint;
	rest[3] = k->client;
	rest[4] = k->handoff_to;
	rest[5] = cfg->instance;
	rest[6] = ms;
	rest[7] = record;
	rest[8] = expect != NULL ? expect->value : "";
	rest[9] = expect != NULL ? expect->record : "";
	rest[10] = takeover_only ? "1" : "";
	if ((reply = eval(r, acquire_lua, 5, 11, rest, what, err)) == NULL)
		return -1;
	if (takeover_only && reply->type == REDIS_REPLY_INTEGER &&
	    reply->integer == 0)
		rc = TOR_LEASE_FREE;
	else if (reply->type == REDIS_REPLY_ARRAY &&
	    (reply->elements == 2 || reply->elements == 3)) {
		for (i = 0; i < reply->elements; i++)
			if (reply->element[i]->type != REDIS_REPLY_STRING)
				break;
		if (i == reply->elements) {
			snprintf(h->value, sizeof(h->value), "%s",
			    reply->element[0]->str);
			snprintf(h->record, sizeof(h->record), "%s",
			    reply->element[1]->str);
			snprintf(h->why, sizeof(h->why), "%s",
			    reply->elements == 3 ? reply->element[2]->str : "");
			rc = 0;
		} else
			unexpected(what, k->lease, reply, err);
	} else if (reply->type == REDIS_REPLY_STRING &&
	    parse_token(reply->str, reply->len, token))
		rc = 1;
	else if (reply->type == REDIS_REPLY_STRING)
		tor_err_set(err, "%s: %s: not a token ('%.64s')", what, k->epoch,
		    reply->str);
	else
		unexpected(what, k->lease, reply, err);
	freeReplyObject(reply);
	return rc;
}

/*
 * Whether the leader of a held lease looks dead: its client record
 * belongs to this lease (same token), was made on the server run we talk
 * to (a client id means nothing on another server, or after a restart),
 * and that client is no longer connected.  A paused process keeps its
 * connection, and so does one cut off by a network partition the server
 * has not noticed: their leases expire as before.  Any doubt (no record,
 * a refused CLIENT LIST) says alive.  The rest of the proof, that the
 * leader cannot be renewing on another master, is acquire_lua's.
 */
static bool
holder_gone(struct tor_redis *r, const struct held_lease *h,
    const char *record, long long *client_id)
{
	char rec_token[24], rec_run[48], my_run[48];
	const char *sp;
	tor_err e;

	if (record[0] == '\0' || h->record[0] == '\0' ||
	    sscanf(h->record, "%23s %47s %lld", rec_token, rec_run,
	    client_id) != 3 || *client_id <= 0 ||
	    (sp = strrchr(h->value, ' ')) == NULL ||
	    strcmp(sp + 1, rec_token) != 0 ||
	    sscanf(record, "%47s", my_run) != 1 || strcmp(rec_run, my_run) != 0)
		return false;
	switch (tor_redis_client_connected(r, *client_id, &e)) {
	case 0:
		return true;
	case -1:
		log_debug("lease", "cannot tell whether the leader is alive: %s",
		    e.msg);
		return false;
	default:
		return false;           /* connected: e was not written */
	}
}

/*
 * A take-over wins the lease in Redis at once, but its winner may lead only
 * TOR_LEASE_TAKEOVER_GRACE_MS later (*not_before_ms: the elector keeps the
 * grant back until then, without sleeping).  A client gone from Redis may be a
 * live leader whose connection was closed under it (CLIENT KILL, a proxy,
 * a reset): such a leader hands messages over only within
 * TOR_LEASE_HEARD_MS of sending a round trip Redis answered on that
 * connection, before the close, and we cannot have seen the client gone
 * before Redis dropped it: the grace less that window is the margin for
 * what it handed over last to reach the broker.  The WAIT for a replica
 * runs inside it.  The grace counts from the reply that won, which came
 * after Redis saw the client gone.
 */
_Static_assert(TOR_LEASE_TAKEOVER_GRACE_MS >= 2 * TOR_LEASE_HEARD_MS,
    "the grace must leave what a leader handed over time to go out");
_Static_assert(TOR_LEASE_HEARD_MS >= 4 * TOR_LEASE_WATCH_MS,
    "a leader pings often enough to keep publishing while Redis answers");

int
tor_lease_acquire(struct tor_redis *r, const struct tor_config *cfg,
    bool takeover_only, uint64_t *token, int64_t *sent_ms,
    int64_t *not_before_ms, tor_err *err)
{
	struct lease_keys k;
	struct held_lease h, found;
	char record[128];
	long long dead;
	int64_t won;
	int rc;

	*not_before_ms = 0;
	lease_keys(cfg, &k);
	if (tor_redis_ready(r, err) < 0)
		return tor_err_prefix(err, "lease acquire: ");
	if (client_record(r, cfg, record, sizeof(record), err) < 0)
		return -1;
	*sent_ms = tor_mono_ms();
	rc = try_acquire(r, cfg, &k, record, NULL, takeover_only, token, &h,
	    err);
	if (rc != 0 || !holder_gone(r, &h, record, &dead)) {
		if (rc == 1)
			wait_for_replica(r, cfg, *token);
		return rc;
	}
	/* Compare-and-set on what was found: a lease renewed or taken
	 * meanwhile is left alone. */
	*sent_ms = tor_mono_ms();
	rc = try_acquire(r, cfg, &k, record, &h, false, token, &found, err);
	if (rc == 0 && found.why[0] != '\0')
		log_debug("lease", "not taking the lease over from \"%s\" (its "
		    "Redis client %lld is gone): %s", h.value, dead, found.why);
	if (rc != 1)
		return rc;
	won = tor_mono_ms();
	log_info("lease", "took the lease over from \"%s\": its Redis client "
	    "%lld is gone (ha.fast_failover); leading in %d ms", h.value, dead,
	    TOR_LEASE_TAKEOVER_GRACE_MS);
	wait_for_replica(r, cfg, *token);
	*not_before_ms = won + TOR_LEASE_TAKEOVER_GRACE_MS;
	return 1;
}

int
tor_lease_renew(struct tor_redis *r, const struct tor_config *cfg,
    uint64_t token, tor_err *err)
{
	const char *what = "lease renew", *rest[6];
	struct lease_keys k;
	char value[512], ms[16], tok[24], record[128];
	redisReply *reply;
	int nkeys;

	lease_keys(cfg, &k);
	if (lease_value(cfg, token, value, sizeof(value), what, err) == -1 ||
	    client_record(r, cfg, record, sizeof(record), err) == -1)
		return -1;
	snprintf(ms, sizeof(ms), "%d", cfg->ha.lease_ms);
	snprintf(tok, sizeof(tok), "%" PRIu64, token);
	nkeys = record[0] != '\0' ? 2 : 1;
	rest[0] = k.lease;
	rest[1] = k.client;
	rest[nkeys] = value;
	rest[nkeys + 1] = ms;
	rest[nkeys + 2] = tok;
	rest[nkeys + 3] = record;
	if ((reply = eval(r, renew_lua, nkeys, nkeys + 4, rest, what, err)) ==
	    NULL)
		return -1;
	return verdict(what, k.lease, reply, err);
}

int
tor_lease_release(struct tor_redis *r, const struct tor_config *cfg,
    uint64_t token, tor_err *err)
{
	const char *what = "lease release", *rest[7];
	struct lease_keys k;
	char value[512], tok[24], channel[512];
	redisReply *reply;

	lease_keys(cfg, &k);
	if (lease_value(cfg, token, value, sizeof(value), what, err) == -1)
		return -1;
	snprintf(tok, sizeof(tok), "%" PRIu64, token);
	tor_lease_free_channel(cfg, channel, sizeof(channel));
	rest[0] = k.lease;
	rest[1] = k.handoff;
	rest[2] = k.client;
	rest[3] = value;
	rest[4] = tok;
	rest[5] = channel;
	rest[6] = cfg->group;
	if ((reply = eval(r, release_lua, 3, 7, rest, what, err)) == NULL)
		return -1;
	return verdict(what, k.lease, reply, err);
}

void
tor_lease_free_channel(const struct tor_config *cfg, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s:pool:free", cfg->redis.prefix);
}

int
tor_lease_set_handoff_to(struct tor_redis *r, const struct tor_config *cfg,
    const char *instance, int ttl_ms, tor_err *err)
{
	const char *argv[5];
	struct lease_keys k;
	char ms[16];
	redisReply *reply;

	lease_keys(cfg, &k);
	snprintf(ms, sizeof(ms), "%d", ttl_ms > 0 ? ttl_ms : 1);
	argv[0] = "SET";
	argv[1] = k.handoff_to;
	argv[2] = instance;
	argv[3] = "PX";
	argv[4] = ms;
	if ((reply = tor_redis_command(r, 5, argv, NULL, err)) == NULL)
		return tor_err_prefix(err, "lease handoff_to: ");
	freeReplyObject(reply);
	return 0;
}

/* Splits a lease value "<instance> <token>" at its last space (an instance
 * name is the operator's and might hold one). */
static bool
parse_lease_value(const redisReply *v, char *instance, size_t cap,
    uint64_t *token)
{
	const char *sp;

	if (v->type != REDIS_REPLY_STRING || strlen(v->str) != v->len ||
	    (sp = strrchr(v->str, ' ')) == NULL || sp == v->str)
		return false;
	if (!parse_token(sp + 1, strlen(sp + 1), token))
		return false;
	snprintf(instance, cap, "%.*s", (int)(sp - v->str), v->str);
	return true;
}

int
tor_lease_read(struct tor_redis *r, const struct tor_config *cfg,
    char *instance, size_t cap, uint64_t *token, int64_t *ttl_ms,
    tor_err *err)
{
	const char *what = "lease read", *rest[1];
	struct lease_keys k;
	redisReply *reply;
	int rc = -1;

	lease_keys(cfg, &k);
	rest[0] = k.lease;
	if ((reply = eval(r, read_lua, 1, 1, rest, what, err)) == NULL)
		return -1;
	if (reply->type == REDIS_REPLY_NIL)
		rc = 0;
	else if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
	    reply->element[1]->type != REDIS_REPLY_INTEGER)
		unexpected(what, k.lease, reply, err);
	else if (!parse_lease_value(reply->element[0], instance, cap, token))
		tor_err_set(err, "%s: %s: not \"<instance> <token>\"", what,
		    k.lease);
	else {
		*ttl_ms = reply->element[1]->integer;
		rc = 1;
	}
	freeReplyObject(reply);
	return rc;
}

/* KEYS epoch; ARGV floor (see TOKEN_LUA). */
static const char next_token_lua[] =
    TOKEN_LUA
    "return next_token(KEYS[1], ARGV[1])\n";

/* KEYS epoch, lease; ARGV floor, the lease value held, the hold's holder,
 * hold_ms.  Raises the epoch as next_token_lua does; the hold replaces the
 * lease only while it is still the caller's. */
static const char hold_lua[] =
    TOKEN_LUA
    "local t = next_token(KEYS[1], ARGV[1])\n"
    "if type(t) ~= 'string' then return t end\n"
    "if redis.call('GET', KEYS[2]) == ARGV[2] then\n"
    "  redis.call('SET', KEYS[2], ARGV[3] .. ' ' .. t, 'PX', ARGV[4])\n"
    "end\n"
    "return t\n";

/* A floor passed to next_token: there must be a token after it. */
static int
check_floor(uint64_t floor, const char *what, tor_err *err)
{
	if (floor < TOR_TOKEN_MAX)
		return 0;
	return tor_err_set(err, "%s: no token after %" PRIu64 ", past the "
	    "largest token (%llu): a checkpoint set by hand, or tampered with",
	    what, floor, TOR_TOKEN_MAX);
}

/* A token from the epoch key's reply: digits, never 0 (someone may have SET
 * the key by hand to a negative number or a word). */
static int
token_reply(const redisReply *reply, const char *what, const char *key,
    uint64_t *token, tor_err *err)
{
	if (reply->type == REDIS_REPLY_STRING &&
	    parse_token(reply->str, reply->len, token))
		return 0;
	if (reply->type == REDIS_REPLY_STRING)
		return tor_err_set(err, "%s: %s: not a token ('%.64s')", what,
		    key, reply->str);
	unexpected(what, key, reply, err);
	return -1;
}

int
tor_lease_hold(struct tor_redis *r, const struct tor_config *cfg,
    uint64_t held_token, uint64_t floor, uint64_t *token, tor_err *err)
{
	const char *what = "lease hold", *rest[6];
	struct lease_keys k;
	char f[24], value[512], ms[24];
	redisReply *reply;
	int rc;

	lease_keys(cfg, &k);
	if (check_floor(floor, what, err) < 0 ||
	    lease_value(cfg, held_token, value, sizeof(value), what, err) < 0)
		return -1;
	snprintf(f, sizeof(f), "%" PRIu64, floor);
	snprintf(ms, sizeof(ms), "%d", cfg->ha.lease_ms);
	rest[0] = k.epoch;
	rest[1] = k.lease;
	rest[2] = f;
	rest[3] = value;
	rest[4] = TOR_LEASE_HOLD;
	rest[5] = ms;
	if ((reply = eval(r, hold_lua, 2, 6, rest, what, err)) == NULL)
		return -1;
	rc = token_reply(reply, what, k.epoch, token, err);
	freeReplyObject(reply);
	return rc;
}

int
tor_lease_next_token(struct tor_redis *r, const struct tor_config *cfg,
    uint64_t floor, uint64_t *token, tor_err *err)
{
	const char *what = "lease next token", *rest[2];
	struct lease_keys k;
	char f[24];
	redisReply *reply;
	int rc;

	if (check_floor(floor, what, err) < 0)
		return -1;
	lease_keys(cfg, &k);
	snprintf(f, sizeof(f), "%" PRIu64, floor);
	rest[0] = k.epoch;
	rest[1] = f;
	if ((reply = eval(r, next_token_lua, 1, 2, rest, what, err)) == NULL)
		return -1;
	rc = token_reply(reply, what, k.epoch, token, err);
	freeReplyObject(reply);
	return rc;
}
