/*
 * The configuration: tor.cfg (libconfig syntax, DESIGN.md §6) parsed once into
 * a plain struct, validated completely, then read-only.
 *
 * Every key of §6 is known here from the start.  A key whose feature is not
 * built yet is still parsed and validated, and listed by
 * tor_config_not_in_effect() so that main can say so at start.  An unknown key,
 * a wrong type or a bad value is an error naming "file:line: key: problem".
 * Secrets come from the file, from `password_file` keys or from the TOR_*
 * environment variables; tor_config_print() masks them.
 */
#ifndef TOR_CONFIG_H
#define TOR_CONFIG_H

#include <regex.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "tor/err.h"
#include "tor/log.h"

enum tor_tls_mode {
	TOR_TLS_DISABLED,
	TOR_TLS_PREFERRED,
	TOR_TLS_REQUIRED,
	TOR_TLS_VERIFY,
};

enum tor_unrouted {
	TOR_UNROUTED_FAIL,      /* halt the relay (default) */
	TOR_UNROUTED_SKIP,      /* count and go on */
	TOR_UNROUTED_DLQ,       /* publish to outbox.dlq_topic */
};

/* outbox.route: which routes a row's aggregate type goes to. */
enum tor_route_mode {
	TOR_ROUTE_FIRST,        /* the first that matches (default) */
	TOR_ROUTE_ALL,          /* a copy to every one that matches */
};

enum tor_kafka_mode {
	TOR_KAFKA_IDEMPOTENT,
	TOR_KAFKA_TRANSACTIONAL,
};

/* Which producer family's key hash picks a message's partition. */
enum tor_partitioner {
	TOR_PARTITIONER_MURMUR2,        /* the Java producer's */
	TOR_PARTITIONER_FNV1A,          /* Sarama's (the Go tor) */
	TOR_PARTITIONER_CRC32,          /* librdkafka's "consistent" */
};

/* One `outbox.tables` entry.  Column names are as configured; `id` may be
 * NULL (no event-id column).  `line` is the entry's line in the file, for
 * errors found later (a column missing from the real table). */
struct tor_header_map {
	char *column;
	char *header;
};

struct tor_outbox_table {
	char *schema;           /* "shop" of "shop.outbox" */
	char *table;            /* "outbox" */
	char *col_id;           /* may be NULL */
	char *col_key;
	char *col_type;
	char *col_payload;
	char *col_timestamp;    /* the event's time; may be NULL */
	char *col_partition;    /* an integer column: the partition; may be NULL */
	struct tor_header_map *headers;
	size_t n_headers;
	int line;
};

/* One `outbox.routes` entry, its regex compiled (REG_EXTENDED|REG_NOSUB, plus
 * REG_ICASE when icase). */
struct tor_route {
	char *match;
	char *topic;
	bool icase;
	regex_t re;
	int line;
};

struct tor_topic_spec {
	char *name;
	int partitions;         /* default 1 */
	int replication;        /* default 1 */
};

/* One per secret file at most: the three password files, the checkpoint
 * key file, kafka.properties_file and tor.cfg holding a secret inline. */
#define TOR_CONFIG_WARNINGS 6

/* redis.tls and redis.sentinel.tls.  Files are "" when unset; the
 * loader has read each and checked that the key matches the certificate. */
struct tor_redis_tls {
	bool enabled;           /* false */
	char *ca_file;          /* "": the system's CAs */
	char *cert_file;        /* client certificate (mutual TLS), or "" */
	char *key_file;         /* its key; set exactly when cert_file is */
	char *server_name;      /* name to check and send (SNI); "": the host */
	bool verify;            /* true; false only with a warning at start */
};

/* The `pool` group (a file with `sources` only): per process, the same
 * in every source's copy.  In a single-group file it is off with its
 * defaults. */
struct tor_pool_config {
	bool enabled;           /* the file has `sources` */
	char *name;             /* "default"; the pool's Redis keys */
	int max_leading;        /* 64: groups led at most */
	int settle_ms;          /* 10000: hysteresis of the share */
	int beat_ms;            /* 1000: membership beat, >= 100 */
};

