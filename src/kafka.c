/*
 * The Kafka sink: one librdkafka producer whose delivery reports drive the
 * checkpoint (DESIGN.md §1, §2, §4).
 *
 * Two ideas make it work.  First, the producer is configured so that Kafka
 * itself keeps our promises: the idempotent producer (acks=all, at most 5
 * requests in flight, gapless) never reorders or silently drops a message,
 * and each key goes to the partition the configured producer family's hash
 * picks (kafka.partitioner: the Java producer's murmur2 by default).
 * Second, nothing happens behind the caller's back: delivery reports
 * are served only by tor_sink_poll/tor_sink_flush in the caller's thread, the
 * queue is bounded so memory stays flat, and a full queue is answered with
 * TOR_SINK_BUSY (back-pressure) instead of growing.  Every produced message
 * gets exactly one ack, with an error code when Kafka did not store it; the
 * checkpoint never moves past an unacknowledged message, so an error costs a
 * halt, never a lost row.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "tor/clock.h"
#include "tor/kafka.h"
#include "tor/log.h"

_Static_assert(TOR_SINK_ERR_TOO_LARGE == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
    "the ack code the relay looks for");

/* The message's seq rides in the librdkafka message opaque (a pointer). */
_Static_assert(sizeof(void *) >= sizeof(uint64_t),
    "seq is carried in a pointer-sized opaque");

/*
 * The queue bound.  librdkafka counts every message from produce until its
 * delivery report against both limits, so they bound everything the sink
 * holds.  Measured on librdkafka 2.0.2: a full queue of 8192 messages of
 * 200 bytes with the five tor.* headers adds 7.3 MiB of RSS (~900 bytes a
 * message, most of it librdkafka's own per-message and per-header
 * allocations; 16384 would take 14.5 MiB, half the process's 32 MiB).  The
 * 4 MiB byte cap bounds memory the same way when messages are large (69
 * messages of 60 KB: +4.3 MiB).  8192 messages is still dozens of batches at
 * linger.ms=5: against the mock cluster the sink moved ~200k msg/s with it,
 * no slower than with 16384.
 */
#define SINK_QUEUE_MAX_MESSAGES	"8192"
#define SINK_QUEUE_MAX_KBYTES	"4096"

/* tor_sink_free's last chance to deliver before it purges. */
#define SINK_FREE_FLUSH_MS	2000
/* How long one lookup of a topic's metadata may take. */
#define SINK_TOPIC_LOOKUP_MS	5000

/* The properties that carry the ordering and durability promises. */
static const char *const sink_fixed_props[] = {
	"enable.idempotence",
	"acks",
	"request.required.acks",	/* alias of acks */
	"partitioner",
	"transactional.id",
};

/*
 * The properties that concern the producer alone, as librdkafka 2.0.2 lists
 * them (CONFIGURATION.md, C/P = P; aliases and callbacks included).  The
 * readers take every other kafka.properties entry (security, sockets,
 * client.id, ...) but not these: set on a consumer, librdkafka ignores them
 * and warns at every start.  tests/unit/test_kafka.c checks the list
 * against the library tor is linked with.
 */
static const char *const producer_only_props[] = {
	"transactional.id", "transaction.timeout.ms", "enable.idempotence",
	"enable.gapless.guarantee", "queue.buffering.max.messages",
	"queue.buffering.max.kbytes", "queue.buffering.max.ms", "linger.ms",
	"message.send.max.retries", "retries", "retry.backoff.ms",
	"queue.buffering.backpressure.threshold", "compression.codec",
	"compression.type", "batch.num.messages", "batch.size",
	"delivery.report.only.error", "dr_cb", "dr_msg_cb",
	"sticky.partitioning.linger.ms", "request.required.acks", "acks",
	"request.timeout.ms", "message.timeout.ms", "delivery.timeout.ms",
	"queuing.strategy", "produce.offset.report", "partitioner",
	"partitioner_cb", "msg_order_cmp", "compression.level",
};

/* A topic produced to, with its librdkafka handle (kept for the sink's life:
 * outboxes route to a handful of topics). */
struct sink_topic {
	char *name;
	rd_kafka_topic_t *rkt;
	int partitions;         /* from the metadata, looked up until known,
				 * then fixed for the sink's life; 0 unknown */
	char lookup_error[128]; /* why the last lookup gave no count */
};

struct tor_sink {
	rd_kafka_t *rk;
	const struct tor_config *cfg;
	tor_sink_ack_fn *ack;
	void *ack_ctx;
	int in_flight;		/* produced minus acked; caller's thread only */
	int fatal_logged;
	_Atomic uint64_t *errors;       /* tor_sink_count_errors, or NULL */
	int64_t down_since_ms;  /* monotonic; 0 while a broker is up */
	struct sink_topic *topics;      /* handles of the topics produced to */
	size_t n_topics, cap_topics;
	int wake[2];            /* librdkafka writes [1] when reports wait */
	bool fenced;            /* transactional: another producer took over */
	char refused[768];      /* a broker refused TLS or SASL: why, or "" */
	bool (*guard)(void *);  /* may this producer still publish? */
	void *guard_ctx;
	int txn_timeout_ms;     /* transactional: the broker aborts past it */
	size_t max_message_bytes;       /* message.max.bytes */
	/* Messages the broker refused as too large (their tor.pos and
	 * size), until tor_sink_rejected collects them. */
	struct tor_sink_rejection rejected[TOR_SINK_MAX_REJECTED];
	size_t n_rejected;
};

/*
 * librdkafka logs from its own threads; tor_log writes each line with one
 * write(2), so that is safe.  Its LOG_ERR lines are mostly a broker that
 * cannot be reached, which it retries on its own: a warning for us.  What
 * really stops the sink comes through sink_error_cb as an error.
 */
static void
sink_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	enum tor_log_level l;

	(void)rk;
	if (level <= LOG_CRIT)
		l = TOR_LOG_ERROR;
	else if (level <= LOG_WARNING)
		l = TOR_LOG_WARN;
	else if (level <= LOG_INFO)
		l = TOR_LOG_INFO;
	else
		l = TOR_LOG_DEBUG;
	/* tor sets enable.gapless.guarantee on purpose: librdkafka's note that
	 * it is experimental would be a warning at every start. */
	if (strcmp(fac, "CONFWARN") == 0 &&
	    strstr(buf, "enable.gapless.guarantee") != NULL)
		l = TOR_LOG_DEBUG;
	tor_log(l, "kafka", "rdkafka %s: %s", fac, buf);
}

/*
 * A broker that refuses tor's TLS (its certificate does not verify, no
 * common protocol) or SASL (wrong credentials, mechanism not enabled) will
 * refuse it again: that is configuration, so tor stops (exit 1) the way a
 * Kafka Connect worker does, instead of retrying unseen.  librdkafka names
 * the broker in reason.  Keeps the first such failure in out; true when
 * code is one.
 */
static bool
note_refusal(rd_kafka_t *rk, int code, const char *reason, char *out,
    size_t cap)
{
	char mech[64] = "";
	size_t n = sizeof(mech);
	const char *hint = "kafka.properties: security.protocol, ssl.*";

	if (code != RD_KAFKA_RESP_ERR__AUTHENTICATION &&
	    code != RD_KAFKA_RESP_ERR__SSL)
		return false;
	if (out[0] != '\0')
		return true;
	if (code == RD_KAFKA_RESP_ERR__AUTHENTICATION) {
		hint = "kafka.properties: sasl.mechanisms, sasl.username, "
		    "sasl.password";
		/* Kafka 4 checks the SCRAM nonce strictly; librdkafka before
		 * 2.6.1 sends it wrong, so the right password fails too. */
		if (rd_kafka_conf_get(rd_kafka_conf(rk), "sasl.mechanisms",
		    mech, &n) == RD_KAFKA_CONF_OK &&
		    strncasecmp(mech, "SCRAM", 5) == 0 &&
		    rd_kafka_version() < 0x020601ff) {
			snprintf(out, cap, "kafka: %s (%s; with %s, librdkafka "
			    "%s fails on Kafka 4 brokers whatever the password: "
			    "they need librdkafka 2.6.1 or later, or PLAIN over "
			    "TLS)", reason, hint, mech, rd_kafka_version_str());
			return true;
		}
	}
	snprintf(out, cap, "kafka: %s (%s)", reason, hint);
	return true;
}

/*
 * Served by rd_kafka_poll in the caller's thread.  Most errors are transient
 * (a broker down, a connection reset) and librdkafka retries on its own; a
 * fatal one stops the producer for good, and tor_sink_poll/produce report it
 * from rd_kafka_fatal_error from then on.
 */
static void
sink_error_cb(rd_kafka_t *rk, int code, const char *reason, void *opaque)
{
	struct tor_sink *sink = opaque;
	char why[512];

	if (sink->errors != NULL)
		atomic_fetch_add_explicit(sink->errors, 1,
		    memory_order_relaxed);
	if (note_refusal(rk, code, reason, sink->refused,
	    sizeof(sink->refused)))
		return;
	if (code != RD_KAFKA_RESP_ERR__FATAL) {
		log_warn("kafka", "producer error %s: %s",
		    rd_kafka_err2name(code), reason);
		return;
	}
	code = rd_kafka_fatal_error(rk, why, sizeof(why));
	if (!sink->fatal_logged)
		log_error("kafka", "fatal producer error %s: %s; the sink "
		    "accepts no more messages", rd_kafka_err2name(code), why);
	sink->fatal_logged = 1;
}

/*
 * librdkafka's statistics, once a second (served by rd_kafka_poll): whether
 * any broker connection is up.  librdkafka says when all brokers went down
 * but not when one came back; its statistics say both.
 */
static int
sink_stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
	struct tor_sink *sink = opaque;

	(void)rk;
	(void)len;
	if (strstr(json, "\"state\":\"UP\"") != NULL)
		sink->down_since_ms = 0;
	else if (sink->down_since_ms == 0)
		sink->down_since_ms = tor_mono_ms();
	return 0;       /* json is librdkafka's to free */
}

void
tor_sink_count_errors(struct tor_sink *sink, _Atomic uint64_t *counter)
{
	sink->errors = counter;
}

