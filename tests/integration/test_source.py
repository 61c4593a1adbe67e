"""The binlog source under faults (DESIGN.md §1, §2): a MySQL that is not
there yet, a stream that breaks inside a transaction (once, twice, then a
stop), a stream started from a GTID, groups that end with ROLLBACK, XA
transactions and old temporal formats, each against the real local MariaDB.

A broken stream is made by tests/integration/proxy.py between tor and
MariaDB: it cuts the binlog dump connection after a chosen number of bytes,
so the break lands inside a known transaction every time.
"""

import json
import time

import harness
from harness import Tor, header, read_all, tor_cli
from proxy import Proxy
from test_http import free_port, get
from test_relay import (assert_exactly, check_per_key_order, checkpoint,
                        insert_range, make_outbox, read_events)

HA = {"lease_ms": 2000, "renew_ms": 500, "retry_ms": 100}


def big_transaction(stack, table, start, count):
    """One transaction of `count` outbox rows (events start..)."""
    insert_range(stack, table, start, count, count)


def test_leader_waits_for_mysql(stack):
    """A replica that wins the lease while MariaDB is down waits for it as
    it waits for Redis: no crash, /readyz 503, no checkpoint written; the
    rows arrive once MariaDB is back."""
    name = "src_nomysql"
    table, ov = make_outbox(stack, name)
    port = free_port()
    ov["http"] = {"listen": "127.0.0.1:%d" % port}
    tor = Tor(stack, ov)
    stack.stop("mariadb")
    tor.start()
    tor.wait_log("leading with token", timeout=15)
    tor.wait_log(r"retrying in \d+ ms", timeout=15)
    time.sleep(2)
    assert tor.running(), "exited %s:\n%s" % (tor.proc.returncode,
                                             tor.log_tail())
    status, body, _ = get(port, "/readyz")
    assert status == 503, (status, body)
    assert not checkpoint(stack, tor.group), checkpoint(stack, tor.group)
    stack.start("mariadb")
    insert_range(stack, table, 0, 50, 10)
    by_n, _ = read_events(stack, name, 50, timeout=60)
    assert_exactly(by_n, 50, name)
    assert tor.stop() == 0, tor.log_tail()


def proxied(stack, name, extra=None):
    """An outbox table and a config whose MySQL connections go through a
    fresh proxy; returns (table, config text, proxy)."""
    table, ov = make_outbox(stack, name)
    p = Proxy(stack.mysql_port).start()
    # The retention check reads binlog dates over short dumps of its own:
    # off, so that the proxy's dump rules meet the stream's dumps alone.
    ov["mysql"] = {"port": p.port, "retention_check_ms": 0}
    ov["ha"] = dict(HA)
    ov.update(extra or {})
    return table, harness.base_config(stack, **ov), p


def wait_dumps(p, n, timeout=30):
    deadline = time.monotonic() + timeout
    while p.dump_connections() < n:
        assert time.monotonic() < deadline, "only %d dump connections" % (
            p.dump_connections())
        time.sleep(0.05)


def test_sigterm_after_a_reconnect_inside_a_transaction(stack):
    """The stream breaks inside a transaction of 3000 rows, and SIGTERM
    comes while the reopened stream has not re-read it yet: the stop waits
    for that transaction, so the restarted replica repeats nothing."""
    name = "src_reconnect_stop"
    table, cfg, p = proxied(stack, name)
    try:
        p.cut_dump(after=150000)
        p.stall_dump(3.0)
        tor = Tor(stack, cfg, name="r1").start()
        wait_dumps(p, 1)
        tor.wait_log("starting at", timeout=30)
        big_transaction(stack, table, 0, 3000)
        tor.wait_log("reopening at", timeout=30)
        wait_dumps(p, 2)
        assert p.cuts, "the proxy never cut the stream"
        tor.send_signal(15)
        assert tor.wait(30) == 0, tor.log_tail()
        again = Tor(stack, cfg, name="r2").start()
        by_n, recs = read_events(stack, name, 3000, timeout=60)
        time.sleep(1)
        by_n, recs = read_events(stack, name, 3000, timeout=60)
        assert again.stop() == 0, again.log_tail()
    finally:
        p.stop()
    assert_exactly(by_n, 3000, name)
    check_per_key_order(recs)


