/*
 * The in-flight transaction ring behind the checkpoint (see
 * include/tor/progress.h).
 *
 * Entries are kept oldest first in a growable ring, sorted by sequence
 * number, so an acknowledgement finds its transaction by binary search.  A
 * transaction stores only a file generation, an end offset and its GTID; the
 * MariaDB GTID state (one GTID per replication domain) is folded in only as
 * the safe position passes a transaction.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tor/progress.h"

#define MAX_DOMAINS 64

struct txn {
	uint64_t seq;
	uint64_t pending;
	uint32_t holds;         /* XA prepares waiting for their end */
	uint64_t end_pos;
	uint32_t file_gen;
	bool committed;
	bool has_gtid;
	struct tor_gtid gtid;
};

struct file_name {
	uint32_t gen;
	char name[256];
};

struct domain_gtid {
	uint32_t domain;
	uint32_t server;
	uint64_t seq;
};

struct tor_progress {
	struct txn *ring;
	size_t cap, head, count;
	uint64_t next_seq;
	uint64_t pending;

	struct file_name *files;        /* oldest first */
	size_t n_files;
	uint32_t file_gen;

	struct tor_position safe;
	bool moved;
	struct domain_gtid domains[MAX_DOMAINS];
	size_t n_domains;
};

static struct txn *
at(const struct tor_progress *p, size_t i)
{
	return &p->ring[(p->head + i) % p->cap];
}

static const char *
file_of(const struct tor_progress *p, uint32_t gen)
{
	for (size_t i = p->n_files; i > 0; i--)
		if (p->files[i - 1].gen == gen)
			return p->files[i - 1].name;
	return "";
}

static void
set_domain(struct tor_progress *p, uint32_t domain, uint32_t server,
    uint64_t seq)
{
	size_t i;

	for (i = 0; i < p->n_domains; i++)
		if (p->domains[i].domain == domain)
			break;
	if (i == p->n_domains) {
		if (p->n_domains == MAX_DOMAINS)
			return; /* file:pos still resumes; the GTID state is informational */
		p->n_domains++;
	}
	p->domains[i] = (struct domain_gtid){ domain, server, seq };
}

static void
format_gtid_state(struct tor_progress *p)
{
	size_t at_ = 0;

	p->safe.gtid[0] = '\0';
	for (size_t i = 0; i < p->n_domains; i++) {
		int n = snprintf(p->safe.gtid + at_, sizeof(p->safe.gtid) - at_,
		    "%s%" PRIu32 "-%" PRIu32 "-%" PRIu64, i ? "," : "",
		    p->domains[i].domain, p->domains[i].server,
		    p->domains[i].seq);
		if (n < 0 || (size_t)n >= sizeof(p->safe.gtid) - at_)
			break;
		at_ += (size_t)n;
	}
}

/* Reads "D-S-N,..." of the start position into the domain table. */
static void
load_gtid_state(struct tor_progress *p, const char *gtid)
{
	const char *s = gtid;

	while (*s != '\0') {
		unsigned long d, sv;
		unsigned long long n;
		int used = 0;

		if (sscanf(s, "%lu-%lu-%llu%n", &d, &sv, &n, &used) != 3)
			return;
		set_domain(p, (uint32_t)d, (uint32_t)sv, (uint64_t)n);
		s += used;
		if (*s == ',')
			s++;
	}
}

struct tor_progress *
tor_progress_new(const struct tor_position *start)
{
	struct tor_progress *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->cap = 64;
	p->ring = calloc(p->cap, sizeof(*p->ring));
	p->files = calloc(1, sizeof(*p->files));
	if (p->ring == NULL || p->files == NULL) {
		tor_progress_free(p);
		return NULL;
	}
	p->next_seq = 1;
	p->safe = *start;
	p->n_files = 1;
	snprintf(p->files[0].name, sizeof(p->files[0].name), "%s", start->file);
	load_gtid_state(p, start->gtid);
	return p;
}

void
tor_progress_free(struct tor_progress *p)
{
	if (p == NULL)
		return;
	free(p->ring);
	free(p->files);
	free(p);
}

/* Drops file names that no entry and not the current file refer to. */
static void
trim_files(struct tor_progress *p)
{
	uint32_t oldest = p->count > 0 ? at(p, 0)->file_gen : p->file_gen;
	size_t drop = 0;

	while (drop + 1 < p->n_files && p->files[drop].gen < oldest)
		drop++;
	if (drop > 0) {
		memmove(p->files, p->files + drop,
		    (p->n_files - drop) * sizeof(*p->files));
		p->n_files -= drop;
	}
}

/* Retires finished transactions at the head, moving the safe position. */
static void
advance(struct tor_progress *p)
{
	bool any = false;

	while (p->count > 0) {
		struct txn *t = at(p, 0);

		if (!t->committed || t->pending > 0 || t->holds > 0)
			break;
		snprintf(p->safe.file, sizeof(p->safe.file), "%s",
		    file_of(p, t->file_gen));
		p->safe.pos = t->end_pos;
		if (t->has_gtid && t->gtid.mariadb)
			set_domain(p, t->gtid.domain_id, t->gtid.server_id,
			    t->gtid.seq_no);
		p->head = (p->head + 1) % p->cap;
		p->count--;
		any = true;
	}
	if (any) {
		format_gtid_state(p);
		p->moved = true;
		trim_files(p);
	}
}

