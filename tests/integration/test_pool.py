"""Several groups in one replica (the `sources` form of tor.cfg), and a pool
of replicas sharing them.

Each group has its own outbox table and topics; every group keeps its own
lease, token and checkpoint, and a group that halts stops nothing else."""

import binascii
import collections
import json
import re
import secrets
import signal
import subprocess
import time

import harness
from harness import Tor, tor_cli
from test_ha import HA, stop_all
from test_http import free_port, get, samples
from test_relay import check_per_key_order, insert_range, make_outbox

# The keys every source shares, from the top level of the file.
SHARED = ("pool", "kafka", "redis", "ha", "checkpoint", "http", "log")


class Pool:
    """n groups, each with the outbox table shop.ob_<name>_<i> and topics
    <name>_<i>.order / .invoice, in one config text of the sources form."""

    def __init__(self, stack, name, n, ha=None, per_source=None,
                 cluster_port=None, tag=None, **top):
        self.stack = stack
        self.name = name
        self.cluster_port = cluster_port
        self.pool_name = (top.get("pool") or {}).get("name", "default")
        sections = harness.base_sections(stack)
        sections["ha"] = dict(HA, **(ha or {}))
        for k, v in top.items():
            sections[k] = v
        tag = tag or secrets.token_hex(2)
        self.groups = []        # (group, table, topic prefix)
        sources = []
        for i in range(n):
            prefix = "%s_%d" % (name, i)
            table, ov = make_outbox(stack, prefix)
            group = "%s-%d-%s" % (name, i, tag)
            src = collections.OrderedDict(
                [("group", group), ("mysql", sections["mysql"]),
                 ("outbox", ov["outbox"])])
            src.update((per_source or {}).get(i, {}))
            sources.append(src)
            self.groups.append((group, table, prefix))
        lines = ["# tor.cfg of a pool, written by test_pool.py"]
        for k in SHARED:
            if k in sections:
                lines.append("%s = %s;" % (k, harness.cfg_value(sections[k])))
        lines.append("sources = %s;" % harness.cfg_value(sources))
        self.cfg = "\n".join(lines) + "\n"

    def replica(self, name):
        return Tor(self.stack, self.cfg, name=name)

    def cli(self, *args):
        p = tor_cli(list(args), cfg=self.cfg, stack=self.stack)
        return p.returncode, p.stdout, p.stderr

    def get(self, key):
        """GET key on the pool's Redis (redis-cli -c on a Cluster)."""
        if self.cluster_port is None:
            v = self.stack.redis().get(key)
            return v.decode() if v else None
        p = subprocess.run(["redis-cli", "-c", "-p", str(self.cluster_port),
                            "GET", key], capture_output=True, text=True,
                           timeout=15, check=True)
        return p.stdout.strip() or None

    def lease_holder(self, group):
        v = self.get("tor:{%s}:lease" % group)
        return v.split()[0] if v else None

    def holders(self):
        return {g: self.lease_holder(g) for g, _, _ in self.groups}

    def insert(self, i, start, count, per_txn=50):
        insert_range(self.stack, self.groups[i][1], start, count, per_txn)

    def read(self, i, timeout=10):
        """Group i's records (its topics may hold an earlier failed run's,
        under another group name)."""
        group, _, prefix = self.groups[i]
        recs = (harness.read_all(self.stack.brokers, prefix + ".order",
                                 timeout=timeout) +
                harness.read_all(self.stack.brokers, prefix + ".invoice",
                                 timeout=timeout))
        return [r for r in recs
                if harness.header(r, "tor.group") == group.encode()]

    def wait_published(self, i, total, timeout=60):
        """Reads group i's topics until events 0..total-1 are there;
        returns (by_n, records)."""
        from test_ha import n_of
        deadline = time.monotonic() + timeout
        while True:
            recs = self.read(i)
            by_n = collections.defaultdict(list)
            for r in recs:
                by_n[n_of(r)].append(r)
            if all(n in by_n for n in range(total)) or \
                    time.monotonic() > deadline:
                return by_n, recs
            time.sleep(0.3)

    def wait_held(self, want, timeout=30):
        """Waits until every group's lease is held by one of the names in
        want; returns the holders."""
        deadline = time.monotonic() + timeout
        while True:
            h = self.holders()
            if all(v in want for v in h.values()):
                return h
            if time.monotonic() > deadline:
                raise AssertionError("leases %s, wanted holders in %s" %
                                     (h, want))
            time.sleep(0.1)


def assert_all_once(pool, i, total):
    by_n, recs = pool.wait_published(i, total)
    missing = [n for n in range(total) if n not in by_n]
    assert not missing, "group %d lost %d of %d, first %s" % (
        i, len(missing), total, missing[:10])
    check_per_key_order(recs)
    return sum(len(v) - 1 for v in by_n.values())


