"""Broker faults on the three-node Kafka cluster (DESIGN.md §9), in both
kafka.mode values at once: an idempotent group and a transactional group,
two replicas each, each with its own outbox table, topics and checkpoint
topic, both fed by steady writers, go through the same faults:

  a. kill -9 of the node leading tor's partitions (started again on its
     data once the group flows again);
  b. kill -9 of the active controller (the metadata quorum's leader);
  f. the node leading tor's partitions SIGSTOPped for 20 s, then SIGCONT;
  c. a rolling restart: SIGTERM each node in turn, start it, wait until
     every partition is in sync, next;
  d. two of three down: below the controller quorum and below
     min.insync.replicas, so nothing can be written until one is back;
  e. all three killed, started again 30 s later.

Every partition of a test's topics has the same preferred leader, so one
node leads all that tor writes and an election moves them together.  A
consumer reads the topics (read_committed) while the faults happen and
notes when each event arrives.  A fault's figures: the time from the fault
until the first event written after it reached that consumer ("flowing
again"), the events written and read until the next fault, and the copies
read of events read before.  Judged at the end on what Kafka holds:
nothing lost, per-key order, tokens that never go down in a partition, no
duplicate in either mode (the idempotent producer retries with its
sequence numbers and the broker stores a batch once; a new leadership
skips what its predecessor published), and no replica halted.

test_producer_out_of_step_is_replaced runs on the dev broker: the
OUT_OF_ORDER_SEQUENCE_NUMBER a new leader answered in fault d, injected at
one Produce request.
"""

import collections
import json
import os
import re
import secrets
import threading
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import harness
from harness import Tor, read_all
from test_ha import (HA, LEADING, Feeder, check_tokens_grow, epoch_of,
                     ha_config, lease, log_lines, log_ts, stop_all,
                     wait_leading)
from test_http import free_port, get
from test_relay import (check_per_key_order, insert_range, make_outbox,
                        read_events)
from test_transactional import assert_exactly_once

MODES = ("idempotent", "transactional")
REPLICAS = 2
PARTITIONS = 3
ROWS_PER_TXN = 4
WRITE_PAUSE = 0.05
# Past this after a fault was over, a group that has not flowed again
# never will.
FLOW_TIMEOUT = 90
# How long the writers go on after the last fault's flow came back.
SETTLE = 3
# transaction.state.log.num.partitions of deploy/local/stack.sh.
TXN_STATE_PARTITIONS = 4

CONTROLLER_RE = re.compile(r"\[QuorumController id=\d+\] In the new epoch "
                           r"(\d+), the leader is (\d+|\(none\))")


# ---------------------------------------------------------------------------
# where things live in the cluster


def create_led_topics(brokers, leader, specs, timeout=30):
    """Creates topics [(name, partitions, config)] on the three nodes with
    `leader` first in every partition's replicas, and waits until it leads
    them all."""
    order = [leader] + [n for n in (1, 2, 3) if n != leader]
    admin = AdminClient({"bootstrap.servers": brokers})
    new = [NewTopic(name, parts, replica_assignment=[order] * parts,
                    config=config)
           for name, parts, config in specs]
    for fut in admin.create_topics(new, operation_timeout=timeout).values():
        fut.result()
    names = [s[0] for s in specs]
    deadline = time.monotonic() + timeout
    while set(leaders(brokers, names).values()) != {leader}:
        assert time.monotonic() < deadline, leaders(brokers, names)
        time.sleep(0.2)


def leaders(brokers, topics):
    """{(topic, partition): leading node, -1 for none} by a metadata
    request."""
    md = AdminClient({"bootstrap.servers": brokers,
                      "log_level": 0}).list_topics(timeout=10)
    return {(t, p): m.leader for t in topics if t in md.topics
            for p, m in md.topics[t].partitions.items()}


def leader_of(brokers, topics):
    """The node that leads most of the topics' partitions."""
    return collections.Counter(leaders(brokers, topics).values()).most_common(
        1)[0][0]


def txn_coordinator(brokers, transactional_id):
    """The node leading the __transaction_state partition of an id (Java's
    String.hashCode, as the broker picks it)."""
    h = 0
    for ch in transactional_id.encode():
        h = (31 * h + ch) & 0xffffffff
    h = h - (1 << 32) if h >= 1 << 31 else h
    part = (0 if h == -(1 << 31) else abs(h)) % TXN_STATE_PARTITIONS
    return leaders(brokers, ["__transaction_state"]).get(
        ("__transaction_state", part))


