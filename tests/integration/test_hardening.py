"""The process against what surrounds it: the HTTP endpoint under clients
that connect and never finish a request (the liveness probe must still be
answered), the HTTP thread's signal mask (stop signals belong to the main
thread), and the release build bin/tor: no test hooks compiled in, no core
dump and no ptrace by its own user while secrets sit in its memory, a
secret file others may read said in a warning.

The release-build tests run bin/tor (make all) besides the sanitized
build/asan/tor the other tests use; none sets a test hook for bin/tor.
"""

import os
import re
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import harness
from harness import Tor, tor_cli
from test_http import free_port, get, wait_until
from test_relay import make_outbox

RELEASE = os.path.join(harness.REPO, "bin", "tor")
TEST_BUILD = os.path.join(harness.REPO, "build", "asan", "tor")
HOOKS = ("TOR_TEST_CRASH_AFTER_KAFKA_COMMIT",
         "TOR_TEST_CHECKPOINT_SET_PAUSE_MS")
SIGINT_BIT, SIGTERM_BIT = 1 << (2 - 1), 1 << (15 - 1)


def http_replica(stack, name):
    """A replica serving HTTP on a free port of 127.0.0.1; (tor, port)
    once /healthz answers."""
    _, ov = make_outbox(stack, name)
    port = free_port()
    tor = Tor(stack, dict(ov, http={"listen": "127.0.0.1:%d" % port}),
              name="r1").start()
    wait_until("/healthz 200", lambda: get(port, "/healthz")[0] == 200,
               tor=tor)
    return tor, port


class SlowClients:
    """Connections from the given source addresses that send the start of
    a GET and then one byte of a header every second, never its end: each
    holds a server connection for as long as the server lets it."""

    def __init__(self, port, sources):
        self.socks = []
        for src in sources:
            s = socket.socket()
            s.bind((src, 0))
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: tor\r\nX-Slow: ")
            self.socks.append(s)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self):
        while not self.done.wait(1.0):
            for s in self.socks:
                try:
                    s.send(b"a")
                except OSError:
                    pass            # closed by the server

    def held(self):
        """How many the server keeps open (a closed one reads as EOF or
        an error)."""
        n = 0
        for s in self.socks:
            readable, _, _ = select.select([s], [], [], 0)
            if not readable:
                n += 1
                continue
            try:
                if s.recv(1024, socket.MSG_PEEK) != b"":
                    n += 1          # an answer: it got through
            except OSError:
                pass
        return n

    def close(self):
        self.done.set()
        self.thread.join()
        for s in self.socks:
            s.close()


def probes(port, n=8):
    """Statuses of n /healthz probes half a second apart, as the kubelet
    asks (a fresh connection, a 2 s timeout)."""
    out = []
    for _ in range(n):
        out.append(get(port, "/healthz", timeout=2)[0])
        time.sleep(0.5)
    return out


def test_slow_clients_leave_healthz_answered(stack):
    """64 connections that never finish their request held every slot of
    the HTTP server (its limit was 64, the idle timeout 10 s, reset by each
    byte), so /healthz went unanswered and the liveness probe would restart
    the replica.  Now: a few connections per client address, many in all;
    64 slow clients from one address, then from 64 addresses, leave every
    probe answered."""
    tor, port = http_replica(stack, "hard_slow")
    for label, sources in (
            ("one address", ["127.0.0.2"] * 64),
            ("64 addresses", ["127.0.0.%d" % (2 + i) for i in range(64)])):
        slow = SlowClients(port, sources)
        try:
            time.sleep(1.5)
            statuses = probes(port)
            held = slow.held()
        finally:
            slow.close()
        print("  64 slow clients from %s: %d held by the server, /healthz "
              "%s" % (label, held, statuses))
        assert statuses == [200] * len(statuses), (label, statuses)
    assert tor.running(), tor.log_tail()


def probe(port):
    """The status of one /healthz probe as the kubelet asks (a fresh
    connection, a 2 s timeout); None when unanswered."""
    try:
        return get(port, "/healthz", timeout=2)[0]
    except OSError:
        return None                 # connected, never answered


