/*
 * Unit tests of the Redis transport over TLS (ha/link.c) against a private
 * redis-server with a TLS port (and a clear one, for the test's own looks),
 * with certificates made by the openssl command in a temporary directory;
 * and of Redis Cluster over TLS, against two such servers in a cluster.
 *
 * What the relay relies on: commands work through the reader; a paused
 * server costs timeout_ms and no more, at the handshake and at a command;
 * a connection the server closed is noticed without blocking (the
 * elector's fast failover check), and one it did not close is not.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "redis_server.h"
#include "tor/link.h"
#include "tor/redis.h"

struct tls_server {
	struct server clear;    /* port: the clear one; pid: the server */
	int tls_port;
	char dir[64];
	char ca[128], cert[128], key[128];
	struct tor_redis_tls tls;
};

static void
run_openssl(const char *dir, const char *args)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "cd %s && openssl %s >/dev/null 2>&1", dir,
	    args);
	if (system(cmd) != 0)
		fail_msg("openssl %s failed", args);
}

static void
make_certs(struct tls_server *t)
{
	char path[128];
	FILE *f;

	snprintf(t->dir, sizeof(t->dir), "/tmp/tor-link-XXXXXX");
	assert_non_null(mkdtemp(t->dir));
	run_openssl(t->dir, "req -x509 -newkey ec -pkeyopt "
	    "ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem "
	    "-days 2 -subj /CN=unit-ca");
	run_openssl(t->dir, "req -newkey ec -pkeyopt "
	    "ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out "
	    "server.csr -subj /CN=localhost");
	snprintf(path, sizeof(path), "%s/san.ext", t->dir);
	assert_non_null(f = fopen(path, "w"));
	fputs("subjectAltName=IP:127.0.0.1\n", f);
	fclose(f);
	run_openssl(t->dir, "x509 -req -in server.csr -CA ca.pem -CAkey ca.key "
	    "-CAcreateserial -out server.pem -days 2 -extfile san.ext");
	snprintf(t->ca, sizeof(t->ca), "%s/ca.pem", t->dir);
	snprintf(t->cert, sizeof(t->cert), "%s/server.pem", t->dir);
	snprintf(t->key, sizeof(t->key), "%s/server.key", t->dir);
}

