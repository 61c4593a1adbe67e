/*
 * The Kafka sink against librdkafka's in-process mock cluster: what it
 * produces is read back with a real consumer, so every test judges what
 * reached the brokers (keys, values, headers, partitions, order) and which
 * acks the relay would have seen, not what the sink claims.
 *
 * Each test gets a fresh 3-broker cluster with the topics "one" (1
 * partition), "t6" (6) and "t16" (16), and builds its tor_config by hand.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "tor/checkpoint.h"
#include "tor/kafka.h"
#include "tor/log.h"

#define N_BROKERS	3
#define MAX_ACKS	4096
#define MAX_RECS	2048
#define API_PRODUCE	0	/* Kafka protocol ApiKey of Produce */

struct ack {
	uint64_t seq;
	int err;
};

struct rec {
	int32_t partition;
	int64_t offset;
	int key_null, value_null;
	size_t key_len, value_len;
	char key[64];
	char value[256];
	size_t n_headers;
	char hname[4][32];
	int hnull[4];
	char hvalue[4][64];
};

struct fx {
	rd_kafka_t *mrk;		/* owns the mock cluster */
	rd_kafka_mock_cluster_t *mc;
	struct tor_config cfg;
	struct tor_topic_spec topics[2];
	char *props[16];
	struct tor_sink *sink;
	struct ack acks[MAX_ACKS];
	size_t n_acks;
	struct rec recs[MAX_RECS];
	size_t n_recs;
};

static void
record_ack(void *ctx, uint64_t seq, int err, const char *errstr)
{
	struct fx *fx = ctx;

	(void)errstr;
	if (seq == 0)
		return;         /* a position record */
	assert_true(fx->n_acks < MAX_ACKS);
	fx->acks[fx->n_acks].seq = seq;
	fx->acks[fx->n_acks].err = err;
	fx->n_acks++;
}

static void
quiet_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	(void)level;
	(void)fac;
	(void)buf;
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char errstr[256];

	assert_non_null(fx);
	rd_kafka_conf_set_log_cb(conf, quiet_log_cb);
	fx->mrk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	assert_non_null(fx->mrk);
	fx->mc = rd_kafka_mock_cluster_new(fx->mrk, N_BROKERS);
	assert_non_null(fx->mc);
	assert_int_equal(rd_kafka_mock_topic_create(fx->mc, "one", 1, 1), 0);
	assert_int_equal(rd_kafka_mock_topic_create(fx->mc, "t6", 6, 1), 0);
	assert_int_equal(rd_kafka_mock_topic_create(fx->mc, "t16", 16, 1), 0);

	fx->cfg.group = "test";
	fx->cfg.kafka.brokers =
	    (char *)rd_kafka_mock_cluster_bootstraps(fx->mc);
	fx->cfg.kafka.mode = TOR_KAFKA_IDEMPOTENT;
	fx->cfg.kafka.topics = fx->topics;
	fx->cfg.kafka.properties = fx->props;
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *fx = *state;

	tor_sink_free(fx->sink);
	rd_kafka_mock_cluster_destroy(fx->mc);
	rd_kafka_destroy(fx->mrk);
	/* Every handle of this test is gone: nothing may leak into the next. */
	assert_int_equal(rd_kafka_wait_destroyed(5000), 0);
	free(fx);
	return 0;
}

/* Opens the sink with the given "name=value" properties (NULL-terminated). */
static void
open_sink(struct fx *fx, ...)
{
	tor_err err = { "" };
	va_list ap;
	char *p;

	va_start(ap, fx);
	fx->cfg.kafka.n_properties = 0;
	while ((p = va_arg(ap, char *)) != NULL)
		fx->props[fx->cfg.kafka.n_properties++] = p;
	va_end(ap);
	fx->sink = tor_sink_new(&fx->cfg, record_ack, fx, &err);
	if (fx->sink == NULL)
		fail_msg("tor_sink_new: %s", err.msg);
}

static struct tor_message
msg_of(const char *topic, const char *key, const char *value)
{
	struct tor_message m;

	memset(&m, 0, sizeof(m));
	m.topic = topic;
	m.key = (const uint8_t *)key;
	m.key_len = key != NULL ? strlen(key) : 0;
	m.value = (const uint8_t *)value;
	m.value_len = value != NULL ? strlen(value) : 0;
	return m;
}

static void
produce_ok(struct fx *fx, const struct tor_message *m, uint64_t seq)
{
	tor_err err = { "" };
	int rc = tor_sink_produce(fx->sink, m, seq, &err);

	if (rc != TOR_SINK_OK)
		fail_msg("produce seq %llu: rc %d: %s",
		    (unsigned long long)seq, rc, err.msg);
}

static void
flush_ok(struct fx *fx, int timeout_ms)
{
	tor_err err = { "" };

	if (tor_sink_flush(fx->sink, timeout_ms, &err) != 0)
		fail_msg("flush: %s", err.msg);
	assert_int_equal(tor_sink_in_flight(fx->sink), 0);
}

/* Every seq in [1, n] acked exactly once, with no error. */
static void
assert_acked_once_ok(struct fx *fx, uint64_t n)
{
	unsigned char *seen = calloc(n + 1, 1);
	size_t i;

	assert_non_null(seen);
	assert_int_equal(fx->n_acks, n);
	for (i = 0; i < fx->n_acks; i++) {
		assert_int_equal(fx->acks[i].err, 0);
		assert_true(fx->acks[i].seq >= 1 && fx->acks[i].seq <= n);
		assert_int_equal(seen[fx->acks[i].seq], 0);
		seen[fx->acks[i].seq] = 1;
	}
	free(seen);
}

