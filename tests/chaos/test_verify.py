#!/usr/bin/python3
"""The verifier, shown to find what it claims to find.

Against the chaos stack (MariaDB, the dev broker): outbox rows in MySQL, and
records produced by hand to a topic, shaped as tor would shape them but
with a loss, a duplicate, a reorder, a zombie token or a row named by two
positions.  tests/chaos/verify must say so and exit as documented.  Each
case uses its own group (tor.group header), so the cases share one topic.

Run by `tests/run.sh chaos`; ends with "N passed, N failed".
"""

import json
import os
import secrets
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from confluent_kafka import Producer  # noqa: E402

import backends  # noqa: E402
import verifier  # noqa: E402

harness = backends.harness
TOPIC = "chaos.order"
TABLE = "shop.verify_outbox"

# ids 1..8: keys a (1, 3, 5, 7) and b (2, 4, 6, 8), committed in id order;
# row id n is published from GTID 0-1-(100+n), row 0.
ROWS = [(n, "a" if n % 2 else "b") for n in range(1, 9)]


def pos_of(n):
    return "0-1-%d:0" % (100 + n)


def publish(stack, group, records):
    """records: (id, token[, pos]) in publishing order, all to partition 0
    (keys share a partition, so order within it is the test's)."""
    p = Producer({"bootstrap.servers": stack.brokers, "acks": "all"})
    for rec in records:
        rid, token = rec[0], rec[1]
        pos = rec[2] if len(rec) > 2 else pos_of(rid)
        key = dict(ROWS)[rid]
        p.produce(TOPIC, key=key.encode(), value=b"v", partition=0,
                  headers=[("tor.id", str(rid).encode()),
                           ("tor.pos", pos.encode()),
                           ("tor.epoch", str(token).encode()),
                           ("tor.group", group.encode())])
    if p.flush(30) != 0:
        raise AssertionError("records not delivered")


def verify(stack, group, *extra):
    cmd = [os.path.join(HERE, "verify"), "--brokers", stack.brokers,
           "--topics", TOPIC, "--mysql",
           "root@127.0.0.1:%d/shop" % stack.mysql_port, "--table", TABLE,
           "--group", group, "--timeout", "60"] + list(extra)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout + p.stderr


def case(stack, records, *extra):
    group = "verify-" + secrets.token_hex(3)
    publish(stack, group, records)
    return verify(stack, group, *extra)


def with_timeline(stack, group, entries, *runs):
    """Runs verify once per argument list in runs, with a timeline file
    of entries (dicts) for the group; returns [(rc, out), ...]."""
    tl = os.path.join(stack.run_dir, "verify-timeline-%s.jsonl" % group)
    with open(tl, "w") as f:
        f.writelines(json.dumps(e) + "\n" for e in entries)
    try:
        return [verify(stack, group, "--timeline", tl, *extra)
                for extra in runs]
    finally:
        os.remove(tl)


def expect(rc, out, want_rc, *texts):
    if rc != want_rc:
        raise AssertionError("exit %d, wanted %d:\n%s" % (rc, want_rc, out))
    flat = " ".join(out.split())
    for t in texts:
        if " ".join(t.split()) not in flat:
            raise AssertionError("no %r in:\n%s" % (t, out))


ALL_ONCE = [(n, 1) for n in range(1, 9)]


def test_clean_run_passes(stack):
    rc, out = case(stack, ALL_ONCE)
    expect(rc, out, 0, "lost:       0", "duplicated: 0 copies",
           "reordered:  0", "zombies:    0", "verdict: PASS")


def test_a_lost_row_fails(stack):
    rc, out = case(stack, [r for r in ALL_ONCE if r[0] != 4])
    expect(rc, out, 1, "lost:       1 e.g. id 4", "verdict: FAIL")


def test_duplicates_reported_in_idempotent_mode(stack):
    # A takeover republishing 5..8 under token 2: at-least-once, reported.
    rc, out = case(stack, ALL_ONCE + [(n, 2) for n in range(5, 9)])
    expect(rc, out, 0, "duplicated: 4 copies of 4 rows", "verdict: PASS")


def test_duplicates_fail_in_transactional_mode(stack):
    recs = ALL_ONCE + [(7, 2)]
    rc, out = case(stack, recs, "--mode", "transactional")
    expect(rc, out, 1, "duplicates judged (read_committed): 1",
           "verdict: FAIL")


def test_duplicates_not_judged_on_the_dev_broker(stack):
    recs = ALL_ONCE + [(7, 2)]
    rc, out = case(stack, recs, "--mode", "transactional", "--dev-broker")
    expect(rc, out, 0, "duplicates not judged", "verdict: PASS")


def test_a_reorder_fails(stack):
    # Key a: row 5 first, then 3 (binlog order 3 before 5).
    recs = [(1, 1), (2, 1), (5, 1), (3, 1), (4, 1), (6, 1), (7, 1), (8, 1)]
    rc, out = case(stack, recs)
    expect(rc, out, 1, "reordered:  1", "key a: row 3 first came after row 5",
           "verdict: FAIL")


