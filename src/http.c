/*
 * The HTTP endpoint (see include/tor/http.h).
 *
 * tor binds the socket itself and hands it to libmicrohttpd, so that a bind
 * error reaches the operator as one clear line naming http.listen (rather
 * than whatever the library prints) and is fatal at start.
 *
 * The probes' rules, decided for each group from what its relay thread
 * publishes in its struct tor_metrics; a group the process has halted (its
 * session stopped for good, the others go on) is left out of both:
 *
 *   /healthz  200 while the relay thread shows a sign of life younger than
 *             HEALTH_STALE_MS.  It beats at least once a second however idle
 *             it is (its waits are bounded to 1 s, a follower's too), so a
 *             stale beat means it is stuck.  The elector thread is not
 *             watched directly: a wedged elector stops renewing, the lease
 *             is lost, and the relay sees that.
 *   /readyz   503 while stepping down or when the relay's last Redis
 *             operation failed (a follower pings Redis every second, a
 *             leader writes its checkpoint); a leader is ready only while a
 *             binlog stream is open, its last event (heartbeats count)
 *             is younger than 3 x mysql.heartbeat_ms, and its producer
 *             reached a broker within kafka.unreachable_ms.  A follower or
 *             a candidate that reaches Redis is ready: it can take over.
 *
 * Each answers 200 "ok" when every group passes, else 503 with one line
 * per group that does not: "group <name>: <why>".
 *
 * The probes must be answered whoever else connects: a client that opens a
 * connection and never finishes its request (each byte it trickles resets
 * the idle timeout) would hold a slot for ever.  So one client address
 * holds at most PER_IP_LIMIT connections, all of them at most
 * CONNECTION_LIMIT (epoll: no select() ceiling) of CONNECTION_MEMORY each, a
 * silent one goes after IDLE_TIMEOUT_S, and one whose request has not
 * arrived whole REQUEST_DEADLINE_MS after it connected (or was last
 * answered) is cut by the reaper thread.  Clients that keep reconnecting
 * from many addresses can still crowd the probes out: the port is for the
 * probes and Prometheus, to be bound where only they reach it.
 */
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <pthread.h>

#include "tor/clock.h"
#include "tor/buf.h"
#include "tor/http.h"
#include "tor/log.h"

#define HEALTH_STALE_MS 10000
#define PER_IP_LIMIT    8       /* the kubelet's two probes, a scrape, room */
#define CONNECTION_LIMIT 256
#define CONNECTION_MEMORY (16 * 1024)   /* a request's headers, with room */
#define IDLE_TIMEOUT_S  3       /* a probe sends its request at once */
#define REQUEST_DEADLINE_MS 5000        /* a request however it trickles */
#define REAP_EVERY_MS   500

/* A connection the server holds: its socket, and since when it owes a
 * whole request (fd -1: a free slot). */
struct slot {
	int fd;
	int64_t since_ms;
};

struct tor_http {
	const struct tor_config *cfg;
	struct tor_group_view *groups;  /* a copy of the caller's list */
	size_t n_groups;
	/* A pool's balancer figures (tor_http_show_pool), or NULL. */
	const struct tor_pool_metrics *_Atomic pool;
	const char *pool_name;
	struct MHD_Daemon *d;

	/* The reaper's; slots are taken and freed by the server's thread. */
	pthread_t reaper;
	bool reaper_started;
	pthread_mutex_t mu;
	pthread_cond_t wake;
	bool stopping;
	struct slot slots[CONNECTION_LIMIT];
};

static enum MHD_Result
respond(struct MHD_Connection *conn, unsigned int status, const char *type,
    const void *body, size_t len)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(len, (void *)body,
	    MHD_RESPMEM_MUST_COPY);
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result
respond_text(struct MHD_Connection *conn, unsigned int status,
    const char *text)
{
	return respond(conn, status, "text/plain; charset=utf-8", text,
	    strlen(text));
}

