/*
 * tor's command line: run a replica, check a configuration, or answer an
 * operator's question about the group (status, checkpoint).
 *
 * Exit codes are part of the contract (DESIGN.md §7): 0 for a clean stop, 2
 * for a configuration error, 1 for a fatal runtime error.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "tor/cli.h"
#include "tor/config.h"
#include "tor/decode.h"
#include "tor/log.h"
#include "tor/pool.h"
#include "tor/relay.h"
#include "tor/version.h"

static volatile sig_atomic_t stop_requested;

static void
on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void
install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: a blocking wait returns so the loop sees the stop. */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/*
 * No core dump while passwords and the checkpoint key sit in memory.
 * RLIMIT_CORE 0 stops a core file, but not a core_pattern pipe (systemd-
 * coredump, apport); a process that is not dumpable leaves no core at all,
 * and no other process of its user may attach to it or read its memory,
 * environment or descriptors under /proc (root still may).  The sanitized
 * test build stays dumpable: LeakSanitizer's check at exit attaches to the
 * process's threads, and so does gdb.
 */
static void
forbid_core_dumps(void)
{
	const struct rlimit none = { 0, 0 };

	setrlimit(RLIMIT_CORE, &none);
#ifndef TOR_TEST_HOOKS
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
#endif
}

enum command {
	CMD_RUN,
	CMD_CHECK_CONFIG,
	CMD_STATUS,
	CMD_CHECKPOINT_SHOW,
	CMD_CHECKPOINT_SET,
	CMD_CHECKPOINT_IMPORT,
	CMD_DECODE,
	CMD_CHECKPOINT,         /* `tor checkpoint --help` only */
};

/* One warning where cmd's user sees it: in a replica's log, as a comment
 * of --check-config's output, else on stderr (stdout holds the answer). */
static void
warn(enum command cmd, const char *component, const char *text)
{
	if (cmd == CMD_RUN)
		log_warn(component, "%s", text);
	else if (cmd == CMD_CHECK_CONFIG)
		printf("# warning: %s\n", text);
	else
		fprintf(stderr, "tor: warning: %s\n", text);
}

/* The test hooks (TOR_TEST_*) are compiled into the sanitized test build
 * only; elsewhere their variables do nothing, and each set one says so. */
static void
warn_ignored_test_hooks(enum command cmd)
{
#ifndef TOR_TEST_HOOKS
	char text[160];

	for (char **e = environ; *e != NULL; e++)
		if (strncmp(*e, "TOR_TEST_", 9) == 0) {
			snprintf(text, sizeof(text), "%.*s is set, but this build "
			    "has no test hooks: ignored",
			    (int)strcspn(*e, "="), *e);
			warn(cmd, "main", text);
		}
#else
	(void)cmd;
#endif
}

/* What the config loader found questionable, and an ignored test hook. */
static void
warn_all(enum command cmd, const struct tor_config *cfg)
{
	for (size_t i = 0; i < cfg->n_warnings; i++)
		warn(cmd, "config", cfg->warnings[i]);
	warn_ignored_test_hooks(cmd);
}

/*
 * What --help prints: `tor --help` every command's synopsis and purpose;
 * `tor <command> --help` (and a mistake in its options) that command's
 * synopsis, its options and what its exit codes mean.
 */