int64_t
tor_sink_down_since(const struct tor_sink *sink)
{
	return sink->down_since_ms;
}

bool
tor_sink_reachable(struct tor_sink *sink, int timeout_ms)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t code;

	code = rd_kafka_metadata(sink->rk, 0, NULL, &md, timeout_ms);
	if (md != NULL)
		rd_kafka_metadata_destroy(md);
	return code == RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* A message the broker refused as too large: its tor.pos header names the
 * row, so that the relay can apply outbox.unrouted to it when it comes
 * again (the broker's message.max.bytes may be below the client's). */
static void
sink_note_rejected(struct tor_sink *sink, const rd_kafka_message_t *m)
{
	struct tor_sink_rejection *r;
	rd_kafka_headers_t *hdrs = NULL;
	const void *v = NULL;
	size_t len = 0, size = m->len + m->key_len, i = 0;
	const char *name;

	if (sink->n_rejected == TOR_SINK_MAX_REJECTED)
		return;
	r = &sink->rejected[sink->n_rejected];
	snprintf(r->pos, sizeof(r->pos), "?");
	if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
		while (rd_kafka_header_get_all(hdrs, i++, &name, &v, &len) ==
		    RD_KAFKA_RESP_ERR_NO_ERROR) {
			size += strlen(name) + len;
			if (strcmp(name, "tor.pos") == 0 && v != NULL)
				snprintf(r->pos, sizeof(r->pos), "%.*s",
				    (int)len, (const char *)v);
		}
	}
	r->bytes = size;
	sink->n_rejected++;
}

static void
sink_dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	struct tor_sink *sink = opaque;
	uint64_t seq = (uint64_t)(uintptr_t)m->_private;

	(void)rk;
	sink->in_flight--;
	if (m->err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
		sink_note_rejected(sink, m);
	/* rd_kafka_message_errstr would hand back the payload of a failed
	 * produce, which is not a C string: the code's own text is. */
	sink->ack(sink->ack_ctx, seq, m->err,
	    m->err != RD_KAFKA_RESP_ERR_NO_ERROR ? rd_kafka_err2str(m->err) :
	    "");
}

/* -1 with the reason when the producer has hit a fatal error, else 0. */
static int
sink_check_fatal(struct tor_sink *sink, tor_err *err)
{
	char why[256];
	rd_kafka_resp_err_t code;

	if (sink->refused[0] != '\0')
		return tor_err_set(err, "%s", sink->refused);
	code = rd_kafka_fatal_error(sink->rk, why, sizeof(why));
	if (code == RD_KAFKA_RESP_ERR_NO_ERROR)
		return 0;
	return tor_err_set(err, "kafka: fatal producer error %s: %s",
	    rd_kafka_err2name(code), why);
}

static int
sink_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value,
    tor_err *err)
{
	char errstr[512];

	if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) !=
	    RD_KAFKA_CONF_OK)
		return tor_err_set(err, "kafka: property %s: %s", name,
		    errstr);
	return 0;
}

bool
tor_sink_producer_only(const char *name)
{
	for (size_t i = 0; i < sizeof(producer_only_props) /
	    sizeof(producer_only_props[0]); i++)
		if (strcmp(name, producer_only_props[i]) == 0)
			return true;
	return false;
}

/*
 * Applies one "name=value" of kafka.properties to a producer's conf, or a
 * consumer's (which skips the producer's own).  tor_config already refuses
 * the safety settings; refusing them here again keeps the sink safe whoever
 * builds its config.  No error shows a value: it may be a secret.
 */
static int
apply_property(rd_kafka_conf_t *conf, const char *prop, bool consumer,
    tor_err *err)
{
	char name[256], shown[256];
	const char *eq = strchr(prop, '=');
	size_t n, i;

	if (eq == NULL || eq == prop)
		return tor_err_set(err, "kafka.properties: \"%s\": expected "
		    "name=value", tor_config_property_shown(prop, shown,
		    sizeof(shown)));
	n = (size_t)(eq - prop);
	if (n >= sizeof(name))
		return tor_err_set(err, "kafka.properties: \"%.40s...\": name "
		    "too long", tor_config_property_shown(prop, shown,
		    sizeof(shown)));
	memcpy(name, prop, n);
	name[n] = '\0';
	for (i = 0; i < sizeof(sink_fixed_props) / sizeof(sink_fixed_props[0]);
	    i++)
		if (strcmp(name, sink_fixed_props[i]) == 0)
			return tor_err_set(err, "kafka.properties: %s may not "
			    "be overridden (tor sets it to keep its ordering "
			    "and delivery promises)", name);
	if (consumer && tor_sink_producer_only(name))
		return 0;
	return sink_conf_set(conf, name, eq + 1, err);
}

/* Every kafka.properties entry, in order, after what tor set before. */
static int
apply_properties(rd_kafka_conf_t *conf, const struct tor_config *cfg,
    bool consumer, tor_err *err)
{
	for (size_t i = 0; i < cfg->kafka.n_properties; i++)
		if (apply_property(conf, cfg->kafka.properties[i], consumer,
		    err) == -1)
			return -1;
	return 0;
}

/* An operator who lowers transaction.timeout.ms lowers the time a message
 * may wait with it: librdkafka refuses a message timeout above it. */
static int
sink_clamp_message_timeout(rd_kafka_conf_t *conf, tor_err *err)
{
	char txn[32], msg[32];
	size_t n1 = sizeof(txn), n2 = sizeof(msg);

	if (rd_kafka_conf_get(conf, "transaction.timeout.ms", txn, &n1) !=
	    RD_KAFKA_CONF_OK || rd_kafka_conf_get(conf, "message.timeout.ms",
	    msg, &n2) != RD_KAFKA_CONF_OK)
		return 0;
	if (strtol(msg, NULL, 10) <= strtol(txn, NULL, 10))
		return 0;
	return sink_conf_set(conf, "message.timeout.ms", txn, err);
}

/* Our fixed settings, then the defaults an operator may tune, then theirs. */
static int
sink_configure(rd_kafka_conf_t *conf, const struct tor_config *cfg,
    tor_err *err)
{
	static const char *const defaults[][2] = {
		{ "enable.idempotence", "true" },
		{ "acks", "all" },
		/* Never used: tor names every message's partition. */
		{ "partitioner", "murmur2_random" },
		/* Whether a broker is reachable, for /readyz. */
		{ "statistics.interval.ms", "1000" },
		/* The most idempotence allows while keeping order. */
		{ "max.in.flight.requests.per.connection", "5" },
		/* A permanent error on one batch stops the producer instead
		 * of letting later batches of the partition overtake it. */
		{ "enable.gapless.guarantee", "true" },
		/* librdkafka retries until this expires; an expiry is an
		 * error ack, which halts the relay before the checkpoint
		 * moves past it. */
		{ "message.timeout.ms", "300000" },
		{ "linger.ms", "5" },
		{ "compression.type", "none" },
		{ "queue.buffering.max.messages", SINK_QUEUE_MAX_MESSAGES },
		{ "queue.buffering.max.kbytes", SINK_QUEUE_MAX_KBYTES },
	};
	char client_id[256];
	size_t i;

	if (cfg->kafka.brokers == NULL || cfg->kafka.brokers[0] == '\0')
		return tor_err_set(err, "kafka.brokers: not set");
	if (sink_conf_set(conf, "bootstrap.servers", cfg->kafka.brokers,
	    err) == -1)
		return -1;
	snprintf(client_id, sizeof(client_id), "tor-%s",
	    cfg->group != NULL ? cfg->group : "default");
	if (sink_conf_set(conf, "client.id", client_id, err) == -1)
		return -1;
	for (i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
		if (sink_conf_set(conf, defaults[i][0], defaults[i][1],
		    err) == -1)
			return -1;
	/* A transactional producer may not let a message live longer than
	 * its transaction. */
	if (cfg->kafka.mode == TOR_KAFKA_TRANSACTIONAL &&
	    (sink_conf_set(conf, "transaction.timeout.ms", "60000", err) == -1 ||
	    sink_conf_set(conf, "message.timeout.ms", "60000", err) == -1))
		return -1;
	if (apply_properties(conf, cfg, false, err) == -1)
		return -1;
	if (cfg->kafka.mode == TOR_KAFKA_TRANSACTIONAL &&
	    sink_clamp_message_timeout(conf, err) == -1)
		return -1;
	/* One transactional.id per group: a new leader's init_transactions
	 * fences the previous leader's producer (DESIGN.md §5). */
	if (cfg->kafka.mode == TOR_KAFKA_TRANSACTIONAL &&
	    sink_conf_set(conf, "transactional.id", cfg->kafka.transactional_id,
	    err) == -1)
		return -1;
	return 0;
}

/* A property as the producer ended up with it, defaults and operator's
 * properties applied: what the start-up line reports. */
static const char *
sink_conf_value(struct tor_sink *sink, const char *name, char *buf,
    size_t size)
{
	if (rd_kafka_conf_get(rd_kafka_conf(sink->rk), name, buf, &size) !=
	    RD_KAFKA_CONF_OK)
		snprintf(buf, size, "?");
	return buf;
}

struct tor_sink *
tor_sink_new(const struct tor_config *cfg, tor_sink_ack_fn *ack,
    void *ack_ctx, tor_err *err)
{
	struct tor_sink *sink;
	rd_kafka_conf_t *conf;
	rd_kafka_queue_t *q;
	char errstr[512], q_msgs[32], q_kb[32], linger[32], codec[32];
	char expiry[32];

	if ((sink = calloc(1, sizeof(*sink))) == NULL) {
		tor_err_set(err, "kafka: out of memory");
		return NULL;
	}
	sink->cfg = cfg;
	sink->ack = ack;
	sink->ack_ctx = ack_ctx;

	conf = rd_kafka_conf_new();
	if (sink_configure(conf, cfg, err) == -1) {
		rd_kafka_conf_destroy(conf);
		free(sink);
		return NULL;
	}
	rd_kafka_conf_set_opaque(conf, sink);
	rd_kafka_conf_set_log_cb(conf, sink_log_cb);
	rd_kafka_conf_set_error_cb(conf, sink_error_cb);
	rd_kafka_conf_set_stats_cb(conf, sink_stats_cb);
	rd_kafka_conf_set_dr_msg_cb(conf, sink_dr_msg_cb);

	/* On success rd_kafka_new owns conf; on failure we still do. */
	sink->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr,
	    sizeof(errstr));
	if (sink->rk == NULL) {
		rd_kafka_conf_destroy(conf);
		free(sink);
		tor_err_set(err, "kafka: cannot create producer for %s: %s",
		    cfg->kafka.brokers, errstr);
		return NULL;
	}
	if (pipe2(sink->wake, O_NONBLOCK | O_CLOEXEC) < 0) {
		tor_err_set(err, "kafka: pipe: %s", strerror(errno));
		rd_kafka_destroy(sink->rk);
		free(sink);
		return NULL;
	}
	sink->txn_timeout_ms = (int)strtol(sink_conf_value(sink,
	    "transaction.timeout.ms", expiry, sizeof(expiry)), NULL, 10);
	sink->max_message_bytes = (size_t)strtoul(sink_conf_value(sink,
	    "message.max.bytes", expiry, sizeof(expiry)), NULL, 10);
	/* Delivery reports wake a caller polling tor_sink_fd. */
	q = rd_kafka_queue_get_main(sink->rk);
	rd_kafka_queue_io_event_enable(q, sink->wake[1], "r", 1);
	rd_kafka_queue_destroy(q);
	log_info("kafka", "producer %s for %s: %s, acks=all, "
	    "partitioner %s, queue %s messages / %s KiB, linger.ms=%s, "
	    "compression %s, message.timeout.ms=%s", rd_kafka_name(sink->rk),
	    cfg->kafka.brokers, cfg->kafka.mode == TOR_KAFKA_TRANSACTIONAL ?
	    "transactional" : "idempotent",
	    tor_config_partitioner_name(cfg->kafka.partitioner),
	    sink_conf_value(sink, "queue.buffering.max.messages", q_msgs,
	    sizeof(q_msgs)),
	    sink_conf_value(sink, "queue.buffering.max.kbytes", q_kb,
	    sizeof(q_kb)),
	    sink_conf_value(sink, "linger.ms", linger, sizeof(linger)),
	    sink_conf_value(sink, "compression.type", codec, sizeof(codec)),
	    sink_conf_value(sink, "message.timeout.ms", expiry,
	    sizeof(expiry)));
	return sink;
}

