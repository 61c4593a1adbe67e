"""Network partitions between one tor replica and one service, made by the
nemesis (nemesis.py): each replica runs in a network namespace of its own,
and nft cuts a link in one direction or both, while the other links work.

On Apache Kafka (one node), MariaDB and Redis of the stack.  The figures
each test prints come from the replicas' log lines (ts, UTC ms) and the
records read back from Kafka.
"""

import collections
import socket
import time

import harness
import nemesis
from nemesis import HostTor, Nemesis
from test_ha import (HA, LEADING, LOST, assert_none_lost, epoch_of,
                     first_appearances, lease, log_lines, n_of,
                     read_until, stop_all, wait_leading)
from test_relay import check_per_key_order, check_record, make_outbox


def connect_from(host, port, timeout=1.0):
    """From inside host: "ok" when a TCP connection to 127.0.0.1:port is
    made and the service answers a Redis PING (a PONG) or sends a greeting
    (MariaDB), "timeout", or "refused"/"reset"."""
    code = (
        "import socket,sys\n"
        "s=socket.socket()\n"
        "s.settimeout(%r)\n"
        "try:\n"
        "  s.connect(('127.0.0.1',%d))\n"
        "  s.sendall(b'PING\\r\\n')\n"
        "  print('ok' if s.recv(64) else 'closed')\n"
        "except socket.timeout: print('timeout')\n"
        "except ConnectionRefusedError: print('refused')\n"
        "except ConnectionResetError: print('reset')\n" % (timeout, port))
    p = host.run(["/usr/bin/python3", "-c", code], capture_output=True,
                 text=True, timeout=timeout + 10)
    return p.stdout.strip() or p.stderr.strip()


def test_nemesis_cuts_and_heals(stack):
    """The nemesis itself: a replica's host reaches Redis and MariaDB at
    127.0.0.1; a cut of one link stops exactly that link (drop: a connect
    times out; reject: it is reset), in each direction, while the machine
    and the other link still work; heal restores it; remove leaves
    nothing."""
    nem = Nemesis(stack)
    h = nem.host("r1")
    redis, mysql = stack.redis_port, stack.mysql_port
    assert connect_from(h, redis) == "ok"
    assert connect_from(h, mysql) == "ok"
    # A connection made before the cut: it stops hearing Redis too.
    seen = []
    for direction in ("to", "from", "both"):
        nem.cut(h, "redis", direction=direction)
        seen.append((direction, connect_from(h, redis)))
        assert seen[-1][1] == "timeout", (seen, nem.rules())
        assert connect_from(h, mysql) == "ok", nem.rules()
        assert stack.redis().ping()
        nem.heal(h, "redis")
        assert connect_from(h, redis) == "ok", nem.rules()
    nem.cut(h, "redis", mode="reject", direction="to")
    seen.append(("to, reject", connect_from(h, redis)))
    assert seen[-1][1] in ("reset", "refused"), (seen, nem.rules())
    nem.heal()
    assert connect_from(h, redis) == "ok"
    # 99 % each way: a connect gets through once in ten thousand.
    nem.cut(h, "redis", loss=99)
    seen.append(("loss 99", connect_from(h, redis)))
    assert seen[-1][1] == "timeout", seen
    print("  %s" % "; ".join("%s: %s" % s for s in seen))
    assert nemesis.leftovers(nem.run)
    nem.remove()
    assert nemesis.leftovers(nem.run) == [], nemesis.leftovers(nem.run)
