/*
 * MySQL binary JSON to JSON text (see include/tor/binlog_json.h).
 *
 * A binary JSON value is a type byte followed by the value.  Objects and
 * arrays start with a header -- element count, total size, then one entry
 * per key (offset, length) and per value (type, offset-or-inlined-value) --
 * and every offset in the header is relative to the start of that container
 * (the byte after its type byte).  Small containers use 16-bit counts and
 * offsets, large ones 32-bit.  Literals and 16-bit integers always live
 * inside their value entry, 32-bit integers too when the entry is large.
 *
 * The renderer walks the value recursively, handing each child only the
 * bytes of its parent container, so one bounds check per read is enough to
 * stay inside the input.  Offsets may legally point anywhere in the
 * container, including at a value already rendered; the output budget (a
 * multiple of the input size that real documents never approach) is what
 * stops a hostile document from expanding exponentially.
 */
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tor/binlog_json.h"

/* Type bytes of json_binary. */
enum {
	JSONB_SMALL_OBJECT = 0x00,
	JSONB_LARGE_OBJECT = 0x01,
	JSONB_SMALL_ARRAY = 0x02,
	JSONB_LARGE_ARRAY = 0x03,
	JSONB_LITERAL = 0x04,
	JSONB_INT16 = 0x05,
	JSONB_UINT16 = 0x06,
	JSONB_INT32 = 0x07,
	JSONB_UINT32 = 0x08,
	JSONB_INT64 = 0x09,
	JSONB_UINT64 = 0x0a,
	JSONB_DOUBLE = 0x0b,
	JSONB_STRING = 0x0c,
	JSONB_OPAQUE = 0x0f,
};

/* The MySQL field types (enum_field_types) an opaque value may carry that
 * MySQL prints as something other than base64. */
enum {
	MYSQL_TYPE_TIMESTAMP = 7,
	MYSQL_TYPE_DATE = 10,
	MYSQL_TYPE_TIME = 11,
	MYSQL_TYPE_DATETIME = 12,
	MYSQL_TYPE_NEWDECIMAL = 246,
	MYSQL_TYPE_VAR_STRING = 253,
};

/* Real documents render to at most ~6 bytes per input byte (a string of
 * control characters, each becoming \u00XX); anything past this budget is
 * a document whose entries share sub-values to multiply its size. */
#define OUTPUT_PER_INPUT_BYTE	16
#define OUTPUT_SLACK		1024

struct render {
	struct tor_buf *out;
	size_t start;           /* out->len before the value */
	size_t limit;           /* out->len may not grow past this */
	const char *why;        /* the limit's reason, for the message */
	tor_err *err;
};

static int render_value(struct render *, uint8_t, const uint8_t *, size_t,
    int);

static uint16_t
rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t
rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

static uint64_t
rd64(const uint8_t *p)
{
	return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

/* Two's complement reinterpretation without implementation-defined
 * conversions. */
static int64_t
as_signed(uint64_t u, unsigned bits)
{
	uint64_t sign = (uint64_t)1 << (bits - 1);

	if (bits < 64)
		u &= ((uint64_t)1 << bits) - 1;
	if ((u & sign) == 0)
		return (int64_t)u;
	/* u - 2^bits, as (u - sign) - sign without overflowing int64_t. */
	return (int64_t)(u - sign) - (int64_t)(sign - 1) - 1;
}

static int
emit(struct render *r, const void *p, size_t n)
{
	size_t most = r->limit < SIZE_MAX ? r->limit + 1 : SIZE_MAX;

	if (n > r->limit - r->out->len)
		return tor_err_set(r->err, "json: rendered text exceeds %zu "
		    "bytes (%s)", r->limit - r->start, r->why);
	/* The buffer's doubling stops at the limit (and its spare byte). */
	if (tor_buf_reserve_within(r->out, n, most) == -1 ||
	    tor_buf_append(r->out, p, n) == -1)
		return tor_err_set(r->err, "json: out of memory");
	return 0;
}

static int
emit_str(struct render *r, const char *s)
{
	return emit(r, s, strlen(s));
}

/* The variable-length size of strings and opaque values: 7 bits a byte,
 * least significant first, high bit set on every byte but the last.  Five
 * bytes cover the 32-bit maximum. */
static int
read_varlen(struct render *r, const uint8_t *p, size_t avail, uint32_t *len,
    size_t *nbytes)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < 5 && i < avail; i++) {
		v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if ((p[i] & 0x80) == 0) {
			if (v > UINT32_MAX)
				break;
			*len = (uint32_t)v;
			*nbytes = i + 1;
			return 0;
		}
	}
	return tor_err_set(r->err, "json: bad or truncated length field");
}

