/*
 * Monotonic milliseconds, for deadlines, intervals and timeouts: never the
 * wall clock, which an NTP step can move back or forth.
 */
#ifndef TOR_CLOCK_H
#define TOR_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t
tor_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
