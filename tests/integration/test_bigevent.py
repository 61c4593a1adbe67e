"""Memory after one outsized event, through the real relay (one Kafka
node).

The binlog reader holds events in a 4 MiB ring, and the relay reads each
one from a copy of its own; an event larger than the ring grows both to
fit it.  A row of a 12 MiB BLOB in a table beside the outbox makes such an
event (MariaDB's max_allowed_packet, 16 MiB, lets it through), and once it
has been read, and outbox rows after it relayed, tor must be back near
where it was: nothing of its own kept at the event's size.  The replica
runs the ASan build with ASan's quarantine off, so that freed memory leaves
the process at once and its resident size tells.
"""

import os
import time

from harness import Tor
from test_relay import insert_range, make_outbox, read_events

BLOB = 12 << 20


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def settled_rss(pid):
    """The resident size once it stops moving (a few samples apart)."""
    last = rss_kib(pid)
    for _ in range(20):
        time.sleep(0.5)
        now = rss_kib(pid)
        if abs(now - last) < 256:
            return now
        last = now
    return last


def test_ring_and_event_copy_released_after_outsized_event(stack):
    name = "bigev"
    table, ov = make_outbox(stack, name)
    stack.sql("DROP TABLE IF EXISTS shop.blob_%s" % name)
    stack.sql("CREATE TABLE shop.blob_%s (id INT AUTO_INCREMENT PRIMARY KEY,"
              " b LONGBLOB)" % name)
    asan = os.environ.get("ASAN_OPTIONS", "")
    tor = Tor(stack, ov, env={"ASAN_OPTIONS": (asan + ":" if asan else "") +
                              "quarantine_size_mb=0"}).start()
    tor.wait_log("starting at", timeout=30)
    insert_range(stack, table, 0, 10, 5)
    read_events(stack, name, 10)
    before = settled_rss(tor.pid)

    stack.sql("INSERT INTO shop.blob_%s (b) VALUES (REPEAT('x', %d))"
              % (name, BLOB))
    insert_range(stack, table, 10, 10, 5)
    by_n, _ = read_events(stack, name, 20)
    assert sorted(by_n) == list(range(20))
    after = settled_rss(tor.pid)
    print("  RSS %d KiB before a %d MiB event, %d KiB after it (+%d KiB)"
          % (before, BLOB >> 20, after, after - before))
    # The client library keeps a packet buffer of the event's size (its
    # own); tor's ring and its copy of the event (another 24 MiB) must go.
    assert after - before < (BLOB >> 10) + 4096, tor.log_tail()
    tor.stop()
