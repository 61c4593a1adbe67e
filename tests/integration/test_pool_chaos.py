"""Chaos with a pool: three replicas share groups of both Kafka modes
(even groups transactional, odd ones idempotent, a source's `kafka = { mode
= ... }` override), writers insert into every group's table throughout, and
a seeded shuffle of faults hits the replicas, Redis and Kafka while the
balancer spreads the groups and hands them over.

Fault kinds (each undoes itself before the next starts):
  kill      kill -9 of a replica, started again 0.5-3 s later
  stop      SIGSTOP of a replica for lease_ms + 0.5-2 s, then SIGCONT
  drain     SIGTERM of a replica (its groups handed over; exit 0), started
            again 0.5-2 s later
  newcomer  a fourth replica started; once the others handed it groups
            (or 15 s passed) it is drained again
  redis     Redis stopped and started again (empty) 1-3 s later
  kafka     one node of the three-node cluster killed (-9), started again
            2-5 s later

Judged per group at the end, on what is read back from Kafka
(read_committed): every row published, per-key order, within a partition
no record of a lower token after a higher one (an idempotent group's
records of a leadership its replica held when paused are counted apart:
its producer sends what it had on the wire when it wakes, docs/promises.md
3), no duplicate in a transactional group; every group led again and no
replica above its share, ceil(G / 3) (within one of each other when G is
a multiple of three; else docs/pool-design.md §4's hysteresis keeps
spreads like 4, 4, 2, which the run prints); every drain exits 0; no replica
exits on its own; no sanitizer report, fatal line or halted group in any
log.  Duplicates of idempotent groups are counted per fault kind: the last
fault before the leadership that published the copy, "stop" for a paused
leader's residue, "resend" for a copy under the first one's token."""

import collections
import os
import random
import re
import secrets
import threading
import time

import harness
from harness import header
from test_ha import HA, Feeder, epoch_of, n_of, stop_all
from test_pool import Pool, spread

LEASE_S = HA["lease_ms"] / 1000
REPLICAS = ("r1", "r2", "r3")
NEWCOMER = "r4"
# What no replica may log, whatever the faults.
BAD_LOG = re.compile(r"level=fatal|halted \(the other groups go on\)|"
                     r"AddressSanitizer|LeakSanitizer|runtime error:")


def mode_of(i):
    return "transactional" if i % 2 == 0 else "idempotent"


def chaos_pool(stack, name, n):
    per = {i: {"kafka": {"mode": "idempotent"}} for i in range(n)
           if mode_of(i) == "idempotent"}
    return Pool(stack, name, n, per_source=per,
                kafka={"brokers": stack.brokers, "topics": [],
                       "mode": "transactional"},
                pool={"name": name + secrets.token_hex(2),
                      "settle_ms": 1000, "beat_ms": 200})


class LeaseWatch(threading.Thread):
    """Reads every group's lease every 50 ms.  .changes holds (monotonic
    time, group, (instance, token) or None) at each change; .current the
    last value read.  Redis errors (Redis stopped on purpose) are
    skipped."""

    def __init__(self, stack, groups):
        super().__init__(daemon=True)
        self.stack, self.groups = stack, groups
        self.changes, self.current = [], {}
        self._halt = threading.Event()

    def run(self):
        r = None
        keys = ["tor:{%s}:lease" % g for g in self.groups]
        while not self._halt.is_set():
            try:
                if r is None:
                    r = self.stack.redis()
                vals = r.mget(keys)
            except Exception:   # Redis down: try again
                r = None
                time.sleep(0.05)
                continue
            now = time.monotonic()
            for g, v in zip(self.groups, vals):
                cur = None
                if v is not None:
                    inst, tok = v.decode().rsplit(" ", 1)
                    cur = (inst, int(tok))
                if self.current.get(g, "unset") != cur:
                    self.changes.append((now, g, cur))
                    self.current[g] = cur
            time.sleep(0.05)

    def finish(self):
        self._halt.set()
        self.join(5)

    def led_by(self, name):
        return [(g, v[1]) for g, v in self.current.items()
                if v and v[0] == name]

    def token_start(self, group, token):
        for t, g, v in self.changes:
            if g == group and v and v[1] == token:
                return t
        return None

    def holder_at(self, group, t):
        cur = None
        for tt, g, v in self.changes:
            if tt > t:
                break
            if g == group:
                cur = v
        return cur

    def releds(self, name, t0):
        """Seconds from t0 until each group `name` led at t0 had another
        leadership (another holder, or a new token)."""
        out = []
        for g in self.groups:
            was = self.holder_at(g, t0)
            if not was or was[0] != name:
                continue
            for tt, gg, v in self.changes:
                if tt > t0 and gg == g and v is not None and v != was:
                    out.append(tt - t0)
                    break
        return out

    def unled_spells(self, end):
        """[(group, start, seconds)] of each time a group had no lease."""
        out, since = [], {}
        for t, g, v in self.changes:
            if v is None:
                since.setdefault(g, t)
            elif g in since:
                s = since.pop(g)
                out.append((g, s, t - s))
        for g, s in since.items():
            out.append((g, s, end - s))
        return out


