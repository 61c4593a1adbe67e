"""What only a real, replicated Kafka can show (DESIGN.md §1, §5, §9), each
on the run's three-node cluster (replication factor 3, min.insync.replicas
2): exactly-once across kill -9s of a leader with its Kafka transaction
open; a live zombie fenced by its successor's init_transactions; the
residue of a paused leader in idempotent mode; the broker de-duplicating an
idempotent producer's retries; the broker aborting a transaction past
transaction.timeout.ms, and a takeover behind another producer's open
transaction on the checkpoint topic it shares with tor; the checkpoint
topic's own settings.

Judged on what Kafka holds, read back with read_committed (and
read_uncommitted for what was aborted), and on the replicas' logs.  A
transaction is caught open by the broker's own account: the last stable
offset below the high watermark while tor is held (stopped, or its link
cut).  Every test prints the figures it measured.
"""

import collections
import random
import secrets
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, ConfigResource, ConfigSource,
                                   NewTopic)

import harness
from harness import Tor, read_all
from test_ha import (HA, LOST, Feeder, epoch_of, log_lines, n_of, stop_all,
                     wait_leading)
from test_http import free_port, samples, value
from test_relay import (check_per_key_order, insert_range, make_outbox,
                        read_events)
from test_transactional import assert_exactly_once


def fresh(name):
    """A test's name for its table and topics, new at each run: the
    cluster outlives a run, and a failed test's topics stay on it."""
    return "%s_%s" % (name, secrets.token_hex(2))


def cluster_config(stack, name, mode="idempotent", **kafka):
    """The outbox table shop.ob_<name> and one config text for the
    replicas of a test on the cluster.  The test's own checkpoint topic
    (unless kafka names one): a transaction a failed test leaves open on
    a shared one would hold every later takeover back until it times
    out."""
    table, ov = make_outbox(stack, name)
    ov["kafka"] = dict({"mode": mode,
                        "checkpoint_topic": name + ".checkpoints"}, **kafka)
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


class OpenTransactions:
    """Where the log holds records no read_committed consumer may see yet:
    partitions whose last stable offset (what a read_committed client is
    told is the end) is below the high watermark.  With the only producer
    of the topics stopped, that is its open transaction."""

    def __init__(self, brokers, topics):
        self.topics = topics
        self.ends = {iso: Consumer({
            "bootstrap.servers": brokers, "group.id": "kc-" + iso,
            "isolation.level": iso, "enable.auto.commit": False})
            for iso in ("read_committed", "read_uncommitted")}
        self.partitions = [(t, p) for t in topics for p in range(4)]

    def offsets(self):
        """{(topic, partition): (last stable offset, high watermark)}."""
        out = {}
        for t, p in self.partitions:
            tp = TopicPartition(t, p)
            out[(t, p)] = tuple(harness.watermarks(self.ends[iso], t, p,
                                                   5)[1]
                                for iso in ("read_committed",
                                            "read_uncommitted"))
        return out

    def close(self):
        for c in self.ends.values():
            c.close()


def open_ranges(offsets):
    """The partitions of offsets (OpenTransactions.offsets) whose last
    stable offset is below the high watermark."""
    return {tp: (lso, hw) for tp, (lso, hw) in offsets.items() if lso < hw}


def hold_mid_transaction(hold, release, probe, attempts=60):
    """Holds tor (hold(): SIGSTOP, or its link to Kafka cut) at a moment
    its Kafka transaction is open with records in the log; returns the
    offsets then (OpenTransactions.offsets) and the attempts it took.  A
    hold that finds none is released and tried again a moment later.  The
    offsets are read twice, 100 ms apart, the same: a commit already on
    its way would have moved a last stable offset by then."""
    for attempt in range(1, attempts + 1):
        hold()
        time.sleep(0.05)
        first = probe.offsets()
        if open_ranges(first):
            time.sleep(0.1)
            if probe.offsets() == first:
                return first, attempt
        release()
        time.sleep(random.uniform(0.02, 0.2))
    raise AssertionError("no open transaction with records in the log in "
                         "%d tries" % attempts)


def steady_flow(stack, name, table):
    """A Feeder writing a few hundred rows/s (20 a transaction), started,
    and an OpenTransactions on the test's topics."""
    probe = OpenTransactions(stack.brokers,
                             [name + ".order", name + ".invoice"])
    feeder = Feeder(stack, table, 0, None, 20, 0.05)
    feeder.start()
    return probe, feeder


