/*
 * The relay (see include/tor/relay.h): one leadership session after another.
 *
 * A session starts when this replica wins the lease.  It works out where to
 * start (the newer decision of the Redis checkpoint and Kafka's copy of it,
 * by token), makes sure its token is above every token either copy carries,
 * writes both copies under its token before any message goes out, and then
 * reads the binlog through the source-transaction reader (tor/reader.h),
 * producing every outbox row as a message tagged with its transaction's
 * sequence number.  The progress tracker turns acknowledgements (or, in
 * transactional mode, Kafka commits) into the checkpoint.
 *
 * Every leadership the elector grants is taken here once and ended here
 * once, by its number (tor/elector.h): a session runs for it (several, when
 * a session restarts within it), and ends it unless the process ends.
 * Nothing the producer still holds is sent once the leadership is gone: the
 * elector tells the relay at the moment it ends (from whichever thread sees
 * it first), and the producer is purged there.
 * Stops happen between transactions: a stop request lets the current one
 * finish, so a restart neither loses nor repeats a part of it.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "tor/binlog.h"
#include "tor/binlog_decode.h"
#include "tor/checkpoint.h"
#include "tor/clock.h"
#include "tor/dedup.h"
#include "tor/elector.h"
#include "tor/electors.h"
#include "tor/electors.h"
#include "tor/health.h"
#include "tor/http.h"
#include "tor/kafka.h"
#include "tor/lease.h"
#include "tor/log.h"
#include "tor/metrics.h"
#include "tor/retention.h"
#include "tor/outbox.h"
#include "tor/progress.h"
#include "tor/reader.h"
#include "tor/redis.h"
#include "tor/relay.h"

/* How long a stop request may wait for the transaction in progress and for
 * Kafka's acknowledgements before the relay gives up on them. */
#define STOP_GRACE_MS 10000
#define KAFKA_COMMIT_TIMEOUT_MS 30000
#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 5000

/* How a leadership session ends, beside -1 (a fatal error). */
enum {
	RUN_STOPPED = 1,        /* a stop was requested: finish, hand over */
	RUN_LOST = 2,           /* the leadership is gone: drop everything */
	RUN_RESTART = 3,        /* still leading: start over from the commit */
	RUN_MOVED = 4,          /* the source is another server now: a new
				 * session resumes there by GTID */
};

/* Transactional mode: a Kafka transaction holds whole source transactions
 * and is committed when it holds this many messages, is this old, or the
 * binlog has had nothing more for a moment.  A source transaction that
 * outgrows it is split: a part is committed once it holds this many
 * messages or a quarter of transaction.timeout.ms has passed. */
#define KTXN_MAX_MESSAGES 50000
#define KTXN_MAX_MS 500
/* The binlog counts as caught up after this long without an event: the
 * reader thread's buffer runs empty for moments even under load. */
#define KTXN_IDLE_MS 5

/* The publish latency histogram needs each acknowledged message's source
 * timestamp, and an acknowledgement carries only its transaction's sequence
 * number: a ring keeps the timestamp of the last LATENCY_SLOTS transactions
 * (an ack older than that is not observed). */
#define LATENCY_SLOTS 16384     /* a power of two */
#define REDIS_PING_MS 1000      /* a follower's readiness probe of Redis */
/* A follower waits for a leadership in slices this long, serving its
 * clients and looking for a stop between them. */
#define AWAIT_SLICE_MS 100

/* A prepared XA transaction whose rows wait holds the checkpoint before
 * it: said in the log once it has for this long, and again at this
 * interval while it still does. */
#define XA_HELD_WARN_MS 10000
#define XA_HELD_REPEAT_MS (5 * 60 * 1000)

/* Rows the broker refused as too large, remembered across sessions and
 * shared with the group's other replicas through Redis. */
#define TOO_LARGE_MAX 64
/* How long a fatal producer's delivery reports are waited for (serve). */
#define FATAL_REPORTS_MS 2000

struct txn_time {
	uint64_t seq;
	int64_t ts_ms;          /* wall clock, from the binlog; 0: unknown */
};

/* Skipped rows not yet reported in the log, and when the last line
 * about them was written (skip_log_due). */
struct skip_log {
	uint64_t unlogged;
	int64_t logged_ms;
};

struct tor_relay {
	const struct tor_config *cfg;
	volatile sig_atomic_t *stop;    /* the process's: SIGTERM, SIGINT */
	_Atomic bool group_stop;        /* this group's alone (tor_relay_stop) */
	/* A hand-over the pool asked for (tor_relay_hand_over): written by
	 * the pool before it sets handing, read here after. */
	_Atomic bool handing;
	char hand_target[256];
	/* A group of a pool: no Kafka client while following (the producer
	 * and the position reader are made at each take), and the standby's
	 * Kafka probe is the pool's (kafka_probe).  A single group keeps
	 * them warm, so that a take-over starts without them. */
	bool cold;
	struct tor_sink *kafka_probe;   /* the pool's, not ours: cold only */
	struct tor_elector *elector;
	uint64_t leadership;            /* the one the sessions run for */
	bool lost;                      /* a write was refused: not leading */

	struct tor_binlog *binlog;
	struct tor_outbox *outbox;
	struct tor_redis *redis;
	struct tor_position_reader *positions;  /* Kafka's copies, kept warm */
	struct tor_progress *progress;
	struct tor_reader *reader;

	/* Gray failures (docs/ha-protocol.md): the leader's stall watch over
	 * its leadership, and, while following, the connection a standby
	 * judges MySQL with and when its next health report is due. */
	struct tor_stall stall;
	int64_t next_stall_check_ms;
	bool stall_kept_logged;
	bool kafka_retrying;    /* waiting to try a Kafka step again */
	struct tor_binlog *probe;
	int64_t next_health_ms;
	int health_logged;              /* -1 none yet, else kafka | mysql << 1 */

	/* The producer, and whether it is the live session's: the elector's
	 * thread purges it through sink_mu when the leadership ends. */
	pthread_mutex_t sink_mu;
	struct tor_sink *sink;
	bool sink_live;

	struct tor_checkpoint start;    /* where the session starts reading */
	uint32_t source_id;             /* the session's source server_id */
	bool set_too_long;              /* said that a GTID set is not kept */
	char source_state[4096];        /* and its gtid_binlog_state then */
	/* Idempotent mode: what the partitions hold already (NULL in
	 * transactional mode, and once every partition is passed). */
	struct tor_dedup *dedup;
	uint64_t dedup_skipped, dedup_unknown;
	bool dedup_reported;
	uint64_t max_token;             /* the highest token either copy had */
	/* The token and the leadership of its last checkpoint write: a
	 * session restarted within that leadership finds its own token there. */
	uint64_t written_token, written_leadership;
	bool start_found;               /* either copy of the checkpoint exists */
	uint64_t epoch;
	bool streaming;                 /* the session reads the binlog */

	/* Transactional mode. */
	bool txn_mode;
	bool ktxn_open;                 /* a Kafka transaction is open */
	uint64_t ktxn_messages;
	int64_t ktxn_started_ms;
	int64_t split_ms;               /* commit a part of a big source txn */
	int64_t last_event_ms;
	struct tor_checkpoint committed;        /* the last Kafka commit's */
	bool committed_moved;
#ifdef TOR_TEST_HOOKS
	unsigned long crash_after_commits;      /* test fault hook, 0 = off */
	unsigned long commits;
#endif

	int64_t last_checkpoint_ms;
	bool checkpoint_dirty;          /* the safe position moved, not written */
	struct tor_position written_done;       /* done of the last write */
	struct tor_position written_pos;        /* pos of the last write */
	int64_t xa_watched_ms;          /* monotonic: the last look (per s) */
	int64_t xa_warned_ms;           /* monotonic: the last line, or 0 */
	char xa_warned[TOR_XID_TEXT];   /* the prepared transaction it named */
	struct tor_retention retention; /* the binlog behind the checkpoint */
	int64_t retention_due_ms;       /* monotonic: the next check, 0 now */
	int64_t stop_deadline_ms;       /* 0 until a stop is requested */
	bool delivery_failed;
	int delivery_code;
	char delivery_error[256];

	/* The tor.pos of rows the broker refused as too large: in this
	 * process (a cap that halts, as a broker limit nobody set must not
	 * go unnoticed), and listed in Redis by the group's replicas
	 * (reloaded by every session, cut at the cap without a halt: a
	 * week's list must not stop every leader). */
	char too_large[TOO_LARGE_MAX][TOR_REFUSED_POS];
	size_t n_too_large;
	char group_refused[TOO_LARGE_MAX][TOR_REFUSED_POS];
	size_t n_group_refused, group_refused_over;

	uint64_t rows_published, rows_skipped, reconnects;
	/* Rows skipped as unrouted, and as naming a partition their topic
	 * lacks: logged at most a line per SKIP_LOG_MS (skip_log_due). */
	struct skip_log unrouted_log, partition_log;
	int64_t restart_backoff_ms;     /* after sessions that restart at once */

	/* What /metrics and the probes show (read by the HTTP thread). */
	struct tor_metrics metrics;
	struct txn_time *txn_times;     /* LATENCY_SLOTS, by seq */
};

/* A sign of life for /healthz: the loops call it at least once a second. */
static void
beat(struct tor_relay *r)
{
	atomic_store_explicit(&r->metrics.relay_beat_ms, tor_mono_ms(),
	    memory_order_relaxed);
}

static void
count_skip(struct tor_relay *r, enum tor_skip_reason why)
{
	atomic_fetch_add_explicit(&r->metrics.skipped[why], 1,
	    memory_order_relaxed);
}

static void
count_retry(struct tor_relay *r, enum tor_reconnect_target target)
{
	atomic_fetch_add_explicit(&r->metrics.reconnects[target], 1,
	    memory_order_relaxed);
}

static void
set_redis_ok(struct tor_relay *r, bool ok)
{
	atomic_store(&r->metrics.redis_ok, ok);
}

/* Whether the process, or this group alone, is to stop. */
static bool
stop_asked(const struct tor_relay *r)
{
	return *r->stop || atomic_load(&r->group_stop);
}

/* stop_asked, and the grace of a stop counted from the first look. */
static bool
stop_requested(struct tor_relay *r)
{
	bool asked = stop_asked(r);

	if (asked && r->stop_deadline_ms == 0) {
		r->stop_deadline_ms = tor_mono_ms() + STOP_GRACE_MS;
		log_info("relay", "stop requested: finishing the current "
		    "transaction, then flushing");
	}
	return asked;
}

static bool
stop_overdue(struct tor_relay *r)
{
	return stop_requested(r) && tor_mono_ms() > r->stop_deadline_ms;
}

/* Whether this replica may still publish: it leads, its local deadline has
 * not passed, and no write of it was refused. */
static bool
leading(struct tor_relay *r)
{
	return !r->lost && tor_elector_may_publish(r->elector, r->leadership);
}

static int check_stall(struct tor_relay *r, bool kafka_only);
static void abort_open_txn(struct tor_relay *r, int timeout_ms);

/* The sink's guard: its waits (a commit, a flush, a full queue) end when
 * the leadership does, or when the stall watch hands it over: a commit
 * that blocks on a cut Kafka retries for KAFKA_COMMIT_TIMEOUT_MS, and a
 * stalled leader would keep the lease that long.  Only a Kafka stall:
 * waiting on the producer, the relay reads no binlog, so the stream's
 * silence says nothing about MySQL then. */
static bool
sink_guard(void *ctx)
{
	return leading(ctx) && check_stall(ctx, true) == 0;
}

/* The elector's thread, or ours, at the moment the leadership ends: what
 * the producer still holds is dropped before a broker thread can send it. */
static void
on_leadership_end(void *ctx)
{
	struct tor_relay *r = ctx;

	pthread_mutex_lock(&r->sink_mu);
	if (r->sink != NULL && r->sink_live)
		tor_sink_purge_now(r->sink);
	pthread_mutex_unlock(&r->sink_mu);
}

static void
on_ack(void *ctx, uint64_t seq, int err, const char *errstr)
{
	struct tor_relay *r = ctx;

	if (err != 0) {
		/* The transaction stays unacknowledged: the checkpoint never
		 * passes it, and a restart publishes it again.  A producer gone
		 * fatal fails all it holds, in no set order: the broker's
		 * refusal of a message as too large is the one that says why. */
		if (!r->delivery_failed || err == TOR_SINK_ERR_TOO_LARGE) {
			snprintf(r->delivery_error, sizeof(r->delivery_error),
			    "%s", errstr);
			r->delivery_code = err;
		}
		r->delivery_failed = true;
		return;
	}
	/* A position record, or a report outliving its leadership session. */
	if (seq == 0 || r->progress == NULL)
		return;
	tor_stall_kafka_moved(&r->stall, tor_mono_ms());
	tor_progress_ack(r->progress, seq);
	if (r->txn_times != NULL) {
		const struct txn_time *t =
		    &r->txn_times[seq & (LATENCY_SLOTS - 1)];

		if (t->seq == seq && t->ts_ms != 0)
			tor_metrics_latency(&r->metrics,
			    tor_metrics_wall_ms() - t->ts_ms);
	}
}

/* Writes cp to Redis under this session's token.  A refusal means a
 * successor or an operator holds a newer token: this replica resigns. */
