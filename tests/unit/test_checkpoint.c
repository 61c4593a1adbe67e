/*
 * Unit tests of ha/checkpoint.c and ha/redis.c: positions, the checkpoint's
 * hash encoding, load/store against a real Redis, the fences of the two
 * store scripts (the lease's value, and a token that never goes down), and
 * the checkpoint MAC (a known vector, and every way to tamper with a hash).
 *
 * The Redis-backed tests start their own redis-server on a free port and
 * stop it in the teardown (redis_server.h); none is left running.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tor/checkpoint.h"
#include "tor/lease.h"
#include "redis_server.h"

/* ---- positions ---- */

static void
parse_ok(const char *text, const char *file, uint64_t pos, const char *gtid)
{
	struct tor_position p;
	tor_err err = { "" };

	memset(&p, 0xa5, sizeof(p));
	if (tor_position_parse(text, &p, &err) != 0)
		fail_msg("'%s': %s", text, err.msg);
	assert_string_equal(p.file, file);
	assert_true(p.pos == pos);
	assert_string_equal(p.gtid, gtid);
}

static void
parse_bad(const char *text, const char *reason)
{
	struct tor_position p;
	tor_err err = { "" };
	char want[600];

	/* The message quotes at most 300 bytes of the text. */
	snprintf(want, sizeof(want), "bad position '%.300s': expected "
	    "<file>:<pos> or a GTID list like 0-1-42%s", text, reason);
	assert_int_equal(tor_position_parse(text, &p, &err), -1);
	assert_string_equal(err.msg, want);
}

static void
test_position_parse_file_pos(void **state)
{
	(void)state;
	parse_ok("mysql-bin.000003:1234", "mysql-bin.000003", 1234, "");
	parse_ok("b:4", "b", 4, "");
	parse_ok("mysql-bin.000001:18446744073709551615", "mysql-bin.000001",
	    UINT64_MAX, "");

	parse_bad("mysql-bin.000003:3", " (the position must be at least 4)");
	parse_bad("mysql-bin.000003:0", " (the position must be at least 4)");
	parse_bad("mysql-bin.000001:18446744073709551616", "");
	parse_bad(":1234", "");
	parse_bad("/var/lib/mysql/mysql-bin.000003:1234", "");
	parse_bad("mysql-bin.000003:", "");
	parse_bad("mysql-bin.000003:12x", "");
	parse_bad("mysql-bin.000003:-5", "");
	parse_bad("mysql-bin.000003: 5", "");
	parse_bad("mysql-bin.000003:+5", "");
	parse_bad("a:b:5", "");
	/* A MySQL GTID set is not a MariaDB GTID list. */
	parse_bad("3e11fa47-71ca-11e1-9e33-c80aa9429562:23",
	    " (MySQL GTIDs are not supported)");
	parse_bad("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5",
	    " (MySQL GTIDs are not supported)");
}

/* mysql.start and `tor checkpoint set` take a MySQL GTID set too: MySQL's
 * spelling in, the checkpoint's one form out, no file:pos; the other forms
 * as tor_position_parse reads them, with no set. */
static void
test_position_parse_set(void **state)
{
	static char set[TOR_GTID_SET_TEXT], huge[TOR_GTID_SET_TEXT + 64];
	struct tor_position p;
	tor_err err = { "" };

	(void)state;
	memset(&p, 0xa5, sizeof(p));
	assert_int_equal(tor_position_parse_set("4C4D4E4F-0000-1111-2222-"
	    "333344445555:9,\n 3e11fa47-71ca-11e1-9e33-c80aa9429562:7:1-5",
	    &p, set, &err), 0);
	assert_string_equal(set, "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7,"
	    "4c4d4e4f-0000-1111-2222-333344445555:9");
	assert_true(p.file[0] == '\0' && p.pos == 0 && p.gtid[0] == '\0');
	assert_int_equal(tor_position_parse_set("mysql-bin.000003:1234", &p,
	    set, &err), 0);
	assert_string_equal(set, "");
	assert_string_equal(p.file, "mysql-bin.000003");
	assert_int_equal(tor_position_parse_set("0-1-42", &p, set, &err), 0);
	assert_true(set[0] == '\0' && strcmp(p.gtid, "0-1-42") == 0);
	assert_int_equal(tor_position_parse_set("3e11fa47-71ca-11e1-9e33-"
	    "c80aa9429562:0", &p, set, &err), -1);
	assert_non_null(strstr(err.msg, "bad position '3e11fa47-71ca-11e1-"
	    "9e33-c80aa9429562:0': bad GTID set"));
	assert_int_equal(tor_position_parse_set("3e11fa47-71ca-11e1-9e33-"
	    "c80aa9429562:blue:1", &p, set, &err), -1);
	print_message("%s\n", err.msg);
	for (size_t i = 0, k = 0; k + 40 < sizeof(huge) - 1; i++)
		k += (size_t)sprintf(huge + k, "%s%08zx-0000-0000-0000-"
		    "000000000000:1", i == 0 ? "" : ",", i);
	assert_int_equal(tor_position_parse_set(huge, &p, set, &err), -1);
	assert_non_null(strstr(err.msg, "longer than a checkpoint holds "
	    "(8191)"));
	assert_int_equal(tor_position_parse_set("x:3", &p, set, &err), -1);
	assert_non_null(strstr(err.msg, "the position must be at least 4"));
}

static void
test_position_parse_gtid(void **state)
{
	char longlist[700];
	size_t at = 0;
	int i;

	(void)state;
	parse_ok("0-1-42", "", 0, "0-1-42");
	parse_ok("0-1-42,1-2-7", "", 0, "0-1-42,1-2-7");
	parse_ok("4294967295-4294967295-18446744073709551615", "", 0,
	    "4294967295-4294967295-18446744073709551615");

	parse_bad("0-1-42,0-2-43", " (two GTIDs for domain 0)");
	parse_bad("1-1-1,2-1-1,1-1-2", " (two GTIDs for domain 1)");
	parse_bad("", "");
	parse_bad("end", "");
	parse_bad("0-1", "");
	parse_bad("0-1-", "");
	parse_bad("0-1-42,", "");
	parse_bad(",0-1-42", "");
	parse_bad("0--1-42", "");
	parse_bad("0-1-42-5", "");
	parse_bad("0-1-42 ", "");
	parse_bad("0-1-x", "");
	parse_bad("4294967296-1-1", "");
	parse_bad("0-4294967296-1", "");
	parse_bad("0-1-18446744073709551616", "");

	for (i = 0; at < 600; i++)
		at += (size_t)snprintf(longlist + at, sizeof(longlist) - at,
		    "%s%d-1-1", i > 0 ? "," : "", i);
	parse_bad(longlist, " (too long)");
}

static void
test_position_format(void **state)
{
	struct tor_position p = { .file = "mysql-bin.000003", .pos = 1234,
	    .gtid = "0-1-42" };
	char buf[64];

	(void)state;
	assert_int_equal(tor_position_format(&p, buf, sizeof(buf)), 21);
	assert_string_equal(buf, "mysql-bin.000003:1234");
	/* snprintf semantics: the length it would have had. */
	assert_int_equal(tor_position_format(&p, buf, 5), 21);
	assert_string_equal(buf, "mysq");
	p.file[0] = '\0';
	assert_int_equal(tor_position_format(&p, buf, sizeof(buf)), 6);
	assert_string_equal(buf, "0-1-42");
}

static void
test_position_round_trip(void **state)
{
	const char *texts[] = { "mysql-bin.000003:1234", "0-1-42,1-2-7" };
	struct tor_position p, q;
	tor_err err;
	char buf[600];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		assert_int_equal(tor_position_parse(texts[i], &p, &err), 0);
		tor_position_format(&p, buf, sizeof(buf));
		assert_string_equal(buf, texts[i]);
		assert_int_equal(tor_position_parse(buf, &q, &err), 0);
		assert_memory_equal(&p, &q, sizeof(p));
	}
}

/* ---- encoding ---- */

/* A configuration without a checkpoint key: no mac written or checked. */
static const struct tor_config keyless = { .group = (char *)"orders" };

static void
test_encode_decode(void **state)
{
	struct tor_checkpoint cp = { .pos = { .file = "mysql-bin.000003",
	    .pos = 1234, .gtid = "0-1-42,1-2-7" }, .epoch = TOR_TOKEN_MAX,
	    .updated_ms = 1700000000123 }, back;
	const char *names[TOR_CHECKPOINT_FIELDS], *values[TOR_CHECKPOINT_FIELDS];
	char buf[TOR_CHECKPOINT_BUF];
	tor_err err = { "" };

	(void)state;
	assert_int_equal(tor_checkpoint_encode(&keyless, &cp, names, values, buf,
	    sizeof(buf)), 5);
	assert_string_equal(names[0], "file");
	assert_string_equal(values[0], "mysql-bin.000003");
	assert_string_equal(names[1], "pos");
	assert_string_equal(values[1], "1234");
	assert_string_equal(names[2], "gtid");
	assert_string_equal(values[2], "0-1-42,1-2-7");
	assert_string_equal(names[3], "epoch");
	assert_string_equal(values[3], TOR_TOKEN_MAX_TEXT);
	assert_string_equal(names[4], "updated_ms");
	assert_string_equal(values[4], "1700000000123");

	memset(&back, 0xa5, sizeof(back));
	assert_int_equal(tor_checkpoint_decode(&keyless, 5, names, values, &back,
	    &err), 0);
	assert_memory_equal(&back, &cp, sizeof(cp));

	/* A buffer too small for the values fails rather than truncating. */
	assert_int_equal(tor_checkpoint_encode(&keyless, &cp, names, values, buf,
	    40), -1);
}

/* A MySQL GTID set whose text fills a checkpoint's gtid_set exactly
 * (TOR_GTID_SET_TEXT - 1 characters): sids of one transaction each, the
 * last with a longer interval to make up the length. */
