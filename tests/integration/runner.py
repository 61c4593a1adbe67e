#!/usr/bin/python3
"""Runs tor's integration tests against the local stack.

    /usr/bin/python3 tests/integration/runner.py [SUBSTRING...]

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

Output: "ok - <module>.<name> (<secs>s)" or "not ok - <module>.<name>" with
the traceback and the tail of the test's tor logs; last line
"integration: N passed, N failed"; exit status 1 if any failed.

TOR_IT_TIMEOUT (seconds, default 600) bounds each test.
"""

import importlib.util
import inspect
import os
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402


class Interrupted(BaseException):
    """SIGINT/SIGTERM arrived: stop running tests, clean up."""


class TestTimeout(Exception):
    pass


def on_stop_signal(signum, frame):
    raise Interrupted("signal %d" % signum)


def on_alarm(signum, frame):
    raise TestTimeout("test exceeded TOR_IT_TIMEOUT")


def discover(filters):
    """[(qualified name, function)] in file and definition order."""
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
            if not filters or any(s in q for s in filters):
                tests.append((q, f))
    return tests


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


def run_one(qname, func, timeout):
    """Runs one test; returns True if it passed.  Kills its tors after."""
    harness.begin_test(qname)
    stack = harness.Stack()
    t0 = time.monotonic()
    ok = False
    failure = None
    signal.alarm(timeout)
    try:
        call_test(func, stack)
        ok = True
    except Interrupted:
        raise
    except BaseException:  # noqa: B902 - a test may raise anything
        failure = traceback.format_exc()
    finally:
        signal.alarm(0)
        harness.kill_all_tors()
    secs = time.monotonic() - t0
    if ok:
        print("ok - %s (%.1fs)" % (qname, secs), flush=True)
        harness.remove_test_files()
    else:
        print("not ok - %s (%.1fs)" % (qname, secs))
        for line in failure.rstrip().splitlines():
            print("  " + line)
        report_tor_logs(harness.started_tors())
        sys.stdout.flush()
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


def main(argv):
    timeout = int(os.environ.get("TOR_IT_TIMEOUT", "600"))
    signal.signal(signal.SIGTERM, on_stop_signal)
    signal.signal(signal.SIGINT, on_stop_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    passed = failed = 0
    stack = harness.Stack()
    try:
        try:
            tests = discover(argv)
        except Exception:
            print("not ok - discovery")
            traceback.print_exc(file=sys.stdout)
            failed += 1
            tests = []
        if tests:
            try:
                stack.start_all()
                stack.default_outbox()
            except Exception as e:
                print("not ok - stack start\n  %s" % e)
                failed += len(tests)
                tests = []
        for qname, func in tests:
            if run_one(qname, func, timeout):
                passed += 1
            else:
                failed += 1
    except Interrupted as e:
        print("interrupted (%s): stopping" % e, flush=True)
        failed += 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        harness.kill_all_tors()
        harness.run_end_hooks()
        try:
            stack.stop()
        except Exception as e:
            print("stack stop failed: %s" % e)
        print("integration: %d passed, %d failed" % (passed, failed),
              flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
