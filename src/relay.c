/*
 * The relay loop (see include/tor/relay.h).
 *
 * The source-transaction reader (tor/reader.h) turns the binlog into
 * transactions of outbox rows; the relay produces each row as a message
 * tagged with its transaction's sequence number, and the progress tracker
 * turns acknowledgements into a safe position, written to Redis.
 *
 * Stops happen between transactions: a stop request lets the current
 * transaction finish, so a restart neither loses nor repeats a part of it.
 */
#include <errno.h>
#include <stdatomic.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "tor/clock.h"
#include "tor/binlog.h"
#include "tor/binlog_decode.h"
#include "tor/checkpoint.h"
#include "tor/elector.h"
#include "tor/http.h"
#include "tor/kafka.h"
#include "tor/log.h"
#include "tor/metrics.h"
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
};

/* Transactional mode: a Kafka transaction holds whole source transactions
 * and is committed when it holds this many messages, is this old, or the
 * binlog has had nothing more for a moment. */
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

struct txn_time {
	uint64_t seq;
	int64_t ts_ms;          /* wall clock, from the binlog; 0: unknown */
};

struct relay {
	const struct tor_config *cfg;
	volatile sig_atomic_t *stop;
	struct tor_elector *elector;
	bool lost;                      /* a write was refused: not leading */

	/* Transactional mode. */
	bool txn_mode;
	bool ktxn_open;                 /* a Kafka transaction is open */
	uint64_t ktxn_messages;
	int64_t ktxn_started_ms;
	int64_t last_event_ms;
	struct tor_position committed;  /* the last position Kafka committed */
	bool committed_moved;
	unsigned long crash_after_commits;      /* test fault hook, 0 = off */
	unsigned long commits;
	struct tor_binlog *binlog;
	struct tor_outbox *outbox;
	struct tor_sink *sink;
	struct tor_redis *redis;
	struct tor_progress *progress;
	struct tor_reader *reader;

	struct tor_position start;      /* where the session starts reading */
	uint64_t epoch;

	int64_t last_checkpoint_ms;
	bool checkpoint_dirty;          /* the safe position moved, not written */
	int64_t stop_deadline_ms;       /* 0 until a stop is requested */
	bool delivery_failed;
	char delivery_error[256];

	uint64_t rows_published, rows_skipped, reconnects;

	/* What /metrics and the probes show (read by the HTTP thread). */
	struct tor_metrics metrics;
	struct txn_time *txn_times;     /* LATENCY_SLOTS, by seq */
};

/* A sign of life for /healthz: the loops call it at least once a second. */
static void
beat(struct relay *r)
{
	atomic_store_explicit(&r->metrics.relay_beat_ms, tor_mono_ms(),
	    memory_order_relaxed);
}

static void
count_skip(struct relay *r, enum tor_skip_reason why)
{
	atomic_fetch_add_explicit(&r->metrics.skipped[why], 1,
	    memory_order_relaxed);
}

static void
count_retry(struct relay *r, enum tor_reconnect_target target)
{
	atomic_fetch_add_explicit(&r->metrics.reconnects[target], 1,
	    memory_order_relaxed);
}

static void
set_redis_ok(struct relay *r, bool ok)
{
	atomic_store(&r->metrics.redis_ok, ok);
}

static bool
stop_requested(struct relay *r)
{
	if (*r->stop && r->stop_deadline_ms == 0) {
		r->stop_deadline_ms = tor_mono_ms() + STOP_GRACE_MS;
		log_info("relay", "stop requested: finishing the current "
		    "transaction, then flushing");
	}
	return *r->stop != 0;
}

static bool
stop_overdue(struct relay *r)
{
	return stop_requested(r) && tor_mono_ms() > r->stop_deadline_ms;
}

/* Whether this replica may still publish: it leads, its local deadline has
 * not passed, and no write of it was refused. */
static bool
leading(struct relay *r)
{
	return !r->lost && tor_elector_may_publish(r->elector);
}

