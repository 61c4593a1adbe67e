"""The pool's benchmark (run by tests/bench/run.sh after the others, i.e.
`make bench`; alone with TOR_BENCH_ONLY=pool).

Against a running local stack ($TOR_RUN_DIR/env, see deploy/local/stack.sh),
with the release binary, replicas of the `sources` form of tor.cfg (one
source a group, each with its outbox table shop.bpool_<i> on the stack's
one MariaDB and its topic bench.pool.<run>.<i>):

  1. throughput: ROWS outbox rows split evenly over G tables (1,000 rows a
     transaction, the groups' transactions interleaved) wait in the binlog;
     ONE replica running G groups starts at the position from before them,
     and the clock runs from its process start until every group's Redis
     checkpoint reaches the position after its table's last transaction
     (bench_relay.py's method, per group).  G = 1, 4, 16, 30; each figure
     also as a ratio to G = 1 of the same run.  Beside it, the MariaDB
     server's CPU time over the same interval: every group opens its own
     binlog stream, and the server sends each of them the whole binlog.
     Then 30 groups on one replica against 30 on three: the replicas start
     first (pool.settle_ms 1000, beat_ms 200) and the three settle to ten
     groups each; every replica is then SIGSTOPped while the backlog is
     inserted, and the clock runs from the SIGCONT until every checkpoint
     reaches its end (the lease is 60 s and ha.stall_ms 0 for this part,
     so that the pause costs no lease and no hand-over).
  2. memory and threads: for G = 1, 10, 30 one replica leads every group
     and a second one follows them all (it names another pool, so the
     balancer does not move groups to it); after 500 rows a group went
     through, VmRSS and Threads of both (/proc/<pid>/status), and the
     increments per group (least squares over G).
  3. time to rebalance (30 groups, 3 replicas; pool.settle_ms/beat_ms
     1000/200 RUNS times and the defaults 10000/1000 once): r1 leads every
     group, r2 starts (time until both within one), then r3 (time from its
     start until every replica is within one of the others); then kill -9
     of r3: time until every group is led again, and until r1 and r2 are
     within one; then, until the holders have not changed for three beats
     and two leases, any group found unled again (a hand-over to the dead
     replica while its member line lives) and for how long.

Every figure is the median of RUNS runs, with each run printed.  Nothing is
asserted about speed; the exit status is 1 only when something broke (tor
exited, a run did not finish, a message was lost).

Environment: TOR_BENCH_RUNS (3), TOR_BENCH_ROWS (200000),
TOR_BENCH_POOL_GROUPS ("1,4,16,30"), TOR_BENCH_POOL_DEFAULT_RUNS (1: the
rebalance at the default settle/beat), TOR_BENCH_POOL_PARTS (default
"throughput,memory,rebalance"), TOR_BIN (<repo>/bin/tor).
"""

import collections
import os
import re
import secrets
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import harness  # noqa: E402
from bench_relay import binlog_key, key_of, payload_of  # noqa: E402
from report import log, problem, verdict  # noqa: E402

RUNS = int(os.environ.get("TOR_BENCH_RUNS", "3"))
ROWS = int(os.environ.get("TOR_BENCH_ROWS", "200000"))
GROUPS = [int(x) for x in os.environ.get("TOR_BENCH_POOL_GROUPS",
                                         "1,4,16,30").split(",") if x]
PARTS = os.environ.get("TOR_BENCH_POOL_PARTS",
                       "throughput,memory,rebalance").split(",")
DEFAULT_RUNS = int(os.environ.get("TOR_BENCH_POOL_DEFAULT_RUNS", "1"))
TOR_BIN = os.environ.get("TOR_BIN") or os.path.join(REPO, "bin", "tor")
PER_TXN = 1000
POOL_N = 30                    # groups of the replica and rebalance parts
MEM_GROUPS = (1, 10, 30)
CLK_TCK = os.sysconf("SC_CLK_TCK")
FAST = {"settle_ms": 1000, "beat_ms": 200}
DEFAULTS = {"settle_ms": 10000, "beat_ms": 1000}
# The default ha keys, but for the SIGSTOP part: a lease that outlives the
# pause and no hand-over of a leader that made no progress meanwhile.
HA = {"lease_ms": 3000, "renew_ms": 1000, "retry_ms": 200}
HA_PAUSED = {"lease_ms": 60000, "renew_ms": 1000, "retry_ms": 200,
             "stall_ms": 0}


