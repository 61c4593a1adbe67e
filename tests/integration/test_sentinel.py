"""Redis behind Sentinel (DESIGN.md §3, §6): tor finds the master through
the Sentinels, keeps its lease and checkpoint there, and follows a failover.

Each test starts the optional sentinel service of deploy/local/stack.sh (a
replica of the stack's Redis and three Sentinels watching it as "mymaster")
and stops it at the end, pass or fail; stopping it also makes the stack's
Redis a master again after a failover, so the tests after these find the
stack as it was.  The replicas' configs name no redis.host: only the
Sentinels.  Outcomes are judged where they land: the messages read back
from Kafka, the lease and checkpoint on whatever server the Sentinels call
the master, and the replicas' logs.  The first test's Sentinels take no
unauthenticated client (stack.sh TOR_SENTINEL_ACL=1): tor authenticates to
them as an ACL user of their own.
"""

import os
import signal
import subprocess
import time

import harness
from harness import Tor
from proxy import Proxy
from test_ha import (Feeder, HA, assert_none_lost, check_tokens_grow,
                     lease_key, leader_now, log_lines, read_all_events,
                     start_replicas, stop_all, wait_leading)
from test_relay import insert_range, make_outbox

MASTER = "mymaster"


# ---------------------------------------------------------------------------
# helpers


class Sentinels:
    """The sentinel service for the length of a `with` block."""

    def __init__(self, stack, acl=False):
        self.stack = stack
        self.acl = acl

    def __enter__(self):
        try:
            self.stack.start("sentinel", env={"TOR_SENTINEL_ACL": "1"}
                             if self.acl else None)
            env = self.stack.env
            self.master = env["TOR_SENTINEL_MASTER"]
            self.nodes = env["TOR_SENTINEL_NODES"].split(",")
        except BaseException:
            self.stack.stop("sentinel")
            raise
        assert self.master == MASTER, self.master
        return self

    def __exit__(self, *exc):
        # Replicas first: a replica left running would log a failed
        # rediscovery for every service we take away under it.
        harness.kill_all_tors()
        self.stack.stop("sentinel")
        return False

    def ports(self):
        return [int(n.rsplit(":", 1)[1]) for n in self.nodes]

    def cli(self, node):
        auth = ["--user", "stack", "--pass", "stack-secret",
                "--no-auth-warning"] if self.acl else []
        return ["redis-cli", "-h", "127.0.0.1", "-p",
                str(self.ports()[node])] + auth

    def master_addr(self, node=0):
        """(host, port) of the master as the node-th Sentinel names it."""
        p = subprocess.run(self.cli(node) + ["sentinel",
                                             "get-master-addr-by-name",
                                             self.master],
                           capture_output=True, text=True, timeout=10)
        host, port = p.stdout.split()
        return host, int(port)

    def master_redis(self):
        host, port = self.master_addr()
        return harness.redis_lib.Redis(host=host, port=port,
                                       socket_timeout=5)

    def failover(self):
        """SENTINEL FAILOVER on the first Sentinel, by redis-cli."""
        p = subprocess.run(self.cli(0) + ["sentinel", "failover",
                                          self.master],
                           capture_output=True, text=True, timeout=10)
        assert p.stdout.strip() == "OK", (p.stdout, p.stderr)

    def redis_section(self, **auth):
        """The redis section of a replica's config: Sentinels, no host."""
        return harness.cfg_value({"sentinel": dict(
            {"master": self.master, "nodes": list(self.nodes)}, **auth)})


def sentinel_config(stack, sen, name, **auth):
    table, ov = make_outbox(stack, name)
    cfg = harness.base_config(stack, redis=sen.redis_section(**auth),
                              ha=dict(HA),
                              checkpoint={"interval_ms": 200}, **ov)
    assert "host" not in cfg.split("redis = ", 1)[1].split("ha = ", 1)[0], \
        cfg
    return table, cfg


def lease_on(r, group):
    """(instance, token) of the lease on Redis connection r, or None."""
    v = r.get(lease_key(group))
    if v is None:
        return None
    inst, tok = v.decode().rsplit(" ", 1)
    return inst, int(tok)