def active_controller(cluster):
    """The active controller (the metadata quorum's Raft leader) as the
    nodes' server.log last tell it: the leader of the newest epoch any node
    logged, None while that epoch has none yet."""
    known = {}
    for i in (1, 2, 3):
        path = os.path.join(cluster.run_dir, "kafka", "node%d" % i,
                            "server.log")
        try:
            with open(path, errors="replace") as f:
                text = f.read()
        except FileNotFoundError:
            continue
        for m in CONTROLLER_RE.finditer(text):
            epoch = int(m.group(1))
            if m.group(2).isdigit():
                known[epoch] = int(m.group(2))
            else:
                known.setdefault(epoch, None)
    return known[max(known)] if known else None


def wait_controller(cluster, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        node = active_controller(cluster)
        if node is not None:
            return node
        assert time.monotonic() < deadline, "no active controller"
        time.sleep(0.2)


# ---------------------------------------------------------------------------
# the two groups, what a consumer sees of them, and the faults' figures


class Group:
    """One group on the cluster: outbox table, topics led by one node,
    replicas (each with its own HTTP port) and a writer."""

    def __init__(self, stack, mode, tag, lead):
        self.stack, self.mode = stack, mode
        self.name = "kf%s_%s_%s" % (tag, mode[:3], secrets.token_hex(2))
        self.table, ov = make_outbox(stack, self.name)
        self.topics = [self.name + ".order", self.name + ".invoice"]
        ckpt = self.name + ".checkpoints"
        create_led_topics(stack.brokers, lead,
                          [(t, PARTITIONS, {}) for t in self.topics] +
                          [(ckpt, 1, {"cleanup.policy": "compact"})])
        self.all_topics = self.topics + [ckpt]
        ov["kafka"] = {"mode": mode, "checkpoint_topic": ckpt}
        cfg = harness.base_config(stack, ha=dict(HA),
                                  checkpoint={"interval_ms": 200}, **ov)
        self.group = harness.config_group(cfg)
        self.ports = [free_port() for _ in range(REPLICAS)]
        self.cfgs = [cfg.replace('listen = "";',
                                 'listen = "127.0.0.1:%d";' % p)
                     for p in self.ports]
        self.tors = [Tor(stack, c, name="%s%d" % (mode[0], i + 1))
                     for i, c in enumerate(self.cfgs)]
        self.feeder = Feeder(stack, self.table, 0, None, ROWS_PER_TXN,
                             WRITE_PAUSE)

    def start(self):
        for t in self.tors:
            t.start()

    def leader(self):
        """The replica holding the lease now, or None."""
        holder = lease(self.stack, self.group)
        for t in self.tors:
            if holder is not None and t.name == holder[0] and t.running():
                return t
        return None

    def kill_leader(self):
        """kill -9 of the replica leading now; a fresh one takes its place
        (and port) as a standby.  Returns the killed one."""
        victim = self.leader()
        assert victim is not None, "%s: nobody leads" % self.mode
        victim.kill9()
        i = self.tors.index(victim)
        self.tors[i] = Tor(self.stack, self.cfgs[i], name=victim.name).start()
        return victim

    def readyz(self):
        """[(replica, status, body)] of every replica's /readyz now."""
        return [(t.name,) + get(p, "/readyz", timeout=2)[:2]
                for t, p in zip(self.tors, self.ports)]


class Monitor(threading.Thread):
    """Reads every group's topics from the beginning (read_committed) as
    tor publishes, noting when each event first arrived and when a copy of
    one came again."""

    def __init__(self, brokers, groups):
        super().__init__(daemon=True)
        self.brokers = brokers
        self.group_of = {t: g for g in groups for t in g.topics}
        self.first = {g: {} for g in groups}      # n -> first arrival
        self.copies = {g: [] for g in groups}     # (arrival, n)
        self.arrivals = {g: [] for g in groups}   # every arrival's time
        self.error = None
        self._halt = threading.Event()

    def run(self):
        c = Consumer({
            "bootstrap.servers": self.brokers,
            "group.id": "tor-it-" + secrets.token_hex(4),
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "topic.metadata.refresh.interval.ms": 1000,
            "fetch.wait.max.ms": 100,
            # A dead or paused node costs this consumer seconds, not
            # the defaults' minute.
            "socket.timeout.ms": 10000,
            "reconnect.backoff.max.ms": 1000,
            "log_level": 0,
        })
        seen = set()
        try:
            c.assign([TopicPartition(t, p, OFFSET_BEGINNING)
                      for t in self.group_of for p in range(PARTITIONS)])
            while not self._halt.is_set():
                for m in c.consume(500, 0.2):
                    if m.error():
                        continue
                    now = time.time()
                    where = (m.topic(), m.partition(), m.offset())
                    if where in seen:
                        continue        # a fetch retried: same record
                    seen.add(where)
                    g = self.group_of[m.topic()]
                    n = json.loads(m.value())["n"]
                    self.arrivals[g].append(now)
                    if n in self.first[g]:
                        self.copies[g].append((now, n))
                    else:
                        self.first[g][n] = now
        except BaseException as e:  # reported by finish()
            self.error = e
        finally:
            c.close()

    def flowing_since(self, g, n0, t0):
        """When the first event n >= n0 arrived at or after t0, or None."""
        times = [t for n, t in list(self.first[g].items())
                 if n >= n0 and t >= t0]
        return min(times) if times else None

    def finish(self):
        self._halt.set()
        self.join(10)
        if self.error is not None:
            raise self.error


class Fault:
    """One fault: when it began (and what each writer had committed by
    then), when the nodes were back, when the next began."""

    def __init__(self, label, what, groups):
        self.label, self.what = label, what
        self.t0 = time.time()
        self.n0 = {g: g.feeder.n for g in groups}
        self.t_back = self.t_end = None
        self.n_end = {}
        self.notes = []


class Run:
    """A test's cluster, two groups, writers and monitor, and its faults."""

    def __init__(self, stack, tag):
        self.stack = stack
        self.cluster = stack.use_cluster()
        self.t_start = time.monotonic()
        # Not the controller: the first leader and controller faults hit
        # two nodes.
        ctl = wait_controller(self.cluster)
        lead = min(n for n in (1, 2, 3) if n != ctl)
        self.groups = [Group(stack, m, tag, lead) for m in MODES]
        for g in self.groups:
            g.start()
        for g in self.groups:
            wait_leading(g.tors, timeout=20)
            g.leader().wait_log("starting at|resuming from", timeout=30)
        self.topics = [t for g in self.groups for t in g.all_topics]
        self.monitor = Monitor(stack.brokers, self.groups)
        self.monitor.start()
        for g in self.groups:
            g.feeder.start()
        self.faults = []
        start = Fault("-", "no fault", self.groups)
        self.faults.append(start)
        self.wait_flowing(start)

    def leader_node(self):
        return leader_of(self.stack.brokers, self.topics)

    def where(self):
        """Who leads what now, for the figures."""
        return "tor's partitions led by node %s, controller %s, " \
            "transaction coordinator %s" % (
                self.leader_node(), active_controller(self.cluster),
                txn_coordinator(self.stack.brokers,
                                "tor-" + self.groups[1].group))

    def kill_and_restart(self, label, node, what):
        """Fault `label`: kill -9 of node, until every group flows again
        without it, then its start on its data."""
        self.stack.kafka_ctl("kill", node)
        f = self.fault(label, what)
        self.wait_flowing(f)
        f.notes.append("afterwards " + self.where())
        self.stack.kafka_ctl("start", node)
        self.back(f)

    def fault(self, label, what):
        f = Fault(label, what, self.groups)
        print("  %s. %s" % (label, what), flush=True)
        last = self.faults[-1]
        last.t_end, last.n_end = f.t0, dict(f.n0)
        self.faults.append(f)
        return f

    def back(self, f):
        f.t_back = time.time()

    def wait_flowing(self, f, timeout=FLOW_TIMEOUT):
        """Until an event written after the fault has reached the consumer
        for every group."""
        deadline = time.monotonic() + timeout
        for g in self.groups:
            while self.monitor.flowing_since(g, f.n0[g], f.t0) is None:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        "%s: %s group flows no more %.0f s after %s; "
                        "replicas:\n%s" % (f.label, g.mode, time.time() -
                                           f.t0, f.what, "\n".join(
                                               "--- %s\n%s" % (
                                                   t.name, t.log_tail(12))
                                               for t in g.tors)))
                time.sleep(0.1)

    def tor_lines(self, f, level=r"warn|error"):
        """The leaders' distinct warnings since the fault began (numbers
        masked), for the figures."""
        out = []
        for g in self.groups:
            t = g.leader()
            if t is None:
                continue
            seen = collections.Counter()
            for line in t.log_text().splitlines():
                m = re.match(r'^ts=(\S+) level=(%s) .*msg="(.*)"$' % level,
                             line)
                if not m:
                    continue
                if log_ts(m.group(1)) < f.t0 or m.group(3).startswith(
                        ("rdkafka FAIL", "producer error _TRANSPORT")):
                    continue        # the same refused connections
                seen[re.sub(r"\d+", "N", m.group(3))[:150]] += 1
            for msg, n in seen.most_common(4):
                out.append("%s %s: %dx %s" % (g.mode, t.name, n, msg))
        return out

    def finish(self):
        """Stops the writers, waits until every event is in Kafka, prints
        the figures and judges each group."""
        last = self.faults[-1]
        time.sleep(SETTLE)      # the last fault's figures: a while flowing
        for g in self.groups:
            g.feeder.stop()
        totals = {g: g.feeder.finish() for g in self.groups}
        last.t_end, last.n_end = time.time(), dict(totals)
        results = {}
        for g in self.groups:
            by_n, recs = read_events(self.stack, g.name, totals[g],
                                     timeout=120)
            results[g] = (by_n, recs)
        self.monitor.finish()
        self.report(totals, results)
        for g in self.groups:
            dead = [t for t in g.tors if not t.running()]
            assert not dead, "%s replicas exited: %s" % (g.mode, "\n".join(
                "--- %s (%s)\n%s" % (t.name, t.proc.returncode,
                                     t.log_tail(20)) for t in dead))
        # Redis kept its data: a session that restarted within its
        # leadership must not take its own token for a lost one's.
        for t in harness.started_tors():
            assert "is not above token" not in t.log_text(), t.log_tail()
        for g in self.groups:
            self.judge(g, totals[g], *results[g])
        stop_all([t for g in self.groups for t in g.tors])

    def report(self, totals, results):
        m = self.monitor
        for f in self.faults[1:]:
            print("  %s:" % f.label)
            for note in f.notes:
                print("       %s" % note)
            for g in self.groups:
                got = m.flowing_since(g, f.n0[g], f.t0)
                flow = "flowing again after %.1f s" % (got - f.t0) \
                    if got is not None else "not flowing"
                if got is not None and f.t_back is not None and \
                        got > f.t_back:
                    flow += " (%.1f s after the nodes were back)" % (
                        got - f.t_back)
                read = sum(1 for t in m.arrivals[g] if f.t0 <= t < f.t_end)
                dups = sum(1 for t, _ in m.copies[g] if f.t0 <= t < f.t_end)
                print("       %-13s %s; %d written, %d read, %d duplicates"
                      % (g.mode, flow, f.n_end[g] - f.n0[g], read, dups))
        for g in self.groups:
            by_n, recs = results[g]
            dups = sum(len(rs) - 1 for rs in by_n.values())
            print("  %s: %d events, %d records read back, %d duplicates, "
                  "%d leaderships" % (g.mode, totals[g], len(recs), dups,
                                      len({epoch_of(r) for r in recs})))
        print("  %.0f s in all" % (time.monotonic() - self.t_start))

    def judge(self, g, total, by_n, recs):
        missing = [n for n in range(total) if n not in by_n]
        assert not missing, "%s: lost %d of %d events, first %s" % (
            g.mode, len(missing), total, missing[:10])
        if g.mode == "transactional":
            aborted = len(read_all(self.stack.brokers, g.topics[0],
                                   isolation="read_uncommitted") +
                          read_all(self.stack.brokers, g.topics[1],
                                   isolation="read_uncommitted")) - len(recs)
            print("  transactional: read_uncommitted sees %d records more "
                  "(aborted transactions and their markers' gaps)" % aborted)
        assert_exactly_once(by_n, total, g.name)
        check_per_key_order(recs)
        check_tokens_grow(recs)