def test_trickling_clients_are_cut(stack):
    """A client that trickles its request a byte a second never goes idle:
    300 of them from 300 addresses (one each, under the per-address limit)
    held all 256 of the server's connections, and every /healthz probe went
    unanswered for as long as they trickled (26 s seen).  A request must
    arrive whole within 5 s of its connection (or of its last answer): the
    trickling ones are cut, the ones waiting to be accepted next, and the
    probes are answered again."""
    tor, port = http_replica(stack, "hard_trickle")
    sources = ["127.0.%d.%d" % (1 + i // 250, 2 + i % 250)
               for i in range(300)]
    slow = SlowClients(port, sources)
    seen = []
    try:
        start = time.monotonic()
        answered = all_cut = None
        while time.monotonic() - start < 25 and (answered is None or
                                                 all_cut is None):
            time.sleep(1.0)
            at = time.monotonic() - start
            status, held = probe(port), slow.held()
            seen.append("%.0fs:%s/%d" % (at, status, held))
            if answered is None and status == 200:
                answered = at
            if all_cut is None and held == 0:
                all_cut = at
        last = probe(port)
    finally:
        slow.close()
    print("  300 trickling clients from 300 addresses (time: probe/held): "
          "%s; first probe answered at %s s, all cut at %s s" % (
              " ".join(seen), answered and "%.1f" % answered,
              all_cut and "%.1f" % all_cut))
    assert answered is not None and all_cut is not None, seen
    assert last == 200, last
    assert tor.running(), tor.log_tail()


def test_http_thread_blocks_stop_signals(stack):
    """SIGTERM and SIGINT start the clean shutdown in the main thread,
    whose blocking waits they interrupt; the HTTP server's thread must not
    take them (the kernel gives a process's signal to any thread that does
    not block it).  Its mask, as /proc shows it, blocks both, and so do
    the elector driver's and the wake-up listener's."""
    tor, port = http_replica(stack, "hard_sig")
    masks = {}
    task_dir = "/proc/%d/task" % tor.pid
    for tid in os.listdir(task_dir):
        with open(os.path.join(task_dir, tid, "comm")) as f:
            comm = f.read().strip()
        with open(os.path.join(task_dir, tid, "status")) as f:
            for line in f:
                if line.startswith("SigBlk:"):
                    masks.setdefault(comm, []).append(int(line.split()[1],
                                                          16))
    http = masks.get("MHD-single", [])
    print("  SigBlk of the HTTP thread %s, of each thread by name %s" % (
        ["%016x" % m for m in http],
        {c: ["%x" % m for m in ms] for c, ms in masks.items()}))
    assert len(http) == 1, masks
    assert http[0] & SIGTERM_BIT and http[0] & SIGINT_BIT, "%x" % http[0]
    # So must the elector driver's and its wake-up listener's.
    for name in ("tor-electors", "tor-wakeups"):
        assert len(masks.get(name, [])) == 1, masks
        m = masks[name][0]
        assert m & SIGTERM_BIT and m & SIGINT_BIT, "%s: %x" % (name, m)
    assert tor.stop() == 0, tor.log_tail()


def test_release_build_has_no_test_hooks(stack):
    """The TOR_TEST_* hooks (a crash after a Kafka commit, a pause in
    `checkpoint set`) are compiled into the test build alone: bin/tor holds
    none of their names, and a set variable is said to be ignored."""
    with open(RELEASE, "rb") as f:
        release = f.read()
    with open(TEST_BUILD, "rb") as f:
        test_build = f.read()
    for hook in HOOKS:
        assert hook.encode() in test_build, hook
        assert hook.encode() not in release, hook
    p = subprocess.run([RELEASE, "--check-config", "-c",
                        os.path.join(harness.REPO, "tor.cfg")],
                       env=dict(os.environ, HOSTNAME="h",
                                TOR_TEST_CRASH_AFTER_KAFKA_COMMIT="1"),
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert ("# warning: TOR_TEST_CRASH_AFTER_KAFKA_COMMIT is set, but this "
            "build has no test hooks: ignored" in p.stdout), p.stdout


def process_facts(binary, cfg_path, fifo):
    """`binary decode` as user nobody, blocked opening a binlog that is a
    FIFO nobody writes: a process of its own user that holds a loaded
    config, secrets included.  Its core limit and whether /proc files are
    its user's (a process that is not dumpable has them owned by root)."""
    p = subprocess.Popen(["setpriv", "--reuid=nobody", "--regid=nogroup",
                          "--clear-groups", binary, "decode", "-c", cfg_path,
                          fifo],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    proc = "/proc/%d" % p.pid
    facts = {}
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(proc + "/cmdline", "rb") as f:
                if f.read().startswith(binary.encode()):
                    break           # setpriv has become tor
            time.sleep(0.05)
        time.sleep(1.0)             # past main's first steps, at the open
        assert p.poll() is None, p.communicate()[1]
        with open(proc + "/limits") as f:
            for line in f:
                if line.startswith("Max core file size"):
                    facts["core"] = line.split()[4:6]
        facts["environ_uid"] = os.stat(proc + "/environ").st_uid
    finally:
        p.kill()
        p.wait()
    return facts


def test_release_build_dumps_no_core(stack):
    """While passwords and the checkpoint key sit in memory, bin/tor
    leaves no core dump: RLIMIT_CORE 0 (soft and hard) and not dumpable,
    which also keeps other processes of its user from attaching to it or
    reading its memory and environment.  The test build stays dumpable
    (LeakSanitizer and gdb attach to it)."""
    d = tempfile.mkdtemp(prefix="core-")
    try:
        os.chmod(d, 0o755)
        cfg = os.path.join(d, "tor.cfg")
        with open(cfg, "w") as f:
            f.write(harness.base_config(stack))
        os.chmod(cfg, 0o644)
        fifo = os.path.join(d, "binlog")
        os.mkfifo(fifo)
        os.chmod(fifo, 0o666)
        nobody = int(subprocess.check_output(["id", "-u", "nobody"]))
        seen = {}
        for name, binary in (("release", RELEASE), ("test", TEST_BUILD)):
            seen[name] = facts = process_facts(binary, cfg, fifo)
            print("  %s build: core limit (soft, hard) %s, "
                  "/proc/<pid>/environ owned by uid %d" % (
                      name, facts["core"], facts["environ_uid"]))
            assert facts["core"] == ["0", "0"], (name, facts)
        assert seen["release"]["environ_uid"] == 0, seen
        assert seen["test"]["environ_uid"] == nobody, seen
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_loose_secret_file_is_warned(stack):
    """A password file every user may read loads with a warning (not a
    refusal: a Kubernetes Secret volume is 0644 by default): in
    --check-config's output and in a replica's log."""
    d = tempfile.mkdtemp(prefix="secret-", dir=harness._work_dir(stack))
    try:
        pw = os.path.join(d, "mysql.password")
        with open(pw, "w") as f:
            f.write("tor\n")
        os.chmod(pw, 0o644)
        want = ("mysql.password_file %s is open to every user (mode 0644): "
                "make it 0600, or 0640 owned by root with tor's group" % pw)
        _, ov = make_outbox(stack, "hard_secret")
        ov["mysql"] = {"password": "", "password_file": pw}
        p = tor_cli(["--check-config"], ov, stack)
        assert p.returncode == 0, p.stderr
        assert "# warning: " + want in p.stdout, p.stdout
        tor = Tor(stack, ov, name="r1").start()
        tor.wait_log("level=warn component=config .*" + re.escape(want))
        tor.wait_log("leading with token")
        assert tor.stop() == 0, tor.log_tail()
        os.chmod(pw, 0o600)
        p = tor_cli(["--check-config"], ov, stack)
        assert "# warning" not in p.stdout, p.stdout
    finally:
        shutil.rmtree(d, ignore_errors=True)
