/*
 * What the code under test allocates, seen through ASan's allocator hooks
 * (the unit tests always run under ASan): how many allocations, the
 * largest one, the most bytes live at once, and what is still held
 * afterwards, each counted from the moment the probe starts; and how many
 * blocks were freed still holding a given byte string (alloc_probe_watch),
 * which is how a test sees a secret left in freed memory.  Static
 * inline, so that each test binary takes only what it uses.
 */
#ifndef TOR_TEST_ALLOC_PROBE_H
#define TOR_TEST_ALLOC_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* ASan's allocator interface (compiler-rt's sanitizer/allocator_interface.h,
 * which gcc does not install). */
int __sanitizer_install_malloc_and_free_hooks(
    void (*malloc_hook)(const volatile void *, size_t),
    void (*free_hook)(const volatile void *));
size_t __sanitizer_get_current_allocated_bytes(void);
size_t __sanitizer_get_allocated_size(const volatile void *p);

struct alloc_probe {
	bool on;
	size_t base;            /* bytes allocated when it started */
	size_t count;           /* allocations since (realloc counts one) */
	size_t largest;         /* the largest of them */
	size_t peak;            /* most bytes allocated at once, above base */
	const void *needle;     /* alloc_probe_watch's byte string */
	size_t needle_len;
	size_t freed_with;      /* blocks freed still holding it */
};

static struct alloc_probe alloc_probe;

static inline void
alloc_probe_malloc(const volatile void *p, size_t n)
{
	size_t now;

	(void)p;
	if (!alloc_probe.on)
		return;
	alloc_probe.count++;
	if (n > alloc_probe.largest)
		alloc_probe.largest = n;
	now = __sanitizer_get_current_allocated_bytes();
	if (now > alloc_probe.base && now - alloc_probe.base > alloc_probe.peak)
		alloc_probe.peak = now - alloc_probe.base;
}

/* Called before the block is released: its bytes are still readable. */
static inline void
alloc_probe_free(const volatile void *p)
{
	if (!alloc_probe.on || alloc_probe.needle == NULL || p == NULL)
		return;
	if (memmem((const void *)p, __sanitizer_get_allocated_size(p),
	    alloc_probe.needle, alloc_probe.needle_len) != NULL)
		alloc_probe.freed_with++;
}

static inline void
alloc_probe_start(void)
{
	static bool installed;

	if (!installed)
		installed = __sanitizer_install_malloc_and_free_hooks(
		    alloc_probe_malloc, alloc_probe_free) != 0;
	alloc_probe = (struct alloc_probe){ .on = true,
	    .base = __sanitizer_get_current_allocated_bytes() };
}

/* Counts, from now until alloc_probe_stop, the blocks freed holding the
 * len bytes at needle (which must outlive the watch). */
static inline void
alloc_probe_watch(const void *needle, size_t len)
{
	alloc_probe_start();
	alloc_probe.needle = needle;
	alloc_probe.needle_len = len;
}

static inline void
alloc_probe_stop(void)
{
	alloc_probe.on = false;
}

/* Bytes allocated now beyond what was allocated when the probe started. */
static inline size_t
alloc_probe_held(void)
{
	size_t now = __sanitizer_get_current_allocated_bytes();

	return now > alloc_probe.base ? now - alloc_probe.base : 0;
}

#endif
