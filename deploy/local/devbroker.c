/*
 * tor-devbroker: a development Kafka "cluster" on librdkafka's mock cluster.
 *
 * No Kafka broker is packaged for our machines, so the local stack and the
 * integration tests run this instead: real Kafka protocol on real TCP ports
 * (random ones, printed at start), N brokers with ids 1..N, topics created up
 * front.  A unix stream socket takes one-line control commands so that tests
 * can take brokers down, add latency, move leaders and inject request errors
 * while tor is running.  See DESIGN.md §9 for what a test on it may claim.
 *
 *   tor-devbroker [--brokers N] [--topic NAME:PARTITIONS]...
 *                 [--bootstrap-file PATH] [--control PATH]
 *   tor-devbroker --ctl PATH <command words...>
 *
 * Control commands (one line in, one line out: "ok" or "error: <why>"):
 *   ping
 *   down <broker_id>            disconnect the broker, refuse new connections
 *   up <broker_id>              accept connections again
 *   rtt <broker_id> <ms>        delay every response of that broker
 *   error <ApiKey> <err> <count>
 *                               the next <count> requests of that ApiKey (on
 *                               any broker) fail with <err>
 *   broker-error <broker_id> <ApiKey> <err> <count>
 *                               the same, on one broker only
 *   clear <ApiKey>              drop pending injected errors of that ApiKey
 *   reset                       every broker up, no added rtt, and the
 *                               cluster-wide error stacks of all ApiKeys
 *                               cleared (a test runner's clean slate;
 *                               broker-error stacks and leaders stay)
 *   create <topic> <partitions> create a topic (replication min(N,3))
 *   leader <topic> <partition> <broker_id>
 *                               move a partition's leader
 *
 * The one idea: the mock cluster runs in librdkafka's own threads; this
 * program only keeps a producer handle alive (the cluster's owner) and turns
 * control lines into rd_kafka_mock_* calls from a single ppoll() loop, which
 * also receives SIGTERM/SIGINT without a race.
 *
 * Mock cluster facts (librdkafka 2.0.2) that matter to users of this broker:
 *  - Any Metadata request for an unknown topic auto-creates it with 4
 *    partitions (replication factor min(3, brokers)), so a consumer that
 *    subscribes to a typo'd topic silently gets an empty topic.
 *  - CreateTopics is not served by the mock cluster: admin clients time out.
 *    That is why the topics are created here at start, and why `create`
 *    exists; creating a topic that exists fails with TOPIC_ALREADY_EXISTS.
 *  - `down` closes the broker's connections and refuses new ones but does not
 *    move partition leaders: produce requests for partitions led by that
 *    broker wait (and are retried by the client) until `up`, or until the
 *    client's message.timeout.ms expires.  Use `leader` to move them.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_TOPICS  64
#define MAX_CLIENTS 16
#define MAX_BROKERS 64
#define LINE_MAX_LEN 1024
#define MAX_API_KEY 67          /* highest ApiKey `reset` clears */

struct topic_spec {
	const char *name;
	int partitions;
};

struct control_client {
	int fd;                 /* -1 when the slot is free */
	size_t len;             /* bytes buffered in line */
	char line[LINE_MAX_LEN];
};

/* The whole runtime of the broker: one of these, on main()'s stack. */
struct devbroker {
	int broker_cnt;
	struct topic_spec topics[MAX_TOPICS];
	int topic_cnt;
	const char *bootstrap_file;
	const char *control_path;

	rd_kafka_t *rk;                 /* owns the mock cluster */
	rd_kafka_mock_cluster_t *mcluster;
	rd_kafka_t *meta_rk;            /* a client of the cluster, for metadata */
	int listen_fd;
	struct control_client clients[MAX_CLIENTS];

	/* What `down` and `rtt` changed, so that `reset` undoes only that:
	 * each mock call is a round trip to the cluster's thread (~0.1 s). */
	unsigned char broker_down[MAX_BROKERS + 1];
	unsigned char broker_slow[MAX_BROKERS + 1];
};

static volatile sig_atomic_t stop_requested;

