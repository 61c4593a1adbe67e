/*
 * Metrics (see include/tor/metrics.h): updates from the relay thread and
 * the Prometheus text rendering for the HTTP thread.
 *
 * All loads and stores are relaxed except the topic table's count, which
 * orders a new topic's name before the scrape that reads it.  The histogram
 * keeps one count per bucket and renders the running sum, and its _count is
 * that same sum, so a scrape always shows +Inf equal to _count even while
 * an observation lands.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tor/clock.h"
#include "tor/metrics.h"
#include "tor/retention.h"

/* Binlog timestamps have 1 s resolution, so the buckets below 1 s only fill
 * when the clocks of the database and of tor agree closely; they are kept for
 * the sub-second tail a busy system shows. */
const int64_t tor_metrics_latency_le_ms[TOR_METRICS_LATENCY_BUCKETS] = {
	5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
};

static const char *const skip_reasons[TOR_SKIP_N] = {
	"unrouted", "oversized", "update", "delete",
};

static const char *const targets[TOR_TARGET_N] = {
	"mysql", "redis", "kafka",
};

#define RELAXED memory_order_relaxed

void
tor_metrics_init(struct tor_metrics *m)
{
	memset(m, 0, sizeof(*m));
	m->start_wall_ms = tor_metrics_wall_ms();
	atomic_store(&m->retention_bytes, TOR_RETENTION_UNKNOWN);
	atomic_store(&m->retention_s, TOR_RETENTION_UNKNOWN);
	atomic_store(&m->retention_expire_s, TOR_RETENTION_UNKNOWN);
	atomic_store(&m->retention_purge_s, TOR_RETENTION_UNKNOWN);
}

int64_t
tor_metrics_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
tor_metrics_published(struct tor_metrics *m, const char *topic)
{
	unsigned n = atomic_load_explicit(&m->n_topics, RELAXED);

	/* Messages come in runs of one topic: try the last one first. */
	if (m->last_topic < n &&
	    strcmp(m->topics[m->last_topic].name, topic) == 0) {
		atomic_fetch_add_explicit(&m->topics[m->last_topic].published, 1,
		    RELAXED);
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		if (strcmp(m->topics[i].name, topic) == 0) {
			m->last_topic = i;
			atomic_fetch_add_explicit(&m->topics[i].published, 1,
			    RELAXED);
			return;
		}
	}
	if (n == TOR_METRICS_TOPICS ||
	    strlen(topic) >= sizeof(m->topics[n].name)) {
		atomic_fetch_add_explicit(&m->published_other, 1, RELAXED);
		return;
	}
	snprintf(m->topics[n].name, sizeof(m->topics[n].name), "%s", topic);
	atomic_store_explicit(&m->topics[n].published, 1, RELAXED);
	m->last_topic = n;
	atomic_store_explicit(&m->n_topics, n + 1, memory_order_release);
}

void
tor_metrics_latency(struct tor_metrics *m, int64_t age_ms)
{
	int i;

	if (age_ms < 0)
		age_ms = 0;     /* the database's clock runs ahead of ours */
	for (i = 0; i < TOR_METRICS_LATENCY_BUCKETS; i++)
		if (age_ms <= tor_metrics_latency_le_ms[i])
			break;
	atomic_fetch_add_explicit(&m->latency[i], 1, RELAXED);
	atomic_fetch_add_explicit(&m->latency_sum_ms, (uint64_t)age_ms, RELAXED);
}

static int
header(struct tor_buf *out, const char *name, const char *type,
    const char *help)
{
	return tor_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help,
	    name, type);
}

/* A counter without labels: its HELP and TYPE lines and its value. */
static int
counter(struct tor_buf *out, const char *name, const char *help,
    const _Atomic uint64_t *value)
{
	return header(out, name, "counter", help) |
	    tor_buf_appendf(out, "%s %llu\n", name, (unsigned long long)
	    atomic_load_explicit(value, RELAXED));
}

