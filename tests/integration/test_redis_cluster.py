"""Redis Cluster as the lease store (DESIGN.md §3): every key of a group
carries the hash tag {<group>}, so one slot holds the group; tor finds the
node that serves it and follows the cluster's MOVED and ASK redirections.

Each test starts the optional redis-cluster service of deploy/local/stack.sh
(three masters, one replica each, cluster-node-timeout 1000 ms) and stops it
at the end, pass or fail.  The replicas' configs name one seed node only,
and never the node that serves the group's slot, so tor has to be sent
there.  Outcomes are judged where they land: the messages read back from
Kafka with their token header (tor.epoch), the lease and checkpoint on
whatever node serves the slot, and the replicas' logs.
"""

import os
import re
import signal
import subprocess
import threading
import time

from confluent_kafka import OFFSET_END, TopicPartition

import harness
from test_ha import (HA, Feeder, assert_none_lost, check_tokens_grow,
                     epoch_of, lease_key, leader_now, log_lines,
                     read_all_events, start_replicas, stop_all,
                     wait_leading)
from test_relay import check_per_key_order, insert_range, make_outbox
from test_sentinel import overlaps

SERVED = r"cluster slot (\d+) \(group [^)]*\) is served by ([\d.]+):(\d+)"
FOLLOWING = (r"following cluster slot (\d+) \(group [^)]*\) to "
             r"([\d.]+):(\d+), was ([\d.]+):(\d+) \((MOVED|CLUSTER SLOTS)")


# ---------------------------------------------------------------------------
# helpers


def cli(port, *args, check=True):
    p = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port)] +
                       [str(a) for a in args], capture_output=True,
                       text=True, timeout=15)
    if check:
        assert p.returncode == 0 and not p.stdout.startswith("ERR"), \
            (args, p.stdout, p.stderr)
    return p.stdout.strip()


class Cluster:
    """The redis-cluster service for the length of a `with` block."""

    def __init__(self, stack):
        self.stack = stack

    def __enter__(self):
        try:
            self.stack.start("redis-cluster")
            env = self.stack.env
            self.nodes = env["TOR_REDIS_CLUSTER_NODES"].split(",")
            self.dir = env["TOR_REDIS_CLUSTER_DIR"]
        except BaseException:
            self.stack.stop("redis-cluster")
            raise
        self.ports = [int(n.rsplit(":", 1)[1]) for n in self.nodes]
        assert self.ports[0] == self.stack.redis_port + 200, self.ports
        return self

    def __exit__(self, *exc):
        harness.kill_all_tors()
        self.stack.stop("redis-cluster")
        return False

    def live(self):
        return [p for p in self.ports if cli(p, "ping", check=False) ==
                "PONG"]

    def slot(self, group):
        return int(cli(self.ports[0], "cluster", "keyslot", "{%s}" % group))

    def node_id(self, port):
        return cli(port, "cluster", "myid")

    def owner(self, slot, ask=None):
        """The port of the master that serves slot, as node ask (default
        the first live node) sees it."""
        out = cli(ask or self.live()[0], "cluster", "nodes")
        for line in out.splitlines():
            f = line.split()
            if "master" not in f[2] or "fail" in f[2]:
                continue
            for r in f[8:]:
                if r.startswith("["):
                    continue
                lo, _, hi = r.partition("-")
                if int(lo) <= slot <= int(hi or lo):
                    return int(f[1].split("@")[0].rsplit(":", 1)[1])
        return None

    def masters(self):
        out = cli(self.live()[0], "cluster", "nodes")
        return sorted(int(f[1].split("@")[0].rsplit(":", 1)[1])
                      for f in (ln.split() for ln in out.splitlines())
                      if "master" in f[2] and "fail" not in f[2])

    def replica_of(self, port):
        mid = self.node_id(port)
        out = cli(port, "cluster", "nodes")
        for line in out.splitlines():
            f = line.split()
            if f[3] == mid:
                return int(f[1].split("@")[0].rsplit(":", 1)[1])
        raise AssertionError("no replica of %d:\n%s" % (port, out))

    def other_master(self, slot):
        """A master that does not serve slot: the seed tor is given."""
        own = self.owner(slot)
        return [p for p in self.masters() if p != own][0]

    def redis(self, port):
        return harness.redis_lib.Redis(host="127.0.0.1", port=port,
                                       socket_timeout=5)

    def pid(self, port):
        with open(os.path.join(self.dir, "node-%d.pid" % port)) as f:
            return int(f.read().strip())


