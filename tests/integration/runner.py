#!/usr/bin/python3
"""Runs tor's integration tests against the local stack.

    /usr/bin/python3 tests/integration/runner.py [--shards N] [SUBSTRING...]

Discovers tests/integration/test_*.py and runs each top-level function named
test_* in file order (only those whose "<module>.<name>" contains one of the
substrings, when given).  A test takes no argument or one: a fresh
harness.Stack handle.  The stack is started once here (deploy/local/stack.sh
start: MariaDB, Redis, one Kafka node and the dev broker; the three-node
cluster when a test first asks for it) and stopped at the end, also on
SIGINT/SIGTERM, with what test modules started for themselves
(harness.at_run_end).  Between tests every tor process the test started is killed
and the stack is brought back to its default state (services up, every
Kafka node running, dev broker reset); a passed test's topics are deleted.

A module that sets NEEDS_STACK = False runs tor and reads files only:
when every test selected is of such modules, no stack is started.

Output: "ok - <module>.<name> (<secs>s)" or "not ok - <module>.<name>" with
the traceback and the tail of the test's tor logs; last line
"integration: N passed, N failed"; exit status 1 if any failed.

TOR_IT_TIMEOUT (seconds, default 600) bounds each test.  Tests marked
harness.long_test are left out unless a filter names them or TOR_IT_LONG is
1 (with the others) or only (`make chaos` runs them so).

--shards N (or TOR_IT_SHARDS) runs N workers at once, each on a stack of its
own (shard k > 0: run directory <run dir>-shard<k>, MariaDB, Redis and Kafka
ports moved by 10k, 10k and 200k), handing each worker the next test module
when it is free.  Most tests wait on leases and timeouts rather than on the
CPU, so two shards finish in well under the time of one.  Modules that use
the three-node cluster all go to shard 0, so that one cluster serves them.
A worker's output comes through whole, one test at a time.
"""

import importlib.util
import inspect
import io
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402
import nemesis  # noqa: E402


class Interrupted(BaseException):
    """SIGINT/SIGTERM arrived: stop running tests, clean up."""


class TestTimeout(Exception):
    pass


def on_stop_signal(signum, frame):
    raise Interrupted("signal %d" % signum)


def on_alarm(signum, frame):
    raise TestTimeout("test exceeded TOR_IT_TIMEOUT")


def discover(filters):
    """[(qualified name, function)] in file and definition order.  Tests
    marked harness.long_test run only when a filter names them, or as
    TOR_IT_LONG says: 1 with the others, only without them."""
    long_mode = os.environ.get("TOR_IT_LONG", "")
    tests = []
    for fname in sorted(os.listdir(HERE)):
        if not (fname.startswith("test_") and fname.endswith(".py")):
            continue
        modname = fname[:-3]
        spec = importlib.util.spec_from_file_location(
            modname, os.path.join(HERE, fname))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[modname] = mod
        spec.loader.exec_module(mod)
        funcs = [f for n, f in vars(mod).items()
                 if n.startswith("test_") and inspect.isfunction(f) and
                 f.__module__ == modname]
        funcs.sort(key=lambda f: f.__code__.co_firstlineno)
        for f in funcs:
            q = "%s.%s" % (modname, f.__name__)
            if filters and not any(s in q for s in filters):
                continue
            is_long = getattr(f, "long_test", None) is not None
            if long_mode == "only" and not is_long:
                continue
            if is_long and not filters and long_mode not in ("1", "only"):
                continue
            tests.append((q, f))
    return tests


def needs_stack(func):
    """False for a test whose module says NEEDS_STACK = False: it runs tor
    and reads files only, so a run of such tests alone starts no stack."""
    return getattr(sys.modules.get(func.__module__), "NEEDS_STACK", True)


def call_test(func, stack):
    if len(inspect.signature(func).parameters) >= 1:
        func(stack)
    else:
        func()


def report_tor_logs(tors):
    for t in tors:
        print("  --- tor %s (pid %s, group %s): %s, last lines:" %
              (t.name, t.pid, t.group, t.log_path))
        for line in t.log_tail(40).splitlines():
            print("  | " + line)


expected_failures = []     # tests that failed as marked (their names)