static void
on_ack(void *ctx, uint64_t seq, int err, const char *errstr)
{
	struct relay *r = ctx;

	if (r->progress == NULL)
		return;         /* a report outliving its leadership session */
	if (err != 0) {
		/* The transaction stays unacknowledged: the checkpoint never
		 * passes it, and a restart publishes it again. */
		if (!r->delivery_failed)
			snprintf(r->delivery_error, sizeof(r->delivery_error),
			    "%s", errstr);
		r->delivery_failed = true;
		return;
	}
	tor_progress_ack(r->progress, seq);
	if (r->txn_times != NULL) {
		const struct txn_time *t =
		    &r->txn_times[seq & (LATENCY_SLOTS - 1)];

		if (t->seq == seq && t->ts_ms != 0)
			tor_metrics_latency(&r->metrics,
			    tor_metrics_wall_ms() - t->ts_ms);
	}
}

static int
write_checkpoint(struct relay *r, const struct tor_position *pos, tor_err *err)
{
	struct tor_checkpoint cp = { .pos = *pos, .epoch = r->epoch };
	char text[sizeof(pos->file) + 32];
	int rc;

	if (r->lost)
		return tor_err_set(err, "not leading any more");
	rc = tor_checkpoint_store_fenced(r->redis, r->cfg, &cp, err);
	/* A refusal is an answer: Redis is there. */
	set_redis_ok(r, rc >= 0);
	if (rc < 0)
		return -1;
	if (rc == TOR_CHECKPOINT_REFUSED) {
		/* A successor holds the lease, or an operator moved the
		 * checkpoint: this replica must not publish another message. */
		r->lost = true;
		tor_elector_resign(r->elector, "checkpoint write refused: the "
		    "lease or the checkpoint belongs to a newer token");
		return tor_err_set(err, "checkpoint write refused (token %"
		    PRIu64 ")", r->epoch);
	}
	r->last_checkpoint_ms = tor_mono_ms();
	atomic_store(&r->metrics.checkpoint_wall_ms, tor_metrics_wall_ms());
	tor_position_format(pos, text, sizeof(text));
	log_debug("checkpoint", "checkpoint at %s gtid=%s", text, pos->gtid);
	return 0;
}

/* Writes the safe position when it moved and the interval has passed.  A
 * failed write is retried at the next tick; relaying goes on meanwhile. */
static void
checkpoint_tick(struct relay *r)
{
	struct tor_position pos;
	tor_err err;

	if (tor_mono_ms() - r->last_checkpoint_ms < r->cfg->checkpoint.interval_ms)
		return;
	if (r->txn_mode) {
		/* Acknowledged is not committed: only a Kafka commit moves it. */
		pos = r->committed;
		if (r->committed_moved)
			r->checkpoint_dirty = true;
		r->committed_moved = false;
	} else if (tor_progress_take_safe(r->progress, &pos)) {
		r->checkpoint_dirty = true;
	}
	if (!r->checkpoint_dirty)
		return;
	if (write_checkpoint(r, &pos, &err) < 0) {
		log_warn("checkpoint", "checkpoint not written: %s", err.msg);
		r->last_checkpoint_ms = tor_mono_ms();
		return;
	}
	r->checkpoint_dirty = false;
}

/* Serves acknowledgements, fails on a lost message, ticks the checkpoint. */
static int
serve(struct relay *r, int timeout_ms, tor_err *err)
{
	beat(r);
	if (tor_sink_poll(r->sink, timeout_ms, err) < 0)
		return -1;
	atomic_store_explicit(&r->metrics.kafka_queue,
	    tor_sink_in_flight(r->sink), memory_order_relaxed);
	if (r->delivery_failed)
		return tor_err_set(err, "kafka: a message was not delivered: "
		    "%s (the checkpoint stays before it; it is published again "
		    "after a restart)", r->delivery_error);
	checkpoint_tick(r);
	return 0;
}

/* What a transactional call's failure means for the session. */
static int
sink_failure(struct relay *r, int rc)
{
	if (rc == TOR_SINK_FENCED) {
		r->lost = true;
		tor_elector_resign(r->elector, "Kafka fenced this producer: "
		    "another replica holds the transactional.id");
		return RUN_LOST;
	}
	return rc == TOR_SINK_ABORT ? RUN_RESTART : -1;
}

/* Commits the open Kafka transaction with the position reached: the end of
 * the last source transaction read, all of whose messages it holds. */
