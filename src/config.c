/*
 * tor.cfg: parsed once into struct tor_config, validated completely, then
 * read-only (include/tor/config.h, DESIGN.md §6).
 *
 * Every group is checked against its list of known keys before any value is
 * read, so a typo is an error that names the key instead of a silent default.
 * Each value is read through one small typed getter that knows the key's path,
 * so every error reads "file:line: key.path: problem".  The config is built in
 * a private struct and handed to the caller only when all of it is valid, so
 * a failed load leaves nothing allocated.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libconfig.h>
#include <sodium.h>

#include "tor/checkpoint.h"
#include "tor/config.h"
#include "tor/link.h"

#define KEYLEN          256
#define SECRET_MAX      4096    /* longest password file we accept */
#define PROPERTIES_MAX  16384   /* longest kafka.properties_file */
#define MASK            "********"
/* The longest duration of any *_ms key, a day: longer serves nobody, and
 * under it every sum tor makes of them fits an int (the stream's read
 * timeout of three heartbeats and a second, a retry's jitter of 1.2, a
 * follower's wait plus redis.timeout_ms, a timeout rounded up to the
 * seconds a client library multiplies by 1000 again). */
#define MS_MAX          86400000

struct loader {
	struct tor_config *cfg;
	const char *path;
	tor_err *err;
	const char *source;     /* the group of a `sources` entry, or NULL */
};

enum kind {
	K_STR,
	K_INT,
	K_BOOL,
	K_GROUP,
	K_LIST,         /* ( ... ) of groups */
	K_STRINGS,      /* [ ... ] or ( ... ) of strings */
};

static const char *const kind_problem[] = {
	[K_STR] = "expected a string",
	[K_INT] = "expected an integer",
	[K_BOOL] = "expected true or false",
	[K_GROUP] = "expected a group { ... }",
	[K_LIST] = "expected a list ( { ... }, ... )",
	[K_STRINGS] = "expected a list of strings",
};

static const char *const keys_top[] = { "group", "instance", "mysql",
	"outbox", "kafka", "redis", "ha", "checkpoint", "http", "log", "pool",
	NULL };
static const char *const keys_mysql[] = { "host", "port", "user", "password",
	"password_file", "server_id", "start", "heartbeat_ms",
	"connect_timeout_ms", "server_public_key", "tls", "retention_check_ms",
	"retention_warn_bytes", "retention_warn_ms", NULL };
static const char *const keys_tls[] = { "mode", "ca", "cert", "key", NULL };
static const char *const keys_outbox[] = { "tables", "routes", "route",
	"topic_template", "unrouted", NULL };
static const char *const keys_table[] = { "table", "columns", "headers",
	NULL };
static const char *const keys_columns[] = { "id", "key", "type", "payload",
	"timestamp", "partition", NULL };
static const char *const keys_header[] = { "column", "header", NULL };
static const char *const keys_route[] = { "match", "topic", "icase", NULL };
static const char *const keys_kafka[] = { "brokers", "mode", "partitioner",
	"unreachable_ms",
	"transactional_id", "checkpoint_topic", "topics", "properties",
	"properties_file", NULL };
static const char *const keys_topic[] = { "name", "partitions",
	"replication", NULL };
static const char *const keys_redis[] = { "host", "port", "db", "user",
	"password",
	"password_file", "prefix", "timeout_ms", "tls", "sentinel", "cluster",
	NULL };
static const char *const keys_cluster[] = { "nodes", NULL };
static const char *const keys_sentinel[] = { "master", "nodes", "user",
	"password", "password_file", "tls", NULL };
static const char *const keys_redis_tls[] = { "enabled", "ca_file",
	"cert_file", "key_file", "server_name", "verify", NULL };
static const char *const keys_ha[] = { "lease_ms", "renew_ms", "retry_ms",
	"fast_failover", "stall_ms", NULL };
static const char *const keys_checkpoint[] = { "interval_ms", "key_file",
	NULL };
static const char *const keys_http[] = { "listen", NULL };
static const char *const keys_log[] = { "level", "format", NULL };
static const char *const keys_pool[] = { "name", "max_leading", "settle_ms",
	"beat_ms", NULL };

static const char *const tls_modes[] = { "disabled", "preferred", "required",
	"verify", NULL };
static const char *const route_modes[] = { "first", "all", NULL };
static const char *const kafka_modes[] = { "idempotent", "transactional",
	NULL };
static const char *const partitioners[] = { "murmur2", "fnv1a", "crc32",
	NULL };
static const char *const log_formats[] = { "logfmt", "json", NULL };

/*
 * librdkafka properties that tor sets itself because a promise of DESIGN §1
 * or §4 rests on them; an override would break the promise quietly.
 */
static const struct {
	const char *name;
	const char *why;
} fixed_properties[] = {
	{ "enable.idempotence", "tor always runs the idempotent producer "
	    "(no duplicates or reordering on retry)" },
	{ "acks", "the idempotent producer needs acks=all" },
	{ "request.required.acks", "the idempotent producer needs acks=all" },
	{ "partitioner", "set kafka.partitioner instead (tor picks each "
	    "message's partition itself)" },
	{ "transactional.id", "set kafka.transactional_id instead" },
	{ "bootstrap.servers", "set kafka.brokers instead" },
	{ "metadata.broker.list", "set kafka.brokers instead" },
};

static int
fail(struct loader *ld, const config_setting_t *s, const char *key,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Reports "file:line: key: problem"; s gives the line (none when NULL). */
static int
fail(struct loader *ld, const config_setting_t *s, const char *key,
    const char *fmt, ...)
{
	char problem[sizeof(ld->err->msg)], where[KEYLEN] = "";
	const char *file = NULL;
	int line = 0;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(problem, sizeof(problem), fmt, ap);
	va_end(ap);
	if (s != NULL) {
		line = config_setting_source_line(s);
		file = config_setting_source_file(s);
	}
	if (file == NULL)
		file = ld->path;
	/* A source's config is its entry laid over the top level: the line
	 * may be a default's, so the source is named too. */
	if (ld->source != NULL)
		snprintf(where, sizeof(where), " (source \"%s\")", ld->source);
	if (line > 0)
		return tor_err_set(ld->err, "%s:%d: %s: %s%s", file, line, key,
		    problem, where);
	return tor_err_set(ld->err, "%s: %s: %s%s", file, key, problem, where);
}

/* A key path too long for the buffer ends in "..." rather than silently
 * naming another key. */
static const char *
mark_cut(char *buf, int n)
{
	if (n < 0 || n >= KEYLEN)
		memcpy(buf + KEYLEN - 4, "...", 4);
	return buf;
}

static const char *
keypath(char *buf, const char *parent, const char *name)
{
	if (parent[0] == '\0')
		return mark_cut(buf, snprintf(buf, KEYLEN, "%s", name));
	return mark_cut(buf, snprintf(buf, KEYLEN, "%s.%s", parent, name));
}

static const char *
elempath(char *buf, const char *parent, int i)
{
	return mark_cut(buf, snprintf(buf, KEYLEN, "%s[%d]", parent, i));
}

static int
copy_str(struct loader *ld, const char *s, char **out)
{
	if ((*out = strdup(s)) == NULL)
		return tor_err_set(ld->err, "%s: out of memory", ld->path);
	return 0;
}

/* Frees a string that may hold a secret, wiping it first. */
static void
free_secret(char *s)
{
	if (s != NULL) {
		sodium_memzero(s, strlen(s));
		free(s);
	}
}

static bool
in_list(const char *name, const char *const *list)
{
	for (; *list != NULL; list++)
		if (strcmp(name, *list) == 0)
			return true;
	return false;
}

/* Member name of g, or NULL; g may be NULL (a group left out). */
static config_setting_t *
lookup(const config_setting_t *g, const char *name)
{
	return g != NULL ? config_setting_get_member(g, name) : NULL;
}

/* Every member of group g must be one of known. */
static int
check_keys(struct loader *ld, const config_setting_t *g, const char *gpath,
    const char *const *known)
{
	char key[KEYLEN];

	for (int i = 0; i < config_setting_length(g); i++) {
		config_setting_t *s = config_setting_get_elem(g, i);

		if (!in_list(config_setting_name(s), known))
			return fail(ld, s, keypath(key, gpath,
			    config_setting_name(s)), "unknown key");
	}
	return 0;
}

static bool
kind_ok(const config_setting_t *s, enum kind kind)
{
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_STRING:
		return kind == K_STR;
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		return kind == K_INT;
	case CONFIG_TYPE_BOOL:
		return kind == K_BOOL;
	case CONFIG_TYPE_GROUP:
		return kind == K_GROUP;
	case CONFIG_TYPE_LIST:
		return kind == K_LIST || kind == K_STRINGS;
	case CONFIG_TYPE_ARRAY:
		/* An empty [ ] cannot be told from a list of anything. */
		return kind == K_STRINGS ||
		    (kind == K_LIST && config_setting_length(s) == 0);
	default:
		return false;
	}
}

/* Finds member name of g (g may be NULL: an absent group) and checks its
 * type.  *out is NULL when the key is not there. */
static int
member(struct loader *ld, const config_setting_t *g, const char *gpath,
    const char *name, enum kind kind, config_setting_t **out)
{
	config_setting_t *s;
	char key[KEYLEN];

	*out = NULL;
	if ((s = lookup(g, name)) == NULL)
		return 0;
	if (!kind_ok(s, kind))
		return fail(ld, s, keypath(key, gpath, name), "%s",
		    kind_problem[kind]);
	*out = s;
	return 0;
}

/* A sub-group, its keys checked; *out is NULL when it is absent. */
static int
opt_group(struct loader *ld, const config_setting_t *g, const char *gpath,
    const char *name, const char *const *known, config_setting_t **out)
{
	char key[KEYLEN];

	if (member(ld, g, gpath, name, K_GROUP, out) == -1)
		return -1;
	if (*out == NULL)
		return 0;
	return check_keys(ld, *out, keypath(key, gpath, name), known);
}

static int
opt_str(struct loader *ld, const config_setting_t *g, const char *gpath,
    const char *name, const char *def, char **out)
{
	config_setting_t *s;

	if (member(ld, g, gpath, name, K_STR, &s) == -1)
		return -1;
	return copy_str(ld, s != NULL ? config_setting_get_string(s) : def, out);
}

/* A string that must be there and not be empty. */
static int
req_str(struct loader *ld, const config_setting_t *g, const char *gpath,
    const char *name, char **out)
{
	char key[KEYLEN];

	if (opt_str(ld, g, gpath, name, "", out) == -1)
		return -1;
	if ((*out)[0] == '\0') {
		free(*out);
		*out = NULL;
		return fail(ld, g, keypath(key, gpath, name), "required");
	}
	return 0;
}

static int
opt_bool(struct loader *ld, const config_setting_t *g, const char *gpath,
    const char *name, bool def, bool *out)
{
	config_setting_t *s;

	if (member(ld, g, gpath, name, K_BOOL, &s) == -1)
		return -1;
	*out = s != NULL ? config_setting_get_bool(s) != 0 : def;
	return 0;
}

/* How many settings named like s stand on s's line of s's file before it,
 * counted in document order (libconfig keeps members in it) from g down.
 * *seen turns true at s itself. */
static int
rank_on_line(const config_setting_t *g, const config_setting_t *s,
    bool *seen)
{
	const char *file = config_setting_source_file(s);
	const char *name = config_setting_name(s);
	int line = config_setting_source_line(s), n = 0;

	for (int i = 0; !*seen && i < config_setting_length(g); i++) {
		const config_setting_t *e = config_setting_get_elem(g,
		    (unsigned)i);
		const char *ename = config_setting_name(e);
		const char *efile = config_setting_source_file(e);

		if (e == s) {
			*seen = true;
			break;
		}
		if (ename != NULL && strcmp(ename, name) == 0 &&
		    (int)config_setting_source_line(e) == line &&
		    efile != NULL &&
		    strcmp(efile, file) == 0)
			n++;
		if (config_setting_is_aggregate(e))
			n += rank_on_line(e, s, seen);
	}
	return n;
}

/* Where the text of a libconfig file stands at a character: in a string, in
 * a block comment, or in the open.  Both may span lines. */
struct scan {
	bool in_string, in_comment;
};

/*
 * The start of the value of the rank-th "name =" or "name:" on line, read
 * from the scan state the lines before left (and moved past this one), or
 * NULL.  Strings and comments are skipped: their words name no setting.
 */
static const char *
find_assignment(struct scan *sc, const char *line, const char *name,
    int rank)
{
	size_t len = strlen(name);
	const char *found = NULL;

	for (const char *p = line; *p != '\0'; p++) {
		if (sc->in_string) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			else if (*p == '"')
				sc->in_string = false;
			continue;
		}
		if (sc->in_comment) {
			if (p[0] == '*' && p[1] == '/') {
				sc->in_comment = false;
				p++;
			}
			continue;
		}
		if (*p == '"') {
			sc->in_string = true;
			continue;
		}
		if (p[0] == '/' && p[1] == '*') {
			sc->in_comment = true;
			p++;
			continue;
		}
		if (*p == '#' || (p[0] == '/' && p[1] == '/'))
			break;
		/* A name starts where no name character precedes it. */
		if (found != NULL || strncmp(p, name, len) != 0 || (p > line &&
		    (isalnum((unsigned char)p[-1]) || p[-1] == '_' ||
		    p[-1] == '-' || p[-1] == '*')))
			continue;
		const char *q = p + len + strspn(p + len, " \t");

		if ((*q == '=' || *q == ':') && rank-- == 0)
			found = q + 1 + strspn(q + 1, " \t");
	}
	return found;
}

