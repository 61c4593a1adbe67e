/*
 * A replica of several groups (see include/tor/pool.h and
 * docs/pool-design.md): one relay per group, each in a thread of its own,
 * the electors stepped by one driver, and a group's halt kept to it.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tor/balancer.h"
#include "tor/clock.h"
#include "tor/electors.h"
#include "tor/http.h"
#include "tor/kafka.h"
#include "tor/log.h"
#include "tor/pool.h"
#include "tor/relay.h"

/* How often the main thread looks at the groups, the stop flag and the
 * Kafka probes. */
#define POOL_TICK_MS 100

enum group_state {
	GROUP_RUNNING,
	GROUP_STOPPED,          /* tor_relay_serve returned 0 */
	GROUP_HALTED,           /* it returned -1: its lease is given back */
};

struct group {
	const struct tor_config *cfg;
	struct tor_relay *relay;
	struct tor_log_group log;
	pthread_t thread;
	bool started;
	_Atomic int state;
	tor_err err;
};

/* One idle producer per distinct Kafka (brokers and properties): the
 * standby health reports of the groups that use it ask it whether a broker
 * answers. */
struct probe {
	const struct tor_config *cfg;
	struct tor_sink *sink;
};

struct pool {
	struct group *groups;
	size_t n;
	struct probe *probes;
	size_t n_probes;
	bool kafka_ok;                  /* every probe answered, last look */
	int64_t next_look_ms;
	struct tor_balancer *balancer;
	bool *handing;                  /* per group: a hand-over in flight */
	struct tor_handover *plan;      /* the balancer's round, n at most */
};

static bool
same_kafka(const struct tor_config *a, const struct tor_config *b)
{
	if (strcmp(a->kafka.brokers, b->kafka.brokers) != 0 ||
	    a->kafka.n_properties != b->kafka.n_properties)
		return false;
	for (size_t i = 0; i < a->kafka.n_properties; i++)
		if (strcmp(a->kafka.properties[i], b->kafka.properties[i]) != 0)
			return false;
	return true;
}

/* The probe never produces: no report comes. */
static void
probe_ack(void *ctx, uint64_t seq, int err, const char *errstr)
{
	(void)ctx;
	(void)seq;
	(void)err;
	(void)errstr;
}

static struct tor_sink *
probe_for(struct pool *p, const struct tor_config *cfg, tor_err *err)
{
	struct probe *pr;

	for (size_t i = 0; i < p->n_probes; i++)
		if (same_kafka(p->probes[i].cfg, cfg))
			return p->probes[i].sink;
	pr = &p->probes[p->n_probes];
	if ((pr->sink = tor_sink_new(cfg, probe_ack, NULL, err)) == NULL)
		return NULL;
	pr->cfg = cfg;
	p->n_probes++;
	return pr->sink;
}

static void *
group_main(void *arg)
{
	struct group *g = arg;
	int rc;

	tor_log_use_group(&g->log);
	rc = tor_relay_serve(g->relay, &g->err);
	if (rc < 0) {
		log_error("pool", "group %s halted (the other groups go on): %s",
		    g->cfg->group, g->err.msg);
		atomic_store(&tor_relay_metrics(g->relay)->halted, true);
	}
	atomic_store(&g->state, rc < 0 ? GROUP_HALTED : GROUP_STOPPED);
	return NULL;
}

/* Threads made here take no signal: the main thread's handler sets the
 * stop flag every group reads. */
static int
start_group(struct group *g, tor_err *err)
{
	sigset_t all, old;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&g->thread, NULL, group_main, g);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		return tor_err_set(err, "group %s: cannot start its thread: %s",
		    g->cfg->group, strerror(rc));
	g->started = true;
	return 0;
}

static size_t
count_state(const struct pool *p, enum group_state s)
{
	size_t n = 0;

	for (size_t i = 0; i < p->n; i++)
		if (p->groups[i].started && atomic_load(&p->groups[i].state) ==
		    (int)s)
			n++;
	return n;
}

/* Every beat: whether each distinct Kafka answers a metadata request (what
 * this replica reports as its health to the pool), and the probes' events
 * served. */
static void
look_at_kafka(struct pool *p)
{
	int64_t now = tor_mono_ms();
	bool ok = true;
	tor_err err;

	for (size_t i = 0; i < p->n_probes; i++)
		if (tor_sink_poll(p->probes[i].sink, 0, &err) < 0)
			log_warn("pool", "Kafka probe: %s", err.msg);
	if (now < p->next_look_ms)
		return;
	p->next_look_ms = now + p->groups[0].cfg->pool.beat_ms;
	for (size_t i = 0; i < p->n_probes; i++)
		ok = ok && tor_sink_reachable(p->probes[i].sink, 500);
	if (ok != p->kafka_ok)
		log_warn("pool", "Kafka %s", ok ? "answers again" :
		    "does not answer: this replica reports itself unhealthy "
		    "to the pool");
	p->kafka_ok = ok;
}