def test_second_break_inside_one_transaction(stack):
    """The stream breaks twice inside one transaction, the second time
    earlier in it than the first: the rows produced before the first
    break are still not produced again."""
    name = "src_reconnect_twice"
    table, cfg, p = proxied(stack, name)
    try:
        p.cut_dump(after=200000)
        p.cut_dump(after=60000)
        tor = Tor(stack, cfg, name="r1").start()
        tor.wait_log("starting at", timeout=30)
        big_transaction(stack, table, 0, 3000)
        by_n, recs = read_events(stack, name, 3000, timeout=60)
        time.sleep(1)
        by_n, recs = read_events(stack, name, 3000, timeout=60)
        assert len(p.cuts) == 2, p.cuts
        assert tor.stop() == 0, tor.log_tail()
    finally:
        p.stop()
    assert_exactly(by_n, 3000, name)
    check_per_key_order(recs)


def test_transactional_reconnect_inside_a_transaction(stack):
    """Transactional mode: a break inside a source transaction must not let
    a Kafka commit take part of it with a position before it.  The leader
    dies right after its first Kafka commit; its successor republishes
    nothing: a read_committed consumer sees every row once."""
    name = "src_reconnect_tx"
    table, cfg, p = proxied(stack, name,
                            {"kafka": {"mode": "transactional"}})
    try:
        p.cut_dump(after=150000)
        p.stall_dump(0.5)
        doomed = Tor(stack, cfg, name="r1", env={
            "TOR_TEST_CRASH_AFTER_KAFKA_COMMIT": "1"}).start()
        doomed.wait_log("starting at", timeout=30)
        big_transaction(stack, table, 0, 3000)
        assert doomed.wait(60) == -9, doomed.log_tail()
        heir = Tor(stack, cfg, name="r2").start()
        by_n, recs = read_events(stack, name, 3000, timeout=60)
        time.sleep(1)
        by_n, recs = read_events(stack, name, 3000, timeout=60)
        assert heir.stop() == 0, heir.log_tail()
    finally:
        p.stop()
    assert p.cuts, "the proxy never cut the stream"
    assert_exactly(by_n, 3000, name)
    check_per_key_order(recs)


def test_gtid_start_then_restart_replays_nothing(stack):
    """A group moved to a GTID (`tor checkpoint set`) streams from it; a
    restart before any new transaction resumes from the same GTID, not from
    the top of the binlog file the server began the dump at."""
    name = "src_gtid_restart"
    table, ov = make_outbox(stack, name)
    stack.sql("FLUSH BINARY LOGS")
    insert_range(stack, table, 0, 20, 10)
    gtid = stack.sql("SELECT @@gtid_binlog_pos")[0][0]
    cfg = harness.base_config(stack, **ov)
    p = tor_cli(["checkpoint", "set", "--to", gtid], cfg=cfg)
    assert p.returncode == 0, p.stderr
    for name_ in ("r1", "r2"):
        tor = Tor(stack, cfg, name=name_).start()
        tor.wait_log("resuming from the checkpoint", timeout=30)
        time.sleep(1.5)             # several checkpoint intervals
        assert tor.stop() == 0, tor.log_tail()
        cp = checkpoint(stack, tor.group)
        assert cp.get("pos") != "4", cp
    recs = (read_all(stack.brokers, name + ".order", timeout=10) +
            read_all(stack.brokers, name + ".invoice", timeout=10))
    assert not recs, "%d events republished, first tor.pos %s" % (
        len(recs), header(recs[0], "tor.pos"))