/*
 * libconfig 1.5 reads an integer literal without the L suffix into 32 bits
 * and wraps silently: "server_id = 4294967295" reads as -1 and
 * "port = 4294970592" as a valid 3296.  So the literal is read again from
 * the setting's line, and taken at face value when it is found there.  The
 * file is scanned from its start, so that a string or a comment (which may
 * span lines) never passes for the setting, and the setting is told from
 * others of its name on the same line by its rank among them.
 */
static bool
source_literal(const config_setting_t *s, long long *v)
{
	const char *file = config_setting_source_file(s);
	const char *name = config_setting_name(s), *q;
	const config_setting_t *root = s;
	int want = config_setting_source_line(s), n = 0, rank;
	struct scan sc = { false, false };
	char *line = NULL, *end;
	bool found = false, seen = false;
	size_t cap = 0;
	FILE *f;

	if (file == NULL || name == NULL || want <= 0 ||
	    (f = fopen(file, "r")) == NULL)
		return false;
	while (config_setting_parent(root) != NULL)
		root = config_setting_parent(root);
	rank = rank_on_line(root, s, &seen);
	while (getline(&line, &cap, f) != -1) {
		q = find_assignment(&sc, line, name, rank);
		if (++n < want)
			continue;
		if (q != NULL) {
			errno = 0;
			if ((q[0] == '0' && (q[1] == 'x' || q[1] == 'X')) ||
			    ((q[0] == '-' || q[0] == '+') && q[1] == '0' &&
			    (q[2] == 'x' || q[2] == 'X')))
				*v = strtoll(q, &end, 16);
			else
				*v = strtoll(q, &end, 10);
			found = end != q && (isdigit((unsigned char)end[-1]) ||
			    isxdigit((unsigned char)end[-1]));
		}
		break;
	}
	free(line);
	fclose(f);
	return found;
}

static long long
int_value(const config_setting_t *s)
{
	long long v;

	if (config_setting_type(s) == CONFIG_TYPE_INT64)
		return config_setting_get_int64(s);
	if (source_literal(s, &v))
		return v;
	return config_setting_get_int(s);
}

static int
opt_int(struct loader *ld, const config_setting_t *g, const char *gpath,
    const char *name, long long def, long long min, long long max,
    long long *out)
{
	config_setting_t *s;
	char key[KEYLEN];
	long long v;

	if (member(ld, g, gpath, name, K_INT, &s) == -1)
		return -1;
	if (s == NULL) {
		*out = def;
		return 0;
	}
	v = int_value(s);
	keypath(key, gpath, name);
	if (min == 1 && max == INT_MAX && v < 1)
		return fail(ld, s, key, "must be positive, got %lld", v);
	if (min == 0 && max == INT_MAX && v < 0)
		return fail(ld, s, key, "must not be negative, got %lld", v);
	if (v < min || v > max)
		return fail(ld, s, key, "must be between %lld and %lld, got %lld",
		    min, max, v);
	*out = v;
	return 0;
}

static int
opt_int32(struct loader *ld, const config_setting_t *g, const char *gpath,
    const char *name, int def, int min, int *out)
{
	long long v;

	if (opt_int(ld, g, gpath, name, def, min, INT_MAX, &v) == -1)
		return -1;
	*out = (int)v;
	return 0;
}

/* A duration in ms, at least min (0 or 1), at most MS_MAX. */
static int
opt_ms(struct loader *ld, const config_setting_t *g, const char *gpath,
    const char *name, int def, int min, int *out)
{
	char key[KEYLEN];

	if (opt_int32(ld, g, gpath, name, def, min, out) == -1)
		return -1;
	if (*out > MS_MAX)
		return fail(ld, lookup(g, name), keypath(key, gpath, name),
		    "must be at most %d (a day), got %d", MS_MAX, *out);
	return 0;
}

static int
opt_port(struct loader *ld, const config_setting_t *g, const char *gpath,
    const char *name, int def, int *out)
{
	long long v;

	if (opt_int(ld, g, gpath, name, def, 1, 65535, &v) == -1)
		return -1;
	*out = (int)v;
	return 0;
}

/* One of names (NULL-terminated); *out is its index. */
static int
opt_enum(struct loader *ld, const config_setting_t *g, const char *gpath,
    const char *name, const char *const *names, int def, int *out)
{
	config_setting_t *s;
	char key[KEYLEN], want[128] = "";
	const char *v;
	int i, n;

	if (member(ld, g, gpath, name, K_STR, &s) == -1)
		return -1;
	if (s == NULL) {
		*out = def;
		return 0;
	}
	v = config_setting_get_string(s);
	for (i = 0; names[i] != NULL; i++)
		if (strcmp(v, names[i]) == 0) {
			*out = i;
			return 0;
		}
	for (n = 0; names[n] != NULL; n++)
		;
	for (i = 0; i < n; i++)
		snprintf(want + strlen(want), sizeof(want) - strlen(want),
		    "%s%s", i == 0 ? "" : i == n - 1 ? " or " : ", ", names[i]);
	return fail(ld, s, keypath(key, gpath, name), "expected %s, got \"%s\"",
	    want, v);
}

/* Kafka's rule for topic names: [A-Za-z0-9._-], 1..249, not "." or "..". */
static bool
topic_chars_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '.' &&
		    s[i] != '_' && s[i] != '-')
			return false;
	return true;
}

static bool
topic_ok(const char *s)
{
	size_t n = strlen(s);

	return n >= 1 && n <= 249 && topic_chars_ok(s, n) &&
	    strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static int
check_topic(struct loader *ld, const config_setting_t *s, const char *key,
    const char *topic)
{
	if (!topic_ok(topic))
		return fail(ld, s, key, "\"%s\" is not a valid Kafka topic name "
		    "(1 to 249 letters, digits, '.', '_' or '-')", topic);
	return 0;
}

/* "host:port" (host may be "[v6]"); port 1..65535. */
static bool
hostport_ok(const char *s)
{
	const char *colon = strrchr(s, ':');
	char *end;
	long port;

	if (colon == NULL || colon == s || colon[1] == '\0')
		return false;
	if (s[0] == '[' && colon[-1] != ']')
		return false;
	if (s[0] != '[' && memchr(s, ':', (size_t)(colon - s)) != NULL)
		return false;
	if (!isdigit((unsigned char)colon[1]))
		return false;
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	return *end == '\0' && errno == 0 && port >= 1 && port <= 65535;
}

/* mysql.start: "end", "beginning", or a position tor_position_parse_set
 * takes (the same parser `tor checkpoint set` uses), with a file position
 * that fits the dump protocol's 32 bits. */
static bool
start_ok(const char *s)
{
	static char set[TOR_GTID_SET_TEXT];     /* the loader is one thread */
	struct tor_position pos;

	if (strcmp(s, "end") == 0 || strcmp(s, "beginning") == 0)
		return true;
	if (tor_position_parse_set(s, &pos, set, NULL) < 0)
		return false;
	return pos.file[0] == '\0' || pos.pos <= UINT32_MAX;
}

/*
 * Notes a secret file that users other than tor's may read: open to every
 * user, or to its group while tor's own user owns it (owned by root and
 * open to tor's group is how a secret is usually handed to a service).  A
 * warning, not a refusal: a Kubernetes Secret volume is 0644 unless its
 * defaultMode says otherwise, and a refusal would stop every replica.
 */
static void
warn_loose_mode(struct loader *ld, const char *what, const struct stat *st)
{
	struct tor_config *cfg = ld->cfg;
	unsigned mode = (unsigned)st->st_mode & 07777;
	const char *fix = "make it 0600, or 0640 owned by root with tor's group";

	if (cfg->n_warnings >= TOR_CONFIG_WARNINGS)
		return;
	if ((st->st_mode & S_IRWXO) != 0)
		snprintf(cfg->warnings[cfg->n_warnings++],
		    sizeof(cfg->warnings[0]), "%s is open to every user "
		    "(mode %04o): %s", what, mode, fix);
	else if ((st->st_mode & S_IRWXG) != 0 && st->st_uid == geteuid())
		snprintf(cfg->warnings[cfg->n_warnings++],
		    sizeof(cfg->warnings[0]), "%s is open to its group "
		    "(mode %04o) and owned by tor's own user: %s", what, mode,
		    fix);
}

/*
 * Reads a secret file whole (through a symbolic link too: the mode looked
 * at is the file's).  Returns the byte count, or -1 with err set naming key
 * and file.  The caller wipes buf.
 */
static ssize_t
read_secret(struct loader *ld, const config_setting_t *s, const char *key,
    const char *file, unsigned char *buf, size_t cap)
{
	struct stat st;
	size_t n;
	FILE *f;

	if ((f = fopen(file, "rb")) == NULL)
		return fail(ld, s, key, "cannot read %s: %s", file,
		    strerror(errno));
	/* The stdio buffer would keep a copy of the secret when freed. */
	setvbuf(f, NULL, _IONBF, 0);
	if (fstat(fileno(f), &st) == 0) {
		char what[KEYLEN + PATH_MAX];

		snprintf(what, sizeof(what), "%s %s", key, file);
		warn_loose_mode(ld, what, &st);
	}
	n = fread(buf, 1, cap, f);
	if (ferror(f)) {
		int e = errno;

		fclose(f);
		return fail(ld, s, key, "cannot read %s: %s", file,
		    strerror(e));
	}
	if (n == cap && fgetc(f) != EOF) {
		fclose(f);
		return fail(ld, s, key, "%s: longer than %zu bytes", file,
		    cap);
	}
	fclose(f);
	return (ssize_t)n;
}

/* A password: env (when set and not empty) > password_file > inline. */
static int
resolve_password(struct loader *ld, const config_setting_t *g,
    const char *gpath, const char *env, const char *file, char **password)
{
	unsigned char buf[SECRET_MAX];
	const char *v = getenv(env);
	config_setting_t *s;
	char key[KEYLEN];
	ssize_t n;

	if (v != NULL && v[0] != '\0') {
		free_secret(*password);
		*password = NULL;
		return copy_str(ld, v, password);
	}
	if (file[0] == '\0')
		return 0;
	keypath(key, gpath, "password_file");
	s = lookup(g, "password_file");
	if ((n = read_secret(ld, s, key, file, buf, sizeof(buf))) == -1)
		return -1;
	/* Editors and `echo` end files with a newline; it is never meant. */
	if (n > 0 && buf[n - 1] == '\n')
		n--;
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	if (memchr(buf, '\0', (size_t)n) != NULL) {
		sodium_memzero(buf, sizeof(buf));
		return fail(ld, s, key, "%s: contains a NUL byte", file);
	}
	free_secret(*password);
	if ((*password = malloc((size_t)n + 1)) == NULL) {
		sodium_memzero(buf, sizeof(buf));
		return tor_err_set(ld->err, "%s: out of memory", ld->path);
	}
	memcpy(*password, buf, (size_t)n);
	(*password)[n] = '\0';
	sodium_memzero(buf, sizeof(buf));
	return 0;
}

static bool
hex_key(const char *hex, size_t len, unsigned char key[32])
{
	size_t n;
	const char *end;

	return len == 64 && sodium_hex2bin(key, 32, hex, len, NULL, &n,
	    &end) == 0 && n == 32 && end == hex + len;
}

static bool
base64_key(const char *b64, size_t len, unsigned char key[32])
{
	static const int variants[] = { sodium_base64_VARIANT_ORIGINAL,
		sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
		sodium_base64_VARIANT_URLSAFE,
		sodium_base64_VARIANT_URLSAFE_NO_PADDING };
	const char *end;
	size_t n;

	for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++)
		if (sodium_base642bin(key, 32, b64, len, NULL, &n, &end,
		    variants[i]) == 0 && n == 32 && end == b64 + len)
			return true;
	return false;
}

/* The checkpoint MAC key: TOR_CHECKPOINT_KEY > checkpoint.key_file. */
static int
resolve_checkpoint_key(struct loader *ld, const config_setting_t *g)
{
	struct tor_config *cfg = ld->cfg;
	const char *env = getenv("TOR_CHECKPOINT_KEY");
	unsigned char buf[256];
	config_setting_t *s;
	ssize_t n;

	if (env != NULL && env[0] != '\0') {
		size_t len = strlen(env);

		while (len > 0 && isspace((unsigned char)env[len - 1]))
			len--;
		if (!hex_key(env, len, cfg->checkpoint.key) &&
		    !base64_key(env, len, cfg->checkpoint.key)) {
			sodium_memzero(cfg->checkpoint.key, 32);
			/* Never echo the value: it is a secret. */
			return tor_err_set(ld->err, "%s: TOR_CHECKPOINT_KEY: "
			    "expected 64 hex characters or the base64 of 32 "
			    "bytes", ld->path);
		}
		cfg->checkpoint.has_key = true;
		return 0;
	}
	if (cfg->checkpoint.key_file[0] == '\0')
		return 0;
	s = lookup(g, "key_file");
	if ((n = read_secret(ld, s, "checkpoint.key_file",
	    cfg->checkpoint.key_file, buf, sizeof(buf))) == -1)
		return -1;
	if (n == 32) {
		memcpy(cfg->checkpoint.key, buf, 32);
		cfg->checkpoint.has_key = true;
	} else {
		size_t len = (size_t)n;

		if (len > 0 && buf[len - 1] == '\n')
			len--;
		if (len > 0 && buf[len - 1] == '\r')
			len--;
		cfg->checkpoint.has_key = hex_key((const char *)buf, len,
		    cfg->checkpoint.key);
	}
	sodium_memzero(buf, sizeof(buf));
	if (!cfg->checkpoint.has_key)
		return fail(ld, s, "checkpoint.key_file", "%s holds %zd bytes; "
		    "expected exactly 32 raw bytes or 64 hex characters",
		    cfg->checkpoint.key_file, n);
	return 0;
}