int
tor_progress_rotate(struct tor_progress *p, const char *file, uint64_t pos,
    bool positioned, tor_err *err)
{
	struct file_name *files;

	if (strlen(file) >= sizeof(p->files[0].name))
		return tor_err_set(err, "binlog file name too long: %.64s...",
		    file);
	if (strcmp(p->files[p->n_files - 1].name, file) != 0) {
		files = realloc(p->files, (p->n_files + 1) * sizeof(*files));
		if (files == NULL)
			return tor_err_set(err, "out of memory");
		p->files = files;
		p->file_gen++;
		p->files[p->n_files].gen = p->file_gen;
		snprintf(p->files[p->n_files].name,
		    sizeof(p->files[p->n_files].name), "%s", file);
		p->n_files++;
	}
	if (positioned && p->count == 0 && (strcmp(p->safe.file, file) != 0 ||
	    p->safe.pos != pos)) {
		snprintf(p->safe.file, sizeof(p->safe.file), "%s", file);
		p->safe.pos = pos;
		p->moved = true;
		trim_files(p);
	}
	return 0;
}

static int
grow(struct tor_progress *p)
{
	struct txn *ring;
	size_t cap = p->cap * 2;

	ring = calloc(cap, sizeof(*ring));
	if (ring == NULL)
		return -1;
	for (size_t i = 0; i < p->count; i++)
		ring[i] = *at(p, i);
	free(p->ring);
	p->ring = ring;
	p->cap = cap;
	p->head = 0;
	return 0;
}

bool
tor_progress_in_txn(const struct tor_progress *p)
{
	return p->count > 0 && !at(p, p->count - 1)->committed;
}

uint64_t
tor_progress_begin(struct tor_progress *p)
{
	struct txn *t;

	if (tor_progress_in_txn(p))
		return at(p, p->count - 1)->seq;
	if (p->count == p->cap && grow(p) < 0)
		abort();        /* the ring is bounded by the sink's queue */
	t = at(p, p->count);
	memset(t, 0, sizeof(*t));
	t->seq = p->next_seq++;
	p->count++;
	return t->seq;
}

void
tor_progress_add(struct tor_progress *p)
{
	at(p, p->count - 1)->pending++;
	p->pending++;
}

void
tor_progress_commit(struct tor_progress *p, uint64_t end_pos,
    const struct tor_gtid *gtid)
{
	struct txn *t = at(p, p->count - 1), *prev;

	t->committed = true;
	t->end_pos = end_pos;
	t->file_gen = p->file_gen;
	t->has_gtid = gtid != NULL;
	if (gtid != NULL)
		t->gtid = *gtid;
	/* A finished transaction behind another finished one: keep only the
	 * newer end (same domain, so no GTID is lost). */
	if (t->pending == 0 && t->holds == 0 && p->count >= 2) {
		prev = at(p, p->count - 2);
		if (prev->committed && prev->pending == 0 && prev->holds == 0 &&
		    prev->has_gtid == t->has_gtid &&
		    (!t->has_gtid || (prev->gtid.mariadb == t->gtid.mariadb &&
		    prev->gtid.domain_id == t->gtid.domain_id))) {
			uint64_t seq = prev->seq;

			*prev = *t;
			prev->seq = seq;
			p->count--;
		}
	}
	advance(p);
}

/* The entry of transaction seq, or NULL. */
static struct txn *
find(struct tor_progress *p, uint64_t seq, size_t *idx)
{
	size_t lo = 0, hi = p->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (at(p, mid)->seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == p->count || at(p, lo)->seq != seq)
		return NULL;
	*idx = lo;
	return at(p, lo);
}

void
tor_progress_ack(struct tor_progress *p, uint64_t seq)
{
	size_t idx;
	struct txn *t = find(p, seq, &idx);

	if (t == NULL || t->pending == 0)
		return;         /* not ours: a bug elsewhere, never move on it */
	t->pending--;
	p->pending--;
	if (idx == 0)
		advance(p);
}

void
tor_progress_hold(struct tor_progress *p)
{
	at(p, p->count - 1)->holds++;
}

void
tor_progress_release(struct tor_progress *p, uint64_t seq)
{
	size_t idx;
	struct txn *t = find(p, seq, &idx);

	if (t == NULL || t->holds == 0)
		return;
	t->holds--;
	if (idx == 0)
		advance(p);
}

bool
tor_progress_done(const struct tor_progress *p, struct tor_position *out)
{
	bool any = false;

	for (size_t i = 0; i < p->count; i++) {
		const struct txn *t = at(p, i);

		if (!t->committed || t->pending > 0)
			break;
		memset(out, 0, sizeof(*out));
		snprintf(out->file, sizeof(out->file), "%s",
		    file_of(p, t->file_gen));
		out->pos = t->end_pos;
		any = true;
	}
	return any;
}

void
tor_progress_read(const struct tor_progress *p, struct tor_position *out)
{
	*out = p->safe;
	for (size_t i = 0; i < p->count; i++) {
		const struct txn *t = at(p, i);

		if (!t->committed || t->holds > 0)
			break;
		snprintf(out->file, sizeof(out->file), "%s",
		    file_of(p, t->file_gen));
		out->pos = t->end_pos;
	}
}

bool
tor_progress_take_safe(struct tor_progress *p, struct tor_position *out)
{
	bool moved = p->moved;

	*out = p->safe;
	p->moved = false;
	return moved;
}

bool
tor_progress_moved(const struct tor_progress *p)
{
	return p->moved;
}

void
tor_progress_safe(const struct tor_progress *p, struct tor_position *out)
{
	*out = p->safe;
}

uint64_t
tor_progress_pending_messages(const struct tor_progress *p)
{
	return p->pending;
}