/*
 * Whatever is still queued is purged (its acks come with a purge error), so
 * the caller's bookkeeping sees every seq exactly once and rd_kafka_destroy
 * has nothing to wait for.  Never flushes: a caller that may still publish
 * flushes first (tor_sink_flush), one that may not must not.
 */
void
tor_sink_free(struct tor_sink *sink)
{
	rd_kafka_queue_t *q;

	if (sink == NULL)
		return;
	rd_kafka_poll(sink->rk, 0);
	if (sink->in_flight > 0) {
		log_warn("kafka", "closing with %d messages unacknowledged: "
		    "purging them (the checkpoint stays before them)",
		    sink->in_flight);
		rd_kafka_purge(sink->rk,
		    RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		/* Purged messages' reports are queued; serve them. */
		rd_kafka_poll(sink->rk, 0);
		if (sink->in_flight > 0)
			log_warn("kafka", "%d messages never got a delivery "
			    "report", sink->in_flight);
	}
	for (size_t i = 0; i < sink->n_topics; i++) {
		rd_kafka_topic_destroy(sink->topics[i].rkt);
		free(sink->topics[i].name);
	}
	free(sink->topics);
	q = rd_kafka_queue_get_main(sink->rk);
	rd_kafka_queue_io_event_enable(q, -1, NULL, 0);
	rd_kafka_queue_destroy(q);
	rd_kafka_destroy(sink->rk);
	close(sink->wake[0]);
	close(sink->wake[1]);
	free(sink);
}

void
tor_sink_set_guard(struct tor_sink *sink, bool (*may_publish)(void *ctx),
    void *ctx)
{
	sink->guard = may_publish;
	sink->guard_ctx = ctx;
}

static bool
sink_may_publish(const struct tor_sink *sink)
{
	return sink->guard == NULL || sink->guard(sink->guard_ctx);
}

static bool
sink_out_of_step_code(int err)
{
	return err == RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER ||
	    err == RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID;
}

bool
tor_sink_out_of_step(const struct tor_sink *sink, int err)
{
	return sink_out_of_step_code(err) ||
	    sink_out_of_step_code(rd_kafka_fatal_error(sink->rk, NULL, 0));
}

bool
tor_sink_partition_lost(int err)
{
	return err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
	    err == RD_KAFKA_RESP_ERR__DESTROY;
}

size_t
tor_sink_rejected(struct tor_sink *sink, struct tor_sink_rejection *out,
    size_t max)
{
	size_t n = sink->n_rejected < max ? sink->n_rejected : max;

	memcpy(out, sink->rejected, n * sizeof(*out));
	sink->n_rejected = 0;
	return n;
}

int
tor_sink_txn_timeout_ms(const struct tor_sink *sink)
{
	return sink->txn_timeout_ms;
}

static int
sink_ms_left(int64_t deadline)
{
	int64_t left = deadline - tor_mono_ms();

	return left > 0 ? (int)left : 0;
}

static const struct rd_kafka_metadata_topic *
sink_find_topic(const struct rd_kafka_metadata *md, const char *name)
{
	int i;

	for (i = 0; i < md->topic_cnt; i++)
		if (strcmp(md->topics[i].topic, name) == 0)
			return &md->topics[i];
	return NULL;
}

/* Reports a configured topic that already exists; a different partition
 * count is worth a warning, since it decides where each key lands. */
static void
sink_log_existing(const struct tor_topic_spec *spec,
    const struct rd_kafka_metadata_topic *t)
{
	if (t->partition_cnt != spec->partitions)
		log_warn("kafka", "topic=%s exists with %d partitions, "
		    "kafka.topics says %d: left as it is", spec->name,
		    t->partition_cnt, spec->partitions);
	else
		log_info("kafka", "topic=%s exists partitions=%d", spec->name,
		    t->partition_cnt);
}

/* Whether a failed topic listing or creation is worth trying again: Kafka
 * out of reach or busy (a broker down, an election, fewer brokers up than
 * the replication asks for), not a refusal that stays. */
static bool
sink_transient(rd_kafka_resp_err_t code)
{
	switch (code) {
	case RD_KAFKA_RESP_ERR__TRANSPORT:
	case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
	case RD_KAFKA_RESP_ERR__TIMED_OUT:
	case RD_KAFKA_RESP_ERR__WAIT_COORD:
	case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
	case RD_KAFKA_RESP_ERR_NOT_CONTROLLER:
	case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
	case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
	case RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR:
	case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
		return true;
	default:
		return false;
	}
}

/*
 * Sends one CreateTopics request for the topics in want[] and waits for its
 * result.  "Already exists" (another replica was quicker) is success.
 */
static int
sink_create_missing(struct tor_sink *sink, const struct tor_topic_spec **want,
    size_t n, int timeout_ms, tor_err *err)
{
	rd_kafka_NewTopic_t **nts;
	rd_kafka_AdminOptions_t *opts;
	rd_kafka_queue_t *q;
	rd_kafka_event_t *ev;
	const rd_kafka_CreateTopics_result_t *res;
	const rd_kafka_topic_result_t **trs;
	char errstr[512], names[400];
	size_t i, ntrs, at = 0;
	int rc = 0;

	names[0] = '\0';
	for (i = 0; i < n; i++)
		at += (size_t)snprintf(names + at, at < sizeof(names) ?
		    sizeof(names) - at : 0, "%s%s", i > 0 ? ", " : "",
		    want[i]->name);

	if ((nts = calloc(n, sizeof(*nts))) == NULL)
		return tor_err_set(err, "kafka: out of memory");
	for (i = 0; i < n; i++) {
		nts[i] = rd_kafka_NewTopic_new(want[i]->name,
		    want[i]->partitions, want[i]->replication, errstr,
		    sizeof(errstr));
		if (nts[i] == NULL) {
			rc = tor_err_set(err, "kafka: topic %s: %s",
			    want[i]->name, errstr);
			goto out;
		}
		/* The checkpoint topic keeps the last record of each group:
		 * compacted, so it stays small and is read fast; on three
		 * replicas an acknowledged record survives a broker's loss. */
		if (sink->cfg->kafka.checkpoint_topic != NULL &&
		    strcmp(want[i]->name, sink->cfg->kafka.checkpoint_topic) ==
		    0) {
			rd_kafka_NewTopic_set_config(nts[i], "cleanup.policy",
			    "compact");
			if (want[i]->replication >= 3)
				rd_kafka_NewTopic_set_config(nts[i],
				    "min.insync.replicas", "2");
		}
	}
	opts = rd_kafka_AdminOptions_new(sink->rk,
	    RD_KAFKA_ADMIN_OP_CREATETOPICS);
	rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, errstr,
	    sizeof(errstr));
	/* Let the broker answer only once the topics are usable. */
	rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, errstr,
	    sizeof(errstr));
	q = rd_kafka_queue_new(sink->rk);
	rd_kafka_CreateTopics(sink->rk, nts, n, opts, q);
	rd_kafka_AdminOptions_destroy(opts);

	/* The request timeout answers first; the margin only guards
	 * against a result that never comes. */
	ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
	rd_kafka_queue_destroy(q);
	if (ev == NULL) {
		tor_err_set(err, "kafka: creating topics %s: no answer in %d "
		    "ms", names, timeout_ms);
		rc = TOR_SINK_RETRY;
		goto out;
	}
	if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		rd_kafka_resp_err_t code = rd_kafka_event_error(ev);

		if (!sink_transient(code))
			for (i = 0; i < n; i++)
				log_error("kafka", "topic=%s not created: %s",
				    want[i]->name,
				    rd_kafka_event_error_string(ev));
		tor_err_set(err, "kafka: creating topics %s: %s (%s)", names,
		    rd_kafka_event_error_string(ev), rd_kafka_err2name(code));
		rc = sink_transient(code) ? TOR_SINK_RETRY : -1;
		rd_kafka_event_destroy(ev);
		goto out;
	}
	res = rd_kafka_event_CreateTopics_result(ev);
	trs = rd_kafka_CreateTopics_result_topics(res, &ntrs);
	for (i = 0; i < ntrs; i++) {
		const char *name = rd_kafka_topic_result_name(trs[i]);
		rd_kafka_resp_err_t code = rd_kafka_topic_result_error(trs[i]);

		if (code == RD_KAFKA_RESP_ERR_NO_ERROR) {
			log_info("kafka", "topic=%s created", name);
		} else if (code == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
			log_info("kafka", "topic=%s exists (created "
			    "meanwhile)", name);
		} else if (rc != -1) {
			/* A refusal outweighs a transient failure. */
			if (!sink_transient(code))
				log_error("kafka", "topic=%s not created: %s",
				    name,
				    rd_kafka_topic_result_error_string(trs[i]));
			tor_err_set(err, "kafka: creating topic %s: %s (%s)",
			    name, rd_kafka_topic_result_error_string(trs[i]),
			    rd_kafka_err2name(code));
			rc = sink_transient(code) ? TOR_SINK_RETRY : -1;
		}
	}
	rd_kafka_event_destroy(ev);
