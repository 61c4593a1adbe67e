/*
 * Gray failures without I/O: a standby's report round-trips through its
 * Redis text and refuses what is not one; the leader's stall watch says
 * stalled only with work, only after ha.stall_ms without progress, never
 * in a leadership's first stall_ms, and on the right side; a report
 * qualifies a standby only when it reaches both services and, for a MySQL
 * stall, the binlog moved on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tor/health.h"

static void
test_report_round_trip(void **state)
{
	struct tor_health h = { .kafka = true, .mysql = true,
	    .head = { .file = "mysql-bin.000012", .pos = 4711 },
	    .at_ms = 1765130000123 }, back;
	char text[400];

	(void)state;
	tor_health_format(&h, text, sizeof(text));
	assert_string_equal(text, "1 1 mysql-bin.000012:4711 1765130000123");
	assert_int_equal(tor_health_parse(text, &back), 0);
	assert_true(back.kafka && back.mysql);
	assert_string_equal(back.head.file, "mysql-bin.000012");
	assert_int_equal(back.head.pos, 4711);
	assert_int_equal(back.at_ms, 1765130000123);

	memset(&h, 0, sizeof(h));
	h.kafka = true;
	h.at_ms = 5;
	tor_health_format(&h, text, sizeof(text));
	assert_string_equal(text, "1 0 - 5");
	assert_int_equal(tor_health_parse(text, &back), 0);
	assert_true(back.kafka && !back.mysql);
	assert_string_equal(back.head.file, "");
}

static void
test_report_refuses_other_text(void **state)
{
	static const char *const bad[] = { "", "1 1", "1 1 - x", "2 1 - 5",
	    "1 -1 - 5", "1 1 - 5 extra", "1 1 0-1-42 5", "1 1 f:2 5",
	    "yes yes - 5" };
	struct tor_health h;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(tor_health_parse(bad[i], &h), -1);
}

static void
test_idle_leader_never_stalls(void **state)
{
	struct tor_stall s;

	(void)state;
	tor_stall_begin(&s, 10000, 1000, 1000);
	/* Heartbeats keep coming, nothing waits: no stall however long. */
	for (int64_t t = 1000; t <= 60000; t += 500) {
		tor_stall_mysql_moved(&s, t);
		assert_int_equal(tor_stall_check(&s, t, false), TOR_STALL_NONE);
	}
}

static void
test_kafka_stall_after_stall_ms_of_waiting(void **state)
{
	struct tor_stall s;

	(void)state;
	tor_stall_begin(&s, 10000, 1000, 0);
	/* Acknowledged up to 20 s, idle until 30 s, then messages wait:
	 * the stall counts from 30 s, not from the last ack. */
	tor_stall_kafka_moved(&s, 20000);
	tor_stall_mysql_moved(&s, 30000);
	assert_int_equal(tor_stall_check(&s, 29000, false), TOR_STALL_NONE);
	for (int64_t t = 30000; t < 40000; t += 500) {
		tor_stall_mysql_moved(&s, t);
		assert_int_equal(tor_stall_check(&s, t, true), TOR_STALL_NONE);
	}
	tor_stall_mysql_moved(&s, 40000);
	assert_int_equal(tor_stall_check(&s, 40000, true), TOR_STALL_KAFKA);
	/* One acknowledgement is progress: the count starts again. */
	tor_stall_kafka_moved(&s, 40100);
	assert_int_equal(tor_stall_check(&s, 49000, true), TOR_STALL_NONE);
	assert_int_equal(tor_stall_check(&s, 50100, true), TOR_STALL_KAFKA);
	/* Nothing waiting any more: no stall. */
	tor_stall_mysql_moved(&s, 50200);
	assert_int_equal(tor_stall_check(&s, 50200, false), TOR_STALL_NONE);
}

