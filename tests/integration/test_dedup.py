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


def test_three_groups_sharing_topics_each_once(stack):
    """Three groups, each with its outbox table, publish into the same two
    topics; each group's leader is kill -9'd twice while it catches up a
    backlog, with the others writing meanwhile: each group's successors
    read only their group's messages (tor.group), so every event of every
    group is in Kafka exactly once."""
    name = "dd_shared"
    groups = []
    for g in ("a", "b", "c"):
        table, ov = make_outbox(stack, "%s_%s" % (name, g))
        ov["outbox"]["routes"] = [
            {"match": "^order$", "topic": name + ".order", "icase": True},
            {"match": "^invoice", "topic": name + ".invoice"}]
        cfg = harness.base_config(stack, ha=dict(HA),
                                  group="%s-%s" % (name, g),
                                  checkpoint={"interval_ms": 200}, **ov)
        groups.append((g, table, cfg))
    # Each group's checkpoint at the binlog's end, then its backlog.
    for g, table, cfg in groups:
        t = Tor(stack, cfg, name=g + "0").start()
        wait_leading([t], timeout=10)
        t.wait_log("starting at", timeout=30)
        assert t.stop() == 0, t.log_tail()
    base = {"a": 0, "b": 100000, "c": 200000}
    for g, table, _ in groups:
        insert_range(stack, table, base[g], 12000, 500)
    runs = {}
    for g, table, cfg in groups:
        runs[g] = [Tor(stack, cfg, name="%s%d" % (g, i)).start()
                   for i in (1, 2)]
    for g, table, cfg in groups:
        wait_leading(runs[g], timeout=10)
    time.sleep(0.2)
    started = []
    for _ in range(2):
        for g, table, cfg in groups:
            kill_rounds(stack, runs[g], cfg, 1, pause=0.1, started=started)
    want = set()
    for g in base:
        want.update(range(base[g], base[g] + 12000))
    from test_ha import read_until
    by_n, recs = read_until(stack, name, lambda b: want <= set(b),
                            timeout=120)
    missing = sorted(want - set(by_n))
    assert not missing, "lost %d, first %s" % (len(missing), missing[:10])
    for g, _, cfg in groups:
        mine = [r for r in recs if header(r, "tor.group") ==
                group_of(cfg).encode()]
        counts = collections.Counter(n_of(r) for r in mine)
        twice = sorted(n for n, c in counts.items() if c > 1)
        assert not twice, "group %s: %d events twice, e.g. %s" % (
            g, len(twice), twice[:5])
        assert set(counts) == set(range(base[g], base[g] + 12000)), g
    for g in runs:
        stop_all(runs[g])
