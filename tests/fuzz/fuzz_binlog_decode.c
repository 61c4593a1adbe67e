/*
 * libFuzzer target for the binlog decoder.
 *
 * Row decoding needs two events that agree (a TABLE_MAP and a ROWS event),
 * which random bytes almost never produce as one blob; so the input is
 * split: byte 0 picks the ROWS event type and a few format knobs, bytes
 * 1-2 (little-endian) are the length of the TABLE_MAP body that follows,
 * and the rest is the ROWS body.  Both are wrapped in valid common headers
 * with checksums off, parsed, and every row is walked (with the table ids
 * forced equal, so the fuzzer reaches the values).  The whole input is
 * also fed, as raw event and as the body of every other event type, to the
 * remaining parsers.  Seeds (tests/fuzz/corpus/fuzz_binlog_decode) are
 * pairs cut from the real fixture binlogs by
 * tests/tools/make_binlog_fixtures.sh, and inputs at each of the
 * decoder's limits (limit-*, tests/tools/make_limit_seeds.py).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tor/binlog_decode.h"
#include "tor/gtid_set.h"

static const uint8_t rows_types[16] = {
	TOR_EV_WRITE_ROWS_V1, TOR_EV_UPDATE_ROWS_V1, TOR_EV_DELETE_ROWS_V1,
	TOR_EV_WRITE_ROWS_V2, TOR_EV_UPDATE_ROWS_V2, TOR_EV_DELETE_ROWS_V2,
	TOR_EV_MARIADB_WRITE_ROWS_COMPRESSED_V1,
	TOR_EV_MARIADB_UPDATE_ROWS_COMPRESSED_V1,
	TOR_EV_MARIADB_DELETE_ROWS_COMPRESSED_V1,
	TOR_EV_MARIADB_WRITE_ROWS_COMPRESSED,
	TOR_EV_MARIADB_UPDATE_ROWS_COMPRESSED,
	TOR_EV_MARIADB_DELETE_ROWS_COMPRESSED,
	TOR_EV_WRITE_ROWS_V1, TOR_EV_UPDATE_ROWS_V2,
	TOR_EV_MYSQL_PARTIAL_UPDATE_ROWS, TOR_EV_WRITE_ROWS_V0,
};

/* An event of the given type around body, in a fresh heap block so that
 * ASan sees any read past its end. */
static uint8_t *
wrap(uint8_t type, const uint8_t *body, size_t n, size_t *len)
{
	uint8_t *ev = malloc(19 + n);
	size_t size = 19 + n;

	if (ev == NULL)
		return NULL;
	memset(ev, 0, 19);
	ev[4] = type;
	ev[9] = (uint8_t)size;
	ev[10] = (uint8_t)(size >> 8);
	ev[11] = (uint8_t)(size >> 16);
	ev[12] = (uint8_t)(size >> 24);
	if (n > 0)
		memcpy(ev + 19, body, n);
	*len = size;
	return ev;
}

static void
fuzz_pair(const uint8_t *data, size_t size)
{
	struct tor_format fmt;
	struct tor_event tev, rev;
	struct tor_table_map tm;
	struct tor_rows rows;
	struct tor_value *vals;
	uint8_t *tmraw, *rraw;
	size_t tmlen, rlen, n1;
	tor_err err;
	uint8_t knobs;

	if (size < 3)
		return;
	knobs = data[0];
	n1 = (size_t)data[1] | (size_t)data[2] << 8;
	data += 3;
	size -= 3;
	if (n1 > size)
		n1 = size;
	tor_format_init(&fmt, false);
	if (knobs & 0x10)
		fmt.post_header_len[TOR_EV_TABLE_MAP] = 6;
	if (knobs & 0x20)
		fmt.post_header_len[rows_types[knobs & 15]] = 6;
	tmraw = wrap(TOR_EV_TABLE_MAP, data, n1, &tmlen);
	rraw = wrap(rows_types[knobs & 15], data + n1, size - n1, &rlen);
	if (tmraw == NULL || rraw == NULL)
		goto out;
	if (tor_event_parse(tmraw, tmlen, &fmt, &tev, &err) == -1 ||
	    tor_event_parse(rraw, rlen, &fmt, &rev, &err) == -1)
		abort();        /* the headers are ours: must parse */
	if (tor_table_map_parse(&tev, &fmt, &tm, &err) == -1)
		goto out;
	if (knobs & 0x40)
		for (uint32_t i = 0; i < tm.ncols; i++)
			tm.cols[i].charset = 63;
	vals = calloc(tm.ncols, sizeof(*vals));
	if (vals != NULL && tor_rows_parse(&rev, &fmt, &rows, &err) == 0) {
		int rc;

		rows.table_id = tm.table_id;
		while ((rc = tor_rows_next(&rows, &tm, vals, &err)) == 1) {
			/* Touch every byte of every value. */
			volatile uint8_t sink = 0;

			for (uint32_t i = 0; i < tm.ncols; i++)
				for (size_t k = 0; k < vals[i].len; k++)
					sink ^= vals[i].data[k];
			(void)sink;
		}
		tor_rows_free(&rows);
	}
	free(vals);
	tor_table_map_free(&tm);
out:
	free(tmraw);
	free(rraw);
}

