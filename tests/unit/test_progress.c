/*
 * The progress tracker decides how far the checkpoint may move: these tests
 * pin the rule "the end of the newest transaction whose messages, and all
 * before them, are acknowledged".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tor/gtid_set.h"
#include "tor/progress.h"

static struct tor_progress *
start_at(const char *file, uint64_t pos, const char *gtid)
{
	struct tor_position p;

	memset(&p, 0, sizeof(p));
	snprintf(p.file, sizeof(p.file), "%s", file);
	p.pos = pos;
	snprintf(p.gtid, sizeof(p.gtid), "%s", gtid);
	return tor_progress_new(&p);
}

static struct tor_gtid
mariadb_gtid(uint32_t domain, uint32_t server, uint64_t seq)
{
	struct tor_gtid g;

	memset(&g, 0, sizeof(g));
	g.mariadb = true;
	g.domain_id = domain;
	g.server_id = server;
	g.seq_no = seq;
	return g;
}

/* A source transaction of one message, committed at end; its sequence. */
static uint64_t
one_message_txn(struct tor_progress *p, uint64_t end)
{
	uint64_t seq = tor_progress_begin(p);

	tor_progress_add(p);
	tor_progress_commit(p, end, NULL);
	return seq;
}

static void
test_empty_transactions_move_at_once(void **state)
{
	struct tor_progress *p = start_at("binlog.000001", 4, "");
	struct tor_position safe;

	(void)state;
	assert_false(tor_progress_take_safe(p, &safe));
	assert_string_equal(safe.file, "binlog.000001");
	assert_int_equal(safe.pos, 4);
	tor_progress_begin(p);
	assert_true(tor_progress_in_txn(p));
	tor_progress_commit(p, 400, NULL);
	assert_false(tor_progress_in_txn(p));
	assert_true(tor_progress_take_safe(p, &safe));
	assert_int_equal(safe.pos, 400);
	assert_false(tor_progress_take_safe(p, &safe));
	tor_progress_free(p);
}

static void
test_pending_messages_hold_the_position(void **state)
{
	struct tor_progress *p = start_at("binlog.000001", 4, "");
	struct tor_position safe;
	uint64_t a, b, c;

	(void)state;
	a = tor_progress_begin(p);
	tor_progress_add(p);
	tor_progress_add(p);
	tor_progress_commit(p, 100, NULL);
	b = one_message_txn(p, 200);
	c = tor_progress_begin(p);     /* no messages */
	tor_progress_commit(p, 300, NULL);
	assert_int_equal(tor_progress_pending_messages(p), 3);

	/* b acknowledged first: a still holds the position. */
	tor_progress_ack(p, b);
	assert_false(tor_progress_take_safe(p, &safe));
	assert_int_equal(safe.pos, 4);
	tor_progress_ack(p, a);
	assert_false(tor_progress_take_safe(p, &safe));
	tor_progress_ack(p, a);
	/* a, b and the empty c are all done. */
	assert_true(tor_progress_take_safe(p, &safe));
	assert_int_equal(safe.pos, 300);
	assert_int_equal(tor_progress_pending_messages(p), 0);
	(void)c;
	tor_progress_free(p);
}

static void
test_open_transaction_is_never_safe(void **state)
{
	struct tor_progress *p = start_at("binlog.000001", 4, "");
	struct tor_position safe;
	uint64_t a, again;

	(void)state;
	a = tor_progress_begin(p);
	tor_progress_add(p);
	tor_progress_ack(p, a);
	assert_false(tor_progress_take_safe(p, &safe));
	assert_int_equal(safe.pos, 4);
	/* A broken stream replays the open transaction: same number. */
	again = tor_progress_begin(p);
	assert_int_equal(again, a);
	tor_progress_commit(p, 500, NULL);
	assert_true(tor_progress_take_safe(p, &safe));
	assert_int_equal(safe.pos, 500);
	tor_progress_free(p);
}