static int
write_checkpoint(struct tor_relay *r, struct tor_checkpoint *cp, tor_err *err)
{
	char text[sizeof(cp->pos.file) + 32];
	int rc;

	if (r->lost)
		return tor_err_set(err, "not leading any more");
	cp->epoch = r->epoch;
	rc = tor_checkpoint_store_fenced(r->redis, r->cfg, cp, err);
	/* A refusal is an answer: Redis is there. */
	set_redis_ok(r, rc >= 0);
	if (rc < 0)
		return -1;
	if (rc == TOR_CHECKPOINT_REFUSED) {
		/* A successor holds the lease, or an operator moved the
		 * checkpoint: this replica must not publish another message. */
		r->lost = true;
		tor_elector_resign(r->elector, r->leadership, "checkpoint write "
		    "refused: the lease or the checkpoint belongs to a newer "
		    "token");
		return tor_err_set(err, "checkpoint write refused (token %"
		    PRIu64 ")", r->epoch);
	}
	r->written_token = r->epoch;
	r->written_leadership = r->leadership;
	r->written_done = cp->done;
	r->written_pos = cp->pos;
	r->last_checkpoint_ms = tor_mono_ms();
	atomic_store(&r->metrics.checkpoint_wall_ms, tor_metrics_wall_ms());
	tor_position_format(&cp->pos, text, sizeof(text));
	log_debug("checkpoint", "checkpoint at %s gtid=%s", text, cp->pos.gtid);
	return 0;
}

/* Kafka's copy of the checkpoint, in idempotent mode: produced after the
 * acknowledgements that justify it, acked like a message.  A full queue
 * only postpones it to the next checkpoint. */
static void
copy_to_kafka(struct tor_relay *r, const struct tor_checkpoint *cp)
{
	char record[TOR_CHECKPOINT_RECORD];
	tor_err err;

	if (tor_checkpoint_record_format(r->cfg, cp, record,
	    sizeof(record)) < 0) {
		log_warn("kafka", "position record not produced: its mac could "
		    "not be computed");
		return;
	}
	if (tor_sink_produce_position(r->sink, record, &err) < 0)
		log_warn("kafka", "position record not produced: %s", err.msg);
}

/* MySQL's executed GTID set at cp's position, as get (a tor_progress
 * call) gives it, into cp->gtid_set: "" when none is known, or when it is
 * longer than a checkpoint holds (said once a session: the checkpoint then
 * resumes by file:pos on this server only). */
static void
checkpoint_gtid_set(struct tor_relay *r, struct tor_checkpoint *cp,
    int (*get)(const struct tor_progress *, char *, size_t))
{
	int n = get(r->progress, cp->gtid_set, sizeof(cp->gtid_set));

	if (n >= (int)sizeof(cp->gtid_set) && !r->set_too_long) {
		r->set_too_long = true;
		log_warn("relay", "MySQL's executed GTID set is %d characters, "
		    "longer than a checkpoint holds (%zu): checkpoints go on "
		    "without it, and resume by file:pos on server_id %" PRIu32
		    " only (another server halts)", n,
		    sizeof(cp->gtid_set) - 1, r->source_id);
	}
	if (n < 0 || n >= (int)sizeof(cp->gtid_set))
		cp->gtid_set[0] = '\0';
}

/* The idempotent checkpoint: what is acknowledged, and beyond the safe
 * position (held back by a waiting XA transaction) how far. */
static void
safe_checkpoint(struct tor_relay *r, struct tor_checkpoint *cp)
{
	memset(cp, 0, sizeof(*cp));
	cp->moved = r->start.moved;
	cp->server_id = r->source_id;
	tor_progress_safe(r->progress, &cp->pos);
	checkpoint_gtid_set(r, cp, tor_progress_safe_gtid_set);
	if (tor_progress_done(r->progress, &cp->done) &&
	    tor_position_compare(&cp->done, &cp->pos) == 0)
		memset(&cp->done, 0, sizeof(cp->done));
}

static void commit_checkpoint(struct tor_relay *r, struct tor_checkpoint *cp);
static int sink_failure(struct tor_relay *r, int rc);

static bool
same_position(const struct tor_position *a, const struct tor_position *b)
{
	return a->pos == b->pos && strcmp(a->file, b->file) == 0 &&
	    strcmp(a->gtid, b->gtid) == 0;
}

/* Transactional mode, no Kafka transaction open: everything read since the
 * last commit produced nothing, so the position read is as safe as the
 * commit's (transactions without outbox rows keep the checkpoint moving). */
static void
advance_committed(struct tor_relay *r)
{
	struct tor_checkpoint cp;

	commit_checkpoint(r, &cp);
	if (cp.rows == r->committed.rows &&
	    same_position(&cp.pos, &r->committed.pos) &&
	    same_position(&cp.done, &r->committed.done))
		return;
	r->committed = cp;
	r->committed_moved = true;
}

/* Writes the checkpoint when it moved and the interval has passed.  A
 * failed write is retried at the next tick; relaying goes on meanwhile. */
static void
checkpoint_tick(struct tor_relay *r)
{
	struct tor_checkpoint cp;
	struct tor_position ignored;
	tor_err err;

	if (tor_mono_ms() - r->last_checkpoint_ms < r->cfg->checkpoint.interval_ms)
		return;
	if (r->txn_mode) {
		/* Acknowledged is not committed: only a Kafka commit moves it,
		 * or, while no Kafka transaction is open, the transactions read
		 * since the last one (they produced nothing). */
		(void)tor_progress_take_safe(r->progress, &ignored);
		if (!r->ktxn_open)
			advance_committed(r);
		cp = r->committed;
		if (r->committed_moved)
			r->checkpoint_dirty = true;
		r->committed_moved = false;
	} else {
		if (tor_progress_take_safe(r->progress, &ignored))
			r->checkpoint_dirty = true;
		/* Held by a prepared XA transaction, the position stays; how
		 * far beyond it everything is published still moves, and a
		 * successor skips that much. */
		safe_checkpoint(r, &cp);
		if (!same_position(&cp.done, &r->written_done))
			r->checkpoint_dirty = true;
	}
	if (!r->checkpoint_dirty)
		return;
	if (write_checkpoint(r, &cp, &err) < 0) {
		log_warn("checkpoint", "checkpoint not written: %s", err.msg);
		r->last_checkpoint_ms = tor_mono_ms();
		return;
	}
	if (!r->txn_mode)
		copy_to_kafka(r, &cp);
	r->checkpoint_dirty = false;
}

static bool
listed(const char (*list)[TOR_REFUSED_POS], size_t n, const char *pos)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], pos) == 0)
			return true;
	return false;
}

/* A tor.pos longer than a slot is cut: it matches nothing then. */
static void
list_add(char (*list)[TOR_REFUSED_POS], size_t *n, const char *pos)
{
	size_t len = strnlen(pos, TOR_REFUSED_POS - 1);

	memcpy(list[*n], pos, len);
	list[(*n)++][len] = '\0';
}

static bool
refused_as_too_large(const struct tor_relay *r, const char *pos)
{
	return listed(r->too_large, r->n_too_large, pos) ||
	    listed(r->group_refused, r->n_group_refused, pos);
}

/* The rows the broker refused as too large: remembered, so that when they
 * come again they follow outbox.unrouted like a client-side oversize, here
 * and (through Redis) at the next leader, whichever replica it is. */
static int
note_too_large(struct tor_relay *r, tor_err *err)
{
	struct tor_sink_rejection rej[TOR_SINK_MAX_REJECTED];
	size_t n = tor_sink_rejected(r->sink, rej, TOR_SINK_MAX_REJECTED);
	tor_err e;

	for (size_t i = 0; i < n; i++) {
		log_warn("kafka", "the broker refused the message of row %s "
		    "(%zu bytes) as too large; it follows outbox.unrouted when "
		    "it comes again (set message.max.bytes in kafka.properties "
		    "to the broker's limit to catch such rows before producing)",
		    rej[i].pos, rej[i].bytes);
		if (listed(r->too_large, r->n_too_large, rej[i].pos))
			continue;
		if (r->n_too_large == TOO_LARGE_MAX)
			return tor_err_set(err, "kafka: the broker refused more "
			    "than %d rows as too large; last row %s", TOO_LARGE_MAX,
			    rej[i].pos);
		list_add(r->too_large, &r->n_too_large, rej[i].pos);
		if (tor_checkpoint_refused_add(r->redis, r->cfg, rej[i].pos,
		    &e) < 0)
			log_warn("redis", "%s; the next leader, if another "
			    "replica, offers row %s to the broker again", e.msg,
			    rej[i].pos);
	}
	return 0;
}

static void
learn_refused(void *ctx, const char *pos)
{
	struct tor_relay *r = ctx;

	if (listed(r->too_large, r->n_too_large, pos))
		return;
	if (r->n_group_refused == TOO_LARGE_MAX)
		r->group_refused_over++;
	else
		list_add(r->group_refused, &r->n_group_refused, pos);
}

/* Before the first message: the rows the group's replicas saw the broker
 * refuse as too large.  Advice: when Redis cannot say, such a row is
 * offered to the broker again, refused, and learned (a session restart). */
static void
load_refused(struct tor_relay *r)
{
	size_t ignored;
	tor_err err;

	r->n_group_refused = r->group_refused_over = 0;
	if (tor_checkpoint_refused_load(r->redis, r->cfg, learn_refused, r,
	    &ignored, &err) < 0) {
		log_warn("redis", "%s; a row the broker refused as too large "
		    "under another replica is offered to it again", err.msg);
		return;
	}
	if (ignored > 0)
		log_warn("relay", "%zu rows listed as refused by the broker do "
		    "not verify with the checkpoint key: ignored (offered to "
		    "the broker if they come)", ignored);
	if (r->group_refused_over > 0)
		log_warn("relay", "%zu rows listed as refused by the broker past "
		    "the first %d: offered to the broker again if they come",
		    r->group_refused_over, TOO_LARGE_MAX);
}

/* Says in the metrics (each second) and the log (past XA_HELD_WARN_MS,
 * then every XA_HELD_REPEAT_MS) how long the oldest prepared XA
 * transaction has held the checkpoint.  It is not passed: its rows are in
 * the binlog only at its prepare, and a restart that began after it would
 * lose them when it commits. */
static void
watch_prepared(struct tor_relay *r)
{
	struct tor_reader_prepared xa;
	int64_t now = tor_mono_ms(), held;

	if (r->reader == NULL || now - r->xa_watched_ms < 1000)
		return;
	r->xa_watched_ms = now;
	tor_reader_prepared(r->reader, &xa);
	atomic_store(&r->metrics.xa_prepared, xa.count);
	atomic_store(&r->metrics.xa_prepared_since_ms, xa.since_ms);
	if (xa.count == 0) {
		if (r->xa_warned_ms != 0)
			log_info("relay", "XA transaction %s ended: the "
			    "checkpoint moves on", r->xa_warned);
		r->xa_warned_ms = 0;
		return;
	}
	held = tor_metrics_wall_ms() - xa.since_ms;
	if (held < XA_HELD_WARN_MS || (r->xa_warned_ms != 0 &&
	    strcmp(r->xa_warned, xa.xid) == 0 &&
	    now - r->xa_warned_ms < XA_HELD_REPEAT_MS))
		return;
	if (r->xa_warned_ms != 0 && strcmp(r->xa_warned, xa.xid) != 0)
		log_info("relay", "XA transaction %s ended", r->xa_warned);
	log_warn("relay", "XA transaction %s, prepared at %s %" PRId64 " s "
	    "ago, has not committed: the checkpoint stays before it until its "
	    "XA COMMIT or XA ROLLBACK (%zu prepared transaction%s with outbox "
	    "rows wait); rows after it are published meanwhile", xa.xid,
	    xa.at, held / 1000, xa.count, xa.count == 1 ? "" : "s");
	snprintf(r->xa_warned, sizeof(r->xa_warned), "%s", xa.xid);
	r->xa_warned_ms = now;
}

/* Every mysql.retention_check_ms, and at once after the stream opens:
 * how much binlog the server still holds behind the checkpoint, in the
 * metrics, and a warning (once while it holds) under the configured
 * thresholds.  Off the hot path: a few queries, and a short dump for each
 * binlog file first seen. */
static void
watch_retention(struct tor_relay *r)
{
	const struct tor_config *cfg = r->cfg;
	struct tor_retention_view v;
	char at[300];
	tor_err err;
	int due;

	if (cfg->mysql.retention_check_ms == 0 ||
	    tor_mono_ms() < r->retention_due_ms)
		return;
	r->retention_due_ms = tor_mono_ms() + cfg->mysql.retention_check_ms;
	if (tor_retention_check(&r->retention, r->binlog, &r->written_pos, &v,
	    &err) < 0) {
		/* Once a leadership: the gauges say NaN meanwhile. */
		if (!r->retention.failed_once)
			log_warn("binlog", "binlog retention unknown: %s",
			    err.msg);
		r->retention.failed_once = true;
		return;
	}
	atomic_store(&r->metrics.retention_bytes, v.headroom_bytes);
	atomic_store(&r->metrics.retention_s, v.headroom_s);
	atomic_store(&r->metrics.retention_expire_s, v.expire_s);
	atomic_store(&r->metrics.retention_purge_s, v.purge_in_s);
	due = tor_retention_due_warnings(&r->retention, &v,
	    cfg->mysql.retention_warn_bytes, cfg->mysql.retention_warn_ms);
	if (due == 0)
		return;
	tor_position_format(&r->written_pos, at, sizeof(at));
	if (due & TOR_RETENTION_WARN_BYTES)
		log_warn("binlog", "only %" PRId64 " bytes of binlog are left "
		    "on the server behind the checkpoint %s (mysql."
		    "retention_warn_bytes = %" PRId64 "): a purge of the oldest "
		    "binlog files would leave a restart nothing to resume from",
		    v.headroom_bytes, at, cfg->mysql.retention_warn_bytes);
	if (due & TOR_RETENTION_WARN_PURGE)
		log_warn("binlog", "the server's binlog expiry (%" PRId64 " s) "
		    "may purge the checkpoint's file %s in %" PRId64 " s (mysql."
		    "retention_warn_ms = %d): a restart after that halts",
		    v.expire_s, r->written_pos.file, v.purge_in_s,
		    cfg->mysql.retention_warn_ms);
}

