/*
 * The error buffer shared by every module (see include/tor/err.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tor/err.h"

void
tor_err_format(tor_err *err, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
}

void
tor_err_format_prefix(tor_err *err, const char *fmt, ...)
{
	char prefix[sizeof(err->msg)], old[sizeof(err->msg)];
	va_list ap;

	if (err == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	old[sizeof(old) - 1] = '\0';
	size_t n = strlen(prefix);
	memcpy(err->msg, prefix, n);
	/* The message is cut at the buffer's end, never overrun. */
	size_t room = sizeof(err->msg) - n - 1, len = strlen(old);
	if (len > room)
		len = room;
	memcpy(err->msg + n, old, len);
	err->msg[n + len] = '\0';
}
