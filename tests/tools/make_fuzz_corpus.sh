#!/bin/sh
# Regenerates the seed corpora of the fuzz targets (tests/fuzz/corpus/)
# from a real MariaDB binlog.
#
# Starts MariaDB alone with the local stack's settings
# (deploy/local/stack.sh: ROW format, FULL images and metadata, CRC32) in a
# run directory of its own, writes the rows below, cuts the binlog into
# seeds and removes everything it started:
#
#   fuzz_binlog_decode  per ROWS event, its TABLE_MAP and itself in the
#                       target's pair format (fz-rows-*), and one whole
#                       event of every other type (fz-event-*)
#   fuzz_outbox         source transactions (one, or a run of them) in the
#                       target's record format, FORMAT_DESCRIPTION first;
#                       some with a break record and other knobs set
#   fuzz_config         tor.cfg and tests/unit/config/*.cfg
#   fuzz_binlog_json    left alone: MariaDB stores JSON as text, so its
#                       binlog has no MySQL binary JSON to cut
#
# The rows: every column type tor decodes (integers of every width signed
# and unsigned, DECIMAL, FLOAT/DOUBLE, DATE/TIME/DATETIME/TIMESTAMP with
# fractions, and their pre-10.1.2 forms, YEAR, CHAR/VARCHAR/TEXT/BLOB in
# latin1, utf8mb4 and binary, ENUM/SET, BIT, JSON, NULLs), multi-row
# inserts, updates and deletes, outbox rows for every route and none,
# tombstones, XA (committed, rolled back, one phase), a statement-format
# ROLLBACK group, an ALTER of the outbox table, MINIMAL row images,
# compressed events and a big transaction.  Seeds are kept under 4 KB
# where they can be (tests/run.sh fuzzes with -max_len=4096), the whole
# corpus to a few hundred KB.
#
# Usage: tests/tools/make_fuzz_corpus.sh   (from the repository root)
# Environment: TOR_MYSQL_PORT (default 3357) for the server's TCP port.
set -eu

REPO=$(pwd)
RUN=$REPO/run/fuzz-corpus.$$
CORPUS=$REPO/tests/fuzz/corpus
export TOR_RUN_DIR="$RUN"
export TOR_MYSQL_PORT="${TOR_MYSQL_PORT:-3357}"
export TOR_REDIS_PORT="${TOR_REDIS_PORT:-6417}"     # not started

[ -f tests/fuzz/fuzz_outbox.c ] || { echo "run from the repository root" >&2; exit 2; }

