/*
 * Unit tests of the configuration (src/config.c): the documented sample and a
 * minimal file load with the values and defaults of DESIGN §6, secrets come
 * from the environment and files in the documented order and never show in
 * the printed config, and every bad file fails with its exact message.
 *
 * Run from the repository root: the fixtures live in tests/unit/config/.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "tor/config.h"

#include "alloc_probe.h"

#define DIR "tests/unit/config/"

/* Tests must not see the caller's secrets or host name. */
static int
clean_env(void **state)
{
	(void)state;
	unsetenv("TOR_MYSQL_PASSWORD");
	unsetenv("TOR_REDIS_PASSWORD");
	unsetenv("TOR_SENTINEL_PASSWORD");
	unsetenv("TOR_CHECKPOINT_KEY");
	unsetenv("TOR_KAFKA_SASL_PASSWORD");
	setenv("HOSTNAME", "test-host", 1);
	return 0;
}

static void
load_ok(struct tor_config *cfg, const char *path)
{
	tor_err err = { "" };

	if (tor_config_load(cfg, path, &err) != 0)
		fail_msg("%s: %s", path, err.msg);
}

static bool
has_note(const struct tor_config *cfg, const char *prefix)
{
	for (const char *const *n = tor_config_not_in_effect(cfg); *n != NULL;
	    n++)
		if (strncmp(*n, prefix, strlen(prefix)) == 0)
			return true;
	return false;
}

static void
test_sample(void **state)
{
	struct tor_config cfg;

	(void)state;
	load_ok(&cfg, "tor.cfg");
	assert_string_equal(cfg.path, "tor.cfg");
	assert_string_equal(cfg.group, "orders");
	assert_string_equal(cfg.instance, "test-host");

	assert_string_equal(cfg.mysql.host, "127.0.0.1");
	assert_int_equal(cfg.mysql.port, 3306);
	assert_string_equal(cfg.mysql.user, "tor");
	assert_string_equal(cfg.mysql.password, "");
	assert_string_equal(cfg.mysql.start, "end");
	assert_true(cfg.mysql.server_id_derived);
	assert_int_not_equal(cfg.mysql.server_id, 0);
	assert_int_equal(cfg.mysql.heartbeat_ms, 1000);
	assert_int_equal(cfg.mysql.connect_timeout_ms, 5000);
	assert_int_equal(cfg.mysql.retention_check_ms, 30000);
	assert_int_equal(cfg.mysql.retention_warn_bytes, 0);
	assert_int_equal(cfg.mysql.retention_warn_ms, 3600000);
	assert_int_equal(cfg.mysql.tls.mode, TOR_TLS_PREFERRED);

	assert_int_equal(cfg.outbox.n_tables, 1);
	assert_string_equal(cfg.outbox.tables[0].schema, "shop");
	assert_string_equal(cfg.outbox.tables[0].table, "outbox");
	assert_string_equal(cfg.outbox.tables[0].col_id, "uuid");
	assert_string_equal(cfg.outbox.tables[0].col_key, "aggregate_id");
	assert_string_equal(cfg.outbox.tables[0].col_type, "aggregate_type");
	assert_string_equal(cfg.outbox.tables[0].col_payload, "payload");
	assert_int_equal(cfg.outbox.tables[0].n_headers, 1);
	assert_string_equal(cfg.outbox.tables[0].headers[0].column, "uuid");
	assert_string_equal(cfg.outbox.tables[0].headers[0].header, "uuid");
	assert_int_equal(cfg.outbox.n_routes, 2);
	assert_string_equal(cfg.outbox.routes[0].topic, "order");
	assert_true(cfg.outbox.routes[0].icase);
	assert_false(cfg.outbox.routes[1].icase);
	/* The compiled patterns work as documented (icase on the first). */
	assert_int_equal(regexec(&cfg.outbox.routes[0].re, "ORDER", 0, NULL,
	    0), 0);
	assert_int_not_equal(regexec(&cfg.outbox.routes[1].re, "INVOICE", 0,
	    NULL, 0), 0);
	assert_int_equal(regexec(&cfg.outbox.routes[1].re, "invoice.paid", 0,
	    NULL, 0), 0);
	assert_string_equal(cfg.outbox.topic_template, "");
	assert_int_equal(cfg.outbox.unrouted, TOR_UNROUTED_FAIL);

	assert_string_equal(cfg.kafka.brokers, "127.0.0.1:9092");
	assert_int_equal(cfg.kafka.mode, TOR_KAFKA_IDEMPOTENT);
	assert_string_equal(cfg.kafka.transactional_id, "tor-orders");
	assert_string_equal(cfg.kafka.checkpoint_topic, "__tor_checkpoints");
	assert_int_equal(cfg.kafka.n_topics, 1);
	assert_string_equal(cfg.kafka.topics[0].name, "order");
	assert_int_equal(cfg.kafka.topics[0].partitions, 3);
	assert_int_equal(cfg.kafka.topics[0].replication, 1);
	assert_int_equal(cfg.kafka.n_properties, 2);
	assert_string_equal(cfg.kafka.properties[0], "compression.type=lz4");
	assert_string_equal(cfg.kafka.properties[1], "linger.ms=5");

	assert_string_equal(cfg.redis.host, "127.0.0.1");
	assert_int_equal(cfg.redis.port, 6379);
	assert_int_equal(cfg.redis.db, 0);
	assert_string_equal(cfg.redis.prefix, "tor");
	assert_int_equal(cfg.redis.timeout_ms, 500);
	assert_string_equal(cfg.redis.sentinel.master, "");
	assert_int_equal(cfg.redis.sentinel.n_nodes, 0);

	assert_int_equal(cfg.ha.lease_ms, 3000);
	assert_int_equal(cfg.ha.renew_ms, 1000);
	assert_int_equal(cfg.ha.stall_ms, 10000);
	assert_int_equal(cfg.ha.retry_ms, 200);
	assert_int_equal(cfg.checkpoint.interval_ms, 1000);
	assert_false(cfg.checkpoint.has_key);
	assert_string_equal(cfg.http.listen, "0.0.0.0:9187");
	assert_int_equal(cfg.log.level, TOR_LOG_INFO);
	assert_int_equal(cfg.log.format, TOR_LOG_LOGFMT);
	tor_config_free(&cfg);
}

static void
test_minimal_defaults(void **state)
{
	struct tor_config cfg;

	(void)state;
	load_ok(&cfg, DIR "minimal.cfg");
	assert_string_equal(cfg.group, "default");
	assert_string_equal(cfg.instance, "test-host");
	assert_string_equal(cfg.mysql.host, "db");
	assert_int_equal(cfg.mysql.port, 3306);
	assert_string_equal(cfg.mysql.user, "tor");
	assert_string_equal(cfg.mysql.password, "");
	assert_string_equal(cfg.mysql.password_file, "");
	assert_true(cfg.mysql.server_id_derived);
	assert_int_not_equal(cfg.mysql.server_id, 0);
	assert_string_equal(cfg.mysql.start, "end");
	assert_int_equal(cfg.mysql.heartbeat_ms, 1000);
	assert_int_equal(cfg.mysql.connect_timeout_ms, 5000);
	assert_int_equal(cfg.mysql.tls.mode, TOR_TLS_PREFERRED);
	assert_string_equal(cfg.mysql.tls.ca, "");
	assert_string_equal(cfg.mysql.tls.cert, "");
	assert_string_equal(cfg.mysql.tls.key, "");

	assert_int_equal(cfg.outbox.n_tables, 1);
	assert_null(cfg.outbox.tables[0].col_id);
	assert_int_equal(cfg.outbox.tables[0].n_headers, 0);
	assert_int_equal(cfg.outbox.n_routes, 0);
	assert_string_equal(cfg.outbox.topic_template, "ev.${aggregate_type}");
	assert_int_equal(cfg.outbox.unrouted, TOR_UNROUTED_FAIL);
	assert_null(cfg.outbox.dlq_topic);

	assert_int_equal(cfg.kafka.mode, TOR_KAFKA_IDEMPOTENT);
	assert_string_equal(cfg.kafka.transactional_id, "tor-default");
	assert_string_equal(cfg.kafka.checkpoint_topic, "__tor_checkpoints");
	assert_int_equal(cfg.kafka.n_topics, 0);
	assert_int_equal(cfg.kafka.n_properties, 0);

	assert_int_equal(cfg.redis.port, 6379);
	assert_int_equal(cfg.redis.db, 0);
	assert_string_equal(cfg.redis.password, "");
	assert_string_equal(cfg.redis.password_file, "");
	assert_string_equal(cfg.redis.prefix, "tor");
	assert_int_equal(cfg.redis.timeout_ms, 500);
	assert_string_equal(cfg.redis.sentinel.master, "");
	assert_int_equal(cfg.redis.sentinel.n_nodes, 0);

	assert_int_equal(cfg.ha.lease_ms, 3000);
	assert_int_equal(cfg.ha.renew_ms, 1000);
	assert_int_equal(cfg.ha.stall_ms, 10000);
	assert_int_equal(cfg.ha.retry_ms, 200);
	assert_int_equal(cfg.checkpoint.interval_ms, 1000);
	assert_string_equal(cfg.checkpoint.key_file, "");
	assert_false(cfg.checkpoint.has_key);
	assert_string_equal(cfg.http.listen, "0.0.0.0:9187");
	assert_int_equal(cfg.log.level, TOR_LOG_INFO);
	assert_int_equal(cfg.log.format, TOR_LOG_LOGFMT);

	/* Everything is built, the defaulted HTTP endpoint too: no note. */
	assert_null(tor_config_not_in_effect(&cfg)[0]);
	assert_false(has_note(&cfg, "http.listen"));
	assert_false(has_note(&cfg, "ha."));
	assert_false(has_note(&cfg, "kafka.mode"));
	assert_false(has_note(&cfg, "redis.sentinel"));
	assert_false(has_note(&cfg, "checkpoint."));
	tor_config_free(&cfg);
}

