/*
 * Unit tests of Redis Cluster redirections in ha/redis.c, against two fake
 * cluster nodes served by a thread of this test: each answers CLUSTER
 * SLOTS, ASKING and GET as the test's scenario says, and counts what it was
 * sent.  A fake is needed to make a node answer what a real cluster does
 * only for a moment (an ASK, a TRYAGAIN) or never (a redirect loop).
 *
 * What the lease store relies on: a MOVED is followed and remembered (the
 * next command goes straight to the new node), an ASK is followed for one
 * command only and after ASKING, a TRYAGAIN is sent again, and a command
 * that keeps being redirected fails after 5 redirections with an error
 * naming the slot and the nodes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "tor/config.h"
#include "tor/redis.h"

enum scenario {
	MOVED_TO_B,     /* A: GET -> MOVED to B */
	ASK_TO_B,       /* A: GET -> ASK to B; B serves GET only after ASKING */
	LOOP,           /* A: GET -> MOVED to B; B: GET -> MOVED to A */
	TRYAGAIN_TWICE, /* A: GET -> TRYAGAIN twice, then the value */
	SLOTS_NAME_B    /* CLUSTER SLOTS says B serves every slot */
};

#define MAX_CONNS 16

struct node {
	int listen_fd;
	int port;
	atomic_int gets;        /* GETs received */
	atomic_int askings;     /* ASKINGs received */
	atomic_int slots;       /* CLUSTER SLOTS received */
};

struct fake {
	struct node n[2];       /* A, B */
	enum scenario sc;
	atomic_int tryagains;
	atomic_bool stop;
	pthread_t thread;
	int slot;               /* the group's slot, for the redirections */
	struct tor_config cfg;
	char seed[32];
	char *seeds[1];
};

struct conn {
	int fd;
	int node;
	bool asking;
	redisReader *reader;
};

static void
send_str(int fd, const char *s)
{
	size_t len = strlen(s), off = 0;
	ssize_t n;

	while (off < len && (n = write(fd, s + off, len - off)) > 0)
		off += (size_t)n;
}

/* The answer of c's node to one command. */
static void
answer(struct fake *f, struct conn *c, redisReply *cmd)
{
	const struct node *other = &f->n[1 - c->node];
	struct node *me = &f->n[c->node];
	const char *name;
	char buf[256];
	int serving;

	if (cmd->type != REDIS_REPLY_ARRAY || cmd->elements < 1) {
		send_str(c->fd, "-ERR bad request\r\n");
		return;
	}
	name = cmd->element[0]->str;
	if (strcasecmp(name, "CLUSTER") == 0) {
		atomic_fetch_add(&me->slots, 1);
		serving = f->sc == SLOTS_NAME_B ? f->n[1].port : f->n[0].port;
		snprintf(buf, sizeof(buf), "*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n"
		    "$9\r\n127.0.0.1\r\n:%d\r\n$2\r\nid\r\n", serving);
		send_str(c->fd, buf);
		return;
	}
	if (strcasecmp(name, "ASKING") == 0) {
		atomic_fetch_add(&me->askings, 1);
		c->asking = true;
		send_str(c->fd, "+OK\r\n");
		return;
	}
	if (strcasecmp(name, "GET") != 0) {
		send_str(c->fd, "+OK\r\n");
		return;
	}
	atomic_fetch_add(&me->gets, 1);
	if (f->sc == TRYAGAIN_TWICE) {
		if (atomic_fetch_add(&f->tryagains, 1) < 2)
			send_str(c->fd, "-TRYAGAIN Multiple keys request during "
			    "rehashing of slot\r\n");
		else
			send_str(c->fd, "$2\r\nvA\r\n");
		return;
	}
	if (c->node == 1 && (f->sc == MOVED_TO_B || f->sc == SLOTS_NAME_B ||
	    (f->sc == ASK_TO_B && c->asking))) {
		c->asking = false;
		send_str(c->fd, "$2\r\nvB\r\n");
		return;
	}
	/* A sends to B (ASK in that scenario); B, asked without ASKING or in
	 * a loop, sends back to A. */
	snprintf(buf, sizeof(buf), "-%s %d 127.0.0.1:%d\r\n",
	    f->sc == ASK_TO_B && c->node == 0 ? "ASK" : "MOVED", f->slot,
	    other->port);
	send_str(c->fd, buf);
}

