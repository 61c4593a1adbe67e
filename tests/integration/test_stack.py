"""The local stack itself: what every other integration test stands on.

MariaDB with the binlog tor needs, Redis, and the dev broker with its control
socket.  No tor process here.
"""

import secrets

from confluent_kafka import Producer

import harness


def produce(brokers, topic, key, value, timeout=20, partition=None):
    """Produces one message and waits for its delivery report; returns
    (partition, offset) or raises AssertionError with the error."""
    p = Producer({"bootstrap.servers": brokers, "enable.idempotence": True,
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


def test_broker_down_up(stack):
    assert stack.broker_ctl("ping") == "ok"
    assert stack.broker_ctl("leader order 0 2") == "ok"
    assert stack.broker_ctl("leader order 1 1") == "ok"
    assert stack.broker_ctl("down 1") == "ok"
    # down does not move leaders: a partition led by broker 1 is stuck ...
    stuck = {}
    p = Producer({"bootstrap.servers": stack.brokers,
                  "enable.idempotence": True, "message.timeout.ms": 2000})
    p.produce("order", key=b"k", value=b"stuck", partition=1,
              on_delivery=lambda err, msg: stuck.update(err=err))
    # ... while one led by broker 2 still takes writes
    produce(stack.brokers, "order", b"k", b"while 1 is down", partition=0)
    p.flush(10)
    assert stuck.get("err") is not None, stuck
    assert stack.broker_ctl("up 1") == "ok"
    key = secrets.token_hex(6).encode()
    part, off = produce(stack.brokers, "order", key, b"after up",
                        partition=1)
    assert part == 1
    recs = harness.read_all(stack.brokers, "order")
    assert [(r.partition, r.offset, r.value) for r in recs
            if r.key == key] == [(1, off, b"after up")]


def test_broker_control_errors(stack):
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
              "TOR_REDIS_PORT", "TOR_KAFKA_BROKERS", "TOR_BROKER_CONTROL"):
        assert env.get(k), (k, env)
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
