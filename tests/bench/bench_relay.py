"""tor's relay benchmark (run by tests/bench/run.sh, i.e. `make bench`).

Against a running local stack ($TOR_RUN_DIR/env, see deploy/local/stack.sh),
each run measures:

  1. relay throughput: ROWS outbox rows (payload ~200 bytes, key k<i%1000>,
     1,000 rows a transaction) are inserted while no tor runs; then bin/tor
     starts at the binlog position from before the inserts, and the clock
     runs from its process start until its Redis checkpoint reaches the
     binlog end noted after the inserts (= every message acknowledged).
     Also the tor process's CPU time and peak RSS at that moment.
  2. raw read rate: mariadb-binlog --read-from-remote-server over exactly
     the same binlog range, to /dev/null.
  3. raw produce rate: kcat producing the same keys and values (idempotent,
     acks=all, linger.ms=5) to the same broker.
  4. latency: with tor running, single-row autocommit inserts paced at
     1,000/s for LAT_SECONDS, commit time -> arrival time at a consumer.

1, 3 and 4 on each broker TOR_BENCH_KAFKA names ("kafka": Apache Kafka,
the stack's; "dev": the development broker beside it; default "kafka"),
the rows inserted once per run for all of them.
Every figure is the median of RUNS runs, printed with the individual runs.
Nothing is asserted about speed; the exit status is 1 only when something
broke (tor exited early or with a non-zero status, lost messages, a tool
failed).
"""

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import harness  # noqa: E402
from report import log, problem, verdict  # noqa: E402
from confluent_kafka import (Consumer, OFFSET_END, Producer,  # noqa: E402,F401
                             TopicPartition)

RUNS = int(os.environ.get("TOR_BENCH_RUNS", "3"))
ROWS = int(os.environ.get("TOR_BENCH_ROWS", "200000"))
PER_TXN = 1000
KEYS = 1000
PAYLOAD_BYTES = 200
LAT_RATE = int(os.environ.get("TOR_BENCH_LAT_RATE", "1000"))
LAT_SECONDS = float(os.environ.get("TOR_BENCH_LAT_SECONDS", "10"))
TABLE = "shop.bench_outbox"
TOPIC = "bench"            # tor's throughput topic
KCAT_TOPIC = "bench.kcat"  # kcat's
LAT_TOPIC = "bench.lat"    # tor's latency topic
TOR_BIN = os.environ.get("TOR_BIN") or os.path.join(REPO, "bin", "tor")
CLK_TCK = os.sysconf("SC_CLK_TCK")
NAIVE_RATE = 12500   # one message at a time, waiting for each ack



# ---------------------------------------------------------------------------
# data


def key_of(i):
    return "k%d" % (i % KEYS)


def payload_of(i):
    """~200 bytes of JSON, no tab or newline (kcat's input format)."""
    head = '{"type":"order","n":%d,"customer":"c%d","total":%d.%02d,"pad":"' % (
        i, i % 7919, i % 10007, i % 100)
    return head + "x" * max(0, PAYLOAD_BYTES - len(head) - 2) + '"}'


def write_kcat_input(path):
    with open(path, "w") as f:
        for i in range(ROWS):
            f.write("%s\t%s\n" % (key_of(i), payload_of(i)))


def binlog_key(file, pos):
    """Orders binlog positions: by the file's numeric suffix, then pos."""
    stem, _, num = file.rpartition(".")
    return (stem, int(num) if num.isdigit() else num, pos)


def binlog_files_between(stack, first, last):
    """The binlog file names from first to last, inclusive, in order."""
    names = [r[0] for r in stack.sql("SHOW BINARY LOGS")]
    lo, hi = names.index(first), names.index(last)
    return names[lo:hi + 1]


