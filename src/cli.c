/*
 * The operator's commands beside running a replica (DESIGN.md §7): tor
 * status, tor checkpoint show and tor checkpoint set.
 *
 * Each runs once: it opens its own Redis connection (and, for `set`, a MySQL
 * query connection), prints one "key: value" line per fact (with --json, one
 * JSON object of the same keys) and says what went wrong on stderr as
 * "tor: <message>".  Exit codes are 0 (yes: a
 * leader, a checkpoint, a move done), 1 (no: none, or a refused position)
 * and 2 (a service could not be asked).
 *
 * One idea makes `set` safe beside running replicas: the move is one step on
 * the Redis master (tor_checkpoint_move) that draws a fresh token, takes the
 * lease as the operator for lease_ms and writes the checkpoint under that
 * token.  The leader's next renew fails and it steps down, its writes are
 * refused, a replica that acquired in between makes the step start over
 * with a newer token, and whoever leads next starts from the new position.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tor/binlog.h"
#include "tor/binlog_json.h"
#include "tor/buf.h"
#include "tor/checkpoint.h"
#include "tor/cli.h"
#include "tor/lease.h"
#include "tor/members.h"
#include "tor/redis.h"

enum {
	CLI_YES = 0,
	CLI_NO = 1,             /* no leader, no checkpoint, refused */
	CLI_ERROR = 2,          /* Redis or MySQL could not be asked */
};

enum checkpoint_state {
	CHECKPOINT_NONE,
	CHECKPOINT_FOUND,
	CHECKPOINT_INVALID,     /* the hash is there but does not decode */
};

/*
 * What a command found, printed at the end in one go: as "key: value"
 * lines, or as one JSON object whose keys are the same (the names are part
 * of the contract, docs/operating.md "Operator commands").  A fact that is absent
 * ("none", "unknown") is null in JSON.
 */
enum fact_kind { FACT_TEXT, FACT_INT, FACT_ABSENT };

struct fact {
	const char *key;
	enum fact_kind kind;
	char text[TOR_GTID_SET_TEXT];   /* FACT_TEXT's value (a MySQL GTID set
	                                 * at its longest); FACT_ABSENT's word */
	int64_t num;
};

struct facts {
	struct fact f[16];
	size_t n;
};

static struct fact *
fact_new(struct facts *fs, const char *key, enum fact_kind kind)
{
	struct fact *f = &fs->f[fs->n < 16 ? fs->n++ : 15];

	f->key = key;
	f->kind = kind;
	return f;
}

static void
fact_text(struct facts *fs, const char *key, const char *value)
{
	snprintf(fact_new(fs, key, FACT_TEXT)->text, sizeof(fs->f[0].text),
	    "%s", value);
}

static void
fact_int(struct facts *fs, const char *key, int64_t value)
{
	fact_new(fs, key, FACT_INT)->num = value;
}

static void
fact_absent(struct facts *fs, const char *key, const char *word)
{
	snprintf(fact_new(fs, key, FACT_ABSENT)->text, sizeof(fs->f[0].text),
	    "%s", word);
}

static void
print_facts(FILE *out, const struct facts *fs, bool json)
{
	struct tor_buf b = { 0 };

	for (size_t i = 0; i < fs->n; i++) {
		const struct fact *f = &fs->f[i];

		if (!json) {
			if (f->kind == FACT_INT)
				fprintf(out, "%s: %" PRId64 "\n", f->key, f->num);
			else
				fprintf(out, "%s: %s\n", f->key, f->text);
			continue;
		}
		fprintf(out, "%s\"%s\": ", i == 0 ? "{" : ", ", f->key);
		if (f->kind == FACT_INT) {
			fprintf(out, "%" PRId64, f->num);
		} else if (f->kind == FACT_ABSENT) {
			fputs("null", out);
		} else {
			b.len = 0;
			if (tor_json_quote(&b, (const uint8_t *)f->text,
			    strlen(f->text)) == 0)
				fwrite(b.data, 1, b.len, out);
			else
				fputs("null", out);
		}
	}
	if (json)
		fputs(fs->n > 0 ? "}\n" : "{}\n", out);
	tor_buf_free(&b);
}