/* Appends bytes as a JSON string body, escaped as MySQL does: the two
 * quote-like characters and control characters; UTF-8 passes through. */
static int
emit_escaped(struct render *r, const uint8_t *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	char esc[7];
	size_t i, run = 0;

	for (i = 0; i < n; i++) {
		uint8_t c = s[i];
		const char *e = NULL;

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		if (emit(r, s + run, i - run) == -1)
			return -1;
		run = i + 1;
		switch (c) {
		case '"':	e = "\\\""; break;
		case '\\':	e = "\\\\"; break;
		case '\b':	e = "\\b"; break;
		case '\f':	e = "\\f"; break;
		case '\n':	e = "\\n"; break;
		case '\r':	e = "\\r"; break;
		case '\t':	e = "\\t"; break;
		default:
			esc[0] = '\\';
			esc[1] = 'u';
			esc[2] = '0';
			esc[3] = '0';
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 0xf];
			esc[6] = '\0';
			e = esc;
			break;
		}
		if (emit_str(r, e) == -1)
			return -1;
	}
	return emit(r, s + run, n - run);
}

static int
emit_quoted(struct render *r, const uint8_t *s, size_t n)
{
	if (emit(r, "\"", 1) == -1 || emit_escaped(r, s, n) == -1)
		return -1;
	return emit(r, "\"", 1);
}

int
tor_json_quote(struct tor_buf *out, const uint8_t *s, size_t n)
{
	tor_err err;
	struct render r = { out, 0, SIZE_MAX, "", &err };

	return emit_quoted(&r, s, n);
}

/*
 * Doubles as MySQL's my_gcvt(..., MY_GCVT_MAX_FIELD_WIDTH) prints them: the
 * shortest digits that read back as the same double, in fixed notation
 * unless the exponent is below -15 or past 15 with no fraction, then ".0"
 * when the text would otherwise look like an integer.
 */
static int
render_double(struct render *r, double d)
{
	char tmp[40], digits[20], text[48];
	const char *p;
	size_t nd, i, o = 0;
	int prec, exp10, decpt;

	if (!isfinite(d))
		return tor_err_set(r->err, "json: double is not finite");
	for (prec = 0; prec < 17; prec++) {
		snprintf(tmp, sizeof(tmp), "%.*e", prec, d);
		if (strtod(tmp, NULL) == d)
			break;
	}
	/* tmp is "[-]D[.DDD]e(+|-)XX"; collect the digits and the exponent
	 * without assuming the locale's decimal point. */
	nd = 0;
	for (p = tmp; *p != 'e'; p++)
		if (*p >= '0' && *p <= '9')
			digits[nd++] = *p;
	exp10 = atoi(p + 1);
	/* The shortest precision never leaves trailing zeros to strip. */
	decpt = exp10 + 1;      /* digits before the decimal point */

	if (signbit(d))
		text[o++] = '-';
	if (decpt >= -14 && (decpt <= 15 || (int)nd > decpt)) {
		if (decpt <= 0) {
			text[o++] = '0';
			text[o++] = '.';
			for (i = 0; i < (size_t)-decpt; i++)
				text[o++] = '0';
		}
		for (i = 0; i < nd; i++) {
			text[o++] = digits[i];
			if ((int)i + 1 == decpt && i + 1 < nd)
				text[o++] = '.';
		}
		for (i = nd; (int)i < decpt; i++)
			text[o++] = '0';
		if (decpt >= (int)nd) {
			text[o++] = '.';
			text[o++] = '0';
		}
	} else {
		text[o++] = digits[0];
		if (nd > 1) {
			text[o++] = '.';
			for (i = 1; i < nd; i++)
				text[o++] = digits[i];
		}
		o += (size_t)snprintf(text + o, sizeof(text) - o, "e%d",
		    decpt - 1);
	}
	return emit(r, text, o);
}

