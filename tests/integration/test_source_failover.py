"""A MariaDB primary failover under a running relay (DESIGN.md §3): two
real servers in GTID replication behind a proxy that moves
(failover_db.DbPair).  The two servers' binlogs have the same file names
and different offsets: a file:pos of one names some other place, or none,
on the other.
"""

import json
import time

import harness
from failover_db import DbPair
from harness import Tor, read_all
from test_ha import HA, wait_leading
from test_relay import checkpoint, insert_range, make_outbox
from test_source_identity import insert_rows, published_then_stopped, \
    rows_of

PER_TXN = 5


def published(stack, name, group):
    """{n: count} of the group's records in both topics."""
    out = {}
    for t in (name + ".order", name + ".invoice"):
        for r in read_all(stack.brokers, t, timeout=10):
            if harness.header(r, "tor.group") == group.encode():
                n = json.loads(r.value)["n"]
                out[n] = out.get(n, 0) + 1
    return out


def wait_published(stack, name, group, ns, tor, timeout=60):
    """Until every n of ns is published or tor exits; the counts."""
    want = set(ns)
    deadline = time.monotonic() + timeout
    while True:
        got = published(stack, name, group)
        if want <= set(got) or tor.proc.poll() is not None or \
                time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def exit_code(tor, timeout):
    try:
        return tor.wait(timeout=timeout)
    except AssertionError:
        return None


def error_lines(tor):
    return [ln for ln in tor.log_text().splitlines()
            if "level=error" in ln or "level=fatal" in ln or
            "reopening" in ln]


def setup(stack, name):
    pair = DbPair(stack)
    table, over = make_outbox(stack, name)
    for t in (name + ".order", name + ".invoice"):
        stack.create_topic(t, 1)
    cfg = harness.base_config(stack, ha=dict(HA), **over)
    return pair, table, cfg, harness.config_group(cfg)


def lead_and_publish(stack, name, table, cfg, group, count):
    """A leader r1 that published rows 0..count-1."""
    r1 = Tor(stack, cfg, name="r1").start()
    wait_leading([r1], timeout=20)
    r1.wait_log("starting at", timeout=60)
    insert_range(stack, table, 0, count, PER_TXN)
    got = wait_published(stack, name, group, range(count), r1)
    assert set(range(count)) <= set(got), r1.log_tail()
    return r1


def test_switchover_follows_by_gtid(stack):
    """A planned switchover under a running leader: rows 0..149 on the
    primary, published; the primary goes read-only, the replica catches up
    and is promoted, the proxy moves, rows 150..299 go to the promoted
    server.  Every row must be published once.  The leader's position is
    the old primary's file:pos; the promoted server's binlog has the same
    file name at other offsets, so it can only be followed by GTID."""
    name = "sf_switch"
    pair, table, cfg, group = setup(stack, name)
    try:
        r1 = lead_and_publish(stack, name, table, cfg, group, 150)
        before = checkpoint(stack, group)
        pair.sql(pair.primary_port, "SET GLOBAL read_only = 1")
        at = pair.wait_caught_up()
        p_state = pair.state(pair.primary_port)
        r_state = pair.state(pair.replica_port)
        pair.promote()
        pair.switch()
        insert_range(stack, table, 150, 150, PER_TXN)
        got = wait_published(stack, name, group, range(300), r1,
                             timeout=45)
        rc = r1.proc.poll()
        new = sorted(n for n in got if n >= 150)
        dups = sorted(n for n, c in got.items() if c > 1)
        print("  checkpoint before %s:%s gtid %s; both at GTID %s" % (
            before.get("file"), before.get("pos"), before.get("gtid"), at))
        print("  primary server_id %d binlog end %s:%d; replica server_id "
              "%d binlog end %s:%d" % (p_state[0], p_state[2], p_state[3],
                                       r_state[0], r_state[2], r_state[3]))
        print("  after the switch: r1 exit %s, rows 150..299 published %d "
              "of 150, duplicates %d" % (rc, len(new), len(dups)))
        for ln in error_lines(r1)[-4:]:
            print("  r1: " + ln[:400])
        assert rc is None, "r1 halted (exit %s): %s" % (rc, r1.log_tail())
        assert new == list(range(150, 300)), (len(new), new[:5])
        assert not dups, dups[:10]
    finally:
        pair.close()