static void
widest_gtid_set(char out[TOR_GTID_SET_TEXT])
{
	size_t at = 0, want = TOR_GTID_SET_TEXT - 1;
	unsigned i;

	for (i = 0; at + 1 + 39 + 39 <= want; i++)
		at += (size_t)sprintf(out + at, "%s%08x-0000-0000-0000-"
		    "000000000000:1", i == 0 ? "" : ",", i);
	at += (size_t)sprintf(out + at, ",%08x-0000-0000-0000-000000000000:1-",
	    i);
	while (at < want)
		out[at++] = '9';
	out[at] = '\0';
}

static void
test_encode_largest(void **state)
{
	struct tor_checkpoint cp = { .epoch = UINT64_MAX, .updated_ms = INT64_MAX,
	    .pos = { .pos = UINT64_MAX } };
	struct tor_config cfg = { .group = (char *)"orders" };
	const char *names[TOR_CHECKPOINT_FIELDS], *values[TOR_CHECKPOINT_FIELDS];
	char buf[TOR_CHECKPOINT_BUF];

	(void)state;
	memset(cp.pos.file, 'f', sizeof(cp.pos.file) - 1);
	memset(cp.pos.gtid, 'g', sizeof(cp.pos.gtid) - 1);
	assert_int_equal(tor_checkpoint_encode(&keyless, &cp, names, values, buf,
	    sizeof(buf)), 5);
	/* The mac's 64 hex digits fit too. */
	cfg.checkpoint.has_key = true;
	assert_int_equal(tor_checkpoint_encode(&cfg, &cp, names, values, buf,
	    sizeof(buf)), 6);
	assert_int_equal(strlen(values[5]), 64);
	/* And every optional field at its widest. */
	memset(cp.done.file, 'd', sizeof(cp.done.file) - 1);
	cp.done.pos = UINT64_MAX;
	cp.rows = UINT32_MAX;
	cp.moved = UINT64_MAX;
	cp.server_id = UINT32_MAX;
	widest_gtid_set(cp.gtid_set);
	assert_int_equal(strlen(cp.gtid_set), TOR_GTID_SET_TEXT - 1);
	assert_int_equal(tor_checkpoint_encode(&cfg, &cp, names, values, buf,
	    sizeof(buf)), TOR_CHECKPOINT_FIELDS);
	assert_int_equal(strlen(values[TOR_CHECKPOINT_FIELDS - 1]), 64);
}

static void
decode_bad(size_t n, const char *const *names, const char *const *values,
    const char *want)
{
	struct tor_checkpoint cp;
	tor_err err = { "" };

	assert_int_equal(tor_checkpoint_decode(&keyless, n, names, values, &cp,
	    &err), -1);
	assert_string_equal(err.msg, want);
}

static void
test_decode_errors(void **state)
{
	const char *names[] = { "file", "pos", "gtid", "epoch", "updated_ms",
	    "mac" };
	const char *values[] = { "mysql-bin.000003", "1234", "", "7",
	    "1700000000123", "future" };
	const char *bad[6];
	struct tor_checkpoint cp;
	tor_err err = { "" };
	char longv[600];

	(void)state;
	/* Without a key, a mac is not looked at (nor is an unknown field). */
	assert_int_equal(tor_checkpoint_decode(&keyless, 6, names, values, &cp,
	    &err), 0);
	assert_string_equal(cp.pos.file, "mysql-bin.000003");
	assert_true(cp.pos.pos == 1234 && cp.epoch == 7 &&
	    cp.updated_ms == 1700000000123);

	/* Only file and pos are required; order does not matter. */
	assert_int_equal(tor_checkpoint_decode(&keyless, 2, names, values, &cp,
	    &err), 0);
	assert_true(cp.epoch == 0 && cp.updated_ms == 0);
	{
		const char *rn[] = { "pos", "gtid", "file" };
		const char *rv[] = { "0", "0-1-42", "" };

		assert_int_equal(tor_checkpoint_decode(&keyless, 3, rn, rv, &cp,
		    &err), 0);
		assert_string_equal(cp.pos.gtid, "0-1-42");
	}

	decode_bad(0, names, values, "checkpoint field 'file': missing");
	decode_bad(1, names + 1, values + 1, "checkpoint field 'file': missing");
	decode_bad(1, names, values, "checkpoint field 'pos': missing");
	decode_bad(3, names + 2, values + 2, "checkpoint field 'file': missing");

	memcpy(bad, values, sizeof(bad));
	bad[1] = "12x";
	decode_bad(5, names, bad, "checkpoint field 'pos': not a number "
	    "('12x')");
	bad[1] = "";
	decode_bad(5, names, bad, "checkpoint field 'pos': not a number ('')");
	bad[1] = "-1";
	decode_bad(5, names, bad, "checkpoint field 'pos': not a number ('-1')");
	bad[1] = "18446744073709551616";
	decode_bad(5, names, bad, "checkpoint field 'pos': not a number "
	    "('18446744073709551616')");

	memcpy(bad, values, sizeof(bad));
	bad[3] = "seven";
	decode_bad(5, names, bad, "checkpoint field 'epoch': not a number "
	    "('seven')");
	/* Past the largest token: no acquire could draw one after it. */
	bad[3] = "1000000000000000000";
	decode_bad(5, names, bad, "checkpoint field 'epoch': past the largest "
	    "token (999999999999999999) ('1000000000000000000')");

	memcpy(bad, values, sizeof(bad));
	bad[4] = "1.5";
	decode_bad(5, names, bad, "checkpoint field 'updated_ms': not a number "
	    "('1.5')");
	bad[4] = "9223372036854775808";
	decode_bad(5, names, bad, "checkpoint field 'updated_ms': not a number "
	    "('9223372036854775808')");

	memcpy(bad, values, sizeof(bad));
	bad[0] = "";
	decode_bad(5, names, bad, "checkpoint names no position (fields 'file' "
	    "and 'gtid' are both empty)");

	/* A GTID list the server could not parse (it would refuse every
	 * dump), or one with two positions for a domain. */
	memcpy(bad, values, sizeof(bad));
	bad[2] = "garbage";
	decode_bad(5, names, bad, "checkpoint field 'gtid': not a GTID list "
	    "('garbage')");
	bad[2] = "0-1-5,0-2-6";
	decode_bad(5, names, bad, "checkpoint field 'gtid': not a GTID list "
	    "('0-1-5,0-2-6')");
	bad[2] = "0-1-5,";
	decode_bad(5, names, bad, "checkpoint field 'gtid': not a GTID list "
	    "('0-1-5,')");

	memset(longv, 'x', sizeof(longv) - 1);
	longv[sizeof(longv) - 1] = '\0';
	memcpy(bad, values, sizeof(bad));
	bad[0] = longv;
	decode_bad(5, names, bad, "checkpoint field 'file': too long");
	memcpy(bad, values, sizeof(bad));
	bad[2] = longv;
	decode_bad(5, names, bad, "checkpoint field 'gtid': too long");
}

/* ---- the MAC ---- */

#define MAC_NO_FIELD "no mac field, but a checkpoint key is configured " \
	"(written by a replica without the key, or tampered with)"
#define MAC_BAD "mac does not verify (tampered with, or written with " \
	"another key)"

/* HMAC-SHA-256 with key 00 01 .. 1f over "tor-checkpoint-v1\n6:orders\n
 * 16:mysql-bin.000003\n4:1234\n12:0-1-42,1-2-7\n1:7\n13:1700000000123\n",
 * computed apart from tor with Python's hmac module. */
#define VECTOR_MAC \
	"47567122b4e59fc32c5b1b03c82ecbdab11637428e83e3252e3f56365a6f8767"

static void
set_test_key(struct tor_config *cfg, unsigned char first)
{
	unsigned i;

	for (i = 0; i < sizeof(cfg->checkpoint.key); i++)
		cfg->checkpoint.key[i] = (unsigned char)i;
	cfg->checkpoint.key[0] = first;
	cfg->checkpoint.has_key = true;
}

static void
decode_with(const struct tor_config *cfg, size_t n, const char *const *names,
    const char *const *values, const char *want)
{
	struct tor_checkpoint cp;
	tor_err err = { "" };

	assert_int_equal(tor_checkpoint_decode(cfg, n, names, values, &cp, &err),
	    -1);
	assert_string_equal(err.msg, want);
}