def fresh_table(stack):
    stack.sql("DROP TABLE IF EXISTS %s" % TABLE)
    stack.sql(harness.outbox_ddl(TABLE))
    # Start a new binlog file and drop the old ones, so every run reads a
    # file of its own and the run directory does not grow.
    stack.sql("FLUSH BINARY LOGS")
    f, _ = stack.binlog_position()
    stack.sql("PURGE BINARY LOGS TO %s", f)


def insert_rows(stack):
    conn = stack.connect(user="app", autocommit=False, timeout=30)
    sql = ("INSERT INTO " + TABLE +
           " (aggregate_type, aggregate_id, payload) VALUES (%s, %s, %s)")
    try:
        with conn.cursor() as cur:
            for start in range(0, ROWS, PER_TXN):
                rows = [("order", key_of(i), payload_of(i).encode())
                        for i in range(start, min(start + PER_TXN, ROWS))]
                cur.executemany(sql, rows)    # one multi-row INSERT
                conn.commit()
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# tor


# Extra librdkafka properties for tor, ";"-separated "name=value" (for
# experiments; the figures in docs/evidence.md are taken without).
KAFKA_PROPS = [x.strip() for x in
               os.environ.get("TOR_BENCH_KAFKA_PROPS", "").split(";")
               if x.strip()]


def tor_config(stack, group, start, topic, level="warn", mode="idempotent"):
    kafka = {"properties": KAFKA_PROPS} if KAFKA_PROPS else {}
    kafka["mode"] = mode
    return harness.base_config(
        stack, start=start, group=group, kafka=kafka,
        outbox={"tables": [{"table": TABLE,
                            "columns": {"id": "id", "key": "aggregate_id",
                                        "type": "aggregate_type",
                                        "payload": "payload"}}],
                "routes": [{"match": "^order$", "topic": topic}]},
        checkpoint={"interval_ms": 50},
        log={"level": level})


