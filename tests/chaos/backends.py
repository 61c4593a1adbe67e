"""Fault back-ends for the chaos runner: one small interface, several ways to
reach the parts.

A back-end knows how to act on the replicas and on the three services a run
depends on:

  replica(name, action)   action: start, stop (SIGTERM), kill (SIGKILL),
                          pause (SIGSTOP), resume (SIGCONT)
  service(kind, action)   kind: mysql, redis, broker; action: start, stop,
                          kill, wipe (Redis only: restarted with no data),
                          failover (MySQL only: the primary's replica
                          promoted, its address moved; arg "switchover" or
                          "kill"),
                          down N (a broker killed, -9) / up N (started again
                          on its data), pause N / resume N (SIGSTOP,
                          SIGCONT), controller (returns the number of the
                          broker that is the active controller), latency MS
                          (all brokers; 0 clears it)
  logs(name)              a replica's log text (for the timeline and for
                          crash reports)
  tor(args)               runs the tor command line against the group (for
                          `tor checkpoint set`)

and describes the run's endpoints (MySQL, Redis, the bootstrap list, the
group, the outbox table and where each aggregate type is routed).  Each
back-end says which actions it has; the runner refuses a fault whose actions
are missing, naming them.

  LocalBackend    the local stack (deploy/local/stack.sh) in a run directory
                  of its own, Apache Kafka as three nodes, and replicas as
                  processes of this machine
  CommandBackend  every action is a shell command from a target file: the
                  presets "systemd" (systemctl on the hosts, over ssh or
                  locally) and "kubernetes" (kubectl against the manifests of
                  deploy/k8s) fill in the usual ones, the file may override
                  any; see tests/chaos/README.md
"""

import json
import multiprocessing
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pymysql

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import harness  # noqa: E402
import nemesis  # noqa: E402
from failover_db import MovableProxy, gtid_seqs  # noqa: E402

REPLICA_ACTIONS = ("start", "stop", "kill", "pause", "resume")


def default_run_dir():
    """The chaos stack's run directory: $TOR_CHAOS_RUN_DIR or run/chaos;
    $TOR_CHAOS_MYSQL_PORT, $TOR_CHAOS_REDIS_PORT and $TOR_CHAOS_KAFKA_PORT
    (the first of the 50 ports its Kafka takes) move its ports, so two
    stacks can run side by side."""
    return os.environ.get("TOR_CHAOS_RUN_DIR") or os.path.join(
        REPO, "run", "chaos")


class Unsupported(Exception):
    pass


class Backend:
    """What the runner needs of a back-end (see the module comment)."""

    name = "?"
    dev_broker = False

    # endpoints, set by the subclass
    mysql = None            # pymysql.connect kwargs for the writers
    redis = None            # {"host", "port", "password"}
    redis_prefix = "tor"
    brokers = None
    kafka_props = {}
    group = None
    table = None            # schema.table
    columns = None          # {"id", "key", "type", "payload"}
    routes = None           # aggregate type -> topic
    lease_ms = 3000
    broker_count = 3        # brokers numbered 1..broker_count

    def setup(self, log):
        pass

    def teardown(self, log):
        pass

    def replicas(self):
        raise NotImplementedError

    def has(self, what):
        """True when the action ("replica.kill", "redis.wipe", "broker.down"
        ...) is available."""
        raise NotImplementedError

    def replica(self, name, action):
        raise NotImplementedError

    def service(self, kind, action, arg=None):
        """Does the action; "broker controller" returns a broker's
        number."""
        raise NotImplementedError

    def logs(self, name):
        return ""

    def tor(self, args, timeout=60):
        raise NotImplementedError

    def running(self, name):
        """True/False where the back-end can tell, else None."""
        return None

    def mysql_servers(self):
        """pymysql.connect kwargs (an admin's) of every MySQL server that
        may hold committed rows, when the back-end fails the primary over;
        else none (the runner's own connection)."""
        return []


# ---------------------------------------------------------------------------
# local processes