static void
test_instance_without_hostname_env(void **state)
{
	struct tor_config cfg;
	char host[256], want[300];

	(void)state;
	unsetenv("HOSTNAME");
	assert_int_equal(gethostname(host, sizeof(host)), 0);
	snprintf(want, sizeof(want), "%s-%ld", host, (long)getpid());
	load_ok(&cfg, DIR "minimal.cfg");
	assert_string_equal(cfg.instance, want);
	tor_config_free(&cfg);
}

/* The derived server_id is stable for one group+instance, and differs for
 * another instance, so that replicas never share one. */
static void
test_server_id_derived(void **state)
{
	struct tor_config a, b;

	(void)state;
	load_ok(&a, DIR "minimal.cfg");
	load_ok(&b, DIR "minimal.cfg");
	assert_int_equal(a.mysql.server_id, b.mysql.server_id);
	tor_config_free(&b);
	setenv("HOSTNAME", "other-host", 1);
	load_ok(&b, DIR "minimal.cfg");
	assert_true(b.mysql.server_id_derived);
	assert_int_not_equal(a.mysql.server_id, b.mysql.server_id);
	tor_config_free(&a);
	tor_config_free(&b);
}

/* libconfig 1.5 wraps 4294967295 to -1 without the L suffix. */
static void
test_server_id_max(void **state)
{
	struct tor_config cfg;

	(void)state;
	load_ok(&cfg, DIR "big_server_id.cfg");
	assert_false(cfg.mysql.server_id_derived);
	assert_true(cfg.mysql.server_id == UINT32_MAX);
	tor_config_free(&cfg);
}

struct tmpdir {
	char path[64];
	char files[8][128];
	int n;
};

static const char *
tmp_file(struct tmpdir *d, const char *name, const void *data, size_t len)
{
	char *path = d->files[d->n++], tmp[sizeof(d->files[0])];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s/%s", d->path, name);
	memcpy(path, tmp, sizeof(tmp));
	assert_non_null(f = fopen(path, "wb"));
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	return path;
}

static void
tmp_open(struct tmpdir *d)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->path, sizeof(d->path), "/tmp/tor-test-config-XXXXXX");
	assert_non_null(mkdtemp(d->path));
}

static void
tmp_close(struct tmpdir *d)
{
	for (int i = 0; i < d->n; i++)
		unlink(d->files[i]);
	rmdir(d->path);
}

/* An integer whose name ends its line, the value on the next (found by
 * fuzz_config: the literal's second reading ran past the line's end).  The
 * value is read as libconfig gives it. */
static void
test_integer_name_at_line_end(void **state)
{
	static const char text[] =
	    "mysql = {\n"
	    "  host = \"db\";\n"
	    "  server_id\n"
	    "  = 29494;\n"
	    "  port =\n"
	    "3307; };\n"
	    "outbox = {\n"
	    "  tables = ( { table = \"shop.outbox\";\n"
	    "    columns = { key = \"k\"; type = \"t\"; payload = \"p\"; }; } );\n"
	    "  topic_template = \"ev.${aggregate_type}\";\n"
	    "};\n"
	    "kafka = { brokers = \"k:9092\"; };\n"
	    "redis = { host = \"r\"; };\n";
	struct tor_config cfg;
	struct tmpdir d;

	(void)state;
	tmp_open(&d);
	load_ok(&cfg, tmp_file(&d, "split.cfg", text, sizeof(text) - 1));
	assert_true(cfg.mysql.server_id == 29494);
	assert_int_equal(cfg.mysql.port, 3307);
	tor_config_free(&cfg);
	tmp_close(&d);
}

/* The groups a test puts an integer in, around one line of its own. */
static const char literal_head[] =
    "outbox = {\n"
    "  tables = ( { table = \"shop.outbox\";\n"
    "    columns = { key = \"k\"; type = \"t\"; payload = \"p\"; }; } );\n"
    "  topic_template = \"ev.${aggregate_type}\";\n"
    "};\n"
    "kafka = { brokers = \"k:9092\"; };\n";

/* Loads literal_head + text; the result of tor_config_load. */
static int
load_text(const char *text, struct tor_config *cfg, tor_err *err)
{
	char all[2048];
	struct tmpdir d;
	int rc;

	snprintf(all, sizeof(all), "%s%s", literal_head, text);
	tmp_open(&d);
	rc = tor_config_load(cfg, tmp_file(&d, "lit.cfg", all, strlen(all)),
	    err);
	tmp_close(&d);
	return rc;
}

/*
 * An integer literal is read again from its own line (libconfig 1.5 wraps
 * past 32 bits), and the reading must find the setting itself: not a
 * "name=digits" inside a string or a comment, nor a setting of the same
 * name in another group on the same line.
 */
static void
test_integer_literal_is_the_settings_own(void **state)
{
	static const struct {
		const char *text;
		int mysql_port, redis_port;
	} good[] = {
		{ "mysql = { host = \"db\"; password = \"port=1\"; "
		    "port = 3306; };\nredis = { host = \"r\"; };\n", 3306, 6379 },
		{ "mysql = { host = \"db\"; password = \"x\\\"port=1\"; "
		    "port = 3306; };\nredis = { host = \"r\"; };\n", 3306, 6379 },
		{ "mysql = { host = \"db\"; /* port = 1 */ port = 3306; };\n"
		    "redis = { host = \"r\"; };\n", 3306, 6379 },
		{ "mysql = { host = \"db\"; user = \"a\nport = 1\"; /* x\n"
		    " port = 2 */ port = 3306; };\n"
		    "redis = { host = \"r\"; };\n", 3306, 6379 },
		{ "mysql = { host = \"db\"; port = 3307; }; redis = { host = "
		    "\"r\"; port = 6380; };\n", 3307, 6380 },
		{ "mysql = { host = \"db\"; port = 3307; # port = 1\n};\n"
		    "redis = { host = \"r\"; port: 6380; // port = 2\n};\n",
		    3307, 6380 },
	};
	static const char *const bad[] = {
		/* The wrapped value of the second port is 1, in range. */
		"mysql = { host = \"db\"; port = 3306; }; redis = { host = "
		    "\"r\"; port = 4294967297; };\n",
		"mysql = { host = \"db\"; user = \"port = 3306\"; "
		    "port = 4294970592; };\nredis = { host = \"r\"; };\n",
	};
	struct tor_config cfg;
	tor_err err;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		memset(&err, 0, sizeof(err));
		if (load_text(good[i].text, &cfg, &err) != 0)
			fail_msg("good[%zu]: %s", i, err.msg);
		int mysql_port = cfg.mysql.port, redis_port = cfg.redis.port;

		tor_config_free(&cfg);
		if (mysql_port != good[i].mysql_port ||
		    redis_port != good[i].redis_port)
			fail_msg("good[%zu]: mysql.port %d, redis.port %d", i,
			    mysql_port, redis_port);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&err, 0, sizeof(err));
		if (load_text(bad[i], &cfg, &err) != -1) {
			tor_config_free(&cfg);
			fail_msg("bad[%zu] loaded", i);
		}
		if (strstr(err.msg, "must be between 1 and 65535") == NULL)
			fail_msg("bad[%zu]: %s", i, err.msg);
	}
}

/* A config whose secrets are inline and in files. */
static const char *
secrets_cfg(struct tmpdir *d, const char *key_file)
{
	char text[2048];
	const char *mysql_file, *redis_file;

	mysql_file = tmp_file(d, "mysql.secret", "mysql-from-file\n", 16);
	redis_file = tmp_file(d, "redis.secret", "redis-from-file\r\n", 17);
	snprintf(text, sizeof(text),
	    "mysql = { host = \"db\"; password = \"mysql-inline\";\n"
	    "  password_file = \"%s\"; };\n"
	    "outbox = { tables = ( { table = \"s.t\"; columns = { key = \"k\";"
	    " type = \"t\"; payload = \"p\"; }; } );\n"
	    "  topic_template = \"${aggregate_type}\"; };\n"
	    "kafka = { brokers = \"k:9092\"; };\n"
	    "redis = { host = \"r\"; password = \"redis-inline\";\n"
	    "  password_file = \"%s\"; };\n"
	    "checkpoint = { key_file = \"%s\"; };\n",
	    mysql_file, redis_file, key_file);
	return tmp_file(d, "secrets.cfg", text, strlen(text));
}

static void
test_secret_precedence(void **state)
{
	struct tor_config cfg;
	struct tmpdir d;
	const char *path;
	static const char inline_cfg[] =
	    "mysql = { host = \"db\"; password = \"mysql-inline\"; };\n"
	    "outbox = { tables = ( { table = \"s.t\"; columns = { key = \"k\";"
	    " type = \"t\"; payload = \"p\"; }; } );\n"
	    "  topic_template = \"${aggregate_type}\"; };\n"
	    "kafka = { brokers = \"k:9092\"; };\n"
	    "redis = { host = \"r\"; password = \"redis-inline\"; };\n";

	(void)state;
	tmp_open(&d);

	/* Inline only. */
	path = tmp_file(&d, "inline.cfg", inline_cfg, sizeof(inline_cfg) - 1);
	load_ok(&cfg, path);
	assert_string_equal(cfg.mysql.password, "mysql-inline");
	assert_string_equal(cfg.redis.password, "redis-inline");
	tor_config_free(&cfg);

	/* The file wins over inline; its trailing newline is not meant. */
	path = secrets_cfg(&d, "");
	load_ok(&cfg, path);
	assert_string_equal(cfg.mysql.password, "mysql-from-file");
	assert_string_equal(cfg.redis.password, "redis-from-file");
	tor_config_free(&cfg);

	/* The environment wins over both. */
	setenv("TOR_MYSQL_PASSWORD", "mysql-from-env", 1);
	setenv("TOR_REDIS_PASSWORD", "redis-from-env", 1);
	load_ok(&cfg, path);
	assert_string_equal(cfg.mysql.password, "mysql-from-env");
	assert_string_equal(cfg.redis.password, "redis-from-env");
	tor_config_free(&cfg);
	tmp_close(&d);
}

