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

Rules for any protocol: delay_replies adds a latency to everything the
server sends, the same for every read or drawn per read within a jitter
(order kept, as a slow link would); blackhole forwards nothing
either way and closes nothing (a link that drops every packet: the peers
time out); refuse closes connections (the service looks down).

Two protocols are recognised, just enough to aim a rule:
  - MySQL: a connection becomes a *dump* connection when the client sends
    COM_BINLOG_DUMP (0x12) or COM_BINLOG_DUMP_GTID (0x1e); byte counts of
    cut_dump/stall_dump start there.
  - Redis: a request that runs the lease's acquire script (it sets the
    lease to 'pending') is an *acquire*; hold_acquire_win delays the reply
    when the reply is a token (the acquire won).

Binlog events on a dump connection can be rewritten (rewrite_event): the
server's stream is split into protocol packets (3-byte length, sequence
id), and each packet that is one binlog event (OK byte 0x00, then the
event: a 19-byte header of timestamp, type, server_id, event_size, log_pos
and flags, the body, and a CRC32 of the rest when checksums are on) is
offered to the rule, which may hand back other bytes: a flipped byte with
the old CRC (a bad checksum), a changed header or body with the CRC
recomputed (crc32 helper: only the content is wrong), a shorter event.  A
packet of 16 MB or more (a length of 0xffffff and its continuations) is
passed on untouched, as are error, EOF and heartbeat packets.

    p.rewrite_event(match_event(types=(WRITE_ROWS,), contains=b"marker"),
                    lambda ev: crc32(set_header(ev, type=200)))
    p.rewrites   # [{"conn", "type", "start", "log_pos", "size"}] done
"""

import collections
import random
import socket
import struct
import threading
import time
import zlib

COM_BINLOG_DUMP = 0x12
COM_BINLOG_DUMP_GTID = 0x1e

# Binlog event types the tests aim at (the byte at offset 4 of an event).
QUERY = 2
ROTATE = 4
FORMAT_DESCRIPTION = 15
XID = 16
TABLE_MAP = 19
WRITE_ROWS_V1 = 23              # MariaDB writes v1 rows events
HEARTBEAT = 27
WRITE_ROWS = 30
MARIADB_GTID = 162
LOG_EVENT_IGNORABLE_F = 0x80
EVENT_HEADER_LEN = 19
MAX_PACKET = 0xffffff


def event_header(ev):
    """(timestamp, type, server_id, event_size, log_pos, flags) of an
    event's bytes."""
    return struct.unpack_from("<IBIIIH", ev, 0)


def set_header(ev, type=None, size=None, log_pos=None, flags=None):
    """The event with header fields replaced (the CRC is left as it was:
    pass the result to crc32() to make it match again)."""
    ts, t, sid, sz, pos, fl = event_header(ev)
    head = struct.pack("<IBIIIH", ts,
                       t if type is None else type, sid,
                       sz if size is None else size,
                       pos if log_pos is None else log_pos,
                       fl if flags is None else flags)
    return head + ev[EVENT_HEADER_LEN:]


def crc32(ev):
    """The event with its last 4 bytes replaced by the CRC32 of the rest,
    as a server computes it: only the content is wrong, not the checksum."""
    return ev[:-4] + struct.pack("<I", zlib.crc32(ev[:-4]) & 0xffffffff)


def match_event(types=None, contains=None):
    """A matcher for rewrite_event: an event of one of `types` (None: any)
    whose bytes contain `contains` (None: any)."""
    def match(ev):
        if types is not None and ev[4] not in types:
            return False
        return contains is None or contains in ev
    return match


class EventRule:
    """Rewrites the first `per_connection` events that match on each dump
    connection it applies to: the next `connections` ones (None: all)."""

    def __init__(self, match, rewrite, connections=None, per_connection=1):
        self.match = match
        self.rewrite = rewrite
        self.connections = connections
        self.per_connection = per_connection