static void
test_unknown_ack_changes_nothing(void **state)
{
	struct tor_progress *p = start_at("binlog.000001", 4, "");
	struct tor_position safe;
	uint64_t a;

	(void)state;
	a = one_message_txn(p, 100);
	tor_progress_ack(p, a + 7);
	tor_progress_ack(p, 0);
	assert_false(tor_progress_take_safe(p, &safe));
	assert_int_equal(tor_progress_pending_messages(p), 1);
	tor_progress_ack(p, a);
	tor_progress_ack(p, a);        /* a second ack for the same message */
	assert_true(tor_progress_take_safe(p, &safe));
	assert_int_equal(safe.pos, 100);
	assert_int_equal(tor_progress_pending_messages(p), 0);
	tor_progress_free(p);
}

static void
test_rotation_keeps_file_names_of_transactions_in_flight(void **state)
{
	struct tor_progress *p = start_at("binlog.000001", 4, "");
	struct tor_position safe;
	uint64_t a, b;

	(void)state;
	a = one_message_txn(p, 900);
	assert_int_equal(tor_progress_rotate(p, "binlog.000002", 4, true, NULL), 0);
	b = one_message_txn(p, 350);
	assert_int_equal(tor_progress_rotate(p, "binlog.000003", 4, true, NULL), 0);

	tor_progress_ack(p, a);
	assert_true(tor_progress_take_safe(p, &safe));
	assert_string_equal(safe.file, "binlog.000001");
	assert_int_equal(safe.pos, 900);
	tor_progress_ack(p, b);
	assert_true(tor_progress_take_safe(p, &safe));
	assert_string_equal(safe.file, "binlog.000002");
	assert_int_equal(safe.pos, 350);
	tor_progress_free(p);
}

static void
test_rotation_while_idle_moves_to_the_new_file(void **state)
{
	struct tor_progress *p = start_at("binlog.000001", 1200, "");
	struct tor_position safe;

	(void)state;
	assert_int_equal(tor_progress_rotate(p, "binlog.000002", 4, true, NULL), 0);
	assert_true(tor_progress_take_safe(p, &safe));
	assert_string_equal(safe.file, "binlog.000002");
	assert_int_equal(safe.pos, 4);
	/* The rotate event at the start of a stream names the same place. */
	assert_int_equal(tor_progress_rotate(p, "binlog.000002", 4, true, NULL), 0);
	assert_false(tor_progress_take_safe(p, &safe));
	tor_progress_free(p);
}

static void
test_gtid_state_per_domain(void **state)
{
	struct tor_progress *p = start_at("binlog.000001", 4, "0-1-10,5-2-3");
	struct tor_position safe;
	struct tor_gtid g;

	(void)state;
	tor_progress_begin(p);
	g = mariadb_gtid(0, 1, 11);
	tor_progress_commit(p, 100, &g);
	tor_progress_begin(p);
	g = mariadb_gtid(7, 3, 1);
	tor_progress_commit(p, 200, &g);
	assert_true(tor_progress_take_safe(p, &safe));
	assert_int_equal(safe.pos, 200);
	assert_string_equal(safe.gtid, "0-1-11,5-2-3,7-3-1");
	tor_progress_free(p);
}

/* What a Kafka commit makes safe (transactional mode) is a position whose
 * GTID state is that of the same place: the checkpoint of another server
 * is resumed by its GTID alone, and a GTID behind the file:pos would
 * publish the transactions between again. */
static void
test_read_position_has_its_own_gtid_state(void **state)
{
	struct tor_progress *p = start_at("binlog.000001", 4, "0-1-10,5-2-3");
	struct tor_position read;
	struct tor_gtid g;

	(void)state;
	tor_progress_begin(p);
	tor_progress_add(p);
	g = mariadb_gtid(0, 1, 11);
	tor_progress_commit(p, 100, &g);
	tor_progress_begin(p);
	tor_progress_add(p);
	g = mariadb_gtid(5, 2, 4);
	tor_progress_commit(p, 200, &g);
	tor_progress_begin(p);
	tor_progress_add(p);
	g = mariadb_gtid(0, 1, 12);
	tor_progress_commit(p, 300, &g);
	/* Nothing acknowledged: safe at the start, read at the third end. */
	tor_progress_read(p, &read);
	assert_int_equal(read.pos, 300);
	assert_string_equal(read.gtid, "0-1-12,5-2-4");
	/* An open transaction is not read yet. */
	tor_progress_begin(p);
	tor_progress_add(p);
	tor_progress_read(p, &read);
	assert_int_equal(read.pos, 300);
	assert_string_equal(read.gtid, "0-1-12,5-2-4");
	tor_progress_free(p);
}

