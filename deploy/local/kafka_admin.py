#!/usr/bin/python3
"""Topic administration for the local stack's Kafka (deploy/local/stack.sh).

    kafka_admin.py --brokers B create NAME:PARTITIONS...

Creates the topics that do not exist yet, replicated on as many nodes as
the cluster has (at most 3), and waits until each one's partitions all have
a leader.  A topic that exists is left as it is.  Runs under Debian's
/usr/bin/python3 (python3-confluent-kafka).
"""

import argparse
import sys
import time

from confluent_kafka.admin import AdminClient, NewTopic


def parse_spec(spec):
    name, _, parts = spec.partition(":")
    if not name or not parts.isdigit() or int(parts) < 1:
        raise SystemExit("kafka_admin: %r is not NAME:PARTITIONS" % spec)
    return name, int(parts)


def wait_leaders(admin, names, timeout):
    deadline = time.monotonic() + timeout
    while True:
        md = admin.list_topics(timeout=10)
        missing = [n for n in names
                   if n not in md.topics or md.topics[n].error is not None or
                   any(p.leader < 0 for p in md.topics[n].partitions.values())]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise SystemExit("kafka_admin: no leader yet for %s" %
                             ", ".join(missing))
        time.sleep(0.1)


def create(admin, specs, timeout):
    md = admin.list_topics(timeout=10)
    rf = min(len(md.brokers), 3)
    wanted = [parse_spec(s) for s in specs]
    new = [NewTopic(n, p, rf) for n, p in wanted if n not in md.topics]
    if new:
        for name, fut in admin.create_topics(
                new, operation_timeout=timeout).items():
            try:
                fut.result()
                print("created %s (replication %d)" % (name, rf))
            except Exception as e:  # noqa: B902 - the admin's KafkaException
                if "TOPIC_ALREADY_EXISTS" not in str(e):
                    raise SystemExit("kafka_admin: %s: %s" % (name, e))
    wait_leaders(admin, [n for n, _ in wanted], timeout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("verb", choices=["create"])
    ap.add_argument("topics", nargs="*")
    a = ap.parse_args()
    admin = AdminClient({"bootstrap.servers": a.brokers})
    if a.verb == "create" and a.topics:
        create(admin, a.topics, a.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
