/*
 * The byte stream under a Redis connection: TCP, or TLS over TCP with
 * OpenSSL.  hiredis 0.14 has no TLS, but its two halves that matter do not
 * care where bytes go: redisFormatCommandArgv builds a command, and a
 * redisReader parses whatever bytes it is fed.  So a command here is:
 * format, write all of it, then read whatever arrives into the reader until
 * it hands back a whole reply.
 *
 * Clear text takes the same path as TLS (a NULL SSL), so timeouts,
 * reconnects and the closed-connection check are one code path, and what
 * the tests show in clear text holds for TLS.  The socket is non-blocking
 * and every wait is a poll() against a deadline: connect, the handshake
 * and each command get timeout_ms each.  That bounds the cases that would
 * otherwise hang: a paused server, and a clear-text Redis that reads our
 * TLS hello as the start of an inline command and waits for its end.
 *
 * A failure is told in the operator's terms (unknown issuer, expired,
 * host-name mismatch, client certificate refused, not a TLS port, a TLS
 * port spoken to in clear text), naming the config key that fixes it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tor/clock.h"
#include "tor/link.h"

/* TCP keepalive as hiredis's redisEnableKeepAlive sets it: notices a peer
 * that vanished without a FIN (a killed VM) on an idle connection. */
#define KEEPALIVE_IDLE_S        15
#define KEEPALIVE_INTERVAL_S    5
#define KEEPALIVE_COUNT         3

/* hiredis reads 16 KiB at a time; so do we. */
#define READ_CHUNK              16384

struct tor_link_tls {
	SSL_CTX *ctx;
	char *server_name;      /* "" checks the host dialled */
	bool verify;
	bool has_cert;          /* a client certificate is offered */
};

struct tor_link {
	int fd;
	SSL *ssl;               /* NULL: clear text */
	const struct tor_link_tls *tls;
	const char *path;       /* the config group, named in hints */
	redisReader *reader;
	int timeout_ms;
	bool replied;           /* a reply came: a wrong-port hint no longer fits */
};

/* The reason of OpenSSL's last error on this thread, or "" (the queue is
 * per thread, and cleared before each call that may fail). */
static const char *
ssl_reason(void)
{
	const char *s = ERR_reason_error_string(ERR_peek_last_error());

	return s != NULL ? s : "";
}

/* Keys protected by a passphrase are refused rather than prompted for. */
static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return 0;
}

static int
tls_fail(struct tor_link_tls *t, const char **key, const char *name,
    tor_err *err, const char *fmt, const char *file)
{
	*key = name;
	tor_err_set(err, fmt, file, ssl_reason());
	tor_link_tls_free(t);
	return -1;
}

int
tor_link_tls_new(const struct tor_redis_tls *cfg,
    struct tor_link_tls **out, const char **key, tor_err *err)
{
	struct tor_link_tls *t;

	*out = NULL;
	*key = "enabled";
	if ((t = calloc(1, sizeof(*t))) == NULL ||
	    (t->server_name = strdup(cfg->server_name)) == NULL) {
		free(t);
		return tor_err_set(err, "out of memory");
	}
	t->verify = cfg->verify;
	t->has_cert = cfg->cert_file[0] != '\0';
	ERR_clear_error();
	if ((t->ctx = SSL_CTX_new(TLS_client_method())) == NULL ||
	    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION) != 1) {
		tor_err_set(err, "TLS: %s", ssl_reason());
		tor_link_tls_free(t);
		return -1;
	}
	SSL_CTX_set_default_passwd_cb(t->ctx, no_passphrase);
	/* No ca_file: the system's CAs (a managed service's public CA). */
	if (cfg->ca_file[0] != '\0' ?
	    SSL_CTX_load_verify_locations(t->ctx, cfg->ca_file, NULL) != 1 :
	    SSL_CTX_set_default_verify_paths(t->ctx) != 1)
		return tls_fail(t, key, "ca_file", err,
		    "cannot load CA certificates from %s: %s",
		    cfg->ca_file[0] != '\0' ? cfg->ca_file : "the system");
	if (cfg->cert_file[0] != '\0' && SSL_CTX_use_certificate_chain_file(
	    t->ctx, cfg->cert_file) != 1)
		return tls_fail(t, key, "cert_file", err,
		    "cannot load a certificate from %s: %s", cfg->cert_file);
	/* Loading the key checks it against the certificate loaded above. */
	if (cfg->key_file[0] != '\0' && SSL_CTX_use_PrivateKey_file(t->ctx,
	    cfg->key_file, SSL_FILETYPE_PEM) != 1) {
		if (ERR_GET_REASON(ERR_peek_last_error()) ==
		    X509_R_KEY_VALUES_MISMATCH) {
			*key = "key_file";
			tor_err_set(err, "%s does not match cert_file %s",
			    cfg->key_file, cfg->cert_file);
			tor_link_tls_free(t);
			return -1;
		}
		return tls_fail(t, key, "key_file", err,
		    "cannot load a private key from %s: %s", cfg->key_file);
	}
	SSL_CTX_set_verify(t->ctx, cfg->verify ? SSL_VERIFY_PEER :
	    SSL_VERIFY_NONE, NULL);
	*key = NULL;
	*out = t;
	return 0;
}

