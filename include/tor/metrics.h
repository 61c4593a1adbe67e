/*
 * The relay's counters and gauges, and their Prometheus text exposition
 * (DESIGN.md §7).
 *
 * One struct tor_metrics lives in tor_relay_run for the life of the process.
 * The relay thread writes it and the HTTP thread reads it; every field is a
 * C11 atomic, so neither takes a lock and a scrape never slows the relay.
 * A scrape may see one counter updated and its neighbour not yet; each value
 * on its own is always whole.
 */
#ifndef TOR_METRICS_H
#define TOR_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tor/buf.h"
#include "tor/elector.h"
#include "tor/health.h"
#include "tor/version.h"

/* Topics counted by name; the 65th distinct topic and later ones are
 * counted under topic="other", so a template gone wild cannot grow the
 * scrape (or the memory) without bound. */
#define TOR_METRICS_TOPICS 64
#define TOR_METRICS_TOPIC_LEN 256       /* Kafka allows 249 characters */

/* Upper bounds of the publish latency buckets in ms; +Inf follows. */
#define TOR_METRICS_LATENCY_BUCKETS 13
extern const int64_t tor_metrics_latency_le_ms[TOR_METRICS_LATENCY_BUCKETS];

enum tor_skip_reason {
	TOR_SKIP_UNROUTED,      /* no route, outbox.unrouted = skip */
	TOR_SKIP_OVERSIZED,     /* over message.max.bytes, unrouted = skip */
	TOR_SKIP_UPDATE,        /* an UPDATE of an outbox row: never relayed */
	TOR_SKIP_DELETE,        /* a DELETE of an outbox row: never relayed */
	TOR_SKIP_N
};

enum tor_reconnect_target {
	TOR_TARGET_MYSQL,
	TOR_TARGET_REDIS,
	TOR_TARGET_KAFKA,
	TOR_TARGET_N
};

struct tor_metrics_topic {
	char name[TOR_METRICS_TOPIC_LEN];       /* written before it is counted */
	_Atomic uint64_t published;
};

struct tor_metrics {
	_Atomic uint64_t events_read;           /* binlog events parsed */

	/* Topics [0, n_topics) have their names; only the relay thread adds
	 * one, and publishes it by the release store of n_topics. */
	struct tor_metrics_topic topics[TOR_METRICS_TOPICS];
	_Atomic unsigned n_topics;
	_Atomic uint64_t published_other;
	unsigned last_topic;                    /* relay thread only: a cache */

	_Atomic uint64_t skipped[TOR_SKIP_N];
	_Atomic uint64_t reconnects[TOR_TARGET_N];

	/* Wall-clock ms minus the header timestamp (1 s resolution) of the
	 * last transaction read; kept while the binlog is idle. */
	_Atomic int64_t binlog_lag_ms;
	/* Wall-clock ms of the last checkpoint written (0: none yet). */
	_Atomic int64_t checkpoint_wall_ms;
	/* Messages the producer holds, not yet acknowledged. */
	_Atomic int64_t kafka_queue;
	/* Monotonic ms since when the leader's producer has reached no broker
	 * (0: it reaches one, or no leadership). */
	_Atomic int64_t kafka_down_since_ms;
	/* Leaderships that found no checkpoint in Redis and resumed from
	 * Kafka's copy (Redis lost its data). */
	_Atomic uint64_t checkpoint_restored;
	/* De-duplication at takeover: replayed rows not published again
	 * (their partition held them), and rows published without knowing
	 * (another lineage, a tail not found: at-least-once). */
	_Atomic uint64_t deduplicated;
	_Atomic uint64_t dedup_unknown;
	/* Prepared XA transactions whose outbox rows wait for their XA
	 * COMMIT (they hold the checkpoint), and the binlog time (wall-clock
	 * ms) of the oldest one's prepare (0: none). */
	_Atomic uint64_t xa_prepared;
	_Atomic int64_t xa_prepared_since_ms;
	/* Errors the Kafka producer reported (a broker unreachable, a request
	 * failed: librdkafka retries those; a fatal one). */
	_Atomic uint64_t kafka_errors;
	/* Leaderships given to a healthy standby after a stall, by kind
	 * (index TOR_STALL_NONE unused). */
	_Atomic uint64_t yields[TOR_STALL_N];
	/* The last binlog retention check of this replica's leaderships
	 * (src/retention.c): headroom bytes and seconds, the server's purge
	 * age and the seconds until it may take the checkpoint's file.
	 * TOR_RETENTION_UNKNOWN (rendered NaN) until a check knows, and
	 * TOR_RETENTION_NEVER (+Inf) where nothing purges by age. */
	_Atomic int64_t retention_bytes;
	_Atomic int64_t retention_s;
	_Atomic int64_t retention_expire_s;
	_Atomic int64_t retention_purge_s;
	/* Wall-clock ms when the process started (tor_metrics_init). */
	int64_t start_wall_ms;