/*
 * Two replicas must never register with the same server_id (the server
 * drops the older connection), and an operator should not have to number
 * them.  The id is a hash of group and instance with the top bit set, which
 * keeps it non-zero and away from the small ids people give real servers.
 */
static uint32_t
derive_server_id(const char *group, const char *instance)
{
	uint32_t h = 2166136261u;
	const char *p;

	for (p = group; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	h = (h ^ 0) * 16777619u;
	for (p = instance; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return h | 0x80000000u;
}

static int
load_identity(struct loader *ld, const config_setting_t *root)
{
	struct tor_config *cfg = ld->cfg;
	config_setting_t *s;
	const char *env;
	char host[256], buf[320];

	if (opt_str(ld, root, "", "group", "default", &cfg->group) == -1 ||
	    opt_str(ld, root, "", "instance", "", &cfg->instance) == -1)
		return -1;
	/* The group goes inside a Redis hash tag {G} and into Kafka ids. */
	if (cfg->group[0] == '\0' || !topic_chars_ok(cfg->group,
	    strlen(cfg->group)))
		return fail(ld, lookup(root, "group"),
		    "group", "expected letters, digits, '.', '_' or '-', got "
		    "\"%s\"", cfg->group);
	if (cfg->instance[0] == '\0') {
		free(cfg->instance);
		cfg->instance = NULL;
		if ((env = getenv("HOSTNAME")) != NULL && env[0] != '\0') {
			snprintf(buf, sizeof(buf), "%s", env);
		} else {
			if (gethostname(host, sizeof(host)) == -1)
				snprintf(host, sizeof(host), "tor");
			host[sizeof(host) - 1] = '\0';
			snprintf(buf, sizeof(buf), "%s-%ld", host,
			    (long)getpid());
		}
		if (copy_str(ld, buf, &cfg->instance) == -1)
			return -1;
	}
	/* The lease value is "<instance> <token>": no blanks in it. */
	for (const char *p = cfg->instance; *p != '\0'; p++)
		if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p)) {
			s = lookup(root, "instance");
			return fail(ld, s, "instance", "must not contain blanks, "
			    "got \"%s\"", cfg->instance);
		}
	return 0;
}

/* A file the TLS library opens at every connect: one it cannot read is a
 * configuration error now, not a connection that fails and is retried for
 * ever.  Not looked at when TLS is off. */
static int
check_tls_file(struct loader *ld, const config_setting_t *tls,
    const char *name, const char *file)
{
	char key[KEYLEN];

	if (ld->cfg->mysql.tls.mode == TOR_TLS_DISABLED || file[0] == '\0' ||
	    access(file, R_OK) == 0)
		return 0;
	return fail(ld, lookup(tls, name), keypath(key, "mysql.tls", name),
	    "cannot read %s: %s", file, strerror(errno));
}

/* The binlog retention check (src/retention.c): how often, and below
 * what it warns.  A check more often than a second would weigh on the
 * server for nothing: the figures move with rotations and purges. */
static int
load_retention(struct loader *ld, const config_setting_t *g)
{
	struct tor_config *cfg = ld->cfg;
	long long bytes;

	if (opt_ms(ld, g, "mysql", "retention_check_ms", 30000, 0,
	    &cfg->mysql.retention_check_ms) == -1 ||
	    opt_int(ld, g, "mysql", "retention_warn_bytes", 0, 0, INT64_MAX,
	    &bytes) == -1 ||
	    opt_ms(ld, g, "mysql", "retention_warn_ms", 3600000, 0,
	    &cfg->mysql.retention_warn_ms) == -1)
		return -1;
	if (cfg->mysql.retention_check_ms > 0 &&
	    cfg->mysql.retention_check_ms < 1000)
		return fail(ld, lookup(g, "retention_check_ms"),
		    "mysql.retention_check_ms", "must be 0 (off) or at least "
		    "1000, got %d", cfg->mysql.retention_check_ms);
	cfg->mysql.retention_warn_bytes = (int64_t)bytes;
	return 0;
}

static int
load_mysql(struct loader *ld, const config_setting_t *root)
{
	struct tor_config *cfg = ld->cfg;
	config_setting_t *g, *tls;
	long long v;
	int mode;

	if (opt_group(ld, root, "", "mysql", keys_mysql, &g) == -1 ||
	    req_str(ld, g, "mysql", "host", &cfg->mysql.host) == -1 ||
	    opt_port(ld, g, "mysql", "port", 3306, &cfg->mysql.port) == -1 ||
	    opt_str(ld, g, "mysql", "user", "tor", &cfg->mysql.user) == -1 ||
	    opt_str(ld, g, "mysql", "password", "",
	    &cfg->mysql.password) == -1 ||
	    opt_str(ld, g, "mysql", "password_file", "",
	    &cfg->mysql.password_file) == -1 ||
	    opt_int(ld, g, "mysql", "server_id", 0, 0, UINT32_MAX, &v) == -1 ||
	    opt_str(ld, g, "mysql", "start", "end", &cfg->mysql.start) == -1 ||
	    opt_ms(ld, g, "mysql", "heartbeat_ms", 1000, 1,
	    &cfg->mysql.heartbeat_ms) == -1 ||
	    opt_ms(ld, g, "mysql", "connect_timeout_ms", 5000, 1,
	    &cfg->mysql.connect_timeout_ms) == -1 ||
	    opt_str(ld, g, "mysql", "server_public_key", "",
	    &cfg->mysql.server_public_key) == -1 ||
	    load_retention(ld, g) == -1)
		return -1;
	if (cfg->mysql.server_public_key[0] != '\0' &&
	    access(cfg->mysql.server_public_key, R_OK) != 0)
		return fail(ld, lookup(g, "server_public_key"),
		    "mysql.server_public_key", "cannot read %s: %s",
		    cfg->mysql.server_public_key, strerror(errno));
	if (cfg->mysql.user[0] == '\0')
		return fail(ld, lookup(g, "user"),
		    "mysql.user", "must not be empty");
	if (v == 0) {
		cfg->mysql.server_id = derive_server_id(cfg->group,
		    cfg->instance);
		cfg->mysql.server_id_derived = true;
	} else
		cfg->mysql.server_id = (uint32_t)v;
	if (!start_ok(cfg->mysql.start))
		return fail(ld, lookup(g, "start"),
		    "mysql.start", "expected \"end\", \"beginning\", "
		    "\"<file>:<pos>\" (pos >= 4) or a MariaDB GTID list "
		    "\"D-S-N[,D-S-N...]\", got \"%s\"", cfg->mysql.start);

	if (opt_group(ld, g, "mysql", "tls", keys_tls, &tls) == -1 ||
	    opt_enum(ld, tls, "mysql.tls", "mode", tls_modes,
	    TOR_TLS_PREFERRED, &mode) == -1 ||
	    opt_str(ld, tls, "mysql.tls", "ca", "", &cfg->mysql.tls.ca) == -1 ||
	    opt_str(ld, tls, "mysql.tls", "cert", "",
	    &cfg->mysql.tls.cert) == -1 ||
	    opt_str(ld, tls, "mysql.tls", "key", "",
	    &cfg->mysql.tls.key) == -1)
		return -1;
	cfg->mysql.tls.mode = (enum tor_tls_mode)mode;
	if (cfg->mysql.tls.cert[0] != '\0' && cfg->mysql.tls.key[0] == '\0')
		return fail(ld, lookup(tls, "cert"), "mysql.tls.cert",
		    "needs mysql.tls.key");
	if (cfg->mysql.tls.key[0] != '\0' && cfg->mysql.tls.cert[0] == '\0')
		return fail(ld, lookup(tls, "key"), "mysql.tls.key",
		    "needs mysql.tls.cert");
	if (check_tls_file(ld, tls, "ca", cfg->mysql.tls.ca) == -1 ||
	    check_tls_file(ld, tls, "cert", cfg->mysql.tls.cert) == -1 ||
	    check_tls_file(ld, tls, "key", cfg->mysql.tls.key) == -1)
		return -1;
	return resolve_password(ld, g, "mysql", "TOR_MYSQL_PASSWORD",
	    cfg->mysql.password_file, &cfg->mysql.password);
}

static int
load_header(struct loader *ld, const config_setting_t *e, const char *epath,
    struct tor_header_map *h)
{
	char key[KEYLEN];

	if (check_keys(ld, e, epath, keys_header) == -1 ||
	    req_str(ld, e, epath, "column", &h->column) == -1 ||
	    req_str(ld, e, epath, "header", &h->header) == -1)
		return -1;
	/* tor.id, tor.type, tor.pos, tor.epoch, tor.ts are tor's own. */
	if (strncasecmp(h->header, "tor.", 4) == 0)
		return fail(ld, lookup(e, "header"),
		    keypath(key, epath, "header"), "\"%s\" is reserved (tor "
		    "sets the tor.* headers itself)", h->header);
	return 0;
}

static int
load_table(struct loader *ld, const config_setting_t *e, const char *epath,
    struct tor_outbox_table *t)
{
	config_setting_t *cols, *hdrs, *s;
	char cpath[KEYLEN], hpath[KEYLEN], key[KEYLEN], *name, *dot;

	t->line = config_setting_source_line(e);
	if (check_keys(ld, e, epath, keys_table) == -1 ||
	    req_str(ld, e, epath, "table", &name) == -1)
		return -1;
	dot = strchr(name, '.');
	if (dot == NULL || dot == name || dot[1] == '\0' ||
	    strchr(dot + 1, '.') != NULL) {
		fail(ld, lookup(e, "table"),
		    keypath(key, epath, "table"), "expected \"schema.table\", "
		    "got \"%s\"", name);
		free(name);
		return -1;
	}
	*dot = '\0';
	t->schema = name;
	if (copy_str(ld, dot + 1, &t->table) == -1)
		return -1;

	keypath(cpath, epath, "columns");
	if (member(ld, e, epath, "columns", K_GROUP, &cols) == -1)
		return -1;
	if (cols == NULL)
		return fail(ld, e, cpath, "required");
	if (check_keys(ld, cols, cpath, keys_columns) == -1 ||
	    opt_str(ld, cols, cpath, "id", "", &t->col_id) == -1 ||
	    req_str(ld, cols, cpath, "key", &t->col_key) == -1 ||
	    req_str(ld, cols, cpath, "type", &t->col_type) == -1 ||
	    req_str(ld, cols, cpath, "payload", &t->col_payload) == -1 ||
	    opt_str(ld, cols, cpath, "timestamp", "", &t->col_timestamp) == -1 ||
	    opt_str(ld, cols, cpath, "partition", "", &t->col_partition) == -1)
		return -1;
	if (t->col_id[0] == '\0') {
		free(t->col_id);
		t->col_id = NULL;
	}
	if (t->col_timestamp[0] == '\0') {
		free(t->col_timestamp);
		t->col_timestamp = NULL;
	}
	if (t->col_partition[0] == '\0') {
		free(t->col_partition);
		t->col_partition = NULL;
	}

	keypath(hpath, epath, "headers");
	if (member(ld, e, epath, "headers", K_LIST, &hdrs) == -1)
		return -1;
	if (hdrs == NULL || config_setting_length(hdrs) == 0)
		return 0;
	t->n_headers = (size_t)config_setting_length(hdrs);
	if ((t->headers = calloc(t->n_headers, sizeof(*t->headers))) == NULL) {
		t->n_headers = 0;
		return tor_err_set(ld->err, "%s: out of memory", ld->path);
	}
	for (size_t i = 0; i < t->n_headers; i++) {
		s = config_setting_get_elem(hdrs, (unsigned)i);
		elempath(key, hpath, (int)i);
		if (config_setting_type(s) != CONFIG_TYPE_GROUP)
			return fail(ld, s, key, "expected a group { column = "
			    "...; header = ...; }");
		if (load_header(ld, s, key, &t->headers[i]) == -1)
			return -1;
		for (size_t j = 0; j < i; j++)
			if (strcasecmp(t->headers[j].header,
			    t->headers[i].header) == 0)
				return fail(ld, s, key, "header \"%s\" is "
				    "mapped twice", t->headers[i].header);
	}
	return 0;
}

/* On failure, frees what it took, so that n_routes counts only routes whose
 * regex is compiled (and must be regfree'd). */
static int
load_route(struct loader *ld, const config_setting_t *e, const char *epath,
    struct tor_route *r)
{
	config_setting_t *m;
	char key[KEYLEN], why[256];
	int rc;