def only_uncommitted(token, committed, uncommitted):
    """The records of token that read_uncommitted returned and
    read_committed did not: its aborted ones."""
    seen = {(r.topic, r.partition, r.offset) for r in committed}
    return [r for r in uncommitted if epoch_of(r) == token and
            (r.topic, r.partition, r.offset) not in seen]


def visible_after(offsets, token, committed):
    """The records of token that read_committed returns at or past the
    last stable offsets of offsets: the ones that were not committed at
    that moment."""
    return [r for r in committed if epoch_of(r) == token and
            r.offset >= offsets[(r.topic, r.partition)][0]]


def aborted_in(ranges, committed, uncommitted):
    """The records of ranges ({(topic, partition): (lo, hi)}) that
    read_uncommitted returned and read_committed did not."""
    seen = {(r.topic, r.partition, r.offset) for r in committed}
    return [r for r in uncommitted
            if (r.topic, r.partition) in ranges and
            ranges[(r.topic, r.partition)][0] <= r.offset <
            ranges[(r.topic, r.partition)][1] and
            (r.topic, r.partition, r.offset) not in seen]


def read_both(stack, name, isolation):
    return (read_all(stack.brokers, name + ".order", timeout=20,
                     isolation=isolation) +
            read_all(stack.brokers, name + ".invoice", timeout=20,
                     isolation=isolation))


def read_committed_events(stack, name, total, timeout=60):
    """Reads both topics (read_committed) until every event 0..total-1 is
    there; returns ({n: [records]}, records)."""
    deadline = time.monotonic() + timeout
    while True:
        recs = read_both(stack, name, "read_committed")
        by_n = collections.defaultdict(list)
        for r in recs:
            by_n[n_of(r)].append(r)
        if all(n in by_n for n in range(total)) or \
                time.monotonic() > deadline:
            return by_n, recs
        time.sleep(0.3)


def make_topic(brokers, name, replication, config, timeout=30):
    """A one-partition topic with the given replication and configs (the
    harness's create_topic always replicates on every node)."""
    admin = AdminClient({"bootstrap.servers": brokers})
    fut = admin.create_topics([NewTopic(name, 1, replication,
                                        config=config)],
                              operation_timeout=timeout)[name]
    fut.result()


# ---------------------------------------------------------------------------
# 1. transactional mode, kill -9 with the transaction open


def leader_of(tors):
    """The replica whose last leadership line says it leads."""
    found = []
    for t in tors:
        lines = log_lines(t, r"leading with token|" + LOST)
        if lines and lines[-1][1].group(0).startswith("leading"):
            found.append(t)
    assert len(found) == 1, [t.log_tail(5) for t in tors]
    return found[0]


