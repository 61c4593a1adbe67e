/*
 * The group's checkpoint: a Redis hash P:{G}:checkpoint (DESIGN.md §3).
 *
 * Three ideas.  The checkpoint is trusted only as far as it parses: decode
 * refuses a hash with a missing or malformed field, naming it, because
 * resuming from a wrong position either loses or replays events — better to
 * halt and say so.  Every write is fenced, and the fence is a Lua script, so
 * the check and the HSET run as one step on the Redis master: the leader's
 * write (tor_checkpoint_store_fenced) goes through only while the lease
 * still holds "<instance> <token>" of the writer, so a zombie that lost its
 * lease while paused cannot move the checkpoint under the new leader.  And
 * the stored epoch (the writer's token) never goes down: a write whose token
 * is below the stored one is refused, by the leader's script and by the
 * operator's (tor_checkpoint_store_operator, which has no lease and so
 * writes with a fresh token) alike.  Positions typed by an operator go
 * through tor_position_parse(), which accepts only the two forms a server
 * can resume from.
 *
 * The fences keep out our own replicas, not whoever else can write to
 * Redis.  Against those, a checkpoint key makes every write carry an
 * HMAC of the group and all the fields, and a hash whose mac is missing
 * or wrong is refused like a malformed one: the relay halts rather than
 * resume from a position someone planted.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "tor/checkpoint.h"
#include "tor/gtid_set.h"
#include "tor/lease.h"

#define BAD_POSITION "bad position '%.300s': expected <file>:<pos> or a " \
	"GTID list like 0-1-42"

/* Reads a decimal number made of digits only (no sign, no space, no
 * empty string) of at most len bytes, up to max.  strtoull alone would
 * accept " -1" and wrap it. */
