"""tor beside its peers on one stack (run by tests/bench/peers/run.sh, i.e.
`make bench-peers`).

The peers, each in turn against the same MariaDB, Redis and Apache Kafka
(one node) of a running local stack ($TOR_RUN_DIR/env), the same outbox
table (shop.peers_outbox, the columns of harness.outbox_ddl) and the same
load:

  tor-1           bin/tor, one replica, its defaults (idempotent producer,
                  acks=all, de-duplication at takeover, checkpoint in Redis
                  every second with a copy in Kafka)
  tor-3           the same, three replicas of one group (lease, standbys)
  debezium-file   Debezium Server (the distribution run.sh starts), the
                  MariaDB connector, the outbox event router, the Kafka sink
                  with acks=all and idempotence; offsets and schema history
                  in files (debezium-server.properties beside this file)
  debezium-redis  the same with offsets and schema history in Redis
  go-tor          the Go tor, where run.sh could build it

The message each relays for a row is the same: topic <prefix>order (three
partitions, made before the relay starts), key = aggregate_id, value =
the payload column's bytes, the row id in a header.

Per run (RUNS, default 3; every figure is the median of the runs):

  throughput  ROWS (200,000) rows of ~200 bytes, 1,000 a transaction, are
              inserted while no relay runs; each relay then starts at a
              position before them (tor: mysql.start; Debezium: the offsets
              it stored before the inserts, when it relayed one row) and the
              clock runs from its process start until the topic's high
              watermarks add up to ROWS (acks=all on one node: every message
              acknowledged).  CPU time (utime+stime of the relay process, the
              leader for tor-3) over the rows, and its peak RSS (VmHWM).
  latency     single-row autocommit inserts paced at LAT_RATE (1,000/s) for
              LAT_SECONDS (10), commit -> arrival at a consumer
              (fetch.wait.max.ms 5), p50 and p99.
  kill -9     rows at FAULT_RATE (500/s); once they flow, SIGKILL to the relay
              process (tor-3: the lease holder), and it is started again at
              once (a supervisor's restart; tor-3's standbys take over
              meanwhile).  Figures: kill -> the first arrival of a row
              committed after the kill; rows lost (committed, never
              arrived, after a drain); rows duplicated (arrivals beyond one).
  SIGTERM     the same with SIGTERM, the restart once the process exited.
  store wiped the relay stopped (SIGTERM, every replica), its position store
              emptied (Redis FLUSHALL; Debezium's offsets file removed), down
              DOWN_S (2 s) while rows go on at FAULT_RATE, then started again:
              rows lost, rows published twice, and rows of earlier phases
              published again (a replay from further back).  These run after
              every other phase of the run: FLUSHALL empties every peer's
              Redis keys, so a Redis peer whose wipe comes after another's
              starts its own with no position; the rows it skips then are
              counted apart ("at its start"), not as the fault's.

The order of the peers turns by one each run.  Nothing is asserted about
speed; the exit status is 1 only when something broke (a relay that would
not start, a tool that failed).  The results go to $TOR_PEERS_OUT
(results.json), then report.py writes the table (docs/peers.md) and the chart.

Environment: TOR_PEERS_RUNS, TOR_PEERS_ROWS, TOR_PEERS (the peers, comma-
separated), TOR_PEERS_DEBEZIUM (the unpacked distribution),
TOR_PEERS_JAVA_HOME (a JDK >= 21 for it), TOR_PEERS_HTTP_PORT (Debezium
Server's HTTP port), TOR_PEERS_GO_TOR_WHY (a file saying why the Go tor is
not there), TOR_PEERS_OUT (results directory), TOR_BIN (bin/tor).
"""

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
sys.path.insert(0, os.path.dirname(HERE))

import harness  # noqa: E402
from report import log, problem, verdict  # noqa: E402
from bench_relay import key_of, payload_of, percentile  # noqa: E402
from confluent_kafka import Consumer, OFFSET_BEGINNING, TopicPartition  # noqa: E402,E501

RUNS = int(os.environ.get("TOR_PEERS_RUNS", "3"))
ROWS = int(os.environ.get("TOR_PEERS_ROWS", "200000"))
PER_TXN = 1000
LAT_RATE = int(os.environ.get("TOR_PEERS_LAT_RATE", "1000"))
LAT_SECONDS = float(os.environ.get("TOR_PEERS_LAT_SECONDS", "10"))
FAULT_RATE = int(os.environ.get("TOR_PEERS_FAULT_RATE", "500"))
STEADY_S = 3.0       # rows flowing before a fault
SETTLE_S = 3.0       # rows flowing after it, before the feed stops
DOWN_S = 2.0         # the relay down while its store is empty
START_TIMEOUT = 180  # s for a relay's first message (a JVM on two cores)
DRAIN_TIMEOUT = 30   # s without a new arrival before the drain gives up
PARTITIONS = 3
DATABASE, TABLE_NAME = "shop", "peers_outbox"
TABLE = DATABASE + "." + TABLE_NAME
TOR_BIN = os.environ.get("TOR_BIN") or os.path.join(REPO, "bin", "tor")
DBZ_DIST = os.environ.get("TOR_PEERS_DEBEZIUM") or os.path.join(
    REPO, "build", "peers", "debezium-server")