static const unsigned char key_bytes[32] = {
	0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
	0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
	0xf0, 0xe1, 0xd2, 0xc3, 0xb4, 0xa5, 0x96, 0x87,
	0x78, 0x69, 0x5a, 0x4b, 0x3c, 0x2d, 0x1e, 0x0a,
};
#define KEY_HEX "000102030405060708090a0b0c0d0e0f" \
	"f0e1d2c3b4a5968778695a4b3c2d1e0a"
#define KEY_B64 "AAECAwQFBgcICQoLDA0OD/Dh0sO0pZaHeGlaSzwtHgo="

static void
test_checkpoint_key(void **state)
{
	struct tor_config cfg;
	struct tmpdir d;
	tor_err err;
	const char *path;
	char want[600], other[65];

	(void)state;
	tmp_open(&d);

	/* 32 raw bytes (one of them a newline: taken as is). */
	path = secrets_cfg(&d, tmp_file(&d, "raw.key", key_bytes, 32));
	load_ok(&cfg, path);
	assert_true(cfg.checkpoint.has_key);
	assert_memory_equal(cfg.checkpoint.key, key_bytes, 32);
	/* The MAC is built: a key is not reported as having no effect. */
	assert_false(has_note(&cfg, "checkpoint."));
	tor_config_free(&cfg);
	tmp_close(&d);

	/* 64 hex characters and a newline. */
	tmp_open(&d);
	path = secrets_cfg(&d, tmp_file(&d, "hex.key", KEY_HEX "\n", 65));
	load_ok(&cfg, path);
	assert_true(cfg.checkpoint.has_key);
	assert_memory_equal(cfg.checkpoint.key, key_bytes, 32);
	tor_config_free(&cfg);

	/* The environment wins over the file: hex, then base64. */
	snprintf(other, sizeof(other), "ff%s", &KEY_HEX[2]);
	setenv("TOR_CHECKPOINT_KEY", other, 1);
	load_ok(&cfg, path);
	assert_int_equal(cfg.checkpoint.key[0], 0xff);
	assert_memory_equal(cfg.checkpoint.key + 1, key_bytes + 1, 31);
	tor_config_free(&cfg);
	setenv("TOR_CHECKPOINT_KEY", KEY_B64, 1);
	load_ok(&cfg, path);
	assert_memory_equal(cfg.checkpoint.key, key_bytes, 32);
	tor_config_free(&cfg);

	/* A key of the wrong length, and one that is neither form. */
	setenv("TOR_CHECKPOINT_KEY", "00ff", 1);
	assert_int_equal(tor_config_load(&cfg, path, &err), -1);
	snprintf(want, sizeof(want), "%s: TOR_CHECKPOINT_KEY: expected 64 hex "
	    "characters or the base64 of 32 bytes", path);
	assert_string_equal(err.msg, want);
	setenv("TOR_CHECKPOINT_KEY", KEY_HEX "00", 1);
	assert_int_equal(tor_config_load(&cfg, path, &err), -1);
	assert_string_equal(err.msg, want);
	unsetenv("TOR_CHECKPOINT_KEY");
	tmp_close(&d);
}

/* The printed config as a string (through a file, as main prints it). */
static char *
print_to_string(const struct tor_config *cfg)
{
	char *text;
	long len;
	FILE *f;

	assert_non_null(f = tmpfile());
	tor_config_print(cfg, f);
	assert_false(ferror(f));
	assert_true((len = ftell(f)) > 0);
	rewind(f);
	assert_non_null(text = malloc((size_t)len + 1));
	assert_int_equal(fread(text, 1, (size_t)len, f), (size_t)len);
	text[len] = '\0';
	fclose(f);
	return text;
}

static void
test_print_masks_secrets(void **state)
{
	struct tor_config cfg;
	struct tmpdir d;
	char *text, hex[65];

	(void)state;
	tmp_open(&d);
	setenv("TOR_MYSQL_PASSWORD", "hunter2-mysql", 1);
	load_ok(&cfg, secrets_cfg(&d, tmp_file(&d, "hex.key", KEY_HEX, 64)));
	text = print_to_string(&cfg);
	assert_non_null(strstr(text, "  password = \"********\";\n"));
	assert_non_null(strstr(strstr(text, "redis = {"),
	    "  password = \"********\";\n"));
	assert_non_null(strstr(text, "# key = \"********\";"));
	assert_null(strstr(text, "hunter2"));
	assert_null(strstr(text, "mysql-inline"));
	assert_null(strstr(text, "redis-from-file"));
	assert_null(strstr(text, "redis-inline"));
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", key_bytes[i]);
	assert_null(strstr(text, hex));
	assert_null(strstr(text, "f0e1d2c3"));
	/* Secret *files* are not secret: the operator needs their paths. */
	assert_non_null(strstr(text, "mysql.secret"));
	free(text);
	tor_config_free(&cfg);
	tmp_close(&d);

	/* Unset secrets print as "". */
	unsetenv("TOR_MYSQL_PASSWORD");
	load_ok(&cfg, DIR "minimal.cfg");
	text = print_to_string(&cfg);
	assert_non_null(strstr(text, "  password = \"\";\n"));
	assert_null(strstr(text, "********"));
	assert_non_null(strstr(text, "# key = \"\";"));
	free(text);
	tor_config_free(&cfg);
}

/* kafka.properties whose names hold password, secret, jaas, key.pem or
 * passphrase, in any case, print with their values masked; the others as they are. */
static void
test_print_masks_secret_properties(void **state)
{
	static const char cfg_text[] =
	    "mysql = { host = \"db\"; };\n"
	    "outbox = { tables = ( { table = \"shop.outbox\";\n"
	    "  columns = { key = \"k\"; type = \"t\"; payload = \"p\"; }; "
	    "} );\n"
	    "  topic_template = \"ev.${aggregate_type}\"; };\n"
	    "kafka = { brokers = \"k:9092\"; properties = (\n"
	    "  \"security.protocol=SASL_SSL\", \"sasl.password=hunter2-a\",\n"
	    "  \"ssl.key.password=hunter2-b\",\n"
	    "  \"sasl.oauthbearer.client.secret=hunter2-c\",\n"
	    "  \"Sasl.Jaas.Config=x required password=\\\"hunter2-d\\\";\",\n"
	    "  \"ssl.key.pem=-----BEGIN PRIVATE KEY-----hunter2-e\",\n"
	    "  \"sasl.oauthbearer.assertion.private.key.passphrase=hunter2-f\",\n"
	    "  \"sasl.username=tor\" ); };\n"
	    "redis = { host = \"r\"; };\n";
	struct tor_config cfg;
	struct tmpdir d;
	char *text;

	(void)state;
	tmp_open(&d);
	load_ok(&cfg, tmp_file(&d, "props.cfg", cfg_text, strlen(cfg_text)));
	text = print_to_string(&cfg);
	assert_null(strstr(text, "hunter2"));
	assert_non_null(strstr(text, "properties = ( "
	    "\"security.protocol=SASL_SSL\", \"sasl.password=********\", "
	    "\"ssl.key.password=********\", "
	    "\"sasl.oauthbearer.client.secret=********\", "
	    "\"Sasl.Jaas.Config=********\", \"ssl.key.pem=********\", "
	    "\"sasl.oauthbearer.assertion.private.key.passphrase=********\", "
	    "\"sasl.username=tor\" );"));
	free(text);
	tor_config_free(&cfg);
	tmp_close(&d);
}

/* The outbox every secrets test shares. */
#define OUTBOX_TEXT "outbox = { tables = ( { table = \"s.t\"; columns = { " \
	"key = \"k\"; type = \"t\"; payload = \"p\"; }; } );\n" \
	"  topic_template = \"${aggregate_type}\"; };\n"

/* tor_config_free leaves no secret behind in the memory it frees: the
 * passwords, inline or from a file, and every kafka.properties entry. */
static void
test_free_wipes_secrets(void **state)
{
	static const char marker[] = "hunter2";
	struct tor_config cfg;
	struct tmpdir d;
	char text[2048];
	const char *pw;
	size_t freed_with;

	(void)state;
	tmp_open(&d);
	pw = tmp_file(&d, "redis.secret", "hunter2-redis\n", 14);
	snprintf(text, sizeof(text),
	    "mysql = { host = \"db\"; password = \"hunter2-mysql\"; };\n"
	    OUTBOX_TEXT
	    "kafka = { brokers = \"k:9092\"; properties = ( "
	    "\"sasl.username=tor\", \"sasl.password=hunter2-kafka\" ); };\n"
	    "redis = { host = \"r\"; password_file = \"%s\"; sentinel = { "
	    "master = \"m\"; nodes = ( \"s:26379\" ); "
	    "password = \"hunter2-sentinel\"; }; };\n", pw);
	load_ok(&cfg, tmp_file(&d, "wipe.cfg", text, strlen(text)));
	assert_string_equal(cfg.redis.password, "hunter2-redis");
	alloc_probe_watch(marker, strlen(marker));
	tor_config_free(&cfg);
	alloc_probe_stop();
	freed_with = alloc_probe.freed_with;
	tmp_close(&d);
	if (freed_with != 0)
		fail_msg("%zu blocks freed still holding a secret", freed_with);
}

/* Loads a config whose mysql.password_file is file. */
static void
load_with_password_file(struct tor_config *cfg, struct tmpdir *d,
    const char *file)
{
	char text[1024];

	snprintf(text, sizeof(text), "mysql = { host = \"db\"; "
	    "password_file = \"%s\"; };\n" OUTBOX_TEXT
	    "kafka = { brokers = \"k:9092\"; };\nredis = { host = \"r\"; };\n",
	    file);
	load_ok(cfg, tmp_file(d, "mode.cfg", text, strlen(text)));
	assert_string_equal(cfg->mysql.password, "pw");
}

/*
 * A secret file others may read is loaded with a warning (a refusal would
 * stop every replica of a deployment that mounts a Kubernetes Secret with
 * its default mode 0644): open to every user, or to its group while tor's
 * own user owns it.  A file of another owner (root) open to its group only
 * is the usual way to hand tor a secret, and 0600 is quiet.
 */
