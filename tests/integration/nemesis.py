"""A nemesis for the integration tests: tor replicas on hosts of their own
whose links to the services (MariaDB, Redis, a Sentinel, a Kafka node) a
test cuts and heals, one link and one direction at a time.

    nem = Nemesis(stack)
    r1 = nem.host("r1")                  # a network namespace
    t = HostTor(stack, cfg, r1).start()  # tor runs inside it
    nem.cut(r1, "redis")                 # both directions, packets dropped
    nem.cut(r1, "kafka", direction="from", mode="reject")
    nem.cut(r1, "mysql", loss=5)         # 5 % of the packets dropped
    nem.heal(r1, "redis")                # or nem.heal() for every link
    nem.remove()                         # the runner does it after a test

How replicas are separated.  Each host is a network namespace
(tor_nemesis_<run>_<host>) joined to the machine's own namespace by a veth
pair with a /30 of 10.217.0.0/16 that no route leads off the machine.  The
services listen on 127.0.0.1 and Kafka advertises 127.0.0.1 addresses, so
the host keeps talking to 127.0.0.1: inside the namespace every TCP
connection to 127.0.0.1 is sent to the machine's end of the veth (DNAT, and
masquerade to the host's address); there it is translated back to
127.0.0.1 both ways (DNAT, and SNAT so that the services see a client at
127.0.0.1, as their grants expect).  route_localnet on the two veth ends
lets 127.0.0.1 cross them.  So a replica's whole traffic with a service
crosses one interface, in two directions the machine's firewall tells
apart:

    to    (host -> service)  the input hook, iifname <veth>, tcp dport P
    from  (service -> host)  the output hook, ip daddr <host>, tcp sport P

A cut drops the packets (the peers time out), or rejects them with a TCP
reset (the sender sees the connection reset), or drops a share of them at
random (nft numgen).  A cut of one direction leaves the other working: a
leader cut "from" Redis still sends its renews, Redis executes them, and
the leader hears nothing.  Latency is not here (no netem in this kernel):
harness.KafkaProxy and proxy.Proxy give it in user space.

Everything lives in one nft table, inet tor_nemesis_<run> (run: a hash of
the run directory, so shards and concurrent runs do not meet; a /24 is
chosen, and its first address taken, under a lock of the machine), the
namespaces and their veths; remove() deletes them all, and leftovers()
lists what remains of a run, for the runner's check at its end.
"""

import contextlib
import fcntl
import hashlib
import ipaddress
import os
import signal
import subprocess
import time

import harness

PREFIX = "tor_nemesis_"
SUBNET = ipaddress.ip_network("10.217.0.0/16")
# Held from choosing a free /24 until its address is on a veth: two runs
# starting at once would otherwise both find the same /24 free.
LOCK = "/tmp/tor_nemesis.lock"

DIRECTIONS = ("to", "from", "both")
MODES = ("drop", "reject")

_live = []          # Nemesis objects of the running test


class NemesisError(RuntimeError):
    pass


def run_id(run_dir=None):
    """Six hex digits naming the run's table, namespaces and veths."""
    d = os.path.realpath(run_dir or harness.default_run_dir())
    return hashlib.sha1(d.encode()).hexdigest()[:6]


def _run(cmd, input=None, check=True):
    p = subprocess.run(cmd, input=input, capture_output=True, text=True,
                       timeout=30)
    if check and p.returncode != 0:
        raise NemesisError("%s: exit %d: %s%s" % (
            " ".join(cmd), p.returncode, p.stderr.strip(),
            ("\n" + input) if input else ""))
    return p


def nft(script, netns=None):
    cmd = ["nft", "-f", "-"]
    if netns:
        cmd = ["ip", "netns", "exec", netns] + cmd
    return _run(cmd, input=script)


class Host:
    """A replica's host: its namespace, veth pair and addresses."""

    def __init__(self, name, index, netns, veth, addr, gateway):
        self.name, self.index = name, index
        self.netns, self.veth = netns, veth      # veth: the machine's end
        self.addr, self.gateway = addr, gateway

    def __repr__(self):
        return "Host(%s, %s, %s)" % (self.name, self.netns, self.addr)

    def wrap(self, argv):
        """argv run inside the host (ip netns exec keeps the pid)."""
        return ["ip", "netns", "exec", self.netns] + list(argv)

    def run(self, argv, **kw):
        return subprocess.run(self.wrap(argv), **kw)


class HostTor(harness.Tor):
    """A harness.Tor that runs inside a Host."""

    def __init__(self, stack, cfg, host, **kw):
        kw.setdefault("name", host.name)
        super().__init__(stack, cfg, **kw)
        self.host = host

    def command(self):
        return self.host.wrap(super().command())