def test_transactional_kill9_mid_transaction_exactly_once(stack):
    """Three replicas in transactional mode under a steady write load; the
    leader is kill -9'd five times, each time while its Kafka transaction
    is open with records in the log (seen by the broker's last stable
    offset).  The successor's init_transactions aborts it: a read_committed
    consumer sees every event exactly once, in per-key order, and none of
    the aborted records."""
    stack.use_cluster()
    name = fresh("kc_txkill")
    table, cfg = cluster_config(stack, name, mode="transactional")
    tors = [Tor(stack, cfg, name=n).start() for n in ("r1", "r2", "r3")]
    wait_leading(tors, timeout=20)
    leader_of(tors).wait_log("starting at|resuming from", timeout=30)
    probe, feeder = steady_flow(stack, name, table)
    kills = []
    started = time.time()
    try:
        time.sleep(1.0)
        for _ in range(5):
            victim = leader_of(tors)
            token = max(int(m.group(1)) for _, m, _, _ in
                        log_lines(victim, r"leading with token (\d+)"))
            others = [t for t in tors if t is not victim]
            since = {t: t.log_size() for t in others}
            offsets, attempts = hold_mid_transaction(
                victim.sigstop, victim.sigcont, probe)
            t_kill = time.time()
            victim.kill9()
            who, new_token, t_lead = wait_leading(others, since, timeout=20)
            init = who.wait_log("init_transactions done", timeout=20,
                                since=since[who])
            t_init = log_lines(who, "init_transactions done",
                               since[who])[0][0]
            who.wait_log("resuming from", timeout=20, since=since[who])
            t_resume = log_lines(who, "resuming from", since[who])[0][0]
            assert init and new_token > token, (new_token, token)
            kills.append({"token": token, "offsets": offsets,
                          "attempts": attempts,
                          "lead": t_lead - t_kill, "init": t_init - t_kill,
                          "resume": t_resume - t_kill})
            tors[tors.index(victim)] = Tor(stack, cfg,
                                           name=victim.name).start()
            time.sleep(1.0)
    finally:
        feeder.stop()
        probe.close()
    total = feeder.finish()
    rate = total / (time.time() - started)
    by_n, recs = read_committed_events(stack, name, total)
    uncommitted = read_both(stack, name, "read_uncommitted")
    stop_all(tors)
    assert_exactly_once(by_n, total, name)
    check_per_key_order(recs)
    for i, k in enumerate(kills):
        ranges = open_ranges(k["offsets"])
        gone = only_uncommitted(k["token"], recs, uncommitted)
        late = visible_after(k["offsets"], k["token"], recs)
        print("  kill %d: token %d, stopped %d time(s) to find the "
              "transaction open (%d records over %d partitions past the "
              "last stable offset); successor leading %.0f ms, "
              "init_transactions done %.0f ms, resuming %.0f ms after the "
              "kill; %d records aborted, %d of the victim's records "
              "visible past the offsets of the kill" % (
                  i + 1, k["token"], k["attempts"],
                  sum(hi - lo for lo, hi in ranges.values()), len(ranges),
                  k["lead"] * 1000, k["init"] * 1000, k["resume"] * 1000,
                  len(gone), len(late)))
        assert len(gone) >= sum(hi - lo for lo, hi in ranges.values()), \
            "kill %d: the open transaction's records %s were not " \
            "aborted" % (i + 1, ranges)
        assert not late, "kill %d: %s" % (i + 1, late[:5])
    print("  %d events at %.0f rows/s, %d committed records (each event "
          "once), %d records only read_uncommitted sees" % (
              total, rate, len(recs), len(uncommitted) - len(recs)))


# ---------------------------------------------------------------------------
# 2. a live zombie in transactional mode


def test_transactional_zombie_is_fenced(stack):
    """The leader is SIGSTOPped with its Kafka transaction open (records in
    the log past the last stable offset) and stays stopped past its lease;
    its successor's init_transactions bumps the producer epoch and aborts
    that transaction, and the successor publishes.  Woken, the zombie gets
    nothing into what read_committed sees, and steps down without exiting.
    read_uncommitted still shows its aborted records: counted."""
    stack.use_cluster()
    name = fresh("kc_txzombie")
    table, cfg = cluster_config(stack, name, mode="transactional")
    tors = [Tor(stack, cfg, name=n).start() for n in ("r1", "r2")]
    wait_leading(tors, timeout=20)
    zombie = leader_of(tors)
    zombie.wait_log("starting at|resuming from", timeout=30)
    ztoken = max(int(m.group(1)) for _, m, _, _ in
                 log_lines(zombie, r"leading with token (\d+)"))
    heir = [t for t in tors if t is not zombie][0]
    probe, feeder = steady_flow(stack, name, table)
    try:
        time.sleep(1.0)
        since = {t: t.log_size() for t in tors}
        offsets, attempts = hold_mid_transaction(
            zombie.sigstop, zombie.sigcont, probe)
        t_stop = time.time()
        _, htoken, t_lead = wait_leading([heir], since, timeout=20)
        heir.wait_log("resuming from", timeout=20, since=since[heir])
        # The successor publishes: its records are read_committed.
        deadline = time.monotonic() + 30
        while not any(epoch_of(r) == htoken for r in
                      read_both(stack, name, "read_committed")):
            assert time.monotonic() < deadline, heir.log_tail()
            time.sleep(0.2)
        t_cont = time.time()
        zombie.sigcont()
        zombie.wait_log(r"stepping_down -> follower", timeout=20,
                        since=since[zombie])
        time.sleep(1.0)     # whatever the zombie still sends
        assert zombie.running(), zombie.log_tail()
    finally:
        zombie.sigcont()
        feeder.stop()
        probe.close()
    total = feeder.finish()
    by_n, recs = read_committed_events(stack, name, total)
    uncommitted = read_both(stack, name, "read_uncommitted")
    stop_all(tors)
    assert_exactly_once(by_n, total, name)
    check_per_key_order(recs)
    woke = zombie.log_text()[since[zombie]:]
    # The coordinator aborts an open transaction before it gives its
    # transactional.id a new epoch, and has the new producer ask again
    # meanwhile (CONCURRENT_TRANSACTIONS).
    waited = [ln for ln in heir.log_text()[since[heir]:].splitlines()
              if "GETPID" in ln and "concurrent operation" in ln]
    # Everything the zombie got into read_committed was committed before
    # its stop: below the last stable offsets seen then.
    late = visible_after(offsets, ztoken, recs)
    residue = only_uncommitted(ztoken, recs, uncommitted)
    ranges = open_ranges(offsets)
    print("  %s (token %d) stopped after %d tries with %d records open "
          "over %d partitions; %s leads with token %d %.0f ms later; "
          "zombie continued %.0f ms after the stop" % (
              zombie.name, ztoken, attempts,
              sum(hi - lo for lo, hi in ranges.values()), len(ranges),
              heir.name, htoken, (t_lead - t_stop) * 1000,
              (t_cont - t_stop) * 1000))
    print("  read_committed: %d of the zombie's records after its stop; "
          "read_uncommitted: %d aborted records of the zombie (the "
          "residue); %d events, each once" % (len(late), len(residue),
                                              total))
    print("  the successor's init_transactions asked %d time(s) while "
          "the broker aborted the zombie's transaction" % (len(waited) + 1))
    print("  zombie's log after the stop:\n" + "\n".join(
        "    " + ln for ln in woke.splitlines()
        if "level=info" not in ln or "->" in ln))
    assert not late, "the zombie's records visible to read_committed: %s" \
        % [(r.topic, r.partition, r.offset) for r in late[:5]]
    assert residue, "no aborted record of the zombie: its transaction " \
        "was not open"
    assert waited, "the successor's init_transactions found no " \
        "transaction to abort:\n" + heir.log_tail()


