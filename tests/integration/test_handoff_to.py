"""Graceful hand-overs between replicas of one group: the release's wake-up
published on the free channel (tor:pool:free), and P:{G}:handoff_to, which
lets only the instance it names take the lease while it lives.

Both run the real replicas on the real stack and judge the lease in Redis,
the replicas' logs (which transition, which acquire) and the messages read
back from Kafka.
"""
import signal
import time

import harness
from harness import Tor
from test_ha import (assert_none_lost, ha_config, lease, log_lines,
                     read_all_events, stop_all, wait_leading)
from test_relay import insert_range, make_outbox

ACQUIRED = r"acquired the lease \(token (\d+)\)"


def handoff_to_key(group):
    return "tor:{%s}:handoff_to" % group


def until(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("%s: not within %ss" % (what, timeout))
        time.sleep(0.05)


def test_handoff_to_names_the_successor(stack):
    """r1 leads, r3 stands by; handoff_to names r2, which is not running
    yet.  r1's clean stop releases the lease and wakes r3, whose acquire
    is refused while the key lives: the group stays unled rather than go
    to r3.  r2 starts and takes it; r3 never acquires.  Every event is
    published once, under r1's token then r2's."""
    name = "hto_names"
    total = 200
    table, cfg = ha_config(stack, name)
    r1 = Tor(stack, cfg, name="r1").start()
    _, ltoken, _ = wait_leading([r1], timeout=10)
    r3 = Tor(stack, cfg, name="r3").start()
    group = r1.group
    r3_since = r3.log_size()
    time.sleep(0.5)
    insert_range(stack, table, 0, total // 2, 10)
    read_all_events(stack, name, total // 2, group=group)

    stack.redis().set(handoff_to_key(group), "r2", px=20000)
    r1.send_signal(signal.SIGTERM)
    assert r1.wait(30) == 0, r1.log_tail()
    # r3 hears the wake-up and competes at once, and is refused.
    until(lambda: log_lines(r3, r"hand-off wake-up", r3_since), 5,
          "r3 woken by the release")
    time.sleep(1.0)
    assert lease(stack, group) is None, lease(stack, group)
    assert not log_lines(r3, ACQUIRED, r3_since), r3.log_tail()

    r2 = Tor(stack, cfg, name="r2").start()
    who, token, _ = wait_leading([r2, r3], timeout=15)
    assert who is r2, who
    assert token > ltoken, (token, ltoken)
    assert lease(stack, group) == ("r2", token)
    insert_range(stack, table, total // 2, total - total // 2, 10)
    by_n, recs = read_all_events(stack, name, total, group=group)
    assert_none_lost(by_n, total)
    dups = [n for n, rs in by_n.items() if len(rs) > 1]
    assert not dups, "%d events published twice, first %s" % (
        len(dups), dups[:5])
    assert not log_lines(r3, ACQUIRED, r3_since), r3.log_tail()
    print("  handoff_to r2: r3 woken and refused, r2 leads with token %d "
          "(r1 had %d)" % (token, ltoken))
    stop_all([r2, r3])


def test_publish_wakeup_makes_a_clean_stop_fast(stack):
    """Without fast failover and with a 4 s retry period, the standby
    still leads within a few milliseconds of the leader's release: the
    release script publishes the group's name, the standby's listener
    hears it and its elector competes at once ("hand-off wake-up"), not
    at its next retry."""
    name = "hto_fast"
    retry_ms = 4000
    _, ov = make_outbox(stack, name)
    cfg = harness.base_config(
        stack, ha={"lease_ms": 12000, "renew_ms": 2000, "retry_ms": retry_ms,
                   "fast_failover": False, "stall_ms": 0}, **ov)
    tors = [Tor(stack, cfg, name=n).start() for n in ("r1", "r2")]
    leader, ltoken, _ = wait_leading(tors, timeout=15)
    standby = [t for t in tors if t is not leader][0]
    time.sleep(0.5)
    since = {standby: standby.log_size()}
    leader.send_signal(signal.SIGTERM)
    assert leader.wait(30) == 0, leader.log_tail()
    who, token, lead_ts = wait_leading([standby], since, timeout=15)
    rel = log_lines(leader, r"released the lease")
    assert rel, leader.log_tail()
    woke = log_lines(standby, r"follower -> candidate: hand-off wake-up",
                     since[standby])
    assert woke, "the standby was not woken; its log:\n%s" % (
        standby.log_tail(20))
    ms = (lead_ts - rel[-1][0]) * 1000
    print("  released -> %s leading %.0f ms (retry_ms %d)" % (
        who.name, ms, retry_ms))
    assert ms < retry_ms / 4, "the successor led %.0f ms after the " \
        "release: at its retry, not at the wake-up" % ms
    assert token > ltoken
    stop_all([standby])


@harness.long_test("test_publish_wakeup_makes_a_clean_stop_fast shows the "
                   "wake-up; test_sentinel the failover")
def test_wakeup_follows_a_sentinel_failover(stack):
    """Through Sentinels: the master is killed, the Sentinels promote its
    replica, and the listener's subscription, broken with the old master,
    is made again on the new one.  A clean stop afterwards still wakes
    the standby at once (retry_ms 4 s, fast failover off)."""
    import os
    from test_sentinel import MASTER, Sentinels

    name = "hto_sentinel"
    retry_ms = 4000
    with Sentinels(stack) as sen:
        _, ov = make_outbox(stack, name)
        cfg = harness.base_config(
            stack, redis=sen.redis_section(),
            ha={"lease_ms": 12000, "renew_ms": 2000, "retry_ms": retry_ms,
                "fast_failover": False, "stall_ms": 0}, **ov)
        tors = [Tor(stack, cfg, name=n).start() for n in ("r1", "r2")]
        leader, ltoken, _ = wait_leading(tors, timeout=15)
        standby = [t for t in tors if t is not leader][0]
        old = sen.master_addr()
        since = {t: t.log_size() for t in tors}
        with open(os.path.join(stack.run_dir, "redis", "redis.pid")) as f:
            os.kill(int(f.read().strip()), signal.SIGKILL)
        until(lambda: sen.master_addr() != old, 30, "a new master")
        new = sen.master_addr()
        for t in tors:
            t.wait_log(r"following master %s at %s:%d, was %s:%d" % (
                MASTER, new[0], new[1], old[0], old[1]), timeout=15,
                since=since[t])
        until(lambda: log_lines(standby, r"hand-off wake-ups: subscribed "
                                r"again", since[standby]), 15,
              "the standby's listener on the new master")
        time.sleep(0.5)
        since = {standby: standby.log_size()}
        leader.send_signal(signal.SIGTERM)
        assert leader.wait(30) == 0, leader.log_tail()
        who, token, lead_ts = wait_leading([standby], since, timeout=15)
        rel = log_lines(leader, r"released the lease")
        assert rel, leader.log_tail()
        assert log_lines(standby, r"follower -> candidate: hand-off wake-up",
                         since[standby]), standby.log_tail(20)
        ms = (lead_ts - rel[-1][0]) * 1000
        print("  master %s:%d killed, now %s:%d; released -> %s leading "
              "%.0f ms (retry_ms %d)" % (old[0], old[1], new[0], new[1],
                                         who.name, ms, retry_ms))
        assert ms < retry_ms / 4, ms
        assert token > ltoken
        stop_all([standby])


@harness.long_test("test_pool_on_redis_cluster and test_redis_cluster show "
                   "hand-overs on a Cluster")
def test_wakeup_on_redis_cluster(stack):
    """On Redis Cluster: the release script's PUBLISH (legal in a script:
    a channel is not a key) reaches the standby's listener, subscribed on
    the node its Cluster connection found; a clean stop hands over at once
    with retry_ms 4 s and fast failover off."""
    from test_redis_cluster import Cluster, started

    retry_ms = 4000
    with Cluster(stack) as c:
        _, _, group, slot, owner, tors = started(
            c, stack, "hto_cluster",
            ha={"lease_ms": 12000, "renew_ms": 2000, "retry_ms": retry_ms,
                "fast_failover": False, "stall_ms": 0})
        leader = [t for t in tors if log_lines(t, r"leading with token")][0]
        standby = [t for t in tors if t is not leader][0]
        time.sleep(0.5)
        since = {standby: standby.log_size()}
        leader.send_signal(signal.SIGTERM)
        assert leader.wait(30) == 0, leader.log_tail()
        who, _, lead_ts = wait_leading([standby], since, timeout=15)
        rel = log_lines(leader, r"released the lease")
        assert rel, leader.log_tail()
        assert log_lines(standby, r"follower -> candidate: hand-off wake-up",
                         since[standby]), standby.log_tail(20)
        ms = (lead_ts - rel[-1][0]) * 1000
        print("  slot %d on %d: released -> %s leading %.0f ms (retry_ms "
              "%d)" % (slot, owner, who.name, ms, retry_ms))
        assert ms < retry_ms / 4, ms
        stop_all([standby])
