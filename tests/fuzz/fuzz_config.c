/*
 * libFuzzer target for the configuration loader (src/config.c): libconfig
 * text in, struct tor_config or an error out.
 *
 * The loader only reads from a path (it reads integer literals again from
 * the file's lines, see source_literal), so the input goes into a memfd and
 * the loader is given /proc/self/fd/N.  Besides the sanitizers' checks it
 * holds the loader to its contract:
 *   - a failed load leaves an error message and a zeroed struct (nothing to
 *     free);
 *   - a loaded config satisfies what include/tor/config.h promises of it
 *     (required keys set, resolved defaults, compiled routes, valid topic
 *     names, renew_ms below lease_ms less the drift margin, and with a
 *     Redis round trip too, every duration within a day...);
 *   - what tor_config_print prints (`tor --check-config`) loads again and
 *     prints the same, comments aside.
 * Nothing here talks to a server.  The process environment is cleaned
 * first, so the TOR_* secrets and $HOSTNAME are the same for every input.
 * Seeds: tests/fuzz/corpus/fuzz_config (tor.cfg and tests/unit/config/,
 * copied by tests/tools/make_fuzz_corpus.sh).
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tor/config.h"

#define DAY_MS 86400000

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);

/* libconfig 1.5 leaks what it is scanning when a syntax error follows
 * (`a = "x" b;` through config_read_file alone): not ours, and a failed
 * load ends tor anyway. */
const char *
__lsan_default_suppressions(void)
{
	return "leak:libconfig.so\n";
}

static int input_fd = -1, reprint_fd = -1;
static char input_path[64], reprint_path[64];

static int
open_memfd(const char *name, char *path, size_t cap)
{
	int fd = memfd_create(name, MFD_CLOEXEC);

	if (fd == -1) {
		perror("memfd_create");
		abort();
	}
	snprintf(path, cap, "/proc/self/fd/%d", fd);
	return fd;
}

/*
 * Since most inputs are syntax errors, nearly every run leaks inside
 * libconfig, and libFuzzer's leak check after each such run (suppressed,
 * but a scan of the whole heap) cut the rate fifty-fold.  So the per-input
 * check is off unless -detect_leaks is given; LeakSanitizer's check at exit
 * still reports any block of ours left unfreed.  libFuzzer parses its flags
 * after this returns.
 */
static void
default_no_leak_check(int *argc, char ***argv)
{
	static char *args[256];
	static char flag[] = "-detect_leaks=0";

	if (*argc + 1 >= (int)(sizeof(args) / sizeof(args[0])))
		return;
	for (int i = 1; i < *argc; i++)
		if (strncmp((*argv)[i], "-detect_leaks=", 14) == 0)
			return;
	for (int i = 0; i < *argc; i++)
		args[i] = (*argv)[i];
	args[(*argc)++] = flag;
	args[*argc] = NULL;
	*argv = args;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	default_no_leak_check(argc, argv);
	unsetenv("TOR_MYSQL_PASSWORD");
	unsetenv("TOR_REDIS_PASSWORD");
	unsetenv("TOR_CHECKPOINT_KEY");
	unsetenv("TOR_SENTINEL_PASSWORD");
	unsetenv("TOR_KAFKA_SASL_PASSWORD");
	setenv("HOSTNAME", "fuzz-host", 1);
	input_fd = open_memfd("fuzz_config.cfg", input_path,
	    sizeof(input_path));
	reprint_fd = open_memfd("fuzz_config.reprint", reprint_path,
	    sizeof(reprint_path));
	return 0;
}

static void
put_file(int fd, const void *data, size_t size)
{
	if (ftruncate(fd, 0) == -1 ||
	    (size > 0 && pwrite(fd, data, size, 0) != (ssize_t)size)) {
		perror("memfd write");
		abort();
	}
}

/* Kafka's rule for topic names, as the loader and the outbox apply it. */
static int
topic_ok(const char *s)
{
	size_t n;

	if (s == NULL || (n = strlen(s)) == 0 || n > 249 ||
	    strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '.' &&
		    s[i] != '_' && s[i] != '-')
			return 0;
	return 1;
}

static int
nonempty(const char *s)
{
	return s != NULL && s[0] != '\0';
}

/* What config.h promises of a loaded config; abort() on a broken promise,
 * so that libFuzzer keeps the input. */
