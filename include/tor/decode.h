/*
 * `tor decode -c tor.cfg [--all-events] FILE...`: what tor would publish
 * from binlog files on disk, read the way mysqlbinlog reads them (no
 * server, no Kafka, no Redis), through the same reader and outbox mapping
 * the relay uses.
 *
 * One JSON object per line on out:
 *   {"message": {...}}  a row tor would publish: topic, key, value, headers
 *                       (tor.* included) and tor.pos;
 *   {"skip": {...}}     a row or rows event it would not: reason (unrouted,
 *                       update, delete) and where;
 *   {"event": {...}}    with --all-events, every event before its rows:
 *                       file, pos (where it starts), size, type;
 *   {"halt": {...}}     where the relay would stop, and why (then exit 1).
 * Byte strings are JSON strings when they are UTF-8, else {"base64": ...};
 * SQL NULL is null.  Not a binlog, a cut-off event, a wrong checksum: an
 * error naming the file and the offset on err, exit 1.
 */
#ifndef TOR_DECODE_H
#define TOR_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tor/config.h"

/* The exit code: 0 when every file was read to its end, 1 otherwise. */
int tor_decode_files(const struct tor_config *cfg, char *const *files,
    int n_files, bool all_events, FILE *out, FILE *err);

/* One file's bytes, named name (the fuzz target's way in). */
int tor_decode_buffer(const struct tor_config *cfg, const char *name,
    const uint8_t *data, size_t len, bool all_events, FILE *out, FILE *err);

#endif