void
tor_link_tls_free(struct tor_link_tls *t)
{
	if (t == NULL)
		return;
	SSL_CTX_free(t->ctx);
	free(t->server_name);
	free(t);
}

/* timeout_ms from now; a timeout of 0 or less waits for ever (configs
 * built by hand in tests). */
static int64_t
deadline_after(int timeout_ms)
{
	return timeout_ms > 0 ? tor_mono_ms() + timeout_ms : INT64_MAX;
}

/* Waits until fd is ready for events: 1 ready, 0 the deadline passed, -1
 * an error (errno). */
static int
wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = events };
	int64_t left = -1;
	int n;

	for (;;) {
		if (deadline != INT64_MAX &&
		    (left = deadline - tor_mono_ms()) <= 0)
			return 0;
		if ((n = poll(&p, 1, left > INT32_MAX ? INT32_MAX :
		    (int)left)) > 0)
			return 1;
		if (n == 0)
			return 0;
		if (errno != EINTR)
			return -1;
	}
}

static void
tune_socket(int fd)
{
	int on = 1, idle = KEEPALIVE_IDLE_S, intvl = KEEPALIVE_INTERVAL_S,
	    cnt = KEEPALIVE_COUNT;

	/* Commands are small and each waits for its reply: no Nagle delay.
	 * Failures are harmless (the command timeout still holds). */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl,
	    sizeof(intvl));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* One address: 0 connected, else -1 with errno (ETIMEDOUT past the
 * deadline). */
static int
connect_one(int fd, const struct addrinfo *ai, int64_t deadline)
{
	socklen_t len = sizeof(int);
	int so_err = 0, w;

	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
		return 0;
	if (errno != EINPROGRESS)
		return -1;
	if ((w = wait_fd(fd, POLLOUT, deadline)) <= 0) {
		if (w == 0)
			errno = ETIMEDOUT;
		return -1;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_err, &len) == -1)
		return -1;
	if (so_err != 0) {
		errno = so_err;
		return -1;
	}
	return 0;
}

/* A non-blocking TCP socket connected to host:port, each address in turn
 * within one deadline; -1 with err "connect: <reason>". */
static int
tcp_connect(const char *host, int port, int timeout_ms, tor_err *err)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	int64_t deadline = deadline_after(timeout_ms);
	char service[8];
	int fd = -1, rc, saved = ECONNREFUSED;

	hints.ai_family = AF_UNSPEC;
	snprintf(service, sizeof(service), "%d", port);
	if ((rc = getaddrinfo(host, service, &hints, &res)) != 0)
		return tor_err_set(err, "connect: %s", rc == EAI_SYSTEM ?
		    strerror(errno) : gai_strerror(rc));
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, ai->ai_protocol);
		if (fd >= 0 && connect_one(fd, ai, deadline) == 0)
			break;
		saved = errno;
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return tor_err_set(err, "connect: %s", strerror(saved));
	tune_socket(fd);
	return fd;
}

static bool
is_ip_literal(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, s, buf) == 1 ||
	    inet_pton(AF_INET6, s, buf) == 1;
}