static bool
parse_decimal(const char *s, size_t len, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (len == 0)
		return false;
	for (i = 0; i < len; i++) {
		unsigned d;

		if (s[i] < '0' || s[i] > '9')
			return false;
		d = (unsigned)(s[i] - '0');
		if (v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/* One MariaDB GTID "D-S-N": domain and server are 32-bit, seq_no 64-bit. */
static bool
parse_gtid(const char *s, size_t len, uint32_t *domain)
{
	const char *d1, *d2, *end = s + len;
	uint64_t d, sv, n;

	if ((d1 = memchr(s, '-', len)) == NULL ||
	    (d2 = memchr(d1 + 1, '-', (size_t)(end - d1 - 1))) == NULL)
		return false;
	if (!parse_decimal(s, (size_t)(d1 - s), UINT32_MAX, &d) ||
	    !parse_decimal(d1 + 1, (size_t)(d2 - d1 - 1), UINT32_MAX, &sv) ||
	    !parse_decimal(d2 + 1, (size_t)(end - d2 - 1), UINT64_MAX, &n))
		return false;
	*domain = (uint32_t)d;
	return true;
}

/* A MySQL server UUID (8-4-4-4-12 hex digits): "uuid:N" is a MySQL GTID,
 * not a binlog file, though it has the same shape. */
static bool
is_uuid(const char *s, size_t len)
{
	size_t i;

	if (len != 36)
		return false;
	for (i = 0; i < len; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (!isxdigit((unsigned char)s[i]))
			return false;
	}
	return true;
}

static int
parse_file_pos(const char *text, const char *colon, struct tor_position *p,
    tor_err *err)
{
	size_t file_len = (size_t)(colon - text);
	uint64_t pos;

	if (is_uuid(text, file_len))
		return tor_err_set(err, BAD_POSITION " (MySQL GTIDs are not "
		    "supported)", text);
	if (file_len == 0 || file_len >= sizeof(p->file) ||
	    memchr(text, '/', file_len) != NULL ||
	    !parse_decimal(colon + 1, strlen(colon + 1), UINT64_MAX, &pos))
		return tor_err_set(err, BAD_POSITION, text);
	/* Bytes 0-3 are the binlog magic: no event starts before 4. */
	if (pos < 4)
		return tor_err_set(err, BAD_POSITION " (the position must be "
		    "at least 4)", text);
	memset(p, 0, sizeof(*p));
	memcpy(p->file, text, file_len);
	p->pos = pos;
	return 0;
}

static int
parse_gtid_list(const char *text, struct tor_position *p, tor_err *err)
{
	const char *part = text, *comma;
	uint32_t domains[sizeof(p->gtid) / 6], domain;
	size_t n = 0, i, len;

	if (strlen(text) >= sizeof(p->gtid))
		return tor_err_set(err, BAD_POSITION " (too long)", text);
	for (;;) {
		comma = strchr(part, ',');
		len = comma != NULL ? (size_t)(comma - part) : strlen(part);
		if (!parse_gtid(part, len, &domain))
			return tor_err_set(err, BAD_POSITION, text);
		/* A GTID state has one position per replication domain; two
		 * would leave the server to pick one. */
		for (i = 0; i < n; i++)
			if (domains[i] == domain)
				return tor_err_set(err, BAD_POSITION " (two GTIDs "
				    "for domain %" PRIu32 ")", text, domain);
		domains[n++] = domain;
		if (comma == NULL)
			break;
		part = comma + 1;
	}
	memset(p, 0, sizeof(*p));
	memcpy(p->gtid, text, strlen(text));
	return 0;
}

int
tor_position_parse(const char *text, struct tor_position *p, tor_err *err)
{
	const char *colon = strchr(text, ':');

	if (colon != NULL)
		return parse_file_pos(text, colon, p, err);
	return parse_gtid_list(text, p, err);
}

static int canonical_gtid_set(const char *text, char out[TOR_GTID_SET_TEXT],
    tor_err *err);

int
tor_position_parse_set(const char *text, struct tor_position *p,
    char gtid_set[TOR_GTID_SET_TEXT], tor_err *err)
{
	gtid_set[0] = '\0';
	if (strlen(text) < 37 || !is_uuid(text, 36) || text[36] != ':')
		return tor_position_parse(text, p, err);
	if (canonical_gtid_set(text, gtid_set, err) == -1)
		return tor_err_prefix(err, "bad position '%.300s': ", text);
	memset(p, 0, sizeof(*p));
	return 0;
}

static unsigned long long
file_sequence(const char *file)
{
	const char *dot = strrchr(file, '.');

	return dot != NULL ? strtoull(dot + 1, NULL, 10) : 0;
}

int
tor_position_compare(const struct tor_position *a,
    const struct tor_position *b)
{
	unsigned long long na, nb;

	if (a->file[0] == '\0' || b->file[0] == '\0')
		return TOR_POSITION_UNORDERED;
	na = file_sequence(a->file);
	nb = file_sequence(b->file);
	if (na != nb)
		return na < nb ? -1 : 1;
	if (a->pos != b->pos)
		return a->pos < b->pos ? -1 : 1;
	return 0;
}

int
tor_position_format(const struct tor_position *p, char *buf, size_t cap)
{
	if (p->file[0] != '\0')
		return snprintf(buf, cap, "%s:%" PRIu64, p->file, p->pos);
	return snprintf(buf, cap, "%s", p->gtid);
}

static const char *const field_names[] = {
	"file", "pos", "gtid", "epoch", "updated_ms",
};
#define VALUE_FIELDS 5          /* always there, in this order */
#define MAC_HEX (2 * crypto_auth_hmacsha256_BYTES)

/*
 * Writes the names and values of cp's fields into names/values (the five
 * always, then done, rows, moved, server_id and gtid_set when set), the
 * values into
 * buf.  Returns the
 * number of fields, or -1 when buf is too small.  Encode and decode both
 * MAC what this writes, so that there is one canonical form.
 */
static int
encode_values(const struct tor_checkpoint *cp, const char **names,
    const char **values, char *buf, size_t cap)
{
	size_t at = 0;
	int i, n, count = VALUE_FIELDS;

	for (i = 0; i < VALUE_FIELDS + 5; i++) {
		values[i] = buf + at;
		switch (i) {
		case 0:
			n = snprintf(buf + at, cap - at, "%s", cp->pos.file);
			break;
		case 1:
			n = snprintf(buf + at, cap - at, "%" PRIu64, cp->pos.pos);
			break;
		case 2:
			n = snprintf(buf + at, cap - at, "%s", cp->pos.gtid);
			break;
		case 3:
			n = snprintf(buf + at, cap - at, "%" PRIu64, cp->epoch);
			break;
		case 4:
			n = snprintf(buf + at, cap - at, "%" PRId64,
			    cp->updated_ms);
			break;
		case 5:
			if (cp->done.file[0] == '\0')
				continue;
			n = snprintf(buf + at, cap - at, "%s:%" PRIu64,
			    cp->done.file, cp->done.pos);
			names[count] = "done";
			values[count++] = buf + at;
			break;
		case 6:
			if (cp->rows == 0)
				continue;
			n = snprintf(buf + at, cap - at, "%" PRIu32, cp->rows);
			names[count] = "rows";
			values[count++] = buf + at;
			break;
		case 7:
			if (cp->moved == 0)
				continue;
			n = snprintf(buf + at, cap - at, "%" PRIu64, cp->moved);
			names[count] = "moved";
			values[count++] = buf + at;
			break;
		case 8:
			if (cp->server_id == 0)
				continue;
			n = snprintf(buf + at, cap - at, "%" PRIu32,
			    cp->server_id);
			names[count] = "server_id";
			values[count++] = buf + at;
			break;
		default:
			if (cp->gtid_set[0] == '\0')
				continue;
			n = snprintf(buf + at, cap - at, "%s", cp->gtid_set);
			names[count] = "gtid_set";
			values[count++] = buf + at;
			break;
		}
		if (i < VALUE_FIELDS)
			names[i] = field_names[i];
		if (n < 0 || (size_t)n >= cap - at)
			return -1;
		at += (size_t)n + 1;
	}
	return count;
}

/* One value of the MAC's message: "<length>:<value>\n".  The length, not
 * the newline, is what keeps it unambiguous: a file or gtid read back from
 * Redis may hold a newline. */
static void
mac_update(crypto_auth_hmacsha256_state *st, const char *value)
{
	char len[24];
	size_t n = strlen(value);

	snprintf(len, sizeof(len), "%zu:", n);
	crypto_auth_hmacsha256_update(st, (const unsigned char *)len,
	    strlen(len));
	crypto_auth_hmacsha256_update(st, (const unsigned char *)value, n);
	crypto_auth_hmacsha256_update(st, (const unsigned char *)"\n", 1);
}

/*
 * The checkpoint's MAC (checkpoint.h has the message): the five values,
 * then each optional field as its name and value.  The message is streamed
 * into the HMAC rather than built in a buffer, so no group or position is
 * too long for it.  Fails only when libsodium cannot start.
 */
static int
checkpoint_mac(const struct tor_config *cfg, const char *version,
    const char *const *names, const char *const *values, int n,
    unsigned char mac[crypto_auth_hmacsha256_BYTES])
{
	crypto_auth_hmacsha256_state st;
	int i;

	/* Idempotent and thread-safe: the first call does the work. */
	if (sodium_init() < 0)
		return -1;
	crypto_auth_hmacsha256_init(&st, cfg->checkpoint.key,
	    sizeof(cfg->checkpoint.key));
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)version,
	    strlen(version));
	mac_update(&st, cfg->group);
	for (i = 0; i < n; i++) {
		if (i >= VALUE_FIELDS)
			mac_update(&st, names[i]);
		mac_update(&st, values[i]);
	}
	crypto_auth_hmacsha256_final(&st, mac);
	/* The state holds the key's inner and outer pads. */
	sodium_memzero(&st, sizeof(st));
	return 0;
}

#define HASH_VERSION "tor-checkpoint-v1\n"
#define RECORD_VERSION "tor-record-v2\n"

int
tor_checkpoint_encode(const struct tor_config *cfg,
    const struct tor_checkpoint *cp, const char *names[TOR_CHECKPOINT_FIELDS],
    const char *values[TOR_CHECKPOINT_FIELDS], char *buf, size_t cap)
{
	unsigned char mac[crypto_auth_hmacsha256_BYTES];
	size_t at;
	int n;

	if ((n = encode_values(cp, names, values, buf, cap)) == -1)
		return -1;
	if (!cfg->checkpoint.has_key)
		return n;
	at = (size_t)(values[n - 1] - buf) + strlen(values[n - 1]) + 1;
	if (cap - at < MAC_HEX + 1 || checkpoint_mac(cfg, HASH_VERSION, names,
	    values, n, mac) == -1)
		return -1;
	names[n] = "mac";
	values[n] = sodium_bin2hex(buf + at, cap - at, mac, sizeof(mac));
	return n + 1;
}

static int
decode_number(const char *name, const char *value, uint64_t max,
    uint64_t *out, tor_err *err)
{
	if (!parse_decimal(value, strlen(value), max, out))
		return tor_err_set(err, "checkpoint field '%s': not a number "
		    "('%.64s')", name, value);
	return 0;
}

/* Whether hex is the lowercase or uppercase hex of mac, in constant time. */
static bool
mac_matches(const char *hex, const unsigned char *want)
{
	unsigned char got[crypto_auth_hmacsha256_BYTES];
	size_t len;

	/* Not hex, or not 32 bytes of it, does not verify either.  The
	 * compare takes the same time wherever the first difference is, so
	 * that timing says nothing about the right mac. */
	return strlen(hex) == MAC_HEX &&
	    sodium_hex2bin(got, sizeof(got), hex, MAC_HEX, NULL, &len,
	    NULL) == 0 && len == sizeof(got) &&
	    crypto_verify_32(got, want) == 0;
}

/*
 * Checks the stored mac (hex, NULL when the hash has none) against the MAC
 * of cp's fields as encode writes them.  Hashing the canonical form rather
 * than the stored strings means "0012" for pos is judged as the 12 it
 * decodes to: the same checkpoint, so no harm.
 */
static int
verify_mac(const struct tor_config *cfg, const struct tor_checkpoint *cp,
    const char *hex, tor_err *err)
{
	unsigned char want[crypto_auth_hmacsha256_BYTES];
	const char *names[TOR_CHECKPOINT_FIELDS], *values[TOR_CHECKPOINT_FIELDS];
	char buf[TOR_CHECKPOINT_BUF];
	int n, ok;

	if (hex == NULL)
		return tor_err_set(err, "no mac field, but a checkpoint key is "
		    "configured (written by a replica without the key, or "
		    "tampered with)");
	if ((n = encode_values(cp, names, values, buf, sizeof(buf))) == -1 ||
	    checkpoint_mac(cfg, HASH_VERSION, names, values, n, want) == -1)
		return tor_err_set(err, "cannot compute the checkpoint's mac "
		    "(libsodium did not start)");
	ok = mac_matches(hex, want);
	sodium_memzero(want, sizeof(want));
	if (!ok)
		return tor_err_set(err, "mac does not verify (tampered with, or "
		    "written with another key)");
	return 0;
}

/*
 * A MySQL GTID set's text (MySQL's spelling, blanks after commas
 * included) into out (TOR_GTID_SET_TEXT bytes) as tor_gtid_set_format
 * writes it: the one form records, hashes and macs hold.  Fails with "bad
 * GTID set ..." or "GTID set of N characters, longer than a checkpoint
 * holds (TOR_GTID_SET_TEXT - 1)".
 */
static int
canonical_gtid_set(const char *text, char out[TOR_GTID_SET_TEXT],
    tor_err *err)
{
	struct tor_gtid_set s;
	int n;

	tor_gtid_set_init(&s);
	if (tor_gtid_set_parse(&s, text, err) == -1) {
		tor_gtid_set_free(&s);
		return -1;
	}
	n = tor_gtid_set_format(&s, out, TOR_GTID_SET_TEXT);
	tor_gtid_set_free(&s);
	if (n >= TOR_GTID_SET_TEXT) {
		out[0] = '\0';
		return tor_err_set(err, "GTID set of %d characters, longer "
		    "than a checkpoint holds (%d)", n, TOR_GTID_SET_TEXT - 1);
	}
	return 0;
}

int
tor_checkpoint_decode(const struct tor_config *cfg, size_t n,
    const char *const *names, const char *const *values,
    struct tor_checkpoint *cp, tor_err *err)
{
	bool have_file = false, have_pos = false;
	const char *mac = NULL;
	uint64_t v = 0;
	size_t i;

	memset(cp, 0, sizeof(*cp));
	for (i = 0; i < n; i++) {
		const char *name = names[i], *value = values[i];

		if (strcmp(name, "file") == 0) {
			if (strlen(value) >= sizeof(cp->pos.file))
				return tor_err_set(err, "checkpoint field 'file': "
				    "too long");
			strcpy(cp->pos.file, value);
			have_file = true;
		} else if (strcmp(name, "pos") == 0) {
			if (decode_number(name, value, UINT64_MAX, &cp->pos.pos,
			    err) == -1)
				return -1;
			have_pos = true;
		} else if (strcmp(name, "gtid") == 0) {
			struct tor_position g;

			if (strlen(value) >= sizeof(cp->pos.gtid))
				return tor_err_set(err, "checkpoint field 'gtid': "
				    "too long");
			/* A server asked to resume from a GTID list it cannot
			 * parse refuses each new dump at once. */
			if (value[0] != '\0' && parse_gtid_list(value, &g,
			    NULL) == -1)
				return tor_err_set(err, "checkpoint field 'gtid': "
				    "not a GTID list ('%.64s')", value);
			strcpy(cp->pos.gtid, value);
		} else if (strcmp(name, "epoch") == 0) {
			if (decode_number(name, value, UINT64_MAX, &cp->epoch,
			    err) == -1)
				return -1;
			/* No replica draws such a token: it was set by hand or
			 * tampered with, and no acquire could go past it. */
			if (cp->epoch > TOR_TOKEN_MAX)
				return tor_err_set(err, "checkpoint field "
				    "'epoch': past the largest token (%llu) "
				    "('%.64s')", TOR_TOKEN_MAX, value);
		} else if (strcmp(name, "updated_ms") == 0) {
			if (decode_number(name, value, INT64_MAX, &v, err) == -1)
				return -1;
			cp->updated_ms = (int64_t)v;
		} else if (strcmp(name, "done") == 0) {
			const char *colon = strrchr(value, ':');

			if (colon == NULL || parse_file_pos(value, colon,
			    &cp->done, err) == -1)
				return tor_err_set(err, "checkpoint field 'done': "
				    "not <file>:<pos> ('%.64s')", value);
		} else if (strcmp(name, "rows") == 0) {
			if (decode_number(name, value, UINT32_MAX, &v, err) == -1)
				return -1;
			cp->rows = (uint32_t)v;
		} else if (strcmp(name, "moved") == 0) {
			if (decode_number(name, value, UINT64_MAX, &cp->moved,
			    err) == -1)
				return -1;
		} else if (strcmp(name, "server_id") == 0) {
			if (decode_number(name, value, UINT32_MAX, &v, err) == -1)
				return -1;
			cp->server_id = (uint32_t)v;
		} else if (strcmp(name, "gtid_set") == 0) {
			if (canonical_gtid_set(value, cp->gtid_set, err) == -1)
				return tor_err_prefix(err, "checkpoint field "
				    "'gtid_set': ");
		} else if (strcmp(name, "mac") == 0)
			mac = value;
		/* Any other field is a later version's: ignored. */
	}
	if (!have_file)
		return tor_err_set(err, "checkpoint field 'file': missing");
	if (!have_pos)
		return tor_err_set(err, "checkpoint field 'pos': missing");
	if (cp->pos.file[0] == '\0' && cp->pos.gtid[0] == '\0' &&
	    cp->gtid_set[0] == '\0')
		return tor_err_set(err, "checkpoint names no position (fields "
		    "'file' and 'gtid' are both empty)");
	if (cfg->checkpoint.has_key && verify_mac(cfg, cp, mac, err) == -1) {
		memset(cp, 0, sizeof(*cp));
		return -1;
	}
	return 0;
}

int
tor_checkpoint_load(struct tor_redis *r, const struct tor_config *cfg,
    struct tor_checkpoint *cp, bool *found, tor_err *err)
{
	const char *argv[2], **names = NULL, **values = NULL;
	char key[512];
	redisReply *reply;
	size_t n, i;
	int rc = -1;

	*found = false;
	tor_redis_key(cfg, "checkpoint", key, sizeof(key));
	argv[0] = "HGETALL";
	argv[1] = key;
	if ((reply = tor_redis_command(r, 2, argv, NULL, err)) == NULL) {
		/* Redis answered: the key is there, but is not a hash. */
		if (strstr(err->msg, ": WRONGTYPE ") != NULL)
			tor_err_set(err, "%s: not a checkpoint hash (the key "
			    "holds another type)", key);
		return -1;
	}
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 2 != 0) {
		tor_err_set(err, "%s: HGETALL: unexpected reply", key);
		goto out;
	}
	if (reply->elements == 0) {
		rc = 0;
		goto out;
	}
	n = reply->elements / 2;
	names = calloc(n, sizeof(*names));
	values = calloc(n, sizeof(*values));
	if (names == NULL || values == NULL) {
		tor_err_set(err, "%s: out of memory", key);
		goto out;
	}
	for (i = 0; i < reply->elements; i++) {
		const redisReply *e = reply->element[i];

		/* A NUL inside a field would cut it short unseen: "12\0x"
		 * must not read as pos 12. */
		if (e->type != REDIS_REPLY_STRING || strlen(e->str) != e->len) {
			tor_err_set(err, "%s: field %zu is not a plain string",
			    key, i / 2);
			goto out;
		}
		if (i % 2 == 0)
			names[i / 2] = e->str;
		else
			values[i / 2] = e->str;
	}
	if (tor_checkpoint_decode(cfg, n, names, values, cp, err) == -1) {
		tor_err_prefix(err, "%s: ", key);
		goto out;
	}
	*found = true;
	rc = 0;
out:
	free(names);
	free(values);
	freeReplyObject(reply);
	return rc;
}