out:
	for (i = 0; i < n; i++)
		if (nts[i] != NULL)
			rd_kafka_NewTopic_destroy(nts[i]);
	free(nts);
	return rc;
}

/* A topic's cleanup.policy as broker `broker` has it, into value; -1 with
 * the reason when it does not tell (the dev broker, an ACL without
 * DescribeConfigs).  Asked of a given broker: librdkafka would otherwise
 * wait for the controller, which the dev broker never names. */
static int
sink_cleanup_policy(struct tor_sink *sink, const char *topic, int32_t broker,
    char *value, size_t cap, int timeout_ms, tor_err *err)
{
	rd_kafka_ConfigResource_t *res;
	rd_kafka_AdminOptions_t *opts;
	rd_kafka_queue_t *q;
	rd_kafka_event_t *ev;
	const rd_kafka_ConfigResource_t **rs;
	const rd_kafka_ConfigEntry_t **entries;
	size_t nrs = 0, n = 0;
	char errstr[512];
	int rc = -1;

	res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
	opts = rd_kafka_AdminOptions_new(sink->rk,
	    RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
	rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, errstr,
	    sizeof(errstr));
	rd_kafka_AdminOptions_set_broker(opts, broker, errstr, sizeof(errstr));
	q = rd_kafka_queue_new(sink->rk);
	rd_kafka_DescribeConfigs(sink->rk, &res, 1, opts, q);
	rd_kafka_AdminOptions_destroy(opts);
	rd_kafka_ConfigResource_destroy(res);
	/* The request timeout answers first; the margin only guards
	 * against a result that never comes. */
	ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
	rd_kafka_queue_destroy(q);
	if (ev == NULL)
		return tor_err_set(err, "no answer in %d ms", timeout_ms);
	if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		tor_err_set(err, "%s", rd_kafka_event_error_string(ev));
		goto out;
	}
	rs = rd_kafka_DescribeConfigs_result_resources(
	    rd_kafka_event_DescribeConfigs_result(ev), &nrs);
	if (nrs != 1 || rd_kafka_ConfigResource_error(rs[0]) !=
	    RD_KAFKA_RESP_ERR_NO_ERROR) {
		tor_err_set(err, "%s", nrs != 1 ? "no result" :
		    rd_kafka_ConfigResource_error_string(rs[0]));
		goto out;
	}
	entries = rd_kafka_ConfigResource_configs(rs[0], &n);
	for (size_t i = 0; i < n && rc != 0; i++)
		if (strcmp(rd_kafka_ConfigEntry_name(entries[i]),
		    "cleanup.policy") == 0 &&
		    rd_kafka_ConfigEntry_value(entries[i]) != NULL) {
			snprintf(value, cap, "%s",
			    rd_kafka_ConfigEntry_value(entries[i]));
			rc = 0;
		}
	if (rc != 0)
		tor_err_set(err, "cleanup.policy not listed");
out:
	rd_kafka_event_destroy(ev);
	return rc;
}

/*
 * A checkpoint topic made by someone else.  Not compacted, retention may
 * delete a group's last position record, and a replica that then finds no
 * Redis checkpoint starts from mysql.start (rows lost or replayed): refused.
 * Fewer replicas than the cluster allows is the operator's trade-off to
 * make, so a warning.
 */
static int
sink_check_checkpoint_topic(struct tor_sink *sink,
    const struct rd_kafka_metadata_topic *t, int brokers, int timeout_ms,
    tor_err *err)
{
	int want = brokers < 3 ? brokers : 3;
	char policy[64];
	tor_err why;

	if (t->partition_cnt > 0 && t->partitions[0].replica_cnt < want)
		log_warn("kafka", "checkpoint topic %s has %d replica(s) on %d "
		    "brokers: a broker's loss can take the groups' position "
		    "records with it (%d replicas recommended)", t->topic,
		    t->partitions[0].replica_cnt, brokers, want);
	if (t->partition_cnt == 0 || sink_cleanup_policy(sink, t->topic,
	    t->partitions[0].leader, policy, sizeof(policy), timeout_ms,
	    &why) < 0) {
		log_warn("kafka", "checkpoint topic %s: its cleanup.policy is "
		    "not known (%s): not checked", t->topic,
		    t->partition_cnt == 0 ? "no partitions" : why.msg);
		return 0;
	}
	if (strcmp(policy, "compact") != 0)
		return tor_err_set(err, "kafka: checkpoint topic %s has "
		    "cleanup.policy=%s: retention may delete a group's last "
		    "position record; set cleanup.policy=compact on it, or name "
		    "another kafka.checkpoint_topic", t->topic, policy);
	return 0;
}

/*
 * Lists every topic (one metadata request for all of them: a lookup of a
 * single name auto-creates it on brokers with auto.create.topics.enable, and
 * on the dev broker, with the wrong partition count), then creates only the
 * configured ones that are missing.  The dev broker cannot CreateTopics
 * (DESIGN.md §9) but pre-creates the configured topics, so nothing is sent.
 */