static void
check_loaded(const struct tor_config *cfg)
{
	if (cfg->path == NULL || !nonempty(cfg->group) ||
	    !nonempty(cfg->instance))
		abort();
	for (const char *p = cfg->instance; *p != '\0'; p++)
		if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p))
			abort();
	/* The pool: a name fit for a hash tag, bounds of config.h. */
	if (!nonempty(cfg->pool.name) || strpbrk(cfg->pool.name, "{}: ") !=
	    NULL || cfg->pool.max_leading < 1 || cfg->pool.settle_ms < 0 ||
	    cfg->pool.settle_ms > 86400000 || cfg->pool.beat_ms < 100 ||
	    cfg->pool.beat_ms > 86400000)
		abort();

	if (!nonempty(cfg->mysql.host) || !nonempty(cfg->mysql.user) ||
	    cfg->mysql.password == NULL || cfg->mysql.start == NULL ||
	    cfg->mysql.port < 1 || cfg->mysql.port > 65535 ||
	    cfg->mysql.server_id == 0 || cfg->mysql.heartbeat_ms < 1 ||
	    cfg->mysql.connect_timeout_ms < 1 ||
	    cfg->mysql.tls.ca == NULL || cfg->mysql.tls.cert == NULL ||
	    cfg->mysql.tls.key == NULL ||
	    (cfg->mysql.tls.cert[0] != '\0') != (cfg->mysql.tls.key[0] != '\0'))
		abort();

	if (cfg->outbox.n_tables == 0 || cfg->outbox.tables == NULL)
		abort();
	for (size_t i = 0; i < cfg->outbox.n_tables; i++) {
		const struct tor_outbox_table *t = &cfg->outbox.tables[i];

		if (!nonempty(t->schema) || !nonempty(t->table) ||
		    strchr(t->table, '.') != NULL ||
		    (t->col_id != NULL && t->col_id[0] == '\0') ||
		    !nonempty(t->col_key) || !nonempty(t->col_type) ||
		    !nonempty(t->col_payload) ||
		    (t->n_headers > 0 && t->headers == NULL))
			abort();
		for (size_t j = 0; j < t->n_headers; j++)
			if (!nonempty(t->headers[j].column) ||
			    !nonempty(t->headers[j].header) ||
			    strncasecmp(t->headers[j].header, "tor.", 4) == 0)
				abort();
	}
	for (size_t i = 0; i < cfg->outbox.n_routes; i++) {
		const struct tor_route *r = &cfg->outbox.routes[i];

		if (!nonempty(r->match) || !topic_ok(r->topic))
			abort();
		/* The compiled pattern must be usable. */
		(void)regexec(&r->re, "order", 0, NULL, 0);
	}
	if (cfg->outbox.topic_template == NULL ||
	    (cfg->outbox.n_routes == 0 && cfg->outbox.topic_template[0] == '\0') ||
	    (cfg->outbox.topic_template[0] != '\0' &&
	    strstr(cfg->outbox.topic_template, "${aggregate_type}") == NULL))
		abort();
	if ((cfg->outbox.unrouted == TOR_UNROUTED_DLQ) !=
	    (cfg->outbox.dlq_topic != NULL) ||
	    (cfg->outbox.dlq_topic != NULL && !topic_ok(cfg->outbox.dlq_topic)))
		abort();

	if (!nonempty(cfg->kafka.brokers) ||
	    !nonempty(cfg->kafka.transactional_id) ||
	    !topic_ok(cfg->kafka.checkpoint_topic))
		abort();
	for (size_t i = 0; i < cfg->kafka.n_topics; i++)
		if (!topic_ok(cfg->kafka.topics[i].name) ||
		    cfg->kafka.topics[i].partitions < 1 ||
		    cfg->kafka.topics[i].replication < 1 ||
		    cfg->kafka.topics[i].replication > INT16_MAX)
			abort();
	for (size_t i = 0; i < cfg->kafka.n_properties; i++)
		if (cfg->kafka.properties[i] == NULL ||
		    strchr(cfg->kafka.properties[i], '=') == NULL)
			abort();
	if (cfg->kafka.properties_file == NULL ||
	    cfg->kafka.n_inline_properties + cfg->kafka.n_file_properties !=
	    cfg->kafka.n_properties ||
	    cfg->n_warnings > TOR_CONFIG_WARNINGS)
		abort();

	if (cfg->redis.host == NULL || cfg->redis.password == NULL ||
	    !nonempty(cfg->redis.prefix) ||
	    strpbrk(cfg->redis.prefix, "{} \t\r\n") != NULL ||
	    cfg->redis.port < 1 || cfg->redis.port > 65535 ||
	    cfg->redis.db < 0 || cfg->redis.timeout_ms < 1 ||
	    cfg->redis.sentinel.master == NULL ||
	    (cfg->redis.host[0] == '\0' && cfg->redis.sentinel.n_nodes == 0) ||
	    (cfg->redis.sentinel.n_nodes > 0) !=
	    (cfg->redis.sentinel.master[0] != '\0'))
		abort();

	if (cfg->ha.lease_ms < 1 || cfg->ha.renew_ms < 1 ||
	    cfg->ha.retry_ms < 1 ||
	    cfg->ha.renew_ms >= cfg->ha.lease_ms -
	    tor_config_drift_ms(cfg->ha.lease_ms) ||
	    cfg->ha.renew_ms + cfg->redis.timeout_ms >= cfg->ha.lease_ms -
	    tor_config_drift_ms(cfg->ha.lease_ms))
		abort();
	/* Every duration within a day, so that no sum of them overflows. */
	if (cfg->mysql.heartbeat_ms > DAY_MS ||
	    cfg->mysql.connect_timeout_ms > DAY_MS ||
	    cfg->kafka.unreachable_ms > DAY_MS ||
	    cfg->redis.timeout_ms > DAY_MS || cfg->ha.lease_ms > DAY_MS ||
	    cfg->ha.renew_ms > DAY_MS || cfg->ha.retry_ms > DAY_MS ||
	    cfg->checkpoint.interval_ms > DAY_MS)
		abort();
	if (cfg->checkpoint.interval_ms < 0 || cfg->checkpoint.key_file == NULL ||
	    cfg->http.listen == NULL)
		abort();
	if (tor_config_not_in_effect(cfg) == NULL)
		abort();
}