# ---------------------------------------------------------------------------
# 3. the same pause in idempotent mode: the residue


def with_http(cfg):
    """cfg with /metrics on a port of its own; (text, port)."""
    port = free_port()
    return cfg.replace('listen = "";', 'listen = "127.0.0.1:%d";' % port), \
        port


QUEUE_CAP = 2000


def test_idempotent_paused_leader_residue(stack):
    """Idempotent mode has no producer fence: a leader SIGSTOPped past its
    lease with messages queued still sends some when it wakes, between its
    waking and the purge that its local deadline sets off.  Those land
    after the successor's (a lower tor.epoch after a higher one in a
    partition): the residue, measured here.  What the design promises
    (DESIGN.md §1, 3 and 4): nothing lost, and the residue no more than
    the ex-leader had in flight.  Its link to Kafka answers 0.5 s late and
    sends one request at a time, with 50 messages a batch, so that at the
    pause most of a full queue (2,000 messages) waits unsent."""
    stack.use_cluster()
    name = fresh("kc_residue")
    proxy = stack.kafka_proxy()
    table, cfg = cluster_config(
        stack, name, brokers=proxy.brokers, properties=[
            "queue.buffering.max.messages=%d" % QUEUE_CAP,
            "batch.num.messages=50",
            "max.in.flight.requests.per.connection=1"])
    total = 6000
    ports = {}
    tors = []
    for n in ("r1", "r2"):
        text, ports[n] = with_http(cfg)
        tors.append(Tor(stack, text, name=n).start())
    leader, t1, _ = wait_leading(tors, timeout=20)
    other = [t for t in tors if t is not leader][0]
    leader.wait_log("starting at|resuming from", timeout=30)
    proxy.delay_replies(0.5)
    insert_range(stack, table, 0, total, 500)
    # Until every row is read, the queue is full whenever it is sampled;
    # then it only drains, so the last sample bounds what is in flight at
    # the stop.
    deadline = time.monotonic() + 60
    queued = []
    while True:
        smp = samples(ports[leader.name])
        queued.append(int(value(smp, "tor_kafka_queue_messages")))
        if value(smp, "tor_events_read_total") >= total:
            break
        assert time.monotonic() < deadline, leader.log_tail()
        time.sleep(0.05)
    since = {t: t.log_size() for t in tors}
    leader.sigstop()
    try:
        _, t2, _ = wait_leading([other], since=since, timeout=20)
        time.sleep(1.0)
    finally:
        leader.sigcont()
    leader.wait_log(r"stepping_down -> follower", timeout=20,
                    since=since[leader])
    proxy.delay_replies(0)
    by_n, recs = read_committed_events(stack, name, total)
    time.sleep(1)
    by_n, recs = read_committed_events(stack, name, total)
    assert leader.running(), leader.log_tail()
    stop_all(tors)
    missing = [n for n in range(total) if n not in by_n]
    assert not missing, "lost %d events, first %s" % (len(missing),
                                                      missing[:10])
    late = collections.Counter()
    top = {}
    for r in sorted(recs, key=lambda r: (r.topic, r.partition, r.offset)):
        k = (r.topic, r.partition)
        if epoch_of(r) < top.get(k, 0):
            late[k] += 1
        top[k] = max(top.get(k, 0), epoch_of(r))
    residue = sum(late.values())
    dups = sum(len(rs) - 1 for rs in by_n.values())
    dropped = [int(m.group(1)) for _, m, _, _ in log_lines(
        leader, r"dropping (\d+) messages in flight", since[leader])]
    print("  in flight (tor_kafka_queue_messages) before the stop: %d (cap "
          "%d); dropped on waking: %s; residue: %d messages of token %d "
          "after token %d's over %d partitions; %d duplicated events, %d "
          "records for %d events" % (queued[-1], QUEUE_CAP, dropped,
                                     residue, t1, t2, len(late), dups,
                                     len(recs), total))
    # The queue was full (a produce waits for room), so what the leader
    # had in flight at the stop was at most the cap: it reached the cap,
    # and the last sample before the stop was within an acknowledgement
    # burst of it.
    assert max(queued) == QUEUE_CAP and queued[-1] >= QUEUE_CAP * 0.9, \
        queued[-10:]
    assert residue <= QUEUE_CAP, \
        "residue %d above the %d messages that can be in flight" % (
            residue, QUEUE_CAP)