static void
test_many_finished_transactions_behind_one_pending(void **state)
{
	struct tor_progress *p = start_at("binlog.000001", 4, "");
	struct tor_position safe;
	struct tor_gtid g;
	uint64_t a;

	(void)state;
	a = tor_progress_begin(p);
	tor_progress_add(p);
	g = mariadb_gtid(0, 1, 1);
	tor_progress_commit(p, 100, &g);
	for (uint64_t i = 0; i < 100000; i++) {
		tor_progress_begin(p);
		g = mariadb_gtid(0, 1, 2 + i);
		tor_progress_commit(p, 200 + i, &g);
	}
	assert_false(tor_progress_take_safe(p, &safe));
	tor_progress_ack(p, a);
	assert_true(tor_progress_take_safe(p, &safe));
	assert_int_equal(safe.pos, 200 + 99999);
	assert_string_equal(safe.gtid, "0-1-100001");
	tor_progress_free(p);
}

/* A prepared XA transaction that never ends holds the safe position at
 * its prepare: every transaction after it must still leave the ring
 * bounded by what is in flight, not by how many came. */
static void
test_held_prepare_keeps_the_ring_bounded(void **state)
{
	struct tor_progress *p = start_at("binlog.000001", 4, "0-1-1");
	struct tor_position safe, done;
	struct tor_gtid g;
	uint64_t held, seq, late = 0;
	size_t most = 0;

	(void)state;
	held = tor_progress_begin(p);
	tor_progress_hold(p);
	g = mariadb_gtid(0, 1, 2);
	tor_progress_commit(p, 100, &g);
	for (uint64_t i = 0; i < 200000; i++) {
		seq = tor_progress_begin(p);
		assert_int_not_equal(seq, 0);
		tor_progress_add(p);
		/* Three domains in turn: runs of them must merge too. */
		g = mariadb_gtid((uint32_t)(i % 3), 1, 3 + i);
		tor_progress_commit(p, 200 + i, &g);
		/* One in a thousand is acknowledged late: in flight meanwhile. */
		if (i % 1000 == 0) {
			if (late != 0)
				tor_progress_ack(p, late);
			late = seq;
		} else {
			tor_progress_ack(p, seq);
		}
		if (tor_progress_entries(p) > most)
			most = tor_progress_entries(p);
	}
	assert_in_range(most, 1, 64);
	assert_false(tor_progress_take_safe(p, &safe));
	assert_int_equal(safe.pos, 4);
	assert_string_equal(safe.gtid, "0-1-1");
	/* Published up to the last late one (the 199,000th): done stops
	 * before it. */
	assert_true(tor_progress_done(p, &done));
	assert_int_equal(done.pos, 200 + 198999);
	tor_progress_ack(p, late);
	assert_true(tor_progress_done(p, &done));
	assert_int_equal(done.pos, 200 + 199999);
	assert_false(tor_progress_take_safe(p, &safe));
	tor_progress_release(p, held);
	assert_true(tor_progress_take_safe(p, &safe));
	assert_int_equal(safe.pos, 200 + 199999);
	/* Each domain's last GTID, as if every transaction had been passed
	 * one by one. */
	assert_string_equal(safe.gtid, "0-1-200001,1-1-200002,2-1-200000");
	assert_int_equal(tor_progress_entries(p), 0);
	tor_progress_free(p);
}

/* Transactions acknowledged out of order while nothing holds: the ring
 * merges what finished behind one that did not. */
