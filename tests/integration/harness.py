"""Integration-test harness for tor: the local stack, tor replicas, Kafka reads.

Runs under Debian's /usr/bin/python3 (pymysql, redis and confluent_kafka come
from Debian packages).  The pieces:

  Stack       a handle on the stack of deploy/local/stack.sh: start, stop and
              restart services, SQL, Redis, the dev broker's control socket.
  Tor         one tor replica: a config file and a log in a temp directory,
              signals, log matching.  Every Tor started is remembered so the
              runner can kill what a test left behind.
  base_config a tor.cfg for the stack, with whole sections replaceable.
  read_all / wait_for / high_watermarks
              what is in a topic, via confluent_kafka.

Conventions: errors are exceptions (AssertionError for a test's expectation
that did not come true, with the relevant log tail in the message); every
wait has a timeout in seconds.
"""

import collections
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pymysql
import redis as redis_lib
from confluent_kafka import (Consumer, KafkaError, KafkaException,
                             OFFSET_BEGINNING, TopicPartition)
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
STACK_SH = os.path.join(REPO, "deploy", "local", "stack.sh")
DEVBROKER = os.path.join(REPO, "bin", "tor-devbroker")

# Passwords of the users the stack provisions (deploy/local/stack.sh).
PASSWORDS = {"root": "", "tor": "tor", "app": "app"}

# The name of the test being run, set by the runner; used to name groups so a
# Redis key or a log line tells which test made it.
current_test = "adhoc"


def default_run_dir():
    return os.environ.get("TOR_RUN_DIR") or os.path.join(REPO, "run", "local")


def default_tor_binary():
    return os.environ.get("TOR_BIN") or os.path.join(REPO, "build", "asan",
                                                     "tor")


# ---------------------------------------------------------------------------
# Stack


class StackError(RuntimeError):
    pass


