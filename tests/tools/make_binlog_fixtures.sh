#!/bin/sh
# Regenerates the real binlog fixtures of tests/unit/test_binlog_decode.c.
#
# Starts a throwaway MariaDB (its own datadir and socket, no TCP port, UTC),
# runs the statements below with ROW binlogging, FULL metadata and CRC32
# checksums, copies the binlog files into tests/unit/binlog/ and removes
# everything it started.  Then prints what SELECT shows for the rows, which
# is where the literal expectations in the test come from.
#
#   mariadb-bin.000001  every column type (insert, update, delete), a
#                       MINIMAL-metadata table and MINIMAL row images, and a
#                       ROTATE written by FLUSH BINARY LOGS
#   mariadb-bin.000002  log_bin_compress=ON: compressed QUERY and ROWS
#                       events; a BINARY(16) key (DEFAULT_CHARSET metadata);
#                       old (pre-5.6) TIME/DATETIME/TIMESTAMP types; YEAR
#                       and GEOMETRY before other numeric and character
#                       columns (how MariaDB counts them in the signedness
#                       and charset metadata)
#   mariadb-bin.000003  transactions the source-transaction reader must tell
#                       apart (tests/unit/test_reader.c): a multi-row
#                       insert, XA transactions prepared and then committed
#                       or rolled back with other transactions in between,
#                       XA COMMIT ONE PHASE, and a statement-format group
#                       that ends with ROLLBACK; left open by the server
#                       (FDE flagged "in use")
#
# Usage: tests/tools/make_binlog_fixtures.sh   (from the repository root)
set -eu

OUT=tests/unit/binlog
TMP=$(mktemp -d /tmp/tor-binlog-fx.XXXXXX)
SOCK=$TMP/mysqld.sock
PID=