static void
test_mac_vector(void **state)
{
	struct tor_checkpoint cp = { .pos = { .file = "mysql-bin.000003",
	    .pos = 1234, .gtid = "0-1-42,1-2-7" }, .epoch = 7,
	    .updated_ms = 1700000000123 }, back;
	struct tor_config cfg = { .group = (char *)"orders" };
	const char *names[TOR_CHECKPOINT_FIELDS], *values[TOR_CHECKPOINT_FIELDS];
	const char *bad[TOR_CHECKPOINT_FIELDS];
	char buf[TOR_CHECKPOINT_BUF], hex[65];
	tor_err err = { "" };

	(void)state;
	set_test_key(&cfg, 0x00);
	assert_int_equal(tor_checkpoint_encode(&cfg, &cp, names, values, buf,
	    sizeof(buf)), 6);
	assert_string_equal(names[5], "mac");
	assert_string_equal(values[5], VECTOR_MAC);

	/* The known vector decodes, and so does the same hash in any order. */
	memset(&back, 0xa5, sizeof(back));
	assert_int_equal(tor_checkpoint_decode(&cfg, 6, names, values, &back,
	    &err), 0);
	assert_memory_equal(&back, &cp, sizeof(cp));
	{
		const char *rn[] = { "mac", "updated_ms", "epoch", "gtid",
		    "pos", "file" };
		const char *rv[] = { VECTOR_MAC, "1700000000123", "7",
		    "0-1-42,1-2-7", "1234", "mysql-bin.000003" };

		assert_int_equal(tor_checkpoint_decode(&cfg, 6, rn, rv, &back,
		    &err), 0);
		assert_memory_equal(&back, &cp, sizeof(cp));
	}

	/* The values alone fit in 51 bytes; the mac needs 65 more. */
	assert_int_equal(tor_checkpoint_encode(&cfg, &cp, names, values, buf,
	    51 + 64), -1);
	assert_int_equal(tor_checkpoint_encode(&cfg, &cp, names, values, buf,
	    51 + 65), 6);
	assert_string_equal(values[5], VECTOR_MAC);

	/* No mac, or one that is not a valid 32-byte hex string. */
	decode_with(&cfg, 5, names, values, MAC_NO_FIELD);
	memcpy(bad, values, sizeof(bad));
	memcpy(hex, VECTOR_MAC, sizeof(hex));
	hex[63] = hex[63] == '0' ? '1' : '0';
	bad[5] = hex;
	decode_with(&cfg, 6, names, bad, MAC_BAD);
	bad[5] = "";
	decode_with(&cfg, 6, names, bad, MAC_BAD);
	bad[5] = "4756";
	decode_with(&cfg, 6, names, bad, MAC_BAD);
	bad[5] = VECTOR_MAC "00";
	decode_with(&cfg, 6, names, bad, MAC_BAD);
	memcpy(hex, VECTOR_MAC, sizeof(hex));
	hex[0] = 'x';
	bad[5] = hex;
	decode_with(&cfg, 6, names, bad, MAC_BAD);

	/* Every field is covered: a changed value does not verify. */
	memcpy(bad, values, sizeof(bad));
	bad[0] = "mysql-bin.000004";
	decode_with(&cfg, 6, names, bad, MAC_BAD);
	memcpy(bad, values, sizeof(bad));
	bad[1] = "1235";
	decode_with(&cfg, 6, names, bad, MAC_BAD);
	memcpy(bad, values, sizeof(bad));
	bad[2] = "0-1-42";
	decode_with(&cfg, 6, names, bad, MAC_BAD);
	memcpy(bad, values, sizeof(bad));
	bad[3] = "8";
	decode_with(&cfg, 6, names, bad, MAC_BAD);
	memcpy(bad, values, sizeof(bad));
	bad[4] = "1700000000124";
	decode_with(&cfg, 6, names, bad, MAC_BAD);

	/* A field that does not parse is named before the mac is judged. */
	memcpy(bad, values, sizeof(bad));
	bad[1] = "12x";
	decode_with(&cfg, 6, names, bad, "checkpoint field 'pos': not a "
	    "number ('12x')");

	/* Another group's checkpoint, or another key, does not verify. */
	cfg.group = (char *)"payments";
	decode_with(&cfg, 6, names, values, MAC_BAD);
	cfg.group = (char *)"orders";
	set_test_key(&cfg, 0xff);
	decode_with(&cfg, 6, names, values, MAC_BAD);

	/* Without a key the mac is not looked at, right or wrong. */
	assert_int_equal(tor_checkpoint_encode(&keyless, &cp, names, values,
	    buf, sizeof(buf)), 5);
	bad[5] = "not a mac";
	memcpy(bad, values, 5 * sizeof(bad[0]));
	assert_int_equal(tor_checkpoint_decode(&keyless, 6, names, bad, &back,
	    &err), 0);
	assert_memory_equal(&back, &cp, sizeof(cp));
}

/* The length prefixes keep the MAC's message unambiguous: these two would
 * read the same with newlines alone between the values ("f\n4\n4\nx\n"). */
static void
test_mac_unambiguous(void **state)
{
	struct tor_checkpoint a = { .pos = { .file = "f\n4", .pos = 4,
	    .gtid = "x" }, .epoch = 1 }, b = a;
	struct tor_config cfg = { .group = (char *)"orders" };
	const char *names[TOR_CHECKPOINT_FIELDS], *va[TOR_CHECKPOINT_FIELDS];
	const char *vb[TOR_CHECKPOINT_FIELDS];
	char bufa[TOR_CHECKPOINT_BUF], bufb[TOR_CHECKPOINT_BUF];

	(void)state;
	set_test_key(&cfg, 0x00);
	strcpy(b.pos.file, "f");
	strcpy(b.pos.gtid, "4\nx");
	assert_int_equal(tor_checkpoint_encode(&cfg, &a, names, va, bufa,
	    sizeof(bufa)), 6);
	assert_int_equal(tor_checkpoint_encode(&cfg, &b, names, vb, bufb,
	    sizeof(bufb)), 6);
	assert_string_not_equal(va[5], vb[5]);
}

/* ---- against a real Redis (redis_server.h) ---- */

static int
setup_server_auth(void **state)
{
	struct server *s = calloc(1, sizeof(*s));

	assert_non_null(s);
	s->port = free_port();
	s->password = "s3cret-pw";
	config_for(s);
	*state = s;
	server_start(s);
	return 0;
}

static void
test_redis_key(void **state)
{
	struct tor_config cfg = { .group = (char *)"orders" };
	char buf[64];

	(void)state;
	cfg.redis.prefix = (char *)"tor";
	tor_redis_key(&cfg, "checkpoint", buf, sizeof(buf));
	assert_string_equal(buf, "tor:{orders}:checkpoint");
	cfg.redis.prefix = (char *)"x";
	cfg.group = (char *)"g";
	tor_redis_key(&cfg, "lease", buf, sizeof(buf));
	assert_string_equal(buf, "x:{g}:lease");
}

static void
test_store_load(void **state)
{
	struct server *s = *state;
	struct tor_checkpoint cp = { .pos = { .file = "mysql-bin.000003",
	    .pos = 1234, .gtid = "0-1-42" }, .epoch = 7 }, back;
	struct tor_redis *r = tor_redis_new(&s->cfg);
	redisContext *c = raw_connect(s);
	redisReply *reply;
	tor_err err = { "" };
	char want[32];
	int64_t before, after;
	bool found = true;

	assert_non_null(r);
	assert_int_equal(tor_checkpoint_load(r, &s->cfg, &back, &found, &err), 0);
	assert_false(found);

	/* The leader's write needs its lease in place. */
	freeReplyObject(redisCommand(c, "SET tor:{orders}:lease %s",
	    "relay-a 7"));
	before = now_ms();
	if (tor_checkpoint_store_fenced(r, &s->cfg, &cp, &err) != 0)
		fail_msg("store: %s", err.msg);
	after = now_ms();
	assert_true(cp.updated_ms >= before && cp.updated_ms <= after);

	memset(&back, 0, sizeof(back));
	assert_int_equal(tor_checkpoint_load(r, &s->cfg, &back, &found, &err), 0);
	assert_true(found);
	assert_memory_equal(&back, &cp, sizeof(cp));

	/* The raw hash, as another tool (tor status, redis-cli) sees it. */
	reply = redisCommand(c, "HGETALL tor:{orders}:checkpoint");
	assert_non_null(reply);
	assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
	assert_int_equal(reply->elements, 10);
	snprintf(want, sizeof(want), "%lld", (long long)cp.updated_ms);
	{
		const char *expect[] = { "file", "mysql-bin.000003", "pos", "1234",
		    "gtid", "0-1-42", "epoch", "7", "updated_ms", want };
		size_t i;

		for (i = 0; i < 10; i++)
			assert_string_equal(reply->element[i]->str, expect[i]);
	}
	freeReplyObject(reply);

	/* A second store overwrites every field. */
	cp.pos.pos = 5678;
	cp.pos.gtid[0] = '\0';
	cp.epoch = 8;
	freeReplyObject(redisCommand(c, "SET tor:{orders}:lease %s",
	    "relay-a 8"));
	assert_int_equal(tor_checkpoint_store_fenced(r, &s->cfg, &cp, &err), 0);
	assert_int_equal(tor_checkpoint_load(r, &s->cfg, &back, &found, &err), 0);
	assert_true(found && back.pos.pos == 5678 && back.epoch == 8);
	assert_string_equal(back.pos.gtid, "");

	/* Another group has no checkpoint. */
	s->cfg.group = (char *)"payments";
	assert_int_equal(tor_checkpoint_load(r, &s->cfg, &back, &found, &err), 0);
	assert_false(found);
	s->cfg.group = (char *)"orders";

	/* A tampered hash is refused, naming the key and the field; a future
	 * field is not. */
	reply = redisCommand(c, "HSET tor:{orders}:checkpoint mac abc");
	freeReplyObject(reply);
	assert_int_equal(tor_checkpoint_load(r, &s->cfg, &back, &found, &err), 0);
	assert_true(found);
	reply = redisCommand(c, "HSET tor:{orders}:checkpoint pos 12abc");
	freeReplyObject(reply);
	assert_int_equal(tor_checkpoint_load(r, &s->cfg, &back, &found, &err),
	    -1);
	assert_false(found);
	assert_string_equal(err.msg, "tor:{orders}:checkpoint: checkpoint field "
	    "'pos': not a number ('12abc')");
	reply = redisCommand(c, "HSET tor:{orders}:checkpoint pos %b", "12\0x",
	    (size_t)4);
	freeReplyObject(reply);
	assert_int_equal(tor_checkpoint_load(r, &s->cfg, &back, &found, &err),
	    -1);
	assert_string_equal(err.msg, "tor:{orders}:checkpoint: field 1 is not "
	    "a plain string");

	/* A key of the wrong type: a bad checkpoint, named by its key (not a
	 * Redis outage to wait out). */
	reply = redisCommand(c, "SET tor:{orders}:checkpoint x");
	freeReplyObject(reply);
	assert_int_equal(tor_checkpoint_load(r, &s->cfg, &back, &found, &err),
	    -1);
	assert_string_equal(err.msg, "tor:{orders}:checkpoint: not a "
	    "checkpoint hash (the key holds another type)");

	redisFree(c);
	tor_redis_free(r);
}