static void *
serve(void *arg)
{
	struct fake *f = arg;
	struct conn conns[MAX_CONNS];
	struct pollfd p[2 + MAX_CONNS];
	int nconns = 0;
	char buf[4096];

	while (!atomic_load(&f->stop)) {
		for (int i = 0; i < 2; i++)
			p[i] = (struct pollfd){ .fd = f->n[i].listen_fd,
			    .events = POLLIN };
		for (int i = 0; i < nconns; i++)
			p[2 + i] = (struct pollfd){ .fd = conns[i].fd,
			    .events = POLLIN };
		if (poll(p, (nfds_t)(2 + nconns), 50) <= 0)
			continue;
		for (int i = 0; i < 2; i++) {
			int fd;

			if ((p[i].revents & POLLIN) == 0 ||
			    (fd = accept(f->n[i].listen_fd, NULL, NULL)) < 0)
				continue;
			if (nconns == MAX_CONNS) {
				close(fd);
				continue;
			}
			conns[nconns++] = (struct conn){ .fd = fd, .node = i,
			    .reader = redisReaderCreate() };
		}
		for (int i = 0; i < nconns; i++) {
			struct conn *c = &conns[i];
			void *cmd;
			ssize_t n;

			if (i + 2 >= (int)(sizeof(p) / sizeof(p[0])) ||
			    (p[2 + i].revents & (POLLIN | POLLHUP)) == 0)
				continue;
			if ((n = read(c->fd, buf, sizeof(buf))) <= 0) {
				close(c->fd);
				redisReaderFree(c->reader);
				conns[i--] = conns[--nconns];
				/* p no longer lines up: poll again. */
				break;
			}
			redisReaderFeed(c->reader, buf, (size_t)n);
			while (redisReaderGetReply(c->reader, &cmd) ==
			    REDIS_OK && cmd != NULL) {
				answer(f, c, cmd);
				freeReplyObject(cmd);
			}
		}
	}
	for (int i = 0; i < nconns; i++) {
		close(conns[i].fd);
		redisReaderFree(conns[i].reader);
	}
	return NULL;
}

static void
listen_on(struct node *n)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	n->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(n->listen_fd >= 0);
	assert_int_equal(bind(n->listen_fd, (struct sockaddr *)&sa,
	    sizeof(sa)), 0);
	assert_int_equal(listen(n->listen_fd, 8), 0);
	assert_int_equal(getsockname(n->listen_fd, (struct sockaddr *)&sa,
	    &len), 0);
	n->port = ntohs(sa.sin_port);
}

static struct fake *
fake_start(enum scenario sc)
{
	struct fake *f = calloc(1, sizeof(*f));
	char key[64];

	assert_non_null(f);
	f->sc = sc;
	listen_on(&f->n[0]);
	listen_on(&f->n[1]);
	f->cfg.group = (char *)"orders";
	f->cfg.instance = (char *)"relay-a";
	f->cfg.ha.lease_ms = 3000;
	f->cfg.redis.host = (char *)"";
	f->cfg.redis.password = (char *)"";
	f->cfg.redis.prefix = (char *)"tor";
	f->cfg.redis.timeout_ms = 2000;
	snprintf(f->seed, sizeof(f->seed), "127.0.0.1:%d", f->n[0].port);
	f->seeds[0] = f->seed;
	f->cfg.redis.cluster.nodes = f->seeds;
	f->cfg.redis.cluster.n_nodes = 1;
	tor_redis_key(&f->cfg, "lease", key, sizeof(key));
	f->slot = tor_redis_slot(key);
	assert_int_equal(pthread_create(&f->thread, NULL, serve, f), 0);
	return f;
}

static void
fake_stop(struct fake *f)
{
	atomic_store(&f->stop, true);
	pthread_join(f->thread, NULL);
	close(f->n[0].listen_fd);
	close(f->n[1].listen_fd);
	free(f);
}

/* GET on r: the value, or NULL with err set. */
static redisReply *
get(struct tor_redis *r, tor_err *err)
{
	const char *argv[] = { "GET", "tor:{orders}:lease" };

	return tor_redis_command(r, 2, argv, NULL, err);
}

static void
get_gives(struct tor_redis *r, const char *want)
{
	redisReply *reply;
	tor_err err;

	reply = get(r, &err);
	if (reply == NULL)
		fail_msg("GET: %s", err.msg);
	assert_int_equal(reply->type, REDIS_REPLY_STRING);
	assert_string_equal(reply->str, want);
	freeReplyObject(reply);
}