/*
 * KEYS lease, checkpoint; ARGV expected lease value, the writer's token, then
 * the hash's field/value pairs.  The token check compares decimal strings
 * by length, then bytes: Lua numbers are doubles, and two tokens above 2^53
 * would compare equal.  A stored epoch that is not a number, or is past
 * TOR_TOKEN_MAX, is an error, not a licence to overwrite: decode refuses
 * such a hash too, and an operator must look at it.
 */
#define STORE_LUA_CHECK_EPOCH \
	"local stored = redis.call('HGET', KEYS[2], 'epoch')\n" \
	"if stored then\n" \
	"  if not string.match(stored, '^%d+$') then\n" \
	"    return redis.error_reply('stored epoch is not a number')\n" \
	"  end\n" \
	"  stored = string.match(stored, '^0*(%d-)$')\n" \
	"  if #stored > #'" TOR_TOKEN_MAX_TEXT "' then\n" \
	"    return redis.error_reply('stored epoch is past the largest ' ..\n" \
	"        'token (" TOR_TOKEN_MAX_TEXT ")')\n" \
	"  end\n" \
	"  local mine = ARGV[2]\n" \
	"  if #stored > #mine or (#stored == #mine and stored > mine) then\n" \
	"    return 0\n" \
	"  end\n" \
	"end\n"
