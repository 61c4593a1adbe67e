/*
 * The HTTP endpoint (DESIGN.md §7): /healthz, /readyz and /metrics on
 * http.listen, served by libmicrohttpd's own thread.
 *
 * The server only reads: the metrics each group's relay thread keeps
 * (struct tor_metrics, atomics) and its elector's state (its atomics).  It
 * never talks to MySQL, Redis or Kafka itself, so a probe costs the relay
 * nothing and cannot hang on a dead dependency.
 */
#ifndef TOR_HTTP_H
#define TOR_HTTP_H

#include "tor/config.h"
#include "tor/elector.h"
#include "tor/err.h"
#include "tor/metrics.h"

struct tor_http;

/* Binds cfg->http.listen and starts serving the n (>= 1) groups of v (the
 * list is copied; the metrics and electors it points to must outlive the
 * server).  cfg gives the listen address and the probes' thresholds.
 * Returns NULL with err set, e.g. "http.listen 0.0.0.0:9187: Address
 * already in use".  Call it only when http.listen is not "". */
struct tor_http *tor_http_start(const struct tor_config *cfg,
    const struct tor_group_view *v, size_t n, tor_err *err);

/* Stops the thread, closes the socket.  NULL is a no-op. */
void tor_http_stop(struct tor_http *h);

/* /metrics also shows the pool's tor_pool_* series from now on (a replica
 * of several groups); pool_name and pm must outlive the server.  Nothing
 * when h is NULL. */
void tor_http_show_pool(struct tor_http *h, const char *pool_name,
    const struct tor_pool_metrics *pm);

#endif
