"""De-duplication at takeover compares a replayed row with the newest
message of its group in the partition the row goes to now (DESIGN.md §3).
That proves the row is there only if the row went to that same partition
before.  Three ways it did not, each on real Kafka:

  a. partitions were added between leaderships (3 -> 4: a key's partition
     changes), three-node cluster;
  b. the partition count was unknown when a leadership first produced to
     the topic (its metadata lookup timed out): the rows went where
     librdkafka's murmur2_random put them, not where kafka.partitioner
     (fnv1a here) does, one node;
  c. the row was too large and went to the dead-letter topic, whose copy
     had not been acknowledged when later rows of the route's partition
     were, three-node cluster.

A row skipped on such a comparison was never published: lost, and the
checkpoint moves past it.  The rows that Kafka never got are made by a
client-side black hole between tor and the node that leads their partition
(harness.KafkaProxy, one node's proxy), so the other nodes take the rows
after them.
"""

import collections
import json
import secrets
import time

from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

import harness
from harness import Tor, header, read_all
from test_ha import HA, wait_leading
from test_sink import REFERENCE


def topic_name(what):
    """A topic of this run alone: a failed run leaves its topics."""
    return "dp_%s_%s" % (what, secrets.token_hex(3))


def create_led(brokers, name, leaders):
    """A topic with a partition per entry of leaders, each led by that
    node (replicas on all three) and in sync."""
    admin = AdminClient({"bootstrap.servers": brokers})
    rest = lambda n: [n] + [m for m in (1, 2, 3) if m != n]
    t = NewTopic(name, len(leaders), -1,
                 replica_assignment=[rest(n) for n in leaders])
    admin.create_topics([t])[name].result(30)
    deadline = time.monotonic() + 30
    while True:
        md = admin.list_topics(name, timeout=10).topics[name]
        if md.partitions and all(md.partitions[p].leader == leaders[p] and
                                 len(md.partitions[p].isrs) == 3
                                 for p in range(len(leaders))):
            return
        assert time.monotonic() < deadline, md.partitions
        time.sleep(0.2)


def outbox(stack, name, key_null=False):
    table = "shop.ob_%s" % name
    stack.sql("DROP TABLE IF EXISTS %s" % table)
    stack.sql(harness.outbox_ddl(table))
    if key_null:
        stack.sql("ALTER TABLE %s MODIFY aggregate_id VARCHAR(64) NULL" %
                  table)
    return table


def config(stack, table, topic, brokers, group=None, **extra):
    ov = {"outbox": {"tables": [{"table": table, "columns": {
        "id": "id", "key": "aggregate_id", "type": "aggregate_type",
        "payload": "payload"}}],
        "routes": [{"match": "^order$", "topic": topic}]},
        "kafka": {"brokers": brokers, "topics": []}}
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(ov.get(k), dict):
            ov[k] = dict(ov[k], **v)
        else:
            ov[k] = v
    if group is not None:
        ov["group"] = group
    return harness.base_config(stack, ha=dict(HA),
                               checkpoint={"interval_ms": 200}, **ov)


def insert_rows(stack, table, ns, payload=None, key=None):
    """Row n: type order, key k<n % 37> (or key(n)), payload {"n": n} (or
    payload(n)), a transaction each."""
    for n in ns:
        stack.sql_many([("INSERT INTO %s (aggregate_type, aggregate_id, "
                         "payload) VALUES ('order', %%s, %%s)" % table,
                         [key(n) if key else "k%d" % (n % 37),
                          payload(n) if payload else json.dumps({"n": n})])],
                       user="app")


def n_of(r):
    return json.loads(r.value)["n"]


def of_group(recs, group):
    return [r for r in recs if header(r, "tor.group") == group.encode()]


def unknown_count(tor):
    """The takeover's "published without knowing" figure, from its log."""
    return int(tor.wait_log(r"(\d+) published without knowing",
                            timeout=30).group(1))


def warm_up(stack, table, brokers, topic, group, key):
    """One row (n = 10000, key `key`) published and read back: the
    producer has its id and its connections before a node is cut off."""
    insert_rows(stack, table, [10000], key=lambda n: key)
    deadline = time.monotonic() + 60
    while 10000 not in {n_of(r) for r in of_group(
            read_all(brokers, topic, timeout=10), group)}:
        assert time.monotonic() < deadline, "the warm-up row never came"
        time.sleep(0.3)


def stall_node(kp, node):
    """No request of tor reaches node (1-based) until its proxy stops."""
    kp.proxies[node - 1].blackhole(True)