cleanup() {
	if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
		mariadb-admin --no-defaults -uroot -S "$SOCK" shutdown \
		    2>/dev/null || kill "$PID"
		wait "$PID" 2>/dev/null || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

mariadb-install-db --no-defaults --datadir="$TMP/data" --user="$(id -un)" \
    --auth-root-authentication-method=normal --skip-test-db >/dev/null

mariadbd --no-defaults --user="$(id -un)" --datadir="$TMP/data" \
    --socket="$SOCK" --skip-networking --pid-file="$TMP/mysqld.pid" \
    --log-error="$TMP/error.log" --innodb-buffer-pool-size=16M \
    --default-time-zone=+00:00 --character-set-server=latin1 \
    --server-id=1 --log-bin="$TMP/data/mariadb-bin" --binlog-format=ROW \
    --binlog-row-image=FULL --binlog-row-metadata=FULL \
    --binlog-checksum=CRC32 &
PID=$!

i=0
until mariadb --no-defaults -uroot -S "$SOCK" -e 'SELECT 1' >/dev/null 2>&1; do
	i=$((i + 1))
	if [ $i -gt 100 ] || ! kill -0 "$PID" 2>/dev/null; then
		cat "$TMP/error.log" >&2
		echo "mariadbd did not start" >&2
		exit 1
	fi
	sleep 0.2
done

sql() {
	mariadb --no-defaults -uroot -S "$SOCK" "$@"
}

echo "--- what SELECT prints (expectations for the test) ---"
sql <<'EOF'
SET SESSION sql_mode = '';
CREATE DATABASE fx;
USE fx;
CREATE TABLE t_all (
  id INT NOT NULL PRIMARY KEY,
  c_tiny TINYINT, c_utiny TINYINT UNSIGNED,
  c_small SMALLINT, c_usmall SMALLINT UNSIGNED,
  c_medium MEDIUMINT, c_umedium MEDIUMINT UNSIGNED,
  c_int INT, c_uint INT UNSIGNED,
  c_big BIGINT, c_ubig BIGINT UNSIGNED,
  c_dec1 DECIMAL(10,3), c_dec2 DECIMAL(30,10),
  c_float FLOAT, c_double DOUBLE,
  c_char CHAR(10), c_char255 CHAR(255) CHARACTER SET utf8mb4,
  c_varchar VARCHAR(300), c_binary BINARY(4), c_varbinary VARBINARY(10),
  c_tinytext TINYTEXT, c_text TEXT, c_mediumtext MEDIUMTEXT,
  c_longtext LONGTEXT,
  c_tinyblob TINYBLOB, c_blob BLOB, c_mediumblob MEDIUMBLOB,
  c_longblob LONGBLOB,
  c_json JSON,
  c_date DATE, c_time TIME, c_time3 TIME(3), c_time6 TIME(6),
  c_datetime DATETIME, c_datetime6 DATETIME(6),
  c_ts TIMESTAMP NULL DEFAULT NULL, c_ts3 TIMESTAMP(3) NULL DEFAULT NULL,
  c_year YEAR,
  c_enum ENUM('small','medium','large'),
  c_set SET('a','b','c','d'),
  c_bit1 BIT(1), c_bit17 BIT(17)
) DEFAULT CHARSET=latin1;

INSERT INTO t_all VALUES
 (1, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295,
  9223372036854775807, 18446744073709551615,
  1234567.891, 12345678901234567890.0123456789, 3.5, 2.718281828459045,
  'abc', CONVERT(X'68C3A96C6C6F20E29883' USING utf8mb4), REPEAT('x', 300), X'00010200', X'00FF00',
  'tiny', 'text', 'medium', 'long', X'00', X'DEADBEEF', X'0A0D', X'FF',
  '{"a": [1, 2, {"b": null}]}',
  '2024-02-29', '838:59:59', '12:34:56.789', '-01:02:03.000004',
  '9999-12-31 23:59:59', '2024-01-02 03:04:05.123456',
  '2038-01-19 03:14:07', '1970-01-01 00:00:01.001', 2155, 'large', 'a,d',
  b'1', b'11111111111111111'),
 (2, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0,
  -9223372036854775808, 0,
  -1234567.891, -0.0000000001, -1.25, -1e-300,
  '', '', '', X'', X'', '', '', '', '', X'', X'', X'', X'', '[]',
  '1000-01-01', '-838:59:59', '-00:00:00.001', '-12:00:00.5',
  '1000-01-01 00:00:00', '1000-01-01 00:00:00.000001',
  '1970-01-01 00:00:01', '2000-06-15 12:00:00.5', 1901, 'small', '',
  b'0', b'0'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL),
 (4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.001, 0, 0, 0.1,
  ' lead', 'x', 'a b', X'FF', X'00', 'ok', 't', 'm', 'l', X'01', X'02',
  X'03', X'04', '"str"',
  '0000-00-00', '00:00:00', '-00:00:01.500', '00:00:00.000001',
  '0000-00-00 00:00:00', '0000-00-00 00:00:00.000000',
  '0000-00-00 00:00:00', '0000-00-00 00:00:00.000', 0, 'bogus', 'b,c',
  b'0', b'10000000000000001');

SELECT *, HEX(c_binary), HEX(c_varbinary), HEX(c_tinyblob), HEX(c_blob),
  HEX(c_mediumblob), HEX(c_longblob), c_bit1 + 0, c_bit17 + 0,
  HEX(c_char255) FROM t_all\G
UPDATE t_all SET c_int = 42, c_varchar = 'updated' WHERE id = 1;
DELETE FROM t_all WHERE id = 2;

SET GLOBAL binlog_row_metadata = MINIMAL;
CREATE TABLE t_min (
  id INT UNSIGNED NOT NULL PRIMARY KEY,
  v INT UNSIGNED, e ENUM('x','y'), s SET('p','q'),
  name VARCHAR(20), note VARCHAR(20)
) DEFAULT CHARSET=latin1;
INSERT INTO t_min VALUES (1, 4294967295, 'y', 'p,q', 'n1', 'note');
SET GLOBAL binlog_row_metadata = FULL;

SET SESSION binlog_row_image = MINIMAL;
INSERT INTO t_min (id, name) VALUES (2, 'partial');
UPDATE t_min SET note = 'changed' WHERE id = 1;
SELECT * FROM t_min;
DELETE FROM t_min WHERE id = 2;
SET SESSION binlog_row_image = FULL;

FLUSH BINARY LOGS;
EOF

# Second file: compressed events (new sessions pick up the global), and
# the old temporal formats, which tables get when created with
# mysql56_temporal_format off.
sql -e 'SET GLOBAL log_bin_compress = ON; SET GLOBAL mysql56_temporal_format = OFF'
sql <<'EOF'
SET SESSION sql_mode = '';
USE fx;
CREATE TABLE t_zip (
  id INT NOT NULL PRIMARY KEY,
  body TEXT
) DEFAULT CHARSET=latin1 COMMENT='a table whose CREATE statement is long enough to be compressed: ..........................................................................................................................................................................................................................................';
INSERT INTO t_zip VALUES (1, REPEAT('compress me ', 100)), (2, 'short');
UPDATE t_zip SET body = REPEAT('again ', 100) WHERE id = 2;
DELETE FROM t_zip WHERE id = 1;
CREATE TABLE t_key (
  seq INT NOT NULL, k CHAR(4), t VARCHAR(10),
  id BINARY(16) NOT NULL PRIMARY KEY, u TEXT
) DEFAULT CHARSET=latin1;
INSERT INTO t_key VALUES
  (7, 'ab  ', 'z ', X'0102030405060708090A0B0C0D0E0F00', 'text');
CREATE TABLE t_old (
  id INT NOT NULL PRIMARY KEY,
  d DATETIME, t TIME, ts TIMESTAMP NULL DEFAULT NULL
) DEFAULT CHARSET=latin1;
INSERT INTO t_old VALUES
  (1, '2024-02-29 13:14:15', '-838:59:59', '2001-09-09 01:46:40'),
  (2, '0000-00-00 00:00:00', '12:00:01', '0000-00-00 00:00:00');
CREATE TABLE t_year (
  y YEAR, i INT, u INT UNSIGNED, g GEOMETRY, b BINARY(2), c CHAR(4)
) DEFAULT CHARSET=latin1;
INSERT INTO t_year VALUES
  (2024, -1, 4294967295, ST_GeomFromText('POINT(1 2)'), X'0100', 'hi');
FLUSH BINARY LOGS;
EOF

# Third file: the reader's transactions, uncompressed, new temporal types.
sql -e 'SET GLOBAL log_bin_compress = OFF; SET GLOBAL mysql56_temporal_format = ON'
sql <<'EOF'
USE fx;
CREATE TABLE outbox (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  aggregate_id VARCHAR(20) NOT NULL, aggregate_type VARCHAR(20) NOT NULL,
  payload VARCHAR(100)
) ENGINE=InnoDB DEFAULT CHARSET=latin1;
CREATE TABLE side_myisam (id INT AUTO_INCREMENT PRIMARY KEY, v INT)
  ENGINE=MyISAM;
CREATE TABLE side_innodb (id INT AUTO_INCREMENT PRIMARY KEY, v INT)
  ENGINE=InnoDB;
INSERT INTO outbox (aggregate_id, aggregate_type, payload) VALUES
  ('k1', 'order', 'a1'), ('k2', 'order', 'a2'), ('k3', 'order', 'a3');
EOF
# A prepared XA transaction stays with its session until that session ends:
# one session each.
sql fx -e "XA START 'x1';
INSERT INTO outbox (aggregate_id, aggregate_type, payload) VALUES
  ('k1', 'order', 'x1a'), ('k2', 'order', 'x1b');
XA END 'x1'; XA PREPARE 'x1';"
sql fx -e "XA START 'x2';
INSERT INTO outbox (aggregate_id, aggregate_type, payload) VALUES
  ('k1', 'order', 'x2a');
XA END 'x2'; XA PREPARE 'x2';"
sql <<'EOF'
USE fx;
INSERT INTO outbox (aggregate_id, aggregate_type, payload) VALUES
  ('k4', 'order', 'b1');
XA COMMIT 'x1';
XA ROLLBACK 'x2';
SET SESSION binlog_format = STATEMENT;
BEGIN;
INSERT INTO side_innodb (v) VALUES (1);
INSERT INTO side_myisam (v) VALUES (1);
ROLLBACK;
SET SESSION binlog_format = ROW;
INSERT INTO outbox (aggregate_id, aggregate_type, payload) VALUES
  ('k5', 'order', 'c1');
XA START 'x3';
INSERT INTO outbox (aggregate_id, aggregate_type, payload) VALUES
  ('k6', 'order', 'x3a');
XA END 'x3';
XA COMMIT 'x3' ONE PHASE;
EOF

mkdir -p "$OUT"
cp "$TMP/data/mariadb-bin.000001" "$TMP/data/mariadb-bin.000002" \
    "$TMP/data/mariadb-bin.000003" "$OUT/"
chmod 644 "$OUT"/mariadb-bin.00000[123]

sql -e "USE fx; SELECT * FROM t_min; SELECT * FROM t_old;
    SELECT HEX(id), CONCAT('[', k, ']'), CONCAT('[', t, ']'), u FROM t_key;
    SELECT y, i, u, HEX(g), HEX(b), CONCAT('[', c, ']') FROM t_year;
    SELECT id, LENGTH(body) FROM t_zip;
    SHOW BINLOG EVENTS IN 'mariadb-bin.000001';
    SHOW BINLOG EVENTS IN 'mariadb-bin.000002';
    SHOW BINLOG EVENTS IN 'mariadb-bin.000003';"

# Fuzz seeds (tests/fuzz/fuzz_binlog_decode.c input format): per ROWS
# event, one byte naming its type, the length of the TABLE_MAP body before
# it (2 bytes, little-endian), that body, then the ROWS body; plus a few
# whole events.  Checksums are cut off: the target parses without them.
CORPUS=tests/fuzz/corpus/fuzz_binlog_decode
mkdir -p "$CORPUS"
python3 - "$OUT" "$CORPUS" <<'PY'
import sys
out, corpus = sys.argv[1], sys.argv[2]
kinds = {23: 0, 24: 1, 25: 2, 30: 3, 31: 4, 32: 5, 166: 6, 167: 7, 168: 8,
         169: 9, 170: 10, 171: 11}
n = 0
for name in ("mariadb-bin.000001", "mariadb-bin.000002"):
    d = open(f"{out}/{name}", "rb").read()
    off, tmap, whole = 4, None, set()
    while off < len(d):
        size = int.from_bytes(d[off + 9:off + 13], "little")
        ev = d[off:off + size]
        body = ev[19:-4]
        t = ev[4]
        if t == 19:
            tmap = body
        elif t in kinds and tmap is not None:
            seed = bytes([kinds[t]]) + len(tmap).to_bytes(2, "little") + tmap + body
            open(f"{corpus}/{name[-1]}-rows-{n:02d}", "wb").write(seed)
            n += 1
        elif t in (2, 4, 15, 16, 162, 165) and t not in whole:
            whole.add(t)
            open(f"{corpus}/{name[-1]}-event-{t}", "wb").write(ev)
        off += size
PY