static void
copy_rec(struct rec *r, const rd_kafka_message_t *m)
{
	rd_kafka_headers_t *hdrs = NULL;
	const char *name;
	const void *val;
	size_t len, i;

	memset(r, 0, sizeof(*r));
	r->partition = m->partition;
	r->offset = m->offset;
	r->key_null = m->key == NULL;
	r->key_len = m->key_len;
	assert_true(m->key_len < sizeof(r->key));
	if (m->key != NULL)
		memcpy(r->key, m->key, m->key_len);
	r->value_null = m->payload == NULL;
	r->value_len = m->len;
	assert_true(m->len < sizeof(r->value));
	if (m->payload != NULL)
		memcpy(r->value, m->payload, m->len);
	if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return;
	for (i = 0; i < 4 && rd_kafka_header_get_all(hdrs, i, &name, &val,
	    &len) == RD_KAFKA_RESP_ERR_NO_ERROR; i++) {
		snprintf(r->hname[i], sizeof(r->hname[i]), "%s", name);
		r->hnull[i] = val == NULL;
		assert_true(len < sizeof(r->hvalue[i]));
		if (val != NULL)
			memcpy(r->hvalue[i], val, len);
	}
	r->n_headers = i;
}

/*
 * Reads `want` messages of topic (all its partitions, from the beginning)
 * into fx->recs, then waits a little longer to catch extra ones (a duplicate
 * would show up there).  Per partition they come in offset order.
 */
static void
consume(struct fx *fx, const char *topic, int partitions, size_t want)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_topic_partition_list_t *parts;
	rd_kafka_t *c;
	char errstr[256];
	int64_t deadline = now_ms() + 8000, quiet_until = 0;
	int i;

	rd_kafka_conf_set_log_cb(conf, quiet_log_cb);
	assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers",
	    fx->cfg.kafka.brokers, errstr, sizeof(errstr)), RD_KAFKA_CONF_OK);
	assert_int_equal(rd_kafka_conf_set(conf, "group.id", "test-reader",
	    errstr, sizeof(errstr)), RD_KAFKA_CONF_OK);
	assert_int_equal(rd_kafka_conf_set(conf, "enable.auto.commit", "false",
	    errstr, sizeof(errstr)), RD_KAFKA_CONF_OK);
	c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	assert_non_null(c);
	parts = rd_kafka_topic_partition_list_new(partitions);
	for (i = 0; i < partitions; i++)
		rd_kafka_topic_partition_list_add(parts, topic, i)->offset =
		    RD_KAFKA_OFFSET_BEGINNING;
	assert_int_equal(rd_kafka_assign(c, parts), 0);
	rd_kafka_topic_partition_list_destroy(parts);

	fx->n_recs = 0;
	while (now_ms() < deadline) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);

		if (fx->n_recs >= want && quiet_until == 0)
			quiet_until = now_ms() + 300;
		if (quiet_until != 0 && now_ms() >= quiet_until) {
			if (m != NULL)
				rd_kafka_message_destroy(m);
			break;
		}
		if (m == NULL)
			continue;
		if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			assert_true(fx->n_recs < MAX_RECS);
			copy_rec(&fx->recs[fx->n_recs++], m);
		}
		rd_kafka_message_destroy(m);
	}
	rd_kafka_consumer_close(c);
	rd_kafka_destroy(c);
	assert_int_equal(fx->n_recs, want);
}

/* Keys, values and headers arrive as given: a NULL key, a tombstone, an
 * empty (not NULL) value and a NULL header value included; the sink adds
 * tor.partitioning (how it placed the row: partitioner and count). */
static void
test_roundtrip_key_value_headers(void **state)
{
	struct fx *fx = *state;
	struct tor_message m;

	open_sink(fx, NULL);
	m = msg_of("one", "k1", "v1");
	m.headers[0].name = "tor.id";
	m.headers[0].name_len = 6;
	m.headers[0].value = (const uint8_t *)"id-1";
	m.headers[0].len = 4;
	m.headers[1].name = "nullhdr";
	m.headers[1].name_len = 7;
	m.headers[1].value = NULL;
	m.n_headers = 2;
	produce_ok(fx, &m, 1);
	m = msg_of("one", NULL, "no key");
	produce_ok(fx, &m, 2);
	m = msg_of("one", "k3", NULL);
	produce_ok(fx, &m, 3);
	m = msg_of("one", "k4", "");
	produce_ok(fx, &m, 4);
	assert_int_equal(tor_sink_in_flight(fx->sink), 4);
	flush_ok(fx, 5000);
	assert_acked_once_ok(fx, 4);

	consume(fx, "one", 1, 4);
	assert_string_equal(fx->recs[0].key, "k1");
	assert_string_equal(fx->recs[0].value, "v1");
	assert_int_equal(fx->recs[0].n_headers, 3);
	assert_string_equal(fx->recs[0].hname[0], "tor.id");
	assert_string_equal(fx->recs[0].hvalue[0], "id-1");
	assert_string_equal(fx->recs[0].hname[1], "nullhdr");
	assert_true(fx->recs[0].hnull[1]);
	assert_string_equal(fx->recs[0].hname[2], "tor.partitioning");
	assert_string_equal(fx->recs[0].hvalue[2], "murmur2/1");

	assert_true(fx->recs[1].key_null);
	assert_string_equal(fx->recs[1].value, "no key");
	assert_int_equal(fx->recs[1].n_headers, 1);

	assert_string_equal(fx->recs[2].key, "k3");
	assert_true(fx->recs[2].value_null);

	assert_string_equal(fx->recs[3].key, "k4");
	assert_false(fx->recs[3].value_null);
	assert_int_equal(fx->recs[3].value_len, 0);
}

/* Interleaved keys: each key stays on one partition, in produce order, and
 * its acks come in produce order too. */
