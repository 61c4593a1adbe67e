/*
 * The in-flight transaction ring behind the checkpoint (see
 * include/tor/progress.h).
 *
 * Entries are kept oldest first in a growable ring, sorted by sequence
 * number, so an acknowledgement finds its transaction by binary search.  A
 * transaction stores only a file generation, an end offset and its GTID; the
 * MariaDB GTID state (one GTID per replication domain) is folded in only as
 * the safe position passes a transaction.
 *
 * The ring stays as small as what is in flight: finished transactions next
 * to each other are one entry (the newer end, and the last GTID of each
 * domain they passed), merged as they finish at their commit and, for
 * those acknowledged behind an older one, whenever the ring is full.  So a
 * transaction that holds the head for ever (an XA prepare whose commit
 * never comes) costs one entry, not one per transaction after it.
 *
 * MySQL GTIDs are a set, not a position per domain: a merged run keeps the
 * set of those it passed (a few intervals: runs are consecutive numbers
 * of one server), added to the safe position's set as it is passed.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tor/gtid_set.h"
#include "tor/progress.h"

#define MAX_DOMAINS 64

struct domain_gtid {
	uint32_t domain;
	uint32_t server;
	uint64_t seq;
};

struct txn {
	uint64_t seq;
	uint64_t pending;
	uint32_t holds;         /* XA prepares waiting for their end */
	uint64_t end_pos;
	uint32_t file_gen;
	bool committed;
	bool has_gtid;
	struct tor_gtid gtid;
	/* A merged run of transactions: the last MariaDB GTID of each other
	 * domain it passed, folded in before gtid (NULL: none). */
	struct domain_gtid *passed;
	uint8_t n_passed;
	/* A merged run: the MySQL GTIDs it passed, gtid aside (NULL:
	 * none); untracked: one of them cannot be in a set (8.4's tagged
	 * GTIDs). */
	struct tor_gtid_set *mysql;
	bool untracked;
};

struct file_name {
	uint32_t gen;
	char name[256];
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
	struct tor_gtid_set set;        /* MySQL's executed set at safe */
	bool set_known;
};

static struct txn *
at(const struct tor_progress *p, size_t i)
{
	return &p->ring[(p->head + i) % p->cap];
}

/* A MySQL GTID a set can hold (not anonymous, not tagged). */
static bool
mysql_gtid(const struct txn *t)
{
	return t->has_gtid && !t->gtid.mariadb && t->gtid.gno != 0 &&
	    t->gtid.tag[0] == '\0';
}

/* Adds the MySQL GTIDs of entry t to s; -1 when memory runs out or one of
 * them cannot be in a set. */
static int
fold_mysql(struct tor_gtid_set *s, const struct txn *t)
{
	if (t->untracked)
		return -1;
	if (t->mysql != NULL && tor_gtid_set_add_set(s, t->mysql, NULL) < 0)
		return -1;
	if (mysql_gtid(t) && tor_gtid_set_add(s, t->gtid.sid,
	    (int64_t)t->gtid.gno, NULL) < 0)
		return -1;
	return 0;
}

