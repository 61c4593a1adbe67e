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
#include <assert.h>
#include <ctype.h>
#include <stddef.h>
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

/* A sample's name and its group label, left open for more labels: the
 * caller appends them (",k=\"v\"") and then "} value\n". */
static int
open_sample(struct tor_buf *out, const char *name,
    const struct tor_group_view *v)
{
	return tor_buf_appendf(out, "%s{group=\"%s\"", name, v->group);
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

/* A field of struct tor_metrics by its offset (the family's `field`). */
static const _Atomic uint64_t *
u64_at(const struct tor_metrics *m, size_t off)
{
	return (const _Atomic uint64_t *)(const void *)((const char *)m + off);
}

static const _Atomic int64_t *
i64_at(const struct tor_metrics *m, size_t off)
{
	return (const _Atomic int64_t *)(const void *)((const char *)m + off);
}

struct family;
typedef int render_fn(struct tor_buf *out, const struct family *f,
    const struct tor_group_view *v);

/* One metric family: its HELP and TYPE, and how one group's samples of it
 * are written (field: the struct tor_metrics member some of them read). */
struct family {
	const char *name, *type, *help;
	render_fn *samples;
	size_t field;
};

/* An unsigned integer field, no other label. */
static int
plain_u64(struct tor_buf *out, const struct family *f,
    const struct tor_group_view *v)
{
	return open_sample(out, f->name, v) | tor_buf_appendf(out, "} %llu\n",
	    (unsigned long long)atomic_load_explicit(u64_at(v->m, f->field),
	    RELAXED));
}

static enum tor_elector_state
state_of(const struct tor_group_view *v)
{
	return v->el != NULL ? tor_elector_state(v->el) : TOR_FOLLOWER;
}

static int
leader(struct tor_buf *out, const struct family *f,
    const struct tor_group_view *v)
{
	return open_sample(out, f->name, v) | tor_buf_appendf(out, "} %d\n",
	    state_of(v) == TOR_LEADER);
}

static int
epoch(struct tor_buf *out, const struct family *f,
    const struct tor_group_view *v)
{
	return open_sample(out, f->name, v) | tor_buf_appendf(out, "} %llu\n",
	    (unsigned long long)(v->el != NULL ? tor_elector_token(v->el) : 0));
}

static int
states(struct tor_buf *out, const struct family *f,
    const struct tor_group_view *v)
{
	static const enum tor_elector_state all[] = {
		TOR_FOLLOWER, TOR_CANDIDATE, TOR_LEADER, TOR_STEPPING_DOWN,
	};
	enum tor_elector_state state = state_of(v);
	int rc = 0;

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		rc |= open_sample(out, f->name, v) | tor_buf_appendf(out,
		    ",state=\"%s\"} %d\n", tor_elector_state_name(all[i]),
		    all[i] == state);
	return rc;
}

static int
failovers(struct tor_buf *out, const struct family *f,
    const struct tor_group_view *v)
{
	return open_sample(out, f->name, v) | tor_buf_appendf(out, "} %llu\n",
	    (unsigned long long)(v->el != NULL ?
	    tor_elector_failovers(v->el) : 0));
}

static int
halted(struct tor_buf *out, const struct family *f,
    const struct tor_group_view *v)
{
	return open_sample(out, f->name, v) | tor_buf_appendf(out, "} %d\n",
	    atomic_load_explicit(&v->m->halted, RELAXED) ? 1 : 0);
}

static int
published(struct tor_buf *out, const struct family *f,
    const struct tor_group_view *v)
{
	const struct tor_metrics *m = v->m;
	unsigned n = atomic_load_explicit(&m->n_topics, memory_order_acquire);
	int rc = 0;

	/* Kafka topic names are [a-zA-Z0-9._-]: no label escaping needed. */
	for (unsigned i = 0; i < n; i++)
		rc |= open_sample(out, f->name, v) | tor_buf_appendf(out,
		    ",topic=\"%s\"} %llu\n", m->topics[i].name,
		    (unsigned long long)atomic_load_explicit(
		    &m->topics[i].published, RELAXED));
	return rc | open_sample(out, f->name, v) | tor_buf_appendf(out,
	    ",topic=\"other\"} %llu\n", (unsigned long long)
	    atomic_load_explicit(&m->published_other, RELAXED));
}

/* A per-label counter array: field is the array, names its labels. */
static int
by_label(struct tor_buf *out, const struct family *f,
    const struct tor_group_view *v, const char *label, int from, int to,
    const char *(*name_of)(int))
{
	int rc = 0;

	for (int i = from; i < to; i++)
		rc |= open_sample(out, f->name, v) | tor_buf_appendf(out,
		    ",%s=\"%s\"} %llu\n", label, name_of(i),
		    (unsigned long long)atomic_load_explicit(u64_at(v->m,
		    f->field + (size_t)i * sizeof(_Atomic uint64_t)), RELAXED));
	return rc;
}

static const char *
skip_reason(int i)
{
	return skip_reasons[i];
}

static const char *
target(int i)
{
	return targets[i];
}

static const char *
stall_reason(int i)
{
	return tor_stall_reason((enum tor_stall_kind)i);
}

static int
skipped(struct tor_buf *out, const struct family *f,
    const struct tor_group_view *v)
{
	return by_label(out, f, v, "reason", 0, TOR_SKIP_N, skip_reason);
}

static int
reconnects(struct tor_buf *out, const struct family *f,
    const struct tor_group_view *v)
{
	return by_label(out, f, v, "target", 0, TOR_TARGET_N, target);
}

static int
yields(struct tor_buf *out, const struct family *f,
    const struct tor_group_view *v)
{
	return by_label(out, f, v, "reason", TOR_STALL_KAFKA, TOR_STALL_N,
	    stall_reason);
}

/* Milliseconds (an int64_t field) as seconds. */
static int
seconds_i64(struct tor_buf *out, const struct family *f,
    const struct tor_group_view *v)
{
	return open_sample(out, f->name, v) | tor_buf_appendf(out, "} ") |
	    append_seconds(out, atomic_load_explicit(i64_at(v->m, f->field),
	    RELAXED)) | tor_buf_appendf(out, "\n");
}

/* Seconds since a wall-clock ms field; zero renders as none (0 s when
 * none_nan is false, NaN otherwise). */
static int
age_of(struct tor_buf *out, const struct family *f,
    const struct tor_group_view *v, bool none_nan)
{
	int64_t at = atomic_load_explicit(i64_at(v->m, f->field), RELAXED);
	int rc = open_sample(out, f->name, v) | tor_buf_appendf(out, "} ");

	if (at == 0 && none_nan)
		rc |= tor_buf_appendf(out, "NaN");
	else
		rc |= append_seconds(out, at == 0 ? 0 :
		    tor_metrics_wall_ms() - at);
	return rc | tor_buf_appendf(out, "\n");
}

static int
age_or_nan(struct tor_buf *out, const struct family *f,
    const struct tor_group_view *v)
{
	return age_of(out, f, v, true);
}

static int
age_or_zero(struct tor_buf *out, const struct family *f,
    const struct tor_group_view *v)
{
	return age_of(out, f, v, false);
}

static int
plain_i64(struct tor_buf *out, const struct family *f,
    const struct tor_group_view *v)
{
	return open_sample(out, f->name, v) | tor_buf_appendf(out, "} %lld\n",
	    (long long)atomic_load_explicit(i64_at(v->m, f->field), RELAXED));
}

/* A retention figure: NaN unknown, +Inf unbounded. */
static int
retention(struct tor_buf *out, const struct family *f,
    const struct tor_group_view *v)
{
	int64_t x = atomic_load_explicit(i64_at(v->m, f->field), RELAXED);
	int rc = open_sample(out, f->name, v);

	if (x == TOR_RETENTION_UNKNOWN)
		return rc | tor_buf_appendf(out, "} NaN\n");
	if (x == TOR_RETENTION_NEVER)
		return rc | tor_buf_appendf(out, "} +Inf\n");
	return rc | tor_buf_appendf(out, "} %lld\n", (long long)x);
}

static int
latency(struct tor_buf *out, const struct family *f,
    const struct tor_group_view *v)
{
	const struct tor_metrics *m = v->m;
	uint64_t cum = 0;
	int rc = 0;

	for (int i = 0; i <= TOR_METRICS_LATENCY_BUCKETS; i++) {
		cum += atomic_load_explicit(&m->latency[i], RELAXED);
		rc |= tor_buf_appendf(out, "%s_bucket{group=\"%s\",le=\"",
		    f->name, v->group);
		if (i < TOR_METRICS_LATENCY_BUCKETS)
			rc |= tor_buf_appendf(out, "%g",
			    (double)tor_metrics_latency_le_ms[i] / 1000);
		else
			rc |= tor_buf_appendf(out, "+Inf");
		rc |= tor_buf_appendf(out, "\"} %llu\n", (unsigned long long)cum);
	}
	rc |= tor_buf_appendf(out, "%s_sum{group=\"%s\"} ", f->name, v->group);
	rc |= append_seconds(out, (int64_t)atomic_load_explicit(
	    &m->latency_sum_ms, RELAXED));
	return rc | tor_buf_appendf(out, "\n%s_count{group=\"%s\"} %llu\n",
	    f->name, v->group, (unsigned long long)cum);
}

#define AT(member) offsetof(struct tor_metrics, member)

static const struct family families[] = {
	{ "tor_leader", "gauge",
	    "1 while this replica holds the lease, else 0.", leader, 0 },
	{ "tor_lease_epoch", "gauge",
	    "The fencing token of the lease this replica holds or last held.",
	    epoch, 0 },
	{ "tor_state", "gauge", "The elector's state: 1 for the current one.",
	    states, 0 },
	{ "tor_failovers_total", "counter",
	    "Times this replica became leader after its first leadership.",
	    failovers, 0 },
	{ "tor_group_halted", "gauge",
	    "1 once the group's session has stopped for good while the process "
	    "serves its other groups, else 0.", halted, 0 },
	{ "tor_events_read_total", "counter",
	    "Binlog events read (all kinds, heartbeats included).",
	    plain_u64, AT(events_read) },
	{ "tor_events_published_total", "counter",
	    "Outbox rows handed to the Kafka producer, by topic (a replay "
	    "after a restart or an aborted transaction counts again).",
	    published, 0 },
	{ "tor_events_skipped_total", "counter",
	    "Outbox rows not published, by reason.", skipped, AT(skipped) },
	{ "tor_binlog_lag_seconds", "gauge",
	    "Wall clock minus the binlog timestamp of the last transaction "
	    "read, as of when it was read.", seconds_i64, AT(binlog_lag_ms) },
	{ "tor_checkpoint_age_seconds", "gauge",
	    "Seconds since this replica last wrote the checkpoint (NaN: never).",
	    age_or_nan, AT(checkpoint_wall_ms) },
	{ "tor_checkpoint_restored_total", "counter",
	    "Leaderships that found no checkpoint in Redis and resumed from "
	    "Kafka's copy of it (Redis lost its data).",
	    plain_u64, AT(checkpoint_restored) },
	{ "tor_events_deduplicated_total", "counter",
	    "Rows replayed after a takeover that were not published again: "
	    "their partition already held them.", plain_u64, AT(deduplicated) },
	{ "tor_events_dedup_unknown_total", "counter",
	    "Rows replayed after a takeover whose partition could not tell "
	    "whether it held them (another binlog lineage, a tail not found): "
	    "published, at-least-once.", plain_u64, AT(dedup_unknown) },
	{ "tor_kafka_errors_total", "counter",
	    "Errors the Kafka producer reported: a broker unreachable or a "
	    "request failed (retried by the producer), or a fatal error.",
	    plain_u64, AT(kafka_errors) },
	{ "tor_xa_prepared_transactions", "gauge",
	    "Prepared XA transactions whose outbox rows wait for their XA "
	    "COMMIT; each holds the checkpoint before its XA PREPARE.",
	    plain_u64, AT(xa_prepared) },
	{ "tor_xa_prepared_oldest_seconds", "gauge",
	    "How long the oldest of them has been prepared (from its binlog "
	    "time), 0 when none: the checkpoint has stayed before it as long.",
	    age_or_zero, AT(xa_prepared_since_ms) },
	{ "tor_kafka_queue_messages", "gauge",
	    "Messages queued in the Kafka producer, not yet acknowledged.",
	    plain_i64, AT(kafka_queue) },
	{ "tor_binlog_retention_headroom_bytes", "gauge",
	    "Bytes of binlog the server holds behind the checkpoint (from its "
	    "oldest file to the checkpoint), at the leader's last check; NaN "
	    "unknown.", retention, AT(retention_bytes) },
	{ "tor_binlog_retention_headroom_seconds", "gauge",
	    "Seconds of binlog the server holds behind the checkpoint, at "
	    "least (oldest file's start to the checkpoint file's start).",
	    retention, AT(retention_s) },
	{ "tor_binlog_retention_expire_seconds", "gauge",
	    "The server's binlog purge age (binlog_expire_logs_seconds or "
	    "expire_logs_days), 0 when it purges nothing by age.",
	    retention, AT(retention_expire_s) },
	{ "tor_binlog_retention_purge_seconds", "gauge",
	    "Seconds until the server's expiry may purge the checkpoint's "
	    "binlog file (0: overdue, purged at its next rotation); +Inf when "
	    "nothing purges it by age.", retention, AT(retention_purge_s) },
	{ "tor_publish_latency_seconds", "histogram",
	    "At each Kafka acknowledgement: now minus the source row's binlog "
	    "timestamp (1 s resolution, so up to 1 s too high).", latency, 0 },
	{ "tor_reconnects_total", "counter",
	    "Retries after a failed connection or operation, by target.",
	    reconnects, AT(reconnects) },
	{ "tor_leader_yields_total", "counter",
	    "Leaderships given to a healthy standby after no progress for "
	    "ha.stall_ms, by the side that stalled.", yields, AT(yields) },
};

/* A group name is a label value as it is (config.c allows no other). */
static bool
group_name_ok(const char *g)
{
	if (g == NULL || *g == '\0')
		return false;
	for (; *g != '\0'; g++)
		if (!isalnum((unsigned char)*g) && *g != '.' && *g != '_' &&
		    *g != '-')
			return false;
	return true;
}

int
tor_metrics_render(const struct tor_group_view *v, size_t n,
    struct tor_buf *out)
{
	int rc = 0;

	assert(n >= 1);
	for (size_t g = 0; g < n; g++)
		assert(group_name_ok(v[g].group));
	for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
		const struct family *f = &families[i];

		rc |= header(out, f->name, f->type, f->help);
		for (size_t g = 0; g < n; g++)
			rc |= f->samples(out, f, &v[g]);
	}
	/* The process's own: one of each, whatever the groups. */
	rc |= header(out, "tor_build_info", "gauge",
	    "Always 1; the version is the label.");
	rc |= tor_buf_appendf(out, "tor_build_info{version=\"%s\"} 1\n",
	    TOR_VERSION);
	rc |= header(out, "process_start_time_seconds", "gauge",
	    "When the process started, in seconds since the Unix epoch.");
	rc |= tor_buf_appendf(out, "process_start_time_seconds ");
	rc |= append_seconds(out, v[0].m->start_wall_ms);
	rc |= tor_buf_appendf(out, "\n");
	return rc != 0 ? -1 : 0;
}

