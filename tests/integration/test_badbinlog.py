"""Corrupted binlog events fed to a running relay (DESIGN.md §1.5, §2):
a bad checksum, a size field that disagrees with the bytes, an event cut
short, a TABLE_MAP whose column type or count disagrees with the ROWS event
after it, a TABLE_MAP the client library cannot parse, and event types
nobody knows, with and without the server's LOG_EVENT_IGNORABLE_F.

tests/integration/proxy.py sits between tor and MariaDB and rewrites one
event of the dump stream (recomputing its CRC where only the content is
meant to be wrong), on every dump connection, as a binlog corrupted on the
server would look.  The rule is armed once the good transactions before it
are in Kafka, so it hits the transaction the test means.

For each corruption the relay must halt (exit 1) with an error naming the
binlog file and the position of the bad event and what is wrong with it;
nothing from the bad event or after it reaches Kafka; and neither the Redis
checkpoint nor Kafka's copy of it moves past the last good transaction.
An unknown event the server marks ignorable is skipped instead.
"""

import json
import re
import threading
import time

import harness
from harness import Tor, read_all
from proxy import (LOG_EVENT_IGNORABLE_F, TABLE_MAP, WRITE_ROWS, WRITE_ROWS_V1,
                   Proxy, crc32, event_header, set_header)
from test_relay import checkpoint, insert_range, make_outbox

ROWS = (WRITE_ROWS, WRITE_ROWS_V1)
MARK = "tor-bad-event"
GOOD = 10               # events 0..9, before the bad transaction
BAD = (10, 11, 12)      # the bad transaction's outbox rows
AFTER = 13              # events 13..15, after it


