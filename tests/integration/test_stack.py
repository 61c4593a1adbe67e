"""The local stack itself: what every other integration test stands on.

MariaDB with the binlog tor needs, Redis, Apache Kafka (one node, and the
three-node cluster), and the dev broker with its control socket.  No tor
process here.
"""

import glob
import os
import secrets
import time

from confluent_kafka import Consumer, Producer, TopicPartition

import harness


def produce(brokers, topic, key, value, timeout=20, partition=None,
            idempotent=True):
    """Produces one message and waits for its delivery report; returns
    (partition, offset) or raises AssertionError with the error."""
    p = Producer({"bootstrap.servers": brokers,
                  "enable.idempotence": idempotent, "acks": "all",
                  "message.timeout.ms": timeout * 1000})
    result = {}

    def delivered(err, msg):
        result["err"] = err
        result["at"] = (msg.partition(), msg.offset())

    extra = {} if partition is None else {"partition": partition}
    p.produce(topic, key=key, value=value, on_delivery=delivered,
              headers=[("h", b"1")], **extra)
    p.flush(timeout + 5)
    assert "err" in result, "no delivery report for %s" % topic
    assert result["err"] is None, "delivery failed: %s" % result["err"]
    return result["at"]


def test_mariadb_binlog_settings(stack):
    rows = stack.sql("SELECT @@binlog_format, @@binlog_row_metadata, "
                     "@@log_bin, @@binlog_row_image, @@binlog_checksum, "
                     "@@server_id")
    assert rows == [("ROW", "FULL", 1, "FULL", "CRC32", 1)], rows
    assert stack.sql("SHOW VARIABLES LIKE 'log_bin'") == [("log_bin", "ON")]


def test_tor_user_can_read_binlog(stack):
    rows = stack.sql("SHOW BINARY LOGS", user="tor")
    assert rows, "tor sees no binary logs"
    grants = " ".join(r[0] for r in stack.sql("SHOW GRANTS", user="tor"))
    assert "REPLICATION SLAVE" in grants and "BINLOG MONITOR" in grants, \
        grants
    # app owns shop, and nothing else
    stack.sql("CREATE TABLE IF NOT EXISTS shop.app_probe (a INT)", user="app")
    stack.sql("DROP TABLE shop.app_probe", user="app")


def test_write_shows_in_binlog(stack):
    stack.sql("CREATE TABLE IF NOT EXISTS shop.stack_probe "
              "(id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(32))")
    f, pos = stack.binlog_position()
    marker = "probe-" + secrets.token_hex(4)
    stack.sql("INSERT INTO shop.stack_probe (v) VALUES (%s)", marker)
    events = stack.sql("SHOW BINLOG EVENTS IN %s FROM %s", f, pos)
    types = [e[2] for e in events]
    assert "Table_map" in types, types
    assert "Write_rows_v1" in types or "Write_rows" in types, types
    assert "Xid" in types, types
    table_maps = [e[5] for e in events if e[2] == "Table_map"]
    assert any("shop.stack_probe" in t for t in table_maps), table_maps
    assert stack.binlog_position() > (f, pos)


def test_outbox_ddl_creates_table(stack):
    stack.sql(harness.outbox_ddl("shop.outbox_ddl_probe"))
    cols = [r[0] for r in stack.sql(
        "SELECT column_name FROM information_schema.columns WHERE "
        "table_schema='shop' AND table_name='outbox_ddl_probe' "
        "ORDER BY ordinal_position")]
    for c in ("id", "aggregate_id", "aggregate_type", "payload", "uuid"):
        assert c in cols, cols
    harness.insert_events(stack, [("order", "o-1", b"x"), ("order", "o-2",
                                                           None)],
                          table="shop.outbox_ddl_probe")
    rows = stack.sql("SELECT aggregate_id, payload FROM "
                     "shop.outbox_ddl_probe ORDER BY id")
    assert rows == [("o-1", b"x"), ("o-2", None)], rows
    stack.sql("DROP TABLE shop.outbox_ddl_probe")


def test_redis_answers(stack):
    r = stack.redis()
    assert r.ping() is True
    key = "tor-it:probe:" + secrets.token_hex(4)
    r.set(key, b"v", px=5000)
    assert r.get(key) == b"v"
    assert r.config_get("save")["save"] == ""


def test_produce_and_read_back(stack):
    key = secrets.token_hex(6).encode()
    value = b"hello " + key
    part, off = produce(stack.brokers, "order", key, value)
    hw = harness.high_watermarks(stack.brokers, "order")
    assert sorted(hw) == [0, 1, 2], hw          # the stack made order:3
    assert hw[part] >= off + 1
    recs = harness.read_all(stack.brokers, "order")
    mine = [r for r in recs if r.key == key]
    assert len(mine) == 1, mine
    assert mine[0].value == value and mine[0].partition == part
    assert mine[0].offset == off
    assert harness.header(mine[0], "h") == b"1"


