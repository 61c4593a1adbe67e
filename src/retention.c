/*
 * Binlog retention headroom (include/tor/retention.h).
 *
 * SHOW BINARY LOGS gives the files and their sizes: the bytes behind the
 * checkpoint are plain sums.  Time needs more: the server lists no dates,
 * so a file's start is the timestamp of its format description event, read
 * once per file over a short dump and kept.  MariaDB and MySQL purge by age
 * a file whose last write is older than the expiry; a file's last write is
 * when the next one began, so the checkpoint's file is at risk expire_s
 * after the start of the file that follows it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tor/retention.h"

long
tor_retention_find(const struct tor_binlog_file *files, size_t n,
    const char *file)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(files[i].name, file) == 0)
			return (long)i;
	return -1;
}

int
tor_retention_compute(const struct tor_binlog_file *files, size_t n,
    const char *file, uint64_t pos, const struct tor_retention_times *t,
    int64_t expire_s, int64_t now_s, struct tor_retention_view *v)
{
	long at = tor_retention_find(files, n, file);
	uint64_t bytes = pos;

	v->expire_s = expire_s;
	v->headroom_s = TOR_RETENTION_UNKNOWN;
	if (at < 0) {
		v->headroom_bytes = 0;
		v->headroom_s = 0;
		v->purge_in_s = 0;
		return -1;
	}
	for (long i = 0; i < at; i++)
		bytes += files[i].size;
	v->headroom_bytes = bytes > INT64_MAX ? INT64_MAX : (int64_t)bytes;
	if (at == 0)
		v->headroom_s = 0;
	else if (t->oldest != TOR_RETENTION_UNKNOWN &&
	    t->checkpoint != TOR_RETENTION_UNKNOWN)
		v->headroom_s = t->checkpoint > t->oldest ?
		    t->checkpoint - t->oldest : 0;
	if (expire_s <= 0 || (size_t)at + 1 == n)
		v->purge_in_s = TOR_RETENTION_NEVER;
	else if (t->next == TOR_RETENTION_UNKNOWN)
		v->purge_in_s = TOR_RETENTION_UNKNOWN;
	else if (t->next + expire_s <= now_s)
		v->purge_in_s = 0;
	else
		v->purge_in_s = t->next + expire_s - now_s;
	return 0;
}

int64_t
tor_retention_expire_s(const char *seconds, const char *days,
    const char *auto_purge)
{
	long long s = seconds[0] != '\0' ? strtoll(seconds, NULL, 10) : 0;
	double d = days[0] != '\0' ? strtod(days, NULL) : 0;

	if (strcmp(auto_purge, "OFF") == 0)
		return 0;
	if (s > 0)
		return s;
	return d > 0 ? (int64_t)(d * 86400) : 0;
}

/* When the server began file, asked once per file: names are never
 * reused while a file exists, and the few a leadership needs (the oldest,
 * the checkpoint's, the one after it) fit the cache. */
static int64_t
file_started(struct tor_retention *r, struct tor_binlog *b, const char *file,
    tor_err *err)
{
	int64_t started;

	for (size_t i = 0; i < TOR_RETENTION_CACHE; i++)
		if (strcmp(r->cache[i].name, file) == 0)
			return r->cache[i].started_s;
	if (tor_binlog_file_started(b, file, &started, err) < 0)
		return TOR_RETENTION_UNKNOWN;
	snprintf(r->cache[r->next_slot].name, sizeof(r->cache[0].name), "%s",
	    file);
	r->cache[r->next_slot].started_s = started;
	r->next_slot = (r->next_slot + 1) % TOR_RETENTION_CACHE;
	return started;
}

static void
view_unknown(struct tor_retention_view *v)
{
	v->headroom_bytes = v->headroom_s = v->expire_s = v->purge_in_s =
	    TOR_RETENTION_UNKNOWN;
}

static int
server_expire_s(struct tor_binlog *b, int64_t *expire_s, tor_err *err)
{
	char seconds[32], days[32], auto_purge[16];

	if (tor_binlog_global(b, "binlog_expire_logs_seconds", seconds,
	    sizeof(seconds), err) < 0 ||
	    tor_binlog_global(b, "expire_logs_days", days, sizeof(days),
	    err) < 0 ||
	    tor_binlog_global(b, "binlog_expire_logs_auto_purge", auto_purge,
	    sizeof(auto_purge), err) < 0)
		return -1;
	*expire_s = tor_retention_expire_s(seconds, days, auto_purge);
	return 0;
}

int
tor_retention_check(struct tor_retention *r, struct tor_binlog *b,
    const struct tor_position *pos, struct tor_retention_view *v,
    tor_err *err)
{
	struct tor_retention_times t = { TOR_RETENTION_UNKNOWN,
	    TOR_RETENTION_UNKNOWN, TOR_RETENTION_UNKNOWN };
	struct tor_binlog_file *files;
	int64_t expire_s;
	size_t n;
	long at;

	view_unknown(v);
	if (pos->file[0] == '\0')
		return 0;       /* a GTID alone names no offset */
	if (server_expire_s(b, &expire_s, err) < 0 ||
	    tor_binlog_files(b, &files, &n, err) < 0)
		return -1;
	at = tor_retention_find(files, n, pos->file);
	/* A start time that cannot be read leaves its figure unknown; the
	 * byte count stands on its own. */
	if (at > 0) {
		t.oldest = file_started(r, b, files[0].name, err);
		t.checkpoint = file_started(r, b, pos->file, err);
	}
	if (at >= 0 && (size_t)at + 1 < n && expire_s > 0)
		t.next = file_started(r, b, files[at + 1].name, err);
	tor_retention_compute(files, n, pos->file, pos->pos, &t, expire_s,
	    (int64_t)time(NULL), v);
	free(files);
	return 0;
}

int
tor_retention_due_warnings(struct tor_retention *r,
    const struct tor_retention_view *v, int64_t warn_bytes, int64_t warn_ms)
{
	bool low_bytes = warn_bytes > 0 &&
	    v->headroom_bytes != TOR_RETENTION_UNKNOWN &&
	    v->headroom_bytes < warn_bytes;
	bool near_purge = warn_ms > 0 &&
	    v->purge_in_s != TOR_RETENTION_UNKNOWN &&
	    v->purge_in_s != TOR_RETENTION_NEVER &&
	    v->purge_in_s * 1000 < warn_ms;
	int due = 0;

	if (low_bytes && !r->warned_bytes)
		due |= TOR_RETENTION_WARN_BYTES;
	if (near_purge && !r->warned_purge)
		due |= TOR_RETENTION_WARN_PURGE;
	/* An unknown figure neither warns nor re-arms. */
	if (v->headroom_bytes != TOR_RETENTION_UNKNOWN)
		r->warned_bytes = low_bytes;
	if (v->purge_in_s != TOR_RETENTION_UNKNOWN)
		r->warned_purge = near_purge;
	return due;
}