def _proxy_main(conn, base_port, nodes):
    """The child of ProxyProcess: the proxy, and its orders from the pipe
    until the parent says stop or goes away."""
    p = harness.KafkaProxy(base_port, nodes).start()
    conn.send(p.brokers)
    try:
        while True:
            verb, arg = conn.recv()
            if verb == "stop":
                break
            p.delay_replies(*arg)
            conn.send("ok")
    except (EOFError, OSError):
        pass
    p.stop()


class ProxyProcess:
    """harness.KafkaProxy in a process of its own: its threads carry every
    byte the replicas exchange with Kafka, and in the runner's process they
    would wait on the writers' and watchers' turn at the interpreter."""

    def __init__(self, base_port, nodes):
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_proxy_main, daemon=True,
                                args=(child, base_port, nodes))
        self.proc.start()
        child.close()
        if not self.conn.poll(10):
            self.stop()
            raise RuntimeError("the Kafka proxy did not start")
        self.brokers = self.conn.recv()

    def delay_replies(self, seconds, jitter=0.0):
        self.conn.send(("delay", (float(seconds), float(jitter))))
        if not self.conn.poll(10):
            raise RuntimeError("the Kafka proxy does not answer")
        self.conn.recv()

    def stop(self):
        try:
            self.conn.send(("stop", None))
        except OSError:
            pass
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


