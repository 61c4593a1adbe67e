/*
 * The Prometheus rendering of struct tor_metrics: exact lines for known
 * values (names, labels, the _total suffix of counters), a histogram whose
 * buckets are cumulative with +Inf equal to _count, the topic table's
 * overflow into topic="other", and the elector's state as a leader (driven
 * there by a fake lease backend) and as no elector at all.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tor/metrics.h"

struct fake {
	int64_t now;
};

static int
fake_acquire(void *ctx, bool takeover_only, uint64_t *token, int64_t *sent_ms,
    int64_t *not_before_ms, tor_err *err)
{
	(void)takeover_only;
	(void)err;
	*token = 42;
	*sent_ms = ((struct fake *)ctx)->now;
	*not_before_ms = 0;
	return 1;
}

static int
fake_renew(void *ctx, uint64_t token, int wait_ms, tor_err *err)
{
	(void)ctx;
	(void)token;
	(void)wait_ms;
	(void)err;
	return 1;
}

static int
fake_release(void *ctx, uint64_t token, tor_err *err)
{
	(void)ctx;
	(void)token;
	(void)err;
	return 1;
}


static int64_t
fake_now(void *ctx)
{
	return ((struct fake *)ctx)->now;
}

static const struct tor_elector_ops fake_ops = {
	.acquire = fake_acquire,
	.renew = fake_renew,
	.release = fake_release,
	.now_ms = fake_now,
};

/* Renders m (el may be NULL) into a NUL-terminated string; free it. */
static char *
render(const struct tor_metrics *m, const struct tor_elector *el)
{
	struct tor_buf b = { 0 };
	char *s;

	assert_int_equal(tor_metrics_render(m, el, &b), 0);
	assert_int_equal(tor_buf_append(&b, "", 1), 0);
	s = strdup((char *)b.data);
	tor_buf_free(&b);
	assert_non_null(s);
	return s;
}

/* The text holds exactly this line. */
static void
has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return;
	fail_msg("no line \"%s\" in:\n%s", line, text);
}

static void
no_line_starting(const char *text, const char *prefix)
{
	for (const char *p = text; (p = strstr(p, prefix)) != NULL; p++)
		if (p == text || p[-1] == '\n')
			fail_msg("unexpected line starting \"%s\"", prefix);
}

static void
test_counters_and_gauges(void **state)
{
	static struct tor_metrics m;    /* 17 KB: not on the stack */
	char *text;

	(void)state;
	tor_metrics_init(&m);
	atomic_store(&m.events_read, 1234);
	for (int i = 0; i < 3; i++)
		tor_metrics_published(&m, "shop.order");
	tor_metrics_published(&m, "shop.invoice");
	tor_metrics_published(&m, "shop.order");
	atomic_store(&m.skipped[TOR_SKIP_UNROUTED], 2);
	atomic_store(&m.skipped[TOR_SKIP_OVERSIZED], 1);
	atomic_store(&m.skipped[TOR_SKIP_UPDATE], 7);
	atomic_store(&m.skipped[TOR_SKIP_DELETE], 8);
	atomic_store(&m.reconnects[TOR_TARGET_MYSQL], 3);
	atomic_store(&m.reconnects[TOR_TARGET_REDIS], 4);
	atomic_store(&m.reconnects[TOR_TARGET_KAFKA], 5);
	atomic_store(&m.yields[TOR_STALL_KAFKA], 2);
	atomic_store(&m.binlog_lag_ms, 1500);
	atomic_store(&m.kafka_queue, 17);
	text = render(&m, NULL);

	has_line(text, "# HELP tor_events_read_total Binlog events read (all "
	    "kinds, heartbeats included).");
	has_line(text, "# TYPE tor_events_read_total counter");
	has_line(text, "tor_events_read_total 1234");
	has_line(text, "# TYPE tor_events_published_total counter");
	has_line(text, "tor_events_published_total{topic=\"shop.order\"} 4");
	has_line(text, "tor_events_published_total{topic=\"shop.invoice\"} 1");
	has_line(text, "tor_events_published_total{topic=\"other\"} 0");
	has_line(text, "tor_events_skipped_total{reason=\"unrouted\"} 2");
	has_line(text, "tor_events_skipped_total{reason=\"oversized\"} 1");
	has_line(text, "tor_events_skipped_total{reason=\"update\"} 7");
	has_line(text, "tor_events_skipped_total{reason=\"delete\"} 8");
	has_line(text, "tor_reconnects_total{target=\"mysql\"} 3");
	has_line(text, "tor_reconnects_total{target=\"redis\"} 4");
	has_line(text, "tor_reconnects_total{target=\"kafka\"} 5");
	has_line(text, "tor_leader_yields_total{reason=\"kafka_stall\"} 2");
	has_line(text, "tor_leader_yields_total{reason=\"mysql_stall\"} 0");
	has_line(text, "# TYPE tor_binlog_lag_seconds gauge");
	has_line(text, "tor_binlog_lag_seconds 1.500");
	has_line(text, "tor_checkpoint_age_seconds NaN");
	has_line(text, "tor_kafka_queue_messages 17");
	has_line(text, "tor_build_info{version=\"" TOR_VERSION "\"} 1");
	/* No elector: a follower without a token. */
	has_line(text, "tor_leader 0");
	has_line(text, "tor_lease_epoch 0");
	has_line(text, "tor_state{state=\"follower\"} 1");
	has_line(text, "tor_state{state=\"leader\"} 0");
	has_line(text, "tor_failovers_total 0");
	free(text);
}