def run_one(qname, func, timeout, stack_up=True):
    """Runs one test; returns True if it passed, or failed an assertion as
    harness.expected_failure marked it would.  Kills its tors after, and
    brings the stack back when it runs (stack_up)."""
    harness.begin_test(qname)
    stack = harness.Stack()
    t0 = time.monotonic()
    ok = False
    failure = None
    xfail = getattr(func, "expected_failure", None)
    expected = False
    signal.alarm(timeout)
    try:
        call_test(func, stack)
        ok = True
    except Interrupted:
        raise
    except AssertionError as e:
        failure = traceback.format_exc()
        expected = xfail is not None
        why = str(e).splitlines()[0] if str(e) else "AssertionError"
    except BaseException:  # noqa: B902 - a test may raise anything
        failure = traceback.format_exc()
    finally:
        signal.alarm(0)
        harness.kill_all_tors()
        try:
            nemesis.remove_all()
        except Exception as e:  # reported: the check at the run's end
            failure = (failure or "") + "nemesis not removed: %s\n" % e
            ok = False
    secs = time.monotonic() - t0
    if ok and xfail is not None:
        ok = False
        failure = "passed, but marked expected to fail (%s): drop the " \
            "mark\n" % xfail
    elif expected and failure and "nemesis not removed" not in failure:
        ok = True
        expected_failures.append(qname)
        print("ok - %s (%.1fs) # expected failure: %s\n  as expected: %s" %
              (qname, secs, xfail, why), flush=True)
        harness.remove_test_files()
    elif ok:
        print("ok - %s (%.1fs)" % (qname, secs), flush=True)
        harness.remove_test_files()
    if not ok:
        print("not ok - %s (%.1fs)" % (qname, secs))
        for line in failure.rstrip().splitlines():
            print("  " + line)
        report_tor_logs(harness.started_tors())
        sys.stdout.flush()
    if not stack_up:
        return ok
    try:
        stack.make_healthy()
    except Exception as e:  # the next test would fail for our reason
        print("  stack not healthy after %s: %s" % (qname, e), flush=True)
        ok = False
    if ok:
        delete_topics(stack)
    return ok


def delete_topics(stack):
    """A passed test's topics, on the single node and the cluster."""
    targets = [stack.env.get("TOR_KAFKA_BROKERS")]
    cluster = harness.KafkaCluster(stack.run_dir,
                                   stack.env.get("TOR_KAFKA_PORT"))
    if cluster.started():
        targets.append(cluster.brokers)
    for brokers in filter(None, targets):
        try:
            harness.delete_test_topics(brokers)
        except Exception as e:  # the next test does not depend on it
            print("  topics not deleted from %s: %s" % (brokers, e),
                  flush=True)


def run_tests(stack, tests, timeout, report, stack_up=True):
    """Runs tests in order (on a started stack when stack_up); report(ok)
    after each."""
    for qname, func in tests:
        report(run_one(qname, func, timeout, stack_up))


def start_stack(stack, n_tests):
    """Starts the stack; False (with a "not ok" line) when it failed."""
    try:
        stack.start_all()
        stack.default_outbox()
        return True
    except Exception as e:
        print("not ok - stack start\n  %s" % e, flush=True)
        return False


def stop_stack(stack, started=True):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    harness.kill_all_tors()
    harness.run_end_hooks()
    try:
        if started:
            stack.stop()
    except Exception as e:
        print("stack stop failed: %s" % e)
    return nemesis_left(stack)


def nemesis_left(stack):
    """Removes what the nemesis (tests/integration/nemesis.py) of this
    run may have left, then checks that nothing is: True if clean, else a
    "not ok" line naming what stays."""
    run = nemesis.run_id(stack.run_dir)
    try:
        nemesis.remove_all()
        nemesis.remove_run(run)
    except Exception as e:
        print("  nemesis removal: %s" % e)
    left = nemesis.leftovers(run)
    if left:
        print("not ok - nemesis leftovers: %s" % ", ".join(left), flush=True)
    return not left


def main_single(filters, timeout):
    passed = failed = 0
    stack = harness.Stack()
    stack_up = True

    def count(ok):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
    try:
        try:
            tests = discover(filters)
        except Exception:
            print("not ok - discovery")
            traceback.print_exc(file=sys.stdout)
            failed += 1
            tests = []
        stack_up = any(needs_stack(f) for _, f in tests)
        if stack_up and not start_stack(stack, len(tests)):
            failed += len(tests)
            tests = []
        run_tests(stack, tests, timeout, count, stack_up)
    except Interrupted as e:
        print("interrupted (%s): stopping" % e, flush=True)
        failed += 1
    finally:
        if not stop_stack(stack, stack_up):
            failed += 1
        print("integration: %d passed, %d failed%s" % (
            passed, failed, "" if not expected_failures else
            " (%d of the passed failed as expected: %s)" % (
                len(expected_failures), ", ".join(expected_failures))),
            flush=True)
    return 1 if failed else 0


# -- shards -------------------------------------------------------------------

BLOCK_END = "@@end-of-test@@"