static int
kafka_commit(struct relay *r, tor_err *err)
{
	const struct tor_position *at = tor_reader_resume(r->reader);
	char record[sizeof(at->file) + 64];
	int rc;

	int64_t t0 = tor_mono_ms();

	snprintf(record, sizeof(record), "v1 %" PRIu64 " %s %" PRIu64,
	    r->epoch, at->file, at->pos);
	rc = tor_sink_txn_commit(r->sink, record, KAFKA_COMMIT_TIMEOUT_MS, err);
	log_debug("kafka", "committed %" PRIu64 " messages up to %s:%" PRIu64
	    " in %" PRId64 " ms (open %" PRId64 " ms)", r->ktxn_messages,
	    at->file, at->pos, tor_mono_ms() - t0,
	    t0 - r->ktxn_started_ms);
	r->ktxn_open = false;
	if (rc != 0) {
		tor_err tmp;

		if (rc == TOR_SINK_ABORT &&
		    tor_sink_txn_abort(r->sink, KAFKA_COMMIT_TIMEOUT_MS, &tmp) != 0)
			log_warn("kafka", "%s", tmp.msg);
		log_warn("kafka", "%s", err->msg);
		return sink_failure(r, rc);
	}
	/* The commit flushed every message: the tracker has them all. */
	tor_progress_safe(r->progress, &r->committed);
	r->committed.pos = at->pos;
	snprintf(r->committed.file, sizeof(r->committed.file), "%s",
	    at->file);
	r->committed_moved = true;
	r->commits++;
	if (r->crash_after_commits != 0 &&
	    r->commits == r->crash_after_commits) {
		log_warn("relay", "test fault hook: crashing after Kafka commit "
		    "%lu, before the Redis checkpoint", r->commits);
		raise(SIGKILL);
	}
	return 0;
}

/* Commits when the open Kafka transaction is big or old enough, or (idle)
 * whenever it holds anything; never inside a source transaction. */
static int
maybe_commit(struct relay *r, bool idle, tor_err *err)
{
	if (!r->txn_mode || !r->ktxn_open || tor_reader_in_txn(r->reader))
		return 0;
	if (!idle && r->ktxn_messages < KTXN_MAX_MESSAGES &&
	    tor_mono_ms() - r->ktxn_started_ms < KTXN_MAX_MS)
		return 0;
	return kafka_commit(r, err);
}

/* Queues one message of transaction seq, waiting while the producer's
 * queue is full.  Oversized messages follow outbox.unrouted. */
static int
produce(struct relay *r, struct tor_message *msg,
    const struct tor_row_origin *origin, uint64_t seq, tor_err *err)
{
	for (;;) {
		int rc;

		if (!leading(r))
			return RUN_LOST;
		if (r->txn_mode && !r->ktxn_open) {
			if ((rc = tor_sink_txn_begin(r->sink, err)) != 0)
				return sink_failure(r, rc);
			r->ktxn_open = true;
			r->ktxn_messages = 0;
			r->ktxn_started_ms = tor_mono_ms();
		}
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
			if (serve(r, 50, err) < 0)
				return -1;
			break;
		case TOR_SINK_TOO_LARGE:
			rc = tor_outbox_oversized(r->outbox, msg, origin, err);
			if (rc < 0)
				return -1;
			if (rc == TOR_OUTBOX_SKIPPED) {
				log_warn("outbox", "skipped a message too large "
				    "for Kafka (row %s, %zu bytes)", origin->pos,
				    msg->value_len);
				r->rows_skipped++;
				count_skip(r, TOR_SKIP_OVERSIZED);
				return 0;
			}
			break;
		default:
			return -1;
		}
	}
}

/* The reader's callbacks (tor/reader.h): progress, production, lag. */
static int
reader_begin(void *ctx, uint64_t *seq, tor_err *err)
{
	struct relay *r = ctx;

	(void)err;
	*seq = tor_progress_begin(r->progress);
	return 0;
}

static int
reader_row(void *ctx, uint64_t seq, struct tor_message *msg,
    const struct tor_row_origin *origin, tor_err *err)
{
	struct relay *r = ctx;

	r->txn_times[seq & (LATENCY_SLOTS - 1)] =
	    (struct txn_time){ seq, origin->ts_ms };
	return produce(r, msg, origin, seq, err);
}

static int
reader_commit(void *ctx, const struct tor_reader_end *end, tor_err *err)
{
	struct relay *r = ctx;

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
	struct relay *r = ctx;

	return tor_progress_rotate(r->progress, file, pos, positioned, err);
}

