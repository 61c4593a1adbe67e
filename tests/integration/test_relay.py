"""The relay end to end: binlog -> outbox -> Kafka, with the Redis
checkpoint, against the real local stack (one replica).

Each test has its own outbox table and topics, so tests never see each
other's messages.  Payloads carry a sequence number n; a test knows exactly
which messages must arrive and checks them all: count, topic, key, value,
headers, per-key order, and (where the scenario allows none) duplicates.
"""

import collections
import json
import re
import signal
import threading
import time

import harness
from harness import Tor, header, read_all, wait_for


def make_outbox(stack, name):
    """Creates shop.ob_<name> and a plain table beside it; returns the config
    overrides that relay it to topics <name>.order / <name>.invoice."""
    table = "shop.ob_%s" % name
    stack.sql("DROP TABLE IF EXISTS %s" % table)
    stack.sql("DROP TABLE IF EXISTS shop.other_%s" % name)
    stack.sql(harness.outbox_ddl(table))
    stack.sql("CREATE TABLE shop.other_%s (id INT AUTO_INCREMENT PRIMARY KEY,"
              " note VARCHAR(64))" % name)
    overrides = {
        "outbox": {
            "tables": [{"table": table,
                        "columns": {"id": "id", "key": "aggregate_id",
                                    "type": "aggregate_type",
                                    "payload": "payload"},
                        "headers": [{"column": "uuid", "header": "uuid"}]}],
            "routes": [{"match": "^order$", "topic": name + ".order",
                        "icase": True},
                       {"match": "^invoice", "topic": name + ".invoice"}],
        },
    }
    return table, overrides


def event(n, keys=37):
    """The n-th test event: (type, key, payload, uuid)."""
    kind = ("Order", "order", "invoice-paid")[n % 3]
    return (kind, "k%d" % (n % keys), json.dumps({"n": n}).encode(),
            "uuid-%d" % n)


def insert_range(stack, table, start, count, per_txn, other=None):
    """Inserts events start..start+count-1, per_txn rows a transaction; with
    other (a table name) each transaction also writes that table and updates
    and deletes an outbox row, which must not be relayed."""
    n = start
    while n < start + count:
        batch = [event(i) for i in range(n, min(n + per_txn, start + count))]
        stmts = [("INSERT INTO %s (aggregate_type, aggregate_id, payload, "
                  "uuid) VALUES (%%s, %%s, %%s, %%s)" % table, list(e))
                 for e in batch]
        if other is not None:
            stmts.insert(len(stmts) // 2, ("INSERT INTO %s (note) VALUES "
                                           "(%%s)" % other, ["x%d" % n]))
            stmts.append("UPDATE %s SET trace_id = 'touched' ORDER BY id "
                         "LIMIT 1" % table)
            stmts.append("DELETE FROM %s ORDER BY id LIMIT 1" % table)
        stack.sql_many(stmts, user="app")
        n += len(batch)


def topic_of(n, name):
    return name + (".invoice" if n % 3 == 2 else ".order")


def read_events(stack, name, expected, timeout=90):
    """Reads both topics until `expected` records arrived in all; returns
    {n: [records]} and the records in read order."""
    deadline = time.monotonic() + timeout
    while True:
        recs = (read_all(stack.brokers, name + ".order", timeout=10) +
                read_all(stack.brokers, name + ".invoice", timeout=10))
        by_n = collections.defaultdict(list)
        for r in recs:
            by_n[json.loads(r.value)["n"]].append(r)
        # Distinct events: a replayed stretch must not pass for new ones.
        if len(by_n) >= expected or time.monotonic() > deadline:
            return by_n, recs
        time.sleep(0.5)


def check_record(r, n, name):
    kind, key, payload, uuid = event(n)
    assert r.topic == topic_of(n, name), (n, r.topic)
    assert r.key == key.encode(), (n, r.key)
    assert r.value == payload, (n, r.value)
    assert header(r, "uuid") == uuid.encode(), (n, r.headers)
    assert header(r, "tor.type") == kind.encode(), (n, r.headers)
    assert header(r, "tor.id") is not None
    assert header(r, "tor.group"), (n, r.headers)
    assert header(r, "tor.pos") is not None
    assert int(header(r, "tor.epoch")) >= 1
    assert abs(int(header(r, "tor.ts")) / 1000 - time.time()) < 600


