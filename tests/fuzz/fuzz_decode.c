/*
 * libFuzzer target for `tor decode`'s file reader: the input is a binlog
 * file (magic, then events as their headers frame them), read through the
 * relay's reader and outbox mapping into JSON lines that go to /dev/null.
 * The configuration names the outbox of the fixture binlogs (fx.outbox);
 * the seeds (tests/fuzz/corpus/fuzz_decode) are those files.
 */
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tor/config.h"
#include "tor/decode.h"
#include "tor/log.h"

static struct tor_config cfg;
static struct tor_outbox_table table;
static struct tor_route route;
static FILE *sink;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	tor_log_setup(TOR_LOG_ERROR, TOR_LOG_LOGFMT, "fuzz");
	cfg.path = (char *)"fuzz_decode.cfg";
	cfg.group = (char *)"fz";
	table = (struct tor_outbox_table){
		.schema = (char *)"fx", .table = (char *)"outbox",
		.col_id = (char *)"id", .col_key = (char *)"aggregate_id",
		.col_type = (char *)"aggregate_type",
		.col_payload = (char *)"payload", .line = 1,
	};
	cfg.outbox.tables = &table;
	cfg.outbox.n_tables = 1;
	route.match = (char *)"^order$";
	route.topic = (char *)"order";
	if (regcomp(&route.re, route.match, REG_EXTENDED | REG_NOSUB) != 0)
		abort();
	cfg.outbox.routes = &route;
	cfg.outbox.n_routes = 1;
	cfg.outbox.topic_template = (char *)"";
	cfg.outbox.unrouted = TOR_UNROUTED_SKIP;
	if ((sink = fopen("/dev/null", "w")) == NULL)
		abort();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A copy of its own, so that ASan sees a read past it. */
	uint8_t *copy = malloc(size + 1);

	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	(void)tor_decode_buffer(&cfg, "fuzz-bin.000001", copy, size,
	    data[0 < size ? size - 1 : 0] & 1, sink, sink);
	free(copy);
	return 0;
}