static void
test_order_per_key(void **state)
{
	struct fx *fx = *state;
	enum { KEYS = 5, PER_KEY = 200 };
	int32_t part_of[KEYS];
	int next[KEYS] = { 0 }, last_ack[KEYS];
	char key[16], value[32];
	uint64_t seq = 0;
	size_t i;
	int k, n;

	open_sink(fx, NULL);
	for (n = 0; n < PER_KEY; n++)
		for (k = 0; k < KEYS; k++) {
			struct tor_message m;

			snprintf(key, sizeof(key), "key-%d", k);
			snprintf(value, sizeof(value), "%d:%d", k, n);
			m = msg_of("t6", key, value);
			produce_ok(fx, &m, ++seq);
		}
	flush_ok(fx, 10000);
	assert_acked_once_ok(fx, KEYS * PER_KEY);

	/* seq = n * KEYS + k + 1, so a key's seqs grow with n. */
	for (k = 0; k < KEYS; k++)
		last_ack[k] = -1;
	for (i = 0; i < fx->n_acks; i++) {
		k = (int)((fx->acks[i].seq - 1) % KEYS);
		n = (int)((fx->acks[i].seq - 1) / KEYS);
		assert_int_equal(n, last_ack[k] + 1);
		last_ack[k] = n;
	}

	consume(fx, "t6", 6, KEYS * PER_KEY);
	for (k = 0; k < KEYS; k++)
		part_of[k] = -1;
	for (i = 0; i < fx->n_recs; i++) {
		assert_int_equal(sscanf(fx->recs[i].value, "%d:%d", &k, &n), 2);
		if (part_of[k] == -1)
			part_of[k] = fx->recs[i].partition;
		assert_int_equal(fx->recs[i].partition, part_of[k]);
		assert_int_equal(n, next[k]);
		next[k]++;
	}
	for (k = 0; k < KEYS; k++)
		assert_int_equal(next[k], PER_KEY);
}

/*
 * Keys land where the Java DefaultPartitioner puts them:
 * toPositive(murmur2(key)) % partitions.  The hashes are the published
 * values of Kafka's own UtilsTest.testMurmur2.
 */