def drop_stalled(kp, node):
    """Stops node's proxy, dropping what it held (a proxy let go would
    forward it), then lets the black hole go."""
    kp.proxies[node - 1].stop()
    kp.proxies[node - 1].blackhole(False)


def test_partitions_added_between_leaderships_lose_no_row(stack):
    """a. The leader's rows to partition 0 never reach Kafka (its node is
    cut off from tor), those to partitions 1 and 2 do; it is killed, the
    topic goes from 3 partitions to 4, a successor takes over.  A replayed
    row of partition 0 whose key now hashes to partition 1 or 2 meets a
    newer row of the group there: it must be published, not skipped."""
    cluster = stack.use_cluster()
    kp = stack.kafka_proxy()
    name = "dp_grow"
    topic = topic_name("grow")
    create_led(cluster.brokers, topic, [1, 2, 3])
    table = outbox(stack, name)
    total = 300
    part3 = {n: REFERENCE["murmur2"](("k%d" % (n % 37)).encode(), 3)
             for n in range(total)}
    part4 = {n: REFERENCE["murmur2"](("k%d" % (n % 37)).encode(), 4)
             for n in range(total)}
    at_risk = [n for n in range(total) if part3[n] == 0 and
               part4[n] in (1, 2)]
    assert at_risk, "no key moves from partition 0 to 1 or 2"
    cfg = config(stack, table, topic, kp.brokers)
    group = harness.config_group(cfg)
    r1 = Tor(stack, cfg, name="r1").start()
    wait_leading([r1], timeout=20)
    r1.wait_log("starting at", timeout=60)
    warm_up(stack, table, cluster.brokers, topic, group,
            next("k%d" % i for i in range(37) if part3[i] == 1))
    stall_node(kp, 1)
    insert_rows(stack, table, range(total))
    landed = [n for n in range(total) if part3[n] != 0]
    deadline = time.monotonic() + 60
    while True:
        got = {n_of(r) for r in of_group(read_all(cluster.brokers, topic,
                                                  timeout=10), group)}
        if set(landed) <= got:
            break
        assert time.monotonic() < deadline, \
            "partitions 1 and 2 hold %d of %d rows" % (
                len(got & set(landed)), len(landed))
        time.sleep(0.5)
    assert not got & (set(range(total)) - set(landed)), \
        "rows of partition 0 reached Kafka"
    r1.kill9()
    drop_stalled(kp, 1)
    admin = AdminClient({"bootstrap.servers": cluster.brokers})
    admin.create_partitions([NewPartitions(topic, 4)])[topic].result(30)
    r2 = Tor(stack, config(stack, table, topic, cluster.brokers, group=group),
             name="r2").start()
    wait_leading([r2], timeout=20)
    deadline = time.monotonic() + 30
    while True:
        recs = of_group(read_all(cluster.brokers, topic, timeout=10), group)
        by_n = collections.Counter(n_of(r) for r in recs)
        lost = [n for n in range(total) if n not in by_n]
        if not lost or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    print("  %d rows, %d of partition 0 never reached Kafka, %d of them "
          "hash to partition 1 or 2 of 4; lost after the takeover: %d; "
          "published twice: %d" % (total, total - len(landed), len(at_risk),
                                   len(lost),
                                   sum(1 for c in by_n.values() if c > 1)))
    assert not lost, "lost %d rows (e.g. %s); %d were at risk" % (
        len(lost), lost[:8], len(at_risk))
    # The takeover's count comes once every partition is passed or when
    # the session ends: the rows at risk are all before the tails.
    assert r2.stop() == 0, r2.log_tail()
    assert unknown_count(r2) >= len(at_risk)


