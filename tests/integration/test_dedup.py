"""De-duplication at takeover (DESIGN.md §3, idempotent mode): a new leader
reads, per partition it produces to, the newest message of its group
(tor.group, tor.pos) and does not publish again a replayed row that
partition holds already.  So a crash of the leader costs no duplicate.

Judged on what Kafka holds: every event exactly once, in per-key order, no
partition with a lower token after a higher one, the count in
tor_events_deduplicated_total and the takeover's log lines.  An operator's
`tor checkpoint set` back still replays: messages published before the move
do not count as published.  Another group writing the same topics is not
mistaken for this one.
"""

import collections
import re
import time

import harness
from harness import Tor, header, tor_cli
from test_failover import kill_rounds
from test_ha import (HA, Feeder, assert_none_lost, check_tokens_grow,
                     first_appearances, group_of, log_lines, n_of,
                     read_all_events, stop_all, wait_leading)
from test_relay import check_per_key_order, checkpoint, insert_range, \
    make_outbox


def config(stack, name, **extra):
    table, ov = make_outbox(stack, name)
    ov.update(extra)
    cfg = harness.base_config(stack, ha=dict(HA),
                              checkpoint={"interval_ms": 200}, **ov)
    return table, cfg


def copies(by_n, total):
    """{n: copies} of the events published more than once."""
    return {n: len(by_n[n]) for n in range(total) if len(by_n.get(n, ())) > 1}


def deduplicated(tors):
    """The rows the takeovers' log lines say were not published again."""
    total = 0
    for t in tors:
        for _, m, _, _ in log_lines(t, r"de-duplication: (\d+) replayed rows"):
            total += int(m.group(1))
    return total


def test_kill9_during_catch_up_publishes_each_event_once(stack):
    """A backlog of 40,000 events, the leader kill -9'd five times while it
    catches up: each event is in Kafka exactly once."""
    name = "dd_backlog"
    table, cfg = config(stack, name)
    total = 40000
    first = Tor(stack, cfg, name="r1").start()
    wait_leading([first], timeout=10)
    first.wait_log("starting at", timeout=30)
    assert first.stop() == 0, first.log_tail()
    insert_range(stack, table, 0, total, 500)
    tors = [Tor(stack, cfg, name=n).start() for n in ("r1", "r2", "r3")]
    wait_leading(tors, timeout=10)
    time.sleep(0.2)
    all_tors = list(tors)
    rounds = kill_rounds(stack, tors, cfg, 5, pause=0.25,
                         started=all_tors)
    by_n, recs = read_all_events(stack, name, total, timeout=120)
    assert_none_lost(by_n, total)
    extra = copies(by_n, total)
    skipped = deduplicated(all_tors)
    print("  5 kills during catch-up (ms to the successor: %s); %d rows "
          "not published again; %d events published twice" % (
              ", ".join("%.0f" % r[0] for r in rounds), skipped, len(extra)))
    assert not extra, "%d events published more than once, e.g. %s" % (
        len(extra), sorted(extra.items())[:5])
    assert skipped > 0, "no takeover skipped anything: the kills came " \
        "after the catch-up"
    reads = sorted(int(m.group(1)) for t in all_tors for _, m, _, _ in
                   log_lines(t, r"read \d+ partitions in (\d+) ms"))
    print("  tail reads (ms, per topic of 4 partitions): %s" % reads)
    check_per_key_order(first_appearances(recs))
    check_tokens_grow(recs)
    stop_all(tors)


