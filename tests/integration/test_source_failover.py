"""A MariaDB primary failover under a running relay (DESIGN.md §3): two
real servers in GTID replication behind a proxy that moves
(failover_db.DbPair).  The two servers' binlogs have the same file names
and different offsets: a file:pos of one names some other place, or none,
on the other.

The checkpoint names the server its file:pos belongs to (server_id).  A
session on another server resumes by GTID, if that server holds the
checkpoint's GTIDs; a stream that reaches another server within a
session ends the session, and the next one resumes so.  What must be
published is what the server the proxy leads to at the end holds: the
rows committed there (replicated from the old primary, or its own).
"""

import json
import os
import re
import secrets
import signal
import threading
import time

import pymysql

import harness
from failover_db import DbPair
from harness import Tor, read_all, tor_cli
from test_ha import HA, wait_leading
from test_relay import check_per_key_order, checkpoint, insert_range, \
    make_outbox
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


def setup(stack, name, mode=None, partitions=1, **extra):
    pair = DbPair(stack)
    table, over = make_outbox(stack, name)
    for t in (name + ".order", name + ".invoice"):
        stack.create_topic(t, partitions)
    if mode is not None:
        over["kafka"] = {"mode": mode}
        over["checkpoint"] = {"interval_ms": 200}
    over.update(extra)
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


def test_operator_move_then_switchover_follows(stack):
    """`tor checkpoint set --to <file:pos>` on the primary, then a planned
    switchover before a leader starts: the position is the old primary's,
    and the leader on the promoted server must follow it by GTID (the move
    records the server it was checked on, and the GTID state there), not
    look for the old primary's file and halt as if it were purged."""
    name = "sf_opmove"
    pair, table, cfg, group = setup(stack, name)
    try:
        r1 = lead_and_publish(stack, name, table, cfg, group, 100)
        r1.stop()
        at = stack.binlog_position()
        insert_range(stack, table, 100, 50, PER_TXN)
        p = tor_cli(["checkpoint", "set", "--to", "%s:%d" % at], cfg=cfg)
        assert p.returncode == 0, p.stdout + p.stderr
        moved = checkpoint(stack, group)
        pair.sql(pair.primary_port, "SET GLOBAL read_only = 1")
        pair.wait_caught_up()
        pair.promote()
        pair.switch()
        insert_range(stack, table, 150, 50, PER_TXN)
        r2 = Tor(stack, cfg, name="r2").start()
        got = wait_published(stack, name, group, range(200), r2,
                             timeout=45)
        rc = r2.proc.poll()
        print("  moved to %s:%s (gtid %s, server_id %s); after the "
              "switchover r2 exit %s, rows 100..199 published %d" % (
                  moved.get("file"), moved.get("pos"), moved.get("gtid"),
                  moved.get("server_id"), rc,
                  len([n for n in got if n >= 100])))
        for ln in error_lines(r2)[-3:]:
            print("  r2: " + ln[:400])
        assert rc is None, "r2 halted (exit %s): %s" % (rc, r2.log_tail())
        assert set(range(100, 200)) <= set(got), sorted(got)[-5:]
        r2.stop()
    finally:
        pair.close()


def lossy_failover(stack, name, new):
    """The replica is held back (STOP SLAVE) while the primary commits rows
    100..149, which the leader publishes; the replica is then promoted, the
    proxy moves, and it commits rows 1000.. (`new` of them) with the
    sequence numbers the lost transactions had.  The leader's stream
    reaches the promoted server: it ends the session, and the next one
    must halt (the server does not hold the checkpoint's GTID) naming both
    servers and `tor checkpoint set`, never publish those rows as if they
    followed 149 nor skip them as published; a leader started afterwards
    must halt the same way."""
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
            and "lacks GTID" in log1 and "tor checkpoint set" in \
            log1, r1.log_tail()
        assert rc2 == 1, (rc2, r2.log_tail())
        assert not new2, new2
        log2 = r2.log_text()
        assert "lacks GTID" in log2 and "tor checkpoint set" in \
            log2, r2.log_tail()
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