def checkpoint_on(r, group):
    h = r.hgetall("tor:{%s}:checkpoint" % group)
    return {k.decode(): v.decode() for k, v in h.items()}


# ---------------------------------------------------------------------------
# tests


def test_relays_through_sentinel(stack):
    """Through Sentinels that take no unauthenticated client: with
    redis.sentinel.user/password (an ACL user that may only AUTH, PING and
    ask for the master) the replica finds the master and relays; without
    them, or with a wrong password, it says which Sentinels refused and
    never leads."""
    name = "sen_relay"
    total = 300
    with Sentinels(stack, acl=True) as sen:
        table, cfg = sentinel_config(stack, sen, name, user="tor",
                                     password="tor-sentinel-secret")
        group = harness.config_group(cfg)
        tor = Tor(stack, cfg).start()
        host, port = sen.master_addr()
        tor.wait_log(r"component=redis .*master %s is %s:%d \(via sentinel "
                     r"127\.0\.0\.1:\d+\)" % (MASTER, host, port), timeout=30)
        leader, token, _ = wait_leading([tor], timeout=15)
        assert "Sentinel discovery is not built" not in tor.log_text()

        insert_range(stack, table, 0, total, 30)
        by_n, _ = read_all_events(stack, name, total)
        assert_none_lost(by_n, total)
        dups = sorted(n for n, rs in by_n.items() if len(rs) > 1)
        assert not dups, "duplicated events %s" % dups[:10]

        # Lease and checkpoint are on the master the Sentinels name.
        m = sen.master_redis()
        assert lease_on(m, group) == (tor.name, token), lease_on(m, group)
        deadline = time.monotonic() + 10
        while True:
            cp = checkpoint_on(m, group)
            if cp.get("epoch") == str(token) and cp.get("gtid"):
                break
            assert time.monotonic() < deadline, "checkpoint on master: %r" % cp
            time.sleep(0.1)
        # The master has a replica: the acquire waited for it (WAIT ran on
        # the master), and quietly.
        waits = m.info("commandstats").get("cmdstat_wait", {}).get("calls", 0)
        assert waits >= 1, m.info("commandstats")
        assert not log_lines(tor, r"confirmed the lease|WAIT for a replica"), \
            tor.log_tail()
        assert tor.stop() == 0, tor.log_tail()

        for auth, says in [({}, "NOAUTH"),
                           ({"user": "tor", "password": "wrong"},
                            "WRONGPASS")]:
            _, cfg = sentinel_config(stack, sen, name + "_bad", **auth)
            bad = Tor(stack, cfg, name="bad").start()
            bad.wait_log(says, timeout=20)
            text = bad.log_text()
            assert "sentinels 127.0.0.1:" in text, bad.log_tail()
            assert "-> leader" not in text, bad.log_tail()
            bad.kill9()