/* Milliseconds as seconds, exactly (no binary fraction noise). */
static int
append_seconds(struct tor_buf *out, int64_t ms)
{
	const char *sign = ms < 0 ? "-" : "";

	if (ms < 0)
		ms = -ms;
	return tor_buf_appendf(out, "%s%lld.%03lld", sign,
	    (long long)(ms / 1000), (long long)(ms % 1000));
}

static int
render_elector(const struct tor_elector *el, struct tor_buf *out)
{
	enum tor_elector_state state = el != NULL ? tor_elector_state(el) :
	    TOR_FOLLOWER;
	static const enum tor_elector_state states[] = {
		TOR_FOLLOWER, TOR_CANDIDATE, TOR_LEADER, TOR_STEPPING_DOWN,
	};
	int rc = 0;

	rc |= header(out, "tor_leader", "gauge",
	    "1 while this replica holds the lease, else 0.");
	rc |= tor_buf_appendf(out, "tor_leader %d\n", state == TOR_LEADER);
	rc |= header(out, "tor_lease_epoch", "gauge",
	    "The fencing token of the lease this replica holds or last held.");
	rc |= tor_buf_appendf(out, "tor_lease_epoch %llu\n",
	    (unsigned long long)(el != NULL ? tor_elector_token(el) : 0));
	rc |= header(out, "tor_state", "gauge",
	    "The elector's state: 1 for the current one.");
	for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
		rc |= tor_buf_appendf(out, "tor_state{state=\"%s\"} %d\n",
		    tor_elector_state_name(states[i]), states[i] == state);
	rc |= header(out, "tor_failovers_total", "counter",
	    "Times this replica became leader after its first leadership.");
	rc |= tor_buf_appendf(out, "tor_failovers_total %llu\n",
	    (unsigned long long)(el != NULL ? tor_elector_failovers(el) : 0));
	return rc;
}

static int
render_events(const struct tor_metrics *m, struct tor_buf *out)
{
	unsigned n = atomic_load_explicit(&m->n_topics, memory_order_acquire);
	int rc = 0;

	rc |= counter(out, "tor_events_read_total",
	    "Binlog events read (all kinds, heartbeats included).",
	    &m->events_read);
	/* Kafka topic names are [a-zA-Z0-9._-]: no label escaping needed. */
	rc |= header(out, "tor_events_published_total", "counter",
	    "Outbox rows handed to the Kafka producer, by topic (a replay "
	    "after a restart or an aborted transaction counts again).");
	for (unsigned i = 0; i < n; i++)
		rc |= tor_buf_appendf(out,
		    "tor_events_published_total{topic=\"%s\"} %llu\n",
		    m->topics[i].name, (unsigned long long)atomic_load_explicit(
		    &m->topics[i].published, RELAXED));
	rc |= tor_buf_appendf(out,
	    "tor_events_published_total{topic=\"other\"} %llu\n",
	    (unsigned long long)atomic_load_explicit(&m->published_other,
	    RELAXED));
	rc |= header(out, "tor_events_skipped_total", "counter",
	    "Outbox rows not published, by reason.");
	for (int i = 0; i < TOR_SKIP_N; i++)
		rc |= tor_buf_appendf(out,
		    "tor_events_skipped_total{reason=\"%s\"} %llu\n",
		    skip_reasons[i], (unsigned long long)atomic_load_explicit(
		    &m->skipped[i], RELAXED));
	return rc;
}

