/*
 * The byte stream under one Redis connection: TCP, or TLS over TCP.
 *
 * hiredis (0.14) formats the commands and parses the replies; this module
 * moves the bytes, so that the same connection code serves clear text and
 * TLS alike.  Every wait (connect, handshake, a command) is bounded by the
 * link's timeout; nothing here blocks longer, whatever the server does.
 *
 * Errors fill a tor_err with the cause alone ("connect: Connection
 * refused", "TLS handshake: certificate has expired ..."): the caller adds
 * the server's name.
 */
#ifndef TOR_LINK_H
#define TOR_LINK_H

#include <stdbool.h>

#include <hiredis/hiredis.h>

#include "tor/config.h"
#include "tor/err.h"

/* What one tls group of the config becomes: trusted CAs, our certificate
 * and key, whether to verify.  Shared by the links made with it. */
struct tor_link_tls;

/* One open connection. */
struct tor_link;

/*
 * Builds the TLS settings of cfg (which must have enabled set).  Returns 0, or -1 with err set and
 * *key naming the key at fault ("ca_file", "cert_file", "key_file") for a
 * file that does not load or a key that does not match its certificate.
 * The config loader calls this too, so that a file refused here is refused
 * at load.
 */
int tor_link_tls_new(const struct tor_redis_tls *cfg,
    struct tor_link_tls **out, const char **key, tor_err *err);
void tor_link_tls_free(struct tor_link_tls *t);

/*
 * Connects to host:port within timeout_ms and, with tls, completes the
 * handshake within timeout_ms more, checking the certificate against
 * tls's server name (or host when it has none) when tls verifies.
 * timeout_ms also bounds each command.  tls NULL: clear text.  path names
 * the config group that sets TLS here ("redis.tls") in hints.  With TLS,
 * a PING ends the connect (see the .c).  Returns the link, or NULL with
 * err set.
 */
struct tor_link *tor_link_open(const char *host, int port, int timeout_ms,
    struct tor_link_tls *tls, const char *path, tor_err *err);
void tor_link_free(struct tor_link *l);

/*
 * Sends one command (argv as for redisCommandArgv) and waits for its reply,
 * all within the link's timeout.  Returns the reply (a Redis error is a
 * reply of type REDIS_REPLY_ERROR; free with freeReplyObject), or NULL with
 * err set when the link failed: it is then useless, free it.
 */
redisReply *tor_link_command(struct tor_link *l, int argc, const char **argv,
    const size_t *argvlen, tor_err *err);

/* For a subscribed connection (SUBSCRIBE), whose replies come unasked:
 * sends one command without waiting for its reply (0, or -1 with err set:
 * the link is then useless), and waits up to wait_ms for the next reply
 * (1 with *reply set, 0 when none came, -1 with err set: useless). */
int tor_link_send(struct tor_link *l, int argc, const char **argv,
    tor_err *err);
int tor_link_receive(struct tor_link *l, int wait_ms, redisReply **reply,
    tor_err *err);

/* Sets the link's timeout for what follows; returns the one it had. */
int tor_link_set_timeout(struct tor_link *l, int timeout_ms);

/* Whether the server closed the link since the last reply, looked at
 * without blocking (nothing is owed to us between commands). */
bool tor_link_closed(struct tor_link *l);

#endif