static const struct {
	enum command cmd;
	const char *synopsis;
	const char *what;
	const char *details;
} helps[] = {
	/* Their options and exit codes are in usage_all's last lines. */
	{ CMD_RUN, "tor -c FILE", "run one replica", NULL },
	{ CMD_CHECK_CONFIG, "tor --check-config -c FILE",
	    "validate FILE, print the effective config", NULL },
	{ CMD_STATUS, "tor status -c FILE [--group NAME] [--json]",
	    "each group's leader and checkpoint",
	    "  -c, --config FILE  the configuration of the group's replicas\n"
	    "  --group NAME       only that source's group (default: every "
	    "group of FILE)\n"
	    "  --json             one JSON object instead of key: value lines\n"
	    "exit 0 when a leader holds every group's lease, 1 when one has "
	    "none, 2 when Redis cannot be asked\n" },
	{ CMD_CHECKPOINT_SHOW, "tor checkpoint show -c FILE [--group NAME] "
	    "[--json]",
	    "the group's checkpoint",
	    "  -c, --config FILE  the configuration of the group's replicas\n"
	    "  --group NAME       the source whose group to act on, in a file "
	    "of several\n"
	    "  --json             one JSON object instead of key: value lines\n"
	    "exit 0 when there is a checkpoint, 1 when there is none, 2 when "
	    "it is invalid or Redis cannot be asked\n" },
	{ CMD_CHECKPOINT_SET, "tor checkpoint set --to POS -c FILE "
	    "[--group NAME]",
	    "move it: <file>:<pos>, a GTID list, or end",
	    "  -c, --config FILE  the configuration of the group's replicas\n"
	    "  --group NAME       the source whose group to act on, in a file "
	    "of several\n"
	    "  --to POS           <file>:<pos>, a GTID list D-S-N[,D-S-N...], "
	    "a MySQL GTID set <uuid>:1-N[,...], or end\n"
	    "exit 0 when moved, 1 when the position is refused, 2 when Redis "
	    "or MySQL cannot be asked\n" },
	{ CMD_CHECKPOINT_IMPORT, "tor checkpoint import --go-tor-key KEY "
	    "[--redis-host HOST [--redis-port N] [--redis-db N]] -c FILE "
	    "[--group NAME]",
	    "take over the Go tor's position",
	    "  -c, --config FILE  the configuration of the group's replicas\n"
	    "  --group NAME       the source whose group to act on, in a file "
	    "of several\n"
	    "  --go-tor-key KEY   the Redis key the Go tor kept its position "
	    "in\n"
	    "  --redis-host HOST  the Go tor's Redis, when not tor's own\n"
	    "  --redis-port N     its port (default 6379)\n"
	    "  --redis-db N       its database (default 0)\n"
	    "exit 0 when moved, 1 when the key holds no usable position, 2 "
	    "when Redis or MySQL cannot be asked\n" },
	{ CMD_DECODE, "tor decode -c FILE [--group NAME] [--all-events] "
	    "BINLOG...",
	    "what tor would publish from binlog files",
	    "  -c, --config FILE  the configuration (its outbox and routes)\n"
	    "  --group NAME       the source whose group to act on, in a file "
	    "of several\n"
	    "  --all-events       also one line for every event of the files\n"
	    "exit 0 when every file was read to its end, 1 after a halt or "
	    "at a file that cannot be read as a binlog\n" },
};

static bool
is_checkpoint(enum command cmd)
{
	return cmd == CMD_CHECKPOINT_SHOW || cmd == CMD_CHECKPOINT_SET ||
	    cmd == CMD_CHECKPOINT_IMPORT;
}

/* Every command's synopsis; a long one has its purpose on the next line. */
static void
usage_all(FILE *out)
{
	for (size_t i = 0; i < sizeof(helps) / sizeof(helps[0]); i++) {
		const char *lead = i == 0 ? "usage: " : "       ";
		int n = (int)strlen(helps[i].synopsis);

		if (n < 33)
			fprintf(out, "%s%-33s%s\n", lead, helps[i].synopsis,
			    helps[i].what);
		else
			fprintf(out, "%s%s\n%40s%s\n", lead, helps[i].synopsis,
			    "", helps[i].what);
	}
	fprintf(out,
	    "       tor --version                    print the version\n"
	    "       tor [COMMAND] --help             this text, or a "
	    "command's options\n"
	    "-c FILE is short for --config FILE.  A replica exits 0 after "
	    "SIGTERM or SIGINT,\n1 on a fatal error; every command exits 2 on "
	    "a usage or configuration error.\n");
}