static int
fail(int code, const tor_err *err)
{
	fprintf(stderr, "tor: %s\n", err->msg);
	return code;
}

/* Connects at once, so that an unreachable Redis is reported as itself
 * ("redis host:port: connect: ...") rather than as the first command that
 * failed, and before `set` asks MySQL anything. */
static struct tor_redis *
open_redis(const struct tor_config *cfg, tor_err *err)
{
	struct tor_redis *r;

	if ((r = tor_redis_new(cfg)) == NULL) {
		tor_err_set(err, "out of memory");
		return NULL;
	}
	if (tor_redis_connect(r, err) < 0) {
		tor_redis_free(r);
		return NULL;
	}
	return r;
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Loads the checkpoint and sorts out why it failed: tor_checkpoint_load
 * prefixes a hash that does not decode with the key, and a Redis error with
 * "redis host:port".  On CHECKPOINT_INVALID err holds the reason alone.
 * Returns -1 only when Redis could not be asked. */
static int
read_checkpoint(struct tor_redis *r, const struct tor_config *cfg,
    struct tor_checkpoint *cp, enum checkpoint_state *state, tor_err *err)
{
	char key[512];
	size_t len;
	bool found;

	if (tor_checkpoint_load(r, cfg, cp, &found, err) == 0) {
		*state = found ? CHECKPOINT_FOUND : CHECKPOINT_NONE;
		return 0;
	}
	tor_redis_key(cfg, "checkpoint", key, sizeof(key));
	len = strlen(key);
	if (strncmp(err->msg, key, len) != 0 || err->msg[len] != ':')
		return -1;
	memmove(err->msg, err->msg + len + 1,
	    strlen(err->msg + len + 1) + 1);
	if (err->msg[0] == ' ')
		memmove(err->msg, err->msg + 1, strlen(err->msg));
	*state = CHECKPOINT_INVALID;
	return 0;
}

static void
checkpoint_facts(struct facts *fs, enum checkpoint_state state,
    const struct tor_checkpoint *cp, const tor_err *invalid)
{
	char text[sizeof(cp->pos.file) + sizeof(cp->pos.gtid) + 32];

	if (state == CHECKPOINT_NONE) {
		fact_absent(fs, "checkpoint", "none");
		return;
	}
	if (state == CHECKPOINT_INVALID) {
		snprintf(text, sizeof(text), "invalid (%s)", invalid->msg);
		fact_text(fs, "checkpoint", text);
		return;
	}
	tor_position_format(&cp->pos, text, sizeof(text));
	fact_text(fs, "checkpoint", text[0] != '\0' ? text : "gtid set");
	if (cp->pos.gtid[0] != '\0')
		fact_text(fs, "checkpoint_gtid", cp->pos.gtid);
	else
		fact_absent(fs, "checkpoint_gtid", "none");
	/* MySQL only: MariaDB's output keeps its facts. */
	if (cp->gtid_set[0] != '\0')
		fact_text(fs, "checkpoint_gtid_set", cp->gtid_set);
	fact_int(fs, "checkpoint_token", (int64_t)cp->epoch);
	/* A writer's clock ahead of ours would make the age negative. */
	if (cp->updated_ms > 0) {
		int64_t age = now_ms() - cp->updated_ms;

		fact_int(fs, "checkpoint_age_ms", age > 0 ? age : 0);
	} else
		fact_absent(fs, "checkpoint_age_ms", "unknown");
}

/* One group's status facts: 1 a leader holds the lease, 0 none does, -1
 * Redis could not be asked (err set). */
static int
group_status(const struct tor_config *cfg, struct facts *fs, tor_err *err)
{
	struct tor_checkpoint cp;
	enum checkpoint_state state;
	struct tor_redis *r;
	char leader[256];
	uint64_t token = 0;
	int64_t ttl_ms = 0;
	tor_err invalid;
	int held;

	if ((r = open_redis(cfg, err)) == NULL)
		return -1;
	/* Ask everything before printing anything: a script never sees half
	 * an answer with exit 2. */
	held = tor_lease_read(r, cfg, leader, sizeof(leader), &token, &ttl_ms,
	    err);
	if (held < 0 || read_checkpoint(r, cfg, &cp, &state, &invalid) < 0) {
		tor_redis_free(r);
		if (held >= 0)
			*err = invalid;
		return -1;
	}
	tor_redis_free(r);

	fact_text(fs, "group", cfg->group);
	if (held && (strcmp(leader, TOR_LEASE_OPERATOR) == 0 ||
	    strcmp(leader, TOR_LEASE_HOLD) == 0)) {
		char by[300];

		/* After `checkpoint set`, or Redis's loss of its data: nobody
		 * leads until it expires. */
		fact_absent(fs, "leader", "none");
		snprintf(by, sizeof(by), "%s (token %" PRIu64 ")", leader,
		    token);
		fact_text(fs, "paused_by", by);
		fact_int(fs, "pause_ms_left", ttl_ms);
		held = 0;
	} else if (held) {
		fact_text(fs, "leader", leader);
		fact_int(fs, "token", (int64_t)token);
		fact_int(fs, "lease_ms_left", ttl_ms);
	} else
		fact_absent(fs, "leader", "none");
	checkpoint_facts(fs, state, &cp, &invalid);
	return held ? 1 : 0;
}

/* Members and decisions shown at most. */
#define STATUS_MEMBERS 64
#define STATUS_DECISIONS 10

/* s as a JSON string. */
static void
print_json_text(FILE *out, const char *s)
{
	struct tor_buf b = { 0 };

	if (tor_json_quote(&b, (const uint8_t *)s, strlen(s)) == 0)
		fwrite(b.data, 1, b.len, out);
	else
		fputs("null", out);
	tor_buf_free(&b);
}

/*
 * The pool of a file of several sources: its members as their last beats
 * say (led groups, health, whether settled, and so counted in the share),
 * the share they make, and the last decisions.  -1 with err when Redis
 * cannot be asked.
 */
static int
pool_status(const struct tor_config *cfgs, size_t n, bool json, FILE *out,
    tor_err *err)
{
	const struct tor_pool_config *p = &cfgs[0].pool;
	struct tor_member *m = calloc(STATUS_MEMBERS, sizeof(*m));
	struct tor_decision *d = calloc(STATUS_DECISIONS, sizeof(*d));
	size_t nm = 0, nd = 0;
	int64_t now = 0;
	struct tor_redis *r = NULL;
	char tag[300];
	int share, rc = -1;

	snprintf(tag, sizeof(tag), "pool:%s", p->name);
	if (m == NULL || d == NULL ||
	    (r = tor_redis_new_tag(&cfgs[0], tag)) == NULL) {
		tor_err_set(err, "out of memory");
		goto out;
	}
	if (tor_members_list(r, &cfgs[0], m, STATUS_MEMBERS, &nm, &now,
	    err) < 0 || tor_members_decisions(r, &cfgs[0], d,
	    STATUS_DECISIONS, &nd, err) < 0)
		goto out;
	/* As the members work it out, seen from none of them. */
	share = tor_pool_share(m, nm, NULL, (int)n, p->settle_ms, now,
	    p->max_leading);
	if (json) {
		fputs("{\"pool\": ", out);
		print_json_text(out, p->name);
		fprintf(out, ", \"groups\": %zu, \"share\": %d, "
		    "\"members\": [", n, share);
		for (size_t i = 0; i < nm; i++) {
			fputs(i > 0 ? ", {\"instance\": " : "{\"instance\": ",
			    out);
			print_json_text(out, m[i].instance);
			fprintf(out, ", \"leading\": %d, \"healthy\": %s, "
			    "\"draining\": %s, \"settled\": %s, "
			    "\"member_ms\": %" PRId64 "}", m[i].led,
			    m[i].healthy ? "true" : "false", m[i].draining ?
			    "true" : "false", now - m[i].since_ms >=
			    p->settle_ms ? "true" : "false",
			    now - m[i].since_ms);
		}
		fputs("], \"decisions\": [", out);
		for (size_t i = 0; i < nd; i++) {
			if (i > 0)
				fputs(", ", out);
			print_json_text(out, d[i].line);
		}
		fputs("]}\n", out);
	} else {
		fprintf(out, "\npool: %s\ngroups: %zu\nshare: %d\n", p->name,
		    n, share);
		for (size_t i = 0; i < nm; i++)
			fprintf(out, "member: %s leading=%d healthy=%d "
			    "draining=%d settled=%d member_ms=%" PRId64 "\n",
			    m[i].instance, m[i].led, m[i].healthy,
			    m[i].draining, now - m[i].since_ms >= p->settle_ms,
			    now - m[i].since_ms);
		for (size_t i = 0; i < nd; i++)
			fprintf(out, "decision: %s\n", d[i].line);
	}
	rc = 0;
out:
	tor_redis_free(r);
	free(m);
	free(d);
	return rc;
}

int
tor_cli_status(const struct tor_config *cfgs, size_t n, bool json,
    FILE *out)
{
	struct facts *fs = calloc(n, sizeof(*fs));
	int rc = CLI_YES, held;
	tor_err err;

	if (fs == NULL) {
		tor_err_set(&err, "out of memory");
		return fail(CLI_ERROR, &err);
	}
	for (size_t i = 0; i < n; i++) {
		if ((held = group_status(&cfgs[i], &fs[i], &err)) < 0) {
			free(fs);
			return fail(CLI_ERROR, &err);
		}
		if (held == 0)
			rc = CLI_NO;
	}
	/* Several groups: a blank line between them, or a JSON object a
	 * line. */
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && !json)
			fputc('\n', out);
		print_facts(out, &fs[i], json);
	}
	free(fs);
	if (n > 1 && cfgs[0].pool.enabled && pool_status(cfgs, n, json, out,
	    &err) < 0)
		return fail(CLI_ERROR, &err);
	return rc;
}