static void
test_murmur2_partitions(void **state)
{
	static const struct {
		const char *key;
		int32_t java_murmur2;
	} cases[] = {
		{ "21", -973932308 },
		{ "foobar", -790332482 },
		{ "a-little-bit-long-string", -985981536 },
		{ "a-little-bit-longer-string", -1486304829 },
		{ "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971 },
		{ "abc", 479470107 },
	};
	const size_t n = sizeof(cases) / sizeof(cases[0]);
	struct fx *fx = *state;
	size_t i, j;

	open_sink(fx, NULL);
	for (i = 0; i < n; i++) {
		struct tor_message m = msg_of("t16", cases[i].key, "x");

		produce_ok(fx, &m, i + 1);
	}
	flush_ok(fx, 5000);
	assert_acked_once_ok(fx, n);
	consume(fx, "t16", 16, n);
	for (j = 0; j < fx->n_recs; j++)
		for (i = 0; i < n; i++)
			if (strcmp(fx->recs[j].key, cases[i].key) == 0)
				assert_int_equal(fx->recs[j].partition,
				    (int32_t)(((uint32_t)cases[i].java_murmur2 &
				    0x7fffffff) % 16));
	/* Under another placement (a tor.partitioning value): where an
	 * earlier leadership put the row. */
	for (i = 0; i < n; i++) {
		struct tor_message m = msg_of("t16", cases[i].key, "x");

		assert_int_equal(tor_sink_partition_as(fx->sink, &m,
		    "murmur2/7"), (int32_t)(((uint32_t)cases[i].java_murmur2 &
		    0x7fffffff) % 7));
		assert_int_equal(tor_sink_partition_as(fx->sink, &m,
		    "murmur2/16"), tor_sink_partition(fx->sink, &m));
		assert_int_equal(tor_sink_partition_as(fx->sink, &m, ""), -1);
		assert_int_equal(tor_sink_partition_as(fx->sink, &m,
		    "murmur2/"), -1);
		assert_int_equal(tor_sink_partition_as(fx->sink, &m,
		    "sha1/16"), -1);
	}
}

/* A full queue says BUSY, queues nothing, and takes messages again once
 * polling has served some acks. */
static void
test_backpressure(void **state)
{
	struct fx *fx = *state;
	struct tor_message m = msg_of("t6", "k", "v");
	tor_err err = { "" };
	int64_t deadline;
	uint64_t seq;
	int rc;

	/* A long linger keeps the first ten in the queue while we look. */
	open_sink(fx, "queue.buffering.max.messages=10", "linger.ms=300",
	    NULL);
	for (seq = 1; seq <= 10; seq++)
		produce_ok(fx, &m, seq);
	assert_int_equal(tor_sink_produce(fx->sink, &m, 11, &err),
	    TOR_SINK_BUSY);
	assert_int_equal(tor_sink_in_flight(fx->sink), 10);

	deadline = now_ms() + 5000;
	do {
		assert_int_equal(tor_sink_poll(fx->sink, 50, &err), 0);
		rc = tor_sink_produce(fx->sink, &m, 11, &err);
	} while (rc == TOR_SINK_BUSY && now_ms() < deadline);
	assert_int_equal(rc, TOR_SINK_OK);
	flush_ok(fx, 5000);
	assert_acked_once_ok(fx, 11);
	consume(fx, "t6", 6, 11);
}

/* Over message.max.bytes: refused at once, not queued, no ack; the sink
 * goes on working. */
static void
test_too_large(void **state)
{
	struct fx *fx = *state;
	struct tor_message m;
	tor_err err = { "" };
	char *big = malloc(20001);

	assert_non_null(big);
	memset(big, 'x', 20000);
	big[20000] = '\0';
	open_sink(fx, "message.max.bytes=10000", NULL);
	m = msg_of("one", "k", big);
	assert_int_equal(tor_sink_produce(fx->sink, &m, 1, &err),
	    TOR_SINK_TOO_LARGE);
	assert_non_null(strstr(err.msg, "one"));
	assert_int_equal(tor_sink_in_flight(fx->sink), 0);
	free(big);

	m = msg_of("one", "k", "small");
	produce_ok(fx, &m, 2);
	flush_ok(fx, 5000);
	assert_int_equal(fx->n_acks, 1);
	assert_int_equal(fx->acks[0].seq, 2);
	assert_int_equal(fx->acks[0].err, 0);
	consume(fx, "one", 1, 1);
	assert_string_equal(fx->recs[0].value, "small");
}

/* All brokers down: messages wait, no ack at all (neither ok nor error);
 * brokers up: all delivered, once each, in order. */
static void
test_brokers_down_then_up(void **state)
{
	struct fx *fx = *state;
	enum { N = 50 };
	char value[16];
	uint64_t seq;
	tor_err err = { "" };
	int b, i;

	/* A short reconnect backoff (default up to 10 s) keeps this quick. */
	open_sink(fx, "reconnect.backoff.max.ms=200", NULL);
	/* Connect first, so the outage hits a working producer. */
	{
		struct tor_message m = msg_of("one", "k", "0");

		produce_ok(fx, &m, 1);
		flush_ok(fx, 5000);
	}
	for (b = 1; b <= N_BROKERS; b++)
		assert_int_equal(rd_kafka_mock_broker_set_down(fx->mc, b), 0);
	for (seq = 2; seq <= N; seq++) {
		struct tor_message m;

		snprintf(value, sizeof(value), "%d", (int)seq - 1);
		m = msg_of("one", "k", value);
		produce_ok(fx, &m, seq);
	}
	for (i = 0; i < 15; i++)
		assert_int_equal(tor_sink_poll(fx->sink, 100, &err), 0);
	assert_int_equal(fx->n_acks, 1);
	assert_int_equal(tor_sink_in_flight(fx->sink), N - 1);
	assert_int_equal(tor_sink_flush(fx->sink, 200, &err), -1);
	assert_non_null(strstr(err.msg, "unacknowledged"));

	for (b = 1; b <= N_BROKERS; b++)
		assert_int_equal(rd_kafka_mock_broker_set_up(fx->mc, b), 0);
	flush_ok(fx, 15000);
	assert_acked_once_ok(fx, N);
	for (i = 0; i < N; i++)
		assert_int_equal(fx->acks[i].seq, (uint64_t)i + 1);
	consume(fx, "one", 1, N);
	for (i = 0; i < N; i++) {
		snprintf(value, sizeof(value), "%d", i);
		assert_string_equal(fx->recs[i].value, value);
	}
}

/*
 * A permanent Produce error reaches the ack function with its code.  With
 * the gapless guarantee it also stops the producer: poll and produce say
 * so, with the reason, from then on.
 */
static void
test_permanent_error_is_acked(void **state)
{
	struct fx *fx = *state;
	struct tor_message m = msg_of("one", "k", "v");
	tor_err err = { "" };

	open_sink(fx, NULL);
	rd_kafka_mock_push_request_errors(fx->mc, API_PRODUCE, 1,
	    RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
	produce_ok(fx, &m, 1);
	tor_sink_flush(fx->sink, 5000, &err);
	assert_int_equal(tor_sink_in_flight(fx->sink), 0);
	assert_int_equal(fx->n_acks, 1);
	assert_int_equal(fx->acks[0].seq, 1);
	assert_int_equal(fx->acks[0].err,
	    RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);

	memset(&err, 0, sizeof(err));
	assert_int_equal(tor_sink_poll(fx->sink, 0, &err), -1);
	assert_non_null(strstr(err.msg, "fatal"));
	assert_non_null(strstr(err.msg, "Topic authorization failed"));
	memset(&err, 0, sizeof(err));
	assert_int_equal(tor_sink_produce(fx->sink, &m, 2, &err), -1);
	assert_non_null(strstr(err.msg, "fatal"));
	assert_int_equal(tor_sink_in_flight(fx->sink), 0);
	assert_int_equal(fx->n_acks, 1);
}

/* A configured topic that exists is left alone and counts as success. */
static void
test_create_topics_existing(void **state)
{
	struct fx *fx = *state;
	tor_err err = { "" };

	fx->topics[0].name = "t6";
	fx->topics[0].partitions = 6;
	fx->topics[0].replication = 1;
	fx->cfg.kafka.n_topics = 1;
	open_sink(fx, NULL);
	if (tor_sink_create_topics(fx->sink, 5000, &err) != 0)
		fail_msg("create_topics: %s", err.msg);
}

/*
 * A missing topic: the mock cluster has no CreateTopics (DESIGN.md §9), so
 * the request times out: TOR_SINK_RETRY (Kafka busy or away is waited
 * out), the error naming the topic.  The listing before it must not have
 * created the topic as a side effect.
 */
static void
test_create_topics_missing(void **state)
{
	struct fx *fx = *state;
	const struct rd_kafka_metadata *md;
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	char errstr[256];
	tor_err err = { "" };
	int i;

	fx->topics[0].name = "t6";
	fx->topics[0].partitions = 6;
	fx->topics[0].replication = 1;
	fx->topics[1].name = "fresh";
	fx->topics[1].partitions = 3;
	fx->topics[1].replication = 1;
	fx->cfg.kafka.n_topics = 2;
	open_sink(fx, NULL);
	assert_int_equal(tor_sink_create_topics(fx->sink, 1000, &err),
	    TOR_SINK_RETRY);
	assert_non_null(strstr(err.msg, "fresh"));
	assert_null(strstr(err.msg, "t6"));

	/* Listed with a handle of our own: the test must not create it
	 * either. */
	conf = rd_kafka_conf_new();
	rd_kafka_conf_set_log_cb(conf, quiet_log_cb);
	assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers",
	    fx->cfg.kafka.brokers, errstr, sizeof(errstr)), RD_KAFKA_CONF_OK);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	assert_non_null(rk);
	assert_int_equal(rd_kafka_metadata(rk, 1, NULL, &md, 5000), 0);
	assert_int_equal(md->topic_cnt, 3);
	for (i = 0; i < md->topic_cnt; i++)
		assert_string_not_equal(md->topics[i].topic, "fresh");
	rd_kafka_metadata_destroy(md);
	rd_kafka_destroy(rk);
}

/*
 * A topic the cluster says does not exist: its partition count is unknown,
 * so nothing is queued (TOR_SINK_RETRY, the error names the topic and the
 * lookup's answer) and it is looked up again at the next try.  A message
 * without a topic never reaches librdkafka.
 */