/* Kafka protocol ApiKeys by name, for `error` and `clear`. */
static const struct {
	const char *name;
	int16_t key;
} api_keys[] = {
	{ "Produce", 0 }, { "Fetch", 1 }, { "ListOffsets", 2 },
	{ "Offset", 2 }, { "Metadata", 3 }, { "LeaderAndIsr", 4 },
	{ "StopReplica", 5 }, { "UpdateMetadata", 6 },
	{ "ControlledShutdown", 7 }, { "OffsetCommit", 8 },
	{ "OffsetFetch", 9 }, { "FindCoordinator", 10 }, { "JoinGroup", 11 },
	{ "Heartbeat", 12 }, { "LeaveGroup", 13 }, { "SyncGroup", 14 },
	{ "DescribeGroups", 15 }, { "ListGroups", 16 },
	{ "SaslHandshake", 17 }, { "ApiVersion", 18 }, { "ApiVersions", 18 },
	{ "CreateTopics", 19 }, { "DeleteTopics", 20 },
	{ "DeleteRecords", 21 }, { "InitProducerId", 22 },
	{ "OffsetForLeaderEpoch", 23 }, { "AddPartitionsToTxn", 24 },
	{ "AddOffsetsToTxn", 25 }, { "EndTxn", 26 },
	{ "WriteTxnMarkers", 27 }, { "TxnOffsetCommit", 28 },
	{ "DescribeAcls", 29 }, { "CreateAcls", 30 }, { "DeleteAcls", 31 },
	{ "DescribeConfigs", 32 }, { "AlterConfigs", 33 },
	{ "SaslAuthenticate", 36 }, { "CreatePartitions", 37 },
	{ "DeleteGroups", 42 }, { "ElectLeaders", 43 },
	{ "IncrementalAlterConfigs", 44 }, { "OffsetDelete", 47 },
};

/* Error names accepted besides librdkafka's own (rd_kafka_get_err_descs). */
static const struct {
	const char *name;
	rd_kafka_resp_err_t err;
} err_aliases[] = {
	{ "NOT_LEADER_OR_FOLLOWER", RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION },
	{ "NONE", RD_KAFKA_RESP_ERR_NO_ERROR },
};

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: tor-devbroker [--brokers N] [--topic NAME:PARTITIONS]...\n"
	    "                     [--bootstrap-file PATH] [--control PATH]\n"
	    "       tor-devbroker --ctl PATH <command words...>\n");
}