static int
reader_describe(void *ctx, struct tor_table_map *tm, tor_err *err)
{
	struct relay *r = ctx;

	return tor_binlog_describe_table(r->binlog, tm, err);
}

static int
reader_hold(void *ctx, uint64_t seq, tor_err *err)
{
	struct relay *r = ctx;

	(void)seq;
	(void)err;
	tor_progress_hold(r->progress);
	return 0;
}

static void
reader_release(void *ctx, uint64_t seq)
{
	struct relay *r = ctx;

	tor_progress_release(r->progress, seq);
}

static const struct tor_reader_ops reader_ops = {
	.begin = reader_begin,
	.row = reader_row,
	.commit = reader_commit,
	.rotate = reader_rotate,
	.describe = reader_describe,
	.hold = reader_hold,
	.release = reader_release,
};

/* After a failed attempt at `what`: logs err, waits *backoff ms while
 * serving acknowledgements, and doubles *backoff up to its cap.  Returns 0 to
 * try again, RUN_STOPPED or RUN_LOST when that came meanwhile, -1 on a fatal
 * error (in err). */
static int
retry_later(struct relay *r, const char *what, int *backoff, tor_err *err)
{
	int64_t until = tor_mono_ms() + *backoff;

	count_retry(r, strcmp(what, "redis") == 0 ? TOR_TARGET_REDIS :
	    strcmp(what, "kafka") == 0 ? TOR_TARGET_KAFKA : TOR_TARGET_MYSQL);
	log_warn(what, "%s; retrying in %d ms", err->msg, *backoff);
	while (tor_mono_ms() < until) {
		if (stop_requested(r))
			return RUN_STOPPED;
		if (!leading(r))
			return RUN_LOST;
		if (serve(r, 100, err) < 0)
			return -1;
	}
	*backoff = *backoff * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS :
	    *backoff * 2;
	return 0;
}

/* (Re)opens the stream at the end of the last transaction read, retrying
 * with capped backoff.  Returns 0 when streaming, else as retry_later. */
static int
open_stream(struct relay *r, tor_err *err)
{
	int backoff = RECONNECT_MIN_MS, rc = 0;

	for (;;) {
		tor_reader_reset_format(r->reader, false);
		if (tor_binlog_stream(r->binlog, tor_reader_resume(r->reader),
		    err) == 0) {
			tor_reader_reset_format(r->reader,
			    tor_binlog_checksum(r->binlog));
			atomic_store(&r->metrics.stream_beat_ms, tor_mono_ms());
			return 0;
		}
		if ((rc = retry_later(r, "binlog", &backoff, err)) != 0)
			return rc;
	}
}

/* Waits on the binlog reader and the Kafka delivery reports together, at
 * most until the next checkpoint is due (or a stop is checked for). */
static int
wait_for_work(struct relay *r, tor_err *err)
{
	struct pollfd fds[2] = {
		{ .fd = tor_binlog_fd(r->binlog), .events = POLLIN },
		{ .fd = tor_sink_fd(r->sink), .events = POLLIN },
	};
	int64_t due = r->last_checkpoint_ms + r->cfg->checkpoint.interval_ms -
	    tor_mono_ms();
	int timeout = 1000;

	int64_t deadline = tor_elector_deadline(r->elector) - tor_mono_ms();

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
stream_loop(struct relay *r, tor_err *err)
{
	const uint8_t *raw;
	size_t len;
	int rc;

	if ((rc = open_stream(r, err)) != 0)
		return rc;
	for (;;) {
		if (!leading(r))
			return RUN_LOST;
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
			return -1;
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
			if (wait_for_work(r, err) < 0 || serve(r, 0, err) < 0)
				return -1;
			continue;
		}
		r->last_event_ms = tor_mono_ms();
		atomic_store_explicit(&r->metrics.stream_beat_ms,
		    r->last_event_ms, memory_order_relaxed);
		if ((rc = tor_reader_feed(r->reader, raw, len, err)) != 0)
			return rc;
		if ((rc = maybe_commit(r, false, err)) != 0)
			return rc;
		if (serve(r, 0, err) < 0)
			return -1;
	}
}

