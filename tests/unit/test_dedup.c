/*
 * Unit tests of de-duplication at takeover (src/dedup.c): tor.pos in its
 * three forms is parsed and ordered within one binlog lineage only, and a
 * replayed row is skipped exactly while its partition already holds it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tor/dedup.h"

static struct tor_row_pos
pos(const char *text)
{
	struct tor_row_pos p;

	if (!tor_row_pos_parse(text, strlen(text), &p))
		fail_msg("'%s' did not parse", text);
	return p;
}

static int
cmp(const char *a, const char *b)
{
	struct tor_row_pos pa = pos(a), pb = pos(b);

	return tor_row_pos_cmp(&pa, &pb);
}

static void
test_parse(void **state)
{
	struct tor_row_pos p;

	(void)state;
	p = pos("0-1-42:3");
	assert_int_equal(p.kind, TOR_POS_MARIADB);
	assert_string_equal(p.lineage, "0");
	assert_true(p.major == 42 && p.row == 3);
	p = pos("3e11fa47-71ca-11e1-9e33-c80aa9429562:23:0");
	assert_int_equal(p.kind, TOR_POS_MYSQL);
	assert_string_equal(p.lineage, "3e11fa47-71ca-11e1-9e33-c80aa9429562");
	assert_true(p.major == 23 && p.row == 0);
	/* Tagged (MySQL 8.3+): each source and tag is a sequence. */
	p = pos("3e11fa47-71ca-11e1-9e33-c80aa9429562:orders_2:23:0");
	assert_int_equal(p.kind, TOR_POS_MYSQL);
	assert_string_equal(p.lineage,
	    "3e11fa47-71ca-11e1-9e33-c80aa9429562:orders_2");
	assert_true(p.major == 23 && p.row == 0);
	assert_true(cmp("3e11fa47-71ca-11e1-9e33-c80aa9429562:t:9:0",
	    "3e11fa47-71ca-11e1-9e33-c80aa9429562:t:8:5") > 0);
	assert_int_equal(cmp("3e11fa47-71ca-11e1-9e33-c80aa9429562:t:9:0",
	    "3e11fa47-71ca-11e1-9e33-c80aa9429562:8:5"), TOR_ROW_POS_UNORDERED);
	assert_false(tor_row_pos_parse(
	    "3e11fa47-71ca-11e1-9e33-c80aa9429562:9tag:9:0", 45, &p));
	p = pos("binlog.000017:1234:12");
	assert_int_equal(p.kind, TOR_POS_FILE);
	assert_string_equal(p.lineage, "binlog");
	assert_true(p.major == 17 && p.minor == 1234 && p.row == 12);
	p = pos("mysql-bin.index.000002:4:0");
	assert_string_equal(p.lineage, "mysql-bin.index");

	assert_false(tor_row_pos_parse("", 0, &p));
	assert_false(tor_row_pos_parse("0-1-42", 6, &p));
	assert_false(tor_row_pos_parse("0-1-x:3", 7, &p));
	assert_false(tor_row_pos_parse("binlog:4:0", 10, &p));
	assert_false(tor_row_pos_parse("binlog.000001:-4:0", 18, &p));
	assert_false(tor_row_pos_parse("0-1-99999999999999999999999:0", 29, &p));
	/* Not NUL-terminated: only len bytes count. */
	assert_false(tor_row_pos_parse("0-1-42:3xyz", 9, &p));
	assert_true(tor_row_pos_parse("0-1-42:37", 8, &p));
	assert_true(p.row == 3);
}

