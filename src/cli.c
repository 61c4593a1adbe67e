/*
 * The operator's commands beside running a replica (DESIGN.md §7): tor
 * status, tor checkpoint show and tor checkpoint set.
 *
 * Each runs once: it opens its own Redis connection (and, for `set`, a MySQL
 * query connection), prints one "key: value" line per fact and says what
 * went wrong on stderr as "tor: <message>".  Exit codes are 0 (yes: a
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
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tor/binlog.h"
#include "tor/checkpoint.h"
#include "tor/cli.h"
#include "tor/lease.h"
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
print_checkpoint(FILE *out, enum checkpoint_state state,
    const struct tor_checkpoint *cp, const tor_err *invalid)
{
	char text[sizeof(cp->pos.file) + sizeof(cp->pos.gtid) + 32];

	if (state == CHECKPOINT_NONE) {
		fprintf(out, "checkpoint: none\n");
		return;
	}
	if (state == CHECKPOINT_INVALID) {
		fprintf(out, "checkpoint: invalid (%s)\n", invalid->msg);
		return;
	}
	tor_position_format(&cp->pos, text, sizeof(text));
	fprintf(out, "checkpoint: %s\n", text);
	fprintf(out, "checkpoint_gtid: %s\n",
	    cp->pos.gtid[0] != '\0' ? cp->pos.gtid : "none");
	fprintf(out, "checkpoint_token: %" PRIu64 "\n", cp->epoch);
	/* A writer's clock ahead of ours would make the age negative. */
	if (cp->updated_ms > 0) {
		int64_t age = now_ms() - cp->updated_ms;

		fprintf(out, "checkpoint_age_ms: %" PRId64 "\n",
		    age > 0 ? age : 0);
	} else
		fprintf(out, "checkpoint_age_ms: unknown\n");
}

int
tor_cli_status(const struct tor_config *cfg, FILE *out)
{
	struct tor_checkpoint cp;
	enum checkpoint_state state;
	struct tor_redis *r;
	char leader[256];
	uint64_t token = 0;
	int64_t ttl_ms = 0;
	tor_err err, invalid;
	int held;

	if ((r = open_redis(cfg, &err)) == NULL)
		return fail(CLI_ERROR, &err);
	/* Ask everything before printing anything: a script never sees half
	 * an answer with exit 2. */
	held = tor_lease_read(r, cfg, leader, sizeof(leader), &token, &ttl_ms,
	    &err);
	if (held < 0 || read_checkpoint(r, cfg, &cp, &state, &invalid) < 0) {
		tor_redis_free(r);
		return fail(CLI_ERROR, held < 0 ? &err : &invalid);
	}
	tor_redis_free(r);

	fprintf(out, "group: %s\n", cfg->group);
	if (held && (strcmp(leader, TOR_LEASE_OPERATOR) == 0 ||
	    strcmp(leader, TOR_LEASE_HOLD) == 0)) {
		/* After `checkpoint set`, or Redis's loss of its data: nobody
		 * leads until it expires. */
		fprintf(out, "leader: none\n");
		fprintf(out, "paused_by: %s (token %" PRIu64 ")\n", leader,
		    token);
		fprintf(out, "pause_ms_left: %" PRId64 "\n", ttl_ms);
		held = 0;
	} else if (held) {
		fprintf(out, "leader: %s\n", leader);
		fprintf(out, "token: %" PRIu64 "\n", token);
		fprintf(out, "lease_ms_left: %" PRId64 "\n", ttl_ms);
	} else
		fprintf(out, "leader: none\n");
	print_checkpoint(out, state, &cp, &invalid);
	return held ? CLI_YES : CLI_NO;
}

int
tor_cli_checkpoint_show(const struct tor_config *cfg, FILE *out)
{
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
	print_checkpoint(out, state, &cp, &err);
	switch (state) {
	case CHECKPOINT_FOUND:
		return CLI_YES;
	case CHECKPOINT_NONE:
		return CLI_NO;
	default:
		return CLI_ERROR;
	}
}

/* Asks the server about a file:pos target, or resolves "end" into one.
 * Refuses (CLI_NO) a file the server does not have and a position past the
 * end of the file being written; the other files' sizes are not checked. */
static int
check_on_server(const struct tor_config *cfg, struct tor_binlog *b,
    bool to_end, struct tor_position *pos, tor_err *err)
{
	struct tor_position end;
	tor_err again;

	if (tor_binlog_resolve_start(b, "end", &end, err) < 0)
		return CLI_ERROR;
	if (to_end) {
		*pos = end;
		return CLI_YES;
	}
	if (tor_binlog_check_available(b, pos, err) < 0) {
		/* It fails alike for a file the server lacks and for a
		 * connection lost meanwhile: asking again tells which. */
		if (tor_binlog_resolve_start(b, "end", &end, &again) < 0) {
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
    struct tor_position *pos, tor_err *err)
{
	struct tor_binlog *b;
	int rc;

	if (!to_end && pos->file[0] == '\0')
		return CLI_YES;
	if ((b = tor_binlog_new(cfg)) == NULL) {
		tor_err_set(err, "out of memory");
		return CLI_ERROR;
	}
	rc = check_on_server(cfg, b, to_end, pos, err);
	tor_binlog_free(b);
	return rc;
}

/* Test-only seam: TOR_TEST_CHECKPOINT_SET_PAUSE_MS makes `set` sleep before
 * its move, so a test can let a replica acquire and publish meanwhile. */
static void
test_pause(void)
{
	const char *ms = getenv("TOR_TEST_CHECKPOINT_SET_PAUSE_MS");
	struct timespec ts;
	long v;

	if (ms == NULL || (v = strtol(ms, NULL, 10)) <= 0)
		return;
	ts.tv_sec = v / 1000;
	ts.tv_nsec = (v % 1000) * 1000000L;
	nanosleep(&ts, NULL);
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
	if (!to_end && tor_position_parse(to, &cp.pos, &err) < 0)
		return fail(CLI_NO, &err);
	if ((r = open_redis(cfg, &err)) == NULL)
		return fail(CLI_ERROR, &err);
	if ((rc = check_target(cfg, to_end, &cp.pos, &err)) != CLI_YES) {
		tor_redis_free(r);
		return fail(rc, &err);
	}
	test_pause();
	if (tor_checkpoint_move(r, cfg, &cp, &err) < 0) {
		tor_redis_free(r);
		return fail(CLI_ERROR, &err);
	}
	print_checkpoint(out, CHECKPOINT_FOUND, &cp, NULL);
	if (cp.pos.file[0] == '\0')
		fprintf(out, "note: a GTID position is checked by the server "
		    "only when a leader starts streaming from it\n");
	tor_redis_free(r);
	fprintf(out, "leader: asked to step down\n");
	return CLI_YES;
}
