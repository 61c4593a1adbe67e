/*
 * tor's command line: run a replica, or check a configuration.
 *
 * Exit codes are part of the contract (DESIGN.md §7): 0 for a clean stop, 2
 * for a configuration error, 1 for a fatal runtime error.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tor/config.h"
#include "tor/log.h"
#include "tor/relay.h"

#define TOR_VERSION "0.1.0"

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
	/* No SA_RESTART: a blocking read returns so the loop sees the stop. */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: tor -c FILE                 run one replica\n"
	    "       tor --check-config -c FILE  validate FILE and print the "
	    "effective config\n"
	    "       tor --version\n");
}

int
main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'k' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct tor_config cfg;
	const char *path = NULL;
	bool check_only = false;
	tor_err err;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "c:h", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 'k':
			check_only = true;
			break;
		case 'V':
			printf("tor %s\n", TOR_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (path == NULL || optind != argc) {
		usage(stderr);
		return 2;
	}
	if (tor_config_load(&cfg, path, &err) < 0) {
		fprintf(stderr, "tor: %s\n", err.msg);
		return 2;
	}
	if (check_only) {
		tor_config_print(&cfg, stdout);
		for (const char *const *n = tor_config_not_in_effect(&cfg);
		    *n != NULL; n++)
			printf("# not yet in effect: %s\n", *n);
		tor_config_free(&cfg);
		return 0;
	}

	tor_log_setup(cfg.log.level, cfg.log.format, cfg.instance);
	install_signals();
	log_info("main", "tor %s starting: group %s, server_id %u%s", TOR_VERSION,
	    cfg.group, cfg.mysql.server_id,
	    cfg.mysql.server_id_derived ? " (derived)" : "");
	for (const char *const *n = tor_config_not_in_effect(&cfg); *n != NULL;
	    n++)
		log_warn("config", "not yet in effect: %s", *n);

	rc = tor_relay_run(&cfg, &stop_requested, &err);
	if (rc < 0)
		log_error("main", "fatal: %s", err.msg);
	else
		log_info("main", "stopped");
	tor_config_free(&cfg);
	return rc < 0 ? 1 : 0;
}
