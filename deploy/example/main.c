/*
 * tor-example: a small orders service that writes its events through an
 * outbox table, for tor to publish.
 *
 *   PUT    /{uuid}   create the order and an OrderCreated event  201, 409
 *   DELETE /{uuid}   delete the order and write OrderDeleted      204, 404
 *
 * A path that is not a UUID is 400, any other method 405, a database error
 * 500.  HTTP is libmicrohttpd with its own threads; the main thread only
 * waits for SIGTERM or SIGINT, then stops the server and exits 0.  Each
 * request works on a database connection of its own (orders.c).
 *
 * Settings come from flags, else from the environment, else the defaults
 * of the local stack (deploy/local/stack.sh).
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <mysql.h>

#include "orders.h"

#define HTTP_THREADS	4
#define MIGRATE_TRIES	30	/* one a second while the database starts */

struct options {
	struct sockaddr_in	listen;
	char			listen_text[64];
	struct orders_db	db;
};

/* ---- logging ----------------------------------------------------------- */

/* One logfmt line on stderr, written with one write(2) so that the lines of
 * the HTTP threads never interleave. */
static void
vlog(const char *level, const char *fmt, va_list ap)
{
	char msg[1024], line[1200];
	struct timespec now;
	struct tm tm;
	char ts[32];
	int n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	for (char *p = msg; *p != '\0'; p++)
		if (*p == '"' || *p == '\n')
			*p = '\'';
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line, sizeof(line),
	    "ts=%s.%03ldZ level=%s component=example msg=\"%s\"\n", ts,
	    now.tv_nsec / 1000000, level, msg);
	if (n > (int)sizeof(line) - 1)
		n = (int)sizeof(line) - 1;
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;		/* nowhere left to say it */
}

static void
log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog("info", fmt, ap);
	va_end(ap);
}

static void
log_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog("warn", fmt, ap);
	va_end(ap);
}

static void __attribute__((noreturn))
fatalx(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog("error", fmt, ap);
	va_end(ap);
	exit(code);
}

/* ---- settings ---------------------------------------------------------- */

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr,
	    "usage: tor-example [--listen host:port] [--mysql-host host]\n"
	    "           [--mysql-port port] [--mysql-user user]\n"
	    "           [--mysql-password password] [--database name]\n"
	    "environment: EXAMPLE_LISTEN, MYSQL_HOST, MYSQL_PORT, MYSQL_USER,\n"
	    "           MYSQL_PASSWORD, MYSQL_DATABASE (flags win)\n");
	exit(2);
}

static const char *
env_or(const char *name, const char *fallback)
{
	const char *v = getenv(name);

	return v != NULL && *v != '\0' ? v : fallback;
}

/* A port number, 1..65535; 0 when s is not one. */
static unsigned int
parse_port(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < 1 || v > 65535)
		return 0;
	return (unsigned int)v;
}

/* "a.b.c.d:port" into an IPv4 socket address; -1 if it is not one. */
static int
parse_listen(const char *s, struct sockaddr_in *sa)
{
	char host[INET_ADDRSTRLEN];
	const char *colon = strrchr(s, ':');
	unsigned int port;

	if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	if ((port = parse_port(colon + 1)) == 0)
		return -1;
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host[0] != '\0' ? host : "0.0.0.0",
	    &sa->sin_addr) != 1)
		return -1;
	return 0;
}

static void
parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "listen",		required_argument, NULL, 'l' },
		{ "mysql-host",		required_argument, NULL, 'H' },
		{ "mysql-port",		required_argument, NULL, 'P' },
		{ "mysql-user",		required_argument, NULL, 'u' },
		{ "mysql-password",	required_argument, NULL, 'p' },
		{ "database",		required_argument, NULL, 'd' },
		{ "help",		no_argument,	   NULL, 'h' },
		{ NULL,			0,		   NULL, 0 }
	};
	const char *listen = env_or("EXAMPLE_LISTEN", "127.0.0.1:8080");
	const char *port = env_or("MYSQL_PORT", "3307");
	int ch;

	o->db.host = env_or("MYSQL_HOST", "127.0.0.1");
	o->db.user = env_or("MYSQL_USER", "app");
	o->db.password = env_or("MYSQL_PASSWORD", "app");
	o->db.database = env_or("MYSQL_DATABASE", "shop");
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'l': listen = optarg; break;
		case 'H': o->db.host = optarg; break;
		case 'P': port = optarg; break;
		case 'u': o->db.user = optarg; break;
		case 'p': o->db.password = optarg; break;
		case 'd': o->db.database = optarg; break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	if (parse_listen(listen, &o->listen) < 0)
		fatalx(2, "--listen %s: not an IPv4 host:port", listen);
	snprintf(o->listen_text, sizeof(o->listen_text), "%s", listen);
	if ((o->db.port = parse_port(port)) == 0)
		fatalx(2, "--mysql-port %s: not a port number", port);
}

/* ---- HTTP -------------------------------------------------------------- */

/* Copies the order id out of a path "/<uuid>", lowercased, into id (at
 * least ORDERS_ID_LEN + 1 bytes); -1 if the path is anything else. */