static void
test_secret_file_modes(void **state)
{
	struct tor_config cfg;
	struct tmpdir d;
	char want[600], link[160];
	const char *pw;

	(void)state;
	tmp_open(&d);
	pw = tmp_file(&d, "mysql.secret", "pw\n", 3);

	assert_int_equal(chmod(pw, 0644), 0);
	load_with_password_file(&cfg, &d, pw);
	snprintf(want, sizeof(want), "mysql.password_file %s is open to every "
	    "user (mode 0644): make it 0600, or 0640 owned by root with tor's "
	    "group", pw);
	assert_int_equal(cfg.n_warnings, 1);
	assert_string_equal(cfg.warnings[0], want);
	tor_config_free(&cfg);

	/* Through a symbolic link, as a Kubernetes Secret volume has it: the
	 * mode of the file it leads to, the name as configured. */
	snprintf(link, sizeof(link), "%s/link.secret", d.path);
	assert_int_equal(symlink(pw, link), 0);
	load_with_password_file(&cfg, &d, link);
	snprintf(want, sizeof(want), "mysql.password_file %s is open to every "
	    "user (mode 0644): make it 0600, or 0640 owned by root with tor's "
	    "group", link);
	assert_int_equal(cfg.n_warnings, 1);
	assert_string_equal(cfg.warnings[0], want);
	tor_config_free(&cfg);
	unlink(link);

	assert_int_equal(chmod(pw, 0640), 0);
	load_with_password_file(&cfg, &d, pw);
	snprintf(want, sizeof(want), "mysql.password_file %s is open to its "
	    "group (mode 0640) and owned by tor's own user: make it 0600, or "
	    "0640 owned by root with tor's group", pw);
	assert_int_equal(cfg.n_warnings, 1);
	assert_string_equal(cfg.warnings[0], want);
	tor_config_free(&cfg);

	assert_int_equal(chmod(pw, 0600), 0);
	load_with_password_file(&cfg, &d, pw);
	assert_int_equal(cfg.n_warnings, 0);
	tor_config_free(&cfg);

	if (geteuid() == 0) {
		/* Another owner, group access only: quiet. */
		assert_int_equal(chown(pw, 1, getegid()), 0);
		assert_int_equal(chmod(pw, 0640), 0);
		load_with_password_file(&cfg, &d, pw);
		assert_int_equal(cfg.n_warnings, 0);
		tor_config_free(&cfg);
	}
	tmp_close(&d);
}

/*
 * tor.cfg itself is a secret file when it holds a password inline (or a
 * secret kafka.properties entry): open to every user, it is warned like a
 * password file.  Without a secret in it, 0644 is quiet (a Kubernetes
 * ConfigMap is mounted so).
 */
static void
test_inline_secret_in_a_loose_file(void **state)
{
	static const struct {
		const char *text, *key;
	} cases[] = {
		{ "mysql = { host = \"db\"; password = \"hunter2\"; };\n"
		    "kafka = { brokers = \"k:9092\"; };\n"
		    "redis = { host = \"r\"; };\n", "mysql.password" },
		{ "mysql = { host = \"db\"; };\n"
		    "kafka = { brokers = \"k:9092\"; properties = ( "
		    "\"linger.ms=5\", \"sasl.password=hunter2\" ); };\n"
		    "redis = { host = \"r\"; };\n", "kafka.properties[1]" },
		{ "mysql = { host = \"db\"; };\n"
		    "kafka = { brokers = \"k:9092\"; };\n"
		    "redis = { host = \"r\"; sentinel = { master = \"m\"; "
		    "nodes = ( \"s:26379\" ); password = \"hunter2\"; }; };\n",
		    "redis.sentinel.password" },
		{ "mysql = { host = \"db\"; password = \"\"; };\n"
		    "kafka = { brokers = \"k:9092\"; };\n"
		    "redis = { host = \"r\"; };\n", NULL },
	};
	struct tor_config cfg;
	struct tmpdir d;
	char text[1024], want[600];
	const char *path;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tmp_open(&d);
		snprintf(text, sizeof(text), "%s" OUTBOX_TEXT, cases[i].text);
		path = tmp_file(&d, "inline.cfg", text, strlen(text));
		assert_int_equal(chmod(path, 0644), 0);
		load_ok(&cfg, path);
		if (cases[i].key == NULL) {
			assert_int_equal(cfg.n_warnings, 0);
		} else {
			snprintf(want, sizeof(want), "%s is set inline in %s, "
			    "which is open to every user (mode 0644): make it "
			    "0600, or 0640 owned by root with tor's group",
			    cases[i].key, path);
			assert_int_equal(cfg.n_warnings, 1);
			assert_string_equal(cfg.warnings[0], want);
		}
		tor_config_free(&cfg);
		assert_int_equal(chmod(path, 0600), 0);
		load_ok(&cfg, path);
		assert_int_equal(cfg.n_warnings, 0);
		tor_config_free(&cfg);
		tmp_close(&d);
	}
}

/* kafka.properties_file: name=value lines after kafka.properties, blank
 * lines and # comments skipped; TOR_KAFKA_SASL_PASSWORD last of all.  The
 * printed config names the file and shows its entries masked in a comment,
 * and loads again. */
static void
test_kafka_properties_file(void **state)
{
	static const char props_text[] = "# the cluster's credentials\n\n"
	    "sasl.username=tor\r\n  sasl.password=hunter2-file\n";
	struct tor_config cfg, again;
	struct tmpdir d;
	char text[1024], want[400], *printed;
	const char *props, *path;

	(void)state;
	tmp_open(&d);
	props = tmp_file(&d, "kafka.properties", props_text,
	    sizeof(props_text) - 1);
	assert_int_equal(chmod(props, 0600), 0);
	snprintf(text, sizeof(text), "mysql = { host = \"db\"; };\n"
	    OUTBOX_TEXT "kafka = { brokers = \"k:9092\"; properties = ( "
	    "\"linger.ms=5\" ); properties_file = \"%s\"; };\n"
	    "redis = { host = \"r\"; };\n", props);
	path = tmp_file(&d, "pf.cfg", text, strlen(text));
	load_ok(&cfg, path);
	assert_int_equal(cfg.kafka.n_properties, 3);
	assert_int_equal(cfg.kafka.n_inline_properties, 1);
	assert_string_equal(cfg.kafka.properties[0], "linger.ms=5");
	assert_string_equal(cfg.kafka.properties[1], "sasl.username=tor");
	assert_string_equal(cfg.kafka.properties[2], "sasl.password=hunter2-file");
	assert_int_equal(cfg.n_warnings, 0);
	printed = print_to_string(&cfg);
	assert_null(strstr(printed, "hunter2"));
	snprintf(want, sizeof(want), "  properties_file = \"%s\";\n", props);
	assert_non_null(strstr(printed, want));
	assert_non_null(strstr(printed, "  properties = ( \"linger.ms=5\" );\n"
	    "  # from properties_file: ( \"sasl.username=tor\", "
	    "\"sasl.password=********\" );\n"));
	tor_config_free(&cfg);
	/* What --check-config prints loads again, with the same entries. */
	path = tmp_file(&d, "printed.cfg", printed, strlen(printed));
	load_ok(&again, path);
	assert_int_equal(again.kafka.n_properties, 3);
	assert_string_equal(again.kafka.properties[2],
	    "sasl.password=hunter2-file");
	tor_config_free(&again);
	free(printed);

	setenv("TOR_KAFKA_SASL_PASSWORD", "hunter2-env", 1);
	load_ok(&cfg, path);
	assert_int_equal(cfg.kafka.n_properties, 4);
	assert_string_equal(cfg.kafka.properties[3],
	    "sasl.password=hunter2-env");
	printed = print_to_string(&cfg);
	assert_null(strstr(printed, "hunter2"));
	assert_non_null(strstr(printed, "  # from TOR_KAFKA_SASL_PASSWORD: "
	    "( \"sasl.password=********\" );\n"));
	free(printed);
	tor_config_free(&cfg);
	unsetenv("TOR_KAFKA_SASL_PASSWORD");
	tmp_close(&d);
}

/* A bad line of kafka.properties_file is refused naming the file and its
 * line, a secret in it masked. */
static void
test_kafka_properties_file_errors(void **state)
{
	static const struct {
		const char *line, *problem;
	} bad[] = {
		{ "acks=1", "acks cannot be overridden: the idempotent producer "
		    "needs acks=all" },
		{ "sasl.password hunter2", "expected \"name=value\", got "
		    "\"sasl.password********\"" },
	};
	struct tor_config cfg;
	struct tmpdir d;
	char text[1024], props_text[128], want[800];
	const char *props, *path;
	tor_err err;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tmp_open(&d);
		snprintf(props_text, sizeof(props_text), "linger.ms=5\n%s\n",
		    bad[i].line);
		props = tmp_file(&d, "kafka.properties", props_text,
		    strlen(props_text));
		snprintf(text, sizeof(text), "mysql = { host = \"db\"; };\n"
		    OUTBOX_TEXT "kafka = { brokers = \"k:9092\";\n"
		    "  properties_file = \"%s\"; };\n"
		    "redis = { host = \"r\"; };\n", props);
		path = tmp_file(&d, "pf.cfg", text, strlen(text));
		snprintf(want, sizeof(want), "%s:5: kafka.properties_file: "
		    "%s:2: %s", path, props, bad[i].problem);
		memset(&err, 0, sizeof(err));
		assert_int_equal(tor_config_load(&cfg, path, &err), -1);
		assert_string_equal(err.msg, want);
		tmp_close(&d);
	}
}

/* A secret-named property whose name alone is longer than an error
 * message's buffer: printed masked and whole, so the printed config still
 * loads (found by fuzz_config: the name was cut before its "=" and the
 * reprint refused). */