# ---------------------------------------------------------------------------
# 4. the broker de-duplicates an idempotent producer's retries


def stored(stack, name):
    """Records in both topics by their watermarks (read directly, not
    through the test's proxy)."""
    return sum(harness.count_records(stack.brokers, "%s.%s" % (name, t))
               for t in ("order", "invoice"))


def test_broker_deduplicates_retried_produce_requests(stack):
    """tor's link to Kafka answers 3 s late for a while and its requests
    time out after 1.5 s (socket.timeout.ms; librdkafka checks once a
    second): the broker has stored the batches of the timed-out produce
    requests, none of them acknowledged, and librdkafka sends them again
    on a new connection once the link is back, with the same producer id
    and sequence numbers.  Kafka keeps one copy: each event once
    (read_uncommitted too), nothing lost, per-key order kept.  The
    timeouts are in tor's log and tor_kafka_errors_total."""
    stack.use_cluster()
    name = fresh("kc_retry")
    proxy = stack.kafka_proxy()
    table, cfg = cluster_config(stack, name, brokers=proxy.brokers,
                                properties=["socket.timeout.ms=1500"])
    cfg, port = with_http(cfg)
    tor = Tor(stack, cfg, name="r1").start()
    wait_leading([tor], timeout=20)
    tor.wait_log("starting at|resuming from", timeout=30)
    insert_range(stack, table, 0, 30, 30)          # metadata, producer id
    read_committed_events(stack, name, 30, timeout=30)
    errors0 = value(samples(port), "tor_kafka_errors_total")
    since = tor.log_size()
    proxy.delay_replies(3.0)
    t0 = time.monotonic()
    insert_range(stack, table, 30, 300, 30)
    tor.wait_log("Timed out ProduceRequest in flight", timeout=15,
                 since=since)
    t_timeout = time.monotonic() - t0
    # No reply has come through since the delay began: what the broker
    # holds beyond the first 30 was stored and never acknowledged.
    unacked = stored(stack, name) - 30
    waiting = value(samples(port), "tor_kafka_queue_messages")
    proxy.delay_replies(0)
    # Everything acknowledged: the checkpoint reaches the binlog's end.
    end = stack.binlog_position()
    deadline = time.monotonic() + 60
    while harness_checkpoint(stack, tor.group) != end:
        assert tor.running(), tor.log_tail()
        assert time.monotonic() < deadline, (
            harness_checkpoint(stack, tor.group), end, tor.log_tail())
        time.sleep(0.2)
    t_acked = time.monotonic() - t0
    errors = value(samples(port), "tor_kafka_errors_total") - errors0
    log = tor.log_text()[since:]
    timeouts = [ln for ln in log.splitlines()
                if "Timed out ProduceRequest in flight" in ln]
    assert tor.stop() == 0, tor.log_tail()
    committed = read_both(stack, name, "read_committed")
    uncommitted = read_both(stack, name, "read_uncommitted")
    print("  first produce timeout %.1f s into the slow link: %d records "
          "stored and not acknowledged, %d messages waiting in tor; all "
          "acknowledged %.1f s after the link slowed" % (
              t_timeout, unacked, waiting, t_acked))
    print("  %d produce requests timed out (tor's log), "
          "tor_kafka_errors_total +%d; Kafka holds %d records "
          "(read_uncommitted %d) for 330 events" % (
              len(timeouts), errors, len(committed), len(uncommitted)))
    assert unacked > 0 and waiting > 0, (unacked, waiting)
    assert errors > 0, errors
    for recs in (committed, uncommitted):
        by_n = collections.defaultdict(list)
        for r in recs:
            by_n[n_of(r)].append(r)
        assert_exactly_once(by_n, 330, name)
        check_per_key_order(recs)