def table_of(i):
    return "shop.bpool_%d" % i


def fresh_tables(stack, n):
    for i in range(n):
        stack.sql("DROP TABLE IF EXISTS %s" % table_of(i))
        stack.sql(harness.outbox_ddl(table_of(i)))
    # A new binlog file for the run, the old ones dropped (as bench_relay).
    stack.sql("FLUSH BINARY LOGS")
    f, _ = stack.binlog_position()
    stack.sql("PURGE BINARY LOGS TO %s", f)


def insert_backlog(stack, n):
    """ROWS rows split over n tables, PER_TXN a transaction, the tables'
    transactions in turn; returns each table's end position (the binlog
    position after its last commit)."""
    per = ROWS // n
    ends = [None] * n
    conn = stack.connect(user="app", autocommit=False, timeout=60)
    try:
        with conn.cursor() as cur:
            for start in range(0, per, PER_TXN):
                for i in range(n):
                    sql = ("INSERT INTO " + table_of(i) + " (aggregate_type,"
                           " aggregate_id, payload) VALUES (%s, %s, %s)")
                    rows = [("order", key_of(j), payload_of(j).encode())
                            for j in range(start, min(start + PER_TXN, per))]
                    cur.executemany(sql, rows)
                    conn.commit()
                    if start + PER_TXN >= per:
                        ends[i] = stack.binlog_position()
    finally:
        conn.close()
    return per, ends


def insert_each(stack, n, rows):
    """rows rows into each of n tables, a transaction each; returns each
    table's end position (a group's checkpoint need not move past another
    table's rows)."""
    ends = []
    conn = stack.connect(user="app", autocommit=False, timeout=30)
    try:
        with conn.cursor() as cur:
            for i in range(n):
                cur.executemany(
                    "INSERT INTO " + table_of(i) + " (aggregate_type, "
                    "aggregate_id, payload) VALUES (%s, %s, %s)",
                    [("order", key_of(j), payload_of(j).encode())
                     for j in range(rows)])
                conn.commit()
                ends.append(stack.binlog_position())
    finally:
        conn.close()
    return ends


def pool_config(stack, n, run_tag, start, pool=None, ha=None):
    """The tor.cfg of n sources (groups bp-<run_tag>-<i>)."""
    mysql = {"host": "127.0.0.1", "port": stack.mysql_port, "user": "tor",
             "password": "tor", "start": start}
    sources = []
    for i in range(n):
        sources.append(collections.OrderedDict([
            ("group", "bp-%s-%d" % (run_tag, i)),
            ("mysql", mysql),
            ("outbox", {"tables": [{"table": table_of(i),
                                    "columns": {"id": "id",
                                                "key": "aggregate_id",
                                                "type": "aggregate_type",
                                                "payload": "payload"}}],
                        "routes": [{"match": "^order$",
                                    "topic": topic_of(run_tag, i)}]})]))
    top = collections.OrderedDict([
        ("pool", dict({"name": "bp-" + run_tag}, **(pool or {}))),
        ("kafka", {"brokers": stack.brokers, "topics": [],
                   "mode": "idempotent"}),
        ("redis", {"host": "127.0.0.1", "port": stack.redis_port}),
        ("ha", ha or HA),
        ("checkpoint", {"interval_ms": 50}),
        ("http", {"listen": ""}),
        ("log", {"level": "info"}),
        ("sources", sources)])
    return ("# tor.cfg of a pool, written by bench_pool.py\n" +
            "".join("%s = %s;\n" % (k, harness.cfg_value(v))
                    for k, v in top.items()))


def topic_of(run_tag, i):
    return "bench.pool.%s.%d" % (run_tag, i)


def groups_of(run_tag, n):
    return ["bp-%s-%d" % (run_tag, i) for i in range(n)]


def replica(stack, cfg, name):
    return harness.Tor(stack, cfg, binary=TOR_BIN, name=name)


