"""Redis over TLS (DESIGN.md §3 Transport, §6 redis.tls): tor against a
real TLS-only redis-server (`port 0`, `tls-port`), with certificates this
module makes with the openssl command: a CA, a server certificate for
127.0.0.1 and localhost, one that expired yesterday, one for another host
name, a client certificate for mutual TLS, and a second CA that signed
none of them.

Shown: relaying and kill -9 failover between two replicas over mutual TLS
(the lease, the fast takeover and the checkpoint all in the TLS Redis),
`tor status` and `tor checkpoint show` over TLS; a wrong CA, an expired
certificate, a wrong host name and a missing client certificate each
refused with a message naming the cause; clear text to a TLS port and TLS
to a clear port failing within the timeout with a message that says so.

The TLS servers listen on TOR_REDIS_TLS_PORT and the ports after it (free
ports when unset); each test stops the servers it started.
"""

import os
import re
import signal
import socket
import subprocess
import time

import redis as redis_lib

import harness
from harness import Tor
from test_ha import (HA, LOST, Feeder, assert_none_lost, check_tokens_grow,
                     epoch_of, first_appearances, leader_now, log_lines,
                     n_of, read_all_events, stop_all, wait_leading)
from test_relay import check_per_key_order, insert_range, make_outbox

LEASE_MS = HA["lease_ms"]
TIMEOUT_MS = 500        # redis.timeout_ms in these tests


# ---------------------------------------------------------------------------
# certificates and servers

def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True,
                   stdin=subprocess.DEVNULL, capture_output=True)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
            name + ".key", "-out", name + ".pem", "-days", "30", "-subj",
            "/CN=" + name, cwd=d)


def make_cert(d, name, ca, cn, san=None, days=30):
    """name.pem/name.key signed by ca; days < 0 gives one that expired."""
    openssl("req", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
            name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn,
            cwd=d)
    args = ["x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem",
            "-CAkey", ca + ".key", "-CAcreateserial", "-out", name + ".pem",
            "-days", str(days)]
    if san:
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write("subjectAltName=%s\n" % san)
        args += ["-extfile", name + ".ext"]
    openssl(*args, cwd=d)


_certs = {}