/* Why group v is not alive, or NULL when it is. */
static const char *
unhealthy(const struct tor_group_view *v, char *why, size_t cap)
{
	int64_t beat = atomic_load(&v->m->relay_beat_ms);
	int64_t age = tor_mono_ms() - beat;

	if (age < HEALTH_STALE_MS)
		return NULL;
	snprintf(why, cap, "relay loop stalled: no sign of life for %lld ms",
	    (long long)age);
	return why;
}

/* Why group v is not ready, or NULL when it is. */
static const char *
unready(const struct tor_group_view *v, char *why, size_t cap)
{
	enum tor_elector_state state = tor_elector_state(v->el);
	int64_t stream = atomic_load(&v->m->stream_beat_ms);
	/* The group's own thresholds: a source may set its own. */
	const struct tor_config *cfg = tor_elector_config(v->el);
	int64_t stale = 3 * (int64_t)cfg->mysql.heartbeat_ms;
	int64_t down = atomic_load(&v->m->kafka_down_since_ms);

	if (state == TOR_STEPPING_DOWN)
		return "stepping down";
	if (!atomic_load(&v->m->redis_ok))
		return "redis: the last operation failed";
	if (state != TOR_LEADER)
		return NULL;
	if (stream == 0)
		return "leader: no binlog stream open";
	if (down > 0 && tor_mono_ms() - down >= cfg->kafka.unreachable_ms) {
		snprintf(why, cap, "leader: no Kafka broker reachable for %lld "
		    "ms (over kafka.unreachable_ms)",
		    (long long)(tor_mono_ms() - down));
		return why;
	}
	if (tor_mono_ms() - stream >= stale) {
		snprintf(why, cap, "leader: no binlog event for %lld ms "
		    "(over 3 x mysql.heartbeat_ms)",
		    (long long)(tor_mono_ms() - stream));
		return why;
	}
	return NULL;
}

/* Answers a probe: 200 "ok" when every group not halted passes, else 503
 * naming each one that does not and why. */
static enum MHD_Result
serve_probe(struct tor_http *h, struct MHD_Connection *conn, bool ready)
{
	struct tor_buf b = { 0 };
	enum MHD_Result ret;
	char why[160];
	int rc = 0;

	for (size_t i = 0; i < h->n_groups; i++) {
		const struct tor_group_view *v = &h->groups[i];
		const char *bad;

		if (atomic_load(&v->m->halted))
			continue;
		bad = ready ? unready(v, why, sizeof(why)) :
		    unhealthy(v, why, sizeof(why));
		if (bad != NULL)
			rc |= tor_buf_appendf(&b, "group %s: %s\n", v->group,
			    bad);
	}
	if (rc != 0) {
		tor_buf_free(&b);
		return respond_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
		    "out of memory\n");
	}
	if (b.len == 0)
		ret = respond_text(conn, MHD_HTTP_OK, "ok\n");
	else
		ret = respond(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
		    "text/plain; charset=utf-8", b.data, b.len);
	tor_buf_free(&b);
	return ret;
}

static enum MHD_Result
serve_metrics(struct tor_http *h, struct MHD_Connection *conn)
{
	struct tor_buf b = { 0 };
	enum MHD_Result ret;

	const struct tor_pool_metrics *pm = atomic_load(&h->pool);

	if (tor_metrics_render(h->groups, h->n_groups, &b) < 0 ||
	    (pm != NULL && tor_metrics_render_pool(h->pool_name, pm, &b) < 0)) {
		tor_buf_free(&b);
		return respond_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
		    "out of memory\n");
	}
	ret = respond(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; "
	    "charset=utf-8", b.data, b.len);
	tor_buf_free(&b);
	return ret;
}

/* An answered request starts the connection's next deadline (keep-alive). */
static void
renew_deadline(struct tor_http *h, struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn,
	    MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct slot *slot = ci != NULL ? ci->socket_context : NULL;

	if (slot == NULL)
		return;
	pthread_mutex_lock(&h->mu);
	slot->since_ms = tor_mono_ms();
	pthread_mutex_unlock(&h->mu);
}

