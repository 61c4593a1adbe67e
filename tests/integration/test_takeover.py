"""Taking over a group when something went wrong (DESIGN.md §3, §5): Redis
that lost its data, an epoch key gone, a leader that resigns, a replica
stopped while its acquire is in flight, a leadership that ends oddly, and
an operator's `tor checkpoint set` racing a new leader or meeting Kafka's
copy of the position.  Real MariaDB, Redis and Kafka (one node), but for one
test that needs an error injected at one Produce request (the dev broker,
DESIGN.md §9); tests/integration/proxy.py aims a fault at one Redis reply.
"""

import subprocess
import threading
import time

import harness
from harness import Tor, tor_cli
from proxy import Proxy
from test_ha import (HA, LEADING, Feeder, assert_none_lost,
                     check_tokens_grow, epoch_of, group_of, lease, lease_key,
                     log_lines, n_of, read_all_events, stop_all,
                     wait_leading)
from test_relay import (checkpoint, check_per_key_order, insert_range,
                        make_outbox)


def cfg_for(stack, name, start=None, **extra):
    table, ov = make_outbox(stack, name)
    ov.update(extra)
    cfg = harness.base_config(stack, ha=dict(HA), start=start,
                              checkpoint={"interval_ms": 200}, **ov)
    return table, cfg


def wait_checkpoint_at_end(stack, group, timeout=10):
    end = stack.binlog_position()
    deadline = time.monotonic() + timeout
    while True:
        cp = checkpoint(stack, group)
        if (cp.get("file"), int(cp.get("pos", 0))) == end:
            return cp
        assert time.monotonic() < deadline, (cp, end)
        time.sleep(0.1)


def test_redis_flushall_loses_nothing(stack):
    """Redis loses everything (FLUSHALL) while no replica runs, and
    mysql.start is "end": the next leader resumes from Kafka's copy of the
    checkpoint, so the rows written meanwhile are published, and its token
    is above every token already in Kafka."""
    name = "to_flushall"
    table, cfg = cfg_for(stack, name, start="end")
    group = group_of(cfg)
    r1 = Tor(stack, cfg, name="r1").start()
    wait_leading([r1], timeout=10)
    r1.wait_log("no checkpoint for group", timeout=10)
    insert_range(stack, table, 0, 100, 10)
    read_all_events(stack, name, 100)
    wait_checkpoint_at_end(stack, group)
    time.sleep(0.5)                 # the Kafka copy follows the Redis write
    r1.kill9()
    insert_range(stack, table, 100, 100, 10)
    stack.redis().flushall()
    r2 = Tor(stack, cfg, name="r2").start()
    by_n, recs = read_all_events(stack, name, 200, timeout=30)
    missing = [n for n in range(200) if n not in by_n]
    assert not missing, "lost %d events after FLUSHALL, first %s; log:\n%s" \
        % (len(missing), missing[:10], r2.log_tail())
    assert "Kafka" in r2.wait_log(r"resuming from .*Kafka.*", timeout=1
                                  ).group(0)
    check_tokens_grow(recs)
    assert r2.stop() == 0, r2.log_tail()


def test_redis_flushall_under_a_leader_no_overlap(stack):
    """Redis loses everything while a leader streams (a restart without
    persistence, then FLUSHALL): the next
    leader's token is below the one Kafka's copy of the checkpoint carries,
    so it knows a leadership may still run, and nobody leads until that one
    has seen its lease gone (lease_ms): no partition holds the old token
    after the new one, and nothing is lost.  renew_ms and the checkpoint
    interval are long here, so the old leader learns late."""
    name = "to_flush_live"
    table, ov = make_outbox(stack, name)
    cfg = harness.base_config(stack, ha={"lease_ms": 6000, "renew_ms": 2500,
                                         "retry_ms": 100},
                              checkpoint={"interval_ms": 5000}, **ov)
    tors = [Tor(stack, cfg, name=n).start() for n in ("r1", "r2")]
    _, token, _ = wait_leading(tors, timeout=10)
    feeder = Feeder(stack, table, 0, None, 5, 0.005)
    feeder.start()
    try:
        time.sleep(2.0)
        for how in ("restart", "flushall"):
            since = {t: t.log_size() for t in tors}
            if how == "restart":
                stack.stop("redis")
                time.sleep(0.7)
                stack.start("redis")
            else:
                stack.redis().flushall()
            # The first token after the loss is 1 again; the leadership
            # that streams holds one above the old.
            deadline = time.monotonic() + 30
            while True:
                who, tok, _ = wait_leading(tors, since=since, timeout=30)
                if tok > token:
                    break
                assert time.monotonic() < deadline, "no token above %d" % (
                    token)
                since = {t: t.log_size() for t in tors}
            print("  %s: %s leads with token %d (was %d); holds logged: %d"
                  % (how, who.name, tok, token, sum(
                      len(log_lines(t, "nobody leads for")) for t in tors)))
            token = tok
            time.sleep(2.0)
    finally:
        feeder.stop()
    total = feeder.finish()
    by_n, recs = read_all_events(stack, name, total, timeout=60)
    assert_none_lost(by_n, total)
    check_tokens_grow(recs)
    stop_all(tors)