static void
test_mysql_stall_when_the_stream_is_silent(void **state)
{
	struct tor_stall s;

	(void)state;
	tor_stall_begin(&s, 5000, 1000, 0);
	tor_stall_mysql_moved(&s, 6000);
	assert_int_equal(tor_stall_check(&s, 10999, false), TOR_STALL_NONE);
	assert_int_equal(tor_stall_check(&s, 11000, false), TOR_STALL_MYSQL);
	/* Messages acknowledged since the last event, more waiting: the
	 * silence is MySQL's. */
	tor_stall_kafka_moved(&s, 6500);
	assert_int_equal(tor_stall_check(&s, 11000, true), TOR_STALL_MYSQL);
}

/* A relay held by Kafka (a commit retried while Kafka is cut off) reads no
 * events: the silent stream is not MySQL's stall, and the wait is Kafka's
 * once it lasted stall_ms. */
static void
test_stall_kafka_holds_the_relay(void **state)
{
	struct tor_stall s;

	(void)state;
	tor_stall_begin(&s, 4000, 1000, 0);
	tor_stall_kafka_moved(&s, 9000);
	tor_stall_mysql_moved(&s, 9400);
	assert_int_equal(tor_stall_check(&s, 9500, true), TOR_STALL_NONE);
	assert_int_equal(tor_stall_check(&s, 13400, true), TOR_STALL_NONE);
	assert_int_equal(tor_stall_check(&s, 13499, true), TOR_STALL_NONE);
	assert_int_equal(tor_stall_check(&s, 13500, true), TOR_STALL_KAFKA);
}

static void
test_no_stall_in_a_leadership_first_stall_ms(void **state)
{
	struct tor_stall s;

	(void)state;
	tor_stall_begin(&s, 10000, 1000, 100000);
	assert_int_equal(tor_stall_check(&s, 100000, true), TOR_STALL_NONE);
	assert_int_equal(tor_stall_check(&s, 109999, true), TOR_STALL_NONE);
	assert_int_equal(tor_stall_check(&s, 110000, true), TOR_STALL_KAFKA);

	tor_stall_begin(&s, 0, 1000, 0);
	assert_int_equal(tor_stall_check(&s, 1000000, true), TOR_STALL_NONE);
}

static void
test_which_reports_qualify(void **state)
{
	struct tor_position at = { .file = "bin.000003", .pos = 900 };
	struct tor_health h = { .kafka = true, .mysql = true,
	    .head = { .file = "bin.000003", .pos = 900 } };

	(void)state;
	assert_true(tor_health_fits(&h, TOR_STALL_KAFKA, &at));
	/* The binlog did not move: the leader cut from MySQL has no work. */
	assert_false(tor_health_fits(&h, TOR_STALL_MYSQL, &at));
	h.head.pos = 1200;
	assert_true(tor_health_fits(&h, TOR_STALL_MYSQL, &at));
	snprintf(h.head.file, sizeof(h.head.file), "bin.000004");
	h.head.pos = 4;
	assert_true(tor_health_fits(&h, TOR_STALL_MYSQL, &at));
	/* A standby cut from either service cannot do better. */
	h.kafka = false;
	assert_false(tor_health_fits(&h, TOR_STALL_KAFKA, &at));
	assert_false(tor_health_fits(&h, TOR_STALL_MYSQL, &at));
	h.kafka = true;
	h.mysql = false;
	assert_false(tor_health_fits(&h, TOR_STALL_KAFKA, &at));
	h.mysql = true;
	h.head.file[0] = '\0';
	assert_false(tor_health_fits(&h, TOR_STALL_MYSQL, &at));
	assert_false(tor_health_fits(&h, TOR_STALL_NONE, &at));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_report_round_trip),
		cmocka_unit_test(test_report_refuses_other_text),
		cmocka_unit_test(test_idle_leader_never_stalls),
		cmocka_unit_test(test_kafka_stall_after_stall_ms_of_waiting),
		cmocka_unit_test(test_mysql_stall_when_the_stream_is_silent),
		cmocka_unit_test(test_stall_kafka_holds_the_relay),
		cmocka_unit_test(test_no_stall_in_a_leadership_first_stall_ms),
		cmocka_unit_test(test_which_reports_qualify),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