/* Parses a whole decimal integer in [min, max]; 0 on success, -1 if not. */
static int
parse_int(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	if (s == NULL || *s == '\0')
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static int
parse_api_key(const char *s, int16_t *out)
{
	long v;
	size_t i;

	if (parse_int(s, 0, 32767, &v) == 0) {
		*out = (int16_t)v;
		return 0;
	}
	for (i = 0; i < sizeof(api_keys) / sizeof(api_keys[0]); i++) {
		if (strcasecmp(s, api_keys[i].name) == 0) {
			*out = api_keys[i].key;
			return 0;
		}
	}
	return -1;
}

/* Accepts a number, librdkafka's error name ("PRODUCER_FENCED"), with or
 * without the "RD_KAFKA_RESP_ERR_" prefix, or one of err_aliases. */
static int
parse_error_code(const char *s, rd_kafka_resp_err_t *out)
{
	const struct rd_kafka_err_desc *descs;
	size_t cnt, i;
	long v;

	if (parse_int(s, -32768, 32767, &v) == 0) {
		*out = (rd_kafka_resp_err_t)v;
		return 0;
	}
	if (strncasecmp(s, "RD_KAFKA_RESP_ERR_", 18) == 0)
		s += 18;
	for (i = 0; i < sizeof(err_aliases) / sizeof(err_aliases[0]); i++) {
		if (strcasecmp(s, err_aliases[i].name) == 0) {
			*out = err_aliases[i].err;
			return 0;
		}
	}
	rd_kafka_get_err_descs(&descs, &cnt);
	for (i = 0; i < cnt; i++) {
		if (descs[i].name != NULL && strcasecmp(s, descs[i].name) == 0) {
			*out = descs[i].code;
			return 0;
		}
	}
	return -1;
}

static int
parse_broker_id(const struct devbroker *db, const char *s, int32_t *out)
{
	long v;

	if (parse_int(s, 1, db->broker_cnt, &v) != 0)
		return -1;
	*out = (int32_t)v;
	return 0;
}

/* Formats a reply line; returns 0 so a command can end with it. */
static int
reply(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
reply(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return 0;
}

/* Formats the outcome of an rd_kafka_mock_* call as a reply line. */
static int
reply_err(char *buf, size_t size, rd_kafka_resp_err_t err)
{
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		return reply(buf, size, "ok");
	return reply(buf, size, "error: %s (%s)", rd_kafka_err2name(err),
	    rd_kafka_err2str(err));
}

/* The mock cluster's set_leader creates an unknown topic (with partition+1
 * partitions) instead of failing, which would hide a typo in a test.  So ask
 * the cluster's metadata first, through a client handle of our own
 * (all-topics metadata does not auto-create).  0 if the partition exists,
 * else -1 with the reply written. */
static int
check_partition_exists(struct devbroker *db, const char *topic,
    int32_t partition, char *out, size_t size)
{
	const struct rd_kafka_metadata *md;
	rd_kafka_resp_err_t err;
	int i, found = -1;

	err = rd_kafka_metadata(db->meta_rk, 1, NULL, &md, 5000);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		reply(out, size, "error: metadata: %s", rd_kafka_err2str(err));
		return -1;
	}
	for (i = 0; i < md->topic_cnt; i++) {
		if (strcmp(md->topics[i].topic, topic) == 0) {
			found = md->topics[i].partition_cnt;
			break;
		}
	}
	rd_kafka_metadata_destroy(md);
	if (found < 0) {
		reply(out, size, "error: unknown topic '%s'", topic);
		return -1;
	}
	if (partition >= found) {
		reply(out, size, "error: topic '%s' has %d partitions", topic,
		    found);
		return -1;
	}
	return 0;
}

/* Undoes down, rtt and error: the state a test should find at its start. */
static int
reset_cluster(struct devbroker *db, char *out, size_t size)
{
	rd_kafka_resp_err_t err;
	int32_t id;
	int16_t api;

	for (id = 1; id <= db->broker_cnt; id++) {
		if (db->broker_down[id]) {
			err = rd_kafka_mock_broker_set_up(db->mcluster, id);
			if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
				return reply_err(out, size, err);
			db->broker_down[id] = 0;
		}
		if (db->broker_slow[id]) {
			err = rd_kafka_mock_broker_set_rtt(db->mcluster, id, 0);
			if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
				return reply_err(out, size, err);
			db->broker_slow[id] = 0;
		}
	}
	for (api = 0; api <= MAX_API_KEY; api++)
		rd_kafka_mock_clear_request_errors(db->mcluster, api);
	return reply(out, size, "ok");
}

/* Pushes cnt copies of code onto the cluster-wide error stack of api. */
static int
push_errors(struct devbroker *db, int16_t api, rd_kafka_resp_err_t code,
    size_t cnt, char *out, size_t size)
{
	rd_kafka_resp_err_t *errs = calloc(cnt, sizeof(*errs));
	size_t i;

	if (errs == NULL)
		return reply(out, size, "error: out of memory");
	for (i = 0; i < cnt; i++)
		errs[i] = code;
	rd_kafka_mock_push_request_errors_array(db->mcluster, api, cnt, errs);
	free(errs);
	return reply(out, size, "ok");
}

static int
replication_factor(const struct devbroker *db)
{
	return db->broker_cnt < 3 ? db->broker_cnt : 3;
}

/* Runs one control command (already split into words) and writes the reply
 * line, without its newline, into out.  Always returns 0. */
static int
run_command(struct devbroker *db, int argc, char **argv, char *out,
    size_t size)
{
	const char *cmd = argc > 0 ? argv[0] : "";
	int32_t broker;
	int16_t api;
	rd_kafka_resp_err_t code;
	long n, part;

	if (strcmp(cmd, "ping") == 0 && argc == 1) {
		reply(out, size, "ok");
	} else if ((strcmp(cmd, "down") == 0 || strcmp(cmd, "up") == 0) &&
	    argc == 2) {
		if (parse_broker_id(db, argv[1], &broker) != 0)
			return reply(out, size, "error: broker id must be 1..%d",
			    db->broker_cnt);
		db->broker_down[broker] = cmd[0] == 'd';
		reply_err(out, size, cmd[0] == 'd'
		    ? rd_kafka_mock_broker_set_down(db->mcluster, broker)
		    : rd_kafka_mock_broker_set_up(db->mcluster, broker));
	} else if (strcmp(cmd, "rtt") == 0 && argc == 3) {
		if (parse_broker_id(db, argv[1], &broker) != 0)
			return reply(out, size, "error: broker id must be 1..%d",
			    db->broker_cnt);
		if (parse_int(argv[2], 0, 3600000, &n) != 0)
			return reply(out, size, "error: bad rtt ms '%s'", argv[2]);
		db->broker_slow[broker] = n != 0;
		reply_err(out, size,
		    rd_kafka_mock_broker_set_rtt(db->mcluster, broker, (int)n));
	} else if (strcmp(cmd, "error") == 0 && argc == 4) {
		if (parse_api_key(argv[1], &api) != 0)
			return reply(out, size, "error: unknown ApiKey '%s'", argv[1]);
		if (parse_error_code(argv[2], &code) != 0)
			return reply(out, size, "error: unknown error code '%s'",
			    argv[2]);
		if (parse_int(argv[3], 1, 100000, &n) != 0)
			return reply(out, size, "error: bad count '%s'", argv[3]);
		return push_errors(db, api, code, (size_t)n, out, size);
	} else if (strcmp(cmd, "broker-error") == 0 && argc == 5) {
		long i;

		if (parse_broker_id(db, argv[1], &broker) != 0)
			return reply(out, size, "error: broker id must be 1..%d",
			    db->broker_cnt);
		if (parse_api_key(argv[2], &api) != 0)
			return reply(out, size, "error: unknown ApiKey '%s'", argv[2]);
		if (parse_error_code(argv[3], &code) != 0)
			return reply(out, size, "error: unknown error code '%s'",
			    argv[3]);
		if (parse_int(argv[4], 1, 100000, &n) != 0)
			return reply(out, size, "error: bad count '%s'", argv[4]);
		/* The per-broker stack takes (error, rtt) pairs one at a time. */
		for (i = 0; i < n; i++) {
			rd_kafka_resp_err_t e =
			    rd_kafka_mock_broker_push_request_error_rtts(
				db->mcluster, broker, api, 1, code, (int32_t)0);
			if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
				return reply_err(out, size, e);
		}
		reply(out, size, "ok");
	} else if (strcmp(cmd, "clear") == 0 && argc == 2) {
		if (parse_api_key(argv[1], &api) != 0)
			return reply(out, size, "error: unknown ApiKey '%s'", argv[1]);
		rd_kafka_mock_clear_request_errors(db->mcluster, api);
		reply(out, size, "ok");
	} else if (strcmp(cmd, "reset") == 0 && argc == 1) {
		return reset_cluster(db, out, size);
	} else if (strcmp(cmd, "create") == 0 && argc == 3) {
		if (parse_int(argv[2], 1, 10000, &n) != 0)
			return reply(out, size, "error: bad partition count '%s'",
			    argv[2]);
		reply_err(out, size, rd_kafka_mock_topic_create(db->mcluster,
		    argv[1], (int)n, replication_factor(db)));
	} else if (strcmp(cmd, "leader") == 0 && argc == 4) {
		if (parse_int(argv[2], 0, 100000, &part) != 0)
			return reply(out, size, "error: bad partition '%s'", argv[2]);
		if (parse_broker_id(db, argv[3], &broker) != 0)
			return reply(out, size, "error: broker id must be 1..%d",
			    db->broker_cnt);
		if (check_partition_exists(db, argv[1], (int32_t)part, out,
		    size) != 0)
			return 0;
		reply_err(out, size, rd_kafka_mock_partition_set_leader(
		    db->mcluster, argv[1], (int32_t)part, broker));
	} else if (argc == 0) {
		reply(out, size, "error: empty command");
	} else {
		reply(out, size, "error: unknown command or wrong arguments: '%s'"
		    " (try ping, down, up, rtt, error, broker-error, clear,"
		    " reset, create, leader)", cmd);
	}
	return 0;
}

/* Splits line in place into at most max words separated by blanks. */
static int
split_words(char *line, char **words, int max)
{
	int n = 0;
	char *save = NULL, *w;

	for (w = strtok_r(line, " \t\r", &save); w != NULL && n < max;
	    w = strtok_r(NULL, " \t\r", &save))
		words[n++] = w;
	return n;
}

static void
client_close(struct control_client *c)
{
	close(c->fd);
	c->fd = -1;
	c->len = 0;
}

/* Writes all of buf or gives up on the client (it hung up). */
static int
write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, buf, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		buf += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Reads what a client sent and answers every complete line in it. */
static void
client_readable(struct devbroker *db, struct control_client *c)
{
	char *nl, *words[8], answer[LINE_MAX_LEN];
	ssize_t r;
	int n;

	r = read(c->fd, c->line + c->len, sizeof(c->line) - 1 - c->len);
	if (r < 0 && errno == EINTR)
		return;
	if (r <= 0) {
		client_close(c);
		return;
	}
	c->len += (size_t)r;
	c->line[c->len] = '\0';
	while ((nl = strchr(c->line, '\n')) != NULL) {
		size_t used = (size_t)(nl - c->line) + 1;

		*nl = '\0';
		n = split_words(c->line, words, 8);
		run_command(db, n, words, answer, sizeof(answer) - 1);
		strcat(answer, "\n");
		if (write_all(c->fd, answer, strlen(answer)) != 0) {
			client_close(c);
			return;
		}
		memmove(c->line, c->line + used, c->len - used);
		c->len -= used;
		c->line[c->len] = '\0';
	}
	if (c->len == sizeof(c->line) - 1) {
		static const char too_long[] = "error: line too long\n";

		(void)write_all(c->fd, too_long, sizeof(too_long) - 1);
		client_close(c);
	}
}

static void
accept_client(struct devbroker *db)
{
	int fd, i;

	fd = accept(db->listen_fd, NULL, NULL);
	if (fd < 0)
		return;
	for (i = 0; i < MAX_CLIENTS; i++) {
		if (db->clients[i].fd < 0) {
			db->clients[i].fd = fd;
			db->clients[i].len = 0;
			return;
		}
	}
	close(fd);      /* full: the client sees EOF and reports it */
}

static int
unix_address(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path)) {
		fprintf(stderr, "tor-devbroker: socket path too long (max %zu): "
		    "%s\n", sizeof(sa->sun_path) - 1, path);
		return -1;
	}
	strcpy(sa->sun_path, path);
	return 0;
}