def certs(stack):
    """The directory with every certificate of this module (made once)."""
    if "dir" not in _certs:
        d = os.path.join(harness._work_dir(stack), "redis-tls-certs")
        os.makedirs(d, exist_ok=True)
        make_ca(d, "ca")
        make_ca(d, "other-ca")
        local = "DNS:localhost,IP:127.0.0.1"
        make_cert(d, "server", "ca", "localhost", local)
        make_cert(d, "expired", "ca", "localhost", local, days=-1)
        make_cert(d, "wronghost", "ca", "redis.example",
                  "DNS:redis.example")
        make_cert(d, "client", "ca", "tor")
        make_cert(d, "stranger", "other-ca", "tor")
        _certs["dir"] = d
    return _certs["dir"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_next_port = [0]


def tls_port():
    """The next port of TOR_REDIS_TLS_PORT's range, or a free one."""
    base = int(os.environ.get("TOR_REDIS_TLS_PORT", "0"))
    if not base:
        return free_port()
    port = base + _next_port[0] % 50
    _next_port[0] += 1
    return port


class TlsRedis:
    """A redis-server that speaks TLS only (port 0), with cert `name` of
    the certificate directory; clients must show a certificate signed by
    the CA when auth_clients is "yes".  extra: more arguments (a replica's
    replicaof); sentinel: run as a Sentinel (its arguments go to a config
    file, which Sentinel rewrites)."""

    def __init__(self, stack, name="server", auth_clients="no", extra=(),
                 sentinel=False):
        self.d = certs(stack)
        self.port = tls_port()
        self.dir = os.path.join(self.d, "redis-%d" % self.port)
        os.makedirs(self.dir, exist_ok=True)
        self.log = os.path.join(self.dir, "redis.log")
        with socket.socket() as s:  # else we would talk to its owner
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", self.port))
            except OSError as e:
                raise harness.StackError("TLS port %d: %s" % (self.port, e))
        args = [("port", "0"), ("bind", "127.0.0.1"),
                ("tls-port", str(self.port)),
                ("tls-cert-file", os.path.join(self.d, name + ".pem")),
                ("tls-key-file", os.path.join(self.d, name + ".key")),
                ("tls-ca-cert-file", os.path.join(self.d, "ca.pem")),
                ("tls-auth-clients", auth_clients),
                # Replication, and a Sentinel's links, in TLS too; our
                # server certificate serves as their client certificate.
                ("tls-replication", "yes"),
                ("dir", self.dir), ("logfile", self.log)]
        if not sentinel:
            args += [("save", '""'), ("appendonly", "no")]
        args += list(extra)
        if sentinel:
            conf = os.path.join(self.dir, "sentinel.conf")
            with open(conf, "w") as f:
                f.write("".join("%s %s\n" % a for a in args))
            cmd = ["redis-server", conf, "--sentinel"]
        else:
            cmd = ["redis-server"]
            for k, v in args:
                cmd += ["--" + k] + v.split(" ")
            cmd = [c if c != '""' else "" for c in cmd]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        deadline = time.time() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise harness.StackError(
                        "redis-server on TLS port %d did not start: %s" % (
                            self.port, open(self.log).read()[-500:]))
                time.sleep(0.05)

    def client(self):
        """A Python client over verified mutual TLS, for the test's own
        looks at the keys."""
        return redis_lib.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=5, ssl=True,
            ssl_ca_certs=os.path.join(self.d, "ca.pem"),
            ssl_certfile=os.path.join(self.d, "client.pem"),
            ssl_keyfile=os.path.join(self.d, "client.key"))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class TlsSentinels:
    """A master, its replica and three Sentinels watching it as "mymaster",
    all in TLS only and each demanding a client certificate; for the
    length of a `with` block."""

    MASTER = "mymaster"

    def __init__(self, stack):
        self.stack = stack
        self.servers = []

    def __enter__(self):
        try:
            self.master = self._add(auth_clients="yes")
            self.replica = self._add(auth_clients="yes", extra=[
                ("replicaof", "127.0.0.1 %d" % self.master.port)])
            self.sentinels = [self._add(auth_clients="yes", sentinel=True,
                                        extra=[
                ("sentinel monitor", "%s 127.0.0.1 %d 2" % (
                    self.MASTER, self.master.port)),
                ("sentinel down-after-milliseconds", self.MASTER + " 1000"),
                ("sentinel failover-timeout", self.MASTER + " 3000")])
                for _ in range(3)]
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        harness.kill_all_tors()
        for srv in reversed(self.servers):
            srv.stop()
        return False

    def _add(self, **kw):
        srv = TlsRedis(self.stack, **kw)
        self.servers.append(srv)
        return srv

    def _wait_ready(self, timeout=30):
        """Each Sentinel sees the replica and both other Sentinels."""
        deadline = time.time() + timeout
        for sen in self.sentinels:
            while True:
                try:
                    m = sen.client().execute_command("SENTINEL", "MASTER",
                                                     self.MASTER)
                    info = dict(zip(m[::2], m[1::2]))
                    if (info[b"num-slaves"] == b"1" and
                            info[b"num-other-sentinels"] == b"2"):
                        break
                except redis_lib.RedisError:
                    pass
                assert time.time() < deadline, "Sentinels not ready"
                time.sleep(0.2)

    def nodes(self):
        return ["127.0.0.1:%d" % s.port for s in self.sentinels]

    def master_addr(self):
        host, port = self.sentinels[0].client().execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.MASTER)
        return host.decode(), int(port)

    def server_at(self, port):
        return [s for s in (self.master, self.replica) if s.port == port][0]

    def failover(self):
        assert self.sentinels[0].client().execute_command(
            "SENTINEL", "FAILOVER", self.MASTER) in (b"OK", True)


def tls_cfg(stack, ca="ca", client="client", **more):
    """redis.tls for the certificate directory: CA `ca`, client certificate
    `client` (None: none)."""
    d = certs(stack)
    t = {"enabled": True, "ca_file": os.path.join(d, ca + ".pem")}
    if client:
        t["cert_file"] = os.path.join(d, client + ".pem")
        t["key_file"] = os.path.join(d, client + ".key")
    t.update(more)
    return t