/* Serves acknowledgements, fails on a lost message, ticks the checkpoint
 * and watches for a stall.  A message the broker refused as too large ends
 * the session with a restart (the producer is fatal by then: gapless). */
static int
serve(struct tor_relay *r, int timeout_ms, tor_err *err)
{
	tor_err fatal;
	int rc;

	beat(r);
	rc = tor_sink_poll(r->sink, timeout_ms, &fatal);
	/* A fatal producer (gapless) fails everything it holds; the report
	 * that says why, e.g. a message the broker refused as too large, may
	 * come a moment after the error: collect the reports first. */
	if (rc < 0)
		for (int64_t until = tor_mono_ms() + FATAL_REPORTS_MS;
		    rc < 0 && !(r->delivery_failed &&
		    r->delivery_code == TOR_SINK_ERR_TOO_LARGE) && leading(r) &&
		    tor_sink_in_flight(r->sink) > 0 && tor_mono_ms() < until;)
			rc = tor_sink_poll(r->sink, 10, &fatal);
	atomic_store_explicit(&r->metrics.kafka_queue,
	    tor_sink_in_flight(r->sink), memory_order_relaxed);
	atomic_store_explicit(&r->metrics.kafka_down_since_ms,
	    tor_sink_down_since(r->sink), memory_order_relaxed);
	/* The purge at the leadership's end fails what it dropped: that is
	 * the session ending, and its report may come before the relay has
	 * seen the end itself. */
	if (r->delivery_failed && !leading(r))
		return RUN_LOST;
	/* Transactional mode: another producer's init_transactions took the
	 * transactional.id (a replica that woke after this one took over, or
	 * an operator's tool): the producer is fatal and what it held is
	 * failed.  This leadership gives up, as when a transactional call
	 * says so; the process does not halt. */
	if ((r->delivery_failed || rc < 0) && r->txn_mode &&
	    tor_sink_fenced(r->sink))
		return sink_failure(r, TOR_SINK_FENCED);
	if (r->delivery_failed &&
	    r->delivery_code == TOR_SINK_ERR_TOO_LARGE) {
		if (note_too_large(r, err) < 0)
			return -1;
		tor_err_set(err, "kafka: the broker refused a message as too "
		    "large");
		return RUN_RESTART;
	}
	if ((r->delivery_failed || rc < 0) &&
	    tor_sink_out_of_step(r->sink, r->delivery_failed ?
	    r->delivery_code : 0)) {
		log_warn("kafka", "%s: the producer lost step with the broker; "
		    "a new one continues from the checkpoint", rc < 0 ?
		    fatal.msg : r->delivery_error);
		tor_err_set(err, "kafka: the producer lost step with the broker");
		return RUN_RESTART;
	}
	/* Transactional mode: a message of the open transaction that was not
	 * delivered (the transaction failed, and librdkafka purged what it
	 * held: a coordinator that did not know a partition yet) leaves that
	 * transaction to abort.  Nothing of it is visible: the session starts
	 * over from the last commit, under the same token. */
	if (r->delivery_failed && r->txn_mode) {
		log_warn("kafka", "a message of the open Kafka transaction was "
		    "not delivered (%s): the transaction is aborted; the "
		    "session starts over from the last commit",
		    r->delivery_error);
		abort_open_txn(r, 2000);
		tor_err_set(err, "kafka: a message of the open transaction was "
		    "not delivered: %s", r->delivery_error);
		return RUN_RESTART;
	}
	if (r->delivery_failed && tor_sink_partition_lost(r->delivery_code)) {
		log_warn("kafka", "a message was not delivered (%s): the "
		    "producer's metadata lost its partition for a moment; a new "
		    "producer continues from the checkpoint", r->delivery_error);
		tor_err_set(err, "kafka: a partition left the producer's "
		    "metadata");
		return RUN_RESTART;
	}
	if (r->delivery_failed)
		return tor_err_set(err, "kafka: a message was not delivered: "
		    "%s (the checkpoint stays before it; it is published again "
		    "after a restart)", r->delivery_error);
	if (rc < 0) {
		if (!leading(r))
			return RUN_LOST;        /* see produce() */
		*err = fatal;
		return -1;
	}
	if (r->streaming) {
		checkpoint_tick(r);
		watch_prepared(r);
		watch_retention(r);
	}
	return check_stall(r, false);
}

/* A standby's health report period: four per stall, no faster than the
 * lease is renewed.  The key lives three periods, so a standby that died
 * drops out of the count before a stall could pick it. */
static int
health_period(const struct tor_config *cfg)
{
	int p = cfg->ha.stall_ms / 4;

	return p > cfg->ha.renew_ms ? p : cfg->ha.renew_ms;
}

/* One Redis command of at most five C-string arguments on the relay's
 * connection. */
static redisReply *
command(struct tor_relay *r, int argc, const char **argv, tor_err *err)
{
	size_t len[5];

	for (int i = 0; i < argc; i++)
		len[i] = strlen(argv[i]);
	return tor_redis_command(r->redis, argc, argv, len, err);
}

static void
health_key(const struct tor_config *cfg, const char *instance, char *buf,
    size_t cap)
{
	char name[300];

	snprintf(name, sizeof(name), "health:%s", instance);
	tor_redis_key(cfg, name, buf, cap);
}

/*
 * The first report among the other replicas' that lets its standby take a
 * stall of kind over (into *h, its instance into who); false when none
 * does, or Redis cannot say.  Members whose key expired are dropped from
 * the set.  A handful of replicas: one GET each.
 */
static bool
healthy_standby(struct tor_relay *r, enum tor_stall_kind kind,
    struct tor_health *h, char *who, size_t cap)
{
	const char *argv[3];
	char set[512], key[1024];
	redisReply *members, *reply;
	bool found = false;
	tor_err err;

	tor_redis_key(r->cfg, "standbys", set, sizeof(set));
	argv[0] = "SMEMBERS";
	argv[1] = set;
	if ((members = command(r, 2, argv, &err)) == NULL) {
		log_warn("redis", "cannot read the standbys' health: %s",
		    err.msg);
		return false;
	}
	for (size_t i = 0; members->type == REDIS_REPLY_ARRAY &&
	    i < members->elements && !found; i++) {
		const char *name = members->element[i]->str;

		if (members->element[i]->type != REDIS_REPLY_STRING ||
		    strcmp(name, r->cfg->instance) == 0)
			continue;
		health_key(r->cfg, name, key, sizeof(key));
		argv[0] = "GET";
		argv[1] = key;
		if ((reply = command(r, 2, argv, &err)) == NULL)
			break;
		if (reply->type == REDIS_REPLY_NIL) {
			const char *rem[] = { "SREM", set, name };

			freeReplyObject(reply);
			if ((reply = command(r, 3, rem, &err)) == NULL)
				break;
		} else if (reply->type == REDIS_REPLY_STRING &&
		    tor_health_parse(reply->str, h) == 0 &&
		    tor_health_fits(h, kind, r->reader != NULL ?
		    tor_reader_resume(r->reader) : NULL)) {
			snprintf(who, cap, "%s", name);
			found = true;
		}
		freeReplyObject(reply);
	}
	freeReplyObject(members);
	return found;
}

/*
 * The leader's stall check, twice a second at most: a leadership that has
 * had work and no progress for ha.stall_ms gives the lease to a standby
 * that reports itself healthy (RUN_LOST), and keeps it when none does
 * (said once per stall).  Work: messages in flight or in an open Kafka
 * transaction, a session that cannot start while no broker answers, or
 * a Kafka step retried (a session beginning lists its topics: its
 * successor's Kafka may be cut).  kafka_only: a MySQL stall is not judged
 * (nor the check's turn used); nor is it before the session has a reader
 * (no position to compare a standby's binlog with).
 */
static int
check_stall(struct tor_relay *r, bool kafka_only)
{
	int64_t now = tor_mono_ms();
	enum tor_stall_kind kind;
	struct tor_health h;
	char who[256], head[300] = "-";
	bool waiting;

	if (r->cfg->ha.stall_ms == 0 || now < r->next_stall_check_ms ||
	    r->lost)
		return 0;
	kafka_only = kafka_only || r->reader == NULL;
	waiting = (r->sink != NULL && tor_sink_in_flight(r->sink) > 0) ||
	    r->ktxn_open || r->kafka_retrying || (!r->streaming &&
	    r->sink != NULL && tor_sink_down_since(r->sink) != 0);
	if ((kind = tor_stall_check(&r->stall, now, waiting)) ==
	    TOR_STALL_MYSQL && kafka_only)
		return 0;
	r->next_stall_check_ms = now + 500;
	if (kind == TOR_STALL_NONE) {
		r->stall_kept_logged = false;
		return 0;
	}
	if (!healthy_standby(r, kind, &h, who, sizeof(who))) {
		if (!r->stall_kept_logged)
			log_warn("relay", "no progress for %d ms or more (%s), "
			    "and no standby reports Kafka and MySQL reachable%s: "
			    "keeping the lease", r->cfg->ha.stall_ms,
			    tor_stall_reason(kind), kind == TOR_STALL_MYSQL ?
			    " with the binlog past this leader's position" : "");
		r->stall_kept_logged = true;
		return 0;
	}
	if (h.head.file[0] != '\0')
		tor_position_format(&h.head, head, sizeof(head));
	log_warn("relay", "yielding the lease after %d ms or more without "
	    "progress (%s): standby %s reports Kafka and MySQL reachable "
	    "(binlog at %s); this replica competes again in %d ms",
	    r->cfg->ha.stall_ms, tor_stall_reason(kind), who, head,
	    2 * r->cfg->ha.stall_ms);
	atomic_fetch_add(&r->metrics.yields[kind], 1);
	r->lost = true;
	tor_elector_hold_off(r->elector, 2 * r->cfg->ha.stall_ms);
	tor_elector_resign(r->elector, r->leadership, tor_stall_reason(kind));
	return RUN_LOST;
}

/*
 * A standby's health report, every health_period: whether a broker answers
 * a metadata request and whether MySQL answers SHOW MASTER STATUS (and
 * where its binlog ends), as P:{G}:health:<instance> with a TTL, and its
 * name in P:{G}:standbys.  Advice for a stalled leader, fenced by nothing.
 * A change of what it reaches is logged.
 */
static void
report_health(struct tor_relay *r)
{
	int period = health_period(r->cfg), now_ok;
	struct tor_health h = { 0 };
	struct tor_sink *probe;
	char key[1024], set[512], text[400], ttl[24];
	redisReply *reply;
	tor_err err;

	if (r->cfg->ha.stall_ms == 0 || tor_mono_ms() < r->next_health_ms)
		return;
	r->next_health_ms = tor_mono_ms() + period;
	probe = r->sink != NULL ? r->sink : r->kafka_probe;
	h.kafka = probe != NULL && tor_sink_reachable(probe,
	    period < 1000 ? period : 1000);
	if (r->probe == NULL)
		r->probe = tor_binlog_new(r->cfg);
	h.mysql = r->probe != NULL && tor_binlog_resolve_start(r->probe, "end",
	    &h.head, NULL, &err) == 0;
	h.at_ms = tor_metrics_wall_ms();
	now_ok = h.kafka | h.mysql << 1;
	if (now_ok != r->health_logged)
		log_info("relay", "standby health: Kafka %s, MySQL %s",
		    h.kafka ? "reachable" : "not reachable",
		    h.mysql ? "reachable" : "not reachable");
	r->health_logged = now_ok;
	tor_health_format(&h, text, sizeof(text));
	health_key(r->cfg, r->cfg->instance, key, sizeof(key));
	tor_redis_key(r->cfg, "standbys", set, sizeof(set));
	snprintf(ttl, sizeof(ttl), "%d", 3 * period);
	{
		const char *argv[] = { "SET", key, text, "PX", ttl };

		if ((reply = command(r, 5, argv, &err)) == NULL)
			return;
		freeReplyObject(reply);
	}
	{
		const char *argv[] = { "SADD", set, r->cfg->instance };

		if ((reply = command(r, 3, argv, &err)) != NULL)
			freeReplyObject(reply);
	}
}