static void
free_mysql(struct txn *t)
{
	if (t->mysql != NULL)
		tor_gtid_set_free(t->mysql);
	free(t->mysql);
	t->mysql = NULL;
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
	for (size_t i = 0; i < p->count; i++) {
		free(at(p, i)->passed);
		free_mysql(at(p, i));
	}
	tor_gtid_set_free(&p->set);
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
		for (size_t i = 0; i < t->n_passed; i++)
			set_domain(p, t->passed[i].domain, t->passed[i].server,
			    t->passed[i].seq);
		if (t->has_gtid && t->gtid.mariadb)
			set_domain(p, t->gtid.domain_id, t->gtid.server_id,
			    t->gtid.seq_no);
		/* A set missing one transaction would ask another server
		 * for it again, or worse, for less: it is dropped. */
		if (p->set_known && fold_mysql(&p->set, t) < 0) {
			p->set_known = false;
			tor_gtid_set_free(&p->set);
		}
		free(t->passed);
		t->passed = NULL;
		free_mysql(t);
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

static bool
finished(const struct txn *t)
{
	return t->committed && t->pending == 0 && t->holds == 0;
}

/* Sets domain's GTID in list (n entries, room for MAX_DOMAINS). */
static void
list_set(struct domain_gtid *list, size_t *n, uint32_t domain,
    uint32_t server, uint64_t seq)
{
	size_t i;

	for (i = 0; i < *n; i++)
		if (list[i].domain == domain)
			break;
	if (i == *n) {
		if (*n == MAX_DOMAINS)
			return;         /* as set_domain: informational */
		(*n)++;
	}
	list[i] = (struct domain_gtid){ domain, server, seq };
}

/*
 * Makes the finished transaction a stand for both a and the finished b
 * right after it, in a's place: b's end and GTID, and the last GTID of
 * every other domain the two passed.  False (nothing changed) when memory
 * runs out.
 */
static bool
merge(struct txn *a, struct txn *b)
{
	struct domain_gtid list[MAX_DOMAINS], *kept = NULL;
	struct tor_gtid_set *set = NULL;
	bool untracked = a->untracked || b->untracked;
	size_t n = 0;

	/* The MySQL GTIDs of both, b's own aside: built aside first, so
	 * that a failure changes nothing. */
	if (!untracked && (a->mysql != NULL || b->mysql != NULL ||
	    mysql_gtid(a))) {
		if ((set = calloc(1, sizeof(*set))) == NULL)
			return false;
		if (fold_mysql(set, a) < 0 || (b->mysql != NULL &&
		    tor_gtid_set_add_set(set, b->mysql, NULL) < 0)) {
			tor_gtid_set_free(set);
			free(set);
			return false;
		}
	}

	for (size_t i = 0; i < a->n_passed; i++)
		list[n++] = a->passed[i];
	if (a->has_gtid && a->gtid.mariadb)
		list_set(list, &n, a->gtid.domain_id, a->gtid.server_id,
		    a->gtid.seq_no);
	for (size_t i = 0; i < b->n_passed; i++)
		list_set(list, &n, b->passed[i].domain, b->passed[i].server,
		    b->passed[i].seq);
	/* b's own GTID is folded last: its domain needs no other entry. */
	for (size_t i = 0; b->has_gtid && b->gtid.mariadb && i < n; i++)
		if (list[i].domain == b->gtid.domain_id) {
			list[i] = list[--n];
			break;
		}
	if (n > 0) {
		if ((kept = malloc(n * sizeof(*kept))) == NULL) {
			if (set != NULL)
				tor_gtid_set_free(set);
			free(set);
			return false;
		}
		memcpy(kept, list, n * sizeof(*kept));
	}
	free(a->passed);
	free(b->passed);
	free_mysql(a);
	free_mysql(b);
	*a = *b;
	a->passed = kept;
	a->n_passed = (uint8_t)n;
	a->mysql = set;
	a->untracked = untracked;
	return true;
}

/* Merges each run of finished transactions into one entry. */
static void
compact(struct tor_progress *p)
{
	size_t w = 0;

	for (size_t i = 0; i < p->count; i++) {
		struct txn *t = at(p, i);

		if (w > 0 && finished(at(p, w - 1)) && finished(t) &&
		    merge(at(p, w - 1), t))
			continue;
		if (w != i)
			*at(p, w) = *t;
		w++;
	}
	p->count = w;
}

uint64_t
tor_progress_begin(struct tor_progress *p)
{
	struct txn *t;

	if (tor_progress_in_txn(p))
		return at(p, p->count - 1)->seq;
	/* Full: merge what finished out of order first; grow only when that
	 * leaves less than a quarter free, so merging stays rare. */
	if (p->count == p->cap) {
		compact(p);
		if (p->count > p->cap - p->cap / 4 && grow(p) < 0)
			return 0;
	}
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
	t->untracked = gtid != NULL && !gtid->mariadb && gtid->tag[0] != '\0';
	/* A finished transaction behind another finished one: one entry. */
	if (finished(t) && p->count >= 2) {
		prev = at(p, p->count - 2);
		if (finished(prev) && merge(prev, t))
			p->count--;
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
	/* The GTID state goes as far as the file:pos: a copy of the domain
	 * table takes in the transactions passed, as advance() would. */
	struct tor_progress g = *p;
	bool any = false;

	for (size_t i = 0; i < p->count; i++) {
		const struct txn *t = at(p, i);

		if (!t->committed || t->holds > 0)
			break;
		snprintf(g.safe.file, sizeof(g.safe.file), "%s",
		    file_of(p, t->file_gen));
		g.safe.pos = t->end_pos;
		for (size_t k = 0; k < t->n_passed; k++)
			set_domain(&g, t->passed[k].domain, t->passed[k].server,
			    t->passed[k].seq);
		if (t->has_gtid && t->gtid.mariadb)
			set_domain(&g, t->gtid.domain_id, t->gtid.server_id,
			    t->gtid.seq_no);
		any = true;
	}
	if (any)
		format_gtid_state(&g);
	*out = g.safe;
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

int
tor_progress_start_gtid_set(struct tor_progress *p, const char *text,
    tor_err *err)
{
	tor_gtid_set_free(&p->set);
	p->set_known = false;
	if (tor_gtid_set_parse(&p->set, text, err) < 0) {
		tor_gtid_set_free(&p->set);
		return -1;
	}
	p->set_known = true;
	return 0;
}

int
tor_progress_safe_gtid_set(const struct tor_progress *p, char *buf,
    size_t cap)
{
	if (!p->set_known)
		return -1;
	return tor_gtid_set_format(&p->set, buf, cap);
}

int
tor_progress_read_gtid_set(const struct tor_progress *p, char *buf,
    size_t cap)
{
	struct tor_gtid_set s;
	int n = -1;

	if (!p->set_known)
		return -1;
	tor_gtid_set_init(&s);
	if (tor_gtid_set_add_set(&s, &p->set, NULL) < 0)
		goto out;
	/* As far as tor_progress_read goes. */
	for (size_t i = 0; i < p->count; i++) {
		const struct txn *t = at(p, i);

		if (!t->committed || t->holds > 0)
			break;
		if (fold_mysql(&s, t) < 0)
			goto out;
	}
	n = tor_gtid_set_format(&s, buf, cap);
out:
	tor_gtid_set_free(&s);
	return n;
}

size_t
tor_progress_entries(const struct tor_progress *p)
{
	return p->count;
}
