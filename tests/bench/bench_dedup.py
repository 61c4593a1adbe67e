"""What de-duplication at takeover costs (run by tests/bench/run.sh after
bench_failover.py, i.e. `make bench`).

Against a running local stack: for a topic of 3 and one of 100 partitions
(bench.dedup3 and bench.dedup100, made by tests/bench/run.sh's broker), one
replica of the release binary
relays ROWS outbox rows with keys spread over every partition, then it is
kill -9'd and started again TRIALS times; each start logs "de-duplication:
<topic>: read N partitions in T ms", the time the takeover spent reading
the partitions' tails before its first message.  Reported: p50 / max per
partition count, and the kill -> "leading" -> first tail read done times.
Nothing is asserted about time; the exit status is 1 only when something
broke.

Environment: TOR_BENCH_DEDUP_TRIALS (10), TOR_BENCH_DEDUP_ROWS (20000),
TOR_BIN (<repo>/bin/tor), TOR_RUN_DIR (the stack).
"""

import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import harness  # noqa: E402
from report import log  # noqa: E402

TRIALS = int(os.environ.get("TOR_BENCH_DEDUP_TRIALS", "10"))
ROWS = int(os.environ.get("TOR_BENCH_DEDUP_ROWS", "20000"))
TOR_BIN = os.environ.get("TOR_BIN") or os.path.join(REPO, "bin", "tor")
READ_RE = re.compile(r'de-duplication: (\S+): read (\d+) partitions in '
                     r'(\d+) ms')


def median(v):
    v = sorted(v)
    return v[len(v) // 2] if v else float("nan")


def run(stack, partitions):
    table = "shop.bench_dedup_%d" % partitions
    topic = "bench.dedup%d" % partitions
    stack.sql("DROP TABLE IF EXISTS %s" % table)
    stack.sql(harness.outbox_ddl(table))
    group = "bench-dedup-%d-%d-%d" % (partitions, int(time.time()),
                                      os.getpid())
    cfg = harness.base_config(
        stack, group=group,
        outbox={"tables": [{"table": table,
                            "columns": {"id": "id", "key": "aggregate_id",
                                        "type": "aggregate_type",
                                        "payload": "payload"}}],
                "routes": [{"match": "^order$", "topic": topic}]},
        checkpoint={"interval_ms": 200}, log={"level": "info"})
    t = harness.Tor(stack, cfg, binary=TOR_BIN, name="d1").start()
    t.wait_log("starting at", timeout=60)
    n = 0
    while n < ROWS:
        k = min(1000, ROWS - n)
        stack.sql_many([("INSERT INTO %s (aggregate_type, aggregate_id, "
                         "payload) VALUES ('order', %%s, '{}')" % table,
                         ["key-%d" % (n + i)]) for i in range(k)],
                       user="app")
        n += k
    time.sleep(3.0)
    reads = []
    for i in range(TRIALS):
        t.kill9()
        t = harness.Tor(stack, cfg, binary=TOR_BIN, name="d1").start()
        deadline = time.monotonic() + 30
        while True:
            found = [m for m in READ_RE.finditer(t.log_text())
                     if m.group(1) == topic]
            if found:
                reads.append(int(found[-1].group(3)))
                break
            if time.monotonic() > deadline:
                log("  trial %d: no tail read logged; tail:\n%s" % (
                    i + 1, t.log_tail(10)))
                t.kill9()
                return None
            time.sleep(0.02)
    t.send_signal(15)
    t.wait(30)
    return reads


def main():
    stack = harness.Stack()
    stack.wait_mysql()
    log("")
    log("de-duplication bench: %s, %d rows, %d restarts per topic" % (
        TOR_BIN, ROWS, TRIALS))
    ok = True
    summary = []
    for partitions in (3, 100):
        reads = run(stack, partitions)
        if reads is None:
            ok = False
            continue
        log("  %3d partitions: tails read in %s ms (p50 %d, max %d)" % (
            partitions, reads, median(reads), max(reads)))
        summary.append("%d partitions p50 %d ms max %d ms" % (
            partitions, median(reads), max(reads)))
    log("summary: de-duplication at takeover: tails read %s" %
        "; ".join(summary))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