int
tor_metrics_render_pool(const char *pool_name,
    const struct tor_pool_metrics *pm, struct tor_buf *out)
{
	static const struct {
		const char *name, *type, *help;
		size_t off;
		bool is_u64, is_bool;
	} series[] = {
		{ "tor_pool_members", "gauge", "Live members of the pool, this "
		    "replica included.", offsetof(struct tor_pool_metrics,
		    members), false, false },
		{ "tor_pool_counted_members", "gauge", "Members the share counts: "
		    "healthy, settled and not draining.",
		    offsetof(struct tor_pool_metrics, counted), false, false },
		{ "tor_pool_share", "gauge", "Groups this replica should lead "
		    "(-1: unknown, balancing paused).",
		    offsetof(struct tor_pool_metrics, share), false, false },
		{ "tor_pool_leading", "gauge", "Groups this replica leads.",
		    offsetof(struct tor_pool_metrics, leading), false, false },
		{ "tor_pool_config_mismatch", "gauge", "1 while a member runs "
		    "other sources (balancing paused).",
		    offsetof(struct tor_pool_metrics, config_mismatch), false,
		    true },
		{ "tor_pool_at_cap", "gauge", "1 while this replica leads "
		    "pool.max_leading groups.",
		    offsetof(struct tor_pool_metrics, at_cap), false, true },
		{ "tor_pool_handovers_total", "counter", "Groups this replica "
		    "handed over to balance the pool.",
		    offsetof(struct tor_pool_metrics, handovers), true, false },
		{ "tor_pool_beats_failed_total", "counter", "Beats Redis did "
		    "not take (balancing paused meanwhile).",
		    offsetof(struct tor_pool_metrics, beats_failed), true,
		    false },
	};
	const char *base = (const char *)pm;
	long long v;
	int rc = 0;

	for (size_t i = 0; i < sizeof(series) / sizeof(series[0]); i++) {
		const void *at = base + series[i].off;

		if (series[i].is_u64)
			v = (long long)atomic_load((const _Atomic uint64_t *)at);
		else if (series[i].is_bool)
			v = atomic_load((const _Atomic bool *)at);
		else
			v = atomic_load((const _Atomic int *)at);
		rc |= header(out, series[i].name, series[i].type,
		    series[i].help);
		rc |= tor_buf_appendf(out, "%s{pool=\"%s\"} %lld\n",
		    series[i].name, pool_name, v);
	}
	return rc != 0 ? -1 : 0;
}