	r->line = config_setting_source_line(e);
	if (check_keys(ld, e, epath, keys_route) == -1 ||
	    req_str(ld, e, epath, "match", &r->match) == -1 ||
	    req_str(ld, e, epath, "topic", &r->topic) == -1 ||
	    opt_bool(ld, e, epath, "icase", false, &r->icase) == -1 ||
	    check_topic(ld, lookup(e, "topic"),
	    keypath(key, epath, "topic"), r->topic) == -1)
		goto fail;
	rc = regcomp(&r->re, r->match, REG_EXTENDED | REG_NOSUB |
	    (r->icase ? REG_ICASE : 0));
	if (rc != 0) {
		regerror(rc, &r->re, why, sizeof(why));
		m = lookup(e, "match");
		fail(ld, m, keypath(key, epath, "match"), "\"%s\" does not "
		    "compile: %s", r->match, why);
		goto fail;
	}
	return 0;
fail:
	free(r->match);
	free(r->topic);
	r->match = r->topic = NULL;
	return -1;
}

/* outbox.unrouted: fail | skip | "dlq:<topic>". */
static int
load_unrouted(struct loader *ld, const config_setting_t *g)
{
	struct tor_config *cfg = ld->cfg;
	config_setting_t *s;
	char *v;
	int rc = 0;

	if (opt_str(ld, g, "outbox", "unrouted", "fail", &v) == -1)
		return -1;
	s = lookup(g, "unrouted");
	if (strcmp(v, "fail") == 0)
		cfg->outbox.unrouted = TOR_UNROUTED_FAIL;
	else if (strcmp(v, "skip") == 0)
		cfg->outbox.unrouted = TOR_UNROUTED_SKIP;
	else if (strncmp(v, "dlq:", 4) == 0 && topic_ok(v + 4)) {
		cfg->outbox.unrouted = TOR_UNROUTED_DLQ;
		rc = copy_str(ld, v + 4, &cfg->outbox.dlq_topic);
	} else
		rc = fail(ld, s, "outbox.unrouted", "expected fail, skip or "
		    "\"dlq:<topic>\", got \"%s\"", v);
	free(v);
	return rc;
}

static int
load_outbox(struct loader *ld, const config_setting_t *root)
{
	struct tor_config *cfg = ld->cfg;
	config_setting_t *g, *tables, *routes, *s;
	char key[KEYLEN];
	const char *tmpl, *at;
	size_t n;
	int route;

	if (opt_group(ld, root, "", "outbox", keys_outbox, &g) == -1 ||
	    member(ld, g, "outbox", "tables", K_LIST, &tables) == -1)
		return -1;
	if (tables == NULL)
		return fail(ld, g, "outbox.tables", "required (at least one "
		    "table)");
	if (config_setting_length(tables) == 0)
		return fail(ld, tables, "outbox.tables", "at least one table "
		    "is required");
	n = (size_t)config_setting_length(tables);
	if ((cfg->outbox.tables = calloc(n, sizeof(*cfg->outbox.tables))) ==
	    NULL)
		return tor_err_set(ld->err, "%s: out of memory", ld->path);
	cfg->outbox.n_tables = n;
	for (size_t i = 0; i < n; i++) {
		struct tor_outbox_table *t = &cfg->outbox.tables[i];

		s = config_setting_get_elem(tables, (unsigned)i);
		elempath(key, "outbox.tables", (int)i);
		if (config_setting_type(s) != CONFIG_TYPE_GROUP)
			return fail(ld, s, key, "expected a group { table = "
			    "...; columns = { ... }; }");
		if (load_table(ld, s, key, t) == -1)
			return -1;
		for (size_t j = 0; j < i; j++)
			if (strcmp(cfg->outbox.tables[j].schema, t->schema) ==
			    0 && strcmp(cfg->outbox.tables[j].table,
			    t->table) == 0)
				return fail(ld, s, key, "%s.%s is listed twice",
				    t->schema, t->table);
	}

	if (member(ld, g, "outbox", "routes", K_LIST, &routes) == -1)
		return -1;
	n = routes != NULL ? (size_t)config_setting_length(routes) : 0;
	if (n > 0 && (cfg->outbox.routes = calloc(n,
	    sizeof(*cfg->outbox.routes))) == NULL)
		return tor_err_set(ld->err, "%s: out of memory", ld->path);
	for (size_t i = 0; i < n; i++) {
		s = config_setting_get_elem(routes, (unsigned)i);
		elempath(key, "outbox.routes", (int)i);
		if (config_setting_type(s) != CONFIG_TYPE_GROUP)
			return fail(ld, s, key, "expected a group { match = "
			    "...; topic = ...; }");
		if (load_route(ld, s, key, &cfg->outbox.routes[i]) == -1)
			return -1;
		cfg->outbox.n_routes++;
	}

	if (opt_str(ld, g, "outbox", "topic_template", "",
	    &cfg->outbox.topic_template) == -1)
		return -1;
	tmpl = cfg->outbox.topic_template;
	s = lookup(g, "topic_template");
	if (tmpl[0] != '\0') {
		if ((at = strstr(tmpl, "${aggregate_type}")) == NULL)
			return fail(ld, s, "outbox.topic_template", "must "
			    "contain ${aggregate_type}, got \"%s\"", tmpl);
		if (!topic_chars_ok(tmpl, (size_t)(at - tmpl)) ||
		    !topic_chars_ok(at + 17, strlen(at + 17)))
			return fail(ld, s, "outbox.topic_template", "\"%s\": "
			    "besides ${aggregate_type}, a topic name has only "
			    "letters, digits, '.', '_' or '-'", tmpl);
	}
	if (cfg->outbox.n_routes == 0 && tmpl[0] == '\0')
		return fail(ld, g, "outbox.routes", "no routes and no "
		    "outbox.topic_template: give at least one");
	if (opt_enum(ld, g, "outbox", "route", route_modes, TOR_ROUTE_FIRST,
	    &route) == -1)
		return -1;
	cfg->outbox.route = (enum tor_route_mode)route;
	return load_unrouted(ld, g);
}

static int
load_topic(struct loader *ld, const config_setting_t *e, const char *epath,
    struct tor_topic_spec *t)
{
	char key[KEYLEN];

	if (check_keys(ld, e, epath, keys_topic) == -1 ||
	    req_str(ld, e, epath, "name", &t->name) == -1 ||
	    check_topic(ld, lookup(e, "name"),
	    keypath(key, epath, "name"), t->name) == -1 ||
	    opt_int32(ld, e, epath, "partitions", 1, 1, &t->partitions) == -1 ||
	    opt_port(ld, e, epath, "replication", 1, &t->replication) == -1)
		return -1;
	/* Kafka carries the replication factor in 16 bits. */
	if (t->replication > INT16_MAX)
		return fail(ld, lookup(e, "replication"),
		    keypath(key, epath, "replication"), "must be between 1 and "
		    "%d, got %d", INT16_MAX, t->replication);
	return 0;
}

/* Where the first word that marks a secret ends in s[0, n), or 0.  Besides
 * the passwords: a private key given inline (ssl.key.pem) and its
 * passphrase. */
static size_t
secret_word_end(const char *s, size_t n)
{
	static const char *const words[] = { "password", "secret", "jaas",
	    "key.pem", "passphrase" };

	for (size_t i = 0; i < n; i++)
		for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++) {
			size_t len = strlen(words[w]);

			if (n - i >= len && strncasecmp(s + i, words[w],
			    len) == 0)
				return i + len;
		}
	return 0;
}

/* The length of a property's name when it is "name=value" with a name
 * free of blanks, else 0. */
static size_t
property_name_len(const char *prop)
{
	const char *eq = strchr(prop, '=');
	size_t n;

	if (eq == NULL || eq == prop)
		return 0;
	n = (size_t)(eq - prop);
	for (size_t i = 0; i < n; i++)
		if (isspace((unsigned char)prop[i]))
			return 0;
	return n;
}

const char *
tor_config_property_shown(const char *prop, char *buf, size_t cap)
{
	size_t n = property_name_len(prop), end;

	if (n > 0) {
		if (secret_word_end(prop, n) == 0)
			return prop;
		/* A name too long for buf is cut, never the "=" and mask. */
		if (n + sizeof("=" MASK) > cap && cap > sizeof("...=" MASK))
			snprintf(buf, cap, "%.*s...=" MASK,
			    (int)(cap - sizeof("...=" MASK)), prop);
		else
			snprintf(buf, cap, "%.*s=" MASK, (int)n, prop);
		return buf;
	}
	if ((end = secret_word_end(prop, strlen(prop))) == 0)
		return prop;
	snprintf(buf, cap, "%.*s" MASK, (int)end, prop);
	return buf;
}

/* A "name=value" librdkafka property that does not touch what tor fixes. */
static int
check_property(struct loader *ld, const config_setting_t *s, const char *key,
    const char *prop)
{
	const char *eq = strchr(prop, '=');
	char shown[KEYLEN];
	size_t n = property_name_len(prop);

	if (eq == NULL || eq == prop)
		return fail(ld, s, key, "expected \"name=value\", got \"%s\"",
		    tor_config_property_shown(prop, shown, sizeof(shown)));
	if (n == 0)
		return fail(ld, s, key, "expected \"name=value\" without "
		    "blanks in the name, got \"%s\"",
		    tor_config_property_shown(prop, shown, sizeof(shown)));
	for (size_t i = 0; i < sizeof(fixed_properties) /
	    sizeof(fixed_properties[0]); i++)
		if (strlen(fixed_properties[i].name) == n &&
		    strncmp(prop, fixed_properties[i].name, n) == 0)
			return fail(ld, s, key, "%s cannot be overridden: %s",
			    fixed_properties[i].name, fixed_properties[i].why);
	return 0;
}

/* A list of strings into a NULL-free array; check (may be NULL) vets each. */
static int
load_strings(struct loader *ld, const config_setting_t *g, const char *gpath,
    const char *name, char ***out, size_t *n_out,
    int (*check)(struct loader *, const config_setting_t *, const char *,
    const char *))
{
	config_setting_t *list, *s;
	char lpath[KEYLEN], key[KEYLEN];
	size_t n;

	keypath(lpath, gpath, name);
	if (member(ld, g, gpath, name, K_STRINGS, &list) == -1)
		return -1;
	if (list == NULL || (n = (size_t)config_setting_length(list)) == 0)
		return 0;
	if ((*out = calloc(n, sizeof(**out))) == NULL)
		return tor_err_set(ld->err, "%s: out of memory", ld->path);
	*n_out = n;
	for (size_t i = 0; i < n; i++) {
		s = config_setting_get_elem(list, (unsigned)i);
		elempath(key, lpath, (int)i);
		if (config_setting_type(s) != CONFIG_TYPE_STRING)
			return fail(ld, s, key, "expected a string");
		if ((check != NULL && check(ld, s, key,
		    config_setting_get_string(s)) == -1) ||
		    copy_str(ld, config_setting_get_string(s), &(*out)[i]) == -1)
			return -1;
	}
	return 0;
}

/* Takes prop (malloc'd) as the last kafka.properties entry; frees it on
 * failure. */
static int
append_property(struct loader *ld, char *prop)
{
	struct tor_config *cfg = ld->cfg;
	char **v = realloc(cfg->kafka.properties,
	    (cfg->kafka.n_properties + 1) * sizeof(*v));

	if (prop == NULL || v == NULL) {
		free_secret(prop);
		if (v != NULL)
			cfg->kafka.properties = v;
		return tor_err_set(ld->err, "%s: out of memory", ld->path);
	}
	v[cfg->kafka.n_properties++] = prop;
	cfg->kafka.properties = v;
	return 0;
}

/* The "name=value" lines of kafka.properties_file, text[0, n), after
 * kafka.properties; blank lines and # comments skipped. */
static int
load_properties_lines(struct loader *ld, const config_setting_t *s,
    const char *file, char *text, size_t n)
{
	char key[KEYLEN];
	size_t at = 0;

	for (int line = 1; at < n; line++) {
		char *p = text + at, *end = memchr(p, '\n', n - at);
		size_t len = end != NULL ? (size_t)(end - p) : n - at;

		at += len + 1;
		if (len > 0 && p[len - 1] == '\r')
			len--;
		p[len] = '\0';
		p += strspn(p, " \t");
		if (*p == '\0' || *p == '#')
			continue;
		mark_cut(key, snprintf(key, KEYLEN, "kafka.properties_file: "
		    "%s:%d", file, line));
		if (check_property(ld, s, key, p) == -1 ||
		    append_property(ld, strdup(p)) == -1)
			return -1;
		ld->cfg->kafka.n_file_properties++;
	}
	return 0;
}

/*
 * The entries that may carry the cluster's credentials outside tor.cfg:
 * kafka.properties_file's lines, then TOR_KAFKA_SASL_PASSWORD as
 * sasl.password (librdkafka takes the last of a name, so the environment
 * wins over the file, which wins over tor.cfg, as for the other secrets).
 */