int
tor_sink_create_topics(struct tor_sink *sink, int timeout_ms, tor_err *err)
{
	const struct tor_config *cfg = sink->cfg;
	const struct rd_kafka_metadata *md;
	const struct rd_kafka_metadata_topic *t;
	const struct tor_topic_spec **want;
	struct tor_topic_spec checkpoints = {
		.name = cfg->kafka.checkpoint_topic, .partitions = 1,
	};
	rd_kafka_resp_err_t code;
	int64_t deadline = tor_mono_ms() + timeout_ms;
	size_t i, n = 0;
	int rc = 0;

	code = rd_kafka_metadata(sink->rk, 1, NULL, &md, timeout_ms);
	if (code != RD_KAFKA_RESP_ERR_NO_ERROR) {
		tor_err_set(err, "kafka: listing topics on %s: %s",
		    cfg->kafka.brokers, rd_kafka_err2str(code));
		return sink_transient(code) ? TOR_SINK_RETRY : -1;
	}
	if ((want = calloc(cfg->kafka.n_topics + 1, sizeof(*want))) == NULL) {
		rd_kafka_metadata_destroy(md);
		return tor_err_set(err, "kafka: out of memory");
	}
	for (i = 0; i < cfg->kafka.n_topics; i++) {
		const struct tor_topic_spec *spec = &cfg->kafka.topics[i];

		if ((t = sink_find_topic(md, spec->name)) != NULL &&
		    t->err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
			sink_log_existing(spec, t);
		else
			want[n++] = spec;
	}
	/* The position records need their topic in both modes; replicated
	 * like Kafka's own internal topics, as far as the cluster allows. */
	t = cfg->kafka.checkpoint_topic != NULL ?
	    sink_find_topic(md, cfg->kafka.checkpoint_topic) : NULL;
	if (t != NULL && t->err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
		rc = sink_check_checkpoint_topic(sink, t, md->broker_cnt,
		    sink_ms_left(deadline), err);
	} else if (cfg->kafka.checkpoint_topic != NULL) {
		checkpoints.replication = md->broker_cnt < 3 ? md->broker_cnt : 3;
		want[n++] = &checkpoints;
	}
	rd_kafka_metadata_destroy(md);
	if (rc == 0 && n > 0)
		rc = sink_create_missing(sink, want, n, sink_ms_left(deadline),
		    err);
	free(want);
	return rc;
}

/*
 * A topic's partition count, from a lookup of its metadata.  It stays
 * unknown (0) when the lookup fails (Kafka slow or out of reach, a topic
 * being created): nothing is produced there until a later lookup knows it,
 * since a row placed without it could not be found again at a takeover.
 */
static void
sink_lookup(struct tor_sink *sink, struct sink_topic *t)
{
	const struct rd_kafka_metadata *md;
	rd_kafka_resp_err_t code;

	code = rd_kafka_metadata(sink->rk, 0, t->rkt, &md,
	    SINK_TOPIC_LOOKUP_MS);
	if (code != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(t->lookup_error, sizeof(t->lookup_error), "%s",
		    rd_kafka_err2str(code));
		return;
	}
	if (md->topic_cnt != 1)
		snprintf(t->lookup_error, sizeof(t->lookup_error), "no "
		    "metadata");
	else if (md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR)
		snprintf(t->lookup_error, sizeof(t->lookup_error), "%s",
		    rd_kafka_err2str(md->topics[0].err));
	else if ((t->partitions = md->topics[0].partition_cnt) <= 0)
		snprintf(t->lookup_error, sizeof(t->lookup_error), "no "
		    "partitions");
	rd_kafka_metadata_destroy(md);
}

/*
 * The topic's entry, made on first use and looked up at once: a topic
 * librdkafka first meets in produce waits for its next periodic metadata
 * refresh (up to a second), and the bounded queue fills up meanwhile.
 * NULL when librdkafka refuses the name.
 */
static struct sink_topic *
sink_topic_made(struct tor_sink *sink, const char *name)
{
	struct sink_topic *t;
	rd_kafka_topic_t *rkt;

	for (size_t i = 0; i < sink->n_topics; i++)
		if (strcmp(sink->topics[i].name, name) == 0)
			return &sink->topics[i];
	if (sink->n_topics == sink->cap_topics) {
		size_t cap = sink->cap_topics ? 2 * sink->cap_topics : 8;

		t = realloc(sink->topics, cap * sizeof(*t));
		if (t == NULL)
			return NULL;
		sink->topics = t;
		sink->cap_topics = cap;
	}
	if ((rkt = rd_kafka_topic_new(sink->rk, name, NULL)) == NULL)
		return NULL;
	t = &sink->topics[sink->n_topics];
	memset(t, 0, sizeof(*t));
	if ((t->name = strdup(name)) == NULL) {
		rd_kafka_topic_destroy(rkt);
		return NULL;
	}
	t->rkt = rkt;
	sink->n_topics++;
	sink_lookup(sink, t);
	return t;
}

/* The handle alone (the checkpoint topic's partition 0 needs no count). */
static rd_kafka_topic_t *
sink_topic(struct tor_sink *sink, const char *name)
{
	struct sink_topic *t = sink_topic_made(sink, name);

	return t != NULL ? t->rkt : NULL;
}

/* The entry of a topic rows go to: looked up again while its count is
 * unknown. */
static struct sink_topic *
sink_topic_entry(struct tor_sink *sink, const char *name)
{
	struct sink_topic *t = sink_topic_made(sink, name);

	if (t != NULL && t->partitions <= 0)
		sink_lookup(sink, t);
	return t;
}

int
tor_sink_partitions(struct tor_sink *sink, const char *topic, tor_err *err)
{
	struct sink_topic *t = sink_topic_entry(sink, topic);

	if (t == NULL)
		return tor_err_set(err, "kafka: topic %s: %s", topic,
		    rd_kafka_err2str(rd_kafka_last_error()));
	if (t->partitions <= 0)
		return tor_err_set(err, "kafka: topic %s: partition count "
		    "unknown (%s): nothing is produced there until it is known",
		    topic, t->lookup_error);
	return t->partitions;
}

/* tor.partitioning: how this sink places rows in t. */
static void
sink_placement(const struct tor_sink *sink, const struct sink_topic *t,
    char *buf, size_t cap)
{
	snprintf(buf, cap, "%s/%d",
	    tor_config_partitioner_name(sink->cfg->kafka.partitioner),
	    t->partitions);
}

int
tor_sink_placement(struct tor_sink *sink, const char *topic, char *buf,
    size_t cap, tor_err *err)
{
	struct sink_topic *t;

	if (tor_sink_partitions(sink, topic, err) < 0)
		return -1;
	t = sink_topic_entry(sink, topic);
	sink_placement(sink, t, buf, cap);
	return 0;
}

/* Bytes of one header as librdkafka counts it against message.max.bytes:
 * name and value, each after a length of at most 5 bytes (a varint). */
#define SINK_HEADER_FRAMING	10

int
tor_sink_fits(struct tor_sink *sink, const struct tor_message *msg)
{
	size_t least = (msg->key != NULL ? msg->key_len : 0) +
	    (msg->value != NULL ? msg->value_len : 0), most;
	struct sink_topic *t;
	char placement[48];

	if (msg->topic == NULL ||
	    (t = sink_topic_entry(sink, msg->topic)) == NULL ||
	    t->partitions <= 0)
		return -1;
	sink_placement(sink, t, placement, sizeof(placement));
	least += strlen("tor.partitioning") + strlen(placement);
	most = least + SINK_HEADER_FRAMING;
	for (size_t i = 0; i < msg->n_headers; i++) {
		least += msg->headers[i].name_len + msg->headers[i].len;
		most += msg->headers[i].name_len + msg->headers[i].len +
		    SINK_HEADER_FRAMING;
	}
	if (most <= sink->max_message_bytes)
		return 1;
	return least > sink->max_message_bytes ? 0 : -1;
}

/* The header's value, or NULL. */
static const struct tor_header *
find_header(const struct tor_message *msg, const char *name)
{
	for (size_t i = 0; i < msg->n_headers; i++)
		if (strcmp(msg->headers[i].name, name) == 0)
			return &msg->headers[i];
	return NULL;
}

/* The partition of msg in topic t (see tor_sink_partition): the row's
 * (columns.partition), else the configured producer family's hash of the
 * key.  A row without a key goes
 * where its tor.pos hashes, so that a replay of it lands where it landed
 * before (a random partition could not be looked at).  librdkafka's
 * functions are the families' own: murmur2 the Java producer's (sign bit
 * cleared), fnv1a Sarama's (absolute value of the signed hash), crc32 its
 * "consistent". */
static int32_t
topic_partition(const struct sink_topic *t, const struct tor_message *msg,
    enum tor_partitioner how)
{
	const struct tor_header *pos;
	const void *key = "";
	size_t len = 0;

	/* columns.partition's, in range (the relay checked it). */
	if (msg->partition_given && !msg->partition_null)
		return (int32_t)msg->partition;
	if (t->partitions <= 0)
		return -1;
	if (msg->key != NULL) {
		key = msg->key;
		len = msg->key_len;
	} else if ((pos = find_header(msg, "tor.pos")) != NULL &&
	    pos->value != NULL) {
		key = pos->value;
		len = pos->len;
	}
	switch (how) {
	case TOR_PARTITIONER_FNV1A:
		return rd_kafka_msg_partitioner_fnv1a(t->rkt, key, len,
		    t->partitions, NULL, NULL);
	case TOR_PARTITIONER_CRC32:
		return rd_kafka_msg_partitioner_consistent(t->rkt, key, len,
		    t->partitions, NULL, NULL);
	case TOR_PARTITIONER_MURMUR2:
	default:
		return rd_kafka_msg_partitioner_murmur2(t->rkt, key, len,
		    t->partitions, NULL, NULL);
	}
}

int
tor_sink_partition(struct tor_sink *sink, const struct tor_message *msg)
{
	struct sink_topic *t;

	if (msg->topic == NULL ||
	    (t = sink_topic_entry(sink, msg->topic)) == NULL)
		return -1;
	return topic_partition(t, msg, sink->cfg->kafka.partitioner);
}

int
tor_sink_partition_as(struct tor_sink *sink, const struct tor_message *msg,
    const char *placement)
{
	static const enum tor_partitioner families[] = {
		TOR_PARTITIONER_MURMUR2, TOR_PARTITIONER_FNV1A,
		TOR_PARTITIONER_CRC32,
	};
	const char *slash = strchr(placement, '/');
	struct sink_topic *t, then;
	char *end;
	long n;

	if (slash == NULL || msg->topic == NULL ||
	    (t = sink_topic_entry(sink, msg->topic)) == NULL)
		return -1;
	n = strtol(slash + 1, &end, 10);
	if (*end != '\0' || slash[1] == '\0' || n <= 0 || n > INT32_MAX)
		return -1;
	then = *t;
	then.partitions = (int)n;
	for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
		const char *name = tor_config_partitioner_name(families[i]);

		if (strlen(name) == (size_t)(slash - placement) &&
		    strncmp(placement, name, strlen(name)) == 0)
			return topic_partition(&then, msg, families[i]);
	}
	return -1;
}

/* One librdkafka header list from the message's headers, and
 * tor.partitioning: a later takeover compares a row with a partition's
 * newest message only where that message was placed as it would be now. */
static rd_kafka_headers_t *
sink_headers(const struct tor_sink *sink, const struct sink_topic *t,
    const struct tor_message *msg)
{
	rd_kafka_headers_t *hdrs;
	char placement[48];
	size_t i;

	hdrs = rd_kafka_headers_new(msg->n_headers + 1);
	for (i = 0; i < msg->n_headers; i++)
		rd_kafka_header_add(hdrs, msg->headers[i].name,
		    (ssize_t)msg->headers[i].name_len,
		    msg->headers[i].value, (ssize_t)msg->headers[i].len);
	sink_placement(sink, t, placement, sizeof(placement));
	rd_kafka_header_add(hdrs, "tor.partitioning", -1, placement, -1);
	return hdrs;
}

int
tor_sink_produce(struct tor_sink *sink, const struct tor_message *msg,
    uint64_t seq, tor_err *err)
{
	rd_kafka_headers_t *hdrs;
	rd_kafka_topic_t *rkt;
	rd_kafka_resp_err_t code;
	size_t key_len = msg->key != NULL ? msg->key_len : 0;
	size_t value_len = msg->value != NULL ? msg->value_len : 0;
	struct sink_topic *t;
	int32_t partition;

	if (msg->topic == NULL || msg->topic[0] == '\0')
		return tor_err_set(err, "kafka: message seq %" PRIu64 " has "
		    "no topic", seq);
	if ((t = sink_topic_entry(sink, msg->topic)) == NULL)
		return tor_err_set(err, "kafka: topic %s: %s", msg->topic,
		    rd_kafka_err2str(rd_kafka_last_error()));
	if (t->partitions <= 0) {
		tor_sink_partitions(sink, msg->topic, err);
		return TOR_SINK_RETRY;
	}
	rkt = t->rkt;
	partition = topic_partition(t, msg, sink->cfg->kafka.partitioner);
	hdrs = sink_headers(sink, t, msg);
	code = rd_kafka_producev(sink->rk,
	    RD_KAFKA_V_RKT(rkt),
	    RD_KAFKA_V_PARTITION(partition),
	    RD_KAFKA_V_KEY(msg->key, key_len),
	    /* Not written to: F_COPY copies it before producev returns. */
	    RD_KAFKA_V_VALUE((void *)(uintptr_t)msg->value, value_len),
	    RD_KAFKA_V_HEADERS(hdrs),
	    /* The event's time (tor.ts), not the moment of the produce. */
	    RD_KAFKA_V_TIMESTAMP(msg->timestamp_ms),
	    RD_KAFKA_V_OPAQUE((void *)(uintptr_t)seq),
	    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
	    RD_KAFKA_V_END);
	if (code == RD_KAFKA_RESP_ERR_NO_ERROR) {
		sink->in_flight++;
		return TOR_SINK_OK;
	}
	/* Not queued: the headers are still ours. */
	if (hdrs != NULL)
		rd_kafka_headers_destroy(hdrs);
	switch (code) {
	case RD_KAFKA_RESP_ERR__QUEUE_FULL:
		return TOR_SINK_BUSY;
	case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
		tor_err_set(err, "kafka: message for topic %s (key %zu, "
		    "value %zu bytes, %zu headers) is over message.max.bytes",
		    msg->topic, key_len, value_len, msg->n_headers);
		return TOR_SINK_TOO_LARGE;
	case RD_KAFKA_RESP_ERR__FATAL:
		return sink_check_fatal(sink, err);
	default:
		return tor_err_set(err, "kafka: producing to topic %s: %s "
		    "(%s)", msg->topic, rd_kafka_err2str(code),
		    rd_kafka_err2name(code));
	}
}