static int
render_latency(const struct tor_metrics *m, struct tor_buf *out)
{
	uint64_t cum = 0;
	int rc = 0;

	rc |= header(out, "tor_publish_latency_seconds", "histogram",
	    "At each Kafka acknowledgement: now minus the source row's binlog "
	    "timestamp (1 s resolution, so up to 1 s too high).");
	for (int i = 0; i <= TOR_METRICS_LATENCY_BUCKETS; i++) {
		cum += atomic_load_explicit(&m->latency[i], RELAXED);
		rc |= tor_buf_appendf(out, "tor_publish_latency_seconds_bucket"
		    "{le=\"");
		if (i < TOR_METRICS_LATENCY_BUCKETS)
			rc |= tor_buf_appendf(out, "%g",
			    (double)tor_metrics_latency_le_ms[i] / 1000);
		else
			rc |= tor_buf_appendf(out, "+Inf");
		rc |= tor_buf_appendf(out, "\"} %llu\n", (unsigned long long)cum);
	}
	rc |= tor_buf_appendf(out, "tor_publish_latency_seconds_sum ");
	rc |= append_seconds(out, (int64_t)atomic_load_explicit(
	    &m->latency_sum_ms, RELAXED));
	rc |= tor_buf_appendf(out, "\ntor_publish_latency_seconds_count %llu\n",
	    (unsigned long long)cum);
	return rc;
}

/* A gauge of a retention figure: NaN unknown, +Inf unbounded. */
static int
retention_gauge(struct tor_buf *out, const char *name, const char *help,
    const _Atomic int64_t *value)
{
	int64_t v = atomic_load_explicit(value, RELAXED);
	int rc = header(out, name, "gauge", help);

	if (v == TOR_RETENTION_UNKNOWN)
		return rc | tor_buf_appendf(out, "%s NaN\n", name);
	if (v == TOR_RETENTION_NEVER)
		return rc | tor_buf_appendf(out, "%s +Inf\n", name);
	return rc | tor_buf_appendf(out, "%s %lld\n", name, (long long)v);
}

static int
render_retention(const struct tor_metrics *m, struct tor_buf *out)
{
	int rc = 0;

	rc |= retention_gauge(out, "tor_binlog_retention_headroom_bytes",
	    "Bytes of binlog the server holds behind the checkpoint (from its "
	    "oldest file to the checkpoint), at the leader's last check; NaN "
	    "unknown.", &m->retention_bytes);
	rc |= retention_gauge(out, "tor_binlog_retention_headroom_seconds",
	    "Seconds of binlog the server holds behind the checkpoint, at "
	    "least (oldest file's start to the checkpoint file's start).",
	    &m->retention_s);
	rc |= retention_gauge(out, "tor_binlog_retention_expire_seconds",
	    "The server's binlog purge age (binlog_expire_logs_seconds or "
	    "expire_logs_days), 0 when it purges nothing by age.",
	    &m->retention_expire_s);
	rc |= retention_gauge(out, "tor_binlog_retention_purge_seconds",
	    "Seconds until the server's expiry may purge the checkpoint's "
	    "binlog file (0: overdue, purged at its next rotation); +Inf when "
	    "nothing purges it by age.", &m->retention_purge_s);
	return rc;
}

