/*
 * De-duplication at takeover: the positions partitions hold, and the
 * verdict for each replayed row (tor/dedup.h).
 *
 * A leadership learns a handful of topics; each keeps its partitions'
 * tails and whether the stream has passed them.  Once every partition is
 * passed, nothing is compared any more: the cost is paid during the replay
 * only.
 */
#include <stdlib.h>
#include <string.h>

#include "tor/dedup.h"

struct dedup_topic {
	char *name;
	int n;
	struct tor_partition_tail *tails;
	bool *passed;
	bool *moved;            /* its newest message was placed otherwise */
};

struct tor_dedup {
	struct dedup_topic *topics;
	size_t n_topics;
	size_t open;            /* partitions with a position not passed yet */
	char *source;           /* the source's gtid_binlog_state, or NULL */
};

/* Digits only, at least one, fits 64 bits. */
static bool
parse_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 20)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return true;
}

static bool
is_uuid(const char *s, size_t len)
{
	if (len != 36)
		return false;
	for (size_t i = 0; i < len; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? s[i] != '-' : strchr("0123456789abcdefABCDEF",
		    s[i]) == NULL || s[i] == '\0')
			return false;
	}
	return true;
}

/* A GTID tag: a letter or '_', then letters, digits or '_', at most 32. */
static bool
is_tag(const char *s, size_t len)
{
	if (len == 0 || len > 32 || (s[0] >= '0' && s[0] <= '9'))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' &&
		    s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
		    s[i] == '_'))
			return false;
	return true;
}

static bool
set_lineage(struct tor_row_pos *p, const char *s, size_t len)
{
	if (len == 0 || len >= sizeof(p->lineage))
		return false;
	memcpy(p->lineage, s, len);
	p->lineage[len] = '\0';
	return true;
}

/* "D-S-N": the domain is the lineage (a domain's sequence goes on across
 * a primary switch); the server id is kept for tail_held. */
static bool
parse_mariadb(const char *s, size_t len, struct tor_row_pos *p)
{
	const char *d1 = memchr(s, '-', len), *d2;
	uint64_t domain, server;

	if (d1 == NULL || (d2 = memchr(d1 + 1, '-', (size_t)(s + len - d1 -
	    1))) == NULL)
		return false;
	if (!parse_u64(s, (size_t)(d1 - s), &domain) ||
	    !parse_u64(d1 + 1, (size_t)(d2 - d1 - 1), &server) ||
	    !parse_u64(d2 + 1, (size_t)(s + len - d2 - 1), &p->major))
		return false;
	p->kind = TOR_POS_MARIADB;
	p->minor = 0;
	p->server = server;
	return set_lineage(p, s, (size_t)(d1 - s));
}

/* "<base>.<digits>": the base is the lineage, the digits the file's
 * sequence number. */
static bool
parse_file(const char *s, size_t len, struct tor_row_pos *p)
{
	const char *dot = NULL;

	for (size_t i = len; i > 0; i--)
		if (s[i - 1] == '.') {
			dot = s + i - 1;
			break;
		}
	if (dot == NULL || !parse_u64(dot + 1, (size_t)(s + len - dot - 1),
	    &p->major))
		return false;
	p->kind = TOR_POS_FILE;
	return set_lineage(p, s, (size_t)(dot - s));
}

bool
tor_row_pos_parse(const char *text, size_t len, struct tor_row_pos *p)
{
	const char *c2 = NULL, *c1 = NULL;

	memset(p, 0, sizeof(*p));
	for (size_t i = len; i > 0; i--)
		if (text[i - 1] == ':') {
			if (c2 == NULL)
				c2 = text + i - 1;
			else {
				c1 = text + i - 1;
				break;
			}
		}
	if (c2 == NULL || !parse_u64(c2 + 1, (size_t)(text + len - c2 - 1),
	    &p->row))
		return false;
	if (c1 == NULL)
		return parse_mariadb(text, (size_t)(c2 - text), p);
	/* "<uuid>:<n>" or, tagged (MySQL 8.3+), "<uuid>:<tag>:<n>": each
	 * source and tag numbers its transactions on its own. */
	if (is_uuid(text, (size_t)(c1 - text)) || (c1 - text > 37 &&
	    is_uuid(text, 36) && text[36] == ':' &&
	    is_tag(text + 37, (size_t)(c1 - text - 37)))) {
		if (!parse_u64(c1 + 1, (size_t)(c2 - c1 - 1), &p->major))
			return false;
		p->kind = TOR_POS_MYSQL;
		return set_lineage(p, text, (size_t)(c1 - text));
	}
	if (!parse_u64(c1 + 1, (size_t)(c2 - c1 - 1), &p->minor))
		return false;
	return parse_file(text, (size_t)(c1 - text), p);
}

static int
cmp_u64(uint64_t a, uint64_t b)
{
	return a < b ? -1 : a > b;
}

int
tor_row_pos_cmp(const struct tor_row_pos *a, const struct tor_row_pos *b)
{
	int c;

	if (a->kind != b->kind || strcmp(a->lineage, b->lineage) != 0)
		return TOR_ROW_POS_UNORDERED;
	if ((c = cmp_u64(a->major, b->major)) != 0 ||
	    (c = cmp_u64(a->minor, b->minor)) != 0)
		return c;
	return cmp_u64(a->row, b->row);
}