static void
format_time(const ASN1_TIME *t, char *buf, size_t cap)
{
	struct tm tm;

	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1 ||
	    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, cap, "?");
}

/* Why the server's certificate was refused, from the verify result. */
static void
verify_cause(const struct tor_link *l, const char *name, tor_err *err)
{
	long v = SSL_get_verify_result(l->ssl);
	STACK_OF(X509) *chain = SSL_get_peer_cert_chain(l->ssl);
	X509 *leaf = chain != NULL && sk_X509_num(chain) > 0 ?
	    sk_X509_value(chain, 0) : NULL;
	const char *path = l->path;
	char issuer[160] = "?", when[32];

	if (leaf != NULL)
		X509_NAME_oneline(X509_get_issuer_name(leaf), issuer,
		    sizeof(issuer));
	switch (v) {
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_CERT_SIGNATURE_FAILURE:
		tor_err_set(err, "TLS handshake: unknown issuer: the server's "
		    "certificate (issuer %s) is not signed by a CA of "
		    "%s.ca_file (%s)", issuer, path,
		    X509_verify_cert_error_string(v));
		break;
	case X509_V_ERR_CERT_HAS_EXPIRED:
		format_time(leaf != NULL ? X509_get0_notAfter(leaf) : NULL,
		    when, sizeof(when));
		tor_err_set(err, "TLS handshake: the server's certificate has "
		    "expired (not after %s)", when);
		break;
	case X509_V_ERR_CERT_NOT_YET_VALID:
		format_time(leaf != NULL ? X509_get0_notBefore(leaf) : NULL,
		    when, sizeof(when));
		tor_err_set(err, "TLS handshake: the server's certificate is "
		    "not valid yet (not before %s)", when);
		break;
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		tor_err_set(err, "TLS handshake: host-name mismatch: the "
		    "server's certificate is not for \"%s\" (%s.server_name "
		    "sets the name to check)", name, path);
		break;
	default:
		tor_err_set(err, "TLS handshake: certificate verify failed: %s",
		    X509_verify_cert_error_string(v));
	}
}

/*
 * A failed TLS call (SSL_connect, SSL_read, SSL_write) in words.  name is
 * the name checked during the handshake, NULL after it.  OpenSSL reports a
 * peer that does not speak TLS as a malformed record, and a server that
 * refused our certificate as the alert it sent.
 */
static void
tls_cause(const struct tor_link *l, int code, const char *name,
    tor_err *err)
{
	const char *phase = name != NULL ? "TLS handshake" : "TLS";
	unsigned long e = ERR_peek_last_error();
	int reason = ERR_GET_REASON(e);
	const char *path = l->path;

	if (code == SSL_ERROR_ZERO_RETURN ||
	    reason == SSL_R_UNEXPECTED_EOF_WHILE_READING ||
	    (code == SSL_ERROR_SYSCALL && e == 0 && errno == 0)) {
		if (l->replied)
			tor_err_set(err, "Server closed the connection");
		else
			tor_err_set(err, "%s: the server closed the connection "
			    "(not a TLS port, or it refused us)", phase);
		return;
	}
	/* TLS 1.3: the server judges our certificate after our handshake
	 * ended; its alert can be lost to the reset that our PING, unread
	 * when it closed, provokes.  A reset at that point means that. */
	if (code == SSL_ERROR_SYSCALL && e == 0 && name == NULL &&
	    !l->replied && (errno == ECONNRESET || errno == EPIPE)) {
		if (l->tls->has_cert)
			tor_err_set(err, "TLS: the server dropped us right after "
			    "the handshake: it refused our client certificate "
			    "(%s.cert_file)", path);
		else
			tor_err_set(err, "TLS: the server dropped us right after "
			    "the handshake: it requires a client certificate "
			    "(set %s.cert_file and %s.key_file)", path, path);
		return;
	}
	if (code == SSL_ERROR_SYSCALL && e == 0) {
		tor_err_set(err, "%s: %s", phase, strerror(errno));
		return;
	}
	switch (reason) {
	case SSL_R_CERTIFICATE_VERIFY_FAILED:
		verify_cause(l, name, err);
		return;
	case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
		tor_err_set(err, "%s: the server requires a client certificate "
		    "(set %s.cert_file and %s.key_file)", phase, path, path);
		return;
	case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
	case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
	case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
	case SSL_R_TLSV1_ALERT_DECRYPT_ERROR:
		tor_err_set(err, "%s: the server refused our client certificate "
		    "(%s: %s.cert_file)", phase, ssl_reason(), path);
		return;
	case SSL_R_WRONG_VERSION_NUMBER:
	case SSL_R_PACKET_LENGTH_TOO_LONG:
	case SSL_R_RECORD_LENGTH_MISMATCH:
	case SSL_R_HTTP_REQUEST:
	case SSL_R_UNEXPECTED_RECORD:
		tor_err_set(err, "%s: the server does not speak TLS (a clear-text "
		    "port? %s: %s)", phase, path, ssl_reason());
		return;
	default:
		tor_err_set(err, "%s: %s", phase, e != 0 ? ssl_reason() :
		    "failed");
	}
}