int
tor_cli_checkpoint_show(const struct tor_config *cfg, bool json, FILE *out)
{
	struct facts fs = { .n = 0 };
	struct tor_checkpoint cp;
	enum checkpoint_state state;
	struct tor_redis *r;
	tor_err err;
	int rc;

	if ((r = open_redis(cfg, &err)) == NULL)
		return fail(CLI_ERROR, &err);
	rc = read_checkpoint(r, cfg, &cp, &state, &err);
	tor_redis_free(r);
	if (rc < 0)
		return fail(CLI_ERROR, &err);
	checkpoint_facts(&fs, state, &cp, &err);
	print_facts(out, &fs, json);
	switch (state) {
	case CHECKPOINT_FOUND:
		return CLI_YES;
	case CHECKPOINT_NONE:
		return CLI_NO;
	default:
		return CLI_ERROR;
	}
}

/* A file:pos belongs to the server it was checked on: the checkpoint
 * records its server_id, and its GTID state there (MariaDB), so that a
 * leader that meets another server (a failover since) follows it by GTID
 * instead of looking for this server's file there. */
static int
note_source(struct tor_binlog *b, struct tor_checkpoint *cp, tor_err *err)
{
	char state[4096];

	if (tor_binlog_gtid_at(b, &cp->pos, err) < 0 ||
	    tor_binlog_identify(b, &cp->server_id, state, sizeof(state),
	    err) < 0)
		return CLI_ERROR;
	return CLI_YES;
}