def test_epoch_key_lost_no_flapping(stack):
    """Only the epoch key is lost: the next leader's token is still above
    the checkpoint's, so its writes are not refused and nobody flaps."""
    name = "to_epoch"
    table, cfg = cfg_for(stack, name)
    group = group_of(cfg)
    tors = [Tor(stack, cfg, name=n).start() for n in ("r1", "r2")]
    for _ in range(3):              # a few handovers: the token grows
        leader, token, _ = wait_leading(tors, timeout=10)
        since = {t: t.log_size() for t in tors}
        assert leader.stop() == 0
        tors = [t for t in tors if t is not leader] + [
            Tor(stack, cfg, name=leader.name).start()]
        wait_leading(tors, since=since, timeout=10)
    insert_range(stack, table, 0, 50, 10)
    read_all_events(stack, name, 50)
    cp = wait_checkpoint_at_end(stack, group)
    stored = int(cp["epoch"])
    leader = [t for t in tors if log_lines(t, LEADING)][-1]
    stack.redis().delete("tor:{%s}:epoch" % group)
    since = {t: t.log_size() for t in tors}
    leader.kill9()
    nxt, token, _ = wait_leading(tors, since=since, timeout=10)
    insert_range(stack, table, 50, 50, 10)
    by_n, recs = read_all_events(stack, name, 100)
    time.sleep(1)
    assert token > stored, "new token %d not above the checkpoint's %d" % (
        token, stored)
    for t in tors:
        assert not log_lines(t, "checkpoint write refused",
                             since.get(t, 0)), t.log_tail()
    check_tokens_grow(recs)
    stop_all([t for t in tors if t.running()])


def test_resign_releases_the_lease(stack):
    """A leader whose checkpoint write is refused resigns and gives the lease
    back at once: its successor does not wait for the lease to expire."""
    name = "to_resign"
    table, cfg = cfg_for(stack, name)
    group = group_of(cfg)
    tors = [Tor(stack, cfg, name=n).start() for n in ("r1", "r2")]
    leader, token, _ = wait_leading(tors, timeout=10)
    insert_range(stack, table, 0, 20, 10)
    read_all_events(stack, name, 20)
    wait_checkpoint_at_end(stack, group)
    since = {t: t.log_size() for t in tors}
    stack.redis().hset("tor:{%s}:checkpoint" % group, "epoch", "1000000")
    insert_range(stack, table, 20, 20, 10)
    refused = leader.wait_log("checkpoint write refused", timeout=10,
                              since=since[leader])
    t_refused = log_lines(leader, "checkpoint write refused",
                          since[leader])[0][0]
    nxt, ntoken, t_lead = wait_leading(tors, since=since, timeout=10)
    gap_ms = (t_lead - t_refused) * 1000
    print("  %s resigned (%s); %s led with token %d %.0f ms later" % (
        leader.name, refused.group(0), nxt.name, ntoken, gap_ms))
    assert gap_ms < HA["lease_ms"] / 2, \
        "successor led %.0f ms after the resign (lease_ms %d): the lease " \
        "was kept" % (gap_ms, HA["lease_ms"])
    stop_all(tors)


def test_stop_with_an_acquire_in_flight_releases(stack):
    """SIGTERM reaches a follower while its acquire is on the wire and wins:
    the replica gives the lease back before it exits."""
    name = "to_acquire"
    p = Proxy(stack.redis_port).start()
    try:
        table, cfg = cfg_for(stack, name, redis={"port": p.port})
        group = group_of(cfg)
        r = stack.redis()
        r.set(lease_key(group), "someone-else 999", px=60000)
        tor = Tor(stack, cfg, name="r1").start()
        tor.wait_log("follower|candidate", timeout=10)
        time.sleep(0.5)
        p.hold_acquire_win(0.3)
        r.delete(lease_key(group))
        assert p.acquire_held.wait(10), "no acquire won"
        tor.send_signal(15)
        assert tor.wait(20) == 0, tor.log_tail()
        held = lease(stack, group)
        assert held is None, "lease still held after exit: %s" % (held,)
    finally:
        p.stop()


def test_leadership_ending_in_restart_returns_to_follower(stack):
    """Transactional mode: a Kafka commit that must be aborted while the
    lease is being lost ends the session with a restart; the replica must
    still end up a follower that competes again, not stuck stepping down.
    On the dev broker: the abort comes from TOPIC_AUTHORIZATION_FAILED
    injected at one Produce request, behind 1.5 s of latency."""
    stack.use_dev_broker()
    name = "to_restart"
    table, cfg = cfg_for(stack, name, kafka={"mode": "transactional"})
    group = group_of(cfg)
    tor = Tor(stack, cfg, name="r1").start()
    wait_leading([tor], timeout=10)
    tor.wait_log("starting at|resuming from", timeout=30)
    insert_range(stack, table, 0, 10, 10)
    read_all_events(stack, name, 10)
    since = tor.log_size()
    for b in (1, 2, 3):
        stack.broker_ctl("rtt %d 1500" % b)
    stack.broker_ctl("error Produce TOPIC_AUTHORIZATION_FAILED 1")
    insert_range(stack, table, 10, 10, 10)
    time.sleep(0.1)
    stack.redis().set(lease_key(group), "someone-else 999", px=30000)
    tor.wait_log("leader -> stepping_down", timeout=10, since=since)
    for b in (1, 2, 3):
        stack.broker_ctl("rtt %d 0" % b)
    tor.wait_log("stepping_down -> follower", timeout=15, since=since)
    stack.redis().delete(lease_key(group))
    tor.wait_log(LEADING, timeout=10, since=tor.log_size())
    by_n, _ = read_all_events(stack, name, 20, timeout=30)
    assert all(n in by_n for n in range(20))
    assert tor.stop() == 0, tor.log_tail()


