"""Fast failover (ha.fast_failover, DESIGN.md §3 dead-leader detection):
the lease records the leader's Redis client, and a follower that finds that
client gone from the same Redis takes the lease over at once instead of
waiting for it to expire.

Judged on real outcomes: the time from the kill to the successor's
"leading" line and to its first message in Kafka, the lease and its client
record in Redis, and every event read back once at least, in per-key order,
with no partition holding a lower token after a higher one.  A paused
leader keeps its connection and is waited out as before; a leader whose
connection Redis closes (CLIENT KILL) stops producing at once.
"""

import time

import harness
from harness import Tor
from test_ha import (HA, LEADING, Feeder, assert_none_lost,
                     check_tokens_grow, epoch_of, first_appearances,
                     group_of, lease, log_lines, read_all_events, stop_all,
                     wait_leading)
from test_relay import check_per_key_order, make_outbox

LEASE_MS = HA["lease_ms"]


def config(stack, name, **ha):
    table, ov = make_outbox(stack, name)
    h = dict(HA)
    h.update(ha)
    cfg = harness.base_config(stack, ha=h, checkpoint={"interval_ms": 200},
                              **ov)
    return table, cfg


def client_record(stack, group):
    """(token, run_id, client id) of tor:{G}:lease_client, or None (the
    replicas the record names come last)."""
    v = stack.redis().get("tor:{%s}:lease_client" % group)
    if v is None:
        return None
    tok, run, cid = v.decode().split(" ")[:3]
    return int(tok), run, int(cid)


def kill_rounds(stack, tors, cfg, rounds, pause=1.0, started=None):
    """Kills the lease holder `rounds` times, starting it again as a
    standby each time (appended to started, when given) and waiting pause
    seconds; returns [(ms to the successor's leading line, killed token, new
    token, whether it logged a takeover)]."""
    group = group_of(cfg)
    out = []
    for _ in range(rounds):
        holder = lease(stack, group)
        assert holder is not None, "no lease before a kill"
        victim = [t for t in tors if t.name == holder[0] and t.running()]
        assert len(victim) == 1, (holder, [t.name for t in tors])
        victim = victim[0]
        others = [t for t in tors if t is not victim]
        since = {t: t.log_size() for t in others}
        t_kill = time.time()
        victim.kill9()
        who, tok, ts = wait_leading(others, since, timeout=15)
        assert tok > holder[1], (tok, holder)
        out.append(((ts - t_kill) * 1000, holder[1], tok, bool(log_lines(
            who, r"took the lease over from", since[who]))))
        fresh = Tor(stack, cfg, name=victim.name).start()
        tors[tors.index(victim)] = fresh
        if started is not None:
            started.append(fresh)
        time.sleep(pause)
    return out


def test_kill9_takes_the_lease_over_at_once(stack):
    """Five kill -9s of the leader under a steady write load: each successor
    leads well inside lease_ms (Redis saw the dead process's connection
    close), says whom it took over from, and nothing is lost or
    reordered."""
    name = "fo_kill"
    table, cfg = config(stack, name)
    tors = [Tor(stack, cfg, name=n).start() for n in ("r1", "r2", "r3")]
    wait_leading(tors, timeout=10)
    feeder = Feeder(stack, table, 0, None, 10, 0.02)
    feeder.start()
    try:
        time.sleep(1.5)
        rounds = kill_rounds(stack, tors, cfg, 5)
    finally:
        feeder.stop()
    total = feeder.finish()
    print("  kill -9 -> successor leading (ms): %s" % ", ".join(
        "%.0f" % r[0] for r in rounds))
    for ms, old, new, took in rounds:
        assert ms < LEASE_MS / 2, \
            "successor led %.0f ms after the kill (lease_ms %d): the lease " \
            "was waited out" % (ms, LEASE_MS)
        assert took, "token %d: no takeover line" % new
    by_n, recs = read_all_events(stack, name, total, timeout=60)
    assert_none_lost(by_n, total)
    check_per_key_order(first_appearances(recs))
    check_tokens_grow(recs)
    rec = client_record(stack, group_of(cfg))
    holder = lease(stack, group_of(cfg))
    assert rec is not None and rec[0] == holder[1], (rec, holder)
    stop_all(tors)


def test_without_fast_failover_the_lease_is_waited_out(stack):
    """ha.fast_failover = false: no client is recorded, and a kill -9 costs
    the lease's expiry as before."""
    name = "fo_off"
    table, cfg = config(stack, name, fast_failover=False)
    tors = [Tor(stack, cfg, name=n).start() for n in ("r1", "r2")]
    wait_leading(tors, timeout=10)
    assert client_record(stack, group_of(cfg)) is None
    rounds = kill_rounds(stack, tors, cfg, 1)
    ms = rounds[0][0]
    print("  kill -9 -> successor leading: %.0f ms" % ms)
    assert ms >= LEASE_MS / 2, \
        "successor led %.0f ms after the kill with fast_failover off" % ms
    stop_all(tors)