int
tor_sink_poll(struct tor_sink *sink, int timeout_ms, tor_err *err)
{
	char drain[64];

	/* Empty the wake-up pipe first: a report queued after this writes it
	 * again, so a caller polling the fd never misses one. */
	while (read(sink->wake[0], drain, sizeof(drain)) > 0)
		;
	rd_kafka_poll(sink->rk, timeout_ms);
	return sink_check_fatal(sink, err);
}

void
tor_sink_purge_now(struct tor_sink *sink)
{
	rd_kafka_purge(sink->rk, RD_KAFKA_PURGE_F_QUEUE |
	    RD_KAFKA_PURGE_F_INFLIGHT | RD_KAFKA_PURGE_F_NON_BLOCKING);
}

void
tor_sink_purge(struct tor_sink *sink)
{
	rd_kafka_purge(sink->rk, RD_KAFKA_PURGE_F_QUEUE |
	    RD_KAFKA_PURGE_F_INFLIGHT | RD_KAFKA_PURGE_F_NON_BLOCKING);
	/* The purged messages' reports (errors) are served now, so the
	 * caller's accounting sees them gone. */
	rd_kafka_poll(sink->rk, 0);
}

int
tor_sink_fd(const struct tor_sink *sink)
{
	return sink->wake[0];
}

int
tor_sink_flush(struct tor_sink *sink, int timeout_ms, tor_err *err)
{
	int64_t deadline = tor_mono_ms() + timeout_ms;

	/* In slices, so that a leadership that ends meanwhile stops it: what
	 * a replica that may not publish holds is purged, never sent. */
	while (sink->in_flight > 0 && tor_mono_ms() < deadline) {
		if (!sink_may_publish(sink)) {
			tor_sink_purge(sink);
			return tor_err_set(err, "kafka: the leadership ended "
			    "while flushing: the messages left were purged");
		}
		/* rd_kafka_flush serves the delivery reports while it waits. */
		rd_kafka_flush(sink->rk, sink_ms_left(deadline) < 50 ?
		    sink_ms_left(deadline) : 50);
		if (sink_check_fatal(sink, err) == -1)
			return -1;
	}
	rd_kafka_poll(sink->rk, 0);
	if (sink_check_fatal(sink, err) == -1)
		return -1;
	if (sink->in_flight > 0)
		return tor_err_set(err, "kafka: %d messages still "
		    "unacknowledged after %d ms", sink->in_flight, timeout_ms);
	return 0;
}

int
tor_sink_in_flight(const struct tor_sink *sink)
{
	return sink->in_flight;
}

/*
 * Transactional mode (DESIGN.md §5).  librdkafka's transactional calls
 * block; each error says whether the producer was fenced or hit a fatal
 * error (a new leader holds the transactional.id: step down), whether the
 * transaction must be aborted (then replay from the last commit), or
 * whether the call may simply be retried.
 */
static int
sink_txn_error(struct tor_sink *sink, rd_kafka_error_t *error,
    const char *what, tor_err *err)
{
	int rc;

	if (rd_kafka_error_code(error) == RD_KAFKA_RESP_ERR__FENCED ||
	    rd_kafka_error_code(error) == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
	    rd_kafka_error_code(error) ==
	    RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH ||
	    rd_kafka_error_is_fatal(error)) {
		sink->fenced = true;
		rc = TOR_SINK_FENCED;
	} else if (rd_kafka_error_txn_requires_abort(error)) {
		rc = TOR_SINK_ABORT;
	} else if (rd_kafka_error_is_retriable(error)) {
		rc = TOR_SINK_RETRY;
	} else {
		rc = -1;
	}
	tor_err_set(err, "kafka: %s: %s (%s)", what,
	    rd_kafka_error_string(error), rd_kafka_error_name(error));
	rd_kafka_error_destroy(error);
	return rc;
}

int
tor_sink_txn_init(struct tor_sink *sink, int timeout_ms, tor_err *err)
{
	rd_kafka_error_t *error;

	error = rd_kafka_init_transactions(sink->rk, timeout_ms);
	if (error != NULL)
		return sink_txn_error(sink, error, "init_transactions", err);
	/* Learn the checkpoint topic's partitions now, not at the first
	 * commit (which would wait for librdkafka's next metadata refresh). */
	if (sink_topic(sink, sink->cfg->kafka.checkpoint_topic) == NULL)
		return tor_err_set(err, "kafka: topic %s: %s",
		    sink->cfg->kafka.checkpoint_topic,
		    rd_kafka_err2str(rd_kafka_last_error()));
	log_info("kafka", "init_transactions done for transactional.id %s",
	    sink->cfg->kafka.transactional_id);
	return 0;
}

int
tor_sink_txn_begin(struct tor_sink *sink, tor_err *err)
{
	rd_kafka_error_t *error = rd_kafka_begin_transaction(sink->rk);

	return error != NULL ?
	    sink_txn_error(sink, error, "begin_transaction", err) : 0;
}

/*
 * The position record onto partition 0 of the checkpoint topic, key = the
 * group.  With wait, a full queue is served (acks come in) until there is
 * room, the guard says the leadership ended (TOR_SINK_LOST) or deadline
 * passes; without, it answers TOR_SINK_BUSY.
 */
static int
sink_produce_record(struct tor_sink *sink, const char *record, bool wait,
    int64_t deadline, tor_err *err)
{
	const struct tor_config *cfg = sink->cfg;
	rd_kafka_topic_t *rkt;
	rd_kafka_resp_err_t code;

	rkt = sink_topic(sink, cfg->kafka.checkpoint_topic);
	if (rkt == NULL)
		return tor_err_set(err, "kafka: topic %s: %s",
		    cfg->kafka.checkpoint_topic,
		    rd_kafka_err2str(rd_kafka_last_error()));
	for (;;) {
		code = rd_kafka_producev(sink->rk,
		    RD_KAFKA_V_RKT(rkt),
		    RD_KAFKA_V_PARTITION(0),
		    RD_KAFKA_V_KEY(cfg->group, strlen(cfg->group)),
		    RD_KAFKA_V_VALUE((void *)(uintptr_t)record, strlen(record)),
		    RD_KAFKA_V_OPAQUE((void *)(uintptr_t)0),
		    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
		    RD_KAFKA_V_END);
		if (code == RD_KAFKA_RESP_ERR_NO_ERROR) {
			sink->in_flight++;
			return 0;
		}
		if (code != RD_KAFKA_RESP_ERR__QUEUE_FULL)
			return tor_err_set(err, "kafka: position record to %s: "
			    "%s", cfg->kafka.checkpoint_topic,
			    rd_kafka_err2str(code));
		if (!wait)
			return TOR_SINK_BUSY;
		if (!sink_may_publish(sink))
			return tor_err_set(err, "kafka: the leadership ended "
			    "while the queue was full"), TOR_SINK_LOST;
		if (tor_mono_ms() >= deadline)
			return tor_err_set(err, "kafka: position record to %s: "
			    "the producer's queue stayed full",
			    cfg->kafka.checkpoint_topic), TOR_SINK_ABORT;
		rd_kafka_poll(sink->rk, 10);
	}
}

int
tor_sink_produce_position(struct tor_sink *sink, const char *record,
    tor_err *err)
{
	return sink_produce_record(sink, record, false, 0, err);
}

/* Commit attempts last at most this long each, so the guard is asked
 * between them: a commit never outlives the leadership by more. */
#define SINK_COMMIT_SLICE_MS 500

int
tor_sink_txn_commit(struct tor_sink *sink, const char *record,
    int timeout_ms, tor_err *err)
{
	int64_t deadline = tor_mono_ms() + timeout_ms, last_log = 0;
	rd_kafka_error_t *error;
	int rc, left;

	/* The position travels inside the transaction it describes: Kafka
	 * commits the messages and the position together, or neither. */
	if ((rc = sink_produce_record(sink, record, true, deadline, err)) != 0)
		return rc;
	for (;;) {
		if (!sink_may_publish(sink))
			return tor_err_set(err, "kafka: the leadership ended "
			    "before the commit completed"), TOR_SINK_LOST;
		left = sink_ms_left(deadline);
		error = rd_kafka_commit_transaction(sink->rk,
		    left < SINK_COMMIT_SLICE_MS ? left : SINK_COMMIT_SLICE_MS);
		if (error == NULL)
			return 0;
		rc = sink_txn_error(sink, error, "commit_transaction", err);
		if (rc != TOR_SINK_RETRY)
			return rc;
		if (tor_mono_ms() >= deadline)
			return tor_err_prefix(err, "kafka: no commit within %d "
			    "ms: ", timeout_ms), TOR_SINK_ABORT;
		if (tor_mono_ms() - last_log >= 10000) {
			log_warn("kafka", "%s; retrying the commit", err->msg);
			last_log = tor_mono_ms();
		}
	}
}

int
tor_sink_txn_abort(struct tor_sink *sink, int timeout_ms, tor_err *err)
{
	rd_kafka_error_t *error = rd_kafka_abort_transaction(sink->rk,
	    timeout_ms);

	if (error != NULL)
		return sink_txn_error(sink, error, "abort_transaction", err);
	rd_kafka_poll(sink->rk, 0);
	return 0;
}

bool
tor_sink_fenced(const struct tor_sink *sink)
{
	return sink->fenced || rd_kafka_fatal_error(sink->rk, NULL, 0) ==
	    RD_KAFKA_RESP_ERR__FENCED;
}

/* One record or end of partition from the checkpoint partition, for
 * tor_position_scan (the legacy consumer: a partition started at an offset,
 * no group, no assignment to wait for). */
struct consumer_feed {
	rd_kafka_topic_t *rkt;
	rd_kafka_message_t *m;
};

