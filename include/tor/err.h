/*
 * One error convention for every module of tor.
 *
 * A function that can fail returns 0 on success and -1 on failure, and on
 * failure fills the caller's tor_err with one line that names the thing that
 * failed (a file and line, a schema.table.column, a host:port).  The caller
 * decides whether to log it, add context, or halt.  Nothing prints on its own.
 */
#ifndef TOR_ERR_H
#define TOR_ERR_H

#include <stddef.h>

typedef struct tor_err {
	char msg[512];
} tor_err;

void tor_err_format(tor_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void tor_err_format_prefix(tor_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Formats the message into err (when err is not NULL) and evaluates to -1,
 * so a failing path can say `return tor_err_set(err, "...", ...);`.  A macro,
 * so the compiler sees the -1 and knows what a caller's check implies. */
#define tor_err_set(err, ...) \
	__extension__ ({ tor_err_format((err), __VA_ARGS__); -1; })

/* Prefixes the message already in err with more context ("mysql: " ...);
 * evaluates to -1. */
#define tor_err_prefix(err, ...) \
	__extension__ ({ tor_err_format_prefix((err), __VA_ARGS__); -1; })

#endif