DBZ_TEMPLATE = os.path.join(HERE, "debezium-server.properties")
DBZ_USER, DBZ_PASSWORD = "debezium", "debezium"
OUT = os.environ.get("TOR_PEERS_OUT") or os.path.join(REPO, "build", "peers")
CLK_TCK = os.sysconf("SC_CLK_TCK")



def load():
    return "load %.2f %.2f %.2f" % os.getloadavg()


def work_dir(stack):
    """Where the peers' files and the consumers' notes go."""
    d = os.path.join(stack.run_dir, "peers-work")
    os.makedirs(d, exist_ok=True)
    return d


# ---------------------------------------------------------------------------
# a process's cost


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


# ---------------------------------------------------------------------------
# rows


def trial_payload(tag, seq):
    """~200 bytes of JSON naming the phase and the row's sequence number."""
    return json.dumps({"t": tag, "seq": seq, "pad": "x" * 150}).encode()


INSERT = ("INSERT INTO " + TABLE +
          " (aggregate_type, aggregate_id, payload) VALUES ('order', %s, %s)")


def insert_backlog(stack):
    conn = stack.connect(user="app", autocommit=False, timeout=30)
    try:
        with conn.cursor() as cur:
            for start in range(0, ROWS, PER_TXN):
                cur.executemany(INSERT, [
                    (key_of(i), payload_of(i).encode())
                    for i in range(start, min(start + PER_TXN, ROWS))])
                conn.commit()
    finally:
        conn.close()


def insert_one(stack, tag, seq, key="warmup"):
    conn = stack.connect(user="app", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(INSERT, (key, trial_payload(tag, seq)))
    finally:
        conn.close()


class Feeder(threading.Thread):
    """Single-row autocommit inserts paced at `rate`; commits[seq] = wall
    time after the commit returned.  Falls behind rather than bursting."""

    def __init__(self, stack, tag, rate, count=None):
        super().__init__(daemon=True)
        self.stack, self.tag, self.rate, self.count = stack, tag, rate, count
        self.commits = {}
        self.error = None
        self._halt = threading.Event()

    def run(self):
        try:
            conn = self.stack.connect(user="app", autocommit=True, timeout=10)
            try:
                t0 = time.monotonic()
                seq = 0
                with conn.cursor() as cur:
                    while not self._halt.is_set():
                        if self.count is not None and seq >= self.count:
                            break
                        due = t0 + seq / float(self.rate)
                        now = time.monotonic()
                        if due > now:
                            self._halt.wait(due - now)
                        elif now - due > 1.0:
                            t0 += now - due
                        cur.execute(INSERT, (key_of(seq),
                                             trial_payload(self.tag, seq)))
                        self.commits[seq] = time.time()
                        seq += 1
            finally:
                conn.close()
        except BaseException as e:
            self.error = e

    def first_after(self, t):
        """The first seq committed after wall time t, or None."""
        for seq, ct in sorted(self.commits.items()):
            if ct > t:
                return seq
        return None

    def stop(self):
        self._halt.set()
        self.join(30)


# ---------------------------------------------------------------------------
# the consumer: a child process (its own interpreter, so the feeder's
# inserts and its polls do not share a lock), which writes one line per
# record, "<tag> <seq> <arrival wall time> <partition> <offset>", and
# flushes at least every 100 ms.


def consume(brokers, topic, out_path):
    c = Consumer({"bootstrap.servers": brokers,
                  "group.id": "tor-peers-%d" % os.getpid(),
                  "enable.auto.commit": False,
                  "enable.partition.eof": False,
                  "fetch.wait.max.ms": 5,
                  "fetch.error.backoff.ms": 5})
    md = c.list_topics(topic, timeout=10)
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
              for p in sorted(md.topics[topic].partitions)])
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    c.consume(1, 0.2)
    print("ready", flush=True)
    last_flush = time.monotonic()
    with open(out_path, "w") as out:
        while not stop:
            m = c.poll(0.05)
            now = time.time()
            if m is not None and not m.error():
                try:
                    v = json.loads(m.value())
                    tag, seq = v["t"], v["seq"]
                except (ValueError, KeyError, TypeError):
                    tag, seq = "?", -1
                out.write("%s %d %.6f %d %d\n" % (tag, seq, now,
                                                   m.partition(),
                                                   m.offset()))
            if time.monotonic() - last_flush > 0.1:
                out.flush()
                last_flush = time.monotonic()
    c.close()


