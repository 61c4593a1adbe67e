"""Payloads that are not friendly text, and payloads too large for Kafka
(DESIGN.md §1.5, §4), through the real relay.

Bytes: every byte value, invalid UTF-8, NUL bytes, an empty payload and
SQL NULL (a tombstone), in a BLOB, a VARBINARY and a latin1 VARCHAR payload
column, with binary keys (NUL, 0xff, empty) and multibyte UTF-8 keys: each
message must carry exactly the stored bytes.

Too large for the client (message.max.bytes in kafka.properties, which tor
checks before producing): with outbox.unrouted = "skip" the row is counted
(tor_events_skipped_total{reason="oversized"}) and the relay goes on; with
"fail" it halts naming the row, publishing nothing of that transaction or
after it, and the checkpoint stays before it.  (The dead-letter policy is
test_relay.test_unrouted_and_oversized_go_to_the_dead_letter_topic; the
broker's own refusal is test_sink.)
"""

import random
import time

import harness
from harness import Tor, header, read_all, wait_for
from test_badbinlog import wait_checkpoint
from test_http import free_port, samples, value
from test_relay import checkpoint, make_outbox

INVALID_UTF8 = (b"\xc3\x28"             # a lead byte without its follower
                b"\xa0\xa1"             # followers without a lead
                b"\xe2\x28\xa1"         # a broken three-byte sequence
                b"\xf0\x28\x8c\xbc"     # a broken four-byte sequence
                b"\xf8\xa1\xa1\xa1\xa1"  # five bytes: never UTF-8
                b"\xc0\xaf"             # an overlong '/'
                b"\xed\xa0\x80"         # a UTF-16 surrogate
                b"\xff\xfe")            # bytes UTF-8 never has


def payloads(longest):
    rnd = random.Random(20261201)
    return [
        bytes(range(256)),
        INVALID_UTF8,
        b"\x00",
        b"a\x00b\x00\x00",
        b"",
        None,                           # SQL NULL: a tombstone
        bytes(rnd.randrange(256) for _ in range(longest)),
        b"trailing spaces  ",
        b"\x00\x00trailing NULs\x00\x00",
        "é € 😀 ключ".encode(),
    ]


BINARY_KEYS = [b"\x00", b"\xff\xfe\xfd", bytes(range(1, 64)), b"", b"k\x00k",
               b"\x80", b" ", b"\xc3\x28", b"K", b"\x7f\x00\xff"]


def outbox_table(stack, table, key_type, payload_type):
    stack.sql("DROP TABLE IF EXISTS %s" % table)
    stack.sql("CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
              "uuid CHAR(36) NULL, aggregate_id %s NOT NULL, "
              "aggregate_type VARCHAR(64) NOT NULL, payload %s NULL)" %
              (table, key_type, payload_type))


def hex_literal(b):
    return "NULL" if b is None else "X'%s'" % b.hex()


def test_binary_payloads_and_keys_pass_byte_for_byte(stack):
    name = "pl_bytes"
    blob = "shop.ob_%s_blob" % name
    vb = "shop.ob_%s_vb" % name
    vc = "shop.ob_%s_vc" % name
    outbox_table(stack, blob, "VARCHAR(64) CHARACTER SET utf8mb4", "BLOB")
    outbox_table(stack, vb, "VARBINARY(64)", "VARBINARY(4096)")
    outbox_table(stack, vc, "VARBINARY(64)",
                 "VARCHAR(1024) CHARACTER SET latin1")
    kinds = [("blob", blob, 60000), ("varbinary", vb, 4000),
             ("varchar", vc, 1000)]
    columns = {"id": "id", "key": "aggregate_id", "type": "aggregate_type",
               "payload": "payload"}
    ov = {"outbox": {
        "tables": [{"table": t, "columns": columns,
                    "headers": [{"column": "uuid", "header": "uuid"}]}
                   for _, t, _ in kinds],
        "routes": [{"match": "^%s$" % k, "topic": "%s.%s" % (name, k)}
                   for k, _, _ in kinds]}}
    want = {}
    stmts = []
    for kind, table, longest in kinds:
        for i, value in enumerate(payloads(longest)):
            if kind == "blob":
                key = ("k-%d-ключ-é-😀" % i).encode()
            else:
                key = BINARY_KEYS[i]
            uuid = "%s-%d" % (kind, i)
            want[uuid] = (key, value)
            # Hex literals: the server takes their bytes as they are (a
            # string parameter would be read in the connection's charset).
            stmts.append(("INSERT INTO %s (uuid, aggregate_id, aggregate_type,"
                          " payload) VALUES (%%s, %s, %%s, %s)" %
                          (table, hex_literal(key), hex_literal(value)),
                          [uuid, kind]))
    tor = Tor(stack, ov).start()
    tor.wait_log("starting at", timeout=30)
    stack.sql_many(stmts, user="app")
    got = {}
    for kind, _, _ in kinds:
        n = sum(1 for u in want if u.startswith(kind + "-"))
        for r in wait_for(stack.brokers, "%s.%s" % (name, kind), n,
                          timeout=30):
            uuid = header(r, "uuid").decode()
            assert uuid not in got, "%s published twice" % uuid
            got[uuid] = (r.key, r.value)
    assert tor.stop() == 0, tor.log_tail()
    assert set(got) == set(want), sorted(set(want) ^ set(got))
    for uuid, (key, value) in sorted(want.items()):
        gk, gv = got[uuid]
        assert gk == key, "%s: key %r, stored %r" % (uuid, gk, key)
        assert gv == value, "%s: value %r..., stored %r..." % (
            uuid, None if gv is None else gv[:40],
            None if value is None else value[:40])