# ---------------------------------------------------------------------------
# the tests


@harness.long_test(
    "test_stack.test_cluster_survives_a_node_killed_or_paused and "
    "test_cluster_takeover show a node killed, paused and a moved leader "
    "under tor")
def test_leader_controller_and_pause(stack):
    """a. kill -9 of the node leading tor's partitions (then each group's
    tor leader killed too, so that a standby takes over after the leader
    moved), b. kill -9 of the active controller, f. the leading node
    SIGSTOPped for 20 s: each group flows again, nothing is lost,
    duplicated or reordered, and no replica halts."""
    run = Run(stack, "a")
    c = run.cluster

    node = run.leader_node()
    run.kill_and_restart("a", node, "kill -9 of node %d (%s)" % (
        node, run.where()))

    # A takeover reads the checkpoint topic, whose leader moved while the
    # standbys' readers knew the old one.
    f = run.fault("a+", "kill -9 of each group's tor leader (%s)" %
                  run.where())
    for g in run.groups:
        f.notes.append("%s: %s killed" % (g.mode, g.kill_leader().name))
    run.wait_flowing(f)

    node = wait_controller(c)
    run.kill_and_restart("b", node, "kill -9 of node %d, the active "
                         "controller (%s)" % (node, run.where()))

    node = run.leader_node()
    what = "SIGSTOP of node %d for 20 s (%s)" % (node, run.where())
    stack.kafka_ctl("pause", node)
    f = run.fault("f", what)
    time.sleep(20)
    f.notes.append("while paused " + run.where())
    stack.kafka_ctl("resume", node)
    c.make_healthy()
    run.back(f)
    run.wait_flowing(f)
    run.finish()


