"""Two MariaDB servers for source failover tests: the stack's own (the
primary) and the optional service mariadb-replica (deploy/local/stack.sh),
which replicates from it by GTID, behind a TCP proxy that tor and the
application both connect to, and that moves to the other server.

    pair = DbPair(stack)            # a fresh replica, a proxy on the primary
    cfg = base_config(stack, mysql={"port": pair.proxy.port})
    ...
    pair.wait_caught_up()
    pair.promote()                  # the replica stops replicating, writable
    pair.switch()                   # the proxy now leads to the replica
    ...
    pair.close()

Beside the planned switchover: kill_primary() (kill -9 of the stack's
MariaDB; close() starts it again), and rejoin() + switch_back(), which
make the old primary a replica of the promoted server and then the
primary again (a failover back).

While the pair is open, stack.sql (and everything built on it) goes
through the proxy: the application follows the failover as tor does.
The replica's port is TOR_MYSQL_REPLICA_PORT (stack.sh's default when
unset: the primary's + 1).
"""

import os
import signal
import time

import pymysql

from proxy import Proxy


class MovableProxy(Proxy):
    def move(self, port, host="127.0.0.1"):
        """New connections go to host:port; the open ones are cut, as a
        server that went away or a VIP that moved would leave them."""
        with self.lock:
            self.target = (host, port)
            conns = list(self.conns)
        for c in conns:
            c.close()


def gtid_seqs(state):
    """{domain: (server_id, seq)} of a MariaDB GTID state "D-S-N,..."."""
    out = {}
    for g in filter(None, (state or "").split(",")):
        d, s, n = (int(x) for x in g.strip().split("-"))
        out[d] = (s, n)
    return out