def check_per_key_order(recs):
    """Within a partition, the events of one key come in ascending n."""
    last = {}
    for r in sorted(recs, key=lambda r: (r.topic, r.partition, r.offset)):
        n = json.loads(r.value)["n"]
        k = (r.topic, r.key)
        assert last.get(k, -1) < n, "key %r: %d after %d" % (k, n, last[k])
        last[k] = n


def assert_exactly(by_n, total, name):
    missing = [n for n in range(total) if n not in by_n]
    dups = [n for n, rs in by_n.items() if len(rs) > 1]
    extra = [n for n in by_n if n >= total]
    assert not missing, "missing %d events, first %s" % (len(missing),
                                                         missing[:10])
    assert not dups, "duplicated %d events, first %s" % (len(dups), dups[:10])
    assert not extra, "unexpected events %s" % extra[:10]
    for n in range(total):
        check_record(by_n[n][0], n, name)


def checkpoint(stack, group):
    h = stack.redis().hgetall("tor:{%s}:checkpoint" % group)
    return {k.decode(): v.decode() for k, v in h.items()}


def test_ten_thousand_rows_interleaved(stack):
    name = "relay_a"
    table, ov = make_outbox(stack, name)
    tor = Tor(stack, ov).start()
    tor.wait_log("streaming|table map|starting at", timeout=30)
    insert_range(stack, table, 0, 10000, 100, other="shop.other_" + name)
    by_n, recs = read_events(stack, name, 10000)
    assert_exactly(by_n, 10000, name)
    check_per_key_order(recs)
    groups = set(header(r, "tor.group") for r in recs)
    assert groups == {tor.group.encode()}, groups
    assert tor.stop() == 0, tor.log_tail()
    cp = checkpoint(stack, tor.group)
    file_, pos = stack.binlog_position()
    assert cp.get("file") == file_ and int(cp["pos"]) == pos, (cp, file_, pos)
    assert "ignored 100 update and 100 delete events" in tor.log_text(), \
        tor.log_tail()


def _feeder(stack, table, start, count, per_txn, pause=0.01):
    def run():
        n = start
        while n < start + count:
            k = min(per_txn, start + count - n)
            insert_range(stack, table, n, k, per_txn)
            n += k
            time.sleep(pause)
    t = threading.Thread(target=run)
    t.start()
    return t


def test_sigterm_mid_stream_then_restart(stack):
    name = "relay_b"
    table, ov = make_outbox(stack, name)
    tor = Tor(stack, ov).start()
    tor.wait_log("starting at", timeout=30)
    feeder = _feeder(stack, table, 0, 3000, 50)
    wait_for(stack.brokers, name + ".order", 300, timeout=60)
    assert tor.stop(signal.SIGTERM, timeout=20) == 0, tor.log_tail()
    feeder.join()
    insert_range(stack, table, 3000, 1000, 100)
    tor2 = Tor(stack, tor.cfg_text, name="r1b").start()
    tor2.wait_log("resuming from the checkpoint", timeout=30)
    by_n, recs = read_events(stack, name, 4000)
    assert tor2.stop() == 0
    assert_exactly(by_n, 4000, name)
    check_per_key_order(recs)


def _gtid_seq(pos_header):
    # "D-S-N:row"
    gtid = pos_header.decode().split(":")[0]
    return int(gtid.split("-")[2])


def test_kill9_mid_stream_duplicates_only_after_checkpoint(stack):
    name = "relay_c"
    table, ov = make_outbox(stack, name)
    tor = Tor(stack, ov).start()
    tor.wait_log("starting at", timeout=30)
    feeder = _feeder(stack, table, 0, 4000, 40)
    wait_for(stack.brokers, name + ".order", 500, timeout=60)
    # Killed once the checkpoint has moved into the stream (it names a
    # GTID then, not only mysql.start's file:pos).
    deadline = time.monotonic() + 30
    while not checkpoint(stack, tor.group).get("gtid") and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    tor.kill9()
    cp = checkpoint(stack, tor.group)
    feeder.join()
    assert cp.get("gtid"), cp
    cp_seq = int(cp["gtid"].split(",")[0].split("-")[2])
    tor2 = Tor(stack, tor.cfg_text, name="r1b").start()
    by_n, recs = read_events(stack, name, 4000)
    assert tor2.stop() == 0
    missing = [n for n in range(4000) if n not in by_n]
    assert not missing, "lost %d events, first %s" % (len(missing),
                                                      missing[:10])
    dups = {n: rs for n, rs in by_n.items() if len(rs) > 1}
    for n, rs in dups.items():
        seq = _gtid_seq(header(rs[0], "tor.pos"))
        assert seq > cp_seq, "event %d (gtid seq %d) duplicated but the " \
            "checkpoint was past it (%d)" % (n, seq, cp_seq)
    for n in range(4000):
        check_record(by_n[n][0], n, name)