class Nemesis:
    """Hosts and the cuts between them and the services (module doc)."""

    def __init__(self, stack=None, run_dir=None):
        self.stack = stack
        self.run = run_id(run_dir or (stack.run_dir if stack else None))
        self.table = PREFIX + self.run
        self.hosts = {}
        self.cuts = {}          # (host name, ports, direction) -> rule tail
        self._net = None
        if any(n.run == self.run for n in _live):
            raise NemesisError("a nemesis of run %s is live already" %
                               self.run)
        remove_run(self.run)     # what a killed run may have left
        _live.append(self)
        self._make_table()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()

    # -- services --

    def ports(self, service):
        """The TCP ports of a service: an int, a list of ints, or a name:
        mysql, redis, kafka (every node of the test's Kafka), kafka1..3 (one
        node), sentinel1..n (TOR_SENTINEL_NODES of the stack's env)."""
        if isinstance(service, int):
            return (service,)
        if isinstance(service, (list, tuple)):
            return tuple(int(p) for p in service)
        s = self.stack
        if service == "mysql":
            return (s.mysql_port,)
        if service == "redis":
            return (s.redis_port,)
        if service.startswith("kafka"):
            ports = tuple(int(b.rsplit(":", 1)[1])
                          for b in s.brokers.split(","))
            if service == "kafka":
                return ports
            return (ports[int(service[5:]) - 1],)
        if service.startswith("sentinel"):
            nodes = s.reload_env().get("TOR_SENTINEL_NODES", "").split(",")
            return (int(nodes[int(service[8:]) - 1].rsplit(":", 1)[1]),)
        raise NemesisError("unknown service %r" % (service,))

    # -- hosts --

    def _make_table(self):
        # NAT chains at all four hooks: the reverse translation of a
        # connection happens at the hook of the other direction, and needs
        # a nat chain registered there.  The cut chains are filled by
        # _apply.
        nft("""
table inet %(t)s {
  chain nat_pre { type nat hook prerouting priority -100; }
  chain nat_in { type nat hook input priority 100; }
  chain nat_out { type nat hook output priority -100; }
  chain nat_post { type nat hook postrouting priority 100; }
  chain cut_to { type filter hook input priority 0; }
  chain cut_from { type filter hook output priority 0; }
}
""" % {"t": self.table})

    def _subnet(self):
        """A /24 of SUBNET no interface of the machine uses yet."""
        if self._net is None:
            used = _run(["ip", "-4", "-o", "addr"]).stdout
            seed = int(self.run, 16)
            for i in range(256):
                net = list(SUBNET.subnets(new_prefix=24))[(seed + i) % 256]
                if str(net.network_address)[:-1] not in used:
                    self._net = net
                    break
            else:
                raise NemesisError("no free /24 in %s" % SUBNET)
        return self._net

    def host(self, name):
        """Makes (once) and returns the Host `name` (letters, digits, _)."""
        if name in self.hosts:
            return self.hosts[name]
        with _machine_lock():
            return self._make_host(name)

    def _make_host(self, name):
        k = len(self.hosts)
        net = list(self._subnet().subnets(new_prefix=30))[k]
        gw, addr = str(net[1]), str(net[2])
        netns = "%s%s_%s" % (PREFIX, self.run, name)
        veth = "tn%s%02dh" % (self.run, k)
        peer = "tn%s%02dr" % (self.run, k)
        h = Host(name, k, netns, veth, addr, gw)
        self.hosts[name] = h
        _run(["ip", "netns", "add", netns])
        _run(["ip", "link", "add", veth, "type", "veth", "peer", "name",
              peer])
        _run(["ip", "link", "set", peer, "netns", netns])
        _run(["ip", "addr", "add", gw + "/30", "dev", veth])
        _run(["sysctl", "-qw", "net.ipv4.conf.%s.route_localnet=1" % veth])
        _run(["ip", "link", "set", veth, "up"])
        ns = ["ip", "-n", netns]
        _run(ns + ["addr", "add", addr + "/30", "dev", peer])
        _run(ns + ["link", "set", peer, "up"])
        _run(ns + ["link", "set", "lo", "up"])
        _run(ns + ["route", "add", "default", "via", gw])
        _run(h.wrap(["sysctl", "-qw",
                     "net.ipv4.conf.all.route_localnet=1"]))
        nft("""
table ip %(t)s {
  chain out { type nat hook output priority -100;
    ip daddr 127.0.0.1 meta l4proto tcp dnat to %(gw)s; }
  chain post { type nat hook postrouting priority 100;
    oifname "%(peer)s" masquerade; }
}
""" % {"t": self.table, "gw": gw, "peer": peer}, netns=netns)
        nft("""
add rule inet %(t)s nat_pre iifname "%(v)s" ip daddr %(gw)s dnat ip to 127.0.0.1
add rule inet %(t)s nat_in iifname "%(v)s" snat ip to 127.0.0.1
""" % {"t": self.table, "v": veth, "gw": gw})
        return h

    # -- cuts --

    def cut(self, host, service, direction="both", mode="drop", loss=None):
        """Cuts the link between host and service in `direction` (to: what
        the host sends, from: what it receives, both); mode drop or reject,
        or with loss (a percentage) drops that share of the packets.  A
        second cut of the same link and direction replaces the first."""
        if direction not in DIRECTIONS:
            raise NemesisError("direction %r not in %s" % (direction,
                                                           DIRECTIONS))
        if mode not in MODES:
            raise NemesisError("mode %r not in %s" % (mode, MODES))
        ports = self.ports(service)
        if loss is not None and not 0 < loss <= 100:
            raise NemesisError("loss %r not in (0, 100]" % (loss,))
        if loss is not None and loss < 100:
            verdict = "numgen random mod 100 < %d drop" % int(loss)
        elif mode == "reject" and loss is None:
            verdict = "reject with tcp reset"
        else:
            verdict = "drop"
        dirs = ("to", "from") if direction == "both" else (direction,)
        for d in dirs:
            self.cuts[(host.name, ports, d)] = verdict
        self._apply()

    def heal(self, host=None, service=None, direction="both"):
        """Heals the cuts of host (default every host) to service (default
        every service) in direction."""
        ports = self.ports(service) if service is not None else None
        dirs = ("to", "from") if direction == "both" else (direction,)
        for key in list(self.cuts):
            h, p, d = key
            if host is not None and h != host.name:
                continue
            if ports is not None and p != ports:
                continue
            if d in dirs:
                del self.cuts[key]
        self._apply()

    def _apply(self):
        """Rewrites both cut chains in one nft transaction."""
        lines = ["flush chain inet %s cut_to" % self.table,
                 "flush chain inet %s cut_from" % self.table]
        for (hname, ports, d), verdict in sorted(self.cuts.items()):
            h = self.hosts[hname]
            pset = "{ %s }" % ", ".join(str(p) for p in ports)
            if d == "to":
                lines.append('add rule inet %s cut_to iifname "%s" tcp '
                             'dport %s %s' % (self.table, h.veth, pset,
                                              verdict))
            else:
                lines.append('add rule inet %s cut_from ip daddr %s tcp '
                             'sport %s %s' % (self.table, h.addr, pset,
                                              verdict))
        nft("\n".join(lines) + "\n")

    def rules(self):
        """The table as nft lists it (for a failing test's message)."""
        return _run(["nft", "list", "table", "inet", self.table],
                    check=False).stdout

    # -- the end --

    def remove(self):
        """Deletes this nemesis's table, namespaces and veths; processes
        still inside a namespace (tors the runner has not killed yet) are
        killed first, by pid, or the namespace would outlive its name."""
        if self in _live:
            _live.remove(self)
        remove_run(self.run)
        self.hosts.clear()
        self.cuts.clear()