def redis_section(port, tls):
    return {"host": "127.0.0.1", "port": port, "timeout_ms": TIMEOUT_MS,
            "tls": tls}


def lease_in(client, group):
    v = client.get("tor:{%s}:lease" % group)
    if v is None:
        return None
    inst, tok = v.decode().rsplit(" ", 1)
    return inst, int(tok)


def status(stack, cfg):
    """`tor status` with cfg: (CompletedProcess, seconds it took)."""
    t0 = time.monotonic()
    p = harness.tor_cli(["status"], cfg=cfg, stack=stack)
    return p, time.monotonic() - t0


def facts(text):
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            out[key] = value
    return out


# ---------------------------------------------------------------------------
# tests

def test_relay_and_kill9_failover_over_mutual_tls(stack):
    """Two replicas on a TLS-only Redis that demands client certificates:
    they relay under a steady write load, two kill -9s of the leader are
    taken over well inside lease_ms (Redis saw the dead leader's TLS
    connection close, and the follower's CLIENT LIST over TLS told it), a
    SIGTERM is handed over at once (the handoff's blocking pop over TLS),
    no event is lost or reordered, the lease, its client record and the
    checkpoint live in the TLS Redis (none in the clear one), and
    `tor status` and `tor checkpoint show` read them over TLS."""
    srv = TlsRedis(stack, auth_clients="yes")
    tors = []
    try:
        name = "rtls_fo"
        table, ov = make_outbox(stack, name)
        cfg = harness.base_config(stack, ha=dict(HA),
                                  redis=redis_section(srv.port,
                                                      tls_cfg(stack)),
                                  **ov)
        group = harness.config_group(cfg)
        tors = [Tor(stack, cfg, name=n).start() for n in ("r1", "r2")]
        wait_leading(tors, timeout=15)
        feeder = Feeder(stack, table, 0, None, 10, 0.02)
        feeder.start()
        rounds = []
        try:
            time.sleep(1.5)
            for _ in range(2):
                holder = lease_in(srv.client(), group)
                assert holder is not None, "no lease in the TLS Redis"
                victim = [t for t in tors
                          if t.name == holder[0] and t.running()][0]
                others = [t for t in tors if t is not victim]
                since = {t: t.log_size() for t in others}
                t_kill = time.time()
                victim.kill9()
                who, tok, ts = wait_leading(others, since, timeout=15)
                assert tok > holder[1], (tok, holder)
                took = bool(log_lines(who, r"took the lease over from",
                                      since[who]))
                rounds.append(((ts - t_kill) * 1000, took))
                tors[tors.index(victim)] = Tor(stack, cfg,
                                               name=victim.name).start()
                time.sleep(1.0)
            # SIGTERM: the leader releases and wakes the follower through
            # the handoff list (a blocking pop over TLS).
            holder = lease_in(srv.client(), group)
            leader = [t for t in tors if t.name == holder[0]][0]
            follower = [t for t in tors if t is not leader][0]
            since = {follower: follower.log_size()}
            t_term = time.time()
            leader.send_signal(signal.SIGTERM)
            assert leader.wait(30) == 0, leader.log_tail()
            _, tok, lead_ts = wait_leading([follower], since, timeout=10)
            assert tok > holder[1], (tok, holder)
            term_ms = (lead_ts - t_term) * 1000
            time.sleep(1.0)
        finally:
            feeder.stop()
        total = feeder.finish()
        print("  kill -9 -> successor leading over TLS (ms): %s" % ", ".join(
            "%.0f" % ms for ms, _ in rounds))
        for ms, took in rounds:
            assert ms < LEASE_MS / 2, \
                "successor led %.0f ms after the kill (lease_ms %d): the " \
                "lease was waited out over TLS" % (ms, LEASE_MS)
            assert took, "no takeover line"
        print("  SIGTERM -> successor leading over TLS: %.0f ms" % term_ms)
        assert term_ms < 1000, "SIGTERM handover took %.0f ms" % term_ms
        by_n, recs = read_all_events(stack, name, total, timeout=60)
        assert_none_lost(by_n, total)
        check_per_key_order(first_appearances(recs))
        check_tokens_grow(recs)
        print("  %d events relayed, none lost" % total)

        c = srv.client()
        holder = lease_in(c, group)
        assert holder is not None
        assert c.exists("tor:{%s}:lease_client" % group)
        cp = c.hgetall("tor:{%s}:checkpoint" % group)
        assert cp.get(b"file"), cp
        assert stack.redis().keys("tor:{%s}:*" % group) == [], \
            "keys of the group in the clear-text Redis"

        p, secs = status(stack, cfg)
        assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
        f = facts(p.stdout)
        assert f["leader"].startswith(holder[0]), (p.stdout, holder)
        assert f["checkpoint"] == "%s:%s" % (cp[b"file"].decode(),
                                            cp[b"pos"].decode()), \
            (p.stdout, cp)
        print("  tor status over TLS: %.0f ms, leader %s" % (
            secs * 1000, f["leader"]))
        p = harness.tor_cli(["checkpoint", "show"], cfg=cfg, stack=stack)
        assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
        assert facts(p.stdout)["checkpoint"] == f["checkpoint"], p.stdout
        stop_all(tors)
    finally:
        for t in tors:
            if t.running():
                t.kill9()
        srv.stop()