class LocalBackend(Backend):
    """The local stack in its own run directory, N replicas as processes.

    Kafka is three nodes (replication factor 3, min.insync.replicas 2),
    formatted afresh at every run: a broker fault kills (-9) or pauses
    (SIGSTOP) a node through `stack.sh kafka-ctl`, and the replicas reach
    the brokers through a proxy (harness.KafkaProxy, in a process of its
    own) that adds latency on demand.  The runner and the verifier talk to
    the brokers directly.

    Replicas run the binary in $TOR_BIN (default: the ASan build), each with
    its own log in <run dir>/tor-it/; with hosts=True each in a network
    namespace of its own (tests/integration/nemesis.py), so that a
    partition fault can cut one replica's link to one service.  With
    failover=True a second MariaDB (stack.sh's mariadb-replica, on
    $TOR_CHAOS_MYSQL_REPLICA_PORT, default the MySQL port + 1) replicates
    the first by GTID, and the replicas and the writers reach the primary
    through a proxy that moves at each failover; the old primary then
    replicates the new one.  Redis persists only what a fault asks
    for: its stop is SHUTDOWN SAVE (data kept), its wipe SHUTDOWN NOSAVE
    with the dump removed (restarted empty)."""

    name = "local"
    dev_broker = False
    NODES = broker_count = 3

    TOPICS = ("chaos.order", "chaos.invoice")

    def __init__(self, replicas=3, mode="idempotent", run_dir=None,
                 mysql_port=None, redis_port=None, kafka_port=None,
                 partitions=8, binary=None, lease_ms=2000, hosts=False,
                 failover=False):
        self.n = replicas
        self.failover = failover
        self.db_proxy = None
        self.primary = "mariadb"
        self.hosts = hosts
        self.nemesis = None
        self.mode = mode
        self.run_dir = run_dir or default_run_dir()
        self.mysql_port = mysql_port or int(os.environ.get(
            "TOR_CHAOS_MYSQL_PORT", "3347"))
        self.redis_port = redis_port or int(os.environ.get(
            "TOR_CHAOS_REDIS_PORT", "6407"))
        self.kafka_port = kafka_port or int(os.environ.get(
            "TOR_CHAOS_KAFKA_PORT", "9292"))
        self.replica_port = int(os.environ.get(
            "TOR_CHAOS_MYSQL_REPLICA_PORT", str(self.mysql_port + 1)))
        self.partitions = partitions
        self.binary = binary or harness.default_tor_binary()
        self.lease_ms = lease_ms
        self.stack = None
        self.proxy = None
        self.tors = {}
        self.table = "shop.chaos_outbox"
        self.columns = {"id": "id", "key": "aggregate_id",
                        "type": "aggregate_type", "payload": "payload"}
        self.routes = {"order": "chaos.order", "invoice": "chaos.invoice"}

    def _env(self):
        return {"TOR_RUN_DIR": self.run_dir,
                "TOR_MYSQL_PORT": str(self.mysql_port),
                "TOR_REDIS_PORT": str(self.redis_port),
                "TOR_MYSQL_REPLICA_PORT": str(self.replica_port),
                "TOR_KAFKA": "kafka",
                "TOR_KAFKA_NODES": str(self.NODES),
                "TOR_KAFKA_PORT": str(self.kafka_port),
                "TOR_BROKER_TOPICS": " ".join(
                    "%s:%d" % (t, self.partitions) for t in self.TOPICS)}

    def setup(self, log):
        os.environ.update(self._env())
        self.stack = harness.Stack(self.run_dir)
        log("local stack in %s (mysql %d, redis %d, kafka %d nodes from "
            "port %d)" % (self.run_dir, self.mysql_port, self.redis_port,
                          self.NODES, self.kafka_port))
        # Kafka from empty storage: the topics get this run's partitions,
        # and runs do not pile up on disk.
        self.stack.stop("kafka")
        shutil.rmtree(os.path.join(self.run_dir, "kafka"),
                      ignore_errors=True)
        self.stack.start(env=self._env())
        self.stack.dirty.clear()
        mysql_port = self.mysql_port
        if self.failover:
            # A fresh replica, from the primary's position now: the table
            # below is created after it, so that it is replicated.
            self._failover_undo()
            self.stack.start("mariadb-replica", env=self._env())
        self.stack.sql("DROP TABLE IF EXISTS %s" % self.table)
        self.stack.sql(harness.outbox_ddl(self.table))
        if self.failover:
            self.db_proxy = MovableProxy(self.mysql_port).start()
            mysql_port = self.db_proxy.port
            log("MariaDB failover: a replica on port %d, the primary "
                "reached through port %d" % (self.replica_port, mysql_port))
        self.mysql = {"host": "127.0.0.1", "port": mysql_port,
                      "user": "app", "password": "app", "database": "shop"}
        self.redis = {"host": "127.0.0.1", "port": self.redis_port,
                      "password": None}
        self.brokers = self.stack.brokers
        self.proxy = ProxyProcess(self.kafka_port, self.NODES)
        self.group = harness.unique_group("chaos")
        cfg = harness.base_config(
            self.stack, group=self.group,
            outbox={"tables": [{"table": self.table,
                                "columns": dict(self.columns)}],
                    "routes": [{"match": "^%s$" % t, "topic": topic}
                               for t, topic in self.routes.items()]},
            kafka={"mode": self.mode, "brokers": self.proxy.brokers},
            mysql={"port": mysql_port},
            ha={"lease_ms": self.lease_ms, "renew_ms": self.lease_ms // 4,
                "retry_ms": 100},
            checkpoint={"interval_ms": 200})
        self.cfg_text = cfg
        harness.begin_test("chaos")
        if self.hosts:
            self.nemesis = nemesis.Nemesis(self.stack)
        for i in range(1, self.n + 1):
            name = "r%d" % i
            if self.nemesis is not None:
                self.tors[name] = nemesis.HostTor(
                    self.stack, cfg, self.nemesis.host(name),
                    binary=self.binary)
            else:
                self.tors[name] = harness.Tor(self.stack, cfg, name=name,
                                              binary=self.binary)

    def teardown(self, log):
        for t in self.tors.values():
            if t.running():
                t.kill9()
        if self.proxy is not None:
            self.proxy.stop()
        if self.db_proxy is not None:
            self.db_proxy.stop()
            try:
                self._failover_undo()
            except Exception as e:
                log("failover undo: %s" % e)
        if self.nemesis is not None:
            try:
                self.nemesis.remove()
            except nemesis.NemesisError as e:
                log("nemesis removal: %s" % e)
            left = nemesis.leftovers(self.nemesis.run)
            if left:
                log("nemesis leftovers: %s" % ", ".join(left))
        if self.stack is not None:
            try:
                self.stack.stop()
            except harness.StackError as e:
                log("stack stop: %s" % e)

    def replicas(self):
        return list(self.tors)

    def has(self, what):
        if what.startswith("partition."):
            return self.hosts
        if what == "mysql.failover":
            return self.failover
        return True

    # -- MariaDB failover --

    def _port_of(self, service):
        return self.mysql_port if service == "mariadb" else self.replica_port

    def _other(self, service):
        return "mariadb-replica" if service == "mariadb" else "mariadb"

    def _root_sql(self, service, statement):
        conn = pymysql.connect(host="127.0.0.1", port=self._port_of(service),
                               user="root", password="", autocommit=True,
                               connect_timeout=5, read_timeout=30)
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def mysql_servers(self):
        if not self.failover:
            return []
        return [dict(host="127.0.0.1", port=self._port_of(s), user="root",
                     password="", database="shop")
                for s in (self.primary, self._other(self.primary))]

    def _failover(self, how):
        """The primary's replica becomes the primary.  how: "switchover"
        (the primary read-only first) or "kill" (kill -9 of the primary,
        which then starts again and goes read-only).  Either way the
        replica has caught up with everything the old primary logged
        before it is promoted: a lossy failover is a halt with a
        diagnosis (tests/integration/test_source_failover.py), not a
        run's.  The proxy moves, and the old primary replicates the new
        one.  Returns a line for the timeline."""
        old, new = self.primary, self._other(self.primary)
        if how == "kill":
            self._kill_pidfile("%s/mysqld.pid" % old)
            self.stack.start(old, env=self._env())
        self._root_sql(old, "SET GLOBAL read_only = 1")
        want = self._root_sql(old, "SELECT @@global.gtid_binlog_pos")[0][0]
        deadline = time.monotonic() + 60
        while gtid_seqs(self._root_sql(new, "SELECT "
                                       "@@global.gtid_slave_pos")[0][0]) != \
                gtid_seqs(want):
            if time.monotonic() > deadline:
                raise RuntimeError("%s did not catch up with %s (%s)" % (
                    new, old, want))
            time.sleep(0.05)
        self._root_sql(new, "STOP SLAVE")
        self._root_sql(new, "RESET SLAVE ALL")
        self._root_sql(new, "SET GLOBAL read_only = 0")
        self.db_proxy.move(self._port_of(new))
        self._root_sql(old, "CHANGE MASTER TO MASTER_HOST='127.0.0.1', "
                       "MASTER_PORT=%d, MASTER_USER='tor', "
                       "MASTER_PASSWORD='tor', MASTER_USE_GTID=current_pos, "
                       "MASTER_CONNECT_RETRY=1" % self._port_of(new))
        self._root_sql(old, "START SLAVE")
        self.primary = new
        sid = self._root_sql(new, "SELECT @@global.server_id")[0][0]
        return "%s, %s promoted (server_id %s) at GTID %s" % (how, new, sid,
                                                              want)

    def _failover_undo(self):
        """The stack as it was: the main MariaDB a writable primary, no
        replica."""
        self.stack.start("mariadb", env=self._env())
        for st in ("STOP SLAVE", "RESET SLAVE ALL",
                   "SET GLOBAL read_only = 0"):
            try:
                self._root_sql("mariadb", st)
            except pymysql.err.MySQLError:
                pass            # not a replica
        self.stack._stack_sh("mysql-ctl", ["reset-replica"], env=self._env())
        self.primary = "mariadb"

    def running(self, name):
        return self.tors[name].running()

    def replica(self, name, action):
        t = self.tors[name]
        if action == "start":
            if not t.running():
                t.start()
        elif action == "stop":
            if t.running():
                t.stop(timeout=60)
        elif action == "kill":
            if t.running():
                t.proc.send_signal(signal.SIGCONT)
                t.kill9()
        elif action == "pause":
            t.sigstop()
        elif action == "resume":
            t.sigcont()
        else:
            raise Unsupported("replica action %r" % action)

    def _pid(self, rel):
        try:
            with open(os.path.join(self.run_dir, rel)) as f:
                return int(f.read().strip() or 0) or None
        except (FileNotFoundError, ValueError):
            return None

    def _kill_pidfile(self, rel):
        pid = self._pid(rel)
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.05)

    def controller(self):
        """The node that leads the KRaft quorum (the active controller):
        the leader of the highest epoch any node has written to its
        quorum-state file."""
        best = (-1, None)
        for i in range(1, self.NODES + 1):
            path = os.path.join(self.run_dir, "kafka", "node%d" % i, "data",
                                "__cluster_metadata-0", "quorum-state")
            try:
                with open(path) as f:
                    st = json.load(f)
            except (OSError, ValueError):
                continue
            epoch, leader = st.get("leaderEpoch", -1), st.get("leaderId", -1)
            if leader is not None and leader > 0 and epoch > best[0]:
                best = (epoch, leader)
        if best[1] is None:
            raise RuntimeError("no node names a quorum leader")
        return best[1]

    def service(self, kind, action, arg=None):
        s = self.stack
        if kind == "mysql":
            if action == "start":
                s.start("mariadb", env=self._env())
            elif action == "stop":
                s.stop("mariadb")
            elif action == "kill":
                self._kill_pidfile("mariadb/mysqld.pid")
            elif action == "failover" and self.failover:
                return self._failover(arg)
            else:
                raise Unsupported("mysql %s" % action)
        elif kind == "redis":
            if action == "start":
                s.start("redis", env=self._env())
            elif action in ("stop", "wipe"):
                self._redis_shutdown(save=action == "stop")
                if action == "wipe":
                    try:
                        os.remove(os.path.join(self.run_dir, "redis",
                                               "dump.rdb"))
                    except FileNotFoundError:
                        pass
            elif action == "kill":
                self._kill_pidfile("redis/redis.pid")
            else:
                raise Unsupported("redis %s" % action)
        elif kind == "broker":
            verbs = {"down": "kill", "up": "start", "pause": "pause",
                     "resume": "resume"}
            if action in verbs:
                s.kafka_ctl(verbs[action], int(arg))
            elif action == "controller":
                return self.controller()
            elif action == "latency":
                # arg: ms, or (ms, jitter ms)
                ms, jitter = arg if isinstance(arg, tuple) else (arg, 0)
                self.proxy.delay_replies(int(ms) / 1000.0,
                                         int(jitter) / 1000.0)
            elif action == "start":
                # Every node up, paused ones resumed, partitions in sync.
                s.start("kafka", env=self._env())
            else:
                raise Unsupported("broker %s" % action)
        elif kind == "partition" and self.nemesis is not None:
            # arg: (replica, service, direction[, loss %]) to cut, service
            # redis, mysql, kafka or "all"; a replica or None (every one)
            # to heal.
            if action == "cut":
                name, service, direction = arg[:3]
                self.nemesis.cut(self.nemesis.host(name),
                                 self._ports(service), direction=direction,
                                 loss=arg[3] if len(arg) > 3 else None)
            elif action == "heal":
                self.nemesis.heal(self.nemesis.host(arg) if arg else None)
            else:
                raise Unsupported("partition %s" % action)
        else:
            raise Unsupported(kind)

    def _ports(self, service):
        """The ports a replica reaches `service` at: Kafka through the
        proxy, the others directly."""
        kafka = [int(b.rsplit(":", 1)[1])
                 for b in self.proxy.brokers.split(",")]
        if service == "kafka":
            return kafka
        if service == "all":
            return [self.mysql_port, self.redis_port] + kafka
        return service

    def _redis_shutdown(self, save):
        r = self.stack.redis()
        try:
            r.execute_command("SHUTDOWN", "SAVE" if save else "NOSAVE")
        except Exception:
            pass            # the connection closes as it shuts down
        pid = self._pid("redis/redis.pid")
        for _ in range(100):
            if pid is None:
                break
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)

    def logs(self, name):
        return self.tors[name].log_text()

    def tor(self, args, timeout=60):
        return harness.tor_cli(list(args), cfg=self.cfg_text,
                               stack=self.stack, binary=self.binary,
                               timeout=timeout)

    def exit_codes(self):
        return {n: t.proc.returncode if t.proc else None
                for n, t in self.tors.items()}