def cluster_config(stack, name, group, seeds, ha=None):
    table, ov = make_outbox(stack, name)
    cfg = harness.base_config(
        stack, group=group, redis=harness.cfg_value({"cluster": {"nodes": [
            "127.0.0.1:%d" % p for p in seeds]}}),
        ha=dict(HA, **(ha or {})), checkpoint={"interval_ms": 200}, **ov)
    assert harness.config_group(cfg) == group, cfg
    assert "host" not in cfg.split("redis = ", 1)[1].split("ha = ", 1)[0], \
        cfg
    return table, cfg


def lease_at(c, port, group):
    v = c.redis(port).get(lease_key(group))
    if v is None:
        return None
    inst, tok = v.decode().rsplit(" ", 1)
    return inst, int(tok)


def checkpoint_at(c, port, group):
    h = c.redis(port).hgetall("tor:{%s}:checkpoint" % group)
    return {k.decode(): v.decode() for k, v in h.items()}


def wait_checkpoint(c, port, group, timeout=30):
    deadline = time.monotonic() + timeout
    while not checkpoint_at(c, port, group).get("gtid"):
        assert time.monotonic() < deadline, "no checkpoint on %d" % port
        time.sleep(0.1)


def started(c, stack, name, replicas=("r1", "r2"), ha=None):
    """A table, two replicas seeded with a master that does not serve the
    group's slot, one of them leading; returns (table, cfg, group, slot,
    owner, tors)."""
    group = harness.unique_group()
    slot = c.slot(group)
    owner = c.owner(slot)
    seed = c.other_master(slot)
    table, cfg = cluster_config(stack, name, group, [seed], ha)
    tors = start_replicas(stack, cfg, list(replicas))
    wait_leading(tors, timeout=20)
    for t in tors:
        t.wait_log(r"cluster slot %d \(group %s\) is served by "
                   r"127\.0\.0\.1:%d \(CLUSTER SLOTS of 127\.0\.0\.1:%d\)" % (
                       slot, re.escape(group), owner, seed), timeout=15)
    return table, cfg, group, slot, owner, tors


def token_never_down(recs):
    """Tokens (tor.epoch) never go down within a partition, and the
    records all carry one."""
    assert all(epoch_of(r) > 0 for r in recs)
    check_tokens_grow(recs)


class Arrivals(threading.Thread):
    """Reads the test's two topics as tor publishes and notes when each
    record arrives (the records' own timestamps are the binlog's, in whole
    seconds); .gap() is the longest wait between two arrivals."""

    def __init__(self, stack, name):
        super().__init__(daemon=True)
        self.c = harness._consumer(stack.brokers, "read_uncommitted")
        parts = []
        for topic in (name + ".order", name + ".invoice"):
            parts += [TopicPartition(topic, p, OFFSET_END)
                      for p in harness._partitions(self.c, topic, 20,
                                                   wait=True)]
        self.c.assign(parts)
        self.times = []
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            for m in self.c.consume(500, 0.05):
                if not m.error():
                    self.times.append(time.time())

    def finish(self):
        self._halt.set()
        self.join(5)
        self.c.close()

    def gap(self, since, until):
        """(ms, seconds after since) of the longest wait between arrivals
        from since to until (epoch seconds)."""
        ts = [since] + [t for t in self.times if since <= t <= until] + [
            until]
        gap, at = max((b - a, a) for a, b in zip(ts, ts[1:]))
        return gap * 1000, at - since


def no_two_leaders(tors):
    """No two leaderships overlap, and no token was won twice (a promoted
    replica that lacked the epoch would hand one out again)."""
    both = [o for o in overlaps(tors) if o[2] > 0]
    assert not both, "two leaders at once: %s" % both
    won = [(int(m.group(1)), t.name) for t in tors
           for _, m, _, _ in log_lines(t, r"acquired the lease \(token (\d+)")]
    tokens = [tok for tok, _ in won]
    assert len(tokens) == len(set(tokens)), "a token won twice: %s" % won