/* The hash is replaced, not updated: a write without a key must not leave
 * an older write's mac behind, which would then read as tampering rather
 * than as "no mac field".  Fields first, then the older write's extra
 * ones go: the key never goes missing in between.  A script that fails
 * half-way keeps what it wrote, and in a Redis Cluster slot that is
 * migrating a missing key is elsewhere, so a write after a DEL fails
 * ("non local key"), and the checkpoint would be lost. */
#define STORE_LUA_REPLACE(first) \
	"redis.call('HSET', KEYS[2], unpack(ARGV, " #first "))\n" \
	"local fresh = {}\n" \
	"for i = " #first ", #ARGV, 2 do fresh[ARGV[i]] = true end\n" \
	"for _, f in ipairs(redis.call('HKEYS', KEYS[2])) do\n" \
	"  if not fresh[f] then redis.call('HDEL', KEYS[2], f) end\n" \
	"end\n"
#define STORE_LUA_WRITE \
	STORE_LUA_REPLACE(3) \
	"return 1\n"

/* The leader's write: refused unless the lease is still this writer's. */
static const char store_fenced_lua[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then\n"
    "  return 0\n"
    "end\n"
    STORE_LUA_CHECK_EPOCH
    STORE_LUA_WRITE;

/*
 * The operator's move.  KEYS lease, checkpoint, epoch; ARGV the operator's
 * lease value, its token, lease_ms, then the field/value pairs.  Refused
 * (0) when the epoch moved past the token (a replica acquired since the
 * token was drawn: start over) or the stored checkpoint's token is not
 * below it; otherwise the lease and the checkpoint are the operator's, in
 * one step.
 */
static const char move_lua[] =
    "if redis.call('GET', KEYS[3]) ~= ARGV[2] then\n"
    "  return 0\n"
    "end\n"
    STORE_LUA_CHECK_EPOCH
    "local stored = redis.call('HGET', KEYS[2], 'epoch')\n"
    "if stored and string.match(stored, '^0*(%d-)$') == ARGV[2] then\n"
    "  return 0\n"
    "end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])\n"
    STORE_LUA_REPLACE(4)
    "return 1\n";

/*
 * Runs one of the store scripts for cp, stamped now.  The whole hash is
 * written by one script, so a reader never sees a file of one write with
 * the pos (or the mac) of another.  KEYS are the lease, the checkpoint and
 * (nkeys 3) the epoch; pre are the ARGV before the fields.
 */
static int
store(struct tor_redis *r, const struct tor_config *cfg,
    struct tor_checkpoint *cp, const char *script, int nkeys,
    const char *const *pre, int npre, const char *what, tor_err *err)
{
	const char *names[TOR_CHECKPOINT_FIELDS], *values[TOR_CHECKPOINT_FIELDS];
	const char *argv[8 + 3 + 2 * TOR_CHECKPOINT_FIELDS];
	char lease[512], key[512], epoch_key[512], nk[4];
	char buf[TOR_CHECKPOINT_BUF];
	struct timespec now;
	redisReply *reply;
	int i, n, rc, argc = 0;

	clock_gettime(CLOCK_REALTIME, &now);
	cp->updated_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
	if ((n = tor_checkpoint_encode(cfg, cp, names, values, buf,
	    sizeof(buf))) == -1)
		return tor_err_set(err, "%s: cannot encode the checkpoint "
		    "(position too long, or libsodium did not start)", what);
	tor_redis_key(cfg, "lease", lease, sizeof(lease));
	tor_redis_key(cfg, "checkpoint", key, sizeof(key));
	tor_redis_key(cfg, "epoch", epoch_key, sizeof(epoch_key));
	snprintf(nk, sizeof(nk), "%d", nkeys);
	argv[argc++] = "EVAL";
	argv[argc++] = script;
	argv[argc++] = nk;
	argv[argc++] = lease;
	argv[argc++] = key;
	if (nkeys == 3)
		argv[argc++] = epoch_key;
	for (i = 0; i < npre; i++)
		argv[argc++] = pre[i];
	for (i = 0; i < n; i++) {
		argv[argc++] = names[i];
		argv[argc++] = values[i];
	}
	if ((reply = tor_redis_command(r, argc, argv, NULL, err)) == NULL)
		return tor_err_prefix(err, "%s: ", what);
	if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 1)
		rc = TOR_CHECKPOINT_WRITTEN;
	else if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 0)
		rc = TOR_CHECKPOINT_REFUSED;
	else
		rc = tor_err_set(err, "%s: %s: unexpected reply (type %d)",
		    what, key, reply->type);
	freeReplyObject(reply);
	return rc;
}