static int
parse_order_path(const char *url, char *id)
{
	if (url[0] != '/' || strlen(url + 1) != ORDERS_ID_LEN)
		return -1;
	for (int i = 0; i < ORDERS_ID_LEN; i++) {
		unsigned char c = (unsigned char)url[1 + i];

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return -1;
		} else if (!isxdigit(c))
			return -1;
		id[i] = (char)tolower(c);
	}
	id[ORDERS_ID_LEN] = '\0';
	return 0;
}

static enum MHD_Result
respond(struct MHD_Connection *conn, unsigned int status, const char *body)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(strlen(body), (void *)body,
	    MHD_RESPMEM_MUST_COPY);
	if (r == NULL)
		return MHD_NO;
	if (body[0] != '\0')
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
		    "application/json");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW,
		    "PUT, DELETE");
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* Answers a request for the order `id` with the status its store call
 * gave, and logs it. */
static enum MHD_Result
answer_order(struct MHD_Connection *conn, const char *method,
    const char *id, enum orders_result res, const char *err)
{
	char body[128];
	unsigned int status;

	switch (res) {
	case ORDERS_OK:
		if (strcmp(method, MHD_HTTP_METHOD_PUT) == 0) {
			status = MHD_HTTP_CREATED;
			snprintf(body, sizeof(body), "{\"order_id\":\"%s\"}",
			    id);
		} else {
			status = MHD_HTTP_NO_CONTENT;
			body[0] = '\0';
		}
		log_info("%s /%s: %u", method, id, status);
		break;
	case ORDERS_EXISTS:
		status = MHD_HTTP_CONFLICT;
		snprintf(body, sizeof(body), "{\"error\":\"order exists\"}");
		log_info("%s /%s: %u (exists)", method, id, status);
		break;
	case ORDERS_ABSENT:
		status = MHD_HTTP_NOT_FOUND;
		snprintf(body, sizeof(body), "{\"error\":\"no such order\"}");
		log_info("%s /%s: %u (absent)", method, id, status);
		break;
	default:
		status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		snprintf(body, sizeof(body), "{\"error\":\"database error\"}");
		log_warn("%s /%s: %u: %s", method, id, status, err);
		break;
	}
	return respond(conn, status, body);
}

/*
 * libmicrohttpd calls this once when the headers are in (we only mark the
 * request as seen), then once per chunk of body (dropped: no request here
 * has one), then once more with no data, when we answer.
 */
static enum MHD_Result
handle_request(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **req_cls)
{
	static int seen;
	const struct options *o = cls;
	char id[ORDERS_ID_LEN + 1], err[512];
	enum orders_result res;

	(void)version;
	(void)upload_data;
	if (*req_cls == NULL) {
		*req_cls = &seen;
		return MHD_YES;
	}
	if (*upload_data_size != 0) {
		*upload_data_size = 0;
		return MHD_YES;
	}
	err[0] = '\0';
	if (strcmp(method, MHD_HTTP_METHOD_PUT) != 0 &&
	    strcmp(method, MHD_HTTP_METHOD_DELETE) != 0)
		return respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
		    "{\"error\":\"PUT or DELETE\"}");
	if (parse_order_path(url, id) < 0)
		return respond(conn, MHD_HTTP_BAD_REQUEST,
		    "{\"error\":\"the path must be /{uuid}\"}");
	if (strcmp(method, MHD_HTTP_METHOD_PUT) == 0)
		res = orders_create(&o->db, id, err, sizeof(err));
	else
		res = orders_delete(&o->db, id, err, sizeof(err));
	return answer_order(conn, method, id, res, err);
}

/* ---- main -------------------------------------------------------------- */

/* Creates the tables, waiting for a database that is still starting. */
static void
migrate(const struct orders_db *db)
{
	char err[512];

	for (int i = 1; orders_migrate(db, err, sizeof(err)) != ORDERS_OK;
	    i++) {
		if (i == MIGRATE_TRIES)
			fatalx(1, "database: %s (gave up after %d tries)",
			    err, i);
		log_warn("database: %s (try %d of %d)", err, i,
		    MIGRATE_TRIES);
		sleep(1);
	}
}

int
main(int argc, char **argv)
{
	struct options o;
	struct MHD_Daemon *d;
	sigset_t stop;
	int sig;

	parse_options(argc, argv, &o);
	if (mysql_library_init(0, NULL, NULL) != 0)
		fatalx(1, "mysql_library_init failed");
	migrate(&o.db);

	/* Blocked before the HTTP threads start, so they inherit the mask
	 * and only sigwait below sees the signals. */
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);

	d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO |
	    MHD_USE_ERROR_LOG, 0, NULL, NULL, handle_request, &o,
	    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&o.listen,
	    MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)HTTP_THREADS,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)30,
	    MHD_OPTION_END);
	if (d == NULL)
		fatalx(1, "cannot listen on %s (in use?)", o.listen_text);
	log_info("listening on %s; orders in %s:%u/%s as %s", o.listen_text,
	    o.db.host, o.db.port, o.db.database, o.db.user);

	if (sigwait(&stop, &sig) != 0)
		fatalx(1, "sigwait failed");
	log_info("%s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	MHD_stop_daemon(d);
	mysql_library_end();
	return 0;
}