# ---------------------------------------------------------------------------
# shell commands from a target file

# {ssh}: the host's command prefix ("ssh root@vm-a", or "" on this machine);
# {name}: the replica; {ns}: the Kubernetes namespace; {arg}: the action's
# argument (a broker number, a latency in ms).
PRESETS = {
    "systemd": {
        "replica.start": "{ssh} systemctl start tor",
        "replica.stop": "{ssh} systemctl stop tor",
        "replica.kill": "{ssh} systemctl kill --signal=SIGKILL tor",
        "replica.pause": "{ssh} systemctl kill --signal=SIGSTOP tor",
        "replica.resume": "{ssh} systemctl kill --signal=SIGCONT tor",
        "replica.logs": "{ssh} journalctl -u tor -o cat --no-pager "
                        "--since=@{since}",
        "replica.running": "{ssh} systemctl is-active --quiet tor",
        "mysql.start": "{ssh} systemctl start mariadb",
        "mysql.stop": "{ssh} systemctl stop mariadb",
        "mysql.kill": "{ssh} systemctl kill --signal=SIGKILL mariadb",
        "redis.start": "{ssh} systemctl start redis-server",
        "redis.stop": "{ssh} systemctl stop redis-server",
        "redis.kill": "{ssh} systemctl kill --signal=SIGKILL redis-server",
        "redis.wipe": "{ssh} sh -c 'systemctl stop redis-server && "
                      "rm -f /var/lib/redis/dump.rdb "
                      "/var/lib/redis/appendonly.aof* && "
                      "rm -rf /var/lib/redis/appendonlydir'",
        "tor": "{ssh} tor",
    },
    "kubernetes": {
        # A deleted pod is made again by its StatefulSet: "start" waits for
        # it.  pause/resume need the chaos overlay (deploy/k8s/chaos/):
        # shareProcessNamespace, so that tor is not the PID 1 that a
        # SIGSTOP from inside the pod cannot reach.
        "replica.start": "kubectl -n {ns} wait --for=condition=Ready "
                         "pod/{name} --timeout=120s",
        "replica.stop": "kubectl -n {ns} delete pod {name} --wait=false",
        "replica.kill": "kubectl -n {ns} delete pod {name} --grace-period=0 "
                        "--force --wait=false",
        "replica.pause": "kubectl -n {ns} exec {name} -c tor -- sh -c "
                         "'for p in /proc/[0-9]*; do [ \"$(cat $p/comm)\" = "
                         "tor ] && kill -STOP ${p#/proc/}; done'",
        "replica.resume": "kubectl -n {ns} exec {name} -c tor -- sh -c "
                          "'for p in /proc/[0-9]*; do [ \"$(cat $p/comm)\" "
                          "= tor ] && kill -CONT ${p#/proc/}; done'",
        "replica.logs": "kubectl -n {ns} logs {name} -c tor --since-time="
                        "{since_iso} --all-containers=false",
        "tor": "kubectl -n {ns} exec {leader_pod} -c tor -- tor",
    },
}