def failover_mid_stream(stack, name, trigger):
    """Two replicas relay a steady stream; trigger(sen) takes the master
    away.  Asserts one leader again on the new master, every replica
    following it, and no event lost; returns the replicas."""
    with Sentinels(stack) as sen:
        table, cfg = sentinel_config(stack, sen, name)
        group = harness.config_group(cfg)
        tors = start_replicas(stack, cfg, ["r1", "r2"])
        wait_leading(tors, timeout=15)
        old = sen.master_addr()
        feeder = Feeder(stack, table, 0, None, 10, 0.02)
        feeder.start()
        try:
            deadline = time.monotonic() + 30
            while not checkpoint_on(sen.master_redis(), group).get("gtid"):
                assert time.monotonic() < deadline, "no checkpoint on master"
                time.sleep(0.1)
            time.sleep(1.0)

            since = {t: t.log_size() for t in tors}
            t0 = time.monotonic()
            trigger(sen)
            while sen.master_addr() == old:
                assert time.monotonic() - t0 < 15, "no failover in 15 s"
                time.sleep(0.05)
            new = sen.master_addr()
            t_switch = time.monotonic() - t0

            # One leader again: the lease on the new master names one
            # replica, that one alone says it leads, and its renews land
            # on the new master (the TTL there went up, or the lease is a
            # new one), not on the old master that takes writes until
            # Sentinel demotes it.
            m = harness.redis_lib.Redis(host=new[0], port=new[1],
                                        socket_timeout=5)
            prev = None
            while True:
                cur = lease_on(m, group)
                ttl = m.pttl(lease_key(group))
                leaders = [t.name for t in leader_now(tors)]
                renewed = (cur is not None and prev is not None and
                           (cur != prev[0] or ttl > prev[1] + 50))
                if renewed and leaders == [cur[0]]:
                    break
                prev = (cur, ttl) if cur is not None else None
                assert time.monotonic() - t0 < 20, (cur, ttl, leaders)
                time.sleep(0.05)
            t_leader = time.monotonic() - t0
            print("  failover %s:%d -> %s:%d: Sentinels switched after "
                  "%.0f ms, one leader (%s, token %d) on the new master "
                  "after %.0f ms" % (old[0], old[1], new[0], new[1],
                                     t_switch * 1000, cur[0], cur[1],
                                     t_leader * 1000))

            # Every replica followed the new master.
            for t in tors:
                t.wait_log(r"following master %s at %s:%d, was %s:%d" % (
                    MASTER, new[0], new[1], old[0], old[1]), timeout=15,
                    since=since[t])
            time.sleep(2.0)         # keep feeding under the new master
        finally:
            feeder.stop()
        total = feeder.finish()

        by_n, recs = read_all_events(stack, name, total, timeout=90)
        assert_none_lost(by_n, total)
        # Still one leader, the lease still names it, and its checkpoint
        # lands on the new master.
        time.sleep(1.0)
        cur = lease_on(m, group)
        leaders = leader_now(tors)
        assert cur is not None and [t.name for t in leaders] == [cur[0]], \
            (cur, [t.name for t in leaders])
        deadline = time.monotonic() + 10
        while checkpoint_on(m, group).get("epoch") != str(cur[1]):
            assert time.monotonic() < deadline, checkpoint_on(m, group)
            time.sleep(0.1)
        dups = sum(len(rs) - 1 for rs in by_n.values())
        print("  %d events, %d records (%d duplicates)" % (
            total, len(recs), dups))
        stop_all(tors)
        return tors


def test_failover_mid_stream(stack):
    failover_mid_stream(stack, "sen_failover", Sentinels.failover)


def test_master_killed_mid_stream(stack):
    """The master dies (SIGKILL): the Sentinels promote the replica after
    down-after-milliseconds; until then no Sentinel names a master that
    answers, and the replicas say so in the error's own words."""
    def kill_master(sen):
        with open(os.path.join(stack.run_dir, "redis", "redis.pid")) as f:
            os.kill(int(f.read().strip()), signal.SIGKILL)

    tors = failover_mid_stream(stack, "sen_kill", kill_master)
    pat = (r"redis master %s: no usable master from sentinels "
           r"127\.0\.0\.1:\d+, 127\.0\.0\.1:\d+, 127\.0\.0\.1:\d+; last: "
           r"redis 127\.0\.0\.1:%d: connect: Connection refused \(via "
           r"sentinel 127\.0\.0\.1:\d+\)" % (MASTER, stack.redis_port))
    assert any(log_lines(t, pat) for t in tors), "\n".join(
        t.log_tail(20) for t in tors)


# ---------------------------------------------------------------------------
# fast failover across a Sentinel failover
#
# A follower that finds the leader's Redis client gone takes the lease over
# at once (DESIGN.md §3, dead-leader detection).  During a Sentinel
# failover the leader follows the new master while the old one still takes
# writes, so a follower still on the old master sees the leader's client
# gone there.  The lease's client record names the replicas the leader saw;
# one of them left the old master (it is the new master), so the follower
# must wait for the lease to expire instead.

LEADER_IN = r"-> leader: "
LEADER_OUT = r"^leader -> "