def test_kill9_under_steady_load_publishes_each_event_once(stack):
    """Five kill -9s of the leader while rows keep coming."""
    name = "dd_steady"
    table, cfg = config(stack, name)
    tors = [Tor(stack, cfg, name=n).start() for n in ("r1", "r2", "r3")]
    wait_leading(tors, timeout=10)
    feeder = Feeder(stack, table, 0, None, 10, 0.01)
    feeder.start()
    all_tors = list(tors)
    try:
        time.sleep(1.0)
        kill_rounds(stack, tors, cfg, 5, pause=0.8, started=all_tors)
    finally:
        feeder.stop()
    total = feeder.finish()
    by_n, recs = read_all_events(stack, name, total, timeout=60)
    assert_none_lost(by_n, total)
    extra = copies(by_n, total)
    print("  %d events, %d rows not published again, %d twice" % (
        total, deduplicated(all_tors), len(extra)))
    assert not extra, "%d events published more than once, e.g. %s" % (
        len(extra), sorted(extra.items())[:5])
    check_per_key_order(first_appearances(recs))
    check_tokens_grow(recs)
    stop_all(tors)


def test_operator_replay_still_replays(stack):
    """`tor checkpoint set` back to the start: the replay is published
    again, although the partitions hold every row of it; and a crash in
    the middle of the replay repeats none of what it replayed."""
    name = "dd_replay"
    table, cfg = config(stack, name)
    start = stack.binlog_position()
    tors = [Tor(stack, cfg, name=n).start() for n in ("r1", "r2")]
    wait_leading(tors, timeout=10)
    insert_range(stack, table, 0, 300, 30)
    read_all_events(stack, name, 300)
    since = {t: t.log_size() for t in tors}
    p = tor_cli(["checkpoint", "set", "--to", "%s:%d" % start], cfg=cfg)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "moved" in checkpoint(stack, group_of(cfg)), \
        checkpoint(stack, group_of(cfg))
    wait_leading(tors, since=since, timeout=20)
    by_n, recs = harness_read_until(stack, name, 300, 2)
    twice = [n for n in range(300) if len(by_n.get(n, ())) == 2]
    assert len(twice) == 300, "replayed %d of 300" % len(twice)
    check_tokens_grow(recs)
    stop_all(tors)


def harness_read_until(stack, name, total, want, timeout=60):
    from test_ha import read_until
    return read_until(stack, name, lambda b: all(
        len(b.get(n, ())) >= want for n in range(total)), timeout)


def test_other_group_on_the_same_topics_is_not_taken_for_ours(stack):
    """Group B publishes rows at later positions into the same topics;
    group A's leader is killed during its catch-up: A's successor reads
    only A's messages (tor.group), so none of A's rows is skipped."""
    name = "dd_shared"
    table_a, cfg_a = config(stack, name)
    table_b, ov_b = make_outbox(stack, name + "_b")
    ov_b["outbox"]["routes"] = [{"match": "^order$", "topic": name + ".order",
                                 "icase": True},
                                {"match": "^invoice", "topic":
                                 name + ".invoice"}]
    cfg_b = harness.base_config(stack, ha=dict(HA), group=name + "-other",
                                checkpoint={"interval_ms": 200}, **ov_b)
    a = Tor(stack, cfg_a, name="a1").start()
    wait_leading([a], timeout=10)
    a.wait_log("starting at", timeout=30)
    assert a.stop() == 0
    insert_range(stack, table_a, 0, 20000, 500)
    b = Tor(stack, cfg_b, name="b1").start()
    wait_leading([b], timeout=10)
    insert_range(stack, table_b, 100000, 2000, 100)
    time.sleep(1.0)
    tors = [Tor(stack, cfg_a, name=n).start() for n in ("a1", "a2")]
    wait_leading(tors, timeout=10)
    time.sleep(0.3)
    all_tors = list(tors)
    kill_rounds(stack, tors, cfg_a, 2, pause=0.4, started=all_tors)
    by_n, recs = read_all_events(stack, name, 20000, timeout=120)
    assert_none_lost(by_n, 20000)
    mine = [r for r in recs if header(r, "tor.group") ==
            group_of(cfg_a).encode()]
    counts = collections.Counter(n_of(r) for r in mine)
    twice = [n for n, c in counts.items() if c > 1]
    assert not twice, "%d of A's events twice" % len(twice)
    stop_all(tors + [b])