/* The scalars that may be inlined in a value entry, and the others. */
static int
render_scalar(struct render *r, uint8_t type, const uint8_t *p, size_t avail)
{
	char num[24];
	uint64_t bits;
	double d;
	uint32_t slen;
	size_t n;

	switch (type) {
	case JSONB_LITERAL:
		if (avail < 1)
			break;
		switch (p[0]) {
		case 0:
			return emit_str(r, "null");
		case 1:
			return emit_str(r, "true");
		case 2:
			return emit_str(r, "false");
		}
		return tor_err_set(r->err, "json: unknown literal 0x%02x", p[0]);
	case JSONB_INT16:
		if (avail < 2)
			break;
		snprintf(num, sizeof(num), "%" PRId64, as_signed(rd16(p), 16));
		return emit_str(r, num);
	case JSONB_UINT16:
		if (avail < 2)
			break;
		snprintf(num, sizeof(num), "%u", (unsigned)rd16(p));
		return emit_str(r, num);
	case JSONB_INT32:
		if (avail < 4)
			break;
		snprintf(num, sizeof(num), "%" PRId64, as_signed(rd32(p), 32));
		return emit_str(r, num);
	case JSONB_UINT32:
		if (avail < 4)
			break;
		snprintf(num, sizeof(num), "%" PRIu32, rd32(p));
		return emit_str(r, num);
	case JSONB_INT64:
		if (avail < 8)
			break;
		snprintf(num, sizeof(num), "%" PRId64, as_signed(rd64(p), 64));
		return emit_str(r, num);
	case JSONB_UINT64:
		if (avail < 8)
			break;
		snprintf(num, sizeof(num), "%" PRIu64, rd64(p));
		return emit_str(r, num);
	case JSONB_DOUBLE:
		if (avail < 8)
			break;
		bits = rd64(p);
		memcpy(&d, &bits, sizeof(d));
		return render_double(r, d);
	case JSONB_STRING:
		if (read_varlen(r, p, avail, &slen, &n) == -1)
			return -1;
		if (slen > avail - n)
			return tor_err_set(r->err, "json: string of %" PRIu32
			    " bytes runs past its container", slen);
		return emit_quoted(r, p + n, slen);
	default:
		return tor_err_set(r->err, "json: unknown value type 0x%02x",
		    type);
	}
	return tor_err_set(r->err, "json: value of type 0x%02x truncated",
	    type);
}

/*
 * DECIMAL inside JSON: precision byte, scale byte, then MySQL's binary
 * decimal -- big-endian groups of nine digits in four bytes, a shorter
 * group for the leading integer and trailing fraction digits, the first
 * byte's top bit flipped and every byte inverted when negative.
 */