/* Waits for what a TLS call asked for (code: SSL_get_error's); name as
 * for tls_cause.  0 ready, -1 with err set. */
static int
tls_wait(struct tor_link *l, int code, int64_t deadline, const char *name,
    tor_err *err)
{
	int w;

	if (code != SSL_ERROR_WANT_READ && code != SSL_ERROR_WANT_WRITE) {
		tls_cause(l, code, name, err);
		return -1;
	}
	w = wait_fd(l->fd, code == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
	    deadline);
	if (w == 1)
		return 0;
	if (w == 0 && name != NULL)
		return tor_err_set(err, "TLS handshake: no answer within %d ms "
		    "(a clear-text port? Redis reads a TLS hello as an "
		    "unfinished command and waits)", l->timeout_ms);
	if (w == 0)
		return tor_err_set(err, "no reply within %d ms", l->timeout_ms);
	return tor_err_set(err, "%s: %s", name != NULL ? "TLS handshake" :
	    "TLS", strerror(errno));
}

static int
handshake(struct tor_link *l, const char *host, tor_err *err)
{
	const struct tor_link_tls *t = l->tls;
	const char *name = t->server_name[0] != '\0' ? t->server_name : host;
	int64_t deadline = deadline_after(l->timeout_ms);
	int rc;

	ERR_clear_error();
	if ((l->ssl = SSL_new(t->ctx)) == NULL ||
	    SSL_set_fd(l->ssl, l->fd) != 1)
		return tor_err_set(err, "TLS: %s", ssl_reason());
	/* SNI carries names only; an address is checked as an address. */
	if (!is_ip_literal(name) &&
	    SSL_set_tlsext_host_name(l->ssl, name) != 1)
		return tor_err_set(err, "TLS: server name \"%s\": %s", name,
		    ssl_reason());
	if (t->verify && (is_ip_literal(name) ?
	    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(l->ssl), name) :
	    SSL_set1_host(l->ssl, name)) != 1)
		return tor_err_set(err, "TLS: server name \"%s\": %s", name,
		    ssl_reason());
	for (;;) {
		ERR_clear_error();
		errno = 0;
		if ((rc = SSL_connect(l->ssl)) == 1)
			return 0;
		if (tls_wait(l, SSL_get_error(l->ssl, rc), deadline, name,
		    err) == -1)
			return -1;
	}
}

/* The server closed the connection: before any reply, a TLS server that
 * hung up on our clear text is the likely cause. */
static int
closed(const struct tor_link *l, tor_err *err)
{
	if (l->replied)
		return tor_err_set(err, "Server closed the connection");
	return tor_err_set(err, "Server closed the connection before any "
	    "reply (a TLS-only port? see %s)", l->path);
}