static int
load_kafka_secrets(struct loader *ld, const config_setting_t *g)
{
	struct tor_config *cfg = ld->cfg;
	const char *env = getenv("TOR_KAFKA_SASL_PASSWORD"), *file;
	char buf[PROPERTIES_MAX], *prop;
	config_setting_t *s;
	ssize_t n;
	int rc;

	if (opt_str(ld, g, "kafka", "properties_file", "",
	    &cfg->kafka.properties_file) == -1)
		return -1;
	file = cfg->kafka.properties_file;
	if (file[0] != '\0') {
		s = lookup(g, "properties_file");
		if ((n = read_secret(ld, s, "kafka.properties_file", file,
		    (unsigned char *)buf, sizeof(buf) - 1)) == -1)
			return -1;
		if (memchr(buf, '\0', (size_t)n) != NULL)
			rc = fail(ld, s, "kafka.properties_file", "%s: contains "
			    "a NUL byte", file);
		else
			rc = load_properties_lines(ld, s, file, buf, (size_t)n);
		sodium_memzero(buf, sizeof(buf));
		if (rc == -1)
			return -1;
	}
	if (env == NULL || env[0] == '\0')
		return 0;
	if ((prop = malloc(strlen(env) + sizeof("sasl.password="))) != NULL)
		sprintf(prop, "sasl.password=%s", env);
	return append_property(ld, prop);
}

static int
load_kafka(struct loader *ld, const config_setting_t *root)
{
	struct tor_config *cfg = ld->cfg;
	config_setting_t *g, *topics, *s;
	char key[KEYLEN], buf[KEYLEN];
	int mode, partitioner;
	size_t n;

	if (opt_group(ld, root, "", "kafka", keys_kafka, &g) == -1 ||
	    req_str(ld, g, "kafka", "brokers", &cfg->kafka.brokers) == -1 ||
	    opt_enum(ld, g, "kafka", "mode", kafka_modes, TOR_KAFKA_IDEMPOTENT,
	    &mode) == -1 ||
	    opt_enum(ld, g, "kafka", "partitioner", partitioners,
	    TOR_PARTITIONER_MURMUR2, &partitioner) == -1 ||
	    opt_ms(ld, g, "kafka", "unreachable_ms", 10000, 1,
	    &cfg->kafka.unreachable_ms) == -1 ||
	    opt_str(ld, g, "kafka", "transactional_id", "",
	    &cfg->kafka.transactional_id) == -1 ||
	    opt_str(ld, g, "kafka", "checkpoint_topic", "__tor_checkpoints",
	    &cfg->kafka.checkpoint_topic) == -1 ||
	    check_topic(ld, lookup(g, "checkpoint_topic"),
	    "kafka.checkpoint_topic", cfg->kafka.checkpoint_topic) == -1)
		return -1;
	cfg->kafka.mode = (enum tor_kafka_mode)mode;
	cfg->kafka.partitioner = (enum tor_partitioner)partitioner;
	/* Every replica of a group shares it, so that Kafka fences zombies. */
	if (cfg->kafka.transactional_id[0] == '\0') {
		free(cfg->kafka.transactional_id);
		cfg->kafka.transactional_id = NULL;
		snprintf(buf, sizeof(buf), "tor-%s", cfg->group);
		if (copy_str(ld, buf, &cfg->kafka.transactional_id) == -1)
			return -1;
	}

	if (member(ld, g, "kafka", "topics", K_LIST, &topics) == -1)
		return -1;
	n = topics != NULL ? (size_t)config_setting_length(topics) : 0;
	if (n > 0) {
		if ((cfg->kafka.topics = calloc(n, sizeof(*cfg->kafka.topics)))
		    == NULL)
			return tor_err_set(ld->err, "%s: out of memory",
			    ld->path);
		cfg->kafka.n_topics = n;
	}
	for (size_t i = 0; i < n; i++) {
		s = config_setting_get_elem(topics, (unsigned)i);
		elempath(key, "kafka.topics", (int)i);
		if (config_setting_type(s) != CONFIG_TYPE_GROUP)
			return fail(ld, s, key, "expected a group { name = "
			    "...; partitions = ...; }");
		if (load_topic(ld, s, key, &cfg->kafka.topics[i]) == -1)
			return -1;
		for (size_t j = 0; j < i; j++)
			if (strcmp(cfg->kafka.topics[j].name,
			    cfg->kafka.topics[i].name) == 0)
				return fail(ld, s, key, "topic \"%s\" is listed "
				    "twice", cfg->kafka.topics[i].name);
	}
	if (load_strings(ld, g, "kafka", "properties", &cfg->kafka.properties,
	    &cfg->kafka.n_properties, check_property) == -1)
		return -1;
	cfg->kafka.n_inline_properties = cfg->kafka.n_properties;
	return load_kafka_secrets(ld, g);
}

static int
check_node(struct loader *ld, const config_setting_t *s, const char *key,
    const char *node)
{
	if (!hostport_ok(node))
		return fail(ld, s, key, "expected \"host:port\", got \"%s\"",
		    node);
	return 0;
}

/* One file of a redis tls group, when set: readable now. */
static int
check_redis_tls_file(struct loader *ld, const config_setting_t *g,
    const char *gpath, const char *name, const char *file)
{
	char key[KEYLEN];

	if (file[0] == '\0' || access(file, R_OK) == 0)
		return 0;
	return fail(ld, lookup(g, name), keypath(key, gpath, name),
	    "cannot read %s: %s", file, strerror(errno));
}

/*
 * redis.tls or redis.sentinel.tls (parent is "redis" or "redis.sentinel").
 * When enabled, the files are loaded now by the code that sets up each
 * connection, so that a file it would refuse (not PEM, a key that does not
 * match its certificate) stops the load at its line, not every connect.
 */
static int
load_redis_tls(struct loader *ld, const config_setting_t *parent,
    const char *ppath, struct tor_redis_tls *t)
{
	config_setting_t *g;
	struct tor_link_tls *built;
	char path[KEYLEN], key[KEYLEN];
	const char *bad;
	tor_err e;

	keypath(path, ppath, "tls");
	if (opt_group(ld, parent, ppath, "tls", keys_redis_tls, &g) == -1 ||
	    opt_bool(ld, g, path, "enabled", false, &t->enabled) == -1 ||
	    opt_str(ld, g, path, "ca_file", "", &t->ca_file) == -1 ||
	    opt_str(ld, g, path, "cert_file", "", &t->cert_file) == -1 ||
	    opt_str(ld, g, path, "key_file", "", &t->key_file) == -1 ||
	    opt_str(ld, g, path, "server_name", "", &t->server_name) == -1 ||
	    opt_bool(ld, g, path, "verify", true, &t->verify) == -1)
		return -1;
	if (!t->enabled)
		return 0;
	if (t->cert_file[0] != '\0' && t->key_file[0] == '\0')
		return fail(ld, lookup(g, "cert_file"), keypath(key, path,
		    "cert_file"), "needs %s.key_file", path);
	if (t->key_file[0] != '\0' && t->cert_file[0] == '\0')
		return fail(ld, lookup(g, "key_file"), keypath(key, path,
		    "key_file"), "needs %s.cert_file", path);
	if (check_redis_tls_file(ld, g, path, "ca_file", t->ca_file) == -1 ||
	    check_redis_tls_file(ld, g, path, "cert_file", t->cert_file) == -1 ||
	    check_redis_tls_file(ld, g, path, "key_file", t->key_file) == -1)
		return -1;
	if (tor_link_tls_new(t, &built, &bad, &e) == -1)
		return fail(ld, lookup(g, bad) != NULL ? lookup(g, bad) : g,
		    keypath(key, path, bad), "%s", e.msg);
	tor_link_tls_free(built);
	return 0;
}

static int
load_redis(struct loader *ld, const config_setting_t *root)
{
	struct tor_config *cfg = ld->cfg;
	config_setting_t *g, *sen, *clu;
	long long db;

	if (opt_group(ld, root, "", "redis", keys_redis, &g) == -1 ||
	    opt_str(ld, g, "redis", "host", "", &cfg->redis.host) == -1 ||
	    opt_port(ld, g, "redis", "port", 6379, &cfg->redis.port) == -1 ||
	    opt_int(ld, g, "redis", "db", 0, 0, INT_MAX, &db) == -1 ||
	    opt_str(ld, g, "redis", "user", "", &cfg->redis.user) == -1 ||
	    opt_str(ld, g, "redis", "password", "",
	    &cfg->redis.password) == -1 ||
	    opt_str(ld, g, "redis", "password_file", "",
	    &cfg->redis.password_file) == -1 ||
	    opt_str(ld, g, "redis", "prefix", "tor", &cfg->redis.prefix) == -1 ||
	    opt_ms(ld, g, "redis", "timeout_ms", 500, 1,
	    &cfg->redis.timeout_ms) == -1 ||
	    load_redis_tls(ld, g, "redis", &cfg->redis.tls) == -1)
		return -1;
	cfg->redis.db = (int)db;
	/* Braces in the prefix would move the {G} hash tag of every key. */
	if (cfg->redis.prefix[0] == '\0' || strpbrk(cfg->redis.prefix,
	    "{} \t\r\n") != NULL)
		return fail(ld, lookup(g, "prefix"),
		    "redis.prefix", "must not be empty nor hold braces or "
		    "blanks, got \"%s\"", cfg->redis.prefix);

	if (opt_group(ld, g, "redis", "sentinel", keys_sentinel, &sen) == -1 ||
	    opt_str(ld, sen, "redis.sentinel", "master", "",
	    &cfg->redis.sentinel.master) == -1 ||
	    load_strings(ld, sen, "redis.sentinel", "nodes",
	    &cfg->redis.sentinel.nodes, &cfg->redis.sentinel.n_nodes,
	    check_node) == -1 ||
	    opt_str(ld, sen, "redis.sentinel", "user", "",
	    &cfg->redis.sentinel.user) == -1 ||
	    opt_str(ld, sen, "redis.sentinel", "password", "",
	    &cfg->redis.sentinel.password) == -1 ||
	    opt_str(ld, sen, "redis.sentinel", "password_file", "",
	    &cfg->redis.sentinel.password_file) == -1 ||
	    resolve_password(ld, sen, "redis.sentinel",
	    "TOR_SENTINEL_PASSWORD", cfg->redis.sentinel.password_file,
	    &cfg->redis.sentinel.password) == -1 ||
	    load_redis_tls(ld, sen, "redis.sentinel",
	    &cfg->redis.sentinel.tls) == -1)
		return -1;
	if (cfg->redis.sentinel.user[0] != '\0' &&
	    cfg->redis.sentinel.password[0] == '\0')
		return fail(ld, lookup(sen, "user"), "redis.sentinel.user",
		    "needs a password (redis.sentinel.password, "
		    "redis.sentinel.password_file or TOR_SENTINEL_PASSWORD)");
	if (cfg->redis.sentinel.n_nodes > 0 &&
	    cfg->redis.sentinel.master[0] == '\0')
		return fail(ld, sen, "redis.sentinel.master", "required when "
		    "redis.sentinel.nodes are given");
	if (cfg->redis.sentinel.n_nodes == 0 &&
	    cfg->redis.sentinel.master[0] != '\0')
		return fail(ld, sen, "redis.sentinel.nodes", "required when "
		    "redis.sentinel.master is given");
	if (opt_group(ld, g, "redis", "cluster", keys_cluster, &clu) == -1 ||
	    load_strings(ld, clu, "redis.cluster", "nodes",
	    &cfg->redis.cluster.nodes, &cfg->redis.cluster.n_nodes,
	    check_node) == -1)
		return -1;
	if (cfg->redis.cluster.n_nodes > 0 &&
	    (cfg->redis.sentinel.n_nodes > 0 ||
	    cfg->redis.sentinel.master[0] != '\0'))
		return fail(ld, clu, "redis.cluster", "not with redis.sentinel: "
		    "a cluster fails its masters over by itself (give one or "
		    "the other)");
	if (cfg->redis.cluster.n_nodes > 0 && cfg->redis.host[0] != '\0')
		return fail(ld, lookup(g, "host"), "redis.host", "not with "
		    "redis.cluster.nodes (tor finds the node that serves the "
		    "group's slot from those nodes)");
	if (cfg->redis.cluster.n_nodes > 0 && cfg->redis.db != 0)
		return fail(ld, lookup(g, "db"), "redis.db", "must be 0 with "
		    "redis.cluster (a cluster has database 0 only), got %d",
		    cfg->redis.db);
	if (cfg->redis.host[0] == '\0' && cfg->redis.sentinel.n_nodes == 0 &&
	    cfg->redis.cluster.n_nodes == 0)
		return fail(ld, g, "redis.host", "required (unless "
		    "redis.sentinel.nodes or redis.cluster.nodes are given)");
	if (resolve_password(ld, g, "redis", "TOR_REDIS_PASSWORD",
	    cfg->redis.password_file, &cfg->redis.password) == -1)
		return -1;
	if (cfg->redis.user[0] != '\0' && cfg->redis.password[0] == '\0')
		return fail(ld, lookup(g, "user"), "redis.user", "needs a "
		    "password (redis.password, redis.password_file or "
		    "TOR_REDIS_PASSWORD)");
	return 0;
}

/*
 * A renew goes out renew_ms after the last one and may take redis.timeout_ms
 * to be answered; its answer must come before the leader's own deadline
 * (lease_ms less the drift margin), or a slow but answered renew ends a
 * healthy leadership.
 */