/* Connects Redis and MySQL, retrying while they are unreachable, and works
 * out where to start: the checkpoint, else mysql.start. */
static int
find_start(struct relay *r, tor_err *err)
{
	struct tor_checkpoint cp;
	bool found = false;
	int backoff = RECONNECT_MIN_MS, rc = 0;
	char text[300];

	/* Unreachable services are waited for; a bad checkpoint or a
	 * misconfigured server is not going to mend itself. */
	while (tor_checkpoint_load(r->redis, r->cfg, &cp, &found, err) < 0) {
		if (strstr(err->msg, "redis ") != err->msg)
			return -1;      /* malformed: never used */
		set_redis_ok(r, false);
		if ((rc = retry_later(r, "redis", &backoff, err)) != 0)
			return rc;
	}
	set_redis_ok(r, true);
	backoff = RECONNECT_MIN_MS;
	while ((rc = tor_binlog_check_server(r->binlog, err)) < 0) {
		if (rc == TOR_BINLOG_FATAL)
			return -1;
		if ((rc = retry_later(r, "binlog", &backoff, err)) != 0)
			return rc;
	}
	if (found) {
		r->start = cp.pos;
		tor_position_format(&cp.pos, text, sizeof(text));
		log_info("relay", "resuming from the checkpoint at %s (gtid %s, "
		    "written by token %" PRIu64 ")", text,
		    cp.pos.gtid[0] ? cp.pos.gtid : "none", cp.epoch);
	} else {
		if (tor_binlog_resolve_start(r->binlog, r->cfg->mysql.start,
		    &r->start, err) < 0)
			return -1;
		tor_position_format(&r->start, text, sizeof(text));
		log_info("relay", "no checkpoint for group %s: starting at %s "
		    "(mysql.start = %s)", r->cfg->group, text,
		    r->cfg->mysql.start);
	}
	if (r->start.file[0] != '\0')
		return tor_binlog_check_available(r->binlog, &r->start, err);
	return 0;
}

/* Frees what one leadership session built. */
static void
session_free(struct relay *r)
{
	tor_reader_free(r->reader);
	r->reader = NULL;
	tor_binlog_free(r->binlog);
	r->binlog = NULL;
	tor_progress_free(r->progress);
	r->progress = NULL;
}

/* Waits for Kafka to acknowledge what is queued, then writes the checkpoint
 * that is safe now. */
static void
finish(struct relay *r)
{
	tor_err err;
	struct tor_reader_counts counts;
	struct tor_position pos;
	char text[300];

	if (tor_sink_flush(r->sink, STOP_GRACE_MS, &err) < 0)
		log_warn("kafka", "%s", err.msg);
	tor_sink_poll(r->sink, 0, &err);
	if (r->txn_mode)
		pos = r->committed;
	else
		tor_progress_safe(r->progress, &pos);
	if (write_checkpoint(r, &pos, &err) < 0) {
		log_error("checkpoint", "final checkpoint not written: %s",
		    err.msg);
		return;
	}
	tor_position_format(&pos, text, sizeof(text));
	tor_reader_counts(r->reader, &counts);
	log_info("relay", "final checkpoint at %s; published %" PRIu64
	    ", skipped %" PRIu64 ", ignored %" PRIu64 " updates and %" PRIu64
	    " deletes of outbox rows", text, r->rows_published,
	    r->rows_skipped + counts.skipped, counts.updated, counts.deleted);
}

/* "later" of two positions in one server's binlog: by file number, then
 * offset. */
static bool
position_after(const struct tor_position *a, const struct tor_position *b)
{
	const char *da = strrchr(a->file, '.'), *db = strrchr(b->file, '.');
	unsigned long long na, nb;

	if (b->file[0] == '\0')
		return a->file[0] != '\0';
	if (a->file[0] == '\0')
		return false;
	na = da != NULL ? strtoull(da + 1, NULL, 10) : 0;
	nb = db != NULL ? strtoull(db + 1, NULL, 10) : 0;
	if (na != nb)
		return na > nb;
	return a->pos > b->pos;
}

/*
 * Transactional takeover (DESIGN.md §5): init_transactions fences the
 * previous leader's producer and aborts its open transaction; the last
 * committed position record then says how far Kafka got, which may be past
 * the Redis checkpoint (a leader that died between its Kafka commit and its
 * Redis write).  Resume from the later of the two.
 */
