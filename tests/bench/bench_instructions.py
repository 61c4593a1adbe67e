"""Instructions per relayed row, by callgrind: a noise-free comparison of
two builds on a machine whose wall-clock figures swing.

    TOR_RUN_DIR=run/bench ... /usr/bin/python3 tests/bench/bench_instructions.py \
        OLD_BIN NEW_BIN [ROWS]

Against a running local stack (deploy/local/stack.sh, e.g. run/bench's):
for each binary in turn, twice, alternating, a fresh outbox table gets ROWS
(20,000) rows in 1,000-row transactions, then the binary runs under
`valgrind --tool=callgrind` from the position before them until the Redis
checkpoint reaches the binlog's end, and gets SIGTERM.  Prints the whole
process's instructions (every thread, start-up included) per row.
TOR_CALLGRIND_KEEP=1 keeps each run's callgrind output for callgrind_annotate.
"""

import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import harness  # noqa: E402


def one(stack, binary, tag, rows):
    table = "shop.instr_%s" % tag
    stack.sql("DROP TABLE IF EXISTS %s" % table)
    stack.sql(harness.outbox_ddl(table))
    start = stack.binlog_position()
    for n in range(0, rows, 1000):
        stack.sql_many([("INSERT INTO %s (aggregate_type, aggregate_id, "
                         "payload) VALUES ('order', %%s, %%s)" % table,
                         ["key-%d" % ((n + i) % 997),
                          '{"n": %d, "x": "abcdefghijklmnopqrstuvwxyz"}' %
                          (n + i)]) for i in range(min(1000, rows - n))],
                       user="app")
    end = stack.binlog_position()
    group = "instr-%s-%d-%d" % (tag, os.getpid(), time.time_ns() % 100000)
    cfg = harness.base_config(
        stack, group=group, start="%s:%d" % start,
        outbox={"tables": [{"table": table,
                            "columns": {"id": "id", "key": "aggregate_id",
                                        "type": "aggregate_type",
                                        "payload": "payload"}}],
                "routes": [{"match": "^order$", "topic": "bench"}]},
        checkpoint={"interval_ms": 200}, log={"level": "warn"},
        http={"listen": ""})
    path = os.path.join(stack.run_dir, "%s.cfg" % group)
    out = os.path.join(stack.run_dir, "%s.callgrind" % group)
    with open(path, "w") as f:
        f.write(cfg)
    p = subprocess.Popen(["valgrind", "--tool=callgrind",
                          "--callgrind-out-file=" + out, binary, "-c", path],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=dict(os.environ, HOSTNAME="instr1"))
    r = stack.redis()
    deadline = time.time() + 600
    while time.time() < deadline:
        h = r.hgetall("tor:{%s}:checkpoint" % group)
        if h and (h[b"file"].decode(), int(h[b"pos"])) >= end:
            break
        time.sleep(0.5)
    p.send_signal(15)
    p.wait(300)
    text = subprocess.run(["callgrind_annotate", out], capture_output=True,
                          text=True).stdout
    m = re.search(r"^([\d,]+)\s.*PROGRAM TOTALS", text, re.M)
    os.unlink(path)
    if os.environ.get("TOR_CALLGRIND_KEEP"):
        print("callgrind output kept: %s" % out)
    else:
        os.unlink(out)
    return int(m.group(1).replace(",", "")) / rows if m else None


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    old, new = sys.argv[1], sys.argv[2]
    rows = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
    stack = harness.Stack()
    stack.wait_mysql()
    got = {old: [], new: []}
    for i in range(2):
        for b, tag in ((old, "old%d" % i), (new, "new%d" % i)):
            per = one(stack, b, tag, rows)
            got[b].append(per)
            print("%s: %s instructions per row" % (b, "%.0f" % per
                                                   if per else "?"),
                  flush=True)
    o = sorted(x for x in got[old] if x)
    n = sorted(x for x in got[new] if x)
    if o and n:
        print("summary: %.0f -> %.0f instructions per row (%+.1f%%)" % (
            o[0], n[0], (n[0] / o[0] - 1) * 100))
    return 0


if __name__ == "__main__":
    sys.exit(main())