static void
test_order(void **state)
{
	(void)state;
	assert_true(cmp("0-1-41:9", "0-1-42:0") < 0);
	assert_true(cmp("0-1-42:1", "0-1-42:0") > 0);
	assert_int_equal(cmp("0-1-42:0", "0-1-42:0"), 0);
	/* The domain's sequence goes on across a primary switch. */
	assert_true(cmp("0-2-43:0", "0-1-42:5") > 0);
	assert_int_equal(cmp("1-1-1:0", "0-1-42:0"), TOR_ROW_POS_UNORDERED);
	/* Across rotations, by the file's number, not its name's text. */
	assert_true(cmp("binlog.000010:4:0", "binlog.000009:900:3") > 0);
	assert_true(cmp("binlog.1000000:4:0", "binlog.999999:9:0") > 0);
	assert_true(cmp("binlog.000009:900:3", "binlog.000009:900:4") < 0);
	assert_int_equal(cmp("other.000010:4:0", "binlog.000009:9:0"),
	    TOR_ROW_POS_UNORDERED);
	assert_int_equal(cmp("binlog.000010:4:0", "0-1-42:0"),
	    TOR_ROW_POS_UNORDERED);
	assert_true(cmp("3e11fa47-71ca-11e1-9e33-c80aa9429562:24:0",
	    "3e11fa47-71ca-11e1-9e33-c80aa9429562:23:7") > 0);
}

static void
test_check(void **state)
{
	struct tor_partition_tail tails[3];
	struct tor_dedup *d = tor_dedup_new();

	(void)state;
	assert_non_null(d);
	memset(tails, 0, sizeof(tails));
	tails[0].known = tails[0].found = true;
	tails[0].pos = pos("0-1-100:1");
	strcpy(tails[0].placement, "murmur2/3");
	tails[1].known = true;          /* the group never wrote there */
	/* tails[2] unknown: not read */
	assert_false(tor_dedup_knows(d, "orders"));
	assert_int_equal(tor_dedup_learn(d, "orders", 3, tails, "murmur2/3"), 0);
	assert_true(tor_dedup_knows(d, "orders"));
	assert_int_equal(tor_dedup_learn(d, "orders", 3, tails, "murmur2/3"), -1);
	assert_false(tor_dedup_done(d));

	assert_int_equal(tor_dedup_check(d, "orders", 0, "0-1-99:5", true),
	    TOR_DEDUP_SKIP);
	assert_int_equal(tor_dedup_check(d, "orders", 0, "0-1-100:1", true),
	    TOR_DEDUP_SKIP);
	assert_int_equal(tor_dedup_check(d, "orders", 1, "0-1-99:0", true),
	    TOR_DEDUP_PUBLISH);
	assert_int_equal(tor_dedup_check(d, "orders", 2, "0-1-99:0", true),
	    TOR_DEDUP_UNKNOWN);
	assert_int_equal(tor_dedup_check(d, "orders", 7, "0-1-99:0", true),
	    TOR_DEDUP_UNKNOWN);
	assert_int_equal(tor_dedup_check(d, "other", 0, "0-1-99:0", true),
	    TOR_DEDUP_UNKNOWN);
	/* Another domain cannot be compared; the partition stays open. */
	assert_int_equal(tor_dedup_check(d, "orders", 0, "5-1-1:0", true),
	    TOR_DEDUP_UNKNOWN);
	assert_false(tor_dedup_done(d));
	/* Past it: published, and the partition is passed for good. */
	assert_int_equal(tor_dedup_check(d, "orders", 0, "0-1-100:2", true),
	    TOR_DEDUP_PUBLISH);
	assert_true(tor_dedup_done(d));
	assert_int_equal(tor_dedup_check(d, "orders", 0, "0-1-50:0", true),
	    TOR_DEDUP_PUBLISH);
	tor_dedup_free(d);
}

/* After a failover that lost transactions: the partition's newest message
 * is 0-1-110, the promoted server (server_id 2) has the old primary's
 * transactions up to 0-1-100 and numbers its own 0-2-101...  Its rows
 * before 0-1-110 of server 1 were published; its own are new, though
 * numbered before it.  A source that has 0-1-110 (no loss) has every row
 * numbered before it published, whichever server wrote it. */