static void
test_unknown_topic(void **state)
{
	struct fx *fx = *state;
	struct tor_message m = msg_of("gone", "k", "v");
	tor_err err = { "" };

	rd_kafka_mock_topic_set_error(fx->mc, "gone",
	    RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
	open_sink(fx, "topic.metadata.propagation.max.ms=500", NULL);
	for (uint64_t seq = 1; seq <= 2; seq++) {
		memset(&err, 0, sizeof(err));
		assert_int_equal(tor_sink_produce(fx->sink, &m, seq, &err),
		    TOR_SINK_RETRY);
		assert_non_null(strstr(err.msg, "topic gone: partition count "
		    "unknown (Broker: Unknown topic or partition)"));
	}
	assert_int_equal(tor_sink_partitions(fx->sink, "gone", &err), -1);
	assert_int_equal(tor_sink_in_flight(fx->sink), 0);
	assert_int_equal(tor_sink_flush(fx->sink, 1000, &err), 0);

	m.topic = NULL;
	assert_int_equal(tor_sink_produce(fx->sink, &m, 3, &err), -1);
	assert_non_null(strstr(err.msg, "no topic"));
	assert_int_equal(fx->n_acks, 0);
}

static void
test_flush_empty_is_zero(void **state)
{
	struct fx *fx = *state;

	open_sink(fx, NULL);
	flush_ok(fx, 1000);
	assert_int_equal(fx->n_acks, 0);
}

/* The safety settings cannot be overridden; malformed or unknown
 * properties fail with their name. */
static void
test_refused_properties(void **state)
{
	static const char *const bad[] = {
		"enable.idempotence=false",
		"acks=1",
		"request.required.acks=1",
		"partitioner=random",
		"transactional.id=x",
		"linger.ms",
		"no.such.property=1",
	};
	struct fx *fx = *state;
	tor_err err;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char name[64];

		snprintf(name, sizeof(name), "%.*s",
		    (int)strcspn(bad[i], "="), bad[i]);
		fx->props[0] = (char *)bad[i];
		fx->cfg.kafka.n_properties = 1;
		memset(&err, 0, sizeof(err));
		assert_null(tor_sink_new(&fx->cfg, record_ack, fx, &err));
		if (strstr(err.msg, name) == NULL)
			fail_msg("\"%s\": error does not name it: %s", bad[i],
			    err.msg);
	}
}

/* An entry that may hold a secret never shows it in an error: neither a
 * malformed one nor a Java client's sasl.jaas.config, which librdkafka
 * does not know. */
static void
test_property_errors_hide_secrets(void **state)
{
	static const char *const bad[][2] = {
		{ "sasl.password hunter2", "sasl.password" },
		{ "sasl.password =hunter2", "sasl.password" },
		{ "sasl.jaas.config=org.apache.kafka.common.security.plain."
		    "PlainLoginModule required username=\"tor\" "
		    "password=\"hunter2\";", "sasl.jaas.config" },
	};
	struct fx *fx = *state;
	tor_err err;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		fx->props[0] = (char *)bad[i][0];
		fx->cfg.kafka.n_properties = 1;
		memset(&err, 0, sizeof(err));
		assert_null(tor_sink_new(&fx->cfg, record_ack, fx, &err));
		if (strstr(err.msg, bad[i][1]) == NULL ||
		    strstr(err.msg, "hunter2") != NULL)
			fail_msg("\"%s\": %s", bad[i][0], err.msg);
		memset(&err, 0, sizeof(err));
		assert_null(tor_position_reader_new(&fx->cfg, &err));
		if (strstr(err.msg, bad[i][1]) == NULL ||
		    strstr(err.msg, "hunter2") != NULL)
			fail_msg("reader, \"%s\": %s", bad[i][0], err.msg);
	}
}

/* The library's own table of its properties (rd_kafka_conf_properties_show):
 * each row's name and its C/P column, "P" for the producer's alone. */
