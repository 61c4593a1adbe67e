/*
 * The probes and /metrics of a replica that serves three groups, over a
 * real socket: 200 "ok" while every group passes; 503 naming only the
 * group that fails ("group <name>: <why>"); a halted group left out of
 * both probes and shown as tor_group_halted 1.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "tor/clock.h"
#include "tor/http.h"

static int
fake_acquire(void *ctx, bool takeover_only, uint64_t *token,
    int64_t *sent_ms, int64_t *not_before_ms, tor_err *err)
{
	(void)ctx;
	(void)takeover_only;
	(void)token;
	(void)sent_ms;
	(void)not_before_ms;
	(void)err;
	return 0;
}

static int
fake_renew(void *ctx, uint64_t token, int wait_ms, tor_err *err)
{
	(void)ctx;
	(void)token;
	(void)wait_ms;
	(void)err;
	return 0;
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
	(void)ctx;
	return 1000;
}

/* Electors that never step: followers. */
static const struct tor_elector_ops fake_ops = {
	.acquire = fake_acquire,
	.renew = fake_renew,
	.release = fake_release,
	.now_ms = fake_now,
};

/* A port nothing listens on (bound and released: another process could
 * take it in between, which a test machine does not). */
static int
free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

/* GET path: returns the status, the body in body (cap bytes). */
static int
get(int port, const char *path, char *body, size_t cap)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	static char resp[1 << 16];
	size_t got = 0;
	ssize_t n;
	int fd = socket(AF_INET, SOCK_STREAM, 0), status;
	char req[128];
	const char *b;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((uint16_t)port);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n\r\n", path);
	assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	while ((n = read(fd, resp + got, sizeof(resp) - 1 - got)) > 0)
		got += (size_t)n;
	close(fd);
	resp[got] = '\0';
	assert_int_equal(sscanf(resp, "HTTP/1.%*d %d", &status), 1);
	b = strstr(resp, "\r\n\r\n");
	assert_non_null(b);
	snprintf(body, cap, "%s", b + 4);
	return status;
}

static void
test_three_groups(void **state)
{
	static struct tor_metrics m[3];
	static const char *const names[3] = { "billing", "orders", "users" };
	struct tor_group_view v[3];
	struct tor_elector *el[3];
	struct tor_config cfg;
	struct tor_http *h;
	static const char stalled[] = "group orders: relay loop stalled: no "
	    "sign of life for ";
	char listen[32], body[1 << 15];
	int port = free_port();
	tor_err err;

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	cfg.instance = "test-1";
	cfg.group = "billing";
	cfg.redis.timeout_ms = 500;
	cfg.ha.lease_ms = 3000;
	cfg.ha.renew_ms = 1000;
	cfg.ha.retry_ms = 200;
	cfg.mysql.heartbeat_ms = 1000;
	cfg.kafka.unreachable_ms = 10000;
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	cfg.http.listen = listen;
	for (int i = 0; i < 3; i++) {
		tor_metrics_init(&m[i]);
		atomic_store(&m[i].relay_beat_ms, tor_mono_ms());
		atomic_store(&m[i].redis_ok, true);
		el[i] = tor_elector_new(&cfg, &fake_ops, NULL);
		assert_non_null(el[i]);
		v[i] = (struct tor_group_view){ names[i], &m[i], el[i] };
	}
	h = tor_http_start(&cfg, v, 3, &err);
	assert_non_null(h);
	memset(v, 0, sizeof(v));        /* the server keeps its own copy */

	assert_int_equal(get(port, "/healthz", body, sizeof(body)), 200);
	assert_string_equal(body, "ok\n");
	assert_int_equal(get(port, "/readyz", body, sizeof(body)), 200);
	assert_string_equal(body, "ok\n");

	/* One group's relay loop stuck, another's Redis failing. */
	atomic_store(&m[1].relay_beat_ms, tor_mono_ms() - 20000);
	atomic_store(&m[2].redis_ok, false);
	assert_int_equal(get(port, "/healthz", body, sizeof(body)), 503);
	assert_int_equal(strncmp(body, stalled, strlen(stalled)), 0);
	assert_int_equal(strchr(body, '\n')[1], '\0');  /* that line only */
	assert_int_equal(get(port, "/readyz", body, sizeof(body)), 503);
	assert_string_equal(body, "group users: redis: the last operation "
	    "failed\n");

	/* Both failing groups in one answer. */
	atomic_store(&m[1].redis_ok, false);
	assert_int_equal(get(port, "/readyz", body, sizeof(body)), 503);
	assert_string_equal(body, "group orders: redis: the last operation "
	    "failed\ngroup users: redis: the last operation failed\n");

	/* Halted groups are left out of the probes, and say so in /metrics. */
	atomic_store(&m[1].halted, true);
	atomic_store(&m[2].halted, true);
	assert_int_equal(get(port, "/healthz", body, sizeof(body)), 200);
	assert_int_equal(get(port, "/readyz", body, sizeof(body)), 200);
	assert_int_equal(get(port, "/metrics", body, sizeof(body)), 200);
	assert_non_null(strstr(body, "\ntor_group_halted{group=\"billing\"} 0\n"));
	assert_non_null(strstr(body, "\ntor_group_halted{group=\"orders\"} 1\n"));
	assert_non_null(strstr(body, "\ntor_group_halted{group=\"users\"} 1\n"));
	assert_non_null(strstr(body, "\ntor_leader{group=\"users\"} 0\n"));

	/* The group not halted still counts. */
	atomic_store(&m[0].relay_beat_ms, tor_mono_ms() - 20000);
	assert_int_equal(get(port, "/healthz", body, sizeof(body)), 503);
	assert_int_equal(strncmp(body, "group billing: ", 15), 0);

	tor_http_stop(h);
	for (int i = 0; i < 3; i++)
		tor_elector_free(el[i]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_three_groups),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
