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

/* CLOCK_MONOTONIC's time ms from now, for pthread_cond_timedwait on a
 * condition variable set to that clock (glibc refuses CLOCK_BOOTTIME
 * there).  It stands still during a suspend: a waiter that must see a
 * suspend soon caps its waits and reads tor_mono_ms afresh after each. */
static inline struct timespec
tor_cond_deadline(int64_t ms)
{
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	return until;
}

#endif