struct tor_dedup *
tor_dedup_new(void)
{
	return calloc(1, sizeof(struct tor_dedup));
}

void
tor_dedup_free(struct tor_dedup *d)
{
	if (d == NULL)
		return;
	for (size_t i = 0; i < d->n_topics; i++) {
		free(d->topics[i].name);
		free(d->topics[i].tails);
		free(d->topics[i].passed);
		free(d->topics[i].moved);
	}
	free(d->topics);
	free(d->source);
	free(d);
}

int
tor_dedup_source(struct tor_dedup *d, const char *gtid_state)
{
	char *copy = strdup(gtid_state);

	if (copy == NULL)
		return -1;
	free(d->source);
	d->source = copy;
	return 0;
}

/* Whether the source has the transaction of a MariaDB tail: its state
 * holds the same domain and server_id at or past its sequence number.
 * Unknown (no state given) counts as held. */
static bool
tail_held(const struct tor_dedup *d, const struct tor_row_pos *tail)
{
	const char *s = d->source;

	if (s == NULL)
		return true;
	while (*s != '\0') {
		const char *end = strchr(s, ',');
		size_t len = end != NULL ? (size_t)(end - s) : strlen(s);
		struct tor_row_pos g;
		char text[96];

		/* A GTID of the state is a row position without the row. */
		if (len + 3 <= sizeof(text)) {
			memcpy(text, s, len);
			memcpy(text + len, ":0", 3);
			if (tor_row_pos_parse(text, len + 2, &g) &&
			    g.kind == TOR_POS_MARIADB &&
			    strcmp(g.lineage, tail->lineage) == 0 &&
			    g.server == tail->server && g.major >= tail->major)
				return true;
		}
		s += len;
		s += *s == ',';
	}
	return false;
}

static struct dedup_topic *
find(const struct tor_dedup *d, const char *topic)
{
	for (size_t i = 0; i < d->n_topics; i++)
		if (strcmp(d->topics[i].name, topic) == 0)
			return &d->topics[i];
	return NULL;
}

int
tor_dedup_learn(struct tor_dedup *d, const char *topic, int n,
    const struct tor_partition_tail *tails, const char *placement)
{
	struct dedup_topic *t, *grown;

	if (find(d, topic) != NULL || n < 0)
		return -1;
	grown = realloc(d->topics, (d->n_topics + 1) * sizeof(*grown));
	if (grown == NULL)
		return -1;
	d->topics = grown;
	t = &d->topics[d->n_topics];
	memset(t, 0, sizeof(*t));
	t->n = n;
	if ((t->name = strdup(topic)) == NULL ||
	    (n > 0 && ((t->tails = calloc((size_t)n, sizeof(*t->tails))) ==
	    NULL || (t->passed = calloc((size_t)n, sizeof(bool))) == NULL ||
	    (t->moved = calloc((size_t)n, sizeof(bool))) == NULL))) {
		free(t->name);
		free(t->tails);
		free(t->passed);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		t->tails[i] = tails[i];
		t->passed[i] = !tails[i].known || !tails[i].found;
		t->moved[i] = strcmp(tails[i].placement, placement) != 0;
		if (!t->passed[i])
			d->open++;
	}
	d->n_topics++;
	return 0;
}

bool
tor_dedup_knows(const struct tor_dedup *d, const char *topic)
{
	return find(d, topic) != NULL;
}

int
tor_dedup_check(struct tor_dedup *d, const char *topic, int partition,
    const char *pos, bool moved)
{
	struct dedup_topic *t = find(d, topic);
	struct tor_row_pos row;
	int c;

	if (t == NULL || partition < 0 || partition >= t->n)
		return TOR_DEDUP_UNKNOWN;
	if (!t->tails[partition].known)
		return TOR_DEDUP_UNKNOWN;
	if (t->passed[partition])
		return TOR_DEDUP_PUBLISH;
	if (pos == NULL || !tor_row_pos_parse(pos, strlen(pos), &row))
		return TOR_DEDUP_UNKNOWN;
	c = tor_row_pos_cmp(&row, &t->tails[partition].pos);
	if (c == TOR_ROW_POS_UNORDERED)
		return TOR_DEDUP_UNKNOWN;
	/* Before the position, but it may have been placed in another
	 * partition then: it may be there, or nowhere. */
	if (c <= 0 && moved && t->moved[partition])
		return TOR_DEDUP_UNKNOWN;
	/* Numbered before a transaction the source never had (lost in a
	 * failover): another server's row may have taken a lost one's
	 * sequence number. */
	if (c <= 0 && row.kind == TOR_POS_MARIADB &&
	    row.server != t->tails[partition].pos.server &&
	    !tail_held(d, &t->tails[partition].pos))
		return TOR_DEDUP_UNKNOWN;
	if (c <= 0)
		return TOR_DEDUP_SKIP;
	t->passed[partition] = true;
	d->open--;
	return TOR_DEDUP_PUBLISH;
}

const char *
tor_dedup_placed_otherwise(const struct tor_dedup *d, const char *topic,
    int partition)
{
	const struct dedup_topic *t = find(d, topic);

	if (t == NULL || partition < 0 || partition >= t->n ||
	    !t->moved[partition])
		return NULL;
	return t->tails[partition].placement;
}

bool
tor_dedup_done(const struct tor_dedup *d)
{
	return d->open == 0;
}