static void
start_tls_server(struct tls_server *t)
{
	pid_t parent = getpid();
	char port[16], tls_port[16];
	int i, fd;

	snprintf(port, sizeof(port), "%d", t->clear.port);
	snprintf(tls_port, sizeof(tls_port), "%d", t->tls_port);
	t->clear.pid = fork();
	assert_true(t->clear.pid >= 0);
	if (t->clear.pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		if ((fd = open("/dev/null", O_RDWR)) >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		execlp("redis-server", "redis-server", "--port", port,
		    "--tls-port", tls_port, "--bind", "127.0.0.1",
		    "--tls-cert-file", t->cert, "--tls-key-file", t->key,
		    "--tls-ca-cert-file", t->ca, "--tls-auth-clients", "no",
		    "--save", "", "--appendonly", "no", (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 100 && !server_answers(t->clear.port); i++)
		sleep_ms(50);
	assert_true(server_answers(t->clear.port));
}

static int
setup(void **state)
{
	struct tls_server *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	make_certs(t);
	t->clear.port = free_port();
	t->tls_port = free_port();
	config_for(&t->clear);
	t->tls = (struct tor_redis_tls){ .enabled = true, .ca_file = t->ca,
	    .cert_file = (char *)"", .key_file = (char *)"",
	    .server_name = (char *)"", .verify = true };
	t->clear.cfg.redis.port = t->tls_port;
	t->clear.cfg.redis.tls = t->tls;
	start_tls_server(t);
	*state = t;
	return 0;
}

static int
teardown(void **state)
{
	struct tls_server *t = *state;
	char cmd[128];

	server_stop(&t->clear, SIGTERM);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", t->dir);
	(void)system(cmd);
	free(t);
	return 0;
}

static struct tor_link *
open_tls(struct tls_server *t, int timeout_ms, struct tor_link_tls **tls,
    tor_err *err)
{
	const char *key;

	assert_int_equal(tor_link_tls_new(&t->tls, tls, &key, err), 0);
	return tor_link_open("127.0.0.1", t->tls_port, timeout_ms, *tls,
	    "redis.tls", err);
}

static void
test_commands_over_tls(void **state)
{
	struct tls_server *t = *state;
	const char *set[] = { "SET", "k", "a\r\nb" };
	const char *get[] = { "GET", "k" };
	const char *bad[] = { "NOSUCHCOMMAND" };
	struct tor_link_tls *tls;
	struct tor_link *l;
	redisReply *reply;
	tor_err err = { "" };

	if ((l = open_tls(t, 2000, &tls, &err)) == NULL)
		fail_msg("%s", err.msg);
	reply = tor_link_command(l, 3, set, NULL, &err);
	assert_non_null(reply);
	freeReplyObject(reply);
	reply = tor_link_command(l, 2, get, NULL, &err);
	assert_non_null(reply);
	assert_int_equal(reply->type, REDIS_REPLY_STRING);
	assert_string_equal(reply->str, "a\r\nb");
	freeReplyObject(reply);
	/* A Redis error is a reply; the link stays usable. */
	reply = tor_link_command(l, 1, bad, NULL, &err);
	assert_non_null(reply);
	assert_int_equal(reply->type, REDIS_REPLY_ERROR);
	freeReplyObject(reply);
	reply = tor_link_command(l, 2, get, NULL, &err);
	assert_non_null(reply);
	freeReplyObject(reply);
	tor_link_free(l);
	tor_link_tls_free(tls);
}

/* A paused server accepts the TCP connection (the kernel does) and then
 * never answers: the handshake, and a command on a link made before, each
 * give up after timeout_ms. */
static void
test_paused_server_times_out(void **state)
{
	struct tls_server *t = *state;
	const char *ping[] = { "PING" };
	struct tor_link_tls *tls;
	struct tor_link *l;
	tor_err err = { "" };
	int64_t t0, elapsed;

	if ((l = open_tls(t, 300, &tls, &err)) == NULL)
		fail_msg("%s", err.msg);
	kill(t->clear.pid, SIGSTOP);
	t0 = now_ms();
	assert_null(tor_link_command(l, 1, ping, NULL, &err));
	elapsed = now_ms() - t0;
	assert_string_equal(err.msg, "no reply within 300 ms");
	assert_true(elapsed >= 250 && elapsed < 10000);
	tor_link_free(l);

	t0 = now_ms();
	l = tor_link_open("127.0.0.1", t->tls_port, 300, tls, "redis.tls",
	    &err);
	elapsed = now_ms() - t0;
	kill(t->clear.pid, SIGCONT);
	assert_null(l);
	assert_string_equal(err.msg, "TLS handshake: no answer within 300 ms "
	    "(a clear-text port? Redis reads a TLS hello as an unfinished "
	    "command and waits)");
	assert_true(elapsed >= 250 && elapsed < 10000);
	tor_link_tls_free(tls);
}

/* The elector's check between commands (tor_redis_lost): a live TLS
 * connection is not lost, however often asked; once the server closes it
 * (CLIENT KILL, as Redis does for a killed peer's) it is, without a
 * command. */
static void
test_closed_connection_noticed(void **state)
{
	struct tls_server *t = *state;
	const char *ping[] = { "PING" };
	struct tor_redis *r = tor_redis_new(&t->clear.cfg);
	redisContext *c;
	redisReply *reply;
	tor_err err = { "" };
	int i;

	assert_non_null(r);
	if ((reply = tor_redis_command(r, 1, ping, NULL, &err)) == NULL)
		fail_msg("%s", err.msg);
	freeReplyObject(reply);
	sleep_ms(100);
	assert_false(tor_redis_lost(r));
	assert_false(tor_redis_lost(r));

	c = raw_connect(&t->clear);
	reply = redisCommand(c, "CLIENT KILL TYPE normal");
	assert_non_null(reply);
	assert_int_equal(reply->type, REDIS_REPLY_INTEGER);
	assert_true(reply->integer >= 1);
	freeReplyObject(reply);
	redisFree(c);
	for (i = 0; i < 100 && !tor_redis_lost(r); i++)
		sleep_ms(10);
	assert_true(i < 100);
	/* The next command connects again. */
	if ((reply = tor_redis_command(r, 1, ping, NULL, &err)) == NULL)
		fail_msg("after the kill: %s", err.msg);
	freeReplyObject(reply);
	tor_redis_free(r);
}

/* Two TLS cluster nodes for test_cluster_over_tls: each also has a clear
 * port (for the test's own looks) and tls-cluster on, so a node names its
 * TLS port to a TLS client (CLUSTER SLOTS, MOVED) and its clear one to a
 * clear client. */
struct cluster_node {
	struct server clear;
	int tls_port, bus_port;
	char id[64];
};

static void
start_cluster_node(struct tls_server *t, struct cluster_node *n)
{
	pid_t parent = getpid();
	char port[16], tls_port[16], bus[16], nodes[160];
	int i, fd;

	n->clear.port = free_port();
	n->tls_port = free_port();
	n->bus_port = free_port();
	snprintf(port, sizeof(port), "%d", n->clear.port);
	snprintf(tls_port, sizeof(tls_port), "%d", n->tls_port);
	snprintf(bus, sizeof(bus), "%d", n->bus_port);
	snprintf(nodes, sizeof(nodes), "nodes-%d.conf", n->clear.port);
	n->clear.pid = fork();
	assert_true(n->clear.pid >= 0);
	if (n->clear.pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		if ((fd = open("/dev/null", O_RDWR)) >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		execlp("redis-server", "redis-server", "--port", port,
		    "--tls-port", tls_port, "--bind", "127.0.0.1",
		    "--tls-cert-file", t->cert, "--tls-key-file", t->key,
		    "--tls-ca-cert-file", t->ca, "--tls-auth-clients", "no",
		    "--tls-cluster", "yes", "--cluster-enabled", "yes",
		    "--cluster-port", bus, "--cluster-config-file", nodes,
		    "--dir", t->dir, "--save", "", "--appendonly", "no",
		    (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 100 && !server_answers(n->clear.port); i++)
		sleep_ms(50);
	assert_true(server_answers(n->clear.port));
}

/* One command on node n's clear port; the reply, checked not an error. */
static redisReply *
on_node_v(struct cluster_node *n, const char *fmt, va_list ap)
{
	redisContext *c = raw_connect(&n->clear);
	redisReply *reply = redisvCommand(c, fmt, ap);

	assert_non_null(reply);
	if (reply->type == REDIS_REPLY_ERROR)
		fail_msg("%s: %s", fmt, reply->str);
	redisFree(c);
	return reply;
}

static redisReply *
on_node(struct cluster_node *n, const char *fmt, ...)
{
	redisReply *reply;
	va_list ap;

	va_start(ap, fmt);
	reply = on_node_v(n, fmt, ap);
	va_end(ap);
	return reply;
}

static void
on_node_ok(struct cluster_node *n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	freeReplyObject(on_node_v(n, fmt, ap));
	va_end(ap);
}

static bool
cluster_ok(struct cluster_node *n)
{
	redisReply *reply = on_node(n, "CLUSTER INFO");
	bool ok = strstr(reply->str, "cluster_state:ok") != NULL &&
	    strstr(reply->str, "cluster_known_nodes:2") != NULL;

	freeReplyObject(reply);
	return ok;
}

/*
 * Redis Cluster over TLS: tor is given node A's TLS port; A says over TLS
 * that B serves the group's slot, on B's TLS port, and tor goes there.
 * Then the slot moves to A: B answers MOVED with A's TLS port, and tor
 * follows over TLS.  Had a node named a clear port, the handshake there
 * would have failed.
 */
static void
test_cluster_over_tls(void **state)
{
	struct tls_server *t = *state;
	struct cluster_node n[2];
	struct tor_config cfg = t->clear.cfg;
	const char *set[] = { "SET", "tor:{orders}:lease", "x" };
	char seed[32], *seeds[1] = { seed };
	struct tor_redis *r;
	redisReply *reply;
	tor_err err = { "" };
	int slot = tor_redis_slot("tor:{orders}:lease"), i;

	memset(n, 0, sizeof(n));
	for (i = 0; i < 2; i++) {
		start_cluster_node(t, &n[i]);
		reply = on_node(&n[i], "CLUSTER MYID");
		snprintf(n[i].id, sizeof(n[i].id), "%s", reply->str);
		freeReplyObject(reply);
	}
	if (slot > 0)
		on_node_ok(&n[0], "CLUSTER ADDSLOTSRANGE 0 %d", slot - 1);
	if (slot < 16383)
		on_node_ok(&n[0], "CLUSTER ADDSLOTSRANGE %d 16383", slot + 1);
	on_node_ok(&n[1], "CLUSTER ADDSLOTS %d", slot);
	on_node_ok(&n[0], "CLUSTER MEET 127.0.0.1 %d %d", n[1].tls_port,
	    n[1].bus_port);
	for (i = 0; i < 200 && !(cluster_ok(&n[0]) && cluster_ok(&n[1])); i++)
		sleep_ms(50);
	assert_true(i < 200);

	snprintf(seed, sizeof(seed), "127.0.0.1:%d", n[0].tls_port);
	cfg.redis.host = (char *)"";
	cfg.redis.cluster.nodes = seeds;
	cfg.redis.cluster.n_nodes = 1;
	r = tor_redis_new(&cfg);
	if ((reply = tor_redis_command(r, 3, set, NULL, &err)) == NULL)
		fail_msg("SET through A: %s", err.msg);
	freeReplyObject(reply);
	reply = on_node(&n[1], "GET tor:{orders}:lease");
	assert_int_equal(reply->type, REDIS_REPLY_STRING);
	freeReplyObject(reply);

	/* The slot moves to A (its key dropped first: no MIGRATE here). */
	on_node_ok(&n[1], "DEL tor:{orders}:lease");
	on_node_ok(&n[0], "CLUSTER SETSLOT %d NODE %s", slot, n[0].id);
	on_node_ok(&n[1], "CLUSTER SETSLOT %d NODE %s", slot, n[0].id);
	if ((reply = tor_redis_command(r, 3, set, NULL, &err)) == NULL)
		fail_msg("SET after the move: %s", err.msg);
	freeReplyObject(reply);
	reply = on_node(&n[0], "GET tor:{orders}:lease");
	assert_int_equal(reply->type, REDIS_REPLY_STRING);
	freeReplyObject(reply);
	assert_int_equal(tor_redis_ping(r, &err), 1);
	tor_redis_free(r);
	for (i = 0; i < 2; i++)
		server_stop(&n[i].clear, SIGTERM);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cluster_over_tls, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_commands_over_tls, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_paused_server_times_out,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_closed_connection_noticed,
		    setup, teardown),
	};

	return cmocka_run_group_tests_name("link", tests, NULL, NULL);
}