static void
test_out_of_order_acks_merge_behind_the_oldest(void **state)
{
	struct tor_progress *p = start_at("binlog.000001", 4, "");
	struct tor_position safe;
	uint64_t first, seq;

	(void)state;
	first = one_message_txn(p, 100);
	for (uint64_t i = 0; i < 50000; i++) {
		seq = one_message_txn(p, 200 + i);
		tor_progress_ack(p, seq);
	}
	assert_in_range(tor_progress_entries(p), 1, 64);
	assert_false(tor_progress_take_safe(p, &safe));
	tor_progress_ack(p, first);
	assert_true(tor_progress_take_safe(p, &safe));
	assert_int_equal(safe.pos, 200 + 49999);
	tor_progress_free(p);
}

/* ---- MySQL's executed GTID set ---- */

#define SID_A "3e11fa47-71ca-11e1-9e33-c80aa9429562"
#define SID_B "4c4d4e4f-0000-1111-2222-333344445555"

static struct tor_gtid
mysql_gtid(const char *sid, uint64_t gno)
{
	struct tor_gtid g;

	memset(&g, 0, sizeof(g));
	assert_int_equal(tor_uuid_parse(sid, g.sid), 36);
	g.gno = gno;
	return g;
}

/* A transaction of n messages with MySQL GTID sid:gno; its sequence. */
static uint64_t
mysql_txn(struct tor_progress *p, uint64_t end, const char *sid, uint64_t gno,
    int n)
{
	uint64_t seq = tor_progress_begin(p);
	struct tor_gtid g = mysql_gtid(sid, gno);

	for (int i = 0; i < n; i++)
		tor_progress_add(p);
	tor_progress_commit(p, end, &g);
	return seq;
}

static void
expect_set(int (*get)(const struct tor_progress *, char *, size_t),
    const struct tor_progress *p, const char *want)
{
	char buf[512];

	assert_int_equal(get(p, buf, sizeof(buf)), (int)strlen(want));
	assert_string_equal(buf, want);
}

/* The set at the safe position is the start set plus exactly the
 * transactions the safe position has passed: one acknowledged out of
 * order behind a pending one is not in it until the pending one is, and
 * a merged run brings every GTID it passed (of two servers, with a gap). */
static void
test_mysql_set_follows_the_safe_position(void **state)
{
	struct tor_progress *p = start_at("binlog.000001", 4, "");
	struct tor_position safe;
	tor_err err = { "" };
	uint64_t s1, s2, s3;

	(void)state;
	assert_int_equal(tor_progress_safe_gtid_set(p, NULL, 0), -1);
	assert_int_equal(tor_progress_start_gtid_set(p, SID_A ":1-10,\n"
	    SID_B ":1-3", &err), 0);
	expect_set(tor_progress_safe_gtid_set, p, SID_A ":1-10," SID_B ":1-3");
	s1 = mysql_txn(p, 100, SID_A, 11, 1);
	s2 = mysql_txn(p, 200, SID_A, 12, 1);
	(void)mysql_txn(p, 250, SID_B, 4, 0);      /* no message: done */
	s3 = mysql_txn(p, 300, SID_A, 14, 1);    /* 13 is another table's */
	/* Acknowledged out of order: 12, 4 and 14 wait behind 11. */
	tor_progress_ack(p, s2);
	tor_progress_ack(p, s3);
	expect_set(tor_progress_safe_gtid_set, p, SID_A ":1-10," SID_B ":1-3");
	/* What a Kafka commit of everything read makes safe has them all. */
	expect_set(tor_progress_read_gtid_set, p, SID_A ":1-12:14,"
	    SID_B ":1-4");
	tor_progress_ack(p, s1);
	assert_true(tor_progress_take_safe(p, &safe));
	assert_int_equal(safe.pos, 300);
	expect_set(tor_progress_safe_gtid_set, p, SID_A ":1-12:14,"
	    SID_B ":1-4");
	tor_progress_free(p);
}

/* Many finished transactions behind one pending are merged into one
 * entry, which carries their GTIDs as a set of a few intervals; passing
 * it adds them all. */
