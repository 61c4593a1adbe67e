"""Binlog retention headroom against the real MariaDB: the leader's
tor_binlog_retention_* gauges follow FLUSH and PURGE BINARY LOGS, and
its warnings come once when the headroom falls under mysql.
retention_warn_bytes, or when the server's expiry would purge the
checkpoint's file within mysql.retention_warn_ms.

The expected figures are computed here from the server's own SHOW BINARY
LOGS and the Redis checkpoint, and compared exactly."""

import time

import harness
from harness import Tor
from test_http import free_port, samples, value
from test_relay import checkpoint, insert_range, make_outbox, read_events
from test_source import roll_back_left_over, xa

HA = {"lease_ms": 2000, "renew_ms": 500, "retry_ms": 100}
GAUGES = ("headroom_bytes", "headroom_seconds", "expire_seconds",
          "purge_seconds")


def retention(port):
    """{gauge suffix: float} of the replica's tor_binlog_retention_*."""
    smp = samples(port)
    return {g: value(smp, "tor_binlog_retention_%s" % g) for g in GAUGES}


def binlogs(stack):
    return [(r[0], int(r[1])) for r in stack.sql("SHOW BINARY LOGS")]


def expected_bytes(stack, group):
    """The headroom the server's list and the checkpoint give."""
    cp = checkpoint(stack, group)
    files = binlogs(stack)
    names = [f for f, _ in files]
    assert cp["file"] in names, (cp, files)
    at = names.index(cp["file"])
    return sum(s for _, s in files[:at]) + int(cp["pos"])