def test_flush_binary_logs_mid_stream(stack):
    name = "relay_d"
    table, ov = make_outbox(stack, name)
    tor = Tor(stack, ov).start()
    tor.wait_log("starting at", timeout=30)
    insert_range(stack, table, 0, 500, 50)
    stack.sql("FLUSH BINARY LOGS")
    insert_range(stack, table, 500, 500, 50)
    stack.sql("FLUSH BINARY LOGS")
    stack.sql("FLUSH BINARY LOGS")
    insert_range(stack, table, 1000, 500, 50)
    by_n, recs = read_events(stack, name, 1500)
    assert_exactly(by_n, 1500, name)
    assert tor.stop() == 0
    cp = checkpoint(stack, tor.group)
    assert cp["file"] == stack.binlog_position()[0], cp


def test_alter_table_add_column_mid_stream(stack):
    name = "relay_e"
    table, ov = make_outbox(stack, name)
    tor = Tor(stack, ov).start()
    tor.wait_log("starting at", timeout=30)
    insert_range(stack, table, 0, 300, 30)
    stack.sql("ALTER TABLE %s ADD COLUMN tenant VARCHAR(32) NULL AFTER uuid"
              % table)
    insert_range(stack, table, 300, 300, 30)
    stack.sql("ALTER TABLE %s DROP COLUMN trace_id" % table)
    insert_range(stack, table, 600, 300, 30)
    by_n, recs = read_events(stack, name, 900)
    assert_exactly(by_n, 900, name)
    assert tor.stop() == 0


def test_mariadb_restart_mid_stream(stack):
    name = "relay_f"
    table, ov = make_outbox(stack, name)
    tor = Tor(stack, ov).start()
    tor.wait_log("starting at", timeout=30)
    insert_range(stack, table, 0, 500, 50)
    wait_for(stack.brokers, name + ".order", 100, timeout=60)
    stack.restart("mariadb")
    stack.wait_mysql()
    insert_range(stack, table, 500, 500, 50)
    by_n, recs = read_events(stack, name, 1000)
    assert_exactly(by_n, 1000, name)
    assert "reopening at" in tor.log_text(), tor.log_tail()
    assert tor.stop() == 0


def test_broker_down_five_seconds(stack):
    """The only Kafka node killed (-9) mid-stream and started again 5 s
    later on its data: nothing lost, per-key order kept, and no duplicate:
    the requests in flight at the kill are retried with their sequence
    numbers and the broker, which recovered its producer state from its
    log, stores each message once."""
    name = "relay_g"
    table, ov = make_outbox(stack, name)
    tor = Tor(stack, ov).start()
    tor.wait_log("starting at", timeout=30)
    insert_range(stack, table, 0, 300, 30)
    wait_for(stack.brokers, name + ".order", 100, timeout=60)
    feeder = _feeder(stack, table, 300, 600, 30, pause=0.1)
    time.sleep(0.5)
    stack.kafka_ctl("kill", 1)
    t0 = time.monotonic()
    time.sleep(5)
    stack.kafka_ctl("start", 1)
    print("  Kafka down %.1f s" % (time.monotonic() - t0))
    feeder.join()
    by_n, recs = read_events(stack, name, 900, timeout=120)
    assert tor.stop() == 0, tor.log_tail()
    assert_exactly(by_n, 900, name)