static enum MHD_Result
answer(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **con_cls)
{
	struct tor_http *h = cls;
	bool known;

	renew_deadline(h, conn);
	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)con_cls;
	known = strcmp(url, "/metrics") == 0 || strcmp(url, "/healthz") == 0 ||
	    strcmp(url, "/readyz") == 0;
	if (!known)
		return respond_text(conn, MHD_HTTP_NOT_FOUND, "not found\n");
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
	    strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return respond_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
		    "method not allowed\n");
	if (strcmp(url, "/metrics") == 0)
		return serve_metrics(h, conn);
	return serve_probe(h, conn, strcmp(url, "/readyz") == 0);
}

/*
 * The server's thread tells of each connection it opens and closes: a slot
 * holds its socket while it is open.  The server closes a socket only after
 * telling, and the reaper touches a socket only under the lock, so it never
 * cuts a socket number that another connection reuses.  A connection that
 * finds no slot (there are as many as the server takes) is not watched.
 */
static void
track(void *cls, struct MHD_Connection *conn, void **socket_context,
    enum MHD_ConnectionNotificationCode toe)
{
	struct tor_http *h = cls;
	const union MHD_ConnectionInfo *ci;
	struct slot *slot = *socket_context;

	pthread_mutex_lock(&h->mu);
	if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		if (slot != NULL)
			slot->fd = -1;
		*socket_context = NULL;
	} else if ((ci = MHD_get_connection_info(conn,
	    MHD_CONNECTION_INFO_CONNECTION_FD)) != NULL) {
		for (size_t i = 0; i < CONNECTION_LIMIT; i++)
			if (h->slots[i].fd == -1) {
				h->slots[i].fd = ci->connect_fd;
				h->slots[i].since_ms = tor_mono_ms();
				*socket_context = &h->slots[i];
				break;
			}
	}
	pthread_mutex_unlock(&h->mu);
}

/* Cuts every connection whose request is overdue: shutdown() makes the
 * server read its end and close it. */
static void *
reap(void *arg)
{
	struct tor_http *h = arg;
	struct timespec at;

	pthread_mutex_lock(&h->mu);
	while (!h->stopping) {
		int64_t now = tor_mono_ms();

		for (size_t i = 0; i < CONNECTION_LIMIT; i++) {
			struct slot *slot = &h->slots[i];

			if (slot->fd == -1 ||
			    now - slot->since_ms < REQUEST_DEADLINE_MS)
				continue;
			shutdown(slot->fd, SHUT_RDWR);
			slot->since_ms = now;   /* once per deadline */
		}
		clock_gettime(CLOCK_MONOTONIC, &at);
		at.tv_nsec += REAP_EVERY_MS * 1000000L;
		at.tv_sec += at.tv_nsec / 1000000000L;
		at.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&h->wake, &h->mu, &at);
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

/* The lock and the wake-up of the reaper (on CLOCK_MONOTONIC), its slots
 * free. */
static int
reaper_init(struct tor_http *h)
{
	pthread_condattr_t attr;
	int rc;

	for (size_t i = 0; i < CONNECTION_LIMIT; i++)
		h->slots[i].fd = -1;
	if (pthread_condattr_init(&attr) != 0)
		return -1;
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	rc = pthread_cond_init(&h->wake, &attr);
	pthread_condattr_destroy(&attr);
	if (rc != 0)
		return -1;
	if (pthread_mutex_init(&h->mu, NULL) != 0) {
		pthread_cond_destroy(&h->wake);
		return -1;
	}
	return 0;
}

static void
reaper_stop(struct tor_http *h)
{
	if (h->reaper_started) {
		pthread_mutex_lock(&h->mu);
		h->stopping = true;
		pthread_cond_signal(&h->wake);
		pthread_mutex_unlock(&h->mu);
		pthread_join(h->reaper, NULL);
	}
	pthread_cond_destroy(&h->wake);
	pthread_mutex_destroy(&h->mu);
}

/* A listening socket on "host:port" ("[v6]:port" too), or -1 with err
 * naming http.listen. */
static int
listen_on(const char *listen_at, bool *v6, tor_err *err)
{
	struct addrinfo hints = { 0 }, *ai;
	char host[256];
	const char *spec = listen_at, *colon = strrchr(listen_at, ':');
	size_t hlen = (size_t)(colon - listen_at);
	int fd, one = 1, rc;

	/* The config loader checked the form: a colon and a port follow. */
	if (listen_at[0] == '[') {
		listen_at++;
		hlen -= 2;
	}
	if (hlen >= sizeof(host))
		return tor_err_set(err, "http.listen %s: host too long", spec);
	memcpy(host, listen_at, hlen);
	host[hlen] = '\0';
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((rc = getaddrinfo(host, colon + 1, &hints, &ai)) != 0)
		return tor_err_set(err, "http.listen %s: %s", spec,
		    gai_strerror(rc));
	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
	    ai->ai_protocol);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
		int e = errno;

		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return tor_err_set(err, "http.listen %s: %s", spec,
		    strerror(e));
	}
	*v6 = ai->ai_family == AF_INET6;
	freeaddrinfo(ai);
	return fd;
}