/* Asks the server about a file:pos target, or resolves "end" into one.
 * Refuses (CLI_NO) a file the server does not have and a position past the
 * end of the file being written; the other files' sizes are not checked. */
static int
check_on_server(const struct tor_config *cfg, struct tor_binlog *b,
    bool to_end, struct tor_checkpoint *cp, tor_err *err)
{
	struct tor_position *pos = &cp->pos;
	struct tor_position end;
	tor_err again;

	if (tor_binlog_resolve_start(b, "end", &end,
	    to_end ? cp->gtid_set : NULL, err) < 0)
		return CLI_ERROR;
	if (to_end) {
		*pos = end;
		return CLI_YES;
	}
	if (tor_binlog_check_available(b, pos, err) < 0) {
		/* It fails alike for a file the server lacks and for a
		 * connection lost meanwhile: asking again tells which. */
		if (tor_binlog_resolve_start(b, "end", &end, NULL,
		    &again) < 0) {
			*err = again;
			return CLI_ERROR;
		}
		tor_err_prefix(err, "not moving the checkpoint: ");
		return CLI_NO;
	}
	if (strcmp(pos->file, end.file) == 0 && pos->pos > end.pos) {
		tor_err_set(err, "not moving the checkpoint: mysql %s:%d: "
		    "position %s:%" PRIu64 " is beyond the end of binlog file "
		    "%s, which is at %" PRIu64 " now", cfg->mysql.host,
		    cfg->mysql.port, pos->file, pos->pos, end.file, end.pos);
		return CLI_NO;
	}
	return CLI_YES;
}

