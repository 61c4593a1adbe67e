/*
 * A standby's report and the leader's stall watch (include/tor/health.h).
 */
#include "tor/health.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "tor/err.h"

int
tor_health_format(const struct tor_health *h, char *buf, size_t cap)
{
	char head[sizeof(h->head.file) + 32] = "-";

	if (h->head.file[0] != '\0')
		tor_position_format(&h->head, head, sizeof(head));
	return snprintf(buf, cap, "%d %d %s %" PRId64, h->kafka, h->mysql,
	    head, h->at_ms);
}

int
tor_health_parse(const char *text, struct tor_health *h)
{
	char head[sizeof(h->head.file) + 32];
	int kafka, mysql, end = 0;
	tor_err err;

	memset(h, 0, sizeof(*h));
	if (sscanf(text, "%d %d %287s %" SCNd64 "%n", &kafka, &mysql, head,
	    &h->at_ms, &end) != 4 || text[end] != '\0' ||
	    (kafka != 0 && kafka != 1) || (mysql != 0 && mysql != 1))
		return -1;
	h->kafka = kafka;
	h->mysql = mysql;
	if (strcmp(head, "-") != 0 &&
	    (tor_position_parse(head, &h->head, &err) < 0 ||
	    h->head.file[0] == '\0'))
		return -1;
	return 0;
}

const char *
tor_stall_reason(enum tor_stall_kind kind)
{
	return kind == TOR_STALL_KAFKA ? "kafka_stall" :
	    kind == TOR_STALL_MYSQL ? "mysql_stall" : "none";
}

void
tor_stall_begin(struct tor_stall *s, int stall_ms, int heartbeat_ms,
    int64_t now)
{
	memset(s, 0, sizeof(*s));
	s->stall_ms = stall_ms;
	s->silent_ms = 3 * heartbeat_ms;
	s->began_ms = s->kafka_moved_ms = s->mysql_moved_ms = now;
}

void
tor_stall_kafka_moved(struct tor_stall *s, int64_t now)
{
	s->kafka_moved_ms = now;
}

void
tor_stall_mysql_moved(struct tor_stall *s, int64_t now)
{
	s->mysql_moved_ms = now;
}

static int64_t
later(int64_t a, int64_t b)
{
	return a > b ? a : b;
}

enum tor_stall_kind
tor_stall_check(struct tor_stall *s, int64_t now, bool waiting)
{
	if (!waiting)
		s->kafka_work_ms = 0;
	else if (s->kafka_work_ms == 0)
		s->kafka_work_ms = now;
	if (s->stall_ms == 0 || now - s->began_ms < s->stall_ms)
		return TOR_STALL_NONE;
	/* Work that came after a quiet spell is timed from its arrival, not
	 * from the last acknowledgement before the spell. */
	if (waiting && now - later(s->kafka_moved_ms, s->kafka_work_ms) >=
	    s->stall_ms)
		return TOR_STALL_KAFKA;
	/* The relay reads the binlog only while Kafka lets it go on: a
	 * stream silent since Kafka last moved, with messages waiting, is
	 * Kafka holding the relay (a commit retried, a full queue). */
	if (waiting && s->kafka_moved_ms <= s->mysql_moved_ms)
		return TOR_STALL_NONE;
	if (now - s->mysql_moved_ms >= s->stall_ms &&
	    now - s->mysql_moved_ms > s->silent_ms)
		return TOR_STALL_MYSQL;
	return TOR_STALL_NONE;
}

bool
tor_health_fits(const struct tor_health *h, enum tor_stall_kind kind,
    const struct tor_position *pos)
{
	int c;

	if (!h->kafka || !h->mysql || kind == TOR_STALL_NONE)
		return false;
	if (kind == TOR_STALL_KAFKA)
		return true;
	if (h->head.file[0] == '\0')
		return false;
	c = tor_position_compare(&h->head, pos);
	return c == TOR_POSITION_UNORDERED || c > 0;
}
