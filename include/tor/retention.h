/*
 * Binlog retention headroom: how much binlog the server still holds behind
 * the checkpoint, so an operator learns that a purge is near before a
 * restart finds the checkpoint's file gone (a halt, DESIGN.md §1.5).
 *
 * The leader checks it every mysql.retention_check_ms and when its stream
 * opens, never per event.  The arithmetic is apart from the questions to the
 * server (tor_retention_compute), so it is tested without one.
 */
#ifndef TOR_RETENTION_H
#define TOR_RETENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tor/binlog.h"
#include "tor/checkpoint.h"
#include "tor/err.h"

/* A value nobody knows (not checked yet, no file:pos in the checkpoint),
 * and one that is unbounded (no expiry, or the checkpoint is in the file
 * being written, which the server never purges). */
#define TOR_RETENTION_UNKNOWN INT64_MIN
#define TOR_RETENTION_NEVER INT64_MAX

/* What one check found; each field may be TOR_RETENTION_UNKNOWN. */
struct tor_retention_view {
	/* Bytes of binlog from the oldest file's start to the checkpoint:
	 * the sizes of the files before its file, plus its offset. */
	int64_t headroom_bytes;
	/* Seconds of binlog retained behind the checkpoint, at least: from
	 * the start of the oldest file to the start of the checkpoint's
	 * file (0 when the checkpoint is in the oldest file). */
	int64_t headroom_s;
	/* The server's automatic purge age (binlog_expire_logs_seconds, else
	 * expire_logs_days), 0 when it purges nothing by age. */
	int64_t expire_s;
	/* Seconds until that purge may take the checkpoint's file: it ends
	 * when the next file starts, and is purged expire_s later (0 when
	 * overdue: the server purges at its next rotation).  NEVER when the
	 * server does not purge by age or the file is the newest. */
	int64_t purge_in_s;
};

/* When the server began the files a view needs, seconds since the epoch,
 * or TOR_RETENTION_UNKNOWN. */
struct tor_retention_times {
	int64_t oldest;         /* the oldest file */
	int64_t checkpoint;     /* the checkpoint's file */
	int64_t next;           /* the file after it (none: it is the newest) */
};

/* The view of files (oldest first) for a checkpoint at file:pos, at now_s.
 * Returns 0, or -1 when the checkpoint's file is not among them (purged:
 * the view says headroom 0 and purge_in 0). */
int tor_retention_compute(const struct tor_binlog_file *files, size_t n,
    const char *file, uint64_t pos, const struct tor_retention_times *t,
    int64_t expire_s, int64_t now_s, struct tor_retention_view *v);

/* The index of file in files, or -1. */
long tor_retention_find(const struct tor_binlog_file *files, size_t n,
    const char *file);

/* The purge age from the server's variables, as text ("" when it has
 * none): binlog_expire_logs_seconds when above 0, else expire_logs_days
 * (fractions allowed) in seconds, and 0 when auto_purge is "OFF" (MySQL
 * 8.0.29+ binlog_expire_logs_auto_purge). */
int64_t tor_retention_expire_s(const char *seconds, const char *days,
    const char *auto_purge);

/* The checks of one leadership: the file start times asked for (each
 * file's once), and the warnings said. */
#define TOR_RETENTION_CACHE 8
struct tor_retention {
	struct {
		char name[256];
		int64_t started_s;
	} cache[TOR_RETENTION_CACHE];
	unsigned next_slot;
	bool warned_bytes, warned_purge;
	bool failed_once;       /* a check failed: said once */
};

/* Asks the server (b's query connection, and a short dump per file first
 * seen) and fills v for the checkpoint at pos.  0, or -1 with err set when
 * the server cannot be asked (v then all UNKNOWN). */
int tor_retention_check(struct tor_retention *r, struct tor_binlog *b,
    const struct tor_position *pos, struct tor_retention_view *v,
    tor_err *err);

/* Which warnings to say now: bit 1 headroom under warn_bytes (0: off), bit
 * 2 purge_in under warn_ms (0: off).  Each is said once while it holds,
 * and again only after the view has been back above its threshold. */
#define TOR_RETENTION_WARN_BYTES 1
#define TOR_RETENTION_WARN_PURGE 2
int tor_retention_due_warnings(struct tor_retention *r,
    const struct tor_retention_view *v, int64_t warn_bytes, int64_t warn_ms);

#endif