def test_paused_leader_is_fenced_over_tls(stack):
    """A leader paused (SIGSTOP) on its TLS connection keeps it open, so
    the lease is waited out; the successor leads, and once woken the old
    leader (a zombie, its renews now refused) steps down: it published
    nothing inserted after its pause, and the checkpoint in the TLS Redis
    carries the successor's token (the fenced write)."""
    srv = TlsRedis(stack, auth_clients="yes")
    tors = []
    try:
        name = "rtls_zombie"
        table, ov = make_outbox(stack, name)
        cfg = harness.base_config(stack, ha=dict(HA),
                                  checkpoint={"interval_ms": 200},
                                  redis=redis_section(srv.port,
                                                      tls_cfg(stack)),
                                  **ov)
        group = harness.config_group(cfg)
        tors = [Tor(stack, cfg, name=n).start() for n in ("r1", "r2")]
        zombie, ztoken, _ = wait_leading(tors, timeout=15)
        successor = [t for t in tors if t is not zombie][0]
        insert_range(stack, table, 0, 100, 20)
        read_all_events(stack, name, 100, timeout=60)

        since = {successor: successor.log_size()}
        t_stop = time.time()
        zombie.sigstop()
        try:
            insert_range(stack, table, 100, 100, 20)
            _, stoken, ts = wait_leading([successor], since,
                                         timeout=LEASE_MS / 1000 + 10)
            print("  %s (token %d) paused; %s leads with token %d after "
                  "%.0f ms" % (zombie.name, ztoken, successor.name, stoken,
                               (ts - t_stop) * 1000))
            assert stoken > ztoken and (ts - t_stop) * 1000 > LEASE_MS / 2
            by_n, recs = read_all_events(stack, name, 200, timeout=60)
            zoff = zombie.log_size()
        finally:
            zombie.sigcont()
        t_cont = time.time()
        zombie.wait_log(LOST, timeout=10, since=zoff)
        print("  zombie stepped down %.0f ms after SIGCONT" % (
            (time.time() - t_cont) * 1000))
        time.sleep(1.0)
        by_n, recs = read_all_events(stack, name, 200, timeout=60)
        assert_none_lost(by_n, 200)
        late = [n_of(r) for r in recs
                if epoch_of(r) == ztoken and n_of(r) >= 100]
        assert not late, "the zombie published %s" % late[:10]
        c = srv.client()
        deadline = time.monotonic() + 10
        while c.hget("tor:{%s}:checkpoint" % group, "epoch") != \
                str(stoken).encode():
            assert time.monotonic() < deadline, c.hgetall(
                "tor:{%s}:checkpoint" % group)
            time.sleep(0.1)
        stop_all(tors)
    finally:
        for t in tors:
            if t.running():
                t.kill9()
        srv.stop()


