"""Every leadership the elector grants is ended by exactly one relay
session (DESIGN.md §3), and a takeover resumes from the newest decision:
a lease won by an acquire whose reply came after its deadline, a paused
winner of the lease that wakes after its successor fenced, a paused
leader's late position record in Kafka, a row the broker refused as too
large met again by the next leader.  Real MariaDB, Redis and Apache Kafka
(one node); a proxy on the Redis link holds the reply of a won acquire
(tests/integration/proxy.py), one on the Kafka link slows a takeover.
"""

import json
import time

from confluent_kafka import Producer

import harness
from harness import Tor, header, read_all, wait_for
from proxy import Proxy
from test_ha import (HA, LEADING, epoch_of, lease_key, log_lines,
                     read_all_events, stop_all, wait_leading)
from test_relay import insert_range, make_outbox


def config(stack, name, **extra):
    table, ov = make_outbox(stack, name)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(ov.get(k), dict):
            ov[k] = dict(ov[k], **v)
        else:
            ov[k] = v
    return table, harness.base_config(stack, ha=dict(HA),
                                      checkpoint={"interval_ms": 200}, **ov)


def tokens_led(tor, since=0):
    return [int(m.group(1)) for _, m, _, _ in log_lines(tor, LEADING, since)]


def test_acquire_won_late_competes_again(stack):
    """The reply of a won acquire reaches the replica after the lease's
    deadline (the replica is paused while the reply is on the wire): the
    leadership is over the moment it is granted.  The replica must end it
    and compete again, not sit stepping down for ever."""
    name = "ld_late"
    p = Proxy(stack.redis_port).start()
    table, cfg = config(stack, name, redis={"port": p.port})
    group = harness.config_group(cfg)
    r = stack.redis()
    r.set(lease_key(group), "someone-else 999", px=60000)
    tor = Tor(stack, cfg, name="r1").start()
    tor.wait_log("follower", timeout=20)
    p.hold_acquire_win(0.3)
    r.delete(lease_key(group))
    assert p.acquire_held.wait(10), "no acquire won"
    tor.sigstop()
    t_stop = time.time()
    time.sleep(HA["lease_ms"] / 1000 + 0.5)
    since = tor.log_size()
    tor.sigcont()
    insert_range(stack, table, 0, 20, 5)
    deadline = time.monotonic() + 15
    while not tokens_led(tor, since):
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    states = [m.group(0) for _, m, _, _ in
              log_lines(tor, r"\w+ -> \w+", since)]
    print("  paused %.1f s with the won acquire's reply held; then: %s" % (
        time.time() - t_stop, "; ".join(states)))
    assert tokens_led(tor, since), \
        "the replica never led again after a late acquire reply:\n" + \
        tor.log_tail()
    by_n, _ = read_all_events(stack, name, 20, timeout=30)
    assert all(n in by_n for n in range(20))
    assert tor.stop() == 0, tor.log_tail()
    p.stop()


def test_paused_winner_does_not_fence_its_successor(stack):
    """Transactional mode: r1 wins the lease and is paused before its
    init_transactions (its Kafka replies are slowed, so it is still
    listing topics); r2 takes over and publishes.  Woken, r1 must see that
    its leadership is over before it fences anyone: r2's producer is not
    fenced, its transactions are not aborted, and every row is read once
    by a read_committed consumer."""
    name = "ld_fence"
    kp = stack.kafka_proxy()
    table, cfg1 = config(stack, name, kafka={"mode": "transactional",
                                             "brokers": kp.brokers})
    _, cfg2 = config(stack, name, kafka={"mode": "transactional"},
                     group=harness.config_group(cfg1))
    kp.delay_replies(3.0)
    r1 = Tor(stack, cfg1, name="r1").start()
    r1.wait_log(LEADING, timeout=30)
    r1.sigstop()
    r2 = Tor(stack, cfg2, name="r2").start()
    wait_leading([r2], timeout=20)
    r2.wait_log("init_transactions done", timeout=30)
    since2 = r2.log_size()
    insert_range(stack, table, 0, 100, 10)
    read_all_events(stack, name, 100, timeout=30)
    kp.delay_replies(0)
    since1 = r1.log_size()
    r1.sigcont()
    r1.wait_log(r"stepping_down -> follower", timeout=20, since=since1)
    insert_range(stack, table, 100, 100, 10)
    by_n, recs = read_all_events(stack, name, 200, timeout=30)
    time.sleep(1.0)
    by_n, recs = read_all_events(stack, name, 200, timeout=30)
    woke = r1.log_text()[since1:]
    fenced = log_lines(r2, r"fenced", since2)
    print("  r1 after waking: %s" % "; ".join(
        ln.split('msg="', 1)[-1].rstrip('"') for ln in woke.splitlines()
        if "init_transactions" in ln or "->" in ln or "lost" in ln))
    print("  r2 fenced: %d line(s); tokens in Kafka: %s" % (
        len(fenced), sorted({epoch_of(r) for r in recs})))
    stop_all([r1, r2])
    assert "init_transactions done" not in woke, woke
    assert not fenced, "r2 was fenced by the woken r1:\n" + r2.log_tail()
    dups = [n for n, rs in by_n.items() if len(rs) > 1]
    assert all(n in by_n for n in range(200)) and not dups, dups[:10]