def test_paused_leader_is_waited_out(stack):
    """SIGSTOP keeps the leader's connection open: its client is still
    connected, so the follower waits for the lease to expire."""
    name = "fo_pause"
    table, cfg = config(stack, name)
    tors = [Tor(stack, cfg, name=n).start() for n in ("r1", "r2")]
    leader, token, _ = wait_leading(tors, timeout=10)
    other = [t for t in tors if t is not leader][0]
    since = {other: other.log_size()}
    t_stop = time.time()
    leader.sigstop()
    try:
        who, tok, ts = wait_leading([other], since, timeout=15)
        ms = (ts - t_stop) * 1000
        print("  paused %s; %s led after %.0f ms" % (leader.name, who.name,
                                                      ms))
        assert ms >= LEASE_MS - 500, \
            "successor led %.0f ms after a SIGSTOP (lease_ms %d): a live " \
            "client's lease was taken over" % (ms, LEASE_MS)
        assert not log_lines(who, r"took the lease over from"), \
            who.log_tail()
    finally:
        leader.sigcont()
    stop_all(tors)


def tokens_down(recs):
    """How many messages carry a lower token than one before them in their
    partition."""
    top, n = {}, 0
    for r in sorted(recs, key=lambda r: (r.topic, r.partition, r.offset)):
        k = (r.topic, r.partition)
        n += epoch_of(r) < top.get(k, 0)
        top[k] = max(epoch_of(r), top.get(k, 0))
    return n


def elector_times(tor, regex, since):
    """Times of tor's elector lines matching regex, from offset since."""
    return [ts for ts, _, comp, _ in log_lines(tor, regex, since)
            if comp == "elector"]


def test_connection_killed_leader_stops_before_a_successor(stack):
    """Redis closes the leader's connection (CLIENT KILL, as a proxy or an
    operator may) while the leader is alive, and a hand-off wake-up is
    pushed in the same round trip, so that the follower looks the moment
    Redis has dropped the leader's client (its poll may fall there at any
    time).  The leader stops producing at once; a successor takes the
    lease over, and its "-> leader" line comes after the old leader's
    "leader -> " line (the margin is printed); no partition holds the old
    token after the new one; nothing is lost.  Under writes, until the
    other replica took over four times (the old leader may win the lease
    back itself: it gives it back once it stopped, and acquires again)."""
    name = "fo_ckill"
    table, cfg = config(stack, name)
    group = group_of(cfg)
    tors = [Tor(stack, cfg, name=n).start() for n in ("r1", "r2")]
    wait_leading(tors, timeout=10)
    feeder = Feeder(stack, table, 0, None, 5, 0.005)
    feeder.start()
    margins, again = [], 0
    try:
        time.sleep(1.0)
        while len(margins) < 4:
            assert again < 4, "the old leader kept the lease %d times" % (
                again)
            rec = client_record(stack, group)
            assert rec is not None, "no client record"
            holder = lease(stack, group)
            leader = [t for t in tors if t.name == holder[0]][0]
            since = {t: t.log_size() for t in tors}
            pipe = stack.redis().pipeline(transaction=False)
            pipe.execute_command("CLIENT", "KILL", "ID", rec[2])
            pipe.lpush("tor:{%s}:handoff" % group, "test")
            pipe.execute()
            who, tok, ts = wait_leading(tors, since, timeout=10)
            assert tok > holder[1], (tok, holder)
            leader.wait_log(r"msg=\"leader -> ", timeout=5,
                            since=since[leader])
            stop = elector_times(leader, r"^leader -> ", since[leader])
            start = elector_times(who, r"-> leader: ", since[who])
            assert stop and start, (leader.log_tail(), who.log_tail())
            if who is leader:
                again += 1
            else:
                margins.append((start[0] - stop[0]) * 1000)
            time.sleep(1.0)
    finally:
        feeder.stop()
        print("  the successor led %s ms after the old leader stopped%s" % (
            ", ".join("%.0f" % m for m in margins),
            "; the old leader won the lease back %d times" % again
            if again else ""))
    total = feeder.finish()
    by_n, recs = read_all_events(stack, name, total, group=group)
    print("  %d messages with a lower token than one before them in their "
          "partition" % tokens_down(recs))
    assert all(m > 0 for m in margins), \
        "a successor led before the old leader stopped: %s ms" % margins
    assert_none_lost(by_n, total)
    check_per_key_order(first_appearances(recs))
    check_tokens_grow(recs)
    for t in tors:
        assert t.running(), "%s exited: %s" % (t.name, t.log_tail(30))
    stop_all(tors)