class _Framer:
    """Splits a server's byte stream into MySQL packets."""

    def __init__(self):
        self.buf = b""
        self.continued = False     # the next packet continues a 16 MB one

    def feed(self, data):
        """[(header bytes, payload, is_continuation)] of the whole packets
        now in the buffer."""
        self.buf += data
        out = []
        while len(self.buf) >= 4:
            n = int.from_bytes(self.buf[:3], "little")
            if len(self.buf) < 4 + n:
                break
            head, payload = self.buf[:4], self.buf[4:4 + n]
            self.buf = self.buf[4 + n:]
            out.append((head, payload, self.continued))
            self.continued = n == MAX_PACKET
        return out


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
        self.event_rules = []         # [[EventRule, rewrites left]]
        self.framer = None            # set when event rules apply
        self.lock = threading.Lock()
        self.late = collections.deque()   # (due, bytes) for delay_replies
        self.late_ready = threading.Condition(self.lock)
        self.late_sender = None
        self.last_due = 0.0           # order kept under jitter

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
    def __init__(self, target_port, target_host="127.0.0.1", port=0):
        """A proxy to target_host:target_port listening on 127.0.0.1:port
        (0: a free port, in self.port)."""
        self.target = (target_host, target_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.conns = []
        self.dump_rules = []          # consumed by dump connections in order
        self.dumps_seen = 0
        self.cuts = []                # (conn index, dump bytes) of each cut
        self.event_rules = []         # EventRule, for dump connections
        self.rewrites = []            # what the event rules changed
        self.acquire_hold = None      # seconds, for the next winning acquire
        self.acquire_held = threading.Event()
        self.refusing = False
        self.reply_delay = 0.0
        self.reply_jitter = 0.0
        self.rng = random.Random(target_port)
        self.holes = threading.Event()    # set: blackhole, nothing passes
        self.holes_open = threading.Event()
        self.holes_open.set()
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

    def rewrite_event(self, match, rewrite, connections=None,
                      per_connection=1):
        """On dump connections (the next `connections` ones, None: every
        one, as a binlog corrupted on the server would be), the first
        `per_connection` events for which match(event bytes) is true are
        replaced by rewrite(event bytes).  Each rewrite is noted in
        self.rewrites with the original header's type, start (log_pos less
        event_size), log_pos and size."""
        with self.lock:
            self.event_rules.append(EventRule(match, rewrite, connections,
                                              per_connection))

    def rewritten(self):
        with self.lock:
            return list(self.rewrites)

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

    def delay_replies(self, seconds, jitter=0.0):
        """From now on, what the server sends reaches the client `seconds`
        later (0: at once again), each read of it `seconds` +- a uniform
        draw within `jitter`; order is kept (a read never overtakes the
        one before it), throughput is not limited."""
        with self.lock:
            self.reply_delay = float(seconds)
            self.reply_jitter = min(float(jitter), float(seconds))

    def blackhole(self, on=True):
        """While on, nothing is forwarded either way and nothing is closed:
        the peers see a link that drops every packet, until their own
        timeouts.  What was held is forwarded when it ends."""
        if on:
            self.holes_open.clear()
        else:
            self.holes_open.set()

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
        # shutdown first: close alone leaves the socket listening while
        # the accept thread sits in accept().
        for f in (lambda: self.listener.shutdown(socket.SHUT_RDWR),
                  self.listener.close):
            try:
                f()
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
                self.holes_open.wait()
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
                for r in self.event_rules:
                    if r.connections is None or r.connections > 0:
                        conn.event_rules.append([r, r.per_connection])
                        if r.connections is not None:
                            r.connections -= 1
                if conn.event_rules:
                    conn.framer = _Framer()
        if data.startswith(b"*") and b"'pending'" in data:
            conn.acquire_pending = True

    # -- server -> client --

    def _pump_server(self, conn):
        try:
            while True:
                data = conn.server.recv(65536)
                if not data:
                    break
                self.holes_open.wait()
                with self.lock:
                    delay = self.reply_delay
                    if self.reply_jitter > 0:
                        delay += self.rng.uniform(-self.reply_jitter,
                                                  self.reply_jitter)
                if delay > 0 or conn.late_sender is not None:
                    self._send_late(conn, data, delay)
                    continue
                if not self._forward_reply(conn, data):
                    break
        except OSError:
            pass
        if conn.late_sender is not None:
            with conn.lock:
                conn.late.append((0, None))
                conn.late_ready.notify()
            return          # the sender closes once the queue is drained
        conn.close()

    def _send_late(self, conn, data, delay):
        """Queues data to be forwarded at now + delay by the connection's
        own sender thread (started at the first delayed reply; later
        replies queue behind it even once the delay is 0, to keep
        order)."""
        with conn.lock:
            conn.last_due = max(conn.last_due, time.monotonic() + delay)
            conn.late.append((conn.last_due, data))
            conn.late_ready.notify()
            if conn.late_sender is None:
                conn.late_sender = threading.Thread(
                    target=self._late_sender, args=(conn,), daemon=True)
                conn.late_sender.start()

    def _late_sender(self, conn):
        try:
            while True:
                with conn.lock:
                    while not conn.late:
                        conn.late_ready.wait()
                    due, data = conn.late.popleft()
                if data is None:
                    break
                left = due - time.monotonic()
                if left > 0:
                    time.sleep(left)
                if not self._forward_reply(conn, data):
                    return
        except OSError:
            pass
        conn.close()

    def _rewrite_events(self, conn, data):
        """The whole packets in data (and what came before it), with the
        event rules applied; a packet's tail waits for the next call."""
        out = []
        for head, payload, continued in conn.framer.feed(data):
            if (not continued and len(payload) < MAX_PACKET and
                    len(payload) >= 1 + EVENT_HEADER_LEN and
                    payload[0] == 0 and payload[5] != HEARTBEAT):
                payload = self._rewrite_one(conn, payload)
                head = len(payload).to_bytes(3, "little") + head[3:4]
            out.append(head + payload)
        return b"".join(out)

    def _rewrite_one(self, conn, payload):
        ev = payload[1:]
        for entry in conn.event_rules:
            rule, left = entry
            if left <= 0 or not rule.match(ev):
                continue
            entry[1] -= 1
            _, t, _, size, pos, _ = event_header(ev)
            with self.lock:
                self.rewrites.append({"conn": conn.index, "type": t,
                                      "start": pos - size, "log_pos": pos,
                                      "size": size})
            return payload[:1] + rule.rewrite(ev)
        return payload

    def _forward_reply(self, conn, data):
        """Forwards data to the client, applying the rules; False when the
        connection was cut."""
        if conn.dump and conn.framer is not None:
            data = self._rewrite_events(conn, data)
            if not data:
                return True
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