static void
test_producer_only_matches_librdkafka(void **state)
{
	char *table = NULL, *line, *save = NULL;
	size_t len = 0;
	int producer = 0, others = 0;
	FILE *f = open_memstream(&table, &len);

	(void)state;
	assert_non_null(f);
	rd_kafka_conf_properties_show(f);
	fclose(f);
	for (line = strtok_r(table, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		char name[128], scope[8];

		if (sscanf(line, "%127s | %7s |", name, scope) != 2 ||
		    strcmp(name, "Property") == 0 || name[0] == '-')
			continue;
		if (strcmp(scope, "P") == 0) {
			producer++;
			if (!tor_sink_producer_only(name))
				fail_msg("%s is librdkafka's producer's alone, "
				    "tor's readers would be given it", name);
		} else {
			others++;
			if (tor_sink_producer_only(name))
				fail_msg("%s (%s) would be kept from tor's "
				    "readers", name, scope);
		}
	}
	free(table);
	/* The parse found the table: 2.0.2 has 33 P rows, 100-odd others. */
	assert_true(producer >= 30);
	assert_true(others >= 100);
}

/* stderr (tor's log) into a file while fn runs; returns what was written. */
static char *
captured_log(void (*fn)(struct fx *), struct fx *fx)
{
	FILE *tmp = tmpfile();
	int saved = dup(STDERR_FILENO);
	char *text;
	long n;

	assert_non_null(tmp);
	assert_true(saved >= 0);
	assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
	fn(fx);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	assert_true((n = ftell(tmp)) >= 0);
	rewind(tmp);
	assert_non_null(text = calloc(1, (size_t)n + 1));
	assert_int_equal(fread(text, 1, (size_t)n, tmp), (size_t)n);
	fclose(tmp);
	return text;
}

static tor_err reader_err;

/* Opens and closes a reader, logging everything; reader_err says why it
 * failed ("" when it did not). */
static void
open_reader(struct fx *fx)
{
	struct tor_position_reader *pr;

	memset(&reader_err, 0, sizeof(reader_err));
	tor_log_setup(TOR_LOG_DEBUG, TOR_LOG_LOGFMT, "test");
	pr = tor_position_reader_new(&fx->cfg, &reader_err);
	tor_log_setup(TOR_LOG_ERROR, TOR_LOG_LOGFMT, "test");
	tor_position_reader_free(pr);
}

/* The readers take kafka.properties (a bad value fails them, as it does
 * the producer) but not the producer's own, which librdkafka would warn
 * about at every start. */
static void
test_readers_take_properties(void **state)
{
	static char *const props[] = {
		"linger.ms=10", "compression.type=lz4", "batch.size=100000",
		"message.timeout.ms=120000", "transaction.timeout.ms=30000",
		"retries=5", "socket.keepalive.enable=true",
		"client.id=tor-test", "sasl.password=hunter2",
		"statistics.interval.ms=10",
		/* librdkafka logs the client's settings at its start. */
		"debug=conf",
	};
	struct fx *fx = *state;
	tor_err err = { "" };
	char *log;

	fx->cfg.kafka.checkpoint_topic = "__tor_checkpoints";
	assert_true(sizeof(props) <= sizeof(fx->props));
	memcpy(fx->props, props, sizeof(props));
	fx->cfg.kafka.n_properties = sizeof(props) / sizeof(props[0]);
	log = captured_log(open_reader, fx);
	if (reader_err.msg[0] != '\0')
		fail_msg("tor_position_reader_new: %s", reader_err.msg);
	if (strstr(log, "will be ignored") != NULL)
		fail_msg("librdkafka warned:\n%s", log);
	/* The properties reached the consumers (and the log was caught);
	 * librdkafka masks the password in its dump. */
	assert_non_null(strstr(log, "client.id = tor-test"));
	assert_null(strstr(log, "hunter2"));
	/* Statistics nobody would read are not collected. */
	assert_non_null(strstr(log, "statistics.interval.ms = 0"));
	assert_null(strstr(log, "statistics.interval.ms = 10"));
	free(log);

	fx->props[0] = "socket.timeout.ms=soon";
	fx->cfg.kafka.n_properties = 1;
	assert_null(tor_position_reader_new(&fx->cfg, &err));
	if (strstr(err.msg, "socket.timeout.ms") == NULL)
		fail_msg("the error does not name the property: %s", err.msg);
}

/* tor_sink_free with the brokers gone returns in bounded time and acks
 * every message, with an error. */
static void
test_free_purges_when_stuck(void **state)
{
	struct fx *fx = *state;
	struct tor_message m = msg_of("one", "k", "v");
	int64_t t0;
	size_t i;
	int b;

	open_sink(fx, NULL);
	/* The topic is known before the brokers go (else nothing queues). */
	assert_int_equal(tor_sink_partitions(fx->sink, "one", NULL), 1);
	for (b = 1; b <= N_BROKERS; b++)
		assert_int_equal(rd_kafka_mock_broker_set_down(fx->mc, b), 0);
	for (i = 1; i <= 5; i++)
		produce_ok(fx, &m, i);
	t0 = now_ms();
	tor_sink_free(fx->sink);
	fx->sink = NULL;
	assert_true(now_ms() - t0 < 8000);
	assert_int_equal(fx->n_acks, 5);
	/* Each once, with a purge error; one may have been in flight (its
	 * report comes after the queued ones). */
	for (i = 0; i < 5; i++) {
		size_t n = 0;

		for (size_t j = 0; j < 5; j++)
			n += fx->acks[j].seq == i + 1;
		assert_int_equal(n, 1);
		assert_true(fx->acks[i].err == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
		    fx->acks[i].err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT);
	}
}

/* The guard: a deadline in monotonic ms after which it says no. */
static int64_t guard_until;

static bool
guard_fn(void *ctx)
{
	(void)ctx;
	return now_ms() < guard_until;
}

static void
open_txn_sink(struct fx *fx, const char *prop)
{
	tor_err err = { "" };

	fx->cfg.kafka.mode = TOR_KAFKA_TRANSACTIONAL;
	fx->cfg.kafka.transactional_id = "tor-test";
	fx->cfg.kafka.checkpoint_topic = "one";
	open_sink(fx, prop, NULL);
	if (tor_sink_txn_init(fx->sink, 10000, &err) != 0)
		fail_msg("init_transactions: %s", err.msg);
	if (tor_sink_txn_begin(fx->sink, &err) != 0)
		fail_msg("begin_transaction: %s", err.msg);
}

/* Transactional mode: the position record meets a full queue at commit
 * time.  The commit waits for room (serving acks) and succeeds; it never
 * returns with the transaction open. */
static void
test_txn_commit_with_a_full_queue(void **state)
{
	struct fx *fx = *state;
	struct tor_message m = msg_of("t6", "k", "v");
	tor_err err = { "" };
	uint64_t i;

	open_txn_sink(fx, "queue.buffering.max.messages=10");
	for (i = 1; i <= 10; i++)
		produce_ok(fx, &m, i);
	assert_int_equal(tor_sink_produce(fx->sink, &m, 11, &err),
	    TOR_SINK_BUSY);
	if (tor_sink_txn_commit(fx->sink, "v2 1 f 4", 10000, &err) != 0)
		fail_msg("commit: %s", err.msg);
	assert_acked_once_ok(fx, 10);
}

/* A commit that keeps failing with a retriable error ends once the guard
 * says the leadership is gone, not after its own timeout. */
static void
test_txn_commit_ends_with_the_leadership(void **state)
{
	struct fx *fx = *state;
	struct tor_message m = msg_of("t6", "k", "v");
	tor_err err = { "" };
	int64_t t0;
	int rc;
	rd_kafka_resp_err_t errs[200];
	size_t i;

	for (i = 0; i < 200; i++)
		errs[i] = RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS;
	open_txn_sink(fx, "linger.ms=0");
	produce_ok(fx, &m, 1);
	rd_kafka_mock_push_request_errors_array(fx->mc, 26 /* EndTxn */, 200,
	    errs);
	guard_until = now_ms() + 600;
	tor_sink_set_guard(fx->sink, guard_fn, NULL);
	t0 = now_ms();
	rc = tor_sink_txn_commit(fx->sink, "v2 1 f 4", 30000, &err);
	assert_int_equal(rc, TOR_SINK_LOST);
	assert_true(now_ms() - t0 < 3000);
	rd_kafka_mock_clear_request_errors(fx->mc, 26);
	/* The commit librdkafka was still retrying is the relay's to abort
	 * or drop with the producer; either way nothing waits on it here. */
	(void)tor_sink_txn_abort(fx->sink, 1000, &err);
}

/* A flush stops (and purges) once the guard says no: nothing is published
 * past the leadership. */
static void
test_flush_stops_with_the_leadership(void **state)
{
	struct fx *fx = *state;
	struct tor_message m = msg_of("one", "k", "v");
	tor_err err = { "" };
	int64_t t0;
	int b;

	open_sink(fx, NULL);
	/* The topic is known before the brokers go (else nothing queues). */
	assert_int_equal(tor_sink_partitions(fx->sink, "one", NULL), 1);
	for (b = 1; b <= N_BROKERS; b++)
		assert_int_equal(rd_kafka_mock_broker_set_down(fx->mc, b), 0);
	produce_ok(fx, &m, 1);
	produce_ok(fx, &m, 2);
	guard_until = now_ms() + 300;
	tor_sink_set_guard(fx->sink, guard_fn, NULL);
	t0 = now_ms();
	assert_int_equal(tor_sink_flush(fx->sink, 10000, &err), -1);
	assert_true(now_ms() - t0 < 2000);
	assert_non_null(strstr(err.msg, "leadership ended"));
	for (b = 1; b <= N_BROKERS; b++)
		assert_int_equal(rd_kafka_mock_broker_set_up(fx->mc, b), 0);
	tor_sink_poll(fx->sink, 500, &err);
	assert_int_equal(fx->n_acks, 2);
	assert_int_not_equal(fx->acks[0].err, 0);
	assert_int_not_equal(fx->acks[1].err, 0);
	consume(fx, "one", 1, 0);
}

/* Scripted reads of the checkpoint partition. */
struct script {
	const struct tor_position_item *items;
	size_t n, at;
};

static int
script_next(void *ctx, int timeout_ms, struct tor_position_item *it)
{
	struct script *sc = ctx;

	(void)timeout_ms;
	if (sc->at == sc->n)
		return 0;
	*it = sc->items[sc->at++];
	return 1;
}

#define REC(off, k, v) { false, (off), (k), (v), sizeof(k) - 1, \
	sizeof(v) - 1 }
