"""Kafka's side of the promises (DESIGN.md §1, §3, §4): a broker that refuses
a message as too large after the client let it through, and a leader whose
lease ends while messages are still queued in its producer (a zombie must
not publish them).  Real MariaDB, Redis and Apache Kafka: the refusal is
the topic's own max.message.bytes, on the three-node cluster (the partition
leader refuses, its followers never see the batch); the rest on one node,
the broker away is the node killed, the latency a proxy on the link
(harness.KafkaProxy).
"""

import collections
import json
import threading
import time
import zlib

import harness
from harness import Tor, header, read_all, wait_for
from test_ha import (HA, epoch_of, lease_key, leader_now, log_lines, n_of,
                     read_all_events, stop_all, wait_leading)
from test_relay import checkpoint, insert_range, make_outbox


def one_row(stack, table, n, payload):
    stack.sql_many([("INSERT INTO %s (aggregate_type, aggregate_id, payload, "
                     "uuid) VALUES ('order', %%s, %%s, %%s)" % table,
                     ["k%d" % n, payload, "uuid-%d" % n])], user="app")


# The topic's limit, below the client's message.max.bytes (1 MB): the
# client lets the row through and the broker refuses it.
TOPIC_MAX_BYTES = 2000


def refused_by_broker(stack, name, unrouted):
    """Starts a replica on a topic of the cluster whose max.message.bytes
    is 2,000, inserts one row of 3,000 bytes (alone in its request), then
    nine small ones.  Returns (tor, table)."""
    stack.use_cluster()
    table, ov = make_outbox(stack, name)
    ov["outbox"]["unrouted"] = unrouted
    # One message a request: the broker's limit applies to a whole batch,
    # and a refused batch is taken for each of its messages being too
    # large (docs/troubleshooting.md); these tests show one row refused.
    ov["kafka"] = dict(ov.get("kafka", {}),
                       properties=["batch.num.messages=1"])
    stack.create_topic(name + ".order", 3,
                       config={"max.message.bytes": str(TOPIC_MAX_BYTES)})
    tor = Tor(stack, ov).start()
    tor.wait_log("starting at", timeout=30)
    insert_range(stack, table, 100, 3, 3)       # warm: metadata, batches
    wait_for(stack.brokers, name + ".order", 1, timeout=30)
    one_row(stack, table, 0, json.dumps({"n": 0, "big": "x" * 3000}))
    time.sleep(1)
    for n in range(1, 10):
        one_row(stack, table, n, json.dumps({"n": n}))
    return tor, table


def restarted_in_place(tor):
    """The refusal ends the session; the next one runs under the same
    leadership and token, without taking its own checkpoint for a sign
    that Redis lost its data."""
    text = tor.log_text()
    assert "is not above token" not in text, tor.log_tail()
    assert len(log_lines(tor, r"leading with token")) >= 2, tor.log_tail()


def order_ns(stack, name):
    return sorted(json.loads(r.value)["n"] for r in
                  read_all(stack.brokers, name + ".order", timeout=10))


def test_broker_size_refusal_skip(stack):
    name = "sink_big_skip"
    tor, _ = refused_by_broker(stack, name, "skip")
    deadline = time.monotonic() + 30
    while set(range(1, 10)) - set(order_ns(stack, name)):
        assert tor.running(), "exited %s:\n%s" % (tor.proc.returncode,
                                                 tor.log_tail())
        assert time.monotonic() < deadline, order_ns(stack, name)
        time.sleep(0.3)
    assert 0 not in order_ns(stack, name)
    assert tor.stop() == 0, tor.log_tail()
    assert "too large" in tor.log_text(), tor.log_tail()
    restarted_in_place(tor)


def test_broker_size_refusal_dead_letter(stack):
    name = "sink_big_dlq"
    tor, _ = refused_by_broker(stack, name, "dlq:%s.dlq" % name)
    dlq = wait_for(stack.brokers, name + ".dlq", 1, timeout=30)
    assert dlq[0].key == b"k0", dlq[0]
    assert dlq[0].value is None
    assert b"too large" in header(dlq[0], "tor.error"), dlq[0].headers
    assert header(dlq[0], "tor.pos") is not None
    deadline = time.monotonic() + 30
    while set(range(1, 10)) - set(order_ns(stack, name)):
        assert time.monotonic() < deadline, order_ns(stack, name)
        time.sleep(0.3)
    assert tor.stop() == 0, tor.log_tail()
    restarted_in_place(tor)


def test_broker_size_refusal_fail_names_the_row(stack):
    name = "sink_big_fail"
    tor, _ = refused_by_broker(stack, name, "fail")
    assert tor.wait(30) == 1, tor.log_tail()
    line = [ln for ln in tor.log_text().splitlines() if "halting" in ln]
    assert line, tor.log_tail()
    assert "too large" in line[-1] and "row " in line[-1], line[-1]