static int
consumer_next(void *ctx, int timeout_ms, struct tor_position_item *it)
{
	struct consumer_feed *f = ctx;

	if (f->m != NULL)
		rd_kafka_message_destroy(f->m);
	if ((f->m = rd_kafka_consume(f->rkt, 0, timeout_ms)) == NULL)
		return 0;
	if (f->m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
		it->eof = true;
		it->offset = f->m->offset;
		return 1;
	}
	if (f->m->err != RD_KAFKA_RESP_ERR_NO_ERROR)
		return 0;       /* transient: keep polling until the deadline */
	it->eof = false;
	it->offset = f->m->offset;
	it->key = f->m->key;
	it->key_len = f->m->key_len;
	it->value = f->m->payload;
	it->value_len = f->m->len;
	return 1;
}

int
tor_position_scan(int (*next)(void *ctx, int timeout_ms,
    struct tor_position_item *it), void *ctx, const char *group, int64_t hi,
    int timeout_ms, size_t cap,
    void (*take)(void *tctx, const void *value, size_t len), void *tctx,
    bool *found, tor_err *err)
{
	size_t glen = strlen(group);
	int64_t deadline = tor_mono_ms() + timeout_ms, reached = -1;
	struct tor_position_item it;

	/*
	 * read_committed stops at the last stable offset: an open transaction
	 * of another group (the topic is shared) hides the records after it,
	 * this group's newest among them.  So the end of the partition counts
	 * only once it has passed hi, the end seen before reading.
	 */
	while (reached < hi) {
		if (tor_mono_ms() >= deadline)
			return tor_err_set(err, "kafka: position records: read "
			    "to offset %" PRId64 " of %" PRId64 " within %d ms "
			    "only (an open transaction holds the rest back)",
			    reached < 0 ? 0 : reached, hi, timeout_ms);
		memset(&it, 0, sizeof(it));
		if (next(ctx, 100, &it) != 1)
			continue;
		if (it.eof) {
			reached = it.offset;
			continue;
		}
		if (it.offset + 1 > reached)
			reached = it.offset + 1;
		if (it.key_len != glen || memcmp(it.key, group, glen) != 0)
			continue;
		/* Not one tor wrote: its records always fit. */
		if (it.value_len >= cap) {
			log_warn("kafka", "position record of group %s at offset "
			    "%" PRId64 ": %zu bytes, longer than any tor writes "
			    "(%zu): skipped", group, it.offset, it.value_len,
			    cap - 1);
			continue;
		}
		take(tctx, it.value, it.value_len);
		*found = true;
	}
	return 0;
}

/* Reads partition 0 of the checkpoint topic from offset `from` up to hi,
 * handing each record whose key is the group to take. */
static int
position_scan(rd_kafka_topic_t *rkt, const struct tor_config *cfg,
    int64_t from, int64_t hi, size_t cap,
    void (*take)(void *, const void *, size_t), void *tctx, bool *found,
    int timeout_ms, tor_err *err)
{
	struct consumer_feed feed = { rkt, NULL };
	int rc;

	if (rd_kafka_consume_start(rkt, 0, from) == -1)
		return tor_err_set(err, "kafka: %s: cannot read from offset %"
		    PRId64 ": %s", cfg->kafka.checkpoint_topic, from,
		    rd_kafka_err2str(rd_kafka_last_error()));
	rc = tor_position_scan(consumer_next, &feed, cfg->group, hi,
	    timeout_ms, cap, take, tctx, found, err);
	if (feed.m != NULL)
		rd_kafka_message_destroy(feed.m);
	rd_kafka_consume_stop(rkt, 0);
	return rc;
}

/* How long one attempt at a partition's offsets may take (the readers'
 * socket.timeout.ms: it bounds a request to a node that is down), and the
 * pause between attempts. */
#define OFFSETS_ATTEMPT_MS 10000
#define OFFSETS_PAUSE_MS 100

static int
position_attempt_ms(int64_t deadline)
{
	int left = sink_ms_left(deadline);

	return left < OFFSETS_ATTEMPT_MS ? left : OFFSETS_ATTEMPT_MS;
}

/* Asks for a topic's metadata, which updates the handle's cache. */
static void
position_refresh(rd_kafka_t *rk, const char *topic, int timeout_ms)
{
	const struct rd_kafka_metadata *md;
	rd_kafka_topic_t *rkt;

	if ((rkt = rd_kafka_topic_new(rk, topic, NULL)) == NULL)
		return;
	if (rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms) ==
	    RD_KAFKA_RESP_ERR_NO_ERROR)
		rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
}

/*
 * A partition's watermarks.  rd_kafka_query_watermark_offsets asks the node
 * its handle's metadata cache names as the leader, and librdkafka 2.0.2
 * neither refreshes that entry when the answer is NOT_LEADER nor gives up on
 * a node that is down before socket.timeout.ms, whatever its timeout says.
 * A takeover after the leadership moved (a cluster without its controller
 * quorum still names the dead leader) would ask the wrong node until the
 * entry ages out (metadata.max.age.ms, 15 min).  So each attempt first asks
 * where the leader is now, and attempts go on until timeout_ms.
 */
static rd_kafka_resp_err_t
position_offsets(rd_kafka_t *rk, const char *topic, int32_t partition,
    int64_t *lo, int64_t *hi, int timeout_ms)
{
	const struct timespec pause = { 0, OFFSETS_PAUSE_MS * 1000 * 1000 };
	int64_t deadline = tor_mono_ms() + timeout_ms;
	rd_kafka_resp_err_t code;

	for (;;) {
		position_refresh(rk, topic, position_attempt_ms(deadline));
		code = rd_kafka_query_watermark_offsets(rk, topic, partition,
		    lo, hi, position_attempt_ms(deadline));
		if (code == RD_KAFKA_RESP_ERR_NO_ERROR ||
		    code == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
		    code == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
		    code == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
		    sink_ms_left(deadline) <= OFFSETS_PAUSE_MS)
			return code;
		nanosleep(&pause, NULL);
	}
}

/* The records at the end of the partition are looked at first, in windows
 * that grow: the topic is shared by groups and, compacted or not, a group's
 * last position is normally among the most recent, and the group's newest
 * record in the last n records is its newest in the partition. */
static const int64_t position_windows[] = { 16, 1024 };

struct tor_position_reader {
	const struct tor_config *cfg;
	rd_kafka_t *ends;       /* read_uncommitted: tells the log's end */
	rd_kafka_t *records;    /* read_committed: reads the records */
	rd_kafka_topic_t *rkt;  /* the checkpoint topic, on records */
	char refused[768];      /* a broker refused TLS or SASL: why, or "" */
};

/* Served by tor_position_reader_poll.  Other errors are a broker down or
 * unreachable, which librdkafka retries and its log lines say. */
static void
position_error_cb(rd_kafka_t *rk, int code, const char *reason, void *opaque)
{
	struct tor_position_reader *pr = opaque;

	(void)note_refusal(rk, code, reason, pr->refused, sizeof(pr->refused));
}

/* One of the reader's consumers: kafka.properties (the producer's own
 * left out), then what the reader needs, which no property overrides. */
static rd_kafka_t *
position_consumer(struct tor_position_reader *pr, const char *isolation,
    tor_err *err)
{
	const struct tor_config *cfg = pr->cfg;
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	char errstr[512], gid[300], socket_timeout[16];

	snprintf(gid, sizeof(gid), "tor-%s-position-reader", cfg->group);
	snprintf(socket_timeout, sizeof(socket_timeout), "%d",
	    OFFSETS_ATTEMPT_MS);
	if (sink_conf_set(conf, "bootstrap.servers", cfg->kafka.brokers,
	    err) == -1 ||
	    apply_properties(conf, cfg, true, err) == -1 ||
	    sink_conf_set(conf, "group.id", gid, err) == -1 ||
	    sink_conf_set(conf, "isolation.level", isolation, err) == -1 ||
	    sink_conf_set(conf, "enable.auto.commit", "false", err) == -1 ||
	    sink_conf_set(conf, "enable.partition.eof", "true", err) == -1 ||
	    /* Nobody reads a reader's statistics: they would pile up on its
	     * queue, which only a follower serves. */
	    sink_conf_set(conf, "statistics.interval.ms", "0", err) == -1 ||
	    /* A takeover waits for this read: no long-poll on the last
	     * (usually only) fetch, and little prefetched. */
	    sink_conf_set(conf, "fetch.wait.max.ms", "10", err) == -1 ||
	    /* A request to a node that is down fails after this, not after
	     * the default minute (see position_offsets). */
	    sink_conf_set(conf, "socket.timeout.ms", socket_timeout,
	    err) == -1 ||
	    sink_conf_set(conf, "queued.max.messages.kbytes", "1024",
	    err) == -1) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_conf_set_opaque(conf, pr);
	rd_kafka_conf_set_log_cb(conf, sink_log_cb);
	rd_kafka_conf_set_error_cb(conf, position_error_cb);
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (rk == NULL) {
		rd_kafka_conf_destroy(conf);
		tor_err_set(err, "kafka: position reader: %s", errstr);
	}
	return rk;
}

struct tor_position_reader *
tor_position_reader_new(const struct tor_config *cfg, tor_err *err)
{
	struct tor_position_reader *pr = calloc(1, sizeof(*pr));
	int64_t lo, hi;

	if (pr == NULL) {
		tor_err_set(err, "kafka: out of memory");
		return NULL;
	}
	pr->cfg = cfg;
	if ((pr->ends = position_consumer(pr, "read_uncommitted",
	    err)) == NULL || (pr->records = position_consumer(pr,
	    "read_committed", err)) == NULL) {
		tor_position_reader_free(pr);
		return NULL;
	}
	if ((pr->rkt = rd_kafka_topic_new(pr->records,
	    cfg->kafka.checkpoint_topic, NULL)) == NULL) {
		tor_err_set(err, "kafka: %s: %s", cfg->kafka.checkpoint_topic,
		    rd_kafka_err2str(rd_kafka_last_error()));
		tor_position_reader_free(pr);
		return NULL;
	}
	/* Connect now, while following: a takeover then waits for no
	 * connection set-up or metadata.  Failing is fine here; the read
	 * retries. */
	(void)rd_kafka_query_watermark_offsets(pr->ends,
	    cfg->kafka.checkpoint_topic, 0, &lo, &hi, 1000);
	(void)rd_kafka_query_watermark_offsets(pr->records,
	    cfg->kafka.checkpoint_topic, 0, &lo, &hi, 1000);
	/* Credentials or a CA the brokers refuse end tor here, at start. */
	if (tor_position_reader_poll(pr, err) < 0) {
		tor_position_reader_free(pr);
		return NULL;
	}
	return pr;
}

