/*
 * The Prometheus rendering of struct tor_metrics: exact lines for known
 * values (names, labels, the _total suffix of counters), a histogram whose
 * buckets are cumulative with +Inf equal to _count, the topic table's
 * overflow into topic="other", and the elector's state as a leader (driven
 * there by a fake lease backend) and as no elector at all; with one group
 * and with three: each family's HELP and TYPE once with all its samples
 * under them, every series once per group with group="<name>" as its first
 * label, the process's own series once without it.
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

/* The label of the one group render() shows. */
#define D "group=\"default\""

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

/* Renders the n groups of v into a NUL-terminated string; free it. */
static char *
render_groups(const struct tor_group_view *v, size_t n)
{
	struct tor_buf b = { 0 };
	char *s;

	assert_int_equal(tor_metrics_render(v, n, &b), 0);
	assert_int_equal(tor_buf_append(&b, "", 1), 0);
	s = strdup((char *)b.data);
	tor_buf_free(&b);
	assert_non_null(s);
	return s;
}

/* Renders m (el may be NULL) as the one group "default". */
static char *
render(const struct tor_metrics *m, const struct tor_elector *el)
{
	return render_groups(&(struct tor_group_view){ "default", m, el }, 1);
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

/* The sample's family: its name, less a histogram's suffix. */
static void
family_of(const char *line, char *fam, size_t cap)
{
	static const char *const suffixes[] = { "_bucket", "_sum", "_count" };
	size_t n = strcspn(line, "{ ");

	assert_true(n < cap);
	memcpy(fam, line, n);
	fam[n] = '\0';
	if (strncmp(fam, "tor_publish_latency_seconds_", 28) != 0)
		return;
	for (size_t i = 0; i < 3; i++) {
		size_t k = strlen(suffixes[i]);

		if (n > k && strcmp(fam + n - k, suffixes[i]) == 0)
			fam[n - k] = '\0';
	}
}

/* How many lines of text are series (a sample less its value). */
static int
count_series(const char *text, const char *series)
{
	size_t n = strlen(series);
	int k = 0;

	for (const char *p = text; (p = strstr(p, series)) != NULL; p++)
		if ((p == text || p[-1] == '\n') && p[n] == ' ')
			k++;
	return k;
}

/* Which of the n groups of v the sample of family fam belongs to: its
 * first label is group="<name>". */
static size_t
group_of(const char *line, const char *fam, const struct tor_group_view *v,
    size_t n)
{
	const char *labels = line + strcspn(line, "{");
	char want[160];

	assert_int_equal(strncmp(line, fam, strlen(fam)), 0);
	for (size_t g = 0; g < n; g++) {
		snprintf(want, sizeof(want), "{group=\"%s\"", v[g].group);
		if (strncmp(labels, want, strlen(want)) == 0 &&
		    strchr(",}", labels[strlen(want)]) != NULL)
			return g;
	}
	fail_msg("no group label first in \"%s\"", line);
	return n;
}

/* The rendering of the n groups of v is well formed: each family's HELP
 * and TYPE once, just before all of its samples; every sample but the
 * process's own has one of the groups as its first label, each group as
 * many samples of each family as the first; no series occurs twice.
 * Returns the number of samples per group. */
static int
check_structure(const char *text, const struct tor_group_view *v, size_t n)
{
	char fam[128], cur[128] = "", line[512], head[160];
	int per_group[8] = { 0 }, in_fam[8] = { 0 }, total = 0;
	const char *p = text;
	size_t g;

	assert_true(n >= 1 && n <= 8);
	for (const char *nl; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
		size_t len = (size_t)(nl - p);

		assert_true(len < sizeof(line));
		memcpy(line, p, len);
		line[len] = '\0';
		if (strncmp(line, "# HELP ", 7) == 0) {
			/* The family before had as many samples per group. */
			for (g = 1; g < n; g++)
				assert_int_equal(in_fam[g], in_fam[0]);
			memset(in_fam, 0, sizeof(in_fam));
			family_of(line + 7, cur, sizeof(cur));
			snprintf(head, sizeof(head), "# HELP %s ", cur);
			assert_null(strstr(nl, head));  /* once */
			continue;
		}
		if (strncmp(line, "# TYPE ", 7) == 0) {
			family_of(line + 7, fam, sizeof(fam));
			assert_string_equal(fam, cur);
			snprintf(head, sizeof(head), "# TYPE %s ", cur);
			assert_null(strstr(nl, head));
			continue;
		}
		family_of(line, fam, sizeof(fam));
		assert_string_equal(fam, cur);  /* under its own header */
		*strrchr(line, ' ') = '\0';
		assert_int_equal(count_series(text, line), 1);
		if (strcmp(fam, "tor_build_info") == 0 ||
		    strcmp(fam, "process_start_time_seconds") == 0) {
			assert_null(strstr(line, "group="));
			continue;
		}
		g = group_of(line, fam, v, n);
		per_group[g]++;
		in_fam[g]++;
		total++;
	}
	assert_int_equal(*p, '\0');     /* the last line ends too */
	for (g = 1; g < n; g++)
		assert_int_equal(in_fam[g], in_fam[0]);
	for (g = 1; g < n; g++)
		assert_int_equal(per_group[g], per_group[0]);
	assert_int_equal(total, per_group[0] * (int)n);
	return per_group[0];
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
	has_line(text, "tor_events_read_total{" D "} 1234");
	has_line(text, "# TYPE tor_events_published_total counter");
	has_line(text, "tor_events_published_total{"
	    D ",topic=\"shop.order\"} 4");
	has_line(text, "tor_events_published_total{"
	    D ",topic=\"shop.invoice\"} 1");
	has_line(text, "tor_events_published_total{" D ",topic=\"other\"} 0");
	has_line(text, "tor_events_skipped_total{" D ",reason=\"unrouted\"} 2");
	has_line(text, "tor_events_skipped_total{"
	    D ",reason=\"oversized\"} 1");
	has_line(text, "tor_events_skipped_total{" D ",reason=\"update\"} 7");
	has_line(text, "tor_events_skipped_total{" D ",reason=\"delete\"} 8");
	has_line(text, "tor_reconnects_total{" D ",target=\"mysql\"} 3");
	has_line(text, "tor_reconnects_total{" D ",target=\"redis\"} 4");
	has_line(text, "tor_reconnects_total{" D ",target=\"kafka\"} 5");
	has_line(text, "tor_leader_yields_total{"
	    D ",reason=\"kafka_stall\"} 2");
	has_line(text, "tor_leader_yields_total{"
	    D ",reason=\"mysql_stall\"} 0");
	has_line(text, "# TYPE tor_binlog_lag_seconds gauge");
	has_line(text, "tor_binlog_lag_seconds{" D "} 1.500");
	has_line(text, "tor_checkpoint_age_seconds{" D "} NaN");
	has_line(text, "tor_kafka_queue_messages{" D "} 17");
	has_line(text, "tor_build_info{version=\"" TOR_VERSION "\"} 1");
	/* No elector: a follower without a token. */
	has_line(text, "tor_leader{" D "} 0");
	has_line(text, "tor_lease_epoch{" D "} 0");
	has_line(text, "tor_state{" D ",state=\"follower\"} 1");
	has_line(text, "tor_state{" D ",state=\"leader\"} 0");
	has_line(text, "tor_failovers_total{" D "} 0");
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
	p = strstr(text, "\ntor_checkpoint_age_seconds{" D "} ");
	assert_non_null(p);
	age = strtod(p + strlen("\ntor_checkpoint_age_seconds{group="
	    "\"default\"} "), NULL);
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
	has_line(text, "tor_publish_latency_seconds_bucket{"
	    D ",le=\"0.005\"} 2");
	has_line(text, "tor_publish_latency_seconds_bucket{"
	    D ",le=\"0.01\"} 2");
	has_line(text, "tor_publish_latency_seconds_bucket{"
	    D ",le=\"0.5\"} 2");
	has_line(text, "tor_publish_latency_seconds_bucket{" D ",le=\"1\"} 4");
	has_line(text, "tor_publish_latency_seconds_bucket{" D ",le=\"30\"} 4");
	has_line(text, "tor_publish_latency_seconds_bucket{" D ",le=\"60\"} 5");
	has_line(text, "tor_publish_latency_seconds_bucket{"
	    D ",le=\"+Inf\"} 6");
	has_line(text, "tor_publish_latency_seconds_count{" D "} 6");
	has_line(text, "tor_publish_latency_seconds_sum{" D "} 107.705");
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
	has_line(text, "tor_events_published_total{" D ",topic=\"t0\"} 3");
	snprintf(name, sizeof(name), "tor_events_published_total{group="
	    "\"default\",topic=\"t%d\"} 2", TOR_METRICS_TOPICS - 1);
	has_line(text, name);
	snprintf(name, sizeof(name), "tor_events_published_total{group="
	    "\"default\",topic=\"t%d\"}", TOR_METRICS_TOPICS);
	no_line_starting(text, name);
	has_line(text, "tor_events_published_total{" D ",topic=\"other\"} 6");
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
	has_line(text, "tor_leader{" D "} 1");
	has_line(text, "tor_lease_epoch{" D "} 42");
	has_line(text, "tor_state{" D ",state=\"follower\"} 0");
	has_line(text, "tor_state{" D ",state=\"candidate\"} 0");
	has_line(text, "tor_state{" D ",state=\"leader\"} 1");
	has_line(text, "tor_state{" D ",state=\"stepping_down\"} 0");
	has_line(text, "# TYPE tor_failovers_total counter");
	has_line(text, "tor_failovers_total{" D "} 0");
	free(text);
	tor_elector_free(el);
}

static void
test_one_group(void **state)
{
	static struct tor_metrics m;
	struct tor_group_view v = { "orders-eu.1", &m, NULL };
	char *text;
	int per;

	(void)state;
	tor_metrics_init(&m);
	tor_metrics_published(&m, "shop.order");
	text = render_groups(&v, 1);
	per = check_structure(text, &v, 1);
	/* Every family but the process's: 23 of one sample or a few. */
	assert_true(per >= 40);
	has_line(text, "tor_group_halted{group=\"orders-eu.1\"} 0");
	has_line(text, "tor_events_published_total{group=\"orders-eu.1\","
	    "topic=\"shop.order\"} 1");
	has_line(text, "# TYPE tor_group_halted gauge");
	assert_int_equal(count_series(text, "tor_build_info{version=\""
	    TOR_VERSION "\"}"), 1);
	free(text);
}

static void
test_three_groups(void **state)
{
	static struct tor_metrics m[3];
	static const char *const names[3] = { "billing", "orders", "users_2" };
	struct tor_group_view v[3];
	char *text, *one;
	int per;

	(void)state;
	for (int i = 0; i < 3; i++) {
		tor_metrics_init(&m[i]);
		v[i] = (struct tor_group_view){ names[i], &m[i], NULL };
		atomic_store(&m[i].events_read, 100 + (uint64_t)i);
		atomic_store(&m[i].kafka_queue, 10 * i);
		tor_metrics_latency(&m[i], 1000 * i);
	}
	/* Topics differ from group to group: the checker wants as many
	 * samples per group, so each group has one. */
	tor_metrics_published(&m[0], "billing.invoice");
	tor_metrics_published(&m[1], "shop.order");
	tor_metrics_published(&m[2], "users.signup");
	tor_metrics_published(&m[2], "users.signup");
	atomic_store(&m[1].halted, true);
	text = render_groups(v, 3);
	per = check_structure(text, v, 3);

	/* As many samples per group as a lone group renders. */
	one = render_groups(&v[0], 1);
	assert_int_equal(check_structure(one, &v[0], 1), per);
	free(one);

	has_line(text, "tor_events_read_total{group=\"billing\"} 100");
	has_line(text, "tor_events_read_total{group=\"orders\"} 101");
	has_line(text, "tor_events_read_total{group=\"users_2\"} 102");
	has_line(text, "tor_kafka_queue_messages{group=\"users_2\"} 20");
	has_line(text, "tor_group_halted{group=\"billing\"} 0");
	has_line(text, "tor_group_halted{group=\"orders\"} 1");
	has_line(text, "tor_group_halted{group=\"users_2\"} 0");
	has_line(text, "tor_events_published_total{group=\"users_2\","
	    "topic=\"users.signup\"} 2");
	has_line(text, "tor_events_published_total{group=\"billing\","
	    "topic=\"other\"} 0");
	has_line(text, "tor_publish_latency_seconds_bucket{group=\"orders\","
	    "le=\"1\"} 1");
	has_line(text, "tor_publish_latency_seconds_bucket{group=\"users_2\","
	    "le=\"1\"} 0");
	has_line(text, "tor_publish_latency_seconds_count{group=\"users_2\"} 1");
	has_line(text, "tor_publish_latency_seconds_sum{group=\"users_2\"} "
	    "2.000");
	has_line(text, "tor_state{group=\"orders\",state=\"follower\"} 1");
	/* The groups in the order given, inside each family. */
	assert_true(strstr(text, "tor_leader{group=\"billing\"}") <
	    strstr(text, "tor_leader{group=\"orders\"}"));
	assert_true(strstr(text, "tor_leader{group=\"orders\"}") <
	    strstr(text, "tor_leader{group=\"users_2\"}"));
	assert_true(strstr(text, "tor_leader{group=\"users_2\"}") <
	    strstr(text, "# HELP tor_lease_epoch "));
	free(text);
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
		cmocka_unit_test(test_one_group),
		cmocka_unit_test(test_three_groups),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
