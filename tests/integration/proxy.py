"""A TCP proxy between tor and one of its services, for fault injection.

    p = Proxy(stack.mysql_port).start()
    cfg = base_config(stack, mysql={"port": p.port})
    p.cut_dump(after=20000)          # the next binlog dump connection breaks
                                     # after 20,000 bytes from the server
    ...
    p.stop()

Everything the proxy does happens on real sockets: tor sees a peer that
closes a connection, answers late or stalls, exactly as it would see a
network or a server do it.  Rules are consumed in order, one per connection
they apply to, so a test can script "cut the first dump connection at N
bytes, the second at M, leave the third alone".

Two protocols are recognised, just enough to aim a rule:
  - MySQL: a connection becomes a *dump* connection when the client sends
    COM_BINLOG_DUMP (0x12) or COM_BINLOG_DUMP_GTID (0x1e); byte counts of
    cut_dump/stall_dump start there.
  - Redis: a request that runs the lease's acquire script (it sets the
    lease to 'pending') is an *acquire*; hold_acquire_win delays the reply
    when the reply is a token (the acquire won).
"""

import socket
import threading
import time

COM_BINLOG_DUMP = 0x12
COM_BINLOG_DUMP_GTID = 0x1e


class _Conn:
    def __init__(self, proxy, index, client, server):
        self.proxy = proxy
        self.index = index
        self.client = client
        self.server = server
        self.closed = False
        self.dump = False             # MySQL: a binlog dump was asked for
        self.dump_rule = None         # ("cut", n) or ("stall", secs)
        self.dump_bytes = 0           # server bytes since the dump started
        self.acquire_pending = False  # Redis: the last request was acquire
        self.lock = threading.Lock()

    def close(self):
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for s in (self.client, self.server):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


class Proxy:
    def __init__(self, target_port, target_host="127.0.0.1"):
        self.target = (target_host, target_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.conns = []
        self.dump_rules = []          # consumed by dump connections in order
        self.dumps_seen = 0
        self.cuts = []                # (conn index, dump bytes) of each cut
        self.acquire_hold = None      # seconds, for the next winning acquire
        self.acquire_held = threading.Event()
        self.refusing = False
        self.running = False
        self.thread = None

    # -- rules --

    def cut_dump(self, after):
        """The next dump connection without a rule is closed (both ways)
        once `after` bytes of the server's binlog stream passed."""
        with self.lock:
            self.dump_rules.append(("cut", after))

    def stall_dump(self, seconds):
        """The next dump connection without a rule forwards nothing from
        the server for `seconds` after the dump starts."""
        with self.lock:
            self.dump_rules.append(("stall", seconds))

    def hold_acquire_win(self, seconds):
        """The next acquire that wins the lease gets its reply `seconds`
        late (the lease is taken in Redis at once); acquire_held is set
        when the reply is being held."""
        with self.lock:
            self.acquire_hold = seconds
            self.acquire_held.clear()

    def refuse(self, on=True):
        """While on, new connections are closed at once and open ones are
        cut: the service looks down."""
        with self.lock:
            self.refusing = on
            conns = list(self.conns) if on else []
        for c in conns:
            c.close()

    def dump_connections(self):
        with self.lock:
            return self.dumps_seen

    # -- lifecycle --

    def start(self):
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.running = False
        try:
            self.listener.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            c.close()

    def _accept(self):
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                refusing = self.refusing
            if refusing:
                client.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                conn = _Conn(self, len(self.conns), client, server)
                self.conns.append(conn)
            threading.Thread(target=self._pump_client, args=(conn,),
                             daemon=True).start()
            threading.Thread(target=self._pump_server, args=(conn,),
                             daemon=True).start()

    # -- client -> server --

    def _pump_client(self, conn):
        try:
            while True:
                data = conn.client.recv(65536)
                if not data:
                    break
                self._look_at_request(conn, data)
                conn.server.sendall(data)
        except OSError:
            pass
        conn.close()

    def _look_at_request(self, conn, data):
        # A MySQL command packet: 3-byte length, sequence 0, command byte.
        if (not conn.dump and len(data) >= 5 and data[3] == 0 and
                data[4] in (COM_BINLOG_DUMP, COM_BINLOG_DUMP_GTID)):
            with self.lock:
                conn.dump = True
                self.dumps_seen += 1
                if self.dump_rules:
                    conn.dump_rule = self.dump_rules.pop(0)
                    if conn.dump_rule[0] == "stall":
                        conn.dump_rule = ("stall",
                                          time.monotonic() +
                                          conn.dump_rule[1])
        if data.startswith(b"*") and b"'pending'" in data:
            conn.acquire_pending = True

    # -- server -> client --

    def _pump_server(self, conn):
        try:
            while True:
                data = conn.server.recv(65536)
                if not data:
                    break
                if not self._forward_reply(conn, data):
                    break
        except OSError:
            pass
        conn.close()

    def _forward_reply(self, conn, data):
        """Forwards data to the client, applying the rules; False when the
        connection was cut."""
        if conn.acquire_pending:
            conn.acquire_pending = False
            won = data.startswith(b"$") and not data.startswith(b"$-1")
            with self.lock:
                hold = self.acquire_hold if won else None
                if hold is not None:
                    self.acquire_hold = None
            if hold is not None:
                self.acquire_held.set()
                time.sleep(hold)
        rule = conn.dump_rule if conn.dump else None
        if rule is not None and rule[0] == "stall":
            left = rule[1] - time.monotonic()
            if left > 0:
                time.sleep(left)
            conn.dump_rule = None
        elif rule is not None and rule[0] == "cut":
            room = rule[1] - conn.dump_bytes
            if len(data) >= room:
                conn.client.sendall(data[:max(room, 0)])
                conn.dump_bytes += max(room, 0)
                with self.lock:
                    self.cuts.append((conn.index, conn.dump_bytes))
                conn.close()
                return False
        conn.client.sendall(data)
        if conn.dump:
            conn.dump_bytes += len(data)
        return True
