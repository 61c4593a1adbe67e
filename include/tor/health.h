/*
 * Gray failures: a leader that renews its lease but makes no progress hands
 * the lease to a standby that says it could do better (docs/ha-protocol.md,
 * "Gray failures").  Here the parts that need no I/O: a standby's report as
 * it is kept in Redis, when a leader counts as stalled, and whether a report
 * qualifies its standby to take such a stall over.
 */
#ifndef TOR_HEALTH_H
#define TOR_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tor/checkpoint.h"

/* What a standby reaches, as it writes it to P:{G}:health:<instance>. */
struct tor_health {
	bool kafka;                     /* a broker answered its metadata request */
	bool mysql;                     /* the server answered SHOW MASTER STATUS */
	struct tor_position head;       /* the binlog's end then (file "": none) */
	int64_t at_ms;                  /* the standby's wall clock, for operators */
};

/* "<kafka 0|1> <mysql 0|1> <file:pos|-> <at_ms>".  snprintf semantics. */
int tor_health_format(const struct tor_health *h, char *buf, size_t cap);

/* The reverse; -1 when text is not such a report (a standby of another
 * version, a hand edit): it then counts as no report. */
int tor_health_parse(const char *text, struct tor_health *h);

enum tor_stall_kind {
	TOR_STALL_NONE,
	TOR_STALL_KAFKA,        /* messages wait for Kafka, none acknowledged */
	TOR_STALL_MYSQL,        /* the binlog stream is silent, heartbeats too */
	TOR_STALL_N
};

/* Metric label of a stall kind: "kafka_stall", "mysql_stall". */
const char *tor_stall_reason(enum tor_stall_kind kind);

/* The leader's watch over one leadership; monotonic ms throughout. */
struct tor_stall {
	int stall_ms;                   /* ha.stall_ms; 0: never stalled */
	int silent_ms;                  /* a stream this quiet is gone */
	int64_t began_ms;               /* the leadership's start */
	int64_t kafka_work_ms;          /* since when messages wait (0: none) */
	int64_t kafka_moved_ms;         /* the last acknowledgement or commit */
	int64_t mysql_moved_ms;         /* the last event or heartbeat read */
};

/* A fresh watch for a leadership that begins at now. */
void tor_stall_begin(struct tor_stall *s, int stall_ms, int heartbeat_ms,
    int64_t now);

/* Kafka acknowledged a message or committed a transaction at now. */
void tor_stall_kafka_moved(struct tor_stall *s, int64_t now);

/* The binlog stream delivered an event (a heartbeat counts) at now. */
void tor_stall_mysql_moved(struct tor_stall *s, int64_t now);

/* Whether the leader is stalled at now, and on which side: Kafka when
 * messages have waited (waiting: in flight or in an open transaction) for
 * stall_ms with no acknowledgement; else MySQL when the stream has been
 * silent for stall_ms, unless messages wait with no acknowledgement since
 * the stream's last event (Kafka holds the relay: not MySQL's stall).
 * Neither within stall_ms of the leadership's start. */
enum tor_stall_kind tor_stall_check(struct tor_stall *s, int64_t now,
    bool waiting);

/* Whether report h lets its standby take over a stall of kind from a leader
 * that has read up to pos: it must reach both services, and for a MySQL
 * stall the binlog must have moved past pos (else the leader has no work;
 * positions that cannot be ordered count as moved). */
bool tor_health_fits(const struct tor_health *h, enum tor_stall_kind kind,
    const struct tor_position *pos);

#endif