int
tor_checkpoint_store_fenced(struct tor_redis *r,
    const struct tor_config *cfg, struct tor_checkpoint *cp, tor_err *err)
{
	char expected[512], epoch[24];
	const char *pre[2] = { expected, epoch };
	int len;

	len = snprintf(expected, sizeof(expected), "%s %" PRIu64,
	    cfg->instance, cp->epoch);
	if (len < 0 || (size_t)len >= sizeof(expected))
		return tor_err_set(err, "checkpoint store: instance name too "
		    "long");
	snprintf(epoch, sizeof(epoch), "%" PRIu64, cp->epoch);
	return store(r, cfg, cp, store_fenced_lua, 2, pre, 2,
	    "checkpoint store", err);
}

/* A race with acquiring replicas is retried with a newer token; this many
 * times in a row means something keeps taking tokens. */
#define MOVE_ATTEMPTS 8

int
tor_checkpoint_move(struct tor_redis *r, const struct tor_config *cfg,
    struct tor_checkpoint *cp, tor_err *err)
{
	char value[64], epoch[24], ms[16];
	const char *pre[3] = { value, epoch, ms };
	struct tor_checkpoint stored;
	uint64_t floor = 0;
	bool found;
	int i, rc;

	snprintf(ms, sizeof(ms), "%d", cfg->ha.lease_ms);
	for (i = 0; i < MOVE_ATTEMPTS; i++) {
		if (tor_lease_next_token(r, cfg, floor, &cp->epoch, err) < 0)
			return tor_err_prefix(err, "checkpoint move: ");
		snprintf(value, sizeof(value), TOR_LEASE_OPERATOR " %" PRIu64,
		    cp->epoch);
		cp->moved = cp->epoch;
		snprintf(epoch, sizeof(epoch), "%" PRIu64, cp->epoch);
		rc = store(r, cfg, cp, move_lua, 3, pre, 3,
		    "checkpoint operator store", err);
		if (rc != TOR_CHECKPOINT_REFUSED)
			return rc;
		/* A replica drew a token meanwhile, or the stored checkpoint
		 * has one the epoch key lost: draw past both. */
		if (tor_checkpoint_load(r, cfg, &stored, &found, err) == 0 &&
		    found && stored.epoch > floor)
			floor = stored.epoch;
	}
	return tor_err_set(err, "checkpoint operator store: tokens kept being "
	    "taken by replicas acquiring the lease (%d attempts); not moved",
	    MOVE_ATTEMPTS);
}