@contextlib.contextmanager
def _machine_lock():
    with open(LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def leftovers(run=None):
    """[description] of every nft table, namespace and veth of the run
    (every run, with run=None) that still exists."""
    prefix = PREFIX + (run or "")
    out = []
    tables = _run(["nft", "list", "tables"], check=False).stdout
    for line in tables.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].startswith(prefix):
            out.append("nft table %s %s" % (parts[1], parts[2]))
    for line in _run(["ip", "netns", "list"], check=False).stdout.splitlines():
        if line.split() and line.split()[0].startswith(prefix):
            out.append("netns %s" % line.split()[0])
    vprefix = "tn" + (run or "")
    for line in _run(["ip", "-o", "link"], check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(vprefix) and name[-1] in "hr" and \
                len(name) == 11:
            out.append("veth %s" % name)
    return out


def remove_run(run):
    """Removes whatever the nemesis of run `run` left: its table, its
    namespaces (killing the processes in them by pid) and veths."""
    errors = []
    _run(["nft", "delete", "table", "inet", PREFIX + run], check=False)
    names = _run(["ip", "netns", "list"], check=False).stdout.splitlines()
    for line in names:
        ns = line.split()[0] if line.split() else ""
        if not ns.startswith(PREFIX + run):
            continue
        pids = _run(["ip", "netns", "pids", ns], check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        deadline = time.monotonic() + 5
        while _run(["ip", "netns", "pids", ns], check=False).stdout.split() \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        p = _run(["ip", "netns", "del", ns], check=False)
        if p.returncode:
            errors.append(p.stderr.strip())
    # The machine's end of a veth goes with its peer's namespace; one whose
    # namespace was never made goes here.
    for item in leftovers(run):
        if item.startswith("veth ") and item.endswith("h"):
            _run(["ip", "link", "del", item.split()[1]], check=False)
    if errors:
        raise NemesisError("; ".join(errors))


def remove_all():
    """Called by the runner after each test: every live nemesis goes."""
    while _live:
        _live[-1].remove()