/* Asks the server about the target unless it is a GTID list, which is
 * taken as given: the server judges one only when a leader opens the stream
 * there. */
static int
check_target(const struct tor_config *cfg, bool to_end,
    struct tor_checkpoint *cp, tor_err *err)
{
	struct tor_binlog *b;
	int rc;

	if (!to_end && cp->pos.file[0] == '\0')
		return CLI_YES;
	if ((b = tor_binlog_new(cfg)) == NULL) {
		tor_err_set(err, "out of memory");
		return CLI_ERROR;
	}
	if ((rc = check_on_server(cfg, b, to_end, cp, err)) == CLI_YES)
		rc = note_source(b, cp, err);
	tor_binlog_free(b);
	return rc;
}

/* Test-only seam of the test build: TOR_TEST_CHECKPOINT_SET_PAUSE_MS makes
 * `set` sleep before its move, so a test can let a replica acquire and
 * publish meanwhile. */
static void
test_pause(void)
{
#ifdef TOR_TEST_HOOKS
	const char *ms = getenv("TOR_TEST_CHECKPOINT_SET_PAUSE_MS");
	struct timespec ts;
	long v;

	if (ms == NULL || (v = strtol(ms, NULL, 10)) <= 0)
		return;
	ts.tv_sec = v / 1000;
	ts.tv_nsec = (v % 1000) * 1000000L;
	nanosleep(&ts, NULL);
#endif
}

int
tor_cli_checkpoint_set(const struct tor_config *cfg, const char *to,
    FILE *out)
{
	bool to_end = strcmp(to, "end") == 0;
	struct tor_checkpoint cp;
	struct tor_redis *r;
	tor_err err;
	int rc;

	/* A malformed position is refused before anything is asked. */
	memset(&cp, 0, sizeof(cp));
	if (!to_end && tor_position_parse_set(to, &cp.pos, cp.gtid_set,
	    &err) < 0)
		return fail(CLI_NO, &err);
	if ((r = open_redis(cfg, &err)) == NULL)
		return fail(CLI_ERROR, &err);
	if ((rc = check_target(cfg, to_end, &cp, &err)) != CLI_YES) {
		tor_redis_free(r);
		return fail(rc, &err);
	}
	test_pause();
	if (tor_checkpoint_move(r, cfg, &cp, &err) < 0) {
		tor_redis_free(r);
		return fail(CLI_ERROR, &err);
	}
	{
		struct facts fs = { .n = 0 };

		checkpoint_facts(&fs, CHECKPOINT_FOUND, &cp, NULL);
		if (cp.pos.file[0] == '\0')
			fact_text(&fs, "note", "a GTID position is checked by "
			    "the server only when a leader starts streaming "
			    "from it");
		fact_text(&fs, "leader", "asked to step down");
		print_facts(out, &fs, false);
	}
	tor_redis_free(r);
	return CLI_YES;
}