def test_groups_in_one_replica_each_their_own(stack):
    """One replica, three groups: each group's rows reach its own topics,
    and each group has its own lease, token and checkpoint in Redis."""
    port = free_port()
    pool = Pool(stack, "pl_own", 3, http={"listen": "127.0.0.1:%d" % port},
                pool={"name": "pl_own" + secrets.token_hex(2),
                      "beat_ms": 200})
    t = pool.replica("r1").start()
    pool.wait_held({"r1"})
    for i in range(3):
        pool.insert(i, 0, 200 + 50 * i)
    for i in range(3):
        dups = assert_all_once(pool, i, 200 + 50 * i)
        assert dups == 0, "group %d: %d duplicates" % (i, dups)
    r = stack.redis()
    for g, _, _ in pool.groups:
        assert r.exists("tor:{%s}:checkpoint" % g), g
        assert int(r.get("tor:{%s}:epoch" % g)) >= 1, g
    # Every line of a group's session names its group.
    for g, _, _ in pool.groups:
        assert "group=%s" % g in t.log_text(), g
    # tor status shows every group; a command on one group needs --group.
    rc, out, err = pool.cli("status")
    assert rc == 0, (rc, out, err)
    out_status = out
    shown = re.findall(r"^group: (\S+)\nleader: (\S+)$", out, re.M)
    assert shown == [(g, "r1") for g, _, _ in pool.groups], out
    rc, out, err = pool.cli("checkpoint", "show")
    assert rc == 2 and "has 3 sources: name the group with --group (%s)" % (
        ", ".join(g for g, _, _ in pool.groups)) in err, (rc, err)
    g1 = pool.groups[1][0]
    rc, out, err = pool.cli("checkpoint", "show", "--group", g1, "--json")
    assert rc == 0 and json.loads(out)["checkpoint_token"] >= 1, (rc, out, err)
    rc, out, err = pool.cli("status", "--group", "nope")
    assert rc == 2 and 'no source has group "nope"' in err, (rc, err)
    # The pool: one member leading its share of three, on /metrics too.
    assert re.search(r"^member: r1 leading=3 healthy=1 draining=0 ",
                     out_status, re.M), out_status
    assert re.search(r"^share: 3$", out_status, re.M), out_status
    smp = samples(port)
    assert harness.metric_value(smp, "tor_pool_leading") == 3
    assert harness.metric_value(smp, "tor_pool_members") == 1
    assert harness.metric_value(smp, "tor_pool_share") == 3
    stop_all([t])
    assert pool.holders() == {g: None for g, _, _ in pool.groups}


def test_one_group_halts_the_others_go_on(stack):
    """An unrouted row halts its group (outbox.unrouted = "fail"): that
    group gives its lease back, and the replica's other groups keep
    publishing."""
    port = free_port()
    pool = Pool(stack, "pl_halt", 3,
                http={"listen": "127.0.0.1:%d" % port})
    t = pool.replica("r1").start()
    pool.wait_held({"r1"})
    bad_group, bad_table, _ = pool.groups[1]
    harness.insert_events(stack, [("nowhere", "k1", '{"n": -1}')],
                          table=bad_table)
    t.wait_log(r"group %s halted \(the other groups go on\)" % bad_group,
               timeout=30)
    for i in (0, 2):
        pool.insert(i, 0, 300)
    for i in (0, 2):
        assert_all_once(pool, i, 300)
    assert t.running(), t.log_tail()
    assert pool.lease_holder(bad_group) is None
    # /metrics shows which group halted; the probes leave it out.
    smp = samples(port)
    for g, _, _ in pool.groups:
        assert harness.metric_value(smp, "tor_group_halted", group=g) == (
            1 if g == bad_group else 0), g
    assert get(port, "/healthz")[0] == 200
    stop_all([t])


def test_a_lost_source_stops_no_other(stack):
    """One source's MySQL cannot be reached (a port nothing listens on):
    that group retries on its own, the others publish."""
    dead = free_port()
    mysql = dict(harness.base_sections(stack)["mysql"], port=dead)
    pool = Pool(stack, "pl_lost", 3, per_source={1: {"mysql": mysql}})
    t = pool.replica("r1").start()
    pool.wait_held({"r1"})
    for i in (0, 2):
        pool.insert(i, 0, 200)
    for i in (0, 2):
        assert_all_once(pool, i, 200)
    t.wait_log(r"127\.0\.0\.1:%d.*retrying" % dead, timeout=30)
    assert t.running(), t.log_tail()
    stop_all([t])