static void
test_select_db(void **state)
{
	struct server *s = *state;
	struct tor_checkpoint cp = { .pos = { .file = "b", .pos = 4 },
	    .epoch = 1 };
	struct tor_redis *r;
	redisContext *c = raw_connect(s);
	redisReply *reply;
	tor_err err = { "" };

	s->cfg.redis.db = 3;
	r = tor_redis_new(&s->cfg);
	assert_int_equal(tor_checkpoint_move(r, &s->cfg, &cp, &err), 0);

	reply = redisCommand(c, "EXISTS tor:{orders}:checkpoint");
	assert_int_equal(reply->integer, 0);
	freeReplyObject(reply);
	freeReplyObject(redisCommand(c, "SELECT 3"));
	reply = redisCommand(c, "EXISTS tor:{orders}:checkpoint");
	assert_int_equal(reply->integer, 1);
	freeReplyObject(reply);

	redisFree(c);
	tor_redis_free(r);
}

static void
test_error_reply_keeps_connection(void **state)
{
	struct server *s = *state;
	struct tor_redis *r = tor_redis_new(&s->cfg);
	const char *bad[] = { "NOSUCHCMD" }, *ping[] = { "PING" };
	redisReply *reply;
	tor_err err = { "" };
	char want[64];

	assert_null(tor_redis_command(r, 1, bad, NULL, &err));
	snprintf(want, sizeof(want), "redis 127.0.0.1:%d: ERR unknown command",
	    s->port);
	assert_memory_equal(err.msg, want, strlen(want));
	reply = tor_redis_command(r, 1, ping, NULL, &err);
	assert_non_null(reply);
	assert_string_equal(reply->str, "PONG");
	freeReplyObject(reply);
	tor_redis_free(r);
}

static void
test_reconnect_after_restart(void **state)
{
	struct server *s = *state;
	struct tor_checkpoint cp = { .pos = { .file = "mysql-bin.000009",
	    .pos = 77 }, .epoch = 3 }, back;
	struct tor_redis *r = tor_redis_new(&s->cfg);
	const char *ping[] = { "PING" };
	redisReply *reply;
	tor_err err = { "" };
	char want[128];
	bool found;

	assert_int_equal(tor_checkpoint_move(r, &s->cfg, &cp, &err), 0);

	/* A crash: the established connection breaks. */
	server_stop(s, SIGKILL);
	assert_null(tor_redis_command(r, 1, ping, NULL, &err));
	snprintf(want, sizeof(want), "redis 127.0.0.1:%d: ", s->port);
	assert_memory_equal(err.msg, want, strlen(want));

	/* Down: each command tries to connect again, and says so. */
	assert_null(tor_redis_command(r, 1, ping, NULL, &err));
	snprintf(want, sizeof(want), "redis 127.0.0.1:%d: connect: Connection "
	    "refused", s->port);
	assert_string_equal(err.msg, want);
	assert_int_equal(tor_checkpoint_load(r, &s->cfg, &back, &found, &err),
	    -1);
	assert_string_equal(err.msg, want);

	/* Back (empty: no persistence): the same handle works again. */
	server_start(s);
	reply = tor_redis_command(r, 1, ping, NULL, &err);
	if (reply == NULL)
		fail_msg("after restart: %s", err.msg);
	freeReplyObject(reply);
	assert_int_equal(tor_checkpoint_load(r, &s->cfg, &back, &found, &err), 0);
	assert_false(found);
	assert_int_equal(tor_checkpoint_move(r, &s->cfg, &cp, &err), 0);
	assert_int_equal(tor_checkpoint_load(r, &s->cfg, &back, &found, &err), 0);
	assert_true(found);
	assert_memory_equal(&back, &cp, sizeof(cp));

	/* A graceful restart too. */
	server_stop(s, SIGTERM);
	server_start(s);
	assert_null(tor_redis_command(r, 1, ping, NULL, &err));
	reply = tor_redis_command(r, 1, ping, NULL, &err);
	assert_non_null(reply);
	freeReplyObject(reply);
	tor_redis_free(r);
}

static void
test_paused_server_times_out(void **state)
{
	struct server *s = *state;
	struct tor_redis *r;
	const char *ping[] = { "PING" };
	redisReply *reply;
	tor_err err = { "" };
	char want[128];
	int64_t t0, elapsed;

	s->cfg.redis.timeout_ms = 300;
	r = tor_redis_new(&s->cfg);
	assert_int_equal(tor_redis_connect(r, &err), 0);

	/* A paused server keeps its socket open and never answers: the
	 * command must give up after timeout_ms, not block a lease renew. */
	kill(s->pid, SIGSTOP);
	t0 = now_ms();
	reply = tor_redis_command(r, 1, ping, NULL, &err);
	elapsed = now_ms() - t0;
	kill(s->pid, SIGCONT);
	assert_null(reply);
	/* Gave up on its own timeout; the upper bound only tells "gave up"
	 * from "waited for SIGCONT", with room for a loaded machine. */
	assert_true(elapsed >= 250 && elapsed < 10000);
	snprintf(want, sizeof(want), "redis 127.0.0.1:%d: no reply within "
	    "300 ms", s->port);
	assert_string_equal(err.msg, want);

	/* Resumed: the next command reconnects and works. */
	reply = tor_redis_command(r, 1, ping, NULL, &err);
	if (reply == NULL)
		fail_msg("after SIGCONT: %s", err.msg);
	freeReplyObject(reply);
	tor_redis_free(r);
}

static void
test_connect_refused(void **state)
{
	struct tor_config cfg = { .group = (char *)"orders" };
	struct tor_redis *r;
	tor_err err = { "" };
	char want[128];
	int port = free_port();

	(void)state;
	cfg.redis.host = (char *)"127.0.0.1";
	cfg.redis.port = port;
	cfg.redis.prefix = (char *)"tor";
	cfg.redis.timeout_ms = 500;
	r = tor_redis_new(&cfg);
	assert_int_equal(tor_redis_connect(r, &err), -1);
	snprintf(want, sizeof(want), "redis 127.0.0.1:%d: connect: Connection "
	    "refused", port);
	assert_string_equal(err.msg, want);
	tor_redis_free(r);
}

static void
test_auth(void **state)
{
	struct server *s = *state;
	struct tor_redis *r;
	const char *ping[] = { "PING" };
	redisReply *reply;
	tor_err err = { "" };
	char want[128];

	/* Wrong password: named by server, the password never shown. */
	s->cfg.redis.password = (char *)"wrong-pw";
	r = tor_redis_new(&s->cfg);
	assert_int_equal(tor_redis_connect(r, &err), -1);
	snprintf(want, sizeof(want), "redis 127.0.0.1:%d: AUTH: ", s->port);
	assert_memory_equal(err.msg, want, strlen(want));
	assert_null(strstr(err.msg, "wrong-pw"));
	assert_null(tor_redis_command(r, 1, ping, NULL, &err));
	assert_memory_equal(err.msg, want, strlen(want));
	tor_redis_free(r);

	/* No password at all: the server says so. */
	s->cfg.redis.password = (char *)"";
	r = tor_redis_new(&s->cfg);
	assert_null(tor_redis_command(r, 1, ping, NULL, &err));
	snprintf(want, sizeof(want), "redis 127.0.0.1:%d: NOAUTH", s->port);
	assert_memory_equal(err.msg, want, strlen(want));
	tor_redis_free(r);

	/* The right one. */
	s->cfg.redis.password = (char *)"s3cret-pw";
	r = tor_redis_new(&s->cfg);
	reply = tor_redis_command(r, 1, ping, NULL, &err);
	if (reply == NULL)
		fail_msg("%s", err.msg);
	assert_string_equal(reply->str, "PONG");
	freeReplyObject(reply);
	tor_redis_free(r);
}

/* ---- the fences ---- */

/* The raw hash as one string "f=v f=v ...", to compare before and after a
 * refused write. */
static void
hash_snapshot(redisContext *c, char *buf, size_t cap)
{
	redisReply *reply = redisCommand(c, "HGETALL tor:{orders}:checkpoint");
	size_t i, at = 0;

	assert_non_null(reply);
	assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
	buf[0] = '\0';
	for (i = 0; i < reply->elements; i++)
		at += (size_t)snprintf(buf + at, cap - at, "%s%s",
		    reply->element[i]->str, i % 2 == 0 ? "=" : " ");
	assert_true(at < cap);
	freeReplyObject(reply);
}

static void
set_lease(redisContext *c, const char *value)
{
	redisReply *reply;

	if (value == NULL)
		reply = redisCommand(c, "DEL tor:{orders}:lease");
	else
		reply = redisCommand(c, "SET tor:{orders}:lease %s", value);
	assert_non_null(reply);
	freeReplyObject(reply);
}

/* A store that must be refused, and must leave the hash as it was. */
static void
store_refused(struct tor_redis *r, redisContext *c, struct tor_config *cfg,
    struct tor_checkpoint *cp, bool fenced)
{
	char before[2048], after[2048];
	tor_err err = { "" };
	int rc;

	(void)fenced;
	hash_snapshot(c, before, sizeof(before));
	rc = tor_checkpoint_store_fenced(r, cfg, cp, &err);
	if (rc != TOR_CHECKPOINT_REFUSED)
		fail_msg("store (epoch %llu) not refused: %d %s",
		    (unsigned long long)cp->epoch, rc, err.msg);
	hash_snapshot(c, after, sizeof(after));
	assert_string_equal(after, before);
}