#define EOF_AT(off) { true, (off), NULL, NULL, 0, 0 }

/* The last value the scan handed over. */
static void
keep_last(void *ctx, const void *value, size_t len)
{
	char *last = ctx;

	snprintf(last, 64, "%.*s", (int)len, (const char *)value);
}

/* Another group's open transaction holds the last stable offset at 5
 * while the log ends at 8: the end of partition at 5 is not the end, and
 * this group's newest record (at 6, after it) is found. */
static void
test_position_scan_waits_past_the_lso(void **state)
{
	static const struct tor_position_item items[] = {
		REC(3, "test", "v2 1 old 4"),
		REC(4, "other", "v2 9 x 4"),
		EOF_AT(5),
		REC(5, "other", "v2 9 x 5"),
		REC(6, "test", "v2 2 new 4"),
		EOF_AT(8),
	};
	struct script sc = { items, sizeof(items) / sizeof(items[0]), 0 };
	char record[64] = "";
	bool found = false;
	tor_err err = { "" };

	(void)state;
	assert_int_equal(tor_position_scan(script_next, &sc, "test", 8, 2000,
	    sizeof(record), keep_last, record, &found, &err), 0);
	assert_true(found);
	assert_string_equal(record, "v2 2 new 4");
	/* Held back past the time allowed: an error, not a stale answer. */
	sc.at = 0;
	sc.n = 3;
	found = false;
	assert_int_equal(tor_position_scan(script_next, &sc, "test", 8, 300,
	    sizeof(record), keep_last, record, &found, &err), -1);
	assert_non_null(strstr(err.msg, "open transaction"));
}

/* Scans items (ending at hi) with tor_checkpoint_pick for group "test";
 * returns what tor_checkpoint_picked says, *cp and the pick. */
static int
scan_pick(const struct tor_position_item *items, size_t n, int64_t hi,
    struct tor_checkpoint *cp, struct tor_record_pick *pick, tor_err *err)
{
	static struct tor_config cfg = { .group = "test" };
	struct script sc = { items, n, 0 };
	bool found = false;

	tor_checkpoint_pick_start(pick, &cfg);
	assert_int_equal(tor_position_scan(script_next, &sc, "test", hi, 2000,
	    TOR_CHECKPOINT_RECORD, tor_checkpoint_pick, pick, &found, err), 0);
	return tor_checkpoint_picked(pick, cp, err);
}

#define RECORD(token, file, pos) "v2 token=" #token " file=" file \
	" pos=" #pos " gtid=- done=- rows=0"

/* A paused leader's record (token 5, an older position) reached the broker
 * after its successor's (token 6): Kafka's copy is token 6's, the highest
 * token, not the last record.  (The last one was kept: a takeover after a
 * Redis data loss resumed from the older position, with a token that was
 * not above the successor's.) */
static void
test_position_scan_picks_the_highest_token(void **state)
{
	static const struct tor_position_item items[] = {
		REC(3, "test", RECORD(6, "binlog.000002", 500)),
		REC(4, "other", RECORD(9, "x.000001", 4)),
		REC(5, "test", RECORD(5, "binlog.000001", 100)),
		EOF_AT(6),
	};
	struct tor_record_pick pick;
	struct tor_checkpoint cp;
	tor_err err = { "" };

	(void)state;
	assert_int_equal(scan_pick(items, 4, 6, &cp, &pick, &err), 1);
	assert_int_equal(cp.epoch, 6);
	assert_string_equal(cp.pos.file, "binlog.000002");
	assert_int_equal(cp.pos.pos, 500);
	assert_int_equal(pick.last_epoch, 5);
	assert_int_equal(pick.passed, 0);
}

/* Within one token, the further position wins; so does the later record
 * of a higher token, further or not (an operator's replay). */