static int
control_listen(const char *path)
{
	struct sockaddr_un sa;
	int fd;

	if (unix_address(path, &sa) != 0)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(stderr, "tor-devbroker: socket: %s\n", strerror(errno));
		return -1;
	}
	unlink(path);   /* a stale socket of a killed broker */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(fd, 16) != 0) {
		fprintf(stderr, "tor-devbroker: control socket %s: %s\n", path,
		    strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Writes the file through a temporary name and rename(2), so a reader that
 * waits for it never sees it half written. */
static int
write_bootstrap_file(const char *path, const char *bootstraps)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (f == NULL || fprintf(f, "%s\n", bootstraps) < 0 ||
	    fclose(f) != 0 || rename(tmp, path) != 0) {
		fprintf(stderr, "tor-devbroker: bootstrap file %s: %s\n", path,
		    strerror(errno));
		return -1;
	}
	return 0;
}

static int
parse_topic_spec(const char *arg, struct topic_spec *t)
{
	const char *colon = strrchr(arg, ':');
	char *name;
	long n;

	if (colon == NULL || colon == arg ||
	    parse_int(colon + 1, 1, 10000, &n) != 0) {
		fprintf(stderr, "tor-devbroker: --topic wants NAME:PARTITIONS, "
		    "got '%s'\n", arg);
		return -1;
	}
	name = strndup(arg, (size_t)(colon - arg));
	if (name == NULL)
		return -1;
	t->name = name;
	t->partitions = (int)n;
	return 0;
}

static int
parse_args(struct devbroker *db, int argc, char **argv)
{
	long n;
	int i;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			exit(0);
		}
		if (v == NULL) {
			fprintf(stderr, "tor-devbroker: %s: missing value\n", a);
			return -1;
		}
		i++;
		if (strcmp(a, "--brokers") == 0) {
			if (parse_int(v, 1, MAX_BROKERS, &n) != 0) {
				fprintf(stderr, "tor-devbroker: --brokers 1..%d\n",
				    MAX_BROKERS);
				return -1;
			}
			db->broker_cnt = (int)n;
		} else if (strcmp(a, "--topic") == 0) {
			if (db->topic_cnt == MAX_TOPICS) {
				fprintf(stderr, "tor-devbroker: too many topics\n");
				return -1;
			}
			if (parse_topic_spec(v, &db->topics[db->topic_cnt]) != 0)
				return -1;
			db->topic_cnt++;
		} else if (strcmp(a, "--bootstrap-file") == 0) {
			db->bootstrap_file = v;
		} else if (strcmp(a, "--control") == 0) {
			db->control_path = v;
		} else {
			fprintf(stderr, "tor-devbroker: unknown option %s\n", a);
			usage(stderr);
			return -1;
		}
	}
	return 0;
}