static void
test_mysql_set_of_a_merged_run(void **state)
{
	struct tor_progress *p = start_at("binlog.000001", 4, "");
	tor_err err = { "" };
	uint64_t head, gno = 101;

	(void)state;
	assert_int_equal(tor_progress_start_gtid_set(p, SID_A ":1-100", &err),
	    0);
	head = mysql_txn(p, 10, SID_A, gno++, 1);
	for (uint64_t end = 20; end < 20 + 10 * 5000; end += 10)
		(void)mysql_txn(p, end, SID_A, gno++, 0);
	print_message("entries for 5001 transactions behind one pending: "
	    "%zu\n", tor_progress_entries(p));
	assert_true(tor_progress_entries(p) <= 2);
	expect_set(tor_progress_safe_gtid_set, p, SID_A ":1-100");
	expect_set(tor_progress_read_gtid_set, p, SID_A ":1-5101");
	tor_progress_ack(p, head);
	expect_set(tor_progress_safe_gtid_set, p, SID_A ":1-5101");
	tor_progress_free(p);
}

/* No start set (a file:pos start, an older checkpoint): no set, however
 * far the position goes; anonymous transactions (gno 0) add nothing; a
 * tagged GTID (MySQL 8.4), which a set cannot hold, drops the set once
 * passed rather than give out one that lacks it; a start set that does
 * not parse is refused. */
static void
test_mysql_set_unknown(void **state)
{
	struct tor_progress *p = start_at("binlog.000001", 4, "");
	struct tor_gtid g = mysql_gtid(SID_A, 5);
	tor_err err = { "" };

	(void)state;
	(void)mysql_txn(p, 100, SID_A, 1, 0);
	assert_int_equal(tor_progress_safe_gtid_set(p, NULL, 0), -1);
	assert_int_equal(tor_progress_read_gtid_set(p, NULL, 0), -1);
	assert_int_equal(tor_progress_start_gtid_set(p, SID_A ":1-x", &err),
	    -1);
	assert_non_null(strstr(err.msg, "bad GTID set"));
	assert_int_equal(tor_progress_safe_gtid_set(p, NULL, 0), -1);
	assert_int_equal(tor_progress_start_gtid_set(p, SID_A ":1-4", &err),
	    0);
	(void)mysql_txn(p, 150, SID_A, 0, 0);
	expect_set(tor_progress_safe_gtid_set, p, SID_A ":1-4");
	(void)tor_progress_begin(p);
	snprintf(g.tag, sizeof(g.tag), "%s", "blue");
	tor_progress_add(p);
	tor_progress_commit(p, 200, &g);
	expect_set(tor_progress_safe_gtid_set, p, SID_A ":1-4");
	assert_int_equal(tor_progress_read_gtid_set(p, NULL, 0), -1);
	tor_progress_ack(p, 3);
	assert_int_equal(tor_progress_safe_gtid_set(p, NULL, 0), -1);
	tor_progress_free(p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_transactions_move_at_once),
		cmocka_unit_test(test_pending_messages_hold_the_position),
		cmocka_unit_test(test_open_transaction_is_never_safe),
		cmocka_unit_test(test_unknown_ack_changes_nothing),
		cmocka_unit_test(test_rotation_keeps_file_names_of_transactions_in_flight),
		cmocka_unit_test(test_rotation_while_idle_moves_to_the_new_file),
		cmocka_unit_test(test_gtid_state_per_domain),
		cmocka_unit_test(test_read_position_has_its_own_gtid_state),
		cmocka_unit_test(test_many_finished_transactions_behind_one_pending),
		cmocka_unit_test(test_held_prepare_keeps_the_ring_bounded),
		cmocka_unit_test(test_out_of_order_acks_merge_behind_the_oldest),
		cmocka_unit_test(test_mysql_set_follows_the_safe_position),
		cmocka_unit_test(test_mysql_set_of_a_merged_run),
		cmocka_unit_test(test_mysql_set_unknown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