def test_hand_over_to_a_paused_member_is_not_waited_for(stack):
    """r1 leads two groups; r2 joins and is paused (SIGSTOP) right after
    its first beat, so r1 hands a group over to it: the name of the taker
    must lapse within a few retries (a live taker wins at once), and r1
    take the group back, not leave it unled for 2 x lease_ms."""
    pool = Pool(stack, "pl_pause", 2,
                pool={"name": "pl_pause" + secrets.token_hex(2),
                      "settle_ms": 0, "beat_ms": 300})
    r1 = pool.replica("r1").start()
    pool.wait_held({"r1"})
    r2 = pool.replica("r2").start()
    r2.wait_log(r"serving 2 groups", timeout=30)
    deadline = time.monotonic() + 30
    while pool.get("tor:{pool:%s}:member:r2" % pool.pool_name) is None:
        assert time.monotonic() < deadline, "r2 never beat"
        time.sleep(0.02)
    r2.send_signal(signal.SIGSTOP)
    r1.wait_log(r"handing group \S+ over to r2", timeout=30)
    deadline = time.monotonic() + 10
    named = []
    while not named and time.monotonic() < deadline:
        named = [(g, pool.stack.redis().pttl("tor:{%s}:handoff_to" % g))
                 for g, _, _ in pool.groups
                 if pool.get("tor:{%s}:handoff_to" % g) == "r2"]
        time.sleep(0.01)
    print("  handed to the paused r2: %s (ms left)" % named)
    assert named, "no group named r2 to take it"
    retry = HA["retry_ms"]
    assert all(ttl <= max(5 * retry, 1000) for _, ttl in named), named
    pool.wait_held({"r1"}, timeout=30)
    r2.send_signal(signal.SIGCONT)
    stop_all([r1, r2])


def test_kill9_the_other_replica_takes_every_group(stack):
    """Two replicas of four groups under writes; the one leading groups is
    killed: the other takes each of them over, and nothing is lost."""
    pool = Pool(stack, "pl_kill", 4)
    tors = [pool.replica(n).start() for n in ("r1", "r2")]
    pool.wait_held({"r1", "r2"})
    for i in range(4):
        pool.insert(i, 0, 200)
    held = collections.Counter(pool.holders().values())
    victim = max(tors, key=lambda t: held[t.name])
    survivor = [t for t in tors if t is not victim][0]
    print("  leases before: %s" % dict(held))
    victim.kill9()
    t0 = time.monotonic()
    pool.wait_held({survivor.name}, timeout=30)
    print("  every group led by %s %.2f s after the kill" % (
        survivor.name, time.monotonic() - t0))
    for i in range(4):
        pool.insert(i, 200, 200)
    dups = [assert_all_once(pool, i, 400) for i in range(4)]
    print("  duplicates per group: %s" % dups)
    stop_all([survivor])


def spread(holders):
    return collections.Counter(v for v in holders.values() if v)


def wait_balanced(pool, names, timeout=60):
    """Waits until every group is led by one of names and each leads
    within one of the others; returns (seconds, counts)."""
    t0 = time.monotonic()
    while True:
        h = pool.holders()
        c = spread(h)
        counts = [c.get(n, 0) for n in names]
        if all(v in names for v in h.values()) and \
                max(counts) - min(counts) <= 1:
            return time.monotonic() - t0, dict(zip(names, counts))
        if time.monotonic() - t0 > timeout:
            raise AssertionError("not balanced over %s after %d s: %s" % (
                names, timeout, dict(c)))
        time.sleep(0.1)