static void
test_parse_redirect(void **state)
{
	char host[64];
	int slot = -1, port = -1;

	(void)state;
	assert_int_equal(tor_redis_parse_redirect("MOVED 3999 127.0.0.1:6381",
	    &slot, host, sizeof(host), &port), TOR_REDIRECT_MOVED);
	assert_int_equal(slot, 3999);
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 6381);
	assert_int_equal(tor_redis_parse_redirect("ASK 0 redis-2.svc:7000",
	    &slot, host, sizeof(host), &port), TOR_REDIRECT_ASK);
	assert_int_equal(slot, 0);
	assert_string_equal(host, "redis-2.svc");
	assert_int_equal(port, 7000);
	assert_int_equal(tor_redis_parse_redirect("MOVED 16383 [::1]:6379",
	    &slot, host, sizeof(host), &port), TOR_REDIRECT_MOVED);
	assert_int_equal(slot, 16383);
	assert_string_equal(host, "::1");
	/* A node that does not know its address: the one that answered. */
	assert_int_equal(tor_redis_parse_redirect("MOVED 12 :6380", &slot,
	    host, sizeof(host), &port), TOR_REDIRECT_MOVED);
	assert_string_equal(host, "");
	assert_int_equal(port, 6380);
	assert_int_equal(tor_redis_parse_redirect("TRYAGAIN Multiple keys "
	    "request during rehashing of slot", &slot, host, sizeof(host),
	    &port), TOR_REDIRECT_TRYAGAIN);
	/* Other errors are not redirections. */
	assert_int_equal(tor_redis_parse_redirect("ERR unknown command",
	    &slot, host, sizeof(host), &port), TOR_REDIRECT_NONE);
	assert_int_equal(tor_redis_parse_redirect("MOVEDX 1 a:1", &slot, host,
	    sizeof(host), &port), TOR_REDIRECT_NONE);
	assert_int_equal(tor_redis_parse_redirect("TRYAGAINX", &slot, host,
	    sizeof(host), &port), TOR_REDIRECT_NONE);
	/* Malformed redirections. */
	assert_int_equal(tor_redis_parse_redirect("MOVED 16384 a:1", &slot,
	    host, sizeof(host), &port), -1);
	assert_int_equal(tor_redis_parse_redirect("MOVED x a:1", &slot, host,
	    sizeof(host), &port), -1);
	assert_int_equal(tor_redis_parse_redirect("MOVED 1 a", &slot, host,
	    sizeof(host), &port), -1);
	assert_int_equal(tor_redis_parse_redirect("ASK 1 a:0", &slot, host,
	    sizeof(host), &port), -1);
	assert_int_equal(tor_redis_parse_redirect("ASK 1 a:70000", &slot,
	    host, sizeof(host), &port), -1);
	assert_int_equal(tor_redis_parse_redirect("ASK 1 a:1x", &slot, host,
	    sizeof(host), &port), -1);
	assert_int_equal(tor_redis_parse_redirect("MOVED 1 "
	    "a-very-long-host-name-that-does-not-fit-in-the-buffer:1", &slot,
	    host, 16, &port), -1);
}

/* The values CLUSTER KEYSLOT gives (Redis's documentation). */
static void
test_slot(void **state)
{
	(void)state;
	assert_int_equal(tor_redis_slot("somekey"), 11058);
	assert_int_equal(tor_redis_slot("foo{hash_tag}"), 2515);
	assert_int_equal(tor_redis_slot("{hash_tag}bar"), 2515);
	/* An empty tag hashes the whole key. */
	assert_int_not_equal(tor_redis_slot("{}a"), tor_redis_slot("{}b"));
	/* Every key of a group: one slot. */
	assert_int_equal(tor_redis_slot("tor:{orders}:lease"),
	    tor_redis_slot("tor:{orders}:health:relay-a"));
	assert_int_equal(tor_redis_slot("tor:{orders}:lease"),
	    tor_redis_slot("orders"));
}

/* The seed serves the slot; a MOVED sends the command to B, and the next
 * one goes straight there. */
static void
test_moved_followed_and_kept(void **state)
{
	struct fake *f = fake_start(MOVED_TO_B);
	struct tor_redis *r = tor_redis_new(&f->cfg);

	(void)state;
	get_gives(r, "vB");
	assert_int_equal(atomic_load(&f->n[0].gets), 1);
	assert_int_equal(atomic_load(&f->n[1].gets), 1);
	get_gives(r, "vB");
	assert_int_equal(atomic_load(&f->n[0].gets), 1);
	assert_int_equal(atomic_load(&f->n[1].gets), 2);
	/* Keyless commands go to the node of the slot too. */
	assert_int_equal(tor_redis_ping(r, &(tor_err){ 0 }), 1);
	tor_redis_free(r);
	fake_stop(f);
}