/* Client mode: sends one command line, prints the reply, 0 if "ok". */
static int
control_client_main(const char *path, int argc, char **argv)
{
	struct sockaddr_un sa;
	char line[LINE_MAX_LEN], answer[LINE_MAX_LEN];
	size_t len = 0, got = 0;
	int fd, i;

	if (argc == 0) {
		fprintf(stderr, "tor-devbroker --ctl: no command\n");
		return 2;
	}
	for (i = 0; i < argc; i++) {
		int w = snprintf(line + len, sizeof(line) - len, "%s%s",
		    i ? " " : "", argv[i]);
		if (w < 0 || (size_t)w >= sizeof(line) - len - 1) {
			fprintf(stderr, "tor-devbroker --ctl: command too long\n");
			return 2;
		}
		len += (size_t)w;
	}
	line[len++] = '\n';
	if (unix_address(path, &sa) != 0)
		return 1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		fprintf(stderr, "tor-devbroker --ctl: connect %s: %s\n", path,
		    strerror(errno));
		return 1;
	}
	if (write_all(fd, line, len) != 0) {
		fprintf(stderr, "tor-devbroker --ctl: write: %s\n",
		    strerror(errno));
		close(fd);
		return 1;
	}
	while (got < sizeof(answer) - 1) {
		ssize_t r = read(fd, answer + got, sizeof(answer) - 1 - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
		if (memchr(answer, '\n', got) != NULL)
			break;
	}
	close(fd);
	answer[got] = '\0';
	answer[strcspn(answer, "\n")] = '\0';
	if (got == 0) {
		fprintf(stderr, "tor-devbroker --ctl: no reply from %s\n", path);
		return 1;
	}
	printf("%s\n", answer);
	return strcmp(answer, "ok") == 0 ? 0 : 1;
}