# ---------------------------------------------------------------------------
# tests


def test_cluster_leads_from_another_node(stack):
    """Seeded with a master that does not serve the group's slot, tor asks
    it CLUSTER SLOTS, leads on the slot's master and publishes; the lease
    and the checkpoint are on that master."""
    with Cluster(stack) as c:
        table, cfg, group, slot, owner, tors = started(c, stack, "rc_lead")
        insert_range(stack, table, 0, 300, 10)
        by_n, recs = read_all_events(stack, "rc_lead", 300, group=group)
        assert_none_lost(by_n, 300)
        check_per_key_order(recs)
        token_never_down(recs)
        cur = lease_at(c, owner, group)
        leaders = [t.name for t in leader_now(tors)]
        assert cur is not None and leaders == [cur[0]], (cur, leaders)
        wait_checkpoint(c, owner, group)
        assert {epoch_of(r) for r in recs} == {cur[1]}
        print("  slot %d served by %d, tor seeded with another master: "
              "300 events published under token %d" % (slot, owner, cur[1]))
        stop_all(tors)


def test_cluster_kill9_leader_standby_takes_over(stack):
    """kill -9 of the leader: the standby takes the lease over on the
    slot's master and resumes from the checkpoint there; nothing is lost
    and the token goes up."""
    with Cluster(stack) as c:
        table, cfg, group, slot, owner, tors = started(c, stack, "rc_kill")
        insert_range(stack, table, 0, 200, 10)
        read_all_events(stack, "rc_kill", 200, group=group)
        wait_checkpoint(c, owner, group)
        leader = leader_now(tors)[0]
        other = [t for t in tors if t is not leader][0]
        old = lease_at(c, owner, group)
        since = {other: other.log_size()}
        feeder = Feeder(stack, table, 200, None, 10, 0.02)
        feeder.start()
        t0 = time.time()
        leader.kill9()
        _, tok, ts = wait_leading([other], since=since, timeout=20)
        time.sleep(1.0)
        feeder.stop()
        total = feeder.finish()
        by_n, recs = read_all_events(stack, "rc_kill", total, group=group)
        assert_none_lost(by_n, total)
        check_per_key_order(recs)
        token_never_down(recs)
        assert tok > old[1], (tok, old)
        assert lease_at(c, owner, group) == (other.name, tok)
        print("  kill -9 of %s (token %d): %s leads with token %d after "
              "%.0f ms; %d events, %d records" % (
                  leader.name, old[1], other.name, tok, (ts - t0) * 1000,
                  total, len(recs)))
        stop_all([other])


