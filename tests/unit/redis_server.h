/*
 * A private redis-server for the unit tests that talk to Redis.
 *
 * Each test starts its own server on a free port (no persistence, bound to
 * 127.0.0.1) in its setup and stops it in the teardown, which cmocka runs
 * even when a test fails.  The server is also told to die with us
 * (PR_SET_PDEATHSIG), so a crashed test run leaves no process behind.
 * Static inline, so that each test binary takes only what it uses.
 */
#ifndef TOR_TEST_REDIS_SERVER_H
#define TOR_TEST_REDIS_SERVER_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "tor/config.h"

struct server {
	pid_t pid;
	int port;
	const char *password;   /* --requirepass, or NULL */
	struct tor_config cfg;
};

static inline int
free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd, port;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static inline void
sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* True once the server answers anything (NOAUTH counts) to PING. */
static inline bool
server_answers(int port)
{
	struct timeval tv = { 0, 200000 };
	redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
	redisReply *reply;
	bool up = false;

	if (c != NULL && c->err == 0) {
		reply = redisCommand(c, "PING");
		up = reply != NULL;
		if (reply != NULL)
			freeReplyObject(reply);
	}
	if (c != NULL)
		redisFree(c);
	return up;
}

static inline void
server_start(struct server *s)
{
	pid_t parent = getpid();
	char port[16];
	int i, status, fd;

	snprintf(port, sizeof(port), "%d", s->port);
	s->pid = fork();
	assert_true(s->pid >= 0);
	if (s->pid == 0) {
		/* Die with the test, even if it crashes. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		if ((fd = open("/dev/null", O_RDWR)) >= 0) {
			dup2(fd, STDIN_FILENO);
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		if (s->password != NULL)
			execlp("redis-server", "redis-server", "--port", port,
			    "--bind", "127.0.0.1", "--save", "", "--appendonly",
			    "no", "--requirepass", s->password, (char *)NULL);
		else
			execlp("redis-server", "redis-server", "--port", port,
			    "--bind", "127.0.0.1", "--save", "", "--appendonly",
			    "no", (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 100; i++) {
		if (server_answers(s->port))
			return;
		if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
			s->pid = 0;
			fail_msg("redis-server on port %d exited at start",
			    s->port);
		}
		sleep_ms(50);
	}
	/* cmocka skips the teardown of a failed setup: stop it here. */
	kill(s->pid, SIGKILL);
	waitpid(s->pid, &status, 0);
	s->pid = 0;
	fail_msg("redis-server on port %d did not answer PING", s->port);
}

static inline void
server_stop(struct server *s, int sig)
{
	int status;

	if (s->pid <= 0)
		return;
	kill(s->pid, sig);
	/* A stopped server holds SIGTERM pending until continued. */
	kill(s->pid, SIGCONT);
	waitpid(s->pid, &status, 0);
	s->pid = 0;
}

static inline void
config_for(struct server *s)
{
	memset(&s->cfg, 0, sizeof(s->cfg));
	s->cfg.group = (char *)"orders";
	s->cfg.instance = (char *)"relay-a";
	s->cfg.ha.lease_ms = 3000;
	s->cfg.redis.host = (char *)"127.0.0.1";
	s->cfg.redis.port = s->port;
	s->cfg.redis.password = (char *)"";
	s->cfg.redis.prefix = (char *)"tor";
	s->cfg.redis.timeout_ms = 2000;
}

static inline int
setup_server(void **state)
{
	struct server *s = calloc(1, sizeof(*s));

	assert_non_null(s);
	s->port = free_port();
	config_for(s);
	*state = s;
	server_start(s);
	return 0;
}

static inline int
teardown_server(void **state)
{
	struct server *s = *state;

	server_stop(s, SIGTERM);
	free(s);
	return 0;
}

/* A plain hiredis connection, to look at Redis without our code. */
static inline redisContext *
raw_connect(const struct server *s)
{
	struct timeval tv = { 2, 0 };
	redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);

	assert_non_null(c);
	assert_int_equal(c->err, 0);
	return c;
}

static inline int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