static void
test_print_masks_a_long_secret_name(void **state)
{
	char name[600], cfg_text[1200], *text, *line;
	struct tor_config cfg, again;
	struct tmpdir d;

	(void)state;
	memset(name, 'e', sizeof(name));
	memcpy(name, "linger.", 7);
	memcpy(name + 300, "jaas", 4);
	name[sizeof(name) - 1] = '\0';
	snprintf(cfg_text, sizeof(cfg_text),
	    "mysql = { host = \"db\"; };\n"
	    "outbox = { tables = ( { table = \"shop.outbox\";\n"
	    "  columns = { key = \"k\"; type = \"t\"; payload = \"p\"; }; "
	    "} );\n"
	    "  topic_template = \"ev.${aggregate_type}\"; };\n"
	    "kafka = { brokers = \"k:9092\"; properties = ( \"%s=hunter2\" "
	    "); };\n"
	    "redis = { host = \"r\"; };\n", name);
	tmp_open(&d);
	load_ok(&cfg, tmp_file(&d, "long.cfg", cfg_text, strlen(cfg_text)));
	text = print_to_string(&cfg);
	assert_null(strstr(text, "hunter2"));
	line = strstr(text, name);
	assert_non_null(line);
	assert_memory_equal(line + strlen(name), "=********\"", 10);
	load_ok(&again, tmp_file(&d, "again.cfg", text, strlen(text)));
	assert_string_equal(again.kafka.properties[0] + strlen(name),
	    "=********");
	free(text);
	tor_config_free(&again);
	tor_config_free(&cfg);
	tmp_close(&d);
}

/* The printed config is valid tor.cfg and means the same. */
static void
test_print_reloads(void **state)
{
	struct tor_config cfg, again;
	struct tmpdir d;
	char *text, *text2;
	const char *path;

	(void)state;
	tmp_open(&d);
	load_ok(&cfg, "tor.cfg");
	text = print_to_string(&cfg);
	path = tmp_file(&d, "printed.cfg", text, strlen(text));
	load_ok(&again, path);
	assert_string_equal(again.instance, cfg.instance);
	assert_int_equal(again.mysql.server_id, cfg.mysql.server_id);
	assert_int_equal(again.outbox.n_routes, 2);
	assert_true(again.outbox.routes[0].icase);
	assert_int_equal(again.outbox.route, TOR_ROUTE_FIRST);
	assert_string_equal(again.outbox.tables[0].headers[0].header, "uuid");
	assert_string_equal(again.kafka.properties[1], "linger.ms=5");
	assert_string_equal(again.kafka.transactional_id, "tor-orders");
	text2 = print_to_string(&again);
	/* Past mysql (the derived-id comment), the two prints agree. */
	assert_string_equal(strstr(text2, "outbox = {"),
	    strstr(text, "outbox = {"));
	assert_non_null(strstr(text, "# derived from group and instance"));
	assert_null(strstr(text2, "# derived from group and instance"));
	free(text);
	free(text2);
	tor_config_free(&cfg);
	tor_config_free(&again);
	tmp_close(&d);
}

/* redis.cluster.nodes: the seeds as written, no host needed; the printed
 * config holds them and loads again; an empty group is no cluster. */
static void
test_redis_cluster(void **state)
{
	struct tor_config cfg, again;
	struct tmpdir d;
	char *text;
	const char *path;
	static const char text_in[] =
	    "mysql = { host = \"db\"; };\n"
	    "outbox = { tables = ( { table = \"s.t\"; columns = { key = \"k\";"
	    " type = \"t\"; payload = \"p\"; }; } );\n"
	    "  topic_template = \"${aggregate_type}\"; };\n"
	    "kafka = { brokers = \"k:9092\"; };\n"
	    "redis = { cluster = { nodes = ( \"10.0.0.6:6379\", "
	    "\"[fd00::7]:7000\" ); };\n"
	    "  sentinel = { master = \"\"; nodes = ( ); }; };\n"
	    "http = { listen = \"\"; };\n";
	static const char empty[] =
	    "mysql = { host = \"db\"; };\n"
	    "outbox = { tables = ( { table = \"s.t\"; columns = { key = \"k\";"
	    " type = \"t\"; payload = \"p\"; }; } );\n"
	    "  topic_template = \"${aggregate_type}\"; };\n"
	    "kafka = { brokers = \"k:9092\"; };\n"
	    "redis = { host = \"r\"; cluster = { nodes = ( ); }; };\n";

	(void)state;
	tmp_open(&d);
	path = tmp_file(&d, "cluster.cfg", text_in, sizeof(text_in) - 1);
	load_ok(&cfg, path);
	assert_string_equal(cfg.redis.host, "");
	assert_int_equal(cfg.redis.cluster.n_nodes, 2);
	assert_string_equal(cfg.redis.cluster.nodes[0], "10.0.0.6:6379");
	assert_string_equal(cfg.redis.cluster.nodes[1], "[fd00::7]:7000");
	assert_false(has_note(&cfg, "redis.cluster"));
	text = print_to_string(&cfg);
	assert_non_null(strstr(text, "  cluster = {\n    nodes = ( "
	    "\"10.0.0.6:6379\", \"[fd00::7]:7000\" );\n  };\n"));
	path = tmp_file(&d, "printed.cfg", text, strlen(text));
	load_ok(&again, path);
	assert_int_equal(again.redis.cluster.n_nodes, 2);
	free(text);
	tor_config_free(&again);
	tor_config_free(&cfg);

	path = tmp_file(&d, "empty.cfg", empty, sizeof(empty) - 1);
	load_ok(&cfg, path);
	assert_int_equal(cfg.redis.cluster.n_nodes, 0);
	assert_string_equal(cfg.redis.host, "r");
	text = print_to_string(&cfg);
	path = tmp_file(&d, "printed-empty.cfg", text, strlen(text));
	load_ok(&again, path);
	assert_int_equal(again.redis.cluster.n_nodes, 0);
	free(text);
	tor_config_free(&again);
	tor_config_free(&cfg);
	tmp_close(&d);
}

static void
test_not_in_effect_transactional(void **state)
{
	struct tor_config cfg;
	struct tmpdir d;
	const char *const *notes;
	const char *path;
	static const char text[] =
	    "mysql = { host = \"db\"; };\n"
	    "outbox = { tables = ( { table = \"s.t\"; columns = { key = \"k\";"
	    " type = \"t\"; payload = \"p\"; }; } );\n"
	    "  topic_template = \"${aggregate_type}\"; };\n"
	    "kafka = { brokers = \"k:9092\"; mode = \"transactional\"; };\n"
	    "redis = { sentinel = { master = \"m\"; nodes = ( \"s1:26379\" ); };"
	    " };\n"
	    "http = { listen = \"\"; };\n";

	(void)state;
	tmp_open(&d);
	path = tmp_file(&d, "tx.cfg", text, sizeof(text) - 1);
	load_ok(&cfg, path);
	assert_int_equal(cfg.kafka.mode, TOR_KAFKA_TRANSACTIONAL);
	assert_string_equal(cfg.redis.host, "");
	/* Transactional publishing is built: no note, and nothing else. */
	notes = tor_config_not_in_effect(&cfg);
	assert_null(notes[0]);
	assert_false(has_note(&cfg, "kafka.mode"));
	/* Sentinel discovery is built: a sentinel group is no note. */
	assert_false(has_note(&cfg, "redis.sentinel"));
	assert_false(has_note(&cfg, "http.listen"));
	assert_false(has_note(&cfg, "ha."));
	tor_config_free(&cfg);
	tmp_close(&d);
}

/* Loads a minimal config with extra settings in its groups; returns the
 * result of tor_config_load. */
static int
load_with(const char *mysql, const char *http)
{
	struct tor_config cfg;
	struct tmpdir d;
	tor_err err;
	char text[1024];
	int rc;

	tmp_open(&d);
	snprintf(text, sizeof(text),
	    "mysql = { host = \"db\"; %s };\n"
	    "outbox = { tables = ( { table = \"s.t\"; columns = { key = \"k\";"
	    " type = \"t\"; payload = \"p\"; }; } );\n"
	    "  topic_template = \"${aggregate_type}\"; };\n"
	    "kafka = { brokers = \"k:9092\"; };\n"
	    "redis = { host = \"r\"; };\n"
	    "http = { %s };\n", mysql, http);
	rc = tor_config_load(&cfg, tmp_file(&d, "t.cfg", text, strlen(text)),
	    &err);
	if (rc == 0)
		tor_config_free(&cfg);
	tmp_close(&d);
	return rc;
}

static void
test_start_values(void **state)
{
	static const char *const good[] = { "end", "beginning",
		"mysql-bin.000003:4", "mysql-bin.000003:4294967295",
		"0-1-100", "0-1-100,1-2-3",
		"4294967295-4294967295-18446744073709551615",
		/* MySQL GTID sets, as gtid_executed shows them too */
		"3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5",
		"3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7,\n "
		"4c4d4e4f-0000-1111-2222-333344445555:9" };
	static const char *const bad[] = { "", "begin", "mysql-bin.000003",
		"mysql-bin.000003:3", ":100", "mysql-bin.000003:4294967296",
		"mysql-bin.000003:+4", "0-1", "0-1-2,", "0-1-2,0-3-4",
		"a-b-c", "0-1-2 ", "-1-2-3", "0-4294967296-1",
		"0-1-18446744073709551616",
		"3E11FA47-71CA-11E1-9E33-C80AA9429562:0",
		"3E11FA47-71CA-11E1-9E33-C80AA9429562:1-x",
		"3E11FA47-71CA-11E1-9E33-C80AA9429562:blue:1",
		"3E11FA47-71CA-11E1-9E33-C80AA9429562:5-1" };
	char line[256];

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(line, sizeof(line), "start = \"%s\";", good[i]);
		if (load_with(line, "") != 0)
			fail_msg("refused %s", line);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(line, sizeof(line), "start = \"%s\";", bad[i]);
		if (load_with(line, "") != -1)
			fail_msg("accepted %s", line);
	}
}