class Writer(threading.Thread):
    """The application: transactions of PER_TXN rows through the proxy,
    n = 0, 1, ...  A transaction that fails (the primary read-only, gone,
    or the proxy moving) is not retried: whether it committed is told by
    the server the proxy leads to at the end."""

    def __init__(self, stack, table, pause=0.02):
        super().__init__(daemon=True)
        self.stack, self.table, self.pause = stack, table, pause
        self.n = 0
        self.failed = 0
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            try:
                insert_range(self.stack, self.table, self.n, PER_TXN,
                             PER_TXN)
            except (pymysql.err.MySQLError, OSError):
                self.failed += 1
                time.sleep(0.1)
            self.n += PER_TXN
            time.sleep(self.pause)

    def finish(self):
        self._halt.set()
        self.join(30)
        assert not self.is_alive(), "writer still running"


def committed(pair, table):
    """The n of every row the server the proxy leads to holds."""
    rows = pair.sql(pair.port(), "SELECT payload FROM %s" % table)
    return sorted(json.loads(r[0])["n"] for r in rows)


def records(stack, name, group):
    out = []
    for t in (name + ".order", name + ".invoice"):
        out += [r for r in read_all(stack.brokers, t, timeout=10)
                if harness.header(r, "tor.group") == group.encode()]
    return out


def check_followed(stack, pair, name, table, group, r1, mode, moves):
    """Every row the final server holds is published, once (transactional:
    read_committed; idempotent: de-duplicated), nothing else, each key in
    order; r1 still leads, it ended `moves` sessions on a moved source and
    resumed each by GTID, and the checkpoint names the final server."""
    truth = committed(pair, table)
    got = wait_published(stack, name, group, truth, r1, timeout=40)
    rc = r1.proc.poll()
    recs = records(stack, name, group)
    dups = sorted(n for n, c in got.items() if c > 1)
    extra = sorted(set(got) - set(truth))
    missing = sorted(set(truth) - set(got))
    log = r1.log_text()
    sid = pair.state(pair.port())[0]
    cp = checkpoint(stack, group)
    dedup = [ln for ln in log.splitlines() if "de-duplicat" in ln]
    print("  %s: %d rows committed on the final server (server_id %d), "
          "published %d, missing %d, extra %d, duplicates %d" % (
              mode, len(truth), sid, len(got), len(missing), len(extra),
              len(dups)))
    print("  sessions ended on a moved source %d, resumed by GTID %d; "
          "checkpoint %s:%s gtid %s server_id %s" % (
              log.count("ending the session"),
              log.count("resuming there by GTID"), cp.get("file"),
              cp.get("pos"), cp.get("gtid"), cp.get("server_id")))
    for ln in dedup[-2:]:
        print("  r1: " + ln[:300])
    assert rc is None, "r1 exited %s: %s" % (rc, r1.log_tail())
    assert not missing, (len(missing), missing[:10])
    assert not extra, extra[:10]
    assert not dups, dups[:10]
    first = {}
    for r in sorted(recs, key=lambda r: (r.topic, r.partition, r.offset)):
        first.setdefault(json.loads(r.value)["n"], r)
    check_per_key_order(first.values())
    assert log.count("ending the session") == moves, r1.log_tail()
    assert log.count("resuming there by GTID") == moves, r1.log_tail()
    assert cp.get("server_id") == str(sid), cp