def failover_under_writes(stack, name, trigger):
    """Two replicas relay a steady stream; trigger(c, owner) fails the
    slot's master over to its replica.  Asserts that the leader (or its
    successor) follows the new master, nothing is lost, order is kept,
    tokens never go down, and no two leaderships overlap."""
    with Cluster(stack) as c:
        table, cfg, group, slot, owner, tors = started(c, stack, name)
        replica = c.replica_of(owner)
        feeder = Feeder(stack, table, 0, None, 10, 0.02)
        feeder.start()
        try:
            wait_checkpoint(c, owner, group)
            arrivals = Arrivals(stack, name)
            arrivals.start()
            time.sleep(1.0)
            since = {t: t.log_size() for t in tors}
            t0 = time.time()
            trigger(c, owner)
            deadline = time.monotonic() + 20
            while c.owner(slot, ask=replica) != replica:
                assert time.monotonic() < deadline, "no failover in 20 s"
                time.sleep(0.05)
            t_promoted = time.time() - t0
            # One leader again, renewing on the new master.
            prev = None
            while True:
                cur = lease_at(c, replica, group)
                ttl = c.redis(replica).pttl(lease_key(group))
                leaders = [t.name for t in leader_now(tors)]
                if (cur is not None and prev is not None and
                        (cur != prev[0] or ttl > prev[1] + 50) and
                        leaders == [cur[0]]):
                    break
                prev = (cur, ttl) if cur is not None else None
                assert time.monotonic() < deadline, (cur, ttl, leaders)
                time.sleep(0.05)
            t_leader = time.time() - t0
            follow = []
            for t in tors:
                t.wait_log(r"following cluster slot %d \(group %s\) to "
                           r"127\.0\.0\.1:%d, was 127\.0\.0\.1:%d" % (
                               slot, re.escape(group), replica, owner),
                           timeout=15, since=since[t])
                follow.append("%s %.0f" % (t.name, (log_lines(
                    t, FOLLOWING, since[t])[0][0] - t0) * 1000))
            time.sleep(2.0)
        finally:
            feeder.stop()
            arrivals.finish()
        total = feeder.finish()
        by_n, recs = read_all_events(stack, name, total, timeout=90,
                                     group=group)
        assert_none_lost(by_n, total)
        check_per_key_order(recs)
        token_never_down(recs)
        no_two_leaders(tors)
        # The checkpoint goes on under the leader's token on the new
        # master.
        cur = lease_at(c, replica, group)
        deadline = time.monotonic() + 10
        while checkpoint_at(c, replica, group).get("epoch") != str(cur[1]):
            assert time.monotonic() < deadline, checkpoint_at(c, replica,
                                                              group)
            time.sleep(0.1)
        tokens = sorted({epoch_of(r) for r in recs})
        gap, at = arrivals.gap(t0, t0 + t_leader + 1.0)
        print("  slot %d: %d -> %d promoted after %.0f ms; replicas "
              "followed after %s ms; one leader (%s, token %d) renewing "
              "there after %.0f ms; longest publishing gap %.0f ms from "
              "+%.0f ms; tokens %s; %d events, %d records" % (
                  slot, owner, replica, t_promoted * 1000, ", ".join(follow),
                  cur[0], cur[1], t_leader * 1000, gap, at * 1000, tokens,
                  total, len(recs)))
        stop_all(tors)
        return c


@harness.long_test(
    "test_cluster_master_killed_under_writes shows a failover of the "
    "slot's master")
def test_cluster_manual_failover_under_writes(stack):
    """CLUSTER FAILOVER on the replica of the group's slot: the old master
    becomes a replica and answers MOVED; tor follows."""
    def manual(c, owner):
        assert cli(c.replica_of(owner), "cluster", "failover") == "OK"
    failover_under_writes(stack, "rc_manual", manual)


def test_cluster_master_killed_under_writes(stack):
    """kill -9 of the slot's master: the cluster is down for the slot
    until the replica is promoted (cluster-node-timeout 1000 ms); tor
    rediscovers the slot from its seed and follows."""
    def kill(c, owner):
        os.kill(c.pid(owner), signal.SIGKILL)
    failover_under_writes(stack, "rc_killed", kill)


class Migration(threading.Thread):
    """Moves slot from src to dst as redis-cli --cluster reshard does,
    holding each phase for hold seconds: IMPORTING/MIGRATING (tor gets ASK
    for the keys not there yet), MIGRATE of every key of the slot (now ASK
    for all of them), then SETSLOT NODE everywhere (MOVED)."""

    def __init__(self, c, slot, src, dst, hold):
        super().__init__(daemon=True)
        self.c, self.slot, self.src, self.dst = c, slot, src, dst
        self.hold = hold
        self.marks = {}
        self.error = None

    def run(self):
        try:
            c, slot, src, dst = self.c, self.slot, self.src, self.dst
            sid, did = c.node_id(src), c.node_id(dst)
            self.marks["start"] = time.time()
            cli(dst, "cluster", "setslot", slot, "importing", sid)
            cli(src, "cluster", "setslot", slot, "migrating", did)
            time.sleep(self.hold)
            keys = cli(src, "cluster", "getkeysinslot", slot,
                       1000).split()
            self.marks["keys"] = keys
            self.marks["migrate"] = time.time()
            if keys:
                assert cli(src, "migrate", "127.0.0.1", dst, "", 0, 5000,
                           "keys", *keys) == "OK"
            time.sleep(self.hold)
            self.marks["node"] = time.time()
            for p in [dst, src] + [p for p in c.masters()
                                   if p not in (src, dst)]:
                cli(p, "cluster", "setslot", slot, "node", did)
            self.marks["end"] = time.time()
        except BaseException as e:
            self.error = e