/* A PREVIOUS_GTIDS body as a GTID set: what decodes formats, and encodes
 * to bytes that decode to the same set. */
static void
fuzz_gtid_set(const struct tor_event *ev)
{
	struct tor_gtid_set s, back;
	char text[256];
	uint8_t *again;
	size_t len;
	tor_err err;

	/* A body whose intervals overlap, touch or come out of order decodes
	 * to their union (as the server merges them): what must hold is that
	 * the set, encoded, decodes to the same set. */
	tor_gtid_set_init(&s);
	tor_gtid_set_init(&back);
	if (tor_gtid_set_from_previous_gtids(&s, ev, &err) == 0) {
		(void)tor_gtid_set_format(&s, text, sizeof(text));
		len = tor_gtid_set_encoded_len(&s);
		if ((again = malloc(len > 0 ? len : 1)) != NULL) {
			tor_gtid_set_encode(&s, again);
			if (tor_gtid_set_decode(&back, again, len, &err) != 0 ||
			    !tor_gtid_set_equal(&s, &back))
				abort();
			free(again);
		}
	}
	tor_gtid_set_free(&back);
	tor_gtid_set_free(&s);
}

static void
fuzz_whole(const uint8_t *data, size_t size)
{
	static const uint8_t types[] = { TOR_EV_QUERY, TOR_EV_ROTATE,
	    TOR_EV_FORMAT_DESCRIPTION, TOR_EV_XID, TOR_EV_MYSQL_GTID,
	    TOR_EV_MARIADB_GTID, TOR_EV_MARIADB_QUERY_COMPRESSED,
	    TOR_EV_TABLE_MAP, TOR_EV_MYSQL_GTID_TAGGED,
	    TOR_EV_MYSQL_TRANSACTION_PAYLOAD, TOR_EV_MYSQL_PREVIOUS_GTIDS };
	struct tor_format fmt, f2;
	struct tor_event ev;
	tor_err err;

	/* As a raw event, checksummed or not. */
	for (int checksum = 0; checksum < 2; checksum++) {
		tor_format_init(&fmt, checksum);
		if (tor_event_parse(data, size, &fmt, &ev, &err) == 0 &&
		    ev.type == TOR_EV_FORMAT_DESCRIPTION)
			(void)tor_format_parse(&ev, &f2, &err);
	}
	/* As the body of each event type. */
	tor_format_init(&fmt, false);
	for (size_t t = 0; t < sizeof(types); t++) {
		uint8_t *raw;
		size_t len;
		struct tor_query q;
		struct tor_gtid g;
		struct tor_gtid_commit gc;
		struct tor_payload_info pl;
		char file[512];
		uint64_t v;
		const char *s, *n;
		size_t sl, nl;

		if ((raw = wrap(types[t], data, size, &len)) == NULL)
			return;
		if (tor_event_parse(raw, len, &fmt, &ev, &err) == 0) {
			switch (types[t]) {
			case TOR_EV_QUERY:
			case TOR_EV_MARIADB_QUERY_COMPRESSED:
				if (tor_query_parse(&ev, &fmt, &q, &err) == 0)
					tor_query_free(&q);
				break;
			case TOR_EV_ROTATE:
				(void)tor_rotate_parse(&ev, &fmt, file,
				    sizeof(file), &v, &err);
				break;
			case TOR_EV_FORMAT_DESCRIPTION:
				(void)tor_format_parse(&ev, &f2, &err);
				break;
			case TOR_EV_XID:
				(void)tor_xid_parse(&ev, &fmt, &v, &err);
				break;
			case TOR_EV_TABLE_MAP:
				(void)tor_table_map_peek(&ev, &fmt, &v, &s,
				    &sl, &n, &nl, &err);
				break;
			case TOR_EV_MYSQL_TRANSACTION_PAYLOAD:
				(void)tor_payload_parse(&ev, &pl, &err);
				break;
			case TOR_EV_MYSQL_PREVIOUS_GTIDS:
				fuzz_gtid_set(&ev);
				break;
			default:
				if (tor_gtid_parse(&ev, &fmt, &g, &err) == 0)
					(void)tor_gtid_format(&g, file,
					    sizeof(file));
				if (types[t] == TOR_EV_MYSQL_GTID)
					(void)tor_gtid_commit_parse(&ev, &fmt,
					    &gc, &err);
				break;
			}
		}
		free(raw);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_pair(data, size);
	fuzz_whole(data, size);
	return 0;
}