def insert(stack, table, rows):
    """One transaction of (key, payload) rows of type 'order'."""
    stack.sql_many([("INSERT INTO %s (aggregate_type, aggregate_id, payload) "
                     "VALUES ('order', %%s, %%s)" % table, [k, v])
                    for k, v in rows], user="app")


def order_values(stack, name):
    return [r.value for r in read_all(stack.brokers, name + ".order",
                                      timeout=10)]


BIG = b"x" * 9000                       # over message.max.bytes=4000


def test_oversized_skip_counts_and_goes_on(stack):
    name = "pl_big_skip"
    table, ov = make_outbox(stack, name)
    port = free_port()
    ov["outbox"]["unrouted"] = "skip"
    ov["kafka"] = {"properties": ["message.max.bytes=4000"]}
    ov["http"] = {"listen": "127.0.0.1:%d" % port}
    tor = Tor(stack, ov).start()
    tor.wait_log("starting at", timeout=30)
    insert(stack, table, [("k0", b"v0")])
    insert(stack, table, [("k1", BIG), ("k2", b"v2")])
    insert(stack, table, [("k3", b"v3")])
    wait_for(stack.brokers, name + ".order", 3, timeout=30)
    end = stack.binlog_position()
    wait_checkpoint(stack, tor.group, end)
    skipped = value(samples(port), "tor_events_skipped_total",
                    reason="oversized")
    assert tor.stop() == 0, tor.log_tail()
    assert sorted(order_values(stack, name)) == [b"v0", b"v2", b"v3"]
    assert skipped == 1, skipped


def test_oversized_fail_halts_naming_the_row(stack):
    name = "pl_big_fail"
    table, ov = make_outbox(stack, name)
    ov["kafka"] = {"properties": ["message.max.bytes=4000"]}
    cfg = harness.base_config(stack, **ov)
    tor = Tor(stack, cfg).start()
    tor.wait_log("starting at", timeout=30)
    insert(stack, table, [("k0", b"v0"), ("k1", b"v1")])
    wait_for(stack.brokers, name + ".order", 2, timeout=30)
    good_end = stack.binlog_position()
    wait_checkpoint(stack, tor.group, good_end)
    insert(stack, table, [("k2", BIG), ("k3", b"v3")])
    gtid = stack.sql("SELECT @@gtid_binlog_pos")[0][0]
    insert(stack, table, [("k4", b"v4")])
    for run in (tor, Tor(stack, cfg, name="r2")):
        if not run.running() and run.proc is None:
            run.start()
        assert run.wait(30) == 1, run.log_tail()
        line = [ln for ln in run.log_text().splitlines()
                if "halting:" in ln]
        assert line, run.log_tail()
        assert "message too large" in line[-1] and \
            "(row %s:0)" % gtid in line[-1], (gtid, line[-1])
        time.sleep(0.5)
        assert sorted(order_values(stack, name)) == [b"v0", b"v1"]
        cp = checkpoint(stack, tor.group)
        assert (cp["file"], int(cp["pos"])) == good_end, (cp, good_end)