class Arrivals:
    """The child consumer of one phase's topic and what it wrote."""

    def __init__(self, stack, topic):
        self.path = os.path.join(work_dir(stack), topic + ".arrivals")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--consume",
             stack.brokers, topic, self.path], stdout=subprocess.PIPE,
            text=True, start_new_session=True)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError("consumer of %s did not start (%r)" %
                               (topic, line))

    def read(self, where=False):
        """[(tag, seq, arrival)] so far; where: [(tag, seq, arrival,
        partition, offset)]."""
        out = []
        try:
            with open(self.path) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 5 and line.endswith("\n"):
                        r = (parts[0], int(parts[1]), float(parts[2]),
                             int(parts[3]), int(parts[4]))
                        out.append(r if where else r[:3])
        except FileNotFoundError:
            pass
        return out

    def catch_up(self, stack, topic, timeout=60):
        """Until this consumer read everything the topic holds now: an
        arrival time means the relay's, not this reader's, delay (a relay
        that starts with tens of thousands of rows of other phases to
        publish leaves the reader behind for a while)."""
        want = high_watermark_sum_once(stack, topic)
        self.wait(lambda a: len(a) >= want, timeout)

    def wait(self, pred, timeout, alive=None):
        """Until pred(arrivals) is true (returns them) or timeout (None);
        alive() false ends the wait early too."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            a = self.read()
            if pred(a):
                return a
            if alive is not None and not alive():
                return None
            time.sleep(0.05)
        return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        return self.read()


# ---------------------------------------------------------------------------
# the peers


class TorPeer:
    """tor, `replicas` replicas of one group per run."""

    def __init__(self, stack, replicas):
        self.stack, self.replicas = stack, replicas
        self.name = "tor-%d" % replicas
        self.tors = {}
        self.group = None
        self.cfg = None
        self.redis = stack.redis()

    def settings(self):
        return ("bin/tor, %d replica%s, the defaults: kafka.mode "
                "idempotent (acks=all, idempotent producer, de-duplication at "
                "takeover), checkpoint in Redis every 1 s and in Kafka, "
                "ha lease_ms 3000 / renew_ms 1000 / retry_ms 200, "
                "fast_failover" % (self.replicas,
                                   "" if self.replicas == 1 else "s"))

    def setup_run(self, tag, run):
        self.group = "peers-%s-r%d-%s" % (tag, run, self.name)

    def prime(self, prefix):
        """Nothing: tor starts at mysql.start when its group has no
        checkpoint."""

    def configure(self, prefix, start=None):
        """start: mysql.start, for a group with no checkpoint yet (tor's
        default, "end", where none is given)."""
        self.cfg = harness.base_config(
            self.stack, group=self.group, start=start or "end",
            outbox={"tables": [{"table": TABLE,
                                "columns": {"id": "id",
                                            "key": "aggregate_id",
                                            "type": "aggregate_type",
                                            "payload": "payload"}}],
                    "routes": [],
                    "topic_template": prefix + "${aggregate_type}"},
            checkpoint={"interval_ms": 1000}, log={"level": "info"})

    def _start_one(self, name):
        t = harness.Tor(self.stack, self.cfg, binary=TOR_BIN, name=name)
        t.start()
        self.tors[name] = t
        return t

    def start(self, prefix, start=None):
        self.configure(prefix, start)
        for i in range(1, self.replicas + 1):
            self._start_one("r%d" % i)

    def _leader(self):
        v = self.redis.get("tor:{%s}:lease" % self.group)
        if v is None:
            return None
        t = self.tors.get(v.decode().rsplit(" ", 1)[0])
        return t if t is not None and t.running() else None

    def relay_pid(self):
        t = self._leader()
        return t.pid if t else None

    def alive(self):
        return any(t.running() for t in self.tors.values())

    def fault(self, sig):
        """sig to the leader; it is started again once it exited.
        Returns (signal time, exit time)."""
        t = self._leader()
        if t is None:
            raise RuntimeError("%s: no leader to signal" % self.name)
        t_fault = time.time()
        if sig == signal.SIGKILL:
            t.kill9()
        else:
            t.stop(sig, timeout=60)
        t_exit = time.time()
        self._start_one(t.name)
        return t_fault, t_exit

    def stop_all(self):
        for t in self.tors.values():
            if t.running():
                t.send_signal(signal.SIGTERM)
        for t in self.tors.values():
            try:
                rc = t.wait(60)
            except AssertionError:
                t.kill9()
                problem("%s: %s ignored SIGTERM for 60 s" % (self.name,
                                                             t.name))
                continue
            if rc not in (0, None):
                problem("%s: %s exited %s on SIGTERM; log tail:\n%s" % (
                    self.name, t.name, rc, t.log_tail(12)))
        self.tors = {}

    def restart_all(self):
        for i in range(1, self.replicas + 1):
            self._start_one("r%d" % i)

    def wipe_store(self):
        self.stack.redis().flushall()
        return "Redis FLUSHALL"

    def why_dead(self):
        return "; ".join("%s: %s" % (t.name, t.log_tail(3))
                         for t in self.tors.values() if not t.running())

    def kill_all(self):
        for t in self.tors.values():
            if t.running():
                t.kill9()


class DebeziumPeer:
    """Debezium Server from its distribution, one process, its own
    directory per run (links to the distribution, config/, data/)."""

    SERVER_IDS = {"file": 18501, "redis": 18502}

    def __init__(self, stack, store, java_home, http_port):
        self.stack, self.store = stack, store
        self.java_home, self.http_port = java_home, http_port
        self.name = "debezium-" + store
        self.dir = None
        self.proc = None
        self._log = None
        self.redis_key = None

    def settings(self):
        where = ("offsets and schema history in files (data/), offsets "
                 "flushed after every batch" if self.store == "file" else
                 "offsets and schema history in Redis "
                 "(RedisOffsetBackingStore, RedisSchemaHistory), offsets "
                 "flushed after every batch")
        major = java_major(self.java_home)
        return ("Debezium Server 3.6.1.Final (run.sh, default JVM options%s) "
                "on Java %s: MariaDB connector (snapshot.mode no_data), outbox "
                "event router (route.by.field aggregate_type, key "
                "aggregate_id, id header), Kafka sink acks=all, "
                "enable.idempotence=true; %s; batch size, queue and poll "
                "interval at their defaults" % (
                    " but the --add-opens its error message asks for on "
                    "Java 24+" if major >= 24 else "",
                    java_version(self.java_home), where))

    def setup_run(self, tag, run):
        self.dir = os.path.join(work_dir(self.stack),
                                "%s-r%d" % (self.name, run))
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(os.path.join(self.dir, "config"))
        os.makedirs(os.path.join(self.dir, "data"))
        for entry in os.listdir(DBZ_DIST):
            if entry != "config":
                os.symlink(os.path.join(DBZ_DIST, entry),
                           os.path.join(self.dir, entry))
        self.redis_key = "peers:%s:r%d:%s" % (tag, run, self.name)

    def configure(self, prefix):
        with open(DBZ_TEMPLATE) as f:
            text = f.read()
        fields = {"BROKERS": self.stack.brokers,
                  "MYSQL_PORT": str(self.stack.mysql_port),
                  "MYSQL_USER": DBZ_USER, "MYSQL_PASSWORD": DBZ_PASSWORD,
                  "SERVER_ID": str(self.SERVER_IDS[self.store]),
                  "DATABASE": DATABASE, "TABLE": TABLE,
                  "REDIS_PORT": str(self.stack.redis_port),
                  "REDIS_KEY": self.redis_key, "TOPIC_PREFIX": prefix,
                  "HTTP_PORT": str(self.http_port)}
        text = re.sub(r"@([A-Z_]+)@", lambda m: fields[m.group(1)], text)
        lines = []
        for line in text.splitlines():
            store, sep, rest = line.partition(":")
            if sep and store in ("file", "redis") and "=" not in store:
                if store == self.store:
                    lines.append(rest)
            else:
                lines.append(line)
        with open(os.path.join(self.dir, "config",
                               "application.properties"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def _launch(self):
        env = dict(os.environ, JAVA_HOME=self.java_home)
        if java_major(self.java_home) >= 24:
            # What its own error message asks for on Java 24 and later
            # (run.sh starts it with -cp, so the jar manifest's Add-Opens
            # does not apply).
            env["JAVA_OPTS"] = (env.get("JAVA_OPTS", "") +
                                " --add-opens java.base/java.lang=ALL-UNNAMED")
        self._log = open(os.path.join(self.dir, "server.log"), "ab")
        self.proc = subprocess.Popen(["./run.sh"], cwd=self.dir, env=env,
                                     stdin=subprocess.DEVNULL,
                                     stdout=self._log,
                                     stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def start(self, prefix, start=None):
        self.configure(prefix)
        self._launch()

    def prime(self, prefix):
        """Starts it with no offsets (it records the binlog end), has it
        relay one row, stops it: the offsets now stand before the backlog
        to come, as after a relay that was down while rows piled up."""
        self.start(prefix)
        a = Arrivals(self.stack, prefix + "order")
        try:
            # Rows until one arrives: the first ones may precede the
            # connector's start position.
            tag = "prime"
            seq = [0]

            def poke(arr):
                if arr:
                    return True
                insert_one(self.stack, tag, seq[0])
                seq[0] += 1
                time.sleep(0.5)
                return False

            if a.wait(poke, START_TIMEOUT, alive=self.alive) is None:
                raise RuntimeError("%s did not relay a row in %d s; log "
                                   "tail:\n%s" % (self.name, START_TIMEOUT,
                                                  self.log_tail()))
        finally:
            a.stop()
            self.stop_all()

    def relay_pid(self):
        return self.proc.pid if self.alive() else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _wait_exit(self, timeout):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            problem("%s ignored SIGTERM for %d s; killed" % (self.name,
                                                            timeout))
            self.proc.kill()
            rc = self.proc.wait(10)
        if self._log:
            self._log.close()
            self._log = None
        return rc

    def fault(self, sig):
        if not self.alive():
            raise RuntimeError("%s is not running" % self.name)
        t_fault = time.time()
        self.proc.send_signal(sig)
        self._wait_exit(60)
        t_exit = time.time()
        self._launch()
        return t_fault, t_exit

    def stop_all(self):
        if self.proc is None:
            return
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        rc = self._wait_exit(60)
        # A JVM that ends on SIGTERM exits 143 (128 + 15) after its shutdown
        # hooks ran; Quarkus may also exit 0.
        if rc not in (0, 143):
            problem("%s exited %s on SIGTERM; log tail:\n%s" % (
                self.name, rc, self.log_tail()))

    def restart_all(self):
        self._launch()

    def wipe_store(self):
        if self.store == "file":
            os.unlink(os.path.join(self.dir, "data", "offsets.dat"))
            return "offsets file removed"
        self.stack.redis().flushall()
        return "Redis FLUSHALL"

    def log_tail(self, n=8):
        try:
            with open(os.path.join(self.dir, "server.log"), "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join("    " + x[:400] for x in lines[-n:])

    def why_dead(self):
        """The last ERROR line of its log, shortened."""
        try:
            with open(os.path.join(self.dir, "server.log"), "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
        except FileNotFoundError:
            return "no log"
        for line in reversed(lines):
            if '"level":"ERROR"' in line or " ERROR " in line:
                m = re.search(r'"message":"((?:[^"\\]|\\.)*)"', line)
                return (m.group(1) if m else line)[:300]
        return "exited %s" % self.proc.returncode

    def kill_all(self):
        if self.alive():
            self.proc.kill()
            self._wait_exit(10)


def java_version(java_home):
    """java -version's version string, e.g. "25.0.1", or "?"."""
    try:
        p = subprocess.run([os.path.join(java_home, "bin", "java"),
                            "-version"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=30)
    except OSError:
        return "?"
    m = re.search(r'version "([^"]+)"', p.stdout)
    return m.group(1) if m else "?"


def java_major(java_home):
    m = re.match(r"(\d+)", java_version(java_home))
    return int(m.group(1)) if m else 0


# ---------------------------------------------------------------------------
# phases


class Phase:
    """One topic for one peer in one run: <tag>.r<run>.<peer>.<kind>.order."""

    def __init__(self, stack, tag, run, peer, kind):
        self.prefix = "peers.%s.r%d.%s.%s." % (tag, run, peer.name, kind)
        self.topic = self.prefix + "order"
        self.tag = "%s.r%d.%s.%s" % (tag, run, peer.name, kind)
        stack.create_topic(self.topic, PARTITIONS)


def high_watermark_sum(c, topic):
    return sum(harness.watermarks(c, topic, p, 10)[1]
               for p in range(PARTITIONS))


def measure_throughput(stack, peer, phase, before):
    """(events/s, CPU us/event, peak RSS MiB, seconds, first-message s)."""
    c = Consumer({"bootstrap.servers": stack.brokers,
                  "group.id": "tor-peers-hw-%d" % os.getpid()})
    try:
        t0 = time.monotonic()
        peer.start(phase.prefix, start="%s:%d" % before)
        first = None
        pid = None
        cpu = rss = None
        while True:
            n = high_watermark_sum(c, phase.topic)
            now = time.monotonic()
            if n > 0 and first is None:
                first = now - t0
            pid = peer.relay_pid() or pid
            if pid:
                try:
                    cpu, rss = cpu_seconds(pid), peak_rss_mib(pid)
                except OSError:
                    pass
            if n >= ROWS:
                elapsed = now - t0
                break
            if not peer.alive():
                problem("%s throughput: the relay exited (%s) with %d of %d "
                        "messages" % (peer.name, peer.why_dead(), n, ROWS))
                return None
            if now - t0 > 900:
                problem("%s throughput: %d of %d messages after 900 s" % (
                    peer.name, n, ROWS))
                return None
            time.sleep(0.02)
    finally:
        c.close()
        peer.stop_all()
    extra = high_watermark_sum_once(stack, phase.topic) - ROWS
    if extra:
        log("  note: %d messages beyond the %d rows" % (extra, ROWS))
    return {"rate": ROWS / elapsed, "cpu_us": cpu * 1e6 / ROWS if cpu else
            None, "rss": rss, "seconds": elapsed, "first": first,
            "steady": (ROWS / (elapsed - first) if first and elapsed > first
                       else None), "extra": extra}


def high_watermark_sum_once(stack, topic):
    return sum(harness.high_watermarks(stack.brokers, topic).values())


def wait_flowing(peer, arr, tag, since_seq, what):
    """The first arrival of this phase's rows with seq >= since_seq."""
    got = arr.wait(lambda a: any(t == tag and s >= since_seq
                                 for t, s, _ in a), START_TIMEOUT,
                   alive=peer.alive)
    if got is None:
        problem("%s %s: no row with seq >= %d arrived in %d s (%s)" % (
            peer.name, what, since_seq, START_TIMEOUT,
            "relay alive" if peer.alive() else peer.why_dead()))
        return None
    return min(at for t, s, at in got if t == tag and s >= since_seq)


def measure_latency(stack, peer, phase):
    arr = Arrivals(stack, phase.topic)
    peer.start(phase.prefix)
    try:
        # Warm-up rows (seq -1, -2, ...) until one arrives: every connection
        # of the relay is up before the clock matters.
        n = [0]

        def poke(a):
            if any(t == phase.tag for t, _, _ in a):
                return True
            n[0] += 1
            insert_one(stack, phase.tag, -n[0])
            time.sleep(0.5)
            return False

        if arr.wait(poke, START_TIMEOUT, alive=peer.alive) is None:
            problem("%s latency: warm-up row not relayed in %d s (%s)" % (
                peer.name, START_TIMEOUT, peer.why_dead() or "alive"))
            return None
        arr.catch_up(stack, phase.topic)
        time.sleep(1.0)
        total = int(LAT_RATE * LAT_SECONDS)
        feeder = Feeder(stack, phase.tag, LAT_RATE, count=total)
        t_start = time.monotonic()
        feeder.start()
        feeder.join(LAT_SECONDS * 3 + 30)
        t_insert = time.monotonic() - t_start
        if feeder.error:
            problem("%s latency: inserts failed: %r" % (peer.name,
                                                        feeder.error))
            return None
        arr.wait(lambda a: sum(1 for t, s, _ in a if t == phase.tag and
                               s >= 0) >= total, 30)
    finally:
        got = arr.stop()
        peer.stop_all()
    first = {}
    for t, s, at in got:
        if t == phase.tag and s >= 0 and s not in first:
            first[s] = at
    lat = sorted((first[s] - feeder.commits[s]) * 1000.0 for s in first
                 if s in feeder.commits)
    if len(lat) < total:
        problem("%s latency: %d of %d rows arrived" % (peer.name, len(lat),
                                                       total))
    return {"p50": percentile(lat, 0.50), "p99": percentile(lat, 0.99),
            "max": lat[-1] if lat else None, "arrived": len(lat),
            "sent": total, "rate": total / t_insert}


def drain(arr, feeder, tag):
    """Waits until every committed row arrived, or DRAIN_TIMEOUT without a
    new arrival; returns the arrivals."""
    want = set(feeder.commits)
    last_n, last_t = -1, time.monotonic()
    while True:
        a = arr.read()
        seen = {s for t, s, _ in a if t == tag}
        if want <= seen:
            return a
        if len(a) != last_n:
            last_n, last_t = len(a), time.monotonic()
        elif time.monotonic() - last_t > DRAIN_TIMEOUT:
            return a
        time.sleep(0.1)


def count_outcome(arrivals, feeder, tag):
    """(lost, lost at the start, duplicated, older rows again) over this
    phase's topic, from [(tag, seq, arrival, partition, offset)].

    Lost at the start: rows before the first that arrived, i.e. rows the
    relay skipped when it started, before any fault of this phase (a
    store emptied by another peer's FLUSHALL earlier in the run).

    Rows of other phases come first when the relay starts (those inserted
    while other peers ran are new to it); once this phase's rows flow, the
    relay has passed all of them (binlog order), so one that stands in a
    partition after the first of this phase's rows there was published
    again from further back.  Offsets, not arrival times: the reader may
    be behind."""
    counts = {}
    first = {}
    for t, s, _, part, off in arrivals:
        if t == tag:
            first[part] = min(off, first.get(part, off))
    foreign = 0
    for t, s, _, part, off in arrivals:
        if t == tag and s >= 0:
            counts[s] = counts.get(s, 0) + 1
        elif t != tag and part in first and off > first[part]:
            foreign += 1
    lost = sum(1 for s in feeder.commits if s not in counts)
    lost_start = min(counts) if counts else len(feeder.commits)
    dup = sum(n - 1 for n in counts.values() if n > 1)
    return lost, lost_start, dup, foreign


def measure_fault(stack, peer, phase, kind):
    """kind: "kill" (SIGKILL), "term" (SIGTERM) or "wipe" (stop, empty the
    store, start again).  Returns a dict of figures or None."""
    arr = Arrivals(stack, phase.topic)
    peer.start(phase.prefix)
    feeder = Feeder(stack, phase.tag, FAULT_RATE)
    feeder.start()
    out = None
    try:
        if wait_flowing(peer, arr, phase.tag, 0, kind) is None:
            return None
        arr.catch_up(stack, phase.topic)
        time.sleep(STEADY_S)
        if kind == "wipe":
            t_fault = time.time()
            peer.stop_all()
            t_exit = time.time()
            how = peer.wipe_store()
            time.sleep(DOWN_S)
            peer.restart_all()
        else:
            how = "SIGKILL" if kind == "kill" else "SIGTERM"
            t_fault, t_exit = peer.fault(
                signal.SIGKILL if kind == "kill" else signal.SIGTERM)
        # The first row the old process cannot have published: committed
        # after it exited (one that drains on SIGTERM publishes rows
        # committed after the signal).
        while feeder.first_after(t_exit) is None and feeder.error is None:
            time.sleep(0.01)
        since = feeder.first_after(t_exit)
        t_flow = wait_flowing(peer, arr, phase.tag, since, kind)
        out = {"how": how, "flow_s": (t_flow - t_fault) if t_flow else None,
               "came_back": t_flow is not None,
               "why": None if t_flow else (peer.why_dead() or
                                           "no row in %d s" % START_TIMEOUT)}
        time.sleep(SETTLE_S)
    finally:
        feeder.stop()
        if out is not None:
            drain(arr, feeder, phase.tag)
        arr.stop()
        got = arr.read(where=True)
        peer.stop_all()
    if feeder.error:
        problem("%s %s: inserts failed: %r" % (peer.name, kind,
                                               feeder.error))
    lost, lost_start, dup, foreign = count_outcome(got, feeder, phase.tag)
    out.update({"lost": lost - lost_start, "lost_start": lost_start,
                "dup": dup, "foreign": foreign,
                "rows": len(feeder.commits),
                "pause_s": longest_pause(got, phase.tag, t_fault)})
    return out


def longest_pause(arrivals, tag, t_fault):
    """The longest time without an arrival of this phase's rows from the
    fault on: "flow again" alone says nothing of a process that goes on
    publishing for a while after SIGTERM and then leaves a gap."""
    times = sorted(at for t, s, at, _, _ in arrivals
                   if t == tag and s >= 0 and at >= t_fault)
    times = [t_fault] + times
    return max((b - a for a, b in zip(times, times[1:])), default=None)


# ---------------------------------------------------------------------------
# a run


def fresh_table(stack):
    stack.sql("DROP TABLE IF EXISTS %s" % TABLE)
    stack.sql(harness.outbox_ddl(TABLE))
    stack.sql("FLUSH BINARY LOGS")
    f, _ = stack.binlog_position()
    stack.sql("PURGE BINARY LOGS TO %s", f)


def guarded(peer, what, fn, *args):
    """fn(*args); an exception is a problem of this peer's phase, and the
    bench goes on with the next."""
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 (reported, never swallowed)
        problem("%s %s: %s: %s" % (peer.name, what, type(e).__name__, e))
        peer.kill_all()
        return None


def one_run(stack, peers, tag, run, res):
    log("run %d/%d (%s)" % (run, RUNS, load()))
    fresh_table(stack)
    for p in peers:
        p.setup_run(tag, run)
        prime = "peers.%s.r%d.%s.prime." % (tag, run, p.name)
        if isinstance(p, DebeziumPeer):
            stack.create_topic(prime + "order", PARTITIONS)
        p.prime(prime)
    before = stack.binlog_position()
    t0 = time.monotonic()
    insert_backlog(stack)
    end = stack.binlog_position()
    log("  inserted %d rows in %.1f s; binlog %s:%d .. %s:%d" % (
        ROWS, time.monotonic() - t0, before[0], before[1], end[0], end[1]))
    # The order turns by one each run.
    order = peers[(run - 1) % len(peers):] + peers[:(run - 1) % len(peers)]
    for p in order:
        r = guarded(p, "throughput", measure_throughput, stack, p,
                    Phase(stack, tag, run, p, "thru"), before)
        res[p.name]["thru"].append(r)
        if r:
            log("  %-15s throughput %s events/s (%.1f s; first message after "
                "%.1f s, %s/s from there), CPU %.1f us/event, peak RSS %.0f "
                "MiB (%s)" % (p.name, fmt_int(r["rate"]), r["seconds"],
                              r["first"] or 0, fmt_int(r["steady"]),
                              r["cpu_us"] or 0, r["rss"] or 0, load()))
    for p in order:
        r = guarded(p, "latency", measure_latency, stack, p,
                    Phase(stack, tag, run, p, "lat"))
        res[p.name]["lat"].append(r)
        if r:
            log("  %-15s latency p50 %.1f ms p99 %.1f ms max %.1f ms, %d of "
                "%d arrived, inserts at %s/s (%s)" % (
                    p.name, r["p50"], r["p99"], r["max"] or 0, r["arrived"],
                    r["sent"], fmt_int(r["rate"]), load()))
    for kind in ("kill", "term", "wipe"):
        for p in order:
            r = guarded(p, kind, measure_fault, stack, p,
                        Phase(stack, tag, run, p, kind), kind)
            res[p.name][kind].append(r)
            if r:
                log("  %-15s %-7s %s: rows flow again after %s, longest "
                    "pause %s; %d rows: lost %d (and %d at its start), "
                    "duplicated %d, older rows again %d (%s)" % (
                        p.name, kind, r["how"],
                        "%.2f s" % r["flow_s"] if r["came_back"] else
                        "NEVER (%s)" % r["why"], "-" if r["pause_s"] is None
                        else "%.2f s" % r["pause_s"], r["rows"], r["lost"],
                        r["lost_start"],
                        r["dup"], r["foreign"], load()))


# ---------------------------------------------------------------------------
# report


def fmt_int(x):
    return "-" if x is None else "{:,.0f}".format(x)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(res):
    """{peer: {figure: median}} from the runs."""
    out = {}
    for name, r in res.items():
        m = {}
        for k in ("rate", "cpu_us", "rss", "seconds", "first", "steady"):
            m["thru_" + k] = med([x[k] for x in r["thru"] if x])
        for k in ("p50", "p99", "rate"):
            m["lat_" + k] = med([x[k] for x in r["lat"] if x])
        for kind in ("kill", "term", "wipe"):
            xs = [x for x in r[kind] if x]
            m[kind + "_flow"] = med([x["flow_s"] for x in xs])
            m[kind + "_pause"] = med([x.get("pause_s") for x in xs])
            m[kind + "_never"] = sum(1 for x in xs if not x["came_back"])
            for k in ("lost", "dup", "foreign", "lost_start"):
                m[kind + "_" + k] = med([x.get(k, 0) for x in xs])
            m[kind + "_how"] = xs[0]["how"] if xs else None
        m["runs"] = {k: len([x for x in r[k] if x]) for k in r}
        out[name] = m
    return out


def main():
    stack = harness.Stack()
    stack.wait_mysql()
    names = [x.strip() for x in os.environ.get(
        "TOR_PEERS", "tor-1,tor-3,debezium-file,debezium-redis,go-tor"
    ).split(",") if x.strip()]
    java_home = os.environ.get("TOR_PEERS_JAVA_HOME", "")
    http_port = int(os.environ.get("TOR_PEERS_HTTP_PORT", "9550"))
    peers, absent = [], {}
    for n in names:
        if n in ("tor-1", "tor-3"):
            peers.append(TorPeer(stack, int(n[-1])))
        elif n in ("debezium-file", "debezium-redis"):
            if not java_home or not os.path.isdir(DBZ_DIST):
                absent[n] = os.environ.get(
                    "TOR_PEERS_DEBEZIUM_WHY", "no distribution or no JDK 21+")
                continue
            peers.append(DebeziumPeer(stack, n.split("-")[1], java_home,
                                      http_port))
        elif n == "go-tor":
            why = os.environ.get("TOR_PEERS_GO_TOR_WHY")
            absent[n] = (open(why).read().strip() if why and
                         os.path.exists(why) else "not fetched")
        else:
            log("bench-peers: unknown peer %s" % n)
            return 1
    stack.sql("CREATE OR REPLACE USER '%s'@'%%' IDENTIFIED BY '%s'" % (
        DBZ_USER, DBZ_PASSWORD))
    # The privileges Debezium's MySQL/MariaDB connector documents.
    stack.sql("GRANT SELECT, RELOAD, SHOW DATABASES, REPLICATION SLAVE, "
              "REPLICATION CLIENT, BINLOG MONITOR ON *.* TO '%s'@'%%'" %
              DBZ_USER)
    tag = "%x" % int(time.time())
    log("bench-peers: %s; %d runs; %d rows of ~%d bytes for throughput; "
        "latency at %d rows/s for %g s; faults at %d rows/s; brokers %s; %s"
        % (", ".join(p.name for p in peers), RUNS, ROWS,
           len(payload_of(ROWS - 1)), LAT_RATE, LAT_SECONDS, FAULT_RATE,
           stack.brokers, load()))
    for n, why in absent.items():
        log("  %s: not run: %s" % (n, why))
    res = {p.name: {k: [] for k in ("thru", "lat", "kill", "term", "wipe")}
           for p in peers}
    loads = [os.getloadavg()]
    t_begin = time.monotonic()
    try:
        for run in range(1, RUNS + 1):
            one_run(stack, peers, tag, run, res)
            loads.append(os.getloadavg())
    finally:
        for p in peers:
            p.kill_all()
    took = time.monotonic() - t_begin
    summary = summarize(res)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump({"runs": RUNS, "rows": ROWS, "lat_rate": LAT_RATE,
                   "lat_seconds": LAT_SECONDS, "fault_rate": FAULT_RATE,
                   "down_s": DOWN_S, "peers": [p.name for p in peers],
                   "settings": {p.name: p.settings() for p in peers},
                   "absent": absent, "raw": res, "summary": summary,
                   "loads": loads, "seconds": took,
                   "when": time.strftime("%Y-%m-%d %H:%M UTC",
                                         time.gmtime())}, f, indent=1)
    log("bench-peers: measured in %.0f s; results in %s" % (
        took, os.path.join(OUT, "results.json")))
    return verdict()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--consume":
        consume(sys.argv[2], sys.argv[3], sys.argv[4])
        sys.exit(0)
    sys.exit(main())