def under_writes(stack, name, mode, failover):
    """r1 leads; the application writes throughout; failover(pair) moves
    the source (returns how many times), and the writes go on on the new
    server for a while."""
    pair, table, cfg, group = setup(stack, name, mode, partitions=2)
    writer = None
    try:
        r1 = Tor(stack, cfg, name="r1").start()
        wait_leading([r1], timeout=20)
        r1.wait_log("starting at", timeout=60)
        writer = Writer(stack, table)
        writer.start()
        time.sleep(2)
        moves = failover(pair)
        time.sleep(3)
        writer.finish()
        print("  the application wrote %d transactions, %d failed" % (
            writer.n // PER_TXN, writer.failed))
        return pair, table, group, r1, moves
    except BaseException:
        if writer is not None:
            writer.finish()
        pair.close()
        raise


def switchover(pair):
    at = pair.switchover()
    print("  switched over at GTID %s" % at)
    return 1


def kill_primary(pair):
    pair.kill_primary()
    at = pair.wait_applied()
    pair.promote()
    pair.switch()
    print("  primary killed; the replica promoted at GTID %s" % at)
    return 1


def switch_and_back(pair):
    at = pair.switchover()
    time.sleep(3)
    pair.rejoin()
    back = pair.switch_back()
    print("  switched over at GTID %s, back to the old primary at %s" % (
        at, back))
    return 2


def follow(stack, name, mode, failover):
    pair, table, group, r1, moves = under_writes(stack, name, mode,
                                                 failover)
    try:
        check_followed(stack, pair, name, table, group, r1, mode, moves)
    finally:
        pair.close()


@harness.long_test(
    "test_switchover_under_writes_transactional shows a switchover under "
    "writes")
def test_switchover_under_writes_idempotent(stack):
    """A planned switchover while the application writes: the leader's
    stream is cut, reaches the promoted server, ends its session and
    resumes there by GTID.  Every row the promoted server holds is
    published once, de-duplicated where the new session replays."""
    follow(stack, "sf_sw_idem", "idempotent", switchover)


def test_switchover_under_writes_transactional(stack):
    """The same in transactional mode: the Kafka transaction open at the
    switch is aborted and read again on the promoted server; read_committed
    sees every row once."""
    follow(stack, "sf_sw_txn", "transactional", switchover)


def killed_primary(stack, name, mode):
    """kill -9 of the primary under writes; the replica applies what it
    received and is promoted.  Rows the primary committed that never
    reached the replica are lost; if the leader had published one of
    them (it reads the primary's binlog as the replica does), the
    failover is lossy and the leader must halt with the diagnosis;
    otherwise it must follow."""
    pair, table, group, r1, moves = under_writes(stack, name, mode,
                                                 kill_primary)
    try:
        truth = set(committed(pair, table))
        got = published(stack, name, group)
        lost = sorted(set(got) - truth)
        if not lost:
            check_followed(stack, pair, name, table, group, r1, mode, moves)
            return
        rc = exit_code(r1, 30)
        print("  lossy: %d published rows not on the promoted server; r1 "
              "exit %s" % (len(lost), rc))
        assert rc == 1, r1.log_tail()
        assert "lacks GTID" in r1.log_text(), r1.log_tail()
    finally:
        pair.close()


def test_primary_killed_under_writes_idempotent(stack):
    killed_primary(stack, "sf_kill_idem", "idempotent")


@harness.long_test(
    "test_primary_killed_under_writes_idempotent shows a primary killed "
    "under writes")
def test_primary_killed_under_writes_transactional(stack):
    killed_primary(stack, "sf_kill_txn", "transactional")


def test_failover_back_to_the_old_primary(stack):
    """A switchover to the replica, then the old primary made its replica
    by GTID, caught up and promoted back, the proxy moved again: two
    sessions end on a moved source, each resumes by GTID (the second on
    the old primary, which holds the promoted server's transactions by
    replication)."""
    follow(stack, "sf_back", "transactional", switch_and_back)


def test_other_server_without_gtid_halts(stack):
    """A checkpoint without a GTID (its file:pos alone) written from the
    primary; after a switchover a new session reaches the promoted server.
    A file:pos is never resumed on a server that did not write that file:
    it halts, naming both servers and `tor checkpoint set`, and publishes
    none of the new rows."""
    name = "sf_nogtid"
    pair, table, cfg, group = setup(stack, name)
    try:
        r1 = lead_and_publish(stack, name, table, cfg, group, 20)
        assert r1.stop() == 0, r1.log_tail()
        key = "tor:{%s}:checkpoint" % group
        stack.redis().hset(key, "gtid", "")
        cp = checkpoint(stack, group)
        pair.switchover()
        insert_range(stack, table, 100, 20, PER_TXN)
        r2 = Tor(stack, cfg, name="r2").start()
        rc = exit_code(r2, 30)
        new = sorted(n for n in published(stack, name, group) if n >= 100)
        print("  checkpoint %s:%s server_id %s, no GTID; r2 exit %s, new "
              "rows published %d of 20" % (cp.get("file"), cp.get("pos"),
                                           cp.get("server_id"), rc,
                                           len(new)))
        for ln in error_lines(r2)[-1:]:
            print("  r2: " + ln[:600])
        assert cp.get("server_id") == "1", cp
        assert rc == 1, r2.log_tail()
        assert not new, new
        log = r2.log_text()
        assert "has no GTID" in log and "server_id 2" in log and \
            "tor checkpoint set" in log, r2.log_tail()
    finally:
        pair.close()


def test_lossy_behind_the_checkpoint_publishes_the_new_rows(stack):
    """Idempotent mode, the checkpoint far behind Kafka (interval 60 s, the
    leader killed): rows 100..149 committed on the primary and published
    never reach the replica, which is promoted and writes rows 1000..1099
    under the lost transactions' sequence numbers (its own server_id).  The
    checkpoint's GTID is before the loss, so the promoted server holds it
    and a new leader resumes there by GTID; the partition's newest message
    is a lost transaction's (the old primary's server_id, a sequence number
    past the new rows').  Comparing sequence numbers alone would skip the
    new rows as published: every one of them must be published."""
    name = "sf_behind_" + secrets.token_hex(2)
    pair = DbPair(stack)
    table, over = make_outbox(stack, name)
    for t in (name + ".order", name + ".invoice"):
        stack.create_topic(t, 1)
    cfg = harness.base_config(stack, ha=dict(HA),
                              checkpoint={"interval_ms": 60000}, **over)
    group = harness.config_group(cfg)
    try:
        r1 = lead_and_publish(stack, name, table, cfg, group, 100)
        pair.wait_caught_up()
        pair.hold_back()
        insert_range(stack, table, 100, 50, PER_TXN)
        got = wait_published(stack, name, group, range(150), r1)
        assert set(range(150)) <= set(got), r1.log_tail()
        r1.kill9()
        cp = checkpoint(stack, group)
        pair.promote()
        pair.switch()
        insert_range(stack, table, 1000, 100, PER_TXN)
        r2 = Tor(stack, cfg, name="r2").start()
        want = range(1000, 1100)
        got = wait_published(stack, name, group, want, r2, timeout=30)
        rc = r2.proc.poll()
        new = sorted(n for n in got if n >= 1000)
        print("  checkpoint %s:%s gtid %s; promoted server %s" % (
            cp.get("file"), cp.get("pos"), cp.get("gtid"),
            pair.state(pair.replica_port)[1]))
        print("  r2 exit %s, new rows published %d of 100, duplicates "
              "%d" % (rc, len(new), sum(1 for n in new if got[n] > 1)))
        for ln in r2.log_text().splitlines():
            if "de-duplication:" in ln and "replayed" in ln:
                print("  r2: " + ln[:300])
        assert rc is None, r2.log_tail()
        assert new == list(want), (len(new), sorted(set(want) - set(new))
                                   [:10])
    finally:
        pair.close()


def test_mysql_host_is_resolved_at_every_connect(stack):
    """mysql.host is a name ("vm", 127.0.0.1 in /etc/hosts); the leader
    runs under strace.  The client library resolves the name at each
    connect (glibc reads /etc/hosts each time), not once: after a
    switchover the reconnects look the name up again, so a name moved to
    the new primary (DNS, a service address) is followed."""
    with open("/etc/hosts") as f:
        hosts = f.read()
    assert re.search(r"^127\.0\.0\.1\s.*\bvm\b", hosts, re.M), hosts
    name = "sf_resolve"
    pair, table, cfg, group = setup(stack, name, mysql={"host": "vm"})
    trace = os.path.join(stack.run_dir, "sf_resolve.strace")
    wrapper = os.path.join(stack.run_dir, "sf_resolve_tor")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec strace -f -qq -e trace=openat -e "
                "signal=none -o %s %s \"$@\"\n" % (
                    trace, harness.default_tor_binary()))
    os.chmod(wrapper, 0o755)
    r1 = None
    try:
        r1 = Tor(stack, cfg, name="r1", binary=wrapper)
        r1.start()
        wait_leading([r1], timeout=30)
        r1.wait_log("starting at", timeout=60)
        insert_range(stack, table, 0, 10, PER_TXN)
        got = wait_published(stack, name, group, range(10), r1)
        assert set(range(10)) <= set(got), r1.log_tail()

        def lookups():
            with open(trace) as f:
                return sum(1 for ln in f if '"/etc/hosts"' in ln)

        before = lookups()
        pair.switchover()
        insert_range(stack, table, 100, 10, PER_TXN)
        got = wait_published(stack, name, group, range(100, 110), r1)
        after = lookups()
        print("  /etc/hosts read %d times before the switchover, %d after"
              % (before, after - before))
        assert set(range(100, 110)) <= set(got), r1.log_tail()
        assert "resuming there by GTID" in r1.log_text(), r1.log_tail()
        # The new session's query connection and its stream: two connects
        # at least, each a lookup.
        assert after - before >= 2, (before, after)
    finally:
        if r1 is not None and r1.running():
            with open("/proc/%d/task/%d/children" % (r1.proc.pid,
                                                     r1.proc.pid)) as f:
                for pid in f.read().split():
                    os.kill(int(pid), signal.SIGKILL)
            r1.wait(10)
        pair.close()