int
tor_position_reader_poll(struct tor_position_reader *pr, tor_err *err)
{
	rd_kafka_poll(pr->ends, 0);
	rd_kafka_poll(pr->records, 0);
	if (pr->refused[0] != '\0')
		return tor_err_set(err, "%s", pr->refused);
	return 0;
}

void
tor_position_reader_free(struct tor_position_reader *pr)
{
	if (pr == NULL)
		return;
	if (pr->rkt != NULL)
		rd_kafka_topic_destroy(pr->rkt);
	if (pr->records != NULL)
		rd_kafka_destroy(pr->records);
	if (pr->ends != NULL)
		rd_kafka_destroy(pr->ends);
	free(pr);
}

int
tor_position_reader_read(struct tor_position_reader *pr, size_t cap,
    void (*take)(void *tctx, const void *value, size_t len), void *tctx,
    bool *found, int timeout_ms, tor_err *err)
{
	const struct tor_config *cfg = pr->cfg;
	rd_kafka_resp_err_t code;
	int64_t lo = 0, hi = 0;
	size_t i;
	int rc;

	*found = false;
	/* The end to read to is the log's end, which only a read_uncommitted
	 * client is told (read_committed hears the last stable offset). */
	code = position_offsets(pr->ends, cfg->kafka.checkpoint_topic, 0, &lo,
	    &hi, timeout_ms);
	if (code == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
	    code == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
	    code == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION) {
		log_info("kafka", "%s does not exist yet: no position committed "
		    "there", cfg->kafka.checkpoint_topic);
		return 0;
	}
	if (code != RD_KAFKA_RESP_ERR_NO_ERROR)
		return tor_err_set(err, "kafka: %s: cannot read its offsets: %s",
		    cfg->kafka.checkpoint_topic, rd_kafka_err2str(code));
	for (i = 0; i < sizeof(position_windows) /
	    sizeof(position_windows[0]); i++) {
		if (hi - lo <= position_windows[i])
			break;
		rc = position_scan(pr->rkt, cfg, hi - position_windows[i], hi,
		    cap, take, tctx, found, timeout_ms, err);
		if (rc < 0 || *found)
			return rc;
	}
	if (hi <= lo)
		return 0;
	return position_scan(pr->rkt, cfg, lo, hi, cap, take, tctx, found,
	    timeout_ms, err);
}

/* The tail windows of a takeover's read of a topic, each for the
 * partitions where the one before did not reach the group's newest
 * message (other groups and producers share the topic); the last is the
 * whole partition.  The read's time limit bounds the cost. */
static const int64_t tail_windows[] = { 16, 1024, 32768, INT64_MAX };

struct tail_state {
	bool done;              /* read to the end in this pass */
	bool seen;              /* a message of the group was read */
	bool whole;             /* this pass started at the log's start */
	int64_t lo, hi;         /* the log's start and end */
	int64_t newest;         /* offset of the newest counted message */
};

/* Whether m is the group's, and if so its tor.pos, token and
 * tor.partitioning (placement: cap bytes, "" when it has none). */
static bool
group_message(const rd_kafka_message_t *m, const struct tor_config *cfg,
    const void **pos, size_t *pos_len, uint64_t *token, char *placement,
    size_t cap)
{
	rd_kafka_headers_t *h = NULL;
	const void *v;
	size_t n;
	char digits[24];

	if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR ||
	    rd_kafka_header_get_last(h, "tor.group", &v, &n) !=
	    RD_KAFKA_RESP_ERR_NO_ERROR || v == NULL ||
	    n != strlen(cfg->group) || memcmp(v, cfg->group, n) != 0)
		return false;
	*token = 0;
	if (rd_kafka_header_get_last(h, "tor.epoch", &v, &n) ==
	    RD_KAFKA_RESP_ERR_NO_ERROR && v != NULL && n > 0 &&
	    n < sizeof(digits)) {
		memcpy(digits, v, n);
		digits[n] = '\0';
		*token = strtoull(digits, NULL, 10);
	}
	if (rd_kafka_header_get_last(h, "tor.pos", pos, pos_len) !=
	    RD_KAFKA_RESP_ERR_NO_ERROR)
		*pos = NULL;
	placement[0] = '\0';
	if (rd_kafka_header_get_last(h, "tor.partitioning", &v, &n) ==
	    RD_KAFKA_RESP_ERR_NO_ERROR && v != NULL && n < cap) {
		memcpy(placement, v, n);
		placement[n] = '\0';
	}
	return true;
}

/* One pass: every partition in want[] read from window records before its
 * end (as its watermarks said) to the end, all at once on one queue. */
static int
tails_pass(struct tor_position_reader *pr, rd_kafka_topic_t *rkt,
    const bool *want, int n, int64_t window, uint64_t floor,
    struct tor_partition_tail *tails, struct tail_state *st,
    int64_t deadline, tor_err *err)
{
	rd_kafka_queue_t *q = rd_kafka_queue_new(pr->ends);
	bool *started = calloc((size_t)n, sizeof(bool));
	int left = 0, rc = 0;

	if (started == NULL) {
		rd_kafka_queue_destroy(q);
		return tor_err_set(err, "kafka: out of memory");
	}
	for (int p = 0; p < n; p++) {
		int64_t from;

		if (!want[p])
			continue;
		st[p].done = st[p].hi <= st[p].lo;      /* empty */
		if (st[p].done)
			continue;
		from = window < st[p].hi - st[p].lo ? st[p].hi - window :
		    st[p].lo;
		st[p].whole = from == st[p].lo;
		if (rd_kafka_consume_start_queue(rkt, p, from, q) == -1) {
			rc = tor_err_set(err, "kafka: %s [%d]: cannot read its "
			    "tail: %s", rd_kafka_topic_name(rkt), p,
			    rd_kafka_err2str(rd_kafka_last_error()));
			break;
		}
		started[p] = true;
		left++;
	}
	while (rc == 0 && left > 0 && tor_mono_ms() < deadline) {
		rd_kafka_message_t *m = rd_kafka_consume_queue(q, 20);
		const void *pos;
		size_t pos_len;
		uint64_t token;
		char placement[sizeof(tails[0].placement)];
		int p;

		if (m == NULL)
			continue;
		p = m->partition;
		if (p < 0 || p >= n || !started[p] || st[p].done) {
			rd_kafka_message_destroy(m);
			continue;
		}
		if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR &&
		    group_message(m, pr->cfg, &pos, &pos_len, &token,
		    placement, sizeof(placement))) {
			st[p].seen = true;
			if (token >= floor && m->offset > st[p].newest &&
			    pos != NULL && tor_row_pos_parse(pos, pos_len,
			    &tails[p].pos)) {
				tails[p].found = true;
				memcpy(tails[p].placement, placement,
				    sizeof(placement));
				st[p].newest = m->offset;
			}
		}
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF ||
		    (m->err == RD_KAFKA_RESP_ERR_NO_ERROR &&
		    m->offset + 1 >= st[p].hi)) {
			st[p].done = true;
			left--;
		}
		rd_kafka_message_destroy(m);
	}
	for (int p = 0; p < n; p++)
		if (started[p])
			rd_kafka_consume_stop(rkt, p);
	free(started);
	rd_kafka_queue_destroy(q);
	return rc;
}

int
tor_position_reader_tails(struct tor_position_reader *pr, const char *topic,
    int n, uint64_t floor, struct tor_partition_tail *tails, int timeout_ms,
    tor_err *err)
{
	int64_t deadline = tor_mono_ms() + timeout_ms;
	rd_kafka_topic_t *rkt;
	struct tail_state *st;
	bool *want;
	int rc = 0;

	memset(tails, 0, (size_t)n * sizeof(*tails));
	st = calloc((size_t)n, sizeof(*st));
	want = calloc((size_t)n, sizeof(*want));
	if ((st == NULL || want == NULL) && n > 0) {
		free(st);
		free(want);
		return tor_err_set(err, "kafka: out of memory");
	}
	if ((rkt = rd_kafka_topic_new(pr->ends, topic, NULL)) == NULL) {
		free(st);
		free(want);
		return tor_err_set(err, "kafka: %s: %s", topic,
		    rd_kafka_err2str(rd_kafka_last_error()));
	}
	for (int p = 0; rc == 0 && p < n; p++) {
		rd_kafka_resp_err_t code;

		want[p] = true;
		st[p].newest = -1;
		/* The end to read to, as a read_uncommitted client is told. */
		code = position_offsets(pr->ends, topic, p, &st[p].lo,
		    &st[p].hi, sink_ms_left(deadline));
		if (code != RD_KAFKA_RESP_ERR_NO_ERROR)
			rc = tor_err_set(err, "kafka: %s [%d]: cannot read its "
			    "offsets: %s", topic, p, rd_kafka_err2str(code));
	}
	for (size_t w = 0; rc == 0 && w < sizeof(tail_windows) /
	    sizeof(tail_windows[0]); w++) {
		bool any = false;

		rc = tails_pass(pr, rkt, want, n, tail_windows[w], floor, tails,
		    st, deadline, err);
		/* Known: the end was reached and the group's newest message
		 * was in the window, or the window held the whole partition.
		 * Else a wider window, once. */
		for (int p = 0; rc == 0 && p < n; p++) {
			if (!want[p])
				continue;
			want[p] = false;
			if (!st[p].done)
				continue;
			if (st[p].seen || st[p].whole || st[p].hi <= st[p].lo) {
				tails[p].known = true;
				continue;
			}
			want[p] = true;
			any = true;
		}
		if (!any)
			break;
	}
	rd_kafka_topic_destroy(rkt);
	free(st);
	free(want);
	return rc;
}