/* What a transactional call's failure means for the session. */
static int
sink_failure(struct tor_relay *r, int rc)
{
	if (rc == TOR_SINK_FENCED) {
		r->lost = true;
		/* The broker's abort of a transaction that outlived
		 * transaction.timeout.ms bumps the epoch too: librdkafka
		 * reports it the same way. */
		tor_elector_resign(r->elector, r->leadership, "Kafka fenced this "
		    "producer: another replica holds the transactional.id, or "
		    "the broker aborted a transaction older than "
		    "transaction.timeout.ms");
		return RUN_LOST;
	}
	if (rc == TOR_SINK_LOST)
		return RUN_LOST;
	return rc == TOR_SINK_ABORT ? RUN_RESTART : -1;
}

static void
abort_open_txn(struct tor_relay *r, int timeout_ms)
{
	tor_err tmp;

	if (!r->ktxn_open || tor_sink_fenced(r->sink))
		return;
	if (tor_sink_txn_abort(r->sink, timeout_ms, &tmp) != 0)
		log_warn("kafka", "%s", tmp.msg);
	r->ktxn_open = false;
}

/* What a Kafka commit makes safe: every transaction read, up to one that
 * holds; and beyond it what is published too (the groups read after a
 * waiting XA prepare, and the rows done of a big source transaction being
 * split). */
static void
commit_checkpoint(struct tor_relay *r, struct tor_checkpoint *cp)
{
	const struct tor_position *read = tor_reader_resume(r->reader);

	memset(cp, 0, sizeof(*cp));
	cp->epoch = r->epoch;
	cp->moved = r->start.moved;
	cp->server_id = r->source_id;
	tor_progress_read(r->progress, &cp->pos);
	checkpoint_gtid_set(r, cp, tor_progress_read_gtid_set);
	if (tor_reader_in_txn(r->reader))
		cp->rows = tor_reader_txn_rows(r->reader);
	if (cp->rows > 0 || tor_position_compare(read, &cp->pos) != 0) {
		snprintf(cp->done.file, sizeof(cp->done.file), "%s", read->file);
		cp->done.pos = read->pos;
	}
}

/* The test build's fault hook (TOR_TEST_CRASH_AFTER_KAFKA_COMMIT=n): killed
 * after the n-th Kafka commit of rows, before the Redis checkpoint. */
static void
crash_hook(struct tor_relay *r)
{
#ifdef TOR_TEST_HOOKS
	if (r->ktxn_messages > 0)
		r->commits++;
	if (r->crash_after_commits != 0 &&
	    r->commits == r->crash_after_commits && r->ktxn_messages > 0) {
		log_warn("relay", "test fault hook: crashing after Kafka commit "
		    "%lu, before the Redis checkpoint", r->commits);
		raise(SIGKILL);
	}
#else
	(void)r;
#endif
}

/*
 * Commits the open Kafka transaction with the position record that says
 * what it makes safe.  The transaction counts as open until the commit or
 * an abort ended it: never leave the session with one open.
 */
static int
kafka_commit(struct tor_relay *r, tor_err *err)
{
	char record[TOR_CHECKPOINT_RECORD], text[300];
	struct tor_checkpoint cp;
	int64_t t0 = tor_mono_ms();
	int rc;

	commit_checkpoint(r, &cp);
	tor_checkpoint_record_format(r->cfg, &cp, record, sizeof(record));
	rc = tor_sink_txn_commit(r->sink, record, KAFKA_COMMIT_TIMEOUT_MS, err);
	tor_position_format(&cp.pos, text, sizeof(text));
	log_debug("kafka", "commit of %" PRIu64 " messages up to %s (rows %"
	    PRIu32 "): %d in %" PRId64 " ms (open %" PRId64 " ms)",
	    r->ktxn_messages, text, cp.rows, rc, tor_mono_ms() - t0,
	    t0 - r->ktxn_started_ms);
	if (rc != 0) {
		log_warn("kafka", "%s", err->msg);
		if (rc != TOR_SINK_FENCED)
			abort_open_txn(r, rc == TOR_SINK_LOST ? 1000 :
			    KAFKA_COMMIT_TIMEOUT_MS);
		r->ktxn_open = false;
		return sink_failure(r, rc);
	}
	r->ktxn_open = false;
	tor_stall_kafka_moved(&r->stall, tor_mono_ms());
	r->committed = cp;
	r->committed_moved = true;
	crash_hook(r);
	return 0;
}

/* Commits when the open Kafka transaction is big or old enough, or (idle)
 * whenever it holds anything; inside a source transaction only a part that
 * outgrew one Kafka transaction (its position record names the rows done). */
static int
maybe_commit(struct tor_relay *r, bool idle, tor_err *err)
{
	int64_t age;

	if (!r->txn_mode || !r->ktxn_open)
		return 0;
	age = tor_mono_ms() - r->ktxn_started_ms;
	if (tor_reader_in_txn(r->reader)) {
		/* Past the boundary rule's size by as much again: this source
		 * transaction alone is that big. */
		if (r->ktxn_messages < 2 * KTXN_MAX_MESSAGES &&
		    age < r->split_ms)
			return 0;
		log_info("kafka", "a source transaction outgrew one Kafka "
		    "transaction (%" PRIu64 " messages, %" PRId64 " ms): "
		    "committing it in parts, %" PRIu32 " rows so far",
		    r->ktxn_messages, age, tor_reader_txn_rows(r->reader));
	} else if (!idle && r->ktxn_messages < KTXN_MAX_MESSAGES &&
	    age < KTXN_MAX_MS) {
		return 0;
	}
	return kafka_commit(r, err);
}

static int
begin_ktxn(struct tor_relay *r, tor_err *err)
{
	int rc;

	if ((rc = tor_sink_txn_begin(r->sink, err)) != 0)
		return sink_failure(r, rc);
	r->ktxn_open = true;
	r->ktxn_messages = 0;
	r->ktxn_started_ms = tor_mono_ms();
	return 0;
}

/* A message that must not be produced as it is (too large for the client,
 * or refused by the broker before): outbox.unrouted decides.  Returns 0
 * when skipped, 1 when msg now goes to the dead-letter topic, or -1. */
static int
oversized(struct tor_relay *r, struct tor_message *msg,
    const struct tor_row_origin *origin, tor_err *err)
{
	int rc = tor_outbox_oversized(r->outbox, msg, origin, err);

	if (rc < 0)
		return -1;
	if (rc == TOR_OUTBOX_SKIPPED) {
		log_warn("outbox", "skipped a message too large for Kafka (row "
		    "%s, %zu bytes)", origin->pos, msg->value_len);
		r->rows_skipped++;
		count_skip(r, TOR_SKIP_OVERSIZED);
		return 0;
	}
	return 1;
}

/* How long a takeover may spend reading one topic's tails. */
#define DEDUP_READ_MS 5000

static int retry_later(struct tor_relay *r, const char *what, int *backoff,
    tor_err *err);

/* Waits until topic's partition count is known (looked up at each try):
 * no row goes to a topic without it, since a row placed without it could
 * not be found again at a takeover.  0, or as retry_later. */
static int
await_partitions(struct tor_relay *r, const char *topic, tor_err *err)
{
	int backoff = RECONNECT_MIN_MS, rc;

	while (tor_sink_partitions(r->sink, topic, err) < 0)
		if ((rc = retry_later(r, "kafka", &backoff, err)) != 0)
			return rc;
	return 0;
}

/* Reads what topic's partitions hold of this group (de-duplication at
 * takeover), once its partition count is known.  A topic whose tails
 * cannot be read is learned as unknown: its rows are published,
 * at-least-once.  0, or as retry_later. */
static int
learn_topic(struct tor_relay *r, const char *topic, tor_err *err)
{
	struct tor_partition_tail *tails;
	char placement[48];
	int n, found = 0, unknown = 0, moved = 0, rc;
	int64_t t0 = tor_mono_ms();
	tor_err rerr;

	if ((rc = await_partitions(r, topic, err)) != 0)
		return rc;
	if ((n = tor_sink_partitions(r->sink, topic, err)) < 0 ||
	    tor_sink_placement(r->sink, topic, placement, sizeof(placement),
	    err) < 0)
		return -1;
	if ((tails = calloc((size_t)n, sizeof(*tails))) == NULL)
		return tor_err_set(err, "out of memory");
	if (tor_position_reader_tails(r->positions, topic, n,
	    r->start.moved, tails, DEDUP_READ_MS, &rerr) < 0) {
		log_warn("relay", "%s: %s; its rows are published again from "
		    "the checkpoint (at-least-once)", topic, rerr.msg);
		memset(tails, 0, (size_t)n * sizeof(*tails));
	}
	for (int i = 0; i < n; i++) {
		found += tails[i].known && tails[i].found;
		unknown += !tails[i].known;
		moved += tails[i].known && tails[i].found &&
		    strcmp(tails[i].placement, placement) != 0;
	}
	log_info("relay", "de-duplication: %s: read %d partitions in %" PRId64
	    " ms: %d hold rows of this group%s", topic, n, tor_mono_ms() - t0,
	    found, unknown > 0 ? ", some could not be read to the group's "
	    "newest message (at-least-once there)" : "");
	if (moved > 0)
		log_warn("relay", "de-duplication: %s: the newest message of "
		    "%d partitions was placed otherwise than %s (partitions "
		    "added? another partitioner?): rows that placement put in "
		    "another partition are published again there "
		    "(at-least-once)", topic, moved,
		    placement);
	rc = tor_dedup_learn(r->dedup, topic, n, tails, placement);
	free(tails);
	return rc < 0 ? tor_err_set(err, "out of memory") : 0;
}

/* The takeover's one line about it: once the replay has passed every
 * partition's position, or when the session ends before. */
static void
report_dedup(struct tor_relay *r)
{
	if (r->dedup == NULL || r->dedup_reported)
		return;
	r->dedup_reported = true;
	log_info("relay", "de-duplication: %" PRIu64 " replayed rows not "
	    "published again (their partitions held them)%s; %" PRIu64
	    " published without knowing (at-least-once)", r->dedup_skipped,
	    tor_dedup_done(r->dedup) ? "" : " before the session ended",
	    r->dedup_unknown);
}

/* Whether msg's row is in its partition already (a replay after a
 * takeover): *skip, and then it is not produced and counts as done.  Only
 * when the row surely goes where msg says (sure: not too close to
 * message.max.bytes to tell whether it goes to the dead-letter topic);
 * else it is published and counted as unknown.  0, or as learn_topic. */
static int
published_already(struct tor_relay *r, const struct tor_message *msg,
    const struct tor_row_origin *origin, bool sure, bool *skip, tor_err *err)
{
	const char *then;
	bool moved = false;
	int v, rc, p;

	*skip = false;
	if (r->dedup == NULL)
		return 0;
	if (!tor_dedup_knows(r->dedup, msg->topic)) {
		/* a topic_template topic */
		if ((rc = learn_topic(r, msg->topic, err)) != 0)
			return rc;
	} else if (tor_dedup_done(r->dedup)) {
		/* Every partition is passed, and no topic comes later: the
		 * rest of the leadership publishes without looking. */
		if (r->cfg->outbox.topic_template[0] == '\0') {
			report_dedup(r);
			tor_dedup_free(r->dedup);
			r->dedup = NULL;
		}
		return 0;
	}
	/* A row placed by its key (or tor.pos) went to the same partition
	 * before only if the placement then put it here too. */
	p = tor_sink_partition(r->sink, msg);
	if ((!msg->partition_given || msg->partition_null) &&
	    (then = tor_dedup_placed_otherwise(r->dedup, msg->topic,
	    p)) != NULL)
		moved = tor_sink_partition_as(r->sink, msg, then) != p;
	v = tor_dedup_check(r->dedup, msg->topic, p, origin->pos, moved);
	if (tor_dedup_done(r->dedup))
		report_dedup(r);
	if (v == TOR_DEDUP_SKIP && !sure)
		v = TOR_DEDUP_UNKNOWN;
	if (v == TOR_DEDUP_SKIP) {
		r->dedup_skipped++;
		atomic_fetch_add_explicit(&r->metrics.deduplicated, 1,
		    memory_order_relaxed);
		*skip = true;
		return 0;
	}
	if (v == TOR_DEDUP_UNKNOWN) {
		r->dedup_unknown++;
		atomic_fetch_add_explicit(&r->metrics.dedup_unknown, 1,
		    memory_order_relaxed);
	}
	return 0;
}

/* How often at most a line says that rows of one kind were skipped. */
#define SKIP_LOG_MS 10000

/* Counts one skipped row; returns how many to report now (the first at
 * once, then those of each SKIP_LOG_MS since), or 0: a burst of them cannot
 * flood the log, and tor_events_skipped_total counts every one. */
static uint64_t
skip_log_due(struct skip_log *l)
{
	int64_t now = tor_mono_ms();
	uint64_t n;

	l->unlogged++;
	if (l->logged_ms != 0 && now - l->logged_ms < SKIP_LOG_MS)
		return 0;
	n = l->unlogged;
	l->unlogged = 0;
	l->logged_ms = now;
	return n;
}

/* A row whose columns.partition is NULL or not a partition of its topic:
 * outbox.unrouted decides.  Returns 1 to produce msg as it is (possibly to
 * the dead-letter topic now), 0 when skipped, or -1. */