static void
test_store_fenced(void **state)
{
	struct server *s = *state;
	struct tor_checkpoint cp = { .pos = { .file = "mysql-bin.000003",
	    .pos = 1234 }, .epoch = 5 }, back;
	struct tor_redis *r = tor_redis_new(&s->cfg);
	redisContext *c = raw_connect(s);
	tor_err err = { "" };
	redisReply *reply;
	bool found;

	/* No lease: refused, and nothing written at all. */
	store_refused(r, c, &s->cfg, &cp, true);
	assert_int_equal(tor_checkpoint_load(r, &s->cfg, &back, &found, &err), 0);
	assert_false(found);

	/* Our lease: written. */
	set_lease(c, "relay-a 5");
	assert_int_equal(tor_checkpoint_store_fenced(r, &s->cfg, &cp, &err),
	    TOR_CHECKPOINT_WRITTEN);
	cp.pos.pos = 2000;
	assert_int_equal(tor_checkpoint_store_fenced(r, &s->cfg, &cp, &err),
	    TOR_CHECKPOINT_WRITTEN);

	/* A zombie: the lease expired, or another token took it, or another
	 * replica with the same token (two instances cannot share one, but
	 * the value is compared whole), or only a prefix matches. */
	cp.pos.pos = 3000;
	set_lease(c, NULL);
	store_refused(r, c, &s->cfg, &cp, true);
	set_lease(c, "relay-a 6");
	store_refused(r, c, &s->cfg, &cp, true);
	set_lease(c, "relay-b 5");
	store_refused(r, c, &s->cfg, &cp, true);
	set_lease(c, "relay-a 55");
	store_refused(r, c, &s->cfg, &cp, true);
	set_lease(c, "relay-a 5 ");
	store_refused(r, c, &s->cfg, &cp, true);

	/* The lease is ours again but the stored token is above ours (an
	 * operator moved the checkpoint): refused. */
	set_lease(c, "relay-a 5");
	freeReplyObject(redisCommand(c, "HSET tor:{orders}:checkpoint epoch 9"));
	store_refused(r, c, &s->cfg, &cp, true);
	/* Numerically above, not as text: "10" > "9". */
	freeReplyObject(redisCommand(c, "HSET tor:{orders}:checkpoint epoch 10"));
	cp.epoch = 9;
	set_lease(c, "relay-a 9");
	store_refused(r, c, &s->cfg, &cp, true);
	/* Equal tokens write (a leader's every checkpoint has the same). */
	cp.epoch = 10;
	set_lease(c, "relay-a 10");
	assert_int_equal(tor_checkpoint_store_fenced(r, &s->cfg, &cp, &err),
	    TOR_CHECKPOINT_WRITTEN);
	assert_int_equal(tor_checkpoint_load(r, &s->cfg, &back, &found, &err), 0);
	assert_true(found && back.epoch == 10 && back.pos.pos == 3000);

	/* Tokens beyond a double's 53 bits still compare exactly. */
	freeReplyObject(redisCommand(c, "HSET tor:{orders}:checkpoint epoch %s",
	    TOR_TOKEN_MAX_TEXT));
	cp.epoch = TOR_TOKEN_MAX - 1;
	set_lease(c, "relay-a 999999999999999998");
	store_refused(r, c, &s->cfg, &cp, true);
	cp.epoch = TOR_TOKEN_MAX;
	set_lease(c, "relay-a " TOR_TOKEN_MAX_TEXT);
	assert_int_equal(tor_checkpoint_store_fenced(r, &s->cfg, &cp, &err),
	    TOR_CHECKPOINT_WRITTEN);
	/* A stored epoch past the largest token fences every writer: an
	 * error that names it, the hash left for an operator. */
	freeReplyObject(redisCommand(c, "HSET tor:{orders}:checkpoint epoch %s",
	    "9223372036854775807"));
	assert_int_equal(tor_checkpoint_store_fenced(r, &s->cfg, &cp, &err),
	    -1);
	assert_non_null(strstr(err.msg, "stored epoch is past the largest "
	    "token (999999999999999999)"));
	assert_int_equal(tor_checkpoint_move(r, &s->cfg, &cp, &err), -1);
	assert_non_null(strstr(err.msg, "stored epoch is past the largest "
	    "token"));
	reply = redisCommand(c, "HGET tor:{orders}:checkpoint epoch");
	assert_string_equal(reply->str, "9223372036854775807");
	freeReplyObject(reply);

	redisFree(c);
	tor_redis_free(r);
}

/* The operator's move: a fresh token above every one handed out, the lease
 * taken for lease_ms, the checkpoint written, in one step; a leader's
 * fenced write after it is refused. */
static void
test_move(void **state)
{
	struct server *s = *state;
	struct tor_checkpoint cp = { .pos = { .gtid = "0-1-42" } }, back,
	    lead = { .pos = { .file = "f.000001", .pos = 4 }, .epoch = 7 };
	struct tor_redis *r = tor_redis_new(&s->cfg);
	redisContext *c = raw_connect(s);
	tor_err err = { "" };
	redisReply *reply;
	char want[128];
	bool found;

	freeReplyObject(redisCommand(c, "SET tor:{orders}:epoch 7"));
	set_lease(c, "relay-a 7");
	assert_int_equal(tor_checkpoint_store_fenced(r, &s->cfg, &lead, &err),
	    TOR_CHECKPOINT_WRITTEN);
	assert_int_equal(tor_checkpoint_move(r, &s->cfg, &cp, &err),
	    TOR_CHECKPOINT_WRITTEN);
	assert_true(cp.epoch == 8);
	assert_int_equal(tor_checkpoint_load(r, &s->cfg, &back, &found, &err), 0);
	assert_true(found && back.epoch == 8);
	assert_string_equal(back.pos.gtid, "0-1-42");
	reply = redisCommand(c, "GET tor:{orders}:lease");
	assert_string_equal(reply->str, "tor checkpoint set 8");
	freeReplyObject(reply);
	reply = redisCommand(c, "PTTL tor:{orders}:lease");
	assert_true(reply->integer > 0 && reply->integer <= s->cfg.ha.lease_ms);
	freeReplyObject(reply);
	/* The old leader is a zombie now. */
	store_refused(r, c, &s->cfg, &lead, true);

	/* The epoch key lost, the checkpoint's token kept: drawn past it. */
	freeReplyObject(redisCommand(c, "DEL tor:{orders}:epoch"));
	assert_int_equal(tor_checkpoint_move(r, &s->cfg, &cp, &err),
	    TOR_CHECKPOINT_WRITTEN);
	assert_true(cp.epoch == 9);

	/* A stored epoch that is not a number is an error, not overwritten. */
	freeReplyObject(redisCommand(c, "HSET tor:{orders}:checkpoint epoch x7"));
	assert_int_equal(tor_checkpoint_move(r, &s->cfg, &cp, &err), -1);
	snprintf(want, sizeof(want), "checkpoint operator store: redis "
	    "127.0.0.1:%d: ", s->port);
	assert_memory_equal(err.msg, want, strlen(want));
	assert_non_null(strstr(err.msg, "stored epoch is not a number"));

	/* A key of the wrong type. */
	freeReplyObject(redisCommand(c, "DEL tor:{orders}:checkpoint"));
	freeReplyObject(redisCommand(c, "SET tor:{orders}:checkpoint x"));
	assert_int_equal(tor_checkpoint_move(r, &s->cfg, &cp, &err), -1);
	assert_non_null(strstr(err.msg, "WRONGTYPE"));

	redisFree(c);
	tor_redis_free(r);
}

/* done and rows travel in the hash, under the mac, and in the record. */
static void
test_done_and_records(void **state)
{
	struct tor_checkpoint cp = { .pos = { .file = "mysql-bin.000003",
	    .pos = 1234, .gtid = "0-1-42" }, .epoch = 9,
	    .updated_ms = 1700000000123, .done = { .file = "mysql-bin.000004",
	    .pos = 77 }, .rows = 12 }, back;
	struct tor_config cfg = { .group = (char *)"orders" };
	const char *names[TOR_CHECKPOINT_FIELDS], *values[TOR_CHECKPOINT_FIELDS];
	const char *bad[TOR_CHECKPOINT_FIELDS];
	char buf[TOR_CHECKPOINT_BUF], rec[TOR_CHECKPOINT_RECORD];
	tor_err err = { "" };

	(void)state;
	set_test_key(&cfg, 0x00);
	assert_int_equal(tor_checkpoint_encode(&cfg, &cp, names, values, buf,
	    sizeof(buf)), 8);
	assert_string_equal(names[5], "done");
	assert_string_equal(values[5], "mysql-bin.000004:77");
	assert_string_equal(names[6], "rows");
	assert_string_equal(values[6], "12");
	assert_string_equal(names[7], "mac");
	memset(&back, 0xa5, sizeof(back));
	assert_int_equal(tor_checkpoint_decode(&cfg, 8, names, values, &back,
	    &err), 0);
	assert_memory_equal(&back, &cp, sizeof(cp));
	/* Dropping done (or changing rows) is tampering. */
	memcpy(bad, values, sizeof(bad));
	bad[6] = "11";
	decode_with(&cfg, 8, names, bad, MAC_BAD);
	{
		const char *n2[] = { "file", "pos", "gtid", "epoch",
		    "updated_ms", "rows", "mac" };
		const char *v2[] = { values[0], values[1], values[2], values[3],
		    values[4], values[6], values[7] };

		decode_with(&cfg, 7, n2, v2, MAC_BAD);
	}

	/* The record, with its own mac; an old v1 record still reads. */
	assert_true(tor_checkpoint_record_format(&cfg, &cp, rec,
	    sizeof(rec)) > 0);
	assert_non_null(strstr(rec, "v2 token=9 file=mysql-bin.000003 pos=1234 "
	    "gtid=0-1-42 done=mysql-bin.000004:77 rows=12 mac="));
	assert_int_equal(tor_checkpoint_record_parse(&cfg, rec, &back, &err), 0);
	assert_true(back.epoch == 9 && back.rows == 12 && back.pos.pos == 1234);
	assert_string_equal(back.done.file, "mysql-bin.000004");
	rec[strlen(rec) - 1] ^= 1;
	assert_int_equal(tor_checkpoint_record_parse(&cfg, rec, &back, &err),
	    -1);
	assert_non_null(strstr(err.msg, "mac does not verify"));
	assert_int_equal(tor_checkpoint_record_parse(&keyless, "v1 5 b.000002 "
	    "400", &back, &err), 0);
	assert_true(back.epoch == 5 && back.pos.pos == 400);
	/* A v1 record carries no mac: with a key configured it is a forgery
	 * anyone who may produce to the topic could write. */
	assert_int_equal(tor_checkpoint_record_parse(&cfg, "v1 5 b.000002 400",
	    &back, &err), -1);
	assert_non_null(strstr(err.msg, "no mac"));
	assert_true(back.epoch == 0 && back.pos.file[0] == '\0');
	assert_int_equal(tor_checkpoint_record_parse(&keyless, "v2 token=x",
	    &back, &err), -1);
	assert_non_null(strstr(err.msg, "malformed"));
	/* A token past the largest one is no leader's, in either version. */
	assert_int_equal(tor_checkpoint_record_parse(&keyless, "v2 token="
	    "999999999999999999 file=b.000002 pos=400 gtid=", &back, &err), 0);
	assert_true(back.epoch == TOR_TOKEN_MAX);
	assert_int_equal(tor_checkpoint_record_parse(&keyless, "v2 token="
	    "1000000000000000000 file=b.000002 pos=400 gtid=", &back, &err), -1);
	assert_non_null(strstr(err.msg, "malformed"));
	assert_int_equal(tor_checkpoint_record_parse(&keyless, "v1 "
	    "1000000000000000000 b.000002 400", &back, &err), -1);
	assert_non_null(strstr(err.msg, "malformed"));

	/* The newer decision: the higher token, else the one further on. */
	back = cp;
	back.epoch = 10;
	back.done.file[0] = '\0';
	assert_true(tor_checkpoint_newer(&cp, &back));
	assert_false(tor_checkpoint_newer(&back, &cp));
	back = cp;
	back.rows = 13;
	assert_true(tor_checkpoint_newer(&cp, &back));
	back.rows = 12;
	assert_false(tor_checkpoint_newer(&cp, &back));
}

