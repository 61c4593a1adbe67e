/*
 * Logging: one line per event of interest, logfmt or JSON, on stderr.
 *
 * Every line carries the time, level, component, the instance name and the
 * current fencing token (0 until this replica has led), so the lines of several
 * replicas can be merged and read as one story.  Never pass a secret.
 */
#ifndef TOR_LOG_H
#define TOR_LOG_H

#include <stdatomic.h>
#include <stdint.h>

enum tor_log_level {
	TOR_LOG_DEBUG,
	TOR_LOG_INFO,
	TOR_LOG_WARN,
	TOR_LOG_ERROR,
};

enum tor_log_format {
	TOR_LOG_LOGFMT,
	TOR_LOG_JSON,
};

/* Sets the threshold, the format and the instance name printed on every line.
 * Before this is called, lines go out as logfmt at level info. */
void tor_log_setup(enum tor_log_level level, enum tor_log_format format,
    const char *instance);

/* A group of a replica that runs several: its name, printed as group=<name>
 * at the end of the lines of the threads that work for it, and its own
 * fencing token. */
struct tor_log_group {
	char name[128];
	_Atomic uint64_t token;
};

/* The group the calling thread works for from now on (NULL: none, the
 * process's token; a replica of one group never sets one). */
void tor_log_use_group(struct tor_log_group *g);

/* The fencing token printed on every following line: the calling thread's
 * group's, or the process's. */
void tor_log_set_token(uint64_t token);

/* Names of levels as the config spells them; -1 for an unknown name. */
int tor_log_level_parse(const char *name);
const char *tor_log_level_name(enum tor_log_level level);

void tor_log(enum tor_log_level level, const char *component,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_debug(comp, ...) tor_log(TOR_LOG_DEBUG, (comp), __VA_ARGS__)
#define log_info(comp, ...) tor_log(TOR_LOG_INFO, (comp), __VA_ARGS__)
#define log_warn(comp, ...) tor_log(TOR_LOG_WARN, (comp), __VA_ARGS__)
#define log_error(comp, ...) tor_log(TOR_LOG_ERROR, (comp), __VA_ARGS__)

#endif
