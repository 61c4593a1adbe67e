/*
 * Unit tests for the MySQL binary JSON renderer (src/binlog_json.c).
 *
 * Every document is written out byte by byte from the format description in
 * MySQL's json_binary.h, with the layout in comments, so the tests check the
 * renderer against the format rather than against a second copy of its own
 * logic.  Offsets inside objects and arrays count from the byte after the
 * type byte (the element count).  All integers are little-endian.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tor/binlog_json.h"

#include "alloc_probe.h"

/* Renders d and compares with want; also checks that the text is appended
 * after what the buffer already held. */
static void
expect_json(const uint8_t *d, size_t n, const char *want)
{
	struct tor_buf out = { 0 };
	tor_err err = { { 0 } };
	int rc;

	assert_int_equal(tor_buf_append(&out, "<", 1), 0);
	rc = tor_json_render(d, n, TOR_JSON_TEXT_MAX, &out, &err);
	if (rc != 0)
		fail_msg("render failed: %s", err.msg);
	assert_int_equal(out.len, 1 + strlen(want));
	assert_memory_equal(out.data, "<", 1);
	if (memcmp(out.data + 1, want, strlen(want)) != 0)
		fail_msg("got %.*s, want %s", (int)out.len - 1,
		    (char *)out.data + 1, want);
	tor_buf_free(&out);
}

/* Renders d and expects failure with a message and the buffer untouched. */
static void
expect_fail(const uint8_t *d, size_t n)
{
	struct tor_buf out = { 0 };
	tor_err err = { { 0 } };

	assert_int_equal(tor_buf_append(&out, "<", 1), 0);
	assert_int_equal(tor_json_render(d, n, TOR_JSON_TEXT_MAX, &out, &err),
	    -1);
	assert_int_equal(out.len, 1);
	assert_true(err.msg[0] != '\0');
	tor_buf_free(&out);
}

/* Every proper prefix of a valid document is malformed. */
static void
expect_every_truncation_fails(const uint8_t *d, size_t n)
{
	size_t i;
	uint8_t *copy;

	for (i = 1; i < n; i++) {
		/* A heap copy of exactly i bytes, so ASan sees any read past
		 * the end. */
		copy = malloc(i);
		assert_non_null(copy);
		memcpy(copy, d, i);
		expect_fail(copy, i);
		free(copy);
	}
}

#define EXPECT(arr, want)	expect_json((arr), sizeof(arr), (want))
#define FAILS(arr)		expect_fail((arr), sizeof(arr))

/* {"a": 1, "b": [true, null]} as a small object. */
static const uint8_t doc_object[] = {
	0x00,                   /* small object */
	0x02, 0x00,             /* 2 members */
	0x1e, 0x00,             /* 30 bytes from the count on */
	0x12, 0x00, 0x01, 0x00, /* key 0 at 18, 1 byte */
	0x13, 0x00, 0x01, 0x00, /* key 1 at 19, 1 byte */
	0x05, 0x01, 0x00,       /* value 0: int16 1, inlined */
	0x02, 0x14, 0x00,       /* value 1: small array at 20 */
	'a', 'b',               /* keys at 18, 19 */
	/* at 20: the array [true, null] */
	0x02, 0x00,             /* 2 elements */
	0x0a, 0x00,             /* 10 bytes */
	0x04, 0x01, 0x00,       /* literal true, inlined */
	0x04, 0x00, 0x00,       /* literal null, inlined */
};

/* [{"k": "v"}, [[]]] as a small array. */
static const uint8_t doc_nested[] = {
	0x02,                   /* small array */
	0x02, 0x00,             /* 2 elements */
	0x23, 0x00,             /* 35 bytes */
	0x00, 0x0a, 0x00,       /* element 0: small object at 10 */
	0x02, 0x18, 0x00,       /* element 1: small array at 24 */
	/* at 10: {"k": "v"} */
	0x01, 0x00,             /* 1 member */
	0x0e, 0x00,             /* 14 bytes */
	0x0b, 0x00, 0x01, 0x00, /* key at 11, 1 byte */
	0x0c, 0x0c, 0x00,       /* value: string at 12 */
	'k',                    /* at 11 */
	0x01, 'v',              /* at 12: length 1, "v" */
	/* at 24: [[]] */
	0x01, 0x00,             /* 1 element */
	0x0b, 0x00,             /* 11 bytes */
	0x02, 0x07, 0x00,       /* small array at 7 */
	0x00, 0x00, 0x04, 0x00, /* at 7: 0 elements, 4 bytes */
};