def proc_status(pid):
    """(VmRSS MiB, threads) of a live process."""
    vals = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads"):
                vals[k] = int(v.split()[0])
    return vals["VmRSS"] / 1024.0, vals["Threads"], vals["VmHWM"] / 1024.0


def thread_names(pid):
    """The process's threads by name, digits folded ("rdk:broker*")."""
    c = collections.Counter()
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                c[re.sub(r"\d+", "*", f.read().strip())] += 1
        except OSError:
            pass
    return ", ".join("%s %d" % kv for kv in sorted(c.items(),
                                                   key=lambda x: -x[1]))


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def mysqld_pid(stack):
    try:
        with open(os.path.join(stack.run_dir, "mariadb", "mysqld.pid")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def checkpoints(r, groups):
    pipe = r.pipeline(transaction=False)
    for g in groups:
        pipe.hmget("tor:{%s}:checkpoint" % g, "file", "pos")
    out = []
    for f, p in pipe.execute():
        out.append(None if f is None or p is None else
                   binlog_key(f.decode(), int(p)))
    return out


def holders(r, groups):
    pipe = r.pipeline(transaction=False)
    for g in groups:
        pipe.get("tor:{%s}:lease" % g)
    return [v.decode().split()[0] if v else None for v in pipe.execute()]


def wait_drained(stack, groups, ends, tors, t0, what, timeout=300):
    """Waits until every group's checkpoint reaches its end; returns the
    seconds since t0, or None (a problem) when a replica exited or the
    timeout passed."""
    r = stack.redis()
    targets = [binlog_key(*e) for e in ends]
    while True:
        cps = checkpoints(r, groups)
        if all(c is not None and c >= t for c, t in zip(cps, targets)):
            return time.monotonic() - t0
        dead = [t for t in tors if not t.running()]
        if dead or time.monotonic() - t0 > timeout:
            late = sum(1 for c, t in zip(cps, targets)
                       if c is None or c < t)
            problem("%s: %d of %d groups short of their end %s; log "
                    "tail:\n%s" % (what, late, len(groups),
                                   "(%s exited %s)" % (dead[0].name,
                                                       dead[0].proc.poll())
                                   if dead else "after %d s" % timeout,
                                   (dead or tors)[0].log_tail(20)))
            return None
        time.sleep(0.02)


def count_messages(stack, run_tag, n, per, what):
    """Each group's topic must hold its rows (no run reads a topic twice)."""
    short = []
    for i in range(n):
        got = sum(harness.high_watermarks(stack.brokers,
                                          topic_of(run_tag, i)).values())
        if got < per:
            short.append((i, got))
    if short:
        problem("%s: %d groups short of %d messages, first %s" % (
            what, len(short), per, short[:3]))


def wait_until(pred, timeout, what):
    t0 = time.monotonic()
    while True:
        v = pred()
        if v:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            problem("%s: not after %d s" % (what, timeout))
            return None
        time.sleep(0.05)


def balanced(r, groups, names):
    """True when every group is led by one of names, each within one of
    the others."""
    h = holders(r, groups)
    if not all(x in names for x in h):
        return False
    c = collections.Counter(h)
    counts = [c.get(x, 0) for x in names]
    return max(counts) - min(counts) <= 1


def spread_str(r, groups, names):
    c = collections.Counter(holders(r, groups))
    return "/".join(str(c.get(x, 0)) for x in names)


def stop_all(tors, what):
    for t in tors:
        if not t.running():
            continue
        rc = t.stop(timeout=60)
        if rc != 0:
            problem("%s: %s exited %s after SIGTERM; log tail:\n%s" % (
                what, t.name, rc, t.log_tail(20)))


# ---------------------------------------------------------------------------
# 1. throughput


def one_replica_backlog(stack, n, run):
    """G = n on one replica from process start; (events/s, cpu s of tor,
    cpu s of mysqld, peak RSS MiB, threads at the end, seconds)."""
    tag = "%s-g%d" % (secrets.token_hex(3), n)
    fresh_tables(stack, n)
    before = stack.binlog_position()
    t_ins = time.monotonic()
    per, ends = insert_backlog(stack, n)
    t_ins = time.monotonic() - t_ins
    groups = groups_of(tag, n)
    cfg = pool_config(stack, n, tag, "%s:%d" % before)
    t = replica(stack, cfg, "solo")
    myd = mysqld_pid(stack)
    my0 = cpu_seconds(myd) if myd else None
    t.start()
    t0 = time.monotonic()
    took = wait_drained(stack, groups, ends, [t], t0,
                        "throughput G=%d run %d" % (n, run))
    res = None
    if took is not None:
        cpu = cpu_seconds(t.pid)
        my = cpu_seconds(myd) - my0 if myd else float("nan")
        _, threads, hwm = proc_status(t.pid)
        res = (per * n / took, cpu, my, hwm, threads, took)
        last = max(ends, key=lambda e: binlog_key(*e))
        if last[0] == before[0]:
            mib = (last[1] - before[1]) / 1048576.0
            log("  G=%-2d the backlog is %.1f MiB of binlog; the server sends"
                " it to each of the %d streams: %.1f MiB" % (n, mib, n,
                                                             mib * n))
        log("  G=%-2d %9s events/s (%.2f s; rows inserted in %.1f s), CPU "
            "tor %.2f s = %.2f us/event, MariaDB %.2f s; peak RSS %.1f MiB, "
            "%d threads; load %.1f" % (n, fmt_rate(res[0]), took, t_ins,
                                       cpu, cpu * 1e6 / (per * n), my, hwm,
                                       threads, os.getloadavg()[0]))
    stop_all([t], "throughput G=%d run %d" % (n, run))
    if res:
        count_messages(stack, tag, n, per, "throughput G=%d run %d" % (
            n, run))
    return res


def replicas_backlog(stack, n_replicas, run):
    """30 groups over n_replicas replicas, balanced before the backlog is
    inserted under SIGSTOP; (events/s, seconds, spread, moved)."""
    tag = "%s-r%d" % (secrets.token_hex(3), n_replicas)
    what = "%d replica(s) x %d groups run %d" % (n_replicas, POOL_N, run)
    fresh_tables(stack, POOL_N)
    start = "%s:%d" % stack.binlog_position()
    groups = groups_of(tag, POOL_N)
    cfg = pool_config(stack, POOL_N, tag, start, pool=FAST, ha=HA_PAUSED)
    names = ["p%d" % (i + 1) for i in range(n_replicas)]
    tors = [replica(stack, cfg, x).start() for x in names]
    r = stack.redis()
    res = None
    try:
        if wait_until(lambda: balanced(r, groups, names), 120,
                      what + ": balanced") is None:
            return None
        # One row a group through, so that every leader has its producer
        # and its stream up before the pause.
        warm = insert_each(stack, POOL_N, 1)
        if wait_drained(stack, groups, warm, tors, time.monotonic(),
                        what + ": warm-up", timeout=60) is None:
            return None
        if wait_until(lambda: balanced(r, groups, names), 60,
                      what + ": balanced after the warm-up") is None:
            return None
        led = holders(r, groups)
        for t in tors:
            t.sigstop()
        t_ins = time.monotonic()
        per, ends = insert_backlog(stack, POOL_N)
        t_ins = time.monotonic() - t_ins
        myd = mysqld_pid(stack)
        my0 = cpu_seconds(myd) if myd else None
        cpu0 = sum(cpu_seconds(t.pid) for t in tors)
        for t in tors:
            t.sigcont()
        t0 = time.monotonic()
        took = wait_drained(stack, groups, ends, tors, t0, what)
        if took is None:
            return None
        cpu = sum(cpu_seconds(t.pid) for t in tors) - cpu0
        my = cpu_seconds(myd) - my0 if myd else float("nan")
        moved = sum(1 for a, b in zip(led, holders(r, groups)) if a != b)
        res = (per * POOL_N / took, took, spread_str(r, groups, names), moved,
               cpu * 1e6 / (per * POOL_N), my)
        log("  %d replica(s): %9s events/s (%.2f s after SIGCONT; paused "
            "%.1f s for the inserts); CPU of the replicas %.2f s = %.2f "
            "us/event, MariaDB %.2f s; groups per replica %s, %d changed "
            "leader meanwhile; load %.1f" % (
                n_replicas, fmt_rate(res[0]), took, t_ins, cpu, res[4], my,
                res[2], moved, os.getloadavg()[0]))
    finally:
        for t in tors:
            t.sigcont()
        stop_all(tors, what)
    if res:
        count_messages(stack, tag, POOL_N, per + 1, what)
    return res


# ---------------------------------------------------------------------------
# 2. memory and threads


def memory_point(stack, n):
    """(leader RSS MiB, leader threads, follower RSS, follower threads)
    with n groups."""
    tag = "%s-m%d" % (secrets.token_hex(3), n)
    what = "memory G=%d" % n
    fresh_tables(stack, n)
    start = "%s:%d" % stack.binlog_position()
    groups = groups_of(tag, n)
    # Two pool names: each replica alone in its pool, so the balancer of
    # neither hands a group to the other.
    lead_cfg = pool_config(stack, n, tag, start, pool={"name": "bpl-" + tag})
    follow_cfg = pool_config(stack, n, tag, start,
                             pool={"name": "bpf-" + tag})
    leader = replica(stack, lead_cfg, "lead").start()
    tors = [leader]
    try:
        r = stack.redis()
        if wait_until(lambda: all(x == "lead" for x in holders(r, groups)),
                      60, what + ": every group led") is None:
            return None
        follower = replica(stack, follow_cfg, "follow").start()
        tors.append(follower)
        end = insert_each(stack, n, 500)
        if wait_drained(stack, groups, end, tors, time.monotonic(),
                        what) is None:
            return None
        time.sleep(3)     # the follower's probes and beats settled
        if not all(x == "lead" for x in holders(r, groups)):
            problem("%s: the follower took groups: %s" % (
                what, spread_str(r, groups, ["lead", "follow"])))
        lr, lt, _ = proc_status(leader.pid)
        fr, ft, _ = proc_status(follower.pid)
        log("  G=%-2d leading: %6.1f MiB %4d threads; following: %6.1f MiB "
            "%4d threads" % (n, lr, lt, fr, ft))
        log("       leader's threads: %s" % thread_names(leader.pid))
        log("       follower's threads: %s" % thread_names(follower.pid))
        return lr, lt, fr, ft
    finally:
        stop_all(tors, what)


def slope(xs, ys):
    mx, my = statistics.mean(xs), statistics.mean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den
    return b, my - b * mx


# ---------------------------------------------------------------------------
# 3. rebalance


def unled_after(r, groups, t_from, window):
    """Watches the leases from t_from until window s after the last change
    of holder; returns (groups found unled, the longest unled stretch s).
    A group handed over to a replica that has just died stays unled until
    the hand-over's name for it expires."""
    unled, longest = {}, collections.Counter()
    last, last_change = None, t_from
    while time.monotonic() - last_change < window and \
            time.monotonic() - t_from < 120:
        now = time.monotonic()
        h = holders(r, groups)
        if h != last:
            last, last_change = h, now
        for g, x in zip(groups, h):
            if x is None:
                unled.setdefault(g, now)
                longest[g] = max(longest[g], now - unled[g])
            else:
                unled.pop(g, None)
        time.sleep(0.05)
    return len(longest), max(longest.values(), default=0.0)


def rebalance(stack, pool, run):
    """r1 alone, then r2, then r3, then kill -9 of r3; the seconds of each
    step (None where it did not finish)."""
    tag = "%s-b" % secrets.token_hex(3)
    what = "rebalance %d/%d run %d" % (pool["settle_ms"], pool["beat_ms"],
                                       run)
    fresh_tables(stack, POOL_N)
    start = "%s:%d" % stack.binlog_position()
    groups = groups_of(tag, POOL_N)
    cfg = pool_config(stack, POOL_N, tag, start, pool=pool)
    r = stack.redis()
    tors = {}
    out = {}
    limit = 30 + 3 * POOL_N * pool["beat_ms"] / 1000.0 + \
        2 * pool["settle_ms"] / 1000.0
    try:
        tors["r1"] = replica(stack, cfg, "r1").start()
        if wait_until(lambda: all(x == "r1" for x in holders(r, groups)),
                      60, what + ": r1 leads all") is None:
            return None
        tors["r2"] = replica(stack, cfg, "r2").start()
        out["two"] = wait_until(lambda: balanced(r, groups, ["r1", "r2"]),
                                limit, what + ": r1/r2 balanced")
        tors["r3"] = replica(stack, cfg, "r3").start()
        out["three"] = wait_until(
            lambda: balanced(r, groups, ["r1", "r2", "r3"]), limit,
            what + ": r1/r2/r3 balanced")
        spread3 = spread_str(r, groups, ["r1", "r2", "r3"])
        tors["r3"].kill9()
        t0 = time.monotonic()
        out["led"] = wait_until(
            lambda: all(x in ("r1", "r2") for x in holders(r, groups)), 60,
            what + ": every group led after the kill")
        t_led = time.monotonic()
        took = wait_until(lambda: balanced(r, groups, ["r1", "r2"]), limit,
                          what + ": r1/r2 balanced after the kill")
        out["rebal"] = None if took is None else time.monotonic() - t0
        out["unled"], out["longest"] = unled_after(
            r, groups, t_led, 3 * pool["beat_ms"] / 1000.0 +
            2 * HA["lease_ms"] / 1000.0 + 1)
        bad = [x for x in ("r1", "r2") if not tors[x].running()]
        if bad:
            problem("%s: %s exited; log tail:\n%s" % (
                what, bad, tors[bad[0]].log_tail(20)))
        log("  settle/beat %d/%d ms: r2 joins -> within one %s s; r3 joins "
            "-> within one %s s (%s); r3 killed -> every group led %s s, "
            "r1/r2 within one %s s (%s); %d group(s) unled again after "
            "every group was led, longest %.2f s" % (
                pool["settle_ms"], pool["beat_ms"], fmt_s(out["two"]),
                fmt_s(out["three"]), spread3, fmt_s(out["led"]),
                fmt_s(out["rebal"]), spread_str(r, groups, ["r1", "r2"]),
                out["unled"], out["longest"]))
        return out
    finally:
        stop_all([t for k, t in tors.items() if k != "r3"], what)


# ---------------------------------------------------------------------------
# report


def fmt_rate(x):
    return "-" if x is None else "{:,.0f}".format(x)


def fmt_s(x):
    return "-" if x is None else "%.2f" % x


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def runs_str(xs, f):
    return "[" + ", ".join(f(x) for x in xs) + "]"


def main():
    stack = harness.Stack()
    stack.wait_mysql()
    log("bench_pool: %s, %d runs, %d rows (split over the groups), G = %s, "
        "on Apache Kafka (%s), files in %s/tor-it" % (
            TOR_BIN, RUNS, ROWS, ",".join(map(str, GROUPS)), stack.brokers,
            stack.run_dir))
    t_all = time.monotonic()
    log("bench_pool: load average %.1f (%d cores): wall-clock figures "
        "follow the machine's load, CPU figures less so" % (
            os.getloadavg()[0], os.cpu_count()))

    # 1. throughput
    thr = {n: [] for n in GROUPS}
    ratio = {n: [] for n in GROUPS}
    cpu_ratio = {n: [] for n in GROUPS}
    rep = {1: [], 3: []}
    for run in range(1, RUNS + 1 if "throughput" in PARTS else 1):
        log("throughput run %d/%d" % (run, RUNS))
        base = None
        for n in GROUPS:
            res = one_replica_backlog(stack, n, run)
            thr[n].append(res)
            if res and n == GROUPS[0]:
                base = res
            ratio[n].append(res[0] / base[0] if res and base else None)
            cpu_ratio[n].append(res[1] / base[1] if res and base else None)
        for k in (1, 3):
            rep[k].append(replicas_backlog(stack, k, run))

    # 2. memory and threads
    log("memory and threads (one replica leading every group, another "
        "following them all)")
    mem = {}
    for n in MEM_GROUPS if "memory" in PARTS else ():
        p = memory_point(stack, n)
        if p:
            mem[n] = p

    # 3. rebalance
    log("time to rebalance (%d groups, 3 replicas)" % POOL_N)
    reb = {"fast": [], "default": []}
    for run in range(1, RUNS + 1 if "rebalance" in PARTS else 1):
        reb["fast"].append(rebalance(stack, FAST, run))
    for run in range(1, DEFAULT_RUNS + 1 if "rebalance" in PARTS else 1):
        reb["default"].append(rebalance(stack, DEFAULTS, run))

    # The report.
    log("")
    log("results (median of %d runs; individual runs in brackets)" % RUNS)
    log("  one replica, G groups, %d rows split evenly, from process start:"
        % ROWS)
    for n in GROUPS:
        xs = thr[n]
        log("  G=%-2d %10s events/s  %s; / G=%d: %s %s; tor CPU %s us/event"
            " (/ G=%d: %s %s); MariaDB CPU %s s; peak RSS %s MiB; %s "
            "threads" % (
                n, fmt_rate(med([x and x[0] for x in xs])),
                runs_str([x and x[0] for x in xs], fmt_rate), GROUPS[0],
                fmt_s(med(ratio[n])), runs_str(ratio[n], fmt_s),
                fmt_s(med([x and x[1] * 1e6 / ROWS for x in xs])),
                GROUPS[0], fmt_s(med(cpu_ratio[n])),
                runs_str(cpu_ratio[n], fmt_s),
                fmt_s(med([x and x[2] for x in xs])),
                fmt_s(med([x and x[3] for x in xs])),
                fmt_s(med([x and x[4] for x in xs]))))
    r1 = med([x and x[0] for x in rep[1]])
    r3 = med([x and x[0] for x in rep[3]])
    log("  %d groups, backlog after SIGCONT: one replica %s events/s %s; "
        "three replicas (10 each) %s events/s %s; three / one %s" % (
            POOL_N, fmt_rate(r1), runs_str([x and x[0] for x in rep[1]],
                                           fmt_rate),
            fmt_rate(r3), runs_str([x and x[0] for x in rep[3]], fmt_rate),
            fmt_s(r3 / r1 if r1 and r3 else None)))
    log("  ... CPU of the replicas per event: one %s us %s, three %s us %s;"
        " MariaDB CPU s: one %s, three %s" % (
            fmt_s(med([x and x[4] for x in rep[1]])),
            runs_str([x and x[4] for x in rep[1]], fmt_s),
            fmt_s(med([x and x[4] for x in rep[3]])),
            runs_str([x and x[4] for x in rep[3]], fmt_s),
            fmt_s(med([x and x[5] for x in rep[1]])),
            fmt_s(med([x and x[5] for x in rep[3]]))))
    if len(mem) >= 2:
        xs = sorted(mem)
        lr, lri = slope(xs, [mem[n][0] for n in xs])
        lt, lti = slope(xs, [mem[n][1] for n in xs])
        fr, fri = slope(xs, [mem[n][2] for n in xs])
        ft, fti = slope(xs, [mem[n][3] for n in xs])
        log("  memory and threads: %s" % "; ".join(
            "G=%d lead %.1f MiB/%d thr, follow %.1f MiB/%d thr" % (
                (n,) + mem[n]) for n in xs))
        log("  per group (least squares over G=%s): leading %.2f MiB and "
            "%.1f threads (+ %.1f MiB, %.1f threads); following %.2f MiB "
            "and %.1f threads (+ %.1f MiB, %.1f threads)" % (
                ",".join(map(str, xs)), lr, lt, lri, lti, fr, ft, fri, fti))
    for kind, pool in (("fast", FAST), ("default", DEFAULTS)):
        xs = [x for x in reb[kind] if x]
        if not xs:
            continue
        log("  rebalance, settle/beat %d/%d ms (%d run(s)): " % (
            pool["settle_ms"], pool["beat_ms"], len(reb[kind])) + "; ".join(
                "%s %s s %s" % (label, fmt_s(med([x.get(k) for x in xs])),
                                runs_str([x.get(k) for x in xs], fmt_s))
                for label, k in (("r2 joins", "two"), ("r3 joins", "three"),
                                 ("kill -9: all led", "led"),
                                 ("kill -9: balanced", "rebal"),
                                 ("then unled again, longest", "longest"))))
    log("  bench_pool took %.0f s" % (time.monotonic() - t_all))
    return verdict()


if __name__ == "__main__":
    sys.exit(main())