static int
check_renew_room(struct loader *ld, const config_setting_t *root)
{
	const struct tor_config *cfg = ld->cfg;
	const config_setting_t *ha = lookup(root, "ha");
	int drift = tor_config_drift_ms(cfg->ha.lease_ms);
	config_setting_t *s;

	if (cfg->ha.renew_ms + cfg->redis.timeout_ms <
	    cfg->ha.lease_ms - drift)
		return 0;
	/* The line of whichever of the three the file sets. */
	if ((s = lookup(ha, "renew_ms")) == NULL &&
	    (s = lookup(ha, "lease_ms")) == NULL)
		s = lookup(lookup(root, "redis"), "timeout_ms");
	return fail(ld, s, "ha.renew_ms", "%d + redis.timeout_ms %d must stay "
	    "below ha.lease_ms less its drift margin (%d - %d = %d ms): a "
	    "renew answered as late as redis.timeout_ms allows would come "
	    "after the leader's own deadline", cfg->ha.renew_ms,
	    cfg->redis.timeout_ms, cfg->ha.lease_ms, drift,
	    cfg->ha.lease_ms - drift);
}

/*
 * ha.stall_ms, 0 or the time a leader with work makes no progress before it
 * yields to a healthy standby.  Shorter than a lease, a hiccup that the
 * lease itself rides out would hand the group over; within three MySQL
 * heartbeats a quiet stream cannot be told from a cut one.
 */
static int
check_stall(struct loader *ld, const config_setting_t *g)
{
	const struct tor_config *cfg = ld->cfg;
	int beats = 3 * cfg->mysql.heartbeat_ms;

	if (cfg->ha.stall_ms == 0)
		return 0;
	if (cfg->ha.stall_ms < cfg->ha.lease_ms)
		return fail(ld, lookup(g, "stall_ms"), "ha.stall_ms", "must be "
		    "0 (never yield) or at least ha.lease_ms (%d), got %d: a "
		    "shorter stall is a hiccup the lease rides out",
		    cfg->ha.lease_ms, cfg->ha.stall_ms);
	if (cfg->ha.stall_ms <= beats)
		return fail(ld, lookup(g, "stall_ms"), "ha.stall_ms", "must be "
		    "0 (never yield) or above 3 mysql.heartbeat_ms (%d ms), got "
		    "%d: a quiet binlog stream is told from a cut one only "
		    "after three missed heartbeats", beats, cfg->ha.stall_ms);
	return 0;
}

static int
load_ha(struct loader *ld, const config_setting_t *root)
{
	struct tor_config *cfg = ld->cfg;
	config_setting_t *g, *s;

	if (opt_group(ld, root, "", "ha", keys_ha, &g) == -1 ||
	    opt_ms(ld, g, "ha", "lease_ms", 3000, 1,
	    &cfg->ha.lease_ms) == -1 ||
	    opt_ms(ld, g, "ha", "renew_ms", 1000, 1,
	    &cfg->ha.renew_ms) == -1 ||
	    opt_ms(ld, g, "ha", "retry_ms", 200, 1,
	    &cfg->ha.retry_ms) == -1 ||
	    opt_bool(ld, g, "ha", "fast_failover", true,
	    &cfg->ha.fast_failover) == -1 ||
	    opt_ms(ld, g, "ha", "stall_ms", 10000, 0,
	    &cfg->ha.stall_ms) == -1)
		return -1;
	if (check_stall(ld, g) == -1)
		return -1;
	/* A lease renewed no faster than it expires lapses between renews. */
	if (cfg->ha.renew_ms >= cfg->ha.lease_ms) {
		if ((s = lookup(g, "renew_ms")) == NULL)
			s = lookup(g, "lease_ms");
		return fail(ld, s, "ha.renew_ms", "must be less than "
		    "ha.lease_ms (%d >= %d)", cfg->ha.renew_ms,
		    cfg->ha.lease_ms);
	}
	/* Past lease_ms less the drift margin the leader's own deadline has
	 * gone by before the next renew is sent: it would step down at every
	 * renew. */
	if (cfg->ha.renew_ms >= cfg->ha.lease_ms -
	    tor_config_drift_ms(cfg->ha.lease_ms)) {
		if ((s = lookup(g, "renew_ms")) == NULL)
			s = lookup(g, "lease_ms");
		return fail(ld, s, "ha.renew_ms", "must be below ha.lease_ms "
		    "less its drift margin (%d - %d = %d ms), got %d: the lease "
		    "would lapse between renews", cfg->ha.lease_ms,
		    tor_config_drift_ms(cfg->ha.lease_ms), cfg->ha.lease_ms -
		    tor_config_drift_ms(cfg->ha.lease_ms), cfg->ha.renew_ms);
	}
	return check_renew_room(ld, root);
}

/*
 * redis.timeout_ms against ha.lease_ms.  The leader's deadline runs from
 * the moment its winning acquire script was sent: the script's reply, the
 * replica count (ROLE) and the WAIT for a replica (given half the timeout)
 * come before the leadership is granted, and the first renew's reply must
 * come before the deadline.  Each reply may take redis.timeout_ms, so 3.5
 * of them must fit in lease_ms less its drift margin; past that a slow
 * Redis (a fork, an fsync) makes acquires that win a lease already over.
 */
static int
check_redis_timeout(struct loader *ld, const config_setting_t *root)
{
	const struct tor_config *cfg = ld->cfg;
	int room = cfg->ha.lease_ms - tor_config_drift_ms(cfg->ha.lease_ms);
	config_setting_t *s;

	if ((int64_t)cfg->redis.timeout_ms * 7 <= (int64_t)room * 2)
		return 0;
	if ((s = lookup(lookup(root, "redis"), "timeout_ms")) == NULL)
		s = lookup(lookup(root, "ha"), "lease_ms");
	return fail(ld, s, "redis.timeout_ms", "must be at most 2/7 of "
	    "ha.lease_ms less its drift margin (%d - %d = %d ms, so at most "
	    "%d), got %d: an acquire's reply, the replica check and the WAIT "
	    "for a replica, then the first renew's reply, each up to "
	    "redis.timeout_ms, would not fit in the lease", cfg->ha.lease_ms,
	    tor_config_drift_ms(cfg->ha.lease_ms), room, room * 2 / 7,
	    cfg->redis.timeout_ms);
}

static int
load_rest(struct loader *ld, const config_setting_t *root)
{
	struct tor_config *cfg = ld->cfg;
	config_setting_t *cp, *http, *log, *s;
	int format;

	if (opt_group(ld, root, "", "checkpoint", keys_checkpoint, &cp) == -1 ||
	    opt_ms(ld, cp, "checkpoint", "interval_ms", 1000, 0,
	    &cfg->checkpoint.interval_ms) == -1 ||
	    opt_str(ld, cp, "checkpoint", "key_file", "",
	    &cfg->checkpoint.key_file) == -1 ||
	    resolve_checkpoint_key(ld, cp) == -1)
		return -1;

	if (opt_group(ld, root, "", "http", keys_http, &http) == -1 ||
	    opt_str(ld, http, "http", "listen", "0.0.0.0:9187",
	    &cfg->http.listen) == -1)
		return -1;
	if (cfg->http.listen[0] != '\0' && !hostport_ok(cfg->http.listen))
		return fail(ld, lookup(http, "listen"),
		    "http.listen", "expected \"host:port\" or \"\" (off), got "
		    "\"%s\"", cfg->http.listen);

	if (opt_group(ld, root, "", "log", keys_log, &log) == -1 ||
	    member(ld, log, "log", "level", K_STR, &s) == -1)
		return -1;
	cfg->log.level = TOR_LOG_INFO;
	if (s != NULL) {
		int level = tor_log_level_parse(config_setting_get_string(s));

		if (level < 0)
			return fail(ld, s, "log.level", "expected debug, info, "
			    "warn or error, got \"%s\"",
			    config_setting_get_string(s));
		cfg->log.level = (enum tor_log_level)level;
	}
	if (opt_enum(ld, log, "log", "format", log_formats, TOR_LOG_LOGFMT,
	    &format) == -1)
		return -1;
	cfg->log.format = (enum tor_log_format)format;
	return 0;
}

/*
 * The pool keys (docs/pool-design.md §3).  They are the process's, not a
 * group's: an error names no source.  A single-group file runs no pool,
 * so a `pool` there is a mistake rather than a setting to ignore.
 */
static int
load_pool(struct loader *ld, const config_setting_t *root)
{
	struct tor_config *cfg = ld->cfg;
	const char *source = ld->source;
	config_setting_t *g;
	long long max_leading, beat_ms;
	int rc = -1;

	ld->source = NULL;
	cfg->pool.enabled = source != NULL;
	if (opt_group(ld, root, "", "pool", keys_pool, &g) == -1)
		goto done;
	if (g != NULL && source == NULL) {
		fail(ld, g, "pool", "only in a file with sources: a single-group "
		    "file runs no pool");
		goto done;
	}
	if (opt_str(ld, g, "pool", "name", "default", &cfg->pool.name) == -1 ||
	    opt_int(ld, g, "pool", "max_leading", 64, 1, INT_MAX,
	    &max_leading) == -1 ||
	    opt_ms(ld, g, "pool", "settle_ms", 10000, 0,
	    &cfg->pool.settle_ms) == -1 ||
	    opt_int(ld, g, "pool", "beat_ms", 1000, 100, MS_MAX,
	    &beat_ms) == -1)
		goto done;
	cfg->pool.max_leading = (int)max_leading;
	cfg->pool.beat_ms = (int)beat_ms;
	/* The name goes inside the pool's hash tag {pool:<name>}. */
	if (cfg->pool.name[0] == '\0' || !topic_chars_ok(cfg->pool.name,
	    strlen(cfg->pool.name))) {
		fail(ld, lookup(g, "name"), "pool.name", "expected letters, "
		    "digits, '.', '_' or '-', got \"%s\"", cfg->pool.name);
		goto done;
	}
	rc = 0;
done:
	ld->source = source;
	return rc;
}

/* Every feature of §6 is built: nothing to note.  The list stays, for the
 * next key whose feature lags behind its parsing. */
static void
collect_notes(struct tor_config *cfg)
{
	cfg->not_built[0] = NULL;
}

/* s, when it sets a secret (not empty) in a file others may read: the
 * file is warned of like a secret file.  True when s sets one. */
static bool
warn_inline_secret(struct loader *ld, const config_setting_t *s,
    const char *key)
{
	const char *file, *v;
	char what[KEYLEN + PATH_MAX];
	struct stat st;

	if (s == NULL || config_setting_type(s) != CONFIG_TYPE_STRING ||
	    (v = config_setting_get_string(s)) == NULL || v[0] == '\0')
		return false;
	if ((file = config_setting_source_file(s)) != NULL &&
	    stat(file, &st) == 0) {
		snprintf(what, sizeof(what), "%s is set inline in %s, which",
		    key, file);
		warn_loose_mode(ld, what, &st);
	}
	return true;
}

/*
 * The first secret set inline in the file (a password, a secret-named
 * kafka.properties entry) makes it a secret file too: one warning when
 * others may read it.  Without a secret in it, any mode is fine (a
 * Kubernetes ConfigMap is 0644).
 */
static void
warn_inline_secrets(struct loader *ld, const config_setting_t *root)
{
	static const char *const paths[] = { "mysql.password",
	    "redis.password", "redis.sentinel.password" };
	const config_setting_t *list;
	char key[KEYLEN];

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (warn_inline_secret(ld, config_setting_lookup(
		    (config_setting_t *)root, paths[i]), paths[i]))
			return;
	list = config_setting_lookup((config_setting_t *)root,
	    "kafka.properties");
	for (int i = 0; list != NULL && i < config_setting_length(list); i++) {
		const config_setting_t *e = config_setting_get_elem(list,
		    (unsigned)i);
		const char *prop = config_setting_get_string(e);

		if (prop == NULL || secret_word_end(prop, strlen(prop)) == 0)
			continue;
		elempath(key, "kafka.properties", i);
		if (warn_inline_secret(ld, e, key))
			return;
	}
}

static int
load_all(struct loader *ld, const config_setting_t *root)
{
	if (check_keys(ld, root, "", keys_top) == -1 ||
	    load_identity(ld, root) == -1 ||
	    load_mysql(ld, root) == -1 ||
	    load_outbox(ld, root) == -1 ||
	    load_kafka(ld, root) == -1 ||
	    load_redis(ld, root) == -1 ||
	    load_ha(ld, root) == -1 ||
	    check_redis_timeout(ld, root) == -1 ||
	    load_rest(ld, root) == -1 ||
	    load_pool(ld, root) == -1)
		return -1;
	warn_inline_secrets(ld, root);
	collect_notes(ld->cfg);
	return copy_str(ld, ld->path, &ld->cfg->path);
}

/* Reads path into c (initialised here; the caller destroys it on 0). */
static int
read_file(config_t *c, const char *path, tor_err *err)
{
	FILE *f;

	/* libconfig says only "file I/O error"; fopen knows why. */
	if ((f = fopen(path, "r")) == NULL)
		return tor_err_set(err, "%s: cannot open: %s", path,
		    strerror(errno));
	fclose(f);

	config_init(c);
	if (config_read_file(c, path) == CONFIG_FALSE) {
		const char *file = config_error_file(c);
		const char *text = config_error_text(c);

		if (config_error_type(c) == CONFIG_ERR_FILE_IO)
			tor_err_set(err, "%s: cannot read the file", path);
		else if (strcmp(text, "syntax error") == 0)
			tor_err_set(err, "%s:%d: syntax error",
			    file != NULL ? file : path, config_error_line(c));
		else
			tor_err_set(err, "%s:%d: syntax error: %s",
			    file != NULL ? file : path, config_error_line(c),
			    text);
		config_destroy(c);
		return -1;
	}
	return 0;
}