def balance_round(stack, name, n_groups, rows):
    """Three replicas started one after another, one killed and started
    again, rows written to every group throughout: the groups spread
    within one after each step, and every row is published once, in
    order."""
    pool = Pool(stack, name, n_groups,
                pool={"name": name + secrets.token_hex(2),
                      "settle_ms": 1000, "beat_ms": 200})
    tors = {"r1": pool.replica("r1").start()}
    pool.wait_held({"r1"}, timeout=60)
    written = 0
    tors["r2"] = pool.replica("r2").start()
    tors["r3"] = pool.replica("r3").start()
    took, counts = wait_balanced(pool, ["r1", "r2", "r3"])
    print("  3 replicas balanced %.1f s after r2 and r3 started: %s" % (
        took, counts))
    # A hand-over's name for the taker is gone once it took the lease: a
    # taker that dies then must not keep the group from the others.
    named = {g: pool.get("tor:{%s}:handoff_to" % g)
             for g, _, _ in pool.groups}
    assert not any(named.values()), named
    for i in range(n_groups):
        pool.insert(i, written, rows)
    written += rows
    tors["r3"].kill9()
    t0 = time.monotonic()
    pool.wait_held({"r1", "r2"}, timeout=30)
    print("  r3 killed: every group led again after %.2f s" % (
        time.monotonic() - t0))
    took, counts = wait_balanced(pool, ["r1", "r2"])
    print("  ... and balanced over r1 and r2 after %.1f s: %s" % (
        time.monotonic() - t0, counts))
    for i in range(n_groups):
        pool.insert(i, written, rows)
    written += rows
    tors["r3"] = pool.replica("r3").start()
    took, counts = wait_balanced(pool, ["r1", "r2", "r3"])
    print("  r3 back: balanced again in %.1f s: %s" % (took, counts))
    for i in range(n_groups):
        pool.insert(i, written, rows)
    written += rows
    # A drain: r1 stops cleanly, every session of it ends at a clean stop
    # and its groups go to r2 and r3.
    t0 = time.monotonic()
    stop_all([tors["r1"]])
    pool.wait_held({"r2", "r3"}, timeout=30)
    print("  r1 stopped (SIGTERM): every group led again %.2f s after the "
          "signal" % (time.monotonic() - t0))
    took, counts = wait_balanced(pool, ["r2", "r3"])
    print("  ... and spread over r2 and r3: %s" % counts)
    for i in range(n_groups):
        pool.insert(i, written, rows)
    written += rows
    dups = [assert_all_once(pool, i, written) for i in range(n_groups)]
    print("  %d rows in each of %d groups, none lost; duplicates: %d" % (
        written, n_groups, sum(dups)))
    rc, out, err = pool.cli("status", "--json")
    assert rc == 0, (rc, out, err)
    shown = json.loads(out.splitlines()[-1])
    assert sorted(m["instance"] for m in shown["members"]) == [
        "r2", "r3"], shown
    assert shown["share"] == -(-n_groups // 2), shown
    sheds = [d for d in shown["decisions"] if " shed " in d]
    print("  %d hand-overs among the last decisions, e.g. %s" % (
        len(sheds), sheds[:1]))
    assert sheds, shown
    stop_all(list(tors.values()))


def test_three_replicas_spread_nine_groups(stack):
    balance_round(stack, "pl_bal", 9, 100)


@harness.long_test("test_three_replicas_spread_nine_groups: the same with "
                   "nine groups")
def test_three_replicas_spread_thirty_groups(stack):
    balance_round(stack, "pl_bal30", 30, 300)


@harness.long_test("test_three_replicas_spread_nine_groups on one Redis; "
                   "test_redis_cluster for one group on a Cluster")
def test_pool_on_redis_cluster(stack):
    """Two replicas of six groups whose leases live on a three-master Redis
    Cluster (the pool's keys on their own slot): they spread 3/3, and a
    kill -9 of one leaves every group led by the other."""
    from test_redis_cluster import Cluster

    def third(group):       # of the slots: each master serves one
        return binascii.crc_hqx(group.encode(), 0) % 16384 // 5462

    # Names that differ in one digit have near slots (CRC16 is linear):
    # a tag whose six names straddle two masters' slots.
    while True:
        tag = secrets.token_hex(2)
        if len({third("pl_cl-%d-%s" % (i, tag)) for i in range(6)}) >= 2:
            break
    with Cluster(stack) as c:
        pool = Pool(stack, "pl_cl", 6, cluster_port=c.ports[0], tag=tag,
                    redis={"cluster": {"nodes": ["127.0.0.1:%d" %
                                                 c.ports[1]]}},
                    pool={"name": "pl_cl" + secrets.token_hex(2),
                          "settle_ms": 1000, "beat_ms": 200})
        slots = collections.Counter(
            c.slot(g) // 5462 for g, _, _ in pool.groups)
        print("  groups per third of the slots: %s" % dict(slots))
        assert len(slots) >= 2, slots
        tors = {n: pool.replica(n).start() for n in ("r1", "r2")}
        took, counts = wait_balanced(pool, ["r1", "r2"])
        print("  spread in %.1f s: %s" % (took, counts))
        for i in range(6):
            pool.insert(i, 0, 100)
        tors["r1"].kill9()
        t0 = time.monotonic()
        pool.wait_held({"r2"}, timeout=30)
        print("  r1 killed: every group led by r2 after %.2f s" % (
            time.monotonic() - t0))
        for i in range(6):
            pool.insert(i, 100, 100)
        dups = [assert_all_once(pool, i, 200) for i in range(6)]
        print("  200 rows in each group, none lost; duplicates: %d" %
              sum(dups))
        stop_all([tors["r2"]])