def test_late_position_record_of_a_lower_token(stack):
    """Kafka's copy of the checkpoint holds, after the leader's last record
    (token T), a record of token T-1 naming an older position: a paused
    leader's record that reached the broker late.  Redis then loses its
    data.  The next leader must resume from token T's record and take a
    token above T, not resume from the late record with a token equal to
    T."""
    name = "ld_late_record"
    ckpt = name + ".checkpoints"
    table, cfg = config(stack, name, kafka={"checkpoint_topic": ckpt})
    group = harness.config_group(cfg)
    stack.redis().set("tor:{%s}:epoch" % group, 10)     # tokens from 11
    r1 = Tor(stack, cfg, name="r1").start()
    wait_leading([r1], timeout=20)
    insert_range(stack, table, 0, 30, 10)
    read_all_events(stack, name, 30, timeout=30)
    assert r1.stop() == 0, r1.log_tail()
    t1 = tokens_led(r1)[-1]
    records = [m for m in read_all(stack.brokers, ckpt, timeout=10)
               if m.key == group.encode()]
    last = records[-1].value.decode()
    assert ("token=%d " % t1) in last, last
    # The late record: the same leader's predecessor's kind, an older
    # position (the start of the first binlog file).
    fields = dict(f.split("=", 1) for f in last.split()[1:])
    late = "v2 token=%d file=%s pos=4 gtid=- done=- rows=0" % (
        t1 - 1, fields["file"])
    prod = Producer({"bootstrap.servers": stack.brokers})
    prod.produce(ckpt, key=group, value=late, partition=0)
    assert prod.flush(10) == 0
    stack.redis().delete("tor:{%s}:checkpoint" % group,
                         "tor:{%s}:epoch" % group)
    insert_range(stack, table, 30, 10, 10)
    r2 = Tor(stack, cfg, name="r2").start()
    m = r2.wait_log(r"resuming from .*written by token (\d+)", timeout=30)
    by_n, recs = read_all_events(stack, name, 40, timeout=30)
    t2 = tokens_led(r2)[-1]
    assert r2.stop() == 0, r2.log_tail()
    print("  r1 led with token %d; late record of token %d; r2 resumed from "
          "a record of token %s and leads with token %d" % (
              t1, t1 - 1, m.group(1), t2))
    assert int(m.group(1)) == t1, m.group(0)
    assert t2 > t1, "r2's token %d is not above r1's %d" % (t2, t1)
    assert all(n in by_n for n in range(40))


# The topic's limit, below the client's message.max.bytes (1 MB): the
# client lets the row through and the broker refuses it.
TOPIC_MAX_BYTES = 2000


def test_refused_row_known_to_the_next_leader(stack):
    """The broker refuses a row as too large; its leader is killed before
    its checkpoint passes the row.  The next leader (another replica) must
    send the row where outbox.unrouted says (the dead-letter topic) without
    offering it to the broker again: no second refusal, no second session
    restart, the row dead-lettered once, the rows around it published."""
    name = "ld_too_large"
    stack.create_topic(name + ".order", 3,
                       config={"max.message.bytes": str(TOPIC_MAX_BYTES)})
    table, cfg = config(stack, name,
                        outbox={"unrouted": "dlq:%s.dlq" % name})
    tors = [Tor(stack, cfg, name=n).start() for n in ("r1", "r2")]
    leader, _, _ = wait_leading(tors, timeout=20)
    leader.wait_log("starting at|resuming from", timeout=30)
    heir = [t for t in tors if t is not leader][0]
    insert_range(stack, table, 100, 3, 3)        # warm: metadata, batches
    wait_for(stack.brokers, name + ".order", 2, timeout=30)
    since = {t: t.log_size() for t in tors}
    stack.sql_many([("INSERT INTO %s (aggregate_type, aggregate_id, payload, "
                     "uuid) VALUES ('order', 'big', %%s, 'uuid-big')" % table,
                     [json.dumps({"n": 1000, "big": "x" * 3000})])],
                   user="app")
    leader.wait_log("the broker refused the message of row", timeout=30,
                    since=since[leader])
    leader.kill9()
    insert_range(stack, table, 0, 10, 10)
    wait_for(stack.brokers, name + ".dlq", 1, timeout=30)
    by_n, _ = read_all_events(stack, name, 10, timeout=30)
    time.sleep(0.5)
    dlq = read_all(stack.brokers, name + ".dlq", timeout=10)
    again = log_lines(heir, r"the broker refused the message of row",
                      since[heir])
    print("  %s refused, killed; %s: %d refusal(s) of its own, %d "
          "session(s); dead letters: %d" % (
              leader.name, heir.name, len(again),
              len(tokens_led(heir, since[heir])), len(dlq)))
    stop_all([heir])
    assert all(n in by_n for n in range(10)), sorted(by_n)
    assert [r.key for r in dlq] == [b"big"], [(r.key, r.headers)
                                               for r in dlq]
    assert b"too large" in header(dlq[0], "tor.error")
    assert not again, "the next leader offered the row to the broker " \
        "again:\n" + heir.log_tail()
