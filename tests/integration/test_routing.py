"""Routing choices beyond the first match, against the real local stack:

- outbox.route = "all": a copy of the row to every route that matches (the
  Go tor's fan-out); the checkpoint passes a row only once every copy is
  acknowledged, so a kill -9 loses no copy, and de-duplication at takeover
  works per topic, so it duplicates none; in transactional mode the copies
  are produced inside the Kafka transaction of their source transaction.
- columns.partition: an integer column picks the partition (Debezium's
  `partition` placement); NULL or a partition the topic lacks follows
  outbox.unrouted.
"""

import collections
import json
import time

import harness
from harness import Tor, header, read_all
from test_decode import binlog_path, decode, fresh_file
from test_dedup import copies
from test_failover import kill_rounds
from test_ha import (HA, Feeder, assert_none_lost, stop_all, wait_leading)
from test_relay import check_per_key_order, insert_range, make_outbox
from test_source import roll_back_left_over, xa


def fan_config(stack, name, **extra):
    """make_outbox's routes plus `.` (every type) to <name>.all, and the
    first route again under another regex (one copy per topic)."""
    table, ov = make_outbox(stack, name)
    ov["outbox"]["routes"] += [{"match": ".", "topic": name + ".all"},
                               {"match": "^ORD", "topic": name + ".order",
                                "icase": True}]
    ov["outbox"]["route"] = "all"
    ov.update(extra)
    return table, ov


def by_event(recs):
    out = collections.defaultdict(list)
    for r in recs:
        out[json.loads(r.value)["n"]].append(r)
    return out


def read_topics(stack, name, total, timeout=60, isolation="read_committed"):
    """{topic suffix: {n: [records]}} once every topic holds what it must
    (or at the timeout)."""
    want = {"order": sum(1 for n in range(total) if n % 3 != 2),
            "invoice": sum(1 for n in range(total) if n % 3 == 2),
            "all": total}
    deadline = time.monotonic() + timeout
    while True:
        got = {t: by_event(read_all(stack.brokers, "%s.%s" % (name, t),
                                    timeout=10, isolation=isolation))
               for t in want}
        if all(len(got[t]) >= want[t] for t in want) or \
                time.monotonic() > deadline:
            return got
        time.sleep(0.3)


def check_fan_out(got, total):
    """Each event in its own topic and in .all, nowhere else, once each."""
    order = [n for n in range(total) if n % 3 != 2]
    invoice = [n for n in range(total) if n % 3 == 2]
    assert sorted(got["order"]) == order, sorted(got["order"])[:10]
    assert sorted(got["invoice"]) == invoice, sorted(got["invoice"])[:10]
    assert_none_lost(got["all"], total)
    for t in ("order", "invoice", "all"):
        extra = copies(got[t], total)
        assert not extra, "%s: %d events more than once, e.g. %s" % (
            t, len(extra), sorted(extra.items())[:5])


def test_route_all_sends_a_copy_to_every_matching_route(stack):
    """300 rows: an order goes to .order and .all (the second .order route
    adds no copy), an invoice to .invoice and .all; the copies carry the
    same tor.pos; the checkpoint covers every row, so a restart publishes
    nothing again.  The default (first) sends each row to one topic."""
    name = "route_all"
    table, ov = fan_config(stack, name)
    binlog = fresh_file(stack)
    tor = Tor(stack, ov).start()
    tor.wait_log("starting at", timeout=30)
    insert_range(stack, table, 0, 300, 25)
    got = read_topics(stack, name, 300)
    check_fan_out(got, 300)
    # tor decode prints the same copies.
    p, lines = decode(stack, tor.cfg_text,
                      [binlog_path(stack, binlog)])
    assert p.returncode == 0, p.stderr
    printed = sorted((m["message"]["topic"], json.loads(
        m["message"]["value"])["n"]) for m in lines if "message" in m)
    assert printed == sorted((r.topic, n) for t in got.values()
                             for n, rs in t.items() for r in rs), printed[:6]
    for n, recs in got["all"].items():
        mine = got["order" if n % 3 != 2 else "invoice"][n]
        assert header(mine[0], "tor.pos") == header(recs[0], "tor.pos"), n
    check_per_key_order([r for rs in got["all"].values() for r in rs])
    assert tor.stop() == 0, tor.log_tail()
    assert "published 600," in tor.log_text(), tor.log_tail()
    again = Tor(stack, tor.cfg_text, name="r1b").start()
    again.wait_log("resuming", timeout=30)
    time.sleep(2)
    assert again.stop() == 0
    assert "published 0," in again.log_text(), again.log_tail()
    assert harness.count_records(stack.brokers, name + ".all") == 300

    first = "route_first"
    table, ov = fan_config(stack, first)
    del ov["outbox"]["route"]
    tor = Tor(stack, ov, name="first").start()
    tor.wait_log("starting at", timeout=30)
    insert_range(stack, table, 0, 30, 30)
    harness.wait_for(stack.brokers, first + ".order", 20)
    harness.wait_for(stack.brokers, first + ".invoice", 10)
    assert tor.stop() == 0
    assert "published 30," in tor.log_text(), tor.log_tail()
    assert harness.count_records(stack.brokers, first + ".all") == 0
    print("  route = all: 300 rows, 600 messages, each copy once; "
          "route = first: 30 rows, 30 messages")