/* The longest record: the names and blanks, a file and a GTID list that
 * fill their arrays, done naming such a file, every number at 20 digits
 * (rows at 10), the mac and the NUL. */
#define RECORD_LONGEST (sizeof("v2 token= file= pos= gtid= done=: rows= " \
	"moved= server_id= gtid_set= mac=") - 1 + 20 + \
	(sizeof(((struct tor_position *)0)->file) - 1) + 20 + \
	(sizeof(((struct tor_position *)0)->gtid) - 1) + \
	(sizeof(((struct tor_position *)0)->file) - 1) + 20 + 10 + 20 + 10 + \
	(TOR_GTID_SET_TEXT - 1) + MAC_HEX + 1)
_Static_assert(RECORD_LONGEST <= TOR_CHECKPOINT_RECORD,
    "TOR_CHECKPOINT_RECORD must hold the longest position record");

/* "-" stands for an empty value in a record. */
static const char *
dash(const char *s)
{
	return s[0] != '\0' ? s : "-";
}

int
tor_checkpoint_record_format(const struct tor_config *cfg,
    const struct tor_checkpoint *cp, char *buf, size_t cap)
{
	unsigned char mac[crypto_auth_hmacsha256_BYTES];
	const char *part[1];
	char done[300] = "-", hex[MAC_HEX + 1];
	int n;

	if (cp->done.file[0] != '\0')
		snprintf(done, sizeof(done), "%s:%" PRIu64, cp->done.file,
		    cp->done.pos);
	n = snprintf(buf, cap, "v2 token=%" PRIu64 " file=%s pos=%" PRIu64
	    " gtid=%s done=%s rows=%" PRIu32, cp->epoch, dash(cp->pos.file),
	    cp->pos.pos, dash(cp->pos.gtid), done, cp->rows);
	if (n >= 0 && (size_t)n < cap && cp->moved != 0)
		n += snprintf(buf + n, cap - (size_t)n, " moved=%" PRIu64,
		    cp->moved);
	if (n >= 0 && (size_t)n < cap && cp->server_id != 0)
		n += snprintf(buf + n, cap - (size_t)n, " server_id=%" PRIu32,
		    cp->server_id);
	if (n >= 0 && (size_t)n < cap && cp->gtid_set[0] != '\0')
		n += snprintf(buf + n, cap - (size_t)n, " gtid_set=%s",
		    cp->gtid_set);
	if (n < 0 || (size_t)n >= cap || !cfg->checkpoint.has_key)
		return n;
	part[0] = buf;
	if (checkpoint_mac(cfg, RECORD_VERSION, NULL, part, 1, mac) == -1)
		return -1;
	sodium_bin2hex(hex, sizeof(hex), mac, sizeof(mac));
	return n + snprintf(buf + n, cap - (size_t)n, " mac=%s", hex);
}

/* The value of "name=" in a v2 record (up to the next blank), or NULL. */
static const char *
record_field(const char *text, const char *name, char *out, size_t cap)
{
	size_t n = strlen(name);
	const char *p = text, *end;

	while ((p = strstr(p, name)) != NULL) {
		if ((p == text || p[-1] == ' ') && p[n] == '=')
			break;
		p += n;
	}
	if (p == NULL)
		return NULL;
	p += n + 1;
	end = strchr(p, ' ');
	if (end == NULL)
		end = p + strlen(p);
	if ((size_t)(end - p) >= cap)
		return NULL;
	memcpy(out, p, (size_t)(end - p));
	out[end - p] = '\0';
	return strcmp(out, "-") == 0 ? "" : out;
}

static int
record_v2(const struct tor_config *cfg, const char *text,
    struct tor_checkpoint *cp, tor_err *err)
{
	char v[TOR_GTID_SET_TEXT + 1], body[TOR_CHECKPOINT_RECORD];
	const char *f, *macp = strstr(text, " mac=");
	unsigned char want[crypto_auth_hmacsha256_BYTES];
	const char *part[1];
	uint64_t n;

