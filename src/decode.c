/*
 * tor decode: binlog files on disk through the relay's reader (see
 * include/tor/decode.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "tor/binlog_json.h"
#include "tor/buf.h"
#include "tor/decode.h"
#include "tor/metrics.h"
#include "tor/outbox.h"
#include "tor/reader.h"

#define HEADER_LEN 19

static const uint8_t magic[4] = { 0xfe, 'b', 'i', 'n' };

struct decode {
	FILE *out;
	const char *file;               /* being read: its name as given */
	uint64_t at;                    /* where the event being fed starts */
	uint64_t seq;
	uint64_t messages, skipped;
	struct tor_outbox *ob;          /* the reader's: for outbox.route */
};

static bool
is_utf8(const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t c = p[i];
		size_t more;
		uint32_t cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			more = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			more = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			more = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (n - i <= more)
			return false;
		for (size_t k = 1; k <= more; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		/* Overlong forms, surrogates and beyond U+10FFFF. */
		if ((more == 2 && cp < 0x800) || (more == 3 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return false;
		i += more + 1;
	}
	return true;
}

static void
put_string(FILE *out, const char *s, size_t n)
{
	struct tor_buf b = { 0 };

	if (tor_json_quote(&b, (const uint8_t *)s, n) == 0)
		fwrite(b.data, 1, b.len, out);
	else
		fputs("null", out);
	tor_buf_free(&b);
}

static void
put_cstring(FILE *out, const char *s)
{
	put_string(out, s, strlen(s));
}

/* Bytes: a string when they are UTF-8, else {"base64": ...}; NULL null. */
static void
put_bytes(FILE *out, const uint8_t *p, size_t n)
{
	char *b64;
	size_t cap;

	if (p == NULL) {
		fputs("null", out);
		return;
	}
	if (is_utf8(p, n)) {
		put_string(out, (const char *)p, n);
		return;
	}
	cap = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
	if ((b64 = malloc(cap)) == NULL) {
		fputs("null", out);
		return;
	}
	sodium_bin2base64(b64, cap, p, n, sodium_base64_VARIANT_ORIGINAL);
	fputs("{\"base64\": ", out);
	put_cstring(out, b64);
	fputc('}', out);
	free(b64);
}

static int
on_begin(void *ctx, uint64_t *seq, tor_err *err)
{
	struct decode *d = ctx;

	(void)err;
	*seq = ++d->seq;
	return 0;
}

static void print_message(struct decode *d, const char *topic,
    const struct tor_message *msg, const struct tor_row_origin *origin);

/* One line per message: with outbox.route = all, one per topic. */
static int
on_row(void *ctx, uint64_t seq, struct tor_message *msg,
    const struct tor_row_origin *origin, tor_err *err)
{
	struct decode *d = ctx;
	const char *const *topics;
	size_t n;

	(void)seq;
	(void)err;
	n = tor_outbox_topics(d->ob, msg, &topics);
	for (size_t i = 0; i < n; i++)
		print_message(d, topics[i], msg, origin);
	return 0;
}

static void
print_message(struct decode *d, const char *topic,
    const struct tor_message *msg, const struct tor_row_origin *origin)
{
	fputs("{\"message\": {\"topic\": ", d->out);
	put_cstring(d->out, topic);
	fputs(", \"key\": ", d->out);
	put_bytes(d->out, msg->key, msg->key_len);
	fputs(", \"value\": ", d->out);
	put_bytes(d->out, msg->value, msg->value_len);
	fputs(", \"headers\": {", d->out);
	for (size_t i = 0; i < msg->n_headers; i++) {
		fputs(i > 0 ? ", " : "", d->out);
		put_cstring(d->out, msg->headers[i].name);
		fputs(": ", d->out);
		put_bytes(d->out, msg->headers[i].value, msg->headers[i].len);
	}
	fputs("}, \"tor.pos\": ", d->out);
	put_cstring(d->out, origin->pos);
	fprintf(d->out, ", \"file\": ");
	put_cstring(d->out, d->file);
	fprintf(d->out, ", \"event\": %" PRIu64 "}}\n", d->at);
	d->messages++;
}

static int
on_commit(void *ctx, const struct tor_reader_end *end, tor_err *err)
{
	(void)ctx;
	(void)end;
	(void)err;
	return 0;
}

static int
on_rotate(void *ctx, const char *file, uint64_t pos, bool positioned,
    tor_err *err)
{
	(void)ctx;
	(void)file;
	(void)pos;
	(void)positioned;
	(void)err;
	return 0;
}

/* No server to ask: the binlog must carry the names. */
static int
on_describe(void *ctx, struct tor_table_map *tm, tor_err *err)
{
	(void)ctx;
	return tor_err_set(err, "%s.%s: the table map lacks column names or "
	    "the fractional digits of old-format temporal columns, which the "
	    "relay reads from information_schema; tor decode has no server "
	    "to ask (binlog_row_metadata=FULL writes the names)", tm->schema,
	    tm->table);
}

static int
on_hold(void *ctx, uint64_t seq, tor_err *err)
{
	(void)ctx;
	(void)seq;
	(void)err;
	return 0;
}

static void
on_release(void *ctx, uint64_t seq)
{
	(void)ctx;
	(void)seq;
}

static void
on_skipped(void *ctx, enum tor_skip_reason why, const char *pos)
{
	static const char *const reasons[TOR_SKIP_N] = { "unrouted",
	    "oversized", "update", "delete" };
	struct decode *d = ctx;

	fputs("{\"skip\": {\"reason\": ", d->out);
	put_cstring(d->out, reasons[why]);
	if (pos != NULL) {
		fputs(", \"tor.pos\": ", d->out);
		put_cstring(d->out, pos);
	}
	fputs(", \"file\": ", d->out);
	put_cstring(d->out, d->file);
	fprintf(d->out, ", \"event\": %" PRIu64 "}}\n", d->at);
	d->skipped++;
}

static const struct tor_reader_ops decode_ops = {
	.begin = on_begin,
	.row = on_row,
	.commit = on_commit,
	.rotate = on_rotate,
	.describe = on_describe,
	.hold = on_hold,
	.release = on_release,
	.skipped = on_skipped,
};

static void
print_halt(struct decode *d, const char *why)
{
	fputs("{\"halt\": {\"file\": ", d->out);
	put_cstring(d->out, d->file);
	fprintf(d->out, ", \"event\": %" PRIu64 ", \"reason\": ", d->at);
	put_cstring(d->out, why);
	fputs("}}\n", d->out);
}

static uint32_t
le32(const uint8_t *b)
{
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
	    (uint32_t)b[3] << 24;
}

/* Reads one file's events into rd: 0 at its end, -1 (printed) else. */
static int
decode_file(struct decode *d, struct tor_reader *rd, const uint8_t *data,
    size_t len, bool all_events, FILE *errout)
{
	tor_err err;

	if (len < sizeof(magic) || memcmp(data, magic, sizeof(magic)) != 0) {
		fprintf(errout, "tor decode: %s: not a binlog file (it does "
		    "not start with the bytes fe 62 69 6e)\n", d->file);
		return -1;
	}
	for (d->at = sizeof(magic); d->at < len;) {
		size_t left = len - d->at;
		uint32_t size;
		uint8_t type;

		if (left < HEADER_LEN) {
			fprintf(errout, "tor decode: %s: offset %" PRIu64 ": "
			    "%zu bytes cannot hold an event header (a file cut "
			    "off, or one still being written)\n", d->file,
			    d->at, left);
			return -1;
		}
		type = data[d->at + 4];
		size = le32(data + d->at + 9);
		if (size < HEADER_LEN || size > left) {
			fprintf(errout, "tor decode: %s: offset %" PRIu64 ": "
			    "event of type %u says it is %u bytes, %zu are "
			    "left in the file\n", d->file, d->at, type, size,
			    left);
			return -1;
		}
		if (all_events) {
			const char *name = tor_event_name(type);

			fputs("{\"event\": {\"file\": ", d->out);
			put_cstring(d->out, d->file);
			fprintf(d->out, ", \"pos\": %" PRIu64 ", \"size\": %u, "
			    "\"type\": ", d->at, size);
			if (name != NULL)
				put_cstring(d->out, name);
			else
				fprintf(d->out, "%u", type);
			fputs("}}\n", d->out);
		}
		if (tor_reader_feed(rd, data + d->at, size, &err) != 0) {
			print_halt(d, err.msg);
			fprintf(errout, "tor decode: %s: offset %" PRIu64 ": %s\n",
			    d->file, d->at, err.msg);
			return -1;
		}
		d->at += size;
	}
	return 0;
}

int
tor_decode_buffer(const struct tor_config *cfg, const char *name,
    const uint8_t *data, size_t len, bool all_events, FILE *out,
    FILE *errout)
{
	struct decode d = { .out = out, .file = name };
	struct tor_position start = { .pos = 4 };
	struct tor_metrics metrics;
	struct tor_outbox *ob;
	struct tor_reader *rd;
	tor_err err;
	int rc;

	memset(&metrics, 0, sizeof(metrics));
	if ((ob = tor_outbox_new(cfg, &err)) == NULL) {
		fprintf(errout, "tor decode: %s\n", err.msg);
		return 1;
	}
	d.ob = ob;
	snprintf(start.file, sizeof(start.file), "%s", name);
	if ((rd = tor_reader_new(cfg, ob, &metrics, &decode_ops, &d,
	    &start)) == NULL) {
		tor_outbox_free(ob);
		fprintf(errout, "tor decode: out of memory\n");
		return 1;
	}
	rc = decode_file(&d, rd, data, len, all_events, errout) < 0 ? 1 : 0;
	tor_reader_free(rd);
	tor_outbox_free(ob);
	return rc;
}

static const char *
base_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash != NULL ? slash + 1 : path;
}

int
tor_decode_files(const struct tor_config *cfg, char *const *files,
    int n_files, bool all_events, FILE *out, FILE *errout)
{
	struct decode d = { .out = out };
	struct tor_metrics metrics;
	struct tor_outbox *ob;
	struct tor_reader *rd = NULL;
	tor_err err;
	int rc = 0;

	memset(&metrics, 0, sizeof(metrics));
	if ((ob = tor_outbox_new(cfg, &err)) == NULL) {
		fprintf(errout, "tor decode: %s\n", err.msg);
		return 1;
	}
	d.ob = ob;
	for (int i = 0; i < n_files && rc == 0; i++) {
		struct tor_position start = { .pos = 4 };
		const struct tor_position *now;
		struct stat st;
		void *map;
		int fd;

		d.file = files[i];
		if ((fd = open(files[i], O_RDONLY)) < 0 || fstat(fd, &st) < 0) {
			fprintf(errout, "tor decode: %s: %s\n", files[i],
			    strerror(errno));
			if (fd >= 0)
				close(fd);
			rc = 1;
			break;
		}
		/* Files given in binlog order read on through their ROTATEs
		 * (an XA prepared in one, committed in the next); any other
		 * file starts a reader of its own. */
		now = rd != NULL ? tor_reader_resume(rd) : NULL;
		if (now == NULL || strcmp(now->file, base_name(files[i])) != 0) {
			tor_reader_free(rd);
			snprintf(start.file, sizeof(start.file), "%s",
			    base_name(files[i]));
			rd = tor_reader_new(cfg, ob, &metrics, &decode_ops, &d,
			    &start);
			if (rd == NULL) {
				fprintf(errout, "tor decode: out of memory\n");
				close(fd);
				rc = 1;
				break;
			}
		}
		tor_reader_reset_format(rd, false);
		map = st.st_size > 0 ? mmap(NULL, (size_t)st.st_size, PROT_READ,
		    MAP_PRIVATE, fd, 0) : NULL;
		close(fd);
		if (st.st_size > 0 && map == MAP_FAILED) {
			fprintf(errout, "tor decode: %s: %s\n", files[i],
			    strerror(errno));
			rc = 1;
			break;
		}
		if (decode_file(&d, rd, map, (size_t)st.st_size, all_events,
		    errout) < 0)
			rc = 1;
		if (map != NULL)
			munmap(map, (size_t)st.st_size);
	}
	tor_reader_free(rd);
	tor_outbox_free(ob);
	fflush(out);
	return rc;
}