static void
on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* Creates the owner handle and the cluster, and the configured topics. */
static int
cluster_start(struct devbroker *db)
{
	char errstr[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	int i;

	/* The owner handle never produces; keep it from chattering about
	 * having no bootstrap servers. */
	if (rd_kafka_conf_set(conf, "log_level", "3", errstr,
	    sizeof(errstr)) != RD_KAFKA_CONF_OK)
		fprintf(stderr, "tor-devbroker: %s\n", errstr);
	db->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (db->rk == NULL) {
		fprintf(stderr, "tor-devbroker: rd_kafka_new: %s\n", errstr);
		return -1;
	}
	db->mcluster = rd_kafka_mock_cluster_new(db->rk, db->broker_cnt);
	if (db->mcluster == NULL) {
		fprintf(stderr, "tor-devbroker: cannot create mock cluster\n");
		return -1;
	}
	conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "bootstrap.servers",
	    rd_kafka_mock_cluster_bootstraps(db->mcluster), errstr,
	    sizeof(errstr)) != RD_KAFKA_CONF_OK ||
	    (db->meta_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr,
	    sizeof(errstr))) == NULL) {
		fprintf(stderr, "tor-devbroker: metadata client: %s\n", errstr);
		return -1;
	}
	for (i = 0; i < db->topic_cnt; i++) {
		rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(db->mcluster,
		    db->topics[i].name, db->topics[i].partitions,
		    replication_factor(db));
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			fprintf(stderr, "tor-devbroker: topic %s: %s\n",
			    db->topics[i].name, rd_kafka_err2str(err));
			return -1;
		}
	}
	return 0;
}

