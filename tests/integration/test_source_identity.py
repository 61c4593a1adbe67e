"""Source identity (DESIGN.md §3): a checkpoint's file:pos is resumed only
on the server whose binlog it names.

After a MariaDB failover that lost transactions, the promoted replica
writes new transactions with the sequence numbers the lost ones had, in the
same GTID domain.  A leader that resumed there by file:pos would compare
those new rows with the old primary's newest row in Kafka and skip them as
published: lost, and the checkpoint moves past them.  The stack has one
MariaDB, so the test makes the checkpoint say what the old primary's would
(the same file:pos, 25 transactions further in the domain) and puts the old
leader's newest row in Kafka; the server then writes new rows with those
sequence numbers.
"""

import json
import secrets

from confluent_kafka import Producer

import harness
from harness import Tor, header, read_all
from test_ha import HA, wait_leading
from test_relay import checkpoint


def insert_rows(stack, table, ns):
    for n in ns:
        stack.sql("INSERT INTO %s (aggregate_type, aggregate_id, payload) "
                  "VALUES ('order', 'k', %%s)" % table,
                  json.dumps({"n": n}), user="app")


def rows_of(brokers, topic, group):
    return sorted(json.loads(r.value)["n"]
                  for r in read_all(brokers, topic, timeout=10)
                  if header(r, "tor.group") == group.encode())


def ahead_of(gtid, by):
    """The GTID state gtid with its first domain `by` transactions further:
    what the old primary's checkpoint said."""
    first, *rest = gtid.split(",")
    d, s, n = first.split("-")
    return ",".join(["%s-%s-%d" % (d, s, int(n) + by)] + rest)


def published_then_stopped(stack, name):
    """A leader r1 published rows 0..4 of shop.ob_<name> to a new topic and
    stopped: (table, topic, cfg, group, checkpoint)."""
    table = "shop.ob_" + name
    topic = "%s_%s" % (name, secrets.token_hex(3))
    stack.sql("DROP TABLE IF EXISTS %s" % table)
    stack.sql(harness.outbox_ddl(table))
    stack.create_topic(topic, 1)
    cfg = harness.base_config(
        stack, ha=dict(HA),
        outbox={"tables": [{"table": table, "columns": {
            "id": "id", "key": "aggregate_id", "type": "aggregate_type",
            "payload": "payload"}}],
            "routes": [{"match": "^order$", "topic": topic}]})
    group = harness.config_group(cfg)
    r1 = Tor(stack, cfg, name="r1").start()
    wait_leading([r1], timeout=20)
    r1.wait_log("starting at", timeout=60)
    insert_rows(stack, table, range(5))
    harness.wait_for(stack.brokers, topic, 5, timeout=30)
    assert r1.stop() == 0, r1.log_tail()
    cp = checkpoint(stack, group)
    assert cp.get("gtid") and cp.get("file"), cp
    return table, topic, cfg, group, cp


def test_checkpoint_from_another_server_halts(stack):
    """r1 publishes rows 0..4 and stops.  The checkpoint is then made the
    old primary's (25 transactions ahead at the same file:pos) and Kafka
    gets that primary's newest row; this server writes rows 5..14, whose
    GTIDs reuse those sequence numbers.  r2 must halt naming both GTID
    states and `tor checkpoint set`, and publish none of them by
    file:pos."""
    name = "si_other"
    table, topic, cfg, group, cp = published_then_stopped(stack, name)
    old = ahead_of(cp["gtid"], 25)
    p = Producer({"bootstrap.servers": stack.brokers})
    p.produce(topic, key=b"k", value=json.dumps({"n": -1}).encode(),
              partition=0, headers=[
                  ("tor.group", group.encode()),
                  ("tor.pos", (old.split(",")[0] + ":0").encode()),
                  ("tor.epoch", cp["epoch"].encode()),
                  ("tor.partitioning", b"murmur2/1")])
    assert p.flush(10) == 0
    stack.redis().hset("tor:{%s}:checkpoint" % group, "gtid", old)
    insert_rows(stack, table, range(5, 15))

    r2 = Tor(stack, cfg, name="r2").start()
    try:
        rc = r2.wait(timeout=20)
    except AssertionError:
        rc = None
    new = [n for n in rows_of(stack.brokers, topic, group) if n >= 5]
    skipped = r2.log_text().count("de-duplication")
    print("  checkpoint %s:%s at GTID %s (the server's: %s); r2 exit %s; "
          "new rows 5..14 in Kafka: %d of 10" % (
              cp["file"], cp["pos"], old, cp["gtid"], rc, len(new)))
    assert rc is not None, \
        "r2 did not halt: %d of the 10 new rows published, the rest " \
        "skipped as published (%d de-duplication lines)" % (
            len(new), skipped)
    assert rc == 1, (rc, r2.log_tail())
    log = r2.log_text()
    assert "not the server" in log and "tor checkpoint set" in log, \
        r2.log_tail()
    assert old in log and cp["gtid"].split(",")[0] in log, r2.log_tail()
    assert not new, new