/* Loads one group's config from root into *out; nothing to free on -1. */
static int
load_one(const config_setting_t *root, const char *path, const char *source,
    struct tor_config *out, tor_err *err)
{
	struct tor_config tmp;
	struct loader ld = { &tmp, path, err, source };

	memset(&tmp, 0, sizeof(tmp));
	if (load_all(&ld, root) == -1) {
		tor_config_free(&tmp);
		return -1;
	}
	*out = tmp;
	sodium_memzero(&tmp, sizeof(tmp));
	return 0;
}

/*
 * The `sources` form: the top level holds what every source shares, each
 * entry of `sources` one group.
 */
static const char *const keys_top_sources[] = { "instance", "sources",
	"pool", "kafka", "redis", "ha", "checkpoint", "http", "log", NULL };
static const char *const keys_source[] = { "group", "mysql", "outbox",
	"kafka", "redis", "ha", "checkpoint", NULL };
/* What a source must name itself: a default for them would be a trap. */
static const char *const keys_source_own[] = { "group", "mysql", "outbox",
	NULL };

static config_setting_t *copy_into(config_setting_t *parent,
    const config_setting_t *s);

/* The elements or members of s copied into d (a group, list or array). */
static int
copy_children(config_setting_t *d, const config_setting_t *s)
{
	for (int i = 0; i < config_setting_length(s); i++)
		if (copy_into(d, config_setting_get_elem(s, (unsigned)i)) ==
		    NULL)
			return -1;
	return 0;
}

/*
 * A copy of s added to parent, with s's file and line, so that errors
 * about it name the place it was written.  Integers are copied as 64-bit
 * values read as int_value reads them: the literal's place in the file
 * cannot be found again from the merged tree.
 */
static config_setting_t *
copy_into(config_setting_t *parent, const config_setting_t *s)
{
	const char *name = config_setting_is_group(parent) ?
	    config_setting_name(s) : NULL;
	int type = config_setting_type(s);
	config_setting_t *d;
	int ok = CONFIG_TRUE;

	if (type == CONFIG_TYPE_INT)
		type = CONFIG_TYPE_INT64;
	if ((d = config_setting_add(parent, name, type)) == NULL)
		return NULL;
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		ok = config_setting_set_int64(d, int_value(s));
		break;
	case CONFIG_TYPE_FLOAT:
		ok = config_setting_set_float(d, config_setting_get_float(s));
		break;
	case CONFIG_TYPE_BOOL:
		ok = config_setting_set_bool(d, config_setting_get_bool(s));
		break;
	case CONFIG_TYPE_STRING:
		ok = config_setting_set_string(d,
		    config_setting_get_string(s));
		break;
	default:
		ok = copy_children(d, s) == 0 ? CONFIG_TRUE : CONFIG_FALSE;
		break;
	}
	if (ok != CONFIG_TRUE)
		return NULL;
	d->line = s->line;
	d->file = s->file;
	return d;
}

/* src laid over the group dst: a group merges member by member, anything
 * else replaces what dst has under its name. */
static int
overlay(config_setting_t *dst, const config_setting_t *src)
{
	for (int i = 0; i < config_setting_length(src); i++) {
		const config_setting_t *e = config_setting_get_elem(src,
		    (unsigned)i);
		const char *name = config_setting_name(e);
		config_setting_t *d = config_setting_get_member(dst, name);

		if (d != NULL && config_setting_is_group(d) &&
		    config_setting_is_group(e)) {
			if (overlay(d, e) == -1)
				return -1;
			continue;
		}
		if (d != NULL && config_setting_remove(dst, name) !=
		    CONFIG_TRUE)
			return -1;
		if (copy_into(dst, e) == NULL)
			return -1;
	}
	return 0;
}

/* The group name of sources[i], checked; NULL after an error. */
static const char *
source_group(struct loader *ld, const config_setting_t *e, int i)
{
	char key[KEYLEN], sub[KEYLEN];
	const config_setting_t *g;

	elempath(key, "sources", i);
	if (!config_setting_is_group(e)) {
		fail(ld, e, key, "expected a group { group = ...; mysql = ...; "
		    "outbox = ...; }");
		return NULL;
	}
	if (check_keys(ld, e, key, keys_source) == -1)
		return NULL;
	for (const char *const *k = keys_source_own; *k != NULL; k++)
		if (lookup(e, *k) == NULL) {
			fail(ld, e, keypath(sub, key, *k), "required");
			return NULL;
		}
	g = lookup(e, "group");
	if (config_setting_type(g) != CONFIG_TYPE_STRING) {
		fail(ld, g, keypath(sub, key, "group"), "%s",
		    kind_problem[K_STR]);
		return NULL;
	}
	return config_setting_get_string(g);
}

/* Checks the `sources` form's top level and entries, before any merge. */
static int
check_sources(struct loader *ld, const config_setting_t *root,
    const config_setting_t *list)
{
	char key[KEYLEN], elem[KEYLEN];
	const char *group, *other;

	for (const char *const *k = keys_source_own; *k != NULL; k++)
		if (lookup(root, *k) != NULL)
			return fail(ld, lookup(root, *k), *k, "not at the top "
			    "level beside sources: every source names its own");
	if (check_keys(ld, root, "", keys_top_sources) == -1)
		return -1;
	if (config_setting_type(list) != CONFIG_TYPE_LIST)
		return fail(ld, list, "sources", "%s", kind_problem[K_LIST]);
	if (config_setting_length(list) == 0)
		return fail(ld, list, "sources", "no sources: give at least "
		    "one");
	for (int i = 0; i < config_setting_length(list); i++) {
		const config_setting_t *e = config_setting_get_elem(list,
		    (unsigned)i);

		if ((group = source_group(ld, e, i)) == NULL)
			return -1;
		for (int j = 0; j < i; j++) {
			other = config_setting_get_string(lookup(
			    config_setting_get_elem(list, (unsigned)j),
			    "group"));
			if (strcmp(group, other) == 0)
				return fail(ld, lookup(e, "group"), keypath(key,
				    elempath(elem, "sources", i), "group"),
				    "\"%s\" is the group of sources[%d] "
				    "already", group, j);
		}
	}
	return 0;
}

/* The tree of sources[i]: the top level without `sources`, the entry laid
 * over it.  c is initialised here; the caller destroys it. */
static int
merge_source(config_t *c, const config_setting_t *root,
    const config_setting_t *entry, tor_err *err, const char *path)
{
	config_setting_t *mroot;

	config_init(c);
	mroot = config_root_setting(c);
	for (int i = 0; i < config_setting_length(root); i++) {
		const config_setting_t *s = config_setting_get_elem(root,
		    (unsigned)i);

		if (strcmp(config_setting_name(s), "sources") != 0 &&
		    copy_into(mroot, s) == NULL)
			return tor_err_set(err, "%s: out of memory", path);
	}
	if (overlay(mroot, entry) == -1)
		return tor_err_set(err, "%s: out of memory", path);
	return 0;
}

/*
 * Settings that must differ between the groups of one file: a shared
 * transactional.id fences one producer with the other; one server_id on
 * one server ends one binlog stream when the other connects.
 */
static int
check_across(const struct tor_config *cfgs, size_t n, tor_err *err)
{
	for (size_t i = 1; i < n; i++)
		for (size_t j = 0; j < i; j++) {
			const struct tor_config *a = &cfgs[j], *b = &cfgs[i];

			if (a->kafka.mode == TOR_KAFKA_TRANSACTIONAL &&
			    b->kafka.mode == TOR_KAFKA_TRANSACTIONAL &&
			    strcmp(a->kafka.transactional_id,
			    b->kafka.transactional_id) == 0)
				return tor_err_set(err, "%s: sources: groups "
				    "\"%s\" and \"%s\" have the same "
				    "kafka.transactional_id \"%s\": give each "
				    "its own, or none (\"tor-<group>\")",
				    a->path, a->group, b->group,
				    a->kafka.transactional_id);
			if (a->mysql.server_id == b->mysql.server_id &&
			    a->mysql.port == b->mysql.port &&
			    strcmp(a->mysql.host, b->mysql.host) == 0)
				return tor_err_set(err, "%s: sources: groups "
				    "\"%s\" and \"%s\" read %s:%d with the "
				    "same mysql.server_id %u: %s", a->path,
				    a->group, b->group, a->mysql.host,
				    a->mysql.port, a->mysql.server_id,
				    a->mysql.server_id_derived &&
				    b->mysql.server_id_derived ? "the derived "
				    "ids collide, set one of them" : "give "
				    "each its own, or none (derived)");
		}
	return 0;
}