static int
check_partition(struct tor_relay *r, struct tor_message *msg,
    const struct tor_row_origin *origin, bool *diverted, tor_err *err)
{
	int n = tor_sink_partitions(r->sink, msg->topic, err), rc;
	char why[320];

	if (n < 0)
		return -1;
	if (!msg->partition_null && msg->partition >= 0 &&
	    msg->partition < n)
		return 1;
	if (msg->partition_null)
		snprintf(why, sizeof(why), "partition column is NULL (topic "
		    "%s)", msg->topic);
	else
		snprintf(why, sizeof(why), "partition %" PRId64 " is out of "
		    "range: topic %s has %d", msg->partition, msg->topic, n);
	*diverted = true;
	if ((rc = tor_outbox_unroutable(r->outbox, msg, why, origin, err)) < 0)
		return -1;
	if (rc == TOR_OUTBOX_SKIPPED) {
		uint64_t n = skip_log_due(&r->partition_log);

		if (n > 0)
			log_warn("outbox", "skipped %" PRIu64 " row%s naming a "
			    "partition its topic lacks, the last: %s (row %s)",
			    n, n == 1 ? "" : "s", why, origin->pos);
		r->rows_skipped++;
		count_skip(r, TOR_SKIP_UNROUTED);
		return 0;
	}
	return 1;
}

/*
 * With ha.fast_failover a leader hands messages to the producer only while
 * it hears Redis on the lease's connection (tor_elector_heard): a leader
 * whose connection Redis closed without its knowing may already have a
 * successor.  It pauses here, still leading and serving acknowledgements,
 * until Redis answers again, or the leadership ends (the elector steps
 * down when that connection is found gone, or at the deadline).
 */
static int
await_heard(struct tor_relay *r, tor_err *err)
{
	int64_t t0 = 0;
	int rc;

	while (!tor_elector_heard(r->elector)) {
		if (!leading(r))
			return RUN_LOST;
		if (t0 == 0)
			t0 = tor_mono_ms();
		if (stop_overdue(r))
			return tor_err_set(err, "stopping: Redis did not answer "
			    "within %d ms", STOP_GRACE_MS);
		if ((rc = serve(r, 2, err)) != 0)
			return rc;
	}
	if (t0 != 0 && tor_mono_ms() - t0 >= TOR_LEASE_TAKEOVER_GRACE_MS)
		log_info("relay", "paused %" PRId64 " ms: Redis did not answer "
		    "on the lease's connection", tor_mono_ms() - t0);
	return 0;
}

/* Queues one message of transaction seq to msg->topic, waiting while the
 * producer's queue is full or the topic's partition count is unknown.
 * Oversized messages and rows naming a partition the topic lacks follow
 * outbox.unrouted (*diverted then).  Where the row goes is settled before
 * it is compared with what a partition holds (de-duplication): a row too
 * large went to the dead-letter topic before, not to its route. */
static int
produce_copy(struct tor_relay *r, struct tor_message *msg,
    const struct tor_row_origin *origin, uint64_t seq, bool *diverted,
    tor_err *err)
{
	int backoff = RECONNECT_MIN_MS, fits, rc;
	bool skip;

	if ((rc = await_partitions(r, msg->topic, err)) != 0)
		return rc;
	if (msg->partition_given &&
	    ((rc = check_partition(r, msg, origin, diverted, err)) <= 0 ||
	    (rc = await_partitions(r, msg->topic, err)) != 0))
		return rc;
	fits = tor_sink_fits(r->sink, msg);
	if (fits == 0 || refused_as_too_large(r, origin->pos)) {
		*diverted = true;
		if ((rc = oversized(r, msg, origin, err)) <= 0 ||
		    (rc = await_partitions(r, msg->topic, err)) != 0)
			return rc;
		fits = tor_sink_fits(r->sink, msg);
	}
	if ((rc = published_already(r, msg, origin, fits > 0, &skip,
	    err)) != 0 || skip)
		return rc;
	for (;;) {
		if (!leading(r))
			return RUN_LOST;
		if (r->txn_mode && !r->ktxn_open &&
		    (rc = begin_ktxn(r, err)) != 0)
			return rc;
		/* After the begin: while a Kafka transaction is open, the
		 * checkpoint a pause's ticks write stays before this row. */
		if ((rc = await_heard(r, err)) != 0)
			return rc;
		rc = tor_sink_produce(r->sink, msg, seq, err);
		switch (rc) {
		case TOR_SINK_OK:
			tor_progress_add(r->progress);
			r->rows_published++;
			tor_metrics_published(&r->metrics, msg->topic);
			r->ktxn_messages++;
			return 0;
		case TOR_SINK_BUSY:
			if (stop_overdue(r))
				return tor_err_set(err, "stopping: Kafka did not "
				    "take the transaction in progress within "
				    "%d ms", STOP_GRACE_MS);
			if ((rc = serve(r, 50, err)) != 0)
				return rc;
			break;
		case TOR_SINK_TOO_LARGE:
			*diverted = true;
			if ((rc = oversized(r, msg, origin, err)) <= 0 ||
			    (rc = await_partitions(r, msg->topic, err)) != 0)
				return rc;
			break;
		case TOR_SINK_RETRY:
			if ((rc = retry_later(r, "kafka", &backoff, err)) != 0)
				return rc;
			break;
		default:
			/* The leadership ended since the check above: its purge
			 * made the producer fatal (gapless), which ends this
			 * session, not the process. */
			if (!leading(r))
				return RUN_LOST;
			/* A message the broker refused (too large) makes the
			 * producer fatal too: its delivery report says which
			 * row, and outbox.unrouted decides. */
			if ((rc = serve(r, 0, err)) != 0)
				return rc;
			return -1;
		}
	}
}

/* Queues a row's message to each of its topics (outbox.route); a copy
 * that went to the dead-letter topic or was skipped is the row's last, so
 * that a row has one dead letter at most. */
static int
produce(struct tor_relay *r, struct tor_message *msg,
    const struct tor_row_origin *origin, uint64_t seq, tor_err *err)
{
	const char *const *topics;
	size_t n = tor_outbox_topics(r->outbox, msg, &topics);
	bool diverted = false;

	for (size_t i = 0; i < n && !diverted; i++) {
		int rc;

		msg->topic = topics[i];
		if ((rc = produce_copy(r, msg, origin, seq, &diverted,
		    err)) != 0)
			return rc;
	}
	return 0;
}

/* The reader's callbacks (tor/reader.h): progress, production, lag. */
static int
reader_begin(void *ctx, uint64_t *seq, tor_err *err)
{
	struct tor_relay *r = ctx;

	if ((*seq = tor_progress_begin(r->progress)) == 0)
		return tor_err_set(err, "out of memory: the checkpoint's "
		    "tracker of transactions in flight cannot grow");
	return 0;
}

static int
reader_row(void *ctx, uint64_t seq, struct tor_message *msg,
    const struct tor_row_origin *origin, tor_err *err)
{
	struct tor_relay *r = ctx;

	r->txn_times[seq & (LATENCY_SLOTS - 1)] =
	    (struct txn_time){ seq, origin->ts_ms };
	return produce(r, msg, origin, seq, err);
}

static int
reader_commit(void *ctx, const struct tor_reader_end *end, tor_err *err)
{
	struct tor_relay *r = ctx;

	(void)err;
	tor_progress_commit(r->progress, end->pos, end->gtid);
	/* Only transaction ends set the lag: a stream's first events (format
	 * description, GTID list) carry the binlog file's creation time, and
	 * heartbeats carry none. */
	if (end->ts_ms != 0)
		atomic_store_explicit(&r->metrics.binlog_lag_ms,
		    tor_metrics_wall_ms() - end->ts_ms, memory_order_relaxed);
	return 0;
}

static int
reader_rotate(void *ctx, const char *file, uint64_t pos, bool positioned,
    tor_err *err)
{
	struct tor_relay *r = ctx;

	return tor_progress_rotate(r->progress, file, pos, positioned, err);
}

static int
reader_describe(void *ctx, struct tor_table_map *tm, tor_err *err)
{
	struct tor_relay *r = ctx;

	return tor_binlog_describe_table(r->binlog, tm, err);
}

static int
reader_hold(void *ctx, uint64_t seq, tor_err *err)
{
	struct tor_relay *r = ctx;

	(void)seq;
	(void)err;
	tor_progress_hold(r->progress);
	return 0;
}

static void
reader_release(void *ctx, uint64_t seq)
{
	struct tor_relay *r = ctx;

	tor_progress_release(r->progress, seq);
}

/* Rows outbox.unrouted = skip dropped: no route takes them (the reader
 * says so), or they name a partition their topic lacks. */
static void
reader_skipped(void *ctx, enum tor_skip_reason why, const char *pos)
{
	struct tor_relay *r = ctx;
	uint64_t n;

	if (why == TOR_SKIP_UNROUTED &&
	    (n = skip_log_due(&r->unrouted_log)) > 0)
		log_warn("outbox", "skipped %" PRIu64 " row%s that no route "
		    "takes (outbox.unrouted = skip), the last at %s", n,
		    n == 1 ? "" : "s", pos);
}

static const struct tor_reader_ops reader_ops = {
	.begin = reader_begin,
	.row = reader_row,
	.commit = reader_commit,
	.rotate = reader_rotate,
	.describe = reader_describe,
	.hold = reader_hold,
	.release = reader_release,
	.skipped = reader_skipped,
};

/* After a failed attempt at `what`: logs err, waits *backoff ms while
 * serving acknowledgements, and doubles *backoff up to its cap.  Returns 0 to
 * try again, RUN_STOPPED or RUN_LOST when that came meanwhile, or what
 * serving the producer says (-1 on a fatal error, in err). */
static int
retry_later(struct tor_relay *r, const char *what, int *backoff, tor_err *err)
{
	int64_t until = tor_mono_ms() + *backoff;
	int rc;

	count_retry(r, strcmp(what, "redis") == 0 ? TOR_TARGET_REDIS :
	    strcmp(what, "kafka") == 0 ? TOR_TARGET_KAFKA : TOR_TARGET_MYSQL);
	log_warn(what, "%s; retrying in %d ms", err->msg, *backoff);
	r->kafka_retrying = strcmp(what, "kafka") == 0;
	rc = 0;
	while (rc == 0 && tor_mono_ms() < until) {
		if (stop_requested(r))
			rc = RUN_STOPPED;
		else if (!leading(r))
			rc = RUN_LOST;
		else
			rc = serve(r, 100, err);
	}
	r->kafka_retrying = false;
	if (rc != 0)
		return rc;
	*backoff = *backoff * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS :
	    *backoff * 2;
	return 0;
}

/* (Re)opens the stream at the end of the last transaction read, retrying
 * with capped backoff.  Returns 0 when streaming, else as retry_later. */
static int
open_stream(struct tor_relay *r, tor_err *err)
{
	int backoff = RECONNECT_MIN_MS, rc = 0;

	for (;;) {
		/* A connect to a server cut off blocks for its timeout: the
		 * stall is judged before, not after it. */
		r->next_stall_check_ms = 0;
		if ((rc = check_stall(r, false)) != 0)
			return rc;
		tor_reader_reset_format(r->reader, false);
		rc = tor_binlog_stream(r->binlog, tor_reader_resume(r->reader),
		    r->start.gtid_set, err);
		if (rc == TOR_BINLOG_FATAL)
			return -1;
		if (rc == TOR_BINLOG_MOVED) {
			log_warn("binlog", "%s: ending the session, to resume "
			    "on that server by GTID", err->msg);
			return RUN_MOVED;
		}
		if (rc == 0) {
			tor_reader_reset_format(r->reader,
			    tor_binlog_checksum(r->binlog));
			atomic_store(&r->metrics.stream_beat_ms, tor_mono_ms());
			r->retention_due_ms = 0;
			return 0;
		}
		if ((rc = retry_later(r, "binlog", &backoff, err)) != 0)
			return rc;
	}
}

/* Waits on the binlog reader and the Kafka delivery reports together, at
 * most until the next checkpoint is due (or a stop is checked for). */
static int
wait_for_work(struct tor_relay *r, tor_err *err)
{
	struct pollfd fds[2] = {
		{ .fd = tor_binlog_fd(r->binlog), .events = POLLIN },
		{ .fd = tor_sink_fd(r->sink), .events = POLLIN },
	};
	int64_t due = r->last_checkpoint_ms + r->cfg->checkpoint.interval_ms -
	    tor_mono_ms();
	int64_t deadline = tor_elector_deadline(r->elector) - tor_mono_ms();
	int timeout = 1000;

	if (r->checkpoint_dirty || tor_progress_moved(r->progress))
		timeout = due < 0 ? 0 : due > 1000 ? 1000 : (int)due;
	/* An open Kafka transaction is committed once the binlog is quiet. */
	if (r->ktxn_open && timeout > KTXN_IDLE_MS)
		timeout = KTXN_IDLE_MS;
	/* Wake at the leadership deadline to drop what is in flight. */
	if (deadline < timeout)
		timeout = deadline < 0 ? 0 : (int)deadline;

	if (poll(fds, 2, timeout) < 0 && errno != EINTR)
		return tor_err_set(err, "poll: %s", strerror(errno));
	return 0;
}