	/* Publish latency: at each Kafka acknowledgement, wall-clock now
	 * minus the source row event's binlog timestamp.  Per bucket (not
	 * cumulative; the rendering adds them up), the last one is +Inf. */
	_Atomic uint64_t latency[TOR_METRICS_LATENCY_BUCKETS + 1];
	_Atomic uint64_t latency_sum_ms;

	/* For /healthz and /readyz (src/http.c): monotonic ms of the relay
	 * thread's last sign of life, of the last binlog event read while
	 * streaming (0: no stream open), and whether the relay's last Redis
	 * operation succeeded. */
	_Atomic int64_t relay_beat_ms;
	_Atomic int64_t stream_beat_ms;
	_Atomic bool redis_ok;
	/* The group's session has stopped for good while the process serves
	 * its other groups (set by whoever runs the group; the probes leave
	 * it out). */
	_Atomic bool halted;
};

/* One group as /metrics and the probes see it: its name (letters, digits,
 * '.', '_', '-': a label value without escaping), its metrics and its
 * elector (NULL renders as a follower without a token). */
struct tor_group_view {
	const char *group;
	const struct tor_metrics *m;
	const struct tor_elector *el;
};

/* Zeroes m, but for the retention figures, which start unknown. */
void tor_metrics_init(struct tor_metrics *m);

/* Relay thread only: one message handed to Kafka for topic. */
void tor_metrics_published(struct tor_metrics *m, const char *topic);

/* One acknowledged message, age_ms after its source event. */
void tor_metrics_latency(struct tor_metrics *m, int64_t age_ms);

int64_t tor_metrics_wall_ms(void);

/* The balancer's figures, in a replica of several groups (atomics: the
 * balancer writes them in the main thread, the HTTP thread reads them). */
struct tor_pool_metrics {
	_Atomic int members;            /* live members, this one included */
	_Atomic int counted;            /* of them healthy, settled, not draining */
	_Atomic int share;              /* -1: unknown (no beat) */
	_Atomic int leading;
	_Atomic bool config_mismatch;   /* a member runs other sources */
	_Atomic bool at_cap;            /* leading pool.max_leading */
	_Atomic uint64_t handovers;     /* groups handed over to balance */
	_Atomic uint64_t beats_failed;
};

/* The tor_pool_* series of the pool pool_name. */
int tor_metrics_render_pool(const char *pool_name,
    const struct tor_pool_metrics *pm, struct tor_buf *out);

/* Appends the text exposition format (version 0.0.4) of the n (>= 1)
 * groups of v to out: each family's HELP and TYPE once, then its samples
 * group by group, each with group="<name>" as its first label.  The
 * process's own series (tor_build_info, process_start_time_seconds, the
 * latter from v[0]) have no group.  Returns 0, or -1 when memory runs out
 * (out then holds a part). */
int tor_metrics_render(const struct tor_group_view *v, size_t n,
    struct tor_buf *out);

#endif