@harness.long_test(
    "test_leader_controller_and_pause shows broker faults on the cluster in both modes")
def test_rolling_restart_two_down_whole_cluster(stack):
    """c. a rolling restart (SIGTERM, start, in sync, next), d. two of
    three nodes down (no quorum, below min.insync.replicas) until one comes
    back, e. all three killed and started 30 s later: tor waits, loses and
    skips nothing, and each group flows again once the cluster can take
    writes."""
    run = Run(stack, "c")
    c = run.cluster

    for node in (1, 2, 3):
        f = run.fault("c%d" % node, "rolling restart: SIGTERM of node %d "
                      "(%s)" % (node, run.where()))
        stack.kafka_ctl("stop", node)
        stack.kafka_ctl("start", node)
        run.back(f)
        run.wait_flowing(f)

    first = run.leader_node()
    ctl = wait_controller(c)
    second = ctl if ctl != first else min(n for n in (1, 2, 3)
                                          if n != first)
    what = "kill -9 of nodes %d and %d (%s)" % (first, second, run.where())
    stack.kafka_ctl("kill", first)
    stack.kafka_ctl("kill", second)
    f = run.fault("d", what)
    time.sleep(15)
    for g in run.groups:
        f.notes.append("after 15 s, /readyz: %s" % ", ".join(
            "%s %s %s" % (name, status, body.strip()[:80])
            for name, status, body in g.readyz()))
    f.notes.extend(run.tor_lines(f))
    stack.kafka_ctl("start", first)
    run.back(f)
    run.wait_flowing(f)
    stack.kafka_ctl("start", second)

    what = "kill -9 of all three nodes for 30 s (%s)" % run.where()
    t_kill = time.time()
    for node in (1, 2, 3):
        stack.kafka_ctl("kill", node)
    f = run.fault("e", what)
    time.sleep(30 - (time.time() - t_kill))
    f.notes.extend(run.tor_lines(f))
    c.start()
    run.back(f)
    run.wait_flowing(f)
    run.finish()