	if ((f = record_field(text, "token", v, sizeof(v))) == NULL ||
	    !parse_decimal(f, strlen(f), TOR_TOKEN_MAX, &cp->epoch))
		return tor_err_set(err, "no token");
	if ((f = record_field(text, "file", v, sizeof(v))) == NULL ||
	    strlen(f) >= sizeof(cp->pos.file))
		return tor_err_set(err, "no file");
	strcpy(cp->pos.file, f);
	if ((f = record_field(text, "pos", v, sizeof(v))) == NULL ||
	    !parse_decimal(f, strlen(f), UINT64_MAX, &cp->pos.pos))
		return tor_err_set(err, "no pos");
	if ((f = record_field(text, "gtid", v, sizeof(v))) == NULL ||
	    strlen(f) >= sizeof(cp->pos.gtid))
		return tor_err_set(err, "no gtid");
	strcpy(cp->pos.gtid, f);
	if ((f = record_field(text, "done", v, sizeof(v))) != NULL &&
	    f[0] != '\0' && (strrchr(f, ':') == NULL ||
	    parse_file_pos(f, strrchr(f, ':'), &cp->done, err) == -1))
		return tor_err_set(err, "bad done '%.64s'", f);
	if ((f = record_field(text, "rows", v, sizeof(v))) != NULL &&
	    f[0] != '\0') {
		if (!parse_decimal(f, strlen(f), UINT32_MAX, &n))
			return tor_err_set(err, "bad rows");
		cp->rows = (uint32_t)n;
	}
	if ((f = record_field(text, "moved", v, sizeof(v))) != NULL &&
	    f[0] != '\0' && !parse_decimal(f, strlen(f), UINT64_MAX,
	    &cp->moved))
		return tor_err_set(err, "bad moved");
	if ((f = record_field(text, "server_id", v, sizeof(v))) != NULL &&
	    f[0] != '\0') {
		if (!parse_decimal(f, strlen(f), UINT32_MAX, &n))
			return tor_err_set(err, "bad server_id");
		cp->server_id = (uint32_t)n;
	}
	if ((f = record_field(text, "gtid_set", v, sizeof(v))) != NULL &&
	    f[0] != '\0' && canonical_gtid_set(f, cp->gtid_set, err) == -1)
		return tor_err_prefix(err, "bad gtid_set: ");
	if (cp->pos.file[0] == '\0' && cp->pos.gtid[0] == '\0' &&
	    cp->gtid_set[0] == '\0')
		return tor_err_set(err, "no position");
	if (!cfg->checkpoint.has_key)
		return 0;
	if (macp == NULL || (size_t)(macp - text) >= sizeof(body))
		return tor_err_set(err, "no mac, but a checkpoint key is "
		    "configured");
	memcpy(body, text, (size_t)(macp - text));
	body[macp - text] = '\0';
	part[0] = body;
	if (checkpoint_mac(cfg, RECORD_VERSION, NULL, part, 1, want) == -1 ||
	    !mac_matches(macp + 5, want))
		return tor_err_set(err, "mac does not verify");
	return 0;
}

int
tor_checkpoint_record_parse(const struct tor_config *cfg, const char *text,
    struct tor_checkpoint *cp, tor_err *err)
{
	unsigned long long token, pos;
	char file[256];
	int rc;

	memset(cp, 0, sizeof(*cp));
	if (strncmp(text, "v2 ", 3) == 0) {
		if ((rc = record_v2(cfg, text, cp, err)) == 0)
			return 0;
		memset(cp, 0, sizeof(*cp));
		return tor_err_prefix(err, "position record for group %s is "
		    "malformed ('%.120s'): ", cfg->group, text);
	}
	if (sscanf(text, "v1 %llu %255s %llu", &token, file, &pos) == 3 &&
	    token <= TOR_TOKEN_MAX) {
		/* v1 predates the mac: with a key set it proves nothing. */
		if (cfg->checkpoint.has_key)
			return tor_err_set(err, "position record for group %s "
			    "has no mac, but a checkpoint key is configured "
			    "(an unsigned v1 record): '%.120s'", cfg->group,
			    text);
		cp->epoch = token;
		snprintf(cp->pos.file, sizeof(cp->pos.file), "%s", file);
		cp->pos.pos = pos;
		return 0;
	}
	return tor_err_set(err, "position record for group %s is malformed: "
	    "'%.120s'", cfg->group, text);
}

/* How far a checkpoint says everything is published. */
static const struct tor_position *
published(const struct tor_checkpoint *cp)
{
	return cp->done.file[0] != '\0' ? &cp->done : &cp->pos;
}

bool
tor_gtid_of_domain(const char *list, unsigned long d, unsigned long *server,
    unsigned long long *seq)
{
	while (*list != '\0') {
		unsigned long dd, sv;
		unsigned long long n;
		int used = 0;

		if (sscanf(list, "%lu-%lu-%llu%n", &dd, &sv, &n, &used) != 3)
			return false;
		if (dd == d) {
			*server = sv;
			*seq = n;
			return true;
		}
		list += used;
		list += *list == ',';
	}
	return false;
}

/* >0 when GTID list b is ahead of a (in some domain, behind in none), <0
 * the reverse, 0 the same, TOR_POSITION_UNORDERED when they cannot be
 * ordered (no GTIDs, other domains, ahead in one and behind in another). */
static int
gtid_compare(const char *a, const char *b)
{
	int ahead = 0, behind = 0;
	const char *p = b;
	unsigned long dom, server;
	unsigned long long seq;
	int n;

	if (a[0] == '\0' || b[0] == '\0')
		return TOR_POSITION_UNORDERED;
	while (*p != '\0') {
		unsigned long other_server;
		unsigned long long other;

		if (sscanf(p, "%lu-%lu-%llu%n", &dom, &server, &seq, &n) != 3 ||
		    !tor_gtid_of_domain(a, dom, &other_server, &other))
			return TOR_POSITION_UNORDERED;
		ahead += seq > other;
		behind += seq < other;
		p += n;
		if (*p == ',')
			p++;
	}
	if (ahead > 0 && behind > 0)
		return TOR_POSITION_UNORDERED;
	return ahead > 0 ? 1 : behind > 0 ? -1 : 0;
}

bool
tor_checkpoint_newer(const struct tor_checkpoint *a,
    const struct tor_checkpoint *b)
{
	int c;

	if (a->epoch != b->epoch)
		return b->epoch > a->epoch;
	/* One leadership on two servers (it followed a failover): a file:pos
	 * of one says nothing of the other's binlog.  A GTID domain's
	 * sequence goes on across them; without it, the later record. */
	if (a->server_id != 0 && b->server_id != 0 &&
	    a->server_id != b->server_id) {
		c = gtid_compare(a->pos.gtid, b->pos.gtid);
		return c == TOR_POSITION_UNORDERED || c > 0 ||
		    (c == 0 && b->rows > a->rows);
	}
	c = tor_position_compare(published(b), published(a));
	if (c == TOR_POSITION_UNORDERED)
		return b->pos.file[0] != '\0' && a->pos.file[0] == '\0';
	return c > 0 || (c == 0 && b->rows > a->rows);
}

void
tor_checkpoint_pick_start(struct tor_record_pick *p,
    const struct tor_config *cfg)
{
	memset(p, 0, sizeof(*p));
	p->cfg = cfg;
}