class Chaos:
    def __init__(self, stack, pool, seed, kinds):
        self.stack, self.pool = stack, pool
        self.rng = random.Random(seed)
        self.kinds = list(kinds)
        self.tors = {n: pool.replica(n).start() for n in REPLICAS}
        self.watch = LeaseWatch(stack, [g for g, _, _ in pool.groups])
        self.faults = []        # {kind, target, t0, note}
        self.paused = collections.defaultdict(set)   # group -> tokens
        self.exits = []         # (name, exit code, log tail): on their own
        self.drain_rcs = []     # (name, exit code) of every SIGTERM

    def restart(self, name):
        self.tors[name] = self.pool.replica(name).start()

    def check_alive(self):
        for n in REPLICAS:
            t = self.tors[n]
            if not t.running():
                self.exits.append((n, t.wait(), t.log_tail(15)))
                self.restart(n)

    def drain(self, t):
        rc = t.stop(timeout=60)
        self.drain_rcs.append((t.name, rc))
        return rc

    def fault(self, kind):
        rng = self.rng
        name = rng.choice(REPLICAS)
        f = {"kind": kind, "target": name, "t0": time.monotonic()}
        if kind == "kill":
            self.tors[name].kill9()
            time.sleep(rng.uniform(0.5, 3))
            self.restart(name)
        elif kind == "stop":
            for g, tok in self.watch.led_by(name):
                self.paused[g].add(tok)
            self.tors[name].sigstop()
            time.sleep(LEASE_S + rng.uniform(0.5, 2))
            self.tors[name].sigcont()
        elif kind == "drain":
            f["note"] = "exit %s" % self.drain(self.tors[name])
            time.sleep(rng.uniform(0.5, 2))
            self.restart(name)
        elif kind == "newcomer":
            f["target"] = NEWCOMER
            # What the others lead above the share of four replicas: the
            # groups they must hand to the newcomer.
            c = collections.Counter(v[0] for v in self.watch.current.values()
                                    if v)
            share = -(-len(self.pool.groups) // 4)
            f["surplus"] = sum(max(0, c.get(n, 0) - share) for n in REPLICAS)
            t = self.pool.replica(NEWCOMER).start()
            deadline = time.monotonic() + 15
            while not self.watch.led_by(NEWCOMER) and \
                    time.monotonic() < deadline:
                time.sleep(0.1)
            took = len(self.watch.led_by(NEWCOMER))
            f["note"] = "surplus %d, took %d groups in %.1f s; exit %s" % (
                f["surplus"], took, time.monotonic() - f["t0"],
                self.drain(t))
            f["took"] = took
        elif kind == "redis":
            f["target"] = "redis"
            self.stack.stop("redis")
            time.sleep(rng.uniform(1, 3))
            self.stack.start("redis")
        elif kind == "kafka":
            node = rng.randint(1, 3)
            f["target"] = "kafka node %d" % node
            self.stack.kafka_ctl("kill", node)
            time.sleep(rng.uniform(2, 5))
            self.stack.kafka_ctl("start", node)
        else:
            raise ValueError(kind)
        f["t1"] = time.monotonic()
        print("  %6.1f s %-8s %-12s %s" % (
            f["t0"] - self.t_begin, kind, f["target"], f.get("note", "")),
            flush=True)
        self.faults.append(f)

    def run(self, duration, gap=(1.5, 4.0)):
        """Faults for `duration` seconds: every kind once per round, each
        round shuffled; a whole first round even past duration."""
        self.watch.start()
        self.t_begin = time.monotonic()
        done_round = False
        while not done_round or \
                time.monotonic() - self.t_begin < duration:
            kinds = list(self.kinds)
            self.rng.shuffle(kinds)
            for k in kinds:
                if done_round and \
                        time.monotonic() - self.t_begin >= duration:
                    break
                self.check_alive()
                time.sleep(self.rng.uniform(*gap))
                self.fault(k)
            done_round = True

    def kind_before(self, t):
        """The kind of the last fault started at or before t."""
        kind = "none"
        for f in self.faults:
            if f["t0"] <= t:
                kind = f["kind"]
        return kind


def wait_spread(pool, names, timeout=90):
    """Waits until every group is led by one of names and none leads more
    than its share, ceil(G / R) (docs/pool-design.md §4: 4, 4, 2 is a
    stable spread of ten groups on three replicas, nobody moves); returns
    (seconds, counts)."""
    t0 = time.monotonic()
    share = -(-len(pool.groups) // len(names))
    while True:
        h = pool.holders()
        counts = {n: spread(h).get(n, 0) for n in names}
        if all(v in names for v in h.values()) and \
                max(counts.values()) <= share:
            return time.monotonic() - t0, counts
        if time.monotonic() - t0 > timeout:
            raise AssertionError("not spread over %s (share %d) after %d s: "
                                 "%s" % (names, share, timeout, h))
        time.sleep(0.1)


def read_group(pool, i, total, timeout=90):
    """Group i's records (its topics may hold an earlier run's groups'),
    read until rows 0..total-1 are there or timeout."""
    group = pool.groups[i][0].encode()
    deadline = time.monotonic() + timeout
    while True:
        recs = [r for r in pool.read(i) if header(r, "tor.group") == group]
        seen = {n_of(r) for r in recs}
        if all(n in seen for n in range(total)) or \
                time.monotonic() > deadline:
            return recs
        time.sleep(0.3)


def judge(recs, total, transactional, paused, chaos, group):
    """One group's verdict from its records (every topic) and the number
    of rows written."""
    recs = sorted(recs, key=lambda r: (r.topic, r.partition, r.offset))
    by_n = collections.defaultdict(list)
    for r in recs:
        by_n[n_of(r)].append(r)
    v = {"rows": total, "records": len(recs),
         "lost": [n for n in range(total) if n not in by_n],
         "reordered": 0, "zombies": [], "residue": 0,
         "dups": collections.Counter()}
    # Where each key's rows went, to say what surrounds a lost row.
    v["neighbours"] = collections.defaultdict(list)
    for r in recs:
        v["neighbours"][r.key.decode()].append("%d:%s[%d]@%d/t%d" % (
            n_of(r), r.topic.rsplit(".", 1)[1], r.partition, r.offset,
            epoch_of(r)))
    last_n = {}
    for r in recs:
        n = n_of(r)
        if by_n[n][0] is not r:
            continue
        k = (r.topic, r.key)
        if last_n.get(k, -1) > n:
            v["reordered"] += 1
        last_n[k] = max(last_n.get(k, -1), n)
    top = {}
    for r in recs:
        p, e = (r.topic, r.partition), epoch_of(r)
        if e < top.get(p, 0):
            if not transactional and e in paused:
                v["residue"] += 1
            else:
                v["zombies"].append("%s[%d]@%d token %d after %d" % (
                    r.topic, r.partition, r.offset, e, top[p]))
        top[p] = max(top.get(p, 0), e)
    for n, rs in by_n.items():
        first = epoch_of(rs[0])
        for r in rs[1:]:
            e = epoch_of(r)
            if e == first:
                kind = "resend"
            elif e < first and e in paused:
                kind = "stop"       # the paused leader's residue
            else:
                t = chaos.watch.token_start(group, e)
                kind = chaos.kind_before(t) if t is not None else "unseen"
            v["dups"][kind] += 1
    return v


def pool_chaos(stack, name, n_groups, duration, kinds, seed, gap=(1.5, 4.0)):
    # Topics of their own, made before the first row: a topic Kafka
    # auto-creates at the first produce can lose that partition's first
    # record while the producer is told it was delivered (seen here on the
    # cluster: the first row of a new partition missing, read_uncommitted
    # too, in both modes; Kafka's KAFKA-15591), which is not tor's to judge.
    pool = chaos_pool(stack, "%s_%s" % (name, secrets.token_hex(2)),
                      n_groups)
    for _, _, prefix in pool.groups:
        for t in ("order", "invoice"):
            stack.create_topic("%s.%s" % (prefix, t), 4)
    groups = [g for g, _, _ in pool.groups]
    print("  %d groups (%s), seed %d, faults %s" % (
        n_groups, ", ".join("%d %s" % (c, m) for m, c in collections.Counter(
            mode_of(i) for i in range(n_groups)).items()), seed,
        ",".join(kinds)), flush=True)
    chaos = Chaos(stack, pool, seed, kinds)
    took, counts = wait_spread(pool, list(REPLICAS))
    print("  balanced %.1f s after the start: %s" % (took, counts))
    feeders = [Feeder(stack, table, 0, None, 5, 0.1)
               for _, table, _ in pool.groups]
    for f in feeders:
        f.start()
    try:
        chaos.run(duration, gap)
    finally:
        for f in feeders:
            f.stop()
    totals = [f.finish() for f in feeders]
    t_end = time.monotonic()
    chaos.check_alive()
    took, counts = wait_spread(pool, list(REPLICAS))
    chaos.watch.finish()
    print("  faults over: every group led, spread %s (%s), %.1f s after "
          "the writers stopped" % (
              counts, "within one" if max(counts.values()) -
              min(counts.values()) <= 1 else "not within one",
              time.monotonic() - t_end))

    verdicts = {}
    for i, g in enumerate(groups):
        recs = read_group(pool, i, totals[i])
        verdicts[g] = judge(recs, totals[i], mode_of(i) == "transactional",
                            chaos.paused[g], chaos, g)
    print("  group                 mode           rows  records  lost "
          "reord zomb resid  dups")
    for i, g in enumerate(groups):
        v = verdicts[g]
        print("  %-21s %-13s %6d %8d %5d %5d %4d %5d  %s" % (
            g, mode_of(i), v["rows"], v["records"], len(v["lost"]),
            v["reordered"], len(v["zombies"]), v["residue"],
            dict(v["dups"]) or 0))
    spells = chaos.watch.unled_spells(time.monotonic())
    changes = [(t, g) for t, g, v in chaos.watch.changes if v is not None]
    print("  kind      runs  leader changes  longest unled (s)  "
          "slowest re-led (s)  dups")
    for kind in kinds:
        fs = [f for f in chaos.faults if f["kind"] == kind]
        ends = {id(f): (chaos.faults[chaos.faults.index(f) + 1]["t0"]
                        if f is not chaos.faults[-1] else t_end) for f in fs}
        n_ch = sum(1 for f in fs for t, _ in changes
                   if f["t0"] <= t < ends[id(f)])
        unled = max([(s, g, t - chaos.t_begin) for f in fs
                     for g, t, s in spells if f["t0"] <= t < ends[id(f)]] or
                    [(0, "", 0)])
        reled = [s for f in fs for s in chaos.watch.releds(f["target"],
                                                           f["t0"])]
        dups = sum(v["dups"][kind] for v in verdicts.values())
        print("  %-9s %4d %15d %18.2f %19s %5d" % (
            kind, len(fs), n_ch, unled[0],
            "%.2f" % max(reled) if reled else "-", dups))
        if unled[0] >= LEASE_S:
            print("            %s unled %.2f s from %.1f s" % (
                unled[1], unled[0], unled[2]))
    print("  every group's rows: %d; hand-overs to a newcomer: %s" % (
        sum(totals), [f.get("took") for f in chaos.faults
                      if f["kind"] == "newcomer"]))

    stop_all([chaos.tors[n] for n in REPLICAS], timeout=60)
    bad = []
    for t in harness.started_tors():
        for line in t.log_text().splitlines():
            if BAD_LOG.search(line):
                bad.append("%s: %s" % (t.name, line[:300]))
    assert not chaos.exits, "replicas exited on their own: %s" % (
        chaos.exits,)
    assert all(rc == 0 for _, rc in chaos.drain_rcs), chaos.drain_rcs
    assert not bad, "%d bad log lines, first:\n%s" % (len(bad),
                                                      "\n".join(bad[:10]))
    for i, g in enumerate(groups):
        v = verdicts[g]
        for n in v["lost"][:3]:
            print("  %s lost row %d (key k%d); that key's records: %s" % (
                g, n, n % 37, v["neighbours"].get("k%d" % (n % 37))))
        assert not v["lost"], "group %s lost %d of %d rows, first %s" % (
            g, len(v["lost"]), v["rows"], v["lost"][:10])
        assert v["reordered"] == 0, "group %s: %d rows out of key order" % (
            g, v["reordered"])
        assert not v["zombies"], "group %s: %s" % (g, v["zombies"][:5])
        if mode_of(i) == "transactional":
            assert not v["dups"], "transactional group %s: duplicates %s" % (
                g, dict(v["dups"]))
    for f in chaos.faults:
        if f["kind"] == "newcomer" and f["surplus"]:
            assert f["took"] >= 1, "a newcomer got no group in 15 s: %s" % (
                f["note"],)
    return verdicts, chaos


def test_pool_chaos_short(stack):
    """Three replicas, seven groups (four transactional, three idempotent:
    3, 2, 2 over three replicas, so a newcomer's share of 2 takes one) on
    one Kafka node,
    one round of replica faults (kill -9, SIGSTOP past the lease, a drain,
    a newcomer) under writes."""
    pool_chaos(stack, "pc_short", 7, 0, ["kill", "stop", "drain", "newcomer"],
               seed=1, gap=(1.0, 2.0))


@harness.long_test("test_pool_chaos_short: one round of the replica faults "
                   "with seven groups on one Kafka node")
def test_pool_chaos_cluster(stack):
    """Three replicas, ten groups (five of each mode) on the three-node
    cluster, 90 s of every fault kind: the replicas', Redis's and a Kafka
    node's.  TOR_POOL_CHAOS_SEED picks another schedule (default 7)."""
    stack.use_cluster()
    pool_chaos(stack, "pc_long", 10, 90,
               ["kill", "stop", "drain", "newcomer", "redis", "kafka"],
               seed=int(os.environ.get("TOR_POOL_CHAOS_SEED", "7")))


def auto_created_topics_start(stack, name, rounds):
    """Three replicas of ten idempotent groups start at once, and each
    group's first rows go to two topics that do not exist yet (Kafka
    creates them on the first produce), its position records to a
    checkpoint topic that does not exist either (kafka.checkpoint_topic,
    new each round).  Up to `rounds` rounds, until a group halts; returns
    the halted-group lines of the replicas' logs."""
    halted, lost, restarts = [], 0, 0
    for k in range(rounds):
        pool = Pool(stack, "%s%d" % (name, k), 10,
                    kafka={"brokers": stack.brokers, "topics": [],
                           "mode": "idempotent",
                           "checkpoint_topic": "%s_cp_%s" % (
                               name, secrets.token_hex(3))},
                    pool={"name": name + secrets.token_hex(2),
                          "settle_ms": 1000, "beat_ms": 200})
        tors = [pool.replica(n).start() for n in REPLICAS]
        pool.wait_held(set(REPLICAS), timeout=60)
        for i in range(10):
            pool.insert(i, 0, 20, per_txn=5)
        for i in range(10):
            seen = {n_of(r) for r in read_group(pool, i, 20, timeout=30)}
            assert seen == set(range(20)), "round %d group %d: %d of 20" % (
                k, i, len(seen))
        lines = [l for t in tors for l in t.log_text().splitlines()]
        halted = [l for l in lines if "halted (the other groups go on)" in l]
        lost += sum("partition count changed from" in l for l in lines)
        restarts += sum("metadata lost its partition" in l for l in lines)
        stop_all(tors)
        if halted:
            print("  round %d of %d: %d groups halted" % (k + 1, rounds,
                                                          len(halted)))
            break
    print("  %d rounds; librdkafka saw a partition count drop %d times, "
          "%d sessions started over for it" % (k + 1, lost, restarts))
    return halted


@harness.long_test("58 s on the three-node cluster; test_pool_chaos_short "
                   "runs the pool's faults in make test")
def test_auto_created_topics_on_the_cluster_halt_no_group(stack):
    """Topics auto-created on the first produce on the three-node cluster:
    a broker that does not know a new topic yet answers the producer's
    metadata request, and librdkafka 2.0.2 then takes the topic for one of
    no partitions ("partition count changed from 4 to 0") and fails what it
    had queued for them (Local: Unknown partition, or Broker handle
    destroyed).  No group may halt for that: the leader starts over from
    its checkpoint with a new producer."""
    stack.use_cluster()
    halted = auto_created_topics_start(stack, "pc_newtop", 3)
    for l in halted[:3]:
        print("  " + l[:400])
    assert not halted, "a group halted at its first rows: %s" % (halted[0],)