class TorProc:
    def __init__(self, stack, cfg_text, workdir, name):
        self.dir = workdir
        self.cfg_path = os.path.join(workdir, name + ".cfg")
        self.log_path = os.path.join(workdir, name + ".log")
        with open(self.cfg_path, "w") as f:
            f.write(cfg_text)
        self.proc = None

    def start(self):
        self._log = open(self.log_path, "ab")
        env = dict(os.environ, HOSTNAME="bench")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([TOR_BIN, "-c", self.cfg_path],
                                     stdin=subprocess.DEVNULL,
                                     stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env,
                                     cwd=self.dir, start_new_session=True)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # fields[0] is field 3 (state): utime and stime are fields 14, 15
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def peak_rss_mib(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
        return float("nan")

    def log_tail(self, n=20):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join("    " + x for x in lines[-n:])

    def stop(self, what):
        """SIGTERM, wait; a non-zero exit is a problem worth reporting."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(10)
            problem("%s: tor ignored SIGTERM for 30 s, killed; log tail:\n%s"
                    % (what, self.log_tail()))
            return rc
        finally:
            self._log.close()
        if rc != 0:
            problem("%s: tor exited %d after SIGTERM (expected 0); command "
                    "%s -c %s; log tail:\n%s" % (what, rc, TOR_BIN,
                                                 self.cfg_path,
                                                 self.log_tail()))
        return rc

    def kill(self):
        if self.running():
            self.proc.kill()
            self.proc.wait(10)


def checkpoint(r, group):
    f, p = r.hmget("tor:{%s}:checkpoint" % group, "file", "pos")
    if f is None or p is None:
        return None
    return f.decode(), int(p)


# ---------------------------------------------------------------------------
# measurements


def measure_relay(stack, workdir, run, group, before, end,
                  mode="idempotent"):
    """Runs tor over the inserted rows; returns (events/s, cpu s, peak MiB)."""
    hw0 = sum(harness.high_watermarks(stack.brokers, TOPIC).values())
    r = stack.redis()
    r.delete("tor:{%s}:checkpoint" % group)
    tor = TorProc(stack, tor_config(stack, group, "%s:%d" % before, TOPIC,
                                    mode=mode),
                  workdir, "relay%d%s" % (run, mode[0]))
    target = binlog_key(*end)
    tor.start()
    try:
        deadline = tor.t0 + 300
        cp = None
        first = None     # (seconds after start, position) of the first checkpoint
        while True:
            cp = checkpoint(r, group)
            if cp is not None and first is None:
                first = (time.monotonic() - tor.t0, cp)
            if cp is not None and binlog_key(*cp) >= target:
                elapsed = time.monotonic() - tor.t0
                cpu = tor.cpu_seconds()
                rss = tor.peak_rss_mib()
                break
            if not tor.running():
                problem("relay run %d: tor exited %s before the checkpoint "
                        "reached %s:%d (last %s); log tail:\n%s" %
                        (run, tor.proc.returncode, end[0], end[1], cp,
                         tor.log_tail()))
                return None
            if time.monotonic() > deadline:
                problem("relay run %d: checkpoint at %s after 300 s, want "
                        "%s:%d; log tail:\n%s" % (run, cp, end[0], end[1],
                                                  tor.log_tail()))
                return None
            time.sleep(0.01)
    finally:
        tor.stop("relay run %d" % run)
    got = sum(harness.high_watermarks(stack.brokers, TOPIC).values()) - hw0
    if got < ROWS:
        problem("relay run %d: %d messages in topic %s, want %d (checkpoint "
                "%s:%d claims all were acknowledged)" % (run, got, TOPIC,
                                                         ROWS, *cp))
    elif got > ROWS and mode == "transactional" and stack.kafka != "dev":
        # Each commit takes an offset per partition for its marker.
        log("  note: %d offsets for %d rows (transaction markers among "
            "them)" % (got, ROWS))
    elif got > ROWS:
        log("  note: %d messages for %d rows (%d duplicates)" %
            (got, ROWS, got - ROWS))
    # Diagnostic: the rate after the first checkpoint write (start-up
    # excluded), rows estimated from binlog bytes (all rows are alike).
    steady = None
    if first and first[1][0] == before[0] == end[0] and elapsed > first[0]:
        frac = (end[1] - first[1][1]) / float(end[1] - before[1])
        steady = (first[0], ROWS * frac / (elapsed - first[0]))
    return ROWS / elapsed, cpu, rss, elapsed, steady


def measure_raw_read(stack, before, end):
    files = binlog_files_between(stack, before[0], end[0])
    cmd = ["mariadb-binlog", "--read-from-remote-server", "--host",
           "127.0.0.1", "--port", str(stack.mysql_port), "--user", "tor",
           "--password=tor", "--start-position=%d" % before[1],
           "--stop-position=%d" % end[1]] + files
    t0 = time.monotonic()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True)
    elapsed = time.monotonic() - t0
    if p.returncode != 0:
        problem("raw read: %s exited %d: %s" % (" ".join(cmd), p.returncode,
                                                p.stderr.strip()[-500:]))
        return None
    return ROWS / elapsed, elapsed


def measure_raw_produce(stack, input_path):
    hw0 = sum(harness.high_watermarks(stack.brokers, KCAT_TOPIC).values())
    cmd = ["kcat", "-P", "-b", stack.brokers, "-t", KCAT_TOPIC, "-K", "\t",
           "-X", "enable.idempotence=true", "-X", "acks=all",
           "-X", "linger.ms=5", "-l", input_path]
    t0 = time.monotonic()
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True)
    elapsed = time.monotonic() - t0
    if p.returncode != 0:
        problem("raw produce: kcat exited %d: %s" % (p.returncode,
                                                     p.stderr.strip()[-500:]))
        return None
    got = sum(harness.high_watermarks(stack.brokers, KCAT_TOPIC).values()) - hw0
    if got != ROWS:
        log("  note: kcat left %d messages, want %d" % (got, ROWS))
    return ROWS / elapsed, elapsed


def consume_latency(brokers, topic, out_path):
    """Child process: assigns every partition of topic at its end, prints
    "ready", then writes "seq arrival_wall_time" lines until SIGTERM."""
    c = Consumer({"bootstrap.servers": brokers,
                  "group.id": "tor-bench-lat-%d" % os.getpid(),
                  "enable.auto.commit": False,
                  "enable.partition.eof": False,
                  "fetch.wait.max.ms": 5,
                  "fetch.min.bytes": 1,
                  "fetch.error.backoff.ms": 5})
    md = c.list_topics(topic, timeout=10)
    parts = sorted(md.topics[topic].partitions)
    tps = []
    for p in parts:
        _, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10,
                                        cached=False)
        tps.append(TopicPartition(topic, p, hi))
    c.assign(tps)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    # A first consume() starts the fetchers before the parent is told.
    c.consume(1, 0.2)
    print("ready", flush=True)
    with open(out_path, "w") as out:
        while not stop:
            # poll(), not consume(n, timeout): consume waits for n messages
            # or the whole timeout, which would add up to that to every
            # arrival time.
            m = c.poll(0.05)
            now = time.time()
            if m is not None:
                if m.error():
                    continue
                try:
                    seq = json.loads(m.value())["seq"]
                except (ValueError, KeyError, TypeError):
                    continue
                out.write("%d %.6f\n" % (seq, now))
                continue
            out.flush()
    c.close()


def percentile(sorted_vals, q):
    if not sorted_vals:
        return float("nan")
    i = min(len(sorted_vals) - 1, max(0, int(round(q * len(sorted_vals))) - 1))
    return sorted_vals[i]


def measure_latency(stack, workdir, run, group):
    r = stack.redis()
    r.delete("tor:{%s}:checkpoint" % group)
    f, p = stack.binlog_position()
    tor = TorProc(stack, tor_config(stack, group, "%s:%d" % (f, p), LAT_TOPIC),
                  workdir, "latency%d" % run)
    arrivals_path = os.path.join(workdir, "arrivals%d.txt" % run)
    cons = subprocess.Popen([sys.executable, os.path.abspath(__file__),
                             "--consume", stack.brokers, LAT_TOPIC,
                             arrivals_path], stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    tor.start()
    try:
        line = cons.stdout.readline().strip()
        if line != "ready":
            problem("latency run %d: consumer did not start (%r)" % (run,
                                                                     line))
            return None
        conn = stack.connect(user="app", autocommit=True, timeout=10)
        sql = ("INSERT INTO " + TABLE +
               " (aggregate_type, aggregate_id, payload) VALUES (%s, %s, %s)")
        pad = "x" * 150

        def body(seq):
            return json.dumps({"seq": seq, "pad": pad}).encode()

        # Warm-up: one row (seq -1) through the whole path, so tor's
        # connections are up before the clock matters.
        with conn.cursor() as cur:
            cur.execute(sql, ("order", "warmup", body(-1)))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not tor.running():
                problem("latency run %d: tor exited %s; log tail:\n%s" %
                        (run, tor.proc.returncode, tor.log_tail()))
                return None
            try:
                with open(arrivals_path) as fh:
                    if any(x.startswith("-1 ") for x in fh):
                        break
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        else:
            problem("latency run %d: warm-up row not relayed in 30 s; log "
                    "tail:\n%s" % (run, tor.log_tail()))
            return None
        time.sleep(0.2)

        total = int(LAT_RATE * LAT_SECONDS)
        commits = {}
        t_start = time.monotonic()
        with conn.cursor() as cur:
            for seq in range(total):
                due = t_start + seq / LAT_RATE
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
                cur.execute(sql, ("order", key_of(seq), body(seq)))
                commits[seq] = time.time()
        t_insert = time.monotonic() - t_start
        conn.close()
        # Wait for the stragglers (up to 10 s).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(arrivals_path) as fh:
                n = sum(1 for x in fh if not x.startswith("-"))
            if n >= total:
                break
            time.sleep(0.05)
    finally:
        if cons.poll() is None:
            cons.send_signal(signal.SIGTERM)
        try:
            cons.wait(15)
        except subprocess.TimeoutExpired:
            cons.kill()
            cons.wait(5)
        tor.stop("latency run %d" % run)

    arrivals = {}
    with open(arrivals_path) as fh:
        for x in fh:
            s, t = x.split()
            s = int(s)
            if s >= 0 and s not in arrivals:
                arrivals[s] = float(t)
    lat = sorted((arrivals[s] - commits[s]) * 1000.0 for s in arrivals
                 if s in commits)
    if len(lat) < total:
        problem("latency run %d: %d of %d messages arrived" %
                (run, len(lat), total))
    return {"p50": percentile(lat, 0.50), "p99": percentile(lat, 0.99),
            "max": lat[-1] if lat else float("nan"), "arrived": len(lat),
            "sent": total, "rate": total / t_insert}


# ---------------------------------------------------------------------------
# report


def fmt_rate(x):
    return "{:,.0f}".format(x)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def runs_str(xs, f):
    return "[" + ", ".join("-" if x is None else f(x) for x in xs) + "]"


# The brokers the relay is measured on, in order: "kafka" (Apache Kafka,
# the stack's) and "dev" (the development broker beside it, for comparison
# with figures taken on it before).
BROKERS = [b.strip() for b in os.environ.get("TOR_BENCH_KAFKA",
                                             "kafka").split(",") if b.strip()]
BROKER_NAMES = {"kafka": "Apache Kafka", "dev": "dev broker"}

KEYS_PER_BROKER = ("tor", "cpu", "cpu_us", "rss", "produce", "ratio", "p50",
                   "p99", "max", "lat", "steady", "startup", "txn",
                   "txn_ratio")


def measure_on(stack, kind, workdir, run, tag, before, end, rd, kcat_input,
               res):
    """The throughput figures of one run on one broker, into res[kind]."""
    stack.kafka = kind
    r = res[kind]
    log("  on the %s (%s):" % (BROKER_NAMES[kind], stack.brokers))
    rel = measure_relay(stack, workdir, run, "bench-%s-%s-r%d" % (
        tag, kind, run), before, end)
    if rel:
        ev, cpu, rss, el, steady = rel
        r["tor"].append(ev)
        r["cpu"].append(cpu)
        r["cpu_us"].append(cpu * 1e6 / ROWS)
        r["rss"].append(rss)
        log("  tor:         %s events/s (%.2f s), CPU %.2f s = %.2f "
            "us/event, peak RSS %.1f MiB" %
            (fmt_rate(ev), el, cpu, cpu * 1e6 / ROWS, rss))
        r["startup"].append(steady[0] if steady else None)
        r["steady"].append(steady[1] if steady else None)
        if steady:
            log("               first checkpoint %.2f s after start; "
                "%s events/s from there on" % (steady[0],
                                                fmt_rate(steady[1])))
    else:
        for k in ("tor", "cpu", "cpu_us", "rss", "steady", "startup"):
            r[k].append(None)

    # The same rows again in transactional mode (DESIGN.md §5).
    txn = measure_relay(stack, workdir, run, "bench-%s-%s-t%d" % (
        tag, kind, run), before, end, mode="transactional")
    r["txn"].append(txn[0] if txn else None)
    r["txn_ratio"].append(txn[0] / rel[0] if txn and rel else None)
    if txn:
        log("  transactional: %s events/s (%.2f s), CPU %.2f us/event, "
            "peak RSS %.1f MiB" % (fmt_rate(txn[0]), txn[3],
                                   txn[1] * 1e6 / ROWS, txn[2]))

    pr = measure_raw_produce(stack, kcat_input)
    r["produce"].append(pr[0] if pr else None)
    if pr:
        log("  raw produce: %s events/s (%.2f s, kcat)" %
            (fmt_rate(pr[0]), pr[1]))

    if rel and rd and pr:
        ratio = rel[0] / min(rd[0], pr[0])
        r["ratio"].append(ratio)
        log("  ratio tor / min(raw read, raw produce) = %.2f" % ratio)
    else:
        r["ratio"].append(None)


def latency_on(stack, kind, workdir, run, tag, res):
    """The latency of one run on one broker, into res[kind]."""
    stack.kafka = kind
    r = res[kind]
    lat = measure_latency(stack, workdir, run, "bench-%s-%s-l%d" % (
        tag, kind, run))
    if lat:
        for k in ("p50", "p99", "max"):
            r[k].append(lat[k])
        r["lat"].append(lat)
        log("  latency on the %s: p50 %.1f ms, p99 %.1f ms, max %.1f ms; "
            "%d of %d arrived; inserts at %s/s" %
            (BROKER_NAMES[kind], lat["p50"], lat["p99"], lat["max"],
             lat["arrived"], lat["sent"], fmt_rate(lat["rate"])))
    else:
        for k in ("p50", "p99", "max"):
            r[k].append(None)


def report(res, read):
    """The medians, one column per broker, each run in brackets."""
    m = {kind: {k: med(v) for k, v in r.items() if k != "lat"}
         for kind, r in res.items()}
    m_read = med(read)
    log("")
    log("results (median of %d; individual runs in brackets; raw read is "
        "the same for every broker)" % RUNS)
    rows = [
        ("tor events/s", "tor", fmt_rate, ""),
        ("  first checkpoint s", "startup", lambda x: "%.2f" % x,
         "after process start"),
        ("  events/s after it", "steady", fmt_rate, "start-up excluded"),
        ("raw produce events/s", "produce", fmt_rate, ""),
        ("ratio tor / min(raw)", "ratio", lambda x: "%.2f" % x,
         "per run; target >= 0.5"),
        ("CPU us/event", "cpu_us", lambda x: "%.2f" % x, "target <= 3"),
        ("peak RSS MiB", "rss", lambda x: "%.1f" % x, "target <= 32"),
        ("transactional events/s", "txn", fmt_rate, ""),
        ("transactional / idem.", "txn_ratio", lambda x: "%.2f" % x,
         "per run; target >= 0.8"),
        ("latency p50 ms", "p50", lambda x: "%.1f" % x, ""),
        ("latency p99 ms", "p99", lambda x: "%.1f" % x, "target <= 20"),
        ("latency max ms", "max", lambda x: "%.1f" % x, ""),
    ]
    log("  %-22s %10s  %s" % ("raw read events/s", fmt_rate(m_read),
                              runs_str(read, fmt_rate)))
    for kind in res:
        log("  on the %s:" % BROKER_NAMES[kind])
        for label, k, f, note in rows:
            log("  %-22s %10s  %s%s" % (label, f(m[kind][k]),
                                        runs_str(res[kind][k], f),
                                        "  (" + note + ")" if note else ""))
        lats = res[kind]["lat"]
        log("  latency: %d of %d messages arrived over %d runs; inserts "
            "paced at %d/s achieved %s/s (median)" % (
                sum(x["arrived"] for x in lats),
                sum(x["sent"] for x in lats), len(lats), LAT_RATE,
                fmt_rate(med([x["rate"] for x in lats]))))
    if len(res) > 1:
        kinds = list(res)
        log("  %s / %s (medians): tor %.2f, raw produce %.2f, "
            "transactional %.2f, latency p50 %.2f, p99 %.2f" % (
                kinds[0], kinds[1], *(
                    m[kinds[0]][k] / m[kinds[1]][k] for k in (
                        "tor", "produce", "txn", "p50", "p99"))))
    log("  latency is commit -> consumer arrival (consumer fetch.wait.max.ms"
        "=5 included): an upper bound of commit -> ack")
    log("  for scale: a relay that sends one message at a time and waits for "
        "each ack manages about %s events/s on this kind of machine" %
        fmt_rate(NAIVE_RATE))
    log("")
    for kind in res:
        mk = m[kind]
        lats = res[kind]["lat"]
        log("summary (%s): relay: %s events/s (median of %d) = %.2f x "
            "min(raw read %s, raw produce %s); CPU %.2f us/event; peak RSS "
            "%.0f MiB; latency p50 %.1f ms p99 %.1f ms (max %.1f ms, %d of "
            "%d arrived, %s inserts/s); transactional %s events/s = %.2f x "
            "idempotent" % (
                BROKER_NAMES[kind], fmt_rate(mk["tor"]), RUNS,
                mk["tor"] / min(m_read, mk["produce"]), fmt_rate(m_read),
                fmt_rate(mk["produce"]), mk["cpu_us"], mk["rss"], mk["p50"],
                mk["p99"], mk["max"], sum(x["arrived"] for x in lats),
                sum(x["sent"] for x in lats),
                fmt_rate(med([x["rate"] for x in lats])),
                fmt_rate(mk["txn"]), mk["txn_ratio"]))


def main():
    stack = harness.Stack()
    stack.wait_mysql()
    bad = [b for b in BROKERS if b not in BROKER_NAMES]
    if bad or not BROKERS:
        log("bench: TOR_BENCH_KAFKA names %s; known: kafka, dev" % (
            ",".join(bad) or "nothing"))
        return 1
    workdir = tempfile.mkdtemp(prefix="bench-", dir=stack.run_dir)
    kcat_input = os.path.join(workdir, "kcat-input.tsv")
    write_kcat_input(kcat_input)
    tag = "%d-%d" % (int(time.time()), os.getpid())
    if KAFKA_PROPS:
        log("bench: extra kafka.properties for tor: %s" % KAFKA_PROPS)
    log("bench: %s, %d runs, %d rows of ~%d bytes (key k<i%%%d>, %d rows a "
        "transaction), on %s, files in %s" %
        (TOR_BIN, RUNS, ROWS, len(payload_of(ROWS - 1)), KEYS, PER_TXN,
         ", ".join(BROKER_NAMES[b] for b in BROKERS), workdir))
    # A broker's first records meet cold code (a JVM's JIT among it):
    # kcat's input once to each, not measured.
    for kind in BROKERS:
        stack.kafka = kind
        measure_raw_produce(stack, kcat_input)

    res = {kind: {k: [] for k in KEYS_PER_BROKER} for kind in BROKERS}
    read = []
    for run in range(1, RUNS + 1):
        log("run %d/%d" % (run, RUNS))
        fresh_table(stack)
        before = stack.binlog_position()
        t0 = time.monotonic()
        insert_rows(stack)
        end = stack.binlog_position()
        log("  inserted %d rows in %.1f s; binlog %s:%d .. %s:%d" %
            (ROWS, time.monotonic() - t0, before[0], before[1], end[0],
             end[1]))
        rd = measure_raw_read(stack, before, end)
        read.append(rd[0] if rd else None)
        if rd:
            log("  raw read:    %s events/s (%.2f s, mariadb-binlog)" %
                (fmt_rate(rd[0]), rd[1]))
        for kind in BROKERS:
            measure_on(stack, kind, workdir, run, tag, before, end, rd,
                       kcat_input, res)
        # Last: its rows follow the throughput runs' end in the binlog,
        # where a relay run of another broker would meet them.
        for kind in BROKERS:
            latency_on(stack, kind, workdir, run, tag, res)

    report(res, read)
    try:
        os.unlink(kcat_input)
    except OSError:
        pass
    return verdict()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--consume":
        consume_latency(sys.argv[2], sys.argv[3], sys.argv[4])
        sys.exit(0)
    sys.exit(main())