def test_no_flush_past_the_lease(stack):
    """A leader stopping (SIGTERM) while its broker is away flushes its
    queue; its lease is taken meanwhile.  Once its local deadline passed it
    must not publish what it still holds: the queued rows reach Kafka only
    under the successor's token."""
    name = "sink_zombie_flush"
    table, ov = make_outbox(stack, name)
    cfg = harness.base_config(stack, ha=dict(HA), **ov)
    group = harness.config_group(cfg)
    r1 = Tor(stack, cfg, name="r1").start()
    _, t1, _ = wait_leading([r1], timeout=10)
    insert_range(stack, table, 0, 20, 10)
    read_all_events(stack, name, 20)
    stack.kafka_ctl("kill", 1)
    insert_range(stack, table, 20, 20, 10)
    time.sleep(0.5)
    r1.send_signal(15)
    time.sleep(0.2)
    stack.redis().set(lease_key(group), "someone-else 999", px=3000)
    r1.wait_log("leader -> stepping_down", timeout=10)
    time.sleep(0.5)
    stack.kafka_ctl("start", 1)
    r1.wait(30)
    r2 = Tor(stack, cfg, name="r2").start()
    _, t2, _ = wait_leading([r2], timeout=10)
    by_n, recs = read_all_events(stack, name, 40, timeout=30)
    assert all(n in by_n for n in range(40)), sorted(by_n)[:5]
    late = sorted(n_of(r) for r in recs if n_of(r) >= 20 and
                  epoch_of(r) == t1)
    assert not late, "%d rows published by the ex-leader (token %d) after " \
        "its lease was gone: %s" % (len(late), t1, late[:10])
    assert r2.stop() == 0, r2.log_tail()


def test_paused_leader_residue(stack):
    """A leader with a backlog (300 ms added to every reply from Kafka, by
    a proxy on the link) is SIGSTOPped past its lease; its successor
    publishes; it is then continued.  Whatever it still sends is the
    residue no purge can recall: counted here per partition as messages of
    a lower token after one of a higher token."""
    name = "sink_zombie_pause"
    table, ov = make_outbox(stack, name)
    proxy = stack.kafka_proxy()
    ov["kafka"] = {"brokers": proxy.brokers, "topics": []}
    cfg = harness.base_config(stack, ha=dict(HA), **ov)
    tors = [Tor(stack, cfg, name=n).start() for n in ("r1", "r2")]
    leader, t1, _ = wait_leading(tors, timeout=10)
    other = [t for t in tors if t is not leader][0]
    proxy.delay_replies(0.3)
    insert_range(stack, table, 0, 6000, 500)
    time.sleep(1.0)                 # the leader's queue fills
    since = {t: t.log_size() for t in tors}
    leader.sigstop()
    wait_leading([other], since=since, timeout=15)
    time.sleep(1.0)
    leader.sigcont()
    leader.wait_log("stepping_down", timeout=10, since=since[leader])
    proxy.delay_replies(0)
    by_n, recs = read_all_events(stack, name, 6000, timeout=60)
    time.sleep(1)
    by_n, recs = read_all_events(stack, name, 6000, timeout=60)
    stop_all(tors)
    assert all(n in by_n for n in range(6000))
    late = collections.Counter()
    top = {}
    for r in sorted(recs, key=lambda r: (r.topic, r.partition, r.offset)):
        k = (r.topic, r.partition)
        e = epoch_of(r)
        if e < top.get(k, 0):
            late[k] += 1
        top[k] = max(top.get(k, 0), e)
    residue = sum(late.values())
    print("  residue: %d messages of token %d after token %d's, over %d "
          "partitions (%d records in all)" % (residue, t1, t1 + 1,
                                              len(late), len(recs)))
    assert residue <= 500, "residue %d: queued messages were sent after " \
        "the deadline, not only requests already on the wire" % residue