static int
stream_loop(struct tor_relay *r, tor_err *err)
{
	const uint8_t *raw;
	size_t len;
	int rc;

	if ((rc = open_stream(r, err)) != 0)
		return rc;
	for (;;) {
		if (!leading(r))
			return RUN_LOST;
		/* A transaction being read, or one a reopened stream must
		 * read again, is finished first. */
		if (!tor_reader_in_txn(r->reader) && stop_requested(r)) {
			if ((rc = maybe_commit(r, true, err)) != 0)
				return rc;
			return RUN_STOPPED;
		}
		if (stop_overdue(r))
			return tor_err_set(err, "stopping: the transaction in "
			    "progress did not finish within %d ms",
			    STOP_GRACE_MS);
		rc = tor_binlog_next(r->binlog, &raw, &len, err);
		if (rc == TOR_BINLOG_FATAL)
			return tor_reader_blame(r->reader,
			    tor_binlog_refused_at(r->binlog), err);
		if (rc == TOR_BINLOG_ERROR) {
			r->reconnects++;
			count_retry(r, TOR_TARGET_MYSQL);
			atomic_store(&r->metrics.stream_beat_ms, 0);
			log_warn("binlog", "%s; reopening at %s:%" PRIu64, err->msg,
			    tor_reader_resume(r->reader)->file,
			    tor_reader_resume(r->reader)->pos);
			tor_reader_reopened(r->reader);
			if ((rc = open_stream(r, err)) != 0)
				return rc;
			continue;
		}
		if (rc == TOR_BINLOG_NONE) {
			/* Caught up: commit what the Kafka transaction holds,
			 * then sleep until an event or an acknowledgement comes,
			 * or the checkpoint is due. */
			if ((rc = maybe_commit(r, tor_mono_ms() - r->last_event_ms >=
			    KTXN_IDLE_MS, err)) != 0)
				return rc;
			if (wait_for_work(r, err) < 0)
				return -1;
			if ((rc = serve(r, 0, err)) != 0)
				return rc;
			continue;
		}
		r->last_event_ms = tor_mono_ms();
		tor_stall_mysql_moved(&r->stall, r->last_event_ms);
		atomic_store_explicit(&r->metrics.stream_beat_ms,
		    r->last_event_ms, memory_order_relaxed);
		if ((rc = tor_reader_feed(r->reader, raw, len, err)) != 0)
			return rc;
		if ((rc = maybe_commit(r, false, err)) != 0)
			return rc;
		if ((rc = serve(r, 0, err)) != 0)
			return rc;
	}
}

/* The Redis checkpoint, waiting while Redis cannot be asked.  A malformed
 * or tampered one is never used: the session halts. */
static int
load_redis_checkpoint(struct tor_relay *r, struct tor_checkpoint *cp, bool *found,
    tor_err *err)
{
	int backoff = RECONNECT_MIN_MS, rc;

	while (tor_checkpoint_load(r->redis, r->cfg, cp, found, err) < 0) {
		if (strstr(err->msg, "redis ") != err->msg)
			return -1;
		set_redis_ok(r, false);
		if ((rc = retry_later(r, "redis", &backoff, err)) != 0)
			return rc;
	}
	set_redis_ok(r, true);
	return 0;
}

/*
 * Transactional mode: init_transactions fences the previous leader's
 * producer and aborts its open transaction, before anything is read.  It
 * fences whoever holds the transactional.id, a successor too: so it is
 * asked only while this leadership holds, checked right before each try (a
 * replica paused between winning the lease and this point wakes to find
 * its leadership over, and fences nobody).  What no check here can close:
 * a pause after the check, or a request slower than the lease, lands after
 * the successor's own init_transactions; the successor is then fenced, and
 * steps down (serve, sink_failure) for the next acquire to resume.
 */
static int
fence_predecessor(struct tor_relay *r, tor_err *err)
{
	int rc, backoff = RECONNECT_MIN_MS;

	for (;;) {
		if (!leading(r))
			return RUN_LOST;
		rc = tor_sink_txn_init(r->sink, r->cfg->mysql.connect_timeout_ms,
		    err);
		if (rc == 0)
			break;
		if (rc != TOR_SINK_RETRY && rc != -1)
			return sink_failure(r, rc);
		if ((rc = retry_later(r, "kafka", &backoff, err)) != 0)
			return rc;
	}
	if (!leading(r)) {
		log_warn("kafka", "init_transactions ended after the leadership "
		    "of token %" PRIu64 " did: a successor's producer may have "
		    "been fenced by it (it steps down, and the next leader goes "
		    "on)", r->epoch);
		return RUN_LOST;
	}
	return 0;
}

/* Kafka's copy of the checkpoint (the newest decision among the group's
 * committed position records, tor_checkpoint_pick), waiting while Kafka
 * cannot be read.  A last record that does not parse (or verify) halts,
 * like a bad Redis checkpoint. */
static int
load_kafka_checkpoint(struct tor_relay *r, struct tor_checkpoint *cp, bool *found,
    tor_err *err)
{
	struct tor_record_pick pick;
	int backoff = RECONNECT_MIN_MS, rc;
	int wait_ms = tor_sink_txn_timeout_ms(r->sink) + 5000;

	if (wait_ms < r->cfg->mysql.connect_timeout_ms)
		wait_ms = r->cfg->mysql.connect_timeout_ms;
	for (;;) {
		tor_checkpoint_pick_start(&pick, r->cfg);
		if (tor_position_reader_read(r->positions,
		    TOR_CHECKPOINT_RECORD, tor_checkpoint_pick, &pick, found,
		    wait_ms, err) == 0)
			break;
		if (tor_position_reader_poll(r->positions, err) < 0)
			return -1;
		if ((rc = retry_later(r, "kafka", &backoff, err)) != 0)
			return rc;
	}
	if ((rc = tor_checkpoint_picked(&pick, cp, err)) < 0)
		return tor_err_prefix(err, "kafka: %s: ",
		    r->cfg->kafka.checkpoint_topic);
	*found = rc == 1;
	if (pick.passed > 0)
		log_warn("kafka", "%s: %u position record%s of group %s before "
		    "the last one do%s not parse; passed over",
		    r->cfg->kafka.checkpoint_topic, pick.passed,
		    pick.passed == 1 ? "" : "s", r->cfg->group,
		    pick.passed == 1 ? "es" : "");
	if (*found && cp->epoch > pick.last_epoch)
		log_warn("kafka", "%s: the last position record of group %s "
		    "carries token %" PRIu64 ", below token %" PRIu64 " of one "
		    "before it (a paused leader's record that reached the "
		    "broker late): token %" PRIu64 "'s is used",
		    r->cfg->kafka.checkpoint_topic, r->cfg->group,
		    pick.last_epoch, cp->epoch, cp->epoch);
	return 0;
}

/* Logs where the session starts and why. */
static void
log_start(struct tor_relay *r, const char *from)
{
	char text[300], done[400] = "";

	tor_position_format(&r->start.pos, text, sizeof(text));
	if (r->start.done.file[0] != '\0' || r->start.rows > 0)
		snprintf(done, sizeof(done), "; published up to %.256s:%"
		    PRIu64 " and %" PRIu32 " rows already committed after it",
		    r->start.done.file[0] ? r->start.done.file : r->start.pos.file,
		    r->start.done.file[0] ? r->start.done.pos : r->start.pos.pos,
		    r->start.rows);
	log_info("relay", "resuming from %s at %s (gtid %s, written by token %"
	    PRIu64 ")%s", from, text, r->start.pos.gtid[0] ?
	    r->start.pos.gtid : "none", r->start.epoch, done);
	if (r->start.gtid_set[0] != '\0')
		log_info("relay", "MySQL's executed GTID set there: %.1000s%s",
		    r->start.gtid_set, strlen(r->start.gtid_set) > 1000 ?
		    "..." : "");
}

/*
 * Where this session starts: the newer decision (by token) of the Redis
 * checkpoint and Kafka's copy of it; mysql.start only when neither exists.
 * An operator's `tor checkpoint set` carries the newest token, so a replay
 * it asked for wins over a further position Kafka has; a leader that died
 * between its Kafka commit and its Redis write left Kafka's copy newer.
 */
static int
choose_start(struct tor_relay *r, tor_err *err)
{
	struct tor_checkpoint rcp, kcp;
	bool in_redis = false, in_kafka = false;
	uint64_t moved;
	int rc;

	if ((rc = load_redis_checkpoint(r, &rcp, &in_redis, err)) != 0)
		return rc;
	if (r->txn_mode && (rc = fence_predecessor(r, err)) != 0)
		return rc;
	if ((rc = load_kafka_checkpoint(r, &kcp, &in_kafka, err)) != 0)
		return rc;
	r->start_found = in_redis || in_kafka;
	r->max_token = in_redis ? rcp.epoch : 0;
	if (in_kafka && kcp.epoch > r->max_token)
		r->max_token = kcp.epoch;
	memset(&r->start, 0, sizeof(r->start));
	/* The last operator's move, whichever copy says it. */
	moved = in_redis ? rcp.moved : 0;
	if (in_kafka && kcp.moved > moved)
		moved = kcp.moved;
	if (in_redis && (!in_kafka || !tor_checkpoint_newer(&rcp, &kcp))) {
		r->start = rcp;
		log_start(r, "the checkpoint");
	} else if (in_kafka) {
		r->start = kcp;
		if (!in_redis) {
			atomic_fetch_add(&r->metrics.checkpoint_restored, 1);
			log_warn("relay", "Redis has no checkpoint for group %s: "
			    "Kafka's copy on %s is used (did Redis lose its "
			    "data?)", r->cfg->group,
			    r->cfg->kafka.checkpoint_topic);
		}
		log_start(r, "Kafka's copy of the checkpoint");
	}
	r->start.moved = moved;
	return 0;
}

/*
 * The checkpoint is another server's (a failover, or mysql.host moved): its
 * file:pos names nothing here, so the session starts at its GTID, if this
 * server holds it (else the halt says what was lost).  What it says is
 * published beyond pos is a file:pos of the old server too: where that is
 * pos itself (the rows done of a big transaction split in parts) the rows
 * apply to the first transaction read by GTID; further on, de-duplication
 * (idempotent mode) passes over what is replayed, and a transactional
 * leader would publish it twice, so it halts.
 */
static int
follow_by_gtid(struct tor_relay *r, tor_err *err)
{
	struct tor_checkpoint *cp = &r->start;
	char at[300], done[300];
	int backoff = RECONNECT_MIN_MS, rc;

	while ((rc = tor_binlog_check_held(r->binlog, cp, r->source_id,
	    err)) != 0) {
		if (rc == TOR_BINLOG_FATAL)
			return -1;
		if ((rc = retry_later(r, "binlog", &backoff, err)) != 0)
			return rc;
	}
	tor_position_format(&cp->pos, at, sizeof(at));
	if (cp->done.file[0] != '\0' &&
	    tor_position_compare(&cp->done, &cp->pos) != 0) {
		tor_position_format(&cp->done, done, sizeof(done));
		if (r->txn_mode)
			return tor_err_set(err, "the checkpoint (%s, GTID %s, "
			    "server_id %" PRIu32 ") says what is published "
			    "beyond it by server_id %" PRIu32 "'s file:pos "
			    "(%s: the groups after a prepared XA transaction); "
			    "on server_id %" PRIu32 " they would be published "
			    "again. Halting. Move the checkpoint past them with "
			    "`tor checkpoint set <gtid>`", at, cp->pos.gtid,
			    cp->server_id, cp->server_id, done, r->source_id);
		log_warn("relay", "what the checkpoint says is published "
		    "beyond it (%s) is server_id %" PRIu32 "'s position: "
		    "replayed from its GTID, de-duplicated", done,
		    cp->server_id);
		cp->rows = 0;
	}
	memset(&cp->done, 0, sizeof(cp->done));
	log_warn("relay", "the checkpoint's %s is server_id %" PRIu32 "'s; "
	    "mysql %s:%d is server_id %" PRIu32 " now, which holds its GTID "
	    "%s%.200s: resuming there by GTID", at, cp->server_id,
	    r->cfg->mysql.host, r->cfg->mysql.port, r->source_id,
	    cp->pos.gtid[0] != '\0' ? "" : "set ", cp->pos.gtid[0] != '\0' ?
	    cp->pos.gtid : cp->gtid_set);
	cp->pos.file[0] = '\0';
	cp->pos.pos = 0;
	cp->server_id = r->source_id;
	return 0;
}

/* Waits for MySQL, checks it and the outbox tables' names, and resolves
 * mysql.start for a group that has no checkpoint anywhere.  A checkpoint
 * of the same server (or of an unknown one) resumes at its file:pos,
 * another server's by GTID. */