def test_rollback_group_ends_the_transaction(stack):
    """A group that ends with ROLLBACK (a transaction that wrote a MyISAM and
    an InnoDB table in statement format, then rolled back: the MyISAM change
    stays, so the server logs the group) is a whole transaction: the
    checkpoint passes it and a clean stop right after it is prompt."""
    name = "src_rollback"
    table, ov = make_outbox(stack, name)
    stack.sql("DROP TABLE IF EXISTS shop.myisam_%s" % name)
    stack.sql("CREATE TABLE shop.myisam_%s (id INT AUTO_INCREMENT PRIMARY "
              "KEY, note VARCHAR(20)) ENGINE=MyISAM" % name)
    tor = Tor(stack, ov).start()
    tor.wait_log("starting at", timeout=30)
    insert_range(stack, table, 0, 10, 10)
    read_events(stack, name, 10, timeout=30)
    conn = stack.connect(autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION binlog_format = 'STATEMENT'")
            cur.execute("BEGIN")
            cur.execute("INSERT INTO shop.other_%s (note) VALUES ('x')" %
                        name)
            cur.execute("INSERT INTO shop.myisam_%s (note) VALUES ('x')" %
                        name)
            cur.execute("ROLLBACK")
    finally:
        conn.close()
    end = stack.binlog_position()
    deadline = time.monotonic() + 5
    while True:
        cp = checkpoint(stack, tor.group)
        if (cp.get("file"), int(cp.get("pos", 0))) == end:
            break
        assert time.monotonic() < deadline, \
            "checkpoint %s never reached the ROLLBACK group's end %s" % (
                cp, end)
        time.sleep(0.1)
    t0 = time.monotonic()
    assert tor.stop() == 0, tor.log_tail()
    assert time.monotonic() - t0 < 5, "the stop waited for the group"


def xa(stack, xid, rows=None, end="COMMIT", table=None):
    """Runs XA START, the inserts (events in rows), XA END and XA PREPARE on
    one connection; then, unless end is None, XA <end> on another."""
    conn = stack.connect(user="root", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("XA START '%s'" % xid)
            for n in rows or ():
                cur.execute("INSERT INTO %s (aggregate_type, aggregate_id, "
                            "payload, uuid) VALUES ('order', %%s, %%s, %%s)"
                            % table, ["k%d" % n, json.dumps({"n": n}),
                                      "uuid-%d" % n])
            cur.execute("XA END '%s'" % xid)
            cur.execute("XA PREPARE '%s'" % xid)
    finally:
        conn.close()
    if end is not None:
        stack.sql("XA %s '%s'" % (end, xid))


def roll_back_left_over(stack, *xids):
    """XA ROLLBACK of prepared transactions a failed run may have left."""
    for x in xids:
        try:
            stack.sql("XA ROLLBACK '%s'" % x)
        except Exception:
            pass


def order_ns(stack, name):
    return sorted(json.loads(r.value)["n"] for r in
                  read_all(stack.brokers, name + ".order", timeout=10))


def test_xa_published_at_commit_dropped_at_rollback(stack):
    """XA: the rows of a prepared XA transaction are published when it
    commits (also across a restart in between), never when it rolls back."""
    name = "src_xa"
    roll_back_left_over(stack, "tor_xa1", "tor_xa2")
    table, ov = make_outbox(stack, name)
    cfg = harness.base_config(stack, ha=dict(HA), **ov)
    tor = Tor(stack, cfg, name="r1").start()
    tor.wait_log("starting at", timeout=30)
    xa(stack, "tor_xa1", range(0, 5), end=None, table=table)
    xa(stack, "tor_xa2", range(10, 15), end=None, table=table)
    for n in range(5, 10):
        stack.sql_many([("INSERT INTO %s (aggregate_type, aggregate_id, "
                         "payload, uuid) VALUES ('order', %%s, %%s, %%s)" %
                         table, ["k%d" % n, json.dumps({"n": n}),
                                 "uuid-%d" % n])], user="app")
    deadline = time.monotonic() + 20
    while set(range(5, 10)) - set(order_ns(stack, name)):
        assert time.monotonic() < deadline, order_ns(stack, name)
        time.sleep(0.3)
    time.sleep(1)
    assert order_ns(stack, name) == list(range(5, 10)), \
        "prepared XA rows published before their commit: %s" % (
            order_ns(stack, name))
    # A restart while both are prepared: they are still pending after it.
    assert tor.stop() == 0, tor.log_tail()
    tor = Tor(stack, cfg, name="r2").start()
    tor.wait_log("resuming from", timeout=30)
    time.sleep(1)
    stack.sql("XA COMMIT 'tor_xa1'")
    stack.sql("XA ROLLBACK 'tor_xa2'")
    for n in range(15, 20):
        stack.sql_many([("INSERT INTO %s (aggregate_type, aggregate_id, "
                         "payload, uuid) VALUES ('order', %%s, %%s, %%s)" %
                         table, ["k%d" % n, json.dumps({"n": n}),
                                 "uuid-%d" % n])], user="app")
    deadline = time.monotonic() + 20
    want = list(range(0, 10)) + list(range(15, 20))
    while order_ns(stack, name) != want:
        got = order_ns(stack, name)
        assert not set(got) - set(want), "rolled-back XA rows published: " \
            "%s" % sorted(set(got) - set(want))
        assert time.monotonic() < deadline, got
        time.sleep(0.3)
    assert tor.stop() == 0, tor.log_tail()


def test_old_temporal_formats(stack):
    """TIME(n), DATETIME(n) and TIMESTAMP(n) written in MariaDB's pre-10.1.2
    formats (mysql56_temporal_format=OFF: no precision in the table map):
    every value comes out right and so do the columns after them."""
    name = "src_oldtime"
    table = "shop.ob_%s" % name
    stack.sql("DROP TABLE IF EXISTS %s" % table)
    stack.sql("SET GLOBAL mysql56_temporal_format = OFF")
    try:
        stack.sql("CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
                  "t0 TIME, t1 TIME(1), t4 TIME(4), dt3 DATETIME(3), "
                  "dt6 DATETIME(6), ts2 TIMESTAMP(2) NULL, "
                  "ts6 TIMESTAMP(6) NULL, aggregate_id VARCHAR(64) NOT NULL, "
                  "aggregate_type VARCHAR(64) NOT NULL, payload BLOB)" %
                  table)
    finally:
        stack.sql("SET GLOBAL mysql56_temporal_format = ON")
    cols = ["t0", "t1", "t4", "dt3", "dt6", "ts2", "ts6"]
    ov = {"outbox": {
        "tables": [{"table": table,
                    "columns": {"id": "id", "key": "aggregate_id",
                                "type": "aggregate_type",
                                "payload": "payload"},
                    "headers": [{"column": c, "header": c} for c in cols]}],
        "routes": [{"match": "^order$", "topic": name + ".order"}]}}
    rows = [
        ("-00:00:01", "-00:00:01.5", "838:59:59.9999", "2024-02-29 "
         "13:14:15.678", "1000-01-01 00:00:00.000001", "2038-01-19 "
         "03:14:07.99", "1970-01-01 00:00:01.000001"),
        ("12:34:56", "-838:59:59.0", "00:00:00.0001", "9999-12-31 "
         "23:59:59.999", "2024-06-30 12:00:00.500000", "2000-01-01 "
         "00:00:00.01", "2024-02-29 13:14:15.123456"),
    ]
    tor = Tor(stack, ov).start()
    tor.wait_log("starting at", timeout=30)
    conn = stack.connect(autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            for i, r in enumerate(rows):
                cur.execute("INSERT INTO %s (%s, aggregate_id, "
                            "aggregate_type, payload) VALUES (%s, 'k%d', "
                            "'order', 'p%d')" % (table, ", ".join(cols),
                                                 ", ".join(["%s"] * 7), i,
                                                 i), list(r))
        conn.commit()
    finally:
        conn.close()
    recs = harness.wait_for(stack.brokers, name + ".order", 2, timeout=30)
    assert tor.stop() == 0, tor.log_tail()
    for i, (rec, want) in enumerate(zip(recs, rows)):
        assert rec.key == b"k%d" % i and rec.value == b"p%d" % i, rec
        got = tuple(header(rec, c).decode() for c in cols)
        assert got == want, "row %d: %s, wanted %s" % (i, got, want)