def test_refusals_name_the_cause(stack):
    """Each bad certificate setup is refused at connect, fast, with its
    cause in words: the server's certificate by a CA tor does not trust
    (unknown issuer), an expired one, one for another host name, no client
    certificate where the server demands one, and one the server does not
    trust.  The fixes work too:
    the right CA, server_name = the name the certificate carries, a client
    certificate.  A replica with verify = false connects to the server of
    an untrusted CA and warns at start."""
    good = TlsRedis(stack, auth_clients="yes")
    expired = TlsRedis(stack, name="expired")
    wrong = TlsRedis(stack, name="wronghost")
    try:
        cases = [
            ("wrong CA", good.port, tls_cfg(stack, ca="other-ca"),
             r"TLS handshake: unknown issuer: the server's certificate "
             r"\(issuer /CN=ca\) is not signed by a CA of redis.tls.ca_file"),
            ("expired certificate", expired.port, tls_cfg(stack),
             r"TLS handshake: the server's certificate has expired "
             r"\(not after \d{4}-\d\d-\d\dT"),
            ("wrong host name", wrong.port, tls_cfg(stack),
             r"TLS handshake: host-name mismatch: the server's certificate "
             r"is not for \"127.0.0.1\" \(redis.tls.server_name"),
            ("no client certificate", good.port, tls_cfg(stack,
                                                         client=None),
             r"TLS: the server (dropped us right after the handshake: it "
             r")?requires a client certificate \(set "
             r"redis.tls.cert_file and redis.tls.key_file\)"),
            ("client certificate of another CA", good.port,
             tls_cfg(stack, client="stranger"),
             r"TLS: the server (dropped us right after the handshake: it )?"
             r"refused our client certificate \((.*unknown ca: )?"
             r"redis.tls.cert_file\)"),
        ]
        for what, port, tls, want in cases:
            cfg = harness.base_config(stack, redis=redis_section(port, tls))
            p, secs = status(stack, cfg)
            print("  %s: exit %d after %.0f ms: %s" % (
                what, p.returncode, secs * 1000, p.stderr.strip()))
            assert p.returncode == 2, (what, p.returncode, p.stderr)
            assert re.search(r"^tor: redis 127\.0\.0\.1:%d: " % port + want,
                             p.stderr), (what, p.stderr)
            assert secs < 10, (what, secs)

        fixes = [
            ("right CA and client certificate", good.port, tls_cfg(stack)),
            ("server_name = redis.example", wrong.port,
             tls_cfg(stack, server_name="redis.example")),
        ]
        for what, port, tls in fixes:
            cfg = harness.base_config(stack, redis=redis_section(port, tls))
            p, secs = status(stack, cfg)
            assert p.returncode == 1, (what, p.returncode, p.stderr)
            assert facts(p.stdout)["leader"] == "none", (what, p.stdout)

        # verify = false: connects to the server tor cannot vouch for, and
        # says so at start.
        table, ov = make_outbox(stack, "rtls_noverify")
        cfg = harness.base_config(stack, redis=redis_section(
            good.port, tls_cfg(stack, ca="other-ca", verify=False)), **ov)
        tor = Tor(stack, cfg).start()
        try:
            tor.wait_log("leading with token", timeout=30)
            assert log_lines(tor, r"redis\.tls\.verify = false: the "
                             r"server's certificate and name are not "
                             r"checked"), tor.log_tail()
            assert lease_in(good.client(), tor.group) is not None
            assert tor.stop() == 0, tor.log_tail()
        finally:
            if tor.running():
                tor.kill9()
    finally:
        for s in (good, expired, wrong):
            s.stop()