class CommandBackend(Backend):
    """Every action a shell command from the target file (JSON):

      {"backend": "systemd" | "kubernetes" | "commands",
       "group": "...", "brokers": "k1:9092,...", "kafka_props": {...},
       "mysql": {"host", "port", "user", "password", "database"},
       "redis": {"host", "port", "password", "prefix"},
       "outbox": {"table": "shop.outbox",
                  "columns": {"id", "key", "type", "payload"},
                  "routes": {"order": "order", ...}},
       "lease_ms": 3000, "namespace": "tor",
       "replicas": [{"name": "vm-a", "ssh": "ssh root@vm-a"}, ...],
       "hosts": {"mysql": "ssh root@db1", "redis": "...",
                 "brokers": ["ssh root@k1", ...]},
       "tor_config": "/etc/tor/tor.cfg",
       "commands": {"broker.down": "...", ...}}

    "commands" overrides or adds to the preset.  Broker actions have no
    preset: a real cluster's are the operator's to give (broker.down,
    broker.up, broker.pause and broker.resume with {arg} the broker's number
    from 1; broker.controller printing the number of the active
    controller; broker.start bringing every broker up at once; broker.latency
    with {arg} in ms, e.g. through tc netem).  "broker_count" (default 3)
    says how many brokers there are."""

    def __init__(self, target_path, mode="idempotent"):
        with open(target_path) as f:
            t = json.load(f)
        self.target = t
        self.name = t.get("backend", "commands")
        if self.name not in PRESETS and self.name != "commands":
            raise ValueError("%s: backend must be systemd, kubernetes or "
                             "commands, not %r" % (target_path, self.name))
        self.commands = dict(PRESETS.get(self.name, {}))
        self.commands.update(t.get("commands", {}))
        for key in ("group", "brokers", "mysql", "redis", "outbox",
                    "replicas"):
            if key not in t:
                raise ValueError("%s: missing %r" % (target_path, key))
        self.mode = mode
        self.group = t["group"]
        self.brokers = t["brokers"]
        self.kafka_props = t.get("kafka_props", {})
        self.mysql = dict(t["mysql"])
        self.redis = {"host": t["redis"]["host"],
                      "port": int(t["redis"].get("port", 6379)),
                      "password": t["redis"].get("password")}
        self.redis_prefix = t["redis"].get("prefix", "tor")
        ob = t["outbox"]
        self.table = ob["table"]
        # "range": the auto-increment column a run's rows are told apart
        # by, when the event id ("id") is not it (a UUID).
        self.columns = dict({"id": "id", "key": "aggregate_id",
                             "type": "aggregate_type", "payload": "payload"},
                            **ob.get("columns", {}))
        self.routes = dict(ob["routes"])
        self.lease_ms = int(t.get("lease_ms", 3000))
        self.broker_count = int(t.get("broker_count", 3))
        # The deployment's broker is tor's dev broker (DESIGN.md §9).
        self.dev_broker = bool(t.get("dev_broker", False))
        self.ns = t.get("namespace", "default")
        self.hosts = t.get("hosts", {})
        self.tor_config = t.get("tor_config", "/etc/tor/tor.cfg")
        self._replicas = [r if isinstance(r, dict) else {"name": r}
                          for r in t["replicas"]]
        self.since = time.time()
        self.leader_pod = self._replicas[0]["name"]

    def replicas(self):
        return [r["name"] for r in self._replicas]

    def has(self, what):
        return what in self.commands

    def _fmt(self, key, **kw):
        if key not in self.commands:
            raise Unsupported("the target has no %r command" % key)
        values = {"ns": self.ns, "ssh": "", "since": int(self.since),
                  "since_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                             time.gmtime(self.since)),
                  "leader_pod": self.leader_pod, "arg": ""}
        values.update(kw)
        # Only the known placeholders: a command's own braces are shell's.
        cmd = self.commands[key]
        for name, v in values.items():
            cmd = cmd.replace("{%s}" % name, str(v))
        return cmd.strip()

    def _run(self, command, timeout=120, check=True):
        p = subprocess.run(command, shell=True, capture_output=True,
                           text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError("%s: exit %d: %s" % (
                command, p.returncode, (p.stderr or p.stdout).strip()[-400:]))
        return p

    def _replica(self, name):
        for r in self._replicas:
            if r["name"] == name:
                return r
        raise KeyError(name)

    def replica(self, name, action):
        r = self._replica(name)
        self._run(self._fmt("replica." + action, name=name,
                            ssh=r.get("ssh", "")))

    def running(self, name):
        if "replica.running" not in self.commands:
            return None
        r = self._replica(name)
        return self._run(self._fmt("replica.running", name=name,
                                   ssh=r.get("ssh", "")),
                         check=False).returncode == 0

    def service(self, kind, action, arg=None):
        ssh = self.hosts.get(kind, "")
        if kind == "broker" and isinstance(self.hosts.get("brokers"), list) \
                and arg is not None and action in ("down", "up", "pause",
                                                   "resume"):
            ssh = self.hosts["brokers"][int(arg) - 1]
        p = self._run(self._fmt("%s.%s" % (kind, action), ssh=ssh,
                                arg="" if arg is None else arg))
        if (kind, action) == ("broker", "controller"):
            return int(p.stdout.split()[-1])
        return None

    def logs(self, name):
        if "replica.logs" not in self.commands:
            return ""
        r = self._replica(name)
        p = self._run(self._fmt("replica.logs", name=name,
                                ssh=r.get("ssh", "")), check=False)
        return p.stdout

    def tor(self, args, timeout=60):
        ssh = self._replicas[0].get("ssh", "")
        cmd = "%s %s -c %s" % (self._fmt("tor", ssh=ssh),
                               " ".join(shlex.quote(a) for a in args),
                               shlex.quote(self.tor_config))
        return self._run(cmd, timeout=timeout, check=False)