void
tor_checkpoint_pick(void *ctx, const void *value, size_t len)
{
	struct tor_record_pick *p = ctx;
	char text[TOR_CHECKPOINT_RECORD];
	struct tor_checkpoint cp;

	if (p->last_bad)
		p->passed++;
	p->last_bad = true;
	if (len >= sizeof(text)) {
		tor_err_set(&p->bad, "position record for group %s of %zu "
		    "bytes, longer than any tor writes (%zu)", p->cfg->group,
		    len, sizeof(text) - 1);
		return;
	}
	memcpy(text, value, len);
	text[len] = '\0';
	if (tor_checkpoint_record_parse(p->cfg, text, &cp, &p->bad) < 0)
		return;
	p->last_bad = false;
	p->last_epoch = cp.epoch;
	if (!p->have || tor_checkpoint_newer(&p->best, &cp))
		p->best = cp;
	p->have = true;
}

int
tor_checkpoint_picked(const struct tor_record_pick *p,
    struct tor_checkpoint *cp, tor_err *err)
{
	if (p->last_bad) {
		*err = p->bad;
		return -1;
	}
	if (!p->have)
		return 0;
	*cp = p->best;
	return 1;
}

/*
 * Rows the broker refused as too large, shared by the group's replicas: set
 * P:{G}:refused, a member per row, its tor.pos and, with a checkpoint key,
 * " mac=<hex>" (HMAC over REFUSED_VERSION, the group and the pos): a row
 * listed there is sent where outbox.unrouted says without being offered to
 * the broker again, so a member nobody signed could divert, or with skip
 * drop, any row.  The set lives REFUSED_KEEP_MS past its last addition: a
 * row comes again only while the checkpoint is behind it, or after an
 * operator's replay (then the broker refuses it once more).
 */
#define REFUSED_VERSION "tor-refused-v1\n"
#define REFUSED_KEEP_MS "604800000"     /* a week */

static const char refused_add_lua[] =
    "redis.call('SADD', KEYS[1], ARGV[1])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "return 1\n";

/* The mac of a refused row's pos, as hex into hex (MAC_HEX + 1 bytes). */
static int
refused_mac(const struct tor_config *cfg, const char *pos, char *hex)
{
	unsigned char mac[crypto_auth_hmacsha256_BYTES];
	const char *part[1] = { pos };

	if (checkpoint_mac(cfg, REFUSED_VERSION, NULL, part, 1, mac) == -1)
		return -1;
	sodium_bin2hex(hex, MAC_HEX + 1, mac, sizeof(mac));
	return 0;
}

int
tor_checkpoint_refused_add(struct tor_redis *r, const struct tor_config *cfg,
    const char *pos, tor_err *err)
{
	char key[512], member[TOR_REFUSED_POS + 5 + MAC_HEX + 1];
	char hex[MAC_HEX + 1];
	const char *argv[6];
	redisReply *reply;

	if (strlen(pos) >= TOR_REFUSED_POS)
		return tor_err_set(err, "refused rows: position too long");
	if (cfg->checkpoint.has_key) {
		if (refused_mac(cfg, pos, hex) == -1)
			return tor_err_set(err, "refused rows: libsodium did "
			    "not start");
		snprintf(member, sizeof(member), "%s mac=%s", pos, hex);
	} else {
		snprintf(member, sizeof(member), "%s", pos);
	}
	tor_redis_key(cfg, "refused", key, sizeof(key));
	argv[0] = "EVAL";
	argv[1] = refused_add_lua;
	argv[2] = "1";
	argv[3] = key;
	argv[4] = member;
	argv[5] = REFUSED_KEEP_MS;
	if ((reply = tor_redis_command(r, 6, argv, NULL, err)) == NULL)
		return tor_err_prefix(err, "refused rows: ");
	freeReplyObject(reply);
	return 0;
}

/* The pos of one member into pos (TOR_REFUSED_POS bytes), or false when
 * it does not verify with the checkpoint key (or is too long).  Without a
 * key a mac is ignored: a replica that has none cannot judge it. */
static bool
refused_member(const struct tor_config *cfg, const char *m, size_t len,
    char *pos)
{
	const char *mac = NULL;
	char hex[MAC_HEX + 1];
	size_t n = len;

	for (size_t i = 0; i + 5 <= len; i++)
		if (memcmp(m + i, " mac=", 5) == 0) {
			mac = m + i + 5;
			n = i;
			break;
		}
	if (n == 0 || n >= TOR_REFUSED_POS)
		return false;
	memcpy(pos, m, n);
	pos[n] = '\0';
	if (!cfg->checkpoint.has_key)
		return true;
	return mac != NULL && (size_t)(m + len - mac) == MAC_HEX &&
	    refused_mac(cfg, pos, hex) == 0 && sodium_memcmp(hex, mac,
	    MAC_HEX) == 0;
}

int
tor_checkpoint_refused_load(struct tor_redis *r, const struct tor_config *cfg,
    void (*fn)(void *ctx, const char *pos), void *ctx, size_t *ignored,
    tor_err *err)
{
	char key[512], pos[TOR_REFUSED_POS];
	const char *argv[2];
	redisReply *reply;

	*ignored = 0;
	tor_redis_key(cfg, "refused", key, sizeof(key));
	argv[0] = "SMEMBERS";
	argv[1] = key;
	if ((reply = tor_redis_command(r, 2, argv, NULL, err)) == NULL)
		return tor_err_prefix(err, "refused rows: ");
	if (reply->type != REDIS_REPLY_ARRAY) {
		freeReplyObject(reply);
		return tor_err_set(err, "refused rows: %s: not a set", key);
	}
	for (size_t i = 0; i < reply->elements; i++) {
		const redisReply *m = reply->element[i];

		if (m->type == REDIS_REPLY_STRING &&
		    refused_member(cfg, m->str, m->len, pos))
			fn(ctx, pos);
		else
			(*ignored)++;
	}
	freeReplyObject(reply);
	return 0;
}
