/*
 * The binlog retention arithmetic: bytes behind the checkpoint, the time
 * of binlog behind it, the server's purge age from its variables, the
 * estimate of when the checkpoint's file may be purged, and the warnings
 * said once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tor/retention.h"

#define U TOR_RETENTION_UNKNOWN

static const struct tor_binlog_file files[] = {
	{ "binlog.000007", 1000 },
	{ "binlog.000008", 2500 },
	{ "binlog.000009", 400 },
};

static void
test_bytes_sum_the_files_before_and_the_offset(void **state)
{
	struct tor_retention_times t = { U, U, U };
	struct tor_retention_view v;

	(void)state;
	assert_int_equal(tor_retention_compute(files, 3, "binlog.000007", 4,
	    &t, 0, 0, &v), 0);
	assert_int_equal(v.headroom_bytes, 4);
	assert_int_equal(v.headroom_s, 0);      /* in the oldest file */
	assert_int_equal(tor_retention_compute(files, 3, "binlog.000008", 123,
	    &t, 0, 0, &v), 0);
	assert_int_equal(v.headroom_bytes, 1000 + 123);
	assert_int_equal(tor_retention_compute(files, 3, "binlog.000009", 300,
	    &t, 0, 0, &v), 0);
	assert_int_equal(v.headroom_bytes, 1000 + 2500 + 300);
	/* Start times unknown: the seconds are too. */
	assert_true(v.headroom_s == U);
}

static void
test_a_purged_checkpoint_file_has_no_headroom(void **state)
{
	struct tor_retention_times t = { 100, 200, 300 };
	struct tor_retention_view v;

	(void)state;
	assert_int_equal(tor_retention_compute(files, 3, "binlog.000006", 900,
	    &t, 3600, 1000, &v), -1);
	assert_int_equal(v.headroom_bytes, 0);
	assert_int_equal(v.headroom_s, 0);
	assert_int_equal(v.purge_in_s, 0);
	assert_int_equal(tor_retention_compute(files, 0, "binlog.000006", 900,
	    &t, 3600, 1000, &v), -1);
	assert_int_equal(tor_retention_find(files, 3, "binlog.000009"), 2);
	assert_int_equal(tor_retention_find(files, 3, "binlog.00000"), -1);
}

static void
test_seconds_from_the_oldest_file_to_the_checkpoints(void **state)
{
	struct tor_retention_times t = { 1700000000, 1700003600, 1700005000 };
	struct tor_retention_view v;

	(void)state;
	tor_retention_compute(files, 3, "binlog.000008", 50, &t, 0, 1700009000,
	    &v);
	assert_int_equal(v.headroom_s, 3600);
	/* A clock set back between the files: never negative. */
	t.checkpoint = 1699999000;
	tor_retention_compute(files, 3, "binlog.000008", 50, &t, 0, 1700009000,
	    &v);
	assert_int_equal(v.headroom_s, 0);
}

static void
test_purge_estimate_follows_the_next_files_start(void **state)
{
	struct tor_retention_times t = { 1700000000, 1700003600, 1700005000 };
	struct tor_retention_view v;

	(void)state;
	/* Its last write was when binlog.000009 began; a day after that the
	 * server may purge it. */
	tor_retention_compute(files, 3, "binlog.000008", 50, &t, 86400,
	    1700005000 + 600, &v);
	assert_int_equal(v.expire_s, 86400);
	assert_int_equal(v.purge_in_s, 86400 - 600);
	/* Overdue: it goes at the next rotation. */
	tor_retention_compute(files, 3, "binlog.000008", 50, &t, 86400,
	    1700005000 + 86400 + 5, &v);
	assert_int_equal(v.purge_in_s, 0);
	/* No expiry, or the checkpoint in the file being written. */
	tor_retention_compute(files, 3, "binlog.000008", 50, &t, 0,
	    1700005000, &v);
	assert_true(v.purge_in_s == TOR_RETENTION_NEVER);
	tor_retention_compute(files, 3, "binlog.000009", 50, &t, 86400,
	    1700005000, &v);
	assert_true(v.purge_in_s == TOR_RETENTION_NEVER);
	/* The next file's start unknown: so is the estimate. */
	t.next = U;
	tor_retention_compute(files, 3, "binlog.000008", 50, &t, 86400,
	    1700005000, &v);
	assert_true(v.purge_in_s == U);
}

static void
test_expire_from_the_servers_variables(void **state)
{
	(void)state;
	/* MariaDB 10.6+ and MySQL 8: the seconds win. */
	assert_int_equal(tor_retention_expire_s("3600", "2", ""), 3600);
	/* MariaDB 10.11 with expire_logs_days = 2 shows both. */
	assert_int_equal(tor_retention_expire_s("172800", "2.000000", ""),
	    172800);
	/* Older servers: days only, fractions allowed. */
	assert_int_equal(tor_retention_expire_s("", "0.5", ""), 43200);
	assert_int_equal(tor_retention_expire_s("0", "3", ""), 3 * 86400);
	assert_int_equal(tor_retention_expire_s("0", "0", ""), 0);
	assert_int_equal(tor_retention_expire_s("", "", ""), 0);
	/* MySQL 8.0.29+: automatic purge off. */
	assert_int_equal(tor_retention_expire_s("2592000", "0", "OFF"), 0);
	assert_int_equal(tor_retention_expire_s("2592000", "0", "ON"), 2592000);
}

static void
test_warnings_once_while_they_hold(void **state)
{
	struct tor_retention r;
	struct tor_retention_view v = { 5000, 0, 86400, 7200 };

	(void)state;
	memset(&r, 0, sizeof(r));
	/* Off by default, and above the thresholds. */
	assert_int_equal(tor_retention_due_warnings(&r, &v, 0, 0), 0);
	assert_int_equal(tor_retention_due_warnings(&r, &v, 5000, 7200000), 0);
	v.headroom_bytes = 4999;
	assert_int_equal(tor_retention_due_warnings(&r, &v, 5000, 7200000),
	    TOR_RETENTION_WARN_BYTES);
	assert_int_equal(tor_retention_due_warnings(&r, &v, 5000, 7200000), 0);
	v.purge_in_s = 7199;
	assert_int_equal(tor_retention_due_warnings(&r, &v, 5000, 7200000),
	    TOR_RETENTION_WARN_PURGE);
	/* Unknown neither warns nor re-arms. */
	v.headroom_bytes = v.purge_in_s = U;
	assert_int_equal(tor_retention_due_warnings(&r, &v, 5000, 7200000), 0);
	v.headroom_bytes = 10;
	v.purge_in_s = 10;
	assert_int_equal(tor_retention_due_warnings(&r, &v, 5000, 7200000), 0);
	/* Back above, then under again: said again. */
	v.headroom_bytes = 6000;
	v.purge_in_s = TOR_RETENTION_NEVER;
	assert_int_equal(tor_retention_due_warnings(&r, &v, 5000, 7200000), 0);
	v.headroom_bytes = 10;
	v.purge_in_s = 0;
	assert_int_equal(tor_retention_due_warnings(&r, &v, 5000, 7200000),
	    TOR_RETENTION_WARN_BYTES | TOR_RETENTION_WARN_PURGE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bytes_sum_the_files_before_and_the_offset),
		cmocka_unit_test(test_a_purged_checkpoint_file_has_no_headroom),
		cmocka_unit_test(test_seconds_from_the_oldest_file_to_the_checkpoints),
		cmocka_unit_test(test_purge_estimate_follows_the_next_files_start),
		cmocka_unit_test(test_expire_from_the_servers_variables),
		cmocka_unit_test(test_warnings_once_while_they_hold),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