def test_paused_leader_returns_to_follower(stack):
    """A leader SIGSTOPped past its lease while rows keep coming purges its
    queue when it wakes: the purged messages' failed deliveries end the
    session, and the replica goes on as a follower.  (Found by the chaos
    runner: the purge's delivery reports reached the relay first and halted
    the process, exit 1.)  Three pauses, of whichever replica leads; then
    nothing is lost."""
    name = "sink_pause_follower"
    table, ov = make_outbox(stack, name)
    cfg = harness.base_config(stack, ha=dict(HA), **ov)
    tors = [Tor(stack, cfg, name=n).start() for n in ("r1", "r2", "r3")]
    wait_leading(tors, timeout=10)
    done = threading.Event()
    written = [0]

    def write():
        while not done.is_set():
            insert_range(stack, table, written[0], 20, 5)
            written[0] += 20
            time.sleep(0.01)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        for _ in range(3):
            time.sleep(1.0)
            since = {t: t.log_size() for t in tors}
            leader = leader_now(tors)[0]
            leader.sigstop()
            wait_leading([t for t in tors if t is not leader], since=since,
                         timeout=15)
            leader.sigcont()
            leader.wait_log(r"stepping_down -> follower", timeout=15,
                            since=since[leader])
            time.sleep(0.5)
            assert leader.running(), "the paused leader exited (%s):\n%s" % (
                leader.proc.returncode, leader.log_tail())
            assert "halting" not in leader.log_text()[since[leader]:], \
                leader.log_tail()
    finally:
        done.set()
        writer.join(30)
    by_n, _ = read_all_events(stack, name, written[0], timeout=60)
    stop_all(tors)
    assert all(n in by_n for n in range(written[0]))


# The three producer families' partitioners, written here from their
# definitions, independently of tor and librdkafka: the Java client's
# murmur2 (seed 0x9747b28c, sign bit cleared), Sarama's FNV-1a (32-bit,
# absolute value of the signed hash) and CRC-32 (librdkafka "consistent").
def _java_murmur2(data):
    m, r = 0x5bd1e995, 24
    h = (0x9747b28c ^ len(data)) & 0xffffffff
    n4 = len(data) // 4
    for i in range(n4):
        k = int.from_bytes(data[4 * i:4 * i + 4], "little")
        k = (k * m) & 0xffffffff
        k ^= k >> r
        k = (k * m) & 0xffffffff
        h = (h * m) & 0xffffffff
        h ^= k
    rest = data[4 * n4:]
    if len(rest) == 3:
        h ^= rest[2] << 16
    if len(rest) >= 2:
        h ^= rest[1] << 8
    if len(rest) >= 1:
        h ^= rest[0]
        h = (h * m) & 0xffffffff
    h ^= h >> 13
    h = (h * m) & 0xffffffff
    h ^= h >> 15
    return h


def _sarama_fnv1a(data):
    h = 0x811c9dc5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xffffffff
    return h


REFERENCE = {
    "murmur2": lambda key, n: (_java_murmur2(key) & 0x7fffffff) % n,
    "fnv1a": lambda key, n: abs(_sarama_fnv1a(key) - (1 << 32)
                                if _sarama_fnv1a(key) >= 1 << 31
                                else _sarama_fnv1a(key)) % n,
    "crc32": lambda key, n: zlib.crc32(key) % n,
}


def test_partitioner_matches_each_producer_family(stack):
    """kafka.partitioner: every key lands on the partition the Java client
    (murmur2), Sarama (fnv1a, the Go tor) or librdkafka's consistent
    partitioner (crc32) would give it, computed here from each one's
    definition; 300 keys over 7 partitions."""
    keys = ["k%d" % i for i in range(250)] + \
        ["order-%d-\u00e9" % i for i in range(50)]
    for how in ("murmur2", "fnv1a", "crc32"):
        name = "part_" + how
        topic = name + ".order"
        table = "shop.ob_" + name
        stack.create_topic(topic, 7)
        stack.sql("DROP TABLE IF EXISTS %s" % table)
        stack.sql(harness.outbox_ddl(table))
        cfg = {
            "outbox": {"tables": [{"table": table, "columns": {
                "id": "id", "key": "aggregate_id", "type": "aggregate_type",
                "payload": "payload"}}],
                "routes": [{"match": "^order$", "topic": topic}]},
            "kafka": {"brokers": stack.brokers, "topics": [],
                      "partitioner": how},
        }
        tor = Tor(stack, cfg).start()
        tor.wait_log("starting at|resuming", timeout=30)
        stack.sql_many([("INSERT INTO %s (aggregate_type, aggregate_id, "
                         "payload) VALUES ('order', %%s, %%s)" % table,
                         [k, "p%d" % i]) for i, k in enumerate(keys)],
                       user="app")
        recs = read_all(stack.brokers, topic, count=len(keys), timeout=30)
        tor.stop()
        assert len(recs) == len(keys), (how, len(recs))
        wrong = [(r.key, r.partition, REFERENCE[how](r.key, 7))
                 for r in recs if r.partition != REFERENCE[how](r.key, 7)]
        assert not wrong, (how, len(wrong), wrong[:5])
        used = len(set(r.partition for r in recs))
        assert used == 7, (how, used)
        print("  %s: %d keys, each on its %s partition (7 used)" % (
            how, len(keys), how))