/* Where the Go tor's position is: its own Redis (host, port, db, no
 * password, as the Go tor's config has them), else tor's.  The handle keeps
 * a pointer to the config: other must outlive it. */
static struct tor_redis *
open_go_tor_redis(const struct tor_config *cfg,
    const struct tor_go_tor_source *src, struct tor_config *other,
    tor_err *err)
{
	if (src->host == NULL)
		return open_redis(cfg, err);
	*other = *cfg;
	other->redis.host = (char *)src->host;
	other->redis.port = src->port;
	other->redis.db = src->db;
	other->redis.user = (char *)"";
	other->redis.password = (char *)"";
	other->redis.sentinel.master = (char *)"";
	other->redis.sentinel.n_nodes = 0;
	return open_redis(other, err);
}

/* Skips JSON white space. */
static const char *
json_blank(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return p;
}

/* A JSON string without escapes other than \" \\ and \/ (binlog file
 * names are plain), copied into out; NULL when it is not one or too long. */
static const char *
json_string(const char *p, char *out, size_t cap)
{
	size_t n = 0;

	if (*p++ != '"')
		return NULL;
	for (; *p != '"'; p++) {
		char c = *p;

		if (c == '\0' || (unsigned char)c < 0x20)
			return NULL;
		if (c == '\\') {
			c = *++p;
			if (c != '"' && c != '\\' && c != '/')
				return NULL;
		}
		if (n + 1 >= cap)
			return NULL;
		out[n++] = c;
	}
	out[n] = '\0';
	return p + 1;
}

/*
 * The Go tor's position: {"name": "<binlog file>", "pos": <n>}, either key
 * left out when empty or 0 (its JSON omits them); other keys are refused,
 * since they would mean this is not what we think it is.
 */
static int
parse_go_tor_position(const char *text, struct tor_position *pos,
    tor_err *err)
{
	const char *p = json_blank(text);
	bool any = false;

	memset(pos, 0, sizeof(*pos));
	if (*p++ != '{')
		goto bad;
	for (p = json_blank(p); *p != '}'; p = json_blank(p)) {
		char key[16];

		if (any && *p++ != ',')
			goto bad;
		if ((p = json_string(json_blank(p), key, sizeof(key))) == NULL)
			goto bad;
		p = json_blank(p);
		if (*p++ != ':')
			goto bad;
		p = json_blank(p);
		if (strcmp(key, "name") == 0) {
			if ((p = json_string(p, pos->file,
			    sizeof(pos->file))) == NULL)
				goto bad;
		} else if (strcmp(key, "pos") == 0) {
			char *end;

			if (*p < '0' || *p > '9')
				goto bad;
			errno = 0;
			pos->pos = strtoull(p, &end, 10);
			if (errno != 0 || pos->pos > UINT32_MAX)
				goto bad;
			p = end;
		} else {
			goto bad;
		}
		any = true;
	}
	if (*json_blank(p + 1) != '\0')
		goto bad;
	if (pos->file[0] == '\0')
		return tor_err_set(err, "the Go tor's position names no binlog "
		    "file (it never saved one): \"%.200s\"", text);
	if (pos->pos < 4)
		pos->pos = 4;   /* the file's start */
	return 0;
bad:
	return tor_err_set(err, "not the Go tor's position (expected {\"name\": "
	    "\"<binlog file>\", \"pos\": <n>}): \"%.200s\"", text);
}