class DbPair:
    def __init__(self, stack):
        self.stack = stack
        stack._stack_sh("mysql-ctl", ["reset-replica"])
        stack.start("mariadb-replica")
        # The primary past its first binlog file, which is the replica's:
        # the two never name the same file by chance.
        stack.sql("FLUSH BINARY LOGS")
        self.primary_port = stack.mysql_port
        self.replica_port = int(stack.env["TOR_MYSQL_REPLICA_PORT"])
        self.proxy = MovableProxy(self.primary_port).start()
        self.on = "primary"
        stack.env["TOR_MYSQL_PORT"] = str(self.proxy.port)

    def sql(self, port, statement):
        """One statement as root on the server at port (not through the
        proxy); the rows, or the row count."""
        conn = pymysql.connect(host="127.0.0.1", port=port, user="root",
                               password="", autocommit=True,
                               connect_timeout=10, read_timeout=30)
        try:
            with conn.cursor() as cur:
                n = cur.execute(statement)
                return list(cur.fetchall()) if cur.description else n
        finally:
            conn.close()

    def state(self, port):
        """(server_id, gtid_binlog_pos, SHOW MASTER STATUS file, pos)."""
        sid, pos = self.sql(port, "SELECT @@global.server_id, "
                            "@@global.gtid_binlog_pos")[0]
        f, p = self.sql(port, "SHOW MASTER STATUS")[0][:2]
        return int(sid), pos, f, int(p)

    def wait_caught_up(self, timeout=30):
        """Until the replica has applied everything the primary logged."""
        want = self.sql(self.primary_port,
                        "SELECT @@global.gtid_binlog_pos")[0][0]
        deadline = time.monotonic() + timeout
        while True:
            have = self.sql(self.replica_port,
                            "SELECT @@global.gtid_slave_pos")[0][0]
            if gtid_seqs(have) == gtid_seqs(want):
                return want
            assert time.monotonic() < deadline, \
                "replica at %s, primary at %s after %ss" % (have, want,
                                                            timeout)
            time.sleep(0.1)

    def hold_back(self):
        """The replica stops applying: what the primary writes next never
        reaches it."""
        self.sql(self.replica_port, "STOP SLAVE")

    def promote(self):
        self.stack._stack_sh("mysql-ctl", ["promote"])

    def switch(self):
        """The proxy leads to the other server from now on."""
        if self.on == "primary":
            self.proxy.move(self.replica_port)
            self.on = "replica"
        else:
            self.proxy.move(self.primary_port)
            self.on = "primary"

    def port(self):
        """The port of the server the proxy leads to."""
        return self.replica_port if self.on == "replica" else \
            self.primary_port

    def switchover(self):
        """A planned switchover: the primary goes read-only (the
        application's writes fail there), the replica catches up, is
        promoted, and the proxy moves to it.  The GTID both are at."""
        self.sql(self.primary_port, "SET GLOBAL read_only = 1")
        at = self.wait_caught_up()
        self.promote()
        self.switch()
        return at

    def kill_primary(self):
        """kill -9 of the primary's mariadbd (the stack's MariaDB)."""
        pid_file = os.path.join(self.stack.run_dir, "mariadb", "mysqld.pid")
        with open(pid_file) as f:
            pid = int(f.read().strip())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        self.killed = True

    def wait_applied(self, timeout=30):
        """Until the replica has applied everything it received (its
        primary gone): its SQL thread idle on an empty relay log."""
        deadline = time.monotonic() + timeout
        while True:
            conn = pymysql.connect(host="127.0.0.1", port=self.replica_port,
                                   user="root", password="",
                                   autocommit=True, connect_timeout=10,
                                   cursorclass=pymysql.cursors.DictCursor)
            try:
                with conn.cursor() as cur:
                    cur.execute("SHOW SLAVE STATUS")
                    st = cur.fetchone() or {}
            finally:
                conn.close()
            if st.get("Read_Master_Log_Pos") == \
                    st.get("Exec_Master_Log_Pos") and \
                    st.get("Master_Log_File") == \
                    st.get("Relay_Master_Log_File"):
                return self.sql(self.replica_port,
                                "SELECT @@global.gtid_binlog_pos")[0][0]
            assert time.monotonic() < deadline, st
            time.sleep(0.1)

    def rejoin(self):
        """The old primary (the proxy on the promoted replica) becomes its
        replica by GTID, read-only."""
        assert self.on == "replica"
        self.sql(self.primary_port, "SET GLOBAL read_only = 1")
        self.sql(self.primary_port,
                 "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%d, "
                 "MASTER_USER='tor', MASTER_PASSWORD='tor', "
                 "MASTER_USE_GTID=current_pos, MASTER_CONNECT_RETRY=1"
                 % self.replica_port)
        self.sql(self.primary_port, "START SLAVE")

    def switch_back(self):
        """A planned switchover back to the rejoined old primary: the
        promoted server goes read-only, the old primary catches up, stops
        replicating, becomes writable, and the proxy moves to it."""
        self.sql(self.replica_port, "SET GLOBAL read_only = 1")
        want = self.sql(self.replica_port,
                        "SELECT @@global.gtid_binlog_pos")[0][0]
        deadline = time.monotonic() + 30
        while gtid_seqs(self.sql(self.primary_port,
                                 "SELECT @@global.gtid_slave_pos")[0][0]) \
                != gtid_seqs(want):
            assert time.monotonic() < deadline, "old primary not caught up"
            time.sleep(0.1)
        self.sql(self.primary_port, "STOP SLAVE")
        self.sql(self.primary_port, "RESET SLAVE ALL")
        self.sql(self.primary_port, "SET GLOBAL read_only = 0")
        self.switch()
        return want

    def close(self):
        self.proxy.stop()
        self.stack.env["TOR_MYSQL_PORT"] = str(self.primary_port)
        if getattr(self, "killed", False):
            self.stack.start("mariadb")
            self.stack.env["TOR_MYSQL_PORT"] = str(self.primary_port)
        for st in ("STOP SLAVE", "RESET SLAVE ALL"):
            try:
                self.sql(self.primary_port, st)
            except pymysql.err.MySQLError:
                pass            # never a replica
        self.sql(self.primary_port, "SET GLOBAL read_only = 0")
        self.stack._stack_sh("mysql-ctl", ["reset-replica"])
        self.stack.reload_env()