def kafka_version():
    jars = glob.glob(os.path.join(harness.REPO, "build", "kafka", "lib",
                                  "kafka_2.13-*.jar"))
    assert len(jars) == 1, jars
    return os.path.basename(jars[0])[len("kafka_2.13-"):-len(".jar")]


def test_librdkafka_speaks_to_this_kafka(stack):
    """Debian 12's librdkafka (2.0.2, the library tor and these tests link)
    against the Apache Kafka the stack runs (4.1, which dropped the oldest
    protocol versions): idempotent produce, a transaction committed and
    one aborted, read_committed hiding the aborted one, and a consumer
    group's join (JoinGroup, SyncGroup, offsets)."""
    import confluent_kafka
    assert confluent_kafka.libversion()[0] == "2.0.2", \
        confluent_kafka.libversion()
    assert kafka_version().startswith("4.1."), kafka_version()
    topic = "stack_txn_" + secrets.token_hex(3)
    stack.create_topic(topic, 2)
    p = Producer({"bootstrap.servers": stack.brokers,
                  "transactional.id": "stack-probe-" + secrets.token_hex(3)})
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(10):
        p.produce(topic, key=b"k%d" % i, value=b"committed")
    p.commit_transaction(30)
    p.begin_transaction()
    p.produce(topic, key=b"k", value=b"aborted")
    p.flush(10)
    p.abort_transaction(30)
    committed = harness.read_all(stack.brokers, topic)
    assert sorted(r.value for r in committed) == [b"committed"] * 10
    raw = harness.read_all(stack.brokers, topic,
                           isolation="read_uncommitted")
    assert b"aborted" in [r.value for r in raw]
    c = Consumer({"bootstrap.servers": stack.brokers,
                  "group.id": "stack-probe-" + secrets.token_hex(3),
                  "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    try:
        c.subscribe([topic])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 10 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m)
        assert len(got) == 10, len(got)
        c.commit(message=got[-1], asynchronous=False)
        off = c.committed([TopicPartition(topic, got[-1].partition())], 10)
        assert off[0].offset == got[-1].offset() + 1, off
    finally:
        c.close()
    print("  librdkafka %s with Apache Kafka %s: transactions, groups ok" %
          (confluent_kafka.libversion()[0], kafka_version()))


def test_kafka_node_killed_and_started(stack):
    """kafka-ctl on the single node: a message produced while it is killed
    is delivered once it is started again on its data, which kept what
    was written before."""
    key = secrets.token_hex(6).encode()
    part, before = produce(stack.brokers, "order", key, b"before")
    stack.kafka_ctl("kill", 1)
    assert not stack.status("kafka")
    got = {}
    p = Producer({"bootstrap.servers": stack.brokers,
                  "enable.idempotence": True, "message.timeout.ms": 60000})
    p.produce("order", key=key, value=b"while down", partition=part,
              on_delivery=lambda err, msg: got.update(err=err))
    p.flush(1)
    assert got == {}, got          # waiting for the broker
    stack.kafka_ctl("start", 1)
    p.flush(60)
    assert got == {"err": None}, got
    recs = [r for r in harness.read_all(stack.brokers, "order")
            if r.key == key]
    assert [r.value for r in recs] == [b"before", b"while down"], recs
    assert recs[0].offset == before


def test_cluster_survives_a_node_killed_or_paused(stack):
    """The three-node cluster: topics replicated on all three, a killed
    node's partitions led by another and the node back in sync after its
    start on its data; a paused node drops out of the in-sync replicas and
    catches up after it resumes."""
    cluster = stack.use_cluster()
    topic = "stack_cluster_" + secrets.token_hex(3)
    stack.create_topic(topic, 3)
    reps = harness.topic_replicas(stack.brokers, topic)
    assert all(sorted(r) == [1, 2, 3] and sorted(i) == [1, 2, 3]
               for r, i in reps.values()), reps
    stack.kafka_ctl("kill", 1)
    for p in range(3):
        produce(stack.brokers, topic, b"k", b"one down", partition=p)
    stack.kafka_ctl("start", 1)
    stack.kafka_ctl("pause", 3)
    deadline = time.monotonic() + 30
    while any(3 in i for _, i in harness.topic_replicas(
            stack.brokers, topic).values()):
        assert time.monotonic() < deadline, "node 3 still in sync"
        time.sleep(0.5)
    # Not idempotent: its producer id could be asked of the sleeping node.
    for p in range(3):
        produce(stack.brokers, topic, b"k", b"while 3 sleeps", partition=p,
                idempotent=False)
    stack.kafka_ctl("resume", 3)
    cluster.make_healthy()
    # Back in sync: the node rejoins each partition's ISR within seconds
    # of its fetches catching up (slower on a loaded machine).
    deadline = time.monotonic() + 30
    while not all(sorted(i) == [1, 2, 3] for _, i in harness.topic_replicas(
            stack.brokers, topic).values()):
        assert time.monotonic() < deadline, harness.topic_replicas(
            stack.brokers, topic)
        time.sleep(0.5)
    values = [r.value for r in harness.read_all(stack.brokers, topic)]
    assert values.count(b"one down") == 3, values
    assert values.count(b"while 3 sleeps") == 3, values


def test_broker_control_errors(stack):
    """The dev broker's control socket: bad commands refused, an injected
    error reaching a client."""
    stack.use_dev_broker()
    assert stack.broker_ctl("down 9", check=False).startswith("error:")
    assert stack.broker_ctl("leader no-such-topic 0 1",
                            check=False).startswith("error:")
    assert stack.broker_ctl("bogus", check=False).startswith("error:")
    assert stack.broker_ctl("error Produce PRODUCER_FENCED 0",
                            check=False).startswith("error:")
    # an injected error reaches a client, then the stack is reset
    assert stack.broker_ctl("error Produce NOT_ENOUGH_REPLICAS 1") == "ok"
    p = Producer({"bootstrap.servers": stack.brokers,
                  "enable.idempotence": True, "message.timeout.ms": 20000})
    got = {}
    p.produce("invoice", key=b"k", value=b"retried",
              on_delivery=lambda err, msg: got.update(err=err))
    p.flush(25)
    assert got == {"err": None}, got     # retriable: the retry succeeds
    assert stack.broker_ctl("reset") == "ok"


def test_restart_mariadb_keeps_data(stack):
    stack.sql("CREATE TABLE IF NOT EXISTS shop.restart_probe "
              "(id INT PRIMARY KEY, v VARCHAR(32))")
    marker = secrets.token_hex(4)
    stack.sql("REPLACE INTO shop.restart_probe VALUES (1, %s)", marker)
    before = stack.binlog_position()
    stack.restart("mariadb")
    assert stack.status("mariadb")
    assert stack.sql("SELECT v FROM shop.restart_probe WHERE id = 1") == \
        [(marker,)]
    # a restart rotates to a new binlog file; the old ones remain
    after = stack.binlog_position()
    assert after[0] > before[0], (before, after)
    logs = [r[0] for r in stack.sql("SHOW BINARY LOGS")]
    assert before[0] in logs, logs
    stack.sql("DROP TABLE shop.restart_probe")


def test_restart_with_extra_options(stack):
    stack.restart("mariadb", env={"TOR_MYSQL_EXTRA":
                                  "--binlog-format=STATEMENT"})
    assert stack.sql("SELECT @@binlog_format") == [("STATEMENT",)]
    stack.make_healthy()      # what the runner does after each test
    assert stack.sql("SELECT @@binlog_format") == [("ROW",)]


def test_env_file(stack):
    env = stack.reload_env()
    for k in ("TOR_MYSQL_HOST", "TOR_MYSQL_PORT", "TOR_MYSQL_SOCKET",
              "TOR_REDIS_PORT", "TOR_KAFKA_BROKERS", "TOR_KAFKA_NODES",
              "TOR_KAFKA_PROXIED_BROKERS", "TOR_DEVBROKER_BROKERS",
              "TOR_BROKER_CONTROL"):
        assert env.get(k), (k, env)
    assert len(stack.brokers.split(",")) == 1
    assert env["TOR_KAFKA_NODES"] == "1"
    assert stack.use_dev_broker() == env["TOR_DEVBROKER_BROKERS"]
    assert len(stack.brokers.split(",")) == 3


def test_base_config_renders(stack):
    cfg = harness.base_config(stack)
    assert 'brokers = "%s";' % stack.brokers in cfg
    assert "port = %d;" % stack.mysql_port in cfg
    assert "interval_ms = 200;" in cfg
    assert 'listen = "";' in cfg
    assert harness.config_group(cfg).startswith("test_stack.")
    cfg2 = harness.base_config(stack, kafka={"mode": "transactional"},
                               ha='ha = { lease_ms = 1000; };',
                               group="g1", log=None)
    assert 'mode = "transactional";' in cfg2
    assert 'brokers = "%s";' % stack.brokers in cfg2
    assert "ha = { lease_ms = 1000; };" in cfg2
    assert 'group = "g1";' in cfg2 and "log =" not in cfg2