static void
cluster_stop(struct devbroker *db)
{
	if (db->meta_rk != NULL)
		rd_kafka_destroy(db->meta_rk);
	db->meta_rk = NULL;
	if (db->mcluster != NULL)
		rd_kafka_mock_cluster_destroy(db->mcluster);
	if (db->rk != NULL)
		rd_kafka_destroy(db->rk);
	db->mcluster = NULL;
	db->rk = NULL;
}

/* Serves the control socket until SIGTERM/SIGINT.  The stop signals are
 * blocked except inside ppoll(), so a signal is never lost between the check
 * of stop_requested and the wait. */
static void
serve(struct devbroker *db, const sigset_t *waitmask)
{
	struct pollfd pfds[1 + MAX_CLIENTS];
	struct control_client *owners[1 + MAX_CLIENTS];
	struct timespec tick = { 0, 200 * 1000 * 1000 };

	while (!stop_requested) {
		nfds_t n = 0;
		int i;

		if (db->listen_fd >= 0) {
			pfds[n].fd = db->listen_fd;
			pfds[n].events = POLLIN;
			owners[n++] = NULL;
		}
		for (i = 0; i < MAX_CLIENTS; i++) {
			if (db->clients[i].fd < 0)
				continue;
			pfds[n].fd = db->clients[i].fd;
			pfds[n].events = POLLIN;
			owners[n++] = &db->clients[i];
		}
		rd_kafka_poll(db->rk, 0);
		rd_kafka_poll(db->meta_rk, 0);
		if (ppoll(pfds, n, &tick, waitmask) <= 0)
			continue;
		for (i = 0; i < (int)n; i++) {
			if (pfds[i].revents == 0)
				continue;
			if (owners[i] == NULL)
				accept_client(db);
			else
				client_readable(db, owners[i]);
		}
	}
}

int
main(int argc, char **argv)
{
	struct devbroker db;
	struct sigaction sa;
	sigset_t block, waitmask;
	int i, rc = 1;

	if (argc >= 2 && strcmp(argv[1], "--ctl") == 0) {
		if (argc < 3) {
			usage(stderr);
			return 2;
		}
		return control_client_main(argv[2], argc - 3, argv + 3);
	}

	memset(&db, 0, sizeof(db));
	db.broker_cnt = 3;
	db.listen_fd = -1;
	for (i = 0; i < MAX_CLIENTS; i++)
		db.clients[i].fd = -1;
	if (parse_args(&db, argc, argv) != 0)
		return 2;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	/* Blocked before librdkafka starts its threads, so they inherit the
	 * mask and the signals are delivered to this thread only. */
	pthread_sigmask(SIG_BLOCK, &block, &waitmask);
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGINT);

	if (cluster_start(&db) != 0)
		goto out;
	if (db.control_path != NULL &&
	    (db.listen_fd = control_listen(db.control_path)) < 0)
		goto out;
	if (db.bootstrap_file != NULL &&
	    write_bootstrap_file(db.bootstrap_file,
	    rd_kafka_mock_cluster_bootstraps(db.mcluster)) != 0)
		goto out;
	printf("bootstrap=%s\n", rd_kafka_mock_cluster_bootstraps(db.mcluster));
	fflush(stdout);

	serve(&db, &waitmask);
	rc = 0;
out:
	for (i = 0; i < MAX_CLIENTS; i++)
		if (db.clients[i].fd >= 0)
			client_close(&db.clients[i]);
	if (db.listen_fd >= 0) {
		close(db.listen_fd);
		unlink(db.control_path);
	}
	if (rc == 0 && db.bootstrap_file != NULL)
		unlink(db.bootstrap_file);
	cluster_stop(&db);
	for (i = 0; i < db.topic_cnt; i++)
		free((char *)db.topics[i].name);
	return rc;
}