static int
check_source(struct tor_relay *r, tor_err *err)
{
	int backoff = RECONNECT_MIN_MS, rc;
	char text[300];

	/* The outbox's names are checked now, not at its first row. */
	while ((rc = tor_binlog_check_server(r->binlog, err)) < 0 ||
	    (rc = tor_binlog_check_outbox(r->binlog, err)) < 0 ||
	    (rc = tor_binlog_identify(r->binlog, &r->source_id,
	    r->source_state, sizeof(r->source_state), err)) < 0) {
		if (rc == TOR_BINLOG_FATAL)
			return -1;
		if ((rc = retry_later(r, "binlog", &backoff, err)) != 0)
			return rc;
	}
	if (r->start.server_id != 0 && r->start.server_id != r->source_id)
		return follow_by_gtid(r, err);
	if (r->start.pos.file[0] == '\0' && r->start.pos.gtid[0] == '\0' &&
	    r->start.gtid_set[0] == '\0') {
		if (tor_binlog_resolve_start(r->binlog, r->cfg->mysql.start,
		    &r->start.pos, r->start.gtid_set, err) < 0)
			return -1;
		tor_position_format(&r->start.pos, text, sizeof(text));
		log_info("relay", "no checkpoint for group %s: starting at %s "
		    "(mysql.start = %s)%s%.1000s", r->cfg->group, text[0] ?
		    text : "a MySQL GTID set", r->cfg->mysql.start,
		    r->start.gtid_set[0] ? "; MySQL's executed GTID set there: "
		    : "", r->start.gtid_set);
	}
	/* A MySQL GTID set alone (an operator's move, mysql.start): checked
	 * against the server as another server's would be. */
	while (r->start.pos.file[0] == '\0' && r->start.pos.gtid[0] == '\0' &&
	    (rc = tor_binlog_check_held(r->binlog, &r->start, r->source_id,
	    err)) != 0) {
		if (rc == TOR_BINLOG_FATAL)
			return -1;
		if ((rc = retry_later(r, "binlog", &backoff, err)) != 0)
			return rc;
	}
	r->start.server_id = r->source_id;
	if (r->start.pos.file[0] == '\0')
		return 0;
	if (tor_binlog_check_available(r->binlog, &r->start.pos, err) < 0)
		return -1;
	/* The server the checkpoint's file:pos belongs to: another one is
	 * never resumed by file:pos. */
	while ((rc = tor_binlog_check_identity(r->binlog, &r->start.pos,
	    err)) != 0) {
		if (rc == TOR_BINLOG_FATAL)
			return -1;
		if ((rc = retry_later(r, "binlog", &backoff, err)) != 0)
			return rc;
	}
	/* Without a GTID the position could not follow a failover. */
	while (tor_binlog_gtid_at(r->binlog, &r->start.pos, err) < 0)
		if ((rc = retry_later(r, "binlog", &backoff, err)) != 0)
			return rc;
	return 0;
}

/*
 * Tokens never go down: a leader whose token is not above the highest one
 * either copy of the checkpoint carries (Redis lost its data, tokens began
 * at 1 again) raises the group's epoch past it and stands again; the next
 * acquire, its own or another replica's, draws a token above it.  The
 * leadership of that highest token may still be running (it learns of the
 * loss at its next renew, or when its deadline passes), so the lease is
 * held for lease_ms first: no two leaders publish at once.  A session
 * restarted within this replica's leadership finds its own token there.
 */
static int
claim_token(struct tor_relay *r, tor_err *err)
{
	uint64_t raised;

	if (r->epoch > r->max_token || (r->epoch == r->written_token &&
	    r->leadership == r->written_leadership))
		return 0;
	if (tor_lease_hold(r->redis, r->cfg, r->epoch, r->max_token, &raised,
	    err) < 0)
		return -1;
	log_warn("relay", "token %" PRIu64 " is not above token %" PRIu64
	    " of the checkpoint (Redis lost its data?): the group's epoch is "
	    "raised past it (now %" PRIu64 ") and nobody leads for %d ms "
	    "(ha.lease_ms), until a leadership from before the loss has "
	    "stopped", r->epoch, r->max_token, raised, r->cfg->ha.lease_ms);
	r->lost = true;
	tor_elector_resign(r->elector, r->leadership,
	    "token below the checkpoint's");
	return RUN_LOST;
}

/*
 * Both copies of the checkpoint carry this session's token before any
 * message does: Redis at once, Kafka in idempotent mode by a record waited
 * for, in transactional mode by a transaction of the record alone.  So a
 * Redis that loses its data still finds the newest token in Kafka, and a
 * start resolved from mysql.start ("end") survives a crash right after.
 */
static int
announce(struct tor_relay *r, tor_err *err)
{
	struct tor_checkpoint cp = r->start;
	char record[TOR_CHECKPOINT_RECORD];
	int backoff = RECONNECT_MIN_MS, rc;

	while (write_checkpoint(r, &cp, err) < 0) {
		if (r->lost)
			return RUN_LOST;
		if ((rc = retry_later(r, "redis", &backoff, err)) != 0)
			return rc;
	}
	r->committed = cp;
	tor_checkpoint_record_format(r->cfg, &cp, record, sizeof(record));
	backoff = RECONNECT_MIN_MS;
	for (;;) {
		if (r->txn_mode) {
			if ((rc = begin_ktxn(r, err)) != 0)
				return rc;
			rc = tor_sink_txn_commit(r->sink, record,
			    KAFKA_COMMIT_TIMEOUT_MS, err);
			r->ktxn_open = rc != 0;
			if (rc == 0)
				return 0;
			abort_open_txn(r, 2000);
			if (rc != TOR_SINK_ABORT)
				return sink_failure(r, rc);
		} else if ((rc = tor_sink_produce_position(r->sink, record,
		    err)) == 0 && (rc = tor_sink_flush(r->sink,
		    r->cfg->mysql.connect_timeout_ms, err)) == 0) {
			return 0;
		}
		/* Kafka refused the record: this producer is done for (an
		 * aborted transaction, or gapless), a fresh one tries again. */
		if (r->delivery_failed) {
			log_warn("kafka", "the position record was refused: %s; "
			    "starting over with a new producer", r->delivery_error);
			return RUN_RESTART;
		}
		if ((rc = retry_later(r, "kafka", &backoff, err)) != 0)
			return rc;
	}
}

/* Frees what one leadership session built. */
static void
session_free(struct tor_relay *r)
{
	tor_reader_free(r->reader);
	r->reader = NULL;
	tor_binlog_free(r->binlog);
	r->binlog = NULL;
	tor_progress_free(r->progress);
	r->progress = NULL;
	tor_dedup_free(r->dedup);
	r->dedup = NULL;
}

/* A clean stop: waits for Kafka to acknowledge (or commit) what is queued,
 * as long as the leadership lasts, then writes the checkpoint that is safe
 * now, to Redis and (idempotent mode) to Kafka. */
static void
finish(struct tor_relay *r)
{
	struct tor_reader_counts counts;
	struct tor_checkpoint cp;
	char text[300];
	tor_err err;

	if (tor_sink_flush(r->sink, STOP_GRACE_MS, &err) < 0)
		log_warn("kafka", "%s", err.msg);
	tor_sink_poll(r->sink, 0, &err);
	if (r->txn_mode)
		cp = r->committed;
	else
		safe_checkpoint(r, &cp);
	if (write_checkpoint(r, &cp, &err) < 0) {
		log_error("checkpoint", "final checkpoint not written: %s",
		    err.msg);
		return;
	}
	if (!r->txn_mode && leading(r)) {
		copy_to_kafka(r, &cp);
		if (tor_sink_flush(r->sink, 2000, &err) < 0)
			log_warn("kafka", "the final position record: %s",
			    err.msg);
	}
	tor_position_format(&cp.pos, text, sizeof(text));
	tor_reader_counts(r->reader, &counts);
	log_info("relay", "final checkpoint at %s; published %" PRIu64
	    ", skipped %" PRIu64 ", ignored %" PRIu64 " update and %" PRIu64
	    " delete events on outbox tables", text, r->rows_published,
	    r->rows_skipped + counts.skipped, counts.updated, counts.deleted);
}

/* Idempotent mode: before the first message, what the routes' topics
 * (and the dead-letter topic) hold of this group; a topic_template topic
 * is read the first time this leadership produces to it. */
static int
learn_topics(struct tor_relay *r, tor_err *err)
{
	const struct tor_config *cfg = r->cfg;
	int rc;

	/* A group that starts at mysql.start has published nothing from
	 * here: nothing to read back (and a busy shared topic would be read
	 * whole for nothing). */
	if (!r->start_found)
		return 0;
	/* Which of the partitions' newest messages the source has: after
	 * a failover that lost some, their sequence numbers are another's. */
	if ((r->dedup = tor_dedup_new()) == NULL ||
	    (r->source_state[0] != '\0' &&
	    tor_dedup_source(r->dedup, r->source_state) < 0))
		return tor_err_set(err, "out of memory");
	for (size_t i = 0; i < cfg->outbox.n_routes; i++)
		if (!tor_dedup_knows(r->dedup, cfg->outbox.routes[i].topic) &&
		    (rc = learn_topic(r, cfg->outbox.routes[i].topic, err)) != 0)
			return rc;
	if (cfg->outbox.unrouted == TOR_UNROUTED_DLQ &&
	    !tor_dedup_knows(r->dedup, cfg->outbox.dlq_topic))
		return learn_topic(r, cfg->outbox.dlq_topic, err);
	return 0;
}

/* Prepares the session: where to start, the token, the announcement, the
 * topics, the tracker and the reader. */
static int
prepare(struct tor_relay *r, tor_err *err)
{
	int backoff = RECONNECT_MIN_MS, rc;

	/* First: a lookup of the checkpoint topic (init_transactions makes
	 * one) would have the broker auto-create it, not compacted.  Kafka
	 * out of reach is waited out, as every later step does. */
	while ((rc = tor_sink_create_topics(r->sink,
	    r->cfg->mysql.connect_timeout_ms, err)) == TOR_SINK_RETRY)
		if ((rc = retry_later(r, "kafka", &backoff, err)) != 0)
			return rc;
	if (rc < 0)
		return -1;
	if ((rc = choose_start(r, err)) != 0 ||
	    (rc = check_source(r, err)) != 0 ||
	    (rc = claim_token(r, err)) != 0)
		return rc;
	if ((rc = announce(r, err)) != 0)
		return rc;
	load_refused(r);
	if (!r->txn_mode && (rc = learn_topics(r, err)) != 0)
		return rc;
	r->progress = tor_progress_new(&r->start.pos);
	r->reader = tor_reader_new(r->cfg, r->outbox, &r->metrics, &reader_ops,
	    r, &r->start.pos);
	if (r->progress == NULL || r->reader == NULL)
		return tor_err_set(err, "out of memory");
	/* Decoded when the checkpoint was read: it parses. */
	if (r->start.gtid_set[0] != '\0' && tor_progress_start_gtid_set(
	    r->progress, r->start.gtid_set, err) < 0)
		return -1;
	tor_reader_set_epoch(r->reader, r->epoch);
	tor_reader_skip_until(r->reader, &r->start.done, r->start.rows);
	return 0;
}

/*
 * One session of the leadership run_leadership holds.  It reads from the
 * checkpoint the previous leader (or session) left and publishes under this
 * token until a stop (finish, then hand over), a loss (drop what is in
 * flight: a successor may already publish), a restart or a fatal error.
 */
static int
lead(struct tor_relay *r, tor_err *err)
{
	int rc;

	r->lost = false;
	r->ktxn_open = false;
	r->checkpoint_dirty = r->delivery_failed = false;
	r->committed_moved = false;
	r->stop_deadline_ms = 0;
	r->rows_published = r->rows_skipped = 0;
	r->dedup_skipped = r->dedup_unknown = 0;
	r->dedup_reported = false;
	memset(&r->written_done, 0, sizeof(r->written_done));
	memset(&r->written_pos, 0, sizeof(r->written_pos));
	r->xa_watched_ms = r->xa_warned_ms = 0;
	memset(&r->retention, 0, sizeof(r->retention));
	r->split_ms = tor_sink_txn_timeout_ms(r->sink) / 4;
	if (r->split_ms < 200)
		r->split_ms = 200;
	log_info("relay", "leading with token %" PRIu64, r->epoch);

	if ((r->binlog = tor_binlog_new(r->cfg)) == NULL) {
		rc = tor_err_set(err, "out of memory");
		goto out;
	}
	if ((rc = prepare(r, err)) != 0)
		goto out;
	/* The stream's silence counts from here: a session that took long
	 * to begin (topics listed on a cut Kafka) has read nothing yet, and
	 * is not stalled on MySQL for that. */
	tor_stall_mysql_moved(&r->stall, tor_mono_ms());
	r->streaming = true;
	r->last_checkpoint_ms = tor_mono_ms();
	rc = stream_loop(r, err);
out:
	r->streaming = false;
	if (rc == RUN_LOST || rc == RUN_RESTART ||
	    (rc == RUN_MOVED && r->txn_mode)) {
		/* Not ours to publish any more (or not as it stands): nothing
		 * queued may go out, an open transaction is aborted.  The
		 * source moved within a Kafka transaction: what it holds is
		 * read again on the new server. */
		log_warn("relay", "%s: dropping %d messages in flight, no "
		    "checkpoint written", rc == RUN_LOST ? "lost the leadership" :
		    "starting over from the last commit",
		    tor_sink_in_flight(r->sink));
		abort_open_txn(r, 2000);
		tor_sink_purge(r->sink);
	} else if (rc < 0) {
		log_error("relay", "halting: %s", err->msg);
		abort_open_txn(r, 2000);
		if (r->progress != NULL && r->reader != NULL && leading(r))
			finish(r);
		else
			tor_sink_purge(r->sink);
	} else if (r->progress != NULL && r->reader != NULL) {
		finish(r);
	}
	report_dedup(r);
	atomic_store(&r->metrics.stream_beat_ms, 0);
	atomic_store(&r->metrics.kafka_queue, 0);
	atomic_store(&r->metrics.kafka_down_since_ms, 0);
	atomic_store(&r->metrics.xa_prepared, 0);
	atomic_store(&r->metrics.xa_prepared_since_ms, 0);
	session_free(r);
	return rc;
}