def harness_checkpoint(stack, group):
    """(file, pos) of the group's Redis checkpoint."""
    cp = stack.redis().hgetall("tor:{%s}:checkpoint" % group)
    return (cp.get(b"file", b"").decode(), int(cp.get(b"pos", 0)))


# ---------------------------------------------------------------------------
# 5. the broker aborts a transaction past transaction.timeout.ms


def test_broker_aborts_a_transaction_past_its_timeout(stack):
    """transaction.timeout.ms = 3000: tor's link to Kafka is cut (its lease
    in Redis stays valid) while its transaction is open with records in
    the log, until the broker aborts that transaction (the last stable
    offset moves past it).  Then the link is back: tor's next commit
    fails, it starts over from its last commit, and read_committed sees
    every event once and none of the aborted records."""
    stack.use_cluster()
    name = fresh("kc_txtimeout")
    proxy = stack.kafka_proxy()
    table, cfg = cluster_config(stack, name, mode="transactional",
                                brokers=proxy.brokers,
                                properties=["transaction.timeout.ms=3000"])
    tor = Tor(stack, cfg, name="r1").start()
    wait_leading([tor], timeout=20)
    tor.wait_log("starting at|resuming from", timeout=30)
    probe, feeder = steady_flow(stack, name, table)
    try:
        time.sleep(1.0)
        since = tor.log_size()
        offsets, attempts = hold_mid_transaction(
            lambda: proxy.blackhole(True), lambda: proxy.blackhole(False),
            probe)
        ranges = open_ranges(offsets)
        t_cut = time.monotonic()
        try:
            deadline = time.monotonic() + 15
            while set(open_ranges(probe.offsets())) & set(ranges):
                assert time.monotonic() < deadline, probe.offsets()
                time.sleep(0.1)
            t_abort = time.monotonic() - t_cut
            time.sleep(2.0)
        finally:
            proxy.blackhole(False)
            t_back = time.time()
        time.sleep(3.0)
        assert tor.running(), tor.log_tail()
    finally:
        feeder.stop()
        probe.close()
    total = feeder.finish()
    by_n, recs = read_committed_events(stack, name, total)
    uncommitted = read_both(stack, name, "read_uncommitted")
    assert tor.running(), tor.log_tail()
    log = tor.log_text()[since:]
    assert tor.stop() == 0, tor.log_tail()
    gone = aborted_in(ranges, recs, uncommitted)
    resumed = log_lines(tor, r"resuming from", since)
    fenced = log_lines(tor, r"-> stepping_down: Kafka fenced", since)
    print("  link cut after %d tries with %d records open over %d "
          "partitions; the broker aborted them %.1f s into the cut; link "
          "back 2 s later; tor %s, resuming %.0f ms after the link was "
          "back; %d records aborted, %d events each once" % (
              attempts, sum(hi - lo for lo, hi in ranges.values()),
              len(ranges), t_abort,
              "stepped down (fenced) and led again" if fenced else
              "started over in its leadership",
              (resumed[0][0] - t_back) * 1000 if resumed else -1,
              len(gone), total))
    print("  tor's log from the cut:\n" + "\n".join(
        "    " + ln for ln in log.splitlines()
        if "level=info" not in ln or "->" in ln or "resuming" in ln)[:6000])
    assert gone, "nothing aborted in %s" % ranges
    assert_exactly_once(by_n, total, name)
    check_per_key_order(recs)
    assert resumed, "tor did not start over:\n" + log
    # A session that starts over keeps its token, without taking its own
    # checkpoint for a sign that Redis lost its data.
    assert "is not above token" not in log, log
    # librdkafka reports the broker's abort as a fence: the step-down
    # must not blame only another replica, of which there is none here.
    for ln in log.splitlines():
        if "stepping_down" in ln and "fenced" in ln:
            assert "transaction.timeout.ms" in ln, ln