static int
render_decimal(struct render *r, const uint8_t *p, size_t n)
{
	static const uint8_t dig2bytes[10] = { 0, 1, 1, 2, 2, 3, 3, 4, 4, 4 };
	static const uint32_t pow10[10] = { 1, 10, 100, 1000, 10000, 100000,
	    1000000, 10000000, 100000000, 1000000000 };
	uint8_t b[64];
	char digits[80], text[96];
	unsigned prec, scale, intg, frac, groups[4], ndig[4], sizes[4];
	size_t need, pos, nd = 0, o = 0, i, k, intdigits, start;
	bool neg, nonzero = false;

	if (n < 2)
		return tor_err_set(r->err, "json: truncated decimal");
	prec = p[0];
	scale = p[1];
	if (prec < 1 || prec > 65 || scale > 30 || scale > prec)
		return tor_err_set(r->err, "json: decimal(%u,%u) out of range",
		    prec, scale);
	intg = prec - scale;
	frac = scale;
	/* Leading partial int group, full int groups, full frac groups,
	 * trailing partial frac group. */
	ndig[0] = intg % 9;	sizes[0] = dig2bytes[ndig[0]];	groups[0] = 1;
	ndig[1] = 9;		sizes[1] = 4;	groups[1] = intg / 9;
	ndig[2] = 9;		sizes[2] = 4;	groups[2] = frac / 9;
	ndig[3] = frac % 9;	sizes[3] = dig2bytes[ndig[3]];	groups[3] = 1;
	need = 0;
	for (i = 0; i < 4; i++)
		need += (size_t)sizes[i] * groups[i];
	if (n - 2 != need || need > sizeof(b))
		return tor_err_set(r->err, "json: decimal(%u,%u) needs %zu "
		    "bytes, has %zu", prec, scale, need, n - 2);
	memcpy(b, p + 2, need);
	neg = (b[0] & 0x80) == 0;
	b[0] ^= 0x80;
	if (neg)
		for (i = 0; i < need; i++)
			b[i] ^= 0xff;

	pos = 0;
	for (i = 0; i < 4; i++) {
		for (k = 0; k < groups[i] && sizes[i] > 0; k++) {
			uint32_t v = 0;
			unsigned j;

			for (j = 0; j < sizes[i]; j++)
				v = v << 8 | b[pos++];
			if (v >= pow10[ndig[i]])
				return tor_err_set(r->err, "json: bad digits "
				    "in decimal(%u,%u)", prec, scale);
			if (v != 0)
				nonzero = true;
			nd += (size_t)snprintf(digits + nd, sizeof(digits) - nd,
			    "%0*" PRIu32, (int)ndig[i], v);
		}
	}

	/* digits holds intg integer digits then frac fraction digits. */
	if (neg && nonzero)
		text[o++] = '-';
	intdigits = intg;
	for (start = 0; start < intdigits && digits[start] == '0'; start++)
		;
	if (start == intdigits)
		text[o++] = '0';
	for (i = start; i < intdigits; i++)
		text[o++] = digits[i];
	if (frac > 0) {
		text[o++] = '.';
		for (i = intdigits; i < nd; i++)
			text[o++] = digits[i];
	}
	return emit(r, text, o);
}

/*
 * DATE, TIME, DATETIME and TIMESTAMP inside JSON: MySQL's 8-byte "packed"
 * integer, little-endian: (integer part << 24) + microseconds, negated for
 * negative TIMEs.  For dates the integer part is
 * ((year * 13 + month) << 5 | day) << 17 | hour << 12 | minute << 6 | second,
 * for TIME it is hour << 12 | minute << 6 | second.
 */
static int
render_temporal(struct render *r, uint8_t ftype, const uint8_t *p, size_t n)
{
	char text[64];
	uint64_t u, mag, ipart, ymd, ym, hms;
	unsigned frac, year, month, day, hour, minute, second;
	bool neg;

	if (n != 8)
		return tor_err_set(r->err, "json: temporal value (type %u) of "
		    "%zu bytes, expected 8", ftype, n);
	u = rd64(p);
	neg = (u >> 63) != 0;
	mag = neg ? (uint64_t)0 - u : u;
	frac = (unsigned)(mag & 0xffffff);
	ipart = mag >> 24;
	if (frac > 999999)
		return tor_err_set(r->err, "json: temporal value with %u "
		    "microseconds", frac);

	if (ftype == MYSQL_TYPE_TIME) {
		hour = (unsigned)((ipart >> 12) % 1024);
		minute = (unsigned)((ipart >> 6) % 64);
		second = (unsigned)(ipart % 64);
		snprintf(text, sizeof(text), "\"%s%02u:%02u:%02u.%06u\"",
		    neg ? "-" : "", hour, minute, second, frac);
		return emit_str(r, text);
	}
	ymd = ipart >> 17;
	ym = ymd >> 5;
	hms = ipart % (1 << 17);
	day = (unsigned)(ymd % 32);
	month = (unsigned)(ym % 13);
	if (ym / 13 > 9999)
		return tor_err_set(r->err, "json: temporal value with year "
		    "%" PRIu64, ym / 13);
	year = (unsigned)(ym / 13);
	second = (unsigned)(hms % 64);
	minute = (unsigned)((hms >> 6) % 64);
	hour = (unsigned)(hms >> 12);
	if (ftype == MYSQL_TYPE_DATE)
		snprintf(text, sizeof(text), "\"%04u-%02u-%02u\"", year, month,
		    day);
	else
		snprintf(text, sizeof(text),
		    "\"%04u-%02u-%02u %02u:%02u:%02u.%06u\"", year, month, day,
		    hour, minute, second, frac);
	return emit_str(r, text);
}