/* The printed config, comment lines dropped (the first names the file, one
 * says the server id was derived, one stands for the checkpoint key). */
static char *
print_without_comments(const struct tor_config *cfg, size_t *len)
{
	char *text = NULL, *out, *line, *next;
	size_t n = 0, at = 0;
	FILE *f = open_memstream(&text, &n);

	if (f == NULL)
		abort();
	tor_config_print(cfg, f);
	if (fclose(f) != 0 || (out = malloc(n + 1)) == NULL)
		abort();
	for (line = text; line < text + n; line = next) {
		size_t ll;
		const char *p = line;

		next = memchr(line, '\n', (size_t)(text + n - line));
		next = next != NULL ? next + 1 : text + n;
		ll = (size_t)(next - line);
		while (p < next && *p == ' ')
			p++;
		if (p < next && *p == '#')
			continue;
		memcpy(out + at, line, ll);
		at += ll;
	}
	out[at] = '\0';
	free(text);
	*len = at;
	return out;
}

/* --check-config prints the effective config: it must load again, to the
 * same effective config. */
static void
check_reprint(const struct tor_config *cfg)
{
	struct tor_config again;
	char *first, *second, *raw = NULL;
	size_t first_len, second_len, raw_len = 0;
	tor_err err;
	FILE *f;

	first = print_without_comments(cfg, &first_len);
	if ((f = open_memstream(&raw, &raw_len)) == NULL)
		abort();
	tor_config_print(cfg, f);
	if (fclose(f) != 0)
		abort();
	put_file(reprint_fd, raw, raw_len);
	free(raw);
	err.msg[0] = '\0';
	if (tor_config_load(&again, reprint_path, &err) != 0) {
		fprintf(stderr, "the printed config does not load: %s\n",
		    err.msg);
		abort();
	}
	second = print_without_comments(&again, &second_len);
	if (first_len != second_len || memcmp(first, second, first_len) != 0) {
		fprintf(stderr, "the printed config loads differently:\n"
		    "--- first\n%s--- second\n%s", first, second);
		abort();
	}
	free(first);
	free(second);
	tor_config_free(&again);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct tor_config zero;
	struct tor_config cfg;
	tor_err err;

	put_file(input_fd, data, size);
	memset(&cfg, 0x5a, sizeof(cfg));
	err.msg[0] = '\0';
	if (tor_config_load(&cfg, input_path, &err) != 0) {
		if (err.msg[0] == '\0' || memchr(err.msg, '\0',
		    sizeof(err.msg)) == NULL)
			abort();
		/* Nothing to free: the caller's struct stays zeroed. */
		if (memcmp(&cfg, &zero, sizeof(cfg)) != 0)
			abort();
		return 0;
	}
	check_loaded(&cfg);
	check_reprint(&cfg);
	tor_config_free(&cfg);
	return 0;
}
