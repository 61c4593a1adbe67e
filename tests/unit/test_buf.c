/*
 * The byte buffer: formatted appends that fit the room there and that do
 * not, and the decimal appends the decoder renders numbers and dates with
 * (they must print what printf's "%0*llu" and "%lld" would), and growth
 * up to a bound.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tor/buf.h"

static void
assert_buf(const struct tor_buf *b, const char *want)
{
	assert_int_equal(b->len, strlen(want));
	assert_memory_equal(b->data, want, b->len);
}

static void
test_appendf_in_room_and_growing(void **state)
{
	struct tor_buf b = { 0 };
	char big[2048];

	(void)state;
	assert_int_equal(tor_buf_appendf(&b, "%s-%d", "a", 7), 0);
	assert_buf(&b, "a-7");
	/* Longer than the room left: formatted again after growing. */
	memset(big, 'x', 299);
	big[299] = '\0';
	assert_int_equal(tor_buf_appendf(&b, "%s", big), 0);
	assert_int_equal(b.len, 3 + 299);
	assert_memory_equal(b.data, "a-7xxx", 6);
	assert_int_equal(b.data[b.len - 1], 'x');
	/* Exactly filling the room (the NUL needs the spare byte). */
	tor_buf_reset(&b);
	memset(big, 'y', b.cap - 1);
	big[b.cap - 1] = '\0';
	assert_int_equal(tor_buf_appendf(&b, "%s", big), 0);
	assert_int_equal(b.len, strlen(big));
	assert_int_equal(b.data[b.len - 1], 'y');
	tor_buf_free(&b);
}

static void
test_append_uint_matches_printf(void **state)
{
	static const uint64_t values[] = { 0, 1, 9, 10, 99, 100, 838, 2026,
	    99999, UINT64_C(18446744073709551615) };
	struct tor_buf b = { 0 };
	char want[64];

	(void)state;
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		for (unsigned int w = 0; w <= 6; w++) {
			tor_buf_reset(&b);
			assert_int_equal(tor_buf_append_uint(&b, values[i], w),
			    0);
			snprintf(want, sizeof(want), "%0*llu", (int)w,
			    (unsigned long long)values[i]);
			if (w == 0)
				snprintf(want, sizeof(want), "%llu",
				    (unsigned long long)values[i]);
			assert_buf(&b, want);
		}
	}
	tor_buf_free(&b);
}

static void
test_append_int_matches_printf(void **state)
{
	static const int64_t values[] = { 0, -1, 1, -128, 127, INT64_MIN,
	    INT64_MAX };
	struct tor_buf b = { 0 };
	char want[64];

	(void)state;
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		tor_buf_reset(&b);
		assert_int_equal(tor_buf_append_int(&b, values[i]), 0);
		snprintf(want, sizeof(want), "%lld", (long long)values[i]);
		assert_buf(&b, want);
	}
	tor_buf_free(&b);
}

/* A buffer with a bound doubles up to it and no further, and refuses
 * what would pass it. */
static void
test_reserve_within(void **state)
{
	struct tor_buf b = { 0 };

	(void)state;
	assert_int_equal(tor_buf_append(&b, "x", 1), 0);
	assert_int_equal(tor_buf_reserve_within(&b, 99, 1000), 0);
	assert_int_equal(b.cap, 128);
	assert_int_equal(tor_buf_reserve_within(&b, 600, 1000), 0);
	assert_int_equal(b.cap, 1000);          /* not 1024 */
	assert_int_equal(tor_buf_reserve_within(&b, 998, 1000), 0);
	assert_int_equal(tor_buf_reserve_within(&b, 999, 1000), -1);
	assert_int_equal(b.cap, 1000);
	assert_int_equal(b.len, 1);
	tor_buf_free(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_appendf_in_room_and_growing),
		cmocka_unit_test(test_append_uint_matches_printf),
		cmocka_unit_test(test_append_int_matches_printf),
		cmocka_unit_test(test_reserve_within),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