def test_route_all_kill9_loses_and_repeats_no_copy(stack):
    """Three replicas under steady writes, the leader kill -9'd four times:
    every event exactly once in its own topic and exactly once in .all."""
    name = "route_kill"
    table, ov = fan_config(stack, name)
    cfg = harness.base_config(stack, ha=dict(HA),
                              checkpoint={"interval_ms": 200}, **ov)
    tors = [Tor(stack, cfg, name=n).start() for n in ("r1", "r2", "r3")]
    wait_leading(tors, timeout=10)
    feeder = Feeder(stack, table, 0, None, 10, 0.01)
    feeder.start()
    started = list(tors)
    try:
        time.sleep(1.0)
        rounds = kill_rounds(stack, tors, cfg, 4, pause=0.8,
                             started=started)
    finally:
        feeder.stop()
    total = feeder.finish()
    got = read_topics(stack, name, total)
    check_fan_out(got, total)
    print("  %d events, %d messages, 4 kills (ms to the successor: %s): "
          "none lost, none twice" % (
              total, total + total, ", ".join("%.0f" % r[0] for r in rounds)))
    stop_all(tors)


def test_route_all_transactional(stack):
    """kafka.mode = transactional: the copies of a source transaction's rows
    are produced in its Kafka transaction; across two handovers a
    read_committed consumer sees every copy once (Kafka's transaction
    markers hide nothing committed and show nothing twice)."""
    name = "route_txn"
    table, ov = fan_config(stack, name)
    ov["kafka"] = {"mode": "transactional"}
    cfg = harness.base_config(stack, ha=dict(HA), **ov)
    r1 = Tor(stack, cfg, name="r1").start()
    wait_leading([r1], timeout=10)
    r1.wait_log("starting at", timeout=30)
    r2 = Tor(stack, cfg, name="r2").start()
    insert_range(stack, table, 0, 150, 15)
    harness.wait_for(stack.brokers, name + ".all", 150)
    assert r1.stop() == 0, r1.log_tail()
    r2.wait_log("resuming", timeout=30)
    r1 = Tor(stack, cfg, name="r1b").start()
    insert_range(stack, table, 150, 150, 15)
    harness.wait_for(stack.brokers, name + ".all", 300)
    assert r2.stop() == 0, r2.log_tail()
    r1.wait_log("resuming", timeout=30)
    insert_range(stack, table, 300, 60, 15)
    got = read_topics(stack, name, 360)
    check_fan_out(got, 360)
    assert r1.stop() == 0, r1.log_tail()
    print("  360 rows, 720 messages over two handovers, each copy once")


def test_route_all_xa_copies_at_commit_none_at_rollback(stack):
    """A prepared XA transaction's rows are held; at XA COMMIT each goes to
    all of its routes (the copies made from the held rows), at XA ROLLBACK
    to none."""
    name = "route_xa"
    roll_back_left_over(stack, "tor_fan1", "tor_fan2")
    table, ov = fan_config(stack, name)
    tor = Tor(stack, ov).start()
    tor.wait_log("starting at", timeout=30)
    xa(stack, "tor_fan1", range(0, 5), end=None, table=table)
    xa(stack, "tor_fan2", range(10, 15), end=None, table=table)
    stack.sql("XA COMMIT 'tor_fan1'")
    stack.sql("XA ROLLBACK 'tor_fan2'")
    stack.sql_many([("INSERT INTO %s (aggregate_type, aggregate_id, payload)"
                     " VALUES ('order', 'k', %%s)" % table,
                     [json.dumps({"n": 5})])], user="app")
    order = harness.wait_for(stack.brokers, name + ".order", 6)
    every = harness.wait_for(stack.brokers, name + ".all", 6)
    time.sleep(1)
    assert tor.stop() == 0, tor.log_tail()
    for topic, recs in ((".order", order), (".all", every)):
        got = sorted(json.loads(r.value)["n"] for r in read_all(
            stack.brokers, name + topic))
        assert got == list(range(6)), (topic, got)
    print("  XA: 5 committed rows in .order and .all, 5 rolled back in "
          "neither")


# ---------------------------------------------------------------------------
# columns.partition


def partition_outbox(stack, name, unrouted, column="part",
                     ddl="part BIGINT NULL"):
    """An outbox table with a partition column; routes as make_outbox's,
    topics of 4 partitions."""
    table, ov = make_outbox(stack, name)
    stack.sql("ALTER TABLE %s ADD COLUMN %s" % (table, ddl))
    for t in ("order", "invoice"):
        stack.create_topic("%s.%s" % (name, t), 4)
    ov["outbox"]["tables"][0]["columns"]["partition"] = column
    ov["outbox"]["unrouted"] = unrouted
    return table, ov