struct tor_config {
	char *path;             /* the file it came from */

	char *group;            /* default "default" */
	char *instance;         /* default $HOSTNAME, else "<hostname>-<pid>" */

	struct {
		char *host;     /* required */
		int port;       /* 3306 */
		char *user;     /* "tor" */
		char *password; /* resolved secret: env > password_file > inline */
		char *password_file;
		uint32_t server_id;     /* resolved: derived from group+instance when 0 */
		bool server_id_derived;
		char *start;    /* "end" | "beginning" | "<file>:<pos>" | GTID set */
		int heartbeat_ms;       /* 1000 */
		int connect_timeout_ms; /* 5000 */
		/* The leader's binlog retention check (src/retention.c):
		 * its period (0: off) and the headroom in bytes (0: off) and
		 * the time until the checkpoint's file may be purged (0:
		 * off) below which it warns. */
		int retention_check_ms;         /* 30000 */
		int64_t retention_warn_bytes;   /* 0 */
		int retention_warn_ms;          /* 3600000 */
		/* PEM file of the server's RSA key, for caching_sha2_password
		 * and sha256_password without TLS; "" asks the server. */
		char *server_public_key;
		struct {
			enum tor_tls_mode mode; /* preferred */
			char *ca, *cert, *key;  /* "" when unset */
		} tls;
	} mysql;

	struct {
		struct tor_outbox_table *tables;        /* at least one */
		size_t n_tables;
		struct tor_route *routes;
		size_t n_routes;
		enum tor_route_mode route;
		char *topic_template;   /* "" when unset; contains ${aggregate_type} */
		enum tor_unrouted unrouted;
		char *dlq_topic;        /* set when unrouted is TOR_UNROUTED_DLQ */
	} outbox;

	struct {
		char *brokers;  /* required */
		enum tor_kafka_mode mode;
		enum tor_partitioner partitioner;       /* murmur2 */
		int unreachable_ms;     /* 10000: /readyz 503 past it */
		char *transactional_id; /* resolved: "tor-<group>" when "" */
		char *checkpoint_topic; /* "__tor_checkpoints" */
		struct tor_topic_spec *topics;
		size_t n_topics;
		/* "name=value" strings, passed to librdkafka in order:
		 * kafka.properties, then properties_file's lines, then
		 * "sasl.password=" TOR_KAFKA_SASL_PASSWORD (the last wins). */
		char **properties;
		size_t n_properties;
		size_t n_inline_properties;     /* from kafka.properties */
		size_t n_file_properties;       /* from properties_file */
		char *properties_file;          /* "" when unset */
	} kafka;

	struct {
		char *host;     /* required unless sentinel or cluster nodes
				   are given */
		int port;       /* 6379 */
		int db;         /* 0 */
		char *user;     /* ACL user; "" (default) is "default" */
		char *password; /* resolved secret, "" when none */
		char *password_file;
		char *prefix;   /* "tor" */
		int timeout_ms; /* 500 */
		struct tor_redis_tls tls;       /* to the server (and a master
						   a Sentinel names) */
		struct {
			char *master;   /* "" when unused */
			char **nodes;   /* "host:port" */
			size_t n_nodes;
			/* Sentinel's own AUTH: an ACL user (or "" for the
			 * default one) and its resolved password ("": none). */
			char *user;
			char *password;
			char *password_file;
			struct tor_redis_tls tls;       /* to the Sentinels */
		} sentinel;
		/* Redis Cluster: where to start looking for the node that
		 * serves the group's slot ("host:port"); none: no cluster. */
		struct {
			char **nodes;
			size_t n_nodes;
		} cluster;
	} redis;

	struct {
		int lease_ms;   /* 3000 */
		int renew_ms;   /* 1000 */
		int retry_ms;   /* 200 */
		bool fast_failover;     /* true: take over a dead leader's lease */
		int stall_ms;   /* 10000; 0: a stalled leader never yields */
	} ha;

