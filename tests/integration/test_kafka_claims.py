"""What only a real, replicated Kafka can show (DESIGN.md §1, §5, §9), each
on the run's three-node cluster (replication factor 3, min.insync.replicas
2): exactly-once across kill -9s of a leader with its Kafka transaction
open; a live zombie fenced by its successor's init_transactions; the
residue of a paused leader in idempotent mode; the broker de-duplicating an
idempotent producer's retries; the broker aborting a transaction past
transaction.timeout.ms, and a takeover behind another producer's open
transaction on the shared checkpoint topic; the checkpoint topic's own
settings.

Judged on what Kafka holds, read back with read_committed (and
read_uncommitted for what was aborted), and on the replicas' logs.  Every
test prints the figures it measured.
"""

import secrets
import time

from confluent_kafka.admin import (AdminClient, ConfigResource, ConfigSource,
                                   NewTopic)

import harness
from harness import Tor
from test_ha import HA, wait_leading
from test_relay import insert_range, make_outbox, read_events


def cluster_config(stack, name, mode="idempotent", **kafka):
    """The outbox table shop.ob_<name> and one config text for the
    replicas of a test on the cluster."""
    table, ov = make_outbox(stack, name)
    ov["kafka"] = dict({"mode": mode}, **kafka)
    cfg = harness.base_config(stack, ha=dict(HA),
                              checkpoint={"interval_ms": 200}, **ov)
    return table, cfg


def topic_settings(brokers, topic, timeout=10):
    """{name: (value, source)} of a topic's configuration; source is a
    ConfigSource value (DYNAMIC_TOPIC_CONFIG: set on the topic itself)."""
    admin = AdminClient({"bootstrap.servers": brokers})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    cfg = admin.describe_configs([res])[res].result(timeout=timeout)
    return {k: (v.value, v.source) for k, v in cfg.items()}


def make_topic(brokers, name, replication, config, timeout=30):
    """A one-partition topic with the given replication and configs (the
    harness's create_topic always replicates on every node)."""
    admin = AdminClient({"bootstrap.servers": brokers})
    fut = admin.create_topics([NewTopic(name, 1, replication,
                                        config=config)],
                              operation_timeout=timeout)[name]
    fut.result()


# ---------------------------------------------------------------------------
# 7. the checkpoint topic


def test_checkpoint_topic_created_compacted_and_replicated(stack):
    """A missing checkpoint topic is created compacted, with one partition,
    on three replicas with min.insync.replicas 2 set on the topic itself
    (transactional mode, where the producer meets the topic first)."""
    stack.use_cluster()
    name = "kc_cptopic"
    topic = "kc_checkpoints_" + secrets.token_hex(3)
    table, cfg = cluster_config(stack, name, mode="transactional",
                                checkpoint_topic=topic)
    tor = Tor(stack, cfg, name="r1").start()
    wait_leading([tor], timeout=20)
    tor.wait_log("starting at|resuming from", timeout=30)
    insert_range(stack, table, 0, 30, 10)
    by_n, _ = read_events(stack, name, 30, timeout=30)
    assert sorted(by_n) == list(range(30)), sorted(by_n)
    settings = topic_settings(stack.brokers, topic)
    reps = harness.topic_replicas(stack.brokers, topic)
    print("  %s: cleanup.policy=%s, min.insync.replicas=%s (%s), "
          "partitions %s" % (topic, settings["cleanup.policy"][0],
                             settings["min.insync.replicas"][0],
                             settings["min.insync.replicas"][1],
                             {p: r for p, r in reps.items()}))
    assert tor.stop() == 0, tor.log_tail()
    assert settings["cleanup.policy"][0] == "compact", settings
    assert list(reps) == [0], reps
    replicas, isr = reps[0]
    assert sorted(replicas) == [1, 2, 3] and sorted(isr) == [1, 2, 3], reps
    assert settings["min.insync.replicas"] == (
        "2", ConfigSource.DYNAMIC_TOPIC_CONFIG.value), settings


def test_existing_checkpoint_topic_is_checked(stack):
    """A checkpoint topic that exists with cleanup.policy=delete is
    refused: retention may delete a group's last position record, and a
    replica that then finds no Redis checkpoint would start from
    mysql.start (rows lost or replayed).  One with fewer replicas than the
    cluster allows is used, with a warning: a durability trade-off the
    operator may have made on purpose."""
    stack.use_cluster()
    name = "kc_cpcheck"
    deleting = "kc_cp_delete_" + secrets.token_hex(3)
    make_topic(stack.brokers, deleting, 3, {"cleanup.policy": "delete"})
    table, cfg = cluster_config(stack, name, checkpoint_topic=deleting)
    tor = Tor(stack, cfg, name="r1").start()
    rc = tor.wait(30)
    halt = [ln for ln in tor.log_text().splitlines() if "halting" in ln]
    print("  delete policy: exit %s, %s" % (rc, halt[-1] if halt else
                                             tor.log_tail(3)))
    assert rc == 1, tor.log_tail()
    assert halt and deleting in halt[-1] and \
        "cleanup.policy=delete" in halt[-1], tor.log_tail()

    thin = "kc_cp_thin_" + secrets.token_hex(3)
    make_topic(stack.brokers, thin, 1, {"cleanup.policy": "compact"})
    table, cfg = cluster_config(stack, name, checkpoint_topic=thin)
    tor = Tor(stack, cfg, name="r2").start()
    wait_leading([tor], timeout=20)
    insert_range(stack, table, 0, 20, 10)
    by_n, _ = read_events(stack, name, 20, timeout=30)
    assert sorted(by_n) == list(range(20)), sorted(by_n)
    warn = [ln for ln in tor.log_text().splitlines()
            if "level=warn" in ln and thin in ln]
    print("  one replica: %s" % (warn[0] if warn else "no warning"))
    assert tor.stop() == 0, tor.log_tail()
    assert warn and "1 replica" in warn[0], tor.log_tail()