/* Reads the Go tor's position from its Redis key. */
static int
read_go_tor_position(const struct tor_config *cfg,
    const struct tor_go_tor_source *src, struct tor_position *pos,
    tor_err *err)
{
	const char *argv[] = { "GET", src->key };
	struct tor_config other;
	struct tor_redis *r;
	redisReply *reply;
	int rc = CLI_YES;

	if ((r = open_go_tor_redis(cfg, src, &other, err)) == NULL)
		return CLI_ERROR;
	reply = tor_redis_command(r, 2, argv, NULL, err);
	if (reply == NULL) {
		rc = CLI_ERROR;
	} else if (reply->type == REDIS_REPLY_NIL) {
		tor_err_set(err, "%s: no such key (the Go tor's redisKey, in "
		    "the Redis it used: --redis-host, --redis-port, "
		    "--redis-db)", src->key);
		rc = CLI_NO;
	} else if (reply->type != REDIS_REPLY_STRING) {
		tor_err_set(err, "%s: not a string value", src->key);
		rc = CLI_NO;
	} else if (parse_go_tor_position(reply->str, pos, err) < 0) {
		tor_err_prefix(err, "%s: ", src->key);
		rc = CLI_NO;
	}
	if (reply != NULL)
		freeReplyObject(reply);
	tor_redis_free(r);
	return rc;
}

/* Moves a position inside a transaction back to where that transaction
 * began (the Go tor saves one after each rows event). */
static int
round_to_group(const struct tor_config *cfg, struct tor_checkpoint *cp,
    tor_err *err)
{
	struct tor_position start;
	struct tor_binlog *b;
	int rc;

	if ((b = tor_binlog_new(cfg)) == NULL) {
		tor_err_set(err, "out of memory");
		return CLI_ERROR;
	}
	/* One connection asks both: the file is there, then the group. */
	if ((rc = check_on_server(cfg, b, false, cp, err)) == CLI_YES) {
		rc = tor_binlog_group_start(b, &cp->pos, &start, err);
		if (rc != 0)
			tor_err_prefix(err, "not moving the checkpoint: ");
		rc = rc == 0 ? CLI_YES : rc > 0 ? CLI_NO : CLI_ERROR;
	}
	if (rc == CLI_YES) {
		cp->pos = start;
		rc = note_source(b, cp, err);
	}
	tor_binlog_free(b);
	return rc;
}

int
tor_cli_checkpoint_import(const struct tor_config *cfg,
    const struct tor_go_tor_source *src, FILE *out)
{
	struct tor_position go;
	struct tor_checkpoint cp;
	struct tor_redis *r;
	struct facts fs = { .n = 0 };
	char text[sizeof(go.file) + 32];
	tor_err err;
	int rc;

	if ((rc = read_go_tor_position(cfg, src, &go, &err)) != CLI_YES)
		return fail(rc, &err);
	memset(&cp, 0, sizeof(cp));
	cp.pos = go;
	if ((rc = round_to_group(cfg, &cp, &err)) != CLI_YES)
		return fail(rc, &err);
	if ((r = open_redis(cfg, &err)) == NULL)
		return fail(CLI_ERROR, &err);
	if (tor_checkpoint_move(r, cfg, &cp, &err) < 0) {
		tor_redis_free(r);
		return fail(CLI_ERROR, &err);
	}
	tor_redis_free(r);
	checkpoint_facts(&fs, CHECKPOINT_FOUND, &cp, NULL);
	snprintf(text, sizeof(text), "%s:%" PRIu64, go.file, go.pos);
	fact_text(&fs, "imported", text);
	if (cp.pos.pos != go.pos)
		fact_text(&fs, "note", "the Go tor's position is inside a "
		    "transaction: moved back to its start, whose rows are "
		    "published again");
	fact_text(&fs, "leader", "asked to step down");
	print_facts(out, &fs, false);
	return CLI_YES;
}