def leaderships(tor):
    """[(start, end or None)] of tor's leaderships, from its elector's
    transitions into and out of LEADER (wall clock, ms in the log)."""
    out = []
    for ts, m, comp, _ in log_lines(tor, LEADER_IN + "|" + LEADER_OUT):
        if comp != "elector":
            continue
        if m.group(0).startswith("->"):
            out.append([ts, None])
        elif out and out[-1][1] is None:
            out[-1][1] = ts
    return [tuple(x) for x in out]


def overlaps(tors):
    """[(a, b, ms)] for every pair of leaderships of two replicas that
    overlap in time, with the length of the overlap."""
    now = time.time()
    spans = [(t.name, s, e if e is not None else now)
             for t in tors for s, e in leaderships(t)]
    out = []
    for i, (a, s1, e1) in enumerate(spans):
        for b, s2, e2 in spans[i + 1:]:
            if a != b and s1 < e2 and s2 < e1:
                out.append((a, b, (min(e1, e2) - max(s1, s2)) * 1000))
    return out


def role(port):
    p = subprocess.run(["redis-cli", "-p", str(port), "role"],
                       capture_output=True, text=True, timeout=10)
    return p.stdout.split("\n", 1)[0].strip()


def test_failover_one_leader(stack):
    """SENTINEL FAILOVER under writes, two replicas through the Sentinels.
    r2 reaches its Sentinel through a proxy that refuses it from the
    failover until a second after the Sentinels name the new master (a
    replica cut off from the Sentinels for a moment): r2 stays on the old
    master, which takes writes until Sentinel demotes it, while r1 follows
    the new master.  r1's client is gone from the old master, but r1 is
    alive: r2 must not lead while r1 does, and no partition may hold a
    lower token after a higher one."""
    name = "sen_one_leader"
    with Sentinels(stack) as sen:
        table, ov = make_outbox(stack, name)
        f, p = stack.binlog_position()
        common = dict(group=harness.unique_group(), start="%s:%d" % (f, p),
                      ha=dict(HA), checkpoint={"interval_ms": 200}, **ov)
        proxy = Proxy(sen.ports()[0]).start()
        cfg1 = harness.base_config(stack, redis=sen.redis_section(),
                                   **common)
        cfg2 = harness.base_config(stack, redis=harness.cfg_value({
            "sentinel": {"master": sen.master,
                         "nodes": ["127.0.0.1:%d" % proxy.port]}}),
            **common)
        old = sen.master_addr()
        r1 = Tor(stack, cfg1, name="r1").start()
        wait_leading([r1], timeout=15)
        r2 = Tor(stack, cfg2, name="r2").start()
        r2.wait_log(r"lease held by another replica", timeout=15)
        tors = [r1, r2]
        feeder = Feeder(stack, table, 0, None, 10, 0.02)
        feeder.start()
        try:
            time.sleep(1.5)
            t0 = time.monotonic()
            proxy.refuse(True)
            sen.failover()
            while sen.master_addr() == old:
                assert time.monotonic() - t0 < 15, "no failover in 15 s"
                time.sleep(0.02)
            t_switch = time.monotonic() - t0
            r1.wait_log(r"following master %s at" % MASTER, timeout=5)
            time.sleep(1.0)
            proxy.refuse(False)
            r2.wait_log(r"following master %s at" % MASTER, timeout=5)
            print("  the Sentinels named the new master %.0f ms after "
                  "SENTINEL FAILOVER; r2 cut off from them until %.0f ms; "
                  "the old master's role then: %s" % (
                      t_switch * 1000, (time.monotonic() - t0) * 1000,
                      role(old[1])))
            time.sleep(1.0)
        finally:
            feeder.stop()
            proxy.stop()
        total = feeder.finish()
        took = log_lines(r2, r"took the lease over from")
        both = overlaps(tors)
        for a, b, ms in both:
            print("  %s and %s both led for %.0f ms" % (a, b, ms))
        by_n, recs = read_all_events(stack, name, total,
                                     group=common["group"])
        assert_none_lost(by_n, total)
        assert not took, "r2 took a live leader's lease over: %s" % (
            took[0][3])
        assert not both, "two leaders at once: %s" % both
        check_tokens_grow(recs)
        stop_all(tors)