/* One leadership that followed a primary failover wrote position records
 * on both servers: their file:pos name places in different binlogs (the
 * old primary's binlog.000005 is not "further" than the new one's
 * binlog.000001), so the newer is told by the GTID domain's sequence,
 * which goes on across the servers. */
static void
test_newer_across_servers(void **state)
{
	struct tor_checkpoint old = { .pos = { .file = "binlog.000005",
	    .pos = 31610830, .gtid = "0-1-1012" }, .epoch = 10,
	    .server_id = 1 };
	struct tor_checkpoint new = { .pos = { .file = "binlog.000001",
	    .pos = 58934867, .gtid = "0-2-1288" }, .epoch = 10,
	    .server_id = 2 };
	struct tor_checkpoint nogtid = new;

	(void)state;
	assert_true(tor_checkpoint_newer(&old, &new));
	assert_false(tor_checkpoint_newer(&new, &old));
	/* Several domains: ahead in one, behind in none. */
	strcpy(old.pos.gtid, "0-1-1012,1-1-7");
	strcpy(new.pos.gtid, "0-2-1012,1-2-8");
	assert_true(tor_checkpoint_newer(&old, &new));
	assert_false(tor_checkpoint_newer(&new, &old));
	/* No GTID to compare: the record met later (b) is the newer, as one
	 * leadership writes its records in order. */
	nogtid.pos.gtid[0] = '\0';
	assert_true(tor_checkpoint_newer(&old, &nogtid));
	assert_true(tor_checkpoint_newer(&nogtid, &old));
	/* A higher token still wins whatever the servers. */
	new.epoch = 9;
	assert_false(tor_checkpoint_newer(&old, &new));
}

/* moved (the token of an operator's move) travels like rows: in the hash
 * under the mac, and in the record. */
static void
test_moved(void **state)
{
	struct tor_checkpoint cp = { .pos = { .file = "mysql-bin.000003",
	    .pos = 1234 }, .epoch = 12, .updated_ms = 1700000000123,
	    .moved = 11 }, back;
	struct tor_config cfg = { .group = (char *)"orders" };
	const char *names[TOR_CHECKPOINT_FIELDS], *values[TOR_CHECKPOINT_FIELDS];
	const char *bad[TOR_CHECKPOINT_FIELDS];
	char buf[TOR_CHECKPOINT_BUF], rec[TOR_CHECKPOINT_RECORD];
	tor_err err = { "" };

	(void)state;
	set_test_key(&cfg, 0x00);
	assert_int_equal(tor_checkpoint_encode(&cfg, &cp, names, values, buf,
	    sizeof(buf)), 7);
	assert_string_equal(names[5], "moved");
	assert_string_equal(values[5], "11");
	memset(&back, 0xa5, sizeof(back));
	assert_int_equal(tor_checkpoint_decode(&cfg, 7, names, values, &back,
	    &err), 0);
	assert_memory_equal(&back, &cp, sizeof(cp));
	memcpy(bad, values, sizeof(bad));
	bad[5] = "10";
	decode_with(&cfg, 7, names, bad, MAC_BAD);
	assert_true(tor_checkpoint_record_format(&cfg, &cp, rec,
	    sizeof(rec)) > 0);
	assert_non_null(strstr(rec, " rows=0 moved=11 mac="));
	memset(&back, 0, sizeof(back));
	assert_int_equal(tor_checkpoint_record_parse(&cfg, rec, &back, &err), 0);
	assert_true(back.moved == 11 && back.epoch == 12);
}

/* The longest record tor can write: every field at its widest (a file
 * name and a GTID list that fill their arrays, done naming such a file,
 * every number at its largest, the token at TOR_TOKEN_MAX) with a mac.
 * It fits TOR_CHECKPOINT_RECORD whole (a record cut short is no record)
 * and reads back the same. */
static void
test_record_largest(void **state)
{
	struct tor_checkpoint cp = { .epoch = TOR_TOKEN_MAX, .pos = {
	    .pos = UINT64_MAX }, .done = { .pos = UINT64_MAX },
	    .rows = UINT32_MAX, .moved = UINT64_MAX,
	    .server_id = UINT32_MAX }, back;
	struct tor_config cfg = { .group = (char *)"orders" };
	char rec[TOR_CHECKPOINT_RECORD], *g = cp.pos.gtid;
	size_t left = sizeof(cp.pos.gtid);
	tor_err err = { "" };
	int n;

	(void)state;
	set_test_key(&cfg, 0x00);
	memset(cp.pos.file, 'f', sizeof(cp.pos.file) - 1);
	memset(cp.done.file, 'd', sizeof(cp.done.file) - 1);
	widest_gtid_set(cp.gtid_set);
	/* Domains of the widest GTIDs while they fit. */
	for (unsigned d = 0; left > 60; d++) {
		int k = snprintf(g, left, "%s%u-4294967295-18446744073709551615",
		    d == 0 ? "" : ",", d);

		g += k;
		left -= (size_t)k;
	}
	n = tor_checkpoint_record_format(&cfg, &cp, rec, sizeof(rec));
	print_message("record of %d bytes (gtid %zu, file %zu), buffer %d\n", n,
	    strlen(cp.pos.gtid), strlen(cp.pos.file), TOR_CHECKPOINT_RECORD);
	assert_true(n > 0 && (size_t)n < sizeof(rec));
	memset(&back, 0, sizeof(back));
	assert_int_equal(tor_checkpoint_record_parse(&cfg, rec, &back, &err), 0);
	assert_string_equal(back.pos.file, cp.pos.file);
	assert_string_equal(back.pos.gtid, cp.pos.gtid);
	assert_string_equal(back.done.file, cp.done.file);
	assert_string_equal(back.gtid_set, cp.gtid_set);
	assert_true(back.epoch == TOR_TOKEN_MAX && back.pos.pos == UINT64_MAX &&
	    back.done.pos == UINT64_MAX && back.rows == UINT32_MAX &&
	    back.moved == UINT64_MAX && back.server_id == UINT32_MAX);
}

/* server_id (the source server whose binlog file:pos names) travels like
 * moved: in the hash under the mac, and in the record under its mac.  A
 * checkpoint written before it existed reads as server 0 (unknown), and
 * its mac still verifies: no field, nothing in the message. */
static void
test_server_id(void **state)
{
	struct tor_checkpoint cp = { .pos = { .file = "mysql-bin.000003",
	    .pos = 1234, .gtid = "0-1-42" }, .epoch = 12,
	    .updated_ms = 1700000000123, .server_id = 2 }, back;
	struct tor_config cfg = { .group = (char *)"orders" };
	const char *names[TOR_CHECKPOINT_FIELDS], *values[TOR_CHECKPOINT_FIELDS];
	const char *bad[TOR_CHECKPOINT_FIELDS];
	char buf[TOR_CHECKPOINT_BUF], rec[TOR_CHECKPOINT_RECORD], *at;
	tor_err err = { "" };

	(void)state;
	set_test_key(&cfg, 0x00);
	assert_int_equal(tor_checkpoint_encode(&cfg, &cp, names, values, buf,
	    sizeof(buf)), 7);
	assert_string_equal(names[5], "server_id");
	assert_string_equal(values[5], "2");
	memset(&back, 0xa5, sizeof(back));
	assert_int_equal(tor_checkpoint_decode(&cfg, 7, names, values, &back,
	    &err), 0);
	assert_memory_equal(&back, &cp, sizeof(cp));
	/* Another server named under the same mac does not verify. */
	memcpy(bad, values, sizeof(bad));
	bad[5] = "1";
	decode_with(&cfg, 7, names, bad, MAC_BAD);
	bad[5] = "4294967296";
	decode_bad(7, names, bad, "checkpoint field 'server_id': not a number "
	    "('4294967296')");
	/* Dropped from a signed hash: the mac was over it. */
	names[5] = names[6];
	values[5] = values[6];
	decode_with(&cfg, 6, names, values, MAC_BAD);

	/* An older checkpoint: no field; signed as it was then, it verifies
	 * and names no server. */
	cp.server_id = 0;
	assert_int_equal(tor_checkpoint_encode(&cfg, &cp, names, values, buf,
	    sizeof(buf)), 6);
	memset(&back, 0xa5, sizeof(back));
	assert_int_equal(tor_checkpoint_decode(&cfg, 6, names, values, &back,
	    &err), 0);
	assert_int_equal(back.server_id, 0);

	/* The record: " server_id=2" before the mac, which covers it. */
	cp.server_id = 2;
	assert_true(tor_checkpoint_record_format(&cfg, &cp, rec,
	    sizeof(rec)) > 0);
	assert_non_null(strstr(rec, " rows=0 server_id=2 mac="));
	memset(&back, 0, sizeof(back));
	assert_int_equal(tor_checkpoint_record_parse(&cfg, rec, &back, &err), 0);
	assert_int_equal(back.server_id, 2);
	at = strstr(rec, "server_id=2");
	at[10] = '3';
	assert_int_equal(tor_checkpoint_record_parse(&cfg, rec, &back, &err), -1);
	assert_non_null(strstr(err.msg, "mac does not verify"));
	/* Without a key, an older record reads as server 0. */
	assert_int_equal(tor_checkpoint_record_parse(&keyless, "v2 token=5 "
	    "file=mysql-bin.000001 pos=4 gtid=0-1-1 done=- rows=0", &back,
	    &err), 0);
	assert_int_equal(back.server_id, 0);
	assert_int_equal(tor_checkpoint_record_parse(&keyless, "v2 token=5 "
	    "file=mysql-bin.000001 pos=4 gtid=- done=- rows=0 server_id=x",
	    &back, &err), -1);
	assert_non_null(strstr(err.msg, "bad server_id"));
}

