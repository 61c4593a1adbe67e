"""Taking over on the three-node cluster after its partitions changed
leaders (DESIGN.md §3, §5): what the chaos runner's broker faults showed,
each kept as a test.  Real MariaDB, Redis and Apache Kafka (three nodes).
"""

import time

from confluent_kafka.admin import AdminClient

import harness
from harness import Tor
from test_ha import HA, assert_none_lost, read_all_events, wait_leading
from test_relay import insert_range, make_outbox

CHECKPOINTS = "__tor_checkpoints"


def leader_of(brokers, topic, partition=0, timeout=10):
    md = AdminClient({"bootstrap.servers": brokers}).list_topics(
        topic, timeout=timeout)
    return md.topics[topic].partitions[partition].leader


def wait_leader_not(brokers, topic, node, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        lead = leader_of(brokers, topic)
        if lead not in (node, -1):
            return lead
        assert time.monotonic() < deadline, "%s[0] still led by %d" % (
            topic, node)
        time.sleep(0.2)


def test_takeover_after_the_checkpoint_topics_leader_moved(stack):
    """A standby that met the checkpoint topic's partition on one node
    takes over after that node was killed and started again, the partition
    now led by another: its reading of Kafka's copy of the position asks
    the partition's leader of now, not the one of when it was following,
    and it publishes what was written meanwhile."""
    stack.use_cluster()
    name = "cl_cp_moved"
    table, ov = make_outbox(stack, name)
    cfg = harness.base_config(stack, ha=dict(HA),
                              checkpoint={"interval_ms": 200}, **ov)
    r1 = Tor(stack, cfg, name="r1").start()
    wait_leading([r1], timeout=30)
    insert_range(stack, table, 0, 50, 10)
    read_all_events(stack, name, 50)
    r2 = Tor(stack, cfg, name="r2").start()
    r2.wait_log("follower", timeout=30)
    time.sleep(1.0)                 # its position reader has met the topic
    old = leader_of(stack.brokers, CHECKPOINTS)
    stack.kafka_ctl("kill", old)
    new = wait_leader_not(stack.brokers, CHECKPOINTS, old)
    stack.kafka_ctl("start", old)
    assert leader_of(stack.brokers, CHECKPOINTS) == new
    insert_range(stack, table, 50, 50, 10)
    since = {r2: r2.log_size()}
    t0 = time.monotonic()
    r1.kill9()
    wait_leading([r2], since=since, timeout=30)
    by_n, _ = read_all_events(stack, name, 100, timeout=60)
    print("  %s[0] led by node %d, then %d; r2 published the rows written "
          "meanwhile %.1f s after r1's kill" % (
              CHECKPOINTS, old, new, time.monotonic() - t0))
    assert_none_lost(by_n, 100)
    assert "cannot read its offsets" not in r2.log_text(), r2.log_tail()