/* A follower's readiness: whether Redis answers this replica (the elector's
 * own connection is its business; this one is the relay's, which takes over
 * the checkpoint the moment the lease is won).  A change is logged once. */
static void
ping_redis(struct tor_relay *r)
{
	static const char *const argv[] = { "PING" };
	static const size_t argvlen[] = { 4 };
	bool was = atomic_load(&r->metrics.redis_ok);
	redisReply *reply;
	tor_err err;

	reply = tor_redis_command(r->redis, 1, (const char **)argv, argvlen,
	    &err);
	if (reply != NULL)
		freeReplyObject(reply);
	else if (was)
		log_warn("redis", "follower: %s", err.msg);
	if (reply != NULL && !was)
		log_info("redis", "follower: Redis answers");
	set_redis_ok(r, reply != NULL);
}

/* Waits for the next leadership the elector grants (1, *l set: one not
 * taken yet, maybe over already), or a stop (0).  The wait blocks in the
 * elector, a slice at a time; between slices it serves the waiting
 * clients' events (the producer's statistics every second, broker errors)
 * and pings Redis every REDIS_PING_MS, for /readyz.  -1 with err when
 * Kafka refused the waiting clients' TLS or SASL: configuration that a
 * leadership would only meet again. */
static int
await_leadership(struct tor_relay *r, struct tor_leadership *l, tor_err *err)
{
	int64_t next_ping = 0;

	for (;;) {
		if (stop_asked(r))
			return 0;
		beat(r);
		if ((r->sink != NULL && tor_sink_poll(r->sink, 0, err) < 0) ||
		    (r->positions != NULL &&
		    tor_position_reader_poll(r->positions, err) < 0))
			return -1;
		if (tor_mono_ms() >= next_ping) {
			ping_redis(r);
			next_ping = tor_mono_ms() + REDIS_PING_MS;
		}
		report_health(r);
		if (tor_elector_take(r->elector, AWAIT_SLICE_MS, l) == 1)
			return 1;
	}
}

/* A fresh producer per leadership, so nothing of a lost leadership can leak
 * into the next; made while following, so that it is ready the moment the
 * lease is won. */
static int
new_sink(struct tor_relay *r, tor_err *err)
{
	struct tor_sink *sink = tor_sink_new(r->cfg, on_ack, r, err);

	if (sink == NULL)
		return -1;
	tor_sink_set_guard(sink, sink_guard, r);
	tor_sink_count_errors(sink, &r->metrics.kafka_errors);
	pthread_mutex_lock(&r->sink_mu);
	r->sink = sink;
	r->sink_live = false;
	pthread_mutex_unlock(&r->sink_mu);
	return 0;
}

static void
free_sink(struct tor_relay *r)
{
	struct tor_sink *sink;

	pthread_mutex_lock(&r->sink_mu);
	sink = r->sink;
	r->sink = NULL;
	r->sink_live = false;
	pthread_mutex_unlock(&r->sink_mu);
	tor_sink_free(sink);
}

static void
set_sink_live(struct tor_relay *r, bool live)
{
	pthread_mutex_lock(&r->sink_mu);
	r->sink_live = live;
	pthread_mutex_unlock(&r->sink_mu);
}

/* A session that restarts at once again and again (Kafka refusing what it
 * must write first) backs off, up to RECONNECT_MAX_MS, as long as the
 * leadership and no stop allow. */
static void
restart_pause(struct tor_relay *r, int64_t lasted_ms)
{
	const struct timespec tick = { 0, 10 * 1000 * 1000 };
	int64_t until;

	if (lasted_ms > 2 * RECONNECT_MAX_MS) {
		r->restart_backoff_ms = 0;
		return;
	}
	r->restart_backoff_ms = r->restart_backoff_ms == 0 ? RECONNECT_MIN_MS :
	    r->restart_backoff_ms * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS :
	    r->restart_backoff_ms * 2;
	until = tor_mono_ms() + r->restart_backoff_ms;
	while (tor_mono_ms() < until && !stop_asked(r) && leading(r)) {
		beat(r);
		nanosleep(&tick, NULL);
	}
}

/*
 * Leadership l, from its taking to its end: a session, and another after a
 * restart as long as l lasts.  A leadership that is over already when it is
 * taken (it began and ended while the relay looked elsewhere) gets no
 * session.  Unless the process stops (RUN_STOPPED, a fatal error: the
 * caller releases), l is ended here, whatever ended it: the elector then
 * competes again.
 */
static int
run_sessions(struct tor_relay *r, const struct tor_leadership *l, tor_err *err)
{
	int64_t began;
	int rc;

	r->leadership = l->id;
	r->epoch = l->token;
	r->lost = false;
	tor_stall_begin(&r->stall, r->cfg->ha.stall_ms,
	    r->cfg->mysql.heartbeat_ms, tor_mono_ms());
	r->stall_kept_logged = false;
	if (!leading(r)) {
		log_info("relay", "the leadership of token %" PRIu64 " ended "
		    "before its session began: nothing was published under it",
		    l->token);
		tor_elector_end(r->elector, l->id, "ended before its session");
		return RUN_LOST;
	}
	for (;;) {
		if (r->sink == NULL && new_sink(r, err) < 0)
			return -1;
		set_sink_live(r, true);
		began = tor_mono_ms();
		rc = lead(r, err);
		free_sink(r);
		if (rc != RUN_RESTART && rc != RUN_MOVED)
			break;
		restart_pause(r, tor_mono_ms() - began);
		if (stop_asked(r))
			return RUN_STOPPED;
		if (!leading(r))
			break;
	}
	if (rc == RUN_LOST || rc == RUN_RESTART || rc == RUN_MOVED)
		tor_elector_end(r->elector, l->id, r->lost ?
		    "the relay gave the leadership up" :
		    "the relay saw the leadership end");
	return rc;
}

/* Leadership l with the Kafka clients a cold group makes for it alone. */
static int
run_leadership(struct tor_relay *r, const struct tor_leadership *l,
    tor_err *err)
{
	int rc;

	/* The standby's probe of MySQL is not needed while leading: its
	 * connection goes (a pool of many groups on one server counts them). */
	tor_binlog_free(r->probe);
	r->probe = NULL;
	if (r->positions == NULL &&
	    (r->positions = tor_position_reader_new(r->cfg, err)) == NULL)
		return -1;
	rc = run_sessions(r, l, err);
	if (r->cold) {
		tor_position_reader_free(r->positions);
		r->positions = NULL;
	}
	return rc;
}

struct tor_relay *
tor_relay_new(const struct tor_config *cfg, volatile sig_atomic_t *stop,
    bool cold, tor_err *err)
{
	struct tor_relay *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		tor_err_set(err, "out of memory");
		return NULL;
	}
	r->cfg = cfg;
	r->stop = stop;
	r->cold = cold;
	r->health_logged = -1;
	pthread_mutex_init(&r->sink_mu, NULL);
	tor_metrics_init(&r->metrics);
	beat(r);

	r->txn_mode = cfg->kafka.mode == TOR_KAFKA_TRANSACTIONAL;
#ifdef TOR_TEST_HOOKS
	/* Test-only fault hook: off unless the environment asks. */
	const char *hook = getenv("TOR_TEST_CRASH_AFTER_KAFKA_COMMIT");

	if (hook != NULL && r->txn_mode) {
		r->crash_after_commits = strtoul(hook, NULL, 10);
		log_warn("relay", "test fault hook armed: crash after Kafka commit "
		    "%lu", r->crash_after_commits);
	}
#endif

	r->redis = tor_redis_new(cfg);
	r->txn_times = calloc(LATENCY_SLOTS, sizeof(*r->txn_times));
	if (r->redis == NULL || r->txn_times == NULL) {
		tor_err_set(err, "out of memory");
		goto fail;
	}
	if ((r->outbox = tor_outbox_new(cfg, err)) == NULL)
		goto fail;
	if (!cold &&
	    (r->positions = tor_position_reader_new(cfg, err)) == NULL)
		goto fail;
	if ((r->elector = tor_elector_new_redis(cfg, err)) == NULL)
		goto fail;
	tor_elector_on_leadership_end(r->elector, on_leadership_end, r);
	return r;
fail:
	tor_relay_free(r);
	return NULL;
}

void
tor_relay_free(struct tor_relay *r)
{
	if (r == NULL)
		return;
	tor_elector_free(r->elector);
	free(r->txn_times);
	free_sink(r);
	tor_position_reader_free(r->positions);
	tor_binlog_free(r->probe);
	tor_outbox_free(r->outbox);
	tor_redis_free(r->redis);
	pthread_mutex_destroy(&r->sink_mu);
	free(r);
}

struct tor_elector *
tor_relay_elector(struct tor_relay *r)
{
	return r->elector;
}

struct tor_metrics *
tor_relay_metrics(struct tor_relay *r)
{
	return &r->metrics;
}

void
tor_relay_set_kafka_probe(struct tor_relay *r, struct tor_sink *probe)
{
	r->kafka_probe = probe;
}

void
tor_relay_stop(struct tor_relay *r)
{
	atomic_store(&r->group_stop, true);
}

void
tor_relay_hand_over(struct tor_relay *r, const char *target)
{
	snprintf(r->hand_target, sizeof(r->hand_target), "%s", target);
	atomic_store(&r->handing, true);
	atomic_store(&r->group_stop, true);
}

bool
tor_relay_handing_over(struct tor_relay *r)
{
	return atomic_load(&r->handing);
}

/*
 * After a session that ended for a hand-over (led: it ended as a stop
 * ends one, its final checkpoint written, the lease still ours), or a wait
 * that did: names the member meant to take the group (the acquire script
 * lets only it win while the name lives), gives the lease back and holds
 * off, and goes on following.  false when it was no hand-over (the
 * process stops).
 */
static bool
finish_hand_over(struct tor_relay *r, bool led)
{
	/* A live taker wins at the release's wake-up, or at its next retry
	 * if that is lost: past a few retries it is not coming (it died or
	 * paused since its last beat), and the group goes to whoever tries,
	 * this replica included. */
	int ttl = 5 * r->cfg->ha.retry_ms > 1000 ? 5 * r->cfg->ha.retry_ms :
	    1000;
	tor_err e;

	if (*r->stop || !atomic_load(&r->handing))
		return false;
	if (led) {
		if (tor_lease_set_handoff_to(r->redis, r->cfg, r->hand_target,
		    ttl, &e) < 0)
			log_warn("relay", "cannot name %s to take the group "
			    "over (any member may): %s", r->hand_target, e.msg);
		if (tor_elector_hand_over(r->elector, ttl, &e) < 0)
			log_warn("elector", "lease not released (it expires by "
			    "itself): %s", e.msg);
		else
			log_info("relay", "handed the group over to %s",
			    r->hand_target);
	}
	r->stop_deadline_ms = 0;
	atomic_store(&r->group_stop, false);
	atomic_store(&r->handing, false);
	return true;
}

int
tor_relay_serve(struct tor_relay *r, tor_err *err)
{
	tor_err release_err;
	int rc;

	tor_redis_check_settings(r->redis);
	for (;;) {
		struct tor_leadership l;

		if (!r->cold && r->sink == NULL && new_sink(r, err) < 0) {
			rc = -1;
			break;
		}
		if ((rc = await_leadership(r, &l, err)) <= 0) {
			if (rc == 0 && finish_hand_over(r, false))
				continue;
			break;
		}
		rc = run_leadership(r, &l, err);
		if (rc == RUN_STOPPED && finish_hand_over(r, true))
			continue;
		if (rc == RUN_STOPPED || rc < 0)
			break;
	}
	/* Every exit ends the leadership it runs in and gives the lease back,
	 * a leader's and one an acquire in flight has just won. */
	if (tor_elector_release(r->elector, &release_err) < 0)
		log_warn("elector", "lease not released (it expires by itself): "
		    "%s", release_err.msg);
	free_sink(r);
	return rc == RUN_STOPPED ? 0 : rc;
}

int
tor_relay_run(const struct tor_config *cfg, volatile sig_atomic_t *stop,
    tor_err *err)
{
	struct tor_electors *electors;
	struct tor_relay *r;
	struct tor_http *http = NULL;
	int rc = -1;

	if ((r = tor_relay_new(cfg, stop, false, err)) == NULL)
		return -1;
	if ((electors = tor_electors_new()) == NULL) {
		tor_err_set(err, "out of memory");
		goto out;
	}
	if (tor_electors_add(electors, r->elector, err) < 0)
		goto out;
	/* Before the elector runs, so that a follower answers probes too; a
	 * port that cannot be bound is fatal here, before any lease. */
	if (cfg->http.listen[0] != '\0' &&
	    (http = tor_http_start(cfg, &(struct tor_group_view){
	    cfg->group, &r->metrics, r->elector }, 1, err)) == NULL)
		goto out;
	if (tor_electors_start(electors, err) < 0)
		goto out;
	rc = tor_relay_serve(r, err);
out:
	/* The server reads the elector: it stops first, then the driver. */
	tor_http_stop(http);
	tor_electors_free(electors);
	tor_relay_free(r);
	return rc;
}