class Corrupted:
    """An outbox table, a proxy with one armed event rule, a replica."""

    def __init__(self, stack, name, match, rewrite):
        self.stack = stack
        self.name = name
        self.table, ov = make_outbox(stack, name)
        self.proxy = Proxy(stack.mysql_port).start()
        self.armed = threading.Event()
        armed = self.armed
        self.proxy.rewrite_event(lambda ev: armed.is_set() and match(ev),
                                 rewrite)
        ov["mysql"] = {"port": self.proxy.port}
        self.cfg = harness.base_config(stack, **ov)
        self.group = harness.config_group(self.cfg)
        self.tor = None

    def start_after_good_rows(self):
        """Starts the replica, relays events 0..9 (two transactions), waits
        for the checkpoint to pass them; returns their end (file, pos)."""
        self.tor = Tor(self.stack, self.cfg, name="r1").start()
        self.tor.wait_log("starting at", timeout=30)
        insert_range(self.stack, self.table, 0, GOOD, GOOD // 2)
        assert sorted(ns(self.stack, self.name, GOOD)) == list(range(GOOD))
        end = self.stack.binlog_position()
        wait_checkpoint(self.stack, self.group, end)
        return end

    def insert_bad_then_good(self, other_first=False):
        """Arms the rule and inserts the bad transaction (outbox rows
        10..12, the first one's payload marked; with other_first, a row of
        shop.other_<name> marked too, before them), then events 13..15."""
        self.armed.set()
        stmts = []
        if other_first:
            stmts.append(("INSERT INTO shop.other_%s (note) VALUES (%%s)" %
                          self.name, [MARK]))
        for n in BAD:
            payload = {"n": n, "mark": MARK} if n == BAD[0] else {"n": n}
            stmts.append(("INSERT INTO %s (aggregate_type, aggregate_id, "
                          "payload, uuid) VALUES ('order', %%s, %%s, %%s)" %
                          self.table, ["k%d" % n, json.dumps(payload),
                                       "uuid-%d" % n]))
        self.stack.sql_many(stmts, user="app")
        insert_range(self.stack, self.table, AFTER, 3, 3)

    def halting_line(self, timeout=20):
        deadline = time.monotonic() + timeout
        while self.tor.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.tor.running():
            raise AssertionError(
                "no halt after %ss; published %s, checkpoint %s; log:\n%s" %
                (timeout, sorted(ns(self.stack, self.name)),
                 checkpoint(self.stack, self.group), self.tor.log_tail(8)))
        rc = self.tor.wait(5)
        assert rc == 1, "exit %s, not a halt; log:\n%s" % (
            rc, self.tor.log_tail())
        lines = [ln for ln in self.tor.log_text().splitlines()
                 if "halting:" in ln]
        assert lines, self.tor.log_tail()
        return lines[-1]

    def stop(self):
        self.proxy.stop()


def ns(stack, name, want=None, timeout=30):
    """The n of every record in <name>.order and <name>.invoice (waiting
    until `want` distinct ones arrived, when given)."""
    deadline = time.monotonic() + timeout
    while True:
        recs = (read_all(stack.brokers, name + ".order", timeout=10) +
                read_all(stack.brokers, name + ".invoice", timeout=10))
        got = [json.loads(r.value)["n"] for r in recs]
        if want is None or len(set(got)) >= want or \
                time.monotonic() > deadline:
            return got
        time.sleep(0.3)


def wait_checkpoint(stack, group, end, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        cp = checkpoint(stack, group)
        if (cp.get("file"), int(cp.get("pos", 0))) == end:
            return cp
        assert time.monotonic() < deadline, \
            "checkpoint %s never reached %s" % (cp, end)
        time.sleep(0.1)


def kafka_copy(stack, group):
    """(file, pos) of the newest position record of the group on
    __tor_checkpoints, or None."""
    last = None
    for r in read_all(stack.brokers, "__tor_checkpoints", timeout=10):
        if r.key == group.encode() and r.value:
            last = r.value.decode()
    if last is None:
        return None
    m = re.search(r"file=(\S*) pos=(\d+)", last)
    assert m, last
    return m.group(1), int(m.group(2))


def assert_nothing_moved(c, good_end):
    """Kafka holds events 0..9 once each and nothing else; both copies of
    the checkpoint are at the end of the last good transaction."""
    time.sleep(0.5)
    got = ns(c.stack, c.name)
    assert sorted(got) == list(range(GOOD)), \
        "published besides events 0..9 (once each): %s" % sorted(got)
    cp = checkpoint(c.stack, c.group)
    assert (cp.get("file"), int(cp.get("pos", 0))) == good_end, \
        "the Redis checkpoint moved: %s, last good end %s" % (cp, good_end)
    copy = kafka_copy(c.stack, c.group)
    assert copy is not None and copy[0] == good_end[0] and \
        copy[1] <= good_end[1], \
        "Kafka's copy %s is past the last good end %s" % (copy, good_end)


def names_the_event(line, file_, pos, *what):
    where = "binlog event at %s:%d: " % (file_, pos)
    assert where in line, "the halt does not name %s:%d: %s" % (
        file_, pos, line)
    for w in what:
        assert w.lower() in line.lower(), "no %r in: %s" % (w, line)


def marked_rows(ev):
    return ev[4] in ROWS and MARK.encode() in ev


def outbox_table_map(table):
    name = table.split(".", 1)[1].encode()
    return lambda ev: ev[4] == TABLE_MAP and name in ev


def halts_on(stack, name, match, rewrite, *what, at="start",
             other_first=False):
    """The common scenario; returns the Corrupted (proxy stopped)."""
    c = Corrupted(stack, name, match, rewrite)
    try:
        good_end = c.start_after_good_rows()
        c.insert_bad_then_good(other_first=other_first)
        line = c.halting_line()
        done = c.proxy.rewritten()
        assert done, "the proxy rewrote nothing"
        names_the_event(line, good_end[0], done[0][at], *what)
        assert_nothing_moved(c, good_end)
        print("  " + line[line.index("halting:"):].rstrip('"'))
    finally:
        c.stop()
    return c


def flip_a_payload_byte(ev):
    """A bit flipped in the row image, the stored CRC kept."""
    i = ev.index(MARK.encode())
    return ev[:i] + bytes([ev[i] ^ 0x20]) + ev[i + 1:]


def test_bad_checksum_halts_then_a_clean_stream_resumes(stack):
    """A flipped byte inside a rows event: halt at its position; once the
    stream is clean again a new replica publishes everything exactly once
    (the checkpoint had not skipped the bad transaction)."""
    c = halts_on(stack, "bad_crc", marked_rows, flip_a_payload_byte,
                 "checksum mismatch in WRITE_ROWS")
    cfg = c.cfg.replace("port = %d;" % c.proxy.port,
                        "port = %d;" % stack.mysql_port)
    again = Tor(stack, cfg, name="r2").start()
    ns(stack, c.name, AFTER + 3)
    time.sleep(0.5)
    got = ns(stack, c.name)
    assert again.stop() == 0, again.log_tail()
    assert sorted(got) == list(range(AFTER + 3)), sorted(got)


def test_bad_event_length_halts(stack):
    """The header's event_size says 8 bytes more than the event has (CRC
    recomputed: only the length is wrong)."""
    halts_on(stack, "bad_len", marked_rows,
             lambda ev: crc32(set_header(ev, size=len(ev) + 8)),
             "size field says")


def test_truncated_event_halts(stack):
    """The packet carries the event without its last 12 bytes."""
    halts_on(stack, "bad_trunc", marked_rows, lambda ev: ev[:-12],
             "size field says", "were received")


def column_type_changed(ev):
    """The outbox table's first column (id BIGINT) as INT in the map."""
    b = bytearray(ev)
    i = 19 + 8                          # header, table id and flags
    i += 1 + b[i] + 1                   # schema
    i += 1 + b[i] + 1                   # table
    assert b[i] == 7 and b[i + 1] == 8, (b[i], b[i + 1])
    b[i + 1] = 3                        # MYSQL_TYPE_LONGLONG -> LONG
    return crc32(bytes(b))


def test_table_map_column_type_changed_halts(stack):
    """A TABLE_MAP that says INT where the rows event carries a BIGINT:
    every later column is shifted, the row cannot fit the map, tor halts
    at the rows event after the map, publishing none of its rows."""
    halts_on(stack, "bad_tmtype", outbox_table_map("shop.ob_bad_tmtype"),
             column_type_changed, "does not fit its table map",
             at="log_pos")


def column_count_changed(ev):
    """A rows event of the outbox table claiming 6 columns, not 7."""
    b = bytearray(ev)
    i = 19 + (8 if ev[4] == WRITE_ROWS_V1 else 10)
    assert b[i] == 7, b[i]
    b[i] = 6
    return crc32(bytes(b))


def test_rows_column_count_disagrees_halts(stack):
    halts_on(stack, "bad_ncols", marked_rows, column_count_changed,
             "6 columns, table map has 7")


def table_map_count_garbled(ev):
    """A TABLE_MAP whose column count is past its end (the client library
    parses TABLE_MAP itself and refuses it before tor sees it)."""
    b = bytearray(ev)
    i = 19 + 8
    i += 1 + b[i] + 1
    i += 1 + b[i] + 1
    assert b[i] == 7, b[i]
    b[i] = 200
    return crc32(bytes(b))


def test_malformed_table_map_halts(stack):
    halts_on(stack, "bad_tmcount", outbox_table_map("shop.ob_bad_tmcount"),
             table_map_count_garbled, "malformed")


def retyped(t, ignorable=False):
    def rewrite(ev):
        flags = event_header(ev)[5]
        if ignorable:
            flags |= LOG_EVENT_IGNORABLE_F
        return crc32(set_header(ev, type=t, flags=flags))
    return rewrite


def test_unknown_event_type_halts(stack):
    """The bad transaction's first rows event comes as type 200, which
    neither tor nor the client library knows, without the ignorable flag:
    skipping it would lose the row, so tor halts naming it."""
    halts_on(stack, "bad_type200", marked_rows, retyped(200),
             "unknown event type 200")


def test_unknown_event_type_the_library_refuses_halts(stack):
    """Type 100: inside the client library's table of types, which refuses
    it; a new connection reads the same bytes, so tor halts too."""
    halts_on(stack, "bad_type100", marked_rows, retyped(100),
             "event type (100)")


def test_ignorable_unknown_events_are_skipped(stack):
    """Unknown events marked LOG_EVENT_IGNORABLE_F (types 200 and 100, in
    place of another table's rows event) are skipped: every outbox row,
    of those transactions and after, is published once and the
    checkpoint passes them."""
    name = "bad_ignorable"
    other = "shop.other_%s" % name
    seen = []

    def match(ev):
        if ev[4] in ROWS and MARK.encode() in ev and len(seen) < 2:
            seen.append(ev)
            return True
        return False

    def rewrite(ev):
        return retyped(200 if len(seen) == 1 else 100, ignorable=True)(ev)

    c = Corrupted(stack, name, match, rewrite)
    c.proxy.event_rules[0].per_connection = 2
    try:
        c.start_after_good_rows()
        c.armed.set()
        for first in (20, 30):
            stack.sql_many([
                ("INSERT INTO %s (note) VALUES (%%s)" % other, [MARK]),
            ] + [("INSERT INTO %s (aggregate_type, aggregate_id, payload) "
                  "VALUES ('order', %%s, %%s)" % c.table,
                  ["k%d" % n, json.dumps({"n": n})])
                 for n in range(first, first + 3)], user="app")
        insert_range(stack, c.table, AFTER, 3, 3)
        want = (list(range(GOOD)) + list(range(AFTER, AFTER + 3)) +
                list(range(20, 23)) + list(range(30, 33)))
        got = ns(stack, name, len(want))
        end = stack.binlog_position()
        wait_checkpoint(stack, c.group, end)
        assert c.tor.running(), c.tor.log_tail()
        assert sorted(got) == sorted(want), sorted(got)
        assert len(c.proxy.rewritten()) == 2, c.proxy.rewritten()
        assert c.tor.stop() == 0, c.tor.log_tail()
    finally:
        c.stop()