def insert_parts(stack, table, rows):
    """rows: [(n, partition or None)], one transaction."""
    stack.sql_many([("INSERT INTO %s (aggregate_type, aggregate_id, payload, "
                     "part) VALUES (%%s, %%s, %%s, %%s)" % table,
                     ["order", "k%d" % n, json.dumps({"n": n}), p])
                    for n, p in rows], user="app")


def test_partition_column_picks_the_partition(stack):
    """40 rows name partitions 0-3 and land there, whatever their keys
    hash to; NULL, 4 (the topic has 4), -1 and 2^40 go to the dead-letter
    topic saying why, on the partition their key gives there."""
    name = "part_col"
    table, ov = partition_outbox(stack, name, "dlq:%s.dlq" % name)
    tor = Tor(stack, ov).start()
    tor.wait_log("starting at", timeout=30)
    insert_parts(stack, table, [(n, n % 4) for n in range(40)])
    bad = [(100, None), (101, 4), (102, -1), (103, 1 << 40)]
    insert_parts(stack, table, bad)
    recs = harness.wait_for(stack.brokers, name + ".order", 40)
    wrong = [(json.loads(r.value)["n"], r.partition) for r in recs
             if r.partition != json.loads(r.value)["n"] % 4]
    assert not wrong, wrong[:5]
    dead = harness.wait_for(stack.brokers, name + ".dlq", 4)
    why = {json.loads(r.value)["n"]: header(r, "tor.error").decode()
           for r in dead}
    assert why == {
        100: "partition column is NULL (topic %s.order)" % name,
        101: "partition 4 is out of range: topic %s.order has 4" % name,
        102: "partition -1 is out of range: topic %s.order has 4" % name,
        103: "partition 1099511627776 is out of range: topic %s.order "
             "has 4" % name}, why
    assert tor.stop() == 0, tor.log_tail()
    print("  40 rows on their named partitions; 4 dead letters: %s" %
          sorted(why.values())[0])


def test_partition_column_out_of_range_skip_and_fail(stack):
    """outbox.unrouted = skip counts the row as unrouted and goes on;
    = fail halts (exit 1) naming the row, before it: the rows of its
    transaction before it are not acknowledged as done, a restart halts
    again."""
    name = "part_skip"
    table, ov = partition_outbox(stack, name, "skip")
    tor = Tor(stack, ov).start()
    tor.wait_log("starting at", timeout=30)
    insert_parts(stack, table, [(0, 1), (1, 9), (2, 2)])
    recs = harness.wait_for(stack.brokers, name + ".order", 2)
    assert sorted((json.loads(r.value)["n"], r.partition) for r in recs) == \
        [(0, 1), (2, 2)]
    tor.wait_log("skipped 1 row naming a partition its topic lacks, the "
                 "last: partition 9 is out of range", timeout=10)
    assert tor.stop() == 0
    assert "skipped 1," in tor.log_text(), tor.log_tail()

    name = "part_fail"
    table, ov = partition_outbox(stack, name, "fail")
    tor = Tor(stack, ov).start()
    tor.wait_log("starting at", timeout=30)
    insert_parts(stack, table, [(0, 0)])
    insert_parts(stack, table, [(1, 7)])
    assert tor.wait(30) == 1, tor.log_tail()
    text = tor.log_text()
    assert "partition 7 is out of range: topic %s.order has 4 (row " % \
        name in text, tor.log_tail()
    again = Tor(stack, tor.cfg_text, name="r1b").start()
    assert again.wait(30) == 1
    assert "partition 7 is out of range" in again.log_text()
    recs = read_all(stack.brokers, name + ".order")
    assert [json.loads(r.value)["n"] for r in recs] == [0], recs


def test_partition_column_must_be_an_integer_column(stack):
    """A VARCHAR column as columns.partition halts at its table map, naming
    schema.table.column; a column the table lacks halts at start."""
    name = "part_type"
    table, ov = partition_outbox(stack, name, "fail", column="note",
                                 ddl="note VARCHAR(8) NULL")
    tor = Tor(stack, ov).start()
    tor.wait_log("starting at", timeout=30)
    stack.sql_many([("INSERT INTO %s (aggregate_type, aggregate_id, payload,"
                     " note) VALUES ('order', 'k', 'x', '1')" % table)],
                   user="app")
    assert tor.wait(30) == 1, tor.log_tail()
    assert "%s.note: columns.partition must be an integer column" % table \
        in tor.log_text(), tor.log_tail()

    table, ov = partition_outbox(stack, "part_none", "fail", column="nope")
    tor = Tor(stack, ov, name="r2").start()
    assert tor.wait(30) == 1, tor.log_tail()
    assert "%s.nope: no such column" % table in tor.log_text(), \
        tor.log_tail()
