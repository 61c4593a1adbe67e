/*
 * libFuzzer target for the pool's member line (tor_member_parse), read
 * from Redis where anyone with the prefix may write.  Beyond not
 * crashing: a line the parser accepts is the one line tor_member_format
 * writes for what it read, so two replicas never read one line two ways.
 * Seeds (tests/fuzz/corpus/fuzz_member) are lines as a beat writes them.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tor/members.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char line[TOR_MEMBER_LINE_MAX * 2], back[TOR_MEMBER_LINE_MAX];
	struct tor_member m;

	if (size >= sizeof(line))
		return 0;
	memcpy(line, data, size);
	line[size] = '\0';
	if (tor_member_parse(line, &m) == -1)
		return 0;
	if (tor_member_format(&m, back, sizeof(back)) == -1 ||
	    strcmp(back, line) != 0)
		abort();
	return 0;
}