static int
take_over_transactions(struct relay *r, tor_err *err)
{
	struct tor_position kpos;
	char record[600], text[300];
	unsigned long long token, pos;
	bool found;
	int rc, backoff = RECONNECT_MIN_MS;

	while ((rc = tor_sink_txn_init(r->sink, r->cfg->mysql.connect_timeout_ms,
	    err)) != 0) {
		if (rc != TOR_SINK_RETRY && rc != -1)
			return sink_failure(r, rc);
		if ((rc = retry_later(r, "kafka", &backoff, err)) != 0)
			return rc;
	}
	if (tor_sink_read_position(r->cfg, record, sizeof(record), &found,
	    r->cfg->mysql.connect_timeout_ms, err) < 0)
		return -1;
	if (!found)
		return 0;
	memset(&kpos, 0, sizeof(kpos));
	if (sscanf(record, "v1 %llu %255s %llu", &token, kpos.file, &pos) != 3)
		return tor_err_set(err, "kafka: %s: position record for group "
		    "%s is malformed: '%.100s'", r->cfg->kafka.checkpoint_topic,
		    r->cfg->group, record);
	kpos.pos = pos;
	if (position_after(&kpos, &r->start)) {
		tor_position_format(&kpos, text, sizeof(text));
		log_info("relay", "Kafka committed up to %s (token %llu), past "
		    "the Redis checkpoint: resuming there", text, token);
		r->start = kpos;
	}
	return 0;
}

/*
 * One leadership session: from the lease won to the lease given up.  It
 * reads from the checkpoint the previous leader left and publishes under this
 * token until a stop (finish, then hand over), a loss (drop what is in
 * flight: a successor may already publish) or a fatal error.
 */
static int
lead(struct relay *r, tor_err *err)
{
	int rc;

	r->epoch = tor_elector_token(r->elector);
	r->lost = false;
	r->ktxn_open = false;
	r->checkpoint_dirty = r->delivery_failed = false;
	r->stop_deadline_ms = 0;
	r->rows_published = r->rows_skipped = 0;
	memset(&r->start, 0, sizeof(r->start));
	log_info("relay", "leading with token %" PRIu64, r->epoch);

	r->binlog = tor_binlog_new(r->cfg);
	if (r->binlog == NULL) {
		rc = tor_err_set(err, "out of memory");
		goto out;
	}
	if ((rc = find_start(r, err)) != 0)
		goto out;
	if (r->txn_mode && (rc = take_over_transactions(r, err)) != 0)
		goto out;
	r->committed = r->start;
	r->committed_moved = false;
	r->progress = tor_progress_new(&r->start);
	r->reader = tor_reader_new(r->cfg, r->outbox, &r->metrics, &reader_ops,
	    r, &r->start);
	if (r->progress == NULL || r->reader == NULL) {
		rc = tor_err_set(err, "out of memory");
		goto out;
	}
	if (tor_sink_create_topics(r->sink, r->cfg->mysql.connect_timeout_ms,
	    err) < 0) {
		rc = -1;
		goto out;
	}
	tor_reader_set_epoch(r->reader, r->epoch);
	r->last_checkpoint_ms = tor_mono_ms();
	rc = stream_loop(r, err);
out:
	if (rc == RUN_LOST || rc == RUN_RESTART) {
		/* Not ours to publish any more (or not as it stands): nothing
		 * queued may go out, an open transaction is aborted. */
		log_warn("relay", "%s: dropping %d messages in flight, no "
		    "checkpoint written", rc == RUN_LOST ? "lost the leadership" :
		    "starting over from the last commit",
		    tor_sink_in_flight(r->sink));
		if (r->ktxn_open && !tor_sink_fenced(r->sink)) {
			tor_err tmp;

			if (tor_sink_txn_abort(r->sink, 2000, &tmp) != 0)
				log_warn("kafka", "%s", tmp.msg);
		}
		tor_sink_purge(r->sink);
	} else if (rc < 0) {
		log_error("relay", "halting: %s", err->msg);
		if (r->ktxn_open && !tor_sink_fenced(r->sink)) {
			tor_err tmp;

			if (tor_sink_txn_abort(r->sink, 2000, &tmp) != 0)
				log_warn("kafka", "%s", tmp.msg);
			r->ktxn_open = false;
		}
		if (r->progress != NULL && leading(r))
			finish(r);
	} else if (r->progress != NULL) {
		finish(r);
	}
	atomic_store(&r->metrics.stream_beat_ms, 0);
	atomic_store(&r->metrics.kafka_queue, 0);
	session_free(r);
	return rc;
}