def test_unknown_partition_count_is_waited_for(stack):
    """b. A fresh group's first produce to a topic of 5 partitions while
    every Kafka reply takes 7 s: the topic's metadata lookup (5 s) fails.
    The rows must still land where kafka.partitioner (fnv1a) puts them:
    a key on fnv1a's partition, a row without a key on fnv1a's partition of
    its tor.pos (so that a replay finds it), not where librdkafka's
    murmur2_random would."""
    kp = stack.kafka_proxy()
    name = "dp_unknown"
    topic = topic_name("unknown")
    stack.create_topic(topic, 5)
    table = outbox(stack, name, key_null=True)
    keys = ["k%d" % i for i in range(40)]
    key = next(k for k in keys if REFERENCE["fnv1a"](k.encode(), 5) !=
               REFERENCE["murmur2"](k.encode(), 5))
    cfg = config(stack, table, topic, kp.brokers,
                 kafka={"partitioner": "fnv1a"})
    tor = Tor(stack, cfg, name="r1").start()
    tor.wait_log("starting at", timeout=60)
    # The leadership's position record is in Kafka: the delay below meets
    # the first produce's lookup of the topic, not the announcement.
    group = harness.config_group(cfg)
    deadline = time.monotonic() + 30
    while not any(r.key == group.encode() for r in read_all(
            stack.brokers, "__tor_checkpoints", timeout=10)):
        assert time.monotonic() < deadline, "no position record"
        time.sleep(0.2)
    kp.delay_replies(7)
    insert_rows(stack, table, [0, 1],
                key=lambda n: key if n == 0 else None)
    time.sleep(6.5)
    kp.delay_replies(0)
    recs = harness.wait_for(stack.brokers, topic, 2, timeout=60)
    by_n = {n_of(r): r for r in recs}
    keyed, keyless = by_n[0], by_n[1]
    pos = header(keyless, "tor.pos")
    print("  key %s: partition %d (fnv1a %d, murmur2 %d); no key: "
          "partition %d (fnv1a of tor.pos %d)" % (
              key, keyed.partition, REFERENCE["fnv1a"](key.encode(), 5),
              REFERENCE["murmur2"](key.encode(), 5), keyless.partition,
              REFERENCE["fnv1a"](pos, 5)))
    assert keyed.partition == REFERENCE["fnv1a"](key.encode(), 5)
    assert keyless.partition == REFERENCE["fnv1a"](pos, 5)
    assert header(keyed, "tor.partitioning") == b"fnv1a/5"
    tor.wait_log(r"partition count .*unknown|partition count of", timeout=5)
    assert tor.stop() == 0, tor.log_tail()


def test_dead_letter_in_flight_is_not_skipped(stack):
    """c. Row 1 is too large (message.max.bytes) and goes to the
    dead-letter topic, whose node is cut off from tor; rows 0 and 2..40 go
    to the route's topic on another node.  The leader is killed; the
    successor replays row 1.  Its route's partition holds newer rows of the
    group, but row 1 never went there: its dead letter must be published,
    not skipped."""
    cluster = stack.use_cluster()
    kp = stack.kafka_proxy()
    name = "dp_dlq"
    topic, dlq = topic_name("route"), topic_name("dlq")
    create_led(cluster.brokers, topic, [2])
    create_led(cluster.brokers, dlq, [1])
    table = outbox(stack, name)
    extra = {"outbox": {"unrouted": "dlq:" + dlq},
             "kafka": {"properties": ["message.max.bytes=4000"]}}
    cfg = config(stack, table, topic, kp.brokers, **extra)
    group = harness.config_group(cfg)
    r1 = Tor(stack, cfg, name="r1").start()
    wait_leading([r1], timeout=20)
    r1.wait_log("starting at", timeout=60)
    warm_up(stack, table, cluster.brokers, topic, group, "k0")
    stall_node(kp, 1)
    insert_rows(stack, table, range(41),
                payload=lambda n: "x" * 9000 if n == 1 else json.dumps(
                    {"n": n}))
    deadline = time.monotonic() + 30
    while 0 not in {n_of(r) for r in of_group(
            read_all(cluster.brokers, topic, timeout=10), group)}:
        assert time.monotonic() < deadline, "row 0 never came"
        time.sleep(0.3)
    time.sleep(3)
    before = sorted(n_of(r) for r in of_group(
        read_all(cluster.brokers, topic, timeout=10), group) if n_of(r) < 41)
    r1.kill9()
    drop_stalled(kp, 1)
    r2 = Tor(stack, config(stack, table, topic, cluster.brokers, group=group,
                           **extra), name="r2").start()
    wait_leading([r2], timeout=20)
    deadline = time.monotonic() + 30
    while True:
        routed = {n_of(r) for r in of_group(
            read_all(cluster.brokers, topic, timeout=10), group)}
        dead = [r for r in of_group(read_all(cluster.brokers, dlq,
                                             timeout=10), group)]
        if (dead and routed >= set(range(41)) - {1}) or \
                time.monotonic() > deadline:
            break
        time.sleep(0.5)
    print("  route held rows %s before the kill; after the takeover: %d "
          "dead letter(s), %d routed rows" % (
              "%d..%d (%d)" % (before[0], before[-1], len(before))
              if before else "none", len(dead), len(routed)))
    assert dead, "the dead letter of row 1 was never published"
    assert b"too large" in header(dead[0], "tor.error")
    assert routed >= set(range(41)) - {1}, sorted(
        set(range(41)) - {1} - routed)
    r2.stop()