def test_kafka_down_at_takeover_is_waited_out(stack):
    """A replica that wins the lease while Kafka is down waits for it (the
    topic listing of its session's start is retried like every later
    step) instead of exiting; rows written meanwhile arrive once Kafka is
    back."""
    name = "relay_g2"
    table, ov = make_outbox(stack, name)
    stack.kafka_ctl("kill", 1)
    tor = Tor(stack, ov).start()
    tor.wait_log("leading with token", timeout=30)
    insert_range(stack, table, 0, 30, 10)
    tor.wait_log(r"listing topics on .*; retrying in", timeout=30)
    time.sleep(2)
    assert tor.running(), "exited %s:\n%s" % (tor.proc.returncode,
                                              tor.log_tail())
    stack.kafka_ctl("start", 1)
    by_n, recs = read_events(stack, name, 30, timeout=60)
    assert tor.stop() == 0, tor.log_tail()
    assert_exactly(by_n, 30, name)


def test_column_dropped_while_running_halts_at_its_row(stack):
    """A configured column dropped after the replica started: the first
    row without it halts the relay, naming it, and nothing after it is
    published."""
    name = "relay_h1"
    table, ov = make_outbox(stack, name)
    ov["outbox"]["tables"][0]["headers"] = [{"column": "trace_id",
                                            "header": "trace"}]
    tor = Tor(stack, ov).start()
    tor.wait_log("starting at", timeout=30)
    stack.sql("ALTER TABLE %s DROP COLUMN trace_id" % table)
    insert_range(stack, table, 0, 3, 3)
    assert tor.wait(30) == 1
    assert "shop.ob_relay_h1.trace_id: no such column" in tor.log_text(), \
        tor.log_tail()


def test_missing_table_or_column_halts_at_start(stack):
    """The configured tables and columns are looked up when a replica
    starts leading: a wrong name halts it then, naming it, with no row
    written yet (not hours later, at the first row)."""
    name = "relay_h1s"
    table, ov = make_outbox(stack, name)
    ov["outbox"]["tables"][0]["headers"] = [{"column": "traceid",
                                            "header": "trace"}]
    tor = Tor(stack, ov).start()
    assert tor.wait(30) == 1, tor.log_tail()
    assert "shop.ob_relay_h1s.traceid: no such column" in tor.log_text(), \
        tor.log_tail()
    ov["outbox"]["tables"][0]["table"] = "shop.ob_relay_none"
    del ov["outbox"]["tables"][0]["headers"]
    tor = Tor(stack, ov).start()
    assert tor.wait(30) == 1, tor.log_tail()
    assert "shop.ob_relay_none: no such table" in tor.log_text(), \
        tor.log_tail()


def test_statement_binlog_format_refused(stack):
    name = "relay_h2"
    table, ov = make_outbox(stack, name)
    stack.sql("SET GLOBAL binlog_format = 'STATEMENT'")
    try:
        tor = Tor(stack, ov).start()
        assert tor.wait(30) == 1
    finally:
        stack.sql("SET GLOBAL binlog_format = 'ROW'")
    assert "binlog_format is 'STATEMENT', tor needs binlog_format=ROW" in \
        tor.log_text(), tor.log_tail()


def test_purged_start_position_refused(stack):
    name = "relay_h3"
    table, ov = make_outbox(stack, name)
    old_file, _ = stack.binlog_position()
    stack.purge_binlogs(old_file)
    tor = Tor(stack, harness.base_config(stack, start="%s:4" % old_file,
                                         **ov)).start()
    assert tor.wait(30) == 1
    assert "binlog file %s is no longer on the server" % old_file in \
        tor.log_text(), tor.log_tail()


def test_bad_config_exits_2():
    p = harness.tor_cli(["-c", "/nonexistent/tor.cfg"])
    assert p.returncode == 2, p
    assert "/nonexistent/tor.cfg" in p.stderr, p.stderr


def test_column_names_from_information_schema(stack):
    """Without binlog_row_metadata=FULL the table map has no column names:
    tor reads them from information_schema and relays the same messages."""
    name = "relay_i"
    table, ov = make_outbox(stack, name)
    stack.sql("SET GLOBAL binlog_row_metadata = 'MINIMAL'")
    try:
        tor = Tor(stack, ov).start()
        tor.wait_log("starting at", timeout=30)
        insert_range(stack, table, 0, 300, 30)
        by_n, recs = read_events(stack, name, 300)
    finally:
        stack.sql("SET GLOBAL binlog_row_metadata = 'FULL'")
    assert_exactly(by_n, 300, name)
    assert "binlog_row_metadata is not FULL" in tor.log_text(), tor.log_tail()
    assert tor.stop() == 0