def lossy_failover(stack, name, new):
    """The replica is held back (STOP SLAVE) while the primary commits rows
    100..149, which the leader publishes; the replica is then promoted, the
    proxy moves, and it commits rows 1000.. (`new` of them) with the
    sequence numbers the lost transactions had.  The leader must halt naming both servers
    and `tor checkpoint set`, never publish those rows as if they followed
    149 nor skip them as published; a leader
    started afterwards (a new session, whose start checks the source's
    identity) must halt too, naming the server and `tor checkpoint
    set`."""
    pair, table, cfg, group = setup(stack, name)
    try:
        r1 = lead_and_publish(stack, name, table, cfg, group, 100)
        pair.wait_caught_up()
        pair.hold_back()
        insert_range(stack, table, 100, 50, PER_TXN)
        got = wait_published(stack, name, group, range(150), r1)
        assert set(range(150)) <= set(got), r1.log_tail()
        time.sleep(1)      # a checkpoint after row 149
        cp = checkpoint(stack, group)
        p_state = pair.state(pair.primary_port)
        r_state = pair.state(pair.replica_port)
        pair.promote()
        pair.switch()
        insert_range(stack, table, 1000, new, PER_TXN)
        rc1 = exit_code(r1, 30)
        after = published(stack, name, group)
        new1 = sorted(n for n in after if n >= 1000)
        print("  checkpoint %s:%s gtid %s" % (cp.get("file"), cp.get("pos"),
                                              cp.get("gtid")))
        print("  old primary server_id %d gtid %s end %s:%d; promoted "
              "server_id %d gtid %s end %s:%d (before its new rows)" % (
                  p_state[0], p_state[1], p_state[2], p_state[3],
                  r_state[0], r_state[1], r_state[2], r_state[3]))
        print("  running leader r1: exit %s, new rows published %d of %d"
              % (rc1, len(new1), new))
        for ln in error_lines(r1)[-3:]:
            print("  r1: " + ln[:600])
        if rc1 is None:
            r1.stop()
        r2 = Tor(stack, cfg, name="r2").start()
        rc2 = exit_code(r2, 30)
        after = published(stack, name, group)
        new2 = sorted(n for n in after if n >= 1000)
        print("  new session r2: exit %s, new rows published %d of %d" % (
            rc2, len(new2), new))
        for ln in error_lines(r2)[-2:]:
            print("  r2: " + ln[:900])
        assert rc1 == 1, "r1 did not halt (exit %s); new rows published: " \
            "%s" % (rc1, new1)
        assert not new1, new1
        log1 = r1.log_text()
        assert "not server_id 1" in log1 and "is now server_id 2" in log1 \
            and "tor checkpoint set" in log1, r1.log_tail()
        assert rc2 == 1, (rc2, r2.log_tail())
        assert not new2, new2
        log2 = r2.log_text()
        assert "not the server" in log2 and "tor checkpoint set" in log2, \
            r2.log_tail()
    finally:
        pair.close()


def test_lossy_failover_halts(stack):
    """A lossy failover; the promoted server is still short of the lost
    transactions' sequence numbers (4 new transactions for 10 lost)."""
    lossy_failover(stack, "sf_lossy", 20)


def test_lossy_failover_overtaken_halts(stack):
    """A lossy failover whose promoted server then wrote more transactions
    than were lost (20 for 10): its gtid_binlog_pos is past the
    checkpoint's sequence number, yet the checkpoint's GTID (written by the
    old primary's server_id) is not in its binlog."""
    lossy_failover(stack, "sf_overtaken", 100)


def test_checkpoint_of_another_server_id_halts(stack):
    """One server.  The checkpoint's GTID is made one written by a
    server_id this server's binlog never had, one sequence number behind
    the server's state at the checkpoint's file:pos: what a promoted
    replica that overtook the lost transactions shows when its binlog file
    has the old primary's name and an event starts at the old offset.  A
    new session must halt, not resume by file:pos."""
    name = "sf_other_id"
    table, topic, cfg, group, cp = published_then_stopped(stack, name)
    d, _, n = cp["gtid"].split(",")[0].split("-")
    other = "%s-77-%d" % (d, int(n) - 1)
    stack.redis().hset("tor:{%s}:checkpoint" % group, "gtid", other)
    insert_rows(stack, table, range(5, 15))
    r2 = Tor(stack, cfg, name="r2").start()
    rc = exit_code(r2, 20)
    new = [x for x in rows_of(stack.brokers, topic, group) if x >= 5]
    print("  checkpoint %s:%s, GTID %s made %s; r2 exit %s, new rows "
          "published %d of 10" % (cp["file"], cp["pos"], cp["gtid"], other,
                                  rc, len(new)))
    for ln in error_lines(r2)[-1:]:
        print("  r2: " + ln[:600])
    assert rc == 1, "r2 did not halt: %d new rows published by file:pos" \
        % len(new)
    assert "not the server" in r2.log_text(), r2.log_tail()