static void
test_position_scan_same_token_further_position(void **state)
{
	static const struct tor_position_item further[] = {
		REC(0, "test", RECORD(7, "binlog.000003", 900)),
		REC(1, "test", RECORD(7, "binlog.000003", 400)),
		EOF_AT(2),
	};
	static const struct tor_position_item replay[] = {
		REC(0, "test", RECORD(7, "binlog.000003", 900)),
		REC(1, "test", RECORD(8, "binlog.000001", 4)),
		EOF_AT(2),
	};
	struct tor_record_pick pick;
	struct tor_checkpoint cp;
	tor_err err = { "" };

	(void)state;
	assert_int_equal(scan_pick(further, 3, 2, &cp, &pick, &err), 1);
	assert_int_equal(cp.epoch, 7);
	assert_int_equal(cp.pos.pos, 900);
	assert_int_equal(scan_pick(replay, 3, 2, &cp, &pick, &err), 1);
	assert_int_equal(cp.epoch, 8);
	assert_string_equal(cp.pos.file, "binlog.000001");
}

/* The last record must parse (a tampered or foreign one halts the
 * takeover, as it did); an earlier one that does not is passed over and
 * counted.  One longer than any tor writes is skipped by the scan (the one
 * before it stands), and does not parse when handed to the pick. */
static void
test_position_scan_bad_records(void **state)
{
	static char huge[TOR_CHECKPOINT_RECORD + 1000];
	static struct tor_position_item items[] = {
		REC(0, "test", "v2 token=x"),
		REC(1, "test", RECORD(4, "binlog.000001", 300)),
		{ false, 2, "test", huge, 4, sizeof(huge) },
		REC(3, "test", RECORD(3, "binlog.000001", 200)),
		EOF_AT(4),
	};
	static struct tor_config cfg = { .group = "test" };
	struct tor_record_pick pick;
	struct tor_checkpoint cp;
	tor_err err = { "" };
	char want[96];

	(void)state;
	memset(huge, 'v', sizeof(huge));
	assert_int_equal(scan_pick(items, 5, 4, &cp, &pick, &err), 1);
	assert_int_equal(cp.epoch, 4);
	assert_int_equal(pick.passed, 1);
	/* Ending on the one too long: skipped. */
	assert_int_equal(scan_pick(items, 3, 3, &cp, &pick, &err), 1);
	assert_int_equal(cp.epoch, 4);
	/* Ending on a malformed one. */
	assert_int_equal(scan_pick(items, 1, 1, &cp, &pick, &err), -1);
	assert_non_null(strstr(err.msg, "malformed"));
	assert_int_equal(scan_pick(items + 4, 1, 4, &cp, &pick, &err), 0);
	/* Handed to the pick all the same. */
	tor_checkpoint_pick_start(&pick, &cfg);
	tor_checkpoint_pick(&pick, huge, sizeof(huge));
	assert_int_equal(tor_checkpoint_picked(&pick, &cp, &err), -1);
	snprintf(want, sizeof(want), "of %zu bytes, longer than any tor "
	    "writes (%d)", sizeof(huge), TOR_CHECKPOINT_RECORD - 1);
	assert_non_null(strstr(err.msg, want));
}

/* Runs a scan with stderr (where the log goes) in a file; the log text. */
static char *
scan_logged(struct script *sc, char *record, size_t cap, bool *found,
    int *rc)
{
	FILE *log = tmpfile();
	int saved = dup(2);
	tor_err err = { "" };
	char *text;
	long len;

	assert_non_null(log);
	fflush(stderr);
	assert_int_equal(dup2(fileno(log), 2), 2);
	*rc = tor_position_scan(script_next, sc, "test", 8, 2000, cap, keep_last,
	    record, found, &err);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	len = lseek(fileno(log), 0, SEEK_END);
	assert_non_null(text = calloc(1, (size_t)len + 1));
	assert_int_equal(pread(fileno(log), text, (size_t)len, 0), len);
	fclose(log);
	return text;
}

/* A record of the group too long for the reader's buffer (tor writes none:
 * TOR_CHECKPOINT_RECORD holds its longest) is skipped, and the log says
 * so: the record before it stands. */
static void
test_position_scan_logs_a_record_too_long(void **state)
{
	static const struct tor_position_item items[] = {
		REC(3, "test", "v2 1 old 4"),
		REC(4, "test", "v2 token=2 file=far-too-long-for-the-buffer"),
		EOF_AT(8),
	};
	struct script sc = { items, sizeof(items) / sizeof(items[0]), 0 };
	char record[64] = "", *log;
	bool found = false;
	int rc;

	(void)state;
	tor_log_setup(TOR_LOG_INFO, TOR_LOG_LOGFMT, "test");
	log = scan_logged(&sc, record, 32, &found, &rc);
	tor_log_setup(getenv("TOR_TEST_LOG") != NULL ? TOR_LOG_DEBUG :
	    TOR_LOG_ERROR, TOR_LOG_LOGFMT, "test");
	print_message("%s", log);
	assert_int_equal(rc, 0);
	assert_true(found);
	assert_string_equal(record, "v2 1 old 4");
	assert_non_null(strstr(log, "level=warn component=kafka"));
	assert_non_null(strstr(log, "position record of group test at offset "
	    "4: 43 bytes, longer than any tor writes (31): skipped"));
	free(log);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_roundtrip_key_value_headers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_order_per_key, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_murmur2_partitions, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_backpressure, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_too_large, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_brokers_down_then_up,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_permanent_error_is_acked,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_topics_existing,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_topics_missing,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_topic, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_flush_empty_is_zero,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused_properties,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_property_errors_hide_secrets, setup, teardown),
		cmocka_unit_test(test_producer_only_matches_librdkafka),
		cmocka_unit_test_setup_teardown(test_readers_take_properties,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_txn_commit_with_a_full_queue, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_txn_commit_ends_with_the_leadership, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_flush_stops_with_the_leadership, setup, teardown),
		cmocka_unit_test(test_position_scan_waits_past_the_lso),
		cmocka_unit_test(test_position_scan_picks_the_highest_token),
		cmocka_unit_test(test_position_scan_same_token_further_position),
		cmocka_unit_test(test_position_scan_bad_records),
		cmocka_unit_test(test_position_scan_logs_a_record_too_long),
		cmocka_unit_test_setup_teardown(test_free_purges_when_stuck,
		    setup, teardown),
	};

	tor_log_setup(getenv("TOR_TEST_LOG") != NULL ? TOR_LOG_DEBUG :
	    TOR_LOG_ERROR, TOR_LOG_LOGFMT, "test");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