	struct {
		int interval_ms;        /* 1000 */
		char *key_file;         /* "" when unset */
		unsigned char key[32];  /* resolved: TOR_CHECKPOINT_KEY > key_file */
		bool has_key;
	} checkpoint;

	struct {
		char *listen;   /* "0.0.0.0:9187"; "" disables */
	} http;

	struct {
		enum tor_log_level level;       /* info */
		enum tor_log_format format;     /* logfmt */
	} log;

	struct tor_pool_config pool;

	/* Filled by tor_config_load: what tor_config_not_in_effect() returns. */
	const char *not_built[8];

	/* What tor_config_load found questionable but loaded (a secret file
	 * others may read), one line each, for the log and --check-config. */
	char warnings[TOR_CONFIG_WARNINGS][320];
	size_t n_warnings;
};

/* Parses and validates the file at path into cfg (which the caller zeroes or
 * not; it is overwritten).  A file whose `sources` names more than one
 * group is refused (tor_config_load_sources reads it).  On error, err reads "path:line: key: problem" (line
 * omitted where libconfig gives none) and cfg holds nothing to free.  Reads
 * the TOR_MYSQL_PASSWORD, TOR_REDIS_PASSWORD, TOR_SENTINEL_PASSWORD,
 * TOR_KAFKA_SASL_PASSWORD and TOR_CHECKPOINT_KEY environment variables and
 * the files named by *_file keys. */
int tor_config_load(struct tor_config *cfg, const char *path, tor_err *err);

/* The file at path as one config per group, in file order: one for a file
 * in today's form, one per entry of `sources` for a file that has it (each
 * entry laid over the top level's kafka, redis, ha and checkpoint, key by
 * key, then loaded and validated as a file of its own; errors then end in
 * ` (source "<group>")`).  Each config is complete and owns its strings.
 * Free with tor_config_free_sources.  Group names must be unique, and so
 * must an explicit transactional.id, and a server_id per MySQL server. */
int tor_config_load_sources(const char *path, struct tor_config **cfgs,
    size_t *n, tor_err *err);
void tor_config_free_sources(struct tor_config *cfgs, size_t n);

/* Prints the effective configuration (after defaults and derivations) in
 * libconfig syntax, secrets shown as "********" when set. */
void tor_config_print(const struct tor_config *cfg, FILE *out);

/* The keys that are set (or defaulted) to something whose feature this build
 * does not have yet, one human-readable note per entry, NULL-terminated; the
 * array and strings are static or owned by cfg. */
const char *const *tor_config_not_in_effect(const struct tor_config *cfg);

/* A kafka.properties entry as --check-config, logs and errors may show it.
 * The value of a property whose name holds "password", "secret", "jaas",
 * "key.pem" or "passphrase" in any case (sasl.password, ssl.key.password,
 * sasl.oauthbearer.client.secret, a Java client's sasl.jaas.config, the
 * private key ssl.key.pem, an assertion key's passphrase) is
 * masked: "sasl.password=********"; a malformed entry holding one of these
 * words is masked after it ("sasl.password********"), since any of it may
 * be the secret.  A name too long for buf is cut ("...=********").
 * Returns prop itself or buf. */
const char *tor_config_property_shown(const char *prop, char *buf,
    size_t cap);

/* The kafka.partitioner value that names how (as tor.cfg spells it). */
const char *tor_config_partitioner_name(enum tor_partitioner how);

void tor_config_free(struct tor_config *cfg);

/*
 * The leader's drift margin for a lease of lease_ms: max(lease_ms / 10, 20)
 * ms.  The lease expires on the Redis host's clock, the leader's deadline
 * is kept on its own: clock rates differ (NTP slews up to 0.05%), Redis may
 * expire a key a little early, and the relay checks its deadline a moment
 * before it acts on it.  A tenth of the lease covers the rates with a wide
 * margin; the 20 ms floor covers scheduling delays, which do not shrink
 * with short leases.  ha.renew_ms must stay below lease_ms less this.
 */
static inline int
tor_config_drift_ms(int lease_ms)
{
	return lease_ms / 10 > 20 ? lease_ms / 10 : 20;
}

#endif