def test_checkpoint_set_replays_in_transactional_mode(stack):
    """Transactional mode: an operator's move back (file:pos, then a GTID)
    wins over the further position Kafka committed, because it is the newer
    decision (its token is higher)."""
    name = "to_txset"
    table, cfg = cfg_for(stack, name, kafka={"mode": "transactional"})
    group = group_of(cfg)
    r1 = Tor(stack, cfg, name="r1").start()
    wait_leading([r1], timeout=10)
    insert_range(stack, table, 0, 30, 10)
    read_all_events(stack, name, 30)
    cp = wait_checkpoint_at_end(stack, group)
    back = "%s:%s" % (cp["file"], cp["pos"])
    gtid_back = stack.sql("SELECT @@gtid_binlog_pos")[0][0]
    insert_range(stack, table, 30, 30, 10)
    read_all_events(stack, name, 60)
    wait_checkpoint_at_end(stack, group)
    assert r1.stop() == 0, r1.log_tail()

    for target in (back, gtid_back):
        p = tor_cli(["checkpoint", "set", "--to", target], cfg=cfg)
        assert p.returncode == 0, (p.stdout, p.stderr)
        time.sleep(HA["lease_ms"] / 1000 + 0.2)     # the operator's pause
        r = Tor(stack, cfg, name="r2").start()
        want = 2 if target == back else 3
        by_n, recs = read_all_events(stack, name, 60, timeout=5)
        deadline = time.monotonic() + 30
        while not all(len(by_n.get(n, ())) >= want for n in range(30, 60)):
            assert time.monotonic() < deadline, \
                "replay to %s ignored: %s; log:\n%s" % (
                    target, sorted((n, len(by_n.get(n, ())))
                                   for n in range(30, 60))[:5],
                    r.log_tail())
            time.sleep(0.3)
            by_n, recs = read_all_events(stack, name, 60, timeout=5)
        assert r.stop() == 0, r.log_tail()


def test_checkpoint_set_racing_a_new_leader(stack):
    """A replica acquires between the command's token and its write, and
    publishes: the operator's move must still win, or the command must say
    it did not (never report success for an overwritten move)."""
    name = "to_race"
    table, cfg = cfg_for(stack, name)
    group = group_of(cfg)
    r1 = Tor(stack, cfg, name="r1").start()
    wait_leading([r1], timeout=10)
    insert_range(stack, table, 0, 30, 10)
    read_all_events(stack, name, 30)
    cp = wait_checkpoint_at_end(stack, group)
    back = "%s:%s" % (cp["file"], cp["pos"])
    insert_range(stack, table, 30, 30, 10)
    read_all_events(stack, name, 60)
    wait_checkpoint_at_end(stack, group)
    assert r1.stop() == 0

    path = harness.tor_cli  # noqa: F841 - the helper runs a file we keep
    import os
    import tempfile
    d = tempfile.mkdtemp(prefix="cli-", dir=os.path.join(stack.run_dir,
                                                         "tor-it"))
    cfg_path = os.path.join(d, "tor.cfg")
    harness.write_private(cfg_path, cfg)
    env = dict(os.environ, TOR_TEST_CHECKPOINT_SET_PAUSE_MS="1500")
    cli = subprocess.Popen([harness.default_tor_binary(), "checkpoint",
                            "set", "--to", back, "-c", cfg_path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env=env)
    time.sleep(0.3)
    r2 = Tor(stack, cfg, name="r2").start()     # acquires during the pause
    wait_leading([r2], timeout=10)
    time.sleep(1.5)                             # the command writes now
    insert_range(stack, table, 60, 30, 10)      # r2 publishes and writes
    out, err = cli.communicate(timeout=30)
    by_n, recs = read_all_events(stack, name, 90, timeout=30)
    if cli.returncode == 0:
        deadline = time.monotonic() + 20
        while not all(len(by_n.get(n, ())) >= 2 for n in range(30, 60)):
            assert time.monotonic() < deadline, \
                "checkpoint set reported success (%s) but its move was " \
                "overwritten: events after %s not replayed; checkpoint " \
                "now %s" % (out.strip(), back, checkpoint(stack, group))
            time.sleep(0.3)
            by_n, recs = read_all_events(stack, name, 90, timeout=5)
    else:
        assert "not" in (out + err), (out, err)
    stop_all([r2])