/* {"a": 70000, "b": "yz"} as a large object. */
static const uint8_t doc_large_object[] = {
	0x01,                           /* large object */
	0x02, 0x00, 0x00, 0x00,         /* 2 members */
	0x23, 0x00, 0x00, 0x00,         /* 35 bytes */
	0x1e, 0x00, 0x00, 0x00, 0x01, 0x00,     /* key 0 at 30, 1 byte */
	0x1f, 0x00, 0x00, 0x00, 0x01, 0x00,     /* key 1 at 31, 1 byte */
	0x07, 0x70, 0x11, 0x01, 0x00,   /* int32 70000, inlined (large) */
	0x0c, 0x20, 0x00, 0x00, 0x00,   /* string at 32 */
	'a', 'b',                       /* at 30, 31 */
	0x02, 'y', 'z',                 /* at 32 */
};

/* DECIMAL(20,10) 1234567890.0123456789 as an opaque value. */
static const uint8_t doc_decimal[] = {
	0x0f,                   /* opaque */
	0xf6,                   /* MYSQL_TYPE_NEWDECIMAL */
	0x0c,                   /* 12 bytes */
	0x14, 0x0a,             /* precision 20, scale 10 */
	/* 10 integer digits: a 1-digit group (1 byte), a 9-digit group
	 * (4 bytes); 10 fraction digits: a 9-digit group, a 1-digit group.
	 * Positive, so only the first byte's top bit is flipped. */
	0x81,                   /* 1 */
	0x0d, 0xfb, 0x38, 0xd2, /* 234567890 */
	0x00, 0xbc, 0x61, 0x4e, /* 012345678 */
	0x09,                   /* 9 */
};

/* DATETIME 2024-01-02 03:04:05.678901 as an opaque value: the packed
 * integer ((((2024 * 13 + 1) << 5 | 2) << 17 | 3 << 12 | 4 << 6 | 5) << 24)
 * + 678901 = 0x19b24431050a5bf5. */
static const uint8_t doc_datetime[] = {
	0x0f, 0x0c, 0x08,       /* opaque, MYSQL_TYPE_DATETIME, 8 bytes */
	0xf5, 0x5b, 0x0a, 0x05, 0x31, 0x44, 0xb2, 0x19,
};

static void
test_empty_is_null(void **state)
{
	(void)state;
	expect_json(NULL, 0, "null");
}

static void
test_literals(void **state)
{
	static const uint8_t null[] = { 0x04, 0x00 };
	static const uint8_t t[] = { 0x04, 0x01 };
	static const uint8_t f[] = { 0x04, 0x02 };
	static const uint8_t bad[] = { 0x04, 0x03 };

	(void)state;
	EXPECT(null, "null");
	EXPECT(t, "true");
	EXPECT(f, "false");
	FAILS(bad);
}

static void
test_int16_uint16(void **state)
{
	static const uint8_t one[] = { 0x05, 0x01, 0x00 };
	static const uint8_t minus1[] = { 0x05, 0xff, 0xff };
	static const uint8_t min[] = { 0x05, 0x00, 0x80 };
	static const uint8_t max[] = { 0x05, 0xff, 0x7f };
	static const uint8_t umax[] = { 0x06, 0xff, 0xff };
	static const uint8_t uzero[] = { 0x06, 0x00, 0x00 };

	(void)state;
	EXPECT(one, "1");
	EXPECT(minus1, "-1");
	EXPECT(min, "-32768");
	EXPECT(max, "32767");
	EXPECT(umax, "65535");
	EXPECT(uzero, "0");
}

static void
test_int32_uint32(void **state)
{
	static const uint8_t min[] = { 0x07, 0x00, 0x00, 0x00, 0x80 };
	static const uint8_t max[] = { 0x07, 0xff, 0xff, 0xff, 0x7f };
	static const uint8_t neg[] = { 0x07, 0x90, 0xee, 0xfe, 0xff };
	static const uint8_t umax[] = { 0x08, 0xff, 0xff, 0xff, 0xff };

	(void)state;
	EXPECT(min, "-2147483648");
	EXPECT(max, "2147483647");
	EXPECT(neg, "-70000");          /* 0xfffeee90 */
	EXPECT(umax, "4294967295");
}