static void
test_listen_values(void **state)
{
	static const char *const good[] = { "", "0.0.0.0:9187",
		"127.0.0.1:1", "[::]:9187", "[::1]:65535", "localhost:80" };
	static const char *const bad[] = { "9187", ":9187", "0.0.0.0:",
		"0.0.0.0:0", "0.0.0.0:65536", "::1:9187", "[::1]9187",
		"host:80x", "host:-1" };
	char line[256];

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(line, sizeof(line), "listen = \"%s\";", good[i]);
		if (load_with("", line) != 0)
			fail_msg("refused %s", line);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(line, sizeof(line), "listen = \"%s\";", bad[i]);
		if (load_with("", line) != -1)
			fail_msg("accepted %s", line);
	}
	/* A port past 32 bits must not wrap into range (libconfig 1.5). */
	assert_int_equal(load_with("port = 4294970592;", ""), -1);
	assert_int_equal(load_with("port = 0x0CE4;", ""), 0);
}

/* The `sources` form: each entry laid over the top level, key by key. */
static void
test_sources_merge(void **state)
{
	struct tor_config *cfgs, *a, *b;
	tor_err err = { "" };
	size_t n;

	(void)state;
	if (tor_config_load_sources(DIR "sources_two.cfg", &cfgs, &n,
	    &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(n, 2);
	a = &cfgs[0];
	b = &cfgs[1];
	assert_string_equal(a->group, "shop-eu");
	assert_string_equal(b->group, "billing");
	assert_string_equal(a->instance, "tor-0");
	assert_string_equal(b->instance, "tor-0");
	assert_string_equal(a->path, DIR "sources_two.cfg");
	assert_string_equal(a->mysql.host, "db-eu");
	assert_int_equal(a->mysql.port, 3306);
	assert_string_equal(b->mysql.host, "db-billing");
	assert_int_equal(b->mysql.port, 3307);
	/* Derived per group: ids that differ without being asked to. */
	assert_true(a->mysql.server_id_derived);
	/* An integer of an entry is read from its own line, where a 32-bit
	 * literal past INT32_MAX is not wrapped (test_server_id_max). */
	assert_false(b->mysql.server_id_derived);
	assert_int_equal(b->mysql.server_id, 4294967295u);
	assert_string_equal(a->outbox.tables[0].schema, "shop");
	assert_string_equal(b->outbox.tables[0].schema, "billing");
	assert_int_equal(a->outbox.n_routes, 0);
	assert_int_equal(b->outbox.n_routes, 1);
	/* kafka: brokers shared, mode and properties overridden whole. */
	assert_string_equal(a->kafka.brokers, "k1:9092,k2:9092");
	assert_string_equal(b->kafka.brokers, "k1:9092,k2:9092");
	assert_int_equal(a->kafka.mode, TOR_KAFKA_TRANSACTIONAL);
	assert_int_equal(b->kafka.mode, TOR_KAFKA_IDEMPOTENT);
	assert_string_equal(a->kafka.transactional_id, "tor-shop-eu");
	assert_int_equal(a->kafka.n_inline_properties, 1);
	assert_string_equal(a->kafka.properties[0], "linger.ms=5");
	assert_int_equal(b->kafka.n_inline_properties, 1);
	assert_string_equal(b->kafka.properties[0], "linger.ms=20");
	/* redis and ha: a key overridden, the rest kept. */
	assert_string_equal(a->redis.host, "r");
	assert_string_equal(b->redis.host, "r");
	assert_string_equal(a->redis.prefix, "pool");
	assert_string_equal(b->redis.prefix, "billing");
	/* A group within a group merges too. */
	assert_string_equal(a->redis.tls.ca_file, "no-such-ca.pem");
	assert_string_equal(b->redis.tls.ca_file, "no-such-ca.pem");
	assert_string_equal(a->redis.tls.server_name, "");
	assert_string_equal(b->redis.tls.server_name, "redis.internal");
	assert_int_equal(a->ha.lease_ms, 3000);
	assert_int_equal(b->ha.lease_ms, 6000);
	assert_int_equal(b->ha.renew_ms, 1000);
	tor_config_free_sources(cfgs, n);
}

/* A list of one is today's file written the other way. */
static void
test_sources_one_is_a_file_of_today(void **state)
{
	struct tor_config one, minimal;
	char *a = NULL, *b = NULL;
	size_t alen, blen;
	FILE *fa, *fb;

	(void)state;
	load_ok(&one, DIR "sources_one.cfg");
	load_ok(&minimal, DIR "minimal.cfg");
	fa = open_memstream(&a, &alen);
	fb = open_memstream(&b, &blen);
	tor_config_print(&one, fa);
	tor_config_print(&minimal, fb);
	fclose(fa);
	fclose(fb);
	/* Alike but for the first line, which names the file. */
	assert_string_equal(strchr(a, '\n'), strchr(b, '\n'));
	free(a);
	free(b);
	tor_config_free(&one);
	tor_config_free(&minimal);
}

/* Several sources load, but a replica runs one group for now. */
static void
test_sources_several_refused_by_the_replica(void **state)
{
	struct tor_config *cfgs, cfg;
	tor_err err = { "" };
	size_t n;

	(void)state;
	assert_int_equal(tor_config_load_sources(DIR "sources_pair.cfg", &cfgs,
	    &n, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(cfgs[1].group, "b");
	tor_config_free_sources(cfgs, n);
	assert_int_equal(tor_config_load(&cfg, DIR "sources_pair.cfg", &err),
	    -1);
	assert_string_equal(err.msg, DIR "sources_pair.cfg: sources: 2 "
	    "sources given where one group is read");
	assert_null(cfg.group);
}

/* The pool keys: the file's values in every source's copy, defaults
 * when the group is left out, and off in a single-group file. */
static void
test_pool_values(void **state)
{
	struct tor_config *cfgs, cfg;
	tor_err err = { "" };
	size_t n;

	(void)state;
	if (tor_config_load_sources(DIR "sources_pool.cfg", &cfgs, &n,
	    &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++) {
		assert_true(cfgs[i].pool.enabled);
		assert_string_equal(cfgs[i].pool.name, "orders.eu-1");
		assert_int_equal(cfgs[i].pool.max_leading, 5);
		assert_int_equal(cfgs[i].pool.settle_ms, 0);
		assert_int_equal(cfgs[i].pool.beat_ms, 100);
	}
	/* Each copy owns its name: freed one by one. */
	assert_ptr_not_equal(cfgs[0].pool.name, cfgs[1].pool.name);
	tor_config_free_sources(cfgs, n);

	if (tor_config_load_sources(DIR "sources_pair.cfg", &cfgs, &n,
	    &err) != 0)
		fail_msg("%s", err.msg);
	for (size_t i = 0; i < n; i++) {
		assert_true(cfgs[i].pool.enabled);
		assert_string_equal(cfgs[i].pool.name, "default");
		assert_int_equal(cfgs[i].pool.max_leading, 64);
		assert_int_equal(cfgs[i].pool.settle_ms, 10000);
		assert_int_equal(cfgs[i].pool.beat_ms, 1000);
	}
	tor_config_free_sources(cfgs, n);

	load_ok(&cfg, DIR "minimal.cfg");
	assert_false(cfg.pool.enabled);
	assert_string_equal(cfg.pool.name, "default");
	assert_int_equal(cfg.pool.max_leading, 64);
	assert_int_equal(cfg.pool.settle_ms, 10000);
	assert_int_equal(cfg.pool.beat_ms, 1000);
	tor_config_free(&cfg);
}

static void
test_missing_file(void **state)
{
	struct tor_config cfg;
	tor_err err;

	(void)state;
	assert_int_equal(tor_config_load(&cfg, DIR "nope.cfg", &err), -1);
	assert_string_equal(err.msg, DIR "nope.cfg: cannot open: No such file "
	    "or directory");
}

struct bad_case {
	const char *file;
	const char *msg;        /* after "tests/unit/config/<file>:" */
};

static const struct bad_case bad_cases[] = {
	{ "bad_sources_dup_group.cfg",
	    "13: sources[1].group: \"a\" is the group of "
	    "sources[0] already" },
	{ "bad_sources_no_mysql.cfg",
	    "4: sources[0].mysql: required" },
	{ "bad_sources_no_outbox.cfg",
	    "4: sources[0].outbox: required" },
	{ "bad_sources_unknown_key.cfg",
	    "18: sources[1].log: unknown key" },
	{ "bad_sources_top_mysql.cfg",
	    "1: mysql: not at the top level beside "
	    "sources: every source names its own" },
	{ "bad_sources_unknown_top.cfg",
	    "3: outbx: unknown key" },
	{ "bad_sources_unknown_nested.cfg",
	    "18: kafka.linger: unknown key (source \"b\")" },
	{ "bad_sources_override_value.cfg",
	    "18: kafka.mode: expected idempotent "
	    "or transactional, got \"exactly-once\" (source \"b\")" },
	{ "bad_sources_default_value.cfg",
	    "2: kafka.partitioner: expected "
	    "murmur2, fnv1a or crc32, got \"random\" (source \"a\")" },
	{ "bad_sources_same_txn_id.cfg",
	    " sources: groups \"a\" and \"b\" have "
	    "the same kafka.transactional_id \"tor-pool\": give each its own, or "
	    "none (\"tor-<group>\")" },
	{ "bad_sources_same_server_id.cfg", " sources: groups \"a\" and "
	    "\"b\" read db:3306 with the same mysql.server_id 7: give each its "
	    "own, or none (derived)" },
	{ "bad_sources_empty.cfg",
	    "3: sources: no sources: give at least one" },
	/* The pool is the process's: its errors name no source. */
	{ "bad_pool_single.cfg", "10: pool: only in a file with sources: a "
	    "single-group file runs no pool" },
	{ "bad_sources_pool_name.cfg", "4: pool.name: expected letters, "
	    "digits, '.', '_' or '-', got \"orders:eu\"" },
	{ "bad_sources_pool_empty_name.cfg", "3: pool.name: expected "
	    "letters, digits, '.', '_' or '-', got \"\"" },
	{ "bad_sources_pool_max_leading.cfg",
	    "4: pool.max_leading: must be positive, got 0" },
	{ "bad_sources_pool_settle.cfg",
	    "5: pool.settle_ms: must not be negative, got -1" },
	{ "bad_sources_pool_beat.cfg",
	    "3: pool.beat_ms: must be between 100 and 86400000, got 99" },
	{ "bad_sources_pool_unknown.cfg", "4: pool.nmae: unknown key" },
	{ "bad_sources_pool_type.cfg", "3: pool: expected a group { ... }" },
	{ "bad_sources_pool_in_source.cfg",
	    "14: sources[1].pool: unknown key" },
	{ "bad_unknown_top.cfg", "10: mysqll: unknown key" },
	{ "bad_unknown_nested.cfg", "4: mysql.hots: unknown key" },
	{ "bad_unknown_in_table.cfg",
	    "5: outbox.tables[0].colums: unknown key" },
	{ "bad_type.cfg", "2: mysql.port: expected an integer" },
	{ "bad_port.cfg",
	    "11: redis.port: must be between 1 and 65535, got 70000" },
	{ "bad_tls_mode.cfg", "4: mysql.tls.mode: expected disabled, "
	    "preferred, required or verify, got \"strict\"" },
	{ "bad_kafka_mode.cfg", "8: kafka.mode: expected idempotent or "
	    "transactional, got \"exactly-once\"" },
	{ "bad_unrouted.cfg", "7: outbox.unrouted: expected fail, skip or "
	    "\"dlq:<topic>\", got \"drop\"" },
	{ "bad_table_no_schema.cfg", "4: outbox.tables[0].table: expected "
	    "\"schema.table\", got \"outbox\"" },
	{ "bad_missing_payload.cfg",
	    "5: outbox.tables[0].columns.payload: required" },
	{ "bad_reserved_header.cfg", "6: outbox.tables[0].headers[0].header: "
	    "\"tor.id\" is reserved (tor sets the tor.* headers itself)" },
	{ "bad_regex.cfg", "8: outbox.routes[1].match: \"(unclosed\" does not "
	    "compile: Unmatched ( or \\(" },
	{ "bad_no_routes.cfg", "3: outbox.routes: no routes and no "
	    "outbox.topic_template: give at least one" },
	{ "bad_template.cfg", "6: outbox.topic_template: must contain "
	    "${aggregate_type}, got \"ev.${type}\"" },
	{ "bad_property_idempotence.cfg", "11: kafka.properties[1]: "
	    "enable.idempotence cannot be overridden: tor always runs the "
	    "idempotent producer (no duplicates or reordering on retry)" },
	{ "bad_property_no_eq.cfg", "10: kafka.properties[0]: expected "
	    "\"name=value\", got \"linger.ms\"" },
	{ "bad_property_secret_no_eq.cfg", "10: kafka.properties[0]: "
	    "expected \"name=value\", got \"sasl.password********\"" },
	{ "bad_property_secret_blank.cfg", "10: kafka.properties[1]: "
	    "expected \"name=value\" without blanks in the name, got "
	    "\"SSL.Key.Password********\"" },
	{ "bad_start.cfg", "4: mysql.start: expected \"end\", \"beginning\", "
	    "\"<file>:<pos>\" (pos >= 4) or a MariaDB GTID list "
	    "\"D-S-N[,D-S-N...]\", got \"0-1\"" },
	{ "bad_stall_short.cfg", "12: ha.stall_ms: must be 0 (never yield) "
	    "or at least ha.lease_ms (3000), got 2000: a shorter stall is a "
	    "hiccup the lease rides out" },
	{ "bad_stall_heartbeat.cfg", "11: ha.stall_ms: must be 0 (never "
	    "yield) or above 3 mysql.heartbeat_ms (6000 ms), got 6000: a quiet "
	    "binlog stream is told from a cut one only after three missed "
	    "heartbeats" },
	{ "bad_stall_negative.cfg",
	    "11: ha.stall_ms: must not be negative, got -1" },
	{ "bad_renew.cfg",
	    "12: ha.renew_ms: must be less than ha.lease_ms (1000 >= 1000)" },
	{ "bad_renew_margin.cfg", "12: ha.renew_ms: must be below ha.lease_ms "
	    "less its drift margin (3000 - 300 = 2700 ms), got 2800: the lease "
	    "would lapse between renews" },
	{ "bad_redis_timeout_lease.cfg", "10: redis.timeout_ms: must be at "
	    "most 2/7 of ha.lease_ms less its drift margin (2000 - 200 = 1800 "
	    "ms, so at most 514), got 600: an acquire's reply, the replica "
	    "check and the WAIT for a replica, then the first renew's reply, "
	    "each up to redis.timeout_ms, would not fit in the lease" },
	{ "bad_lease_for_redis_timeout.cfg", "11: redis.timeout_ms: must be "
	    "at most 2/7 of ha.lease_ms less its drift margin (1500 - 150 = "
	    "1350 ms, so at most 385), got 500: an acquire's reply, the "
	    "replica check and the WAIT for a replica, then the first renew's "
	    "reply, each up to redis.timeout_ms, would not fit in the lease" },
	{ "bad_missing_mysql_host.cfg", "2: mysql.host: required" },
	{ "bad_missing_brokers.cfg", "8: kafka.brokers: required" },
	{ "bad_missing_redis_host.cfg", "9: redis.host: required (unless "
	    "redis.sentinel.nodes or redis.cluster.nodes are given)" },
	{ "bad_cluster_sentinel.cfg", "11: redis.cluster: not with "
	    "redis.sentinel: a cluster fails its masters over by itself (give "
	    "one or the other)" },
	{ "bad_cluster_host.cfg", "10: redis.host: not with "
	    "redis.cluster.nodes (tor finds the node that serves the group's "
	    "slot from those nodes)" },
	{ "bad_cluster_db.cfg", "10: redis.db: must be 0 with redis.cluster (a "
	    "cluster has database 0 only), got 2" },
	{ "bad_cluster_node.cfg", "10: redis.cluster.nodes[1]: expected "
	    "\"host:port\", got \"10.0.0.7\"" },
	{ "bad_cluster_unknown.cfg",
	    "10: redis.cluster.max_redirects: unknown key" },
	{ "bad_no_tables.cfg",
	    "3: outbox.tables: required (at least one table)" },
	{ "bad_password_file.cfg", "4: mysql.password_file: cannot read "
	    "tests/unit/config/no-such.secret: No such file or directory" },
	{ "bad_key_length.cfg", "11: checkpoint.key_file: "
	    "tests/unit/config/short.key holds 16 bytes; expected exactly 32 "
	    "raw bytes or 64 hex characters" },
	{ "bad_syntax.cfg", "3: syntax error" },
	{ "bad_duplicate.cfg", "4: syntax error: duplicate setting name" },
	{ "bad_log_level.cfg", "10: log.level: expected debug, info, warn or "
	    "error, got \"verbose\"" },
	{ "bad_http_listen.cfg", "11: http.listen: expected \"host:port\" or "
	    "\"\" (off), got \"9187\"" },
	{ "bad_server_id.cfg", "4: mysql.server_id: must be between 0 and "
	    "4294967295, got 4294967296" },
	{ "bad_sentinel_node.cfg", "11: redis.sentinel.nodes[1]: expected "
	    "\"host:port\", got \"10.0.0.6\"" },
	{ "bad_partitions.cfg",
	    "10: kafka.topics[0].partitions: must be positive, got 0" },
	{ "bad_bool.cfg", "6: outbox.routes[0].icase: expected true or false" },
	/* One key of every section, each check of src/config.c once. */
	{ "bad_group.cfg", "2: group: expected letters, digits, '.', '_' or "
	    "'-', got \"orders/eu\"" },
	{ "bad_instance.cfg",
	    "2: instance: must not contain blanks, got \"replica 1\"" },
	{ "bad_mysql_user.cfg", "2: mysql.user: must not be empty" },
	{ "bad_heartbeat.cfg",
	    "4: mysql.heartbeat_ms: must be positive, got 0" },
	{ "bad_connect_timeout.cfg",
	    "2: mysql.connect_timeout_ms: expected an integer" },
	{ "bad_tls_cert_no_key.cfg", "4: mysql.tls.cert: needs mysql.tls.key" },
	{ "bad_tls_ca_missing.cfg", "6: mysql.tls.ca: cannot read "
	    "tests/unit/config/no-such-ca.pem: No such file or directory" },
	{ "bad_redis_user_no_password.cfg", "9: redis.user: needs a password "
	    "(redis.password, redis.password_file or TOR_REDIS_PASSWORD)" },
	{ "bad_sentinel_user_no_password.cfg", "10: redis.sentinel.user: "
	    "needs a password (redis.sentinel.password, "
	    "redis.sentinel.password_file or TOR_SENTINEL_PASSWORD)" },
	{ "bad_server_public_key.cfg", "4: mysql.server_public_key: cannot "
	    "read tests/unit/config/no-such-key.pem: No such file or "
	    "directory" },
	{ "bad_route_mode.cfg", "7: outbox.route: expected first or all, got "
	    "\"every\"" },
	{ "bad_tables_type.cfg",
	    "4: outbox.tables: expected a list ( { ... }, ... )" },
	{ "bad_route_topic.cfg", "6: outbox.routes[0].topic: \"order events\" "
	    "is not a valid Kafka topic name (1 to 249 letters, digits, '.', "
	    "'_' or '-')" },
	{ "bad_regex_range.cfg", "6: outbox.routes[0].match: \"^[z-a]\" does "
	    "not compile: Invalid range end" },
	{ "bad_template_chars.cfg", "6: outbox.topic_template: "
	    "\"ev/${aggregate_type}\": besides ${aggregate_type}, a topic name "
	    "has only letters, digits, '.', '_' or '-'" },
	{ "bad_dlq_topic.cfg", "7: outbox.unrouted: expected fail, skip or "
	    "\"dlq:<topic>\", got \"dlq:dead letters\"" },
	{ "bad_table_twice.cfg",
	    "6: outbox.tables[1]: shop.outbox is listed twice" },
	{ "bad_header_twice.cfg", "7: outbox.tables[0].headers[1]: header "
	    "\"ID\" is mapped twice" },
	{ "bad_brokers_type.cfg", "8: kafka.brokers: expected a string" },
	{ "bad_checkpoint_topic.cfg", "10: kafka.checkpoint_topic: \"..\" is "
	    "not a valid Kafka topic name (1 to 249 letters, digits, '.', '_' "
	    "or '-')" },
	{ "bad_property_acks.cfg", "10: kafka.properties[0]: acks cannot be "
	    "overridden: the idempotent producer needs acks=all" },
	{ "bad_property_bootstrap.cfg", "11: kafka.properties[2]: "
	    "bootstrap.servers cannot be overridden: set kafka.brokers "
	    "instead" },
	{ "bad_replication.cfg", "10: kafka.topics[0].replication: must be "
	    "between 1 and 32767, got 40000" },
	{ "bad_topic_twice.cfg",
	    "11: kafka.topics[1]: topic \"order\" is listed twice" },
	{ "bad_redis_db.cfg", "9: redis.db: must not be negative, got -1" },
	{ "bad_redis_prefix.cfg", "11: redis.prefix: must not be empty nor "
	    "hold braces or blanks, got \"tor{x}\"" },
	{ "bad_redis_timeout.cfg",
	    "9: redis.timeout_ms: must be positive, got 0" },
	{ "bad_sentinel_no_master.cfg", "10: redis.sentinel.master: required "
	    "when redis.sentinel.nodes are given" },
	{ "bad_ha_retry.cfg", "11: ha.retry_ms: must be positive, got -5" },
	{ "bad_ha_lease_type.cfg", "10: ha.lease_ms: expected an integer" },
	{ "bad_checkpoint_interval.cfg",
	    "11: checkpoint.interval_ms: must not be negative, got -1" },
	{ "bad_checkpoint_unknown.cfg",
	    "11: checkpoint.interval: unknown key" },
	{ "bad_key_file_missing.cfg", "11: checkpoint.key_file: cannot read "
	    "tests/unit/config/no-such.key: No such file or directory" },
	{ "bad_http_listen_type.cfg", "10: http.listen: expected a string" },
	{ "bad_log_format.cfg",
	    "10: log.format: expected logfmt or json, got \"text\"" },
	{ "bad_section_type.cfg", "10: ha: expected a group { ... }" },
	{ "bad_heartbeat_overflow.cfg", "5: mysql.heartbeat_ms: must be at "
	    "most 86400000 (a day), got 2147483647" },
	{ "bad_retention_check.cfg", "4: mysql.retention_check_ms: must be 0 "
	    "(off) or at least 1000, got 500" },
	{ "bad_retention_warn_bytes.cfg", "3: mysql.retention_warn_bytes: must "
	    "be between 0 and 9223372036854775807, got -1" },
	{ "bad_retention_warn_ms.cfg",
	    "3: mysql.retention_warn_ms: expected an integer" },
	{ "bad_connect_timeout_overflow.cfg", "4: mysql.connect_timeout_ms: "
	    "must be at most 86400000 (a day), got 2147483000" },
	{ "bad_retry_overflow.cfg", "11: ha.retry_ms: must be at most "
	    "86400000 (a day), got 1800000000" },
	{ "bad_redis_timeout_overflow.cfg", "11: redis.timeout_ms: must be at "
	    "most 86400000 (a day), got 2147483647" },
	{ "bad_renew_room.cfg", "17: ha.renew_ms: 1000 + redis.timeout_ms 2000 "
	    "must stay below ha.lease_ms less its drift margin (3000 - 300 = "
	    "2700 ms): a renew answered as late as redis.timeout_ms allows "
	    "would come after the leader's own deadline" },
	{ "bad_renew_room_timeout.cfg", "12: ha.renew_ms: 1000 + "
	    "redis.timeout_ms 1700 must stay below ha.lease_ms less its drift "
	    "margin (3000 - 300 = 2700 ms): a renew answered as late as "
	    "redis.timeout_ms allows would come after the leader's own "
	    "deadline" },
	{ "bad_redis_tls_ca_missing.cfg", "12: redis.tls.ca_file: cannot read "
	    "tests/unit/config/no-such-ca.pem: No such file or directory" },
	{ "bad_redis_tls_ca_not_pem.cfg", "12: redis.tls.ca_file: cannot load "
	    "CA certificates from tests/unit/config/short.key: no certificate "
	    "or crl found" },
	{ "bad_redis_tls_cert_no_key.cfg",
	    "12: redis.tls.cert_file: needs redis.tls.key_file" },
	{ "bad_redis_tls_key_mismatch.cfg", "13: redis.tls.key_file: "
	    "tests/unit/config/tls-other.key does not match cert_file "
	    "tests/unit/config/tls-client.pem" },
	{ "bad_redis_tls_unknown.cfg", "12: redis.tls.ca: unknown key" },
	{ "bad_sentinel_tls_key_mismatch.cfg", "13: "
	    "redis.sentinel.tls.key_file: tests/unit/config/tls-other.key does "
	    "not match cert_file tests/unit/config/tls-client.pem" },
};

/* redis.tls and redis.sentinel.tls: the values as written, the defaults
 * where left out, and no TLS at all by default. */
static void
test_redis_tls_values(void **state)
{
	struct tor_config cfg;

	(void)state;
	load_ok(&cfg, DIR "redis_tls.cfg");
	assert_true(cfg.redis.tls.enabled);
	assert_string_equal(cfg.redis.tls.ca_file, DIR "tls-client.pem");
	assert_string_equal(cfg.redis.tls.cert_file, DIR "tls-client.pem");
	assert_string_equal(cfg.redis.tls.key_file, DIR "tls-client.key");
	assert_string_equal(cfg.redis.tls.server_name, "redis.example");
	assert_false(cfg.redis.tls.verify);
	assert_true(cfg.redis.sentinel.tls.enabled);
	assert_string_equal(cfg.redis.sentinel.tls.ca_file, "");
	assert_string_equal(cfg.redis.sentinel.tls.cert_file, "");
	assert_string_equal(cfg.redis.sentinel.tls.server_name, "");
	assert_true(cfg.redis.sentinel.tls.verify);
	tor_config_free(&cfg);

	load_ok(&cfg, DIR "minimal.cfg");
	assert_false(cfg.redis.tls.enabled);
	assert_true(cfg.redis.tls.verify);
	assert_false(cfg.redis.sentinel.tls.enabled);
	tor_config_free(&cfg);

	/* Off: its files are not looked at (a missing CA is no error). */
	load_ok(&cfg, DIR "redis_tls_off.cfg");
	assert_false(cfg.redis.tls.enabled);
	assert_string_equal(cfg.redis.tls.ca_file, DIR "no-such-ca.pem");
	tor_config_free(&cfg);
}

static void
test_bad_file(void **state)
{
	const struct bad_case *c = *state;
	struct tor_config cfg;
	char path[256], want[600];
	tor_err err = { "" };

	clean_env(NULL);
	snprintf(path, sizeof(path), DIR "%s", c->file);
	snprintf(want, sizeof(want), "%s:%s", path, c->msg);
	memset(&cfg, 0x5a, sizeof(cfg));
	assert_int_equal(tor_config_load(&cfg, path, &err), -1);
	assert_string_equal(err.msg, want);
	/* Nothing is left to free; ASan's leak check holds us to it. */
	assert_null(cfg.group);
	assert_null(cfg.outbox.tables);
}

int
main(void)
{
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test_setup(test_sample, clean_env),
		cmocka_unit_test_setup(test_minimal_defaults, clean_env),
		cmocka_unit_test_setup(test_instance_without_hostname_env,
		    clean_env),
		cmocka_unit_test_setup(test_server_id_derived, clean_env),
		cmocka_unit_test_setup(test_server_id_max, clean_env),
		cmocka_unit_test_setup(test_integer_name_at_line_end,
		    clean_env),
		cmocka_unit_test_setup(test_integer_literal_is_the_settings_own,
		    clean_env),
		cmocka_unit_test_setup(test_secret_precedence, clean_env),
		cmocka_unit_test_setup(test_checkpoint_key, clean_env),
		cmocka_unit_test_setup(test_print_masks_secrets, clean_env),
		cmocka_unit_test_setup(test_print_masks_secret_properties,
		    clean_env),
		cmocka_unit_test_setup(test_print_masks_a_long_secret_name,
		    clean_env),
		cmocka_unit_test_setup(test_print_reloads, clean_env),
		cmocka_unit_test_setup(test_free_wipes_secrets, clean_env),
		cmocka_unit_test_setup(test_secret_file_modes, clean_env),
		cmocka_unit_test_setup(test_inline_secret_in_a_loose_file,
		    clean_env),
		cmocka_unit_test_setup(test_kafka_properties_file, clean_env),
		cmocka_unit_test_setup(test_kafka_properties_file_errors,
		    clean_env),
		cmocka_unit_test(test_redis_cluster),
		cmocka_unit_test_setup(test_not_in_effect_transactional,
		    clean_env),
		cmocka_unit_test_setup(test_start_values, clean_env),
		cmocka_unit_test_setup(test_listen_values, clean_env),
		cmocka_unit_test_setup(test_missing_file, clean_env),
		cmocka_unit_test_setup(test_pool_values, clean_env),
		cmocka_unit_test_setup(test_sources_merge, clean_env),
		cmocka_unit_test_setup(test_sources_one_is_a_file_of_today,
		    clean_env),
		cmocka_unit_test_setup(
		    test_sources_several_refused_by_the_replica, clean_env),
		cmocka_unit_test_setup(test_redis_tls_values, clean_env),
	};
	enum {
		N_FIXED = sizeof(fixed) / sizeof(fixed[0]),
		N_BAD = sizeof(bad_cases) / sizeof(bad_cases[0]),
	};
	struct CMUnitTest tests[N_FIXED + N_BAD];

	memcpy(tests, fixed, sizeof(fixed));
	/* One test per bad file, named after it, so TAP shows which. */
	for (size_t i = 0; i < N_BAD; i++) {
		tests[N_FIXED + i] = (struct CMUnitTest)
		    cmocka_unit_test_prestate(test_bad_file,
		    (void *)&bad_cases[i]);
		tests[N_FIXED + i].name = bad_cases[i].file;
	}
	return _cmocka_run_group_tests("config", tests, N_FIXED + N_BAD, NULL,
	    NULL);
}