/* An ASK holds for one command: ASKING then the command at B, and the
 * next command goes to A again. */
static void
test_ask_once(void **state)
{
	struct fake *f = fake_start(ASK_TO_B);
	struct tor_redis *r = tor_redis_new(&f->cfg);

	(void)state;
	get_gives(r, "vB");
	get_gives(r, "vB");
	assert_int_equal(atomic_load(&f->n[0].gets), 2);
	assert_int_equal(atomic_load(&f->n[1].gets), 2);
	assert_int_equal(atomic_load(&f->n[1].askings), 2);
	tor_redis_free(r);
	fake_stop(f);
}

/* MOVED back and forth: the command fails after 5 redirections, and the
 * error names the slot, the group and the way it went. */
static void
test_redirect_loop_bounded(void **state)
{
	struct fake *f = fake_start(LOOP);
	struct tor_redis *r = tor_redis_new(&f->cfg);
	char want[256];
	redisReply *reply;
	tor_err err;

	(void)state;
	reply = get(r, &err);
	assert_null(reply);
	assert_int_equal(atomic_load(&f->n[0].gets) +
	    atomic_load(&f->n[1].gets), 6);
	snprintf(want, sizeof(want), "redis cluster slot %d (group orders): "
	    "GET: more than 5 redirections (127.0.0.1:%d -MOVED-> 127.0.0.1:%d "
	    "-MOVED-> 127.0.0.1:%d -MOVED-> 127.0.0.1:%d -MOVED-> 127.0.0.1:%d "
	    "-MOVED-> 127.0.0.1:%d); last: MOVED %d 127.0.0.1:%d", f->slot,
	    f->n[0].port, f->n[1].port, f->n[0].port, f->n[1].port,
	    f->n[0].port, f->n[1].port, f->slot, f->n[0].port);
	assert_string_equal(err.msg, want);
	tor_redis_free(r);
	fake_stop(f);
}

static void
test_tryagain_sent_again(void **state)
{
	struct fake *f = fake_start(TRYAGAIN_TWICE);
	struct tor_redis *r = tor_redis_new(&f->cfg);

	(void)state;
	get_gives(r, "vA");
	assert_int_equal(atomic_load(&f->n[0].gets), 3);
	tor_redis_free(r);
	fake_stop(f);
}

/* The seed does not serve the slot: the connect asks it CLUSTER SLOTS and
 * goes to the node it names, before any command. */
static void
test_connect_finds_the_slot(void **state)
{
	struct fake *f = fake_start(SLOTS_NAME_B);
	struct tor_redis *r = tor_redis_new(&f->cfg);

	(void)state;
	get_gives(r, "vB");
	assert_int_equal(atomic_load(&f->n[0].slots), 1);
	assert_int_equal(atomic_load(&f->n[0].gets), 0);
	assert_int_equal(atomic_load(&f->n[1].gets), 1);
	tor_redis_free(r);
	fake_stop(f);
}

/* No seed answers: the error names the slot and the nodes tried. */
static void
test_no_seed_answers(void **state)
{
	struct fake *f = fake_start(MOVED_TO_B);
	struct tor_redis *r;
	char want[200];
	tor_err err;
	int port = f->n[0].port;

	(void)state;
	close(f->n[0].listen_fd);
	f->n[0].listen_fd = -1;
	r = tor_redis_new(&f->cfg);
	assert_int_equal(tor_redis_connect(r, &err), -1);
	snprintf(want, sizeof(want), "redis cluster slot %d (group orders): "
	    "no node serving it reached from 127.0.0.1:%d; last: redis "
	    "127.0.0.1:%d: connect: Connection refused", f->slot, port, port);
	assert_string_equal(err.msg, want);
	tor_redis_free(r);
	fake_stop(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_redirect),
		cmocka_unit_test(test_slot),
		cmocka_unit_test(test_moved_followed_and_kept),
		cmocka_unit_test(test_ask_once),
		cmocka_unit_test(test_redirect_loop_bounded),
		cmocka_unit_test(test_tryagain_sent_again),
		cmocka_unit_test(test_connect_finds_the_slot),
		cmocka_unit_test(test_no_seed_answers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