static int
send_all(struct tor_link *l, const char *buf, size_t len, int64_t deadline,
    tor_err *err)
{
	size_t off = 0;
	ssize_t n;
	int rc, w;

	while (off < len) {
		if (l->ssl != NULL) {
			/* A retried SSL_write must repeat its arguments. */
			ERR_clear_error();
			errno = 0;
			if ((rc = SSL_write(l->ssl, buf, (int)len)) > 0)
				return 0;
			if (tls_wait(l, SSL_get_error(l->ssl, rc), deadline,
			    NULL, err) == -1)
				return -1;
			continue;
		}
		if ((n = send(l->fd, buf + off, len - off, MSG_NOSIGNAL)) > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == ECONNRESET || errno == EPIPE) &&
		    !l->replied)
			return closed(l, err);
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return tor_err_set(err, "%s", strerror(errno));
		if ((w = wait_fd(l->fd, POLLOUT, deadline)) == 0)
			return tor_err_set(err, "no reply within %d ms",
			    l->timeout_ms);
		if (w < 0)
			return tor_err_set(err, "%s", strerror(errno));
	}
	return 0;
}

/* Clear text answered by a TLS server: its first byte is a TLS record
 * type (0x15 alert, 0x16 handshake), never one of RESP's. */
static bool
looks_like_tls(const char *buf, ssize_t n)
{
	return n > 0 && (buf[0] == 0x15 || buf[0] == 0x16);
}

/* Reads what is there (waiting until the deadline for something): the
 * count, or -1 with err set (0 never: a close is an error). */
static ssize_t
recv_some(struct tor_link *l, char *buf, size_t cap, int64_t deadline,
    tor_err *err)
{
	ssize_t n;
	int rc, w;

	for (;;) {
		if (l->ssl != NULL) {
			ERR_clear_error();
			errno = 0;
			if ((rc = SSL_read(l->ssl, buf, (int)cap)) > 0)
				return rc;
			if (tls_wait(l, SSL_get_error(l->ssl, rc), deadline,
			    NULL, err) == -1)
				return -1;
			continue;
		}
		if ((n = recv(l->fd, buf, cap, 0)) > 0)
			return n;
		if (n == 0 || (errno == ECONNRESET && !l->replied))
			return closed(l, err);
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return tor_err_set(err, "%s", strerror(errno));
		if ((w = wait_fd(l->fd, POLLIN, deadline)) == 0)
			return tor_err_set(err, "no reply within %d ms",
			    l->timeout_ms);
		if (w < 0)
			return tor_err_set(err, "%s", strerror(errno));
	}
}

int
tor_link_set_timeout(struct tor_link *l, int timeout_ms)
{
	int was = l->timeout_ms;

	l->timeout_ms = timeout_ms;
	return was;
}

redisReply *
tor_link_command(struct tor_link *l, int argc, const char **argv,
    const size_t *argvlen, tor_err *err)
{
	int64_t deadline = deadline_after(l->timeout_ms);
	char buf[READ_CHUNK], *cmd;
	void *reply = NULL;
	ssize_t n;
	int len;

	if ((len = redisFormatCommandArgv(&cmd, argc, argv, argvlen)) < 0) {
		tor_err_set(err, "out of memory");
		return NULL;
	}
	n = send_all(l, cmd, (size_t)len, deadline, err);
	redisFreeCommand(cmd);
	if (n < 0)
		return NULL;
	for (;;) {
		if (redisReaderGetReply(l->reader, &reply) != REDIS_OK) {
			tor_err_set(err, "%s", l->reader->errstr);
			return NULL;
		}
		if (reply != NULL) {
			l->replied = true;
			return reply;
		}
		if ((n = recv_some(l, buf, sizeof(buf), deadline, err)) < 0)
			return NULL;
		if (l->ssl == NULL && !l->replied && looks_like_tls(buf, n)) {
			tor_err_set(err, "the server answered in TLS (a TLS "
			    "port? see %s)", l->path);
			return NULL;
		}
		if (redisReaderFeed(l->reader, buf, (size_t)n) != REDIS_OK) {
			tor_err_set(err, "%s", l->reader->errstr);
			return NULL;
		}
	}
}

int
tor_link_send(struct tor_link *l, int argc, const char **argv, tor_err *err)
{
	char *cmd;
	int len, rc;

	if ((len = redisFormatCommandArgv(&cmd, argc, argv, NULL)) < 0)
		return tor_err_set(err, "out of memory");
	rc = send_all(l, cmd, (size_t)len, deadline_after(l->timeout_ms), err);
	redisFreeCommand(cmd);
	return rc;
}

