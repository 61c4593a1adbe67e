"""`make up` and `make down`: the local demo as README's reader runs it.

The demo gets a run directory and ports of its own (TOR_RUN_DIR,
TOR_MYSQL_PORT, TOR_REDIS_PORT, TOR_KAFKA_PORT, TOR_EXAMPLE_PORT), away from
the stack the runner started: its own MariaDB, Redis, Apache Kafka (one
node), example service and three tor replicas.  The test does what `make up` tells the reader to do,
reads the events from Kafka, runs README's five-minute walk-through line by
line (its ports and run directory swapped for the test's), and checks that
`make down` leaves no process.
"""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import harness

MYSQL_PORT = 3397
REDIS_PORT = 6397
KAFKA_PORT = 9792
EXAMPLE_PORT = 8097
TOR_BIN = os.path.join(harness.REPO, "bin", "tor")


def run_make(target, env, timeout):
    p = subprocess.run(["make", "--no-print-directory", "-C", harness.REPO,
                        target], env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=timeout)
    assert p.returncode == 0, "make %s failed (exit %d):\n%s" % (
        target, p.returncode, p.stdout)
    return p.stdout


def http(method, path):
    """(status, body) of one request to the example service."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (EXAMPLE_PORT,
                                                           path),
                                 method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def pids_of(run_dir):
    """{pid file: pid} of every process the demo keeps a pid file for."""
    out = {}
    for rel in ["tor-r1.pid", "tor-r2.pid", "tor-r3.pid", "tor-example.pid",
                "mariadb/mysqld.pid", "redis/redis.pid",
                "kafka/node1/kafka.pid"]:
        try:
            with open(os.path.join(run_dir, rel)) as f:
                out[rel] = int(f.read().strip())
        except (FileNotFoundError, ValueError):
            pass
    return out


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose; /proc says which.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def leftovers(run_dir, pids):
    p = subprocess.run(["pgrep", "-af", run_dir], capture_output=True,
                       text=True)
    lines = [ln for ln in p.stdout.splitlines()
             if ln.split(" ", 1)[0] != str(os.getpid())]
    lines += ["%s: pid %d alive" % (f, pid) for f, pid in pids.items()
              if alive(pid)]
    return lines


def kill_leftovers(run_dir, pids):
    """SIGKILL to what make down left: the test fails, the host stays
    clean."""
    p = subprocess.run(["pgrep", "-f", run_dir], capture_output=True,
                       text=True)
    targets = {int(x) for x in p.stdout.split()} | set(pids.values())
    for pid in targets:
        if pid != os.getpid() and alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def walk_through():
    """The commands of README's walk-through, comments cut, in order."""
    with open(os.path.join(harness.REPO, "README.md")) as f:
        text = f.read()
    assert "## Five minutes" in text, "README has no five-minute walk"
    block = text.split("## Five minutes", 1)[1].split("```sh\n", 1)[1]
    block = block.split("```", 1)[0]
    return [re.split(r"\s+#\s", ln, 1)[0].strip()
            for ln in block.splitlines() if ln.strip()]


def status_of(cfg):
    st = subprocess.run([TOR_BIN, "status", "-c", cfg], capture_output=True,
                        text=True, timeout=30)
    return st.returncode, dict(ln.split(": ", 1) for ln in
                               st.stdout.splitlines() if ": " in ln)