def test_wrong_port_fails_fast_with_a_clear_message(stack):
    """Clear text to a TLS port: the server hangs up on the first command,
    and tor says a TLS-only port is the likely cause.  TLS to a clear-text
    port: Redis reads the TLS hello as an unfinished inline command and
    never answers; the handshake gives up after redis.timeout_ms and says
    so.  Neither hangs; each is refused by `tor status` (exit 2) and by a
    replica, which keeps retrying without leading."""
    srv = TlsRedis(stack)
    try:
        clear_to_tls = harness.base_config(stack, redis={
            "host": "127.0.0.1", "port": srv.port, "timeout_ms": TIMEOUT_MS})
        p, secs = status(stack, clear_to_tls)
        print("  clear text to the TLS port: exit %d after %.0f ms: %s" % (
            p.returncode, secs * 1000, p.stderr.strip()))
        assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
        assert "redis 127.0.0.1:%d: Server closed the connection before " \
            "any reply (a TLS-only port? see redis.tls)" % srv.port \
            in p.stderr, p.stderr
        assert secs < 10, secs

        tls_to_clear = harness.base_config(stack, redis=redis_section(
            stack.redis_port, tls_cfg(stack)))
        p, secs = status(stack, tls_to_clear)
        print("  TLS to the clear-text port: exit %d after %.0f ms: %s" % (
            p.returncode, secs * 1000, p.stderr.strip()))
        assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
        assert "redis 127.0.0.1:%d: TLS handshake: no answer within %d ms " \
            "(a clear-text port?" % (stack.redis_port, TIMEOUT_MS) \
            in p.stderr, p.stderr
        assert secs < 10, secs

        for what, cfg, want in (
                ("clear text to TLS", clear_to_tls,
                 "a TLS-only port? see redis.tls"),
                ("TLS to clear text", tls_to_clear,
                 "TLS handshake: no answer within")):
            tor = Tor(stack, cfg).start()
            try:
                tor.wait_log(re.escape(want), timeout=30)
                assert not log_lines(tor, r"leading with token"), \
                    (what, tor.log_tail())
                # A broken connection is not an ACL that refuses CLIENT ID.
                assert not log_lines(tor, r"is not taken over at once"), \
                    (what, tor.log_tail())
                assert tor.running(), (what, tor.log_tail())
            finally:
                tor.kill9()
    finally:
        srv.stop()


def test_sentinel_failover_over_tls(stack):
    """TLS between everyone: the master, its replica and three Sentinels
    speak TLS only and demand client certificates (replication and the
    Sentinels' links in TLS too).  Two replicas find the master through the
    Sentinels (redis.sentinel.tls) and reach it with redis.tls; a SENTINEL
    FAILOVER mid-stream is followed by both, one leads again on the new
    master, and no event is lost."""
    with TlsSentinels(stack) as sen:
        name = "rtls_sen"
        table, ov = make_outbox(stack, name)
        # No redis.host: only the Sentinels.
        cfg = harness.base_config(stack, ha=dict(HA), redis=harness.cfg_value({
            "timeout_ms": TIMEOUT_MS, "tls": tls_cfg(stack),
            "sentinel": {"master": sen.MASTER, "nodes": sen.nodes(),
                         "tls": tls_cfg(stack)}}), **ov)
        group = harness.config_group(cfg)
        tors = [Tor(stack, cfg, name=n).start() for n in ("r1", "r2")]
        wait_leading(tors, timeout=20)
        old = sen.master_addr()
        assert lease_in(sen.server_at(old[1]).client(), group) is not None
        feeder = Feeder(stack, table, 0, None, 10, 0.02)
        feeder.start()
        try:
            time.sleep(1.5)
            since = {t: t.log_size() for t in tors}
            t0 = time.monotonic()
            sen.failover()
            while sen.master_addr() == old:
                assert time.monotonic() - t0 < 15, "no failover in 15 s"
                time.sleep(0.05)
            new = sen.master_addr()
            t_switch = time.monotonic() - t0
            for t in tors:
                t.wait_log(r"following master %s at %s:%d, was %s:%d" % (
                    sen.MASTER, new[0], new[1], old[0], old[1]), timeout=15,
                    since=since[t])
            m = sen.server_at(new[1]).client()
            while True:
                cur = lease_in(m, group)
                leaders = [t.name for t in leader_now(tors)]
                if cur is not None and leaders == [cur[0]]:
                    break
                assert time.monotonic() - t0 < 20, (cur, leaders)
                time.sleep(0.05)
            t_leader = time.monotonic() - t0
            print("  failover over TLS %s:%d -> %s:%d: Sentinels switched "
                  "after %.0f ms, one leader (%s, token %d) on the new "
                  "master after %.0f ms" % (old[0], old[1], new[0], new[1],
                                            t_switch * 1000, cur[0], cur[1],
                                            t_leader * 1000))
            time.sleep(2.0)
        finally:
            feeder.stop()
        total = feeder.finish()
        by_n, recs = read_all_events(stack, name, total, timeout=90)
        assert_none_lost(by_n, total)
        print("  %d events over the failover, none lost" % total)
        stop_all(tors)