/* The balancer's step: the hand-overs it asked for that are done, and the
 * next round. */
static void
balance(struct pool *p, bool draining)
{
	size_t k;

	for (size_t i = 0; i < p->n; i++)
		if (p->handing[i] &&
		    !tor_relay_handing_over(p->groups[i].relay)) {
			p->handing[i] = false;
			tor_balancer_handed_over(p->balancer, true);
		}
	k = tor_balancer_tick(p->balancer, p->kafka_ok, draining, p->plan,
	    p->n);
	for (size_t i = 0; i < k; i++) {
		struct group *g = &p->groups[p->plan[i].group];

		if (atomic_load(&g->state) != GROUP_RUNNING) {
			tor_balancer_handed_over(p->balancer, false);
			continue;
		}
		tor_relay_hand_over(g->relay, p->plan[i].target);
		p->handing[p->plan[i].group] = true;
	}
}

static void
tick(void)
{
	const struct timespec ts = { 0, POOL_TICK_MS * 1000000L };

	nanosleep(&ts, NULL);
}

int
tor_pool_run(const struct tor_config *cfgs, size_t n,
    volatile sig_atomic_t *stop, tor_err *err)
{
	struct pool p = { 0 };
	struct tor_http *http = NULL;
	struct tor_group_view *views = NULL;
	struct tor_elector **els = NULL;
	struct tor_electors *electors = tor_electors_new();
	int rc = -1;

	p.groups = calloc(n, sizeof(*p.groups));
	p.probes = calloc(n, sizeof(*p.probes));
	views = calloc(n, sizeof(*views));
	els = calloc(n, sizeof(*els));
	p.handing = calloc(n, sizeof(*p.handing));
	p.plan = calloc(n, sizeof(*p.plan));
	if (p.groups == NULL || p.probes == NULL || views == NULL ||
	    els == NULL || electors == NULL || p.handing == NULL ||
	    p.plan == NULL) {
		tor_err_set(err, "out of memory");
		goto out;
	}
	p.n = n;
	p.kafka_ok = true;
	for (size_t i = 0; i < n; i++) {
		struct group *g = &p.groups[i];
		struct tor_sink *probe;

		g->cfg = &cfgs[i];
		snprintf(g->log.name, sizeof(g->log.name), "%s", cfgs[i].group);
		if ((g->relay = tor_relay_new(g->cfg, stop, true, err)) == NULL)
			goto out;
		tor_elector_set_log_group(tor_relay_elector(g->relay), &g->log);
		if ((probe = probe_for(&p, g->cfg, err)) == NULL)
			goto out;
		tor_relay_set_kafka_probe(g->relay, probe);
		views[i].group = g->cfg->group;
		views[i].m = tor_relay_metrics(g->relay);
		views[i].el = tor_relay_elector(g->relay);
		els[i] = tor_relay_elector(g->relay);
		if (tor_electors_add(electors, els[i], err) < 0)
			goto out;
	}
	if ((p.balancer = tor_balancer_new(cfgs, els, n, err)) == NULL)
		goto out;
	if (cfgs[0].http.listen[0] != '\0' &&
	    (http = tor_http_start(&cfgs[0], views, n, err)) == NULL)
		goto out;
	tor_http_show_pool(http, cfgs[0].pool.name,
	    tor_balancer_metrics(p.balancer));
	if (tor_electors_start(electors, err) < 0)
		goto stop;
	for (size_t i = 0; i < n; i++)
		if (start_group(&p.groups[i], err) < 0)
			goto stop;
	log_info("pool", "serving %zu groups", n);
	while (!*stop && count_state(&p, GROUP_HALTED) < n) {
		tick();
		look_at_kafka(&p);
		balance(&p, false);
	}
	/* The others stop counting this replica before its groups go. */
	balance(&p, true);
	rc = 0;
stop:
	/* A stop the loop did not see (a start that failed) is the process's
	 * too: every group started ends its leadership cleanly. */
	for (size_t i = 0; i < n; i++)
		if (p.groups[i].relay != NULL)
			tor_relay_stop(p.groups[i].relay);
	for (size_t i = 0; i < n; i++)
		if (p.groups[i].started)
			pthread_join(p.groups[i].thread, NULL);
	if (rc == 0 && count_state(&p, GROUP_HALTED) == n)
		rc = tor_err_set(err, "every group halted (see each group's "
		    "line above)");
	tor_balancer_leave(p.balancer);
out:
	/* The server and the driver read the electors: they stop first. */
	tor_http_stop(http);
	tor_electors_free(electors);
	tor_balancer_free(p.balancer);
	free(els);
	for (size_t i = 0; p.groups != NULL && i < n; i++)
		tor_relay_free(p.groups[i].relay);
	for (size_t i = 0; i < p.n_probes; i++)
		tor_sink_free(p.probes[i].sink);
	free(p.probes);
	free(p.groups);
	free(p.handing);
	free(p.plan);
	free(views);
	return rc;
}