def test_unrouted_and_oversized_go_to_the_dead_letter_topic(stack):
    name = "relay_j"
    table, ov = make_outbox(stack, name)
    ov["outbox"]["unrouted"] = "dlq:%s.dlq" % name
    ov["kafka"] = {"properties": ["message.max.bytes=4000"]}
    tor = Tor(stack, ov).start()
    tor.wait_log("starting at", timeout=30)
    stack.sql_many([
        ("INSERT INTO %s (aggregate_type, aggregate_id, payload, uuid) "
         "VALUES (%%s, %%s, %%s, %%s)" % table, list(e)) for e in [
            ("order", "k1", b'{"n": 0}', "u0"),
            ("shipment", "k2", b'{"n": 1}', "u1"),      # no route
            ("order", "k3", b"x" * 9000, "u2"),         # too large
            ("order", "k4", None, "u3"),                # tombstone
        ]], user="app")
    dlq = wait_for(stack.brokers, name + ".dlq", 2, timeout=60)
    orders = wait_for(stack.brokers, name + ".order", 2, timeout=60)
    assert tor.stop() == 0, tor.log_tail()
    by_key = {r.key: r for r in dlq}
    assert by_key[b"k2"].value == b'{"n": 1}'
    assert header(by_key[b"k2"], "tor.type") == b"shipment"
    assert by_key[b"k3"].value is None
    assert b"too large" in header(by_key[b"k3"], "tor.error")
    # The dead letter names its row: the third of its transaction.
    assert re.match(rb"^\d+-\d+-\d+:2$", header(by_key[b"k3"], "tor.pos")), \
        by_key[b"k3"].headers
    by_key = {r.key: r for r in orders}
    assert by_key[b"k1"].value == b'{"n": 0}'
    assert by_key[b"k4"].value is None       # SQL NULL payload: tombstone


def test_unrouted_skip_counts_and_goes_on(stack):
    """outbox.unrouted = skip: the row is dropped, counted and logged; a
    burst of them is one line (at most one per 10 s), not one per row."""
    name = "relay_k"
    table, ov = make_outbox(stack, name)
    ov["outbox"]["unrouted"] = "skip"
    tor = Tor(stack, ov).start()
    tor.wait_log("starting at", timeout=30)
    stack.sql_many([
        ("INSERT INTO %s (aggregate_type, aggregate_id, payload) VALUES "
         "(%%s, %%s, %%s)" % table, list(e)) for e in [
            ("shipment", "k1", b"a"), ("order", "k2", b"b")]], user="app")
    recs = wait_for(stack.brokers, name + ".order", 1, timeout=60)
    assert [r.value for r in recs] == [b"b"]
    tor.wait_log(r"skipped 1 row that no route takes \(outbox.unrouted = "
                 r"skip\), the last at \S+:0", timeout=10)
    stack.sql_many([
        ("INSERT INTO %s (aggregate_type, aggregate_id, payload) VALUES "
         "('shipment', 'k3', 'c')" % table)] * 50, user="app")
    stack.sql_many([
        ("INSERT INTO %s (aggregate_type, aggregate_id, payload) VALUES "
         "('order', 'k4', 'd')" % table)], user="app")
    wait_for(stack.brokers, name + ".order", 2, timeout=60)
    assert tor.stop() == 0
    text = tor.log_text()
    assert "skipped 51," in text, tor.log_tail()
    assert text.count("that no route takes") == 1, tor.log_tail()


def test_unrouted_fail_halts_before_the_row(stack):
    name = "relay_l"
    table, ov = make_outbox(stack, name)
    tor = Tor(stack, ov).start()
    tor.wait_log("starting at", timeout=30)
    insert_range(stack, table, 0, 30, 30)
    stack.sql_many([("INSERT INTO %s (aggregate_type, aggregate_id, payload) "
                     "VALUES ('shipment', 'k1', 'x')" % table)], user="app")
    assert tor.wait(30) == 1
    assert "no route for aggregate type 'shipment'" in tor.log_text()
    by_n, _ = read_events(stack, name, 30, timeout=20)
    assert_exactly(by_n, 30, name)
    # The checkpoint stops before the unroutable row: a restart halts again.
    tor2 = Tor(stack, tor.cfg_text, name="r1b").start()
    assert tor2.wait(30) == 1
    assert "no route for aggregate type 'shipment'" in tor2.log_text()