static void
test_int64_uint64(void **state)
{
	static const uint8_t min[] = { 0x09,
	    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80 };
	static const uint8_t max[] = { 0x09,
	    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f };
	static const uint8_t minus2[] = { 0x09,
	    0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t umax[] = { 0x0a,
	    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t big[] = { 0x0a,        /* 2^63 */
	    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80 };

	(void)state;
	EXPECT(min, "-9223372036854775808");
	EXPECT(max, "9223372036854775807");
	EXPECT(minus2, "-2");
	EXPECT(umax, "18446744073709551615");
	EXPECT(big, "9223372036854775808");
}

static void
test_double(void **state)
{
	/* IEEE 754 binary64, little-endian. */
	static const uint8_t pi[] = { 0x0b,         /* 3.14 */
	    0x1f, 0x85, 0xeb, 0x51, 0xb8, 0x1e, 0x09, 0x40 };
	static const uint8_t googol[] = { 0x0b,     /* 1e100 */
	    0x7d, 0xc3, 0x94, 0x25, 0xad, 0x49, 0xb2, 0x54 };
	static const uint8_t two[] = { 0x0b,        /* 2.0 */
	    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40 };
	static const uint8_t mhalf[] = { 0x0b,      /* -0.5 */
	    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xe0, 0xbf };
	static const uint8_t tenth[] = { 0x0b,      /* 0.1 */
	    0x9a, 0x99, 0x99, 0x99, 0x99, 0x99, 0xb9, 0x3f };
	static const uint8_t sum[] = { 0x0b,        /* 0.1 + 0.2 */
	    0x34, 0x33, 0x33, 0x33, 0x33, 0x33, 0xd3, 0x3f };
	static const uint8_t e_7[] = { 0x0b,        /* 1e-7 */
	    0x48, 0xaf, 0xbc, 0x9a, 0xf2, 0xd7, 0x7a, 0x3e };
	static const uint8_t e_15[] = { 0x0b,       /* 1e-15 */
	    0x16, 0x56, 0xe7, 0x9e, 0xaf, 0x03, 0xd2, 0x3c };
	static const uint8_t e_16[] = { 0x0b,       /* 1e-16 */
	    0xbc, 0x89, 0xd8, 0x97, 0xb2, 0xd2, 0x9c, 0x3c };
	static const uint8_t e14[] = { 0x0b,        /* 1e14 */
	    0x00, 0x00, 0x90, 0x1e, 0xc4, 0xbc, 0xd6, 0x42 };
	static const uint8_t e15[] = { 0x0b,        /* 1e15 */
	    0x00, 0x00, 0x34, 0x26, 0xf5, 0x6b, 0x0c, 0x43 };
	static const uint8_t big[] = { 0x0b,        /* 1.5e300 */
	    0x35, 0x58, 0x00, 0x66, 0x2d, 0xeb, 0x41, 0x7e };
	static const uint8_t dmin[] = { 0x0b,       /* -DBL_MIN */
	    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x80 };
	static const uint8_t mzero[] = { 0x0b,      /* -0.0 */
	    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80 };
	static const uint8_t nan[] = { 0x0b,
	    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf8, 0x7f };
	static const uint8_t inf[] = { 0x0b,
	    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0, 0x7f };

	(void)state;
	EXPECT(pi, "3.14");
	EXPECT(googol, "1e100");
	EXPECT(two, "2.0");
	EXPECT(mhalf, "-0.5");
	EXPECT(tenth, "0.1");
	EXPECT(sum, "0.30000000000000004");
	EXPECT(e_7, "0.0000001");
	EXPECT(e_15, "0.000000000000001");
	EXPECT(e_16, "1e-16");
	EXPECT(e14, "100000000000000.0");
	EXPECT(e15, "1e15");
	EXPECT(big, "1.5e300");
	EXPECT(dmin, "-2.2250738585072014e-308");
	EXPECT(mzero, "-0.0");
	FAILS(nan);
	FAILS(inf);
}

static void
test_short_string(void **state)
{
	static const uint8_t hello[] = { 0x0c, 0x05, 'h', 'e', 'l', 'l', 'o' };
	static const uint8_t empty[] = { 0x0c, 0x00 };
	/* "é€" in UTF-8 passes through untouched. */
	static const uint8_t utf8[] = { 0x0c, 0x05,
	    0xc3, 0xa9, 0xe2, 0x82, 0xac };

	(void)state;
	EXPECT(hello, "\"hello\"");
	EXPECT(empty, "\"\"");
	EXPECT(utf8, "\"\xc3\xa9\xe2\x82\xac\"");
}

static void
test_long_string(void **state)
{
	/* 200 bytes need two length bytes: 200 = 0x48 | 1 << 7, low seven
	 * bits first with the continuation bit set. */
	uint8_t doc[1 + 2 + 200];
	char want[2 + 200 + 1];

	(void)state;
	doc[0] = 0x0c;
	doc[1] = 0xc8;
	doc[2] = 0x01;
	memset(doc + 3, 'a', 200);
	want[0] = '"';
	memset(want + 1, 'a', 200);
	want[201] = '"';
	want[202] = '\0';
	expect_json(doc, sizeof(doc), want);
	expect_every_truncation_fails(doc, sizeof(doc));
}

static void
test_string_escapes(void **state)
{
	static const uint8_t doc[] = { 0x0c, 0x0d,
	    '"', '\\', '\n', '\t', '\b', '\f', '\r', 0x01, 0x1f, 0x00, '/',
	    0x7f, 'x' };

	(void)state;
	EXPECT(doc, "\"\\\"\\\\\\n\\t\\b\\f\\r\\u0001\\u001f\\u0000/\x7fx\"");
}

static void
test_small_object(void **state)
{
	(void)state;
	EXPECT(doc_object, "{\"a\": 1, \"b\": [true, null]}");
}

static void
test_small_array_inlined_and_not(void **state)
{
	/* [70000, 65535, -1, "x"]: in a small array int32 is stored after
	 * the header, uint16 sits in its entry. */
	static const uint8_t doc[] = {
		0x02,                   /* small array */
		0x04, 0x00,             /* 4 elements */
		0x1e, 0x00,             /* 30 bytes */
		0x07, 0x10, 0x00,       /* int32 at 16 */
		0x06, 0xff, 0xff,       /* uint16 65535, inlined */
		0x09, 0x14, 0x00,       /* int64 at 20 */
		0x0c, 0x1c, 0x00,       /* string at 28 */
		0x70, 0x11, 0x01, 0x00, /* at 16: 70000 */
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* at 20: -1 */
		0x01, 'x',              /* at 28 */
	};

	(void)state;
	EXPECT(doc, "[70000, 65535, -1, \"x\"]");
	expect_every_truncation_fails(doc, sizeof(doc));
}

static void
test_nested(void **state)
{
	(void)state;
	EXPECT(doc_nested, "[{\"k\": \"v\"}, [[]]]");
}

static void
test_empty_containers(void **state)
{
	static const uint8_t obj[] = { 0x00, 0x00, 0x00, 0x04, 0x00 };
	static const uint8_t arr[] = { 0x02, 0x00, 0x00, 0x04, 0x00 };
	static const uint8_t lobj[] = { 0x01,
	    0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00 };
	static const uint8_t larr[] = { 0x03,
	    0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00 };

	(void)state;
	EXPECT(obj, "{}");
	EXPECT(arr, "[]");
	EXPECT(lobj, "{}");
	EXPECT(larr, "[]");
}

static void
test_large_object(void **state)
{
	(void)state;
	EXPECT(doc_large_object, "{\"a\": 70000, \"b\": \"yz\"}");
}

static void
test_large_array(void **state)
{
	/* [true, -5, 4294967295, [1]]: a large array inlines int16, uint32
	 * and literals in its 4-byte entry slots. */
	static const uint8_t doc[] = {
		0x03,                           /* large array */
		0x04, 0x00, 0x00, 0x00,         /* 4 elements */
		0x23, 0x00, 0x00, 0x00,         /* 35 bytes */
		0x04, 0x01, 0x00, 0x00, 0x00,   /* true */
		0x05, 0xfb, 0xff, 0x00, 0x00,   /* int16 -5 */
		0x08, 0xff, 0xff, 0xff, 0xff,   /* uint32 4294967295 */
		0x02, 0x1c, 0x00, 0x00, 0x00,   /* small array at 28 */
		/* at 28: [1] */
		0x01, 0x00, 0x07, 0x00, 0x05, 0x01, 0x00,
	};

	(void)state;
	EXPECT(doc, "[true, -5, 4294967295, [1]]");
	expect_every_truncation_fails(doc, sizeof(doc));
}

static void
test_opaque_decimal(void **state)
{
	/* DECIMAL(3,2): one 1-digit integer group, one 2-digit fraction
	 * group, a byte each. */
	static const uint8_t pi[] = { 0x0f, 0xf6, 0x04,
	    0x03, 0x02, 0x83, 0x0e };           /* 0x03 ^ 0x80, 14 */
	/* -3.14: every byte of 03 0e inverted, then the top bit flipped. */
	static const uint8_t mpi[] = { 0x0f, 0xf6, 0x04,
	    0x03, 0x02, 0x7c, 0xf1 };
	/* DECIMAL(5,2) 0.50: a 3-digit integer group in 2 bytes. */
	static const uint8_t half[] = { 0x0f, 0xf6, 0x05,
	    0x05, 0x02, 0x80, 0x00, 0x32 };
	/* DECIMAL(4,0) 42: no fraction. */
	static const uint8_t answer[] = { 0x0f, 0xf6, 0x04,
	    0x04, 0x00, 0x80, 0x2a };
	/* 3 bytes of data for DECIMAL(3,2), which needs 2. */
	static const uint8_t badlen[] = { 0x0f, 0xf6, 0x05,
	    0x03, 0x02, 0x83, 0x0e, 0x00 };
	/* A 2-digit fraction group holding 100. */
	static const uint8_t baddigits[] = { 0x0f, 0xf6, 0x04,
	    0x03, 0x02, 0x83, 0x64 };
	/* Precision 70 is beyond DECIMAL's 65. */
	static const uint8_t badprec[] = { 0x0f, 0xf6, 0x04,
	    0x46, 0x02, 0x83, 0x0e };

	(void)state;
	EXPECT(pi, "3.14");
	EXPECT(mpi, "-3.14");
	EXPECT(half, "0.50");
	EXPECT(answer, "42");
	EXPECT(doc_decimal, "1234567890.0123456789");
	FAILS(badlen);
	FAILS(baddigits);
	FAILS(badprec);
	expect_every_truncation_fails(doc_decimal, sizeof(doc_decimal));
}

static void
test_opaque_temporal(void **state)
{
	/* DATE 2024-01-02: the DATETIME packing with a zero time. */
	static const uint8_t date[] = { 0x0f, 0x0a, 0x08,
	    0x00, 0x00, 0x00, 0x00, 0x00, 0x44, 0xb2, 0x19 };
	/* TIMESTAMP 2038-01-19 03:14:07. */
	static const uint8_t ts[] = { 0x0f, 0x07, 0x08,
	    0x00, 0x00, 0x00, 0x87, 0x33, 0xe6, 0xdf, 0x19 };
	/* TIME -12:34:56.5: -(((12 << 12 | 34 << 6 | 56) << 24) + 500000). */
	static const uint8_t negtime[] = { 0x0f, 0x0b, 0x08,
	    0xe0, 0x5e, 0xf8, 0x47, 0x37, 0xff, 0xff, 0xff };
	/* TIME 838:59:59, the largest MySQL allows. */
	static const uint8_t maxtime[] = { 0x0f, 0x0b, 0x08,
	    0x00, 0x00, 0x00, 0xfb, 0x6e, 0x34, 0x00, 0x00 };
	/* A DATETIME of 7 bytes. */
	static const uint8_t short7[] = { 0x0f, 0x0c, 0x07,
	    0xf5, 0x5b, 0x0a, 0x05, 0x31, 0x44, 0xb2 };
	/* INT64_MIN as a DATETIME: negation must not overflow. */
	static const uint8_t intmin[] = { 0x0f, 0x0c, 0x08,
	    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80 };

	(void)state;
	EXPECT(doc_datetime, "\"2024-01-02 03:04:05.678901\"");
	EXPECT(date, "\"2024-01-02\"");
	EXPECT(ts, "\"2038-01-19 03:14:07.000000\"");
	EXPECT(negtime, "\"-12:34:56.500000\"");
	EXPECT(maxtime, "\"838:59:59.000000\"");
	FAILS(short7);
	FAILS(intmin);
	expect_every_truncation_fails(doc_datetime, sizeof(doc_datetime));
}

static void
test_opaque_other(void **state)
{
	/* MYSQL_TYPE_BLOB (252) "ab". */
	static const uint8_t blob[] = { 0x0f, 0xfc, 0x02, 'a', 'b' };
	/* MYSQL_TYPE_VARCHAR (15), one byte. */
	static const uint8_t vc[] = { 0x0f, 0x0f, 0x01, 0xff };
	/* MYSQL_TYPE_VAR_STRING (253) prints as a plain string. */
	static const uint8_t vs[] = { 0x0f, 0xfd, 0x03, 'a', '"', 'b' };
	/* Empty BLOB. */
	static const uint8_t empty[] = { 0x0f, 0xfc, 0x00 };
	/* 60 zero bytes: 80 base64 characters, broken after 76 as MySQL's
	 * base64 encoder does. */
	uint8_t zeros[3 + 60];
	char want[128];

	(void)state;
	EXPECT(blob, "\"base64:type252:YWI=\"");
	EXPECT(vc, "\"base64:type15:/w==\"");
	EXPECT(vs, "\"a\\\"b\"");
	EXPECT(empty, "\"base64:type252:\"");
	zeros[0] = 0x0f;
	zeros[1] = 0xfc;
	zeros[2] = 60;
	memset(zeros + 3, 0, 60);
	strcpy(want, "\"base64:type252:");
	memset(want + strlen(want), 'A', 76);
	want[16 + 76] = '\0';
	strcat(want, "\\nAAAA\"");
	expect_json(zeros, sizeof(zeros), want);
}

static void
test_truncation_everywhere(void **state)
{
	(void)state;
	expect_every_truncation_fails(doc_object, sizeof(doc_object));
	expect_every_truncation_fails(doc_nested, sizeof(doc_nested));
	expect_every_truncation_fails(doc_large_object,
	    sizeof(doc_large_object));
}

static void
test_offsets_out_of_bounds(void **state)
{
	uint8_t doc[sizeof(doc_object)];

	(void)state;
	/* Value 1 (bytes 17-18) at 30, the object's size. */
	memcpy(doc, doc_object, sizeof(doc));
	doc[17] = 0x1e;
	FAILS(doc);
	/* Value 1 at 0xffff. */
	memcpy(doc, doc_object, sizeof(doc));
	doc[17] = 0xff;
	doc[18] = 0xff;
	FAILS(doc);
	/* Value 1 inside the header (offset 2). */
	memcpy(doc, doc_object, sizeof(doc));
	doc[17] = 0x02;
	FAILS(doc);
	/* Object size 31, one more than the document has. */
	memcpy(doc, doc_object, sizeof(doc));
	doc[3] = 0x1f;
	FAILS(doc);
	/* Inner array size 11 runs past the object. */
	memcpy(doc, doc_object, sizeof(doc));
	doc[23] = 0x0b;
	FAILS(doc);
}

static void
test_key_out_of_bounds(void **state)
{
	uint8_t doc[sizeof(doc_object)];

	(void)state;
	/* Key 1 (bytes 9-12) at 30. */
	memcpy(doc, doc_object, sizeof(doc));
	doc[9] = 0x1e;
	FAILS(doc);
	/* Key 1 of 12 bytes from 19 ends at 31. */
	memcpy(doc, doc_object, sizeof(doc));
	doc[11] = 0x0c;
	FAILS(doc);
	/* Key 1 of 0xffff bytes. */
	memcpy(doc, doc_object, sizeof(doc));
	doc[11] = 0xff;
	doc[12] = 0xff;
	FAILS(doc);
	/* Key 0 pointing into the header. */
	memcpy(doc, doc_object, sizeof(doc));
	doc[5] = 0x04;
	FAILS(doc);
}

static void
test_header_larger_than_container(void **state)
{
	/* 65535 elements in 4 bytes. */
	static const uint8_t arr[] = { 0x02, 0xff, 0xff, 0x04, 0x00 };
	/* 2^32 - 1 members in a large object of 8 bytes. */
	static const uint8_t obj[] = { 0x01,
	    0xff, 0xff, 0xff, 0xff, 0x08, 0x00, 0x00, 0x00 };
	/* Size smaller than the two header fields. */
	static const uint8_t tiny[] = { 0x02, 0x00, 0x00, 0x02, 0x00 };

	(void)state;
	FAILS(arr);
	FAILS(obj);
	FAILS(tiny);
}

static void
test_bad_types_and_lengths(void **state)
{
	static const uint8_t type0d[] = { 0x0d, 0x00 };
	static const uint8_t typeff[] = { 0xff, 0x00 };
	/* An array element of unknown type 0x0e at offset 7. */
	static const uint8_t elem[] = { 0x02, 0x01, 0x00, 0x08, 0x00,
	    0x0e, 0x07, 0x00, 0x00 };
	/* Length field with the continuation bit on all five bytes. */
	static const uint8_t len6[] = { 0x0c, 0xff, 0xff, 0xff, 0xff, 0xff,
	    0x00 };
	/* Five-byte length above 2^32 - 1. */
	static const uint8_t len33[] = { 0x0c, 0xff, 0xff, 0xff, 0xff, 0x7f };
	/* String claiming 5 bytes, with 4. */
	static const uint8_t str[] = { 0x0c, 0x05, 'a', 'b', 'c', 'd' };
	/* Opaque claiming 3 bytes, with 2. */
	static const uint8_t opq[] = { 0x0f, 0xfc, 0x03, 'a', 'b' };

	(void)state;
	FAILS(type0d);
	FAILS(typeff);
	FAILS(elem);
	FAILS(len6);
	FAILS(len33);
	FAILS(str);
	FAILS(opq);
}

/*
 * Nests n arrays, each [child]: a 7-byte header (1 element, size, entry
 * "small array at 7") around the next, and [] innermost.  Sizes are the
 * only computed bytes: level k from the inside is 4 + 7k bytes.
 */
static uint8_t *
nested_arrays(int n, size_t *len)
{
	uint8_t *d, *p;
	int k;

	*len = 1 + 7 * (size_t)(n - 1) + 4;
	d = malloc(*len);
	assert_non_null(d);
	p = d;
	*p++ = 0x02;
	for (k = n - 1; k >= 1; k--) {
		size_t size = 4 + 7 * (size_t)k;

		*p++ = 0x01;
		*p++ = 0x00;
		*p++ = (uint8_t)size;
		*p++ = (uint8_t)(size >> 8);
		*p++ = 0x02;
		*p++ = 0x07;
		*p++ = 0x00;
	}
	memcpy(p, "\x00\x00\x04\x00", 4);
	return d;
}

static void
test_depth_limit(void **state)
{
	struct tor_buf out = { 0 };
	tor_err err;
	uint8_t *d;
	size_t len;
	int i;

	(void)state;
	/* 100 levels, MySQL's own limit, render. */
	d = nested_arrays(TOR_JSON_MAX_DEPTH, &len);
	assert_int_equal(tor_json_render(d, len, TOR_JSON_TEXT_MAX, &out,
	    &err), 0);
	assert_int_equal(out.len, 2 * TOR_JSON_MAX_DEPTH);
	for (i = 0; i < TOR_JSON_MAX_DEPTH; i++) {
		assert_int_equal(out.data[i], '[');
		assert_int_equal(out.data[out.len - 1 - i], ']');
	}
	free(d);
	tor_buf_free(&out);
	/* 101 do not; nor does a bomb far deeper. */
	d = nested_arrays(TOR_JSON_MAX_DEPTH + 1, &len);
	expect_fail(d, len);
	free(d);
	d = nested_arrays(9000, &len);
	expect_fail(d, len);
	free(d);
}

static void
test_shared_values_blowup(void **state)
{
	/*
	 * 40 levels of [x, x] where both entries point at the same child:
	 * 2^40 leaves from 400 bytes.  Level k from the inside is
	 * 4 + 10k bytes; the innermost is [].
	 */
	enum { LEVELS = 40 };
	uint8_t d[1 + 10 * LEVELS + 4], *p = d;
	int k;

	(void)state;
	*p++ = 0x02;
	for (k = LEVELS; k >= 1; k--) {
		size_t size = 4 + 10 * (size_t)k;

		*p++ = 0x02;
		*p++ = 0x00;
		*p++ = (uint8_t)size;
		*p++ = (uint8_t)(size >> 8);
		memcpy(p, "\x02\x0a\x00\x02\x0a\x00", 6);  /* both at 10 */
		p += 6;
	}
	memcpy(p, "\x00\x00\x04\x00", 4);
	expect_fail(d, sizeof(d));
}

/*
 * A large array of 16 entries that all point at one string of 64 MiB:
 * [s, s, ..., s].  Layout after the type byte 0x03: count (4), size (4),
 * 16 value entries of type 0x0c and a 4-byte offset, all 88 (the byte
 * after the header), then the string: its length in 7-bit groups, and
 * its bytes.
 */
static void
put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint8_t *
sixteen_times(size_t len, size_t *n)
{
	size_t size = 88 + 4 + len;
	uint8_t *d = malloc(1 + size), *p = d;

	assert_non_null(d);
	*p++ = 0x03;
	put32(p, 16);
	put32(p + 4, (uint32_t)size);
	p += 8;
	for (int i = 0; i < 16; i++) {
		*p++ = 0x0c;
		put32(p, 88);
		p += 4;
	}
	for (int i = 0; i < 4; i++)
		*p++ = (uint8_t)(len >> (7 * i) & 0x7f) | (i < 3 ? 0x80 : 0);
	memset(p, 'a', len);
	*n = 1 + size;
	return d;
}

/* The text of one value is bounded by its size (16 times, for entries
 * that share values) and by the caller's max_text: TOR_JSON_TEXT_MAX, 1
 * GiB, for a column.  There was no such bound: a 64 MiB document of
 * sixteen entries sharing one string rendered to 1 GiB and 64 bytes, in a
 * buffer that doubled to 2 GiB (11 s under ASan).  The same shape at
 * 64 KiB against a max_text of 1 MiB: refused, and the buffer never grows
 * past the bound, though doubling would take it to 2 MiB. */
static void
test_text_limit(void **state)
{
	const size_t most = 1u << 20;
	struct tor_buf out = { 0 };
	tor_err err = { { 0 } };
	size_t n;
	uint8_t *d = sixteen_times(64u << 10, &n);

	(void)state;
	assert_true(16 * (64u << 10) + 64 <= 16 * n + 1024);
	alloc_probe_start();
	assert_int_equal(tor_json_render(d, n, most, &out, &err), -1);
	alloc_probe_stop();
	printf("  %zu bytes of JSON: %s, largest allocation %zu\n", n,
	    err.msg, alloc_probe.largest);
	assert_string_equal(err.msg, "json: rendered text exceeds 1048576 "
	    "bytes (the most one value may take)");
	assert_int_equal(out.len, 0);
	assert_true(alloc_probe.largest <= most + 1);
	/* With room for it, the text is all there. */
	assert_int_equal(tor_json_render(d, n, most + 64, &out, &err), 0);
	assert_int_equal(out.len, most + 64);
	assert_memory_equal(out.data, "[\"aaa", 5);
	assert_memory_equal(out.data + out.len - 5, "aaa\"]", 5);
	tor_buf_free(&out);
	free(d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_is_null),
		cmocka_unit_test(test_literals),
		cmocka_unit_test(test_int16_uint16),
		cmocka_unit_test(test_int32_uint32),
		cmocka_unit_test(test_int64_uint64),
		cmocka_unit_test(test_double),
		cmocka_unit_test(test_short_string),
		cmocka_unit_test(test_long_string),
		cmocka_unit_test(test_string_escapes),
		cmocka_unit_test(test_small_object),
		cmocka_unit_test(test_small_array_inlined_and_not),
		cmocka_unit_test(test_nested),
		cmocka_unit_test(test_empty_containers),
		cmocka_unit_test(test_large_object),
		cmocka_unit_test(test_large_array),
		cmocka_unit_test(test_opaque_decimal),
		cmocka_unit_test(test_opaque_temporal),
		cmocka_unit_test(test_opaque_other),
		cmocka_unit_test(test_truncation_everywhere),
		cmocka_unit_test(test_offsets_out_of_bounds),
		cmocka_unit_test(test_key_out_of_bounds),
		cmocka_unit_test(test_header_larger_than_container),
		cmocka_unit_test(test_bad_types_and_lengths),
		cmocka_unit_test(test_depth_limit),
		cmocka_unit_test(test_shared_values_blowup),
		cmocka_unit_test(test_text_limit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