def wait_gauge(port, what, pred, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        g = retention(port)
        if pred(g):
            return g
        assert time.monotonic() < deadline, "%s: %s" % (what, g)
        time.sleep(0.3)


def purge_to(stack, keep, timeout=20):
    """PURGE BINARY LOGS TO keep, again until the server lists no file
    before it (it keeps one a dump thread still reads)."""
    deadline = time.monotonic() + timeout
    while True:
        stack.sql("PURGE BINARY LOGS TO '%s'" % keep)
        files = [f for f, _ in binlogs(stack)]
        if files[0] == keep:
            return files
        assert time.monotonic() < deadline, (keep, files)
        time.sleep(0.2)


def fill_binlog(stack, name, kib):
    """About kib KiB of binlog in a table no outbox route reads."""
    stack.sql("DROP TABLE IF EXISTS shop.fill_%s" % name)
    stack.sql("CREATE TABLE shop.fill_%s (id INT AUTO_INCREMENT PRIMARY "
              "KEY, pad MEDIUMTEXT)" % name)
    for _ in range(kib // 64):
        stack.sql("INSERT INTO shop.fill_%s (pad) VALUES (REPEAT('x', "
                  "65536))" % name)


def test_headroom_follows_flush_and_purge(stack):
    """The server holds one file of about 1 MiB of other binlog, then the
    leader starts at the end: headroom_bytes is that file plus the
    checkpoint's offset, exactly; two FLUSH BINARY LOGS a second apart
    add their files and their seconds; PURGE BINARY LOGS to the
    checkpoint's file leaves its offset alone, 0 seconds, and the warning
    under mysql.retention_warn_bytes (512 KiB) comes once."""
    name = "ret_purge"
    table, ov = make_outbox(stack, name)
    stack.sql("FLUSH BINARY LOGS")
    purge_to(stack, stack.binlog_position()[0])
    fill_binlog(stack, name, 1024)
    stack.sql("FLUSH BINARY LOGS")
    port = free_port()
    ov["http"] = {"listen": "127.0.0.1:%d" % port}
    ov["mysql"] = {"retention_check_ms": 1000,
                   "retention_warn_bytes": 512 * 1024}
    tor = Tor(stack, harness.base_config(stack, ha=dict(HA), **ov)).start()
    tor.wait_log("starting at", timeout=30)
    insert_range(stack, table, 0, 20, 5)
    read_events(stack, name, 20, timeout=30)
    want = expected_bytes(stack, tor.group)
    g = wait_gauge(port, "headroom %d" % want,
                   lambda g: g["headroom_bytes"] == want)
    first = binlogs(stack)[0]
    print("  one older file %s of %d bytes: headroom %d bytes, %d s" % (
        first[0], first[1], g["headroom_bytes"], g["headroom_seconds"]))
    assert g["headroom_bytes"] > 1024 * 1024, g
    assert g["expire_seconds"] == int(stack.sql(
        "SELECT @@global.binlog_expire_logs_seconds")[0][0]), g
    # The checkpoint is in the newest file: no expiry takes it.
    assert g["purge_seconds"] == float("inf"), g

    for _ in range(2):
        time.sleep(1.1)
        stack.sql("FLUSH BINARY LOGS")
    insert_range(stack, table, 20, 10, 5)
    read_events(stack, name, 30, timeout=30)
    want = expected_bytes(stack, tor.group)
    g = wait_gauge(port, "headroom %d after two flushes" % want,
                   lambda g: g["headroom_bytes"] == want)
    print("  after two flushes: %d files, headroom %d bytes, %d s" % (
        len(binlogs(stack)), g["headroom_bytes"], g["headroom_seconds"]))
    assert g["headroom_seconds"] >= 2, g
    assert "bytes of binlog are left" not in tor.log_text()

    cp = checkpoint(stack, tor.group)
    files = purge_to(stack, cp["file"])
    g = wait_gauge(port, "headroom after the purge",
                   lambda g: g["headroom_bytes"] == int(
                       checkpoint(stack, tor.group)["pos"]))
    print("  purged to %s (%d files left): headroom %d bytes, %d s" % (
        cp["file"], len(files), g["headroom_bytes"], g["headroom_seconds"]))
    assert g["headroom_seconds"] == 0, g
    tor.wait_log("bytes of binlog are left on the server behind the "
                 "checkpoint", timeout=10)
    time.sleep(3)       # three more checks: said once
    assert tor.log_text().count("bytes of binlog are left") == 1, \
        tor.log_tail()
    # The checks' own short dumps (server_id 0) never ended the leader's.
    assert "reopening at" not in tor.log_text(), tor.log_tail()
    assert tor.stop() == 0, tor.log_tail()


def test_purge_estimate_and_warning_while_xa_holds_the_checkpoint(stack):
    """A prepared XA transaction holds the checkpoint in its file; after a
    FLUSH the server's expiry (set to 7200 s here) may purge that file
    7200 s after the next one began: purge_seconds says so within the
    seconds the test took, and the warning under mysql.retention_warn_ms
    (7300 s) comes once.  XA COMMIT lets the checkpoint into the newest
    file: +Inf again."""
    name = "ret_xa"
    xid = "tor_ret_xa"
    roll_back_left_over(stack, xid)
    table, ov = make_outbox(stack, name)
    port = free_port()
    ov["http"] = {"listen": "127.0.0.1:%d" % port}
    ov["mysql"] = {"retention_check_ms": 1000,
                   "retention_warn_ms": 7300 * 1000}
    expire = stack.sql("SELECT @@global.binlog_expire_logs_seconds")[0][0]
    tor = Tor(stack, harness.base_config(stack, ha=dict(HA), **ov)).start()
    try:
        tor.wait_log("starting at", timeout=30)
        insert_range(stack, table, 0, 5, 5)
        read_events(stack, name, 5, timeout=30)
        wait_gauge(port, "checked", lambda g: g["purge_seconds"] ==
                   float("inf"))
        xa(stack, xid, range(100, 102), end=None, table=table)
        held = checkpoint(stack, tor.group)
        stack.sql("SET GLOBAL binlog_expire_logs_seconds = 7200")
        stack.sql("FLUSH BINARY LOGS")
        flushed = time.time()
        insert_range(stack, table, 5, 5, 5)
        read_events(stack, name, 10, timeout=30)
        g = wait_gauge(port, "an estimate", lambda g: g["expire_seconds"] ==
                       7200 and g["purge_seconds"] < 7200)
        elapsed = time.time() - flushed
        print("  checkpoint held at %s:%s, expiry 7200 s: purge in %d s "
              "(%.1f s after the flush)" % (held["file"], held["pos"],
                                             g["purge_seconds"], elapsed))
        assert checkpoint(stack, tor.group)["file"] == held["file"], \
            checkpoint(stack, tor.group)
        # The next file began at the flush (1 s resolution).
        assert 7200 - elapsed - 2 <= g["purge_seconds"] <= 7200, g
        tor.wait_log("may purge the checkpoint's file %s in" % held["file"],
                     timeout=10)
        time.sleep(3)
        assert tor.log_text().count("may purge the checkpoint's file") == 1
        stack.sql("XA COMMIT '%s'" % xid)
        read_events(stack, name, 12, timeout=30)
        wait_gauge(port, "the checkpoint in the newest file",
                   lambda g: g["purge_seconds"] == float("inf"))
        assert tor.stop() == 0, tor.log_tail()
    finally:
        stack.sql("SET GLOBAL binlog_expire_logs_seconds = %s" % expire)
        roll_back_left_over(stack, xid)