def run_walk_through(run_dir, env):
    """Runs README's walk-through as its reader would, against the demo
    already up, checking what README says each step shows."""
    lines = walk_through()
    here = lambda s: s.replace("http://127.0.0.1:8080",
                               "http://127.0.0.1:%d" % EXAMPLE_PORT) \
        .replace("run/local", run_dir)
    for verb in ("make up", "curl -i -X PUT", "make watch", "bin/tor status",
                 "kill -9", "make down"):
        assert any(ln.startswith(verb) for ln in lines), (verb, lines)
    cfg = os.path.join(run_dir, "tor.cfg")
    stack = harness.Stack(run_dir)
    before = None
    keys = []
    for ln in lines:
        cmd = here(ln)
        if ln == "make down":
            continue        # the test's own cleanup runs it, and checks it
        if ln == "make watch":
            p = subprocess.Popen(["make", "--no-print-directory", "-C",
                                  harness.REPO, "watch"], env=env,
                                 stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True,
                                 start_new_session=True)
            time.sleep(6)
            os.killpg(p.pid, signal.SIGINT)
            out = p.communicate(timeout=20)[0]
            for k in keys:
                assert "key=%s" % k in out, (k, out)
            assert "tor.pos=" in out and "tor.epoch=" in out, out
            continue
        if ln.startswith("kill -9"):
            rc, st = status_of(cfg)
            assert rc == 0, st
            before = st
            cmd = cmd.replace("tor-r1.pid", "tor-%s.pid" % st["leader"])
        p = subprocess.run(["bash", "-c", cmd], cwd=harness.REPO, env=env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, (cmd, p.stdout, p.stderr)
        if ln.startswith("curl -i -X PUT"):
            assert p.stdout.startswith("HTTP/1.1 201"), (cmd, p.stdout)
            keys.append(cmd.rsplit("/", 1)[1])
        if ln.startswith("curl -i -X DELETE"):
            assert p.stdout.startswith("HTTP/1.1 204"), (cmd, p.stdout)
        if ln.startswith("bin/tor status") and before is not None:
            for _ in range(50):    # "within a fraction of a second"
                rc, st = status_of(cfg)
                if rc == 0 and st["leader"] != before["leader"]:
                    break
                time.sleep(0.1)
            assert st["leader"] != before["leader"], (before, st)
            assert int(st["token"]) > int(before["token"]), (before, st)
            after = st
    assert before is not None
    # The order put after the kill came through the new leader's token.
    last = keys[-1]
    for _ in range(100):
        mine = [r for r in harness.read_all(stack.brokers, "order",
                                            timeout=5)
                if r.key.decode() == last]
        if mine:
            break
        time.sleep(0.2)
    assert mine, "no event of %s" % last
    assert int(harness.header(mine[0], "tor.epoch")) == \
        int(after["token"]), (mine[0], after)
    print("  walk-through: %d commands; %s led (token %s), then %s "
          "(token %s)" % (len(lines), before["leader"], before["token"],
                          after["leader"], after["token"]))


def event(record):
    return (record.key.decode(), record.value.decode())


def test_make_up_demo():
    run_dir = tempfile.mkdtemp(prefix="tor-up-")
    env = dict(os.environ, TOR_RUN_DIR=run_dir,
               TOR_MYSQL_PORT=str(MYSQL_PORT), TOR_REDIS_PORT=str(REDIS_PORT),
               TOR_KAFKA_PORT=str(KAFKA_PORT), TOR_KAFKA="kafka",
               TOR_EXAMPLE_PORT=str(EXAMPLE_PORT))
    pids = {}
    try:
        out = run_make("up", env, timeout=120)
        pids = pids_of(run_dir)
        ours = {f: pid for f, pid in pids.items() if f.startswith("tor-")}
        assert len(ours) == 4, (pids, out)
        for hint in ["curl -i -X PUT http://127.0.0.1:%d/" % EXAMPLE_PORT,
                     "curl -i -X DELETE", "make watch", "kcat -b ",
                     "bin/tor status -c %s/tor.cfg" % run_dir,
                     "kill -9 $(cat %s/tor-r" % run_dir]:
            assert hint in out, "no %r in make up's output:\n%s" % (hint, out)

        # Again, while it runs: nothing restarts.
        again = run_make("up", env, timeout=60)
        assert "tor r1: already up" in again, again
        now = pids_of(run_dir)
        assert all(now.get(f) == pid for f, pid in ours.items()), (ours, now)
        pids = now     # Redis writes its pid file after it answers

        a, b = str(uuid.uuid4()), str(uuid.uuid4())
        assert http("PUT", "/" + a)[0] == 201
        assert http("PUT", "/" + b)[0] == 201
        assert http("PUT", "/" + a)[0] == 409
        assert http("DELETE", "/" + a)[0] == 204
        assert http("DELETE", "/" + a)[0] == 404
        assert http("PUT", "/not-a-uuid")[0] == 400
        assert http("GET", "/" + a)[0] == 405

        stack = harness.Stack(run_dir)
        recs = harness.wait_for(stack.brokers, "order", 3, timeout=20)
        got = sorted(event(r) for r in recs)
        want = sorted([
            (a, '{"event":"OrderCreated","order_id":"%s"}' % a),
            (b, '{"event":"OrderCreated","order_id":"%s"}' % b),
            (a, '{"event":"OrderDeleted","order_id":"%s"}' % a),
        ])
        assert got == want, got
        for r in recs:
            assert harness.header(r, "tor.type") == b"order", r
            assert len(harness.header(r, "uuid") or b"") == 36, r
        by_key = [event(r)[1] for r in recs if event(r)[0] == a]
        assert "OrderCreated" in by_key[0] and "OrderDeleted" in by_key[1], \
            by_key

        st = subprocess.run([TOR_BIN, "status", "-c",
                             os.path.join(run_dir, "tor.cfg")],
                            capture_output=True, text=True, timeout=30)
        assert st.returncode == 0, st.stdout + st.stderr
        leader = [ln.split(": ", 1)[1] for ln in st.stdout.splitlines()
                  if ln.startswith("leader: ")]
        assert leader and leader[0] in ("r1", "r2", "r3"), st.stdout

        run_walk_through(run_dir, env)
    finally:
        down = subprocess.run(["make", "--no-print-directory", "-C",
                               harness.REPO, "down"], env=env,
                              stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              timeout=120)
        left = []
        for _ in range(50):
            left = leftovers(run_dir, pids)
            if not left:
                break
            time.sleep(0.1)
        if left:
            kill_leftovers(run_dir, pids)
        elif down.returncode == 0:
            shutil.rmtree(run_dir, ignore_errors=True)
    assert down.returncode == 0, "make down failed:\n" + down.stdout
    assert not left, "left running after make down:\n%s\n%s" % (
        "\n".join(left), down.stdout)