def test_start_from_a_gtid(stack):
    """mysql.start as a MariaDB GTID list: the stream starts after it."""
    name = "relay_m"
    table, ov = make_outbox(stack, name)
    insert_range(stack, table, 1000, 10, 10)        # before the GTID: not sent
    gtid = stack.sql("SELECT @@gtid_binlog_pos")[0][0]
    insert_range(stack, table, 0, 200, 20)
    tor = Tor(stack, harness.base_config(stack, start=gtid, **ov)).start()
    by_n, recs = read_events(stack, name, 200)
    assert_exactly(by_n, 200, name)
    assert tor.stop() == 0, tor.log_tail()
    cp = checkpoint(stack, tor.group)
    assert cp["gtid"] == stack.sql("SELECT @@gtid_binlog_pos")[0][0], cp
    assert cp["file"] == stack.binlog_position()[0], cp


def test_redis_down_mid_stream(stack):
    """Redis away: the leader stops publishing before its lease could have
    expired (test_ha covers the timing); Redis back (empty: the dev stack
    keeps no data) -> it leads again and nothing is lost."""
    name = "relay_n"
    table, ov = make_outbox(stack, name)
    tor = Tor(stack, ov).start()
    tor.wait_log("starting at", timeout=30)
    insert_range(stack, table, 0, 200, 20)
    wait_for(stack.brokers, name + ".order", 100, timeout=60)
    stack.stop("redis")
    insert_range(stack, table, 200, 200, 20)
    tor.wait_log("lost the leadership", timeout=10)
    stack.start("redis")
    insert_range(stack, table, 400, 200, 20)
    by_n, _ = read_events(stack, name, 600)
    missing = [n for n in range(600) if n not in by_n]
    assert not missing, "lost %d events, first %s" % (len(missing),
                                                      missing[:10])
    for n in range(600):
        check_record(by_n[n][0], n, name)
    assert tor.stop() == 0, tor.log_tail()
    cp = checkpoint(stack, tor.group)
    assert (cp["file"], int(cp["pos"])) == stack.binlog_position(), cp


def test_kafka_timestamp_is_the_event_time(stack):
    """Every record's Kafka timestamp is its tor.ts: the source commit time
    by default (not the produce time), or the row's own time from
    columns.timestamp (a TIMESTAMP(3) column here)."""
    name = "relay_ts"
    table, ov = make_outbox(stack, name)
    tor = Tor(stack, ov).start()
    tor.wait_log("starting at", timeout=30)
    insert_range(stack, table, 0, 30, 10)
    by_n, recs = read_events(stack, name, 30)
    tor.stop()
    for r in recs:
        ts = r.timestamp_ms
        assert ts == int(header(r, "tor.ts")), (ts, r.headers)
        assert ts % 1000 == 0, ts          # the binlog's commit second
    del ov["outbox"]["tables"][0]["headers"]
    ov["outbox"]["tables"][0]["columns"]["timestamp"] = "created_at"
    tor = Tor(stack, ov).start()
    tor.wait_log("resuming|starting at", timeout=30)
    stack.sql_many(["SET time_zone = '+00:00'"] + [
        ("INSERT INTO %s (aggregate_type, aggregate_id, payload, created_at) "
         "VALUES ('order', %%s, %%s, %%s)" % table,
         ["k%d" % n, json.dumps({"n": 1000 + n}),
          "2020-05-01 12:00:%02d.%03d" % (n, 250 + n)]) for n in range(20)],
        user="app")
    recs = [r for r in read_all(stack.brokers, name + ".order", count=40,
                                timeout=30)
            if json.loads(r.value)["n"] >= 1000]
    tor.stop()
    assert len(recs) == 20, len(recs)
    for r in recs:
        n = json.loads(r.value)["n"] - 1000
        want = 1588334400000 + n * 1000 + 250 + n
        assert r.timestamp_ms == want, (n, r.timestamp_ms, want)
        assert int(header(r, "tor.ts")) == want, r.headers