struct tor_http *
tor_http_start(const struct tor_config *cfg, const struct tor_group_view *v,
    size_t n, tor_err *err)
{
	struct tor_http *h;
	unsigned int flags = MHD_USE_AUTO_INTERNAL_THREAD;
	sigset_t all, old;
	bool v6 = false;
	int fd;

	if ((h = calloc(1, sizeof(*h))) == NULL ||
	    (h->groups = calloc(n, sizeof(*v))) == NULL) {
		free(h);
		tor_err_set(err, "out of memory");
		return NULL;
	}
	h->cfg = cfg;
	memcpy(h->groups, v, n * sizeof(*v));
	h->n_groups = n;
	if (reaper_init(h) == -1) {
		free(h->groups);
		free(h);
		tor_err_set(err, "http: cannot make the reaper's lock");
		return NULL;
	}
	if ((fd = listen_on(cfg->http.listen, &v6, err)) < 0) {
		reaper_stop(h);
		free(h->groups);
		free(h);
		return NULL;
	}
	if (v6)
		flags |= MHD_USE_IPv6;
	/* MHD owns fd from here: MHD_stop_daemon closes it.  Signals belong
	 * to the main thread (SIGTERM starts a clean shutdown and interrupts
	 * its waits); the server's thread and the reaper inherit this mask. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	h->d = MHD_start_daemon(flags, 0, NULL, NULL, answer, h,
	    MHD_OPTION_LISTEN_SOCKET, fd,
	    MHD_OPTION_NOTIFY_CONNECTION, track, h,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)IDLE_TIMEOUT_S,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned int)CONNECTION_LIMIT,
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)PER_IP_LIMIT,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY,
	    MHD_OPTION_END);
	if (h->d != NULL)
		h->reaper_started = pthread_create(&h->reaper, NULL, reap,
		    h) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (h->d != NULL && !h->reaper_started) {
		MHD_stop_daemon(h->d);
		reaper_stop(h);
		free(h->groups);
		free(h);
		tor_err_set(err, "http: cannot start the reaper thread");
		return NULL;
	}
	if (h->d == NULL) {
		close(fd);
		reaper_stop(h);
		free(h->groups);
		free(h);
		tor_err_set(err, "http.listen %s: the HTTP server did not start",
		    cfg->http.listen);
		return NULL;
	}
	log_info("http", "serving /healthz, /readyz and /metrics on %s",
	    cfg->http.listen);
	return h;
}

void
tor_http_stop(struct tor_http *h)
{
	if (h == NULL)
		return;
	/* The server first: it stops telling of connections. */
	MHD_stop_daemon(h->d);
	reaper_stop(h);
	free(h->groups);
	free(h);
}

void
tor_http_show_pool(struct tor_http *h, const char *pool_name,
    const struct tor_pool_metrics *pm)
{
	if (h == NULL)
		return;
	h->pool_name = pool_name;
	atomic_store(&h->pool, pm);
}