/* gtid_set (MySQL's executed set at pos) travels like server_id: in the
 * hash and the record under their macs, in the one text form the set
 * formats to; a checkpoint without it reads as no set and its mac still
 * verifies.  A set that does not parse, or whose text is longer than a
 * checkpoint holds, is refused naming the field. */
#define SID_A "3e11fa47-71ca-11e1-9e33-c80aa9429562"
#define SID_B "4c4d4e4f-0000-1111-2222-333344445555"

static void
test_gtid_set_field(void **state)
{
	struct tor_checkpoint cp = { .pos = { .file = "binlog.000007",
	    .pos = 2345 }, .epoch = 12, .updated_ms = 1700000000123,
	    .server_id = 2, .gtid_set = SID_A ":1-77:80," SID_B ":5" }, back;
	struct tor_config cfg = { .group = (char *)"orders" };
	const char *names[TOR_CHECKPOINT_FIELDS], *values[TOR_CHECKPOINT_FIELDS];
	const char *bad[TOR_CHECKPOINT_FIELDS];
	char buf[TOR_CHECKPOINT_BUF], rec[TOR_CHECKPOINT_RECORD], *at;
	static char huge[TOR_GTID_SET_TEXT + 64];
	tor_err err = { "" };

	(void)state;
	set_test_key(&cfg, 0x00);
	assert_int_equal(tor_checkpoint_encode(&cfg, &cp, names, values, buf,
	    sizeof(buf)), 8);
	assert_string_equal(names[6], "gtid_set");
	assert_string_equal(values[6], cp.gtid_set);
	memset(&back, 0xa5, sizeof(back));
	assert_int_equal(tor_checkpoint_decode(&cfg, 8, names, values, &back,
	    &err), 0);
	assert_memory_equal(&back, &cp, sizeof(cp));
	/* MySQL's own spelling (uppercase, blanks and a newline after the
	 * comma, parts out of order) is the same set: it reads back in the
	 * one form, and the mac, over that form, verifies. */
	memcpy(bad, values, sizeof(bad));
	bad[6] = SID_B ":5,\n 3E11FA47-71CA-11E1-9E33-C80AA9429562:80:1-77";
	assert_int_equal(tor_checkpoint_decode(&cfg, 8, names, bad, &back,
	    &err), 0);
	assert_string_equal(back.gtid_set, cp.gtid_set);
	/* One transaction more under the same mac does not verify. */
	bad[6] = SID_A ":1-78:80," SID_B ":5";
	decode_with(&cfg, 8, names, bad, MAC_BAD);
	bad[6] = SID_A ":1-77:80,zz";
	assert_int_equal(tor_checkpoint_decode(&keyless, 8, names, bad, &back,
	    &err), -1);
	assert_non_null(strstr(err.msg, "checkpoint field 'gtid_set': bad "
	    "GTID set"));
	/* A set written by hand past the limit: refused, naming it. */
	for (size_t i = 0, k = 0; k + 40 < sizeof(huge) - 1; i++)
		k += (size_t)sprintf(huge + k, "%s%08zx-0000-0000-0000-"
		    "000000000000:1", i == 0 ? "" : ",", i);
	bad[6] = huge;
	assert_int_equal(tor_checkpoint_decode(&keyless, 8, names, bad, &back,
	    &err), -1);
	print_message("%s\n", err.msg);
	assert_non_null(strstr(err.msg, "checkpoint field 'gtid_set': GTID "
	    "set of "));
	assert_non_null(strstr(err.msg, "longer than a checkpoint holds "
	    "(8191)"));
	/* Dropped from a signed hash: the mac was over it. */
	names[6] = names[7];
	values[6] = values[7];
	decode_with(&cfg, 7, names, values, MAC_BAD);

	/* An older checkpoint: no field; signed as it was then, it verifies
	 * and carries no set. */
	cp.gtid_set[0] = '\0';
	assert_int_equal(tor_checkpoint_encode(&cfg, &cp, names, values, buf,
	    sizeof(buf)), 7);
	memset(&back, 0xa5, sizeof(back));
	assert_int_equal(tor_checkpoint_decode(&cfg, 7, names, values, &back,
	    &err), 0);
	assert_string_equal(back.gtid_set, "");
	/* A set alone names a position (an operator's move by GTID set). */
	memset(&cp, 0, sizeof(cp));
	snprintf(cp.gtid_set, sizeof(cp.gtid_set), "%s", SID_A ":1-9");
	cp.epoch = 3;
	assert_int_equal(tor_checkpoint_encode(&cfg, &cp, names, values, buf,
	    sizeof(buf)), 7);
	assert_int_equal(tor_checkpoint_decode(&cfg, 7, names, values, &back,
	    &err), 0);
	assert_string_equal(back.gtid_set, SID_A ":1-9");

	/* The record: " gtid_set=<set>" before the mac, which covers it; "-"
	 * nowhere (an empty set is no field). */
	snprintf(cp.pos.file, sizeof(cp.pos.file), "binlog.000007");
	cp.pos.pos = 2345;
	assert_true(tor_checkpoint_record_format(&cfg, &cp, rec,
	    sizeof(rec)) > 0);
	assert_non_null(strstr(rec, " rows=0 gtid_set=" SID_A ":1-9 mac="));
	memset(&back, 0, sizeof(back));
	assert_int_equal(tor_checkpoint_record_parse(&cfg, rec, &back, &err), 0);
	assert_string_equal(back.gtid_set, SID_A ":1-9");
	at = strstr(rec, ":1-9 mac=");
	at[3] = '8';
	assert_int_equal(tor_checkpoint_record_parse(&cfg, rec, &back, &err), -1);
	assert_non_null(strstr(err.msg, "mac does not verify"));
	/* Without a key, an older record reads as no set; a bad one fails. */
	assert_int_equal(tor_checkpoint_record_parse(&keyless, "v2 token=5 "
	    "file=binlog.000001 pos=4 gtid=- done=- rows=0", &back, &err), 0);
	assert_string_equal(back.gtid_set, "");
	assert_int_equal(tor_checkpoint_record_parse(&keyless, "v2 token=5 "
	    "file=binlog.000001 pos=4 gtid=- done=- rows=0 gtid_set=x:1",
	    &back, &err), -1);
	assert_non_null(strstr(err.msg, "bad gtid_set: bad GTID set"));
}

static void
test_store_redis_down(void **state)
{
	struct server *s = *state;
	struct tor_checkpoint cp = { .pos = { .file = "b", .pos = 4 },
	    .epoch = 1 };
	struct tor_redis *r = tor_redis_new(&s->cfg);
	tor_err err = { "" };
	char want[128];

	server_stop(s, SIGKILL);
	assert_int_equal(tor_checkpoint_store_fenced(r, &s->cfg, &cp, &err),
	    -1);
	snprintf(want, sizeof(want), "checkpoint store: redis 127.0.0.1:%d: "
	    "connect: Connection refused", s->port);
	assert_string_equal(err.msg, want);
	assert_int_equal(tor_checkpoint_move(r, &s->cfg, &cp, &err), -1);
	snprintf(want, sizeof(want), "checkpoint move: lease next token: redis "
	    "127.0.0.1:%d: connect: Connection refused", s->port);
	assert_string_equal(err.msg, want);
	tor_redis_free(r);
}

/* ---- the MAC against a real Redis ---- */

/* Loads and expects the hash to be refused with "<key>: <why>". */
static void
load_refused(struct tor_redis *r, const struct tor_config *cfg,
    const char *why)
{
	struct tor_checkpoint cp;
	tor_err err = { "" };
	char want[300];
	bool found = true;

	assert_int_equal(tor_checkpoint_load(r, cfg, &cp, &found, &err), -1);
	assert_false(found);
	snprintf(want, sizeof(want), "tor:{%s}:checkpoint: %s", cfg->group,
	    why);
	assert_string_equal(err.msg, want);
}

static void
load_same(struct tor_redis *r, const struct tor_config *cfg,
    const struct tor_checkpoint *cp)
{
	struct tor_checkpoint back;
	tor_err err = { "" };
	bool found = false;

	memset(&back, 0xa5, sizeof(back));
	if (tor_checkpoint_load(r, cfg, &back, &found, &err) != 0)
		fail_msg("load: %s", err.msg);
	assert_true(found);
	assert_memory_equal(&back, cp, sizeof(*cp));
}