def test_trace_context_travels_in_headers(stack):
    """Tracing (Debezium's tracing option, OpenTelemetry): traceparent and
    tracestate columns mapped to the headers of those names reach the
    consumer byte for byte, so a W3C propagator on the consumer continues
    the service's trace; a row without a trace context gets headers with
    null values, which propagators take as no context."""
    name = "relay_trace"
    table, ov = make_outbox(stack, name)
    stack.sql("ALTER TABLE %s ADD COLUMN tracestate VARCHAR(512) NULL" %
              table)
    ov["outbox"]["tables"][0]["headers"] = [
        {"column": "trace_id", "header": "traceparent"},
        {"column": "tracestate", "header": "tracestate"}]
    tor = Tor(stack, ov).start()
    tor.wait_log("starting at", timeout=30)
    rows = []
    for n in range(10):
        tp = "00-%032x-%016x-01" % (0x4bf92f3577b34da6a3ce929d0e0e4736 + n,
                                    0x00f067aa0ba902b7 + n)
        rows.append((n, tp if n < 8 else None,
                     "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
                     if n < 8 else None))
    stack.sql_many([("INSERT INTO %s (aggregate_type, aggregate_id, payload, "
                     "trace_id, tracestate) VALUES ('order', 'k', %%s, %%s, "
                     "%%s)" % table, [json.dumps({"n": n}), tp, ts])
                    for n, tp, ts in rows], user="app")
    recs = read_all(stack.brokers, name + ".order", count=10, timeout=30)
    tor.stop()
    assert len(recs) == 10, len(recs)
    for r in recs:
        n, tp, ts = rows[json.loads(r.value)["n"]]
        h = dict(r.headers)
        assert h["traceparent"] == (tp.encode() if tp else None), (n, h)
        assert h["tracestate"] == (ts.encode() if ts else None), (n, h)
        if tp:
            version, trace_id, span_id, flags = h["traceparent"].split(b"-")
            assert (len(trace_id), len(span_id), flags) == (32, 16, b"01")


def test_redis_acl_user_limited_to_the_groups_keys(stack):
    """redis.user: tor authenticates as an ACL user that may touch only its
    group's keys and no dangerous command (no CONFIG, INFO, CLIENT LIST:
    fast failover falls back to lease expiry); it leads, relays and writes
    its checkpoint, and the ACL refuses that user any other key."""
    import redis as redis_lib
    name = "relay_acl"
    table, ov = make_outbox(stack, name)
    group = harness.unique_group("acl")
    user = "tor_" + group.replace(".", "_").replace("-", "_")[-20:]
    admin = stack.redis()
    admin.execute_command("ACL", "SETUSER", user, "reset", "on", ">s3cret",
                          "~tor:{%s}:*" % group, "&*", "+@all",
                          "-@dangerous")
    try:
        ov.update(group=group, redis={"host": "127.0.0.1",
                                      "port": stack.redis_port,
                                      "user": user, "password": "s3cret"})
        tor = Tor(stack, ov).start()
        tor.wait_log("starting at", timeout=30)
        insert_range(stack, table, 0, 30, 10)
        by_n, recs = read_events(stack, name, 30)
        assert len(by_n) == 30, len(by_n)
        assert tor.stop() == 0, tor.log_tail()
        cp = checkpoint(stack, group)
        assert cp.get("file") and int(cp.get("epoch", 0)) >= 1, cp
        limited = redis_lib.Redis(host="127.0.0.1", port=stack.redis_port,
                                  username=user, password="s3cret")
        assert limited.exists("tor:{%s}:checkpoint" % group) == 1
        for cmd in (("SET", "tor:{other}:checkpoint", "x"),
                    ("GET", "unrelated"), ("CONFIG", "GET", "maxmemory")):
            try:
                limited.execute_command(*cmd)
            except redis_lib.exceptions.NoPermissionError as e:
                print("  %s as %s: %s" % (cmd[0], user, e))
            else:
                raise AssertionError("%s was allowed" % (cmd,))
        p = harness.tor_cli(["status"], cfg=tor.cfg_text)
        assert p.returncode == 1 and "leader: none" in p.stdout, \
            (p.returncode, p.stdout, p.stderr)
    finally:
        admin.execute_command("ACL", "DELUSER", user)