/* Whether bytes wait: in OpenSSL's buffer, or on the socket within the
 * deadline.  1 yes, 0 not yet, -1 with err set. */
static int
readable(struct tor_link *l, int64_t deadline, tor_err *err)
{
	int w;

	if (l->ssl != NULL && SSL_pending(l->ssl) > 0)
		return 1;
	if ((w = wait_fd(l->fd, POLLIN, deadline)) < 0)
		return tor_err_set(err, "%s", strerror(errno));
	return w;
}

int
tor_link_receive(struct tor_link *l, int wait_ms, redisReply **reply,
    tor_err *err)
{
	int64_t deadline = deadline_after(wait_ms > 0 ? wait_ms : 1);
	char buf[READ_CHUNK];
	void *r = NULL;
	ssize_t n;
	int w;

	for (;;) {
		if (redisReaderGetReply(l->reader, &r) != REDIS_OK)
			return tor_err_set(err, "%s", l->reader->errstr);
		if (r != NULL) {
			l->replied = true;
			*reply = r;
			return 1;
		}
		/* A reply cut in two stays in the reader for the next call. */
		if ((w = readable(l, deadline, err)) <= 0)
			return w;
		if ((n = recv_some(l, buf, sizeof(buf),
		    deadline_after(l->timeout_ms), err)) < 0)
			return -1;
		if (redisReaderFeed(l->reader, buf, (size_t)n) != REDIS_OK)
			return tor_err_set(err, "%s", l->reader->errstr);
	}
}

struct tor_link *
tor_link_open(const char *host, int port, int timeout_ms,
    struct tor_link_tls *tls, const char *path, tor_err *err)
{
	const char *ping[] = { "PING" };
	struct tor_link *l;
	redisReply *reply;

	if ((l = calloc(1, sizeof(*l))) == NULL ||
	    (l->reader = redisReaderCreate()) == NULL) {
		free(l);
		tor_err_set(err, "out of memory");
		return NULL;
	}
	l->timeout_ms = timeout_ms;
	l->tls = tls;
	l->path = path;
	if ((l->fd = tcp_connect(host, port, timeout_ms, err)) < 0) {
		redisReaderFree(l->reader);
		free(l);
		return NULL;
	}
	if (tls == NULL)
		return l;
	if (handshake(l, host, err) == -1) {
		tor_link_free(l);
		return NULL;
	}
	/* TLS 1.3 ends the client's handshake before the server has looked
	 * at our certificate; a refusal comes with the first reply.  A PING
	 * brings it into the connect (NOAUTH is an answer too). */
	if ((reply = tor_link_command(l, 1, ping, NULL, err)) == NULL) {
		tor_link_free(l);
		return NULL;
	}
	freeReplyObject(reply);
	return l;
}

void
tor_link_free(struct tor_link *l)
{
	if (l == NULL)
		return;
	/* No close_notify: it could block on a dead peer, and Redis does not
	 * need one to drop the client. */
	SSL_free(l->ssl);
	if (l->fd >= 0)
		close(l->fd);
	redisReaderFree(l->reader);
	free(l);
}

bool
tor_link_closed(struct tor_link *l)
{
	struct pollfd p = { .fd = l->fd, .events = POLLIN | POLLRDHUP };
	char byte;
	ssize_t n;
	int rc;

	if (poll(&p, 1, 0) <= 0)
		return false;
	if ((p.revents & (POLLERR | POLLHUP | POLLRDHUP | POLLNVAL)) != 0)
		return true;
	if (l->ssl != NULL) {
		/* Readable between commands: TLS 1.3 session tickets (taken
		 * in and dropped here), or the server's close_notify. */
		ERR_clear_error();
		errno = 0;
		if ((rc = SSL_peek(l->ssl, &byte, 1)) > 0)
			return false;
		rc = SSL_get_error(l->ssl, rc);
		return rc != SSL_ERROR_WANT_READ && rc != SSL_ERROR_WANT_WRITE;
	}
	n = recv(l->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
	return !(n > 0 || (n < 0 && (errno == EAGAIN ||
	    errno == EWOULDBLOCK || errno == EINTR)));
}