static void
test_mac_store_load(void **state)
{
	static const char *const fields[] = { "pos", "file", "gtid", "epoch",
	    "updated_ms" };
	static const char *const changed[] = { "1235", "mysql-bin.000004",
	    "0-1-43", "8", "1700000000123" };
	struct server *s = *state;
	struct tor_checkpoint cp = { .pos = { .file = "mysql-bin.000003",
	    .pos = 1234, .gtid = "0-1-42" }, .epoch = 7 }, written;
	struct tor_config other;
	struct tor_redis *r;
	redisContext *c = raw_connect(s);
	redisReply *reply, *orig;
	tor_err err = { "" };
	size_t i;

	set_test_key(&s->cfg, 0x00);
	r = tor_redis_new(&s->cfg);
	set_lease(c, "relay-a 7");
	if (tor_checkpoint_store_fenced(r, &s->cfg, &cp, &err) != 0)
		fail_msg("store: %s", err.msg);
	load_same(r, &s->cfg, &cp);

	/* The raw hash carries 64 lowercase hex digits of mac. */
	reply = redisCommand(c, "HGETALL tor:{orders}:checkpoint");
	assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
	assert_int_equal(reply->elements, 12);
	freeReplyObject(reply);
	reply = redisCommand(c, "HGET tor:{orders}:checkpoint mac");
	assert_int_equal(reply->type, REDIS_REPLY_STRING);
	assert_int_equal(reply->len, 64);
	assert_int_equal(strspn(reply->str, "0123456789abcdef"), 64);
	freeReplyObject(reply);

	/* Any one field changed: refused, and the relay must not start from
	 * it (the message does not read as a Redis error). */
	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		orig = redisCommand(c, "HGET tor:{orders}:checkpoint %s",
		    fields[i]);
		assert_int_equal(orig->type, REDIS_REPLY_STRING);
		freeReplyObject(redisCommand(c, "HSET tor:{orders}:checkpoint "
		    "%s %s", fields[i], changed[i]));
		load_refused(r, &s->cfg, MAC_BAD);
		freeReplyObject(redisCommand(c, "HSET tor:{orders}:checkpoint "
		    "%s %s", fields[i], orig->str));
		freeReplyObject(orig);
		load_same(r, &s->cfg, &cp);
	}

	/* Another key refuses it; no key at all takes it, mac unread. */
	other = s->cfg;
	set_test_key(&other, 0xff);
	load_refused(r, &other, MAC_BAD);
	other.checkpoint.has_key = false;
	load_same(r, &other, &cp);

	/* Copied to another group's key: the group is under the mac. */
	freeReplyObject(redisCommand(c, "COPY tor:{orders}:checkpoint "
	    "tor:{payments}:checkpoint"));
	other = s->cfg;
	other.group = (char *)"payments";
	load_refused(r, &other, MAC_BAD);

	/* No mac: deleted, or written by a replica without the key, whose
	 * write must not leave the old mac behind. */
	freeReplyObject(redisCommand(c, "HDEL tor:{orders}:checkpoint mac"));
	load_refused(r, &s->cfg, MAC_NO_FIELD);
	assert_int_equal(tor_checkpoint_store_fenced(r, &s->cfg, &cp, &err),
	    TOR_CHECKPOINT_WRITTEN);
	load_same(r, &s->cfg, &cp);
	other = s->cfg;
	other.checkpoint.has_key = false;
	assert_int_equal(tor_checkpoint_store_fenced(r, &other, &cp, &err),
	    TOR_CHECKPOINT_WRITTEN);
	reply = redisCommand(c, "HEXISTS tor:{orders}:checkpoint mac");
	assert_int_equal(reply->integer, 0);
	freeReplyObject(reply);
	load_refused(r, &s->cfg, MAC_NO_FIELD);

	/* The operator's move signs too. */
	freeReplyObject(redisCommand(c, "SET tor:{orders}:epoch 7"));
	assert_int_equal(tor_checkpoint_move(r, &s->cfg, &cp, &err),
	    TOR_CHECKPOINT_WRITTEN);
	assert_true(cp.epoch == 8);
	load_same(r, &s->cfg, &cp);

	/* The fences hold as before: a zombie's signed write is refused
	 * (store stamps updated_ms even then, so keep what was written). */
	written = cp;
	cp.epoch = 7;
	set_lease(c, "relay-a 7");
	store_refused(r, c, &s->cfg, &cp, true);
	load_same(r, &s->cfg, &written);

	redisFree(c);
	tor_redis_free(r);
}


struct seen {
	char pos[8][TOR_REFUSED_POS];
	size_t n;
};

static void
see(void *ctx, const char *pos)
{
	struct seen *sn = ctx;

	assert_true(sn->n < 8);
	snprintf(sn->pos[sn->n++], TOR_REFUSED_POS, "%s", pos);
}

/* Loads the refused rows with cfg; returns how many verified (in sn) and
 * sets *ignored. */
static size_t
refused_rows(struct tor_redis *r, const struct tor_config *cfg,
    struct seen *sn, size_t *ignored)
{
	tor_err err = { "" };

	memset(sn, 0, sizeof(*sn));
	if (tor_checkpoint_refused_load(r, cfg, see, sn, ignored, &err) != 0)
		fail_msg("refused load: %s", err.msg);
	return sn->n;
}

/* The rows the broker refused, shared through Redis: added once each,
 * kept a while, and with a checkpoint key signed (a member nobody signed,
 * signed with another key or for another group, is ignored and counted). */
static void
test_refused_rows(void **state)
{
	struct server *s = *state;
	struct tor_config other;
	struct tor_redis *r = tor_redis_new(&s->cfg);
	redisContext *c = raw_connect(s);
	redisReply *reply;
	struct seen sn;
	size_t ignored;
	tor_err err = { "" };

	assert_int_equal(refused_rows(r, &s->cfg, &sn, &ignored), 0);
	assert_int_equal(tor_checkpoint_refused_add(r, &s->cfg, "0-1-63:0",
	    &err), 0);
	assert_int_equal(tor_checkpoint_refused_add(r, &s->cfg,
	    "binlog.000002:4711:3", &err), 0);
	assert_int_equal(tor_checkpoint_refused_add(r, &s->cfg, "0-1-63:0",
	    &err), 0);
	assert_int_equal(refused_rows(r, &s->cfg, &sn, &ignored), 2);
	assert_int_equal(ignored, 0);
	reply = redisCommand(c, "PTTL tor:{orders}:refused");
	assert_true(reply->integer > 6 * 86400 * 1000LL);
	freeReplyObject(reply);

	/* With a key the unsigned members do not count. */
	other = s->cfg;
	set_test_key(&other, 0x00);
	assert_int_equal(refused_rows(r, &other, &sn, &ignored), 0);
	assert_int_equal(ignored, 2);
	assert_int_equal(tor_checkpoint_refused_add(r, &other, "0-1-70:2",
	    &err), 0);
	assert_int_equal(refused_rows(r, &other, &sn, &ignored), 1);
	assert_string_equal(sn.pos[0], "0-1-70:2");
	assert_int_equal(ignored, 2);
	/* Without a key the mac is not read. */
	assert_int_equal(refused_rows(r, &s->cfg, &sn, &ignored), 3);
	/* Another key, another group: ignored. */
	set_test_key(&other, 0xff);
	assert_int_equal(refused_rows(r, &other, &sn, &ignored), 0);
	assert_int_equal(ignored, 3);
	freeReplyObject(redisCommand(c, "COPY tor:{orders}:refused "
	    "tor:{payments}:refused"));
	set_test_key(&other, 0x00);
	other.group = (char *)"payments";
	assert_int_equal(refused_rows(r, &other, &sn, &ignored), 0);
	assert_int_equal(ignored, 3);

	/* Not a set: an error, which the relay only logs. */
	freeReplyObject(redisCommand(c, "DEL tor:{orders}:refused"));
	freeReplyObject(redisCommand(c, "SET tor:{orders}:refused x"));
	assert_int_equal(tor_checkpoint_refused_load(r, &s->cfg, see, &sn,
	    &ignored, &err), -1);
	assert_non_null(strstr(err.msg, "refused rows: "));
	redisFree(c);
	tor_redis_free(r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_position_parse_file_pos),
		cmocka_unit_test(test_position_parse_gtid),
		cmocka_unit_test(test_position_format),
		cmocka_unit_test(test_position_round_trip),
		cmocka_unit_test(test_encode_decode),
		cmocka_unit_test(test_newer_across_servers),
		cmocka_unit_test(test_encode_largest),
		cmocka_unit_test(test_decode_errors),
		cmocka_unit_test(test_mac_vector),
		cmocka_unit_test(test_mac_unambiguous),
		cmocka_unit_test(test_redis_key),
		cmocka_unit_test(test_connect_refused),
		cmocka_unit_test_setup_teardown(test_store_load, setup_server,
		    teardown_server),
		cmocka_unit_test_setup_teardown(test_store_fenced, setup_server,
		    teardown_server),
		cmocka_unit_test_setup_teardown(test_move, setup_server,
		    teardown_server),
		cmocka_unit_test(test_done_and_records),
		cmocka_unit_test(test_moved),
		cmocka_unit_test(test_server_id),
		cmocka_unit_test(test_gtid_set_field),
		cmocka_unit_test(test_position_parse_set),
		cmocka_unit_test_setup_teardown(test_refused_rows, setup_server,
		    teardown_server),
		cmocka_unit_test(test_record_largest),
		cmocka_unit_test_setup_teardown(test_mac_store_load, setup_server,
		    teardown_server),
		cmocka_unit_test_setup_teardown(test_store_redis_down,
		    setup_server, teardown_server),
		cmocka_unit_test_setup_teardown(test_select_db, setup_server,
		    teardown_server),
		cmocka_unit_test_setup_teardown(test_error_reply_keeps_connection,
		    setup_server, teardown_server),
		cmocka_unit_test_setup_teardown(test_reconnect_after_restart,
		    setup_server, teardown_server),
		cmocka_unit_test_setup_teardown(test_paused_server_times_out,
		    setup_server, teardown_server),
		cmocka_unit_test_setup_teardown(test_auth, setup_server_auth,
		    teardown_server),
	};

	/* A write to a connection the server just closed must come back as
	 * an error, not kill the test (the relay's main ignores it too). */
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