cleanup() {
	deploy/local/stack.sh destroy >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

deploy/local/stack.sh start mariadb >/dev/null

sql() {
	mariadb --defaults-file="$RUN/mariadb/my.cnf" -uroot "$@"
}

sql <<'EOF'
SET SESSION sql_mode = '';
SET SESSION time_zone = '+00:00';
RESET MASTER;
CREATE DATABASE fz;
USE fz;
-- The outbox tables tests/fuzz/fuzz_outbox.c configures.
CREATE TABLE outbox (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  uuid CHAR(36) CHARACTER SET ascii NOT NULL,
  aggregate_id VARCHAR(64) CHARACTER SET utf8mb4 NOT NULL,
  aggregate_type VARCHAR(64) NOT NULL,
  payload LONGBLOB,
  trace VARCHAR(64)
) ENGINE=InnoDB DEFAULT CHARSET=latin1;
CREATE TABLE outbox_typed (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  k BINARY(16) NOT NULL,
  t ENUM('order','invoice','payment.captured','shipment.sent','no route'),
  p JSON,
  ts DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE side_myisam (id INT AUTO_INCREMENT PRIMARY KEY, v INT)
  ENGINE=MyISAM;
CREATE TABLE t_int (
  id INT NOT NULL PRIMARY KEY,
  c_tiny TINYINT, c_utiny TINYINT UNSIGNED,
  c_small SMALLINT, c_usmall SMALLINT UNSIGNED,
  c_medium MEDIUMINT, c_umedium MEDIUMINT UNSIGNED,
  c_int INT, c_uint INT UNSIGNED,
  c_big BIGINT, c_ubig BIGINT UNSIGNED,
  c_bit1 BIT(1), c_bit9 BIT(9), c_bit64 BIT(64), c_year YEAR
);
CREATE TABLE t_num (
  id INT NOT NULL PRIMARY KEY,
  d1 DECIMAL(1,0), d2 DECIMAL(10,3), d3 DECIMAL(30,10),
  d4 DECIMAL(65,30), d5 DECIMAL(18,18) UNSIGNED,
  f FLOAT, f2 FLOAT(10,4), dbl DOUBLE, dbl2 DOUBLE(20,6)
);
CREATE TABLE t_time (
  id INT NOT NULL PRIMARY KEY,
  d DATE, t0 TIME, t1 TIME(1), t3 TIME(3), t6 TIME(6),
  dt0 DATETIME, dt2 DATETIME(2), dt6 DATETIME(6),
  ts0 TIMESTAMP NULL DEFAULT NULL, ts4 TIMESTAMP(4) NULL DEFAULT NULL,
  ts6 TIMESTAMP(6) NULL DEFAULT NULL
);
CREATE TABLE t_str (
  id INT NOT NULL PRIMARY KEY,
  c1 CHAR(1), c10 CHAR(10) CHARACTER SET utf8mb4,
  c255 CHAR(255) CHARACTER SET utf8mb4, vl VARCHAR(20),
  vu VARCHAR(300) CHARACTER SET utf8mb4, b4 BINARY(4), vb VARBINARY(300),
  tt TINYTEXT, tx TEXT CHARACTER SET utf8mb4, mt MEDIUMTEXT, lt LONGTEXT,
  tb TINYBLOB, bl BLOB, mb MEDIUMBLOB, lb LONGBLOB,
  e ENUM('small','medium','large'),
  s SET('a','b','c','d','e','f','g','h','i'),
  j JSON
) DEFAULT CHARSET=latin1;
EOF

# Statements after the tables exist, one group each unless a transaction.
sql fz <<'EOF'
SET SESSION sql_mode = '';
SET SESSION time_zone = '+00:00';
INSERT INTO t_int VALUES
 (1, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295,
  9223372036854775807, 18446744073709551615, b'1', b'111111111',
  b'1111111111111111111111111111111111111111111111111111111111111111', 2155),
 (2, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0,
  -9223372036854775808, 0, b'0', b'0', b'0', 1901),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL),
 (4, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, b'1', b'100000001',
  b'1000000000000000000000000000000000000000000000000000000000000001', 0);
INSERT INTO t_num VALUES
 (1, 9, 1234567.891, 12345678901234567890.0123456789,
  12345678901234567890123456789012345.123456789012345678901234567890,
  0.123456789012345678, 3.5, 123456.7891, 2.718281828459045, 12345678.123456),
 (2, -9, -1234567.891, -0.0000000001, -0.000000000000000000000000000001,
  0, -1.25, -0.0001, -1e-300, -0.000001),
 (3, 0, 0, 0, 0, NULL, 1e38, NULL, 1.7976931348623157e308, NULL),
 (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO t_time VALUES
 (1, '2024-02-29', '838:59:59', '-12:00:00.5', '12:34:56.789',
  '-01:02:03.000004', '9999-12-31 23:59:59', '2024-01-02 03:04:05.12',
  '2024-01-02 03:04:05.123456', '2038-01-19 03:14:07',
  '1970-01-01 00:00:01.0001', '2000-06-15 12:00:00.999999'),
 (2, '1000-01-01', '-838:59:59', '00:00:00.1', '-00:00:00.001',
  '00:00:00.000001', '1000-01-01 00:00:00', '1000-01-01 00:00:00.01',
  '1000-01-01 00:00:00.000001', '1970-01-01 00:00:01',
  '2001-09-09 01:46:40.5', '1999-12-31 23:59:59.000001'),
 (3, '0000-00-00', '00:00:00', NULL, NULL, NULL, '0000-00-00 00:00:00',
  NULL, NULL, '0000-00-00 00:00:00', NULL, NULL),
 (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO t_str VALUES
 (1, 'a', CONVERT(X'68C3A96C6C6F20E29883' USING utf8mb4),
  CONVERT(X'F09F9880F09F9881' USING utf8mb4), 'latin1 \xe9',
  REPEAT(CONVERT(X'E282AC' USING utf8mb4), 100), X'00010200',
  X'00FF00FE', 'tiny', CONVERT(X'E6BCA2E5AD97' USING utf8mb4), 'medium',
  REPEAT('long ', 60), X'00', X'DEADBEEF', X'0A0D', REPEAT(X'FF', 300),
  'large', 'a,d,i', '{"a": [1, 2.5, {"b": null}], "c": "\\u00e9"}'),
 (2, '', '', '', '', '', X'', X'', '', '', '', '', X'', X'', X'', X'',
  'small', '', '[]'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL),
 (4, ' ', 'x ', ' lead', 'trail  ', 'a b', X'FF', X'00', 'ok', 't', 'm',
  'l', X'01', X'02', X'03', X'04', 'bogus', 'b,c,h', '"str"');
UPDATE t_int SET c_int = 42, c_ubig = 7 WHERE id = 1;
UPDATE t_str SET vu = 'updated', j = '{"x":1}' WHERE id IN (1, 4);
DELETE FROM t_num WHERE id = 2;
DELETE FROM t_time WHERE id > 2;

INSERT INTO outbox (uuid, aggregate_id, aggregate_type, payload, trace)
VALUES ('3f1c2a9e-6b7d-4c8e-9a0b-1d2e3f4a5b6c', 'order-1', 'order',
  '{"total":12}', '00-abc-01');
INSERT INTO outbox (uuid, aggregate_id, aggregate_type, payload, trace)
VALUES
  ('0b7e0000-0000-0000-0000-000000000001', 'order-2', 'ORDER', 'upper', NULL),
  ('0b7e0000-0000-0000-0000-000000000002', 'inv-1', 'invoice.paid', X'00FF', 't'),
  ('0b7e0000-0000-0000-0000-000000000003', 'pay-1', 'payment.captured', '', ''),
  ('0b7e0000-0000-0000-0000-000000000004', 'ship-1', 'shipment.sent', NULL, NULL),
  ('0b7e0000-0000-0000-0000-000000000005',
   CONVERT(X'6BC3A9792D31' USING utf8mb4), 'no-route', 'x', 'tr'),
  ('0b7e0000-0000-0000-0000-000000000006', '', 'unrouted type!', 'y', NULL);
BEGIN;
INSERT INTO t_int (id, c_int) VALUES (10, 10);
INSERT INTO outbox (uuid, aggregate_id, aggregate_type, payload)
VALUES ('0b7e0000-0000-0000-0000-000000000007', 'order-3', 'order', 'mixed');
UPDATE outbox SET payload = 'changed' WHERE aggregate_id = 'order-1';
DELETE FROM outbox WHERE aggregate_id = 'order-2';
INSERT INTO outbox_typed (k, t, p, ts) VALUES
  (X'0102030405060708090A0B0C0D0E0F10', 'order', '{"n":1}',
   '2024-05-06 07:08:09.123456'),
  (X'00000000000000000000000000000000', 'payment.captured', NULL,
   '1970-01-01 00:00:00'),
  (X'FF000000000000000000000000000000', 'no route', '[1,2]',
   '2038-01-19 03:14:07.999999'),
  (X'00000000000000000000000000000001', NULL, '{}', '2000-01-01');
COMMIT;
EOF

# XA: prepared then committed or rolled back, from sessions of their own
# (a prepared XA transaction stays with its session until it ends).
sql fz -e "XA START 'x1';
INSERT INTO outbox (uuid, aggregate_id, aggregate_type, payload)
VALUES ('0b7e0000-0000-0000-0000-0000000000a1', 'order-x1', 'order', 'x1a'),
       ('0b7e0000-0000-0000-0000-0000000000a2', 'order-x1', 'order', 'x1b');
XA END 'x1'; XA PREPARE 'x1';"
sql fz -e "XA START 'x2', 'branch', 7;
INSERT INTO outbox (uuid, aggregate_id, aggregate_type, payload)
VALUES ('0b7e0000-0000-0000-0000-0000000000b1', 'order-x2', 'order', 'x2a');
XA END 'x2', 'branch', 7; XA PREPARE 'x2', 'branch', 7;"
sql fz <<'EOF'
INSERT INTO outbox (uuid, aggregate_id, aggregate_type, payload)
VALUES ('0b7e0000-0000-0000-0000-000000000008', 'order-4', 'order', 'between');
XA COMMIT 'x1';
XA ROLLBACK 'x2', 'branch', 7;
XA START 'x3';
INSERT INTO outbox (uuid, aggregate_id, aggregate_type, payload)
VALUES ('0b7e0000-0000-0000-0000-0000000000c1', 'order-x3', 'invoice', 'x3a');
XA END 'x3';
XA COMMIT 'x3' ONE PHASE;
SET SESSION binlog_format = STATEMENT;
BEGIN;
INSERT INTO side_myisam (v) VALUES (1);
INSERT INTO t_int (id, c_int) VALUES (11, 11);
ROLLBACK;
SET SESSION binlog_format = ROW;
SET SESSION binlog_row_image = MINIMAL;
INSERT INTO outbox (uuid, aggregate_id, aggregate_type)
VALUES ('0b7e0000-0000-0000-0000-000000000009', 'order-5', 'order');
UPDATE t_str SET c1 = 'z' WHERE id = 1;
SET SESSION binlog_row_image = FULL;
ALTER TABLE outbox ADD COLUMN note VARCHAR(10) AFTER uuid;
INSERT INTO outbox (uuid, note, aggregate_id, aggregate_type, payload)
VALUES ('0b7e0000-0000-0000-0000-00000000000a', 'n', 'order-6', 'order',
  'after alter');
EOF

# A big transaction: more outbox rows than one ROWS event holds.
sql fz -e "BEGIN;
INSERT INTO outbox (uuid, aggregate_id, aggregate_type, payload)
SELECT CONCAT('big-', seq), CONCAT('order-', seq % 7), 'order',
  REPEAT(CHAR(65 + seq % 26), 200)
FROM seq_1_to_400;
COMMIT;"

# Compressed events, and the pre-10.1.2 temporal types (tables made with
# mysql56_temporal_format off); new sessions take the globals.
sql -e 'SET GLOBAL log_bin_compress = ON; SET GLOBAL log_bin_compress_min_len = 10;
    SET GLOBAL mysql56_temporal_format = OFF'
sql fz <<'EOF'
SET SESSION time_zone = '+00:00';
CREATE TABLE t_old (
  id INT NOT NULL PRIMARY KEY,
  d DATETIME, t TIME, ts TIMESTAMP NULL DEFAULT NULL,
  d3 DATETIME(3), t6 TIME(6), ts2 TIMESTAMP(2) NULL DEFAULT NULL
);
INSERT INTO t_old VALUES
  (1, '2024-02-29 13:14:15', '-838:59:59', '2001-09-09 01:46:40',
   '2024-02-29 13:14:15.123', '-00:00:01.000001', '2001-09-09 01:46:40.99'),
  (2, '0000-00-00 00:00:00', '12:00:01', NULL, NULL, NULL, NULL);
INSERT INTO outbox (uuid, aggregate_id, aggregate_type, payload)
VALUES ('0b7e0000-0000-0000-0000-00000000000b', 'order-7', 'order',
  REPEAT('compress me ', 40));
UPDATE outbox SET payload = 'z' WHERE aggregate_id = 'order-7';
EOF
sql -e 'SET GLOBAL log_bin_compress = OFF; SET GLOBAL mysql56_temporal_format = ON;
    FLUSH BINARY LOGS'

BINLOGS=$(sql -N -e 'SHOW BINARY LOGS' | awk '{ print $1 }' | head -n -1)
mkdir -p "$CORPUS/fuzz_binlog_decode" "$CORPUS/fuzz_outbox" \
    "$CORPUS/fuzz_config"
rm -f "$CORPUS"/fuzz_binlog_decode/fz-* "$CORPUS"/fuzz_outbox/* \
    "$CORPUS"/fuzz_config/*
cp tor.cfg tests/unit/config/*.cfg "$CORPUS/fuzz_config/"

set --
for f in $BINLOGS; do
	set -- "$@" "$RUN/mariadb/data/$f"
done
/usr/bin/python3 - "$CORPUS" "$@" <<'PY'
import sys

corpus, files = sys.argv[1], sys.argv[2:]
LIMIT = 4096

FDE, ROTATE, QUERY, XID, TABLE_MAP, GTID = 15, 4, 2, 16, 19, 162
XA_PREPARE, QUERY_Z = 38, 165
ROWS = {23: 0, 24: 1, 25: 2, 30: 3, 31: 4, 32: 5, 166: 6, 167: 7, 168: 8,
        169: 9, 170: 10, 171: 11}


def events(path):
    d = open(path, "rb").read()
    off = 4
    while off + 19 <= len(d):
        size = int.from_bytes(d[off + 9:off + 13], "little")
        yield d[off:off + size]
        off += size


def record(ev):
    """fuzz_outbox's record: type, flags, length, body (without CRC)."""
    flags = int.from_bytes(ev[17:19], "little") & 0x7f
    log_pos0 = int.from_bytes(ev[13:17], "little") == 0
    body = ev[19:-4]
    return (bytes([ev[4], flags << 1 | log_pos0]) +
            len(body).to_bytes(2, "little") + body)


def write(target, name, data):
    with open(f"{corpus}/{target}/{name}", "wb") as f:
        f.write(data)


# fuzz_binlog_decode: one pair per (table, ROWS type), small ones only.
def decode_seeds(evs, tag):
    seen_pairs, seen_types, tmaps = set(), set(), {}
    n = 0
    for ev in evs:
        t, body = ev[4], ev[19:-4]
        if t == TABLE_MAP:
            tid = int.from_bytes(body[0:6], "little")
            tmaps[tid] = body
            last_tmap = body
        elif t in ROWS:
            tid = int.from_bytes(body[0:6], "little")
            tmap = tmaps.get(tid)
            seed = (bytes([ROWS[t]]) + len(tmap).to_bytes(2, "little") +
                    tmap + body) if tmap else None
            key = (tid, t)
            if seed and key not in seen_pairs and len(seed) <= LIMIT:
                seen_pairs.add(key)
                write("fuzz_binlog_decode", f"fz{tag}-rows-{n:02d}", seed)
                n += 1
        elif t not in seen_types and len(ev) <= LIMIT:
            seen_types.add(t)
            write("fuzz_binlog_decode", f"fz{tag}-event-{t}", ev)


# fuzz_outbox: groups.  A group starts at a GTID event and ends with XID,
# XA_PREPARE, or the QUERY that ends it (COMMIT, ROLLBACK, XA COMMIT/
# ROLLBACK, a standalone statement).
def groups(evs):
    out, cur, head = [], None, []
    for ev in evs:
        t = ev[4]
        if t == GTID:
            if cur:
                out.append(cur)
            cur = [ev]
            standalone = ev[19 + 12] & 1 if len(ev) > 32 else 0
            continue
        if cur is None:
            head.append(ev)
            continue
        cur.append(ev)
        if t in (XID, XA_PREPARE) or (t in (QUERY, QUERY_Z) and (
                standalone or ev[-10:].lower().find(b"commit") >= 0 or
                ev[-12:].lower().find(b"rollback") >= 0 or
                ev.find(b"XA COMMIT") >= 0 or
                ev.find(b"XA ROLLBACK") >= 0)):
            out.append(cur)
            cur = None
    if cur:
        out.append(cur)
    return head, out


def outbox_seeds(evs, tag):
    head, gs = groups(evs)
    fde = next(ev for ev in head if ev[4] == FDE)
    pre = b"".join(record(ev) for ev in head)
    knobs = bytes([0x80, 0, 0, 0])      # fail, routes, checksums on
    n = 0

    def emit(data, k=knobs):
        nonlocal n
        if len(data) + 4 <= LIMIT:
            write("fuzz_outbox", f"fz{tag}-{n:03d}", k + data)
            n += 1
            return True
        return False

    emit(pre)
    interesting = [g for g in gs if any(ev[4] in ROWS for ev in g)
                   or any(ev[4] == XA_PREPARE for ev in g)
                   or any(b"XA " in ev for ev in g)]
    for g in interesting:
        body = b"".join(record(ev) for ev in g)
        if not emit(record(fde) + body):
            # The big transaction: its first events, and its end alone.
            emit(record(fde) + b"".join(record(ev) for ev in g[:4]) +
                 record(g[-1]))
    # Runs of groups (XA prepare ... commit), with breaks and other knobs.
    brk = bytes([0, 0, 0, 0])
    for i in range(0, len(gs), 3):
        run = gs[i:i + 6]
        recs = [record(ev) for g in run for ev in g]
        whole = record(fde) + b"".join(recs)
        if len(whole) + 4 > LIMIT:
            continue
        emit(whole)
        mid = len(recs) // 2
        emit(record(fde) + b"".join(recs[:mid]) + brk +
             b"".join(recs[mid:]), bytes([0x80 | (i % 3), 0, 0, 0]))
        emit(whole, bytes([0x84 | (i % 4) << 3 | 0x40, 2, 3, 1]))
        emit(whole, bytes([0x86, 0, len(recs) // 3 + 1, 2]))


for i, path in enumerate(files):
    evs = list(events(path))
    decode_seeds(evs, i + 1)
    outbox_seeds(evs, i + 1)
PY

du -sb "$CORPUS"/* | sed 's|^|corpus: |'
