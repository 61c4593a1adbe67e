"""An XA transaction prepared and never committed (a coordinator that is
gone) against the real local MariaDB.

Its outbox rows are in the binlog only at its XA PREPARE, so the checkpoint
must stay before the prepare until its XA COMMIT or XA ROLLBACK: a restart
that began after it would lose its rows when it commits later.  What must
not follow from that: memory that grows with every transaction after it
(tests/unit/test_progress.c shows the tracker stays as small as what is in
flight), a silent stall, or a successor that replays everything since the
prepare.  So: the rows after it are published, /metrics says how long the
oldest prepared transaction has been held (tor_xa_prepared_oldest_seconds)
and the log names it, the checkpoint keeps its position but records how far
beyond it everything is published (done), a kill -9 then repeats nothing,
and the commit publishes the held rows and lets the checkpoint go on.
"""

import collections
import json
import time

import harness
from harness import Tor, header
from test_http import free_port, samples, value, wait_until
from test_relay import checkpoint, insert_range, make_outbox, read_events
from test_source import HA, roll_back_left_over, xa


def events(stack, name, group, expected, timeout=60):
    """{n: [records]} of this group's events on both topics (a failed
    earlier run may have left its own there)."""
    deadline = time.monotonic() + timeout
    while True:
        _, recs = read_events(stack, name, 0, timeout=0)
        by_n = collections.defaultdict(list)
        for r in recs:
            if header(r, "tor.group") == group.encode():
                by_n[json.loads(r.value)["n"]].append(r)
        if len(by_n) >= expected or time.monotonic() > deadline:
            return by_n
        time.sleep(0.5)


def position_of(text):
    """(file sequence, offset) of a checkpoint's "file:pos" or file/pos."""
    f, p = text.rsplit(":", 1)
    return int(f.rsplit(".", 1)[1]), int(p)


def test_prepared_for_ever_holds_the_checkpoint_with_bounded_work(stack):
    name = "xa_held"
    xid = "tor_xa_held"
    roll_back_left_over(stack, xid)
    table, ov = make_outbox(stack, name)
    port = free_port()
    cfg = harness.base_config(stack, ha=dict(HA),
                              checkpoint={"interval_ms": 200},
                              http={"listen": "127.0.0.1:%d" % port}, **ov)
    group = harness.config_group(cfg)
    tor = Tor(stack, cfg, name="r1").start()
    tor.wait_log("starting at", timeout=30)
    before = stack.binlog_position()
    xa(stack, xid, range(0, 5), end=None, table=table)
    prepared_at = time.monotonic()
    after = stack.binlog_position()
    # 2,000 transactions behind the prepare, a row each.
    t0 = time.monotonic()
    insert_range(stack, table, 5, 2000, 1)
    by_n = events(stack, name, group, 2000)
    assert len(by_n) == 2000, len(by_n)
    print("  2,000 one-row transactions behind the prepare published in "
          "%.1f s" % (time.monotonic() - t0))
    assert not set(range(0, 5)) & set(by_n), "held XA rows published"

    smp = samples(port)
    assert value(smp, "tor_xa_prepared_transactions") == 1, smp
    held = value(smp, "tor_xa_prepared_oldest_seconds")
    assert held > 0, held
    # The server's spelling of the XID: X'<gtrid hex>',X'',1.
    tor.wait_log(r"XA transaction X'%s',X'',1, prepared at \S+ \d+ s ago, "
                 r"has not committed: the checkpoint stays before it" %
                 xid.encode().hex(),
                 timeout=max(1, 15 - (time.monotonic() - prepared_at)))
    later = value(samples(port), "tor_xa_prepared_oldest_seconds")
    assert later > held, (held, later)
    print("  oldest prepared held %.1f s at the log line" % later)

    # The checkpoint stays before the prepare; done says how far beyond
    # it everything is published.
    def held_checkpoint():
        cp = checkpoint(stack, group)
        return cp if "done" in cp and position_of(cp["done"]) > \
            position_of("%s:%d" % after) else None
    cp = wait_until("the checkpoint's done past the prepare",
                    held_checkpoint, timeout=10, tor=tor)
    assert position_of("%s:%s" % (cp["file"], cp["pos"])) <= \
        position_of("%s:%d" % before), (cp, before)

    # A successor after a kill -9 starts before the prepare (its rows are
    # read again) and publishes none of what done covers.
    tor.kill9()
    tor2 = Tor(stack, cfg, name="r2").start()
    tor2.wait_log("resuming from .* rows already committed after it|"
                  "published up to", timeout=30)
    time.sleep(1)
    by_n = events(stack, name, group, 2000)
    twice = sorted(n for n, rs in by_n.items() if len(rs) > 1)
    assert not twice, "published again after the kill: %d rows, e.g. %s" % (
        len(twice), twice[:5])

    stack.sql("XA COMMIT '%s'" % xid)
    insert_range(stack, table, 2005, 5, 1)
    wait_until("the held rows and the later ones published",
               lambda: set(range(0, 2010)) <= set(
                   events(stack, name, group, 2010, timeout=0)),
               timeout=30, tor=tor2)
    wait_until("the prepared-transaction gauges back to 0",
               lambda: value(samples(port), "tor_xa_prepared_transactions")
               == 0 and value(samples(port),
                              "tor_xa_prepared_oldest_seconds") == 0,
               timeout=10, tor=tor2)
    assert tor2.stop() == 0, tor2.log_tail()
    cp = checkpoint(stack, group)
    assert position_of("%s:%s" % (cp["file"], cp["pos"])) > \
        position_of("%s:%d" % after), cp