def test_a_zombie_token_fails(stack):
    # Token 3 publishes 1..4, then token 2 (an ex-leader) publishes 5..8.
    recs = [(n, 3) for n in range(1, 5)] + [(n, 2) for n in range(5, 9)]
    rc, out = case(stack, recs)
    expect(rc, out, 1, "zombies:    4", "token 2 after token 3",
           "verdict: FAIL")


def test_a_paused_leaders_queue_is_told_apart(stack):
    # Token 2's leader was SIGSTOPped; token 3 took over; token 2's queue
    # went out when it resumed.  Reported, not judged, where nothing fences
    # producers; a failure in transactional mode on a real broker.
    group = "verify-" + secrets.token_hex(3)
    recs = [(n, 2) for n in range(1, 5)] + [(n, 3) for n in range(5, 9)] + \
        [(5, 2), (6, 2)]
    publish(stack, group, recs)
    (rc, out), (rc_t, out_t) = with_timeline(stack, group, [
        {"t": 0.0, "event": "leader", "holder": "r1", "token": 2},
        {"t": 5.0, "event": "fault", "kind": "stop",
         "detail": "leader r1 for 3.0 s"},
        {"t": 7.0, "event": "leader", "holder": "r2", "token": 3}],
        (), ("--mode", "transactional"))
    expect(rc, out, 0, "zombies:    0",
           "a paused leader's queue, sent when it resumed: 2 records of "
           "token(s) 2", "verdict: PASS")
    expect(rc_t, out_t, 1, "zombies:    2", "verdict: FAIL")


def test_a_row_named_by_two_positions_fails(stack):
    recs = ALL_ONCE + [(6, 2, "0-1-999:3")]
    rc, out = case(stack, recs)
    expect(rc, out, 1, "tor.pos differs between copies: 1 rows",
           "verdict: FAIL")


def test_timeline_attributes_duplicates(stack):
    # Token 2 began after a kill fault: its copies are the kill's; a
    # handover's copies count against the run in any mode.
    group = "verify-" + secrets.token_hex(3)
    publish(stack, group, ALL_ONCE + [(7, 2), (8, 2), (8, 3)])
    [(rc, out)] = with_timeline(stack, group, [
        {"t": 0.0, "event": "leader", "holder": "r1", "token": 1},
        {"t": 5.0, "event": "fault", "kind": "kill"},
        {"t": 7.0, "event": "leader", "holder": "r2", "token": 2},
        {"t": 9.0, "event": "fault", "kind": "handover"},
        {"t": 9.1, "event": "leader", "holder": "r3", "token": 3}], ())
    expect(rc, out, 1, "kill                     2",
           "handover                 1", "duplicates that count: 1",
           "verdict: FAIL")


def test_an_operators_replay_spans_later_leaderships(stack):
    # Token 2 published 1..8; an operator moved the checkpoint back (token
    # 3); token 4 replayed 7, was killed, and token 5 went on with 8.  Both
    # copies are the replay's: rows published before the move and again
    # after it, whichever leadership finished the replay.
    group = "verify-" + secrets.token_hex(3)
    publish(stack, group, [(n, 2) for n in range(1, 9)] + [(7, 4), (8, 5)])
    [(rc, out)] = with_timeline(stack, group, [
        {"t": 0.0, "event": "leader", "holder": "r1", "token": 2},
        {"t": 5.0, "event": "fault", "kind": "operator"},
        {"t": 5.1, "event": "operator", "token": 3, "to": "binlog.000001:4"},
        {"t": 5.2, "event": "leader", "holder": "r1", "token": 4},
        {"t": 6.0, "event": "fault", "kind": "kill"},
        {"t": 6.5, "event": "leader", "holder": "r2", "token": 5}],
        ("--mode", "transactional"))
    expect(rc, out, 0, "operator                 2", "verdict: PASS")


def main():
    b = backends.LocalBackend()
    os.environ.update(b._env())
    stack = harness.Stack(b.run_dir)
    stack.start(env=b._env())
    passed = failed = 0
    try:
        stack.sql("DROP TABLE IF EXISTS %s" % TABLE)
        stack.sql("CREATE TABLE %s (id BIGINT PRIMARY KEY, "
                  "aggregate_id VARCHAR(64) NOT NULL)" % TABLE)
        for n, key in ROWS:
            stack.sql("INSERT INTO %s VALUES (%%s, %%s)" % TABLE, n, key)
        tests = [(k, v) for k, v in sorted(globals().items())
                 if k.startswith("test_") and callable(v)]
        for name, fn in tests:
            try:
                if fn.__code__.co_argcount:
                    fn(stack)
                else:
                    fn()
                passed += 1
                print("ok - chaos.%s" % name, flush=True)
            except Exception as e:
                failed += 1
                print("not ok - chaos.%s: %s" % (name, e), flush=True)
    finally:
        stack.stop()
    print("chaos verify: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