static void
test_checkpoint_age(void **state)
{
	static struct tor_metrics m;
	char *text, *p;
	double age;

	(void)state;
	tor_metrics_init(&m);
	atomic_store(&m.checkpoint_wall_ms, tor_metrics_wall_ms() - 5000);
	text = render(&m, NULL);
	p = strstr(text, "\ntor_checkpoint_age_seconds ");
	assert_non_null(p);
	age = strtod(p + strlen("\ntor_checkpoint_age_seconds "), NULL);
	assert_true(age >= 5.0 && age < 6.0);
	free(text);
}

static void
test_histogram_cumulative(void **state)
{
	static struct tor_metrics m;
	char *text;

	(void)state;
	tor_metrics_init(&m);
	tor_metrics_latency(&m, -20);   /* a clock ahead: counts as 0 */
	tor_metrics_latency(&m, 5);     /* le is inclusive */
	tor_metrics_latency(&m, 700);
	tor_metrics_latency(&m, 1000);
	tor_metrics_latency(&m, 45000);
	tor_metrics_latency(&m, 61000);
	text = render(&m, NULL);
	has_line(text, "# TYPE tor_publish_latency_seconds histogram");
	has_line(text, "tor_publish_latency_seconds_bucket{le=\"0.005\"} 2");
	has_line(text, "tor_publish_latency_seconds_bucket{le=\"0.01\"} 2");
	has_line(text, "tor_publish_latency_seconds_bucket{le=\"0.5\"} 2");
	has_line(text, "tor_publish_latency_seconds_bucket{le=\"1\"} 4");
	has_line(text, "tor_publish_latency_seconds_bucket{le=\"30\"} 4");
	has_line(text, "tor_publish_latency_seconds_bucket{le=\"60\"} 5");
	has_line(text, "tor_publish_latency_seconds_bucket{le=\"+Inf\"} 6");
	has_line(text, "tor_publish_latency_seconds_count 6");
	has_line(text, "tor_publish_latency_seconds_sum 107.705");
	free(text);
}

static void
test_topic_overflow(void **state)
{
	static struct tor_metrics m;
	char name[80], *text;

	(void)state;
	tor_metrics_init(&m);
	for (int i = 0; i < TOR_METRICS_TOPICS + 3; i++) {
		snprintf(name, sizeof(name), "t%d", i);
		tor_metrics_published(&m, name);
		tor_metrics_published(&m, name);
	}
	tor_metrics_published(&m, "t0");
	text = render(&m, NULL);
	has_line(text, "tor_events_published_total{topic=\"t0\"} 3");
	snprintf(name, sizeof(name), "tor_events_published_total{topic=\"t%d\"}"
	    " 2", TOR_METRICS_TOPICS - 1);
	has_line(text, name);
	snprintf(name, sizeof(name), "tor_events_published_total{topic=\"t%d\"}",
	    TOR_METRICS_TOPICS);
	no_line_starting(text, name);
	has_line(text, "tor_events_published_total{topic=\"other\"} 6");
	free(text);
}

static void
test_leader_state(void **state)
{
	static struct tor_metrics m;
	struct tor_config cfg;
	struct fake fake = { .now = 1000 };
	struct tor_elector *el;
	char *text;

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	cfg.instance = "test-1";
	cfg.group = "default";
	cfg.redis.timeout_ms = 500;
	cfg.ha.lease_ms = 3000;
	cfg.ha.renew_ms = 1000;
	cfg.ha.retry_ms = 200;
	el = tor_elector_new(&cfg, &fake_ops, &fake);
	assert_non_null(el);
	for (int i = 0; i < 4 && tor_elector_state(el) != TOR_LEADER; i++)
		tor_elector_step(el);
	assert_int_equal(tor_elector_state(el), TOR_LEADER);
	tor_metrics_init(&m);
	text = render(&m, el);
	has_line(text, "# TYPE tor_leader gauge");
	has_line(text, "tor_leader 1");
	has_line(text, "tor_lease_epoch 42");
	has_line(text, "tor_state{state=\"follower\"} 0");
	has_line(text, "tor_state{state=\"candidate\"} 0");
	has_line(text, "tor_state{state=\"leader\"} 1");
	has_line(text, "tor_state{state=\"stepping_down\"} 0");
	has_line(text, "# TYPE tor_failovers_total counter");
	has_line(text, "tor_failovers_total 0");
	free(text);
	tor_elector_free(el);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counters_and_gauges),
		cmocka_unit_test(test_checkpoint_age),
		cmocka_unit_test(test_histogram_cumulative),
		cmocka_unit_test(test_topic_overflow),
		cmocka_unit_test(test_leader_state),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