/* A follower's readiness: whether Redis answers this replica (the elector's
 * own connection is its business; this one is the relay's, which takes over
 * the checkpoint the moment the lease is won).  A change is logged once. */
static void
ping_redis(struct relay *r)
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

/* Sleeps until this replica leads, or a stop comes (false).  Pings Redis
 * every REDIS_PING_MS meanwhile, for /readyz. */
static bool
await_leadership(struct relay *r)
{
	const struct timespec tick = { 0, 2 * 1000 * 1000 };
	int64_t next_ping = 0;

	while (tor_elector_state(r->elector) != TOR_LEADER) {
		if (*r->stop)
			return false;
		beat(r);
		if (tor_mono_ms() >= next_ping) {
			ping_redis(r);
			next_ping = tor_mono_ms() + REDIS_PING_MS;
		}
		nanosleep(&tick, NULL);
	}
	return true;
}

int
tor_relay_run(const struct tor_config *cfg, volatile sig_atomic_t *stop,
    tor_err *err)
{
	struct relay r = { .cfg = cfg, .stop = stop };
	const char *hook = getenv("TOR_TEST_CRASH_AFTER_KAFKA_COMMIT");
	struct tor_http *http = NULL;
	tor_err release_err;
	int rc = -1;

	tor_metrics_init(&r.metrics);
	beat(&r);

	r.txn_mode = cfg->kafka.mode == TOR_KAFKA_TRANSACTIONAL;
	/* Test-only fault hook: off unless the environment asks. */
	if (hook != NULL && r.txn_mode) {
		r.crash_after_commits = strtoul(hook, NULL, 10);
		log_warn("relay", "test fault hook armed: crash after Kafka commit "
		    "%lu", r.crash_after_commits);
	}

	r.redis = tor_redis_new(cfg);
	r.txn_times = calloc(LATENCY_SLOTS, sizeof(*r.txn_times));
	if (r.redis == NULL || r.txn_times == NULL) {
		tor_err_set(err, "out of memory");
		goto out;
	}
	if ((r.outbox = tor_outbox_new(cfg, err)) == NULL)
		goto out;
	if ((r.elector = tor_elector_new_redis(cfg, err)) == NULL)
		goto out;
	/* Before the elector runs, so that a follower answers probes too; a
	 * port that cannot be bound is fatal here, before any lease. */
	if (cfg->http.listen[0] != '\0' &&
	    (http = tor_http_start(cfg, &r.metrics, r.elector, err)) == NULL)
		goto out;
	if (tor_elector_start(r.elector, err) < 0)
		goto out;
	for (;;) {
		/* A producer made while following is ready the moment the
		 * lease is won; a fresh one per leadership, so nothing of a
		 * lost leadership can leak into the next. */
		if (r.sink == NULL &&
		    (r.sink = tor_sink_new(cfg, on_ack, &r, err)) == NULL) {
			rc = -1;
			break;
		}
		if (!await_leadership(&r)) {
			rc = 0;
			break;
		}
		rc = lead(&r, err);
		tor_sink_free(r.sink);
		r.sink = NULL;
		if (rc == RUN_RESTART)
			continue;       /* still leading: a fresh producer */
		if (rc != RUN_LOST)
			break;
		tor_elector_relay_stopped(r.elector);
	}
	if (rc == RUN_STOPPED || rc < 0) {
		if (tor_elector_release(r.elector, &release_err) < 0)
			log_warn("elector", "lease not released (it expires by "
			    "itself): %s", release_err.msg);
	}
	if (rc == RUN_STOPPED)
		rc = 0;
out:
	/* The server reads the elector: it stops first. */
	tor_http_stop(http);
	if (r.elector != NULL) {
		tor_elector_stop(r.elector);
		tor_elector_free(r.elector);
	}
	free(r.txn_times);
	tor_sink_free(r.sink);
	tor_outbox_free(r.outbox);
	tor_redis_free(r.redis);
	return rc;
}
