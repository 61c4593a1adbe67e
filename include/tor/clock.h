/*
 * The lease clock, in milliseconds, for deadlines, intervals and timeouts:
 * never the wall clock, which an NTP step can move back or forth.  It is
 * CLOCK_BOOTTIME, which never goes back either and, unlike CLOCK_MONOTONIC,
 * counts the time the machine spent suspended (a laptop's lid, a VM's
 * hibernation): a lease deadline that passed during a suspend has passed
 * when the leader wakes, as it has for Redis and for the successor.
 */
#ifndef TOR_CLOCK_H
#define TOR_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t
tor_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