/* Other opaque values: "base64:type<N>:<base64>", with MySQL's newline
 * after every 76 characters of base64 (escaped, as it sits in a string). */
static int
render_base64(struct render *r, uint8_t ftype, const uint8_t *p, size_t n)
{
	static const char alphabet[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char head[32], quad[4];
	size_t i, line = 0;

	snprintf(head, sizeof(head), "\"base64:type%u:", (unsigned)ftype);
	if (emit_str(r, head) == -1)
		return -1;
	for (i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		size_t left = n - i;

		if (left > 1)
			v |= (uint32_t)p[i + 1] << 8;
		if (left > 2)
			v |= p[i + 2];
		quad[0] = alphabet[v >> 18 & 63];
		quad[1] = alphabet[v >> 12 & 63];
		quad[2] = left > 1 ? alphabet[v >> 6 & 63] : '=';
		quad[3] = left > 2 ? alphabet[v & 63] : '=';
		if (line == 76) {
			if (emit(r, "\\n", 2) == -1)
				return -1;
			line = 0;
		}
		if (emit(r, quad, 4) == -1)
			return -1;
		line += 4;
	}
	return emit(r, "\"", 1);
}

static int
render_opaque(struct render *r, const uint8_t *p, size_t avail)
{
	uint32_t vlen;
	size_t n;
	uint8_t ftype;

	if (avail < 1)
		return tor_err_set(r->err, "json: truncated opaque value");
	ftype = p[0];
	if (read_varlen(r, p + 1, avail - 1, &vlen, &n) == -1)
		return -1;
	if (vlen > avail - 1 - n)
		return tor_err_set(r->err, "json: opaque value of %" PRIu32
		    " bytes runs past its container", vlen);
	p += 1 + n;
	switch (ftype) {
	case MYSQL_TYPE_NEWDECIMAL:
		return render_decimal(r, p, vlen);
	case MYSQL_TYPE_DATE:
	case MYSQL_TYPE_TIME:
	case MYSQL_TYPE_DATETIME:
	case MYSQL_TYPE_TIMESTAMP:
		return render_temporal(r, ftype, p, vlen);
	case MYSQL_TYPE_VAR_STRING:
		/* MySQL prints strings that a subquery stored as opaque
		 * as plain strings. */
		return emit_quoted(r, p, vlen);
	default:
		return render_base64(r, ftype, p, vlen);
	}
}

static bool
is_inlined(uint8_t type, bool large)
{
	switch (type) {
	case JSONB_LITERAL:
	case JSONB_INT16:
	case JSONB_UINT16:
		return true;
	case JSONB_INT32:
	case JSONB_UINT32:
		return large;
	default:
		return false;
	}
}

/*
 * One object or array.  c points at its element count and avail is what
 * the parent container (or the document) has left from there.
 */
static int
render_container(struct render *r, uint8_t type, const uint8_t *c,
    size_t avail, int depth)
{
	bool large = type == JSONB_LARGE_OBJECT || type == JSONB_LARGE_ARRAY;
	bool object = type == JSONB_SMALL_OBJECT || type == JSONB_LARGE_OBJECT;
	size_t osz = large ? 4 : 2;
	size_t ksz = osz + 2, vsz = 1 + osz;
	uint64_t count, size, hdr, i;

	if (depth >= TOR_JSON_MAX_DEPTH)
		return tor_err_set(r->err, "json: nested deeper than %d",
		    TOR_JSON_MAX_DEPTH);
	if (avail < 2 * osz)
		return tor_err_set(r->err, "json: truncated %s header",
		    object ? "object" : "array");
	count = large ? rd32(c) : rd16(c);
	size = large ? rd32(c + osz) : rd16(c + osz);
	if (size > avail)
		return tor_err_set(r->err, "json: %s of %" PRIu64 " bytes has "
		    "only %zu", object ? "object" : "array", size, avail);
	hdr = 2 * osz + count * (vsz + (object ? ksz : 0));
	if (hdr > size)
		return tor_err_set(r->err, "json: %s header for %" PRIu64
		    " entries exceeds its size %" PRIu64,
		    object ? "object" : "array", count, size);

	if (emit(r, object ? "{" : "[", 1) == -1)
		return -1;
	for (i = 0; i < count; i++) {
		const uint8_t *ve;
		uint64_t voff;

		if (i > 0 && emit(r, ", ", 2) == -1)
			return -1;
		if (object) {
			const uint8_t *ke = c + 2 * osz + i * ksz;
			uint64_t koff = large ? rd32(ke) : rd16(ke);
			uint64_t klen = rd16(ke + osz);

			if (koff < hdr || koff > size || klen > size - koff)
				return tor_err_set(r->err, "json: key %" PRIu64
				    " (offset %" PRIu64 ", length %" PRIu64
				    ") outside its object of %" PRIu64
				    " bytes", i, koff, klen, size);
			if (emit_quoted(r, c + koff, (size_t)klen) == -1 ||
			    emit(r, ": ", 2) == -1)
				return -1;
		}
		ve = c + 2 * osz + (object ? count * ksz : 0) + i * vsz;
		if (is_inlined(ve[0], large)) {
			if (render_scalar(r, ve[0], ve + 1, osz) == -1)
				return -1;
			continue;
		}
		voff = large ? rd32(ve + 1) : rd16(ve + 1);
		if (voff < hdr || voff >= size)
			return tor_err_set(r->err, "json: value %" PRIu64
			    " at offset %" PRIu64 " outside its %s of %" PRIu64
			    " bytes", i, voff, object ? "object" : "array",
			    size);
		if (render_value(r, ve[0], c + voff, (size_t)(size - voff),
		    depth + 1) == -1)
			return -1;
	}
	return emit(r, object ? "}" : "]", 1);
}

static int
render_value(struct render *r, uint8_t type, const uint8_t *p, size_t avail,
    int depth)
{
	switch (type) {
	case JSONB_SMALL_OBJECT:
	case JSONB_LARGE_OBJECT:
	case JSONB_SMALL_ARRAY:
	case JSONB_LARGE_ARRAY:
		return render_container(r, type, p, avail, depth);
	case JSONB_OPAQUE:
		return render_opaque(r, p, avail);
	default:
		return render_scalar(r, type, p, avail);
	}
}

int
tor_json_render(const uint8_t *data, size_t len, size_t max_text,
    struct tor_buf *out, tor_err *err)
{
	struct render r;
	size_t start = out->len, budget;

	r.out = out;
	r.err = err;
	r.start = start;
	r.why = "entries sharing values?";
	if (len > (SIZE_MAX - OUTPUT_SLACK) / OUTPUT_PER_INPUT_BYTE)
		budget = SIZE_MAX;
	else
		budget = len * OUTPUT_PER_INPUT_BYTE + OUTPUT_SLACK;
	if (budget > max_text) {
		budget = max_text;
		r.why = "the most one value may take";
	}
	r.limit = budget > SIZE_MAX - start ? SIZE_MAX : start + budget;

	if (len == 0) {
		if (emit_str(&r, "null") == 0)
			return 0;
	} else if (render_value(&r, data[0], data + 1, len - 1, 0) == 0)
		return 0;
	out->len = start;
	return -1;
}