FOREIGN_TIMEOUT_MS = 6000


def test_takeover_behind_a_foreign_open_transaction(stack):
    """Another producer (its own transactional.id) writes to the checkpoint
    topic and leaves its transaction open: the last stable offset stays
    behind it.  The leader then commits a transaction (its position record
    lands past that offset) and dies before writing Redis, so only Kafka's
    copy knows the position.  The successor must read past the held-back
    offset to the end it saw (DESIGN.md §5): it waits until the broker
    aborts the other transaction (its transaction.timeout.ms, 6 s), then
    resumes from Kafka's copy, and read_committed sees each event once."""
    stack.use_cluster()
    name = fresh("kc_lso")
    topic = "kc_lso_checkpoints_" + secrets.token_hex(3)
    table, cfg = cluster_config(stack, name, mode="transactional",
                                checkpoint_topic=topic)
    doomed = Tor(stack, cfg, name="r1",
                 env={"TOR_TEST_CRASH_AFTER_KAFKA_COMMIT": "3"}).start()
    wait_leading([doomed], timeout=20)
    doomed.wait_log("starting at|resuming from", timeout=30)
    heir = Tor(stack, cfg, name="r2").start()
    heir.wait_log("follower: Redis answers", timeout=20)
    for burst in range(2):            # Kafka commits 1 and 2
        insert_range(stack, table, burst * 50, 50, 50)
        read_committed_events(stack, name, (burst + 1) * 50, timeout=30)
    foreign = Producer({"bootstrap.servers": stack.brokers,
                        "transactional.id": "kc-foreign-" +
                        secrets.token_hex(3),
                        "transaction.timeout.ms": FOREIGN_TIMEOUT_MS})
    foreign.init_transactions(30)
    foreign.begin_transaction()
    foreign.produce(topic, key=b"another-group", value=b"{}", partition=0)
    foreign.flush(10)
    t_open = time.time()
    since = heir.log_size()
    insert_range(stack, table, 100, 50, 50)  # commit 3, then the crash
    assert doomed.wait(20) == -9, doomed.log_tail()
    t_kill = log_lines(doomed, r"crashing after Kafka commit")[0][0]
    _, _, t_lead = wait_leading([heir], {heir: since}, timeout=20)
    heir.wait_log("resuming from", timeout=FOREIGN_TIMEOUT_MS / 1000 + 20,
                  since=since)
    t_resume, m, _, line = log_lines(heir, r"resuming from (.*?) at",
                                     since)[0]
    insert_range(stack, table, 150, 50, 50)
    by_n, recs = read_committed_events(stack, name, 200)
    assert heir.stop() == 0, heir.log_tail()
    del foreign
    print("  the other transaction opened %.1f s before the crash; the "
          "successor led %.0f ms after it and resumed from %s %.1f s after "
          "it, %.1f s after the other transaction opened (its timeout "
          "%.1f s)" % (t_kill - t_open, (t_lead - t_kill) * 1000,
                       m.group(1), t_resume - t_kill, t_resume - t_open,
                       FOREIGN_TIMEOUT_MS / 1000))
    assert_exactly_once(by_n, 200, name)
    check_per_key_order(recs)
    assert m.group(1) == "Kafka's copy of the checkpoint", line
    assert t_resume - t_open >= FOREIGN_TIMEOUT_MS / 1000 - 0.5, \
        "resumed %.1f s after the other transaction opened" % (
            t_resume - t_open)


# ---------------------------------------------------------------------------
# 7. the checkpoint topic


def test_checkpoint_topic_created_compacted_and_replicated(stack):
    """A missing checkpoint topic is created compacted, with one partition,
    on three replicas with min.insync.replicas 2 set on the topic itself.
    In transactional mode: init_transactions looks the topic up, which
    would have the broker auto-create it (delete policy, 4 partitions) if
    tor had not created it first."""
    stack.use_cluster()
    name = fresh("kc_cptopic")
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
    name = fresh("kc_cpcheck")
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