/* cmd's usage; the whole of it for a replica or --check-config, all three
 * for `tor checkpoint`. */
static void
usage(FILE *out, enum command cmd)
{
	bool first = true;

	if (cmd == CMD_RUN || cmd == CMD_CHECK_CONFIG) {
		usage_all(out);
		return;
	}
	for (size_t i = 0; i < sizeof(helps) / sizeof(helps[0]); i++) {
		if (helps[i].cmd != cmd && !(cmd == CMD_CHECKPOINT &&
		    is_checkpoint(helps[i].cmd)))
			continue;
		fprintf(out, "%s%s\n  %s\n%s", first ? "usage: " : "\n",
		    helps[i].synopsis, helps[i].what, helps[i].details);
		first = false;
	}
	fputs("exit 2 also on a usage or configuration error\n", out);
}

/* The words before the options: "status", "checkpoint show|set|import",
 * "decode". */
static int
parse_command(int argc, char **argv, enum command *cmd, int *used)
{
	*cmd = CMD_RUN;
	*used = 0;
	if (argc < 2 || argv[1][0] == '-')
		return 0;
	if (strcmp(argv[1], "status") == 0) {
		*cmd = CMD_STATUS;
		*used = 1;
		return 0;
	}
	if (strcmp(argv[1], "decode") == 0) {
		*cmd = CMD_DECODE;
		*used = 1;
		return 0;
	}
	if (strcmp(argv[1], "checkpoint") == 0 && argc >= 3 &&
	    (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
		*cmd = CMD_CHECKPOINT;
		*used = 1;
		return 0;
	}
	if (strcmp(argv[1], "checkpoint") == 0 && argc >= 3) {
		*used = 2;
		if (strcmp(argv[2], "show") == 0) {
			*cmd = CMD_CHECKPOINT_SHOW;
			return 0;
		}
		if (strcmp(argv[2], "set") == 0) {
			*cmd = CMD_CHECKPOINT_SET;
			return 0;
		}
		if (strcmp(argv[2], "import") == 0) {
			*cmd = CMD_CHECKPOINT_IMPORT;
			return 0;
		}
	}
	fprintf(stderr, "tor: unknown command '%s'\n", argv[1]);
	return -1;
}

/* A decimal option value in [min, max]. */
static int
parse_number(const char *s, int min, int max, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return -1;
	*out = (int)v;
	return 0;
}

static void
warn_unverified(const struct tor_redis_tls *tls, const char *path)
{
	if (tls->enabled && !tls->verify)
		log_warn("config", "%s.verify = false: the server's certificate "
		    "and name are not checked, so anyone on the path can pose "
		    "as it and read what tor sends (the password, the lease, "
		    "the checkpoint)", path);
}

static int
run_replica(struct tor_config *cfg)
{
	tor_err err;
	int rc;

	tor_log_setup(cfg->log.level, cfg->log.format, cfg->instance);
	install_signals();
	warn_all(CMD_RUN, cfg);
	log_info("main", "tor %s starting: group %s, server_id %u%s",
	    TOR_VERSION, cfg->group, cfg->mysql.server_id,
	    cfg->mysql.server_id_derived ? " (derived)" : "");
	for (const char *const *n = tor_config_not_in_effect(cfg); *n != NULL;
	    n++)
		log_warn("config", "not yet in effect: %s", *n);
	warn_unverified(&cfg->redis.tls, "redis.tls");
	warn_unverified(&cfg->redis.sentinel.tls, "redis.sentinel.tls");
	rc = tor_relay_run(cfg, &stop_requested, &err);
	if (rc < 0)
		log_error("main", "fatal: %s", err.msg);
	else
		log_info("main", "stopped");
	return rc < 0 ? 1 : 0;
}

/* The source a command acts on: the one --group names, or the only one; a
 * command other than status and --check-config on a file of several needs
 * --group.  NULL after saying why. */
static const struct tor_config *
pick_group(const struct tor_config *cfgs, size_t n, const char *group,
    enum command cmd, const char *path)
{
	if (group != NULL) {
		for (size_t i = 0; i < n; i++)
			if (strcmp(cfgs[i].group, group) == 0)
				return &cfgs[i];
		fprintf(stderr, "tor: %s: no source has group \"%s\" (", path,
		    group);
		for (size_t i = 0; i < n; i++)
			fprintf(stderr, "%s%s", i > 0 ? ", " : "", cfgs[i].group);
		fprintf(stderr, ")\n");
		return NULL;
	}
	if (n > 1 && cmd != CMD_STATUS && cmd != CMD_CHECK_CONFIG) {
		fprintf(stderr, "tor: %s has %zu sources: name the group with "
		    "--group (", path, n);
		for (size_t i = 0; i < n; i++)
			fprintf(stderr, "%s%s", i > 0 ? ", " : "", cfgs[i].group);
		fprintf(stderr, ")\n");
		return NULL;
	}
	return &cfgs[0];
}

/* A replica of several groups (the `sources` form). */
static int
run_pool(struct tor_config *cfgs, size_t n)
{
	tor_err err;
	int rc;

	tor_log_setup(cfgs[0].log.level, cfgs[0].log.format, cfgs[0].instance);
	install_signals();
	log_info("main", "tor %s starting: %zu groups", TOR_VERSION, n);
	for (size_t i = 0; i < n; i++) {
		const struct tor_config *cfg = &cfgs[i];

		warn_all(CMD_RUN, cfg);
		log_info("main", "group %s: server_id %u%s", cfg->group,
		    cfg->mysql.server_id, cfg->mysql.server_id_derived ?
		    " (derived)" : "");
		for (const char *const *w = tor_config_not_in_effect(cfg);
		    *w != NULL; w++)
			log_warn("config", "group %s: not yet in effect: %s",
			    cfg->group, *w);
		warn_unverified(&cfg->redis.tls, "redis.tls");
		warn_unverified(&cfg->redis.sentinel.tls, "redis.sentinel.tls");
	}
	rc = tor_pool_run(cfgs, n, &stop_requested, &err);
	if (rc < 0)
		log_error("main", "fatal: %s", err.msg);
	else
		log_info("main", "stopped");
	return rc < 0 ? 1 : 0;
}

int
main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'k' },
		{ "to", required_argument, NULL, 't' },
		{ "all-events", no_argument, NULL, 'a' },
		{ "json", no_argument, NULL, 'j' },
		{ "group", required_argument, NULL, 'G' },
		{ "go-tor-key", required_argument, NULL, 'g' },
		{ "redis-host", required_argument, NULL, 'H' },
		{ "redis-port", required_argument, NULL, 'P' },
		{ "redis-db", required_argument, NULL, 'D' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct tor_config *cfgs;
	const struct tor_config *cfg;
	size_t n, nall;
	struct tor_go_tor_source go = { .port = 6379 };
	const char *path = NULL, *to = NULL, *group = NULL;
	bool all_events = false, json = false, go_redis_opts = false;
	bool check_config = false;
	enum command cmd;
	tor_err err;
	int opt, rc, used;

	forbid_core_dumps();
	if (parse_command(argc, argv, &cmd, &used) < 0) {
		usage_all(stderr);
		return 2;
	}
	argc -= used;
	argv += used;
	while ((opt = getopt_long(argc, argv, "c:h", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 'k':
			check_config = true;
			break;
		case 't':
			to = optarg;
			break;
		case 'a':
			all_events = true;
			break;
		case 'j':
			json = true;
			break;
		case 'G':
			group = optarg;
			break;
		case 'g':
			go.key = optarg;
			break;
		case 'H':
			go.host = optarg;
			break;
		case 'P':
		case 'D':
			if (parse_number(optarg, opt == 'P' ? 1 : 0,
			    opt == 'P' ? 65535 : 1000000, opt == 'P' ? &go.port :
			    &go.db) < 0) {
				fprintf(stderr, "tor: --redis-%s: expected a "
				    "number, got '%s'\n", opt == 'P' ? "port" :
				    "db", optarg);
				return 2;
			}
			go_redis_opts = true;
			break;
		case 'V':
			printf("tor %s\n", TOR_VERSION);
			return 0;
		case 'h':
			usage(stdout, cmd);
			return 0;
		default:
			usage(stderr, cmd);
			return 2;
		}
	}
	if (check_config && cmd == CMD_RUN)
		cmd = CMD_CHECK_CONFIG;
	if (path == NULL || cmd == CMD_CHECKPOINT ||
	    (check_config && cmd != CMD_CHECK_CONFIG) || (cmd == CMD_DECODE) != (optind < argc) ||
	    (cmd == CMD_CHECKPOINT_SET) != (to != NULL) ||
	    (all_events && cmd != CMD_DECODE) ||
	    (json && cmd != CMD_STATUS && cmd != CMD_CHECKPOINT_SHOW) ||
	    (cmd == CMD_CHECKPOINT_IMPORT) != (go.key != NULL) ||
	    ((go.host != NULL || go_redis_opts) &&
	    cmd != CMD_CHECKPOINT_IMPORT) ||
	    (go_redis_opts && go.host == NULL) ||
	    (group != NULL && (cmd == CMD_RUN || cmd == CMD_CHECK_CONFIG))) {
		usage(stderr, cmd);
		return 2;
	}
	if (cmd == CMD_RUN) {
		if (tor_config_load_sources(path, &cfgs, &n, &err) < 0) {
			fprintf(stderr, "tor: %s\n", err.msg);
			return 2;
		}
		rc = n == 1 ? run_replica(&cfgs[0]) : run_pool(cfgs, n);
		tor_config_free_sources(cfgs, n);
		return rc;
	}
	if (tor_config_load_sources(path, &cfgs, &n, &err) < 0) {
		fprintf(stderr, "tor: %s\n", err.msg);
		return 2;
	}
	nall = n;
	if ((cfg = pick_group(cfgs, n, group, cmd, path)) == NULL) {
		tor_config_free_sources(cfgs, n);
		return 2;
	}
	if (group != NULL || cmd != CMD_STATUS)
		n = 1;
	for (size_t i = 0; i < n; i++)
		warn_all(cmd, &cfg[i]);
	switch (cmd) {
	case CMD_CHECK_CONFIG:
		for (size_t i = 0; i < nall; i++) {
			if (nall > 1)
				printf("%s# source %zu: group %s\n", i > 0 ?
				    "\n" : "", i, cfgs[i].group);
			tor_config_print(&cfgs[i], stdout);
			for (const char *const *w = tor_config_not_in_effect(
			    &cfgs[i]); *w != NULL; w++)
				printf("# not yet in effect: %s\n", *w);
		}
		rc = 0;
		break;
	case CMD_STATUS:
		rc = tor_cli_status(cfg, n, json, stdout);
		break;
	case CMD_CHECKPOINT_SHOW:
		rc = tor_cli_checkpoint_show(cfg, json, stdout);
		break;
	case CMD_CHECKPOINT_SET:
		rc = tor_cli_checkpoint_set(cfg, to, stdout);
		break;
	case CMD_CHECKPOINT_IMPORT:
		rc = tor_cli_checkpoint_import(cfg, &go, stdout);
		break;
	default:
		/* Of the reader's log lines only warnings (an XA whose
		 * prepare is not in the files): stdout holds the JSON. */
		tor_log_setup(TOR_LOG_WARN, cfg->log.format, cfg->instance);
		rc = tor_decode_files(cfg, argv + optind, argc - optind,
		    all_events, stdout, stderr);
		break;
	}
	tor_config_free_sources(cfgs, nall);
	return rc;
}