def test_producer_out_of_step_is_replaced(stack):
    """A broker answers OUT_OF_ORDER_SEQUENCE_NUMBER, as a new leader did in
    fault d to the batch after one it had refused with NOT_ENOUGH_REPLICAS:
    librdkafka makes the idempotent producer fatal, and the replica starts
    its session over with a new producer, under the same token, instead of
    exiting; nothing is lost.  On the dev broker: the real cluster answers
    so only in an unlucky moment of a leader change."""
    stack.use_dev_broker()
    name = "kf_step"
    table, cfg = ha_config(stack, name)
    tor = Tor(stack, cfg, name="r1").start()
    _, token, _ = wait_leading([tor], timeout=10)
    tor.wait_log("starting at|resuming from", timeout=30)
    insert_range(stack, table, 0, 50, 10)
    read_events(stack, name, 50, timeout=30)
    since = tor.log_size()
    stack.broker_ctl("error Produce OUT_OF_ORDER_SEQUENCE_NUMBER 1")
    insert_range(stack, table, 50, 50, 10)
    tor.wait_log("lost step with the broker", timeout=20, since=since)
    tor.wait_log("resuming from", timeout=20, since=since)
    by_n, _ = read_events(stack, name, 100, timeout=60)
    missing = [n for n in range(100) if n not in by_n]
    assert not missing, "lost %s" % missing[:10]
    assert tor.running(), tor.log_tail()
    tokens = [int(m.group(1)) for _, m, _, _ in log_lines(tor, LEADING)]
    assert tokens == [token, token], tokens
    assert "is not above token" not in tor.log_text(), tor.log_tail()
    assert tor.stop() == 0, tor.log_tail()