static int
render_gauges(const struct tor_metrics *m, struct tor_buf *out)
{
	int64_t cp = atomic_load_explicit(&m->checkpoint_wall_ms, RELAXED);
	int64_t xa = atomic_load_explicit(&m->xa_prepared_since_ms, RELAXED);
	int rc = 0;

	rc |= header(out, "tor_binlog_lag_seconds", "gauge",
	    "Wall clock minus the binlog timestamp of the last transaction "
	    "read, as of when it was read.");
	rc |= tor_buf_appendf(out, "tor_binlog_lag_seconds ");
	rc |= append_seconds(out, atomic_load_explicit(&m->binlog_lag_ms,
	    RELAXED));
	rc |= tor_buf_appendf(out, "\n");
	rc |= header(out, "tor_checkpoint_age_seconds", "gauge",
	    "Seconds since this replica last wrote the checkpoint (NaN: never).");
	rc |= tor_buf_appendf(out, "tor_checkpoint_age_seconds ");
	if (cp == 0)
		rc |= tor_buf_appendf(out, "NaN");
	else
		rc |= append_seconds(out, tor_metrics_wall_ms() - cp);
	rc |= tor_buf_appendf(out, "\n");
	rc |= counter(out, "tor_checkpoint_restored_total",
	    "Leaderships that found no checkpoint in Redis and resumed from "
	    "Kafka's copy of it (Redis lost its data).",
	    &m->checkpoint_restored);
	rc |= counter(out, "tor_events_deduplicated_total",
	    "Rows replayed after a takeover that were not published again: "
	    "their partition already held them.", &m->deduplicated);
	rc |= counter(out, "tor_events_dedup_unknown_total",
	    "Rows replayed after a takeover whose partition could not tell "
	    "whether it held them (another binlog lineage, a tail not found): "
	    "published, at-least-once.", &m->dedup_unknown);
	rc |= counter(out, "tor_kafka_errors_total",
	    "Errors the Kafka producer reported: a broker unreachable or a "
	    "request failed (retried by the producer), or a fatal error.",
	    &m->kafka_errors);
	rc |= header(out, "tor_xa_prepared_transactions", "gauge",
	    "Prepared XA transactions whose outbox rows wait for their XA "
	    "COMMIT; each holds the checkpoint before its XA PREPARE.");
	rc |= tor_buf_appendf(out, "tor_xa_prepared_transactions %llu\n",
	    (unsigned long long)atomic_load_explicit(&m->xa_prepared,
	    RELAXED));
	rc |= header(out, "tor_xa_prepared_oldest_seconds", "gauge",
	    "How long the oldest of them has been prepared (from its binlog "
	    "time), 0 when none: the checkpoint has stayed before it as long.");
	rc |= tor_buf_appendf(out, "tor_xa_prepared_oldest_seconds ");
	rc |= append_seconds(out, xa == 0 ? 0 : tor_metrics_wall_ms() - xa);
	rc |= tor_buf_appendf(out, "\n");
	rc |= header(out, "tor_kafka_queue_messages", "gauge",
	    "Messages queued in the Kafka producer, not yet acknowledged.");
	rc |= tor_buf_appendf(out, "tor_kafka_queue_messages %lld\n",
	    (long long)atomic_load_explicit(&m->kafka_queue, RELAXED));
	return rc;
}

int
tor_metrics_render(const struct tor_metrics *m, const struct tor_elector *el,
    struct tor_buf *out)
{
	int rc = 0;

	rc |= render_elector(el, out);
	rc |= render_events(m, out);
	rc |= render_gauges(m, out);
	rc |= render_retention(m, out);
	rc |= render_latency(m, out);
	rc |= header(out, "tor_reconnects_total", "counter",
	    "Retries after a failed connection or operation, by target.");
	for (int i = 0; i < TOR_TARGET_N; i++)
		rc |= tor_buf_appendf(out,
		    "tor_reconnects_total{target=\"%s\"} %llu\n", targets[i],
		    (unsigned long long)atomic_load_explicit(&m->reconnects[i],
		    RELAXED));
	rc |= header(out, "tor_leader_yields_total", "counter",
	    "Leaderships given to a healthy standby after no progress for "
	    "ha.stall_ms, by the side that stalled.");
	for (int i = TOR_STALL_KAFKA; i < TOR_STALL_N; i++)
		rc |= tor_buf_appendf(out,
		    "tor_leader_yields_total{reason=\"%s\"} %llu\n",
		    tor_stall_reason(i),
		    (unsigned long long)atomic_load_explicit(&m->yields[i],
		    RELAXED));
	rc |= header(out, "tor_build_info", "gauge",
	    "Always 1; the version is the label.");
	rc |= tor_buf_appendf(out, "tor_build_info{version=\"%s\"} 1\n",
	    TOR_VERSION);
	rc |= header(out, "process_start_time_seconds", "gauge",
	    "When the process started, in seconds since the Unix epoch.");
	rc |= tor_buf_appendf(out, "process_start_time_seconds ");
	rc |= append_seconds(out, m->start_wall_ms);
	rc |= tor_buf_appendf(out, "\n");
	return rc != 0 ? -1 : 0;
}