class Stack:
    """A handle on the local stack (it may or may not be running).

    Cheap to create: it only reads $TOR_RUN_DIR/env.  start/stop/restart call
    stack.sh; `env` given to start/restart adds to stack.sh's environment
    (e.g. {"TOR_MYSQL_EXTRA": "--binlog-format=STATEMENT"}) and marks the
    stack as needing a clean restart, which the runner does after the test.

    Three Kafkas (DESIGN.md §9), and `brokers` names the one the test chose:
      - Apache Kafka, one node (the default, "kafka");
      - the three-node cluster ("cluster", use_cluster()): replication
        factor 3, min.insync.replicas 2, started at the first test that asks
        and kept for the run (a stack of its own in <run dir>/cluster);
      - the development broker ("dev", use_dev_broker()): only for protocol
        errors injected at one exact request (broker_ctl), and the test says
        why in its docstring.
    kafka_ctl() kills, stops, starts, pauses and resumes the chosen Kafka's
    nodes; the runner brings every node back after the test.
    """

    def __init__(self, run_dir=None):
        self.run_dir = run_dir or default_run_dir()
        self.env = {}
        self.dirty = set()       # services restarted with a non-default env
        self.kafka = "kafka"
        self.reload_env()

    # -- lifecycle --

    def _stack_sh(self, verb, services, env=None, timeout=180):
        e = dict(os.environ)
        e["TOR_RUN_DIR"] = self.run_dir
        if env:
            e.update(env)
        p = subprocess.run([STACK_SH, verb] + list(services), env=e,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=timeout)
        if p.returncode != 0 and verb != "status":
            raise StackError("stack.sh %s %s failed (exit %d):\n%s" %
                             (verb, " ".join(services), p.returncode,
                              p.stdout))
        return p

    def start(self, *services, env=None):
        self._stack_sh("start", services, env)
        self._note_env(services, env)
        self.reload_env()

    def stop(self, *services):
        """Stops the named services; with none, everything this run
        started, the three-node cluster included."""
        self._stack_sh("stop", services)
        if not services:
            KafkaCluster(self.run_dir).stop()

    def restart(self, *services, env=None):
        self._stack_sh("restart", services, env)
        self._note_env(services, env)
        self.reload_env()

    def status(self, *services):
        """True when every named service (default all) is up."""
        return self._stack_sh("status", services).returncode == 0

    def _note_env(self, services, env):
        names = services or ("mariadb", "redis", "kafka")
        for s in names:
            if env:
                self.dirty.add(s)
            else:
                self.dirty.discard(s)

    def reload_env(self):
        """Reads $TOR_RUN_DIR/env (written by stack.sh start)."""
        self.env = read_env_file(os.path.join(self.run_dir, "env"))
        return self.env

    def _need(self, name):
        v = self.env.get(name)
        if not v:
            raise StackError("%s not known: is the stack started? (%s/env)" %
                             (name, self.run_dir))
        return v

    @property
    def mysql_port(self):
        return int(self._need("TOR_MYSQL_PORT"))

    @property
    def mysql_socket(self):
        return self._need("TOR_MYSQL_SOCKET")

    @property
    def redis_port(self):
        return int(self._need("TOR_REDIS_PORT"))

    # -- Kafka --

    @property
    def brokers(self):
        """The bootstrap list of the Kafka this test runs on."""
        if self.kafka == "dev":
            return self._need("TOR_DEVBROKER_BROKERS")
        if self.kafka == "cluster":
            return self.cluster().brokers
        return self._need("TOR_KAFKA_BROKERS")

    @property
    def kafka_nodes(self):
        return 3 if self.kafka == "cluster" else 1

    def use_dev_broker(self):
        """From here on this test runs on the development broker."""
        self.kafka = "dev"
        return self.brokers

    def use_cluster(self):
        """From here on this test runs on the three-node cluster (started
        now if this run has not yet)."""
        self.kafka = "cluster"
        c = self.cluster()
        c.start()
        return c

    def cluster(self):
        """A handle on the run's three-node cluster (not started here)."""
        return KafkaCluster(self.run_dir, self.env.get("TOR_KAFKA_PORT"))

    def kafka_ctl(self, verb, node=1):
        """stack.sh kafka-ctl <verb> <node> on this test's Kafka: kill (-9),
        stop (SIGTERM, waited for), start (waits until it serves and, if
        no other node is down, every partition is in sync again), pause
        (SIGSTOP), resume (SIGCONT)."""
        if self.kafka == "cluster":
            return self.cluster().ctl(verb, node)
        if self.kafka == "dev":
            raise StackError("kafka_ctl on the dev broker: use broker_ctl")
        return self._stack_sh("kafka-ctl", [verb, str(node)]).stdout

    def kafka_proxy(self):
        """A KafkaProxy between the clients a test points at its `brokers`
        and this test's Kafka (one node or the cluster); stopped by the
        runner after the test."""
        if self.kafka == "dev":
            raise StackError("no proxy for the dev broker: use broker_ctl")
        port = self.cluster().port if self.kafka == "cluster" else \
            int(self._need("TOR_KAFKA_PORT"))
        return KafkaProxy(port, self.kafka_nodes).start()

    def create_topic(self, name, partitions, config=None):
        """Creates a topic on this test's Kafka (replicated on every node)
        and waits until each partition has a leader.  On the dev broker:
        its control socket's `create`."""
        if self.kafka == "dev":
            self.broker_ctl("create %s %d" % (name, partitions))
            return
        create_topics(self.brokers, [(name, partitions)], config=config)

    # -- MariaDB --

    def connect(self, db="shop", user="root", password=None, autocommit=True,
                timeout=10):
        """A new pymysql connection over TCP (127.0.0.1:mysql_port)."""
        if password is None:
            password = PASSWORDS.get(user, "")
        return pymysql.connect(host="127.0.0.1", port=self.mysql_port,
                               user=user, password=password, database=db,
                               autocommit=autocommit, connect_timeout=timeout,
                               read_timeout=60, write_timeout=60)

    def sql(self, statement, *args, db="shop", user="root", password=None):
        """Runs one statement (autocommit).  Returns the rows (a list of
        tuples) of a statement that has a result set, else the row count."""
        conn = self.connect(db=db, user=user, password=password)
        try:
            with conn.cursor() as cur:
                n = cur.execute(statement, args or None)
                if cur.description is not None:
                    return list(cur.fetchall())
                return n
        finally:
            conn.close()

    def sql_many(self, statements, db="shop", user="root", password=None):
        """Runs statements in one transaction; each is a string or a
        (string, args) pair.  Rolls back and re-raises on error."""
        conn = self.connect(db=db, user=user, password=password,
                            autocommit=False)
        try:
            with conn.cursor() as cur:
                for st in statements:
                    if isinstance(st, str):
                        cur.execute(st)
                    else:
                        cur.execute(st[0], st[1])
            conn.commit()
        except BaseException:
            try:
                conn.rollback()
            except pymysql.Error:
                pass
            raise
        finally:
            conn.close()

    def binlog_position(self):
        """(file, pos) of the server's binlog end: SHOW MASTER STATUS."""
        rows = self.sql("SHOW MASTER STATUS")
        if not rows:
            raise StackError("SHOW MASTER STATUS is empty: log_bin off?")
        return rows[0][0], int(rows[0][1])

    def purge_binlogs(self, gone, timeout=20):
        """Rotates and purges until the server lists binlog file `gone` no
        more.  The server silently keeps a file that a binlog dump thread
        still reads, and the dump thread of a tor that just stopped may not
        have noticed its client went yet."""
        self.sql("FLUSH BINARY LOGS")
        deadline = time.monotonic() + timeout
        while True:
            self.sql("PURGE BINARY LOGS TO '%s'" % self.binlog_position()[0])
            files = [r[0] for r in self.sql("SHOW BINARY LOGS")]
            if gone not in files:
                return files
            if time.monotonic() > deadline:
                raise StackError("binlog %s not purged after %d s: %s; "
                                 "processlist %s" % (
                                     gone, timeout, files,
                                     self.sql("SHOW PROCESSLIST")))
            time.sleep(0.2)

    def wait_mysql(self, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sql("SELECT 1")
                return
            except pymysql.Error:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    # -- Redis --

    def redis(self, **kw):
        return redis_lib.Redis(host="127.0.0.1", port=self.redis_port,
                               socket_timeout=5, **kw)

    # -- dev broker --

    @property
    def broker_control(self):
        return self._need("TOR_BROKER_CONTROL")

    def broker_ctl(self, command, check=True, timeout=10):
        """Sends one control command to tor-devbroker, returns its reply
        line ("ok" or "error: ..."); raises on anything but "ok" if check."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.broker_control)
            s.sendall(command.strip().encode() + b"\n")
            buf = b""
            while b"\n" not in buf:
                chunk = s.recv(1024)
                if not chunk:
                    break
                buf += chunk
        finally:
            s.close()
        reply = buf.decode(errors="replace").split("\n", 1)[0]
        if check and reply != "ok":
            raise StackError("broker_ctl %r: %s" % (command, reply or
                                                    "no reply"))
        return reply

    # -- the runner's clean slate between tests --

    SERVICES = ("mariadb", "redis", "kafka", "devbroker")

    def start_all(self):
        """What the integration runner runs on: MariaDB, Redis, Kafka (one
        node) and the dev broker."""
        self.start(*self.SERVICES)

    def make_healthy(self):
        """Brings the stack back to its default state after a test: services
        restarted with a special env are restarted plainly, stopped ones are
        started, every Kafka node runs (resumed, in sync), the dev broker's
        brokers are up with no latency or errors."""
        for s in sorted(self.dirty):
            self.restart(s)
        if not self.answers():
            self.start_all()
        KafkaCluster(self.run_dir).make_healthy()
        self.broker_ctl("reset")
        self.default_outbox()

    def default_outbox(self):
        """shop.outbox, the table base_config names: a replica checks its
        outbox tables exist when it starts leading."""
        self.sql(outbox_ddl())

    def answers(self):
        """True if MariaDB, Redis, the Kafka node and the dev broker all
        answer right now (a quick check, without stack.sh)."""
        try:
            self.reload_env()
            conn = self.connect(timeout=2)
            conn.close()
            if not self.redis().ping():
                return False
            if not kafka_node_serves(os.path.join(self.run_dir, "kafka"), 1,
                                     self._need("TOR_KAFKA_BROKERS")):
                return False
            return self.broker_ctl("ping", timeout=2) == "ok"
        except Exception:
            return False


def read_env_file(path):
    env = {}
    try:
        with open(path) as f:
            for line in f:
                m = re.match(r"^(\w+)='(.*)'$", line.strip())
                if m:
                    env[m.group(1)] = m.group(2)
    except FileNotFoundError:
        pass
    return env


def kafka_node_serves(kafka_dir, node, brokers):
    """Node `node` of the Kafka in kafka_dir runs, is not stopped (SIGSTOP),
    and takes a TCP connection on its client port."""
    try:
        with open(os.path.join(kafka_dir, "node%d" % node, "kafka.pid")) as f:
            pid = int(f.read().strip())
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        if state in ("T", "t", "Z", "X"):
            return False
        host, port = brokers.split(",")[node - 1].rsplit(":", 1)
        socket.create_connection((host, int(port)), timeout=1).close()
        return True
    except (OSError, ValueError, IndexError):
        return False


_proxies = []       # KafkaProxy objects of the running test


class KafkaProxy:
    """TCP proxies in front of a Kafka's nodes: node i's listener PROXIED
    (port base+30+i-1) advertises base+40+i-1, where the proxy for it
    listens (deploy/local/stack.sh).  A client bootstrapped at `brokers`
    reaches every node through them, so delay_replies, blackhole and
    refuse act on all its traffic with Kafka, and on no one else's."""

    def __init__(self, base_port, nodes):
        from proxy import Proxy
        self.proxies = [Proxy(base_port + 30 + i, port=base_port + 40 + i)
                        for i in range(nodes)]
        self.brokers = ",".join("127.0.0.1:%d" % p.port
                                for p in self.proxies)

    def start(self):
        for p in self.proxies:
            p.start()
        _proxies.append(self)
        return self

    def stop(self):
        for p in self.proxies:
            p.stop()

    def delay_replies(self, seconds, jitter=0.0):
        for p in self.proxies:
            p.delay_replies(seconds, jitter)

    def blackhole(self, on=True):
        for p in self.proxies:
            p.blackhole(on)

    def refuse(self, on=True):
        for p in self.proxies:
            p.refuse(on)


def stop_proxies():
    """Called by the runner after each test."""
    while _proxies:
        p = _proxies.pop()
        p.blackhole(False)
        p.stop()


class KafkaCluster:
    """The three-node Kafka cluster of a run: a stack of its own (Kafka
    only) in <run dir>/cluster, its ports from the single node's + 50."""

    def __init__(self, run_dir, single_port=None):
        self.run_dir = os.path.join(run_dir, "cluster")
        self.port = int(single_port or 9192) + 50
        env = read_env_file(os.path.join(self.run_dir, "env"))
        if env.get("TOR_KAFKA_PORT"):
            self.port = int(env["TOR_KAFKA_PORT"])
        self.brokers = ",".join("127.0.0.1:%d" % (self.port + i)
                                for i in range(3))

    def _stack_sh(self, *args, timeout=240):
        e = dict(os.environ, TOR_RUN_DIR=self.run_dir, TOR_KAFKA_NODES="3",
                 TOR_KAFKA_PORT=str(self.port), TOR_BROKER_TOPICS="")
        p = subprocess.run([STACK_SH] + list(args), env=e,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=timeout)
        if p.returncode != 0 and args[0] != "status":
            raise StackError("cluster: stack.sh %s failed (exit %d):\n%s" %
                             (" ".join(args), p.returncode, p.stdout))
        return p

    def started(self):
        return os.path.exists(os.path.join(self.run_dir, "env"))

    def all_serve(self):
        return all(kafka_node_serves(os.path.join(self.run_dir, "kafka"), i,
                                     self.brokers) for i in (1, 2, 3))

    def start(self):
        if self.started() and self.all_serve():
            return
        self._stack_sh("start", "kafka")

    def stop(self):
        if os.path.isdir(self.run_dir):
            self._stack_sh("stop", "kafka")

    def ctl(self, verb, node):
        return self._stack_sh("kafka-ctl", verb, str(node)).stdout

    def in_sync(self):
        try:
            md = AdminClient({"bootstrap.servers": self.brokers}).list_topics(
                timeout=5)
        except KafkaException:
            return False
        return len(md.brokers) == 3 and all(
            len(p.isrs) == len(p.replicas)
            for t in md.topics.values() for p in t.partitions.values())

    def make_healthy(self):
        """Every node up and resumed, every partition in sync."""
        if self.started() and not (self.all_serve() and self.in_sync()):
            self._stack_sh("start", "kafka")


# ---------------------------------------------------------------------------
# tor.cfg


def unique_group(prefix=None):
    base = re.sub(r"[^A-Za-z0-9_.-]", "-", prefix or current_test)[:40]
    return "%s-%s" % (base, secrets.token_hex(3))


def cfg_value(v, indent=""):
    """Renders a Python value as libconfig text: str, bool, int, float,
    dict (a group) and list/tuple (a list)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v) + ("L" if not -2**31 <= v < 2**31 else "")
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return '"' + (v.replace("\\", "\\\\").replace('"', '\\"')
                      .replace("\n", "\\n").replace("\t", "\\t")) + '"'
    inner = indent + "  "
    if isinstance(v, dict):
        if not v:
            return "{ }"
        body = "".join("%s%s = %s;\n" % (inner, k, cfg_value(x, inner))
                       for k, x in v.items())
        return "{\n" + body + indent + "}"
    if isinstance(v, (list, tuple)):
        if not v:
            return "( )"
        return ("(\n" + ",\n".join(inner + cfg_value(x, inner) for x in v) +
                "\n" + indent + ")")
    raise TypeError("no libconfig form for %r" % (v,))


def base_sections(stack, start=None):
    """The default config as a dict of sections (plain Python values).

    mysql.start defaults to the binlog end at the moment of the call, so a
    test sees every row it inserts after building its config, however long
    tor takes to connect ("end" would race with the test's first insert)."""
    if start is None:
        f, p = stack.binlog_position()
        start = "%s:%d" % (f, p)
    return collections.OrderedDict([
        ("group", unique_group()),
        ("mysql", {"host": "127.0.0.1", "port": stack.mysql_port,
                   "user": "tor", "password": "tor", "start": start}),
        ("outbox", {
            "tables": [{"table": "shop.outbox",
                        "columns": {"id": "id", "key": "aggregate_id",
                                    "type": "aggregate_type",
                                    "payload": "payload"}}],
            "routes": [{"match": "^order$", "topic": "order", "icase": True},
                       {"match": "^invoice", "topic": "invoice"}],
        }),
        # No kafka.topics: the dev broker made them, and its CreateTopics
        # times out (DESIGN.md §9).
        ("kafka", {"brokers": stack.brokers, "topics": []}),
        ("redis", {"host": "127.0.0.1", "port": stack.redis_port}),
        ("checkpoint", {"interval_ms": 200}),
        ("http", {"listen": ""}),
        ("log", {"level": "info"}),
    ])


def base_config(stack, **overrides):
    """A tor.cfg text for the stack.

    Each keyword names a top-level key or section (group, instance, mysql,
    outbox, kafka, redis, ha, checkpoint, http, log) and:
      - a str replaces the whole section with that text verbatim, which may
        be "kafka = { ... };" or just the value "{ ... }" / '"name"';
      - a dict is merged into the default section (its keys replace the
        default's keys; a nested dict merges one level further);
      - None removes the section;
      - anything else (int, bool, list) becomes the value.
    `start=` sets mysql.start (see base_sections); `extra=` is text appended
    at the end.
    """
    extra = overrides.pop("extra", "")
    sections = base_sections(stack, start=overrides.pop("start", None))
    verbatim = {}
    for name, v in overrides.items():
        if v is None:
            sections.pop(name, None)
        elif isinstance(v, str):
            sections[name] = None
            if re.match(r"^\s*%s\s*[=:]" % re.escape(name), v):
                verbatim[name] = v.strip().rstrip(";") + ";"
            elif name in ("group", "instance") and not v.lstrip().startswith(
                    ('"', "{")):
                verbatim[name] = "%s = %s;" % (name, cfg_value(v))
            else:
                verbatim[name] = "%s = %s;" % (name, v.strip().rstrip(";"))
        elif isinstance(v, dict) and isinstance(sections.get(name), dict):
            merged = dict(sections[name])
            for k, x in v.items():
                if isinstance(x, dict) and isinstance(merged.get(k), dict):
                    merged[k] = dict(merged[k], **x)
                else:
                    merged[k] = x
            sections[name] = merged
        else:
            sections[name] = v
    lines = ["# tor.cfg written by tests/integration/harness.py"]
    for name, v in sections.items():
        if name in verbatim:
            lines.append(verbatim[name])
        else:
            lines.append("%s = %s;" % (name, cfg_value(v)))
    if extra:
        lines.append(extra)
    return "\n".join(lines) + "\n"


def config_group(cfg_text):
    m = re.search(r'^\s*group\s*[=:]\s*"([^"]*)"', cfg_text, re.M)
    return m.group(1) if m else None


# ---------------------------------------------------------------------------
# tor replicas

_started = []        # every Tor started since the runner's last begin_test()
_names_used = [0]    # Tors created in this test, for the default names


def _work_dir(stack):
    """Where replicas keep their config and log: <run dir>/tor-it, so that
    `stack.sh destroy` removes them; the runner removes a passed test's."""
    d = os.path.join(stack.run_dir if stack else default_run_dir(), "tor-it")
    os.makedirs(d, exist_ok=True)
    return d


def remove_test_files():
    """Deletes the directories of this test's replicas (after a pass)."""
    for t in _started:
        shutil.rmtree(t.dir, ignore_errors=True)


def begin_test(name):
    """Called by the runner before each test."""
    global current_test
    current_test = name
    del _started[:]
    _names_used[0] = 0


def started_tors():
    return list(_started)


def expected_failure(reason):
    """Marks a test that shows a known defect: the runner reports its
    AssertionError as an expected failure (with the reason), and its
    passing as a failure (the defect is gone: drop the mark)."""
    def mark(fn):
        fn.expected_failure = reason
        return fn
    return mark


def long_test(why):
    """Marks a test that `make test` leaves out for its time (a filter that
    names it, TOR_IT_LONG=1, or `make chaos`, TOR_IT_LONG=only, runs it).
    why says what the tests kept in `make test` already show."""
    def mark(fn):
        fn.long_test = why
        return fn
    return mark


_at_end = []         # what the runner calls once, after the last test


def at_run_end(fn):
    """Has the runner call fn() once after the last test: how a test module
    stops a stack it started for itself (its tests share it)."""
    if fn not in _at_end:
        _at_end.append(fn)


def run_end_hooks():
    """Called by the runner at its end, last registered first; a failing
    hook is reported, the others still run."""
    while _at_end:
        fn = _at_end.pop()
        try:
            fn()
        except Exception as e:  # the run's result stands; say what is left
            print("  end of run: %s failed: %s" % (
                getattr(fn, "__qualname__", fn), e), flush=True)


def kill_all_tors():
    """Kills (SIGCONT then SIGKILL) every Tor still running, and stops the
    test's Kafka proxies; returns the Tors."""
    killed = []
    for t in _started:
        if t.running():
            t.kill9()
            killed.append(t)
    stop_proxies()
    return killed


class Tor:
    """One tor replica.

    cfg is a config text, or a dict of base_config() overrides (None: the
    base config).  The replica's instance name is `name` (default r1, r2, ...
    per test), passed as $HOSTNAME, which tor uses when the config sets no
    instance.  Files live in a fresh temp directory: tor.cfg and tor.log
    (stdout and stderr together).
    """

    def __init__(self, stack, cfg=None, binary=None, name=None, args=(),
                 env=None):
        _names_used[0] += 1
        self.stack = stack
        self.binary = binary or default_tor_binary()
        self.name = name or "r%d" % _names_used[0]
        if cfg is None or isinstance(cfg, dict):
            cfg = base_config(stack, **(cfg or {}))
        self.cfg_text = cfg
        self.group = config_group(cfg)
        self.args = list(args)
        self.env = env or {}
        self.dir = tempfile.mkdtemp(prefix="%s-" % self.name,
                                    dir=_work_dir(stack))
        self.cfg_path = os.path.join(self.dir, "tor.cfg")
        self.log_path = os.path.join(self.dir, "tor.log")
        write_private(self.cfg_path, cfg)
        self.proc = None
        self.returncode = None
        self._log = None

    def __repr__(self):
        return "Tor(%s, pid=%s, group=%s)" % (
            self.name, self.proc.pid if self.proc else None, self.group)

    def command(self):
        return [self.binary, "-c", self.cfg_path] + self.args

    def start(self):
        if not os.access(self.binary, os.X_OK):
            raise StackError("no tor binary at %s (make build/asan/tor, or "
                             "set TOR_BIN)" % self.binary)
        if self.running():
            raise StackError("%r already running" % self)
        env = dict(os.environ)
        env["HOSTNAME"] = self.name
        env.update(self.env)
        self._log = open(self.log_path, "ab")
        self.returncode = None
        # Own session: a Ctrl-C at the terminal reaches the runner, which
        # then kills the replicas itself.
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env, cwd=self.dir,
                                     start_new_session=True)
        _started.append(self)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def send_signal(self, sig):
        if self.running():
            self.proc.send_signal(sig)

    def wait(self, timeout=30):
        """Waits for the process to exit; returns its exit code (negative:
        killed by that signal).  Raises AssertionError on timeout."""
        if self.proc is None:
            raise StackError("%r was never started" % self)
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("%r still running after %ss; log tail:\n%s"
                                 % (self, timeout, self.log_tail()))
        if self._log:
            self._log.close()
            self._log = None
        return self.returncode

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Sends sig (SIGCONT first, in case it is stopped) and waits."""
        if self.running():
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def kill9(self):
        if self.running():
            self.proc.kill()
        return self.wait(10) if self.proc else None

    def sigstop(self):
        self.send_signal(signal.SIGSTOP)

    def sigcont(self):
        self.send_signal(signal.SIGCONT)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=40):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_log(self, regex, timeout=30, since=0):
        """Waits until the log (from character offset `since`) matches regex;
        returns the match.  Fails early if the process exits first."""
        pat = re.compile(regex, re.M)
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text()
            m = pat.search(text, since)
            if m:
                return m
            if not self.running() and self.proc is not None:
                text = self.log_text()
                m = pat.search(text, since)
                if m:
                    return m
                raise AssertionError(
                    "%r exited (%s) before logging /%s/; log tail:\n%s" %
                    (self, self.proc.returncode, regex, self.log_tail()))
            if time.monotonic() > deadline:
                raise AssertionError("no /%s/ in %r's log after %ss; tail:\n%s"
                                     % (regex, self, timeout, self.log_tail()))
            time.sleep(0.05)

    def log_size(self):
        """The current log length, for wait_log(since=...)."""
        return len(self.log_text())


def write_private(path, text):
    """Writes a tor.cfg at 0600, as an operator keeps one that holds
    passwords inline (tor warns of a looser one)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def tor_cli(args, cfg=None, stack=None, binary=None, timeout=60):
    """Runs tor once (e.g. ["--check-config"], ["status"]) with `-c <cfg>`
    when cfg (text, or a dict of base_config overrides) is given; returns the
    CompletedProcess with stdout and stderr as text."""
    binary = binary or default_tor_binary()
    cmd = [binary] + list(args)
    tmp = None
    if cfg is not None:
        if isinstance(cfg, dict):
            cfg = base_config(stack, **cfg)
        tmp = tempfile.mkdtemp(prefix="cli-", dir=_work_dir(stack))
        path = os.path.join(tmp, "tor.cfg")
        write_private(path, cfg)
        cmd += ["-c", path]
    try:
        return subprocess.run(cmd, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True,
                              timeout=timeout)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------
# the outbox table


def outbox_ddl(table="shop.outbox"):
    """CREATE TABLE IF NOT EXISTS for an outbox table with the columns of
    base_config (id, aggregate_id, aggregate_type, payload) and some for
    header tests (uuid, trace_id, created_at)."""
    return ("CREATE TABLE IF NOT EXISTS %s (\n"
            "  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,\n"
            "  uuid CHAR(36) NULL,\n"
            "  aggregate_id VARCHAR(64) NOT NULL,\n"
            "  aggregate_type VARCHAR(64) NOT NULL,\n"
            "  payload BLOB NULL,\n"
            "  trace_id VARCHAR(64) NULL,\n"
            "  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)\n"
            ") ENGINE=InnoDB" % table)


def insert_events(stack, events, table="shop.outbox", user="app"):
    """Inserts outbox rows in one transaction.  Each event is a tuple
    (aggregate_type, aggregate_id, payload[, uuid[, trace_id]]) or a dict of
    column values."""
    stmts = []
    for e in events:
        if isinstance(e, dict):
            cols = list(e)
            vals = [e[c] for c in cols]
        else:
            cols = ["aggregate_type", "aggregate_id", "payload", "uuid",
                    "trace_id"][:len(e)]
            vals = list(e)
        stmts.append(("INSERT INTO %s (%s) VALUES (%s)" %
                      (table, ", ".join(cols), ", ".join(["%s"] * len(cols))),
                      vals))
    stack.sql_many(stmts, user=user)


# ---------------------------------------------------------------------------
# Kafka

Record = collections.namedtuple(
    "Record", "topic partition offset key value headers timestamp_ms")


def _consumer(brokers, isolation):
    return Consumer({
        "bootstrap.servers": brokers,
        "group.id": "tor-it-" + secrets.token_hex(4),
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": isolation,
        "enable.partition.eof": False,
        "topic.metadata.refresh.interval.ms": 1000,
    })


def _partitions(c, topic, timeout, wait=False):
    """The topic's partitions; [] for a topic that does not exist (Kafka
    makes it at the first produce), or with wait, once it exists (an
    AssertionError after timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        md = c.list_topics(topic, timeout=timeout)
        t = md.topics.get(topic)
        if t is not None and t.error is None and t.partitions:
            return sorted(t.partitions)
        missing = t is None or (t.error is not None and t.error.code() ==
                                KafkaError.UNKNOWN_TOPIC_OR_PART)
        if missing and not wait:
            return []
        if time.monotonic() > deadline:
            raise AssertionError("topic %s: %s after %ss" % (
                topic, t.error if t else "missing", timeout))
        time.sleep(0.2)


def watermarks(c, topic, partition, timeout):
    """(low, high) of a partition as consumer c is told, asked again while
    Kafka answers that its leader is moving or not yet known (a topic made
    a moment ago, a node that just went down)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return c.get_watermark_offsets(TopicPartition(topic, partition),
                                           timeout=timeout, cached=False)
        except KafkaException as e:
            if not e.args[0].retriable() and e.args[0].code() not in (
                    KafkaError.NOT_LEADER_FOR_PARTITION,
                    KafkaError.LEADER_NOT_AVAILABLE,
                    KafkaError.UNKNOWN_TOPIC_OR_PART,
                    KafkaError._UNKNOWN_PARTITION):
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def high_watermarks(brokers, topic, timeout=10):
    """{partition: high watermark} of the topic now."""
    c = _consumer(brokers, "read_uncommitted")
    try:
        out = {}
        for p in _partitions(c, topic, timeout):
            out[p] = watermarks(c, topic, p, timeout)[1]
        return out
    finally:
        c.close()


def read_all(brokers, topic, timeout=20, count=None,
             isolation="read_committed"):
    """Reads the topic's partitions from the beginning.

    Without count: up to each partition's high watermark at call time.
    With count: until that many records arrived (more may be returned if they
    came in the same batch).  Returns what was read when timeout expires (the
    caller asserts); records are in (partition, offset) order per partition,
    partitions interleaved as they arrived."""
    c = _consumer(brokers, isolation)
    records = []
    try:
        parts = _partitions(c, topic, timeout, wait=count is not None)
        targets = {}
        if count is None:
            for p in parts:
                lo, hi = watermarks(c, topic, p, timeout)
                if hi > lo:
                    targets[p] = hi
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if count is not None and len(records) >= count:
                break
            if count is None and not targets:
                break
            for m in c.consume(500, 0.2):
                if m.error():
                    continue     # partition EOF and transient errors
                records.append(Record(m.topic(), m.partition(), m.offset(),
                                      m.key(), m.value(),
                                      list(m.headers() or []),
                                      m.timestamp()[1]))
            if count is None:
                # position(), not the last offset + 1: a transactional
                # producer's commit markers occupy offsets too.
                pos = c.position([TopicPartition(topic, p) for p in targets])
                for tp in pos:
                    if tp.offset >= 0 and tp.offset >= targets[tp.partition]:
                        del targets[tp.partition]
        return records
    finally:
        c.close()


def wait_for(brokers, topic, count, timeout=30, isolation="read_committed"):
    """Reads the topic from the beginning until `count` records are there;
    returns them, or raises AssertionError saying how many came."""
    recs = read_all(brokers, topic, timeout=timeout, count=count,
                    isolation=isolation)
    if len(recs) < count:
        raise AssertionError("topic %s: %d of %d records after %ss" %
                             (topic, len(recs), count, timeout))
    return recs


def header(record, name):
    """The value (bytes) of the first header `name` of a record, or None."""
    for k, v in record.headers:
        if k == name:
            return v
    return None


def create_topics(brokers, specs, config=None, timeout=30):
    """Creates topics [(name, partitions)] replicated on as many nodes as
    the cluster has (at most 3), with topic configs `config` (a dict), and
    waits until every partition has a leader.  An existing topic is an
    error: a test's topics are its own."""
    admin = AdminClient({"bootstrap.servers": brokers})
    rf = min(len(admin.list_topics(timeout=timeout).brokers), 3)
    new = [NewTopic(n, p, rf, config=dict(config or {})) for n, p in specs]
    for name, fut in admin.create_topics(new,
                                         operation_timeout=timeout).items():
        fut.result()
    deadline = time.monotonic() + timeout
    names = [n for n, _ in specs]
    while True:
        md = admin.list_topics(timeout=timeout)
        if all(n in md.topics and md.topics[n].error is None and
               md.topics[n].partitions and
               all(p.leader >= 0 for p in md.topics[n].partitions.values())
               for n in names):
            return
        if time.monotonic() > deadline:
            raise AssertionError("topics %s have no leader after %ss" %
                                 (names, timeout))
        time.sleep(0.1)


def topic_config(brokers, topic, timeout=10):
    """{name: value} of a topic's configuration as the broker has it."""
    admin = AdminClient({"bootstrap.servers": brokers})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    cfg = admin.describe_configs([res])[res].result(timeout=timeout)
    return {k: v.value for k, v in cfg.items()}


def topic_replicas(brokers, topic, timeout=10):
    """{partition: (replicas, in-sync replicas)} of a topic."""
    admin = AdminClient({"bootstrap.servers": brokers})
    t = admin.list_topics(topic, timeout=timeout).topics[topic]
    return {p: (list(m.replicas), list(m.isrs))
            for p, m in t.partitions.items()}


# Topics the stack makes and every test may use; the rest are a test's own.
SHARED_TOPICS = ("order", "invoice", "dlq")


def delete_test_topics(brokers, timeout=30):
    """Deletes every topic but the shared ones and Kafka's and tor's
    internal ones ("__..."), so that the broker does not carry a whole
    run's topics.  The runner calls it after a test passed."""
    admin = AdminClient({"bootstrap.servers": brokers})
    names = [n for n in admin.list_topics(timeout=timeout).topics
             if not n.startswith("__") and n not in SHARED_TOPICS]
    if not names:
        return
    for fut in admin.delete_topics(names,
                                   operation_timeout=timeout).values():
        try:
            fut.result()
        except KafkaException:
            pass          # deleted meanwhile, or will be: not ours to judge


def count_records(brokers, topic, timeout=10):
    """Records in the topic by watermarks (high - low per partition): the
    cheap count for large runs (the dev broker's retention is limited)."""
    c = _consumer(brokers, "read_uncommitted")
    try:
        total = 0
        for p in _partitions(c, topic, timeout):
            lo, hi = watermarks(c, topic, p, timeout)
            total += hi - lo
        return total
    finally:
        c.close()


__all__ = ["Stack", "StackError", "Tor", "base_config", "base_sections",
           "cfg_value", "unique_group", "outbox_ddl", "insert_events",
           "read_all", "wait_for", "high_watermarks", "count_records",
           "header", "Record", "tor_cli", "begin_test", "kill_all_tors",
           "started_tors", "KafkaException", "KafkaCluster", "create_topics",
           "topic_config", "topic_replicas", "delete_test_topics"]


def metric_value(samples, name, **labels):
    """The value of the one sample `name` of samples ({(name,
    frozenset(labels)): value}, as test_http.samples gives) whose labels
    include `labels`; labels not asked for (group, ...) are ignored.  Fails
    when none or several match, naming what there is."""
    want = set(labels.items())
    found = [v for (n, ls), v in samples.items()
             if n == name and want <= set(ls)]
    if len(found) != 1:
        raise AssertionError("%d samples %s%s in %s" % (
            len(found), name, labels or "",
            sorted((dict(ls), v) for (n, ls), v in samples.items()
                   if n == name)))
    return found[0]