void
tor_config_free_sources(struct tor_config *cfgs, size_t n)
{
	if (cfgs == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		tor_config_free(&cfgs[i]);
	free(cfgs);
}

int
tor_config_load_sources(const char *path, struct tor_config **cfgs,
    size_t *n, tor_err *err)
{
	struct loader ld = { NULL, path, err, NULL };
	const config_setting_t *root, *list;
	struct tor_config *out = NULL;
	size_t count = 0, len;
	config_t c, m;
	int rc = -1;

	*cfgs = NULL;
	*n = 0;
	if (read_file(&c, path, err) == -1)
		return -1;
	root = config_root_setting(&c);
	if ((list = lookup(root, "sources")) == NULL) {
		/* Today's form: the whole file is the one group. */
		if ((out = calloc(1, sizeof(*out))) == NULL)
			tor_err_set(err, "%s: out of memory", path);
		else if (load_one(root, path, NULL, out, err) == 0)
			count = 1;
		rc = count == 1 ? 0 : -1;
		goto done;
	}
	if (check_sources(&ld, root, list) == -1)
		goto done;
	len = (size_t)config_setting_length(list);
	if ((out = calloc(len, sizeof(*out))) == NULL) {
		tor_err_set(err, "%s: out of memory", path);
		goto done;
	}
	for (size_t i = 0; i < len; i++) {
		const config_setting_t *e = config_setting_get_elem(list,
		    (unsigned)i);
		const char *group = config_setting_get_string(lookup(e,
		    "group"));
		int one;

		if (merge_source(&m, root, e, err, path) == -1) {
			config_destroy(&m);
			goto done;
		}
		one = load_one(config_root_setting(&m), path, group, &out[i],
		    err);
		config_destroy(&m);
		if (one == -1)
			goto done;
		count++;
	}
	rc = check_across(out, count, err);
done:
	config_destroy(&c);
	if (rc == -1) {
		tor_config_free_sources(out, count);
		return -1;
	}
	*cfgs = out;
	*n = count;
	return 0;
}

int
tor_config_load(struct tor_config *cfg, const char *path, tor_err *err)
{
	struct tor_config *cfgs;
	size_t n;

	memset(cfg, 0, sizeof(*cfg));
	if (tor_config_load_sources(path, &cfgs, &n, err) == -1)
		return -1;
	if (n > 1) {
		tor_err_set(err, "%s: sources: %zu sources given where one "
		    "group is read", path, n);
		tor_config_free_sources(cfgs, n);
		return -1;
	}
	*cfg = cfgs[0];
	sodium_memzero(&cfgs[0], sizeof(cfgs[0]));
	free(cfgs);
	return 0;
}

/* Prints s as a libconfig string literal. */
static void
print_quoted(FILE *out, const char *s)
{
	fputc('"', out);
	for (; s != NULL && *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", out);
		else if (c == '\t')
			fputs("\\t", out);
		else if (c == '\r')
			fputs("\\r", out);
		else if (c < 0x20)
			fprintf(out, "\\x%02x", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
}

static void
print_str(FILE *out, int indent, const char *name, const char *v)
{
	fprintf(out, "%*s%s = ", indent, "", name);
	print_quoted(out, v);
	fputs(";\n", out);
}

/* A secret shows only whether it is set. */
static void
print_secret(FILE *out, int indent, const char *name, const char *v)
{
	print_str(out, indent, name, v != NULL && v[0] != '\0' ? MASK : "");
}

static void
print_int(FILE *out, int indent, const char *name, long long v)
{
	/* libconfig 1.5 wraps a literal past 32 bits without the L suffix. */
	fprintf(out, "%*s%s = %lld%s;\n", indent, "", name, v,
	    v > INT32_MAX || v < INT32_MIN ? "L" : "");
}

static void
print_strings(FILE *out, int indent, const char *name, char *const *v,
    size_t n)
{
	fprintf(out, "%*s%s = (", indent, "", name);
	for (size_t i = 0; i < n; i++) {
		fputs(i == 0 ? " " : ", ", out);
		print_quoted(out, v[i]);
	}
	fputs(" );\n", out);
}

static void
print_mysql(const struct tor_config *cfg, FILE *out)
{
	fputs("mysql = {\n", out);
	print_str(out, 2, "host", cfg->mysql.host);
	print_int(out, 2, "port", cfg->mysql.port);
	print_str(out, 2, "user", cfg->mysql.user);
	print_secret(out, 2, "password", cfg->mysql.password);
	print_str(out, 2, "password_file", cfg->mysql.password_file);
	if (cfg->mysql.server_id_derived)
		fputs("  # derived from group and instance\n", out);
	print_int(out, 2, "server_id", cfg->mysql.server_id);
	print_str(out, 2, "start", cfg->mysql.start);
	print_int(out, 2, "heartbeat_ms", cfg->mysql.heartbeat_ms);
	print_int(out, 2, "connect_timeout_ms", cfg->mysql.connect_timeout_ms);
	print_str(out, 2, "server_public_key", cfg->mysql.server_public_key);
	print_int(out, 2, "retention_check_ms", cfg->mysql.retention_check_ms);
	print_int(out, 2, "retention_warn_bytes",
	    cfg->mysql.retention_warn_bytes);
	print_int(out, 2, "retention_warn_ms", cfg->mysql.retention_warn_ms);
	fputs("  tls = {\n", out);
	print_str(out, 4, "mode", tls_modes[cfg->mysql.tls.mode]);
	print_str(out, 4, "ca", cfg->mysql.tls.ca);
	print_str(out, 4, "cert", cfg->mysql.tls.cert);
	print_str(out, 4, "key", cfg->mysql.tls.key);
	fputs("  };\n};\n\n", out);
}

static void
print_outbox(const struct tor_config *cfg, FILE *out)
{
	char unrouted[300];

	fputs("outbox = {\n  tables = (\n", out);
	for (size_t i = 0; i < cfg->outbox.n_tables; i++) {
		const struct tor_outbox_table *t = &cfg->outbox.tables[i];
		char name[512];

		snprintf(name, sizeof(name), "%s.%s", t->schema, t->table);
		fputs("    {\n", out);
		print_str(out, 6, "table", name);
		fputs("      columns = {\n", out);
		print_str(out, 8, "id", t->col_id != NULL ? t->col_id : "");
		print_str(out, 8, "key", t->col_key);
		print_str(out, 8, "type", t->col_type);
		print_str(out, 8, "payload", t->col_payload);
		print_str(out, 8, "timestamp", t->col_timestamp != NULL ?
		    t->col_timestamp : "");
		print_str(out, 8, "partition", t->col_partition != NULL ?
		    t->col_partition : "");
		fputs("      };\n      headers = (", out);
		for (size_t j = 0; j < t->n_headers; j++) {
			fputs(j == 0 ? " { column = " : ", { column = ", out);
			print_quoted(out, t->headers[j].column);
			fputs("; header = ", out);
			print_quoted(out, t->headers[j].header);
			fputs("; }", out);
		}
		fprintf(out, " );\n    }%s\n",
		    i + 1 < cfg->outbox.n_tables ? "," : "");
	}
	fputs("  );\n  routes = (\n", out);
	for (size_t i = 0; i < cfg->outbox.n_routes; i++) {
		const struct tor_route *r = &cfg->outbox.routes[i];

		fputs("    { match = ", out);
		print_quoted(out, r->match);
		fputs("; topic = ", out);
		print_quoted(out, r->topic);
		fprintf(out, "; icase = %s; }%s\n", r->icase ? "true" : "false",
		    i + 1 < cfg->outbox.n_routes ? "," : "");
	}
	fputs("  );\n", out);
	print_str(out, 2, "route", route_modes[cfg->outbox.route]);
	print_str(out, 2, "topic_template", cfg->outbox.topic_template);
	if (cfg->outbox.unrouted == TOR_UNROUTED_DLQ)
		snprintf(unrouted, sizeof(unrouted), "dlq:%s",
		    cfg->outbox.dlq_topic);
	else
		snprintf(unrouted, sizeof(unrouted), "%s",
		    cfg->outbox.unrouted == TOR_UNROUTED_SKIP ? "skip" : "fail");
	print_str(out, 2, "unrouted", unrouted);
	fputs("};\n\n", out);
}

/* head, then the entries of v masked, as a libconfig list. */
static void
print_properties(FILE *out, const char *head, char *const *v, size_t n)
{
	fputs(head, out);
	for (size_t i = 0; i < n; i++) {
		/* Room for the whole name: the printed config must load. */
		size_t cap = strlen(v[i]) + sizeof(MASK) + 1;
		char *shown = malloc(cap);

		fputs(i == 0 ? " " : ", ", out);
		print_quoted(out, shown == NULL ? "(out of memory)" :
		    tor_config_property_shown(v[i], shown, cap));
		free(shown);
	}
	fputs(" );\n", out);
}

static void
print_kafka(const struct tor_config *cfg, FILE *out)
{
	fputs("kafka = {\n", out);
	print_str(out, 2, "brokers", cfg->kafka.brokers);
	print_str(out, 2, "mode", kafka_modes[cfg->kafka.mode]);
	print_str(out, 2, "partitioner", partitioners[cfg->kafka.partitioner]);
	print_int(out, 2, "unreachable_ms", cfg->kafka.unreachable_ms);
	print_str(out, 2, "transactional_id", cfg->kafka.transactional_id);
	print_str(out, 2, "checkpoint_topic", cfg->kafka.checkpoint_topic);
	fputs("  topics = (", out);
	for (size_t i = 0; i < cfg->kafka.n_topics; i++) {
		fputs(i == 0 ? " { name = " : ", { name = ", out);
		print_quoted(out, cfg->kafka.topics[i].name);
		fprintf(out, "; partitions = %d; replication = %d; }",
		    cfg->kafka.topics[i].partitions,
		    cfg->kafka.topics[i].replication);
	}
	fputs(" );\n", out);
	print_str(out, 2, "properties_file", cfg->kafka.properties_file);
	print_properties(out, "  properties = (", cfg->kafka.properties,
	    cfg->kafka.n_inline_properties);
	/* Not keys of the file: what the file and the environment added. */
	if (cfg->kafka.n_file_properties > 0)
		print_properties(out, "  # from properties_file: (",
		    cfg->kafka.properties + cfg->kafka.n_inline_properties,
		    cfg->kafka.n_file_properties);
	if (cfg->kafka.n_properties > cfg->kafka.n_inline_properties +
	    cfg->kafka.n_file_properties)
		print_properties(out, "  # from TOR_KAFKA_SASL_PASSWORD: (",
		    cfg->kafka.properties + cfg->kafka.n_properties - 1, 1);
	fputs("};\n\n", out);
}

static void
print_redis_tls(FILE *out, int indent, const struct tor_redis_tls *t)
{
	fprintf(out, "%*stls = {\n", indent, "");
	fprintf(out, "%*senabled = %s;\n", indent + 2, "",
	    t->enabled ? "true" : "false");
	print_str(out, indent + 2, "ca_file", t->ca_file);
	print_str(out, indent + 2, "cert_file", t->cert_file);
	print_str(out, indent + 2, "key_file", t->key_file);
	print_str(out, indent + 2, "server_name", t->server_name);
	fprintf(out, "%*sverify = %s;\n", indent + 2, "",
	    t->verify ? "true" : "false");
	fprintf(out, "%*s};\n", indent, "");
}

static void
print_redis(const struct tor_config *cfg, FILE *out)
{
	fputs("redis = {\n", out);
	print_str(out, 2, "host", cfg->redis.host);
	print_int(out, 2, "port", cfg->redis.port);
	print_int(out, 2, "db", cfg->redis.db);
	print_str(out, 2, "user", cfg->redis.user);
	print_secret(out, 2, "password", cfg->redis.password);
	print_str(out, 2, "password_file", cfg->redis.password_file);
	print_str(out, 2, "prefix", cfg->redis.prefix);
	print_int(out, 2, "timeout_ms", cfg->redis.timeout_ms);
	print_redis_tls(out, 2, &cfg->redis.tls);
	fputs("  sentinel = {\n", out);
	print_str(out, 4, "master", cfg->redis.sentinel.master);
	print_strings(out, 4, "nodes", cfg->redis.sentinel.nodes,
	    cfg->redis.sentinel.n_nodes);
	print_str(out, 4, "user", cfg->redis.sentinel.user);
	print_secret(out, 4, "password", cfg->redis.sentinel.password);
	print_str(out, 4, "password_file", cfg->redis.sentinel.password_file);
	print_redis_tls(out, 4, &cfg->redis.sentinel.tls);
	fputs("  };\n  cluster = {\n", out);
	print_strings(out, 4, "nodes", cfg->redis.cluster.nodes,
	    cfg->redis.cluster.n_nodes);
	fputs("  };\n};\n\n", out);
}

void
tor_config_print(const struct tor_config *cfg, FILE *out)
{
	fputs("# effective configuration", out);
	if (cfg->path != NULL) {
		fputs(" of ", out);
		print_quoted(out, cfg->path);
	}
	fputs(" (secrets masked)\n", out);
	print_str(out, 0, "group", cfg->group);
	print_str(out, 0, "instance", cfg->instance);
	fputs("\n", out);
	print_mysql(cfg, out);
	print_outbox(cfg, out);
	print_kafka(cfg, out);
	print_redis(cfg, out);
	fputs("ha = {\n", out);
	print_int(out, 2, "lease_ms", cfg->ha.lease_ms);
	print_int(out, 2, "renew_ms", cfg->ha.renew_ms);
	print_int(out, 2, "retry_ms", cfg->ha.retry_ms);
	fprintf(out, "  fast_failover = %s;\n", cfg->ha.fast_failover ? "true" :
	    "false");
	print_int(out, 2, "stall_ms", cfg->ha.stall_ms);
	fputs("};\n\ncheckpoint = {\n", out);
	print_int(out, 2, "interval_ms", cfg->checkpoint.interval_ms);
	print_str(out, 2, "key_file", cfg->checkpoint.key_file);
	/* Not a key of the file: the key resolved from either source. */
	fprintf(out, "  # key = \"%s\";\n", cfg->checkpoint.has_key ? MASK :
	    "");
	fputs("};\n\nhttp = {\n", out);
	print_str(out, 2, "listen", cfg->http.listen);
	fputs("};\n\nlog = {\n", out);
	print_str(out, 2, "level", tor_log_level_name(cfg->log.level));
	print_str(out, 2, "format", log_formats[cfg->log.format]);
	fputs("};\n", out);
}

const char *
tor_config_partitioner_name(enum tor_partitioner how)
{
	return partitioners[how];
}

const char *const *
tor_config_not_in_effect(const struct tor_config *cfg)
{
	return cfg->not_built;
}

static void
free_strings(char **v, size_t n)
{
	for (size_t i = 0; v != NULL && i < n; i++)
		free(v[i]);
	free(v);
}

/* Any kafka.properties entry may carry a secret (sasl.password, a key's
 * passphrase): each is wiped. */
static void
free_secrets(char **v, size_t n)
{
	for (size_t i = 0; v != NULL && i < n; i++)
		free_secret(v[i]);
	free(v);
}

static void
free_redis_tls(struct tor_redis_tls *t)
{
	free(t->ca_file);
	free(t->cert_file);
	free(t->key_file);
	free(t->server_name);
}

void
tor_config_free(struct tor_config *cfg)
{
	free(cfg->path);
	free(cfg->group);
	free(cfg->instance);
	free(cfg->pool.name);

	free(cfg->mysql.host);
	free(cfg->mysql.user);
	free_secret(cfg->mysql.password);
	free(cfg->mysql.password_file);
	free(cfg->mysql.server_public_key);
	free(cfg->mysql.start);
	free(cfg->mysql.tls.ca);
	free(cfg->mysql.tls.cert);
	free(cfg->mysql.tls.key);

	for (size_t i = 0; cfg->outbox.tables != NULL &&
	    i < cfg->outbox.n_tables; i++) {
		struct tor_outbox_table *t = &cfg->outbox.tables[i];

		free(t->schema);
		free(t->table);
		free(t->col_id);
		free(t->col_key);
		free(t->col_type);
		free(t->col_payload);
		free(t->col_timestamp);
		free(t->col_partition);
		for (size_t j = 0; t->headers != NULL && j < t->n_headers;
		    j++) {
			free(t->headers[j].column);
			free(t->headers[j].header);
		}
		free(t->headers);
	}
	free(cfg->outbox.tables);
	for (size_t i = 0; i < cfg->outbox.n_routes; i++) {
		free(cfg->outbox.routes[i].match);
		free(cfg->outbox.routes[i].topic);
		regfree(&cfg->outbox.routes[i].re);
	}
	free(cfg->outbox.routes);
	free(cfg->outbox.topic_template);
	free(cfg->outbox.dlq_topic);

	free(cfg->kafka.brokers);
	free(cfg->kafka.transactional_id);
	free(cfg->kafka.checkpoint_topic);
	for (size_t i = 0; cfg->kafka.topics != NULL && i < cfg->kafka.n_topics;
	    i++)
		free(cfg->kafka.topics[i].name);
	free(cfg->kafka.topics);
	free_secrets(cfg->kafka.properties, cfg->kafka.n_properties);
	free(cfg->kafka.properties_file);

	free(cfg->redis.host);
	free_secret(cfg->redis.password);
	free(cfg->redis.user);
	free(cfg->redis.password_file);
	free(cfg->redis.prefix);
	free_redis_tls(&cfg->redis.tls);
	free_redis_tls(&cfg->redis.sentinel.tls);
	free(cfg->redis.sentinel.master);
	free(cfg->redis.sentinel.user);
	free_secret(cfg->redis.sentinel.password);
	free(cfg->redis.sentinel.password_file);
	free_strings(cfg->redis.sentinel.nodes, cfg->redis.sentinel.n_nodes);
	free_strings(cfg->redis.cluster.nodes, cfg->redis.cluster.n_nodes);

	free(cfg->checkpoint.key_file);
	free(cfg->http.listen);
	sodium_memzero(cfg, sizeof(*cfg));
}