def migrate_under_load(stack, name, ha=None):
    """The group's slot migrates to another master under a steady stream:
    the ASK phase (keys on the source, then on the target) and then MOVED.
    tor keeps leading or fails over cleanly: nothing lost, order kept,
    tokens never down, no two leaders; the lease ends up on the target.
    Returns the tokens the records carry."""
    with Cluster(stack) as c:
        table, cfg, group, slot, owner, tors = started(c, stack, name,
                                                       ha=ha)
        dst = c.other_master(slot)
        feeder = Feeder(stack, table, 0, None, 10, 0.02)
        feeder.start()
        try:
            wait_checkpoint(c, owner, group)
            arrivals = Arrivals(stack, name)
            arrivals.start()
            time.sleep(1.0)
            since = {t: t.log_size() for t in tors}
            mig = Migration(c, slot, owner, dst, hold=1.5)
            mig.start()
            mig.join(30)
            assert not mig.is_alive() and mig.error is None, mig.error
            assert c.owner(slot) == dst
            moved = []
            for t in tors:
                t.wait_log(r"following cluster slot %d \(group %s\) to "
                           r"127\.0\.0\.1:%d, was 127\.0\.0\.1:%d \(MOVED\)" % (
                               slot, re.escape(group), dst, owner),
                           timeout=15, since=since[t])
                lines = log_lines(t, FOLLOWING, since[t])
                moved.append((t.name, lines[0][0] - mig.marks["node"]))
            time.sleep(2.0)
        finally:
            feeder.stop()
            arrivals.finish()
        total = feeder.finish()
        by_n, recs = read_all_events(stack, name, total, timeout=90,
                                     group=group)
        assert_none_lost(by_n, total)
        check_per_key_order(recs)
        token_never_down(recs)
        no_two_leaders(tors)
        cur = lease_at(c, dst, group)
        assert cur is not None and [t.name for t in leader_now(tors)] == \
            [cur[0]], cur
        assert cli(owner, "cluster", "countkeysinslot", slot) == "0"
        # Every key of the group went along: the checkpoint was never
        # missing while the slot was migrating (a script that failed there
        # half-way would have deleted it), and no write failed for it.
        assert "tor:{%s}:checkpoint" % group in mig.marks["keys"], \
            mig.marks["keys"]
        for t in tors:
            assert not log_lines(t, "non local key"), t.log_tail(30)
        gap, at = arrivals.gap(mig.marks["start"], mig.marks["end"] + 1.0)
        marks = ", ".join("%s +%.0f" % (k, (mig.marks[k] - mig.marks[
            "start"]) * 1000) for k in ("migrate", "node", "end"))
        tokens = sorted({epoch_of(r) for r in recs})
        print("  slot %d (%d keys) %d -> %d: ASK phases %.0f + %.0f ms; "
              "MOVED followed %s ms after SETSLOT NODE; longest publishing "
              "gap during the migration %.0f ms from +%.0f ms (%s); tokens "
              "%s; %d events, %d records" % (
                  slot, len(mig.marks["keys"]), owner, dst,
                  (mig.marks["migrate"] - mig.marks["start"]) * 1000,
                  (mig.marks["node"] - mig.marks["migrate"]) * 1000,
                  ", ".join("%s %.0f" % (n, d * 1000) for n, d in moved),
                  gap, at * 1000, marks, tokens, total, len(recs)))
        stop_all(tors)
        return tokens


def test_cluster_slot_migration_under_load(stack):
    migrate_under_load(stack, "rc_migrate")


@harness.long_test(
    "test_cluster_slot_migration_under_load shows a migration, with fast "
    "failover on")
def test_cluster_slot_migration_no_fast_failover(stack):
    """As above with ha.fast_failover off, where the lease has no client
    record key: the leader renews through both ASK phases and keeps the
    lease (one token)."""
    tokens = migrate_under_load(stack, "rc_migrate_nff",
                                ha={"fast_failover": False})
    assert tokens == [1], tokens