static void
test_check_tail_the_source_never_had(void **state)
{
	struct tor_partition_tail tails[1];
	struct tor_dedup *d;

	(void)state;
	memset(tails, 0, sizeof(tails));
	tails[0].known = tails[0].found = true;
	tails[0].pos = pos("0-1-110:0");
	assert_int_equal(pos("0-2-7:0").server, 2);

	d = tor_dedup_new();
	assert_int_equal(tor_dedup_source(d, "0-1-100,0-2-140,3-9-4"), 0);
	assert_int_equal(tor_dedup_learn(d, "orders", 1, tails, ""), 0);
	assert_int_equal(tor_dedup_check(d, "orders", 0, "0-1-99:0", false),
	    TOR_DEDUP_SKIP);
	assert_int_equal(tor_dedup_check(d, "orders", 0, "0-2-101:0", false),
	    TOR_DEDUP_UNKNOWN);
	assert_int_equal(tor_dedup_check(d, "orders", 0, "0-2-110:0", false),
	    TOR_DEDUP_UNKNOWN);
	assert_false(tor_dedup_done(d));
	assert_int_equal(tor_dedup_check(d, "orders", 0, "0-2-111:0", false),
	    TOR_DEDUP_PUBLISH);
	assert_true(tor_dedup_done(d));
	tor_dedup_free(d);

	/* The source has 0-1-110: a switchover without loss. */
	d = tor_dedup_new();
	assert_int_equal(tor_dedup_source(d, "0-2-140,0-1-110"), 0);
	assert_int_equal(tor_dedup_learn(d, "orders", 1, tails, ""), 0);
	assert_int_equal(tor_dedup_check(d, "orders", 0, "0-2-105:0", false),
	    TOR_DEDUP_SKIP);
	tor_dedup_free(d);

	/* No state known: sequence numbers alone, as before. */
	d = tor_dedup_new();
	assert_int_equal(tor_dedup_learn(d, "orders", 1, tails, ""), 0);
	assert_int_equal(tor_dedup_check(d, "orders", 0, "0-2-105:0", false),
	    TOR_DEDUP_SKIP);
	tor_dedup_free(d);
}

/* A partition whose newest message was placed otherwise (3 partitions
 * then, 4 now): a row that may have gone to another partition then (the
 * caller says: its key's partition then was another) is never skipped
 * there; one that went to this partition then too is compared. */
static void
test_check_placed_otherwise(void **state)
{
	struct tor_partition_tail tails[2];
	struct tor_dedup *d = tor_dedup_new();

	(void)state;
	assert_non_null(d);
	memset(tails, 0, sizeof(tails));
	tails[0].known = tails[0].found = true;
	tails[0].pos = pos("0-1-100:1");
	strcpy(tails[0].placement, "murmur2/3");
	tails[1].known = tails[1].found = true;
	tails[1].pos = pos("0-1-100:1");    /* an older tor: no header */
	assert_int_equal(tor_dedup_learn(d, "orders", 2, tails, "murmur2/4"),
	    0);
	assert_string_equal(tor_dedup_placed_otherwise(d, "orders", 0),
	    "murmur2/3");
	assert_string_equal(tor_dedup_placed_otherwise(d, "orders", 1), "");
	assert_null(tor_dedup_placed_otherwise(d, "orders", 2));
	assert_int_equal(tor_dedup_check(d, "orders", 0, "0-1-99:5", true),
	    TOR_DEDUP_UNKNOWN);
	assert_int_equal(tor_dedup_check(d, "orders", 0, "0-1-99:5", false),
	    TOR_DEDUP_SKIP);
	assert_int_equal(tor_dedup_check(d, "orders", 1, "0-1-99:5", true),
	    TOR_DEDUP_UNKNOWN);
	assert_false(tor_dedup_done(d));
	/* Past the position: published, the partition passed as before. */
	assert_int_equal(tor_dedup_check(d, "orders", 0, "0-1-101:0", true),
	    TOR_DEDUP_PUBLISH);
	assert_int_equal(tor_dedup_check(d, "orders", 1, "0-1-101:0", true),
	    TOR_DEDUP_PUBLISH);
	assert_true(tor_dedup_done(d));
	tor_dedup_free(d);

	/* Another partitioner over the same count is placed otherwise too. */
	d = tor_dedup_new();
	assert_non_null(d);
	assert_int_equal(tor_dedup_learn(d, "orders", 1, tails, "fnv1a/3"), 0);
	assert_int_equal(tor_dedup_check(d, "orders", 0, "0-1-99:5", true),
	    TOR_DEDUP_UNKNOWN);
	tor_dedup_free(d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_order),
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_check_placed_otherwise),
		cmocka_unit_test(test_check_tail_the_source_never_had),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
