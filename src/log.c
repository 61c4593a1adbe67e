/*
 * Log lines for operators and for merging the stories of several replicas.
 *
 * A line is built whole in a local buffer and written with one write(2), so
 * lines of concurrent threads never interleave.  The settings are plain
 * atomics: set once at start (and the token at each leadership change).
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tor/log.h"

static const char *const level_names[] = { "debug", "info", "warn", "error" };

static _Atomic int log_threshold = TOR_LOG_INFO;
static _Atomic int log_format = TOR_LOG_LOGFMT;
static _Atomic uint64_t log_token;
static char log_instance[128];
static _Thread_local struct tor_log_group *log_group;

void
tor_log_setup(enum tor_log_level level, enum tor_log_format format,
    const char *instance)
{
	atomic_store(&log_threshold, level);
	atomic_store(&log_format, format);
	snprintf(log_instance, sizeof(log_instance), "%s",
	    instance != NULL ? instance : "");
}

void
tor_log_use_group(struct tor_log_group *g)
{
	log_group = g;
}

void
tor_log_set_token(uint64_t token)
{
	atomic_store(log_group != NULL ? &log_group->token : &log_token,
	    token);
}

int
tor_log_level_parse(const char *name)
{
	for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0])); i++)
		if (strcmp(name, level_names[i]) == 0)
			return i;
	return -1;
}

const char *
tor_log_level_name(enum tor_log_level level)
{
	return level_names[level];
}

/* Appends s to buf, escaped for a double-quoted logfmt or JSON string. */
static size_t
append_quoted(char *buf, size_t at, size_t cap, const char *s)
{
	for (; *s != '\0' && at + 7 < cap; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			buf[at++] = '\\';
			buf[at++] = (char)c;
		} else if (c == '\n') {
			buf[at++] = '\\';
			buf[at++] = 'n';
		} else if (c < 0x20) {
			at += (size_t)snprintf(buf + at, cap - at, "\\u%04x", c);
		} else {
			buf[at++] = (char)c;
		}
	}
	return at;
}

static size_t
append(char *buf, size_t at, size_t cap, const char *s)
{
	size_t n = strlen(s);

	if (at + 1 >= cap)
		return at;
	if (at + n >= cap)
		n = cap - at - 1;
	memcpy(buf + at, s, n);
	return at + n;
}

void
tor_log(enum tor_log_level level, const char *component, const char *fmt, ...)
{
	char msg[2048], line[4096], ts[40], num[32];
	struct timespec now;
	struct tm tm;
	va_list ap;
	size_t at = 0;
	int json = atomic_load(&log_format) == TOR_LOG_JSON;

	if ((int)level < atomic_load(&log_threshold))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(num, sizeof(num), ".%03ldZ", now.tv_nsec / 1000000);
	snprintf(ts + strlen(ts), sizeof(ts) - strlen(ts), "%s", num);
	snprintf(num, sizeof(num), "%llu", (unsigned long long)atomic_load(
	    log_group != NULL ? &log_group->token : &log_token));

	const size_t cap = sizeof(line) - 2;
	if (json) {
		at = append(line, at, cap, "{\"ts\":\"");
		at = append(line, at, cap, ts);
		at = append(line, at, cap, "\",\"level\":\"");
		at = append(line, at, cap, level_names[level]);
		at = append(line, at, cap, "\",\"component\":\"");
		at = append_quoted(line, at, cap, component);
		at = append(line, at, cap, "\",\"instance\":\"");
		at = append_quoted(line, at, cap, log_instance);
		at = append(line, at, cap, "\",\"token\":");
		at = append(line, at, cap, num);
		at = append(line, at, cap, ",\"msg\":\"");
		at = append_quoted(line, at, cap, msg);
		if (log_group != NULL) {
			at = append(line, at, cap, "\",\"group\":\"");
			at = append_quoted(line, at, cap, log_group->name);
		}
		at = append(line, at, cap, "\"}");
	} else {
		at = append(line, at, cap, "ts=");
		at = append(line, at, cap, ts);
		at = append(line, at, cap, " level=");
		at = append(line, at, cap, level_names[level]);
		at = append(line, at, cap, " component=");
		at = append(line, at, cap, component);
		at = append(line, at, cap, " instance=\"");
		at = append_quoted(line, at, cap, log_instance);
		at = append(line, at, cap, "\" token=");
		at = append(line, at, cap, num);
		at = append(line, at, cap, " msg=\"");
		at = append_quoted(line, at, cap, msg);
		at = append(line, at, cap, "\"");
		if (log_group != NULL) {
			at = append(line, at, cap, " group=");
			at = append(line, at, cap, log_group->name);
		}
	}
	line[at++] = '\n';
	if (write(STDERR_FILENO, line, at) < 0) {
		/* Nowhere left to report a failing stderr. */
	}
}