def main_worker(filters, timeout):
    """A shard: starts its stack, then runs the modules named on stdin one
    line at a time ("@end" to stop), printing each test's output as one
    block followed by a BLOCK_END line "<BLOCK_END> <1|0>"; "@@ready@@"
    asks for the next module."""
    real = sys.stdout
    stack = harness.Stack()
    tests = discover(filters)
    by_module = {}
    for qname, func in tests:
        by_module.setdefault(qname.split(".")[0], []).append((qname, func))
    started = False
    try:
        started = start_stack(stack, len(tests))
        while True:
            real.write("@@ready@@\n")
            real.flush()
            line = sys.stdin.readline().strip()
            if not line or line == "@end":
                break
            for qname, func in by_module.get(line, []):
                buf = io.StringIO()
                sys.stdout = buf
                try:
                    ok = started and run_one(qname, func, timeout)
                    if not started:
                        print("not ok - %s (stack did not start)" % qname)
                finally:
                    sys.stdout = real
                real.write(buf.getvalue())
                real.write("%s %d\n" % (BLOCK_END, 1 if ok else 0))
                real.flush()
    except Interrupted:
        pass
    finally:
        sys.stdout = real
        stop_stack(stack)
    return 0


def shard_env(k):
    """The environment of shard k: its own run directory and ports."""
    env = dict(os.environ)
    if k == 0:
        return env
    base = harness.default_run_dir()
    env["TOR_RUN_DIR"] = "%s-shard%d" % (base, k)
    env["TOR_MYSQL_PORT"] = str(int(env.get("TOR_MYSQL_PORT", "3307")) +
                                10 * k)
    env["TOR_REDIS_PORT"] = str(int(env.get("TOR_REDIS_PORT", "6380")) +
                                10 * k)
    env["TOR_KAFKA_PORT"] = str(int(env.get("TOR_KAFKA_PORT", "9192")) +
                                200 * k)
    return env


def uses_cluster(module):
    with open(os.path.join(HERE, module + ".py")) as f:
        return "use_cluster(" in f.read()


def main_shards(filters, timeout, shards):
    passed = failed = 0
    try:
        tests = discover(filters)
    except Exception:
        print("not ok - discovery")
        traceback.print_exc(file=sys.stdout)
        print("integration: 0 passed, 1 failed", flush=True)
        return 1
    modules = []
    for qname, _ in tests:
        m = qname.split(".")[0]
        if m not in modules:
            modules.append(m)
    # The cluster's modules first: they are long, and only shard 0 has one.
    cluster = [m for m in modules if uses_cluster(m)]
    others = [m for m in modules if m not in cluster]
    lock = threading.Lock()
    pending = cluster + others
    results = queue.Queue()

    def next_module(k):
        with lock:
            for m in pending:
                if k == 0 or m not in cluster:
                    pending.remove(m)
                    return m
        return None

    def drive(k, proc):
        block = []
        for line in proc.stdout:
            if line.startswith("@@ready@@"):
                m = next_module(k)
                proc.stdin.write((m or "@end") + "\n")
                proc.stdin.flush()
                continue
            if line.startswith(BLOCK_END):
                with lock:
                    sys.stdout.write("".join(block))
                    sys.stdout.flush()
                results.put(line.split()[1] == "1")
                block = []
                continue
            block.append(line)
        if block:
            with lock:
                sys.stdout.write("".join(block))
                sys.stdout.flush()
        proc.wait()

    procs, threads = [], []
    try:
        for k in range(shards):
            proc = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--worker"] +
                list(filters), env=shard_env(k), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                bufsize=1, start_new_session=True)
            procs.append(proc)
            t = threading.Thread(target=drive, args=(k, proc), daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            while t.is_alive():
                t.join(1)
    except Interrupted as e:
        print("interrupted (%s): stopping the shards" % e, flush=True)
        failed += 1
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(120)
    done = 0
    while not results.empty():
        done += 1
        if results.get():
            passed += 1
        else:
            failed += 1
    if done < len(tests):
        print("not ok - %d test(s) never reported (a shard stopped early)" %
              (len(tests) - done))
        failed += len(tests) - done
    print("integration: %d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed else 0


def main(argv):
    timeout = int(os.environ.get("TOR_IT_TIMEOUT", "600"))
    signal.signal(signal.SIGTERM, on_stop_signal)
    signal.signal(signal.SIGINT, on_stop_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    args = list(argv)
    shards = int(os.environ.get("TOR_IT_SHARDS", "1"))
    if args[:1] == ["--worker"]:
        return main_worker(args[1:], timeout)
    if args[:1] == ["--shards"]:
        shards = int(args[1])
        args = args[2:]
    if shards > 1:
        return main_shards(args, timeout, shards)
    return main_single(args, timeout)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
